//! Syscall fault injection: a plan of results to override at the Nth call of a syscall, for fuzzing and fault
//! campaigns. The faults are ones a real kernel can give (man pages, section 2, ERRORS): ENOMEM from mmap and
//! brk, a short read or write (fewer bytes than asked, as a pipe, a socket or a signal gives), EINTR, ENOSPC and
//! EIO, so a program's error paths run as they would on a machine under memory pressure, a full disk or a
//! failing device.
//!
//! The kernel consults the plan at each syscall attempt (`syscalls::attempt_syscall`), before the handler runs:
//! an errno fault returns at once without running the syscall (Linux checks before it changes anything); a short
//! transfer lowers the count argument (rdx of read, write, pread64, pwrite64) and lets the syscall run. Calls are
//! counted per syscall number from the moment the plan is installed, first attempts only (a re-run after blocking
//! is the same call). The plan is an input of the run like stdin: the same plan gives the same run.

use super::abi::Errno;
use std::collections::BTreeMap;

/// Most faults one plan holds.
pub const FAULTS_MAX: usize = 64;

/// What happens at a faulted call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SyscallFaultAction {
    /// The call fails with this errno (a positive number: 12 is ENOMEM).
    Errno(u16),
    /// A read or write moves at most this many bytes (at least 1; 0 would be end of file).
    Short(u32),
}

/// One override: the `call`th call (1-based) of syscall number `nr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SyscallFault {
    pub nr: u64,
    pub call: u64,
    pub action: SyscallFaultAction,
}

/// The syscalls whose count argument (rdx) a short transfer lowers.
pub const SHORT_SYSCALLS: [u64; 4] = [0, 1, 17, 18]; // read, write, pread64, pwrite64

/// A plan being applied: the faults and the calls counted so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyscallFaults {
    faults: BTreeMap<(u64, u64), SyscallFaultAction>,
    calls: BTreeMap<u64, u64>,
    /// Faults that fired, in order (for reports).
    fired: Vec<SyscallFault>,
}

impl SyscallFaults {
    /// A plan from its faults (a later fault at the same call replaces an earlier one; at most `FAULTS_MAX`).
    pub fn new(faults: &[SyscallFault]) -> SyscallFaults {
        let faults = faults
            .iter()
            .take(FAULTS_MAX)
            .map(|f| ((f.nr, f.call), f.action))
            .collect();
        SyscallFaults {
            faults,
            ..SyscallFaults::default()
        }
    }

    /// This plan's calls counted so far, with `faults` as the plan from here on (none fired yet): a plan
    /// installed in a snapshot taken after start-up keeps counting from the calls start-up made, so that a
    /// fault names the same call whether the run starts from the snapshot or from the program's start. A fault
    /// at a call already made never fires.
    pub fn replanned(&self, faults: &[SyscallFault]) -> SyscallFaults {
        SyscallFaults {
            calls: self.calls.clone(),
            ..SyscallFaults::new(faults)
        }
    }

    /// Counts a first attempt of syscall `nr`; the action for it, if the plan has one.
    pub(super) fn on_call(&mut self, nr: u64) -> Option<SyscallFaultAction> {
        let n = self.calls.entry(nr).or_insert(0);
        *n += 1;
        let call = *n;
        let action = *self.faults.get(&(nr, call))?;
        if matches!(action, SyscallFaultAction::Short(_)) && !SHORT_SYSCALLS.contains(&nr) {
            return None;
        }
        self.fired.push(SyscallFault { nr, call, action });
        Some(action)
    }

    /// The faults of the plan, in (syscall, call) order.
    pub fn planned(&self) -> impl Iterator<Item = SyscallFault> + '_ {
        self.faults
            .iter()
            .map(|(&(nr, call), &action)| SyscallFault { nr, call, action })
    }

    /// The faults that fired so far, in the order they fired.
    pub fn fired(&self) -> &[SyscallFault] {
        &self.fired
    }
}

impl SyscallFaultAction {
    pub(super) fn errno(self) -> Option<Errno> {
        match self {
            SyscallFaultAction::Errno(e) => Some(Errno(e as i32)),
            SyscallFaultAction::Short(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nth_call_of_the_named_syscall_fires_once() {
        let mut f = SyscallFaults::new(&[SyscallFault {
            nr: 9,
            call: 2,
            action: SyscallFaultAction::Errno(12),
        }]);
        assert_eq!(f.on_call(9), None);
        assert_eq!(f.on_call(0), None);
        assert_eq!(f.on_call(9), Some(SyscallFaultAction::Errno(12)));
        assert_eq!(f.on_call(9), None);
        assert_eq!(f.fired().len(), 1);
    }

    #[test]
    fn a_replanned_plan_keeps_the_counts() {
        let mut f = SyscallFaults::new(&[]);
        assert_eq!(f.on_call(9), None);
        let fault = |call| SyscallFault {
            nr: 9,
            call,
            action: SyscallFaultAction::Errno(12),
        };
        let mut g = f.replanned(&[fault(1), fault(3)]);
        assert_eq!(g.on_call(9), None, "call 2: call 1 was made before");
        assert_eq!(g.on_call(9), Some(SyscallFaultAction::Errno(12)));
        assert_eq!(g.fired(), [fault(3)]);
    }

    #[test]
    fn a_short_transfer_applies_only_to_reads_and_writes() {
        let short = SyscallFaultAction::Short(1);
        let mut f = SyscallFaults::new(&[
            SyscallFault {
                nr: 9,
                call: 1,
                action: short,
            },
            SyscallFault {
                nr: 0,
                call: 1,
                action: short,
            },
        ]);
        assert_eq!(f.on_call(9), None);
        assert_eq!(f.on_call(0), Some(short));
    }
}
