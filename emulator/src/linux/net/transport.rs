//! The transport: how bytes move between two endpoints of this run. A `Channel` is one direction of a
//! connection (a byte stream, or a queue of messages that keep their boundaries) with a bounded capacity and
//! the two ends' liveness: the sender gone means end of file once drained, the receiver gone means a send
//! fails (EPIPE for streams, ECONNREFUSED for datagrams).
//!
//! The socket layer (mod.rs, unix.rs, inet.rs) never touches a channel's buffers: it asks for space, pushes,
//! peeks and pops through the methods below. That is the seam a simulated network takes later: a connection
//! between guests is a pair of channels whose far ends are links of the network instead of another socket of
//! the same run.
//!
//! Invariant: `queued_bytes` is the sum of the bytes held (stream bytes plus message payloads) and never exceeds
//! `capacity_bytes`, except for the one message that may be pushed into an empty queue whatever its size (a
//! datagram never bigger than the capacity is ever refused for want of room alone, see `fits`).

use super::Addr;
use crate::shared::Shared;
use std::collections::VecDeque;

/// Bytes a channel holds at most: Linux's default socket buffer (net.core.wmem_default, 212992 bytes).
pub const CHANNEL_BYTES_MAX: usize = 212_992;
/// Messages a datagram queue holds at most (net.unix.max_dgram_qlen's default).
pub const CHANNEL_MESSAGES_MAX: usize = 512;

/// One message of a datagram or seqpacket channel, with the address of its sender.
#[derive(Clone, Debug)]
pub struct Message {
    pub bytes: Vec<u8>,
    pub from: Addr,
}

/// One direction between two endpoints.
#[derive(Clone, Debug)]
pub struct Channel {
    /// Stream bytes (a stream channel uses only these).
    bytes: VecDeque<u8>,
    /// Messages (a datagram or seqpacket channel uses only these).
    messages: VecDeque<Message>,
    queued_bytes: usize,
    pub capacity_bytes: usize,
    /// No more data will come: a reader gets end of file once the channel is drained.
    pub sender_gone: bool,
    /// Nobody will read: a send fails.
    pub receiver_gone: bool,
    /// Pushes and takes so far: what epoll's EPOLLET sees as new edges (ready.rs).
    pub pushes: u64,
    pub takes: u64,
}

pub type SharedChannel = Shared<Channel>;

impl Channel {
    pub fn shared() -> SharedChannel {
        Shared::new(Channel {
            bytes: VecDeque::new(),
            messages: VecDeque::new(),
            queued_bytes: 0,
            capacity_bytes: CHANNEL_BYTES_MAX,
            sender_gone: false,
            receiver_gone: false,
            pushes: 0,
            takes: 0,
        })
    }

    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty() && self.messages.is_empty()
    }

    /// Room for more stream bytes.
    pub fn space(&self) -> usize {
        self.capacity_bytes.saturating_sub(self.queued_bytes)
    }

    /// Whether a message of `len` bytes can be queued now.
    pub fn fits(&self, len: usize) -> bool {
        self.messages.len() < CHANNEL_MESSAGES_MAX
            && (self.messages.is_empty() || len <= self.space())
    }

    /// Appends stream bytes; the caller took at most `space()`.
    pub fn push_bytes(&mut self, data: &[u8]) {
        debug_assert!(data.len() <= self.space());
        self.bytes.extend(data.iter().copied());
        self.queued_bytes += data.len();
        self.pushes += 1;
    }

    /// Takes (or, with `peek`, copies) up to `len` stream bytes.
    pub fn take_bytes(&mut self, len: usize, peek: bool) -> Vec<u8> {
        let n = len.min(self.bytes.len());
        if peek {
            return self.bytes.iter().take(n).copied().collect();
        }
        self.queued_bytes -= n;
        self.takes += 1;
        self.bytes.drain(..n).collect()
    }

    pub fn push_message(&mut self, m: Message) {
        debug_assert!(self.fits(m.bytes.len()));
        self.queued_bytes += m.bytes.len();
        self.pushes += 1;
        self.messages.push_back(m);
    }

    /// The length of the next message, if any.
    pub fn next_message_len(&self) -> Option<usize> {
        self.messages.front().map(|m| m.bytes.len())
    }

    /// Takes (or, with `peek`, copies) the next message whole.
    pub fn take_message(&mut self, peek: bool) -> Option<Message> {
        if peek {
            return self.messages.front().cloned();
        }
        let m = self.messages.pop_front()?;
        self.queued_bytes -= m.bytes.len();
        self.takes += 1;
        Some(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_bytes_keep_their_order_and_peeking_takes_nothing() {
        let c = Channel::shared();
        let mut c = c.borrow_mut();
        c.push_bytes(b"hello ");
        c.push_bytes(b"world");
        assert_eq!(c.take_bytes(3, true), b"hel");
        assert_eq!(c.take_bytes(8, false), b"hello wo");
        assert_eq!(c.queued_bytes(), 3);
        assert_eq!(c.take_bytes(100, false), b"rld");
        assert!(c.is_empty());
    }

    #[test]
    fn messages_keep_their_boundaries_and_the_capacity_holds() {
        let c = Channel::shared();
        let mut c = c.borrow_mut();
        let from = Addr::Unnamed;
        c.push_message(Message {
            bytes: b"ab".to_vec(),
            from: from.clone(),
        });
        c.push_message(Message {
            bytes: b"cde".to_vec(),
            from: from.clone(),
        });
        assert_eq!(c.next_message_len(), Some(2));
        assert_eq!(c.take_message(false).unwrap().bytes, b"ab");
        assert_eq!(c.take_message(false).unwrap().bytes, b"cde");
        assert!(c.take_message(false).is_none());
        c.push_message(Message {
            bytes: vec![0; CHANNEL_BYTES_MAX],
            from: from.clone(),
        });
        assert!(!c.fits(1), "a full queue takes nothing more");
    }
}
