//! The static profile: the system calls a program's code can make, from its binary alone.
//!
//! How: every function reachable from the entry point is interpreted abstractly, block by block, with a small
//! value domain per register and per stack slot (a constant, the value a register or stack argument had at the
//! function's entry, a stack address, or unknown). At each `syscall` the value of rax is either a constant (the
//! number) or one of the function's parameters: the function is then a wrapper (musl's `syscall` and
//! `__syscall_cp_asm`, glibc's `syscall`), and the numbers are those its direct callers pass in that parameter,
//! found by propagating through the call graph to a fixed point (wrappers of wrappers included).
//!
//! Reachability policy: a function is reachable when the entry point reaches it through direct calls and jumps,
//! or when its address is taken anywhere it could be called from: an immediate or RIP-relative LEA in reachable
//! code, a pointer-sized word in the program's data, or a relocation's addend (static-PIE pointers, IFUNC
//! resolvers). Indirect calls and jumps through unknown pointers therefore land only on address-taken code;
//! switch tables (absolute, or 32-bit offsets from a LEA'd base) are followed. A syscall whose number cannot be
//! recovered is reported as unresolved, never silently dropped: the profile is then not known to be complete.

use crate::image::{Image, ImageError};
use crate::SyscallSet;
use iced_x86::{
    Code, Decoder, DecoderOptions, FlowControl, Instruction, InstructionInfoFactory, Mnemonic,
    OpAccess, OpKind, Register,
};
use std::collections::{BTreeMap, BTreeSet};

/// Block interpretations allowed per function before it is declared incomplete (a guard against pathological
/// control flow; real functions need a few times their block count).
const BLOCK_RUNS_PER_FUNCTION: usize = 20_000;
/// Joins of a block's state that change it before its stack is forgotten (widening).
const WIDEN_AFTER: u32 = 8;
/// Entries read of one switch table at most.
const JUMP_TABLE_MAX: usize = 4096;
/// Stack arguments recorded at a call site (8-byte slots above the return address).
const STACK_ARGS: i64 = 8;

const RSP: usize = 4;
/// Rounds of the no-return analysis at most (each is a whole reachability pass; each is sound on its own).
const NORETURN_ROUNDS_MAX: usize = 6;
/// exit(2) and exit_group(2): they never return.
const SYS_EXIT: u64 = 60;
const SYS_EXIT_GROUP: u64 = 231;

/// What a register or stack slot holds, as far as the analysis knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Val {
    Unknown,
    Const(u64),
    /// The value general-purpose register `n` had at the function's entry.
    Param(u8),
    /// The 8 bytes at this offset from the entry rsp (8: the first stack argument) as they were at entry.
    StackArg(i64),
    /// The address entry rsp + offset.
    Sp(i64),
}

impl Val {
    fn join(self, other: Val) -> Val {
        if self == other {
            self
        } else {
            Val::Unknown
        }
    }
}

/// Where a wrapper function takes the syscall number from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NumberSource {
    Register(u8),
    /// Stack argument at this offset from the entry rsp.
    Stack(i64),
}

impl std::fmt::Display for NumberSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NumberSource::Register(n) => write!(f, "{:?}", gpr(*n)),
            NumberSource::Stack(off) => write!(f, "stack argument at rsp+{off}"),
        }
    }
}

fn gpr(n: u8) -> Register {
    const GPRS: [Register; 16] = [
        Register::RAX,
        Register::RCX,
        Register::RDX,
        Register::RBX,
        Register::RSP,
        Register::RBP,
        Register::RSI,
        Register::RDI,
        Register::R8,
        Register::R9,
        Register::R10,
        Register::R11,
        Register::R12,
        Register::R13,
        Register::R14,
        Register::R15,
    ];
    GPRS[usize::from(n) & 15]
}

/// Index 0..16 of a general-purpose register of any width (AL, AX, EAX and RAX are all 0).
fn gpr_index(reg: Register) -> Option<usize> {
    let full = reg.full_register();
    (full.is_gpr64()).then(|| full as usize - Register::RAX as usize)
}

/// The abstract machine state at a program point.
#[derive(Clone, Debug, PartialEq)]
struct State {
    regs: [Val; 16],
    /// Stack slots written by the function, by offset from the entry rsp.
    stack: BTreeMap<i64, Val>,
    /// Widened: slots not in `stack` are unknown (not the entry's stack arguments).
    stack_lost: bool,
    /// A stack address may be held where the analysis does not follow it (passed to a callee, stored in memory
    /// other than a known slot, changed by an instruction the domain does not model): from then on a call, a
    /// syscall or a store through an unknown address may change any slot.
    exposed: bool,
    /// An unsigned upper bound (inclusive) of each register's value, from a `cmp r, imm` and the unsigned
    /// branch after it (`ja default` of a switch): the number of entries its table can have. Dropped when the
    /// register is written.
    bounds: [Option<u64>; 16],
}

impl State {
    fn entry() -> State {
        let mut regs = [Val::Unknown; 16];
        for (i, r) in regs.iter_mut().enumerate() {
            *r = Val::Param(i as u8);
        }
        regs[RSP] = Val::Sp(0);
        State {
            regs,
            stack: BTreeMap::new(),
            stack_lost: false,
            exposed: false,
            bounds: [None; 16],
        }
    }

    fn load(&self, slot: i64) -> Val {
        match self.stack.get(&slot) {
            Some(v) => *v,
            None if slot > 0 && !self.stack_lost => Val::StackArg(slot),
            None => Val::Unknown,
        }
    }

    fn sp(&self) -> Option<i64> {
        match self.regs[RSP] {
            Val::Sp(d) => Some(d),
            _ => None,
        }
    }

    fn set_reg(&mut self, n: usize, v: Val) {
        self.regs[n] = v;
        self.bounds[n] = None;
        if n == RSP && !matches!(v, Val::Sp(_)) {
            // Lost track of the stack: no slot can be named any more.
            self.stack.clear();
        }
    }

    fn join(&self, other: &State) -> State {
        let mut regs = [Val::Unknown; 16];
        for (i, r) in regs.iter_mut().enumerate() {
            *r = self.regs[i].join(other.regs[i]);
        }
        let keys: BTreeSet<i64> = self
            .stack
            .keys()
            .chain(other.stack.keys())
            .copied()
            .collect();
        let stack = keys
            .into_iter()
            .map(|k| (k, self.load(k).join(other.load(k))))
            .collect();
        let mut bounds = [None; 16];
        for (i, b) in bounds.iter_mut().enumerate() {
            *b = self.bounds[i].zip(other.bounds[i]).map(|(a, b)| a.max(b));
        }
        let mut joined = State {
            regs,
            stack,
            stack_lost: self.stack_lost || other.stack_lost,
            exposed: self.exposed || other.exposed,
            bounds,
        };
        joined.normalize();
        joined
    }

    /// Drops the slots that hold what an absent slot reads as, so that equal states compare equal.
    fn normalize(&mut self) {
        let lost = self.stack_lost;
        self.stack.retain(|&slot, v| match *v {
            Val::Unknown => !(lost || slot <= 0),
            Val::StackArg(s) => lost || s != slot,
            _ => true,
        });
    }

    /// Forgets the stack, so that a block joined many times reaches its fixed point at once.
    fn widen(&mut self) {
        self.stack.clear();
        self.stack_lost = true;
    }

    /// Before a call or a syscall: when a stack address reaches the callee (or the kernel), in a caller-saved
    /// register or a stack slot, or was exposed before, every slot may change (`fstat(fd, &st)`, a callee
    /// filling a local through the pointer it was given, `va_start` over the stack arguments): all are
    /// forgotten. The callee-saved registers (rbx, rbp, r12-r15) are not arguments: a frame pointer in rbp
    /// does not expose the frame.
    fn forget_escaped_stack(&mut self) {
        const CALLER_SAVED: [usize; 9] = [0, 1, 2, 6, 7, 8, 9, 10, 11];
        let escapes = self.exposed
            || CALLER_SAVED
                .iter()
                .any(|&r| matches!(self.regs[r], Val::Sp(_)))
            || self.stack.values().any(|v| matches!(v, Val::Sp(_)));
        if escapes {
            self.exposed = true;
            self.widen();
        }
    }
}

/// A direct call (or tail jump) and the values its arguments had there.
#[derive(Clone, Debug)]
pub(crate) struct CallSite {
    pub(crate) at: u64,
    pub(crate) callee: u64,
    /// Where the callee returns to: None for a tail jump (it returns to this function's caller).
    pub(crate) ret: Option<u64>,
    regs: [Val; 16],
    /// The caller's values of the callee's stack arguments 8, 16, ... (empty when rsp was lost).
    stack_args: Vec<Val>,
}

impl CallSite {
    /// What a value of the callee's entry state (a parameter, a stack argument) is at this call.
    pub(crate) fn substitute(&self, v: Val) -> Val {
        match v {
            Val::Const(_) => v,
            Val::Param(n) => self.regs[usize::from(n)],
            Val::StackArg(off) => self.value(NumberSource::Stack(off)),
            Val::Unknown | Val::Sp(_) => Val::Unknown,
        }
    }

    fn value(&self, source: NumberSource) -> Val {
        match source {
            NumberSource::Register(n) => self.regs[usize::from(n)],
            NumberSource::Stack(off) => {
                let i = off / 8 - 1;
                if off % 8 != 0 || i < 0 {
                    return Val::Unknown;
                }
                self.stack_args
                    .get(i as usize)
                    .copied()
                    .unwrap_or(Val::Unknown)
            }
        }
    }
}

/// What interpreting a function needs besides the function: the image, and the functions known never to
/// return (a call of one ends the path: the bytes after it are padding or another function).
struct Context<'a> {
    image: &'a Image,
    noreturn: &'a BTreeSet<u64>,
}

/// A syscall instruction's number and first two arguments (where paths are passed), as the function's
/// interpretation left them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct SiteFact {
    pub(crate) number: Val,
    pub(crate) args: [Val; 2],
}

/// What one function's interpretation found.
#[derive(Default, Debug)]
pub(crate) struct FunctionFacts {
    /// The syscall instructions that may name a path: number and path arguments (see static_paths.rs).
    pub(crate) sites: Vec<SiteFact>,
    /// (number, address of the syscall instruction).
    pub(crate) constants: Vec<(u64, u64)>,
    sources: BTreeSet<NumberSource>,
    pub(crate) calls: Vec<CallSite>,
    /// Syscall instructions whose rax is unknown.
    unknown_sites: Vec<u64>,
    /// The syscall instructions interpreted (a block is run again each time its state changes).
    syscall_sites: BTreeSet<u64>,
    /// Whether some path of the function reaches a `ret` (or an indirect jump it cannot follow, or a switch
    /// whose table may be incomplete): false means it can only end the thread, loop or tail-call.
    may_return: bool,
    /// Code addresses the function takes (immediates and RIP-relative LEAs).
    pub(crate) taken: BTreeSet<u64>,
    /// Data addresses the function refers to (RIP-relative and absolute operands, immediates): the objects
    /// there are reachable, and so are the pointers they hold.
    pub(crate) data_refs: BTreeSet<u64>,
    incomplete: bool,
}

/// Something that keeps the profile from being known complete.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Unresolved {
    /// The syscall instruction, or the call of a wrapper, where the number is lost.
    pub at: u64,
    pub why: String,
}

/// The static profile of a program.
#[derive(Clone, Debug, Default)]
pub struct StaticProfile {
    pub syscalls: SyscallSet,
    /// For each number, the syscall instructions or wrapper calls that supply it (first few).
    pub evidence: BTreeMap<u64, Vec<u64>>,
    pub unresolved: Vec<Unresolved>,
    /// Functions found reachable, and how many of them are wrappers (take the number as an argument).
    pub functions: usize,
    pub wrappers: BTreeMap<u64, BTreeSet<NumberSource>>,
    pub syscall_sites: usize,
    /// The constant paths passed to calls that name files (static_paths.rs).
    pub paths: crate::static_paths::StaticPaths,
    /// For each number, why it is in the profile, a line per step (why.rs): a shortest chain of functions from
    /// a root to the place that supplies the number.
    pub why: BTreeMap<u64, Vec<String>>,
}

/// Analyses the ELF executable in `bytes`.
pub fn analyze(bytes: &[u8]) -> Result<StaticProfile, ImageError> {
    let image = Image::parse(bytes)?;
    Ok(analyze_image(&image))
}

/// Analyses the program in `bytes`, static or dynamically linked: a dynamic one with its interpreter and
/// libraries, found beneath `root` as the loader finds them (program.rs). Returns what was loaded besides the
/// profile: the libraries' and debug files' host paths.
pub fn analyze_program(
    bytes: &[u8],
    root: &std::path::Path,
) -> Result<(StaticProfile, crate::program::Loaded), crate::program::ProgramError> {
    let loaded = crate::program::load(bytes, root)?;
    Ok((analyze_image(&loaded.image), loaded))
}

/// The functions reachable from the image's roots, and the data objects they reach, to a fixed point.
fn analyze_image(image: &Image) -> StaticProfile {
    let roots = image.roots().clone();
    let reached = reach(image, &roots, &BTreeSet::new(), None);
    profile_of(image, &reached, &roots)
}

/// The profile of the functions `reached` from `roots`: numbers propagated, paths collected, unresolved
/// places listed.
fn profile_of(image: &Image, reached: &Reached, roots: &BTreeSet<u64>) -> StaticProfile {
    let facts = &reached.facts;
    let mut profile = propagate(facts, roots);
    profile.paths = crate::static_paths::collect(image, facts);
    profile.why = crate::why::reasons(image, facts, roots, &profile.evidence)
        .iter()
        .map(|(&nr, reason)| (nr, crate::why::describe(image, reason)))
        .collect();
    profile.functions = facts.len();
    profile.syscall_sites = facts.values().map(|f| f.syscall_sites.len()).sum();
    for (f, ff) in facts {
        if ff.incomplete {
            profile.unresolved.push(Unresolved {
                at: *f,
                why: "function too complex to interpret whole".into(),
            });
        }
    }
    profile.unresolved.sort();
    profile.unresolved.dedup();
    profile
}

/// What a reachability pass found: each function's facts, and the code addresses taken (by reachable code, or
/// held by data objects it refers to).
struct Reached {
    facts: BTreeMap<u64, FunctionFacts>,
    taken: BTreeSet<u64>,
}

/// The functions reachable from `roots` without entering `excluded` (a phase boundary: the code that runs
/// before it is first reached never enters it), each interpreted from its entry state, or, for the addresses in
/// `resumed`, from the state after a call returned there (see `resumed_state`).
fn reach(
    image: &Image,
    roots: &BTreeSet<u64>,
    resumed: &BTreeSet<u64>,
    excluded: Option<u64>,
) -> Reached {
    let mut noreturn = BTreeSet::new();
    let mut reached = reach_once(image, roots, resumed, excluded, &noreturn, None);
    for _ in 0..NORETURN_ROUNDS_MAX {
        let found = noreturn_functions(&reached.facts);
        if found.is_subset(&noreturn) {
            break;
        }
        let fresh: BTreeSet<u64> = found.difference(&noreturn).copied().collect();
        noreturn.extend(found);
        let previous = (reached.facts, &fresh);
        reached = reach_once(image, roots, resumed, excluded, &noreturn, Some(previous));
    }
    reached
}

/// The functions that cannot return to their caller, as far as `facts` show: none of their paths reaches a
/// `ret`, and every tail call they make goes to such a function. Sound when the facts are: each path that is
/// cut was cut at a call of a function already known not to return, or at exit/exit_group.
fn noreturn_functions(facts: &BTreeMap<u64, FunctionFacts>) -> BTreeSet<u64> {
    let mut returning: BTreeSet<u64> = facts
        .iter()
        .filter(|(_, ff)| ff.may_return || ff.incomplete)
        .map(|(f, _)| *f)
        .collect();
    loop {
        let more: Vec<u64> = facts
            .iter()
            .filter(|(f, _)| !returning.contains(f))
            .filter(|(_, ff)| {
                ff.calls.iter().any(|c| {
                    c.ret.is_none()
                        && (returning.contains(&c.callee) || !facts.contains_key(&c.callee))
                })
            })
            .map(|(f, _)| *f)
            .collect();
        if more.is_empty() {
            break;
        }
        returning.extend(more);
    }
    facts
        .keys()
        .filter(|f| !returning.contains(f))
        .copied()
        .collect()
}

/// One reachability pass, the calls of `noreturn` functions ending their paths. `previous`: the facts of the
/// pass before and the functions added to `noreturn` since; a function none of whose calls goes to one of those
/// would be interpreted exactly as then (its paths end where they ended), so its facts are taken over.
fn reach_once(
    image: &Image,
    roots: &BTreeSet<u64>,
    resumed: &BTreeSet<u64>,
    excluded: Option<u64>,
    noreturn: &BTreeSet<u64>,
    previous: Option<(BTreeMap<u64, FunctionFacts>, &BTreeSet<u64>)>,
) -> Reached {
    let (mut previous, fresh) = match previous {
        Some((facts, fresh)) => (facts, fresh),
        None => (BTreeMap::new(), noreturn),
    };
    let context = Context { image, noreturn };
    let mut facts: BTreeMap<u64, FunctionFacts> = BTreeMap::new();
    let mut taken = BTreeSet::new();
    let mut work: Vec<u64> = roots.iter().rev().copied().collect();
    let mut objects = DataReach::default();
    while let Some(f) = work.pop() {
        if facts.contains_key(&f) || Some(f) == excluded {
            continue;
        }
        let state = if resumed.contains(&f) {
            resumed_state()
        } else {
            State::entry()
        };
        let found = match previous.remove(&f) {
            Some(old) if !old.calls.iter().any(|c| fresh.contains(&c.callee)) => old,
            _ => interpret_function(&context, f, state),
        };
        for c in &found.calls {
            if !facts.contains_key(&c.callee) {
                work.push(c.callee);
            }
        }
        taken.extend(found.taken.iter().copied());
        work.extend(found.taken.iter().filter(|a| !facts.contains_key(a)));
        for &r in &found.data_refs {
            let code = objects.reach(image, r);
            taken.extend(code.iter().copied());
            work.extend(code);
        }
        facts.insert(f, found);
    }
    Reached { facts, taken }
}

/// The state at a return address, as far as the analysis can tell without the caller's: the stack pointer is
/// known (relative), everything else unknown, so that a syscall there is never mistaken for a wrapper's.
fn resumed_state() -> State {
    let mut regs = [Val::Unknown; 16];
    regs[RSP] = Val::Sp(0);
    State {
        regs,
        stack: BTreeMap::new(),
        stack_lost: true,
        // A stack address may have escaped before the call returned here.
        exposed: true,
        bounds: [None; 16],
    }
}

/// The static profiles of a program's two phases, split where it first reaches the function at `boundary`.
#[derive(Clone, Debug)]
pub struct PhaseProfiles {
    /// What can run before the boundary: the code reachable from the roots without entering it.
    pub startup: StaticProfile,
    /// What can run from the boundary on: the boundary function, the rest of each function on a call chain to
    /// it once the call returns (its return address onward, up to the roots), every function whose address is
    /// taken anywhere (signal handlers, thread start routines, atexit functions registered before), and the
    /// roots other than the entry point (fini arrays, IFUNC resolvers).
    pub serving: StaticProfile,
}

/// Analyses the program in `bytes` in two phases split at the function `boundary` (an address of its image).
pub fn analyze_phases(
    bytes: &[u8],
    root: &std::path::Path,
    boundary: u64,
) -> Result<PhaseProfiles, crate::program::ProgramError> {
    let image = crate::program::load(bytes, root)?.image;
    let roots = image.roots().clone();
    let whole = reach(&image, &roots, &BTreeSet::new(), None);
    let before = reach(&image, &roots, &BTreeSet::new(), Some(boundary));
    let resumed = continuations(&whole.facts, boundary);
    let mut after_roots: BTreeSet<u64> = roots
        .iter()
        .copied()
        .filter(|&r| r != image.entry)
        .collect();
    after_roots.insert(boundary);
    after_roots.extend(whole.taken.iter().copied());
    after_roots.extend(resumed.iter().copied());
    let after = reach(&image, &after_roots, &resumed, None);
    Ok(PhaseProfiles {
        startup: profile_of(&image, &before, &roots),
        serving: profile_of(&image, &after, &after_roots),
    })
}

/// The return addresses of the calls through which `boundary` returns: the calls of it, and of every function
/// that (tail-)calls a function that returns there, to the roots.
fn continuations(facts: &BTreeMap<u64, FunctionFacts>, boundary: u64) -> BTreeSet<u64> {
    let mut returning = BTreeSet::from([boundary]);
    let mut work = vec![boundary];
    let mut out = BTreeSet::new();
    while let Some(g) = work.pop() {
        for (&f, ff) in facts {
            for call in ff.calls.iter().filter(|c| c.callee == g) {
                if let Some(ret) = call.ret {
                    out.insert(ret);
                }
                if returning.insert(f) {
                    work.push(f);
                }
            }
        }
    }
    out
}

/// The data reached so far, each byte followed once: by the end of its object, the lowest start reached
/// (objects that share an end are the same gap between boundaries, entered at different addresses).
#[derive(Default)]
pub(crate) struct DataReach {
    covered: BTreeMap<u64, u64>,
}

impl DataReach {
    /// Marks the object at `addr` reached, and every object its pointers (and theirs) name; returns the code
    /// addresses those pointers hold.
    pub(crate) fn reach(&mut self, image: &Image, addr: u64) -> Vec<u64> {
        let mut code = Vec::new();
        let mut pending = vec![addr];
        while let Some(a) = pending.pop() {
            let Some(object) = image.object_at(a) else {
                continue;
            };
            let new = match self.covered.get(&object.end) {
                Some(&start) if start <= object.start => continue,
                Some(&start) => object.start..start,
                None => object.clone(),
            };
            self.covered.insert(object.end, object.start);
            for (_, value) in image.pointers_in(new) {
                if image.is_code(value) {
                    code.push(value);
                } else {
                    pending.push(value);
                }
            }
        }
        code
    }
}

/// Resolves wrapper numbers through the call graph to a fixed point.
fn propagate(facts: &BTreeMap<u64, FunctionFacts>, roots: &BTreeSet<u64>) -> StaticProfile {
    let mut profile = StaticProfile::default();
    let add = |profile: &mut StaticProfile, nr: u64, at: u64| {
        profile.syscalls.insert(nr);
        let ev = profile.evidence.entry(nr).or_default();
        if ev.len() < 4 && !ev.contains(&at) {
            ev.push(at);
        }
    };
    let mut sources: BTreeMap<u64, BTreeSet<NumberSource>> = BTreeMap::new();
    for (f, ff) in facts {
        for &(nr, at) in &ff.constants {
            add(&mut profile, nr, at);
        }
        for &at in &ff.unknown_sites {
            profile.unresolved.push(Unresolved {
                at,
                why: "syscall number computed or loaded from memory".into(),
            });
        }
        if !ff.sources.is_empty() {
            sources.insert(*f, ff.sources.clone());
        }
    }
    let mut lost = BTreeSet::new();
    loop {
        let mut changed = false;
        for (f, ff) in facts {
            for call in &ff.calls {
                let Some(wanted) = sources.get(&call.callee).cloned() else {
                    continue;
                };
                for source in wanted {
                    let new = match call.value(source) {
                        Val::Const(nr) => {
                            add(&mut profile, nr, call.at);
                            None
                        }
                        Val::Param(n) => Some(NumberSource::Register(n)),
                        Val::StackArg(off) => Some(NumberSource::Stack(off)),
                        Val::Unknown | Val::Sp(_) => {
                            lost.insert((call.at, call.callee, source));
                            None
                        }
                    };
                    if let Some(s) = new {
                        changed |= sources.entry(*f).or_default().insert(s);
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    for (at, callee, source) in lost {
        profile.unresolved.push(Unresolved {
            at,
            why: format!("call of the wrapper {callee:#x} with an unknown number in {source}"),
        });
    }
    // A wrapper reached without a direct caller (the entry, an address-taken function) can be given any number.
    for (f, s) in &sources {
        if roots.contains(f) || facts.values().any(|ff| ff.taken.contains(f)) {
            let listed: Vec<String> = s.iter().map(|s| s.to_string()).collect();
            profile.unresolved.push(Unresolved {
                at: *f,
                why: format!(
                    "wrapper (number in {}) whose address is taken",
                    listed.join(", ")
                ),
            });
        }
    }
    profile.wrappers = sources;
    profile
}

/// Interprets the function at `entry` over its intraprocedural control flow.
fn interpret_function(context: &Context, entry: u64, entry_state: State) -> FunctionFacts {
    let image = context.image;
    let mut facts = FunctionFacts::default();
    let mut states: BTreeMap<u64, State> = BTreeMap::new();
    let mut visits: BTreeMap<u64, u32> = BTreeMap::new();
    // In address order: most blocks are then run after their predecessors, and joined less often.
    let mut work = BTreeSet::from([entry]);
    let mut tables = Switches::default();
    states.insert(entry, entry_state);
    let mut runs = 0;
    let mut info = InstructionInfoFactory::new();
    while let Some(block) = work.pop_first() {
        runs += 1;
        if runs > BLOCK_RUNS_PER_FUNCTION {
            facts.incomplete = true;
            break;
        }
        let state = states[&block].clone();
        let exits = run_block(
            context,
            entry,
            block,
            state,
            &mut facts,
            &mut tables,
            &mut info,
        );
        for (target, out) in exits {
            if !image.is_code(target) {
                continue;
            }
            match states.get(&target) {
                Some(old) => {
                    let mut joined = old.join(&out);
                    if &joined != old {
                        let n = visits.entry(target).or_default();
                        *n += 1;
                        if *n > WIDEN_AFTER {
                            joined.widen();
                        }
                        states.insert(target, joined);
                        work.insert(target);
                    }
                }
                None => {
                    states.insert(target, out);
                    work.insert(target);
                }
            }
        }
    }
    facts
}

/// The switch tables of a function: the bases LEA'd by blocks that end in an indirect jump, and the targets
/// each jump was found to have from its candidate bases (a block is run again each time its state changes: the
/// tables are read once).
#[derive(Default)]
struct Switches {
    bases: BTreeSet<u64>,
    /// (jump, candidate bases, bound of the index) -> targets.
    targets: BTreeMap<(u64, Vec<u64>, Option<u64>), Vec<u64>>,
}

/// Runs one block from `start` to its first branch; returns the successors with their states.
fn run_block(
    context: &Context,
    function: u64,
    start: u64,
    mut state: State,
    facts: &mut FunctionFacts,
    tables: &mut Switches,
    info: &mut InstructionInfoFactory,
) -> Vec<(u64, State)> {
    let image = context.image;
    let Some(code) = image.code_at(start) else {
        return Vec::new();
    };
    let mut decoder = Decoder::with_ip(64, code, start, DecoderOptions::NONE);
    let mut block_tables: Vec<u64> = Vec::new();
    // The bound of the index of the last table read of the block (`movsxd rax, [rbx + rcx*4]`).
    let mut table_limit: Option<u64> = None;
    let mut compared: Option<(usize, u64)> = None;
    while decoder.can_decode() {
        let insn = decoder.decode();
        if insn.is_invalid() {
            facts.may_return = true;
            return Vec::new();
        }
        let last_compare = compared.take();
        compared = equality_test(&insn);
        if let Some(index) = table_index(&insn) {
            table_limit = state.bounds[index];
        }
        note_taken_addresses(image, &insn, facts, &mut block_tables);
        block_tables.extend(table_base_in_register(image, &insn, &state));
        if insn.mnemonic() == Mnemonic::Hlt {
            // The end of a path (user mode faults on it): what follows is other code.
            return Vec::new();
        }
        if insn.code() == Code::Syscall {
            let ends_thread = matches!(state.regs[0], Val::Const(SYS_EXIT | SYS_EXIT_GROUP));
            on_syscall(&insn, &mut state, facts);
            if ends_thread {
                // exit and exit_group never return (exit(2), exit_group(2)): what follows is not on this path.
                return Vec::new();
            }
            continue;
        }
        match insn.flow_control() {
            FlowControl::XbeginXabortXend if insn.mnemonic() == Mnemonic::Xbegin => {
                // A transaction that aborts resumes at the abort target with the registers and memory as they
                // were at the `xbegin`, except rax (the abort status): glibc's lock elision takes its locking
                // path so. Both the transaction and the abort are successors.
                let mut aborted = state.clone();
                aborted.set_reg(0, Val::Unknown);
                return vec![
                    (insn.near_branch_target(), aborted),
                    (insn.next_ip(), state),
                ];
            }
            FlowControl::Next | FlowControl::Interrupt | FlowControl::XbeginXabortXend => {
                transfer(&insn, &mut state, info)
            }
            FlowControl::ConditionalBranch => {
                transfer(&insn, &mut state, info);
                let (mut taken, mut fallthrough) = (state.clone(), state);
                // After `test r, r` or `cmp r, imm`, the equal edge knows the register's value (musl's read
                // reaches its syscall through `test rax, rax; je`, with rax = 0 = SYS_read).
                if let Some((n, v)) = last_compare {
                    match insn.mnemonic() {
                        Mnemonic::Je => taken.set_reg(n, Val::Const(v)),
                        Mnemonic::Jne => fallthrough.set_reg(n, Val::Const(v)),
                        _ => {}
                    }
                    // The unsigned bound a switch's range check leaves on the path to its table.
                    let bounded = match insn.mnemonic() {
                        Mnemonic::Ja => Some((&mut fallthrough, v)),
                        Mnemonic::Jbe => Some((&mut taken, v)),
                        Mnemonic::Jae => v.checked_sub(1).map(|b| (&mut fallthrough, b)),
                        Mnemonic::Jb => v.checked_sub(1).map(|b| (&mut taken, b)),
                        _ => None,
                    };
                    if let Some((edge, bound)) = bounded {
                        edge.bounds[n] = Some(bound);
                    }
                }
                return vec![
                    (insn.near_branch_target(), taken),
                    (insn.next_ip(), fallthrough),
                ];
            }
            FlowControl::UnconditionalBranch => {
                return jump(
                    image,
                    function,
                    &insn,
                    insn.near_branch_target(),
                    state,
                    facts,
                );
            }
            FlowControl::IndirectBranch if known_target(image, &insn, &state).is_some() => {
                let target = known_target(image, &insn, &state).expect("checked");
                return jump(image, function, &insn, target, state, facts);
            }
            FlowControl::IndirectBranch => {
                // A switch table read from the image may be incomplete: the function may return through it.
                facts.may_return = true;
                tables.bases.extend(block_tables.iter().copied());
                let candidates: BTreeSet<u64> = if block_tables.is_empty() {
                    tables.bases.clone()
                } else {
                    block_tables.iter().copied().collect()
                };
                let limit = match table_index(&insn) {
                    Some(index) => state.bounds[index],
                    None => table_limit,
                };
                let targets = tables
                    .targets
                    .entry((insn.ip(), candidates.into_iter().collect(), limit))
                    .or_insert_with_key(|(_, candidates, limit)| {
                        let within = image.function_range(function);
                        jump_table_targets(image, &insn, candidates, within, *limit)
                    });
                return targets.iter().map(|&t| (t, state.clone())).collect();
            }
            FlowControl::Call | FlowControl::IndirectCall => {
                let target = if insn.flow_control() == FlowControl::Call {
                    Some(insn.near_branch_target()).filter(|&t| image.is_code(t))
                } else {
                    known_target(image, &insn, &state)
                };
                if let Some(target) = target {
                    record_call(&insn, target, &state, -8, facts);
                    if context.noreturn.contains(&target) {
                        return Vec::new();
                    }
                }
                if returns_into_another_function(image, function, insn.next_ip()) {
                    return Vec::new();
                }
                state.forget_escaped_stack();
                clobber_after_call(&mut state);
            }
            FlowControl::Return => {
                facts.may_return = true;
                return Vec::new();
            }
            FlowControl::Exception => return Vec::new(),
        }
    }
    // The end of the executable bytes, or an instruction iced-x86 cannot decode: assume the worst.
    facts.may_return = true;
    Vec::new()
}

/// Whether a call returning to `ret` would run into another function: only padding (nops, int3) lies between
/// `ret` and the start of a function other than `function`. The compiler put no code after the call because the
/// callee does not return there (glibc's `malloc_printerr` calls `__libc_message (do_abort, ...)`, which
/// returns for other actions: only the compiler knew it does not for this one). Following the bytes would
/// interpret the next function as part of this one, with this one's state.
fn returns_into_another_function(image: &Image, function: u64, ret: u64) -> bool {
    const PADDING_MAX: usize = 16;
    let Some(code) = image.code_at(ret) else {
        return false;
    };
    let mut decoder = Decoder::with_ip(64, code, ret, DecoderOptions::NONE);
    for _ in 0..PADDING_MAX {
        let at = decoder.ip();
        if at != function && image.is_function_start(at) {
            return true;
        }
        if !decoder.can_decode() {
            return false;
        }
        let insn = decoder.decode();
        if !matches!(insn.mnemonic(), Mnemonic::Nop | Mnemonic::Int3) {
            return false;
        }
    }
    false
}

/// A jump to `target`: a tail call when it starts another function, else an edge within this one.
fn jump(
    image: &Image,
    function: u64,
    insn: &Instruction,
    target: u64,
    state: State,
    facts: &mut FunctionFacts,
) -> Vec<(u64, State)> {
    if target != function && image.is_function_start(target) {
        record_call(insn, target, &state, 0, facts);
        return Vec::new();
    }
    vec![(target, state)]
}

/// The register and value a `test r, r` (0) or `cmp r, imm` compares for equality, for the jump after it.
fn equality_test(insn: &Instruction) -> Option<(usize, u64)> {
    if insn.op0_kind() != OpKind::Register || insn.op_count() != 2 {
        return None;
    }
    let reg = insn.op0_register();
    let n = gpr_index(reg).filter(|_| reg.size() >= 4 && reg.full_register() != Register::RSP)?;
    match (insn.mnemonic(), insn.op1_kind()) {
        (Mnemonic::Test, OpKind::Register) if insn.op1_register() == reg => Some((n, 0)),
        (
            Mnemonic::Cmp,
            OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32
            | OpKind::Immediate32to64,
        ) => {
            let mask = if reg.size() == 4 {
                0xffff_ffff
            } else {
                u64::MAX
            };
            Some((n, insn.immediate(1) & mask))
        }
        _ => None,
    }
}

fn on_syscall(insn: &Instruction, state: &mut State, facts: &mut FunctionFacts) {
    let path_call = match state.regs[0] {
        Val::Const(nr) => tandem_emulator::linux::syscall_policy::path_argument(nr).is_some(),
        Val::Param(_) | Val::StackArg(_) => true,
        Val::Unknown | Val::Sp(_) => false,
    };
    if path_call {
        facts.sites.push(SiteFact {
            number: state.regs[0],
            args: [state.regs[7], state.regs[6]],
        });
    }
    match state.regs[0] {
        Val::Const(nr) => facts.constants.push((nr, insn.ip())),
        Val::Param(n) => {
            facts.sources.insert(NumberSource::Register(n));
        }
        Val::StackArg(off) => {
            facts.sources.insert(NumberSource::Stack(off));
        }
        Val::Unknown | Val::Sp(_) => facts.unknown_sites.push(insn.ip()),
    }
    facts.syscall_sites.insert(insn.ip());
    // The kernel writes through pointer arguments (read into a stack buffer).
    state.forget_escaped_stack();
    for r in [0, 1, 11] {
        state.set_reg(r, Val::Unknown);
    }
}

/// Records a direct call or tail jump; `ret_offset` is where the callee's entry rsp is relative to ours (-8
/// for a call, which pushes the return address, 0 for a jump).
fn record_call(
    insn: &Instruction,
    callee: u64,
    state: &State,
    ret_offset: i64,
    facts: &mut FunctionFacts,
) {
    let stack_args = match state.sp() {
        Some(d) => (1..=STACK_ARGS)
            .map(|i| state.load(d + ret_offset + 8 * i))
            .collect(),
        None => Vec::new(),
    };
    facts.calls.push(CallSite {
        at: insn.ip(),
        callee,
        ret: (ret_offset != 0).then(|| insn.next_ip()),
        regs: state.regs,
        stack_args,
    });
}

fn clobber_after_call(state: &mut State) {
    for r in [0, 1, 2, 6, 7, 8, 9, 10, 11] {
        state.set_reg(r, Val::Unknown);
    }
}

/// Code addresses the instruction names (address-taken functions), the data it refers to (reachable objects),
/// and data it LEAs (switch-table bases).
fn note_taken_addresses(
    image: &Image,
    insn: &Instruction,
    facts: &mut FunctionFacts,
    tables: &mut Vec<u64>,
) {
    if let Some(addr) = memory_address(insn) {
        let lea = insn.mnemonic() == Mnemonic::Lea;
        if lea && insn.is_ip_rel_memory_operand() {
            if image.is_code(addr) {
                facts.taken.insert(addr);
            } else if image.read(addr, 4).is_some() {
                tables.push(addr);
            }
        }
        if image.is_data(addr) {
            facts.data_refs.insert(addr);
        }
    }
    for i in 0..insn.op_count() {
        if matches!(
            insn.op_kind(i),
            OpKind::Immediate32 | OpKind::Immediate64 | OpKind::Immediate32to64
        ) {
            let v = insn.immediate(i);
            if image.is_code(v) && insn.flow_control() == FlowControl::Next {
                facts.taken.insert(v);
            } else if image.is_data(v) {
                facts.data_refs.insert(v);
            }
        }
    }
}

/// The base of a switch table read through a register the analysis knows the value of: `movsxd rax, [rbx +
/// rcx*4]` with rbx holding a data address LEA'd before a loop. GCC hoists that LEA out of the loop (glibc's
/// `__spawni_child` runs its file actions so), leaving no LEA in the block of the jump: missing the table
/// lost every case of the switch (popen's dup2), which only a spurious fall-through past a call of `_exit`
/// used to reach.
fn table_base_in_register(image: &Image, insn: &Instruction, state: &State) -> Option<u64> {
    (0..insn.op_count()).find(|&i| insn.op_kind(i) == OpKind::Memory)?;
    if insn.memory_index() == Register::None || insn.memory_index_scale() != 4 {
        return None;
    }
    let Val::Const(base) = state.regs[gpr_index(insn.memory_base())?] else {
        return None;
    };
    let table = base.wrapping_add(insn.memory_displacement64());
    (!image.is_code(table) && image.read(table, 4).is_some()).then_some(table)
}

/// The address a memory operand names statically: RIP-relative, or its displacement (an absolute address, or
/// a table indexed by registers in a non-PIE program).
fn memory_address(insn: &Instruction) -> Option<u64> {
    (0..insn.op_count()).find(|&i| insn.op_kind(i) == OpKind::Memory)?;
    if insn.is_ip_rel_memory_operand() {
        Some(insn.ip_rel_memory_address())
    } else {
        Some(insn.memory_displacement64()).filter(|&d| d != 0)
    }
}

/// The target of an indirect call or jump when the analysis knows it: a register holding a code constant (a
/// function address LEA'd into a callee-saved register before a loop, as Rust's std does with glibc's
/// `syscall`), or a pointer in the program's data at a fixed address (a GOT slot).
fn known_target(image: &Image, insn: &Instruction, state: &State) -> Option<u64> {
    let target = match insn.op0_kind() {
        OpKind::Register => match state.regs[gpr_index(insn.op0_register())?] {
            Val::Const(t) => t,
            _ => return None,
        },
        OpKind::Memory
            if insn.is_ip_rel_memory_operand()
                || (insn.memory_base() == Register::None
                    && insn.memory_index() == Register::None) =>
        {
            image.pointer_at(memory_address(insn)?)?
        }
        _ => return None,
    };
    image.is_code(target).then_some(target)
}

/// The register indexing a switch table in `insn`: `movsxd rax, [rbx + rcx*4]` (32-bit offsets) or `jmp [table
/// + rcx*8]` (absolute entries).
fn table_index(insn: &Instruction) -> Option<usize> {
    (0..insn.op_count()).find(|&i| insn.op_kind(i) == OpKind::Memory)?;
    let scale = insn.memory_index_scale();
    let reads_entry = matches!(
        insn.mnemonic(),
        Mnemonic::Movsxd | Mnemonic::Mov | Mnemonic::Jmp
    );
    if !reads_entry || !(scale == 4 || scale == 8) {
        return None;
    }
    gpr_index(insn.memory_index())
}

/// The targets of an indirect jump through a switch table: `jmp [table + index*8]` with absolute entries, or a
/// jump to a register computed from 32-bit offsets relative to a table whose base was LEA'd. `limit`: the
/// largest index, when the range check before the jump bounds it (the table's end; else the entries are read
/// up to the first that is not code of the function).
fn jump_table_targets(
    image: &Image,
    insn: &Instruction,
    bases: &[u64],
    within: std::ops::Range<u64>,
    limit: Option<u64>,
) -> Vec<u64> {
    let ok = |t: u64| image.is_code(t) && within.contains(&t);
    let entries = limit.map_or(JUMP_TABLE_MAX as u64, |l| {
        l.saturating_add(1).min(JUMP_TABLE_MAX as u64)
    });
    let mut out = Vec::new();
    if insn.op0_kind() == OpKind::Memory
        && insn.memory_base() == Register::None
        && insn.memory_index_scale() == 8
    {
        let table = insn.memory_displacement64();
        for i in 0..entries {
            let Some(entry) = image.read(table.wrapping_add(8 * i), 8) else {
                break;
            };
            let target = u64::from_le_bytes(entry.try_into().expect("8 bytes"));
            if !ok(target) {
                break;
            }
            out.push(target);
        }
        return out;
    }
    for &base in bases {
        for i in 0..entries {
            let Some(entry) = image.read(base.wrapping_add(4 * i), 4) else {
                break;
            };
            let offset = i32::from_le_bytes(entry.try_into().expect("4 bytes"));
            let target = base.wrapping_add(offset as i64 as u64);
            if !ok(target) {
                break;
            }
            out.push(target);
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The stack slot a memory operand names, when its base holds a stack address and it has no index.
fn stack_slot(insn: &Instruction, state: &State) -> Option<i64> {
    if insn.memory_index() != Register::None {
        return None;
    }
    match state.regs[gpr_index(insn.memory_base())?] {
        Val::Sp(d) => Some(d.wrapping_add(insn.memory_displacement64() as i64)),
        _ => None,
    }
}

/// The value of operand `i` (a register, an immediate or a stack slot).
fn operand(insn: &Instruction, i: u32, state: &State) -> Val {
    match insn.op_kind(i) {
        OpKind::Register => {
            let reg = insn.op_register(i);
            match (gpr_index(reg), reg.size()) {
                (Some(n), 8) => state.regs[n],
                (Some(n), 4) => match state.regs[n] {
                    Val::Const(c) => Val::Const(c & 0xffff_ffff),
                    // A number passed in a 64-bit register and read as 32 bits is the same number.
                    v @ (Val::Param(_) | Val::StackArg(_)) => v,
                    _ => Val::Unknown,
                },
                _ => Val::Unknown,
            }
        }
        OpKind::Immediate8
        | OpKind::Immediate16
        | OpKind::Immediate32
        | OpKind::Immediate64
        | OpKind::Immediate8to16
        | OpKind::Immediate8to32
        | OpKind::Immediate8to64
        | OpKind::Immediate32to64 => Val::Const(insn.immediate(i)),
        OpKind::Memory if insn.memory_size().size() == 8 || insn.memory_size().size() == 4 => {
            match stack_slot(insn, state) {
                Some(slot) => state.load(slot),
                None => Val::Unknown,
            }
        }
        _ => Val::Unknown,
    }
}

/// The value an instruction leaves in its destination register, for the forms the domain models; None for
/// every other instruction (its written registers become unknown).
fn modelled_result(insn: &Instruction, state: &State) -> Option<Val> {
    let width = insn.op0_register().size();
    let fit = |v: Val| match (v, width) {
        (Val::Const(c), 4) => Val::Const(c & 0xffff_ffff),
        (Val::Const(c), 1 | 2) => Val::Const(c),
        (v, 8) | (v @ (Val::Param(_) | Val::StackArg(_)), 4) => v,
        _ => Val::Unknown,
    };
    let same_reg = insn.op_count() == 2
        && insn.op1_kind() == OpKind::Register
        && insn.op0_register() == insn.op1_register();
    match insn.mnemonic() {
        Mnemonic::Mov => Some(fit(operand(insn, 1, state))),
        Mnemonic::Xor | Mnemonic::Sub if same_reg => Some(Val::Const(0)),
        Mnemonic::Lea if insn.is_ip_rel_memory_operand() => {
            Some(fit(Val::Const(insn.ip_rel_memory_address())))
        }
        Mnemonic::Lea if insn.memory_index() == Register::None => {
            let disp = insn.memory_displacement64();
            Some(fit(match state.regs[gpr_index(insn.memory_base())?] {
                Val::Sp(d) => Val::Sp(d.wrapping_add(disp as i64)),
                Val::Const(c) => Val::Const(c.wrapping_add(disp)),
                _ => Val::Unknown,
            }))
        }
        Mnemonic::Add | Mnemonic::Sub => {
            let Val::Const(k) = operand(insn, 1, state) else {
                return Some(Val::Unknown);
            };
            let k = if insn.mnemonic() == Mnemonic::Sub {
                k.wrapping_neg()
            } else {
                k
            };
            Some(fit(match operand(insn, 0, state) {
                Val::Sp(d) => Val::Sp(d.wrapping_add(k as i64)),
                Val::Const(c) => Val::Const(c.wrapping_add(k)),
                _ => Val::Unknown,
            }))
        }
        _ => None,
    }
}

/// A write of `v` to the 8- or 16-bit low part `reg` of a register holding `prior` (musl's `xor eax, eax;
/// mov al, 56` before clone's syscall). The high-byte registers (AH...) and unknown parts give unknown.
fn merge_low_bits(prior: Val, reg: Register, v: Val) -> Val {
    let high_byte = matches!(
        reg,
        Register::AH | Register::CH | Register::DH | Register::BH
    );
    let mask: u64 = if reg.size() == 1 { 0xff } else { 0xffff };
    match (prior, v) {
        (Val::Const(old), Val::Const(new)) if !high_byte => {
            Val::Const((old & !mask) | (new & mask))
        }
        _ => Val::Unknown,
    }
}

/// A register copy (`mov edi, edi` after a switch's range check zero-extends the index) keeps the source's bound:
/// the destination and its bound.
fn copied_bound(insn: &Instruction, state: &State) -> Option<(usize, u64)> {
    if insn.mnemonic() != Mnemonic::Mov
        || insn.op0_kind() != OpKind::Register
        || insn.op1_kind() != OpKind::Register
        || insn.op1_register().size() < 4
    {
        return None;
    }
    let from = gpr_index(insn.op1_register())?;
    Some((gpr_index(insn.op0_register())?, state.bounds[from]?))
}

/// The effect of one instruction on the abstract state.
fn transfer(insn: &Instruction, state: &mut State, info: &mut InstructionInfoFactory) {
    match insn.mnemonic() {
        Mnemonic::Push => {
            let v = operand(insn, 0, state);
            match state.sp() {
                Some(d) => {
                    state.stack.insert(d - 8, v);
                    state.set_reg(RSP, Val::Sp(d - 8));
                }
                None => state.set_reg(RSP, Val::Unknown),
            }
            return;
        }
        Mnemonic::Pop if insn.op0_kind() == OpKind::Register => {
            let (v, sp) = match state.sp() {
                Some(d) => (state.load(d), Val::Sp(d + 8)),
                None => (Val::Unknown, Val::Unknown),
            };
            state.set_reg(RSP, sp);
            if let Some(n) = gpr_index(insn.op0_register()) {
                let v = if insn.op0_register().size() == 8 {
                    v
                } else {
                    Val::Unknown
                };
                state.set_reg(n, v);
            }
            return;
        }
        _ => {}
    }
    let result = if insn.op0_kind() == OpKind::Register && gpr_index(insn.op0_register()).is_some()
    {
        modelled_result(insn, state)
    } else {
        None
    };
    let stored = if insn.op0_kind() == OpKind::Memory && insn.mnemonic() == Mnemonic::Mov {
        Some(operand(insn, 1, state))
    } else {
        None
    };
    let slot = if insn.op0_kind() == OpKind::Memory {
        stack_slot(insn, state)
    } else {
        None
    };
    let prior = match gpr_index(insn.op0_register()) {
        Some(n) if insn.op0_kind() == OpKind::Register => state.regs[n],
        _ => Val::Unknown,
    };
    let copied_bound = copied_bound(insn, state);
    let written = info.info(insn);
    // A stack address read other than as the base of a known slot, and not kept as a stack address in the
    // destination register or slot (`add rdi, rax`, `lea rdi, [rsp + rax]`, a store to the heap, `rep stos`
    // into a local): the analysis loses sight of it.
    let known_base = (0..insn.op_count())
        .any(|i| insn.op_kind(i) == OpKind::Memory)
        .then(|| stack_slot(insn, state))
        .flatten()
        .map(|_| insn.memory_base().full_register());
    let reads_stack_address = written.used_registers().iter().any(|used| {
        matches!(
            used.access(),
            OpAccess::Read | OpAccess::CondRead | OpAccess::ReadWrite | OpAccess::ReadCondWrite
        ) && Some(used.register().full_register()) != known_base
            && gpr_index(used.register()).is_some_and(|n| matches!(state.regs[n], Val::Sp(_)))
    });
    let kept = matches!(result, Some(Val::Sp(_)))
        || (slot.is_some() && matches!(stored, Some(Val::Sp(_))));
    if reads_stack_address && !kept {
        state.exposed = true;
    }
    let mut writes_memory = false;
    for used in written.used_registers() {
        if matches!(
            used.access(),
            OpAccess::Write | OpAccess::CondWrite | OpAccess::ReadWrite | OpAccess::ReadCondWrite
        ) {
            if let Some(n) = gpr_index(used.register()) {
                state.set_reg(n, Val::Unknown);
            }
        }
    }
    for mem in written.used_memory() {
        if matches!(
            mem.access(),
            OpAccess::Write | OpAccess::CondWrite | OpAccess::ReadWrite | OpAccess::ReadCondWrite
        ) {
            writes_memory = true;
        }
    }
    if let Some(v) = result {
        let reg = insn.op0_register();
        let n = gpr_index(reg).expect("checked above");
        let v = if reg.size() >= 4 {
            v
        } else {
            merge_low_bits(prior, reg, v)
        };
        state.set_reg(n, v);
    }
    if let Some((n, bound)) = copied_bound {
        state.bounds[n] = Some(bound);
    }
    if writes_memory {
        if let Some(slot) = slot {
            // A narrower store leaves the slot's 8 bytes unknown; slots it overlaps become unknown too (a
            // 16-byte store covers the next slot as well).
            let size = insn.memory_size().size() as i64;
            let v = if size == 8 {
                stored.unwrap_or(Val::Unknown)
            } else {
                Val::Unknown
            };
            for k in slot - 7..slot + size.max(8) {
                if k != slot && state.stack.contains_key(&k) {
                    state.stack.insert(k, Val::Unknown);
                }
            }
            state.stack.insert(slot, v);
        } else if state.exposed {
            // A store through an address the analysis does not know may land on any slot once one escaped.
            state.stack.clear();
            state.stack_lost = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 x86-64 executable: one RX PT_LOAD at 0x400000 holding `code`, entry at its start.
    fn tiny_elf(code: &[u8]) -> Vec<u8> {
        let base = 0x40_0000u64;
        let code_off = 64 + 56;
        let mut f = vec![0u8; code_off];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2; // ELFCLASS64
        f[5] = 1; // little-endian
        f[6] = 1;
        f[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        f[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
        f[20..24].copy_from_slice(&1u32.to_le_bytes());
        f[24..32].copy_from_slice(&(base + code_off as u64).to_le_bytes()); // e_entry
        f[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        f[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
        f[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        f[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
        let ph = &mut f[64..120];
        ph[0..4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        ph[4..8].copy_from_slice(&5u32.to_le_bytes()); // R+X
        ph[16..24].copy_from_slice(&base.to_le_bytes());
        ph[24..32].copy_from_slice(&base.to_le_bytes());
        let size = (code_off + code.len()) as u64;
        ph[32..40].copy_from_slice(&size.to_le_bytes());
        ph[40..48].copy_from_slice(&size.to_le_bytes());
        f.extend_from_slice(code);
        f
    }

    /// `tiny_elf` with a second program header, a read-only PT_LOAD of `data` at `DATA_BASE` (the file's bytes
    /// after the code, which starts one header later: at `CODE_WITH_DATA`).
    fn tiny_elf_with_data(code: &[u8], data: &[u8]) -> Vec<u8> {
        let headers = 64 + 2 * 56;
        let mut f = tiny_elf(&[]);
        f.extend([0u8; 56]);
        f.extend_from_slice(code);
        let data_off = f.len() as u64;
        f.extend_from_slice(data);
        f[24..32].copy_from_slice(&CODE_WITH_DATA.to_le_bytes()); // e_entry
        f[56..58].copy_from_slice(&2u16.to_le_bytes()); // e_phnum
        f[64 + 32..64 + 48]
            .copy_from_slice(&[data_off.to_le_bytes(), data_off.to_le_bytes()].concat());
        let ph = &mut f[120..headers];
        ph[0..4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        ph[4..8].copy_from_slice(&4u32.to_le_bytes()); // R
        ph[8..16].copy_from_slice(&data_off.to_le_bytes());
        ph[16..24].copy_from_slice(&DATA_BASE.to_le_bytes());
        ph[24..32].copy_from_slice(&DATA_BASE.to_le_bytes());
        ph[32..40].copy_from_slice(&(data.len() as u64).to_le_bytes());
        ph[40..48].copy_from_slice(&(data.len() as u64).to_le_bytes());
        f
    }

    const DATA_BASE: u64 = 0x60_0000;
    /// Where `tiny_elf_with_data` puts the code.
    const CODE_WITH_DATA: u64 = 0x40_0000 + 64 + 2 * 56;

    const SYSCALL: [u8; 2] = [0x0f, 0x05];

    #[test]
    fn a_switch_whose_table_base_was_loaded_before_the_loop_reaches_its_cases() {
        // _start: lea rbx, [rip + table]; xor ecx, ecx; jmp loop
        // loop:   movsxd rax, [rbx + rcx*4]; add rax, rbx; jmp rax
        // case0:  mov eax, 33 (dup2); syscall; hlt
        // case1:  mov eax, 60 (exit); syscall; hlt
        let lea_end = CODE_WITH_DATA + 7;
        let disp = (DATA_BASE - lea_end) as u32;
        let mut code = vec![0x48, 0x8d, 0x1d];
        code.extend(disp.to_le_bytes());
        code.extend([0x31, 0xc9, 0xeb, 0x00]);
        code.extend([0x48, 0x63, 0x04, 0x8b, 0x48, 0x01, 0xd8, 0xff, 0xe0]);
        let case0 = CODE_WITH_DATA + code.len() as u64;
        code.extend([0xb8, 33, 0, 0, 0]);
        code.extend(SYSCALL);
        code.push(0xf4);
        let case1 = CODE_WITH_DATA + code.len() as u64;
        code.extend([0xb8, 60, 0, 0, 0]);
        code.extend(SYSCALL);
        code.push(0xf4);
        let mut table = Vec::new();
        for case in [case0, case1] {
            table.extend((case.wrapping_sub(DATA_BASE) as u32).to_le_bytes());
        }
        let p = analyze(&tiny_elf_with_data(&code, &table)).unwrap();
        assert_eq!(p.syscalls, [33, 60].into());
    }

    #[test]
    fn a_switch_table_is_read_up_to_the_bound_its_range_check_gives() {
        // _start:  cmp edi, 1; ja default; mov edi, edi; lea rbx, [rip + table]
        //          movsxd rax, [rbx + rdi*4]; add rax, rbx; jmp rax
        // default: hlt
        // case0:   mov eax, 33 (dup2); syscall; hlt
        // case1:   mov eax, 60 (exit); syscall; hlt
        // other:   mov eax, 102 (getuid); syscall; hlt   (the next table's case: past this table's 2 entries)
        let mut code = vec![0x83, 0xff, 0x01, 0x77, 0x00, 0x89, 0xff, 0x48, 0x8d, 0x1d];
        let lea_end = CODE_WITH_DATA + code.len() as u64 + 4;
        code.extend(((DATA_BASE - lea_end) as u32).to_le_bytes());
        code.extend([0x48, 0x63, 0x04, 0xbb, 0x48, 0x01, 0xd8, 0xff, 0xe0]);
        code[4] = (code.len() - 5) as u8; // ja default
        code.push(0xf4);
        let mut cases = Vec::new();
        for nr in [33u8, 60, 102] {
            cases.push(CODE_WITH_DATA + code.len() as u64);
            code.extend([0xb8, nr, 0, 0, 0]);
            code.extend(SYSCALL);
            code.push(0xf4);
        }
        let mut table = Vec::new();
        for case in &cases {
            table.extend((case.wrapping_sub(DATA_BASE) as u32).to_le_bytes());
        }
        let p = analyze(&tiny_elf_with_data(&code, &table)).unwrap();
        assert_eq!(p.syscalls, [33, 60].into());
        // Without the range check (`cmp` and `ja` made nops), every entry that is code is a case.
        let mut unchecked = code.clone();
        unchecked[..5].fill(0x90);
        let p = analyze(&tiny_elf_with_data(&unchecked, &table)).unwrap();
        assert_eq!(p.syscalls, [33, 60, 102].into());
    }

    #[test]
    fn no_path_goes_on_after_exit_or_a_call_of_a_function_that_never_returns() {
        // _start: call f; mov eax, 39 (getpid: after f, never reached); syscall; hlt
        // f:      mov edi, 1; call g; mov eax, 102 (getuid: after g, never reached); syscall; ret
        // g:      mov eax, 231 (exit_group); syscall; mov eax, 110 (getppid: after exit_group); syscall; ret
        let mut code = vec![0xe8, 8, 0, 0, 0];
        code.extend([0xb8, 39, 0, 0, 0]);
        code.extend(SYSCALL);
        code.push(0xf4);
        code.extend([0xbf, 1, 0, 0, 0, 0xe8, 8, 0, 0, 0]);
        code.extend([0xb8, 102, 0, 0, 0]);
        code.extend(SYSCALL);
        code.push(0xc3);
        code.extend([0xb8, 231, 0, 0, 0]);
        code.extend(SYSCALL);
        code.extend([0xb8, 110, 0, 0, 0]);
        code.extend(SYSCALL);
        code.push(0xc3);
        let p = analyze(&tiny_elf(&code)).unwrap();
        assert_eq!(p.syscalls, [231].into());
    }

    #[test]
    fn a_call_followed_only_by_another_function_does_not_return_there() {
        // _start: call f; mov eax, 39 (getpid); syscall; hlt
        // f:      mov edi, 1; call g                 (nothing after: the compiler knew g(1) does not return)
        // h:      mov eax, 102 (getuid); syscall; ret
        // g:      test edi, edi; je out; mov eax, 231 (exit_group); syscall; out: ret
        let mut code = vec![0xe8, 8, 0, 0, 0, 0xb8, 39, 0, 0, 0];
        code.extend(SYSCALL);
        code.push(0xf4);
        code.extend([0xbf, 1, 0, 0, 0, 0xe8, 8, 0, 0, 0]);
        code.extend([0xb8, 102, 0, 0, 0]);
        code.extend(SYSCALL);
        code.push(0xc3);
        code.extend([0x85, 0xff, 0x74, 0x07, 0xb8, 231, 0, 0, 0]);
        code.extend(SYSCALL);
        code.push(0xc3);
        let mut image = Image::parse(&tiny_elf(&code)).unwrap();
        let start = image.entry;
        // Without symbols nothing marks where f ends: its path runs on into h, returns, and reaches getpid.
        assert_eq!(analyze_image(&image).syscalls, [39, 102, 231].into());
        for (at, name) in [(0, "_start"), (13, "f"), (23, "h"), (31, "g")] {
            image.add_function(start + at, name);
        }
        let p = analyze_image(&image);
        assert_eq!(p.syscalls, [231].into());
        assert_eq!(
            p.why[&231],
            [
                format!("{start:#x} <_start>: the entry point"),
                format!("{:#x} <f>: called at {start:#x} <_start>", start + 13),
                format!("{:#x} <g>: called at {:#x} <f+0x5>", start + 31, start + 18),
                format!("number supplied at {:#x} <g+0x9>", start + 40),
            ]
        );
    }

    #[test]
    fn a_stack_slot_whose_address_a_callee_got_is_not_known_after_the_call() {
        // _start: sub rsp, 16; mov qword [rsp], 39 (getpid); mov rdi, rsp; call f; mov rax, [rsp]; syscall; hlt
        // f:      mov qword [rdi], 102 (getuid); ret
        // The syscall makes getuid: the analysis must not claim it is getpid.
        let mut code = vec![0x48, 0x83, 0xec, 0x10, 0x48, 0xc7, 0x04, 0x24, 39, 0, 0, 0];
        code.extend([0x48, 0x89, 0xe7, 0xe8, 7, 0, 0, 0, 0x48, 0x8b, 0x04, 0x24]);
        code.extend(SYSCALL);
        code.push(0xf4);
        code.extend([0x48, 0xc7, 0x07, 102, 0, 0, 0, 0xc3]);
        let p = analyze(&tiny_elf(&code)).unwrap();
        assert!(!p.syscalls.contains(&39), "{:?}", p.syscalls);
        assert_eq!(p.unresolved.len(), 1, "{:?}", p.unresolved);
        // A callee that gets no stack address leaves the slot known: the same without `mov rdi, rsp`, f: ret.
        let mut code = vec![0x48, 0x83, 0xec, 0x10, 0x48, 0xc7, 0x04, 0x24, 39, 0, 0, 0];
        code.extend([0xe8, 7, 0, 0, 0, 0x48, 0x8b, 0x04, 0x24]);
        code.extend(SYSCALL);
        code.extend([0xf4, 0xc3]);
        let p = analyze(&tiny_elf(&code)).unwrap();
        assert_eq!(p.syscalls, [39].into());
        assert!(p.unresolved.is_empty(), "{:?}", p.unresolved);
    }

    #[test]
    fn the_abort_target_of_xbegin_is_a_successor() {
        // _start: xbegin abort; mov eax, 39 (getpid); syscall; hlt
        // abort:  mov eax, 102 (getuid); syscall; hlt
        let mut code = vec![0xc7, 0xf8, 8, 0, 0, 0];
        code.extend([0xb8, 39, 0, 0, 0]);
        code.extend(SYSCALL);
        code.push(0xf4);
        code.extend([0xb8, 102, 0, 0, 0]);
        code.extend(SYSCALL);
        code.push(0xf4);
        let p = analyze(&tiny_elf(&code)).unwrap();
        assert_eq!(p.syscalls, [39, 102].into());
    }

    #[test]
    fn a_syscall_in_unreachable_code_is_excluded() {
        let mut code = vec![0xb8, 60, 0, 0, 0]; // mov eax, 60 (exit)
        code.extend(SYSCALL);
        code.push(0xf4); // hlt
        code.extend([0xb8, 169, 0, 0, 0]); // unreachable: mov eax, 169 (reboot)
        code.extend(SYSCALL);
        let p = analyze(&tiny_elf(&code)).unwrap();
        assert_eq!(p.syscalls, [60].into());
        assert!(p.unresolved.is_empty(), "{:?}", p.unresolved);
    }

    #[test]
    fn a_wrapper_taking_the_number_in_rdi_gets_its_callers_constants() {
        // _start: mov edi, 39; call w; mov edi, 231; call w; hlt;  w: mov rax, rdi; syscall; ret
        let mut code = vec![0xbf, 39, 0, 0, 0, 0xe8, 11, 0, 0, 0];
        code.extend([0xbf, 231, 0, 0, 0, 0xe8, 1, 0, 0, 0, 0xf4]);
        code.extend([0x48, 0x89, 0xf8]);
        code.extend(SYSCALL);
        code.push(0xc3);
        let p = analyze(&tiny_elf(&code)).unwrap();
        assert_eq!(p.syscalls, [39, 231].into());
        assert_eq!(p.wrappers.len(), 1);
    }

    #[test]
    fn musl_clone_sets_the_number_in_al() {
        // xor eax, eax; mov al, 56; syscall; hlt
        let mut code = vec![0x31, 0xc0, 0xb0, 56];
        code.extend(SYSCALL);
        code.push(0xf4);
        assert_eq!(analyze(&tiny_elf(&code)).unwrap().syscalls, [56].into());
    }

    #[test]
    fn malformed_files_are_errors_not_panics() {
        assert!(matches!(analyze(b"not an elf"), Err(ImageError::Parse(_))));
        let good = tiny_elf(&[0xf4]);
        for cut in [0, 10, 63, 64, 100] {
            assert!(analyze(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut arm = good.clone();
        arm[18] = 183; // EM_AARCH64
        assert!(matches!(analyze(&arm), Err(ImageError::Machine(183))));
        // Every single-byte corruption of the headers is an answer, never a panic.
        for i in 0..120 {
            for b in [0x00, 0xff, 0x80] {
                let mut m = good.clone();
                m[i] = b;
                let _ = analyze(&m);
            }
        }
    }
}
