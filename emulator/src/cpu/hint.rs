//! The hint-NOP space: 0F 0D and 0F 18-0F 1F, where instructions added over the years run as NOPs on the
//! processors that predate them, and every form not assigned to an instruction is a reserved NOP.
//!
//! What the SDM says, and what tandem does (it emulates a CPU without CET: CPUID leaf 7 reports neither SHSTK,
//! ECX bit 7, nor IBT, EDX bit 20, see cpuid.rs):
//! - NOP r/m (0F 1F /0) and the reserved NOPs (SDM Vol. 2B, NOP; Vol. 2D, Appendix A, Table A-3, the two-byte
//!   opcode map, where 0F 18-0F 1F are "NOP Ev" and prefetch group 16, Table A-6): no effect, the memory operand
//!   is only an address and is never accessed, so it cannot fault. Every prefix and ModRM form counts.
//! - PREFETCHh (0F 18 /0-/3), PREFETCHIT0/1 (0F 18 /7, /6), PREFETCHW (0F 0D /1) and AMD's PREFETCH group
//!   (0F 0D /0, /2-/7): hints that never fault (Vol. 2B, PREFETCHh, PREFETCHW, PREFETCHIT0/1). tandem has no
//!   cache, so they are NOPs.
//! - CLDEMOTE (NP 0F 1C /0, Vol. 2A): a hint, a NOP where unsupported (tandem's CPUID does not report it).
//! - ENDBR32/ENDBR64 (F3 0F 1E FB/FA, Vol. 2A): NOPs unless indirect-branch tracking is on, which it never is.
//! - RDSSPD/RDSSPQ (F3 0F 1E /1 with a register operand, Vol. 2B): "This opcode is a NOP when CET shadow stacks
//!   are not enabled and on processors that do not support CET" (its Operation section writes the destination
//!   only under CR4.CET and IA32_U_CET.SH_STK_EN). Linux runs user space without shadow stacks unless a program
//!   asks for them. The destination is left unchanged: libgcc's unwinder zeroes it first and reads 0 as "no
//!   shadow stack" on every C++ throw and Rust panic unwind.
//! - The MPX forms of 0F 1A/0F 1B (BND*, Vol. 2A) sit on reserved NOPs and run as NOPs on a CPU without MPX
//!   (tandem's CPUID does not report MPX, leaf 7 EBX bit 14); iced decodes them as `Reservednop_*` unless asked
//!   for MPX, so they need no code of their own here.
//!
//! Not NOPs: 0F 0D with a register operand raises #UD (AMD's CPUs do so, as AMD's APM says for
//! PREFETCH/PREFETCHW, and QEMU agrees; Intel's run it as a NOP, so the native walk compares these forms on AMD
//! hosts only. FIXME: tandem's CPUID says GenuineIntel, whose NOP would be the more faithful answer), and the CET instructions outside this
//! space (INCSSP, RSTORSSP, SAVEPREVSSP, SETSSBSY, CLRSSBSY, WRSS, WRUSS) raise #UD without CET (Vol. 2A/2B,
//! their "#UD If CR4.CET = 0" rows): none of them has a handler, so dispatch makes them #UD.
//!
//! The walk of every prefix and ModRM form of this space on the host CPU is
//! `emulator/tests/native_oracle.rs::the_hint_nop_space_matches_the_host`; the CET instructions outside it are
//! `cet_instructions_and_fences_match_the_host`.

use super::dispatch::Table;
use super::{Cpu, Stop};
use crate::cpu::Insn;
use iced_x86::{Code, EncodingKind, Mnemonic, OpCodeTableKind};

fn nop(_: &mut Cpu, _: &Insn) -> Result<(), Stop> {
    Ok(())
}

/// True for the legacy 64-bit-mode codes of the hint space that run as NOPs here (see the module doc): every
/// code iced has at 0F 0D and 0F 18-0F 1F except 0F 0D's register forms and the MPX codes (which the decoder
/// never produces), plus ENDBR32 and ENDBR64, whose three-byte opcodes iced lists apart.
pub(crate) fn is_hint_nop(code: Code) -> bool {
    if matches!(code, Code::Endbr32 | Code::Endbr64) {
        return true;
    }
    let op = code.op_code();
    let in_space = op.encoding() == EncodingKind::Legacy
        && op.mode64()
        && op.table() == OpCodeTableKind::T0F
        && matches!(op.op_code(), 0x0d | 0x18..=0x1f);
    let mpx = matches!(
        code.mnemonic(),
        Mnemonic::Bndcl
            | Mnemonic::Bndcn
            | Mnemonic::Bndcu
            | Mnemonic::Bndldx
            | Mnemonic::Bndmk
            | Mnemonic::Bndmov
            | Mnemonic::Bndstx
    );
    let register_0f0d = op.op_code() == 0x0d && code.mnemonic() == Mnemonic::Reservednop;
    in_space && !mpx && !register_0f0d
}

pub(crate) fn register(t: &mut Table) {
    for code in Code::values().filter(|&c| is_hint_nop(c)) {
        t.set(code, nop);
    }
}

#[cfg(test)]
mod tests {
    use super::is_hint_nop;
    use crate::cpu::testutil::*;
    use crate::cpu::*;
    use iced_x86::Code;

    #[test]
    fn the_hint_space_is_registered_and_its_neighbours_are_not() {
        for code in [
            Code::Rdsspq_r64,
            Code::Rdsspd_r32,
            Code::Endbr64,
            Code::Endbr32,
            Code::Nop_rm32,
            Code::Reservednop_rm64_r64_0F19,
            Code::Reservednop_rm16_r16_0F1E,
            Code::Prefetchnta_m8,
            Code::Prefetchit0_m8,
            Code::Prefetch_m8,
            Code::Prefetchreserved7_m8,
            Code::Cldemote_m8,
        ] {
            assert!(is_hint_nop(code), "{code:?}");
        }
        for code in [
            Code::Reservednop_rm32_r32_0F0D,
            Code::Incsspq_r64,
            Code::Saveprevssp,
            Code::Setssbsy,
            Code::Clrssbsy_m64,
            Code::Wrssq_m64_r64,
            Code::Bndmov_bnd_bndm128,
            Code::Nopd,
            Code::Ud1_r32_rm32,
        ] {
            assert!(!is_hint_nop(code), "{code:?}");
        }
    }

    /// libgcc's `_Unwind_RaiseException` runs `xor eax, eax; rdsspq rax` and takes a zero for "no shadow
    /// stack": the register must be left as it was, and nothing else may change.
    #[test]
    fn rdsspq_leaves_its_register_unchanged_and_cpuid_reports_no_cet() {
        // f3 48 0f 1e c8: rdsspq rax, then f3 0f 1e c9: rdsspd ecx, then hlt.
        let code = [0xf3, 0x48, 0x0f, 0x1e, 0xc8, 0xf3, 0x0f, 0x1e, 0xc9, 0xf4];
        let mut m = machine_with(&code);
        m.cpu.regs.gpr[RAX] = 0;
        m.cpu.regs.gpr[RCX] = 0xdead_beef_0123_4567;
        let before = m.cpu.registers();
        assert_eq!(m.run(10), Exit::Exception(Exception::GeneralProtection));
        assert_eq!(m.cpu.icount, 2, "both retire; the hlt faults");
        let after = m.cpu.registers();
        assert_eq!(after.gpr, before.gpr);
        assert_eq!(after.rflags, before.rflags);
        let [_, _, ecx, edx] = cpuid::cpuid(7, 0);
        assert_eq!(ecx & (1 << 7), 0, "CET_SS (shadow stacks) is not reported");
        assert_eq!(edx & (1 << 20), 0, "CET_IBT is not reported");
    }
}
