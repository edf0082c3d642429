//! Closed pipes (`tandem ... | head -1`): tandem stops quietly with 141 when the reader of its stdout goes away,
//! never a panic; `run` and `record` keep the guest's status whatever happens to their stderr.
//!
//! One test function on purpose: a pipe's read end can live on for a moment in a child that another test thread
//! forks (until it execs and close-on-exec drops it), and then a write that should fail succeeds. Spawning from a
//! single thread leaves no such child.

mod common;
use common::*;
use std::process::{Command, Stdio};

fn tandem_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new(tandem());
    cmd.args(args).current_dir(repo()).env_clear();
    cmd
}

/// A pipe whose reader is already gone: every write to it fails with EPIPE, at once and every time. The reader
/// was `true`, which exited without reading.
fn broken_pipe() -> Stdio {
    let mut reader = Command::new("true").stdin(Stdio::piped()).spawn().unwrap();
    let writer = reader.stdin.take().unwrap();
    assert!(reader.wait().unwrap().success());
    Stdio::from(writer)
}

/// Runs with stdout (or stderr) a pipe nobody reads; returns the status and what went to the other stream.
fn with_closed(stream: &str, args: &[&str]) -> (Option<i32>, String) {
    let mut cmd = tandem_cmd(args);
    cmd.stdin(Stdio::null());
    let out = if stream == "stdout" {
        cmd.stdout(broken_pipe())
            .stderr(Stdio::piped())
            .output()
            .unwrap()
    } else {
        cmd.stderr(broken_pipe())
            .stdout(Stdio::piped())
            .output()
            .unwrap()
    };
    let other = if stream == "stdout" {
        &out.stderr
    } else {
        &out.stdout
    };
    (out.status.code(), text(other))
}

fn hello_trace(name: &str) -> String {
    let dir = scratch(name);
    let trace = dir.join("hello.trace");
    let out = record_trace(&trace, &[], &corpus_bin("hello-musl"), &[], b"");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    trace.to_str().unwrap().to_string()
}

#[test]
fn closed_pipes_stop_tandem_quietly_and_never_panic() {
    a_closed_stdout_stops_tandem_quietly_with_141();
    run_and_record_keep_the_guests_status_whatever_happens_to_tandems_output();
    a_closed_stderr_never_panics_an_error_report();
}

fn a_closed_stdout_stops_tandem_quietly_with_141() {
    let trace = hello_trace("epipe-debug");
    let dir = scratch("epipe-script");
    let script = dir.join("script.txt");
    std::fs::write(&script, "stepi\nregs\n").unwrap();
    let template = "scenarios/templates/split-brain.toml";
    for args in [
        vec![
            "scenario", "run", template, "--seeds", "0..3", "--jobs", "1",
        ],
        vec!["scenario", "show", template, "--seed", "1"],
        vec!["scenario", "plan", template, "--seed", "1"],
        vec!["scenario", "bench", template, "--seeds", "2", "--jobs", "1"],
        vec!["faults", "--seeds", "0..2", "--", "corpus/bin/hello-musl"],
        vec!["debug", trace.as_str(), "-x", script.to_str().unwrap()],
        vec!["run", "--help"],
        vec!["scenario", "run", "--help"],
        vec!["--version"],
    ] {
        let (status, stderr) = with_closed("stdout", &args);
        assert_eq!(status, Some(141), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?} stops quietly: {stderr}");
    }
}

fn run_and_record_keep_the_guests_status_whatever_happens_to_tandems_output() {
    // The guest writes into the closed pipe and sees the error; tandem itself does not stop or panic.
    let (status, stderr) = with_closed("stdout", &["run", "--", "corpus/bin/hello-musl"]);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        matches!(status, Some(0) | Some(141)),
        "{status:?}: {stderr}"
    );
    // tandem's own report lines are lost with stderr; the status stays the guest's (SIGSEGV).
    let (status, stdout) = with_closed("stderr", &["run", "--", "corpus/bin/crash-musl", "segv"]);
    assert_eq!(status, Some(139));
    assert_eq!(stdout, "crashing by segv\n");
    let dir = scratch("epipe-record");
    let trace = dir.join("crash.trace");
    let (status, _) = with_closed(
        "stderr",
        &[
            "record",
            "-o",
            trace.to_str().unwrap(),
            "--",
            "corpus/bin/crash-musl",
            "segv",
        ],
    );
    assert_eq!(status, Some(139));
    assert!(
        std::fs::metadata(&trace).unwrap().len() > 0,
        "the trace is written"
    );
    // A replay's guest output into a closed pipe is dropped; the verification still decides the status.
    let trace = hello_trace("epipe-replay");
    let (status, stderr) = with_closed("stdout", &["replay", &trace]);
    assert_eq!(status, Some(0), "{stderr}");
    assert!(stderr.contains("replayed "), "{stderr}");
}

fn a_closed_stderr_never_panics_an_error_report() {
    for (args, expected) in [
        (vec!["run", "--", "/nonexistent"], 125),
        (vec!["run", "--bogus"], 125),
        (vec!["scenario", "run", "/nonexistent.toml"], 2),
        (vec!["replay", "/nonexistent.trace"], 125),
    ] {
        let (status, stdout) = with_closed("stderr", &args);
        assert_eq!(status, Some(expected), "{args:?}: {stdout}");
    }
}
