//! Processes and threads: what Linux shares between the threads of a process, and what each thread owns.
//!
//! The split follows Linux (and Blink's System/Machine, rr's ThreadGroup/Task):
//! - a `Process` (a thread group) holds the descriptor table, the file-system view (working directory, umask),
//!   the signal actions and the signals sent to the whole process, the program break, and its identity (pid,
//!   parent, process group, session); its address space is the engine (`cpu::Machine`) the kernel runs its
//!   threads on;
//! - a `Thread` holds its registers (`CpuState`, while it is not running), its tid, its signal mask, the signals
//!   sent to it alone, its alternate signal stack, clear_child_tid and the robust-list head, its name and the
//!   instructions it has retired.
//!
//! What it must not do: hold anything the guest kernel shares between processes (the file system, the clock,
//! the host, the scheduler); those live in `LinuxMachine`.

use super::abi::NSIG;
use super::fd::FdTable;
use super::files::SharedMap;
use super::ids::{Pid, ThreadInsns, Tid};
use super::signal::{bit, SigAction, SS_DISABLE};
use super::vfs::GuestPath;
use crate::cpu::CpuState;

/// The signal actions of a process (shared by its threads), indexed by signal number (index 0 unused).
pub type SigActions = [SigAction; NSIG + 1];

/// A thread group: what its threads share.
pub struct Process {
    pub pid: Pid,
    pub ppid: Pid,
    /// Process group and session (setpgid, setsid).
    pub pgid: Pid,
    pub sid: Pid,
    pub fds: FdTable,
    /// The working directory, as guest path components.
    pub cwd: GuestPath,
    pub umask: u32,
    pub brk_start: u64,
    pub brk_current: u64,
    pub sigactions: SigActions,
    /// Signals sent to the process as a whole (kill), not yet taken by one of its threads.
    pub shared_pending: u64,
    /// MAP_SHARED mappings of files in its address space, kept coherent with the files (files.rs).
    pub shared_maps: Vec<SharedMap>,
}

impl Process {
    /// The first process of a run: its own group and session leader.
    pub fn first(pid: Pid, ppid: Pid, cwd: GuestPath, brk_start: u64) -> Process {
        Process {
            pid,
            ppid,
            pgid: pid,
            sid: pid,
            fds: FdTable::with_stdio(),
            cwd,
            umask: 0o022,
            brk_start,
            brk_current: brk_start,
            sigactions: [SigAction::default(); NSIG + 1],
            shared_pending: 0,
            shared_maps: Vec::new(),
        }
    }
}

/// The signal state of one thread: its mask, the signals sent to it alone, its alternate stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadSignals {
    /// Bit `sig - 1` set: blocked.
    pub blocked: u64,
    /// Bit `sig - 1` set: pending for this thread.
    pub pending: u64,
    pub altstack_sp: u64,
    pub altstack_size: u64,
    pub altstack_flags: u32,
}

impl Default for ThreadSignals {
    fn default() -> Self {
        ThreadSignals {
            blocked: 0,
            pending: 0,
            altstack_sp: 0,
            altstack_size: 0,
            altstack_flags: SS_DISABLE,
        }
    }
}

impl ThreadSignals {
    pub fn is_blocked(&self, sig: i32) -> bool {
        self.blocked & bit(sig) != 0
    }
}

/// One thread.
#[derive(Clone)]
pub struct Thread {
    pub tid: Tid,
    /// The process it belongs to.
    pub pid: Pid,
    /// Its registers while it is not running. INVARIANT: for the running thread this is stale; its live
    /// registers are the engine's (`Machine::cpu.regs`), and a context switch swaps the two.
    pub regs: CpuState,
    pub sig: ThreadSignals,
    /// The name prctl(PR_SET_NAME) set (at most 15 bytes): /proc/self/comm.
    pub name: Vec<u8>,
    /// set_tid_address / CLONE_CHILD_CLEARTID: zeroed and futex-woken when the thread exits.
    pub clear_child_tid: u64,
    /// set_robust_list: the head of the list of robust futexes the thread holds, and its length.
    pub robust_list: (u64, u64),
    /// Instructions the thread has retired.
    pub insns: ThreadInsns,
}

impl Thread {
    pub fn new(tid: Tid, pid: Pid, name: Vec<u8>) -> Thread {
        Thread {
            tid,
            pid,
            regs: CpuState::default(),
            sig: ThreadSignals::default(),
            name,
            clear_child_tid: 0,
            robust_list: (0, 0),
            insns: ThreadInsns::default(),
        }
    }
}
