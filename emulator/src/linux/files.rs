//! File syscalls beyond reading and writing: metadata changes (chmod, chown, utimensat and their variants), hard
//! links, sendfile, and the coherence of MAP_SHARED file mappings with the files they map. The syscall table
//! (syscalls.rs) dispatches here.
//!
//! Permissions follow the kernel's rules for an unprivileged caller (the guest is uid and gid 1000, without
//! supplementary groups): only a node's owner changes its mode or times, a chown can only keep the owner and set
//! the group to one the caller is in, and the mounts are read-only file systems (EROFS), checked first as
//! `mnt_want_write` does (fs/open.c, fs/attr.c, fs/utimes.c; chmod(2), chown(2), utimensat(2), link(2),
//! sendfile(2)).
//!
//! MAP_SHARED coherence. On Linux a shared mapping and the file share the page cache, so a store is visible to
//! read(2) at once and a write(2) to the mapping at once. Here guest memory and a file's bytes are separate, and
//! the guest can only observe a file through syscalls, so keeping them equal at syscall boundaries is
//! indistinguishable to it: at every syscall entry the pages of each writable shared mapping that differ from
//! the file are copied into it (`flush_shared_maps`), bytes a syscall writes into mapped memory are copied the
//! same way at once, and every change of a file's bytes (write, truncate, sendfile, another mapping's stores) is
//! copied into the pages of its shared mappings at once (`file_changed`). Between processes: one process runs
//! at a time, so flushing the one that stops at every process switch and reloading the pages of the one that
//! resumes (`reload_shared_maps`) makes their shared mappings behave as one memory, stores and atomics
//! included (a fork's child shares its parent's mappings; MAP_SHARED|MAP_ANONYMOUS memory is a nameless file of
//! this kind). The cost is a comparison of every shared page at each switch between processes. What this does
//! not give is coherence between two shared mappings of the same bytes in one process between two syscalls
//! (Linux maps one page twice); a store to one is seen by the other at the next syscall. Also not done yet: a page wholly past the end of the
//! file reads zeros instead of raising SIGBUS, and an mremap of part of a shared mapping leaves that part
//! unshared.

use super::abi::*;
use super::fd::FileKind;
use super::host::Timespec;
use super::vfs::{GuestPath, Node, Origin, SharedFile};
use super::{Host, LinuxMachine, GUEST_GID, GUEST_UID};
use crate::memory::{Memory, Perms, PAGE_SIZE};
use crate::shared::Shared;
use crate::storage::IoOp;
use std::sync::Arc;

type SysResult = Result<u64, Errno>;

const AT_SYMLINK_FOLLOW: u32 = 0x400;
/// tv_nsec values of utimensat(2).
const UTIME_NOW: i64 = (1 << 30) - 1;
const UTIME_OMIT: i64 = (1 << 30) - 2;
/// Bytes moved per step of sendfile.
const SENDFILE_CHUNK_BYTES: u64 = 1 << 20;

/// A MAP_SHARED mapping of an overlay file (or of a mounted file opened read-only).
#[derive(Clone, Debug)]
pub(super) struct SharedMap {
    /// Guest address and length, in whole pages.
    pub start: u64,
    pub len: u64,
    pub file: SharedFile,
    /// The file offset mapped at `start`.
    pub offset: u64,
    /// The descriptor was open for writing, so stores through the mapping reach the file.
    pub writable: bool,
    /// Where the file was opened: a file on a volume has its mapped stores written back to the volume's disk
    /// (volume.rs `write_back_mapped`) at msync, fsync, munmap and exit.
    pub path: super::vfs::GuestPath,
}

impl SharedMap {
    fn end(&self) -> u64 {
        self.start + self.len
    }
}

/// A new time for one of atime and mtime.
#[derive(Clone, Copy, PartialEq, Eq)]
enum TimeChange {
    Now,
    Omit,
    Set(Timespec),
}

/// The bytes of `m`'s pages in `[from, to)` (guest addresses inside the mapping) that differ from the file are
/// copied into the file. Returns the file range that changed, if any.
fn store_pages_into_file(mem: &Memory, m: &SharedMap, from: u64, to: u64) -> Option<(u64, u64)> {
    let mut f = m.file.borrow_mut();
    let size = f.bytes.len() as u64;
    let mut changed: Option<(u64, u64)> = None;
    let mut page = from & !(PAGE_SIZE as u64 - 1);
    while page < to {
        let file_at = m.offset + (page - m.start);
        if file_at >= size {
            break;
        }
        let n = (size - file_at).min(PAGE_SIZE as u64) as usize;
        // A page that is gone or poisoned has nothing to give (a poisoned frame is never read).
        let Some(bytes) = mem.frame_of(page).and_then(|fr| mem.frame_bytes(fr)) else {
            page += PAGE_SIZE as u64;
            continue;
        };
        let range = file_at as usize..file_at as usize + n;
        if f.bytes[range.clone()] != bytes[..n] {
            Arc::make_mut(&mut f.bytes)[range].copy_from_slice(&bytes[..n]);
            let end = file_at + n as u64;
            changed = Some(changed.map_or((file_at, end), |(a, b)| (a.min(file_at), b.max(end))));
        }
        page += PAGE_SIZE as u64;
    }
    changed
}

impl<H: Host> LinuxMachine<H> {
    /// The guest's wall-clock time now (the virtual clock, without asking the host): file times.
    pub(super) fn now(&self) -> Timespec {
        Timespec::from_ns(self.config.epoch_ns.saturating_add(self.elapsed_ns()))
    }

    // ---------------------------------------------------------------------------------------------------------
    // MAP_SHARED coherence.

    /// Copies the stores made through writable shared mappings since the last syscall into their files (called
    /// at every syscall entry).
    pub(super) fn flush_shared_maps(&mut self) {
        if self.proc.shared_maps.iter().any(|m| m.writable) {
            for i in 0..self.proc.shared_maps.len() {
                let (start, end) = (
                    self.proc.shared_maps[i].start,
                    self.proc.shared_maps[i].end(),
                );
                self.flush_map_range(i, start, end);
            }
        }
    }

    /// Makes the pages of every shared mapping of the running process show their files' bytes (called when the
    /// process resumes after another ran: the others' stores reached the files, not these pages).
    pub(super) fn reload_shared_maps(&mut self) {
        for i in 0..self.proc.shared_maps.len() {
            let m = &self.proc.shared_maps[i];
            let (file, from, to) = (m.file.clone(), m.offset, m.offset + m.len);
            self.refresh_map(i, &file, from, to);
        }
    }

    /// After a syscall wrote guest memory `[addr, addr+len)`: the part inside writable shared mappings reaches
    /// their files now.
    pub(super) fn memory_written(&mut self, addr: u64, len: u64) {
        if self.proc.shared_maps.is_empty() {
            return;
        }
        let end = addr.saturating_add(len);
        for i in 0..self.proc.shared_maps.len() {
            let m = &self.proc.shared_maps[i];
            let (a, b) = (addr.max(m.start), end.min(m.end()));
            if m.writable && a < b {
                self.flush_map_range(i, a, b);
            }
        }
    }

    fn flush_map_range(&mut self, i: usize, from: u64, to: u64) {
        let m = &self.proc.shared_maps[i];
        if !m.writable {
            return;
        }
        let Some((a, b)) = store_pages_into_file(&self.machine.cpu.mem, m, from, to) else {
            return;
        };
        let now = self.now();
        let file = m.file.clone();
        {
            let mut f = file.borrow_mut();
            f.attrs.mtime = now;
            f.attrs.ctime = now;
        }
        self.refresh_maps(&file, a, b, Some(i));
    }

    /// The file's bytes in `[from, to)` changed (or, past its end, went away): its shared mappings show it now.
    pub(super) fn file_changed(&mut self, file: &SharedFile, from: u64, to: u64) {
        if !self.proc.shared_maps.is_empty() && from < to {
            self.refresh_maps(file, from, to, None);
        }
    }

    /// Copies the file range `[from, to)` into every shared mapping of `file` but `except` (bytes past the end
    /// of the file read as zeros).
    fn refresh_maps(&mut self, file: &SharedFile, from: u64, to: u64, except: Option<usize>) {
        for i in 0..self.proc.shared_maps.len() {
            if Some(i) != except && Shared::ptr_eq(&self.proc.shared_maps[i].file, file) {
                self.refresh_map(i, file, from, to);
            }
        }
    }

    /// Copies the file range `[from, to)` into the pages of shared mapping `i` of `file`, where they differ.
    fn refresh_map(&mut self, i: usize, file: &SharedFile, from: u64, to: u64) {
        let m = &self.proc.shared_maps[i];
        debug_assert!(Shared::ptr_eq(&m.file, file));
        let (lo, hi) = (from.max(m.offset), to.min(m.offset + m.len));
        if lo >= hi {
            return;
        }
        let mut want = vec![0u8; (hi - lo) as usize];
        {
            let f = file.borrow();
            let size = f.bytes.len() as u64;
            if lo < size {
                let n = (hi.min(size) - lo) as usize;
                want[..n].copy_from_slice(&f.bytes[lo as usize..lo as usize + n]);
            }
        }
        let addr = m.start + (lo - m.offset);
        let mem = &mut self.machine.cpu.mem;
        let mut have = vec![0u8; want.len()];
        if mem.peek(addr, &mut have).is_err() {
            return;
        }
        if let (Some(first), Some(last)) = (
            (0..want.len()).find(|&k| want[k] != have[k]),
            (0..want.len()).rfind(|&k| want[k] != have[k]),
        ) {
            let _ = mem.poke(addr + first as u64, &want[first..=last]);
        }
    }

    /// Forgets the shared mappings in `[addr, addr+len)` (unmapped or mapped over), keeping the parts outside.
    pub(super) fn forget_shared_maps(&mut self, addr: u64, len: u64) {
        if self.proc.shared_maps.is_empty() {
            return;
        }
        let end = addr.saturating_add(len);
        // Linux writes the dirty pages of a shared mapping back when it goes (munmap, a mapping over it).
        let going: Vec<SharedMap> = self
            .proc
            .shared_maps
            .iter()
            .filter(|m| m.writable && m.start < end && addr < m.end())
            .cloned()
            .collect();
        for m in going {
            self.write_back_mapped(&m.path, &m.file);
        }
        let mut kept = Vec::new();
        for m in self.proc.shared_maps.drain(..) {
            if m.end() <= addr || m.start >= end {
                kept.push(m);
                continue;
            }
            if m.start < addr {
                kept.push(SharedMap {
                    len: addr - m.start,
                    ..m.clone()
                });
            }
            if m.end() > end {
                kept.push(SharedMap {
                    start: end,
                    len: m.end() - end,
                    offset: m.offset + (end - m.start),
                    ..m
                });
            }
        }
        self.proc.shared_maps = kept;
    }

    /// mprotect(2) may not make a shared mapping of a descriptor opened read-only writable (EACCES).
    pub(super) fn check_shared_protect(
        &self,
        addr: u64,
        len: u64,
        perms: Perms,
    ) -> Result<(), Errno> {
        let end = addr.saturating_add(len);
        if perms.contains(Perms::WRITE)
            && self
                .proc
                .shared_maps
                .iter()
                .any(|m| !m.writable && m.start < end && addr < m.end())
        {
            return Err(EACCES);
        }
        Ok(())
    }

    /// mremap(2) moved `[old, old+old_len)` to `new` with `new_len` bytes: the shared mappings there move along,
    /// and the one reaching the old end grows over the new pages, which show the file.
    pub(super) fn shared_maps_moved(&mut self, old: u64, old_len: u64, new: u64, new_len: u64) {
        if self.proc.shared_maps.is_empty() {
            return;
        }
        // The lengths as mremap rounded them (it succeeded, so they round without overflow).
        let up = |x: u64| x.saturating_add(PAGE_SIZE as u64 - 1) & !(PAGE_SIZE as u64 - 1);
        let (old_len, new_len) = (up(old_len), up(new_len));
        let old_end = old + old_len;
        let mut grown = Vec::new();
        for i in 0..self.proc.shared_maps.len() {
            let m = &mut self.proc.shared_maps[i];
            if m.start < old || m.end() > old_end {
                continue;
            }
            m.start = m.start - old + new;
            if m.end() - new == old_len && new_len > old_len {
                m.len += new_len - old_len;
                grown.push(i);
            }
            let cut = new + new_len;
            if m.start >= cut {
                m.len = 0;
            } else if m.end() > cut {
                m.len = cut - m.start;
            }
        }
        for i in grown {
            let m = &self.proc.shared_maps[i];
            let (file, from) = (m.file.clone(), m.offset + (m.len - (new_len - old_len)));
            let to = m.offset + m.len;
            self.refresh_maps(&file, from, to, None);
        }
        self.proc.shared_maps.retain(|m| m.len > 0);
    }

    pub(super) fn sys_msync(&mut self, addr: u64, len: u64, flags: u64) -> SysResult {
        const MS_ASYNC: u64 = 1;
        const MS_INVALIDATE: u64 = 2;
        const MS_SYNC: u64 = 4;
        if addr & (PAGE_SIZE as u64 - 1) != 0
            || flags & !(MS_ASYNC | MS_INVALIDATE | MS_SYNC) != 0
            || flags & (MS_ASYNC | MS_SYNC) == MS_ASYNC | MS_SYNC
        {
            return Err(EINVAL);
        }
        let end = addr.checked_add(len).ok_or(ENOMEM)?;
        if !self.machine.cpu.mem.range_is_mapped(addr, len) {
            return Err(ENOMEM);
        }
        // The stores already reached the files at this syscall's entry (`flush_shared_maps`); a file on a volume
        // has them written back to its disk now, durable with MS_SYNC (the range's data, as sync_file_range
        // with SYNC_FILE_RANGE_WAIT_AFTER).
        let synced: Vec<(SharedMap, u64, u64)> = self
            .proc
            .shared_maps
            .iter()
            .filter(|m| m.writable && m.start < end && addr < m.end())
            .map(|m| {
                let (a, b) = (addr.max(m.start), end.min(m.end()));
                (m.clone(), m.offset + (a - m.start), b - a)
            })
            .collect();
        for (m, offset, len_bytes) in synced {
            self.write_back_mapped(&m.path, &m.file);
            if flags & MS_SYNC != 0 {
                self.volume_data_op(&m.path, &m.file, |file| IoOp::SyncRange {
                    file,
                    offset,
                    len_bytes,
                });
            }
        }
        Ok(0)
    }

    /// Writes back every writable shared mapping of the process whose file is `data` (before an fsync of it).
    pub(super) fn write_back_maps_of(&mut self, data: &SharedFile) {
        let maps: Vec<SharedMap> = self
            .proc
            .shared_maps
            .iter()
            .filter(|m| m.writable && Shared::as_ptr(&m.file) == Shared::as_ptr(data))
            .cloned()
            .collect();
        for m in maps {
            self.write_back_mapped(&m.path, &m.file);
        }
    }

    /// Writes back every writable shared mapping of the process (exit, execve).
    pub(super) fn write_back_all_maps(&mut self) {
        let maps: Vec<SharedMap> = self.proc.shared_maps.to_vec();
        for m in maps.iter().filter(|m| m.writable) {
            self.write_back_mapped(&m.path, &m.file);
        }
    }

    // ---------------------------------------------------------------------------------------------------------
    // Targets of the metadata calls.

    /// The path and node a *at() call with `flags` names: a path, or the descriptor itself with AT_EMPTY_PATH and
    /// an empty path.
    fn meta_target(
        &mut self,
        dirfd: i32,
        path_addr: u64,
        flags: u32,
        follow: bool,
    ) -> Result<Option<(GuestPath, Node)>, Errno> {
        let path = self.read_cstring(path_addr, super::vfs::PATH_BYTES_MAX)?;
        if path.is_empty() {
            if flags & AT_EMPTY_PATH == 0 {
                return Err(ENOENT);
            }
            return self.fd_node(dirfd);
        }
        let r = self.resolve_at(dirfd, &path, follow)?;
        let node = r.node.ok_or(ENOENT)?;
        Ok(Some((r.path, node)))
    }

    /// The node a descriptor refers to; None for standard streams and pipes (no node of the file system).
    fn fd_node(&mut self, fd: i32) -> Result<Option<(GuestPath, Node)>, Errno> {
        if fd != AT_FDCWD {
            let desc = self.proc.fds.get(fd)?;
            if matches!(
                desc.borrow().kind,
                FileKind::Stdin
                    | FileKind::Stdout
                    | FileKind::Stderr
                    | FileKind::PipeRead(_)
                    | FileKind::PipeWrite(_)
                    | FileKind::Socket(_)
                    | FileKind::EventFd(_)
                    | FileKind::TimerFd(_)
                    | FileKind::Epoll(_)
            ) {
                return Ok(None);
            }
        }
        self.fd_target(fd).map(Some)
    }

    // ---------------------------------------------------------------------------------------------------------
    // chmod, chown.

    pub(super) fn sys_fchmodat(
        &mut self,
        dirfd: i32,
        path: u64,
        mode: u64,
        flags: u32,
    ) -> SysResult {
        if flags & !(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH) != 0 {
            return Err(EINVAL);
        }
        let target = self.meta_target(dirfd, path, flags, flags & AT_SYMLINK_NOFOLLOW == 0)?;
        self.chmod(target, mode as u32)
    }

    pub(super) fn sys_fchmod(&mut self, fd: i32, mode: u64) -> SysResult {
        let target = self.fd_node(fd)?;
        self.chmod(target, mode as u32)
    }

    fn chmod(&mut self, target: Option<(GuestPath, Node)>, mode: u32) -> SysResult {
        // A standard stream or a pipe: its mode is not kept (stat shows a fixed one), as a pipe's is of no use.
        let Some((path, node)) = target else {
            return Ok(0);
        };
        if matches!(node, Node::Symlink { .. }) {
            // fchmodat2 with AT_SYMLINK_NOFOLLOW on a link: Linux links have no mode of their own.
            return Err(EOPNOTSUPP);
        }
        let now = self.now();
        let mut set = mode & 0o7777;
        self.vfs.change_attrs(&path, &node, |a| {
            if a.uid != GUEST_UID as u32 {
                return Err(EPERM);
            }
            // Setting the set-group-ID bit needs membership of the file's group (else it is dropped silently).
            if a.gid != GUEST_GID as u32 {
                set &= !S_ISGID;
            }
            a.mode = set;
            a.ctime = now;
            Ok(())
        })?;
        self.volume_name_op(&path, |path| IoOp::Chmod { path, mode: set });
        Ok(0)
    }

    pub(super) fn sys_fchownat(
        &mut self,
        dirfd: i32,
        path: u64,
        uid: u64,
        gid: u64,
        flags: u64,
    ) -> SysResult {
        let flags = flags as u32;
        if flags & !(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH) != 0 {
            return Err(EINVAL);
        }
        let target = self.meta_target(dirfd, path, flags, flags & AT_SYMLINK_NOFOLLOW == 0)?;
        self.chown(target, uid as u32, gid as u32)
    }

    pub(super) fn sys_fchown(&mut self, fd: i32, uid: u64, gid: u64) -> SysResult {
        let target = self.fd_node(fd)?;
        self.chown(target, uid as u32, gid as u32)
    }

    /// chown(2) for an unprivileged caller: the owner may keep its uid and set the group to its own or the
    /// file's; anything else is EPERM. A regular file loses set-user-ID, and set-group-ID with group execute.
    fn chown(&mut self, target: Option<(GuestPath, Node)>, uid: u32, gid: u32) -> SysResult {
        let Some((path, node)) = target else {
            return Ok(0);
        };
        let regular = matches!(node, Node::MemoryFile(_));
        let now = self.now();
        let me = (GUEST_UID as u32, GUEST_GID as u32);
        self.vfs.change_attrs(&path, &node, |a| {
            let owner = a.uid == me.0;
            if uid != u32::MAX && !(owner && uid == a.uid) {
                return Err(EPERM);
            }
            if gid != u32::MAX && !(owner && (gid == me.1 || gid == a.gid)) {
                return Err(EPERM);
            }
            if uid != u32::MAX || gid != u32::MAX {
                if gid != u32::MAX {
                    a.gid = gid;
                }
                if regular {
                    a.mode &= !S_ISUID;
                    if a.mode & S_IXGRP != 0 {
                        a.mode &= !S_ISGID;
                    }
                }
            }
            a.ctime = now;
            Ok(())
        })?;
        Ok(0)
    }

    // ---------------------------------------------------------------------------------------------------------
    // utimensat, utimes, futimesat, utime.

    fn read_time_pair(&mut self, addr: u64, micro: bool) -> Result<[TimeChange; 2], Errno> {
        let b = self.read_mem(addr, 32)?;
        let mut out = [TimeChange::Now; 2];
        for (i, o) in out.iter_mut().enumerate() {
            let sec = i64::from_le_bytes(b[i * 16..i * 16 + 8].try_into().unwrap());
            let frac = i64::from_le_bytes(b[i * 16 + 8..i * 16 + 16].try_into().unwrap());
            *o = if micro {
                if !(0..1_000_000).contains(&frac) {
                    return Err(EINVAL);
                }
                TimeChange::Set(Timespec {
                    sec,
                    nsec: frac as u32 * 1000,
                })
            } else {
                match frac {
                    UTIME_NOW => TimeChange::Now,
                    UTIME_OMIT => TimeChange::Omit,
                    0..=999_999_999 => TimeChange::Set(Timespec {
                        sec,
                        nsec: frac as u32,
                    }),
                    _ => return Err(EINVAL),
                }
            };
        }
        Ok(out)
    }

    pub(super) fn sys_utimensat(
        &mut self,
        dirfd: i32,
        path: u64,
        times: u64,
        flags: u32,
    ) -> SysResult {
        let times = if times == 0 {
            [TimeChange::Now; 2]
        } else {
            self.read_time_pair(times, false)?
        };
        if flags & !(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH) != 0 {
            return Err(EINVAL);
        }
        // "If both tv_nsec fields are UTIME_OMIT, utimensat() succeeds even if the file does not exist."
        if times == [TimeChange::Omit; 2] {
            return Ok(0);
        }
        let target = if path == 0 {
            if dirfd == AT_FDCWD {
                return Err(EFAULT);
            }
            if flags & AT_SYMLINK_NOFOLLOW != 0 {
                return Err(EINVAL);
            }
            self.fd_node(dirfd)?
        } else {
            self.meta_target(dirfd, path, flags, flags & AT_SYMLINK_NOFOLLOW == 0)?
        };
        self.set_times(target, times)
    }

    pub(super) fn sys_futimesat(&mut self, dirfd: i32, path: u64, times: u64) -> SysResult {
        let times = if times == 0 {
            [TimeChange::Now; 2]
        } else {
            self.read_time_pair(times, true)?
        };
        // With no path, the descriptor itself (as utimensat does).
        let target = if path == 0 && dirfd != AT_FDCWD {
            self.fd_node(dirfd)?
        } else {
            self.meta_target(dirfd, path, 0, true)?
        };
        self.set_times(target, times)
    }

    pub(super) fn sys_utime(&mut self, path: u64, times: u64) -> SysResult {
        let times = if times == 0 {
            [TimeChange::Now; 2]
        } else {
            let b = self.read_mem(times, 16)?;
            let sec = |i: usize| i64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap());
            [sec(0), sec(1)].map(|sec| TimeChange::Set(Timespec { sec, nsec: 0 }))
        };
        let target = self.meta_target(AT_FDCWD, path, 0, true)?;
        self.set_times(target, times)
    }

    /// Sets atime and mtime: explicit times need the owner (EPERM); "now" needs the owner or write permission
    /// (EACCES).
    fn set_times(
        &mut self,
        target: Option<(GuestPath, Node)>,
        times: [TimeChange; 2],
    ) -> SysResult {
        let Some((path, node)) = target else {
            return Ok(0);
        };
        let explicit = times.iter().any(|t| matches!(t, TimeChange::Set(_)));
        let now = self.now();
        let st = self.vfs.stat(&path, &node);
        let writable = |uid: u32, gid: u32, mode: u32| {
            if uid == GUEST_UID as u32 {
                mode & 0o200 != 0
            } else if gid == GUEST_GID as u32 {
                mode & 0o020 != 0
            } else {
                mode & 0o002 != 0
            }
        };
        // Synthetic nodes belong to root: "now" on one the guest may write (/dev/null, /tmp) is accepted, and
        // their times stay the epoch.
        if matches!(node, Node::Device(_) | Node::Dir(Origin::Synthetic)) {
            return if explicit {
                Err(EPERM)
            } else if writable(st.uid, st.gid, st.mode) {
                Ok(0)
            } else {
                Err(EACCES)
            };
        }
        self.vfs.change_attrs(&path, &node, |a| {
            let owner = a.uid == GUEST_UID as u32;
            if explicit && !owner {
                return Err(EPERM);
            }
            if !owner && !writable(a.uid, a.gid, a.mode) {
                return Err(EACCES);
            }
            for (t, slot) in times.iter().zip([&mut a.atime, &mut a.mtime]) {
                match t {
                    TimeChange::Now => *slot = now,
                    TimeChange::Set(v) => *slot = *v,
                    TimeChange::Omit => {}
                }
            }
            a.ctime = now;
            Ok(())
        })?;
        Ok(0)
    }

    // ---------------------------------------------------------------------------------------------------------
    // link, linkat.

    pub(super) fn sys_linkat(
        &mut self,
        olddir: i32,
        old: u64,
        newdir: i32,
        new: u64,
        flags: u32,
    ) -> SysResult {
        if flags & !(AT_SYMLINK_FOLLOW | AT_EMPTY_PATH) != 0 {
            return Err(EINVAL);
        }
        let (from_path, node) = self
            .meta_target(olddir, old, flags, flags & AT_SYMLINK_FOLLOW != 0)?
            .ok_or(ENOENT)?;
        let new = self.read_path(new)?;
        let to = self.resolve_at(newdir, &new, false)?;
        if to.node.is_some() {
            return Err(EEXIST);
        }
        self.check_parent_dir(&to.path)?;
        if !node.is_dir() {
            self.same_volume(&from_path, &to.path)?;
        }
        let now = self.now();
        let linked = self.link_node(&from_path, &to.path, node, now)?;
        match linked {
            Node::Symlink { target, .. } => {
                self.volume_name_op(&to.path, |path| IoOp::Symlink { path, target })
            }
            Node::MemoryFile(f) => {
                let file = f.borrow().attrs.ino;
                self.volume_name_op(&to.path, |path| IoOp::Link { path, file });
            }
            _ => {}
        }
        Ok(0)
    }

    /// Makes `to` a new name of `node` (found at `from`); returns what `to` names now.
    fn link_node(
        &mut self,
        from_path: &GuestPath,
        to: &GuestPath,
        node: Node,
        now: Timespec,
    ) -> Result<Node, Errno> {
        let linked = match node {
            Node::Dir(_) => return Err(EPERM),
            Node::Device(_) => return Err(EXDEV),
            Node::Socket(a) => {
                self.vfs.make_socket(to, a);
                Node::Socket(a)
            }
            Node::Symlink { target, origin } => {
                let attrs = match origin {
                    Origin::Overlay(a) => a,
                    _ => self.vfs.new_attrs(0o777, now),
                };
                self.vfs.make_symlink(to, target.clone(), attrs);
                Node::Symlink {
                    target,
                    origin: Origin::Overlay(attrs),
                }
            }
            Node::MemoryFile(ref f) if f.borrow().host.is_none() => {
                let f = f.clone();
                {
                    let mut d = f.borrow_mut();
                    d.nlink += 1;
                    d.attrs.ctime = now;
                }
                self.vfs.put_file(to, f.clone());
                Node::MemoryFile(f)
            }
            _ => {
                // A file still on its mount is copied up first; then both names share the copy.
                let node = self.vfs.lookup(&mut self.host, from_path).ok_or(ENOENT)?;
                let f = self.vfs.copy_up(&mut self.host, from_path, &node)?;
                {
                    let mut d = f.borrow_mut();
                    d.nlink += 1;
                    d.attrs.ctime = now;
                }
                self.vfs.put_file(to, f.clone());
                Node::MemoryFile(f)
            }
        };
        Ok(linked)
    }

    // ---------------------------------------------------------------------------------------------------------
    // sendfile.

    /// sendfile(2): copies up to `count` bytes from `in_fd` (at `*offset` if given, which is advanced, else at
    /// its position) to `out_fd`. The input must be a file or a device: Linux reads it through its splice_read,
    /// which pipes, sockets, eventfds, timerfds, epoll instances and directories lack (EINVAL, as measured on
    /// Linux 6.18; busybox cat then falls back to read(2)). The output may be any writable descriptor.
    pub(super) fn sys_sendfile(
        &mut self,
        out_fd: i32,
        in_fd: i32,
        offset: u64,
        count: u64,
    ) -> SysResult {
        let in_desc = self.proc.fds.get(in_fd)?;
        let out_desc = self.proc.fds.get(out_fd)?;
        if !in_desc.borrow().readable() || !out_desc.borrow().writable() {
            return Err(EBADF);
        }
        if out_desc.borrow().flags & O_APPEND != 0 {
            return Err(EINVAL);
        }
        if matches!(
            in_desc.borrow().kind,
            FileKind::PipeRead(_)
                | FileKind::Socket(_)
                | FileKind::EventFd(_)
                | FileKind::TimerFd(_)
                | FileKind::Epoll(_)
                | FileKind::Dir { .. }
        ) {
            return Err(EINVAL);
        }
        let seekable = matches!(
            in_desc.borrow().kind,
            FileKind::Regular { .. } | FileKind::Device(_)
        );
        let mut at = if offset != 0 {
            if !seekable {
                return Err(ESPIPE);
            }
            let v = i64::from_le_bytes(self.read_mem(offset, 8)?.try_into().unwrap());
            if v < 0 {
                return Err(EINVAL);
            }
            Some(v as u64)
        } else {
            None
        };
        let count = count.min(super::syscalls::RW_BYTES_MAX);
        let mut total = 0u64;
        while total < count {
            let step = (count - total).min(SENDFILE_CHUNK_BYTES);
            let data = match self.read_desc(in_fd, step as usize, at) {
                Ok(d) => d,
                Err(e) if total == 0 => return Err(e),
                Err(_) => break,
            };
            if data.is_empty() {
                break;
            }
            if let Err(e) = self.write_desc(out_fd, &data, None) {
                // Nothing of this step was written: the input keeps its position.
                if at.is_none() && seekable {
                    let mut d = in_desc.borrow_mut();
                    d.offset = d.offset.saturating_sub(data.len() as u64);
                }
                if total == 0 {
                    return Err(e);
                }
                break;
            }
            total += data.len() as u64;
            if let Some(a) = &mut at {
                *a += data.len() as u64;
            }
            if (data.len() as u64) < step {
                break;
            }
        }
        if let Some(a) = at {
            self.write_mem(offset, &a.to_le_bytes())?;
        }
        Ok(total)
    }

    /// copy_file_range(2): between two regular files (a directory is EISDIR, anything else EINVAL), the input
    /// open for reading and the output for writing without O_APPEND (EBADF), from each file's own offset or from
    /// `*off_in` / `*off_out`, which are advanced instead (vfs_copy_file_range and generic_copy_file_checks).
    /// Overlapping ranges of one file are EINVAL; an offset that wraps with the length (a negative one) EOVERFLOW.
    pub(super) fn sys_copy_file_range(
        &mut self,
        in_fd: i32,
        off_in: u64,
        out_fd: i32,
        off_out: u64,
        len: u64,
        flags: u64,
    ) -> SysResult {
        if flags != 0 {
            return Err(EINVAL);
        }
        let in_desc = self.proc.fds.get(in_fd)?;
        let out_desc = self.proc.fds.get(out_fd)?;
        let at_in = self.read_offset_arg(off_in)?;
        let at_out = self.read_offset_arg(off_out)?;
        let (in_file, out_file) = match (&in_desc.borrow().kind, &out_desc.borrow().kind) {
            (FileKind::Dir { .. }, _) | (_, FileKind::Dir { .. }) => return Err(EISDIR),
            (FileKind::Regular { data: a, .. }, FileKind::Regular { data: b, .. }) => {
                (a.clone(), b.clone())
            }
            _ => return Err(EINVAL),
        };
        if !in_desc.borrow().readable()
            || !out_desc.borrow().writable()
            || out_desc.borrow().flags & O_APPEND != 0
        {
            return Err(EBADF);
        }
        let pos_in = at_in.unwrap_or(in_desc.borrow().offset);
        let pos_out = at_out.unwrap_or(out_desc.borrow().offset);
        let size_in = in_file.borrow().bytes.len() as u64;
        let len = len.min(super::syscalls::RW_BYTES_MAX);
        if pos_in.checked_add(len).is_none() || pos_out.checked_add(len).is_none() {
            return Err(EOVERFLOW);
        }
        let count = len.min(size_in.saturating_sub(pos_in));
        if Shared::ptr_eq(&in_file, &out_file)
            && pos_out + count > pos_in
            && pos_out < pos_in + count
        {
            return Err(EINVAL);
        }
        if count == 0 {
            return Ok(0);
        }
        let data = self.read_desc(in_fd, count as usize, Some(pos_in))?;
        let written = self.write_desc(out_fd, &data, Some(pos_out))?;
        match at_in {
            Some(at) => self.write_mem(off_in, &(at + written).to_le_bytes())?,
            None => in_desc.borrow_mut().offset = pos_in + written,
        }
        match at_out {
            Some(at) => self.write_mem(off_out, &(at + written).to_le_bytes())?,
            None => out_desc.borrow_mut().offset = pos_out + written,
        }
        Ok(written)
    }

    /// The loff_t an optional offset argument points to (None for a null pointer), as the unsigned number the
    /// kernel's overflow check sees: a negative offset is EOVERFLOW there.
    fn read_offset_arg(&mut self, ptr: u64) -> Result<Option<u64>, Errno> {
        if ptr == 0 {
            return Ok(None);
        }
        Ok(Some(self.read_u64(ptr)?))
    }
}
