//! Syscalls that wait for descriptors to become ready (poll, ppoll, select, pselect6, epoll_create,
//! epoll_create1, epoll_ctl, epoll_wait, epoll_pwait, epoll_pwait2) and eventfd/eventfd2, following poll(2),
//! select(2), epoll(7), epoll_ctl(2), epoll_wait(2) and eventfd(2). What "ready" means is ../ready.rs's one
//! function; this file reads and writes the guest's structures and blocks.
//!
//! Blocking: nothing ready and time left means `would_block_until(timeout, wake_at)`: the call is re-run from
//! the top whenever another task did something, at its timeout, and at the earliest expiry of a timerfd it
//! watches. The variants with a signal mask (ppoll, pselect6, epoll_pwait, epoll_pwait2) install it for the
//! whole wait, once (the thread's `saved_mask` remembers the mask to go back to); a signal the temporary mask
//! lets through interrupts the wait with EINTR and its handler returns to the saved mask, as sigsuspend's does.

use super::*;
use crate::linux::fd::Description;
use crate::linux::ready::{self, *};

/// epoll_ctl's operations.
const EPOLL_CTL_ADD: i32 = 1;
const EPOLL_CTL_DEL: i32 = 2;
const EPOLL_CTL_MOD: i32 = 3;
/// Bytes of a struct epoll_event (packed on x86-64: u32 events, u64 data).
const EPOLL_EVENT_BYTES: u64 = 12;
/// Most events one epoll_wait returns (Linux's EP_MAX_EVENTS).
const EPOLL_EVENTS_MAX: i32 = i32::MAX / EPOLL_EVENT_BYTES as i32;
const EFD_SEMAPHORE: u64 = 1;

/// select's three sets and what each counts as ready (fs/select.c POLLIN_SET, POLLOUT_SET, POLLEX_SET).
const SELECT_SETS: [u32; 3] = [
    POLLIN | POLLRDNORM | POLLRDBAND | POLLHUP | POLLERR,
    POLLOUT | POLLWRNORM | POLLWRBAND | POLLERR,
    POLLPRI,
];

impl<H: Host> LinuxMachine<H> {
    /// The syscalls of this family; None for any other number.
    pub(in crate::linux) fn dispatch_ready(&mut self, nr: u64, a: [u64; 6]) -> Option<Outcome> {
        let r = match nr {
            7 => self.sys_poll(a[0], a[1], ms_timeout(a[2]), [0, 0, 0]),
            271 => match self.read_optional_timespec(a[2]) {
                Ok(t) => self.sys_poll(a[0], a[1], t, [a[3], a[4], a[2]]),
                Err(e) => Err(e),
            },
            23 => self.sys_select(a[0] as i32, [a[1], a[2], a[3]], a[4], false),
            270 => self.sys_pselect6(a),
            213 if (a[0] as i32) <= 0 => Err(EINVAL),
            213 => self.sys_epoll_create1(0),
            291 => self.sys_epoll_create1(a[0]),
            233 => self.sys_epoll_ctl(a[0] as i32, a[1] as i32, a[2] as i32, a[3]),
            232 => self.sys_epoll_pwait(a[0] as i32, a[1], a[2] as i32, ms_timeout(a[3]), 0, 0),
            281 => {
                self.sys_epoll_pwait(a[0] as i32, a[1], a[2] as i32, ms_timeout(a[3]), a[4], a[5])
            }
            441 => match self.read_optional_timespec(a[3]) {
                Ok(t) => self.sys_epoll_pwait(a[0] as i32, a[1], a[2] as i32, t, a[4], a[5]),
                Err(e) => Err(e),
            },
            284 => self.sys_eventfd2(a[0], 0),
            290 => self.sys_eventfd2(a[0], a[1]),
            _ => return None,
        };
        Some(Outcome::Return(r))
    }

    // ---------------------------------------------------------------------------------------------------------
    // What every waiting call shares.

    /// A timespec that may be NULL (wait for ever).
    fn read_optional_timespec(&mut self, addr: u64) -> Result<Option<u64>, Errno> {
        if addr == 0 {
            return Ok(None);
        }
        self.read_timespec(addr).map(Some)
    }

    /// The deadline of a timeout of `ns` begun by this syscall's first attempt (kept across its re-runs);
    /// None: wait for ever.
    fn wait_deadline(&self, timeout: Option<u64>) -> Option<GuestNs> {
        let ns = timeout?;
        Some(
            self.restart_deadline
                .unwrap_or_else(|| self.guest_time().saturating_add(ns)),
        )
    }

    /// Installs the temporary signal mask of ppoll, pselect6 and epoll_pwait (`addr` 0: none) for the wait,
    /// once: a re-run finds the mask in place.
    fn begin_wait_mask(&mut self, addr: u64, size: u64) -> Result<(), Errno> {
        if addr == 0 || self.thread.saved_mask.is_some() {
            return Ok(());
        }
        if size != 8 {
            return Err(EINVAL);
        }
        let mask = self.read_u64(addr)? & !(bit(SIGKILL) | bit(SIGSTOP));
        self.thread.saved_mask = Some(self.thread.sig.blocked);
        self.thread.sig.blocked = mask;
        Ok(())
    }

    /// The wait is over without a signal (ready, timed out, an error): the thread's own mask is back. A call
    /// that blocks keeps the temporary one.
    fn end_wait_mask(&mut self, addr: u64, r: &SysResult) {
        if addr != 0 && *r != Err(WOULD_BLOCK) {
            if let Some(m) = self.thread.saved_mask.take() {
                self.thread.sig.blocked = m;
            }
        }
    }

    /// What the descriptor is ready for now; None for a descriptor that is not open.
    fn fd_readiness(&self, fd: i32) -> Option<Ready> {
        let desc = self.proc.fds.get(fd).ok()?;
        let d = desc.try_borrow().ok()?;
        Some(ready::readiness(&d, self.guest_time()))
    }

    /// Nothing is ready: wait until `deadline` (None: for ever) or until a file becomes ready by the clock at
    /// `wake_at`, unless the deadline has passed. Returns the error to return: WOULD_BLOCK, or None when the
    /// call times out now.
    fn wait_or_time_out(
        &mut self,
        deadline: Option<GuestNs>,
        wake_at: Option<GuestNs>,
    ) -> Option<Errno> {
        if deadline.is_some_and(|d| self.guest_time() >= d) {
            return None;
        }
        Some(self.would_block_until(deadline, wake_at))
    }

    /// The remaining time of a timeout, written back where Linux writes it (select's timeval, pselect6's and
    /// ppoll's timespec) when the call completes.
    fn write_time_left(&mut self, addr: u64, deadline: Option<GuestNs>, timeval: bool) {
        let (Some(d), true) = (deadline, addr != 0) else {
            return;
        };
        let left = self.guest_time().until(d);
        let _ = if timeval {
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&(left / 1_000_000_000).to_le_bytes());
            b[8..].copy_from_slice(&(left % 1_000_000_000 / 1000).to_le_bytes());
            self.write_mem(addr, &b)
        } else {
            self.write_timespec(addr, left)
        };
    }

    // ---------------------------------------------------------------------------------------------------------
    // poll, ppoll.

    /// poll(2) and ppoll(2): `ppoll` is the signal mask, its size and the timespec to write the time left
    /// into (zeros for poll).
    fn sys_poll(
        &mut self,
        fds: u64,
        count: u64,
        timeout: Option<u64>,
        ppoll: [u64; 3],
    ) -> SysResult {
        if count > crate::linux::fd::FDS_MAX as u64 {
            return Err(EINVAL);
        }
        let [mask, mask_size, time_left] = ppoll;
        self.begin_wait_mask(mask, mask_size)?;
        let r = self.poll_once(fds, count, timeout, time_left);
        self.end_wait_mask(mask, &r);
        r
    }

    fn poll_once(
        &mut self,
        fds: u64,
        count: u64,
        timeout: Option<u64>,
        time_left: u64,
    ) -> SysResult {
        let raw = self.read_mem(fds, count * 8)?;
        let mut out = raw.clone();
        let mut ready = 0u64;
        let mut wake_at: Option<GuestNs> = None;
        for (i, c) in raw.chunks_exact(8).enumerate() {
            let fd = i32::from_le_bytes(c[..4].try_into().unwrap());
            let events = u16::from_le_bytes([c[4], c[5]]) as u32;
            let revents = if fd < 0 {
                0
            } else {
                match self.fd_readiness(fd) {
                    None => POLLNVAL,
                    Some(r) => {
                        wake_at = earliest(wake_at, r.wake_at);
                        // POLLERR and POLLHUP are reported whether asked for or not.
                        r.events & (events | POLLERR | POLLHUP)
                    }
                }
            };
            out[i * 8 + 6..i * 8 + 8].copy_from_slice(&(revents as u16).to_le_bytes());
            if revents != 0 {
                ready += 1;
            }
        }
        let deadline = self.wait_deadline(timeout);
        if ready == 0 && timeout != Some(0) {
            if let Some(e) = self.wait_or_time_out(deadline, wake_at) {
                return Err(e);
            }
        }
        // The descriptors' revents are written when the call completes.
        self.write_mem(fds, &out)?;
        self.write_time_left(time_left, deadline, false);
        Ok(ready)
    }

    // ---------------------------------------------------------------------------------------------------------
    // select, pselect6.

    fn sys_pselect6(&mut self, a: [u64; 6]) -> SysResult {
        // The sixth argument points at { const sigset_t *ss; size_t ss_len; }.
        let (mask, size) = if a[5] == 0 {
            (0, 0)
        } else {
            let b = self.read_mem(a[5], 16)?;
            (
                u64::from_le_bytes(b[..8].try_into().unwrap()),
                u64::from_le_bytes(b[8..].try_into().unwrap()),
            )
        };
        self.begin_wait_mask(mask, size)?;
        let r = self.sys_select(a[0] as i32, [a[1], a[2], a[3]], a[4], true);
        self.end_wait_mask(mask, &r);
        r
    }

    /// select(2) (`timespec` false: a timeval) and pselect6 (a timespec; its mask is installed by the caller).
    fn sys_select(
        &mut self,
        nfds: i32,
        sets: [u64; 3],
        timeout_addr: u64,
        timespec: bool,
    ) -> SysResult {
        if nfds < 0 {
            return Err(EINVAL);
        }
        let nfds = nfds.min(crate::linux::fd::FDS_MAX) as usize;
        let timeout = match (timeout_addr, timespec) {
            (0, _) => None,
            (t, true) => Some(self.read_timespec(t)?),
            (t, false) => Some(self.read_timeval(t)?),
        };
        let words = nfds.div_ceil(64);
        let mut input = [vec![0u64; words], vec![0u64; words], vec![0u64; words]];
        for (set, addr) in input.iter_mut().zip(sets) {
            if addr != 0 {
                let raw = self.read_mem(addr, words as u64 * 8)?;
                for (w, c) in set.iter_mut().zip(raw.chunks_exact(8)) {
                    *w = u64::from_le_bytes(c.try_into().unwrap());
                }
            }
        }
        let mut output = [vec![0u64; words], vec![0u64; words], vec![0u64; words]];
        let mut count = 0u64;
        let mut wake_at: Option<GuestNs> = None;
        for fd in 0..nfds {
            let (w, b) = (fd / 64, 1u64 << (fd % 64));
            if input.iter().all(|s| s[w] & b == 0) {
                continue;
            }
            let r = self.fd_readiness(fd as i32).ok_or(EBADF)?;
            wake_at = earliest(wake_at, r.wake_at);
            for ((i, o), wanted) in input.iter().zip(output.iter_mut()).zip(SELECT_SETS) {
                if i[w] & b != 0 && r.events & wanted != 0 {
                    o[w] |= b;
                    count += 1;
                }
            }
        }
        let deadline = self.wait_deadline(timeout);
        if count == 0 && timeout != Some(0) {
            if let Some(e) = self.wait_or_time_out(deadline, wake_at) {
                return Err(e);
            }
        }
        for (set, addr) in output.iter().zip(sets) {
            if addr != 0 {
                let bytes: Vec<u8> = set.iter().flat_map(|w| w.to_le_bytes()).collect();
                self.write_mem(addr, &bytes)?;
            }
        }
        self.write_time_left(timeout_addr, deadline, !timespec);
        Ok(count)
    }

    fn read_timeval(&mut self, addr: u64) -> Result<u64, Errno> {
        let b = self.read_mem(addr, 16)?;
        let sec = i64::from_le_bytes(b[..8].try_into().unwrap());
        let usec = i64::from_le_bytes(b[8..].try_into().unwrap());
        if sec < 0 || !(0..1_000_000).contains(&usec) {
            return Err(EINVAL);
        }
        Ok((sec as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(usec as u64 * 1000))
    }

    // ---------------------------------------------------------------------------------------------------------
    // epoll.

    fn sys_epoll_create1(&mut self, flags: u64) -> SysResult {
        if flags & !(O_CLOEXEC as u64) != 0 {
            return Err(EINVAL);
        }
        let desc = OpenFile::new(FileKind::Epoll(Epoll::default()), O_RDWR);
        self.proc
            .fds
            .insert(desc, flags & O_CLOEXEC as u64 != 0)
            .map(|fd| fd as u64)
    }

    /// The epoll instance behind `epfd` (EBADF: not open; EINVAL: not an epoll instance).
    fn epoll_desc(&self, epfd: i32) -> Result<Description, Errno> {
        let desc = self.proc.fds.get(epfd)?;
        if !matches!(desc.borrow().kind, FileKind::Epoll(_)) {
            return Err(EINVAL);
        }
        Ok(desc)
    }

    fn sys_epoll_ctl(&mut self, epfd: i32, op: i32, fd: i32, event: u64) -> SysResult {
        let ep = self.epoll_desc(epfd)?;
        let target = self.proc.fds.get(fd)?;
        if fd == epfd || Shared::ptr_eq(&ep, &target) {
            return Err(EINVAL);
        }
        if !ready::epoll_can_watch(&target.borrow()) {
            return Err(EPERM);
        }
        let (events, data) = if op == EPOLL_CTL_DEL {
            (0, 0)
        } else {
            let b = self.read_mem(event, EPOLL_EVENT_BYTES)?;
            (
                u32::from_le_bytes(b[..4].try_into().unwrap()),
                u64::from_le_bytes(b[4..].try_into().unwrap()),
            )
        };
        let watching = |ep: &Epoll| {
            ep.items
                .get(&fd)
                .and_then(|i| i.file.upgrade())
                .is_some_and(|f| Shared::ptr_eq(&f, &target))
        };
        if op == EPOLL_CTL_ADD && Epoll::would_loop(&ep, &target, 0) {
            return Err(ELOOP);
        }
        let mut d = ep.borrow_mut();
        let FileKind::Epoll(set) = &mut d.kind else {
            unreachable!("checked by epoll_desc")
        };
        set.prune();
        let present = watching(&*set);
        let item = EpollItem {
            file: Shared::downgrade(&target),
            events: events | POLLERR | POLLHUP,
            data,
            seen: None,
        };
        match op {
            EPOLL_CTL_ADD if present => Err(EEXIST),
            EPOLL_CTL_ADD => {
                set.items.insert(fd, item);
                Ok(0)
            }
            EPOLL_CTL_MOD | EPOLL_CTL_DEL if !present => Err(ENOENT),
            EPOLL_CTL_MOD => {
                if events & EPOLLEXCLUSIVE != 0 {
                    return Err(EINVAL);
                }
                set.items.insert(fd, item);
                Ok(0)
            }
            EPOLL_CTL_DEL => {
                set.items.remove(&fd);
                Ok(0)
            }
            _ => Err(EINVAL),
        }
    }

    /// epoll_wait, epoll_pwait (a signal mask) and epoll_pwait2 (a timespec timeout).
    fn sys_epoll_pwait(
        &mut self,
        epfd: i32,
        events: u64,
        max: i32,
        timeout: Option<u64>,
        mask: u64,
        mask_size: u64,
    ) -> SysResult {
        if !(1..=EPOLL_EVENTS_MAX).contains(&max) {
            return Err(EINVAL);
        }
        let ep = self.epoll_desc(epfd)?;
        self.begin_wait_mask(mask, mask_size)?;
        let r = self.epoll_wait_once(&ep, events, max as usize, timeout);
        self.end_wait_mask(mask, &r);
        r
    }

    fn epoll_wait_once(
        &mut self,
        ep: &Description,
        out: u64,
        max: usize,
        timeout: Option<u64>,
    ) -> SysResult {
        let now = self.guest_time();
        let (ready, wake_at) = match &ep.borrow().kind {
            FileKind::Epoll(set) => set.ready_events(now, max, 0),
            _ => unreachable!("checked by epoll_desc"),
        };
        if ready.is_empty() && timeout != Some(0) {
            let deadline = self.wait_deadline(timeout);
            if let Some(e) = self.wait_or_time_out(deadline, wake_at) {
                return Err(e);
            }
        }
        let mut bytes = Vec::with_capacity(ready.len() * EPOLL_EVENT_BYTES as usize);
        for e in &ready {
            bytes.extend_from_slice(&e.events.to_le_bytes());
            bytes.extend_from_slice(&e.data.to_le_bytes());
        }
        self.write_mem(out, &bytes)?;
        // Delivered: edge-triggered and one-shot items take note.
        if let FileKind::Epoll(set) = &mut ep.borrow_mut().kind {
            set.reported(&ready);
        }
        Ok(ready.len() as u64)
    }

    // ---------------------------------------------------------------------------------------------------------
    // eventfd.

    fn sys_eventfd2(&mut self, initial: u64, flags: u64) -> SysResult {
        let known = EFD_SEMAPHORE | O_CLOEXEC as u64 | O_NONBLOCK as u64;
        if flags & !known != 0 {
            return Err(EINVAL);
        }
        let e = EventFd {
            count: initial as u32 as u64,
            semaphore: flags & EFD_SEMAPHORE != 0,
            changes: 0,
        };
        let status = O_RDWR | (flags as u32 & O_NONBLOCK);
        let desc = OpenFile::new(FileKind::EventFd(e), status);
        self.proc
            .fds
            .insert(desc, flags & O_CLOEXEC as u64 != 0)
            .map(|fd| fd as u64)
    }

    /// read(2) of an eventfd: its counter (or 1, EFD_SEMAPHORE) as 8 bytes; waits while it is 0.
    pub(in crate::linux) fn eventfd_read(
        &mut self,
        desc: &Description,
        len: usize,
    ) -> Result<Vec<u8>, Errno> {
        if len < 8 {
            return Err(EINVAL);
        }
        let mut d = desc.borrow_mut();
        let nonblock = d.flags & O_NONBLOCK != 0;
        let FileKind::EventFd(e) = &mut d.kind else {
            unreachable!("an eventfd")
        };
        match e.read() {
            Some(v) => Ok(v.to_le_bytes().to_vec()),
            None if nonblock => Err(EAGAIN),
            None => Err(self.would_block(None)),
        }
    }

    /// write(2) of an eventfd: adds the 8-byte value; waits while the sum would pass 2^64 - 2.
    pub(in crate::linux) fn eventfd_write(
        &mut self,
        desc: &Description,
        bytes: &[u8],
    ) -> SysResult {
        if bytes.len() < 8 {
            return Err(EINVAL);
        }
        let v = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        if v == u64::MAX {
            return Err(EINVAL);
        }
        let mut d = desc.borrow_mut();
        let nonblock = d.flags & O_NONBLOCK != 0;
        let FileKind::EventFd(e) = &mut d.kind else {
            unreachable!("an eventfd")
        };
        if e.write(v) {
            Ok(8)
        } else if nonblock {
            Err(EAGAIN)
        } else {
            Err(self.would_block(None))
        }
    }
}

/// epoll_wait's and poll's timeout in milliseconds, as nanoseconds (negative: for ever, None).
fn ms_timeout(arg: u64) -> Option<u64> {
    let ms = arg as i32;
    (ms >= 0).then(|| ms as u64 * 1_000_000)
}

fn earliest(a: Option<GuestNs>, b: Option<GuestNs>) -> Option<GuestNs> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}
