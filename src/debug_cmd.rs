//! `tandem debug`: the replay debugger over a trace (crate tandem-replay, debugger.rs). Commands come from a
//! script (-x FILE) or stdin, one per line; each command's output is printed after a "(tandem) COMMAND" line,
//! so a transcript reads like a session. `#` starts a comment line.
//!
//! `--gdb ADDR` serves the replay to gdb instead (tandem-replay, gdb.rs): sessions one after another, the
//! replay's position carried from one to the next; a connection that arrives while a session runs is answered
//! with an error gdb prints and closed; gdb's `kill` ends the server.

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
/// Most connections told at once that a gdb session is running (each takes a thread for at most a few seconds).
const REFUSALS_MAX: usize = 16;

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
        break ADDR|SYMBOL, watch ADDR|SYMBOL LEN, rwatch ADDR|SYMBOL LEN, awatch ADDR|SYMBOL LEN, delete [N], \
        regs, x ADDR LEN, disas [ADDR [N]], threads, thread [TID], syscalls, checkpoints, quit\n\n\
        `threads` lists every thread (tid, process, rip, state); `thread TID` selects one for `regs` and `x` \
        until the next step or continue.\n\n\
        With --gdb, gdb sessions are served one after another (a second gdb while one is connected is refused \
        with a message); gdb's `kill` ends the server."
)]
pub struct DebugArgs {
    /// The trace to debug. Example: run.trace
    #[arg(value_name = "FILE")]
    trace: PathBuf,

    /// Read the commands from FILE instead of stdin. Example: -x script.txt
    #[arg(short = 'x', value_name = "FILE", conflicts_with = "gdb")]
    script: Option<PathBuf>,

    /// Serve the replay to gdb over TCP at ADDR instead of reading commands (port 0 picks a free port; the
    /// address is printed on stderr). Anyone who can connect drives the debugger: keep it on 127.0.0.1 unless
    /// the network is trusted. Example: --gdb 127.0.0.1:1234, then in gdb: target remote 127.0.0.1:1234
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
        return serve_gdb(&mut debugger, address);
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

/// `--gdb ADDR`: serves gdb sessions one after another until one of them kills the guest (`kill`). While a
/// session runs, another connection is told so and closed at once, instead of waiting unanswered.
fn serve_gdb(debugger: &mut Debugger, address: &str) -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    let listener = std::net::TcpListener::bind(address)
        .with_context(|| format!("cannot listen on {address} for gdb; try another port"))?;
    let local = listener
        .local_addr()
        .context("cannot read the gdb server's address")?;
    // Tests wait for this line (and read the port from it when they asked for port 0).
    note!("tandem: gdb server listening on {local}");
    if !local.ip().is_loopback() {
        note!(
            "tandem: warning: {local} is not a loopback address: anyone who can reach it on the network can \
             drive the debugger and read the recorded program's memory; listen on 127.0.0.1 unless the network \
             is trusted"
        );
    }
    note!("tandem: in gdb: target remote {local}");
    // The accepting thread hands a connection to the session loop when no session runs, and refuses it
    // otherwise. `busy` is set by the thread when it hands one over and cleared by the loop when it is done.
    let busy = Arc::new(AtomicBool::new(false));
    let refusing = Arc::new(AtomicUsize::new(0));
    let (send, receive) = std::sync::mpsc::sync_channel(0);
    {
        let busy = busy.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                if busy.swap(true, Ordering::SeqCst) {
                    // At most REFUSALS_MAX at once get the message; beyond that a connection is just closed.
                    if refusing.fetch_add(1, Ordering::SeqCst) < REFUSALS_MAX {
                        let refusing = refusing.clone();
                        std::thread::spawn(move || {
                            refuse(&mut stream);
                            refusing.fetch_sub(1, Ordering::SeqCst);
                        });
                    } else {
                        refusing.fetch_sub(1, Ordering::SeqCst);
                    }
                    continue;
                }
                if send.send(stream).is_err() {
                    return;
                }
            }
        });
    }
    loop {
        let stream: std::net::TcpStream = receive
            .recv()
            .context("the gdb server stopped accepting connections")?;
        let peer = stream
            .peer_addr()
            .map_or_else(|_| "an unknown address".to_string(), |p| p.to_string());
        note!("tandem: gdb connected from {peer}");
        let end = tandem_replay::gdb::serve(debugger, stream);
        let icount = debugger.timeline.icount();
        busy.store(false, Ordering::SeqCst);
        use tandem_replay::gdb::SessionEnd;
        match end {
            Ok(SessionEnd::Killed) => {
                note!("tandem: gdb killed the session at icount {icount}");
                return Ok(());
            }
            Ok(SessionEnd::Detached) => note!("tandem: gdb detached at icount {icount}"),
            Ok(SessionEnd::Closed) => {
                note!("tandem: gdb closed the connection at icount {icount}")
            }
            Ok(SessionEnd::GuestEnded) => note!(
                "tandem: gdb saw the guest end at icount {icount}; a new session starts where it ended"
            ),
            Err(e) => note!("tandem: the gdb session from {peer} failed: {e}"),
        }
        note!("tandem: waiting for the next gdb on {local} (gdb's `kill` ends the server)");
    }
}

/// Tells a second gdb that a session is running: its first packet is answered with an error reply, which gdb
/// prints, and the connection is closed (a bounded wait for that packet: a client that sends nothing is closed
/// after REFUSE_TIMEOUT).
fn refuse(stream: &mut std::net::TcpStream) {
    const REFUSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "an unknown address".to_string(), |p| p.to_string());
    note!("tandem: refused gdb from {peer}: another gdb session is running (one at a time)");
    let _ = stream.set_read_timeout(Some(REFUSE_TIMEOUT));
    // Up to the end of the first packet: its `#` and two checksum digits.
    let mut seen_hash = None;
    let mut byte = [0u8];
    for n in 0..64 * 1024 {
        if !matches!(std::io::Read::read(stream, &mut byte), Ok(1)) {
            break;
        }
        match seen_hash {
            None if byte[0] == b'#' => seen_hash = Some(n),
            Some(at) if n == at + 2 => break,
            _ => {}
        }
    }
    let body =
        b"E.tandem serves one gdb at a time and another session is running; try again when it ends";
    let sum = body.iter().fold(0u8, |s, &b| s.wrapping_add(b));
    let mut packet = b"+$".to_vec();
    packet.extend_from_slice(body);
    packet.extend_from_slice(format!("#{sum:02x}").as_bytes());
    let _ = stream.write_all(&packet);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    // Let gdb read the reply before the connection goes: drain what it sends until it closes (bounded).
    let mut sink = [0u8; 1024];
    for _ in 0..64 {
        if !matches!(std::io::Read::read(stream, &mut sink), Ok(n) if n > 0) {
            break;
        }
    }
}
