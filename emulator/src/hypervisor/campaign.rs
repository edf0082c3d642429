//! Fault campaigns: one program under many seeded fault plans, in parallel, each run judged against the fault-free run.
//!
//! A campaign first runs the program without faults (the baseline: how it ended, its stdout, its instruction count),
//! then runs it once per fault seed with the plan's drawn faults (`count=` specs without `within=` are spread over the
//! baseline's instruction count). The guest's own seed is the same for every run, so the baseline serves them all;
//! only the "faults.mem" stream changes with the seed. Runs are independent and single-threaded; rayon spreads them
//! over `jobs` threads and collects them in seed order, so every table is byte-identical at any `jobs`.
//!
//! Each run is judged against the baseline (`judge`), on how it ended (exit status, killing signal, or the
//! instruction limit) and its stdout (stderr is where programs report recoveries, so it is not compared):
//! - masked: it ended as the fault-free run did with the same stdout. A crash that the fault-free run has too is
//!   not the fault's doing, so a program that always crashes is masked, not "crashed", when it crashes the same way.
//! - silently corrupted: different stdout, yet it ended as the fault-free run did or with exit status 0: nothing but
//!   the output itself tells that it is wrong.
//! - exit changed: it exited with a status other than the fault-free run's (and not 0 with different output): the
//!   program noticed something, or failed where it had succeeded.
//! - crashed: killed by a signal the fault-free run was not killed by.
//! - hung: it hit the instruction limit (the fault-free run finished, or the campaign is refused).
//!
//! It must not: do IO (guests run on `MemoryHost`; the CLI prints), or let the thread count reach an output.

use super::containment::{allowed_outcomes, Action, ErrorReport, Outcome};
use super::plan::{FaultKind, FaultPlan, PageState};
use super::{Hypervisor, Policy};
use crate::linux::abi::signal_name;
use crate::linux::host::SharedFiles;
use crate::linux::{LinuxConfig, LinuxMachine, LinuxSnapshot, MemoryHost, Progress, Termination};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Range;
use std::sync::Arc;

/// Most seeds one campaign runs.
pub const SEEDS_MAX: u64 = 10_000_000;
/// Most worker threads one campaign starts (each runs one guest at a time, with its own memory).
pub const JOBS_MAX: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    #[error("cannot load the program: {0}")]
    Load(#[from] crate::linux::elf::LoadError),
    #[error(
        "the fault-free run did not finish within {instructions_max} instructions; raise the limit"
    )]
    BaselineHung { instructions_max: u64 },
    #[error("seeds {start}..{end}: the range is empty or holds more than {SEEDS_MAX} seeds")]
    BadSeeds { start: u64, end: u64 },
    #[error("{jobs} worker threads: give between 1 and {JOBS_MAX}")]
    BadJobs { jobs: usize },
    #[error("cannot start {jobs} worker threads: {message}")]
    Threads { jobs: usize, message: String },
}

/// What a campaign runs.
#[derive(Clone, Debug)]
pub struct CampaignSpec {
    pub program: Arc<[u8]>,
    pub config: LinuxConfig,
    pub plan: FaultPlan,
    pub policy: Policy,
    /// Fault seeds, end exclusive.
    pub seeds: Range<u64>,
    pub jobs: usize,
    /// Instruction limit of each run (default: twice the baseline plus a million).
    pub instructions_max: Option<u64>,
    /// The files every run sees through its mounts (a dynamically linked program's loader and libraries, from
    /// the guest's root); None: no files.
    pub files: Option<SharedFiles>,
    /// Start each run from the fault-free run's latest checkpoint before its first fault (warm) instead of
    /// from the ELF (cold). Either way the results are the same, byte for byte.
    pub start: Start,
}

impl CampaignSpec {
    /// A host for one run: no stdin, output captured, the spec's files.
    fn host(&self) -> MemoryHost {
        match &self.files {
            Some(files) => MemoryHost::with_files(self.config.seed, files.clone()),
            None => MemoryHost::new(self.config.seed),
        }
    }
}

/// Where each run of a campaign starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Start {
    /// From the program's ELF, as a run of `tandem run` does.
    Cold,
    /// From the fault-free run's latest checkpoint at or before the run's first fault: until its first fault a
    /// run is the fault-free run, instruction for instruction, so that part is not run again.
    #[default]
    Warm,
}

/// Most checkpoints of the fault-free run a warm campaign keeps. They are copy-on-write snapshots, so they cost
/// the pages written between them; when there are this many, every other one is dropped and the interval
/// doubles, so they stay spread evenly over the run however long it is.
pub const CHECKPOINTS_MAX: usize = 64;
/// The first interval between checkpoints, in instructions.
const CHECKPOINT_INTERVAL_START: u64 = 1 << 9;

/// The fault-free run at one instruction count: the guest and its host (stdout so far, entropy position).
struct Checkpoint {
    guest: LinuxSnapshot,
    host: MemoryHost,
}

/// Checkpoints of the fault-free run in icount order, the first at the start.
struct Checkpoints {
    at: Vec<Checkpoint>,
    interval: u64,
}

impl Checkpoints {
    fn new() -> Checkpoints {
        Checkpoints {
            at: Vec::new(),
            interval: CHECKPOINT_INTERVAL_START,
        }
    }

    fn take(&mut self, guest: &mut LinuxMachine<MemoryHost>) {
        if self.at.len() == CHECKPOINTS_MAX {
            let mut index = 0;
            self.at.retain(|_| {
                index += 1;
                index % 2 == 1
            });
            self.interval = self.interval.saturating_mul(2);
        }
        self.at.push(Checkpoint {
            guest: guest.snapshot(),
            host: guest.host.clone(),
        });
        debug_assert!(self.at.len() <= CHECKPOINTS_MAX);
    }

    /// The latest checkpoint at or before `icount`.
    fn before(&self, icount: u64) -> Option<&Checkpoint> {
        let after = self.at.partition_point(|c| c.guest.icount() <= icount);
        after.checked_sub(1).map(|i| &self.at[i])
    }
}

/// How a run ended. Unlike a shell's status, an exit with 139 and a SIGSEGV are different ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum End {
    /// exit or exit_group with this status (0-255).
    Exited { status: i32 },
    /// Killed by this signal.
    Killed { signal: i32 },
    /// Still running at the instruction limit.
    Hung,
}

impl End {
    fn of(progress: Progress, termination: Option<&Termination>) -> End {
        match (progress, termination) {
            (Progress::Finished, Some(Termination::Signaled { signal, .. })) => {
                End::Killed { signal: *signal }
            }
            (Progress::Finished, Some(t)) => End::Exited {
                status: t.exit_status(),
            },
            _ => End::Hung,
        }
    }

    /// The status a shell shows (128 + N for signal N); None for a hung run.
    pub fn exit_status(self) -> Option<i32> {
        match self {
            End::Exited { status } => Some(status),
            End::Killed { signal } => Some(128 + signal),
            End::Hung => None,
        }
    }

    /// "exit 3", "killed by SIGSEGV", "hung".
    pub fn describe(self) -> String {
        match self {
            End::Exited { status } => format!("exit {status}"),
            End::Killed { signal } => format!("killed by {}", signal_name(signal)),
            End::Hung => "hung".into(),
        }
    }
}

/// How one run compares with the fault-free run (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    Masked,
    SilentlyCorrupted,
    ExitChanged,
    Crashed,
    Hung,
}

impl Verdict {
    pub const ALL: [Verdict; 5] = [
        Verdict::Masked,
        Verdict::SilentlyCorrupted,
        Verdict::ExitChanged,
        Verdict::Crashed,
        Verdict::Hung,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Masked => "masked",
            Verdict::SilentlyCorrupted => "silently-corrupted",
            Verdict::ExitChanged => "exit-changed",
            Verdict::Crashed => "crashed",
            Verdict::Hung => "hung",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Baseline {
    pub end: End,
    pub stdout: Vec<u8>,
    pub icount: u64,
    /// The diagnostic line of a fault-free run killed by a signal.
    pub diagnostic: Option<String>,
}

/// The verdict of a run that ended with `end` and wrote `stdout`, against the fault-free run.
pub fn judge(baseline: &Baseline, end: End, stdout: &[u8]) -> Verdict {
    let same_stdout = stdout == baseline.stdout.as_slice();
    match end {
        End::Hung => Verdict::Hung,
        _ if end == baseline.end && same_stdout => Verdict::Masked,
        _ if end == baseline.end => Verdict::SilentlyCorrupted,
        End::Exited { status: 0 } if !same_stdout => Verdict::SilentlyCorrupted,
        End::Exited { .. } => Verdict::ExitChanged,
        End::Killed { .. } => Verdict::Crashed,
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunResult {
    pub seed: u64,
    pub verdict: Verdict,
    pub end: End,
    pub icount: u64,
    pub stdout_bytes: u64,
    pub diagnostic: Option<String>,
    pub reports: Vec<ErrorReport>,
}

impl RunResult {
    /// True if the run met an uncorrectable error on a frame (not one that was ignored for lack of a target).
    pub fn met_uncorrectable(&self) -> bool {
        self.reports.iter().any(|r| {
            r.kind == FaultKind::Ue && r.frame.is_some() && r.action != Action::AlreadyPoisoned
        })
    }

    /// The status a shell shows; None for a hung run.
    pub fn exit_status(&self) -> Option<i32> {
        self.end.exit_status()
    }
}

#[derive(Clone, Debug)]
pub struct CampaignResult {
    pub baseline: Baseline,
    /// The plan as run (count specs with their window filled in).
    pub plan: FaultPlan,
    /// The instruction limit of each faulty run.
    pub instructions_max: u64,
    pub runs: Vec<RunResult>,
    /// Instructions the faulty runs did not run because they started from a checkpoint of the fault-free run
    /// (0 for a cold campaign). Not part of any table: those are the same cold and warm.
    pub instructions_skipped: u64,
}

fn run_one(
    spec: &CampaignSpec,
    plan: &FaultPlan,
    baseline: &Baseline,
    checkpoints: &Checkpoints,
    seed: u64,
    instructions_max: u64,
) -> Result<(RunResult, u64), CampaignError> {
    let start = match spec.start {
        Start::Warm => checkpoints.before(super::first_fault_icount(plan, seed)),
        Start::Cold => None,
    };
    let mut hv = match start {
        Some(c) => Hypervisor::with_guest(
            LinuxMachine::from_snapshot(spec.config.clone(), &c.guest, c.host.clone()),
            spec.program.clone(),
            plan.clone(),
            spec.policy.clone(),
            seed,
        )?,
        None => Hypervisor::new(
            spec.config.clone(),
            spec.program.clone(),
            spec.host(),
            plan.clone(),
            spec.policy.clone(),
            seed,
        )?,
    };
    let progress = hv.run_to_completion(instructions_max);
    let reports = hv.reports();
    let guest = &hv.guest;
    let end = End::of(progress, guest.termination());
    let stdout = &guest.host.stdout;
    let result = RunResult {
        seed,
        verdict: judge(baseline, end, stdout),
        end,
        icount: guest.icount(),
        stdout_bytes: stdout.len() as u64,
        diagnostic: guest.termination().and_then(Termination::diagnostic),
        reports,
    };
    Ok((result, start.map_or(0, |c| c.guest.icount())))
}

/// Runs the program without faults to its end or `instructions_max`, taking checkpoints on the way when the
/// campaign starts warm.
fn run_baseline(spec: &CampaignSpec, instructions_max: u64) -> Result<BaselineRun, CampaignError> {
    let mut guest = LinuxMachine::new(spec.config.clone(), &spec.program, spec.host())?;
    let mut checkpoints = Checkpoints::new();
    if spec.start == Start::Cold {
        let progress = guest.run_to_completion(instructions_max);
        return Ok((guest, progress, checkpoints));
    }
    loop {
        checkpoints.take(&mut guest);
        let left = instructions_max.saturating_sub(guest.icount());
        let progress = guest.run(left.min(checkpoints.interval));
        if progress == Progress::Finished || guest.icount() >= instructions_max {
            return Ok((guest, progress, checkpoints));
        }
    }
}

/// The fault-free run as it ended, its checkpoints and the auxiliary vector it started with.
type BaselineRun = (LinuxMachine<MemoryHost>, Progress, Checkpoints);

/// Runs the campaign.
pub fn run_campaign(spec: &CampaignSpec) -> Result<CampaignResult, CampaignError> {
    let (start, end) = (spec.seeds.start, spec.seeds.end);
    if end <= start || end - start > SEEDS_MAX {
        return Err(CampaignError::BadSeeds { start, end });
    }
    if spec.jobs == 0 || spec.jobs > JOBS_MAX {
        return Err(CampaignError::BadJobs { jobs: spec.jobs });
    }
    let baseline_max = spec.instructions_max.unwrap_or(u64::MAX / 4);
    let (mut guest, progress, checkpoints) = run_baseline(spec, baseline_max)?;
    if progress != Progress::Finished {
        return Err(CampaignError::BaselineHung {
            instructions_max: baseline_max,
        });
    }
    let baseline = Baseline {
        end: End::of(progress, guest.termination()),
        diagnostic: guest.termination().and_then(Termination::diagnostic),
        stdout: std::mem::take(&mut guest.host.stdout),
        icount: guest.icount(),
    };
    let plan = spec.plan.clone().with_horizon(baseline.icount);
    let instructions_max = spec
        .instructions_max
        .unwrap_or(baseline.icount.saturating_mul(2).saturating_add(1_000_000));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(spec.jobs)
        .build()
        .map_err(|e| CampaignError::Threads {
            jobs: spec.jobs,
            message: e.to_string(),
        })?;
    // Each run is judged where it ran, so only its verdict and sizes are kept, never every run's stdout at once.
    let runs: Result<Vec<(RunResult, u64)>, CampaignError> = pool.install(|| {
        (start..end)
            .into_par_iter()
            .map(|seed| run_one(spec, &plan, &baseline, &checkpoints, seed, instructions_max))
            .collect()
    });
    let (runs, skipped): (Vec<RunResult>, Vec<u64>) = runs?.into_iter().unzip();
    Ok(CampaignResult {
        baseline,
        plan,
        instructions_max,
        runs,
        instructions_skipped: skipped.iter().sum(),
    })
}

impl CampaignResult {
    /// Fault counts by (kind, frame class) and outcome.
    pub fn outcome_table(
        &self,
    ) -> BTreeMap<(FaultKind, Option<PageState>), BTreeMap<Outcome, u64>> {
        let mut t: BTreeMap<(FaultKind, Option<PageState>), BTreeMap<Outcome, u64>> =
            BTreeMap::new();
        for run in &self.runs {
            for r in &run.reports {
                *t.entry((r.kind, r.class))
                    .or_default()
                    .entry(r.outcome)
                    .or_insert(0) += 1;
            }
        }
        t
    }

    /// Run counts by verdict, split by whether the run met an uncorrectable error.
    pub fn verdict_table(&self) -> BTreeMap<(bool, Verdict), u64> {
        let mut t = BTreeMap::new();
        for run in &self.runs {
            *t.entry((run.met_uncorrectable(), run.verdict)).or_insert(0) += 1;
        }
        t
    }

    /// Breaches of the containment contract, each a bug of tandem's hypervisor rather than of the guest: an
    /// uncorrectable error whose outcome the memory-failure policy does not allow for the frame's class.
    pub fn containment_violations(&self) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        for run in &self.runs {
            for r in &run.reports {
                if r.kind == FaultKind::Ue
                    && !allowed_outcomes(r.class, r.action).contains(&r.outcome)
                {
                    out.push((
                        run.seed,
                        format!("outcome not allowed for its class: {}", r.line()),
                    ));
                }
            }
        }
        out
    }

    /// The runs judged silently corrupted: wrong output and nothing else telling.
    pub fn silently_corrupted(&self) -> impl Iterator<Item = &RunResult> {
        self.runs
            .iter()
            .filter(|r| r.verdict == Verdict::SilentlyCorrupted)
    }

    /// The tables as text. `reproduce(seed)` gives the one-line command for a seed.
    pub fn render(&self, reproduce: &dyn Fn(u64) -> String, examples_max: usize) -> String {
        let mut s = String::new();
        let runs = self.runs.len();
        let _ = writeln!(
            s,
            "fault-free run: {}, {} instructions, {} bytes of stdout",
            self.baseline.end.describe(),
            self.baseline.icount,
            self.baseline.stdout.len()
        );
        if let Some(line) = &self.baseline.diagnostic {
            let _ = writeln!(s, "  {line}");
            let _ = writeln!(
                s,
                "  (a faulty run that ends the same way with the same stdout is masked, not crashed)"
            );
        }
        let _ = writeln!(s, "faults: {}", self.plan.to_spec());
        let _ = writeln!(s, "runs: {runs}");
        let _ = writeln!(s);
        let _ = writeln!(s, "faults by frame class and outcome:");
        let _ = write!(s, "{:<6} {:<11} {:>7}", "kind", "class", "faults");
        for o in Outcome::ALL {
            let _ = write!(s, " {:>10}", o.name());
        }
        let _ = writeln!(s);
        for ((kind, class), outcomes) in self.outcome_table() {
            let total: u64 = outcomes.values().sum();
            let _ = write!(
                s,
                "{:<6} {:<11} {:>7}",
                kind.name(),
                class.map_or("-", PageState::name),
                total
            );
            for o in Outcome::ALL {
                let _ = write!(s, " {:>10}", outcomes.get(&o).copied().unwrap_or(0));
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "runs by verdict against the fault-free run:");
        let _ = write!(s, "{:<20}", "");
        for v in Verdict::ALL {
            let _ = write!(s, " {:>18}", v.name());
        }
        let _ = writeln!(s);
        let table = self.verdict_table();
        for (met, label) in [(true, "met a UE"), (false, "no UE")] {
            if !table.keys().any(|(m, _)| *m == met) {
                continue;
            }
            let _ = write!(s, "{label:<20}");
            for v in Verdict::ALL {
                let _ = write!(s, " {:>18}", table.get(&(met, v)).copied().unwrap_or(0));
            }
            let _ = writeln!(s);
        }
        let violations = self.containment_violations();
        let _ = writeln!(s);
        let _ = writeln!(s, "containment violations: {}", violations.len());
        for (seed, what) in violations.iter().take(examples_max) {
            let _ = writeln!(
                s,
                "  seed {seed}: {what}\n    reproduce: {}",
                reproduce(*seed)
            );
        }
        for v in [
            Verdict::SilentlyCorrupted,
            Verdict::Crashed,
            Verdict::ExitChanged,
            Verdict::Hung,
        ] {
            let seeds: Vec<&RunResult> = self.runs.iter().filter(|r| r.verdict == v).collect();
            if seeds.is_empty() {
                continue;
            }
            let _ = writeln!(
                s,
                "{} runs (first {}):",
                v.name(),
                examples_max.min(seeds.len())
            );
            for r in seeds.iter().take(examples_max) {
                let why = r.diagnostic.clone().unwrap_or_else(|| match r.end {
                    End::Hung => format!("no exit after {} instructions", r.icount),
                    end if v == Verdict::SilentlyCorrupted => format!(
                        "{}, {} bytes of stdout that differ from the fault-free run's",
                        end.describe(),
                        r.stdout_bytes
                    ),
                    end => end.describe(),
                });
                let _ = writeln!(
                    s,
                    "  seed {}: {why}\n    reproduce: {}",
                    r.seed,
                    reproduce(r.seed)
                );
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn baseline(end: End, stdout: &[u8]) -> Baseline {
        Baseline {
            end,
            stdout: stdout.to_vec(),
            icount: 1000,
            diagnostic: None,
        }
    }

    const SEGV: End = End::Killed { signal: 11 };
    const BUS: End = End::Killed { signal: 7 };

    #[test]
    fn each_outcome_is_judged_against_the_fault_free_run() {
        let ok = baseline(End::Exited { status: 0 }, b"42\n");
        let exit = |status| End::Exited { status };
        for (end, stdout, verdict) in [
            (exit(0), &b"42\n"[..], Verdict::Masked),
            (exit(0), b"43\n", Verdict::SilentlyCorrupted),
            (exit(0), b"", Verdict::SilentlyCorrupted),
            (exit(1), b"42\n", Verdict::ExitChanged),
            (exit(1), b"error\n", Verdict::ExitChanged),
            (SEGV, b"42\n", Verdict::Crashed),
            (SEGV, b"", Verdict::Crashed),
            (End::Hung, b"42\n", Verdict::Hung),
        ] {
            assert_eq!(judge(&ok, end, stdout), verdict, "{end:?} {stdout:?}");
        }
        // A program that fails by design: the same failure is no news, exit 0 with other output is corruption.
        let fails = baseline(exit(3), b"usage\n");
        assert_eq!(judge(&fails, exit(3), b"usage\n"), Verdict::Masked);
        assert_eq!(
            judge(&fails, exit(3), b"usagf\n"),
            Verdict::SilentlyCorrupted
        );
        assert_eq!(
            judge(&fails, exit(0), b"done\n"),
            Verdict::SilentlyCorrupted
        );
        assert_eq!(judge(&fails, exit(0), b"usage\n"), Verdict::ExitChanged);
        // 139 is an exit status here, not a SIGSEGV.
        assert_eq!(judge(&fails, exit(139), b"usage\n"), Verdict::ExitChanged);
    }

    #[test]
    fn a_crash_the_fault_free_run_has_too_is_not_the_faults_doing() {
        let crashes = baseline(SEGV, b"crashing\n");
        assert_eq!(judge(&crashes, SEGV, b"crashing\n"), Verdict::Masked);
        assert_eq!(
            judge(&crashes, SEGV, b"crashinf\n"),
            Verdict::SilentlyCorrupted
        );
        assert_eq!(judge(&crashes, BUS, b"crashing\n"), Verdict::Crashed);
        assert_eq!(
            judge(&crashes, End::Exited { status: 0 }, b"crashing\n"),
            Verdict::ExitChanged
        );
        assert_eq!(
            judge(&crashes, End::Exited { status: 139 }, b"crashing\n"),
            Verdict::ExitChanged,
            "an exit with 139 is not the SIGSEGV of the fault-free run"
        );
    }

    fn corpus_spec(name: &str, argv: &[&str], spec: &str, seeds: Range<u64>) -> CampaignSpec {
        let path = format!("{}/../corpus/bin/{name}", env!("CARGO_MANIFEST_DIR"));
        CampaignSpec {
            program: std::fs::read(&path).unwrap().into(),
            config: LinuxConfig {
                argv: argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
                ..LinuxConfig::default()
            },
            plan: FaultPlan::parse_spec(spec, "test").unwrap(),
            policy: Policy::default(),
            seeds,
            jobs: 2,
            instructions_max: None,
            files: None,
            start: Start::Warm,
        }
    }

    #[test]
    fn a_program_that_always_crashes_is_not_listed_as_crashed_by_the_fault() {
        // Uncorrectable errors on zero pages are recovered invisibly: every run crashes exactly as the fault-free run.
        let result = run_campaign(&corpus_spec(
            "crash-musl",
            &["crash", "segv"],
            "mem.ue:count=1,class=anon-zero",
            0..6,
        ))
        .unwrap();
        assert_eq!(result.baseline.end, SEGV);
        assert_eq!(result.baseline.stdout, b"crashing by segv\n");
        assert!(
            result.runs.iter().all(|r| r.verdict == Verdict::Masked),
            "{:?}",
            result.runs
        );
        let text = result.render(&|seed| format!("seed {seed}"), 3);
        assert!(
            text.starts_with("fault-free run: killed by SIGSEGV, ")
                && !text.contains("crashed runs"),
            "{text}"
        );
    }

    #[test]
    fn jobs_are_bounded() {
        for jobs in [0, JOBS_MAX + 1] {
            let mut spec = corpus_spec("hello-musl", &["hello"], "mem.ue:count=1", 0..1);
            spec.jobs = jobs;
            let error = run_campaign(&spec).unwrap_err().to_string();
            assert_eq!(
                error,
                format!("{jobs} worker threads: give between 1 and 256")
            );
        }
    }
}
