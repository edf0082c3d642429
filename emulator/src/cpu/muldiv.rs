//! Multiply and divide (SDM Vol. 1, 5.1.2): MUL, IMUL (one, two and three operands), DIV, IDIV.
//!
//! CF and OF after a multiply say whether the high half is significant. SF, ZF, AF and PF are undefined after
//! MUL and IMUL: here SF, ZF and PF follow the low half of the product and AF is 0. All six flags are undefined
//! after DIV and IDIV: here they are left unchanged. A zero divisor or a quotient that does not fit raises #DE
//! before anything is written.

use super::dispatch::{forms, gpr_operand_size, Table};
use super::flags::{mask, sext, sign_bit, CF, OF, PF, SF, ZF};
use super::{Cpu, Exception, Handler, Stop, RAX, RDX};
use crate::cpu::Insn;
use iced_x86::{Mnemonic, Register};

fn set_mul_flags(cpu: &mut Cpu, size: u8, low: u64, overflow: bool) {
    let low = low & mask(size);
    let mut s = 0;
    if overflow {
        s |= CF | OF;
    }
    if low == 0 {
        s |= ZF;
    }
    if low & sign_bit(size) != 0 {
        s |= SF;
    }
    if (low as u8).count_ones() % 2 == 0 {
        s |= PF;
    }
    cpu.regs.flags.set_status(s);
}

/// Writes a double-width result to AX (8-bit), DX:AX, EDX:EAX or RDX:RAX.
fn write_pair(cpu: &mut Cpu, size: u8, low: u64, high: u64) {
    match size {
        1 => cpu.write_reg(Register::AX, (low & 0xff) | ((high & 0xff) << 8)),
        2 => {
            cpu.write_reg(Register::AX, low);
            cpu.write_reg(Register::DX, high);
        }
        4 => {
            cpu.write_reg(Register::EAX, low);
            cpu.write_reg(Register::EDX, high);
        }
        _ => {
            cpu.regs.gpr[RAX] = low;
            cpu.regs.gpr[RDX] = high;
        }
    }
}

/// The dividend of DIV/IDIV: AX, DX:AX, EDX:EAX or RDX:RAX, as an unsigned 128-bit value of width 2*size.
fn read_pair(cpu: &Cpu, size: u8) -> u128 {
    match size {
        1 => (cpu.regs.gpr[RAX] & 0xffff) as u128,
        _ => {
            let m = mask(size) as u128;
            (((cpu.regs.gpr[RDX] as u128) & m) << (size as u32 * 8))
                | ((cpu.regs.gpr[RAX] as u128) & m)
        }
    }
}

fn mul<const S: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let src = cpu.read_op(i, 0, S)? as u128;
    let acc = (cpu.regs.gpr[RAX] & mask(S)) as u128;
    let p = acc * src;
    let bits = S as u32 * 8;
    let (low, high) = ((p as u64) & mask(S), (p >> bits) as u64 & mask(S));
    write_pair(cpu, S, low, high);
    set_mul_flags(cpu, S, low, high != 0);
    Ok(())
}

fn imul1<const S: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let src = sext(cpu.read_op(i, 0, S)?, S) as i128;
    let acc = sext(cpu.regs.gpr[RAX], S) as i128;
    let p = acc * src;
    let bits = S as u32 * 8;
    let low = (p as u64) & mask(S);
    let high = ((p >> bits) as u64) & mask(S);
    write_pair(cpu, S, low, high);
    set_mul_flags(cpu, S, low, sext(low, S) as i128 != p);
    Ok(())
}

/// IMUL r, r/m (two operands) and IMUL r, r/m, imm (three): the product truncated to the destination width.
fn imul_n<const S: u8, const THREE: bool>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let (a, b) = if THREE {
        (cpu.read_op(i, 1, S)?, cpu.read_op(i, 2, S)?)
    } else {
        (cpu.read_op(i, 0, S)?, cpu.read_op(i, 1, S)?)
    };
    let p = sext(a, S) as i128 * sext(b, S) as i128;
    let low = (p as u64) & mask(S);
    cpu.write_reg(i.op0_register(), low);
    set_mul_flags(cpu, S, low, sext(low, S) as i128 != p);
    Ok(())
}

fn div<const S: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let d = cpu.read_op(i, 0, S)? as u128;
    if d == 0 {
        return Err(Exception::DivideError.into());
    }
    let n = read_pair(cpu, S);
    let q = n / d;
    let r = n % d;
    if q > mask(S) as u128 {
        return Err(Exception::DivideError.into());
    }
    write_div(cpu, S, q as u64, r as u64);
    Ok(())
}

fn idiv<const S: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let d = sext(cpu.read_op(i, 0, S)?, S) as i128;
    if d == 0 {
        return Err(Exception::DivideError.into());
    }
    let bits = S as u32 * 8;
    let raw = read_pair(cpu, S);
    // Sign-extend the 2*bits-wide dividend.
    let n = ((raw << (128 - 2 * bits)) as i128) >> (128 - 2 * bits);
    // Only -2^127 / -1 (a 64-bit IDIV of the most negative dividend) overflows i128; it is #DE either way.
    let Some(q) = n.checked_div(d) else {
        return Err(Exception::DivideError.into());
    };
    let r = n - q * d;
    let max = (1i128 << (bits - 1)) - 1;
    let min = -(1i128 << (bits - 1));
    if q > max || q < min {
        return Err(Exception::DivideError.into());
    }
    write_div(cpu, S, q as u64 & mask(S), r as u64 & mask(S));
    Ok(())
}

/// Quotient to AL/AX/EAX/RAX, remainder to AH/DX/EDX/RDX.
fn write_div(cpu: &mut Cpu, size: u8, q: u64, r: u64) {
    match size {
        1 => cpu.write_reg(Register::AX, (q & 0xff) | ((r & 0xff) << 8)),
        _ => write_pair(cpu, size, q, r),
    }
}

pub(crate) fn register(t: &mut Table) {
    macro_rules! sized {
        ($size:expr, $f:ident $(, $g:tt)?) => {
            match $size {
                1 => $f::<1 $(, $g)?> as Handler,
                2 => $f::<2 $(, $g)?> as Handler,
                4 => $f::<4 $(, $g)?> as Handler,
                _ => $f::<8 $(, $g)?> as Handler,
            }
        };
    }
    for (code, size) in forms(Mnemonic::Mul) {
        t.set(code, sized!(size, mul));
    }
    for (code, size) in forms(Mnemonic::Div) {
        t.set(code, sized!(size, div));
    }
    for (code, size) in forms(Mnemonic::Idiv) {
        t.set(code, sized!(size, idiv));
    }
    for (code, size) in forms(Mnemonic::Imul) {
        let op = code.op_code();
        let h = match op.op_count() {
            1 => sized!(size, imul1),
            2 => sized!(size, imul_n, false),
            _ => {
                debug_assert!(gpr_operand_size(op.op_kind(1)).is_some());
                sized!(size, imul_n, true)
            }
        };
        t.set(code, h);
    }
}

#[cfg(test)]
mod tests {
    use crate::cpu::flags::{CF, OF};
    use crate::cpu::testutil::*;
    use crate::cpu::*;
    use iced_x86::code_asm::*;

    #[test]
    fn mul_64_gives_128_bit_product() {
        let m = run(
            |a| a.mul(rbx).unwrap(),
            |c| {
                c.regs.gpr[RAX] = u64::MAX;
                c.regs.gpr[RBX] = u64::MAX;
            },
        );
        assert_eq!(
            (m.cpu.regs.gpr[RDX], m.cpu.regs.gpr[RAX]),
            (u64::MAX - 1, 1)
        );
        assert_eq!(m.cpu.rflags() & (CF | OF), CF | OF);
    }

    #[test]
    fn imul_forms() {
        let m = run(
            |a| {
                a.imul_3(ecx, ebx, -3i32).unwrap();
                a.imul_2(rdx, rbx).unwrap();
            },
            |c| {
                c.regs.gpr[RBX] = 7;
                c.regs.gpr[RDX] = (-2i64) as u64;
            },
        );
        assert_eq!(m.cpu.regs.gpr[RCX], (-21i32) as u32 as u64);
        assert_eq!(m.cpu.regs.gpr[RDX], (-14i64) as u64);
        assert_eq!(m.cpu.rflags() & (CF | OF), 0);
    }

    #[test]
    fn div_and_idiv_results_and_faults() {
        let m = run(
            |a| a.div(ecx).unwrap(),
            |c| {
                c.regs.gpr[RDX] = 1;
                c.regs.gpr[RAX] = 5;
                c.regs.gpr[RCX] = 3;
            },
        );
        // (2^32 + 5) / 3 = 1431655767 rem 0
        assert_eq!(
            (m.cpu.regs.gpr[RAX], m.cpu.regs.gpr[RDX]),
            (1_431_655_767, 0)
        );
        let m = run(
            |a| a.idiv(bl).unwrap(),
            |c| {
                c.regs.gpr[RAX] = (-7i16) as u16 as u64;
                c.regs.gpr[RBX] = 2;
            },
        );
        assert_eq!(m.cpu.regs.gpr[RAX] & 0xffff, 0xfffd, "al = -3, ah = -1");

        for (rax_in, rdx_in, divisor) in [
            (1u64, 0u64, 0u64),
            (0, 1, 1),
            (0x8000_0000_0000_0000, u64::MAX, u64::MAX),
        ] {
            let code = assemble(|a| {
                a.idiv(rcx).unwrap();
            });
            let mut m = machine_with(&code);
            m.cpu.regs.gpr[RAX] = rax_in;
            m.cpu.regs.gpr[RDX] = rdx_in;
            m.cpu.regs.gpr[RCX] = divisor;
            // Division by zero; 2^64 / 1 and -2^127 / -1 whose quotients do not fit in 64 signed bits.
            let expected = Exit::Exception(Exception::DivideError);
            assert_eq!(m.run(1), expected);
            assert_eq!(
                (m.cpu.regs.gpr[RAX], m.cpu.regs.gpr[RDX], m.cpu.regs.rip),
                (rax_in, rdx_in, CODE),
                "nothing written"
            );
        }
    }
}
