//! `tandem debug`: the replay debugger over a trace (crate tandem-replay, debugger.rs). Commands come from a
//! script (-x FILE) or stdin, one per line; each command's output is printed after a "(tandem) COMMAND" line,
//! so a transcript reads like a session. `#` starts a comment line.

use crate::output::note;
use anyhow::Context;
use std::io::Write;
use std::path::PathBuf;
use tandem_replay::debugger::Debugger;
use tandem_replay::hosts::OutputSink;
use tandem_replay::replay::Replayer;
use tandem_scenarios::input::{read_input_from, read_input_text, InputKind};

/// Exit status when a command of the script failed.
pub const EXIT_COMMAND_FAILED: i32 = 1;

/// Most commands one session runs (a script that loops on itself cannot run forever).
pub const COMMANDS_MAX: usize = 100_000;

#[derive(clap::Args, Debug)]
#[command(
    about = "Debug a recorded run: step, break, watch, and go backwards (reverse-stepi, reverse-continue, goto)",
    after_help = "Examples:\n  \
        tandem debug run.trace -x script.txt\n  \
        tandem debug run.trace --gdb 127.0.0.1:1234\n  \
        printf 'break main\\ncontinue\\nregs\\nreverse-stepi\\n' | tandem debug run.trace\n\n\
        Exit status: 0 when every command ran, 1 when a command of the script failed (each failure is printed \
        with its line), 125 for tandem's own failure (unreadable trace or script, usage error), 141 when the \
        reader of stdout went away.\n\n\
        Commands: stepi [N], reverse-stepi [N], continue, reverse-continue, goto ICOUNT, when, \
        break ADDR|SYMBOL, watch ADDR LEN, delete [N], regs, x ADDR LEN, disas [ADDR [N]], syscalls, \
        checkpoints, quit"
)]
pub struct DebugArgs {
    /// The trace to debug. Example: run.trace
    #[arg(value_name = "FILE")]
    trace: PathBuf,

    /// Read the commands from FILE instead of stdin. Example: -x script.txt
    #[arg(short = 'x', value_name = "FILE", conflicts_with = "gdb")]
    script: Option<PathBuf>,

    /// Serve the replay to gdb over TCP at ADDR instead of reading commands (port 0 picks a free port; the
    /// address is printed on stderr). Example: --gdb 127.0.0.1:1234, then in gdb: target remote 127.0.0.1:1234
    #[arg(long, value_name = "ADDR")]
    gdb: Option<String>,
}

pub fn run(args: DebugArgs) -> anyhow::Result<()> {
    let trace = crate::replay_cmd::load(&args.trace)?;
    if let Some(damage) = &trace.damage {
        note!(
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
    if let Some(address) = &args.gdb {
        return serve_gdb(debugger, address);
    }
    let text = match &args.script {
        Some(path) => read_input_text(path, InputKind::DebuggerScript)?,
        None => {
            let bytes =
                read_input_from(std::io::stdin().lock(), "stdin", InputKind::DebuggerScript)?;
            String::from_utf8(bytes).context("the commands on stdin are not UTF-8 text")?
        }
    };
    let lines: Vec<&str> = text.lines().collect();
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
        std::process::exit(EXIT_COMMAND_FAILED);
    }
    Ok(())
}

/// `--gdb ADDR`: waits for one gdb, serves it until it detaches or kills, then exits.
fn serve_gdb(debugger: Debugger, address: &str) -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind(address)
        .with_context(|| format!("cannot listen on {address} for gdb; try another port"))?;
    let local = listener
        .local_addr()
        .context("cannot read the gdb server's address")?;
    // Tests wait for this line (and read the port from it when they asked for port 0).
    note!("tandem: gdb server listening on {local}");
    note!("tandem: in gdb: target remote {local}");
    let (stream, peer) = listener
        .accept()
        .context("cannot accept gdb's connection")?;
    note!("tandem: gdb connected from {peer}");
    let _ = stream.set_nodelay(true);
    let (end, debugger) =
        tandem_replay::gdb::serve(debugger, Box::new(stream)).context("the gdb session failed")?;
    note!(
        "tandem: gdb {} at icount {}",
        match end {
            tandem_replay::gdb::SessionEnd::Detached => "detached",
            tandem_replay::gdb::SessionEnd::Killed => "killed the session",
        },
        debugger.timeline.icount()
    );
    Ok(())
}
