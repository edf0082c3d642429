//! The host interface: the one door through which anything from outside reaches a guest run.
//!
//! The determinism contract (../shared/DESIGN.md) says the emulator does no IO of its own: stdin, stdout and
//! stderr, the mounted host files, the clock and the entropy all come through `Host`. The live host (`tandem run`,
//! in the command-line crate) reads real files and the real stdin; a replaying host answers from a trace; the
//! `MemoryHost` here serves in-memory files for tests. The linux layer calls a host only from syscalls, in guest
//! order, so a recording of the calls and their answers replays the run exactly.
//!
//! Clock and entropy: the linux layer computes virtual time itself (epoch + icount * ns_per_insn + slept time) and
//! passes it through `clock_ns`, which the live host returns unchanged; entropy comes from `fill_random`, which the
//! live host answers from a named ChaCha stream of the seed (`SeededEntropy`).

use super::abi::Errno;
use rand::RngCore;
use rand_chacha::ChaCha20Rng;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The kind of a host file-system object. Symbolic links are reported, never followed, so that the linux layer
/// resolves them inside the guest's name space (which is how it keeps them from escaping the mounts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostKind {
    File,
    Dir,
    Symlink,
    /// Devices, sockets, FIFOs: shown but not readable through a mount.
    Other,
}

/// A time as stat(2) shows it: seconds since 1970 (negative before) and nanoseconds (below 10^9).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timespec {
    pub sec: i64,
    pub nsec: u32,
}

impl Timespec {
    /// A time given in nanoseconds since 1970.
    pub fn from_ns(ns: u64) -> Timespec {
        Timespec {
            sec: (ns / 1_000_000_000) as i64,
            nsec: (ns % 1_000_000_000) as u32,
        }
    }
}

/// The part of stat(2) beyond kind, size and mode: owners, link count, times, allocation and identity. It is an
/// input of the run like the file's bytes (recorded in traces, answered on replay), because tools such as `tar`,
/// `ls -l`, `stat` and `du` print it; `HostMetadata::normalized` replaces what differs between machines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostStat {
    pub uid: u32,
    pub gid: u32,
    pub nlink: u64,
    pub atime: Timespec,
    pub mtime: Timespec,
    pub ctime: Timespec,
    /// 512-byte blocks allocated (st_blocks) and the preferred I/O size (st_blksize).
    pub blocks: u64,
    pub blksize: u64,
    pub ino: u64,
    pub dev: u64,
}

/// What a host reports about a path (lstat(2)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostMetadata {
    pub kind: HostKind,
    pub size_bytes: u64,
    /// Permission bits (the low 12 bits of st_mode).
    pub mode: u32,
    /// The rest of stat(2). None when the host does not say: traces recorded before it was an input hold only the
    /// three fields above, and the guest then sees the fixed owners, times and counts those tandems showed.
    pub stat: Option<HostStat>,
}

/// The device number that overlay files, synthetic nodes and normalised host files show (st_dev 8:1).
pub const GUEST_DEV: u64 = 0x801;

impl HostMetadata {
    /// The same metadata with what differs from machine to machine replaced by fixed values, for output that is
    /// reproducible anywhere (`--normalize-metadata`): owner and group are the guest's, every time is 2024-01-01
    /// (`EPOCH_NS_DEFAULT`), the inode number is `ino` (the caller passes a hash of the guest path), the device is
    /// `GUEST_DEV`, and blocks are what a file system of 4 KiB blocks allocates for the size. Kind, size, mode and
    /// link count are kept: they describe the tree itself, not the machine.
    pub fn normalized(self, ino: u64) -> HostMetadata {
        let nlink = self
            .stat
            .map_or(if self.kind == HostKind::Dir { 2 } else { 1 }, |s| s.nlink);
        let epoch = Timespec::from_ns(super::EPOCH_NS_DEFAULT);
        let blocks = match self.kind {
            HostKind::File => self.size_bytes.div_ceil(4096) * 8,
            HostKind::Dir => 8,
            // A link target shorter than 60 bytes lives in the inode (ext4's fast symlinks).
            HostKind::Symlink if self.size_bytes < 60 => 0,
            HostKind::Symlink => 8,
            HostKind::Other => 0,
        };
        HostMetadata {
            stat: Some(HostStat {
                uid: super::GUEST_UID as u32,
                gid: super::GUEST_GID as u32,
                nlink,
                atime: epoch,
                mtime: epoch,
                ctime: epoch,
                blocks,
                blksize: 4096,
                ino,
                dev: GUEST_DEV,
            }),
            ..self
        }
    }
}

/// The one host interface of a guest run.
pub trait Host {
    /// Reads from the guest's stdin; 0 means end of file.
    fn read_stdin(&mut self, buf: &mut [u8]) -> Result<usize, Errno>;
    fn write_stdout(&mut self, bytes: &[u8]) -> Result<(), Errno>;
    fn write_stderr(&mut self, bytes: &[u8]) -> Result<(), Errno>;
    /// Metadata of a host path, not following a final symbolic link (lstat(2)).
    fn metadata(&mut self, path: &Path) -> Result<HostMetadata, Errno>;
    /// The whole contents of a regular host file.
    /// Shared: the guest's file system keeps the same bytes, copied only if the guest writes them.
    fn read_file(&mut self, path: &Path) -> Result<Arc<Vec<u8>>, Errno>;
    /// The names in a host directory in the host's order, the order the guest sees. "." and ".." may be among
    /// them, where the host lists them (ext4 lists them at their hash's place); without them, the guest sees
    /// them first.
    fn read_dir(&mut self, path: &Path) -> Result<Vec<Vec<u8>>, Errno>;
    /// The target of a host symbolic link.
    fn read_link(&mut self, path: &Path) -> Result<Vec<u8>, Errno>;
    /// The guest's clock reading, given the virtual time the linux layer computed. The live host returns it
    /// unchanged; a replaying host returns what was recorded.
    fn clock_ns(&mut self, virtual_ns: u64) -> u64 {
        virtual_ns
    }
    /// Fills `out` with entropy for getrandom(2) and /dev/urandom.
    fn fill_random(&mut self, out: &mut [u8]);
    /// Called when a SYSCALL instruction has retired, before the linux layer handles it: `icount` counts the
    /// SYSCALL itself, `number` is rax. A recording host keys its events by it; a replaying host checks it.
    fn syscall_entry(&mut self, _icount: u64, _tid: i32, _number: u64) {}
    /// Called after the linux layer handled the syscall (and delivered any signal it raised): `result` is rax.
    fn syscall_exit(&mut self, _result: u64) {}
    /// Whether the run should pause after the syscall that just returned: `LinuxMachine::run` then returns
    /// `Progress::BudgetExhausted` before the budget is spent. A recording host asks when its log has grown
    /// large (a guest reading stdin in big pieces), so that the log is written out while the run goes on
    /// instead of piling up in memory until the next planned stop. Asking changes nothing about the run.
    fn pause_requested(&self) -> bool {
        false
    }
    /// A line of the syscall trace (`LinuxConfig::trace_syscalls`), for the user: not an input of the run.
    fn trace(&mut self, _line: &str) {}
    /// The guest changed the regular file it opened as `path` (a guest path, as opened): output leaving the
    /// guest as a file. The guest's file system has already applied the change and keeps it; nothing is
    /// answered. A fault-tolerant host holds it until the replicas agree (replay/src/ft), the others ignore it.
    fn file_output(&mut self, _path: &[u8], _change: FileOutput<'_>) {}
}

/// Implements the named `Host` methods of a wrapper host by forwarding each, unchanged, to its field `$inner`
/// (another `Host`); the wrapper writes out only the methods it changes. Example, inside `impl Host for W`:
/// `tandem_emulator::forward_host!(inner: read_stdin, write_stderr, metadata, read_file, read_dir, read_link);`
#[macro_export]
macro_rules! forward_host {
    ($inner:ident: $($method:ident),+ $(,)?) => {
        $( $crate::forward_host!(@one $inner $method); )+
    };
    (@one $inner:ident read_stdin) => {
        fn read_stdin(&mut self, buf: &mut [u8]) -> Result<usize, $crate::linux::abi::Errno> {
            self.$inner.read_stdin(buf)
        }
    };
    (@one $inner:ident write_stdout) => {
        fn write_stdout(&mut self, bytes: &[u8]) -> Result<(), $crate::linux::abi::Errno> {
            self.$inner.write_stdout(bytes)
        }
    };
    (@one $inner:ident write_stderr) => {
        fn write_stderr(&mut self, bytes: &[u8]) -> Result<(), $crate::linux::abi::Errno> {
            self.$inner.write_stderr(bytes)
        }
    };
    (@one $inner:ident metadata) => {
        fn metadata(
            &mut self,
            path: &std::path::Path,
        ) -> Result<$crate::linux::host::HostMetadata, $crate::linux::abi::Errno> {
            self.$inner.metadata(path)
        }
    };
    (@one $inner:ident read_file) => {
        fn read_file(
            &mut self,
            path: &std::path::Path,
        ) -> Result<std::sync::Arc<Vec<u8>>, $crate::linux::abi::Errno> {
            self.$inner.read_file(path)
        }
    };
    (@one $inner:ident read_dir) => {
        fn read_dir(&mut self, path: &std::path::Path) -> Result<Vec<Vec<u8>>, $crate::linux::abi::Errno> {
            self.$inner.read_dir(path)
        }
    };
    (@one $inner:ident read_link) => {
        fn read_link(&mut self, path: &std::path::Path) -> Result<Vec<u8>, $crate::linux::abi::Errno> {
            self.$inner.read_link(path)
        }
    };
    (@one $inner:ident fill_random) => {
        fn fill_random(&mut self, out: &mut [u8]) {
            self.$inner.fill_random(out)
        }
    };
}

/// A change of a regular file's contents by write(2) and its family or by truncation (O_TRUNC, truncate(2),
/// ftruncate(2)), in the order the guest made them. Stores through a shared file mapping are not reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileOutput<'a> {
    Write { offset: u64, bytes: &'a [u8] },
    Truncate { len: u64 },
}

/// Entropy from the seed: the named stream "linux.getrandom", independent of every other stream of the run.
/// `Clone`, so that whoever snapshots a machine can snapshot the stream's position with it.
#[derive(Clone)]
pub struct SeededEntropy(ChaCha20Rng);

impl SeededEntropy {
    pub fn new(seed: u64) -> SeededEntropy {
        SeededEntropy(crate::cpu::named_stream(seed, "linux.getrandom"))
    }
    /// The stream of clone `clone` of a warm snapshot ("linux.getrandom/clone/N"): clones of one snapshot draw
    /// different values from here on, and none draws what the uncloned run would have (see
    /// `LinuxMachine::reseed_clone`).
    pub fn for_clone(seed: u64, clone: u64) -> SeededEntropy {
        SeededEntropy(crate::cpu::named_stream(
            seed,
            &format!("linux.getrandom/clone/{clone}"),
        ))
    }
    pub fn fill(&mut self, out: &mut [u8]) {
        self.0.fill_bytes(out);
    }
}

/// The file part of `Host`, from a source that many hosts share (the threads of a fault campaign read the same
/// tree: the CLI's mounts, the guest's root). A source must answer the same question the same way for as long as
/// it is used: the runs that read it are compared with each other.
pub trait FileSource: Send + Sync {
    fn metadata(&self, path: &Path) -> Result<HostMetadata, Errno>;
    fn read_file(&self, path: &Path) -> Result<Arc<Vec<u8>>, Errno>;
    fn read_dir(&self, path: &Path) -> Result<Vec<Vec<u8>>, Errno>;
    fn read_link(&self, path: &Path) -> Result<Vec<u8>, Errno>;
}

/// A shared `FileSource` (`Debug` names it only).
#[derive(Clone)]
pub struct SharedFiles(pub Arc<dyn FileSource>);

impl std::fmt::Debug for SharedFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedFiles")
    }
}

/// A node of `MemoryHost`'s file tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemoryNode {
    File(Vec<u8>),
    Dir,
    Symlink(Vec<u8>),
}

/// A host that keeps everything in memory: files by absolute host path, stdin as bytes, stdout and stderr captured.
/// Used by tests, and by anything that wants to run a guest without touching the machine's files.
/// `Clone`: a host is outside the machine's snapshot (`LinuxMachine::snapshot` holds guest state only), so a
/// caller that restores a snapshot and wants the same continuation restores the host's inputs (stdin position,
/// entropy stream) from a clone taken with it. The replay host does the same with its trace position.
#[derive(Clone)]
pub struct MemoryHost {
    pub stdin: Vec<u8>,
    stdin_pos: usize,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub files: BTreeMap<PathBuf, MemoryNode>,
    /// stat(2) answers for some paths; the others get normalised metadata.
    pub stats: BTreeMap<PathBuf, HostStat>,
    /// Where the files come from instead of `files` and `stats` (None: from those).
    pub files_from: Option<SharedFiles>,
    entropy: SeededEntropy,
}

impl MemoryHost {
    /// The entropy stream at its current position (what a warm snapshot keeps beside the guest).
    pub fn entropy(&self) -> &SeededEntropy {
        &self.entropy
    }

    /// Replaces the entropy stream (a warm clone's own, `SeededEntropy::for_clone`).
    pub fn set_entropy(&mut self, entropy: SeededEntropy) {
        self.entropy = entropy;
    }

    pub fn new(seed: u64) -> MemoryHost {
        MemoryHost {
            stdin: Vec::new(),
            stdin_pos: 0,
            stdout: Vec::new(),
            stderr: Vec::new(),
            files: BTreeMap::new(),
            stats: BTreeMap::new(),
            files_from: None,
            entropy: SeededEntropy::new(seed),
        }
    }

    /// A host whose files are `files`'s (stdin empty, output captured, entropy from `seed`).
    pub fn with_files(seed: u64, files: SharedFiles) -> MemoryHost {
        MemoryHost {
            files_from: Some(files),
            ..MemoryHost::new(seed)
        }
    }

    /// Adds a file and all its parent directories.
    pub fn add_file(&mut self, path: &str, contents: &[u8]) {
        let p = PathBuf::from(path);
        for a in p.ancestors().skip(1) {
            self.files.insert(a.to_path_buf(), MemoryNode::Dir);
        }
        self.files.insert(p, MemoryNode::File(contents.to_vec()));
    }

    pub fn add_symlink(&mut self, path: &str, target: &str) {
        self.files.insert(
            PathBuf::from(path),
            MemoryNode::Symlink(target.as_bytes().to_vec()),
        );
    }
}

impl Host for MemoryHost {
    fn read_stdin(&mut self, buf: &mut [u8]) -> Result<usize, Errno> {
        let rest = &self.stdin[self.stdin_pos..];
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.stdin_pos += n;
        Ok(n)
    }
    fn write_stdout(&mut self, bytes: &[u8]) -> Result<(), Errno> {
        self.stdout.extend_from_slice(bytes);
        Ok(())
    }
    fn write_stderr(&mut self, bytes: &[u8]) -> Result<(), Errno> {
        self.stderr.extend_from_slice(bytes);
        Ok(())
    }
    fn metadata(&mut self, path: &Path) -> Result<HostMetadata, Errno> {
        if let Some(source) = &self.files_from {
            return source.0.metadata(path);
        }
        let (kind, size_bytes, mode) = match self.files.get(path) {
            Some(MemoryNode::File(b)) => (HostKind::File, b.len() as u64, 0o644),
            Some(MemoryNode::Dir) => (HostKind::Dir, 4096, 0o755),
            Some(MemoryNode::Symlink(t)) => (HostKind::Symlink, t.len() as u64, 0o777),
            None => return Err(super::abi::ENOENT),
        };
        let md = HostMetadata {
            kind,
            size_bytes,
            mode,
            stat: None,
        };
        if let Some(stat) = self.stats.get(path) {
            return Ok(HostMetadata {
                stat: Some(*stat),
                ..md
            });
        }
        let mut h = crate::memory::Fnv::new();
        h.write_bytes(path.as_os_str().as_encoded_bytes());
        Ok(md.normalized(h.finish() | 1))
    }
    fn read_file(&mut self, path: &Path) -> Result<Arc<Vec<u8>>, Errno> {
        if let Some(source) = &self.files_from {
            return source.0.read_file(path);
        }
        match self.files.get(path) {
            Some(MemoryNode::File(b)) => Ok(Arc::new(b.clone())),
            Some(_) => Err(super::abi::EISDIR),
            None => Err(super::abi::ENOENT),
        }
    }
    fn read_dir(&mut self, path: &Path) -> Result<Vec<Vec<u8>>, Errno> {
        use std::os::unix::ffi::OsStrExt;
        if let Some(source) = &self.files_from {
            return source.0.read_dir(path);
        }
        Ok(self
            .files
            .keys()
            .filter(|k| k.parent() == Some(path) && k.as_path() != path)
            .filter_map(|k| k.file_name().map(|n| n.as_bytes().to_vec()))
            .collect())
    }
    fn read_link(&mut self, path: &Path) -> Result<Vec<u8>, Errno> {
        if let Some(source) = &self.files_from {
            return source.0.read_link(path);
        }
        match self.files.get(path) {
            Some(MemoryNode::Symlink(t)) => Ok(t.clone()),
            _ => Err(super::abi::EINVAL),
        }
    }
    fn fill_random(&mut self, out: &mut [u8]) {
        self.entropy.fill(out);
    }
}
