//! Recording: runs a guest on a `RecordingHost` and writes its trace, chunk by chunk.
//!
//! The run is cut at every `fine_interval` instructions (a register hash) and every `hash_interval` (a
//! checkpoint: registers, memory digest and the digest of every page changed since the previous checkpoint,
//! then the chunk is written and flushed). A chunk is also written
//! when its pending events pass `CHUNK_SOFT_BYTES`, always between two syscalls, so every chunk is complete up
//! to its `icount_end`: the recording host pauses the run right after the syscall that crossed the mark
//! (`Host::pause_requested`), so what a recording holds in memory is bounded whatever the guest reads (stdin
//! streams into chunks as it is read).
//!
//! The guest runs under the hypervisor, which fires the run's memory faults; the run is also cut at each
//! fault's icount so that its `Event::Fault` lands in the event stream after the syscalls before it (a fault at
//! icount N fires after the N-th instruction, a syscall included, has retired).

use crate::digest::{fine_hash, register_file, DigestScheme, MemoryDigest};
use crate::hosts::RecordingHost;
use crate::sink::ChunkSink;
use crate::trace::FORMAT_VERSION;
use crate::trace::{Checkpoint, Chunk, Event, Header, Record, Summary};
use tandem_emulator::hypervisor::Hypervisor;
use tandem_emulator::linux::{Host, LinuxMachine, Progress};

/// Pending bytes past which a chunk is written before the next checkpoint.
pub const CHUNK_SOFT_BYTES: usize = 1 << 20;
/// Exit status of a run stopped by its instruction limit (the convention of timeout(1), as `tandem run`).
pub const EXIT_INSTRUCTION_LIMIT: i32 = 124;

/// Runs the guest to its end (or `header.instructions_max`), writing the trace. The header is written first.
pub fn record<H: Host, S: ChunkSink>(
    hv: &mut Hypervisor<RecordingHost<H>>,
    header: &Header,
    writer: &mut S,
) -> std::io::Result<Summary> {
    assert!(header.fine_interval >= 1 && header.hash_interval % header.fine_interval == 0);
    writer.put(Chunk::Header(Box::new(header.clone())))?;
    let limit = header.instructions_max.unwrap_or(u64::MAX);
    let fine = header.fine_interval;
    let mut fine_hashes = Vec::new();
    let scheme = DigestScheme::of_format(FORMAT_VERSION);
    let mut memory = MemoryDigest::new(scheme);
    // Faults due at icount 0 fire before the first instruction.
    let mut progress = hv.run(0);
    let mut logged = log_faults(hv, 0);
    loop {
        if progress == Progress::Finished {
            break;
        }
        let icount = hv.guest.icount();
        if icount >= limit {
            break;
        }
        let stop = (icount / fine + 1)
            .saturating_mul(fine)
            .min(limit)
            .min(hv.next_fault_icount().max(icount + 1));
        progress = hv.run(stop - icount);
        logged = log_faults(hv, logged);
        if progress == Progress::Finished {
            break;
        }
        let machine = &mut hv.guest;
        let icount = machine.icount();
        if icount % fine == 0 {
            fine_hashes.push(fine_hash(&machine.registers(), scheme));
        }
        if icount % header.hash_interval == 0 {
            let registers = register_file(&machine.registers(), scheme);
            let (space, live) = (machine.space_key(), machine.space_keys());
            let (memory_digest, pages) =
                memory.update_space(machine.memory_mut(), space, &live, icount);
            let pending = &mut machine.host.pending;
            pending.push(Record::Checkpoint(Box::new(Checkpoint {
                icount,
                registers,
                memory_digest,
                fine_hashes: std::mem::take(&mut fine_hashes),
            })));
            // In the same chunk as its checkpoint (the reader requires it).
            pending.push(Record::Pages(Box::new(pages)));
            flush(machine, writer)?;
        } else if machine.host.pending_bytes >= CHUNK_SOFT_BYTES {
            flush(machine, writer)?;
        }
    }
    let faults = hv.reports().iter().map(Into::into).collect();
    let machine = &mut hv.guest;
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
        faults,
    };
    writer.put(Chunk::End(summary.clone()))?;
    Ok(summary)
}

/// Appends the faults fired since the first `logged` to the pending records; returns how many are logged.
fn log_faults<H: Host>(hv: &mut Hypervisor<RecordingHost<H>>, logged: usize) -> usize {
    let new: Vec<Record> = hv.fault_log()[logged..]
        .iter()
        .map(|f| Record::Event(Event::Fault(Box::new(f.into()))))
        .collect();
    let n = logged + new.len();
    hv.guest.host.pending.extend(new);
    n
}

fn flush<H: Host, S: ChunkSink>(
    machine: &mut LinuxMachine<RecordingHost<H>>,
    writer: &mut S,
) -> std::io::Result<()> {
    let records = std::mem::take(&mut machine.host.pending);
    machine.host.pending_bytes = 0;
    if records.is_empty() {
        return Ok(());
    }
    writer.put(Chunk::Records {
        icount_end: machine.icount(),
        records,
    })
}
