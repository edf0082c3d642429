//! The `tandem run` command line: help, exit statuses, clean stops and clear errors on bad input.

mod common;
use common::*;
use std::process::Command;

#[test]
fn help_explains_every_flag_with_an_example() {
    let out = Command::new(tandem())
        .args(["run", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = text(&out.stdout);
    for flag in [
        "--seed",
        "--max-insns",
        "--mount",
        "--env",
        "--strict",
        "--stats",
    ] {
        let line_start = help
            .find(flag)
            .unwrap_or_else(|| panic!("{flag} missing from\n{help}"));
        let rest = &help[line_start..];
        let next_flag = rest[2..].find("\n  -").map(|i| i + 2).unwrap_or(rest.len());
        assert!(
            rest[..next_flag].contains("Example"),
            "{flag} has no example:\n{}",
            &rest[..next_flag]
        );
    }
    assert!(!help.contains("report-state"), "hidden flags stay hidden");
}

#[test]
fn exit_status_and_output_mirror_the_guest() {
    let e = emulate(&[], &corpus_bin("hello-musl"), &[], b"");
    assert_eq!(text(&e.stdout), "hello, world\n");
    assert_eq!(e.status.code(), Some(0));
    assert!(e.stderr.is_empty(), "{}", text(&e.stderr));
}

#[test]
fn max_insns_is_a_clean_stop_with_a_message() {
    let e = emulate(&["--max-insns", "100"], &corpus_bin("hello-musl"), &[], b"");
    assert_eq!(e.status.code(), Some(124));
    let err = text(&e.stderr);
    assert!(
        err.contains("stopped after 100 instructions (--max-insns)"),
        "{err}"
    );
    assert!(e.stdout.is_empty());
}

#[test]
fn stats_print_instructions_mips_and_a_syscall_histogram() {
    let e = emulate(&["--stats"], &corpus_bin("hello-musl"), &[], b"");
    assert_eq!(e.status.code(), Some(0));
    let err = text(&e.stderr);
    assert!(
        err.contains(" instructions in ") && err.contains(" MIPS"),
        "{err}"
    );
    assert!(err.contains("tandem:   exit_group           1"), "{err}");
    assert!(err.contains("tandem:   writev"), "{err}");
}

/// A dynamically linked program runs from the host's root by default (tests/dynamic.rs compares many with
/// native runs); with a root that lacks its loader it is refused, naming the loader and --root.
#[test]
fn a_dynamic_binary_runs_from_the_hosts_root_or_names_its_missing_loader() {
    let e = emulate(&[], "/bin/ls", &["corpus"], b"");
    assert_eq!(e.status.code(), Some(0), "{}", text(&e.stderr));
    assert!(text(&e.stdout).contains("bin\n"), "{}", text(&e.stdout));
    let e = emulate(&["--root", "corpus"], "/bin/ls", &[], b"");
    assert_eq!(e.status.code(), Some(125));
    let err = text(&e.stderr);
    assert!(err.contains("cannot load /bin/ls"), "{err}");
    assert!(
        err.contains("interpreter /lib64/ld-linux-x86-64.so.2") && err.contains("--root"),
        "{err}"
    );
}

#[test]
fn malformed_and_missing_programs_are_clear_errors_not_panics() {
    let dir = scratch("cli-bad-input");
    let truncated = dir.join("truncated");
    let hello = std::fs::read(repo().join("corpus/bin/hello-musl")).unwrap();
    std::fs::write(&truncated, &hello[..100]).unwrap();
    // Text without a `#!` line: Linux's execve answers ENOEXEC (a script with one runs under its interpreter).
    let script = dir.join("script.sh");
    std::fs::write(&script, "echo hi\n").unwrap();
    for (path, expected) in [
        (
            truncated.to_str().unwrap(),
            "program header table at offset 0x40",
        ),
        (script.to_str().unwrap(), "not an ELF file"),
        (
            "/nonexistent/program",
            "cannot read the program /nonexistent/program",
        ),
    ] {
        let e = emulate(&[], path, &[], b"");
        let err = text(&e.stderr);
        assert_ne!(e.status.code(), Some(0), "{path}");
        assert!(
            err.contains(path) && err.contains(expected),
            "{path}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    let e = emulate(
        &["--mount", "/nonexistent:/x"],
        &corpus_bin("hello-musl"),
        &[],
        b"",
    );
    assert!(
        text(&e.stderr).contains("--mount /nonexistent:/x"),
        "{}",
        text(&e.stderr)
    );
    let e = emulate(&["--env", "NOEQUALS"], &corpus_bin("hello-musl"), &[], b"");
    assert!(
        text(&e.stderr).contains("expected K=V"),
        "{}",
        text(&e.stderr)
    );
}

#[test]
fn errors_are_one_line_with_status_125_even_with_backtraces_enabled() {
    let out = Command::new(tandem())
        .args(["run", "--", "corpus/src/hello.c"])
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    // 125, not 2: a guest exiting 2 must not look like tandem's own failure.
    assert_eq!(out.status.code(), Some(125));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one line, no backtrace:\n{err}");
    assert!(
        err.starts_with("tandem: error: cannot load corpus/src/hello.c: not an ELF file"),
        "{err}"
    );
}

/// `--syscall-faults` fails the Nth call of a syscall as Linux itself does when strace injects the same error
/// (`strace -e inject=SYSCALL:error=E:when=N`, the oracle): the same output, error message and exit status. The
/// plan is an input of the run: a recording holds it and replays verified. A fault whose call is never made is
/// reported; a malformed one is refused before the guest starts.
#[test]
fn syscall_faults_fail_calls_as_linux_does_under_strace_injection() {
    for (fault, inject, args, stdin) in [
        (
            "write 1 errno EIO",
            "write:error=EIO:when=1",
            &["echo", "hi"][..],
            &b""[..],
        ),
        (
            "read 1 errno EIO",
            "read:error=EIO:when=1",
            &["head", "-n", "1"][..],
            &b"abc\n"[..],
        ),
        (
            "read 1 errno EIO",
            "read:error=EIO:when=1",
            &["md5sum"][..],
            &b"abc\n"[..],
        ),
        (
            "write 1 errno ENOSPC",
            "write:error=ENOSPC:when=1",
            &["seq", "3"][..],
            &b""[..],
        ),
    ] {
        let mut cmd = Command::new("strace");
        cmd.args([
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            &format!("inject={inject}"),
            "/bin/busybox",
        ])
        .args(args)
        .env_clear()
        .current_dir(repo())
        .stdin(std::process::Stdio::piped());
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("strace (apt install strace)");
        use std::io::Write;
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let native = child.wait_with_output().unwrap();
        assert_ne!(
            native.status.code(),
            Some(0),
            "{fault}: the fault shows natively"
        );
        let flags = ["--syscall-faults", fault];
        let e = emulate(&flags, "/bin/busybox", args, stdin);
        assert_same(&format!("{fault} {args:?}"), &native, &e);
        let trace = scratch("syscall-faults").join(format!("{}.trace", args[0]));
        let rec = record_trace(&trace, &flags, "/bin/busybox", args, stdin);
        assert_eq!(rec.stdout, e.stdout, "{fault}: recorded as run");
        assert_eq!(rec.status.code(), e.status.code(), "{fault}");
        let replay = Command::new(tandem())
            .arg("replay")
            .arg(&trace)
            .output()
            .unwrap();
        assert!(
            replay.status.code() == Some(0)
                && text(&replay.stderr).contains(&format!(
                    "the guest's exit status {}, as recorded",
                    e.status.code().unwrap()
                )),
            "{fault}: {}",
            text(&replay.stderr)
        );
        assert_eq!(replay.stdout, e.stdout, "{fault}: replayed with the fault");
    }
    let e = emulate(
        &["--syscall-faults", "write 1 errno EIO;write 7 errno EIO"],
        "/bin/busybox",
        &["echo", "hi"],
        b"",
    );
    assert!(
        text(&e.stderr).contains("--syscall-faults 'write 7 errno EIO' never fired"),
        "{}",
        text(&e.stderr)
    );
    for bad in [
        "write 0 errno EIO",
        "frobnicate 1 errno EIO",
        "write 1 errno",
        "read 1 short 0",
    ] {
        let e = emulate(
            &["--syscall-faults", bad],
            &corpus_bin("hello-musl"),
            &[],
            b"",
        );
        assert_eq!(e.status.code(), Some(125), "{bad}");
        assert!(e.stdout.is_empty(), "{bad}: the guest ran");
        assert!(
            text(&e.stderr).contains(&format!("--syscall-faults '{bad}'")),
            "{bad}: {}",
            text(&e.stderr)
        );
    }
}

/// A program that is a script runs as Linux's binfmt_script runs it: its `#!` interpreter (with the line's one
/// argument) gets the script's path and the arguments, whatever the user named (a path, or a name looked up on
/// PATH). Compared with the native run, and recorded and replayed; a `#!` line without an interpreter is a clear
/// error.
#[test]
fn a_script_runs_under_its_interpreter_as_on_linux() {
    let dir = scratch("script-program");
    let script = dir.join("show.sh");
    // `-e` reaches the interpreter as its one argument: the script stops at `false` with status 1.
    std::fs::write(
        &script,
        "#!/bin/sh -e\necho \"0=$0 n=$# 1=$1 2=$2\"\nread line; echo \"stdin: $line\"\nfalse\necho not reached\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = script.to_str().unwrap();
    let n = native(s, &["one", "two words"], &[], b"typed\n");
    assert_eq!(n.status.code(), Some(1), "{}", text(&n.stderr));
    assert!(
        text(&n.stdout).contains("n=2 1=one 2=two words"),
        "{}",
        text(&n.stdout)
    );
    let e = emulate(&[], s, &["one", "two words"], b"typed\n");
    assert_same("#!/bin/sh -e script", &n, &e);
    let trace = dir.join("script.trace");
    let rec = record_trace(&trace, &[], s, &["one", "two words"], b"typed\n");
    assert_eq!(rec.stdout, n.stdout, "{}", text(&rec.stderr));
    let rep = Command::new(tandem())
        .args(["replay", "--quiet"])
        .arg(&trace)
        .env_clear()
        .output()
        .unwrap();
    assert!(
        text(&rep.stderr).contains(": verified: "),
        "{}",
        text(&rep.stderr)
    );
    // ldd is a bash script found on PATH: it runs bash, which runs the loader in a child.
    let n = Command::new("ldd").arg("/bin/true").output().unwrap();
    let e = Command::new(tandem())
        .args(["run", "--", "ldd", "/bin/true"])
        .output()
        .unwrap();
    let without_vdso_and_addresses = |out: &[u8]| -> Vec<String> {
        text(out)
            .lines()
            .filter(|l| !l.contains("linux-vdso"))
            .map(|l| l.split(" (0x").next().unwrap().to_string())
            .collect()
    };
    assert_eq!(e.status.code(), Some(0), "{}", text(&e.stderr));
    assert_eq!(
        without_vdso_and_addresses(&n.stdout),
        without_vdso_and_addresses(&e.stdout)
    );
    let bad = dir.join("bad.sh");
    std::fs::write(&bad, "#!  \necho hi\n").unwrap();
    let e = emulate(&[], bad.to_str().unwrap(), &[], b"");
    assert_eq!(e.status.code(), Some(125));
    assert!(
        text(&e.stderr).contains("bad.sh: its #! line names no interpreter"),
        "{}",
        text(&e.stderr)
    );
}
