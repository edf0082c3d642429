//! String instructions (SDM Vol. 1, 7.3.9): MOVS, STOS, LODS, CMPS, SCAS in byte, word, doubleword and quadword
//! sizes, with REP, REPE and REPNE.
//!
//! Counting: every iteration of a REP-prefixed instruction retires as one instruction, and a REP instruction with
//! a zero count retires as one. When the run's budget ends before the count does, the instruction stops after the
//! iterations that fit, with rip left on it and rcx, rsi and rdi showing the work done; running again resumes it.
//! This is the state an interrupt leaves on hardware (SDM Vol. 1, 7.3.9.2), so a budget stop is always a state the
//! real CPU can be in. A fault in iteration k leaves iterations 1..k-1 done and counted.
//!
//! The source of MOVS, LODS and CMPS honours an FS or GS segment override; the destination is always ES (base 0).
//! Under an address-size prefix the registers are esi, edi and ecx.

use super::dispatch::Table;
use super::flags::{mask, FlagOp};
use super::{Cpu, Stop, RAX, RCX, RDI, RSI};
use crate::cpu::Insn;
use iced_x86::{Code, OpKind, Register};

const MOVS: u8 = 0;
const STOS: u8 = 1;
const LODS: u8 = 2;
const CMPS: u8 = 3;
const SCAS: u8 = 4;

/// How a string instruction repeats.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Repeat {
    Once,
    /// REP, or REPE/REPZ for CMPS and SCAS.
    WhileEqual,
    /// REPNE/REPNZ (CMPS and SCAS only).
    WhileNotEqual,
}

fn source_base(cpu: &Cpu, i: &Insn) -> u64 {
    match i.memory_segment() {
        Register::FS => cpu.fs_base,
        Register::GS => cpu.gs_base,
        _ => 0,
    }
}

/// One iteration. Returns the ZF result for CMPS/SCAS.
#[inline(always)]
fn iterate<const S: u8, const OP: u8>(
    cpu: &mut Cpu,
    seg: u64,
    amask: u64,
    step: u64,
) -> Result<bool, Stop> {
    let rsi = cpu.gpr[RSI] & amask;
    let rdi = cpu.gpr[RDI] & amask;
    let size = S as u32;
    let mut zf = false;
    match OP {
        MOVS => {
            let v = cpu.mem.read_sized(seg.wrapping_add(rsi), size)?;
            cpu.mem.write_sized(rdi, size, v)?;
        }
        STOS => cpu.mem.write_sized(rdi, size, cpu.gpr[RAX])?,
        LODS => {
            let v = cpu.mem.read_sized(seg.wrapping_add(rsi), size)?;
            let r = match S {
                1 => Register::AL,
                2 => Register::AX,
                4 => Register::EAX,
                _ => Register::RAX,
            };
            cpu.write_reg(r, v);
        }
        CMPS => {
            let a = cpu.mem.read_sized(seg.wrapping_add(rsi), size)?;
            let b = cpu.mem.read_sized(rdi, size)?;
            let r = a.wrapping_sub(b) & mask(S);
            cpu.flags.set(FlagOp::Sub, S, a, b, r);
            zf = r == 0;
        }
        _ => {
            let a = cpu.gpr[RAX] & mask(S);
            let b = cpu.mem.read_sized(rdi, size)?;
            let r = a.wrapping_sub(b) & mask(S);
            cpu.flags.set(FlagOp::Sub, S, a, b, r);
            zf = r == 0;
        }
    }
    let uses_rsi = matches!(OP, MOVS | LODS | CMPS);
    let uses_rdi = matches!(OP, MOVS | STOS | CMPS | SCAS);
    if uses_rsi {
        set_addr_reg(cpu, RSI, amask, rsi.wrapping_add(step));
    }
    if uses_rdi {
        set_addr_reg(cpu, RDI, amask, rdi.wrapping_add(step));
    }
    Ok(zf)
}

#[inline(always)]
fn set_addr_reg(cpu: &mut Cpu, reg: usize, amask: u64, v: u64) {
    // A 32-bit address register write zero-extends, as any 32-bit register write does.
    cpu.gpr[reg] = v & amask;
}

fn string<const S: u8, const OP: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let amask = match i.op0_kind() {
        OpKind::MemoryESEDI | OpKind::MemorySegESI => 0xffff_ffff,
        _ if i.op1_kind() == OpKind::MemorySegESI || i.op1_kind() == OpKind::MemoryESEDI => {
            0xffff_ffff
        }
        _ => u64::MAX,
    };
    let seg = source_base(cpu, i);
    let step = if cpu.flags.df() {
        (S as u64).wrapping_neg()
    } else {
        S as u64
    };
    let repeat = if i.has_repne_prefix() && matches!(OP, CMPS | SCAS) {
        Repeat::WhileNotEqual
    } else if i.has_rep_prefix() || i.has_repe_prefix() || i.has_repne_prefix() {
        // For MOVS, STOS and LODS an F2 prefix repeats like F3 (SDM: REPNE with non-comparing string
        // instructions behaves as REP on current processors).
        Repeat::WhileEqual
    } else {
        Repeat::Once
    };
    if repeat == Repeat::Once {
        iterate::<S, OP>(cpu, seg, amask, step)?;
        return Ok(());
    }
    let mut count = cpu.gpr[RCX] & amask;
    if count == 0 {
        return Ok(());
    }
    let limit = cpu.icount_end.saturating_sub(cpu.icount).max(1);
    let mut done = 0u64;
    let compares = matches!(OP, CMPS | SCAS);
    let mut finished = false;
    while done < limit {
        match iterate::<S, OP>(cpu, seg, amask, step) {
            Ok(zf) => {
                count -= 1;
                done += 1;
                if count == 0
                    || (compares && repeat == Repeat::WhileEqual && !zf)
                    || (compares && repeat == Repeat::WhileNotEqual && zf)
                {
                    finished = true;
                    break;
                }
            }
            Err(e) => {
                cpu.gpr[RCX] = count;
                cpu.icount += done;
                return Err(e);
            }
        }
    }
    cpu.gpr[RCX] = count;
    // The run loop counts one retirement for this instruction; the other iterations are counted here.
    cpu.icount += done - 1;
    if !finished {
        cpu.rip = i.ip();
    }
    Ok(())
}

pub(crate) fn register(t: &mut Table) {
    use Code as C;
    let table: [(Code, super::Handler); 20] = [
        (C::Movsb_m8_m8, string::<1, MOVS>),
        (C::Movsw_m16_m16, string::<2, MOVS>),
        (C::Movsd_m32_m32, string::<4, MOVS>),
        (C::Movsq_m64_m64, string::<8, MOVS>),
        (C::Stosb_m8_AL, string::<1, STOS>),
        (C::Stosw_m16_AX, string::<2, STOS>),
        (C::Stosd_m32_EAX, string::<4, STOS>),
        (C::Stosq_m64_RAX, string::<8, STOS>),
        (C::Lodsb_AL_m8, string::<1, LODS>),
        (C::Lodsw_AX_m16, string::<2, LODS>),
        (C::Lodsd_EAX_m32, string::<4, LODS>),
        (C::Lodsq_RAX_m64, string::<8, LODS>),
        (C::Cmpsb_m8_m8, string::<1, CMPS>),
        (C::Cmpsw_m16_m16, string::<2, CMPS>),
        (C::Cmpsd_m32_m32, string::<4, CMPS>),
        (C::Cmpsq_m64_m64, string::<8, CMPS>),
        (C::Scasb_AL_m8, string::<1, SCAS>),
        (C::Scasw_AX_m16, string::<2, SCAS>),
        (C::Scasd_EAX_m32, string::<4, SCAS>),
        (C::Scasq_RAX_m64, string::<8, SCAS>),
    ];
    for (code, h) in table {
        t.set(code, h);
    }
}

#[cfg(test)]
mod tests {
    use crate::cpu::flags::ZF;
    use crate::cpu::testutil::*;
    use crate::cpu::*;
    use iced_x86::code_asm::*;

    #[test]
    fn rep_movsb_copies_and_counts_each_iteration() {
        let code = assemble(|a| {
            a.rep().movsb().unwrap();
            a.hlt().unwrap();
        });
        let mut m = machine_with(&code);
        for k in 0..100u64 {
            m.cpu.mem.write_u8(DATA + k, k as u8).unwrap();
        }
        m.cpu.gpr[RSI] = DATA;
        m.cpu.gpr[RDI] = DATA + 0x1000;
        m.cpu.gpr[RCX] = 100;
        assert_eq!(m.run(30), Exit::BudgetExhausted);
        assert_eq!(
            (m.cpu.icount, m.cpu.gpr[RCX], m.cpu.rip),
            (30, 70, CODE),
            "stopped mid-way on the instruction"
        );
        assert_eq!(m.run(1000), Exit::Exception(Exception::GeneralProtection));
        assert_eq!(m.cpu.icount, 100);
        assert_eq!(m.cpu.gpr[RCX], 0);
        for k in 0..100u64 {
            assert_eq!(m.cpu.mem.read_u8(DATA + 0x1000 + k).unwrap(), k as u8);
        }
    }

    #[test]
    fn repne_scasb_finds_the_terminator_like_strlen() {
        let code = assemble(|a| {
            a.repne().scasb().unwrap();
            a.hlt().unwrap();
        });
        let mut m = machine_with(&code);
        m.cpu.mem.write_bytes(DATA, b"hello\0").unwrap();
        m.cpu.gpr[RDI] = DATA;
        m.cpu.gpr[RCX] = u64::MAX;
        assert_eq!(m.run(1000), Exit::Exception(Exception::GeneralProtection));
        assert_eq!(m.cpu.gpr[RDI], DATA + 6);
        assert_eq!(!m.cpu.gpr[RCX] - 1, 5, "the strlen idiom");
        assert_eq!(m.cpu.rflags() & ZF, ZF);
    }

    #[test]
    fn std_makes_stosq_go_down_and_repe_cmpsb_stops_at_difference() {
        let code = assemble(|a| {
            a.std().unwrap();
            a.rep().stosq().unwrap();
            a.cld().unwrap();
            a.mov(rsi, DATA).unwrap();
            a.mov(rdi, DATA + 0x800).unwrap();
            a.mov(ecx, 8u32).unwrap();
            a.repe().cmpsb().unwrap();
            a.hlt().unwrap();
        });
        let mut m = machine_with(&code);
        m.cpu.mem.write_bytes(DATA, b"abcdefgh").unwrap();
        m.cpu.mem.write_bytes(DATA + 0x800, b"abcXefgh").unwrap();
        m.cpu.gpr[RDI] = DATA + 0x100;
        m.cpu.gpr[RCX] = 3;
        m.cpu.gpr[RAX] = 0x1122;
        assert_eq!(m.run(1000), Exit::Exception(Exception::GeneralProtection));
        assert_eq!(m.cpu.mem.peek_u64(DATA + 0xf0).unwrap(), 0x1122);
        assert_eq!(m.cpu.gpr[RSI], DATA + 4);
        assert_eq!(m.cpu.gpr[RCX], 4);
        assert_eq!(m.cpu.rflags() & ZF, 0);
    }

    #[test]
    fn fault_mid_rep_keeps_completed_iterations() {
        let code = assemble(|a| {
            a.rep().stosb().unwrap();
        });
        let mut m = machine_with(&code);
        m.cpu.gpr[RDI] = DATA + 0x10000 - 4; // four bytes before the end of the mapping
        m.cpu.gpr[RCX] = 10;
        let exit = m.run(100);
        assert!(
            matches!(exit, Exit::Exception(Exception::PageFault { addr, .. }) if addr == DATA + 0x10000)
        );
        assert_eq!((m.cpu.gpr[RCX], m.cpu.icount, m.cpu.rip), (6, 4, CODE));
    }
}
