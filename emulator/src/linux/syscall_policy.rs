//! Enforcement of a container profile (issue 16): the syscalls a program may make, and the answer every other
//! one gets, as seccomp gives it (seccomp(2), SECCOMP_RET_ERRNO and SECCOMP_RET_KILL_PROCESS): a chosen errno
//! without running the call, or the whole process killed by SIGSYS.
//!
//! The kernel consults the policy at each syscall instruction (`syscalls::syscall`), before the fault plan and
//! before the handler, so a denied call changes nothing but rax. Re-runs of a blocked call are not checked again
//! (the call was allowed when it was made). Each denial is kept (the first `DENIALS_MAX`, then counted) with the
//! thread, the syscall instruction's rip and the icount, so that the run's report names every place a profile
//! was too tight. The policy is an input of the run like the fault plan: the same policy gives the same run.
//!
//! Paths (opt-in): when the profile lists the paths a program may name, a call that takes a path
//! (`path_argument`) and names another one is denied too: it fails with EACCES, as an LSM's denial does
//! (AppArmor, Landlock), or kills the process under the kill action. Paths are compared as the program passed
//! them (the static analysis collects the constant strings the program passes), exactly, or by prefix for an
//! entry ending in `*`; the empty path (AT_EMPTY_PATH) names a descriptor and is always allowed.
//!
//! Phases: the runtime may replace the rules (`set_rules`) when the program reaches a phase boundary (start-up
//! to serving); the denials made so far are kept.

use std::collections::BTreeSet;

/// EACCES: what a denied path answers under an errno action.
pub const PATH_DENIED_ERRNO: u16 = 13;

/// The argument (0-based) that holds the path of the x86-64 syscalls that name a file by path in their first
/// two arguments: open, stat, execve and their *at forms. Calls with a second path further on (renameat's new
/// name, linkat's) are checked on the first one only.
pub fn path_argument(nr: u64) -> Option<usize> {
    match nr {
        // open stat lstat access execve truncate chdir rename mkdir rmdir creat link unlink readlink chmod
        // chown lchown utime mknod statfs chroot acct, the *xattr calls on paths, utimes (symlink's first
        // argument is the link's text, not a path it opens)
        2 | 4 | 6 | 21 | 59 | 76 | 80 | 82 | 83 | 84 | 85 | 86 | 87 | 89 | 90 | 92 | 94 | 132
        | 133 | 137 | 161 | 163 | 188 | 189 | 191 | 192 | 194 | 195 | 197 | 198 | 235 => Some(0),
        // openat mkdirat mknodat fchownat futimesat newfstatat unlinkat renameat linkat readlinkat fchmodat
        // faccessat utimensat execveat renameat2 statx openat2 faccessat2 fchmodat2
        257 | 258 | 259 | 260 | 261 | 262 | 263 | 264 | 265 | 267 | 268 | 269 | 280 | 322 | 316
        | 332 | 437 | 439 | 452 => Some(1),
        _ => None,
    }
}

/// What a profile allows: syscalls by number, and (when listed) the paths calls may name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    pub syscalls: BTreeSet<u64>,
    /// None: paths are not checked. Entries ending in `*` are prefixes.
    pub paths: Option<BTreeSet<Vec<u8>>>,
}

impl Rules {
    /// Whether `path` is one the rules allow (always, when they list no paths).
    pub fn allows_path(&self, path: &[u8]) -> bool {
        let Some(paths) = &self.paths else {
            return true;
        };
        path.is_empty()
            || paths.contains(path)
            || paths
                .iter()
                .any(|p| p.last() == Some(&b'*') && path.starts_with(&p[..p.len() - 1]))
    }
}

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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    pub nr: u64,
    pub tid: i32,
    /// The address of the syscall instruction.
    pub rip: u64,
    pub icount: u64,
    /// The path the call named, when it was denied for its path.
    pub path: Option<Vec<u8>>,
}

/// The allowed syscalls, the answer to the others, and the denials so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyscallPolicy {
    rules: Rules,
    action: DenyAction,
    denials: Vec<Denial>,
    denied_count: u64,
}

impl SyscallPolicy {
    pub fn new(allowed: BTreeSet<u64>, action: DenyAction) -> SyscallPolicy {
        SyscallPolicy::with_rules(
            Rules {
                syscalls: allowed,
                paths: None,
            },
            action,
        )
    }

    pub fn with_rules(rules: Rules, action: DenyAction) -> SyscallPolicy {
        SyscallPolicy {
            rules,
            action,
            denials: Vec::new(),
            denied_count: 0,
        }
    }

    /// Replaces the rules (a phase boundary was reached); the denials so far are kept.
    pub fn set_rules(&mut self, rules: Rules) {
        self.rules = rules;
    }

    /// Whether the rules check paths: then the kernel reads the path of each call that takes one and asks
    /// `check_path`.
    pub fn checks_paths(&self) -> bool {
        self.rules.paths.is_some()
    }

    /// Checks syscall `nr` made at `rip` by `tid`: None when allowed, else the action (the denial recorded).
    pub(super) fn check(&mut self, nr: u64, tid: i32, rip: u64, icount: u64) -> Option<DenyAction> {
        if self.rules.syscalls.contains(&nr) {
            return None;
        }
        self.deny(Denial {
            nr,
            tid,
            rip,
            icount,
            path: None,
        });
        Some(self.action)
    }

    /// Checks the path an allowed call names: None when allowed, else the answer (EACCES, or the kill).
    pub(super) fn check_path(&mut self, denial: Denial) -> Option<DenyAction> {
        let path = denial.path.as_deref().unwrap_or_default();
        if self.rules.allows_path(path) {
            return None;
        }
        self.deny(denial);
        Some(match self.action {
            DenyAction::Errno(_) => DenyAction::Errno(PATH_DENIED_ERRNO),
            DenyAction::Kill => DenyAction::Kill,
        })
    }

    fn deny(&mut self, denial: Denial) {
        self.denied_count += 1;
        if self.denials.len() < DENIALS_MAX {
            self.denials.push(denial);
        }
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
                icount: 20,
                path: None,
            }]
        );
        for i in 0..DENIALS_MAX as u64 + 5 {
            p.check(39, 7, 0, i);
        }
        assert_eq!(p.denials().len(), DENIALS_MAX);
        assert_eq!(p.denied_count(), DENIALS_MAX as u64 + 6);
    }

    #[test]
    fn listed_paths_pass_others_answer_eacces_and_prefixes_match() {
        let rules = Rules {
            syscalls: [2, 257].into(),
            paths: Some([b"/etc/passwd".to_vec(), b"/data/*".to_vec()].into()),
        };
        let mut p = SyscallPolicy::with_rules(rules, DenyAction::Errno(1));
        let at = |path: &[u8]| Denial {
            nr: 257,
            tid: 1,
            rip: 0x401000,
            icount: 5,
            path: Some(path.to_vec()),
        };
        assert_eq!(p.check_path(at(b"/etc/passwd")), None);
        assert_eq!(p.check_path(at(b"/data/readme")), None);
        assert_eq!(
            p.check_path(at(b"")),
            None,
            "AT_EMPTY_PATH names a descriptor"
        );
        assert_eq!(
            p.check_path(at(b"/etc/shadow")),
            Some(DenyAction::Errno(13))
        );
        assert_eq!(
            p.check_path(at(b"/etc/passwd2")),
            Some(DenyAction::Errno(13))
        );
        assert_eq!(p.denials().len(), 2);
        assert_eq!(p.denials()[0].path.as_deref(), Some(&b"/etc/shadow"[..]));
        // A new phase's rules apply from then on; the denials stay.
        p.set_rules(Rules {
            syscalls: [2].into(),
            paths: None,
        });
        assert_eq!(p.check(257, 1, 0, 9), Some(DenyAction::Errno(1)));
        assert_eq!(p.check_path(at(b"/etc/shadow")), None);
        assert_eq!(p.denied_count(), 3);
        assert_eq!(path_argument(2), Some(0));
        assert_eq!(path_argument(257), Some(1));
        assert_eq!(path_argument(1), None);
    }
}
