//! Binary arithmetic and logical instructions (SDM Vol. 1, 5.1.2 and 5.1.4): ADD, ADC, SUB, SBB, CMP, AND, OR,
//! XOR, TEST, NOT, NEG, INC, DEC.
//!
//! Handlers are monomorphised per operand width and operation. A read-modify-write writes its destination before
//! it sets the flags, so that a faulting write leaves the flags as they were (precise exceptions).

use super::dispatch::{forms, Table};
use super::flags::{mask, FlagOp};
use super::{op_shape, Cpu, Handler, Stop, OPK_IMM, OPK_MEM, OPK_REG};
use crate::cpu::Insn;
use iced_x86::Mnemonic;

const ADD: u8 = 0;
const OR: u8 = 1;
const ADC: u8 = 2;
const SBB: u8 = 3;
const AND: u8 = 4;
const SUB: u8 = 5;
const XOR: u8 = 6;
const CMP: u8 = 7;
const TEST: u8 = 8;

fn binop<const S: u8, const OP: u8, const K0: u8, const K1: u8>(
    cpu: &mut Cpu,
    i: &Insn,
) -> Result<(), Stop> {
    let a = cpu.read_k::<K0>(i, 0, S)?;
    let b = cpu.read_k::<K1>(i, 1, S)?;
    let carry = if OP == ADC || OP == SBB {
        cpu.regs.flags.cf() as u64
    } else {
        0
    };
    let r = match OP {
        ADD => a.wrapping_add(b),
        ADC => a.wrapping_add(b).wrapping_add(carry),
        SUB | CMP => a.wrapping_sub(b),
        SBB => a.wrapping_sub(b).wrapping_sub(carry),
        AND | TEST => a & b,
        OR => a | b,
        _ => a ^ b,
    } & mask(S);
    if OP != CMP && OP != TEST {
        cpu.write_k::<K0>(i, 0, S, r)?;
    }
    let op = match OP {
        ADD => FlagOp::Add,
        ADC => FlagOp::Adc,
        SUB | CMP => FlagOp::Sub,
        SBB => FlagOp::Sbb,
        _ => FlagOp::Logic,
    };
    if OP == ADC || OP == SBB {
        cpu.regs.flags.set_aux(op, S, a, b, r, carry);
    } else {
        // ADD, SUB and the logical operations never read `aux`.
        cpu.regs.flags.set(op, S, a, b, r);
    }
    Ok(())
}

fn not<const S: u8, const K: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let a = cpu.read_k::<K>(i, 0, S)?;
    cpu.write_k::<K>(i, 0, S, !a & mask(S))?;
    Ok(())
}

fn neg<const S: u8, const K: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let a = cpu.read_k::<K>(i, 0, S)?;
    let r = 0u64.wrapping_sub(a) & mask(S);
    cpu.write_k::<K>(i, 0, S, r)?;
    cpu.regs.flags.set(FlagOp::Neg, S, 0, a, r);
    Ok(())
}

fn inc<const S: u8, const K: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let a = cpu.read_k::<K>(i, 0, S)?;
    let r = a.wrapping_add(1) & mask(S);
    cpu.write_k::<K>(i, 0, S, r)?;
    let cf = cpu.regs.flags.cf() as u64;
    cpu.regs.flags.set_aux(FlagOp::Inc, S, a, 1, r, cf);
    Ok(())
}

fn dec<const S: u8, const K: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let a = cpu.read_k::<K>(i, 0, S)?;
    let r = a.wrapping_sub(1) & mask(S);
    cpu.write_k::<K>(i, 0, S, r)?;
    let cf = cpu.regs.flags.cf() as u64;
    cpu.regs.flags.set_aux(FlagOp::Dec, S, a, 1, r, cf);
    Ok(())
}

/// Picks the register or memory variant of a one-operand handler.
macro_rules! choose_unary {
    ($name:ident, $f:ident) => {
        fn $name<const S: u8>(i: &Insn) -> Handler {
            if op_shape(i, 0) == OPK_REG {
                $f::<S, OPK_REG>
            } else {
                $f::<S, OPK_MEM>
            }
        }
    };
}
choose_unary!(choose_not, not);
choose_unary!(choose_neg, neg);
choose_unary!(choose_inc, inc);
choose_unary!(choose_dec, dec);

/// The binop handler for this instruction's operand kinds.
fn choose_binop<const S: u8, const OP: u8>(i: &Insn) -> Handler {
    match (op_shape(i, 0), op_shape(i, 1)) {
        (OPK_REG, OPK_REG) => binop::<S, OP, OPK_REG, OPK_REG>,
        (OPK_REG, OPK_MEM) => binop::<S, OP, OPK_REG, OPK_MEM>,
        (OPK_REG, _) => binop::<S, OP, OPK_REG, OPK_IMM>,
        (_, OPK_REG) => binop::<S, OP, OPK_MEM, OPK_REG>,
        _ => binop::<S, OP, OPK_MEM, OPK_IMM>,
    }
}

pub(crate) fn register(t: &mut Table) {
    macro_rules! binops {
        ($($m:ident => $op:ident),*) => {$(
            for (code, size) in forms(Mnemonic::$m) {
                let chooser: super::dispatch::Chooser = match size {
                    1 => choose_binop::<1, $op>,
                    2 => choose_binop::<2, $op>,
                    4 => choose_binop::<4, $op>,
                    _ => choose_binop::<8, $op>,
                };
                t.set_chooser(code, chooser);
            }
        )*};
    }
    binops!(Add => ADD, Or => OR, Adc => ADC, Sbb => SBB, And => AND, Sub => SUB, Xor => XOR, Cmp => CMP, Test => TEST);
    for (mnemonic, chooser) in [
        (
            Mnemonic::Not,
            [
                choose_not::<1> as super::dispatch::Chooser,
                choose_not::<2>,
                choose_not::<4>,
                choose_not::<8>,
            ],
        ),
        (
            Mnemonic::Neg,
            [
                choose_neg::<1>,
                choose_neg::<2>,
                choose_neg::<4>,
                choose_neg::<8>,
            ],
        ),
        (
            Mnemonic::Inc,
            [
                choose_inc::<1>,
                choose_inc::<2>,
                choose_inc::<4>,
                choose_inc::<8>,
            ],
        ),
        (
            Mnemonic::Dec,
            [
                choose_dec::<1>,
                choose_dec::<2>,
                choose_dec::<4>,
                choose_dec::<8>,
            ],
        ),
    ] {
        for (code, size) in forms(mnemonic) {
            let n = match size {
                1 => 0,
                2 => 1,
                4 => 2,
                _ => 3,
            };
            t.set_chooser(code, chooser[n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::cpu::flags::{CF, OF, SF, ZF};
    use crate::cpu::testutil::*;
    use crate::cpu::*;
    use iced_x86::code_asm::*;

    #[test]
    fn adc_chain_adds_128_bit_numbers() {
        let code = assemble(|a| {
            a.add(rax, rcx).unwrap();
            a.adc(rdx, rbx).unwrap();
            a.hlt().unwrap();
        });
        let m = run_to_hlt(&code, |c| {
            c.regs.gpr[RAX] = u64::MAX;
            c.regs.gpr[RDX] = 1;
            c.regs.gpr[RCX] = 1;
            c.regs.gpr[RBX] = 2;
        });
        assert_eq!((m.cpu.regs.gpr[RDX], m.cpu.regs.gpr[RAX]), (4, 0));
        assert_eq!(m.cpu.rflags() & (CF | ZF | SF | OF), 0);
    }

    #[test]
    fn memory_destination_and_flags() {
        let code = assemble(|a| {
            a.mov(qword_ptr(DATA), 5i32).unwrap();
            a.sub(qword_ptr(DATA), 7i32).unwrap();
            a.mov(rax, qword_ptr(DATA)).unwrap();
            a.hlt().unwrap();
        });
        let m = run_to_hlt(&code, |_| {});
        assert_eq!(m.cpu.regs.gpr[RAX], (-2i64) as u64);
        assert_eq!(m.cpu.rflags() & (CF | SF | ZF | OF), CF | SF);
    }

    #[test]
    fn inc_preserves_carry_and_faulting_write_preserves_flags() {
        let code = assemble(|a| {
            a.stc().unwrap();
            a.inc(eax).unwrap();
            a.hlt().unwrap();
        });
        let m = run_to_hlt(&code, |c| c.regs.gpr[RAX] = 0xffff_ffff);
        assert_eq!(m.cpu.regs.gpr[RAX], 0);
        assert_eq!(m.cpu.rflags() & (CF | ZF), CF | ZF);

        // add to a read-only page: the exception leaves flags and memory untouched.
        let code = assemble(|a| {
            a.stc().unwrap();
            a.add(dword_ptr(CODE), 1i32).unwrap();
        });
        let mut m = machine_with(&code);
        let exit = m.run(10);
        assert!(matches!(
            exit,
            Exit::Exception(Exception::PageFault { present: true, .. })
        ));
        assert_eq!(m.cpu.rflags() & CF, CF);
        assert_eq!(m.cpu.regs.rip, CODE + 1);
    }
}
