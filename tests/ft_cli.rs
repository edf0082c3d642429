//! End-to-end tests of `tandem ft`: whatever replica a fault hits, the released stdout is byte for byte what
//! `tandem run` of the same program prints without faults, the exit status is the guest's, the mismatch is blamed
//! on the replica that had the fault, a killed primary fails over with nothing lost or doubled, and a campaign's
//! table is the same at any --jobs.

mod common;
use common::*;
use std::process::{Command, Output};

/// A stack page of the sigbus program: an uncorrectable error there cannot be recovered, and kills the guest
/// when it touches the page (at icount 538051, after the error at 300000).
const STACK_PAGE: &str = "0x7fffffffe000";
/// Page 1 of the sigbus program's table: the program's SIGBUS handler rebuilds it.
const TABLE_PAGE1: &str = "0x7ffff7ff8000";

fn ft(flags: &[&str], program: &str, args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(tandem())
        .arg("ft")
        .args(flags)
        .arg("--")
        .arg(program)
        .args(args)
        .current_dir(repo())
        .env_clear()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn tandem ft");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin).expect("write stdin");
    drop(input);
    child.wait_with_output().expect("tandem ft")
}

/// The line of the report that starts with `prefix` (after "tandem: ft: ").
fn report_line(out: &Output, prefix: &str) -> String {
    let stderr = text(&out.stderr);
    stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("tandem: ft: ")
                .filter(|l| l.starts_with(prefix))
        })
        .unwrap_or_else(|| panic!("no report line {prefix:?} in:\n{stderr}"))
        .to_string()
}

/// Runs `tandem ft` with these faults and checks stdout and status against the fault-free `tandem run`.
fn same_as_run(flags: &[&str], program: &str, args: &[&str], stdin: &[u8]) -> Output {
    let clean = emulate(&[], program, args, stdin);
    assert!(!clean.stdout.is_empty());
    let out = ft(flags, program, args, stdin);
    assert_eq!(
        text(&out.stdout),
        text(&clean.stdout),
        "{flags:?}: released output\n{}",
        text(&out.stderr)
    );
    assert_eq!(out.status.code(), clean.status.code(), "{flags:?}");
    out
}

#[test]
fn a_fault_free_pair_and_triple_release_what_tandem_run_prints() {
    let program = corpus_bin("sha256-musl");
    for replicas in ["2", "3"] {
        let out = same_as_run(&["--replicas", replicas], &program, &["abc", ""], b"");
        assert!(report_line(&out, &format!("{replicas} replicas")).contains(" 0 mismatches"));
    }
    // stdin goes to the primary and reaches the backup through the log.
    let input = b"line one\nline two\n".repeat(300);
    let out = same_as_run(
        &["--epoch", "50000"],
        "/bin/busybox",
        &["sha256sum"],
        &input,
    );
    assert!(report_line(&out, "2 replicas").contains(" 0 mismatches"));
}

#[test]
fn a_fault_in_the_primary_or_the_secondary_is_blamed_on_it_and_corrected() {
    let program = corpus_bin("sigbus-glibc");
    for faulty in 0..2 {
        let spec = format!("{faulty}:mem.ue:icount=300000,addr={TABLE_PAGE1}");
        let out = same_as_run(
            &["--epoch", "100000", "--faults-on", &spec],
            &program,
            &["20"],
            b"",
        );
        let wrong = report_line(&out, "epochs found wrong");
        let expected = if faulty == 0 {
            "replica 0: 1, replica 1: 0"
        } else {
            "replica 0: 0, replica 1: 1"
        };
        assert!(wrong.ends_with(expected), "{wrong}");
        let counts = report_line(&out, "2 replicas");
        assert!(
            counts.contains("1 mismatches, 1 re-executions, 1 resyncs"),
            "{counts}"
        );
        assert!(report_line(&out, "primary at the end").contains("alive: [0, 1]"));
    }
}

#[test]
fn a_triple_outvotes_a_flipped_replica_whichever_it_is() {
    let program = corpus_bin("sha256-musl");
    let clean = emulate(&["--stats"], &program, &["abc"], b"");
    let icount = text(&clean.stderr)
        .lines()
        .find_map(|l| {
            l.strip_prefix("tandem: ")?
                .split_once(" instructions in ")?
                .0
                .parse::<u64>()
                .ok()
        })
        .expect("--stats gives the instruction count");
    for faulty in 0..3 {
        let spec = format!("{faulty}:mem.flip:count=30,within={icount},class=anon-dirty");
        let out = same_as_run(
            &[
                "--replicas",
                "3",
                "--epoch",
                "2000000",
                "--faults-on",
                &spec,
            ],
            &program,
            &["abc"],
            b"",
        );
        let counts = report_line(&out, "3 replicas");
        assert!(
            counts.contains(" 0 re-executions"),
            "a majority decides: {counts}"
        );
        let wrong = report_line(&out, "epochs found wrong");
        for r in 0..3 {
            let n: u64 = wrong
                .split(&format!("replica {r}: "))
                .nth(1)
                .and_then(|s| s.split(',').next()?.trim().parse().ok())
                .expect("a count per replica");
            assert_eq!(n > 0, r == faulty, "replica {r}: {wrong}");
        }
    }
}

/// A flip in the table the program sums, with full state comparisons only at mismatches and at the end: the
/// digest of the pages written finds it, the re-execution from the last full comparison (here the start, several
/// epochs back) blames the primary, and the released output is the fault-free one. Backups on threads and all
/// replicas on one thread report the same, byte for byte.
#[test]
fn a_latent_flip_is_caught_at_output_and_threads_change_nothing() {
    let program = corpus_bin("sigbus-glibc");
    let spec = format!("0:mem.flip:icount=300000,addr={TABLE_PAGE1},bit=3");
    let flags = [
        "--epoch",
        "50000",
        "--verify-every",
        "1000",
        "--faults-on",
        &spec,
    ];
    let threads = same_as_run(&flags, &program, &["20"], b"");
    let one = ft(
        &[&flags[..], &["--no-threads"]].concat(),
        &program,
        &["20"],
        b"",
    );
    assert_eq!(text(&threads.stderr), text(&one.stderr));
    assert_eq!(threads.stdout, one.stdout);
    let wrong = report_line(&threads, "epochs found wrong");
    assert!(wrong.ends_with("replica 0: 1, replica 1: 0"), "{wrong}");
    let counts = report_line(&threads, "2 replicas");
    assert!(counts.contains("1 mismatches, 1 re-executions"), "{counts}");
}

#[test]
fn a_killed_primary_fails_over_with_nothing_lost_or_released_twice() {
    let program = corpus_bin("sigbus-glibc");
    // Without FT the error kills the guest.
    let spec = format!("mem.ue:icount=300000,addr={STACK_PAGE}");
    let alone = emulate(&["--faults", &spec], &program, &["20"], b"");
    assert_eq!(alone.status.code(), Some(128 + 7));
    for replicas in ["2", "3"] {
        let on = format!("0:{spec}");
        let out = same_as_run(
            &["--replicas", replicas, "--faults-on", &on],
            &program,
            &["20"],
            b"",
        );
        assert!(report_line(&out, &format!("{replicas} replicas")).ends_with(" 1 failovers"));
        assert!(report_line(&out, "epoch 1: replica 1 promoted").contains("in place of replica 0"));
        assert!(
            report_line(&out, "primary at the end").starts_with("primary at the end: replica 1")
        );
    }
}

#[test]
fn campaign_tables_are_the_same_at_any_jobs_and_a_pair_has_no_silent_corruption() {
    let program = corpus_bin("sigbus-glibc");
    let run = |flags: &[&str]| {
        let mut all = vec![
            "--seeds",
            "0..12",
            "--faults",
            "mem.flip:count=1,class=anon-dirty",
        ];
        all.extend(flags);
        ft(&all, &program, &["20"], b"")
    };
    let one = run(&["--replicas", "2", "--jobs", "1"]);
    let two = run(&["--replicas", "2", "--jobs", "2"]);
    assert_eq!(text(&one.stdout), text(&two.stdout));
    assert_eq!(one.status.code(), Some(0), "{}", text(&one.stdout));
    let table = text(&one.stdout);
    let corrupted = table
        .lines()
        .find(|l| l.starts_with("silently-corrupted"))
        .expect("a row per verdict");
    assert!(corrupted.ends_with(" 0"), "{table}");
    let masked = table.lines().find(|l| l.starts_with("masked")).unwrap();
    assert!(masked.ends_with(" 12"), "{table}");
}

#[test]
fn bad_input_is_a_clear_error() {
    let program = corpus_bin("hello-musl");
    for (flags, needle) in [
        (
            vec!["--faults-on", "2:mem.flip:icount=5,addr=0x1000"],
            "replica 2 does not exist",
        ),
        (vec!["--faults-on", "mem.flip"], "expected REPLICA:SPEC"),
        (
            vec!["--faults-on", "x:mem.flip:icount=5,addr=0x1000"],
            "is not a number",
        ),
        (vec!["--faults-on", "0:mem.flip:count=1"], "needs within"),
        (vec!["--replicas", "4"], "4"),
        (vec!["--seeds", "5..5"], "--seeds 5..5"),
    ] {
        let out = ft(&flags, &program, &[], b"");
        assert_eq!(out.status.code(), Some(125), "{flags:?}");
        assert!(
            text(&out.stderr).contains(needle),
            "{flags:?}: {}",
            text(&out.stderr)
        );
    }
}

/// The report shows a mismatch and blames `faulty` for at least one epoch.
fn assert_caught_and_blamed(out: &Output, replicas: usize, faulty: usize, what: &str) {
    let line = report_line(out, &format!("{replicas} replicas"));
    assert!(!line.contains(" 0 mismatches"), "{what}: {line}");
    let wrong = report_line(out, "epochs found wrong");
    assert!(
        !wrong.contains(&format!("replica {faulty}: 0")),
        "{what}: the faulty replica {faulty} was not blamed: {wrong}"
    );
}

/// The "tandem: icount N state_hash H" line of --report-state.
fn state_line(out: &Output) -> String {
    text(&out.stderr)
        .lines()
        .find(|l| l.starts_with("tandem: icount "))
        .unwrap_or_else(|| panic!("no state line in:\n{}", text(&out.stderr)))
        .to_string()
}

/// A corpus program that writes a file (fileio: a copy of its input plus a line, in the overlay): the file
/// changes are held with the epoch's output and released beneath --release-files only as agreed, so the host
/// gets exactly the bytes the program wrote, even with a flipped replica; without the flag nothing is written.
#[test]
fn file_writes_are_output_released_beneath_the_release_directory() {
    let dir = scratch("ft-file-output");
    let input: Vec<u8> = b"first line of the input\n".repeat(40);
    std::fs::create_dir(dir.join("data")).unwrap();
    std::fs::write(dir.join("data/in.txt"), &input).unwrap();
    let mount = format!("{}:/data", dir.join("data").display());
    let program = corpus_bin("fileio-musl");
    let args = ["/data/in.txt", "/tmp/copy.txt", "/data"];
    let mut expected = input.clone();
    expected.extend_from_slice(b"appended\n");
    let clean = emulate(&["--mount", &mount], &program, &args, b"");
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean.stderr));
    for faults in [
        vec![],
        vec![
            "--faults-on",
            "1:mem.flip:count=20,within=14000,class=anon-dirty",
        ],
        vec![
            "--faults-on",
            "0:mem.flip:count=20,within=14000,class=anon-dirty",
        ],
    ] {
        let out_dir = dir.join("released");
        let _ = std::fs::remove_dir_all(&out_dir);
        let release = out_dir.display().to_string();
        let mut flags = vec![
            "--epoch",
            "2000",
            "--mount",
            &mount,
            "--release-files",
            &release,
        ];
        flags.extend(&faults);
        let out = ft(&flags, &program, &args, b"");
        assert_eq!(text(&out.stdout), text(&clean.stdout), "{faults:?}");
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let released = std::fs::read(out_dir.join("tmp/copy.txt")).expect("the released copy");
        assert_eq!(text(&released), text(&expected), "{faults:?}");
        // O_TRUNC and two writes.
        let line = report_line(&out, "released ");
        assert!(
            line.ends_with("3 of them file changes, 969 bytes"),
            "{line}"
        );
        if !faults.is_empty() {
            let counts = report_line(&out, "2 replicas");
            assert!(!counts.contains(" 0 mismatches"), "{counts}");
        }
    }
    // Without --release-files the changes are still held and compared, and stay in the guest.
    let out = ft(&["--mount", &mount], &program, &args, b"");
    assert_eq!(out.status.code(), Some(0));
    assert!(report_line(&out, "released ").ends_with("3 of them file changes, 969 bytes"));
}

/// A pair's trace (--record) is the agreed execution: tandem replay verifies it, and it ends in the fault-free
/// run's state although the primary met a fault that the pair corrected.
#[test]
fn a_recorded_pair_replays_verified_and_ends_in_the_fault_free_state() {
    let program = corpus_bin("sigbus-glibc");
    let dir = scratch("ft-record");
    let trace = dir.join("pair.trace");
    let spec = format!("0:mem.ue:icount=300000,addr={TABLE_PAGE1}");
    let trace_arg = trace.display().to_string();
    let out = same_as_run(
        &[
            "--epoch",
            "100000",
            "--faults-on",
            &spec,
            "--record",
            &trace_arg,
            "--report-state",
        ],
        &program,
        &["20"],
        b"",
    );
    assert!(report_line(&out, "2 replicas").contains("1 mismatches"));
    let clean = emulate(&["--report-state"], &program, &["20"], b"");
    assert_eq!(state_line(&out), state_line(&clean));
    let rep = Command::new(tandem())
        .args(["replay", "--quiet"])
        .arg(&trace)
        .current_dir(repo())
        .env_clear()
        .output()
        .unwrap();
    let err = text(&rep.stderr);
    assert_eq!(rep.status.code(), Some(0), "{err}");
    assert!(err.contains(": verified: "), "{err}");
}

/// --debug-mismatch shows both replicas at the first mismatch: the flipped page of the primary with the very
/// bit that was flipped, against the right execution's byte.
#[test]
fn debug_mismatch_shows_the_flipped_byte_of_the_wrong_replica() {
    let program = corpus_bin("sigbus-glibc");
    let spec = format!("0:mem.flip:icount=300000,addr={TABLE_PAGE1},bit=3");
    let out = same_as_run(
        &["--epoch", "50000", "--faults-on", &spec, "--debug-mismatch"],
        &program,
        &["20"],
        b"",
    );
    let first = report_line(&out, "first mismatch: ");
    assert!(
        first.ends_with("the right state: the re-execution"),
        "{first}"
    );
    assert!(report_line(&out, "replica 1 at icount ").ends_with(": right"));
    let page = report_line(&out, &format!("  page {TABLE_PAGE1}: first differing byte"));
    let byte = |s: &str| u8::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
    let (mine, right) = page
        .rsplit_once(": ")
        .and_then(|(_, v)| v.split_once(" (right "))
        .map(|(m, r)| (byte(m), byte(r.trim_end_matches(')'))))
        .expect("two bytes");
    assert_eq!(mine ^ right, 1 << 3, "{page}");
    let clean = ft(&["--debug-mismatch"], &program, &["20"], b"");
    assert_eq!(report_line(&clean, "no mismatch"), "no mismatch");
}

/// A campaign on Debian's busybox with a mounted file and with stdin: every seed's guest reads the same input
/// (the fault-free run's stdout is the digest line of the file, the head of stdin), tables are the same at any
/// --jobs, and a pair lets no run be silently corrupted.
#[test]
fn a_campaign_takes_mounts_and_stdin() {
    let dir = scratch("ft-campaign-mount");
    std::fs::write(dir.join("in"), b"some data to digest\n".repeat(500)).unwrap();
    let mount = format!("{}:/data", dir.display());
    let campaign = |extra: &[&str], args: &[&str], stdin: &[u8]| {
        let mut flags = vec![
            "--seeds",
            "0..6",
            "--faults",
            "mem.flip:count=1,class=anon-dirty",
        ];
        flags.extend(extra);
        ft(&flags, "/bin/busybox", args, stdin)
    };
    let one = campaign(&["--mount", &mount], &["sha256sum", "/data/in"], b"");
    let two = campaign(
        &["--mount", &mount, "--jobs", "2"],
        &["sha256sum", "/data/in"],
        b"",
    );
    assert_eq!(one.status.code(), Some(0), "{}", text(&one.stderr));
    assert_eq!(text(&one.stdout), text(&two.stdout));
    // 64 hex digits, two spaces, the name, a newline.
    assert!(
        text(&one.stdout).contains("exit 0, ") && text(&one.stdout).contains(" 75 bytes of stdout"),
        "{}",
        text(&one.stdout)
    );
    let table = text(&one.stdout);
    let corrupted = table
        .lines()
        .find(|l| l.starts_with("silently-corrupted"))
        .unwrap();
    assert!(corrupted.ends_with(" 0"), "{table}");
    let head = campaign(&[], &["head", "-c", "100"], &b"x".repeat(1000));
    assert!(
        text(&head.stdout).contains(" 100 bytes of stdout"),
        "{}",
        text(&head.stdout)
    );
}

/// Extra flags, program, its arguments, stdin.
type Case<'a> = (&'a [&'a str], &'a str, &'a [&'a str], &'a [u8]);

/// A warm campaign (the default: each run starts from the fault-free world's latest snapshot before its first
/// fault) prints the cold campaign's table byte for byte: faults in the primary, in the backup and in one of
/// three, with epochs short enough that runs start deep in the run, between full comparisons (a snapshot's
/// digests and checkpoint must be the cold world's there), and a guest that reads stdin.
#[test]
fn warm_campaign_tables_equal_cold_ones() {
    let sigbus = corpus_bin("sigbus-glibc");
    let input = b"to digest\n".repeat(2000);
    let cases: [Case; 4] = [
        (&["--faults-in", "0"], &sigbus, &["20"], b""),
        (&["--faults-in", "1"], &sigbus, &["20"], b""),
        (
            &["--replicas", "3", "--faults-in", "2"],
            &sigbus,
            &["20"],
            b"",
        ),
        (
            &["--faults-in", "0"],
            "/bin/busybox",
            &["sha256sum"],
            &input,
        ),
    ];
    for (extra, program, args, stdin) in cases {
        let run = |cold: &[&str]| {
            let mut flags = vec![
                "--seeds",
                "0..40",
                "--jobs",
                "2",
                "--epoch",
                "20000",
                "--verify-every",
                "3",
                "--faults",
                "mem.flip:count=1,class=anon-dirty",
            ];
            flags.extend(extra);
            flags.extend(cold);
            ft(&flags, program, args, stdin)
        };
        let (warm, cold) = (run(&[]), run(&["--cold"]));
        let table = text(&warm.stdout);
        assert_eq!(table, text(&cold.stdout), "{extra:?} {program}");
        assert!(table.contains("runs with a mismatch: "), "{table}");
        assert!(!table.contains("runs with a mismatch: 0;"), "{table}");
    }
}

#[test]
fn a_dynamically_linked_program_runs_as_a_pair_with_its_loader_and_libraries_shipped_through_the_log(
) {
    // The host's / is its root: the loader, ld.so.cache and libc are read by the primary and logged.
    let program = corpus_bin("sha256-dyn");
    let linux = native(&program, &["abc"], &[], b"");
    assert!(linux.status.success());
    for faulty in [0, 1] {
        // Flips while the loader maps and relocates libc, and after.
        let spec = format!("{faulty}:mem.flip:count=3,within=1000000,class=anon-dirty");
        let out = same_as_run(
            &["--epoch", "100000", "--faults-on", &spec],
            &program,
            &["abc"],
            b"",
        );
        assert_eq!(text(&out.stdout), text(&linux.stdout), "replica {faulty}");
        assert_caught_and_blamed(&out, 2, faulty, "sha256-dyn");
    }
    // A campaign reads its root into memory: the host's / is refused with a way out.
    let out = ft(&["--seeds", "0..2"], &program, &["abc"], b"");
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("give --root DIR"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn epochs_bounded_by_outputs_release_each_write_sooner_and_still_correct_faults() {
    // procs-musl: 17 writes from several processes; within one epoch of instructions they wait for its end.
    let program = corpus_bin("procs-musl");
    let latency = |out: &Output| {
        let line = report_line(out, "released");
        let mean = line
            .split("latency mean ")
            .nth(1)
            .and_then(|t| t.split(' ').next())
            .and_then(|n| n.parse::<u64>().ok());
        mean.unwrap_or_else(|| panic!("no latency in {line:?}"))
    };
    let epochs = |out: &Output| {
        let line = report_line(out, "2 replicas");
        let n = line.split(", ").nth(1).and_then(|t| t.split(' ').next());
        n.and_then(|n| n.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no epoch count in {line:?}"))
    };
    let whole = same_as_run(&[], &program, &[], b"");
    let each = same_as_run(&["--epoch-outputs", "1"], &program, &[], b"");
    assert!(latency(&whole) > 0);
    // Each write ends its epoch: it is released at the end of the syscall that made it.
    assert_eq!(latency(&each), 0);
    assert!(report_line(&each, "released").starts_with("released 17 writes"));
    assert!(epochs(&each) >= 17 && epochs(&whole) < 17);
    assert!(report_line(&each, "2 replicas").contains("instructions or 1 outputs"));
    // A flipped primary still mismatches and is corrected; a triple ends its epochs at the same writes.
    let sigbus = corpus_bin("sigbus-glibc");
    for flags in [
        vec![
            "--epoch-outputs",
            "1",
            "--faults-on",
            "0:mem.flip:count=5,within=2000000,class=anon-dirty",
        ],
        vec![
            "--epoch-outputs",
            "2",
            "--replicas",
            "3",
            "--faults-on",
            "2:mem.flip:count=5,within=2000000,class=anon-dirty",
        ],
    ] {
        let out = same_as_run(&flags, &sigbus, &[], b"");
        let (replicas, faulty) = if flags.contains(&"3") { (3, 2) } else { (2, 0) };
        assert_caught_and_blamed(&out, replicas, faulty, "sigbus-glibc");
    }
}

#[test]
fn multi_threaded_guests_run_as_pairs_and_triples_and_a_flipped_replica_is_corrected() {
    // threads-musl (pthreads) and go-chan (the Go runtime's threads and goroutines), against Linux itself.
    for (name, within) in [("threads-musl", 5_800_000), ("go-chan", 500_000)] {
        let program = corpus_bin(name);
        let linux = native(&program, &[], &[], b"");
        assert!(linux.status.success(), "{name} natively");
        for (replicas, faulty) in [("2", 0), ("2", 1), ("3", 2)] {
            let spec = format!("{faulty}:mem.flip:count=5,within={within},class=anon-dirty");
            let flags = [
                "--replicas",
                replicas,
                "--epoch",
                "100000",
                "--faults-on",
                &spec,
            ];
            let out = same_as_run(&flags, &program, &[], b"");
            assert_eq!(text(&out.stdout), text(&linux.stdout), "{name} {flags:?}");
            assert_caught_and_blamed(&out, replicas.parse().unwrap(), faulty, name);
        }
    }
}

#[test]
fn full_comparisons_come_every_64_million_instructions_whatever_the_epoch() {
    // sha256-musl abc: 70.9 M instructions, so a full comparison at 64 M and one at the end, at any epoch
    // length (in epochs, 100,000-instruction epochs would compare 12 times, and spend much of their time
    // hashing); --verify-every still counts epochs.
    let program = corpus_bin("sha256-musl");
    for (flags, full) in [
        (vec![], 2),
        (vec!["--epoch", "100000"], 2),
        (vec!["--epoch", "10000000"], 2),
        (vec!["--epoch", "100000", "--verify-every", "64"], 12),
    ] {
        let out = same_as_run(&flags, &program, &["abc"], b"");
        let line = report_line(&out, "2 replicas");
        assert!(
            line.contains(&format!("({full} with full state comparisons)")),
            "{flags:?}: {line}"
        );
    }
}
