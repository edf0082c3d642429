//! End-to-end tests of `tandem baseline`: the service of corpus/src/service.c recorded as a baseline, checked
//! unchanged (passes), against a build that leaks a file and one that adds a network call (each named with the
//! operation and the first differing system call), and the fail-closed cases: a tampered, missing or
//! wrongly keyed baseline, an operation removed, an operation that cannot run.

mod common;

use common::{repo, tandem, text};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A service directory: its documents (one of them a secret) and the spec of four operations.
fn service(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tandem-baseline-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join("data/readme"), "the service's readme\n").unwrap();
    std::fs::write(dir.join("data/secret"), "s3cr3t-token\n").unwrap();
    std::fs::write(dir.join("numbers.txt"), "1 2 3 4\n").unwrap();
    let program = repo().join("corpus/bin/service-musl");
    let spec = format!(
        r#"program = "{}"

[[operation]]
name = "get-readme"
args = ["get", "readme"]
mounts = ["data:/data"]
syscalls = ["arch_prctl", "set_tid_address", "open", "read", "write", "close", "exit_group"]

[[operation]]
name = "list"
args = ["list"]
mounts = ["data:/data"]

[[operation]]
name = "sum"
args = ["sum"]
stdin_file = "numbers.txt"

[[operation]]
name = "put"
args = ["put", "note"]
stdin = "a note\n"
"#,
        program.display()
    );
    std::fs::write(dir.join("service.toml"), spec).unwrap();
    dir
}

fn baseline(dir: &Path, args: &[&str]) -> Output {
    Command::new(tandem())
        .arg("baseline")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn record(dir: &Path, extra: &[&str]) {
    let mut args = vec!["record", "service.toml"];
    args.extend_from_slice(extra);
    let out = baseline(dir, &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

fn check(dir: &Path, extra: &[&str]) -> (String, Option<i32>) {
    let mut args = vec!["check", "service.toml"];
    args.extend_from_slice(extra);
    let out = baseline(dir, &args);
    (text(&out.stdout) + &text(&out.stderr), out.status.code())
}

fn build(name: &str) -> String {
    repo().join("corpus/bin").join(name).display().to_string()
}

#[test]
fn an_unchanged_service_passes() {
    let dir = service("same");
    record(&dir, &[]);
    assert!(dir.join("service.baseline.json").exists());
    let (report, status) = check(&dir, &[]);
    assert_eq!(status, Some(0), "{report}");
    assert!(
        report.starts_with("4 operations: 4 same, 0 changed, 0 failed"),
        "{report}"
    );
    // The baseline holds what each operation did.
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("service.baseline.json")).unwrap()).unwrap();
    assert_eq!(file["format"], "tandem-baseline/1");
    assert_eq!(file["digest"]["algorithm"], "sha256");
    let ops = file["body"]["operations"].as_array().unwrap();
    assert_eq!(ops[0]["files_read"], serde_json::json!(["/data/readme"]));
    assert_eq!(ops[0]["stdout"]["head"], "the service\\'s readme\\n");
    assert_eq!(ops[2]["stdout"]["head"], "10\\n");
    assert_eq!(ops[3]["files_written"], serde_json::json!(["/tmp/note"]));
}

#[test]
fn a_build_that_leaks_a_file_is_named_with_the_open_of_the_secret() {
    let dir = service("leak");
    record(&dir, &[]);
    let leak = build("service-leak-musl");
    let (report, status) = check(&dir, &["--program-override", &leak]);
    assert_eq!(status, Some(1), "{report}");
    assert!(report.contains("CHANGED get-readme"), "{report}");
    assert!(report.contains("first differing system call #"), "{report}");
    assert!(report.contains("now: icount"), "{report}");
    assert!(
        report.contains("open(\"/data/secret\", 0x8000) = 3"),
        "{report}"
    );
    assert!(
        report.contains("files read: added [\"/data/secret\"]"),
        "{report}"
    );
    assert!(report.contains("s3cr3t-token"), "{report}");
    // The other operations do not reach the leak.
    for same in ["same list", "same sum", "same put"] {
        assert!(report.contains(same), "{report}");
    }
}

#[test]
fn a_build_that_adds_a_network_call_is_named_with_its_socket() {
    let dir = service("net");
    record(&dir, &[]);
    let net = build("service-net-musl");
    let spec_program = build("service-musl");
    let (report, status) = check(
        &dir,
        &[
            "--json",
            "--program-override",
            &format!("{spec_program}={net}"),
        ],
    );
    assert_eq!(status, Some(1), "{report}");
    let json: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(json["format"], "tandem-baseline-check/1");
    let ops = json["operations"].as_array().unwrap();
    let get = ops.iter().find(|o| o["name"] == "get-readme").unwrap();
    assert_eq!(get["verdict"], "changed");
    assert_eq!(get["first"]["b"]["name"], "socket", "{report}");
    assert_eq!(get["first"]["b"]["args"], "2, 0x1, 0");
    let findings = get["findings"].to_string();
    assert!(
        findings.contains("least access: socket is not in the operation's syscalls"),
        "{findings}"
    );
    assert!(findings.contains("least access: connect"), "{findings}");
    assert!(findings.contains("AF_INET 127.0.0.1:4444"), "{findings}");
    assert_eq!(
        ops.iter().filter(|o| o["verdict"] == "same").count(),
        3,
        "{report}"
    );
}

#[test]
fn a_tampered_or_missing_baseline_fails_closed() {
    let dir = service("tamper");
    let (report, status) = check(&dir, &[]);
    assert_eq!(status, Some(2), "{report}");
    assert!(
        report.contains("no baseline at service.baseline.json"),
        "{report}"
    );
    record(&dir, &[]);
    let path = dir.join("service.baseline.json");
    let original = std::fs::read_to_string(&path).unwrap();
    // An insider changes the recorded exit status of one operation (the JSON stays valid).
    let tampered = original.replacen("\"exit_status\": 0", "\"exit_status\": 1", 1);
    assert_ne!(tampered, original);
    std::fs::write(&path, &tampered).unwrap();
    let (report, status) = check(&dir, &[]);
    assert_eq!(status, Some(2), "{report}");
    assert!(
        report.contains("does not match its sha256 digest"),
        "{report}"
    );
    // A baseline cut short is not valid JSON: also a failure.
    std::fs::write(&path, &original[..original.len() / 2]).unwrap();
    let (report, status) = check(&dir, &[]);
    assert_eq!(status, Some(2), "{report}");
    assert!(report.contains("cannot be read"), "{report}");
}

#[test]
fn a_keyed_baseline_needs_its_key() {
    let dir = service("key");
    std::fs::write(dir.join("k"), "a secret key").unwrap();
    std::fs::write(dir.join("other"), "another key").unwrap();
    record(&dir, &["--key-file", "k"]);
    let (report, status) = check(&dir, &["--key-file", "k"]);
    assert_eq!(status, Some(0), "{report}");
    let (report, status) = check(&dir, &[]);
    assert_eq!(status, Some(2), "{report}");
    assert!(report.contains("give its --key-file"), "{report}");
    let (report, status) = check(&dir, &["--key-file", "other"]);
    assert_eq!(status, Some(2), "{report}");
    assert!(report.contains("or the key differs"), "{report}");
}

#[test]
fn operations_added_removed_or_unable_to_run_fail_closed() {
    let dir = service("set");
    record(&dir, &[]);
    let spec = std::fs::read_to_string(dir.join("service.toml")).unwrap();
    // Removed: the put operation is gone from the spec.
    let cut = &spec[..spec.find("[[operation]]\nname = \"put\"").unwrap()];
    std::fs::write(dir.join("service.toml"), cut).unwrap();
    let (report, status) = check(&dir, &[]);
    assert_eq!(status, Some(2), "{report}");
    assert!(report.contains("FAILED put"), "{report}");
    assert!(
        report.contains("the spec does not (it was removed)"),
        "{report}"
    );
    // Added, and an input changed.
    let added =
        spec.replace("1 2 3 4", "x") + "\n[[operation]]\nname = \"extra\"\nargs = [\"list\"]\n";
    std::fs::write(dir.join("service.toml"), &added).unwrap();
    std::fs::write(dir.join("numbers.txt"), "5 6\n").unwrap();
    let (report, status) = check(&dir, &[]);
    assert_eq!(status, Some(2), "{report}");
    assert!(report.contains("FAILED extra"), "{report}");
    assert!(report.contains("FAILED sum"), "{report}");
    assert!(report.contains("inputs"), "{report}");
    // A program that does not exist cannot run.
    std::fs::write(dir.join("service.toml"), &spec).unwrap();
    std::fs::write(dir.join("numbers.txt"), "1 2 3 4\n").unwrap();
    let (report, status) = check(&dir, &["--program-override", "/nonexistent/service"]);
    assert_eq!(status, Some(2), "{report}");
    assert!(report.contains("cannot run"), "{report}");
    // And record writes nothing when an operation cannot run.
    let out = baseline(
        &dir,
        &[
            "record",
            "service.toml",
            "-o",
            "new.json",
            "--program-override",
            "/nonexistent/x",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(!dir.join("new.json").exists());
    // A bad spec is a usage error naming the spec.
    std::fs::write(
        dir.join("bad.toml"),
        "[[operation]]\nname = \"a b\"\nprogram = \"x\"\n",
    )
    .unwrap();
    let out = baseline(&dir, &["check", "bad.toml"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("spec bad.toml"),
        "{}",
        text(&out.stderr)
    );
}
