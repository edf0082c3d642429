//! The GDB remote-protocol server of the replay debugger: `tandem debug FILE --gdb ADDR` serves a trace's
//! timeline to gdb, forwards and backwards.
//!
//! What it owns: the translation between gdbstub's target traits and the [`Debugger`]. It does no stepping,
//! breakpoint checking or reverse execution of its own: `continue` is [`Debugger::continue_forward`],
//! `reverse-continue` is [`Debugger::continue_backward`], stepping in either direction is a seek on the
//! debugger's [`crate::timeline::Timeline`], and gdb's `Z0`/`Z2` packets become the debugger's breakpoints and
//! watchpoints. There is one engine; this module is a protocol front end to it.
//!
//! Invariants: a replay is read-only, so register and memory writes are refused (a non-fatal error, gdb says
//! so and carries on); at the edges of history a move reports `replaylog:begin` / `replaylog:end` (the GDB
//! remote protocol's "Stop Reply Packets", as rr does) instead of running off them; bad packets and unknown
//! monitor commands are answered, never a panic.
//!
//! The target description (org.gnu.gdb.i386.core, .sse, .linux and .segments, following gdb's
//! features/i386/64bit-*.xml) adds `orig_rax`, `fs_base` and `gs_base` to gdbstub_arch's X86_64_SSE register
//! file, so `info registers fs_base` works as it does against a live Linux process.
//!
//! Interrupts: during `continue` and `reverse-continue` the server peeks at the connection every
//! `debugger::POLL_INTERVAL_INSNS` instructions or so; gdb's interrupt byte (Ctrl-C) stops the move at an exact
//! icount and is reported as SIGINT, after which every command works from there (a reverse-continue that is
//! interrupted stops at the earliest icount from which the rest of the way back was searched).
//!
//! Limits: a single step and a reverse step (at most one checkpoint interval of re-execution) and
//! `monitor seek` run to completion without polling; every move is bounded by the recorded history
//! (`Timeline::icount_end`).

use crate::debugger::{Debugger, Stop};
use gdbstub::common::Signal;
use gdbstub::conn::{Connection, ConnectionExt};
use gdbstub::stub::run_blocking::{self, BlockingEventLoop};
use gdbstub::stub::{DisconnectReason, GdbStub, SingleThreadStopReason};
use gdbstub::target::ext::base::reverse_exec::{
    ReplayLogPosition, ReverseCont, ReverseContOps, ReverseStep, ReverseStepOps,
};
use gdbstub::target::ext::base::singlethread::{
    SingleThreadBase, SingleThreadResume, SingleThreadResumeOps, SingleThreadSingleStep,
    SingleThreadSingleStepOps,
};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::{
    Breakpoints, BreakpointsOps, HwWatchpoint, HwWatchpointOps, SwBreakpoint, SwBreakpointOps,
    WatchKind,
};
use gdbstub::target::ext::monitor_cmd::{outputln, ConsoleOutput, MonitorCmd, MonitorCmdOps};
use gdbstub::target::{Target, TargetError, TargetResult};
use std::collections::BTreeMap;
use tandem_emulator::cpu::{RAX, RBP, RBX, RCX, RDI, RDX, RSI, RSP};

pub use arch::{TandemX86_64, TandemX86_64Regs};

/// Errors of a gdb session.
#[derive(Debug, thiserror::Error)]
pub enum GdbServerError {
    #[error("gdb connection failed ({kind}): {source}")]
    Connection {
        /// What the stub was doing (gdbstub's ConnectionErrorKind, which it does not export).
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
    /// gdb sent `k` (`kill`).
    Killed,
}

/// The move gdb asked for, performed by the event loop once gdbstub has answered the resume packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    None,
    Continue,
    Step,
    ReverseContinue,
    ReverseStep,
}

/// The debugger as gdbstub's target.
pub struct GdbTarget {
    debugger: Debugger,
    action: Action,
    /// gdb's watchpoints by (address, length), with the debugger's ids, so a stop can name the address.
    watchpoints: BTreeMap<(u64, u64), u32>,
}

impl GdbTarget {
    pub fn new(debugger: Debugger) -> GdbTarget {
        GdbTarget {
            debugger,
            action: Action::None,
            watchpoints: BTreeMap::new(),
        }
    }

    pub fn into_debugger(self) -> Debugger {
        self.debugger
    }

    fn stop_reason(&self, stop: Stop) -> SingleThreadStopReason<u64> {
        match stop {
            Stop::Breakpoint(_) => SingleThreadStopReason::SwBreak(()),
            Stop::Watchpoint(id, _, _) => {
                let addr = self
                    .watchpoints
                    .iter()
                    .find(|(_, &i)| i == id)
                    .map(|(&(addr, _), _)| addr)
                    .unwrap_or(0);
                SingleThreadStopReason::Watch {
                    tid: (),
                    kind: WatchKind::Write,
                    addr,
                }
            }
            Stop::End => SingleThreadStopReason::ReplayLog {
                tid: None,
                pos: ReplayLogPosition::End,
            },
            Stop::Start => SingleThreadStopReason::ReplayLog {
                tid: None,
                pos: ReplayLogPosition::Begin,
            },
            Stop::Interrupted => SingleThreadStopReason::Signal(Signal::SIGINT),
        }
    }

    /// Performs the pending move; the stop to report, or None when `poll` interrupted it (the position is
    /// then the exact icount where the move stopped, and the caller reports the interrupt).
    fn perform(&mut self, poll: &mut dyn FnMut() -> bool) -> Option<SingleThreadStopReason<u64>> {
        let action = std::mem::replace(&mut self.action, Action::None);
        let stop = match action {
            Action::None => return Some(SingleThreadStopReason::DoneStep),
            Action::Continue => self.debugger.continue_forward_polling(poll),
            Action::ReverseContinue => self.debugger.continue_backward_polling(poll),
            Action::Step => {
                if self.debugger.at_end() {
                    return Some(self.stop_reason(Stop::End));
                }
                let icount = self.debugger.timeline.icount();
                self.debugger.progress_to(icount + 1);
                return Some(SingleThreadStopReason::DoneStep);
            }
            Action::ReverseStep => {
                let icount = self.debugger.timeline.icount();
                if icount == 0 {
                    return Some(self.stop_reason(Stop::Start));
                }
                self.debugger.progress_to(icount - 1);
                return Some(SingleThreadStopReason::DoneStep);
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

impl Target for GdbTarget {
    type Arch = TandemX86_64;
    type Error = &'static str;

    fn base_ops(&mut self) -> BaseOps<'_, Self::Arch, Self::Error> {
        BaseOps::SingleThread(self)
    }

    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }

    fn support_monitor_cmd(&mut self) -> Option<MonitorCmdOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadBase for GdbTarget {
    fn read_registers(&mut self, regs: &mut TandemX86_64Regs) -> TargetResult<(), Self> {
        let r = self.debugger.timeline.replayer.hv.guest.registers();
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

    fn write_registers(&mut self, _regs: &TandemX86_64Regs) -> TargetResult<(), Self> {
        // A replay follows its trace; a changed register would make it diverge.
        Err(TargetError::NonFatal)
    }

    fn read_addrs(&mut self, start_addr: u64, data: &mut [u8]) -> TargetResult<usize, Self> {
        let mem = self.debugger.timeline.replayer.hv.guest.memory();
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

    fn write_addrs(&mut self, _start_addr: u64, _data: &[u8]) -> TargetResult<(), Self> {
        Err(TargetError::NonFatal)
    }

    fn support_resume(&mut self) -> Option<SingleThreadResumeOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadResume for GdbTarget {
    fn resume(&mut self, signal: Option<Signal>) -> Result<(), Self::Error> {
        if signal.is_some() {
            return Err("a replay cannot deliver a signal gdb asks for; continue without one");
        }
        self.action = Action::Continue;
        Ok(())
    }

    fn support_single_step(&mut self) -> Option<SingleThreadSingleStepOps<'_, Self>> {
        Some(self)
    }

    fn support_reverse_cont(&mut self) -> Option<ReverseContOps<'_, (), Self>> {
        Some(self)
    }

    fn support_reverse_step(&mut self) -> Option<ReverseStepOps<'_, (), Self>> {
        Some(self)
    }
}

impl SingleThreadSingleStep for GdbTarget {
    fn step(&mut self, signal: Option<Signal>) -> Result<(), Self::Error> {
        if signal.is_some() {
            return Err("a replay cannot deliver a signal gdb asks for; step without one");
        }
        self.action = Action::Step;
        Ok(())
    }
}

impl ReverseCont<()> for GdbTarget {
    fn reverse_cont(&mut self) -> Result<(), Self::Error> {
        self.action = Action::ReverseContinue;
        Ok(())
    }
}

impl ReverseStep<()> for GdbTarget {
    fn reverse_step(&mut self, _tid: ()) -> Result<(), Self::Error> {
        self.action = Action::ReverseStep;
        Ok(())
    }
}

impl Breakpoints for GdbTarget {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_watchpoint(&mut self) -> Option<HwWatchpointOps<'_, Self>> {
        Some(self)
    }
}

impl SwBreakpoint for GdbTarget {
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

impl HwWatchpoint for GdbTarget {
    fn add_hw_watchpoint(
        &mut self,
        addr: u64,
        len: u64,
        kind: WatchKind,
    ) -> TargetResult<bool, Self> {
        // The debugger sees writes only (it compares the bytes after each instruction).
        if kind != WatchKind::Write || self.watchpoints.contains_key(&(addr, len)) {
            return Ok(false);
        }
        let id = self.debugger.add_watchpoint(addr, len);
        self.watchpoints.insert((addr, len), id);
        Ok(true)
    }

    fn remove_hw_watchpoint(
        &mut self,
        addr: u64,
        len: u64,
        kind: WatchKind,
    ) -> TargetResult<bool, Self> {
        if kind != WatchKind::Write || self.watchpoints.remove(&(addr, len)).is_none() {
            return Ok(false);
        }
        self.debugger.remove_watchpoint_at(addr);
        // Other watchpoints at the same address (different lengths) were removed with it: put them back.
        let same_address: Vec<(u64, u64)> = self
            .watchpoints
            .keys()
            .filter(|(a, _)| *a == addr)
            .copied()
            .collect();
        for key in same_address {
            let id = self.debugger.add_watchpoint(key.0, key.1);
            self.watchpoints.insert(key, id);
        }
        Ok(true)
    }
}

impl MonitorCmd for GdbTarget {
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

/// gdbstub's blocking event loop over [`GdbTarget`].
enum EventLoop {}

impl BlockingEventLoop for EventLoop {
    type Target = GdbTarget;
    type Connection = Box<dyn ConnectionExt<Error = std::io::Error>>;
    type StopReason = SingleThreadStopReason<u64>;

    #[allow(clippy::type_complexity)]
    fn wait_for_stop_reason(
        target: &mut GdbTarget,
        conn: &mut Self::Connection,
    ) -> Result<
        run_blocking::Event<Self::StopReason>,
        run_blocking::WaitForStopReasonError<&'static str, <Self::Connection as Connection>::Error>,
    > {
        // A byte that arrived since the resume (a Ctrl-C) is handled before a step starts. A continue looks
        // for it at its first poll, after `POLL_INTERVAL_INSNS` instructions: an interrupt sent with the
        // resume stops it at the same place every time.
        let polls = matches!(target.action, Action::Continue | Action::ReverseContinue);
        if !polls && matches!(conn.peek(), Ok(Some(_))) {
            let byte = conn
                .read()
                .map_err(run_blocking::WaitForStopReasonError::Connection)?;
            return Ok(run_blocking::Event::IncomingData(byte));
        }
        // During the move, the connection is peeked between chunks (Debugger::POLL_INTERVAL_INSNS): gdb sends
        // nothing but the interrupt byte while the target runs. Another byte, or an error, does not stop the
        // move; it is read when the move is over.
        let mut poll = || matches!(conn.peek(), Ok(Some(INTERRUPT_BYTE)));
        match target.perform(&mut poll) {
            Some(stop) => Ok(run_blocking::Event::TargetStopped(stop)),
            None => {
                // The interrupt byte goes through gdbstub, which calls on_interrupt to report SIGINT.
                let byte = conn
                    .read()
                    .map_err(run_blocking::WaitForStopReasonError::Connection)?;
                Ok(run_blocking::Event::IncomingData(byte))
            }
        }
    }

    fn on_interrupt(target: &mut GdbTarget) -> Result<Option<Self::StopReason>, &'static str> {
        target.action = Action::None;
        Ok(Some(SingleThreadStopReason::Signal(Signal::SIGINT)))
    }
}

/// Serves `debugger` to one gdb over `conn` until gdb detaches or kills.
pub fn serve(
    debugger: Debugger,
    conn: Box<dyn ConnectionExt<Error = std::io::Error>>,
) -> Result<(SessionEnd, Debugger), GdbServerError> {
    let mut target = GdbTarget::new(debugger);
    let result = GdbStub::new(conn).run_blocking::<EventLoop>(&mut target);
    let end = match result {
        Ok(DisconnectReason::Kill) => SessionEnd::Killed,
        Ok(_) => SessionEnd::Detached,
        Err(e) if e.is_target_error() => {
            return Err(GdbServerError::Target(
                e.into_target_error().unwrap_or("unknown target error"),
            ))
        }
        Err(e) if e.is_connection_error() => match e.into_connection_error() {
            Some((source, kind)) => {
                return Err(GdbServerError::Connection {
                    kind: format!("{kind:?}"),
                    source,
                })
            }
            None => return Err(GdbServerError::Protocol("connection error".into())),
        },
        Err(e) => return Err(GdbServerError::Protocol(e.to_string())),
    };
    Ok((end, target.into_debugger()))
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
