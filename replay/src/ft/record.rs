//! Recording a pair (`tandem ft --record`): the trace of the agreed execution, made by the ordinary recorder
//! (crate::record) on a fresh, fault-free guest whose inputs come from the world's input log.
//!
//! The log is a recording already (host.rs): after a run it holds exactly what the agreed execution read, since
//! every mismatch cut it back to the right execution's reads. A follower `FtHost` in `inputs_only` mode answers
//! the guest's questions from it, and the `RecordingHost` in front of it logs them, with the syscall events,
//! checkpoints and page digests a trace needs; `tandem replay` then verifies the trace as any other. The
//! caller checks the recording against the world (`Summary::icount` and `state_hash`): a recorded run that
//! left the log would differ there.
//!
//! It must not: ask the live source for anything (the follower never does), or apply any replica's faults.

use super::host::{Cursor, FtHost, LiveSource, SharedLog};
use crate::hosts::RecordingHost;
use crate::record::record;
use crate::sink::ChunkSink;
use crate::trace::{Header, Summary};
use std::sync::{Arc, Mutex};
use tandem_emulator::hypervisor::plan::FaultPlan;
use tandem_emulator::hypervisor::{Hypervisor, Policy};
use tandem_emulator::linux::elf::LoadError;
use tandem_emulator::linux::{LinuxConfig, MemoryHost};

/// Records the agreed execution of a world whose (finished) input log is `log` into `writer`. `header` must
/// describe `linux` and `program` as `tandem record` would, without faults.
pub fn record_agreed<S: ChunkSink>(
    log: Arc<SharedLog>,
    linux: LinuxConfig,
    program: Arc<[u8]>,
    header: &Header,
    writer: &mut S,
) -> Result<std::io::Result<Summary>, LoadError> {
    assert!(
        header.faults.is_none(),
        "the agreed execution has no faults"
    );
    log.set_open(false);
    // Never asked: a follower answers from the log only.
    let live = Arc::new(Mutex::new(LiveSource::new(MemoryHost::new(linux.seed))));
    let mut follower = FtHost::new(log, live, false, Cursor::new(linux.seed));
    follower.inputs_only = true;
    let host = RecordingHost::new(follower, None, None);
    let mut hv = Hypervisor::new(
        linux,
        program,
        host,
        FaultPlan::default(),
        Policy::default(),
        0,
    )?;
    Ok(record(&mut hv, header, writer))
}
