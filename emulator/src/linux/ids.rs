//! Typed identifiers and times of the guest kernel, so that the compiler finds every place that mixes them.
//!
//! - `Tid` names a thread, `Pid` a process (a thread group: its pid is its first thread's tid, as in Linux).
//! - `GuestNs` is the one global virtual clock: nanoseconds since the run started, a pure function of the run
//!   (retired instructions of every task times the configured rate, plus time skipped while every task slept).
//!   Absolute guest times (CLOCK_REALTIME, CLOCK_MONOTONIC) are this plus a fixed start.
//! - `ThreadInsns` is one thread's own retired instructions (its CPU time), as opposed to the global
//!   instruction count (plain `u64 icount` everywhere, the trace's and the debugger's clock).

use serde::{Deserialize, Serialize};

/// A thread id, as the guest sees it (gettid, clone's return value, a futex owner).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Tid(pub i32);

/// A process id: the tid of the thread group's leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Pid(pub i32);

impl Pid {
    /// The process's leader thread.
    pub fn leader(self) -> Tid {
        Tid(self.0)
    }
}

impl std::fmt::Display for Tid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::fmt::Display for Pid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Global virtual time since the start of the run, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GuestNs(pub u64);

impl GuestNs {
    pub fn saturating_add(self, ns: u64) -> GuestNs {
        GuestNs(self.0.saturating_add(ns))
    }

    /// Nanoseconds from `self` until `later` (0 when `later` is not later).
    pub fn until(self, later: GuestNs) -> u64 {
        later.0.saturating_sub(self.0)
    }
}

/// Instructions one thread has retired (its CPU time).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ThreadInsns(pub u64);
