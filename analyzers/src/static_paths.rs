//! The constant paths a program's code passes to the system calls that name files (open, stat, execve and
//! their *at forms: `syscall_policy::path_argument`), for the path allow-list of a container profile.
//!
//! Each syscall instruction that may take a path leaves a `SiteFact`: its number and its first two arguments
//! as values of the function's entry state. A fact whose number and path argument are constants names a path
//! (the NUL-terminated string at that address of the image). A fact that still depends on the function's
//! parameters (a wrapper: musl's `__syscall_cp_asm`, glibc's `open64` taking the path in rdi) is carried to
//! every direct caller, its parameters replaced by the caller's values there, to a fixed point, as the syscall
//! numbers are (static_profile.rs). What is left is counted, never dropped silently: a path computed at run
//! time (from argv, snprintf, a directory walk) cannot be known from the binary, and a profile that lists
//! paths denies it.

use crate::image::Image;
use crate::static_profile::{FunctionFacts, SiteFact, Val};
use std::collections::{BTreeMap, BTreeSet};
use tandem_emulator::linux::syscall_policy::path_argument;

/// Facts carried into one function at most (beyond, the rest are counted as non-constant).
const FACTS_PER_FUNCTION_MAX: usize = 512;
/// Bytes of a path string read at most (Linux's PATH_MAX).
const PATH_BYTES_MAX: usize = 4096;

/// The constant paths found, and how many path-taking calls name a path the analysis cannot know.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StaticPaths {
    pub paths: BTreeSet<String>,
    /// Path arguments found not constant (computed, loaded from memory, or too many facts to follow).
    pub computed_count: usize,
}

/// The constant paths of the reachable functions `facts`.
pub(crate) fn collect(image: &Image, facts: &BTreeMap<u64, FunctionFacts>) -> StaticPaths {
    let mut callers: BTreeMap<u64, Vec<(u64, usize)>> = BTreeMap::new();
    for (&f, ff) in facts {
        for (i, call) in ff.calls.iter().enumerate() {
            callers.entry(call.callee).or_default().push((f, i));
        }
    }
    let mut out = StaticPaths::default();
    let mut carried: BTreeMap<u64, BTreeSet<SiteFact>> = BTreeMap::new();
    let mut work: Vec<(u64, SiteFact)> = Vec::new();
    for (&f, ff) in facts {
        for &fact in &ff.sites {
            resolve(image, f, fact, &mut out, &mut carried, &mut work);
        }
    }
    while let Some((f, fact)) = work.pop() {
        for &(caller, i) in callers.get(&f).map(Vec::as_slice).unwrap_or_default() {
            let call = &facts[&caller].calls[i];
            let there = SiteFact {
                number: call.substitute(fact.number),
                args: fact.args.map(|a| call.substitute(a)),
            };
            resolve(image, caller, there, &mut out, &mut carried, &mut work);
        }
    }
    out
}

/// Records `fact` of function `f`: a path when it is constant, a non-constant path, or a fact to carry to the
/// callers of `f` (queued in `work` the first time `f` has it).
fn resolve(
    image: &Image,
    f: u64,
    fact: SiteFact,
    out: &mut StaticPaths,
    carried: &mut BTreeMap<u64, BTreeSet<SiteFact>>,
    work: &mut Vec<(u64, SiteFact)>,
) {
    let depends = |v: Val| matches!(v, Val::Param(_) | Val::StackArg(_));
    let path = match fact.number {
        Val::Const(nr) => match path_argument(nr) {
            Some(k) => fact.args[k],
            None => return,
        },
        v if depends(v) => {
            carry(f, fact, out, carried, work);
            return;
        }
        _ => return,
    };
    match path {
        Val::Const(addr) => match string_at(image, addr) {
            Some(p) => {
                out.paths.insert(p);
            }
            None => out.computed_count += 1,
        },
        v if depends(v) => carry(f, fact, out, carried, work),
        _ => out.computed_count += 1,
    }
}

fn carry(
    f: u64,
    fact: SiteFact,
    out: &mut StaticPaths,
    carried: &mut BTreeMap<u64, BTreeSet<SiteFact>>,
    work: &mut Vec<(u64, SiteFact)>,
) {
    let set = carried.entry(f).or_default();
    if set.len() >= FACTS_PER_FUNCTION_MAX {
        out.computed_count += 1;
    } else if set.insert(fact) {
        work.push((f, fact));
    }
}

/// The NUL-terminated UTF-8 string at `addr` of the image, without newlines (a profile file holds one path a
/// line); None for anything else.
fn string_at(image: &Image, addr: u64) -> Option<String> {
    let mut bytes = Vec::new();
    for i in 0..PATH_BYTES_MAX as u64 {
        let b = image.read(addr.checked_add(i)?, 1)?[0];
        if b == 0 {
            let s = String::from_utf8(bytes).ok()?;
            return (!s.contains('\n')).then_some(s);
        }
        bytes.push(b);
    }
    None
}
