//! The syscall table: what each x86-64 Linux syscall the layer implements does to the process, following the man
//! pages (section 2) and, where they are silent, the kernel's behaviour.
//!
//! Convention (x86-64 ABI, A.2.1): number in rax, arguments in rdi, rsi, rdx, r10, r8, r9; the result or -errno in
//! rax; the SYSCALL instruction leaves the return address in rcx and rflags in r11. An unknown number returns
//! -ENOSYS and is counted by number for the report; with `strict` it ends the run as SIGSYS (what a seccomp filter
//! would do). Guest buffers are accessed with the guest's permissions, and a bad pointer is -EFAULT, never a panic.
//!
//! Decisions worth knowing:
//! - uname is fixed: Linux 6.1.0 on "tandem", x86_64.
//! - Clocks read virtual time (see `LinuxMachine::elapsed_ns`); nanosleep and friends advance it and return at once.
//! - One thread: futex wait on a matching value would sleep forever and answers ETIMEDOUT with a timeout and EAGAIN
//!   without one; fork, clone and execve are not implemented (ENOSYS).

use super::abi::*;
use super::fd::{FileKind, OpenFile, Pipe, PIPE_BUF, PIPE_BYTES_MAX};
use super::host::{Timespec, GUEST_DEV};
use super::ids::GuestNs;
use super::kernel::{Restart, Wait};
use super::signal::{bit, SigAction, SS_DISABLE, SS_ONSTACK};
use super::sysnames::syscall_name;
use super::vfs::{self, Device, FileData, GuestPath, Node, Resolved};
use super::{Host, LinuxMachine, Termination, GUEST_GID, GUEST_UID};
use crate::cpu::{RAX, RCX, RDI, RDX, RSI};
use crate::memory::{Perms, PAGE_MASK, PAGE_SIZE};
use std::cell::RefCell;
use std::rc::Rc;
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

/// What a syscall did to the register file.
pub(super) enum Outcome {
    /// Store this value (or -errno) in rax.
    Return(SysResult),
    /// The syscall set every register itself (rt_sigreturn) or ended the thread or the process.
    NoReturn,
    /// The syscall cannot complete yet: the thread waits (see kernel.rs), until this deadline at the latest.
    Block(Wait, Option<GuestNs>),
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
        self.attempt_syscall(nr, a);
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
        self.attempt_syscall(r.nr, r.args);
    }

    /// One attempt at a syscall, bracketed by the host's entry and exit calls (a recording logs both, so a
    /// syscall that blocks and is re-run appears once per attempt, with `BLOCKED_RESULT` for the ones that
    /// blocked).
    fn attempt_syscall(&mut self, nr: u64, a: [u64; 6]) {
        let icount = self.machine.cpu.icount;
        self.host.syscall_entry(icount, self.thread.tid.0, nr);
        // Stores through shared file mappings reach their files before any syscall can look (files.rs).
        self.flush_shared_maps();
        let result = match self.dispatch(nr, a) {
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
                BLOCKED_RESULT
            }
        };
        if self.config.trace_syscalls {
            self.trace_syscall(icount, nr, a, result);
        }
        self.host.syscall_exit(result);
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
            7 => self.sys_poll(a[0], a[1], a[2] as i32 as i64),
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
                .inspect(|&new| self.shared_maps_moved(a[0], a[1], new, a[2])),
            26 => self.sys_msync(a[0], a[1], a[2]),
            28 => Ok(0), // madvise: advice only
            32 => self.sys_dup(fd0, 0, None),
            33 => self.sys_dup2(fd0, a[1] as i32, 0, true),
            37 => {
                return self.unsupported(
                    nr,
                    "alarm is not implemented yet (timers arrive with the guest kernel): answered -ENOSYS",
                )
            }
            38 => {
                return self.unsupported(
                    nr,
                    "setitimer is not implemented yet (timers arrive with the guest kernel): answered -ENOSYS",
                )
            }
            40 => self.sys_sendfile(fd0, a[1] as i32, a[2], a[3]),
            39 => Ok(self.proc.pid.0 as u64),
            63 => self.sys_uname(a[0]),
            72 => self.sys_fcntl(fd0, a[1] as u32, a[2]),
            74 | 75 => self.proc.fds.get(fd0).map(|_| 0), // fsync, fdatasync
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
            115 => Ok(0),                             // getgroups: no supplementary groups
            118 | 120 => self.sys_getresid(a, GUEST_UID),
            131 => self.sys_sigaltstack(a[0], a[1]),
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
            271 => self.sys_poll(a[0], a[1], -1),
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
            436 => {
                self.proc
                    .fds
                    .close_range(a[0] as i32, a[1].min(i32::MAX as u64) as i32);
                Ok(0)
            }
            _ => return self.unknown(nr),
        };
        Outcome::Return(r)
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

    /// The deadline of a timeout of `ms` milliseconds begun by this syscall's first attempt (kept across its
    /// re-runs); None for a negative timeout (wait for ever).
    pub(super) fn timeout_deadline_ms(&self, ms: i64) -> Option<GuestNs> {
        if ms < 0 {
            return None;
        }
        Some(
            self.restart_deadline
                .unwrap_or_else(|| self.guest_time().saturating_add(ms as u64 * 1_000_000)),
        )
    }

    /// A file-family syscall that cannot complete yet: it is re-run when another task did something, or at
    /// `deadline` (returned as the syscall's error; `dispatch` turns it into `Outcome::Block`).
    pub(super) fn would_block(&mut self, deadline: Option<GuestNs>) -> Errno {
        self.block_deadline = deadline;
        WOULD_BLOCK
    }

    // ---------------------------------------------------------------------------------------------------------
    // Files: reading and writing.

    pub(super) fn read_desc(
        &mut self,
        fd: i32,
        len: usize,
        offset: Option<u64>,
    ) -> Result<Vec<u8>, Errno> {
        let desc = self.proc.fds.get(fd)?;
        let mut d = desc.borrow_mut();
        if !d.readable() {
            return Err(EBADF);
        }
        let pos = offset.unwrap_or(d.offset);
        let out = match &d.kind {
            FileKind::Stdin => {
                if offset.is_some() {
                    return Err(ESPIPE);
                }
                let mut buf = vec![0u8; len.min(1 << 20)];
                let n = self.host.read_stdin(&mut buf)?;
                buf.truncate(n);
                return Ok(buf);
            }
            FileKind::Stdout | FileKind::Stderr => return Err(EBADF),
            FileKind::Regular { data, .. } => {
                let data = data.borrow();
                let start = (pos as usize).min(data.bytes.len());
                let end = start.saturating_add(len).min(data.bytes.len());
                data.bytes[start..end].to_vec()
            }
            FileKind::Dir { .. } => return Err(EISDIR),
            FileKind::Device(Device::Null) => Vec::new(),
            FileKind::Device(Device::Zero) => vec![0u8; len.min(1 << 20)],
            FileKind::Device(Device::Random) => {
                let mut b = vec![0u8; len.min(1 << 20)];
                self.host.fill_random(&mut b);
                b
            }
            FileKind::PipeRead(p) => {
                if offset.is_some() {
                    return Err(ESPIPE);
                }
                let mut p = p.borrow_mut();
                if p.buf.is_empty() {
                    // Empty: the end of file once no writer is left; otherwise wait for one to write.
                    return if p.writers == 0 {
                        Ok(Vec::new())
                    } else if d.flags & O_NONBLOCK != 0 {
                        Err(EAGAIN)
                    } else {
                        Err(self.would_block(None))
                    };
                }
                let n = len.min(p.buf.len());
                return Ok(p.buf.drain(..n).collect());
            }
            FileKind::PipeWrite(_) => return Err(EBADF),
        };
        if offset.is_none() {
            d.offset = pos + out.len() as u64;
        }
        Ok(out)
    }

    pub(super) fn write_desc(&mut self, fd: i32, bytes: &[u8], offset: Option<u64>) -> SysResult {
        let desc = self.proc.fds.get(fd)?;
        let now = self.now();
        let mut d = desc.borrow_mut();
        if !d.writable() {
            return Err(EBADF);
        }
        match &d.kind {
            FileKind::Stdout => self.host.write_stdout(bytes)?,
            FileKind::Stderr => self.host.write_stderr(bytes)?,
            FileKind::Stdin | FileKind::Dir { .. } | FileKind::PipeRead(_) => return Err(EBADF),
            FileKind::Device(_) => {}
            FileKind::PipeWrite(p) => {
                let mut p = p.borrow_mut();
                if p.readers == 0 {
                    // Delivered when the syscall returns, after rax holds -EPIPE.
                    self.thread.sig.pending |= bit(SIGPIPE);
                    return Err(EPIPE);
                }
                // pipe(7): a write of at most PIPE_BUF bytes is atomic (all or, when it does not fit, wait);
                // a larger one takes what fits and returns that count. Full: wait, or EAGAIN when non-blocking.
                let space = PIPE_BYTES_MAX.saturating_sub(p.buf.len());
                let fits = if bytes.len() <= PIPE_BUF {
                    if space >= bytes.len() {
                        bytes.len()
                    } else {
                        0
                    }
                } else {
                    space.min(bytes.len())
                };
                if fits == 0 {
                    return Err(if d.flags & O_NONBLOCK != 0 {
                        EAGAIN
                    } else {
                        self.would_block(None)
                    });
                }
                p.buf.extend(bytes[..fits].iter().copied());
                return Ok(fits as u64);
            }
            FileKind::Regular { data, .. } => {
                let data = data.clone();
                let mut f = data.borrow_mut();
                let pos = if d.flags & O_APPEND != 0 {
                    f.bytes.len() as u64
                } else {
                    offset.unwrap_or(d.offset)
                };
                let end = pos.checked_add(bytes.len() as u64).ok_or(EFBIG)?;
                if end > super::elf::IMAGE_SIZE_BYTES_MAX {
                    return Err(EFBIG);
                }
                let bytes_mut = Arc::make_mut(&mut f.bytes);
                if bytes_mut.len() < end as usize {
                    bytes_mut.resize(end as usize, 0);
                }
                bytes_mut[pos as usize..end as usize].copy_from_slice(bytes);
                f.attrs.mtime = now;
                f.attrs.ctime = now;
                drop(f);
                if offset.is_none() {
                    d.offset = end;
                }
                drop(d);
                self.file_changed(&data, pos, end);
            }
        }
        Ok(bytes.len() as u64)
    }

    fn sys_read(&mut self, fd: i32, buf: u64, len: u64, offset: Option<u64>) -> SysResult {
        let len = len.min(RW_BYTES_MAX);
        // A bad buffer is found after the input was consumed (the bytes are lost, as with a partial fault on Linux).
        let data = self.read_desc(fd, len as usize, offset)?;
        self.write_mem(buf, &data)?;
        Ok(data.len() as u64)
    }

    fn sys_write(&mut self, fd: i32, buf: u64, len: u64, offset: Option<u64>) -> SysResult {
        let data = self.read_mem(buf, len.min(RW_BYTES_MAX))?;
        self.write_desc(fd, &data, offset)
    }

    fn read_iovecs(&mut self, iov: u64, count: u64) -> Result<Vec<(u64, u64)>, Errno> {
        if count > IOV_MAX {
            return Err(EINVAL);
        }
        let raw = self.read_mem(iov, count * 16)?;
        Ok(raw
            .chunks_exact(16)
            .map(|c| {
                (
                    u64::from_le_bytes(c[..8].try_into().unwrap()),
                    u64::from_le_bytes(c[8..].try_into().unwrap()),
                )
            })
            .collect())
    }

    fn sys_readv(&mut self, fd: i32, iov: u64, count: u64, offset: Option<u64>) -> SysResult {
        let vecs = self.read_iovecs(iov, count)?;
        let mut total = 0u64;
        for (base, len) in vecs {
            if len == 0 {
                continue;
            }
            let data = match self.read_desc(
                fd,
                len.min(RW_BYTES_MAX) as usize,
                offset.map(|o| o + total),
            ) {
                Ok(data) => data,
                // What was read so far is returned; the error (an empty pipe, say) waits for the next call.
                Err(_) if total > 0 => break,
                Err(e) => return Err(e),
            };
            self.write_mem(base, &data)?;
            total += data.len() as u64;
            if (data.len() as u64) < len {
                break;
            }
        }
        Ok(total)
    }

    fn sys_writev(&mut self, fd: i32, iov: u64, count: u64, offset: Option<u64>) -> SysResult {
        let vecs = self.read_iovecs(iov, count)?;
        let mut all = Vec::new();
        for (base, len) in vecs {
            all.extend_from_slice(&self.read_mem(base, len.min(RW_BYTES_MAX))?);
        }
        self.write_desc(fd, &all, offset)
    }

    fn sys_lseek(&mut self, fd: i32, off: i64, whence: u32) -> SysResult {
        let desc = self.proc.fds.get(fd)?;
        let mut d = desc.borrow_mut();
        let size = match &d.kind {
            FileKind::Regular { data, .. } => data.borrow().bytes.len() as i64,
            FileKind::Dir { .. } | FileKind::Device(_) => 0,
            _ => return Err(ESPIPE),
        };
        let base = match whence {
            0 => 0,
            1 => d.offset as i64,
            2 => size,
            _ => return Err(EINVAL),
        };
        let new = base.checked_add(off).filter(|&n| n >= 0).ok_or(EINVAL)?;
        d.offset = new as u64;
        Ok(new as u64)
    }

    // ---------------------------------------------------------------------------------------------------------
    // Paths.

    /// The directory a *at() call resolves relative paths against.
    fn dir_of(&self, dirfd: i32) -> Result<GuestPath, Errno> {
        if dirfd == AT_FDCWD {
            return Ok(self.proc.cwd.clone());
        }
        let desc = self.proc.fds.get(dirfd)?;
        let d = desc.borrow();
        match &d.kind {
            FileKind::Dir { path } => Ok(path.clone()),
            _ => Err(ENOTDIR),
        }
    }

    pub(super) fn resolve_at(
        &mut self,
        dirfd: i32,
        path: &[u8],
        follow: bool,
    ) -> Result<Resolved, Errno> {
        let base = if path.first() == Some(&b'/') {
            self.vfs.root()
        } else {
            self.dir_of(dirfd)?
        };
        self.vfs.resolve(&mut self.host, &base, path, follow)
    }

    fn sys_openat(&mut self, dirfd: i32, path: u64, flags: u32, mode: u32) -> SysResult {
        let path = self.read_path(path)?;
        let r = self.resolve_at(dirfd, &path, flags & O_NOFOLLOW == 0)?;
        let cloexec = flags & O_CLOEXEC != 0;
        let wants_write = flags & O_ACCMODE != O_RDONLY;
        let now = self.now();
        let node = match r.node {
            Some(_) if flags & O_CREAT != 0 && flags & O_EXCL != 0 => return Err(EEXIST),
            Some(n) => n,
            None if flags & O_CREAT != 0 => {
                self.check_parent_dir(&r.path)?;
                let attrs = self.vfs.new_attrs(mode & !self.proc.umask, now);
                let f = Rc::new(RefCell::new(FileData::new(Vec::new(), attrs)));
                self.vfs.put_file(&r.path, f.clone());
                Node::MemoryFile(f)
            }
            None => return Err(ENOENT),
        };
        let kind = match node {
            Node::Dir(_) => {
                if wants_write {
                    return Err(EISDIR);
                }
                FileKind::Dir { path: r.path }
            }
            _ if flags & O_DIRECTORY != 0 => return Err(ENOTDIR),
            Node::Symlink { .. } => return Err(ELOOP),
            Node::Device(d) => FileKind::Device(d),
            Node::MemoryFile(_) | Node::HostFile { .. } => {
                let data = if wants_write || flags & O_TRUNC != 0 {
                    // Copy a host file up into the overlay on its first opening for writing.
                    let data = self.vfs.copy_up(&mut self.host, &r.path, &node)?;
                    if flags & O_TRUNC != 0 {
                        let old_len = {
                            let mut f = data.borrow_mut();
                            let old_len = f.bytes.len() as u64;
                            Arc::make_mut(&mut f.bytes).clear();
                            f.attrs.mtime = now;
                            f.attrs.ctime = now;
                            old_len
                        };
                        self.file_changed(&data, 0, old_len);
                    }
                    data
                } else {
                    self.vfs.contents(&mut self.host, &node)?
                };
                FileKind::Regular { data, path: r.path }
            }
        };
        let desc = OpenFile::new(kind, flags & (O_ACCMODE | O_APPEND | O_NONBLOCK));
        self.proc.fds.insert(desc, cloexec).map(|fd| fd as u64)
    }

    pub(super) fn check_parent_dir(&mut self, path: &GuestPath) -> Result<(), Errno> {
        match self.vfs.lookup(&mut self.host, &path.parent()) {
            Some(n) if n.is_dir() => Ok(()),
            Some(_) => Err(ENOTDIR),
            None => Err(ENOENT),
        }
    }

    /// What a stat-like call shows: of a path, or of the descriptor itself with AT_EMPTY_PATH.
    fn stat_of(&mut self, dirfd: i32, path_addr: u64, flags: u32) -> Result<vfs::Stat, Errno> {
        let path = if path_addr == 0 {
            Vec::new()
        } else {
            self.read_cstring(path_addr, vfs::PATH_BYTES_MAX)?
        };
        if path.is_empty() {
            if flags & AT_EMPTY_PATH == 0 {
                return Err(ENOENT);
            }
            if dirfd != AT_FDCWD {
                let desc = self.proc.fds.get(dirfd)?;
                let epoch = Timespec::from_ns(self.config.epoch_ns);
                // Standard streams and pipes: a character device or a FIFO with a fixed identity.
                let fixed = |ino: u64, mode: u32, rdev: u64| vfs::Stat {
                    dev: GUEST_DEV,
                    ino,
                    mode,
                    nlink: 1,
                    uid: GUEST_UID as u32,
                    gid: GUEST_GID as u32,
                    rdev,
                    size_bytes: 0,
                    blksize: 4096,
                    blocks: 0,
                    atime: epoch,
                    mtime: epoch,
                    ctime: epoch,
                };
                let special = match &desc.borrow().kind {
                    FileKind::Stdin | FileKind::Stdout | FileKind::Stderr => {
                        Some(fixed(vfs::inode_of(b"/dev/tty"), S_IFCHR | 0o666, 0x103))
                    }
                    FileKind::PipeRead(_) | FileKind::PipeWrite(_) => {
                        Some(fixed(0x9999 + dirfd as u64, S_IFIFO | 0o600, 0))
                    }
                    _ => None,
                };
                if let Some(st) = special {
                    return Ok(st);
                }
            }
            let (p, node) = self.fd_target(dirfd)?;
            return Ok(self.vfs.stat(&p, &node));
        }
        let r = self.resolve_at(dirfd, &path, flags & AT_SYMLINK_NOFOLLOW == 0)?;
        let node = r.node.ok_or(ENOENT)?;
        Ok(self.vfs.stat(&r.path, &node))
    }

    /// The path and node behind a descriptor of a file, a directory or a device (or the working directory).
    pub(super) fn fd_target(&mut self, fd: i32) -> Result<(GuestPath, Node), Errno> {
        if fd == AT_FDCWD {
            let cwd = self.proc.cwd.clone();
            let node = self.vfs.lookup(&mut self.host, &cwd).ok_or(ENOENT)?;
            return Ok((cwd, node));
        }
        let desc = self.proc.fds.get(fd)?;
        let d = desc.borrow();
        match &d.kind {
            FileKind::Regular { data, path } => Ok((path.clone(), Node::MemoryFile(data.clone()))),
            FileKind::Dir { path } => {
                let path = path.clone();
                drop(d);
                // A directory removed while open still answers, with the attributes of an empty one.
                let node = self
                    .vfs
                    .lookup(&mut self.host, &path)
                    .filter(|n| n.is_dir())
                    .unwrap_or(Node::Dir(vfs::Origin::Synthetic));
                Ok((path, node))
            }
            FileKind::Device(dev) => Ok((self.vfs.path_of(b"/dev/null"), Node::Device(*dev))),
            _ => Err(EBADF),
        }
    }

    fn sys_fstatat(&mut self, dirfd: i32, path: u64, buf: u64, flags: u32) -> SysResult {
        let st = self.stat_of(dirfd, path, flags)?;
        let mut b = [0u8; 144];
        let put =
            |b: &mut [u8; 144], at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_le_bytes());
        put(&mut b, 0, st.dev);
        put(&mut b, 8, st.ino);
        put(&mut b, 16, st.nlink);
        b[24..28].copy_from_slice(&st.mode.to_le_bytes());
        b[28..32].copy_from_slice(&st.uid.to_le_bytes());
        b[32..36].copy_from_slice(&st.gid.to_le_bytes());
        put(&mut b, 40, st.rdev);
        put(&mut b, 48, st.size_bytes);
        put(&mut b, 56, st.blksize);
        put(&mut b, 64, st.blocks);
        for (at, t) in [(72, st.atime), (88, st.mtime), (104, st.ctime)] {
            put(&mut b, at, t.sec as u64);
            put(&mut b, at + 8, t.nsec as u64);
        }
        self.write_mem(buf, &b)?;
        Ok(0)
    }

    fn sys_statx(&mut self, dirfd: i32, path: u64, flags: u32, buf: u64) -> SysResult {
        let st = self.stat_of(dirfd, path, flags)?;
        let mut b = [0u8; 256];
        // The kernel's encoding of dev_t (MAJOR/MINOR in include/linux/kdev_t.h, new_decode_dev).
        let major = |d: u64| ((d >> 8) & 0xfff) as u32 | ((d >> 32) as u32 & !0xfff);
        let minor = |d: u64| (d & 0xff) as u32 | ((d >> 12) as u32 & !0xff);
        b[0..4].copy_from_slice(&0x7ffu32.to_le_bytes()); // STATX_BASIC_STATS
        b[4..8].copy_from_slice(&(st.blksize as u32).to_le_bytes());
        b[16..20].copy_from_slice(&(st.nlink as u32).to_le_bytes());
        b[20..24].copy_from_slice(&st.uid.to_le_bytes());
        b[24..28].copy_from_slice(&st.gid.to_le_bytes());
        b[28..30].copy_from_slice(&(st.mode as u16).to_le_bytes());
        b[32..40].copy_from_slice(&st.ino.to_le_bytes());
        b[40..48].copy_from_slice(&st.size_bytes.to_le_bytes());
        b[48..56].copy_from_slice(&st.blocks.to_le_bytes());
        // atime, btime (not in the mask; the ctime is given), ctime, mtime.
        for (at, t) in [
            (64usize, st.atime),
            (80, st.ctime),
            (96, st.ctime),
            (112, st.mtime),
        ] {
            b[at..at + 8].copy_from_slice(&t.sec.to_le_bytes());
            b[at + 8..at + 12].copy_from_slice(&t.nsec.to_le_bytes());
        }
        b[128..132].copy_from_slice(&major(st.rdev).to_le_bytes());
        b[132..136].copy_from_slice(&minor(st.rdev).to_le_bytes());
        b[136..140].copy_from_slice(&major(st.dev).to_le_bytes());
        b[140..144].copy_from_slice(&minor(st.dev).to_le_bytes());
        self.write_mem(buf, &b)?;
        Ok(0)
    }

    fn sys_getdents64(&mut self, fd: i32, buf: u64, len: u64) -> SysResult {
        let desc = self.proc.fds.get(fd)?;
        let path = match &desc.borrow().kind {
            FileKind::Dir { path } => path.clone(),
            _ => return Err(ENOTDIR),
        };
        let start = desc.borrow().offset as usize;
        let ino_of = |vfs: &mut vfs::Vfs, host: &mut H, p: &GuestPath| {
            vfs.lookup(host, p).map_or(0, |n| vfs.stat(p, &n).ino)
        };
        let mut entries: Vec<(Vec<u8>, u64, u8)> = Vec::new();
        if start < 2 {
            let parent = path.parent();
            entries.push((
                b".".to_vec(),
                ino_of(&mut self.vfs, &mut self.host, &path),
                4,
            ));
            entries.push((
                b"..".to_vec(),
                ino_of(&mut self.vfs, &mut self.host, &parent),
                4,
            ));
        } else {
            entries.push((Vec::new(), 0, 0));
            entries.push((Vec::new(), 0, 0));
        }
        for (name, node) in self.vfs.list_dir(&mut self.host, &path)? {
            let child = self.vfs.child(&path, &name);
            let d_type = match node {
                Node::Dir(_) => 4,
                Node::Symlink { .. } => 10,
                Node::Device(_) => 2,
                _ => 8,
            };
            let ino = self.vfs.stat(&child, &node).ino;
            entries.push((name, ino, d_type));
        }
        let mut out = Vec::new();
        let mut index = start;
        for (name, ino, d_type) in entries.iter().skip(start) {
            let reclen = (19 + name.len() + 1).div_ceil(8) * 8;
            if out.len() + reclen > len as usize {
                break;
            }
            let mut rec = vec![0u8; reclen];
            rec[0..8].copy_from_slice(&ino.to_le_bytes());
            rec[8..16].copy_from_slice(&((index + 1) as u64).to_le_bytes());
            rec[16..18].copy_from_slice(&(reclen as u16).to_le_bytes());
            rec[18] = *d_type;
            rec[19..19 + name.len()].copy_from_slice(name);
            out.extend_from_slice(&rec);
            index += 1;
        }
        if out.is_empty() && index < entries.len() {
            return Err(EINVAL);
        }
        self.write_mem(buf, &out)?;
        desc.borrow_mut().offset = index as u64;
        Ok(out.len() as u64)
    }

    fn sys_faccessat(&mut self, dirfd: i32, path: u64, mode: u32) -> SysResult {
        let path = self.read_path(path)?;
        let r = self.resolve_at(dirfd, &path, true)?;
        let node = r.node.ok_or(ENOENT)?;
        // X_OK on a regular file needs an execute bit.
        if mode & 1 != 0 {
            let st = self.vfs.stat(&r.path, &node);
            if st.mode & S_IFMT != S_IFDIR && st.mode & 0o111 == 0 {
                return Err(EACCES);
            }
        }
        Ok(0)
    }

    fn sys_readlinkat(&mut self, dirfd: i32, path: u64, buf: u64, len: u64) -> SysResult {
        let path = self.read_path(path)?;
        let r = self.resolve_at(dirfd, &path, false)?;
        match r.node {
            Some(Node::Symlink { target, .. }) => {
                let n = target.len().min(len as usize);
                self.write_mem(buf, &target[..n])?;
                Ok(n as u64)
            }
            Some(_) => Err(EINVAL),
            None => Err(ENOENT),
        }
    }

    fn sys_getcwd(&mut self, buf: u64, len: u64) -> SysResult {
        let mut text = self.proc.cwd.text();
        text.push(0);
        // The kernel builds the path in one page (fs/d_path.c).
        if text.len() > vfs::PATH_BYTES_MAX {
            return Err(ENAMETOOLONG);
        }
        if text.len() as u64 > len {
            return Err(ERANGE);
        }
        self.write_mem(buf, &text)?;
        Ok(text.len() as u64)
    }

    fn sys_chdir(&mut self, path: u64) -> SysResult {
        let path = self.read_path(path)?;
        let r = self.resolve_at(AT_FDCWD, &path, true)?;
        match r.node {
            Some(n) if n.is_dir() => {
                self.proc.cwd = r.path;
                Ok(0)
            }
            Some(_) => Err(ENOTDIR),
            None => Err(ENOENT),
        }
    }

    fn sys_fchdir(&mut self, fd: i32) -> SysResult {
        self.proc.cwd = self.dir_of(fd)?;
        Ok(0)
    }

    fn sys_mkdirat(&mut self, dirfd: i32, path: u64, mode: u32) -> SysResult {
        let path = self.read_path(path)?;
        let r = self.resolve_at(dirfd, &path, false)?;
        if r.node.is_some() || r.path.is_root() {
            return Err(EEXIST);
        }
        self.check_parent_dir(&r.path)?;
        let attrs = self.vfs.new_attrs(mode & !self.proc.umask, self.now());
        self.vfs.make_dir(&r.path, attrs);
        Ok(0)
    }

    fn sys_unlinkat(&mut self, dirfd: i32, path: u64, flags: u32) -> SysResult {
        let path = self.read_path(path)?;
        let r = self.resolve_at(dirfd, &path, false)?;
        let node = r.node.ok_or(ENOENT)?;
        if flags & AT_REMOVEDIR != 0 {
            if !node.is_dir() {
                return Err(ENOTDIR);
            }
            if r.path.is_root() {
                return Err(EINVAL);
            }
            if !self.vfs.list_dir(&mut self.host, &r.path)?.is_empty() {
                return Err(ENOTEMPTY);
            }
        } else if node.is_dir() {
            return Err(EISDIR);
        }
        let now = self.now();
        self.vfs.remove(&r.path, now);
        Ok(0)
    }

    fn sys_renameat(&mut self, olddir: i32, old: u64, newdir: i32, new: u64) -> SysResult {
        let old = self.read_path(old)?;
        let new = self.read_path(new)?;
        let from = self.resolve_at(olddir, &old, false)?;
        let to = self.resolve_at(newdir, &new, false)?;
        let Some(from_node) = &from.node else {
            return Err(ENOENT);
        };
        if from.path == to.path {
            return Ok(0);
        }
        // Two names of one file: rename does nothing (rename(2)).
        if let (Node::MemoryFile(a), Some(Node::MemoryFile(b))) = (from_node, &to.node) {
            if Rc::ptr_eq(a, b) {
                return Ok(0);
            }
        }
        self.check_parent_dir(&to.path)?;
        if let Some(existing) = &to.node {
            // A directory replaces only an empty directory, and anything else only a non-directory.
            match (from_node.is_dir(), existing.is_dir()) {
                (true, false) => return Err(ENOTDIR),
                (false, true) => return Err(EISDIR),
                _ => {}
            }
            if existing.is_dir() && !self.vfs.list_dir(&mut self.host, &to.path)?.is_empty() {
                return Err(ENOTEMPTY);
            }
        }
        let now = self.now();
        self.vfs.rename(&mut self.host, &from.path, &to.path, now)?;
        Ok(0)
    }

    fn sys_symlinkat(&mut self, target: u64, dirfd: i32, path: u64) -> SysResult {
        let target = self.read_path(target)?;
        let path = self.read_path(path)?;
        let r = self.resolve_at(dirfd, &path, false)?;
        if r.node.is_some() {
            return Err(EEXIST);
        }
        self.check_parent_dir(&r.path)?;
        let attrs = self.vfs.new_attrs(0o777, self.now());
        self.vfs.make_symlink(&r.path, target, attrs);
        Ok(0)
    }

    fn truncate_data(&mut self, data: &vfs::SharedFile, len: i64) -> SysResult {
        if len < 0 || len as u64 > super::elf::IMAGE_SIZE_BYTES_MAX {
            return Err(EINVAL);
        }
        let now = self.now();
        let old_len = {
            let mut f = data.borrow_mut();
            let old_len = f.bytes.len() as u64;
            Arc::make_mut(&mut f.bytes).resize(len as usize, 0);
            f.attrs.mtime = now;
            f.attrs.ctime = now;
            old_len
        };
        let new_len = len as u64;
        self.file_changed(data, old_len.min(new_len), old_len.max(new_len));
        Ok(0)
    }

    fn sys_ftruncate(&mut self, fd: i32, len: i64) -> SysResult {
        let desc = self.proc.fds.get(fd)?;
        let d = desc.borrow();
        if !d.writable() {
            return Err(EINVAL);
        }
        let data = match &d.kind {
            FileKind::Regular { data, .. } => data.clone(),
            _ => return Err(EINVAL),
        };
        drop(d);
        self.truncate_data(&data, len)
    }

    fn sys_truncate_path(&mut self, path: u64, len: i64) -> SysResult {
        let path = self.read_path(path)?;
        let r = self.resolve_at(AT_FDCWD, &path, true)?;
        let node = r.node.ok_or(ENOENT)?;
        if node.is_dir() {
            return Err(EISDIR);
        }
        let data = self.vfs.copy_up(&mut self.host, &r.path, &node)?;
        self.truncate_data(&data, len)
    }

    // ---------------------------------------------------------------------------------------------------------
    // Descriptors.

    fn sys_dup(&mut self, fd: i32, min: i32, cloexec: Option<bool>) -> SysResult {
        let desc = self.proc.fds.get(fd)?;
        self.proc
            .fds
            .insert_from(min, desc, cloexec.unwrap_or(false))
            .map(|n| n as u64)
    }

    fn sys_dup2(&mut self, old: i32, new: i32, flags: u32, same_ok: bool) -> SysResult {
        let desc = self.proc.fds.get(old)?;
        if old == new {
            return if same_ok { Ok(new as u64) } else { Err(EINVAL) };
        }
        self.proc
            .fds
            .insert_at(new, desc, flags & O_CLOEXEC != 0)
            .map(|n| n as u64)
    }

    fn sys_fcntl(&mut self, fd: i32, cmd: u32, arg: u64) -> SysResult {
        const F_DUPFD: u32 = 0;
        const F_GETFD: u32 = 1;
        const F_SETFD: u32 = 2;
        const F_GETFL: u32 = 3;
        const F_SETFL: u32 = 4;
        const F_GETLK: u32 = 5;
        const F_SETLK: u32 = 6;
        const F_SETLKW: u32 = 7;
        const F_DUPFD_CLOEXEC: u32 = 1030;
        match cmd {
            F_DUPFD => self.sys_dup(fd, arg as i32, Some(false)),
            F_DUPFD_CLOEXEC => self.sys_dup(fd, arg as i32, Some(true)),
            F_GETFD => Ok(self.proc.fds.entry_mut(fd)?.cloexec as u64),
            F_SETFD => {
                self.proc.fds.entry_mut(fd)?.cloexec = arg & 1 != 0;
                Ok(0)
            }
            F_GETFL => Ok(self.proc.fds.get(fd)?.borrow().flags as u64),
            F_SETFL => {
                let desc = self.proc.fds.get(fd)?;
                let mut d = desc.borrow_mut();
                d.flags = (d.flags & O_ACCMODE) | (arg as u32 & (O_APPEND | O_NONBLOCK));
                Ok(0)
            }
            // One process: every lock is granted.
            F_GETLK | F_SETLK | F_SETLKW => self.proc.fds.get(fd).map(|_| 0),
            _ => Err(EINVAL),
        }
    }

    fn sys_pipe2(&mut self, fds: u64, flags: u32) -> SysResult {
        let pipe = Rc::new(RefCell::new(Pipe::default()));
        let cloexec = flags & O_CLOEXEC != 0;
        let r = self.proc.fds.insert(
            OpenFile::new(FileKind::PipeRead(pipe.clone()), O_RDONLY),
            cloexec,
        )?;
        let w = match self
            .proc
            .fds
            .insert(OpenFile::new(FileKind::PipeWrite(pipe), O_WRONLY), cloexec)
        {
            Ok(w) => w,
            Err(e) => {
                let _ = self.proc.fds.close(r);
                return Err(e);
            }
        };
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&r.to_le_bytes());
        b[4..].copy_from_slice(&w.to_le_bytes());
        if let Err(e) = self.write_mem(fds, &b) {
            let _ = self.proc.fds.close(r);
            let _ = self.proc.fds.close(w);
            return Err(e);
        }
        Ok(0)
    }

    fn sys_ioctl(&mut self, fd: i32, request: u64, arg: u64) -> SysResult {
        const TCGETS: u64 = 0x5401;
        const TIOCGWINSZ: u64 = 0x5413;
        const TIOCGPGRP: u64 = 0x540f;
        let desc = self.proc.fds.get(fd)?;
        let is_tty = self.config.stdout_is_terminal
            && matches!(
                desc.borrow().kind,
                FileKind::Stdin | FileKind::Stdout | FileKind::Stderr
            );
        if !is_tty {
            return Err(ENOTTY);
        }
        match request {
            TCGETS => {
                // A cooked terminal: ICRNL | IXON, OPOST | ONLCR, B38400 | CS8 | CREAD, ISIG | ICANON | ECHO...
                let mut t = [0u8; 60];
                t[0..4].copy_from_slice(&0x500u32.to_le_bytes());
                t[4..8].copy_from_slice(&0x5u32.to_le_bytes());
                t[8..12].copy_from_slice(&0xbfu32.to_le_bytes());
                t[12..16].copy_from_slice(&0x8a3bu32.to_le_bytes());
                self.write_mem(arg, &t)?;
                Ok(0)
            }
            TIOCGWINSZ => {
                let mut w = [0u8; 8];
                w[0..2].copy_from_slice(&24u16.to_le_bytes());
                w[2..4].copy_from_slice(&80u16.to_le_bytes());
                self.write_mem(arg, &w)?;
                Ok(0)
            }
            TIOCGPGRP => {
                self.write_u32(arg, self.proc.pgid.0 as u32)?;
                Ok(0)
            }
            _ => Err(ENOTTY),
        }
    }

    fn sys_poll(&mut self, fds: u64, count: u64, timeout_ms: i64) -> SysResult {
        if count > super::fd::FDS_MAX as u64 {
            return Err(EINVAL);
        }
        let raw = self.read_mem(fds, count * 8)?;
        let mut out = raw.clone();
        let mut ready = 0u64;
        for (i, c) in raw.chunks_exact(8).enumerate() {
            let fd = i32::from_le_bytes(c[..4].try_into().unwrap());
            let events = u16::from_le_bytes([c[4], c[5]]);
            let revents: u16 = if fd < 0 {
                0
            } else {
                match self.proc.fds.get(fd) {
                    Err(_) => 0x20, // POLLNVAL
                    Ok(desc) => match &desc.borrow().kind {
                        FileKind::PipeRead(p) => {
                            let p = p.borrow();
                            if !p.buf.is_empty() {
                                events & 1
                            } else if p.writers == 0 {
                                0x10 // POLLHUP
                            } else {
                                0
                            }
                        }
                        FileKind::PipeWrite(p) => {
                            if p.borrow().readers == 0 {
                                0x8 // POLLERR
                            } else {
                                events & 4
                            }
                        }
                        // Everything else is always ready (POLLIN | POLLOUT as asked).
                        _ => events & 5,
                    },
                }
            };
            out[i * 8 + 6..i * 8 + 8].copy_from_slice(&revents.to_le_bytes());
            if revents != 0 {
                ready += 1;
            }
        }
        if ready == 0 && timeout_ms != 0 {
            // Nothing ready: wait for another task to change something, or for the timeout (a negative one is
            // infinite). The descriptors' revents are written when the call completes.
            let deadline = self.timeout_deadline_ms(timeout_ms);
            if deadline.is_none_or(|d| self.guest_time() < d) {
                return Err(self.would_block(deadline));
            }
        }
        self.write_mem(fds, &out)?;
        Ok(ready)
    }

    // ---------------------------------------------------------------------------------------------------------
    // Memory.

    /// The highest free range of `len` bytes below MMAP_TOP.
    fn find_free(&self, len: u64) -> Option<u64> {
        let mut end = MMAP_TOP;
        for r in self.machine.cpu.mem.regions().iter().rev() {
            if r.start >= end {
                continue;
            }
            if r.end <= end && end - r.end >= len {
                return Some(end - len);
            }
            end = end.min(r.start);
        }
        (end >= MMAP_MIN + len).then(|| end - len)
    }

    fn sys_mmap(
        &mut self,
        addr: u64,
        len: u64,
        prot: u64,
        flags: u64,
        fd: i32,
        offset: u64,
    ) -> SysResult {
        // Every mapped page holds a frame, so a mapping beyond the guest memory limit (`Memory::frames_max`) is
        // ENOMEM here, checked before anything changes, never a failure when the guest touches it later.
        let len = match page_up(len) {
            Some(0) | None => return Err(EINVAL),
            Some(l) if l > super::elf::IMAGE_SIZE_BYTES_MAX => return Err(ENOMEM),
            Some(l) => l,
        };
        if offset & PAGE_MASK != 0 {
            return Err(EINVAL);
        }
        let fixed = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0;
        let mem = &self.machine.cpu.mem;
        let target = if fixed {
            if addr & PAGE_MASK != 0
                || addr
                    .checked_add(len)
                    .is_none_or(|e| e > super::elf::USER_END)
            {
                return Err(EINVAL);
            }
            if flags & MAP_FIXED_NOREPLACE != 0 && !mem.range_is_free(addr, len) {
                return Err(EEXIST);
            }
            addr
        } else if addr != 0
            && addr & PAGE_MASK == 0
            && addr >= MMAP_MIN
            && addr.checked_add(len).is_some_and(|e| e <= MMAP_TOP)
            && mem.range_is_free(addr, len)
        {
            addr
        } else {
            self.find_free(len).ok_or(ENOMEM)?
        };
        let perms = perms_of(prot);
        if flags & MAP_ANONYMOUS != 0 {
            self.machine
                .cpu
                .mem
                .map_anonymous(target, len, perms)
                .map_err(|_| ENOMEM)?;
            self.forget_shared_maps(target, len);
            return Ok(target);
        }
        let desc = self.proc.fds.get(fd)?;
        let mut shared = None;
        let bytes = match &desc.borrow().kind {
            FileKind::Regular { data, .. } => {
                let d = desc.borrow();
                // A file mapping needs read access, and a shared writable one write access (mmap(2) EACCES).
                if !d.readable() {
                    return Err(EACCES);
                }
                if flags & MAP_SHARED != 0 {
                    if perms.contains(Perms::WRITE) && (!d.writable() || d.flags & O_APPEND != 0) {
                        return Err(EACCES);
                    }
                    shared = Some((data.clone(), d.writable()));
                }
                let data = data.borrow();
                let start = (offset as usize).min(data.bytes.len());
                let end = start.saturating_add(len as usize).min(data.bytes.len());
                data.bytes[start..end].to_vec()
            }
            FileKind::Device(Device::Zero) => Vec::new(),
            _ => return Err(EACCES),
        };
        self.machine
            .cpu
            .mem
            .map_file_bytes(target, len, &bytes, perms)
            .map_err(|_| ENOMEM)?;
        self.forget_shared_maps(target, len);
        // Shared: stores reach the file and file changes reach the pages (files.rs).
        if let Some((file, writable)) = shared {
            self.proc.shared_maps.push(super::files::SharedMap {
                start: target,
                len,
                file,
                offset,
                writable,
            });
        }
        Ok(target)
    }

    fn sys_munmap(&mut self, addr: u64, len: u64) -> SysResult {
        let len = page_up(len).ok_or(EINVAL)?;
        if addr & PAGE_MASK != 0 || len == 0 {
            return Err(EINVAL);
        }
        self.machine.cpu.mem.unmap(addr, len).map_err(|_| EINVAL)?;
        self.forget_shared_maps(addr, len);
        Ok(0)
    }

    fn sys_mprotect(&mut self, addr: u64, len: u64, prot: u64) -> SysResult {
        let len = page_up(len).ok_or(ENOMEM)?;
        if addr & PAGE_MASK != 0 {
            return Err(EINVAL);
        }
        if len == 0 {
            return Ok(0);
        }
        self.check_shared_protect(addr, len, perms_of(prot))?;
        match self.machine.cpu.mem.protect(addr, len, perms_of(prot)) {
            Ok(true) => Ok(0),
            Ok(false) => Err(ENOMEM),
            Err(_) => Err(EINVAL),
        }
    }

    pub(super) fn sys_mremap(
        &mut self,
        old: u64,
        old_len: u64,
        new_len: u64,
        flags: u64,
        new_addr: u64,
    ) -> SysResult {
        let old_len = page_up(old_len).ok_or(EINVAL)?;
        let new_len = match page_up(new_len) {
            Some(0) | None => return Err(EINVAL),
            Some(l) if l > super::elf::IMAGE_SIZE_BYTES_MAX => return Err(ENOMEM),
            Some(l) => l,
        };
        if old & PAGE_MASK != 0 || flags & MREMAP_FIXED != 0 {
            let _ = new_addr;
            return Err(EINVAL);
        }
        let mem = &mut self.machine.cpu.mem;
        let perms = mem.perms(old).ok_or(EFAULT)?;
        if (0..old_len / PAGE_SIZE as u64).any(|i| !mem.is_mapped(old + i * PAGE_SIZE as u64)) {
            return Err(EFAULT);
        }
        if new_len <= old_len {
            if new_len < old_len {
                mem.unmap(old + new_len, old_len - new_len)
                    .map_err(|_| EINVAL)?;
            }
            return Ok(old);
        }
        let grow = new_len - old_len;
        if old.checked_add(new_len).is_some_and(|e| e <= MMAP_TOP)
            && mem.range_is_free(old + old_len, grow)
        {
            mem.map_anonymous(old + old_len, grow, perms)
                .map_err(|_| ENOMEM)?;
            return Ok(old);
        }
        if flags & MREMAP_MAYMOVE == 0 {
            return Err(ENOMEM);
        }
        let target = self.find_free(new_len).ok_or(ENOMEM)?;
        let mem = &mut self.machine.cpu.mem;
        // The grown part must fit the memory limit before the old pages move: a failure leaves them in place.
        if grow / PAGE_SIZE as u64 > mem.frames_available() as u64 {
            return Err(ENOMEM);
        }
        mem.remap(old, target, old_len).map_err(|_| ENOMEM)?;
        mem.map_anonymous(target + old_len, grow, perms)
            .map_err(|_| ENOMEM)?;
        Ok(target)
    }

    fn sys_brk(&mut self, addr: u64) -> u64 {
        if addr < self.proc.brk_start || addr > self.proc.brk_start + BRK_BYTES_MAX {
            return self.proc.brk_current;
        }
        let old_end = page_up(self.proc.brk_current).unwrap_or(self.proc.brk_current);
        let new_end = page_up(addr).unwrap_or(addr);
        let mem = &mut self.machine.cpu.mem;
        if new_end > old_end {
            if !mem.range_is_free(old_end, new_end - old_end)
                || mem
                    .map_anonymous(old_end, new_end - old_end, Perms::RW)
                    .is_err()
            {
                return self.proc.brk_current;
            }
        } else if new_end < old_end && mem.unmap(new_end, old_end - new_end).is_err() {
            return self.proc.brk_current;
        }
        self.proc.brk_current = addr;
        addr
    }

    /// prctl(2): the thread name and the flags a lone process may ask about; anything else is EINVAL.
    fn sys_prctl(&mut self, option: u64, arg: u64) -> SysResult {
        const PR_SET_PDEATHSIG: u64 = 1;
        const PR_GET_DUMPABLE: u64 = 3;
        const PR_SET_DUMPABLE: u64 = 4;
        const PR_SET_NAME: u64 = 15;
        const PR_GET_NAME: u64 = 16;
        match option {
            PR_SET_PDEATHSIG | PR_SET_DUMPABLE => Ok(0),
            PR_GET_DUMPABLE => Ok(1),
            PR_SET_NAME => {
                let name = self.read_cstring(arg, 16)?;
                self.thread.name = name[..name.len().min(15)].to_vec();
                Ok(0)
            }
            PR_GET_NAME => {
                let mut b = [0u8; 16];
                b[..self.thread.name.len()].copy_from_slice(&self.thread.name);
                self.write_mem(arg, &b)?;
                Ok(0)
            }
            _ => Err(EINVAL),
        }
    }

    fn sys_arch_prctl(&mut self, code: u64, addr: u64) -> SysResult {
        const ARCH_SET_GS: u64 = 0x1001;
        const ARCH_SET_FS: u64 = 0x1002;
        const ARCH_GET_FS: u64 = 0x1003;
        const ARCH_GET_GS: u64 = 0x1004;
        match code {
            ARCH_SET_FS => self.machine.cpu.regs.fs_base = addr,
            ARCH_SET_GS => self.machine.cpu.regs.gs_base = addr,
            ARCH_GET_FS => self.write_u64(addr, self.machine.cpu.regs.fs_base)?,
            ARCH_GET_GS => self.write_u64(addr, self.machine.cpu.regs.gs_base)?,
            _ => return Err(EINVAL),
        }
        Ok(0)
    }

    // ---------------------------------------------------------------------------------------------------------
    // Time.

    fn clock_ns(&mut self, clock: i32) -> Result<u64, Errno> {
        let elapsed = self.elapsed_ns();
        let v = match clock {
            0 | 8 | 11 => self.config.epoch_ns.saturating_add(elapsed), // REALTIME, REALTIME_ALARM, TAI
            1 | 4 | 5 | 6 | 7 | 9 => MONOTONIC_START_NS.saturating_add(elapsed), // MONOTONIC and friends
            2 | 3 => self
                .machine
                .cpu
                .icount
                .saturating_mul(self.config.ns_per_insn), // CPU time
            _ => return Err(EINVAL),
        };
        Ok(self.host.clock_ns(v))
    }

    fn sys_clock_gettime(&mut self, clock: i32, ts: u64) -> SysResult {
        let ns = self.clock_ns(clock)?;
        self.write_timespec(ts, ns)?;
        Ok(0)
    }

    fn sys_clock_getres(&mut self, ts: u64) -> SysResult {
        if ts != 0 {
            self.write_timespec(ts, 1)?;
        }
        Ok(0)
    }

    fn sys_gettimeofday(&mut self, tv: u64) -> SysResult {
        if tv != 0 {
            let ns = self.clock_ns(0)?;
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&(ns / 1_000_000_000).to_le_bytes());
            b[8..].copy_from_slice(&(ns % 1_000_000_000 / 1000).to_le_bytes());
            self.write_mem(tv, &b)?;
        }
        Ok(0)
    }

    fn sys_time(&mut self, out: u64) -> SysResult {
        let secs = self.clock_ns(0)? / 1_000_000_000;
        if out != 0 {
            self.write_u64(out, secs)?;
        }
        Ok(secs)
    }

    fn sys_times(&mut self, buf: u64) -> SysResult {
        let ticks = self.elapsed_ns() / 10_000_000;
        if buf != 0 {
            let cpu_ticks = self
                .machine
                .cpu
                .icount
                .saturating_mul(self.config.ns_per_insn)
                / 10_000_000;
            let mut b = [0u8; 32];
            b[..8].copy_from_slice(&cpu_ticks.to_le_bytes());
            self.write_mem(buf, &b)?;
        }
        Ok(ticks)
    }

    fn sys_getrusage(&mut self, buf: u64) -> SysResult {
        let ns = self
            .machine
            .cpu
            .icount
            .saturating_mul(self.config.ns_per_insn);
        let mut b = [0u8; 144];
        b[..8].copy_from_slice(&(ns / 1_000_000_000).to_le_bytes());
        b[8..16].copy_from_slice(&(ns % 1_000_000_000 / 1000).to_le_bytes());
        let rss_kib = self.machine.cpu.mem.mapped_page_count() as u64 * 4;
        b[32..40].copy_from_slice(&rss_kib.to_le_bytes());
        self.write_mem(buf, &b)?;
        Ok(0)
    }

    // ---------------------------------------------------------------------------------------------------------
    // Process, identity, limits.

    fn sys_uname(&mut self, buf: u64) -> SysResult {
        let mut b = [0u8; 390];
        let fields: [&[u8]; 6] = [
            b"Linux",
            b"tandem",
            b"6.1.0-tandem",
            b"#1 SMP PREEMPT_DYNAMIC tandem",
            b"x86_64",
            b"(none)",
        ];
        for (i, f) in fields.iter().enumerate() {
            b[i * 65..i * 65 + f.len()].copy_from_slice(f);
        }
        self.write_mem(buf, &b)?;
        Ok(0)
    }

    fn sys_getresid(&mut self, a: [u64; 6], id: u64) -> SysResult {
        for &p in &a[..3] {
            self.write_u32(p, id as u32)?;
        }
        Ok(0)
    }

    fn sys_prlimit(&mut self, pid: i32, resource: u32, new: u64, old: u64) -> SysResult {
        if pid != 0 && pid != self.proc.pid.0 {
            return Err(ESRCH);
        }
        const RLIMIT_STACK: u32 = 3;
        const RLIMIT_NOFILE: u32 = 7;
        if resource > 15 {
            return Err(EINVAL);
        }
        let (cur, max) = match resource {
            RLIMIT_STACK => (super::elf::STACK_SIZE_BYTES, u64::MAX),
            RLIMIT_NOFILE => (super::fd::FDS_MAX as u64, super::fd::FDS_MAX as u64),
            _ => (u64::MAX, u64::MAX),
        };
        if old != 0 {
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&cur.to_le_bytes());
            b[8..].copy_from_slice(&max.to_le_bytes());
            self.write_mem(old, &b)?;
        }
        // New limits are accepted and not enforced.
        let _ = new;
        Ok(0)
    }

    fn sys_sysinfo(&mut self, buf: u64) -> SysResult {
        let mut b = [0u8; 112];
        let uptime = (MONOTONIC_START_NS + self.elapsed_ns()) / 1_000_000_000;
        let total: u64 = 4 << 30;
        let used = self.machine.cpu.mem.mapped_page_count() as u64 * PAGE_SIZE as u64;
        b[0..8].copy_from_slice(&uptime.to_le_bytes());
        b[32..40].copy_from_slice(&total.to_le_bytes());
        b[40..48].copy_from_slice(&total.saturating_sub(used).to_le_bytes());
        b[80..82].copy_from_slice(&1u16.to_le_bytes()); // procs
        b[104..108].copy_from_slice(&1u32.to_le_bytes()); // mem_unit
        self.write_mem(buf, &b)?;
        Ok(0)
    }

    fn sys_getrandom(&mut self, buf: u64, len: u64) -> SysResult {
        let len = len.min(33_554_431);
        let mut b = vec![0u8; len as usize];
        self.host.fill_random(&mut b);
        self.write_mem(buf, &b)?;
        Ok(len)
    }

    // ---------------------------------------------------------------------------------------------------------
    // Signals.

    fn sys_rt_sigaction(&mut self, sig: i32, act: u64, old: u64, size: u64) -> SysResult {
        if !(1..=64).contains(&sig) || size != 8 {
            return Err(EINVAL);
        }
        let new = if act != 0 {
            let b = self.read_mem(act, 32)?;
            let w = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap());
            if sig == SIGKILL || sig == SIGSTOP {
                return Err(EINVAL);
            }
            Some(SigAction {
                handler: w(0),
                flags: w(1),
                restorer: w(2),
                mask: w(3) & !(bit(SIGKILL) | bit(SIGSTOP)),
            })
        } else {
            None
        };
        if old != 0 {
            let o = self.proc.sigactions[sig as usize];
            let mut b = [0u8; 32];
            for (i, v) in [o.handler, o.flags, o.restorer, o.mask].iter().enumerate() {
                b[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
            }
            self.write_mem(old, &b)?;
        }
        if let Some(n) = new {
            self.proc.sigactions[sig as usize] = n;
        }
        Ok(0)
    }

    fn sys_rt_sigprocmask(&mut self, how: i32, set: u64, old: u64, size: u64) -> SysResult {
        if size != 8 {
            return Err(EINVAL);
        }
        let new = if set != 0 {
            Some(self.read_u64(set)?)
        } else {
            None
        };
        if old != 0 {
            self.write_u64(old, self.thread.sig.blocked)?;
        }
        if let Some(s) = new {
            let b = &mut self.thread.sig.blocked;
            match how {
                0 => *b |= s,
                1 => *b &= !s,
                2 => *b = s,
                _ => return Err(EINVAL),
            }
            *b &= !(bit(SIGKILL) | bit(SIGSTOP));
        }
        Ok(0)
    }

    fn sys_sigaltstack(&mut self, new: u64, old: u64) -> SysResult {
        let rsp = self.machine.cpu.regs.gpr[crate::cpu::RSP];
        let on = self.thread.sig.altstack_flags & SS_DISABLE == 0
            && rsp.wrapping_sub(self.thread.sig.altstack_sp) < self.thread.sig.altstack_size;
        let parsed = if new != 0 {
            let b = self.read_mem(new, 24)?;
            Some((
                u64::from_le_bytes(b[0..8].try_into().unwrap()),
                u32::from_le_bytes(b[8..12].try_into().unwrap()),
                u64::from_le_bytes(b[16..24].try_into().unwrap()),
            ))
        } else {
            None
        };
        if old != 0 {
            let mut b = [0u8; 24];
            b[0..8].copy_from_slice(&self.thread.sig.altstack_sp.to_le_bytes());
            let flags = if on {
                SS_ONSTACK
            } else {
                self.thread.sig.altstack_flags
            };
            b[8..12].copy_from_slice(&flags.to_le_bytes());
            b[16..24].copy_from_slice(&self.thread.sig.altstack_size.to_le_bytes());
            self.write_mem(old, &b)?;
        }
        if let Some((sp, flags, size)) = parsed {
            if on {
                return Err(EPERM);
            }
            if flags & SS_DISABLE != 0 {
                self.thread.sig.altstack_flags = SS_DISABLE;
                self.thread.sig.altstack_sp = 0;
                self.thread.sig.altstack_size = 0;
            } else {
                if size < 2048 {
                    return Err(ENOMEM);
                }
                self.thread.sig.altstack_flags = 0;
                self.thread.sig.altstack_sp = sp;
                self.thread.sig.altstack_size = size;
            }
        }
        Ok(0)
    }
}
