//! The system calls of a recorded run, as `tandem diff` and `tandem baseline` compare them.
//!
//! A trace holds each syscall's number, icount, task and result, but not its arguments or the bytes it moved
//! (the replay recomputes those). So the log is made by replaying the trace (it reads nothing but the trace) and
//! stopping twice at every syscall: just before the SYSCALL retires, where the task's registers hold the
//! arguments and its memory the paths, addresses and bytes it passes in; and just after, where its memory holds
//! the bytes the kernel wrote out (read, getrandom, recvfrom, getdents64).
//!
//! Each call is rendered canonically: its name, its arguments by kind (descriptors and counts as numbers, flags in
//! hex, paths as strings, socket addresses decoded, buffers as their length) and its result (an errno by name).
//! Pointers are shown as `ptr` and addresses returned by brk and mmap as `addr`: two builds of one program place
//! their data differently, and that is not a difference of behaviour. Buffers are compared by length and FNV-1a
//! of their bytes (up to `DATA_BYTES_MAX`), with a short excerpt kept for reports.
//!
//! Limits: at most `CALLS_MAX` calls are logged (the log says when it stopped there), strings are read up to
//! `STRING_BYTES_MAX` and buffers up to `DATA_BYTES_MAX` bytes. An attempt of a blocking call that blocked is not
//! logged (its retry is): schedules differ in how many attempts they make, not in what the program asked.

use serde::{Deserialize, Serialize};
use tandem_emulator::cpu::Registers;
use tandem_emulator::linux::ids::Tid;
use tandem_emulator::linux::Progress;
use tandem_emulator::memory::{Fnv, Memory};
use tandem_replay::hosts::OutputSink;
use tandem_replay::replay::Replayer;
use tandem_replay::trace::{Event, Record, Trace};

/// Most calls logged from one run.
pub const CALLS_MAX: usize = 1_000_000;
/// Bytes of a call's buffer read and digested (the length is always the whole length).
pub const DATA_BYTES_MAX: usize = 64 << 10;
/// Bytes of a buffer kept as its excerpt.
pub const EXCERPT_BYTES: usize = 48;
/// Bytes of a path or other C string read.
pub const STRING_BYTES_MAX: usize = 4096;
/// iovec entries of one readv/writev read.
const IOV_MAX: u64 = 1024;
/// The result the guest kernel logs for an attempt that blocked (-ERESTARTSYS).
const BLOCKED_RESULT: u64 = (-512i64) as u64;

/// Which way a call's buffer went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The program passed the bytes to the kernel (write, sendto, pwrite64, writev).
    In,
    /// The kernel wrote the bytes into the program's memory (read, recvfrom, getrandom, getdents64).
    Out,
}

/// The bytes a call moved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Data {
    pub direction: Direction,
    /// The whole length.
    pub len: u64,
    /// FNV-1a of the first `DATA_BYTES_MAX` bytes.
    pub fnv: u64,
    /// The first `EXCERPT_BYTES` bytes.
    #[serde(with = "escaped")]
    pub excerpt: Vec<u8>,
}

/// One system call of a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// Instructions retired before the SYSCALL: `goto` there in `tandem debug` and the registers hold its
    /// arguments.
    pub icount: u64,
    /// The task that made it (None in traces of format 5 and older, which do not name it).
    pub tid: Option<i32>,
    pub nr: u64,
    pub name: String,
    /// The arguments, canonically (see the module doc).
    pub args: String,
    pub result: String,
    pub data: Option<Data>,
    /// The paths the call names, and whether it opens them for writing (open, openat, creat).
    pub paths: Vec<(String, bool)>,
}

impl Call {
    /// The call as one line: `name(args) = result`.
    pub fn text(&self) -> String {
        format!("{}({}) = {}", self.name, self.args, self.result)
    }

    /// Whether two calls are the same behaviour: name, arguments, result and bytes (not icount or task).
    pub fn same_as(&self, other: &Call) -> bool {
        self.nr == other.nr
            && self.args == other.args
            && self.result == other.result
            && data_key(&self.data) == data_key(&other.data)
    }

    /// A hash of what `same_as` compares, for alignment.
    pub fn key(&self) -> u64 {
        let mut h = Fnv::new();
        h.write_u64(self.nr);
        h.write_bytes(self.args.as_bytes());
        h.write_bytes(&[0]);
        h.write_bytes(self.result.as_bytes());
        if let Some((len, fnv)) = data_key(&self.data) {
            h.write_u64(len);
            h.write_u64(fnv);
        }
        h.finish()
    }

    /// What differs between two calls, in words ("the result", "the arguments and the bytes written").
    pub fn difference(&self, other: &Call) -> String {
        if self.nr != other.nr {
            return "the system call".into();
        }
        let mut parts = Vec::new();
        if self.args != other.args {
            parts.push("the arguments");
        }
        if self.result != other.result {
            parts.push("the result");
        }
        if data_key(&self.data) != data_key(&other.data) {
            parts.push(match self.data.as_ref().or(other.data.as_ref()) {
                Some(d) if d.direction == Direction::Out => "the bytes read",
                _ => "the bytes written",
            });
        }
        parts.join(" and ")
    }
}

fn data_key(d: &Option<Data>) -> Option<(u64, u64)> {
    d.as_ref().map(|d| (d.len, d.fnv))
}

/// The system calls and the outcome of one recorded run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunLog {
    pub calls: Vec<Call>,
    /// The log stopped at `CALLS_MAX` calls.
    pub truncated: bool,
    pub icount: u64,
    pub exit_status: i32,
    pub state_hash: u64,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Why a trace's calls cannot be logged.
#[derive(Debug, thiserror::Error)]
pub enum CallsError {
    #[error("{0}")]
    Trace(#[from] tandem_replay::trace::TraceError),
    #[error("the trace is damaged: {0}; only a complete recording can be compared")]
    Damaged(tandem_replay::trace::TraceError),
    #[error("the trace has no end (the recording did not finish); only a complete recording can be compared")]
    Unfinished,
    #[error("{0}")]
    Replay(#[from] tandem_replay::replay::ReplayError),
}

/// A syscall entry of the trace with its recorded result.
struct Entry {
    icount: u64,
    tid: Option<i32>,
    nr: u64,
    result: u64,
}

fn entries_of(trace: &Trace) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    for r in &trace.records {
        match r {
            Record::Event(Event::SyscallExit { result }) => {
                if let Some(last) = out.last_mut() {
                    last.result = *result;
                }
            }
            Record::Event(e) => {
                if let Some((icount, tid, nr)) = e.syscall_entry() {
                    out.push(Entry {
                        icount,
                        tid,
                        nr,
                        result: 0,
                    });
                }
            }
            _ => {}
        }
    }
    out
}

/// Replays `trace` and logs its system calls (see the module doc). A damaged or unfinished trace is an error.
pub fn log_of(trace: Trace) -> Result<RunLog, CallsError> {
    if let Some(d) = trace.damage.clone() {
        return Err(CallsError::Damaged(d));
    }
    let summary = trace.summary.clone().ok_or(CallsError::Unfinished)?;
    let entries = entries_of(&trace);
    let sink = OutputSink {
        passthrough: false,
        stdout: Vec::new(),
        stderr: Vec::new(),
        keep: true,
    };
    let mut replayer = Replayer::new(trace, sink)?;
    let mut calls = Vec::new();
    let mut truncated = false;
    for e in entries.iter().filter(|e| e.result != BLOCKED_RESULT) {
        if calls.len() == CALLS_MAX {
            truncated = true;
            break;
        }
        calls.push(capture(&mut replayer, e));
    }
    replayer.run_to_recorded_end();
    let sink = replayer.sink.borrow();
    Ok(RunLog {
        calls,
        truncated,
        icount: summary.icount,
        exit_status: summary.exit_status,
        state_hash: summary.state_hash,
        stdout: sink.stdout.clone(),
        stderr: sink.stderr.clone(),
    })
}

/// Runs the replay until `icount` instructions retired (or the guest ended).
fn run_to(replayer: &mut Replayer, icount: u64) {
    // The host may pause the run early (a pause request); a bounded number of resumptions.
    for _ in 0..1024 {
        if replayer.hv.guest.icount() >= icount
            || replayer.hv.run_to_completion(icount) == Progress::Finished
        {
            return;
        }
    }
}

/// Logs one call: stops before it retires for its arguments and after for the bytes it wrote out.
fn capture(replayer: &mut Replayer, e: &Entry) -> Call {
    run_to(replayer, e.icount.saturating_sub(1));
    let guest = &replayer.hv.guest;
    let tid = e.tid.map(Tid).unwrap_or_else(|| guest.current_tid());
    let registers = guest.thread_registers(tid);
    let (kinds, result_kind) = signature(e.nr);
    // The registers are the call's only if rax still holds its number (it does, unless the trace's task is
    // not one the replay knows).
    let args = registers
        .as_ref()
        .filter(|r| r.gpr[0] == e.nr)
        .map(syscall_args);
    let memory = guest.thread_memory(tid);
    let mut call = Call {
        icount: e.icount.saturating_sub(1),
        tid: e.tid,
        nr: e.nr,
        name: tandem_emulator::linux::sysnames::syscall_name(e.nr).to_string(),
        args: String::new(),
        result: render_result(e.result, result_kind),
        data: None,
        paths: Vec::new(),
    };
    let Some(args) = args else {
        call.args = "?".into();
        return call;
    };
    let mut shown = Vec::new();
    let mut out_buffer = None;
    for (i, kind) in kinds.iter().enumerate() {
        let value = args[i];
        shown.push(match (kind, memory) {
            (Kind::Out, _) => {
                out_buffer = Some((value, None));
                "ptr".to_string()
            }
            (Kind::OutIov(count_arg), _) => {
                out_buffer = Some((value, Some(args[*count_arg])));
                "ptr".to_string()
            }
            (Kind::In(len_arg), Some(m)) => {
                call.data = Some(read_data(m, value, args[*len_arg], Direction::In));
                format!("<{} bytes>", args[*len_arg])
            }
            (Kind::Iov(count_arg), Some(m)) => {
                let data = read_iov(m, value, args[*count_arg], u64::MAX, Direction::In);
                let text = format!("<{} bytes>", data.len);
                call.data = Some(data);
                text
            }
            (Kind::Str, Some(m)) => {
                let path = read_string(m, value);
                if let Some(p) = &path {
                    call.paths.push((p.clone(), opens_for_writing(e.nr, &args)));
                }
                path.map_or_else(|| bad_pointer(value), |p| quoted(p.as_bytes()))
            }
            (Kind::Sockaddr(len_arg), Some(m)) => render_sockaddr(m, value, args[*len_arg]),
            (kind, _) => render_scalar(*kind, value),
        });
    }
    // The mode of an open that creates nothing is not read by the kernel (whatever the register holds).
    if !creates(e.nr, &args) && matches!(e.nr, 2 | 257) {
        shown.pop();
    }
    call.args = shown.join(", ");
    run_to(replayer, e.icount);
    let written = e.result as i64;
    let memory = replayer.hv.guest.thread_memory(tid);
    if let (Some((address, iov_count)), Some(m), true) =
        (out_buffer, memory, (0..1 << 40).contains(&written))
    {
        call.data = Some(match iov_count {
            None => read_data(m, address, written as u64, Direction::Out),
            Some(count) => read_iov(m, address, count, written as u64, Direction::Out),
        });
    }
    call
}

/// rdi, rsi, rdx, r10, r8, r9: the syscall ABI's argument registers (the SDM's GPR numbers).
fn syscall_args(r: &Registers) -> [u64; 6] {
    [r.gpr[7], r.gpr[6], r.gpr[2], r.gpr[10], r.gpr[8], r.gpr[9]]
}

/// How an argument is shown and compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A descriptor or other int, signed (AT_FDCWD is -100).
    Int,
    /// A count or size.
    Num,
    /// Flags, modes, requests: hex.
    Flags,
    /// A C string (a path).
    Str,
    /// A pointer the comparison ignores.
    Ptr,
    /// Bytes passed in, their length in argument N.
    In(usize),
    /// A buffer the kernel fills; its length is the result.
    Out,
    /// An iovec array passed in, its count in argument N.
    Iov(usize),
    /// An iovec array the kernel fills, its count in argument N; the bytes filled are the result.
    OutIov(usize),
    /// A socket address, its length in argument N.
    Sockaddr(usize),
}

/// How a result is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ResultKind {
    Value,
    /// An address (brk, mmap): only success or the errno is compared.
    Address,
}

/// The arguments of the syscalls the log decodes (x86-64 numbers). Others show no arguments: their registers
/// may hold pointers, which differ between builds.
fn signature(nr: u64) -> (&'static [Kind], ResultKind) {
    use ResultKind::*;
    let kinds = argument_kinds(nr);
    let result = if matches!(nr, 9 | 12 | 25) {
        Address
    } else {
        Value
    };
    (kinds, result)
}

/// The argument kinds of syscall `nr` (the x86-64 numbers).
#[rustfmt::skip]
fn argument_kinds(nr: u64) -> &'static [Kind] {
    use Kind::*;
    match nr {
        0 => &[Int, Out, Num],                               // read
        17 => &[Int, Out, Num, Num],                         // pread64
        1 => &[Int, In(2), Num],                             // write
        18 => &[Int, In(2), Num, Num],                       // pwrite64
        2 => &[Str, Flags, Flags],                           // open
        3 | 32 | 81 | 306 | 74 | 75 => &[Int],               // close, dup, fchdir, syncfs, fsync, fdatasync
        50 => &[Int, Int],                                   // listen
        4 | 6 => &[Str, Ptr],                                // stat, lstat
        5 => &[Int, Ptr],                                    // fstat
        8 => &[Int, Int, Int],                               // lseek
        9 => &[Ptr, Num, Flags, Flags, Int, Num],            // mmap
        10 => &[Ptr, Num, Flags],                            // mprotect
        11 => &[Ptr, Num],                                   // munmap
        12 => &[Ptr],                                        // brk
        16 => &[Int, Flags, Ptr],                            // ioctl
        19 => &[Int, OutIov(2), Num],                        // readv
        20 => &[Int, Iov(2), Num],                           // writev
        21 => &[Str, Flags],                                 // access
        33 => &[Int, Int],                                   // dup2
        41 => &[Int, Flags, Int],                            // socket
        42 | 49 => &[Int, Sockaddr(2), Num],                 // connect, bind
        43 => &[Int, Ptr, Ptr],                              // accept
        44 => &[Int, In(2), Num, Flags, Sockaddr(5), Num],   // sendto
        45 => &[Int, Out, Num, Flags, Ptr, Ptr],             // recvfrom
        59 => &[Str, Ptr, Ptr],                              // execve
        60 | 231 => &[Int],                                  // exit, exit_group
        62 => &[Int, Int],                                   // kill
        72 => &[Int, Int, Flags],                            // fcntl
        77 => &[Int, Num],                                   // ftruncate
        79 => &[Out, Num],                                   // getcwd
        80 | 84 | 87 => &[Str],                              // chdir, rmdir, unlink
        82 | 86 | 88 => &[Str, Str],                         // rename, link, symlink
        83 | 90 | 85 => &[Str, Flags],                       // mkdir, chmod, creat
        89 => &[Str, Out, Num],                              // readlink
        217 => &[Int, Out, Num],                             // getdents64
        257 => &[Int, Str, Flags, Flags],                    // openat
        258 => &[Int, Str, Flags],                           // mkdirat
        262 => &[Int, Str, Ptr, Flags],                      // newfstatat
        263 => &[Int, Str, Flags],                           // unlinkat
        264 | 316 => &[Int, Str, Int, Str, Flags],           // renameat, renameat2
        269 => &[Int, Str, Flags, Flags],                    // faccessat
        318 => &[Out, Num, Flags],                           // getrandom
        332 => &[Int, Str, Flags, Flags, Ptr],               // statx
        439 => &[Int, Str, Flags, Flags],                    // faccessat2
        _ => &[],
    }
}

/// Whether an open-family call opens its path for writing: O_WRONLY, O_RDWR, O_CREAT or O_TRUNC, or creat.
fn opens_for_writing(nr: u64, args: &[u64; 6]) -> bool {
    const WRITE_FLAGS: u64 = 0o1 | 0o2 | 0o100 | 0o1000;
    match nr {
        2 => args[1] & WRITE_FLAGS != 0,
        257 => args[2] & WRITE_FLAGS != 0,
        85 => true,
        _ => false,
    }
}

/// Whether an open or openat creates a file (O_CREAT or O_TMPFILE), so that its mode argument counts.
fn creates(nr: u64, args: &[u64; 6]) -> bool {
    const CREATE_FLAGS: u64 = 0o100 | 0o20000000;
    match nr {
        2 => args[1] & CREATE_FLAGS != 0,
        257 => args[2] & CREATE_FLAGS != 0,
        _ => false,
    }
}

fn render_scalar(kind: Kind, value: u64) -> String {
    match kind {
        Kind::Int => (value as i32).to_string(),
        Kind::Num => value.to_string(),
        Kind::Flags => format!("{value:#x}"),
        _ if value == 0 => "NULL".into(),
        _ => "ptr".into(),
    }
}

fn bad_pointer(value: u64) -> String {
    if value == 0 {
        "NULL".into()
    } else {
        "<unreadable>".into()
    }
}

fn render_result(result: u64, kind: ResultKind) -> String {
    let signed = result as i64;
    if (-4095..0).contains(&signed) {
        return errno_name(-signed as i32);
    }
    match kind {
        ResultKind::Address => "addr".into(),
        ResultKind::Value => signed.to_string(),
    }
}

/// `-NAME` for the common errnos (asm-generic/errno-base.h, errno.h), `-N` for the others.
fn errno_name(errno: i32) -> String {
    const NAMES: &[(i32, &str)] = &[
        (1, "EPERM"),
        (2, "ENOENT"),
        (3, "ESRCH"),
        (4, "EINTR"),
        (5, "EIO"),
        (9, "EBADF"),
        (10, "ECHILD"),
        (11, "EAGAIN"),
        (12, "ENOMEM"),
        (13, "EACCES"),
        (14, "EFAULT"),
        (17, "EEXIST"),
        (20, "ENOTDIR"),
        (21, "EISDIR"),
        (22, "EINVAL"),
        (25, "ENOTTY"),
        (28, "ENOSPC"),
        (29, "ESPIPE"),
        (30, "EROFS"),
        (32, "EPIPE"),
        (34, "ERANGE"),
        (38, "ENOSYS"),
        (39, "ENOTEMPTY"),
        (88, "ENOTSOCK"),
        (97, "EAFNOSUPPORT"),
        (98, "EADDRINUSE"),
        (99, "EADDRNOTAVAIL"),
        (101, "ENETUNREACH"),
        (104, "ECONNRESET"),
        (107, "ENOTCONN"),
        (110, "ETIMEDOUT"),
        (111, "ECONNREFUSED"),
    ];
    match NAMES.iter().find(|(n, _)| *n == errno) {
        Some((_, name)) => format!("-{name}"),
        None => format!("-{errno}"),
    }
}

/// Reads up to `len` bytes at `address`, stopping at the first unreadable page.
fn peek_bytes(m: &Memory, address: u64, len: u64) -> Vec<u8> {
    let len = len.min(DATA_BYTES_MAX as u64) as usize;
    let mut out = vec![0u8; len];
    let mut done = 0;
    while done < len {
        // A page at a time, so that the readable part of a buffer that runs into a hole is kept.
        let at = address.wrapping_add(done as u64);
        let page_left = tandem_emulator::memory::PAGE_SIZE - (at as usize & 0xfff);
        let take = page_left.min(len - done);
        if m.peek(at, &mut out[done..done + take]).is_err() {
            break;
        }
        done += take;
    }
    out.truncate(done);
    out
}

fn data_of(bytes: &[u8], len: u64, direction: Direction) -> Data {
    let mut h = Fnv::new();
    h.write_bytes(bytes);
    Data {
        direction,
        len,
        fnv: h.finish(),
        excerpt: bytes[..bytes.len().min(EXCERPT_BYTES)].to_vec(),
    }
}

fn read_data(m: &Memory, address: u64, len: u64, direction: Direction) -> Data {
    data_of(&peek_bytes(m, address, len), len, direction)
}

/// The bytes an iovec array points to, in order, at most `limit` in all (what the kernel filled, for a read);
/// bounded like one buffer.
fn read_iov(m: &Memory, address: u64, count: u64, limit: u64, direction: Direction) -> Data {
    let mut bytes = Vec::new();
    let mut total = 0u64;
    for i in 0..count.min(IOV_MAX) {
        let entry = address.wrapping_add(16 * i);
        let (Ok(base), Ok(len)) = (m.peek_u64(entry), m.peek_u64(entry.wrapping_add(8))) else {
            break;
        };
        let len = len.min(limit - total);
        total = total.saturating_add(len);
        if bytes.len() < DATA_BYTES_MAX {
            let room = (DATA_BYTES_MAX - bytes.len()) as u64;
            bytes.extend(peek_bytes(m, base, len.min(room)));
        }
    }
    data_of(&bytes, total, direction)
}

/// A NUL-terminated string at `address` (None when unreadable), lossily as UTF-8.
fn read_string(m: &Memory, address: u64) -> Option<String> {
    if address == 0 {
        return None;
    }
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    while out.len() < STRING_BYTES_MAX {
        m.peek(address.wrapping_add(out.len() as u64), &mut byte)
            .ok()?;
        if byte[0] == 0 {
            break;
        }
        out.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

fn render_sockaddr(m: &Memory, address: u64, len: u64) -> String {
    if address == 0 {
        return "NULL".into();
    }
    let bytes = peek_bytes(m, address, len.min(128));
    if bytes.len() < 2 {
        return "<unreadable>".into();
    }
    let family = u16::from_le_bytes([bytes[0], bytes[1]]);
    match (family, bytes.len()) {
        (2, 8..) => format!(
            "{{AF_INET {}.{}.{}.{}:{}}}",
            bytes[4],
            bytes[5],
            bytes[6],
            bytes[7],
            u16::from_be_bytes([bytes[2], bytes[3]])
        ),
        (1, _) => {
            let path = &bytes[2..];
            let end = if path.first() == Some(&0) {
                path.len()
            } else {
                path.iter().position(|&b| b == 0).unwrap_or(path.len())
            };
            format!("{{AF_UNIX {}}}", quoted(&path[..end]))
        }
        (10, 24..) => format!(
            "{{AF_INET6 [{}]:{}}}",
            hex(&bytes[8..24]),
            u16::from_be_bytes([bytes[2], bytes[3]])
        ),
        _ => format!("{{family {family} {}}}", hex(&bytes[2..])),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes as a double-quoted string with Rust's ASCII escapes.
pub fn quoted(bytes: &[u8]) -> String {
    format!("\"{}\"", bytes.escape_ascii())
}

/// Byte strings in JSON as ASCII-escaped text (`\xNN` for the rest), read back exactly.
pub mod escaped {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&bytes.escape_ascii().to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        unescape(&text).ok_or_else(|| serde::de::Error::custom("a malformed escape"))
    }

    /// The inverse of `escape_ascii`.
    pub fn unescape(text: &str) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let mut bytes = text.bytes();
        while let Some(b) = bytes.next() {
            if b != b'\\' {
                out.push(b);
                continue;
            }
            out.push(match bytes.next()? {
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'0' => 0,
                b'x' => {
                    let digits = [bytes.next()?, bytes.next()?];
                    u8::from_str_radix(std::str::from_utf8(&digits).ok()?, 16).ok()?
                }
                other => other,
            });
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_bytes_round_trip() {
        let all: Vec<u8> = (0..=255u8).collect();
        let text = all.escape_ascii().to_string();
        assert_eq!(escaped::unescape(&text).unwrap(), all);
        assert_eq!(escaped::unescape("\\x4"), None);
    }

    #[test]
    fn results_name_errnos_and_hide_addresses() {
        assert_eq!(render_result((-2i64) as u64, ResultKind::Value), "-ENOENT");
        assert_eq!(
            render_result((-111i64) as u64, ResultKind::Value),
            "-ECONNREFUSED"
        );
        assert_eq!(render_result(0x7fff_0000, ResultKind::Address), "addr");
        assert_eq!(
            render_result((-12i64) as u64, ResultKind::Address),
            "-ENOMEM"
        );
        assert_eq!(render_result(3, ResultKind::Value), "3");
    }

    #[test]
    fn same_as_ignores_icount_and_task_but_not_bytes() {
        let call = |icount, fnv| Call {
            icount,
            tid: Some(1000),
            nr: 1,
            name: "write".into(),
            args: "1, <3 bytes>, 3".into(),
            result: "3".into(),
            data: Some(Data {
                direction: Direction::In,
                len: 3,
                fnv,
                excerpt: b"abc".to_vec(),
            }),
            paths: Vec::new(),
        };
        assert!(call(10, 7).same_as(&call(99, 7)));
        assert_eq!(call(10, 7).key(), call(99, 7).key());
        assert!(!call(10, 7).same_as(&call(10, 8)));
        assert_eq!(call(10, 7).difference(&call(10, 8)), "the bytes written");
    }
}
