//! Fault campaigns: one program under many seeded fault plans, in parallel, with outcome tables.
//!
//! A campaign first runs the program without faults (the baseline: exit status, stdout, instruction count), then
//! runs it once per fault seed with the plan's drawn faults (`count=` specs without `within=` are spread over the
//! baseline's instruction count). The guest's own seed is the same for every run, so the baseline serves them all;
//! only the "faults.mem" stream changes with the seed. Runs are independent and single-threaded; rayon spreads them
//! over `jobs` threads and collects them in seed order, so every table is byte-identical at any `jobs`.
//!
//! Each run gets a verdict against the baseline, on stdout and the exit status (stderr is where programs report
//! recoveries, so it is not compared):
//! unaffected (same status, same stdout), silently corrupted (same status, different stdout), error exit (a
//! different exit status: the program noticed), crashed (killed by a signal), hung (hit the instruction limit).
//!
//! It must not: do IO (guests run on `MemoryHost`; the CLI prints), or let the thread count reach an output.

use super::containment::{allowed_outcomes, Action, ErrorReport, Outcome};
use super::plan::{FaultKind, FaultPlan, PageState};
use super::{Hypervisor, Policy};
use crate::linux::{LinuxConfig, LinuxMachine, MemoryHost, Progress, Termination};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Range;
use std::sync::Arc;

/// Most seeds one campaign runs.
pub const SEEDS_MAX: u64 = 10_000_000;

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
}

/// How one run compares with the fault-free run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    Unaffected,
    SilentlyCorrupted,
    ErrorExit,
    Crashed,
    Hung,
}

impl Verdict {
    pub const ALL: [Verdict; 5] = [
        Verdict::Unaffected,
        Verdict::SilentlyCorrupted,
        Verdict::ErrorExit,
        Verdict::Crashed,
        Verdict::Hung,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Unaffected => "unaffected",
            Verdict::SilentlyCorrupted => "silently-corrupted",
            Verdict::ErrorExit => "error-exit",
            Verdict::Crashed => "crashed",
            Verdict::Hung => "hung",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Baseline {
    pub exit_status: i32,
    pub stdout: Vec<u8>,
    pub icount: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunResult {
    pub seed: u64,
    pub verdict: Verdict,
    pub exit_status: Option<i32>,
    pub icount: u64,
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
}

#[derive(Clone, Debug)]
pub struct CampaignResult {
    pub baseline: Baseline,
    /// The plan as run (count specs with their window filled in).
    pub plan: FaultPlan,
    pub runs: Vec<RunResult>,
}

fn run_one(
    spec: &CampaignSpec,
    plan: &FaultPlan,
    seed: u64,
    instructions_max: u64,
) -> Result<(RunResult, Vec<u8>), CampaignError> {
    let host = MemoryHost::new(spec.config.seed);
    let mut hv = Hypervisor::new(
        spec.config.clone(),
        spec.program.clone(),
        host,
        plan.clone(),
        spec.policy.clone(),
        seed,
    )?;
    let progress = hv.run_to_completion(instructions_max);
    let reports = hv.reports();
    let guest = &hv.guest;
    let (exit_status, diagnostic) = match (progress, guest.termination()) {
        (Progress::Finished, Some(t)) => (Some(t.exit_status()), t.diagnostic()),
        _ => (None, None),
    };
    let result = RunResult {
        seed,
        verdict: Verdict::Hung,
        exit_status,
        icount: guest.icount(),
        diagnostic,
        reports,
    };
    let crashed = matches!(guest.termination(), Some(Termination::Signaled { .. }));
    let stdout = hv.guest.host.stdout.clone();
    Ok((
        RunResult {
            verdict: if crashed {
                Verdict::Crashed
            } else {
                result.verdict
            },
            ..result
        },
        stdout,
    ))
}

/// Runs the campaign.
pub fn run_campaign(spec: &CampaignSpec) -> Result<CampaignResult, CampaignError> {
    let (start, end) = (spec.seeds.start, spec.seeds.end);
    if end <= start || end - start > SEEDS_MAX {
        return Err(CampaignError::BadSeeds { start, end });
    }
    let baseline_max = spec.instructions_max.unwrap_or(u64::MAX / 4);
    let mut guest = LinuxMachine::new(
        spec.config.clone(),
        &spec.program,
        MemoryHost::new(spec.config.seed),
    )?;
    if guest.run_to_completion(baseline_max) != Progress::Finished {
        return Err(CampaignError::BaselineHung {
            instructions_max: baseline_max,
        });
    }
    let baseline = Baseline {
        exit_status: guest.exit_status().unwrap_or(0),
        stdout: std::mem::take(&mut guest.host.stdout),
        icount: guest.icount(),
    };
    let plan = spec.plan.clone().with_horizon(baseline.icount);
    let instructions_max = spec
        .instructions_max
        .unwrap_or(baseline.icount.saturating_mul(2).saturating_add(1_000_000));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(spec.jobs.max(1))
        .build()
        .map_err(|e| CampaignError::Threads {
            jobs: spec.jobs,
            message: e.to_string(),
        })?;
    let runs: Vec<Result<(RunResult, Vec<u8>), CampaignError>> = pool.install(|| {
        (start..end)
            .into_par_iter()
            .map(|seed| run_one(spec, &plan, seed, instructions_max))
            .collect()
    });
    let mut out = Vec::with_capacity(runs.len());
    for r in runs {
        let (mut run, stdout) = r?;
        if run.verdict != Verdict::Crashed {
            run.verdict = match run.exit_status {
                None => Verdict::Hung,
                Some(s) if s != baseline.exit_status => Verdict::ErrorExit,
                Some(_) if stdout != baseline.stdout => Verdict::SilentlyCorrupted,
                Some(_) => Verdict::Unaffected,
            };
        }
        out.push(run);
    }
    Ok(CampaignResult {
        baseline,
        plan,
        runs: out,
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

    /// Breaches of the containment contract: an outcome the policy does not allow for the frame's class, or a
    /// run that met an uncorrectable error and exited 0 with stdout different from the fault-free run.
    pub fn violations(&self) -> Vec<(u64, String)> {
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
            if run.met_uncorrectable()
                && run.exit_status == Some(0)
                && run.verdict == Verdict::SilentlyCorrupted
            {
                out.push((run.seed, "an uncorrectable error led to exit 0 with different output (silent corruption)".into()));
            }
        }
        out
    }

    /// The tables as text. `reproduce(seed)` gives the one-line command for a seed.
    pub fn render(&self, reproduce: &dyn Fn(u64) -> String, examples_max: usize) -> String {
        let mut s = String::new();
        let runs = self.runs.len();
        let _ = writeln!(
            s,
            "fault-free run: exit {}, {} instructions, {} bytes of stdout",
            self.baseline.exit_status,
            self.baseline.icount,
            self.baseline.stdout.len()
        );
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
        let _ = writeln!(s, "runs by verdict:");
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
        let violations = self.violations();
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
            Verdict::ErrorExit,
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
                let why = r.diagnostic.clone().unwrap_or_else(|| match r.exit_status {
                    Some(st) => format!("exit {st}"),
                    None => format!("no exit after {} instructions", r.icount),
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
