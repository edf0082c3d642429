//! End-to-end tests of `tandem record` and `tandem replay`: a replay reproduces the recorded run bit for bit
//! (stdout, exit status, icount, final state hash) from the trace alone; damaged traces give clear errors that
//! name the chunk and offset; an edited trace is a divergence narrowed to the exact instruction, or refused when
//! its chunks were deleted or moved; a killed recording or a full disk leaves a partial trace that replays to
//! its last complete chunk and never an earlier trace destroyed; -o never overwrites an input.

mod common;
use common::*;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use tandem_replay::trace::{Chunk, Event, HostCall, Record, Trace, TraceWriter};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tandem-replay-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn record(
    trace: &std::path::Path,
    flags: &[&str],
    program: &str,
    args: &[&str],
    stdin: &[u8],
) -> Output {
    let flags: Vec<&str> = std::iter::once("--report-state")
        .chain(flags.iter().copied())
        .collect();
    record_trace(trace, &flags, program, args, stdin)
}

fn replay(trace: &PathBuf, flags: &[&str]) -> Output {
    // No stdin at all: the replay must take it from the trace.
    Command::new(tandem())
        .arg("replay")
        .arg("--report-state")
        .args(flags)
        .arg(trace)
        .current_dir(repo())
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The "tandem: icount N state_hash H" line.
fn state_line(stderr: &[u8]) -> String {
    text(stderr)
        .lines()
        .find(|l| l.starts_with("tandem: icount "))
        .unwrap_or_else(|| panic!("no state line in {}", text(stderr)))
        .to_string()
}

#[test]
fn replay_reproduces_runs_bit_for_bit() {
    for (program, args, stdin) in [
        ("rewind-musl", vec![], b"edit me\n".to_vec()),
        ("hello-glibc", vec![], vec![]),
        ("args-musl", vec!["one", "two"], vec![]),
        ("segv-glibc", vec![], vec![]),
        ("clock-musl", vec![], vec![]),
        ("jmp-musl", vec![], vec![]),
    ] {
        let trace = scratch(&format!("{program}.trace"));
        let bin = corpus_bin(program);
        let run = emulate(&["--report-state", "--seed", "9"], &bin, &args, &stdin);
        let rec = record(
            &trace,
            &["--seed", "9", "--hash-interval", "4096"],
            &bin,
            &args,
            &stdin,
        );
        let rep = replay(&trace, &["--guest-status"]);
        assert_eq!(rec.stdout, run.stdout, "{program}: record changes stdout");
        assert_eq!(rep.stdout, run.stdout, "{program}: replay stdout differs");
        assert_eq!(
            rep.status.code(),
            run.status.code(),
            "{program}: {}",
            text(&rep.stderr)
        );
        assert_eq!(
            state_line(&rep.stderr),
            state_line(&run.stderr),
            "{program}"
        );
        assert_eq!(
            state_line(&rec.stderr),
            state_line(&run.stderr),
            "{program}"
        );
        assert!(
            !text(&rep.stderr).contains("diverge"),
            "{}",
            text(&rep.stderr)
        );
    }
}

/// A run killed by a fatal signal replays to the same end: the exception that kills it is raised by an
/// instruction that does not retire, after the recording's last icount (issue 11, item 1).
#[test]
fn crashed_runs_replay_verified() {
    for (program, arg, signal) in [
        ("crash-musl", "segv", 11),
        ("crash-musl", "ill", 4),
        ("crash-musl", "fpe", 8),
        ("crash-musl", "abort", 6),
        ("crash-glibc", "segv", 11),
        ("crash-glibc", "ill", 4),
        ("crash-glibc", "fpe", 8),
    ] {
        let trace = scratch(&format!("{program}-{arg}.trace"));
        let bin = corpus_bin(program);
        let rec = record(&trace, &[], &bin, &[arg], b"");
        assert_eq!(
            rec.status.code(),
            Some(128 + signal),
            "{program} {arg}: {}",
            text(&rec.stderr)
        );
        let rep = replay(&trace, &[]);
        let err = text(&rep.stderr);
        assert_eq!(rep.status.code(), Some(0), "{program} {arg}: {err}");
        assert!(err.contains(": verified: "), "{program} {arg}: {err}");
        assert!(
            err.contains(&format!("the guest's exit status {}", 128 + signal)),
            "{program} {arg}: {err}"
        );
        assert_eq!(state_line(&rep.stderr), state_line(&rec.stderr));
        let rep = replay(&trace, &["--guest-status"]);
        assert_eq!(rep.status.code(), Some(128 + signal), "{program} {arg}");
    }
}

/// A late-kill uncorrectable memory error on the stack: the touch raises a machine check and the SIGBUS kills
/// the process; the replay ends the same way ("killed", not "delayed").
#[test]
fn a_late_kill_sigbus_replays_verified() {
    let trace = scratch("late-kill.trace");
    let rec = record(
        &trace,
        &["--faults", "mem.ue:icount=300000,addr=0x7fffffffe000"],
        &corpus_bin("sigbus-musl"),
        &["20"],
        b"",
    );
    assert_eq!(rec.status.code(), Some(128 + 7), "{}", text(&rec.stderr));
    assert!(text(&rec.stderr).contains("outcome=killed"));
    let rep = replay(&trace, &[]);
    let err = text(&rep.stderr);
    assert_eq!(rep.status.code(), Some(0), "{err}");
    assert!(err.contains("outcome=killed"), "{err}");
    assert_eq!(state_line(&rep.stderr), state_line(&rec.stderr));
}

#[test]
fn stdin_comes_from_the_trace() {
    let trace = scratch("stdin.trace");
    let rec = record(&trace, &[], &corpus_bin("rewind-musl"), &[], b"abc");
    assert_eq!(
        text(&rec.stdout),
        "read 3 bytes, checksum 304891, counter 15, last 46\n"
    );
    let rep = replay(&trace, &[]);
    assert_eq!(rep.stdout, rec.stdout, "{}", text(&rep.stderr));
    assert_eq!(rep.status.code(), Some(0));
}

#[test]
fn checkpoints_are_verified() {
    let trace = scratch("sha.trace");
    let rec = record(
        &trace,
        &["--hash-interval", "65536"],
        &corpus_bin("sha256-musl"),
        &[],
        b"",
    );
    assert_eq!(rec.status.code(), Some(0));
    let t = Trace::parse(&std::fs::read(&trace).unwrap()).unwrap();
    let checkpoints = t
        .records
        .iter()
        .filter(|r| matches!(r, Record::Checkpoint(_)))
        .count() as u64;
    let summary = t.summary.unwrap();
    assert_eq!(checkpoints, summary.icount / 65536);
    let rep = replay(&trace, &[]);
    assert!(
        text(&rep.stderr).contains(&format!("{checkpoints} checkpoints verified")),
        "{}",
        text(&rep.stderr)
    );
}

#[test]
fn truncated_and_corrupt_traces_name_the_chunk_and_offset() {
    let trace = scratch("cut.trace");
    record(
        &trace,
        &["--hash-interval", "65536"],
        &corpus_bin("sha256-musl"),
        &[],
        b"",
    );
    let bytes = std::fs::read(&trace).unwrap();

    // Cut in the middle: replays up to the last complete chunk, exit 4.
    let cut = scratch("cut-half.trace");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let rep = replay(&cut, &["--quiet"]);
    let err = text(&rep.stderr);
    assert_eq!(rep.status.code(), Some(4), "{err}");
    assert!(err.contains("truncated"), "{err}");
    assert!(err.contains("at byte offset "), "{err}");
    assert!(err.contains("replayed and verified up to icount "), "{err}");

    // One flipped byte in the last chunk: a checksum error naming it.
    let mut flipped = bytes.clone();
    let n = flipped.len();
    flipped[n - 2] ^= 1;
    let bad = scratch("flipped.trace");
    std::fs::write(&bad, &flipped).unwrap();
    let rep = replay(&bad, &["--quiet"]);
    let err = text(&rep.stderr);
    assert_eq!(rep.status.code(), Some(4), "{err}");
    assert!(err.contains("checksum mismatch"), "{err}");

    // Wrong version: refused before anything runs, naming the file.
    let mut old = bytes.clone();
    old[8] = 99;
    let v = scratch("version.trace");
    std::fs::write(&v, &old).unwrap();
    let rep = replay(&v, &[]);
    let err = text(&rep.stderr);
    // tandem's own failure: 125 (2 was a guest's status too).
    assert_eq!(rep.status.code(), Some(125), "{err}");
    assert!(err.contains("version.trace"), "{err}");
    assert!(err.contains("trace format version 99"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // Not a trace at all.
    let rep = replay(&PathBuf::from(corpus_bin("hello-musl")), &[]);
    assert!(
        text(&rep.stderr).contains("not a tandem trace"),
        "{}",
        text(&rep.stderr)
    );
}

/// Rewrites a trace with `edit` applied to its records (one records chunk, the same header and end).
fn rewrite(from: &PathBuf, to: &PathBuf, edit: impl Fn(&mut Vec<Record>)) {
    let t = Trace::parse(&std::fs::read(from).unwrap()).unwrap();
    let mut records = t.records.clone();
    edit(&mut records);
    // In the trace's own format (an old trace stays old: format 5 chains its chunks, older ones do not).
    let mut w = TraceWriter::with_version(Vec::new(), t.format_version).unwrap();
    w.write_chunk(&Chunk::Header(Box::new(t.header.clone())))
        .unwrap();
    w.write_chunk(&Chunk::Records {
        icount_end: t.icount_end,
        records,
    })
    .unwrap();
    w.write_chunk(&Chunk::End(t.summary.clone().unwrap()))
        .unwrap();
    std::fs::write(to, w.into_inner()).unwrap();
}

#[test]
fn an_edited_input_is_narrowed_to_the_exact_instruction() {
    let trace = scratch("edit.trace");
    let rec = record(
        &trace,
        &["--hash-interval", "256", "--fine-interval", "1"],
        &corpus_bin("rewind-musl"),
        &[],
        b"hello",
    );
    assert_eq!(rec.status.code(), Some(0));
    let edited = scratch("edited.trace");
    rewrite(&trace, &edited, |records| {
        for r in records.iter_mut() {
            if let Record::Event(Event::Host(HostCall::ReadStdin { result: Ok(b), .. })) = r {
                b[0] = b'j';
            }
        }
    });
    let rep = replay(&edited, &["--quiet"]);
    let err = text(&rep.stderr);
    assert_eq!(rep.status.code(), Some(3), "{err}");
    assert!(
        err.contains("the replay diverges from the recording"),
        "{err}"
    );
    assert!(
        err.contains("first differing instruction: icount "),
        "{err}"
    );
    // The first instruction whose registers differ reads the edited byte: a load from `line`.
    let line = err
        .lines()
        .find(|l| l.starts_with("first differing instruction"))
        .unwrap();
    assert!(line.contains("movzx") || line.contains("byte ptr"), "{err}");
    assert!(err.contains("the instruction sets "), "{err}");
    assert!(err.contains("registers at icount "), "{err}");

    // An edited checkpoint (the recorded memory digest) is reported at that checkpoint; re-execution agrees
    // with the replay everywhere, so the window is the whole interval.
    let digest_edited = scratch("digest-edited.trace");
    rewrite(&trace, &digest_edited, |records| {
        if let Some(Record::Checkpoint(c)) = records
            .iter_mut()
            .find(|r| matches!(r, Record::Checkpoint(_)))
        {
            c.memory_digest ^= 1;
        }
    });
    let rep = replay(&digest_edited, &["--quiet"]);
    let err = text(&rep.stderr);
    assert_eq!(rep.status.code(), Some(3), "{err}");
    assert!(
        err.contains("divergence detected at icount 256: the memory digest differs"),
        "{err}"
    );
    // No page differs: the edit is caught as a checkpoint whose page digests do not add up to its digest.
    assert!(!err.contains("pages differ"), "{err}");
    assert!(
        err.contains("note: the recorded page digests add up to 0x"),
        "{err}"
    );

    // A removed syscall event: exact to the syscall.
    let dropped = scratch("dropped.trace");
    rewrite(&trace, &dropped, |records| {
        let i = records
            .iter()
            .position(|r| matches!(r, Record::Event(Event::Host(HostCall::Write { .. }))))
            .unwrap();
        records.remove(i);
    });
    let rep = replay(&dropped, &["--quiet"]);
    let err = text(&rep.stderr);
    assert_eq!(rep.status.code(), Some(3), "{err}");
    assert!(
        err.contains("the guest asked the host for a write of 54 bytes to fd 1"),
        "{err}"
    );
    assert!(
        err.contains("first differing instruction: icount "),
        "{err}"
    );
    assert!(err.contains(": syscall (0f 05)"), "{err}");
}

/// The command-line debugger's answers to `script`.
fn debug_script(trace: &PathBuf, script: &str) -> String {
    let path = trace.with_extension("script");
    std::fs::write(&path, script).unwrap();
    let out = Command::new(tandem())
        .arg("debug")
        .arg(trace)
        .arg("-x")
        .arg(&path)
        .current_dir(repo())
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .unwrap();
    text(&out.stdout)
}

/// The value of `name` in a `regs` listing.
fn register_in(listing: &str, name: &str) -> String {
    listing
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(' ')?;
            (n == name).then(|| v.trim().split(' ').next().unwrap().to_string())
        })
        .unwrap_or_else(|| panic!("no {name} in {listing}"))
}

/// A register that differs at a checkpoint is shown with its recorded and replayed values, and with the last
/// instruction of the replay that changed it, which the debugger confirms: at that icount rip is on it, it
/// changes the register, and nothing changes it again before the checkpoint.
#[test]
fn a_register_divergence_names_the_register_and_its_last_writer() {
    let trace = scratch("regs.trace");
    let rec = record(
        &trace,
        &["--hash-interval", "1024", "--fine-interval", "256"],
        &corpus_bin("rewind-musl"),
        &[],
        b"hello",
    );
    assert_eq!(rec.status.code(), Some(0));
    // A checkpoint and a general-purpose register whose recorded value changed since the checkpoint before.
    let t = Trace::parse(&std::fs::read(&trace).unwrap()).unwrap();
    let checkpoints: Vec<_> = t
        .records
        .iter()
        .filter_map(|r| match r {
            Record::Checkpoint(c) => Some(c.clone()),
            _ => None,
        })
        .collect();
    let (k, index) = (1..checkpoints.len())
        .find_map(|k| {
            (0..16)
                .filter(|&i| i != 4)
                .find(|&i| checkpoints[k].registers.gpr[i] != checkpoints[k - 1].registers.gpr[i])
                .map(|i| (k, i))
        })
        .expect("some register changes between checkpoints");
    let name = tandem_emulator::cpu::GPR_NAMES[index];
    let at = checkpoints[k].icount;
    let real = checkpoints[k].registers.gpr[index];
    let edited = scratch("regs-edited.trace");
    rewrite(&trace, &edited, |records| {
        for r in records.iter_mut() {
            if let Record::Checkpoint(c) = r {
                if c.icount == at {
                    c.registers.gpr[index] ^= 0x100;
                }
            }
        }
    });
    let rep = replay(&edited, &["--quiet"]);
    let err = text(&rep.stderr);
    assert_eq!(rep.status.code(), Some(3), "{err}");
    assert!(
        err.contains(&format!(
            "divergence detected at icount {at}: 1 registers differ"
        )),
        "{err}"
    );
    let line = err
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no line for {name}: {err}"));
    let prefix = format!(
        "{name:<8} recorded={:#x} replayed={real:#x}; last changed in the replay by the instruction at icount ",
        real ^ 0x100
    );
    let rest = line
        .trim_start()
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{line:?} does not start with {prefix:?}"));
    let writer: u64 = rest.split(' ').next().unwrap().parse().unwrap();
    assert!(writer < at && writer >= checkpoints[k - 1].icount, "{err}");
    let rip = u64::from_str_radix(
        rest.split(' ')
            .nth(2)
            .unwrap()
            .trim_end_matches(':')
            .trim_start_matches("0x"),
        16,
    )
    .unwrap();

    let listing = debug_script(
        &trace,
        &format!("goto {writer}\nregs\nstepi\nregs\ngoto {at}\nregs\n"),
    );
    let blocks: Vec<&str> = listing.split("(tandem) regs").skip(1).collect();
    assert_eq!(blocks.len(), 3, "{listing}");
    assert_eq!(
        register_in(blocks[0], "rip"),
        format!("{rip:#018x}"),
        "{listing}"
    );
    assert_ne!(
        register_in(blocks[0], name),
        register_in(blocks[1], name),
        "the writer changes {name}: {listing}"
    );
    assert_eq!(
        register_in(blocks[1], name),
        register_in(blocks[2], name),
        "nothing changes {name} after it: {listing}"
    );
    assert_eq!(register_in(blocks[2], name), format!("{real:#018x}"));
}

/// The icount at which the `syscalls` listing shows the first syscall `number` of a trace.
fn syscall_icount(trace: &PathBuf, number: u64) -> u64 {
    let t = Trace::parse(&std::fs::read(trace).unwrap()).unwrap();
    t.records
        .iter()
        .find_map(|r| match r {
            Record::Event(e) => match e.syscall_entry() {
                Some((icount, _, n)) if n == number => Some(icount),
                _ => None,
            },
            _ => None,
        })
        .unwrap_or_else(|| panic!("no syscall {number} in {}", trace.display()))
}

/// The stdin bytes of a trace's reads replaced by `bytes` (of the same length).
fn edit_stdin(from: &PathBuf, to: &PathBuf, bytes: &'static [u8]) {
    rewrite(from, to, |records| {
        for r in records.iter_mut() {
            if let Record::Event(Event::Host(HostCall::ReadStdin { result: Ok(b), .. })) = r {
                assert_eq!(b.len(), bytes.len());
                b.copy_from_slice(bytes);
            }
        }
    });
}

/// The line of `text` that starts (after indentation) with `prefix`.
fn line_starting<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .map(str::trim_start)
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{text}"))
}

/// A read(2) that delivers other bytes than recorded is a memory divergence at the next checkpoint: the report
/// names the page of the buffer (where the debugger finds the symbol `line`), the read syscall as the last
/// writer of that page with the icount the `syscalls` listing gives it, and the replayed bytes it wrote.
#[test]
fn an_edited_read_names_the_buffer_page_its_last_writer_and_the_bytes() {
    let probe = scratch("memdiv-probe.trace");
    let rec = record(&probe, &[], &corpus_bin("rewind-musl"), &[], b"hello");
    assert_eq!(rec.status.code(), Some(0), "{}", text(&rec.stderr));
    let read_at = syscall_icount(&probe, 0);
    let listing = debug_script(&probe, "syscalls\nx line 8\n");
    assert!(
        listing.contains(&format!("icount {read_at}: read (0) = 5")),
        "{listing}"
    );
    // "(tandem) x line 8" is followed by "0x407140: 00 00 ...".
    let line_address = listing
        .split("(tandem) x line 8\n")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok())
        .unwrap_or_else(|| panic!("no address of `line` in {listing}"));
    let page = line_address & !0xfff;
    // jello, not hello: the replayed bytes, which the trace never held.
    let row_address = line_address & !0xf;
    let mut row = vec![".."; 16];
    for (i, b) in ["6a", "65", "6c", "6c", "6f"].iter().enumerate() {
        let at = (line_address - row_address) as usize + i;
        if at < 16 {
            row[at] = b;
        }
    }
    let row = format!("{row_address:#018x}  {}", row.join(" "));

    // A checkpoint right after the read: the read is the last writer, and only that page differs.
    let trace = scratch("memdiv.trace");
    let interval = read_at.to_string();
    let rec = record(
        &trace,
        &["--hash-interval", &interval, "--fine-interval", &interval],
        &corpus_bin("rewind-musl"),
        &[],
        b"hello",
    );
    assert_eq!(rec.status.code(), Some(0), "{}", text(&rec.stderr));
    let edited = scratch("memdiv-edited.trace");
    edit_stdin(&trace, &edited, b"jello");
    let rep = replay(&edited, &["--quiet"]);
    let err = text(&rep.stderr);
    assert_eq!(rep.status.code(), Some(3), "{err}");
    assert!(
        err.contains(&format!(
            "divergence detected at icount {read_at}: the memory digest differs"
        )),
        "{err}"
    );
    assert!(err.contains("\n1 pages differ"), "{err}");
    let page_line = line_starting(&err, &format!("page {page:#x}: recorded digest 0x"));
    assert!(
        page_line.ends_with("(rw-); written in this interval by both"),
        "{err}"
    );
    let writer = line_starting(
        &err,
        "last written in the replay by the instruction at icount ",
    );
    assert!(
        writer.starts_with(&format!(
            "last written in the replay by the instruction at icount {} rip ",
            read_at - 1
        )),
        "{err}"
    );
    assert!(
        writer.ends_with(&format!(
            ": syscall read (0), listed by `syscalls` at icount {read_at}"
        )),
        "{err}"
    );
    assert!(
        err.contains("replayed bytes written in this interval ("),
        "{err}"
    );
    assert_eq!(
        line_starting(&err, &format!("{row_address:#018x}")),
        row,
        "{err}"
    );
    assert!(!err.contains("recorded bytes"), "{err}");

    // A coarser interval: the page is still named, with the replayed bytes; its last writer comes after the read.
    let coarse = scratch("memdiv-coarse.trace");
    record(
        &coarse,
        &["--hash-interval", "1024", "--fine-interval", "256"],
        &corpus_bin("rewind-musl"),
        &[],
        b"hello",
    );
    let coarse_edited = scratch("memdiv-coarse-edited.trace");
    edit_stdin(&coarse, &coarse_edited, b"jello");
    let rep = replay(&coarse_edited, &["--quiet"]);
    let err = text(&rep.stderr);
    assert_eq!(rep.status.code(), Some(3), "{err}");
    assert!(
        err.contains("divergence detected at icount 1024: "),
        "{err}"
    );
    line_starting(&err, &format!("page {page:#x}: recorded digest 0x"));
    assert_eq!(
        line_starting(&err, &format!("{row_address:#018x}")),
        row,
        "{err}"
    );
}

/// Replays a trace of an older format committed under tests/data (hello-musl, recorded with
/// `--hash-interval 256 --fine-interval 64`): it must verify its 4 checkpoints and end as `tandem run` does.
/// Then replays it with its first checkpoint's memory digest edited (rewritten in the same format), which
/// must be a divergence at that checkpoint; returns that replay's stderr.
fn replay_old_trace(name: &str, version: u32) -> String {
    let old = repo().join("tests/data").join(name);
    let bytes = std::fs::read(&old).unwrap();
    assert_eq!(
        bytes[8..12],
        version.to_le_bytes(),
        "the test trace must stay in format {version}"
    );
    let rep = replay(&old, &[]);
    let err = text(&rep.stderr);
    assert_eq!(rep.status.code(), Some(0), "{err}");
    assert_eq!(text(&rep.stdout), "hello, world\n");
    assert!(err.contains("4 checkpoints verified"), "{err}");
    // The state the recording ended in (tests/data/README.md). A run today ends with another hash: since format 7
    // the CPU reports MMX, in AT_HWCAP on the stack too; the instructions are the same (musl's hello never
    // executes CPUID).
    assert_eq!(
        state_line(&rep.stderr),
        "tandem: icount 1121 state_hash 0x2861f1a00f1f6c54",
        "{err}"
    );
    let run = emulate(&["--report-state"], &corpus_bin("hello-musl"), &[], b"");
    assert!(
        state_line(&run.stderr).starts_with("tandem: icount 1121 "),
        "{}",
        text(&run.stderr)
    );

    let edited = scratch(&format!("v{version}-edited.trace"));
    rewrite(&old, &edited, |records| {
        if let Some(Record::Checkpoint(c)) = records
            .iter_mut()
            .find(|r| matches!(r, Record::Checkpoint(_)))
        {
            c.memory_digest ^= 1;
        }
    });
    assert_eq!(
        std::fs::read(&edited).unwrap()[8..12],
        version.to_le_bytes()
    );
    let rep = replay(&edited, &["--quiet"]);
    let err = text(&rep.stderr);
    assert_eq!(rep.status.code(), Some(3), "{err}");
    assert!(
        err.contains("divergence detected at icount 256: the memory digest differs"),
        "{err}"
    );
    err
}

/// A trace in format 2 (recorded before format 3) still replays, verifying its checkpoints; a memory
/// divergence in it says that it holds no page digests instead of naming pages.
#[test]
fn a_format_2_trace_still_replays() {
    let err = replay_old_trace("hello-musl-v2.trace", 2);
    assert!(
        err.contains("note: this trace (format 2) holds a digest of all memory at each checkpoint but none per page"),
        "{err}"
    );
}

/// A trace in format 4 (the last format before chunks were numbered and chained) still replays, and an edited
/// checkpoint in it is a divergence at that checkpoint, read in format 4's digest scheme (the page digests no
/// longer add up to the edited memory digest).
#[test]
fn a_format_4_trace_still_replays() {
    let err = replay_old_trace("hello-musl-v4.trace", 4);
    assert!(
        err.contains("the trace's checkpoint is inconsistent"),
        "{err}"
    );
}

/// A trace in format 3 (SHA-256 names, byte-at-a-time register hashes, memory digests combined in address
/// order) still replays, verifying its fine hashes and checkpoints in its own scheme; its page digests, read in
/// that scheme, no longer add up to an edited checkpoint digest.
#[test]
fn a_format_3_trace_still_replays() {
    let err = replay_old_trace("hello-musl-v3.trace", 3);
    assert!(
        err.contains("the trace's checkpoint is inconsistent"),
        "{err}"
    );
}

/// A mounted file whose recorded contents are edited (the embedded copy and its content address) is read with
/// other bytes by busybox sha256sum: at the default checkpoint interval (2^20 instructions) the report names the
/// pages that differ, a read(2) as the last writer of the page it filled, and the replayed bytes.
#[test]
fn an_edited_mounted_file_is_a_memory_divergence_naming_the_read() {
    let data = scratch("memdiv-data.bin");
    // 64 KiB of a fixed pattern: sha256sum reads it in a few read(2) calls.
    let bytes: Vec<u8> = (0..65536u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    std::fs::write(&data, &bytes).unwrap();
    let mount = format!("{}:/data/in.bin", data.display());
    let trace = scratch("memdiv-file.trace");
    let rec = record(
        &trace,
        &["--mount", &mount],
        "/bin/busybox",
        &["sha256sum", "/data/in.bin"],
        b"",
    );
    assert_eq!(rec.status.code(), Some(0), "{}", text(&rec.stderr));
    let edited = scratch("memdiv-file-edited.trace");
    rewrite(&trace, &edited, |records| {
        let old = records
            .iter()
            .find_map(|r| match r {
                Record::Blob { id, bytes: b } if **b == bytes => Some(*id),
                _ => None,
            })
            .expect("the mounted file is embedded");
        // Every byte, so that whichever part of the file the guest's buffer holds at the checkpoint differs.
        let changed: Vec<u8> = bytes.iter().map(|b| b ^ 0xff).collect();
        let new = tandem_replay::trace::blob_id(&changed);
        for r in records.iter_mut() {
            match r {
                Record::Blob { id, bytes: b } if *id == old => {
                    *id = new;
                    *b = std::sync::Arc::new(changed.clone());
                }
                Record::Event(Event::Host(HostCall::ReadFile { result: Ok(id), .. }))
                    if *id == old =>
                {
                    *id = new;
                }
                _ => {}
            }
        }
    });
    let rep = replay(&edited, &["--quiet"]);
    let err = text(&rep.stderr);
    assert_eq!(rep.status.code(), Some(3), "{err}");
    let detected: u64 = err
        .split("divergence detected at icount ")
        .nth(1)
        .and_then(|r| r.split(':').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no detection icount in {err}"));
    assert!(
        err.contains(" pages differ (the recording's page digests"),
        "{err}"
    );
    assert!(
        err.contains("replayed bytes written in this interval ("),
        "{err}"
    );
    // The last read before the checkpoint, and the buffer it was given (rsi as it executes, from the debugger).
    let t = Trace::parse(&std::fs::read(&trace).unwrap()).unwrap();
    let read_at = t
        .records
        .iter()
        .rev()
        .find_map(|r| match r {
            Record::Event(e) => match e.syscall_entry() {
                Some((icount, _, 0)) if icount <= detected => Some(icount),
                _ => None,
            },
            _ => None,
        })
        .expect("a read before the checkpoint");
    let regs = debug_script(&trace, &format!("goto {}\nregs\n", read_at - 1));
    let buffer =
        u64::from_str_radix(register_in(&regs, "rsi").trim_start_matches("0x"), 16).unwrap();
    // Each listed page with its last writer.
    let lines: Vec<&str> = err.lines().map(str::trim_start).collect();
    let written_by_the_read: Vec<&str> = lines
        .windows(2)
        .filter(|w| {
            w[1].ends_with(&format!(
                ": syscall read (0), listed by `syscalls` at icount {read_at}"
            ))
        })
        .map(|w| w[0])
        .collect();
    assert!(
        written_by_the_read
            .iter()
            .any(|l| l.starts_with(&format!("page {:#x}: ", buffer & !0xfff))),
        "the page of the read's buffer {buffer:#x} is not named with the read at icount {read_at} as its last writer:\n{err}"
    );
}

/// The frames of a trace file: (offset, length) of each chunk after the preamble.
fn chunk_frames(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut off = 12;
    while off + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap()) as usize;
        out.push((off, 8 + len));
        off += 8 + len;
    }
    out
}

/// A trace with a chunk deleted (one that holds only records up to a checkpoint, every remaining CRC right) is
/// refused by `tandem replay`, naming the chunk, instead of replaying as if nothing were missing.
#[test]
fn a_trace_with_a_deleted_chunk_is_refused_naming_it() {
    let trace = scratch("deleted-chunk.trace");
    let rec = record(
        &trace,
        &["--hash-interval", "256", "--fine-interval", "64"],
        &corpus_bin("hello-musl"),
        &[],
        b"",
    );
    assert_eq!(rec.status.code(), Some(0), "{}", text(&rec.stderr));
    let bytes = std::fs::read(&trace).unwrap();
    let frames = chunk_frames(&bytes);
    assert!(frames.len() >= 5, "{frames:?}");
    let (at, len) = frames[2];
    let mut edited = bytes[..at].to_vec();
    edited.extend_from_slice(&bytes[at + len..]);
    let cut = scratch("deleted-chunk-edited.trace");
    std::fs::write(&cut, &edited).unwrap();
    let rep = replay(&cut, &["--quiet"]);
    let err = text(&rep.stderr);
    assert_eq!(rep.status.code(), Some(125), "{err}");
    assert!(
        err.contains(&format!(
            "chunk 2 at byte offset {at}: its sequence number is 3: chunk 2 is missing"
        )),
        "{err}"
    );
    assert!(err.contains("the trace was edited"), "{err}");
}

/// `record -o ./prog -- ./prog` used to overwrite the program with the trace. -o may name no input of the run:
/// not the program (by any path to it), not a mounted file, not a file under a mounted directory.
#[test]
fn record_refuses_an_output_that_is_an_input() {
    let dir = scratch("inputs");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let program = dir.join("prog");
    std::fs::copy(repo().join(corpus_bin("hello-musl")), &program).unwrap();
    let original = std::fs::read(&program).unwrap();
    std::fs::hard_link(&program, dir.join("prog-link")).unwrap();
    let data = dir.join("data");
    let mount = format!("{}:/data", data.display());
    let prog = program.to_str().unwrap();
    for (output, flags, what) in [
        (program.clone(), vec![], "the program"),
        (dir.join("prog-link"), vec![], "the program"),
        (dir.join("./data/../prog"), vec![], "the program"),
        (
            data.join("t.trace"),
            vec!["--mount", mount.as_str()],
            "the mount",
        ),
    ] {
        let rec = record_trace(&output, &flags, prog, &[], b"");
        let err = text(&rec.stderr);
        assert_eq!(rec.status.code(), Some(125), "{}: {err}", output.display());
        assert!(err.contains(&format!("it is {what}")), "{err}");
        assert!(err.contains("an input of the run"), "{err}");
        assert_eq!(
            std::fs::read(&program).unwrap(),
            original,
            "the program was overwritten"
        );
        assert!(!data.join("t.trace").exists());
    }
    let rec = record_trace(&dir, &[], prog, &[], b"");
    assert_eq!(rec.status.code(), Some(125));
    assert!(text(&rec.stderr).contains("a directory; name the trace file"));
}

/// A recording killed with SIGKILL at an arbitrary point leaves FILE untouched (an earlier trace stays
/// whole) and FILE.partial, which `tandem replay` reads up to its last complete chunk: it says the trace ends
/// early and verifies what is there.
#[test]
fn a_killed_recording_leaves_a_partial_trace_that_replays_to_its_last_chunk() {
    use std::io::Read;
    let trace = scratch("killed.trace");
    let earlier = record(&trace, &[], &corpus_bin("hello-musl"), &[], b"");
    assert_eq!(earlier.status.code(), Some(0));
    let earlier_bytes = std::fs::read(&trace).unwrap();
    let partial = scratch("killed.trace.partial");
    let _ = std::fs::remove_file(&partial);
    // busybox yes prints forever; the recording is killed once 8 MiB of its output came through.
    let mut child = Command::new(tandem())
        .args(["record", "--hash-interval", "65536", "-o"])
        .arg(&trace)
        .args(["--", "/bin/busybox", "yes"])
        .current_dir(repo())
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut seen = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    while seen < 8 << 20 {
        let n = out.read(&mut buf).unwrap();
        assert!(n > 0, "the recording ended by itself");
        seen += n;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        std::fs::read(&trace).unwrap(),
        earlier_bytes,
        "the earlier trace was touched"
    );
    let rep = replay(&partial, &["--quiet"]);
    let err = text(&rep.stderr);
    assert_eq!(rep.status.code(), Some(4), "{err}");
    assert!(
        err.contains("the trace ends early (truncated at chunk "),
        "{err}"
    );
    let verified: u64 = err
        .split("replayed and verified up to icount ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{err}"));
    assert!(verified >= 65536, "{err}");
    assert!(!err.contains("diverges"), "{err}");
    // Where no earlier trace was, replaying FILE points at FILE.partial.
    let fresh = scratch("killed-fresh.trace");
    std::fs::copy(&partial, scratch("killed-fresh.trace.partial")).unwrap();
    let rep = replay(&fresh, &["--quiet"]);
    let err = text(&rep.stderr);
    assert_eq!(rep.status.code(), Some(125), "{err}");
    assert!(
        err.contains("a recording that did not finish left ")
            && err.contains("killed-fresh.trace.partial: replay that"),
        "{err}"
    );
}

/// A full disk under a recording (a 4 MB file size limit, with SIGXFSZ ignored: a full disk sends no signal,
/// its writes fail) is a clear error naming the trace and where what was written is, not a panic; the partial
/// trace replays up to its last complete chunk.
#[test]
fn a_full_disk_under_a_recording_is_a_clear_error() {
    let trace = scratch("full.trace");
    let partial = scratch("full.trace.partial");
    let _ = std::fs::remove_file(&partial);
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 8000; exec \"$@\"")
        .arg("sh")
        .arg(tandem())
        .args([
            "record",
            "--hash-interval",
            "65536",
            "--max-insns",
            "4000000000",
            "-o",
        ])
        .arg(&trace)
        .args(["--", "/bin/busybox", "yes"])
        .current_dir(repo())
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(err.contains("cannot write the trace"), "{err}");
    assert!(err.contains("File too large"), "{err}");
    assert!(err.contains("full.trace.partial"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!trace.exists() || std::fs::metadata(&trace).unwrap().len() > 0);
    let rep = replay(&partial, &["--quiet"]);
    let err = text(&rep.stderr);
    assert_eq!(rep.status.code(), Some(4), "{err}");
    assert!(err.contains("the trace ends early"), "{err}");
}

/// A guest that allocates and touches memory in a loop under --memory-max meets ENOMEM inside (busybox awk
/// doubling a string says "out of memory" and exits 1); tandem stays alive, and the limit is an input of the
/// run recorded in the trace, so the replay meets the same ENOMEM at the same instruction.
#[test]
fn memory_max_is_enomem_inside_the_guest_and_replays() {
    let trace = scratch("memory-max.trace");
    let rec = record(
        &trace,
        &["--memory-max", "48M"],
        "/bin/busybox",
        &["awk", "BEGIN { s = \"x\"; while (1) s = s s }"],
        b"",
    );
    let err = text(&rec.stderr);
    assert_eq!(rec.status.code(), Some(1), "{err}");
    assert!(err.contains("awk: out of memory"), "{err}");
    assert!(!err.contains("tandem: error"), "{err}");
    let rep = replay(&trace, &["--quiet"]);
    let rerr = text(&rep.stderr);
    assert_eq!(rep.status.code(), Some(0), "{rerr}");
    assert_eq!(state_line(&rep.stderr), state_line(&rec.stderr), "{rerr}");
    // A limit below what the program's image needs is a load error naming it, before anything runs.
    let out = emulate(&["--memory-max", "1M"], "/bin/busybox", &["true"], b"");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(
        err.contains("more than the guest memory limit of 256 pages (1.0 MiB)"),
        "{err}"
    );
    let out = emulate(&["--memory-max", "12Q"], "/bin/busybox", &["true"], b"");
    assert!(text(&out.stderr).contains("the unit is K, M, G or T"));
}
