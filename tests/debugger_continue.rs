//! The replay debugger's fast `continue` and `reverse-continue` (block-speed runs with breakpoint addresses
//! looked up in the block cache, the memory counting accesses to watched ranges) against a reference written
//! here: a walk of the whole recorded history one instruction at a time, comparing the watched bytes and rip
//! after every instruction, and deciding which instruction reads or writes a watched range from iced-x86's
//! account of the instruction's memory operands (an oracle independent of the emulator's memory). Both must
//! stop at the same icounts, for the same reasons, forwards and backwards (backwards, a watchpoint stops
//! before its instruction).
//!
//! The breakpoints are spread over the instructions the program really executes (inside blocks as well as at
//! their starts), and the watchpoints cover a global written by the program, the buffer a read() syscall
//! fills, and stack slots on a page the program writes all the time (accesses to other bytes of the page must
//! not stop, and must not cost a re-run either).

mod common;
use common::*;
use iced_x86::{Decoder, DecoderOptions, InstructionInfoFactory, OpAccess, OpKind, Register};
use std::collections::BTreeSet;
use tandem_replay::debugger::{Debugger, Stop, WatchKind};
use tandem_replay::hosts::OutputSink;
use tandem_replay::replay::Replayer;
use tandem_replay::trace::Trace;

fn debugger_for(trace: &std::path::Path) -> Debugger {
    let bytes = std::fs::read(trace).unwrap();
    let trace = Trace::parse(&bytes).unwrap();
    let sink = OutputSink {
        passthrough: false,
        keep: true,
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    let mut d = Debugger::new(Replayer::new(trace, sink).unwrap());
    // Dense checkpoints, so that reverse-continue searches more than one interval of the ~4,000-instruction
    // program.
    d.timeline.interval_base = 1000;
    d
}

fn rip(d: &Debugger) -> u64 {
    d.timeline.replayer.hv.guest.rip()
}

fn bytes_at(d: &Debugger, addr: u64, len: u64) -> Vec<u8> {
    let mem = d.timeline.replayer.hv.guest.memory();
    (0..len)
        .map(|i| {
            let mut b = [0u8];
            mem.peek(addr + i, &mut b).map(|_| b[0]).unwrap_or(0)
        })
        .collect()
}

/// What a stop is, without the watched bytes: (icount, "b" or "w", id).
fn key(icount: u64, stop: &Stop) -> Option<(u64, char, u32)> {
    match stop {
        Stop::Breakpoint(id) => Some((icount, 'b', *id)),
        Stop::Watchpoint(hit) => Some((icount, 'w', hit.id)),
        _ => None,
    }
}

/// The data memory the instruction at rip reads and writes, by iced-x86's account of its operands (implicit
/// stack and string operands included), with the registers before it: ((address, bytes), wrote).
fn memory_accesses(d: &Debugger) -> Vec<(u64, u64, bool)> {
    let guest = &d.timeline.replayer.hv.guest;
    let regs = guest.registers();
    let mut code = [0u8; 15];
    for (i, b) in code.iter_mut().enumerate() {
        let mut one = [0u8];
        if guest.memory().peek(regs.rip + i as u64, &mut one).is_err() {
            break;
        }
        *b = one[0];
    }
    let instr = Decoder::with_ip(64, &code, regs.rip, DecoderOptions::NONE).decode();
    let repeats = instr.has_rep_prefix() || instr.has_repne_prefix();
    if repeats && instr.is_string_instruction() {
        let address32 = instr
            .op_kinds()
            .any(|k| matches!(k, OpKind::MemoryESEDI | OpKind::MemorySegESI));
        let count = if address32 {
            regs.gpr[1] & 0xffff_ffff
        } else {
            regs.gpr[1]
        };
        if count == 0 {
            return Vec::new();
        }
    }
    let value = |reg: Register, _: usize, _: usize| -> Option<u64> {
        match reg {
            Register::ES | Register::CS | Register::SS | Register::DS => Some(0),
            Register::FS => Some(regs.fs_base),
            Register::GS => Some(regs.gs_base),
            r if r.is_gpr() => {
                let v = regs.gpr[r.full_register().number()];
                Some(match r.size() {
                    8 => v,
                    4 => v & 0xffff_ffff,
                    2 => v & 0xffff,
                    _ => v & 0xff,
                })
            }
            _ => None,
        }
    };
    let mut factory = InstructionInfoFactory::new();
    factory
        .info(&instr)
        .used_memory()
        .iter()
        .filter_map(|m| {
            let (reads, writes) = match m.access() {
                OpAccess::Read | OpAccess::CondRead => (true, false),
                OpAccess::Write | OpAccess::CondWrite => (false, true),
                OpAccess::ReadWrite | OpAccess::ReadCondWrite => (true, true),
                _ => return None,
            };
            let addr = m.virtual_address(0, value)?;
            // iced gives a repeated string instruction's memory no size (the whole run's is unknown): one
            // iteration, which is one step here, touches one element.
            let size = match m.memory_size().size() {
                0 if instr.is_string_instruction() => string_element_bytes(&instr),
                n => n as u64,
            };
            let mut v = Vec::new();
            if reads {
                v.push((addr, size, false));
            }
            if writes {
                v.push((addr, size, true));
            }
            Some(v)
        })
        .flatten()
        .collect()
}

/// The element size of a string instruction (MOVSB..MOVSQ, STOS, LODS, SCAS, CMPS).
fn string_element_bytes(instr: &iced_x86::Instruction) -> u64 {
    use iced_x86::Mnemonic::*;
    match instr.mnemonic() {
        Movsb | Stosb | Lodsb | Scasb | Cmpsb | Insb | Outsb => 1,
        Movsw | Stosw | Lodsw | Scasw | Cmpsw | Insw | Outsw => 2,
        Movsd | Stosd | Lodsd | Scasd | Cmpsd | Insd | Outsd => 4,
        Movsq | Stosq | Lodsq | Scasq | Cmpsq => 8,
        other => panic!("not a string instruction: {other:?}"),
    }
}

/// The stops of the whole history, one instruction at a time: after each instruction, the watchpoint it
/// triggered, lowest id first (`watch`: the watched bytes changed; `rwatch`: the instruction read one of them;
/// `awatch`: it read or wrote one), else a breakpoint at the new rip (lowest id first).
fn reference_stops(
    d: &mut Debugger,
    breakpoints: &[(u32, u64)],
    watchpoints: &[(u32, u64, u64, WatchKind)],
) -> Vec<(u64, char, u32)> {
    d.timeline.seek(0);
    let end = d.timeline.icount_end();
    let mut stops = Vec::new();
    let mut watched: Vec<Vec<u8>> = watchpoints
        .iter()
        .map(|&(_, a, l, _)| bytes_at(d, a, l))
        .collect();
    while d.timeline.icount() < end && !d.timeline.finished() {
        let accesses = memory_accesses(d);
        let next = d.timeline.icount() + 1;
        d.timeline.seek(next);
        let now: Vec<Vec<u8>> = watchpoints
            .iter()
            .map(|&(_, a, l, _)| bytes_at(d, a, l))
            .collect();
        let touched = |a: u64, l: u64, write: bool| {
            accesses
                .iter()
                .any(|&(at, size, w)| w == write && at < a + l && a < at + size)
        };
        let stopped = watchpoints
            .iter()
            .zip(watched.iter().zip(&now))
            .find(|((_, a, l, kind), (old, new))| match kind {
                WatchKind::Write => old != new,
                WatchKind::Read => touched(*a, *l, false),
                WatchKind::Access => touched(*a, *l, false) || touched(*a, *l, true),
            })
            .map(|(&(id, _, _, _), _)| id);
        watched = now;
        if let Some(id) = stopped {
            stops.push((next, 'w', id));
        } else if let Some(&(id, _)) = breakpoints.iter().find(|(_, a)| *a == rip(d)) {
            stops.push((next, 'b', id));
        }
    }
    stops
}

/// The same stops as reverse-continue finds them: a watchpoint before its instruction (one icount earlier),
/// where it hides a breakpoint stop at that icount (going backwards, the watchpoint's instruction is undone
/// first, and a breakpoint at the position reached is not reported again).
fn backwards(forward: &[(u64, char, u32)]) -> Vec<(u64, char, u32)> {
    let mut stops: Vec<(u64, char, u32)> = Vec::new();
    for &(icount, kind, id) in forward {
        if kind == 'w' {
            if stops.last().is_some_and(|s| s.0 == icount - 1) {
                stops.pop();
            }
            stops.push((icount - 1, kind, id));
        } else {
            stops.push((icount, kind, id));
        }
    }
    stops
}

fn forward_stops(d: &mut Debugger) -> Vec<(u64, char, u32)> {
    d.timeline.seek(0);
    let mut stops = Vec::new();
    for _ in 0..100_000 {
        let s = d.continue_forward();
        match key(d.timeline.icount(), &s) {
            Some(k) => stops.push(k),
            None => {
                assert_eq!(s, Stop::End);
                return stops;
            }
        }
    }
    panic!("continue never reached the end of history");
}

fn backward_stops(d: &mut Debugger) -> Vec<(u64, char, u32)> {
    let end = d.timeline.icount_end();
    d.timeline.seek(end);
    let mut stops = Vec::new();
    for _ in 0..100_000 {
        let s = d.continue_backward();
        match key(d.timeline.icount(), &s) {
            Some(k) => stops.push(k),
            None => {
                assert_eq!(s, Stop::Start);
                assert_eq!(d.timeline.icount(), 0);
                stops.reverse();
                return stops;
            }
        }
    }
    panic!("reverse-continue never reached the start of history");
}

#[test]
fn fast_continue_stops_where_single_stepping_does() {
    let dir = std::env::temp_dir().join(format!("tandem-continue-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join("rewind.trace");
    let out = record_trace(&trace, &[], &corpus_bin("rewind-musl"), &[], b"hello");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut d = debugger_for(&trace);

    // Every executed instruction address, and the stack pointer at main's entry.
    let main = d.symbol("main").expect("rewind-musl has symbols");
    let end = d.timeline.icount_end();
    let mut executed = BTreeSet::new();
    let mut rsp_in_main = None;
    while d.timeline.icount() < end && !d.timeline.finished() {
        executed.insert(rip(&d));
        if rip(&d) == main && rsp_in_main.is_none() {
            rsp_in_main = Some(d.timeline.replayer.hv.guest.registers().gpr[4]);
        }
        let next = d.timeline.icount() + 1;
        d.timeline.seek(next);
    }
    assert!(executed.len() > 200, "{} addresses", executed.len());
    // Every 41st executed address (starts of blocks and instructions inside them alike), and step.
    let mut addresses: Vec<u64> = executed.iter().copied().step_by(41).collect();
    addresses.push(d.symbol("step").unwrap());
    let breakpoints: Vec<(u32, u64)> = addresses
        .iter()
        .map(|&a| (d.add_breakpoint(a), a))
        .collect();

    let expected = check_both_ways(&mut d, &breakpoints, &[], "breakpoints only");
    assert!(expected.len() > 20, "{expected:?}");

    // Watchpoints: counter (written by step), the first bytes of line (filled by read()), and the return
    // address slot below main's frame (its page is written by every call).
    let counter = d.symbol("counter").unwrap();
    let line = d.symbol("line").unwrap();
    let slot = rsp_in_main.unwrap() - 0x28;
    let mut watched = vec![(counter, 8), (line, 4), (slot, 8)];
    for k in 1..40u64 {
        watched.push((slot - 8 * k, 8));
    }
    let writes: Vec<(u32, u64, u64, WatchKind)> = watched
        .iter()
        .map(|&(a, l)| {
            let id = d.add_watchpoint(a, l, WatchKind::Write).unwrap();
            (id, a, l, WatchKind::Write)
        })
        .collect();
    check_both_ways(
        &mut d,
        &breakpoints,
        &writes,
        "breakpoints and write watchpoints",
    );
    let watch_hits: Vec<u32> = reference_stops(&mut d, &breakpoints, &writes)
        .iter()
        .filter(|s| s.1 == 'w')
        .map(|s| s.2)
        .collect();
    for &(id, _, _, _) in &writes[..3] {
        assert!(watch_hits.contains(&id), "watchpoint {id} never hit");
    }

    // Watchpoints alone: long runs between stops, in which a watched slot can change and change back.
    for &(_, a) in &breakpoints {
        d.remove_breakpoint_at(a);
    }
    check_both_ways(&mut d, &[], &writes, "write watchpoints only");

    // Read and access watchpoints, on counter (read and written by step) and on stack slots around main's
    // frame (pushed, popped, stored), with write watchpoints on the same bytes: every kind stops on its own
    // accesses, lowest id first.
    for &(_, a, l, kind) in &writes {
        assert!(d.remove_watchpoint(a, l, kind));
    }
    let mut mixed = Vec::new();
    for (k, &(a, l)) in [(counter, 8), (slot, 8), (slot - 8, 8), (slot - 0x30, 16)]
        .iter()
        .enumerate()
    {
        let kinds = [WatchKind::Read, WatchKind::Access, WatchKind::Write];
        for kind in [kinds[k % 3], kinds[(k + 1) % 3]] {
            mixed.push((d.add_watchpoint(a, l, kind).unwrap(), a, l, kind));
        }
    }
    let expected = check_both_ways(&mut d, &[], &mixed, "read, access and write watchpoints");
    for kind in [WatchKind::Read, WatchKind::Access, WatchKind::Write] {
        assert!(
            mixed
                .iter()
                .any(|w| w.3 == kind && expected.iter().any(|s| s.1 == 'w' && s.2 == w.0)),
            "no {kind:?} watchpoint hit: {expected:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Continue and reverse-continue over the whole history stop where the reference does; the reference.
fn check_both_ways(
    d: &mut Debugger,
    breakpoints: &[(u32, u64)],
    watchpoints: &[(u32, u64, u64, WatchKind)],
    what: &str,
) -> Vec<(u64, char, u32)> {
    let expected = reference_stops(d, breakpoints, watchpoints);
    assert_eq!(forward_stops(d), expected, "continue, {what}");
    assert_eq!(
        backward_stops(d),
        backwards(&expected),
        "reverse-continue, {what}"
    );
    expected
}

/// A poll that answers true stops a continue at an exact icount, from which everything goes on as from any
/// other position; a reverse-continue interrupted the same way stops where its search had got to, and the
/// next one finds the breakpoint all the same.
#[test]
fn an_interrupted_continue_stops_at_an_exact_icount() {
    let dir = std::env::temp_dir().join(format!("tandem-interrupt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join("sha.trace");
    let out = record_trace(&trace, &[], &corpus_bin("sha256-glibc"), &[], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut d = debugger_for(&trace);
    d.timeline.interval_base = tandem_replay::timeline::INTERVAL_BASE_DEFAULT;
    let end = d.timeline.icount_end();
    assert!(end > 10_000_000, "a long recording: {end}");

    let mut polls = 0;
    let stop = d.continue_forward_polling(&mut || {
        polls += 1;
        polls == 3
    });
    assert_eq!(stop, Stop::Interrupted);
    let at = d.timeline.icount();
    let interval = tandem_replay::debugger::POLL_INTERVAL_INSNS;
    assert!(
        (2 * interval..4 * interval).contains(&at),
        "interrupted at the third poll, not at {at}"
    );
    // The state is that of the recorded run at that icount, as a fresh replay reaches it.
    let mut fresh = debugger_for(&trace);
    fresh.timeline.seek(at);
    assert_eq!(d.registers_text(), fresh.registers_text());
    d.timeline.seek(at - 1);
    fresh.timeline.seek(at - 1);
    assert_eq!(d.timeline.icount(), at - 1);
    assert_eq!(d.registers_text(), fresh.registers_text());
    assert_eq!(d.continue_forward(), Stop::End);
    assert_eq!(d.timeline.icount(), end);

    // A breakpoint early in the run; reverse-continue from the end, interrupted at its 20th poll (a search
    // back over a checkpoint interval of 2^20 instructions polls 16 times).
    fresh.timeline.seek(1000);
    let early = fresh.timeline.replayer.hv.guest.rip();
    fresh.timeline.seek(0);
    fresh.add_breakpoint(early);
    fresh.continue_forward();
    let first_hit = fresh.timeline.icount();
    d.add_breakpoint(early);
    // The last hit before the end, found forwards (the breakpoint may be hit more than once).
    let mut last_hit = first_hit;
    while let Stop::Breakpoint(_) = fresh.continue_forward() {
        last_hit = fresh.timeline.icount();
    }
    assert_eq!(d.timeline.icount(), end);
    let mut polls = 0;
    let stop = d.continue_backward_polling(&mut || {
        polls += 1;
        polls == 20
    });
    assert_eq!(stop, Stop::Interrupted);
    let searched_from = d.timeline.icount();
    assert!(
        searched_from > last_hit && searched_from < end,
        "{searched_from}"
    );
    assert!(matches!(d.continue_backward(), Stop::Breakpoint(_)));
    assert_eq!(d.timeline.icount(), last_hit);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A checkpoint holds privately the frames written after it, up to the next one: right after the timeline
/// takes one, no frame counts as written (a snapshot does not end the memory's dirty epoch, so the timeline
/// starts one itself), and the memory the `checkpoints` command reports stays that of a few intervals' writes,
/// not of every write since the start.
#[test]
fn checkpoint_memory_counts_only_the_frames_written_since() {
    let dir = std::env::temp_dir().join(format!("tandem-ckpt-mem-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join("sha.trace");
    let out = record_trace(&trace, &[], &corpus_bin("sha256-glibc"), &[], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut d = debugger_for(&trace);
    let base = tandem_replay::timeline::INTERVAL_BASE_DEFAULT;
    d.timeline.interval_base = base;
    for k in [1, 2, 7, 30] {
        d.timeline.seek(k * base);
        assert!(
            d.timeline
                .checkpoint_list()
                .iter()
                .any(|&(i, _)| i == k * base),
            "a checkpoint at icount {}",
            k * base
        );
        let dirty = d.timeline.frames_written_since_checkpoint();
        assert_eq!(dirty, Some(0), "frames dirty right after a checkpoint");
    }
    let mapped = d.timeline.replayer.hv.guest.memory().mapped_page_count();
    for (icount, bytes) in d.timeline.checkpoint_list() {
        assert!(
            bytes < 4 * mapped * 4096,
            "checkpoint at {icount} holds {bytes} bytes, more than four times the {mapped} mapped pages"
        );
    }
}
