//! Packed integer instructions on XMM registers (SDM Vol. 1, 11.4.4 to 11.4.6 and 12.7; Vol. 2 for each): the SSE2
//! add/subtract (wrapping and saturating), multiplies, PMADDWD, logic, compares, PMOVMSKB, shuffles, unpacks, packs,
//! shifts, PMINUB/PMAXUB/PMINSW/PMAXSW, PAVGB/PAVGW, PSADBW, PEXTRW, PINSRW; and the SSSE3 PSHUFB, PALIGNR, PABS*,
//! PSIGN*, PHADD*/PHSUB*, PMADDUBSW and PMULHRSW.
//!
//! Each handler reads its source (checking the 16-byte alignment of a memory source) and destination, computes the
//! whole result, and writes once. Lanes are little-endian: lane 0 is the least significant.

use super::{lane, src, with_lane, xreg};
use crate::cpu::dispatch::Table;
use crate::cpu::Insn;
use crate::cpu::{Cpu, Stop};
use iced_x86::{Code, Mnemonic, OpKind};

/// Applies `f` lane by lane to `BITS`-bit lanes of `a` and `b`.
#[inline(always)]
fn zip<const BITS: u32>(a: u128, b: u128, f: impl Fn(u64, u64) -> u64) -> u128 {
    let mut r = 0u128;
    for l in 0..128 / BITS {
        r = with_lane::<BITS>(r, l, f(lane::<BITS>(a, l), lane::<BITS>(b, l)));
    }
    r
}

/// Sign-extends the low `bits` bits of `x`.
#[inline(always)]
fn sx(x: u64, bits: u32) -> i64 {
    ((x << (64 - bits)) as i64) >> (64 - bits)
}

/// Saturates to a signed `bits`-bit integer.
#[inline(always)]
fn sat_s(v: i64, bits: u32) -> u64 {
    let max = (1i64 << (bits - 1)) - 1;
    v.clamp(-max - 1, max) as u64
}

/// Saturates to an unsigned `bits`-bit integer.
#[inline(always)]
fn sat_u(v: i64, bits: u32) -> u64 {
    v.clamp(0, (1i64 << bits) - 1) as u64
}

/// Defines, for each `name = |a, b| expression` on two u128 values, the pure function `lanes::name` and a handler
/// `dst = lanes::name(dst, src)`. The MMX handlers (mmx.rs) reuse the pure functions on 64-bit registers.
macro_rules! binary {
    ($($name:ident = |$a:ident, $b:ident| $body:expr;)*) => {
        /// The lane arithmetic of each binary instruction, on whole 128-bit values.
        pub(super) mod lanes {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[inline(always)]
                pub(in crate::cpu::sse) fn $name($a: u128, $b: u128) -> u128 {
                    $body
                }
            )*
        }
        $(
            fn $name(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
                let b = src(cpu, i, 1)?;
                let d = xreg(i, 0);
                cpu.regs.xmm[d] = lanes::$name(cpu.regs.xmm[d], b);
                Ok(())
            }
        )*
    };
}

binary! {
    paddb = |a, b| zip::<8>(a, b, |x, y| x.wrapping_add(y));
    paddw = |a, b| zip::<16>(a, b, |x, y| x.wrapping_add(y));
    paddd = |a, b| zip::<32>(a, b, |x, y| x.wrapping_add(y));
    paddq = |a, b| zip::<64>(a, b, |x, y| x.wrapping_add(y));
    psubb = |a, b| zip::<8>(a, b, |x, y| x.wrapping_sub(y));
    psubw = |a, b| zip::<16>(a, b, |x, y| x.wrapping_sub(y));
    psubd = |a, b| zip::<32>(a, b, |x, y| x.wrapping_sub(y));
    psubq = |a, b| zip::<64>(a, b, |x, y| x.wrapping_sub(y));
    paddsb = |a, b| zip::<8>(a, b, |x, y| sat_s(sx(x, 8) + sx(y, 8), 8));
    paddsw = |a, b| zip::<16>(a, b, |x, y| sat_s(sx(x, 16) + sx(y, 16), 16));
    psubsb = |a, b| zip::<8>(a, b, |x, y| sat_s(sx(x, 8) - sx(y, 8), 8));
    psubsw = |a, b| zip::<16>(a, b, |x, y| sat_s(sx(x, 16) - sx(y, 16), 16));
    paddusb = |a, b| zip::<8>(a, b, |x, y| sat_u(x as i64 + y as i64, 8));
    paddusw = |a, b| zip::<16>(a, b, |x, y| sat_u(x as i64 + y as i64, 16));
    psubusb = |a, b| zip::<8>(a, b, |x, y| sat_u(x as i64 - y as i64, 8));
    psubusw = |a, b| zip::<16>(a, b, |x, y| sat_u(x as i64 - y as i64, 16));
    pmullw = |a, b| zip::<16>(a, b, |x, y| x.wrapping_mul(y));
    pmulhw = |a, b| zip::<16>(a, b, |x, y| ((sx(x, 16) * sx(y, 16)) >> 16) as u64);
    pmulhuw = |a, b| zip::<16>(a, b, |x, y| (x * y) >> 16);
    pmuludq = |a, b| zip::<64>(a, b, |x, y| (x & 0xffff_ffff) * (y & 0xffff_ffff));
    pmaddwd = |a, b| zip::<32>(a, b, |x, y| {
        let lo = sx(x, 16) * sx(y, 16);
        let hi = sx(x >> 16, 16) * sx(y >> 16, 16);
        // -32768 * -32768 * 2 wraps to 0x8000_0000, as on hardware.
        lo.wrapping_add(hi) as u64
    });
    pand = |a, b| a & b;
    pandn = |a, b| !a & b;
    por = |a, b| a | b;
    pxor = |a, b| a ^ b;
    pcmpeqb = |a, b| zip::<8>(a, b, |x, y| if x == y { u64::MAX } else { 0 });
    pcmpeqw = |a, b| zip::<16>(a, b, |x, y| if x == y { u64::MAX } else { 0 });
    pcmpeqd = |a, b| zip::<32>(a, b, |x, y| if x == y { u64::MAX } else { 0 });
    pcmpgtb = |a, b| zip::<8>(a, b, |x, y| if sx(x, 8) > sx(y, 8) { u64::MAX } else { 0 });
    pcmpgtw = |a, b| zip::<16>(a, b, |x, y| if sx(x, 16) > sx(y, 16) { u64::MAX } else { 0 });
    pcmpgtd = |a, b| zip::<32>(a, b, |x, y| if sx(x, 32) > sx(y, 32) { u64::MAX } else { 0 });
    pminub = |a, b| zip::<8>(a, b, |x, y| x.min(y));
    pmaxub = |a, b| zip::<8>(a, b, |x, y| x.max(y));
    pminsw = |a, b| zip::<16>(a, b, |x, y| if sx(x, 16) < sx(y, 16) { x } else { y });
    pmaxsw = |a, b| zip::<16>(a, b, |x, y| if sx(x, 16) > sx(y, 16) { x } else { y });
    pavgb = |a, b| zip::<8>(a, b, |x, y| (x + y + 1) >> 1);
    pavgw = |a, b| zip::<16>(a, b, |x, y| (x + y + 1) >> 1);
    psadbw = |a, b| zip::<64>(a, b, |x, y| {
        (0..8).map(|k| ((x >> (8 * k)) as u8).abs_diff((y >> (8 * k)) as u8) as u64).sum()
    });
    punpcklbw = |a, b| interleave::<8>(a, b, 0);
    punpcklwd = |a, b| interleave::<16>(a, b, 0);
    punpckldq = |a, b| interleave::<32>(a, b, 0);
    punpcklqdq = |a, b| interleave::<64>(a, b, 0);
    punpckhbw = |a, b| interleave::<8>(a, b, 1);
    punpckhwd = |a, b| interleave::<16>(a, b, 1);
    punpckhdq = |a, b| interleave::<32>(a, b, 1);
    punpckhqdq = |a, b| interleave::<64>(a, b, 1);
    packsswb = |a, b| pack::<16>(a, b, |x| sat_s(sx(x, 16), 8));
    packssdw = |a, b| pack::<32>(a, b, |x| sat_s(sx(x, 32), 16));
    packuswb = |a, b| pack::<16>(a, b, |x| sat_u(sx(x, 16), 8));
    // SSSE3.
    pshufb = |a, b| {
        let mut r = 0u128;
        for l in 0..16 {
            let index = lane::<8>(b, l);
            if index & 0x80 == 0 {
                r = with_lane::<8>(r, l, lane::<8>(a, (index & 15) as u32));
            }
        }
        r
    };
    pabsb = |_a, b| zip::<8>(b, 0, |x, _| sx(x, 8).unsigned_abs());
    pabsw = |_a, b| zip::<16>(b, 0, |x, _| sx(x, 16).unsigned_abs());
    pabsd = |_a, b| zip::<32>(b, 0, |x, _| sx(x, 32).unsigned_abs());
    psignb = |a, b| zip::<8>(a, b, |x, y| sign(x, y, 8));
    psignw = |a, b| zip::<16>(a, b, |x, y| sign(x, y, 16));
    psignd = |a, b| zip::<32>(a, b, |x, y| sign(x, y, 32));
    pmaddubsw = |a, b| zip::<16>(a, b, |x, y| {
        // Unsigned bytes of the destination times signed bytes of the source, pairs added with saturation.
        let lo = (x & 0xff) as i64 * sx(y, 8);
        let hi = ((x >> 8) & 0xff) as i64 * sx(y >> 8, 8);
        sat_s(lo + hi, 16)
    });
    pmulhrsw = |a, b| zip::<16>(a, b, |x, y| ((((sx(x, 16) * sx(y, 16)) >> 14) + 1) >> 1) as u64);
    phaddw = |a, b| horizontal::<16>(a, b, |x, y| x.wrapping_add(y));
    phaddd = |a, b| horizontal::<32>(a, b, |x, y| x.wrapping_add(y));
    phaddsw = |a, b| horizontal::<16>(a, b, |x, y| sat_s(sx(x, 16) + sx(y, 16), 16));
    phsubw = |a, b| horizontal::<16>(a, b, |x, y| x.wrapping_sub(y));
    phsubd = |a, b| horizontal::<32>(a, b, |x, y| x.wrapping_sub(y));
    phsubsw = |a, b| horizontal::<16>(a, b, |x, y| sat_s(sx(x, 16) - sx(y, 16), 16));
}

/// PSIGN: `x` negated, zeroed or kept as `y` is negative, zero or positive.
#[inline(always)]
fn sign(x: u64, y: u64, bits: u32) -> u64 {
    match sx(y, bits) {
        0 => 0,
        v if v < 0 => x.wrapping_neg(),
        _ => x,
    }
}

/// PUNPCKL* (HALF = 0) and PUNPCKH* (HALF = 1): interleaves the lanes of one half of `a` and `b`.
#[inline(always)]
fn interleave<const BITS: u32>(a: u128, b: u128, half: u32) -> u128 {
    let count = 64 / BITS;
    let mut r = 0u128;
    for k in 0..count {
        r = with_lane::<BITS>(r, 2 * k, lane::<BITS>(a, half * count + k));
        r = with_lane::<BITS>(r, 2 * k + 1, lane::<BITS>(b, half * count + k));
    }
    r
}

/// PACKSS*/PACKUS*: the `BITS`-bit lanes of `a` then `b`, each narrowed by `f` to half width.
#[inline(always)]
fn pack<const BITS: u32>(a: u128, b: u128, f: impl Fn(u64) -> u64) -> u128 {
    let count = 128 / BITS;
    let mut r = 0u128;
    for k in 0..count {
        let half = BITS / 2;
        let (x, y) = (f(lane::<BITS>(a, k)), f(lane::<BITS>(b, k)));
        r |= ((x as u128) & ((1 << half) - 1)) << (k * half);
        r |= ((y as u128) & ((1 << half) - 1)) << ((k + count) * half);
    }
    r
}

/// PHADD*/PHSUB*: `f` on adjacent lane pairs of `a` (low half of the result) and then of `b`.
#[inline(always)]
fn horizontal<const BITS: u32>(a: u128, b: u128, f: impl Fn(u64, u64) -> u64) -> u128 {
    let count = 64 / BITS;
    let mut r = 0u128;
    for k in 0..count {
        r = with_lane::<BITS>(r, k, f(lane::<BITS>(a, 2 * k), lane::<BITS>(a, 2 * k + 1)));
        r = with_lane::<BITS>(
            r,
            k + count,
            f(lane::<BITS>(b, 2 * k), lane::<BITS>(b, 2 * k + 1)),
        );
    }
    r
}

pub(super) const SHL: u8 = 0;
pub(super) const SHR: u8 = 1;
pub(super) const SAR: u8 = 2;

/// PSLL/PSRL/PSRA with an XMM/m128 count (its low quadword) or an imm8 count. A count at least the lane width
/// zeroes the lane, or fills it with the sign for PSRA.
fn shift<const BITS: u32, const KIND: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let count = if i.op1_kind() == OpKind::Immediate8 {
        i.immediate8() as u64
    } else {
        src(cpu, i, 1)? as u64
    };
    let d = xreg(i, 0);
    cpu.regs.xmm[d] = shift_lanes::<BITS, KIND>(cpu.regs.xmm[d], count);
    Ok(())
}

/// The lanes of `v` shifted by `count` (the arithmetic of `shift`, shared with the MMX forms).
#[inline(always)]
pub(super) fn shift_lanes<const BITS: u32, const KIND: u8>(v: u128, count: u64) -> u128 {
    zip::<BITS>(v, 0, |x, _| match KIND {
        SHL if count < BITS as u64 => x << count,
        SHR if count < BITS as u64 => x >> count,
        SAR => (sx(x, BITS) >> count.min(BITS as u64 - 1)) as u64,
        _ => 0,
    })
}

/// PSLLDQ (LEFT) and PSRLDQ: a byte shift of the whole register by imm8 (16 or more zeroes it).
fn byte_shift<const LEFT: bool>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let count = i.immediate8() as u32;
    let d = xreg(i, 0);
    let v = cpu.regs.xmm[d];
    cpu.regs.xmm[d] = if count >= 16 {
        0
    } else if LEFT {
        v << (count * 8)
    } else {
        v >> (count * 8)
    };
    Ok(())
}

/// PSHUFD: each doubleword of the result picks a source doubleword by two bits of imm8.
fn pshufd(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let v = src(cpu, i, 1)?;
    let imm = i.immediate8() as u32;
    let mut r = 0u128;
    for l in 0..4 {
        r = with_lane::<32>(r, l, lane::<32>(v, (imm >> (2 * l)) & 3));
    }
    cpu.regs.xmm[xreg(i, 0)] = r;
    Ok(())
}

/// PSHUFLW (HIGH = false) and PSHUFHW: shuffles the words of one quadword, copies the other.
fn pshufw<const HIGH: bool>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let v = src(cpu, i, 1)?;
    let imm = i.immediate8() as u32;
    let base = if HIGH { 4 } else { 0 };
    let mut r = v;
    for l in 0..4 {
        r = with_lane::<16>(r, base + l, lane::<16>(v, base + ((imm >> (2 * l)) & 3)));
    }
    cpu.regs.xmm[xreg(i, 0)] = r;
    Ok(())
}

/// PALIGNR: the destination:source pair (destination high) shifted right by imm8 bytes, low 16 bytes kept.
fn palignr(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let s = src(cpu, i, 1)?;
    let d = xreg(i, 0);
    let a = cpu.regs.xmm[d];
    let count = i.immediate8() as u32;
    cpu.regs.xmm[d] = match count {
        0 => s,
        1..=15 => (s >> (8 * count)) | (a << (8 * (16 - count))),
        16 => a,
        17..=31 => a >> (8 * (count - 16)),
        _ => 0,
    };
    Ok(())
}

/// PMOVMSKB r32/r64, xmm: the top bit of each byte.
fn pmovmskb(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let v = cpu.regs.xmm[xreg(i, 1)];
    let mut m = 0u64;
    for l in 0..16 {
        m |= (lane::<8>(v, l) >> 7) << l;
    }
    cpu.write_reg(i.op0_register(), m);
    Ok(())
}

/// PEXTRW r32/r64, xmm, imm8: a word zero-extended.
fn pextrw(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let v = lane::<16>(cpu.regs.xmm[xreg(i, 1)], i.immediate8() as u32 & 7);
    cpu.write_reg(i.op0_register(), v);
    Ok(())
}

/// PINSRW xmm, r32/m16, imm8.
fn pinsrw(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let v = cpu.read_op(i, 1, 2)? & 0xffff;
    let d = xreg(i, 0);
    cpu.regs.xmm[d] = with_lane::<16>(cpu.regs.xmm[d], i.immediate8() as u32 & 7, v);
    Ok(())
}

pub(super) fn register(t: &mut Table) {
    use super::sse_forms;
    use Mnemonic as M;
    let binary: [(Mnemonic, crate::cpu::Handler); 73] = [
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
        (M::Punpcklbw, punpcklbw),
        (M::Punpcklwd, punpcklwd),
        (M::Punpckldq, punpckldq),
        (M::Punpcklqdq, punpcklqdq),
        (M::Punpckhbw, punpckhbw),
        (M::Punpckhwd, punpckhwd),
        (M::Punpckhdq, punpckhdq),
        (M::Punpckhqdq, punpckhqdq),
        (M::Packsswb, packsswb),
        (M::Packssdw, packssdw),
        (M::Packuswb, packuswb),
        (M::Pshufb, pshufb),
        (M::Pabsb, pabsb),
        (M::Pabsw, pabsw),
        (M::Pabsd, pabsd),
        (M::Psignb, psignb),
        (M::Psignw, psignw),
        (M::Psignd, psignd),
        (M::Pmaddubsw, pmaddubsw),
        (M::Pmulhrsw, pmulhrsw),
        (M::Phaddw, phaddw),
        (M::Phaddd, phaddd),
        (M::Phaddsw, phaddsw),
        (M::Phsubw, phsubw),
        (M::Phsubd, phsubd),
        (M::Phsubsw, phsubsw),
        (M::Psllw, shift::<16, SHL>),
        (M::Pslld, shift::<32, SHL>),
        (M::Psllq, shift::<64, SHL>),
        (M::Psrlw, shift::<16, SHR>),
        (M::Psrld, shift::<32, SHR>),
        (M::Psrlq, shift::<64, SHR>),
        (M::Psraw, shift::<16, SAR>),
        (M::Psrad, shift::<32, SAR>),
        (M::Palignr, palignr),
    ];
    for (m, h) in binary {
        for c in sse_forms(m) {
            t.set(c, h);
        }
    }
    t.set(Code::Pslldq_xmm_imm8, byte_shift::<true>);
    t.set(Code::Psrldq_xmm_imm8, byte_shift::<false>);
    t.set(Code::Pshufd_xmm_xmmm128_imm8, pshufd);
    t.set(Code::Pshuflw_xmm_xmmm128_imm8, pshufw::<false>);
    t.set(Code::Pshufhw_xmm_xmmm128_imm8, pshufw::<true>);
    t.set(Code::Pmovmskb_r32_xmm, pmovmskb);
    t.set(Code::Pmovmskb_r64_xmm, pmovmskb);
    t.set(Code::Pextrw_r32_xmm_imm8, pextrw);
    t.set(Code::Pextrw_r64_xmm_imm8, pextrw);
    t.set(Code::Pinsrw_xmm_r32m16_imm8, pinsrw);
    t.set(Code::Pinsrw_xmm_r64m16_imm8, pinsrw);
}

#[cfg(test)]
mod tests {
    use crate::cpu::testutil::*;
    use crate::cpu::*;
    use iced_x86::code_asm::*;

    #[test]
    fn saturating_adds_and_pmovmskb() {
        let code = assemble(|a| {
            a.paddsb(xmm0, xmm1).unwrap();
            a.paddusw(xmm2, xmm3).unwrap();
            a.pmovmskb(eax, xmm0).unwrap();
            a.hlt().unwrap();
        });
        let m = run_to_hlt(&code, |c| {
            c.regs.xmm[0] = 0x7f | 0x80 << 8;
            c.regs.xmm[1] = 0x01 | 0xff << 8;
            c.regs.xmm[2] = 0xfff0;
            c.regs.xmm[3] = 0x0020;
        });
        assert_eq!(m.cpu.regs.xmm[0], 0x7f | 0x80 << 8);
        assert_eq!(m.cpu.regs.xmm[2], 0xffff);
        assert_eq!(m.cpu.regs.gpr[RAX], 0b10);
    }

    #[test]
    fn packed_op_with_misaligned_memory_is_gp() {
        let code = assemble(|a| {
            a.paddd(xmm0, xmmword_ptr(DATA + 4)).unwrap();
        });
        let mut m = machine_with(&code);
        assert_eq!(m.run(5), Exit::Exception(Exception::GeneralProtection));
        assert_eq!(m.cpu.regs.rip, CODE);
    }

    #[test]
    fn pshufb_zeroes_on_high_bit_and_palignr_concatenates() {
        let code = assemble(|a| {
            a.pshufb(xmm0, xmm1).unwrap();
            a.palignr(xmm2, xmm3, 4).unwrap();
            a.hlt().unwrap();
        });
        let m = run_to_hlt(&code, |c| {
            c.regs.xmm[0] = 0x0f0e_0d0c_0b0a_0908_0706_0504_0302_0100;
            c.regs.xmm[1] = 0x8000_0000_0000_0000_0000_0000_0000_0f03;
            c.regs.xmm[2] = 0x2222;
            c.regs.xmm[3] = 0x1111_0000_0000_0000_0000_0000_aaaa_bbbb;
        });
        assert_eq!(m.cpu.regs.xmm[0], 0x0f03);
        assert_eq!(m.cpu.regs.xmm[2], 0x0000_2222_1111_0000_0000_0000_0000_0000);
    }
}
