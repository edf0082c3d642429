//! Syscalls of timers: alarm, getitimer and setitimer (ITIMER_REAL), timer_create, timer_settime,
//! timer_gettime, timer_getoverrun, timer_delete, timerfd_create, timerfd_settime, timerfd_gettime, following
//! alarm(2), getitimer(2), timer_create(2), timer_settime(2) and timerfd_create(2). The arithmetic and the
//! tables are ../timer.rs's; the kernel fires due timers before each scheduling decision (kernel.rs) and they
//! arrive here through `timer_signal`.
//!
//! Not done: ITIMER_VIRTUAL and ITIMER_PROF (-ENOSYS, reported at the end of the run like other unsupported
//! calls), timers on CPU-time clocks (EINVAL).

use super::*;
use crate::linux::ids::{Pid, Tid};
use crate::linux::signal::SigInfo;
use crate::linux::timer::{Fired, Interval, Notify, TimerFd};

/// si_code of a POSIX timer's signal, and of a signal the kernel sends (SIGALRM of ITIMER_REAL).
const SI_TIMER: i32 = -2;
const SI_KERNEL: i32 = 0x80;
const SIGEV_SIGNAL: i32 = 0;
const SIGEV_NONE: i32 = 1;
const SIGEV_THREAD: i32 = 2;
const SIGEV_THREAD_ID: i32 = 4;
/// timer_settime's and timerfd_settime's flag: the expiry is an absolute clock reading.
const TIMER_ABSTIME: u64 = 1;
const TFD_TIMER_CANCEL_ON_SET: u64 = 2;
/// The largest overrun count reported (DELAYTIMER_MAX).
const OVERRUN_MAX: u64 = i32::MAX as u64;
const NS_PER_SEC: u64 = 1_000_000_000;

impl<H: Host> LinuxMachine<H> {
    /// The syscalls of this family; None for any other number.
    pub(in crate::linux) fn dispatch_timers(&mut self, nr: u64, a: [u64; 6]) -> Option<Outcome> {
        let r = match nr {
            36 | 38 if a[0] == 1 || a[0] == 2 => return Some(self.unsupported(
                nr,
                "getitimer/setitimer of ITIMER_VIRTUAL and ITIMER_PROF (CPU-time timers) are not \
                     implemented: answered -ENOSYS",
            )),
            36 => self.sys_getitimer(a[0] as i32, a[1]),
            37 => Ok(self.sys_alarm(a[0] as u32)),
            38 => self.sys_setitimer(a[0] as i32, a[1], a[2]),
            222 => self.sys_timer_create(a[0] as i32, a[1], a[2]),
            223 => self.sys_timer_settime(a[0] as i32, a[1], a[2], a[3]),
            224 => self.sys_timer_gettime(a[0] as i32, a[1]),
            225 => self.posix_timer(a[0] as i32).map(|t| t.overrun as u64),
            226 => self.sys_timer_delete(a[0] as i32),
            283 => self.sys_timerfd_create(a[0] as i32, a[1]),
            286 => self.sys_timerfd_settime(a[0] as i32, a[1], a[2], a[3]),
            287 => self.sys_timerfd_gettime(a[0] as i32, a[1]),
            _ => return None,
        };
        Some(Outcome::Return(r))
    }

    // ---------------------------------------------------------------------------------------------------------
    // Guest structures.

    /// An itimerspec (interval, then value) as (value ns, interval ns).
    fn read_itimerspec(&mut self, addr: u64) -> Result<(u64, u64), Errno> {
        let interval = self.read_timespec(addr)?;
        let value = self.read_timespec(addr + 16)?;
        Ok((value, interval))
    }

    fn write_itimerspec(&mut self, addr: u64, (value, interval): (u64, u64)) -> Result<(), Errno> {
        self.write_timespec(addr, interval)?;
        self.write_timespec(addr + 16, value)
    }

    /// An itimerval (interval, then value; timevals) as (value ns, interval ns).
    fn read_itimerval(&mut self, addr: u64) -> Result<(u64, u64), Errno> {
        let b = self.read_mem(addr, 32)?;
        let w = |i: usize| i64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap());
        let tv = |sec: i64, usec: i64| {
            if sec < 0 || !(0..1_000_000).contains(&usec) {
                return Err(EINVAL);
            }
            Ok((sec as u64)
                .saturating_mul(NS_PER_SEC)
                .saturating_add(usec as u64 * 1000))
        };
        Ok((tv(w(2), w(3))?, tv(w(0), w(1))?))
    }

    fn write_itimerval(&mut self, addr: u64, (value, interval): (u64, u64)) -> Result<(), Errno> {
        // A timer about to expire shows at least a microsecond left, as Linux rounds up.
        let usecs = |ns: u64| ns.div_ceil(1000);
        let mut b = [0u8; 32];
        for (i, us) in [usecs(interval), usecs(value)].into_iter().enumerate() {
            b[i * 16..i * 16 + 8].copy_from_slice(&(us / 1_000_000).to_le_bytes());
            b[i * 16 + 8..i * 16 + 16].copy_from_slice(&(us % 1_000_000).to_le_bytes());
        }
        self.write_mem(addr, &b)
    }

    /// The interval a timer set to (value, interval) at `now` runs: `value` 0 disarms; an absolute value is a
    /// reading of CLOCK_REALTIME (`realtime`) or CLOCK_MONOTONIC.
    fn interval_of(
        &self,
        (value, interval): (u64, u64),
        absolute: bool,
        realtime: bool,
    ) -> Interval {
        if value == 0 {
            return Interval::default();
        }
        let first = if absolute {
            self.deadline_of(realtime, value)
        } else {
            self.guest_time().saturating_add(value)
        };
        Interval::armed(first, interval)
    }

    // ---------------------------------------------------------------------------------------------------------
    // alarm, getitimer, setitimer: ITIMER_REAL, SIGALRM to the process.

    /// alarm(2): the seconds left on the previous alarm (rounded to the nearest, at least 1 if any was left).
    fn sys_alarm(&mut self, secs: u32) -> u64 {
        let now = self.guest_time();
        let (left, _) = self.proc.timers.real.remaining(now);
        self.proc.timers.real = self.interval_of((secs as u64 * NS_PER_SEC, 0), false, false);
        let old = (left + NS_PER_SEC / 2) / NS_PER_SEC;
        if old == 0 && left > 0 {
            1
        } else {
            old
        }
    }

    fn sys_getitimer(&mut self, which: i32, out: u64) -> SysResult {
        if which != 0 {
            return Err(EINVAL);
        }
        let now = self.guest_time();
        let left = self.proc.timers.real.remaining(now);
        self.write_itimerval(out, left)?;
        Ok(0)
    }

    fn sys_setitimer(&mut self, which: i32, new: u64, old: u64) -> SysResult {
        if which != 0 {
            return Err(EINVAL);
        }
        // A NULL new value disarms (Linux's old behaviour, which it keeps).
        let value = if new == 0 {
            (0, 0)
        } else {
            self.read_itimerval(new)?
        };
        if old != 0 {
            let left = self.proc.timers.real.remaining(self.guest_time());
            self.write_itimerval(old, left)?;
        }
        self.proc.timers.real = self.interval_of(value, false, false);
        Ok(0)
    }

    // ---------------------------------------------------------------------------------------------------------
    // POSIX timers.

    fn posix_timer(&self, id: i32) -> Result<&crate::linux::timer::PosixTimer, Errno> {
        self.proc.timers.posix.get(&id).ok_or(EINVAL)
    }

    /// Whether timers and timerfds may run on `clock`, and whether it is CLOCK_REALTIME-like (absolute times
    /// are wall-clock readings).
    fn timer_clock(clock: i32) -> Result<bool, Errno> {
        match clock {
            0 | 11 => Ok(true),  // REALTIME, TAI
            1 | 7 => Ok(false),  // MONOTONIC, BOOTTIME
            8 | 9 => Err(EPERM), // the _ALARM clocks need CAP_WAKE_ALARM
            _ => Err(EINVAL),
        }
    }

    /// timer_create(2): the sigevent's notification (NULL: SIGEV_SIGNAL with SIGALRM and the timer id as value).
    fn sys_timer_create(&mut self, clock: i32, sevp: u64, out: u64) -> SysResult {
        Self::timer_clock(clock)?;
        let notify = if sevp == 0 {
            None
        } else {
            let b = self.read_mem(sevp, 20)?;
            let value = u64::from_le_bytes(b[..8].try_into().unwrap());
            let signo = i32::from_le_bytes(b[8..12].try_into().unwrap());
            let how = i32::from_le_bytes(b[12..16].try_into().unwrap());
            let tid = i32::from_le_bytes(b[16..20].try_into().unwrap());
            let valid_signal = (1..=NSIG as i32).contains(&signo);
            Some(match how {
                SIGEV_NONE => Notify::Nothing,
                SIGEV_SIGNAL | SIGEV_THREAD if valid_signal => Notify::Signal {
                    signo,
                    value,
                    thread: None,
                },
                x if x == SIGEV_SIGNAL | SIGEV_THREAD_ID && valid_signal => {
                    let mine = self
                        .thread_ref(Tid(tid))
                        .is_some_and(|t| t.pid == self.proc.pid);
                    if !mine {
                        return Err(EINVAL);
                    }
                    Notify::Signal {
                        signo,
                        value,
                        thread: Some(Tid(tid)),
                    }
                }
                _ => return Err(EINVAL),
            })
        };
        // Check the output before creating anything.
        self.write_u32(out, 0)?;
        let id = self
            .proc
            .timers
            .create(clock, notify.unwrap_or(Notify::Nothing))
            .ok_or(EAGAIN)?;
        if notify.is_none() {
            let t = self.proc.timers.posix.get_mut(&id).expect("just created");
            t.notify = Notify::Signal {
                signo: SIGALRM,
                value: id as u64,
                thread: None,
            };
        }
        self.write_u32(out, id as u32)?;
        Ok(0)
    }

    fn sys_timer_settime(&mut self, id: i32, flags: u64, new: u64, old: u64) -> SysResult {
        let clock = self.posix_timer(id)?.clock;
        let value = self.read_itimerspec(new)?;
        if old != 0 {
            let left = self.posix_timer_left(id)?;
            self.write_itimerspec(old, left)?;
        }
        let interval =
            self.interval_of(value, flags & TIMER_ABSTIME != 0, Self::timer_clock(clock)?);
        let t = self.proc.timers.posix.get_mut(&id).ok_or(EINVAL)?;
        t.interval = interval;
        t.overrun = 0;
        Ok(0)
    }

    /// (time left, interval) of a POSIX timer; a SIGEV_NONE timer's expirations are taken now (nothing
    /// else takes them).
    fn posix_timer_left(&mut self, id: i32) -> Result<(u64, u64), Errno> {
        let now = self.guest_time();
        let t = self.proc.timers.posix.get_mut(&id).ok_or(EINVAL)?;
        if t.notify == Notify::Nothing {
            t.interval.expire(now);
        }
        Ok(t.interval.remaining(now))
    }

    fn sys_timer_gettime(&mut self, id: i32, out: u64) -> SysResult {
        let left = self.posix_timer_left(id)?;
        self.write_itimerspec(out, left)?;
        Ok(0)
    }

    fn sys_timer_delete(&mut self, id: i32) -> SysResult {
        self.proc.timers.posix.remove(&id).map(|_| 0).ok_or(EINVAL)
    }

    /// A timer of process `pid` fired (kernel.rs): its signal is queued. A POSIX timer whose previous signal is
    /// still pending does not queue another: the pending one's si_overrun counts the expirations instead,
    /// as Linux does.
    pub(in crate::linux) fn timer_signal(&mut self, pid: Pid, fired: Fired) {
        let Fired::Posix {
            id,
            signo,
            value,
            thread,
            count,
        } = fired
        else {
            let info = SigInfo {
                signo: SIGALRM,
                code: SI_KERNEL,
                addr: 0,
                value: 0,
            };
            let _ = self.send_to_process(pid, info);
            return;
        };
        let target = thread.filter(|&t| self.thread_ref(t).is_some_and(|t| t.pid == pid));
        if let Some(overrun) = self.merge_timer_overrun(pid, target, id, signo, count) {
            if let Some(t) = self
                .process_mut(pid)
                .and_then(|p| p.timers.posix.get_mut(&id))
            {
                t.overrun = overrun as u32;
            }
            return;
        }
        let overrun = (count - 1).min(OVERRUN_MAX);
        if let Some(t) = self
            .process_mut(pid)
            .and_then(|p| p.timers.posix.get_mut(&id))
        {
            t.overrun = overrun as u32;
        }
        let info = SigInfo {
            signo,
            code: SI_TIMER,
            // si_tid (the timer id) and si_overrun share the word at offset 16.
            addr: id as u32 as u64 | overrun << 32,
            value,
        };
        let _ = match target {
            Some(tid) => self.send_to_thread(tid, info),
            None => self.send_to_process(pid, info),
        };
    }

    /// If the timer's signal is still pending, adds `count` to its overrun and returns the new count.
    fn merge_timer_overrun(
        &mut self,
        pid: Pid,
        thread: Option<Tid>,
        id: i32,
        signo: i32,
        count: u64,
    ) -> Option<u64> {
        let info = match thread {
            Some(tid) => {
                let t = self.thread_mut(tid)?;
                if t.sig.pending & bit(signo) == 0 {
                    return None;
                }
                t.pending_info.get_mut(&signo)?
            }
            None => {
                let p = self.process_mut(pid)?;
                if p.shared_pending & bit(signo) == 0 {
                    return None;
                }
                p.shared_info.get_mut(&signo)?
            }
        };
        if info.code != SI_TIMER || info.addr as u32 != id as u32 {
            return None;
        }
        let overrun = ((info.addr >> 32) + count).min(OVERRUN_MAX);
        info.addr = id as u32 as u64 | overrun << 32;
        Some(overrun)
    }

    // ---------------------------------------------------------------------------------------------------------
    // timerfd.

    fn sys_timerfd_create(&mut self, clock: i32, flags: u64) -> SysResult {
        Self::timer_clock(clock)?;
        let known = O_CLOEXEC as u64 | O_NONBLOCK as u64;
        if flags & !known != 0 {
            return Err(EINVAL);
        }
        let t = TimerFd {
            clock,
            ..TimerFd::default()
        };
        let desc = OpenFile::new(FileKind::TimerFd(t), O_RDWR | (flags as u32 & O_NONBLOCK));
        self.proc
            .fds
            .insert(desc, flags & O_CLOEXEC as u64 != 0)
            .map(|fd| fd as u64)
    }

    /// The timerfd behind `fd` (EBADF: not open; EINVAL: not a timerfd), and its clock.
    fn timerfd_desc(&self, fd: i32) -> Result<(crate::linux::fd::Description, i32), Errno> {
        let desc = self.proc.fds.get(fd)?;
        let clock = match &desc.borrow().kind {
            FileKind::TimerFd(t) => t.clock,
            _ => return Err(EINVAL),
        };
        Ok((desc, clock))
    }

    fn sys_timerfd_settime(&mut self, fd: i32, flags: u64, new: u64, old: u64) -> SysResult {
        if flags & !(TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET) != 0 {
            return Err(EINVAL);
        }
        let (desc, clock) = self.timerfd_desc(fd)?;
        let value = self.read_itimerspec(new)?;
        let now = self.guest_time();
        if old != 0 {
            let left = self.timerfd_left(&desc, now);
            self.write_itimerspec(old, left)?;
        }
        let interval =
            self.interval_of(value, flags & TIMER_ABSTIME != 0, Self::timer_clock(clock)?);
        if let FileKind::TimerFd(t) = &mut desc.borrow_mut().kind {
            t.set(interval);
        }
        Ok(0)
    }

    /// (time left, interval) of a timerfd; its due expirations are counted first.
    fn timerfd_left(&self, desc: &crate::linux::fd::Description, now: GuestNs) -> (u64, u64) {
        match &mut desc.borrow_mut().kind {
            FileKind::TimerFd(t) => {
                let n = t.interval.expire(now);
                t.ticks = t.ticks.saturating_add(n);
                t.taken = t.taken.wrapping_add(n);
                t.interval.remaining(now)
            }
            _ => (0, 0),
        }
    }

    fn sys_timerfd_gettime(&mut self, fd: i32, out: u64) -> SysResult {
        let (desc, _) = self.timerfd_desc(fd)?;
        let left = self.timerfd_left(&desc, self.guest_time());
        self.write_itimerspec(out, left)?;
        Ok(0)
    }

    /// read(2) of a timerfd: the expirations since the last read, as 8 bytes; waits (until the next expiry)
    /// while there are none.
    pub(in crate::linux) fn timerfd_read(
        &mut self,
        desc: &crate::linux::fd::Description,
        len: usize,
    ) -> Result<Vec<u8>, Errno> {
        if len < 8 {
            return Err(EINVAL);
        }
        let now = self.guest_time();
        let mut d = desc.borrow_mut();
        let nonblock = d.flags & O_NONBLOCK != 0;
        let FileKind::TimerFd(t) = &mut d.kind else {
            unreachable!("a timerfd")
        };
        if t.pending(now) == 0 {
            let next = t.interval.next;
            drop(d);
            return Err(if nonblock {
                EAGAIN
            } else {
                self.would_block_until(None, next)
            });
        }
        Ok(t.read(now).to_le_bytes().to_vec())
    }
}
