//! AF_INET and AF_INET6 on the guest's own loopback (ip(7), ipv6(7)): `sockaddr_in` and `sockaddr_in6`, which
//! addresses a socket may bind (the wildcard, 127.0.0.0/8, ::1; anything else is EADDRNOTAVAIL), which binding
//! a destination reaches, when two bindings conflict (EADDRINUSE unless SO_REUSEADDR or SO_REUSEPORT allow
//! them), and ephemeral ports.
//!
//! IPv4 addresses are kept IPv4-mapped (::ffff:a.b.c.d), so one comparison serves both families; an AF_INET6
//! socket sees an IPv4 peer as its mapped address, as Linux shows it, and an IPv6 wildcard binding accepts IPv4
//! unless IPV6_V6ONLY is set.

use super::{Addr, Family, AF_INET, AF_INET6};
use crate::cpu::named_stream;
use crate::linux::abi::*;
use rand::Rng;

/// Linux's ephemeral port range (net.ipv4.ip_local_port_range).
pub const EPHEMERAL_FIRST: u16 = 32768;
pub const EPHEMERAL_LAST: u16 = 60999;

pub const V4_ANY: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0];
pub const V4_LOOPBACK: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1];
pub const V6_ANY: [u8; 16] = [0; 16];
pub const V6_LOOPBACK: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// The first ephemeral port of a run, drawn from the seed.
pub fn first_ephemeral_port(seed: u64) -> u16 {
    let mut rng = named_stream(seed, "linux.net.ports");
    rng.random_range(EPHEMERAL_FIRST..=EPHEMERAL_LAST)
}

/// The port after `p` in the ephemeral range, wrapping.
pub fn next_port(p: u16) -> u16 {
    if !(EPHEMERAL_FIRST..EPHEMERAL_LAST).contains(&p) {
        EPHEMERAL_FIRST
    } else {
        p + 1
    }
}

pub fn is_v4(ip: &[u8; 16]) -> bool {
    ip[..12] == V4_ANY[..12]
}

pub fn is_any(ip: &[u8; 16]) -> bool {
    *ip == V4_ANY || *ip == V6_ANY
}

pub fn is_loopback(ip: &[u8; 16]) -> bool {
    (is_v4(ip) && ip[12] == 127) || *ip == V6_LOOPBACK
}

/// Parses a `sockaddr_in` or `sockaddr_in6` given to a socket of `family`.
pub fn parse(family: Family, raw: &[u8]) -> Result<Addr, Errno> {
    if raw.len() < 2 {
        return Err(EINVAL);
    }
    let af = u16::from_le_bytes([raw[0], raw[1]]);
    match (family, af) {
        (Family::Inet, AF_INET) => {
            if raw.len() < 16 {
                return Err(EINVAL);
            }
            let mut ip = V4_ANY;
            ip[12..].copy_from_slice(&raw[4..8]);
            Ok(Addr::Inet {
                ip,
                port: u16::from_be_bytes([raw[2], raw[3]]),
            })
        }
        (Family::Inet6, AF_INET6) => {
            if raw.len() < 24 {
                return Err(EINVAL);
            }
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&raw[8..24]);
            Ok(Addr::Inet {
                ip,
                port: u16::from_be_bytes([raw[2], raw[3]]),
            })
        }
        _ => Err(EAFNOSUPPORT),
    }
}

/// The address as a socket of `family` shows it.
pub fn encode(family: Family, addr: &Addr) -> Vec<u8> {
    let (ip, port) = match addr {
        Addr::Inet { ip, port } => (*ip, *port),
        _ => (
            if family == Family::Inet6 {
                V6_ANY
            } else {
                V4_ANY
            },
            0,
        ),
    };
    if family == Family::Inet {
        let mut out = vec![0u8; 16];
        out[..2].copy_from_slice(&AF_INET.to_le_bytes());
        out[2..4].copy_from_slice(&port.to_be_bytes());
        out[4..8].copy_from_slice(&ip[12..]);
        out
    } else {
        let mut out = vec![0u8; 28];
        out[..2].copy_from_slice(&AF_INET6.to_le_bytes());
        out[2..4].copy_from_slice(&port.to_be_bytes());
        out[8..24].copy_from_slice(&ip);
        out
    }
}

/// Whether a socket of `family` may bind `ip`.
pub fn bindable(family: Family, ip: &[u8; 16]) -> bool {
    match family {
        Family::Inet => is_v4(ip) && (is_any(ip) || is_loopback(ip)),
        _ => is_any(ip) || is_loopback(ip),
    }
}

/// Whether a binding of `bound` (v6only: IPV6_V6ONLY) receives what is sent to `dest`.
pub fn reaches(bound: &[u8; 16], v6only: bool, dest: &[u8; 16]) -> bool {
    if bound == dest {
        return true;
    }
    match *bound {
        V4_ANY => is_v4(dest),
        V6_ANY => !is_v4(dest) || !v6only,
        _ => false,
    }
}

/// Whether two bindings of one port would receive the same traffic.
pub fn overlap(a: &[u8; 16], a_v6only: bool, b: &[u8; 16], b_v6only: bool) -> bool {
    reaches(a, a_v6only, b) || reaches(b, b_v6only, a)
}

/// Where a destination really goes: the wildcard means this host (Linux sends to the loopback).
pub fn destination(ip: &[u8; 16]) -> [u8; 16] {
    match *ip {
        V4_ANY => V4_LOOPBACK,
        V6_ANY => V6_LOOPBACK,
        other => other,
    }
}

/// The local address a socket bound to `bound` takes when it talks to `dest` (the wildcard becomes the
/// loopback address the packets leave from).
pub fn source_for(bound: &[u8; 16], dest: &[u8; 16]) -> [u8; 16] {
    if !is_any(bound) {
        *bound
    } else {
        *dest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_in_and_in6_round_trip_and_v4_is_mapped() {
        let a = Addr::Inet {
            ip: V4_LOOPBACK,
            port: 8080,
        };
        let raw = encode(Family::Inet, &a);
        assert_eq!(&raw[..8], &[2, 0, 0x1f, 0x90, 127, 0, 0, 1]);
        assert_eq!(parse(Family::Inet, &raw), Ok(a.clone()));
        let raw6 = encode(Family::Inet6, &a);
        assert_eq!(raw6.len(), 28);
        assert_eq!(parse(Family::Inet6, &raw6), Ok(a));
        assert_eq!(parse(Family::Inet, &raw6), Err(EAFNOSUPPORT));
        assert_eq!(parse(Family::Inet6, &raw6[..20]), Err(EINVAL));
    }

    #[test]
    fn wildcards_reach_their_family_and_v6only_keeps_v4_out() {
        assert!(reaches(&V4_ANY, false, &V4_LOOPBACK));
        assert!(!reaches(&V4_ANY, false, &V6_LOOPBACK));
        assert!(reaches(&V6_ANY, false, &V4_LOOPBACK));
        assert!(!reaches(&V6_ANY, true, &V4_LOOPBACK));
        assert!(!reaches(&V4_LOOPBACK, false, &V6_LOOPBACK));
        assert!(overlap(&V4_ANY, false, &V4_LOOPBACK, false));
        assert!(!bindable(
            Family::Inet,
            &[10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        ));
        let mut other = V4_ANY;
        other[12] = 10;
        assert!(!bindable(Family::Inet, &other));
        assert!(bindable(Family::Inet6, &V6_LOOPBACK));
    }

    #[test]
    fn ephemeral_ports_stay_in_linux_range_and_depend_on_the_seed() {
        let p = first_ephemeral_port(1);
        assert!((EPHEMERAL_FIRST..=EPHEMERAL_LAST).contains(&p));
        assert_eq!(p, first_ephemeral_port(1));
        assert_eq!(next_port(EPHEMERAL_LAST), EPHEMERAL_FIRST);
    }
}
