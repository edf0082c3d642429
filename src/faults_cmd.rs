//! `tandem faults`: a memory-fault campaign. Runs a program under many seeded fault plans in parallel, judges each
//! run against the fault-free run and prints the outcome tables, and with --json a versioned JSON report
//! (`tandem_emulator::hypervisor::campaign` does the work; this file parses and renders).
//!
//! Every listed run carries a reproduce line: a `tandem record` of that very run (same guest seed, fault seed,
//! resolved fault plan, kill policy, instruction limit and an empty stdin), whose trace `tandem replay` verifies and
//! `tandem debug` steps through.
//!
//! Exit status: 0 when no run was silently corrupted, 1 when some run was, 125 for tandem's own failure (bad input,
//! and a fault that was not contained as the memory-failure policy allows, which is a bug of tandem's hypervisor).

use crate::output::note;
use anyhow::{bail, Context};
use serde_json::json;
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use tandem_emulator::hypervisor::campaign::{
    run_campaign, CampaignResult, CampaignSpec, End, RunResult, Start, Verdict, JOBS_MAX,
};
use tandem_emulator::hypervisor::plan::FaultPlan;
use tandem_emulator::hypervisor::Policy;
use tandem_emulator::linux::host::SharedFiles;
use tandem_emulator::linux::LinuxConfig;
use tandem_scenarios::input::{read_input, InputKind};

/// The plan a campaign runs when none is given: one uncorrectable error per run, on any frame, at an icount
/// drawn from the fault-free run's length.
pub const DEFAULT_FAULTS: &str = "mem.ue:count=1";

/// Exit status when some run was silently corrupted.
pub const EXIT_SILENT_CORRUPTION: i32 = 1;

/// The JSON report's format name and version (bumped on any change of its fields' meaning).
pub const REPORT_FORMAT: &str = "tandem-faults-report";
pub const REPORT_VERSION: u32 = 1;

#[derive(clap::Args, Debug)]
#[command(
    about = "Run a program under many seeded memory-fault plans and judge each run against the fault-free run",
    long_about = "Run a static program once without faults, then once per fault seed with the faults of --faults \
        drawn from that seed (the guest's own seed stays --guest-seed, so only the faults change), in parallel. \
        Each run is judged against the fault-free run on how it ended (exit status, killing signal, instruction \
        limit) and its stdout:\n\n  \
        masked              it ended as the fault-free run did, with the same stdout (a crash the fault-free run \
        has too is not the fault's doing)\n  \
        silently-corrupted  different stdout, yet it ended as the fault-free run did or with exit 0\n  \
        exit-changed        it exited with another status (the program noticed, or failed)\n  \
        crashed             killed by a signal the fault-free run was not killed by\n  \
        hung                it reached the instruction limit\n\n\
        Prints the faults by frame class and outcome, the runs by verdict, and examples of each verdict with a \
        reproduce line: a `tandem record` of that run, whose trace `tandem replay` and `tandem debug` take. The \
        tables and the JSON report are identical at any --jobs.",
    after_help = "Exit status:\n  \
        0    no run was silently corrupted\n  \
        1    some run was silently corrupted (listed with its reproduce line)\n  \
        125  tandem's own failure: bad input, unreadable program, usage error, or a fault that was not contained \
        as the memory-failure policy allows (a bug of tandem, listed under containment violations)\n  \
        141  the reader of stdout went away (`| head -1`)\n\n\
        Examples:\n  \
        tandem faults --seeds 0..1000 -- corpus/bin/sigbus-musl\n  \
        tandem faults --seeds 0..200 --jobs 2 --faults 'mem.ue:count=1,class=anon-dirty' -- corpus/bin/sigbus-glibc\n  \
        tandem faults --seeds 0..500 --faults 'mem.flip:count=1' --json flips.json -- corpus/bin/sha256-musl"
)]
pub struct FaultsArgs {
    /// Fault seeds A..B (B excluded). Example: --seeds 0..1000
    #[arg(long, value_name = "A..B")]
    seeds: String,

    /// Worker threads, 1 to 256 (the tables do not depend on it). Example: --jobs 2
    #[arg(long, default_value_t = 1, value_name = "N")]
    jobs: usize,

    /// The faults of each run, as for tandem run --faults; count= faults without within= are spread over the
    /// fault-free run's instructions. Example: --faults 'mem.ue:count=1,class=anon-dirty'
    #[arg(long, value_name = "SPEC", default_value = DEFAULT_FAULTS)]
    faults: String,

    /// Read the faults from a TOML file instead (as tandem run --faults-file). Example: --faults-file plan.toml
    #[arg(long, value_name = "FILE")]
    faults_file: Option<PathBuf>,

    /// Early kill (SIGBUS BUS_MCEERR_AO as soon as a dirty page is lost). Example: --early-kill
    #[arg(long)]
    early_kill: bool,

    /// The guest's root seed in every run (AT_RANDOM, getrandom). Example: --guest-seed 3
    #[arg(long, default_value_t = 0, value_name = "N")]
    guest_seed: u64,

    /// Instruction limit of each faulty run (default: twice the fault-free run plus a million).
    /// Example: --max-insns 5000000
    #[arg(long, value_name = "N")]
    max_insns: Option<u64>,

    /// Start every faulty run from the program's ELF. By default a run starts from the fault-free run's latest
    /// checkpoint before its first fault (until then it is the fault-free run, instruction for instruction);
    /// the tables and the JSON report are the same either way, byte for byte. Example: --cold
    #[arg(long)]
    cold: bool,

    /// How many example seeds to list per verdict. Example: --examples 20
    #[arg(long, default_value_t = 5, value_name = "N")]
    examples: usize,

    /// Also write the versioned JSON report to FILE: the fault-free run, the counts, and one row per run with its
    /// seed, plan, verdict, end and reproduce line. Example: --json report.json
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,

    /// The program (a host path) and its arguments. Example: -- corpus/bin/sigbus-musl 50
    ///
    /// Options of tandem go before it: an unknown option there is a usage error, never taken for the program.
    #[arg(required = true, trailing_var_arg = true, value_name = "PROGRAM ARGS")]
    command: Vec<OsString>,
}

/// Parses `A..B` (B excluded).
fn parse_seeds(s: &str) -> anyhow::Result<std::ops::Range<u64>> {
    let Some((a, b)) = s.split_once("..") else {
        bail!("--seeds {s}: expected A..B, such as --seeds 0..1000");
    };
    let a: u64 = a
        .trim()
        .parse()
        .with_context(|| format!("--seeds {s}: the start {a:?} is not a number"))?;
    let b: u64 = b
        .trim()
        .parse()
        .with_context(|| format!("--seeds {s}: the end {b:?} is not a number"))?;
    if b <= a {
        bail!("--seeds {s}: the range is empty (the end is excluded: 0..10 runs seeds 0 to 9)");
    }
    Ok(a..b)
}

pub(crate) fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

pub fn run(args: FaultsArgs) -> anyhow::Result<()> {
    let seeds = parse_seeds(&args.seeds)?;
    if args.jobs == 0 || args.jobs > JOBS_MAX {
        bail!(
            "--jobs {}: give between 1 and {JOBS_MAX} worker threads",
            args.jobs
        );
    }
    let plan = match &args.faults_file {
        Some(path) => crate::run_cmd::read_fault_plan(None, Some(path))?,
        None => FaultPlan::parse_spec(&args.faults, "--faults")?,
    };
    let program = crate::run_cmd::program_path(&args.command[0]);
    let program = program.as_path();
    let bytes = read_input(program, InputKind::Program)?;
    let argv: Vec<Vec<u8>> = args.command.iter().map(|a| a.as_bytes().to_vec()).collect();
    // A dynamically linked program gets the default root (the host's / read-only), as `tandem record` of a
    // reproduce line gives it: every run reads the loader and the libraries from there.
    let mounts = crate::run_cmd::guest_mounts_of(None, &[], &bytes)?;
    let (exe_path, cwd, files) = if mounts.is_empty() {
        (argv[0].clone(), b"/".to_vec(), None)
    } else {
        let roots = crate::mount_fs::SharedMountRoots::open(&mounts)?;
        (
            crate::run_cmd::exe_guest_path(program, &mounts),
            crate::run_cmd::guest_cwd(&mounts),
            Some(SharedFiles(std::sync::Arc::new(roots))),
        )
    };
    let config = LinuxConfig {
        seed: args.guest_seed,
        exe_path,
        cwd,
        mounts,
        argv,
        ..LinuxConfig::default()
    };
    let spec = CampaignSpec {
        program: bytes.into(),
        config,
        plan,
        policy: Policy {
            early_kill: args.early_kill,
            ..Policy::default()
        },
        seeds: seeds.clone(),
        jobs: args.jobs,
        instructions_max: args.max_insns,
        files,
        start: if args.cold { Start::Cold } else { Start::Warm },
    };
    let result =
        run_campaign(&spec).with_context(|| format!("campaign over {}", program.display()))?;
    let command: Vec<String> = args
        .command
        .iter()
        .map(|a| shell_quote(&a.to_string_lossy()))
        .collect();
    let reproduce = |seed: u64| reproduce_line(&args, &result, &command, seed);
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "campaign: {} seeds {}..{}, {}",
        command.join(" "),
        seeds.start,
        seeds.end,
        if args.early_kill {
            "early kill"
        } else {
            "late kill"
        }
    )?;
    write!(out, "{}", result.render(&reproduce, args.examples))?;
    out.flush()?;
    if let Some(path) = &args.json {
        let report = json_report(&args, &result, &command, &seeds, &reproduce);
        let text =
            serde_json::to_string_pretty(&report).context("cannot encode the JSON report")?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("--json: cannot write {}", path.display()))?;
    }
    let violations = result.containment_violations();
    if !violations.is_empty() {
        bail!(
            "{} faults were not contained as the memory-failure policy allows (listed above): a bug of tandem, \
             please report it with a reproduce line",
            violations.len()
        );
    }
    let corrupted = result.silently_corrupted().count();
    if corrupted > 0 {
        drop(out);
        note!(
            "tandem: {corrupted} of {} runs were silently corrupted",
            result.runs.len()
        );
        std::process::exit(EXIT_SILENT_CORRUPTION);
    }
    Ok(())
}

/// The one-line command that records the run of `seed`: its trace replays the run exactly (`tandem replay`) and
/// `tandem debug` rewinds it. The campaign's guests have no stdin, no environment and no mounts; so does this.
fn reproduce_line(
    args: &FaultsArgs,
    result: &CampaignResult,
    command: &[String],
    seed: u64,
) -> String {
    format!(
        "tandem record -o faults-seed-{seed}.trace --seed {} --fault-seed {seed} --faults {}{} --max-insns {} -- {} < /dev/null",
        args.guest_seed,
        shell_quote(&result.plan.to_spec()),
        if args.early_kill { " --early-kill" } else { "" },
        result.instructions_max,
        command.join(" ")
    )
}

fn end_json(end: End) -> serde_json::Value {
    match end {
        End::Exited { status } => json!({ "kind": "exited", "status": status }),
        End::Killed { signal } => {
            json!({ "kind": "killed", "signal": signal, "status": 128 + signal })
        }
        End::Hung => json!({ "kind": "hung" }),
    }
}

/// The versioned JSON report: everything the tables say, and one row per run.
fn json_report(
    args: &FaultsArgs,
    result: &CampaignResult,
    command: &[String],
    seeds: &std::ops::Range<u64>,
    reproduce: &dyn Fn(u64) -> String,
) -> serde_json::Value {
    let spec = result.plan.to_spec();
    let verdicts: serde_json::Map<String, serde_json::Value> = Verdict::ALL
        .iter()
        .map(|v| {
            let count = result.runs.iter().filter(|r| r.verdict == *v).count();
            (v.name().to_string(), json!(count))
        })
        .collect();
    let row = |r: &RunResult| {
        json!({
            "seed": r.seed,
            "plan": { "faults": spec, "fault_seed": r.seed, "early_kill": args.early_kill },
            "verdict": r.verdict.name(),
            "end": end_json(r.end),
            "exit_status": r.exit_status(),
            "icount": r.icount,
            "stdout_bytes": r.stdout_bytes,
            "diagnostic": r.diagnostic,
            "faults": r.reports.iter().map(|f| f.line()).collect::<Vec<_>>(),
            "reproduce": reproduce(r.seed),
        })
    };
    let violations: Vec<serde_json::Value> = result
        .containment_violations()
        .into_iter()
        .map(|(seed, what)| json!({ "seed": seed, "what": what, "reproduce": reproduce(seed) }))
        .collect();
    json!({
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "command": command,
        "guest_seed": args.guest_seed,
        "seeds": { "start": seeds.start, "end": seeds.end },
        "faults": spec,
        "early_kill": args.early_kill,
        "instructions_max": result.instructions_max,
        "fault_free": {
            "end": end_json(result.baseline.end),
            "exit_status": result.baseline.end.exit_status(),
            "icount": result.baseline.icount,
            "stdout_bytes": result.baseline.stdout.len(),
            "diagnostic": result.baseline.diagnostic,
        },
        "verdicts": verdicts,
        "silently_corrupted": result.silently_corrupted().count(),
        "containment_violations": violations,
        "runs": result.runs.iter().map(row).collect::<Vec<_>>(),
    })
}
