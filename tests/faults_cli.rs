//! End-to-end tests of `tandem run --faults/--faults-file/--early-kill` and `tandem faults`: the SIGBUS recovery
//! program recovers, report lines are printed, bad plans are clear errors, campaigns keep the containment contract
//! and print the same tables at any --jobs.

mod common;
use common::*;
use std::process::Command;

/// Page 1 of the sigbus program's table (tandem's mmap placement is deterministic).
const TABLE_PAGE1: &str = "0x7ffff7ff8000";

fn faults(args: &[&str]) -> std::process::Output {
    Command::new(tandem())
        .arg("faults")
        .args(args)
        .current_dir(repo())
        .env_clear()
        .output()
        .expect("spawn tandem faults")
}

#[test]
fn sigbus_handler_recovers_a_lost_page_late_and_early() {
    for libc in ["musl", "glibc"] {
        let program = corpus_bin(&format!("sigbus-{libc}"));
        let clean = emulate(&[], &program, &["20"], b"");
        assert_eq!(clean.status.code(), Some(0));
        for (flags, code) in [(vec![], 4), (vec!["--early-kill"], 5)] {
            let spec = format!("mem.ue:icount=300000,addr={TABLE_PAGE1}");
            let mut all = vec!["--faults", spec.as_str()];
            all.extend(flags.iter().copied());
            let out = emulate(&all, &program, &["20"], b"");
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(0), "{libc} {flags:?}: {stderr}");
            assert_eq!(
                text(&out.stdout),
                text(&clean.stdout),
                "{libc}: recovered output equals the fault-free one"
            );
            assert!(
                stderr.contains(&format!("recomputed page 1 of the table (si_code {code})")),
                "{stderr}"
            );
            let action = if code == 4 {
                "sigbus-ar-on-touch"
            } else {
                "sigbus-ao-now"
            };
            let line = "tandem: memory-error v1 icount=300000 kind=ue frame=";
            let report = stderr
                .lines()
                .find(|l| l.starts_with(line))
                .unwrap_or_else(|| panic!("no report line: {stderr}"));
            assert!(
                report.ends_with(&format!(
                    "vaddrs={TABLE_PAGE1} class=anon-dirty action={action} outcome=recovered"
                )),
                "{report}"
            );
        }
    }
}

#[test]
fn an_unhandled_lost_page_kills_with_sigbus() {
    let out = emulate(
        &["--faults", "mem.ue:icount=300,addr=0x7fffffffe000"],
        &corpus_bin("hello-musl"),
        &[],
        b"",
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(128 + 7), "{stderr}");
    assert!(stderr.contains("guest killed by SIGBUS"), "{stderr}");
    assert!(
        stderr.contains("class=anon-dirty action=sigbus-ar-on-touch outcome=killed"),
        "{stderr}"
    );
}

#[test]
fn stats_list_the_plan_and_runs_are_deterministic() {
    let flags = [
        "--stats",
        "--report-state",
        "--fault-seed",
        "9",
        "--faults",
        "mem.ue:count=2,within=4000,mem.flip:rate=1e-3",
    ];
    let a = emulate(&flags, &corpus_bin("jmp-musl"), &[], b"");
    let b = emulate(&flags, &corpus_bin("jmp-musl"), &[], b"");
    let strip = |s: String| {
        s.lines()
            .filter(|l| !l.contains("MIPS"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let (sa, sb) = (strip(text(&a.stderr)), strip(text(&b.stderr)));
    assert_eq!(sa, sb);
    assert_eq!(a.stdout, b.stdout);
    assert!(
        sa.contains("tandem: fault plan (late kill, fault seed 9):"),
        "{sa}"
    );
    assert!(sa.contains("tandem:   mem.ue:count=2,within=4000"), "{sa}");
    assert!(sa.contains("tandem:   mem.flip:rate=1e-3"), "{sa}");
    assert_eq!(
        sa.matches("memory-error v1").count(),
        sa.matches("kind=").count()
    );
    assert!(sa.matches("kind=ue").count() == 2, "{sa}");
}

#[test]
fn bad_fault_plans_are_clear_errors() {
    let out = emulate(
        &["--faults", "mem.ue:rate=1e-6,mem.ue:icount=5"],
        &corpus_bin("hello-musl"),
        &[],
        b"",
    );
    assert_ne!(out.status.code(), Some(0));
    let e = text(&out.stderr);
    assert!(e.contains("--faults: item 2 `mem.ue:icount=5`: an explicit fault needs exactly one of addr= or frame="), "{e}");
    assert!(!e.contains("panicked"), "{e}");

    let out = emulate(
        &["--faults", "mem.ue:count=1"],
        &corpus_bin("hello-musl"),
        &[],
        b"",
    );
    assert!(
        text(&out.stderr).contains("needs within=ICOUNT"),
        "{}",
        text(&out.stderr)
    );

    let dir = std::env::temp_dir().join(format!("tandem-faults-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("plan.toml");
    std::fs::write(
        &file,
        "[[event]]\nkind = \"ue\"\nicount = 5\nadress = 0x1000\n",
    )
    .unwrap();
    let out = emulate(
        &["--faults-file", file.to_str().unwrap()],
        &corpus_bin("hello-musl"),
        &[],
        b"",
    );
    let e = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        e.contains("plan.toml: TOML:") && e.contains("line 4") && e.contains("adress"),
        "{e}"
    );

    std::fs::write(
        &file,
        "[[event]]\nkind = \"ue\"\nicount = 300\naddr = 0x7fffffffe000\n",
    )
    .unwrap();
    let out = emulate(
        &["--faults-file", file.to_str().unwrap()],
        &corpus_bin("hello-musl"),
        &[],
        b"",
    );
    assert_eq!(
        out.status.code(),
        Some(135),
        "a good file works: {}",
        text(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();

    let out = faults(&["--seeds", "5..5", "--", "corpus/bin/hello-musl"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("--seeds 5..5: the range is empty"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn ue_campaign_keeps_the_contract_and_is_identical_at_any_jobs() {
    let args = |jobs: &'static str| {
        vec![
            "--seeds",
            "0..24",
            "--jobs",
            jobs,
            "--faults",
            "mem.ue:count=1,class=anon-dirty,mem.ue:count=1",
            "--",
            "corpus/bin/sigbus-musl",
            "8",
        ]
    };
    let one = faults(&args("1"));
    let two = faults(&args("2"));
    let table = text(&one.stdout);
    assert_eq!(
        one.status.code(),
        Some(0),
        "violations found:\n{table}{}",
        text(&one.stderr)
    );
    assert_eq!(
        one.stdout, two.stdout,
        "tables differ between --jobs 1 and 2"
    );
    assert!(table.contains("containment violations: 0"), "{table}");
    assert!(table.contains("runs: 24"), "{table}");
    // Dirty table pages are recovered by the handler; other dirty pages kill or stay latent; clean ones recover.
    let dirty = table
        .lines()
        .find(|l| l.starts_with("ue     anon-dirty"))
        .unwrap_or_else(|| panic!("{table}"));
    let counts: Vec<u64> = dirty
        .split_whitespace()
        .skip(2)
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(
        counts[0] >= 24,
        "at least one dirty-page error per run: {dirty}"
    );
    assert_eq!(counts[5], 0, "no dirty-page error is undetected: {dirty}");
    assert!(!table.contains("silently-corrupted runs"), "{table}");
}

#[test]
fn bit_flip_campaign_reports_corrupted_crashed_unaffected() {
    let out = faults(&[
        "--seeds",
        "0..24",
        "--jobs",
        "2",
        "--faults",
        "mem.flip:count=4,class=anon-dirty",
        "--",
        "corpus/bin/sigbus-musl",
        "8",
    ]);
    let table = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{table}{}", text(&out.stderr));
    let header = table
        .lines()
        .find(|l| l.contains("unaffected") && l.contains("silently-corrupted"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(header.contains("crashed"));
    let row = table
        .lines()
        .find(|l| l.starts_with("no UE"))
        .unwrap_or_else(|| panic!("{table}"));
    let total: u64 = row
        .split_whitespace()
        .skip(2)
        .map(|n| n.parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 24, "every run has a verdict: {row}");
    assert!(
        table.contains("flip   anon-dirty") && table.contains("undetected"),
        "{table}"
    );
}
