//! `tandem replay`: reproduces a recorded run from its trace alone and verifies it.
//!
//! Exit status: 0 when the replay matches the recording to its end ("verified", whatever status the guest
//! itself ended with, which the report prints; `--guest-status` exits with the guest's status instead); 3 when it
//! diverges (the report names the first checkpoint that differs and the instruction it was narrowed to); 4 when
//! the trace is truncated or corrupt after its header (replayed and verified up to its last complete chunk); 125
//! when it cannot be read at all (tandem's error status: not a trace, wrong version, damaged header).

use anyhow::Context;
use std::io::Write;
use std::path::PathBuf;
use tandem_replay::hosts::OutputSink;
use tandem_replay::replay::{describe, Replayer};
use tandem_replay::trace::Trace;

pub const EXIT_DIVERGENCE: i32 = 3;
pub const EXIT_DAMAGED_TRACE: i32 = 4;

#[derive(clap::Args, Debug)]
#[command(
    about = "Replay a trace written by `tandem record`, verifying every state hash",
    long_about = "Replay a trace written by `tandem record` from the trace alone (no stdin, no files, no host \
        clock), printing the guest's output again and verifying every recorded state hash, the output, the exit \
        status and the final state. A divergence is narrowed to the first instruction whose registers differ, \
        with the memory pages that differ and the instruction that last wrote each.",
    after_help = "Exit status:\n  \
        0    verified: the replay matches the recording to its end, whatever the guest's recorded exit status \
        (the report on stderr prints it)\n  \
        3    divergence: the replay differs from the recording (the report names where)\n  \
        4    damaged trace: truncated or corrupt after its header; replayed and verified up to its last complete \
        chunk\n  \
        125  tandem's own failure: not a trace, unreadable, wrong version, damaged header, usage error\n\n\
        Examples:\n  tandem replay run.trace\n  tandem replay --quiet run.trace\n  \
        tandem replay --export /tmp/after vol.trace"
)]
pub struct ReplayArgs {
    /// The trace to replay. Example: run.trace
    #[arg(value_name = "FILE")]
    trace: PathBuf,

    /// Do not print the guest's output (verify only).
    #[arg(long)]
    quiet: bool,

    /// Exit with the guest's recorded exit status when the replay verifies (instead of 0), as `tandem run`
    /// and `tandem record` do. A divergence or a damaged trace still exits 3 or 4.
    #[arg(long)]
    guest_status: bool,

    /// Write the final content of a volume of the recorded run (`tandem record --volume`), as the replay left
    /// it, to DIR (a new or empty host directory); the first --export is the first volume's, and so on. The
    /// volumes come from the trace: the recording machine's directories are not read.
    /// Example: --export /tmp/after
    #[arg(long = "export", value_name = "DIR")]
    exports: Vec<PathBuf>,

    /// Print the instruction count and the final state hash to stderr (deterministic, for tests).
    #[arg(long, hide = true)]
    report_state: bool,
}

/// Exit status of a replay that matched the recording to its end.
pub const EXIT_VERIFIED: i32 = 0;

/// Reads and parses a trace, naming the file in every error. Chunk by chunk: the file is never held whole.
pub fn load(path: &std::path::Path) -> anyhow::Result<Trace> {
    let file = std::fs::File::open(path).with_context(|| {
        let mut partial = path.as_os_str().to_os_string();
        partial.push(".partial");
        let hint = if std::path::Path::new(&partial).exists() {
            format!(
                " (a recording that did not finish left {}: replay that)",
                std::path::Path::new(&partial).display()
            )
        } else {
            String::new()
        };
        format!("cannot read the trace {}{hint}", path.display())
    })?;
    let trace = Trace::read(std::io::BufReader::new(file))
        .with_context(|| format!("{}", path.display()))?;
    if trace.header.emulator_version != tandem_replay::EMULATOR_VERSION {
        crate::output::note!(
            "tandem: warning: {} was recorded by tandem {}, this is {}; a divergence may come from the change",
            path.display(),
            trace.header.emulator_version,
            tandem_replay::EMULATOR_VERSION
        );
    }
    Ok(trace)
}

pub fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let trace = load(&args.trace)?;
    if args.exports.len() > trace.header.volumes.len() {
        anyhow::bail!(
            "--export given {} times, but {} holds {} volumes: each --export is the recorded volume of the same \
             position",
            args.exports.len(),
            args.trace.display(),
            trace.header.volumes.len()
        );
    }
    let sink = OutputSink {
        passthrough: !args.quiet,
        keep: false,
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    let mut replayer = Replayer::new(trace, sink)
        .with_context(|| format!("cannot replay {}", args.trace.display()))?;
    let report = replayer.replay();
    let _ = std::io::stdout().flush();
    crate::run_cmd::export_volumes(&mut replayer.hv.guest, &args.exports)?;
    let mut err = crate::output::Lossy(std::io::stderr().lock());
    let name = args.trace.display();
    let status = if let Some(d) = &report.divergence {
        write!(
            err,
            "tandem: {name}: the replay diverges from the recording\n{d}"
        )?;
        EXIT_DIVERGENCE
    } else if let Some(damage) = &report.damage {
        writeln!(
            err,
            "tandem: {name}: {damage}\ntandem: replayed and verified up to icount {} (the last complete chunk); {} checkpoints verified",
            report.icount, report.checkpoints_verified
        )?;
        EXIT_DAMAGED_TRACE
    } else {
        if let Some(line) = &report.diagnostic {
            writeln!(err, "tandem: {line}")?;
        }
        for fault in replayer.hv.reports() {
            writeln!(err, "tandem: {}", fault.line())?;
        }
        writeln!(err, "tandem: {name}: verified: {}", describe(&report))?;
        match report.exit_status {
            Some(status) if args.guest_status => status,
            _ => EXIT_VERIFIED,
        }
    };
    if args.report_state {
        writeln!(
            err,
            "tandem: icount {} state_hash {:#018x}",
            report.icount, report.state_hash
        )?;
    }
    err.flush()?;
    drop(err);
    std::process::exit(status);
}
