//! The guest's file system: an in-memory overlay over read-only mounts of host paths, plus a few synthetic nodes
//! (/dev/null, /dev/zero, /dev/urandom, /proc/self/exe, /tmp).
//!
//! Key decisions:
//! - Paths are resolved here, one component at a time, in the guest's name space: `.` and `..` are applied to the
//!   guest path (`..` at the root stays at the root), and a symbolic link, whether in the overlay or on a mount,
//!   is read and spliced into the remaining guest path; an absolute target restarts at the guest root. A host path
//!   is only ever formed as `mount.host` joined with plain names whose every prefix was seen to be a real host
//!   directory (not a link), so no guest path reaches a host file outside a mount.
//! - The host is never written. Creating, writing, truncating, renaming or deleting goes to the overlay: a host
//!   file is copied up on its first write, a deletion leaves a whiteout.
//! - Names in listings are sorted, inode numbers are a hash of the guest path, and times are fixed: nothing of the
//!   host's own order, inode numbers or clocks reaches the guest.
//!
//! It must not: call the host for anything but the `Host` methods, or follow host symbolic links on the host side.

use super::abi::*;
use super::host::{Host, HostKind, HostMetadata};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

/// Most symbolic links followed while resolving one path (Linux's MAXSYMLINKS).
pub const SYMLINKS_MAX: u32 = 40;
/// Longest path accepted (PATH_MAX) and longest name (NAME_MAX).
pub const PATH_BYTES_MAX: usize = 4096;
pub const NAME_BYTES_MAX: usize = 255;

/// A path in the guest's name space: its components, without `.`, `..` or empty ones.
pub type GuestPath = Vec<Vec<u8>>;

/// The bytes and mode of a file held in memory. Shared by every open file description of it.
#[derive(Debug)]
pub struct FileData {
    /// Shared copy-on-write with the copies snapshots take (`Arc::make_mut` before a change), so a checkpoint
    /// of a run that opened a large file costs nothing for it; and with the recorder, which writes the same
    /// bytes into the trace on a thread of its own (hence `Arc`).
    pub bytes: Arc<Vec<u8>>,
    pub mode: u32,
}

pub type SharedFile = Rc<RefCell<FileData>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Null,
    Zero,
    Random,
}

/// What a guest path names.
#[derive(Clone, Debug)]
pub enum Node {
    /// A file in the overlay (created by the guest, or copied up from a mount).
    MemoryFile(SharedFile),
    /// A file on a mount, not yet copied up.
    HostFile {
        host: PathBuf,
        size_bytes: u64,
        mode: u32,
    },
    Dir {
        mode: u32,
    },
    Symlink(Vec<u8>),
    Device(Device),
}

impl Node {
    pub fn is_dir(&self) -> bool {
        matches!(self, Node::Dir { .. })
    }
}

#[derive(Clone, Debug)]
pub(super) enum OverlayEntry {
    File(SharedFile),
    Dir(u32),
    Symlink(Vec<u8>),
    /// Deleted: hides whatever a mount or a synthetic node has at this path.
    Whiteout,
}

/// A host path mounted read-only at a guest path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub guest: GuestPath,
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
    pub ino: u64,
    /// File type and permission bits.
    pub mode: u32,
    pub size_bytes: u64,
    pub nlink: u64,
    pub rdev: u64,
}

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

/// The inode number of a guest path: FNV-1a of its text, never 0.
pub fn inode_of(path: &[Vec<u8>]) -> u64 {
    let mut h = crate::memory::Fnv::new();
    h.write_bytes(&join(path));
    h.finish() | 1
}

pub struct Vfs {
    pub(super) mounts: Vec<Mount>,
    pub(super) overlay: BTreeMap<Vec<u8>, OverlayEntry>,
    /// Host metadata already asked for (mounts are read-only, so answers do not change during a run).
    pub(super) host_cache: BTreeMap<PathBuf, Result<HostMetadata, Errno>>,
    /// The guest path of the running program, for /proc/self/exe.
    pub(super) exe_path: Vec<u8>,
}

impl Vfs {
    pub fn new(mut mounts: Vec<Mount>, exe_path: Vec<u8>) -> Vfs {
        // Longest guest prefix first, so the innermost mount wins.
        mounts.sort_by(|a, b| {
            b.guest
                .len()
                .cmp(&a.guest.len())
                .then(a.guest.cmp(&b.guest))
        });
        Vfs {
            mounts,
            overlay: BTreeMap::new(),
            host_cache: BTreeMap::new(),
            // /proc/self/exe is always an absolute, clean path (glibc asserts it starts with '/').
            exe_path: join(&split(&exe_path).into_iter().collect::<Vec<_>>()),
        }
    }

    fn host_metadata(
        &mut self,
        host: &mut dyn Host,
        path: &PathBuf,
    ) -> Result<HostMetadata, Errno> {
        if let Some(r) = self.host_cache.get(path) {
            return *r;
        }
        let r = host.metadata(path);
        self.host_cache.insert(path.clone(), r);
        r
    }

    /// The mount holding `path` and the host path for it, after checking that every host directory between the
    /// mount's root and the path is a real directory (not a link the host would follow).
    fn host_path(&mut self, host: &mut dyn Host, path: &[Vec<u8>]) -> Option<PathBuf> {
        let m = self.mounts.iter().find(|m| path.starts_with(&m.guest))?;
        let mut hp = m.host.clone();
        let rest: Vec<Vec<u8>> = path[m.guest.len()..].to_vec();
        for (i, c) in rest.iter().enumerate() {
            if i > 0 {
                match self.host_metadata(host, &hp) {
                    Ok(md) if md.kind == HostKind::Dir => {}
                    _ => return None,
                }
            }
            hp.push(std::ffi::OsStr::from_bytes(c));
        }
        Some(hp)
    }

    fn is_synthetic_dir(&self, path: &[Vec<u8>]) -> bool {
        let text = join(path);
        matches!(
            text.as_slice(),
            b"/" | b"/dev" | b"/proc" | b"/proc/self" | b"/tmp"
        ) || self
            .mounts
            .iter()
            .any(|m| m.guest.len() > path.len() && m.guest.starts_with(path))
    }

    fn special(&self, path: &[Vec<u8>]) -> Option<Node> {
        Some(match join(path).as_slice() {
            b"/dev/null" => Node::Device(Device::Null),
            b"/dev/zero" => Node::Device(Device::Zero),
            b"/dev/urandom" | b"/dev/random" => Node::Device(Device::Random),
            b"/proc/self/exe" => Node::Symlink(self.exe_path.clone()),
            _ => return None,
        })
    }

    /// The node at a canonical guest path, without following a final link.
    pub fn lookup(&mut self, host: &mut dyn Host, path: &[Vec<u8>]) -> Option<Node> {
        if let Some(e) = self.overlay.get(&join(path)) {
            return match e {
                OverlayEntry::File(f) => Some(Node::MemoryFile(f.clone())),
                OverlayEntry::Dir(mode) => Some(Node::Dir { mode: *mode }),
                OverlayEntry::Symlink(t) => Some(Node::Symlink(t.clone())),
                OverlayEntry::Whiteout => None,
            };
        }
        if let Some(n) = self.special(path) {
            return Some(n);
        }
        if let Some(hp) = self.host_path(host, path) {
            if let Ok(md) = self.host_metadata(host, &hp) {
                return Some(match md.kind {
                    HostKind::File => Node::HostFile {
                        host: hp,
                        size_bytes: md.size_bytes,
                        mode: md.mode,
                    },
                    HostKind::Dir => Node::Dir { mode: md.mode },
                    HostKind::Symlink => match host.read_link(&hp) {
                        Ok(t) => Node::Symlink(t),
                        Err(_) => return None,
                    },
                    // Devices, sockets and FIFOs of the host are not passed through.
                    HostKind::Other => return None,
                });
            }
        }
        if self.is_synthetic_dir(path) {
            return Some(Node::Dir { mode: 0o755 });
        }
        None
    }

    /// Resolves `path` relative to the directory `base`. With `follow_last`, a link in the final component is
    /// followed too (stat, open); without it, the link itself is returned (lstat, readlink, unlink).
    pub fn resolve(
        &mut self,
        host: &mut dyn Host,
        base: &[Vec<u8>],
        path: &[u8],
        follow_last: bool,
    ) -> Result<Resolved, Errno> {
        if path.is_empty() {
            return Err(ENOENT);
        }
        if path.len() > PATH_BYTES_MAX {
            return Err(ENAMETOOLONG);
        }
        let mut cur: GuestPath = if path[0] == b'/' {
            Vec::new()
        } else {
            base.to_vec()
        };
        let must_be_dir = path.ends_with(b"/");
        let mut todo = split(path);
        let mut links = 0u32;
        while let Some(c) = todo.pop_front() {
            if c == b"." {
                continue;
            }
            if c == b".." {
                cur.pop();
                continue;
            }
            if c.len() > NAME_BYTES_MAX {
                return Err(ENAMETOOLONG);
            }
            cur.push(c);
            let last = todo.iter().all(|c| c == b".");
            match self.lookup(host, &cur) {
                None if last => {
                    return Ok(Resolved {
                        path: cur,
                        node: None,
                    })
                }
                None => return Err(ENOENT),
                Some(Node::Symlink(target)) if !last || follow_last || must_be_dir => {
                    links += 1;
                    if links > SYMLINKS_MAX {
                        return Err(ELOOP);
                    }
                    cur.pop();
                    if target.first() == Some(&b'/') {
                        cur.clear();
                    }
                    let mut spliced = split(&target);
                    spliced.extend(todo);
                    todo = spliced;
                }
                Some(n) if !last && !n.is_dir() => {
                    // A ".." after a file is still an error, as on Linux.
                    return Err(ENOTDIR);
                }
                Some(_) => {}
            }
        }
        let node = self.lookup(host, &cur);
        if must_be_dir && node.as_ref().is_some_and(|n| !n.is_dir()) {
            return Err(ENOTDIR);
        }
        Ok(Resolved { path: cur, node })
    }

    pub fn stat(&self, path: &[Vec<u8>], node: &Node) -> Stat {
        let ino = inode_of(path);
        let (mode, size_bytes, rdev) = match node {
            Node::MemoryFile(f) => {
                let f = f.borrow();
                (S_IFREG | (f.mode & 0o7777), f.bytes.len() as u64, 0)
            }
            Node::HostFile {
                size_bytes, mode, ..
            } => (S_IFREG | (mode & 0o7777), *size_bytes, 0),
            Node::Dir { mode } => (S_IFDIR | (mode & 0o7777), 4096, 0),
            Node::Symlink(t) => (S_IFLNK | 0o777, t.len() as u64, 0),
            Node::Device(d) => {
                let minor = match d {
                    Device::Null => 3,
                    Device::Zero => 5,
                    Device::Random => 9,
                };
                (S_IFCHR | 0o666, 0, (1 << 8) | minor)
            }
        };
        Stat {
            ino,
            mode,
            size_bytes,
            nlink: if node.is_dir() { 2 } else { 1 },
            rdev,
        }
    }

    /// The names in a directory (without "." and ".."), sorted, each with its node.
    pub fn list_dir(
        &mut self,
        host: &mut dyn Host,
        path: &[Vec<u8>],
    ) -> Result<Vec<(Vec<u8>, Node)>, Errno> {
        match self.lookup(host, path) {
            Some(n) if n.is_dir() => {}
            Some(_) => return Err(ENOTDIR),
            None => return Err(ENOENT),
        }
        let mut names: BTreeSet<Vec<u8>> = BTreeSet::new();
        if let Some(hp) = self.host_path(host, path) {
            if let Ok(md) = self.host_metadata(host, &hp) {
                if md.kind == HostKind::Dir {
                    names.extend(host.read_dir(&hp).unwrap_or_default());
                }
            }
        }
        let mut prefix = join(path);
        if prefix != b"/" {
            prefix.push(b'/');
        }
        for key in self.overlay.keys() {
            if let Some(rest) = key.strip_prefix(prefix.as_slice()) {
                if !rest.is_empty() && !rest.contains(&b'/') {
                    names.insert(rest.to_vec());
                }
            }
        }
        for m in &self.mounts {
            if m.guest.len() > path.len() && m.guest.starts_with(path) {
                names.insert(m.guest[path.len()].clone());
            }
        }
        let synthetic: &[&[u8]] = match join(path).as_slice() {
            b"/" => &[b"dev", b"proc", b"tmp"],
            b"/dev" => &[b"null", b"zero", b"urandom", b"random"],
            b"/proc" => &[b"self"],
            b"/proc/self" => &[b"exe"],
            _ => &[],
        };
        names.extend(synthetic.iter().map(|s| s.to_vec()));
        let mut out = Vec::new();
        for name in names {
            let mut child = path.to_vec();
            child.push(name.clone());
            if let Some(node) = self.lookup(host, &child) {
                out.push((name, node));
            }
        }
        Ok(out)
    }

    /// The contents of a file node: shared bytes for overlay files, a fresh copy for host files.
    pub fn contents(&mut self, host: &mut dyn Host, node: &Node) -> Result<SharedFile, Errno> {
        match node {
            Node::MemoryFile(f) => Ok(f.clone()),
            Node::HostFile { host: hp, mode, .. } => Ok(Rc::new(RefCell::new(FileData {
                bytes: host.read_file(hp)?,
                mode: *mode,
            }))),
            Node::Dir { .. } => Err(EISDIR),
            _ => Err(EINVAL),
        }
    }

    /// Makes `path` an overlay file holding `file` (creating it, or copying a host file up).
    pub fn put_file(&mut self, path: &[Vec<u8>], file: SharedFile) {
        self.overlay.insert(join(path), OverlayEntry::File(file));
    }

    pub fn make_dir(&mut self, path: &[Vec<u8>], mode: u32) {
        self.overlay.insert(join(path), OverlayEntry::Dir(mode));
    }

    pub fn make_symlink(&mut self, path: &[Vec<u8>], target: Vec<u8>) {
        self.overlay
            .insert(join(path), OverlayEntry::Symlink(target));
    }

    /// Removes the name `path` (the caller checked that it exists and is of the right kind).
    pub fn remove(&mut self, path: &[Vec<u8>]) {
        self.overlay.insert(join(path), OverlayEntry::Whiteout);
    }

    /// Renames `from` to `to` (both canonical). Directories move only when they have no host contents.
    pub fn rename(
        &mut self,
        host: &mut dyn Host,
        from: &[Vec<u8>],
        to: &[Vec<u8>],
    ) -> Result<(), Errno> {
        let node = self.lookup(host, from).ok_or(ENOENT)?;
        if to.starts_with(from) && to.len() > from.len() {
            return Err(EINVAL);
        }
        match &node {
            Node::Dir { mode } => {
                if self.host_path(host, from).is_some_and(|hp| {
                    self.host_metadata(host, &hp)
                        .is_ok_and(|m| m.kind == HostKind::Dir)
                }) {
                    return Err(EXDEV);
                }
                let mut old_prefix = join(from);
                old_prefix.push(b'/');
                let moved: Vec<(Vec<u8>, OverlayEntry)> = self
                    .overlay
                    .iter()
                    .filter(|(k, _)| k.starts_with(&old_prefix))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let mut new_prefix = join(to);
                new_prefix.push(b'/');
                for (k, v) in moved {
                    self.overlay.insert(k.clone(), OverlayEntry::Whiteout);
                    let mut nk = new_prefix.clone();
                    nk.extend_from_slice(&k[old_prefix.len()..]);
                    self.overlay.insert(nk, v);
                }
                self.make_dir(to, *mode);
            }
            Node::Symlink(t) => self.make_symlink(to, t.clone()),
            Node::Device(_) => return Err(EXDEV),
            Node::MemoryFile(_) | Node::HostFile { .. } => {
                let f = self.contents(host, &node)?;
                self.put_file(to, f);
            }
        }
        self.remove(from);
        Ok(())
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
        );
        (vfs, h)
    }

    fn read(vfs: &mut Vfs, h: &mut MemoryHost, path: &str) -> Result<Vec<u8>, Errno> {
        let r = vfs.resolve(h, &[], path.as_bytes(), true)?;
        let node = r.node.ok_or(ENOENT)?;
        let f = vfs.contents(h, &node)?;
        let b = f.borrow().bytes.to_vec();
        Ok(b)
    }

    #[test]
    fn mounted_files_are_readable() {
        let (mut vfs, mut h) = setup();
        assert_eq!(read(&mut vfs, &mut h, "/data/a.txt").unwrap(), b"alpha");
        assert_eq!(
            read(&mut vfs, &mut h, "/data/sub/../sub/./b.txt").unwrap(),
            b"beta"
        );
        let names: Vec<Vec<u8>> = vfs
            .list_dir(&mut h, &split(b"/data").into_iter().collect::<Vec<_>>())
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let expected: Vec<Vec<u8>> = ["a.txt", "abs", "dirlink", "loop", "sub", "up"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        assert_eq!(names, expected, "links are listed as links, sorted");
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
        let base: Vec<Vec<u8>> = split(b"/data/sub").into();
        let r = vfs
            .resolve(&mut h, &base, b"../../../../secret.txt", true)
            .unwrap();
        assert_eq!(join(&r.path), b"/secret.txt");
        assert!(r.node.is_none());
    }

    #[test]
    fn writes_go_to_the_overlay_and_hide_nothing_on_the_host() {
        let (mut vfs, mut h) = setup();
        let path: Vec<Vec<u8>> = split(b"/data/a.txt").into();
        let node = vfs.lookup(&mut h, &path).unwrap();
        let f = vfs.contents(&mut h, &node).unwrap();
        Arc::make_mut(&mut f.borrow_mut().bytes).extend_from_slice(b"!");
        vfs.put_file(&path, f);
        assert_eq!(read(&mut vfs, &mut h, "/data/a.txt").unwrap(), b"alpha!");
        assert_eq!(
            h.files[&PathBuf::from("/srv/data/a.txt")],
            crate::linux::host::MemoryNode::File(b"alpha".to_vec())
        );
        vfs.remove(&path);
        assert_eq!(read(&mut vfs, &mut h, "/data/a.txt"), Err(ENOENT));
        let tmp: Vec<Vec<u8>> = split(b"/tmp/x").into();
        vfs.put_file(
            &tmp,
            Rc::new(RefCell::new(FileData {
                bytes: Arc::new(b"x".to_vec()),
                mode: 0o600,
            })),
        );
        vfs.rename(
            &mut h,
            &tmp,
            &split(b"/tmp/y").into_iter().collect::<Vec<_>>(),
        )
        .unwrap();
        assert_eq!(read(&mut vfs, &mut h, "/tmp/y").unwrap(), b"x");
        assert_eq!(read(&mut vfs, &mut h, "/tmp/x"), Err(ENOENT));
    }
}
