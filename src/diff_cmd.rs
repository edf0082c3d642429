//! `tandem diff TRACE_A TRACE_B`: where two recorded runs part (tandem_analyzers::diff over the calls of
//! tandem_analyzers::calls). Rendering only: the text report, or the versioned JSON with --json.

use anyhow::Context;
use std::io::Write;
use std::path::{Path, PathBuf};
use tandem_analyzers::calls::{log_of, RunLog};
use tandem_analyzers::diff::{compare, render, Comparison};
use tandem_replay::trace::Trace;
use tandem_scenarios::input::{read_input, InputKind};

/// Exit status when the runs differ.
pub const EXIT_DIFFER: i32 = 1;
/// The version of the --json report.
pub const DIFF_JSON_FORMAT: &str = "tandem-diff/1";

#[derive(clap::Args, Debug)]
#[command(
    about = "Where two recorded runs part: the first differing system call, then the later differences",
    long_about = "Replays two traces (of different binaries, inputs or seeds) and aligns their system calls: \
        each call with its arguments (paths, socket addresses, descriptors, flags; pointers are not compared, \
        since two builds place their data differently), its result and the bytes it wrote or read. Names the \
        first call where the runs part and what differed there, with the icount in each trace (`tandem debug \
        TRACE`, then `goto ICOUNT`, stops just before that call with its arguments in the registers), then the \
        later differences (aligned by Myers' algorithm, at most 1000 edits) and how the runs ended (exit status \
        and output; the instruction count and final state hash as notes, since they differ between any two \
        builds).",
    after_help = "Exit status:\n  \
        0    the runs behave alike (system calls, exit status, output; with --exact also icount and state)\n  \
        1    they differ\n  \
        125  tandem's own failure: a missing, damaged, edited or unfinished trace (named with the place)\n\n\
        Examples:\n  \
        tandem diff a.trace b.trace\n  \
        tandem diff --json old.trace new.trace > diff.json"
)]
pub struct DiffArgs {
    /// The first recording (A). Example: old.trace
    #[arg(value_name = "TRACE_A")]
    a: PathBuf,
    /// The second recording (B). Example: new.trace
    #[arg(value_name = "TRACE_B")]
    b: PathBuf,
    /// Print the comparison as JSON (format "tandem-diff/1") instead of text.
    #[arg(long)]
    json: bool,
    /// A different instruction count or final state hash counts as a difference too.
    #[arg(long)]
    exact: bool,
}

/// The system calls of the run a trace file holds; every error names the file.
pub(crate) fn log_of_file(path: &Path) -> anyhow::Result<RunLog> {
    let bytes = read_input(path, InputKind::Trace)?;
    let trace = Trace::parse(&bytes).with_context(|| format!("trace {}", path.display()))?;
    log_of(trace).with_context(|| format!("trace {}", path.display()))
}

pub fn run(args: DiffArgs) -> anyhow::Result<()> {
    let a = log_of_file(&args.a)?;
    let b = log_of_file(&args.b)?;
    let comparison = compare(&a, &b);
    let (name_a, name_b) = (args.a.display().to_string(), args.b.display().to_string());
    let mut out = std::io::stdout().lock();
    if args.json {
        let report = json_report(&comparison, (&name_a, &name_b), args.exact);
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write!(out, "{}", render(&comparison, &a, &b, (&name_a, &name_b)))?;
    }
    out.flush()?;
    if !comparison.same(args.exact) {
        drop(out);
        std::process::exit(EXIT_DIFFER);
    }
    Ok(())
}

fn json_report(c: &Comparison, names: (&str, &str), exact: bool) -> serde_json::Value {
    serde_json::json!({
        "format": DIFF_JSON_FORMAT,
        "a": names.0,
        "b": names.1,
        "same": c.same(exact),
        "comparison": c,
    })
}
