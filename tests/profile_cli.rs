//! `tandem profile` end to end: the static syscall profile of corpus programs contains every call their recorded
//! runs made (recall 1.0: a profile that kills a correct program is worse than none), and the exported seccomp
//! document is JSON that allows exactly the profile's calls by name.

mod common;
use common::*;
use std::path::Path;
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
    let mut cmd = Command::new(tandem());
    cmd.args(["profile", "-o"]).arg(path).arg("--").arg(program);
    succeeds(cmd, program);
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

/// The function symbols of `program` (nm's T and t), sorted by address.
fn text_symbols(program: &str) -> Vec<(u64, String)> {
    let out = Command::new("nm").arg(program).output().unwrap();
    assert!(out.status.success(), "nm {program}: {}", text(&out.stderr));
    let mut symbols: Vec<(u64, String)> = text(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (addr, kind, name) = (w.next()?, w.next()?, w.next()?);
            matches!(kind, "T" | "t")
                .then(|| (u64::from_str_radix(addr, 16).ok(), name.to_string()))
        })
        .filter_map(|(a, n)| Some((a?, n)))
        .collect();
    symbols.sort();
    symbols
}

/// The mnemonic objdump gives the instruction at `addr` of `program` (after prefixes such as addr32 and bnd).
fn mnemonic_at(program: &str, addr: u64) -> String {
    let out = Command::new("objdump")
        .args(["-d", "--no-show-raw-insn"])
        .arg(format!("--start-address={addr:#x}"))
        .arg(format!("--stop-address={:#x}", addr + 16))
        .arg(program)
        .output()
        .unwrap();
    let listing = text(&out.stdout);
    let line = listing
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{addr:x}:")))
        .unwrap_or_else(|| panic!("no instruction at {addr:#x} in {program}:\n{listing}"));
    let words = line.split(':').nth(1).unwrap().split_whitespace();
    let mut words =
        words.skip_while(|w| matches!(*w, "addr32" | "data16" | "bnd" | "notrack" | "cs" | "ds"));
    words.next().unwrap().to_string()
}

/// `--why` explains each asked-for syscall by a chain that binutils confirms: it starts at the ELF entry point,
/// each `called at` address is a call or jump instruction inside the function of the step before (by nm's
/// symbols), and it ends at a syscall instruction (or a call passing the number) inside the last function.
/// `--why extra` explains exactly the calls the traces did not make; a bad name is refused before any work.
#[test]
fn why_explains_a_syscall_by_a_chain_the_binary_confirms() {
    let dir = scratch("profile-why");
    for program in ["hello-musl", "hello-glibc"] {
        let bin = corpus_bin(program);
        let symbols = text_symbols(&bin);
        let containing = |addr: u64| {
            symbols
                .iter()
                .rev()
                .find(|(a, _)| *a <= addr)
                .map(|(a, _)| *a)
                .unwrap()
        };
        let report = profile_report(program, Path::new("/"), &[], "lseek,writev,exit_group");
        for name in ["lseek", "writev", "exit_group"] {
            let head = report
                .lines()
                .position(|l| l.starts_with("# why ") && l.ends_with(&format!(" {name}:")))
                .unwrap_or_else(|| panic!("{program}: no chain for {name}:\n{report}"));
            let steps: Vec<&str> = report
                .lines()
                .skip(head + 1)
                .take_while(|l| l.starts_with("#   "))
                .collect();
            let addr = |l: &str| {
                let hex = l.split("0x").nth(1).unwrap();
                let hex: String = hex.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
                u64::from_str_radix(&hex, 16).unwrap()
            };
            assert!(
                steps[0].ends_with("the entry point"),
                "{program} {name}: {steps:?}"
            );
            let entry = Command::new("readelf")
                .args(["-h"])
                .arg(&bin)
                .output()
                .unwrap();
            let entry_line = text(&entry.stdout);
            let entry_line = entry_line
                .lines()
                .find(|l| l.contains("Entry point"))
                .unwrap();
            assert_eq!(
                addr(steps[0]),
                addr(entry_line),
                "{program} {name}: {steps:?}"
            );
            let mut function = addr(steps[0]);
            for step in &steps[1..steps.len() - 1] {
                let callee = addr(step);
                if let Some(rest) = step.split("called at ").nth(1) {
                    let site = addr(rest);
                    assert_eq!(
                        containing(site),
                        containing(function),
                        "{program} {name}: {step}"
                    );
                    let m = mnemonic_at(&bin, site);
                    assert!(
                        m.starts_with("call") || m.starts_with("jmp"),
                        "{program} {name}: {step}: {m}"
                    );
                }
                function = callee;
            }
            let last = steps.last().unwrap();
            let site = addr(last.split("number supplied at ").nth(1).unwrap());
            assert_eq!(
                containing(site),
                containing(function),
                "{program} {name}: {last}"
            );
            let m = mnemonic_at(&bin, site);
            assert!(
                m == "syscall" || m.starts_with("call") || m.starts_with("jmp"),
                "{program} {name}: {m}"
            );
        }
    }
    // --why extra lists the calls the run did not make, and only those.
    let trace = dir.join("hello.trace");
    let rec = record_trace(&trace, &[], &corpus_bin("hello-musl"), &[], b"");
    assert!(rec.status.success(), "{}", text(&rec.stderr));
    let report = profile_report("hello-musl", Path::new("/"), &[&trace], "extra");
    let observed = Command::new(tandem())
        .args(["profile", "--from"])
        .arg(&trace)
        .output()
        .unwrap();
    let observed = listed(&text(&observed.stdout));
    let explained: std::collections::BTreeSet<String> = report
        .lines()
        .filter_map(|l| l.strip_prefix("# why "))
        .filter_map(|l| {
            l.trim_end_matches(':')
                .split_whitespace()
                .nth(1)
                .map(str::to_string)
        })
        .collect();
    let extra: std::collections::BTreeSet<String> =
        listed(&report).difference(&observed).cloned().collect();
    assert!(!extra.is_empty() && !observed.is_empty(), "{report}");
    assert_eq!(explained, extra, "{report}");
    for (args, message) in [
        (
            vec!["--why", "frobnicate"],
            "--why frobnicate: not an x86-64 syscall",
        ),
        (
            vec!["--why", "extra"],
            "--why extra: the calls the runs did not make need traces",
        ),
    ] {
        let out = Command::new(tandem())
            .arg("profile")
            .args(&args)
            .arg("--")
            .arg(corpus_bin("hello-musl"))
            .current_dir(repo())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(125), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}: printed before refusing");
        assert!(
            text(&out.stderr).contains(message),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

/// `tandem profile` of `program` beneath `root` (with traces to score against); its report.
fn profile_report(program: &str, root: &Path, traces: &[&Path], why: &str) -> String {
    let mut cmd = Command::new(tandem());
    cmd.arg("profile").arg("--root").arg(root);
    if !traces.is_empty() {
        cmd.arg("--from").args(traces);
    }
    if !why.is_empty() {
        cmd.args(["--why", why]);
    }
    cmd.arg("--").arg(corpus_bin(program));
    text(&succeeds(cmd, program).stdout)
}

/// The syscall names a report lists.
fn listed(report: &str) -> std::collections::BTreeSet<String> {
    report
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect()
}

/// Debian's libc.so.6 and ld.so are stripped: only their exported symbols remain, so the analysis knew neither
/// where their internal functions end nor how large their data objects are. With the detached debug files of
/// libc6-dbg (found by build ID beneath --root, where gdb finds them) the profile is smaller and still holds
/// every call the run made; a root without them gives the coarser profile, a superset. The chain `--why`
/// prints names libc's internal functions, which its dynamic symbol table does not have.
#[test]
fn debug_files_of_stripped_libraries_sharpen_the_profile_and_never_lose_a_call() {
    let dir = scratch("profile-debug-files");
    let bare = dir.join("root");
    std::fs::create_dir_all(bare.join("usr/lib")).unwrap();
    for (link, target) in [
        ("lib64", "/lib64"),
        ("lib", "/lib"),
        ("usr/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu"),
    ] {
        let _ = std::fs::remove_file(bare.join(link));
        std::os::unix::fs::symlink(target, bare.join(link)).unwrap();
    }
    for program in ["hello-dyn", "threads-dyn"] {
        let trace = dir.join(format!("{program}.trace"));
        let rec = record_trace(&trace, &[], &corpus_bin(program), &[], b"");
        assert_eq!(
            rec.status.code(),
            Some(0),
            "{program}: {}",
            text(&rec.stderr)
        );
        let host = Path::new("/");
        let with = profile_report(program, host, &[&trace], "");
        let without = profile_report(program, &bare, &[&trace], "");
        let debug_line = with
            .lines()
            .find(|l| l.starts_with("# with the symbols of their debug files: "))
            .unwrap_or_else(|| {
                panic!("{program}: no debug files read (apt install libc6-dbg):\n{with}")
            });
        assert!(
            debug_line.contains("/usr/lib/debug/.build-id/"),
            "{debug_line}"
        );
        assert!(!without.contains("debug files"), "{without}");
        for report in [&with, &without] {
            assert!(report.contains("# missed: none"), "{program}:\n{report}");
        }
        let (sharp, coarse) = (listed(&with), listed(&without));
        assert!(
            sharp.is_subset(&coarse),
            "{program}: {:?}",
            sharp.difference(&coarse)
        );
        assert!(
            sharp.len() < coarse.len(),
            "{program}: {} vs {}",
            sharp.len(),
            coarse.len()
        );
    }
    let why = profile_report("hello-dyn", Path::new("/"), &[], "write");
    let exported = Command::new("nm")
        .args(["-D", "/lib/x86_64-linux-gnu/libc.so.6"])
        .output()
        .unwrap();
    let exported: std::collections::BTreeSet<String> = text(&exported.stdout)
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .last()?
                .split('@')
                .next()
                .map(str::to_string)
        })
        .collect();
    assert!(
        exported.contains("write"),
        "nm -D libc.so.6 lists its exports"
    );
    let internal: Vec<&str> = why
        .lines()
        .filter(|l| l.starts_with("#   "))
        .filter_map(|l| l.split('<').nth(1)?.split(['>', '+']).next())
        .filter(|name| !exported.contains(*name))
        .collect();
    assert!(
        !internal.is_empty(),
        "no step names a libc-internal function:\n{why}"
    );
}
