//! End-to-end test of `tandem debug --gdb`: Debian's gdb, in batch mode, drives the replay of a recorded
//! corpus program (corpus/src/rewind.c, built with symbols) through the GDB remote protocol, and the test
//! checks gdb's own output: the breakpoint stop, registers, memory, a global, a watchpoint, stepping and
//! reverse execution back to an earlier breakpoint hit, the edges of history and the monitor commands.
//!
//! The expected values come from elsewhere than the server: addresses and the icount of the first hit from
//! the command-line debugger (`tandem debug -x`), the global's values from the program's source. Every wait is
//! bounded: the server's startup line, gdb's run and the server's exit each have a deadline.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Bounds on the waits (generous: the machine is shared and the tests run in parallel).
const SERVER_START_TIMEOUT: Duration = Duration::from_secs(60);
const GDB_RUN_TIMEOUT: Duration = Duration::from_secs(120);
const SERVER_EXIT_TIMEOUT: Duration = Duration::from_secs(30);

fn record_rewind(trace: &Path) {
    let out = record_trace(trace, &[], &corpus_bin("rewind-musl"), &[], b"hello");
    assert!(
        out.status.success(),
        "tandem record failed: {}",
        text(&out.stderr)
    );
}

/// The command-line debugger's answers: (address of `step`, address of `main`, icount of the first stop in
/// `step`).
fn reference_from_cli(trace: &Path) -> (u64, u64, u64) {
    let script = trace.with_file_name("reference.txt");
    std::fs::write(&script, "break step\ncontinue\nwhen\ndelete\nbreak main\n").unwrap();
    let out = Command::new(tandem())
        .arg("debug")
        .arg(trace)
        .arg("-x")
        .arg(&script)
        .current_dir(repo())
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let transcript = text(&out.stdout);
    assert!(
        out.status.success(),
        "tandem debug -x failed:\n{transcript}"
    );
    let address_of = |name: &str| -> u64 {
        let line = transcript
            .lines()
            .find(|l| l.starts_with("breakpoint ") && l.ends_with(&format!("<{name}>")))
            .unwrap_or_else(|| panic!("no breakpoint on {name} in\n{transcript}"));
        let hex = line.split_whitespace().nth(3).unwrap();
        u64::from_str_radix(hex.trim_start_matches("0x"), 16).unwrap()
    };
    let when = transcript
        .lines()
        .find_map(|l| l.strip_prefix("icount ").and_then(|n| n.parse().ok()))
        .unwrap_or_else(|| panic!("no `when` answer in\n{transcript}"));
    (address_of("step"), address_of("main"), when)
}

/// A running `tandem debug TRACE --gdb 127.0.0.1:0`; killed on drop if the test fails before it exits.
struct Server {
    child: Option<Child>,
    address: String,
    stderr_reader: Option<std::thread::JoinHandle<String>>,
}

impl Server {
    /// Starts the server on a port the kernel picks and waits (bounded) for the startup line naming it.
    fn start(trace: &Path) -> Server {
        let mut child = Command::new(tandem())
            .arg("debug")
            .arg(trace)
            .args(["--gdb", "127.0.0.1:0"])
            .current_dir(repo())
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (lines_send, lines_receive) = mpsc::channel::<String>();
        let stderr_reader = std::thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                all.push_str(&line);
                all.push('\n');
                let _ = lines_send.send(line);
            }
            all
        });
        let mut server = Server {
            child: Some(child),
            address: String::new(),
            stderr_reader: Some(stderr_reader),
        };
        server.address = loop {
            let line = lines_receive
                .recv_timeout(SERVER_START_TIMEOUT)
                .expect("the gdb server did not print its address in time");
            if let Some(a) = line.strip_prefix("tandem: gdb server listening on ") {
                break a.trim().to_string();
            }
        };
        assert!(
            server.address.starts_with("127.0.0.1:") && !server.address.ends_with(":0"),
            "the server must print the real port, not {}",
            server.address
        );
        server
    }

    /// Waits (bounded) for the server to exit by itself; its status and stderr.
    fn wait(mut self) -> (std::process::ExitStatus, String) {
        let child = self.child.take().unwrap();
        let out = output_within(child, SERVER_EXIT_TIMEOUT, "the gdb server");
        let stderr = self.stderr_reader.take().unwrap().join().unwrap();
        (out.status, stderr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs gdb in batch mode against `address` with rewind-musl's symbols; its stdout and stderr.
fn run_gdb(address: &str, commands: &[&str]) -> String {
    let mut gdb = Command::new("gdb");
    gdb.args(["-batch", "-nx", "-iex", "set debuginfod enabled off"])
        .arg("-ex")
        .arg(format!("target remote {address}"));
    for c in commands {
        gdb.arg("-ex").arg(c);
    }
    let gdb = gdb
        .arg(corpus_bin("rewind-musl"))
        .current_dir(repo())
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start gdb (Debian package gdb)");
    let out = output_within(gdb, GDB_RUN_TIMEOUT, "gdb");
    text(&out.stdout) + &text(&out.stderr)
}

/// Waits for `child` with a deadline; kills it when the deadline passes.
fn output_within(child: Child, timeout: Duration, what: &str) -> Output {
    let pid = child.id();
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = send.send(child.wait_with_output());
    });
    match receive.recv_timeout(timeout) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("{what} did not finish within {timeout:?}; killed it");
        }
    }
}

/// The 16-digit hexadecimal words of gdb's `x/Ngx` lines ("0x7fff...:\t0x...\t0x...").
fn examined_words(output: &str) -> Vec<u64> {
    output
        .lines()
        .filter(|l| l.starts_with("0x") && l.contains(":\t"))
        .flat_map(|l| l.split_once(":\t").unwrap().1.split_whitespace())
        .filter_map(|w| w.strip_prefix("0x"))
        .filter(|w| w.len() == 16)
        .map(|w| u64::from_str_radix(w, 16).unwrap())
        .collect()
}

#[test]
fn gdb_breaks_examines_watches_and_reverses() {
    let dir = std::env::temp_dir().join(format!("tandem-gdb-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join("rewind.trace");
    record_rewind(&trace);
    let (step_address, main_address, first_hit_icount) = reference_from_cli(&trace);

    let server = Server::start(&trace);
    let commands = [
        "break step",
        "continue",
        "info registers rip",
        "x/4gx $rsp",
        "print counter",
        "continue",
        "print counter",
        "reverse-stepi",
        "info registers rip",
        "reverse-continue",
        "print counter",
        "monitor when",
        "info registers fs_base",
        "stepi",
        "monitor when",
        "reverse-stepi",
        "monitor when",
        "watch counter",
        "continue",
        "print counter",
        "delete",
        "continue",
        "monitor when",
        "monitor seek 3",
        "maintenance flush register-cache",
        "reverse-continue",
        "monitor when",
        "monitor bogus",
    ];
    let output = run_gdb(&server.address, &commands);
    let context = format!("gdb's output:\n{output}");

    // The breakpoint stops name the function: the first two hits, reverse-continue's return to the first, and
    // the reverse-stepi that lands on the breakpoint again after a stepi (gdb reports a step that stops at a
    // breakpoint's address as a hit).
    let hits: Vec<&str> = output
        .lines()
        .filter(|l| l.starts_with("Breakpoint 1, step ("))
        .collect();
    assert_eq!(hits.len(), 4, "{context}");
    assert!(
        hits[0].contains("x=1") || hits[0].contains("@entry=1"),
        "{context}"
    );
    assert!(
        hits[1].contains("@entry=2") || hits[1].contains("x=2"),
        "{context}"
    );
    assert_eq!(
        hits[0], hits[2],
        "reverse-continue returns to the first hit; {context}"
    );
    assert_eq!(hits[0], hits[3], "{context}");

    // rip at the stop is step's address (from the ELF symbol table, through `tandem debug`).
    let rips: Vec<&str> = output.lines().filter(|l| l.starts_with("rip ")).collect();
    assert_eq!(rips.len(), 2, "{context}");
    assert!(
        rips[0].contains(&format!("{step_address:#x}")) && rips[0].contains("<step>"),
        "{context}"
    );
    // After reverse-stepi from step's entry, rip is back at main's call.
    assert!(rips[1].contains("<main+"), "{context}");

    // x/4gx $rsp: four words, the first the return address into main.
    let words = examined_words(&output);
    assert_eq!(words.len(), 4, "{context}");
    assert!(
        (main_address..main_address + 0x100).contains(&words[0]),
        "the word at $rsp ({:#x}) must return into main ({main_address:#x}); {context}",
        words[0]
    );

    // counter: 0 at the first hit, 1 at the second, 0 again after reverse-continue, 1 after the write the
    // watchpoint catches.
    for (n, value) in [(1, 0), (2, 1), (3, 0), (4, 1)] {
        assert!(
            output.lines().any(|l| l == format!("${n} = {value}")),
            "expected ${n} = {value}; {context}"
        );
    }
    assert!(
        output.contains("Hardware watchpoint 2: counter"),
        "{context}"
    );
    assert!(
        output.contains("Old value = 0") && output.contains("New value = 1"),
        "{context}"
    );

    // fs_base is served (musl sets the thread pointer before main).
    let fs_base = output
        .lines()
        .find(|l| l.starts_with("fs_base "))
        .unwrap_or_else(|| panic!("no fs_base; {context}"));
    assert!(!fs_base.contains(" 0x0 "), "{context}");

    // monitor when: at the first hit (as the command-line debugger counts it), one stepi later, back, the end
    // of history, and the start after reverse-continue from icount 3.
    let whens: Vec<u64> = output
        .lines()
        .filter_map(|l| l.strip_prefix("icount "))
        .filter_map(|n| n.parse().ok())
        .collect();
    assert_eq!(whens.len(), 5, "{context}");
    assert_eq!(
        &whens[..3],
        &[first_hit_icount, first_hit_icount + 1, first_hit_icount],
        "{context}"
    );
    assert!(whens[3] > first_hit_icount, "{context}");
    assert_eq!(whens[4], 0, "{context}");
    // Both edges of history are reported as such (replaylog:end, then replaylog:begin).
    // The end is the program's last instruction (in _Exit), the start its entry point (_start).
    let edges: Vec<&str> = output
        .lines()
        .skip_while(|l| !l.starts_with("$4 = "))
        .filter(|l| l.starts_with("0x"))
        .collect();
    assert_eq!(
        output.matches("No more reverse-execution history.").count(),
        2,
        "{context}"
    );
    assert!(edges.len() >= 2, "{context}");
    assert!(edges[0].ends_with(" in _Exit ()"), "{context}");
    assert!(edges[1].ends_with(" in _start ()"), "{context}");
    assert!(
        output.contains("icount 3 rip "),
        "monitor seek shows the position; {context}"
    );
    assert!(output.contains("unknown monitor command"), "{context}");

    // gdb detached when it quit; the server waits for the next gdb, which starts where the first left the
    // replay (icount 0, after the last reverse-continue) and ends the server with `kill`.
    let output = run_gdb(&server.address, &["monitor when", "kill"]);
    assert!(output.contains("icount 0"), "gdb's output:\n{output}");
    let (status, server_stderr) = server.wait();
    assert!(status.success(), "server: {status:?}\n{server_stderr}");
    assert!(
        server_stderr.contains("tandem: gdb detached at icount 0")
            && server_stderr.contains("tandem: waiting for the next gdb")
            && server_stderr.contains("tandem: gdb killed the session"),
        "{server_stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `kill` ends the session: the server says so and exits successfully; a register write is refused (a replay
/// is read-only) without ending it.
#[test]
fn gdb_kill_ends_the_server() {
    let dir = std::env::temp_dir().join(format!("tandem-gdb-kill-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join("rewind.trace");
    record_rewind(&trace);
    let server = Server::start(&trace);
    let output = run_gdb(
        &server.address,
        &["set var $rax = 5", "stepi", "monitor when", "kill"],
    );
    assert!(
        output.contains("Could not write registers"),
        "gdb's output:\n{output}"
    );
    assert!(output.contains("icount 1"), "gdb's output:\n{output}");
    assert!(
        output.contains("Kill the program being debugged?"),
        "gdb's output:\n{output}"
    );
    let (status, server_stderr) = server.wait();
    assert!(status.success(), "server: {status:?}\n{server_stderr}");
    assert!(
        server_stderr.contains("tandem: gdb killed the session"),
        "{server_stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// An address that cannot be bound is a clear error, not a hang or a panic.
#[test]
fn unusable_address_is_an_error() {
    let dir = std::env::temp_dir().join(format!("tandem-gdb-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join("rewind.trace");
    record_rewind(&trace);
    let child = Command::new(tandem())
        .arg("debug")
        .arg(&trace)
        .args(["--gdb", "not-an-address"])
        .current_dir(repo())
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = output_within(child, SERVER_START_TIMEOUT, "tandem debug --gdb");
    let mut stderr = String::new();
    out.stderr.as_slice().read_to_string(&mut stderr).unwrap();
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot listen on not-an-address"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A minimal GDB remote-protocol client: sends packets, reads replies (acknowledging each, skipping acks).
struct RawClient {
    stream: std::net::TcpStream,
}

impl RawClient {
    fn connect(address: &str) -> RawClient {
        let stream = std::net::TcpStream::connect(address).unwrap();
        stream.set_read_timeout(Some(GDB_RUN_TIMEOUT)).unwrap();
        RawClient { stream }
    }

    fn send(&mut self, body: &str) {
        use std::io::Write;
        let sum = body.bytes().fold(0u8, |s, b| s.wrapping_add(b));
        write!(self.stream, "${body}#{sum:02x}").unwrap();
    }

    fn write_byte(&mut self, byte: u8) {
        use std::io::Write;
        self.stream.write_all(&[byte]).unwrap();
    }

    /// The next reply packet's body ('+' acks skipped; the reply acknowledged).
    fn reply(&mut self) -> String {
        use std::io::Write;
        let mut byte = [0u8];
        loop {
            self.stream
                .read_exact(&mut byte)
                .expect("the server did not answer in time");
            if byte[0] == b'$' {
                break;
            }
        }
        let mut body = Vec::new();
        loop {
            self.stream.read_exact(&mut byte).unwrap();
            if byte[0] == b'#' {
                break;
            }
            body.push(byte[0]);
        }
        let mut checksum = [0u8; 2];
        self.stream.read_exact(&mut checksum).unwrap();
        self.stream.write_all(b"+").unwrap();
        String::from_utf8(body).unwrap()
    }

    /// `monitor CMD` (qRcmd): the console output, decoded from its O packets.
    fn monitor(&mut self, cmd: &str) -> String {
        let hex: String = cmd.bytes().map(|b| format!("{b:02x}")).collect();
        self.send(&format!("qRcmd,{hex}"));
        let mut out = String::new();
        loop {
            let r = self.reply();
            if r == "OK" {
                return out;
            }
            let hex = r
                .strip_prefix('O')
                .unwrap_or_else(|| panic!("not console output: {r:?}"));
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            out.push_str(&String::from_utf8_lossy(&bytes));
        }
    }

    /// rip from the `g` packet (gdb's amd64 order: 16 GPRs then rip, each 8 bytes little-endian in hex).
    fn rip(&mut self) -> u64 {
        self.send("g");
        // Run-length encoding: "X*n" repeats X (n - 29) more times (the GDB remote protocol's "Debugging
        // Protocol Details").
        let mut regs = Vec::new();
        let mut bytes = self.reply().into_bytes().into_iter();
        while let Some(b) = bytes.next() {
            if b == b'*' {
                let repeat = bytes.next().unwrap() - 29;
                let last = *regs.last().unwrap();
                regs.extend(std::iter::repeat_n(last, repeat as usize));
            } else {
                regs.push(b);
            }
        }
        let regs = String::from_utf8(regs).unwrap();
        let hex = &regs[16 * 16..17 * 16];
        let bytes: Vec<u8> = (0..8)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        u64::from_le_bytes(bytes.try_into().unwrap())
    }
}

fn icount_of(monitor_when: &str) -> u64 {
    monitor_when
        .trim()
        .strip_prefix("icount ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a `monitor when` answer: {monitor_when:?}"))
}

/// gdb's interrupt byte (what Ctrl-C sends) stops a long `continue` with SIGINT at an exact icount: the
/// registers read there are the recorded run's at that icount, and a reverse step goes one instruction back.
#[test]
fn interrupt_stops_a_long_continue() {
    let dir = std::env::temp_dir().join(format!("tandem-gdb-interrupt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join("sha.trace");
    let out = record_trace(&trace, &[], &corpus_bin("sha256-glibc"), &[], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let server = Server::start(&trace);
    let mut client = RawClient::connect(&server.address);
    client.send("?");
    client.reply();
    // No breakpoint: the continue would run the whole 70-million-instruction history.
    client.send("c");
    client.write_byte(0x03);
    let stop = client.reply();
    assert!(
        stop.starts_with("T02") || stop.starts_with("S02"),
        "a SIGINT stop, not {stop:?}"
    );
    let at = icount_of(&client.monitor("when"));
    // The interrupt byte arrived with the resume: the continue sees it at its first poll, at the first block
    // boundary after POLL_INTERVAL_INSNS instructions.
    let poll = tandem_replay::debugger::POLL_INTERVAL_INSNS;
    assert!(
        (poll..poll + 1000).contains(&at),
        "stopped at the first poll, not at {at}"
    );
    let rip_at = client.rip();
    // Reverse step (bs): one instruction back; then forward again to the same place.
    client.send("bs");
    let step_stop = client.reply();
    assert!(
        step_stop.starts_with("T05") || step_stop.starts_with("S05"),
        "{step_stop}"
    );
    assert_eq!(icount_of(&client.monitor("when")), at - 1);
    client.send("s");
    client.reply();
    assert_eq!(icount_of(&client.monitor("when")), at);
    assert_eq!(client.rip(), rip_at);
    // The command-line debugger puts the recorded run at that icount at the same rip.
    let script = dir.join("goto.txt");
    std::fs::write(&script, format!("goto {at}\n")).unwrap();
    let cli = Command::new(tandem())
        .arg("debug")
        .arg(&trace)
        .arg("-x")
        .arg(&script)
        .current_dir(repo())
        .env_clear()
        .output()
        .unwrap();
    let transcript = text(&cli.stdout);
    assert!(
        transcript.contains(&format!("icount {at} rip {rip_at:#x}")),
        "gdb saw rip {rip_at:#x} at icount {at}; the debugger says:\n{transcript}"
    );
    client.send("vKill;1");
    assert_eq!(client.reply(), "OK");
    let (status, server_stderr) = server.wait();
    assert!(status.success(), "{server_stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
