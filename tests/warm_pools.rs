//! Warm snapshots and pools (replay/src/pools, `tandem run --warm-at`, `tandem pool`, warm fault campaigns):
//! - a warm instance that keeps the snapshot's entropy (--no-reseed) runs as the cold run, bit for bit: stdout,
//!   stderr, exit status, instruction count and final state hash (--report-state), for every kind of warm point,
//!   static and dynamic programs and Debian's busybox;
//! - re-seeded clones draw different random values (clock prints getrandom's bytes), each clone reproducibly;
//! - pool instances, warmed from a recorded usage profile (hot blocks compiled ahead), end as cold instances do;
//! - a fault campaign's tables are byte-identical cold and warm, at any --jobs.

mod common;
use common::*;
use std::process::Command;

/// Runs cold and warm (--no-reseed) with --report-state and asserts the two runs are the same.
fn warm_equals_cold(program: &str, args: &[&str], point: &str, stdin: &[u8]) {
    let cold = emulate(&["--report-state"], program, args, stdin);
    let warm = emulate(
        &["--report-state", "--warm-at", point, "--no-reseed"],
        program,
        args,
        stdin,
    );
    let what = format!("{program} {args:?} --warm-at {point}");
    assert!(
        text(&cold.stderr).contains("state_hash"),
        "{what}: {}",
        text(&cold.stderr)
    );
    assert_eq!(
        text(&warm.stderr),
        text(&cold.stderr),
        "{what}: stderr, icount or state hash differ"
    );
    assert_eq!(
        text(&warm.stdout),
        text(&cold.stdout),
        "{what}: stdout differs"
    );
    assert_eq!(
        warm.status.code(),
        cold.status.code(),
        "{what}: exit differs"
    );
}

#[test]
fn a_warm_instance_without_reseeding_runs_as_the_cold_run() {
    // A symbol (static musl and glibc, a dynamic PIE whose main is past the loader), an instruction count
    // (mid-startup of a glibc program that prints its getrandom bytes) and the first read of stdin.
    warm_equals_cold(&corpus_bin("hello-musl"), &[], "main", b"");
    warm_equals_cold(&corpus_bin("crash-glibc"), &["exit"], "main", b"");
    warm_equals_cold(&corpus_bin("hello-dyn"), &[], "main", b"");
    warm_equals_cold(&corpus_bin("clock-glibc"), &[], "20000", b"");
    warm_equals_cold(&corpus_bin("clock-musl"), &[], "0x400", b"");
    let input = b"the quick brown fox jumps over the lazy dog\n".repeat(200);
    warm_equals_cold(
        &corpus_bin("rewind-musl"),
        &[],
        "first-read-of-stdin",
        b"41\n",
    );
    warm_equals_cold(&corpus_bin("rewind-glibc"), &[], "step", b"41\n");
    warm_equals_cold(
        "/bin/busybox",
        &["sha256sum"],
        "first-read-of-stdin",
        &input,
    );
    warm_equals_cold(
        "/bin/busybox",
        &["sort", "-r"],
        "first-read-of-stdin",
        &input,
    );
}

/// The getrandom line of corpus program clock.
fn getrandom_line(out: &[u8]) -> String {
    text(out)
        .lines()
        .find(|l| l.starts_with("getrandom 16:"))
        .unwrap_or_else(|| panic!("no getrandom line in {}", text(out)))
        .to_string()
}

#[test]
fn reseeded_clones_draw_different_values() {
    let clock = corpus_bin("clock-musl");
    // 1000 instructions in: startup is over, getrandom has not been called yet.
    let clone = |n: &str| emulate(&["--warm-at", "1000", "--clone", n], &clock, &[], b"");
    let cold = emulate(&[], &clock, &[], b"");
    let (one, two, one_again) = (clone("1"), clone("2"), clone("1"));
    for run in [&cold, &one, &two] {
        assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    }
    assert_ne!(getrandom_line(&one.stdout), getrandom_line(&two.stdout));
    assert_ne!(getrandom_line(&one.stdout), getrandom_line(&cold.stdout));
    assert_eq!(
        one.stdout, one_again.stdout,
        "a clone is reproducible by its number"
    );
    // Everything that is not random is the same: the times are virtual and the clones start at one point.
    let without_random = |o: &[u8]| {
        text(o)
            .lines()
            .filter(|l| !l.starts_with("getrandom"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(without_random(&one.stdout), without_random(&cold.stdout));
}

#[test]
fn bad_warm_points_are_clear_errors() {
    let cases: [(&str, &str, &str); 4] = [
        ("sha256-musl", "main", "no such symbol"),
        ("hello-musl", "99999999", "ended after"),
        ("hello-musl", "first-read-of-stdin", "ended after"),
        ("hello-musl", "ma in", "expected a symbol"),
    ];
    for (program, point, what) in cases {
        let e = emulate(&["--warm-at", point], &corpus_bin(program), &[], b"");
        assert_eq!(e.status.code(), Some(125), "{program} {point}");
        assert!(
            text(&e.stderr).contains(what),
            "{program} --warm-at {point}: {}",
            text(&e.stderr)
        );
    }
    let e = emulate(
        &["--warm-at", "main", "--faults", "mem.ue:icount=5,frame=1"],
        &corpus_bin("hello-musl"),
        &[],
        b"",
    );
    assert_eq!(e.status.code(), Some(125), "{}", text(&e.stderr));
}

fn pool(flags: &[&str], program: &str, args: &[&str]) -> (String, String) {
    let out = Command::new(tandem())
        .current_dir(repo())
        .arg("pool")
        .args(flags)
        .arg("--")
        .arg(program)
        .args(args)
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "tandem pool {flags:?}: {}",
        text(&out.stderr)
    );
    (text(&out.stdout), text(&out.stderr))
}

/// The outcome lines of `tandem pool` (its first line names how the instances started).
fn outcomes(stdout: &str) -> Vec<String> {
    stdout.lines().skip(1).map(str::to_string).collect()
}

#[test]
fn warm_pool_instances_from_a_recorded_profile_end_as_cold_ones() {
    let dir = scratch("warm-pool-profile");
    let profile = dir.join("qsort.prof");
    let profile = profile.to_str().unwrap();
    let program = corpus_bin("qsort-musl");
    // qsort is stripped: its warm point is an instruction count (past the C library's start-up).
    let base = ["--instances", "3", "--warm-at", "3000", "--no-reseed"];
    let (recorded, _) = pool(
        &[&base[..], &["--record-profile", profile]].concat(),
        &program,
        &[],
    );
    let text_profile = std::fs::read_to_string(profile).unwrap();
    assert!(
        text_profile.starts_with("tandem-usage-profile 1\nprogram "),
        "{text_profile}"
    );
    assert!(text_profile.contains("\nruns 3\n"), "{text_profile}");
    assert!(text_profile.contains("\nblock 0x"), "{text_profile}");
    assert!(text_profile.contains("\npage 0x"), "{text_profile}");
    let (warm, _) = pool(
        &[&base[..], &["--profile", profile]].concat(),
        &program,
        &[],
    );
    let (cold, _) = pool(&[&base[..], &["--cold"]].concat(), &program, &[]);
    let header = warm.lines().next().unwrap_or_default();
    assert!(
        header.contains(" warm from 3000") && !header.contains("warmup: 0 blocks"),
        "the profile's hot blocks are compiled ahead: {header}"
    );
    assert_eq!(outcomes(&warm), outcomes(&cold));
    assert_eq!(outcomes(&recorded), outcomes(&cold));
    assert_eq!(outcomes(&cold).len(), 1, "{cold}");
    assert!(outcomes(&cold)[0].ends_with("3 instances (0-2)"), "{cold}");
}

#[test]
fn a_profile_of_another_program_or_a_malformed_one_is_refused() {
    let dir = scratch("warm-pool-bad-profile");
    let profile = dir.join("hello.prof");
    let p = profile.to_str().unwrap();
    pool(
        &["--warm-at", "main", "--record-profile", p],
        &corpus_bin("hello-musl"),
        &[],
    );
    for (program, contents, what) in [
        ("hello-glibc", None, "another program"),
        (
            "hello-musl",
            Some("tandem-usage-profile 2\n"),
            "line 1: version",
        ),
    ] {
        if let Some(c) = contents {
            std::fs::write(&profile, c).unwrap();
        }
        let out = Command::new(tandem())
            .current_dir(repo())
            .args(["pool", "--warm-at", "main", "--profile", p, "--"])
            .arg(corpus_bin(program))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(125));
        assert!(
            text(&out.stderr).contains(what),
            "{program}: {}",
            text(&out.stderr)
        );
    }
}

fn faults(flags: &[&str]) -> String {
    let out = Command::new(tandem())
        .current_dir(repo())
        .args([
            "faults",
            "--seeds",
            "0..48",
            "--faults",
            "mem.ue:count=1,mem.flip:count=1",
        ])
        .args(flags)
        .args(["--", &corpus_bin("sha256-musl")])
        .env_clear()
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{flags:?}: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[test]
fn campaign_tables_are_identical_cold_and_warm_at_any_jobs() {
    let cold = faults(&["--cold", "--jobs", "1"]);
    assert!(cold.contains("masked"), "{cold}");
    assert_eq!(faults(&["--jobs", "1"]), cold, "warm, one thread");
    assert_eq!(faults(&["--jobs", "2"]), cold, "warm, two threads");
    assert_eq!(
        faults(&["--cold", "--jobs", "2"]),
        cold,
        "cold, two threads"
    );
}

/// `tandem pool --jobs N`: re-seeded clones (each draws its own random values, so which instance got which
/// index shows) give the same outcome lines and the same recorded profile on one thread and on three.
#[test]
fn a_pool_is_the_same_at_any_jobs() {
    let dir = scratch("warm-pool-jobs");
    let clock = corpus_bin("clock-musl");
    let run = |jobs: &str| {
        let profile = dir.join(format!("clock-{jobs}.prof"));
        let profile = profile.to_str().unwrap().to_string();
        let flags = [
            "--instances",
            "12",
            "--warm-at",
            "1000",
            "--jobs",
            jobs,
            "--record-profile",
            &profile,
        ];
        let (out, _) = pool(&flags, &clock, &[]);
        (out, std::fs::read_to_string(&profile).unwrap())
    };
    let one = run("1");
    assert!(outcomes(&one.0).len() > 1, "clones differ: {}", one.0);
    assert_eq!(run("3"), one);
}
