//! Scalar and packed single- and double-precision floating point (SDM Vol. 1, 10.4.2 and 11.4.1; Vol. 2 for each):
//! ADD, SUB, MUL, DIV, SQRT, MIN, MAX, CMP (eight predicates) in their PS/PD/SS/SD forms; the SSE3 HADD, HSUB and
//! ADDSUB; COMISS/COMISD/UCOMISS/UCOMISD; the logic ANDPS..XORPD; SHUFPS/SHUFPD, UNPCKLPS..UNPCKHPD,
//! MOVMSKPS/MOVMSKPD; LDMXCSR and STMXCSR.
//!
//! Arithmetic goes through softfloat.rs lane by lane; the flags of all lanes are gathered and committed before the
//! destination is written, so an unmasked exception (#XM) leaves the destination untouched. Scalar forms change
//! only the low lane of the destination.
//!
//! RCPPS, RCPSS, RSQRTPS and RSQRTSS give approximations whose low bits differ between processor generations
//! and vendors (the SDM bounds the relative error by 1.5 * 2^-12 and fixes only the special cases), so no answer
//! is "the hardware's". tandem gives one every processor could: the correctly rounded reciprocal (square root),
//! with the documented special cases (a zero or denormal input gives an infinity of its sign, an infinity zero,
//! a NaN its quiet self, RSQRT of a negative number the default NaN, and a tiny RCP result is flushed to a zero
//! of its sign). They raise no exception and leave MXCSR alone.

use super::softfloat::{Format, Fp, F32, F64};
use super::{commit_flags, src, xreg};
use crate::cpu::dispatch::Table;
use crate::cpu::flags::{CF, PF, STATUS, ZF};
use crate::cpu::Insn;
use crate::cpu::{Cpu, Exception, Stop};
use iced_x86::Code;
use std::cmp::Ordering;

#[inline(always)]
fn get<F: Format>(v: u128, l: u32) -> u64 {
    (v >> (l * F::WIDTH)) as u64 & F::ALL
}

#[inline(always)]
fn put<F: Format>(v: u128, l: u32, x: u64) -> u128 {
    let mask = (F::ALL as u128) << (l * F::WIDTH);
    (v & !mask) | (((x & F::ALL) as u128) << (l * F::WIDTH))
}

const ADD: u8 = 0;
const SUB: u8 = 1;
const MUL: u8 = 2;
const DIV: u8 = 3;
const MIN: u8 = 4;
const MAX: u8 = 5;
const SQRT: u8 = 6;

/// The arithmetic of one lane: destination lane `x`, source lane `y`.
#[inline(always)]
fn op<F: Format, const OP: u8>(fp: &mut Fp, x: u64, y: u64) -> u64 {
    match OP {
        ADD => fp.add::<F>(x, y, false),
        SUB => fp.add::<F>(x, y, true),
        MUL => fp.mul::<F>(x, y),
        DIV => fp.div::<F>(x, y),
        MIN => fp.min_max::<F>(x, y, false),
        MAX => fp.min_max::<F>(x, y, true),
        _ => fp.sqrt::<F>(y),
    }
}

/// ADDPS..SQRTSD: every lane of a packed form, lane 0 of a scalar one.
fn arith<F: Format, const PACKED: bool, const OP: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let b = src(cpu, i, 1)?;
    let d = xreg(i, 0);
    let a = cpu.regs.xmm[d];
    let mut fp = Fp::new(cpu.regs.mxcsr);
    let lanes = if PACKED { 128 / F::WIDTH } else { 1 };
    let mut r = a;
    for l in 0..lanes {
        r = put::<F>(r, l, op::<F, OP>(&mut fp, get::<F>(a, l), get::<F>(b, l)));
    }
    commit_flags(cpu, fp.flags)?;
    cpu.regs.xmm[d] = r;
    Ok(())
}

const HADD: u8 = 0;
const HSUB: u8 = 1;
const ADDSUB: u8 = 2;

/// HADDPS/HADDPD/HSUBPS/HSUBPD (pairs of adjacent lanes, destination's first) and ADDSUBPS/ADDSUBPD (even lanes
/// subtract, odd lanes add).
fn horizontal<F: Format, const KIND: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let b = src(cpu, i, 1)?;
    let d = xreg(i, 0);
    let a = cpu.regs.xmm[d];
    let mut fp = Fp::new(cpu.regs.mxcsr);
    let lanes = 128 / F::WIDTH;
    let mut r = 0u128;
    for l in 0..lanes {
        let z = if KIND == ADDSUB {
            fp.add::<F>(get::<F>(a, l), get::<F>(b, l), l % 2 == 0)
        } else {
            let (v, k) = if l < lanes / 2 {
                (a, l)
            } else {
                (b, l - lanes / 2)
            };
            fp.add::<F>(get::<F>(v, 2 * k), get::<F>(v, 2 * k + 1), KIND == HSUB)
        };
        r = put::<F>(r, l, z);
    }
    commit_flags(cpu, fp.flags)?;
    cpu.regs.xmm[d] = r;
    Ok(())
}

/// CMPPS..CMPSD with the predicate in imm8 bits 2..0: EQ, LT, LE, UNORD, NEQ, NLT, NLE, ORD. LT, LE, NLT and NLE
/// signal IE on a QNaN too (SDM Vol. 2, CMPPS, Table 3-7).
fn cmp<F: Format, const PACKED: bool>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let b = src(cpu, i, 1)?;
    let d = xreg(i, 0);
    let a = cpu.regs.xmm[d];
    let predicate = i.immediate8() & 7;
    let signalling = matches!(predicate, 1 | 2 | 5 | 6);
    let mut fp = Fp::new(cpu.regs.mxcsr);
    let lanes = if PACKED { 128 / F::WIDTH } else { 1 };
    let mut r = a;
    for l in 0..lanes {
        let ord = fp.compare::<F>(get::<F>(a, l), get::<F>(b, l), signalling);
        let lt_or_eq = matches!(ord, Some(Ordering::Less | Ordering::Equal));
        let t = match predicate {
            0 => ord == Some(Ordering::Equal),
            1 => ord == Some(Ordering::Less),
            2 => lt_or_eq,
            3 => ord.is_none(),
            4 => ord != Some(Ordering::Equal),
            5 => ord != Some(Ordering::Less),
            6 => !lt_or_eq,
            _ => ord.is_some(),
        };
        r = put::<F>(r, l, if t { F::ALL } else { 0 });
    }
    commit_flags(cpu, fp.flags)?;
    cpu.regs.xmm[d] = r;
    Ok(())
}

/// COMISS/COMISD (SIGNALLING: IE on any NaN) and UCOMISS/UCOMISD (IE on an SNaN only): ZF, PF, CF from the
/// comparison (unordered 1,1,1; greater 0,0,0; less 0,0,1; equal 1,0,0), OF, SF and AF cleared.
fn comis<F: Format, const SIGNALLING: bool>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let b = src(cpu, i, 1)?;
    let a = cpu.regs.xmm[xreg(i, 0)];
    let mut fp = Fp::new(cpu.regs.mxcsr);
    let ord = fp.compare::<F>(get::<F>(a, 0), get::<F>(b, 0), SIGNALLING);
    commit_flags(cpu, fp.flags)?;
    let status = match ord {
        None => ZF | PF | CF,
        Some(Ordering::Greater) => 0,
        Some(Ordering::Less) => CF,
        Some(Ordering::Equal) => ZF,
    };
    cpu.regs.flags.set_rflags(status, STATUS);
    Ok(())
}

/// Defines a handler `dst = f(dst, src)` on whole registers.
macro_rules! bitwise {
    ($($name:ident = |$a:ident, $b:ident| $body:expr;)*) => {$(
        fn $name(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
            let $b = src(cpu, i, 1)?;
            let d = xreg(i, 0);
            let $a = cpu.regs.xmm[d];
            cpu.regs.xmm[d] = $body;
            Ok(())
        }
    )*};
}

bitwise! {
    and = |a, b| a & b;
    andn = |a, b| !a & b;
    or = |a, b| a | b;
    xor = |a, b| a ^ b;
    unpcklps = |a, b| unpack::<F32>(a, b, 0);
    unpckhps = |a, b| unpack::<F32>(a, b, 1);
    unpcklpd = |a, b| unpack::<F64>(a, b, 0);
    unpckhpd = |a, b| unpack::<F64>(a, b, 1);
}

/// UNPCKL* (half 0) and UNPCKH*: interleaves the lanes of one half of `a` and `b`.
fn unpack<F: Format>(a: u128, b: u128, half: u32) -> u128 {
    let count = 64 / F::WIDTH;
    let mut r = 0u128;
    for k in 0..count {
        r = put::<F>(r, 2 * k, get::<F>(a, half * count + k));
        r = put::<F>(r, 2 * k + 1, get::<F>(b, half * count + k));
    }
    r
}

/// SHUFPS: lanes 0 and 1 from the destination, 2 and 3 from the source, each picked by two bits of imm8.
fn shufps(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let b = src(cpu, i, 1)?;
    let d = xreg(i, 0);
    let a = cpu.regs.xmm[d];
    let imm = i.immediate8() as u32;
    let mut r = 0u128;
    for l in 0..4 {
        let v = if l < 2 { a } else { b };
        r = put::<F32>(r, l, get::<F32>(v, (imm >> (2 * l)) & 3));
    }
    cpu.regs.xmm[d] = r;
    Ok(())
}

/// SHUFPD: lane 0 from the destination, lane 1 from the source, each picked by one bit of imm8.
fn shufpd(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let b = src(cpu, i, 1)?;
    let d = xreg(i, 0);
    let a = cpu.regs.xmm[d];
    let imm = i.immediate8() as u32;
    let r = put::<F64>(0, 0, get::<F64>(a, imm & 1));
    cpu.regs.xmm[d] = put::<F64>(r, 1, get::<F64>(b, (imm >> 1) & 1));
    Ok(())
}

/// MOVMSKPS/MOVMSKPD: the sign bit of each lane, into a general-purpose register (upper bits zero).
fn movmsk<F: Format>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let v = cpu.regs.xmm[xreg(i, 1)];
    let mut m = 0u64;
    for l in 0..128 / F::WIDTH {
        m |= (get::<F>(v, l) >> (F::WIDTH - 1)) << l;
    }
    cpu.write_reg(i.op0_register(), m);
    Ok(())
}

/// One lane of RCPPS/RCPSS (`SQRT` false) or RSQRTPS/RSQRTSS (`SQRT` true), binary32 bits in and out.
fn approximate_reciprocal<const SQRT: bool>(x: u32) -> u32 {
    const SIGN: u32 = 0x8000_0000;
    const EXPONENT: u32 = 0x7f80_0000;
    const QUIET: u32 = 0x0040_0000;
    const DEFAULT_NAN: u32 = 0xffc0_0000;
    let sign = x & SIGN;
    let exponent = x & EXPONENT;
    let fraction = x & !(SIGN | EXPONENT);
    match (exponent, fraction) {
        (EXPONENT, f) if f != 0 => x | QUIET,
        (EXPONENT, _) if SQRT && sign != 0 => DEFAULT_NAN,
        (EXPONENT, _) => sign,
        // Zeros and denormals (read as zeros): an infinity of the operand's sign, also for RSQRT of -0.
        (0, _) => sign | EXPONENT,
        _ if SQRT && sign != 0 => DEFAULT_NAN,
        _ => {
            let v = f64::from(f32::from_bits(x));
            let r = if SQRT { 1.0 / v.sqrt() } else { 1.0 / v } as f32;
            if r.is_subnormal() {
                sign
            } else {
                r.to_bits()
            }
        }
    }
}

/// RCPPS/RSQRTPS (every lane) and RCPSS/RSQRTSS (lane 0; the others stay the destination's).
fn approximate<const SQRT: bool, const PACKED: bool>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let b = src(cpu, i, 1)?;
    let d = xreg(i, 0);
    let lanes = if PACKED { 4 } else { 1 };
    let mut r = cpu.regs.xmm[d];
    for l in 0..lanes {
        let lane = get::<F32>(b, l) as u32;
        r = put::<F32>(r, l, u64::from(approximate_reciprocal::<SQRT>(lane)));
    }
    cpu.regs.xmm[d] = r;
    Ok(())
}

/// LDMXCSR m32: setting a reserved bit (31..16) is #GP (SDM Vol. 2, LDMXCSR; MXCSR_MASK is 0xffff with DAZ).
fn ldmxcsr(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let a = cpu.ea(i);
    let v = cpu.mem.read_u32(a)?;
    if v & 0xffff_0000 != 0 {
        return Err(Stop::exception(Exception::GeneralProtection));
    }
    cpu.regs.mxcsr = v;
    Ok(())
}

fn stmxcsr(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let a = cpu.ea(i);
    cpu.mem.write_u32(a, cpu.regs.mxcsr)?;
    Ok(())
}

pub(super) fn register(t: &mut Table) {
    macro_rules! arith_forms {
        ($($op:ident: $ps:ident $pd:ident $ss:ident $sd:ident;)*) => {$(
            t.set(Code::$ps, arith::<F32, true, $op>);
            t.set(Code::$pd, arith::<F64, true, $op>);
            t.set(Code::$ss, arith::<F32, false, $op>);
            t.set(Code::$sd, arith::<F64, false, $op>);
        )*};
    }
    arith_forms! {
        ADD: Addps_xmm_xmmm128 Addpd_xmm_xmmm128 Addss_xmm_xmmm32 Addsd_xmm_xmmm64;
        SUB: Subps_xmm_xmmm128 Subpd_xmm_xmmm128 Subss_xmm_xmmm32 Subsd_xmm_xmmm64;
        MUL: Mulps_xmm_xmmm128 Mulpd_xmm_xmmm128 Mulss_xmm_xmmm32 Mulsd_xmm_xmmm64;
        DIV: Divps_xmm_xmmm128 Divpd_xmm_xmmm128 Divss_xmm_xmmm32 Divsd_xmm_xmmm64;
        MIN: Minps_xmm_xmmm128 Minpd_xmm_xmmm128 Minss_xmm_xmmm32 Minsd_xmm_xmmm64;
        MAX: Maxps_xmm_xmmm128 Maxpd_xmm_xmmm128 Maxss_xmm_xmmm32 Maxsd_xmm_xmmm64;
        SQRT: Sqrtps_xmm_xmmm128 Sqrtpd_xmm_xmmm128 Sqrtss_xmm_xmmm32 Sqrtsd_xmm_xmmm64;
    }
    t.set(Code::Haddps_xmm_xmmm128, horizontal::<F32, HADD>);
    t.set(Code::Haddpd_xmm_xmmm128, horizontal::<F64, HADD>);
    t.set(Code::Hsubps_xmm_xmmm128, horizontal::<F32, HSUB>);
    t.set(Code::Hsubpd_xmm_xmmm128, horizontal::<F64, HSUB>);
    t.set(Code::Addsubps_xmm_xmmm128, horizontal::<F32, ADDSUB>);
    t.set(Code::Addsubpd_xmm_xmmm128, horizontal::<F64, ADDSUB>);
    t.set(Code::Cmpps_xmm_xmmm128_imm8, cmp::<F32, true>);
    t.set(Code::Cmppd_xmm_xmmm128_imm8, cmp::<F64, true>);
    t.set(Code::Cmpss_xmm_xmmm32_imm8, cmp::<F32, false>);
    t.set(Code::Cmpsd_xmm_xmmm64_imm8, cmp::<F64, false>);
    t.set(Code::Comiss_xmm_xmmm32, comis::<F32, true>);
    t.set(Code::Comisd_xmm_xmmm64, comis::<F64, true>);
    t.set(Code::Ucomiss_xmm_xmmm32, comis::<F32, false>);
    t.set(Code::Ucomisd_xmm_xmmm64, comis::<F64, false>);
    for (c, h) in [
        (Code::Andps_xmm_xmmm128, and as crate::cpu::Handler),
        (Code::Andpd_xmm_xmmm128, and),
        (Code::Andnps_xmm_xmmm128, andn),
        (Code::Andnpd_xmm_xmmm128, andn),
        (Code::Orps_xmm_xmmm128, or),
        (Code::Orpd_xmm_xmmm128, or),
        (Code::Xorps_xmm_xmmm128, xor),
        (Code::Xorpd_xmm_xmmm128, xor),
        (Code::Unpcklps_xmm_xmmm128, unpcklps),
        (Code::Unpckhps_xmm_xmmm128, unpckhps),
        (Code::Unpcklpd_xmm_xmmm128, unpcklpd),
        (Code::Unpckhpd_xmm_xmmm128, unpckhpd),
        (Code::Shufps_xmm_xmmm128_imm8, shufps),
        (Code::Shufpd_xmm_xmmm128_imm8, shufpd),
        (Code::Movmskps_r32_xmm, movmsk::<F32>),
        (Code::Movmskps_r64_xmm, movmsk::<F32>),
        (Code::Movmskpd_r32_xmm, movmsk::<F64>),
        (Code::Movmskpd_r64_xmm, movmsk::<F64>),
        (Code::Rcpps_xmm_xmmm128, approximate::<false, true>),
        (Code::Rcpss_xmm_xmmm32, approximate::<false, false>),
        (Code::Rsqrtps_xmm_xmmm128, approximate::<true, true>),
        (Code::Rsqrtss_xmm_xmmm32, approximate::<true, false>),
        (Code::Ldmxcsr_m32, ldmxcsr),
        (Code::Stmxcsr_m32, stmxcsr),
    ] {
        t.set(c, h);
    }
}

#[cfg(test)]
mod tests {
    use crate::cpu::flags::{CF, OF, PF, SF, ZF};
    use crate::cpu::testutil::*;
    use crate::cpu::*;
    use iced_x86::code_asm::*;

    const F32_ONE: u128 = 0x3f80_0000;

    #[test]
    fn divide_by_zero_masked_gives_infinity_and_sets_ze() {
        let code = assemble(|a| {
            a.divss(xmm0, xmm1).unwrap();
            a.hlt().unwrap();
        });
        let m = run_to_hlt(&code, |c| {
            c.regs.xmm[0] = (0xdead_u128 << 32) | F32_ONE;
            c.regs.xmm[1] = 0;
        });
        assert_eq!(m.cpu.regs.xmm[0], (0xdead_u128 << 32) | 0x7f80_0000);
        assert_eq!(m.cpu.regs.mxcsr, MXCSR_DEFAULT | 0x4);
    }

    #[test]
    fn unmasked_exception_raises_xm_before_writing() {
        let code = assemble(|a| {
            a.ldmxcsr(dword_ptr(DATA)).unwrap();
            a.divps(xmm0, xmm1).unwrap();
        });
        let mut m = machine_with(&code);
        // Zero-divide unmasked (ZM, bit 9, cleared).
        m.cpu.mem.write_u32(DATA, 0x1f80 & !(1 << 9)).unwrap();
        m.cpu.regs.xmm[0] = F32_ONE;
        m.cpu.regs.xmm[1] = (F32_ONE << 32) | (F32_ONE << 64) | (F32_ONE << 96);
        assert_eq!(m.run(10), Exit::Exception(Exception::SimdFloatingPoint));
        assert_eq!(m.cpu.regs.xmm[0], F32_ONE, "destination untouched");
        assert_eq!(m.cpu.regs.mxcsr & 0x3f, 0x4, "ZE recorded");
        assert_eq!(m.cpu.icount, 1);
    }

    #[test]
    fn ldmxcsr_with_reserved_bits_is_gp() {
        let code = assemble(|a| {
            a.ldmxcsr(dword_ptr(DATA)).unwrap();
        });
        let mut m = machine_with(&code);
        m.cpu.mem.write_u32(DATA, 0x1_1f80).unwrap();
        assert_eq!(m.run(10), Exit::Exception(Exception::GeneralProtection));
        assert_eq!(m.cpu.regs.mxcsr, MXCSR_DEFAULT);
    }

    #[test]
    fn ucomisd_sets_zf_pf_cf_and_clears_the_rest() {
        let code = assemble(|a| {
            a.ucomisd(xmm0, xmm1).unwrap();
            a.hlt().unwrap();
        });
        let nan = 0x7ff8_0000_0000_0000u128;
        let m = run_to_hlt(&code, |c| {
            c.regs.xmm[0] = nan;
            c.regs.xmm[1] = 0;
            c.regs.flags.set_rflags(OF | SF, OF | SF);
        });
        assert_eq!(m.cpu.rflags() & (ZF | PF | CF | OF | SF), ZF | PF | CF);
        assert_eq!(
            m.cpu.regs.mxcsr, MXCSR_DEFAULT,
            "a QNaN is not invalid for UCOMISD"
        );
    }

    /// Runs `op xmm0, xmm1` with the given MXCSR and inputs: the exit, xmm0 and MXCSR after.
    fn run_one(
        op: impl FnOnce(&mut CodeAssembler),
        mxcsr: u32,
        x0: u128,
        x1: u128,
    ) -> (Exit, u128, u32) {
        let code = assemble(|a| {
            op(a);
            a.hlt().unwrap();
        });
        let mut m = machine_with(&code);
        m.cpu.regs.mxcsr = mxcsr;
        m.cpu.regs.xmm[0] = x0;
        m.cpu.regs.xmm[1] = x1;
        let exit = m.run(1);
        (exit, m.cpu.regs.xmm[0], m.cpu.regs.mxcsr)
    }

    #[test]
    fn exact_tiny_result_is_underflow_only_when_unmasked() {
        let small = 0x0d80_0000u128; // 2^-100
        let smaller = 0x3080_0000u128; // 2^-30
        let mul = |a: &mut CodeAssembler| a.mulss(xmm0, xmm1).unwrap();
        // Masked: the exact denormal 2^-130 is written and nothing is flagged.
        let (exit, x, mxcsr) = run_one(mul, MXCSR_DEFAULT, small, smaller);
        assert_eq!(exit, Exit::BudgetExhausted);
        assert_eq!(x, 1 << 19);
        assert_eq!(mxcsr, MXCSR_DEFAULT);
        // Unmasked (UM, bit 11, clear): #XM with UE, destination untouched.
        let (exit, x, mxcsr) = run_one(mul, MXCSR_DEFAULT & !(1 << 11), small, smaller);
        assert_eq!(exit, Exit::Exception(Exception::SimdFloatingPoint));
        assert_eq!(x, small);
        assert_eq!(mxcsr & 0x3f, 0x10);
        // FTZ with underflow masked flushes a tiny result even when exact: +0, with UE and PE.
        let (_, x, mxcsr) = run_one(mul, MXCSR_DEFAULT | 0x8000, small, smaller);
        assert_eq!(x, 0);
        assert_eq!(mxcsr & 0x3f, 0x30);
    }

    #[test]
    fn unmasked_pre_computation_exception_records_only_pre_computation_flags() {
        // Lane 0: 0/0 (IE); lane 1: 1/3 (PE). With IE unmasked, PE is not recorded.
        let one = 0x3f80_0000u128;
        let three = 0x4040_0000u128;
        let div = |a: &mut CodeAssembler| a.divps(xmm0, xmm1).unwrap();
        let (exit, x, mxcsr) = run_one(div, MXCSR_DEFAULT & !(1 << 7), one << 32, three << 32);
        assert_eq!(exit, Exit::Exception(Exception::SimdFloatingPoint));
        assert_eq!(x, one << 32);
        assert_eq!(mxcsr & 0x3f, 0x01);
        // With PE unmasked instead, 0/0 is masked: both flags are recorded and #XM is raised.
        let (exit, _, mxcsr) = run_one(div, MXCSR_DEFAULT & !(1 << 12), one << 32, three << 32);
        assert_eq!(exit, Exit::Exception(Exception::SimdFloatingPoint));
        assert_eq!(mxcsr & 0x3f, 0x21);
    }

    #[test]
    fn daz_turns_denormal_operands_into_zero_without_de() {
        let denormal = 0x0000_0001u128;
        let add = |a: &mut CodeAssembler| a.addss(xmm0, xmm1).unwrap();
        let (_, x, mxcsr) = run_one(add, MXCSR_DEFAULT, 0, denormal);
        assert_eq!((x, mxcsr & 0x3f), (denormal, 0x02), "DE without DAZ");
        let (_, x, mxcsr) = run_one(add, MXCSR_DEFAULT | 0x40, 0, denormal);
        assert_eq!((x, mxcsr & 0x3f), (0, 0), "DAZ: +0 + +0, no flag");
    }

    #[test]
    fn minps_returns_the_source_for_nan_and_zeros() {
        let qnan = 0x7fc0_0000u128;
        let neg_zero = 0x8000_0000u128;
        let min = |a: &mut CodeAssembler| a.minps(xmm0, xmm1).unwrap();
        let (_, x, mxcsr) = run_one(min, MXCSR_DEFAULT, qnan | (neg_zero << 32), 0x3f80_0000);
        assert_eq!(
            x, 0x3f80_0000,
            "NaN gives the source; -0 vs +0 gives the source +0"
        );
        assert_eq!(mxcsr & 0x3f, 0x01, "a QNaN is invalid for MINPS");
    }
}
