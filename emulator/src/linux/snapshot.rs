//! Whole-machine snapshots of a guest process: the CPU's architectural state, guest memory (copy-on-write, see
//! `Memory::snapshot`) and the linux layer's kernel-side state (descriptors, the file-system overlay, the
//! program break, signal state, virtual time slept, counters, termination, sockets and their name space).
//!
//! Why here: checkpoints, reverse execution and divergence narrowing (crate tandem-replay) restore a machine to
//! an earlier instruction and run it forward again; that is exact only if everything that influences the next
//! instruction is restored, and most of it is private to the linux layer.
//!
//! Invariants:
//! - `restore(snapshot(m))` gives a machine that runs instruction for instruction like `m` would have, with the
//!   same state hash; a snapshot can be restored any number of times.
//! - Sharing is preserved: two descriptors that shared an open file description (dup) or an overlay file still
//!   share one after a restore, and a snapshot never aliases the live machine's descriptors, files or pipes
//!   (they are `Rc<RefCell<..>>`, so they are deep-copied, identity by identity, both when taken and when
//!   restored).
//! - The host is not part of it: the host's own position (stdin consumed, events answered) is the caller's to
//!   snapshot, because only the caller knows what kind of host it is.
//!
//! Memory is copy-on-write (cost in proportion to the pages written since); overlay file contents and pipe
//! buffers are copied whole, which is cheap for the programs tandem runs (their files are small) but is the part
//! to make copy-on-write if a guest ever keeps large files in the overlay.

use super::fd::{FdEntry, FdTable, FileKind, OpenFile, Pipe};
use super::files::SharedMap;
use super::ids::{GuestNs, Pid, Tid};
use super::kernel::{Blocked, FutexKey};
use super::net::transport::SharedChannel;
use super::net::{Net, Remap, SharedSocket};
use super::ready::{Epoll, EpollItem};
use super::sched::Scheduler;
use super::syscall_faults::SyscallFaults;
use super::syscall_policy::SyscallPolicy;
use super::task::{Process, Thread, Zombie};
use super::vfs::{FileData, SharedFile, Vfs};
use super::{Host, LinuxConfig, LinuxMachine, Stats, Termination};
use crate::cpu::{Cpu, CpuConfig, CpuState, Machine};
use crate::memory::{Memory, MemorySnapshot};
use crate::shared::Shared;
use rand_chacha::ChaCha20Rng;
use std::collections::{BTreeMap, VecDeque};

/// One address space's engine state (the registers aside: they belong to threads).
struct SpaceSnapshot {
    cpu_config: CpuConfig,
    rdrand: ChaCha20Rng,
    memory: MemorySnapshot,
    /// Pages mapped when the snapshot was taken (its page table's size).
    mapped_page_count: usize,
    jit: bool,
}

impl SpaceSnapshot {
    fn take(machine: &mut Machine) -> SpaceSnapshot {
        let cpu = &mut machine.cpu;
        SpaceSnapshot {
            cpu_config: cpu.config.clone(),
            rdrand: cpu.rdrand.clone(),
            mapped_page_count: cpu.mem.mapped_page_count(),
            memory: cpu.mem.snapshot(),
            jit: machine.jit_enabled(),
        }
    }

    /// Puts `machine` back in this state; its cached blocks are dropped (memory was replaced wholesale).
    /// Puts `machine` in this state. With `keep_code`, the cached and compiled blocks survive when the restore
    /// leaves the same frames under every page with cached code and none of those pages was written since the
    /// last restore (frames are copy-on-write and shared with the snapshot, so an unchanged frame is unchanged
    /// bytes); otherwise the cache is dropped.
    fn restore_into(&self, machine: &mut Machine, keep_code: bool) {
        let before = (keep_code && machine.code_unchanged_since_restore())
            .then(|| machine.code_page_frames());
        let cpu = &mut machine.cpu;
        cpu.config = self.cpu_config.clone();
        cpu.rdrand = self.rdrand.clone();
        cpu.mem.restore(&self.memory);
        machine.set_jit(self.jit);
        match before {
            Some(frames) if frames == machine.code_page_frames() => {
                machine.keep_code_after_restore()
            }
            _ => machine.flush_code_cache(),
        }
    }

    /// A new engine in this state.
    fn rebuild(&self, frames_max: usize) -> Machine {
        let mut mem = Memory::new();
        mem.set_frames_max(frames_max);
        let mut machine = Machine::new(Cpu::new(mem, self.cpu_config.clone()));
        self.restore_into(&mut machine, false);
        machine
    }
}

/// A copy of a whole guest at one instruction boundary, assembled from each part's own state: every address
/// space's engine, every process and thread (the running ones apart), the scheduler and the blocked pool, the
/// clock, and the kernel's own (file system, counters, termination).
pub struct LinuxSnapshot {
    /// The running thread's registers and the global instruction count.
    regs: CpuState,
    icount: u64,
    running_space: SpaceSnapshot,
    spaces: BTreeMap<u32, SpaceSnapshot>,
    process: Process,
    procs: BTreeMap<Pid, Process>,
    thread: Thread,
    thread_exited: bool,
    threads: BTreeMap<Tid, Thread>,
    zombies: BTreeMap<Pid, Zombie>,
    blocked: BTreeMap<Tid, Blocked>,
    futex_waiters: BTreeMap<FutexKey, VecDeque<Tid>>,
    sched: Scheduler,
    counters: KernelCounters,
    vfs: Vfs,
    net: Net,
    termination: Option<Termination>,
    stats: Stats,
    /// The syscall fault plan with its calls counted so far.
    syscall_faults: Option<SyscallFaults>,
    /// The enforced profile with its denials so far.
    syscall_policy: Option<SyscallPolicy>,
    /// Bytes held in overlay files and pipe buffers (copied whole).
    file_bytes: usize,
}

/// The kernel's scalar state: clock, sequence numbers, the running slice.
#[derive(Clone, Copy)]
struct KernelCounters {
    generation: u64,
    slice_end: u64,
    restart_deadline: Option<GuestNs>,
    block_deadline: Option<GuestNs>,
    block_wake_at: Option<GuestNs>,
    idle_timer_skips: u64,
    skipped_ns: u64,
    tid_next: i32,
    death_seq: u64,
    space_next: u32,
    exec_count: u64,
}

impl LinuxSnapshot {
    /// The instruction count at which the snapshot was taken.
    pub fn icount(&self) -> u64 {
        self.icount
    }

    /// The bytes this snapshot costs besides the guest frames it shares copy-on-write: its page table and frame
    /// table entries, and the overlay files and pipe buffers it copied.
    pub fn fixed_bytes(&self) -> usize {
        // A BTreeMap entry of (u64, PageEntry) and a frame-table entry (Arc pointer, class, flag) each cost about
        // 24 bytes with the tree's overhead amortised.
        let pages: usize = self.running_space.mapped_page_count
            + self
                .spaces
                .values()
                .map(|s| s.mapped_page_count)
                .sum::<usize>();
        pages * 48 + self.file_bytes
    }
}

/// Deep copies of `Rc`-shared kernel objects, keyed by the address of the original so that sharing is kept.
#[derive(Default)]
struct CloneMap {
    files: BTreeMap<usize, SharedFile>,
    pipes: BTreeMap<usize, Shared<Pipe>>,
    descriptions: BTreeMap<usize, Shared<OpenFile>>,
    sockets: BTreeMap<usize, SharedSocket>,
    channels: BTreeMap<usize, SharedChannel>,
    bytes: usize,
}

impl Remap for CloneMap {
    fn socket(&mut self, s: &SharedSocket) -> SharedSocket {
        let key = Shared::as_ptr(s) as usize;
        if let Some(c) = self.sockets.get(&key) {
            return c.clone();
        }
        // Its open count is copied as it is, as a pipe's (see `pipe`).
        let c = Shared::new(s.borrow().copy_with(self));
        self.sockets.insert(key, c.clone());
        c
    }

    fn channel(&mut self, ch: &SharedChannel) -> SharedChannel {
        let key = Shared::as_ptr(ch) as usize;
        if let Some(c) = self.channels.get(&key) {
            return c.clone();
        }
        let copy = ch.borrow().clone();
        self.bytes += copy.queued_bytes();
        let c = Shared::new(copy);
        self.channels.insert(key, c.clone());
        c
    }
}

impl CloneMap {
    fn file(&mut self, f: &SharedFile) -> SharedFile {
        let key = Shared::as_ptr(f) as usize;
        if let Some(c) = self.files.get(&key) {
            return c.clone();
        }
        let data = f.borrow();
        // The contents are shared copy-on-write: no bytes are copied here.
        let c = Shared::new(FileData {
            bytes: data.bytes.clone(),
            attrs: data.attrs,
            nlink: data.nlink,
            host: data.host,
            locks: data.locks.clone(),
        });
        self.files.insert(key, c.clone());
        c
    }

    fn pipe(&mut self, p: &Shared<Pipe>) -> Shared<Pipe> {
        let key = Shared::as_ptr(p) as usize;
        if let Some(c) = self.pipes.get(&key) {
            return c.clone();
        }
        let pipe = p.borrow();
        self.bytes += pipe.buf.len();
        // The counts are copied as they are: every description that holds an end is copied too (below, without
        // going through `OpenFile::new`, which would count it again), and dropping a copy decrements the copy.
        let c = Shared::new(Pipe {
            buf: pipe.buf.clone(),
            readers: pipe.readers,
            writers: pipe.writers,
            written: pipe.written,
            read: pipe.read,
        });
        self.pipes.insert(key, c.clone());
        c
    }

    fn description(&mut self, d: &Shared<OpenFile>) -> Shared<OpenFile> {
        let key = Shared::as_ptr(d) as usize;
        if let Some(c) = self.descriptions.get(&key) {
            return c.clone();
        }
        let open = d.borrow();
        let kind = match &open.kind {
            FileKind::Stdin => FileKind::Stdin,
            FileKind::Stdout => FileKind::Stdout,
            FileKind::Stderr => FileKind::Stderr,
            FileKind::Regular { data, path } => FileKind::Regular {
                data: self.file(data),
                path: path.clone(),
            },
            FileKind::Dir { path } => FileKind::Dir { path: path.clone() },
            FileKind::Device(dev) => FileKind::Device(*dev),
            FileKind::PipeRead(p) => FileKind::PipeRead(self.pipe(p)),
            FileKind::PipeWrite(p) => FileKind::PipeWrite(self.pipe(p)),
            FileKind::Socket(s) => FileKind::Socket(self.socket(s)),
            FileKind::EventFd(e) => FileKind::EventFd(e.clone()),
            FileKind::TimerFd(t) => FileKind::TimerFd(t.clone()),
            FileKind::Epoll(ep) => FileKind::Epoll(self.epoll(ep)),
        };
        let c = Shared::new(OpenFile {
            kind,
            offset: open.offset,
            flags: open.flags,
            lock_id: open.lock_id,
        });
        self.descriptions.insert(key, c.clone());
        c
    }

    /// An epoll instance whose items watch the copies of their files (items of closed files are dropped).
    /// Loops are refused by epoll_ctl, so the recursion ends.
    fn epoll(&mut self, ep: &Epoll) -> Epoll {
        let mut out = Epoll {
            cursor: ep.cursor,
            ..Epoll::default()
        };
        for (&fd, item) in &ep.items {
            let Some(file) = item.file.upgrade() else {
                continue;
            };
            let copy = self.description(&file);
            out.items.insert(
                fd,
                EpollItem {
                    file: Shared::downgrade(&copy),
                    ..item.clone()
                },
            );
        }
        out
    }

    fn fd_table(&mut self, t: &FdTable) -> FdTable {
        let mut out = FdTable::new(t.owner);
        for (&fd, e) in &t.fds {
            out.fds.insert(
                fd,
                FdEntry {
                    desc: self.description(&e.desc),
                    cloexec: e.cloexec,
                },
            );
        }
        out
    }

    fn vfs(&mut self, v: &Vfs) -> Vfs {
        v.copy_with(|f| self.file(f))
    }

    fn shared_maps(&mut self, maps: &[SharedMap]) -> Vec<SharedMap> {
        maps.iter()
            .map(|m| SharedMap {
                file: self.file(&m.file),
                ..m.clone()
            })
            .collect()
    }

    /// A copy of a process whose descriptors share nothing with the original (but keep their sharing among
    /// themselves and with the other copies made through this map).
    fn process(&mut self, p: &Process) -> Process {
        Process {
            pid: p.pid,
            ppid: p.ppid,
            pgid: p.pgid,
            sid: p.sid,
            fds: self.fd_table(&p.fds),
            cwd: p.cwd.clone(),
            umask: p.umask,
            brk_start: p.brk_start,
            brk_current: p.brk_current,
            sigactions: p.sigactions,
            shared_pending: p.shared_pending,
            shared_info: p.shared_info.clone(),
            shared_maps: self.shared_maps(&p.shared_maps),
            map_names: p.map_names.clone(),
            timers: p.timers.clone(),
            space: p.space,
            exited: p.exited,
            exit_signal: p.exit_signal,
            vfork_parent: p.vfork_parent,
            exe_path: p.exe_path.clone(),
            exe: p.exe.clone(),
            auxv: p.auxv.clone(),
            insns_dead_threads: p.insns_dead_threads,
        }
    }
}

impl<H: Host> LinuxMachine<H> {
    /// Takes a snapshot of the whole guest (not of the host: a caller that wants the same continuation after a
    /// restore restores the host's inputs too, as the replay host does with its trace position; glibc reads
    /// entropy for its heap in its first instructions, so a restored guest fed new entropy takes another path).
    pub fn snapshot(&mut self) -> LinuxSnapshot {
        let mut map = CloneMap::default();
        // Files first through the overlay, then descriptors, so that all see the same copies.
        let vfs = map.vfs(&self.vfs);
        let process = map.process(&self.proc);
        let procs = self
            .procs
            .iter()
            .map(|(&pid, p)| (pid, map.process(p)))
            .collect();
        let spaces = self
            .spaces
            .iter_mut()
            .map(|(&id, m)| (id, SpaceSnapshot::take(m)))
            .collect();
        LinuxSnapshot {
            regs: self.machine.cpu.regs.clone(),
            icount: self.machine.cpu.icount,
            running_space: SpaceSnapshot::take(&mut self.machine),
            spaces,
            process,
            procs,
            thread: self.thread.clone(),
            thread_exited: self.thread_exited,
            threads: self.threads.clone(),
            zombies: self.zombies.clone(),
            blocked: self.blocked.clone(),
            futex_waiters: self.futex_waiters.clone(),
            sched: self.sched.clone(),
            counters: KernelCounters {
                generation: self.generation,
                slice_end: self.slice_end,
                restart_deadline: self.restart_deadline,
                block_deadline: self.block_deadline,
                block_wake_at: self.block_wake_at,
                idle_timer_skips: self.idle_timer_skips,
                skipped_ns: self.skipped_ns,
                tid_next: self.tid_next,
                death_seq: self.death_seq,
                space_next: self.space_next,
                exec_count: self.exec_count,
            },
            vfs,
            net: self.net.copy_with(&mut map),
            termination: self.termination.clone(),
            stats: self.stats.clone(),
            syscall_faults: self.syscall_faults.clone(),
            syscall_policy: self.syscall_policy.clone(),
            file_bytes: map.bytes,
        }
    }

    /// Puts the guest back exactly as it was when `snap` was taken (the host is left alone). The engine of the
    /// running space is kept (its code buffer is reused); its cached blocks are dropped.
    pub fn restore(&mut self, snap: &LinuxSnapshot) {
        self.restore_with(snap, false);
    }

    /// The same, keeping the running engine's decoded and compiled blocks when no page of cached code changed
    /// (see `SpaceSnapshot::restore_into`): what a fuzzer restoring the same snapshot thousands of times wants,
    /// since the program's code is the same in every run. The run that follows is the same either way.
    pub fn restore_keeping_code(&mut self, snap: &LinuxSnapshot) {
        self.restore_with(snap, true);
    }

    fn restore_with(&mut self, snap: &LinuxSnapshot, keep_code: bool) {
        // Frame numbers compare only within one address space: after an execve or in another process the
        // engine's cache is of other code.
        let keep_code = keep_code && self.proc.space == snap.process.space;
        snap.running_space
            .restore_into(&mut self.machine, keep_code);
        self.machine.cpu.regs = snap.regs.clone();
        self.machine.cpu.icount = snap.icount;
        let k = KernelParts::of(snap, self.config.frames_max);
        self.vfs = k.vfs;
        self.proc = k.proc;
        self.procs = k.procs;
        self.spaces = k.spaces;
        self.thread = k.thread;
        self.thread_exited = snap.thread_exited;
        self.threads = k.threads;
        self.zombies = k.zombies;
        self.blocked = k.blocked;
        self.futex_waiters = k.futex_waiters;
        self.sched = k.sched;
        let c = snap.counters;
        self.generation = c.generation;
        self.slice_end = c.slice_end;
        self.restart_deadline = c.restart_deadline;
        self.block_deadline = c.block_deadline;
        self.block_wake_at = c.block_wake_at;
        self.idle_timer_skips = c.idle_timer_skips;
        self.skipped_ns = c.skipped_ns;
        self.tid_next = c.tid_next;
        self.death_seq = c.death_seq;
        self.space_next = c.space_next;
        self.exec_count = c.exec_count;
        self.net = k.net;
        self.termination = snap.termination.clone();
        self.stats = snap.stats.clone();
        self.syscall_faults = snap.syscall_faults.clone();
        self.syscall_policy = snap.syscall_policy.clone();
    }

    /// A new guest in the state of `snap`, talking to `host`, without loading any program: what a warm pool's
    /// instances start from (replay/src/pools). `config` must be the configuration the snapshot's guest ran
    /// with (the caller keeps it beside the snapshot). Memory frames are shared copy-on-write with the
    /// snapshot, so this costs the page table and the kernel's tables, not the guest's bytes.
    pub fn from_snapshot(config: LinuxConfig, snap: &LinuxSnapshot, host: H) -> Self {
        let mut machine = snap.running_space.rebuild(config.frames_max);
        machine.cpu.regs = snap.regs.clone();
        machine.cpu.icount = snap.icount;
        let k = KernelParts::of(snap, config.frames_max);
        let c = snap.counters;
        LinuxMachine {
            machine,
            host,
            config,
            vfs: k.vfs,
            proc: k.proc,
            thread: k.thread,
            thread_exited: snap.thread_exited,
            threads: k.threads,
            procs: k.procs,
            spaces: k.spaces,
            blocked: k.blocked,
            futex_waiters: k.futex_waiters,
            sched: k.sched,
            generation: c.generation,
            slice_end: c.slice_end,
            restart_deadline: c.restart_deadline,
            block_deadline: c.block_deadline,
            block_wake_at: c.block_wake_at,
            idle_timer_skips: c.idle_timer_skips,
            skipped_ns: c.skipped_ns,
            tid_next: c.tid_next,
            zombies: k.zombies,
            death_seq: c.death_seq,
            space_next: c.space_next,
            exec_count: c.exec_count,
            net: k.net,
            termination: snap.termination.clone(),
            stats: snap.stats.clone(),
            // The observer of volume operations is outside the guest's state: a new guest has none until its
            // owner installs one.
            io_observer: None,
            syscall_faults: snap.syscall_faults.clone(),
            syscall_policy: snap.syscall_policy.clone(),
        }
    }

    /// Gives this guest entropy of its own from now on: every address space's RDRAND stream is replaced by the
    /// stream "cpu.rdrand/clone/N" of the root seed. What was drawn before (AT_RANDOM, values already in
    /// memory) stays as it is. getrandom(2) and /dev/urandom come from the host, whose stream the caller
    /// replaces (`SeededEntropy::for_clone`). The scheduler's, the socket ports' and the fault streams are
    /// left alone: they are not values a program can read as randomness, and keeping them keeps the schedule.
    pub fn reseed_clone(&mut self, clone: u64) {
        let seed = self.config.seed;
        let mut streams = vec![&mut self.machine];
        streams.extend(self.spaces.values_mut());
        for (i, m) in streams.into_iter().enumerate() {
            let name = format!("{}/clone/{clone}/space/{i}", crate::cpu::RDRAND_STREAM);
            m.cpu.rdrand = crate::cpu::named_stream(seed, &name);
        }
    }
}

/// The kernel's tables rebuilt from a snapshot, sharing nothing with it (see `CloneMap`).
struct KernelParts {
    vfs: Vfs,
    proc: Process,
    procs: BTreeMap<Pid, Process>,
    spaces: BTreeMap<u32, Machine>,
    thread: Thread,
    threads: BTreeMap<Tid, Thread>,
    zombies: BTreeMap<Pid, Zombie>,
    blocked: BTreeMap<Tid, Blocked>,
    futex_waiters: BTreeMap<FutexKey, VecDeque<Tid>>,
    sched: Scheduler,
    net: Net,
}

impl KernelParts {
    fn of(snap: &LinuxSnapshot, frames_max: usize) -> KernelParts {
        let mut map = CloneMap::default();
        // Files first through the overlay, then descriptors, so that all see the same copies.
        let vfs = map.vfs(&snap.vfs);
        let proc = map.process(&snap.process);
        let procs = snap
            .procs
            .iter()
            .map(|(&pid, p)| (pid, map.process(p)))
            .collect();
        let mut vfs = vfs;
        vfs.exe_path = proc.exe_path.clone();
        KernelParts {
            vfs,
            proc,
            procs,
            spaces: snap
                .spaces
                .iter()
                .map(|(&id, s)| (id, s.rebuild(frames_max)))
                .collect(),
            thread: snap.thread.clone(),
            threads: snap.threads.clone(),
            zombies: snap.zombies.clone(),
            blocked: snap.blocked.clone(),
            futex_waiters: snap.futex_waiters.clone(),
            sched: snap.sched.clone(),
            net: snap.net.copy_with(&mut map),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{LinuxConfig, LinuxMachine, MemoryHost, Progress};

    fn corpus(name: &str) -> Vec<u8> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../corpus/bin/");
        std::fs::read(format!("{path}{name}")).expect("corpus binary")
    }

    /// Runs to the end from a snapshot taken part-way, twice, and compares with an uninterrupted run.
    fn restore_replays_exactly(name: &str) {
        restore_replays_exactly_at(name, &[], 2, 3);
    }

    /// The same with arguments, the snapshot taken after `num`/`den` of the run.
    fn restore_replays_exactly_at(name: &str, args: &[&str], num: u64, den: u64) {
        let program = corpus(name);
        let mut argv = vec![name.as_bytes().to_vec()];
        argv.extend(args.iter().map(|a| a.as_bytes().to_vec()));
        let config = LinuxConfig {
            seed: 5,
            argv,
            ..LinuxConfig::default()
        };
        let mut straight = LinuxMachine::new(config.clone(), &program, MemoryHost::new(5)).unwrap();
        assert_eq!(straight.run(u64::MAX), Progress::Finished);
        let expected = (
            straight.icount(),
            straight.state_hash(),
            straight.exit_status(),
        );
        let at = straight.icount() * num / den;

        let mut m = LinuxMachine::new(config, &program, MemoryHost::new(5)).unwrap();
        assert_eq!(m.run(at), Progress::BudgetExhausted);
        let snap = m.snapshot();
        let host_at = m.host.clone();
        let hash_at = m.state_hash();
        for _ in 0..2 {
            m.host = host_at.clone();
            m.restore(&snap);
            assert_eq!(m.icount(), at);
            assert_eq!(m.state_hash(), hash_at, "{name}: restore changed the state");
            assert_eq!(m.run(u64::MAX), Progress::Finished);
            assert_eq!(
                (m.icount(), m.state_hash(), m.exit_status()),
                expected,
                "{name} {args:?}: the run from the snapshot at {num}/{den} differs"
            );
            assert_eq!(
                m.host.stdout, straight.host.stdout,
                "{name} {args:?}: output differs from the snapshot at {num}/{den}"
            );
        }
    }

    #[test]
    fn restore_keeps_shared_mappings_links_and_metadata_exact() {
        // Snapshots taken while shared mappings, hard links and changed attributes are live.
        for (num, den) in [(1, 4), (1, 2), (3, 4)] {
            restore_replays_exactly_at("fsops-musl", &["mmap-shared", "/tmp"], num, den);
            restore_replays_exactly_at("fsops-glibc", &["meta", "/tmp"], num, den);
        }
    }

    #[test]
    fn restore_mid_connection_continues_identically() {
        // Snapshots taken while connections are queued, bytes are in flight and tasks block in accept, connect
        // and recv.
        for (num, den) in [(1, 5), (2, 5), (1, 2), (3, 5), (4, 5)] {
            restore_replays_exactly_at("sockets-glibc", &["unix", "fork"], num, den);
            restore_replays_exactly_at("sockets-glibc", &["tcp", "thread"], num, den);
        }
        for (num, den) in [(1, 5), (2, 5), (1, 2), (3, 5), (4, 5)] {
            restore_replays_exactly_at("sockets-musl", &["tcp", "fork"], num, den);
            restore_replays_exactly_at("sockets-musl", &["udp", "thread"], num, den);
            restore_replays_exactly_at("sockets-musl", &["dgram", "fork"], num, den);
            restore_replays_exactly_at("sockets-musl", &["pair", "thread"], num, den);
        }
    }

    #[test]
    fn restores_at_every_sixteenth_continue_exactly() {
        // Start-up included: glibc takes entropy for its heap in its first instructions, so a harness that did not
        // restore the host's entropy with the guest would fail here at 1/16 (an earlier belief that glibc's early
        // state could not be snapshotted was that harness bug).
        let programs: [(&str, &[&str]); 11] = [
            ("hello-glibc", &[]),
            ("hello-musl", &[]),
            ("malloc-glibc", &[]),
            ("qsort-glibc", &[]),
            ("sha256-glibc", &[]),
            ("fileio-glibc", &[]),
            ("threads-glibc", &[]),
            ("threads-musl", &[]),
            ("procs-glibc", &[]),
            ("procs-musl", &[]),
            ("clock-glibc", &[]),
        ];
        for (name, args) in programs {
            for num in 1..16 {
                restore_replays_exactly_at(name, args, num, 16);
            }
        }
    }

    #[test]
    fn restore_mid_wait_continues_identically() {
        // Snapshots taken while tasks wait in poll, select, epoll_wait, eventfd and timerfd reads, pause and
        // sleeps, with alarms, itimers, POSIX timers and timerfds armed.
        for (num, den) in [(1, 5), (2, 5), (1, 2), (3, 5), (4, 5), (9, 10)] {
            restore_replays_exactly_at("ready-musl", &[], num, den);
            restore_replays_exactly_at("timers-musl", &[], num, den);
            restore_replays_exactly_at("go-chan", &[], num, den);
        }
        for (num, den) in [(1, 2), (4, 5)] {
            restore_replays_exactly_at("ready-glibc", &[], num, den);
            restore_replays_exactly_at("timers-glibc", &[], num, den);
        }
    }

    #[test]
    fn restore_keeping_code_runs_exactly_and_reuses_the_blocks() {
        // From the first instruction, as `tandem fuzz` restores: the second and later runs translate nothing
        // (the code did not change), and every run is the uninterrupted one. procs forks and execs: the kept
        // cache must not survive into another address space.
        for name in ["sha256-musl", "malloc-glibc", "procs-musl", "threads-glibc"] {
            let program = corpus(name);
            let config = LinuxConfig {
                seed: 5,
                argv: vec![name.as_bytes().to_vec()],
                ..LinuxConfig::default()
            };
            let mut m = LinuxMachine::new(config, &program, MemoryHost::new(5)).unwrap();
            let snap = m.snapshot();
            let host = m.host.clone();
            let mut expected = None;
            let mut translated = Vec::new();
            for _ in 0..4 {
                m.host = host.clone();
                m.restore_keeping_code(&snap);
                let before = m.cache_stats().blocks_translated;
                assert_eq!(m.run(u64::MAX), Progress::Finished);
                translated.push(m.cache_stats().blocks_translated - before);
                let got = (
                    m.icount(),
                    m.state_hash(),
                    m.exit_status(),
                    m.host.stdout.clone(),
                );
                assert_eq!(expected.get_or_insert(got.clone()), &got, "{name}");
            }
            if name == "sha256-musl" {
                // FIXME: every other run re-decodes 2 blocks (a page of cached code written in the run, not yet
                // understood); the rest of the cache survives.
                assert!(
                    translated[0] > 100 && translated[1..].iter().all(|&t| t * 50 < translated[0]),
                    "{translated:?}"
                );
            }
        }
    }

    #[test]
    fn restore_replays_corpus_programs_exactly() {
        for name in ["hello-musl", "fileio-musl", "fileio-glibc", "malloc-glibc"] {
            restore_replays_exactly(name);
        }
    }
}
