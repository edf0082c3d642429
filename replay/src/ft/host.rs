//! The hosts of a fault-tolerant world: one `FtHost` per replica over one shared input log, and the live
//! source behind the log.
//!
//! The leader (the primary) asks the live source whenever its position reaches the end of the log and appends
//! the question and its answer to the log, as `RecordingHost` does in a recording (the log holds the trace's own
//! `Event`s: a pair's log is a recording). Every other replica answers from the log at its own position and
//! checks that it asks the same questions at the same instruction counts; a replica that asks something else
//! has diverged: it is answered with errors and asks to pause, and the world compares and arbitrates.
//!
//! Output is never passed on here: each replica holds its stdout and stderr writes and its file changes
//! (`Host::file_output`) for the epoch (`held`), and the world releases only what the replicas agree on. Writes
//! are answered Ok, so a replica's run never depends on the state of the real stdout. File changes are not
//! inputs: they are held without a log entry (the guest's file system already has them).
//!
//! Invariant: everything a replica's future depends on besides its guest is in its `Cursor` (log position, stdin
//! offset, entropy stream), which the world checkpoints and restores with the guest. The live source is
//! position-addressed (stdin by offset, files by path), so an epoch re-executed from a checkpoint as leader gets
//! the answers the first execution got, even when that execution was faulty and took them first.

use super::workers::{pause, SPIN_POLLS};
use crate::hosts::{fnv, host_metadata, kind_of};
use crate::trace::{blob_id, BlobId, Event, HostCall};
use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use tandem_emulator::linux::abi::{Errno, EIO};
use tandem_emulator::linux::{FileOutput, Host, HostMetadata, SeededEntropy};

/// Longest text of a logged event quoted in a divergence message.
const QUOTE_CHARS_MAX: usize = 160;

/// Largest stdin read the live source makes at once (a guest asking for more gets a short read, as from a pipe).
const STDIN_READ_BYTES_MAX: usize = 1 << 20;

/// The live host behind the log: real stdin, mounted files and the real stdout and stderr (where released output
/// goes). Stdin is kept from the start so that any reader at any offset gets the same bytes.
#[derive(Clone)]
pub struct LiveSource<L: Host> {
    pub inner: L,
    stdin: Vec<u8>,
    stdin_eof: bool,
}

impl<L: Host> LiveSource<L> {
    pub fn new(inner: L) -> LiveSource<L> {
        LiveSource {
            inner,
            stdin: Vec::new(),
            stdin_eof: false,
        }
    }

    /// Up to `len` bytes of stdin from `offset`: what is kept, or one read of the live stdin when the reader is
    /// past it (an empty answer is end of file).
    fn read_stdin_at(&mut self, offset: u64, len: usize) -> Result<Vec<u8>, Errno> {
        let offset = offset as usize;
        assert!(
            offset <= self.stdin.len(),
            "a reader past the stdin read so far"
        );
        if offset == self.stdin.len() && !self.stdin_eof && len > 0 {
            let mut buf = vec![0; len.min(STDIN_READ_BYTES_MAX)];
            let n = self.inner.read_stdin(&mut buf)?;
            if n == 0 {
                self.stdin_eof = true;
            }
            self.stdin.extend_from_slice(&buf[..n]);
        }
        let end = self.stdin.len().min(offset + len);
        Ok(self.stdin[offset..end].to_vec())
    }
}

/// The input log the leader writes and the other replicas read: events at absolute positions from `base` on
/// (a re-execution writes a log of its own that starts where the epoch started), and the files read, by content.
#[derive(Clone, Default)]
pub struct Log {
    base: usize,
    events: Vec<Event>,
    blobs: BTreeMap<BlobId, Arc<Vec<u8>>>,
    /// The leader is still running its epoch on another thread: a follower at the end of the log waits for it
    /// instead of diverging. Either way a follower gets the answers the finished log holds, so its run does not
    /// depend on how the threads were interleaved.
    open: bool,
    /// Followers read no event at or past this position: the end of the primary's epoch that they run while
    /// the primary runs on into the next (ahead.rs). None: no limit.
    follow_limit: Option<usize>,
}

/// A log shared between the replicas' threads, with a signal for the followers waiting at its end.
pub struct SharedLog {
    log: Mutex<Log>,
    grown: Condvar,
    /// Followers blocked on `grown` (changed and read under `log`'s lock): the leader signals only when
    /// there are some, since a signal is a system call.
    waiting: AtomicUsize,
}

impl SharedLog {
    pub fn new(log: Log) -> Arc<SharedLog> {
        Arc::new(SharedLog {
            log: Mutex::new(log),
            grown: Condvar::new(),
            waiting: AtomicUsize::new(0),
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, Log> {
        self.log
            .lock()
            .expect("no replica panicked holding the log")
    }

    /// Opens the log for an epoch whose followers run beside the leader, or closes it (the leader finished:
    /// waiting followers find out that the log holds no more).
    pub fn set_open(&self, open: bool) {
        let mut log = self.lock();
        log.open = open;
        log.follow_limit = None;
        drop(log);
        self.grown.notify_all();
    }

    /// Closes the log for the followers at `position`, the end of the primary's epoch that they run: they
    /// read nothing at or past it, while the primary goes on appending its next epoch's events (ahead.rs).
    pub(super) fn seal(&self, position: usize) {
        let mut log = self.lock();
        assert!(position <= log.end(), "a seal past the log's end");
        log.open = false;
        log.follow_limit = Some(position);
        drop(log);
        self.grown.notify_all();
    }

    /// The event at `position`, waiting for the leader while the log is open and ends there (a leader never
    /// waits: it is the one that extends the log).
    fn event_at(&self, position: usize, leader: bool) -> Option<Event> {
        let mut log = self.lock();
        let mut polls = 0;
        loop {
            if !leader && log.follow_limit.is_some_and(|limit| position >= limit) {
                return None;
            }
            if let Some(e) = log.get(position) {
                return Some(e.clone());
            }
            if leader || !log.open {
                return None;
            }
            // The leader is usually a few microseconds from its next event: poll for it a while before
            // blocking (see `workers::SPIN_POLLS`).
            if polls < SPIN_POLLS {
                drop(log);
                pause(polls);
                polls += 1;
                log = self.lock();
                continue;
            }
            self.waiting.fetch_add(1, Ordering::Relaxed);
            log = self
                .grown
                .wait(log)
                .expect("no replica panicked holding the log");
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// After the leader appended to `log`: wakes the followers blocked at its end, if any.
    fn appended(&self, log: MutexGuard<'_, Log>) {
        let blocked = self.waiting.load(Ordering::Relaxed) > 0;
        drop(log);
        if blocked {
            self.grown.notify_all();
        }
    }
}

/// The live source as the replicas' threads share it (only the leader asks it).
pub type SharedLive<L> = Arc<Mutex<LiveSource<L>>>;

impl Log {
    /// A log whose first event will be at position `base` (the positions before it are someone else's).
    pub fn starting_at(base: usize, blobs: BTreeMap<BlobId, Arc<Vec<u8>>>) -> Log {
        Log {
            base,
            events: Vec::new(),
            blobs,
            open: false,
            follow_limit: None,
        }
    }

    /// The position after the last event.
    pub fn end(&self) -> usize {
        self.base + self.events.len()
    }

    fn get(&self, position: usize) -> Option<&Event> {
        position
            .checked_sub(self.base)
            .and_then(|i| self.events.get(i))
    }

    /// Drops the events from `position` on (what a replica found wrong wrote).
    pub fn truncate(&mut self, position: usize) {
        assert!(position >= self.base, "truncating before the log's base");
        self.events.truncate(position - self.base);
    }

    /// Appends what another log holds from this log's end on.
    pub fn append_from(&mut self, other: &Log) {
        assert_eq!(
            other.base,
            self.end(),
            "a log appended where it does not start"
        );
        self.events.extend(other.events.iter().cloned());
        for (id, bytes) in &other.blobs {
            self.blobs.entry(*id).or_insert_with(|| bytes.clone());
        }
    }

    pub fn blobs(&self) -> &BTreeMap<BlobId, Arc<Vec<u8>>> {
        &self.blobs
    }

    pub fn events(&self) -> &[Event] {
        &self.events
    }
}

/// Where a held write goes when it is released.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputTarget {
    Stdout,
    Stderr,
    /// The bytes at `offset` of the guest file `path` (the guest path it was opened as).
    FileWrite {
        path: Vec<u8>,
        offset: u64,
    },
    /// The guest file `path` cut (or extended with zeros) to `len` bytes; no bytes.
    FileTruncate {
        path: Vec<u8>,
        len: u64,
    },
}

impl OutputTarget {
    pub fn is_file(&self) -> bool {
        matches!(
            self,
            OutputTarget::FileWrite { .. } | OutputTarget::FileTruncate { .. }
        )
    }

    /// The change as the `Host` interface passes it on.
    pub fn file_output<'a>(&'a self, bytes: &'a [u8]) -> Option<(&'a [u8], FileOutput<'a>)> {
        match self {
            OutputTarget::FileWrite { path, offset } => Some((
                path,
                FileOutput::Write {
                    offset: *offset,
                    bytes,
                },
            )),
            OutputTarget::FileTruncate { path, len } => {
                Some((path, FileOutput::Truncate { len: *len }))
            }
            OutputTarget::Stdout | OutputTarget::Stderr => None,
        }
    }
}

/// Output a replica produced during the current epoch, held until the world releases it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldWrite {
    pub target: OutputTarget,
    pub bytes: Vec<u8>,
    /// The icount of the syscall that produced it.
    pub icount: u64,
}

/// What a replica's future depends on besides its guest: saved and restored with the guest's snapshot.
#[derive(Clone)]
pub struct Cursor {
    /// The position of the next log event to take.
    pub position: usize,
    /// Bytes of stdin consumed.
    pub stdin_offset: u64,
    entropy: SeededEntropy,
    /// The first question the log did not answer (the replica stops soon after).
    pub diverged: Option<String>,
    current_syscall: u64,
}

impl Cursor {
    pub fn new(seed: u64) -> Cursor {
        Cursor {
            position: 0,
            stdin_offset: 0,
            entropy: SeededEntropy::new(seed),
            diverged: None,
            current_syscall: 0,
        }
    }
}

/// The host of one replica (or of a re-execution).
pub struct FtHost<L: Host> {
    log: Arc<SharedLog>,
    live: SharedLive<L>,
    /// May extend the log from the live source (the primary, or a re-execution).
    pub leader: bool,
    pub cursor: Cursor,
    /// The epoch's output (stdout and stderr writes, file changes), in order.
    pub held: Vec<HeldWrite>,
    /// Answers inputs only: the syscall events of the log are passed over, not checked (for a host in front of
    /// which another host logs the syscalls itself: the recorder of a pair, record.rs).
    pub inputs_only: bool,
    /// Pauses the guest after the syscall that made this many outputs in the epoch (`FtConfig::epoch_outputs`).
    pub epoch_outputs: Option<usize>,
}

impl<L: Host> FtHost<L> {
    pub fn new(
        log: Arc<SharedLog>,
        live: SharedLive<L>,
        leader: bool,
        cursor: Cursor,
    ) -> FtHost<L> {
        FtHost {
            log,
            live,
            leader,
            cursor,
            held: Vec::new(),
            inputs_only: false,
            epoch_outputs: None,
        }
    }

    /// The epoch made as many outputs as end it (`epoch_outputs`).
    pub fn epoch_output_reached(&self) -> bool {
        self.epoch_outputs.is_some_and(|n| self.held.len() >= n)
    }

    pub fn log(&self) -> &Arc<SharedLog> {
        &self.log
    }

    /// Replaces the log this host reads and writes (a re-execution gets one of its own).
    pub fn set_log(&mut self, log: Arc<SharedLog>) {
        self.log = log;
    }

    fn diverge(&mut self, message: String) {
        if self.cursor.diverged.is_none() {
            self.cursor.diverged = Some(format!(
                "at icount {}: {message}",
                self.cursor.current_syscall
            ));
        }
    }

    /// One exchange with the outside: the answer from the log at this replica's position (`from_log` accepts
    /// the logged event or not), or, for the leader at the end of the log, from the live source (`live` gives
    /// the answer and the event to log). `failed` answers a replica that has diverged.
    fn exchange<T>(
        &mut self,
        asked: &dyn Fn() -> String,
        from_log: impl FnOnce(&Event, &Log, &mut Cursor) -> Option<T>,
        live: impl FnOnce(&mut LiveSource<L>, &mut Log, &mut Cursor) -> (T, Event),
        failed: T,
    ) -> T {
        if self.cursor.diverged.is_some() {
            return failed;
        }
        if self.inputs_only {
            self.pass_syscall_events();
        }
        let position = self.cursor.position;
        let logged = self.log.event_at(position, self.leader);
        match logged {
            Some(event) => {
                let answer = from_log(&event, &self.log.lock(), &mut self.cursor);
                match answer {
                    Some(t) => {
                        self.cursor.position += 1;
                        t
                    }
                    None => {
                        let mut text = format!("{event:?}");
                        text.truncate(QUOTE_CHARS_MAX);
                        self.diverge(format!(
                            "the guest asked for {}; the log has {text}",
                            asked()
                        ));
                        failed
                    }
                }
            }
            None if self.leader => {
                let mut log = self.log.lock();
                assert_eq!(log.end(), position, "the leader is behind the log's end");
                let mut live_source = self.live.lock().expect("no replica panicked holding it");
                let (t, event) = live(&mut live_source, &mut log, &mut self.cursor);
                log.events.push(event);
                self.log.appended(log);
                self.cursor.position += 1;
                t
            }
            None => {
                self.diverge(format!(
                    "the guest asked for {} past the end of the primary's log",
                    asked()
                ));
                failed
            }
        }
    }

    /// Moves the cursor past the syscall events at its position (`inputs_only`).
    fn pass_syscall_events(&mut self) {
        let log = self.log.lock();
        while let Some(Event::TaskSyscallEntry { .. } | Event::SyscallExit { .. }) =
            log.get(self.cursor.position)
        {
            self.cursor.position += 1;
        }
    }

    fn write(&mut self, fd: u8, bytes: &[u8]) -> Result<(), Errno> {
        let icount = self.cursor.current_syscall;
        // Followers take any write to the same descriptor: what was written is compared at the output boundary,
        // so that a wrong primary's bytes do not stop the replicas that vote against it.
        self.exchange(
            &|| format!("a write of {} bytes to fd {fd}", bytes.len()),
            |e, _, _| {
                matches!(e, Event::Host(HostCall::Write { fd: f, .. }) if *f == fd).then_some(())
            },
            |_, _, _| {
                let event = Event::Host(HostCall::Write {
                    fd,
                    len: bytes.len() as u64,
                    fnv: fnv(bytes),
                    result: Ok(()),
                });
                ((), event)
            },
            (),
        );
        if self.cursor.diverged.is_some() {
            return Err(EIO);
        }
        let target = if fd == 1 {
            OutputTarget::Stdout
        } else {
            OutputTarget::Stderr
        };
        self.held.push(HeldWrite {
            target,
            bytes: bytes.to_vec(),
            icount,
        });
        Ok(())
    }
}

fn path_bytes(path: &Path) -> Vec<u8> {
    path.as_os_str().as_bytes().to_vec()
}

impl<L: Host> Host for FtHost<L> {
    fn read_stdin(&mut self, buf: &mut [u8]) -> Result<usize, Errno> {
        let requested = buf.len() as u64;
        let result = self.exchange(
            &|| format!("a read of up to {requested} bytes of stdin"),
            |e, _, _| match e {
                Event::Host(HostCall::ReadStdin {
                    requested: r,
                    result,
                }) if *r == requested => match result {
                    Ok(bytes) if bytes.len() as u64 <= requested => Some(Ok(bytes.clone())),
                    Ok(_) => None,
                    Err(e) => Some(Err(Errno(*e))),
                },
                _ => None,
            },
            |live, _, cursor| {
                let r = live.read_stdin_at(cursor.stdin_offset, buf.len());
                let event = Event::Host(HostCall::ReadStdin {
                    requested,
                    result: r.clone().map_err(|e| e.0),
                });
                (r, event)
            },
            Err(EIO),
        );
        let bytes = result?;
        buf[..bytes.len()].copy_from_slice(&bytes);
        self.cursor.stdin_offset += bytes.len() as u64;
        Ok(bytes.len())
    }
    fn write_stdout(&mut self, bytes: &[u8]) -> Result<(), Errno> {
        self.write(1, bytes)
    }
    fn write_stderr(&mut self, bytes: &[u8]) -> Result<(), Errno> {
        self.write(2, bytes)
    }
    fn metadata(&mut self, path: &Path) -> Result<HostMetadata, Errno> {
        let p = path_bytes(path);
        self.exchange(
            &|| format!("the metadata of {}", path.display()),
            |e, _, _| match e {
                Event::Host(HostCall::Stat { path, result }) if *path == p => {
                    Some(result.as_ref().map(host_metadata).map_err(|e| Errno(*e)))
                }
                Event::Host(HostCall::Metadata { path, result }) if *path == p => Some(
                    result
                        .as_ref()
                        .map(|m| HostMetadata {
                            kind: kind_of(m.kind),
                            size_bytes: m.size_bytes,
                            mode: m.mode,
                            stat: None,
                        })
                        .map_err(|e| Errno(*e)),
                ),
                _ => None,
            },
            |live, _, _| {
                let r = live.inner.metadata(path);
                let path = p.clone();
                let event = crate::hosts::metadata_call(path, &r);
                (r, Event::Host(event))
            },
            Err(EIO),
        )
    }
    fn read_file(&mut self, path: &Path) -> Result<Arc<Vec<u8>>, Errno> {
        let p = path_bytes(path);
        self.exchange(
            &|| format!("the contents of {}", path.display()),
            |e, log, _| match e {
                Event::Host(HostCall::ReadFile { path, result }) if *path == p => match result {
                    Ok(id) => log.blobs.get(id).map(|b| Ok(b.clone())),
                    Err(e) => Some(Err(Errno(*e))),
                },
                _ => None,
            },
            |live, log, _| {
                let r = live.inner.read_file(path);
                let result = match &r {
                    Ok(bytes) => {
                        let id = blob_id(bytes);
                        log.blobs.entry(id).or_insert_with(|| bytes.clone());
                        Ok(id)
                    }
                    Err(e) => Err(e.0),
                };
                (
                    r,
                    Event::Host(HostCall::ReadFile {
                        path: p.clone(),
                        result,
                    }),
                )
            },
            Err(EIO),
        )
    }
    fn read_dir(&mut self, path: &Path) -> Result<Vec<Vec<u8>>, Errno> {
        let p = path_bytes(path);
        self.exchange(
            &|| format!("the entries of {}", path.display()),
            |e, _, _| match e {
                Event::Host(HostCall::ReadDir { path, result }) if *path == p => {
                    Some(result.clone().map_err(Errno))
                }
                _ => None,
            },
            |live, _, _| {
                // In the host's order, which the guest sees (as a recording holds it).
                let r = live.inner.read_dir(path);
                let event = HostCall::ReadDir {
                    path: p.clone(),
                    result: r.clone().map_err(|e| e.0),
                };
                (r, Event::Host(event))
            },
            Err(EIO),
        )
    }
    fn read_link(&mut self, path: &Path) -> Result<Vec<u8>, Errno> {
        let p = path_bytes(path);
        self.exchange(
            &|| format!("the target of link {}", path.display()),
            |e, _, _| match e {
                Event::Host(HostCall::ReadLink { path, result }) if *path == p => {
                    Some(result.clone().map_err(Errno))
                }
                _ => None,
            },
            |live, _, _| {
                let r = live.inner.read_link(path);
                let event = HostCall::ReadLink {
                    path: p.clone(),
                    result: r.clone().map_err(|e| e.0),
                };
                (r, Event::Host(event))
            },
            Err(EIO),
        )
    }
    fn fill_random(&mut self, out: &mut [u8]) {
        self.cursor.entropy.fill(out);
    }
    fn syscall_entry(&mut self, icount: u64, tid: i32, number: u64) {
        self.cursor.current_syscall = icount;
        if self.inputs_only {
            return;
        }
        let expected = Event::TaskSyscallEntry {
            icount,
            tid,
            number,
        };
        self.exchange(
            &|| format!("syscall {number} of task {tid} at icount {icount}"),
            |e, _, _| (*e == expected).then_some(()),
            |_, _, _| ((), expected.clone()),
            (),
        );
    }
    fn syscall_exit(&mut self, result: u64) {
        if self.inputs_only {
            return;
        }
        let expected = Event::SyscallExit { result };
        self.exchange(
            &|| format!("the syscall to return {result:#x}"),
            |e, _, _| (*e == expected).then_some(()),
            |_, _, _| ((), expected.clone()),
            (),
        );
    }
    /// A replica that diverged stops at its next syscall: what it does from then on is not compared. One
    /// whose epoch made its outputs stops too: the epoch ends there.
    fn pause_requested(&self) -> bool {
        self.cursor.diverged.is_some() || self.epoch_output_reached()
    }
    fn file_output(&mut self, path: &[u8], change: FileOutput<'_>) {
        let path = path.to_vec();
        let (target, bytes) = match change {
            FileOutput::Write { offset, bytes } => {
                (OutputTarget::FileWrite { path, offset }, bytes.to_vec())
            }
            FileOutput::Truncate { len } => (OutputTarget::FileTruncate { path, len }, Vec::new()),
        };
        self.held.push(HeldWrite {
            target,
            bytes,
            icount: self.cursor.current_syscall,
        });
    }
}
