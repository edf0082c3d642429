//! Timers of the guest kernel: the expiry arithmetic every timer shares (alarm, setitimer ITIMER_REAL,
//! timer_create, timerfd), a process's timers, and a timerfd's state.
//!
//! Why one `Interval`: every timer is "a next expiry on the global virtual clock, and a period". Expirations
//! are counted, never simulated one by one: `expire(now)` returns how many periods elapsed and re-arms past
//! `now`, so a timer never costs a scheduling decision per period it was late (the overrun of POSIX timers,
//! a timerfd's count, SIGALRMs merged into one pending signal).
//!
//! How timers reach the guest: the kernel counts each process's signal-sending timers in its next deadline
//! (kernel.rs), so a slice ends at the expiry and, when every task sleeps, the clock skips to it; they fire
//! in the wake-up pass before each scheduling decision. A timerfd is lazy: it is a file whose readiness is a
//! function of the clock (`TimerFd::pending`), and a task waiting on it asks to be woken at its next expiry.
//!
//! fork drops a process's timers (POSIX: timers and alarms are not inherited); execve keeps ITIMER_REAL and
//! the alarm and deletes timer_create's timers.

use super::ids::{GuestNs, Tid};
use std::collections::BTreeMap;

/// A one-shot or periodic expiry on the global virtual clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Interval {
    /// The next expiry; None when disarmed.
    pub next: Option<GuestNs>,
    /// The period in nanoseconds; 0 for a one-shot timer.
    pub period: u64,
}

impl Interval {
    /// Armed to expire first at `first`, then every `period` ns (never again when 0).
    pub fn armed(first: GuestNs, period: u64) -> Interval {
        Interval {
            next: Some(first),
            period,
        }
    }

    /// Expirations that are due at `now` and not yet taken.
    pub fn due(&self, now: GuestNs) -> u64 {
        match self.next {
            // A one-shot timer (period 0) expires once, however late.
            Some(next) if next <= now => 1 + next.until(now).checked_div(self.period).unwrap_or(0),
            _ => 0,
        }
    }

    /// Takes the expirations due at `now`: a periodic timer is re-armed at its first expiry after `now`, a
    /// one-shot one is disarmed. Returns how many there were.
    pub fn expire(&mut self, now: GuestNs) -> u64 {
        let n = self.due(now);
        if n > 0 {
            let next = self.next.expect("due implies armed");
            self.next = match self.period {
                0 => None,
                p => Some(next.saturating_add(n.saturating_mul(p))),
            };
            debug_assert!(self.next.is_none_or(|t| t > now || t.0 == u64::MAX));
        }
        n
    }

    /// The first expiry after `now` (the ones due at `now` not counted): when something new happens next.
    pub fn next_after(&self, now: GuestNs) -> Option<GuestNs> {
        let next = self.next?;
        if next > now {
            return Some(next);
        }
        match self.period {
            0 => None,
            p => Some(next.saturating_add(self.due(now).saturating_mul(p))),
        }
    }

    /// (time left until the next expiry, period), as getitimer and timer_gettime answer; (0, 0) disarmed.
    pub fn remaining(&self, now: GuestNs) -> (u64, u64) {
        match self.next {
            Some(next) => (now.until(next), self.period),
            None => (0, 0),
        }
    }
}

/// How a POSIX timer tells its process (sigevent's sigev_notify).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notify {
    /// SIGEV_NONE: nothing; the program reads timer_gettime.
    Nothing,
    /// SIGEV_SIGNAL (to the process) or SIGEV_THREAD_ID (to one thread): `signo` with `value` as si_value.
    Signal {
        signo: i32,
        value: u64,
        thread: Option<Tid>,
    },
}

/// A timer of timer_create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PosixTimer {
    pub clock: i32,
    pub notify: Notify,
    pub interval: Interval,
    /// The overrun count of the timer's last signal (timer_getoverrun): expirations that found the previous
    /// signal still pending, or that were late together.
    pub overrun: u32,
}

/// A timer that fired and has a signal to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fired {
    /// ITIMER_REAL or alarm: SIGALRM to the process.
    Alarm,
    /// A POSIX timer: `count` expirations at once (count - 1 of them overruns).
    Posix {
        id: i32,
        signo: i32,
        value: u64,
        thread: Option<Tid>,
        count: u64,
    },
}

/// The timers of one process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessTimers {
    /// ITIMER_REAL, which alarm(2) sets too.
    pub real: Interval,
    /// timer_create's timers, by id.
    pub posix: BTreeMap<i32, PosixTimer>,
    /// The next timer id (Linux hands them out in increasing order).
    pub next_id: i32,
}

/// Most POSIX timers one process may hold (an RLIMIT_SIGPENDING-sized bound, so a guest cannot grow the table
/// without end).
pub const POSIX_TIMERS_MAX: usize = 4096;

impl ProcessTimers {
    /// The earliest expiry of a timer that sends a signal (SIGEV_NONE timers are read lazily).
    pub fn next_expiry(&self) -> Option<GuestNs> {
        let posix = self
            .posix
            .values()
            .filter(|t| t.notify != Notify::Nothing)
            .filter_map(|t| t.interval.next);
        self.real.next.into_iter().chain(posix).min()
    }

    /// Takes every expiration due at `now`, re-arming periodic timers: the signals to send, in timer order
    /// (the alarm first, then by id).
    pub fn fire(&mut self, now: GuestNs) -> Vec<Fired> {
        let mut out = Vec::new();
        if self.real.expire(now) > 0 {
            out.push(Fired::Alarm);
        }
        for (&id, t) in self.posix.iter_mut() {
            let Notify::Signal {
                signo,
                value,
                thread,
            } = t.notify
            else {
                continue;
            };
            let count = t.interval.expire(now);
            if count > 0 {
                out.push(Fired::Posix {
                    id,
                    signo,
                    value,
                    thread,
                    count,
                });
            }
        }
        out
    }

    /// A new POSIX timer's id, or None at the limit.
    pub fn create(&mut self, clock: i32, notify: Notify) -> Option<i32> {
        if self.posix.len() >= POSIX_TIMERS_MAX {
            return None;
        }
        let mut id = self.next_id.max(0);
        while self.posix.contains_key(&id) {
            id = id.checked_add(1).unwrap_or(0);
        }
        self.next_id = id.checked_add(1).unwrap_or(0);
        self.posix.insert(
            id,
            PosixTimer {
                clock,
                notify,
                interval: Interval::default(),
                overrun: 0,
            },
        );
        Some(id)
    }

    /// What execve keeps: the alarm and ITIMER_REAL, not timer_create's timers.
    pub fn exec(&mut self) {
        self.posix.clear();
    }
}

/// A timerfd: an interval and the expirations counted but not yet read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimerFd {
    pub clock: i32,
    pub interval: Interval,
    /// Expirations taken out of `interval` and not yet read.
    pub ticks: u64,
    /// Expirations taken out of `interval` ever: with the ones due, the edge counter epoll's EPOLLET compares.
    pub taken: u64,
}

impl TimerFd {
    /// Expirations a read would return at `now`.
    pub fn pending(&self, now: GuestNs) -> u64 {
        self.ticks.saturating_add(self.interval.due(now))
    }

    /// Expirations ever, as of `now` (moves on each expiry).
    pub fn edge(&self, now: GuestNs) -> u64 {
        self.taken.wrapping_add(self.interval.due(now))
    }

    /// A read: the expirations so far, reset to zero.
    pub fn read(&mut self, now: GuestNs) -> u64 {
        let n = self.interval.expire(now);
        self.taken = self.taken.wrapping_add(n);
        std::mem::take(&mut self.ticks).saturating_add(n)
    }

    /// timerfd_settime: a new interval; expirations not read are dropped.
    pub fn set(&mut self, interval: Interval) {
        self.interval = interval;
        self.ticks = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_one_shot_fires_once_and_disarms() {
        let mut i = Interval::armed(GuestNs(100), 0);
        assert_eq!(i.due(GuestNs(99)), 0);
        assert_eq!(i.expire(GuestNs(99)), 0);
        assert_eq!(i.remaining(GuestNs(40)), (60, 0));
        assert_eq!(
            i.expire(GuestNs(500)),
            1,
            "late by many periods: still once"
        );
        assert_eq!(i.next, None);
        assert_eq!(i.expire(GuestNs(10_000)), 0);
        assert_eq!(i.remaining(GuestNs(10_000)), (0, 0));
    }

    #[test]
    fn a_periodic_timer_counts_missed_periods_and_rearms_after_now() {
        let mut i = Interval::armed(GuestNs(100), 30);
        assert_eq!(i.expire(GuestNs(100)), 1, "exactly at the expiry");
        assert_eq!(i.next, Some(GuestNs(130)));
        // 130, 160, 190 and 220 passed by 229: four at once (three overruns), next at 250.
        assert_eq!(i.due(GuestNs(229)), 4);
        assert_eq!(i.expire(GuestNs(229)), 4);
        assert_eq!(i.next, Some(GuestNs(250)));
        assert_eq!(i.remaining(GuestNs(229)), (21, 30));
        assert_eq!(i.next_after(GuestNs(229)), Some(GuestNs(250)));
        assert_eq!(
            i.next_after(GuestNs(260)),
            Some(GuestNs(280)),
            "past the due one"
        );
        assert_eq!(i.expire(GuestNs(249)), 0);
    }

    #[test]
    fn posix_timers_fire_with_their_overrun_counts_and_sigev_none_stays_quiet() {
        let mut t = ProcessTimers::default();
        let signal = Notify::Signal {
            signo: 34,
            value: 77,
            thread: None,
        };
        let a = t.create(1, signal).unwrap();
        let b = t.create(1, Notify::Nothing).unwrap();
        assert_eq!((a, b), (0, 1));
        t.posix.get_mut(&a).unwrap().interval = Interval::armed(GuestNs(10), 10);
        t.posix.get_mut(&b).unwrap().interval = Interval::armed(GuestNs(5), 0);
        t.real = Interval::armed(GuestNs(25), 0);
        assert_eq!(
            t.next_expiry(),
            Some(GuestNs(10)),
            "SIGEV_NONE is not a deadline"
        );
        let fired = t.fire(GuestNs(35));
        assert_eq!(
            fired,
            vec![
                Fired::Alarm,
                Fired::Posix {
                    id: a,
                    signo: 34,
                    value: 77,
                    thread: None,
                    count: 3
                }
            ]
        );
        assert_eq!(t.next_expiry(), Some(GuestNs(40)));
        t.exec();
        assert!(t.posix.is_empty());
        assert_eq!(t.create(0, Notify::Nothing), Some(2), "ids keep increasing");
    }

    #[test]
    fn a_timerfd_counts_expirations_until_read_and_settime_drops_them() {
        let mut f = TimerFd {
            interval: Interval::armed(GuestNs(10), 10),
            ..TimerFd::default()
        };
        assert_eq!(f.pending(GuestNs(9)), 0);
        assert_eq!(f.pending(GuestNs(35)), 3);
        let edge = f.edge(GuestNs(35));
        assert_eq!(f.read(GuestNs(35)), 3);
        assert_eq!(f.pending(GuestNs(35)), 0);
        assert_eq!(f.edge(GuestNs(35)), edge, "reading is not a new edge");
        assert_eq!(f.edge(GuestNs(40)), edge + 1, "an expiry is");
        f.ticks = 5;
        f.set(Interval::default());
        assert_eq!(f.pending(GuestNs(1000)), 0);
    }
}
