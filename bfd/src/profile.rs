//! BFD configuration of one session, as the user asked for it (the `BFDProfile` CRD,
//! DESIGN §3).

use std::time::Duration;

/// Timers and mode of a BFD session; mirrors the `BFDProfile` resource. Defaults are MetalLB's.
///
/// Range validation lives in the CRD schema; the session only guards against values that would
/// make it emit invalid packets (see [`Profile::desired_min_tx`], [`Profile::detect_mult`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Profile {
    /// Minimum interval at which this system can receive Control packets, ms
    /// (bfd.RequiredMinRxInterval once Up). Default 300.
    pub receive_interval: u32,
    /// Minimum interval at which this system would like to send Control packets, ms
    /// (bfd.DesiredMinTxInterval once Up). Default 300.
    pub transmit_interval: u32,
    /// Detection time multiplier (bfd.DetectMult). Default 3.
    pub detect_multiplier: u8,
    /// Take the Passive role (RFC 5880 §6.1): send nothing until the peer is heard. Default
    /// false.
    pub passive_mode: bool,
    /// Lowest TTL accepted on multihop sessions (RFC 5883). Default 254.
    pub minimum_ttl: u8,
}

impl Default for Profile {
    fn default() -> Profile {
        Profile {
            receive_interval: 300,
            transmit_interval: 300,
            detect_multiplier: 3,
            passive_mode: false,
            minimum_ttl: 254,
        }
    }
}

impl Profile {
    /// Configured bfd.DesiredMinTxInterval. Zero is reserved on the wire (RFC 5880 §4.1), so it
    /// is raised to 1 ms.
    pub fn desired_min_tx(&self) -> Duration {
        Duration::from_millis(u64::from(self.transmit_interval.max(1)))
    }

    /// Configured bfd.RequiredMinRxInterval. Zero is meaningful: the peer must not send
    /// periodic Control packets.
    pub fn required_min_rx(&self) -> Duration {
        Duration::from_millis(u64::from(self.receive_interval))
    }

    /// bfd.DetectMult; zero would make every packet we send invalid (RFC 5880 §6.8.6), so it is
    /// raised to 1.
    pub fn detect_mult(&self) -> u8 {
        self.detect_multiplier.max(1)
    }
}

impl From<&herald_api::BFDProfileSpec> for Profile {
    /// The session profile of a `BFDProfile` object, with the CRD's defaults for unset fields.
    /// The CRD schema bounds the multiplier (2..=255) and TTL (1..=254); values outside u8 are
    /// clamped rather than wrapped, so a bypassed schema cannot turn 256 into 0.
    fn from(spec: &herald_api::BFDProfileSpec) -> Self {
        let clamp = |v: u32| u8::try_from(v).unwrap_or(u8::MAX);
        Profile {
            receive_interval: spec.receive_interval_ms(),
            transmit_interval: spec.transmit_interval_ms(),
            detect_multiplier: clamp(spec.detect_multiplier_or_default()),
            passive_mode: spec.passive_mode,
            minimum_ttl: clamp(spec.minimum_ttl_or_default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: serde_json::Value) -> herald_api::BFDProfileSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_bfd_profile_object_gives_its_values_and_metallb_defaults_for_the_rest() {
        let p = Profile::from(&spec(serde_json::json!({
            "receiveInterval": 100, "detectMultiplier": 5, "passiveMode": true
        })));
        assert_eq!(
            p,
            Profile {
                receive_interval: 100,
                transmit_interval: 300,
                detect_multiplier: 5,
                passive_mode: true,
                minimum_ttl: 254,
            }
        );
        assert_eq!(
            Profile::from(&spec(serde_json::json!({}))),
            Profile::default()
        );
    }

    #[test]
    fn out_of_range_values_clamp_instead_of_wrapping() {
        let p = Profile::from(&spec(
            serde_json::json!({"detectMultiplier": 256, "minimumTtl": 300}),
        ));
        assert_eq!((p.detect_multiplier, p.minimum_ttl), (255, 255));
    }
}
