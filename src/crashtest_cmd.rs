//! `tandem crashtest`: crash-consistency search over a program's volume (tandem_analyzers::crashtest). Runs the
//! workload once, then for each crash state the disk model allows at each persistence point (and at seeded
//! points between) runs the checker on the recovered volume, and reports each distinct vulnerability with a
//! one-line reproduction. Parsing and rendering only.

use anyhow::{bail, Context};
use serde_json::json;
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;
use tandem_analyzers::crashtest::guest::{record_workload, GuestChecker, GuestRun};
use tandem_analyzers::crashtest::{search, Recording, Report, SearchSpec};
use tandem_emulator::linux::host::SharedFiles;
use tandem_emulator::linux::vfs::Mount;
use tandem_emulator::linux::LinuxConfig;
use tandem_emulator::storage::VolumeSpec;
use tandem_scenarios::input::{read_input, InputKind};

/// Exit status when the search found a vulnerability.
pub const EXIT_VULNERABLE: i32 = 1;

#[derive(clap::Args, Debug)]
#[command(
    about = "Find crash-consistency bugs: check every crash state a program's volume can be left in",
    long_about = "Run PROGRAM once on writable volumes (--volume HOST:GUEST, repeatable; the host directories \
        are never written), keeping every completed operation on them. At each persistence point (fsync, fdatasync, fsync \
        of a directory, sync_file_range, sync, an O_SYNC write), just before and just after it, at the end of \
        the run and at seeded points between, build the crash states the disk model allows: operations not yet \
        durable lost (names in order, data in any order) and writes torn at 512-byte sectors; several volumes \
        crash together, each as its own rules allow. For each state run \
        the checker: a guest program (static, or dynamic from --root) that sees the crashed volumes at their GUEST paths and \
        reads on stdin what PROGRAM had printed by the crash (its acknowledgements); exit status 0 means the \
        state is consistent. --checker is one command line, split into words as a POSIX shell splits it \
        (quotes, backslashes). Without --checker the checker is PROGRAM itself with the same arguments (a \
        restart that must recover).\n\n\
        Each distinct vulnerability (a kind of persistence point and the checker's exit status and stdout) is \
        reported once, with what the crash lost and a command that reproduces it. The search is a function of \
        the program, its inputs, --seed and the bounds: the report is identical at any --jobs.",
    after_help = "Exit status:\n  \
        0    every crash state checked is consistent\n  \
        1    vulnerabilities found (with --only: the state is inconsistent)\n  \
        125  bad input or usage: no --volume, a bad --only, a workload that does not finish\n\n\
        Examples:\n  \
        tandem crashtest --volume ./data:/data --checker 'corpus/bin/save-check-musl /data' -- corpus/bin/save-musl inplace /data\n  \
        tandem crashtest --seed 3 --jobs 2 --volume ./db:/db --checker 'corpus/bin/sqlite-txn-glibc check /db/t.db' \
        -- corpus/bin/sqlite-txn-glibc run /db/t.db wal off 20"
)]
pub struct CrashtestArgs {
    /// Seed of the guests (as `tandem run --seed`) and of the search (sampled states, points between).
    #[arg(long, default_value_t = 0, value_name = "N")]
    seed: u64,
    /// Worker threads running checkers, 1 to 256 (the report does not depend on it).
    #[arg(long, default_value_t = 1, value_name = "N")]
    jobs: usize,
    /// Most crash states per point; beyond it the states are sampled from the seed.
    #[arg(long, default_value_t = 32, value_name = "K")]
    states_per_point: usize,
    /// Seeded points drawn between two persistence points.
    #[arg(long, default_value_t = 1, value_name = "N")]
    between: usize,
    /// A volume: HOST directory, read once and never written, seen by the guest at GUEST. Repeatable: the
    /// volumes crash together, each losing what its own persistence rules allow, and the checker sees them all
    /// at the same guest paths.
    #[arg(long = "volume", value_name = "HOST:GUEST", required = true)]
    volumes: Vec<String>,
    /// The checker: PROGRAM ARGS as one command line, split into words as a POSIX shell splits them (single
    /// and double quotes, backslash escapes; no variables, globs or redirections), so an argument may hold
    /// spaces: --checker 'check "/data/my file"'. Default: the workload itself.
    #[arg(long, value_name = "CMD")]
    checker: Option<String>,
    /// Mount a host path read-only for the workload and the checker (as `tandem run --mount`). Repeatable.
    #[arg(long = "mount", value_name = "HOST[:GUEST]")]
    mounts: Vec<String>,
    /// The guests' root file system (as `tandem run --root`).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// An environment variable of both guests. Repeatable.
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Instruction budget of the workload's run.
    #[arg(long, default_value_t = 10_000_000_000, value_name = "N")]
    max_insns: u64,
    /// Instruction budget of each checker run (one that does not finish is a vulnerability).
    #[arg(long, default_value_t = 2_000_000_000, value_name = "N")]
    checker_max_insns: u64,
    /// Check only crash state STATE of point POINT (numbers from a report's reproduction line).
    #[arg(long, value_name = "POINT:STATE")]
    only: Option<String>,
    /// Print JSON lines (one per vulnerability, then a summary) instead of the table.
    #[arg(long)]
    json: bool,
    /// The workload and its arguments.
    #[arg(required = true, trailing_var_arg = true, value_name = "PROGRAM ARGS")]
    command: Vec<OsString>,
}

fn parse_only(text: &str) -> anyhow::Result<(usize, usize)> {
    let parsed = text
        .split_once(':')
        .and_then(|(p, s)| Some((p.trim().parse().ok()?, s.trim().parse().ok()?)));
    parsed.with_context(|| format!("--only {text:?}: expected POINT:STATE, such as --only 12:3"))
}

/// A guest of the search: program bytes, configuration and what its mounts read.
fn guest_run(
    args: &CrashtestArgs,
    argv: &[OsString],
    volumes: &[VolumeSpec],
    instructions_max: u64,
) -> anyhow::Result<GuestRun> {
    let program = crate::run_cmd::program_path(&argv[0]);
    let bytes = read_input(&program, InputKind::Program)?;
    let mounts = crate::run_cmd::guest_mounts_of(args.root.as_ref(), &args.mounts, &bytes)?;
    let mut readable: Vec<Mount> = mounts.clone();
    readable.extend(volumes.iter().map(|v| Mount {
        guest: v.guest.clone(),
        host: v.host.clone(),
    }));
    let files = crate::mount_fs::SharedMountRoots::open(&readable)?;
    let config = LinuxConfig {
        seed: args.seed,
        argv: argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
        envp: args.env.iter().map(|e| e.as_bytes().to_vec()).collect(),
        exe_path: crate::run_cmd::exe_guest_path(&program, &mounts),
        cwd: crate::run_cmd::guest_cwd(&mounts),
        mounts,
        volumes: volumes.to_vec(),
        ..LinuxConfig::default()
    };
    Ok(GuestRun {
        program: Arc::new(bytes),
        config,
        files: Some(SharedFiles(Arc::new(files))),
        instructions_max,
        jit: true,
    })
}

pub fn run(args: CrashtestArgs) -> anyhow::Result<()> {
    for e in &args.env {
        if !e.contains('=') {
            bail!("--env {e}: expected K=V, such as --env LANG=C");
        }
    }
    let only = args.only.as_deref().map(parse_only).transpose()?;
    let volumes = parse_volumes(&args.volumes)?;
    let workload = guest_run(&args, &args.command, &volumes, args.max_insns)?;
    let checker_argv: Vec<OsString> = match &args.checker {
        Some(cmd) => shlex::split(cmd)
            .with_context(|| {
                format!("--checker {cmd:?}: an unterminated quote or a trailing backslash")
            })?
            .into_iter()
            .map(OsString::from)
            .collect(),
        None => args.command.clone(),
    };
    if checker_argv.is_empty() {
        bail!(
            "--checker: empty; give a program and its arguments, such as --checker 'check /data'"
        );
    }
    let checker = GuestChecker::new(
        guest_run(&args, &checker_argv, &volumes, args.checker_max_insns).context("--checker")?,
    );
    let recording = record_workload(&workload)?;
    if recording.exit_status.is_none() {
        bail!(
            "the workload did not finish within {} instructions (--max-insns)",
            args.max_insns
        );
    }
    let spec = SearchSpec {
        seed: args.seed,
        states_per_point: args.states_per_point,
        between_per_interval: args.between,
        jobs: args.jobs,
        only,
    };
    let report = search(&recording, &spec, &checker)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        write_json(&mut out, &args, &recording, &report)?;
    } else {
        write_table(&mut out, &args, &recording, &report)?;
    }
    out.flush()?;
    drop(out);
    if !report.vulnerabilities.is_empty() {
        crate::output::flush_stdout()?;
        std::process::exit(EXIT_VULNERABLE);
    }
    Ok(())
}

/// The --volume flags, parsed; two at the same or nested guest paths are refused.
fn parse_volumes(specs: &[String]) -> anyhow::Result<Vec<VolumeSpec>> {
    let volumes: Vec<VolumeSpec> = specs
        .iter()
        .map(|v| crate::run_cmd::parse_volume(v))
        .collect::<anyhow::Result<_>>()?;
    for (i, v) in volumes.iter().enumerate() {
        if volumes[..i]
            .iter()
            .any(|w| v.guest.starts_with(&w.guest) || w.guest.starts_with(&v.guest))
        {
            bail!(
                "--volume {}: overlaps another volume's guest path",
                specs[i]
            );
        }
    }
    Ok(volumes)
}

fn quoted(args: &[OsString]) -> String {
    args.iter()
        .map(|a| crate::faults_cmd::shell_quote(&a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The command that checks only state `state` of point `point`, with everything the search depends on.
fn reproduce_line(args: &CrashtestArgs, point: usize, state: usize) -> String {
    let q = crate::faults_cmd::shell_quote;
    let mut line = format!(
        "tandem crashtest --seed {} --states-per-point {} --between {} --only {point}:{state}",
        args.seed, args.states_per_point, args.between,
    );
    for v in &args.volumes {
        line.push_str(&format!(" --volume {}", q(v)));
    }
    for m in &args.mounts {
        line.push_str(&format!(" --mount {}", q(m)));
    }
    if let Some(root) = &args.root {
        line.push_str(&format!(" --root {}", q(&root.to_string_lossy())));
    }
    for e in &args.env {
        line.push_str(&format!(" --env {}", q(e)));
    }
    if let Some(c) = &args.checker {
        line.push_str(&format!(" --checker {}", q(c)));
    }
    line.push_str(&format!(" -- {}", quoted(&args.command)));
    line
}

fn write_table(
    out: &mut impl Write,
    args: &CrashtestArgs,
    recording: &Recording,
    report: &Report,
) -> anyhow::Result<()> {
    writeln!(
        out,
        "crashtest: {} (exit {}): {} operations, {} points, {} crash states, {} checks, {} inconsistent; {} vulnerabilities",
        quoted(&args.command),
        recording.exit_status.unwrap_or(-1),
        recording.steps.len(),
        report.points,
        report.states_tried,
        report.checks_run,
        report.inconsistent_states,
        report.vulnerabilities.len()
    )?;
    if let Some((lost, verdict)) = &report.only {
        writeln!(out, "state: {lost}")?;
        writeln!(
            out,
            "checker: {} ({})",
            verdict.summary,
            if verdict.consistent {
                "consistent"
            } else {
                "inconsistent"
            }
        )?;
        for line in verdict.detail.lines() {
            writeln!(out, "  {line}")?;
        }
        return Ok(());
    }
    for (i, v) in report.vulnerabilities.iter().enumerate() {
        writeln!(
            out,
            "{:>3}  {:<22} icount {:<12} x{:<5} {}",
            i + 1,
            v.point_label,
            v.icount,
            v.occurrences,
            v.summary.lines().next().unwrap_or("")
        )?;
        for line in v.summary.lines().skip(1).chain(v.detail.lines()) {
            writeln!(out, "       {line}")?;
        }
        writeln!(out, "     crash: {}", v.lost)?;
        writeln!(
            out,
            "     reproduce: {}",
            reproduce_line(args, v.point, v.state)
        )?;
    }
    Ok(())
}

/// JSON lines, format 1: one object per vulnerability, then the summary.
fn write_json(
    out: &mut impl Write,
    args: &CrashtestArgs,
    recording: &Recording,
    report: &Report,
) -> anyhow::Result<()> {
    for v in &report.vulnerabilities {
        let line = json!({
            "type": "vulnerability",
            "format": 1,
            "point": v.point,
            "state": v.state,
            "point_kind": v.point_label,
            "icount": v.icount,
            "occurrences": v.occurrences,
            "checker": v.summary,
            "detail": v.detail,
            "crash": v.lost,
            "reproduce": reproduce_line(args, v.point, v.state),
        });
        writeln!(out, "{line}")?;
    }
    let summary = json!({
        "type": "summary",
        "format": 1,
        "seed": args.seed,
        "command": quoted(&args.command),
        "workload_exit": recording.exit_status,
        "operations": recording.steps.len(),
        "points": report.points,
        "states": report.states_tried,
        "checks": report.checks_run,
        "inconsistent_states": report.inconsistent_states,
        "vulnerabilities": report.vulnerabilities.len(),
        "only_consistent": report.only.as_ref().map(|(_, v)| v.consistent),
    });
    writeln!(out, "{summary}")?;
    Ok(())
}
