//! The file layer tells the truth: shared file mappings, metadata changes, hard links and sendfile behave as on
//! Linux (the same program run natively is the oracle); mounted files show their real metadata (busybox `ls`,
//! `stat`, `du`, `tar` and `cpio` print what they print natively), recorded in traces and normalised on request;
//! what cannot be done fails loudly (read-only mounts, alarm); and a host-side rename between two guest opens
//! does not lead outside the mount.

mod common;
use common::*;
use std::ffi::CString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Stdio};

const BUSYBOX: &str = "/bin/busybox";

fn fsops(libc: &str) -> String {
    corpus_bin(&format!("fsops-{libc}"))
}

/// Runs `fsops COMMAND DIR` natively in one scratch directory and under tandem in another one mounted at the same
/// path, and asserts the outputs are equal.
fn same_as_native(command: &str) {
    for libc in ["musl", "glibc"] {
        let n_dir = scratch(&format!("fsops-{command}-{libc}-native"));
        let e_dir = scratch(&format!("fsops-{command}-{libc}-emulated"));
        let n = native(&fsops(libc), &[command, n_dir.to_str().unwrap()], &[], b"");
        // The emulated run sees the other directory at the native one's path, so paths print the same; and
        // owned by the guest's user (normalised), as the native directory is by the user running the test.
        let mount = format!("{}:{}", e_dir.display(), n_dir.display());
        let e = emulate(
            &["--normalize-metadata", "--mount", &mount],
            &fsops(libc),
            &[command, n_dir.to_str().unwrap()],
            b"",
        );
        assert!(n.status.success(), "{command}: {}", text(&n.stderr));
        assert_same(&format!("fsops {command} ({libc})"), &n, &e);
        assert!(
            !text(&e.stderr).contains("unknown syscalls"),
            "{}",
            text(&e.stderr)
        );
    }
}

#[test]
fn shared_file_mappings_are_coherent_with_the_file() {
    // Stores reach pread, pwrite and read(2) reach the mapping, msync and munmap keep them, a shrink and regrow
    // clears, and writable shared mappings of read-only descriptors are EACCES (also through mprotect).
    same_as_native("mmap-shared");
}

#[test]
fn chmod_chown_utimensat_link_and_sendfile_change_what_linux_changes() {
    same_as_native("meta");
}

/// copy_file_range(2) as cp (coreutils 9) uses it: offsets, short copies, one file, and every refusal.
#[test]
fn copy_file_range_copies_and_refuses_as_linux_does() {
    same_as_native("copy-range");
}

#[test]
fn read_only_mounts_refuse_metadata_changes_and_chown_needs_privilege() {
    let dir = scratch("fsops-readonly");
    std::fs::create_dir(dir.join("hostdir")).unwrap();
    std::fs::write(dir.join("host.txt"), b"on the host\n").unwrap();
    let d = dir.to_str().unwrap();
    // Normalised metadata: the host files belong to the guest's uid whoever runs the test.
    let e = emulate(
        &["--normalize-metadata", "--mount", d],
        &fsops("musl"),
        &["readonly", d],
        b"",
    );
    assert_eq!(
        text(&e.stdout),
        "chmod host file: -1 EROFS\n\
         chmod host dir: -1 EROFS\n\
         chown host file: -1 EROFS\n\
         utimensat host file: -1 EROFS\n\
         utimensat host dir: -1 EROFS\n\
         fchmod host file: -1 EROFS\n\
         futimens host file: -1 EROFS\n\
         chown new to uid 0: -1 EPERM\n\
         chown new to gid 0: -1 EPERM\n\
         chown new to own ids: 0\n\
         fchmod new setuid: 0\n\
         fchown new keeps ids: 0\n\
         mode after chown: 755\n\
         chmod /dev/null: -1 EPERM\n\
         touch /dev/null: 0\n\
         link host file: 0\n\
         host file after link: mode 100644 nlink 2 mine 1 atime now mtime now\n\
         chmod host file copied up by link: 0\n",
        "stderr: {}",
        text(&e.stderr)
    );
    assert_eq!(
        std::fs::read(dir.join("host.txt")).unwrap(),
        b"on the host\n",
        "the host is never written"
    );
    assert!(!dir.join("hostlink").exists());
}

/// alarm(2) and setitimer(2) ITIMER_REAL are timers of the guest kernel now: they answer as on Linux (the
/// unsupported CPU-time itimers still fail loudly: linux::tests::cpu_time_itimers_are_enosys_with_a_reason).
#[test]
fn alarm_and_setitimer_answer_as_linux_does() {
    let n = native(&fsops("glibc"), &["timers", "-"], &[], b"");
    assert_eq!(text(&n.stdout), "alarm: 0\nsetitimer: 0\n");
    let e = emulate(&["--strict"], &fsops("glibc"), &["timers", "-"], b"");
    assert_same("fsops timers", &n, &e);
    assert!(!text(&e.stderr).contains("warning"), "{}", text(&e.stderr));
}

/// Sets a path's access and modification times without following a link (utimensat AT_SYMLINK_NOFOLLOW).
fn set_times(path: &Path, atime: i64, mtime: i64) {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let ts = [
        libc::timespec {
            tv_sec: atime,
            tv_nsec: 250_000_000,
        },
        libc::timespec {
            tv_sec: mtime,
            tv_nsec: 123_456_789,
        },
    ];
    // SAFETY: `p` and `ts` are valid for the duration of the call.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            p.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
}

/// A small tree with files, a sparse file, a symbolic link, nested directories and odd modes; every time is
/// set years in the past (so `ls` prints the year whatever the clock) and deepest first (so no later change
/// moves a directory's times).
fn metadata_tree(name: &str, with_hard_link: bool) -> std::path::PathBuf {
    let dir = scratch(name);
    std::fs::create_dir_all(dir.join("sub/deeper")).unwrap();
    std::fs::write(dir.join("a.txt"), b"hello\n").unwrap();
    std::fs::write(dir.join("sub/b.bin"), vec![7u8; 10_000]).unwrap();
    let sparse = std::fs::File::create(dir.join("sub/sparse")).unwrap();
    sparse.set_len(1 << 20).unwrap();
    std::fs::write(dir.join("sub/deeper/c"), b"c").unwrap();
    std::os::unix::fs::symlink("a.txt", dir.join("link")).unwrap();
    if with_hard_link {
        std::fs::hard_link(dir.join("a.txt"), dir.join("hard")).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("sub"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::fs::set_permissions(
        dir.join("sub/b.bin"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    for (i, p) in [
        "sub/deeper/c",
        "sub/deeper",
        "sub/sparse",
        "sub/b.bin",
        "sub",
        "link",
        "a.txt",
        ".",
    ]
    .iter()
    .enumerate()
    {
        set_times(
            &dir.join(p),
            1_500_000_000 + i as i64,
            1_400_000_000 + i as i64 * 1000,
        );
    }
    dir
}

/// busybox APPLET ARGS natively and under tandem with `dir` mounted at its own path (and the host's user names).
fn busybox_both(
    dir: &Path,
    args: &[&str],
    stdin: &[u8],
) -> (std::process::Output, std::process::Output) {
    let n = native(BUSYBOX, args, &[], stdin);
    let d = dir.to_str().unwrap();
    let e = emulate(
        &[
            "--mount",
            d,
            "--mount",
            "/etc/passwd",
            "--mount",
            "/etc/group",
        ],
        BUSYBOX,
        args,
        stdin,
    );
    assert!(n.status.success(), "{args:?}: {}", text(&n.stderr));
    (n, e)
}

#[test]
fn mounted_files_show_their_real_metadata_as_on_linux() {
    let dir = metadata_tree("metadata-tree", true);
    let d = dir.to_str().unwrap();
    let sub = format!("{d}/sub");
    let a = format!("{d}/a.txt");
    let link = format!("{d}/link");
    let sparse = format!("{d}/sub/sparse");
    for args in [
        vec!["ls", "-ln", d],
        vec!["ls", "-lnai", sub.as_str()],
        vec!["ls", "-ln", "--full-time", sub.as_str()],
        vec![
            "stat",
            "-c",
            "%n %a %u %g %s %h %Y %b %B %i %d %f",
            d,
            &a,
            &sub,
            &link,
            &sparse,
        ],
        // The whole of stat(1) (atime included: nothing in these runs reads the files).
        vec!["stat", &a, &sub, &sparse],
        vec!["du", "-s", d],
    ] {
        let (n, e) = busybox_both(&dir, &args, b"");
        assert_same(&format!("busybox {args:?}"), &n, &e);
    }
    // Listings come in the host's order, as natively.
    let (n, e) = busybox_both(&dir, &["du", "-a", &sub], b"");
    assert_same("busybox du -a", &n, &e);
    // cpio writes each file's inode, mode, owners, link count, mtime, size and device: byte for byte the same,
    // given the same list of names.
    let list: String = [
        "",
        "/a.txt",
        "/hard",
        "/link",
        "/sub",
        "/sub/b.bin",
        "/sub/deeper",
        "/sub/deeper/c",
        "/sub/sparse",
    ]
    .iter()
    .map(|p| format!("{d}{p}\n"))
    .collect();
    let (n, e) = busybox_both(&dir, &["cpio", "-o", "-H", "newc"], list.as_bytes());
    assert!(n.stdout.len() > 20_000);
    assert!(
        n.stdout == e.stdout,
        "cpio archives differ (native {} bytes, emulated {}): {}",
        n.stdout.len(),
        e.stdout.len(),
        text(&e.stderr)
    );
}

/// busybox tar of a mounted tree writes the archive Linux writes, byte for byte: the same names in the same
/// order (the host's directory order), owners, modes, times and contents.
#[test]
fn tar_archives_a_mounted_tree_as_on_linux() {
    let dir = metadata_tree("metadata-tar", false);
    let (n, e) = busybox_both(
        &dir,
        &["tar", "cf", "-", "-C", dir.to_str().unwrap(), "."],
        b"",
    );
    assert!(e.status.success(), "{}", text(&e.stderr));
    assert!(n.stdout.len() > 10_000, "{}", n.stdout.len());
    assert!(
        n.stdout == e.stdout,
        "tar archives differ (native {} bytes, emulated {}): {}",
        n.stdout.len(),
        e.stdout.len(),
        text(&e.stderr)
    );
}

/// A mounted directory lists its names in the host's getdents order, as natively (`find`, `ls -U`, readdir
/// with "." and ".." where the host puts them); a recording
/// holds that order and replays it; --normalize-metadata sorts it, so the listing is the same on any machine;
/// a name the guest adds comes after the host's.
#[test]
fn mounted_directories_list_in_the_hosts_order() {
    let dir = scratch("dir-order");
    // Forty names made in a shuffled order: ext4 and tmpfs list them neither sorted nor as made.
    let mut names: Vec<String> = (0..40).map(|i| format!("f{:02}", (i * 17) % 40)).collect();
    names.push("zz".into());
    for name in &names {
        std::fs::write(dir.join(name), name.as_bytes()).unwrap();
    }
    let d = dir.to_str().unwrap();
    // The names `find DIR -mindepth 1` printed, in its order.
    let names_of = |out: &std::process::Output, dir: &str| -> Vec<String> {
        text(&out.stdout)
            .lines()
            .map(|l| l.strip_prefix(&format!("{dir}/")).unwrap_or(l).to_string())
            .collect()
    };
    let (n, e) = busybox_both(&dir, &["find", d, "-mindepth", "1"], b"");
    assert_same("busybox find", &n, &e);
    let host_order = names_of(&n, d);
    let mut sorted: Vec<String> = names.clone();
    sorted.sort();
    let mut listed = host_order.clone();
    listed.sort();
    assert_eq!(listed, sorted, "native find lists every name");
    // readdir(3) gives "." and ".." where the host puts them too (ext4: at their hash's place).
    let script = format!("opendir(D, '{d}') or die; print join(' ', readdir(D)), \"\\n\"");
    let n = native("/usr/bin/perl", &["-e", &script], &[], b"");
    let e = emulate(&[], "/usr/bin/perl", &["-e", &script], b"");
    assert_same("perl readdir", &n, &e);
    let mount = format!("{d}:/data");
    let find_data = ["find", "/data", "-mindepth", "1"];
    let e = emulate(
        &["--mount", &mount, "--normalize-metadata"],
        BUSYBOX,
        &find_data,
        b"",
    );
    assert_eq!(names_of(&e, "/data"), sorted, "normalised");
    let e = emulate(
        &["--mount", &mount],
        BUSYBOX,
        &[
            "sh",
            "-c",
            "touch /data/aa /data/new && find /data -mindepth 1",
        ],
        b"",
    );
    let mut expected = host_order.clone();
    expected.extend(["aa".to_string(), "new".to_string()]);
    assert_eq!(
        names_of(&e, "/data"),
        expected,
        "the guest's names come after the host's, sorted: {}",
        text(&e.stderr)
    );
    let trace = scratch("dir-order-trace").join("find.trace");
    let rec = record_trace(&trace, &["--mount", &mount], BUSYBOX, &find_data, b"");
    assert_eq!(names_of(&rec, "/data"), host_order, "{}", text(&rec.stderr));
    // The replay reads the recorded order, not the host's: the directory may change in between.
    std::fs::remove_file(dir.join("f07")).unwrap();
    std::fs::write(dir.join("late"), b"").unwrap();
    let rep = Command::new(tandem())
        .arg("replay")
        .arg(&trace)
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(rep.status.code(), Some(0), "{}", text(&rep.stderr));
    assert!(
        text(&rep.stderr).contains(": verified: "),
        "{}",
        text(&rep.stderr)
    );
    assert_eq!(names_of(&rep, "/data"), host_order, "replayed listing");
}

#[test]
fn normalised_metadata_is_the_same_on_any_machine_and_the_default_is_the_hosts() {
    // Two copies of one tree made at different times, so inode numbers, times and (maybe) owners differ.
    let one = metadata_tree("normalize-one", false);
    let two = metadata_tree("normalize-two", false);
    set_times(&two.join("a.txt"), 1_000, 2_000);
    let stat = |dir: &Path, normalize: bool| {
        let mount = format!("{}:/data", dir.display());
        let mut flags = vec!["--mount", mount.as_str()];
        if normalize {
            flags.push("--normalize-metadata");
        }
        let e = emulate(
            &flags,
            BUSYBOX,
            &[
                "stat",
                "-c",
                "%n %a %u %g %s %h %Y %X %Z %b %i %d",
                "/data",
                "/data/a.txt",
                "/data/sub/b.bin",
                "/data/link",
            ],
            b"",
        );
        assert!(e.status.success(), "{}", text(&e.stderr));
        text(&e.stdout)
    };
    let normal = stat(&one, true);
    assert_eq!(normal, stat(&two, true));
    assert!(
        normal.contains("/data/a.txt 644 1000 1000 6 1 1704067200 1704067200 1704067200 8 "),
        "{normal}"
    );
    // By default the host's own metadata shows, so the copies differ.
    let real_one = stat(&one, false);
    assert_ne!(real_one, stat(&two, false));
    assert!(
        real_one.contains(" 1400006000 "),
        "a.txt's real mtime: {real_one}"
    );
}

#[test]
fn mounted_metadata_is_recorded_and_replayed() {
    let dir = metadata_tree("metadata-replay", false);
    let d = dir.to_str().unwrap();
    let trace = dir.with_extension("trace");
    let a = format!("{d}/a.txt");
    let args = ["stat", "-c", "%a %u %g %s %h %Y %b %i", &a];
    let r = record_trace(&trace, &["--mount", d], BUSYBOX, &args, b"");
    assert!(r.status.success(), "{}", text(&r.stderr));
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(&a).unwrap();
    assert_eq!(
        text(&r.stdout),
        format!(
            "644 {} {} 6 1 1400006000 8 {}\n",
            md.uid(),
            md.gid(),
            md.ino()
        ),
        "the recording saw the host's metadata"
    );
    // The host file changes after the recording: the replay answers from the trace.
    set_times(&dir.join("a.txt"), 5, 6);
    std::fs::remove_file(dir.join("a.txt")).unwrap();
    let out = Command::new(tandem())
        .args(["replay"])
        .arg(&trace)
        .current_dir(repo())
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), text(&r.stdout));
}

/// Swaps `a` with `b` atomically (renameat2 RENAME_EXCHANGE), as a racing host process would.
fn exchange(a: &Path, b: &Path) {
    let a = CString::new(a.as_os_str().as_bytes()).unwrap();
    let b = CString::new(b.as_os_str().as_bytes()).unwrap();
    // SAFETY: both paths are valid NUL-terminated strings for the duration of the call.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    assert_eq!(r, 0, "renameat2: {}", std::io::Error::last_os_error());
}

/// The guest opens /data/sub/FIRST, waits for a line of stdin, opens /data/sub/SECOND; between the two the test
/// swaps the mounted directory sub for a link to a directory outside the mount. Returns the guest's output.
fn open_across_a_swap(name: &str, first: &str, second: &str) -> String {
    let dir = scratch(name);
    std::fs::create_dir_all(dir.join("m/sub")).unwrap();
    std::fs::create_dir_all(dir.join("outside")).unwrap();
    for f in ["file.txt", "other.txt"] {
        std::fs::write(dir.join("m/sub").join(f), b"inside\n").unwrap();
        std::fs::write(dir.join("outside").join(f), b"secret\n").unwrap();
    }
    std::os::unix::fs::symlink(dir.join("outside"), dir.join("swap")).unwrap();
    let mount = format!("{}:/data", dir.join("m").display());
    let mut child = Command::new(tandem())
        .args(["run", "--mount", &mount, "--"])
        .arg(fsops("musl"))
        .args(["twice", "/data/sub", first, second])
        .current_dir(repo())
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first_line = String::new();
    // The guest prints its first open's result, then blocks reading stdin: the swap happens in between.
    stdout.read_line(&mut first_line).unwrap();
    assert_eq!(first_line, "open 0: inside\n");
    exchange(&dir.join("m/sub"), &dir.join("swap"));
    assert!(std::fs::symlink_metadata(dir.join("m/sub"))
        .unwrap()
        .file_type()
        .is_symlink());
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();
    drop(stdin);
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    child.wait().unwrap();
    first_line + &rest
}

#[test]
fn a_host_side_rename_between_two_opens_does_not_escape_the_mount() {
    // The same name again (its metadata known to the guest already) and a new one (asked of the host now).
    for (name, first, second) in [
        ("rename-race-same", "file.txt", "file.txt"),
        ("rename-race-new", "file.txt", "other.txt"),
    ] {
        let out = open_across_a_swap(name, first, second);
        assert!(
            !out.contains("secret"),
            "{name}: read outside the mount:\n{out}"
        );
        assert!(
            out.starts_with("open 0: inside\nopen 1: E"),
            "{name}: the second open must fail:\n{out}"
        );
    }
}

#[test]
fn nested_directories_cost_linear_time_and_memory() {
    let dir = scratch("nest");
    let d = dir.to_str().unwrap();
    let e = emulate(&["--mount", d], &fsops("musl"), &["nest", d, "16000"], b"");
    assert_eq!(
        text(&e.stdout),
        "depth 16000, leaf 5 bytes\n",
        "{}",
        text(&e.stderr)
    );
}

/// fcntl record locks (POSIX and OFD) and flock(2) between a parent and the children it forks answer as on
/// Linux, byte for byte (corpus/src/locks.c prints return values, errno names and what F_GETLK reports, never a
/// pid): conflicts, splits and merges, release on any close and at exit, F_SETLKW waiting and EDEADLK, OFD locks
/// per description, flock per description and apart from fcntl's. Under both scheduling policies and several
/// seeds (the waits and the deadlock happen in whatever order the schedule gives), and recorded and replayed.
#[test]
fn file_locks_between_processes_answer_as_on_linux() {
    for libc in ["musl", "glibc"] {
        let program = corpus_bin(&format!("locks-{libc}"));
        let dir = scratch(&format!("locks-{libc}"));
        let n = native(&program, &[dir.to_str().unwrap()], &[], b"");
        assert!(
            n.status.success() && text(&n.stdout).ends_with("done\n"),
            "{libc} native: {}{}",
            text(&n.stdout),
            text(&n.stderr)
        );
        for flags in [
            &[][..],
            &["--sched", "chaos", "--seed", "3"][..],
            &["--sched", "chaos", "--seed", "11"][..],
            &["--sched", "fair:700", "--seed", "5"][..],
        ] {
            let e = emulate(flags, &program, &["/tmp"], b"");
            assert_same(&format!("locks-{libc} {flags:?}"), &n, &e);
        }
        let trace = scratch(&format!("locks-{libc}-trace")).join("locks.trace");
        records_and_replays_verified(&trace, &["--sched", "chaos"], &program, &["/tmp"]);
    }
}

/// sendfile(2) reads its input through the input's splice_read, which a pipe lacks: Linux answers EINVAL and
/// busybox cat falls back to read(2) (what `strace -f` shows natively). tandem copied between any readable and
/// writable descriptors, so the guest took a path Linux never takes.
#[test]
fn sendfile_from_a_pipe_fails_as_on_linux() {
    let script = "echo abc | cat";
    let native = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-e",
            "trace=sendfile",
            "/bin/busybox",
            "sh",
            "-c",
            script,
        ])
        .env_clear()
        .output()
        .expect("strace (apt install strace)");
    let native_err = text(&native.stderr);
    assert!(native_err.contains("= -1 EINVAL"), "native: {native_err}");
    let e = emulate(&["--strace"], "/bin/busybox", &["sh", "-c", script], b"");
    assert_eq!(text(&e.stdout), "abc\n");
    let sendfiles: Vec<&str> = text(&e.stderr)
        .lines()
        .filter(|l| l.contains(" sendfile("))
        .map(|l| l.rsplit(" = ").next().unwrap())
        .collect::<Vec<_>>()
        .into_iter()
        .map(|r| if r == "-22" { "EINVAL" } else { "copied" })
        .collect();
    assert_eq!(sendfiles, ["EINVAL"], "{}", text(&e.stderr));
}
