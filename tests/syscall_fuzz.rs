//! Hostile system calls: corpus/bin/sysfuzz-{musl,glibc} make thousands of calls with random numbers and
//! arguments (bad pointers, -1, huge lengths, reversed ranges, real paths). Whatever they ask, the emulator answers
//! as a kernel would (an errno, a signal, the guest's death) and never panics; and hostile runs are as
//! deterministic as friendly ones, with or without compiled blocks.
//! With `tasks` the calls create processes and threads too (fork, vfork, clone and clone3 with random flags).
//! Found so far: close_range(first > last) panicked in BTreeMap::range (Linux answers EINVAL); a legacy clone's
//! exit signal above 64 (any low byte of the flags) indexed past the signal actions when the child exited.

mod common;

use common::{corpus_bin, emulate, native};
use std::path::Path;

const CALLS: &str = "3000";
const BUDGET: &str = "--max-insns=30000000";

fn assert_no_panic(program: &str, seed: u32, out: &std::process::Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code();
    assert!(
        !stderr.contains("panicked") && code != Some(101) && code != Some(125),
        "{program} seed {seed}: tandem failed (status {code:?}) instead of answering the guest; reproduce with \
         `tandem run {BUDGET} -- corpus/bin/{program} {seed} {CALLS}`\n{stderr}"
    );
}

fn fuzz(program: &str, seeds: std::ops::RangeInclusive<u32>, mode: &[&str]) {
    for seed in seeds {
        let seed_text = seed.to_string();
        let args: Vec<&str> = [seed_text.as_str(), CALLS]
            .into_iter()
            .chain(mode.iter().copied())
            .collect();
        let out = emulate(&[BUDGET], &corpus_bin(program), &args, b"");
        assert_no_panic(program, seed, &out);
    }
}

#[test]
fn hostile_syscalls_from_musl_never_panic_the_emulator() {
    // Seed 4 was the close_range panic.
    fuzz("sysfuzz-musl", 1..=120, &[]);
}

#[test]
fn hostile_syscalls_from_glibc_never_panic_the_emulator() {
    fuzz("sysfuzz-glibc", 1..=40, &[]);
}

#[test]
fn hostile_syscalls_that_create_processes_and_threads_never_panic_the_emulator() {
    // Seed 62 was the exit signal above 64.
    fuzz("sysfuzz-musl", 1..=100, &["tasks"]);
}

#[test]
fn hostile_runs_are_deterministic_with_and_without_compiled_blocks() {
    for seed in 1..=8u32 {
        let args = [seed.to_string(), CALLS.to_string()];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let program = corpus_bin("sysfuzz-musl");
        let first = emulate(&[BUDGET], &program, &args, b"");
        let again = emulate(&[BUDGET], &program, &args, b"");
        let interpreted = emulate(&[BUDGET, "--no-jit"], &program, &args, b"");
        assert_no_panic("sysfuzz-musl", seed, &first);
        for (what, other) in [("a second run", &again), ("--no-jit", &interpreted)] {
            assert_eq!(
                first.status.code(),
                other.status.code(),
                "seed {seed}: status differs in {what}"
            );
            assert!(
                first.stdout == other.stdout,
                "seed {seed}: the calls' results differ in {what}"
            );
        }
        // The run did make calls: the fuzzer is not dead on arrival.
        assert!(!first.stdout.is_empty(), "seed {seed}: no call was made");
    }
}

#[test]
fn close_range_with_first_after_last_is_einval() {
    // Seed 4 calls close_range with a reversed range early on; Linux answers EINVAL (-22) and goes on.
    let out = emulate(&[BUDGET], &corpus_bin("sysfuzz-musl"), &["4", CALLS], b"");
    assert_no_panic("sysfuzz-musl", 4, &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.lines().any(|l| l == "436 -22"),
        "no close_range answered EINVAL:\n{stdout}"
    );
}

#[test]
fn close_range_answers_as_linux_does() {
    // Reversed ranges, unknown flags, CLOSE_RANGE_CLOEXEC and an open-ended range, against the native run.
    for program in ["closerange-musl", "closerange-glibc"] {
        common::same_as_native(program, &[], &corpus_bin(program), &[]);
    }
}

#[test]
fn memory_locks_capabilities_scheduling_and_numa_answer_as_linux_does() {
    // mlock, munlock, mlock2, mlockall (ranges over a hole, unaligned ends, bad flags), capget and capset (every
    // version, unknown versions written back, bad pids, raising a set), pkey_alloc, pkey_free and pkey_mprotect,
    // sched_getscheduler, sched_getparam, sched_get_priority_max/min, sched_getattr, getpriority, get_mempolicy
    // (every flag, short and long node masks), set_mempolicy and mbind:
    // against the native run, which drops its capabilities first. A host CPU with protection keys gives keys
    // that tandem's CPU does not have: the pkey lines are compared only on a host without them.
    let host_has_pkeys = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .split_whitespace()
        .any(|flag| flag == "ospke");
    // tandem's machine has one NUMA node; a host with more answers the node-mask questions otherwise.
    let host_has_numa_nodes = Path::new("/sys/devices/system/node/node1").exists();
    for program in ["memlock-musl", "memlock-glibc"] {
        let bin = corpus_bin(program);
        let n = native(&bin, &[], &[], b"");
        let e = emulate(&[], &bin, &[], b"");
        let lines = |out: &std::process::Output| -> Vec<String> {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| !(host_has_pkeys && l.starts_with("pkey")))
                .filter(|l| !(host_has_numa_nodes && l.starts_with("numa")))
                .map(str::to_string)
                .collect()
        };
        assert_eq!(n.status.code(), Some(0), "{program} native");
        assert!(lines(&n).len() > 60, "{program}: {:?}", lines(&n));
        assert_eq!(
            lines(&n),
            lines(&e),
            "{program}: {}",
            String::from_utf8_lossy(&e.stderr)
        );
        assert!(
            e.stderr.is_empty(),
            "{program}: {}",
            String::from_utf8_lossy(&e.stderr)
        );
    }
}
