//! The native oracle for the SSE family: every registered SSE form runs from the same random state on the host CPU
//! and in the emulator, and the XMM registers, general-purpose registers, status flags, MXCSR and the memory
//! operand's bytes must agree bit for bit.
//!
//! How: the instruction is encoded by iced, embedded in a small harness (also assembled by iced) that loads the
//! state, runs it, and stores the state back, in an executable page of this test process. Inputs are drawn by a
//! ChaCha stream with a fixed seed: lanes of edge values (signed zeros, infinities, quiet and signalling NaNs with
//! payloads, denormals, the extremes of each exponent range, values on both sides of the integer conversion limits)
//! in every lane width, random rounding control, DAZ, FTZ and sticky flags. Host exceptions stay masked (an
//! unmasked one would be a signal), so the unmasked paths are covered by the unit tests beside each handler.
//! Misaligned operands would be a signal too: the harness keeps them aligned, and a walk over every form checks the
//! emulator's #GP rule on its own.

use crate::cpu::flags::STATUS;
use crate::cpu::testutil::{machine_with, CODE, DATA};
use crate::cpu::{implemented_codes, Exception, Exit};
use iced_x86::code_asm::*;
use iced_x86::{
    Code, Decoder, DecoderOptions, Encoder, EncodingKind, Formatter, Instruction, IntelFormatter,
    MemoryOperand, OpCodeOperandKind as K, Register,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Seed of the input stream; a failure message names the case, and this seed reproduces it.
const SEED: u64 = 0x55e_2024;
/// Cases per floating-point form and per other form.
const FLOAT_CASES_PER_FORM: usize = 200;
const OTHER_CASES_PER_FORM: usize = 24;
/// Bytes of the memory operand region (operands sit at offsets 0, 16 and 32).
const MEM_BYTES: usize = 64;

#[repr(C, align(16))]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct State {
    xmm: [u128; 16],
    gpr: [u64; 16],
    mxcsr: u32,
    pad: u32,
    rflags: u64,
}

const XMM_OFFSET: i32 = 0;
const GPR_OFFSET: i32 = 256;
const MXCSR_OFFSET: i32 = 384;
const RFLAGS_OFFSET: i32 = 392;

/// General-purpose registers an operand may name: not rsp, not rbx (the memory base), not r15 (the harness's).
const OPERAND_GPRS: [usize; 12] = [0, 1, 2, 5, 6, 7, 8, 9, 10, 11, 12, 13];

/// An executable page holding the harness.
struct Native {
    page: *mut u8,
    len: usize,
}

impl Native {
    fn new() -> Native {
        let len = 4096;
        // SAFETY: an anonymous private mapping with no address hint; the result is checked below.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(page, libc::MAP_FAILED, "mmap of the harness page failed");
        Native {
            page: page as *mut u8,
            len,
        }
    }

    /// Runs `insn` (encoded bytes) on the host with `state`, which it updates.
    fn run(&mut self, insn: &[u8], state: &mut State) {
        let code = harness(insn, self.page as u64);
        assert!(code.len() <= self.len);
        // SAFETY: the page is ours, writable and `len` bytes long; nothing else runs from it meanwhile.
        unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), self.page, code.len()) };
        // SAFETY: the page now holds a complete function with the C ABI: it saves and restores every callee-saved
        // register and the host MXCSR, keeps the stack aligned, and accesses only `*state` and the memory the
        // instruction names (the test's buffer, through rbx, which points into `state`-owned test data).
        let f: extern "C" fn(*mut State) = unsafe { std::mem::transmute(self.page) };
        f(state as *mut State);
    }
}

impl Drop for Native {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping made in `new`.
        unsafe { libc::munmap(self.page as *mut libc::c_void, self.len) };
    }
}

fn harness(insn: &[u8], ip: u64) -> Vec<u8> {
    let xmms = [
        xmm0, xmm1, xmm2, xmm3, xmm4, xmm5, xmm6, xmm7, xmm8, xmm9, xmm10, xmm11, xmm12, xmm13,
        xmm14, xmm15,
    ];
    let gprs = [
        rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15,
    ];
    let mut a = CodeAssembler::new(64).unwrap();
    for r in [rbx, rbp, r12, r13, r14, r15] {
        a.push(r).unwrap();
    }
    a.sub(rsp, 8).unwrap();
    a.stmxcsr(dword_ptr(rsp)).unwrap();
    a.mov(r15, rdi).unwrap();
    for (k, x) in xmms.iter().enumerate() {
        a.movdqu(*x, xmmword_ptr(r15 + XMM_OFFSET + 16 * k as i32))
            .unwrap();
    }
    for (k, g) in gprs.iter().enumerate() {
        if k != 4 && k != 15 {
            a.mov(*g, qword_ptr(r15 + GPR_OFFSET + 8 * k as i32))
                .unwrap();
        }
    }
    a.ldmxcsr(dword_ptr(r15 + MXCSR_OFFSET)).unwrap();
    a.push(qword_ptr(r15 + RFLAGS_OFFSET)).unwrap();
    a.popfq().unwrap();
    a.db(insn).unwrap();
    a.pushfq().unwrap();
    a.pop(qword_ptr(r15 + RFLAGS_OFFSET)).unwrap();
    a.stmxcsr(dword_ptr(r15 + MXCSR_OFFSET)).unwrap();
    for (k, x) in xmms.iter().enumerate() {
        a.movdqu(xmmword_ptr(r15 + XMM_OFFSET + 16 * k as i32), *x)
            .unwrap();
    }
    for (k, g) in gprs.iter().enumerate() {
        if k != 4 && k != 15 {
            a.mov(qword_ptr(r15 + GPR_OFFSET + 8 * k as i32), *g)
                .unwrap();
        }
    }
    a.ldmxcsr(dword_ptr(rsp)).unwrap();
    a.add(rsp, 8).unwrap();
    for r in [r15, r14, r13, r12, rbp, rbx] {
        a.pop(r).unwrap();
    }
    a.ret().unwrap();
    a.assemble(ip).unwrap()
}

/// A floating-point value of `frac` fraction and `exp` exponent bits, drawn from the edge cases.
fn edge_float(rng: &mut ChaCha8Rng, frac: u32, exp: u32) -> u64 {
    let sign = (rng.random::<bool>() as u64) << (frac + exp);
    let exp_max = (1u64 << exp) - 1;
    let bias = exp_max >> 1;
    let frac_mask = (1u64 << frac) - 1;
    let random_frac = rng.random::<u64>() & frac_mask;
    let with = |e: u64, f: u64| sign | (e << frac) | (f & frac_mask);
    match rng.random_range(0..16) {
        0 => sign,
        1 => with(exp_max, 0),
        // Quiet NaN, signalling NaN (payload nonzero).
        2 => with(exp_max, (1 << (frac - 1)) | random_frac),
        3 => with(exp_max, (random_frac & (frac_mask >> 1)).max(1)),
        // Denormals, the smallest normals, the largest finite values.
        4 => with(0, random_frac.max(1)),
        5 => with(rng.random_range(1..4), random_frac),
        6 => with(exp_max - rng.random_range(1..4), random_frac),
        // Around the 32- and 64-bit integer limits, and small integers with halves.
        7 => with(
            bias + rng.random_range(29..33),
            random_frac >> rng.random_range(0..frac),
        ),
        8 => with(
            bias + rng.random_range(61..65),
            random_frac >> rng.random_range(0..frac),
        ),
        9 => with(
            bias + rng.random_range(0..4),
            random_frac & !(frac_mask >> 2),
        ),
        // Exponents that make products and quotients underflow or overflow.
        10 => with(rng.random_range(1..bias / 2), random_frac),
        11 => with(rng.random_range(bias + bias / 2..exp_max), random_frac),
        12 => with(bias, 0),
        _ => with(bias - 20 + rng.random_range(0..40), random_frac),
    }
}

/// A 128-bit register value in one of several lane styles.
fn edge_xmm(rng: &mut ChaCha8Rng) -> u128 {
    let mut v = 0u128;
    match rng.random_range(0..7u32) {
        0 | 7.. => v = rng.random(),
        // A small shift count in the low quadword, random bits above it.
        6 => v = rng.random_range(0..70u128) | (rng.random::<u128>() << 64),
        1 | 2 => {
            for l in 0..4 {
                v |= (edge_float(rng, 23, 8) as u128) << (32 * l);
            }
        }
        3 | 4 => {
            for l in 0..2 {
                v |= (edge_float(rng, 52, 11) as u128) << (64 * l);
            }
        }
        5 => {
            for l in 0..16 {
                let b: u8 = match rng.random_range(0..6) {
                    0 => 0,
                    1 => 0x7f,
                    2 => 0x80,
                    3 => 0xff,
                    4 => 1,
                    _ => rng.random(),
                };
                v |= (b as u128) << (8 * l);
            }
        }
    }
    v
}

/// Flips a few low bits of each 32-bit piece: a nearby value, for cancellation and equality cases.
fn perturb(rng: &mut ChaCha8Rng, v: u128) -> u128 {
    match rng.random_range(0..4) {
        0 => v,
        1 => v ^ (0x8000_0000_8000_0000_8000_0000_8000_0000 & rng.random::<u128>()),
        _ => {
            let mut noise = 0u128;
            for l in 0..4 {
                noise |= (rng.random_range(0..8u128)) << (32 * l);
            }
            v ^ noise
        }
    }
}

fn edge_gpr(rng: &mut ChaCha8Rng) -> u64 {
    match rng.random_range(0..6) {
        0 => rng.random::<u64>(),
        1 => rng.random::<i32>() as i64 as u64,
        2 => [0, 1, u64::MAX, 1 << 63, (1 << 63) - 1, 0x8000_0000][rng.random_range(0..6)],
        3 => rng.random_range(0..64),
        4 => (1u64 << rng.random_range(0..64)).wrapping_add(rng.random_range(0..3)),
        _ => rng.random::<u32>() as u64,
    }
}

enum Operand {
    Reg(Register),
    Mem(MemoryOperand),
    Imm(u32),
}

fn build(code: Code, ops: &[Operand]) -> Instruction {
    use Operand::*;
    match ops {
        [Mem(m)] => Instruction::with1(code, *m),
        [Reg(a), Reg(b)] => Instruction::with2(code, *a, *b),
        [Reg(a), Mem(b)] => Instruction::with2(code, *a, *b),
        [Mem(a), Reg(b)] => Instruction::with2(code, *a, *b),
        [Reg(a), Imm(b)] => Instruction::with2(code, *a, *b),
        [Reg(a), Reg(b), Imm(c)] => Instruction::with3(code, *a, *b, *c),
        [Reg(a), Mem(b), Imm(c)] => Instruction::with3(code, *a, *b, *c),
        _ => panic!("{code:?}: no builder for this operand shape"),
    }
    .unwrap()
}

/// The SSE forms the emulator implements: legacy encodings with an XMM operand, plus LDMXCSR, STMXCSR and MOVNTI.
/// Those with an MMX operand too (MOVQ2DQ, MOVDQ2Q) are mmx_native_tests.rs's.
fn sse_codes() -> Vec<Code> {
    implemented_codes()
        .into_iter()
        .filter(|c| {
            let op = c.op_code();
            op.encoding() == EncodingKind::Legacy
                && !(0..op.op_count()).any(|k| matches!(op.op_kind(k), K::mm_reg | K::mm_rm))
                && ((0..op.op_count())
                    .any(|k| matches!(op.op_kind(k), K::xmm_reg | K::xmm_rm | K::xmm_or_mem))
                    || matches!(
                        c,
                        Code::Ldmxcsr_m32
                            | Code::Stmxcsr_m32
                            | Code::Movnti_m32_r32
                            | Code::Movnti_m64_r64
                    ))
        })
        .collect()
}

/// Whether the host CPU has every CPUID feature `code` needs (SSE3 and SSSE3 are not in every x86-64).
fn host_supports(code: Code) -> bool {
    use iced_x86::CpuidFeature as F;
    code.cpuid_features().iter().all(|f| match f {
        F::SSE | F::SSE2 | F::X64 | F::INTEL386 | F::INTEL486 | F::INTEL8086 => true,
        F::SSE3 => std::arch::is_x86_feature_detected!("sse3"),
        F::SSSE3 => std::arch::is_x86_feature_detected!("ssse3"),
        _ => false,
    })
}

fn is_float_form(code: Code) -> bool {
    let name = format!("{code:?}");
    let m = name.split('_').next().unwrap_or("").to_ascii_lowercase();
    m.starts_with("cvt")
        || m.starts_with("cmp")
        || m.contains("comis")
        || [
            "add", "sub", "mul", "div", "sqrt", "min", "max", "hadd", "hsub",
        ]
        .iter()
        .any(|p| {
            m.starts_with(p)
                && (m.ends_with("ps")
                    || m.ends_with("pd")
                    || m.ends_with("ss")
                    || m.ends_with("sd"))
        })
}

struct Case {
    insn: Vec<u8>,
    text: String,
    state: State,
    mem: [u8; MEM_BYTES],
    /// MASKMOVDQU stores at rdi: both runs point it at the memory region (and its value is not compared).
    rdi_is_memory: bool,
}

fn random_case(rng: &mut ChaCha8Rng, code: Code) -> Case {
    random_case_with(rng, code, false, false)
}

/// A random case; `force_memory` makes every operand that may be memory a memory operand, `misalign` puts it at
/// an address that is 8 modulo 16.
fn random_case_with(rng: &mut ChaCha8Rng, code: Code, force_memory: bool, misalign: bool) -> Case {
    let op = code.op_code();
    let mut state = State::default();
    for x in state.xmm.iter_mut() {
        *x = edge_xmm(rng);
    }
    for g in state.gpr.iter_mut() {
        *g = edge_gpr(rng);
    }
    let mut mem = [0u8; MEM_BYTES];
    for chunk in mem.chunks_mut(16) {
        chunk.copy_from_slice(&edge_xmm(rng).to_le_bytes());
    }
    let disp = 16 * rng.random_range(0..3) as i64 + if misalign { 8 } else { 0 };
    let memory = MemoryOperand::with_base_displ(Register::RBX, disp);
    let mut ops = Vec::new();
    let mut xmm_ops = Vec::new();
    for k in 0..op.op_count() {
        let kind = op.op_kind(k);
        let use_mem = force_memory || rng.random_range(0..3) == 0;
        let gpr = OPERAND_GPRS[rng.random_range(0..OPERAND_GPRS.len())];
        let xmm = rng.random_range(0..16usize);
        let operand = match kind {
            K::xmm_reg | K::xmm_rm => Operand::Reg(Register::XMM0 + xmm as u32),
            K::xmm_or_mem if !use_mem => Operand::Reg(Register::XMM0 + xmm as u32),
            K::xmm_or_mem | K::mem => Operand::Mem(memory),
            K::r32_or_mem | K::r64_or_mem if use_mem => Operand::Mem(memory),
            K::r32_or_mem | K::r32_reg | K::r32_rm => Operand::Reg(Register::EAX + gpr as u32),
            K::r64_or_mem | K::r64_reg | K::r64_rm => Operand::Reg(Register::RAX + gpr as u32),
            K::seg_rDI => Operand::Imm(0),
            K::imm8 => Operand::Imm(match rng.random_range(0..3) {
                0 => rng.random_range(0..256),
                _ => rng.random_range(0..20),
            }),
            other => panic!("{code:?}: operand kind {other:?} not generated"),
        };
        if let Operand::Reg(r) = operand {
            if r.is_xmm() {
                xmm_ops.push(r.number());
            }
        }
        ops.push(operand);
    }
    // Related operands: the source near the destination (cancellation, equality, identical NaNs).
    if rng.random_range(0..3) == 0 {
        let first = xmm_ops.first().copied().unwrap_or(0);
        let near = perturb(rng, state.xmm[first]);
        if let Some(&second) = xmm_ops.get(1) {
            state.xmm[second] = near;
        } else {
            let at = disp as usize & !15;
            mem[at..at + 16].copy_from_slice(&near.to_le_bytes());
        }
    }
    if code == Code::Ldmxcsr_m32 {
        let v = 0x1f80 | (rng.random::<u32>() & 0xe07f);
        mem[disp as usize..disp as usize + 4].copy_from_slice(&v.to_le_bytes());
    }
    state.mxcsr = 0x1f80 | (rng.random::<u32>() & 0x3f) | (rng.random::<u32>() & 0xe040);
    state.rflags = 0x202 | (rng.random::<u64>() & STATUS);
    let instr = if code == Code::Maskmovdqu_rDI_xmm_xmm {
        // The implicit ds:[rdi] operand: rdi points at the memory region (see `run_native`, `run_emulated`).
        let (Operand::Reg(a), Operand::Reg(b)) = (&ops[1], &ops[2]) else {
            panic!("maskmovdqu operands")
        };
        Instruction::with_maskmovdqu(64, *a, *b, Register::None).unwrap()
    } else {
        build(code, &ops)
    };
    let mut encoder = Encoder::new(64);
    encoder
        .encode(&instr, CODE)
        .unwrap_or_else(|e| panic!("{code:?}: {e}"));
    let insn = encoder.take_buffer();
    let mut decoder = Decoder::with_ip(64, &insn, CODE, DecoderOptions::NONE);
    let decoded = decoder.decode();
    assert_eq!(decoded.code(), code, "encoding round trip");
    let mut text = String::new();
    IntelFormatter::new().format(&decoded, &mut text);
    Case {
        insn,
        text,
        state,
        mem,
        rdi_is_memory: code == Code::Maskmovdqu_rDI_xmm_xmm,
    }
}

/// Runs the case natively: the final state and memory.
fn run_native(native: &mut Native, case: &Case) -> (State, [u8; MEM_BYTES]) {
    let mut state = case.state;
    let mut mem = Box::new(AlignedMem([0; MEM_BYTES]));
    mem.0 = case.mem;
    state.gpr[3] = mem.0.as_mut_ptr() as u64;
    if case.rdi_is_memory {
        state.gpr[7] = state.gpr[3];
    }
    native.run(&case.insn, &mut state);
    (state, mem.0)
}

#[repr(C, align(16))]
struct AlignedMem([u8; MEM_BYTES]);

/// Runs the case in the emulator: the final state and memory, or why it stopped.
fn run_emulated(case: &Case) -> Result<(State, [u8; MEM_BYTES]), String> {
    let (exit, state, mem) = emulate(case);
    if exit != Exit::BudgetExhausted {
        return Err(format!("emulator stopped with {exit:?}"));
    }
    Ok((state, mem))
}

/// Runs the case's instruction once in the emulator: how it exited, the state and the memory region after.
fn emulate(case: &Case) -> (Exit, State, [u8; MEM_BYTES]) {
    let mut code = case.insn.clone();
    code.push(0xf4);
    let mut m = machine_with(&code);
    let stack_pointer = m.cpu.regs.gpr[4];
    m.cpu.regs.xmm = case.state.xmm;
    m.cpu.regs.gpr = case.state.gpr;
    m.cpu.regs.gpr[4] = stack_pointer;
    m.cpu.regs.gpr[3] = DATA;
    if case.rdi_is_memory {
        m.cpu.regs.gpr[7] = DATA;
    }
    m.cpu.regs.mxcsr = case.state.mxcsr;
    m.cpu.regs.flags.set_rflags(case.state.rflags, STATUS);
    m.cpu.mem.write_bytes(DATA, &case.mem).unwrap();
    let exit = m.step();
    let state = State {
        xmm: m.cpu.regs.xmm,
        gpr: m.cpu.regs.gpr,
        mxcsr: m.cpu.regs.mxcsr,
        pad: 0,
        rflags: m.cpu.rflags(),
    };
    let mut mem = [0u8; MEM_BYTES];
    m.cpu.mem.read_bytes(DATA, &mut mem).unwrap();
    (exit, state_without_scratch(state), mem)
}

/// Clears what the two runs may legitimately differ in: rsp, rbx (the memory base), r15 (the harness's) and the
/// rflags bits other than the status flags.
fn state_without_scratch(mut s: State) -> State {
    s.gpr[3] = 0;
    s.gpr[4] = 0;
    s.gpr[15] = 0;
    s.rflags &= STATUS;
    s
}

fn describe_difference(case: &Case, native: &State, emulated: &State) -> String {
    let mut out = format!("  input mxcsr {:#06x}, memory", case.state.mxcsr);
    for chunk in case.mem.chunks(16) {
        out += &format!(" {:#034x}", u128::from_le_bytes(chunk.try_into().unwrap()));
    }
    out += "\n";
    for k in 0..16 {
        if native.xmm[k] != emulated.xmm[k] {
            out += &format!(
                "  xmm{k}: input {:#034x} native {:#034x} emulated {:#034x}\n",
                case.state.xmm[k], native.xmm[k], emulated.xmm[k]
            );
        }
        if native.gpr[k] != emulated.gpr[k] {
            out += &format!(
                "  gpr{k}: input {:#x} native {:#x} emulated {:#x}\n",
                case.state.gpr[k], native.gpr[k], emulated.gpr[k]
            );
        }
    }
    if native.mxcsr != emulated.mxcsr {
        out += &format!(
            "  mxcsr: input {:#06x} native {:#06x} emulated {:#06x}\n",
            case.state.mxcsr, native.mxcsr, emulated.mxcsr
        );
    }
    if native.rflags != emulated.rflags {
        out += &format!(
            "  rflags: native {:#x} emulated {:#x}\n",
            native.rflags, emulated.rflags
        );
    }
    out
}

#[test]
fn every_sse_form_matches_the_host_cpu() {
    let codes = sse_codes();
    assert!(
        codes.len() >= 150,
        "expected the SSE family to be registered, found {} forms",
        codes.len()
    );
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let mut native = Native::new();
    let mut failures = Vec::new();
    let mut failing_forms = std::collections::BTreeSet::new();
    let mut cases_count = 0;
    let mut skipped = Vec::new();
    for &code in &codes {
        if !host_supports(code) {
            skipped.push(code);
            continue;
        }
        if APPROXIMATIONS.contains(&code) {
            // Checked against the SDM's bound by `approximations_stay_within_the_documented_bound`.
            continue;
        }
        let count = if is_float_form(code) {
            FLOAT_CASES_PER_FORM
        } else {
            OTHER_CASES_PER_FORM
        };
        for n in 0..count {
            let case = random_case(&mut rng, code);
            cases_count += 1;
            let (native_state, native_mem) = run_native(&mut native, &case);
            let mut native_state = state_without_scratch(native_state);
            let report = match run_emulated(&case) {
                Err(e) => Some(format!("  {e}\n")),
                Ok((mut emulated, emulated_mem)) => {
                    if case.rdi_is_memory {
                        native_state.gpr[7] = 0;
                        emulated.gpr[7] = 0;
                    }
                    let mut d = describe_difference(&case, &native_state, &emulated);
                    if native_mem != emulated_mem {
                        d += &format!(
                            "  memory: input {:02x?}\n    native {:02x?}\n  emulated {:02x?}\n",
                            case.mem, native_mem, emulated_mem
                        );
                    }
                    (d.lines().count() > 1).then_some(d)
                }
            };
            if let Some(d) = report {
                failing_forms.insert(format!("{code:?}"));
                if failures.len() < 40 {
                    failures.push(format!(
                        "{code:?} case {n}: {} ({:02x?})\n{d}",
                        case.text, case.insn
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} forms differ from the host CPU (seed {SEED:#x}, {cases_count} cases): {:?}\n{}\nreproduce with: \
         cargo test -p tandem-emulator every_sse_form_matches_the_host_cpu",
        failing_forms.len(),
        failing_forms,
        failures.join("\n")
    );
    eprintln!(
        "{} SSE forms, {cases_count} native differential cases; skipped, the host lacks them: {skipped:?}",
        codes.len()
    );
}

/// RCPPS, RCPSS, RSQRTPS, RSQRTSS: approximations whose low bits are the processor's own (float.rs), compared
/// with the host CPU lane by lane: special cases bit for bit, other results each within the SDM's 1.5 * 2^-12 of
/// the exact value (tandem's within one rounding), and everything else of the state bit for bit.
const APPROXIMATIONS: [Code; 4] = [
    Code::Rcpps_xmm_xmmm128,
    Code::Rcpss_xmm_xmmm32,
    Code::Rsqrtps_xmm_xmmm128,
    Code::Rsqrtss_xmm_xmmm32,
];

#[test]
fn approximations_stay_within_the_documented_bound() {
    let mut rng = ChaCha8Rng::seed_from_u64(SEED ^ 0x1_2345);
    let mut native = Native::new();
    let mut approximated = 0;
    for code in APPROXIMATIONS {
        let sqrt = matches!(code, Code::Rsqrtps_xmm_xmmm128 | Code::Rsqrtss_xmm_xmmm32);
        let lanes = if matches!(code, Code::Rcpps_xmm_xmmm128 | Code::Rsqrtps_xmm_xmmm128) {
            4
        } else {
            1
        };
        for n in 0..400 {
            let case = random_case(&mut rng, code);
            let (native_state, native_mem) = run_native(&mut native, &case);
            let native_state = state_without_scratch(native_state);
            let (mut emulated, emulated_mem) = run_emulated(&case).unwrap();
            let decoded = Decoder::with_ip(64, &case.insn, CODE, DecoderOptions::NONE).decode();
            let dest = decoded.op0_register().number();
            let source: u128 = if decoded.op1_register() == Register::None {
                let at = decoded.memory_displacement64() as usize;
                let mut b = [0u8; 16];
                let width = if lanes == 4 { 16 } else { 4 };
                b[..width].copy_from_slice(&case.mem[at..at + width]);
                u128::from_le_bytes(b)
            } else {
                case.state.xmm[decoded.op1_register().number()]
            };
            for l in 0..lanes {
                let shift = 32 * l;
                let x = (source >> shift) as u32;
                let want = (native_state.xmm[dest] >> shift) as u32;
                let got = (emulated.xmm[dest] >> shift) as u32;
                let why = lane_disagreement(x, want, got, sqrt);
                assert!(
                    why.is_none(),
                    "{} case {n} lane {l}: input {x:#010x}, host {want:#010x}, tandem {got:#010x}: {}",
                    case.text,
                    why.unwrap_or_default()
                );
                approximated += usize::from(want != got);
                let mask = 0xffff_ffffu128 << shift;
                emulated.xmm[dest] = (emulated.xmm[dest] & !mask) | (native_state.xmm[dest] & mask);
            }
            assert_eq!(
                describe_difference(&case, &native_state, &emulated)
                    .lines()
                    .count(),
                1,
                "{} case {n}: {}",
                case.text,
                describe_difference(&case, &native_state, &emulated)
            );
            assert_eq!(native_mem, emulated_mem, "{} case {n}", case.text);
        }
    }
    // The comparison saw results that differ in their low bits (else it checked nothing but special cases).
    assert!(
        approximated > 100,
        "{approximated} lanes differed from the host in their low bits"
    );
}

/// Why tandem's lane `got` is not an answer the SDM allows for input `x`, given the host's `want`; None if it is.
fn lane_disagreement(x: u32, want: u32, got: u32, sqrt: bool) -> Option<String> {
    let exponent = (x >> 23) & 0xff;
    let negative = x >> 31 == 1;
    let special = exponent == 0 || exponent == 0xff || (sqrt && negative);
    if special {
        return (want != got).then(|| "a special case differs".to_string());
    }
    let v = f64::from(f32::from_bits(x));
    let exact = if sqrt { 1.0 / v.sqrt() } else { 1.0 / v };
    let error = |bits: u32| ((f64::from(f32::from_bits(bits)) - exact) / exact).abs();
    let tiny = |bits: u32| bits & 0x7fff_ffff == 0;
    if tiny(want) || tiny(got) {
        // Near 2^-126 a processor may flush the result or not (SDM, RCPPS): only for inputs from 2^125 up.
        return (sqrt || exponent < 125 + 127)
            .then(|| "a zero result for an input below 2^125".to_string());
    }
    if error(want) > 1.5 / 4096.0 {
        return Some(format!(
            "the host is off by {} (the oracle is wrong)",
            error(want)
        ));
    }
    (error(got) > 1.0 / (1u64 << 23) as f64).then(|| format!("tandem is off by {}", error(got)))
}

/// A value near `target / a`, as the bits of format `f64_format` (binary64) or binary32, nudged a few units in the
/// last place either way so that `a * result` lands on both sides of `target`.
fn near_quotient(rng: &mut ChaCha8Rng, target: f64, a: f64, f64_format: bool) -> u64 {
    let nudge = rng.random_range(-3i64..=3);
    if f64_format {
        ((target / a).to_bits() as i64 + nudge) as u64
    } else {
        (((target / a) as f32).to_bits() as i64 + nudge) as u32 as u64
    }
}

/// The underflow threshold is where x86 differs from other IEEE implementations (tininess after rounding, FTZ,
/// UE only when inexact), and random operands rarely reach the band just below the smallest normal: these cases
/// aim products, quotients and narrowing conversions at it under every rounding mode, with and without FTZ.
#[test]
fn results_at_the_underflow_threshold_match_the_host_cpu() {
    let mut rng = ChaCha8Rng::seed_from_u64(SEED ^ 0x7417);
    let mut native = Native::new();
    let mut failures = Vec::new();
    let codes = [
        Code::Mulss_xmm_xmmm32,
        Code::Mulps_xmm_xmmm128,
        Code::Mulsd_xmm_xmmm64,
        Code::Mulpd_xmm_xmmm128,
        Code::Divss_xmm_xmmm32,
        Code::Divsd_xmm_xmmm64,
        Code::Cvtsd2ss_xmm_xmmm64,
        Code::Cvtpd2ps_xmm_xmmm128,
    ];
    let cases_per_code = 300;
    for &code in &codes {
        let name = format!("{code:?}");
        let double = name.contains("sd_") || name.contains("pd_") && !name.starts_with("Cvt");
        let narrowing = name.starts_with("Cvt");
        let divide = name.starts_with("Div");
        for n in 0..cases_per_code {
            let mut state = State::default();
            let target = if double && !narrowing {
                f64::MIN_POSITIVE
            } else {
                f32::MIN_POSITIVE as f64
            };
            let (width, lanes) = if double || narrowing {
                (64, 2)
            } else {
                (32, 4)
            };
            for l in 0..lanes {
                let sign = rng.random::<bool>();
                let a_bits = if double {
                    (0x3ff0_0000_0000_0000u64 | rng.random::<u64>() >> 12) as u128
                } else {
                    (0x3f80_0000u32 | rng.random::<u32>() >> 9) as u128
                };
                let a = if double {
                    f64::from_bits(a_bits as u64)
                } else {
                    f32::from_bits(a_bits as u32) as f64
                };
                let b_bits = if narrowing {
                    let t = target * (1.0 + (rng.random_range(-64i64..64) as f64) * 2f64.powi(-26));
                    (t.to_bits() ^ (rng.random::<u64>() >> 40)) as u128
                } else if divide {
                    // b = a / target, so that a / b is near target.
                    near_quotient(&mut rng, 1.0 / target, 1.0 / a, double) as u128
                } else {
                    near_quotient(&mut rng, target, a, double) as u128
                };
                let sign_bit = (sign as u128) << (width - 1);
                state.xmm[0] |= a_bits << (l * width);
                state.xmm[1] |= (b_bits | sign_bit) << (l * width);
            }
            state.mxcsr = 0x1f80 | (rng.random::<u32>() & 0xe000);
            state.rflags = 0x202;
            let instr = Instruction::with2(code, Register::XMM0, Register::XMM1).unwrap();
            let mut encoder = Encoder::new(64);
            encoder.encode(&instr, CODE).unwrap();
            let case = Case {
                insn: encoder.take_buffer(),
                text: name.clone(),
                state,
                mem: [0; MEM_BYTES],
                rdi_is_memory: false,
            };
            let (native_state, _) = run_native(&mut native, &case);
            let native_state = state_without_scratch(native_state);
            let (emulated, _) = run_emulated(&case).unwrap();
            let d = describe_difference(&case, &native_state, &emulated);
            if d.lines().count() > 1 && failures.len() < 20 {
                failures.push(format!("{name} case {n}:\n{d}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "underflow cases differ from the host CPU (seed {:#x}):\n{}\nreproduce with: \
         cargo test -p tandem-emulator results_at_the_underflow_threshold_match_the_host_cpu",
        SEED ^ 0x7417,
        failures.join("\n")
    );
}

/// Alignment, walked over every form: with a misaligned memory operand, an instruction with a 16-byte memory
/// operand raises #GP and changes nothing, unless it is one of the explicitly unaligned loads and stores; every
/// other form runs. (Emulator only: natively the #GP would be a signal.)
#[test]
fn misaligned_16_byte_operands_fault_except_on_the_unaligned_moves() {
    let unaligned = [
        Code::Movups_xmm_xmmm128,
        Code::Movups_xmmm128_xmm,
        Code::Movupd_xmm_xmmm128,
        Code::Movupd_xmmm128_xmm,
        Code::Movdqu_xmm_xmmm128,
        Code::Movdqu_xmmm128_xmm,
        Code::Lddqu_xmm_m128,
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(SEED ^ 0xa11);
    let mut checked_count = 0;
    for code in sse_codes() {
        let op = code.op_code();
        let has_memory = (0..op.op_count()).any(|k| {
            matches!(
                op.op_kind(k),
                K::xmm_or_mem | K::mem | K::r32_or_mem | K::r64_or_mem
            )
        });
        if !has_memory {
            continue;
        }
        let case = random_case_with(&mut rng, code, true, true);
        let mut decoder = Decoder::with_ip(64, &case.insn, CODE, DecoderOptions::NONE);
        let size_bytes = decoder.decode().memory_size().size();
        let must_fault = size_bytes == 16 && !unaligned.contains(&code);
        let (exit, state, mem) = emulate(&case);
        if must_fault {
            assert_eq!(
                exit,
                Exit::Exception(Exception::GeneralProtection),
                "{}",
                case.text
            );
            let mut before = state_without_scratch(case.state);
            before.gpr[7] = if case.rdi_is_memory { 0 } else { before.gpr[7] };
            let mut after = state;
            after.gpr[7] = if case.rdi_is_memory { 0 } else { after.gpr[7] };
            assert_eq!(after, before, "{}: #GP changed the state", case.text);
            assert_eq!(mem, case.mem, "{}: #GP changed memory", case.text);
        } else {
            assert_eq!(exit, Exit::BudgetExhausted, "{}", case.text);
        }
        checked_count += 1;
    }
    assert!(
        checked_count > 100,
        "only {checked_count} forms with memory operands"
    );
}
