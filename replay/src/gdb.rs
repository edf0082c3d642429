//! The GDB remote-protocol server of the replay debugger: `tandem debug FILE --gdb ADDR` serves a trace's
//! timeline to gdb, forwards and backwards.
//!
//! What it owns: the translation between gdbstub's target traits and the [`Debugger`], and the session loop
//! that drives gdbstub's state machine. It does no stepping, breakpoint checking or reverse execution of its
//! own: `continue` is [`Debugger::continue_forward_polling`], `reverse-continue` is
//! [`Debugger::continue_backward_polling`], stepping forwards is [`Debugger::step_forward`] and backwards a
//! seek on the debugger's [`crate::timeline::Timeline`], and gdb's `Z0`/`Z2`/`Z3`/`Z4` packets become the
//! debugger's breakpoints and write, read and access watchpoints. There is one engine; this module is a
//! protocol front end to it.
//!
//! Every byte gdb sends goes through the packet gate first (`gate.rs`): gdbstub ends a session on any packet
//! it cannot parse, so the gate checks each one, answers the malformed and the unsupported ones itself, and
//! hands gdbstub canonical packets only. A bad packet is answered and the session goes on.
//!
//! Invariants: a replay is read-only, so register and memory writes are refused (a non-fatal error, gdb says
//! so and carries on); at the edges of history a move reports `replaylog:begin` / `replaylog:end` (the GDB
//! remote protocol's "Stop Reply Packets", as rr does) instead of running off them. A watchpoint going
//! backwards stops before the instruction that triggered it, its effect undone, and names the watchpoint's
//! address (`watch:ADDR`), as rr answers reverse watchpoints; going forwards it stops after it.
//!
//! Fatal signals: a history that ends with the guest killed by a signal (SIGSEGV, SIGILL, SIGFPE, SIGABRT, a
//! memory error's SIGBUS) ends with a stop for that signal (gdb: "Program received signal SIGSEGV"), with the
//! signal's siginfo readable (`qXfer:siginfo:read`, gdb's `$_siginfo`), as Linux shows a fatal signal to a
//! debugger. Continuing with the signal (gdb passes SIGSEGV and the like by default) reports the guest's
//! death (`X`, "Program terminated with signal SIGSEGV"), which ends the session; continuing without it reports
//! the same stop again for a fault (the faulting instruction would run again), the end of history otherwise.
//! Any other signal gdb asks to deliver (`signal SIGUSR1`) is refused with an error reply, since a replay
//! cannot deliver a signal the recorded run did not receive.
//!
//! The target description (org.gnu.gdb.i386.core, .sse, .linux and .segments, following gdb's
//! features/i386/64bit-*.xml) adds `orig_rax`, `fs_base` and `gs_base` to gdbstub_arch's X86_64_SSE register
//! file, so `info registers fs_base` works as it does against a live Linux process.
//!
//! Threads: the target is gdbstub's multi-thread one. gdb sees every guest thread by its tid (`info threads`,
//! `thread N`; after a crash, the threads the process had as it died), reads each one's registers and the
//! memory of its process, and every stop names the thread that runs at that position: a breakpoint or
//! watchpoint hit by any thread stops the whole guest in that thread. A replay has one schedule, so threads
//! are not resumed one by one: a continue runs them all, a step retires the next instruction of whichever
//! thread runs now (gdb says so when that is another thread than the one it stepped).
//!
//! Interrupts: during `continue` and `reverse-continue` the server looks at the connection every
//! `debugger::POLL_INTERVAL_INSNS` instructions or so; gdb's interrupt byte (Ctrl-C) stops the move at an exact
//! icount and is reported as SIGINT, after which every command works from there (a reverse-continue that is
//! interrupted stops at the earliest icount from which the rest of the way back was searched).
//!
//! Limits: a single step and a reverse step (at most one checkpoint interval of re-execution) and
//! `monitor seek` run to completion without polling; every move is bounded by the recorded history
//! (`Timeline::icount_end`); packets are at most `gate::PACKET_BODY_BYTES_MAX` bytes.

mod gate;

use crate::debugger::{Debugger, Stop, WatchKind};
use gate::{Frame, Reader, Request, Writer};
use gdbstub::common::{Signal, Tid as GdbTid};
use gdbstub::stub::state_machine::GdbStubStateMachine;
use gdbstub::stub::{DisconnectReason, GdbStub, GdbStubError, MultiThreadStopReason};
use gdbstub::target::ext::base::multithread::{
    MultiThreadBase, MultiThreadResume, MultiThreadResumeOps, MultiThreadSingleStep,
    MultiThreadSingleStepOps,
};
use gdbstub::target::ext::base::reverse_exec::{
    ReplayLogPosition, ReverseCont, ReverseContOps, ReverseStep, ReverseStepOps,
};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::{
    Breakpoints, BreakpointsOps, HwWatchpoint, HwWatchpointOps, SwBreakpoint, SwBreakpointOps,
    WatchKind as GdbWatchKind,
};
use gdbstub::target::ext::monitor_cmd::{outputln, ConsoleOutput, MonitorCmd, MonitorCmdOps};
use gdbstub::target::{Target, TargetError, TargetResult};
use std::fmt::Write as _;
use std::net::TcpStream;
use tandem_emulator::cpu::{RAX, RBP, RBX, RCX, RDI, RDX, RSI, RSP};
use tandem_emulator::linux::ids::Tid;
use tandem_emulator::linux::linkmap::LinkMapEntry;

pub use arch::{TandemX86_64, TandemX86_64Regs};

/// Errors of a gdb session.
#[derive(Debug, thiserror::Error)]
pub enum GdbServerError {
    #[error("gdb connection failed ({kind}): {source}")]
    Connection {
        /// What the server was doing.
        kind: String,
        source: std::io::Error,
    },
    #[error("gdb server: {0}")]
    Target(&'static str),
    #[error("gdb protocol error: {0}")]
    Protocol(String),
}

/// How a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionEnd {
    /// gdb detached (`detach`, or quitting a `target remote` session).
    Detached,
    /// gdb sent `k` or `vKill` (`kill`).
    Killed,
    /// gdb was told that the guest ended (it continued past the fatal signal, or past a normal exit).
    GuestEnded,
    /// gdb closed the connection without detaching.
    Closed,
}

/// The move gdb asked for, performed by the session loop once gdbstub has answered the resume packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    None,
    /// `deliver`: gdb gave the fatal signal the guest is stopped with (checked by the gate).
    Continue {
        deliver: bool,
    },
    Step {
        deliver: bool,
    },
    ReverseContinue,
    ReverseStep,
}

/// The debugger as gdbstub's target.
pub struct GdbTarget<'a> {
    debugger: &'a mut Debugger,
    action: Action,
}

/// gdb's number for a Linux signal (gdb's include/gdb/signals.def; Linux's x86-64 numbering, signal(7)).
pub fn gdb_signal(linux: i32) -> Signal {
    const GDB_BY_LINUX: [u8; 32] = [
        0, 1, 2, 3, 4, 5, 6, 10, 8, 9, 30, 11, 31, 13, 14,
        15, // 0-15: SIGBUS is 10, SIGUSR1 30, SIGUSR2 31
        143, 20, 19, 17, 18, 21, 22, 16, 24, 25, 26, 27, 28, 23, 32,
        12, // 16: SIGSTKFLT has none
    ];
    Signal(GDB_BY_LINUX.get(linux as usize).copied().unwrap_or(143))
}

impl<'a> GdbTarget<'a> {
    pub fn new(debugger: &'a mut Debugger) -> GdbTarget<'a> {
        GdbTarget {
            debugger,
            action: Action::None,
        }
    }

    /// The fatal signal the guest is stopped with (Linux's number): the end of a history that a signal ends.
    fn stopped_with_signal(&self) -> Option<i32> {
        if self.debugger.timeline.finished() {
            self.debugger.fatal_signal()
        } else {
            None
        }
    }

    /// Whether gdb may resume with this signal (gdb's number): only the fatal one, which the recorded run did
    /// receive there.
    fn accepts_signal(&self, signal: u8) -> bool {
        self.stopped_with_signal()
            .is_some_and(|s| gdb_signal(s).0 == signal)
    }

    /// The stop reply for `?`: the running thread (the one at the current position) stopped.
    fn stop_status(&self, multiprocess: bool) -> String {
        let signal = self.stopped_with_signal().map_or(5, |s| gdb_signal(s).0);
        let tid = self.current_tid().get();
        let thread = if multiprocess {
            format!("p01.{tid:x}")
        } else {
            format!("{tid:x}")
        };
        format!("T{signal:02x}thread:{thread};")
    }

    /// The thread running at the current position, as gdb numbers it (the guest's tid): every stop reports
    /// it, since it is the one whose instruction is next.
    fn current_tid(&self) -> GdbTid {
        gdb_tid(self.debugger.timeline.replayer.hv.guest.current_tid())
    }

    /// Whether the guest has (or, at the end of a run, had) this thread.
    fn has_thread(&self, tid: u64) -> bool {
        self.debugger
            .timeline
            .replayer
            .hv
            .guest
            .threads()
            .iter()
            .any(|t| t.tid.0 as u64 == tid)
    }

    /// The reply to `qXfer:siginfo:read::OFFSET,LENGTH`: Linux's 128-byte x86-64 siginfo_t of the fatal signal
    /// (si_signo, si_code, si_addr or si_pid and si_uid, si_addr_lsb for a memory error), or an error when the
    /// guest is not stopped with a signal.
    fn siginfo_reply(&self, offset: u64, length: u64) -> Vec<u8> {
        let Some(info) = self
            .stopped_with_signal()
            .and_then(|_| self.debugger.fatal_siginfo())
        else {
            return b"E01".to_vec();
        };
        let mut bytes = [0u8; 128];
        bytes[0..4].copy_from_slice(&info.signo.to_le_bytes());
        bytes[8..12].copy_from_slice(&info.code.to_le_bytes());
        bytes[16..24].copy_from_slice(&info.addr.to_le_bytes());
        // SIGBUS with BUS_MCEERR_AR or _AO: si_addr_lsb, a whole 4 KiB page (kernel/signal.c force_sig_mceerr).
        if info.signo == 7 && (info.code == 4 || info.code == 5) {
            bytes[24..26].copy_from_slice(&12i16.to_le_bytes());
        }
        let start = (offset as usize).min(bytes.len());
        let end = start.saturating_add(length as usize).min(bytes.len());
        let mut reply = vec![if end < bytes.len() { b'm' } else { b'l' }];
        reply.extend_from_slice(&gate::escape_binary(&bytes[start..end]));
        reply
    }

    fn stop_reason(&self, stop: Stop) -> MultiThreadStopReason<u64> {
        let tid = self.current_tid();
        match stop {
            Stop::Breakpoint(_) => MultiThreadStopReason::SwBreak(tid),
            Stop::Watchpoint(hit) => {
                let addr = self.debugger.watchpoint(hit.id).map_or(0, |w| w.addr);
                let kind = match hit.kind {
                    WatchKind::Write => GdbWatchKind::Write,
                    WatchKind::Read => GdbWatchKind::Read,
                    WatchKind::Access => GdbWatchKind::ReadWrite,
                };
                MultiThreadStopReason::Watch { tid, kind, addr }
            }
            Stop::End => MultiThreadStopReason::ReplayLog {
                tid: Some(tid),
                pos: ReplayLogPosition::End,
            },
            Stop::Start => MultiThreadStopReason::ReplayLog {
                tid: Some(tid),
                pos: ReplayLogPosition::Begin,
            },
            Stop::Interrupted => MultiThreadStopReason::SignalWithThread {
                tid,
                signal: Signal::SIGINT,
            },
            Stop::Signal(signal) => MultiThreadStopReason::SignalWithThread {
                tid,
                signal: gdb_signal(signal),
            },
            Stop::Killed(signal) => MultiThreadStopReason::Terminated(gdb_signal(signal)),
        }
    }

    /// A finished step: SIGTRAP in the thread that runs now (a step can end in another thread when the
    /// scheduler switched; gdb then says so).
    fn done_step(&self) -> MultiThreadStopReason<u64> {
        MultiThreadStopReason::SignalWithThread {
            tid: self.current_tid(),
            signal: Signal::SIGTRAP,
        }
    }

    /// A resume from the fatal signal's stop: the guest's death when gdb delivers the signal; without it, the
    /// same stop again for a fault (the instruction would fault again), the end of history otherwise.
    fn resume_from_signal(&self, signal: i32, deliver: bool) -> Stop {
        if deliver {
            Stop::Killed(signal)
        } else if self.debugger.fatal_signal_repeats() {
            Stop::Signal(signal)
        } else {
            Stop::End
        }
    }

    /// Performs the pending move; the stop to report, or None when `poll` interrupted it (the position is
    /// then the exact icount where the move stopped, and the caller reports the interrupt).
    fn perform(&mut self, poll: &mut dyn FnMut() -> bool) -> Option<MultiThreadStopReason<u64>> {
        let action = std::mem::replace(&mut self.action, Action::None);
        let stop = match action {
            Action::None => return Some(self.done_step()),
            Action::Continue { deliver } => match self.stopped_with_signal() {
                Some(signal) => self.resume_from_signal(signal, deliver),
                None => self.debugger.continue_forward_polling(poll),
            },
            Action::Step { deliver } => match self.stopped_with_signal() {
                Some(signal) => self.resume_from_signal(signal, deliver),
                None => match self.debugger.step_forward() {
                    Some(stop) => stop,
                    None => return Some(self.done_step()),
                },
            },
            Action::ReverseContinue => self.debugger.continue_backward_polling(poll),
            Action::ReverseStep => {
                let icount = self.debugger.timeline.icount();
                if icount == 0 {
                    return Some(self.stop_reason(Stop::Start));
                }
                self.debugger.progress_to(icount - 1);
                return Some(self.done_step());
            }
        };
        match stop {
            Stop::Interrupted => None,
            stop => Some(self.stop_reason(stop)),
        }
    }
}

/// gdb's amd64 register order (rax, rbx, rcx, rdx, rsi, rdi, rbp, rsp, r8..r15) as the CPU's GPR indices
/// (the SDM's encoding order).
const GDB_GPR_ORDER: [usize; 16] = [
    RAX, RBX, RCX, RDX, RSI, RDI, RBP, RSP, 8, 9, 10, 11, 12, 13, 14, 15,
];

/// Linux's user-mode selectors (arch/x86/include/asm/segment.h: __USER_CS, __USER_DS).
const USER_CS: u32 = 0x33;
const USER_DS: u32 = 0x2b;

impl Target for GdbTarget<'_> {
    type Arch = TandemX86_64;
    type Error = &'static str;

    fn base_ops(&mut self) -> BaseOps<'_, Self::Arch, Self::Error> {
        BaseOps::MultiThread(self)
    }

    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }

    fn support_monitor_cmd(&mut self) -> Option<MonitorCmdOps<'_, Self>> {
        Some(self)
    }
}

/// gdb's thread id for a guest tid (tids start at 1000, so never 0).
fn gdb_tid(tid: Tid) -> GdbTid {
    GdbTid::new(tid.0.max(1) as usize).expect("at least 1")
}

/// The guest thread gdb names. gdbstub starts out naming thread 1 (its single-thread default) until a stop
/// reply it wrote names one, and the gate answers `?` itself: 1 is no guest tid, so it means the thread that
/// runs now.
fn guest_tid(tid: GdbTid, current: Tid) -> Tid {
    match tid.get() {
        1 => current,
        n => Tid(i32::try_from(n).unwrap_or(i32::MAX)),
    }
}

impl MultiThreadBase for GdbTarget<'_> {
    fn read_registers(
        &mut self,
        regs: &mut TandemX86_64Regs,
        tid: GdbTid,
    ) -> TargetResult<(), Self> {
        let guest = &self.debugger.timeline.replayer.hv.guest;
        let Some(r) = guest.thread_registers(guest_tid(tid, guest.current_tid())) else {
            return Err(TargetError::NonFatal);
        };
        for (slot, &index) in regs.core.regs.iter_mut().zip(GDB_GPR_ORDER.iter()) {
            *slot = r.gpr[index];
        }
        regs.core.rip = r.rip;
        regs.core.eflags = r.rflags as u32;
        regs.core.segments.cs = USER_CS;
        regs.core.segments.ss = USER_DS;
        regs.core.segments.ds = 0;
        regs.core.segments.es = 0;
        regs.core.segments.fs = 0;
        regs.core.segments.gs = 0;
        let x87 = &r.x87;
        for (i, st) in regs.core.st.iter_mut().enumerate() {
            let r = &x87.regs[(x87.top as usize + i) % 8];
            st[..8].copy_from_slice(&r.significand.to_le_bytes());
            st[8..].copy_from_slice(&r.sign_exponent.to_le_bytes());
        }
        regs.core.fpu.fctrl = x87.control as u32;
        regs.core.fpu.fstat = (x87.status | ((x87.top as u16 & 7) << 11)) as u32;
        regs.core.fpu.ftag = x87.tag as u32;
        regs.core.fpu.fiseg = 0;
        regs.core.fpu.fioff = x87.last_ip as u32;
        regs.core.fpu.foseg = 0;
        regs.core.fpu.fooff = x87.last_dp as u32;
        regs.core.fpu.fop = x87.last_opcode as u32;
        regs.core.xmm = r.xmm;
        regs.core.mxcsr = r.mxcsr;
        // -1: not stopped in a system call (what Linux's ptrace shows between syscalls).
        regs.orig_rax = u64::MAX;
        regs.fs_base = r.fs_base;
        regs.gs_base = r.gs_base;
        Ok(())
    }

    fn write_registers(
        &mut self,
        _regs: &TandemX86_64Regs,
        _tid: GdbTid,
    ) -> TargetResult<(), Self> {
        // A replay follows its trace; a changed register would make it diverge.
        Err(TargetError::NonFatal)
    }

    fn read_addrs(
        &mut self,
        start_addr: u64,
        data: &mut [u8],
        tid: GdbTid,
    ) -> TargetResult<usize, Self> {
        let guest = &self.debugger.timeline.replayer.hv.guest;
        let Some(mem) = guest.thread_memory(guest_tid(tid, guest.current_tid())) else {
            return Err(TargetError::NonFatal);
        };
        for (i, byte) in data.iter_mut().enumerate() {
            let mut one = [0u8];
            if mem
                .peek(start_addr.wrapping_add(i as u64), &mut one)
                .is_err()
            {
                return if i == 0 {
                    Err(TargetError::NonFatal)
                } else {
                    Ok(i)
                };
            }
            *byte = one[0];
        }
        Ok(data.len())
    }

    fn write_addrs(
        &mut self,
        _start_addr: u64,
        _data: &[u8],
        _tid: GdbTid,
    ) -> TargetResult<(), Self> {
        Err(TargetError::NonFatal)
    }

    /// Every thread by tid: the live ones, or at the end of a run the ones its first process had as it ended
    /// (so `info threads` at a crash shows them all).
    fn list_active_threads(&mut self, active: &mut dyn FnMut(GdbTid)) -> Result<(), Self::Error> {
        for t in self.debugger.timeline.replayer.hv.guest.threads() {
            active(gdb_tid(t.tid));
        }
        Ok(())
    }

    fn support_resume(&mut self) -> Option<MultiThreadResumeOps<'_, Self>> {
        Some(self)
    }
}

/// Resuming: the threads are not resumed one by one. A replay moves the whole guest along its recorded
/// schedule, so a continue runs every thread and a step retires the next instruction of whichever thread runs
/// now (the gate adds the default continue for the others, so scheduler locking is never asked for).
impl MultiThreadResume for GdbTarget<'_> {
    fn resume(&mut self) -> Result<(), Self::Error> {
        if self.action == Action::None {
            self.action = Action::Continue { deliver: false };
        }
        Ok(())
    }

    fn clear_resume_actions(&mut self) -> Result<(), Self::Error> {
        self.action = Action::None;
        Ok(())
    }

    fn set_resume_action_continue(
        &mut self,
        _tid: GdbTid,
        signal: Option<Signal>,
    ) -> Result<(), Self::Error> {
        // The gate lets through only the fatal signal the guest is stopped with.
        if !matches!(self.action, Action::Step { .. }) {
            self.action = Action::Continue {
                deliver: signal.is_some_and(|s| self.accepts_signal(s.0)),
            };
        }
        Ok(())
    }

    fn support_single_step(&mut self) -> Option<MultiThreadSingleStepOps<'_, Self>> {
        Some(self)
    }

    fn support_reverse_cont(&mut self) -> Option<ReverseContOps<'_, GdbTid, Self>> {
        Some(self)
    }

    fn support_reverse_step(&mut self) -> Option<ReverseStepOps<'_, GdbTid, Self>> {
        Some(self)
    }
}

impl MultiThreadSingleStep for GdbTarget<'_> {
    fn set_resume_action_step(
        &mut self,
        _tid: GdbTid,
        signal: Option<Signal>,
    ) -> Result<(), Self::Error> {
        self.action = Action::Step {
            deliver: signal.is_some_and(|s| self.accepts_signal(s.0)),
        };
        Ok(())
    }
}

impl ReverseCont<GdbTid> for GdbTarget<'_> {
    fn reverse_cont(&mut self) -> Result<(), Self::Error> {
        self.action = Action::ReverseContinue;
        Ok(())
    }
}

impl ReverseStep<GdbTid> for GdbTarget<'_> {
    fn reverse_step(&mut self, _tid: GdbTid) -> Result<(), Self::Error> {
        self.action = Action::ReverseStep;
        Ok(())
    }
}

impl Breakpoints for GdbTarget<'_> {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_watchpoint(&mut self) -> Option<HwWatchpointOps<'_, Self>> {
        Some(self)
    }
}

impl SwBreakpoint for GdbTarget<'_> {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        self.debugger.add_breakpoint(addr);
        Ok(true)
    }

    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        let present = self.debugger.breakpoint_addresses().contains(&addr);
        self.debugger.remove_breakpoint_at(addr);
        Ok(present)
    }
}

fn watch_kind(kind: GdbWatchKind) -> WatchKind {
    match kind {
        GdbWatchKind::Write => WatchKind::Write,
        GdbWatchKind::Read => WatchKind::Read,
        GdbWatchKind::ReadWrite => WatchKind::Access,
    }
}

impl HwWatchpoint for GdbTarget<'_> {
    fn add_hw_watchpoint(
        &mut self,
        addr: u64,
        len: u64,
        kind: GdbWatchKind,
    ) -> TargetResult<bool, Self> {
        // Any length up to debugger::WATCH_BYTES_MAX is watched whole; a longer one is refused (E22), and gdb
        // says it could not insert the watchpoint.
        Ok(self
            .debugger
            .add_watchpoint(addr, len, watch_kind(kind))
            .is_ok())
    }

    fn remove_hw_watchpoint(
        &mut self,
        addr: u64,
        len: u64,
        kind: GdbWatchKind,
    ) -> TargetResult<bool, Self> {
        Ok(self.debugger.remove_watchpoint(addr, len, watch_kind(kind)))
    }
}

impl MonitorCmd for GdbTarget<'_> {
    fn handle_monitor_cmd(
        &mut self,
        cmd: &[u8],
        mut out: ConsoleOutput<'_>,
    ) -> Result<(), Self::Error> {
        let Ok(cmd) = std::str::from_utf8(cmd) else {
            outputln!(out, "monitor: the command is not UTF-8");
            return Ok(());
        };
        let words: Vec<&str> = cmd.split_whitespace().collect();
        match words.as_slice() {
            ["when"] => outputln!(out, "icount {}", self.debugger.timeline.icount()),
            ["seek", icount] | ["goto", icount] => match parse_icount(icount) {
                Some(target) => {
                    self.debugger.progress_to(target);
                    outputln!(out, "{}", self.debugger.position());
                    // gdb caches registers and memory while the target is stopped; it cannot know a monitor
                    // command moved it.
                    outputln!(
                        out,
                        "(gdb's view is stale: run `maintenance flush register-cache` to refresh it)"
                    );
                }
                None => outputln!(out, "monitor seek ICOUNT: {icount:?} is not a number"),
            },
            ["help"] | [] => outputln!(
                out,
                "monitor when: the current icount; monitor seek ICOUNT: go to an instruction count"
            ),
            _ => outputln!(out, "unknown monitor command {cmd:?}; try `monitor help`"),
        }
        Ok(())
    }
}

fn parse_icount(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// What gdb sends to interrupt a running target (Ctrl-C; the GDB remote protocol's "Interrupts").
const INTERRUPT_BYTE: u8 = 0x03;

/// The features the gate adds to gdbstub's `qSupported` reply.
const SIGINFO_FEATURE: &str = ";qXfer:siginfo:read+;qXfer:auxv:read+;qXfer:libraries-svr4:read+";

/// The loaded shared objects in gdb's "Library List Format for SVR4 Targets", as gdbserver writes it
/// (linux-low.cc): the program's link_map entry is `main-lm`, each later entry with a name a `library`. While
/// the loader has not published its list (before it sets DT_DEBUG, and for a static program) the list is empty,
/// and gdb finds the loader through AT_BASE as it does with gdbserver.
fn libraries_svr4_xml(link_map: Option<Vec<LinkMapEntry>>) -> String {
    let mut xml = String::from("<library-list-svr4 version=\"1.0\"");
    let entries = link_map.unwrap_or_default();
    let Some((main, rest)) = entries.split_first() else {
        xml.push_str("/>");
        return xml;
    };
    let _ = write!(xml, " main-lm=\"{:#x}\">", main.lm);
    for e in rest.iter().filter(|e| !e.name.is_empty()) {
        let _ = write!(
            xml,
            "<library name=\"{}\" lm=\"{:#x}\" l_addr=\"{:#x}\" l_ld=\"{:#x}\" lmid=\"0x0\"/>",
            xml_escape(&e.name),
            e.lm,
            e.l_addr,
            e.l_ld
        );
    }
    xml.push_str("</library-list-svr4>");
    xml
}

/// `bytes` as XML attribute text (not UTF-8: each invalid byte as U+FFFD).
fn xml_escape(bytes: &[u8]) -> String {
    let mut out = String::new();
    for c in String::from_utf8_lossy(bytes).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// A `qXfer` read reply: `m` and the part of `bytes` at `offset`, or `l` with the last part (escaped binary).
fn xfer_reply(bytes: &[u8], offset: u64, length: u64) -> Vec<u8> {
    let length = length.min(gate::PACKET_BODY_BYTES_MAX as u64 / 2);
    let start = (offset as usize).min(bytes.len());
    let end = start.saturating_add(length as usize).min(bytes.len());
    let mut reply = vec![if end < bytes.len() { b'm' } else { b'l' }];
    reply.extend_from_slice(&gate::escape_binary(&bytes[start..end]));
    reply
}

type Machine<'a, 'd> = GdbStubStateMachine<'a, GdbTarget<'d>, Writer>;

fn connection_error(kind: &str) -> impl FnOnce(std::io::Error) -> GdbServerError + '_ {
    move |source| GdbServerError::Connection {
        kind: kind.to_string(),
        source,
    }
}

fn stub_error(e: GdbStubError<&'static str, std::io::Error>) -> GdbServerError {
    if e.is_target_error() {
        return GdbServerError::Target(e.into_target_error().unwrap_or("unknown target error"));
    }
    if e.is_connection_error() {
        if let Some((source, kind)) = e.into_connection_error() {
            return GdbServerError::Connection {
                kind: format!("{kind:?}"),
                source,
            };
        }
        return GdbServerError::Protocol("connection error".into());
    }
    GdbServerError::Protocol(e.to_string())
}

/// Hands gdbstub a packet (framed with its checksum), byte by byte, as if gdb had sent it.
fn feed<'a, 'd>(
    mut machine: Machine<'a, 'd>,
    target: &mut GdbTarget<'d>,
    body: &str,
) -> Result<Machine<'a, 'd>, GdbServerError> {
    for b in gate::framed(body.as_bytes()) {
        machine = match machine {
            GdbStubStateMachine::Idle(idle) => idle.incoming_data(target, b).map_err(stub_error)?,
            GdbStubStateMachine::Running(running) => {
                running.incoming_data(target, b).map_err(stub_error)?
            }
            _ => {
                return Err(GdbServerError::Protocol(format!(
                    "gdbstub left the idle state in the middle of {body:?}"
                )))
            }
        };
    }
    // A resume packet's acknowledgment goes out now, not with the stop reply after the move.
    let sent = match &mut machine {
        GdbStubStateMachine::Running(running) => running.borrow_conn().send(),
        _ => Ok(()),
    };
    sent.map_err(connection_error("write"))?;
    Ok(machine)
}

/// Serves `debugger` to one gdb over `stream` until gdb detaches, kills, closes the connection or is told
/// that the guest ended. The session's breakpoints and watchpoints are its own: the debugger's are cleared at
/// the start; the position carries over to the next session.
pub fn serve(debugger: &mut Debugger, stream: TcpStream) -> Result<SessionEnd, GdbServerError> {
    debugger.clear_breakpoints_and_watchpoints();
    let _ = stream.set_nodelay(true);
    let mut reader = Reader::new(stream.try_clone().map_err(connection_error("clone"))?);
    let mut target = GdbTarget::new(debugger);
    let mut flags = Flags::default();
    let mut machine: Machine<'_, '_> = GdbStub::new(Writer::new(stream))
        .run_state_machine(&mut target)
        .map_err(stub_error)?;
    loop {
        machine = match machine {
            GdbStubStateMachine::Idle(idle) => {
                let Some(frame) = reader.next_frame().map_err(connection_error("read"))? else {
                    return Ok(SessionEnd::Closed);
                };
                on_frame(idle, &mut target, frame, &mut flags)?
            }
            GdbStubStateMachine::Running(running) => {
                let stop = {
                    let mut poll = || reader.poll_interrupt();
                    target.perform(&mut poll)
                };
                match stop {
                    Some(reason) => running
                        .report_stop(&mut target, reason)
                        .map_err(stub_error)?,
                    None if reader.closed() => return Ok(SessionEnd::Closed),
                    None => {
                        reader.take_interrupt();
                        running
                            .incoming_data(&mut target, INTERRUPT_BYTE)
                            .map_err(stub_error)?
                    }
                }
            }
            GdbStubStateMachine::CtrlCInterrupt(ctrl_c) => {
                target.action = Action::None;
                let tid = target.current_tid();
                ctrl_c
                    .interrupt_handled(
                        &mut target,
                        Some(MultiThreadStopReason::SignalWithThread {
                            tid,
                            signal: Signal::SIGINT,
                        }),
                    )
                    .map_err(stub_error)?
            }
            GdbStubStateMachine::Disconnected(mut disconnected) => {
                // gdbstub leaves the acknowledgment of a `k` unsent.
                let _ = disconnected.borrow_conn().send();
                return Ok(match disconnected.get_reason() {
                    DisconnectReason::Disconnect => SessionEnd::Detached,
                    DisconnectReason::Kill => SessionEnd::Killed,
                    DisconnectReason::TargetExited(_) | DisconnectReason::TargetTerminated(_) => {
                        SessionEnd::GuestEnded
                    }
                });
            }
        };
    }
}

/// What the gate has learnt of the session.
#[derive(Default)]
struct Flags {
    /// Acknowledgments are off (`QStartNoAckMode`).
    no_ack: bool,
    /// gdb uses multiprocess thread ids (`pPID.TID`).
    multiprocess: bool,
}

type Idle<'a, 'd> = gdbstub::stub::state_machine::GdbStubStateMachineInner<
    'a,
    gdbstub::stub::state_machine::state::Idle<GdbTarget<'d>>,
    GdbTarget<'d>,
    Writer,
>;

/// What the gate does with one frame from gdb while the target is stopped: answer it, or hand gdbstub its
/// canonical form. The state machine that follows.
fn on_frame<'a, 'd>(
    mut idle: Idle<'a, 'd>,
    target: &mut GdbTarget<'d>,
    frame: Frame,
    flags: &mut Flags,
) -> Result<Machine<'a, 'd>, GdbServerError> {
    let ack = !flags.no_ack;
    let reply = |idle: &mut Idle<'a, 'd>, body: &[u8]| {
        idle.borrow_conn()
            .reply(ack, body)
            .map_err(connection_error("write"))
    };
    let (body, checksum_ok, too_long) = match frame {
        // An interrupt while stopped: nothing is running, nothing to stop.
        Frame::Ack | Frame::Interrupt => return Ok(idle.into()),
        Frame::Nack => {
            idle.borrow_conn()
                .resend()
                .map_err(connection_error("write"))?;
            return Ok(idle.into());
        }
        Frame::Packet {
            body,
            checksum_ok,
            too_long,
        } => (body, checksum_ok, too_long),
    };
    if !checksum_ok {
        if flags.no_ack {
            reply(&mut idle, b"E.bad checksum")?;
        } else {
            idle.borrow_conn()
                .nack()
                .map_err(connection_error("write"))?;
        }
        return Ok(idle.into());
    }
    if too_long {
        reply(&mut idle, b"E.packet too long")?;
        return Ok(idle.into());
    }
    Ok(match gate::classify(&body) {
        Request::Forward(canonical) => feed(idle.into(), target, &canonical)?,
        Request::Reply(text) => {
            reply(&mut idle, text.as_bytes())?;
            idle.into()
        }
        Request::StopStatus => {
            let status = target.stop_status(flags.multiprocess);
            reply(&mut idle, status.as_bytes())?;
            idle.into()
        }
        Request::SigInfo { offset, length } => {
            let data = target.siginfo_reply(offset, length);
            reply(&mut idle, &data)?;
            idle.into()
        }
        Request::SelectThread(tid) => {
            if target.has_thread(tid) {
                feed(idle.into(), target, &format!("Hg{tid:x}"))?
            } else {
                reply(&mut idle, b"E01")?;
                idle.into()
            }
        }
        Request::ThreadAlive(tid) => {
            let answer: &[u8] = if target.has_thread(tid) {
                b"OK"
            } else {
                b"E01"
            };
            reply(&mut idle, answer)?;
            idle.into()
        }
        Request::Step => {
            let tid = target.current_tid();
            feed(idle.into(), target, &format!("vCont;s:{tid:x};c"))?
        }
        Request::Auxv { offset, length } => {
            let data = xfer_reply(&target.debugger.auxv_bytes(), offset, length);
            reply(&mut idle, &data)?;
            idle.into()
        }
        Request::LibrariesSvr4 { offset, length } => {
            let xml = libraries_svr4_xml(target.debugger.link_map());
            let data = xfer_reply(xml.as_bytes(), offset, length);
            reply(&mut idle, &data)?;
            idle.into()
        }
        Request::ResumeWithSignal { step, signal } => {
            if target.accepts_signal(signal) {
                let letter = if step { 'S' } else { 'C' };
                let tid = target.current_tid();
                feed(
                    idle.into(),
                    target,
                    &format!("vCont;{letter}{signal:02x}:{tid:x};c"),
                )?
            } else {
                reply(
                    &mut idle,
                    b"E.a replay cannot deliver a signal the recorded run did not receive here; \
                      continue without it (signal 0)",
                )?;
                idle.into()
            }
        }
        Request::Supported { multiprocess } => {
            flags.multiprocess = multiprocess;
            idle.borrow_conn().append_to_next_reply(SIGINFO_FEATURE);
            let features = if multiprocess {
                "multiprocess+"
            } else {
                "multiprocess-"
            };
            feed(idle.into(), target, &format!("qSupported:{features}"))?
        }
        Request::NoAckMode => {
            let next = feed(idle.into(), target, "QStartNoAckMode")?;
            flags.no_ack = true;
            next
        }
        Request::Kill { reply_ok } => {
            // gdbstub ends the session on `k` without a reply (its acknowledgment waits in the writer);
            // vKill expects OK.
            let mut next = feed(idle.into(), target, "k")?;
            if let (true, GdbStubStateMachine::Disconnected(d)) = (reply_ok, &mut next) {
                d.borrow_conn()
                    .reply(false, b"OK")
                    .map_err(connection_error("write"))?;
            }
            next
        }
    })
}

mod arch {
    //! gdbstub_arch's X86_64_SSE register file plus the Linux and segment-base registers, with the target
    //! description that names them (gdb/features/i386/64bit-{core,sse,linux,segments}.xml).

    use core::num::NonZeroUsize;
    use gdbstub::arch::{Arch, RegId, Registers};
    use gdbstub_arch::x86::reg::id::X86_64CoreRegId;
    use gdbstub_arch::x86::reg::X86_64CoreRegs;

    /// Bytes of X86_64CoreRegs in the `g` packet: 16 GPRs, rip, eflags, 6 segments, 8 x87 registers,
    /// 8 x87 control registers, 16 xmm registers, mxcsr.
    const CORE_BYTES: usize = 0x218;

    #[allow(non_camel_case_types)]
    pub enum TandemX86_64 {}

    #[derive(Debug, Default, Clone, PartialEq, Eq)]
    pub struct TandemX86_64Regs {
        pub core: X86_64CoreRegs,
        pub orig_rax: u64,
        pub fs_base: u64,
        pub gs_base: u64,
    }

    impl Registers for TandemX86_64Regs {
        type ProgramCounter = u64;

        fn pc(&self) -> u64 {
            self.core.rip
        }

        fn gdb_serialize(&self, mut write_byte: impl FnMut(Option<u8>)) {
            self.core.gdb_serialize(&mut write_byte);
            for value in [self.orig_rax, self.fs_base, self.gs_base] {
                for b in value.to_le_bytes() {
                    write_byte(Some(b));
                }
            }
        }

        fn gdb_deserialize(&mut self, bytes: &[u8]) -> Result<(), ()> {
            if bytes.len() != CORE_BYTES + 24 {
                return Err(());
            }
            self.core.gdb_deserialize(&bytes[..CORE_BYTES])?;
            let word = |i: usize| {
                let at = CORE_BYTES + 8 * i;
                let mut b = [0u8; 8];
                b.copy_from_slice(&bytes[at..at + 8]);
                u64::from_le_bytes(b)
            };
            self.orig_rax = word(0);
            self.fs_base = word(1);
            self.gs_base = word(2);
            Ok(())
        }
    }

    #[derive(Debug, Clone, Copy)]
    pub enum TandemX86_64RegId {
        Core(X86_64CoreRegId),
        OrigRax,
        FsBase,
        GsBase,
    }

    impl RegId for TandemX86_64RegId {
        fn from_raw_id(id: usize) -> Option<(Self, Option<NonZeroUsize>)> {
            let reg = match id {
                57 => TandemX86_64RegId::OrigRax,
                58 => TandemX86_64RegId::FsBase,
                59 => TandemX86_64RegId::GsBase,
                _ => {
                    let (core, size) = X86_64CoreRegId::from_raw_id(id)?;
                    return Some((TandemX86_64RegId::Core(core), size));
                }
            };
            Some((reg, NonZeroUsize::new(8)))
        }
    }

    impl Arch for TandemX86_64 {
        type Usize = u64;
        type Registers = TandemX86_64Regs;
        type RegId = TandemX86_64RegId;
        type BreakpointKind = usize;

        fn target_description_xml() -> Option<&'static str> {
            Some(TARGET_XML)
        }
    }

    /// The registers in `g`-packet order; gdb numbers them in document order (core 0-39, sse 40-56,
    /// orig_rax 57, fs_base 58, gs_base 59).
    const TARGET_XML: &str = r#"<?xml version="1.0"?>
<!DOCTYPE target SYSTEM "gdb-target.dtd">
<target version="1.0">
<architecture>i386:x86-64</architecture>
<osabi>GNU/Linux</osabi>
<feature name="org.gnu.gdb.i386.core">
<flags id="i386_eflags" size="4">
<field name="CF" start="0" end="0"/><field name="" start="1" end="1"/><field name="PF" start="2" end="2"/>
<field name="AF" start="4" end="4"/><field name="ZF" start="6" end="6"/><field name="SF" start="7" end="7"/>
<field name="TF" start="8" end="8"/><field name="IF" start="9" end="9"/><field name="DF" start="10" end="10"/>
<field name="OF" start="11" end="11"/><field name="NT" start="14" end="14"/><field name="RF" start="16" end="16"/>
<field name="VM" start="17" end="17"/><field name="AC" start="18" end="18"/><field name="VIF" start="19" end="19"/>
<field name="VIP" start="20" end="20"/><field name="ID" start="21" end="21"/>
</flags>
<reg name="rax" bitsize="64" type="int64"/><reg name="rbx" bitsize="64" type="int64"/>
<reg name="rcx" bitsize="64" type="int64"/><reg name="rdx" bitsize="64" type="int64"/>
<reg name="rsi" bitsize="64" type="int64"/><reg name="rdi" bitsize="64" type="int64"/>
<reg name="rbp" bitsize="64" type="data_ptr"/><reg name="rsp" bitsize="64" type="data_ptr"/>
<reg name="r8" bitsize="64" type="int64"/><reg name="r9" bitsize="64" type="int64"/>
<reg name="r10" bitsize="64" type="int64"/><reg name="r11" bitsize="64" type="int64"/>
<reg name="r12" bitsize="64" type="int64"/><reg name="r13" bitsize="64" type="int64"/>
<reg name="r14" bitsize="64" type="int64"/><reg name="r15" bitsize="64" type="int64"/>
<reg name="rip" bitsize="64" type="code_ptr"/><reg name="eflags" bitsize="32" type="i386_eflags"/>
<reg name="cs" bitsize="32" type="int32"/><reg name="ss" bitsize="32" type="int32"/>
<reg name="ds" bitsize="32" type="int32"/><reg name="es" bitsize="32" type="int32"/>
<reg name="fs" bitsize="32" type="int32"/><reg name="gs" bitsize="32" type="int32"/>
<reg name="st0" bitsize="80" type="i387_ext"/><reg name="st1" bitsize="80" type="i387_ext"/>
<reg name="st2" bitsize="80" type="i387_ext"/><reg name="st3" bitsize="80" type="i387_ext"/>
<reg name="st4" bitsize="80" type="i387_ext"/><reg name="st5" bitsize="80" type="i387_ext"/>
<reg name="st6" bitsize="80" type="i387_ext"/><reg name="st7" bitsize="80" type="i387_ext"/>
<reg name="fctrl" bitsize="32" type="int" group="float"/><reg name="fstat" bitsize="32" type="int" group="float"/>
<reg name="ftag" bitsize="32" type="int" group="float"/><reg name="fiseg" bitsize="32" type="int" group="float"/>
<reg name="fioff" bitsize="32" type="int" group="float"/><reg name="foseg" bitsize="32" type="int" group="float"/>
<reg name="fooff" bitsize="32" type="int" group="float"/><reg name="fop" bitsize="32" type="int" group="float"/>
</feature>
<feature name="org.gnu.gdb.i386.sse">
<vector id="v4f" type="ieee_single" count="4"/><vector id="v2d" type="ieee_double" count="2"/>
<vector id="v16i8" type="int8" count="16"/><vector id="v8i16" type="int16" count="8"/>
<vector id="v4i32" type="int32" count="4"/><vector id="v2i64" type="int64" count="2"/>
<union id="vec128">
<field name="v4_float" type="v4f"/><field name="v2_double" type="v2d"/><field name="v16_int8" type="v16i8"/>
<field name="v8_int16" type="v8i16"/><field name="v4_int32" type="v4i32"/><field name="v2_int64" type="v2i64"/>
<field name="uint128" type="uint128"/>
</union>
<flags id="i386_mxcsr" size="4">
<field name="IE" start="0" end="0"/><field name="DE" start="1" end="1"/><field name="ZE" start="2" end="2"/>
<field name="OE" start="3" end="3"/><field name="UE" start="4" end="4"/><field name="PE" start="5" end="5"/>
<field name="DAZ" start="6" end="6"/><field name="IM" start="7" end="7"/><field name="DM" start="8" end="8"/>
<field name="ZM" start="9" end="9"/><field name="OM" start="10" end="10"/><field name="UM" start="11" end="11"/>
<field name="PM" start="12" end="12"/><field name="FZ" start="15" end="15"/>
</flags>
<reg name="xmm0" bitsize="128" type="vec128"/><reg name="xmm1" bitsize="128" type="vec128"/>
<reg name="xmm2" bitsize="128" type="vec128"/><reg name="xmm3" bitsize="128" type="vec128"/>
<reg name="xmm4" bitsize="128" type="vec128"/><reg name="xmm5" bitsize="128" type="vec128"/>
<reg name="xmm6" bitsize="128" type="vec128"/><reg name="xmm7" bitsize="128" type="vec128"/>
<reg name="xmm8" bitsize="128" type="vec128"/><reg name="xmm9" bitsize="128" type="vec128"/>
<reg name="xmm10" bitsize="128" type="vec128"/><reg name="xmm11" bitsize="128" type="vec128"/>
<reg name="xmm12" bitsize="128" type="vec128"/><reg name="xmm13" bitsize="128" type="vec128"/>
<reg name="xmm14" bitsize="128" type="vec128"/><reg name="xmm15" bitsize="128" type="vec128"/>
<reg name="mxcsr" bitsize="32" type="i386_mxcsr" group="vector"/>
</feature>
<feature name="org.gnu.gdb.i386.linux">
<reg name="orig_rax" bitsize="64" type="int" regnum="57"/>
</feature>
<feature name="org.gnu.gdb.i386.segments">
<reg name="fs_base" bitsize="64" type="int"/><reg name="gs_base" bitsize="64" type="int"/>
</feature>
</target>"#;

    #[cfg(test)]
    mod tests {
        use super::*;

        /// The `g` packet's length must match the registers the description names (8 bytes each after core).
        #[test]
        fn serialized_length_matches_the_description() {
            let mut bytes = Vec::new();
            TandemX86_64Regs::default().gdb_serialize(|b| bytes.push(b.unwrap_or(0)));
            assert_eq!(bytes.len(), CORE_BYTES + 24);
            assert_eq!(TARGET_XML.matches("<reg ").count(), 60);
            let mut back = TandemX86_64Regs::default();
            let mut regs = TandemX86_64Regs {
                fs_base: 0x1234,
                gs_base: 0x5678,
                orig_rax: 9,
                ..Default::default()
            };
            regs.core.rip = 0x401000;
            bytes.clear();
            regs.gdb_serialize(|b| bytes.push(b.unwrap_or(0)));
            back.gdb_deserialize(&bytes).unwrap();
            assert_eq!(back, regs);
            assert!(back.gdb_deserialize(&bytes[1..]).is_err());
        }
    }
}
