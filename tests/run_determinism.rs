//! The determinism contract: every corpus program, run twice with the same inputs, gives identical stdout,
//! stderr, exit status, instruction count and final state hash (the last two printed by the hidden
//! --report-state flag, so they are part of the compared stderr).

mod common;
use common::*;

const PROGRAMS: &[&str] = &[
    "hello", "args", "malloc", "qsort", "sha256", "float", "segv", "jmp", "clock",
];

fn twice(name: &str) {
    let bin = corpus_bin(name);
    let flags = ["--report-state", "--seed", "3", "--env", "A=b"];
    let first = emulate(&flags, &bin, &["x", "y"], b"stdin bytes");
    let second = emulate(&flags, &bin, &["x", "y"], b"stdin bytes");
    let report = text(&first.stderr);
    assert!(
        report.contains("tandem: icount ") && report.contains(" state_hash 0x"),
        "{name}: no state report in {report}"
    );
    assert!(!report.contains("unknown syscalls"), "{name}: {report}");
    assert_eq!(first.stdout, second.stdout, "{name}: stdout differs");
    assert_eq!(
        first.stderr, second.stderr,
        "{name}: stderr, icount or state hash differ"
    );
    assert_eq!(
        first.status.code(),
        second.status.code(),
        "{name}: exit status differs"
    );
}

#[test]
fn every_corpus_program_runs_identically_twice() {
    for p in PROGRAMS {
        for libc in ["musl", "glibc"] {
            twice(&format!("{p}-{libc}"));
        }
    }
}

#[test]
fn hello_musl_finishes_with_a_stable_report() {
    // Today's exact figures for the smallest program: a change in them is a change in what the guest executes.
    let e = emulate(&["--report-state"], &corpus_bin("hello-musl"), &[], b"");
    assert_eq!(e.status.code(), Some(0), "{}", text(&e.stderr));
    assert_eq!(text(&e.stdout), "hello, world\n");
    let report = text(&e.stderr);
    assert!(
        report.starts_with("tandem: icount 1121 state_hash 0x"),
        "{report}"
    );
}

/// Compiled blocks change nothing observable: Debian's busybox (gzip, sha256sum, sort, awk over a few hundred KB,
/// so that hot blocks compile, chain and take side exits) gives the same stdout, stderr, instruction count and
/// final state hash with and without `--no-jit`.
#[test]
fn busybox_is_identical_with_and_without_compiled_blocks() {
    let mut input = Vec::new();
    let mut x: u32 = 12345;
    for line in 0..12_000u32 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        input.extend_from_slice(
            format!("{} line {line} word{} {}\n", x % 977, x % 13, x >> 7).as_bytes(),
        );
    }
    for args in [
        &["gzip", "-c"][..],
        &["sha256sum"],
        &["sort", "-n"],
        &[
            "awk",
            "{ s[$3] += $1 } END { for (k in s) n++; print n, s[\"word7\"] }",
        ],
    ] {
        let with = emulate(&["--report-state"], "/bin/busybox", args, &input);
        let without = emulate(
            &["--report-state", "--no-jit"],
            "/bin/busybox",
            args,
            &input,
        );
        assert_eq!(
            with.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&with.stderr)
        );
        assert!(text(&with.stderr).contains(" state_hash 0x"), "{args:?}");
        assert_eq!(with.stdout, without.stdout, "{args:?}: stdout differs");
        assert_eq!(
            text(&with.stderr),
            text(&without.stderr),
            "{args:?}: icount or state hash differ"
        );
    }
}
