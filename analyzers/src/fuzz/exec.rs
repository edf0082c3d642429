//! One execution of a genome: restore the target from its snapshot, feed it the genome, run it under an
//! instruction budget, and judge how it ended.
//!
//! The snapshot is taken once, at the program's first instruction (after loading, before start-up code), so a
//! finding's run from the snapshot is the run `tandem record` makes of the same genome from the start: traces
//! and reproductions need nothing else. A restore costs what the last run wrote (frames are copy-on-write and
//! shared with the snapshot) plus the page table's copy.
//!
//! Verdicts: a fatal signal is a crash (SIGABRT an abort), a run that reaches the instruction budget or deadlocks
//! is a hang. The memory limit is the guest's (`LinuxConfig::frames_max`): mmap, brk and mremap past it fail with
//! ENOMEM, and what the program does then is judged like any other run.
//! The stack of a crash, for deduplication, is the faulting rip and the innermost return addresses of the shadow
//! call stack the coverage keeps (cpu/coverage.rs): the emulator's view of the calls in progress, exact without
//! frame pointers, unwind tables or symbols, and independent of what else lies on the guest's stack.

use super::genome::Genome;
use tandem_emulator::cpu::coverage::Coverage;
use tandem_emulator::linux::elf::LoadError;
use tandem_emulator::linux::syscall_faults::SyscallFaults;
use tandem_emulator::linux::{
    LinuxConfig, LinuxMachine, LinuxSnapshot, MemoryHost, Progress, Termination,
};
use tandem_emulator::memory::{Memory, Perms};

/// Return addresses taken from the shadow call stack of a crash for its identity.
pub const STACK_FRAMES_MAX: usize = 4;

/// What to run: the program and its configuration (argv, seed, memory limit), and the budget of each run.
#[derive(Clone)]
pub struct Target {
    pub program: Vec<u8>,
    pub config: LinuxConfig,
    pub instructions_max: u64,
    /// Run hot blocks as compiled code (coverage is identical either way).
    pub jit: bool,
}

/// How one execution ended.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Exited with this status.
    Exited(i32),
    /// Killed by this signal (not SIGABRT).
    Crash(i32),
    /// Killed by SIGABRT (abort(3), a failed assertion, a heap check of the C library).
    Abort,
    /// Ran out of its instruction budget, or every task blocked for good.
    Hang,
}

impl Verdict {
    /// Whether this is a finding to keep in crashes/ or hangs/.
    pub fn is_finding(&self) -> bool {
        !matches!(self, Verdict::Exited(_))
    }

    /// A short name: "sig:11", "abort", "hang", "exit:3".
    pub fn label(&self) -> String {
        match self {
            Verdict::Exited(c) => format!("exit:{c}"),
            Verdict::Crash(s) => format!("sig:{s:02}"),
            Verdict::Abort => "sig:06".to_string(),
            Verdict::Hang => "hang".to_string(),
        }
    }
}

/// The result of one execution.
#[derive(Clone, Debug)]
pub struct Execution {
    pub verdict: Verdict,
    /// The diagnostic line of a signal or deadlock.
    pub diagnostic: Option<String>,
    pub icount: u64,
    /// The crash's rip then return addresses (empty unless the run was killed or hung).
    pub stack: Vec<u64>,
    /// Calls per syscall number this run made (where fault mutations aim).
    pub syscall_calls: Vec<(u64, u64)>,
    /// The faults of the plan that fired.
    pub faults_fired: usize,
    pub stdout: Vec<u8>,
}

impl Execution {
    /// What identifies a finding: the verdict and the stack.
    pub fn finding_key(&self) -> (Verdict, Vec<u64>) {
        (self.verdict.clone(), self.stack.clone())
    }
}

/// A target loaded once, restored from its snapshot for each run.
pub struct Executor {
    machine: LinuxMachine<MemoryHost>,
    snapshot: LinuxSnapshot,
    host: MemoryHost,
    instructions_max: u64,
}

impl Executor {
    pub fn new(target: &Target) -> Result<Executor, LoadError> {
        let host = MemoryHost::new(target.config.seed);
        let mut machine = LinuxMachine::new(target.config.clone(), &target.program, host)?;
        machine.set_jit(target.jit);
        machine.set_coverage(Some(Box::new(Coverage::new())));
        let snapshot = machine.snapshot();
        let host = machine.host.clone();
        Ok(Executor {
            machine,
            snapshot,
            host,
            instructions_max: target.instructions_max,
        })
    }

    /// Runs `genome` from the snapshot; its edges are in `coverage()` until the next run.
    pub fn run(&mut self, genome: &Genome) -> Execution {
        let m = &mut self.machine;
        m.restore_keeping_code(&self.snapshot);
        let mut host = self.host.clone();
        host.stdin = genome.stdin.clone();
        m.host = host;
        m.set_syscall_faults(Some(SyscallFaults::new(&genome.faults)));
        if let Some(c) = m.coverage_mut() {
            c.reset_map();
        }
        let progress = m.run_to_completion(self.instructions_max);
        let fired = m
            .set_syscall_faults(None)
            .map(|f| f.fired().len())
            .unwrap_or(0);
        let (verdict, diagnostic, crash_rip) = match (progress, m.termination()) {
            (Progress::Finished, Some(t)) => judge(t),
            _ => (Verdict::Hang, None, Some(m.rip())),
        };
        let stack = match crash_rip {
            Some(rip) => stack_of(m.memory(), rip, m.coverage()),
            None => Vec::new(),
        };
        let syscall_calls = m
            .stats()
            .syscalls
            .iter()
            .filter_map(|(name, n)| crate::syscall_number(name).map(|nr| (nr, *n)))
            .collect();
        Execution {
            verdict,
            diagnostic,
            icount: m.icount(),
            stack,
            syscall_calls,
            faults_fired: fired,
            stdout: std::mem::take(&mut m.host.stdout),
        }
    }

    /// The coverage of the last run, and the comparison constants seen by every run so far.
    pub fn coverage(&self) -> &Coverage {
        self.machine
            .coverage()
            .expect("an executor always collects coverage")
    }
}

/// The verdict, diagnostic and (for a signal) the rip it was raised at.
fn judge(t: &Termination) -> (Verdict, Option<String>, Option<u64>) {
    const SIGABRT: i32 = 6;
    match t {
        Termination::Exited { code } => (Verdict::Exited(code & 0xff), None, None),
        Termination::Signaled { signal, rip, .. } => {
            let v = if *signal == SIGABRT {
                Verdict::Abort
            } else {
                Verdict::Crash(*signal)
            };
            (v, t.diagnostic(), Some(*rip))
        }
        Termination::Deadlock { icount, .. } => (Verdict::Hang, t.diagnostic(), Some(*icount)),
    }
}

/// The identity of a crash: the rip it happened at (0 for a jump into memory that is not executable, whose
/// address is data, often the input's) and the innermost `STACK_FRAMES_MAX` return addresses of the shadow call
/// stack.
fn stack_of(mem: &Memory, rip: u64, coverage: Option<&Coverage>) -> Vec<u64> {
    let executable = mem.perms(rip).is_some_and(|p| p.contains(Perms::EXEC));
    let mut out = vec![if executable { rip } else { 0 }];
    if let Some(c) = coverage {
        out.extend(c.call_stack().take(STACK_FRAMES_MAX));
    }
    out
}
