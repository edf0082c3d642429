//! The Linux x86-64 user-mode ABI as a small kernel: processes and threads over the CPU, one deterministic
//! scheduler, blocking syscalls, signals between tasks, and an in-memory file system with read-only mounts of
//! host paths. It loads static ELF executables, answers their syscalls and delivers signals through real
//! signal frames.
//!
//! What it owns: `LinuxMachine`, the guest: the running thread's process and kernel state (`proc`, `thread`)
//! beside every other (`procs`, `threads`), their address spaces (the running one is `machine`, the engine),
//! the scheduler and the blocked pool, the file system, the clock. A context switch swaps register state (a
//! plain `CpuState`) and, between processes, the address space; compiled blocks of an address space survive it.
//! What it must not do: any IO of its own. Every byte from or to the outside goes through `Host` (host.rs), the
//! one host interface; time is `epoch + icount * ns_per_insn + time skipped while every task waited`, entropy is
//! seeded. So the same program, arguments, environment, mounts, stdin and seed give the same run, instruction
//! for instruction, schedule included.
//!
//! The interface outward (replay, debugger, hypervisor reports, CLI) is the `pub fn`s of `LinuxMachine`:
//! registers, memory, icount, run, snapshot and restore, termination, statistics.
//!
//! Layout: elf.rs (loader and initial stack), syscalls/ (the syscall table, one file per family), kernel.rs
//! (blocked pool, context switches, clock, deadlock report), sched.rs (the scheduling policies), ready.rs (what
//! poll, select and epoll call ready; eventfd, epoll), timer.rs (alarm, itimers, POSIX timers, timerfd), task.rs (what a
//! process and a thread hold), ids.rs (typed ids and times), signal.rs (queueing, frames, default actions),
//! files.rs (metadata changes, links, sendfile, shared file mappings), vfs.rs (paths and the overlay), volume.rs
//! (writable volumes and the I/O filter feeding storage/'s disk model and the IoObserver), fd.rs
//! (descriptors and pipes), net/ (sockets: addresses, name space, transport), snapshot.rs, host.rs, abi.rs (kernel constants), sysnames.rs (syscall names).

pub mod abi;
pub mod elf;
pub mod fd;
mod files;
pub mod host;
pub mod ids;
mod inspect;
mod kernel;
pub mod linkmap;
pub mod locks;
pub mod mapnames;
mod net;
pub mod procfs;
mod ready;
pub mod sched;
mod signal;
mod snapshot;
pub mod syscall_faults;
pub mod syscall_policy;
mod syscalls;
pub mod sysnames;
mod task;
mod timer;
pub mod vfs;
mod volume;

use crate::cpu::{CacheStats, CpuConfig, Exit, Machine, Registers};
use crate::memory::Memory;
use abi::*;
pub use host::{
    FileOutput, Host, HostKind, HostMetadata, HostStat, MemoryHost, SeededEntropy, Timespec,
};
use ids::{Pid, Tid};
pub use inspect::{CoreThread, FinalThread, MappedFile, ThreadInfo, ThreadState};
pub use sched::SchedPolicy;
use sched::Scheduler;
pub use signal::{fxsave, fxsave_registers, EarlyKill, SigInfo};
pub use snapshot::LinuxSnapshot;
use std::collections::BTreeMap;
pub use task::ThreadSignals;
use task::{Process, Thread};
use vfs::{Mount, Vfs};
pub use volume::{read_volume, VolumeError};

/// 2024-01-01T00:00:00Z, the default guest epoch.
pub const EPOCH_NS_DEFAULT: u64 = 1_704_067_200 * 1_000_000_000;
/// The guest's uid and gid (an ordinary user, not root, so programs take their unprivileged paths).
pub const GUEST_UID: u64 = 1000;
pub const GUEST_GID: u64 = 1000;
pub const GUEST_PID: i32 = 1000;
pub const GUEST_PPID: i32 = 999;

/// Everything that defines a guest run besides the program's bytes and the host.
#[derive(Clone, Debug)]
pub struct LinuxConfig {
    /// Root seed: AT_RANDOM, getrandom (through the host), RDRAND.
    pub seed: u64,
    pub argv: Vec<Vec<u8>>,
    pub envp: Vec<Vec<u8>>,
    pub mounts: Vec<Mount>,
    /// Writable volumes (storage/): read from the host at the start (or installed from the content a spec
    /// carries), then the guest's own.
    pub volumes: Vec<crate::storage::VolumeSpec>,
    /// An unknown syscall ends the run (as SIGSYS) instead of returning -ENOSYS.
    pub strict: bool,
    /// Guest wall-clock time at icount 0.
    pub epoch_ns: u64,
    /// Virtual nanoseconds per retired instruction (also the TSC ticks per instruction).
    pub ns_per_insn: u64,
    /// TCGETS and TIOCGWINSZ on descriptors 0-2 succeed (as on a terminal) instead of answering ENOTTY.
    pub stdout_is_terminal: bool,
    /// The guest path of the program (AT_EXECFN and /proc/self/exe).
    pub exe_path: Vec<u8>,
    /// The initial working directory (a guest path).
    pub cwd: Vec<u8>,
    /// Guest memory limit, in 4 KiB frames.
    pub frames_max: usize,
    /// How tasks share the CPU (`--sched`).
    pub sched: SchedPolicy,
    /// Report every syscall attempt (task, icount, name, arguments, result) through `Host::trace`, as strace
    /// would. Changes nothing in the run.
    pub trace_syscalls: bool,
    /// CPUs the guest is told it has (sched_getaffinity, sysinfo, /proc/cpuinfo): programs size their worker
    /// pools from it. Whatever the number, the guest's tasks run one at a time on one host thread.
    pub cpus: u32,
    /// What CPUID, AT_HWCAP and /proc/cpuinfo report (`Format6` for traces of format 6 and older).
    pub cpuid: crate::cpu::cpuid::CpuidModel,
}

/// CPUs the guest sees by default: enough that programs start their worker threads.
pub const CPUS_DEFAULT: u32 = 4;
/// Most CPUs a guest can be told it has (the affinity mask is one 64-bit word).
pub const CPUS_MAX: u32 = 64;

impl Default for LinuxConfig {
    fn default() -> Self {
        LinuxConfig {
            seed: 0,
            argv: vec![b"program".to_vec()],
            envp: Vec::new(),
            mounts: Vec::new(),
            volumes: Vec::new(),
            strict: false,
            epoch_ns: EPOCH_NS_DEFAULT,
            ns_per_insn: 1,
            stdout_is_terminal: false,
            exe_path: b"/program".to_vec(),
            cwd: b"/".to_vec(),
            frames_max: Memory::FRAMES_MAX_DEFAULT,
            sched: SchedPolicy::default(),
            trace_syscalls: false,
            cpus: CPUS_DEFAULT,
            cpuid: crate::cpu::cpuid::CpuidModel::default(),
        }
    }
}

/// How a guest run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Termination {
    /// exit or exit_group with this status (the low 8 bits are what a parent sees).
    Exited { code: i32 },
    /// Killed by a signal's default action (or by --strict, as SIGSYS).
    Signaled {
        signal: i32,
        rip: u64,
        icount: u64,
        /// What raised it: the CPU exception, "kill from the program itself", an unknown syscall.
        cause: String,
    },
    /// Every task was blocked with no timer pending: the run could never go on. Exit status 124, as a run
    /// stopped by its instruction limit (the guest would have hung).
    Deadlock { icount: u64, report: String },
}

impl Termination {
    /// The exit status a shell would show: the exit code, or 128 + the signal number.
    pub fn exit_status(&self) -> i32 {
        match self {
            Termination::Exited { code } => code & 0xff,
            Termination::Signaled { signal, .. } => 128 + signal,
            Termination::Deadlock { .. } => EXIT_DEADLOCK,
        }
    }

    /// The diagnostic line for a run killed by a signal.
    pub fn diagnostic(&self) -> Option<String> {
        match self {
            Termination::Exited { .. } => None,
            Termination::Signaled {
                signal,
                rip,
                icount,
                cause,
            } => Some(format!(
                "guest killed by {} (signal {signal}) at rip {rip:#x}, icount {icount}: {cause}",
                signal_name(*signal)
            )),
            Termination::Deadlock { icount, report } => Some(format!(
                "guest stopped at icount {icount}: {}",
                report.trim_end()
            )),
        }
    }
}

/// Exit status of a deadlocked run (timeout(1)'s: the run would never have ended).
pub const EXIT_DEADLOCK: i32 = 124;

/// Counters of a run, for --stats and reports. Ordered maps, so printing them is deterministic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Calls per syscall name (unknown ones under their table name, or "unknown").
    pub syscalls: BTreeMap<&'static str, u64>,
    /// Syscalls answered -ENOSYS because tandem does not implement them: number -> calls.
    pub unknown_syscalls: BTreeMap<u64, u64>,
    /// Of those, the ones tandem knows but cannot honour yet (alarm, setitimer): number -> what to tell the user.
    pub unsupported: BTreeMap<u64, &'static str>,
    /// Valid instructions the emulator does not implement that raised #UD in a guest which handled the SIGILL
    /// (one that did not ends with a message naming the instruction): "bytes (disassembly)" -> times.
    pub unimplemented_instructions: BTreeMap<String, u64>,
    pub signals_delivered: u64,
    /// Guest accesses that touched a poisoned frame (machine checks), by frame number: the hypervisor layer
    /// (hypervisor/containment.rs) reads it to tell a consumed memory error from a latent one.
    pub machine_checks: BTreeMap<u32, u64>,
    /// The siginfo of the last synchronous fault (CPU exception) or memory-error signal, for core dumps.
    pub last_fault: Option<SigInfo>,
    /// Switches of the CPU from one task to another.
    pub context_switches: u64,
    /// Threads and processes created (clone, fork, vfork).
    pub tasks_created: u64,
    /// Programs started by execve.
    pub execs: u64,
    /// The other threads of the first process as it ended (exit_group, a fatal signal), by tid: what a core
    /// dump and a debugger show of them once the run is over (the thread that ended it stays the running one).
    pub final_threads: Vec<inspect::FinalThread>,
}

/// What `run` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The budget ran out; the guest can be run further.
    BudgetExhausted,
    /// The guest ended; see `termination()`.
    Finished,
}

/// A guest process: CPU, memory and the kernel state around them. The API a record/replay layer drives.
pub struct LinuxMachine<H: Host> {
    /// The engine of the running thread's address space (its registers are the running thread's).
    pub(crate) machine: Machine,
    pub host: H,
    config: LinuxConfig,
    vfs: Vfs,
    /// The process of the running thread: its descriptors, file-system view, signal actions, program break.
    proc: Process,
    /// The running thread's kernel-side state (its registers are the engine's, in `machine`).
    thread: Thread,
    /// The running thread has exited: the next scheduling decision drops it.
    thread_exited: bool,
    /// Every other thread, by tid (their registers are in `Thread::regs`).
    threads: BTreeMap<Tid, Thread>,
    /// Every other live process, by pid.
    procs: BTreeMap<Pid, Process>,
    /// The address spaces of the other processes, by `Process::space` (the running one is `machine`).
    spaces: BTreeMap<u32, Machine>,
    /// Tasks waiting, by tid. INVARIANT: none of them is in the scheduler's run queue.
    blocked: BTreeMap<Tid, kernel::Blocked>,
    /// Futex waiters in the order they blocked, per word.
    futex_waiters: BTreeMap<kernel::FutexKey, std::collections::VecDeque<Tid>>,
    sched: Scheduler,
    /// Moves whenever a task did something a blocked task may wait for (see kernel.rs).
    generation: u64,
    /// The global icount at which the running thread's slice ends.
    slice_end: u64,
    /// The deadline of the syscall being re-run (None on its first attempt).
    restart_deadline: Option<ids::GuestNs>,
    /// The deadline a file-family syscall asked for as it blocked (see `syscalls::would_block`).
    block_deadline: Option<ids::GuestNs>,
    /// An earlier time at which such a syscall wants to be re-run without its deadline having passed (a
    /// timerfd it waits on expires then; see `syscalls::would_block_until`).
    block_wake_at: Option<ids::GuestNs>,
    /// Consecutive time skips while every task waited and only timers were pending (see kernel.rs).
    idle_timer_skips: u64,
    /// Virtual time skipped while every task was blocked (the clock's part not made of instructions).
    skipped_ns: u64,
    /// The next tid (and pid) to hand out.
    tid_next: i32,
    /// Processes that ended and wait for their parent's wait4, by pid.
    zombies: BTreeMap<Pid, task::Zombie>,
    death_seq: u64,
    /// The next address-space key to hand out.
    space_next: u32,
    /// execve calls so far (names the random streams of each new image).
    exec_count: u64,
    /// The name space of bound socket addresses (net/).
    net: net::Net,
    termination: Option<Termination>,
    stats: Stats,
    /// Receives every completed operation on a volume (volume.rs). Outside the guest's state: snapshots do not
    /// hold it.
    io_observer: Option<Box<dyn crate::storage::IoObserver>>,
    /// Syscall results to override (syscall_faults.rs) with the calls counted so far; part of snapshots.
    syscall_faults: Option<syscall_faults::SyscallFaults>,
    /// The container profile being enforced (syscall_policy.rs) with its denials; part of snapshots.
    syscall_policy: Option<syscall_policy::SyscallPolicy>,
}

impl<H: Host> LinuxMachine<H> {
    /// Loads `program` (the bytes of an ELF executable) and prepares its first instruction. A dynamically
    /// linked program's interpreter is read through the guest's file system (its root and mounts), by `host`.
    pub fn new(config: LinuxConfig, program: &[u8], mut host: H) -> Result<Self, elf::LoadError> {
        let mut vfs = Vfs::new(
            config.mounts.clone(),
            config.exe_path.clone(),
            config.epoch_ns,
        );
        let interpreter = syscalls::processes::read_interpreter(&mut vfs, &mut host, program)?;
        let loaded = syscalls::processes::load_program(
            program,
            interpreter.as_ref(),
            (&config.argv, &config.envp, &config.exe_path),
            CpuConfig {
                seed: config.seed,
                rdrand_stream: crate::cpu::RDRAND_STREAM.to_string(),
                tsc_per_insn: config.ns_per_insn,
                cpuid: config.cpuid,
            },
            config.frames_max,
            "linux.at_random",
        )?;
        let cwd = vfs.path_of(&config.cwd);
        let pid = Pid(GUEST_PID);
        let name = config
            .exe_path
            .rsplit(|&b| b == b'/')
            .next()
            .map(|n| n[..n.len().min(15)].to_vec())
            .unwrap_or_default();
        let mut sched = Scheduler::new(config.seed, config.sched);
        sched.add(pid.leader());
        let exe_path = vfs.exe_path.clone();
        let mut m = LinuxMachine {
            machine: loaded.machine,
            host,
            vfs,
            proc: Process::first(
                pid,
                Pid(GUEST_PPID),
                cwd,
                loaded.brk_start,
                exe_path,
                std::sync::Arc::new(program.to_vec()),
                loaded.auxv.into(),
            ),
            thread: Thread::new(pid.leader(), pid, name),
            thread_exited: false,
            threads: BTreeMap::new(),
            procs: BTreeMap::new(),
            spaces: BTreeMap::new(),
            blocked: BTreeMap::new(),
            futex_waiters: BTreeMap::new(),
            sched,
            generation: 0,
            slice_end: 0,
            restart_deadline: None,
            block_deadline: None,
            block_wake_at: None,
            idle_timer_skips: 0,
            skipped_ns: 0,
            tid_next: GUEST_PID + 1,
            zombies: BTreeMap::new(),
            death_seq: 0,
            space_next: 1,
            exec_count: 0,
            net: net::Net::new(config.seed),
            termination: None,
            stats: Stats::default(),
            io_observer: None,
            syscall_faults: None,
            syscall_policy: None,
            config,
        };
        m.mount_volumes()
            .map_err(|e| elf::LoadError::Volume(e.to_string()))?;
        m.name_image(
            &loaded.program_ranges,
            &loaded.interpreter_ranges,
            interpreter.as_ref(),
        );
        Ok(m)
    }

    pub fn config(&self) -> &LinuxConfig {
        &self.config
    }

    // ---------------------------------------------------------------------------------------------------------
    // The interface outward: what replay, the debugger, the hypervisor's reports and the CLI see of a guest.
    // They never reach into the engine or the kernel's tables.

    /// The running thread's registers, in their canonical form (rflags computed).
    pub fn registers(&self) -> Registers {
        self.machine.cpu.registers()
    }

    /// The running thread's instruction pointer.
    pub fn rip(&self) -> u64 {
        self.machine.cpu.regs.rip
    }

    /// The running thread's address space.
    pub fn memory(&self) -> &Memory {
        &self.machine.cpu.mem
    }

    /// The running thread's address space, for the consumers that keep dirty-page epochs and for
    /// hypervisor-level changes (poison, replaced frames).
    pub fn memory_mut(&mut self) -> &mut Memory {
        &mut self.machine.cpu.mem
    }

    /// Runs `f` on the memory of every other address space that shares `frame` with the running one
    /// copy-on-write (`Memory::shares_frame`: a fork's parent or child before either wrote the page), in key
    /// order; returns how many. Memory failure handling reaches them all, as Linux's rmap walk reaches every
    /// process mapping a page.
    pub fn with_spaces_sharing_frame(
        &mut self,
        frame: crate::memory::FrameId,
        mut f: impl FnMut(&mut Memory),
    ) -> usize {
        let running = &self.machine.cpu.mem;
        let mut n = 0;
        for m in self.spaces.values_mut() {
            if running.shares_frame(frame, &m.cpu.mem) {
                f(&mut m.cpu.mem);
                n += 1;
            }
        }
        n
    }

    /// The bytes and the text of the instruction at `addr` in the running thread's address space.
    pub fn describe_instruction(&self, addr: u64) -> (Vec<u8>, String) {
        self.machine.describe_instruction(addr)
    }

    /// Runs hot blocks as compiled host code (the default) or interprets everything; results are identical.
    pub fn set_jit(&mut self, on: bool) {
        self.machine.set_jit(on);
    }

    /// The running address space's blocks with their run counts up to the compile threshold, in address order
    /// (`Machine::hot_blocks`): what a usage profile records as hot.
    pub fn hot_blocks(&self) -> Vec<(u64, u32)> {
        self.machine.hot_blocks()
    }

    /// Compiles the blocks at `rips` of the running address space now (`Machine::precompile`): a warm
    /// instance's warmup. Changes nothing observable. Returns the blocks compiled.
    pub fn precompile_blocks(&mut self, rips: &[u64]) -> usize {
        self.machine.precompile(rips)
    }

    pub fn jit_enabled(&self) -> bool {
        self.machine.jit_enabled()
    }

    /// Starts (Some) or stops (None) collecting edge coverage and comparison constants (cpu/coverage.rs);
    /// returns what was collected until now. The map follows the CPU from process to process.
    pub fn set_coverage(
        &mut self,
        coverage: Option<Box<crate::cpu::coverage::Coverage>>,
    ) -> Option<Box<crate::cpu::coverage::Coverage>> {
        self.machine.set_coverage(coverage)
    }

    /// Installs (Some) or removes a plan of syscall results to override (syscall_faults.rs); calls are counted
    /// from now. Returns the plan that was installed, with the faults that fired.
    pub fn set_syscall_faults(
        &mut self,
        faults: Option<syscall_faults::SyscallFaults>,
    ) -> Option<syscall_faults::SyscallFaults> {
        std::mem::replace(&mut self.syscall_faults, faults)
    }

    /// Installs (Some) or removes the container profile the kernel enforces (syscall_policy.rs); returns the one
    /// that was installed, with its denials.
    pub fn set_syscall_policy(
        &mut self,
        policy: Option<syscall_policy::SyscallPolicy>,
    ) -> Option<syscall_policy::SyscallPolicy> {
        std::mem::replace(&mut self.syscall_policy, policy)
    }

    /// The container profile being enforced, with the calls it denied so far.
    pub fn syscall_policy(&self) -> Option<&syscall_policy::SyscallPolicy> {
        self.syscall_policy.as_ref()
    }

    /// The coverage being collected, if any.
    pub fn coverage(&self) -> Option<&crate::cpu::coverage::Coverage> {
        self.machine.coverage()
    }

    /// The coverage being collected, to clear its map between runs.
    pub fn coverage_mut(&mut self) -> Option<&mut crate::cpu::coverage::Coverage> {
        self.machine.coverage_mut()
    }

    pub fn cache_stats(&self) -> CacheStats {
        self.machine.cache_stats
    }

    /// Drops the cached blocks of code pages written since the last run (so that counters read now include
    /// them).
    pub fn apply_code_writes(&mut self) {
        self.machine.run(0);
    }

    /// Instructions the running thread will retire before reaching an address in `stops`, as far as its
    /// current block tells (see `Machine::instructions_until`).
    pub fn instructions_until(&mut self, stops: &std::collections::BTreeSet<u64>) -> u64 {
        self.machine.instructions_until(stops)
    }

    /// Watches these ranges of the running thread's address space (see `Machine::set_watches`).
    pub fn set_watches(&mut self, watches: &[crate::memory::WatchRange]) {
        self.machine.set_watches(watches);
    }

    /// The accesses counted on each watched range so far (see `Machine::watch_hits`).
    pub fn watch_hits(&self) -> &[crate::memory::WatchHits] {
        self.machine.watch_hits()
    }

    /// Retired instructions so far.
    pub fn icount(&self) -> u64 {
        self.machine.cpu.icount
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The digest of registers and memory: the run's final state hash once it has finished. With one thread
    /// and one address space, the engine's digest (as before threads existed, so older traces verify); with
    /// more, every thread's registers (by tid) and every address space's memory are mixed in.
    pub fn state_hash(&self) -> u64 {
        let running = self.machine.cpu.state_hash();
        if self.threads.is_empty() && self.spaces.is_empty() {
            return running;
        }
        let mut h = self.threads_fnv(running);
        for (id, m) in &self.spaces {
            h.write_u64(*id as u64);
            h.write_u64(m.cpu.mem.digest());
        }
        h.finish()
    }

    /// What `state_hash` covers except memory: the running thread's registers and icount and every other
    /// thread's registers. For callers that digest every address space's memory incrementally themselves
    /// (`address_spaces_mut`), as fault-tolerant replicas do at each epoch.
    pub fn registers_hash(&self) -> u64 {
        self.threads_fnv(self.machine.cpu.registers_hash()).finish()
    }

    /// Every address space's memory (the running one included) by key, in key order.
    pub fn address_spaces_mut(&mut self) -> Vec<(u32, &mut Memory)> {
        let running = self.proc.space;
        let mut out: Vec<(u32, &mut Memory)> = self
            .spaces
            .iter_mut()
            .map(|(&k, m)| (k, &mut m.cpu.mem))
            .collect();
        debug_assert!(out.iter().all(|(k, _)| *k != running));
        let at = out.partition_point(|(k, _)| *k < running);
        out.insert(at, (running, &mut self.machine.cpu.mem));
        out
    }

    /// The running thread's hash `running` followed by every other thread's registers, by tid.
    fn threads_fnv(&self, running: u64) -> crate::memory::Fnv {
        let mut h = crate::memory::Fnv::new();
        h.write_u64(running);
        for (tid, t) in &self.threads {
            h.write_u64(tid.0 as u64);
            let mut cpu_state = crate::memory::Fnv::new();
            for g in t.regs.gpr {
                cpu_state.write_u64(g);
            }
            cpu_state.write_u64(t.regs.rip);
            cpu_state.write_u64(t.regs.flags.rflags());
            cpu_state.write_u64(t.regs.fs_base);
            h.write_u64(cpu_state.finish());
        }
        h
    }

    /// The auxiliary vector the running process's program started with, as Linux's /proc/PID/auxv holds it:
    /// 8-byte key and value pairs, little-endian, the AT_NULL pair last (for debuggers: gdb finds a PIE's load
    /// address and the dynamic loader from AT_ENTRY, AT_PHDR and AT_BASE).
    pub fn auxv_bytes(&self) -> Vec<u8> {
        self.proc
            .auxv
            .iter()
            .flat_map(|&(k, v)| k.to_le_bytes().into_iter().chain(v.to_le_bytes()))
            .collect()
    }

    /// The guest path of the running process's program (/proc/self/exe): after an execve, the new program's.
    pub fn exe_path(&self) -> &[u8] {
        &self.proc.exe_path
    }

    /// The running thread's signal mask and pending set (for core dumps: NT_PRSTATUS pr_sigpend and
    /// pr_sighold).
    pub fn thread_signals(&self) -> &ThreadSignals {
        &self.thread.sig
    }

    pub fn termination(&self) -> Option<&Termination> {
        self.termination.as_ref()
    }

    /// The guest's exit status once it has finished (see `Termination::exit_status`).
    pub fn exit_status(&self) -> Option<i32> {
        self.termination.as_ref().map(Termination::exit_status)
    }

    /// Virtual time since the start of the run: instructions retired (by every task) times the rate, plus time
    /// skipped while every task was blocked.
    pub fn elapsed_ns(&self) -> u64 {
        self.machine
            .cpu
            .icount
            .saturating_mul(self.config.ns_per_insn)
            .saturating_add(self.skipped_ns)
    }

    /// Runs until `budget` more instructions have retired (counted over every task) or the guest ends (or,
    /// earlier, right after a syscall when the host asks for a pause: `Host::pause_requested`).
    ///
    /// Exact: scheduling, blocking and skipping time retire nothing, so the run stops exactly at the budget. A
    /// slice ends at the scheduler's quantum or at the next deadline (a timeout, a timer), so time-driven events
    /// happen at an exact instruction count.
    pub fn run(&mut self, budget: u64) -> Progress {
        let end = self.machine.cpu.icount.saturating_add(budget);
        loop {
            if self.termination.is_some() {
                return Progress::Finished;
            }
            let icount = self.machine.cpu.icount;
            if icount >= end {
                return Progress::BudgetExhausted;
            }
            let deadline = self.next_deadline().map(|d| self.icount_at(d));
            let due = deadline.is_some_and(|d| icount >= d);
            if (icount >= self.slice_end || !self.current_can_run() || due) && !self.schedule() {
                continue;
            }
            if !self.current_can_run() {
                // Re-running its syscall blocked it again, or ended it.
                continue;
            }
            let mut stop = end.min(self.slice_end.max(icount + 1));
            if let Some(d) = self.next_deadline() {
                stop = stop.min(self.icount_at(d).max(icount + 1));
            }
            debug_assert!(stop > icount);
            let exit = self.machine.run(stop - icount);
            let retired = self.machine.cpu.icount - icount;
            self.thread.insns.0 += retired;
            match exit {
                Exit::BudgetExhausted => {
                    if self.machine.cpu.icount >= self.slice_end {
                        // A timer interrupt: the thread's signals are taken before another task runs.
                        self.deliver_pending();
                    }
                }
                Exit::Syscall => {
                    self.syscall();
                    if self.termination.is_none() && self.host.pause_requested() {
                        return Progress::BudgetExhausted;
                    }
                }
                Exit::Exception(e) => self.exception(e),
            }
        }
    }

    /// Runs until the guest ends or `instructions_max` instructions have retired in total.
    pub fn run_to_completion(&mut self, instructions_max: u64) -> Progress {
        let left = instructions_max.saturating_sub(self.machine.cpu.icount);
        self.run(left)
    }

    /// The whole run ends.
    fn terminate(&mut self, t: Termination) {
        if self.termination.is_none() {
            self.termination = Some(t);
        }
    }
}

#[cfg(test)]
mod tests;
