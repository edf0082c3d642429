//! End-to-end tests of `tandem debug`: a script drives breakpoints on ELF symbols, watchpoints, stepping in
//! both directions, goto and the listings, and the transcript is checked line by line.

mod common;
use common::*;
use std::process::{Command, Stdio};

fn record_rewind(trace: &std::path::Path, stdin: &[u8]) {
    let out = record_trace(
        trace,
        &["--hash-interval", "1024"],
        &corpus_bin("rewind-musl"),
        &[],
        stdin,
    );
    assert!(
        out.status.success(),
        "tandem record failed: {}",
        text(&out.stderr)
    );
}

fn debug(trace: &std::path::Path, script: &str) -> (String, Option<i32>) {
    let dir = trace.parent().unwrap();
    let script_path = dir.join("script.txt");
    std::fs::write(&script_path, script).unwrap();
    let out = Command::new(tandem())
        .arg("debug")
        .arg(trace)
        .arg("-x")
        .arg(&script_path)
        .current_dir(repo())
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (text(&out.stdout) + &text(&out.stderr), out.status.code())
}

/// The output line that follows the "(tandem) CMD" line of the `n`th occurrence of CMD.
fn answer(transcript: &str, cmd: &str, n: usize) -> String {
    let lines: Vec<&str> = transcript.lines().collect();
    let at = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| **l == format!("(tandem) {cmd}"))
        .nth(n)
        .unwrap_or_else(|| panic!("no {cmd} #{n} in\n{transcript}"))
        .0;
    lines[at + 1].to_string()
}

#[test]
fn breakpoints_watchpoints_and_reverse_execution() {
    let dir = std::env::temp_dir().join(format!("tandem-debug-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join("rewind.trace");
    record_rewind(&trace, b"hello");
    let script = "\
break step
continue
when
x counter 8
continue
x counter 8
reverse-continue
when
reverse-stepi
disas
stepi
watch counter 8
continue
delete
goto 5
when
reverse-continue
syscalls
checkpoints
frobnicate
";
    let (t, status) = debug(&trace, script);
    // The unknown command is an error: reported with its line, and the exit status says so.
    assert_eq!(status, Some(1), "{t}");
    assert!(t.contains("error: "), "{t}");
    assert!(t.contains("line 20: unknown command \"frobnicate\""), "{t}");

    assert!(
        answer(&t, "break step", 0).starts_with("breakpoint 1 at 0x"),
        "{t}"
    );
    let first = answer(&t, "continue", 0);
    assert!(first.starts_with("breakpoint 1, icount "), "{t}");
    assert!(first.contains("<step>"), "{t}");
    let first_icount: u64 = answer(&t, "when", 0)["icount ".len()..].parse().unwrap();
    // Before the first call counter is 0; before the second it is 1 (step(1) added 1).
    assert_eq!(
        answer(&t, "x counter 8", 0),
        format!("{}: 00 00 00 00 00 00 00 00", addr_of(&t))
    );
    assert_eq!(
        answer(&t, "x counter 8", 1),
        format!("{}: 01 00 00 00 00 00 00 00", addr_of(&t))
    );
    // reverse-continue goes back to the first hit.
    let back = answer(&t, "reverse-continue", 0);
    assert!(
        back.starts_with(&format!("breakpoint 1, icount {first_icount} ")),
        "{t}"
    );
    assert_eq!(answer(&t, "when", 1), format!("icount {first_icount}"));
    // One instruction back is the call in main.
    let rsi = answer(&t, "reverse-stepi", 0);
    assert!(
        rsi.starts_with(&format!("icount {} ", first_icount - 1)),
        "{t}"
    );
    assert!(rsi.contains("<main") && rsi.contains("call"), "{t}");
    assert!(answer(&t, "disas", 0).starts_with("=> "), "{t}");
    // The watchpoint stops after the store to counter in step: 0 -> 1.
    let w = answer(&t, "continue", 1);
    assert!(
        w.starts_with("breakpoint 1"),
        "the breakpoint comes first: {t}"
    );
    let lines: Vec<&str> = t.lines().collect();
    assert!(lines.iter().all(|l| !l.contains("panicked")), "{t}");
    assert_eq!(answer(&t, "when", 2), "icount 5");
    assert!(
        answer(&t, "reverse-continue", 1).starts_with("start of history, icount 0"),
        "{t}"
    );
    let sys = answer(&t, "syscalls", 0);
    assert!(
        sys.starts_with("icount ") && sys.contains("arch_prctl"),
        "{t}"
    );
    assert!(t.contains(": read (0) = 5"), "{t}");
    assert!(t.contains("checkpoint at icount 0: ~"), "{t}");
}

/// The address `x counter 8` printed.
fn addr_of(t: &str) -> String {
    answer(t, "x counter 8", 0)
        .split(':')
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn watchpoint_stops_after_the_write() {
    let dir = std::env::temp_dir().join(format!("tandem-debug-watch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join("rewind.trace");
    record_rewind(&trace, b"x");
    let (t, status) = debug(
        &trace,
        "watch counter 8\ncontinue\ncontinue\nreverse-continue\nreverse-continue\n",
    );
    assert_eq!(status, Some(0), "{t}");
    let first = answer(&t, "continue", 0);
    assert!(
        first.starts_with("watchpoint 1: 0000000000000000 -> 0100000000000000, icount "),
        "{t}"
    );
    assert!(first.contains("<step+"), "{t}");
    let second = answer(&t, "continue", 1);
    assert!(
        second.starts_with("watchpoint 1: 0100000000000000 -> 0300000000000000"),
        "{t}"
    );
    // Backwards from after the second write: the second write itself, undone (as rr and gdb answer a reverse
    // watchpoint): one instruction earlier, on the writing instruction; then the first write, undone.
    let icount_of = |line: &str| -> u64 {
        let rest = &line[line.find("icount ").unwrap() + 7..];
        rest.split_whitespace().next().unwrap().parse().unwrap()
    };
    let back = answer(&t, "reverse-continue", 0);
    assert!(
        back.starts_with(
            "watchpoint 1: 0100000000000000 -> 0300000000000000, going backwards: before the instruction"
        ),
        "{t}"
    );
    assert_eq!(icount_of(&back), icount_of(&second) - 1, "{t}");
    let counter = answer(&t, "watch counter 8", 0)
        .rsplit("0x")
        .next()
        .unwrap()
        .to_string();
    assert!(
        back.contains("<step+") && back.contains(&format!(": mov [{counter}h],")),
        "on the store to counter ({counter}): {t}"
    );
    let back = answer(&t, "reverse-continue", 1);
    assert!(
        back.starts_with("watchpoint 1: 0000000000000000 -> 0100000000000000, going backwards"),
        "{t}"
    );
    assert_eq!(icount_of(&back), icount_of(&first) - 1, "{t}");
}

/// `tandem record` of a corpus program; the guest's death from its stderr: (signal name, rip, icount).
fn record_death(
    trace: &std::path::Path,
    flags: &[&str],
    program: &str,
    args: &[&str],
) -> (String, u64, u64) {
    let out = record_trace(trace, flags, &corpus_bin(program), args, b"");
    let stderr = text(&out.stderr);
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("tandem: guest killed by "))
        .unwrap_or_else(|| panic!("{program} {args:?} was not killed:\n{stderr}"));
    let name = line.split_whitespace().next().unwrap().to_string();
    let rip = line
        .split("at rip 0x")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap();
    let icount = line
        .split(", icount ")
        .nth(1)
        .unwrap()
        .split(':')
        .next()
        .unwrap();
    (
        name,
        u64::from_str_radix(rip, 16).unwrap(),
        icount.parse().unwrap(),
    )
}

/// A history that a signal ends ends with that signal: `continue` reaches it (the guest stopped with it, at
/// the recorded rip and icount), a second `continue` is the guest's death, and the debugger goes back and
/// forth from there: one instruction back, then forwards onto the signal again. For a fault, the instruction
/// before the end leads to the faulting one, which raises the signal when stepped; for abort(3), stepping the
/// kill syscall is what raises it.
#[test]
fn a_crash_ends_the_history_with_its_signal() {
    let dir = std::env::temp_dir().join(format!("tandem-debug-crash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sigbus = ["--faults", "mem.ue:icount=5000,addr=0x7fffffffe000"];
    for (program, args, flags, number, fault) in [
        ("crash-musl", "segv", &[][..], 11, true),
        ("crash-musl", "ill", &[][..], 4, true),
        ("crash-musl", "fpe", &[][..], 8, true),
        ("crash-glibc", "segv", &[][..], 11, true),
        ("crash-musl", "abort", &[][..], 6, false),
        ("sigbus-musl", "3", &sigbus[..], 7, true),
    ] {
        let trace = dir.join(format!("{program}-{args}.trace"));
        let (signal, rip, icount) = record_death(&trace, flags, program, &[args]);
        let (t, status) = debug(
            &trace,
            "continue\nwhen\ncontinue\nwhen\nreverse-stepi\nstepi\nstepi\nstepi\nreverse-continue\n",
        );
        let context = format!("{program} {args}:\n{t}");
        assert_eq!(status, Some(0), "{context}");
        let received = format!("the guest received {signal} (signal {number}) (");
        let at = format!("icount {icount} rip {rip:#x} ");
        let first = answer(&t, "continue", 0);
        assert!(
            first.starts_with(&received) && first.contains(&at),
            "{context}"
        );
        assert!(
            first.ends_with(&format!("(the guest ends here, by {signal})")),
            "{context}"
        );
        assert_eq!(
            answer(&t, "when", 0),
            format!("icount {icount}"),
            "{context}"
        );
        let killed = answer(&t, "continue", 1);
        assert!(
            killed.starts_with(&format!(
                "the guest was killed by {signal} (signal {number}); nothing follows"
            )),
            "{context}"
        );
        assert_eq!(
            answer(&t, "when", 1),
            format!("icount {icount}"),
            "{context}"
        );
        assert!(
            answer(&t, "reverse-stepi", 0).starts_with(&format!("icount {} rip ", icount - 1)),
            "{context}"
        );
        let steps: Vec<String> = (0..3).map(|n| answer(&t, "stepi", n)).collect();
        if fault {
            // Onto the faulting instruction (not yet raised), then the signal, then the death.
            assert!(
                steps[0].starts_with(&at) && !steps[0].contains("ends here"),
                "{context}"
            );
            assert!(
                steps[1].starts_with(&received) && steps[1].contains(&at),
                "{context}"
            );
            assert!(steps[2].starts_with("the guest was killed by"), "{context}");
        } else {
            assert!(
                steps[0].starts_with(&received) && steps[0].contains(&at),
                "{context}"
            );
            assert!(steps[1].starts_with("the guest was killed by"), "{context}");
        }
        assert!(
            answer(&t, "reverse-continue", 0).starts_with("start of history, icount 0 "),
            "{context}"
        );
        assert!(!t.contains("end of history"), "{context}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A watchpoint covers the bytes asked for, not a clamped part of them: rewind reads 64 NUL bytes and "hello"
/// into its 256-byte `line`, so its first 64 bytes never change and only a watch on more of it stops, at the
/// read. Lengths of 0 or above the maximum are refused with the reason, which the exit status reports.
#[test]
fn watch_lengths_are_honoured_or_refused() {
    let dir = std::env::temp_dir().join(format!("tandem-debug-long-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join("rewind.trace");
    let mut stdin = vec![0u8; 64];
    stdin.extend_from_slice(b"hello");
    let out = record_trace(
        &trace,
        &["--hash-interval", "1024"],
        &corpus_bin("rewind-musl"),
        &[],
        &stdin,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (t, status) = debug(
        &trace,
        "watch line 64\ncontinue\ndelete\ngoto 0\nwatch line 256\ncontinue\nsyscalls\n",
    );
    assert_eq!(status, Some(0), "{t}");
    assert!(
        answer(&t, "continue", 0).starts_with("end of history"),
        "{t}"
    );
    assert_eq!(
        answer(&t, "watch line 256", 0).split(" at ").next(),
        Some("watchpoint 2 on 256 bytes"),
        "{t}"
    );
    let stop = answer(&t, "continue", 1);
    let zeros = "00".repeat(256);
    let new = format!(
        "{}{}{}",
        "00".repeat(64),
        "68656c6c6f",
        "00".repeat(256 - 69)
    );
    assert!(
        stop.starts_with(&format!("watchpoint 2: {zeros} -> {new}, icount ")),
        "{t}"
    );
    // Just after the read syscall.
    let icount: u64 = stop
        .split(", icount ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        t.contains(&format!("icount {icount}: read (0) = 69")),
        "{t}"
    );

    let (t, status) = debug(
        &trace,
        "watch line 1048577\nwatch line 0\nrwatch line 1048576\n",
    );
    assert_eq!(status, Some(1), "{t}");
    assert!(
        t.contains("line 1: watch: a watchpoint covers at most 1048576 bytes, not 1048577"),
        "{t}"
    );
    assert!(
        t.contains("line 2: watch: a watchpoint covers at least 1 byte"),
        "{t}"
    );
    assert!(
        answer(&t, "rwatch line 1048576", 0).starts_with("read watchpoint 1 on 1048576 bytes"),
        "{t}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Going back to the first instructions of a glibc program (before glibc takes entropy for its heap) and
/// continuing reaches the same end as the first time: the replay host rewinds its inputs with the guest.
#[test]
fn goto_early_then_continue_reaches_the_same_end() {
    let dir = std::env::temp_dir().join(format!("tandem-debug-goto-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join("hello-glibc.trace");
    let out = record_trace(
        &trace,
        &["--hash-interval", "1024"],
        &corpus_bin("hello-glibc"),
        &[],
        b"",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (t, status) = debug(
        &trace,
        "continue\nwhen\ngoto 100\nwhen\ncontinue\nwhen\ngoto 3000\ncontinue\nwhen\n",
    );
    assert_eq!(status, Some(0), "{t}");
    let end = answer(&t, "when", 0);
    assert!(!end.is_empty() && end != answer(&t, "when", 1), "{t}");
    assert_eq!(answer(&t, "when", 2), end, "{t}");
    assert_eq!(answer(&t, "when", 3), end, "{t}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The `threads` line of `tid` in a transcript ("* thread TID process PID rip ADDR <sym> STATE").
fn thread_line(transcript: &str, tid: i32) -> &str {
    transcript
        .lines()
        .find(|l| {
            l.get(1..)
                .is_some_and(|rest| rest.starts_with(&format!(" thread {tid} process 1000 rip ")))
        })
        .unwrap_or_else(|| panic!("no thread {tid} in\n{transcript}"))
}

/// `threads` lists every thread of a multi-thread replay with its process, rip and state, the one stopped at
/// a breakpoint in a worker's function marked; `thread TID` selects another for `regs` and `x` until the
/// next move, and an unknown tid is an error.
#[test]
fn threads_lists_every_thread_and_thread_selects_one_for_regs() {
    let dir = scratch("debug-cli-threads");
    let trace = dir.join("workers.trace");
    let out = record_trace(&trace, &[], &corpus_bin("workers-glibc"), &[], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let script = "\
break beta_step
continue
threads
regs
thread 1000
regs
thread 1234
stepi
regs
";
    let (t, status) = debug(&trace, script);
    assert_eq!(status, Some(1), "`thread 1234` must fail the script:\n{t}");
    // main (1000) and the three workers in creation order: alpha 1001, beta 1002, gamma 1003.
    for tid in 1000..=1003 {
        thread_line(&t, tid);
    }
    assert!(!t.contains("thread 1004 process"), "{t}");
    let beta = thread_line(&t, 1002);
    assert!(
        beta.starts_with('*') && beta.contains("<beta_step>") && beta.ends_with("running"),
        "the thread stopped at the breakpoint is beta, marked: {beta}\n{t}"
    );
    for tid in [1000, 1001, 1003] {
        assert!(thread_line(&t, tid).starts_with(' '), "{t}");
    }
    let rip_of_regs = |n: usize| -> String {
        let lines: Vec<&str> = t.lines().collect();
        let at = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| **l == "(tandem) regs")
            .nth(n)
            .unwrap_or_else(|| panic!("no regs #{n} in\n{t}"))
            .0;
        lines[at + 1..]
            .iter()
            .find(|l| l.starts_with("rip "))
            .unwrap()
            .to_string()
    };
    assert!(rip_of_regs(0).contains("<beta_step>"), "{t}");
    // Thread 1000 (main) waits in pthread_join: its rip is its own, and what `threads` shows for it.
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
    let rip_value = |line: String| hex(line.split_whitespace().nth(1).unwrap());
    assert!(!rip_of_regs(1).contains("<beta_step>"), "{t}");
    let listed = hex(thread_line(&t, 1000).split_whitespace().nth(5).unwrap());
    assert_eq!(rip_value(rip_of_regs(1)), listed, "{t}");
    assert!(t.contains("no thread 1234"), "{t}");
    // A step ends the selection: regs shows the running thread again.
    assert_ne!(rip_value(rip_of_regs(2)), listed, "{t}");
    assert_eq!(
        answer(&t, "thread 1000", 0).split_whitespace().nth(1),
        Some("1000")
    );
}

/// The value of register `name` in a `regs` listing.
fn register(transcript: &str, name: &str) -> u64 {
    let line = transcript
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no {name} in\n{transcript}"));
    let hex = line.split_whitespace().nth(1).unwrap();
    u64::from_str_radix(hex.trim_start_matches("0x"), 16).unwrap()
}

/// Records corpus/bin/maps-dyn (a plain gcc build that prints its /proc/self/maps and calls puts and strlen);
/// returns the trace and the recorded stdout.
fn record_maps_dyn(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    let trace = dir.join("maps-dyn.trace");
    let out = record_trace(&trace, &[], &corpus_bin("maps-dyn"), &["xyz"], b"");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    (trace, text(&out.stdout))
}

/// `break puts` before libc is mapped is pending, and set when the loader maps libc; the stop is at libc's base
/// (from the run's own /proc/self/maps) plus puts's value in `nm -D` of libc, named `<puts>`. `break strlen`
/// (an indirect function) stops in the implementation the loader chose, not in its resolver: inside libc's
/// code, with the first line the program prints as its argument (fputs measures it).
#[test]
fn breakpoints_on_shared_library_symbols_of_a_dynamic_program() {
    let dir = scratch("debug-dynamic");
    let (trace, stdout) = record_maps_dyn(&dir);
    let (base, libc, (text_lo, text_hi)) = libc_mapping(&stdout);
    let (puts, kind) = nm_dynamic(&libc, "puts");
    assert!(matches!(kind, 'T' | 'W'), "{kind}");
    let (t, code) = debug(&trace, "break puts\ncontinue\nregs\n");
    assert_eq!(code, Some(0), "{t}");
    assert!(
        answer(&t, "break puts", 0).contains("pending"),
        "libc is not mapped at icount 0: {t}"
    );
    assert_eq!(register(&t, "rip"), base + puts, "{t}");
    assert!(answer(&t, "continue", 0).contains("<puts>"), "{t}");

    let (resolver, kind) = nm_dynamic(&libc, "strlen");
    assert_eq!(kind, 'i', "glibc's strlen is an indirect function");
    let (t, code) = debug(&trace, "break strlen\ncontinue\nregs\nwhen\n");
    assert_eq!(code, Some(0), "{t}");
    let rip = register(&t, "rip");
    assert!(
        rip != base + resolver && (text_lo..text_hi).contains(&rip),
        "rip {rip:#x}, resolver {:#x}, libc code {text_lo:#x}-{text_hi:#x}\n{t}",
        base + resolver
    );
    let rdi = register(&t, "rdi");
    let when = answer(&t, "when", 0);
    let (x, _) = debug(&trace, &format!("goto {}\nx {rdi:#x} 32\n", &when[7..]));
    let shown: Vec<u8> = answer(&x, &format!("x {rdi:#x} 32"), 0)
        .split_whitespace()
        .skip(1)
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .take_while(|&b| b != 0)
        .collect();
    assert!(
        !shown.is_empty() && stdout.contains(&text(&shown)),
        "strlen's argument {:?} is no text the program printed\n{x}",
        text(&shown)
    );
}
