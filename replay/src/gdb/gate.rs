//! The packet gate in front of gdbstub: it frames the bytes gdb sends, checks each packet, answers the ones
//! that need no target or that gdbstub 0.7 does not know, and hands gdbstub only packets in a canonical form
//! that gdbstub's parsers accept.
//!
//! Why: gdbstub ends the session on any packet it cannot parse or does not expect (a bad checksum, `m-1,10`,
//! `vCont;t`, a NAK, a byte outside a packet, a watchpoint address of more than 8 bytes, `Hg-1`...): its
//! errors are not recoverable by design. A gdb client that sends one of those, by mistake or on purpose, must
//! get an answer and keep its session. So no byte from the client reaches gdbstub unchecked: the gate parses
//! each packet against the grammar of the GDB remote protocol ("Packets", "General Query Packets" in gdb's
//! manual) and re-encodes the ones it forwards (addresses as 16 hexadecimal digits, a resume as one vCont
//! action plus the default continue, thread selections only of threads the guest has), so that gdbstub sees
//! only what it was written for.
//!
//! What it answers itself: packets that need only the protocol (`Hc`, `Hg` of any or all threads, unsupported
//! and unknown packets with the empty reply that means "not supported"), memory and register writes (a replay
//! is read-only), `qXfer:auxv:read` (the program's auxiliary vector, from which gdb learns where a PIE and the
//! dynamic loader were loaded), `qXfer:libraries-svr4:read` (the shared objects the loader has loaded, as
//! gdbserver lists them), `?` and
//! `qXfer:siginfo:read` (they depend on the fatal signal the guest may be stopped with,
//! which gdbstub 0.7 has no notion of), and a resume with a signal other than the fatal one (a replay cannot
//! deliver a signal the recorded run did not receive; gdb shows the error reply as "Remote failure reply").
//! `T TID` and `Hg TID` go to the server, which answers or forwards them only for a thread the guest has.
//! The framing follows "Overview" and "Packet Acknowledgment": a packet with a bad checksum is answered with `-`
//! (a request to send it again) while acknowledgments are on, and with an error reply once they are off.

use std::io::{Read, Write};
use std::net::TcpStream;

/// Most bytes of a packet's body the gate accepts: gdbstub's packet buffer (4096 bytes, advertised to gdb as
/// PacketSize=1000) less the `$`, `#` and the two checksum digits.
pub const PACKET_BODY_BYTES_MAX: usize = 4092;
/// Most bytes one `m` packet reads (gdb asks for less than half the packet size at a time).
pub const MEMORY_READ_BYTES_MAX: u64 = 4096;

/// What the client sent, framed.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// `$body#xx`: the body as sent (escapes left in), whether the checksum matched, and whether the body was
    /// longer than `PACKET_BODY_BYTES_MAX` (then it holds only the start).
    Packet {
        body: Vec<u8>,
        checksum_ok: bool,
        too_long: bool,
    },
    Ack,
    Nack,
    /// The interrupt byte (Ctrl-C, 0x03).
    Interrupt,
}

/// The reading side of a session: bytes from gdb, buffered, framed on demand.
pub struct Reader {
    stream: TcpStream,
    buf: Vec<u8>,
    pos: usize,
    closed: bool,
}

impl Reader {
    pub fn new(stream: TcpStream) -> Reader {
        Reader {
            stream,
            buf: Vec::new(),
            pos: 0,
            closed: false,
        }
    }

    /// Whether gdb closed the connection.
    pub fn closed(&self) -> bool {
        self.closed && self.pos == self.buf.len()
    }

    /// The next byte, waiting for it; None once the connection is closed.
    fn byte(&mut self) -> std::io::Result<Option<u8>> {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
            if self.closed {
                return Ok(None);
            }
            let mut chunk = [0u8; 4096];
            let n = loop {
                match self.stream.read(&mut chunk) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break 0,
                    Err(e) => return Err(e),
                }
            };
            if n == 0 {
                self.closed = true;
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        let b = self.buf[self.pos];
        self.pos += 1;
        Ok(Some(b))
    }

    /// The next frame, waiting for it; None once the connection is closed. Bytes outside a packet that are not
    /// `+`, `-` or the interrupt byte are skipped, as the protocol's receivers do.
    pub fn next_frame(&mut self) -> std::io::Result<Option<Frame>> {
        loop {
            let Some(b) = self.byte()? else {
                return Ok(None);
            };
            match b {
                b'+' => return Ok(Some(Frame::Ack)),
                b'-' => return Ok(Some(Frame::Nack)),
                0x03 => return Ok(Some(Frame::Interrupt)),
                b'$' => break,
                _ => continue,
            }
        }
        let mut body = Vec::new();
        let mut too_long = false;
        let mut sum = 0u8;
        loop {
            let Some(b) = self.byte()? else {
                return Ok(None);
            };
            if b == b'#' {
                break;
            }
            sum = sum.wrapping_add(b);
            if body.len() < PACKET_BODY_BYTES_MAX {
                body.push(b);
            } else {
                too_long = true;
            }
        }
        let mut digits = [0u8; 2];
        for d in &mut digits {
            let Some(b) = self.byte()? else {
                return Ok(None);
            };
            *d = b;
        }
        let checksum_ok = std::str::from_utf8(&digits)
            .ok()
            .and_then(|s| u8::from_str_radix(s, 16).ok())
            == Some(sum);
        Ok(Some(Frame::Packet {
            body,
            checksum_ok,
            too_long,
        }))
    }

    /// Reads what has arrived without waiting; whether an interrupt byte is among it (or gdb has gone, which
    /// stops a move as well).
    pub fn poll_interrupt(&mut self) -> bool {
        if !self.closed && self.stream.set_nonblocking(true).is_ok() {
            let mut chunk = [0u8; 4096];
            loop {
                match self.stream.read(&mut chunk) {
                    Ok(0) => {
                        self.closed = true;
                        break;
                    }
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            let _ = self.stream.set_nonblocking(false);
        }
        self.closed || self.buf[self.pos..].contains(&0x03)
    }

    /// Drops the first interrupt byte waiting (the one a move stopped for).
    pub fn take_interrupt(&mut self) {
        if let Some(i) = self.buf[self.pos..].iter().position(|&b| b == 0x03) {
            self.buf.remove(self.pos + i);
        }
    }
}

/// The writing side of a session, as gdbstub's `Connection`: gdbstub's replies are collected and sent at its
/// flush, so that the gate can extend the `qSupported` reply and send a packet again when gdb asks (`-`).
pub struct Writer {
    stream: TcpStream,
    out: Vec<u8>,
    /// The last packet sent (`$...#xx`), for a NAK.
    last_packet: Vec<u8>,
    /// Text to add to the body of the next packet gdbstub sends.
    append_to_next: Option<&'static str>,
}

impl Writer {
    pub fn new(stream: TcpStream) -> Writer {
        Writer {
            stream,
            out: Vec::new(),
            last_packet: Vec::new(),
            append_to_next: None,
        }
    }

    /// Adds `text` to the body of gdbstub's next reply.
    pub fn append_to_next_reply(&mut self, text: &'static str) {
        self.append_to_next = Some(text);
    }

    /// Sends a reply of the gate's own (after `+` when acknowledgments are on). `body` is sent as is: binary
    /// data must be escaped first (`escape_binary`).
    pub fn reply(&mut self, ack: bool, body: &[u8]) -> std::io::Result<()> {
        if ack {
            self.out.push(b'+');
        }
        self.out.extend_from_slice(&framed(body));
        self.send()
    }

    /// Sends `-`: the packet was damaged, gdb sends it again.
    pub fn nack(&mut self) -> std::io::Result<()> {
        self.out.push(b'-');
        self.send()
    }

    /// Sends the last packet again (gdb answered it with `-`).
    pub fn resend(&mut self) -> std::io::Result<()> {
        let packet = self.last_packet.clone();
        self.out.extend_from_slice(&packet);
        self.send()
    }

    /// Writes out what gdbstub or the gate put in the buffer.
    pub fn send(&mut self) -> std::io::Result<()> {
        if let Some(start) = self.out.iter().rposition(|&b| b == b'$') {
            if let Some(text) = self.append_to_next.take() {
                if let Some(hash) = self.out[start..].iter().rposition(|&b| b == b'#') {
                    let mut body = self.out[start + 1..start + hash].to_vec();
                    body.extend_from_slice(text.as_bytes());
                    self.out.truncate(start);
                    self.out.extend_from_slice(&framed(&body));
                }
            }
            self.last_packet = self.out[start..].to_vec();
        }
        let result = self.stream.write_all(&self.out);
        self.out.clear();
        result?;
        self.stream.flush()
    }
}

impl gdbstub::conn::Connection for Writer {
    type Error = std::io::Error;

    fn write(&mut self, byte: u8) -> Result<(), Self::Error> {
        self.out.push(byte);
        Ok(())
    }

    fn write_all(&mut self, buf: &[u8]) -> Result<(), Self::Error> {
        self.out.extend_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        self.send()
    }
}

/// `$body#xx`.
pub fn framed(body: &[u8]) -> Vec<u8> {
    let sum = body.iter().fold(0u8, |s, &b| s.wrapping_add(b));
    let mut p = Vec::with_capacity(body.len() + 4);
    p.push(b'$');
    p.extend_from_slice(body);
    p.extend_from_slice(format!("#{sum:02x}").as_bytes());
    p
}

/// Binary data escaped for a packet body ("Binary Data": `#`, `$`, `}` and `*` become `}` and the byte xor 0x20).
pub fn escape_binary(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    for &b in data {
        if matches!(b, b'#' | b'$' | b'}' | b'*') {
            out.push(b'}');
            out.push(b ^ 0x20);
        } else {
            out.push(b);
        }
    }
    out
}

/// What to do with a packet, decided from its body alone.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// Hand gdbstub this packet body (a canonical form of what gdb sent).
    Forward(String),
    /// Answer with this body.
    Reply(String),
    /// `?`: the reason the target is stopped.
    StopStatus,
    /// `qXfer:siginfo:read::OFFSET,LENGTH`.
    SigInfo { offset: u64, length: u64 },
    /// `qXfer:auxv:read::OFFSET,LENGTH`.
    Auxv { offset: u64, length: u64 },
    /// `qXfer:libraries-svr4:read::OFFSET,LENGTH`: the loaded shared objects (no annex: the server does not
    /// offer gdb's incremental `augmented-libraries-svr4-read`).
    LibrariesSvr4 { offset: u64, length: u64 },
    /// A continue (`step` false) or a step with a signal (gdb's number): only the fatal signal the guest is
    /// stopped with can be given.
    ResumeWithSignal { step: bool, signal: u8 },
    /// `qSupported`: forwarded; the reply gains `qXfer:siginfo:read+`.
    Supported { multiprocess: bool },
    /// `QStartNoAckMode`: forwarded; no acknowledgments from then on.
    NoAckMode,
    /// `k`, or `vKill;PID` (`reply_ok`): gdbstub is handed `k`, which it does not answer; vKill is answered OK.
    Kill { reply_ok: bool },
    /// `Hg TID`: the thread whose registers and memory gdb reads next; forwarded when the guest has it.
    SelectThread(u64),
    /// `T TID`: is the thread alive?
    ThreadAlive(u64),
    /// A step without a signal (`s`, `vCont;s[:TID]`): forwarded as a step of the thread that runs now, the
    /// others continuing (a replay has one schedule).
    Step,
}

/// The error reply for a write: a replay follows its trace (the server keeps going).
const READ_ONLY: &str = "E01";

fn hex_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 16 || !s.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(s).ok()?, 16).ok()
}

/// A thread-id element: -1 (all), 0 (any) or a positive number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Id {
    All,
    Any,
    Number(u64),
}

fn id(s: &[u8]) -> Option<Id> {
    match s {
        b"-1" => Some(Id::All),
        b"0" => Some(Id::Any),
        _ => match hex_u64(s)? {
            0 => Some(Id::Any),
            n => Some(Id::Number(n)),
        },
    }
}

/// A thread id, `[pPID.]TID` (or `pPID` alone, every thread of it): (pid, tid).
fn thread_id(s: &[u8]) -> Option<(Option<Id>, Id)> {
    match s.strip_prefix(b"p") {
        Some(rest) => {
            let mut parts = rest.splitn(2, |&b| b == b'.');
            let pid = id(parts.next()?)?;
            let tid = match parts.next() {
                Some(t) => id(t)?,
                None => Id::All,
            };
            Some((Some(pid), tid))
        }
        None => Some((None, id(s)?)),
    }
}

/// The one process gdb is told of (pid 1; gdbstub's), as a thread id names it.
fn is_the_process(pid: Option<Id>) -> bool {
    matches!(pid, None | Some(Id::Number(1)))
}

/// A `vCont` action's kind.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    Continue,
    Step,
    ContinueWith(u8),
    StepWith(u8),
}

/// One `vCont` action: `c`, `s`, `Csig`, `Ssig`, with an optional `:thread-id`. None for anything else (the
/// reply then says why).
fn vcont_action(s: &[u8]) -> Result<Action, &'static str> {
    let (kind, thread) = match s.iter().position(|&b| b == b':') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    if let Some(t) = thread {
        match thread_id(t) {
            Some((Some(Id::Any), _)) | None => return Err("E.bad thread id in vCont"),
            Some(_) => {}
        }
    }
    let signal = |digits: &[u8]| -> Result<u8, &'static str> {
        match hex_u64(digits) {
            Some(n) if n <= 0xff => Ok(n as u8),
            _ => Err("E.bad signal number in vCont"),
        }
    };
    match kind {
        b"c" => Ok(Action::Continue),
        b"s" => Ok(Action::Step),
        [b'C', sig @ ..] => Ok(Action::ContinueWith(signal(sig)?)),
        [b'S', sig @ ..] => Ok(Action::StepWith(signal(sig)?)),
        b"t" => Err("E.vCont;t is for non-stop mode, which this server does not run"),
        [b'r', ..] => Err("E.range stepping is not supported; step one instruction at a time"),
        _ => Err("E.unknown vCont action"),
    }
}

/// `Z`/`z` TYPE,ADDR,KIND: a canonical body for gdbstub, or the reply.
fn breakpoint(letter: char, rest: &[u8]) -> Request {
    let fields: Vec<&[u8]> = rest.split(|&b| b == b',').collect();
    let [kind_type, addr, kind] = fields.as_slice() else {
        // Conditions and commands (`;X...`) are not advertised, so gdb does not send them.
        return Request::Reply(String::new());
    };
    let (Some(t), Some(addr), Some(kind)) = (hex_u64(kind_type), hex_u64(addr), hex_u64(kind))
    else {
        return Request::Reply("E.bad breakpoint packet".into());
    };
    match t {
        // Software breakpoints and write, read and access watchpoints; hardware breakpoints are not
        // offered (the empty reply), so gdb uses software ones.
        0 | 2 | 3 | 4 => Request::Forward(format!("{letter}{t},{addr:016x},{kind:016x}")),
        _ => Request::Reply(String::new()),
    }
}

/// Decides what to do with a packet body (escapes not undone: none of the packets the gate parses carries
/// binary data).
pub fn classify(body: &[u8]) -> Request {
    use Request::{Forward, Reply};
    let empty = || Reply(String::new());
    match body {
        b"?" => Request::StopStatus,
        b"g" => Forward("g".into()),
        [b'G', ..] | [b'M', ..] | [b'X', ..] => Reply(READ_ONLY.into()),
        // Single registers: not offered, so gdb reads them all with `g` and writes them with `G` (refused).
        [b'p', ..] | [b'P', ..] => empty(),
        [b'm', rest @ ..] => {
            let mut parts = rest.splitn(2, |&b| b == b',');
            match (
                parts.next().and_then(hex_u64),
                parts.next().and_then(hex_u64),
            ) {
                (Some(addr), Some(len)) if len <= MEMORY_READ_BYTES_MAX => {
                    Forward(format!("m{addr:016x},{len:x}"))
                }
                (Some(_), Some(_)) => Reply("E.read at most 4096 bytes at a time".into()),
                _ => Reply("E.bad m packet: m ADDR,LENGTH in hexadecimal".into()),
            }
        }
        [b'H', b'g', thread @ ..] => match thread_id(thread) {
            Some((pid, Id::Number(tid))) if is_the_process(pid) => Request::SelectThread(tid),
            Some((_, Id::Number(_))) => Reply("E01".into()),
            // Any thread, or all: the one selected stays.
            Some(_) => Reply("OK".into()),
            None => Reply("E.bad thread id".into()),
        },
        // The thread of `c` and `s` packets: gdb resumes with vCont, which names its threads.
        [b'H', b'c', thread @ ..] => match thread_id(thread) {
            Some(_) => Reply("OK".into()),
            None => Reply("E.bad thread id".into()),
        },
        [b'T', thread @ ..] => match thread_id(thread) {
            Some((pid, Id::Number(tid))) if is_the_process(pid) => Request::ThreadAlive(tid),
            _ => Reply("E01".into()),
        },
        b"qfThreadInfo" => Forward("qfThreadInfo".into()),
        b"qsThreadInfo" => Forward("qsThreadInfo".into()),
        b"qAttached" => Reply("1".into()),
        [b'q', b'A', b't', b't', b'a', b'c', b'h', b'e', b'd', b':', ..] => Reply("1".into()),
        [b'q', b'S', b'u', b'p', b'p', b'o', b'r', b't', b'e', b'd', rest @ ..] => {
            let features = rest.strip_prefix(b":").unwrap_or(&[]);
            let multiprocess = features
                .split(|&b| b == b';')
                .any(|f| f == b"multiprocess+");
            Request::Supported { multiprocess }
        }
        b"QStartNoAckMode" => Request::NoAckMode,
        [b'q', b'X', b'f', b'e', b'r', b':', rest @ ..] => xfer(rest),
        b"qRcmd" => Forward("qRcmd".into()),
        [b'q', b'R', b'c', b'm', b'd', b',', hex @ ..] => {
            if hex.len() % 2 == 0 && hex.iter().all(u8::is_ascii_hexdigit) {
                Forward(format!(
                    "qRcmd,{}",
                    String::from_utf8_lossy(hex).to_ascii_lowercase()
                ))
            } else {
                Reply("E.bad qRcmd packet: the command in hexadecimal".into())
            }
        }
        b"vCont?" => Forward("vCont?".into()),
        [b'v', b'C', b'o', b'n', b't', b';', actions @ ..] => vcont(actions),
        b"c" => Forward("vCont;c".into()),
        b"s" => Request::Step,
        [b'c', ..] | [b's', ..] => {
            Reply("E.resuming at another address is not supported by a replay".into())
        }
        [b'C' | b'S', rest @ ..] => {
            let step = body[0] == b'S';
            let sig = rest.split(|&b| b == b';').next().unwrap_or(&[]);
            match hex_u64(sig) {
                Some(n) if n <= 0xff && !rest.contains(&b';') => Request::ResumeWithSignal {
                    step,
                    signal: n as u8,
                },
                Some(_) => Reply("E.resuming at another address is not supported".into()),
                None => Reply("E.bad signal number".into()),
            }
        }
        b"bc" => Forward("bc".into()),
        b"bs" => Forward("bs".into()),
        [b'Z', rest @ ..] => breakpoint('Z', rest),
        [b'z', rest @ ..] => breakpoint('z', rest),
        b"D" => Forward("D".into()),
        [b'D', b';', pid @ ..] => match hex_u64(pid) {
            Some(_) => Forward("D".into()),
            None => Reply("E.bad process id".into()),
        },
        b"k" => Request::Kill { reply_ok: false },
        [b'v', b'K', b'i', b'l', b'l', b';', pid @ ..] => match hex_u64(pid) {
            Some(_) => Request::Kill { reply_ok: true },
            None => Reply("E.bad process id".into()),
        },
        // Everything else (vMustReplyEmpty, qTStatus, qOffsets, qSymbol, vFile, QPassSignals, ...): the empty
        // reply, "not supported".
        _ => empty(),
    }
}

/// `qXfer:OBJECT:read:ANNEX:OFFSET,LENGTH`.
fn xfer(rest: &[u8]) -> Request {
    let parts: Vec<&[u8]> = rest.splitn(4, |&b| b == b':').collect();
    let [object, b"read", annex, range] = parts.as_slice() else {
        return Request::Reply(String::new());
    };
    let mut numbers = range.splitn(2, |&b| b == b',');
    let (Some(offset), Some(length)) = (
        numbers.next().and_then(hex_u64),
        numbers.next().and_then(hex_u64),
    ) else {
        return Request::Reply("E.bad qXfer packet: OFFSET,LENGTH in hexadecimal".into());
    };
    match *object {
        b"features" if *annex == b"target.xml" => Request::Forward(format!(
            "qXfer:features:read:target.xml:{offset:x},{:x}",
            length.min(PACKET_BODY_BYTES_MAX as u64 - 1)
        )),
        b"features" => Request::Reply("E00".into()),
        b"siginfo" if annex.is_empty() => Request::SigInfo { offset, length },
        b"siginfo" => Request::Reply("E00".into()),
        b"auxv" if annex.is_empty() => Request::Auxv { offset, length },
        b"auxv" => Request::Reply("E00".into()),
        b"libraries-svr4" if annex.is_empty() => Request::LibrariesSvr4 { offset, length },
        b"libraries-svr4" => Request::Reply("E00".into()),
        _ => Request::Reply(String::new()),
    }
}

/// `vCont;ACTION[:TID][;ACTION[:TID]]`: a replay has one schedule, so one action counts (a step is a step of
/// the thread that runs now); a second may only be the default continue that gdb adds for the other threads.
fn vcont(actions: &[u8]) -> Request {
    let list: Vec<&[u8]> = actions.split(|&b| b == b';').collect();
    if list.len() > 2 {
        return Request::Reply("E.one schedule: at most two vCont actions".into());
    }
    let mut parsed = Vec::new();
    for a in &list {
        match vcont_action(a) {
            Ok(action) => parsed.push(action),
            Err(reply) => return Request::Reply(reply.into()),
        }
    }
    if parsed.len() == 2 && parsed[1] != Action::Continue {
        return Request::Reply("E.one schedule: a second vCont action must be c".into());
    }
    match parsed[0] {
        Action::Continue => Request::Forward("vCont;c".into()),
        Action::Step => Request::Step,
        Action::ContinueWith(signal) => Request::ResumeWithSignal {
            step: false,
            signal,
        },
        Action::StepWith(signal) => Request::ResumeWithSignal { step: true, signal },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(body: &str) -> String {
        match classify(body.as_bytes()) {
            Request::Forward(s) => s,
            other => panic!("{body:?} not forwarded: {other:?}"),
        }
    }

    fn replied(body: &str) -> String {
        match classify(body.as_bytes()) {
            Request::Reply(s) => s,
            other => panic!("{body:?} not answered by the gate: {other:?}"),
        }
    }

    /// What gdb 13 sends reaches gdbstub in canonical forms; malformed and unsupported packets are answered.
    #[test]
    fn packets_are_forwarded_canonically_or_answered() {
        assert_eq!(forwarded("m4010ac,1"), "m00000000004010ac,1");
        assert_eq!(
            forwarded("Z0,4011c0,1"),
            "Z0,00000000004011c0,0000000000000001"
        );
        assert_eq!(
            forwarded("z2,407240,8"),
            "z2,0000000000407240,0000000000000008"
        );
        assert_eq!(forwarded("vCont;c:p1.-1"), "vCont;c");
        assert_eq!(classify(b"vCont;s:p1.3e9;c:p1.-1"), Request::Step);
        assert_eq!(classify(b"s"), Request::Step);
        assert_eq!(forwarded("c"), "vCont;c");
        assert_eq!(classify(b"Hgp1.3e9"), Request::SelectThread(0x3e9));
        assert_eq!(classify(b"Hg3ea"), Request::SelectThread(0x3ea));
        assert_eq!(replied("Hgp2.3e9"), "E01");
        assert_eq!(replied("Hg0"), "OK");
        assert_eq!(replied("Hc-1"), "OK");
        assert_eq!(classify(b"Tp1.3e8"), Request::ThreadAlive(0x3e8));
        assert_eq!(forwarded("qRcmd,7768656E"), "qRcmd,7768656e");
        assert_eq!(
            forwarded("qXfer:features:read:target.xml:fdb,ffb"),
            "qXfer:features:read:target.xml:fdb,ffb"
        );
        assert_eq!(forwarded("D;1"), "D");
        for bad in ["m-1,10", "m,10", "m10", "m12345678901234567,1", "mx1,1"] {
            assert!(replied(bad).starts_with('E'), "{bad}");
        }
        assert!(replied("m0,10000").starts_with('E'));
        assert!(replied("vCont;t").starts_with("E.vCont;t"));
        assert!(replied("vCont;r1,2").starts_with('E'));
        assert!(replied("vCont;c:p0.1").starts_with('E'));
        assert!(replied("vCont;s;s").starts_with('E'));
        assert!(replied("vCont;c;c;c").starts_with('E'));
        assert!(replied("vCont;Cxyz").starts_with('E'));
        assert_eq!(replied("Z1,401000,1"), "");
        assert!(replied("Z2,11223344556677889,8").starts_with('E'));
        assert_eq!(replied("Hg-1"), "OK");
        assert!(replied("Hgp").starts_with('E'));
        assert_eq!(replied("Tp1.-1"), "E01");
        assert_eq!(replied("Tp2.1"), "E01");
        assert_eq!(replied("M1000,1:00"), "E01");
        assert_eq!(replied("vMustReplyEmpty"), "");
        assert_eq!(replied("qXfer:features:read:other.xml:0,10"), "E00");
        assert_eq!(replied("qXfer:libraries:read::0,10"), "");
        assert!(replied("qRcmd,7").starts_with('E'));
        assert_eq!(
            classify(b"vCont;C1e:p1.1"),
            Request::ResumeWithSignal {
                step: false,
                signal: 0x1e
            }
        );
        assert_eq!(
            classify(b"vCont;S0b:p1.1;c:p1.-1"),
            Request::ResumeWithSignal {
                step: true,
                signal: 0x0b
            }
        );
        assert_eq!(
            classify(b"C09"),
            Request::ResumeWithSignal {
                step: false,
                signal: 9
            }
        );
        assert_eq!(
            classify(b"qXfer:siginfo:read::0,fff"),
            Request::SigInfo {
                offset: 0,
                length: 0xfff
            }
        );
        assert_eq!(
            classify(b"qXfer:auxv:read::10,200"),
            Request::Auxv {
                offset: 0x10,
                length: 0x200
            }
        );
        assert_eq!(
            classify(b"qXfer:libraries-svr4:read::0,fff"),
            Request::LibrariesSvr4 {
                offset: 0,
                length: 0xfff
            }
        );
        assert_eq!(
            classify(b"qXfer:libraries-svr4:read:start=0:0,fff"),
            Request::Reply("E00".into())
        );
        assert_eq!(
            classify(b"qXfer:auxv:read:x:0,10"),
            Request::Reply("E00".into())
        );
        assert_eq!(
            classify(b"qSupported:multiprocess+;swbreak+"),
            Request::Supported { multiprocess: true }
        );
        assert_eq!(classify(b"vKill;1"), Request::Kill { reply_ok: true });
        assert_eq!(classify(b"k"), Request::Kill { reply_ok: false });
        assert_eq!(classify(b"?"), Request::StopStatus);
    }

    /// A byte that a packet body carries as it is.
    fn plain(b: u8) -> bool {
        b.is_ascii_graphic() && !b"$#}*".contains(&b)
    }

    proptest::proptest! {
        /// Any body is classified without a panic, and what is forwarded is one of the canonical forms gdbstub
        /// parses: printable, no framing characters, within a packet.
        #[test]
        fn any_body_is_classified_and_forwarded_canonically(body in proptest::collection::vec(0u8..=255, 0..64)) {
            if let Request::Forward(canonical) = classify(&body) {
                proptest::prop_assert!(canonical.len() <= PACKET_BODY_BYTES_MAX);
                proptest::prop_assert!(canonical.bytes().all(plain), "{canonical:?}");
            }
        }

        /// Bodies made of the protocol's own letters and fields, which reach the deeper parsers.
        #[test]
        fn protocol_like_bodies_are_classified(parts in proptest::collection::vec(
            proptest::sample::select(vec![
                "m", "Z", "z", "vCont;", "H", "T", "q", "X", "C", "S", "c", "s", ",", ";", ":", "p", ".", "-1",
                "0", "1", "ff", "ffffffffffffffffff", "Xfer", "siginfo", "features", "read", "target.xml",
            ]),
            0..8,
        )) {
            let body: String = parts.concat();
            if let Request::Forward(canonical) = classify(body.as_bytes()) {
                proptest::prop_assert!(canonical.bytes().all(plain), "{canonical:?}");
            }
        }
    }

    #[test]
    fn binary_data_is_escaped_and_packets_framed() {
        assert_eq!(escape_binary(b"a#$}*b"), b"a}\x03}\x04}]}\x0ab");
        assert_eq!(framed(b"OK"), b"$OK#9a");
        assert_eq!(framed(b""), b"$#00");
    }
}
