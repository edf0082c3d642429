//! MMX and the SSE/SSSE3 integer instructions in their MMX forms (SDM Vol. 1, chapter 9; Vol. 2 for each): moves
//! between MMn and general registers, memory and XMM registers, the packed add/subtract/multiply/compare/logic,
//! unpacks, packs, shifts, PSHUFW, PMOVMSKB, PEXTRW, PINSRW and EMMS. glibc's loader refuses to start unless CPUID
//! reports MMX, so a program compiled for it may use these.
//!
//! The eight MMX registers are the x87 registers' significands (`X87::mm`), physical register n for MMn
//! whatever TOP is. Every MMX instruction but EMMS first raises #MF if an x87 exception is pending, then (when it
//! completes) sets TOP to 0 and tags every register valid; a write sets the register's sign and exponent to all
//! ones. EMMS tags every register empty. A faulting instruction (#PF on its memory operand) changes nothing.
//!
//! The lane arithmetic is the XMM handlers' own (`int::lanes`) on the low 64 bits, with the exceptions where the
//! 64-bit form is not the low half of the 128-bit one: the high unpacks, the packs, PSHUFB, PALIGNR and the
//! horizontal adds, which rearrange lanes across the register.

use super::int::{lanes, shift_lanes, SAR, SHL, SHR};
use super::{lane, with_lane, xreg};
use crate::cpu::cpuid::LEAF1_EDX_MMX;
use crate::cpu::dispatch::Table;
use crate::cpu::{Cpu, Exception, Insn, Stop};
use iced_x86::{Code, EncodingKind, Mnemonic, OpCodeOperandKind, OpKind, Register};

/// The legacy-encoded MMX forms of `mnemonic` (those with an `mm` operand) valid in 64-bit mode.
fn mmx_forms(mnemonic: Mnemonic) -> impl Iterator<Item = Code> {
    Code::values().filter(move |c| {
        let op = c.op_code();
        c.mnemonic() == mnemonic
            && op.encoding() == EncodingKind::Legacy
            && op.mode64()
            && (0..op.op_count()).any(|k| {
                matches!(
                    op.op_kind(k),
                    OpCodeOperandKind::mm_reg
                        | OpCodeOperandKind::mm_rm
                        | OpCodeOperandKind::mm_or_mem
                )
            })
    })
}

/// The MMX register number of operand `n`.
#[inline(always)]
fn mreg(i: &Insn, n: u32) -> usize {
    let r = i.op_register(n);
    debug_assert!(r.is_mm(), "operand {n} is not an MMX register: {r:?}");
    (r as usize - Register::MM0 as usize) & 7
}

/// What every MMX instruction checks first: #UD when the CPUID model reports no MMX (`Format6`, so that traces
/// recorded on it replay as they ran, MMX code faulting), then #MF when an x87 exception is pending.
#[inline(always)]
fn check_pending(cpu: &Cpu) -> Result<(), Stop> {
    if cpu.config.cpuid.leaf1_edx() & LEAF1_EDX_MMX == 0 {
        return Err(Stop::exception(Exception::InvalidOpcode));
    }
    if cpu.regs.x87.exception_pending() {
        return Err(Stop::exception(Exception::X87FloatingPoint));
    }
    Ok(())
}

/// Operand `n`: an MMX register, or the memory operand's bytes (4 or 8) zero-extended.
#[inline(always)]
fn read_mm_or_mem(cpu: &mut Cpu, i: &Insn, n: u32) -> Result<u64, Stop> {
    if i.op_kind(n) == OpKind::Register {
        return Ok(cpu.regs.x87.mm(mreg(i, n)));
    }
    let a = cpu.ea(i);
    Ok(match i.memory_size().size() {
        8 => cpu.mem.read_u64(a)?,
        4 => cpu.mem.read_u32(a)? as u64,
        _ => return Err(Stop::exception(Exception::InvalidOpcode)),
    })
}

/// Defines a handler `mm = f(mm, mm/m64)` for each `name = |a, b| expression`, where `a` and `b` are the two
/// operands zero-extended to u128 and the result's low 64 bits are written.
macro_rules! mmx_binary {
    ($($name:ident = |$a:ident, $b:ident| $body:expr;)*) => {$(
        fn $name(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
            check_pending(cpu)?;
            let $b = read_mm_or_mem(cpu, i, 1)? as u128;
            let d = mreg(i, 0);
            let $a = cpu.regs.x87.mm(d) as u128;
            let r: u128 = $body;
            cpu.regs.x87.set_mm(d, r as u64);
            Ok(())
        }
    )*};
}

mmx_binary! {
    paddb = |a, b| lanes::paddb(a, b);
    paddw = |a, b| lanes::paddw(a, b);
    paddd = |a, b| lanes::paddd(a, b);
    paddq = |a, b| lanes::paddq(a, b);
    psubb = |a, b| lanes::psubb(a, b);
    psubw = |a, b| lanes::psubw(a, b);
    psubd = |a, b| lanes::psubd(a, b);
    psubq = |a, b| lanes::psubq(a, b);
    paddsb = |a, b| lanes::paddsb(a, b);
    paddsw = |a, b| lanes::paddsw(a, b);
    psubsb = |a, b| lanes::psubsb(a, b);
    psubsw = |a, b| lanes::psubsw(a, b);
    paddusb = |a, b| lanes::paddusb(a, b);
    paddusw = |a, b| lanes::paddusw(a, b);
    psubusb = |a, b| lanes::psubusb(a, b);
    psubusw = |a, b| lanes::psubusw(a, b);
    pmullw = |a, b| lanes::pmullw(a, b);
    pmulhw = |a, b| lanes::pmulhw(a, b);
    pmulhuw = |a, b| lanes::pmulhuw(a, b);
    pmuludq = |a, b| lanes::pmuludq(a, b);
    pmaddwd = |a, b| lanes::pmaddwd(a, b);
    pand = |a, b| lanes::pand(a, b);
    pandn = |a, b| lanes::pandn(a, b);
    por = |a, b| lanes::por(a, b);
    pxor = |a, b| lanes::pxor(a, b);
    pcmpeqb = |a, b| lanes::pcmpeqb(a, b);
    pcmpeqw = |a, b| lanes::pcmpeqw(a, b);
    pcmpeqd = |a, b| lanes::pcmpeqd(a, b);
    pcmpgtb = |a, b| lanes::pcmpgtb(a, b);
    pcmpgtw = |a, b| lanes::pcmpgtw(a, b);
    pcmpgtd = |a, b| lanes::pcmpgtd(a, b);
    pminub = |a, b| lanes::pminub(a, b);
    pmaxub = |a, b| lanes::pmaxub(a, b);
    pminsw = |a, b| lanes::pminsw(a, b);
    pmaxsw = |a, b| lanes::pmaxsw(a, b);
    pavgb = |a, b| lanes::pavgb(a, b);
    pavgw = |a, b| lanes::pavgw(a, b);
    psadbw = |a, b| lanes::psadbw(a, b);
    pabsb = |a, b| lanes::pabsb(a, b);
    pabsw = |a, b| lanes::pabsw(a, b);
    pabsd = |a, b| lanes::pabsd(a, b);
    psignb = |a, b| lanes::psignb(a, b);
    psignw = |a, b| lanes::psignw(a, b);
    psignd = |a, b| lanes::psignd(a, b);
    pmaddubsw = |a, b| lanes::pmaddubsw(a, b);
    pmulhrsw = |a, b| lanes::pmulhrsw(a, b);
    // The low unpacks read the low halves, which is what the 128-bit forms do with the low quadword; the high
    // unpacks read the high doublewords of the 64-bit operands.
    punpcklbw = |a, b| lanes::punpcklbw(a, b);
    punpcklwd = |a, b| lanes::punpcklwd(a, b);
    punpckldq = |a, b| lanes::punpckldq(a, b);
    punpckhbw = |a, b| lanes::punpcklbw(a >> 32, b >> 32);
    punpckhwd = |a, b| lanes::punpcklwd(a >> 32, b >> 32);
    punpckhdq = |a, b| lanes::punpckldq(a >> 32, b >> 32);
    // The packs narrow the destination's lanes then the source's: one 128-bit value holding both, packed alone.
    packsswb = |a, b| lanes::packsswb(a | b << 64, 0);
    packssdw = |a, b| lanes::packssdw(a | b << 64, 0);
    packuswb = |a, b| lanes::packuswb(a | b << 64, 0);
    // The horizontal forms: pairs of the destination, then of the source (the 128-bit form of `a | b << 64`
    // against itself gives those in its low quadword).
    phaddw = |a, b| lanes::phaddw(a | b << 64, 0);
    phaddd = |a, b| lanes::phaddd(a | b << 64, 0);
    phaddsw = |a, b| lanes::phaddsw(a | b << 64, 0);
    phsubw = |a, b| lanes::phsubw(a | b << 64, 0);
    phsubd = |a, b| lanes::phsubd(a | b << 64, 0);
    phsubsw = |a, b| lanes::phsubsw(a | b << 64, 0);
    pshufb = |a, b| {
        let mut r = 0u128;
        for l in 0..8 {
            let index = lane::<8>(b, l);
            if index & 0x80 == 0 {
                r = with_lane::<8>(r, l, lane::<8>(a, (index & 7) as u32));
            }
        }
        r
    };
}

/// PALIGNR mm, mm/m64, imm8: the destination:source pair (destination high) shifted right by imm8 bytes.
fn palignr(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    check_pending(cpu)?;
    let s = read_mm_or_mem(cpu, i, 1)? as u128;
    let d = mreg(i, 0);
    let pair = (cpu.regs.x87.mm(d) as u128) << 64 | s;
    let count = i.immediate8() as u32;
    let r = if count >= 16 { 0 } else { pair >> (8 * count) };
    cpu.regs.x87.set_mm(d, r as u64);
    Ok(())
}

/// PSLL/PSRL/PSRA mm by mm/m64 (the whole quadword is the count) or by imm8.
fn shift<const BITS: u32, const KIND: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    check_pending(cpu)?;
    let count = if i.op1_kind() == OpKind::Immediate8 {
        i.immediate8() as u64
    } else {
        read_mm_or_mem(cpu, i, 1)?
    };
    let d = mreg(i, 0);
    let r = shift_lanes::<BITS, KIND>(cpu.regs.x87.mm(d) as u128, count);
    cpu.regs.x87.set_mm(d, r as u64);
    Ok(())
}

/// MOVD mm, r/m32 and MOVQ mm, r/m64 (zero-extended); MOVQ mm, mm/m64.
fn load<const SIZE: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    check_pending(cpu)?;
    let v = match i.op1_kind() {
        OpKind::Register if i.op1_register().is_mm() => cpu.regs.x87.mm(mreg(i, 1)),
        _ => cpu.read_op(i, 1, SIZE)?,
    };
    cpu.regs.x87.set_mm(mreg(i, 0), v);
    Ok(())
}

/// MOVD r/m32, mm; MOVQ r/m64, mm; MOVQ mm/m64, mm; MOVNTQ m64, mm. A 32-bit register destination is
/// zero-extended as every 32-bit write is.
fn store<const SIZE: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    check_pending(cpu)?;
    let v = cpu.regs.x87.mm(mreg(i, 1));
    if i.op0_kind() == OpKind::Register && i.op0_register().is_mm() {
        cpu.regs.x87.set_mm(mreg(i, 0), v);
        return Ok(());
    }
    let v = if SIZE == 4 { v & 0xffff_ffff } else { v };
    cpu.write_op(i, 0, SIZE, v)?;
    cpu.regs.x87.enter_mmx();
    Ok(())
}

/// MOVQ2DQ xmm, mm: the register zero-extended.
fn movq2dq(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    check_pending(cpu)?;
    cpu.regs.xmm[xreg(i, 0)] = cpu.regs.x87.mm(mreg(i, 1)) as u128;
    cpu.regs.x87.enter_mmx();
    Ok(())
}

/// MOVDQ2Q mm, xmm: the low quadword.
fn movdq2q(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    check_pending(cpu)?;
    let v = cpu.regs.xmm[xreg(i, 1)] as u64;
    cpu.regs.x87.set_mm(mreg(i, 0), v);
    Ok(())
}

/// PSHUFW mm, mm/m64, imm8: each word of the result picks a source word by two bits of imm8.
fn pshufw(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    check_pending(cpu)?;
    let v = read_mm_or_mem(cpu, i, 1)? as u128;
    let imm = i.immediate8() as u32;
    let mut r = 0u128;
    for l in 0..4 {
        r = with_lane::<16>(r, l, lane::<16>(v, (imm >> (2 * l)) & 3));
    }
    cpu.regs.x87.set_mm(mreg(i, 0), r as u64);
    Ok(())
}

/// PMOVMSKB r32/r64, mm: the top bit of each byte.
fn pmovmskb(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    check_pending(cpu)?;
    let v = cpu.regs.x87.mm(mreg(i, 1));
    let mut m = 0u64;
    for l in 0..8 {
        m |= ((v >> (8 * l + 7)) & 1) << l;
    }
    cpu.write_reg(i.op0_register(), m);
    cpu.regs.x87.enter_mmx();
    Ok(())
}

/// PEXTRW r32/r64, mm, imm8: a word zero-extended.
fn pextrw(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    check_pending(cpu)?;
    let v = lane::<16>(
        cpu.regs.x87.mm(mreg(i, 1)) as u128,
        i.immediate8() as u32 & 3,
    );
    cpu.write_reg(i.op0_register(), v);
    cpu.regs.x87.enter_mmx();
    Ok(())
}

/// PINSRW mm, r32/m16, imm8.
fn pinsrw(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    check_pending(cpu)?;
    let v = cpu.read_op(i, 1, 2)? & 0xffff;
    let d = mreg(i, 0);
    let r = with_lane::<16>(cpu.regs.x87.mm(d) as u128, i.immediate8() as u32 & 3, v);
    cpu.regs.x87.set_mm(d, r as u64);
    Ok(())
}

/// EMMS: the x87 registers become empty, ready for x87 code.
fn emms(cpu: &mut Cpu, _: &Insn) -> Result<(), Stop> {
    check_pending(cpu)?;
    cpu.regs.x87.emms();
    Ok(())
}

pub(super) fn register(t: &mut Table) {
    use Mnemonic as M;
    let by_mnemonic: [(Mnemonic, crate::cpu::Handler); 72] = [
        (M::Paddb, paddb),
        (M::Paddw, paddw),
        (M::Paddd, paddd),
        (M::Paddq, paddq),
        (M::Psubb, psubb),
        (M::Psubw, psubw),
        (M::Psubd, psubd),
        (M::Psubq, psubq),
        (M::Paddsb, paddsb),
        (M::Paddsw, paddsw),
        (M::Psubsb, psubsb),
        (M::Psubsw, psubsw),
        (M::Paddusb, paddusb),
        (M::Paddusw, paddusw),
        (M::Psubusb, psubusb),
        (M::Psubusw, psubusw),
        (M::Pmullw, pmullw),
        (M::Pmulhw, pmulhw),
        (M::Pmulhuw, pmulhuw),
        (M::Pmuludq, pmuludq),
        (M::Pmaddwd, pmaddwd),
        (M::Pand, pand),
        (M::Pandn, pandn),
        (M::Por, por),
        (M::Pxor, pxor),
        (M::Pcmpeqb, pcmpeqb),
        (M::Pcmpeqw, pcmpeqw),
        (M::Pcmpeqd, pcmpeqd),
        (M::Pcmpgtb, pcmpgtb),
        (M::Pcmpgtw, pcmpgtw),
        (M::Pcmpgtd, pcmpgtd),
        (M::Pminub, pminub),
        (M::Pmaxub, pmaxub),
        (M::Pminsw, pminsw),
        (M::Pmaxsw, pmaxsw),
        (M::Pavgb, pavgb),
        (M::Pavgw, pavgw),
        (M::Psadbw, psadbw),
        (M::Pabsb, pabsb),
        (M::Pabsw, pabsw),
        (M::Pabsd, pabsd),
        (M::Psignb, psignb),
        (M::Psignw, psignw),
        (M::Psignd, psignd),
        (M::Pmaddubsw, pmaddubsw),
        (M::Pmulhrsw, pmulhrsw),
        (M::Punpcklbw, punpcklbw),
        (M::Punpcklwd, punpcklwd),
        (M::Punpckldq, punpckldq),
        (M::Punpckhbw, punpckhbw),
        (M::Punpckhwd, punpckhwd),
        (M::Punpckhdq, punpckhdq),
        (M::Packsswb, packsswb),
        (M::Packssdw, packssdw),
        (M::Packuswb, packuswb),
        (M::Phaddw, phaddw),
        (M::Phaddd, phaddd),
        (M::Phaddsw, phaddsw),
        (M::Phsubw, phsubw),
        (M::Phsubd, phsubd),
        (M::Phsubsw, phsubsw),
        (M::Pshufb, pshufb),
        (M::Palignr, palignr),
        (M::Psllw, shift::<16, SHL>),
        (M::Pslld, shift::<32, SHL>),
        (M::Psllq, shift::<64, SHL>),
        (M::Psrlw, shift::<16, SHR>),
        (M::Psrld, shift::<32, SHR>),
        (M::Psrlq, shift::<64, SHR>),
        (M::Psraw, shift::<16, SAR>),
        (M::Psrad, shift::<32, SAR>),
        (M::Pshufw, pshufw),
    ];
    for (m, h) in by_mnemonic {
        for c in mmx_forms(m) {
            t.set(c, h);
        }
    }
    t.set(Code::Movd_mm_rm32, load::<4>);
    t.set(Code::Movq_mm_rm64, load::<8>);
    t.set(Code::Movq_mm_mmm64, load::<8>);
    t.set(Code::Movd_rm32_mm, store::<4>);
    t.set(Code::Movq_rm64_mm, store::<8>);
    t.set(Code::Movq_mmm64_mm, store::<8>);
    t.set(Code::Movntq_m64_mm, store::<8>);
    t.set(Code::Movq2dq_xmm_mm, movq2dq);
    t.set(Code::Movdq2q_mm_xmm, movdq2q);
    t.set(Code::Pmovmskb_r32_mm, pmovmskb);
    t.set(Code::Pmovmskb_r64_mm, pmovmskb);
    t.set(Code::Pextrw_r32_mm_imm8, pextrw);
    t.set(Code::Pextrw_r64_mm_imm8, pextrw);
    t.set(Code::Pinsrw_mm_r32m16_imm8, pinsrw);
    t.set(Code::Pinsrw_mm_r64m16_imm8, pinsrw);
    t.set(Code::Emms, emms);
}

#[cfg(test)]
mod tests {
    use crate::cpu::testutil::*;
    use crate::cpu::x87::ES;
    use crate::cpu::*;
    use iced_x86::code_asm::*;

    #[test]
    fn mmx_after_x87_resets_top_and_emms_empties_the_stack() {
        let code = assemble(|a| {
            a.fld1().unwrap();
            a.paddw(mm0, mm1).unwrap();
            a.hlt().unwrap();
        });
        let m = run_to_hlt(&code, |c| {
            c.regs.x87.regs[0].significand = 0x0001_0002_0003_fffe;
            c.regs.x87.regs[1].significand = 0x0001_0001_0001_0003;
        });
        let x = &m.cpu.regs.x87;
        assert_eq!(x.top, 0);
        assert_eq!(x.mm(0), 0x0002_0003_0004_0001);
        assert_eq!(x.regs[0].sign_exponent, 0xffff);
        // FLD1 left 1.0 in R7 (valid, 00); every other register is tagged by its contents: R0 is a NaN (special).
        assert_eq!(x.tag >> 14, 0b00);
        assert_eq!(x.tag & 3, 0b10);
        let code = assemble(|a| {
            a.movq(mm3, rax).unwrap();
            a.emms().unwrap();
            a.fld1().unwrap();
            a.hlt().unwrap();
        });
        let m = run_to_hlt(&code, |c| c.regs.gpr[RAX] = 7);
        let x = &m.cpu.regs.x87;
        assert_eq!(
            x.top, 7,
            "after EMMS the stack is empty and FLD1 pushes without overflow"
        );
        assert_eq!(x.tag, 0x3fff);
        assert_eq!(x.status & x87::SF, 0);
    }

    #[test]
    fn a_pending_x87_exception_is_raised_before_the_mmx_instruction() {
        let code = assemble(|a| {
            a.paddb(mm0, mm1).unwrap();
        });
        let mut m = machine_with(&code);
        m.cpu.regs.x87.status |= ES;
        m.cpu.regs.x87.top = 5;
        let before = m.cpu.regs.x87.clone();
        assert_eq!(m.run(5), Exit::Exception(Exception::X87FloatingPoint));
        assert_eq!(m.cpu.regs.x87, before);
        assert_eq!(m.cpu.regs.rip, CODE);
    }

    #[test]
    fn mmx_is_invalid_on_the_cpuid_model_without_it() {
        let code = assemble(|a| {
            a.emms().unwrap();
        });
        let mut m = machine_with(&code);
        m.cpu.config.cpuid = cpuid::CpuidModel::Format6;
        assert_eq!(m.run(5), Exit::Exception(Exception::InvalidOpcode));
    }

    #[test]
    fn a_faulting_memory_operand_changes_nothing() {
        let code = assemble(|a| {
            a.paddd(mm2, qword_ptr(0x10)).unwrap();
        });
        let mut m = machine_with(&code);
        m.cpu.regs.x87.top = 3;
        let before = m.cpu.regs.x87.clone();
        assert!(matches!(
            m.run(5),
            Exit::Exception(Exception::PageFault { .. })
        ));
        assert_eq!(m.cpu.regs.x87, before);
    }
}
