//! Export of a profile as an OCI/Docker seccomp file: everything not listed fails with EPERM
//! (`SCMP_ACT_ERRNO`, errno 1), the profile's syscalls are allowed by name, x86-64 only.
//!
//! execve is always allowed: a container runtime (runc, crun) installs the filter in its own process and then
//! executes the container's program, so that execve is checked by the filter too; without it no container
//! would start. tests/data/seccomp_exec.py loads the file with libseccomp the same way.

use crate::{syscall_name, SyscallSet};

/// The runtime's execve of the container's program, checked by the filter it installed just before.
const SYS_EXECVE: u64 = 59;

/// The seccomp JSON document for `syscalls` (numbers Linux has no name for are left out: they cannot be
/// named, and a kernel without them answers ENOSYS anyway).
pub fn to_json(syscalls: &SyscallSet) -> serde_json::Value {
    let mut with_exec = syscalls.clone();
    with_exec.insert(SYS_EXECVE);
    let names: Vec<&str> = with_exec
        .iter()
        .map(|&nr| syscall_name(nr))
        .filter(|n| *n != "unknown")
        .collect();
    serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            { "names": names, "action": "SCMP_ACT_ALLOW" }
        ]
    })
}

/// The document as pretty-printed text with a final newline.
pub fn to_string(syscalls: &SyscallSet) -> String {
    let mut s =
        serde_json::to_string_pretty(&to_json(syscalls)).expect("a JSON value always serialises");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_allows_exactly_the_profile_by_name() {
        let doc: serde_json::Value =
            serde_json::from_str(&to_string(&[0, 1, 60, 231, 9999].into())).unwrap();
        assert_eq!(doc["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(doc["architectures"][0], "SCMP_ARCH_X86_64");
        let names: Vec<&str> = doc["syscalls"][0]["names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        assert_eq!(names, ["read", "write", "execve", "exit", "exit_group"]);
        assert_eq!(doc["syscalls"][0]["action"], "SCMP_ACT_ALLOW");
    }
}
