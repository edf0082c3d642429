//! The guest's sockets: the socket objects, their state machine, addresses, options, and the name space of bound
//! addresses (socket(7), unix(7), ip(7), ipv6(7), tcp(7), udp(7)). The syscalls that drive them are
//! syscalls/sockets.rs; the bytes move through the transport (transport.rs), which this layer reaches only
//! through `Channel`'s methods, so that a simulated network can later carry a connection between guests.
//!
//! Families: AF_UNIX (path names are socket nodes of the guest file system, keyed here by inode number;
//! abstract names start with a NUL byte), AF_INET and AF_INET6 on the guest's own loopback (unix.rs, inet.rs).
//!
//! Decisions worth knowing:
//! - A socket is shared (`Shared<Socket>`) by the open file descriptions that hold it and by the name
//!   space; `open_count` counts the descriptions (like a pipe's reader and writer counts), and the last one
//!   closing closes the socket: its peer reads end of file and its writes fail with EPIPE.
//! - connect on a stream socket completes at once, as on Linux's loopback: the server's end is created then and
//!   queued on the listener until accept takes it (the backlog bounds the queue: `backlog + 1` entries, as
//!   Linux's `sk_acceptq_is_full`). A non-blocking TCP connect answers EINPROGRESS (Linux does, even on the
//!   loopback) and is connected by the time the program looks.
//! - Control data (SCM_RIGHTS, SCM_CREDENTIALS) is not carried: sendmsg with control data is EOPNOTSUPP.
//! - SO_RCVTIMEO and SO_SNDTIMEO are kept and read back but a blocked call does not time out (FIXME).
//! - Ephemeral ports: Linux's range 32768-60999, handed out in order from a start drawn from the seed.

pub mod inet;
pub mod transport;
pub mod unix;

use crate::shared::Shared;
use std::collections::{BTreeMap, VecDeque};
use transport::SharedChannel;

pub const AF_UNSPEC: u16 = 0;
pub const AF_UNIX: u16 = 1;
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

pub const SOCK_STREAM: u32 = 1;
pub const SOCK_DGRAM: u32 = 2;
pub const SOCK_SEQPACKET: u32 = 5;

/// The most connections a listener may be told to queue (net.core.somaxconn).
pub const BACKLOG_MAX: u32 = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    Unix,
    Inet,
    Inet6,
}

impl Family {
    pub fn number(self) -> u16 {
        match self {
            Family::Unix => AF_UNIX,
            Family::Inet => AF_INET,
            Family::Inet6 => AF_INET6,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SockType {
    Stream,
    Dgram,
    SeqPacket,
}

impl SockType {
    pub fn number(self) -> u32 {
        match self {
            SockType::Stream => SOCK_STREAM,
            SockType::Dgram => SOCK_DGRAM,
            SockType::SeqPacket => SOCK_SEQPACKET,
        }
    }

    /// Connection-oriented: listen, accept, and a peer for life.
    pub fn connected(self) -> bool {
        self != SockType::Dgram
    }

    /// Keeps message boundaries.
    pub fn messages(self) -> bool {
        self != SockType::Stream
    }
}

/// A socket address, in a family-neutral form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Addr {
    /// An unbound AF_UNIX socket (or any socket before it is bound).
    Unnamed,
    /// An AF_UNIX path name as given to bind, and the inode of the socket node it made.
    UnixPath { path: Vec<u8>, ino: u64 },
    /// An AF_UNIX abstract name (the bytes after the leading NUL).
    UnixAbstract(Vec<u8>),
    /// An IPv4 or IPv6 address and port; IPv4 addresses are kept IPv4-mapped (::ffff:a.b.c.d).
    Inet { ip: [u8; 16], port: u16 },
}

/// What a socket is doing.
#[derive(Debug)]
pub enum State {
    /// Neither listening nor connected (a datagram socket stays here; its peer, if any, is `dgram_peer`).
    Idle,
    /// listen(2): connections made to it and not yet accepted, oldest first.
    Listening {
        backlog: u32,
        pending: VecDeque<SharedSocket>,
    },
    /// A connected stream or seqpacket socket: what it reads and what it writes.
    Connected {
        rx: SharedChannel,
        tx: SharedChannel,
    },
}

/// One socket.
#[derive(Debug)]
pub struct Socket {
    pub family: Family,
    pub kind: SockType,
    pub protocol: i32,
    pub state: State,
    /// The bound address (None: not bound yet).
    pub local: Option<Addr>,
    /// The connected peer's address.
    pub peer: Option<Addr>,
    /// The pid on the other end (SO_PEERCRED), for AF_UNIX connections and pairs.
    pub peer_pid: Option<i32>,
    /// A datagram socket's queue of received messages.
    pub inbox: Option<SharedChannel>,
    /// A connected AF_UNIX datagram socket's destination: its peer's queue.
    pub dgram_peer: Option<SharedChannel>,
    /// The pid that created it or last listened on it: what a peer's SO_PEERCRED shows.
    pub cred_pid: i32,
    pub shut_read: bool,
    pub shut_write: bool,
    /// Options set by setsockopt that are kept as given (level, name) -> value bytes.
    pub options: BTreeMap<(i32, i32), Vec<u8>>,
    /// Open file descriptions holding it; the socket closes when the last goes.
    pub open_count: u32,
    /// Connections queued for accept so far (part of its EPOLLET edge counter).
    pub connections_queued: u64,
    pub closed: bool,
}

pub type SharedSocket = Shared<Socket>;

impl Socket {
    pub fn new(family: Family, kind: SockType, protocol: i32) -> Socket {
        Socket {
            family,
            kind,
            protocol,
            state: State::Idle,
            local: None,
            peer: None,
            peer_pid: None,
            inbox: (kind == SockType::Dgram).then(transport::Channel::shared),
            dgram_peer: None,
            cred_pid: 0,
            shut_read: false,
            shut_write: false,
            options: BTreeMap::new(),
            open_count: 0,
            connections_queued: 0,
            closed: false,
        }
    }

    pub fn shared(self) -> SharedSocket {
        Shared::new(self)
    }

    pub fn is_listening(&self) -> bool {
        matches!(self.state, State::Listening { .. })
    }

    /// The poll(2) events the socket is ready for (POLLIN 0x1, POLLOUT 0x4, POLLERR 0x8, POLLHUP 0x10,
    /// POLLRDHUP 0x2000): readable with data, a pending connection or the peer gone; writable with room.
    /// A counter that moves whenever something new happens that a reader or writer of the socket may wait
    /// for: bytes or a message arriving, room made by the peer's reads, a connection queued, an end going away
    /// (epoll's EPOLLET edge, ready.rs).
    pub fn edge(&self) -> u64 {
        let channel = |c: Option<&SharedChannel>, pushes: bool| {
            c.map_or(0, |c| {
                let c = c.borrow();
                let gone = (c.sender_gone as u64) << 1 | c.receiver_gone as u64;
                let n = if pushes { c.pushes } else { c.takes };
                n.wrapping_mul(4).wrapping_add(gone)
            })
        };
        let (rx, tx) = match &self.state {
            State::Connected { rx, tx } => (Some(rx), Some(tx)),
            _ => (self.inbox.as_ref(), self.dgram_peer.as_ref()),
        };
        let shut = (self.shut_read as u64) << 1 | self.shut_write as u64;
        channel(rx, true)
            .wrapping_add(channel(tx, false))
            .wrapping_add(self.connections_queued)
            .wrapping_mul(4)
            .wrapping_add(shut)
    }

    pub fn poll_ready(&self) -> u16 {
        const IN: u16 = 0x1;
        const OUT: u16 = 0x4;
        const HUP: u16 = 0x10;
        const RDHUP: u16 = 0x2000;
        match &self.state {
            State::Listening { pending, .. } => {
                if pending.is_empty() {
                    0
                } else {
                    IN
                }
            }
            State::Connected { rx, tx } => {
                let (rx, tx) = (rx.borrow(), tx.borrow());
                let mut ready = 0;
                let eof = rx.sender_gone || self.shut_read;
                if !rx.is_empty() || eof {
                    ready |= IN;
                }
                if eof {
                    ready |= RDHUP;
                }
                if tx.receiver_gone || self.shut_write || tx.space() > 0 {
                    ready |= OUT;
                }
                if eof && (tx.receiver_gone || self.shut_write) {
                    ready |= HUP;
                }
                ready
            }
            State::Idle if self.kind == SockType::Dgram => {
                let mut ready = 0;
                if self.inbox.as_ref().is_some_and(|q| !q.borrow().is_empty()) || self.shut_read {
                    ready |= IN;
                }
                let room = self
                    .dgram_peer
                    .as_ref()
                    .is_none_or(|q| q.borrow().fits(1) || q.borrow().receiver_gone);
                if room {
                    ready |= OUT;
                }
                ready
            }
            // A stream socket neither listening nor connected (tcp_poll: TCP_CLOSE is POLLOUT | POLLHUP).
            State::Idle => OUT | HUP,
        }
    }

    /// An option's value as an int (0 when unset).
    pub fn option_int(&self, level: i32, name: i32) -> i32 {
        self.options
            .get(&(level, name))
            .and_then(|v| v.get(..4))
            .map_or(0, |b| i32::from_le_bytes(b.try_into().unwrap()))
    }

    /// The last description holding the socket went: the peer reads end of file, its sends fail, and
    /// connections queued on a listener and never accepted are closed too.
    pub fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Connected { rx, tx } => {
                tx.borrow_mut().sender_gone = true;
                rx.borrow_mut().receiver_gone = true;
                self.state = State::Connected { rx, tx };
            }
            State::Listening { pending, .. } => {
                for p in pending {
                    p.borrow_mut().close();
                }
            }
            State::Idle => {}
        }
        if let Some(inbox) = &self.inbox {
            inbox.borrow_mut().receiver_gone = true;
        }
    }
}

/// Deep copies for snapshots: the snapshot's map of originals to copies (so that sharing is kept).
pub trait Remap {
    fn socket(&mut self, s: &SharedSocket) -> SharedSocket;
    fn channel(&mut self, c: &SharedChannel) -> SharedChannel;
}

impl Socket {
    /// A copy whose sockets and channels are the map's copies.
    pub fn copy_with(&self, map: &mut impl Remap) -> Socket {
        let state = match &self.state {
            State::Idle => State::Idle,
            State::Listening { backlog, pending } => State::Listening {
                backlog: *backlog,
                pending: pending.iter().map(|p| map.socket(p)).collect(),
            },
            State::Connected { rx, tx } => State::Connected {
                rx: map.channel(rx),
                tx: map.channel(tx),
            },
        };
        Socket {
            family: self.family,
            kind: self.kind,
            protocol: self.protocol,
            state,
            local: self.local.clone(),
            peer: self.peer.clone(),
            peer_pid: self.peer_pid,
            inbox: self.inbox.as_ref().map(|c| map.channel(c)),
            dgram_peer: self.dgram_peer.as_ref().map(|c| map.channel(c)),
            cred_pid: self.cred_pid,
            shut_read: self.shut_read,
            shut_write: self.shut_write,
            options: self.options.clone(),
            open_count: self.open_count,
            connections_queued: self.connections_queued,
            closed: self.closed,
        }
    }
}

/// Transport protocol of an inet binding: TCP and UDP ports are separate spaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

/// The name space of bound addresses: who is reachable at which name. Closed sockets are dropped from it
/// lazily (a lookup or a bind skips and forgets them).
#[derive(Debug)]
pub struct Net {
    /// AF_UNIX path names, by the inode number of their socket node.
    pub unix_paths: BTreeMap<u64, SharedSocket>,
    pub unix_abstract: BTreeMap<Vec<u8>, SharedSocket>,
    /// Inet bindings by protocol and port (several sockets may share a port: distinct addresses,
    /// SO_REUSEADDR, SO_REUSEPORT).
    pub inet: BTreeMap<(Proto, u16), Vec<SharedSocket>>,
    /// The next ephemeral port to try.
    pub port_next: u16,
    /// The next AF_UNIX autobind name.
    pub autobind_next: u32,
}

impl Net {
    pub fn new(seed: u64) -> Net {
        Net {
            unix_paths: BTreeMap::new(),
            unix_abstract: BTreeMap::new(),
            inet: BTreeMap::new(),
            port_next: inet::first_ephemeral_port(seed),
            autobind_next: 0,
        }
    }

    pub fn copy_with(&self, map: &mut impl Remap) -> Net {
        Net {
            unix_paths: self
                .unix_paths
                .iter()
                .map(|(k, s)| (*k, map.socket(s)))
                .collect(),
            unix_abstract: self
                .unix_abstract
                .iter()
                .map(|(k, s)| (k.clone(), map.socket(s)))
                .collect(),
            inet: self
                .inet
                .iter()
                .map(|(k, v)| (*k, v.iter().map(|s| map.socket(s)).collect()))
                .collect(),
            port_next: self.port_next,
            autobind_next: self.autobind_next,
        }
    }

    /// The live socket bound to an AF_UNIX name.
    pub fn unix_lookup(&mut self, addr: &Addr) -> Option<SharedSocket> {
        let found = match addr {
            Addr::UnixPath { ino, .. } => self.unix_paths.get(ino).cloned(),
            Addr::UnixAbstract(name) => self.unix_abstract.get(name).cloned(),
            _ => None,
        };
        match found {
            Some(s) if !s.borrow().closed => Some(s),
            Some(_) => {
                match addr {
                    Addr::UnixPath { ino, .. } => self.unix_paths.remove(ino),
                    Addr::UnixAbstract(name) => self.unix_abstract.remove(name),
                    _ => None,
                };
                None
            }
            None => None,
        }
    }
}
