//! Crash dumps read by real clients: Debian's gdb in batch mode loads the core with the corpus binary and must name
//! the crashing function, show the emulator's rip and a global's value; `readelf -n` must list the notes.

mod common;
use common::*;
use std::process::Command;

fn core_path(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("tandem-core-{}-{tag}.core", std::process::id()))
}

/// The rip of the diagnostic line "guest killed by ... at rip 0x..., icount ...".
fn emulator_rip(stderr: &str) -> u64 {
    let at = stderr
        .find("at rip 0x")
        .unwrap_or_else(|| panic!("no rip in {stderr}"))
        + "at rip 0x".len();
    let hex: String = stderr[at..]
        .chars()
        .take_while(|c| c.is_ascii_hexdigit())
        .collect();
    u64::from_str_radix(&hex, 16).unwrap()
}

fn gdb(binary: &str, core: &std::path::Path, commands: &[&str]) -> String {
    let mut cmd = Command::new("gdb");
    cmd.args(["-batch", "-nx"]);
    for c in commands {
        cmd.args(["-ex", c]);
    }
    let out = cmd
        .arg(binary)
        .arg(core)
        .current_dir(repo())
        .output()
        .expect("gdb is installed (apt-get install gdb)");
    text(&out.stdout) + &text(&out.stderr)
}

#[test]
fn gdb_reads_the_crash_core() {
    for (libc, how, signal) in [
        ("musl", "segv", "SIGSEGV"),
        ("glibc", "segv", "SIGSEGV"),
        ("musl", "fpe", "SIGFPE"),
        ("glibc", "ill", "SIGILL"),
    ] {
        let binary = corpus_bin(&format!("crash-{libc}"));
        let core = core_path(&format!("{libc}-{how}"));
        let out = emulate(&["--core", core.to_str().unwrap()], &binary, &[how], b"");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(&format!("guest killed by {signal}")),
            "{stderr}"
        );
        assert!(stderr.contains("at the crash"), "{stderr}");
        let rip = emulator_rip(&stderr);
        let g = gdb(
            &binary,
            &core,
            &[
                "bt",
                "info registers rip",
                "print/x crash_marker",
                "print $_siginfo.si_signo",
            ],
        );
        assert!(
            g.contains(&format!("Program terminated with signal {signal}")),
            "{libc} {how}:\n{g}"
        );
        let frame0 = g
            .lines()
            .find(|l| l.starts_with("#0"))
            .unwrap_or_else(|| panic!("no backtrace:\n{g}"));
        assert!(
            frame0.contains("crash_here"),
            "{libc} {how}: bt must name crash_here:\n{g}"
        );
        assert!(
            g.lines()
                .any(|l| l.starts_with("#") && l.contains(" main ")),
            "bt reaches main:\n{g}"
        );
        let rip_line = g
            .lines()
            .find(|l| l.starts_with("rip"))
            .unwrap_or_else(|| panic!("{g}"));
        assert!(
            rip_line.contains(&format!("{rip:#x}")),
            "gdb {rip_line:?} vs emulator {rip:#x}"
        );
        assert!(g.contains("= 0x5eed5eed"), "crash_marker's value:\n{g}");
        std::fs::remove_file(&core).unwrap();
    }
}

#[test]
fn readelf_lists_the_notes_and_a_poisoned_page_is_left_out() {
    let binary = corpus_bin("hello-musl");
    let core = core_path("poisoned");
    let out = emulate(
        &[
            "--core",
            core.to_str().unwrap(),
            "--faults",
            "mem.ue:icount=300,addr=0x7fffffffe000",
        ],
        &binary,
        &[],
        b"",
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("guest killed by SIGBUS"), "{stderr}");
    assert!(stderr.contains("1 poisoned pages left out"), "{stderr}");
    let notes = Command::new("readelf")
        .arg("-n")
        .arg(&core)
        .output()
        .expect("readelf");
    let notes = text(&notes.stdout);
    for n in [
        "NT_PRSTATUS",
        "NT_PRPSINFO",
        "NT_SIGINFO",
        "NT_AUXV",
        "NT_FILE",
        "NT_FPREGSET",
        "TANDEM",
    ] {
        assert!(notes.contains(n), "readelf -n lacks {n}:\n{notes}");
    }
    let headers = Command::new("readelf")
        .arg("-lW")
        .arg(&core)
        .output()
        .expect("readelf");
    let headers = text(&headers.stdout);
    assert!(headers.contains("Elf file type is CORE"), "{headers}");
    assert!(
        !headers.contains("0x00007fffffffe000"),
        "the poisoned page must not be dumped:\n{headers}"
    );
    let g = gdb(
        &binary,
        &core,
        &[
            "print $_siginfo.si_code",
            "print $_siginfo._sifields._sigfault.si_addr",
            "x/gx 0x7fffffffe000",
        ],
    );
    assert!(g.contains("$1 = 4"), "BUS_MCEERR_AR in NT_SIGINFO:\n{g}");
    assert!(g.contains("0x7fffffffe"), "si_addr in the lost page:\n{g}");
    assert!(
        g.contains("Cannot access memory at address 0x7fffffffe000"),
        "gdb cannot read the poisoned page:\n{g}"
    );
    std::fs::remove_file(&core).unwrap();
}

#[test]
fn a_core_on_request_at_a_normal_exit() {
    let core = core_path("request");
    let out = emulate(
        &["--core", core.to_str().unwrap(), "--report-state"],
        &corpus_bin("hello-musl"),
        &[],
        b"",
    );
    assert_eq!(out.status.code(), Some(0));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("on request"), "{stderr}");
    let plain = emulate(&["--report-state"], &corpus_bin("hello-musl"), &[], b"");
    let hash = |s: &str| {
        s.lines()
            .find(|l| l.contains("state_hash"))
            .map(str::to_string)
    };
    assert_eq!(
        hash(&stderr),
        hash(&text(&plain.stderr)),
        "taking the dump did not change the state"
    );
    let g = gdb(&corpus_bin("hello-musl"), &core, &["info registers rip"]);
    assert!(g.contains("rip"), "{g}");
    std::fs::remove_file(&core).unwrap();
}

/// The core of a multi-thread crash holds every thread of the process (one NT_PRSTATUS and one NT_PRFPREG
/// each, the crashing thread first, as Linux writes it): gdb lists four threads, stops in the crashing one
/// (gamma, in worker_gamma), and `thread apply all bt` names each thread's own function: alpha's and beta's
/// loops, main's pthread_join.
#[test]
fn thread_apply_all_bt_reads_every_thread_of_a_multi_thread_crash() {
    for libc in ["glibc", "musl"] {
        let binary = corpus_bin(&format!("workers-{libc}"));
        let core = core_path(&format!("workers-{libc}"));
        let out = emulate(
            &["--core", core.to_str().unwrap()],
            &binary,
            &["crash"],
            b"",
        );
        let stderr = text(&out.stderr);
        assert!(stderr.contains("guest killed by SIGSEGV"), "{stderr}");
        let notes = Command::new("readelf")
            .args(["-n"])
            .arg(&core)
            .output()
            .expect("readelf (binutils)");
        let notes = text(&notes.stdout);
        assert_eq!(notes.matches("NT_PRSTATUS").count(), 4, "{notes}");
        assert_eq!(notes.matches("NT_FPREGSET").count(), 4, "{notes}");
        let g = gdb(
            &binary,
            &core,
            &["info threads", "bt", "thread apply all bt"],
        );
        assert!(
            g.contains("Program terminated with signal SIGSEGV"),
            "{libc}:\n{g}"
        );
        let listed = g.lines().filter(|l| l.contains("LWP 10")).count();
        assert!(listed >= 4, "{libc}: four threads in `info threads`:\n{g}");
        let frame0 = g.lines().find(|l| l.starts_with("#0")).unwrap();
        assert!(
            frame0.contains("worker_gamma"),
            "{libc}: the crashing thread is current:\n{g}"
        );
        let all = &g[g
            .find("\nThread ")
            .unwrap_or_else(|| panic!("{libc}:\n{g}"))..];
        for function in ["worker_alpha", "worker_beta", "worker_gamma"] {
            assert!(all.contains(function), "{libc}: no {function} in\n{g}");
        }
        if libc == "glibc" {
            assert!(all.contains("in main ("), "{libc}: main's frame in\n{g}");
        }
        let _ = std::fs::remove_file(&core);
    }
}

/// The core of a dynamically linked program: gdb finds the libraries from the core's auxv (AT_BASE names where
/// ld.so is) and the loader's list in the dumped memory, and shows the abort inside libc down to main, as it
/// does for the same crash run natively.
#[test]
fn gdb_reads_the_core_of_a_dynamic_program_with_its_libraries() {
    let binary = corpus_bin("crash-dyn");
    let core = core_path("dyn-abort");
    let out = emulate(
        &["--core", core.to_str().unwrap()],
        &binary,
        &["abort"],
        b"",
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("guest killed by SIGABRT"), "{stderr}");
    let g = gdb(&binary, &core, &["bt", "info sharedlibrary"]);
    std::fs::remove_file(&core).unwrap();
    assert!(g.contains("/lib/x86_64-linux-gnu/libc.so.6"), "{g}");
    let frames: Vec<&str> = g
        .lines()
        .filter(|l| l.starts_with('#'))
        .filter_map(|l| l.split(" in ").nth(1))
        .map(|f| f.split(" (").next().unwrap_or(f))
        .collect();
    assert!(
        frames.contains(&"__GI_abort") && frames.ends_with(&["descend", "main"]),
        "{g}"
    );
    assert!(frames.contains(&"crash_here"), "{g}");
}

/// A process that called execve dumps the new program's core: its auxv (AT_ENTRY is the new program's entry, as
/// /proc/PID/auxv says after an exec), so gdb with the new binary names the crashing function.
#[test]
fn the_core_after_an_execve_is_the_new_programs() {
    let core = core_path("execve");
    let bin = repo().join("corpus/bin");
    let mount = format!("{}:/c", bin.display());
    let out = emulate(
        &["--core", core.to_str().unwrap(), "--mount", &mount],
        "/bin/busybox",
        &["sh", "-c", "exec /c/crash-musl"],
        b"",
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("guest killed by SIGSEGV"), "{stderr}");
    let entry = Command::new("readelf")
        .args(["-h", "corpus/bin/crash-musl"])
        .current_dir(repo())
        .output()
        .expect("readelf");
    let entry = text(&entry.stdout)
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Entry point address:")
                .map(|v| v.trim().to_string())
        })
        .expect("readelf -h names the entry point");
    let g = gdb(&corpus_bin("crash-musl"), &core, &["info auxv", "bt"]);
    let at_entry = g
        .lines()
        .find(|l| l.contains("AT_ENTRY"))
        .unwrap_or_else(|| panic!("gdb shows no AT_ENTRY:\n{g}"));
    assert!(
        at_entry.ends_with(&entry),
        "AT_ENTRY is the new program's entry {entry}: {at_entry}\n{g}"
    );
    assert!(
        g.contains("crash_here"),
        "gdb names the crashing function:\n{g}"
    );
    std::fs::remove_file(&core).unwrap();
}

/// NT_FILE of a dynamic program's core names every file-backed mapping as /proc/self/maps does (the program,
/// the loader, libc, each split part with its offset), so gdb's `info proc mappings` on the core lists the
/// lines the program printed from its own /proc/self/maps (corpus/bin/maps-dyn, a core taken at its exit).
#[test]
fn the_core_of_a_dynamic_program_names_its_libraries_as_the_maps_do() {
    let binary = corpus_bin("maps-dyn");
    let core = core_path("dyn-maps");
    let out = emulate(&["--core", core.to_str().unwrap()], &binary, &["xyz"], b"");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
    let mut printed: Vec<(u64, u64, u64, String)> = text(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() == 6 && f[5].starts_with('/'))
        .map(|f| {
            let (lo, hi) = f[0].split_once('-').unwrap();
            (hex(lo), hex(hi), hex(f[2]), f[5].to_string())
        })
        .collect();
    let g = gdb(&binary, &core, &["info proc mappings"]);
    std::fs::remove_file(&core).unwrap();
    let mut listed: Vec<(u64, u64, u64, String)> = g
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() >= 5 && f[0].starts_with("0x") && f[f.len() - 1].starts_with('/'))
        .map(|f| (hex(f[0]), hex(f[1]), hex(f[3]), f[f.len() - 1].to_string()))
        .collect();
    printed.sort();
    listed.sort();
    assert!(
        printed.iter().any(|l| l.3.ends_with("/libc.so.6")),
        "{printed:?}"
    );
    assert_eq!(listed, printed, "{g}");
}
