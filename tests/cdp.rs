//! Writable volumes and continuous data protection, end to end: a volume ends as the same program run natively
//! leaves the same tree (corpus `volume` and busybox applets), the input directory is never written, every
//! completed operation is in the journal (restore at the end equals the exported volume), a damaged journal is a
//! clear error that still restores up to its last valid entry, marks and compaction, and the oracle: the volume
//! restored at a random point P equals the volume of the same run stopped at P by --max-insns.

mod common;
use common::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BUSYBOX: &str = "/bin/busybox";

/// What a tree holds, path by path: kind, bytes or link target, permission bits.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let mode = md.permissions().mode() & 0o7777;
            let what = if md.file_type().is_symlink() {
                format!("link -> {}", std::fs::read_link(&p).unwrap().display())
            } else if md.is_dir() {
                stack.push(p.clone());
                format!("dir {mode:o}")
            } else {
                let bytes = std::fs::read(&p).unwrap();
                format!("file {mode:o} {} bytes {:016x}", bytes.len(), fnv(&bytes))
            };
            out.insert(rel, what);
        }
    }
    out
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

fn assert_same_tree(what: &str, expected: &Path, got: &Path) {
    let (e, g) = (tree(expected), tree(got));
    if e != g {
        let mut diff = String::new();
        for k in e
            .keys()
            .chain(g.keys())
            .collect::<std::collections::BTreeSet<_>>()
        {
            if e.get(k) != g.get(k) {
                diff.push_str(&format!(
                    "  {k}: expected {:?}, got {:?}\n",
                    e.get(k),
                    g.get(k)
                ));
            }
        }
        panic!("{what}: the trees differ\n{diff}");
    }
}

/// The input tree the `volume script` expects, in a fresh directory.
fn input_tree(name: &str) -> PathBuf {
    let dir = scratch(name);
    std::fs::write(dir.join("keep.txt"), "keep\n").unwrap();
    std::fs::write(dir.join("old.txt"), "old content\n").unwrap();
    std::fs::create_dir(dir.join("in")).unwrap();
    let data: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(dir.join("in/data.bin"), data).unwrap();
    std::fs::write(dir.join("in/other.txt"), "other\n").unwrap();
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

fn tandem_cmd(args: &[&str]) -> Output {
    Command::new(tandem())
        .args(args)
        .current_dir(repo())
        .env_clear()
        .output()
        .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_volume_ends_as_the_native_run_leaves_the_tree_and_the_input_is_untouched() {
    for libc in ["musl", "glibc"] {
        let program = corpus_bin(&format!("volume-{libc}"));
        let input = input_tree(&format!("vol-script-{libc}-input"));
        let before = tree(&input);
        let native_dir = scratch(&format!("vol-script-{libc}-native")).join("v");
        copy_tree(&input, &native_dir);
        let n = native(&program, &[s(&native_dir), "script"], &[], b"");
        assert!(n.status.success(), "{}", text(&n.stderr));
        let export = scratch(&format!("vol-script-{libc}-export")).join("v");
        let volume = format!("{}:/vol", input.display());
        let e = emulate(
            &["--volume", &volume, "--export", s(&export)],
            &program,
            &["/vol", "script"],
            b"",
        );
        assert_same(&format!("volume script ({libc})"), &n, &e);
        assert_same_tree(&format!("volume script ({libc})"), &native_dir, &export);
        assert_eq!(tree(&input), before, "the input directory was written");
    }
}

#[test]
fn busybox_applets_change_a_volume_as_they_change_a_native_directory() {
    let input = input_tree("vol-busybox-input");
    let archive_src = scratch("vol-busybox-archive");
    std::fs::create_dir_all(archive_src.join("t/deep")).unwrap();
    std::fs::write(archive_src.join("t/deep/x.txt"), "from the archive\n").unwrap();
    std::fs::write(archive_src.join("t/y.txt"), "y\n").unwrap();
    let st = Command::new("tar")
        .args(["-cf"])
        .arg(input.join("a.tar"))
        .arg("-C")
        .arg(&archive_src)
        .arg("t")
        .status()
        .unwrap();
    assert!(st.success());
    let script = "mkdir -p x/y && cp keep.txt x/y/c && cp -r in x/in2 && mv old.txt x/ && rm in/data.bin \
                  && tar -xf a.tar && mv t/deep t/shallow && rm -r in && ln -s x/c lnk && echo done";
    let native_dir = scratch("vol-busybox-native").join("v");
    copy_tree(&input, &native_dir);
    let n = native(
        BUSYBOX,
        &[
            "sh",
            "-c",
            &format!("cd {} && {script}", native_dir.display()),
        ],
        &[],
        b"",
    );
    assert!(n.status.success(), "{}", text(&n.stderr));
    let export = scratch("vol-busybox-export").join("v");
    let volume = format!("{}:/vol", input.display());
    let e = emulate(
        &["--volume", &volume, "--export", s(&export)],
        BUSYBOX,
        &["sh", "-c", &format!("cd /vol && {script}")],
        b"",
    );
    assert_same("busybox on a volume", &n, &e);
    assert_same_tree("busybox on a volume", &native_dir, &export);
}

/// Runs `PROGRAM ARGS` with the volume `input` at /vol, exporting it and journaling into a fresh directory
/// `NAME-out`; returns (journal, export, the run).
fn journaled_run(
    name: &str,
    input: &Path,
    extra: &[&str],
    program: &str,
    args: &[&str],
) -> (PathBuf, PathBuf, Output) {
    let out = scratch(&format!("{name}-out"));
    let journal = out.join("run.cdp");
    let export = out.join("export");
    let volume = format!("{}:/vol", input.display());
    let mut flags = vec![
        "--volume",
        &volume,
        "--export",
        s(&export),
        "--cdp-journal",
        s(&journal),
    ];
    flags.extend_from_slice(extra);
    let e = emulate(&flags, program, args, b"");
    (journal, export, e)
}

/// Runs `volume DIR churn N SEED` on a fresh input with a journal; returns (journal, export, stderr).
fn churn_with_journal(
    name: &str,
    rounds: u32,
    seed: u64,
    extra: &[&str],
) -> (PathBuf, PathBuf, String) {
    let input = input_tree(&format!("{name}-input"));
    let rounds = rounds.to_string();
    let seed = seed.to_string();
    let args = ["/vol", "churn", &rounds, &seed];
    let (journal, export, e) =
        journaled_run(name, &input, extra, &corpus_bin("volume-musl"), &args);
    assert_eq!(e.status.code(), Some(0), "{}", text(&e.stderr));
    (journal, export, text(&e.stderr))
}

fn restore(journal: &Path, at: &str, out: &Path) -> Output {
    tandem_cmd(&["cdp", "restore", s(journal), "--at", at, "-o", s(out)])
}

#[test]
fn every_completed_operation_is_in_the_journal() {
    let (journal, export, _) = churn_with_journal("cdp-rpo", 300, 5, &[]);
    let out = scratch("cdp-rpo-restored").join("r");
    let r = restore(&journal, "end", &out);
    assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
    assert_same_tree("restore at the end", &export, &out);
    let list = tandem_cmd(&["cdp", "list", s(&journal)]);
    assert_eq!(list.status.code(), Some(0));
    let listing = text(&list.stdout);
    assert!(listing.starts_with("base volume 0 at /vol"), "{listing}");
    for kind in [
        "write file",
        "rename",
        "truncate file",
        "remove",
        "fsync file",
        "fsync dir",
    ] {
        assert!(listing.contains(kind), "no {kind} in\n{listing}");
    }
}

#[test]
fn a_damaged_journal_names_the_entry_and_restores_up_to_its_last_valid_one() {
    let (journal, _, _) = churn_with_journal("cdp-damage", 100, 9, &[]);
    let bytes = std::fs::read(&journal).unwrap();
    let dir = scratch("cdp-damage-cut");
    // Cut in the middle of the last entry: the list names it, and restore at the end gives the state after the
    // entry before it, with exit status 4.
    let cut = dir.join("cut.cdp");
    std::fs::write(&cut, &bytes[..bytes.len() - 3]).unwrap();
    let list = tandem_cmd(&["cdp", "list", s(&cut)]);
    assert_eq!(list.status.code(), Some(4));
    let err = text(&list.stderr);
    assert!(
        err.contains("is damaged at entry") && err.contains("torn"),
        "{err}"
    );
    let entries = text(&list.stdout).lines().count();
    let last_valid_seq = entries - 2; // one base line, sequence numbers from 0
    let at_end = restore(&cut, "end", &dir.join("end"));
    assert_eq!(at_end.status.code(), Some(4), "{}", text(&at_end.stderr));
    let at_seq = restore(&journal, &format!("seq:{last_valid_seq}"), &dir.join("seq"));
    assert_eq!(at_seq.status.code(), Some(0));
    assert_same_tree("the last valid entry", &dir.join("seq"), &dir.join("end"));
    // A flipped byte in an early entry: a checksum mismatch named by entry and offset; an early point still
    // restores with status 0.
    let mut flipped = bytes.clone();
    let at = bytes.len() / 2;
    flipped[at] ^= 0x40;
    let bad = dir.join("flipped.cdp");
    std::fs::write(&bad, &flipped).unwrap();
    let list = tandem_cmd(&["cdp", "list", s(&bad)]);
    assert_eq!(list.status.code(), Some(4));
    let err = text(&list.stderr);
    assert!(
        err.contains("at byte offset") && err.contains("entry"),
        "{err}"
    );
    let early = restore(&bad, "seq:0", &dir.join("early"));
    assert_eq!(early.status.code(), Some(0), "{}", text(&early.stderr));
    // Not a journal at all: 125 naming the file.
    let junk = dir.join("junk.cdp");
    std::fs::write(&junk, b"hello").unwrap();
    let r = tandem_cmd(&["cdp", "list", s(&junk)]);
    assert_eq!(r.status.code(), Some(125));
    assert!(text(&r.stderr).contains("not a tandem CDP journal"));
}

#[test]
fn a_guest_mark_names_a_point_to_restore_to() {
    let input = input_tree("cdp-mark-input");
    let out = scratch("cdp-mark-out");
    let journal = out.join("run.cdp");
    let volume = format!("{}:/vol", input.display());
    let e = emulate(
        &["--volume", &volume, "--cdp-journal", s(&journal)],
        BUSYBOX,
        &[
            "sh",
            "-c",
            "cd /vol && echo one > a && echo before-two > /dev/tandem-mark && echo two > a && rm keep.txt",
        ],
        b"",
    );
    assert_eq!(e.status.code(), Some(0), "{}", text(&e.stderr));
    let r = restore(&journal, "mark:before-two", &out.join("r"));
    assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
    assert_eq!(std::fs::read(out.join("r/a")).unwrap(), b"one\n");
    assert!(out.join("r/keep.txt").exists());
    let r = restore(&journal, "mark:never", &out.join("r2"));
    assert_eq!(r.status.code(), Some(125));
    assert!(
        text(&r.stderr).contains("no mark named"),
        "{}",
        text(&r.stderr)
    );
}

#[test]
fn compaction_bounds_the_journal_and_keeps_the_end_state() {
    let (full, _, _) = churn_with_journal("cdp-full", 400, 3, &[]);
    let (bounded, export, err) =
        churn_with_journal("cdp-bounded", 400, 3, &["--cdp-size-max", "8K"]);
    let (full_len, bounded_len) = (
        std::fs::metadata(&full).unwrap().len(),
        std::fs::metadata(&bounded).unwrap().len(),
    );
    assert!(
        err.contains("compactions") && !err.contains(" 0 compactions"),
        "{err}"
    );
    assert!(bounded_len < full_len, "{bounded_len} >= {full_len}");
    let out = scratch("cdp-bounded-restored").join("r");
    let r = restore(&bounded, "end", &out);
    assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
    assert_same_tree("compacted journal at the end", &export, &out);
    let r = restore(&bounded, "icount:1", &out.with_extension("early"));
    assert_eq!(r.status.code(), Some(125));
    assert!(
        text(&r.stderr).contains("before the journal's base"),
        "{}",
        text(&r.stderr)
    );
}

/// The icounts of a journal's operations, from `tandem cdp list`.
/// MAP_SHARED stores into volume files: the program reads them back after msync and after munmap as natively,
/// the exported volume holds them (also those of a mapping left in place at exit), and the journal has them as
/// completed writes at the msync, munmap and exit points, so a restore at the end equals the export.
#[test]
fn stores_through_shared_mappings_reach_the_volume_and_the_journal() {
    for libc in ["musl", "glibc"] {
        let program = corpus_bin(&format!("volume-{libc}"));
        let input = input_tree(&format!("vol-mmap-{libc}-input"));
        let native_dir = scratch(&format!("vol-mmap-{libc}-native")).join("v");
        copy_tree(&input, &native_dir);
        let n = native(&program, &[s(&native_dir), "mmap"], &[], b"");
        assert!(n.status.success(), "{}", text(&n.stderr));
        assert!(text(&n.stdout).contains("read after msync: stored through the mapping"));
        let name = format!("vol-mmap-{libc}");
        let (journal, export, e) = journaled_run(&name, &input, &[], &program, &["/vol", "mmap"]);
        assert_same(&format!("volume mmap ({libc})"), &n, &e);
        assert_same_tree(&format!("volume mmap ({libc})"), &native_dir, &export);
        let restored = journal.with_file_name("restored");
        let r = restore(&journal, "end", &restored);
        assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
        assert_same_tree(
            &format!("journal of volume mmap ({libc})"),
            &export,
            &restored,
        );
        let listing = text(&tandem_cmd(&["cdp", "list", s(&journal)]).stdout);
        let writes = listing.lines().filter(|l| l.contains("write file")).count();
        assert!(writes >= 4, "{writes} writes in\n{listing}");
    }
}

/// Records `volume DIR script` on a fresh input volume, exporting it; returns (input, trace, export, record run).
fn record_volume_script(name: &str) -> (PathBuf, PathBuf, PathBuf, Output) {
    let input = input_tree(&format!("{name}-input"));
    let out = scratch(&format!("{name}-out"));
    let trace = out.join("vol.trace");
    let export = out.join("recorded");
    let volume = format!("{}:/vol", input.display());
    let rec = record_trace(
        &trace,
        &["--volume", &volume, "--export", s(&export)],
        &corpus_bin("volume-musl"),
        &["/vol", "script"],
        b"",
    );
    assert_eq!(rec.status.code(), Some(0), "{}", text(&rec.stderr));
    (input, trace, export, rec)
}

/// A recording holds its volumes' initial content: with the host directory altered, then deleted, the replay
/// is verified (same output, exit status, icount and final state hash) and leaves the same volume as the
/// recorded run, which is the tree the native run leaves. `tandem debug` rebuilds the volume too.
#[test]
fn a_recorded_volume_replays_without_its_host_directory() {
    let (input, trace, recorded, rec) = record_volume_script("vol-trace");
    let native_dir = scratch("vol-trace-native").join("v");
    copy_tree(&input, &native_dir);
    let n = native(
        &corpus_bin("volume-musl"),
        &[s(&native_dir), "script"],
        &[],
        b"",
    );
    assert_same("volume script recorded", &n, &rec);
    assert_same_tree("the recorded run's volume", &native_dir, &recorded);
    // The replay must not read the host directory: change what it holds, then remove it.
    std::fs::write(input.join("keep.txt"), "changed after the recording\n").unwrap();
    std::fs::remove_file(input.join("in/data.bin")).unwrap();
    for (round, gone) in [("altered", false), ("deleted", true)] {
        if gone {
            std::fs::remove_dir_all(&input).unwrap();
        }
        let replayed = scratch(&format!("vol-trace-replay-{round}")).join("v");
        let rep = tandem_cmd(&["replay", "--export", s(&replayed), s(&trace)]);
        let err = text(&rep.stderr);
        assert_eq!(rep.status.code(), Some(0), "{round}: {err}");
        assert!(err.contains(": verified: "), "{round}: {err}");
        assert_eq!(text(&rep.stdout), text(&rec.stdout), "{round}");
        assert_same_tree(
            &format!("the volume replayed ({round})"),
            &recorded,
            &replayed,
        );
    }
    // The debugger runs the recorded history to its end: the same instruction count as the recording, which a
    // guest that found a different volume would not reach.
    let recorded_icount = text(&rec.stderr)
        .split("recorded ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap_or_default()
        .to_string();
    let script = trace.parent().unwrap().join("debug.txt");
    std::fs::write(&script, "continue\n").unwrap();
    let d = tandem_cmd(&["debug", s(&trace), "-x", s(&script)]);
    let transcript = text(&d.stdout) + &text(&d.stderr);
    assert!(
        !recorded_icount.is_empty()
            && transcript.contains(&format!("end of history, icount {recorded_icount} "))
            && transcript.contains("the guest has exited"),
        "recorded {recorded_icount:?}: {transcript}"
    );
}

/// Byte offset and length of chunk `n` of a trace (its frame included), walking the frames.
fn chunk_span(bytes: &[u8], n: usize) -> (usize, usize) {
    let mut at = 12;
    for _ in 0..n {
        at += 8 + u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    }
    let len = 8 + u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    (at, len)
}

/// A truncated or corrupt volume chunk (chunk 1, right after the header) is an error naming the trace, the
/// chunk, its offset and the volume, with tandem's status 125: the run's input is damaged, so nothing replays.
#[test]
fn a_damaged_volume_chunk_is_a_clear_error() {
    let (_, trace, _, _) = record_volume_script("vol-trace-damage");
    let bytes = std::fs::read(&trace).unwrap();
    let (at, len) = chunk_span(&bytes, 1);
    let dir = trace.parent().unwrap();
    let mut flipped = bytes.clone();
    flipped[at + len / 2] ^= 0x40;
    let cases = [
        ("cut", bytes[..at + len / 2].to_vec(), "truncated"),
        ("cut-frame", bytes[..at + 5].to_vec(), "truncated"),
        ("flipped", flipped, "checksum mismatch"),
    ];
    for (name, damaged, expected) in cases {
        let path = dir.join(format!("{name}.trace"));
        std::fs::write(&path, damaged).unwrap();
        let rep = tandem_cmd(&["replay", "--quiet", s(&path)]);
        let err = text(&rep.stderr);
        assert_eq!(rep.status.code(), Some(125), "{name}: {err}");
        for part in [
            s(&path).to_string(),
            format!("chunk 1 at byte offset {at}"),
            "volume 0 of 1".to_string(),
            expected.to_string(),
        ] {
            assert!(err.contains(&part), "{name}: no {part:?} in {err}");
        }
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
}

/// `tandem cdp mark` adds a named mark to a finished journal: the journal stays valid (listed without damage,
/// every entry checksummed), the operations keep their order, and restoring at the mark gives the volume at the
/// mark's instruction count; a second mark at the end restores the end; a damaged journal is refused.
#[test]
fn a_mark_added_to_a_journal_is_found_by_restore() {
    let (journal, export, _) = churn_with_journal("cdp-user-mark", 150, 4, &[]);
    let icounts = op_icounts(&journal);
    let before = icounts.len();
    let x = icounts[before / 2];
    let m = tandem_cmd(&["cdp", "mark", s(&journal), "middle", "--at", &x.to_string()]);
    assert_eq!(m.status.code(), Some(0), "{}", text(&m.stderr));
    let m = tandem_cmd(&[
        "cdp",
        "mark",
        s(&journal),
        "last",
        "--at",
        "icount:99999999999",
    ]);
    assert_eq!(m.status.code(), Some(0), "{}", text(&m.stderr));
    let list = tandem_cmd(&["cdp", "list", s(&journal)]);
    assert_eq!(list.status.code(), Some(0), "{}", text(&list.stderr));
    let listing = text(&list.stdout);
    assert!(
        listing.contains("mark middle") && listing.contains("mark last"),
        "{listing}"
    );
    assert_eq!(op_icounts(&journal).len(), before + 2);
    let dir = scratch("cdp-user-mark-restored");
    for (at, expected) in [
        ("mark:middle", format!("icount:{x}")),
        ("mark:last", "end".into()),
    ] {
        let (a, b) = (dir.join(format!("{at}-a")), dir.join(format!("{at}-b")));
        let r = restore(&journal, at, &a);
        assert_eq!(r.status.code(), Some(0), "{at}: {}", text(&r.stderr));
        let r = restore(&journal, &expected, &b);
        assert_eq!(r.status.code(), Some(0), "{expected}: {}", text(&r.stderr));
        assert_same_tree(&format!("restore at {at}"), &b, &a);
    }
    assert_same_tree(
        "restore at the last mark",
        &export,
        &dir.join("mark:last-a"),
    );
    let bytes = std::fs::read(&journal).unwrap();
    let cut = dir.join("cut.cdp");
    std::fs::write(&cut, &bytes[..bytes.len() - 2]).unwrap();
    let m = tandem_cmd(&["cdp", "mark", s(&cut), "late", "--at", "5"]);
    assert_eq!(m.status.code(), Some(125), "{}", text(&m.stderr));
    assert!(
        text(&m.stderr).contains("damaged at entry"),
        "{}",
        text(&m.stderr)
    );
}

fn op_icounts(journal: &Path) -> Vec<u64> {
    let list = tandem_cmd(&["cdp", "list", s(journal)]);
    text(&list.stdout)
        .lines()
        .filter_map(|l| l.split(" icount ").nth(1))
        .filter_map(|rest| rest.split(' ').next()?.parse().ok())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, ..ProptestConfig::default() })]

    /// The oracle: for a random point P of a run, restoring the journal at P gives the volume of the same
    /// deterministic run stopped at P (--max-insns P) and exported.
    #[test]
    fn restore_at_a_random_point_equals_the_run_stopped_there(seed in 0u64..1000, pick in 0.0f64..1.0) {
        let name = format!("cdp-oracle-{seed}");
        let (journal, _, _) = churn_with_journal(&name, 120, seed, &[]);
        let icounts = op_icounts(&journal);
        prop_assert!(icounts.len() > 10);
        // Points around operations are where an off-by-one would show: half the cases take an operation's
        // icount exactly (or one before it), the others any point of the run.
        let last = *icounts.last().unwrap();
        let i = (pick * icounts.len() as f64) as usize % icounts.len();
        let p = match seed % 3 {
            0 => icounts[i],
            1 => icounts[i] - 1,
            _ => (pick * last as f64) as u64,
        };
        // The same input tree as the journaled run's, in a directory of its own.
        let input = input_tree(&format!("{name}-stopped-input"));
        let out = scratch(&format!("{name}-stopped"));
        let stopped = out.join("stopped");
        let volume = format!("{}:/vol", input.display());
        let rounds = "120".to_string();
        let seed_text = seed.to_string();
        let e = emulate(
            &["--volume", &volume, "--export", s(&stopped), "--max-insns", &p.to_string()],
            &corpus_bin("volume-musl"),
            &["/vol", "churn", &rounds, &seed_text],
            b"",
        );
        prop_assert!(matches!(e.status.code(), Some(0) | Some(124)), "{}", text(&e.stderr));
        let restored = out.join("restored");
        let r = restore(&journal, &format!("icount:{p}"), &restored);
        prop_assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
        assert_same_tree(&format!("seed {seed} at icount {p}"), &stopped, &restored);
    }
}
