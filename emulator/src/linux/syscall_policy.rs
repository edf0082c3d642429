//! Enforcement of a container profile (issue 16): the syscalls a program may make, and the answer every other
//! one gets, as seccomp gives it (seccomp(2), SECCOMP_RET_ERRNO and SECCOMP_RET_KILL_PROCESS): a chosen errno
//! without running the call, or the whole process killed by SIGSYS.
//!
//! The kernel consults the policy at each syscall instruction (`syscalls::syscall`), before the fault plan and
//! before the handler, so a denied call changes nothing but rax. Re-runs of a blocked call are not checked again
//! (the call was allowed when it was made). Each denial is kept (the first `DENIALS_MAX`, then counted) with the
//! thread, the syscall instruction's rip and the icount, so that the run's report names every place a profile
//! was too tight. The policy is an input of the run like the fault plan: the same policy gives the same run.

use std::collections::BTreeSet;

/// Denials recorded with their place; later ones are only counted.
pub const DENIALS_MAX: usize = 1000;

/// What a denied call gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenyAction {
    /// The call fails with this errno (1: EPERM, as Docker's default; 38: ENOSYS) without running.
    Errno(u16),
    /// The process is killed by SIGSYS (SECCOMP_RET_KILL_PROCESS).
    Kill,
}

/// One denied call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Denial {
    pub nr: u64,
    pub tid: i32,
    /// The address of the syscall instruction.
    pub rip: u64,
    pub icount: u64,
}

/// The allowed syscalls, the answer to the others, and the denials so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyscallPolicy {
    allowed: BTreeSet<u64>,
    action: DenyAction,
    denials: Vec<Denial>,
    denied_count: u64,
}

impl SyscallPolicy {
    pub fn new(allowed: BTreeSet<u64>, action: DenyAction) -> SyscallPolicy {
        SyscallPolicy {
            allowed,
            action,
            denials: Vec::new(),
            denied_count: 0,
        }
    }

    /// Checks syscall `nr` made at `rip` by `tid`: None when allowed, else the action (the denial recorded).
    pub(super) fn check(&mut self, nr: u64, tid: i32, rip: u64, icount: u64) -> Option<DenyAction> {
        if self.allowed.contains(&nr) {
            return None;
        }
        self.denied_count += 1;
        if self.denials.len() < DENIALS_MAX {
            self.denials.push(Denial {
                nr,
                tid,
                rip,
                icount,
            });
        }
        Some(self.action)
    }

    /// The denials recorded, in the order they happened (the first `DENIALS_MAX`).
    pub fn denials(&self) -> &[Denial] {
        &self.denials
    }

    /// Every denial, the unrecorded ones included.
    pub fn denied_count(&self) -> u64 {
        self.denied_count
    }

    pub fn action(&self) -> DenyAction {
        self.action
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_calls_pass_and_others_are_recorded_with_their_place() {
        let mut p = SyscallPolicy::new([0, 1, 231].into(), DenyAction::Errno(1));
        assert_eq!(p.check(1, 7, 0x401000, 10), None);
        assert_eq!(p.check(2, 7, 0x401010, 20), Some(DenyAction::Errno(1)));
        assert_eq!(
            p.denials(),
            [Denial {
                nr: 2,
                tid: 7,
                rip: 0x401010,
                icount: 20
            }]
        );
        for i in 0..DENIALS_MAX as u64 + 5 {
            p.check(39, 7, 0, i);
        }
        assert_eq!(p.denials().len(), DENIALS_MAX);
        assert_eq!(p.denied_count(), DENIALS_MAX as u64 + 6);
    }
}
