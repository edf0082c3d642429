//! Data transfer instructions (SDM Vol. 1, 5.1.1): MOV, MOVZX, MOVSX, MOVSXD, LEA, XCHG, CMPXCHG, CMPXCHG8B,
//! CMPXCHG16B, XADD, BSWAP, CMOVcc, and the conversions CBW/CWDE/CDQE and CWD/CDQ/CQO.
//!
//! One thread runs per machine, so LOCK prefixes change nothing: every instruction is already atomic.

use super::dispatch::{by_cc, by_size, condition_forms, forms, gpr_operand_size, Table};
use super::flags::{mask, sext, FlagOp, ZF};
use super::{op_shape, Cpu, Exception, Stop, OPK_MEM, OPK_REG, RAX, RBX, RCX, RDX};
use crate::cpu::Insn;
use iced_x86::{Code, Mnemonic, OpCodeOperandKind};

fn mov<const S: u8, const K0: u8, const K1: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let v = cpu.read_k::<K1>(i, 1, S)?;
    cpu.write_k::<K0>(i, 0, S, v)?;
    Ok(())
}

fn choose_mov<const S: u8>(i: &Insn) -> super::Handler {
    use super::OPK_IMM;
    match (op_shape(i, 0), op_shape(i, 1)) {
        (OPK_REG, OPK_REG) => mov::<S, OPK_REG, OPK_REG>,
        (OPK_REG, OPK_MEM) => mov::<S, OPK_REG, OPK_MEM>,
        (OPK_REG, _) => mov::<S, OPK_REG, OPK_IMM>,
        (_, OPK_REG) => mov::<S, OPK_MEM, OPK_REG>,
        _ => mov::<S, OPK_MEM, OPK_IMM>,
    }
}

/// MOVZX/MOVSX/MOVSXD: destination width D, source width S, source operand kind K (`OPK_REG` or `OPK_MEM`).
fn movx<const D: u8, const S: u8, const SIGNED: bool, const K: u8>(
    cpu: &mut Cpu,
    i: &Insn,
) -> Result<(), Stop> {
    let v = cpu.read_k::<K>(i, 1, S)?;
    let v = if SIGNED { sext(v, S) as u64 } else { v };
    cpu.write_reg_k(i, 0, D, v & mask(D));
    Ok(())
}

/// The MOVZX/MOVSX/MOVSXD handler for this instruction's source operand kind.
fn choose_movx<const D: u8, const S: u8, const SIGNED: bool>(i: &Insn) -> super::Handler {
    if op_shape(i, 1) == OPK_REG {
        movx::<D, S, SIGNED, OPK_REG>
    } else {
        movx::<D, S, SIGNED, OPK_MEM>
    }
}

fn lea<const S: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    // LEA computes the offset only: a segment override does not add the FS/GS base.
    let a = cpu.ea_offset(i);
    cpu.write_reg_k(i, 0, S, a & mask(S));
    Ok(())
}

fn xchg<const S: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let a = cpu.read_op(i, 0, S)?;
    let b = cpu.read_op(i, 1, S)?;
    // Operand 0 may be memory: write it first so a fault changes nothing.
    cpu.write_op(i, 0, S, b)?;
    cpu.write_op(i, 1, S, a)?;
    Ok(())
}

fn cmpxchg<const S: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let dst = cpu.read_op(i, 0, S)?;
    let src = cpu.read_op(i, 1, S)?;
    let acc = cpu.regs.gpr[RAX] & mask(S);
    let equal = acc == dst;
    // SDM CMPXCHG: the destination is written in both cases (with its own value when unequal).
    cpu.write_op(i, 0, S, if equal { src } else { dst })?;
    if !equal {
        let r = match S {
            1 => iced_x86::Register::AL,
            2 => iced_x86::Register::AX,
            4 => iced_x86::Register::EAX,
            _ => iced_x86::Register::RAX,
        };
        cpu.write_reg(r, dst);
    }
    cpu.regs
        .flags
        .set(FlagOp::Sub, S, acc, dst, acc.wrapping_sub(dst));
    Ok(())
}

fn cmpxchg8b(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let a = cpu.ea(i);
    let cur = cpu.mem.read_u64(a)?;
    let expected = (cpu.regs.gpr[RDX] << 32) | (cpu.regs.gpr[RAX] & 0xffff_ffff);
    if cur == expected {
        cpu.mem.write_u64(
            a,
            (cpu.regs.gpr[RCX] << 32) | (cpu.regs.gpr[RBX] & 0xffff_ffff),
        )?;
        cpu.regs.flags.set_flag(ZF, true);
    } else {
        cpu.mem.write_u64(a, cur)?;
        cpu.regs.gpr[RAX] = cur & 0xffff_ffff;
        cpu.regs.gpr[RDX] = cur >> 32;
        cpu.regs.flags.set_flag(ZF, false);
    }
    Ok(())
}

fn cmpxchg16b(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let a = cpu.ea(i);
    if a & 15 != 0 {
        return Err(Exception::GeneralProtection.into());
    }
    let cur = cpu.mem.read_u128(a)?;
    let expected = ((cpu.regs.gpr[RDX] as u128) << 64) | cpu.regs.gpr[RAX] as u128;
    if cur == expected {
        cpu.mem.write_u128(
            a,
            ((cpu.regs.gpr[RCX] as u128) << 64) | cpu.regs.gpr[RBX] as u128,
        )?;
        cpu.regs.flags.set_flag(ZF, true);
    } else {
        cpu.mem.write_u128(a, cur)?;
        cpu.regs.gpr[RAX] = cur as u64;
        cpu.regs.gpr[RDX] = (cur >> 64) as u64;
        cpu.regs.flags.set_flag(ZF, false);
    }
    Ok(())
}

fn xadd<const S: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let dst = cpu.read_op(i, 0, S)?;
    let src = cpu.read_op(i, 1, S)?;
    let sum = dst.wrapping_add(src) & mask(S);
    // SDM XADD: SRC <- DEST, then DEST <- TEMP, so with one register as both operands the sum wins.
    // A memory destination is written first so that a fault leaves the source register untouched.
    if i.op0_kind() == iced_x86::OpKind::Register {
        cpu.write_op(i, 1, S, dst)?;
        cpu.write_op(i, 0, S, sum)?;
    } else {
        cpu.write_op(i, 0, S, sum)?;
        cpu.write_op(i, 1, S, dst)?;
    }
    cpu.regs.flags.set(FlagOp::Add, S, dst, src, sum);
    Ok(())
}

fn bswap<const S: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let r = i.op0_register();
    let v = cpu.read_reg(r);
    let v = if S == 4 {
        (v as u32).swap_bytes() as u64
    } else {
        v.swap_bytes()
    };
    cpu.write_reg(r, v);
    Ok(())
}

fn cmov<const S: u8, const CC: u8, const K: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    // The source is read whatever the condition (SDM CMOVcc: a memory source may fault either way).
    let v = cpu.read_k::<K>(i, 1, S)?;
    if cpu.regs.flags.cond(CC) {
        cpu.write_reg_k(i, 0, S, v);
    } else if S == 4 {
        // A 32-bit destination is zero-extended even when the move does not happen.
        let old = cpu.read_reg_k(i, 0, 4);
        cpu.write_reg_k(i, 0, 4, old);
    }
    Ok(())
}

/// The CMOVcc handler for this instruction's source operand kind.
fn choose_cmov<const S: u8, const CC: u8>(i: &Insn) -> super::Handler {
    if op_shape(i, 1) == OPK_REG {
        cmov::<S, CC, OPK_REG>
    } else {
        cmov::<S, CC, OPK_MEM>
    }
}

fn cbw(cpu: &mut Cpu, _: &Insn) -> Result<(), Stop> {
    let v = sext(cpu.regs.gpr[RAX], 1) as u64;
    cpu.write_reg(iced_x86::Register::AX, v);
    Ok(())
}
fn cwde(cpu: &mut Cpu, _: &Insn) -> Result<(), Stop> {
    cpu.regs.gpr[RAX] = sext(cpu.regs.gpr[RAX], 2) as u32 as u64;
    Ok(())
}
fn cdqe(cpu: &mut Cpu, _: &Insn) -> Result<(), Stop> {
    cpu.regs.gpr[RAX] = sext(cpu.regs.gpr[RAX], 4) as u64;
    Ok(())
}
/// CWD/CDQ/CQO: rdx (of width S) takes the sign of rax.
fn cwd<const S: u8>(cpu: &mut Cpu, _: &Insn) -> Result<(), Stop> {
    let sign = if sext(cpu.regs.gpr[RAX], S) < 0 {
        u64::MAX
    } else {
        0
    };
    let r = match S {
        2 => iced_x86::Register::DX,
        4 => iced_x86::Register::EDX,
        _ => iced_x86::Register::RDX,
    };
    cpu.write_reg(r, sign);
    Ok(())
}

fn has_special_register(code: Code) -> bool {
    let op = code.op_code();
    (0..op.op_count()).any(|n| {
        matches!(
            op.op_kind(n),
            OpCodeOperandKind::seg_reg
                | OpCodeOperandKind::cr_reg
                | OpCodeOperandKind::dr_reg
                | OpCodeOperandKind::tr_reg
                | OpCodeOperandKind::bnd_reg
        )
    })
}

pub(crate) fn register(t: &mut Table) {
    for (code, size) in forms(Mnemonic::Mov) {
        if !has_special_register(code) {
            let chooser: super::dispatch::Chooser = match size {
                1 => choose_mov::<1>,
                2 => choose_mov::<2>,
                4 => choose_mov::<4>,
                _ => choose_mov::<8>,
            };
            t.set_chooser(code, chooser);
        }
    }
    for (m, signed) in [
        (Mnemonic::Movzx, false),
        (Mnemonic::Movsx, true),
        (Mnemonic::Movsxd, true),
    ] {
        for (code, dst) in forms(m) {
            let Some(src) = gpr_operand_size(code.op_code().op_kind(1)) else {
                continue;
            };
            let h: super::dispatch::Chooser = match (dst, src, signed) {
                (2, 1, false) => choose_movx::<2, 1, false>,
                (4, 1, false) => choose_movx::<4, 1, false>,
                (8, 1, false) => choose_movx::<8, 1, false>,
                (2, 2, false) => choose_movx::<2, 2, false>,
                (4, 2, false) => choose_movx::<4, 2, false>,
                (8, 2, false) => choose_movx::<8, 2, false>,
                (2, 1, true) => choose_movx::<2, 1, true>,
                (4, 1, true) => choose_movx::<4, 1, true>,
                (8, 1, true) => choose_movx::<8, 1, true>,
                (2, 2, true) => choose_movx::<2, 2, true>,
                (4, 2, true) => choose_movx::<4, 2, true>,
                (8, 2, true) => choose_movx::<8, 2, true>,
                (2, 4, true) => choose_movx::<2, 4, true>,
                (4, 4, true) => choose_movx::<4, 4, true>,
                (8, 4, true) => choose_movx::<8, 4, true>,
                _ => continue,
            };
            t.set_chooser(code, h);
        }
    }
    for (code, size) in forms(Mnemonic::Lea) {
        t.set(code, by_size!(size, lea));
    }
    for (code, size) in forms(Mnemonic::Xchg) {
        t.set(code, by_size!(size, xchg));
    }
    for (code, size) in forms(Mnemonic::Cmpxchg) {
        t.set(code, by_size!(size, cmpxchg));
    }
    t.set(Code::Cmpxchg8b_m64, cmpxchg8b);
    t.set(Code::Cmpxchg16b_m128, cmpxchg16b);
    for (code, size) in forms(Mnemonic::Xadd) {
        t.set(code, by_size!(size, xadd));
    }
    t.set(Code::Bswap_r32, bswap::<4>);
    t.set(Code::Bswap_r64, bswap::<8>);
    for (code, cc) in
        condition_forms(|c| (Mnemonic::Cmova..=Mnemonic::Cmovs).contains(&c.mnemonic()))
    {
        let Some(size) = gpr_operand_size(code.op_code().op_kind(0)) else {
            continue;
        };
        let chooser: super::dispatch::Chooser = match size {
            2 => by_cc!(cc, choose_cmov, 2),
            4 => by_cc!(cc, choose_cmov, 4),
            _ => by_cc!(cc, choose_cmov, 8),
        };
        t.set_chooser(code, chooser);
    }
    t.set(Code::Cbw, cbw);
    t.set(Code::Cwde, cwde);
    t.set(Code::Cdqe, cdqe);
    t.set(Code::Cwd, cwd::<2>);
    t.set(Code::Cdq, cwd::<4>);
    t.set(Code::Cqo, cwd::<8>);
}

#[cfg(test)]
mod tests {
    use crate::cpu::flags::ZF;
    use crate::cpu::testutil::*;
    use crate::cpu::*;
    use iced_x86::code_asm::*;

    #[test]
    fn movabs_through_a_64_bit_offset() {
        let code = assemble(|a| {
            a.mov(rax, 0x1122_3344_5566_7788u64).unwrap();
            // mov [moffs64], rax (REX.W A3) and mov al, [moffs64] (A0), written as bytes.
            let mut store = vec![0x48, 0xa3];
            store.extend_from_slice(&(DATA + 8).to_le_bytes());
            a.db(&store).unwrap();
            a.mov(ebx, dword_ptr(DATA + 12)).unwrap();
            let mut load = vec![0xa0];
            load.extend_from_slice(&(DATA + 9).to_le_bytes());
            a.db(&load).unwrap();
            a.hlt().unwrap();
        });
        let m = run_to_hlt(&code, |_| {});
        assert_eq!(m.cpu.regs.gpr[RBX], 0x1122_3344);
        assert_eq!(
            m.cpu.regs.gpr[RAX] & 0xff,
            0x77,
            "byte 1 of the stored qword"
        );
    }

    #[test]
    fn xadd_with_one_register_as_both_operands_keeps_the_sum() {
        let code = assemble(|a| {
            a.xadd(rbx, rbx).unwrap();
            a.hlt().unwrap();
        });
        let m = run_to_hlt(&code, |c| c.regs.gpr[RBX] = 21);
        assert_eq!(m.cpu.regs.gpr[RBX], 42);
    }

    #[test]
    fn cmov_32_bit_zero_extends_even_when_false() {
        let code = assemble(|a| {
            a.cmp(eax, eax).unwrap();
            a.cmovne(ebx, ecx).unwrap();
            a.hlt().unwrap();
        });
        let m = run_to_hlt(&code, |c| {
            c.regs.gpr[RBX] = 0xdead_beef_0000_0001;
            c.regs.gpr[RCX] = 7;
        });
        assert_eq!(m.cpu.regs.gpr[RBX], 1);
    }

    #[test]
    fn cmpxchg16b_swaps_and_checks_alignment() {
        let code = assemble(|a| {
            a.cmpxchg16b(xmmword_ptr(DATA)).unwrap();
            a.hlt().unwrap();
        });
        let m = run_to_hlt(&code, |c| {
            c.regs.gpr[RBX] = 0x1111;
            c.regs.gpr[RCX] = 0x2222;
        });
        assert_eq!(
            m.cpu.mem.peek_u128(DATA).unwrap(),
            (0x2222u128 << 64) | 0x1111
        );
        assert_ne!(m.cpu.rflags() & ZF, 0);

        let code = assemble(|a| {
            a.cmpxchg16b(xmmword_ptr(DATA + 8)).unwrap();
        });
        let mut m = machine_with(&code);
        assert_eq!(m.run(5), Exit::Exception(Exception::GeneralProtection));
    }

    #[test]
    fn movsx_movzx_lea_with_fs_override() {
        let code = assemble(|a| {
            a.mov(byte_ptr(DATA), 0x80u32).unwrap();
            a.movsx(rax, byte_ptr(DATA)).unwrap();
            a.movzx(ebx, byte_ptr(DATA)).unwrap();
            a.movsxd(rcx, edx).unwrap();
            a.lea(rsi, qword_ptr(rax + rbx * 4 + 0x10)).unwrap();
            a.hlt().unwrap();
        });
        let m = run_to_hlt(&code, |c| c.regs.gpr[RDX] = 0xffff_fffe);
        assert_eq!(m.cpu.regs.gpr[RAX], (-128i64) as u64);
        assert_eq!(m.cpu.regs.gpr[RBX], 0x80);
        assert_eq!(m.cpu.regs.gpr[RCX], (-2i64) as u64);
        assert_eq!(m.cpu.regs.gpr[RSI], (-128i64 + 0x200 + 0x10) as u64);
    }
}
