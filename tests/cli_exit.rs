//! The command line's contract with shells and scripts: exit statuses (documented in every --help), usage errors
//! that name the option, and quiet stops when a reader goes away (`tandem ... | head -1`), never a panic.

mod common;
use common::*;
use std::process::{Command, Output, Stdio};

fn tandem_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new(tandem());
    cmd.args(args).current_dir(repo()).env_clear();
    cmd
}

fn run(args: &[&str]) -> Output {
    tandem_cmd(args).stdin(Stdio::null()).output().unwrap()
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

#[test]
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

#[test]
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

#[test]
fn unknown_options_before_the_program_are_usage_errors_naming_them() {
    for args in [
        vec!["run", "--sed", "1", "--", "corpus/bin/hello-musl"],
        vec![
            "record",
            "-o",
            "/dev/null",
            "--sed",
            "1",
            "--",
            "corpus/bin/hello-musl",
        ],
        vec![
            "faults",
            "--seeds",
            "0..2",
            "--sed",
            "1",
            "--",
            "corpus/bin/hello-musl",
        ],
    ] {
        let out = run(&args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {err}");
        assert!(err.contains("unexpected argument '--sed'"), "{err}");
        if args[0] != "faults" {
            assert!(err.contains("a similar argument exists: '--seed'"), "{err}");
        }
        assert!(!err.contains("cannot read the program"), "{err}");
    }
    // After the program, everything is the program's, with or without `--`.
    for args in [
        vec!["run", "--", "corpus/bin/args-musl", "--sed", "1"],
        vec!["run", "corpus/bin/args-musl", "--sed", "1"],
    ] {
        let out = run(&args);
        let native = native(&corpus_bin("args-musl"), &["--sed", "1"], &[], b"");
        assert_same("args after the program", &native, &out);
    }
    // Usage errors of the other commands are 125 too; `scenario` keeps its 2.
    for (args, expected) in [
        (vec!["replay"], 125),
        (vec!["debug", "x.trace", "--frobnicate"], 125),
        (vec!["bogus-command"], 125),
        (vec![], 125),
        (vec!["faults", "--seeds", "0..1"], 125),
        (vec!["scenario", "run", "t.toml", "--frobnicate"], 2),
        (vec!["scenario"], 2),
    ] {
        let out = run(&args);
        assert_eq!(
            out.status.code(),
            Some(expected),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn tandems_own_failures_exit_125_and_guest_statuses_pass_through() {
    let out = run(&["run", "--", "/nonexistent/program"]);
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(
        text(&out.stderr),
        "tandem: error: cannot read the program /nonexistent/program: No such file or directory (os error 2)\n"
    );
    let out = run(&[
        "record",
        "-o",
        "/nonexistent/dir/x.trace",
        "--",
        "corpus/bin/hello-musl",
    ]);
    assert_eq!(out.status.code(), Some(125), "{}", text(&out.stderr));
    let out = run(&[
        "faults",
        "--seeds",
        "0..2",
        "--jobs",
        "257",
        "--",
        "corpus/bin/hello-musl",
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("--jobs 257: give between 1 and 256 worker threads"),
        "{}",
        text(&out.stderr)
    );
    for (signal, status) in [("segv", 139), ("abort", 134), ("ill", 132), ("fpe", 136)] {
        let out = run(&["run", "--", "corpus/bin/crash-musl", signal]);
        assert_eq!(out.status.code(), Some(status), "{signal}");
    }
    let out = run(&["run", "--max-insns", "10", "--", "corpus/bin/hello-musl"]);
    assert_eq!(out.status.code(), Some(124));
}

#[test]
fn every_command_documents_its_exit_statuses_and_has_examples() {
    for (args, statuses) in [
        (vec!["run", "--help"], vec!["128+N", "124", "125"]),
        (vec!["record", "--help"], vec!["128+N", "124", "125"]),
        (vec!["replay", "--help"], vec!["0 ", "3 ", "4 ", "125"]),
        (vec!["debug", "--help"], vec!["1 when", "125"]),
        (vec!["faults", "--help"], vec!["0 ", "1 ", "125", "141"]),
        (vec!["scenario", "--help"], vec!["1 ", "2 ", "141"]),
        (
            vec!["scenario", "run", "--help"],
            vec!["1 when", "2 on bad input", "141"],
        ),
        (vec!["--help"], vec!["125", "141"]),
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let help = text(&out.stdout);
        let section = help
            .find("Exit status")
            .map(|i| &help[i..])
            .unwrap_or_else(|| panic!("{args:?} documents no exit status:\n{help}"));
        for status in statuses {
            assert!(
                section.contains(status),
                "{args:?}: {status} missing from\n{section}"
            );
        }
        if args.len() > 1 && args[0] != "scenario" {
            assert!(help.contains("Examples:"), "{args:?}:\n{help}");
        }
    }
}

#[test]
fn record_help_describes_record_not_run() {
    let help = text(&run(&["record", "--help"]).stdout);
    assert!(
        help.starts_with("Run a static x86-64 Linux program exactly as `tandem run` does"),
        "{help}"
    );
    assert!(help.contains("write a trace to -o FILE"), "{help}");
    let short = text(&run(&["record", "-h"]).stdout);
    assert!(
        short.starts_with(
            "Run a program and record a trace that `tandem replay` reproduces bit for bit"
        ),
        "{short}"
    );
    assert!(help.contains("tandem record -o hello.trace"), "{help}");
    let run_help = text(&run(&["run", "--help"]).stdout);
    let first = |h: &str| h.split("\n\n").nth(1).unwrap_or("").to_string();
    assert_ne!(
        first(&help),
        first(&run_help),
        "record's long description is its own"
    );
}
