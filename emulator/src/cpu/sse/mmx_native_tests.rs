//! The native oracle for the MMX forms: every registered form with an `mm` operand (and EMMS) runs from the same
//! random state on the host CPU and in the emulator, and the whole x87 register file (the eight 80-bit registers,
//! so the MMX values and the all-ones exponent a write leaves), the status word (TOP), the tag word as FNSAVE
//! reports it, the XMM and general-purpose registers and the memory operand's bytes must agree bit for bit.
//!
//! How: as in native_tests.rs, iced encodes the instruction into a harness in an executable page. The harness loads
//! MM0..MM7 with MOVQ (which leaves TOP 0 and every register tagged valid: the emulator starts from the same
//! state through `X87::set_mm`), runs the instruction, and saves the x87 state with FNSAVE, which also
//! reinitialises the host's FPU for the code after it. The pending-#MF path is not reachable here (the host would
//! deliver a signal); the unit tests in mmx.rs cover it.

use crate::cpu::testutil::{machine_with, CODE, DATA};
use crate::cpu::{implemented_codes, Exit};
use iced_x86::code_asm::*;
use iced_x86::{
    Code, Decoder, DecoderOptions, Encoder, EncodingKind, Formatter, Instruction, IntelFormatter,
    MemoryOperand, OpCodeOperandKind as K, Register,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SEED: u64 = 0x4d4d_5801;
const CASES_PER_FORM: usize = 40;
const MEM_BYTES: usize = 64;
/// The FNSAVE image: the 28-byte environment, then ST(0)..ST(7) in 10 bytes each.
const SAVE_BYTES: usize = 108;

#[repr(C, align(16))]
#[derive(Clone, Copy, Debug, PartialEq)]
struct State {
    xmm: [u128; 16],
    gpr: [u64; 16],
    mm: [u64; 8],
    save: [u8; SAVE_BYTES],
    pad: [u8; 4],
}

impl Default for State {
    fn default() -> Self {
        State {
            xmm: [0; 16],
            gpr: [0; 16],
            mm: [0; 8],
            save: [0; SAVE_BYTES],
            pad: [0; 4],
        }
    }
}

const XMM_OFFSET: i32 = 0;
const GPR_OFFSET: i32 = 256;
const MM_OFFSET: i32 = 384;
const SAVE_OFFSET: i32 = 448;

/// General-purpose registers an operand may name: not rsp, rbx (the memory base) or r15 (the harness's).
const OPERAND_GPRS: [usize; 12] = [0, 1, 2, 5, 6, 7, 8, 9, 10, 11, 12, 13];

fn harness(insn: &[u8], ip: u64) -> Vec<u8> {
    let xmms = [
        xmm0, xmm1, xmm2, xmm3, xmm4, xmm5, xmm6, xmm7, xmm8, xmm9, xmm10, xmm11, xmm12, xmm13,
        xmm14, xmm15,
    ];
    let mms = [mm0, mm1, mm2, mm3, mm4, mm5, mm6, mm7];
    let gprs = [
        rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15,
    ];
    let mut a = CodeAssembler::new(64).unwrap();
    for r in [rbx, rbp, r12, r13, r14, r15] {
        a.push(r).unwrap();
    }
    a.mov(r15, rdi).unwrap();
    for (k, x) in xmms.iter().enumerate() {
        a.movdqu(*x, xmmword_ptr(r15 + XMM_OFFSET + 16 * k as i32))
            .unwrap();
    }
    for (k, m) in mms.iter().enumerate() {
        a.movq(*m, qword_ptr(r15 + MM_OFFSET + 8 * k as i32))
            .unwrap();
    }
    for (k, g) in gprs.iter().enumerate() {
        if k != 4 && k != 15 {
            a.mov(*g, qword_ptr(r15 + GPR_OFFSET + 8 * k as i32))
                .unwrap();
        }
    }
    a.db(insn).unwrap();
    a.fnsave(ptr(r15 + SAVE_OFFSET)).unwrap();
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
    for r in [r15, r14, r13, r12, rbp, rbx] {
        a.pop(r).unwrap();
    }
    a.ret().unwrap();
    a.assemble(ip).unwrap()
}

/// Runs `insn` on the host from `state`, which it updates.
fn run_native(insn: &[u8], state: &mut State, mem: &mut [u8; MEM_BYTES]) {
    let len = 4096;
    // SAFETY: an anonymous private mapping with no address hint; checked below and unmapped at the end.
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
    assert_ne!(page, libc::MAP_FAILED);
    let code = harness(insn, page as u64);
    assert!(code.len() <= len);
    state.gpr[3] = mem.as_mut_ptr() as u64;
    // SAFETY: the page is ours and large enough; the harness is a complete C-ABI function that saves and restores
    // the callee-saved registers, leaves the FPU initialised (FNSAVE) and touches only `*state` and `mem` (rbx).
    unsafe {
        std::ptr::copy_nonoverlapping(code.as_ptr(), page as *mut u8, code.len());
        let f: extern "C" fn(*mut State) = std::mem::transmute(page);
        f(state as *mut State);
        libc::munmap(page, len);
    }
}

/// The emulator's x87 state as FNSAVE lays it out, the fields the comparison uses: control, status and tag words
/// (the instruction and operand pointers are left 0 on both sides), then ST(0)..ST(7).
fn emulated_save(x87: &crate::cpu::X87) -> [u8; SAVE_BYTES] {
    let mut s = [0u8; SAVE_BYTES];
    s[0..2].copy_from_slice(&x87.control.to_le_bytes());
    s[4..6].copy_from_slice(&x87.status_word().to_le_bytes());
    s[8..10].copy_from_slice(&x87.tag.to_le_bytes());
    for k in 0..8 {
        let r = x87.st(k);
        s[28 + 10 * k..36 + 10 * k].copy_from_slice(&r.significand.to_le_bytes());
        s[36 + 10 * k..38 + 10 * k].copy_from_slice(&r.sign_exponent.to_le_bytes());
    }
    s
}

/// Keeps the compared parts of a host FNSAVE image (see `emulated_save`).
fn compared_save(save: &[u8; SAVE_BYTES]) -> [u8; SAVE_BYTES] {
    let mut s = *save;
    s[2..4].fill(0);
    s[6..8].fill(0);
    s[10..28].fill(0);
    s
}

fn run_emulated(insn: &[u8], input: &State, mem: &mut [u8; MEM_BYTES]) -> Result<State, String> {
    let mut code = insn.to_vec();
    code.push(0xf4);
    let mut m = machine_with(&code);
    let stack_pointer = m.cpu.regs.gpr[4];
    m.cpu.regs.xmm = input.xmm;
    m.cpu.regs.gpr = input.gpr;
    m.cpu.regs.gpr[4] = stack_pointer;
    m.cpu.regs.gpr[3] = DATA;
    for k in 0..8 {
        m.cpu.regs.x87.set_mm(k, input.mm[k]);
    }
    m.cpu.mem.write_bytes(DATA, mem).unwrap();
    let exit = m.step();
    if exit != Exit::BudgetExhausted {
        return Err(format!("emulator stopped with {exit:?}"));
    }
    m.cpu.mem.read_bytes(DATA, mem).unwrap();
    let mut out = *input;
    out.xmm = m.cpu.regs.xmm;
    out.gpr = m.cpu.regs.gpr;
    out.save = emulated_save(&m.cpu.regs.x87);
    Ok(out)
}

/// The registered MMX forms: legacy encodings with an `mm` operand, and EMMS.
fn mmx_codes() -> Vec<Code> {
    implemented_codes()
        .into_iter()
        .filter(|c| {
            let op = c.op_code();
            op.encoding() == EncodingKind::Legacy
                && ((0..op.op_count())
                    .any(|k| matches!(op.op_kind(k), K::mm_reg | K::mm_rm | K::mm_or_mem))
                    || *c == Code::Emms)
        })
        .collect()
}

fn host_supports(code: Code) -> bool {
    use iced_x86::CpuidFeature as F;
    code.cpuid_features().iter().all(|f| match f {
        F::MMX | F::SSE | F::SSE2 | F::X64 | F::INTEL386 => true,
        F::SSSE3 => std::arch::is_x86_feature_detected!("ssse3"),
        _ => false,
    })
}

/// A 64-bit value: random, or bytes from the saturation edges, or a small shift count.
fn edge_u64(rng: &mut ChaCha8Rng) -> u64 {
    match rng.random_range(0..4) {
        0 => rng.random_range(0..70),
        1 => {
            let mut v = 0u64;
            for l in 0..8 {
                let b: u8 = [0, 0x7f, 0x80, 0xff, 1, rng.random()][rng.random_range(0..6)];
                v |= (b as u64) << (8 * l);
            }
            v
        }
        _ => rng.random(),
    }
}

struct Case {
    insn: Vec<u8>,
    text: String,
    state: State,
    mem: [u8; MEM_BYTES],
}

fn random_case(rng: &mut ChaCha8Rng, code: Code) -> Case {
    let op = code.op_code();
    let mut state = State::default();
    for x in state.xmm.iter_mut() {
        *x = rng.random();
    }
    for g in state.gpr.iter_mut() {
        *g = edge_u64(rng);
    }
    for m in state.mm.iter_mut() {
        *m = edge_u64(rng);
    }
    let mut mem = [0u8; MEM_BYTES];
    for chunk in mem.chunks_mut(8) {
        chunk.copy_from_slice(&edge_u64(rng).to_le_bytes());
    }
    // MMX memory operands need no alignment: any offset that keeps 8 bytes inside the region.
    let memory = MemoryOperand::with_base_displ(Register::RBX, rng.random_range(0..48));
    let mut ops: Vec<Operand> = Vec::new();
    for k in 0..op.op_count() {
        let use_mem = rng.random_range(0..3) == 0;
        let gpr = OPERAND_GPRS[rng.random_range(0..OPERAND_GPRS.len())] as u32;
        let mm = Register::MM0 + rng.random_range(0..8u32);
        ops.push(match op.op_kind(k) {
            K::mm_reg | K::mm_rm => Operand::Reg(mm),
            K::mm_or_mem if !use_mem => Operand::Reg(mm),
            K::mm_or_mem | K::mem => Operand::Mem(memory),
            K::xmm_reg | K::xmm_rm => Operand::Reg(Register::XMM0 + rng.random_range(0..16u32)),
            K::r32_or_mem | K::r64_or_mem if use_mem => Operand::Mem(memory),
            K::r32_or_mem | K::r32_reg | K::r32_rm => Operand::Reg(Register::EAX + gpr),
            K::r64_or_mem | K::r64_reg | K::r64_rm => Operand::Reg(Register::RAX + gpr),
            K::imm8 => Operand::Imm(match rng.random_range(0..3) {
                0 => rng.random_range(0..256),
                _ => rng.random_range(0..20),
            }),
            other => panic!("{code:?}: operand kind {other:?} not generated"),
        });
    }
    let instr = build(code, &ops);
    let mut encoder = Encoder::new(64);
    encoder
        .encode(&instr, CODE)
        .unwrap_or_else(|e| panic!("{code:?}: {e}"));
    let insn = encoder.take_buffer();
    let decoded = Decoder::with_ip(64, &insn, CODE, DecoderOptions::NONE).decode();
    assert_eq!(decoded.code(), code, "encoding round trip");
    let mut text = String::new();
    IntelFormatter::new().format(&decoded, &mut text);
    Case {
        insn,
        text,
        state,
        mem,
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
        [] => Instruction::with(code),
        [Reg(a), Reg(b)] => Instruction::with2(code, *a, *b).unwrap(),
        [Reg(a), Mem(b)] => Instruction::with2(code, *a, *b).unwrap(),
        [Mem(a), Reg(b)] => Instruction::with2(code, *a, *b).unwrap(),
        [Reg(a), Imm(b)] => Instruction::with2(code, *a, *b).unwrap(),
        [Reg(a), Reg(b), Imm(c)] => Instruction::with3(code, *a, *b, *c).unwrap(),
        [Reg(a), Mem(b), Imm(c)] => Instruction::with3(code, *a, *b, *c).unwrap(),
        _ => panic!("{code:?}: no builder for this operand shape"),
    }
}

/// Clears what the runs may differ in: rsp, rbx (the memory base), r15 (the harness's), and the parts of the
/// FNSAVE image not compared.
fn comparable(mut s: State) -> State {
    s.gpr[3] = 0;
    s.gpr[4] = 0;
    s.gpr[15] = 0;
    s.save = compared_save(&s.save);
    s
}

#[test]
fn every_mmx_form_matches_the_host_cpu() {
    let codes = mmx_codes();
    assert!(
        codes.len() >= 90,
        "expected the MMX forms to be registered, found {}",
        codes.len()
    );
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let mut failures = Vec::new();
    let mut failing = std::collections::BTreeSet::new();
    let mut cases = 0;
    for &code in &codes {
        if !host_supports(code) {
            continue;
        }
        for n in 0..CASES_PER_FORM {
            let case = random_case(&mut rng, code);
            cases += 1;
            let (mut native, mut native_mem) = (case.state, case.mem);
            run_native(&case.insn, &mut native, &mut native_mem);
            let mut emulated_mem = case.mem;
            let report = match run_emulated(&case.insn, &case.state, &mut emulated_mem) {
                Err(e) => Some(e),
                Ok(emulated) => {
                    let (native, emulated) = (comparable(native), comparable(emulated));
                    (native != emulated || native_mem != emulated_mem).then(|| {
                        format!(
                            "mm in {:x?}\n  native   {:x?} {:02x?}\n  emulated {:x?} {:02x?}\n  native mem {:02x?}\n  emulated mem {:02x?}",
                            case.state.mm,
                            native.gpr,
                            native.save,
                            emulated.gpr,
                            emulated.save,
                            native_mem,
                            emulated_mem
                        )
                    })
                }
            };
            if let Some(r) = report {
                failing.insert(format!("{code:?}"));
                if failures.len() < 10 {
                    failures.push(format!("{code:?} case {n}: {}\n  {r}", case.text));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} MMX forms differ from the host CPU ({cases} cases, seed {SEED:#x}): {failing:?}\n{}",
        failing.len(),
        failures.join("\n")
    );
    eprintln!(
        "{} MMX forms, {cases} native differential cases",
        codes.len()
    );
}
