//! Helpers shared by the end-to-end tests: run the built `tandem` binary and the same program natively.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn tandem() -> &'static str {
    env!("CARGO_BIN_EXE_tandem")
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A corpus binary, as a path relative to the repository (so argv[0] is the same natively and emulated).
pub fn corpus_bin(name: &str) -> String {
    format!("corpus/bin/{name}")
}

fn finish(mut cmd: Command, stdin: &[u8]) -> Output {
    cmd.current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    // A writer thread, so a program that does not read all of stdin cannot deadlock the test.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait");
    writer.join().unwrap();
    out
}

/// `tandem run FLAGS -- PROGRAM ARGS` with the given stdin.
pub fn emulate(flags: &[&str], program: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut cmd = Command::new(tandem());
    cmd.arg("run").args(flags).arg("--").arg(program).args(args);
    cmd.env_clear();
    finish(cmd, stdin)
}

/// `tandem record -o TRACE FLAGS -- PROGRAM ARGS` with the given stdin.
pub fn record_trace(
    trace: &Path,
    flags: &[&str],
    program: &str,
    args: &[&str],
    stdin: &[u8],
) -> Output {
    let mut cmd = Command::new(tandem());
    cmd.arg("record")
        .arg("-o")
        .arg(trace)
        .args(flags)
        .arg("--")
        .arg(program)
        .args(args);
    cmd.env_clear();
    finish(cmd, stdin)
}

/// The same program run natively, with an empty environment plus `env`.
pub fn native(program: &str, args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args).env_clear();
    for (k, v) in env {
        cmd.env(k, v);
    }
    finish(cmd, stdin)
}

/// Runs `cmd` (a tandem command) from the repository and asserts it exits 0; its output. `what` names it in the
/// failure message.
pub fn succeeds(mut cmd: Command, what: &str) -> Output {
    let out = cmd.current_dir(repo()).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{what}: {}", text(&out.stderr));
    out
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Asserts that the emulated run matches the native one in stdout and exit status, printing both on failure.
pub fn assert_same(what: &str, native: &Output, emulated: &Output) {
    assert!(
        native.stdout == emulated.stdout && native.status.code() == emulated.status.code(),
        "{what}: native and emulated runs differ\n--- native (status {:?})\n{}\n--- emulated (status {:?})\n{}\n--- emulated stderr\n{}",
        native.status.code(),
        text(&native.stdout),
        emulated.status.code(),
        text(&emulated.stdout),
        text(&emulated.stderr)
    );
}

/// A scratch directory for one test, under cargo's per-target temporary directory.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `program` natively and under `tandem run FLAGS`: the native run must print something, and stdout and the
/// exit status must be the same. Returns the emulated run.
pub fn same_as_native(name: &str, flags: &[&str], program: &str, args: &[&str]) -> Output {
    same_as_native_given(name, flags, program, args, b"")
}

/// `same_as_native` with `stdin` given to both runs.
pub fn same_as_native_given(
    name: &str,
    flags: &[&str],
    program: &str,
    args: &[&str],
    stdin: &[u8],
) -> Output {
    let n = native(program, args, &[], stdin);
    let e = emulate(flags, program, args, stdin);
    assert!(
        !n.stdout.is_empty(),
        "{name}: the native run printed nothing: {}",
        text(&n.stderr)
    );
    assert_same(name, &n, &e);
    e
}

/// Records `program` with `flags` into `trace` (it must exit 0) and replays the trace: `tandem replay` must say
/// verified.
pub fn records_and_replays_verified(trace: &Path, flags: &[&str], program: &str, args: &[&str]) {
    let rec = record_trace(trace, flags, program, args, b"");
    assert_eq!(
        rec.status.code(),
        Some(0),
        "{program}: {}",
        text(&rec.stderr)
    );
    let rep = Command::new(tandem())
        .args(["replay", "--quiet"])
        .arg(trace)
        .current_dir(repo())
        .env_clear()
        .output()
        .unwrap();
    let err = text(&rep.stderr);
    assert_eq!(rep.status.code(), Some(0), "{program}: {err}");
    assert!(err.contains(": verified: "), "{program}: {err}");
}

/// Where the loader put libc in a run, from that run's /proc/self/maps lines: (the start of libc's mapping at
/// file offset 0, libc's path, the end of its executable mapping's range as [start, end)).
pub fn libc_mapping(maps: &str) -> (u64, String, (u64, u64)) {
    let hex = |s: &str| u64::from_str_radix(s, 16).unwrap();
    let lines: Vec<Vec<&str>> = maps
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() == 6 && f[5].ends_with("/libc.so.6"))
        .collect();
    let first = lines
        .iter()
        .find(|f| f[2] == "00000000")
        .unwrap_or_else(|| panic!("no libc mapping at offset 0 in\n{maps}"));
    let base = hex(first[0].split('-').next().unwrap());
    let text = lines
        .iter()
        .find(|f| f[1].contains('x'))
        .unwrap_or_else(|| panic!("no executable libc mapping in\n{maps}"));
    let (lo, hi) = text[0].split_once('-').unwrap();
    (base, first[5].to_string(), (hex(lo), hex(hi)))
}

/// The value `nm -D --defined-only` gives the dynamic symbol `name` of the shared object at `path`, with its
/// type letter (`T`, `W`, `i` for an indirect function).
pub fn nm_dynamic(path: &str, name: &str) -> (u64, char) {
    let out = Command::new("nm")
        .args(["-D", "--defined-only", path])
        .output()
        .expect("cannot run nm (Debian package binutils)");
    let listing = text(&out.stdout);
    listing
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let symbol = f.get(2)?.split('@').next()?;
            (f.len() == 3 && symbol == name).then(|| {
                let value = u64::from_str_radix(f[0], 16).unwrap();
                (value, f[1].chars().next().unwrap())
            })
        })
        .unwrap_or_else(|| panic!("nm -D {path} has no {name}"))
}
