//! Stack instructions (SDM Vol. 1, 6.2 and 5.1.1): PUSH, POP, ENTER, LEAVE, PUSHFQ, POPFQ, and PUSH/POP of FS
//! and GS (whose selectors read as zero: user-mode Linux programs set the bases with arch_prctl).

use super::dispatch::Table;
use super::flags::USER_WRITABLE;
use super::{Cpu, Stop, RBP, RSP};
use crate::cpu::Insn;
use iced_x86::Code;

fn push<const S: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let v = cpu.read_op(i, 0, S)?;
    let sp = cpu.regs.gpr[RSP].wrapping_sub(S as u64);
    cpu.mem.write_sized(sp, S as u32, v)?;
    cpu.regs.gpr[RSP] = sp;
    Ok(())
}

/// PUSH imm: the immediate is sign-extended to the stack width.
fn push_imm<const S: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let v = i.immediate(0);
    let sp = cpu.regs.gpr[RSP].wrapping_sub(S as u64);
    cpu.mem.write_sized(sp, S as u32, v)?;
    cpu.regs.gpr[RSP] = sp;
    Ok(())
}

fn pop<const S: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let old_sp = cpu.regs.gpr[RSP];
    let v = cpu.mem.read_sized(old_sp, S as u32)?;
    // SDM POP: a memory destination addressed through rsp uses the value after the increment.
    cpu.regs.gpr[RSP] = old_sp.wrapping_add(S as u64);
    if let Err(e) = cpu.write_op(i, 0, S, v) {
        cpu.regs.gpr[RSP] = old_sp;
        return Err(e.into());
    }
    Ok(())
}

fn push_zero_selector(cpu: &mut Cpu, _: &Insn) -> Result<(), Stop> {
    cpu.push64(0)?;
    Ok(())
}

fn pushfq(cpu: &mut Cpu, _: &Insn) -> Result<(), Stop> {
    // RF and VM read as zero in the pushed image.
    let v = cpu.rflags() & !((1 << 16) | (1 << 17));
    cpu.push64(v)?;
    Ok(())
}

fn popfq(cpu: &mut Cpu, _: &Insn) -> Result<(), Stop> {
    let v = cpu.pop64()?;
    cpu.regs.flags.set_rflags(v, USER_WRITABLE);
    Ok(())
}

fn leave(cpu: &mut Cpu, _: &Insn) -> Result<(), Stop> {
    let v = cpu.mem.read_u64(cpu.regs.gpr[RBP])?;
    cpu.regs.gpr[RSP] = cpu.regs.gpr[RBP].wrapping_add(8);
    cpu.regs.gpr[RBP] = v;
    Ok(())
}

/// ENTER imm16, imm8 with 64-bit operand size (SDM ENTER, the 64-bit algorithm).
fn enter(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let size = i.immediate16() as u64;
    let level = (i.immediate8_2nd() % 32) as u64;
    let (saved_sp, saved_bp) = (cpu.regs.gpr[RSP], cpu.regs.gpr[RBP]);
    let result = (|| -> Result<(), Stop> {
        cpu.push64(saved_bp)?;
        let frame = cpu.regs.gpr[RSP];
        if level > 0 {
            let mut bp = saved_bp;
            for _ in 1..level {
                bp = bp.wrapping_sub(8);
                let v = cpu.mem.read_u64(bp)?;
                cpu.push64(v)?;
            }
            cpu.push64(frame)?;
        }
        cpu.regs.gpr[RBP] = frame;
        cpu.regs.gpr[RSP] = cpu.regs.gpr[RSP].wrapping_sub(size);
        Ok(())
    })();
    if result.is_err() {
        cpu.regs.gpr[RSP] = saved_sp;
        cpu.regs.gpr[RBP] = saved_bp;
    }
    result
}

pub(crate) fn register(t: &mut Table) {
    t.set(Code::Push_r64, push::<8>);
    t.set(Code::Push_rm64, push::<8>);
    t.set(Code::Push_r16, push::<2>);
    t.set(Code::Push_rm16, push::<2>);
    t.set(Code::Pushq_imm8, push_imm::<8>);
    t.set(Code::Pushq_imm32, push_imm::<8>);
    t.set(Code::Pushw_imm8, push_imm::<2>);
    t.set(Code::Push_imm16, push_imm::<2>);
    t.set(Code::Pop_r64, pop::<8>);
    t.set(Code::Pop_rm64, pop::<8>);
    t.set(Code::Pop_r16, pop::<2>);
    t.set(Code::Pop_rm16, pop::<2>);
    t.set(Code::Pushq_FS, push_zero_selector);
    t.set(Code::Pushq_GS, push_zero_selector);
    t.set(Code::Pushfq, pushfq);
    t.set(Code::Popfq, popfq);
    t.set(Code::Leaveq, leave);
    t.set(Code::Enterq_imm16_imm8, enter);
}

#[cfg(test)]
mod tests {
    use crate::cpu::flags::{CF, DF, ZF};
    use crate::cpu::testutil::*;
    use crate::cpu::*;
    use iced_x86::code_asm::*;

    #[test]
    fn push_pop_rsp_and_flags() {
        let code = assemble(|a| {
            a.push(rsp).unwrap(); // pushes the value before the decrement
            a.pop(rax).unwrap();
            a.push(-2i32).unwrap();
            a.pop(rbx).unwrap();
            a.stc().unwrap();
            a.std().unwrap();
            a.pushfq().unwrap();
            a.pop(rcx).unwrap();
            a.push(0i32).unwrap();
            a.popfq().unwrap();
            a.hlt().unwrap();
        });
        let m = run_to_hlt(&code, |_| {});
        assert_eq!(m.cpu.regs.gpr[RAX], STACK_TOP - 0x100);
        assert_eq!(m.cpu.regs.gpr[RBX], (-2i64) as u64);
        assert_eq!(m.cpu.regs.gpr[RCX] & (CF | DF | 0x202), CF | DF | 0x202);
        assert_eq!(m.cpu.rflags() & (CF | DF | ZF), 0);
        assert_eq!(
            m.cpu.rflags() & 0x202,
            0x202,
            "IF and the reserved bit stay set"
        );
    }

    #[test]
    fn user_popfq_sets_nt_but_keeps_iopl_and_if() {
        let code = assemble(|a| {
            a.push(0x3000 | 0x4000 | 0x1i32).unwrap(); // IOPL 3, NT, CF; IF clear
            a.popfq().unwrap();
            a.hlt().unwrap();
        });
        let m = run_to_hlt(&code, |_| {});
        assert_eq!(
            m.cpu.rflags() & (0x3000 | 0x4000 | 0x200 | 0x1),
            0x4000 | 0x200 | 0x1
        );
    }

    #[test]
    fn enter_and_leave_build_and_drop_a_frame() {
        let code = assemble(|a| {
            a.enter(32u32, 0u32).unwrap();
            a.mov(rax, rbp).unwrap();
            a.mov(rbx, rsp).unwrap();
            a.leave().unwrap();
            a.hlt().unwrap();
        });
        let sp0 = STACK_TOP - 0x100;
        let m = run_to_hlt(&code, |c| c.regs.gpr[RBP] = 0x1234);
        assert_eq!(m.cpu.regs.gpr[RAX], sp0 - 8);
        assert_eq!(m.cpu.regs.gpr[RBX], sp0 - 8 - 32);
        assert_eq!((m.cpu.regs.gpr[RSP], m.cpu.regs.gpr[RBP]), (sp0, 0x1234));
    }
}
