//! Recording: runs a guest on a `RecordingHost` and writes its trace, chunk by chunk.
//!
//! The run is cut at every `fine_interval` instructions (a register hash) and every `hash_interval` (a
//! checkpoint: registers and memory digest, then the chunk is written and flushed). A chunk is also written
//! when its pending events pass `CHUNK_SOFT_BYTES`, always between two syscalls, so every chunk is complete up
//! to its `icount_end`.

use crate::digest::{register_file, register_hash, MemoryDigest};
use crate::hosts::RecordingHost;
use crate::trace::{Checkpoint, Chunk, Header, Record, Summary, TraceWriter};
use std::io::Write;
use tandem_emulator::linux::{Host, LinuxMachine, Progress};

/// Pending bytes past which a chunk is written before the next checkpoint.
pub const CHUNK_SOFT_BYTES: usize = 1 << 20;
/// Exit status of a run stopped by its instruction limit (the convention of timeout(1), as `tandem run`).
pub const EXIT_INSTRUCTION_LIMIT: i32 = 124;

/// Runs `machine` to its end (or `header.instructions_max`), writing the trace. The header is written first.
pub fn record<H: Host, W: Write>(
    machine: &mut LinuxMachine<RecordingHost<H>>,
    header: &Header,
    writer: &mut TraceWriter<W>,
) -> std::io::Result<Summary> {
    assert!(header.fine_interval >= 1 && header.hash_interval % header.fine_interval == 0);
    writer.write_chunk(&Chunk::Header(Box::new(header.clone())))?;
    let limit = header.instructions_max.unwrap_or(u64::MAX);
    let fine = header.fine_interval;
    let mut fine_hashes = Vec::new();
    let mut memory = MemoryDigest::default();
    let mut progress = Progress::BudgetExhausted;
    loop {
        let icount = machine.icount();
        if icount >= limit {
            break;
        }
        let stop = (icount / fine + 1).saturating_mul(fine).min(limit);
        progress = machine.run(stop - icount);
        if progress == Progress::Finished {
            break;
        }
        let icount = machine.icount();
        if icount % fine == 0 {
            fine_hashes.push(register_hash(&register_file(&machine.machine.cpu)));
        }
        if icount % header.hash_interval == 0 {
            let registers = register_file(&machine.machine.cpu);
            let memory_digest = memory.update(&mut machine.machine.cpu.mem);
            machine
                .host
                .pending
                .push(Record::Checkpoint(Box::new(Checkpoint {
                    icount,
                    registers,
                    memory_digest,
                    fine_hashes: std::mem::take(&mut fine_hashes),
                })));
            flush(machine, writer)?;
        } else if machine.host.pending_bytes >= CHUNK_SOFT_BYTES {
            flush(machine, writer)?;
        }
    }
    flush(machine, writer)?;
    let (exit_status, stopped_by_limit, diagnostic) = match progress {
        Progress::Finished => {
            let t = machine
                .termination()
                .expect("a finished guest has a termination");
            (t.exit_status(), false, t.diagnostic())
        }
        Progress::BudgetExhausted => (EXIT_INSTRUCTION_LIMIT, true, None),
    };
    let summary = Summary {
        icount: machine.icount(),
        state_hash: machine.state_hash(),
        exit_status,
        stopped_by_limit,
        diagnostic,
        stdout_len: machine.host.stdout.len,
        stdout_fnv: machine.host.stdout.fnv(),
        stderr_len: machine.host.stderr.len,
        stderr_fnv: machine.host.stderr.fnv(),
    };
    writer.write_chunk(&Chunk::End(summary.clone()))?;
    Ok(summary)
}

fn flush<H: Host, W: Write>(
    machine: &mut LinuxMachine<RecordingHost<H>>,
    writer: &mut TraceWriter<W>,
) -> std::io::Result<()> {
    let records = std::mem::take(&mut machine.host.pending);
    machine.host.pending_bytes = 0;
    if records.is_empty() {
        return Ok(());
    }
    writer.write_chunk(&Chunk::Records {
        icount_end: machine.icount(),
        records,
    })
}
