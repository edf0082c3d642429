//! End-to-end test of `tandem debug --gdb`: Debian's gdb, in batch mode, drives the replay of a recorded
//! corpus program (corpus/src/rewind.c, built with symbols) through the GDB remote protocol, and the test
//! checks gdb's own output: the breakpoint stop, registers, memory, a global, a watchpoint, stepping and
//! reverse execution back to an earlier breakpoint hit, the edges of history and the monitor commands; and a
//! dynamically linked program (corpus/bin/hello-dyn), stopped in a libc function with native gdb's backtrace.
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
        Server::start_at(trace, "127.0.0.1:0")
    }

    /// Starts the server listening on `listen` (port 0); `address` is where a client on this host connects.
    fn start_at(trace: &Path, listen: &str) -> Server {
        let mut child = Command::new(tandem())
            .arg("debug")
            .arg(trace)
            .args(["--gdb", listen])
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
        let host = listen.rsplit_once(':').unwrap().0;
        assert!(
            server.address.starts_with(&format!("{host}:")) && !server.address.ends_with(":0"),
            "the server must print the real port, not {}",
            server.address
        );
        if let Some(port) = server.address.strip_prefix("0.0.0.0:") {
            server.address = format!("127.0.0.1:{port}");
        }
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
    run_gdb_on(address, "rewind-musl", commands)
}

/// Runs gdb in batch mode against `address` with the symbols of the corpus program `program`.
fn run_gdb_on(address: &str, program: &str, commands: &[&str]) -> String {
    let mut gdb = Command::new("gdb");
    gdb.args(["-batch", "-nx", "-iex", "set debuginfod enabled off"])
        .arg("-ex")
        .arg(format!("target remote {address}"));
    for c in commands {
        gdb.arg("-ex").arg(c);
    }
    gdb_output(gdb.arg(corpus_bin(program)))
}

/// The oracle: gdb running the corpus program natively (`run ARGS` first, then `commands`).
fn run_native_gdb(program: &str, args: &[&str], commands: &[&str]) -> String {
    let mut gdb = Command::new("gdb");
    gdb.args(["-batch", "-nx", "-iex", "set debuginfod enabled off"])
        .arg("-ex")
        .arg(format!("run {}", args.join(" ")));
    for c in commands {
        gdb.arg("-ex").arg(c);
    }
    gdb_output(gdb.arg(corpus_bin(program)))
}

fn gdb_output(gdb: &mut Command) -> String {
    let gdb = gdb
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
        stream.set_nodelay(true).unwrap();
        RawClient { stream }
    }

    fn send(&mut self, body: &str) {
        use std::io::Write;
        let sum = body.bytes().fold(0u8, |s, b| s.wrapping_add(b));
        // One write: several small ones would wait on Nagle's algorithm and the server's delayed ACK.
        self.stream
            .write_all(format!("${body}#{sum:02x}").as_bytes())
            .unwrap();
    }

    /// The next byte the server sends.
    fn next_byte(&mut self) -> u8 {
        let mut byte = [0u8];
        self.stream
            .read_exact(&mut byte)
            .expect("the server did not answer in time");
        byte[0]
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

/// A scratch directory of this test process.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tandem-gdb-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `tandem: guest killed by SIGSEGV (signal 11) at rip 0x401219, icount 1997: ...` from a recording's stderr:
/// (signal name, rip, icount).
fn recorded_death(stderr: &str) -> (String, u64, u64) {
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("tandem: guest killed by "))
        .unwrap_or_else(|| panic!("no death in the recording's stderr:\n{stderr}"));
    let name = line.split_whitespace().next().unwrap().to_string();
    let rip = line
        .split("at rip 0x")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap();
    let icount = line
        .split(", icount ")
        .nth(1)
        .unwrap()
        .split(':')
        .next()
        .unwrap();
    (
        name,
        u64::from_str_radix(rip, 16).unwrap(),
        icount.parse().unwrap(),
    )
}

/// The values of gdb's `print` commands, in order (the text after "$N = ").
fn printed(output: &str) -> Vec<String> {
    output
        .lines()
        .filter(|l| l.starts_with('$'))
        .filter_map(|l| l.split_once(" = ").map(|(_, v)| v.to_string()))
        .collect()
}

/// The value of `info registers rip`.
fn rip_of(output: &str) -> Vec<u64> {
    output
        .lines()
        .filter(|l| l.starts_with("rip "))
        .map(|l| {
            let hex = l.split_whitespace().nth(1).unwrap();
            u64::from_str_radix(hex.trim_start_matches("0x"), 16).unwrap()
        })
        .collect()
}

fn whens(output: &str) -> Vec<u64> {
    output
        .lines()
        .filter_map(|l| l.strip_prefix("icount "))
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// At the end of a recorded crash gdb shows the fatal signal as it does for the same program run natively
/// (the same stop line, the same rip, the same siginfo), not "No more reverse-execution history"; going back
/// one instruction and forwards again stops on the signal again; continuing with it (gdb passes SIGSEGV and
/// the like) reports the death as native gdb does, which ends the session.
#[test]
fn gdb_shows_the_fatal_signal_of_a_crash_as_native_gdb_does() {
    let dir = scratch("crash");
    for how in ["segv", "ill", "fpe", "abort"] {
        let trace = dir.join(format!("{how}.trace"));
        let out = record_trace(&trace, &[], &corpus_bin("crash-musl"), &[how], b"");
        let (signal, rip, icount) = recorded_death(&text(&out.stderr));
        let queries = [
            "p $_siginfo.si_signo",
            "p $_siginfo.si_code",
            "p $_siginfo._sifields._sigfault.si_addr",
            "info registers rip",
        ];
        let native = run_native_gdb(
            "crash-musl",
            &[how],
            &[&queries[..], &["continue"]].concat(),
        );
        let server = Server::start(&trace);
        let commands = [
            &["continue"][..],
            &queries,
            &[
                "monitor when",
                "reverse-stepi",
                "monitor when",
                "continue",
                "monitor when",
                "continue",
            ],
        ]
        .concat();
        let output = run_gdb_on(&server.address, "crash-musl", &commands);
        let context = format!("{how}: tandem's gdb:\n{output}\nnative gdb:\n{native}");
        let received = |o: &str| -> Vec<String> {
            o.lines()
                .filter(|l| l.starts_with("Program received signal "))
                .map(str::to_string)
                .collect()
        };
        let native_received = received(&native);
        assert_eq!(native_received.len(), 1, "{context}");
        assert!(native_received[0].contains(&signal), "{context}");
        assert_eq!(
            received(&output),
            vec![native_received[0].clone(); 2],
            "{context}"
        );
        let terminated = |o: &str| {
            o.lines()
                .find(|l| l.starts_with("Program terminated"))
                .map(str::to_string)
        };
        assert!(terminated(&native).is_some(), "{context}");
        assert_eq!(terminated(&output), terminated(&native), "{context}");
        assert!(
            !output.contains("No more reverse-execution history"),
            "{context}"
        );
        // si_signo and si_code (abort's tkill is SI_TKILL natively; tandem's guest kernel reports SI_USER),
        // si_addr for the faults, rip.
        let (ours, theirs) = (printed(&output), printed(&native));
        assert_eq!(ours[0], theirs[0], "si_signo; {context}");
        if how != "abort" {
            assert_eq!(ours[1..3], theirs[1..3], "si_code, si_addr; {context}");
        }
        assert_eq!(rip_of(&output), vec![rip], "{context}");
        assert_eq!(rip_of(&native), vec![rip], "{context}");
        // At the signal, one instruction back, at the signal again.
        assert_eq!(
            whens(&output),
            vec![icount, icount - 1, icount],
            "{context}"
        );
        let (status, server_stderr) = server_after_gdb_ended(server);
        assert!(
            server_stderr.contains(&format!("tandem: gdb saw the guest end at icount {icount}")),
            "{status:?} {server_stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// After a session that ended with the guest's death, the server waits for the next gdb; one more gdb kills
/// it, and its status and stderr are returned.
fn server_after_gdb_ended(server: Server) -> (std::process::ExitStatus, String) {
    let mut client = RawClient::connect(&server.address);
    client.send("vKill;1");
    assert_eq!(client.reply(), "OK");
    server.wait()
}

/// An uncorrectable memory error that kills the guest late (its SIGBUS handler gives up on memory outside its
/// table, the touch is retried, the default action kills): gdb shows the SIGBUS with the memory error's
/// siginfo (BUS_MCEERR_AR, the touched address, si_addr_lsb 12 for a whole page), as Linux reports it.
#[test]
fn gdb_shows_the_sigbus_of_a_late_killing_memory_error() {
    let dir = scratch("sigbus");
    let trace = dir.join("sigbus.trace");
    let out = record_trace(
        &trace,
        &["--faults", "mem.ue:icount=5000,addr=0x7fffffffe000"],
        &corpus_bin("sigbus-musl"),
        &["3"],
        b"",
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(128 + 7), "{stderr}");
    let (signal, rip, icount) = recorded_death(&stderr);
    assert_eq!(signal, "SIGBUS");
    let addr = stderr.split("poisoned frame ").nth(1).unwrap();
    let addr = addr.split(" at ").nth(1).unwrap();
    let addr = addr.split_whitespace().next().unwrap();
    let server = Server::start(&trace);
    let output = run_gdb_on(
        &server.address,
        "sigbus-musl",
        &[
            "continue",
            "p $_siginfo.si_signo",
            "p $_siginfo.si_code",
            "p $_siginfo._sifields._sigfault.si_addr",
            "p $_siginfo._sifields._sigfault._addr_lsb",
            "info registers rip",
            "monitor when",
        ],
    );
    let context = format!("gdb's output:\n{output}\nrecording:\n{stderr}");
    assert!(
        output.contains("Program received signal SIGBUS, Bus error."),
        "{context}"
    );
    let values = printed(&output);
    assert_eq!(values[0], "7", "{context}");
    assert_eq!(values[1], "4", "BUS_MCEERR_AR; {context}");
    assert!(values[2].ends_with(addr), "si_addr {addr}; {context}");
    assert_eq!(values[3], "12", "{context}");
    assert_eq!(rip_of(&output), vec![rip], "{context}");
    assert_eq!(whens(&output), vec![icount], "{context}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The overflow program, as a user would debug it: from the crash, `watch -l counter` and reverse-continue
/// stop at the overflowing store in fill, with counter's value from before it (gdb prints Old value = the
/// crash's, New value = 3), then at bump's last increment; the command-line debugger's `watch` on the same
/// trace names the same instructions at the same icounts. Read and access watchpoints agree the same way,
/// forwards and backwards.
#[test]
fn reverse_watchpoints_name_the_overflowing_store_in_gdb_and_the_debugger() {
    let dir = scratch("overflow");
    for libc in ["musl", "glibc"] {
        let program = format!("overflow-{libc}");
        let trace = dir.join(format!("{program}.trace"));
        let out = record_trace(&trace, &[], &corpus_bin(&program), &[], b"");
        let (signal, _, end) = recorded_death(&text(&out.stderr));
        assert_eq!(signal, "SIGSEGV");
        let cli = debug_transcript(
            &trace,
            "continue\nwatch counter 8\nreverse-continue\nreverse-continue\ndelete\n\
             rwatch counter 8\nreverse-continue\ncontinue\ndelete\nawatch counter 8\nreverse-continue\n\
             reverse-continue\n",
        );
        let positions = cli_positions(&cli);
        let server = Server::start(&trace);
        let output = run_gdb_on(
            &server.address,
            &program,
            &[
                "continue",
                "watch -l counter",
                "reverse-continue",
                "info registers rip",
                "monitor when",
                "reverse-continue",
                "info registers rip",
                "monitor when",
                "delete",
                "rwatch -l counter",
                "reverse-continue",
                "info registers rip",
                "monitor when",
                "continue",
                "info registers rip",
                "monitor when",
                "delete",
                "awatch -l counter",
                "reverse-continue",
                "info registers rip",
                "monitor when",
                "reverse-continue",
                "info registers rip",
                "monitor when",
                "kill",
            ],
        );
        let context = format!("{program}: gdb:\n{output}\ntandem debug:\n{cli}");
        // The overflowing store: Old value = 0x4000004 (the crash's), New value = 3, in fill.
        let fill = output.find("Old value = 67108868").expect(&context);
        let after = &output[fill..];
        assert!(
            after.starts_with("Old value = 67108868\nNew value = 3\n"),
            "{context}"
        );
        assert!(
            after.lines().nth(2).unwrap().starts_with("fill ("),
            "{context}"
        );
        assert!(
            output.contains("Old value = 3\nNew value = 2\n"),
            "bump's increment; {context}"
        );
        assert_eq!(
            output.matches("Program received signal SIGSEGV").count(),
            1,
            "{context}"
        );
        // gdb and tandem debug stop at the same instruction and icount, every time.
        let gdb_positions: Vec<(u64, u64)> =
            whens(&output).into_iter().zip(rip_of(&output)).collect();
        assert_eq!(gdb_positions.len(), 6, "{context}");
        assert_eq!(gdb_positions, positions, "{context}");
        assert!(gdb_positions[0].0 < end, "{context}");
        drop(server);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `tandem debug TRACE -x SCRIPT`'s transcript.
fn debug_transcript(trace: &Path, script: &str) -> String {
    let path = trace.with_extension("script");
    std::fs::write(&path, script).unwrap();
    let out = Command::new(tandem())
        .arg("debug")
        .arg(trace)
        .arg("-x")
        .arg(&path)
        .current_dir(repo())
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let transcript = text(&out.stdout);
    assert!(out.status.success(), "tandem debug failed:\n{transcript}");
    transcript
}

/// (icount, rip) of each watchpoint stop in a `tandem debug` transcript.
fn cli_positions(transcript: &str) -> Vec<(u64, u64)> {
    transcript
        .lines()
        .filter(|l| l.contains("watchpoint ") && l.contains(" rip 0x"))
        .map(|l| {
            let rest = &l[l.rfind("icount ").unwrap() + 7..];
            let mut words = rest.split_whitespace();
            let icount = words.next().unwrap().parse().unwrap();
            assert_eq!(words.next(), Some("rip"));
            let rip = words.next().unwrap().trim_end_matches(':');
            (
                icount,
                u64::from_str_radix(rip.trim_start_matches("0x"), 16).unwrap(),
            )
        })
        .collect()
}

/// A watchpoint longer than 64 bytes is watched whole: a change at byte 64 of rewind's 256-byte `line` (read
/// from stdin after 64 NUL bytes) stops gdb's `watch line` after the read() that made it.
#[test]
fn a_long_watchpoint_is_watched_whole() {
    let dir = scratch("long-watch");
    let trace = dir.join("rewind.trace");
    let mut stdin = vec![0u8; 64];
    stdin.extend_from_slice(b"hello");
    let out = record_trace(&trace, &[], &corpus_bin("rewind-musl"), &[], &stdin);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let server = Server::start(&trace);
    let output = run_gdb(
        &server.address,
        &["watch line", "continue", "x/i $pc", "p line[64]", "kill"],
    );
    assert!(output.contains("Hardware watchpoint 1: line"), "{output}");
    assert!(
        output.contains("New value = '\\000' <repeats 64 times>, \"hello\""),
        "{output}"
    );
    assert!(output.contains("$1 = 104 'h'"), "{output}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Malformed and unexpected packets are answered and the session goes on: a bad checksum gets `-` (send it
/// again), bytes outside a packet are skipped, `m-1,10`, `vCont;t`, `vCont;C09` (a signal the recorded run
/// did not receive here), an over-long packet, a watchpoint longer than the server watches and a NAK each get
/// an answer, and afterwards the server still answers `?`, `g` and `monitor when`.
#[test]
fn malformed_packets_are_answered_and_the_session_goes_on() {
    use std::io::Write;
    let dir = scratch("malformed");
    let trace = dir.join("rewind.trace");
    record_rewind(&trace);
    let server = Server::start(&trace);
    let mut client = RawClient::connect(&server.address);
    client.send("qSupported:multiprocess+;swbreak+");
    let supported = client.reply();
    assert!(supported.contains("qXfer:siginfo:read+"), "{supported}");
    // A bad checksum: `-`, nothing else.
    client.stream.write_all(b"$g#00").unwrap();
    assert_eq!(client.next_byte(), b'-');
    // Junk outside packets is skipped.
    client.stream.write_all(b"xyz\r\n").unwrap();
    for (packet, expected) in [
        ("m-1,10", "E."),
        ("m,10", "E."),
        ("vCont;t", "E.vCont;t"),
        ("vCont;C09", "E.a replay cannot deliver"),
        ("C1e", "E.a replay cannot deliver"),
        ("vCont;r1000,2000", "E."),
        ("Z2,7fffffffe000,200000", "E16"),
        ("Z2,11223344556677889,8", "E."),
        ("Hg-1", "OK"),
        ("qXfer:siginfo:read::0,80", "E01"),
        ("vMustReplyEmpty", ""),
        ("G00", "E01"),
        ("M401000,1:00", "E01"),
        ("m401000,4", "f30f1efa"),
    ] {
        client.send(packet);
        let reply = client.reply();
        if expected == "f30f1efa" {
            assert_eq!(reply.len(), 8, "{packet}: {reply}");
        } else if expected.is_empty() {
            assert_eq!(reply, "", "{packet}");
        } else {
            assert!(reply.starts_with(expected), "{packet}: {reply}");
        }
    }
    // An over-long packet.
    client.send(&"q".repeat(5000));
    assert!(client.reply().starts_with("E.packet too long"));
    // A NAK: the last reply again.
    client.send("?");
    let status = client.reply();
    assert!(status.starts_with("T05thread:"), "{status}");
    client.write_byte(b'-');
    assert_eq!(client.reply(), status);
    assert_ne!(client.rip(), 0, "the g packet");
    client.send("qXfer:features:read:other.xml:0,100");
    assert_eq!(client.reply(), "E00");
    assert_eq!(icount_of(&client.monitor("when")), 0);
    client.send("vKill;1");
    assert_eq!(client.reply(), "OK");
    let (status, server_stderr) = server.wait();
    assert!(status.success(), "{server_stderr}");
    assert!(!server_stderr.contains("failed"), "{server_stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// gdb's `signal SIGUSR1` (what it sends: vCont;C1e, or vCont;S1e when it first steps off a breakpoint) is
/// refused with an error gdb prints, and the session goes on.
#[test]
fn gdb_signal_is_refused_and_the_session_goes_on() {
    let dir = scratch("signal");
    let trace = dir.join("rewind.trace");
    record_rewind(&trace);
    let server = Server::start(&trace);
    let output = run_gdb(
        &server.address,
        &[
            "break step",
            "continue",
            "signal SIGUSR1",
            "monitor when",
            "delete",
            "signal SIGUSR1",
            "continue",
            "kill",
        ],
    );
    assert_eq!(
        output
            .matches("Remote failure reply: E.a replay cannot deliver a signal")
            .count(),
        2,
        "{output}"
    );
    // Still at the breakpoint; then the continue runs to the end of history.
    assert!(output.contains("icount "), "{output}");
    assert!(
        output.contains("No more reverse-execution history."),
        "{output}"
    );
    let (status, server_stderr) = server.wait();
    assert!(status.success(), "{server_stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// One gdb at a time: a second gdb while one is connected is told so (gdb prints the error) and closed at
/// once instead of hanging; once the first detaches, the next one is served from where the first left.
#[test]
fn a_second_gdb_is_refused_while_one_is_connected_and_served_after() {
    let dir = scratch("two");
    let trace = dir.join("rewind.trace");
    record_rewind(&trace);
    let server = Server::start(&trace);
    let mut first = RawClient::connect(&server.address);
    first.send("qSupported:multiprocess+");
    first.reply();
    first.send("bs");
    first.reply();
    first.send("s");
    first.reply();
    // The second gdb gets an error reply to its first packet, then the connection closes.
    let second = run_gdb(&server.address, &["info registers rip"]);
    assert!(
        second.contains("tandem serves one gdb at a time and another session is running"),
        "{second}"
    );
    assert_eq!(icount_of(&first.monitor("when")), 1);
    first.send("D");
    assert_eq!(first.reply(), "OK");
    let third = run_gdb(&server.address, &["monitor when", "kill"]);
    assert!(third.contains("icount 1\n"), "{third}");
    let (status, server_stderr) = server.wait();
    assert!(status.success(), "{server_stderr}");
    assert!(
        server_stderr.contains("tandem: refused gdb from 127.0.0.1:"),
        "{server_stderr}"
    );
    assert_eq!(
        server_stderr.matches("tandem: gdb connected from").count(),
        2,
        "{server_stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Listening on every interface (0.0.0.0) warns that anyone on the network can drive the debugger; loopback
/// does not.
#[test]
fn a_non_loopback_address_warns() {
    let dir = scratch("anyaddr");
    let trace = dir.join("rewind.trace");
    record_rewind(&trace);
    for (listen, warns) in [("0.0.0.0:0", true), ("127.0.0.1:0", false)] {
        let server = Server::start_at(&trace, listen);
        let mut client = RawClient::connect(&server.address);
        client.send("vKill;1");
        assert_eq!(client.reply(), "OK");
        let (status, server_stderr) = server.wait();
        assert!(status.success(), "{server_stderr}");
        assert_eq!(
            server_stderr
                .contains("is not a loopback address: anyone who can reach it on the network"),
            warns,
            "{listen}: {server_stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Packets built at random from the protocol's letters and fields (a fixed seed: the same packets every run),
/// sent one after another: each gets its reply, and the session survives all of them (`?` and `monitor when`
/// still answer). Packets that end a session (`k`, `D`, `vKill`) are left out.
#[test]
fn random_packets_never_end_the_session() {
    let dir = scratch("fuzz");
    let trace = dir.join("rewind.trace");
    record_rewind(&trace);
    let server = Server::start(&trace);
    let mut client = RawClient::connect(&server.address);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |n: u64| -> u64 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let heads = [
        "m",
        "M",
        "g",
        "G",
        "p",
        "P",
        "X",
        "x",
        "Z0,",
        "Z1,",
        "Z2,",
        "Z3,",
        "Z4,",
        "z0,",
        "z2,",
        "z4,",
        "H",
        "Hg",
        "Hc",
        "T",
        "vCont",
        "vCont;",
        "vCont?",
        "c",
        "s",
        "C",
        "S",
        "bc",
        "bs",
        "?",
        "qSupported",
        "qSupported:",
        "qXfer:features:read:target.xml:",
        "qXfer:siginfo:read::",
        "qXfer:",
        "qRcmd,",
        "qRcmd",
        "qfThreadInfo",
        "qsThreadInfo",
        "qAttached",
        "qAttached:",
        "QStartNoAck",
        "vFile:open:",
        "qC",
        "!",
        "R00",
        "vRun;",
        "vAttach;1",
        "q",
        "Q",
        "v",
        "",
    ];
    let pieces = [
        "0",
        "1",
        "-1",
        "p1.1",
        "p0.0",
        "p1.-1",
        "ffffffffffffffffff",
        "401000",
        "7fffffffe000",
        ",",
        ";",
        ":",
        "c",
        "s",
        "t",
        "C0b",
        "S05",
        "r1,2",
        "x",
        "zz",
        "8",
        "1000",
        "200000",
        "target.xml",
        "%",
        "+",
        "multiprocess+",
        "}",
        "*",
        "#",
    ];
    for round in 0..400 {
        let mut body = heads[next(heads.len() as u64) as usize].to_string();
        for _ in 0..next(5) {
            body.push_str(pieces[next(pieces.len() as u64) as usize]);
        }
        // '#' and '$' cannot appear raw in a body.
        let body = body.replace(['#', '$'], "");
        client.send(&body);
        // Monitor commands answer with console output packets (O...) before their OK.
        let mut reply = client.reply();
        while reply.starts_with('O') && reply != "OK" {
            reply = client.reply();
        }
        if round % 50 == 0 {
            client.send("?");
            assert!(client.reply().starts_with('T'), "after {body:?}");
        }
    }
    client.send("?");
    assert!(client.reply().starts_with('T'));
    client.monitor("when");
    client.send("vKill;1");
    assert_eq!(client.reply(), "OK");
    let (status, server_stderr) = server.wait();
    assert!(status.success(), "{server_stderr}");
    assert!(!server_stderr.contains("failed"), "{server_stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A multi-thread replay in real gdb: `info threads` lists the guest's four threads by tid; a breakpoint in
/// beta's step function stops in beta's thread (gdb's current thread, whose `bt` runs through worker_beta);
/// `thread N` selects another thread, whose registers and backtrace are its own (main, in pthread_join); a
/// second hit and a reverse-continue come back to the first hit's icount, in beta's thread again.
#[test]
fn gdb_sees_every_thread_and_stops_in_the_one_that_hit_the_breakpoint() {
    let dir = scratch("workers");
    let trace = dir.join("workers.trace");
    let out = record_trace(&trace, &[], &corpus_bin("workers-glibc"), &[], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let server = Server::start(&trace);
    let g = run_gdb_on(
        &server.address,
        "workers-glibc",
        &[
            "break beta_step",
            "continue",
            "monitor when",
            "info threads",
            "bt",
            "info registers rip",
            "thread 1",
            "bt",
            "info registers rip",
            "continue",
            "monitor when",
            "reverse-continue",
            "monitor when",
            "thread",
            "detach",
        ],
    );
    drop(server);
    let threads: Vec<&str> = g.lines().filter(|l| l.contains("Thread 1.10")).collect();
    for tid in 1000..=1003 {
        assert!(
            threads
                .iter()
                .any(|l| l.contains(&format!("Thread 1.{tid} "))),
            "thread {tid} in `info threads`:\n{g}"
        );
    }
    let current = threads
        .iter()
        .find(|l| l.starts_with('*'))
        .unwrap_or_else(|| panic!("no current thread:\n{g}"));
    assert!(
        current.contains("Thread 1.1002 ") && current.contains("beta_step"),
        "beta (1002) stopped at its breakpoint: {current}\n{g}"
    );
    assert!(g.contains("in worker_beta"), "beta's bt:\n{g}");
    assert!(
        g.contains("in main ()") || g.contains("in main ("),
        "main's bt:\n{g}"
    );
    let rips = rip_of(&g);
    assert_eq!(rips.len(), 2, "{g}");
    assert_ne!(rips[0], rips[1], "each thread has its own rip:\n{g}");
    let w = whens(&g);
    assert_eq!(w.len(), 3, "{g}");
    assert!(w[1] > w[0], "the second hit is later:\n{g}");
    assert_eq!(
        w[2], w[0],
        "reverse-continue returns to the first hit:\n{g}"
    );
    let last = g
        .lines()
        .rev()
        .find(|l| l.starts_with("[Current thread is"))
        .unwrap_or_else(|| panic!("no `thread` answer:\n{g}"));
    assert!(last.contains("Thread 1.1002"), "{last}\n{g}");
}

/// At the fatal signal of a multi-thread crash, gdb sees every thread the process had as it died (the
/// kernel has ended them, the replay keeps them): the crashing thread (gamma) current, and each thread's
/// backtrace through its own function, as native gdb shows the same crash; a reverse step stays in the
/// crashing thread.
#[test]
fn gdb_sees_every_thread_at_the_crash_of_a_multi_thread_program() {
    let dir = scratch("workers-crash");
    let trace = dir.join("crash.trace");
    let out = record_trace(&trace, &[], &corpus_bin("workers-glibc"), &["crash"], b"");
    assert!(
        text(&out.stderr).contains("guest killed by SIGSEGV"),
        "{}",
        text(&out.stderr)
    );
    let commands = ["info threads", "thread apply all bt"];
    let server = Server::start(&trace);
    let mut ours = vec!["continue"];
    ours.extend(commands);
    ours.extend(["reverse-stepi", "thread", "detach"]);
    let g = run_gdb_on(&server.address, "workers-glibc", &ours);
    drop(server);
    let native = run_native_gdb("workers-glibc", &["crash"], &commands);
    for output in [&g, &native] {
        assert!(
            output.contains("received signal SIGSEGV"),
            "the crash:\n{output}"
        );
        let current = output
            .lines()
            .find(|l| l.starts_with("* "))
            .unwrap_or_else(|| panic!("no current thread:\n{output}"));
        assert!(current.contains("worker_gamma"), "{current}\n{output}");
        let all = &output[output.find("\nThread ").unwrap_or(0)..];
        for function in ["worker_alpha", "worker_beta", "worker_gamma", "in main ("] {
            assert!(all.contains(function), "no {function} in\n{output}");
        }
        assert_eq!(
            output
                .lines()
                .filter(|l| l.starts_with("Thread ") && l.ends_with("):"))
                .count(),
            4,
            "{output}"
        );
    }
    let after = &g[g
        .rfind("[Current thread is")
        .unwrap_or_else(|| panic!("{g}"))..];
    assert!(after.contains("Thread 1.1003"), "{g}");
}

/// The frames of a `bt` in gdb's output.
fn frames(output: &str) -> Vec<String> {
    output
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// A dynamically linked program under gdb: the server gives gdb the auxiliary vector, from which gdb relocates
/// the PIE and finds the dynamic loader, and through it the shared libraries. A breakpoint on a libc function
/// stops there with the backtrace native gdb shows.
#[test]
fn gdb_breaks_on_a_shared_library_function_of_a_dynamic_program() {
    let dir = scratch("gdb-dynamic");
    let trace = dir.join("hello-dyn.trace");
    let rec = record_trace(&trace, &[], &corpus_bin("hello-dyn"), &[], b"");
    assert_eq!(rec.status.code(), Some(0), "{}", text(&rec.stderr));
    let server = Server::start(&trace);
    let commands = ["break puts", "continue", "bt", "info sharedlibrary", "kill"];
    let emulated = run_gdb_on(&server.address, "hello-dyn", &commands);
    drop(server);
    assert!(
        emulated.contains("Breakpoint 1, ") && emulated.contains("puts (str="),
        "{emulated}"
    );
    assert!(
        emulated.contains("/lib/x86_64-linux-gnu/libc.so.6"),
        "the library list: {emulated}"
    );
    let mut native = Command::new("gdb");
    native
        .args(["-batch", "-nx", "-iex", "set debuginfod enabled off"])
        .args([
            "-ex",
            "break puts",
            "-ex",
            "run",
            "-ex",
            "bt",
            "-ex",
            "kill",
        ])
        .arg(corpus_bin("hello-dyn"));
    let native = gdb_output(&mut native);
    assert_eq!(
        frames(&emulated),
        frames(&native),
        "{emulated}\n---\n{native}"
    );
    assert_eq!(frames(&emulated).len(), 2, "{emulated}");
}

/// The values of gdb's `p/x` lines ("$N = 0x...").
fn printed_hex(output: &str) -> Vec<u64> {
    output
        .lines()
        .filter_map(|l| l.strip_prefix('$')?.split_once(" = 0x"))
        .filter_map(|(_, h)| u64::from_str_radix(h.trim(), 16).ok())
        .collect()
}

/// gdb attached to the replay of a plain gcc build (corpus/bin/maps-dyn, which prints its /proc/self/maps)
/// reads the loaded libraries from the server's `qXfer:libraries-svr4:read` list, as from gdbserver, and stops
/// in `puts` at libc's base in that run's maps plus puts's value in `nm -D` of libc; `break strlen` (an
/// indirect function) set there stops in libc's code, in the implementation `tandem debug` stops in too.
#[test]
fn gdb_reads_the_library_list_and_breaks_on_puts_and_strlen() {
    let dir = scratch("gdb-libraries");
    let trace = dir.join("maps-dyn.trace");
    let rec = record_trace(&trace, &[], &corpus_bin("maps-dyn"), &["xyz"], b"");
    assert_eq!(rec.status.code(), Some(0), "{}", text(&rec.stderr));
    let stdout = text(&rec.stdout);
    let (base, libc, (text_lo, text_hi)) = libc_mapping(&stdout);
    let (puts, _) = nm_dynamic(&libc, "puts");

    let server = Server::start(&trace);
    let commands = [
        "set breakpoint pending on",
        "set debug remote 1",
        "break puts",
        "continue",
        "set debug remote 0",
        "p/x $pc",
        "info sharedlibrary",
        "kill",
    ];
    let g = run_gdb_on(&server.address, "maps-dyn", &commands);
    drop(server);
    // The loader names libc by the path it found (/lib/...), the maps by the file's canonical path.
    assert!(
        g.contains("qXfer:libraries-svr4:read::") && g.contains("/libc.so.6\" lm=\"0x"),
        "gdb did not read the server's library list:\n{g}"
    );
    assert!(g.contains("Breakpoint 1, "), "{g}");
    assert_eq!(printed_hex(&g), vec![base + puts], "{g}");
    assert!(
        g.lines()
            .any(|l| l.ends_with("/libc.so.6") && l.starts_with("0x")),
        "info sharedlibrary: {g}"
    );

    // Once libc is relocated (at puts), gdb finds strlen's implementation through the GOT it reads from the
    // server; puts measures its argument first.
    let server = Server::start(&trace);
    let commands = [
        "set breakpoint pending on",
        "break puts",
        "continue",
        "break strlen",
        "continue",
        "p/x $pc",
        "x/s $rdi",
        "kill",
    ];
    let g = run_gdb_on(&server.address, "maps-dyn", &commands);
    drop(server);
    let pc = printed_hex(&g);
    assert!(
        pc.len() == 1 && (text_lo..text_hi).contains(&pc[0]),
        "strlen's stop is not in libc's code {text_lo:#x}-{text_hi:#x}:\n{g}"
    );
    let argument = g
        .lines()
        .find_map(|l| l.split_once(":\t\"").map(|(_, s)| s.trim_end_matches('"')))
        .unwrap_or_else(|| panic!("no x/s line in\n{g}"));
    assert_eq!(argument, "called puts", "{g}");
    // The command-line debugger resolves the indirect function its own way (the IRELATIVE slots of libc): the
    // same implementation.
    let transcript = debug_transcript(&trace, "break strlen\ncontinue\n");
    assert!(
        transcript.contains(&format!("rip {:#x}", pc[0])),
        "gdb stopped at {:#x}:\n{transcript}",
        pc[0]
    );
}
