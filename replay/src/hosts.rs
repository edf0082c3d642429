//! The two hosts of record and replay: `RecordingHost` wraps the live host and logs every answer it gives;
//! `ReplayHost` gives the logged answers back, in order, and checks that the guest asks the same questions.
//!
//! Invariant: a replaying host never reads a file, the clock or the host's entropy; it answers only from the
//! trace. A question the trace does not answer (a divergence) gets an error answer and is remembered as the
//! first divergence, with the icount of the syscall that asked it: the replay driver stops and reports it.

use crate::trace::{blob_id, BlobId, Event, HostCall, Meta, Record, StatMeta};
use rand::RngCore;
use rand_chacha::ChaCha20Rng;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use tandem_emulator::cpu::named_stream;
use tandem_emulator::linux::abi::{Errno, EIO};
use tandem_emulator::linux::sysnames::syscall_name;
use tandem_emulator::linux::{Host, HostKind, HostMetadata, HostStat, Timespec};
use tandem_emulator::memory::Fnv;

pub(crate) fn kind_code(k: HostKind) -> u8 {
    match k {
        HostKind::File => 0,
        HostKind::Dir => 1,
        HostKind::Symlink => 2,
        HostKind::Other => 3,
    }
}

pub(crate) fn kind_of(code: u8) -> HostKind {
    match code {
        0 => HostKind::File,
        1 => HostKind::Dir,
        2 => HostKind::Symlink,
        _ => HostKind::Other,
    }
}

/// The trace's form of a host answer with the whole of stat(2).
pub(crate) fn stat_meta(m: &HostMetadata, s: &HostStat) -> StatMeta {
    let t = |t: Timespec| (t.sec, t.nsec);
    StatMeta {
        kind: kind_code(m.kind),
        size_bytes: m.size_bytes,
        mode: m.mode,
        uid: s.uid,
        gid: s.gid,
        nlink: s.nlink,
        atime: t(s.atime),
        mtime: t(s.mtime),
        ctime: t(s.ctime),
        blocks: s.blocks,
        blksize: s.blksize,
        ino: s.ino,
        dev: s.dev,
    }
}

/// The trace's form of a metadata answer: a host that gives the whole stat(2) has it recorded; one that does not,
/// the three fields.
pub(crate) fn metadata_call(path: Vec<u8>, r: &Result<HostMetadata, Errno>) -> HostCall {
    match r {
        Ok(m) => match &m.stat {
            Some(s) => HostCall::Stat {
                path,
                result: Ok(stat_meta(m, s)),
            },
            None => HostCall::Metadata {
                path,
                result: Ok(Meta {
                    kind: kind_code(m.kind),
                    size_bytes: m.size_bytes,
                    mode: m.mode,
                }),
            },
        },
        Err(e) => HostCall::Stat {
            path,
            result: Err(e.0),
        },
    }
}

/// A recorded stat(2) answer as the host interface gives it (nanoseconds out of range are clamped: a trace is
/// data, never a reason to panic).
pub(crate) fn host_metadata(m: &StatMeta) -> HostMetadata {
    let t = |(sec, nsec): (i64, u32)| Timespec {
        sec,
        nsec: nsec.min(999_999_999),
    };
    HostMetadata {
        kind: kind_of(m.kind),
        size_bytes: m.size_bytes,
        mode: m.mode,
        stat: Some(HostStat {
            uid: m.uid,
            gid: m.gid,
            nlink: m.nlink,
            atime: t(m.atime),
            mtime: t(m.mtime),
            ctime: t(m.ctime),
            blocks: m.blocks,
            blksize: m.blksize,
            ino: m.ino,
            dev: m.dev,
        }),
    }
}

pub(crate) fn fnv(bytes: &[u8]) -> u64 {
    let mut h = Fnv::new();
    h.write_bytes(bytes);
    h.finish()
}

/// Running length and FNV-1a of an output stream (the FNV is over the concatenation of all writes).
#[derive(Clone, Copy, Default)]
pub struct OutputDigest {
    pub len: u64,
    state: Fnv,
}

impl OutputDigest {
    pub fn add(&mut self, bytes: &[u8]) {
        self.state.write_bytes(bytes);
        self.len += bytes.len() as u64;
    }
    pub fn fnv(&self) -> u64 {
        self.state.finish()
    }
}

/// Where the live clock comes from while recording with --live-clock: the guest's virtual time plus the host
/// time elapsed since the recording started, so the guest sees time pass with the real world.
pub trait LiveClock {
    fn elapsed_ns(&mut self) -> u64;
}

/// Where live entropy comes from while recording with --live-entropy.
pub type LiveEntropy = Box<dyn FnMut(&mut [u8])>;

/// Wraps the live host and logs its answers.
pub struct RecordingHost<H: Host> {
    pub inner: H,
    /// Records not yet written to the trace.
    pub pending: Vec<Record>,
    blobs_written: BTreeSet<BlobId>,
    live_clock: Option<Box<dyn LiveClock>>,
    live_entropy: Option<LiveEntropy>,
    pub stdout: OutputDigest,
    pub stderr: OutputDigest,
    /// Approximate bytes in `pending`, to bound a chunk.
    pub pending_bytes: usize,
}

impl<H: Host> RecordingHost<H> {
    pub fn new(
        inner: H,
        live_clock: Option<Box<dyn LiveClock>>,
        live_entropy: Option<LiveEntropy>,
    ) -> Self {
        RecordingHost {
            inner,
            pending: Vec::new(),
            blobs_written: BTreeSet::new(),
            live_clock,
            live_entropy,
            stdout: OutputDigest::default(),
            stderr: OutputDigest::default(),
            pending_bytes: 0,
        }
    }

    fn log(&mut self, call: HostCall) {
        self.pending_bytes += 32;
        self.pending.push(Record::Event(Event::Host(call)));
    }

    fn write(&mut self, fd: u8, bytes: &[u8]) -> Result<(), Errno> {
        let result = if fd == 1 {
            self.stdout.add(bytes);
            self.inner.write_stdout(bytes)
        } else {
            self.stderr.add(bytes);
            self.inner.write_stderr(bytes)
        };
        self.log(HostCall::Write {
            fd,
            len: bytes.len() as u64,
            fnv: fnv(bytes),
            result: result.map_err(|e| e.0),
        });
        result
    }
}

impl<H: Host> Host for RecordingHost<H> {
    fn read_stdin(&mut self, buf: &mut [u8]) -> Result<usize, Errno> {
        let r = self.inner.read_stdin(buf);
        let result = match r {
            Ok(n) => Ok(buf[..n].to_vec()),
            Err(e) => Err(e.0),
        };
        self.pending_bytes += buf.len().min(r.unwrap_or(0));
        self.log(HostCall::ReadStdin {
            requested: buf.len() as u64,
            result,
        });
        r
    }
    fn write_stdout(&mut self, bytes: &[u8]) -> Result<(), Errno> {
        self.write(1, bytes)
    }
    fn write_stderr(&mut self, bytes: &[u8]) -> Result<(), Errno> {
        self.write(2, bytes)
    }
    fn metadata(&mut self, path: &Path) -> Result<HostMetadata, Errno> {
        let r = self.inner.metadata(path);
        let path = path.as_os_str().as_bytes().to_vec();
        self.log(metadata_call(path, &r));
        r
    }
    fn read_file(&mut self, path: &Path) -> Result<Arc<Vec<u8>>, Errno> {
        let r = self.inner.read_file(path);
        let result = match &r {
            Ok(bytes) => {
                let id = blob_id(bytes);
                if self.blobs_written.insert(id) {
                    self.pending_bytes += bytes.len();
                    self.pending.push(Record::Blob {
                        id,
                        bytes: bytes.clone(),
                    });
                }
                Ok(id)
            }
            Err(e) => Err(e.0),
        };
        self.log(HostCall::ReadFile {
            path: path.as_os_str().as_bytes().to_vec(),
            result,
        });
        r
    }
    fn read_dir(&mut self, path: &Path) -> Result<Vec<Vec<u8>>, Errno> {
        // In the host's order, which the guest sees: the trace holds the list as given.
        let r = self.inner.read_dir(path);
        self.log(HostCall::ReadDir {
            path: path.as_os_str().as_bytes().to_vec(),
            result: r.clone().map_err(|e| e.0),
        });
        r
    }
    fn read_link(&mut self, path: &Path) -> Result<Vec<u8>, Errno> {
        let r = self.inner.read_link(path);
        self.log(HostCall::ReadLink {
            path: path.as_os_str().as_bytes().to_vec(),
            result: r.clone().map_err(|e| e.0),
        });
        r
    }
    fn clock_ns(&mut self, virtual_ns: u64) -> u64 {
        match &mut self.live_clock {
            None => self.inner.clock_ns(virtual_ns),
            Some(clock) => {
                let answer_ns = virtual_ns.saturating_add(clock.elapsed_ns());
                self.log(HostCall::Clock {
                    virtual_ns,
                    answer_ns,
                });
                answer_ns
            }
        }
    }
    fn fill_random(&mut self, out: &mut [u8]) {
        match &mut self.live_entropy {
            None => self.inner.fill_random(out),
            Some(fill) => {
                fill(out);
                self.pending_bytes += out.len();
                self.log(HostCall::Random {
                    bytes: out.to_vec(),
                });
            }
        }
    }
    fn syscall_entry(&mut self, icount: u64, tid: i32, number: u64) {
        self.pending_bytes += 20;
        self.pending.push(Record::Event(Event::TaskSyscallEntry {
            icount,
            tid,
            number,
        }));
    }
    fn syscall_exit(&mut self, result: u64) {
        self.pending_bytes += 8;
        self.pending
            .push(Record::Event(Event::SyscallExit { result }));
    }
    /// Past `CHUNK_SOFT_BYTES` of pending records the run pauses so that the recorder writes them out: a guest
    /// that reads stdin a megabyte per syscall would otherwise pile up everything it read until the next
    /// fine-hash stop (every 65536 instructions can be hundreds of reads).
    fn pause_requested(&self) -> bool {
        self.pending_bytes >= crate::record::CHUNK_SOFT_BYTES
    }
    fn trace(&mut self, line: &str) {
        self.inner.trace(line);
    }
}

/// Where replayed output goes. Shared by every copy of a `ReplayHost` (checkpoints copy the host), so that
/// output re-executed after a restore is not emitted twice: only output past `emitted_len` is passed on.
pub struct OutputSink {
    /// Write replayed output to the real stdout and stderr.
    pub passthrough: bool,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Keep the bytes in `stdout` and `stderr` (the debugger shows them).
    pub keep: bool,
}

/// The first place where the replay asked something the trace does not answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventMismatch {
    /// The icount of the syscall that asked (or the end of the trace's events).
    pub icount: u64,
    pub message: String,
}

/// A syscall seen during replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyscallSeen {
    pub icount: u64,
    pub number: u64,
    pub result: Option<u64>,
}

/// Answers from a trace. Cheap to clone (the events are shared): a checkpoint clones it.
#[derive(Clone)]
pub struct ReplayHost {
    events: Rc<[Event]>,
    blobs: Rc<BTreeMap<BlobId, Arc<Vec<u8>>>>,
    /// Index of the next event to consume.
    pub position: usize,
    live_clock: bool,
    entropy: Option<ChaCha20Rng>,
    pub sink: Rc<RefCell<OutputSink>>,
    /// Output bytes produced so far on this timeline (may be below what the sink has emitted after a restore).
    stdout_pos: u64,
    stderr_pos: u64,
    /// High-water marks of emitted output, shared by the copies.
    emitted: Rc<RefCell<(u64, u64)>>,
    pub stdout: OutputDigest,
    pub stderr: OutputDigest,
    pub mismatch: Option<EventMismatch>,
    current_syscall: u64,
}

impl ReplayHost {
    pub fn new(
        events: Rc<[Event]>,
        blobs: Rc<BTreeMap<BlobId, Arc<Vec<u8>>>>,
        seed: u64,
        live_clock: bool,
        live_entropy: bool,
        sink: Rc<RefCell<OutputSink>>,
    ) -> Self {
        ReplayHost {
            events,
            blobs,
            position: 0,
            live_clock,
            entropy: (!live_entropy).then(|| named_stream(seed, "linux.getrandom")),
            sink,
            stdout_pos: 0,
            stderr_pos: 0,
            emitted: Rc::new(RefCell::new((0, 0))),
            stdout: OutputDigest::default(),
            stderr: OutputDigest::default(),
            mismatch: None,
            current_syscall: 0,
        }
    }

    fn diverge(&mut self, message: String) {
        if self.mismatch.is_none() {
            self.mismatch = Some(EventMismatch {
                icount: self.current_syscall,
                message,
            });
        }
    }

    /// The next event if it is a host answer; otherwise a divergence.
    fn next_host_call(&mut self, asked: &str) -> Option<HostCall> {
        if self.mismatch.is_some() {
            return None;
        }
        match self.events.get(self.position) {
            Some(Event::Host(call)) => {
                self.position += 1;
                Some(call.clone())
            }
            Some(other) => {
                self.diverge(format!(
                    "the guest asked the host for {asked}; the trace has {other:?} next"
                ));
                None
            }
            None => {
                self.diverge(format!(
                    "the guest asked the host for {asked} after the last event of the trace"
                ));
                None
            }
        }
    }

    fn write(&mut self, fd: u8, bytes: &[u8]) -> Result<(), Errno> {
        let asked = format!("a write of {} bytes to fd {fd}", bytes.len());
        let Some(call) = self.next_host_call(&asked) else {
            return Err(EIO);
        };
        match call {
            HostCall::Write {
                fd: f,
                len,
                fnv: h,
                result,
            } if f == fd && len == bytes.len() as u64 && h == fnv(bytes) => {
                let (pos, digest) = if fd == 1 {
                    (&mut self.stdout_pos, &mut self.stdout)
                } else {
                    (&mut self.stderr_pos, &mut self.stderr)
                };
                digest.add(bytes);
                let start = *pos;
                *pos += bytes.len() as u64;
                let end = *pos;
                let mut marks = self.emitted.borrow_mut();
                let mark = if fd == 1 { &mut marks.0 } else { &mut marks.1 };
                if end > *mark {
                    // Only the part never emitted before (a restore re-executes output already shown).
                    let skip = (*mark).saturating_sub(start) as usize;
                    let fresh = &bytes[skip.min(bytes.len())..];
                    *mark = end;
                    let mut sink = self.sink.borrow_mut();
                    if sink.passthrough {
                        use std::io::Write;
                        if fd == 1 {
                            let _ = std::io::stdout().write_all(fresh);
                        } else {
                            let _ = std::io::stdout().flush();
                            let _ = std::io::stderr().write_all(fresh);
                        }
                    }
                    if sink.keep {
                        if fd == 1 {
                            sink.stdout.extend_from_slice(fresh);
                        } else {
                            sink.stderr.extend_from_slice(fresh);
                        }
                    }
                }
                result.map_err(Errno)
            }
            other => {
                let text = String::from_utf8_lossy(&bytes[..bytes.len().min(40)]).into_owned();
                self.diverge(format!(
                    "the guest wrote {} bytes to fd {fd} ({text:?}...); the trace has {other:?}",
                    bytes.len()
                ));
                Err(EIO)
            }
        }
    }

    /// The syscall the replay is in or was last in.
    pub fn current_syscall_icount(&self) -> u64 {
        self.current_syscall
    }
}

impl Host for ReplayHost {
    fn read_stdin(&mut self, buf: &mut [u8]) -> Result<usize, Errno> {
        let asked = format!("a read of up to {} bytes of stdin", buf.len());
        match self.next_host_call(&asked) {
            Some(HostCall::ReadStdin { requested, result }) if requested == buf.len() as u64 => {
                match result {
                    Ok(bytes) if bytes.len() <= buf.len() => {
                        buf[..bytes.len()].copy_from_slice(&bytes);
                        Ok(bytes.len())
                    }
                    Ok(bytes) => {
                        self.diverge(format!(
                            "the trace answers a read of {} bytes with {}",
                            buf.len(),
                            bytes.len()
                        ));
                        Err(EIO)
                    }
                    Err(e) => Err(Errno(e)),
                }
            }
            Some(other) => {
                self.diverge(format!(
                    "the guest asked for {asked}; the trace has {other:?}"
                ));
                Err(EIO)
            }
            None => Err(EIO),
        }
    }
    fn write_stdout(&mut self, bytes: &[u8]) -> Result<(), Errno> {
        self.write(1, bytes)
    }
    fn write_stderr(&mut self, bytes: &[u8]) -> Result<(), Errno> {
        self.write(2, bytes)
    }
    fn metadata(&mut self, path: &Path) -> Result<HostMetadata, Errno> {
        let p = path.as_os_str().as_bytes();
        let asked = format!("the metadata of {}", path.display());
        match self.next_host_call(&asked) {
            // Traces recorded before stat(2) was an input: the guest sees the fixed values of those tandems.
            Some(HostCall::Metadata { path, result }) if path == p => result
                .map(|m| HostMetadata {
                    kind: kind_of(m.kind),
                    size_bytes: m.size_bytes,
                    mode: m.mode,
                    stat: None,
                })
                .map_err(Errno),
            Some(HostCall::Stat { path, result }) if path == p => {
                result.map(|m| host_metadata(&m)).map_err(Errno)
            }
            Some(other) => {
                self.diverge(format!(
                    "the guest asked for {asked}; the trace has {other:?}"
                ));
                Err(EIO)
            }
            None => Err(EIO),
        }
    }
    fn read_file(&mut self, path: &Path) -> Result<Arc<Vec<u8>>, Errno> {
        let p = path.as_os_str().as_bytes();
        let asked = format!("the contents of {}", path.display());
        match self.next_host_call(&asked) {
            Some(HostCall::ReadFile { path, result }) if path == p => match result {
                Ok(id) => match self.blobs.get(&id) {
                    Some(bytes) => Ok(bytes.clone()),
                    None => {
                        self.diverge(format!(
                            "the trace names embedded file {} for {}, but does not hold it",
                            crate::trace::blob_name(&id),
                            String::from_utf8_lossy(&path)
                        ));
                        Err(EIO)
                    }
                },
                Err(e) => Err(Errno(e)),
            },
            Some(other) => {
                self.diverge(format!(
                    "the guest asked for {asked}; the trace has {other:?}"
                ));
                Err(EIO)
            }
            None => Err(EIO),
        }
    }
    fn read_dir(&mut self, path: &Path) -> Result<Vec<Vec<u8>>, Errno> {
        let p = path.as_os_str().as_bytes();
        let asked = format!("the entries of {}", path.display());
        match self.next_host_call(&asked) {
            Some(HostCall::ReadDir { path, result }) if path == p => result.map_err(Errno),
            Some(other) => {
                self.diverge(format!(
                    "the guest asked for {asked}; the trace has {other:?}"
                ));
                Err(EIO)
            }
            None => Err(EIO),
        }
    }
    fn read_link(&mut self, path: &Path) -> Result<Vec<u8>, Errno> {
        let p = path.as_os_str().as_bytes();
        let asked = format!("the target of link {}", path.display());
        match self.next_host_call(&asked) {
            Some(HostCall::ReadLink { path, result }) if path == p => result.map_err(Errno),
            Some(other) => {
                self.diverge(format!(
                    "the guest asked for {asked}; the trace has {other:?}"
                ));
                Err(EIO)
            }
            None => Err(EIO),
        }
    }
    fn clock_ns(&mut self, virtual_ns: u64) -> u64 {
        if !self.live_clock {
            return virtual_ns;
        }
        match self.next_host_call("the clock") {
            Some(HostCall::Clock {
                virtual_ns: v,
                answer_ns,
            }) if v == virtual_ns => answer_ns,
            Some(other) => {
                self.diverge(format!(
                    "the guest read the clock at virtual time {virtual_ns} ns; the trace has {other:?}"
                ));
                virtual_ns
            }
            None => virtual_ns,
        }
    }
    fn fill_random(&mut self, out: &mut [u8]) {
        if let Some(rng) = &mut self.entropy {
            rng.fill_bytes(out);
            return;
        }
        match self.next_host_call("entropy") {
            Some(HostCall::Random { bytes }) if bytes.len() == out.len() => {
                out.copy_from_slice(&bytes)
            }
            Some(other) => {
                self.diverge(format!(
                    "the guest asked for {} bytes of entropy; the trace has {other:?}",
                    out.len()
                ));
                out.fill(0);
            }
            None => out.fill(0),
        }
    }
    fn syscall_entry(&mut self, icount: u64, tid: i32, number: u64) {
        self.current_syscall = icount;
        if self.mismatch.is_some() {
            return;
        }
        match self.events.get(self.position) {
            Some(Event::SyscallEntry {
                icount: i,
                number: n,
            }) if *i == icount && *n == number => self.position += 1,
            Some(Event::TaskSyscallEntry {
                icount: i,
                tid: t,
                number: n,
            }) if *i == icount && *n == number && *t == tid => self.position += 1,
            Some(Event::TaskSyscallEntry {
                icount: i,
                tid: t,
                number: n,
            }) => self.diverge(format!(
                "task {tid} made syscall {} ({number}); the trace has task {t} making syscall {} ({n}) at \
                 icount {i}",
                syscall_name(number),
                syscall_name(*n)
            )),
            Some(Event::SyscallEntry {
                icount: i,
                number: n,
            }) => self.diverge(format!(
                "the guest made syscall {} ({number}); the trace has syscall {} ({n}) at icount {i}",
                syscall_name(number),
                syscall_name(*n)
            )),
            Some(other) => self.diverge(format!(
                "the guest made syscall {} ({number}); the trace has {other:?} next",
                syscall_name(number)
            )),
            None => self.diverge(format!(
                "the guest made syscall {} ({number}) after the last event of the trace",
                syscall_name(number)
            )),
        }
    }
    fn syscall_exit(&mut self, result: u64) {
        if self.mismatch.is_some() {
            return;
        }
        match self.events.get(self.position) {
            Some(Event::SyscallExit { result: r }) if *r == result => self.position += 1,
            Some(Event::SyscallExit { result: r }) => self.diverge(format!(
                "the syscall returned {:#x} ({}); the trace has {:#x} ({})",
                result, result as i64, r, *r as i64
            )),
            Some(other) => self.diverge(format!(
                "the syscall returned; the trace has {other:?} next (an answer the guest did not ask for)"
            )),
            None => self.diverge("the syscall returned after the last event of the trace".into()),
        }
    }
}
