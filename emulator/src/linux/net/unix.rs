//! AF_UNIX addresses (unix(7)): `struct sockaddr_un` read from and written to the guest. A path name is bound
//! as a socket node of the guest file system (stat shows S_IFSOCK) and found again through that node, so
//! renaming the node keeps the socket reachable and unlinking it makes it unreachable, as on Linux. An
//! abstract name starts with a NUL byte and lives in the name space alone; its length is the address length's.

use super::{Addr, AF_UNIX};
use crate::linux::abi::*;

/// Size of `sun_path`.
pub const SUN_PATH_BYTES: usize = 108;

/// What a guest `sockaddr_un` names, before a path is looked up in the file system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnixName {
    /// Only the family (length 2): unnamed (bind autobinds an abstract name).
    Unnamed,
    Path(Vec<u8>),
    Abstract(Vec<u8>),
}

/// Parses the bytes of a `sockaddr_un` of the given length.
pub fn parse(raw: &[u8]) -> Result<UnixName, Errno> {
    if raw.len() < 2 || u16::from_le_bytes([raw[0], raw[1]]) != AF_UNIX {
        return Err(EINVAL);
    }
    let path = &raw[2..raw.len().min(2 + SUN_PATH_BYTES)];
    if path.is_empty() {
        return Ok(UnixName::Unnamed);
    }
    if path[0] == 0 {
        return Ok(UnixName::Abstract(path[1..].to_vec()));
    }
    let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
    Ok(UnixName::Path(path[..end].to_vec()))
}

/// The `sockaddr_un` of an address as getsockname, getpeername, accept and recvfrom write it: the family, then
/// the path and its NUL, or a NUL and the abstract name, or nothing for an unnamed socket.
pub fn encode(addr: &Addr) -> Vec<u8> {
    let mut out = AF_UNIX.to_le_bytes().to_vec();
    match addr {
        Addr::UnixPath { path, .. } => {
            out.extend_from_slice(path);
            out.push(0);
        }
        Addr::UnixAbstract(name) => {
            out.push(0);
            out.extend_from_slice(name);
        }
        _ => {}
    }
    out
}

/// The abstract name autobind gives the `n`th unnamed socket bound: five hex digits, as Linux's.
pub fn autobind_name(n: u32) -> Vec<u8> {
    format!("{:05x}", n & 0xfffff).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_abstract_names_and_unnamed_round_trip() {
        let mut raw = AF_UNIX.to_le_bytes().to_vec();
        raw.extend_from_slice(b"/tmp/s\0garbage");
        assert_eq!(parse(&raw), Ok(UnixName::Path(b"/tmp/s".to_vec())));
        let mut abs = AF_UNIX.to_le_bytes().to_vec();
        abs.extend_from_slice(b"\0name\0x");
        assert_eq!(parse(&abs), Ok(UnixName::Abstract(b"name\0x".to_vec())));
        assert_eq!(parse(&AF_UNIX.to_le_bytes()), Ok(UnixName::Unnamed));
        assert_eq!(parse(&[2, 0, 1]), Err(EINVAL));
        let enc = encode(&Addr::UnixAbstract(b"ab".to_vec()));
        assert_eq!(enc, [1, 0, 0, b'a', b'b']);
        assert_eq!(encode(&Addr::Unnamed), [1, 0]);
    }
}
