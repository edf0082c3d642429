//! The guest kernel's task machinery: the blocked pool, context switches, the clock, wake-ups, thread and process
//! exit, and the deadlock report. The policy of who runs next is sched.rs's; this file carries it out.
//!
//! How a task waits. A syscall that cannot complete returns `Outcome::Block(Wait)` and the task leaves the run
//! queue for the blocked pool, with its syscall remembered:
//! - `Wait::Futex` waiters are woken by FUTEX_WAKE (the waker stores the result, 0, in their rax), by their
//!   deadline (-ETIMEDOUT) or by a signal (-EINTR);
//! - `Wait::Retry` waiters (a pipe, a child, poll, select, epoll_wait, an eventfd or timerfd read) re-run their
//!   syscall whenever another task has done something since they blocked (the kernel's `generation` moved),
//!   their deadline passed or their `wake_at` came (a timerfd they wait on expires); the syscall then
//!   completes or blocks again. This costs a context switch per retry, which is cheap, and keeps each syscall's
//!   logic in one place: the first attempt and every retry run the same code.
//!
//! Time. The one clock is `now() = icount * ns_per_insn + skipped_ns`: instructions retired by all tasks, plus
//! the time skipped while every task was blocked and one of them had a deadline. A slice ends at the next
//! deadline (a blocked task's, or a process timer's expiry: timer.rs), so timeouts and timers fire at an exact
//! instruction count; due timers fire in the wake-up pass before each scheduling decision, and a blocked
//! syscall that finds a signal its mask lets through already pending is interrupted at once. When every task is blocked and none has
//! a deadline or a timer, the run ends with a deadlock report naming each task and what it waits on.
//!
//! Invariants: a tid is in at most one of {the running thread, `threads`}; a thread in `blocked` is not in the
//! run queue; the running thread is runnable unless it just blocked or exited (`current_can_run`).

use super::abi::*;
use super::ids::{GuestNs, Pid, Tid};
use super::sysnames::syscall_name;
use super::task::{Process, Thread};
use super::{Host, LinuxMachine, Termination};
use crate::cpu::RAX;
use std::fmt::Write;

/// Most consecutive time skips to timer expiries with every task waiting and none of them with a timeout of
/// its own, before the run counts as deadlocked (a periodic timer whose signal every task blocks).
const IDLE_TIMER_SKIPS_MAX: u64 = 100_000;

/// Why a blocked task waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wait {
    /// FUTEX_WAIT on a futex word.
    Futex { key: FutexKey, bitset: u32 },
    /// A syscall re-run whenever the kernel's state moved or its deadline passed.
    Retry,
    /// A sleep: re-run only at its deadline (or when a signal interrupts it).
    Sleep,
    /// vfork: the parent waits until its child execs or exits (woken with the child's pid).
    Vfork { child: Pid },
}

/// A futex word: the address space and the address, or for a word in a shared mapping the mapped file (its
/// inode number) and the offset in it, whichever process maps it (`space` is then `FutexKey::SHARED`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FutexKey {
    pub space: u32,
    pub object: u64,
    pub addr: u64,
}

impl FutexKey {
    /// The `space` of a key of a word in a shared mapping.
    pub const SHARED: u32 = u32::MAX;
}

/// A task in the blocked pool.
#[derive(Clone, Debug)]
pub struct Blocked {
    pub wait: Wait,
    /// The syscall's own timeout (kept across its re-runs: `Restart::deadline`).
    pub deadline: Option<GuestNs>,
    /// An earlier time to re-run a Retry waiter (a timerfd it waits on expires then), which is not its
    /// timeout.
    pub wake_at: Option<GuestNs>,
    /// The kernel's generation when the task blocked (a Retry waiter runs again once it has moved).
    pub generation: u64,
    /// The syscall it is in, with its arguments: re-run for Retry, named in the deadlock report.
    pub nr: u64,
    pub args: [u64; 6],
}

/// A syscall to re-run when its thread next runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Restart {
    pub nr: u64,
    pub args: [u64; 6],
    pub deadline: Option<GuestNs>,
}

impl<H: Host> LinuxMachine<H> {
    /// The global virtual clock.
    pub(super) fn guest_time(&self) -> GuestNs {
        GuestNs(self.elapsed_ns())
    }

    /// The global instruction count at which the clock reads `t` (the next instruction boundary at or after).
    pub(super) fn icount_at(&self, t: GuestNs) -> u64 {
        let rate = self.config.ns_per_insn.max(1);
        let ns = t.0.saturating_sub(self.skipped_ns);
        ns.div_ceil(rate)
    }

    /// Something happened that a Retry waiter may be waiting for.
    pub(super) fn bump_generation(&mut self) {
        self.generation = self.generation.wrapping_add(1);
    }

    /// The running thread can go on running (it did not block or exit).
    pub(super) fn current_can_run(&self) -> bool {
        !self.thread_exited && !self.blocked.contains_key(&self.thread.tid)
    }

    /// The running thread waits: it leaves the run queue for the blocked pool.
    pub(super) fn block_current(
        &mut self,
        wait: Wait,
        deadline: Option<GuestNs>,
        nr: u64,
        args: [u64; 6],
    ) {
        let tid = self.thread.tid;
        debug_assert!(!self.blocked.contains_key(&tid));
        self.sched.remove(tid);
        // A wake-up time not after now would re-run the call at once for ever without the clock moving.
        let now = self.guest_time();
        let wake_at = self
            .block_wake_at
            .take()
            .filter(|&t| wait == Wait::Retry && t > now);
        self.blocked.insert(
            tid,
            Blocked {
                wait,
                deadline,
                wake_at,
                generation: self.generation,
                nr,
                args,
            },
        );
    }

    /// Makes a blocked thread runnable. With a `result` (a futex waiter woken or timed out), that is what its
    /// syscall returns; without, its syscall is re-run when it next runs (a Retry or Sleep waiter whose state
    /// may have changed, or any waiter a signal interrupts: the re-run answers EINTR or restarts it).
    pub(super) fn wake(&mut self, tid: Tid, result: Option<u64>) {
        let Some(b) = self.blocked.remove(&tid) else {
            return;
        };
        if let Wait::Futex { key, .. } = b.wait {
            self.remove_futex_waiter(key, tid);
        }
        // With a result (a futex waiter woken or timed out, a vfork parent released), that is what the
        // syscall returns; without one, the syscall is run again.
        let restart = match result {
            Some(_) => None,
            None => Some(Restart {
                nr: b.nr,
                args: b.args,
                deadline: b.deadline,
            }),
        };
        let value = result.unwrap_or(0);
        if tid == self.thread.tid {
            self.thread.restart = restart;
            if restart.is_none() {
                self.machine.cpu.regs.gpr[RAX] = value;
            }
        } else if let Some(t) = self.threads.get_mut(&tid) {
            t.restart = restart;
            if restart.is_none() {
                t.regs.gpr[RAX] = value;
            }
        }
        self.sched.make_runnable(tid);
    }

    /// Wakes the Retry waiters that have not run since the kernel's state last moved, and every waiter whose
    /// deadline has passed. Called before each scheduling decision.
    pub(super) fn wake_due(&mut self) {
        self.fire_timers();
        let now = self.guest_time();
        let generation = self.generation;
        let due: Vec<(Tid, Option<u64>)> = self
            .blocked
            .iter()
            .filter_map(|(&tid, b)| {
                let expired = b.deadline.is_some_and(|d| d <= now);
                let woken = b.wake_at.is_some_and(|d| d <= now);
                match b.wait {
                    Wait::Retry if expired || woken || b.generation != generation => {
                        Some((tid, None))
                    }
                    Wait::Sleep if expired => Some((tid, None)),
                    Wait::Futex { .. } if expired => Some((tid, Some(ETIMEDOUT.negated()))),
                    _ => None,
                }
            })
            .collect();
        for (tid, result) in due {
            self.wake(tid, result);
        }
    }

    /// The earliest deadline of a blocked task or a process's timer.
    pub(super) fn next_deadline(&self) -> Option<GuestNs> {
        let timers = self.next_timer_expiry();
        self.next_wait_deadline().into_iter().chain(timers).min()
    }

    /// The earliest time a blocked task is woken by the clock (its timeout or its wake-up time).
    fn next_wait_deadline(&self) -> Option<GuestNs> {
        self.blocked
            .values()
            .flat_map(|b| b.deadline.into_iter().chain(b.wake_at))
            .min()
    }

    /// The earliest expiry of a timer that sends a signal, over every live process.
    fn next_timer_expiry(&self) -> Option<GuestNs> {
        let running = (!self.proc.exited).then_some(&self.proc);
        running
            .into_iter()
            .chain(self.procs.values())
            .filter_map(|p| p.timers.next_expiry())
            .min()
    }

    /// Fires the timers that are due (timer.rs): their signals are queued as Linux queues them, waking the
    /// task that takes them.
    fn fire_timers(&mut self) {
        let now = self.guest_time();
        if self.next_timer_expiry().is_none_or(|t| t > now) {
            return;
        }
        for pid in self.process_ids() {
            let fired = match self.process_mut(pid) {
                Some(p) => p.timers.fire(now),
                None => continue,
            };
            for f in fired {
                self.timer_signal(pid, f);
            }
        }
    }

    /// Chooses the thread to run next and switches to it. Returns false when the run ended instead (every
    /// task exited, or a deadlock).
    pub(super) fn schedule(&mut self) -> bool {
        #[cfg(debug_assertions)]
        self.check_task_invariants();
        loop {
            self.wake_due();
            if let Some((tid, slice)) = self.sched.pick(self.icount()) {
                self.idle_timer_skips = 0;
                self.slice_end = self.icount().saturating_add(slice);
                self.switch_to(tid);
                self.resume_current();
                return true;
            }
            // Nothing can run: skip the clock to the next deadline, or report the deadlock. Timers whose
            // signals nobody takes (blocked ones, say) would skip time for ever: past a bound they count as
            // no timer.
            let only_timers = self.next_wait_deadline().is_none();
            self.idle_timer_skips = if only_timers {
                self.idle_timer_skips + 1
            } else {
                0
            };
            match self.next_deadline() {
                Some(d) if self.idle_timer_skips <= IDLE_TIMER_SKIPS_MAX => {
                    let now = self.guest_time();
                    debug_assert!(d > now, "a due deadline would have woken its task");
                    self.skipped_ns = self.skipped_ns.saturating_add(now.until(d).max(1));
                }
                _ => {
                    let report = self.deadlock_report();
                    self.terminate(Termination::Deadlock {
                        icount: self.icount(),
                        report,
                    });
                    return false;
                }
            }
        }
    }

    /// Work a thread does as it gets the CPU: re-run its interrupted syscall, or take its signals.
    fn resume_current(&mut self) {
        if let Some(r) = self.thread.restart.take() {
            self.restart_syscall(r);
        } else {
            self.deliver_pending();
        }
    }

    /// Makes `tid` the running thread: its registers into the engine, its process and address space in place.
    pub(super) fn switch_to(&mut self, tid: Tid) {
        if tid == self.thread.tid && !self.thread_exited {
            return;
        }
        let next = self
            .threads
            .remove(&tid)
            .expect("the scheduler picks only threads the kernel knows");
        let mut previous = std::mem::replace(&mut self.thread, next);
        previous.regs = std::mem::take(&mut self.machine.cpu.regs);
        let previous_exited = std::mem::replace(&mut self.thread_exited, false);
        if self.thread.pid != self.proc.pid {
            self.switch_process(self.thread.pid);
        }
        self.machine.cpu.regs = std::mem::take(&mut self.thread.regs);
        self.stats.context_switches += 1;
        if !previous_exited {
            self.threads.insert(previous.tid, previous);
        }
    }

    /// Makes `pid` the running process (its address space the engine's), keeping the global instruction count.
    /// A process that has exited is dropped here, and its address space with it unless another process shares
    /// it (a vfork child's parent).
    fn switch_process(&mut self, pid: Pid) {
        let icount = self.icount();
        // Shared mappings are coherent across processes at every switch: what this process stored reaches the
        // files before another runs, and the next one's pages show the files when it resumes (files.rs).
        self.flush_shared_maps();
        let next = self
            .procs
            .remove(&pid)
            .expect("a thread's process exists while it has threads");
        let previous = std::mem::replace(&mut self.proc, next);
        if previous.space != self.proc.space {
            let machine = self
                .spaces
                .remove(&self.proc.space)
                .expect("a process's address space exists while it has threads");
            let mut old = std::mem::replace(&mut self.machine, machine);
            // Coverage follows the CPU, not the address space: every process's edges go into one map.
            self.machine.set_coverage(old.set_coverage(None));
            let shared = self.procs.values().any(|p| p.space == previous.space);
            if !previous.exited || shared {
                self.spaces.insert(previous.space, old);
            }
        }
        self.machine.cpu.icount = icount;
        self.reload_shared_maps();
        self.vfs.exe_path = self.proc.exe_path.clone();
        if !previous.exited {
            self.procs.insert(previous.pid, previous);
        }
    }

    // ---------------------------------------------------------------------------------------------------------
    // Finding tasks, running or not.

    pub(super) fn thread_ref(&self, tid: Tid) -> Option<&Thread> {
        if tid == self.thread.tid && !self.thread_exited {
            Some(&self.thread)
        } else {
            self.threads.get(&tid)
        }
    }

    pub(super) fn thread_mut(&mut self, tid: Tid) -> Option<&mut Thread> {
        if tid == self.thread.tid && !self.thread_exited {
            Some(&mut self.thread)
        } else {
            self.threads.get_mut(&tid)
        }
    }

    pub(super) fn process_ref(&self, pid: Pid) -> Option<&Process> {
        if pid == self.proc.pid && !self.proc.exited {
            Some(&self.proc)
        } else {
            self.procs.get(&pid)
        }
    }

    pub(super) fn process_mut(&mut self, pid: Pid) -> Option<&mut Process> {
        if pid == self.proc.pid && !self.proc.exited {
            Some(&mut self.proc)
        } else {
            self.procs.get_mut(&pid)
        }
    }

    /// Every live process, in pid order.
    pub(super) fn process_ids(&self) -> Vec<Pid> {
        let mut ids: Vec<Pid> = self.procs.keys().copied().collect();
        if !self.proc.exited {
            ids.push(self.proc.pid);
        }
        ids.sort();
        ids
    }

    /// The live processes of a process group.
    pub(super) fn processes_in_group(&self, pgid: Pid) -> Vec<Pid> {
        self.process_ids()
            .into_iter()
            .filter(|&p| self.process_ref(p).is_some_and(|q| q.pgid == pgid))
            .collect()
    }

    /// The threads of a process: the running one first if it is one of them, then by tid.
    pub(super) fn threads_of(&self, pid: Pid) -> Vec<Tid> {
        let mut out = Vec::new();
        if self.thread.pid == pid && !self.thread_exited {
            out.push(self.thread.tid);
        }
        out.extend(
            self.threads
                .values()
                .filter(|t| t.pid == pid)
                .map(|t| t.tid),
        );
        out
    }

    /// The invariants of the task tables (checked before each scheduling decision in debug builds): a futex
    /// queue holds only tasks blocked on its word; a blocked task is not runnable; every known thread's process
    /// is alive.
    #[cfg(debug_assertions)]
    fn check_task_invariants(&self) {
        for (key, queue) in &self.futex_waiters {
            for tid in queue {
                match self.blocked.get(tid).map(|b| &b.wait) {
                    Some(Wait::Futex { key: k, .. }) => {
                        assert_eq!(k, key, "task {tid} queued on the wrong word")
                    }
                    other => panic!("task {tid} queued on a futex word but waits in {other:?}"),
                }
            }
        }
        for tid in self.blocked.keys() {
            assert!(
                !self.sched.is_runnable(*tid),
                "task {tid} is both blocked and runnable"
            );
        }
        for t in self.threads.values() {
            assert!(
                self.process_ref(t.pid).is_some(),
                "thread {} belongs to process {}, which is gone",
                t.tid,
                t.pid
            );
        }
    }

    /// The deadlock report: every task and what it waits on.
    fn deadlock_report(&self) -> String {
        let mut s = String::from("deadlock: every task is blocked and no timer is pending\n");
        if self.next_timer_expiry().is_some() {
            s.push_str("  (timers are armed, but every task blocks or ignores what they send)\n");
        }
        for (tid, b) in &self.blocked {
            let pid = if *tid == self.thread.tid {
                self.thread.pid
            } else {
                self.threads.get(tid).map_or(Pid(0), |t| t.pid)
            };
            let what = b.describe();
            let _ = writeln!(s, "  task {tid} (process {pid}) waits in {what}");
        }
        s
    }
}

impl Blocked {
    /// What the task waits in, for people: the deadlock report, the debugger's thread list.
    pub fn describe(&self) -> String {
        match &self.wait {
            Wait::Futex { key, .. } if key.space == FutexKey::SHARED => format!(
                "futex_wait on the word at offset {:#x} of shared file {:#x}",
                key.addr, key.object
            ),
            Wait::Futex { key, .. } => format!("futex_wait on the word at {:#x}", key.addr),
            Wait::Sleep => "a sleep or pause".to_string(),
            Wait::Vfork { child } => format!("vfork, for child {child} to exec or exit"),
            Wait::Retry => format!(
                "{}({:#x}, {:#x}, {:#x})",
                syscall_name(self.nr),
                self.args[0],
                self.args[1],
                self.args[2]
            ),
        }
    }
}

impl Errno {
    /// The value a syscall returns for this error (-errno as a register).
    pub fn negated(self) -> u64 {
        (-(self.0 as i64)) as u64
    }
}
