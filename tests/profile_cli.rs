//! `tandem profile` end to end: the static syscall profile of corpus programs contains every call their recorded
//! runs made (recall 1.0: a profile that kills a correct program is worse than none), and the exported seccomp
//! document is JSON that allows exactly the profile's calls by name.

mod common;
use common::*;
use std::process::Command;

#[test]
fn static_profiles_cover_the_recorded_runs_and_export_as_seccomp() {
    let dir = scratch("profile");
    for (program, args) in [
        ("hello-musl", vec![]),
        ("sha256-glibc", vec!["abc"]),
        ("threads-musl", vec![]),
        ("procs-glibc", vec![]),
    ] {
        let trace = dir.join(format!("{program}.trace"));
        let rec = record_trace(&trace, &[], &corpus_bin(program), &args, b"");
        assert!(rec.status.success(), "{program}: {}", text(&rec.stderr));
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
