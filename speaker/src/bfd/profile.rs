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
