//! End-to-end tests of `tandem diff`: real recordings of corpus programs that part where we know they must
//! (different stdin, a modified build, a different seed), identical runs, and damaged traces.

mod common;

use common::{corpus_bin, record_trace, repo, tandem, text};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tandem-diff-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn record(trace: &Path, flags: &[&str], program: &str, args: &[&str], stdin: &[u8]) {
    let out = record_trace(trace, flags, &corpus_bin(program), args, stdin);
    assert!(trace.exists(), "recording failed: {}", text(&out.stderr));
}

fn diff(args: &[&Path], flags: &[&str]) -> Output {
    Command::new(tandem())
        .arg("diff")
        .args(flags)
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn diff_json(a: &Path, b: &Path) -> (serde_json::Value, Option<i32>) {
    let out = diff(&[a, b], &["--json"]);
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&out.stdout), text(&out.stderr)));
    (report, out.status.code())
}

/// The service's files: a document and a secret.
fn data_dir(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("readme"), "the service's readme\n").unwrap();
    std::fs::write(data.join("secret"), "s3cr3t-token\n").unwrap();
    data
}

/// `tandem debug TRACE`, `goto ICOUNT`: the position it reports (icount, rip and the instruction there).
fn instruction_at(trace: &Path, icount: u64) -> String {
    let script = trace.with_extension("script");
    std::fs::write(&script, format!("goto {icount}\n")).unwrap();
    let out = Command::new(tandem())
        .arg("debug")
        .arg(trace)
        .arg("-x")
        .arg(&script)
        .current_dir(repo())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    text(&out.stdout)
}

/// The same program with different stdin parts at the read of stdin: same result, different bytes read; the
/// icounts given land on the SYSCALL instruction in the debugger.
#[test]
fn different_stdin_parts_at_the_read_and_the_debugger_lands_on_it() {
    let dir = temp_dir("stdin");
    let (a, b) = (dir.join("a.trace"), dir.join("b.trace"));
    record(&a, &[], "service-musl", &["sum"], b"1 2 3\n");
    record(&b, &[], "service-musl", &["sum"], b"1 2 4\n");
    let (report, status) = diff_json(&a, &b);
    assert_eq!(status, Some(1), "{report}");
    assert_eq!(report["format"], "tandem-diff/1");
    assert_eq!(report["same"], false);
    let first = &report["comparison"]["first"];
    assert_eq!(first["a"]["name"], "read", "{report}");
    assert_eq!(first["a"]["args"], first["b"]["args"]);
    assert_eq!(first["a"]["result"], "6");
    assert_eq!(first["what"], "the bytes read");
    assert_eq!(first["a"]["data"]["excerpt"], "1 2 3\\n");
    assert_eq!(first["b"]["data"]["excerpt"], "1 2 4\\n");
    // The output differs too: 6 against 7.
    let end = report["comparison"]["end"].as_array().unwrap();
    assert!(end.iter().any(|e| e["what"] == "stdout"), "{report}");
    for (trace, side) in [(&a, "a"), (&b, "b")] {
        let icount = first[side]["icount"].as_u64().unwrap();
        let shown = instruction_at(trace, icount);
        assert!(
            shown.contains(&format!("icount {icount} rip")),
            "goto {icount}: {shown}"
        );
        assert!(shown.contains(": syscall"), "goto {icount}: {shown}");
    }
    let out = diff(&[&a, &b], &[]);
    let report = text(&out.stdout);
    assert!(
        report.contains("the runs part at system call #"),
        "{report}"
    );
    assert!(report.contains("read(0, ptr, 1024) = 6"), "{report}");
    assert!(report.contains("\"1 2 4\\n\""), "{report}");
}

/// Two builds of the service: the one that adds a network call parts at its socket(2), and the later
/// differences name the connect with its address.
#[test]
fn a_build_with_an_added_network_call_parts_at_socket() {
    let dir = temp_dir("builds");
    let data = data_dir(&dir);
    let mount = format!("{}:/data", data.display());
    let (a, b) = (dir.join("a.trace"), dir.join("b.trace"));
    record(
        &a,
        &["--mount", &mount],
        "service-musl",
        &["get", "readme"],
        b"",
    );
    record(
        &b,
        &["--mount", &mount],
        "service-net-musl",
        &["get", "readme"],
        b"",
    );
    let out = diff(&[&a, &b], &[]);
    let report = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}{}", text(&out.stderr));
    assert!(report.contains("(the system call;"), "{report}");
    assert!(report.contains("socket(2, 0x1, 0) = 3"), "{report}");
    assert!(
        report.contains("connect(3, {AF_INET 127.0.0.1:4444}, 16) = -ECONNREFUSED"),
        "{report}"
    );
    // The A side at the parting point is the open of the document, which B makes later: one inserted hunk.
    assert!(
        report.contains("open(\"/data/readme\", 0x8000) = 3"),
        "{report}"
    );
    assert!(report.contains("later differences: 1 hunk(s)"), "{report}");
    // Same output, same exit status: those are not differences.
    assert!(!report.contains("\nstdout:"), "{report}");
}

/// A different seed changes what getrandom returns: the runs part there.
#[test]
fn a_different_seed_parts_at_getrandom() {
    let dir = temp_dir("seed");
    let (a, b) = (dir.join("a.trace"), dir.join("b.trace"));
    record(&a, &["--seed", "1"], "clock-musl", &[], b"");
    record(&b, &["--seed", "2"], "clock-musl", &[], b"");
    let (report, status) = diff_json(&a, &b);
    assert_eq!(status, Some(1), "{report}");
    let first = &report["comparison"]["first"];
    assert_eq!(first["a"]["name"], "getrandom", "{report}");
    assert_eq!(first["what"], "the bytes read");
    assert_ne!(first["a"]["data"]["fnv"], first["b"]["data"]["fnv"]);
}

/// Two recordings of the same run are the same: exit 0, no parting point, no end differences.
#[test]
fn identical_runs_are_the_same() {
    let dir = temp_dir("same");
    let (a, b) = (dir.join("a.trace"), dir.join("b.trace"));
    record(&a, &[], "service-musl", &["sum"], b"40 2\n");
    record(&b, &[], "service-musl", &["sum"], b"40 2\n");
    let (report, status) = diff_json(&a, &b);
    assert_eq!(status, Some(0), "{report}");
    assert_eq!(report["same"], true);
    assert!(report["comparison"]["first"].is_null());
    assert_eq!(report["comparison"]["end"].as_array().unwrap().len(), 0);
    let out = diff(&[&a, &a], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).starts_with("the system calls agree"));
}

/// A corrupt, truncated or missing trace is tandem's failure (125), naming the file and the place.
#[test]
fn bad_traces_are_named_with_the_place() {
    let dir = temp_dir("bad");
    let good = dir.join("good.trace");
    record(&good, &[], "service-musl", &["sum"], b"1\n");
    let bytes = std::fs::read(&good).unwrap();
    let truncated = dir.join("truncated.trace");
    std::fs::write(&truncated, &bytes[..bytes.len() - 10]).unwrap();
    let mut flipped = bytes.clone();
    let at = bytes.len() - 30;
    flipped[at] ^= 0x40;
    let corrupt = dir.join("corrupt.trace");
    std::fs::write(&corrupt, &flipped).unwrap();
    let not_a_trace = dir.join("not.trace");
    std::fs::write(&not_a_trace, b"hello").unwrap();
    for (bad, expected) in [
        (&truncated, "truncated at chunk"),
        (&corrupt, "chunk"),
        (&not_a_trace, "not a tandem trace"),
        (&dir.join("missing.trace"), "cannot read the trace"),
    ] {
        let out = diff(&[&good, bad], &[]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{}: {err}", bad.display());
        assert!(err.contains(&bad.display().to_string()), "{err}");
        assert!(err.contains(expected), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
