//! The socket syscalls (socket(2), socketpair(2), bind(2), listen(2), accept(2), connect(2), send(2),
//! recv(2), shutdown(2), getsockname(2), getpeername(2), getsockopt(2)), and reading and writing socket
//! descriptors with read, write, readv and writev. The sockets themselves, their addresses and the name space
//! are net/'s; bytes move through its transport's channels.
//!
//! A call that cannot complete (accept with no connection queued, recv with nothing to read, send to a full
//! channel, connect to a full backlog) blocks through `would_block` and is re-run from the top, so each checks
//! before it changes anything; a non-blocking description (SOCK_NONBLOCK, O_NONBLOCK, MSG_DONTWAIT) answers
//! EAGAIN instead. A send on a stream whose reader is gone is EPIPE with SIGPIPE unless MSG_NOSIGNAL.

use super::*;
use crate::linux::net::transport::{Channel, SharedChannel};
use crate::linux::net::transport::{Message, CHANNEL_BYTES_MAX};
use crate::linux::net::unix::UnixName;
use crate::linux::net::{
    inet, unix, Addr, Family, Proto, SharedSocket, SockType, Socket, State, AF_UNSPEC, BACKLOG_MAX,
};

const SOCK_TYPE_MASK: u32 = 0xf;
const MSG_PEEK: u32 = 0x2;
const MSG_TRUNC: u32 = 0x20;
const MSG_DONTWAIT: u32 = 0x40;
const MSG_WAITALL: u32 = 0x100;
const MSG_NOSIGNAL: u32 = 0x4000;

const SOL_SOCKET: i32 = 1;
const IPPROTO_IP: i32 = 0;
const IPPROTO_TCP: i32 = 6;
const IPPROTO_IPV6: i32 = 41;
const SO_REUSEADDR: i32 = 2;
const SO_TYPE: i32 = 3;
const SO_ERROR: i32 = 4;
const SO_SNDBUF: i32 = 7;
const SO_RCVBUF: i32 = 8;
const SO_LINGER: i32 = 13;
const SO_REUSEPORT: i32 = 15;
const SO_PEERCRED: i32 = 17;
const SO_RCVTIMEO: i32 = 20;
const SO_SNDTIMEO: i32 = 21;
const SO_ACCEPTCONN: i32 = 30;
const SO_PROTOCOL: i32 = 38;
const SO_DOMAIN: i32 = 39;
const IPV6_V6ONLY: i32 = 26;

/// Largest socket address accepted (sizeof(struct sockaddr_storage)).
const SOCKADDR_BYTES_MAX: u64 = 128;
/// Bytes of a `struct msghdr`.
const MSGHDR_BYTES: u64 = 56;

/// A `struct msghdr` read from the guest: name, name length, iovecs (base, length), control length.
type MsgHdr = (u64, u64, Vec<(u64, u64)>, u64);

/// What a receive got.
struct Received {
    bytes: Vec<u8>,
    from: Option<Addr>,
    /// The message's whole length (more than `bytes` when a datagram was truncated).
    full_len: usize,
}

/// How an option is kept: an int (booleans normalised to 0 or 1), or bytes of a fixed size.
enum OptionShape {
    Bool,
    Int,
    Bytes(usize),
}

/// The options setsockopt keeps for a socket of this family and type; None: ENOPROTOOPT.
fn option_shape(s: &Socket, level: i32, name: i32) -> Option<OptionShape> {
    use OptionShape::*;
    let tcp = s.family != Family::Unix && s.kind == SockType::Stream;
    match (level, name) {
        (SOL_SOCKET, SO_REUSEADDR | SO_REUSEPORT | 9 | 6 | 10 | 5 | 16) => Some(Bool), // KEEPALIVE, BROADCAST, OOBINLINE, DONTROUTE, PASSCRED
        (SOL_SOCKET, SO_SNDBUF | SO_RCVBUF | 12 | 18 | 19) => Some(Int), // PRIORITY, RCVLOWAT, SNDLOWAT
        (SOL_SOCKET, SO_LINGER) => Some(Bytes(8)),
        (SOL_SOCKET, SO_RCVTIMEO | SO_SNDTIMEO) => Some(Bytes(16)),
        (IPPROTO_TCP, 1) if tcp => Some(Bool), // TCP_NODELAY
        (IPPROTO_TCP, 2 | 4 | 5 | 6) if tcp => Some(Int), // TCP_MAXSEG, KEEPIDLE, KEEPINTVL, KEEPCNT
        (IPPROTO_IPV6, IPV6_V6ONLY) if s.family == Family::Inet6 => Some(Bool),
        (IPPROTO_IP, 1 | 2) if s.family == Family::Inet => Some(Int), // IP_TOS, IP_TTL
        _ => None,
    }
}

/// SO_SNDBUF and SO_RCVBUF before any setsockopt: tcp(7)'s tcp_wmem and tcp_rmem defaults, else wmem_default.
fn default_buffer(s: &Socket, name: i32) -> i32 {
    match (s.family, s.kind, name) {
        (Family::Inet | Family::Inet6, SockType::Stream, SO_SNDBUF) => 16_384,
        (Family::Inet | Family::Inet6, SockType::Stream, _) => 131_072,
        _ => CHANNEL_BYTES_MAX as i32,
    }
}

fn proto_of(kind: SockType) -> Proto {
    if kind == SockType::Stream {
        Proto::Tcp
    } else {
        Proto::Udp
    }
}

/// The address as a socket of `family` shows it to the guest.
fn encode_addr(family: Family, addr: Option<&Addr>) -> Vec<u8> {
    match family {
        Family::Unix => unix::encode(addr.unwrap_or(&Addr::Unnamed)),
        _ => inet::encode(family, addr.unwrap_or(&Addr::Unnamed)),
    }
}

fn inet_parts(addr: &Option<Addr>) -> Option<([u8; 16], u16)> {
    match addr {
        Some(Addr::Inet { ip, port }) => Some((*ip, *port)),
        _ => None,
    }
}

fn v6only(s: &Socket) -> bool {
    s.family == Family::Inet6 && s.option_int(IPPROTO_IPV6, IPV6_V6ONLY) != 0
}

impl<H: Host> LinuxMachine<H> {
    /// The socket syscalls' table.
    pub(super) fn dispatch_sockets(&mut self, nr: u64, a: [u64; 6]) -> Option<Outcome> {
        let fd = a[0] as i32;
        let r = match nr {
            41 => self.sys_socket(a[0] as i32, a[1] as u32, a[2] as i32),
            42 => self.sys_connect(fd, a[1], a[2]),
            43 => self.sys_accept4(fd, a[1], a[2], 0),
            44 => self.sys_sendto(fd, a[1], a[2], a[3] as u32, a[4], a[5]),
            45 => self.sys_recvfrom(fd, a[1], a[2], a[3] as u32, a[4], a[5]),
            46 => self.sys_sendmsg(fd, a[1], a[2] as u32),
            47 => self.sys_recvmsg(fd, a[1], a[2] as u32),
            48 => self.sys_shutdown(fd, a[1] as i32),
            49 => self.sys_bind(fd, a[1], a[2]),
            50 => self.sys_listen(fd, a[1] as i32),
            51 => self.sys_getsockname(fd, a[1], a[2], false),
            52 => self.sys_getsockname(fd, a[1], a[2], true),
            53 => self.sys_socketpair(a[0] as i32, a[1] as u32, a[2] as i32, a[3]),
            54 => self.sys_setsockopt(fd, a[1] as i32, a[2] as i32, a[3], a[4]),
            55 => self.sys_getsockopt(fd, a[1] as i32, a[2] as i32, a[3], a[4]),
            288 => self.sys_accept4(fd, a[1], a[2], a[3] as u32),
            _ => return None,
        };
        Some(Outcome::Return(r))
    }

    // ---------------------------------------------------------------------------------------------------------
    // Helpers.

    /// The socket behind a descriptor and whether its description is non-blocking (ENOTSOCK for other files).
    fn socket_of(&self, fd: i32) -> Result<(SharedSocket, bool), Errno> {
        let desc = self.proc.fds.get(fd)?;
        let d = desc.borrow();
        match &d.kind {
            FileKind::Socket(s) => Ok((s.clone(), d.flags & O_NONBLOCK != 0)),
            _ => Err(ENOTSOCK),
        }
    }

    fn read_sockaddr(&mut self, addr: u64, len: u64) -> Result<Vec<u8>, Errno> {
        if len as i32 as i64 != len as i64 || (len as i32) < 0 || len > SOCKADDR_BYTES_MAX {
            return Err(EINVAL);
        }
        self.read_mem(addr, len)
    }

    /// Writes an address out as accept, getsockname and recvfrom do: at most `*len_ptr` bytes of it, and its
    /// real length into `*len_ptr`. A null address pointer writes nothing.
    fn write_sockaddr(&mut self, addr: u64, len_ptr: u64, bytes: &[u8]) -> Result<(), Errno> {
        if addr == 0 || len_ptr == 0 {
            return Ok(());
        }
        let room = i32::from_le_bytes(self.read_mem(len_ptr, 4)?.try_into().unwrap());
        if room < 0 {
            return Err(EINVAL);
        }
        let n = (room as usize).min(bytes.len());
        self.write_mem(addr, &bytes[..n])?;
        self.write_u32(len_ptr, bytes.len() as u32)
    }

    fn install_socket(&mut self, s: SharedSocket, flags: u32) -> Result<i32, Errno> {
        let desc = OpenFile::new(FileKind::Socket(s), O_RDWR | (flags & O_NONBLOCK));
        self.proc.fds.insert(desc, flags & O_CLOEXEC != 0)
    }

    /// SIGPIPE (unless MSG_NOSIGNAL) and EPIPE: a send on a stream nobody reads any more.
    fn broken_pipe(&mut self, flags: u32) -> Errno {
        if flags & MSG_NOSIGNAL == 0 {
            self.thread.sig.pending |= bit(SIGPIPE);
        }
        EPIPE
    }

    /// EAGAIN for a non-blocking call, else block until another task did something.
    fn wait_or_again(&mut self, nonblock: bool) -> Errno {
        if nonblock {
            EAGAIN
        } else {
            self.would_block(None)
        }
    }

    // ---------------------------------------------------------------------------------------------------------
    // Creating sockets.

    fn new_socket(domain: i32, ty: u32, protocol: i32) -> Result<Socket, Errno> {
        let family = match domain as u16 {
            _ if !(0..=u16::MAX as i32).contains(&domain) => return Err(EAFNOSUPPORT),
            net::AF_UNIX => Family::Unix,
            net::AF_INET => Family::Inet,
            net::AF_INET6 => Family::Inet6,
            _ => return Err(EAFNOSUPPORT),
        };
        if ty & !(SOCK_TYPE_MASK | O_NONBLOCK | O_CLOEXEC) != 0 {
            return Err(EINVAL);
        }
        let kind = match (family, ty & SOCK_TYPE_MASK) {
            (_, net::SOCK_STREAM) => SockType::Stream,
            (_, net::SOCK_DGRAM) => SockType::Dgram,
            (Family::Unix, net::SOCK_SEQPACKET) => SockType::SeqPacket,
            (Family::Unix, _) => return Err(Errno(94)), // ESOCKTNOSUPPORT
            (_, 3) => return Err(EPERM),                // SOCK_RAW needs CAP_NET_RAW
            (_, t) if t >= 10 => return Err(EINVAL),
            _ => return Err(EPROTONOSUPPORT),
        };
        let protocol = match (family, kind, protocol) {
            (Family::Unix, _, 0 | 1) => 0,
            (Family::Inet | Family::Inet6, SockType::Stream, 0 | 6) => 6,
            (Family::Inet | Family::Inet6, SockType::Dgram, 0 | 17) => 17,
            _ => return Err(EPROTONOSUPPORT),
        };
        Ok(Socket::new(family, kind, protocol))
    }

    fn sys_socket(&mut self, domain: i32, ty: u32, protocol: i32) -> SysResult {
        let mut s = Self::new_socket(domain, ty, protocol)?;
        s.cred_pid = self.proc.pid.0;
        self.install_socket(s.shared(), ty).map(|fd| fd as u64)
    }

    fn sys_socketpair(&mut self, domain: i32, ty: u32, protocol: i32, sv: u64) -> SysResult {
        let mut a = Self::new_socket(domain, ty, protocol)?;
        if a.family != Family::Unix {
            return Err(EOPNOTSUPP);
        }
        let mut b = Self::new_socket(domain, ty, protocol)?;
        let pid = self.proc.pid.0;
        for s in [&mut a, &mut b] {
            s.cred_pid = pid;
            s.peer_pid = Some(pid);
            s.peer = Some(Addr::Unnamed);
        }
        if a.kind.connected() {
            let (ab, ba) = (Channel::shared(), Channel::shared());
            a.state = State::Connected {
                rx: ba.clone(),
                tx: ab.clone(),
            };
            b.state = State::Connected { rx: ab, tx: ba };
        } else {
            a.dgram_peer = b.inbox.clone();
            b.dgram_peer = a.inbox.clone();
        }
        let first = self.install_socket(a.shared(), ty)?;
        let second = match self.install_socket(b.shared(), ty) {
            Ok(fd) => fd,
            Err(e) => {
                let _ = self.proc.fds.close(first);
                return Err(e);
            }
        };
        let mut out = [0u8; 8];
        out[..4].copy_from_slice(&first.to_le_bytes());
        out[4..].copy_from_slice(&second.to_le_bytes());
        if let Err(e) = self.write_mem(sv, &out) {
            let _ = self.proc.fds.close(first);
            let _ = self.proc.fds.close(second);
            return Err(e);
        }
        Ok(0)
    }

    // ---------------------------------------------------------------------------------------------------------
    // Names.

    fn sys_bind(&mut self, fd: i32, addr: u64, len: u64) -> SysResult {
        let (sock, _) = self.socket_of(fd)?;
        let raw = self.read_sockaddr(addr, len)?;
        let family = sock.borrow().family;
        if sock.borrow().local.is_some() {
            return Err(EINVAL);
        }
        match family {
            Family::Unix => self.bind_unix(&sock, unix::parse(&raw)?)?,
            _ => {
                let Addr::Inet { ip, port } = inet::parse(family, &raw)? else {
                    unreachable!("inet::parse gives inet addresses")
                };
                self.bind_inet(&sock, ip, port)?
            }
        }
        Ok(0)
    }

    fn bind_unix(&mut self, sock: &SharedSocket, name: UnixName) -> Result<(), Errno> {
        let addr = match name {
            UnixName::Unnamed => self.unix_autobind_name(),
            UnixName::Abstract(n) => {
                let addr = Addr::UnixAbstract(n);
                if self.net.unix_lookup(&addr).is_some() {
                    return Err(EADDRINUSE);
                }
                addr
            }
            UnixName::Path(p) => {
                let r = self.resolve_at(AT_FDCWD, &p, false)?;
                if r.node.is_some() {
                    return Err(EADDRINUSE);
                }
                self.check_parent_dir(&r.path)?;
                let now = self.now();
                let attrs = self.vfs.new_attrs(0o777 & !self.proc.umask, now);
                self.vfs.make_socket(&r.path, attrs);
                Addr::UnixPath {
                    path: p,
                    ino: attrs.ino,
                }
            }
        };
        match &addr {
            Addr::UnixPath { ino, .. } => self.net.unix_paths.insert(*ino, sock.clone()),
            Addr::UnixAbstract(n) => self.net.unix_abstract.insert(n.clone(), sock.clone()),
            _ => unreachable!("AF_UNIX names are paths or abstract"),
        };
        sock.borrow_mut().local = Some(addr);
        Ok(())
    }

    /// A free abstract name for autobind (bind with only the family).
    fn unix_autobind_name(&mut self) -> Addr {
        loop {
            let n = self.net.autobind_next;
            self.net.autobind_next = n.wrapping_add(1);
            let addr = Addr::UnixAbstract(unix::autobind_name(n));
            if self.net.unix_lookup(&addr).is_none() {
                return addr;
            }
        }
    }

    /// Live sockets bound to a port (closed ones forgotten).
    fn port_bindings(&mut self, proto: Proto, port: u16) -> Vec<SharedSocket> {
        let list = self.net.inet.entry((proto, port)).or_default();
        list.retain(|s| !s.borrow().closed);
        let out = list.clone();
        if out.is_empty() {
            self.net.inet.remove(&(proto, port));
        }
        out
    }

    /// Whether binding `sock` to (`ip`, `port`) conflicts with a binding there (bind(2) EADDRINUSE; socket(7)
    /// SO_REUSEADDR, SO_REUSEPORT).
    fn port_conflict(&mut self, sock: &SharedSocket, ip: &[u8; 16], port: u16) -> bool {
        let me = sock.borrow();
        let proto = proto_of(me.kind);
        let reuseaddr = me.option_int(SOL_SOCKET, SO_REUSEADDR) != 0;
        let reuseport = me.option_int(SOL_SOCKET, SO_REUSEPORT) != 0;
        let mine_v6only = v6only(&me);
        drop(me);
        self.port_bindings(proto, port).iter().any(|other| {
            if Shared::ptr_eq(other, sock) {
                return false;
            }
            let o = other.borrow();
            let Some((oip, _)) = inet_parts(&o.local) else {
                return false;
            };
            if !inet::overlap(ip, mine_v6only, &oip, v6only(&o)) {
                return false;
            }
            let both_reuseport = reuseport && o.option_int(SOL_SOCKET, SO_REUSEPORT) != 0;
            let both_reuseaddr = reuseaddr
                && o.option_int(SOL_SOCKET, SO_REUSEADDR) != 0
                && (proto == Proto::Udp || !o.is_listening());
            !(both_reuseport || both_reuseaddr)
        })
    }

    /// The next free ephemeral port for `proto` (EADDRINUSE when the whole range is taken).
    fn ephemeral_port(&mut self, proto: Proto) -> Result<u16, Errno> {
        let mut p = self.net.port_next;
        for _ in 0..=(inet::EPHEMERAL_LAST - inet::EPHEMERAL_FIRST) {
            let candidate = p;
            p = inet::next_port(p);
            if self.port_bindings(proto, candidate).is_empty() {
                self.net.port_next = p;
                return Ok(candidate);
            }
        }
        Err(EADDRINUSE)
    }

    fn bind_inet(&mut self, sock: &SharedSocket, ip: [u8; 16], port: u16) -> Result<(), Errno> {
        let (family, proto) = {
            let s = sock.borrow();
            (s.family, proto_of(s.kind))
        };
        if !inet::bindable(family, &ip) {
            return Err(EADDRNOTAVAIL);
        }
        // The guest is not root: ports below 1024 are privileged (ip(7)).
        if port != 0 && port < 1024 {
            return Err(EACCES);
        }
        let port = if port == 0 {
            self.ephemeral_port(proto)?
        } else if self.port_conflict(sock, &ip, port) {
            return Err(EADDRINUSE);
        } else {
            port
        };
        self.net
            .inet
            .entry((proto, port))
            .or_default()
            .push(sock.clone());
        sock.borrow_mut().local = Some(Addr::Inet { ip, port });
        Ok(())
    }

    /// An inet socket that talks to `dest` gets a port if it has none, and its wildcard address becomes the
    /// address it talks from.
    fn inet_autobind(&mut self, sock: &SharedSocket, dest: &[u8; 16]) -> Result<(), Errno> {
        if sock.borrow().local.is_none() {
            let any = if sock.borrow().family == Family::Inet {
                inet::V4_ANY
            } else {
                inet::V6_ANY
            };
            self.bind_inet(sock, any, 0)?;
        }
        let mut s = sock.borrow_mut();
        if let Some(Addr::Inet { ip, .. }) = &mut s.local {
            *ip = inet::source_for(ip, dest);
        }
        Ok(())
    }

    fn sys_getsockname(&mut self, fd: i32, addr: u64, len_ptr: u64, peer: bool) -> SysResult {
        let (sock, _) = self.socket_of(fd)?;
        let bytes = {
            let s = sock.borrow();
            if peer {
                let p = s.peer.as_ref().ok_or(ENOTCONN)?;
                encode_addr(s.family, Some(p))
            } else {
                encode_addr(s.family, s.local.as_ref())
            }
        };
        if addr == 0 {
            return Err(EFAULT);
        }
        self.write_sockaddr(addr, len_ptr, &bytes)?;
        Ok(0)
    }

    // ---------------------------------------------------------------------------------------------------------
    // Connections.

    fn sys_listen(&mut self, fd: i32, backlog: i32) -> SysResult {
        let (sock, _) = self.socket_of(fd)?;
        let (family, kind, bound) = {
            let s = sock.borrow();
            (s.family, s.kind, s.local.is_some())
        };
        if !kind.connected() {
            return Err(EOPNOTSUPP);
        }
        if matches!(sock.borrow().state, State::Connected { .. }) {
            return Err(EINVAL);
        }
        if !bound {
            if family == Family::Unix {
                return Err(EINVAL);
            }
            let any = if family == Family::Inet {
                inet::V4_ANY
            } else {
                inet::V6_ANY
            };
            self.bind_inet(&sock, any, 0)?;
        }
        // listen(2): a backlog above somaxconn (or negative, as unsigned) is somaxconn.
        let backlog = if backlog < 0 {
            BACKLOG_MAX
        } else {
            (backlog as u32).min(BACKLOG_MAX)
        };
        let mut s = sock.borrow_mut();
        s.cred_pid = self.proc.pid.0;
        match &mut s.state {
            State::Listening { backlog: b, .. } => *b = backlog,
            _ => {
                s.state = State::Listening {
                    backlog,
                    pending: Default::default(),
                }
            }
        }
        Ok(0)
    }

    /// The AF_UNIX socket bound to a name, and that name (ENOENT: no such path; ECONNREFUSED: not a socket, or
    /// no socket bound to it any more).
    fn unix_target(&mut self, name: UnixName) -> Result<(SharedSocket, Addr), Errno> {
        let addr = match name {
            UnixName::Unnamed => return Err(EINVAL),
            UnixName::Abstract(n) => Addr::UnixAbstract(n),
            UnixName::Path(p) => {
                let r = self.resolve_at(AT_FDCWD, &p, true)?;
                match r.node {
                    None => return Err(ENOENT),
                    Some(Node::Socket(a)) => Addr::UnixPath {
                        path: p,
                        ino: a.ino,
                    },
                    Some(_) => return Err(ECONNREFUSED),
                }
            }
        };
        let s = self.net.unix_lookup(&addr).ok_or(ECONNREFUSED)?;
        let local = s.borrow().local.clone().unwrap_or(addr);
        Ok((s, local))
    }

    /// A destination on the loopback: the wildcard means this host; any other host is unreachable (there is no
    /// network yet).
    fn inet_destination(&self, family: Family, raw: &[u8]) -> Result<([u8; 16], u16), Errno> {
        let Addr::Inet { ip, port } = inet::parse(family, raw)? else {
            unreachable!("inet::parse gives inet addresses")
        };
        let dest = inet::destination(&ip);
        if !inet::is_loopback(&dest) {
            return Err(ENETUNREACH);
        }
        Ok((dest, port))
    }

    /// The socket of `proto` bound where `dest` goes: an exact address before a wildcard, listeners only for
    /// TCP.
    fn inet_bound(&mut self, proto: Proto, dest: &[u8; 16], port: u16) -> Option<SharedSocket> {
        let candidates: Vec<SharedSocket> = self
            .port_bindings(proto, port)
            .into_iter()
            .filter(|s| {
                let s = s.borrow();
                (proto == Proto::Udp || s.is_listening())
                    && inet_parts(&s.local)
                        .is_some_and(|(ip, _)| inet::reaches(&ip, v6only(&s), dest))
            })
            .collect();
        let exact = candidates
            .iter()
            .find(|s| inet_parts(&s.borrow().local).is_some_and(|(ip, _)| ip == *dest));
        exact.or(candidates.first()).cloned()
    }

    fn sys_connect(&mut self, fd: i32, addr: u64, len: u64) -> SysResult {
        let (sock, nonblock) = self.socket_of(fd)?;
        let raw = self.read_sockaddr(addr, len)?;
        let (family, kind) = {
            let s = sock.borrow();
            (s.family, s.kind)
        };
        if kind == SockType::Dgram {
            return self.connect_dgram(&sock, &raw);
        }
        match sock.borrow().state {
            State::Connected { .. } => return Err(EISCONN),
            State::Listening { .. } => return Err(EINVAL),
            State::Idle => {}
        }
        let (listener, peer_addr) = if family == Family::Unix {
            self.unix_target(unix::parse(&raw)?)?
        } else {
            let (dest, port) = self.inet_destination(family, &raw)?;
            let l = self
                .inet_bound(Proto::Tcp, &dest, port)
                .ok_or(ECONNREFUSED)?;
            (l, Addr::Inet { ip: dest, port })
        };
        {
            let l = listener.borrow();
            if l.kind != kind {
                return Err(EPROTOTYPE);
            }
            let State::Listening { backlog, pending } = &l.state else {
                return Err(ECONNREFUSED);
            };
            // The accept queue is full past `backlog` entries (Linux's sk_acceptq_is_full): wait for accept.
            if pending.len() > *backlog as usize {
                drop(l);
                return Err(self.wait_or_again(nonblock));
            }
        }
        // From here on the connection is made: nothing below blocks.
        if let Addr::Inet { ip, .. } = &peer_addr {
            self.inet_autobind(&sock, ip)?;
        }
        self.make_connection(&sock, &listener, peer_addr);
        if family != Family::Unix && nonblock {
            // Linux answers EINPROGRESS for a non-blocking TCP connect even on the loopback.
            return Err(EINPROGRESS);
        }
        Ok(0)
    }

    /// Connects `client` to `listener`: the server's end is made now and queued for accept.
    fn make_connection(&mut self, client: &SharedSocket, listener: &SharedSocket, peer_addr: Addr) {
        let (to_server, to_client) = (Channel::shared(), Channel::shared());
        let mut l = listener.borrow_mut();
        let mut server = Socket::new(l.family, l.kind, l.protocol);
        server.local = match &peer_addr {
            Addr::Inet { .. } => Some(peer_addr.clone()),
            _ => l.local.clone(),
        };
        server.options = l.options.clone();
        server.cred_pid = l.cred_pid;
        server.peer_pid = Some(self.proc.pid.0);
        server.state = State::Connected {
            rx: to_server.clone(),
            tx: to_client.clone(),
        };
        let mut c = client.borrow_mut();
        server.peer = Some(c.local.clone().unwrap_or(Addr::Unnamed));
        c.state = State::Connected {
            rx: to_client,
            tx: to_server,
        };
        c.peer = Some(peer_addr);
        c.peer_pid = Some(l.cred_pid);
        if let State::Listening { pending, .. } = &mut l.state {
            pending.push_back(server.shared());
            l.connections_queued += 1;
        }
    }

    fn connect_dgram(&mut self, sock: &SharedSocket, raw: &[u8]) -> SysResult {
        let family = sock.borrow().family;
        if raw.len() >= 2 && u16::from_le_bytes([raw[0], raw[1]]) == AF_UNSPEC {
            let mut s = sock.borrow_mut();
            s.peer = None;
            s.dgram_peer = None;
            return Ok(0);
        }
        if family == Family::Unix {
            let (target, addr) = self.unix_target(unix::parse(raw)?)?;
            // The target may be the socket itself: read it before changing the socket.
            let (kind, inbox, pid) = {
                let t = target.borrow();
                (t.kind, t.inbox.clone(), t.cred_pid)
            };
            if kind != SockType::Dgram {
                return Err(EPROTOTYPE);
            }
            let mut s = sock.borrow_mut();
            s.dgram_peer = inbox;
            s.peer = Some(addr);
            s.peer_pid = Some(pid);
            return Ok(0);
        }
        let (dest, port) = self.inet_destination(family, raw)?;
        self.inet_autobind(sock, &dest)?;
        sock.borrow_mut().peer = Some(Addr::Inet { ip: dest, port });
        Ok(0)
    }

    fn sys_accept4(&mut self, fd: i32, addr: u64, len_ptr: u64, flags: u32) -> SysResult {
        if flags & !(O_NONBLOCK | O_CLOEXEC) != 0 {
            return Err(EINVAL);
        }
        let (sock, nonblock) = self.socket_of(fd)?;
        let conn = {
            let mut s = sock.borrow_mut();
            let State::Listening { pending, .. } = &mut s.state else {
                return Err(EINVAL);
            };
            if pending.is_empty() {
                drop(s);
                return Err(self.wait_or_again(nonblock));
            }
            pending.pop_front().expect("not empty")
        };
        let (family, peer) = {
            let c = conn.borrow();
            (c.family, c.peer.clone())
        };
        // EMFILE here closes the connection (it had no descriptor yet): the client reads end of file.
        let new_fd = self.install_socket(conn, flags)?;
        self.write_sockaddr(addr, len_ptr, &encode_addr(family, peer.as_ref()))?;
        Ok(new_fd as u64)
    }

    fn sys_shutdown(&mut self, fd: i32, how: i32) -> SysResult {
        let (sock, _) = self.socket_of(fd)?;
        if !(0..=2).contains(&how) {
            return Err(EINVAL);
        }
        let mut s = sock.borrow_mut();
        if s.kind.connected() && !matches!(s.state, State::Connected { .. }) {
            return Err(ENOTCONN);
        }
        if how != 1 {
            s.shut_read = true;
        }
        if how != 0 {
            s.shut_write = true;
            if let State::Connected { tx, .. } = &s.state {
                tx.borrow_mut().sender_gone = true;
            }
        }
        Ok(0)
    }

    // ---------------------------------------------------------------------------------------------------------
    // Sending.

    /// Sends `data` on a socket (`dest`: the raw address of sendto or sendmsg, if any).
    pub(in crate::linux) fn socket_send(
        &mut self,
        sock: &SharedSocket,
        nonblock: bool,
        data: &[u8],
        flags: u32,
        dest: Option<&[u8]>,
    ) -> SysResult {
        let nonblock = nonblock || flags & MSG_DONTWAIT != 0;
        let (family, kind) = {
            let s = sock.borrow();
            (s.family, s.kind)
        };
        if !kind.connected() {
            return self.send_datagram(sock, nonblock, data, dest);
        }
        let tx = {
            let s = sock.borrow();
            match &s.state {
                State::Connected { tx, .. } if !s.shut_write => tx.clone(),
                State::Connected { .. } => {
                    drop(s);
                    return Err(self.broken_pipe(flags));
                }
                // tcp_sendmsg on a socket never connected fails with EPIPE (and SIGPIPE); unix(7) ENOTCONN.
                _ if family != Family::Unix => {
                    drop(s);
                    return Err(self.broken_pipe(flags));
                }
                _ => return Err(ENOTCONN),
            }
        };
        let mut t = tx.borrow_mut();
        if t.receiver_gone {
            drop(t);
            return Err(self.broken_pipe(flags));
        }
        if kind == SockType::SeqPacket {
            if data.len() > t.capacity_bytes {
                return Err(EMSGSIZE);
            }
            if !t.fits(data.len()) {
                drop(t);
                return Err(self.wait_or_again(nonblock));
            }
            t.push_message(Message {
                bytes: data.to_vec(),
                from: Addr::Unnamed,
            });
            return Ok(data.len() as u64);
        }
        if data.is_empty() {
            return Ok(0);
        }
        let n = t.space().min(data.len());
        if n == 0 {
            drop(t);
            return Err(self.wait_or_again(nonblock));
        }
        t.push_bytes(&data[..n]);
        Ok(n as u64)
    }

    /// The queue a datagram goes to (None: a UDP datagram nobody is bound to receive, dropped) and the sender's
    /// address as the receiver sees it.
    fn datagram_route(
        &mut self,
        sock: &SharedSocket,
        dest: Option<&[u8]>,
    ) -> Result<(Option<SharedChannel>, Addr), Errno> {
        let family = sock.borrow().family;
        if family == Family::Unix {
            let inbox = match dest {
                Some(raw) => {
                    let (target, _) = self.unix_target(unix::parse(raw)?)?;
                    let t = target.borrow();
                    if t.kind != SockType::Dgram {
                        return Err(EPROTOTYPE);
                    }
                    t.inbox.clone()
                }
                None => Some(sock.borrow().dgram_peer.clone().ok_or(ENOTCONN)?),
            };
            let from = sock.borrow().local.clone().unwrap_or(Addr::Unnamed);
            return Ok((inbox, from));
        }
        let (ip, port) = match dest {
            Some(raw) => self.inet_destination(family, raw)?,
            None => inet_parts(&sock.borrow().peer).ok_or(EDESTADDRREQ)?,
        };
        self.inet_autobind(sock, &ip)?;
        let (_, local_port) = inet_parts(&sock.borrow().local).expect("autobound");
        let local_ip = {
            let s = sock.borrow();
            inet::source_for(&inet_parts(&s.local).expect("autobound").0, &ip)
        };
        let target = self.inet_bound(Proto::Udp, &ip, port);
        let from = Addr::Inet {
            ip: local_ip,
            port: local_port,
        };
        Ok((target.and_then(|t| t.borrow().inbox.clone()), from))
    }

    fn send_datagram(
        &mut self,
        sock: &SharedSocket,
        nonblock: bool,
        data: &[u8],
        dest: Option<&[u8]>,
    ) -> SysResult {
        if data.len() > CHANNEL_BYTES_MAX {
            return Err(EMSGSIZE);
        }
        let unix = sock.borrow().family == Family::Unix;
        let (inbox, from) = self.datagram_route(sock, dest)?;
        let len = data.len() as u64;
        // UDP: a datagram nobody receives, or that finds the receiver's queue full, is dropped.
        let Some(inbox) = inbox else {
            return Ok(len);
        };
        let mut q = inbox.borrow_mut();
        if q.receiver_gone {
            return if unix { Err(ECONNREFUSED) } else { Ok(len) };
        }
        if !q.fits(data.len()) {
            if !unix {
                return Ok(len);
            }
            drop(q);
            return Err(self.wait_or_again(nonblock));
        }
        q.push_message(Message {
            bytes: data.to_vec(),
            from,
        });
        Ok(len)
    }

    fn sys_sendto(
        &mut self,
        fd: i32,
        buf: u64,
        len: u64,
        flags: u32,
        addr: u64,
        addr_len: u64,
    ) -> SysResult {
        let (sock, nonblock) = self.socket_of(fd)?;
        let data = self.read_mem(buf, len.min(RW_BYTES_MAX))?;
        let dest = if addr != 0 {
            Some(self.read_sockaddr(addr, addr_len)?)
        } else {
            None
        };
        // A destination given to a connected stream socket is ignored (tcp(7)).
        let dest = dest.filter(|_| !sock.borrow().kind.connected());
        self.socket_send(&sock, nonblock, &data, flags, dest.as_deref())
    }

    /// The iovecs, name and control of a `struct msghdr`.
    fn read_msghdr(&mut self, msg: u64) -> Result<MsgHdr, Errno> {
        let h = self.read_mem(msg, MSGHDR_BYTES)?;
        let word = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().unwrap());
        let name = word(0);
        let name_len = u32::from_le_bytes(h[8..12].try_into().unwrap()) as u64;
        let iov = self.read_iovecs(word(16), word(24))?;
        let control_len = word(40);
        Ok((name, name_len, iov, control_len))
    }

    fn sys_sendmsg(&mut self, fd: i32, msg: u64, flags: u32) -> SysResult {
        let (sock, nonblock) = self.socket_of(fd)?;
        let (name, name_len, iov, control_len) = self.read_msghdr(msg)?;
        if control_len != 0 {
            // SCM_RIGHTS and SCM_CREDENTIALS are not carried (net/mod.rs).
            return Err(EOPNOTSUPP);
        }
        let mut data = Vec::new();
        for (base, len) in iov {
            data.extend_from_slice(&self.read_mem(base, len.min(RW_BYTES_MAX))?);
        }
        let dest = if name != 0 && !sock.borrow().kind.connected() {
            Some(self.read_sockaddr(name, name_len)?)
        } else {
            None
        };
        self.socket_send(&sock, nonblock, &data, flags, dest.as_deref())
    }

    // ---------------------------------------------------------------------------------------------------------
    // Receiving.

    fn socket_recv(
        &mut self,
        sock: &SharedSocket,
        nonblock: bool,
        len: usize,
        flags: u32,
    ) -> Result<Received, Errno> {
        let nonblock = nonblock || flags & MSG_DONTWAIT != 0;
        let peek = flags & MSG_PEEK != 0;
        let s = sock.borrow();
        let (channel, eof) = match (&s.state, s.kind) {
            (State::Connected { rx, .. }, _) => {
                (rx.clone(), s.shut_read || rx.borrow().sender_gone)
            }
            (_, SockType::Dgram) => (
                s.inbox.clone().expect("datagram sockets have an inbox"),
                s.shut_read,
            ),
            _ => return Err(ENOTCONN),
        };
        let kind = s.kind;
        drop(s);
        let mut c = channel.borrow_mut();
        if kind == SockType::Stream {
            let avail = c.queued_bytes();
            let wait_all = flags & MSG_WAITALL != 0 && !nonblock && avail < len && !eof;
            if (avail == 0 && !eof && len > 0) || (wait_all && avail > 0) {
                drop(c);
                return Err(self.wait_or_again(nonblock));
            }
            let bytes = c.take_bytes(len, peek);
            let full_len = bytes.len();
            return Ok(Received {
                bytes,
                from: None,
                full_len,
            });
        }
        if c.next_message_len().is_none() {
            drop(c);
            if eof {
                return Ok(Received {
                    bytes: Vec::new(),
                    from: None,
                    full_len: 0,
                });
            }
            return Err(self.wait_or_again(nonblock));
        }
        let m = c.take_message(peek).expect("a message is queued");
        let full_len = m.bytes.len();
        let mut bytes = m.bytes;
        bytes.truncate(len);
        Ok(Received {
            bytes,
            from: (kind == SockType::Dgram).then_some(m.from),
            full_len,
        })
    }

    /// read(2) and readv(2) of a socket: recv with no flags.
    pub(in crate::linux) fn socket_read(
        &mut self,
        sock: &SharedSocket,
        nonblock: bool,
        len: usize,
    ) -> Result<Vec<u8>, Errno> {
        self.socket_recv(sock, nonblock, len, 0).map(|r| r.bytes)
    }

    fn sys_recvfrom(
        &mut self,
        fd: i32,
        buf: u64,
        len: u64,
        flags: u32,
        addr: u64,
        len_ptr: u64,
    ) -> SysResult {
        let (sock, nonblock) = self.socket_of(fd)?;
        let got = self.socket_recv(&sock, nonblock, len.min(RW_BYTES_MAX) as usize, flags)?;
        self.write_mem(buf, &got.bytes)?;
        if let Some(from) = &got.from {
            let family = sock.borrow().family;
            self.write_sockaddr(addr, len_ptr, &encode_addr(family, Some(from)))?;
        } else if addr != 0 && len_ptr != 0 {
            self.write_u32(len_ptr, 0)?;
        }
        Ok(if flags & MSG_TRUNC != 0 {
            got.full_len
        } else {
            got.bytes.len()
        } as u64)
    }

    fn sys_recvmsg(&mut self, fd: i32, msg: u64, flags: u32) -> SysResult {
        let (sock, nonblock) = self.socket_of(fd)?;
        let (name, name_len, iov, _) = self.read_msghdr(msg)?;
        let room: u64 = iov.iter().map(|&(_, l)| l).sum::<u64>().min(RW_BYTES_MAX);
        let got = self.socket_recv(&sock, nonblock, room as usize, flags)?;
        let mut at = 0usize;
        for (base, len) in iov {
            if at >= got.bytes.len() {
                break;
            }
            let n = (len as usize).min(got.bytes.len() - at);
            self.write_mem(base, &got.bytes[at..at + n])?;
            at += n;
        }
        // msg_namelen: the sender's address length (0 for a connected stream); no control data; msg_flags.
        let from = got
            .from
            .as_ref()
            .map(|a| encode_addr(sock.borrow().family, Some(a)))
            .unwrap_or_default();
        if name != 0 && !from.is_empty() {
            self.write_mem(name, &from[..from.len().min(name_len as usize)])?;
        }
        self.write_u32(msg + 8, from.len() as u32)?;
        self.write_u64(msg + 40, 0)?;
        let truncated = got.full_len > got.bytes.len();
        self.write_u32(msg + 48, if truncated { MSG_TRUNC } else { 0 })?;
        Ok(if flags & MSG_TRUNC != 0 {
            got.full_len
        } else {
            got.bytes.len()
        } as u64)
    }

    // ---------------------------------------------------------------------------------------------------------
    // Options.

    /// ioctl(2) on a socket: FIONREAD (bytes ready: the stream's, or the next datagram's length) and FIONBIO.
    pub(in crate::linux) fn socket_ioctl(
        &mut self,
        sock: &SharedSocket,
        desc: &crate::linux::fd::Description,
        request: u64,
        arg: u64,
    ) -> SysResult {
        const FIONREAD: u64 = 0x541b;
        const FIONBIO: u64 = 0x5421;
        match request {
            FIONREAD => {
                let ready = {
                    let s = sock.borrow();
                    let queue = match &s.state {
                        State::Connected { rx, .. } => Some(rx.clone()),
                        _ => s.inbox.clone(),
                    };
                    queue.map_or(0, |q| {
                        let q = q.borrow();
                        if s.kind == SockType::Stream {
                            q.queued_bytes()
                        } else {
                            q.next_message_len().unwrap_or(0)
                        }
                    })
                };
                self.write_u32(arg, ready as u32)?;
                Ok(0)
            }
            FIONBIO => {
                let on = u32::from_le_bytes(self.read_mem(arg, 4)?.try_into().unwrap()) != 0;
                let mut d = desc.borrow_mut();
                if on {
                    d.flags |= O_NONBLOCK;
                } else {
                    d.flags &= !O_NONBLOCK;
                }
                Ok(0)
            }
            _ => Err(ENOTTY),
        }
    }

    fn sys_setsockopt(&mut self, fd: i32, level: i32, name: i32, val: u64, len: u64) -> SysResult {
        let (sock, _) = self.socket_of(fd)?;
        if (len as i32) < 0 {
            return Err(EINVAL);
        }
        let shape = option_shape(&sock.borrow(), level, name).ok_or(ENOPROTOOPT)?;
        let value = match shape {
            OptionShape::Bytes(n) => {
                if (len as usize) < n {
                    return Err(EINVAL);
                }
                self.read_mem(val, n as u64)?
            }
            OptionShape::Bool | OptionShape::Int => {
                if len < 4 {
                    return Err(EINVAL);
                }
                let v = i32::from_le_bytes(self.read_mem(val, 4)?.try_into().unwrap());
                let v = match (shape, level, name) {
                    (OptionShape::Bool, ..) => (v != 0) as i32,
                    // socket(7): the kernel doubles the value (for its bookkeeping) and getsockopt shows that,
                    // with floors of SOCK_MIN_SNDBUF and SOCK_MIN_RCVBUF and a ceiling of wmem_max/rmem_max.
                    (_, SOL_SOCKET, SO_SNDBUF) => {
                        (v.clamp(0, CHANNEL_BYTES_MAX as i32) * 2).max(4608)
                    }
                    (_, SOL_SOCKET, SO_RCVBUF) => {
                        (v.clamp(0, CHANNEL_BYTES_MAX as i32) * 2).max(2304)
                    }
                    _ => v,
                };
                v.to_le_bytes().to_vec()
            }
        };
        let mut s = sock.borrow_mut();
        if level == IPPROTO_IPV6 && name == IPV6_V6ONLY && s.local.is_some() {
            return Err(EINVAL);
        }
        s.options.insert((level, name), value);
        Ok(0)
    }

    /// An option's value as getsockopt shows it.
    fn option_value(&self, s: &Socket, level: i32, name: i32) -> Result<Vec<u8>, Errno> {
        let int = |v: i32| Ok(v.to_le_bytes().to_vec());
        match (level, name) {
            (SOL_SOCKET, SO_TYPE) => int(s.kind.number() as i32),
            (SOL_SOCKET, SO_DOMAIN) => int(s.family.number() as i32),
            (SOL_SOCKET, SO_PROTOCOL) => int(s.protocol),
            (SOL_SOCKET, SO_ERROR) => int(0),
            (SOL_SOCKET, SO_ACCEPTCONN) => int(s.is_listening() as i32),
            (SOL_SOCKET, SO_PEERCRED) if s.family == Family::Unix => {
                let pid = s.peer_pid.unwrap_or(0);
                let (uid, gid) = if s.peer_pid.is_some() {
                    (GUEST_UID as u32, GUEST_GID as u32)
                } else {
                    (u32::MAX, u32::MAX)
                };
                let mut out = pid.to_le_bytes().to_vec();
                out.extend_from_slice(&uid.to_le_bytes());
                out.extend_from_slice(&gid.to_le_bytes());
                Ok(out)
            }
            _ => {
                let shape = option_shape(s, level, name).ok_or(ENOPROTOOPT)?;
                if let Some(v) = s.options.get(&(level, name)) {
                    return Ok(v.clone());
                }
                match (shape, name) {
                    (OptionShape::Bytes(n), _) => Ok(vec![0; n]),
                    (_, SO_SNDBUF | SO_RCVBUF) if level == SOL_SOCKET => {
                        int(default_buffer(s, name))
                    }
                    _ => int(0),
                }
            }
        }
    }

    fn sys_getsockopt(
        &mut self,
        fd: i32,
        level: i32,
        name: i32,
        val: u64,
        len_ptr: u64,
    ) -> SysResult {
        let (sock, _) = self.socket_of(fd)?;
        let room = i32::from_le_bytes(self.read_mem(len_ptr, 4)?.try_into().unwrap());
        if room < 0 {
            return Err(EINVAL);
        }
        let value = self.option_value(&sock.borrow(), level, name)?;
        let n = (room as usize).min(value.len());
        self.write_mem(val, &value[..n])?;
        self.write_u32(len_ptr, n as u32)?;
        Ok(0)
    }
}
