//! SSE conversions between integers, singles and doubles (SDM Vol. 1, 11.4.1.7 and 11.4.2; Vol. 2 for each):
//! CVTSI2SS/CVTSI2SD (32- and 64-bit sources), CVTSS2SI/CVTSD2SI and their truncating CVTT forms (32- and 64-bit
//! destinations), CVTSS2SD/CVTSD2SS, CVTPS2PD/CVTPD2PS, CVTDQ2PS/CVTPS2DQ/CVTTPS2DQ, CVTDQ2PD/CVTPD2DQ/CVTTPD2DQ.
//!
//! Rounding follows MXCSR.RC except in the CVTT forms, which truncate. A NaN, an infinity or a value out of the
//! destination's range gives the "integer indefinite" (0x80000000 or 0x8000000000000000) and raises IE. The packed
//! forms that produce two lanes zero the upper quadword. The MMX forms (CVTPI2PS and the like) are not implemented.

use super::softfloat::{Format, Fp, F32, F64};
use super::{commit_flags, src, xreg};
use crate::cpu::dispatch::Table;
use crate::cpu::Insn;
use crate::cpu::{Cpu, Stop};
use iced_x86::Code;

#[inline(always)]
fn get<F: Format>(v: u128, l: u32) -> u64 {
    (v >> (l * F::WIDTH)) as u64 & F::ALL
}

/// CVTSI2SS/CVTSI2SD: a signed integer of `S` bytes into lane 0.
fn int_to_scalar<F: Format, const S: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let v = cpu.read_op(i, 1, S)?;
    let v = if S == 4 {
        v as u32 as i32 as i64
    } else {
        v as i64
    };
    let mut fp = Fp::new(cpu.regs.mxcsr);
    let r = fp.int_to_float::<F>(v);
    commit_flags(cpu, fp.flags)?;
    let d = xreg(i, 0);
    let mask = F::ALL as u128;
    cpu.regs.xmm[d] = (cpu.regs.xmm[d] & !mask) | r as u128;
    Ok(())
}

/// CVTSS2SI/CVTSD2SI/CVTTSS2SI/CVTTSD2SI into a general-purpose register of `BITS` bits.
fn scalar_to_int<F: Format, const BITS: u32, const TRUNCATE: bool>(
    cpu: &mut Cpu,
    i: &Insn,
) -> Result<(), Stop> {
    let x = get::<F>(src(cpu, i, 1)?, 0);
    let mut fp = Fp::new(cpu.regs.mxcsr);
    let r = fp.float_to_int::<F>(x, BITS, TRUNCATE);
    commit_flags(cpu, fp.flags)?;
    cpu.write_reg(i.op0_register(), r);
    Ok(())
}

/// CVTSS2SD/CVTSD2SS: lane 0 converted, the rest of the destination kept.
fn scalar_convert<From: Format, To: Format>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let x = get::<From>(src(cpu, i, 1)?, 0);
    let mut fp = Fp::new(cpu.regs.mxcsr);
    let r = fp.convert::<From, To>(x);
    commit_flags(cpu, fp.flags)?;
    let d = xreg(i, 0);
    let mask = To::ALL as u128;
    cpu.regs.xmm[d] = (cpu.regs.xmm[d] & !mask) | r as u128;
    Ok(())
}

/// CVTPS2PD (two singles to two doubles) and CVTPD2PS (two doubles to the two low singles, upper half zero).
fn packed_convert<From: Format, To: Format>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let v = src(cpu, i, 1)?;
    let mut fp = Fp::new(cpu.regs.mxcsr);
    let mut r = 0u128;
    for l in 0..2 {
        r |= (fp.convert::<From, To>(get::<From>(v, l)) as u128) << (l * To::WIDTH);
    }
    commit_flags(cpu, fp.flags)?;
    cpu.regs.xmm[xreg(i, 0)] = r;
    Ok(())
}

/// CVTDQ2PS (four lanes) and CVTDQ2PD (the two low doublewords): signed doublewords to floating point.
fn packed_from_int<F: Format>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let v = src(cpu, i, 1)?;
    let mut fp = Fp::new(cpu.regs.mxcsr);
    let mut r = 0u128;
    for l in 0..128 / F::WIDTH {
        let x = (v >> (32 * l)) as u32 as i32 as i64;
        r |= (fp.int_to_float::<F>(x) as u128) << (l * F::WIDTH);
    }
    commit_flags(cpu, fp.flags)?;
    cpu.regs.xmm[xreg(i, 0)] = r;
    Ok(())
}

/// CVTPS2DQ/CVTTPS2DQ (four lanes) and CVTPD2DQ/CVTTPD2DQ (two lanes, upper half zero): to signed doublewords.
fn packed_to_int<F: Format, const TRUNCATE: bool>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let v = src(cpu, i, 1)?;
    let mut fp = Fp::new(cpu.regs.mxcsr);
    let mut r = 0u128;
    for l in 0..128 / F::WIDTH {
        let x = fp.float_to_int::<F>(get::<F>(v, l), 32, TRUNCATE);
        r |= (x as u128) << (32 * l);
    }
    commit_flags(cpu, fp.flags)?;
    cpu.regs.xmm[xreg(i, 0)] = r;
    Ok(())
}

pub(super) fn register(t: &mut Table) {
    t.set(Code::Cvtsi2ss_xmm_rm32, int_to_scalar::<F32, 4>);
    t.set(Code::Cvtsi2ss_xmm_rm64, int_to_scalar::<F32, 8>);
    t.set(Code::Cvtsi2sd_xmm_rm32, int_to_scalar::<F64, 4>);
    t.set(Code::Cvtsi2sd_xmm_rm64, int_to_scalar::<F64, 8>);
    t.set(Code::Cvtss2si_r32_xmmm32, scalar_to_int::<F32, 32, false>);
    t.set(Code::Cvtss2si_r64_xmmm32, scalar_to_int::<F32, 64, false>);
    t.set(Code::Cvttss2si_r32_xmmm32, scalar_to_int::<F32, 32, true>);
    t.set(Code::Cvttss2si_r64_xmmm32, scalar_to_int::<F32, 64, true>);
    t.set(Code::Cvtsd2si_r32_xmmm64, scalar_to_int::<F64, 32, false>);
    t.set(Code::Cvtsd2si_r64_xmmm64, scalar_to_int::<F64, 64, false>);
    t.set(Code::Cvttsd2si_r32_xmmm64, scalar_to_int::<F64, 32, true>);
    t.set(Code::Cvttsd2si_r64_xmmm64, scalar_to_int::<F64, 64, true>);
    t.set(Code::Cvtss2sd_xmm_xmmm32, scalar_convert::<F32, F64>);
    t.set(Code::Cvtsd2ss_xmm_xmmm64, scalar_convert::<F64, F32>);
    t.set(Code::Cvtps2pd_xmm_xmmm64, packed_convert::<F32, F64>);
    t.set(Code::Cvtpd2ps_xmm_xmmm128, packed_convert::<F64, F32>);
    t.set(Code::Cvtdq2ps_xmm_xmmm128, packed_from_int::<F32>);
    t.set(Code::Cvtdq2pd_xmm_xmmm64, packed_from_int::<F64>);
    t.set(Code::Cvtps2dq_xmm_xmmm128, packed_to_int::<F32, false>);
    t.set(Code::Cvttps2dq_xmm_xmmm128, packed_to_int::<F32, true>);
    t.set(Code::Cvtpd2dq_xmm_xmmm128, packed_to_int::<F64, false>);
    t.set(Code::Cvttpd2dq_xmm_xmmm128, packed_to_int::<F64, true>);
}

#[cfg(test)]
mod tests {
    use crate::cpu::testutil::*;
    use crate::cpu::*;
    use iced_x86::code_asm::*;

    #[test]
    fn cvttsd2si_of_nan_is_integer_indefinite_and_ie() {
        let code = assemble(|a| {
            a.cvttsd2si(eax, xmm0).unwrap();
            a.cvtsd2si(rbx, xmm1).unwrap();
            a.hlt().unwrap();
        });
        let m = run_to_hlt(&code, |c| {
            c.regs.xmm[0] = 0x7ff8_0000_0000_0001;
            c.regs.xmm[1] = 2.5f64.to_bits() as u128;
            c.regs.gpr[RAX] = u64::MAX;
        });
        assert_eq!(m.cpu.regs.gpr[RAX], 0x8000_0000);
        assert_eq!(m.cpu.regs.gpr[RBX], 2, "2.5 rounds to even");
        assert_eq!(
            m.cpu.regs.mxcsr & 0x3f,
            0x21,
            "IE from the NaN, PE from 2.5"
        );
    }

    #[test]
    fn cvtsi2ss_rounds_by_rc() {
        let code = assemble(|a| {
            a.cvtsi2ss(xmm0, rax).unwrap();
            a.hlt().unwrap();
        });
        // 2^24 + 1 is not a single: rounding up (RC = 10b) gives 2^24 + 2.
        let m = run_to_hlt(&code, |c| {
            c.regs.gpr[RAX] = (1 << 24) + 1;
            c.regs.mxcsr = MXCSR_DEFAULT | (2 << 13);
        });
        assert_eq!(m.cpu.regs.xmm[0] as u32, (16_777_218f32).to_bits());
    }
}
