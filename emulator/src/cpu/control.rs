//! Control transfer instructions (SDM Vol. 1, 5.1.7): JMP, Jcc, CALL, RET, LOOP/LOOPE/LOOPNE, JRCXZ/JECXZ.
//!
//! The run loop has already set rip to the next instruction; a taken branch overwrites it. Only the 64-bit
//! operand-size forms exist in 64-bit mode (a 66h prefix on a near branch is ignored, as on Intel processors).

use super::dispatch::{by_cc, condition_forms, Table};
use super::{Cpu, Stop, RCX, RSP};
use crate::cpu::Insn;
use iced_x86::{Code, OpCodeOperandKind};

fn jmp_rel(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    cpu.regs.rip = i.near_branch64();
    Ok(())
}

fn jmp_rm64(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    cpu.regs.rip = cpu.read_op(i, 0, 8)?;
    Ok(())
}

fn jcc<const CC: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    if cpu.regs.flags.cond(CC) {
        cpu.regs.rip = i.near_branch64();
    }
    Ok(())
}

fn call_rel(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    cpu.push64(i.next_ip())?;
    cpu.regs.rip = i.near_branch64();
    Ok(())
}

fn call_rm64(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let target = cpu.read_op(i, 0, 8)?;
    cpu.push64(i.next_ip())?;
    cpu.regs.rip = target;
    Ok(())
}

fn ret(cpu: &mut Cpu, _: &Insn) -> Result<(), Stop> {
    cpu.regs.rip = cpu.pop64()?;
    Ok(())
}

fn ret_imm16(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    cpu.regs.rip = cpu.pop64()?;
    cpu.regs.gpr[RSP] = cpu.regs.gpr[RSP].wrapping_add(i.immediate16() as u64);
    Ok(())
}

/// LOOP, LOOPE, LOOPNE with rcx (W = 8) or ecx (W = 4, under an address-size prefix) as the counter.
/// KIND: 0 = LOOP, 1 = LOOPE (also needs ZF = 1), 2 = LOOPNE (also needs ZF = 0). Flags are not changed.
fn loop_<const W: u8, const KIND: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let count = if W == 4 {
        let c = (cpu.regs.gpr[RCX] as u32).wrapping_sub(1);
        cpu.regs.gpr[RCX] = c as u64;
        c as u64
    } else {
        cpu.regs.gpr[RCX] = cpu.regs.gpr[RCX].wrapping_sub(1);
        cpu.regs.gpr[RCX]
    };
    let taken = count != 0
        && match KIND {
            1 => cpu.regs.flags.zf(),
            2 => !cpu.regs.flags.zf(),
            _ => true,
        };
    if taken {
        cpu.regs.rip = i.near_branch64();
    }
    Ok(())
}

fn jrcxz<const W: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let c = if W == 4 {
        cpu.regs.gpr[RCX] as u32 as u64
    } else {
        cpu.regs.gpr[RCX]
    };
    if c == 0 {
        cpu.regs.rip = i.near_branch64();
    }
    Ok(())
}

pub(crate) fn register(t: &mut Table) {
    t.set(Code::Jmp_rel8_64, jmp_rel);
    t.set(Code::Jmp_rel32_64, jmp_rel);
    t.set(Code::Jmp_rm64, jmp_rm64);
    t.set(Code::Call_rel32_64, call_rel);
    t.set(Code::Call_rm64, call_rm64);
    t.set(Code::Retnq, ret);
    t.set(Code::Retnq_imm16, ret_imm16);
    t.set(Code::Loop_rel8_64_RCX, loop_::<8, 0>);
    t.set(Code::Loop_rel8_64_ECX, loop_::<4, 0>);
    t.set(Code::Loope_rel8_64_RCX, loop_::<8, 1>);
    t.set(Code::Loope_rel8_64_ECX, loop_::<4, 1>);
    t.set(Code::Loopne_rel8_64_RCX, loop_::<8, 2>);
    t.set(Code::Loopne_rel8_64_ECX, loop_::<4, 2>);
    t.set(Code::Jrcxz_rel8_64, jrcxz::<8>);
    t.set(Code::Jecxz_rel8_64, jrcxz::<4>);
    let branches = condition_forms(|c| {
        let op = c.op_code();
        op.op_count() == 1
            && matches!(
                op.op_kind(0),
                OpCodeOperandKind::br64_1 | OpCodeOperandKind::br64_4
            )
            && !c.is_loop()
            && !c.is_loopcc()
            && !c.is_jcx_short()
    });
    for (code, cc) in branches {
        let h: super::Handler = by_cc!(cc, jcc);
        t.set(code, h);
    }
}

#[cfg(test)]
mod tests {
    use crate::cpu::testutil::*;
    use crate::cpu::*;
    use iced_x86::code_asm::*;

    #[test]
    fn counted_loop_with_call_and_ret() {
        let code = assemble(|a| {
            let mut top = a.create_label();
            let mut func = a.create_label();
            let mut done = a.create_label();
            a.mov(ecx, 10u32).unwrap();
            a.xor(eax, eax).unwrap();
            a.set_label(&mut top).unwrap();
            a.call(func).unwrap();
            a.dec(ecx).unwrap();
            a.jnz(top).unwrap();
            a.jmp(done).unwrap();
            a.set_label(&mut func).unwrap();
            a.add(eax, ecx).unwrap();
            a.ret().unwrap();
            a.set_label(&mut done).unwrap();
            a.hlt().unwrap();
        });
        let m = run_to_hlt(&code, |_| {});
        assert_eq!(m.cpu.regs.gpr[RAX], 55);
        assert_eq!(m.cpu.regs.gpr[RSP], STACK_TOP - 0x100);
        // 2 + 10 * (call, add, ret, dec, jnz) + jmp; hlt does not retire.
        assert_eq!(m.cpu.icount, 2 + 50 + 1);
    }

    #[test]
    fn loop_and_jrcxz() {
        let code = assemble(|a| {
            let mut top = a.create_label();
            let mut skip = a.create_label();
            a.mov(ecx, 4u32).unwrap();
            a.set_label(&mut top).unwrap();
            a.inc(eax).unwrap();
            a.loop_(top).unwrap();
            a.jrcxz(skip).unwrap();
            a.mov(ebx, 1u32).unwrap();
            a.set_label(&mut skip).unwrap();
            a.hlt().unwrap();
        });
        let m = run_to_hlt(&code, |_| {});
        assert_eq!(
            (
                m.cpu.regs.gpr[RAX],
                m.cpu.regs.gpr[RBX],
                m.cpu.regs.gpr[RCX]
            ),
            (4, 0, 0)
        );
    }
}
