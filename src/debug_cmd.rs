//! `tandem debug`: the replay debugger over a trace (crate tandem-replay, debugger.rs). Commands come from a
//! script (-x FILE) or stdin, one per line; each command's output is printed after a "(tandem) COMMAND" line,
//! so a transcript reads like a session. `#` starts a comment line.

use anyhow::Context;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use tandem_replay::debugger::Debugger;
use tandem_replay::hosts::OutputSink;
use tandem_replay::replay::Replayer;

/// Most commands one session runs (a script that loops on itself cannot run forever).
pub const COMMANDS_MAX: usize = 100_000;

#[derive(clap::Args, Debug)]
#[command(
    about = "Debug a recorded run: step, break, watch, and go backwards (reverse-stepi, reverse-continue, goto)",
    after_help = "Examples:\n  \
        tandem debug run.trace -x script.txt\n  \
        printf 'break main\\ncontinue\\nregs\\nreverse-stepi\\n' | tandem debug run.trace\n\n\
        Commands: stepi [N], reverse-stepi [N], continue, reverse-continue, goto ICOUNT, when, \
        break ADDR|SYMBOL, watch ADDR LEN, delete [N], regs, x ADDR LEN, disas [ADDR [N]], syscalls, \
        checkpoints, quit"
)]
pub struct DebugArgs {
    /// The trace to debug. Example: run.trace
    #[arg(value_name = "FILE")]
    trace: PathBuf,

    /// Read the commands from FILE instead of stdin. Example: -x script.txt
    #[arg(short = 'x', value_name = "FILE")]
    script: Option<PathBuf>,
}

pub fn run(args: DebugArgs) -> anyhow::Result<()> {
    let trace = crate::replay_cmd::load(&args.trace)?;
    if let Some(damage) = &trace.damage {
        eprintln!(
            "tandem: warning: {}: {damage}; the history ends at icount {}",
            args.trace.display(),
            trace.icount_end
        );
    }
    let sink = OutputSink {
        passthrough: false,
        keep: true,
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    let replayer = Replayer::new(trace, sink)
        .with_context(|| format!("cannot replay {}", args.trace.display()))?;
    let mut debugger = Debugger::new(replayer);
    let lines: Vec<String> = match &args.script {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the script {}", path.display()))?
            .lines()
            .map(str::to_string)
            .collect(),
        None => std::io::stdin()
            .lock()
            .lines()
            .collect::<Result<_, _>>()
            .context("cannot read commands from stdin")?,
    };
    let source = args
        .script
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "stdin".into());
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", debugger.position())?;
    let mut errors = 0;
    for (n, line) in lines.iter().enumerate().take(COMMANDS_MAX) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line == "quit" || line == "q" {
            break;
        }
        writeln!(out, "(tandem) {line}")?;
        match debugger.execute(line) {
            Ok(text) if text.is_empty() => {}
            Ok(text) => writeln!(out, "{text}")?,
            Err(e) => {
                errors += 1;
                writeln!(out, "error: {source} line {}: {e}", n + 1)?;
            }
        }
    }
    out.flush()?;
    if errors > 0 {
        std::process::exit(1);
    }
    Ok(())
}
