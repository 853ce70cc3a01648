//! Address ranges (SPEC §10): a CIDR block (`10.0.0.0/8`, `2001:db8::/32`, or one address)
//! and whether an address lies in it. IPv4-mapped IPv6 addresses count as their IPv4 address.

use std::net::IpAddr;

/// An address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// The address as IPv4 when it is an IPv4-mapped IPv6 one.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn bits(ip: IpAddr) -> (u128, u8) {
    match ip {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    }
}

fn mask(prefix: u8, width: u8) -> u128 {
    match prefix {
        0 => 0,
        _ => (u128::MAX << (128 - u32::from(prefix))) >> (128 - u32::from(width)),
    }
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `x:y::/n`, or a single address; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let text = text.trim();
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address.parse().map_err(|_| format!("{text:?} is not an address or CIDR range"))?;
        let network = canonical_ip(network);
        let width = bits(network).1;
        let prefix = match prefix {
            None => width,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|prefix| *prefix <= width)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {width}"))?,
        };
        let (value, _) = bits(network);
        if value & !mask(prefix, width) & (u128::MAX >> (128 - u32::from(width))) != 0 {
            return Err(format!("{text:?}: host bits are set below the /{prefix} prefix"));
        }
        Ok(Cidr { network, prefix })
    }

    /// Whether `ip` lies in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        let ((net, width), (value, ip_width)) = (bits(self.network), bits(ip));
        width == ip_width && (net ^ value) & mask(self.prefix, width) == 0
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
    }

    #[test]
    fn ranges_contain_what_they_should() {
        let ten = Cidr::parse("10.0.0.0/8").expect("valid");
        assert!(ten.contains(ip("10.1.2.3")) && !ten.contains(ip("11.0.0.1")));
        assert!(ten.contains(ip("::ffff:10.9.9.9")), "IPv4-mapped IPv6 counts as IPv4");
        let one = Cidr::parse("127.0.0.2").expect("single address");
        assert!(one.contains(ip("127.0.0.2")) && !one.contains(ip("127.0.0.1")));
        let all = Cidr::parse("0.0.0.0/0").expect("everything v4");
        assert!(all.contains(ip("8.8.8.8")) && !all.contains(ip("::1")));
        let v6 = Cidr::parse("2001:db8::/32").expect("v6");
        assert!(v6.contains(ip("2001:db8:1::5")) && !v6.contains(ip("2001:db9::1")));
        assert_eq!(v6.to_string(), "2001:db8::/32");
    }

    #[test]
    fn malformed_ranges_are_refused() {
        for bad in ["", "10.0.0.0/33", "10.0.0.1/8", "nope", "10.0.0.0/x", "::/129"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }
}
