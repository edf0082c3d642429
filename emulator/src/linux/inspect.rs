//! The narrow interface through which the debugger, the gdb server and core dumps see the guest's tasks: the
//! threads in a stable order, the running one, each thread's registers (read and written) and the address space
//! of its process, and the threads a core dump holds. Nothing outside the kernel reaches into its thread or
//! process tables; this file is the only window onto them.
//!
//! Where a thread's registers live: the running thread's in the engine (`machine.cpu.regs`), every other
//! thread's in its `Thread::regs`, and, once the first process has ended, its other threads' as they were at
//! its end in `Stats::final_threads` (the kernel drops ended threads, but a debugger stopped at the fatal signal
//! and the core of the crash still show them; they are empty before, so every query looks in both places).
//!
//! Order: by tid, always (the BTreeMap order), so lists are the same run after run.

use super::ids::{Pid, Tid};
use super::task::{Thread, ThreadSignals};
use super::{Host, LinuxMachine};
use crate::cpu::Registers;
use crate::memory::Memory;

/// What a thread is doing, as a debugger shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ThreadState {
    /// On the CPU now.
    Running,
    /// In the run queue, waiting for its turn.
    Runnable,
    /// In the blocked pool: what it waits in.
    Blocked(String),
    /// It has ended (an exited running thread before the next switch, or a thread of an ended run).
    Exited,
}

impl std::fmt::Display for ThreadState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ThreadState::Running => write!(f, "running"),
            ThreadState::Runnable => write!(f, "runnable"),
            ThreadState::Blocked(what) => write!(f, "blocked in {what}"),
            ThreadState::Exited => write!(f, "exited"),
        }
    }
}

/// One line of a thread list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadInfo {
    pub tid: Tid,
    pub pid: Pid,
    pub rip: u64,
    pub state: ThreadState,
    /// Its name (prctl PR_SET_NAME, /proc/self/comm).
    pub name: Vec<u8>,
}

/// One file-backed mapping (`LinuxMachine::mapped_files`): [start, end) shows the file from `offset` on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappedFile {
    pub start: u64,
    pub end: u64,
    pub offset: u64,
    /// The guest path when it was mapped.
    pub path: Vec<u8>,
    /// The file's bytes as mapped (None when not known).
    pub contents: Option<std::sync::Arc<Vec<u8>>>,
}

/// A thread of the first process as that process ended (kept in `Stats::final_threads`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinalThread {
    pub tid: Tid,
    pub pid: Pid,
    pub regs: Registers,
    pub signals: ThreadSignals,
    pub name: Vec<u8>,
}

/// A thread as a core dump writes it (one NT_PRSTATUS and one NT_PRFPREG).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreThread {
    pub tid: Tid,
    pub pid: Pid,
    pub regs: Registers,
    pub signals: ThreadSignals,
}

impl FinalThread {
    fn of(t: &Thread) -> FinalThread {
        FinalThread {
            tid: t.tid,
            pid: t.pid,
            regs: t.regs.registers(),
            signals: t.sig,
            name: t.name.clone(),
        }
    }
}

impl<H: Host> LinuxMachine<H> {
    /// The running thread's tid (the thread the engine's registers belong to; after the run ended, the one that
    /// ended it).
    pub fn current_tid(&self) -> Tid {
        self.thread.tid
    }

    /// The running thread's process id.
    pub fn current_pid(&self) -> Pid {
        self.thread.pid
    }

    /// Every thread, by tid: the live ones, and once the first process has ended, its threads as they were
    /// then (`Stats::final_threads`).
    pub fn threads(&self) -> Vec<ThreadInfo> {
        let mut out = vec![ThreadInfo {
            tid: self.thread.tid,
            pid: self.thread.pid,
            rip: self.machine.cpu.regs.rip,
            state: if self.thread_exited {
                ThreadState::Exited
            } else if self.current_can_run() {
                ThreadState::Running
            } else {
                self.wait_state(self.thread.tid)
            },
            name: self.thread.name.clone(),
        }];
        out.extend(self.threads.values().map(|t| ThreadInfo {
            tid: t.tid,
            pid: t.pid,
            rip: t.regs.rip,
            state: self.wait_state(t.tid),
            name: t.name.clone(),
        }));
        out.extend(self.stats.final_threads.iter().map(|t| ThreadInfo {
            tid: t.tid,
            pid: t.pid,
            rip: t.regs.rip,
            state: ThreadState::Exited,
            name: t.name.clone(),
        }));
        out.sort_by_key(|t| t.tid);
        out.dedup_by_key(|t| t.tid);
        out
    }

    fn wait_state(&self, tid: Tid) -> ThreadState {
        match self.blocked.get(&tid) {
            Some(b) => ThreadState::Blocked(b.describe()),
            None => ThreadState::Runnable,
        }
    }

    /// A thread's registers (None for a tid the kernel does not know).
    pub fn thread_registers(&self, tid: Tid) -> Option<Registers> {
        if tid == self.thread.tid {
            return Some(self.machine.cpu.registers());
        }
        match self.threads.get(&tid) {
            Some(t) => Some(t.regs.registers()),
            None => self.final_thread(tid).map(|t| t.regs.clone()),
        }
    }

    /// Changes a live thread's registers (a debugger's register write). False for an unknown or ended thread.
    pub fn set_thread_registers(&mut self, tid: Tid, regs: &Registers) -> bool {
        if self.termination.is_some() {
            return false;
        }
        if tid == self.thread.tid && !self.thread_exited {
            self.machine.cpu.set_registers(regs);
            return true;
        }
        match self.threads.get_mut(&tid) {
            Some(t) => {
                t.regs.set_registers(regs);
                true
            }
            None => false,
        }
    }

    /// The address space of a thread's process (None for an unknown thread). Threads of an ended run read the
    /// running thread's (they shared it).
    pub fn thread_memory(&self, tid: Tid) -> Option<&Memory> {
        let pid = if tid == self.thread.tid {
            self.thread.pid
        } else if let Some(t) = self.threads.get(&tid) {
            t.pid
        } else {
            self.final_thread(tid)?.pid
        };
        if pid == self.proc.pid {
            return Some(&self.machine.cpu.mem);
        }
        let space = self.procs.get(&pid)?.space;
        match self.spaces.get(&space) {
            Some(m) => Some(&m.cpu.mem),
            // A vfork child shares its parent's space, which may be the running one.
            None => Some(&self.machine.cpu.mem),
        }
    }

    /// The threads a core dump of the running process holds: the running thread (the one that crashed) first,
    /// as Linux writes the dumping thread first, then the others of its process by tid.
    pub fn core_threads(&self) -> Vec<CoreThread> {
        let mut out = vec![CoreThread {
            tid: self.thread.tid,
            pid: self.thread.pid,
            regs: self.machine.cpu.registers(),
            signals: self.thread.sig,
        }];
        let pid = self.thread.pid;
        out.extend(
            self.threads
                .values()
                .filter(|t| t.pid == pid)
                .map(|t| CoreThread {
                    tid: t.tid,
                    pid: t.pid,
                    regs: t.regs.registers(),
                    signals: t.sig,
                }),
        );
        out.extend(
            self.stats
                .final_threads
                .iter()
                .filter(|t| t.pid == pid && t.tid != self.thread.tid)
                .map(|t| CoreThread {
                    tid: t.tid,
                    pid: t.pid,
                    regs: t.regs.clone(),
                    signals: t.signals,
                }),
        );
        out[1..].sort_by_key(|t| t.tid);
        out
    }

    /// A thread of the first process as it ended (empty until it has).
    fn final_thread(&self, tid: Tid) -> Option<&FinalThread> {
        self.stats.final_threads.iter().find(|t| t.tid == tid)
    }

    /// The key of the running thread's address space (what memory digests tag its pages with). A process gets
    /// a new key at fork and at execve, so a key always names one address space.
    pub fn space_key(&self) -> u32 {
        self.proc.space
    }

    /// The keys of every address space that exists, in order (the running one included).
    pub fn space_keys(&self) -> Vec<u32> {
        let mut keys: Vec<u32> = self.spaces.keys().copied().collect();
        keys.push(self.proc.space);
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// The running process's file-backed mappings in address order (what NT_FILE of a core lists, and where
    /// the debugger finds the libraries' symbols).
    /// One entry per line of /proc/self/maps that names a file (a mapping split by mprotect is several).
    pub fn mapped_files(&self) -> Vec<MappedFile> {
        let names = &self.proc.map_names;
        self.machine
            .cpu
            .mem
            .regions()
            .into_iter()
            .flat_map(|r| names.pieces(r.start, r.end))
            .filter_map(|(start, end, file)| {
                let (offset, f) = file?;
                Some(MappedFile {
                    start,
                    end,
                    offset,
                    path: f.path.clone(),
                    contents: f.contents.as_ref().map(|c| c.0.clone()),
                })
            })
            .collect()
    }

    /// The bytes a clean page of a private file mapping of the running process held when mapped, re-read from
    /// the file (as Linux drops a clean page-cache page that takes a memory error and reads it again). None for a
    /// page that is not file-backed, whose file is not known, or that a MAP_SHARED mapping holds (its bytes
    /// follow the file since).
    pub fn clean_file_page(&self, addr: u64) -> Option<Box<[u8; crate::memory::PAGE_SIZE]>> {
        let shared = self
            .proc
            .shared_maps
            .iter()
            .any(|m| addr >= m.start && addr - m.start < m.len);
        if shared {
            return None;
        }
        self.proc.map_names.file_page(addr)
    }

    /// The dynamic loader's list of loaded objects of the running process (`linkmap::read`), the program's
    /// entry first; None before the loader publishes it and for a static program.
    pub fn link_map(&self) -> Option<Vec<super::linkmap::LinkMapEntry>> {
        super::linkmap::read(&self.machine.cpu.mem, &self.proc.auxv)
    }

    /// Keeps the other threads of the running process as it ends (see `Stats::final_threads`).
    pub(super) fn keep_final_threads(&mut self) {
        let pid = self.proc.pid;
        self.stats.final_threads = self
            .threads
            .values()
            .filter(|t| t.pid == pid)
            .map(FinalThread::of)
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::super::abi::SIGSEGV;
    use super::super::*;
    use crate::cpu::RBX;

    fn workers(args: &[&str]) -> LinuxMachine<MemoryHost> {
        let path = format!("{}/../corpus/bin/workers-musl", env!("CARGO_MANIFEST_DIR"));
        let program = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let config = LinuxConfig {
            argv: args.iter().map(|a| a.as_bytes().to_vec()).collect(),
            ..LinuxConfig::default()
        };
        LinuxMachine::new(config, &program, MemoryHost::new(0)).unwrap()
    }

    /// While the workers run: every thread by tid, one of them running (the current one), each with its own
    /// registers and its process's memory; a register write to a waiting thread is what it is read back as;
    /// a core lists the running thread first, then the others by tid.
    #[test]
    fn threads_registers_and_core_threads_follow_the_kernel() {
        let mut m = workers(&["workers"]);
        let mut chunks = 0;
        while m.threads().len() < 4 {
            assert_eq!(m.run(1_000), Progress::BudgetExhausted);
            chunks += 1;
            assert!(chunks < 1_000, "the workers start");
        }
        let threads = m.threads();
        let tids: Vec<i32> = threads.iter().map(|t| t.tid.0).collect();
        assert_eq!(tids, vec![1000, 1001, 1002, 1003]);
        assert!(threads.iter().all(|t| t.pid == Pid(1000)));
        let running: Vec<Tid> = threads
            .iter()
            .filter(|t| t.state == ThreadState::Running)
            .map(|t| t.tid)
            .collect();
        assert_eq!(running, vec![m.current_tid()]);
        for t in &threads {
            assert_eq!(m.thread_registers(t.tid).unwrap().rip, t.rip);
            assert!(std::ptr::eq(m.thread_memory(t.tid).unwrap(), m.memory()));
        }
        let other = threads
            .iter()
            .find(|t| t.tid != m.current_tid())
            .unwrap()
            .tid;
        let saved = m.thread_registers(other).unwrap();
        let mut changed = saved.clone();
        changed.gpr[RBX] ^= 0x5555;
        assert!(m.set_thread_registers(other, &changed));
        assert_eq!(m.thread_registers(other), Some(changed));
        assert!(m.set_thread_registers(other, &saved));
        assert_eq!(m.thread_registers(Tid(4242)), None);
        assert!(!m.set_thread_registers(Tid(4242), &saved));
        let core: Vec<i32> = m.core_threads().iter().map(|t| t.tid.0).collect();
        assert_eq!(core[0], m.current_tid().0);
        let mut rest = core[1..].to_vec();
        rest.sort_unstable();
        assert_eq!(rest, core[1..]);
        assert_eq!(core.len(), 4);
    }

    /// After a thread's fault killed the process, the kernel has dropped its threads but a debugger and a
    /// core still see them as they were: the crashing thread current and first, the others by tid, each
    /// with the registers it had.
    #[test]
    fn a_crashed_run_keeps_its_threads_for_cores_and_debuggers() {
        let mut m = workers(&["workers", "crash"]);
        assert_eq!(m.run_to_completion(500_000_000), Progress::Finished);
        assert!(
            matches!(m.termination(), Some(Termination::Signaled { signal, .. }) if *signal == SIGSEGV)
        );
        assert_eq!(m.current_tid(), Tid(1003), "gamma crashed");
        let threads = m.threads();
        assert_eq!(threads.len(), 4);
        assert!(threads.iter().all(|t| t.state == ThreadState::Exited));
        let core = m.core_threads();
        let tids: Vec<i32> = core.iter().map(|t| t.tid.0).collect();
        assert_eq!(tids, vec![1003, 1000, 1001, 1002]);
        assert_eq!(core[0].regs, m.registers());
        for t in &core[1..] {
            assert_eq!(m.thread_registers(t.tid).as_ref(), Some(&t.regs));
            assert_ne!(t.regs.rip, core[0].regs.rip);
        }
        assert!(!m.set_thread_registers(Tid(1001), &core[1].regs));
    }
}
