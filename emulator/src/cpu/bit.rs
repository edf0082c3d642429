//! Bit and byte instructions (SDM Vol. 1, 5.1.6): BT, BTS, BTR, BTC, BSF, BSR, TZCNT, LZCNT, POPCNT, SETcc.
//!
//! Flags the SDM leaves undefined are left unchanged here (OF, SF, AF, PF after BT*; CF, OF, SF, AF, PF after
//! BSF/BSR; OF, SF, AF, PF after TZCNT/LZCNT). BSF and BSR with a zero source leave the destination unchanged,
//! as Intel and AMD processors do.

use super::dispatch::{by_cc, by_size, condition_forms, forms, Table};
use super::flags::{mask, CF, STATUS, ZF};
use super::{Cpu, Stop};
use crate::cpu::Insn;
use iced_x86::{Mnemonic, OpKind};

const BT: u8 = 0;
const BTS: u8 = 1;
const BTR: u8 = 2;
const BTC: u8 = 3;

/// Replaces the status flags in `which` by those in `values`.
fn set_some(cpu: &mut Cpu, which: u64, values: u64) {
    let s = cpu.regs.flags.status() & !which;
    cpu.regs.flags.set_status((s | (values & which)) & STATUS);
}

fn bt<const S: u8, const OP: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let bits = S as u64 * 8;
    let offset_reg = i.op1_kind() == OpKind::Register;
    let offset = cpu.read_op(i, 1, S)?;
    let (addr, bit) = if i.op0_kind() == OpKind::Memory && offset_reg {
        // A register bit offset is signed and may select a bit outside the operand (SDM BT, "bit base").
        let signed = super::flags::sext(offset, S);
        let unit = signed.div_euclid(bits as i64);
        let ea = cpu.ea(i).wrapping_add((unit * S as i64) as u64);
        (Some(ea), signed.rem_euclid(bits as i64) as u64)
    } else {
        (
            if i.op0_kind() == OpKind::Memory {
                Some(cpu.ea(i))
            } else {
                None
            },
            offset & (bits - 1),
        )
    };
    let value = match addr {
        Some(a) => cpu.mem.read_sized(a, S as u32)?,
        None => cpu.read_reg(i.op0_register()),
    };
    let old = (value >> bit) & 1;
    let new = match OP {
        BTS => value | (1 << bit),
        BTR => value & !(1 << bit),
        BTC => value ^ (1 << bit),
        _ => value,
    };
    if OP != BT {
        match addr {
            Some(a) => cpu.mem.write_sized(a, S as u32, new)?,
            None => cpu.write_reg(i.op0_register(), new),
        }
    }
    set_some(cpu, CF, if old != 0 { CF } else { 0 });
    Ok(())
}

fn bsf<const S: u8, const REVERSE: bool>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let v = cpu.read_op(i, 1, S)? & mask(S);
    if v == 0 {
        set_some(cpu, ZF, ZF);
        return Ok(());
    }
    let index = if REVERSE {
        63 - v.leading_zeros() as u64
    } else {
        v.trailing_zeros() as u64
    };
    cpu.write_reg(i.op0_register(), index);
    set_some(cpu, ZF, 0);
    Ok(())
}

fn tzcnt<const S: u8, const LEADING: bool>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let v = cpu.read_op(i, 1, S)? & mask(S);
    let bits = S as u32 * 8;
    let n = if v == 0 {
        bits
    } else if LEADING {
        v.leading_zeros() - (64 - bits)
    } else {
        v.trailing_zeros()
    } as u64;
    cpu.write_reg(i.op0_register(), n);
    set_some(
        cpu,
        CF | ZF,
        if v == 0 { CF } else { 0 } | if n == 0 { ZF } else { 0 },
    );
    Ok(())
}

fn popcnt<const S: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let v = cpu.read_op(i, 1, S)? & mask(S);
    cpu.write_reg(i.op0_register(), v.count_ones() as u64);
    // SDM POPCNT: OF, SF, ZF, AF, CF, PF are cleared, then ZF set if the source was zero.
    cpu.regs.flags.set_status(if v == 0 { ZF } else { 0 });
    Ok(())
}

fn setcc<const CC: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let v = cpu.regs.flags.cond(CC) as u64;
    cpu.write_op(i, 0, 1, v)?;
    Ok(())
}

pub(crate) fn register(t: &mut Table) {
    macro_rules! bts {
        ($($m:ident => $op:ident),*) => {$(
            for (code, size) in forms(Mnemonic::$m) {
                t.set(code, by_size!(size, bt::<$op>));
            }
        )*};
    }
    bts!(Bt => BT, Bts => BTS, Btr => BTR, Btc => BTC);
    for (code, size) in forms(Mnemonic::Bsf) {
        t.set(code, by_size!(size, bsf::<false>));
    }
    for (code, size) in forms(Mnemonic::Bsr) {
        t.set(code, by_size!(size, bsf::<true>));
    }
    for (code, size) in forms(Mnemonic::Tzcnt) {
        t.set(code, by_size!(size, tzcnt::<false>));
    }
    for (code, size) in forms(Mnemonic::Lzcnt) {
        t.set(code, by_size!(size, tzcnt::<true>));
    }
    for (code, size) in forms(Mnemonic::Popcnt) {
        t.set(code, by_size!(size, popcnt));
    }
    for (code, cc) in condition_forms(|c| (Mnemonic::Seta..=Mnemonic::Sets).contains(&c.mnemonic()))
    {
        let h: super::Handler = by_cc!(cc, setcc);
        t.set(code, h);
    }
}

#[cfg(test)]
mod tests {
    use crate::cpu::flags::{CF, ZF};
    use crate::cpu::testutil::*;
    use crate::cpu::*;
    use iced_x86::code_asm::*;

    #[test]
    fn bts_with_register_offset_reaches_outside_the_operand() {
        let m = run(
            |a| a.bts(dword_ptr(DATA + 0x100), ecx).unwrap(),
            |c| c.regs.gpr[RCX] = (-1i32) as u32 as u64,
        );
        // Bit -1 of the dword at DATA+0x100 is bit 31 of the dword at DATA+0xfc.
        assert_eq!(
            m.cpu.mem.peek_u64(DATA + 0xf8).unwrap(),
            0x8000_0000_0000_0000
        );
        assert_eq!(m.cpu.rflags() & CF, 0);
    }

    #[test]
    fn bit_scans_and_counts() {
        let m = run(
            |a| {
                a.bsr(rax, rbx).unwrap();
                a.bsf(rcx, rbx).unwrap();
                a.tzcnt(edx, esi).unwrap();
                a.lzcnt(edi, ebx).unwrap();
                a.popcnt(r8, rbx).unwrap();
            },
            |c| {
                c.regs.gpr[RBX] = 0x0010_0000_0000_1000;
                c.regs.gpr[RSI] = 0;
            },
        );
        assert_eq!(m.cpu.regs.gpr[RAX], 52);
        assert_eq!(m.cpu.regs.gpr[RCX], 12);
        assert_eq!(m.cpu.regs.gpr[RDX], 32, "tzcnt of zero is the width");
        assert_eq!(m.cpu.regs.gpr[RDI], 19);
        assert_eq!(m.cpu.regs.gpr[8], 2);
        let m = run(|a| a.bsf(rax, rbx).unwrap(), |c| c.regs.gpr[RAX] = 77);
        assert_eq!(
            m.cpu.regs.gpr[RAX], 77,
            "zero source leaves the destination"
        );
        assert_eq!(m.cpu.rflags() & ZF, ZF);
    }

    #[test]
    fn setcc_after_compare() {
        let m = run(
            |a| {
                a.cmp(eax, ebx).unwrap();
                a.setl(cl).unwrap();
                a.setb(dl).unwrap();
            },
            |c| {
                c.regs.gpr[RAX] = (-1i32) as u32 as u64;
                c.regs.gpr[RBX] = 1;
            },
        );
        assert_eq!(
            (m.cpu.regs.gpr[RCX] & 0xff, m.cpu.regs.gpr[RDX] & 0xff),
            (1, 0)
        );
    }
}
