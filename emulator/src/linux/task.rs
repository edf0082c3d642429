//! Processes and threads: what Linux shares between the threads of a process, and what each thread owns.
//!
//! The split follows Linux (and Blink's System/Machine, rr's ThreadGroup/Task):
//! - a `Process` (a thread group) holds the descriptor table, the file-system view (working directory, umask),
//!   the signal actions and the signals sent to the whole process, the program break, its timers, and its identity (pid,
//!   parent, process group, session); its address space is the engine (`cpu::Machine`) the kernel runs its
//!   threads on;
//! - a `Thread` holds its registers (`CpuState`, while it is not running), its tid, its signal mask, the signals
//!   sent to it alone, its alternate signal stack, clear_child_tid and the robust-list head, its name and the
//!   instructions it has retired.
//!
//! What it must not do: hold anything the guest kernel shares between processes (the file system, the clock,
//! the host, the scheduler); those live in `LinuxMachine`.

use super::abi::{NSIG, SIGCHLD};
use super::fd::FdTable;
use super::files::SharedMap;
use super::ids::{Pid, ThreadInsns, Tid};
use super::kernel::Restart;
use super::signal::{bit, SigAction, SigInfo, SS_DISABLE};
use super::timer::ProcessTimers;
use super::vfs::GuestPath;
use crate::cpu::CpuState;
use std::collections::BTreeMap;
use std::sync::Arc;

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
    /// The siginfo of each signal in `shared_pending`.
    pub shared_info: BTreeMap<i32, SigInfo>,
    /// MAP_SHARED mappings of files in its address space, kept coherent with the files (files.rs).
    pub shared_maps: Vec<SharedMap>,
    /// The file each file-backed mapping came from (/proc/self/maps): copied by fork, replaced by execve.
    pub map_names: super::mapnames::MapNames,
    /// alarm, ITIMER_REAL and timer_create's timers (timer.rs): not inherited by fork; execve keeps the first two.
    pub timers: ProcessTimers,
    /// Its address space: the key of its engine among the kernel's (shared with the parent by a vfork child
    /// until it execs or exits).
    pub space: u32,
    /// The process has exited (its threads are gone); it leaves the running slot at the next switch.
    pub exited: bool,
    /// The signal its parent gets when it ends (SIGCHLD for fork; clone's low byte).
    pub exit_signal: i32,
    /// A vfork child: the parent thread waiting until this process execs or exits.
    pub vfork_parent: Option<Tid>,
    /// The guest path of its program (/proc/self/exe) and the program's bytes (what execve of it reads).
    pub exe_path: Vec<u8>,
    pub exe: Arc<Vec<u8>>,
    /// The auxiliary vector its program started with (key, value pairs, AT_NULL last): what
    /// /proc/self/auxv and a debugger's qXfer:auxv show. Set at exec, inherited by fork.
    pub auxv: Arc<[(u64, u64)]>,
    /// Instructions retired by its threads that have ended (its CPU time, with the live threads').
    pub insns_dead_threads: u64,
}

/// A process that has ended and waits for its parent's wait4 (its exit status and CPU time).
#[derive(Clone, Debug)]
pub struct Zombie {
    pub pid: Pid,
    pub ppid: Pid,
    pub pgid: Pid,
    /// The wait status word (wait(2)).
    pub status: u32,
    /// Instructions its threads retired.
    pub insns: u64,
    /// Order of death among zombies (wait4 reaps the first that died).
    pub death_seq: u64,
}

impl Process {
    /// The first process of a run: in the process group and session of whatever started it (its parent's,
    /// outside the guest), as a program started by a non-interactive shell or a test harness is; so setpgid
    /// and setsid succeed as they would there.
    pub fn first(
        pid: Pid,
        ppid: Pid,
        cwd: GuestPath,
        brk_start: u64,
        exe_path: Vec<u8>,
        exe: Arc<Vec<u8>>,
        auxv: Arc<[(u64, u64)]>,
    ) -> Process {
        Process {
            pid,
            ppid,
            pgid: ppid,
            sid: ppid,
            fds: FdTable::with_stdio(pid),
            cwd,
            umask: 0o022,
            brk_start,
            brk_current: brk_start,
            sigactions: [SigAction::default(); NSIG + 1],
            shared_pending: 0,
            shared_info: BTreeMap::new(),
            shared_maps: Vec::new(),
            map_names: Default::default(),
            timers: ProcessTimers::default(),
            space: 0,
            exited: false,
            exit_signal: SIGCHLD,
            vfork_parent: None,
            exe_path,
            exe,
            auxv,
            insns_dead_threads: 0,
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
    /// The syscall to re-run when the thread next runs (it was blocked and has been woken).
    pub restart: Option<Restart>,
    /// The siginfo of each signal in `sig.pending`.
    pub pending_info: BTreeMap<i32, SigInfo>,
    /// rt_sigsuspend: the mask to restore when the handler returns (the frame saves it).
    pub saved_mask: Option<u64>,
    /// The process holding the POSIX lock this thread's F_SETLKW last waited for (deadlock detection follows
    /// these; meaningful only while the thread is blocked in that fcntl).
    pub lock_blocker: Option<Pid>,
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
            restart: None,
            pending_info: BTreeMap::new(),
            saved_mask: None,
            lock_blocker: None,
        }
    }
}
