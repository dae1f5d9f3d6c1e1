//! Address restrictions on a key: `allowed_cidrs`.
//!
//! An empty list allows every address. Otherwise the caller's address must
//! fall in one of the ranges; IPv4 and IPv6 rules match independently (an
//! IPv4 address is never matched by an IPv6 range or the other way round),
//! with one normalisation: an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is
//! treated as the IPv4 address it carries, because that is how dual-stack
//! sockets report IPv4 callers.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr(IpNet);

#[derive(Debug, thiserror::Error)]
#[error("{value:?} is not an IP range (expected e.g. 10.0.0.0/8, 2001:db8::/32 or a single address)")]
pub struct CidrError {
    value: String,
}

impl Cidr {
    /// Accepts `addr/len` or a bare address (a single-host range). Host bits
    /// are cleared, so `10.1.2.3/8` is stored as `10.0.0.0/8`.
    pub fn parse(s: &str) -> Result<Cidr, CidrError> {
        let err = || CidrError { value: s.chars().take(80).collect() };
        let net = match s.parse::<IpNet>() {
            Ok(n) => n,
            Err(_) => IpNet::from(s.parse::<IpAddr>().map_err(|_| err())?),
        };
        Ok(Cidr(net.trunc()))
    }

    /// Loopback, IPv4 and IPv6.
    pub fn loopback() -> Vec<Cidr> {
        ["127.0.0.0/8", "::1/128"].into_iter().filter_map(|c| Cidr::parse(c).ok()).collect()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&normalize(ip))
    }

    /// `0.0.0.0/0` or `::/0`: allows a whole address family, worth a warning.
    pub fn is_wildcard(&self) -> bool {
        self.0.prefix_len() == 0
    }
}

fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Is `ip` allowed by this list of ranges (empty = everything)?
pub fn allows(cidrs: &[Cidr], ip: IpAddr) -> bool {
    cidrs.is_empty() || cidrs.iter().any(|c| c.contains(ip))
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Cidr::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn families_match_independently() {
        let rules = [Cidr::parse("10.0.0.0/8").unwrap(), Cidr::parse("2001:db8::/32").unwrap()];
        assert!(allows(&rules, ip("10.9.8.7")));
        assert!(allows(&rules, ip("2001:db8:1::5")));
        assert!(!allows(&rules, ip("11.0.0.1")));
        assert!(!allows(&rules, ip("2001:db9::1")));
        assert!(allows(&rules, ip("::ffff:10.1.1.1")));
        assert!(allows(&[], ip("192.0.2.1")));
    }

    #[test]
    fn parsing_normalises_and_refuses_garbage() {
        assert_eq!(Cidr::parse("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(Cidr::parse("192.0.2.7").unwrap().to_string(), "192.0.2.7/32");
        assert!(Cidr::parse("0.0.0.0/0").unwrap().is_wildcard());
        for bad in ["10.0.0.0/33", "not-an-ip", "", "10.0.0/8", "::/129"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }
}
