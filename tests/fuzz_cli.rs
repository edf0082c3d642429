//! End-to-end tests of `tandem fuzz` on the planted-bug targets (corpus/src/fuzz/): each bug is found within a
//! stated number of executions at a fixed seed (the fault-only ones through the fault plan), a finding's trace
//! replays verified and ends in the crash, the same seed and --jobs give the same findings, the output has
//! AFL++'s layout, and bad input is a clear error with status 125. The features around the genome: a file input
//! (`@@`), a checker of output, a snapshot at the first read of stdin.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Output;

/// `tandem fuzz -q --seed SEED --jobs JOBS --execs EXECS [-i SEEDS] -o OUT -- corpus/bin/TARGET`.
fn fuzz(
    target: &str,
    seed: u64,
    jobs: usize,
    execs: u64,
    seeds: Option<&Path>,
    out: &Path,
) -> Output {
    fuzz_with(&[], &[target], seed, jobs, execs, seeds, out)
}

/// `tandem fuzz -q OPTIONS ... -- corpus/bin/COMMAND[0] COMMAND[1..]`.
fn fuzz_with(
    options: &[&str],
    command: &[&str],
    seed: u64,
    jobs: usize,
    execs: u64,
    seeds: Option<&Path>,
    out: &Path,
) -> Output {
    let mut cmd = std::process::Command::new(tandem());
    cmd.arg("fuzz")
        .arg("-q")
        .args(options)
        .args(["--seed", &seed.to_string()])
        .args(["--jobs", &jobs.to_string()])
        .args(["--execs", &execs.to_string()])
        .args(["--max-insns", "200000"]);
    if let Some(s) = seeds {
        cmd.arg("-i").arg(s);
    }
    cmd.arg("-o")
        .arg(out)
        .arg("--")
        .arg(corpus_bin(command[0]))
        .args(&command[1..])
        .current_dir(repo())
        .env_clear();
    cmd.output().unwrap()
}

/// A seed directory holding these files.
fn seed_dir(name: &str, files: &[(&str, &[u8])]) -> PathBuf {
    let dir = scratch(name);
    for (file, bytes) in files {
        std::fs::write(dir.join(file), bytes).unwrap();
    }
    dir
}

/// The files of `dir` ending in `suffix`, sorted.
fn files_ending(dir: &Path, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(suffix))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Fuzzes `target` and asserts a crash with `signal` was saved; returns the first such crash's path (without
/// suffix).
fn finds(target: &str, execs: u64, seeds: &[(&str, &[u8])], signal: &str) -> PathBuf {
    finds_with(&[], &[target], execs, seeds, signal)
}

/// `finds` with options and arguments: `command[0]` is the target.
fn finds_with(
    options: &[&str],
    command: &[&str],
    execs: u64,
    seeds: &[(&str, &[u8])],
    signal: &str,
) -> PathBuf {
    let target = command[0];
    let name = format!(
        "{target}{}",
        options.join("").replace(['-', ' ', '\'', '/'], "")
    );
    let seeds = seed_dir(&format!("fuzz-seeds-{name}"), seeds);
    let out = scratch(&format!("fuzz-out-{name}"));
    let o = fuzz_with(options, command, 1, 1, execs, Some(&seeds), &out);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{target}: no finding within {execs} executions\n{}",
        text(&o.stderr)
    );
    let crashes = files_ending(&out.join("crashes"), ".trace");
    let hit = crashes
        .iter()
        .find(|n| n.contains(signal))
        .unwrap_or_else(|| {
            panic!(
                "{target}: no {signal} crash among {crashes:?}\n{}",
                text(&o.stderr)
            )
        });
    let path = out.join("crashes").join(hit.trim_end_matches(".trace"));
    for suffix in ["", ".txt"] {
        assert!(
            PathBuf::from(format!("{}{suffix}", path.display())).is_file(),
            "{target}: {}{suffix} missing",
            path.display()
        );
    }
    assert!(out.join("fuzzer_stats").is_file() && out.join("plot_data").is_file());
    assert!(
        !files_ending(&out.join("queue"), "").is_empty(),
        "{target}: empty queue"
    );
    path
}

fn replay_of(finding: &Path) -> Output {
    std::process::Command::new(tandem())
        .arg("replay")
        .arg(format!("{}.trace", finding.display()))
        .current_dir(repo())
        .env_clear()
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// The finding's trace replays verified, and the replayed run ends with the crash's signal.
fn replays_the_crash(finding: &Path, signal_name: &str) {
    let r = replay_of(finding);
    let err = text(&r.stderr);
    assert_eq!(
        r.status.code(),
        Some(0),
        "replay of {}: {err}",
        finding.display()
    );
    assert!(err.contains("verified"), "replay: {err}");
    assert!(
        err.contains(signal_name),
        "the replay shows the crash: {err}"
    );
}

#[test]
fn a_magic_value_is_found_through_the_comparison_dictionary() {
    let f = finds("fuzz-magic-musl", 20_000, &[("a", b"FZ....")], "sig:11");
    let input = std::fs::read(&f).unwrap();
    assert_eq!(
        &input[2..6],
        &0x5eed_f00du32.to_le_bytes(),
        "minimised: {input:x?}"
    );
    assert_eq!(
        input.len(),
        6,
        "minimised to the six bytes that matter: {input:x?}"
    );
    replays_the_crash(&f, "SIGSEGV");
}

#[test]
fn a_checksum_guard_is_passed() {
    finds(
        "fuzz-checksum-musl",
        60_000,
        &[("a", b"X\x03abc\x00")],
        "sig:11",
    );
}

#[test]
fn a_bug_after_three_correct_messages_is_found() {
    finds(
        "fuzz-messages-musl",
        60_000,
        &[("a", b"HELO\0\0\0\0")],
        "sig:11",
    );
}

#[test]
fn a_use_after_free_under_a_failing_allocation_is_found_through_the_fault_plan() {
    let f = finds("fuzz-uaf-musl", 20_000, &[("a", b"hi\n")], "sig:");
    let faults = std::fs::read_to_string(format!("{}.faults", f.display())).unwrap();
    assert!(
        faults.contains("errno ENOMEM"),
        "the finding's plan fails an allocation: {faults}"
    );
    assert_eq!(
        faults.lines().count(),
        1,
        "minimised to one fault: {faults}"
    );
    let r = replay_of(&f);
    assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
}

#[test]
fn a_crash_only_under_a_short_read_is_found_and_replays() {
    let f = finds(
        "fuzz-shortread-musl",
        20_000,
        &[("a", &[b'A'; 48])],
        "sig:11",
    );
    let faults = std::fs::read_to_string(format!("{}.faults", f.display())).unwrap();
    assert!(
        faults.starts_with("read 1 short "),
        "a short first read: {faults}"
    );
    replays_the_crash(&f, "SIGSEGV");
}

#[test]
fn the_same_seed_and_jobs_give_the_same_findings() {
    let seeds = seed_dir("fuzz-same-seeds", &[("a", b"HELO\0\0\0\0"), ("b", b"xyz")]);
    let run = |name: &str, jobs| {
        let out = scratch(name);
        let o = fuzz("fuzz-messages-musl", 5, jobs, 6_000, Some(&seeds), &out);
        assert!(
            matches!(o.status.code(), Some(0 | 1)),
            "{}",
            text(&o.stderr)
        );
        let stats = std::fs::read_to_string(out.join("stats.json")).unwrap();
        (
            stats,
            files_ending(&out.join("queue"), ""),
            files_ending(&out.join("crashes"), ""),
        )
    };
    let a = run("fuzz-same-a", 2);
    let b = run("fuzz-same-b", 2);
    assert_eq!(a, b, "two campaigns with seed 5 and --jobs 2");
    assert!(a.1.len() > 2, "the queue grew: {:?}", a.1);
    let c = run("fuzz-same-c", 1);
    assert!(c.1.len() > 2);
}

#[test]
fn bad_input_is_a_clear_error() {
    let out = scratch("fuzz-bad");
    let o = fuzz("no-such-program", 1, 1, 10, None, &out);
    assert_eq!(o.status.code(), Some(125), "{}", text(&o.stderr));
    let seeds = seed_dir(
        "fuzz-bad-seeds",
        &[
            ("a", b"x"),
            ("a.faults", b"read 1 short 1\nmmap x errno ENOMEM\n"),
        ],
    );
    let o = fuzz("fuzz-magic-musl", 1, 1, 10, Some(&seeds), &out);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert!(err.contains("a.faults") && err.contains("line 2"), "{err}");
    let o = fuzz("fuzz-magic-musl", 1, 0, 10, None, &out);
    assert_eq!(o.status.code(), Some(125), "{}", text(&o.stderr));
}

#[test]
fn a_file_input_is_the_file_named_by_the_at_at_argument() {
    // filemagic never reads stdin: only a genome written to the file its argument names reaches the bug.
    let f = finds_with(
        &[],
        &["fuzz-filemagic-musl", "@@"],
        20_000,
        &[("a", b"FZ....")],
        "sig:11",
    );
    let input = std::fs::read(&f).unwrap();
    assert_eq!(&input[2..6], &0x5eed_f00du32.to_le_bytes(), "{input:x?}");
    // The trace holds the file: the replay reads it from there and crashes the same way.
    replays_the_crash(&f, "SIGSEGV");
}

#[test]
fn a_checker_judges_the_output_and_its_findings_are_minimised() {
    // uaf prints "session 7: N bytes" for N input bytes; this checker calls a run that exited 0 with any N of
    // two digits or more wrong (it reads the program's stdout and the status it is given).
    let checker = r#"test "$TANDEM_FUZZ_STATUS" != 0 || ! grep -q '[0-9][0-9] bytes'"#;
    let f = finds_with(
        &["--checker", checker],
        &["fuzz-uaf-musl"],
        20_000,
        &[("a", b"hi\n")],
        ",checker,",
    );
    let input = std::fs::read(&f).unwrap();
    assert_eq!(
        input.len(),
        10,
        "minimised to the shortest wrong input (10 bytes): {input:x?}"
    );
    let txt = std::fs::read_to_string(format!("{}.txt", f.display())).unwrap();
    assert!(txt.contains("verdict: checker"), "{txt}");
    // A checker that cannot run stops the campaign with tandem's own status.
    let out = scratch("fuzz-checker-missing");
    let o = fuzz_with(
        &["--checker", "/no/such/checker"],
        &["fuzz-uaf-musl"],
        1,
        1,
        1000,
        None,
        &out,
    );
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert!(err.contains("--checker") && err.contains("127"), "{err}");
}

#[test]
fn a_snapshot_at_the_first_read_of_stdin_skips_start_up_and_finds_the_same() {
    let seeds = seed_dir("fuzz-firstread-seeds", &[("a", b"FZ....")]);
    let run = |name: &str, at: &str| {
        let out = scratch(name);
        let o = fuzz_with(
            &["--snapshot-at", at],
            &["fuzz-magic-musl"],
            3,
            1,
            5_000,
            Some(&seeds),
            &out,
        );
        assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
        let stats = std::fs::read_to_string(out.join("stats.json")).unwrap();
        let icount: u64 = stats
            .split("\"snapshot_icount\":")
            .nth(1)
            .and_then(|r| r.split([',', '}']).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no snapshot_icount: {stats}"));
        let crashes = files_ending(&out.join("crashes"), "");
        (icount, files_ending(&out.join("queue"), ""), crashes, out)
    };
    let (start, queue_a, crashes_a, _) = run("fuzz-firstread-start", "start");
    let (warm, queue_b, crashes_b, out) = run("fuzz-firstread-warm", "first-read-of-stdin");
    assert_eq!(start, 0);
    assert!(warm > 100, "the snapshot is after musl's start-up: {warm}");
    // Start-up is the same in every run and reads no input: the campaign decides the same from either point.
    assert_eq!(queue_a, queue_b);
    assert_eq!(crashes_a, crashes_b);
    // The finding's trace is recorded from the program's start and replays the crash.
    let trace = crashes_b.iter().find(|n| n.ends_with(".trace")).unwrap();
    let f = out.join("crashes").join(trace.trim_end_matches(".trace"));
    replays_the_crash(&f, "SIGSEGV");
    // A program that ends without reading stdin has no such point: a clear error.
    let out = scratch("fuzz-firstread-none");
    let o = fuzz_with(
        &["--snapshot-at", "first-read-of-stdin"],
        &["fuzz-filemagic-musl", "@@"],
        1,
        1,
        1000,
        None,
        &out,
    );
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert!(err.contains("first-read-of-stdin"), "{err}");
}
