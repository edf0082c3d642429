//! The command line's contract with shells and scripts: exit statuses (documented in every --help) and usage errors
//! that name the option. Closed pipes are tests/cli_epipe.rs's.

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
fn faults_help_explains_the_verdicts() {
    let help = text(&run(&["faults", "--help"]).stdout);
    for verdict in [
        "masked              it ended as the fault-free run did",
        "silently-corrupted  different stdout",
        "exit-changed",
        "crashed             killed by a signal the fault-free run was not killed by",
        "hung",
    ] {
        assert!(help.contains(verdict), "{verdict} missing from\n{help}");
    }
}

#[test]
fn record_help_describes_record_not_run() {
    let help = text(&run(&["record", "--help"]).stdout);
    assert!(
        help.starts_with("Run an x86-64 Linux program exactly as `tandem run` does"),
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

/// `tandem --version` names the commit it was built from (what a bug report quotes), and the completions and man
/// pages come from the same definition as --help: they list an option added this year.
#[test]
fn version_names_the_commit_and_completions_and_man_pages_list_every_command() {
    let out = run(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    let version = text(&out.stdout);
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(repo())
        .output();
    match head {
        Ok(head) if head.status.success() => {
            let commit = text(&head.stdout).trim().to_string();
            // The binary under test was built from this checkout, perhaps a commit behind when tests run on work
            // in progress; the form is what must hold, and the commit when they agree.
            assert!(version.starts_with("tandem 0."), "{version}");
            assert!(version.contains("(commit "), "{version}");
            let built = version
                .split("(commit ")
                .nth(1)
                .unwrap()
                .trim_end()
                .trim_end_matches(')');
            assert!(
                built.len() == 12 && built.chars().all(|c| c.is_ascii_hexdigit()),
                "{version}"
            );
            let known = Command::new("git")
                .args(["cat-file", "-e", &format!("{built}^{{commit}}")])
                .current_dir(repo())
                .status()
                .unwrap();
            assert!(
                known.success(),
                "{built} is not a commit of this repository (HEAD {commit})"
            );
        }
        _ => assert!(version.contains("(commit unknown)"), "{version}"),
    }
    let bash = run(&["completions", "bash"]);
    assert_eq!(bash.status.code(), Some(0));
    let script = text(&bash.stdout);
    for word in [
        "scenario",
        "merge",
        "--junit-cases",
        "--time-budget",
        "record",
        "--hash-interval",
    ] {
        assert!(script.contains(word), "bash completions lack {word}");
    }
    let dir = std::env::temp_dir().join(format!("tandem-man-{}", std::process::id()));
    let man = run(&["man", "--dir", dir.to_str().unwrap()]);
    assert_eq!(man.status.code(), Some(0), "{}", text(&man.stderr));
    let page = std::fs::read_to_string(dir.join("tandem-scenario-merge.1")).unwrap();
    assert!(
        page.starts_with(".ie") && page.contains(".TH tandem-scenario-merge 1"),
        "{page}"
    );
    assert!(page.contains("junit"), "{page}");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(run(&["completions", "tcsh"]).status.code(), Some(125));
}
