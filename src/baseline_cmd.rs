//! `tandem baseline record SPEC` and `tandem baseline check SPEC`: integrity baselines of a service's operations
//! (tandem_analyzers::baseline). This file reads the spec, the programs, stdin files, mounts, key and baseline,
//! runs each operation on an in-memory host, and renders the verdicts; the comparisons live in the library.
//!
//! Exit statuses: 0 every operation behaves as its baseline (record: the baseline was written), 1 some operation
//! changed, 2 fail closed (an operation cannot run, the baseline is missing, unreadable or tampered with,
//! operations added or removed, an operation's inputs changed), 125 usage or a bad spec.

use crate::run_cmd::{exe_guest_path, guest_cwd, guest_mounts_of};
use anyhow::{bail, Context};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use tandem_analyzers::baseline::{
    check_operation, inputs_digest, observe, operation_set_failures, parse_spec, read_baseline,
    run_operation, write_baseline, Body, Observation, OperationCheck, OperationSpec, Spec, Verdict,
    INSTRUCTIONS_MAX_DEFAULT,
};
use tandem_analyzers::diff::describe_call;
use tandem_emulator::linux::LinuxConfig;
use tandem_scenarios::input::{read_input, read_input_text, InputKind};

/// Some operation behaves differently from its baseline.
pub const EXIT_CHANGED: i32 = 1;
/// The check failed closed.
pub const EXIT_FAIL_CLOSED: i32 = 2;
/// The version of `check --json`.
pub const CHECK_JSON_FORMAT: &str = "tandem-baseline-check/1";

#[derive(clap::Args, Debug)]
#[command(
    about = "Integrity baselines of a service: record what its operations do, check a build against it",
    long_about = "A spec (TOML) lists a service's operations: each a program, its arguments, stdin (inline or a \
        file), the read-only mounts it is allowed and optionally the system calls it is allowed. `record` runs \
        each operation and stores its baseline: exit status, stdout and stderr, every system call with its \
        arguments, result and bytes, the files read and written, the final state hash; the file is sealed with \
        a SHA-256 digest (which catches accidental or naive edits, not a forger who recomputes it) or, with \
        --key-file, an HMAC-SHA256 (a forger also needs the key). `check` runs the operations again (against \
        another build with --program-override) and names each operation whose behaviour changed with the first \
        differing system call. It fails closed: a missing or tampered baseline, an operation that cannot run, \
        operations added or removed, or inputs changed since the baseline, are failures.\n\n\
        Spec example:\n  \
        program = \"../corpus/bin/service-musl\"\n  \
        [[operation]]\n  \
        name = \"get-readme\"\n  \
        args = [\"get\", \"readme\"]\n  \
        mounts = [\"data:/data\"]\n  \
        syscalls = [\"open\", \"read\", \"write\", \"close\", \"exit_group\"]",
    after_help = "Exit status:\n  \
        0    record: the baseline was written; check: every operation behaves as its baseline\n  \
        1    check: some operation changed (each is named with its first differing system call)\n  \
        2    fail closed: an operation cannot run, the baseline is missing, unreadable or tampered with, \
        operations were added or removed, or an operation's inputs changed\n  \
        125  usage error or a bad spec\n\n\
        Examples:\n  \
        tandem baseline record service.toml -o service.baseline.json\n  \
        tandem baseline check service.toml --baseline service.baseline.json\n  \
        tandem baseline check service.toml --program-override build/service"
)]
pub struct BaselineArgs {
    #[command(subcommand)]
    command: BaselineCommand,
}

#[derive(clap::Subcommand, Debug)]
enum BaselineCommand {
    /// Run each operation of SPEC and write its baseline.
    Record(RecordArgs),
    /// Run each operation of SPEC again and compare it with the baseline.
    Check(CheckArgs),
}

#[derive(clap::Args, Debug)]
struct Common {
    /// The spec: the service's operations (TOML). Example: service.toml
    #[arg(value_name = "SPEC")]
    spec: PathBuf,
    /// A file whose bytes key the baseline's HMAC-SHA256 seal. Example: --key-file /secure/baseline.key
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Run another program instead of the spec's: PATH for every operation, or SPEC_PROGRAM=PATH for the
    /// operations whose program the spec names SPEC_PROGRAM. Repeatable. Example: --program-override build/service
    #[arg(long, value_name = "[SPEC_PROGRAM=]PATH")]
    program_override: Vec<String>,
}

#[derive(clap::Args, Debug)]
struct RecordArgs {
    #[command(flatten)]
    common: Common,
    /// Where to write the baseline. Default: SPEC with the extension .baseline.json.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct CheckArgs {
    #[command(flatten)]
    common: Common,
    /// The baseline to check against. Default: SPEC with the extension .baseline.json.
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
    /// Print the verdicts as JSON (format "tandem-baseline-check/1").
    #[arg(long)]
    json: bool,
    /// A different instruction count or final state hash is a change too (it always is between two builds).
    #[arg(long)]
    exact: bool,
}

pub fn run(args: BaselineArgs) -> anyhow::Result<()> {
    match args.command {
        BaselineCommand::Record(r) => record(r),
        BaselineCommand::Check(c) => check(c),
    }
}

/// The default baseline path: SPEC with the extension .baseline.json.
fn default_baseline(spec: &Path) -> PathBuf {
    spec.with_extension("baseline.json")
}

/// The spec, its directory (paths in it are relative to it), and the key.
fn load(common: &Common) -> anyhow::Result<(Spec, PathBuf, Option<Vec<u8>>)> {
    let text = read_input_text(&common.spec, InputKind::BaselineSpec)?;
    let spec = parse_spec(&text).with_context(|| format!("spec {}", common.spec.display()))?;
    let dir = common
        .spec
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    for o in &common.program_override {
        if o.is_empty() || o.ends_with('=') {
            bail!("--program-override {o:?}: give PATH or SPEC_PROGRAM=PATH");
        }
    }
    let key = match &common.key_file {
        Some(k) => {
            let key = read_input(k, InputKind::Baseline)?;
            if key.is_empty() {
                bail!("--key-file {}: the key file is empty", k.display());
            }
            Some(key)
        }
        None => None,
    };
    Ok((spec, dir, key))
}

/// The program an operation runs: an override, or the spec's (relative to the spec's directory).
fn program_of(op: &OperationSpec, spec: &Spec, dir: &Path, overrides: &[String]) -> PathBuf {
    let named = op.program(spec).unwrap_or_default();
    for o in overrides {
        match o.split_once('=') {
            Some((from, to)) if from == named => return PathBuf::from(to),
            None => return PathBuf::from(o),
            _ => {}
        }
    }
    dir.join(named)
}

/// Runs one operation; an error is an operation that cannot run (fail closed).
fn run_op(
    op: &OperationSpec,
    spec: &Spec,
    dir: &Path,
    overrides: &[String],
) -> anyhow::Result<Observation> {
    let program = program_of(op, spec, dir, overrides);
    let bytes = read_input(&program, InputKind::Program)?;
    let named = dir.join(op.program(spec).unwrap_or_default());
    let stdin = match (&op.stdin, &op.stdin_file) {
        (Some(text), _) => text.as_bytes().to_vec(),
        (None, Some(file)) => read_input(&dir.join(file), InputKind::BaselineSpec)?,
        (None, None) => Vec::new(),
    };
    let mount_specs: Vec<String> = op
        .mounts
        .iter()
        .map(|m| {
            let (host, guest) = m.split_once(':').unwrap_or((m, ""));
            let host = dir.join(host).to_string_lossy().into_owned();
            if guest.is_empty() {
                host
            } else {
                format!("{host}:{guest}")
            }
        })
        .collect();
    let dynamic = tandem_emulator::linux::elf::ElfFile::parse(&bytes)
        .is_ok_and(|elf| elf.interpreter.is_some());
    if dynamic {
        bail!(
            "{} is dynamically linked; baselines run static programs (the host's root would have to be read \
             into memory)",
            program.display()
        );
    }
    let mounts = guest_mounts_of(None, &mount_specs, &bytes)?;
    let mut argv = vec![named.as_os_str().as_bytes().to_vec()];
    argv.extend(op.args.iter().map(|a| a.as_bytes().to_vec()));
    let config = LinuxConfig {
        seed: op.seed,
        argv,
        envp: op.env.iter().map(|e| e.as_bytes().to_vec()).collect(),
        exe_path: exe_guest_path(&named, &mounts),
        cwd: guest_cwd(&mounts),
        mounts: mounts.clone(),
        ..LinuxConfig::default()
    };
    let host = crate::ft_hosts::campaign_host(&mounts, stdin.clone(), op.seed)?;
    let shown = program.display().to_string();
    let limit = op.max_insns.unwrap_or(INSTRUCTIONS_MAX_DEFAULT);
    let log = run_operation(config, &shown, &bytes, host, limit).map_err(anyhow::Error::msg)?;
    Ok(observe(
        &op.name,
        &shown,
        &bytes,
        inputs_digest(op, &stdin),
        log,
    ))
}

fn record(args: RecordArgs) -> anyhow::Result<()> {
    let (spec, dir, key) = load(&args.common)?;
    let output = args
        .output
        .unwrap_or_else(|| default_baseline(&args.common.spec));
    let mut operations = Vec::new();
    let mut err = std::io::stderr().lock();
    for op in &spec.operations {
        match run_op(op, &spec, &dir, &args.common.program_override) {
            Ok(o) => {
                writeln!(
                    err,
                    "tandem: baseline: {}: exit status {}, {} system calls, {} bytes of stdout",
                    o.name,
                    o.exit_status,
                    o.calls.len(),
                    o.stdout.len
                )?;
                operations.push(o);
            }
            Err(e) => {
                writeln!(
                    err,
                    "tandem: baseline: operation {} cannot run: {e:#}; no baseline written",
                    op.name
                )?;
                std::process::exit(EXIT_FAIL_CLOSED);
            }
        }
    }
    let text = write_baseline(Body { operations }, key.as_deref())?;
    std::fs::write(&output, text + "\n")
        .with_context(|| format!("cannot write the baseline {}", output.display()))?;
    writeln!(
        err,
        "tandem: baseline: {} operations written to {}",
        spec.operations.len(),
        output.display()
    )?;
    Ok(())
}

fn check(args: CheckArgs) -> anyhow::Result<()> {
    let (spec, dir, key) = load(&args.common)?;
    let path = args
        .baseline
        .clone()
        .unwrap_or_else(|| default_baseline(&args.common.spec));
    let body = match read_baseline_file(&path, key.as_deref()) {
        Ok(b) => b,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "tandem: baseline: FAILED: {e:#}");
            std::process::exit(EXIT_FAIL_CLOSED);
        }
    };
    let mut checks = operation_set_failures(&spec, &body);
    for op in &spec.operations {
        let Some(base) = body.operations.iter().find(|o| o.name == op.name) else {
            continue;
        };
        checks.push(
            match run_op(op, &spec, &dir, &args.common.program_override) {
                Ok(now) => check_operation(base, &now, op.allowed().as_ref(), args.exact),
                Err(e) => OperationCheck::failed(&op.name, format!("cannot run: {e:#}")),
            },
        );
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        let report = serde_json::json!({
            "format": CHECK_JSON_FORMAT,
            "spec": args.common.spec.display().to_string(),
            "baseline": path.display().to_string(),
            "operations": checks,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write!(out, "{}", render_checks(&checks))?;
    }
    out.flush()?;
    let status = if checks.iter().any(|c| c.verdict == Verdict::Failed) {
        EXIT_FAIL_CLOSED
    } else if checks.iter().any(|c| c.verdict == Verdict::Changed) {
        EXIT_CHANGED
    } else {
        0
    };
    if status != 0 {
        drop(out);
        std::process::exit(status);
    }
    Ok(())
}

/// Reads and unseals a baseline file; a missing file is named as such.
fn read_baseline_file(path: &Path, key: Option<&[u8]>) -> anyhow::Result<Body> {
    if !path.exists() {
        bail!(
            "no baseline at {}: record one with `tandem baseline record`",
            path.display()
        );
    }
    let text = read_input_text(path, InputKind::Baseline)?;
    read_baseline(&text, key).with_context(|| format!("baseline {}", path.display()))
}

fn render_checks(checks: &[OperationCheck]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let count = |v: Verdict| checks.iter().filter(|c| c.verdict == v).count();
    let _ = writeln!(
        out,
        "{} operations: {} same, {} changed, {} failed",
        checks.len(),
        count(Verdict::Same),
        count(Verdict::Changed),
        count(Verdict::Failed)
    );
    for c in checks {
        let verdict = match c.verdict {
            Verdict::Same => "same",
            Verdict::Changed => "CHANGED",
            Verdict::Failed => "FAILED",
        };
        let _ = writeln!(out, "{verdict} {}", c.name);
        for f in &c.findings {
            let _ = writeln!(out, "  {f}");
        }
        if let Some(p) = &c.first {
            let _ = writeln!(out, "  first differing system call #{}:", p.index);
            for (who, call) in [("baseline", &p.a), ("now", &p.b)] {
                let line = call
                    .as_ref()
                    .map_or("no more system calls".into(), describe_call);
                let _ = writeln!(out, "    {who}: {line}");
            }
        }
        for n in &c.notes {
            let _ = writeln!(out, "  note: {n}");
        }
    }
    out
}
