//! `tandem faults`: a memory-fault campaign. Runs a program under many seeded fault plans in parallel and prints
//! the outcome tables (`tandem_emulator::hypervisor::campaign` does the work; this file parses and renders).
//!
//! The exit status is 0 when every fault was contained as the policy allows, 1 when the campaign found a
//! containment violation (each printed with its seed and a one-line reproduction).

use anyhow::{bail, Context};
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use tandem_emulator::hypervisor::campaign::{run_campaign, CampaignSpec};
use tandem_emulator::hypervisor::plan::FaultPlan;
use tandem_emulator::hypervisor::Policy;
use tandem_emulator::linux::LinuxConfig;

/// The plan a campaign runs when none is given: one uncorrectable error per run, on any frame, at an icount
/// drawn from the fault-free run's length.
pub const DEFAULT_FAULTS: &str = "mem.ue:count=1";

#[derive(clap::Args, Debug)]
#[command(
    about = "Run a program under many seeded memory-fault plans and tabulate the outcomes",
    long_about = "Run a static program once without faults, then once per fault seed with the faults of --faults \
        drawn from that seed (the guest's own seed stays --guest-seed, so only the faults change), in parallel. \
        Prints the faults by frame class and outcome, and the runs by verdict against the fault-free run \
        (unaffected, silently-corrupted, error-exit, crashed, hung). The tables are identical at any --jobs.\n\n\
        Exits 1 if a fault was not contained as the memory-failure policy allows (an outcome not allowed for \
        its frame class, or an uncorrectable error that led to exit 0 with different output).",
    after_help = "Examples:\n  \
        tandem faults --seeds 0..1000 -- corpus/bin/sigbus-musl\n  \
        tandem faults --seeds 0..200 --jobs 2 --faults 'mem.ue:count=1,class=anon-dirty' -- corpus/bin/sigbus-glibc\n  \
        tandem faults --seeds 0..500 --faults 'mem.flip:count=1' -- corpus/bin/sha256-musl"
)]
pub struct FaultsArgs {
    /// Fault seeds A..B (B excluded). Example: --seeds 0..1000
    #[arg(long, value_name = "A..B")]
    seeds: String,

    /// Worker threads (the tables do not depend on it). Example: --jobs 2
    #[arg(long, default_value_t = 1, value_name = "N")]
    jobs: usize,

    /// The faults of each run, as for tandem run --faults; count= faults without within= are spread over the
    /// fault-free run's instructions. Example: --faults 'mem.ue:count=1,class=anon-dirty'
    #[arg(long, value_name = "SPEC", default_value = DEFAULT_FAULTS)]
    faults: String,

    /// Read the faults from a TOML file instead (as tandem run --faults-file).
    #[arg(long, value_name = "FILE")]
    faults_file: Option<PathBuf>,

    /// Early kill (SIGBUS BUS_MCEERR_AO as soon as a dirty page is lost).
    #[arg(long)]
    early_kill: bool,

    /// The guest's root seed in every run (AT_RANDOM, getrandom). Example: --guest-seed 3
    #[arg(long, default_value_t = 0, value_name = "N")]
    guest_seed: u64,

    /// Instruction limit of each faulty run (default: twice the fault-free run plus a million).
    #[arg(long, value_name = "N")]
    max_insns: Option<u64>,

    /// How many example seeds to list per verdict.
    #[arg(long, default_value_t = 5, value_name = "N")]
    examples: usize,

    /// The program (a host path) and its arguments. Example: -- corpus/bin/sigbus-musl 50
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "PROGRAM ARGS"
    )]
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

fn shell_quote(s: &str) -> String {
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
    if args.jobs == 0 {
        bail!("--jobs 0: at least one worker thread is needed");
    }
    let plan = match &args.faults_file {
        Some(path) => crate::run_cmd::read_fault_plan(None, Some(path))?,
        None => FaultPlan::parse_spec(&args.faults, "--faults")?,
    };
    let program = Path::new(&args.command[0]);
    let bytes = std::fs::read(program)
        .with_context(|| format!("cannot read the program {}", program.display()))?;
    let argv: Vec<Vec<u8>> = args.command.iter().map(|a| a.as_bytes().to_vec()).collect();
    let config = LinuxConfig {
        seed: args.guest_seed,
        exe_path: argv[0].clone(),
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
    };
    let result =
        run_campaign(&spec).with_context(|| format!("campaign over {}", program.display()))?;
    let command: Vec<String> = args
        .command
        .iter()
        .map(|a| shell_quote(&a.to_string_lossy()))
        .collect();
    let resolved = result.plan.to_spec();
    let early = if args.early_kill { " --early-kill" } else { "" };
    let reproduce = |seed: u64| {
        format!(
            "tandem run --seed {} --fault-seed {seed} --faults {}{early} -- {}",
            args.guest_seed,
            shell_quote(&resolved),
            command.join(" ")
        )
    };
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
    if !result.violations().is_empty() {
        std::process::exit(1);
    }
    Ok(())
}
