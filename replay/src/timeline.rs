//! The timeline of a replay: copy-on-write checkpoints of the whole machine, placed so that memory stays
//! bounded and any icount is a bounded re-execution away, and the moves of reverse execution built on them.
//!
//! Placement (as rr does it): while the replay moves forward, a checkpoint is taken every `interval_base`
//! instructions; then the older ones are thinned so that, going back from the newest, the gap between kept
//! checkpoints doubles after every `per_level` of them. The count stays logarithmic in the run's length, the
//! recent past is dense, and the start of the run (icount 0) is always kept. Reaching icount `t` restores the
//! latest checkpoint at or before `t` and runs forward.
//!
//! The end of a history: a run killed by a CPU fault (SIGSEGV, SIGILL, SIGFPE, a machine check's SIGBUS) ends on
//! an instruction that does not retire, so at the recording's last icount the guest is still alive, stopped on
//! that instruction. `finish_recorded_end` lets it take that last step, which ends it as recorded without
//! retiring anything; moves by icount never take it by themselves (both states have the same icount).

use crate::replay::{ReplaySnapshot, Replayer};
use std::collections::BTreeMap;
use tandem_emulator::linux::Progress;
use tandem_emulator::memory::DirtyCursor;

/// Default spacing of new checkpoints.
pub const INTERVAL_BASE_DEFAULT: u64 = 1 << 20;
/// Checkpoints kept at each spacing before it doubles.
pub const PER_LEVEL_DEFAULT: usize = 4;

pub struct Timeline {
    pub replayer: Replayer,
    checkpoints: BTreeMap<u64, ReplaySnapshot>,
    pub interval_base: u64,
    pub per_level: usize,
    /// Guest frames written since each checkpoint was taken (what it holds privately), by icount.
    private_frames: BTreeMap<u64, usize>,
    /// The timeline's own dirty cursor, taken at the last checkpoint or restore (other consumers have theirs).
    dirty: DirtyCursor,
}

impl Timeline {
    pub fn new(mut replayer: Replayer) -> Timeline {
        let first = replayer.snapshot();
        let dirty = replayer.hv.guest.memory_mut().dirty_cursor();
        let mut checkpoints = BTreeMap::new();
        checkpoints.insert(0, first);
        Timeline {
            replayer,
            checkpoints,
            interval_base: INTERVAL_BASE_DEFAULT,
            per_level: PER_LEVEL_DEFAULT,
            private_frames: BTreeMap::new(),
            dirty,
        }
    }

    pub fn icount(&self) -> u64 {
        self.replayer.hv.guest.icount()
    }

    /// The end of the recorded history.
    pub fn icount_end(&self) -> u64 {
        self.replayer.icount_end
    }

    pub fn finished(&self) -> bool {
        self.replayer.hv.guest.termination().is_some()
    }

    /// Whether the guest is at the end of the history, still alive, in a recording whose guest ended there
    /// (not at the instruction limit, not in a trace cut short): the last step, which retires nothing, is left
    /// to take (`finish_recorded_end`).
    pub fn recorded_end_pending(&self) -> bool {
        let ended_here = self.replayer.summary.as_ref().is_some_and(|s| {
            !s.stopped_by_limit && s.icount == self.icount_end() && self.replayer.damage.is_none()
        });
        ended_here && self.icount() == self.icount_end() && !self.finished()
    }

    /// Takes the last step of a history whose guest ended on an instruction that does not retire (see the
    /// module doc); true when the guest has ended. A replay that retires the instruction instead has left the
    /// recorded run: it is put back at the end of the history, alive, and the answer is false.
    pub fn finish_recorded_end(&mut self) -> bool {
        if !self.recorded_end_pending() {
            return self.finished();
        }
        self.replayer.hv.run(1);
        if self.icount() != self.icount_end() {
            let end = self.icount_end();
            self.seek(end);
            return false;
        }
        self.finished()
    }

    /// Runs forward to `target` (or the end of history), taking checkpoints on the way.
    pub fn forward_to(&mut self, target: u64) -> Progress {
        let target = target.min(self.icount_end());
        loop {
            let icount = self.icount();
            if icount >= target {
                return Progress::BudgetExhausted;
            }
            let next = ((icount / self.interval_base) + 1) * self.interval_base;
            let stop = next.min(target);
            if self.replayer.hv.run(stop - icount) == Progress::Finished {
                return Progress::Finished;
            }
            if self.icount() % self.interval_base == 0 {
                self.take_checkpoint();
            }
        }
    }

    fn take_checkpoint(&mut self) {
        let icount = self.icount();
        if self.checkpoints.contains_key(&icount) {
            return;
        }
        // The frames written since the previous checkpoint are the ones it now holds privately.
        let dirty = self.frames_written_since_checkpoint().unwrap_or(0);
        if let Some((&previous, _)) = self.checkpoints.range(..icount).next_back() {
            *self.private_frames.entry(previous).or_default() += dirty;
        }
        let snap = self.replayer.snapshot();
        // The next checkpoint counts only the frames written from here on.
        self.dirty = self.replayer.hv.guest.memory_mut().dirty_cursor();
        self.checkpoints.insert(icount, snap);
        self.thin();
    }

    /// Drops checkpoints so that, from the newest back, the kept ones' gaps double every `per_level`.
    fn thin(&mut self) {
        let icounts: Vec<u64> = self.checkpoints.keys().rev().copied().collect();
        let mut gap = self.interval_base;
        let mut kept_at_level = 0;
        let mut last_kept = u64::MAX;
        for icount in icounts {
            if icount == 0 {
                break;
            }
            if last_kept == u64::MAX || last_kept - icount >= gap {
                last_kept = icount;
                kept_at_level += 1;
                if kept_at_level == self.per_level {
                    kept_at_level = 0;
                    gap = gap.saturating_mul(2);
                }
            } else {
                self.checkpoints.remove(&icount);
                if let Some(frames) = self.private_frames.remove(&icount) {
                    // The frames pass to the checkpoint before it (they are still shared with the live memory).
                    if let Some((&before, _)) = self.checkpoints.range(..icount).next_back() {
                        *self.private_frames.entry(before).or_default() += frames;
                    }
                }
            }
        }
    }

    /// Guest frames written since the last checkpoint taken or restored (None: the running address space is
    /// not the one the timeline's cursor was taken on).
    pub fn frames_written_since_checkpoint(&self) -> Option<usize> {
        self.replayer
            .hv
            .guest
            .memory()
            .dirty_since(&self.dirty)
            .map(|d| d.len())
    }

    /// Goes to `target`, backwards by restoring the latest checkpoint at or before it.
    pub fn seek(&mut self, target: u64) -> Progress {
        let target = target.min(self.icount_end());
        if target < self.icount() {
            let key = *self
                .checkpoints
                .range(..=target)
                .next_back()
                .expect("the checkpoint at icount 0 is never dropped")
                .0;
            // Taken out and put back so that the restore can borrow the replayer mutably.
            let snap = self.checkpoints.remove(&key).expect("present");
            self.replayer.restore(&snap);
            self.dirty = self.replayer.hv.guest.memory_mut().dirty_cursor();
            self.checkpoints.insert(key, snap);
        }
        self.forward_to(target)
    }

    /// The checkpoints: (icount, approximate bytes held privately).
    pub fn checkpoint_list(&self) -> Vec<(u64, usize)> {
        self.checkpoints
            .iter()
            .map(|(&icount, (snap, _, _))| {
                let frames = self.private_frames.get(&icount).copied().unwrap_or(0);
                (icount, snap.fixed_bytes() + frames * 4096)
            })
            .collect()
    }

    /// The latest checkpoint strictly before `icount`.
    pub fn checkpoint_before(&self, icount: u64) -> Option<u64> {
        self.checkpoints
            .range(..icount)
            .next_back()
            .map(|(&k, _)| k)
    }
}
