//! Every corpus program, built with musl and with glibc, runs natively and under `tandem run`; stdout and exit
//! status must match. Programs whose output depends on time or randomness (clock) are compared between two
//! emulated runs instead, and checked for the relations that hold on any correct system.

mod common;
use common::*;

fn same_as_native(name: &str, args: &[&str]) {
    let bin = corpus_bin(name);
    let n = native(&bin, args, &[], b"");
    let e = emulate(&[], &bin, args, b"");
    assert_same(name, &n, &e);
}

macro_rules! both_libcs {
    ($test:ident, $prog:literal, $args:expr) => {
        mod $test {
            use super::*;
            #[test]
            fn musl() {
                same_as_native(concat!($prog, "-musl"), $args);
            }
            #[test]
            fn glibc() {
                same_as_native(concat!($prog, "-glibc"), $args);
            }
        }
    };
}

both_libcs!(hello, "hello", &[]);
both_libcs!(malloc_stress, "malloc", &[]);
both_libcs!(qsort, "qsort", &[]);
both_libcs!(
    sha256,
    "sha256",
    &["", "abc", "The quick brown fox jumps over the lazy dog"]
);
both_libcs!(float_printf, "float", &[]);
both_libcs!(sigsegv_handler, "segv", &[]);
both_libcs!(setjmp_longjmp, "jmp", &[]);

/// Exceptions and panics unwind through libgcc's unwinder, which runs `rdsspq` (a NOP without shadow stacks)
/// on every throw: the C++ program must catch all its exceptions and the Rust one all its panics, with the same
/// stdout, stderr (the Rust panic hook's lines) and exit status (the number caught) as natively.
fn unwinds_as_natively(name: &str, caught: i32) {
    let bin = corpus_bin(name);
    let n = native(&bin, &[], &[], b"");
    let e = emulate(&[], &bin, &[], b"");
    assert_same(name, &n, &e);
    assert_eq!(text(&e.stderr), text(&n.stderr), "{name}: stderr");
    assert_eq!(
        e.status.code(),
        Some(caught),
        "{name}: everything thrown was caught"
    );
}

#[test]
fn cpp_exceptions_are_caught_glibc() {
    unwinds_as_natively("throw-glibc", 41);
}

#[test]
fn rust_panics_are_caught() {
    unwinds_as_natively("unwind-rust", 14);
}

fn args_and_env(name: &str) {
    let bin = corpus_bin(name);
    let args = ["one", "two words", "", "--three"];
    let n = native(&bin, &args, &[("HOME", "/home/guest"), ("LANG", "C")], b"");
    let e = emulate(
        &["--env", "HOME=/home/guest", "--env", "LANG=C"],
        &bin,
        &args,
        b"",
    );
    assert_same(name, &n, &e);
    assert_eq!(e.status.code(), Some(5), "exit status is argc");
}

#[test]
fn args_and_env_musl() {
    args_and_env("args-musl");
}

#[test]
fn args_and_env_glibc() {
    args_and_env("args-glibc");
}

fn file_io(name: &str) {
    let dir = scratch(&format!("fileio-{name}"));
    std::fs::write(dir.join("in.txt"), "first line\nsecond line\n").unwrap();
    std::fs::write(dir.join("other.dat"), [0u8, 1, 2]).unwrap();
    let d = dir.to_str().unwrap();
    let input = format!("{d}/in.txt");
    let output = format!("{d}/out.txt");
    let bin = corpus_bin(name);
    // Emulated first: it must leave the host directory untouched.
    let mount = d.to_string();
    let e = emulate(&["--mount", &mount], &bin, &[&input, &output, d], b"");
    assert!(
        !dir.join("out.txt").exists(),
        "the emulated run wrote to the host"
    );
    let n = native(&bin, &[&input, &output, d], &[], b"");
    assert_same(name, &n, &e);
    assert!(
        text(&e.stdout).contains("entry out.txt"),
        "{}",
        text(&e.stdout)
    );
}

#[test]
fn file_io_on_a_mount_musl() {
    file_io("fileio-musl");
}

#[test]
fn file_io_on_a_mount_glibc() {
    file_io("fileio-glibc");
}

fn clock_and_random(name: &str) {
    let bin = corpus_bin(name);
    let a = emulate(&["--seed", "5"], &bin, &[], b"");
    let b = emulate(&["--seed", "5"], &bin, &[], b"");
    let c = emulate(&["--seed", "6"], &bin, &[], b"");
    assert_eq!(a.status.code(), Some(0), "{}", text(&a.stderr));
    assert_eq!(a.stdout, b.stdout, "same seed, same output");
    let out = text(&a.stdout);
    assert!(out.contains("slept at least 250ms: yes"), "{out}");
    assert!(out.contains("getrandom 16:"), "{out}");
    // Guest time starts at 2024-01-01T00:00:00Z.
    assert!(out.starts_with("realtime 1704067200."), "{out}");
    let random = |o: &std::process::Output| {
        text(&o.stdout)
            .lines()
            .find(|l| l.starts_with("getrandom"))
            .map(str::to_string)
    };
    assert_ne!(random(&a), random(&c), "another seed, other random bytes");
}

#[test]
fn clock_and_getrandom_musl() {
    clock_and_random("clock-musl");
}

#[test]
fn clock_and_getrandom_glibc() {
    clock_and_random("clock-glibc");
}
