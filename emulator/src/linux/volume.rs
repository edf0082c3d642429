//! The kernel's side of writable volumes (storage/): reading a volume's initial content from the host when the
//! machine starts, the I/O filter that reports each completed operation on a volume to its disk model and to the
//! machine's observer, and the volume as the guest sees it (for `--export` and the CDP oracle).
//!
//! Invariants: a volume is read from the host once, in sorted order, through `Host` only (`read_volume`), or
//! installed from the content its spec carries (a recording reads it before the run and keeps it in the trace's
//! volume chunks; a replay installs it from there), the same way in both cases; the guest then sees only the
//! overlay, never the host directory again.
//! Every operation reported completed is one the guest's syscall has made visible, reported before the syscall
//! returns, in the order the guest made them.
//!
//! It must not: write anything to the host (export is the caller's, from `volume_image`).

use super::host::HostKind;
use super::vfs::{Attrs, FileData, GuestPath, Node, Origin, SharedFile};
use super::{Host, LinuxMachine};
use crate::shared::Shared;
use crate::storage::{
    CompletedIo, ContentEntry, ContentNode, Disk, Entry, FileImage, IoObserver, IoOp,
    VolumeContent, VolumeImage, VolumeSpec, MARK_NAME_BYTES_MAX, VOLUME_ENTRIES_MAX,
};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// Why a volume could not be read from the host.
#[derive(Debug, thiserror::Error)]
#[error("volume {host}: {reason}")]
pub struct VolumeError {
    pub host: String,
    pub reason: String,
}

/// One directory still to read: its host path and its path relative to the volume.
struct Pending {
    host: PathBuf,
    rel: Vec<u8>,
}

fn rel_child(rel: &[u8], name: &[u8]) -> Vec<u8> {
    if rel.is_empty() {
        return name.to_vec();
    }
    [rel, b"/", name].concat()
}

/// Reads the tree of the host directory `spec.host` through `host`, breadth first with the names of each
/// directory sorted: the order in which the machine installs it (and assigns inode numbers).
pub fn read_volume<H: Host>(host: &mut H, spec: &VolumeSpec) -> Result<VolumeContent, VolumeError> {
    let fail = |reason: String| VolumeError {
        host: spec.host.display().to_string(),
        reason,
    };
    let root_md = host
        .metadata(&spec.host)
        .map_err(|e| fail(format!("cannot be read ({e:?})")))?;
    if root_md.kind != HostKind::Dir {
        return Err(fail("not a directory".into()));
    }
    let mut content = VolumeContent {
        root_mode: root_md.mode & 0o7777,
        entries: Vec::new(),
    };
    let mut queue = std::collections::VecDeque::from([Pending {
        host: spec.host.clone(),
        rel: Vec::new(),
    }]);
    while let Some(dir) = queue.pop_front() {
        let mut names = host
            .read_dir(&dir.host)
            .map_err(|e| fail(format!("{}: cannot list ({e:?})", dir.host.display())))?;
        names.retain(|n| n != b"." && n != b"..");
        names.sort();
        for name in names {
            if content.entries.len() >= VOLUME_ENTRIES_MAX {
                return Err(fail(format!(
                    "more than {VOLUME_ENTRIES_MAX} entries; give the guest a smaller tree"
                )));
            }
            let path = dir.host.join(std::ffi::OsStr::from_bytes(&name));
            let rel = rel_child(&dir.rel, &name);
            let read_err = |e| fail(format!("{}: cannot be read ({e:?})", path.display()));
            let md = host.metadata(&path).map_err(read_err)?;
            let node = match md.kind {
                HostKind::File => ContentNode::File(host.read_file(&path).map_err(read_err)?),
                HostKind::Dir => {
                    queue.push_back(Pending {
                        host: path.clone(),
                        rel: rel.clone(),
                    });
                    ContentNode::Dir
                }
                HostKind::Symlink => ContentNode::Symlink(host.read_link(&path).map_err(read_err)?),
                // Devices, sockets and FIFOs are not data a volume keeps.
                HostKind::Other => continue,
            };
            content.entries.push(ContentEntry {
                path: rel,
                mode: md.mode & 0o7777,
                node,
            });
        }
    }
    Ok(content)
}

/// The runs of whole pages where `now` differs from `seen` (and `now`'s bytes past `seen`'s end): (file offset,
/// the bytes of `now` there).
fn differing_runs(seen: &[u8], now: &[u8]) -> Vec<(u64, Vec<u8>)> {
    const PAGE: usize = crate::memory::PAGE_SIZE;
    let mut runs: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut run_start: Option<usize> = None;
    let mut at = 0;
    while at < now.len() {
        let end = (at + PAGE).min(now.len());
        let differs = seen.get(at..end) != Some(&now[at..end]);
        match (differs, run_start) {
            (true, None) => run_start = Some(at),
            (false, Some(s)) => {
                runs.push((s as u64, now[s..at].to_vec()));
                run_start = None;
            }
            _ => {}
        }
        at = end;
    }
    if let Some(s) = run_start {
        runs.push((s as u64, now[s..].to_vec()));
    }
    runs
}

impl<H: Host> LinuxMachine<H> {
    /// Installs every volume of the configuration in the overlay, each with a disk whose durable content is its
    /// initial content: the one the configuration carries (a recording's, a trace's), else read from the host.
    pub(super) fn mount_volumes(&mut self) -> Result<(), VolumeError> {
        for spec in self.config.volumes.clone() {
            let content = match &spec.content {
                Some(c) => c.clone(),
                None => std::sync::Arc::new(read_volume(&mut self.host, &spec)?),
            };
            content.check().map_err(|reason| VolumeError {
                host: spec.host.display().to_string(),
                reason,
            })?;
            let root = self
                .vfs
                .add_volume(&spec.guest, Disk::new(VolumeImage::default()));
            let attrs = self.vfs.new_attrs(content.root_mode, self.now());
            self.vfs.make_dir(&root, attrs);
            let image = self.install_volume(&content, &root, attrs.mode);
            if let Some(v) = self.vfs.volumes.last_mut() {
                v.disk = Disk::new(image);
            }
        }
        Ok(())
    }

    /// Puts a volume's checked content into the overlay under `root`, in its order, and returns it as an image.
    fn install_volume(
        &mut self,
        content: &VolumeContent,
        root: &GuestPath,
        root_mode: u32,
    ) -> VolumeImage {
        let now = self.now();
        let mut image = VolumeImage::new(root_mode);
        for e in &content.entries {
            let guest = e
                .path
                .split(|&b| b == b'/')
                .fold(root.clone(), |dir, name| self.vfs.child(&dir, name));
            let attrs = self.vfs.new_attrs(e.mode, now);
            match &e.node {
                ContentNode::File(bytes) => {
                    let file = FileData {
                        bytes: bytes.clone(),
                        attrs,
                        nlink: 1,
                        host: None,
                        locks: Default::default(),
                    };
                    self.vfs.put_file(&guest, Shared::new(file));
                    let file = FileImage {
                        bytes: bytes.clone(),
                        mode: attrs.mode,
                    };
                    image.files.insert(attrs.ino, file);
                    image.names.insert(e.path.clone(), Entry::File(attrs.ino));
                }
                ContentNode::Dir => {
                    self.vfs.make_dir(&guest, attrs);
                    image
                        .names
                        .insert(e.path.clone(), Entry::Dir { mode: attrs.mode });
                }
                ContentNode::Symlink(target) => {
                    self.vfs.make_symlink(&guest, target.clone(), attrs);
                    let target = target.clone();
                    image
                        .names
                        .insert(e.path.clone(), Entry::Symlink { target });
                }
            }
        }
        image
    }

    // ---------------------------------------------------------------------------------------------------------
    // The I/O filter.

    /// Installs the observer of completed operations; it first receives each volume as the guest sees it now.
    pub fn set_io_observer(&mut self, mut observer: Box<dyn IoObserver>) {
        for i in 0..self.vfs.volumes.len() {
            let root = self.vfs.volumes[i].root.text();
            let image = self.volume_image(i as u32);
            observer.volume_base(i as u32, &root, &image);
        }
        self.io_observer = Some(observer);
    }

    /// Takes the observer back (to finish its work after the run).
    pub fn take_io_observer(&mut self) -> Option<Box<dyn IoObserver>> {
        self.io_observer.take()
    }

    /// How many volumes the guest has.
    pub fn volume_count(&self) -> usize {
        self.vfs.volumes.len()
    }

    /// The simulated disk of volume `index`.
    pub fn volume_disk(&self, index: u32) -> Option<&Disk> {
        self.vfs.volumes.get(index as usize).map(|v| &v.disk)
    }

    /// Reports one completed operation: to the volume's disk, then to the observer.
    pub(super) fn io_completed(&mut self, volume: u32, op: IoOp) {
        if let Some(v) = self.vfs.volumes.get_mut(volume as usize) {
            v.disk.completed(&op);
        }
        if self.io_observer.is_none() {
            return;
        }
        let time = self.now();
        let io = CompletedIo {
            icount: self.machine.cpu.icount,
            time_ns: (time.sec as u64)
                .saturating_mul(1_000_000_000)
                .saturating_add(time.nsec as u64),
            tid: self.thread.tid.0,
            volume,
            op,
        };
        if let Some(observer) = &mut self.io_observer {
            observer.completed(&io);
        }
    }

    /// A data operation on the file `data`, reached by `path`: reported if the path is on a volume.
    pub(super) fn volume_data_op(
        &mut self,
        path: &GuestPath,
        data: &SharedFile,
        make: impl FnOnce(u64) -> IoOp,
    ) {
        if let Some((volume, _)) = self.vfs.volume_of(path) {
            let file = data.borrow().attrs.ino;
            self.io_completed(volume, make(file));
        }
    }

    /// A name operation at `path`: reported, with the path relative to the volume, if it is on one.
    pub(super) fn volume_name_op(&mut self, path: &GuestPath, make: impl FnOnce(Vec<u8>) -> IoOp) {
        if let Some((volume, rel)) = self.vfs.volume_of(path) {
            self.io_completed(volume, make(rel));
        }
    }

    /// Writes back the stores made through shared mappings of the volume file `data` (opened at `path`) that
    /// the disk model has not seen: the byte runs (whole pages) where the file differs from the disk's view of
    /// it are reported as completed writes, as Linux's writeback of dirty shared pages completes them (msync,
    /// fsync, munmap, exit). Every other change of a volume file reaches the disk as it completes, so the
    /// difference is exactly the mapped stores.
    pub(super) fn write_back_mapped(&mut self, path: &GuestPath, data: &SharedFile) {
        let Some((volume, _)) = self.vfs.volume_of(path) else {
            return;
        };
        let (ino, now) = {
            let f = data.borrow();
            (f.attrs.ino, f.bytes.clone())
        };
        let seen = self
            .vfs
            .volumes
            .get(volume as usize)
            .and_then(|v| v.disk.cached().files.get(&ino).map(|f| f.bytes.clone()));
        let Some(seen) = seen else {
            return;
        };
        for (offset, bytes) in differing_runs(&seen, &now) {
            self.io_completed(
                volume,
                IoOp::Write {
                    file: ino,
                    offset,
                    data: bytes,
                    durable: false,
                },
            );
        }
    }

    /// EXDEV unless `a` and `b` are on the same volume or both on none: a volume is a file system of its own.
    pub(super) fn same_volume(
        &self,
        a: &GuestPath,
        b: &GuestPath,
    ) -> Result<(), super::abi::Errno> {
        let volume = |p| self.vfs.volume_of(p).map(|(v, _)| v);
        if volume(a) != volume(b) {
            return Err(super::abi::EXDEV);
        }
        if self.vfs.is_volume_root(a) || self.vfs.is_volume_root(b) {
            return Err(super::abi::EBUSY);
        }
        Ok(())
    }

    /// A write to /dev/tandem-mark: a mark named by the bytes (a final newline dropped, cut to the limit).
    pub(super) fn mark_written(&mut self, bytes: &[u8]) {
        let mut name = bytes.strip_suffix(b"\n").unwrap_or(bytes).to_vec();
        name.truncate(MARK_NAME_BYTES_MAX);
        self.io_completed(0, IoOp::Mark { name });
    }

    /// fsync or fdatasync of descriptor `fd`: reported if it is a file or a directory on a volume.
    pub(super) fn sys_fsync(&mut self, fd: i32, data_only: bool) -> Result<u64, super::abi::Errno> {
        let desc = self.proc.fds.get(fd)?;
        let d = desc.borrow();
        match &d.kind {
            super::fd::FileKind::Regular { data, path } => {
                let (data, path) = (data.clone(), path.clone());
                drop(d);
                self.write_back_maps_of(&data);
                self.volume_data_op(&path, &data, |file| IoOp::SyncFile { file, data_only });
            }
            super::fd::FileKind::Dir { path } => {
                let path = path.clone();
                drop(d);
                self.volume_name_op(&path, |path| IoOp::SyncDir { path });
            }
            _ => {}
        }
        Ok(0)
    }

    /// sync_file_range(2): with SYNC_FILE_RANGE_WAIT_AFTER the range's data is durable when it returns; without
    /// it nothing is promised (the writes only start).
    pub(super) fn sys_sync_file_range(
        &mut self,
        fd: i32,
        offset: i64,
        len_bytes: i64,
        flags: u64,
    ) -> Result<u64, super::abi::Errno> {
        const WAIT_AFTER: u64 = 4;
        if offset < 0 || len_bytes < 0 || flags & !7 != 0 {
            return Err(super::abi::EINVAL);
        }
        let desc = self.proc.fds.get(fd)?;
        let d = desc.borrow();
        let super::fd::FileKind::Regular { data, path } = &d.kind else {
            return Err(super::abi::ESPIPE);
        };
        let (data, path) = (data.clone(), path.clone());
        drop(d);
        if flags & WAIT_AFTER != 0 {
            // A length of 0 means "to the end of the file".
            let len_bytes = if len_bytes == 0 {
                u64::MAX
            } else {
                len_bytes as u64
            };
            self.volume_data_op(&path, &data, |file| IoOp::SyncRange {
                file,
                offset: offset as u64,
                len_bytes,
            });
        }
        Ok(0)
    }

    /// sync(2) (every volume) or syncfs(2) (the volume of `fd`).
    pub(super) fn sys_sync(&mut self, fd: Option<i32>) -> Result<u64, super::abi::Errno> {
        let only = match fd {
            Some(fd) => {
                let desc = self.proc.fds.get(fd)?;
                let path = desc.borrow().path().cloned();
                match path.and_then(|p| self.vfs.volume_of(&p)) {
                    Some((v, _)) => Some(v),
                    None => return Ok(0),
                }
            }
            None => None,
        };
        for v in 0..self.vfs.volumes.len() as u32 {
            if only.is_none_or(|o| o == v) {
                self.io_completed(v, IoOp::SyncAll);
            }
        }
        Ok(0)
    }

    // ---------------------------------------------------------------------------------------------------------
    // The volume as the guest sees it.

    /// Volume `index` as the guest sees it now (the page cache): every name below its root, files by inode.
    pub fn volume_image(&mut self, index: u32) -> VolumeImage {
        let Some(root) = self.vfs.volumes.get(index as usize).map(|v| v.root.clone()) else {
            return VolumeImage::default();
        };
        let root_mode = match self.vfs.lookup(&mut self.host, &root) {
            Some(Node::Dir(Origin::Overlay(a))) => a.mode,
            _ => 0o755,
        };
        let mut image = VolumeImage::new(root_mode);
        let mut stack = vec![(root, Vec::new())];
        while let Some((dir, rel)) = stack.pop() {
            let Ok(list) = self.vfs.list_dir(&mut self.host, &dir) else {
                continue;
            };
            for (name, node) in list {
                let rel = rel_child(&rel, &name);
                match node {
                    Node::MemoryFile(f) => {
                        let f = f.borrow();
                        image.files.insert(
                            f.attrs.ino,
                            FileImage {
                                bytes: f.bytes.clone(),
                                mode: f.attrs.mode,
                            },
                        );
                        image.names.insert(rel, Entry::File(f.attrs.ino));
                    }
                    Node::Dir(origin) => {
                        let mode = match origin {
                            Origin::Overlay(Attrs { mode, .. }) => mode,
                            _ => 0o755,
                        };
                        image.names.insert(rel.clone(), Entry::Dir { mode });
                        stack.push((self.vfs.child(&dir, &name), rel));
                    }
                    Node::Symlink { target, .. } => {
                        image.names.insert(rel, Entry::Symlink { target });
                    }
                    // Sockets bound in a volume and other nodes are not data.
                    _ => {}
                }
            }
        }
        image
    }

    /// The guest path of volume `index`'s root.
    pub fn volume_root(&self, index: u32) -> Option<Vec<u8>> {
        self.vfs.volumes.get(index as usize).map(|v| v.root.text())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{LinuxConfig, LinuxMachine, MemoryHost, Progress};
    use crate::storage::{IoOp, TreeNode, VolumeSpec};

    fn corpus_volume_program() -> Vec<u8> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../corpus/bin/volume-musl");
        std::fs::read(path).expect("corpus/bin/volume-musl (corpus/build.sh builds it)")
    }

    fn machine(args: &[&str]) -> LinuxMachine<MemoryHost> {
        let mut host = MemoryHost::new(1);
        host.add_file("/h/keep.txt", b"keep\n");
        host.add_file("/h/old.txt", b"old content\n");
        host.add_file("/h/in/data.bin", &[7u8; 3000]);
        let mut argv = vec![b"volume".to_vec()];
        argv.extend(args.iter().map(|a| a.as_bytes().to_vec()));
        let config = LinuxConfig {
            argv,
            volumes: vec![VolumeSpec {
                host: "/h".into(),
                guest: vec![b"vol".to_vec()],
                content: None,
            }],
            ..LinuxConfig::default()
        };
        LinuxMachine::new(config, &corpus_volume_program(), host).expect("loads")
    }

    /// The I/O filter misses nothing: at every stop of a run, the disk model's view (durable image plus pending
    /// operations) is exactly the tree the guest sees; and after the program's final sync() nothing is pending.
    #[test]
    fn the_disk_model_sees_every_change_the_guest_sees() {
        for args in [&["/vol", "script"][..], &["/vol", "churn", "300", "11"][..]] {
            let mut m = machine(args);
            let mut stops = 0;
            while m.run(3_000) == Progress::BudgetExhausted {
                let seen = m.volume_image(0).tree();
                let disk = m.volume_disk(0).expect("one volume");
                assert_eq!(
                    disk.cached().tree(),
                    seen,
                    "{args:?} at icount {}",
                    m.icount()
                );
                stops += 1;
            }
            assert!(stops > 20, "{args:?}: {stops} stops");
            assert!(
                m.host.stdout.ends_with(b"done\n"),
                "{}",
                String::from_utf8_lossy(&m.host.stdout)
            );
            let seen = m.volume_image(0).tree();
            assert_eq!(m.volume_disk(0).unwrap().cached().tree(), seen);
            if args[1] == "script" {
                assert!(m.volume_disk(0).unwrap().pending().is_empty());
                assert_eq!(m.volume_disk(0).unwrap().durable().tree(), seen);
            }
        }
    }

    /// Stores through shared mappings reach the disk model as written-back writes: after the run (msync,
    /// munmap, and a mapping left to exit) the disk's view is the guest's, the mapped stores included.
    #[test]
    fn mapped_stores_are_written_back_to_the_disk() {
        let mut m = machine(&["/vol", "mmap"]);
        assert_eq!(m.run(u64::MAX), Progress::Finished);
        assert!(
            m.host.stdout.ends_with(b"done\n"),
            "{}",
            String::from_utf8_lossy(&m.host.stdout)
        );
        let seen = m.volume_image(0).tree();
        assert!(matches!(
            seen.get(&b"keep.txt"[..]),
            Some(TreeNode::File { bytes, .. }) if bytes.starts_with(b"KEEP")
        ));
        assert_eq!(m.volume_disk(0).unwrap().cached().tree(), seen);
    }

    /// Before its fsync a file's data is in the page cache only; before the fsync of its directory its name is.
    #[test]
    fn names_and_data_become_durable_at_their_syncs() {
        let mut m = machine(&["/vol", "script"]);
        // Run until the first fsync of a.txt completed: a.txt's 50 lines are durable, its name is not.
        let mut fsynced = false;
        while m.run(500) == Progress::BudgetExhausted && !fsynced {
            let disk = m.volume_disk(0).unwrap();
            fsynced = !disk.durable().files.is_empty()
                && disk
                    .durable()
                    .files
                    .values()
                    .any(|f| f.bytes.starts_with(b"line 0 of a.txt"));
        }
        assert!(fsynced, "the fsync of a.txt made its data durable");
        let disk = m.volume_disk(0).unwrap();
        assert!(
            !disk.durable().names.contains_key(&b"a.txt"[..]),
            "the name waits for a directory fsync"
        );
        assert!(matches!(
            disk.cached().tree().get(&b"a.txt"[..]),
            Some(TreeNode::File { bytes, .. }) if bytes.len() > 800
        ));
        assert!(disk
            .pending()
            .iter()
            .any(|op| matches!(op, IoOp::Create { path, .. } if path == b"a.txt")));
    }
}
