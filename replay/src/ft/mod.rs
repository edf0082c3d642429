//! Fault-tolerant guest pairs and triples: N replicas of one guest run epoch by epoch, compared at the output,
//! and only the output they agree on is released (../shared/DESIGN.md, "ft").
//!
//! The primary (the leader) runs with the live host; every input it takes is appended to a log that the other
//! replicas replay (host.rs), as VMware FT ships its log to the backup. Each replica holds its stdout and stderr
//! writes for the epoch; at the epoch's end the world compares the replicas' outcomes: the writes, how the guest
//! ended, the instruction count and the state hash (registers and memory). Comparing the state and not only the
//! output is what makes an agreed checkpoint trustworthy: a fault that corrupts memory without changing this
//! epoch's output is caught in the epoch where it happened, so the checkpoint every replica restarts from is
//! one that all of them reached.
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
//! the arbiter decided); the released output never depends on which replica was faulty. Replicas run one after
//! another on one host thread, each against the log, so how they are interleaved changes nothing.
//!
//! What it must not do: read the clock or draw randomness (the guests' entropy is seeded; the live clock and live
//! entropy of `tandem record` are not supported here), or pass any output on before it is agreed.

mod host;
#[cfg(test)]
mod tests;

pub use host::{Cursor, FtHost, HeldWrite, LiveSource, Log};

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use tandem_emulator::hypervisor::plan::FaultPlan;
use tandem_emulator::hypervisor::{Hypervisor, Policy};
use tandem_emulator::linux::elf::LoadError;
use tandem_emulator::linux::{Host, LinuxConfig, LinuxSnapshot, Termination};
use tandem_emulator::memory::{Memory, PAGE_SIZE};

/// Most replicas a world runs (a primary and two backups: enough for a majority).
pub const REPLICAS_MAX: usize = 3;
/// Instructions per epoch unless told otherwise: about a millisecond of guest time at the default rate.
pub const EPOCH_INSNS_DEFAULT: u64 = 1_000_000;
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
    /// The run stops at this icount if the guest has not finished.
    pub instructions_max: u64,
    pub arbiter: Arbiter,
}

impl Default for FtConfig {
    fn default() -> Self {
        FtConfig {
            epoch_insns: EPOCH_INSNS_DEFAULT,
            instructions_max: u64::MAX,
            arbiter: Arbiter::ReExecute,
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
    state_hash: u64,
    diverged: Option<String>,
    /// The log position it reached.
    position: usize,
}

impl Outcome {
    fn agrees(&self, other: &Outcome) -> bool {
        self.diverged.is_none()
            && other.diverged.is_none()
            && self.icount == other.icount
            && self.state_hash == other.state_hash
            && self.termination == other.termination
            && self.held == other.held
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
        format!("state differs (hash {:#018x})", self.state_hash)
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

struct Replica<L: Host> {
    hv: Hypervisor<FtHost<L>>,
    alive: bool,
}

/// The last agreed state: one copy serves every replica, since agreeing replicas have the same state hash.
struct Checkpoint {
    guest: LinuxSnapshot,
    cursor: Cursor,
}

/// N replicas of one guest, the log they share and the live host behind it.
pub struct World<L: Host> {
    replicas: Vec<Replica<L>>,
    leader: usize,
    /// The fresh copy that re-executes an epoch (no faults).
    scratch: Hypervisor<FtHost<L>>,
    log: Rc<RefCell<Log>>,
    live: Rc<RefCell<LiveSource<L>>>,
    checkpoint: Checkpoint,
    config: FtConfig,
    stats: FtStats,
}

/// Runs one replica (or the re-execution) to the epoch's end, its end, or a divergence from the log.
fn run_epoch<L: Host>(hv: &mut Hypervisor<FtHost<L>>, end: u64) -> Outcome {
    hv.guest.host.held.clear();
    let mut calls = 0;
    while hv.guest.termination().is_none()
        && hv.guest.icount() < end
        && hv.guest.host.cursor.diverged.is_none()
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
        state_hash: guest.state_hash(),
        diverged: guest.host.cursor.diverged.clone(),
        position: guest.host.cursor.position,
    }
}

/// The pages of `from`'s address space that `to` must receive to equal it: mapped in one only, mapped with
/// other permissions, or holding other bytes (a shared frame is compared by pointer first).
fn pages_differing(to: &Memory, from: &Memory) -> u64 {
    let a = to.page_entries();
    let b = from.page_entries();
    let (mut i, mut j, mut count) = (0, 0, 0);
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(pa), Some(pb)) if pa.0 == pb.0 => {
                let same_bytes = match (to.frame_bytes(pa.1), from.frame_bytes(pb.1)) {
                    (Some(x), Some(y)) => std::ptr::eq(x, y) || x == y,
                    _ => false,
                };
                if pa.2 != pb.2 || !same_bytes {
                    count += 1;
                }
                i += 1;
                j += 1;
            }
            (Some(pa), Some(pb)) if pa.0 < pb.0 => {
                count += 1;
                i += 1;
            }
            (Some(_), Some(_)) | (None, Some(_)) => {
                count += 1;
                j += 1;
            }
            (Some(_), None) => {
                count += 1;
                i += 1;
            }
            (None, None) => unreachable!(),
        }
    }
    count
}

impl<L: Host> World<L> {
    /// Loads one replica per entry of `faults` (the first is the primary) and the re-execution copy.
    pub fn new(
        config: FtConfig,
        linux: LinuxConfig,
        program: Arc<[u8]>,
        live: L,
        faults: Vec<ReplicaFaults>,
        policy: Policy,
    ) -> Result<World<L>, LoadError> {
        assert!(
            (1..=REPLICAS_MAX).contains(&faults.len()),
            "a world of {} replicas",
            faults.len()
        );
        assert!(config.epoch_insns > 0, "an epoch of no instructions");
        let log = Rc::new(RefCell::new(Log::default()));
        let live = Rc::new(RefCell::new(LiveSource::new(live)));
        let seed = linux.seed;
        let host = |leader| FtHost::new(log.clone(), live.clone(), leader, Cursor::new(seed));
        let mut replicas = Vec::new();
        for (i, f) in faults.into_iter().enumerate() {
            let hv = Hypervisor::new(
                linux.clone(),
                program.clone(),
                host(i == 0),
                f.plan,
                policy.clone(),
                f.fault_seed,
            )?;
            replicas.push(Replica { hv, alive: true });
        }
        let scratch = Hypervisor::new(linux, program, host(true), FaultPlan::default(), policy, 0)?;
        let checkpoint = Checkpoint {
            guest: replicas[0].hv.guest.snapshot(),
            cursor: replicas[0].hv.guest.host.cursor.clone(),
        };
        let stats = FtStats {
            wrong: vec![0; replicas.len()],
            ..FtStats::default()
        };
        Ok(World {
            replicas,
            leader: 0,
            scratch,
            log,
            live,
            checkpoint,
            config,
            stats,
        })
    }

    /// Compiles hot blocks to host code in every replica (the default) or interprets; results are identical.
    pub fn set_jit(&mut self, on: bool) {
        for r in &mut self.replicas {
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
        f(&self.live.borrow().inner)
    }

    /// The input log so far: the primary's inputs, as the trace's events.
    pub fn log(&self) -> std::cell::Ref<'_, Log> {
        self.log.borrow()
    }

    /// Runs epochs until the agreed guest finishes or the instruction limit.
    pub fn run(&mut self) -> FtEnd {
        loop {
            if let Some(t) = self.replicas[self.leader].hv.guest.termination() {
                return FtEnd::Finished(t.clone());
            }
            let icount = self.icount();
            if icount >= self.config.instructions_max {
                return FtEnd::Limit { icount };
            }
            let end = icount
                .saturating_add(self.config.epoch_insns)
                .min(self.config.instructions_max);
            self.epoch(end);
        }
    }

    /// One epoch: every live replica runs to `end` (the primary first, extending the log), then they are
    /// compared, the right outcome is chosen, wrong replicas are resynchronised or dropped, the agreed output
    /// is released and the new state checkpointed.
    fn epoch(&mut self, end: u64) {
        let log_start = self.log.borrow().end();
        assert_eq!(self.checkpoint.cursor.position, log_start);
        let alive = self.alive();
        let mut outcomes: Vec<Option<Outcome>> = vec![None; self.replicas.len()];
        let order =
            std::iter::once(self.leader).chain(alive.iter().copied().filter(|&i| i != self.leader));
        for i in order {
            outcomes[i] = Some(run_epoch(&mut self.replicas[i].hv, end));
        }
        self.stats.epochs += 1;
        let outcome = |i: usize| outcomes[i].as_ref().expect("every live replica ran");
        let (source, truth) = self.decide(&alive, &outcomes, log_start, end);
        self.adopt_log(source, &truth, log_start);
        let leader_wrong = !outcome(self.leader).agrees(&truth);
        let mut snapshot = None;
        for &i in &alive {
            let o = outcome(i);
            if o.agrees(&truth) {
                continue;
            }
            let followed_wrong_primary = i != self.leader && leader_wrong && o.diverged.is_some();
            if !followed_wrong_primary {
                self.stats.wrong[i] += 1;
            }
            let why = o.difference(&truth);
            let epoch = self.stats.epochs;
            if o.killed(&truth) && self.alive().len() > 1 {
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
            let pages = pages_differing(self.replicas[i].hv.guest.memory(), from);
            let bytes = pages * PAGE_SIZE as u64 + snap.fixed_bytes() as u64;
            self.replicas[i].hv.guest.restore(snap);
            self.stats.resyncs += 1;
            self.stats.pages_moved += pages;
            self.stats.bytes_moved += bytes;
            let whence = match source {
                Source::Replica(j) => format!("replica {j}"),
                Source::Reexecution => "the re-execution".into(),
            };
            let blame = if followed_wrong_primary {
                " (it followed the wrong primary's log)"
            } else {
                ""
            };
            self.stats.note(format!(
                "epoch {epoch}: replica {i} {why}{blame}: resynchronised from {whence}, {pages} pages, {bytes} bytes"
            ));
        }
        let cursor = match source {
            Source::Replica(j) => self.replicas[j].hv.guest.host.cursor.clone(),
            Source::Reexecution => self.scratch.guest.host.cursor.clone(),
        };
        assert!(cursor.diverged.is_none(), "a right execution that diverged");
        for &i in &alive {
            self.replicas[i].hv.guest.host.cursor = cursor.clone();
        }
        self.fail_over();
        self.release(&truth);
        let leader = &mut self.replicas[self.leader].hv.guest;
        debug_assert_eq!(leader.state_hash(), truth.state_hash);
        self.checkpoint = Checkpoint {
            guest: leader.snapshot(),
            cursor,
        };
    }

    /// The right outcome of the epoch and where its state is.
    fn decide(
        &mut self,
        alive: &[usize],
        outcomes: &[Option<Outcome>],
        log_start: usize,
        end: u64,
    ) -> (Source, Outcome) {
        let outcome = |i: usize| outcomes[i].as_ref().expect("every live replica ran");
        let primary = outcome(self.leader);
        if alive.iter().all(|&i| outcome(i).agrees(primary)) {
            return (Source::Replica(self.leader), primary.clone());
        }
        self.stats.mismatches += 1;
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
        (Source::Reexecution, self.reexecute(log_start, end))
    }

    /// Runs the epoch again from the last agreed checkpoint on the fresh copy, as a leader with a log of its
    /// own: its inputs come from the live source, not from a primary that may have been wrong.
    fn reexecute(&mut self, log_start: usize, end: u64) -> Outcome {
        let blobs = self.log.borrow().blobs().clone();
        let s = &mut self.scratch.guest;
        s.restore(&self.checkpoint.guest);
        s.host
            .set_log(Rc::new(RefCell::new(Log::starting_at(log_start, blobs))));
        s.host.leader = true;
        s.host.cursor = self.checkpoint.cursor.clone();
        run_epoch(&mut self.scratch, end)
    }

    /// From now on the log holds what the right execution read: the re-execution's log, or the shared log up
    /// to where the right replica stopped reading.
    fn adopt_log(&mut self, source: Source, truth: &Outcome, log_start: usize) {
        let mut log = self.log.borrow_mut();
        match source {
            Source::Reexecution => {
                log.truncate(log_start);
                log.append_from(&self.scratch.guest.host.log().borrow());
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
        let mut live = self.live.borrow_mut();
        for w in &truth.held {
            // The live host's own failure (a closed pipe) is not the guest's: its writes were answered already.
            let _ = match w.fd {
                1 => live.inner.write_stdout(&w.bytes),
                _ => live.inner.write_stderr(&w.bytes),
            };
            let latency = truth.icount.saturating_sub(w.icount);
            self.stats.released_writes += 1;
            self.stats.released_bytes += w.bytes.len() as u64;
            self.stats.latency_insns_sum += latency;
            self.stats.latency_insns_max = self.stats.latency_insns_max.max(latency);
        }
    }
}
