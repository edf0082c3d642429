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
    let n = native(program, args, &[], b"");
    let e = emulate(flags, program, args, b"");
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
