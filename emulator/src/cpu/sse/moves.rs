//! SSE data movement (SDM Vol. 1, 10.4.1 and 11.4.1; Vol. 2 for each): MOVAPS, MOVUPS, MOVAPD, MOVUPD, MOVDQA,
//! MOVDQU, LDDQU, MOVNTPS, MOVNTPD, MOVNTDQ, MOVNTI, MOVD, MOVQ, MOVSS, MOVSD, MOVHPS, MOVLPS, MOVHPD, MOVLPD,
//! MOVHLPS, MOVLHPS, MOVDDUP, MOVSHDUP, MOVSLDUP, MASKMOVDQU.
//!
//! The non-temporal stores are plain stores here: there is no cache to bypass. The load forms of MOVSS and MOVSD
//! zero the upper lanes; their register forms merge (SDM Vol. 2, MOVSS).

use super::{lane, read_xmm_or_mem, src, store128, with_lane, xreg};
use crate::cpu::dispatch::Table;
use crate::cpu::Insn;
use crate::cpu::{Cpu, Stop, RDI};
use iced_x86::{Code, OpKind, Register};

const LOW64: u128 = u64::MAX as u128;
const LOW32: u128 = u32::MAX as u128;

fn load128<const UNALIGNED: bool>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let v = read_xmm_or_mem::<UNALIGNED>(cpu, i, 1)?;
    cpu.regs.xmm[xreg(i, 0)] = v;
    Ok(())
}

fn store_xmm128<const UNALIGNED: bool>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let v = cpu.regs.xmm[xreg(i, 1)];
    if i.op0_kind() == OpKind::Register {
        cpu.regs.xmm[xreg(i, 0)] = v;
        Ok(())
    } else {
        store128::<UNALIGNED>(cpu, i, v)
    }
}

/// MOVD/MOVQ xmm, r/m32 or r/m64: zero-extended into the register.
fn movd_to_xmm<const S: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let v = cpu.read_op(i, 1, S)?;
    cpu.regs.xmm[xreg(i, 0)] = v as u128;
    Ok(())
}

/// MOVD/MOVQ r/m32 or r/m64, xmm.
fn movd_from_xmm<const S: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let v = cpu.regs.xmm[xreg(i, 1)] as u64;
    cpu.write_op(i, 0, S, v)?;
    Ok(())
}

/// MOVQ xmm, xmm/m64: the low quadword, upper one zeroed.
fn movq_load(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let v = src(cpu, i, 1)? & LOW64;
    cpu.regs.xmm[xreg(i, 0)] = v;
    Ok(())
}

/// MOVQ xmm/m64, xmm: to a register it zeroes the upper quadword.
fn movq_store(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let v = cpu.regs.xmm[xreg(i, 1)] & LOW64;
    if i.op0_kind() == OpKind::Register {
        cpu.regs.xmm[xreg(i, 0)] = v;
    } else {
        let a = cpu.ea(i);
        cpu.mem.write_u64(a, v as u64)?;
    }
    Ok(())
}

/// MOVSS/MOVSD xmm, xmm/m32|m64: a register source merges into the low lane, a memory source zero-extends.
fn movs_load<const BITS: u32>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let mask = if BITS == 32 { LOW32 } else { LOW64 };
    let v = src(cpu, i, 1)? & mask;
    let d = xreg(i, 0);
    if i.op1_kind() == OpKind::Register {
        cpu.regs.xmm[d] = (cpu.regs.xmm[d] & !mask) | v;
    } else {
        cpu.regs.xmm[d] = v;
    }
    Ok(())
}

/// MOVSS/MOVSD xmm/m32|m64, xmm.
fn movs_store<const BITS: u32>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let mask = if BITS == 32 { LOW32 } else { LOW64 };
    let v = cpu.regs.xmm[xreg(i, 1)] & mask;
    if i.op0_kind() == OpKind::Register {
        let d = xreg(i, 0);
        cpu.regs.xmm[d] = (cpu.regs.xmm[d] & !mask) | v;
    } else {
        let a = cpu.ea(i);
        if BITS == 32 {
            cpu.mem.write_u32(a, v as u32)?;
        } else {
            cpu.mem.write_u64(a, v as u64)?;
        }
    }
    Ok(())
}

/// MOVLPS/MOVLPD (LANE 0) and MOVHPS/MOVHPD (LANE 1) xmm, m64: one quadword lane from memory.
fn movhl_load<const LANE: u32>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let a = cpu.ea(i);
    let v = cpu.mem.read_u64(a)?;
    let d = xreg(i, 0);
    cpu.regs.xmm[d] = with_lane::<64>(cpu.regs.xmm[d], LANE, v);
    Ok(())
}

/// MOVLPS/MOVLPD/MOVHPS/MOVHPD m64, xmm.
fn movhl_store<const LANE: u32>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let v = lane::<64>(cpu.regs.xmm[xreg(i, 1)], LANE);
    let a = cpu.ea(i);
    cpu.mem.write_u64(a, v)?;
    Ok(())
}

/// MOVHLPS: the source's high quadword into the destination's low one.
fn movhlps(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let s = cpu.regs.xmm[xreg(i, 1)];
    let d = xreg(i, 0);
    cpu.regs.xmm[d] = (cpu.regs.xmm[d] & !LOW64) | (s >> 64);
    Ok(())
}

/// MOVLHPS: the source's low quadword into the destination's high one.
fn movlhps(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let s = cpu.regs.xmm[xreg(i, 1)];
    let d = xreg(i, 0);
    cpu.regs.xmm[d] = (cpu.regs.xmm[d] & LOW64) | (s << 64);
    Ok(())
}

fn movnti<const S: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let v = cpu.read_op(i, 1, S)?;
    cpu.write_op(i, 0, S, v)?;
    Ok(())
}

fn movddup(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let v = src(cpu, i, 1)? & LOW64;
    cpu.regs.xmm[xreg(i, 0)] = v | (v << 64);
    Ok(())
}

/// MOVSLDUP (ODD = 0) duplicates the even doublewords, MOVSHDUP (ODD = 1) the odd ones.
fn movdup32<const ODD: u32>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let v = src(cpu, i, 1)?;
    let mut r = 0u128;
    for l in 0..4 {
        r = with_lane::<32>(r, l, lane::<32>(v, (l & !1) | ODD));
    }
    cpu.regs.xmm[xreg(i, 0)] = r;
    Ok(())
}

/// MASKMOVDQU: stores the bytes of the first register whose mask byte (second register) has its top bit set, at
/// ds:rdi (edi with an address-size prefix; FS or GS by override). Only the span from the first to the last
/// selected byte is accessed, read then written back merged, so a fault leaves memory unchanged; an all-zero mask
/// accesses nothing (the SDM leaves faults for unselected bytes to the implementation).
fn maskmovdqu(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let data = cpu.regs.xmm[xreg(i, 1)].to_le_bytes();
    let mask = cpu.regs.xmm[xreg(i, 2)].to_le_bytes();
    let Some(first) = mask.iter().position(|m| m & 0x80 != 0) else {
        return Ok(());
    };
    let last = mask.iter().rposition(|m| m & 0x80 != 0).unwrap_or(first);
    let mut addr = if i.op0_kind() == OpKind::MemorySegEDI {
        cpu.regs.gpr[RDI] as u32 as u64
    } else {
        cpu.regs.gpr[RDI]
    };
    match i.memory_segment() {
        Register::FS => addr = addr.wrapping_add(cpu.regs.fs_base),
        Register::GS => addr = addr.wrapping_add(cpu.regs.gs_base),
        _ => {}
    }
    let start = addr.wrapping_add(first as u64);
    let mut span = [0u8; 16];
    let span = &mut span[..last - first + 1];
    cpu.mem.read_bytes(start, span)?;
    for (k, byte) in span.iter_mut().enumerate() {
        if mask[first + k] & 0x80 != 0 {
            *byte = data[first + k];
        }
    }
    cpu.mem.write_bytes(start, span)?;
    Ok(())
}

pub(super) fn register(t: &mut Table) {
    t.set(Code::Maskmovdqu_rDI_xmm_xmm, maskmovdqu);
    for c in [
        Code::Movaps_xmm_xmmm128,
        Code::Movapd_xmm_xmmm128,
        Code::Movdqa_xmm_xmmm128,
    ] {
        t.set(c, load128::<false>);
    }
    for c in [
        Code::Movups_xmm_xmmm128,
        Code::Movupd_xmm_xmmm128,
        Code::Movdqu_xmm_xmmm128,
        Code::Lddqu_xmm_m128,
    ] {
        t.set(c, load128::<true>);
    }
    for c in [
        Code::Movaps_xmmm128_xmm,
        Code::Movapd_xmmm128_xmm,
        Code::Movdqa_xmmm128_xmm,
        Code::Movntps_m128_xmm,
        Code::Movntpd_m128_xmm,
        Code::Movntdq_m128_xmm,
    ] {
        t.set(c, store_xmm128::<false>);
    }
    for c in [
        Code::Movups_xmmm128_xmm,
        Code::Movupd_xmmm128_xmm,
        Code::Movdqu_xmmm128_xmm,
    ] {
        t.set(c, store_xmm128::<true>);
    }
    t.set(Code::Movd_xmm_rm32, movd_to_xmm::<4>);
    t.set(Code::Movq_xmm_rm64, movd_to_xmm::<8>);
    t.set(Code::Movd_rm32_xmm, movd_from_xmm::<4>);
    t.set(Code::Movq_rm64_xmm, movd_from_xmm::<8>);
    t.set(Code::Movq_xmm_xmmm64, movq_load);
    t.set(Code::Movq_xmmm64_xmm, movq_store);
    t.set(Code::Movss_xmm_xmmm32, movs_load::<32>);
    t.set(Code::Movsd_xmm_xmmm64, movs_load::<64>);
    t.set(Code::Movss_xmmm32_xmm, movs_store::<32>);
    t.set(Code::Movsd_xmmm64_xmm, movs_store::<64>);
    t.set(Code::Movlps_xmm_m64, movhl_load::<0>);
    t.set(Code::Movlpd_xmm_m64, movhl_load::<0>);
    t.set(Code::Movhps_xmm_m64, movhl_load::<1>);
    t.set(Code::Movhpd_xmm_m64, movhl_load::<1>);
    t.set(Code::Movlps_m64_xmm, movhl_store::<0>);
    t.set(Code::Movlpd_m64_xmm, movhl_store::<0>);
    t.set(Code::Movhps_m64_xmm, movhl_store::<1>);
    t.set(Code::Movhpd_m64_xmm, movhl_store::<1>);
    t.set(Code::Movhlps_xmm_xmm, movhlps);
    t.set(Code::Movlhps_xmm_xmm, movlhps);
    t.set(Code::Movnti_m32_r32, movnti::<4>);
    t.set(Code::Movnti_m64_r64, movnti::<8>);
    t.set(Code::Movddup_xmm_xmmm64, movddup);
    t.set(Code::Movsldup_xmm_xmmm128, movdup32::<0>);
    t.set(Code::Movshdup_xmm_xmmm128, movdup32::<1>);
}

#[cfg(test)]
mod tests {
    use crate::cpu::testutil::*;
    use crate::cpu::*;
    use iced_x86::code_asm::*;

    #[test]
    fn movaps_faults_on_misalignment_and_movups_does_not() {
        let code = assemble(|a| {
            a.movups(xmm1, xmmword_ptr(DATA + 8)).unwrap();
            a.movaps(xmm2, xmmword_ptr(DATA + 8)).unwrap();
        });
        let mut m = machine_with(&code);
        m.cpu
            .mem
            .write_u128(DATA + 8, 0x1234_u128 << 100 | 7)
            .unwrap();
        m.cpu.regs.xmm[2] = 99;
        assert_eq!(m.run(10), Exit::Exception(Exception::GeneralProtection));
        assert_eq!(m.cpu.icount, 1);
        assert_eq!(m.cpu.regs.xmm[1], 0x1234_u128 << 100 | 7);
        assert_eq!(m.cpu.regs.xmm[2], 99, "the faulting load wrote nothing");
    }

    #[test]
    fn movss_merges_from_a_register_and_zero_extends_from_memory() {
        let code = assemble(|a| {
            a.movss(xmm0, xmm1).unwrap();
            a.movss(xmm2, dword_ptr(DATA)).unwrap();
            a.movq(xmm3, xmm4).unwrap();
            a.movhlps(xmm5, xmm4).unwrap();
            a.movd(eax, xmm4).unwrap();
            a.hlt().unwrap();
        });
        let all = u128::MAX;
        let m = run_to_hlt(&code, |c| {
            c.regs.xmm[0] = all;
            c.regs.xmm[1] = 0x1111_2222;
            c.regs.xmm[2] = all;
            c.regs.xmm[3] = all;
            c.regs.xmm[4] = (0xaaaa_u128 << 64) | 0xffff_ffff_bbbb_cccc;
            c.regs.xmm[5] = all;
            c.regs.gpr[RAX] = u64::MAX;
            c.mem.write_u32(DATA, 0x3f80_0000).unwrap();
        });
        assert_eq!(m.cpu.regs.xmm[0], (all << 32) | 0x1111_2222);
        assert_eq!(m.cpu.regs.xmm[2], 0x3f80_0000);
        assert_eq!(m.cpu.regs.xmm[3], 0xffff_ffff_bbbb_cccc);
        assert_eq!(m.cpu.regs.xmm[5], (all << 64) | 0xaaaa);
        assert_eq!(
            m.cpu.regs.gpr[RAX], 0xbbbb_cccc,
            "a 32-bit write zero-extends"
        );
    }
}
