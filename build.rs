//! Puts the commit tandem was built from into `tandem --version` (TANDEM_COMMIT), so that a reproduce line
//! pasted into a bug report says which tandem ran it. Built outside a git checkout (a source tarball), the
//! commit is "unknown". Uncommitted changes are not marked: the build script reruns when HEAD moves, not on
//! every edit, so such a mark would go stale.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8(out.stdout).ok()?.trim().to_string())
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=TANDEM_COMMIT={commit}");
    // Rebuild when HEAD moves (a commit, a checkout): HEAD itself and the ref it names.
    // (In a worktree HEAD is in its own git dir and the refs in the common one.)
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
    }
    if let (Some(common), Some(head_ref)) = (
        git(&["rev-parse", "--git-common-dir"]),
        git(&["symbolic-ref", "-q", "HEAD"]),
    ) {
        println!("cargo:rerun-if-changed={common}/{head_ref}");
        println!("cargo:rerun-if-changed={common}/packed-refs");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
