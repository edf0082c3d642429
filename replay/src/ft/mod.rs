//! Fault-tolerant guest pairs and triples: N replicas of one guest run epoch by epoch, compared at the output,
//! and only the output they agree on is released (../shared/DESIGN.md, "ft").
//!
//! The primary (the leader) runs with the live host; every input it takes is appended to a log that the other
//! replicas replay (host.rs), as VMware FT ships its log to the backup. Each replica holds its stdout and stderr
//! writes and its file changes for the epoch; at the epoch's end the world compares the replicas' outcomes: the writes, how the guest
//! ended, the instruction count, the registers and a digest of the pages written in the epoch (`epoch_digest`,
//! incremental: it costs what the epoch wrote, not what the guest mapped). Every `FtConfig::verify_epochs`
//! epochs, at every mismatch and at the end, the full state hashes are compared instead, and the state they agree
//! on becomes the checkpoint that re-executions start from.
//!
//! The guarantee: a fault in a page written during an epoch is caught at that epoch's end; a fault in a page
//! not written again (a bit flip the guest never touches) is caught when it reaches output or at the next full
//! comparison, whichever is first. No output is released that not every replica produced, and since the
//! checkpoint is a state whose full hashes agreed, the fault is not in it and a re-execution from it finds the
//! right replica.
//!
//! On a mismatch the world decides who is right. With three replicas a strict majority wins (triple modular
//! redundancy); otherwise the epoch is re-executed from the last agreed checkpoint on a fresh copy that takes its
//! inputs from the live source itself, and whichever replica matches it was right (so a fault in the primary is
//! corrected too, which VMware FT, Remus and COLO cannot do: they trust the primary). `Arbiter::TrustPrimary` is
//! the classic scheme, kept for comparison. A wrong replica that is still alive gets the right state installed
//! (a copy-on-write snapshot of the guest plus the host cursor; the pages that differed are counted as moved);
//! one that a fault killed is dropped, and a dropped primary hands the live host to the first survivor. The log
//! is cut back to what the right execution read, so the next epoch starts from one agreed log.
//!
//! Invariants: output is released once, in order, and only after every live replica produced the same bytes (or
//! the arbiter decided); the released output never depends on which replica was faulty. The backups run on host
//! threads of their own beside the primary (`FtConfig::threads`; the guest is `Send`), each against the log: a
//! backup that catches up with the primary waits for its next entry, and once the primary's epoch is over a
//! backup gets the answers it would have got running after it, so how they are interleaved changes nothing.
//! With threads the primary also runs ahead by default: the next epoch while the previous one is run by the
//! backups and settled, rewound if settling needs its state at the epoch's end (ahead.rs).
//!
//! What it must not do: read the clock or draw randomness (the guests' entropy is seeded; the live clock and live
//! entropy of `tandem record` are not supported here), or pass any output on before it is agreed.

mod ahead;
mod host;
mod mismatch;
mod record;
#[cfg(test)]
mod tests;
mod workers;

pub use host::{Cursor, FtHost, HeldWrite, LiveSource, Log, OutputTarget, SharedLive, SharedLog};
pub use mismatch::{MismatchView, PageDifference, ReplicaView, PAGES_SHOWN_MAX};
pub use record::record_agreed;

use crate::digest::{DigestScheme, MemoryDigest};
use workers::{Replicas, Worker};

use std::sync::{Arc, Mutex};
use tandem_emulator::hypervisor::plan::FaultPlan;
use tandem_emulator::hypervisor::{FaultSnapshot, Hypervisor, Policy};
use tandem_emulator::linux::elf::LoadError;
use tandem_emulator::linux::{Host, LinuxConfig, LinuxMachine, LinuxSnapshot, Termination};
use tandem_emulator::memory::{page_digest_lanes, Fnv, Memory, PAGE_SHIFT, PAGE_SIZE};

/// Most replicas a world runs (a primary and two backups: enough for a majority).
pub const REPLICAS_MAX: usize = 3;
/// Instructions per epoch unless told otherwise: about a millisecond of guest time at the default rate.
pub const EPOCH_INSNS_DEFAULT: u64 = 1_000_000;
/// Epochs between full state comparisons unless told otherwise (see `FtConfig::verify_epochs`), at the
/// default epoch length; other lengths get as many as make `VERIFY_INSNS_DEFAULT` (`verify_epochs_for`).
pub const VERIFY_EPOCHS_DEFAULT: u64 = 64;
/// Instructions between full state comparisons unless told otherwise. A full hash reads every mapped page
/// (0.8 ms for 10.5 MB): counted in epochs, 100,000-instruction epochs spent 40% of their time on it.
pub const VERIFY_INSNS_DEFAULT: u64 = VERIFY_EPOCHS_DEFAULT * EPOCH_INSNS_DEFAULT;

/// The default `FtConfig::verify_epochs` for epochs of `epoch_insns`: a full comparison every
/// `VERIFY_INSNS_DEFAULT` instructions (epochs that end early at their outputs make them more frequent).
pub fn verify_epochs_for(epoch_insns: u64) -> u64 {
    assert!(epoch_insns > 0, "an epoch of no instructions");
    (VERIFY_INSNS_DEFAULT / epoch_insns).max(1)
}
/// Most lines of the world's event list (mismatches, resyncs, failovers); the counters go on past it.
pub const EVENTS_MAX: usize = 1000;
/// Most calls to `Hypervisor::run` within one epoch (each call ends at the epoch's end, the guest's end, or a
/// divergence, so two suffice; the limit only guards against a loop that makes no progress).
const RUN_CALLS_MAX: u32 = 1000;

/// Who decides, on a mismatch, which replica was right.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arbiter {
    /// The primary is always right (VMware FT's and Remus's assumption): a fault in the primary goes unnoticed
    /// as a fault and is copied to the backups.
    TrustPrimary,
    /// A majority of three, else a re-execution of the epoch from the last agreed checkpoint.
    ReExecute,
}

#[derive(Clone, Debug)]
pub struct FtConfig {
    /// Instructions per epoch: replicas are compared, and output released, at each epoch's end.
    pub epoch_insns: u64,
    /// Ends an epoch early, right after the syscall that made this many outputs in it (stdout and stderr
    /// writes, file changes: `FtHost::held`), so that output waits less for its release. A function of each
    /// replica's own execution, so healthy replicas end together and a faulty one that ends elsewhere
    /// mismatches. None: epochs end at `epoch_insns` only.
    pub epoch_outputs: Option<usize>,
    /// The run stops at this icount if the guest has not finished.
    pub instructions_max: u64,
    pub arbiter: Arbiter,
    /// Every this many epochs (and at every mismatch) the replicas' full state hashes are compared and, when
    /// they agree, the state becomes the checkpoint that re-executions start from. Between them only the pages
    /// written in each epoch are digested; a fault elsewhere is caught at the next full comparison or when it
    /// reaches output, whichever is first, and is re-executed from the last verified checkpoint, which it cannot
    /// be in.
    pub verify_epochs: u64,
    /// Runs each backup on a host thread of its own beside the primary (they follow its log as it grows), or
    /// all replicas one after another on the calling thread. The results are identical.
    pub threads: bool,
    /// With `threads`: the primary runs the next epoch while the backups run and compare the previous one
    /// (at most `ahead::RUN_AHEAD_EPOCHS` epochs uncompared), and is rewound on a mismatch. Output is released
    /// as late as ever (when its epoch is agreed); the results are identical either way. Off by default:
    /// lockstep measured faster (BENCHMARKS.md).
    pub run_ahead: bool,
}

impl Default for FtConfig {
    fn default() -> Self {
        FtConfig {
            epoch_insns: EPOCH_INSNS_DEFAULT,
            epoch_outputs: None,
            instructions_max: u64::MAX,
            arbiter: Arbiter::ReExecute,
            verify_epochs: VERIFY_EPOCHS_DEFAULT,
            threads: true,
            run_ahead: false,
        }
    }
}

/// The memory faults one replica meets (the others run fault-free unless given their own).
#[derive(Clone, Debug, Default)]
pub struct ReplicaFaults {
    pub plan: FaultPlan,
    /// Keys the replica's "faults.mem" stream.
    pub fault_seed: u64,
}

/// What the world did, for the report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FtStats {
    pub epochs: u64,
    /// Epochs whose end compared the replicas' full state hashes (periodic, and at mismatches).
    pub verifications: u64,
    /// Epochs at whose end the live replicas did not all agree.
    pub mismatches: u64,
    /// Epochs re-executed from a checkpoint to decide a mismatch.
    pub reexecutions: u64,
    /// Replicas that had the right state installed.
    pub resyncs: u64,
    /// Guest pages that differed from the right state at the resyncs, and the bytes moved (those pages plus the
    /// kernel state that a snapshot copies).
    pub pages_moved: u64,
    pub bytes_moved: u64,
    /// Per replica: the epochs in which it was found wrong (a replica that only followed a wrong primary's log
    /// is resynced but not counted).
    pub wrong: Vec<u64>,
    /// Replicas dropped because a fault killed them.
    pub failovers: u64,
    pub released_writes: u64,
    pub released_bytes: u64,
    /// Of the released writes, the file changes (writes and truncations of guest files) and their bytes.
    pub released_file_changes: u64,
    pub released_file_bytes: u64,
    /// Output latency: instructions from each released write to its release (the end of its epoch).
    pub latency_insns_sum: u64,
    pub latency_insns_max: u64,
    /// One line per mismatch, resync and failover, in order (at most `EVENTS_MAX`).
    pub events: Vec<String>,
}

impl FtStats {
    fn note(&mut self, line: String) {
        if self.events.len() < EVENTS_MAX {
            self.events.push(line);
        }
    }

    /// Mean output latency in instructions (0 without output).
    pub fn latency_insns_mean(&self) -> u64 {
        self.latency_insns_sum
            .checked_div(self.released_writes)
            .unwrap_or(0)
    }
}

/// How a world's run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FtEnd {
    /// The agreed guest finished.
    Finished(Termination),
    /// The instruction limit came first.
    Limit { icount: u64 },
}

/// What one replica did in one epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Outcome {
    held: Vec<HeldWrite>,
    icount: u64,
    termination: Option<Termination>,
    /// The registers and the incremental digest of the memory written (`epoch_digest`); 0 for a re-execution.
    digest: u64,
    /// The full state hash, when this epoch's end compares them (`full_hash`).
    full: Option<u64>,
    diverged: Option<String>,
    /// The log position it reached.
    position: usize,
}

impl Outcome {
    fn agrees(&self, other: &Outcome) -> bool {
        self.diverged.is_none()
            && other.diverged.is_none()
            && self.icount == other.icount
            && self.same_state(other)
            && self.termination == other.termination
            && self.held == other.held
    }

    /// The full hashes when both have one, else the incremental digests.
    fn same_state(&self, other: &Outcome) -> bool {
        match (self.full, other.full) {
            (Some(a), Some(b)) => a == b,
            _ => self.digest == other.digest,
        }
    }

    /// Why this outcome is not `right`.
    fn difference(&self, right: &Outcome) -> String {
        if let Some(why) = &self.diverged {
            return format!("diverged from the log {why}");
        }
        if self.termination != right.termination {
            let end = |t: &Option<Termination>| match t {
                None => "running".to_string(),
                Some(t) => t
                    .diagnostic()
                    .unwrap_or_else(|| format!("exit {}", t.exit_status())),
            };
            return format!(
                "ended differently ({} instead of {})",
                end(&self.termination),
                end(&right.termination)
            );
        }
        if self.held != right.held {
            return "output differs".into();
        }
        if self.icount != right.icount {
            return format!("stopped at icount {}", self.icount);
        }
        match self.full {
            Some(h) => format!("state differs (hash {h:#018x})"),
            None => format!("state differs (digest {:#018x})", self.digest),
        }
    }

    /// A fault killed this replica: a signal ended it that did not end the right execution.
    fn killed(&self, right: &Outcome) -> bool {
        matches!(self.termination, Some(Termination::Signaled { .. }))
            && self.termination != right.termination
    }
}

/// Where the right state of an epoch is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Replica(usize),
    Reexecution,
}

impl Source {
    fn name(self) -> String {
        match self {
            Source::Replica(j) => format!("replica {j}"),
            Source::Reexecution => "the re-execution".into(),
        }
    }
}

/// Closes a log when dropped (see `SharedLog::set_open`).
struct CloseOnDrop<'a>(&'a SharedLog);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.set_open(false);
    }
}

struct Replica<L: Host> {
    hv: Hypervisor<FtHost<L>>,
    /// The digest of the pages this replica wrote, brought up to date at each epoch's end (it follows the
    /// replica's dirty pages with cursors of its own, so other consumers may follow them too).
    digest: MemoryDigest,
    alive: bool,
}

impl<L: Host> Replica<L> {
    /// Runs to the epoch's end (see `run_epoch`) and digests what it wrote, and, when the epoch's end will
    /// compare the full states (`full`), its full state too, on the thread that ran it.
    fn run_epoch(&mut self, end: u64, log_start: usize, full: bool) -> Outcome {
        assert_eq!(self.hv.guest.host.cursor.position, log_start);
        let mut o = run_epoch(&mut self.hv, end);
        o.digest = epoch_digest(&mut self.hv.guest, &mut self.digest);
        o.full = full.then(|| full_hash(&mut self.hv.guest));
        o
    }
}

/// The last state whose full hash every live replica agreed on: one copy serves every replica. Re-executions
/// start here, so a fault that no incremental digest saw is not in it.
struct Checkpoint {
    guest: LinuxSnapshot,
    cursor: Cursor,
    icount: u64,
    /// The leader's fault state there: a primary that ran ahead is re-run from here (`Rewind::Rerun`). A
    /// failover or a resync happens only at a mismatch, whose full comparison makes a new checkpoint, so the
    /// leader is the same and was not corrected since.
    faults: FaultSnapshot,
    leader: usize,
}

/// N replicas of one guest, the log they share and the live host behind it.
pub struct World<L: Host> {
    replicas: Replicas<L>,
    leader: usize,
    /// The fresh copy that re-executes an epoch (no faults).
    scratch: Hypervisor<FtHost<L>>,
    log: Arc<SharedLog>,
    live: SharedLive<L>,
    checkpoint: Checkpoint,
    /// Epochs since the checkpoint.
    unverified_epochs: u64,
    config: FtConfig,
    stats: FtStats,
    /// Every replica at the first mismatch, before any was corrected.
    first_mismatch: Option<MismatchView>,
    /// `unverified_epochs` as it will be once the epochs the primary ran ahead are compared (ahead.rs).
    lead_unverified: u64,
    /// Times the primary was put back to an epoch it had run past, from a snapshot and by a re-run (not in
    /// `FtStats`: the run is the same without running ahead).
    rewinds: [u64; 2],
}

/// Whether every live replica's outcome agrees with the leader's.
fn agreed(alive: &[usize], outcomes: &[Option<Outcome>], leader: usize) -> bool {
    let outcome = |i: usize| outcomes[i].as_ref().expect("every live replica ran");
    alive.iter().all(|&i| outcome(i).agrees(outcome(leader)))
}

/// Where an epoch started and where it ends.
#[derive(Clone, Copy, Debug)]
struct EpochStart {
    end: u64,
    /// The log's end (the primary's position) at the epoch's start.
    log_start: usize,
    icount: u64,
}

/// What puts the primary back at the end of an epoch it ran past before the epoch was compared (ahead.rs).
enum Rewind {
    /// Its state there: a copy-on-write snapshot of its guest, the hypervisor's fault state and its host
    /// cursor. Kept only at the ends whose settling compares full states (they become checkpoints), since a
    /// snapshot costs in proportion to the pages mapped.
    Snapshot {
        guest: Box<LinuxSnapshot>,
        faults: Box<FaultSnapshot>,
        cursor: Cursor,
    },
    /// Its cursor there (`icount`): it is re-run to there from the checkpoint, from the log and with the fault
    /// state it had at the checkpoint, which reaches the same state (the run is a function of them).
    Rerun { icount: u64, cursor: Cursor },
}

impl Rewind {
    /// The primary's host cursor at the epoch's end.
    fn cursor(&self) -> &Cursor {
        match self {
            Rewind::Snapshot { cursor, .. } | Rewind::Rerun { cursor, .. } => cursor,
        }
    }
}

/// Runs one replica (or the re-execution) to the epoch's end, its end, or a divergence from the log.
fn run_epoch<L: Host>(hv: &mut Hypervisor<FtHost<L>>, end: u64) -> Outcome {
    hv.guest.host.held.clear();
    let mut calls = 0;
    while hv.guest.termination().is_none()
        && hv.guest.icount() < end
        && hv.guest.host.cursor.diverged.is_none()
        && !hv.guest.host.epoch_output_reached()
    {
        calls += 1;
        assert!(calls <= RUN_CALLS_MAX, "an epoch that makes no progress");
        hv.run(end - hv.guest.icount());
    }
    let guest = &mut hv.guest;
    Outcome {
        held: std::mem::take(&mut guest.host.held),
        icount: guest.icount(),
        termination: guest.termination().cloned(),
        digest: 0,
        full: None,
        diverged: guest.host.cursor.diverged.clone(),
        position: guest.host.cursor.position,
    }
}

/// Runs a replica (or the re-execution) to `target` through as many epochs as it takes (`run_epoch` ends one
/// early at `FtConfig::epoch_outputs`), for catching up with output that was released already. The outcome
/// is the last epoch's.
fn run_epochs_to<L: Host>(hv: &mut Hypervisor<FtHost<L>>, target: u64) -> Outcome {
    loop {
        let o = run_epoch(hv, target);
        if o.icount >= target || o.termination.is_some() || o.diverged.is_some() {
            return o;
        }
    }
}

/// A replica's full state for the comparisons between replicas: what `LinuxMachine::state_hash` covers (every
/// thread's registers, every address space's pages), each page read whole, with `page_digest_lanes` (about
/// four times faster than the digest a trace stores; this one is only compared within the run).
fn full_hash<H: Host>(guest: &mut LinuxMachine<H>) -> u64 {
    let mut h = Fnv::new();
    h.write_u64(guest.registers_hash());
    for (key, mem) in guest.address_spaces_mut() {
        h.write_u64(key as u64);
        h.write_u64(mem.digest_with(page_digest_lanes));
    }
    h.finish()
}

/// The registers and the memory of every address space, digesting only the pages written since the previous
/// call (a restored guest's pages all again: the caller resets `digest` after a restore). Equal for two replicas
/// that ran the same epochs from the same state, and different when their registers, or a page that either of
/// them wrote, differ; a page changed without a write (a bit flip) is seen only once it is written again.
fn epoch_digest<H: Host>(guest: &mut LinuxMachine<H>, digest: &mut MemoryDigest) -> u64 {
    let icount = guest.icount();
    let live = guest.space_keys();
    let mut h = Fnv::new();
    h.write_u64(guest.registers_hash());
    let mut memory = 0;
    for (key, mem) in guest.address_spaces_mut() {
        memory = digest.update_space(mem, key, &live, icount).0;
    }
    h.write_u64(memory);
    h.finish()
}

/// The pages of `from`'s address space that `to` must receive to equal it, by address: mapped in one only,
/// mapped with other permissions, or holding other bytes (a shared frame is compared by pointer first).
fn pages_differing(to: &Memory, from: &Memory) -> Vec<u64> {
    let a = to.page_entries();
    let b = from.page_entries();
    let (mut i, mut j) = (0, 0);
    let mut pages = Vec::new();
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(pa), Some(pb)) if pa.0 == pb.0 => {
                let same_bytes = match (to.frame_bytes(pa.1), from.frame_bytes(pb.1)) {
                    (Some(x), Some(y)) => std::ptr::eq(x, y) || x == y,
                    _ => false,
                };
                if pa.2 != pb.2 || !same_bytes {
                    pages.push(pa.0 << PAGE_SHIFT);
                }
                i += 1;
                j += 1;
            }
            (Some(pa), Some(pb)) if pa.0 < pb.0 => {
                pages.push(pa.0 << PAGE_SHIFT);
                i += 1;
            }
            (Some(_), Some(pb)) | (None, Some(pb)) => {
                pages.push(pb.0 << PAGE_SHIFT);
                j += 1;
            }
            (Some(pa), None) => {
                pages.push(pa.0 << PAGE_SHIFT);
                i += 1;
            }
            (None, None) => unreachable!(),
        }
    }
    pages
}

/// A fault-free world between two epochs, from which worlds with faults start (`World::from_snapshot`): a warm
/// FT campaign starts each run from the fault-free world's latest snapshot before its first fault, since until
/// then the run is the fault-free one, epoch for epoch (its stats included).
pub struct WorldSnapshot<L: Host> {
    /// Every replica's guest and host cursor (they agree: the world was fault-free).
    guest: LinuxSnapshot,
    cursor: Cursor,
    replicas: usize,
    log: Log,
    live: LiveSource<L>,
    checkpoint: LinuxSnapshot,
    checkpoint_cursor: Cursor,
    checkpoint_icount: u64,
    unverified_epochs: u64,
    stats: FtStats,
}

impl<L: Host> WorldSnapshot<L> {
    pub fn icount(&self) -> u64 {
        self.guest.icount()
    }
}

/// Where a world's re-execution checkpoint comes from: its replicas' start, or a snapshot's checkpoint.
type CheckpointStart<'a> = Option<(&'a LinuxSnapshot, &'a Cursor)>;

impl<L: Host + Send> World<L> {
    /// Loads one replica per entry of `faults` (the first is the primary) and the re-execution copy.
    pub fn new(
        config: FtConfig,
        linux: LinuxConfig,
        program: Arc<[u8]>,
        live: L,
        faults: Vec<ReplicaFaults>,
        policy: Policy,
    ) -> Result<World<L>, LoadError> {
        let log = SharedLog::new(Log::default());
        let live = Arc::new(Mutex::new(LiveSource::new(live)));
        let cursor = Cursor::new(linux.seed);
        let load = |host| LinuxMachine::new(linux.clone(), &program, host);
        World::assemble(
            config,
            &program,
            (log, live, cursor),
            faults,
            policy,
            &load,
            None,
        )
    }

    /// A world whose replicas start from `snap` (taken from a fault-free world of as many replicas and the same
    /// configuration), each with its own faults: until the first of them it runs as that world ran.
    pub fn from_snapshot(
        config: FtConfig,
        linux: LinuxConfig,
        program: Arc<[u8]>,
        snap: &WorldSnapshot<L>,
        faults: Vec<ReplicaFaults>,
        policy: Policy,
    ) -> Result<World<L>, LoadError>
    where
        L: Clone,
    {
        assert_eq!(faults.len(), snap.replicas, "a snapshot of another world");
        let log = SharedLog::new(snap.log.clone());
        let live = Arc::new(Mutex::new(snap.live.clone()));
        let shared = (log, live, snap.cursor.clone());
        let start = |host| {
            Ok(LinuxMachine::from_snapshot(
                linux.clone(),
                &snap.guest,
                host,
            ))
        };
        let checkpoint = Some((&snap.checkpoint, &snap.checkpoint_cursor));
        let mut world =
            World::assemble(config, &program, shared, faults, policy, &start, checkpoint)?;
        assert_eq!(world.checkpoint.icount, snap.checkpoint_icount);
        // The digests start from the snapshot's pages, as the fault-free world's held them there: a page not
        // written after it keeps that digest, so a flip in it is caught when the cold world would catch it
        // (at output or the next full comparison), not at the first epoch's end.
        for r in world.replicas.iter_mut() {
            epoch_digest(&mut r.hv.guest, &mut r.digest);
        }
        world.unverified_epochs = snap.unverified_epochs;
        world.stats = snap.stats.clone();
        Ok(world)
    }

    /// A snapshot of this world between epochs, for `from_snapshot`; only of a world that has had no mismatch.
    pub fn snapshot(&mut self) -> WorldSnapshot<L>
    where
        L: Clone,
    {
        assert!(
            self.stats.mismatches == 0
                && self.alive().len() == self.replicas.len()
                && self.leader == 0,
            "a snapshot of a world that met a fault"
        );
        // The checkpoint is copied through the re-execution copy, which is restored before every use.
        self.scratch.guest.restore(&self.checkpoint.guest);
        let checkpoint = self.scratch.guest.snapshot();
        let primary = &mut self.replicas[0].hv.guest;
        WorldSnapshot {
            guest: primary.snapshot(),
            cursor: primary.host.cursor.clone(),
            replicas: self.replicas.len(),
            log: self.log.lock().clone(),
            live: self.live.lock().expect("no replica panicked").clone(),
            checkpoint,
            checkpoint_cursor: self.checkpoint.cursor.clone(),
            checkpoint_icount: self.checkpoint.icount,
            unverified_epochs: self.unverified_epochs,
            stats: self.stats.clone(),
        }
    }

    /// The replicas (each started by `start` with its host), the re-execution copy and the first checkpoint:
    /// the replicas' start, or `checkpoint`.
    fn assemble(
        config: FtConfig,
        program: &Arc<[u8]>,
        (log, live, cursor): (Arc<SharedLog>, SharedLive<L>, Cursor),
        faults: Vec<ReplicaFaults>,
        policy: Policy,
        start: &dyn Fn(FtHost<L>) -> Result<LinuxMachine<FtHost<L>>, LoadError>,
        checkpoint: CheckpointStart<'_>,
    ) -> Result<World<L>, LoadError> {
        assert!(
            (1..=REPLICAS_MAX).contains(&faults.len()),
            "a world of {} replicas",
            faults.len()
        );
        assert!(config.epoch_insns > 0, "an epoch of no instructions");
        assert!(config.epoch_outputs != Some(0), "an epoch of no outputs");
        let host = |leader| {
            let mut h = FtHost::new(log.clone(), live.clone(), leader, cursor.clone());
            h.epoch_outputs = config.epoch_outputs;
            h
        };
        let mut replicas = Vec::new();
        for (i, f) in faults.into_iter().enumerate() {
            let guest = start(host(i == 0))?;
            let hv = Hypervisor::with_guest(
                guest,
                program.clone(),
                f.plan,
                policy.clone(),
                f.fault_seed,
            )?;
            replicas.push(Replica {
                hv,
                digest: MemoryDigest::new(DigestScheme::Summed),
                alive: true,
            });
        }
        let scratch_guest = match checkpoint {
            None => start(host(true))?,
            Some((snap, _)) => {
                let config = replicas[0].hv.guest.config().clone();
                LinuxMachine::from_snapshot(config, snap, host(true))
            }
        };
        let mut scratch = Hypervisor::with_guest(
            scratch_guest,
            program.clone(),
            FaultPlan::default(),
            policy,
            0,
        )?;
        let checkpoint = match checkpoint {
            None => Checkpoint {
                guest: replicas[0].hv.guest.snapshot(),
                cursor: replicas[0].hv.guest.host.cursor.clone(),
                icount: replicas[0].hv.guest.icount(),
                faults: replicas[0].hv.snapshot_faults(),
                leader: 0,
            },
            // No fault is planned before the snapshot (see `from_snapshot`): the start's fault state holds there.
            Some((_, cursor)) => Checkpoint {
                guest: scratch.guest.snapshot(),
                cursor: cursor.clone(),
                icount: scratch.guest.icount(),
                faults: replicas[0].hv.snapshot_faults(),
                leader: 0,
            },
        };
        let stats = FtStats {
            wrong: vec![0; replicas.len()],
            ..FtStats::default()
        };
        Ok(World {
            replicas: Replicas::new(replicas),
            leader: 0,
            scratch,
            log,
            live,
            checkpoint,
            unverified_epochs: 0,
            config,
            stats,
            first_mismatch: None,
            lead_unverified: 0,
            rewinds: [0; 2],
        })
    }

    /// Compiles hot blocks to host code in every replica (the default) or interprets; results are identical.
    pub fn set_jit(&mut self, on: bool) {
        for r in self.replicas.iter_mut() {
            r.hv.guest.set_jit(on);
        }
        self.scratch.guest.set_jit(on);
    }

    pub fn stats(&self) -> &FtStats {
        &self.stats
    }

    /// The replica that holds the live host now.
    pub fn leader(&self) -> usize {
        self.leader
    }

    /// Replicas still running (not dropped).
    pub fn alive(&self) -> Vec<usize> {
        (0..self.replicas.len())
            .filter(|&i| self.replicas[i].alive)
            .collect()
    }

    /// The agreed guest's icount and state hash.
    pub fn icount(&self) -> u64 {
        self.replicas[self.leader].hv.guest.icount()
    }

    pub fn state_hash(&self) -> u64 {
        self.replicas[self.leader].hv.guest.state_hash()
    }

    /// The memory-fault report lines of replica `index` (it keeps them after a resync: they are its history).
    pub fn fault_reports(&self, index: usize) -> Vec<String> {
        self.replicas[index]
            .hv
            .reports()
            .iter()
            .map(|r| r.line())
            .collect()
    }

    /// A look at the live host (where the released output went).
    pub fn with_live<R>(&self, f: impl FnOnce(&L) -> R) -> R {
        f(&self.live.lock().expect("no replica panicked").inner)
    }

    /// The input log so far: the primary's inputs, as the trace's events.
    pub fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock()
    }

    /// Runs epochs until the agreed guest finishes or the instruction limit: with `FtConfig::threads`, each
    /// backup on a thread of its own kept for the whole run (workers.rs).
    pub fn run(&mut self) -> FtEnd {
        if !self.config.threads || self.replicas.len() == 1 {
            return self.run_epochs(&[]);
        }
        std::thread::scope(|scope| {
            // The leader is the first live replica, so backups are never replica 0.
            let workers: Vec<Option<Worker<L>>> = (0..self.replicas.len())
                .map(|i| (i > 0).then(|| Worker::spawn(scope)))
                .collect();
            if self.config.run_ahead {
                self.run_ahead(&workers)
            } else {
                self.run_epochs(&workers)
            }
        })
    }

    fn run_epochs(&mut self, workers: &[Option<Worker<L>>]) -> FtEnd {
        loop {
            if let Some(end) = self.ended() {
                return end;
            }
            self.epoch(self.next_epoch_end(), workers);
        }
    }

    /// Runs one epoch, every replica on the calling thread, or, when the run is over, says how it ended.
    pub fn step(&mut self) -> Option<FtEnd> {
        if let Some(end) = self.ended() {
            return Some(end);
        }
        self.epoch(self.next_epoch_end(), &[]);
        None
    }

    /// How the run ended, if it did: the agreed guest finished or reached the instruction limit.
    fn ended(&self) -> Option<FtEnd> {
        if let Some(t) = self.replicas[self.leader].hv.guest.termination() {
            return Some(FtEnd::Finished(t.clone()));
        }
        let icount = self.icount();
        (icount >= self.config.instructions_max).then_some(FtEnd::Limit { icount })
    }

    /// Whether the next epoch's end compares the full states on its period (`settle` also does at the last
    /// epoch and at mismatches, which cannot be foreseen): then each replica hashes its own on its thread.
    fn foresees_full_comparison(&self) -> bool {
        self.unverified_epochs + 1 >= self.config.verify_epochs
    }

    fn next_epoch_end(&self) -> u64 {
        self.icount()
            .saturating_add(self.config.epoch_insns)
            .min(self.config.instructions_max)
    }

    /// One epoch: every live replica runs to `end` (the primary first, extending the log), then they are
    /// compared (`settle`).
    fn epoch(&mut self, end: u64, workers: &[Option<Worker<L>>]) {
        let start = EpochStart {
            end,
            log_start: self.log.lock().end(),
            icount: self.icount(),
        };
        let alive = self.alive();
        let full = self.foresees_full_comparison();
        let outcomes = self.run_replicas(end, start.log_start, full, workers);
        self.settle(start, &alive, outcomes, None);
    }

    /// The end of an epoch that every live replica ran: they are compared, the right outcome is chosen, wrong
    /// replicas are resynchronised or dropped, and the agreed output is released. An epoch whose full state
    /// hashes were compared becomes the new checkpoint.
    ///
    /// `ahead`: the primary's state at the epoch's end when it has run on past it (ahead.rs); the primary is
    /// rewound to it first if the epoch needs more of it than its outcome (a mismatch, or a full comparison
    /// it did not foresee), and from then on everything happens as if it had never run ahead. Returns whether
    /// it was rewound (its later epochs are void).
    fn settle(
        &mut self,
        start: EpochStart,
        alive: &[usize],
        mut outcomes: Vec<Option<Outcome>>,
        mut ahead: Option<Rewind>,
    ) -> bool {
        let (end, log_start, start_icount) = (start.end, start.log_start, start.icount);
        let mut rewound = false;
        self.stats.epochs += 1;
        self.unverified_epochs += 1;
        // The last epoch compares the full state too, so that the agreed final state is the fault-free one.
        let last = end >= self.config.instructions_max
            || outcomes.iter().flatten().any(|o| o.termination.is_some());
        let verify = last || self.unverified_epochs >= self.config.verify_epochs;
        let leader = self.leader;
        let leader_full =
            move |o: &[Option<Outcome>]| o[leader].as_ref().is_some_and(|o| o.full.is_some());
        if verify && !leader_full(&outcomes) {
            rewound |= self.rewind(ahead.take());
        }
        if verify {
            self.hash_fully(alive, &mut outcomes);
        }
        if ahead.is_some() && !agreed(alive, &outcomes, self.leader) {
            rewound |= self.rewind(ahead.take());
        }
        // The primary foresaw the full comparisons of the epochs it ran past (`World::run_primary`).
        assert!(
            ahead.is_none() || leader_full(&outcomes) == verify,
            "the primary foresaw the full comparisons wrongly"
        );
        let mismatches_before = self.stats.mismatches;
        let (source, truth) = self.decide(alive, &mut outcomes, start_icount, end);
        if self.first_mismatch.is_none() && self.stats.mismatches > mismatches_before {
            let view = self.mismatch_view(source, alive, &outcomes, &truth, start_icount);
            self.first_mismatch = Some(view);
        }
        match &ahead {
            // The log goes on with the primary's next epochs.
            Some(_) => assert!(
                source == Source::Replica(self.leader) && self.log.lock().end() >= truth.position
            ),
            None => self.adopt_log(source, &truth, log_start),
        }
        self.correct_wrong(source, alive, &outcomes, &truth);
        let cursor = match (source, &ahead) {
            (_, Some(r)) => r.cursor().clone(),
            (Source::Replica(j), None) => self.replicas[j].hv.guest.host.cursor.clone(),
            (Source::Reexecution, None) => self.scratch.guest.host.cursor.clone(),
        };
        assert!(cursor.diverged.is_none(), "a right execution that diverged");
        for &i in alive {
            if ahead.is_none() || i != self.leader {
                self.replicas[i].hv.guest.host.cursor = cursor.clone();
            }
        }
        self.fail_over();
        self.release(&truth);
        if let Some(full) = truth.full {
            // Every live replica holds the right state now: it agreed, or it was resynchronised.
            let (guest, faults) = match ahead {
                Some(Rewind::Snapshot { guest, faults, .. }) => (*guest, *faults),
                // An end it did not foresee comparing in full: it was rewound above.
                Some(Rewind::Rerun { .. }) => {
                    panic!("a primary run past a full comparison kept no snapshot")
                }
                None => {
                    let leader = &mut self.replicas[self.leader].hv;
                    debug_assert_eq!(full_hash(&mut leader.guest), full);
                    (leader.guest.snapshot(), leader.snapshot_faults())
                }
            };
            self.stats.verifications += 1;
            self.checkpoint = Checkpoint {
                icount: guest.icount(),
                guest,
                cursor,
                faults,
                leader: self.leader,
            };
            self.unverified_epochs = 0;
        }
        rewound
    }

    /// Resynchronises or drops every live replica whose outcome is not the right one.
    fn correct_wrong(
        &mut self,
        source: Source,
        alive: &[usize],
        outcomes: &[Option<Outcome>],
        truth: &Outcome,
    ) {
        let outcome = |i: usize| outcomes[i].as_ref().expect("every live replica ran");
        let leader_wrong = !outcome(self.leader).agrees(truth);
        let mut snapshot = None;
        for &i in alive {
            let o = outcome(i);
            if o.agrees(truth) {
                continue;
            }
            let followed_wrong_primary = i != self.leader && leader_wrong && o.diverged.is_some();
            if !followed_wrong_primary {
                self.stats.wrong[i] += 1;
            }
            let why = o.difference(truth);
            let epoch = self.stats.epochs;
            if o.killed(truth) && self.alive().len() > 1 {
                self.replicas[i].alive = false;
                self.stats.failovers += 1;
                self.stats
                    .note(format!("epoch {epoch}: replica {i} {why}: dropped"));
                continue;
            }
            let snap = snapshot.get_or_insert_with(|| match source {
                Source::Replica(j) => self.replicas[j].hv.guest.snapshot(),
                Source::Reexecution => self.scratch.guest.snapshot(),
            });
            let from = match source {
                Source::Replica(j) => self.replicas[j].hv.guest.memory(),
                Source::Reexecution => self.scratch.guest.memory(),
            };
            let pages = pages_differing(self.replicas[i].hv.guest.memory(), from).len() as u64;
            let bytes = pages * PAGE_SIZE as u64 + snap.fixed_bytes() as u64;
            self.replicas[i].hv.guest.restore(snap);
            // The restored pages were not written, but the digest's cache holds the wrong replica's.
            self.replicas[i].digest.reset();
            self.stats.resyncs += 1;
            self.stats.pages_moved += pages;
            self.stats.bytes_moved += bytes;
            let whence = source.name();
            let blame = if followed_wrong_primary {
                " (it followed the wrong primary's log)"
            } else {
                ""
            };
            self.stats.note(format!(
                "epoch {epoch}: replica {i} {why}{blame}: resynchronised from {whence}, {pages} pages, {bytes} bytes"
            ));
        }
    }

    /// Puts the primary back at the end of the epoch being settled, which it had run past (`ahead`: None when
    /// it was put back already): its later epochs' log entries go, and its digest starts over (the rewound
    /// state agrees with the right one whenever it is kept: its full hash was compared). Returns whether it
    /// was put back.
    fn rewind(&mut self, ahead: Option<Rewind>) -> bool {
        let Some(r) = ahead else {
            return false;
        };
        let c = &self.checkpoint;
        // Where the primary's state comes from, and the icount to re-run to from there (None: it is there).
        let (guest, faults, rerun_to) = match &r {
            Rewind::Snapshot { guest, faults, .. } => (&**guest, &**faults, None),
            Rewind::Rerun { icount, .. } => {
                assert!(
                    c.icount <= *icount && c.leader == self.leader,
                    "a checkpoint after the epoch rewound to, or of another leader"
                );
                (&c.guest, &c.faults, Some(*icount))
            }
        };
        let cursor = r.cursor().clone();
        let primary = &mut self.replicas[self.leader];
        primary.hv.guest.restore_keeping_code(guest);
        primary.hv.restore_faults(faults);
        self.log.lock().truncate(cursor.position);
        if let Some(icount) = rerun_to {
            primary.hv.guest.host.cursor = c.cursor.clone();
            // Every input it reads is in the log, so the live source is not asked.
            let rerun = run_epochs_to(&mut primary.hv, icount);
            assert!(
                rerun.icount == icount
                    && rerun.position == cursor.position
                    && rerun.diverged.is_none()
                    && rerun.termination.is_none(),
                "the primary re-run from the checkpoint did not come back where it had been"
            );
        }
        primary.hv.guest.host.cursor = cursor;
        self.rewinds[usize::from(rerun_to.is_some())] += 1;
        primary.hv.guest.host.held.clear();
        primary.digest.reset();
        true
    }

    /// Times the primary was put back to an epoch it had run past, to settle a mismatch there: from a
    /// snapshot kept there, and by a re-run from the checkpoint.
    pub fn rewinds(&self) -> [u64; 2] {
        self.rewinds
    }

    /// Every live replica against the right execution (see mismatch.rs).
    fn mismatch_view(
        &self,
        source: Source,
        alive: &[usize],
        outcomes: &[Option<Outcome>],
        truth: &Outcome,
        start_icount: u64,
    ) -> MismatchView {
        let right = match source {
            Source::Replica(j) => &self.replicas[j].hv.guest,
            Source::Reexecution => &self.scratch.guest,
        };
        let mut replicas = vec![mismatch::view(source.name(), right, right, None)];
        for &i in alive {
            if source == Source::Replica(i) {
                continue;
            }
            let o = outcomes[i].as_ref().expect("every live replica ran");
            let difference = (!o.agrees(truth)).then(|| o.difference(truth));
            let guest = &self.replicas[i].hv.guest;
            replicas.push(mismatch::view(
                format!("replica {i}"),
                guest,
                right,
                difference,
            ));
        }
        MismatchView {
            epoch: self.stats.epochs,
            icount_start: start_icount,
            right: source.name(),
            replicas,
        }
    }

    /// Every replica at the first mismatch of the run so far, before any was corrected.
    pub fn first_mismatch(&self) -> Option<&MismatchView> {
        self.first_mismatch.as_ref()
    }

    /// The shared input log (to record the agreed execution from it: `record_agreed`).
    pub fn shared_log(&self) -> Arc<SharedLog> {
        self.log.clone()
    }

    /// Runs every live replica to `end`: the backups on their threads (`workers`, one per replica index but
    /// the first) beside the primary, waiting for its log where they catch up with it, or, without workers,
    /// one after another with the primary first.
    fn run_replicas(
        &mut self,
        end: u64,
        log_start: usize,
        full: bool,
        workers: &[Option<Worker<L>>],
    ) -> Vec<Option<Outcome>> {
        let leader = self.leader;
        let mut outcomes: Vec<Option<Outcome>> = vec![None; self.replicas.len()];
        let backups: Vec<usize> = self.alive().into_iter().filter(|&i| i != leader).collect();
        let threaded = !workers.is_empty() && !backups.is_empty();
        self.log.set_open(threaded);
        if !threaded {
            outcomes[leader] = Some(self.replicas[leader].run_epoch(end, log_start, full));
            for i in backups {
                outcomes[i] = Some(self.replicas[i].run_epoch(end, log_start, full));
            }
            return outcomes;
        }
        let worker = |i: usize| workers[i].as_ref().expect("a worker for every backup");
        for &i in &backups {
            worker(i).start(&mut self.replicas, i, end, log_start, full);
        }
        {
            // Closed even if the primary panics, so that no backup waits for it forever.
            let _close = CloseOnDrop(&self.log);
            outcomes[leader] = Some(self.replicas[leader].run_epoch(end, log_start, false));
        }
        if full {
            // After the log is closed, so that no backup waits for the hash.
            let primary = &mut self.replicas[leader].hv.guest;
            outcomes[leader].as_mut().expect("the primary ran").full = Some(full_hash(primary));
        }
        for i in backups {
            outcomes[i] = Some(worker(i).finish(&mut self.replicas, i));
        }
        outcomes
    }

    /// Gives every live replica's outcome its full state hash (once per epoch).
    fn hash_fully(&mut self, alive: &[usize], outcomes: &mut [Option<Outcome>]) {
        for &i in alive {
            let o = outcomes[i].as_mut().expect("every live replica ran");
            if o.full.is_none() {
                o.full = Some(full_hash(&mut self.replicas[i].hv.guest));
            }
        }
    }

    /// The right outcome of the epoch and where its state is. A mismatch is decided on full state hashes.
    fn decide(
        &mut self,
        alive: &[usize],
        outcomes: &mut [Option<Outcome>],
        start_icount: u64,
        end: u64,
    ) -> (Source, Outcome) {
        if agreed(alive, outcomes, self.leader) {
            return (
                Source::Replica(self.leader),
                outcomes[self.leader].clone().expect("ran"),
            );
        }
        self.stats.mismatches += 1;
        self.hash_fully(alive, outcomes);
        let outcome = |i: usize| outcomes[i].as_ref().expect("every live replica ran");
        let primary = outcome(self.leader);
        if alive.len() >= 3 {
            for &i in alive {
                let votes = alive
                    .iter()
                    .filter(|&&j| outcome(j).agrees(outcome(i)))
                    .count();
                if votes * 2 > alive.len() {
                    return (Source::Replica(i), outcome(i).clone());
                }
            }
        }
        if self.config.arbiter == Arbiter::TrustPrimary {
            return (Source::Replica(self.leader), primary.clone());
        }
        self.stats.reexecutions += 1;
        (Source::Reexecution, self.reexecute(start_icount, end))
    }

    /// Runs the epoch again on the fresh copy, from the checkpoint (the last verified state, which may be some
    /// epochs back: the copy first catches up to `start_icount`, its output there already released), as a leader
    /// with a log of its own: its inputs come from the live source, not from a primary that may have been wrong.
    fn reexecute(&mut self, start_icount: u64, end: u64) -> Outcome {
        let blobs = self.log.lock().blobs().clone();
        let base = self.checkpoint.cursor.position;
        let s = &mut self.scratch.guest;
        s.restore(&self.checkpoint.guest);
        s.host
            .set_log(SharedLog::new(Log::starting_at(base, blobs)));
        s.host.leader = true;
        s.host.cursor = self.checkpoint.cursor.clone();
        assert!(self.checkpoint.icount <= start_icount);
        if self.checkpoint.icount < start_icount {
            let caught_up = run_epochs_to(&mut self.scratch, start_icount);
            assert!(
                caught_up.icount == start_icount && caught_up.termination.is_none(),
                "a fault-free re-execution that did not reach the epoch's start"
            );
        }
        let mut o = run_epoch(&mut self.scratch, end);
        o.full = Some(full_hash(&mut self.scratch.guest));
        o
    }

    /// From now on the log holds what the right execution read: the re-execution's log (from the checkpoint
    /// on), or the shared log up to where the right replica stopped reading.
    fn adopt_log(&mut self, source: Source, truth: &Outcome, log_start: usize) {
        let mut log = self.log.lock();
        match source {
            Source::Reexecution => {
                let base = self.checkpoint.cursor.position;
                assert!(base <= log_start);
                log.truncate(base);
                log.append_from(&self.scratch.guest.host.log().lock());
            }
            Source::Replica(_) => log.truncate(truth.position),
        }
        assert_eq!(log.end(), truth.position);
    }

    /// A dropped primary hands the live host to the first survivor.
    fn fail_over(&mut self) {
        if self.replicas[self.leader].alive {
            return;
        }
        let next = self
            .alive()
            .first()
            .copied()
            .expect("the last replica is never dropped");
        self.replicas[self.leader].hv.guest.host.leader = false;
        self.replicas[next].hv.guest.host.leader = true;
        let line = format!(
            "epoch {}: replica {next} promoted to primary in place of replica {}",
            self.stats.epochs, self.leader
        );
        self.stats.note(line);
        self.leader = next;
    }

    /// Passes the agreed writes on to the live host, in order, and counts their latency.
    fn release(&mut self, truth: &Outcome) {
        let mut live = self.live.lock().expect("no replica panicked");
        for w in &truth.held {
            // The live host's own failure (a closed pipe) is not the guest's: its writes were answered already.
            let _ = match &w.target {
                OutputTarget::Stdout => live.inner.write_stdout(&w.bytes),
                OutputTarget::Stderr => live.inner.write_stderr(&w.bytes),
                file => {
                    if let Some((path, change)) = file.file_output(&w.bytes) {
                        live.inner.file_output(path, change);
                    }
                    self.stats.released_file_changes += 1;
                    self.stats.released_file_bytes += w.bytes.len() as u64;
                    Ok(())
                }
            };
            let latency = truth.icount.saturating_sub(w.icount);
            self.stats.released_writes += 1;
            self.stats.released_bytes += w.bytes.len() as u64;
            self.stats.latency_insns_sum += latency;
            self.stats.latency_insns_max = self.stats.latency_insns_max.max(latency);
        }
    }
}
