//! Storage: the guest's writable volumes, the operations that complete on them, and the simulated disk under them.
//!
//! A volume (`--volume HOSTDIR:GUESTDIR`) is a writable tree whose initial content is read from the host through
//! the one host interface when the machine starts (so a trace records it like any input, and a replay needs no
//! host directory). From then on it lives in the guest's file system (linux/vfs.rs): the overlay files of a volume
//! are its page cache, what every guest read sees. Under them each volume has a simulated disk (disk.rs) holding
//! the durable image and the operations not yet durable, under Linux's persistence rules.
//!
//! The I/O filter: at each touch point where an operation on a volume completes (a write returning, an fsync
//! returning, a rename, a truncate, an unlink...) the kernel hands one `CompletedIo` to the disk model and to the
//! machine's `IoObserver`, if any (the CDP journal of replay/src/cdp/ is one). Observers see operations in
//! completion order, each with the icount, guest time and task of the syscall that completed it.
//!
//! Key decisions:
//! - Operations name files by a `FileId` (the guest inode number, stable for the life of the run) and names by
//!   their path relative to the volume's root ("a/b", "" for the root), so that a write through a descriptor
//!   still lands in the right file after a rename or an unlink, and so that a journal is independent of where
//!   the volume was mounted.
//! - A volume is a file system of its own: rename and link across its boundary fail with EXDEV, as between two
//!   mounts on Linux, so a file never moves between volumes.
//!
//! It must not: do IO. The observer does what it likes with what it is given, outside the emulator.

pub mod content;
pub mod disk;
pub mod image;

pub use content::{ContentEntry, ContentNode, VolumeContent};
pub use disk::Disk;
pub use image::{Entry, FileImage, TreeNode, VolumeImage};

/// The guest inode number of a volume file: names a file across renames, links and unlinks.
pub type FileId = u64;

/// The guest name of the device whose writes are CDP marks: each write's bytes (a trailing newline dropped) name
/// a mark, recorded in completion order with the other operations (`echo before-upgrade > /dev/tandem-mark`).
pub const MARK_DEVICE_PATH: &[u8] = b"/dev/tandem-mark";

/// Longest mark name accepted (longer writes are cut to it).
pub const MARK_NAME_BYTES_MAX: usize = 255;

/// One operation that completed on a volume. Paths are relative to the volume's root, components joined by '/'.
/// Serialisable because the CDP journal (replay/src/cdp/) stores it as it is, as traces store fault plans: a
/// change here is a change of the journal's format (bump `JOURNAL_VERSION` there).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum IoOp {
    /// Bytes written at `offset` (write, pwrite, writev, pwritev, sendfile into the file). `durable`: the write
    /// was durable when it returned (O_SYNC, O_DSYNC, O_DIRECT).
    Write {
        file: FileId,
        offset: u64,
        data: Vec<u8>,
        durable: bool,
    },
    /// The file's size set (truncate, ftruncate, O_TRUNC).
    Truncate {
        file: FileId,
        size_bytes: u64,
    },
    /// A new, empty regular file made at `path` (open with O_CREAT, creat).
    Create {
        path: Vec<u8>,
        file: FileId,
        mode: u32,
    },
    /// Another name for an existing file (link, linkat).
    Link {
        path: Vec<u8>,
        file: FileId,
    },
    Mkdir {
        path: Vec<u8>,
        mode: u32,
    },
    Symlink {
        path: Vec<u8>,
        target: Vec<u8>,
    },
    /// A name removed (unlink, or rmdir of an empty directory).
    Remove {
        path: Vec<u8>,
    },
    /// rename(2): `to` is replaced if it exists; a directory moves with everything below it.
    Rename {
        from: Vec<u8>,
        to: Vec<u8>,
    },
    /// Permission bits set (chmod, fchmod, fchmodat).
    Chmod {
        path: Vec<u8>,
        mode: u32,
    },
    /// fsync (`data_only`: fdatasync) of a file returned: its data and inode are durable.
    SyncFile {
        file: FileId,
        data_only: bool,
    },
    /// fsync of a directory returned: the names in it are durable.
    SyncDir {
        path: Vec<u8>,
    },
    /// sync_file_range with SYNC_FILE_RANGE_WAIT_AFTER returned: the data of that range is durable.
    SyncRange {
        file: FileId,
        offset: u64,
        len_bytes: u64,
    },
    /// sync or syncfs returned: everything is durable.
    SyncAll,
    /// A mark the guest named (a write to `MARK_DEVICE_PATH`); it changes nothing on the volume.
    Mark {
        name: Vec<u8>,
    },
}

impl IoOp {
    /// Whether the operation changes what the guest sees (writes and metadata), as opposed to syncs and marks.
    pub fn changes_content(&self) -> bool {
        !matches!(
            self,
            IoOp::SyncFile { .. }
                | IoOp::SyncDir { .. }
                | IoOp::SyncRange { .. }
                | IoOp::SyncAll
                | IoOp::Mark { .. }
        )
    }
}

/// An operation with where and when it completed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompletedIo {
    /// The instruction count at the SYSCALL instruction that completed it.
    pub icount: u64,
    /// The guest's wall-clock time then (CLOCK_REALTIME, nanoseconds since 1970).
    pub time_ns: u64,
    pub tid: i32,
    /// Which volume (the order of `LinuxConfig::volumes`); 0 for marks.
    pub volume: u32,
    pub op: IoOp,
}

/// Receives every completed operation on the guest's volumes, in completion order. Installed with
/// `LinuxMachine::set_io_observer`; called from the syscall that completed the operation, so it must not call
/// back into the machine.
pub trait IoObserver: Send {
    /// A volume's initial content, once for each volume when the observer is installed (before any operation).
    fn volume_base(&mut self, volume: u32, guest_root: &[u8], image: &VolumeImage);
    fn completed(&mut self, io: &CompletedIo);
    /// Ends the observer's work after the run: a line for the user on success, the first error otherwise.
    fn finish(&mut self) -> Result<String, String> {
        Ok(String::new())
    }
}

/// A writable volume: the host directory its initial content comes from and where the guest sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeSpec {
    pub host: std::path::PathBuf,
    /// The guest path's components.
    pub guest: Vec<Vec<u8>>,
    /// The initial content, when it was read already (by a recording, before the run) or comes from a trace:
    /// the machine installs it and asks the host nothing. None: the machine reads `host` through `Host`.
    pub content: Option<std::sync::Arc<VolumeContent>>,
}

/// Most entries (files, directories, links) a volume holds when it is read from the host: a named limit, so a
/// volume pointed at a huge tree is a clear error at start, not an exhausted host.
pub const VOLUME_ENTRIES_MAX: usize = 1 << 20;
