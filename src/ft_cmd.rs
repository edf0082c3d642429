//! `tandem ft`: runs a program as a fault-tolerant pair or triple of guests (`tandem_replay::ft` does the work;
//! this file parses, builds the live host and renders), or with --seeds a campaign of seeded fault plans against
//! such a world, judged as `tandem faults` judges single guests.
//!
//! Exit status: the agreed guest's (as `tandem run`), 124 at --max-insns, 125 for tandem's own failure; a
//! campaign exits 0 when no run was silently corrupted, 1 when some run was.

use crate::ft_hosts::{campaign_host, ReleasingHost};
use crate::run_cmd::{
    exe_guest_path, guest_cwd, guest_mounts_of, parse_memory_size, parse_sched, program_path,
    LiveHost,
};
use anyhow::{bail, Context};
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tandem_emulator::hypervisor::campaign::{judge, Baseline, End, Verdict, JOBS_MAX};
use tandem_emulator::hypervisor::first_fault_icount;
use tandem_emulator::hypervisor::plan::FaultPlan;
use tandem_emulator::hypervisor::Policy;
use tandem_emulator::linux::{
    LinuxConfig, LinuxMachine, MemoryHost, Progress, SchedPolicy, Termination,
};
use tandem_replay::ft::{
    record_agreed, verify_epochs_for, Arbiter, FtConfig, FtEnd, FtStats, ReplicaFaults, World,
    WorldSnapshot, EPOCH_INSNS_DEFAULT, REPLICAS_MAX,
};
use tandem_scenarios::input::{read_input, InputKind};

/// Most seeds one campaign runs.
const SEEDS_MAX: u64 = 1_000_000;
/// Most snapshots of the fault-free world a warm campaign keeps (copy-on-write: they cost the pages written
/// between them), spread evenly over its epochs.
const WORLD_SNAPSHOTS_MAX: u64 = 64;

/// The live host of a campaign's runs.
type CampaignHost = ReleasingHost<MemoryHost>;

#[derive(clap::Args, Debug)]
#[command(
    about = "Run a program as a fault-tolerant pair or triple of guests, releasing only the output they agree on",
    long_about = "Run a program as 2 or 3 replicas of one guest (a dynamically linked one with its root, --root, \
        the host's / by default). The primary runs with the live host (stdin, --mount files, the root's \
        files); every input it takes is logged and replayed by the others. Each replica's stdout and stderr \
        writes are held, and at the end of every epoch (--epoch instructions) the replicas are \
        compared: output, how the guest ended, instruction count, registers and memory. Only agreed output \
        reaches the real stdout and stderr. On a mismatch a majority of three decides, or else the epoch is \
        re-executed from the last agreed checkpoint on a fresh copy, so a fault in the primary is corrected \
        too; a wrong replica gets the right state (the pages that differ, and the kernel state), a replica \
        that a fault killed is dropped, and a dropped primary's role passes to a survivor.\n\n\
        With --seeds, runs a campaign instead: one run per fault seed with the faults of --faults in replica \
        --faults-in, each judged against the fault-free single run as `tandem faults` does (masked, \
        silently-corrupted, exit-changed, crashed, hung). --replicas 1 gives the unprotected guest's table.\n\n\
        The report goes to stderr: epochs, mismatches, re-executions, resyncs, which replica was wrong, pages \
        and bytes moved, output latency, failovers, one line per event.",
    after_help = "Exit status:\n  \
        0-255  the agreed guest's exit status (128+N when signal N killed it)\n  \
        124    --max-insns stopped the guest before it finished\n  \
        125    tandem's own failure: bad input, unreadable program, usage error\n  \
        campaign (--seeds): 0 no run was silently corrupted, 1 some run was\n\n\
        Examples:\n  \
        tandem ft -- corpus/bin/sha256-musl abc\n  \
        tandem ft --replicas 3 --faults-on 1:mem.flip:count=20,within=60000,class=anon-dirty -- corpus/bin/sha256-musl abc\n  \
        tandem ft --faults-on 0:mem.ue:icount=300000,addr=0x7ffff7ff8000 -- corpus/bin/sigbus-glibc 20\n  \
        tandem ft --seeds 0..1000 --jobs 2 --faults mem.flip:count=1,class=anon-dirty -- corpus/bin/sigbus-glibc"
)]
pub struct FtArgs {
    /// Replicas: 2 (a pair) or 3 (a triple: a majority decides); 1 runs the guest unprotected, for comparison.
    /// Example: --replicas 3
    #[arg(long, default_value_t = 2, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=REPLICAS_MAX as i64))]
    replicas: u32,

    /// Instructions per epoch: replicas are compared and output released at each epoch's end. Example: --epoch 100000
    #[arg(long = "epoch", default_value_t = EPOCH_INSNS_DEFAULT, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    epoch_insns: u64,

    /// End an epoch also right after the syscall that makes its Nth output (a stdout or stderr write, a file
    /// change), so that output waits at most for N of its kind instead of a whole epoch of instructions: 1
    /// releases each write once the replicas agree on it (more comparisons, less output latency).
    /// Example: --epoch-outputs 1
    #[arg(long = "epoch-outputs", value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    epoch_outputs: Option<u64>,

    /// Epochs between full comparisons of the replicas' states (every mismatch compares them too); between
    /// them only the pages written are compared, and a fault elsewhere is caught when it reaches output.
    /// Default: as many epochs as make 64,000,000 instructions (64 at the default --epoch, 640 at 100000).
    /// Example: --verify-every 16
    #[arg(long = "verify-every", value_name = "EPOCHS", value_parser = clap::value_parser!(u64).range(1..))]
    verify_epochs: Option<u64>,

    /// Run all replicas one after another on one host thread instead of each backup on a thread of its own
    /// (identical results; a campaign with --jobs above 1 always does, its runs filling the cores).
    #[arg(long)]
    no_threads: bool,

    /// Let the primary run the next epoch while the backups run and compare the last one, instead of waiting
    /// at every epoch's end for the comparison (identical results; output is released when agreed either
    /// way). Off by default: measured slower than lockstep at 1,000,000- and 100,000-instruction epochs
    /// (BENCHMARKS.md, fault-tolerant pairs).
    #[arg(long, conflicts_with = "no_run_ahead")]
    run_ahead: bool,

    /// Keep the primary in lockstep with the backups (the default; kept for scripts that spelled it out).
    #[arg(long, hide = true)]
    no_run_ahead: bool,

    /// Memory faults for one replica (0 is the primary), with the syntax of tandem run --faults. Repeatable.
    /// Example: --faults-on 1:mem.flip:icount=50000,addr=0x7ffff7ff8000
    #[arg(long = "faults-on", value_name = "REPLICA:SPEC")]
    faults_on: Vec<String>,

    /// On a mismatch, take the primary's side without re-executing (the classic scheme, for comparison).
    /// Example: --trust-primary
    #[arg(long)]
    trust_primary: bool,

    /// Campaign: fault seeds A..B (B excluded), one run each. Example: --seeds 0..1000
    #[arg(long, value_name = "A..B")]
    seeds: Option<String>,

    /// Campaign: the faults drawn from each seed, as tandem faults --faults (count= faults without within= are
    /// spread over the fault-free run). Example: --faults mem.flip:count=1,class=anon-dirty
    #[arg(
        long,
        value_name = "SPEC",
        default_value = "mem.ue:count=1",
        requires = "seeds"
    )]
    faults: String,

    /// Campaign: the replica that meets the faults. Example: --faults-in 1
    #[arg(long, default_value_t = 0, value_name = "REPLICA", requires = "seeds")]
    faults_in: usize,

    /// Campaign: start every run from the program's ELF instead of from the fault-free world's latest
    /// snapshot before the run's first fault (the table is the same either way; for comparison).
    #[arg(long, requires = "seeds")]
    cold: bool,

    /// Campaign: worker threads, 1 to 256 (the table does not depend on it). Example: --jobs 2
    #[arg(long, default_value_t = 1, value_name = "N", requires = "seeds")]
    jobs: usize,

    /// Root seed of the guests (every replica has the same). Example: --seed 42
    #[arg(long, default_value_t = 0, value_name = "N")]
    seed: u64,

    /// Seed of the "faults.mem" stream of --faults-on (default: --seed). Example: --fault-seed 17
    #[arg(long, value_name = "N")]
    fault_seed: Option<u64>,

    /// Stop cleanly after N instructions (exit status 124). Example: --max-insns 1000000
    #[arg(long, value_name = "N")]
    max_insns: Option<u64>,

    /// The guest's root file system, as tandem run --root (default: the host's / for a dynamically linked
    /// program, none for a static one). A campaign reads it into memory, so it needs a small root.
    /// Example: --root /srv/debian-chroot
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,

    /// Mount a host file or directory read-only at GUEST, as tandem run --mount. A campaign reads the mounted
    /// files once, into memory, and shows them with fixed metadata. Example: --mount ./data:/data
    #[arg(long = "mount", value_name = "HOST[:GUEST]")]
    mounts: Vec<String>,

    /// Apply the guest's agreed file changes (writes and truncations of files it opened, as guest paths)
    /// beneath DIR on the host, each when its epoch is released. Without it they stay in the guest.
    /// Example: --release-files ./out
    #[arg(long, value_name = "DIR", conflicts_with = "seeds")]
    release_files: Option<PathBuf>,

    /// Write a trace of the agreed execution to FILE, recorded from the pair's input log after the run;
    /// tandem replay and tandem debug read it as any recording. Example: --record pair.trace
    #[arg(long, value_name = "FILE", conflicts_with = "seeds")]
    record: Option<PathBuf>,

    /// At the end, print every replica at the first mismatch, before any was corrected: registers that
    /// differ from the right state and the pages that differ, with their first differing byte.
    #[arg(long, conflicts_with = "seeds")]
    debug_mismatch: bool,

    /// Show mounted files with fixed metadata, as tandem run --normalize-metadata.
    #[arg(long)]
    normalize_metadata: bool,

    /// Set an environment variable of the guest. Repeatable. Example: --env LANG=C
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<String>,

    /// Scheduling policy, as tandem run --sched. Example: --sched chaos
    #[arg(long, value_name = "POLICY", default_value = "fair", value_parser = parse_sched)]
    sched: SchedPolicy,

    /// CPUs the guest is told it has, as tandem run --cpus. Example: --cpus 8
    #[arg(long, value_name = "N", default_value_t = tandem_emulator::linux::CPUS_DEFAULT,
          value_parser = clap::value_parser!(u32).range(1..=tandem_emulator::linux::CPUS_MAX as i64))]
    cpus: u32,

    /// Guest memory limit, as tandem run --memory-max. Example: --memory-max 512M
    #[arg(long, value_name = "SIZE", default_value = "4G", value_parser = parse_memory_size)]
    memory_max: usize,

    /// Early kill of lost dirty pages, as tandem run --early-kill.
    #[arg(long)]
    early_kill: bool,

    /// Interpret every instruction instead of compiling hot blocks (identical results).
    #[arg(long)]
    no_jit: bool,

    /// Print the instruction count and the final state hash to stderr (deterministic, for tests).
    #[arg(long, hide = true)]
    report_state: bool,

    /// The program (a host path) and its arguments. Example: -- corpus/bin/sha256-musl abc
    #[arg(required = true, trailing_var_arg = true, value_name = "PROGRAM ARGS")]
    command: Vec<OsString>,
}

/// Parses `REPLICA:SPEC` of --faults-on.
fn parse_faults_on(text: &str, replicas: usize) -> anyhow::Result<(usize, FaultPlan)> {
    let Some((index, spec)) = text.split_once(':') else {
        bail!(
            "--faults-on {text}: expected REPLICA:SPEC, such as 1:mem.flip:count=1,within=100000"
        );
    };
    let index: usize = index
        .parse()
        .with_context(|| format!("--faults-on {text}: the replica {index:?} is not a number"))?;
    if index >= replicas {
        bail!(
            "--faults-on {text}: replica {index} does not exist; replicas are 0 to {}",
            replicas - 1
        );
    }
    let plan = FaultPlan::parse_spec(spec, "--faults-on")?;
    if plan.missing_horizon() {
        bail!("--faults-on {text}: a count= fault needs within=ICOUNT, such as mem.flip:count=1,within=1000000");
    }
    Ok((index, plan))
}

fn parse_seeds(s: &str) -> anyhow::Result<std::ops::Range<u64>> {
    let parsed = s
        .split_once("..")
        .and_then(|(a, b)| Some((a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?)));
    match parsed {
        Some((a, b)) if a < b && b - a <= SEEDS_MAX => Ok(a..b),
        _ => bail!("--seeds {s}: expected A..B with A < B and at most {SEEDS_MAX} seeds, such as --seeds 0..1000"),
    }
}

/// The guest's configuration; `program` is the ELF (a dynamically linked one gets the host's / as its root
/// unless --root names another, as in tandem run).
fn linux_config(args: &FtArgs, program: &[u8]) -> anyhow::Result<LinuxConfig> {
    let path = program_path(&args.command[0]);
    let mounts = guest_mounts_of(args.root.as_ref(), &args.mounts, program)?;
    for e in &args.env {
        if !e.contains('=') {
            bail!("--env {e}: expected K=V, such as --env LANG=C");
        }
    }
    Ok(LinuxConfig {
        seed: args.seed,
        argv: args.command.iter().map(|a| a.as_bytes().to_vec()).collect(),
        envp: args.env.iter().map(|e| e.as_bytes().to_vec()).collect(),
        exe_path: exe_guest_path(&path, &mounts),
        cwd: guest_cwd(&mounts),
        mounts,
        frames_max: args.memory_max,
        sched: args.sched,
        cpus: args.cpus,
        ..LinuxConfig::default()
    })
}

fn ft_config(args: &FtArgs) -> FtConfig {
    FtConfig {
        epoch_insns: args.epoch_insns,
        epoch_outputs: args
            .epoch_outputs
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        instructions_max: args.max_insns.unwrap_or(u64::MAX),
        verify_epochs: args
            .verify_epochs
            .unwrap_or_else(|| verify_epochs_for(args.epoch_insns)),
        threads: !args.no_threads,
        run_ahead: args.run_ahead,
        arbiter: if args.trust_primary {
            Arbiter::TrustPrimary
        } else {
            Arbiter::ReExecute
        },
    }
}

fn policy(args: &FtArgs) -> Policy {
    Policy {
        early_kill: args.early_kill,
        ..Policy::default()
    }
}

pub fn run(args: FtArgs) -> anyhow::Result<()> {
    if args.seeds.is_some() {
        return campaign(args);
    }
    let replicas = args.replicas as usize;
    let mut faults = vec![ReplicaFaults::default(); replicas];
    for f in &mut faults {
        f.fault_seed = args.fault_seed.unwrap_or(args.seed);
    }
    for text in &args.faults_on {
        let (index, plan) = parse_faults_on(text, replicas)?;
        faults[index].plan.events.extend(plan.events);
        faults[index].plan.random.extend(plan.random);
    }
    let program = program_path(&args.command[0]);
    let bytes: Arc<[u8]> = read_input(&program, InputKind::Program)?.into();
    let config = linux_config(&args, &bytes)?;
    let live = LiveHost::new(args.seed, &config.mounts, args.normalize_metadata)?;
    let host = ReleasingHost::new(live, args.release_files.clone());
    let mut world = World::new(
        ft_config(&args),
        config.clone(),
        bytes.clone(),
        host,
        faults,
        policy(&args),
    )
    .with_context(|| format!("cannot load {}", program.display()))?;
    world.set_jit(!args.no_jit);
    let end = world.run();
    let _ = std::io::stdout().flush();
    if let Some(failure) = world.with_live(|h| h.failure.clone()) {
        bail!("--release-files: {failure}");
    }
    if let Some(path) = &args.record {
        let mut header = crate::record_cmd::header_of(&config, &program, &bytes);
        header.instructions_max = args.max_insns;
        record_pair(&world, config, bytes, &header, path)?;
    }

    let mut err = crate::output::Lossy(std::io::stderr().lock());
    let status = match &end {
        FtEnd::Finished(t) => {
            if let Some(line) = t.diagnostic() {
                writeln!(err, "tandem: {line}")?;
            }
            t.exit_status()
        }
        FtEnd::Limit { icount } => {
            writeln!(
                err,
                "tandem: stopped after {icount} instructions (--max-insns); the guest had not finished"
            )?;
            crate::run_cmd::EXIT_INSTRUCTION_LIMIT
        }
    };
    for i in 0..replicas {
        for line in world.fault_reports(i) {
            writeln!(err, "tandem: replica {i}: {line}")?;
        }
    }
    write_report(&mut err, world.stats(), replicas, &epoch_bound(&args))?;
    if args.debug_mismatch {
        let lines = world
            .first_mismatch()
            .map_or_else(|| vec!["no mismatch".to_string()], |v| v.lines());
        for line in lines {
            writeln!(err, "tandem: ft: {line}")?;
        }
    }
    if let Some(path) = &args.record {
        writeln!(
            err,
            "tandem: ft: recorded the agreed execution to {}",
            path.display()
        )?;
    }
    writeln!(
        err,
        "tandem: ft: primary at the end: replica {}, replicas alive: {:?}",
        world.leader(),
        world.alive()
    )?;
    if args.report_state {
        writeln!(
            err,
            "tandem: icount {} state_hash {:#018x}",
            world.icount(),
            world.state_hash()
        )?;
    }
    err.flush()?;
    std::process::exit(status);
}

/// Writes the trace of the world's agreed execution to `path` (see `tandem_replay::ft::record_agreed`) and
/// checks that it ended where the world did.
fn record_pair<L: tandem_emulator::linux::Host + Send>(
    world: &World<L>,
    config: LinuxConfig,
    bytes: Arc<[u8]>,
    header: &tandem_replay::trace::Header,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    let cannot_write = || format!("--record: cannot write the trace {}", path.display());
    let file = std::fs::File::create(path).with_context(cannot_write)?;
    let mut writer = tandem_replay::trace::TraceWriter::new(std::io::BufWriter::new(file))
        .with_context(cannot_write)?;
    let summary = record_agreed(world.shared_log(), config, bytes, header, &mut writer)
        .context("--record: cannot load the program again")?
        .with_context(cannot_write)?;
    writer
        .into_inner()
        .into_inner()
        .map_err(|e| e.into_error())
        .and_then(|file| file.sync_all())
        .with_context(cannot_write)?;
    if summary.icount != world.icount() || summary.state_hash != world.state_hash() {
        bail!(
            "--record: the recorded run ended at icount {} (state {:#018x}), the pair at icount {} (state              {:#018x}); this is a bug of tandem ft",
            summary.icount,
            summary.state_hash,
            world.icount(),
            world.state_hash()
        );
    }
    Ok(())
}

/// What ends an epoch: "N instructions", and ", or M outputs" with --epoch-outputs.
fn epoch_bound(args: &FtArgs) -> String {
    match args.epoch_outputs {
        Some(n) => format!("{} instructions or {n} outputs", args.epoch_insns),
        None => format!("{} instructions", args.epoch_insns),
    }
}

/// The report of one world's run.
fn write_report(
    out: &mut impl Write,
    s: &FtStats,
    replicas: usize,
    epoch: &str,
) -> std::io::Result<()> {
    writeln!(
        out,
        "tandem: ft: {replicas} replicas, {} epochs of {epoch} ({} with full state comparisons), \
         {} mismatches, {} re-executions, {} resyncs ({} pages, {} bytes moved), {} failovers",
        s.epochs,
        s.verifications,
        s.mismatches,
        s.reexecutions,
        s.resyncs,
        s.pages_moved,
        s.bytes_moved,
        s.failovers
    )?;
    let wrong: Vec<String> = s
        .wrong
        .iter()
        .enumerate()
        .map(|(i, n)| format!("replica {i}: {n}"))
        .collect();
    writeln!(out, "tandem: ft: epochs found wrong: {}", wrong.join(", "))?;
    writeln!(
        out,
        "tandem: ft: released {} writes, {} bytes; output latency mean {} max {} instructions (x ns_per_insn = \
         virtual ns); {} of them file changes, {} bytes",
        s.released_writes,
        s.released_bytes,
        s.latency_insns_mean(),
        s.latency_insns_max,
        s.released_file_changes,
        s.released_file_bytes
    )?;
    for line in &s.events {
        writeln!(out, "tandem: ft: {line}")?;
    }
    Ok(())
}

/// One campaign run's result.
struct CampaignRow {
    verdict: Verdict,
    stats: FtStats,
}

fn end_of(end: &FtEnd) -> End {
    match end {
        FtEnd::Finished(Termination::Signaled { signal, .. }) => End::Killed { signal: *signal },
        FtEnd::Finished(t) => End::Exited {
            status: t.exit_status(),
        },
        FtEnd::Limit { .. } => End::Hung,
    }
}

fn campaign(args: FtArgs) -> anyhow::Result<()> {
    let seeds = parse_seeds(args.seeds.as_deref().expect("campaign mode"))?;
    if args.jobs == 0 || args.jobs > JOBS_MAX {
        bail!(
            "--jobs {}: give between 1 and {JOBS_MAX} worker threads",
            args.jobs
        );
    }
    let replicas = args.replicas as usize;
    if args.faults_in >= replicas {
        bail!(
            "--faults-in {}: replicas are 0 to {}",
            args.faults_in,
            replicas - 1
        );
    }
    if !args.faults_on.is_empty() {
        bail!("a campaign (--seeds) does not take --faults-on; give the faults with --faults");
    }
    let program = program_path(&args.command[0]);
    let bytes: Arc<[u8]> = read_input(&program, InputKind::Program)?.into();
    let config = linux_config(&args, &bytes)?;
    if config
        .mounts
        .iter()
        .any(|m| m.guest.is_empty() && m.host == Path::new("/"))
    {
        bail!(
            "a campaign (--seeds) reads its root and mounts into memory, and the host's / (the default root of a \
             dynamically linked program) is far too large: give --root DIR with a small system root holding \
             the program's loader and libraries"
        );
    }
    let host = ReleasingHost::new(
        campaign_host(&config.mounts, campaign_stdin()?, args.seed)?,
        None,
    );
    let mut guest = LinuxMachine::new(config.clone(), &bytes, host.clone())
        .with_context(|| format!("cannot load {}", program.display()))?;
    let baseline_max = args.max_insns.unwrap_or(u64::MAX / 4);
    if guest.run_to_completion(baseline_max) != Progress::Finished {
        bail!("the fault-free run did not finish within {baseline_max} instructions; raise --max-insns");
    }
    let t = guest.termination().expect("finished").clone();
    let baseline = Baseline {
        end: end_of(&FtEnd::Finished(t.clone())),
        stdout: released_output(&guest.host),
        icount: guest.icount(),
        diagnostic: t.diagnostic(),
    };
    let plan = FaultPlan::parse_spec(&args.faults, "--faults")?.with_horizon(baseline.icount);
    let instructions_max = args
        .max_insns
        .unwrap_or(baseline.icount.saturating_mul(2).saturating_add(1_000_000));
    let ft = FtConfig {
        instructions_max,
        threads: !args.no_threads && args.jobs == 1,
        ..ft_config(&args)
    };
    let snapshots = if args.cold {
        Vec::new()
    } else {
        let fault_free = || vec![ReplicaFaults::default(); replicas];
        let world = World::new(
            ft.clone(),
            config.clone(),
            bytes.clone(),
            host.clone(),
            fault_free(),
            policy(&args),
        )?;
        fault_free_snapshots(world, &args, baseline.icount)
    };
    let next = AtomicU64::new(seeds.start);
    let rows: Mutex<Vec<Option<anyhow::Result<CampaignRow>>>> =
        Mutex::new((seeds.start..seeds.end).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..args.jobs {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= seeds.end {
                    return;
                }
                let mut faults = vec![ReplicaFaults::default(); replicas];
                faults[args.faults_in] = ReplicaFaults {
                    plan: plan.clone(),
                    fault_seed: seed,
                };
                // The latest snapshot before the first fault: until then the run is the fault-free world's.
                let first = first_fault_icount(&plan, seed);
                let start = snapshots.iter().rev().find(|s| s.icount() < first);
                let world = match start {
                    Some(snap) => World::from_snapshot(
                        ft.clone(),
                        config.clone(),
                        bytes.clone(),
                        snap,
                        faults,
                        policy(&args),
                    ),
                    None => World::new(
                        ft.clone(),
                        config.clone(),
                        bytes.clone(),
                        host.clone(),
                        faults,
                        policy(&args),
                    ),
                };
                let row = world.map_err(anyhow::Error::from).map(|mut world| {
                    world.set_jit(!args.no_jit);
                    let end = end_of(&world.run());
                    let verdict = world.with_live(|h| judge(&baseline, end, &released_output(h)));
                    CampaignRow {
                        verdict,
                        stats: world.stats().clone(),
                    }
                });
                rows.lock().expect("no worker panicked")[(seed - seeds.start) as usize] = Some(row);
            });
        }
    });
    let rows: Vec<CampaignRow> = rows
        .into_inner()
        .expect("no worker panicked")
        .into_iter()
        .map(|r| r.expect("every seed ran"))
        .collect::<anyhow::Result<_>>()?;
    render_campaign(&args, &seeds, &plan, &baseline, &rows)
}

/// The fault-free world's snapshots at the start and at evenly spread epoch ends (at most
/// `WORLD_SNAPSHOTS_MAX`), in icount order; `icount` is the fault-free single run's length (a pair's too).
fn fault_free_snapshots(
    mut world: World<CampaignHost>,
    args: &FtArgs,
    icount: u64,
) -> Vec<WorldSnapshot<CampaignHost>> {
    world.set_jit(!args.no_jit);
    let epochs = icount.div_ceil(args.epoch_insns).max(1);
    let every = epochs.div_ceil(WORLD_SNAPSHOTS_MAX).max(1);
    let mut snapshots = Vec::new();
    for epoch in 0.. {
        if epoch % every == 0 {
            snapshots.push(world.snapshot());
        }
        if world.step().is_some() {
            break;
        }
    }
    snapshots
}

/// What a campaign compares with the fault-free run: stdout, then the digest of the file changes.
fn released_output(host: &CampaignHost) -> Vec<u8> {
    let mut out = host.inner.stdout.clone();
    out.extend_from_slice(&host.file_output_digest.finish().to_le_bytes());
    out
}

/// A campaign's stdin: all of tandem's own stdin read once (every run gets the same bytes), or none from a
/// terminal.
fn campaign_stdin() -> anyhow::Result<Vec<u8>> {
    use std::io::{IsTerminal, Read};
    let mut stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Ok(Vec::new());
    }
    let mut bytes = Vec::new();
    stdin
        .read_to_end(&mut bytes)
        .context("cannot read stdin for the campaign's runs")?;
    Ok(bytes)
}

fn render_campaign(
    args: &FtArgs,
    seeds: &std::ops::Range<u64>,
    plan: &FaultPlan,
    baseline: &Baseline,
    rows: &[CampaignRow],
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let command: Vec<String> = args
        .command
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    writeln!(
        out,
        "ft campaign: {}, seeds {}..{}, {} replicas, faults {} in replica {}, epochs of {}",
        command.join(" "),
        seeds.start,
        seeds.end,
        args.replicas,
        plan.to_spec(),
        args.faults_in,
        epoch_bound(args)
    )?;
    writeln!(
        out,
        "fault-free run: {}, {} instructions, {} bytes of stdout",
        baseline.end.describe(),
        baseline.icount,
        baseline.stdout.len().saturating_sub(8)
    )?;
    writeln!(out, "{:<20} {:>8}", "verdict", "runs")?;
    for v in Verdict::ALL {
        let n = rows.iter().filter(|r| r.verdict == v).count();
        writeln!(out, "{:<20} {n:>8}", v.name())?;
    }
    let sum = |f: &dyn Fn(&FtStats) -> u64| rows.iter().map(|r| f(&r.stats)).sum::<u64>();
    writeln!(
        out,
        "runs with a mismatch: {}; mismatches {}, re-executions {}, resyncs {} ({} pages, {} bytes), failovers {}",
        rows.iter().filter(|r| r.stats.mismatches > 0).count(),
        sum(&|s| s.mismatches),
        sum(&|s| s.reexecutions),
        sum(&|s| s.resyncs),
        sum(&|s| s.pages_moved),
        sum(&|s| s.bytes_moved),
        sum(&|s| s.failovers)
    )?;
    let corrupted: Vec<String> = (seeds.start..seeds.end)
        .zip(rows)
        .filter(|(_, r)| r.verdict == Verdict::SilentlyCorrupted)
        .map(|(s, _)| s.to_string())
        .take(10)
        .collect();
    if !corrupted.is_empty() {
        writeln!(
            out,
            "silently corrupted seeds (first 10): {}",
            corrupted.join(", ")
        )?;
    }
    out.flush()?;
    if rows.iter().any(|r| r.verdict == Verdict::SilentlyCorrupted) {
        std::process::exit(1);
    }
    Ok(())
}
