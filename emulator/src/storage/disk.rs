//! The simulated disk under a volume: the durable image (what survives a crash now) and the operations that
//! completed in the page cache but are not durable yet, in completion order. The guest reads the page cache
//! (the volume's overlay files, linux/vfs.rs); only a crash would show the difference, so the model answers
//! "what may a crash leave" from these two explicit parts (crash states are the durable image plus an allowed
//! subset of the pending operations).
//!
//! Persistence rules, after Linux's (fsync(2), fdatasync(2), sync_file_range(2), open(2) O_SYNC/O_DSYNC/O_DIRECT,
//! sync(2)) and the pessimistic model that crash-consistency work (ALICE, CrashMonkey) holds applications to:
//! - write-back: a write or truncate is pending until the file is synced; fsync and fdatasync make all of that
//!   file's pending data and size durable (the inode with it: a file's size is part of what fsync promises);
//! - a write through a descriptor opened O_SYNC, O_DSYNC or O_DIRECT is durable when it returns, with the
//!   file's writes before it (the model keeps each file's writes in order);
//! - sync_file_range with SYNC_FILE_RANGE_WAIT_AFTER makes durable that file's pending data up to the last
//!   write overlapping the range (in order);
//! - names (create, link, mkdir, symlink, unlink, rmdir, rename, chmod) are durable only once a directory they
//!   touch is fsynced; metadata is journaled in order (as ext4's and XFS's journals do), so that fsync makes
//!   durable every name operation up to the last one touching the directory;
//! - sync and syncfs make everything durable.
//!
//! Limits: at most `PENDING_OPS_MAX` operations wait; beyond, the oldest is written back, as the kernel's flusher
//! threads would (dirty_expire_centisecs), in order.

use super::image::{parent_of, VolumeImage};
use super::{FileId, IoOp};

/// Most operations that wait to become durable; the oldest is written back beyond it.
pub const PENDING_OPS_MAX: usize = 1 << 16;

#[derive(Clone, Debug)]
pub struct Disk {
    durable: VolumeImage,
    /// INVARIANT: only operations that change content (`IoOp::changes_content`), in completion order.
    pending: Vec<IoOp>,
}

/// The file a data operation (write, truncate) changes.
fn data_file(op: &IoOp) -> Option<FileId> {
    match op {
        IoOp::Write { file, .. } | IoOp::Truncate { file, .. } => Some(*file),
        _ => None,
    }
}

/// The directories a name operation changes (relative paths).
fn touched_dirs(op: &IoOp) -> Vec<&[u8]> {
    match op {
        IoOp::Create { path, .. }
        | IoOp::Link { path, .. }
        | IoOp::Mkdir { path, .. }
        | IoOp::Symlink { path, .. }
        | IoOp::Remove { path }
        | IoOp::Chmod { path, .. } => vec![parent_of(path)],
        IoOp::Rename { from, to } => vec![parent_of(from), parent_of(to)],
        _ => Vec::new(),
    }
}

impl Disk {
    /// A disk whose durable content is `base` (the volume as read from the host).
    pub fn new(base: VolumeImage) -> Disk {
        Disk {
            durable: base,
            pending: Vec::new(),
        }
    }

    /// What survives a crash now.
    pub fn durable(&self) -> &VolumeImage {
        &self.durable
    }

    /// The operations not yet durable, in completion order.
    pub fn pending(&self) -> &[IoOp] {
        &self.pending
    }

    /// What the guest sees: the durable image with every pending operation applied.
    pub fn cached(&self) -> VolumeImage {
        let mut im = self.durable.clone();
        for op in &self.pending {
            im.apply(op);
        }
        im
    }

    /// One crash state: the durable image with the pending operations `survives` picks applied in completion
    /// order (a crash after the kernel wrote back those and not the others). Every subset is a state some
    /// write-back order could leave under the pessimistic model; `survives = |i, _| i < k` gives the states of an
    /// ordered file system (a prefix of the pending operations). The base of crash-consistency search (issue 14,
    /// part 5).
    pub fn crash_state(&self, mut survives: impl FnMut(usize, &IoOp) -> bool) -> VolumeImage {
        let mut im = self.durable.clone();
        for (i, op) in self.pending.iter().enumerate() {
            if survives(i, op) {
                im.apply(op);
            }
        }
        im
    }

    /// Takes one completed operation under the persistence rules.
    pub fn completed(&mut self, op: &IoOp) {
        match op {
            IoOp::Write {
                durable: true,
                file,
                ..
            } => {
                self.pending.push(op.clone());
                let last = self.pending.len() - 1;
                let file = *file;
                self.commit(|i, op| i <= last && data_file(op) == Some(file));
            }
            IoOp::SyncFile { file, .. } => {
                let file = *file;
                self.commit(|_, op| data_file(op) == Some(file));
            }
            IoOp::SyncRange {
                file,
                offset,
                len_bytes,
            } => {
                let (file, start) = (*file, *offset);
                let end = start.saturating_add(*len_bytes);
                let last = self.pending.iter().rposition(|op| match op {
                    IoOp::Write {
                        file: f,
                        offset,
                        data,
                        ..
                    } => *f == file && *offset < end && offset + data.len() as u64 > start,
                    _ => false,
                });
                if let Some(last) = last {
                    self.commit(|i, op| i <= last && data_file(op) == Some(file));
                }
            }
            IoOp::SyncDir { path } => {
                let last = self
                    .pending
                    .iter()
                    .rposition(|op| touched_dirs(op).contains(&path.as_slice()));
                if let Some(last) = last {
                    self.commit(|i, op| i <= last && data_file(op).is_none());
                }
            }
            IoOp::SyncAll => self.commit(|_, _| true),
            IoOp::Mark { .. } => {}
            _ => {
                self.pending.push(op.clone());
                if self.pending.len() > PENDING_OPS_MAX {
                    self.commit(|i, _| i == 0);
                }
            }
        }
        debug_assert!(self.pending.iter().all(IoOp::changes_content));
    }

    /// Makes durable, in completion order, the pending operations `chosen` picks (by index and operation).
    fn commit(&mut self, mut chosen: impl FnMut(usize, &IoOp) -> bool) {
        let mut kept = Vec::with_capacity(self.pending.len());
        for (i, op) in std::mem::take(&mut self.pending).into_iter().enumerate() {
            if chosen(i, &op) {
                self.durable.apply(&op);
            } else {
                kept.push(op);
            }
        }
        self.pending = kept;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::TreeNode;

    fn create(path: &str, file: FileId) -> IoOp {
        IoOp::Create {
            path: path.as_bytes().to_vec(),
            file,
            mode: 0o644,
        }
    }

    fn write(file: FileId, data: &str, durable: bool) -> IoOp {
        IoOp::Write {
            file,
            offset: 0,
            data: data.as_bytes().to_vec(),
            durable,
        }
    }

    fn content(im: &VolumeImage, path: &str) -> Option<Vec<u8>> {
        match im.tree().get(path.as_bytes()) {
            Some(TreeNode::File { bytes, .. }) => Some(bytes.to_vec()),
            _ => None,
        }
    }

    /// The pattern that loses data: write to a temporary file, rename over the old one, no fsync. A crash now
    /// leaves the old name and content; fsync of the file and then of the directory make the new ones durable.
    #[test]
    fn rename_is_durable_only_after_the_file_and_its_directory_are_synced() {
        let mut base = VolumeImage::new(0o755);
        base.apply(&create("cfg", 1));
        base.apply(&write(1, "old", false));
        let mut disk = Disk::new(base);
        for op in [
            create("cfg.tmp", 2),
            write(2, "new", false),
            IoOp::Rename {
                from: b"cfg.tmp".to_vec(),
                to: b"cfg".to_vec(),
            },
        ] {
            disk.completed(&op);
        }
        assert_eq!(content(disk.durable(), "cfg").as_deref(), Some(&b"old"[..]));
        assert_eq!(content(&disk.cached(), "cfg").as_deref(), Some(&b"new"[..]));
        disk.completed(&IoOp::SyncFile {
            file: 2,
            data_only: false,
        });
        assert_eq!(content(disk.durable(), "cfg").as_deref(), Some(&b"old"[..]));
        disk.completed(&IoOp::SyncDir { path: Vec::new() });
        assert_eq!(content(disk.durable(), "cfg").as_deref(), Some(&b"new"[..]));
        assert!(disk.pending().is_empty());
        assert_eq!(disk.durable().tree(), disk.cached().tree());
    }

    #[test]
    fn crash_states_range_from_the_durable_image_to_the_page_cache() {
        let mut disk = Disk::new(VolumeImage::new(0o755));
        for op in [create("a", 1), write(1, "data", false), create("b", 2)] {
            disk.completed(&op);
        }
        assert_eq!(disk.crash_state(|_, _| false).tree(), disk.durable().tree());
        assert_eq!(disk.crash_state(|_, _| true).tree(), disk.cached().tree());
        // The name without its data: what a crash after a directory write-back and before the data's leaves.
        let torn = disk.crash_state(|i, _| i == 0);
        assert_eq!(content(&torn, "a").as_deref(), Some(&b""[..]));
        assert!(content(&torn, "b").is_none());
    }

    #[test]
    fn o_sync_writes_are_durable_on_return_and_sync_makes_everything_durable() {
        let mut disk = Disk::new(VolumeImage::new(0o755));
        disk.completed(&create("a", 1));
        disk.completed(&write(1, "x", false));
        disk.completed(&write(1, "yz", true));
        // The data is durable (with the write before it), the name is not.
        assert_eq!(disk.durable().files[&1].bytes.as_slice(), b"yz");
        assert!(content(disk.durable(), "a").is_none());
        assert_eq!(disk.pending().len(), 1);
        disk.completed(&IoOp::SyncAll);
        assert_eq!(content(disk.durable(), "a").as_deref(), Some(&b"yz"[..]));
    }

    #[test]
    fn sync_file_range_commits_the_overlapping_writes_in_order() {
        let mut disk = Disk::new(VolumeImage::new(0o755));
        let at = |offset: u64, data: &str| IoOp::Write {
            file: 1,
            offset,
            data: data.as_bytes().to_vec(),
            durable: false,
        };
        disk.completed(&at(0, "aaaa"));
        disk.completed(&at(8, "bbbb"));
        disk.completed(&at(100, "cccc"));
        disk.completed(&IoOp::SyncRange {
            file: 1,
            offset: 8,
            len_bytes: 2,
        });
        assert_eq!(disk.durable().files[&1].bytes.len(), 12);
        assert_eq!(disk.pending().len(), 1);
    }
}
