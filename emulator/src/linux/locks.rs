//! Advisory file locks between the guest's processes, kept per file (inode) in `FileData::locks`: POSIX record
//! locks (fcntl(2) F_SETLK, F_SETLKW, F_GETLK) owned by a process, open file description locks (F_OFD_SETLK,
//! F_OFD_SETLKW, F_OFD_GETLK) owned by a description, and flock(2) locks owned by a description.
//!
//! Linux's semantics (fs/locks.c, fcntl(2), flock(2)): POSIX and OFD locks share one list and conflict with each
//! other, flock locks are a separate name space. Two range locks conflict when their owners differ, their byte
//! ranges overlap and one is a write lock. Setting a lock replaces the owner's locks over its range (splitting
//! them) and merges it with the owner's adjacent or overlapping locks of the same type; unlocking splits. A
//! process's POSIX locks on a file go when it closes any descriptor of that file or exits (fd.rs); a
//! description's OFD and flock locks go when its last descriptor is closed (`OpenFile`'s drop).
//!
//! Invariants: a file's range locks never overlap for one owner and never conflict between owners; each owner's
//! locks are contiguous in the list and sorted by start (the list order F_GETLK's answer follows). Lock owner ids
//! of descriptions are drawn from the file's own counter, so they are plain values that snapshots copy with the
//! file and its descriptions, never host addresses.

use super::ids::Pid;

/// Who holds a lock: a process (POSIX record locks) or an open file description (OFD and flock locks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockOwner {
    Process(Pid),
    Description(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockKind {
    Read,
    Write,
}

/// A byte-range lock: bytes `start..=end` (`end == u64::MAX`: to the end of the file, however it grows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RangeLock {
    pub owner: LockOwner,
    pub kind: LockKind,
    pub start: u64,
    pub end: u64,
}

impl RangeLock {
    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.start <= end && start <= self.end
    }

    fn conflicts(&self, owner: LockOwner, kind: LockKind, start: u64, end: u64) -> bool {
        self.owner != owner
            && self.overlaps(start, end)
            && (self.kind == LockKind::Write || kind == LockKind::Write)
    }
}

/// Most range locks one file holds: a named limit (Linux bounds them by memory); past it a new lock is ENOLCK.
pub const RANGE_LOCKS_MAX: usize = 4096;

/// A file would hold more than `RANGE_LOCKS_MAX` range locks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooManyLocks;

/// The locks of one file.
#[derive(Clone, Debug, Default)]
pub struct FileLocks {
    /// POSIX and OFD locks, each owner's contiguous and sorted by start.
    ranges: Vec<RangeLock>,
    /// flock(2) locks: the description's id and the lock's kind (shared or exclusive).
    flocks: Vec<(u64, LockKind)>,
    /// The last id given to a description that locked this file (0: none yet).
    description_ids: u64,
}

impl FileLocks {
    /// A new owner id for a description of this file (its first OFD or flock lock).
    pub fn new_description_id(&mut self) -> u64 {
        self.description_ids += 1;
        self.description_ids
    }

    /// The first lock (in list order) that conflicts with `kind` over `start..=end` for `owner`.
    pub fn conflict(
        &self,
        owner: LockOwner,
        kind: LockKind,
        start: u64,
        end: u64,
    ) -> Option<RangeLock> {
        self.ranges
            .iter()
            .find(|l| l.conflicts(owner, kind, start, end))
            .copied()
    }

    /// Sets (`Some(kind)`) or removes (`None`) `owner`'s lock over `start..=end`. The caller checked for
    /// conflicts. Nothing changes when the file would hold more than `RANGE_LOCKS_MAX` locks (ENOLCK).
    pub fn set(
        &mut self,
        owner: LockOwner,
        kind: Option<LockKind>,
        start: u64,
        end: u64,
    ) -> Result<(), TooManyLocks> {
        assert!(start <= end, "lock range {start}..={end}");
        let mut mine: Vec<RangeLock> = Vec::new();
        let mut others: Vec<RangeLock> = Vec::new();
        let mut at = None;
        for (i, l) in self.ranges.iter().enumerate() {
            if l.owner == owner {
                at.get_or_insert(i);
                mine.push(*l);
            } else {
                others.push(*l);
            }
        }
        // Cut the owner's locks out of the range: what lies outside it stays, split in two if need be.
        let mut kept: Vec<RangeLock> = Vec::new();
        for l in mine {
            if !l.overlaps(start, end) {
                kept.push(l);
                continue;
            }
            if l.start < start {
                kept.push(RangeLock {
                    end: start - 1,
                    ..l
                });
            }
            if l.end > end {
                kept.push(RangeLock {
                    start: end + 1,
                    ..l
                });
            }
        }
        if let Some(kind) = kind {
            // Merge with the owner's locks of the same kind that touch the range.
            let (mut s, mut e) = (start, end);
            kept.retain(|l| {
                let touches = l.kind == kind
                    && (l.end.checked_add(1) == Some(s) || e.checked_add(1) == Some(l.start));
                if touches {
                    s = s.min(l.start);
                    e = e.max(l.end);
                }
                !touches
            });
            kept.push(RangeLock {
                owner,
                kind,
                start: s,
                end: e,
            });
        }
        kept.sort_by_key(|l| l.start);
        if others.len() + kept.len() > RANGE_LOCKS_MAX {
            return Err(TooManyLocks);
        }
        // The owner's group stays where it was in the list (a new owner's goes last).
        let at = at.unwrap_or(others.len()).min(others.len());
        others.splice(at..at, kept);
        self.ranges = others;
        debug_assert!(self.invariants_hold());
        Ok(())
    }

    /// Removes every range lock of `owner` (a process closing the file or exiting, a description's last close).
    pub fn release(&mut self, owner: LockOwner) {
        self.ranges.retain(|l| l.owner != owner);
        if let LockOwner::Description(id) = owner {
            self.flocks.retain(|(d, _)| *d != id);
        }
    }

    /// Whether description `id` may take a flock lock of `kind`: no other description holds an exclusive one,
    /// nor, for an exclusive request, any.
    pub fn flock_free(&self, id: u64, kind: LockKind) -> bool {
        self.flocks
            .iter()
            .all(|(d, k)| *d == id || (*k == LockKind::Read && kind == LockKind::Read))
    }

    /// Sets (`Some`) or removes (`None`) description `id`'s flock lock.
    pub fn flock_set(&mut self, id: u64, kind: Option<LockKind>) {
        self.flocks.retain(|(d, _)| *d != id);
        if let Some(kind) = kind {
            self.flocks.push((id, kind));
        }
    }

    /// Whether description `id` holds a flock lock.
    pub fn holds_flock(&self, id: u64) -> bool {
        self.flocks.iter().any(|(d, _)| *d == id)
    }

    fn invariants_hold(&self) -> bool {
        self.ranges.iter().enumerate().all(|(i, a)| {
            self.ranges[i + 1..].iter().all(|b| {
                if a.owner == b.owner {
                    !a.overlaps(b.start, b.end)
                } else {
                    !a.conflicts(b.owner, b.kind, b.start, b.end)
                }
            })
        })
    }

    /// The range locks, in list order (tests and F_GETLK).
    pub fn ranges(&self) -> &[RangeLock] {
        &self.ranges
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: LockOwner = LockOwner::Process(Pid(1));
    const B: LockOwner = LockOwner::Process(Pid(2));
    const R: LockKind = LockKind::Read;
    const W: LockKind = LockKind::Write;

    fn spans(l: &FileLocks, owner: LockOwner) -> Vec<(u64, u64, LockKind)> {
        l.ranges()
            .iter()
            .filter(|x| x.owner == owner)
            .map(|x| (x.start, x.end, x.kind))
            .collect()
    }

    /// The cases fcntl(2) describes: a lock over the middle of another of the other type splits it in three;
    /// adjacent locks of one type merge; an unlock in the middle splits; locks of one owner never conflict.
    #[test]
    fn setting_splits_and_merges_an_owners_locks() {
        let mut l = FileLocks::default();
        l.set(A, Some(R), 0, 99).unwrap();
        l.set(A, Some(W), 40, 59).unwrap();
        assert_eq!(spans(&l, A), [(0, 39, R), (40, 59, W), (60, 99, R)]);
        l.set(A, Some(R), 40, 59).unwrap();
        assert_eq!(spans(&l, A), [(0, 99, R)]);
        l.set(A, None, 10, 19).unwrap();
        assert_eq!(spans(&l, A), [(0, 9, R), (20, 99, R)]);
        l.set(A, Some(R), 100, u64::MAX).unwrap();
        assert_eq!(spans(&l, A), [(0, 9, R), (20, u64::MAX, R)]);
        assert_eq!(l.conflict(B, R, 0, 5), None);
        assert_eq!(l.conflict(B, W, 12, 15), None);
        assert_eq!(l.conflict(B, W, 5, 12).map(|x| x.start), Some(0));
        l.release(A);
        assert!(l.ranges().is_empty());
    }

    #[test]
    fn flock_is_shared_or_exclusive_per_description() {
        let mut l = FileLocks::default();
        let (d1, d2) = (l.new_description_id(), l.new_description_id());
        assert!(l.flock_free(d1, R));
        l.flock_set(d1, Some(R));
        assert!(l.flock_free(d2, R));
        assert!(!l.flock_free(d2, W));
        assert!(l.flock_free(d1, W), "a description converts its own lock");
        l.release(LockOwner::Description(d1));
        assert!(l.flock_free(d2, W));
    }
}
