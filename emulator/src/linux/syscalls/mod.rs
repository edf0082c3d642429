//! The syscall table and what every syscall shares: the dispatch by number, guest-memory helpers, the attempt
//! of a syscall (bracketed by the host's entry and exit calls) and its re-run after it blocked. Each family
//! lives in a file of its own, following the man pages (section 2) and, where they are silent, the kernel:
//! io.rs (bytes through descriptors, descriptor management, poll), paths.rs (open, stat, directories),
//! memory.rs (mmap, brk), time.rs (clocks), system.rs (uname, limits, prctl), signals.rs (actions, sending,
//! waiting), tasks.rs (threads, futex, sleeps, exit), processes.rs (fork, vfork, execve, wait, groups),
//! sockets.rs (socket, bind, listen, accept, connect, send and receive, options), ready.rs (poll, select,
//! epoll, eventfd), timers.rs (alarm, itimers, timer_create, timerfd).
//!
//! Convention (x86-64 ABI, A.2.1): number in rax, arguments in rdi, rsi, rdx, r10, r8, r9; the result or -errno in
//! rax; the SYSCALL instruction leaves the return address in rcx and rflags in r11. An unknown number returns
//! -ENOSYS and is counted by number for the report; with `strict` it ends the run as SIGSYS (what a seccomp filter
//! would do). Guest buffers are accessed with the guest's permissions, and a bad pointer is -EFAULT, never a panic.
//!
//! Decisions worth knowing:
//! - uname is fixed: Linux 6.1.0 on "tandem", x86_64.
//! - Clocks read virtual time (see `LinuxMachine::elapsed_ns`); a sleep blocks until the clock reaches its
//!   deadline, which skips ahead when every task waits (kernel.rs).
//! - A syscall that cannot complete returns `Outcome::Block` (or, from a handler returning `SysResult`, the
//!   internal `WOULD_BLOCK`): it is attempted again when the task is woken, from the top, with the deadline of
//!   its first attempt in `restart_deadline`. A handler must therefore change nothing before it decides to
//!   block.

mod io;
mod locks;
mod memory;
mod paths;
pub(super) mod processes;
mod ready;
mod signals;
mod sockets;
mod system;
pub(super) mod tasks;
mod time;
mod timers;

use super::abi::*;
use super::fd::{FileKind, OpenFile, Pipe, PIPE_BUF, PIPE_BYTES_MAX};
use super::host::{Timespec, GUEST_DEV};
use super::ids::GuestNs;
use super::kernel::{Restart, Wait};
use super::net;
use super::signal::{bit, SigAction, SS_DISABLE, SS_ONSTACK};
use super::syscall_faults::SyscallFaultAction;
use super::syscall_policy::{path_argument, Denial, DenyAction};
use super::sysnames::syscall_name;
use super::vfs::{self, Device, FileData, GuestPath, Node, Resolved};
use super::{Host, LinuxMachine, Termination, GUEST_GID, GUEST_UID};
use crate::cpu::{RAX, RCX, RDI, RDX, RSI};
use crate::linux::elf;
use crate::memory::{Perms, PAGE_MASK, PAGE_SIZE};
use crate::shared::Shared;
use crate::storage::IoOp;
use std::sync::Arc;

/// Lowest and highest (exclusive) addresses the kernel picks for mmap without a usable hint.
pub const MMAP_MIN: u64 = 0x1_0000;
pub const MMAP_TOP: u64 = 0x7fff_f7ff_f000;
/// Largest program break growth.
pub const BRK_BYTES_MAX: u64 = 1 << 30;
/// Largest single read or write a syscall moves (Linux's MAX_RW_COUNT).
pub const RW_BYTES_MAX: u64 = 0x7fff_f000;
/// Most iovecs in one readv/writev (UIO_MAXIOV).
pub const IOV_MAX: u64 = 1024;
/// Start of CLOCK_MONOTONIC: the guest "booted" this long before the run started.
pub const MONOTONIC_START_NS: u64 = 1_000_000_000;

const MAP_SHARED: u64 = 0x01;
const MAP_FIXED: u64 = 0x10;
const MAP_ANONYMOUS: u64 = 0x20;
const MAP_FIXED_NOREPLACE: u64 = 0x10_0000;
const MREMAP_MAYMOVE: u64 = 1;
const MREMAP_FIXED: u64 = 2;

type SysResult = Result<u64, Errno>;

/// brk's number: its failure is a result, not an errno (see `syscall`).
const SYS_BRK: u64 = 12;

/// What a syscall did to the register file.
pub(super) enum Outcome {
    /// Store this value (or -errno) in rax.
    Return(SysResult),
    /// The syscall set every register itself (rt_sigreturn) or ended the thread or the process.
    NoReturn,
    /// The syscall cannot complete yet: the thread waits (see kernel.rs), until this deadline at the latest.
    Block(Wait, Option<GuestNs>),
}

/// A syscall's answer decided before its handler: an injected fault or a denial by the enforced profile.
enum Forced {
    /// The call fails with this errno without running.
    Errno(Errno),
    /// The process is killed by SIGSYS (a profile's kill action), for this reason.
    Kill { cause: String },
}

/// Not an errno the guest ever sees: a file-family handler's way of saying "block" (see `would_block`).
const WOULD_BLOCK: Errno = Errno(0x1_0000);

/// What the host's syscall_exit sees of a syscall that blocked (Linux's ERESTARTSYS: "to be restarted").
const BLOCKED_RESULT: u64 = (-512i64) as u64;

fn perms_of(prot: u64) -> Perms {
    let mut p = Perms::NONE;
    if prot & 1 != 0 {
        p = p.union(Perms::READ);
    }
    if prot & 2 != 0 {
        p = p.union(Perms::WRITE);
    }
    if prot & 4 != 0 {
        p = p.union(Perms::EXEC);
    }
    p
}

fn page_up(x: u64) -> Option<u64> {
    x.checked_add(PAGE_MASK).map(|v| v & !PAGE_MASK)
}

impl<H: Host> LinuxMachine<H> {
    // ---------------------------------------------------------------------------------------------------------
    // Guest memory helpers.

    pub(super) fn read_mem(&mut self, addr: u64, len: u64) -> Result<Vec<u8>, Errno> {
        if len > RW_BYTES_MAX {
            return Err(EFAULT);
        }
        let mut buf = vec![0u8; len as usize];
        self.machine
            .cpu
            .mem
            .read_bytes(addr, &mut buf)
            .map_err(|_| EFAULT)?;
        Ok(buf)
    }

    pub(super) fn write_mem(&mut self, addr: u64, bytes: &[u8]) -> Result<(), Errno> {
        self.machine
            .cpu
            .mem
            .write_bytes(addr, bytes)
            .map_err(|_| EFAULT)?;
        // Bytes written into a shared file mapping are written into the file (files.rs).
        self.memory_written(addr, bytes.len() as u64);
        Ok(())
    }

    pub(super) fn read_u64(&mut self, addr: u64) -> Result<u64, Errno> {
        self.machine.cpu.mem.read_u64(addr).map_err(|_| EFAULT)
    }

    pub(super) fn write_u64(&mut self, addr: u64, v: u64) -> Result<(), Errno> {
        self.write_mem(addr, &v.to_le_bytes())
    }

    pub(super) fn write_u32(&mut self, addr: u64, v: u32) -> Result<(), Errno> {
        self.write_mem(addr, &v.to_le_bytes())
    }

    /// A NUL-terminated string of at most `max` bytes.
    pub(super) fn read_cstring(&mut self, addr: u64, max: usize) -> Result<Vec<u8>, Errno> {
        let mut out = Vec::new();
        let mut a = addr;
        loop {
            let in_page = (PAGE_SIZE as u64 - (a & PAGE_MASK)) as usize;
            let mut chunk = vec![0u8; in_page];
            self.machine
                .cpu
                .mem
                .read_bytes(a, &mut chunk)
                .map_err(|_| EFAULT)?;
            if let Some(n) = chunk.iter().position(|&b| b == 0) {
                out.extend_from_slice(&chunk[..n]);
                return Ok(out);
            }
            out.extend_from_slice(&chunk);
            if out.len() > max {
                return Err(ENAMETOOLONG);
            }
            a = a.wrapping_add(in_page as u64);
        }
    }

    pub(super) fn read_path(&mut self, addr: u64) -> Result<Vec<u8>, Errno> {
        let p = self.read_cstring(addr, vfs::PATH_BYTES_MAX)?;
        if p.is_empty() {
            return Err(ENOENT);
        }
        Ok(p)
    }

    pub(super) fn write_timespec(&mut self, addr: u64, ns: u64) -> Result<(), Errno> {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&(ns / 1_000_000_000).to_le_bytes());
        b[8..].copy_from_slice(&(ns % 1_000_000_000).to_le_bytes());
        self.write_mem(addr, &b)
    }

    pub(super) fn read_timespec(&mut self, addr: u64) -> Result<u64, Errno> {
        let b = self.read_mem(addr, 16)?;
        let sec = i64::from_le_bytes(b[..8].try_into().unwrap());
        let nsec = i64::from_le_bytes(b[8..].try_into().unwrap());
        if sec < 0 || !(0..1_000_000_000).contains(&nsec) {
            return Err(EINVAL);
        }
        Ok((sec as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(nsec as u64))
    }

    // ---------------------------------------------------------------------------------------------------------
    // Dispatch.

    /// Handles the SYSCALL that just retired.
    pub(super) fn syscall(&mut self) {
        let cpu = &mut self.machine.cpu;
        let nr = cpu.regs.gpr[RAX];
        let a = [
            cpu.regs.gpr[RDI],
            cpu.regs.gpr[RSI],
            cpu.regs.gpr[RDX],
            cpu.regs.gpr[10],
            cpu.regs.gpr[8],
            cpu.regs.gpr[9],
        ];
        // SYSCALL: rcx = return address, r11 = rflags (SDM Vol. 2B, SYSCALL).
        cpu.regs.gpr[RCX] = cpu.regs.rip;
        cpu.regs.gpr[11] = cpu.rflags();
        *self.stats.syscalls.entry(syscall_name(nr)).or_insert(0) += 1;
        self.restart_deadline = None;
        let mut a = a;
        let mut forced = None;
        if let Some(denied) = self.denied_by_policy(nr, &a) {
            self.attempt_syscall(nr, a, Some(denied));
            return;
        }
        if let Some(action) = self.syscall_faults.as_mut().and_then(|f| f.on_call(nr)) {
            match action {
                // brk(2) does not return an errno: it fails by leaving the break where it is (what brk(0)
                // answers), which the C library turns into ENOMEM.
                SyscallFaultAction::Errno(_) if nr == SYS_BRK => a[0] = 0,
                SyscallFaultAction::Errno(_) => forced = action.errno().map(Forced::Errno),
                SyscallFaultAction::Short(n) => a[2] = a[2].min(n.max(1) as u64),
            }
        }
        self.attempt_syscall(nr, a, forced);
    }

    /// Re-runs the syscall a woken thread was blocked in. A signal that arrived meanwhile interrupts it first:
    /// -EINTR, or, for a handler installed with SA_RESTART and a syscall Linux restarts, the syscall instruction
    /// again once the handler returns (rip back on it, rax the syscall number, as Linux's ERESTARTSYS does).
    pub(super) fn restart_syscall(&mut self, r: Restart) {
        if let Some(restart) = self.interrupting_signal(r.nr) {
            let cpu = &mut self.machine.cpu;
            if restart {
                cpu.regs.rip = cpu.regs.rip.wrapping_sub(2);
                cpu.regs.gpr[RAX] = r.nr;
            } else {
                cpu.regs.gpr[RAX] = EINTR.negated();
                self.write_remaining(r.nr, r.args, r.deadline);
            }
            self.deliver_pending();
            return;
        }
        self.restart_deadline = r.deadline;
        self.attempt_syscall(r.nr, r.args, None);
    }

    /// One attempt at a syscall, bracketed by the host's entry and exit calls (a recording logs both, so a
    /// syscall that blocks and is re-run appears once per attempt, with `BLOCKED_RESULT` for the ones that
    /// blocked). A `forced` errno (an injected fault, syscall_faults.rs) is the result without running the call.
    fn attempt_syscall(&mut self, nr: u64, a: [u64; 6], forced: Option<Forced>) {
        let icount = self.machine.cpu.icount;
        self.host.syscall_entry(icount, self.thread.tid.0, nr);
        // Stores through shared file mappings reach their files before any syscall can look (files.rs).
        self.flush_shared_maps();
        self.block_wake_at = None;
        let mut blocked = false;
        let outcome = match forced {
            Some(Forced::Errno(e)) => Outcome::Return(Err(e)),
            Some(Forced::Kill { cause }) => {
                self.end_process(Termination::Signaled {
                    signal: SIGSYS,
                    rip: self.machine.cpu.regs.rip.wrapping_sub(2),
                    icount,
                    cause,
                });
                Outcome::NoReturn
            }
            None => self.dispatch(nr, a),
        };
        let result = match outcome {
            Outcome::Return(r) => {
                self.machine.cpu.regs.gpr[RAX] = match r {
                    Ok(v) => v,
                    Err(e) => e.negated(),
                };
                self.bump_generation();
                self.deliver_pending();
                self.machine.cpu.regs.gpr[RAX]
            }
            Outcome::NoReturn => {
                self.bump_generation();
                self.machine.cpu.regs.gpr[RAX]
            }
            Outcome::Block(wait, deadline) => {
                self.block_current(wait, deadline, nr, a);
                blocked = true;
                BLOCKED_RESULT
            }
        };
        if self.config.trace_syscalls {
            self.trace_syscall(icount, nr, a, result);
        }
        self.host.syscall_exit(result);
        if blocked {
            self.interrupt_if_signal_ready();
        }
    }

    /// The answer of the enforced profile (syscall_policy.rs) to syscall `nr`, when it denies it.
    fn denied_by_policy(&mut self, nr: u64, a: &[u64; 6]) -> Option<Forced> {
        let rip = self.machine.cpu.regs.rip.wrapping_sub(2);
        let icount = self.machine.cpu.icount;
        let tid = self.thread.tid.0;
        let policy = self.syscall_policy.as_mut()?;
        let (action, path) = match policy.check(nr, tid, rip, icount) {
            Some(action) => (action, None),
            None => {
                let k = path_argument(nr).filter(|_| policy.checks_paths())?;
                // A path that cannot be read is the handler's EFAULT (or ENAMETOOLONG), not a denial.
                let path = self.read_cstring(a[k], vfs::PATH_BYTES_MAX).ok()?;
                let denial = Denial {
                    nr,
                    tid,
                    rip,
                    icount,
                    path: Some(path.clone()),
                };
                let action = self.syscall_policy.as_mut()?.check_path(denial)?;
                (action, Some(path))
            }
        };
        let what = match &path {
            Some(p) => format!(
                "{} (number {nr}) of {} denied by the profile's paths",
                syscall_name(nr),
                String::from_utf8_lossy(p)
            ),
            None => format!("{} (number {nr}) denied by the profile", syscall_name(nr)),
        };
        Some(match action {
            DenyAction::Errno(e) => Forced::Errno(Errno(i32::from(e))),
            DenyAction::Kill => Forced::Kill {
                cause: format!("{what} (--profile-action kill)"),
            },
        })
    }

    /// The running thread just blocked with a signal already pending that its mask (perhaps the one
    /// sigsuspend, ppoll, pselect6 or epoll_pwait just installed) lets through: the wait is interrupted at
    /// once, as Linux checks signal_pending before it sleeps, instead of waiting for a signal that came.
    fn interrupt_if_signal_ready(&mut self) {
        let tid = self.thread.tid;
        let ready = (self.thread.sig.pending | self.proc.shared_pending) & !self.thread.sig.blocked;
        let interruptible = self
            .blocked
            .get(&tid)
            .is_some_and(|b| !matches!(b.wait, Wait::Vfork { .. }));
        if ready == 0 || !interruptible {
            return;
        }
        self.wake(tid, None);
        if let Some(r) = self.thread.restart.take() {
            self.restart_syscall(r);
        }
    }

    fn unknown(&mut self, nr: u64) -> Outcome {
        *self.stats.unknown_syscalls.entry(nr).or_insert(0) += 1;
        if self.config.strict {
            self.end_process(Termination::Signaled {
                signal: SIGSYS,
                rip: self.machine.cpu.regs.rip.wrapping_sub(2),
                icount: self.machine.cpu.icount,
                cause: format!(
                    "unknown syscall {} (number {nr}) with --strict",
                    syscall_name(nr)
                ),
            });
            return Outcome::NoReturn;
        }
        Outcome::Return(Err(ENOSYS))
    }

    /// A syscall tandem knows but cannot honour yet: -ENOSYS (or SIGSYS with `strict`) like an unknown one, with a
    /// reason the CLI prints once at the end of the run, instead of a success that silently does nothing.
    fn unsupported(&mut self, nr: u64, why: &'static str) -> Outcome {
        self.stats.unsupported.insert(nr, why);
        self.unknown(nr)
    }

    /// Runs syscall `nr` by its family's table. A handler's `WOULD_BLOCK` becomes `Outcome::Block`.
    fn dispatch(&mut self, nr: u64, a: [u64; 6]) -> Outcome {
        let outcome = match self
            .dispatch_tasks(nr, a)
            .or_else(|| self.dispatch_signals(nr, a))
            .or_else(|| self.dispatch_processes(nr, a))
            .or_else(|| self.dispatch_sockets(nr, a))
            .or_else(|| self.dispatch_ready(nr, a))
            .or_else(|| self.dispatch_timers(nr, a))
        {
            Some(outcome) => outcome,
            None => self.dispatch_files_and_rest(nr, a),
        };
        match outcome {
            Outcome::Return(Err(WOULD_BLOCK)) => {
                Outcome::Block(Wait::Retry, self.block_deadline.take())
            }
            Outcome::Return(_) if self.termination.is_some() || !self.current_can_run() => {
                Outcome::NoReturn
            }
            other => other,
        }
    }

    fn dispatch_files_and_rest(&mut self, nr: u64, a: [u64; 6]) -> Outcome {
        let fd0 = a[0] as i32;
        let r = match nr {
            0 => self.sys_read(fd0, a[1], a[2], None),
            1 => self.sys_write(fd0, a[1], a[2], None),
            2 => self.sys_openat(AT_FDCWD, a[0], a[1] as u32, a[2] as u32),
            3 => self.proc.fds.close(fd0).map(|_| 0),
            4 => self.sys_fstatat(AT_FDCWD, a[0], a[1], 0),
            5 => self.sys_fstatat(fd0, 0, a[1], AT_EMPTY_PATH),
            6 => self.sys_fstatat(AT_FDCWD, a[0], a[1], AT_SYMLINK_NOFOLLOW),
            8 => self.sys_lseek(fd0, a[1] as i64, a[2] as u32),
            9 => self.sys_mmap(a[0], a[1], a[2], a[3], a[4] as i32, a[5]),
            10 => self.sys_mprotect(a[0], a[1], a[2]),
            11 => self.sys_munmap(a[0], a[1]),
            12 => Ok(self.sys_brk(a[0])),
            13 => self.sys_rt_sigaction(a[0] as i32, a[1], a[2], a[3]),
            14 => self.sys_rt_sigprocmask(a[0] as i32, a[1], a[2], a[3]),
            15 => {
                self.sigreturn();
                return Outcome::NoReturn;
            }
            16 => self.sys_ioctl(fd0, a[1], a[2]),
            17 => self.sys_read(fd0, a[1], a[2], Some(a[3])),
            18 => self.sys_write(fd0, a[1], a[2], Some(a[3])),
            19 => self.sys_readv(fd0, a[1], a[2], None),
            20 => self.sys_writev(fd0, a[1], a[2], None),
            21 => self.sys_faccessat(AT_FDCWD, a[0], a[1] as u32),
            22 => self.sys_pipe2(a[0], 0),
            25 => self
                .sys_mremap(a[0], a[1], a[2], a[3], a[4])
                .inspect(|&new| {
                    self.shared_maps_moved(a[0], a[1], new, a[2]);
                    self.map_names_moved(a[0], a[1], new, a[2]);
                }),
            26 => self.sys_msync(a[0], a[1], a[2]),
            28 => Ok(0), // madvise: advice only
            149 => self.sys_mlock(a[0], a[1], 0),
            150 => self.sys_mlock(a[0], a[1], 0), // munlock: checks what mlock checks
            151 => self.sys_mlockall(a[0]),
            152 => Ok(0),                            // munlockall
            325 => self.sys_mlock(a[0], a[1], a[2]), // mlock2
            140 => self.sys_getpriority(a[0], a[1]),
            143 => self.sys_sched_getparam(a[0], a[1]),
            145 => self.sys_sched_getscheduler(a[0]),
            146 => self.sys_sched_priority_bound(a[0], true),
            147 => self.sys_sched_priority_bound(a[0], false),
            315 => self.sys_sched_getattr(a[0], a[1], a[2], a[3]),
            237 => self.sys_set_mempolicy(a[2]), // mbind(addr, len, mode, ...)
            238 => self.sys_set_mempolicy(a[0]),
            239 => self.sys_get_mempolicy(a[0], a[1], a[2], a[3], a[4]),
            125 => self.sys_capget(a[0], a[1]),
            126 => self.sys_capset(a[0], a[1]),
            329 => self.sys_pkey_mprotect(a[0], a[1], a[2], a[3] as i32),
            330 => self.sys_pkey_alloc(a[0], a[1]),
            331 => Err(EINVAL), // pkey_free: no key was ever given
            221 => self.proc.fds.get(fd0).map(|_| 0), // fadvise64: advice only (sort, cat and cp give it)
            32 => self.sys_dup(fd0, 0, None),
            33 => self.sys_dup2(fd0, a[1] as i32, 0, true),
            40 => self.sys_sendfile(fd0, a[1] as i32, a[2], a[3]),
            326 => self.sys_copy_file_range(fd0, a[1], a[2] as i32, a[3], a[4], a[5]),
            39 => Ok(self.proc.pid.0 as u64),
            63 => self.sys_uname(a[0]),
            72 => self.sys_fcntl(fd0, a[1] as u32, a[2]),
            73 => self.sys_flock(fd0, a[1] as u32),
            74 => self.sys_fsync(fd0, false),
            75 => self.sys_fsync(fd0, true),
            162 => self.sys_sync(None),
            277 => self.sys_sync_file_range(fd0, a[1] as i64, a[2] as i64, a[3]),
            306 => self.sys_sync(Some(fd0)),
            76 => self.sys_truncate_path(a[0], a[1] as i64),
            77 => self.sys_ftruncate(fd0, a[1] as i64),
            79 => self.sys_getcwd(a[0], a[1]),
            80 => self.sys_chdir(a[0]),
            81 => self.sys_fchdir(fd0),
            82 => self.sys_renameat(AT_FDCWD, a[0], AT_FDCWD, a[1]),
            83 => self.sys_mkdirat(AT_FDCWD, a[0], a[1] as u32),
            84 => self.sys_unlinkat(AT_FDCWD, a[0], AT_REMOVEDIR),
            85 => self.sys_openat(AT_FDCWD, a[0], O_CREAT | O_WRONLY | O_TRUNC, a[1] as u32),
            87 => self.sys_unlinkat(AT_FDCWD, a[0], 0),
            88 => self.sys_symlinkat(a[0], AT_FDCWD, a[1]),
            86 => self.sys_linkat(AT_FDCWD, a[0], AT_FDCWD, a[1], 0),
            89 => self.sys_readlinkat(AT_FDCWD, a[0], a[1], a[2]),
            90 => self.sys_fchmodat(AT_FDCWD, a[0], a[1], 0),
            91 => self.sys_fchmod(fd0, a[1]),
            92 => self.sys_fchownat(AT_FDCWD, a[0], a[1], a[2], 0),
            93 => self.sys_fchown(fd0, a[1], a[2]),
            94 => self.sys_fchownat(AT_FDCWD, a[0], a[1], a[2], AT_SYMLINK_NOFOLLOW as u64),
            95 => {
                let old = self.proc.umask;
                self.proc.umask = a[0] as u32 & 0o777;
                Ok(old as u64)
            }
            96 => self.sys_gettimeofday(a[0]),
            97 => self.sys_prlimit(0, a[0] as u32, 0, a[1]),
            98 => self.sys_getrusage(a[1]),
            99 => self.sys_sysinfo(a[0]),
            100 => self.sys_times(a[0]),
            102 | 107 => Ok(GUEST_UID),
            104 | 108 => Ok(GUEST_GID),
            105 | 106 => Ok(0), // setuid, setgid: to the one uid and gid there is
            110 => Ok(self.proc.ppid.0 as u64),
            115 => Ok(0), // getgroups: no supplementary groups
            118 | 120 => self.sys_getresid(a, GUEST_UID),
            131 => self.sys_sigaltstack(a[0], a[1]),
            137 => self.sys_statfs(a[0], a[1]),
            138 => self.sys_fstatfs(fd0, a[1]),
            132 => self.sys_utime(a[0], a[1]),
            157 => self.sys_prctl(a[0], a[1]),
            158 => self.sys_arch_prctl(a[0], a[1]),
            186 => Ok(self.thread.tid.0 as u64),
            201 => self.sys_time(a[0]),
            217 => self.sys_getdents64(fd0, a[1], a[2]),
            228 => self.sys_clock_gettime(a[0] as i32, a[1]),
            229 => self.sys_clock_getres(a[1]),
            235 => self.sys_futimesat(AT_FDCWD, a[0], a[1]),
            257 => self.sys_openat(fd0, a[1], a[2] as u32, a[3] as u32),
            258 => self.sys_mkdirat(fd0, a[1], a[2] as u32),
            262 => self.sys_fstatat(fd0, a[1], a[2], a[3] as u32),
            263 => self.sys_unlinkat(fd0, a[1], a[2] as u32),
            260 => self.sys_fchownat(fd0, a[1], a[2], a[3], a[4]),
            261 => self.sys_futimesat(fd0, a[1], a[2]),
            264 | 316 => self.sys_renameat(fd0, a[1], a[2] as i32, a[3]),
            265 => self.sys_linkat(fd0, a[1], a[2] as i32, a[3], a[4] as u32),
            266 => self.sys_symlinkat(a[0], a[1] as i32, a[2]),
            267 => self.sys_readlinkat(fd0, a[1], a[2], a[3]),
            268 => self.sys_fchmodat(fd0, a[1], a[2], 0),
            269 | 439 => self.sys_faccessat(fd0, a[1], a[2] as u32),
            280 => self.sys_utimensat(fd0, a[1], a[2], a[3] as u32),
            292 => self.sys_dup2(fd0, a[1] as i32, a[2] as u32, false),
            293 => self.sys_pipe2(a[0], a[1] as u32),
            295 => self.sys_readv(fd0, a[1], a[2], Some(a[3])),
            296 => self.sys_writev(fd0, a[1], a[2], Some(a[3])),
            302 => self.sys_prlimit(a[0] as i32, a[1] as u32, a[2], a[3]),
            318 => self.sys_getrandom(a[0], a[1]),
            332 => self.sys_statx(fd0, a[1], a[2] as u32, a[4]),
            334 => Err(ENOSYS), // rseq: glibc copes without it
            452 => self.sys_fchmodat(fd0, a[1], a[2], a[3] as u32),
            436 => self.sys_close_range(a[0] as u32, a[1] as u32, a[2] as u32),
            188..=199 => self.sys_xattr(nr, a[0]),
            _ => return self.unknown(nr),
        };
        Outcome::Return(r)
    }

    /// close_range(2): `first > last` and unknown flags are EINVAL (as Linux checks them); CLOSE_RANGE_CLOEXEC
    /// marks the range close-on-exec instead of closing it; CLOSE_RANGE_UNSHARE changes nothing here, since the
    /// descriptor table is copied, not shared, at fork.
    fn sys_close_range(&mut self, first: u32, last: u32, flags: u32) -> Result<u64, Errno> {
        const CLOSE_RANGE_UNSHARE: u32 = 1 << 1;
        const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;
        if flags & !(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC) != 0 || first > last {
            return Err(EINVAL);
        }
        let clamp = |fd: u32| fd.min(i32::MAX as u32) as i32;
        let (first, last) = (clamp(first), clamp(last));
        if flags & CLOSE_RANGE_CLOEXEC != 0 {
            self.proc.fds.set_cloexec_range(first, last);
        } else {
            self.proc.fds.close_range(first, last);
        }
        Ok(0)
    }

    /// One line of the syscall trace: `[tid] icount name(args) = result`.
    fn trace_syscall(&mut self, icount: u64, nr: u64, a: [u64; 6], result: u64) {
        let shown = match result {
            BLOCKED_RESULT => "? (blocked)".to_string(),
            r if (r as i64) < 0 && (r as i64) > -4096 => format!("-{}", -(r as i64)),
            r => format!("{r:#x}"),
        };
        let line = format!(
            "[{}] {icount} {}({:#x}, {:#x}, {:#x}, {:#x}) = {shown}",
            self.thread.tid,
            syscall_name(nr),
            a[0],
            a[1],
            a[2],
            a[3]
        );
        self.host.trace(&line);
    }

    /// A file-family syscall that cannot complete yet: it is re-run when another task did something, or at
    /// `deadline` (returned as the syscall's error; `dispatch` turns it into `Outcome::Block`).
    pub(super) fn would_block(&mut self, deadline: Option<GuestNs>) -> Errno {
        self.would_block_until(deadline, None)
    }

    /// The same, also re-run at `wake_at` (a timerfd it waits on expires then) without that being its
    /// timeout: the deadline its re-runs see stays `deadline`.
    pub(super) fn would_block_until(
        &mut self,
        deadline: Option<GuestNs>,
        wake_at: Option<GuestNs>,
    ) -> Errno {
        self.block_deadline = deadline;
        self.block_wake_at = wake_at;
        WOULD_BLOCK
    }
}
