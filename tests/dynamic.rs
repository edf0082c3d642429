//! Dynamically linked programs, run as they are installed: the dynamic loader PT_INTERP names is mapped from the
//! guest's root (`--root`, by default the host's / read-only), and the programs' output is compared byte for byte
//! with the same programs run natively. Recordings embed every library the loader read, so a trace replays
//! verified with the root gone.

mod common;
use common::*;
use std::path::Path;
use std::process::{Command, Output};

/// The line `--report-state` prints: instruction count and final state hash.
fn state_line(out: &Output) -> String {
    text(&out.stderr)
        .lines()
        .find(|l| l.starts_with("tandem: icount "))
        .unwrap_or_else(|| panic!("no state line in {}", text(&out.stderr)))
        .to_string()
}

#[test]
fn gcc_built_programs_run_as_natively() {
    same_as_native("hello-dyn", &[], &corpus_bin("hello-dyn"), &["a", "b"]);
    same_as_native("sha256-dyn", &[], &corpus_bin("sha256-dyn"), &[]);
    same_as_native("qsort-dyn", &[], &corpus_bin("qsort-dyn"), &[]);
    same_as_native("threads-dyn", &[], &corpus_bin("threads-dyn"), &["4"]);
}

/// CPUID reports MMX (glibc's loader requires it), so programs may use it: every MMX arithmetic, logic, compare,
/// unpack, pack and shift form on saturation-edge inputs, then x87 long double code after EMMS, print what the
/// host CPU prints (the static musl build too, which no loader checks for).
#[test]
fn mmx_programs_run_as_natively() {
    same_as_native("mmx-dyn", &[], &corpus_bin("mmx-dyn"), &[]);
    same_as_native("mmx-musl", &[], &corpus_bin("mmx-musl"), &[]);
}

/// The same dynamic run twice gives the same instruction count and state hash (the loader's choices, the
/// libraries' ifuncs and their CPUID probes are all functions of the inputs).
#[test]
fn dynamic_runs_are_deterministic() {
    let flags = ["--report-state"];
    let python = [
        "-c",
        "import random, os; print(random.random(), os.urandom(4).hex(), hash('x'))",
    ];
    for (program, args) in [
        (corpus_bin("hello-dyn"), &[][..]),
        (corpus_bin("threads-dyn"), &["4"][..]),
        ("/usr/bin/python3".to_string(), &python[..]),
    ] {
        let a = emulate(&flags, &program, args, b"");
        let b = emulate(&flags, &program, args, b"");
        assert_eq!(a.status.code(), Some(0), "{program}: {}", text(&a.stderr));
        assert_eq!(state_line(&a), state_line(&b), "{program}");
        assert_eq!(a.stdout, b.stdout, "{program}");
    }
    // Python's randomness comes from the seed: another seed, other numbers.
    let c = emulate(&["--seed", "1"], "/usr/bin/python3", &python, b"");
    let a = emulate(&[], "/usr/bin/python3", &python, b"");
    assert_ne!(a.stdout, c.stdout);
}

/// ls of a directory, by absolute path and relative to the working directory (the host's, seen through the
/// root); sort, grep and gzip over a corpus file.
#[test]
fn coreutils_as_natively() {
    let dir = repo().join("corpus/src");
    let dir = dir.to_str().unwrap();
    same_as_native("ls", &[], "/bin/ls", &[dir]);
    same_as_native("ls -1aF", &[], "/bin/ls", &["-1aF", "corpus/src"]);
    same_as_native("sort", &[], "/usr/bin/sort", &["-r", "corpus/src/hello.c"]);
    same_as_native(
        "grep",
        &[],
        "/bin/grep",
        &["-n", "include", "corpus/src/sha256.c"],
    );
    let gz = same_as_native("gzip", &[], "/bin/gzip", &["-9nc", "corpus/src/sha256.c"]);
    assert!(gz.stdout.starts_with(&[0x1f, 0x8b]));
}

#[test]
fn python3_runs_as_natively() {
    let script = "import json, re, hashlib\n\
                  d = {'b': [1, 2.5, None], 'a': 'x' * 3}\n\
                  print(json.dumps(d, sort_keys=True))\n\
                  print(re.sub(r'(\\d+)', lambda m: str(int(m.group(1)) * 2), 'a1 b22 c333'))\n\
                  print(hashlib.sha256(b'tandem').hexdigest())\n\
                  print(sum(i * i for i in range(1000)), 2 ** 100, 7 / 3)";
    same_as_native("python3", &[], "/usr/bin/python3", &["-c", script]);
}

#[test]
fn perl_runs_as_natively() {
    let script = r#"my %h = (b => 2, a => 1, c => 3);
                    print join(",", map { "$_=$h{$_}" } sort keys %h), "\n";
                    my $s = "2024-01-01 tandem 42"; $s =~ /(\d+)-(\d+)-(\d+) (\w+) (\d+)/ or die;
                    print "$4 $1 ", $5 * 2, "\n";"#;
    same_as_native("perl", &[], "/usr/bin/perl", &["-e", script]);
}

/// The JVM (OpenJDK, as Debian installs it) runs a class as on Linux: its JIT (whose stubs use RCPPS and ask
/// getcpu), its garbage collector and a pool of threads, many of them; recorded and replayed verified.
#[test]
fn java_runs_a_class_as_natively() {
    let args = ["-cp", "corpus/java", "Tasks"];
    let out = same_as_native("java", &[], "/usr/bin/java", &args);
    assert!(
        text(&out.stdout).contains("400! has 869 digits"),
        "{}",
        text(&out.stdout)
    );
    let trace = scratch("java-trace").join("java.trace");
    records_and_replays_verified(
        &trace,
        &["--sched", "chaos", "--seed", "3"],
        "/usr/bin/java",
        &args,
    );
    let _ = std::fs::remove_file(&trace);
}

/// A shell script runs installed dynamic programs through execve: dash (itself dynamic) runs env, ls and sort;
/// a static busybox sh does the same with --root giving it the system's programs.
#[test]
fn shell_scripts_exec_installed_dynamic_programs() {
    let dir = repo().join("corpus/src");
    let script = format!(
        "/usr/bin/env; /bin/ls {} | /usr/bin/sort -r | /usr/bin/head -3; echo done",
        dir.display()
    );
    same_as_native("dash", &[], "/bin/sh", &["-c", &script]);
    // Compared with busybox run natively: its sh exports SHLVL and a default PATH, which dash does not.
    let args = ["sh", "-c", &script];
    let n = native("/bin/busybox", &args, &[], b"");
    let e = emulate(&["--root", "/"], "/bin/busybox", &args, b"");
    assert_same("busybox sh", &n, &e);
    assert!(text(&e.stdout).contains("SHLVL=1\n"), "{}", text(&e.stdout));
    // find lists a directory in the host file system's order natively and in name order under tandem (the
    // guest's listings are sorted, so they do not depend on the host): compared sorted.
    let find = "/usr/bin/find corpus/src -name '*.c' | /usr/bin/sort; /usr/bin/awk '{ n += NF } END { print n }' corpus/src/hello.c";
    same_as_native("find and awk", &[], "/bin/sh", &["-c", find]);
}

/// Without a root that holds the loader, a dynamic program is refused with a message naming the interpreter
/// and --root (tandem's own failure, 125); execve of one from a static program is ENOENT, as on Linux.
#[test]
fn a_missing_interpreter_is_a_clear_error() {
    let empty = scratch("dynamic-empty-root");
    let e = emulate(
        &["--root", empty.to_str().unwrap()],
        &corpus_bin("hello-dyn"),
        &[],
        b"",
    );
    let err = text(&e.stderr);
    assert_eq!(e.status.code(), Some(125), "{err}");
    assert!(
        err.contains("/lib64/ld-linux-x86-64.so.2") && err.contains("--root"),
        "{err}"
    );
    let hello = repo().join("corpus/bin/hello-dyn");
    let e = emulate(
        &["--mount", &format!("{}:/hello", hello.display())],
        "/bin/busybox",
        &["sh", "-c", "/hello; echo status $?"],
        b"",
    );
    assert_eq!(text(&e.stdout), "status 127\n", "{}", text(&e.stderr));
}

/// A minimal root: the loader, libc and the program, copied from the host.
fn minimal_root(dir: &Path) {
    for (from, to) in [
        ("/lib64/ld-linux-x86-64.so.2", "lib64/ld-linux-x86-64.so.2"),
        (
            "/lib/x86_64-linux-gnu/libc.so.6",
            "lib/x86_64-linux-gnu/libc.so.6",
        ),
    ] {
        let to = dir.join(to);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, &to).unwrap();
    }
}

/// A dynamic run recorded with --root replays verified from the trace alone: the loader and libc it read are
/// embedded, and the root can be gone by the time the trace is replayed.
#[test]
fn a_dynamic_recording_replays_with_its_root_gone() {
    let dir = scratch("dynamic-replay");
    let root = dir.join("root");
    minimal_root(&root);
    let program = dir.join("hello");
    std::fs::copy(repo().join("corpus/bin/hello-dyn"), &program).unwrap();
    let trace = dir.join("hello.trace");
    let rec = record_trace(
        &trace,
        &["--root", root.to_str().unwrap(), "--report-state"],
        program.to_str().unwrap(),
        &["x"],
        b"",
    );
    assert_eq!(rec.status.code(), Some(0), "{}", text(&rec.stderr));
    let native_out = native(program.to_str().unwrap(), &["x"], &[], b"");
    assert_eq!(rec.stdout, native_out.stdout);
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::remove_file(&program).unwrap();
    let rep = Command::new(tandem())
        .current_dir(repo())
        .env_clear()
        .arg("replay")
        .arg(&trace)
        .output()
        .unwrap();
    let err = text(&rep.stderr);
    assert_eq!(rep.status.code(), Some(0), "{err}");
    assert!(err.contains("verified"), "{err}");
    assert_eq!(rep.stdout, rec.stdout);
    let icount = state_line(&rec);
    let icount = icount.split_whitespace().nth(2).unwrap();
    assert!(
        err.contains(&format!("replayed {icount} instructions")),
        "{err}"
    );
}

/// sqlite3 creates, fills and queries a database file: natively on the host, under tandem in the overlay over
/// the (read-only) root, at the same path; the host's directory stays empty.
#[test]
fn sqlite3_on_a_new_database_file_as_natively() {
    let dir = scratch("dynamic-sqlite");
    let db = dir.join("db");
    let db = db.to_str().unwrap();
    let sql =
        "create table t(a integer, b text); insert into t values (1, 'x'), (2, 'y'), (3, 'z'); \
               select sum(a), group_concat(b, '-') from t; select count(*) from t where b > 'x';";
    let n = native("/usr/bin/sqlite3", &[db, sql], &[], b"");
    assert_eq!(text(&n.stdout), "6|x-y-z\n2\n", "{}", text(&n.stderr));
    std::fs::remove_file(db).unwrap();
    let e = emulate(&[], "/usr/bin/sqlite3", &[db, sql], b"");
    assert_same("sqlite3", &n, &e);
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "the guest wrote to the host"
    );
}

/// The file-backed lines of /proc/self/maps, as (permissions, offset, path): what does not depend on where
/// things were placed (addresses) or on the machine's devices.
fn file_lines(maps: &str) -> Vec<(String, String, String)> {
    let mut lines: Vec<_> = maps
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 6 && f[5].starts_with('/') && !f[5].contains("/locale/"))
                .then(|| (f[1].to_string(), f[2].to_string(), f[5].to_string()))
        })
        .collect();
    lines.sort();
    lines
}

/// /proc/self/maps names the file of every file-backed mapping, as Linux does: the program's segments, the
/// loader's and each library's (mapped by ld.so with mmap, split by mprotect, with the offsets Linux shows for
/// each part), and the libraries' inode numbers are the files'. A wrong offset after a split, a missing RELRO
/// line or an unnamed library segment makes the sets differ.
#[test]
fn proc_self_maps_names_the_mapped_files_as_linux_does() {
    let n = native("/bin/cat", &["/proc/self/maps"], &[], b"");
    let e = emulate(&[], "/bin/cat", &["/proc/self/maps"], b"");
    assert!(e.status.success(), "{}", text(&e.stderr));
    let (native_lines, emulated_lines) =
        (file_lines(&text(&n.stdout)), file_lines(&text(&e.stdout)));
    assert!(
        native_lines.iter().any(|l| l.2.ends_with("/libc.so.6")),
        "{native_lines:?}"
    );
    assert_eq!(
        native_lines,
        emulated_lines,
        "native:\n{}\nemulated:\n{}",
        text(&n.stdout),
        text(&e.stdout)
    );
    use std::os::unix::fs::MetadataExt;
    let libc_line = text(&e.stdout)
        .lines()
        .find(|l| l.ends_with("/libc.so.6"))
        .map(str::to_string)
        .unwrap();
    let path = libc_line.split_whitespace().nth(5).unwrap();
    let ino = std::fs::metadata(path).unwrap().ino();
    assert_eq!(
        libc_line.split_whitespace().nth(4),
        Some(ino.to_string().as_str()),
        "{libc_line}"
    );
}

/// fexecve(3) (execveat with AT_EMPTY_PATH on a descriptor) runs the file the descriptor is open on: python3's
/// os.execve with a descriptor prints what it prints natively.
#[test]
fn fexecve_runs_the_file_the_descriptor_is_open_on() {
    let script =
        "import os; os.execve(os.open('/bin/echo', os.O_RDONLY), ['echo', 'by descriptor'], {})";
    same_as_native("fexecve", &[], "/usr/bin/python3", &["-c", script]);
}
