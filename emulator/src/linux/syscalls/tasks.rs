//! Syscalls of tasks and their synchronisation: clone and clone3 (threads), exit and exit_group, futex,
//! sched_yield, the affinity calls, the robust list, membarrier, and the sleeps (nanosleep, clock_nanosleep),
//! which block in virtual time. Process creation (fork, vfork, execve, wait) lives in process.rs.
//!
//! Follows the man pages clone(2), futex(2), exit(2), nanosleep(2), set_robust_list(2), and where they are
//! silent kernel/fork.c, kernel/futex/ and kernel/exit.c.
//!
//! Decisions worth knowing:
//! - Futex words are keyed by address space and address. FUTEX_PRIVATE_FLAG changes nothing (a word shared
//!   between processes through MAP_SHARED memory is not supported across processes); PI futexes answer ENOSYS
//!   (glibc uses them only for PI mutexes).
//! - A futex waiter blocks in FIFO order per word; FUTEX_WAKE wakes the oldest first, so which thread gets a
//!   contended lock is a function of the schedule, hence of the seed.

use super::{Outcome, MONOTONIC_START_NS};
use crate::cpu::{RAX, RSP};
use crate::linux::abi::*;
use crate::linux::ids::{GuestNs, Pid, Tid};
use crate::linux::kernel::{FutexKey, Wait};
use crate::linux::task::Thread;
use crate::linux::{Host, LinuxMachine, Termination, GUEST_PID};

pub const CLONE_VM: u64 = 0x100;
pub const CLONE_SIGHAND: u64 = 0x800;
pub const CLONE_PIDFD: u64 = 0x1000;
pub const CLONE_VFORK: u64 = 0x4000;
pub const CLONE_PARENT: u64 = 0x8000;
pub const CLONE_THREAD: u64 = 0x1_0000;
pub const CLONE_SETTLS: u64 = 0x8_0000;
pub const CLONE_PARENT_SETTID: u64 = 0x10_0000;
pub const CLONE_CHILD_CLEARTID: u64 = 0x20_0000;
pub const CLONE_CHILD_SETTID: u64 = 0x100_0000;

const FUTEX_WAIT: u64 = 0;
const FUTEX_WAKE: u64 = 1;
const FUTEX_REQUEUE: u64 = 3;
const FUTEX_CMP_REQUEUE: u64 = 4;
const FUTEX_WAKE_OP: u64 = 5;
const FUTEX_WAIT_BITSET: u64 = 9;
const FUTEX_WAKE_BITSET: u64 = 10;
const FUTEX_PRIVATE_FLAG: u64 = 128;
const FUTEX_CLOCK_REALTIME: u64 = 256;
const FUTEX_BITSET_MATCH_ANY: u32 = u32::MAX;
/// Robust futexes: the owner died (kernel/futex/core.c handle_futex_death).
const FUTEX_OWNER_DIED: u32 = 0x4000_0000;
const FUTEX_WAITERS: u32 = 0x8000_0000;
const FUTEX_TID_MASK: u32 = 0x3fff_ffff;
/// Most entries of a robust list walked at thread exit (ROBUST_LIST_LIMIT).
const ROBUST_LIST_LIMIT: usize = 2048;
/// Most threads and processes alive at once (a guest that forks or clones without end gets EAGAIN).
pub const TASKS_MAX: usize = 4096;

/// The arguments of clone3 (struct clone_args, include/uapi/linux/sched.h), the fields tandem reads.
struct CloneArgs {
    flags: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    tls: u64,
}

impl<H: Host> LinuxMachine<H> {
    /// The syscalls of this family; None for any other number.
    pub(in crate::linux) fn dispatch_tasks(&mut self, nr: u64, a: [u64; 6]) -> Option<Outcome> {
        let r = match nr {
            24 => {
                self.sched.yielded(self.thread.tid);
                self.slice_end = self.icount();
                Ok(0)
            }
            35 => return Some(self.sys_nanosleep(a[0], a[1])),
            56 => {
                return Some(self.sys_clone(CloneArgs {
                    flags: a[0] & !0xff,
                    exit_signal: a[0] & 0xff,
                    stack: a[1],
                    parent_tid: a[2],
                    child_tid: a[3],
                    tls: a[4],
                }))
            }
            60 => {
                self.exit_thread(a[0] as i32 & 0xff);
                return Some(Outcome::NoReturn);
            }
            202 => return Some(self.sys_futex(a)),
            203 => Ok(0), // sched_setaffinity: every task runs on the one emulated CPU anyway
            204 => self.sys_sched_getaffinity(a[1], a[2]),
            309 => self.sys_getcpu(a[0], a[1]),
            218 => {
                self.thread.clear_child_tid = a[0];
                Ok(self.thread.tid.0 as u64)
            }
            230 => return Some(self.sys_clock_nanosleep(a[0] as i32, a[1], a[2], a[3])),
            231 => {
                self.end_process(Termination::Exited {
                    code: a[0] as i32 & 0xff,
                });
                return Some(Outcome::NoReturn);
            }
            273 => {
                if a[1] != 24 {
                    Err(EINVAL)
                } else {
                    self.thread.robust_list = (a[0], a[1]);
                    Ok(0)
                }
            }
            274 => self.sys_get_robust_list(a[0] as i32, a[1], a[2]),
            324 => self.sys_membarrier(a[0], a[1]),
            435 => return Some(self.sys_clone3(a[0], a[1])),
            _ => return None,
        };
        Some(Outcome::Return(r))
    }

    // ---------------------------------------------------------------------------------------------------------
    // Creating threads.

    fn sys_clone3(&mut self, args: u64, size: u64) -> Outcome {
        // CLONE_ARGS_SIZE_VER0 is 64 bytes; later versions add set_tid and cgroup, which must be zero here.
        if !(64..=4096).contains(&size) {
            return Outcome::Return(Err(EINVAL));
        }
        let b = match self.read_mem(args, size) {
            Ok(b) => b,
            Err(e) => return Outcome::Return(Err(e)),
        };
        let word = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap());
        if b[64..].iter().any(|&x| x != 0) {
            return Outcome::Return(Err(EINVAL)); // set_tid, cgroup
        }
        // clone3 checks the exit signal (legacy clone takes any low byte; one above NSIG is never sent).
        if word(4) > crate::linux::abi::NSIG as u64 {
            return Outcome::Return(Err(EINVAL));
        }
        let (stack, stack_size) = (word(5), word(6));
        if (stack == 0) != (stack_size == 0) {
            return Outcome::Return(Err(EINVAL));
        }
        self.sys_clone(CloneArgs {
            flags: word(0),
            child_tid: word(2),
            parent_tid: word(3),
            exit_signal: word(4),
            // clone3 gives the stack's lowest address and its size; the child starts at its top.
            stack: stack.wrapping_add(stack_size),
            tls: word(7),
        })
    }

    fn sys_clone(&mut self, c: CloneArgs) -> Outcome {
        if c.flags & CLONE_THREAD == 0 {
            return self.fork_process(
                c.flags,
                c.exit_signal,
                c.stack,
                c.parent_tid,
                c.child_tid,
                c.tls,
            );
        }
        Outcome::Return(self.spawn_thread(&c))
    }

    fn spawn_thread(&mut self, c: &CloneArgs) -> Result<u64, Errno> {
        // clone(2): CLONE_THREAD needs CLONE_SIGHAND, which needs CLONE_VM.
        if (c.flags & CLONE_THREAD != 0 && c.flags & CLONE_SIGHAND == 0)
            || (c.flags & CLONE_SIGHAND != 0 && c.flags & CLONE_VM == 0)
        {
            return Err(EINVAL);
        }
        if c.flags & CLONE_PIDFD != 0 {
            return Err(EINVAL);
        }
        if self.threads.len() + 1 >= TASKS_MAX {
            return Err(EAGAIN);
        }
        let tid = self.allocate_tid();
        let mut t = Thread::new(tid, self.proc.pid, self.thread.name.clone());
        t.regs = self.machine.cpu.regs.clone();
        t.regs.gpr[RAX] = 0;
        if c.stack != 0 {
            t.regs.gpr[RSP] = c.stack;
        }
        if c.flags & CLONE_SETTLS != 0 {
            t.regs.fs_base = c.tls;
        }
        // The signal mask is inherited; the alternate stack is not (clone(2): cleared for CLONE_VM).
        t.sig.blocked = self.thread.sig.blocked;
        if c.flags & CLONE_PARENT_SETTID != 0 {
            self.write_u32(c.parent_tid, tid.0 as u32)?;
        }
        if c.flags & CLONE_CHILD_SETTID != 0 {
            self.write_u32(c.child_tid, tid.0 as u32)?;
        }
        if c.flags & CLONE_CHILD_CLEARTID != 0 {
            t.clear_child_tid = c.child_tid;
        }
        self.threads.insert(tid, t);
        self.sched.add(tid);
        self.stats.tasks_created += 1;
        Ok(tid.0 as u64)
    }

    /// A fresh tid (also the pid of a new process).
    pub(in crate::linux) fn allocate_tid(&mut self) -> Tid {
        let tid = Tid(self.tid_next);
        self.tid_next += 1;
        tid
    }

    // ---------------------------------------------------------------------------------------------------------
    // Ending threads and processes.

    /// exit(2): the running thread ends; the process ends with it when it was the last.
    pub(in crate::linux) fn exit_thread(&mut self, code: i32) {
        self.release_thread_resources();
        let pid = self.proc.pid;
        if !self.threads.values().any(|t| t.pid == pid) {
            self.end_process(Termination::Exited { code });
            return;
        }
        self.drop_running_thread();
    }

    /// What a thread releases as it exits: its robust futexes, and its clear_child_tid word (zeroed, one
    /// waiter woken: how pthread_join learns of the exit).
    pub(in crate::linux) fn release_thread_resources(&mut self) {
        self.release_robust_list();
        let ctid = self.thread.clear_child_tid;
        if ctid != 0 {
            self.thread.clear_child_tid = 0;
            if self.write_u32(ctid, 0).is_ok() {
                let key = self.futex_key(ctid);
                self.futex_wake(key, 1, FUTEX_BITSET_MATCH_ANY);
            }
        }
    }

    /// The running thread is gone: it leaves the scheduler and is dropped at the next switch.
    pub(in crate::linux) fn drop_running_thread(&mut self) {
        let tid = self.thread.tid;
        self.forget_task(tid);
        self.thread_exited = true;
        self.bump_generation();
    }

    /// Removes every trace of a task from the scheduler, the blocked pool and the futex queues.
    pub(in crate::linux) fn forget_task(&mut self, tid: Tid) {
        self.sched.forget(tid);
        if let Some(b) = self.blocked.remove(&tid) {
            if let Wait::Futex { key, .. } = b.wait {
                self.remove_futex_waiter(key, tid);
            }
        }
    }

    /// The running process ends (exit_group, a fatal signal): all its threads go, its descriptors are closed.
    /// The first process's end is the end of the run.
    pub(in crate::linux) fn end_process(&mut self, how: Termination) {
        let pid = self.proc.pid;
        // Its shared mappings' dirty pages reach their files and are written back as the address space goes
        // (a fatal signal may come between syscalls, after stores no syscall entry has copied yet).
        self.flush_shared_maps();
        self.write_back_all_maps();
        if pid == Pid(GUEST_PID) {
            self.keep_final_threads();
        }
        let others: Vec<Tid> = self
            .threads
            .values()
            .filter(|t| t.pid == pid)
            .map(|t| t.tid)
            .collect();
        for tid in others {
            self.forget_task(tid);
            self.threads.remove(&tid);
        }
        self.release_thread_resources();
        self.drop_running_thread();
        self.proc.exited = true;
        // Closing the descriptors now lets readers of its pipes see the end of file at once.
        self.proc.fds = crate::linux::fd::FdTable::new(pid);
        if pid == Pid(GUEST_PID) {
            self.terminate(how);
        } else {
            self.process_exited(how);
        }
    }

    /// Walks the robust list (set_robust_list(2)) and marks each futex the thread held as owned by a dead
    /// thread, waking one waiter of each.
    pub(in crate::linux) fn release_robust_list(&mut self) {
        let (head, _) = self.thread.robust_list;
        if head == 0 {
            return;
        }
        self.thread.robust_list = (0, 0);
        let tid = self.thread.tid.0 as u32;
        let Ok(offset) = self.read_u64(head.wrapping_add(8)) else {
            return;
        };
        let pending = self.read_u64(head.wrapping_add(16)).unwrap_or(0);
        let mut entry = self.read_u64(head).unwrap_or(head);
        let mut entries = Vec::new();
        while entry != head && entries.len() < ROBUST_LIST_LIMIT {
            entries.push(entry);
            match self.read_u64(entry) {
                Ok(next) => entry = next,
                Err(_) => break,
            }
        }
        if pending != 0 {
            entries.push(pending);
        }
        for e in entries {
            let word = (e & !1).wrapping_add(offset);
            let Ok(bytes) = self.read_mem(word, 4) else {
                continue;
            };
            let value = u32::from_le_bytes(bytes.try_into().unwrap());
            if value & FUTEX_TID_MASK != tid {
                continue;
            }
            let new = (value & FUTEX_WAITERS) | FUTEX_OWNER_DIED;
            if self.write_u32(word, new).is_ok() && value & FUTEX_WAITERS != 0 {
                let key = self.futex_key(word);
                self.futex_wake(key, 1, FUTEX_BITSET_MATCH_ANY);
            }
        }
    }

    pub(in crate::linux) fn sys_get_robust_list(
        &mut self,
        tid: i32,
        head_ptr: u64,
        len_ptr: u64,
    ) -> Result<u64, Errno> {
        let (head, len) = if tid == 0 || tid == self.thread.tid.0 {
            self.thread.robust_list
        } else {
            self.threads.get(&Tid(tid)).ok_or(ESRCH)?.robust_list
        };
        self.write_u64(head_ptr, head)?;
        self.write_u64(len_ptr, len)?;
        Ok(0)
    }

    // ---------------------------------------------------------------------------------------------------------
    // Futexes.

    /// The key of the futex word at `addr`. A word in a shared mapping is the mapped file's (its identity and
    /// the offset), so processes that map it at any address wait and wake on one key, as Linux keys a shared
    /// futex by its page; every other word is its address space's. FUTEX_PRIVATE_FLAG is not consulted: a
    /// private futex in a shared mapping is reached only by its own process either way (Linux would also tell
    /// apart two mappings of one file in one process).
    pub(in crate::linux) fn futex_key(&self, addr: u64) -> FutexKey {
        let shared = self
            .proc
            .shared_maps
            .iter()
            .find(|m| (m.start..m.start + m.len).contains(&addr));
        match shared {
            Some(m) => FutexKey {
                space: FutexKey::SHARED,
                object: m.file.borrow().attrs.ino,
                addr: m.offset + (addr - m.start),
            },
            None => FutexKey {
                space: self.proc.space,
                object: 0,
                addr,
            },
        }
    }

    pub(in crate::linux) fn sys_futex(&mut self, a: [u64; 6]) -> Outcome {
        let (uaddr, op, val, timeout, uaddr2, val3) =
            (a[0], a[1], a[2] as u32, a[3], a[4], a[5] as u32);
        let cmd = op & !(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);
        let r = match cmd {
            FUTEX_WAIT | FUTEX_WAIT_BITSET => {
                let bitset = if cmd == FUTEX_WAIT {
                    FUTEX_BITSET_MATCH_ANY
                } else {
                    val3
                };
                return self.futex_wait(uaddr, val, timeout, cmd, op, bitset);
            }
            FUTEX_WAKE => Ok(self.futex_wake(self.futex_key(uaddr), val, FUTEX_BITSET_MATCH_ANY)),
            FUTEX_WAKE_BITSET if val3 == 0 => Err(EINVAL),
            FUTEX_WAKE_BITSET => Ok(self.futex_wake(self.futex_key(uaddr), val, val3)),
            FUTEX_REQUEUE => Ok(self.futex_requeue(uaddr, uaddr2, val, timeout as u32)),
            FUTEX_CMP_REQUEUE => match self.read_u32_guest(uaddr) {
                Err(e) => Err(e),
                Ok(cur) if cur != val3 => Err(EAGAIN),
                Ok(_) => Ok(self.futex_requeue(uaddr, uaddr2, val, timeout as u32)),
            },
            FUTEX_WAKE_OP => self.futex_wake_op(uaddr, uaddr2, val, timeout as u32, val3),
            _ => Err(ENOSYS),
        };
        Outcome::Return(r)
    }

    pub(in crate::linux) fn read_u32_guest(&mut self, addr: u64) -> Result<u32, Errno> {
        if addr & 3 != 0 {
            return Err(EINVAL);
        }
        self.machine.cpu.mem.read_u32(addr).map_err(|_| EFAULT)
    }

    pub(in crate::linux) fn futex_wait(
        &mut self,
        uaddr: u64,
        val: u32,
        timeout: u64,
        cmd: u64,
        op: u64,
        bitset: u32,
    ) -> Outcome {
        if bitset == 0 {
            return Outcome::Return(Err(EINVAL));
        }
        let deadline = match self.restart_deadline {
            Some(d) => Some(d),
            None if timeout == 0 => None,
            None => match self.read_timespec(timeout) {
                Err(e) => return Outcome::Return(Err(e)),
                // FUTEX_WAIT's timeout is relative; FUTEX_WAIT_BITSET's is absolute on CLOCK_MONOTONIC, or
                // CLOCK_REALTIME with FUTEX_CLOCK_REALTIME.
                Ok(ns) if cmd == FUTEX_WAIT => Some(self.guest_time().saturating_add(ns)),
                Ok(ns) => Some(self.deadline_of(op & FUTEX_CLOCK_REALTIME != 0, ns)),
            },
        };
        match self.read_u32_guest(uaddr) {
            Err(e) => return Outcome::Return(Err(e)),
            Ok(cur) if cur != val => return Outcome::Return(Err(EAGAIN)),
            Ok(_) => {}
        }
        if deadline.is_some_and(|d| d <= self.guest_time()) {
            return Outcome::Return(Err(ETIMEDOUT));
        }
        let key = self.futex_key(uaddr);
        self.futex_waiters
            .entry(key)
            .or_default()
            .push_back(self.thread.tid);
        Outcome::Block(Wait::Futex { key, bitset }, deadline)
    }

    /// The guest time at which an absolute clock reading `ns` is reached (CLOCK_REALTIME when `realtime`,
    /// else CLOCK_MONOTONIC).
    pub(in crate::linux) fn deadline_of(&self, realtime: bool, ns: u64) -> GuestNs {
        let start = if realtime {
            self.config.epoch_ns
        } else {
            MONOTONIC_START_NS
        };
        GuestNs(ns.saturating_sub(start))
    }

    /// Wakes up to `n` waiters of `key` whose bitset shares a bit with `bitset`, oldest first; how many.
    pub(in crate::linux) fn futex_wake(&mut self, key: FutexKey, n: u32, bitset: u32) -> u64 {
        let Some(queue) = self.futex_waiters.get(&key) else {
            return 0;
        };
        let chosen: Vec<Tid> = queue
            .iter()
            .copied()
            .filter(|tid| match self.blocked.get(tid).map(|b| &b.wait) {
                Some(Wait::Futex { key: k, bitset: b }) => *k == key && b & bitset != 0,
                _ => false,
            })
            .take(n as usize)
            .collect();
        for &tid in &chosen {
            self.wake(tid, Some(0));
        }
        chosen.len() as u64
    }

    pub(in crate::linux) fn remove_futex_waiter(&mut self, key: FutexKey, tid: Tid) {
        if let Some(q) = self.futex_waiters.get_mut(&key) {
            q.retain(|&t| t != tid);
            if q.is_empty() {
                self.futex_waiters.remove(&key);
            }
        }
    }

    /// FUTEX_REQUEUE: wakes `wake` waiters of `from`, then moves up to `requeue` of the others to `to`.
    pub(in crate::linux) fn futex_requeue(
        &mut self,
        from: u64,
        to: u64,
        wake: u32,
        requeue: u32,
    ) -> u64 {
        let (from, to) = (self.futex_key(from), self.futex_key(to));
        let woken = self.futex_wake(from, wake, FUTEX_BITSET_MATCH_ANY);
        let mut moved = 0u64;
        while moved < requeue as u64 {
            let Some(tid) = self
                .futex_waiters
                .get_mut(&from)
                .and_then(|q| q.pop_front())
            else {
                break;
            };
            if let Some(b) = self.blocked.get_mut(&tid) {
                if let Wait::Futex { key, .. } = &mut b.wait {
                    *key = to;
                }
            }
            self.futex_waiters.entry(to).or_default().push_back(tid);
            moved += 1;
        }
        if self.futex_waiters.get(&from).is_some_and(|q| q.is_empty()) {
            self.futex_waiters.remove(&from);
        }
        woken + moved
    }

    /// FUTEX_WAKE_OP (futex(2)): *uaddr2 = op(*uaddr2, oparg), wake `n` on uaddr, and `n2` on uaddr2 if the old
    /// value of *uaddr2 passes the comparison.
    pub(in crate::linux) fn futex_wake_op(
        &mut self,
        uaddr: u64,
        uaddr2: u64,
        n: u32,
        n2: u32,
        encoded: u32,
    ) -> Result<u64, Errno> {
        let op = (encoded >> 28) & 0xf;
        let cmp = (encoded >> 24) & 0xf;
        let mut oparg = (encoded >> 12) & 0xfff;
        let cmparg = encoded & 0xfff;
        if op & 8 != 0 {
            oparg = 1u32.checked_shl(oparg).unwrap_or(0); // FUTEX_OP_OPARG_SHIFT
        }
        let old = self.read_u32_guest(uaddr2)?;
        let new = match op & 7 {
            0 => oparg,
            1 => old.wrapping_add(oparg),
            2 => old | oparg,
            3 => old & !oparg,
            4 => old ^ oparg,
            _ => return Err(ENOSYS),
        };
        self.write_u32(uaddr2, new)?;
        let pass = match cmp {
            0 => old == cmparg,
            1 => old != cmparg,
            2 => (old as i32) < cmparg as i32,
            3 => (old as i32) <= cmparg as i32,
            4 => (old as i32) > cmparg as i32,
            5 => (old as i32) >= cmparg as i32,
            _ => return Err(ENOSYS),
        };
        let mut woken = self.futex_wake(self.futex_key(uaddr), n, FUTEX_BITSET_MATCH_ANY);
        if pass {
            woken += self.futex_wake(self.futex_key(uaddr2), n2, FUTEX_BITSET_MATCH_ANY);
        }
        Ok(woken)
    }

    // ---------------------------------------------------------------------------------------------------------
    // CPUs, barriers, sleeps.

    pub(in crate::linux) fn sys_sched_getaffinity(
        &mut self,
        len: u64,
        mask: u64,
    ) -> Result<u64, Errno> {
        if len < 8 || len % 8 != 0 {
            return Err(EINVAL);
        }
        let cpus = self.config.cpus.clamp(1, crate::linux::CPUS_MAX);
        let bits = if cpus == 64 {
            u64::MAX
        } else {
            (1u64 << cpus) - 1
        };
        self.write_u64(mask, bits)?;
        Ok(8)
    }

    /// getcpu(2): the CPU and NUMA node the caller runs on. Every task runs on the one emulated CPU, CPU 0 of
    /// node 0 (the JVM asks, and falls back to the legacy vsyscall page, which this machine does not map). Either
    /// pointer may be null; the third argument is unused since Linux 2.6.24.
    pub(in crate::linux) fn sys_getcpu(&mut self, cpu: u64, node: u64) -> Result<u64, Errno> {
        if cpu != 0 {
            self.write_u32(cpu, 0)?;
        }
        if node != 0 {
            self.write_u32(node, 0)?;
        }
        Ok(0)
    }

    /// membarrier(2): every task runs on one emulated CPU, one at a time, so every barrier is already there.
    pub(in crate::linux) fn sys_membarrier(&mut self, cmd: u64, flags: u64) -> Result<u64, Errno> {
        const MEMBARRIER_CMD_QUERY: u64 = 0;
        if flags != 0 && cmd != 0x100 {
            return Err(EINVAL);
        }
        if cmd == MEMBARRIER_CMD_QUERY {
            // GLOBAL, GLOBAL_EXPEDITED, REGISTER_GLOBAL_EXPEDITED, PRIVATE_EXPEDITED and its registration.
            return Ok(0x1 | 0x2 | 0x4 | 0x8 | 0x10);
        }
        Ok(0)
    }

    /// The deadline of a relative sleep of `ns` begun now, or the one kept from the first attempt.
    pub(in crate::linux) fn sleep_deadline(&self, ns: u64) -> GuestNs {
        self.restart_deadline
            .unwrap_or_else(|| self.guest_time().saturating_add(ns))
    }

    pub(in crate::linux) fn sys_nanosleep(&mut self, req: u64, _rem: u64) -> Outcome {
        let deadline = match self.restart_deadline {
            Some(d) => d,
            None => match self.read_timespec(req) {
                Ok(ns) => self.sleep_deadline(ns),
                Err(e) => return Outcome::Return(Err(e)),
            },
        };
        self.sleep_until(deadline)
    }

    pub(in crate::linux) fn sys_clock_nanosleep(
        &mut self,
        clock: i32,
        flags: u64,
        req: u64,
        _rem: u64,
    ) -> Outcome {
        const TIMER_ABSTIME: u64 = 1;
        let realtime = match clock {
            0 | 8 | 11 => true,             // REALTIME, REALTIME_ALARM, TAI
            1 | 4 | 5 | 6 | 7 | 9 => false, // MONOTONIC and friends
            2 | 3 => return Outcome::Return(Err(EINVAL)),
            _ => return Outcome::Return(Err(EINVAL)),
        };
        let deadline = match self.restart_deadline {
            Some(d) => d,
            None => match self.read_timespec(req) {
                Err(e) => return Outcome::Return(Err(e)),
                Ok(ns) if flags & TIMER_ABSTIME != 0 => self.deadline_of(realtime, ns),
                Ok(ns) => self.sleep_deadline(ns),
            },
        };
        self.sleep_until(deadline)
    }

    pub(in crate::linux) fn sleep_until(&mut self, deadline: GuestNs) -> Outcome {
        if self.guest_time() >= deadline {
            Outcome::Return(Ok(0))
        } else {
            Outcome::Block(Wait::Sleep, Some(deadline))
        }
    }

    /// For a sleep interrupted by a signal: the time left, written where the guest asked (nanosleep's `rem`,
    /// clock_nanosleep's for a relative sleep).
    pub(in crate::linux) fn write_remaining(
        &mut self,
        nr: u64,
        args: [u64; 6],
        deadline: Option<GuestNs>,
    ) {
        let rem = match nr {
            35 => args[1],
            230 if args[1] & 1 == 0 => args[3],
            _ => return,
        };
        if let (Some(d), true) = (deadline, rem != 0) {
            let left = self.guest_time().until(d);
            let _ = self.write_timespec(rem, left);
        }
    }
}
