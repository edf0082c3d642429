//! String instructions (SDM Vol. 1, 7.3.9): MOVS, STOS, LODS, CMPS, SCAS in byte, word, doubleword and quadword
//! sizes, with REP, REPE and REPNE.
//!
//! Counting: every iteration of a REP-prefixed instruction retires as one instruction, and a REP instruction with
//! a zero count retires as one. When the run's budget ends before the count does, the instruction stops after the
//! iterations that fit, with rip left on it and rcx, rsi and rdi showing the work done; running again resumes it.
//! This is the state an interrupt leaves on hardware (SDM Vol. 1, 7.3.9.2), so a budget stop is always a state the
//! real CPU can be in. A fault in iteration k leaves iterations 1..k-1 done and counted.
//!
//! The source of MOVS, LODS and CMPS honours an FS or GS segment override; the destination is always ES (base 0).
//! Under an address-size prefix the registers are esi, edi and ecx.

use super::dispatch::Table;
use super::flags::{mask, FlagOp};
use super::{Cpu, Stop, RAX, RCX, RDI, RSI};
use crate::cpu::Insn;
use crate::memory::{PAGE_MASK, PAGE_SIZE};
use iced_x86::{Code, OpKind, Register};

const MOVS: u8 = 0;
const STOS: u8 = 1;
const LODS: u8 = 2;
const CMPS: u8 = 3;
const SCAS: u8 = 4;

/// How a string instruction repeats.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Repeat {
    Once,
    /// REP, or REPE/REPZ for CMPS and SCAS.
    WhileEqual,
    /// REPNE/REPNZ (CMPS and SCAS only).
    WhileNotEqual,
}

fn source_base(cpu: &Cpu, i: &Insn) -> u64 {
    match i.memory_segment() {
        Register::FS => cpu.regs.fs_base,
        Register::GS => cpu.regs.gs_base,
        _ => 0,
    }
}

/// One iteration. Returns the ZF result for CMPS/SCAS.
#[inline(always)]
fn iterate<const S: u8, const OP: u8>(
    cpu: &mut Cpu,
    seg: u64,
    amask: u64,
    step: u64,
) -> Result<bool, Stop> {
    let rsi = cpu.regs.gpr[RSI] & amask;
    let rdi = cpu.regs.gpr[RDI] & amask;
    let size = S as u32;
    let mut zf = false;
    match OP {
        MOVS => {
            let v = cpu.mem.read_sized(seg.wrapping_add(rsi), size)?;
            cpu.mem.write_sized(rdi, size, v)?;
        }
        STOS => cpu.mem.write_sized(rdi, size, cpu.regs.gpr[RAX])?,
        LODS => {
            let v = cpu.mem.read_sized(seg.wrapping_add(rsi), size)?;
            let r = match S {
                1 => Register::AL,
                2 => Register::AX,
                4 => Register::EAX,
                _ => Register::RAX,
            };
            cpu.write_reg(r, v);
        }
        CMPS => {
            let a = cpu.mem.read_sized(seg.wrapping_add(rsi), size)?;
            let b = cpu.mem.read_sized(rdi, size)?;
            let r = a.wrapping_sub(b) & mask(S);
            cpu.regs.flags.set(FlagOp::Sub, S, a, b, r);
            zf = r == 0;
        }
        _ => {
            let a = cpu.regs.gpr[RAX] & mask(S);
            let b = cpu.mem.read_sized(rdi, size)?;
            let r = a.wrapping_sub(b) & mask(S);
            cpu.regs.flags.set(FlagOp::Sub, S, a, b, r);
            zf = r == 0;
        }
    }
    let uses_rsi = matches!(OP, MOVS | LODS | CMPS);
    let uses_rdi = matches!(OP, MOVS | STOS | CMPS | SCAS);
    if uses_rsi {
        set_addr_reg(cpu, RSI, amask, rsi.wrapping_add(step));
    }
    if uses_rdi {
        set_addr_reg(cpu, RDI, amask, rdi.wrapping_add(step));
    }
    Ok(zf)
}

/// Runs up to `max` iterations of a forward REP MOVS or REP STOS with 64-bit addresses at once, as many as stay
/// within one source page and one destination page. Returns how many ran; 0 when the per-iteration path must
/// take the next one (an element straddling a page, fewer than two iterations, or a MOVS whose destination
/// overlaps the source above it, where the element-by-element order is visible).
///
/// Exactness: every iteration of the chunk reads the same source page and writes the same destination page, so
/// resolving both pages first (source first: each iteration reads before it writes) raises exactly the fault
/// the first iteration would, with nothing done; otherwise all of them succeed and leave what the iterations
/// one by one would, stuck bits of the destination frame included. The caller counts each iteration as a
/// retired instruction.
#[inline(always)]
fn bulk<const S: u8, const OP: u8>(cpu: &mut Cpu, seg: u64, max: u64) -> Result<u64, Stop> {
    let size = S as usize;
    let rdi = cpu.regs.gpr[RDI];
    let dst_off = (rdi & PAGE_MASK) as usize;
    let src_addr = seg.wrapping_add(cpu.regs.gpr[RSI]);
    let src_off = (src_addr & PAGE_MASK) as usize;
    let mut n = (PAGE_SIZE - dst_off) / size;
    if OP == MOVS {
        n = n.min((PAGE_SIZE - src_off) / size);
    }
    let n = (n as u64).min(max) as usize;
    if n < 2 {
        return Ok(0);
    }
    let bytes = n * size;
    if OP == MOVS {
        cpu.mem.host_page_for_read(src_addr)?;
    }
    let dst_page = cpu.mem.host_page_for_write(rdi)?;
    if OP == MOVS {
        // Resolved again after the write side, which may have copied a shared frame that the source shares.
        let src_page = cpu.mem.host_page_for_read(src_addr)?;
        // SAFETY: both pointers are to live 4096-byte frames of `cpu.mem` (host_page_for_*), nothing changes
        // the memory between their resolution and this copy, and `off + bytes <= 4096` on both sides by the
        // choice of `n`.
        let (src, dst) = unsafe { (src_page.add(src_off), dst_page.add(dst_off)) };
        let (s_addr, d_addr) = (src as usize, dst as usize);
        if d_addr > s_addr && d_addr < s_addr + bytes {
            return Ok(0);
        }
        // SAFETY: as above; `copy` allows the ranges to overlap, and with the destination not above the source
        // inside it, a forward element-by-element copy and memmove leave the same bytes.
        unsafe { std::ptr::copy(src, dst, bytes) };
        cpu.regs.gpr[RSI] = cpu.regs.gpr[RSI].wrapping_add(bytes as u64);
    } else {
        let v = cpu.regs.gpr[RAX].to_le_bytes();
        // SAFETY: `dst_page` is a live 4096-byte frame of `cpu.mem` resolved for writing just above, and
        // `dst_off + bytes <= 4096`.
        unsafe {
            let dst = dst_page.add(dst_off);
            if S == 1 {
                std::ptr::write_bytes(dst, v[0], bytes);
            } else {
                for k in 0..n {
                    std::ptr::copy_nonoverlapping(v.as_ptr(), dst.add(k * size), size);
                }
            }
        }
    }
    // Stuck bits of the destination frame hold against this write as against any other. Forcing them once after
    // the whole span leaves what forcing after each iteration would: no iteration of the span reads a byte that an
    // earlier one wrote (MOVS copies forward only when the destination is not above the source inside it), and
    // forcing touches only the stuck bits.
    cpu.mem.host_write_done(rdi);
    cpu.regs.gpr[RDI] = rdi.wrapping_add(bytes as u64);
    Ok(n as u64)
}

#[inline(always)]
fn set_addr_reg(cpu: &mut Cpu, reg: usize, amask: u64, v: u64) {
    // A 32-bit address register write zero-extends, as any 32-bit register write does.
    cpu.regs.gpr[reg] = v & amask;
}

fn string<const S: u8, const OP: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let amask = match i.op0_kind() {
        OpKind::MemoryESEDI | OpKind::MemorySegESI => 0xffff_ffff,
        _ if i.op1_kind() == OpKind::MemorySegESI || i.op1_kind() == OpKind::MemoryESEDI => {
            0xffff_ffff
        }
        _ => u64::MAX,
    };
    let seg = source_base(cpu, i);
    let step = if cpu.regs.flags.df() {
        (S as u64).wrapping_neg()
    } else {
        S as u64
    };
    let repeat = if i.has_repne_prefix() && matches!(OP, CMPS | SCAS) {
        Repeat::WhileNotEqual
    } else if i.has_rep_prefix() || i.has_repe_prefix() || i.has_repne_prefix() {
        // For MOVS, STOS and LODS an F2 prefix repeats like F3 (SDM: REPNE with non-comparing string
        // instructions behaves as REP on current processors).
        Repeat::WhileEqual
    } else {
        Repeat::Once
    };
    if repeat == Repeat::Once {
        iterate::<S, OP>(cpu, seg, amask, step)?;
        return Ok(());
    }
    let mut count = cpu.regs.gpr[RCX] & amask;
    if count == 0 {
        return Ok(());
    }
    let limit = cpu.icount_end.saturating_sub(cpu.icount).max(1);
    let mut done = 0u64;
    let compares = matches!(OP, CMPS | SCAS);
    let mut finished = false;
    let bulk_ok = matches!(OP, MOVS | STOS) && amask == u64::MAX && step == S as u64;
    while done < limit {
        if bulk_ok {
            match bulk::<S, OP>(cpu, seg, count.min(limit - done)) {
                Ok(0) => {}
                Ok(n) => {
                    count -= n;
                    done += n;
                    if count == 0 {
                        finished = true;
                        break;
                    }
                    continue;
                }
                Err(e) => {
                    cpu.regs.gpr[RCX] = count;
                    cpu.icount += done;
                    return Err(e);
                }
            }
        }
        match iterate::<S, OP>(cpu, seg, amask, step) {
            Ok(zf) => {
                count -= 1;
                done += 1;
                if count == 0
                    || (compares && repeat == Repeat::WhileEqual && !zf)
                    || (compares && repeat == Repeat::WhileNotEqual && zf)
                {
                    finished = true;
                    break;
                }
            }
            Err(e) => {
                cpu.regs.gpr[RCX] = count;
                cpu.icount += done;
                return Err(e);
            }
        }
    }
    cpu.regs.gpr[RCX] = count;
    // The run loop counts one retirement for this instruction; the other iterations are counted here.
    cpu.icount += done - 1;
    if !finished {
        cpu.regs.rip = i.ip();
    }
    Ok(())
}

pub(crate) fn register(t: &mut Table) {
    use Code as C;
    let table: [(Code, super::Handler); 20] = [
        (C::Movsb_m8_m8, string::<1, MOVS>),
        (C::Movsw_m16_m16, string::<2, MOVS>),
        (C::Movsd_m32_m32, string::<4, MOVS>),
        (C::Movsq_m64_m64, string::<8, MOVS>),
        (C::Stosb_m8_AL, string::<1, STOS>),
        (C::Stosw_m16_AX, string::<2, STOS>),
        (C::Stosd_m32_EAX, string::<4, STOS>),
        (C::Stosq_m64_RAX, string::<8, STOS>),
        (C::Lodsb_AL_m8, string::<1, LODS>),
        (C::Lodsw_AX_m16, string::<2, LODS>),
        (C::Lodsd_EAX_m32, string::<4, LODS>),
        (C::Lodsq_RAX_m64, string::<8, LODS>),
        (C::Cmpsb_m8_m8, string::<1, CMPS>),
        (C::Cmpsw_m16_m16, string::<2, CMPS>),
        (C::Cmpsd_m32_m32, string::<4, CMPS>),
        (C::Cmpsq_m64_m64, string::<8, CMPS>),
        (C::Scasb_AL_m8, string::<1, SCAS>),
        (C::Scasw_AX_m16, string::<2, SCAS>),
        (C::Scasd_EAX_m32, string::<4, SCAS>),
        (C::Scasq_RAX_m64, string::<8, SCAS>),
    ];
    for (code, h) in table {
        t.set(code, h);
    }
}

#[cfg(test)]
mod tests {
    use crate::cpu::flags::ZF;
    use crate::cpu::testutil::*;
    use crate::cpu::*;
    use iced_x86::code_asm::*;
    use iced_x86::IcedError;

    #[test]
    fn rep_movsb_copies_and_counts_each_iteration() {
        let code = assemble(|a| {
            a.rep().movsb().unwrap();
            a.hlt().unwrap();
        });
        let mut m = machine_with(&code);
        for k in 0..100u64 {
            m.cpu.mem.write_u8(DATA + k, k as u8).unwrap();
        }
        m.cpu.regs.gpr[RSI] = DATA;
        m.cpu.regs.gpr[RDI] = DATA + 0x1000;
        m.cpu.regs.gpr[RCX] = 100;
        assert_eq!(m.run(30), Exit::BudgetExhausted);
        assert_eq!(
            (m.cpu.icount, m.cpu.regs.gpr[RCX], m.cpu.regs.rip),
            (30, 70, CODE),
            "stopped mid-way on the instruction"
        );
        assert_eq!(m.run(1000), Exit::Exception(Exception::GeneralProtection));
        assert_eq!(m.cpu.icount, 100);
        assert_eq!(m.cpu.regs.gpr[RCX], 0);
        for k in 0..100u64 {
            assert_eq!(m.cpu.mem.read_u8(DATA + 0x1000 + k).unwrap(), k as u8);
        }
    }

    /// The bulk path (whole page spans at once) must leave exactly what iteration-by-iteration execution
    /// leaves, at every budget: page-crossing and unaligned spans, every element size, MOVS and STOS, and an
    /// overlapping MOVS that replicates a pattern; and the same again with stuck bits in every page, inside the
    /// source and destination spans, which each write must leave forced.
    #[test]
    fn bulk_rep_movs_and_stos_match_single_iterations_at_every_budget() {
        for stuck in [false, true] {
            bulk_matches_single_iterations(stuck);
        }
    }

    fn bulk_matches_single_iterations(stuck: bool) {
        type Op = fn(&mut CodeAssembler) -> Result<(), IcedError>;
        let ops: [(&str, Op, u64); 6] = [
            ("movsb", |a| a.rep().movsb(), 1),
            ("movsw", |a| a.rep().movsw(), 2),
            ("movsq", |a| a.rep().movsq(), 8),
            ("stosb", |a| a.rep().stosb(), 1),
            ("stosd", |a| a.rep().stosd(), 4),
            ("stosq", |a| a.rep().stosq(), 8),
        ];
        for (name, op, size) in ops {
            for (src, dst) in [
                (DATA + 0xff3, DATA + 0x2ffd),
                (DATA + 0x10, DATA + 0x11),
                (DATA + 0x11, DATA + 0x10),
            ] {
                let count = 0x1400 / size;
                let code = assemble(|a| {
                    op(a).unwrap();
                    a.hlt().unwrap();
                });
                let setup = |m: &mut Machine| {
                    for k in 0..0x4000u64 {
                        m.cpu.mem.write_u8(DATA + k, (k * 7 + 3) as u8).unwrap();
                    }
                    m.cpu.regs.gpr[RSI] = src;
                    m.cpu.regs.gpr[RDI] = dst;
                    m.cpu.regs.gpr[RCX] = count;
                    m.cpu.regs.gpr[RAX] = 0x1122_3344_5566_7788;
                    if stuck {
                        for page in 0..4 {
                            let frame = m.cpu.mem.frame_of(DATA + page * 0x1000).unwrap();
                            for (byte, bit, value) in [
                                (0x7, 5, false),
                                (0x11, 0, true),
                                (0x12, 7, false),
                                (0xff8, 3, true),
                            ] {
                                m.cpu.mem.set_stuck_bit(frame, byte, bit, value);
                            }
                        }
                    }
                };
                let mut reference = machine_with(&code);
                setup(&mut reference);
                while reference.cpu.regs.rip == CODE {
                    assert_eq!(reference.step(), Exit::BudgetExhausted);
                }
                let mut expected = vec![0u8; 0x4000];
                reference.cpu.mem.read_bytes(DATA, &mut expected).unwrap();
                for budget in [1, 2, 3, 1000, 4095, count - 1, count, count + 5] {
                    let mut m = machine_with(&code);
                    setup(&mut m);
                    let mut steps = 0;
                    while m.cpu.regs.rip == CODE {
                        let exit = m.run(budget);
                        assert!(
                            exit == Exit::BudgetExhausted
                                || exit == Exit::Exception(Exception::GeneralProtection),
                            "{name}: {exit:?}"
                        );
                        steps += 1;
                        assert!(steps <= count, "{name}: no progress");
                    }
                    let mut got = vec![0u8; 0x4000];
                    m.cpu.mem.read_bytes(DATA, &mut got).unwrap();
                    assert!(
                        got == expected,
                        "{name} src {src:#x} dst {dst:#x} budget {budget} stuck {stuck}"
                    );
                    assert_eq!(
                        m.cpu.registers(),
                        reference.cpu.registers(),
                        "{name} budget {budget}"
                    );
                    assert_eq!(m.cpu.icount, reference.cpu.icount, "{name} budget {budget}");
                }
            }
        }
    }

    #[test]
    fn bulk_rep_stosq_fault_keeps_the_iterations_before_the_page() {
        let code = assemble(|a| {
            a.rep().stosq().unwrap();
        });
        let mut m = machine_with(&code);
        m.cpu.regs.gpr[RDI] = DATA + 0x10000 - 0x100; // 32 qwords before the end of the mapping
        m.cpu.regs.gpr[RCX] = 100;
        let exit = m.run(1000);
        assert!(
            matches!(exit, Exit::Exception(Exception::PageFault { addr, .. }) if addr == DATA + 0x10000)
        );
        assert_eq!(
            (m.cpu.regs.gpr[RCX], m.cpu.icount, m.cpu.regs.rip),
            (68, 32, CODE)
        );
        assert_eq!(m.cpu.regs.gpr[RDI], DATA + 0x10000);
    }

    #[test]
    fn repne_scasb_finds_the_terminator_like_strlen() {
        let code = assemble(|a| {
            a.repne().scasb().unwrap();
            a.hlt().unwrap();
        });
        let mut m = machine_with(&code);
        m.cpu.mem.write_bytes(DATA, b"hello\0").unwrap();
        m.cpu.regs.gpr[RDI] = DATA;
        m.cpu.regs.gpr[RCX] = u64::MAX;
        assert_eq!(m.run(1000), Exit::Exception(Exception::GeneralProtection));
        assert_eq!(m.cpu.regs.gpr[RDI], DATA + 6);
        assert_eq!(!m.cpu.regs.gpr[RCX] - 1, 5, "the strlen idiom");
        assert_eq!(m.cpu.rflags() & ZF, ZF);
    }

    #[test]
    fn std_makes_stosq_go_down_and_repe_cmpsb_stops_at_difference() {
        let code = assemble(|a| {
            a.std().unwrap();
            a.rep().stosq().unwrap();
            a.cld().unwrap();
            a.mov(rsi, DATA).unwrap();
            a.mov(rdi, DATA + 0x800).unwrap();
            a.mov(ecx, 8u32).unwrap();
            a.repe().cmpsb().unwrap();
            a.hlt().unwrap();
        });
        let mut m = machine_with(&code);
        m.cpu.mem.write_bytes(DATA, b"abcdefgh").unwrap();
        m.cpu.mem.write_bytes(DATA + 0x800, b"abcXefgh").unwrap();
        m.cpu.regs.gpr[RDI] = DATA + 0x100;
        m.cpu.regs.gpr[RCX] = 3;
        m.cpu.regs.gpr[RAX] = 0x1122;
        assert_eq!(m.run(1000), Exit::Exception(Exception::GeneralProtection));
        assert_eq!(m.cpu.mem.peek_u64(DATA + 0xf0).unwrap(), 0x1122);
        assert_eq!(m.cpu.regs.gpr[RSI], DATA + 4);
        assert_eq!(m.cpu.regs.gpr[RCX], 4);
        assert_eq!(m.cpu.rflags() & ZF, 0);
    }

    #[test]
    fn fault_mid_rep_keeps_completed_iterations() {
        let code = assemble(|a| {
            a.rep().stosb().unwrap();
        });
        let mut m = machine_with(&code);
        m.cpu.regs.gpr[RDI] = DATA + 0x10000 - 4; // four bytes before the end of the mapping
        m.cpu.regs.gpr[RCX] = 10;
        let exit = m.run(100);
        assert!(
            matches!(exit, Exit::Exception(Exception::PageFault { addr, .. }) if addr == DATA + 0x10000)
        );
        assert_eq!(
            (m.cpu.regs.gpr[RCX], m.cpu.icount, m.cpu.regs.rip),
            (6, 4, CODE)
        );
    }
}
