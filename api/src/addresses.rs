//! Address ranges as operators write them in `IPPool.spec.addresses`.
//!
//! Three spellings are accepted, IPv4 and IPv6 alike:
//! - a CIDR, `192.0.2.0/24` or `2001:db8::/64` (host bits must be zero, so a typo such as
//!   `192.0.2.1/24` is refused instead of silently widened);
//! - a range `a-b` of one family with `a <= b`, both ends included;
//! - a single address, `192.0.2.7`, meaning just that address.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// An inclusive range of addresses of one family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AddressRange {
    /// First address of the range.
    pub start: IpAddr,
    /// Last address of the range (same family as `start`, never below it).
    pub end: IpAddr,
}

impl AddressRange {
    /// Whether `ip` lies inside the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.start <= ip && ip <= self.end && ip.is_ipv4() == self.start.is_ipv4()
    }

    /// Whether the range holds IPv4 addresses.
    pub fn is_ipv4(&self) -> bool {
        self.start.is_ipv4()
    }

    /// Number of addresses in the range (a /0 IPv6 range does not fit in u128 and saturates).
    pub fn len(&self) -> u128 {
        (to_u128(self.end) - to_u128(self.start)).saturating_add(1)
    }

    /// Ranges are never empty; present for API symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether two ranges share at least one address.
    pub fn overlaps(&self, other: &AddressRange) -> bool {
        self.is_ipv4() == other.is_ipv4() && self.start <= other.end && other.start <= self.end
    }
}

/// The address as an unsigned integer (IPv4 in the low 32 bits).
pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl fmt::Display for AddressRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// Why an address entry could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Neither a CIDR, a range nor an address.
    #[error("{0:?} is not a CIDR, an a-b range or an address")]
    Syntax(String),
    /// A CIDR whose address has bits set beyond the prefix length.
    #[error("{given:?} has host bits set; did you mean {suggested}?")]
    HostBits {
        /// What the user wrote.
        given: String,
        /// The network the prefix length implies.
        suggested: IpNet,
    },
    /// A range whose ends are of different families.
    #[error("range {0:?} mixes IPv4 and IPv6")]
    MixedFamilies(String),
    /// A range whose start is above its end.
    #[error("range {0:?} starts above its end")]
    Reversed(String),
}

impl FromStr for AddressRange {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Some((a, b)) = s.split_once('-') {
            let parse = |x: &str| {
                x.trim()
                    .parse::<IpAddr>()
                    .map_err(|_| AddressError::Syntax(s.to_owned()))
            };
            let (start, end) = (parse(a)?, parse(b)?);
            if start.is_ipv4() != end.is_ipv4() {
                return Err(AddressError::MixedFamilies(s.to_owned()));
            }
            if start > end {
                return Err(AddressError::Reversed(s.to_owned()));
            }
            return Ok(AddressRange { start, end });
        }
        if s.contains('/') {
            let net: IpNet = s.parse().map_err(|_| AddressError::Syntax(s.to_owned()))?;
            if net.trunc() != net {
                return Err(AddressError::HostBits {
                    given: s.to_owned(),
                    suggested: net.trunc(),
                });
            }
            return Ok(AddressRange {
                start: net.network(),
                end: net.broadcast(),
            });
        }
        let ip: IpAddr = s.parse().map_err(|_| AddressError::Syntax(s.to_owned()))?;
        Ok(AddressRange { start: ip, end: ip })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Result<AddressRange, AddressError> {
        s.parse()
    }

    #[test]
    fn cidr_covers_network_to_broadcast() {
        let x = r("192.0.2.0/30").unwrap();
        assert_eq!(x.to_string(), "192.0.2.0-192.0.2.3");
        assert_eq!(x.len(), 4);
        let y = r("2001:db8::/64").unwrap();
        assert_eq!(y.len(), 1 << 64);
        assert!(!y.is_ipv4());
    }

    #[test]
    fn range_and_single_address_parse() {
        assert_eq!(r("10.0.0.1 - 10.0.0.9").unwrap().len(), 9);
        assert_eq!(r("2001:db8::5").unwrap().len(), 1);
        assert_eq!(r("::/0").unwrap().len(), u128::MAX);
    }

    #[test]
    fn host_bits_are_refused_with_a_suggestion() {
        let e = r("192.0.2.1/24").unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"192.0.2.1/24\" has host bits set; did you mean 192.0.2.0/24?"
        );
    }

    #[test]
    fn bad_ranges_are_refused() {
        assert!(matches!(
            r("10.0.0.9-10.0.0.1"),
            Err(AddressError::Reversed(_))
        ));
        assert!(matches!(
            r("10.0.0.1-2001:db8::1"),
            Err(AddressError::MixedFamilies(_))
        ));
        assert!(matches!(r("10.0.0.300"), Err(AddressError::Syntax(_))));
        assert!(matches!(r("10.0.0.0/33"), Err(AddressError::Syntax(_))));
        assert!(matches!(r(""), Err(AddressError::Syntax(_))));
    }

    #[test]
    fn contains_and_overlaps_respect_family() {
        let a = r("10.0.0.0/24").unwrap();
        assert!(a.contains("10.0.0.255".parse().unwrap()));
        assert!(!a.contains("10.0.1.0".parse().unwrap()));
        assert!(!a.contains("::a00:1".parse().unwrap()));
        assert!(a.overlaps(&r("10.0.0.200-10.0.1.5").unwrap()));
        assert!(!a.overlaps(&r("::/0").unwrap()));
    }
}
