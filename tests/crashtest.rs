//! `tandem crashtest` end to end, on the corpus programs of the issue (14, part 5): a save in place without fsync
//! or rename is caught and an atomic save (temporary file, fsync, rename, fsync of the directory) is clean; SQLite
//! (Debian's libsqlite3, static) loses no acknowledged transaction with synchronous=FULL in rollback-journal and
//! WAL modes, and does with synchronous=OFF; the report is identical at --jobs 1 and 2; a reproduction line
//! reproduces its vulnerability; bad input is exit 125 with a message, never a panic.

mod common;
use common::*;
use std::process::{Command, Output};

fn crashtest(flags: &[&str], checker: &str, workload: &[&str]) -> (Output, Vec<serde_json::Value>) {
    let dir = scratch(&format!(
        "crashtest-{}",
        workload.join("-").replace('/', "_")
    ));
    let volume = format!("{}:/data", dir.display());
    let mut cmd = Command::new(tandem());
    cmd.current_dir(repo())
        .arg("crashtest")
        .args(["--volume", &volume, "--checker", checker, "--json"])
        .args(flags)
        .arg("--")
        .args(workload);
    let out = cmd.output().expect("tandem crashtest runs");
    assert!(
        !text(&out.stderr).contains("panicked"),
        "{}",
        text(&out.stderr)
    );
    let lines = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (out, lines)
}

fn summary(lines: &[serde_json::Value]) -> &serde_json::Value {
    let last = lines.last().expect("a summary line");
    assert_eq!(last["type"], "summary", "{last}");
    last
}

fn vulnerabilities(lines: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    lines
        .iter()
        .filter(|l| l["type"] == "vulnerability")
        .collect()
}

const SAVE: &str = "corpus/bin/save-musl";
const SQLITE: &str = "corpus/bin/sqlite-txn-glibc";

#[test]
fn a_save_in_place_without_fsync_is_caught_and_its_reproduction_reproduces() {
    let checker = format!("{SAVE} check /data");
    let (out, lines) = crashtest(&[], &checker, &[SAVE, "inplace", "/data", "3"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let s = summary(&lines);
    assert!(s["states"].as_u64().unwrap() >= 20, "{s}");
    let found = vulnerabilities(&lines);
    let kinds: Vec<&str> = found
        .iter()
        .map(|v| v["checker"].as_str().unwrap())
        .collect();
    // Nothing was ever synced: after "saved 1" a crash can leave no document, or the empty file O_TRUNC left, or a
    // document of which some sectors are new, or the previous version.
    assert!(
        kinds
            .iter()
            .any(|k| k.contains("an acknowledged save was lost") || k.contains("document missing")),
        "{kinds:?}"
    );
    assert!(
        kinds
            .iter()
            .any(|k| k.contains("torn or mixed") || k.contains("not a version")),
        "{kinds:?}"
    );
    // The reproduction line checks that one state again and finds it inconsistent.
    let line = found[0]["reproduce"].as_str().unwrap();
    assert!(line.starts_with("tandem crashtest --seed 0 "), "{line}");
    let out = Command::new("sh")
        .current_dir(repo())
        .arg("-c")
        .arg(line.replacen("tandem", tandem(), 1))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("(inconsistent)"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stdout).contains(found[0]["checker"].as_str().unwrap()),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn an_atomic_save_with_fsync_rename_and_directory_fsync_is_clean() {
    let checker = format!("{SAVE} check /data");
    let (out, lines) = crashtest(&[], &checker, &[SAVE, "atomic", "/data", "3"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let s = summary(&lines);
    assert_eq!(s["vulnerabilities"], 0, "{s}");
    assert!(s["points"].as_u64().unwrap() >= 12, "{s}");
    assert!(s["checks"].as_u64().unwrap() >= 10, "{s}");
}

#[test]
fn the_report_is_identical_at_any_jobs() {
    let checker = format!("{SAVE} check /data");
    let args = [SAVE, "inplace", "/data", "2"];
    let (one, _) = crashtest(&["--jobs", "1", "--seed", "5"], &checker, &args);
    let (two, _) = crashtest(&["--jobs", "2", "--seed", "5"], &checker, &args);
    assert_eq!(one.status.code(), Some(1));
    assert_eq!(text(&one.stdout), text(&two.stdout));
    assert_eq!(one.status.code(), two.status.code());
}

#[test]
fn bad_input_is_exit_125_with_a_message() {
    let checker = format!("{SAVE} check /data");
    let args = [SAVE, "inplace", "/data", "1"];
    for (only, says) in [
        ("9999:0", "the run has"),
        ("0:99999", "states"),
        ("x", "expected POINT:STATE"),
    ] {
        let (out, _) = crashtest(&["--only", only], &checker, &args);
        assert_eq!(out.status.code(), Some(125), "--only {only}");
        assert!(text(&out.stderr).contains(says), "{}", text(&out.stderr));
    }
    let (out, _) = crashtest(&["--jobs", "0"], &checker, &args);
    assert_eq!(out.status.code(), Some(125));
    let out = Command::new(tandem())
        .current_dir(repo())
        .args([
            "crashtest",
            "--volume",
            "/nonexistent-dir:/data",
            "--",
            SAVE,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("--volume"),
        "{}",
        text(&out.stderr)
    );
}

fn sqlite(mode: &str, sync: &str) -> (Output, Vec<serde_json::Value>) {
    let checker = format!("{SQLITE} check /data/t.db");
    crashtest(
        &["--jobs", "2", "--states-per-point", "16"],
        &checker,
        &[SQLITE, "run", "/data/t.db", mode, sync, "4"],
    )
}

#[test]
fn sqlite_with_synchronous_full_loses_no_committed_transaction() {
    for mode in ["journal", "wal"] {
        let (out, lines) = sqlite(mode, "full");
        let s = summary(&lines);
        assert_eq!(out.status.code(), Some(0), "{mode}: {}", text(&out.stdout));
        assert_eq!(s["workload_exit"], 0, "{mode}: {s}");
        assert!(s["states"].as_u64().unwrap() >= 50, "{mode}: {s}");
    }
}

#[test]
fn sqlite_with_synchronous_off_loses_committed_transactions() {
    for mode in ["journal", "wal"] {
        let (out, lines) = sqlite(mode, "off");
        assert_eq!(out.status.code(), Some(1), "{mode}: {}", text(&out.stderr));
        let kinds: Vec<&str> = vulnerabilities(&lines)
            .iter()
            .map(|v| v["checker"].as_str().unwrap())
            .collect();
        assert!(
            kinds
                .iter()
                .any(|k| k.contains("lost acknowledged transactions")),
            "{mode}: {kinds:?}"
        );
    }
}

/// Several volumes crash together, and --checker is split into words as a shell splits it: with a second
/// volume at a guest path holding a space, a save in place there is caught (the crash states are that volume's)
/// and its reproduction line, naming both volumes, reproduces it; an atomic save there is clean.
#[test]
fn several_volumes_crash_together_and_the_checker_is_split_like_a_shell() {
    let first = scratch("crashtest-two-volumes-first");
    std::fs::write(first.join("note.txt"), "untouched\n").unwrap();
    for (mode, status) in [("inplace", 1), ("atomic", 0)] {
        let second = scratch(&format!("crashtest-two-volumes-{mode}"));
        let out = Command::new(tandem())
            .current_dir(repo())
            .arg("crashtest")
            .arg("--volume")
            .arg(format!("{}:/first", first.display()))
            .arg("--volume")
            .arg(format!("{}:/my data", second.display()))
            .args(["--checker", &format!("{SAVE} check '/my data'"), "--json"])
            .args(["--", SAVE, mode, "/my data", "3"])
            .output()
            .unwrap();
        let lines: Vec<serde_json::Value> = text(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(
            out.status.code(),
            Some(status),
            "{mode}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        let found = vulnerabilities(&lines);
        if status == 0 {
            assert!(found.is_empty(), "{mode}: {found:?}");
            assert!(summary(&lines)["checks"].as_u64().unwrap() >= 10);
            continue;
        }
        let line = found[0]["reproduce"].as_str().unwrap();
        assert_eq!(line.matches(" --volume ").count(), 2, "{line}");
        let again = Command::new("sh")
            .current_dir(repo())
            .arg("-c")
            .arg(line.replacen("tandem", tandem(), 1))
            .output()
            .unwrap();
        assert_eq!(again.status.code(), Some(1), "{}", text(&again.stderr));
        assert!(
            text(&again.stdout).contains("(inconsistent)"),
            "{}",
            text(&again.stdout)
        );
    }
    let unterminated = Command::new(tandem())
        .current_dir(repo())
        .args(["crashtest", "--volume"])
        .arg(format!("{}:/first", first.display()))
        .args([
            "--checker",
            "check 'open",
            "--",
            SAVE,
            "atomic",
            "/first",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(unterminated.status.code(), Some(125));
    assert!(
        text(&unterminated.stderr).contains("unterminated quote"),
        "{}",
        text(&unterminated.stderr)
    );
}
