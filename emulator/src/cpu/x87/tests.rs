//! Tests of the x87 handlers: hand-checked programs for the state instructions and the exception model, and a
//! native differential test that runs the same instruction bytes on the host's x87 and in the emulator, from random
//! operands (edge values of every class), random control words (precision, rounding, masks) and random rflags,
//! comparing the 80-bit registers, the control, status and full tag words, memory results, rflags and rax bit for bit.

use super::float::{self, Rounding, DE, IE, OE, PE, UE, ZE};
use super::{C0, C1, C2, C3, ES, F80, SF};
use crate::cpu::testutil::*;
use crate::cpu::*;
use iced_x86::code_asm::*;
use iced_x86::{Code, Instruction, MemoryOperand, MemorySize, OpCodeOperandKind, Register};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn bits(v: u128) -> F80 {
    F80::from_bits(v)
}

fn write_f80(c: &mut Cpu, addr: u64, v: u128) {
    c.mem.write_bytes(addr, &v.to_le_bytes()[..10]).unwrap();
}

fn read_f80(m: &mut Machine, addr: u64) -> u128 {
    let mut b = [0u8; 16];
    m.cpu.mem.read_bytes(addr, &mut b[..10]).unwrap();
    u128::from_le_bytes(b)
}

#[test]
fn long_double_arithmetic_program() {
    // (1/3 + 2) * 3: 1/3 rounds up, 2 + 1/3 rounds down, and the product is a tie that rounds to even: exactly 7.
    let code = assemble(|a| {
        a.fld1().unwrap();
        a.fild(dword_ptr(DATA)).unwrap(); // 3
        a.fdivp(st1, st0).unwrap(); // st0 = 1/3
        a.fld1().unwrap();
        a.fadd_2(st0, st0).unwrap(); // 2
        a.faddp(st1, st0).unwrap(); // 2 + 1/3
        a.fimul(dword_ptr(DATA)).unwrap(); // * 3
        a.fstp(tbyte_ptr(DATA + 0x10)).unwrap();
        a.fnstsw(ax).unwrap();
        a.hlt().unwrap();
    });
    let mut m = run_to_hlt(&code, |c| c.mem.write_u32(DATA, 3).unwrap());
    assert_eq!(read_f80(&mut m, DATA + 0x10), 0x4001_e000_0000_0000_0000);
    assert_eq!(m.cpu.regs.gpr[RAX] as u16 & (PE | ES | 0x3800), PE);
    assert_eq!(m.cpu.regs.x87.tag, 0xffff, "the stack is empty again");
}

#[test]
fn fistp_rounds_by_control_and_fisttp_truncates() {
    let code = assemble(|a| {
        a.fld(tbyte_ptr(DATA)).unwrap();
        a.fld(st0).unwrap();
        a.fistp(dword_ptr(DATA + 0x10)).unwrap();
        a.fisttp(dword_ptr(DATA + 0x14)).unwrap();
        a.fldcw(word_ptr(DATA + 0x20)).unwrap();
        a.fld(tbyte_ptr(DATA)).unwrap();
        a.fistp(qword_ptr(DATA + 0x18)).unwrap();
        a.hlt().unwrap();
    });
    // -2.5, then round up (RC = 10).
    let mut m = run_to_hlt(&code, |c| {
        write_f80(c, DATA, 0xc000_a000_0000_0000_0000);
        c.mem.write_u16(DATA + 0x20, 0x0b7f).unwrap();
    });
    assert_eq!(m.cpu.mem.read_u32(DATA + 0x10).unwrap() as i32, -2);
    assert_eq!(m.cpu.mem.read_u32(DATA + 0x14).unwrap() as i32, -2);
    assert_eq!(m.cpu.mem.read_u64(DATA + 0x18).unwrap() as i64, -2);
    assert_eq!(m.cpu.regs.x87.status & PE, PE);
}

#[test]
fn out_of_range_conversion_stores_the_integer_indefinite() {
    let code = assemble(|a| {
        a.fld(tbyte_ptr(DATA)).unwrap();
        a.fistp(word_ptr(DATA + 0x10)).unwrap();
        a.hlt().unwrap();
    });
    let mut m = run_to_hlt(&code, |c| {
        write_f80(c, DATA, float::from_int(40000).to_bits())
    });
    assert_eq!(m.cpu.mem.read_u16(DATA + 0x10).unwrap(), 0x8000);
    assert_eq!(m.cpu.regs.x87.status & (IE | SF), IE);
}

#[test]
fn stack_overflow_and_underflow_give_the_indefinite_with_stack_fault() {
    let code = assemble(|a| {
        for _ in 0..9 {
            a.fld1().unwrap();
        }
        a.hlt().unwrap();
    });
    let m = run_to_hlt(&code, |_| {});
    assert_eq!(m.cpu.regs.x87.st(0), float::INDEFINITE);
    assert_eq!(m.cpu.regs.x87.status & (IE | SF | C1), IE | SF | C1);
    assert_eq!(
        m.cpu.regs.x87.tag, 0x8000,
        "R7 (the overflowed push) is special, the rest valid"
    );

    let code = assemble(|a| {
        a.fadd_2(st0, st1).unwrap();
        a.hlt().unwrap();
    });
    let m = run_to_hlt(&code, |_| {});
    assert_eq!(m.cpu.regs.x87.status & (IE | SF | C1), IE | SF);
    assert_eq!(m.cpu.regs.x87.st(0), float::INDEFINITE);
}

#[test]
fn unmasked_exception_faults_at_the_next_waiting_instruction() {
    // Unmask ZE, divide by zero: the division leaves ST(0) alone and sets ZE, ES and B; the next fld faults with
    // rip on it, while fnstsw (no wait) before it does not.
    let code = assemble(|a| {
        a.fldcw(word_ptr(DATA)).unwrap();
        a.fld1().unwrap();
        a.fldz().unwrap();
        a.fdivp(st1, st0).unwrap();
        a.fnstsw(ax).unwrap();
        a.fld1().unwrap();
        a.hlt().unwrap();
    });
    let mut m = machine_with(&code);
    m.cpu.mem.write_u16(DATA, 0x037b).unwrap();
    assert_eq!(m.run(100), Exit::Exception(Exception::X87FloatingPoint));
    assert_eq!(m.cpu.icount, 5);
    let sw = m.cpu.regs.gpr[RAX] as u16;
    assert_eq!(sw & (ZE | ES | 0x8000), ZE | ES | 0x8000);
    assert_eq!(m.cpu.regs.x87.top, 6, "the faulting fdivp did not pop");
    assert_eq!(m.cpu.regs.x87.st(1), bits(0x3fff_8000_0000_0000_0000));
}

#[test]
fn fcomi_sets_zf_pf_cf_and_fucomi_is_quiet_for_qnan() {
    let code = assemble(|a| {
        a.fld(tbyte_ptr(DATA)).unwrap();
        a.fld1().unwrap();
        a.fucomi(st0, st1).unwrap();
        a.hlt().unwrap();
    });
    let m = run_to_hlt(&code, |c| write_f80(c, DATA, 0x7fff_c000_0000_0000_0001));
    assert_eq!(
        m.cpu.rflags() & (flags::ZF | flags::PF | flags::CF),
        flags::ZF | flags::PF | flags::CF
    );
    assert_eq!(m.cpu.regs.x87.status & IE, 0);
    let code = assemble(|a| {
        a.fld(tbyte_ptr(DATA)).unwrap();
        a.fld1().unwrap();
        a.fcomip(st0, st1).unwrap();
        a.hlt().unwrap();
    });
    let m = run_to_hlt(&code, |c| write_f80(c, DATA, 0x4000_8000_0000_0000_0000));
    assert_eq!(
        m.cpu.rflags() & (flags::ZF | flags::PF | flags::CF),
        flags::CF,
        "1 < 2"
    );
    assert_eq!(m.cpu.regs.x87.top, 7);
}

#[test]
fn fxsave_fxrstor_round_trip_and_alignment() {
    let code = assemble(|a| {
        a.fldpi().unwrap();
        a.fldz().unwrap();
        a.fxsave64(ptr(DATA + 0x200)).unwrap();
        a.fninit().unwrap();
        a.fxrstor64(ptr(DATA + 0x200)).unwrap();
        a.fnstenv(ptr(DATA + 0x100)).unwrap();
        a.fxsave(ptr(DATA + 0x208)).unwrap();
        a.hlt().unwrap();
    });
    let mut m = machine_with(&code);
    m.cpu.regs.xmm[3] = 0x1234;
    assert_eq!(m.run(100), Exit::Exception(Exception::GeneralProtection));
    assert!(
        m.describe_instruction(m.cpu.regs.rip)
            .1
            .starts_with("fxsave "),
        "the misaligned fxsave faults"
    );
    assert_eq!(
        m.cpu.regs.x87.st(1),
        float::constant(float::PI.0, float::PI.1, Rounding::Nearest)
    );
    assert_eq!(m.cpu.regs.x87.st(0), F80::zero(false));
    assert_eq!(
        m.cpu.mem.read_u8(DATA + 0x204).unwrap(),
        0xc0,
        "abridged tag of R6, R7"
    );
    assert_eq!(
        m.cpu.mem.read_u32(DATA + 0x200 + 24).unwrap(),
        MXCSR_DEFAULT
    );
    assert_eq!(
        m.cpu.mem.read_u128(DATA + 0x200 + 160 + 3 * 16).unwrap(),
        0x1234
    );
    // The full tag word after the restore: R7 valid (pi), R6 zero, the rest empty.
    assert_eq!(m.cpu.mem.read_u16(DATA + 0x108).unwrap(), 0x1fff);
}

#[test]
fn fnsave_frstor_round_trip() {
    let code = assemble(|a| {
        a.fld1().unwrap();
        a.fldl2e().unwrap();
        a.fnsave(ptr(DATA)).unwrap();
        a.fld1().unwrap();
        a.frstor(ptr(DATA)).unwrap();
        a.hlt().unwrap();
    });
    let m = run_to_hlt(&code, |_| {});
    assert_eq!(m.cpu.regs.x87.top, 6);
    assert_eq!(m.cpu.regs.x87.st(1), bits(0x3fff_8000_0000_0000_0000));
    assert_eq!(
        m.cpu.regs.x87.st(0),
        float::constant(float::LOG2_E.0, float::LOG2_E.1, Rounding::Nearest)
    );
    assert_eq!(m.cpu.regs.x87.tag, 0x0fff);
}

// -------------------------------------------------------------------------------------------------------------------
// The native differential test.

/// Layout of the data block that rdi points at, natively and in the emulator.
const CW: i64 = 0x00;
const OPERANDS: i64 = 0x10; // 8 x 16 bytes, m80 each
const MEM: i64 = 0x100; // the instruction's memory operand (16 bytes)
const FLAGS_IN: i64 = 0x120;
const FLAGS_OUT: i64 = 0x128;
const RAX_OUT: i64 = 0x130;
const ENV: i64 = 0x140; // 28 bytes
const FXSAVE: i64 = 0x200; // 512 bytes
const DATA_SIZE: usize = 0x600;

#[repr(C, align(64))]
struct Block([u8; DATA_SIZE]);

/// The instructions the differential test walks: every registered x87 code except those that load or store whole
/// environments (tested above) or change the control word.
fn fuzzed_codes() -> Vec<Code> {
    implemented_codes()
        .into_iter()
        .filter(|c| {
            let name = format!("{c:?}");
            let x87 = name.starts_with('F') && !name.starts_with("Fx")
                || name.starts_with("Fxch")
                || name.starts_with("Fxam")
                || name.starts_with("Fxtract")
                || *c == Code::Wait;
            let excluded = matches!(
                c,
                Code::Fldenv_m28byte
                    | Code::Fnstenv_m28byte
                    | Code::Fstenv_m28byte
                    | Code::Fnsave_m108byte
                    | Code::Fsave_m108byte
                    | Code::Frstor_m108byte
            );
            x87 && !excluded
        })
        .collect()
}

fn random_f80(rng: &mut ChaCha8Rng) -> u128 {
    let sign = (rng.random::<bool>() as u128) << 79;
    let sig: u64 = match rng.random_range(0..4) {
        0 => rng.random(),
        1 => rng.random::<u64>() & !0x7ff, // double-representable
        2 => {
            (rng.random::<u64>() & !0xff_ffff_ffff) | if rng.random() { 0x80_0000_0000 } else { 0 }
        }
        _ => rng.random::<u64>() | 0x3ff,
    };
    let sig = sig | 1 << 63;
    let (exp, sig): (u128, u64) = match rng.random_range(0..20) {
        0 => (0, 0),
        1 => (0x7fff, 1 << 63),
        2 => (0x7fff, sig | 1 << 62),                          // QNaN
        3 => (0x7fff, (sig & !(1 << 62)) | 1),                 // SNaN
        4 => (0, sig & !(1 << 63) >> rng.random_range(0..64)), // denormal
        5 => (0, sig),                                         // pseudo-denormal
        6 => (rng.random_range(1..0x7fff), sig & !(1 << 63)),  // unnormal
        7 => (0x7fff, sig & !(1 << 63)),                       // pseudo-NaN or pseudo-infinity
        8 => (rng.random_range(1..40), sig),                   // tiny
        9 => (rng.random_range(0x7fd0..0x7fff), sig),          // huge
        10 => (
            rng.random_range(0x3c00..0x3c04) + rng.random_range(0..3),
            sig,
        ), // near double's tiny range
        11 => (rng.random_range(0x43f0..0x4400), sig),         // near double's overflow
        12 | 13 => {
            // An integer, possibly at the edge of the 16-, 32- and 64-bit ranges, or an integer and a half.
            let e = [14u32, 15, 30, 31, 62, 63, 0, 1, 2][rng.random_range(0..9)];
            let int_mask = if e >= 63 {
                !0
            } else {
                !((1u64 << (63 - e)) - 1)
            };
            let mut s = sig & int_mask;
            if e < 63 && rng.random() {
                s |= 1 << (62 - e);
            }
            (0x3fff + e as u128, s)
        }
        14 => (0xbf80 - 0x8000 + rng.random_range(0..0x100), sig), // 2^-64 .. 2^192: ordinary
        15 => (0x7fff, 0xc000_0000_0000_0000),                     // indefinite
        _ => (0x3fff + rng.random_range(0..8) - 4, sig),           // close exponents: cancellation
    };
    sign | exp << 64 | sig as u128
}

fn random_memory(rng: &mut ChaCha8Rng, size: MemorySize) -> u64 {
    match size {
        MemorySize::Float32 => {
            let f = random_f80(rng);
            let (b, _, _) =
                float::to_ieee(F80::from_bits(f), float::SINGLE, 8, Rounding::Zero, 0x3f);
            if rng.random_range(0..4) == 0 {
                rng.random::<u32>() as u64
            } else if rng.random_range(0..4) == 0 {
                rng.random::<u32>() as u64 & 0x807f_ffff // denormal
            } else {
                b
            }
        }
        MemorySize::Float64 => {
            let f = random_f80(rng);
            let (b, _, _) =
                float::to_ieee(F80::from_bits(f), float::DOUBLE, 11, Rounding::Zero, 0x3f);
            if rng.random_range(0..4) == 0 {
                rng.random()
            } else if rng.random_range(0..4) == 0 {
                rng.random::<u64>() & 0x800f_ffff_ffff_ffff
            } else {
                b
            }
        }
        _ => {
            let v: u64 = rng.random();
            match rng.random_range(0..4) {
                0 => v,
                1 => v >> rng.random_range(0..64),
                2 => (v as i64 >> rng.random_range(0..64)) as u64,
                _ => [
                    0,
                    1,
                    u64::MAX,
                    0x8000,
                    0x7fff,
                    0x8000_0000,
                    0x7fff_ffff,
                    1 << 63,
                ][rng.random_range(0..8)],
            }
        }
    }
}

/// The instruction under test with its operands: ST(i) registers and the memory slot at [rdi + MEM].
fn build_instruction(code: Code, st_index: u32) -> Instruction {
    let op = code.op_code();
    let mem = MemoryOperand::with_base_displ_size(Register::RDI, MEM, 1);
    let sti = Register::try_from(Register::ST0 as usize + st_index as usize).unwrap();
    let operands: Vec<(bool, Register)> = (0..op.op_count())
        .map(|n| match op.op_kind(n) {
            OpCodeOperandKind::st0 => (false, Register::ST0),
            OpCodeOperandKind::sti_opcode => (false, sti),
            OpCodeOperandKind::ax => (false, Register::AX),
            _ => (true, Register::None),
        })
        .collect();
    let r = match operands.as_slice() {
        [] => Ok(Instruction::with(code)),
        [(true, _)] => Instruction::with1(code, mem),
        [(false, r)] => Instruction::with1(code, *r),
        [(false, a), (false, b)] => Instruction::with2(code, *a, *b),
        _ => panic!("unexpected operands of {code:?}"),
    };
    r.unwrap()
}

/// The test program: load the operands, set rflags and the control word, run the instruction, save the state.
fn program(count: usize, instrs: &[Instruction], native: bool) -> Vec<u8> {
    assemble(|a| {
        a.fninit().unwrap();
        for k in (0..count).rev() {
            a.fld(tbyte_ptr(rdi + (OPERANDS + 16 * k as i64) as i32))
                .unwrap();
        }
        a.xor(eax, eax).unwrap();
        a.push(qword_ptr(rdi + FLAGS_IN as i32)).unwrap();
        a.popfq().unwrap();
        a.fldcw(word_ptr(rdi + CW as i32)).unwrap();
        for &instr in instrs {
            a.add_instruction(instr).unwrap();
        }
        a.pushfq().unwrap();
        a.pop(qword_ptr(rdi + FLAGS_OUT as i32)).unwrap();
        a.mov(qword_ptr(rdi + RAX_OUT as i32), rax).unwrap();
        a.fxsave64(ptr(rdi + FXSAVE as i32)).unwrap();
        a.fnstenv(ptr(rdi + ENV as i32)).unwrap();
        a.fninit().unwrap();
        if native {
            a.ret().unwrap();
        } else {
            a.hlt().unwrap();
        }
    })
}

/// An executable page of the host for the native runs.
struct NativeCode {
    page: *mut u8,
}

const NATIVE_PAGE_BYTES: usize = 4096;

impl NativeCode {
    fn new() -> NativeCode {
        // SAFETY: an anonymous private mapping; the result is checked.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                NATIVE_PAGE_BYTES,
                libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(page, libc::MAP_FAILED, "mmap of an executable page");
        NativeCode {
            page: page as *mut u8,
        }
    }

    /// Runs `code` (position independent, ending in `ret`, reading and writing only [rdi, rdi + DATA_SIZE))
    /// with rdi = `data`.
    fn run(&self, code: &[u8], data: &mut Block) {
        assert!(code.len() <= NATIVE_PAGE_BYTES);
        // SAFETY: the page is ours, writable and `code.len()` bytes long at least.
        unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), self.page, code.len()) };
        // SAFETY: the code was assembled by iced from the program above: it touches only the x87 state (which it
        // leaves initialised by FNINIT, as the ABI wants), rax, rflags' status bits, the stack below rsp (a call
        // frame's push and pop), and the data block; it returns with `ret`.
        unsafe {
            core::arch::asm!(
                "call {f}",
                f = in(reg) self.page,
                in("rdi") data.0.as_mut_ptr(),
                clobber_abi("C"),
            );
        }
    }
}

impl Drop for NativeCode {
    fn drop(&mut self) {
        // SAFETY: unmapping the page mapped in `new`.
        unsafe { libc::munmap(self.page as *mut libc::c_void, NATIVE_PAGE_BYTES) };
    }
}

/// What a run left behind, in comparable form.
#[derive(Debug, PartialEq, Eq)]
struct Observed {
    /// The upper halves of the control, status and tag dwords of the FNSTENV image.
    environment_upper: [u16; 3],
    control: u16,
    status: u16,
    tag: u16,
    /// The non-empty registers, in stack order.
    registers: Vec<(usize, u128)>,
    memory: u128,
    rflags_status: u64,
    ax: u64,
}

fn observe(d: &[u8], status_mask: u16) -> Observed {
    let u16_at = |o: i64| u16::from_le_bytes([d[o as usize], d[o as usize + 1]]);
    let fx = FXSAVE as usize;
    let sw = u16_at(FXSAVE + 2);
    let top = ((sw >> 11) & 7) as usize;
    let tag = u16_at(ENV + 8);
    let mut registers = Vec::new();
    for n in 0..8 {
        let p = (top + n) & 7;
        if (tag >> (2 * p)) & 3 != 3 {
            let o = fx + 32 + 16 * n;
            let mut b = [0u8; 16];
            b[..10].copy_from_slice(&d[o..o + 10]);
            registers.push((n, u128::from_le_bytes(b)));
        }
    }
    Observed {
        environment_upper: [u16_at(ENV + 2), u16_at(ENV + 6), u16_at(ENV + 10)],
        control: u16_at(FXSAVE),
        status: sw & status_mask,
        tag,
        registers,
        memory: u128::from_le_bytes(d[MEM as usize..MEM as usize + 16].try_into().unwrap()),
        rflags_status: u64::from_le_bytes(
            d[FLAGS_OUT as usize..FLAGS_OUT as usize + 8]
                .try_into()
                .unwrap(),
        ) & flags::STATUS,
        ax: u64::from_le_bytes(
            d[RAX_OUT as usize..RAX_OUT as usize + 8]
                .try_into()
                .unwrap(),
        ),
    }
}

/// Status word bits the SDM leaves undefined after `code` (not compared).
fn undefined_status(code: Code) -> u16 {
    let name = format!("{code:?}");
    let arith = [
        "Fadd", "Fsub", "Fmul", "Fdiv", "Fiadd", "Fisub", "Fimul", "Fidiv", "Fsqrt", "Frndint",
        "Fscale",
    ];
    let loads = [
        "Fld", "Fild", "Fst", "Fist", "Fxch", "Fchs", "Fabs", "Fxtract", "Fcmov", "Fincstp",
        "Fdecstp",
    ];
    let comi = ["Fcomi", "Fucomi"];
    if arith
        .iter()
        .chain(loads.iter())
        .chain(comi.iter())
        .any(|p| name.starts_with(p))
    {
        C0 | C2 | C3
    } else {
        0
    }
}

#[test]
fn native_differential_x87() {
    let native = NativeCode::new();
    let codes = fuzzed_codes();
    assert!(codes.len() > 100, "the test walks the registered x87 forms");
    let seed: u64 = std::env::var("TANDEM_X87_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x87);
    let cases_per_code = 100;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut failures = Vec::new();
    let mut cases = 0;
    for &code in &codes {
        for _ in 0..cases_per_code {
            cases += 1;
            let count = match rng.random_range(0..10) {
                0 => rng.random_range(0..2),
                1 => 8,
                _ => rng.random_range(2..5),
            };
            let st_index = rng
                .random_range(0..4u32)
                .max(if rng.random_range(0..3) == 0 { 0 } else { 1 });
            let instr = build_instruction(code, st_index);
            let mut data = Block([0; DATA_SIZE]);
            let masks: u16 = if rng.random_range(0..4) == 0 {
                rng.random::<u16>() & 0x3f
            } else {
                0x3f
            };
            let cw =
                masks | 0x40 | (rng.random_range(0..4u16) << 8) | (rng.random_range(0..4u16) << 10);
            data.0[..2].copy_from_slice(&cw.to_le_bytes());
            for k in 0..8 {
                let o = (OPERANDS + 16 * k) as usize;
                data.0[o..o + 10].copy_from_slice(&random_f80(&mut rng).to_le_bytes()[..10]);
            }
            let m = random_memory(&mut rng, instr.memory_size());
            data.0[MEM as usize..MEM as usize + 8].copy_from_slice(&m.to_le_bytes());
            let rflags_in = rng.random::<u64>() & flags::STATUS;
            data.0[FLAGS_IN as usize..FLAGS_IN as usize + 8]
                .copy_from_slice(&rflags_in.to_le_bytes());
            let input = data.0;

            native.run(&program(count, &[instr], true), &mut data);
            let code_bytes = program(count, &[instr], false);
            let mut machine = machine_with(&code_bytes);
            machine.cpu.mem.write_bytes(DATA, &input).unwrap();
            machine.cpu.regs.gpr[RDI] = DATA;
            let exit = machine.run(10_000);
            let mut emulated = [0u8; DATA_SIZE];
            machine.cpu.mem.read_bytes(DATA, &mut emulated).unwrap();

            let mut mask = !undefined_status(code);
            if code == Code::Fxam && count == 0 {
                // FXAM of an empty ST(0) reports the sign of the stale register in C1: the host's is unknown.
                mask &= !C1;
            }
            let want = observe(&data.0, mask);
            let got = observe(&emulated, mask);
            if exit != Exit::Exception(Exception::GeneralProtection) || want != got {
                failures.push(format!(
                    "{code:?} st({st_index}) count {count} cw {cw:#06x} rflags {rflags_in:#x} mem {m:#018x} \
                     operands {:?}\n    host     {want:x?}\n    emulator {got:x?} (exit {exit:?})",
                    (0..count)
                        .map(|k| format!("{:#022x}", u128::from_le_bytes({
                            let mut b = [0u8; 16];
                            let o = (OPERANDS + 16 * k as i64) as usize;
                            b[..10].copy_from_slice(&input[o..o + 10]);
                            b
                        })))
                        .collect::<Vec<_>>(),
                ));
            }
        }
    }
    if !failures.is_empty() {
        let shown: Vec<&String> = failures.iter().take(400).collect();
        panic!(
            "{} of {cases} x87 cases differ from the host (reproduce with TANDEM_X87_SEED={seed} cargo test -p \
             tandem-emulator native_differential_x87):\n{}",
            failures.len(),
            shown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
        );
    }
}

#[test]
fn flags_constants_are_distinct() {
    // Guards the bit assignments the handlers rely on (SDM Vol. 1, Figure 8-4).
    assert_eq!(IE | DE | ZE | OE | UE | PE | SF | ES, 0xff);
    assert_eq!(C0 | C1 | C2 | C3, 0x4700);
}

/// FNSAVE/FRSTOR and FNSTENV/FLDENV round trips and their images, natively and emulated: the saved control, status
/// and tag words (with the upper halves of their dwords) and the saved registers must match the host's bytes, and
/// the state restored from them must be the state saved.
#[test]
fn native_differential_environment_images() {
    // Past the FXSAVE area.
    const SAVE: i64 = 0x400;
    const SAVE_ENV: i64 = 0x480;
    let native = NativeCode::new();
    let mut rng = ChaCha8Rng::seed_from_u64(0xe5);
    let mem = |d: i64| MemoryOperand::with_base_displ_size(Register::RDI, d, 1);
    let mut failures = Vec::new();
    let cases = 300;
    for case in 0..cases {
        let count = rng.random_range(0..9);
        let op = [
            Code::Fadd_st0_sti,
            Code::Fdiv_st0_sti,
            Code::Fsqrt,
            Code::Fcomp_st0_sti,
        ][rng.random_range(0..4)];
        let instrs = [
            build_instruction(op, 1),
            Instruction::with1(Code::Fnsave_m108byte, mem(SAVE)).unwrap(),
            Instruction::with1(Code::Frstor_m108byte, mem(SAVE)).unwrap(),
            Instruction::with1(Code::Fnstenv_m28byte, mem(SAVE_ENV)).unwrap(),
            Instruction::with1(Code::Fldenv_m28byte, mem(SAVE_ENV)).unwrap(),
        ];
        let mut data = Block([0; DATA_SIZE]);
        // Masked exceptions only: FRSTOR and FLDENV wait, and an unmasked one would fault there.
        let cw: u16 =
            0x3f | 0x40 | (rng.random_range(0..4u16) << 8) | (rng.random_range(0..4u16) << 10);
        data.0[..2].copy_from_slice(&cw.to_le_bytes());
        for k in 0..8 {
            let o = (OPERANDS + 16 * k) as usize;
            data.0[o..o + 10].copy_from_slice(&random_f80(&mut rng).to_le_bytes()[..10]);
        }
        let input = data.0;
        native.run(&program(count, &instrs, true), &mut data);
        let mut machine = machine_with(&program(count, &instrs, false));
        machine.cpu.mem.write_bytes(DATA, &input).unwrap();
        machine.cpu.regs.gpr[RDI] = DATA;
        let exit = machine.run(10_000);
        let mut emulated = [0u8; DATA_SIZE];
        machine.cpu.mem.read_bytes(DATA, &mut emulated).unwrap();
        let images = |d: &[u8]| {
            let s = SAVE as usize;
            let e = SAVE_ENV as usize;
            // Everything but FIP, FCS, FOP, FDP and FDS, which hold host addresses, and the stale contents of empty
            // registers.
            let top = (d[s + 5] >> 3) & 7;
            let tag = u16::from_le_bytes([d[s + 8], d[s + 9]]);
            let registers: Vec<u8> = (0..8)
                .filter(|n| (tag >> (2 * ((top as usize + n) & 7))) & 3 != 3)
                .flat_map(|n| d[s + 28 + 10 * n..s + 38 + 10 * n].to_vec())
                .collect();
            (d[s..s + 12].to_vec(), registers, d[e..e + 12].to_vec())
        };
        let (want, got) = (observe(&data.0, !0), observe(&emulated, !0));
        if exit != Exit::Exception(Exception::GeneralProtection)
            || want != got
            || images(&data.0) != images(&emulated)
        {
            failures.push(format!(
                "case {case}: {op:?} count {count} cw {cw:#06x}\n    host     {want:x?} {:x?}\n    emulator {got:x?} {:x?} \
                 (exit {exit:?})",
                images(&data.0),
                images(&emulated)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cases} cases differ from the host:\n{}",
        failures.len(),
        failures
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
