//! `tandem profile` end to end: the static syscall profile of corpus programs contains every call their recorded
//! runs made (recall 1.0: a profile that kills a correct program is worse than none), and the exported seccomp
//! document is JSON that allows exactly the profile's calls by name.

mod common;
use common::*;
use std::process::Command;

#[test]
fn static_profiles_cover_the_recorded_runs_and_export_as_seccomp() {
    let dir = scratch("profile");
    for (program, args, status) in [
        ("hello-musl", vec![], 0),
        ("sha256-glibc", vec!["abc"], 0),
        ("threads-musl", vec![], 0),
        ("procs-glibc", vec![], 0),
        // posix_spawn's child runs its file actions (dup2) through a switch whose table base is loaded before
        // the loop: with the no-return cuts, missing that table lost dup2. The guest has no /bin/sh (so that
        // the trace holds this program's calls only): the child's exec fails and popen reports it (status 1).
        ("popen-glibc", vec![], 1),
        // Dynamically linked: analysed with ld.so and libc from the host's root.
        ("hello-dyn", vec![], 0),
        ("threads-dyn", vec![], 0),
    ] {
        let trace = dir.join(format!("{program}.trace"));
        let rec = record_trace(&trace, &[], &corpus_bin(program), &args, b"");
        assert_eq!(
            rec.status.code(),
            Some(status),
            "{program}: {}",
            text(&rec.stderr)
        );
        let seccomp = dir.join(format!("{program}.json"));
        let out = Command::new(tandem())
            .arg("profile")
            .arg("--from")
            .arg(&trace)
            .arg("--seccomp")
            .arg(&seccomp)
            .arg("--")
            .arg(corpus_bin(program))
            .current_dir(repo())
            .output()
            .unwrap();
        let report = text(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{program}: {}",
            text(&out.stderr)
        );
        assert!(report.contains("recall 1.000"), "{program}:\n{report}");
        assert!(report.contains("# missed: none"), "{program}:\n{report}");
        let listed: Vec<String> = report
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
            .collect();
        assert!(
            listed.iter().any(|n| n == "exit_group"),
            "{program}:\n{report}"
        );
        if program == "popen-glibc" {
            assert!(listed.iter().any(|n| n == "dup2"), "{report}");
            assert!(
                text(&rec.stdout).contains("popen failed"),
                "{}",
                text(&rec.stdout)
            );
        }
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&seccomp).unwrap()).unwrap();
        assert_eq!(doc["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(doc["architectures"][0], "SCMP_ARCH_X86_64");
        let mut allowed: Vec<String> = doc["syscalls"][0]["names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_string())
            .collect();
        let mut expected = listed.clone();
        // The runtime's execve of the program is checked by the filter too (seccomp.rs).
        if !expected.iter().any(|n| n == "execve") {
            expected.push("execve".into());
        }
        allowed.sort();
        expected.sort();
        assert_eq!(allowed, expected, "{program}");
    }
    // A file that is not an ELF program is a clear error with tandem's failure status.
    let bad = dir.join("not-elf");
    std::fs::write(&bad, b"#!/bin/sh\necho hi\n").unwrap();
    let out = Command::new(tandem())
        .args(["profile", "--"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).starts_with("tandem: error: "),
        "{}",
        text(&out.stderr)
    );
}

/// `tandem profile -o FILE -- PROGRAM`: the profile file of a program's static profile.
fn write_profile(program: &str, path: &std::path::Path) -> String {
    let out = Command::new(tandem())
        .args(["profile", "-o"])
        .arg(path)
        .arg("--")
        .arg(program)
        .current_dir(repo())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{program}: {}",
        text(&out.stderr)
    );
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn a_profile_that_omits_a_call_the_program_makes_kills_it_with_a_report() {
    let dir = scratch("profile-enforce");
    let full = dir.join("hello.profile");
    let listed = write_profile(&corpus_bin("hello-musl"), &full);
    assert!(listed.starts_with("tandem-profile 1\n"), "{listed}");
    assert!(listed.contains("\nsyscall 20 writev\n"), "{listed}");
    // Without writev, musl's puts cannot print: the kill action ends the process at its first writev.
    let tight = dir.join("no-writev.profile");
    std::fs::write(&tight, listed.replace("syscall 20 writev\n", "")).unwrap();
    let tight_flag = tight.to_str().unwrap();
    let killed = emulate(
        &["--profile", tight_flag, "--profile-action", "kill"],
        &corpus_bin("hello-musl"),
        &[],
        b"",
    );
    assert_eq!(
        killed.status.code(),
        Some(128 + 31),
        "{}",
        text(&killed.stderr)
    );
    assert!(killed.stdout.is_empty());
    let report = text(&killed.stderr);
    assert!(
        report.contains("guest killed by SIGSYS (signal 31) at rip 0x")
            && report.contains("writev (number 20) denied by the profile"),
        "{report}"
    );
    assert!(
        report.contains("profile denied writev (number 20) to tid ")
            && report.contains(" at rip 0x"),
        "{report}"
    );
    // The rip reported is a syscall instruction of the program (0f 05 at that address of its image).
    let rip = report
        .split("at rip 0x")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .map(|h| u64::from_str_radix(h, 16).unwrap())
        .unwrap();
    let elf = std::fs::read(repo().join(corpus_bin("hello-musl"))).unwrap();
    let text_offset = rip - 0x40_0000; // the musl corpus programs are linked at 0x400000, file offset 0
    assert_eq!(
        &elf[text_offset as usize..text_offset as usize + 2],
        [0x0f, 0x05]
    );
    // EPERM: the call fails, the program goes on (puts fails, so nothing is printed) and exits by itself.
    let eperm = emulate(
        &["--profile", tight_flag],
        &corpus_bin("hello-musl"),
        &[],
        b"",
    );
    assert_eq!(eperm.status.code(), Some(0), "{}", text(&eperm.stderr));
    assert!(eperm.stdout.is_empty());
    assert!(
        text(&eperm.stderr).contains(": answered -EPERM"),
        "{}",
        text(&eperm.stderr)
    );
    // The full profile changes nothing.
    let allowed = emulate(
        &["--profile", full.to_str().unwrap()],
        &corpus_bin("hello-musl"),
        &[],
        b"",
    );
    assert_eq!(allowed.status.code(), Some(0));
    assert_eq!(text(&allowed.stdout), "hello, world\n");
    assert!(allowed.stderr.is_empty(), "{}", text(&allowed.stderr));
    // A malformed profile is tandem's input error, naming the file and the line.
    let bad = dir.join("bad.profile");
    std::fs::write(&bad, "tandem-profile 1\nsyscall 1 read\n").unwrap();
    let out = emulate(
        &["--profile", bad.to_str().unwrap()],
        &corpus_bin("hello-musl"),
        &[],
        b"",
    );
    assert_eq!(out.status.code(), Some(125));
    let err = text(&out.stderr);
    assert!(
        err.contains("bad.profile") && err.contains("line 2"),
        "{err}"
    );
}

/// Recall 1.0 live: every corpus program (static, and dynamically linked with the host's libraries) runs under
/// its own static profile (kill action) exactly as without one: same stdout, stderr, exit status, instruction
/// count and final state hash.
#[test]
fn each_corpus_program_runs_under_its_static_profile_as_without_one() {
    let dir = scratch("profile-live");
    let mut checked = 0;
    for entry in std::fs::read_dir(repo().join("corpus/bin")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let program = corpus_bin(&name);
        let profile = dir.join(format!("{name}.profile"));
        write_profile(&program, &profile);
        let flags = ["--report-state", "--max-insns", "200000000"];
        let plain = emulate(&flags, &program, &[], b"");
        let mut enforced = flags.to_vec();
        enforced.extend([
            "--profile",
            profile.to_str().unwrap(),
            "--profile-action",
            "kill",
        ]);
        let under = emulate(&enforced, &program, &[], b"");
        assert_eq!(
            plain.status.code(),
            under.status.code(),
            "{name}: {}",
            text(&under.stderr)
        );
        assert_eq!(text(&plain.stdout), text(&under.stdout), "{name}");
        assert_eq!(text(&plain.stderr), text(&under.stderr), "{name}");
        checked += 1;
    }
    assert!(checked >= 60, "only {checked} corpus programs");
}

/// The exported seccomp file is what a container runtime loads: libseccomp (Debian's python3-seccomp) reads it
/// through tests/data/seccomp_exec.py, the real kernel enforces it, and the program runs natively under it as
/// without it. A profile without the program's write is refused by the kernel (the output is lost), so the
/// filter is really in force.
#[test]
fn the_seccomp_export_loads_into_libseccomp_and_the_program_runs_under_it() {
    let dir = scratch("profile-seccomp");
    let loader = repo().join("tests/data/seccomp_exec.py");
    for (program, args) in [
        ("hello-musl", vec![]),
        ("hello-glibc", vec![]),
        ("sha256-glibc", vec!["abc"]),
        ("threads-musl", vec![]),
        ("procs-glibc", vec![]),
        ("go-hello", vec![]),
    ] {
        let json = dir.join(format!("{program}.json"));
        let out = Command::new(tandem())
            .args(["profile", "--seccomp"])
            .arg(&json)
            .arg("--")
            .arg(corpus_bin(program))
            .current_dir(repo())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let plain = native(&corpus_bin(program), &args, &[], b"");
        let filtered = Command::new("/usr/bin/python3")
            .arg(&loader)
            .arg(&json)
            .arg(corpus_bin(program))
            .args(&args)
            .current_dir(repo())
            .env_clear()
            .output()
            .unwrap();
        assert_eq!(
            filtered.status.code(),
            plain.status.code(),
            "{program}: {}",
            text(&filtered.stderr)
        );
        assert_eq!(text(&filtered.stdout), text(&plain.stdout), "{program}");
        assert!(!plain.stdout.is_empty(), "{program}");
    }
    // Without write and writev, musl's hello cannot print under the kernel's filter.
    let json = dir.join("hello-musl.json");
    let doc = std::fs::read_to_string(&json).unwrap();
    let tight = dir.join("tight.json");
    std::fs::write(
        &tight,
        doc.replace("\"writev\",", "").replace("\"write\",", ""),
    )
    .unwrap();
    let filtered = Command::new("/usr/bin/python3")
        .arg(&loader)
        .arg(&tight)
        .arg(corpus_bin("hello-musl"))
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(filtered.stdout.is_empty(), "{}", text(&filtered.stdout));
}
