//! The guest's file system: an in-memory overlay over read-only mounts of host paths, plus a few synthetic nodes
//! (/dev/null, /dev/zero, /dev/urandom, /proc/self/exe, /tmp, and the generated files of /proc and /sys that
//! procfs.rs makes: cpuinfo, stat, meminfo, uptime, self/stat, self/status, self/comm, the CPU lists).
//!
//! Key decisions:
//! - Paths are resolved here, one component at a time, in the guest's name space: `.` and `..` are applied to the
//!   guest path (`..` at the root stays at the root), and a symbolic link, whether in the overlay or on a mount,
//!   is read and spliced into the remaining guest path; an absolute target restarts at the guest root. A host path
//!   is only ever formed as `mount.host` joined with plain names whose every prefix was seen to be a real host
//!   directory (not a link), so no guest path reaches a host file outside a mount. (The live host additionally
//!   opens every host path beneath a descriptor of the mount root without following links, so a host-side rename
//!   between two guest calls cannot lead outside either.)
//! - The cost of a path operation is that of the components it names, whatever the depth of the directory it
//!   starts from: a `GuestPath` is a persistent list (push, parent and clone are O(1)), and the overlay and the
//!   host answers are keyed by interned path ids (`PathTable`), never by the text of whole paths. So `mkdir d;
//!   chdir d` repeated N times costs O(N) time and memory, not O(N^2).
//! - The host is never written. Creating, writing, truncating, renaming or deleting goes to the overlay: a host
//!   file is copied up on its first write, a deletion leaves a whiteout. Metadata of host nodes (chmod, chown,
//!   utimensat) cannot be changed: the mounts are read-only file systems (EROFS); overlay nodes keep their own
//!   owner, mode, times, inode number and link count.
//! - What a host node shows is the host's metadata, an input of the run recorded like the file's bytes (or the
//!   normalised form of it); names in listings are sorted; overlay inode numbers come from a counter and times
//!   from the guest's virtual clock, so nothing of the host's order or clocks reaches the guest unrecorded.
//!
//! - Writable volumes (volume.rs, storage/) live in the overlay too: their whole tree is read from the host at
//!   the start, their root hides any mount above it (like /dev), and `volume_of` tells which operations the
//!   I/O filter reports.
//!
//! It must not: call the host for anything but the `Host` methods, or follow host symbolic links on the host side.

use super::abi::*;
use super::host::{Host, HostKind, HostMetadata, Timespec, GUEST_DEV};
use super::procfs::{InfoFile, INFO_FILES};
use crate::shared::Shared;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;

/// Most symbolic links followed while resolving one path (Linux's MAXSYMLINKS).
pub const SYMLINKS_MAX: u32 = 40;
/// Longest path accepted (PATH_MAX) and longest name (NAME_MAX).
pub const PATH_BYTES_MAX: usize = 4096;
pub const NAME_BYTES_MAX: usize = 255;
/// The first inode number the overlay hands out (far from the small numbers real file systems use).
const OVERLAY_INO_FIRST: u64 = 0x7a00_0000_0000_0001;

/// The directories that stay the guest's own under a mount of the root (`PathEntry::hides_mount`). Not /tmp: a
/// program or its working directory may live under the host's /tmp (a checkout in /tmp), and the root mount's
/// overlay already keeps the guest's writes there from reaching the host.
pub const GUEST_OWN_DIRS: [&[u8]; 3] = [b"/dev", b"/proc", b"/sys"];

/// Whether an unprivileged process may create names in the directory `dir`, as far as the guest's own kernel
/// file systems decide: procfs has nothing to create (ENOENT); sysfs and devtmpfs belong to root (EACCES),
/// except /dev/shm, the tmpfs of POSIX shared memory that anyone may create in.
pub fn may_create_in(dir: &GuestPath) -> Result<(), Errno> {
    let components = dir.components();
    match components.first().map(Vec::as_slice) {
        Some(b"proc") => Err(ENOENT),
        Some(b"sys") => Err(EACCES),
        Some(b"dev") if components.get(1).map(Vec::as_slice) != Some(b"shm") => Err(EACCES),
        _ => Ok(()),
    }
}

/// An interned guest path (see `PathTable`). 0 is the root.
pub type PathId = u32;

/// Splits a path into its non-empty components.
pub fn split(path: &[u8]) -> VecDeque<Vec<u8>> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .map(|c| c.to_vec())
        .collect()
}

/// The text of a guest path: "/" followed by its components joined with "/".
pub fn join(path: &[Vec<u8>]) -> Vec<u8> {
    if path.is_empty() {
        return b"/".to_vec();
    }
    let mut out = Vec::new();
    for c in path {
        out.push(b'/');
        out.extend_from_slice(c);
    }
    out
}

/// The inode number of a synthetic node or a normalised host file: FNV-1a of its guest path's text, never 0.
pub fn inode_of(text: &[u8]) -> u64 {
    let mut h = crate::memory::Fnv::new();
    h.write_bytes(text);
    h.finish() | 1
}

/// A canonical path in the guest's name space (no `.`, `..` or links), as a persistent list from the leaf up: a
/// child shares its parent, so pushing a name, taking the parent and cloning cost O(1) at any depth.
#[derive(Clone)]
pub struct GuestPath(Arc<Link>);

struct Link {
    /// None for the root.
    parent: Option<GuestPath>,
    name: Box<[u8]>,
    depth: usize,
    /// The innermost mount the path is on (an index into `Vfs::mounts`), fixed when the path is made: a child is
    /// on its parent's mount unless it is a mount point itself.
    mount: Option<u32>,
    /// The interned id, once known. Ids never change (the table only grows), so caching them is always right.
    id: std::sync::OnceLock<PathId>,
}

impl Drop for Link {
    /// Drops the chain of parents a link alone holds one at a time: the default recursive drop would take stack
    /// in proportion to the depth, and a guest chooses the depth.
    fn drop(&mut self) {
        let mut parent = self.parent.take();
        while let Some(GuestPath(rc)) = parent {
            match Arc::try_unwrap(rc) {
                Ok(mut link) => parent = link.parent.take(),
                Err(_) => break,
            }
        }
    }
}

impl GuestPath {
    pub fn depth(&self) -> usize {
        self.0.depth
    }

    pub fn is_root(&self) -> bool {
        self.0.parent.is_none()
    }

    /// The parent directory (the root's parent is the root, as `..` has it).
    pub fn parent(&self) -> GuestPath {
        self.0.parent.clone().unwrap_or_else(|| self.clone())
    }

    /// The last component (empty for the root).
    pub fn name(&self) -> &[u8] {
        &self.0.name
    }

    /// The components from the root down.
    pub fn components(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::with_capacity(self.depth());
        let mut p = self;
        while let Some(parent) = &p.0.parent {
            out.push(p.0.name.to_vec());
            p = parent;
        }
        out.reverse();
        out
    }

    /// The text of the path ("/a/b").
    pub fn text(&self) -> Vec<u8> {
        join(&self.components())
    }

    /// The ancestor at `depth` (self if it is not deeper).
    fn ancestor(&self, depth: usize) -> GuestPath {
        let mut p = self.clone();
        while p.depth() > depth {
            p = p.parent();
        }
        p
    }

    /// Whether `self` is `other` or lies beneath it.
    pub fn starts_with(&self, other: &GuestPath) -> bool {
        self.depth() >= other.depth() && self.ancestor(other.depth()) == *other
    }
}

impl PartialEq for GuestPath {
    fn eq(&self, other: &GuestPath) -> bool {
        let (mut a, mut b) = (self, other);
        if a.depth() != b.depth() {
            return false;
        }
        loop {
            if Arc::ptr_eq(&a.0, &b.0) {
                return true;
            }
            if a.0.name != b.0.name {
                return false;
            }
            match (&a.0.parent, &b.0.parent) {
                (Some(pa), Some(pb)) => (a, b) = (pa, pb),
                _ => return true,
            }
        }
    }
}

impl Eq for GuestPath {}

impl std::fmt::Debug for GuestPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", String::from_utf8_lossy(&self.text()))
    }
}

/// A node the file system itself provides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Synthetic {
    /// /, /dev, /proc, /proc/self, /tmp and every directory above a mount point.
    Dir,
    Device(Device),
    /// /proc/self/exe.
    ExeLink,
    /// A link with a fixed target: /dev/fd, /dev/stdin, /dev/stdout, /dev/stderr (into /proc/self/fd).
    Link(&'static [u8]),
    /// A file whose contents the kernel makes at the open (procfs.rs).
    Info(InfoFile),
}

struct PathEntry {
    children: BTreeMap<Box<[u8]>, PathId>,
    /// The mount whose root this path is.
    mount_here: Option<u32>,
    /// The guest's own directories (/dev, /proc, /sys, /tmp): a mount above them (the guest's root) does not
    /// reach into them, so the host's devices, processes and temporary files stay out of the guest, and the
    /// guest's /tmp is writable whatever the root holds. A mount at the path itself still applies.
    hides_mount: bool,
    synthetic: Option<Synthetic>,
}

/// Interned guest paths: each path that the overlay or a host answer is kept for gets a small id, looked up by
/// (parent id, name). Shared by a machine and its snapshots and never shrunk, so an id means one path forever;
/// what is stored under the ids (overlay entries, host answers) belongs to the `Vfs` and is what snapshots copy.
/// It grows with the paths the overlay and the host cache hold, no faster.
struct PathTable {
    entries: Vec<PathEntry>,
}

impl PathTable {
    fn new() -> PathTable {
        PathTable {
            entries: vec![PathEntry {
                children: BTreeMap::new(),
                mount_here: None,
                hides_mount: false,
                synthetic: Some(Synthetic::Dir),
            }],
        }
    }

    fn child(&self, parent: PathId, name: &[u8]) -> Option<PathId> {
        self.entries[parent as usize].children.get(name).copied()
    }

    fn intern_child(&mut self, parent: PathId, name: &[u8]) -> PathId {
        if let Some(id) = self.child(parent, name) {
            return id;
        }
        let id = PathId::try_from(self.entries.len()).expect("fewer than 2^32 interned paths");
        self.entries.push(PathEntry {
            children: BTreeMap::new(),
            mount_here: None,
            hides_mount: false,
            synthetic: None,
        });
        self.entries[parent as usize]
            .children
            .insert(name.into(), id);
        id
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Null,
    Zero,
    Random,
    /// /dev/tandem-mark (present when the guest has a volume): each write names a CDP mark
    /// (`storage::MARK_DEVICE_PATH`); reads see end of file.
    Mark,
}

/// Owner, permissions, times and identity of an overlay node (host nodes show the host's metadata instead).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attrs {
    /// Permission bits (0o7777).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime: Timespec,
    pub mtime: Timespec,
    pub ctime: Timespec,
    pub ino: u64,
}

impl Attrs {
    /// Attributes of a copied-up host node: the host's owner, mode, times and inode number.
    fn of_host(md: &HostMetadata, legacy: impl FnOnce() -> Attrs) -> Attrs {
        match md.stat {
            Some(s) => Attrs {
                mode: md.mode & 0o7777,
                uid: s.uid,
                gid: s.gid,
                atime: s.atime,
                mtime: s.mtime,
                ctime: s.ctime,
                ino: s.ino,
            },
            None => Attrs {
                mode: md.mode & 0o7777,
                ..legacy()
            },
        }
    }
}

/// The bytes and attributes of a file held in memory. Shared by every name (hard link) and every open file
/// description of it.
#[derive(Debug)]
pub struct FileData {
    /// Shared copy-on-write with the copies snapshots take (`Arc::make_mut` before a change), so a checkpoint
    /// of a run that opened a large file costs nothing for it; and with the recorder, which writes the same
    /// bytes into the trace on a thread of its own (hence `Arc`).
    pub bytes: Arc<Vec<u8>>,
    pub attrs: Attrs,
    /// Names in the overlay that refer to it (0 once the last is unlinked while it is still open).
    pub nlink: u64,
    /// The host's metadata when these are the contents of a mounted file opened without copying it up: such a
    /// file is read-only, and stat shows the host's answer. None for an overlay file.
    pub host: Option<HostMetadata>,
    /// The advisory locks the guest's processes and descriptions hold on it (locks.rs).
    pub locks: super::locks::FileLocks,
}

impl FileData {
    /// A new overlay file with these bytes and attributes and one name.
    pub fn new(bytes: Vec<u8>, attrs: Attrs) -> FileData {
        FileData {
            bytes: Arc::new(bytes),
            attrs,
            nlink: 1,
            host: None,
            locks: Default::default(),
        }
    }
}

pub type SharedFile = Shared<FileData>;

/// Where the metadata of a directory or symbolic link comes from.
#[derive(Clone, Copy, Debug)]
pub enum Origin {
    Overlay(Attrs),
    Host(HostMetadata),
    Synthetic,
}

/// One entry of a directory as getdents lists it.
#[derive(Clone, Debug)]
pub enum DirEntry {
    /// ".", the directory itself.
    Dot,
    /// "..", its parent.
    DotDot,
    /// A name in the directory and what it names.
    Named(Vec<u8>, Node),
}

/// What a guest path names.
#[derive(Clone, Debug)]
pub enum Node {
    /// A file in the overlay (created by the guest, or copied up from a mount).
    MemoryFile(SharedFile),
    /// A file on a mount, not yet copied up.
    HostFile {
        host: PathBuf,
        md: HostMetadata,
    },
    Dir(Origin),
    Symlink {
        target: Vec<u8>,
        origin: Origin,
    },
    Device(Device),
    /// A generated file of /proc or /sys (procfs.rs): read-only, made when opened.
    Info(InfoFile),
    /// An AF_UNIX socket bound to this path (net/unix.rs finds the socket by the inode number).
    Socket(Attrs),
    /// /proc/self/fd/N: the calling process's descriptor N, a link that `resolve_with_fds` follows to the file's
    /// path. Left unfollowed it stands for the open description itself: a descriptor without a path (a pipe, a
    /// socket, a standard stream), or the link that readlink and lstat see.
    Fd(i32),
}

/// What /proc/self/fd/N leads to, as the kernel tells `Vfs::resolve_with_fds`.
#[derive(Clone, Debug)]
pub enum FdLink {
    /// N is not open.
    Closed,
    /// An open file or directory, followed by its path.
    Path(GuestPath),
    /// An open description without a path (a pipe, a socket, a device, a standard stream).
    Anonymous,
}

impl Node {
    pub fn is_dir(&self) -> bool {
        matches!(self, Node::Dir(_))
    }
}

#[derive(Clone, Debug)]
pub(super) enum OverlayEntry {
    File(SharedFile),
    Dir(Attrs),
    Symlink(Vec<u8>, Attrs),
    Socket(Attrs),
    /// Deleted: hides whatever a mount or a synthetic node has at this path.
    Whiteout,
}

/// A host path mounted read-only at a guest path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub guest: Vec<Vec<u8>>,
    pub host: PathBuf,
}

/// The result of resolving a path: its canonical guest path and the node there, if any (a missing final
/// component is not an error, so that creating calls can use the path).
#[derive(Clone, Debug)]
pub struct Resolved {
    pub path: GuestPath,
    pub node: Option<Node>,
}

/// Metadata as stat(2) shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub dev: u64,
    pub ino: u64,
    /// File type and permission bits.
    pub mode: u32,
    pub nlink: u64,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub size_bytes: u64,
    pub blksize: u64,
    /// 512-byte blocks allocated.
    pub blocks: u64,
    pub atime: Timespec,
    pub mtime: Timespec,
    pub ctime: Timespec,
}

/// A writable volume in the guest's name space (storage/): its root directory and the simulated disk under it.
/// The volume's files are overlay files (the page cache); the disk holds what is durable.
#[derive(Clone)]
pub(super) struct Volume {
    pub root: GuestPath,
    pub disk: crate::storage::Disk,
}

pub struct Vfs {
    pub(super) mounts: Vec<Mount>,
    /// The writable volumes, in the order of `LinuxConfig::volumes`.
    pub(super) volumes: Vec<Volume>,
    table: Shared<PathTable>,
    root: GuestPath,
    pub(super) overlay: BTreeMap<PathId, OverlayEntry>,
    /// Host metadata already asked for (mounts are read-only, so answers do not change during a run).
    pub(super) host_cache: BTreeMap<PathId, Result<HostMetadata, Errno>>,
    /// The guest path of the running program, for /proc/self/exe.
    pub(super) exe_path: Vec<u8>,
    /// The guest's epoch: the times of synthetic nodes.
    epoch: Timespec,
    /// The next inode number of an overlay node.
    next_ino: u64,
    /// The interned id of /proc/self/fd, whose entries are the calling process's descriptors.
    fd_dir: PathId,
}

impl Vfs {
    pub fn new(mut mounts: Vec<Mount>, exe_path: Vec<u8>, epoch_ns: u64) -> Vfs {
        // Longest guest prefix first, so the innermost mount wins.
        mounts.sort_by(|a, b| {
            b.guest
                .len()
                .cmp(&a.guest.len())
                .then(a.guest.cmp(&b.guest))
        });
        let mut table = PathTable::new();
        let intern = |table: &mut PathTable, path: &[Vec<u8>], kind: Option<Synthetic>| {
            let mut id = 0;
            for (i, c) in path.iter().enumerate() {
                id = table.intern_child(id, c);
                if i + 1 < path.len() && table.entries[id as usize].synthetic.is_none() {
                    table.entries[id as usize].synthetic = Some(Synthetic::Dir);
                }
            }
            if kind.is_some() {
                table.entries[id as usize].synthetic = kind;
            }
            id
        };
        for (i, m) in mounts.iter().enumerate() {
            let id = intern(&mut table, &m.guest, None);
            let e = &mut table.entries[id as usize];
            if e.mount_here.is_none() {
                e.mount_here = Some(i as u32);
            }
        }
        for (text, kind) in [
            (&b"/dev"[..], Synthetic::Dir),
            (b"/proc", Synthetic::Dir),
            (b"/proc/self", Synthetic::Dir),
            (b"/tmp", Synthetic::Dir),
            (b"/dev/null", Synthetic::Device(Device::Null)),
            (b"/dev/zero", Synthetic::Device(Device::Zero)),
            (b"/dev/urandom", Synthetic::Device(Device::Random)),
            (b"/dev/random", Synthetic::Device(Device::Random)),
            (b"/proc/self/exe", Synthetic::ExeLink),
            (b"/proc/self/fd", Synthetic::Dir),
            (b"/dev/fd", Synthetic::Link(b"/proc/self/fd")),
            (b"/dev/stdin", Synthetic::Link(b"/proc/self/fd/0")),
            (b"/dev/stdout", Synthetic::Link(b"/proc/self/fd/1")),
            (b"/dev/stderr", Synthetic::Link(b"/proc/self/fd/2")),
            // POSIX shared memory and semaphores (shm_open, sem_open): a tmpfs anyone may create in.
            (b"/dev/shm", Synthetic::Dir),
        ] {
            let path: Vec<Vec<u8>> = split(text).into();
            intern(&mut table, &path, Some(kind));
        }
        for (text, file) in INFO_FILES {
            let path: Vec<Vec<u8>> = split(text).into();
            intern(&mut table, &path, Some(Synthetic::Info(file)));
        }
        for text in GUEST_OWN_DIRS {
            let path: Vec<Vec<u8>> = split(text).into();
            let id = intern(&mut table, &path, Some(Synthetic::Dir));
            table.entries[id as usize].hides_mount = true;
        }
        let root = GuestPath(Arc::new(Link {
            parent: None,
            name: Box::default(),
            depth: 0,
            mount: table.entries[0].mount_here,
            id: std::sync::OnceLock::from(0),
        }));
        let fd_dir = [&b"proc"[..], b"self", b"fd"]
            .iter()
            .try_fold(0, |id, name| table.child(id, name))
            .expect("/proc/self/fd is interned above");
        Vfs {
            mounts,
            volumes: Vec::new(),
            table: Shared::new(table),
            root,
            overlay: BTreeMap::new(),
            host_cache: BTreeMap::new(),
            // /proc/self/exe is always an absolute, clean path (glibc asserts it starts with '/').
            exe_path: join(&split(&exe_path).into_iter().collect::<Vec<_>>()),
            epoch: Timespec::from_ns(epoch_ns),
            next_ino: OVERLAY_INO_FIRST,
            fd_dir,
        }
    }

    /// A copy for a snapshot: the same path table (ids mean the same paths), copies of the overlay and the host
    /// answers, with each overlay file passed through `file` (which keeps files shared with descriptors shared).
    pub(super) fn copy_with(&self, mut file: impl FnMut(&SharedFile) -> SharedFile) -> Vfs {
        Vfs {
            mounts: self.mounts.clone(),
            volumes: self.volumes.clone(),
            table: self.table.clone(),
            root: self.root.clone(),
            overlay: self
                .overlay
                .iter()
                .map(|(k, e)| {
                    let e = match e {
                        OverlayEntry::File(f) => OverlayEntry::File(file(f)),
                        other => other.clone(),
                    };
                    (*k, e)
                })
                .collect(),
            host_cache: self.host_cache.clone(),
            exe_path: self.exe_path.clone(),
            epoch: self.epoch,
            next_ino: self.next_ino,
            fd_dir: self.fd_dir,
        }
    }

    // ---------------------------------------------------------------------------------------------------------
    // Volumes.

    /// Makes `guest` the root of a volume whose disk starts as `disk`: the path and its ancestors exist as
    /// directories, and no mount above reaches into it (as for the guest's own /dev and /proc). The caller fills
    /// the overlay below it.
    pub(super) fn add_volume(
        &mut self,
        guest: &[Vec<u8>],
        disk: crate::storage::Disk,
    ) -> GuestPath {
        let mut table = self.table.borrow_mut();
        let mut id = 0;
        for c in guest {
            id = table.intern_child(id, c);
            let e = &mut table.entries[id as usize];
            if e.synthetic.is_none() {
                e.synthetic = Some(Synthetic::Dir);
            }
        }
        table.entries[id as usize].hides_mount = true;
        let dev = table.intern_child(0, b"dev");
        let mark = table.intern_child(dev, b"tandem-mark");
        table.entries[mark as usize].synthetic = Some(Synthetic::Device(Device::Mark));
        drop(table);
        let root = self.path_of(&join(guest));
        self.volumes.push(Volume {
            root: root.clone(),
            disk,
        });
        root
    }

    /// The volume `path` is on and the path relative to its root ("a/b", empty for the root itself).
    pub fn volume_of(&self, path: &GuestPath) -> Option<(u32, Vec<u8>)> {
        let (i, v) = self
            .volumes
            .iter()
            .enumerate()
            .find(|(_, v)| path.starts_with(&v.root))?;
        let rest = &path.components()[v.root.depth()..];
        Some((i as u32, rest.join(&b'/')))
    }

    /// Whether `path` is the root of a volume (which, like a mount point, cannot be renamed or removed).
    pub fn is_volume_root(&self, path: &GuestPath) -> bool {
        self.volumes.iter().any(|v| v.root == *path)
    }

    // ---------------------------------------------------------------------------------------------------------
    // Paths.

    pub fn root(&self) -> GuestPath {
        self.root.clone()
    }

    /// The path named by `name` in the directory `parent` (a plain name: not "." or "..", no "/").
    pub fn child(&self, parent: &GuestPath, name: &[u8]) -> GuestPath {
        debug_assert!(!name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/'));
        // Only the parent's cached id is used (O(1)): a path whose parent's id is not cached yet is not a mount
        // point (mount points and their ancestors are interned from the start, so their links always know their
        // ids), and `id_of` finds the id later if the path gets one.
        let id = parent
            .0
            .id
            .get()
            .and_then(|&p| self.table.borrow().child(p, name));
        let mount = match id.map(|id| {
            let table = self.table.borrow();
            let e = &table.entries[id as usize];
            (e.mount_here, e.hides_mount)
        }) {
            Some((Some(m), _)) => Some(m),
            Some((None, true)) => None,
            _ => parent.0.mount,
        };
        GuestPath(Arc::new(Link {
            parent: Some(parent.clone()),
            name: name.into(),
            depth: parent.depth() + 1,
            mount,
            id: id.map_or_else(std::sync::OnceLock::new, std::sync::OnceLock::from),
        }))
    }

    /// The path of an absolute, clean text ("/a/b"), without looking anything up.
    pub fn path_of(&self, text: &[u8]) -> GuestPath {
        let mut p = self.root();
        for c in split(text) {
            match c.as_slice() {
                b"." => {}
                b".." => p = p.parent(),
                _ => p = self.child(&p, &c),
            }
        }
        p
    }

    /// The interned id of `path`, if it has one (no path is interned by asking).
    fn id_of(&self, path: &GuestPath) -> Option<PathId> {
        if let Some(id) = path.0.id.get().copied() {
            return Some(id);
        }
        // Up to the nearest ancestor whose id is known (the root's always is), then down by name.
        let mut chain = Vec::new();
        let mut p = path.clone();
        let mut id = loop {
            if let Some(id) = p.0.id.get().copied() {
                break id;
            }
            chain.push(p.clone());
            p = p.parent();
        };
        let table = self.table.borrow();
        for q in chain.iter().rev() {
            id = table.child(id, q.name())?;
            q.0.id.get_or_init(|| id);
        }
        Some(id)
    }

    /// The id of `path`, interning it (and its ancestors) if needed.
    fn intern(&mut self, path: &GuestPath) -> PathId {
        if let Some(id) = self.id_of(path) {
            return id;
        }
        let mut chain = Vec::new();
        let mut p = path.clone();
        let mut id = loop {
            if let Some(id) = self.id_of(&p) {
                break id;
            }
            chain.push(p.clone());
            p = p.parent();
        };
        let mut table = self.table.borrow_mut();
        for q in chain.iter().rev() {
            id = table.intern_child(id, q.name());
            q.0.id.get_or_init(|| id);
        }
        id
    }

    fn synthetic(&self, id: Option<PathId>) -> Option<Synthetic> {
        id.and_then(|id| self.table.borrow().entries[id as usize].synthetic)
    }

    /// N if `path` is /proc/self/fd/N (N in decimal, as Linux names the entries: no sign, no leading zero).
    fn fd_entry(&self, path: &GuestPath) -> Option<i32> {
        let name = path.name();
        let canonical = !name.is_empty()
            && name.iter().all(u8::is_ascii_digit)
            && (name == b"0" || name[0] != b'0');
        if !canonical || self.id_of(&path.parent()) != Some(self.fd_dir) {
            return None;
        }
        std::str::from_utf8(name).ok()?.parse().ok()
    }

    /// Whether `path` is /proc/self/fd (its entries come from the caller's descriptor table, not from here).
    pub fn is_fd_dir(&self, path: &GuestPath) -> bool {
        self.id_of(path) == Some(self.fd_dir)
    }

    // ---------------------------------------------------------------------------------------------------------
    // Host answers.

    /// The host path of a path on mount `m`: the mount's host path joined with the names below its guest path.
    fn host_path_of(&self, path: &GuestPath, m: u32) -> PathBuf {
        let mount = &self.mounts[m as usize];
        let mut hp = mount.host.clone();
        for c in &path.components()[mount.guest.len()..] {
            hp.push(std::ffi::OsStr::from_bytes(c));
        }
        hp
    }

    /// The host's answer for a path on a mount, asking the host for each directory between the mount's root and
    /// it that was not asked about yet (top-down, so the questions come in the same order on replay). None when
    /// the path is on no mount or some directory above it is not a real host directory (a link the host would
    /// follow, a file, nothing): then no host path is formed at all.
    fn host_meta(
        &mut self,
        host: &mut dyn Host,
        path: &GuestPath,
    ) -> Option<Result<HostMetadata, Errno>> {
        let m = path.0.mount?;
        let mount_depth = self.mounts[m as usize].guest.len();
        let mut chain = Vec::new();
        let mut p = path.clone();
        let mut above = loop {
            if let Some(r) = self.id_of(&p).and_then(|id| self.host_cache.get(&id)) {
                break Some(*r);
            }
            chain.push(p.clone());
            if p.depth() <= mount_depth {
                break None;
            }
            p = p.parent();
        };
        for q in chain.iter().rev() {
            if let Some(r) = above {
                match r {
                    Ok(md) if md.kind == HostKind::Dir => {}
                    _ => return None,
                }
            }
            let r = host.metadata(&self.host_path_of(q, m));
            let id = self.intern(q);
            self.host_cache.insert(id, r);
            above = Some(r);
        }
        above
    }

    // ---------------------------------------------------------------------------------------------------------
    // Lookup and resolution.

    /// The node at a canonical guest path, without following a final link.
    pub fn lookup(&mut self, host: &mut dyn Host, path: &GuestPath) -> Option<Node> {
        let id = self.id_of(path);
        if let Some(e) = id.and_then(|id| self.overlay.get(&id)) {
            return match e {
                OverlayEntry::File(f) => Some(Node::MemoryFile(f.clone())),
                OverlayEntry::Dir(a) => Some(Node::Dir(Origin::Overlay(*a))),
                OverlayEntry::Symlink(t, a) => Some(Node::Symlink {
                    target: t.clone(),
                    origin: Origin::Overlay(*a),
                }),
                OverlayEntry::Socket(a) => Some(Node::Socket(*a)),
                OverlayEntry::Whiteout => None,
            };
        }
        match self.synthetic(id) {
            Some(Synthetic::Device(d)) => return Some(Node::Device(d)),
            Some(Synthetic::Info(f)) => return Some(Node::Info(f)),
            Some(Synthetic::ExeLink) => {
                return Some(Node::Symlink {
                    target: self.exe_path.clone(),
                    origin: Origin::Synthetic,
                })
            }
            Some(Synthetic::Link(target)) => {
                return Some(Node::Symlink {
                    target: target.to_vec(),
                    origin: Origin::Synthetic,
                })
            }
            _ => {}
        }
        if let Some(fd) = self.fd_entry(path) {
            return Some(Node::Fd(fd));
        }
        if let Some(Ok(md)) = self.host_meta(host, path) {
            let m = path
                .0
                .mount
                .expect("a host answer is for a path on a mount");
            return Some(match md.kind {
                HostKind::File => Node::HostFile {
                    host: self.host_path_of(path, m),
                    md,
                },
                HostKind::Dir => Node::Dir(Origin::Host(md)),
                HostKind::Symlink => match host.read_link(&self.host_path_of(path, m)) {
                    Ok(target) => Node::Symlink {
                        target,
                        origin: Origin::Host(md),
                    },
                    Err(_) => return None,
                },
                // Devices, sockets and FIFOs of the host are not passed through.
                HostKind::Other => return None,
            });
        }
        if self.synthetic(id) == Some(Synthetic::Dir) {
            return Some(Node::Dir(Origin::Synthetic));
        }
        None
    }

    /// Resolves `path` relative to the directory `base`. With `follow_last`, a link in the final component is
    /// followed too (stat, open); without it, the link itself is returned (lstat, readlink, unlink).
    /// /proc/self/fd/N resolves to nothing: there is no calling process (the kernel uses `resolve_with_fds`).
    pub fn resolve(
        &mut self,
        host: &mut dyn Host,
        base: &GuestPath,
        path: &[u8],
        follow_last: bool,
    ) -> Result<Resolved, Errno> {
        self.resolve_with_fds(host, base, path, follow_last, &|_| FdLink::Closed)
    }

    /// `resolve` for a process whose descriptor N `fds(N)` describes: /proc/self/fd/N (and /dev/stdin and the
    /// other links into it) leads to the descriptor's file by its path, as a link would; a descriptor without a
    /// path ends the walk at `Node::Fd(N)` (the caller opens or stats the description itself).
    pub fn resolve_with_fds(
        &mut self,
        host: &mut dyn Host,
        base: &GuestPath,
        path: &[u8],
        follow_last: bool,
        fds: &dyn Fn(i32) -> FdLink,
    ) -> Result<Resolved, Errno> {
        if path.is_empty() {
            return Err(ENOENT);
        }
        if path.len() > PATH_BYTES_MAX {
            return Err(ENAMETOOLONG);
        }
        let mut cur = if path[0] == b'/' {
            self.root()
        } else {
            base.clone()
        };
        let must_be_dir = path.ends_with(b"/");
        let mut todo = split(path);
        let mut links = 0u32;
        let mut node = None;
        let mut looked_up = false;
        while let Some(c) = todo.pop_front() {
            if c == b"." {
                continue;
            }
            if c == b".." {
                cur = cur.parent();
                looked_up = false;
                continue;
            }
            if c.len() > NAME_BYTES_MAX {
                return Err(ENAMETOOLONG);
            }
            cur = self.child(&cur, &c);
            let last = todo.iter().all(|c| c == b".");
            node = self.lookup(host, &cur);
            looked_up = true;
            let fd_link = match &node {
                Some(Node::Fd(n)) => Some(fds(*n)),
                _ => None,
            };
            match fd_link {
                Some(FdLink::Closed) => node = None,
                Some(FdLink::Path(target)) if !last || follow_last || must_be_dir => {
                    links += 1;
                    if links > SYMLINKS_MAX {
                        return Err(ELOOP);
                    }
                    cur = self.root();
                    let mut spliced = split(&target.text());
                    spliced.extend(todo);
                    todo = spliced;
                    looked_up = false;
                    continue;
                }
                Some(FdLink::Anonymous) if !last => return Err(ENOTDIR),
                _ => {}
            }
            match &node {
                None if last => {
                    return Ok(Resolved {
                        path: cur,
                        node: None,
                    })
                }
                None => return Err(ENOENT),
                Some(Node::Symlink { target, .. }) if !last || follow_last || must_be_dir => {
                    links += 1;
                    if links > SYMLINKS_MAX {
                        return Err(ELOOP);
                    }
                    cur = if target.first() == Some(&b'/') {
                        self.root()
                    } else {
                        cur.parent()
                    };
                    let mut spliced = split(target);
                    spliced.extend(todo);
                    todo = spliced;
                    looked_up = false;
                }
                Some(n) if !last && !n.is_dir() => {
                    // A ".." after a file is still an error, as on Linux.
                    return Err(ENOTDIR);
                }
                Some(_) => {}
            }
        }
        if !looked_up {
            node = self.lookup(host, &cur);
        }
        if must_be_dir && node.as_ref().is_some_and(|n| !n.is_dir()) {
            return Err(ENOTDIR);
        }
        Ok(Resolved { path: cur, node })
    }

    // ---------------------------------------------------------------------------------------------------------
    // Metadata.

    /// The attributes older tandems showed for every node (owner 1000, the epoch as every time, the path's hash
    /// as inode number): what a host answer without stat(2) (a trace of format 4 or older) still gets.
    fn legacy_attrs(&self, path: &GuestPath, mode: u32) -> Attrs {
        Attrs {
            mode,
            uid: super::GUEST_UID as u32,
            gid: super::GUEST_GID as u32,
            atime: self.epoch,
            mtime: self.epoch,
            ctime: self.epoch,
            ino: inode_of(&path.text()),
        }
    }

    /// Fresh attributes for a node the guest creates now.
    pub fn new_attrs(&mut self, mode: u32, now: Timespec) -> Attrs {
        let ino = self.next_ino;
        self.next_ino += 1;
        Attrs {
            mode: mode & 0o7777,
            uid: super::GUEST_UID as u32,
            gid: super::GUEST_GID as u32,
            atime: now,
            mtime: now,
            ctime: now,
            ino,
        }
    }

    /// The link count of a directory: `base` (the host's count when `base_is_host`, which counts the host's
    /// subdirectories, else 2) plus one for each subdirectory it has now that `base` does not count, minus one for
    /// each that `base` counts and the overlay removed. Only the interned children can differ from the host.
    fn dir_nlink(&self, path: &GuestPath, base: u64, base_is_host: bool) -> u64 {
        let Some(id) = self.id_of(path) else {
            return base;
        };
        let table = self.table.borrow();
        let mut n = base as i64;
        for &child in table.entries[id as usize].children.values() {
            let host_dir =
                matches!(self.host_cache.get(&child), Some(Ok(md)) if md.kind == HostKind::Dir);
            let e = &table.entries[child as usize];
            let is_dir = match self.overlay.get(&child) {
                Some(OverlayEntry::Dir(_)) => true,
                Some(_) => false,
                None => {
                    host_dir
                        || e.synthetic == Some(Synthetic::Dir)
                        || (e.mount_here.is_some() && !self.host_cache.contains_key(&child))
                }
            };
            let counted = base_is_host && host_dir;
            n += is_dir as i64 - counted as i64;
        }
        n.max(1) as u64
    }

    /// What stat(2) shows for the regular file at the canonical `path` if the file system already knows it (an
    /// overlay file, or a host file looked up before), without asking the host: a caller that must not add host
    /// calls to a run (they are inputs, replayed in order) uses it.
    pub fn stat_known(&self, path: &GuestPath) -> Option<Stat> {
        let id = self.id_of(path)?;
        if let Some(OverlayEntry::File(f)) = self.overlay.get(&id) {
            return Some(self.stat(path, &Node::MemoryFile(f.clone())));
        }
        match self.host_cache.get(&id)? {
            Ok(md) if md.kind == HostKind::File => Some(self.stat(
                path,
                &Node::HostFile {
                    host: PathBuf::new(),
                    md: *md,
                },
            )),
            _ => None,
        }
    }

    /// What stat(2) shows for `node` at `path`.
    pub fn stat(&self, path: &GuestPath, node: &Node) -> Stat {
        let overlay = |a: &Attrs, type_bits: u32, nlink: u64, size: u64, blocks: u64| Stat {
            dev: GUEST_DEV,
            ino: a.ino,
            mode: type_bits | (a.mode & 0o7777),
            nlink,
            uid: a.uid,
            gid: a.gid,
            rdev: 0,
            size_bytes: size,
            blksize: 4096,
            blocks,
            atime: a.atime,
            mtime: a.mtime,
            ctime: a.ctime,
        };
        let host = |md: &HostMetadata, type_bits: u32, legacy_nlink: u64| match md.stat {
            Some(s) => Stat {
                dev: s.dev,
                ino: s.ino,
                mode: type_bits | (md.mode & 0o7777),
                nlink: s.nlink,
                uid: s.uid,
                gid: s.gid,
                rdev: 0,
                size_bytes: md.size_bytes,
                blksize: s.blksize,
                blocks: s.blocks,
                atime: s.atime,
                mtime: s.mtime,
                ctime: s.ctime,
            },
            None => {
                let legacy = self.legacy_attrs(path, md.mode);
                let mut st = overlay(&legacy, type_bits, legacy_nlink, md.size_bytes, 0);
                st.blocks = md.size_bytes.div_ceil(512);
                st.mode = type_bits | (md.mode & 0o7777);
                st
            }
        };
        let synthetic = |mode: u32, size: u64| Stat {
            dev: GUEST_DEV,
            ino: inode_of(&path.text()),
            mode,
            nlink: 1,
            uid: 0,
            gid: 0,
            rdev: 0,
            size_bytes: size,
            blksize: 4096,
            blocks: 0,
            atime: self.epoch,
            mtime: self.epoch,
            ctime: self.epoch,
        };
        match node {
            Node::MemoryFile(f) => {
                let f = f.borrow();
                let size = f.bytes.len() as u64;
                match &f.host {
                    Some(md) => {
                        let mut st = host(md, S_IFREG, 1);
                        st.size_bytes = size;
                        st
                    }
                    None => overlay(&f.attrs, S_IFREG, f.nlink, size, size.div_ceil(4096) * 8),
                }
            }
            Node::HostFile { md, .. } => host(md, S_IFREG, 1),
            Node::Dir(Origin::Overlay(a)) => {
                overlay(a, S_IFDIR, self.dir_nlink(path, 2, false), 4096, 8)
            }
            Node::Dir(Origin::Host(md)) => {
                let mut st = host(md, S_IFDIR, 2);
                if md.stat.is_some() {
                    st.nlink = self.dir_nlink(path, st.nlink, true);
                } else {
                    // Older tandems showed 2 and a size of 4096 for every directory.
                    st.size_bytes = 4096;
                    st.blocks = 8;
                }
                st
            }
            Node::Dir(Origin::Synthetic) => {
                let tmp = path.depth() == 1 && path.name() == b"tmp";
                let mut st = synthetic(S_IFDIR | if tmp { 0o1777 } else { 0o755 }, 4096);
                st.nlink = self.dir_nlink(path, 2, false);
                st.blocks = 8;
                st
            }
            Node::Symlink { target, origin } => {
                let len = target.len() as u64;
                match origin {
                    Origin::Overlay(a) => overlay(a, S_IFLNK, 1, len, 0),
                    Origin::Host(md) => {
                        let mut st = host(md, S_IFLNK, 1);
                        st.size_bytes = len;
                        st
                    }
                    Origin::Synthetic => {
                        let mut st = synthetic(S_IFLNK | 0o777, len);
                        st.uid = super::GUEST_UID as u32;
                        st.gid = super::GUEST_GID as u32;
                        st
                    }
                }
            }
            Node::Socket(a) => overlay(a, S_IFSOCK, 1, 0, 0),
            // The link itself (lstat): Linux shows these owned by the process, mode 0700, size 64.
            Node::Fd(_) => Stat {
                uid: super::GUEST_UID as u32,
                gid: super::GUEST_GID as u32,
                ..synthetic(S_IFLNK | 0o700, 64)
            },
            Node::Device(d) => {
                let minor = match d {
                    Device::Null => 3,
                    Device::Zero => 5,
                    Device::Random => 9,
                    // Beside /dev/kmsg (1:11): a minor that Linux's mem driver does not use.
                    Device::Mark => 12,
                };
                Stat {
                    rdev: (1 << 8) | minor,
                    ..synthetic(S_IFCHR | 0o666, 0)
                }
            }
            // Linux shows size 0 for generated files; readers read to EOF.
            Node::Info(_) => synthetic(S_IFREG | 0o444, 0),
        }
    }

    /// Changes the attributes of the node at `path` with `change`, which checks permissions and may refuse.
    /// Host nodes are on a read-only mount (EROFS); synthetic ones belong to root (EPERM, the guest is not root).
    pub fn change_attrs(
        &mut self,
        path: &GuestPath,
        node: &Node,
        change: impl FnOnce(&mut Attrs) -> Result<(), Errno>,
    ) -> Result<(), Errno> {
        match node {
            Node::MemoryFile(f) => {
                let mut f = f.borrow_mut();
                if f.host.is_some() {
                    return Err(EROFS);
                }
                change(&mut f.attrs)
            }
            Node::HostFile { .. }
            | Node::Dir(Origin::Host(_))
            | Node::Symlink {
                origin: Origin::Host(_),
                ..
            } => Err(EROFS),
            Node::Dir(Origin::Synthetic)
            | Node::Symlink {
                origin: Origin::Synthetic,
                ..
            }
            | Node::Device(_)
            | Node::Info(_)
            | Node::Fd(_) => Err(EPERM),
            Node::Dir(Origin::Overlay(_))
            | Node::Socket(_)
            | Node::Symlink {
                origin: Origin::Overlay(_),
                ..
            } => {
                let id = self.id_of(path).ok_or(ENOENT)?;
                match self.overlay.get_mut(&id) {
                    Some(OverlayEntry::Dir(a)) => change(a),
                    Some(OverlayEntry::Socket(a)) => change(a),
                    Some(OverlayEntry::Symlink(_, a)) => change(a),
                    _ => Err(ENOENT),
                }
            }
        }
    }

    // ---------------------------------------------------------------------------------------------------------
    // Directories.

    /// The names in a directory (without "." and ".."), each with its node, in the order `listing` gives.
    pub fn list_dir(
        &mut self,
        host: &mut dyn Host,
        path: &GuestPath,
    ) -> Result<Vec<(Vec<u8>, Node)>, Errno> {
        Ok(self
            .listing(host, path)?
            .into_iter()
            .filter_map(|entry| match entry {
                DirEntry::Named(name, node) => Some((name, node)),
                DirEntry::Dot | DirEntry::DotDot => None,
            })
            .collect())
    }

    /// A directory's entries in the order getdents gives them: a host directory's in the order the host lists
    /// them (its getdents order, which `find`, `ls -U` and `tar` show; "." and ".." where the host puts them, or
    /// first; sorted under `--normalize-metadata`), then the names only the guest made or the kernel provides,
    /// sorted.
    pub fn listing(
        &mut self,
        host: &mut dyn Host,
        path: &GuestPath,
    ) -> Result<Vec<DirEntry>, Errno> {
        match self.lookup(host, path) {
            Some(n) if n.is_dir() => {}
            Some(_) => return Err(ENOTDIR),
            None => return Err(ENOENT),
        }
        let mut names: Vec<Vec<u8>> = Vec::new();
        if let Some(Ok(md)) = self.host_meta(host, path) {
            if md.kind == HostKind::Dir {
                let m = path
                    .0
                    .mount
                    .expect("a host answer is for a path on a mount");
                names = host
                    .read_dir(&self.host_path_of(path, m))
                    .unwrap_or_default();
            }
        }
        if !names.iter().any(|n| n == b".") {
            names.insert(0, b".".to_vec());
        }
        if !names.iter().any(|n| n == b"..") {
            let after_dot = names.iter().position(|n| n == b".").map_or(0, |i| i + 1);
            names.insert(after_dot, b"..".to_vec());
        }
        // A host never lists a name twice, but a crafted trace might: keep the first of each.
        let mut seen: BTreeSet<Vec<u8>> = BTreeSet::new();
        names.retain(|n| seen.insert(n.clone()));
        if let Some(id) = self.id_of(path) {
            let table = self.table.borrow();
            // `children` is ordered by name, so what the guest added comes after the host's names, sorted.
            for (name, &child) in &table.entries[id as usize].children {
                let e = &table.entries[child as usize];
                if (e.synthetic.is_some()
                    || e.mount_here.is_some()
                    || matches!(self.overlay.get(&child), Some(e) if !matches!(e, OverlayEntry::Whiteout)))
                    && seen.insert(name.to_vec())
                {
                    names.push(name.to_vec());
                }
            }
        }
        let mut out = Vec::new();
        for name in names {
            match &name[..] {
                b"." => out.push(DirEntry::Dot),
                b".." => out.push(DirEntry::DotDot),
                _ => {
                    let child = self.child(path, &name);
                    if let Some(node) = self.lookup(host, &child) {
                        out.push(DirEntry::Named(name, node));
                    }
                }
            }
        }
        Ok(out)
    }

    // ---------------------------------------------------------------------------------------------------------
    // Changes (all to the overlay).

    /// The contents of a file node: shared bytes for overlay files, a read-only copy for host files.
    pub fn contents(&mut self, host: &mut dyn Host, node: &Node) -> Result<SharedFile, Errno> {
        match node {
            Node::MemoryFile(f) => Ok(f.clone()),
            Node::HostFile { host: hp, md } => Ok(Shared::new(FileData {
                bytes: host.read_file(hp)?,
                attrs: Attrs {
                    mode: md.mode,
                    ..self.legacy_attrs(&self.root, md.mode)
                },
                nlink: 1,
                host: Some(*md),
                locks: Default::default(),
            })),
            Node::Dir(_) => Err(EISDIR),
            _ => Err(EINVAL),
        }
    }

    /// The overlay file at `path`, copying a host file up first (with the host's owner, mode, times and inode
    /// number) if it is still on its mount.
    pub fn copy_up(
        &mut self,
        host: &mut dyn Host,
        path: &GuestPath,
        node: &Node,
    ) -> Result<SharedFile, Errno> {
        match node {
            Node::MemoryFile(f) if f.borrow().host.is_none() => Ok(f.clone()),
            Node::HostFile { host: hp, md } => {
                let bytes = host.read_file(hp)?;
                let f = Shared::new(FileData {
                    bytes,
                    attrs: Attrs::of_host(md, || self.legacy_attrs(path, md.mode)),
                    nlink: 1,
                    host: None,
                    locks: Default::default(),
                });
                self.put_file(path, f.clone());
                Ok(f)
            }
            Node::Dir(_) => Err(EISDIR),
            _ => Err(EINVAL),
        }
    }

    /// Makes `path` a name of the overlay file `file` (a new file, a copied-up one, or another link to it).
    pub fn put_file(&mut self, path: &GuestPath, file: SharedFile) {
        let id = self.intern(path);
        self.overlay.insert(id, OverlayEntry::File(file));
    }

    pub fn make_dir(&mut self, path: &GuestPath, attrs: Attrs) {
        let id = self.intern(path);
        self.overlay.insert(id, OverlayEntry::Dir(attrs));
    }

    pub fn make_symlink(&mut self, path: &GuestPath, target: Vec<u8>, attrs: Attrs) {
        let id = self.intern(path);
        self.overlay
            .insert(id, OverlayEntry::Symlink(target, attrs));
    }

    /// Makes `path` a socket node (bind(2) of an AF_UNIX path name).
    pub fn make_socket(&mut self, path: &GuestPath, attrs: Attrs) {
        let id = self.intern(path);
        self.overlay.insert(id, OverlayEntry::Socket(attrs));
    }

    /// Whether something below the overlay (a host node or a synthetic one) has this path.
    fn has_lower(&self, id: PathId) -> bool {
        let table = self.table.borrow();
        let e = &table.entries[id as usize];
        e.synthetic.is_some()
            || e.mount_here.is_some()
            || matches!(self.host_cache.get(&id), Some(Ok(_)))
    }

    /// Removes the name `path` (the caller checked that it exists and is of the right kind): a file loses a
    /// link; a whiteout hides a node below the overlay, and an overlay-only name is simply dropped.
    pub fn remove(&mut self, path: &GuestPath, now: Timespec) {
        let id = self.intern(path);
        if let Some(OverlayEntry::File(f)) = self.overlay.get(&id) {
            let mut f = f.borrow_mut();
            f.nlink = f.nlink.saturating_sub(1);
            f.attrs.ctime = now;
        }
        if self.has_lower(id) {
            self.overlay.insert(id, OverlayEntry::Whiteout);
        } else {
            self.overlay.remove(&id);
        }
    }

    /// The overlay entries below `from`, each with the path it gets below `to`, parents before children. Linear
    /// in the size of the subtree, whatever its depth (each new path is its parent's plus a name).
    fn moved_descendants(&self, from: &GuestPath, to: &GuestPath) -> Vec<(PathId, GuestPath)> {
        let Some(id) = self.id_of(from) else {
            return Vec::new();
        };
        let table = self.table.borrow();
        let mut out = Vec::new();
        let mut stack: Vec<(PathId, GuestPath)> = vec![(id, to.clone())];
        while let Some((id, dest)) = stack.pop() {
            for (name, &child) in &table.entries[id as usize].children {
                let d = self.child(&dest, name);
                if self.overlay.contains_key(&child) {
                    out.push((child, d.clone()));
                }
                stack.push((child, d));
            }
        }
        out
    }

    /// Renames `from` to `to` (both canonical; the caller checked the target). Directories move only when they
    /// have no host contents.
    pub fn rename(
        &mut self,
        host: &mut dyn Host,
        from: &GuestPath,
        to: &GuestPath,
        now: Timespec,
    ) -> Result<(), Errno> {
        let node = self.lookup(host, from).ok_or(ENOENT)?;
        if to.starts_with(from) && to.depth() > from.depth() {
            return Err(EINVAL);
        }
        let replaced = self.lookup(host, to);
        match &node {
            Node::Dir(origin) => {
                let attrs = match origin {
                    Origin::Overlay(a) => *a,
                    Origin::Host(_) => return Err(EXDEV),
                    Origin::Synthetic => return Err(EBUSY),
                };
                for (id, dest) in self.moved_descendants(from, to) {
                    let e = self
                        .overlay
                        .get(&id)
                        .cloned()
                        .expect("listed entries exist");
                    if self.has_lower(id) {
                        self.overlay.insert(id, OverlayEntry::Whiteout);
                    } else {
                        self.overlay.remove(&id);
                    }
                    let dest_id = self.intern(&dest);
                    self.overlay.insert(dest_id, e);
                }
                self.make_dir(
                    to,
                    Attrs {
                        ctime: now,
                        ..attrs
                    },
                );
            }
            Node::Symlink { target, origin } => {
                let attrs = match origin {
                    Origin::Overlay(a) => *a,
                    _ => self.new_attrs(0o777, now),
                };
                self.make_symlink(to, target.clone(), attrs);
            }
            Node::Device(_) | Node::Info(_) | Node::Fd(_) => return Err(EXDEV),
            // The node keeps its inode, so the socket bound to it stays reachable under the new name.
            Node::Socket(a) => {
                let a = Attrs { ctime: now, ..*a };
                self.make_socket(to, a);
            }
            Node::MemoryFile(_) | Node::HostFile { .. } => {
                let f = self.copy_up(host, from, &node)?;
                if let Some(Node::MemoryFile(old)) = &replaced {
                    if !Shared::ptr_eq(old, &f) {
                        let mut old = old.borrow_mut();
                        old.nlink = old.nlink.saturating_sub(1);
                        old.attrs.ctime = now;
                    }
                }
                f.borrow_mut().attrs.ctime = now;
                // The file keeps its link count: one name goes, one comes.
                f.borrow_mut().nlink += 1;
                self.put_file(to, f);
            }
        }
        self.remove(from, now);
        Ok(())
    }

    /// Bytes held by the names of the path table and the overlay's keys: linear in the number of paths kept,
    /// whatever their depth (the test of nested directories checks it).
    pub fn name_bytes(&self) -> usize {
        let table = self.table.borrow();
        table
            .entries
            .iter()
            .map(|e| e.children.keys().map(|k| k.len()).sum::<usize>())
            .sum::<usize>()
            + self.overlay.len() * std::mem::size_of::<PathId>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linux::host::MemoryHost;

    fn setup() -> (Vfs, MemoryHost) {
        let mut h = MemoryHost::new(1);
        h.add_file("/srv/data/a.txt", b"alpha");
        h.add_file("/srv/data/sub/b.txt", b"beta");
        h.add_file("/srv/secret.txt", b"secret");
        h.add_file("/etc/passwd", b"root");
        h.add_symlink("/srv/data/up", "../secret.txt");
        h.add_symlink("/srv/data/abs", "/etc/passwd");
        h.add_symlink("/srv/data/dirlink", "/srv");
        h.add_symlink("/srv/data/loop", "loop");
        let vfs = Vfs::new(
            vec![Mount {
                guest: split(b"/data").into(),
                host: PathBuf::from("/srv/data"),
            }],
            b"/bin/prog".to_vec(),
            0,
        );
        (vfs, h)
    }

    fn read(vfs: &mut Vfs, h: &mut MemoryHost, path: &str) -> Result<Vec<u8>, Errno> {
        let root = vfs.root();
        let r = vfs.resolve(h, &root, path.as_bytes(), true)?;
        let node = r.node.ok_or(ENOENT)?;
        let f = vfs.contents(h, &node)?;
        let b = f.borrow().bytes.to_vec();
        Ok(b)
    }

    fn attrs(vfs: &mut Vfs) -> Attrs {
        vfs.new_attrs(0o644, Timespec::default())
    }

    #[test]
    fn mounted_files_are_readable() {
        let (mut vfs, mut h) = setup();
        assert_eq!(read(&mut vfs, &mut h, "/data/a.txt").unwrap(), b"alpha");
        assert_eq!(
            read(&mut vfs, &mut h, "/data/sub/../sub/./b.txt").unwrap(),
            b"beta"
        );
        let data = vfs.path_of(b"/data");
        let names: Vec<Vec<u8>> = vfs
            .list_dir(&mut h, &data)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let expected: Vec<Vec<u8>> = ["a.txt", "abs", "dirlink", "loop", "sub", "up"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        assert_eq!(names, expected, "links are listed as links, sorted");
        let root = vfs.root();
        let names: Vec<Vec<u8>> = vfs
            .list_dir(&mut h, &root)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            names,
            [&b"data"[..], b"dev", b"proc", b"sys", b"tmp"].map(|s| s.to_vec()),
            "the root lists the mount point and the synthetic directories"
        );
    }

    #[test]
    fn dot_dot_and_links_never_escape_the_mount() {
        let (mut vfs, mut h) = setup();
        for p in [
            "/data/../secret.txt",
            "/data/../../../srv/secret.txt",
            "/data/sub/../../secret.txt",
            "/../srv/secret.txt",
            "/srv/secret.txt",
            "/etc/passwd",
            "/data/up",
            "/data/abs",
            "/data/dirlink/secret.txt",
            "/data/../../etc/passwd",
        ] {
            assert_eq!(read(&mut vfs, &mut h, p), Err(ENOENT), "{p} escaped");
        }
        assert_eq!(read(&mut vfs, &mut h, "/data/loop"), Err(ELOOP));
        // Relative paths from inside the mount climb no higher than the guest root either.
        let base = vfs.path_of(b"/data/sub");
        let r = vfs
            .resolve(&mut h, &base, b"../../../../secret.txt", true)
            .unwrap();
        assert_eq!(r.path.text(), b"/secret.txt");
        assert!(r.node.is_none());
    }

    #[test]
    fn writes_go_to_the_overlay_and_hide_nothing_on_the_host() {
        let (mut vfs, mut h) = setup();
        let path = vfs.path_of(b"/data/a.txt");
        let node = vfs.lookup(&mut h, &path).unwrap();
        let f = vfs.copy_up(&mut h, &path, &node).unwrap();
        Arc::make_mut(&mut f.borrow_mut().bytes).extend_from_slice(b"!");
        assert_eq!(read(&mut vfs, &mut h, "/data/a.txt").unwrap(), b"alpha!");
        assert_eq!(
            h.files[&PathBuf::from("/srv/data/a.txt")],
            crate::linux::host::MemoryNode::File(b"alpha".to_vec())
        );
        vfs.remove(&path, Timespec::default());
        assert_eq!(read(&mut vfs, &mut h, "/data/a.txt"), Err(ENOENT));
        let tmp = vfs.path_of(b"/tmp/x");
        let a = attrs(&mut vfs);
        vfs.put_file(&tmp, Shared::new(FileData::new(b"x".to_vec(), a)));
        let y = vfs.path_of(b"/tmp/y");
        vfs.rename(&mut h, &tmp, &y, Timespec::default()).unwrap();
        assert_eq!(read(&mut vfs, &mut h, "/tmp/y").unwrap(), b"x");
        assert_eq!(read(&mut vfs, &mut h, "/tmp/x"), Err(ENOENT));
        // An overlay-only name that is removed leaves nothing behind; a host one leaves a whiteout.
        vfs.remove(&y, Timespec::default());
        let y_id = vfs.id_of(&y).unwrap();
        assert!(!vfs.overlay.contains_key(&y_id));
        let a_id = vfs.id_of(&path).unwrap();
        assert!(matches!(
            vfs.overlay.get(&a_id),
            Some(OverlayEntry::Whiteout)
        ));
    }

    #[test]
    fn a_directory_renamed_takes_its_overlay_contents_along() {
        let (mut vfs, mut h) = setup();
        let d = vfs.path_of(b"/tmp/d");
        let a = attrs(&mut vfs);
        vfs.make_dir(&d, a);
        let inner = vfs.path_of(b"/tmp/d/e/f");
        let a = attrs(&mut vfs);
        vfs.make_dir(&inner.parent(), a);
        let a = attrs(&mut vfs);
        vfs.put_file(&inner, Shared::new(FileData::new(b"deep".to_vec(), a)));
        let moved = vfs.path_of(b"/tmp/m");
        vfs.rename(&mut h, &d, &moved, Timespec::default()).unwrap();
        assert_eq!(read(&mut vfs, &mut h, "/tmp/m/e/f").unwrap(), b"deep");
        assert_eq!(read(&mut vfs, &mut h, "/tmp/d/e/f"), Err(ENOENT));
        let node = vfs.lookup(&mut h, &moved).unwrap();
        let st = vfs.stat(&moved, &node);
        assert_eq!(st.nlink, 3, "2 plus its one subdirectory");
        // A host directory does not move.
        let sub = vfs.path_of(b"/data/sub");
        let to = vfs.path_of(b"/tmp/sub");
        assert_eq!(
            vfs.rename(&mut h, &sub, &to, Timespec::default()),
            Err(EXDEV)
        );
    }

    #[test]
    fn deep_paths_drop_and_move_without_deep_recursion_or_quadratic_work() {
        let (mut vfs, mut h) = setup();
        // A million levels: dropping the chain must not recurse once per level (a test thread has 2 MiB).
        let mut p = vfs.path_of(b"/tmp");
        for _ in 0..1_000_000 {
            p = vfs.child(&p, b"d");
        }
        assert_eq!(p.depth(), 1_000_001);
        drop(p);
        // A deep overlay chain renamed as a whole keeps its shape.
        let top = vfs.path_of(b"/tmp/top");
        let mut p = top.clone();
        for _ in 0..20_000 {
            let a = attrs(&mut vfs);
            vfs.make_dir(&p, a);
            p = vfs.child(&p, b"d");
        }
        let a = attrs(&mut vfs);
        vfs.put_file(&p, Shared::new(FileData::new(b"leaf".to_vec(), a)));
        let moved = vfs.path_of(b"/tmp/moved");
        vfs.rename(&mut h, &top, &moved, Timespec::default())
            .unwrap();
        let mut q = moved;
        for _ in 0..20_000 {
            assert!(vfs.lookup(&mut h, &q).is_some_and(|n| n.is_dir()));
            q = vfs.child(&q, b"d");
        }
        assert!(matches!(vfs.lookup(&mut h, &q), Some(Node::MemoryFile(_))));
        assert!(vfs.lookup(&mut h, &top).is_none());
    }

    #[test]
    fn paths_compare_by_components_and_know_their_mount() {
        let (vfs, _) = setup();
        let a = vfs.path_of(b"/data/sub/x");
        let b = vfs.child(&vfs.child(&vfs.path_of(b"/data"), b"sub"), b"x");
        assert_eq!(a, b);
        assert_ne!(a, vfs.path_of(b"/data/sub/y"));
        assert!(a.starts_with(&vfs.path_of(b"/data")));
        assert!(!a.starts_with(&vfs.path_of(b"/dat")));
        assert_eq!(a.0.mount, Some(0));
        assert_eq!(vfs.path_of(b"/tmp/x").0.mount, None);
        assert_eq!(vfs.path_of(b"/data/../tmp").text(), b"/tmp");
        assert_eq!(vfs.root().parent().text(), b"/");
    }

    /// A mount at / is the guest's root: the host's files show through it, but /dev, /proc, /sys and /tmp stay
    /// the guest's own (the host's /tmp/x and /dev/sda are not seen), and a mount inside them still applies.
    #[test]
    fn a_root_mount_leaves_the_guests_own_directories_alone() {
        let mut h = MemoryHost::new(1);
        h.add_file("/host/etc/passwd", b"root");
        h.add_file("/host/tmp/x", b"host tmp");
        h.add_file("/host/dev/sda", b"disk");
        h.add_file("/host/proc/version", b"host kernel");
        h.add_file("/elsewhere/tmp-data", b"mounted");
        let mut vfs = Vfs::new(
            vec![
                Mount {
                    guest: Vec::new(),
                    host: PathBuf::from("/host"),
                },
                Mount {
                    guest: split(b"/tmp/in").into(),
                    host: PathBuf::from("/elsewhere"),
                },
            ],
            b"/bin/prog".to_vec(),
            0,
        );
        assert_eq!(read(&mut vfs, &mut h, "/etc/passwd").unwrap(), b"root");
        assert_eq!(read(&mut vfs, &mut h, "/tmp/x").unwrap(), b"host tmp");
        assert_eq!(read(&mut vfs, &mut h, "/dev/sda"), Err(ENOENT));
        assert_eq!(read(&mut vfs, &mut h, "/proc/version"), Err(ENOENT));
        assert_eq!(
            read(&mut vfs, &mut h, "/tmp/in/tmp-data").unwrap(),
            b"mounted"
        );
        assert!(vfs.path_of(b"/tmp/x").0.mount.is_some());
        assert!(vfs.path_of(b"/etc/passwd").0.mount.is_some());
        // The root's listing has the host's names (in the host's order) and then the guest's own directories the
        // host lacks, once each.
        let root = vfs.root();
        let names: Vec<Vec<u8>> = vfs
            .list_dir(&mut h, &root)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let expected: Vec<&[u8]> = vec![b"dev", b"etc", b"proc", b"tmp", b"sys"];
        assert_eq!(names, expected);
    }
}
