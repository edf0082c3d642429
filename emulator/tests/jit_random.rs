//! The block compiler against the interpreter on random loops: each case is a seeded random loop body of integer
//! instructions (every form the compiler runs natively, some it hands to the interpreter, flag producers and
//! consumers, memory operands that straddle a page, a conditional branch inside the body) run 40 times, which is
//! past the compile threshold. The final registers, rflags, memory and instruction count must equal the
//! interpreter's, and so must the state after a random budget (exact counting with compiled blocks).

mod common;

use common::*;
use iced_x86::{Code, Instruction, MemoryOperand, Register};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tandem_emulator::cpu::{Exit, Machine};

/// Registers the body may change: not rbx (the data pointer), r13 (the loop counter) or rsp.
const REGS: [usize; 13] = [0, 1, 2, 5, 6, 7, 8, 9, 10, 11, 12, 14, 15];

/// Register `n` (encoding order) at width `size` bytes; iced puts AH..BH before SPL..DIL among byte registers.
fn reg(n: usize, size: usize) -> Register {
    let n = n as u32;
    match size {
        8 => Register::RAX + n,
        4 => Register::EAX + n,
        2 => Register::AX + n,
        _ if n < 4 => Register::AL + n,
        _ if n < 8 => Register::SPL + (n - 4),
        _ => Register::R8L + (n - 8),
    }
}

const SETCC: [Code; 16] = {
    use Code::*;
    [
        Seto_rm8, Setno_rm8, Setb_rm8, Setae_rm8, Sete_rm8, Setne_rm8, Setbe_rm8, Seta_rm8,
        Sets_rm8, Setns_rm8, Setp_rm8, Setnp_rm8, Setl_rm8, Setge_rm8, Setle_rm8, Setg_rm8,
    ]
};
const CMOV32: [Code; 16] = {
    use Code::*;
    [
        Cmovo_r32_rm32,
        Cmovno_r32_rm32,
        Cmovb_r32_rm32,
        Cmovae_r32_rm32,
        Cmove_r32_rm32,
        Cmovne_r32_rm32,
        Cmovbe_r32_rm32,
        Cmova_r32_rm32,
        Cmovs_r32_rm32,
        Cmovns_r32_rm32,
        Cmovp_r32_rm32,
        Cmovnp_r32_rm32,
        Cmovl_r32_rm32,
        Cmovge_r32_rm32,
        Cmovle_r32_rm32,
        Cmovg_r32_rm32,
    ]
};
const CMOV64: [Code; 16] = {
    use Code::*;
    [
        Cmovo_r64_rm64,
        Cmovno_r64_rm64,
        Cmovb_r64_rm64,
        Cmovae_r64_rm64,
        Cmove_r64_rm64,
        Cmovne_r64_rm64,
        Cmovbe_r64_rm64,
        Cmova_r64_rm64,
        Cmovs_r64_rm64,
        Cmovns_r64_rm64,
        Cmovp_r64_rm64,
        Cmovnp_r64_rm64,
        Cmovl_r64_rm64,
        Cmovge_r64_rm64,
        Cmovle_r64_rm64,
        Cmovg_r64_rm64,
    ]
};

/// Codes by operand size (1, 2, 4, 8 bytes) for one mnemonic's forms.
struct Forms {
    rm_r: [Code; 4],
    r_rm: [Code; 4],
    rm_imm: [Code; 4],
}

fn alu_forms() -> Vec<Forms> {
    use Code::*;
    vec![
        Forms {
            rm_r: [Add_rm8_r8, Add_rm16_r16, Add_rm32_r32, Add_rm64_r64],
            r_rm: [Add_r8_rm8, Add_r16_rm16, Add_r32_rm32, Add_r64_rm64],
            rm_imm: [Add_rm8_imm8, Add_rm16_imm16, Add_rm32_imm32, Add_rm64_imm32],
        },
        Forms {
            rm_r: [Sub_rm8_r8, Sub_rm16_r16, Sub_rm32_r32, Sub_rm64_r64],
            r_rm: [Sub_r8_rm8, Sub_r16_rm16, Sub_r32_rm32, Sub_r64_rm64],
            rm_imm: [Sub_rm8_imm8, Sub_rm16_imm16, Sub_rm32_imm32, Sub_rm64_imm32],
        },
        Forms {
            rm_r: [And_rm8_r8, And_rm16_r16, And_rm32_r32, And_rm64_r64],
            r_rm: [And_r8_rm8, And_r16_rm16, And_r32_rm32, And_r64_rm64],
            rm_imm: [And_rm8_imm8, And_rm16_imm16, And_rm32_imm32, And_rm64_imm32],
        },
        Forms {
            rm_r: [Or_rm8_r8, Or_rm16_r16, Or_rm32_r32, Or_rm64_r64],
            r_rm: [Or_r8_rm8, Or_r16_rm16, Or_r32_rm32, Or_r64_rm64],
            rm_imm: [Or_rm8_imm8, Or_rm16_imm16, Or_rm32_imm32, Or_rm64_imm32],
        },
        Forms {
            rm_r: [Xor_rm8_r8, Xor_rm16_r16, Xor_rm32_r32, Xor_rm64_r64],
            r_rm: [Xor_r8_rm8, Xor_r16_rm16, Xor_r32_rm32, Xor_r64_rm64],
            rm_imm: [Xor_rm8_imm8, Xor_rm16_imm16, Xor_rm32_imm32, Xor_rm64_imm32],
        },
        Forms {
            rm_r: [Cmp_rm8_r8, Cmp_rm16_r16, Cmp_rm32_r32, Cmp_rm64_r64],
            r_rm: [Cmp_r8_rm8, Cmp_r16_rm16, Cmp_r32_rm32, Cmp_r64_rm64],
            rm_imm: [Cmp_rm8_imm8, Cmp_rm16_imm16, Cmp_rm32_imm32, Cmp_rm64_imm32],
        },
        Forms {
            rm_r: [Adc_rm8_r8, Adc_rm16_r16, Adc_rm32_r32, Adc_rm64_r64],
            r_rm: [Adc_r8_rm8, Adc_r16_rm16, Adc_r32_rm32, Adc_r64_rm64],
            rm_imm: [Adc_rm8_imm8, Adc_rm16_imm16, Adc_rm32_imm32, Adc_rm64_imm32],
        },
        Forms {
            rm_r: [Sbb_rm8_r8, Sbb_rm16_r16, Sbb_rm32_r32, Sbb_rm64_r64],
            r_rm: [Sbb_r8_rm8, Sbb_r16_rm16, Sbb_r32_rm32, Sbb_r64_rm64],
            rm_imm: [Sbb_rm8_imm8, Sbb_rm16_imm16, Sbb_rm32_imm32, Sbb_rm64_imm32],
        },
        Forms {
            rm_r: [Test_rm8_r8, Test_rm16_r16, Test_rm32_r32, Test_rm64_r64],
            r_rm: [Test_rm8_r8, Test_rm16_r16, Test_rm32_r32, Test_rm64_r64],
            rm_imm: [
                Test_rm8_imm8,
                Test_rm16_imm16,
                Test_rm32_imm32,
                Test_rm64_imm32,
            ],
        },
    ]
}

const SIZES: [usize; 4] = [1, 2, 4, 8];

/// A memory operand near the boundary between the second and third data pages (rbx points there).
fn mem(rng: &mut ChaCha8Rng) -> MemoryOperand {
    let disp = rng.random_range(-24i64..24);
    MemoryOperand::with_base_displ(Register::RBX, disp)
}

fn any_reg(rng: &mut ChaCha8Rng) -> usize {
    REGS[rng.random_range(0..REGS.len())]
}

/// One random instruction (or a short sequence) of the body.
fn random_instruction(rng: &mut ChaCha8Rng, out: &mut Vec<Instruction>) {
    use Code::*;
    let si = rng.random_range(0..4);
    let size = SIZES[si];
    let (a, b) = (any_reg(rng), any_reg(rng));
    let wide = rng.random::<i32>() >> rng.random_range(0..31);
    let imm = match size {
        1 => wide as i8 as i32,
        2 => wide as i16 as i32,
        _ => wide,
    };
    let i = match rng.random_range(0..24) {
        0..=5 => {
            let which = rng.random_range(0..9);
            let f = &alu_forms()[which];
            match rng.random_range(0..5) {
                0 => Instruction::with2(f.rm_r[si], reg(a, size), reg(b, size)).unwrap(),
                // TEST has no reg, r/m form: test r/m, reg instead.
                1 if which == 8 => Instruction::with2(f.rm_r[si], mem(rng), reg(a, size)).unwrap(),
                1 => Instruction::with2(f.r_rm[si], reg(a, size), mem(rng)).unwrap(),
                2 => Instruction::with2(f.rm_r[si], mem(rng), reg(b, size)).unwrap(),
                3 => Instruction::with2(f.rm_imm[si], reg(a, size), imm).unwrap(),
                _ => Instruction::with2(f.rm_imm[si], mem(rng), imm).unwrap(),
            }
        }
        6 => {
            let c = [
                [Inc_rm8, Inc_rm16, Inc_rm32, Inc_rm64],
                [Dec_rm8, Dec_rm16, Dec_rm32, Dec_rm64],
                [Neg_rm8, Neg_rm16, Neg_rm32, Neg_rm64],
                [Not_rm8, Not_rm16, Not_rm32, Not_rm64],
            ][rng.random_range(0..4)][si];
            if rng.random_bool(0.7) {
                Instruction::with1(c, reg(a, size)).unwrap()
            } else {
                Instruction::with1(c, mem(rng)).unwrap()
            }
        }
        7..=9 => {
            let forms = [
                [Shl_rm8_imm8, Shl_rm16_imm8, Shl_rm32_imm8, Shl_rm64_imm8],
                [Shr_rm8_imm8, Shr_rm16_imm8, Shr_rm32_imm8, Shr_rm64_imm8],
                [Sar_rm8_imm8, Sar_rm16_imm8, Sar_rm32_imm8, Sar_rm64_imm8],
                [Rol_rm8_imm8, Rol_rm16_imm8, Rol_rm32_imm8, Rol_rm64_imm8],
                [Ror_rm8_imm8, Ror_rm16_imm8, Ror_rm32_imm8, Ror_rm64_imm8],
            ];
            let cl_forms = [
                [Shl_rm8_CL, Shl_rm16_CL, Shl_rm32_CL, Shl_rm64_CL],
                [Shr_rm8_CL, Shr_rm16_CL, Shr_rm32_CL, Shr_rm64_CL],
                [Sar_rm8_CL, Sar_rm16_CL, Sar_rm32_CL, Sar_rm64_CL],
                [Rol_rm8_CL, Rol_rm16_CL, Rol_rm32_CL, Rol_rm64_CL],
                [Ror_rm8_CL, Ror_rm16_CL, Ror_rm32_CL, Ror_rm64_CL],
            ];
            let k = rng.random_range(0..5);
            let count = [0u32, 1, 2, 7, 8, 15, 16, 31, 32, 33, 63][rng.random_range(0..11)];
            match rng.random_range(0..4) {
                0 => Instruction::with2(cl_forms[k][si], reg(a, size), Register::CL).unwrap(),
                1 => Instruction::with2(forms[k][si], mem(rng), count).unwrap(),
                _ => Instruction::with2(forms[k][si], reg(a, size), count).unwrap(),
            }
        }
        10 => {
            let (c2, c3) = [
                (Imul_r16_rm16, Imul_r16_rm16_imm16),
                (Imul_r16_rm16, Imul_r16_rm16_imm16),
                (Imul_r32_rm32, Imul_r32_rm32_imm32),
                (Imul_r64_rm64, Imul_r64_rm64_imm32),
            ][si];
            let size = size.max(2);
            if rng.random_bool(0.5) {
                Instruction::with2(c2, reg(a, size), reg(b, size)).unwrap()
            } else {
                Instruction::with3(c3, reg(a, size), reg(b, size), wide & 0x7fff).unwrap()
            }
        }
        11..=13 => {
            let c = [Mov_rm8_r8, Mov_rm16_r16, Mov_rm32_r32, Mov_rm64_r64][si];
            let cr = [Mov_r8_rm8, Mov_r16_rm16, Mov_r32_rm32, Mov_r64_rm64][si];
            match rng.random_range(0..5) {
                0 => Instruction::with2(c, reg(a, size), reg(b, size)).unwrap(),
                1 => Instruction::with2(cr, reg(a, size), mem(rng)).unwrap(),
                2 => Instruction::with2(c, mem(rng), reg(b, size)).unwrap(),
                3 => Instruction::with2(Mov_r64_imm64, reg(a, 8), rng.random::<u64>()).unwrap(),
                _ => Instruction::with2(Mov_r32_imm32, reg(a, 4), wide as u32).unwrap(),
            }
        }
        14 => match rng.random_range(0..5) {
            0 => Instruction::with2(Movzx_r32_rm8, reg(a, 4), reg(b, 1)).unwrap(),
            1 => Instruction::with2(Movsx_r64_rm16, reg(a, 8), reg(b, 2)).unwrap(),
            2 => Instruction::with2(Movsxd_r64_rm32, reg(a, 8), reg(b, 4)).unwrap(),
            3 => Instruction::with2(Movzx_r32_rm16, reg(a, 4), mem(rng)).unwrap(),
            _ => Instruction::with2(Movsx_r32_rm8, reg(a, 4), mem(rng)).unwrap(),
        },
        15 => {
            let m = MemoryOperand::new(
                reg(b, 8),
                reg(any_reg(rng), 8),
                [1, 2, 4, 8][rng.random_range(0..4)],
                wide as i64,
                8,
                false,
                Register::None,
            );
            if rng.random_bool(0.5) {
                Instruction::with2(Lea_r64_m, reg(a, 8), m).unwrap()
            } else {
                Instruction::with2(Lea_r32_m, reg(a, 4), m).unwrap()
            }
        }
        16 => {
            let cc = rng.random_range(0..16);
            match rng.random_range(0..3) {
                0 => Instruction::with1(SETCC[cc], reg(a, 1)).unwrap(),
                1 => Instruction::with2(CMOV32[cc], reg(a, 4), reg(b, 4)).unwrap(),
                _ => Instruction::with2(CMOV64[cc], reg(a, 8), mem(rng)).unwrap(),
            }
        }
        17 => match rng.random_range(0..4) {
            0 => Instruction::with1(Bswap_r32, reg(a, 4)).unwrap(),
            1 => Instruction::with1(Bswap_r64, reg(a, 8)).unwrap(),
            2 => Instruction::with2(Xchg_rm64_r64, reg(a, 8), reg(b, 8)).unwrap(),
            _ => Instruction::with2(Xchg_rm32_r32, reg(a, 4), reg(b, 4)).unwrap(),
        },
        18 => {
            out.push(Instruction::with1(Push_r64, reg(a, 8)).unwrap());
            Instruction::with1(Pop_r64, reg(b, 8)).unwrap()
        }
        19 => [
            Instruction::with(Cdqe),
            Instruction::with(Cdq),
            Instruction::with(Cqo),
            Instruction::with(Cwde),
        ][rng.random_range(0..4)],
        // Forms the compiler leaves to the interpreter, between native ones.
        20 => {
            out.push(Instruction::with(Pushfq));
            Instruction::with1(Pop_r64, reg(a, 8)).unwrap()
        }
        21 => match rng.random_range(0..3) {
            0 => Instruction::with1(Mul_rm64, reg(a, 8)).unwrap(),
            1 => Instruction::with2(Bt_rm64_r64, reg(a, 8), reg(b, 8)).unwrap(),
            _ => Instruction::with2(Mov_r8_rm8, Register::AH, reg(b.min(3), 1)).unwrap(),
        },
        22 => Instruction::with2(Add_EAX_imm32, Register::EAX, wide).unwrap(),
        _ => Instruction::with2(Test_AL_imm8, Register::AL, wide as u8 as u32).unwrap(),
    };
    out.push(i);
}

/// Assembles the loop: setup, body (with a conditional forward branch in the middle), `dec r13; jnz`, hlt.
fn program(rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    use iced_x86::code_asm::*;
    a.mov(rbx, DATA_BASE + 0x2000).unwrap();
    a.mov(r13, 40u64).unwrap();
    let mut top = a.create_label();
    a.set_label(&mut top).unwrap();
    let n = rng.random_range(3..24);
    let branch_at = rng.random_range(0..n);
    let mut skip = a.create_label();
    for k in 0..n {
        let mut is = Vec::new();
        random_instruction(rng, &mut is);
        for i in is {
            a.add_instruction(i).unwrap();
        }
        if k == branch_at {
            match rng.random_range(0..3) {
                0 => a.jc(skip).unwrap(),
                1 => a.jle(skip).unwrap(),
                _ => a.jp(skip).unwrap(),
            }
        }
    }
    a.set_label(&mut skip).unwrap();
    a.nop().unwrap();
    a.dec(r13).unwrap();
    a.jnz(top).unwrap();
    a.hlt().unwrap();
    a.assemble(CODE_BASE).unwrap()
}

fn machine(code: &[u8], seed: u64, jit: bool) -> Machine {
    let mut image = Image::new();
    image.code[..code.len()].copy_from_slice(code);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    rng.fill_bytes(&mut image.data);
    let mut state = State::default();
    for g in REGS {
        state.gpr[g] = rng.random::<u64>() >> rng.random_range(0..64);
    }
    state.gpr[4] = STACK_BASE + STACK_SIZE / 2;
    let mut m = machine_with(&image, &state);
    m.set_jit(jit);
    m
}

fn outcome(m: &mut Machine, budget: u64) -> (Exit, u64, State, Image) {
    let exit = m.run(budget);
    (exit, m.cpu.icount, tandem_state(m), tandem_image(m))
}

#[test]
fn compiled_random_loops_match_the_interpreter() {
    let mut failures = Vec::new();
    for seed in 0..400u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let code = program(&mut rng);
        let whole = outcome(&mut machine(&code, seed, true), 100_000);
        let reference = outcome(&mut machine(&code, seed, false), 100_000);
        if whole != reference {
            let diff = state_diff(&whole.2, &reference.2, !0);
            failures.push(format!(
                "seed {seed}: exit {:?} vs {:?}, icount {} vs {}, memory equal: {}\n{}",
                whole.0,
                reference.0,
                whole.1,
                reference.1,
                whole.3.data == reference.3.data && whole.3.stack == reference.3.stack,
                diff.join("\n")
            ));
            continue;
        }
        // Stopped by the budget somewhere inside the loop, after blocks were compiled.
        let budget = rng.random_range(1..=reference.1.max(1));
        let cut = outcome(&mut machine(&code, seed, true), budget);
        let cut_reference = outcome(&mut machine(&code, seed, false), budget);
        if cut != cut_reference {
            failures.push(format!(
                "seed {seed}, budget {budget}: icount {} vs {}\n{}",
                cut.1,
                cut_reference.1,
                state_diff(&cut.2, &cut_reference.2, !0).join("\n")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases differ:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
