//! Every input file is read with a bound (scenarios/src/input.rs): an oversized regular file is refused from its
//! size, an endless one (/dev/zero) after the maximum, each with the file named and the maximum, never by
//! exhausting the host.

mod common;
use common::*;
use std::process::{Command, Stdio};

fn run(args: &[&str]) -> std::process::Output {
    Command::new(tandem())
        .args(args)
        .current_dir(repo())
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// A sparse file of `size_bytes`: it costs no disk, and reading it would cost its whole size.
fn sparse(dir: &std::path::Path, name: &str, size_bytes: u64) -> String {
    let path = dir.join(name);
    std::fs::File::create(&path)
        .unwrap()
        .set_len(size_bytes)
        .unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn oversized_programs_and_traces_are_refused_without_reading_them() {
    let dir = scratch("inputs-sparse");
    let program = sparse(&dir, "program", (256 << 20) + 1);
    let trace = sparse(&dir, "x.trace", (4 << 30) + 1);
    for (args, expected) in [
        (
            vec!["run", "--", program.as_str()],
            format!("the program {program} is larger than 268435456 bytes"),
        ),
        (
            vec!["record", "-o", "/dev/null", "--", program.as_str()],
            format!("the program {program} is larger than 268435456 bytes"),
        ),
        (
            vec!["faults", "--seeds", "0..1", "--", program.as_str()],
            format!("the program {program} is larger than 268435456 bytes"),
        ),
        // Traces are read chunk by chunk (never whole), so their size is not bounded; what bounds memory is
        // each chunk's length, checked as it is read. A sparse file of zeros is refused at its first byte.
        (
            vec!["replay", trace.as_str()],
            "not a tandem trace".to_string(),
        ),
        (
            vec!["debug", trace.as_str()],
            "not a tandem trace".to_string(),
        ),
    ] {
        let out = run(&args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {err}");
        assert!(err.contains(&expected), "{args:?}: {err}");
    }
}

#[test]
fn endless_inputs_are_refused_at_their_maximum() {
    let dir = scratch("inputs-zero");
    let trace = dir.join("hello.trace");
    let out = record_trace(&trace, &[], &corpus_bin("hello-musl"), &[], b"");
    assert_eq!(out.status.code(), Some(0));
    let trace = trace.to_str().unwrap();
    for (args, expected) in [
        (
            vec![
                "run",
                "--faults-file",
                "/dev/zero",
                "--",
                "corpus/bin/hello-musl",
            ],
            "--faults-file: the faults file /dev/zero is larger than 4194304 bytes",
        ),
        (
            vec![
                "faults",
                "--seeds",
                "0..1",
                "--faults-file",
                "/dev/zero",
                "--",
                "corpus/bin/hello-musl",
            ],
            "the faults file /dev/zero is larger than 4194304 bytes",
        ),
        (
            vec!["debug", trace, "-x", "/dev/zero"],
            "the debugger script /dev/zero is larger than 4194304 bytes",
        ),
    ] {
        let out = run(&args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    // Commands on stdin are bounded the same way.
    let out = Command::new(tandem())
        .args(["debug", trace])
        .stdin(std::fs::File::open("/dev/zero").unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("the debugger script stdin is larger than 4194304 bytes"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn non_regular_inputs_within_the_bound_are_read() {
    // A program through a pipe: /dev/stdin is not a regular file, and is read to its end.
    let hello = std::fs::read(repo().join("corpus/bin/hello-musl")).unwrap();
    let mut cmd = Command::new(tandem());
    cmd.args(["run", "--", "/dev/stdin"]);
    cmd.env_clear();
    let mut child = cmd
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&hello).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(text(&out.stdout), "hello, world\n", "{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(0));
}
