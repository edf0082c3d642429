//! Shift and rotate instructions (SDM Vol. 1, 5.1.5 and 7.3.6): SHL/SAL, SHR, SAR, ROL, ROR, RCL, RCR, SHLD, SHRD.
//!
//! The count is masked to 5 bits (6 for 64-bit operands). A masked count of zero changes no flag, but the
//! destination is still written, so a 32-bit register destination is zero-extended as for any 32-bit write.
//! Undefined flags (OF for counts above one, AF, and everything for SHLD/SHRD counts beyond a 16-bit width)
//! take the values of the formulas below, which are pure functions of the operands (see flags.rs).

use super::dispatch::{by_size, forms, Table};
use super::flags::{mask, sign_bit, FlagOp, CF, OF, PF, SF, STATUS, ZF};
use super::{Cpu, Stop};
use crate::cpu::Insn;
use iced_x86::Mnemonic;

const SHL: u8 = 0;
const SHR: u8 = 1;
const SAR: u8 = 2;
const ROL: u8 = 3;
const ROR: u8 = 4;
const RCL: u8 = 5;
const RCR: u8 = 6;

#[inline(always)]
fn count_mask(size: u8) -> u64 {
    if size == 8 {
        0x3f
    } else {
        0x1f
    }
}

/// Sets CF and OF, keeping the other status flags lazy (flags.rs: the CF/OF override).
#[inline(always)]
fn set_cf_of(cpu: &mut Cpu, cf: bool, of: bool) {
    cpu.regs.flags.set_cf_of(cf, of);
}

fn shift<const S: u8, const OP: u8, const K0: u8, const K1: u8>(
    cpu: &mut Cpu,
    i: &Insn,
) -> Result<(), Stop> {
    let a = cpu.read_k::<K0>(i, 0, S)?;
    let count = cpu.read_k::<K1>(i, 1, 1)? & count_mask(S);
    let bits = S as u32 * 8;
    let m = mask(S);
    if count == 0 {
        cpu.write_k::<K0>(i, 0, S, a)?;
        return Ok(());
    }
    let sb = sign_bit(S);
    match OP {
        SHL => {
            let r = if count >= 64 { 0 } else { (a << count) & m };
            cpu.write_k::<K0>(i, 0, S, r)?;
            cpu.regs.flags.set(FlagOp::Shl, S, a, count, r);
        }
        SHR => {
            let r = if count >= 64 { 0 } else { a >> count };
            cpu.write_k::<K0>(i, 0, S, r)?;
            cpu.regs.flags.set(FlagOp::Shr, S, a, count, r);
        }
        SAR => {
            let r = (super::flags::sext(a, S) >> count.min(63)) as u64 & m;
            cpu.write_k::<K0>(i, 0, S, r)?;
            cpu.regs.flags.set(FlagOp::Sar, S, a, count, r);
        }
        ROL => {
            let c = (count as u32) % bits;
            let r = if c == 0 {
                a
            } else {
                ((a << c) | (a >> (bits - c))) & m
            };
            cpu.write_k::<K0>(i, 0, S, r)?;
            let cf = r & 1 != 0;
            set_cf_of(cpu, cf, (r & sb != 0) ^ cf);
        }
        ROR => {
            let c = (count as u32) % bits;
            let r = if c == 0 {
                a
            } else {
                ((a >> c) | (a << (bits - c))) & m
            };
            cpu.write_k::<K0>(i, 0, S, r)?;
            let msb = r & sb != 0;
            let msb1 = r & (sb >> 1) != 0;
            set_cf_of(cpu, msb, msb ^ msb1);
        }
        RCL => {
            // Rotate through carry: a (bits + 1)-bit rotation of CF:value.
            let c = if S <= 2 {
                count % (bits as u64 + 1)
            } else {
                count
            };
            let mut cf = cpu.regs.flags.cf();
            let mut r = a;
            for _ in 0..c {
                let out = r & sb != 0;
                r = ((r << 1) | cf as u64) & m;
                cf = out;
            }
            cpu.write_k::<K0>(i, 0, S, r)?;
            set_cf_of(cpu, cf, (r & sb != 0) ^ cf);
        }
        _ => {
            // RCR: OF is computed before the rotation (SDM RCR operation).
            let c = if S <= 2 {
                count % (bits as u64 + 1)
            } else {
                count
            };
            let mut cf = cpu.regs.flags.cf();
            let of = (a & sb != 0) ^ cf;
            let mut r = a;
            for _ in 0..c {
                let out = r & 1 != 0;
                r = (r >> 1) | if cf { sb } else { 0 };
                cf = out;
            }
            cpu.write_k::<K0>(i, 0, S, r)?;
            set_cf_of(cpu, cf, of);
        }
    }
    Ok(())
}

/// SHLD (LEFT) and SHRD: shift the destination, filling from the source register.
fn double_shift<const S: u8, const LEFT: bool>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let a = cpu.read_op(i, 0, S)?;
    let b = cpu.read_op(i, 1, S)?;
    let count = (cpu.read_op(i, 2, 1)? & count_mask(S)) as u32;
    if count == 0 {
        cpu.write_op(i, 0, S, a)?;
        return Ok(());
    }
    let bits = S as u32 * 8;
    let m = mask(S);
    let sb = sign_bit(S);
    // For 16-bit operands a count above 16 is undefined; shifting the concatenated pair further is a pure
    // function of the operands, which is all the determinism contract asks.
    let (r, cf) = if LEFT {
        let wide = ((a as u128) << bits) | b as u128;
        let r = ((wide << count) >> bits) as u64 & m;
        (r, (wide >> (2 * bits - count)) & 1 != 0)
    } else {
        let wide = ((b as u128) << bits) | a as u128;
        let r = (wide >> count) as u64 & m;
        (r, (wide >> (count - 1)) & 1 != 0)
    };
    cpu.write_op(i, 0, S, r)?;
    let of = (r & sb != 0) != (a & sb != 0);
    let mut status = 0;
    if cf {
        status |= CF;
    }
    if (r as u8).count_ones() % 2 == 0 {
        status |= PF;
    }
    if r == 0 {
        status |= ZF;
    }
    if r & sb != 0 {
        status |= SF;
    }
    if of {
        status |= OF;
    }
    cpu.regs.flags.set_status(status & STATUS);
    Ok(())
}

/// The shift handler for this instruction's operand kinds (register or memory; CL or an immediate count).
fn choose_shift<const S: u8, const OP: u8>(i: &Insn) -> super::Handler {
    use super::{op_shape, OPK_IMM, OPK_MEM, OPK_REG};
    match (op_shape(i, 0), op_shape(i, 1)) {
        (OPK_REG, OPK_REG) => shift::<S, OP, OPK_REG, OPK_REG>,
        (OPK_REG, _) => shift::<S, OP, OPK_REG, OPK_IMM>,
        (_, OPK_REG) => shift::<S, OP, OPK_MEM, OPK_REG>,
        _ => shift::<S, OP, OPK_MEM, OPK_IMM>,
    }
}

pub(crate) fn register(t: &mut Table) {
    macro_rules! shifts {
        ($($m:ident => $op:ident),*) => {$(
            for (code, size) in forms(Mnemonic::$m) {
                let chooser: super::dispatch::Chooser = match size {
                    1 => choose_shift::<1, $op>,
                    2 => choose_shift::<2, $op>,
                    4 => choose_shift::<4, $op>,
                    _ => choose_shift::<8, $op>,
                };
                t.set_chooser(code, chooser);
            }
        )*};
    }
    shifts!(Shl => SHL, Sal => SHL, Shr => SHR, Sar => SAR, Rol => ROL, Ror => ROR, Rcl => RCL, Rcr => RCR);
    for (code, size) in forms(Mnemonic::Shld) {
        t.set(code, by_size!(size, double_shift::<true>));
    }
    for (code, size) in forms(Mnemonic::Shrd) {
        t.set(code, by_size!(size, double_shift::<false>));
    }
}

#[cfg(test)]
mod tests {
    use crate::cpu::flags::{CF, OF};
    use crate::cpu::testutil::*;
    use crate::cpu::*;
    use iced_x86::code_asm::*;

    #[test]
    fn shifts_match_hand_checked_values() {
        let m = run(
            |a| a.shl(eax, 4u32).unwrap(),
            |c| c.regs.gpr[RAX] = 0xffff_ffff_f000_0001,
        );
        assert_eq!(m.cpu.regs.gpr[RAX], 0x10);
        assert_eq!(m.cpu.rflags() & CF, CF);
        let m = run(|a| a.sar(al, 1u32).unwrap(), |c| c.regs.gpr[RAX] = 0x81);
        assert_eq!(m.cpu.regs.gpr[RAX], 0xc0);
        assert_eq!(m.cpu.rflags() & (CF | OF), CF);
        let m = run(
            |a| a.shr(rax, cl).unwrap(),
            |c| {
                c.regs.gpr[RAX] = 0x8000_0000_0000_0000;
                c.regs.gpr[RCX] = 63 + 64; // masked to 63
            },
        );
        assert_eq!(m.cpu.regs.gpr[RAX], 1);
    }

    #[test]
    fn rotates_through_carry() {
        let m = run(
            |a| {
                a.stc().unwrap();
                a.rcl(al, 1u32).unwrap();
            },
            |c| c.regs.gpr[RAX] = 0x80,
        );
        assert_eq!(m.cpu.regs.gpr[RAX] & 0xff, 0x01);
        assert_eq!(m.cpu.rflags() & (CF | OF), CF | OF);
        let m = run(|a| a.rcr(ax, 17u32).unwrap(), |c| c.regs.gpr[RAX] = 0x1234);
        assert_eq!(
            m.cpu.regs.gpr[RAX] & 0xffff,
            0x1234,
            "a 17-bit rotation of CF:ax is the identity"
        );
        let m = run(
            |a| a.rol(rax, 8u32).unwrap(),
            |c| c.regs.gpr[RAX] = 0x0102_0304_0506_0708,
        );
        assert_eq!(m.cpu.regs.gpr[RAX], 0x0203_0405_0607_0801);
    }

    #[test]
    fn double_shifts() {
        let m = run(
            |a| a.shld(rax, rbx, 8u32).unwrap(),
            |c| {
                c.regs.gpr[RAX] = 0x1122_3344_5566_7788;
                c.regs.gpr[RBX] = 0x99aa_bbcc_ddee_ff00;
            },
        );
        assert_eq!(m.cpu.regs.gpr[RAX], 0x2233_4455_6677_8899);
        assert_eq!(
            m.cpu.rflags() & CF,
            CF,
            "the last bit out was bit 56 of rax, which is 1"
        );
        let m = run(
            |a| a.shrd(eax, ebx, 4u32).unwrap(),
            |c| {
                c.regs.gpr[RAX] = 0x1234_5678;
                c.regs.gpr[RBX] = 0xa;
            },
        );
        assert_eq!(m.cpu.regs.gpr[RAX], 0xa123_4567);
    }

    #[test]
    fn count_zero_changes_no_flag_but_zero_extends() {
        let m = run(
            |a| {
                a.stc().unwrap();
                a.shl(eax, cl).unwrap();
            },
            |c| {
                c.regs.gpr[RAX] = 0xffff_ffff_0000_0005;
                c.regs.gpr[RCX] = 32;
            },
        );
        assert_eq!(m.cpu.regs.gpr[RAX], 5);
        assert_eq!(m.cpu.rflags() & CF, CF);
    }
}
