//! Open file descriptions and the descriptor table (the kernel's `struct file` and `struct files_struct`).
//!
//! A descriptor points at a shared open file description (offset and status flags are shared by dup'ed
//! descriptors, as in Linux). Pipes live wholly in memory as bounded buffers of Linux's default capacity; a
//! reader of an empty pipe and a writer of a full one wait (the guest kernel's blocked pool) unless the
//! description is non-blocking. A socket description holds a socket of net/ (its last description closing
//! closes the socket). Eventfds, timerfds and epoll instances live in their one description (ready.rs,
//! timer.rs).

use super::abi::*;
use super::ids::Pid;
use super::locks::LockOwner;
use super::net::SharedSocket;
use super::ready::{Epoll, EventFd};
use super::timer::TimerFd;
use super::vfs::{Device, GuestPath, SharedFile};
use crate::shared::Shared;
use std::collections::{BTreeMap, VecDeque};

/// Most open descriptors (RLIMIT_NOFILE's soft limit).
pub const FDS_MAX: i32 = 1024;
/// Most bytes buffered in one pipe: Linux's default pipe capacity (pipe(7)); a writer waits for a reader beyond.
pub const PIPE_BYTES_MAX: usize = 65_536;
/// Writes of at most this many bytes to a pipe are atomic (pipe(7), PIPE_BUF).
pub const PIPE_BUF: usize = 4096;

#[derive(Debug, Default)]
pub struct Pipe {
    pub buf: VecDeque<u8>,
    pub readers: u32,
    pub writers: u32,
    /// Bytes ever written and ever read: the edge counters of the read and the write end (ready.rs).
    pub written: u64,
    pub read: u64,
}

impl Pipe {
    /// Appends bytes a writer wrote.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend(bytes.iter().copied());
        self.written = self.written.wrapping_add(bytes.len() as u64);
    }

    /// Takes up to `n` bytes for a reader.
    pub fn take(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.buf.len());
        self.read = self.read.wrapping_add(n as u64);
        self.buf.drain(..n).collect()
    }
}

pub type SharedPipe = Shared<Pipe>;

#[derive(Debug)]
pub enum FileKind {
    Stdin,
    Stdout,
    Stderr,
    Regular {
        data: SharedFile,
        path: GuestPath,
    },
    Dir {
        path: GuestPath,
    },
    Device(Device),
    PipeRead(SharedPipe),
    PipeWrite(SharedPipe),
    /// A socket (net/): shared by the descriptions that hold it and by the name space of bound addresses.
    Socket(SharedSocket),
    /// An eventfd (ready.rs): its counter lives in its one open file description.
    EventFd(EventFd),
    /// A timerfd (timer.rs).
    TimerFd(TimerFd),
    /// An epoll instance (ready.rs) and its interest list.
    Epoll(Epoll),
}

#[derive(Debug)]
pub struct OpenFile {
    pub kind: FileKind,
    pub offset: u64,
    /// Access mode and status flags (O_APPEND, O_NONBLOCK) as given to open(2).
    pub flags: u32,
    /// Its owner id in its file's locks once it took an OFD or flock lock (locks.rs); 0 before.
    pub lock_id: u64,
}

impl OpenFile {
    pub fn new(kind: FileKind, flags: u32) -> Description {
        match &kind {
            FileKind::PipeRead(p) => p.borrow_mut().readers += 1,
            FileKind::PipeWrite(p) => p.borrow_mut().writers += 1,
            FileKind::Socket(s) => s.borrow_mut().open_count += 1,
            _ => {}
        }
        Shared::new(OpenFile {
            kind,
            offset: 0,
            flags,
            lock_id: 0,
        })
    }

    /// The guest path a file or directory was opened at (volumes use it to find the volume of a descriptor: a
    /// file never leaves its volume, rename and link across one fail with EXDEV).
    pub fn path(&self) -> Option<&GuestPath> {
        match &self.kind {
            FileKind::Regular { path, .. } | FileKind::Dir { path } => Some(path),
            _ => None,
        }
    }

    pub fn readable(&self) -> bool {
        self.flags & O_ACCMODE != O_WRONLY
    }

    pub fn writable(&self) -> bool {
        self.flags & O_ACCMODE != O_RDONLY
    }
}

impl Drop for OpenFile {
    /// The last descriptor of the description is gone: pipe and socket ends close, and its OFD and flock
    /// locks go (fcntl(2), flock(2)).
    fn drop(&mut self) {
        match &self.kind {
            FileKind::Regular { data, .. } if self.lock_id != 0 => data
                .borrow_mut()
                .locks
                .release(LockOwner::Description(self.lock_id)),
            FileKind::PipeRead(p) => p.borrow_mut().readers -= 1,
            FileKind::PipeWrite(p) => p.borrow_mut().writers -= 1,
            FileKind::Socket(s) => {
                let mut s = s.borrow_mut();
                s.open_count -= 1;
                if s.open_count == 0 {
                    s.close();
                }
            }
            _ => {}
        }
    }
}

pub type Description = Shared<OpenFile>;

#[derive(Clone, Debug)]
pub struct FdEntry {
    pub desc: Description,
    pub cloexec: bool,
}

/// A process's descriptors. Closing one of a regular file releases the process's POSIX locks on that file
/// (fcntl(2): "if a process closes any file descriptor referring to a file, then all of the process's locks on
/// that file are released"), and so does dropping the table (exit, and execve's close-on-exec).
pub struct FdTable {
    pub(super) fds: BTreeMap<i32, FdEntry>,
    /// The process whose POSIX locks its closes release.
    pub(super) owner: Pid,
}

impl Drop for FdTable {
    fn drop(&mut self) {
        for (_, e) in std::mem::take(&mut self.fds) {
            release_posix_locks(&e.desc, self.owner);
        }
    }
}

/// Releases `owner`'s POSIX locks on the file of `desc`, if it is a regular file.
fn release_posix_locks(desc: &Description, owner: Pid) {
    let d = desc.borrow();
    if let FileKind::Regular { data, .. } = &d.kind {
        data.borrow_mut().locks.release(LockOwner::Process(owner));
    }
}

impl FdTable {
    /// An empty table of process `owner`.
    pub fn new(owner: Pid) -> FdTable {
        FdTable {
            fds: BTreeMap::new(),
            owner,
        }
    }

    /// The first process's table: stdin, stdout and stderr.
    pub fn with_stdio(owner: Pid) -> FdTable {
        let mut t = FdTable::new(owner);
        t.fds.insert(
            0,
            FdEntry {
                desc: OpenFile::new(FileKind::Stdin, O_RDONLY),
                cloexec: false,
            },
        );
        t.fds.insert(
            1,
            FdEntry {
                desc: OpenFile::new(FileKind::Stdout, O_WRONLY),
                cloexec: false,
            },
        );
        t.fds.insert(
            2,
            FdEntry {
                desc: OpenFile::new(FileKind::Stderr, O_WRONLY),
                cloexec: false,
            },
        );
        t
    }

    pub fn get(&self, fd: i32) -> Result<Description, Errno> {
        self.fds.get(&fd).map(|e| e.desc.clone()).ok_or(EBADF)
    }

    /// The open descriptors, in increasing order.
    pub fn open_fds(&self) -> impl Iterator<Item = i32> + '_ {
        self.fds.keys().copied()
    }

    pub fn entry_mut(&mut self, fd: i32) -> Result<&mut FdEntry, Errno> {
        self.fds.get_mut(&fd).ok_or(EBADF)
    }

    /// Installs `desc` at the lowest free descriptor not below `min`.
    pub fn insert_from(
        &mut self,
        min: i32,
        desc: Description,
        cloexec: bool,
    ) -> Result<i32, Errno> {
        let mut fd = min.max(0);
        while self.fds.contains_key(&fd) {
            fd += 1;
        }
        if fd >= FDS_MAX {
            return Err(EMFILE);
        }
        self.fds.insert(fd, FdEntry { desc, cloexec });
        Ok(fd)
    }

    pub fn insert(&mut self, desc: Description, cloexec: bool) -> Result<i32, Errno> {
        self.insert_from(0, desc, cloexec)
    }

    /// Installs `desc` at exactly `fd`, closing what was there.
    pub fn insert_at(&mut self, fd: i32, desc: Description, cloexec: bool) -> Result<i32, Errno> {
        if !(0..FDS_MAX).contains(&fd) {
            return Err(EBADF);
        }
        if let Some(old) = self.fds.insert(fd, FdEntry { desc, cloexec }) {
            release_posix_locks(&old.desc, self.owner);
        }
        Ok(fd)
    }

    pub fn close(&mut self, fd: i32) -> Result<(), Errno> {
        let old = self.fds.remove(&fd).ok_or(EBADF)?;
        release_posix_locks(&old.desc, self.owner);
        Ok(())
    }

    /// Closes every descriptor in `first..=last`. Precondition: `first <= last` (the syscall checks it: Linux
    /// answers EINVAL).
    pub fn close_range(&mut self, first: i32, last: i32) {
        assert!(
            first <= last,
            "close_range({first}, {last}): the caller checks the order"
        );
        let doomed: Vec<i32> = self.fds.range(first..=last).map(|(k, _)| *k).collect();
        for fd in doomed {
            let _ = self.close(fd);
        }
    }

    /// Marks every open descriptor in `first..=last` close-on-exec. Precondition: `first <= last`.
    pub fn set_cloexec_range(&mut self, first: i32, last: i32) {
        assert!(
            first <= last,
            "set_cloexec_range({first}, {last}): the caller checks the order"
        );
        for (_, entry) in self.fds.range_mut(first..=last) {
            entry.cloexec = true;
        }
    }
}
