//! System and miscellaneous instructions (SDM Vol. 1, 5.1.13 and 5.20): SYSCALL, CPUID, RDTSC, RDTSCP, RDRAND,
//! RDSEED, XGETBV, the fences, CLFLUSH, the one-byte NOP, PAUSE, UD0/UD1/UD2, HLT, INT3, INT n, the flag
//! control instructions (CLC, STC, CMC, CLD, STD, LAHF, SAHF). The hint-NOP space (NOP r/m, prefetches, ENDBR,
//! RDSSP and the reserved NOPs) is hint.rs's.
//!
//! Every source of nondeterminism here is answered from the configuration: RDTSC from the instruction count,
//! RDRAND and RDSEED from a ChaCha stream of the seed, CPUID from the fixed table in cpuid.rs.

use super::dispatch::Table;
use super::flags::{CF, DF, STATUS};
use super::{cpuid, Cpu, Exception, Stop, RAX, RCX, RDX};
use crate::cpu::Insn;
use iced_x86::{Code, Mnemonic};
use rand::RngCore;

fn syscall(_: &mut Cpu, _: &Insn) -> Result<(), Stop> {
    Err(Stop::SYSCALL)
}

fn nop(_: &mut Cpu, _: &Insn) -> Result<(), Stop> {
    Ok(())
}

fn ud(_: &mut Cpu, _: &Insn) -> Result<(), Stop> {
    Err(Exception::InvalidOpcode.into())
}

/// HLT and INT n are privileged at user level: #GP, which Linux turns into SIGSEGV.
fn gp(_: &mut Cpu, _: &Insn) -> Result<(), Stop> {
    Err(Exception::GeneralProtection.into())
}

fn int3(_: &mut Cpu, _: &Insn) -> Result<(), Stop> {
    Err(Exception::Breakpoint.into())
}

fn cpuid_insn(cpu: &mut Cpu, _: &Insn) -> Result<(), Stop> {
    let [a, b, c, d] = cpuid::cpuid_of(
        cpu.config.cpuid,
        cpu.regs.gpr[RAX] as u32,
        cpu.regs.gpr[RCX] as u32,
    );
    cpu.regs.gpr[RAX] = a as u64;
    cpu.regs.gpr[super::RBX] = b as u64;
    cpu.regs.gpr[RCX] = c as u64;
    cpu.regs.gpr[RDX] = d as u64;
    Ok(())
}

fn tsc(cpu: &Cpu) -> u64 {
    cpu.icount.wrapping_mul(cpu.config.tsc_per_insn)
}

fn rdtsc(cpu: &mut Cpu, _: &Insn) -> Result<(), Stop> {
    let t = tsc(cpu);
    cpu.regs.gpr[RAX] = t & 0xffff_ffff;
    cpu.regs.gpr[RDX] = t >> 32;
    Ok(())
}

fn rdtscp(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    rdtsc(cpu, i)?;
    // IA32_TSC_AUX: processor 0.
    cpu.regs.gpr[RCX] = 0;
    Ok(())
}

/// RDRAND/RDSEED: a value from the seeded stream, CF = 1 (always ready), the other status flags 0.
fn rdrand<const S: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let v = cpu.rdrand.next_u64();
    cpu.write_reg(i.op0_register(), v & super::flags::mask(S));
    cpu.regs.flags.set_status(CF);
    Ok(())
}

fn xgetbv(cpu: &mut Cpu, _: &Insn) -> Result<(), Stop> {
    // XCR0 = x87 | SSE state; any other register number is #GP.
    if cpu.regs.gpr[RCX] as u32 != 0 {
        return Err(Exception::GeneralProtection.into());
    }
    cpu.regs.gpr[RAX] = 3;
    cpu.regs.gpr[RDX] = 0;
    Ok(())
}

fn clc(cpu: &mut Cpu, _: &Insn) -> Result<(), Stop> {
    cpu.regs.flags.set_flag(CF, false);
    Ok(())
}
fn stc(cpu: &mut Cpu, _: &Insn) -> Result<(), Stop> {
    cpu.regs.flags.set_flag(CF, true);
    Ok(())
}
fn cmc(cpu: &mut Cpu, _: &Insn) -> Result<(), Stop> {
    let cf = cpu.regs.flags.cf();
    cpu.regs.flags.set_flag(CF, !cf);
    Ok(())
}
fn cld(cpu: &mut Cpu, _: &Insn) -> Result<(), Stop> {
    cpu.regs.flags.other &= !DF;
    Ok(())
}
fn std_(cpu: &mut Cpu, _: &Insn) -> Result<(), Stop> {
    cpu.regs.flags.other |= DF;
    Ok(())
}

/// LAHF: AH = SF:ZF:0:AF:0:PF:1:CF.
fn lahf(cpu: &mut Cpu, _: &Insn) -> Result<(), Stop> {
    let ah = (cpu.regs.flags.status() & 0xd5) | 0x02;
    cpu.write_reg(iced_x86::Register::AH, ah);
    Ok(())
}

/// SAHF: SF, ZF, AF, PF, CF from AH; OF unchanged.
fn sahf(cpu: &mut Cpu, _: &Insn) -> Result<(), Stop> {
    let ah = cpu.read_reg(iced_x86::Register::AH);
    let status = (cpu.regs.flags.status() & !0xd5 & STATUS) | (ah & 0xd5);
    cpu.regs.flags.set_status(status);
    Ok(())
}

pub(crate) fn register(t: &mut Table) {
    t.set(Code::Syscall, syscall);
    t.set(Code::Cpuid, cpuid_insn);
    t.set(Code::Rdtsc, rdtsc);
    t.set(Code::Rdtscp, rdtscp);
    t.set(Code::Rdrand_r16, rdrand::<2>);
    t.set(Code::Rdrand_r32, rdrand::<4>);
    t.set(Code::Rdrand_r64, rdrand::<8>);
    t.set(Code::Rdseed_r16, rdrand::<2>);
    t.set(Code::Rdseed_r32, rdrand::<4>);
    t.set(Code::Rdseed_r64, rdrand::<8>);
    t.set(Code::Xgetbv, xgetbv);
    for code in [Code::Clflush_m8, Code::Pause] {
        t.set(code, nop);
    }
    // "The processor ignores the r/m field of the ModR/M byte" (SDM Vol. 2A LFENCE and MFENCE, Vol. 2B SFENCE):
    // each fence is any of 0F AE E8-EF, F0-F7, F8-FF, and iced gives each byte its own code. One CPU with no other
    // agent in memory has nothing to order, so all are NOPs (native_oracle.rs walks them on the host CPU).
    for code in Code::values() {
        if matches!(
            code.mnemonic(),
            Mnemonic::Lfence | Mnemonic::Mfence | Mnemonic::Sfence
        ) && code.op_code().mode64()
            && code.op_code().encoding() == iced_x86::EncodingKind::Legacy
        {
            t.set(code, nop);
        }
    }
    // The one-byte NOPs (90 with or without 66 or REX.W); NOP r/m, prefetches and ENDBR are hint.rs's.
    for code in [Code::Nopw, Code::Nopd, Code::Nopq] {
        t.set(code, nop);
    }
    t.set(Code::Ud2, ud);
    t.set(Code::Ud0_r32_rm32, ud);
    t.set(Code::Ud0_r64_rm64, ud);
    t.set(Code::Ud1_r32_rm32, ud);
    t.set(Code::Ud1_r64_rm64, ud);
    t.set(Code::Hlt, gp);
    t.set(Code::Int_imm8, gp);
    t.set(Code::Int3, int3);
    t.set(Code::Clc, clc);
    t.set(Code::Stc, stc);
    t.set(Code::Cmc, cmc);
    t.set(Code::Cld, cld);
    t.set(Code::Std, std_);
    t.set(Code::Lahf, lahf);
    t.set(Code::Sahf, sahf);
}

#[cfg(test)]
mod tests {
    use crate::cpu::testutil::*;
    use crate::cpu::*;
    use iced_x86::code_asm::*;

    #[test]
    fn rdtsc_is_virtual_time() {
        let code = assemble(|a| {
            a.nop().unwrap();
            a.nop().unwrap();
            a.rdtsc().unwrap();
            a.hlt().unwrap();
        });
        let m = run_to_hlt(&code, |c| c.config.tsc_per_insn = 3);
        assert_eq!(m.cpu.regs.gpr[RAX], 6);
        assert_eq!(m.cpu.regs.gpr[RDX], 0);
    }

    #[test]
    fn rdrand_is_seeded_and_reproducible() {
        let code = assemble(|a| {
            a.rdrand(rax).unwrap();
            a.rdrand(rbx).unwrap();
            a.hlt().unwrap();
        });
        let run = |seed| {
            let mut m = machine_with(&code);
            m.cpu.config.seed = seed;
            m.cpu.rdrand = named_stream(seed, "cpu.rdrand");
            m.run(100);
            (m.cpu.regs.gpr[RAX], m.cpu.regs.gpr[RBX], m.cpu.rflags() & 1)
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
        assert_ne!(run(1).0, run(1).1);
        assert_eq!(run(1).2, 1, "CF says the value is valid");
    }

    #[test]
    fn lahf_sahf_round_trip() {
        let code = assemble(|a| {
            a.mov(ah, 0xd7u32).unwrap();
            a.sahf().unwrap();
            a.mov(ah, 0u32).unwrap();
            a.lahf().unwrap();
            a.hlt().unwrap();
        });
        let m = run_to_hlt(&code, |_| {});
        assert_eq!((m.cpu.regs.gpr[RAX] >> 8) & 0xff, 0xd7);
    }

    #[test]
    fn int3_and_ud2_are_exceptions() {
        let mut m = machine_with(&assemble(|a| a.int3().unwrap()));
        assert_eq!(m.run(1), Exit::Exception(Exception::Breakpoint));
        let mut m = machine_with(&assemble(|a| a.ud2().unwrap()));
        assert_eq!(m.run(1), Exit::Exception(Exception::InvalidOpcode));
    }
}
