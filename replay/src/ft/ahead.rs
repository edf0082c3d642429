//! The primary runs ahead (`FtConfig::run_ahead`, with backups on threads): it runs epoch k+1 while the
//! backups run epoch k and the world compares it, instead of waiting at every epoch's end for the comparison.
//!
//! Output commit is unchanged: the primary's output of an epoch is held with its outcome until the backups
//! have run that epoch and the world has settled it (`World::settle`), so only the release waits, never the
//! primary. The backups run epoch k against the log sealed at the primary's end of k (`SharedLog::seal`): they
//! read nothing of k+1, so they get the answers they would get in lockstep.
//!
//! At the end of each epoch it runs on past, the primary keeps what puts it back there (`Rewind`). When the
//! settling of an epoch needs the primary's state there (a mismatch, or a full comparison it did not foresee, as
//! when a fault ended a backup), it is rewound, its later epochs are void (their held output dropped, their log
//! entries cut), and everything goes on exactly as in lockstep. The primary foresees the periodic full
//! comparisons: at those ends it hashes its state and keeps a copy-on-write snapshot of itself (the next
//! checkpoint if they agree); at every other end only its cursor, and a rewind re-runs it from the checkpoint
//! (at most `FtConfig::verify_epochs` epochs back) through the log, with its fault state from there. A
//! snapshot per epoch cost about 80 us (in proportion to the pages mapped); a re-run is paid only on a
//! mismatch.
//!
//! Invariants: at most `RUN_AHEAD_EPOCHS` epochs run by the primary are unsettled; the backups run one epoch
//! at a time, the oldest unsettled one, so a settled epoch never needs a backup put back; the released output,
//! the stats, the events, the first mismatch's view, the final state and the log are the same as in lockstep
//! (tests.rs `the_primary_running_ahead_is_rewound_and_changes_nothing`).

use super::workers::Worker;
use super::{full_hash, EpochStart, FtEnd, Outcome, Rewind, SharedLog, World};
use std::collections::VecDeque;
use tandem_emulator::linux::Host;

/// Most epochs the primary has run that are not settled yet: the one the backups run and the next.
pub const RUN_AHEAD_EPOCHS: usize = 2;

/// An epoch the primary has run and the world has not settled.
struct Ahead {
    start: EpochStart,
    /// The live replicas (unchanged until a settle: one that changes them voids the later epochs).
    alive: Vec<usize>,
    /// The primary's outcome.
    outcome: Outcome,
    /// None when the primary ended in it (it runs no further).
    rewind: Option<Rewind>,
}

/// Seals the log at its end (where the primary stopped: it is the one that extends it) when dropped, even if
/// the primary panics, so that no backup waits for it forever.
struct SealOnDrop<'a>(&'a SharedLog);

impl Drop for SealOnDrop<'_> {
    fn drop(&mut self) {
        let end = self.0.lock().end();
        self.0.seal(end);
    }
}

impl<L: Host + Send> World<L> {
    /// Runs epochs until the agreed guest finishes or the instruction limit, the primary running ahead of the
    /// comparisons, each backup on its thread (`workers`).
    pub(super) fn run_ahead(&mut self, workers: &[Option<Worker<L>>]) -> FtEnd {
        let mut pending: VecDeque<Ahead> = VecDeque::new();
        // Whether the backups are running the oldest pending epoch.
        let mut backups_busy = false;
        loop {
            let alive = match pending.front() {
                Some(a) => a.alive.clone(),
                None => self.alive(),
            };
            if alive.len() == 1 {
                // No backup left: nothing to run ahead of.
                if let Some(end) = self.ended() {
                    return end;
                }
                self.epoch(self.next_epoch_end(), workers);
                continue;
            }
            if let (false, Some(front)) = (backups_busy, pending.front()) {
                // The primary ran this epoch already: its log is complete up to the seal.
                self.log.seal(front.outcome.position);
                let full = front.outcome.full.is_some();
                self.start_backups(&alive, front.start, full, workers);
                backups_busy = true;
            }
            if pending.len() < RUN_AHEAD_EPOCHS && !self.primary_finished() {
                let beside = pending.is_empty();
                let start = EpochStart {
                    end: self.next_epoch_end(),
                    log_start: self.log.lock().end(),
                    icount: self.icount(),
                };
                if beside {
                    // Nothing to settle first: the backups run this epoch beside the primary, following its log.
                    self.log.set_open(true);
                    let full = self.foresees_full_comparison();
                    self.start_backups(&alive, start, full, workers);
                    backups_busy = true;
                }
                let (outcome, rewind) = self.run_primary(start, beside);
                pending.push_back(Ahead {
                    start,
                    alive,
                    outcome,
                    rewind,
                });
                continue;
            }
            let Some(front) = pending.pop_front() else {
                return self.ended().expect("a primary that finished");
            };
            assert!(
                backups_busy,
                "an epoch settled that the backups did not run"
            );
            let mut outcomes = self.finish_backups(&front.alive, workers);
            backups_busy = false;
            outcomes[self.leader] = Some(front.outcome);
            // Only an epoch the primary ran past needs rewinding to.
            let rewind = front.rewind.filter(|_| !pending.is_empty());
            if self.settle(front.start, &front.alive, outcomes, rewind) {
                pending.clear();
            }
        }
    }

    /// The primary ended or reached the instruction limit: it runs no more epochs.
    fn primary_finished(&self) -> bool {
        let primary = &self.replicas[self.leader].hv.guest;
        primary.termination().is_some() || primary.icount() >= self.config.instructions_max
    }

    /// Lends every live backup to its thread for the epoch from `start` (hashing its full state at the end
    /// when `full`).
    fn start_backups(
        &mut self,
        alive: &[usize],
        start: EpochStart,
        full: bool,
        workers: &[Option<Worker<L>>],
    ) {
        for &i in alive.iter().filter(|&&i| i != self.leader) {
            let worker = workers[i].as_ref().expect("a worker for every backup");
            worker.start(&mut self.replicas, i, start.end, start.log_start, full);
        }
    }

    /// Waits for every live backup's epoch; the primary's slot is left empty.
    fn finish_backups(
        &mut self,
        alive: &[usize],
        workers: &[Option<Worker<L>>],
    ) -> Vec<Option<Outcome>> {
        let mut outcomes = vec![None; self.replicas.len()];
        for &i in alive.iter().filter(|&&i| i != self.leader) {
            let worker = workers[i].as_ref().expect("a worker for every backup");
            outcomes[i] = Some(worker.finish(&mut self.replicas, i));
        }
        outcomes
    }

    /// Runs the primary through the epoch from `start` (sealing the log at its end for backups running
    /// `beside` it), hashes its full state if the epoch's settling will compare it, and keeps what rewinds it
    /// to the epoch's end if it will run on.
    fn run_primary(&mut self, start: EpochStart, beside: bool) -> (Outcome, Option<Rewind>) {
        if beside {
            // Every earlier epoch is settled.
            self.lead_unverified = self.unverified_epochs;
        }
        let leader = self.leader;
        let log = self.log.clone();
        let seal = beside.then(|| SealOnDrop(&log));
        self.lead_unverified += 1;
        // As `settle` decides: every `verify_epochs`-th epoch and the last are compared in full.
        let periodic = self.lead_unverified >= self.config.verify_epochs;
        let mut outcome = self.replicas[leader].run_epoch(start.end, start.log_start, false);
        // Sealed before hashing, so that backups beside it need not wait for the hash.
        drop(seal);
        let finished = self.primary_finished();
        if periodic || finished {
            outcome.full = Some(full_hash(&mut self.replicas[leader].hv.guest));
            self.lead_unverified = 0;
        }
        let hv = &mut self.replicas[leader].hv;
        let cursor = hv.guest.host.cursor.clone();
        let rewind = match (finished, outcome.full) {
            (true, _) => None,
            // The end of a full comparison becomes the checkpoint if it agrees: keep the state itself.
            (false, Some(_)) => Some(Rewind::Snapshot {
                guest: Box::new(hv.guest.snapshot()),
                faults: Box::new(hv.snapshot_faults()),
                cursor,
            }),
            (false, None) => Some(Rewind::Rerun {
                icount: hv.guest.icount(),
                cursor,
            }),
        };
        (outcome, rewind)
    }
}
