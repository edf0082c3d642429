//! One execution of a genome: restore the target from its snapshot, feed it the genome, run it under an
//! instruction budget, and judge how it ended.
//!
//! The snapshot is taken once, at the program's first instruction (after loading, before start-up code) or, with
//! `Target::snapshot_at` first-read-of-stdin, just before its first read of stdin (found by the warm pools' probe
//! run, replay/src/pools/warm.rs: start-up is then not re-run each time). Start-up reads no input, so either way
//! a finding's run from the snapshot is the run `tandem record` makes of the same genome from the start: traces
//! and reproductions need nothing else. The fault plan is installed (empty) from the start so that its calls are
//! counted the same way in both: a fault at a call start-up made never fires from a later snapshot. A restore
//! costs what the last run wrote (frames are copy-on-write and shared with the snapshot) plus the page table's
//! copy.
//!
//! The genome's bytes are the program's stdin or, with `Target::file_input` (`@@` in argv, as in AFL), the
//! contents of the file `FILE_INPUT_PATH`, a read-only mount of an in-memory host file (stdin is then empty).
//!
//! Verdicts: a fatal signal is a crash (SIGABRT an abort), a run that reaches the instruction budget or deadlocks
//! is a hang; a run that exited is given to the target's checker, if any, and is a "checker" finding when the
//! checker says its output is wrong. The memory limit is the guest's (`LinuxConfig::frames_max`): mmap, brk and mremap past it fail with
//! ENOMEM, and what the program does then is judged like any other run.
//! The stack of a crash, for deduplication, is the faulting rip and the innermost return addresses of the shadow
//! call stack the coverage keeps (cpu/coverage.rs): the emulator's view of the calls in progress, exact without
//! frame pointers, unwind tables or symbols, and independent of what else lies on the guest's stack.

use super::genome::Genome;
use std::sync::Arc;
use tandem_emulator::cpu::coverage::{Coverage, RunStart};
use tandem_emulator::linux::elf::LoadError;
use tandem_emulator::linux::syscall_faults::SyscallFaults;
use tandem_emulator::linux::vfs::{split, Mount};
use tandem_emulator::linux::{
    LinuxConfig, LinuxMachine, LinuxSnapshot, MemoryHost, Progress, Termination,
};
use tandem_emulator::memory::{Memory, Perms};
use tandem_replay::pools::{warm, PoolError, WarmPoint};

/// Return addresses taken from the shadow call stack of a crash for its identity.
pub const STACK_FRAMES_MAX: usize = 4;

/// The guest path of the file input (what `@@` in argv becomes), and the path of the in-memory host file
/// mounted there.
pub const FILE_INPUT_PATH: &str = "/fuzz/input";

/// What to run: the program and its configuration (argv, seed, memory limit), and the budget of each run.
#[derive(Clone)]
pub struct Target {
    pub program: Vec<u8>,
    pub config: LinuxConfig,
    pub instructions_max: u64,
    /// Run hot blocks as compiled code (coverage is identical either way).
    pub jit: bool,
    /// The genome's bytes go to the file `FILE_INPUT_PATH` instead of stdin (`Target::use_file_input`).
    pub file_input: bool,
    /// Where each execution starts: the program's first instruction (None) or this point.
    pub snapshot_at: Option<WarmPoint>,
    /// Judges the output of the runs that exited.
    pub checker: Option<Checker>,
}

/// What a checker is given: one run that exited.
pub struct CheckedRun<'a> {
    /// The executor's worker (0 to jobs - 1): checkers of different workers run at the same time.
    pub worker: usize,
    pub input: &'a [u8],
    pub stdout: &'a [u8],
    pub status: i32,
}

/// A judge of output (`tandem fuzz --checker`): Ok(0) when the run's output is right, Ok(status) (not 0) when
/// it is wrong, Err when the checker itself failed (the campaign stops). It must be a function of what it is
/// given, or the campaign is not reproducible.
pub type Checker = Arc<dyn Fn(&CheckedRun) -> Result<i32, String> + Send + Sync>;

impl Target {
    /// A target of `program` with `config`, the genome on stdin, snapshots at the first instruction, no checker.
    pub fn new(program: Vec<u8>, config: LinuxConfig, instructions_max: u64, jit: bool) -> Target {
        Target {
            program,
            config,
            instructions_max,
            jit,
            file_input: false,
            snapshot_at: None,
            checker: None,
        }
    }

    /// Replaces `@@` in the arguments with `FILE_INPUT_PATH` and mounts the input file there, as afl-fuzz
    /// does with its `.cur_input`; false (and nothing changed) when no argument has `@@`.
    pub fn use_file_input(&mut self) -> bool {
        let mut found = false;
        for arg in &mut self.config.argv {
            if let Some(at) = arg.windows(2).position(|w| w == b"@@") {
                let mut with = arg[..at].to_vec();
                with.extend_from_slice(FILE_INPUT_PATH.as_bytes());
                with.extend_from_slice(&arg[at + 2..]);
                *arg = with;
                found = true;
            }
        }
        if found && !self.file_input {
            self.config.mounts.push(Mount {
                guest: split(FILE_INPUT_PATH.as_bytes()).into(),
                host: FILE_INPUT_PATH.into(),
            });
            self.file_input = true;
        }
        found
    }

    /// `base` (a fresh host or the snapshot's) given `genome`'s bytes as stdin or as the input file.
    pub fn host_for(&self, mut base: MemoryHost, genome: &Genome) -> MemoryHost {
        if self.file_input {
            base.add_file(FILE_INPUT_PATH, &genome.stdin);
        } else {
            base.stdin = genome.stdin.clone();
        }
        base
    }
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
    /// Exited, and the checker judged its output wrong with this status.
    Checker(i32),
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
            Verdict::Checker(_) => "checker".to_string(),
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
    /// The checker could not judge the run (it could not be started, or was killed): why.
    pub checker_failed: Option<String>,
}

impl Execution {
    /// What identifies a finding: the verdict and the stack.
    pub fn finding_key(&self) -> (Verdict, Vec<u64>) {
        (self.verdict.clone(), self.stack.clone())
    }
}

/// Why a target cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("the snapshot point: {0}")]
    SnapshotPoint(#[from] PoolError),
}

/// A target loaded once, restored from its snapshot for each run.
pub struct Executor {
    target: Target,
    worker: usize,
    machine: LinuxMachine<MemoryHost>,
    snapshot: LinuxSnapshot,
    host: MemoryHost,
    /// The coverage's state at the snapshot.
    start: RunStart,
}

impl Executor {
    /// Loads `target` for worker `worker` and takes its snapshot (running it to `Target::snapshot_at`).
    pub fn new(target: &Target, worker: usize) -> Result<Executor, ExecutorError> {
        let host = MemoryHost::new(target.config.seed);
        let mut machine = LinuxMachine::new(target.config.clone(), &target.program, host)?;
        machine.set_jit(target.jit);
        machine.set_coverage(Some(Box::new(Coverage::new())));
        machine.set_syscall_faults(Some(SyscallFaults::new(&[])));
        if let Some(point) = &target.snapshot_at {
            let budget = target.instructions_max;
            let mut probe_host = machine.host.clone();
            let at = warm::locate(
                point,
                &target.config,
                &target.program,
                &mut probe_host,
                budget,
            )?;
            warm::run_to(&mut machine, at, point, budget)?;
        }
        let snapshot = machine.snapshot();
        let host = machine.host.clone();
        let start = machine
            .coverage()
            .map(Coverage::run_start)
            .unwrap_or_default();
        Ok(Executor {
            target: target.clone(),
            worker,
            machine,
            snapshot,
            host,
            start,
        })
    }

    /// The instruction count at the snapshot (0 unless `Target::snapshot_at`).
    pub fn snapshot_icount(&self) -> u64 {
        self.snapshot.icount()
    }

    /// Runs `genome` from the snapshot; its edges are in `coverage()` until the next run.
    pub fn run(&mut self, genome: &Genome) -> Execution {
        let m = &mut self.machine;
        m.restore_keeping_code(&self.snapshot);
        m.host = self.target.host_for(self.host.clone(), genome);
        let counted = m.set_syscall_faults(None).unwrap_or_default();
        m.set_syscall_faults(Some(counted.replanned(&genome.faults)));
        if let Some(c) = m.coverage_mut() {
            c.reset_map_to(&self.start);
        }
        let progress = m.run_to_completion(self.target.instructions_max);
        let fired = m
            .set_syscall_faults(None)
            .map(|f| f.fired().len())
            .unwrap_or(0);
        let (mut verdict, diagnostic, crash_rip) = match (progress, m.termination()) {
            (Progress::Finished, Some(t)) => judge(t),
            _ => (Verdict::Hang, None, Some(m.rip())),
        };
        let stdout = std::mem::take(&mut m.host.stdout);
        let mut checker_failed = None;
        if let (Verdict::Exited(status), Some(checker)) = (&verdict, &self.target.checker) {
            let run = CheckedRun {
                worker: self.worker,
                input: &genome.stdin,
                stdout: &stdout,
                status: *status,
            };
            match checker(&run) {
                Ok(0) => {}
                Ok(wrong) => verdict = Verdict::Checker(wrong),
                Err(e) => checker_failed = Some(e),
            }
        }
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
            stdout,
            checker_failed,
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
