//! Container profiles beyond the syscall set (issue 16, part 1): the allow-list of constant paths a static
//! profile collects (`tandem profile --paths`, enforced by `tandem run --profile`), and two-phase profiles split
//! at a symbol (`tandem profile --phase-at SYMBOL`, enforced with a switch when the run first reaches it).

mod common;
use common::*;
use std::process::Command;

/// `tandem profile FLAGS -- PROGRAM`: its stdout (the run must succeed).
fn profile(flags: &[&str], program: &str) -> String {
    let mut cmd = Command::new(tandem());
    cmd.arg("profile").args(flags).arg("--").arg(program);
    text(&succeeds(cmd, program).stdout)
}

/// The icount of the first `NAME icount N` match in `report` after `marker`.
fn icount_after(report: &str, marker: &str) -> u64 {
    let rest = report
        .split(marker)
        .nth(1)
        .unwrap_or_else(|| panic!("{report}"));
    let digits: String = rest
        .split("icount ")
        .nth(1)
        .unwrap()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap()
}

/// The service's documents: what `service get NAME` serves from /data, and a secret beside them.
fn documents(test: &str) -> String {
    let dir = scratch(test);
    std::fs::write(dir.join("readme"), "the readme\n").unwrap();
    std::fs::write(dir.join("secret"), "s3cr3t-token\n").unwrap();
    format!("{}:/data", dir.display())
}

#[test]
fn a_path_outside_the_profiles_list_is_denied_with_eacces_and_reported() {
    let dir = scratch("profile-paths");
    let mount = documents("profile-paths-data");
    // The static analysis finds the constant paths each build passes to open, through musl's wrappers: the
    // unmodified service names /data (opendir of `list`), the leaking build also /data/secret.
    let plain_paths = profile(&["--paths"], &corpus_bin("service-musl"));
    assert!(plain_paths.contains("\n# path /data\n"), "{plain_paths}");
    assert!(!plain_paths.contains("/data/secret"), "{plain_paths}");
    let leak_paths = profile(&["--paths"], &corpus_bin("service-leak-musl"));
    assert!(
        leak_paths.contains("\n# path /data/secret\n"),
        "{leak_paths}"
    );
    // The release's profile, with the document it serves added by hand (get builds its path at run time).
    let release = dir.join("service.profile");
    profile(
        &["--paths", "-o", release.to_str().unwrap()],
        &corpus_bin("service-musl"),
    );
    let mut listed = std::fs::read_to_string(&release).unwrap();
    assert!(listed.starts_with("tandem-profile 2\n"), "{listed}");
    assert!(listed.contains("\npaths listed\npath /data\n"), "{listed}");
    listed.push_str("path /data/readme\n");
    std::fs::write(&release, listed).unwrap();
    let flags = ["--mount", &mount, "--profile", release.to_str().unwrap()];
    // The release runs under it as without it.
    let served = emulate(&flags, &corpus_bin("service-musl"), &["get", "readme"], b"");
    assert_eq!(served.status.code(), Some(0), "{}", text(&served.stderr));
    assert_eq!(text(&served.stdout), "the readme\n");
    assert!(served.stderr.is_empty(), "{}", text(&served.stderr));
    // The insider's build makes only calls the profile allows, but its open of the secret names a path the
    // profile does not list: EACCES (the service reports it cannot open it), reported with rip and icount.
    let leak = emulate(
        &flags,
        &corpus_bin("service-leak-musl"),
        &["get", "readme"],
        b"",
    );
    assert_eq!(text(&leak.stdout), "the readme\n", "{}", text(&leak.stderr));
    let report = text(&leak.stderr);
    assert!(
        report.contains("service: cannot open /data/secret"),
        "{report}"
    );
    assert!(
        report.contains("tandem: profile denied open (number 2) the path /data/secret to tid ")
            && report.contains(": answered -EACCES"),
        "{report}"
    );
    let rip = report
        .split("at rip 0x")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .map(|h| u64::from_str_radix(h, 16).unwrap())
        .unwrap();
    let elf = std::fs::read(repo().join(corpus_bin("service-leak-musl"))).unwrap();
    let at = (rip - 0x40_0000) as usize; // linked at 0x400000, file offset 0
    assert_eq!(&elf[at..at + 2], [0x0f, 0x05], "a syscall instruction");
    // The kill action ends the process at that call.
    let mut kill = flags.to_vec();
    kill.extend(["--profile-action", "kill"]);
    let killed = emulate(
        &kill,
        &corpus_bin("service-leak-musl"),
        &["get", "readme"],
        b"",
    );
    assert_eq!(
        killed.status.code(),
        Some(128 + 31),
        "{}",
        text(&killed.stderr)
    );
    assert!(
        text(&killed.stderr)
            .contains("open (number 2) of /data/secret denied by the profile's paths"),
        "{}",
        text(&killed.stderr)
    );
}

#[test]
fn a_two_phase_profile_switches_at_its_symbol_and_each_phase_holds() {
    let dir = scratch("profile-phases");
    let program = corpus_bin("hello-musl");
    let whole = profile(&[], &program);
    let file = dir.join("hello.profile");
    let split = profile(
        &["--phase-at", "main", "-o", file.to_str().unwrap()],
        &program,
    );
    let section = |name: &str| -> Vec<String> {
        split
            .split(&format!("# phase {name} "))
            .nth(1)
            .unwrap()
            .lines()
            .skip(1)
            .take_while(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
            .collect()
    };
    let (startup, serving) = (section("start-up"), section("serving"));
    let has = |set: &[String], name: &str| set.iter().any(|n| n == name);
    // musl's start-up sets the thread pointer and the tid address before main; main prints (writev) and exits.
    assert!(
        has(&startup, "arch_prctl") && has(&startup, "set_tid_address"),
        "{split}"
    );
    // The call of exit after main never returns: nothing after it (the start-up code the bytes after a call of
    // a no-return function would fall into) is in the serving phase.
    assert!(
        !has(&serving, "arch_prctl") && !has(&serving, "set_tid_address"),
        "{split}"
    );
    assert!(
        has(&serving, "writev") && has(&serving, "exit_group"),
        "{split}"
    );
    let static_count = whole.lines().filter(|l| !l.starts_with('#')).count();
    assert!(serving.len() < static_count, "{split}\n{whole}");
    // Enforced with the kill action, the run is the run without a profile, and the switch is reported.
    let listed = std::fs::read_to_string(&file).unwrap();
    assert!(listed.contains("\nphase serving at main\n"), "{listed}");
    let flags = [
        "--profile",
        file.to_str().unwrap(),
        "--profile-action",
        "kill",
    ];
    let plain = emulate(&["--report-state"], &program, &[], b"");
    let mut enforced = flags.to_vec();
    enforced.push("--report-state");
    let under = emulate(&enforced, &program, &[], b"");
    assert_eq!(
        under.status.code(),
        plain.status.code(),
        "{}",
        text(&under.stderr)
    );
    assert_eq!(text(&under.stdout), text(&plain.stdout));
    let report = text(&under.stderr);
    assert!(
        report.contains("tandem: profile phase `serving` from main (0x"),
        "{report}"
    );
    assert_eq!(
        report
            .lines()
            .filter(|l| !l.contains("profile phase"))
            .collect::<Vec<_>>(),
        text(&plain.stderr).lines().collect::<Vec<_>>()
    );
    let switched = icount_after(&report, "profile phase `serving`");
    // The serving phase without writev: the kill comes after the switch, at main's writev.
    let cut = listed
        .rsplit_once("syscall 20 writev\n")
        .map(|(a, b)| format!("{a}{b}"))
        .unwrap();
    let report = killed_under(&dir.join("no-writev-serving.profile"), &cut, &program);
    assert!(
        report.contains("profile denied writev (number 20)"),
        "{report}"
    );
    assert!(
        icount_after(&report, "profile denied writev") > switched,
        "{report}"
    );
    // The start-up phase's rules apply before the boundary: without set_tid_address there, the run is killed
    // before main (no phase line).
    let early = listed.replacen("syscall 218 set_tid_address\n", "", 1);
    let report = killed_under(&dir.join("no-tid-startup.profile"), &early, &program);
    assert!(
        report.contains("profile denied set_tid_address"),
        "{report}"
    );
    assert!(!report.contains("profile phase"), "{report}");
    // A boundary the program has no symbol for is an input error naming it.
    let missing = dir.join("missing.profile");
    std::fs::write(
        &missing,
        "tandem-profile 2\nsyscall 60\nphase serving at no_such_fn\n",
    )
    .unwrap();
    let out = emulate(
        &["--profile", missing.to_str().unwrap()],
        &program,
        &[],
        b"",
    );
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("no_such_fn"),
        "{}",
        text(&out.stderr)
    );
}

/// Writes `profile` to `file`, runs `program` under it with the kill action, and returns the report on stderr
/// after checking that the run was killed by SIGSYS (exit status 128 + 31).
fn killed_under(file: &std::path::Path, profile: &str, program: &str) -> String {
    std::fs::write(file, profile).unwrap();
    let flags = [
        "--profile",
        file.to_str().unwrap(),
        "--profile-action",
        "kill",
    ];
    let killed = emulate(&flags, program, &[], b"");
    let report = text(&killed.stderr);
    assert_eq!(killed.status.code(), Some(128 + 31), "{report}");
    report
}
