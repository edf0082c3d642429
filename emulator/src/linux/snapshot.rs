//! Whole-machine snapshots of a guest process: the CPU's architectural state, guest memory (copy-on-write, see
//! `Memory::snapshot`) and the linux layer's kernel-side state (descriptors, the file-system overlay, the
//! program break, signal state, virtual time slept, counters, termination).
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
use super::task::{Process, Thread};
use super::vfs::{FileData, SharedFile, Vfs};
use super::{Host, LinuxMachine, Stats, Termination};
use crate::cpu::{CpuConfig, CpuState};
use crate::memory::MemorySnapshot;
use rand_chacha::ChaCha20Rng;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

/// A copy of a whole guest at one instruction boundary: the engine's state (registers of the running thread,
/// memory, counters), each part's kernel state (process, thread) and the kernel's own (file system, clock,
/// counters, termination).
pub struct LinuxSnapshot {
    regs: CpuState,
    icount: u64,
    cpu_config: CpuConfig,
    rdrand: ChaCha20Rng,
    memory: MemorySnapshot,
    /// Pages mapped when the snapshot was taken (its page table's size).
    mapped_page_count: usize,
    process: Process,
    thread: Thread,
    vfs: Vfs,
    slept_ns: u64,
    termination: Option<Termination>,
    stats: Stats,
    /// Bytes held in overlay files and pipe buffers (copied whole).
    file_bytes: usize,
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
        self.mapped_page_count * 48 + self.file_bytes
    }
}

/// Deep copies of `Rc`-shared kernel objects, keyed by the address of the original so that sharing is kept.
#[derive(Default)]
struct CloneMap {
    files: BTreeMap<usize, SharedFile>,
    pipes: BTreeMap<usize, Rc<RefCell<Pipe>>>,
    descriptions: BTreeMap<usize, Rc<RefCell<OpenFile>>>,
    bytes: usize,
}

impl CloneMap {
    fn file(&mut self, f: &SharedFile) -> SharedFile {
        let key = Rc::as_ptr(f) as usize;
        if let Some(c) = self.files.get(&key) {
            return c.clone();
        }
        let data = f.borrow();
        // The contents are shared copy-on-write: no bytes are copied here.
        let c = Rc::new(RefCell::new(FileData {
            bytes: data.bytes.clone(),
            attrs: data.attrs,
            nlink: data.nlink,
            host: data.host,
        }));
        self.files.insert(key, c.clone());
        c
    }

    fn pipe(&mut self, p: &Rc<RefCell<Pipe>>) -> Rc<RefCell<Pipe>> {
        let key = Rc::as_ptr(p) as usize;
        if let Some(c) = self.pipes.get(&key) {
            return c.clone();
        }
        let pipe = p.borrow();
        self.bytes += pipe.buf.len();
        // The counts are copied as they are: every description that holds an end is copied too (below, without
        // going through `OpenFile::new`, which would count it again), and dropping a copy decrements the copy.
        let c = Rc::new(RefCell::new(Pipe {
            buf: pipe.buf.clone(),
            readers: pipe.readers,
            writers: pipe.writers,
        }));
        self.pipes.insert(key, c.clone());
        c
    }

    fn description(&mut self, d: &Rc<RefCell<OpenFile>>) -> Rc<RefCell<OpenFile>> {
        let key = Rc::as_ptr(d) as usize;
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
        };
        let c = Rc::new(RefCell::new(OpenFile {
            kind,
            offset: open.offset,
            flags: open.flags,
        }));
        self.descriptions.insert(key, c.clone());
        c
    }

    fn fd_table(&mut self, t: &FdTable) -> FdTable {
        let mut out = FdTable::default();
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
            shared_maps: self.shared_maps(&p.shared_maps),
        }
    }
}

impl<H: Host> LinuxMachine<H> {
    /// Takes a snapshot of the whole guest (not of the host).
    pub fn snapshot(&mut self) -> LinuxSnapshot {
        let mut map = CloneMap::default();
        // Files first through the overlay, then descriptors, so that both see the same copies.
        let vfs = map.vfs(&self.vfs);
        let process = map.process(&self.proc);
        let cpu = &mut self.machine.cpu;
        LinuxSnapshot {
            regs: cpu.regs.clone(),
            icount: cpu.icount,
            cpu_config: cpu.config.clone(),
            rdrand: cpu.rdrand.clone(),
            mapped_page_count: cpu.mem.mapped_page_count(),
            memory: cpu.mem.snapshot(),
            process,
            thread: self.thread.clone(),
            vfs,
            slept_ns: self.slept_ns,
            termination: self.termination.clone(),
            stats: self.stats.clone(),
            file_bytes: map.bytes,
        }
    }

    /// Puts the guest back exactly as it was when `snap` was taken (the host is left alone).
    pub fn restore(&mut self, snap: &LinuxSnapshot) {
        let mut map = CloneMap::default();
        self.vfs = map.vfs(&snap.vfs);
        self.proc = map.process(&snap.process);
        self.thread = snap.thread.clone();
        let cpu = &mut self.machine.cpu;
        cpu.regs = snap.regs.clone();
        cpu.icount = snap.icount;
        cpu.config = snap.cpu_config.clone();
        cpu.rdrand = snap.rdrand.clone();
        cpu.mem.restore(&snap.memory);
        // Memory was replaced wholesale: no cached block may survive.
        self.machine.flush_code_cache();
        self.slept_ns = snap.slept_ns;
        self.termination = snap.termination.clone();
        self.stats = snap.stats.clone();
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
        let hash_at = m.state_hash();
        let stdout_at = m.host.stdout.len();
        for _ in 0..2 {
            m.host.stdout.truncate(stdout_at);
            m.restore(&snap);
            assert_eq!(m.icount(), at);
            assert_eq!(m.state_hash(), hash_at, "{name}: restore changed the state");
            assert_eq!(m.run(u64::MAX), Progress::Finished);
            assert_eq!(
                (m.icount(), m.state_hash(), m.exit_status()),
                expected,
                "{name}: the run from the snapshot differs"
            );
            assert_eq!(
                m.host.stdout, straight.host.stdout,
                "{name}: output differs"
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
    fn restore_replays_corpus_programs_exactly() {
        for name in ["hello-musl", "fileio-musl", "fileio-glibc", "malloc-glibc"] {
            restore_replays_exactly(name);
        }
    }
}
