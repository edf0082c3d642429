//! What a recording holds in memory is bounded whatever the guest reads: stdin goes into chunks as it is read.
//!
//! Before the recording host could pause the run, a guest that read stdin a megabyte per syscall piled up
//! everything it read until the next fine-hash stop, and the writer queued 32 such chunks per batch (recording
//! 1 GB through `busybox dd bs=1M` held 1.06 GB of it). Here the chunks a recording writes are looked at one by
//! one: none holds much more than `CHUNK_SOFT_BYTES`, and the trace still replays exactly.

mod common;

use common::{record_in_memory, Recording};
use std::cell::RefCell;
use std::rc::Rc;
use tandem_replay::hosts::OutputSink;
use tandem_replay::record::CHUNK_SOFT_BYTES;
use tandem_replay::replay::Replayer;
use tandem_replay::trace::{Chunk, Event, HostCall, Record, Trace};

/// Bytes of stdin a chunk holds.
fn stdin_bytes(chunk: &Chunk) -> usize {
    let Chunk::Records { records, .. } = chunk else {
        return 0;
    };
    records
        .iter()
        .map(|r| match r {
            Record::Event(Event::Host(HostCall::ReadStdin {
                result: Ok(bytes), ..
            })) => bytes.len(),
            _ => 0,
        })
        .sum()
}

#[test]
fn stdin_read_a_megabyte_at_a_time_streams_into_chunks() {
    const STDIN_BYTES: usize = 24 << 20;
    let busybox = std::fs::read("/bin/busybox").expect("Debian's busybox-static at /bin/busybox");
    let stdin: Vec<u8> = (0..STDIN_BYTES).map(|i| (i % 251) as u8).collect();
    let chunks = Rc::new(RefCell::new(Vec::new()));
    let seen = chunks.clone();
    let mut observe = move |c: &Chunk| seen.borrow_mut().push(stdin_bytes(c));
    let (bytes, summary) = record_in_memory(Recording {
        program: busybox,
        argv: ["dd", "bs=1M", "of=/dev/null"]
            .iter()
            .map(|a| a.as_bytes().to_vec())
            .collect(),
        stdin,
        // Checkpoints far apart: without the pause, the whole input would sit in one chunk.
        hash_interval: 1 << 26,
        fine_interval: 1 << 16,
        observe: Some(&mut observe),
        ..Recording::of("hello-musl")
    });
    assert_eq!(summary.exit_status, 0);
    let chunks = chunks.borrow();
    let total: usize = chunks.iter().sum();
    assert_eq!(total, STDIN_BYTES, "every byte of stdin is in the trace");
    let largest = chunks.iter().copied().max().unwrap_or(0);
    // One read past the mark at most: a read returns at most 1 MiB.
    assert!(
        largest <= CHUNK_SOFT_BYTES + (1 << 20),
        "a chunk holds {largest} bytes of stdin ({} chunks)",
        chunks.len()
    );
    assert!(chunks.len() >= STDIN_BYTES / (2 * CHUNK_SOFT_BYTES));

    // The pauses changed nothing about the run: the trace replays, verified to the end.
    let trace = Trace::parse(&bytes).unwrap();
    assert!(trace.damage.is_none(), "{:?}", trace.damage);
    let sink = OutputSink {
        passthrough: false,
        keep: false,
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    let mut replayer = Replayer::new(trace, sink).unwrap();
    let report = replayer.replay();
    assert!(report.divergence.is_none(), "{:?}", report.divergence);
    assert_eq!(report.exit_status, Some(0));
    assert_eq!(report.icount, summary.icount);
}
