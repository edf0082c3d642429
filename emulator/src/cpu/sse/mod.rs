//! SSE, SSE2, SSE3 and SSSE3 in their legacy (non-VEX) encodings (SDM Vol. 1, chapters 10 to 12; Vol. 2 for each
//! instruction): the moves (moves.rs), packed integer arithmetic and shuffles (int.rs), scalar and packed floating
//! point with MXCSR (float.rs), the conversions (convert.rs) and the MMX forms of the integer instructions (mmx.rs). softfloat.rs computes every floating-point result
//! and exception flag in software, identically on every host; see its doc for why.
//!
//! Invariants:
//! - Precise exceptions: a handler reads every operand (checking alignment first) and computes every lane before it
//!   writes anything. A #GP (misaligned 16-byte operand), #PF or #XM leaves registers and memory as they were; the
//!   one architectural exception is #XM, which sets the MXCSR flags of the exceptions it detected (SDM Vol. 1,
//!   11.5.1: a handler reads them to learn what happened).
//! - Alignment: every legacy SSE instruction with a 16-byte memory operand requires 16-byte alignment and raises #GP
//!   otherwise, except the explicitly unaligned MOVUPS, MOVUPD, MOVDQU and LDDQU (SDM Vol. 1, 11.6.7). Scalar and
//!   64-bit operands have no alignment requirement.
//! - MMX forms (an `mm` operand) are mmx.rs's, which keeps the x87 aliasing rules; `sse_forms` leaves them out.
//! - Nothing here reads host floating-point state.

mod convert;
mod float;
mod int;
mod mmx;
mod moves;
pub(crate) mod softfloat;

#[cfg(all(test, target_arch = "x86_64", target_os = "linux"))]
mod mmx_native_tests;
#[cfg(all(test, target_arch = "x86_64", target_os = "linux"))]
mod native_tests;

use super::dispatch::Table;
use super::{Cpu, Exception, Stop};
use crate::cpu::Insn;
use iced_x86::{Code, EncodingKind, Mnemonic, OpCodeOperandKind, OpKind};
use softfloat::{DE, IE, MASK_SHIFT, ZE};

pub(crate) fn register(t: &mut Table) {
    moves::register(t);
    int::register(t);
    float::register(t);
    convert::register(t);
    mmx::register(t);
}

/// The legacy-encoded forms of `mnemonic` valid in 64-bit mode, without the MMX ones.
pub(super) fn sse_forms(mnemonic: Mnemonic) -> impl Iterator<Item = Code> {
    Code::values().filter(move |c| {
        let op = c.op_code();
        c.mnemonic() == mnemonic
            && op.encoding() == EncodingKind::Legacy
            && op.mode64()
            && !(0..op.op_count()).any(|k| {
                matches!(
                    op.op_kind(k),
                    OpCodeOperandKind::mm_reg
                        | OpCodeOperandKind::mm_rm
                        | OpCodeOperandKind::mm_or_mem
                )
            })
    })
}

/// The XMM register number of operand `n`.
#[inline(always)]
pub(super) fn xreg(i: &Insn, n: u32) -> usize {
    Cpu::xmm_index(i.op_register(n))
}

#[inline(always)]
fn gp() -> Stop {
    Stop::exception(Exception::GeneralProtection)
}

/// Reads operand `n`: a whole XMM register, or the memory operand's `memory_size` bytes zero-extended. A 16-byte
/// memory operand must be 16-byte aligned unless `UNALIGNED` (#GP, raised before any access).
#[inline(always)]
pub(super) fn read_xmm_or_mem<const UNALIGNED: bool>(
    cpu: &mut Cpu,
    i: &Insn,
    n: u32,
) -> Result<u128, Stop> {
    if i.op_kind(n) == OpKind::Register {
        return Ok(cpu.regs.xmm[xreg(i, n)]);
    }
    let a = cpu.ea(i);
    Ok(match i.memory_size().size() {
        16 => {
            if !UNALIGNED && a & 15 != 0 {
                return Err(gp());
            }
            cpu.mem.read_u128(a)?
        }
        8 => cpu.mem.read_u64(a)? as u128,
        4 => cpu.mem.read_u32(a)? as u128,
        2 => cpu.mem.read_u16(a)? as u128,
        _ => return Err(Stop::exception(Exception::InvalidOpcode)),
    })
}

/// `read_xmm_or_mem` with the alignment check: the rule for every legacy SSE operand but the unaligned moves.
#[inline(always)]
pub(super) fn src(cpu: &mut Cpu, i: &Insn, n: u32) -> Result<u128, Stop> {
    read_xmm_or_mem::<false>(cpu, i, n)
}

/// Writes 16 bytes to the memory operand, checking alignment unless `UNALIGNED`.
#[inline(always)]
pub(super) fn store128<const UNALIGNED: bool>(
    cpu: &mut Cpu,
    i: &Insn,
    v: u128,
) -> Result<(), Stop> {
    let a = cpu.ea(i);
    if !UNALIGNED && a & 15 != 0 {
        return Err(gp());
    }
    cpu.mem.write_u128(a, v)?;
    Ok(())
}

/// Accounts for the SIMD floating-point exceptions an instruction detected (`flags`, MXCSR bits 5..0). When all
/// are masked they accumulate into MXCSR and the instruction completes. When one is unmasked the instruction
/// raises #XM without writing its destination; MXCSR then receives the pre-computation flags (IE, DE, ZE) if one
/// of those is unmasked, since the computation does not happen, and else every flag (SDM Vol. 1, 11.5.2).
#[inline(always)]
pub(super) fn commit_flags(cpu: &mut Cpu, flags: u32) -> Result<(), Stop> {
    let masks = (cpu.regs.mxcsr >> MASK_SHIFT) & 0x3f;
    if flags & !masks == 0 {
        cpu.regs.mxcsr |= flags;
        return Ok(());
    }
    let pre = flags & (IE | DE | ZE);
    cpu.regs.mxcsr |= if pre & !masks != 0 { pre } else { flags };
    Err(Stop::exception(Exception::SimdFloatingPoint))
}

/// Lane `l` of `BITS` bits.
#[inline(always)]
pub(super) fn lane<const BITS: u32>(v: u128, l: u32) -> u64 {
    let x = (v >> (l * BITS)) as u64;
    if BITS == 64 {
        x
    } else {
        x & ((1u64 << BITS) - 1)
    }
}

/// `v` with lane `l` of `BITS` bits replaced by `x`.
#[inline(always)]
pub(super) fn with_lane<const BITS: u32>(v: u128, l: u32, x: u64) -> u128 {
    let mask: u128 = if BITS == 64 {
        u64::MAX as u128
    } else {
        (1u128 << BITS) - 1
    };
    (v & !(mask << (l * BITS))) | (((x as u128) & mask) << (l * BITS))
}
