//! Exact counting: `Machine::run(budget)` stops after exactly `budget` retired instructions, whatever the budget,
//! and the state there is the state single-stepping reaches after the same number of instructions.
//!
//! How REP iterations count (cpu/mod.rs): each iteration of a REP-prefixed string instruction is one retired
//! instruction, and a REP instruction whose count is zero retires as one. When a budget ends mid-way, rip stays on
//! the string instruction with rcx, rsi and rdi showing the iterations done, exactly as after an interrupt on
//! hardware (SDM Vol. 1, 7.3.9.2), and the next run resumes it. `rep_iterations_count_one_each` pins this down.
//!
//! The program under test mixes everything that makes counting hard: REP string instructions with counts in the
//! thousands (forward and backward, MOVS, STOS, LODS, CMPS, SCAS, a zero count), a loop with calls and returns,
//! memory writes, and blocks cut in every place by random budgets. Budgets come from a seeded stream; a failure
//! prints the seed and the budget.

mod common;

use common::*;
use iced_x86::code_asm::*;
use rand::Rng;
use tandem_emulator::cpu::{named_stream, Exception, Exit, Machine, RCX, RDI, RSI};

const START: u64 = CODE_BASE + 0x100;
/// Random budgets per run of the test (plus the edges 0, 1, total - 1, total, total + 1).
const BUDGETS_COUNT: usize = 96;
/// Guard for the reference run: the program retires far fewer instructions than this.
const PROGRAM_INSNS_MAX: u64 = 1_000_000;

fn program() -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    let mut top = a.create_label();
    let mut func = a.create_label();
    let mut after = a.create_label();
    // 3000 single-byte copies across a page boundary of the destination.
    a.mov(ecx, 3000u32).unwrap();
    a.mov(rsi, DATA_BASE).unwrap();
    a.mov(rdi, DATA_BASE + 0x2000).unwrap();
    a.rep().movsb().unwrap();
    // 500 quadword stores.
    a.mov(ecx, 500u32).unwrap();
    a.mov(rax, 0x1122_3344_5566_7788u64).unwrap();
    a.mov(rdi, DATA_BASE + 0x1000).unwrap();
    a.rep().stosq().unwrap();
    // A zero count retires once.
    a.xor(ecx, ecx).unwrap();
    a.rep().movsb().unwrap();
    // A loop with calls, returns and memory writes.
    a.mov(r8, DATA_BASE + 0x3000).unwrap();
    a.mov(ebx, 300u32).unwrap();
    a.set_label(&mut top).unwrap();
    a.call(func).unwrap();
    a.dec(ebx).unwrap();
    a.jnz(top).unwrap();
    // 1000 equal bytes compared (the copy above made them equal).
    a.mov(ecx, 1000u32).unwrap();
    a.mov(rsi, DATA_BASE).unwrap();
    a.mov(rdi, DATA_BASE + 0x2000).unwrap();
    a.repe().cmpsb().unwrap();
    // Backwards: 700 loads, then a search that stops where the byte is found.
    a.std().unwrap();
    a.mov(ecx, 700u32).unwrap();
    a.mov(rsi, DATA_BASE + 0xfff).unwrap();
    a.rep().lodsb().unwrap();
    a.cld().unwrap();
    a.mov(ecx, 2000u32).unwrap();
    a.mov(rdi, DATA_BASE + 0x1000).unwrap();
    a.mov(al, 0x5au32).unwrap();
    a.repne().scasb().unwrap();
    a.jmp(after).unwrap();
    a.set_label(&mut func).unwrap();
    a.add(qword_ptr(r8 + rbx * 8), rbx).unwrap();
    a.xor(rax, rbx).unwrap();
    a.ret().unwrap();
    a.set_label(&mut after).unwrap();
    a.hlt().unwrap();
    a.assemble(START).unwrap()
}

fn fresh_machine() -> Machine {
    let mut image = Image::new();
    image.write(START, &program());
    // Data bytes: a pattern with the searched byte 0x5a first at DATA_BASE + 0x1000 + 1234 (after the stores,
    // which cover DATA_BASE + 0x1000 .. + 4000, it is found in the stored pattern or not at all; either way the
    // count is exact).
    for (k, b) in image.data.iter_mut().enumerate() {
        *b = (k as u8).wrapping_mul(7) ^ 0x11;
    }
    image.data[0x1000 + 1234] = 0x5a;
    let state = State {
        rip: START,
        gpr: {
            let mut g = [0u64; 16];
            g[4] = STACK_BASE + STACK_SIZE - 0x100;
            g
        },
        ..State::default()
    };
    machine_with(&image, &state)
}

/// What a stop looks like: the exit, the registers, icount and a digest of memory.
fn snapshot(m: &Machine) -> (State, u64, u64) {
    (tandem_state(m), m.cpu.icount, m.cpu.state_hash())
}

#[test]
fn run_stops_exactly_where_single_stepping_is() {
    let seed: u64 = std::env::var("TANDEM_COUNT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0xc0_417);
    // Reference: single-step to the end to learn the total.
    let mut reference = fresh_machine();
    let end_exit = step_n(&mut reference, PROGRAM_INSNS_MAX);
    assert_eq!(
        end_exit,
        Exit::Exception(Exception::GeneralProtection),
        "the program ends at its HLT"
    );
    let total = reference.cpu.icount;
    assert!(total > 8000, "the program retires {total} instructions");

    let mut rng = named_stream(seed, "exact_counting/budgets");
    let mut budgets: Vec<u64> = (0..BUDGETS_COUNT)
        .map(|_| rng.random_range(0..=total + 1))
        .collect();
    budgets.extend([0, 1, total - 1, total, total + 1]);
    budgets.sort_unstable();
    budgets.dedup();

    // Single-step a second reference machine through the sorted budgets, comparing each stop with a fresh
    // machine that ran the whole budget in one `run`.
    let mut stepper = fresh_machine();
    let mut chained = fresh_machine();
    for &budget in &budgets {
        let target = budget.min(total);
        let mut step_exit = Exit::BudgetExhausted;
        while stepper.cpu.icount < target {
            step_exit = stepper.step();
            assert_eq!(step_exit, Exit::BudgetExhausted, "stepping stopped early");
        }
        if budget > total {
            step_exit = stepper.step();
        }
        let mut one_run = fresh_machine();
        let run_exit = one_run.run(budget);
        let expected_exit = if budget > total {
            Exit::Exception(Exception::GeneralProtection)
        } else {
            Exit::BudgetExhausted
        };
        assert_eq!(run_exit, expected_exit, "run({budget}) (seed {seed})");
        if budget > total {
            assert_eq!(step_exit, expected_exit);
        }
        let (s_state, s_icount, s_hash) = snapshot(&stepper);
        let (r_state, r_icount, r_hash) = snapshot(&one_run);
        assert_eq!(
            r_icount, target,
            "run({budget}) retired {r_icount} (seed {seed})"
        );
        assert_eq!(
            r_state,
            s_state,
            "run({budget}) differs from {target} single steps (seed {seed}):\n{}",
            state_diff(&r_state, &s_state, !0).join("\n")
        );
        assert_eq!(r_hash, s_hash, "memory after run({budget}) (seed {seed})");

        // The same stop reached by runs of the budget differences, resuming wherever the last one stopped
        // (mid-block and mid-REP included).
        let delta = budget - chained.cpu.icount.min(budget);
        let chained_exit = chained.run(delta);
        if budget <= total {
            assert_eq!(chained_exit, Exit::BudgetExhausted);
        }
        assert_eq!(
            snapshot(&chained),
            (s_state, s_icount, s_hash),
            "chained runs to {budget} (seed {seed})"
        );
    }
}

#[test]
fn rep_iterations_count_one_each() {
    let code = {
        let mut a = CodeAssembler::new(64).unwrap();
        a.rep().movsb().unwrap();
        a.rep().stosb().unwrap();
        a.hlt().unwrap();
        a.assemble(START).unwrap()
    };
    let mut image = Image::new();
    image.write(START, &code);
    let movsb_len = 2; // F3 A4
    let mut state = State {
        rip: START,
        ..State::default()
    };
    state.gpr[RCX] = 10;
    state.gpr[RSI] = DATA_BASE;
    state.gpr[RDI] = DATA_BASE + 0x100;

    // Four iterations: rip stays on REP MOVSB, the registers show four done.
    let mut m = machine_with(&image, &state);
    assert_eq!(m.run(4), Exit::BudgetExhausted);
    assert_eq!(m.cpu.icount, 4);
    assert_eq!(m.cpu.regs.rip, START);
    assert_eq!(m.cpu.regs.gpr[RCX], 6);
    assert_eq!(m.cpu.regs.gpr[RSI], DATA_BASE + 4);
    assert_eq!(m.cpu.regs.gpr[RDI], DATA_BASE + 0x104);
    // The other six, and rip moves on exactly when the last one retires.
    assert_eq!(m.run(6), Exit::BudgetExhausted);
    assert_eq!(
        (m.cpu.icount, m.cpu.regs.rip, m.cpu.regs.gpr[RCX]),
        (10, START + movsb_len, 0)
    );
    // REP STOSB with rcx = 0 retires as one instruction.
    assert_eq!(m.run(1), Exit::BudgetExhausted);
    assert_eq!((m.cpu.icount, m.cpu.regs.rip), (11, START + 2 * movsb_len));
    assert_eq!(m.run(1), Exit::Exception(Exception::GeneralProtection));
    assert_eq!(m.cpu.icount, 11, "the faulting HLT does not retire");
}
