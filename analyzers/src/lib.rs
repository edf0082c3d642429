//! tandem-analyzers: analyses of programs and of their runs.
//!
//! Part 1 of issue 16, container profiles: which system calls a program can make, found statically from its
//! binary (`static_profile`), what it did make in recorded runs (`dynamic`), how the two compare (`score`) and a
//! profile exported as an OCI/Docker seccomp file (`seccomp`). Parts 2 and 3: the system calls of a recorded run
//! (`calls`, by replaying its trace), where two runs part (`diff`) and integrity baselines of a service's
//! operations (`baseline`). Fuzzing (`fuzz`) and crash-consistency search (`crashtest`, issue 14 part 5).
//! The layering: this crate reads ELF files and traces and runs guests only through the emulator's `Host`
//! interface, on hosts its callers give it; it does no file IO of its own beyond what those hosts and file sources do.

pub mod baseline;
pub mod calls;
pub mod crashtest;
pub mod diff;
pub mod dynamic;
pub mod fuzz;
pub mod image;
pub mod profile_file;
pub mod program;
pub mod score;
pub mod seccomp;
pub mod static_paths;
pub mod static_profile;
pub mod why;

use std::collections::BTreeSet;

/// A set of system-call numbers (x86-64), in ascending order.
pub type SyscallSet = BTreeSet<u64>;

/// The x86-64 name of syscall `nr` ("unknown" for a number Linux does not have).
pub fn syscall_name(nr: u64) -> &'static str {
    tandem_emulator::linux::sysnames::syscall_name(nr)
}

/// The number of the syscall named `name`, if x86-64 Linux has one.
pub fn syscall_number(name: &str) -> Option<u64> {
    tandem_emulator::linux::sysnames::SYSCALL_NAMES
        .iter()
        .find(|(_, n)| *n == name)
        .map(|(nr, _)| *nr)
}
