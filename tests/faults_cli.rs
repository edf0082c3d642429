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
fn bit_flip_campaign_reports_silent_corruption_with_exit_1() {
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
    // Flipped bits in the table the program sums change its output while it exits 0: silent corruption.
    assert_eq!(out.status.code(), Some(1), "{table}{}", text(&out.stderr));
    assert!(
        text(&out.stderr).ends_with("runs were silently corrupted\n"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        table.contains("silently-corrupted runs (first 5):"),
        "{table}"
    );
    let header = table
        .lines()
        .find(|l| l.contains("masked") && l.contains("silently-corrupted"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(header.contains("crashed") && header.contains("exit-changed"));
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

#[test]
fn a_program_that_crashes_without_faults_is_judged_against_its_own_crash() {
    // crash-musl segv always dies of SIGSEGV: uncorrectable errors on its zero pages (recovered invisibly) change
    // nothing, so every run is masked, none "crashed" by the fault.
    let out = faults(&[
        "--seeds",
        "0..6",
        "--faults",
        "mem.ue:count=1,class=anon-zero",
        "--",
        "corpus/bin/crash-musl",
        "segv",
    ]);
    let table = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{table}{}", text(&out.stderr));
    assert!(
        table.contains("fault-free run: killed by SIGSEGV, 1997 instructions, 17 bytes of stdout"),
        "{table}"
    );
    let row = table
        .lines()
        .find(|l| l.starts_with("met a UE"))
        .unwrap_or_else(|| panic!("{table}"));
    let counts: Vec<u64> = row
        .split_whitespace()
        .skip(3)
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(counts, [6, 0, 0, 0, 0], "all masked: {row}");
    assert!(!table.contains("crashed runs"), "{table}");
}

#[test]
fn the_json_report_is_versioned_and_each_rows_reproduce_line_records_that_run() {
    let dir = scratch("faults-json");
    let json_path = dir.join("report.json");
    let out = faults(&[
        "--seeds",
        "0..6",
        "--jobs",
        "2",
        "--faults",
        "mem.flip:count=4,class=anon-dirty",
        "--json",
        json_path.to_str().unwrap(),
        "--",
        "corpus/bin/sigbus-musl",
        "8",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(report["format"], "tandem-faults-report");
    assert_eq!(report["version"], 1);
    assert_eq!(report["seeds"]["start"], 0);
    assert_eq!(report["seeds"]["end"], 6);
    assert_eq!(report["fault_free"]["end"]["kind"], "exited");
    assert_eq!(report["fault_free"]["exit_status"], 0);
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 6);
    let corrupted = runs
        .iter()
        .filter(|r| r["verdict"] == "silently-corrupted")
        .count();
    assert!(corrupted > 0);
    assert_eq!(report["silently_corrupted"], corrupted);
    assert_eq!(report["verdicts"]["silently-corrupted"], corrupted);
    for (seed, row) in runs.iter().enumerate() {
        assert_eq!(row["seed"], seed);
        assert_eq!(row["plan"]["fault_seed"], seed);
        assert_eq!(row["plan"]["faults"], report["faults"]);
        assert_eq!(row["faults"].as_array().unwrap().len(), 4, "{row}");
    }
    // The reproduce line of a row records exactly that run, and its trace replays.
    let row = &runs[2];
    let line = row["reproduce"].as_str().unwrap();
    assert!(
        line.starts_with("tandem record -o faults-seed-2.trace --seed 0 --fault-seed 2 --faults ")
            && line.ends_with(" -- corpus/bin/sigbus-musl 8 < /dev/null"),
        "{line}"
    );
    let command = line.replacen("tandem", tandem(), 1).replacen(
        "-o faults-seed-2.trace",
        &format!("-o {}", dir.join("seed-2.trace").display()),
        1,
    );
    let recorded = Command::new("sh")
        .args(["-c", &command])
        .current_dir(repo())
        .env_clear()
        .output()
        .unwrap();
    let stderr = text(&recorded.stderr);
    assert_eq!(
        recorded.status.code(),
        row["exit_status"].as_i64().map(|s| s as i32),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("tandem: recorded {} instructions", row["icount"])),
        "{stderr}"
    );
    for fault in row["faults"].as_array().unwrap() {
        assert!(
            stderr.contains(&format!("tandem: {}", fault.as_str().unwrap())),
            "the same faults fire: {fault} not in {stderr}"
        );
    }
    assert_eq!(
        recorded.stdout.len() as u64,
        row["stdout_bytes"].as_u64().unwrap()
    );
    let replay = Command::new(tandem())
        .args([
            "replay",
            "--quiet",
            dir.join("seed-2.trace").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(replay.status.code(), Some(0), "{}", text(&replay.stderr));
}

#[test]
fn jobs_are_bounded() {
    for jobs in ["0", "257"] {
        let out = faults(&[
            "--seeds",
            "0..2",
            "--jobs",
            jobs,
            "--",
            "corpus/bin/hello-musl",
        ]);
        assert_eq!(out.status.code(), Some(125));
        assert!(
            text(&out.stderr).contains(&format!(
                "--jobs {jobs}: give between 1 and 256 worker threads"
            )),
            "{}",
            text(&out.stderr)
        );
    }
}

/// The icount `--report-state` prints for a run.
fn icount_of(out: &std::process::Output) -> u64 {
    let stderr = text(&out.stderr);
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("tandem: icount "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no icount in {stderr}"))
}

/// An uncorrectable error on a clean page of libc's code (the page of puts, which the program calls after the
/// error) is contained as Linux contains it for a clean page-cache page: the page is re-read from the library
/// file, and the run prints exactly what the fault-free run printed. Without a source the page would be lost
/// and the call to puts a SIGBUS.
#[test]
fn a_clean_library_page_that_takes_an_error_is_reread_from_the_library() {
    let program = corpus_bin("maps-dyn");
    let clean = emulate(&["--report-state"], &program, &["xyz"], b"");
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean.stderr));
    let stdout = text(&clean.stdout);
    let (base, libc, _) = libc_mapping(&stdout);
    let page = (base + nm_dynamic(&libc, "puts").0) & !0xfff;
    // Two thirds in: libc is loaded and printing the maps, puts not called yet.
    let at = icount_of(&clean) * 2 / 3;
    let spec = format!("mem.ue:icount={at},addr={page:#x}");
    let out = emulate(&["--faults", &spec], &program, &["xyz"], b"");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(text(&out.stdout), stdout, "{stderr}");
    let report = stderr
        .lines()
        .find(|l| l.starts_with(&format!("tandem: memory-error v1 icount={at} kind=ue")))
        .unwrap_or_else(|| panic!("no report line: {stderr}"));
    assert!(
        report.ends_with(&format!(
            "vaddrs={page:#x} class=file-clean action=reread-from-file outcome=recovered"
        )),
        "{report}"
    );
}

/// A campaign over a dynamically linked program (plain gcc) runs with the default root, as `tandem record` of a
/// reproduce line does: every uncorrectable error on a clean file page (the program's, the loader's, libc's) is
/// re-read and masked, and the tables are the same at any --jobs.
#[test]
fn a_campaign_over_a_dynamic_program_rereads_clean_pages_at_any_jobs() {
    let args = |jobs: &'static str| {
        vec![
            "--seeds",
            "0..12",
            "--jobs",
            jobs,
            "--faults",
            "mem.ue:count=1,class=file-clean",
            "--",
            "corpus/bin/hello-dyn",
        ]
    };
    let one = faults(&args("1"));
    let two = faults(&args("2"));
    let table = text(&one.stdout);
    assert_eq!(one.status.code(), Some(0), "{table}{}", text(&one.stderr));
    assert_eq!(
        one.stdout, two.stdout,
        "tables differ between --jobs 1 and 2"
    );
    assert!(table.contains("containment violations: 0"), "{table}");
    assert!(table.contains("runs: 12"), "{table}");
    let clean = table
        .lines()
        .find(|l| l.starts_with("ue     file-clean"))
        .unwrap_or_else(|| panic!("{table}"));
    let counts: Vec<u64> = clean
        .split_whitespace()
        .skip(2)
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(
        (counts[0], counts[1]),
        (12, 12),
        "one error per run, every one recovered: {clean}\n{table}"
    );
    assert!(!table.contains("silently-corrupted runs"), "{table}");
}
