//! Signals: actions, the blocked mask, pending signals, delivery through a real `rt_sigframe`, rt_sigreturn, and
//! the default actions.
//!
//! The frame is the one Linux builds on x86-64 (arch/x86/kernel/signal.c, uapi/asm/sigcontext.h): at the new rsp the
//! return address (sa_restorer), then `struct ucontext` (uc_flags, uc_link, uc_stack, the 256-byte sigcontext with
//! the general registers in the kernel's order, uc_sigmask), then `siginfo` (128 bytes); the FP state (the 512-byte
//! FXSAVE layout, SDM Vol. 1, 10.5.1) sits above, 64-byte aligned, and sigcontext.fpstate points at it. The handler
//! is entered with rdi = signal, rsi = &siginfo, rdx = &ucontext, rax = 0 and rsp + 8 16-byte aligned, as after a call.
//!
//! Synchronous faults (a CPU exception) that are blocked or ignored kill the process, as Linux's force_sig does.
//! A default action that terminates ends the run with 128 + signal as exit status and a diagnostic line.

use super::abi::*;
use super::ids::{Pid, Tid};
use super::kernel::Wait;
use super::{Host, LinuxMachine, Termination};
use crate::cpu::x87::F80;
use crate::cpu::{Cpu, Exception, RAX, RBP, RBX, RCX, RDI, RDX, RSI, RSP};
use crate::memory::Access;

pub const SIG_DFL: u64 = 0;
pub const SIG_IGN: u64 = 1;
pub const SA_ONSTACK: u64 = 0x0800_0000;
pub const SA_RESTART: u64 = 0x1000_0000;
pub const SA_NODEFER: u64 = 0x4000_0000;
pub const SA_RESETHAND: u64 = 0x8000_0000;
pub const SS_ONSTACK: u32 = 1;
pub const SS_DISABLE: u32 = 2;

const UCONTEXT_OFFSET: u64 = 8;
const SIGCONTEXT_OFFSET: u64 = UCONTEXT_OFFSET + 40;
const SIGMASK_OFFSET: u64 = SIGCONTEXT_OFFSET + 256;
const SIGINFO_OFFSET: u64 = SIGMASK_OFFSET + 8;
const FRAME_BYTES: u64 = SIGINFO_OFFSET + 128;
const FXSAVE_BYTES: u64 = 512;
/// The flags a sigreturn may change (arch/x86/kernel/signal.c FIX_EFLAGS): CF PF AF ZF SF TF DF OF AC RF.
const RFLAGS_USER_MASK: u64 =
    0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 0x100 | 0x400 | 0x800 | 0x4_0000 | 0x1_0000;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigAction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

/// The fields of siginfo that the layer fills.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigInfo {
    pub signo: i32,
    pub code: i32,
    /// si_addr for faults; for kill-like signals, si_pid in the low 32 bits and si_uid in the high.
    pub addr: u64,
    /// The word at offset 24: si_value of a timer or queued signal, si_status of SIGCHLD (0 for the others).
    pub value: u64,
}

/// si_code values (include/uapi/asm-generic/siginfo.h).
pub const SI_USER: i32 = 0;
pub const SI_TKILL: i32 = -6;
pub const CLD_EXITED: i32 = 1;
pub const CLD_KILLED: i32 = 2;

impl SigInfo {
    /// A signal sent by a process (kill, tkill, tgkill): si_pid and si_uid of the sender.
    pub fn from_process(signo: i32, code: i32, sender: i32) -> SigInfo {
        SigInfo {
            signo,
            code,
            addr: (sender as u32 as u64) | (super::GUEST_UID << 32),
            value: 0,
        }
    }
}

/// What an early-kill SIGBUS (BUS_MCEERR_AO) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EarlyKill {
    /// The default action ended the process.
    Killed,
    /// The guest's handler was entered.
    HandlerRuns,
    /// SIGBUS is ignored (or the guest had already ended): nothing happened.
    Ignored,
    /// SIGBUS is blocked: the AO signal is dropped; touching the page raises BUS_MCEERR_AR.
    Blocked,
}

pub const BUS_MCEERR_AR: i32 = 4;
pub const BUS_MCEERR_AO: i32 = 5;

pub fn bit(sig: i32) -> u64 {
    1u64 << ((sig - 1) as u64 & 63)
}

/// Syscalls that SA_RESTART restarts after a handler (signal(7), "Interruption of system calls and library
/// functions by signal handlers"); the sleeps, poll, select, epoll_wait, pause and sigsuspend are never
/// restarted and fail with EINTR.
fn restarted_after_handler(nr: u64) -> bool {
    matches!(
        nr,
        0 | 1
            | 2
            | 16
            | 17
            | 18
            | 19
            | 20
            | 40
            | 42
            | 43
            | 44
            | 45
            | 46
            | 47
            | 61
            | 72
            | 73
            | 202
            | 247
            | 257
            | 288
            | 295
            | 296
            | 299
            | 307
    )
}

/// Signals whose default action is to ignore them (signal(7)); the stop signals are ignored too, as a lone
/// process has nobody to continue it.
fn default_ignores(sig: i32) -> bool {
    matches!(
        sig,
        SIGCHLD | SIGCONT | SIGURG | SIGWINCH | SIGSTOP | SIGTSTP | SIGTTIN | SIGTTOU
    )
}

/// The signal and siginfo Linux sends for a CPU exception (arch/x86/kernel/traps.c, mm/fault.c).
pub fn signal_for(e: Exception, rip: u64) -> SigInfo {
    const SI_KERNEL: i32 = 0x80;
    let (signo, code, addr) = match e {
        Exception::PageFault { addr, present, .. } => (SIGSEGV, if present { 2 } else { 1 }, addr),
        Exception::GeneralProtection => (SIGSEGV, SI_KERNEL, 0),
        Exception::InvalidOpcode => (SIGILL, 2, rip),
        Exception::DivideError => (SIGFPE, 1, rip),
        Exception::Breakpoint => (SIGTRAP, SI_KERNEL, 0),
        Exception::MachineCheck { addr, .. } => (SIGBUS, BUS_MCEERR_AR, addr),
        Exception::X87FloatingPoint | Exception::SimdFloatingPoint => (SIGFPE, 0, rip),
    };
    SigInfo {
        signo,
        code,
        addr,
        value: 0,
    }
}

/// The 512-byte FXSAVE image of the FPU, MXCSR and XMM registers.
pub fn fxsave(cpu: &Cpu) -> [u8; 512] {
    fxsave_of(&cpu.regs.x87, cpu.regs.mxcsr, &cpu.regs.xmm)
}

/// The FXSAVE image of a thread's registers, running or not (core dumps write one per thread).
pub fn fxsave_registers(r: &crate::cpu::Registers) -> [u8; 512] {
    fxsave_of(&r.x87, r.mxcsr, &r.xmm)
}

fn fxsave_of(x: &crate::cpu::X87, mxcsr: u32, xmm: &[u128; 16]) -> [u8; 512] {
    let mut b = [0u8; 512];
    b[0..2].copy_from_slice(&x.control.to_le_bytes());
    b[2..4].copy_from_slice(&x.status_word().to_le_bytes());
    let mut abridged = 0u8;
    for p in 0..8 {
        if (x.tag >> (2 * p)) & 3 != 3 {
            abridged |= 1 << p;
        }
    }
    b[4] = abridged;
    b[6..8].copy_from_slice(&x.last_opcode.to_le_bytes());
    b[8..16].copy_from_slice(&x.last_ip.to_le_bytes());
    b[16..24].copy_from_slice(&x.last_dp.to_le_bytes());
    b[24..28].copy_from_slice(&mxcsr.to_le_bytes());
    b[28..32].copy_from_slice(&0xffffu32.to_le_bytes());
    for i in 0..8 {
        let r = x.regs[(x.top as usize + i) & 7];
        let at = 32 + 16 * i;
        b[at..at + 8].copy_from_slice(&r.significand.to_le_bytes());
        b[at + 8..at + 10].copy_from_slice(&r.sign_exponent.to_le_bytes());
    }
    for (i, x) in xmm.iter().enumerate() {
        let at = 160 + 16 * i;
        b[at..at + 16].copy_from_slice(&x.to_le_bytes());
    }
    b
}

/// The full two-bit tag of a non-empty register, from its contents (SDM Vol. 1, 8.1.7).
fn tag_of(r: F80) -> u16 {
    let exponent = r.sign_exponent & 0x7fff;
    if exponent == 0x7fff {
        2
    } else if exponent == 0 {
        if r.significand == 0 {
            1
        } else {
            2
        }
    } else if r.significand >> 63 == 0 {
        2
    } else {
        0
    }
}

/// Loads an FXSAVE image (FXRSTOR). Reserved MXCSR bits are cleared rather than faulting.
pub fn fxrstor(cpu: &mut Cpu, b: &[u8; 512]) {
    let x = &mut cpu.regs.x87;
    x.control = u16::from_le_bytes([b[0], b[1]]);
    let sw = u16::from_le_bytes([b[2], b[3]]);
    x.top = ((sw >> 11) & 7) as u8;
    x.status = sw & !0x3800;
    x.last_opcode = u16::from_le_bytes([b[6], b[7]]);
    x.last_ip = u64::from_le_bytes(b[8..16].try_into().unwrap());
    x.last_dp = u64::from_le_bytes(b[16..24].try_into().unwrap());
    for i in 0..8 {
        let at = 32 + 16 * i;
        x.regs[(x.top as usize + i) & 7] = F80 {
            significand: u64::from_le_bytes(b[at..at + 8].try_into().unwrap()),
            sign_exponent: u16::from_le_bytes([b[at + 8], b[at + 9]]),
        };
    }
    let mut tag = 0u16;
    for p in 0..8 {
        let t = if b[4] & (1 << p) == 0 {
            3
        } else {
            tag_of(x.regs[p])
        };
        tag |= t << (2 * p);
    }
    x.tag = tag;
    cpu.regs.mxcsr = u32::from_le_bytes(b[24..28].try_into().unwrap()) & 0xffff;
    for i in 0..16 {
        let at = 160 + 16 * i;
        cpu.regs.xmm[i] = u128::from_le_bytes(b[at..at + 16].try_into().unwrap());
    }
}

/// sigcontext's register order (uapi/asm/sigcontext.h): r8-r15, rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp.
const SIGCONTEXT_GPRS: [usize; 16] = [
    8, 9, 10, 11, 12, 13, 14, 15, RDI, RSI, RBP, RBX, RDX, RAX, RCX, RSP,
];

impl<H: Host> LinuxMachine<H> {
    /// A CPU exception: deliver the matching signal, or end the run.
    pub(super) fn exception(&mut self, e: Exception) {
        let rip = self.machine.cpu.regs.rip;
        if e == Exception::Breakpoint {
            // INT3 is a trap: Linux reports rip after the instruction.
            self.machine.cpu.regs.rip = rip.wrapping_add(1);
        }
        let info = signal_for(e, rip);
        if let Exception::MachineCheck { frame, .. } = e {
            *self.stats.machine_checks.entry(frame.0).or_insert(0) += 1;
        }
        self.stats.last_fault = Some(info);
        if e == Exception::InvalidOpcode {
            if let Some((bytes, text)) = crate::cpu::unimplemented_at(&self.machine.cpu.mem, rip) {
                let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
                let key = format!("{} ({text})", hex.join(" "));
                *self
                    .stats
                    .unimplemented_instructions
                    .entry(key)
                    .or_insert(0) += 1;
            }
        }
        let action = self.proc.sigactions[info.signo as usize];
        let blocked = self.thread.sig.blocked & bit(info.signo) != 0;
        if blocked || action.handler == SIG_IGN || action.handler == SIG_DFL {
            let mut cause = e.to_string();
            if e == Exception::InvalidOpcode {
                let (bytes, text) = self.machine.describe_instruction(rip);
                let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
                cause = format!("{cause}: {} ({text})", hex.join(" "));
            }
            if blocked {
                cause.push_str(" (the signal was blocked)");
            }
            self.end_process(Termination::Signaled {
                signal: info.signo,
                rip,
                icount: self.machine.cpu.icount,
                cause,
            });
            return;
        }
        let trapno = match e {
            Exception::DivideError => 0,
            Exception::Breakpoint => 3,
            Exception::InvalidOpcode => 6,
            Exception::GeneralProtection => 13,
            Exception::PageFault { .. } => 14,
            Exception::X87FloatingPoint => 16,
            Exception::MachineCheck { .. } => 18,
            Exception::SimdFloatingPoint => 19,
        };
        let (cr2, err) = match e {
            Exception::PageFault {
                addr,
                access,
                present,
            } => (
                addr,
                present as u64
                    | ((access == Access::Write) as u64) << 1
                    | 4
                    | ((access == Access::Execute) as u64) << 4,
            ),
            _ => (0, 0),
        };
        self.deliver(info, trapno, err, cr2);
    }

    /// Sends SIGBUS with BUS_MCEERR_AO for a memory error at `addr` at once (the early kill of
    /// mm/memory-failure.c, kill_proc): a handler runs, the default action kills, an ignored or blocked signal is
    /// dropped (the error then surfaces as BUS_MCEERR_AR when the page is touched).
    pub fn send_memory_error(&mut self, addr: u64) -> EarlyKill {
        if self.termination.is_some() {
            return EarlyKill::Ignored;
        }
        let info = SigInfo {
            signo: SIGBUS,
            code: BUS_MCEERR_AO,
            addr,
            value: 0,
        };
        let action = self.proc.sigactions[SIGBUS as usize];
        if action.handler == SIG_IGN {
            return EarlyKill::Ignored;
        }
        if self.thread.sig.blocked & bit(SIGBUS) != 0 {
            return EarlyKill::Blocked;
        }
        self.stats.last_fault = Some(info);
        if action.handler == SIG_DFL {
            self.end_process(Termination::Signaled {
                signal: SIGBUS,
                rip: self.machine.cpu.regs.rip,
                icount: self.machine.cpu.icount,
                cause: format!("memory error at {addr:#x} (BUS_MCEERR_AO, early kill)"),
            });
            return EarlyKill::Killed;
        }
        self.deliver(info, 18, 0, 0);
        if self.termination.is_some() {
            EarlyKill::Killed
        } else {
            EarlyKill::HandlerRuns
        }
    }

    /// The early kill of the other processes whose address space shares `frame` with the running one
    /// copy-on-write (`Memory::shares_frame`): each is sent SIGBUS with BUS_MCEERR_AO for its own first page
    /// mapping the frame, as kill_procs signals every process that maps a failed page. A process takes it
    /// when it next runs (its handler, or the default action that kills it). Returns the processes signalled,
    /// in pid order.
    pub fn send_memory_error_to_sharers(&mut self, frame: crate::memory::FrameId) -> Vec<Pid> {
        if self.termination.is_some() {
            return Vec::new();
        }
        let running = &self.machine.cpu.mem;
        let targets: Vec<(Pid, u64)> = self
            .procs
            .values()
            .filter(|p| !p.exited && p.space != self.proc.space)
            .filter_map(|p| {
                let mem = &self.spaces.get(&p.space)?.cpu.mem;
                if !running.shares_frame(frame, mem) {
                    return None;
                }
                Some((p.pid, *mem.reverse_map(frame).first()?))
            })
            .collect();
        let mut signalled = Vec::new();
        for (pid, addr) in targets {
            let info = SigInfo {
                signo: SIGBUS,
                code: BUS_MCEERR_AO,
                addr,
                value: 0,
            };
            if !self.ignores(pid, SIGBUS) && self.send_to_process(pid, info).is_ok() {
                signalled.push(pid);
            }
        }
        signalled
    }

    /// Delivers the lowest-numbered signal pending for the running thread (its own first, then its
    /// process's) that it does not block, if any: runs its handler, or its default action.
    pub(super) fn deliver_pending(&mut self) {
        if self.termination.is_some() || !self.current_can_run() {
            return;
        }
        while let Some(info) = self.take_signal() {
            let sig = info.signo;
            let action = self.proc.sigactions[sig as usize];
            if action.handler == SIG_IGN || (action.handler == SIG_DFL && default_ignores(sig)) {
                continue;
            }
            if action.handler == SIG_DFL {
                self.stats.last_fault = Some(info);
                let cause = if info.code == SI_USER || info.code == SI_TKILL {
                    let sender = info.addr as u32 as i32;
                    if sender == self.proc.pid.0 {
                        "sent by the program itself".to_string()
                    } else {
                        format!("sent by process {sender}")
                    }
                } else {
                    format!("si_code {}", info.code)
                };
                self.end_process(Termination::Signaled {
                    signal: sig,
                    rip: self.machine.cpu.regs.rip,
                    icount: self.machine.cpu.icount,
                    cause,
                });
                return;
            }
            self.deliver(info, 0, 0, 0);
            return;
        }
    }

    /// Dequeues the lowest-numbered signal the running thread does not block: its own, then its process's.
    pub(super) fn take_signal(&mut self) -> Option<SigInfo> {
        let own = self.thread.sig.pending & !self.thread.sig.blocked;
        let shared = self.proc.shared_pending & !self.thread.sig.blocked;
        let ready = own | shared;
        if ready == 0 {
            return None;
        }
        let sig = ready.trailing_zeros() as i32 + 1;
        let info = if own & bit(sig) != 0 {
            self.thread.sig.pending &= !bit(sig);
            self.thread.pending_info.remove(&sig)
        } else {
            self.proc.shared_pending &= !bit(sig);
            self.proc.shared_info.remove(&sig)
        };
        Some(info.unwrap_or_else(|| SigInfo::from_process(sig, SI_USER, self.proc.pid.0)))
    }

    /// Whether a signal pending for the running thread interrupts a syscall it was blocked in (`nr`): None
    /// when none does; Some(true) when its handler asks for SA_RESTART and Linux restarts that syscall,
    /// Some(false) when the syscall fails with EINTR (or the signal's default action ends the process).
    /// Pending signals that are ignored are discarded on the way.
    pub(super) fn interrupting_signal(&mut self, nr: u64) -> Option<bool> {
        loop {
            let ready =
                (self.thread.sig.pending | self.proc.shared_pending) & !self.thread.sig.blocked;
            if ready == 0 {
                return None;
            }
            let sig = ready.trailing_zeros() as i32 + 1;
            let action = self.proc.sigactions[sig as usize];
            if action.handler == SIG_IGN || (action.handler == SIG_DFL && default_ignores(sig)) {
                self.thread.sig.pending &= !bit(sig);
                self.thread.pending_info.remove(&sig);
                self.proc.shared_pending &= !bit(sig);
                self.proc.shared_info.remove(&sig);
                continue;
            }
            if action.handler == SIG_DFL {
                return Some(false);
            }
            return Some(action.flags & SA_RESTART != 0 && restarted_after_handler(nr));
        }
    }

    /// Queues a signal for one thread (tkill, tgkill, SIGPIPE, a timer) and wakes it if it waits.
    pub(super) fn send_to_thread(&mut self, tid: Tid, info: SigInfo) -> Result<(), Errno> {
        let pid = self.thread_ref(tid).ok_or(ESRCH)?.pid;
        if info.signo == 0 || self.ignores(pid, info.signo) {
            return Ok(());
        }
        let t = self.thread_mut(tid).ok_or(ESRCH)?;
        t.sig.pending |= bit(info.signo);
        t.pending_info.entry(info.signo).or_insert(info);
        let blocks = t.sig.is_blocked(info.signo);
        self.bump_generation();
        if !blocks {
            self.interrupt(tid);
        }
        Ok(())
    }

    /// Queues a signal for a whole process (kill): the first of its threads that does not block it (the
    /// running one if it is one of them, else the lowest tid) is woken to take it.
    pub(super) fn send_to_process(&mut self, pid: Pid, info: SigInfo) -> Result<(), Errno> {
        if self.process_ref(pid).is_none() {
            return if self.zombies.contains_key(&pid) {
                Ok(())
            } else {
                Err(ESRCH)
            };
        }
        if info.signo == 0 || self.ignores(pid, info.signo) {
            return Ok(());
        }
        let p = self.process_mut(pid).expect("checked above");
        p.shared_pending |= bit(info.signo);
        p.shared_info.entry(info.signo).or_insert(info);
        self.bump_generation();
        let taker = self.threads_of(pid).into_iter().find(|&t| {
            self.thread_ref(t)
                .is_some_and(|t| !t.sig.is_blocked(info.signo))
        });
        if let Some(tid) = taker {
            self.interrupt(tid);
        }
        Ok(())
    }

    /// A signal arrived for `tid`: if it waits interruptibly, it runs again, and its syscall answers EINTR or
    /// restarts (`restart_syscall`). A vfork parent is not interrupted (it waits for its child, as Linux's
    /// vfork does).
    fn interrupt(&mut self, tid: Tid) {
        match self.blocked.get(&tid).map(|b| &b.wait) {
            Some(Wait::Vfork { .. }) | None => {}
            Some(_) => self.wake(tid, None),
        }
    }

    /// The process ignores `sig` (SIG_IGN, or a default action that ignores): sending it does nothing.
    pub(super) fn ignores(&self, pid: Pid, sig: i32) -> bool {
        let Some(p) = self.process_ref(pid) else {
            return true;
        };
        let action = p.sigactions[sig as usize];
        sig != SIGKILL
            && (action.handler == SIG_IGN || (action.handler == SIG_DFL && default_ignores(sig)))
    }

    /// Builds the rt_sigframe and enters the handler.
    fn deliver(&mut self, info: SigInfo, trapno: u64, err: u64, cr2: u64) {
        let sig = info.signo;
        let action = self.proc.sigactions[sig as usize];
        let cpu = &self.machine.cpu;
        let rsp = cpu.regs.gpr[RSP];
        let on_altstack = self.thread.sig.altstack_flags & SS_DISABLE == 0
            && rsp.wrapping_sub(self.thread.sig.altstack_sp) < self.thread.sig.altstack_size;
        let mut sp = if action.flags & SA_ONSTACK != 0
            && self.thread.sig.altstack_flags & SS_DISABLE == 0
            && !on_altstack
        {
            self.thread
                .sig
                .altstack_sp
                .wrapping_add(self.thread.sig.altstack_size)
        } else {
            // Skip the red zone of the interrupted function (x86-64 ABI, 3.2.2).
            rsp.wrapping_sub(128)
        };
        sp = sp.wrapping_sub(FXSAVE_BYTES) & !63;
        let fpstate = sp;
        let frame = (sp.wrapping_sub(FRAME_BYTES) & !15).wrapping_sub(8);

        let mut f = vec![0u8; FRAME_BYTES as usize];
        let put = |f: &mut Vec<u8>, at: u64, v: u64| {
            f[at as usize..at as usize + 8].copy_from_slice(&v.to_le_bytes())
        };
        put(&mut f, 0, action.restorer);
        // uc_flags: UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS.
        put(&mut f, UCONTEXT_OFFSET, 6);
        put(&mut f, UCONTEXT_OFFSET + 16, self.thread.sig.altstack_sp);
        put(
            &mut f,
            UCONTEXT_OFFSET + 24,
            if on_altstack {
                SS_ONSTACK
            } else {
                self.thread.sig.altstack_flags
            } as u64,
        );
        put(&mut f, UCONTEXT_OFFSET + 32, self.thread.sig.altstack_size);
        for (i, &g) in SIGCONTEXT_GPRS.iter().enumerate() {
            put(&mut f, SIGCONTEXT_OFFSET + 8 * i as u64, cpu.regs.gpr[g]);
        }
        put(&mut f, SIGCONTEXT_OFFSET + 128, cpu.regs.rip);
        put(&mut f, SIGCONTEXT_OFFSET + 136, cpu.rflags());
        // cs = 0x33, gs = fs = 0, ss = 0x2b.
        put(&mut f, SIGCONTEXT_OFFSET + 144, 0x33 | (0x2b << 48));
        put(&mut f, SIGCONTEXT_OFFSET + 152, err);
        put(&mut f, SIGCONTEXT_OFFSET + 160, trapno);
        // After sigsuspend the handler returns to the mask the thread had before the call.
        let saved_mask = self
            .thread
            .saved_mask
            .take()
            .unwrap_or(self.thread.sig.blocked);
        put(&mut f, SIGCONTEXT_OFFSET + 168, saved_mask);
        put(&mut f, SIGCONTEXT_OFFSET + 176, cr2);
        put(&mut f, SIGCONTEXT_OFFSET + 184, fpstate);
        put(&mut f, SIGMASK_OFFSET, saved_mask);
        f[SIGINFO_OFFSET as usize..SIGINFO_OFFSET as usize + 4].copy_from_slice(&sig.to_le_bytes());
        f[SIGINFO_OFFSET as usize + 8..SIGINFO_OFFSET as usize + 12]
            .copy_from_slice(&info.code.to_le_bytes());
        put(&mut f, SIGINFO_OFFSET + 16, info.addr);
        if info.value != 0 {
            put(&mut f, SIGINFO_OFFSET + 24, info.value);
        }
        if info.signo == SIGBUS && (info.code == BUS_MCEERR_AR || info.code == BUS_MCEERR_AO) {
            // si_addr_lsb: the error covers the whole 4 KiB page (kernel/signal.c force_sig_mceerr).
            f[SIGINFO_OFFSET as usize + 24..SIGINFO_OFFSET as usize + 26]
                .copy_from_slice(&12i16.to_le_bytes());
        }
        let fx = fxsave(cpu);

        let mem = &mut self.machine.cpu.mem;
        if mem.write_bytes(fpstate, &fx).is_err() || mem.write_bytes(frame, &f).is_err() {
            // No room for the frame: Linux kills the process with SIGSEGV.
            self.end_process(Termination::Signaled {
                signal: SIGSEGV,
                rip: self.machine.cpu.regs.rip,
                icount: self.machine.cpu.icount,
                cause: format!(
                    "could not write the frame for {} at {frame:#x}",
                    signal_name(sig)
                ),
            });
            return;
        }
        let cpu = &mut self.machine.cpu;
        cpu.regs.gpr[RDI] = sig as u64;
        cpu.regs.gpr[RSI] = frame + SIGINFO_OFFSET;
        cpu.regs.gpr[RDX] = frame + UCONTEXT_OFFSET;
        cpu.regs.gpr[RAX] = 0;
        cpu.regs.gpr[RSP] = frame;
        cpu.regs.rip = action.handler;
        // DF and TF are cleared for the handler.
        let rflags = cpu.rflags() & !(0x400 | 0x100);
        cpu.regs.flags.set_rflags(rflags, !0);
        self.thread.sig.blocked |= action.mask;
        if action.flags & SA_NODEFER == 0 {
            self.thread.sig.blocked |= bit(sig);
        }
        self.thread.sig.blocked &= !(bit(SIGKILL) | bit(SIGSTOP));
        if action.flags & SA_RESETHAND != 0 {
            self.proc.sigactions[sig as usize] = SigAction::default();
        }
        self.stats.signals_delivered += 1;
    }

    /// rt_sigreturn: restores the state saved in the frame at rsp - 8 (the handler's `ret` popped the restorer
    /// address). A frame that cannot be read kills the process with SIGSEGV, as on Linux.
    pub(super) fn sigreturn(&mut self) {
        let frame = self.machine.cpu.regs.gpr[RSP].wrapping_sub(8);
        let mut f = vec![0u8; FRAME_BYTES as usize];
        let mut fx = [0u8; 512];
        let mem = &mut self.machine.cpu.mem;
        let ok = mem.read_bytes(frame, &mut f).is_ok();
        let get = |at: u64| u64::from_le_bytes(f[at as usize..at as usize + 8].try_into().unwrap());
        let fpstate = if ok { get(SIGCONTEXT_OFFSET + 184) } else { 0 };
        let fp_ok = fpstate == 0 || mem.read_bytes(fpstate, &mut fx).is_ok();
        if !ok || !fp_ok {
            self.end_process(Termination::Signaled {
                signal: SIGSEGV,
                rip: self.machine.cpu.regs.rip,
                icount: self.machine.cpu.icount,
                cause: format!("rt_sigreturn with an unreadable frame at {frame:#x}"),
            });
            return;
        }
        let cpu = &mut self.machine.cpu;
        for (i, &g) in SIGCONTEXT_GPRS.iter().enumerate() {
            cpu.regs.gpr[g] = get(SIGCONTEXT_OFFSET + 8 * i as u64);
        }
        cpu.regs.rip = get(SIGCONTEXT_OFFSET + 128);
        let rflags =
            (cpu.rflags() & !RFLAGS_USER_MASK) | (get(SIGCONTEXT_OFFSET + 136) & RFLAGS_USER_MASK);
        cpu.regs.flags.set_rflags(rflags, !0);
        if fpstate != 0 {
            fxrstor(cpu, &fx);
        }
        self.thread.sig.blocked = get(SIGMASK_OFFSET) & !(bit(SIGKILL) | bit(SIGSTOP));
        self.deliver_pending();
    }
}
