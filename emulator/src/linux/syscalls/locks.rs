//! File locking syscalls: fcntl(2)'s F_GETLK, F_SETLK, F_SETLKW and their open file description forms
//! (F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW), and flock(2). The locks themselves live with the file
//! (linux/locks.rs); this file reads and writes the guest's `struct flock`, checks access modes, blocks a waiting
//! request in the deterministic scheduler (a Retry wait: re-run whenever another task did something) and detects
//! deadlocks between processes waiting for each other's POSIX locks (EDEADLK), as fs/locks.c does.
//!
//! Descriptors of anything but a regular file (pipes, directories, devices) take every lock, as before locks
//! were modelled: the programs tandem runs lock data files.

use super::super::fd::{Description, FileKind};
use super::super::ids::Pid;
use super::super::locks::{LockKind, LockOwner};
use super::super::vfs::SharedFile;
use super::super::{Host, LinuxMachine};
use super::SysResult;
use crate::linux::abi::*;

const F_GETLK: u32 = 5;
const F_SETLK: u32 = 6;
const F_SETLKW: u32 = 7;
const F_OFD_GETLK: u32 = 36;
const F_OFD_SETLK: u32 = 37;
const F_OFD_SETLKW: u32 = 38;
const F_RDLCK: i16 = 0;
const F_WRLCK: i16 = 1;
const F_UNLCK: i16 = 2;
/// Bytes of x86-64's `struct flock` (l_type, l_whence, pad, l_start, l_len, l_pid, pad).
const FLOCK_BYTES: u64 = 32;
/// How far deadlock detection follows a chain of waiting processes (fs/locks.c's MAX_DEADLK_ITERATIONS).
const DEADLOCK_CHAIN_MAX: usize = 10;
/// The syscall number of fcntl, to recognise a blocked F_SETLKW in the blocked pool.
const NR_FCNTL: u64 = 72;

/// Whether `cmd` is one of the locking commands this file answers.
pub(super) fn is_lock_command(cmd: u32) -> bool {
    matches!(
        cmd,
        F_GETLK | F_SETLK | F_SETLKW | F_OFD_GETLK | F_OFD_SETLK | F_OFD_SETLKW
    )
}

/// A guest `struct flock`, decoded.
struct Flock {
    kind: Option<LockKind>,
    whence: i16,
    start: i64,
    len: i64,
    pid: i32,
}

impl Flock {
    fn decode(raw: &[u8]) -> Result<Flock, Errno> {
        let i16_at = |i: usize| i16::from_le_bytes([raw[i], raw[i + 1]]);
        let i64_at = |i: usize| i64::from_le_bytes(raw[i..i + 8].try_into().unwrap_or([0; 8]));
        let kind = match i16_at(0) {
            F_RDLCK => Some(LockKind::Read),
            F_WRLCK => Some(LockKind::Write),
            F_UNLCK => None,
            _ => return Err(EINVAL),
        };
        Ok(Flock {
            kind,
            whence: i16_at(2),
            start: i64_at(8),
            len: i64_at(16),
            pid: i32::from_le_bytes([raw[24], raw[25], raw[26], raw[27]]),
        })
    }

    /// The byte range `start..=end` it names (fs/locks.c flock_to_posix_lock): from SEEK_SET, SEEK_CUR (the
    /// description's offset) or SEEK_END (the file's size); a length of 0 runs to the end of the file whatever
    /// its size, a negative one ends just before the start.
    fn range(&self, offset: u64, size_bytes: u64) -> Result<(u64, u64), Errno> {
        let base = match self.whence as u32 {
            SEEK_SET => 0i64,
            SEEK_CUR => offset as i64,
            SEEK_END => size_bytes as i64,
            _ => return Err(EINVAL),
        };
        let start = base.checked_add(self.start).ok_or(EOVERFLOW)?;
        if start < 0 {
            return Err(EINVAL);
        }
        let (start, end) = match self.len {
            0 => (start, i64::MAX),
            n if n > 0 => (start, start.checked_add(n - 1).ok_or(EOVERFLOW)?),
            // start >= 0 here, so start - 1 does not overflow.
            n => (start.checked_add(n).ok_or(EINVAL)?, start - 1),
        };
        if start < 0 || end < start {
            return Err(EINVAL);
        }
        let end = if end == i64::MAX {
            u64::MAX
        } else {
            end as u64
        };
        Ok((start as u64, end))
    }
}

/// The regular file behind a description, with the description's offset.
fn regular_file(desc: &Description) -> Option<(SharedFile, u64)> {
    let d = desc.borrow();
    match &d.kind {
        FileKind::Regular { data, .. } => Some((data.clone(), d.offset)),
        _ => None,
    }
}

/// The lock owner id of a description on `data` (given at its first OFD or flock lock; 0 before).
fn description_id(desc: &Description, data: &SharedFile, allocate: bool) -> u64 {
    let mut d = desc.borrow_mut();
    if d.lock_id == 0 && allocate {
        d.lock_id = data.borrow_mut().locks.new_description_id();
    }
    d.lock_id
}

impl<H: Host> LinuxMachine<H> {
    /// fcntl(2) with a locking command.
    pub(super) fn sys_fcntl_lock(&mut self, fd: i32, cmd: u32, arg: u64) -> SysResult {
        self.thread.lock_blocker = None;
        let desc = self.proc.fds.get(fd)?;
        let raw = self.read_mem(arg, FLOCK_BYTES)?;
        let request = Flock::decode(&raw)?;
        let ofd = matches!(cmd, F_OFD_GETLK | F_OFD_SETLK | F_OFD_SETLKW);
        if ofd && request.pid != 0 {
            return Err(EINVAL);
        }
        let Some((data, offset)) = regular_file(&desc) else {
            return match cmd {
                F_GETLK | F_OFD_GETLK => self.write_mem(arg, &F_UNLCK.to_le_bytes()).map(|_| 0),
                _ => Ok(0),
            };
        };
        let size_bytes = data.borrow().bytes.len() as u64;
        let (start, end) = request.range(offset, size_bytes)?;
        let owner = if ofd {
            LockOwner::Description(description_id(&desc, &data, request.kind.is_some()))
        } else {
            LockOwner::Process(self.proc.pid)
        };
        match cmd {
            F_GETLK | F_OFD_GETLK => {
                let kind = request.kind.ok_or(EINVAL)?;
                let conflict = data.borrow().locks.conflict(owner, kind, start, end);
                let mut out = raw;
                match conflict {
                    None => out[0..2].copy_from_slice(&F_UNLCK.to_le_bytes()),
                    Some(l) => {
                        let l_type = match l.kind {
                            LockKind::Read => F_RDLCK,
                            LockKind::Write => F_WRLCK,
                        };
                        let len = if l.end == u64::MAX {
                            0
                        } else {
                            (l.end - l.start + 1) as i64
                        };
                        let pid = match l.owner {
                            LockOwner::Process(p) => p.0,
                            LockOwner::Description(_) => -1,
                        };
                        out[0..2].copy_from_slice(&l_type.to_le_bytes());
                        out[2..4].copy_from_slice(&(SEEK_SET as i16).to_le_bytes());
                        out[8..16].copy_from_slice(&(l.start as i64).to_le_bytes());
                        out[16..24].copy_from_slice(&len.to_le_bytes());
                        out[24..28].copy_from_slice(&pid.to_le_bytes());
                    }
                }
                self.write_mem(arg, &out).map(|_| 0)
            }
            _ => {
                let wait = matches!(cmd, F_SETLKW | F_OFD_SETLKW);
                self.set_range_lock(&desc, &data, owner, request.kind, (start, end), wait)
            }
        }
    }

    /// F_SETLK and F_SETLKW (and the OFD forms): checks the access mode, then sets the lock, fails with EAGAIN,
    /// detects a deadlock, or blocks.
    fn set_range_lock(
        &mut self,
        desc: &Description,
        data: &SharedFile,
        owner: LockOwner,
        kind: Option<LockKind>,
        (start, end): (u64, u64),
        wait: bool,
    ) -> SysResult {
        let allowed = match kind {
            Some(LockKind::Read) => desc.borrow().readable(),
            Some(LockKind::Write) => desc.borrow().writable(),
            None => true,
        };
        if !allowed {
            return Err(EBADF);
        }
        if let Some(kind) = kind {
            let conflict = data.borrow().locks.conflict(owner, kind, start, end);
            if let Some(holder) = conflict {
                if !wait {
                    return Err(EAGAIN);
                }
                if let (LockOwner::Process(me), LockOwner::Process(them)) = (owner, holder.owner) {
                    if self.waits_for(them, me) {
                        return Err(EDEADLK);
                    }
                    self.thread.lock_blocker = Some(them);
                }
                return Err(self.would_block(None));
            }
        }
        data.borrow_mut()
            .locks
            .set(owner, kind, start, end)
            .map_err(|super::super::locks::TooManyLocks| ENOLCK)?;
        Ok(0)
    }

    /// Whether process `from` waits, directly or through a chain of at most `DEADLOCK_CHAIN_MAX` waiting
    /// processes, for a POSIX lock that process `target` holds.
    fn waits_for(&self, from: Pid, target: Pid) -> bool {
        let mut at = from;
        for _ in 0..DEADLOCK_CHAIN_MAX {
            if at == target {
                return true;
            }
            match self.blocked_on_lock(at) {
                Some(next) => at = next,
                None => return false,
            }
        }
        false
    }

    /// The process whose POSIX lock a thread of process `pid` waits for in F_SETLKW, if one does.
    fn blocked_on_lock(&self, pid: Pid) -> Option<Pid> {
        self.blocked.iter().find_map(|(tid, b)| {
            if b.nr != NR_FCNTL || b.args[1] != F_SETLKW as u64 {
                return None;
            }
            let thread = self.threads.get(tid)?;
            (thread.pid == pid).then_some(thread.lock_blocker).flatten()
        })
    }

    /// flock(2): a shared (LOCK_SH) or exclusive (LOCK_EX) lock of the whole file for the description, or its
    /// removal (LOCK_UN); LOCK_NB fails with EWOULDBLOCK instead of waiting. A description converting its lock
    /// gives up the old one first, as Linux does.
    pub(super) fn sys_flock(&mut self, fd: i32, operation: u32) -> SysResult {
        const LOCK_SH: u32 = 1;
        const LOCK_EX: u32 = 2;
        const LOCK_NB: u32 = 4;
        const LOCK_UN: u32 = 8;
        let desc = self.proc.fds.get(fd)?;
        let kind = match operation & !LOCK_NB {
            LOCK_SH => Some(LockKind::Read),
            LOCK_EX => Some(LockKind::Write),
            LOCK_UN => None,
            _ => return Err(EINVAL),
        };
        let Some((data, _)) = regular_file(&desc) else {
            return Ok(0);
        };
        let id = description_id(&desc, &data, kind.is_some());
        let mut locks = data.borrow_mut();
        match kind {
            Some(kind) if !locks.locks.flock_free(id, kind) => {
                // The old lock goes even when the new one must wait (flock(2), on converting).
                if locks.locks.holds_flock(id) {
                    locks.locks.flock_set(id, None);
                }
                drop(locks);
                if operation & LOCK_NB != 0 {
                    return Err(EAGAIN);
                }
                Err(self.would_block(None))
            }
            kind => {
                locks.locks.flock_set(id, kind);
                Ok(0)
            }
        }
    }
}
