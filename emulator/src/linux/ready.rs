//! Readiness: the one definition of "this file is ready to read or write" that poll, select and epoll share
//! (`readiness`), and the objects that exist only to be waited on: eventfd and epoll instances.
//!
//! Why one function: poll, select and epoll_wait must never disagree about a descriptor (a program that polls
//! and then reads must not block). Each file kind answers here once, in poll(2) bits (the epoll bits are the
//! same numbers), with an edge counter that moves whenever something new happens to the file (bytes written
//! into a pipe, an eventfd write, a timer expiry), so that epoll's EPOLLET reports a new edge and nothing
//! else, and the time at which the file becomes ready by the clock alone (a timerfd), so that a waiter can ask
//! to be woken then.
//!
//! Waiting itself is the kernel's Retry wait (kernel.rs): a poller that finds nothing ready is re-run whenever
//! another task did something, at its timeout, and at the earliest `wake_at` of the files it polls.

use super::fd::{Description, FileKind, OpenFile, PIPE_BUF, PIPE_BYTES_MAX};
use super::ids::GuestNs;
use crate::shared::{Shared, WeakShared};
use std::collections::BTreeMap;

pub const POLLIN: u32 = 0x1;
pub const POLLPRI: u32 = 0x2;
pub const POLLOUT: u32 = 0x4;
pub const POLLERR: u32 = 0x8;
pub const POLLHUP: u32 = 0x10;
pub const POLLNVAL: u32 = 0x20;
pub const POLLRDNORM: u32 = 0x40;
pub const POLLRDBAND: u32 = 0x80;
pub const POLLWRNORM: u32 = 0x100;
pub const POLLWRBAND: u32 = 0x200;
/// epoll_ctl flags beside the event bits.
pub const EPOLLEXCLUSIVE: u32 = 1 << 28;
pub const EPOLLWAKEUP: u32 = 1 << 29;
pub const EPOLLONESHOT: u32 = 1 << 30;
pub const EPOLLET: u32 = 1 << 31;
/// The flag bits of an epoll item (not events).
pub const EPOLL_FLAGS: u32 = EPOLLEXCLUSIVE | EPOLLWAKEUP | EPOLLONESHOT | EPOLLET;
/// What a file that cannot wait is: always readable and writable (DEFAULT_POLLMASK).
const ALWAYS: u32 = POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM;
/// Deepest nesting of epoll instances (Linux's EPOLL_MAX_NESTS).
pub const EPOLL_NESTS_MAX: u32 = 4;
/// The largest eventfd counter (2^64 - 2): a write that would pass it waits.
pub const EVENTFD_MAX: u64 = u64::MAX - 1;

/// What a file is ready for at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// poll(2) bits (POLLIN, POLLOUT, POLLERR, POLLHUP, POLLRDHUP 0x2000 and the NORM bits).
    pub events: u32,
    /// Moves whenever something new happened to the file (EPOLLET's edge).
    pub edge: u64,
    /// When the file becomes ready by the clock alone (a timerfd's next expiry).
    pub wake_at: Option<GuestNs>,
}

/// An eventfd: a counter that writes add to and reads take (or decrement by one, EFD_SEMAPHORE).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventFd {
    pub count: u64,
    pub semaphore: bool,
    /// Successful writes and reads so far (the edge counter).
    pub changes: u64,
}

impl EventFd {
    /// A read: the value it returns, or None when the counter is 0 (the reader waits).
    pub fn read(&mut self) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        self.changes = self.changes.wrapping_add(1);
        if self.semaphore {
            self.count -= 1;
            Some(1)
        } else {
            Some(std::mem::take(&mut self.count))
        }
    }

    /// A write of `v` (not u64::MAX, which the caller refuses): false when it does not fit yet (the writer
    /// waits).
    pub fn write(&mut self, v: u64) -> bool {
        debug_assert!(v != u64::MAX);
        match self.count.checked_add(v) {
            Some(sum) if sum <= EVENTFD_MAX => {
                self.count = sum;
                if v > 0 {
                    self.changes = self.changes.wrapping_add(1);
                }
                true
            }
            _ => false,
        }
    }
}

/// One descriptor an epoll instance watches.
#[derive(Clone, Debug)]
pub struct EpollItem {
    /// The open file description, weakly: closing its last descriptor removes the item, as in Linux.
    pub file: WeakShared<OpenFile>,
    /// The events asked for, with EPOLLERR and EPOLLHUP always, and the flags (EPOLLET, EPOLLONESHOT).
    pub events: u32,
    pub data: u64,
    /// EPOLLET: the edge counter when the item was last reported (None: report the next time it is ready).
    pub seen: Option<u64>,
}

/// An epoll instance: its interest list, by descriptor number.
#[derive(Clone, Debug, Default)]
pub struct Epoll {
    pub items: BTreeMap<i32, EpollItem>,
    /// The last descriptor a wait reported: the next scan starts after it, so that a wait for fewer events
    /// than are ready serves every descriptor in turn (Linux moves reported level-triggered items to the
    /// back of its ready list).
    pub cursor: i32,
}

/// One event an epoll_wait reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpollEvent {
    pub fd: i32,
    pub events: u32,
    pub data: u64,
    edge: u64,
}

impl Epoll {
    /// The item's events as a wait would report them now (0: not reported), with the file's edge.
    fn item_ready(item: &EpollItem, now: GuestNs, depth: u32) -> Option<(u32, Ready)> {
        let file = item.file.upgrade()?;
        let f = file.try_borrow().ok()?;
        let r = readiness_at(&f, now, depth + 1);
        let events = r.events & item.events & !EPOLL_FLAGS;
        if events == 0 {
            return Some((0, r));
        }
        if item.events & EPOLLET != 0 && item.seen == Some(r.edge) {
            return Some((0, r));
        }
        Some((events, r))
    }

    /// The events a wait would report now, at most `max`, in descriptor order from the cursor on; and the
    /// earliest time one becomes ready by the clock.
    pub fn ready_events(
        &self,
        now: GuestNs,
        max: usize,
        depth: u32,
    ) -> (Vec<EpollEvent>, Option<GuestNs>) {
        let mut out = Vec::new();
        let mut wake_at: Option<GuestNs> = None;
        let after = self.items.range(self.cursor.saturating_add(1)..);
        let before = self.items.range(..=self.cursor);
        for (&fd, item) in after.chain(before) {
            let Some((events, r)) = Self::item_ready(item, now, depth) else {
                continue;
            };
            if events == 0 {
                if let Some(t) = r.wake_at {
                    wake_at = Some(wake_at.map_or(t, |w| w.min(t)));
                }
                continue;
            }
            if out.len() < max {
                out.push(EpollEvent {
                    fd,
                    events,
                    data: item.data,
                    edge: r.edge,
                });
            }
        }
        (out, wake_at)
    }

    /// The events were delivered: edge-triggered items wait for a new edge, one-shot items are disabled
    /// until EPOLL_CTL_MOD re-arms them.
    pub fn reported(&mut self, events: &[EpollEvent]) {
        if let Some(last) = events.last() {
            self.cursor = last.fd;
        }
        for e in events {
            let Some(item) = self.items.get_mut(&e.fd) else {
                continue;
            };
            item.seen = Some(e.edge);
            if item.events & EPOLLONESHOT != 0 {
                item.events &= EPOLL_FLAGS;
            }
        }
    }

    /// Drops the items whose file is closed.
    pub fn prune(&mut self) {
        self.items.retain(|_, i| i.file.strong_count() > 0);
    }

    /// Whether `target` is this instance or reaches it through nested instances (adding it would make a
    /// loop), or nests deeper than Linux allows.
    pub fn would_loop(me: &Description, target: &Description, depth: u32) -> bool {
        if Shared::ptr_eq(me, target) || depth > EPOLL_NESTS_MAX {
            return true;
        }
        let Ok(t) = target.try_borrow() else {
            return true;
        };
        let FileKind::Epoll(inner) = &t.kind else {
            return false;
        };
        inner.items.values().any(|i| {
            i.file
                .upgrade()
                .is_some_and(|f| Self::would_loop(me, &f, depth + 1))
        })
    }
}

/// The edge counter of a file that has no counter of its own (it never waits, or it is an epoll instance):
/// the ready bits themselves, so that EPOLLET reports changes of what it is ready for.
fn edge_of_events(events: u32) -> u64 {
    events as u64
}

/// What `f` is ready for at `now`.
pub fn readiness(f: &OpenFile, now: GuestNs) -> Ready {
    readiness_at(f, now, 0)
}

fn readiness_at(f: &OpenFile, now: GuestNs, depth: u32) -> Ready {
    let simple = |events: u32| Ready {
        events,
        edge: edge_of_events(events),
        wake_at: None,
    };
    match &f.kind {
        FileKind::PipeRead(p) => {
            let p = p.borrow();
            let mut events = 0;
            if !p.buf.is_empty() {
                events |= POLLIN | POLLRDNORM;
            }
            if p.writers == 0 {
                events |= POLLHUP;
            }
            Ready {
                events,
                edge: p.written.wrapping_add((p.writers == 0) as u64),
                wake_at: None,
            }
        }
        FileKind::PipeWrite(p) => {
            let p = p.borrow();
            let mut events = 0;
            if p.readers == 0 {
                events |= POLLERR;
            } else if PIPE_BYTES_MAX - p.buf.len().min(PIPE_BYTES_MAX) >= PIPE_BUF {
                events |= POLLOUT | POLLWRNORM;
            }
            Ready {
                events,
                edge: p.read.wrapping_add((p.readers == 0) as u64),
                wake_at: None,
            }
        }
        FileKind::Socket(s) => {
            let Ok(s) = s.try_borrow() else {
                return simple(0);
            };
            let mut events = s.poll_ready() as u32;
            if events & POLLIN != 0 {
                events |= POLLRDNORM;
            }
            if events & POLLOUT != 0 {
                events |= POLLWRNORM;
            }
            Ready {
                events,
                edge: s.edge(),
                wake_at: None,
            }
        }
        FileKind::EventFd(e) => {
            let mut events = 0;
            if e.count > 0 {
                events |= POLLIN;
            }
            if e.count < EVENTFD_MAX {
                events |= POLLOUT;
            }
            Ready {
                events,
                edge: e.changes,
                wake_at: None,
            }
        }
        FileKind::TimerFd(t) => Ready {
            events: if t.pending(now) > 0 { POLLIN } else { 0 },
            edge: t.edge(now),
            wake_at: t.interval.next_after(now),
        },
        FileKind::Epoll(ep) => {
            if depth > EPOLL_NESTS_MAX {
                return simple(0);
            }
            let (ready, wake_at) = ep.ready_events(now, 1, depth);
            let events = if ready.is_empty() {
                0
            } else {
                POLLIN | POLLRDNORM
            };
            Ready {
                events,
                edge: edge_of_events(events),
                wake_at,
            }
        }
        // Terminals, regular files, directories and devices never wait.
        FileKind::Stdin
        | FileKind::Stdout
        | FileKind::Stderr
        | FileKind::Regular { .. }
        | FileKind::Dir { .. }
        | FileKind::Device(_) => simple(ALWAYS),
    }
}

/// Whether epoll may watch this kind of file: not regular files, directories or devices, which are always
/// ready (epoll_ctl answers EPERM, as Linux does for files without a poll method).
pub fn epoll_can_watch(f: &OpenFile) -> bool {
    !matches!(
        f.kind,
        FileKind::Regular { .. } | FileKind::Dir { .. } | FileKind::Device(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linux::abi::{O_RDONLY, O_RDWR, O_WRONLY};
    use crate::linux::fd::Pipe;

    fn pipe() -> (Description, Description) {
        let p = Shared::new(Pipe::default());
        (
            OpenFile::new(FileKind::PipeRead(p.clone()), O_RDONLY),
            OpenFile::new(FileKind::PipeWrite(p), O_WRONLY),
        )
    }

    fn write(w: &Description, bytes: &[u8]) {
        let d = w.borrow();
        let FileKind::PipeWrite(p) = &d.kind else {
            unreachable!()
        };
        p.borrow_mut().push(bytes);
    }

    fn read_all(r: &Description) {
        let d = r.borrow();
        let FileKind::PipeRead(p) = &d.kind else {
            unreachable!()
        };
        let n = p.borrow().buf.len();
        p.borrow_mut().take(n);
    }

    fn epoll_with(items: &[(i32, &Description, u32)]) -> Epoll {
        let mut ep = Epoll::default();
        for &(fd, d, events) in items {
            ep.items.insert(
                fd,
                EpollItem {
                    file: Shared::downgrade(d),
                    events: events | POLLERR | POLLHUP,
                    data: fd as u64 * 10,
                    seen: None,
                },
            );
        }
        ep
    }

    fn wait(ep: &mut Epoll) -> Vec<(i32, u32)> {
        let (events, _) = ep.ready_events(GuestNs(0), 16, 0);
        ep.reported(&events);
        // In descriptor order (a wait starts after the last descriptor it reported).
        let mut out: Vec<(i32, u32)> = events.iter().map(|e| (e.fd, e.events)).collect();
        out.sort();
        out
    }

    #[test]
    fn level_triggered_reports_until_drained_edge_triggered_once_per_write() {
        let (r, w) = pipe();
        let (r2, w2) = pipe();
        let mut ep = epoll_with(&[(3, &r, POLLIN), (5, &r2, POLLIN | EPOLLET)]);
        assert_eq!(wait(&mut ep), vec![]);
        write(&w, b"x");
        write(&w2, b"y");
        assert_eq!(wait(&mut ep), vec![(3, POLLIN), (5, POLLIN)]);
        assert_eq!(wait(&mut ep), vec![(3, POLLIN)], "ET: no new edge");
        write(&w2, b"z");
        assert_eq!(
            wait(&mut ep),
            vec![(3, POLLIN), (5, POLLIN)],
            "ET: a write while still readable is a new edge"
        );
        read_all(&r2);
        read_all(&r);
        assert_eq!(wait(&mut ep), vec![]);
        drop(w2);
        assert_eq!(
            wait(&mut ep),
            vec![(5, POLLHUP)],
            "the last writer closing is an edge, HUP reported unasked"
        );
    }

    #[test]
    fn a_wait_for_fewer_events_than_are_ready_serves_every_descriptor_in_turn() {
        let (r1, w1) = pipe();
        let (r2, w2) = pipe();
        let (r3, w3) = pipe();
        let mut ep = epoll_with(&[(3, &r1, POLLIN), (4, &r2, POLLIN), (5, &r3, POLLIN)]);
        for w in [&w1, &w2, &w3] {
            write(w, b"x");
        }
        let mut one = || {
            let (events, _) = ep.ready_events(GuestNs(0), 1, 0);
            ep.reported(&events);
            events[0].fd
        };
        assert_eq!([one(), one(), one(), one()], [3, 4, 5, 3]);
    }

    #[test]
    fn one_shot_reports_once_until_rearmed_and_closed_files_leave_the_set() {
        let (r, w) = pipe();
        let mut ep = epoll_with(&[(4, &r, POLLIN | EPOLLONESHOT)]);
        write(&w, b"x");
        assert_eq!(wait(&mut ep), vec![(4, POLLIN)]);
        write(&w, b"x");
        assert_eq!(wait(&mut ep), vec![], "disabled after one report");
        let item = ep.items.get_mut(&4).unwrap();
        item.events = POLLIN | EPOLLONESHOT | POLLERR | POLLHUP;
        item.seen = None;
        assert_eq!(wait(&mut ep), vec![(4, POLLIN)], "EPOLL_CTL_MOD re-arms it");
        drop(r);
        ep.prune();
        assert!(ep.items.is_empty());
    }

    #[test]
    fn eventfd_counts_and_semaphore_mode_takes_one() {
        let mut e = EventFd::default();
        assert_eq!(e.read(), None);
        assert!(e.write(2) && e.write(3));
        assert_eq!(e.read(), Some(5));
        e.semaphore = true;
        assert!(e.write(2));
        assert_eq!((e.read(), e.read(), e.read()), (Some(1), Some(1), None));
        assert!(e.write(EVENTFD_MAX));
        assert!(!e.write(1), "past 2^64 - 2 the writer waits");
        let f = OpenFile::new(FileKind::EventFd(e), O_RDWR);
        assert_eq!(readiness(&f.borrow(), GuestNs(0)).events, POLLIN);
    }

    #[test]
    fn nested_epoll_is_readable_when_an_inner_item_is_and_loops_are_refused() {
        let (r, w) = pipe();
        let inner = OpenFile::new(FileKind::Epoll(epoll_with(&[(3, &r, POLLIN)])), O_RDWR);
        let outer = OpenFile::new(FileKind::Epoll(Epoll::default()), O_RDWR);
        assert!(!Epoll::would_loop(&outer, &inner, 0));
        assert!(Epoll::would_loop(&inner, &inner, 0));
        if let FileKind::Epoll(ep) = &mut outer.borrow_mut().kind {
            *ep = epoll_with(&[(7, &inner, POLLIN)]);
        }
        assert!(Epoll::would_loop(&inner, &outer, 0), "outer reaches inner");
        assert_eq!(readiness(&outer.borrow(), GuestNs(0)).events, 0);
        write(&w, b"x");
        assert_eq!(
            readiness(&outer.borrow(), GuestNs(0)).events,
            POLLIN | POLLRDNORM
        );
    }
}
