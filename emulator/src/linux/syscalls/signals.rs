//! Syscalls of signals: setting them up (rt_sigaction, rt_sigprocmask, sigaltstack), sending them (kill,
//! tkill, tgkill) and waiting for them (pause, rt_sigsuspend, rt_sigtimedwait, rt_sigpending), following
//! signal(7) and the man pages of each. Queueing and delivery are in ../signal.rs.

use super::*;
use crate::linux::ids::{Pid, Tid};
use crate::linux::signal::{SigInfo, SI_TKILL, SI_USER};

impl<H: Host> LinuxMachine<H> {
    // ---------------------------------------------------------------------------------------------------------
    // Signals.

    pub(in crate::linux) fn sys_rt_sigaction(
        &mut self,
        sig: i32,
        act: u64,
        old: u64,
        size: u64,
    ) -> SysResult {
        if !(1..=64).contains(&sig) || size != 8 {
            return Err(EINVAL);
        }
        let new = if act != 0 {
            let b = self.read_mem(act, 32)?;
            let w = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap());
            if sig == SIGKILL || sig == SIGSTOP {
                return Err(EINVAL);
            }
            Some(SigAction {
                handler: w(0),
                flags: w(1),
                restorer: w(2),
                mask: w(3) & !(bit(SIGKILL) | bit(SIGSTOP)),
            })
        } else {
            None
        };
        if old != 0 {
            let o = self.proc.sigactions[sig as usize];
            let mut b = [0u8; 32];
            for (i, v) in [o.handler, o.flags, o.restorer, o.mask].iter().enumerate() {
                b[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
            }
            self.write_mem(old, &b)?;
        }
        if let Some(n) = new {
            self.proc.sigactions[sig as usize] = n;
        }
        Ok(0)
    }

    pub(in crate::linux) fn sys_rt_sigprocmask(
        &mut self,
        how: i32,
        set: u64,
        old: u64,
        size: u64,
    ) -> SysResult {
        if size != 8 {
            return Err(EINVAL);
        }
        let new = if set != 0 {
            Some(self.read_u64(set)?)
        } else {
            None
        };
        if old != 0 {
            self.write_u64(old, self.thread.sig.blocked)?;
        }
        if let Some(s) = new {
            let b = &mut self.thread.sig.blocked;
            match how {
                0 => *b |= s,
                1 => *b &= !s,
                2 => *b = s,
                _ => return Err(EINVAL),
            }
            *b &= !(bit(SIGKILL) | bit(SIGSTOP));
        }
        Ok(0)
    }

    pub(in crate::linux) fn sys_sigaltstack(&mut self, new: u64, old: u64) -> SysResult {
        let rsp = self.machine.cpu.regs.gpr[crate::cpu::RSP];
        let on = self.thread.sig.altstack_flags & SS_DISABLE == 0
            && rsp.wrapping_sub(self.thread.sig.altstack_sp) < self.thread.sig.altstack_size;
        let parsed = if new != 0 {
            let b = self.read_mem(new, 24)?;
            Some((
                u64::from_le_bytes(b[0..8].try_into().unwrap()),
                u32::from_le_bytes(b[8..12].try_into().unwrap()),
                u64::from_le_bytes(b[16..24].try_into().unwrap()),
            ))
        } else {
            None
        };
        if old != 0 {
            let mut b = [0u8; 24];
            b[0..8].copy_from_slice(&self.thread.sig.altstack_sp.to_le_bytes());
            let flags = if on {
                SS_ONSTACK
            } else {
                self.thread.sig.altstack_flags
            };
            b[8..12].copy_from_slice(&flags.to_le_bytes());
            b[16..24].copy_from_slice(&self.thread.sig.altstack_size.to_le_bytes());
            self.write_mem(old, &b)?;
        }
        if let Some((sp, flags, size)) = parsed {
            if on {
                return Err(EPERM);
            }
            if flags & SS_DISABLE != 0 {
                self.thread.sig.altstack_flags = SS_DISABLE;
                self.thread.sig.altstack_sp = 0;
                self.thread.sig.altstack_size = 0;
            } else {
                if size < 2048 {
                    return Err(ENOMEM);
                }
                self.thread.sig.altstack_flags = 0;
                self.thread.sig.altstack_sp = sp;
                self.thread.sig.altstack_size = size;
            }
        }
        Ok(0)
    }
}

impl<H: Host> LinuxMachine<H> {
    /// The syscalls of the signal family that send or wait (kill, tkill, tgkill, pause, rt_sigsuspend,
    /// rt_sigtimedwait, rt_sigpending); None for any other number.
    pub(in crate::linux) fn dispatch_signals(&mut self, nr: u64, a: [u64; 6]) -> Option<Outcome> {
        let r = match nr {
            34 => return Some(Outcome::Block(Wait::Sleep, None)), // pause: only a signal ends it
            62 => self.sys_kill(a[0] as i32, a[1] as i32),
            127 => self.sys_rt_sigpending(a[0], a[1]),
            128 => return Some(self.sys_rt_sigtimedwait(a[0], a[1], a[2], a[3])),
            130 => return Some(self.sys_rt_sigsuspend(a[0], a[1])),
            200 => self.sys_tgkill(None, a[0] as i32, a[1] as i32),
            234 => self.sys_tgkill(Some(a[0] as i32), a[1] as i32, a[2] as i32),
            _ => return None,
        };
        Some(Outcome::Return(r))
    }

    pub(in crate::linux) fn check_signal_number(sig: i32) -> Result<(), Errno> {
        if (0..=NSIG as i32).contains(&sig) {
            Ok(())
        } else {
            Err(EINVAL)
        }
    }

    /// kill(2): a process (pid > 0), the caller's process group (0), every other process (-1), or a process
    /// group (< -1).
    pub(in crate::linux) fn sys_kill(&mut self, pid: i32, sig: i32) -> Result<u64, Errno> {
        Self::check_signal_number(sig)?;
        let me = self.proc.pid;
        let info = SigInfo::from_process(sig, SI_USER, me.0);
        // The return value is set before a handler runs, so its frame saves rax = 0.
        self.machine.cpu.regs.gpr[RAX] = 0;
        if pid > 0 {
            return self.send_to_process(Pid(pid), info).map(|_| 0);
        }
        let targets: Vec<Pid> = match pid {
            0 => self.processes_in_group(self.proc.pgid),
            -1 => self
                .process_ids()
                .into_iter()
                .filter(|&p| p != me)
                .collect(),
            _ => self.processes_in_group(Pid(pid.checked_neg().ok_or(ESRCH)?)),
        };
        if targets.is_empty() {
            return Err(ESRCH);
        }
        for p in targets {
            let _ = self.send_to_process(p, info);
        }
        Ok(0)
    }

    /// tkill(2) (tgid None) and tgkill(2): one thread; SI_TKILL, as raise() and abort() send.
    pub(in crate::linux) fn sys_tgkill(
        &mut self,
        tgid: Option<i32>,
        tid: i32,
        sig: i32,
    ) -> Result<u64, Errno> {
        Self::check_signal_number(sig)?;
        if tid <= 0 || tgid.is_some_and(|g| g <= 0) {
            return Err(EINVAL);
        }
        let target = self.thread_ref(Tid(tid)).ok_or(ESRCH)?;
        if tgid.is_some_and(|g| g != target.pid.0) {
            return Err(ESRCH);
        }
        self.machine.cpu.regs.gpr[RAX] = 0;
        let info = SigInfo::from_process(sig, SI_TKILL, self.proc.pid.0);
        self.send_to_thread(Tid(tid), info).map(|_| 0)
    }

    pub(in crate::linux) fn sys_rt_sigpending(
        &mut self,
        set: u64,
        size: u64,
    ) -> Result<u64, Errno> {
        if size != 8 {
            return Err(EINVAL);
        }
        let pending =
            (self.thread.sig.pending | self.proc.shared_pending) & self.thread.sig.blocked;
        self.write_u64(set, pending)?;
        Ok(0)
    }

    /// rt_sigsuspend(2): the mask is replaced until a signal's handler runs (it returns to the old mask), then
    /// -EINTR.
    pub(in crate::linux) fn sys_rt_sigsuspend(&mut self, mask: u64, size: u64) -> Outcome {
        if size != 8 {
            return Outcome::Return(Err(EINVAL));
        }
        if self.restart_deadline.is_none() && self.thread.saved_mask.is_none() {
            let new = match self.read_u64(mask) {
                Ok(m) => m & !(bit(SIGKILL) | bit(SIGSTOP)),
                Err(e) => return Outcome::Return(Err(e)),
            };
            self.thread.saved_mask = Some(self.thread.sig.blocked);
            self.thread.sig.blocked = new;
        }
        Outcome::Block(Wait::Sleep, None)
    }

    /// rt_sigtimedwait(2): waits for one of `set` (blocked signals, normally) and dequeues it instead of
    /// running a handler; EAGAIN at the timeout.
    pub(in crate::linux) fn sys_rt_sigtimedwait(
        &mut self,
        set: u64,
        info: u64,
        timeout: u64,
        size: u64,
    ) -> Outcome {
        if size != 8 {
            return Outcome::Return(Err(EINVAL));
        }
        let wanted = match self.read_u64(set) {
            Ok(s) => s & !(bit(SIGKILL) | bit(SIGSTOP)),
            Err(e) => return Outcome::Return(Err(e)),
        };
        let deadline = match (self.restart_deadline, timeout) {
            (Some(d), _) => Some(d),
            (None, 0) => None,
            (None, t) => match self.read_timespec(t) {
                Ok(ns) => Some(self.guest_time().saturating_add(ns)),
                Err(e) => return Outcome::Return(Err(e)),
            },
        };
        let own = self.thread.sig.pending & wanted;
        let shared = self.proc.shared_pending & wanted;
        if own | shared != 0 {
            let sig = (own | shared).trailing_zeros() as i32 + 1;
            let taken = if own & bit(sig) != 0 {
                self.thread.sig.pending &= !bit(sig);
                self.thread.pending_info.remove(&sig)
            } else {
                self.proc.shared_pending &= !bit(sig);
                self.proc.shared_info.remove(&sig)
            }
            .unwrap_or_else(|| SigInfo::from_process(sig, SI_USER, self.proc.pid.0));
            if info != 0 {
                let mut b = [0u8; 128];
                b[0..4].copy_from_slice(&taken.signo.to_le_bytes());
                b[8..12].copy_from_slice(&taken.code.to_le_bytes());
                b[16..24].copy_from_slice(&taken.addr.to_le_bytes());
                b[24..32].copy_from_slice(&taken.value.to_le_bytes());
                if let Err(e) = self.write_mem(info, &b) {
                    return Outcome::Return(Err(e));
                }
            }
            return Outcome::Return(Ok(sig as u64));
        }
        if deadline.is_some_and(|d| d <= self.guest_time()) {
            return Outcome::Return(Err(EAGAIN));
        }
        Outcome::Block(Wait::Retry, deadline)
    }
}
