//! Mutated traces with valid checksums: the header's fields and the records are changed in their decoded form
//! and the trace is encoded again (every CRC and link right), then read, loaded and replayed. Flipping bytes
//! (`trace::tests::mutated_traces_never_panic`) nearly always stops at a CRC; this reaches the loader, the
//! replaying host and the divergence narrowing. Each case must end in a report or a clear error, never a panic
//! (a header with a million empty argv entries once panicked the loader this way).

mod common;

use common::{record_in_memory, Recording};
use proptest::prelude::*;
use std::sync::OnceLock;
use tandem_emulator::hypervisor::plan::FaultPlan;
use tandem_replay::hosts::OutputSink;
use tandem_replay::replay::Replayer;
use tandem_replay::trace::{blob_id, Chunk, Event, Header, HostCall, Record, Trace, TraceWriter};

/// The recorded traces mutated: hello (no input), rewind (reads stdin) and sigbus with a memory fault.
fn base(which: usize) -> &'static Trace {
    static BASES: OnceLock<Vec<Trace>> = OnceLock::new();
    &BASES.get_or_init(|| {
        let mut rewind = Recording::of("rewind-musl");
        rewind.stdin = b"hello".to_vec();
        let mut sigbus = Recording::of("sigbus-musl");
        sigbus.argv.push(b"2".to_vec());
        sigbus.plan =
            FaultPlan::parse_spec("mem.ue:icount=40000,addr=0x7fffffffe000", "test").unwrap();
        [Recording::of("hello-musl"), rewind, sigbus]
            .into_iter()
            .map(|r| Trace::parse(&record_in_memory(r).0).unwrap())
            .collect()
    })[which]
}

/// A value for a mutated field: edges, small numbers and anything.
fn value() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(u64::MAX),
        Just(u64::MAX / 2),
        Just(1 << 20),
        0u64..64,
        0u64..100_000,
        any::<u64>(),
    ]
}

/// One edit of the decoded trace: which field, a value, and an index (of a record, an argument, a byte).
type Edit = (u8, u64, usize);

fn edit_header(h: &mut Header, (field, v, i): Edit) {
    match field % 24 {
        0 => h.argv = vec![Vec::new(); (v % 2_000_000) as usize],
        1 => h.argv.push(vec![b'a'; (v % 300_000) as usize]),
        2 => h.envp = vec![b"K=V".to_vec(); (v % 500_000) as usize],
        3 => h.argv.clear(),
        4 => h.frames_max = v,
        5 => h.hash_interval = v,
        6 => h.fine_interval = v,
        7 => h.seed = v,
        8 => h.epoch_ns = v,
        9 => h.ns_per_insn = v,
        10 => h.exe_path = vec![b'/'; (v % 200_000) as usize],
        11 => {
            h.cwd = if v % 2 == 0 {
                Vec::new()
            } else {
                b"../../x".to_vec()
            }
        }
        12 => h
            .mounts
            .push((b"/".to_vec(), b"/nonexistent-host-dir".to_vec())),
        13 => h.instructions_max = Some(v),
        14 => h.live_clock = !h.live_clock,
        15 => h.live_entropy = !h.live_entropy,
        16 => h.stdout_is_terminal = !h.stdout_is_terminal,
        17 => h.strict = !h.strict,
        // The program's bytes: its ELF and program headers (the first 4 KiB), named again so the id matches.
        18..=21 => {
            let at = i % h.program.len().min(4096);
            h.program[at] = v as u8;
            if field % 24 == 21 && at + 8 <= h.program.len() {
                h.program[at..at + 8].copy_from_slice(&v.to_le_bytes());
            }
            h.program_id = blob_id(&h.program);
        }
        22 => h.program.truncate(i % h.program.len()),
        _ => h.program_path = vec![0xff; i % 64],
    }
    if field % 24 == 22 {
        h.program_id = blob_id(&h.program);
    }
}

fn edit_record(records: &mut [Record], (field, v, i): Edit) {
    let n = records.len();
    let r = &mut records[i % n];
    match (r, field % 12) {
        (Record::Event(Event::SyscallEntry { icount, .. }), 0) => *icount = v,
        (Record::Event(Event::SyscallEntry { number, .. }), _) => *number = v % 512,
        (Record::Event(Event::TaskSyscallEntry { icount, .. }), 0) => *icount = v,
        (Record::Event(Event::TaskSyscallEntry { tid, .. }), 1) => *tid = v as i32,
        (Record::Event(Event::TaskSyscallEntry { number, .. }), _) => *number = v % 512,
        (Record::Event(Event::SyscallExit { result }), _) => *result = v,
        (Record::Event(Event::Host(HostCall::ReadStdin { requested, .. })), 0) => *requested = v,
        (Record::Event(Event::Host(HostCall::ReadStdin { result, .. })), _) => {
            *result = if v % 3 == 0 {
                Err(v as i32)
            } else {
                Ok(vec![b'x'; (v % 5000) as usize])
            }
        }
        (Record::Event(Event::Host(HostCall::Write { fd, len, .. })), 0) => {
            *fd = v as u8;
            *len = v;
        }
        (Record::Event(Event::Host(HostCall::Write { result, .. })), _) => *result = Err(v as i32),
        (Record::Event(Event::Fault(f)), 0) => {
            if let Some(inj) = &mut f.injection {
                inj.frame = v as u32;
            }
        }
        (Record::Event(Event::Fault(f)), 1) => {
            if let Some(inj) = &mut f.injection {
                inj.byte = v as u16;
                inj.bit = v as u8;
            }
        }
        (Record::Event(Event::Fault(f)), _) => f.report.vaddrs.push(v),
        (Record::Checkpoint(c), 0) => c.fine_hashes = vec![v; (v % 70) as usize],
        (Record::Checkpoint(c), 1) => c.registers.rip = v,
        (Record::Checkpoint(c), _) => c.memory_digest = v,
        (Record::Pages(p), 0) => p.changed.clear(),
        (Record::Pages(p), _) => {
            if let Some(d) = p.changed.first_mut() {
                d.digest = v;
                d.perms = v as u8;
            }
        }
        _ => {}
    }
}

/// Encodes a trace again, in the format written, with the summary edited by `end_edit` if any.
fn encode(t: &Trace, records: Vec<Record>, end_edit: Option<Edit>) -> Vec<u8> {
    let mut w = TraceWriter::new(Vec::new()).unwrap();
    w.write_chunk(&Chunk::Header(Box::new(t.header.clone())))
        .unwrap();
    // Two records chunks, cut at a checkpoint, so that chunk boundaries are exercised too.
    let cut = records
        .iter()
        .position(|r| matches!(r, Record::Pages(_)))
        .map_or(0, |p| p + 1);
    let first_end = records[..cut]
        .iter()
        .rev()
        .find_map(|r| match r {
            Record::Checkpoint(c) => Some(c.icount),
            _ => None,
        })
        .unwrap_or(0);
    let mut records = records;
    let rest = records.split_off(cut);
    w.write_chunk(&Chunk::Records {
        icount_end: first_end,
        records,
    })
    .unwrap();
    w.write_chunk(&Chunk::Records {
        icount_end: t.icount_end,
        records: rest,
    })
    .unwrap();
    let mut summary = t.summary.clone().unwrap();
    if let Some((field, v, _)) = end_edit {
        match field % 4 {
            0 => summary.icount = summary.icount.saturating_add(v % 100_000),
            1 => summary.exit_status = v as i32,
            2 => summary.stopped_by_limit = !summary.stopped_by_limit,
            _ => summary.state_hash = v,
        }
    }
    w.write_chunk(&Chunk::End(summary)).unwrap();
    w.into_inner()
}

fn quiet() -> OutputSink {
    OutputSink {
        passthrough: false,
        keep: false,
        stdout: Vec::new(),
        stderr: Vec::new(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 192,
        failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::Direct(
            "../corpus/regressions/trace-structure.proptest-regressions",
        ))),
        .. ProptestConfig::default()
    })]

    #[test]
    fn mutated_decoded_traces_load_and_replay_without_panics(
        which in 0usize..3,
        header_edits in proptest::collection::vec((any::<u8>(), value(), any::<usize>()), 0..3),
        record_edits in proptest::collection::vec((any::<u8>(), value(), any::<usize>()), 0..4),
        end_edit in proptest::option::of((any::<u8>(), value(), any::<usize>())),
    ) {
        let mut t = base(which).clone();
        for e in header_edits {
            edit_header(&mut t.header, e);
        }
        let mut records = t.records.clone();
        for e in record_edits {
            edit_record(&mut records, e);
        }
        let bytes = encode(&t, records, end_edit);
        let trace = match Trace::parse(&bytes) {
            Ok(trace) => trace,
            Err(e) => {
                let text = e.to_string();
                prop_assert!(text.starts_with("chunk "), "{}", text);
                return Ok(());
            }
        };
        if let Some(damage) = &trace.damage {
            prop_assert!(damage.to_string().starts_with("chunk "), "{}", damage);
        }
        let mut replayer = match Replayer::new(trace, quiet()) {
            Ok(r) => r,
            Err(e) => {
                let text = e.to_string();
                prop_assert!(text.starts_with("the embedded program cannot be loaded: "), "{}", text);
                prop_assert!(text.len() > 40, "{}", text);
                return Ok(());
            }
        };
        let report = replayer.replay();
        // A divergence says what differs; an unedited run verifies to its end.
        if let Some(d) = &report.divergence {
            prop_assert!(!d.message.is_empty());
        }
    }
}

/// The case that once panicked: a header whose argv holds a million empty strings, every CRC right.
#[test]
fn a_million_empty_arguments_in_a_header_are_a_load_error() {
    let mut t = base(0).clone();
    t.header.argv = vec![Vec::new(); 1_000_000];
    let records = t.records.clone();
    let trace = Trace::parse(&encode(&t, records, None)).unwrap();
    let e = Replayer::new(trace, quiet()).err().expect("E2BIG");
    let text = e.to_string();
    assert!(
        text.contains("1000000 argument and environment strings"),
        "{text}"
    );
    assert!(text.contains("E2BIG"), "{text}");
}
