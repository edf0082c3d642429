//! The x87 FPU (SDM Vol. 1, chapter 8; Vol. 2 for each instruction): its register stack, control, status and tag
//! words, and the handlers of the x87 instructions that long double code and musl's printf use: loads and stores in
//! every memory format, integer conversions, the arithmetic group with its reversed and popping forms, comparisons
//! (FCOM*, FUCOM*, FCOMI*, FTST, FXAM), the constants, FSQRT, FRNDINT, FSCALE, FPREM, FPREM1, FXTRACT, FCMOVcc,
//! and the state instructions (FLDCW, FNSTCW, FNSTSW, FNCLEX, FNINIT, FNSTENV/FLDENV, FNSAVE/FRSTOR, FXSAVE/FXRSTOR).
//!
//! Invariants:
//! - Results are exact to the bit: arithmetic is done on integers by `float.rs`, which rounds once under the
//!   precision and rounding controls. No host floating point is involved.
//! - The status word's exception flags, C0..C3, TOP and the full tag word are maintained as the SDM specifies; the tag
//!   of a register is recomputed from its contents whenever it is written (FXRSTOR, FLDENV and FRSTOR keep only the
//!   empty/non-empty distinction of the loaded tags and recompute the rest, as FXRSTOR does on hardware).
//! - Exceptions are precise: a handler reads memory and checks everything before it writes memory or FPU state.
//!
//! Unmasked exceptions follow the hardware's delayed model (SDM Vol. 1, 8.6): the faulting instruction sets the
//! exception flag, ES and B and completes as the SDM says for the unmasked case (no store and no pop for invalid
//! operation, denormal operand and zero divide; a bias-adjusted register result for overflow and underflow, nothing
//! stored to memory); the *next* waiting x87 instruction (any x87 instruction except the FN* control forms, FXSAVE
//! and FXRSTOR) raises #MF (`Exception::X87FloatingPoint`) before doing anything, with rip on it. The OS layer turns
//! that into SIGFPE, and the handler sees the flags in the saved status word.
//!
//! Not modelled: the last-instruction opcode (FOP) is stored as 0 and the code and data segment selectors as 0;
//! FIP and FDP hold the address of the last non-control x87 instruction and of its memory operand.

pub mod float;

use super::dispatch::Table;
use super::flags::{CF, PF, ZF};
use super::{Cpu, Exception, Handler, Stop};
use crate::cpu::Insn;
use float::{Format, Op, Ordering, Outcome, Rounding, DE, IE, INDEFINITE, OE, UE, ZE};
use iced_x86::{Code, OpKind, Register};

/// An 80-bit extended-precision value as stored in an x87 register: 64-bit significand (with explicit integer
/// bit) and 16-bit sign and exponent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct F80 {
    pub significand: u64,
    pub sign_exponent: u16,
}

/// The x87 register stack and its control, status and tag words (SDM Vol. 1, 8.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct X87 {
    /// Physical registers R0..R7; ST(i) is `regs[(top + i) % 8]`.
    pub regs: [F80; 8],
    /// TOP, bits 13..11 of the status word, kept apart.
    pub top: u8,
    pub control: u16,
    /// The status word without TOP.
    pub status: u16,
    /// The full tag word: two bits per physical register, 11 = empty.
    pub tag: u16,
    pub last_ip: u64,
    pub last_dp: u64,
    pub last_opcode: u16,
}

/// Status word bits (SDM Vol. 1, Figure 8-4).
pub const SF: u16 = 1 << 6;
pub const ES: u16 = 1 << 7;
pub const C0: u16 = 1 << 8;
pub const C1: u16 = 1 << 9;
pub const C2: u16 = 1 << 10;
pub const C3: u16 = 1 << 14;
pub const B: u16 = 1 << 15;
const TOP_MASK: u16 = 0x3800;
const EXCEPTIONS: u16 = 0x3f;

/// The bits of the control word that exist; bit 6 reads as one (SDM Vol. 1, Figure 8-6; checked on the host).
const CONTROL_WRITABLE: u16 = 0x1f3f;
const CONTROL_ONE: u16 = 0x0040;

/// MXCSR_MASK as FXSAVE reports it: every MXCSR bit including DAZ is supported (SDM Vol. 1, 11.6.6).
pub const MXCSR_MASK: u32 = 0xffff;

impl Default for X87 {
    /// The state after FNINIT: control 0x037f (all exceptions masked, 64-bit precision, round to nearest),
    /// empty stack.
    fn default() -> Self {
        X87 {
            regs: [F80::default(); 8],
            top: 0,
            control: 0x037f,
            status: 0,
            tag: 0xffff,
            last_ip: 0,
            last_dp: 0,
            last_opcode: 0,
        }
    }
}

impl X87 {
    /// The status word with TOP in bits 13..11.
    pub fn status_word(&self) -> u16 {
        (self.status & !TOP_MASK) | ((self.top as u16 & 7) << 11)
    }

    /// Loads a whole status word, TOP included.
    pub fn set_status_word(&mut self, sw: u16) {
        self.top = ((sw >> 11) & 7) as u8;
        self.status = sw & !TOP_MASK;
    }

    pub(crate) fn hash_into(&self, h: &mut crate::memory::Fnv) {
        for r in &self.regs {
            h.write_u64(r.significand);
            h.write_u64(r.sign_exponent as u64);
        }
        h.write_u64(
            self.status_word() as u64 | (self.control as u64) << 16 | (self.tag as u64) << 32,
        );
    }

    /// MMn: the significand of physical register Rn (MMX registers alias the x87 registers' mantissas, SDM Vol. 1,
    /// 9.5), independent of TOP.
    pub fn mm(&self, n: usize) -> u64 {
        self.regs[n & 7].significand
    }

    /// Writes MMn: the significand, and all ones in the sign and exponent (SDM Vol. 1, 9.5.1), which makes the
    /// register a NaN to x87 code.
    pub fn set_mm(&mut self, n: usize, v: u64) {
        self.regs[n & 7] = F80 {
            significand: v,
            sign_exponent: 0xffff,
        };
        self.enter_mmx();
    }

    /// What every MMX instruction but EMMS does (SDM Vol. 1, Table 9-3): TOP becomes 0 and every register is
    /// tagged non-empty. The full tag word of each is its contents' class, as FNSTENV reports it on hardware.
    pub fn enter_mmx(&mut self) {
        self.top = 0;
        self.retag(0xff);
    }

    /// EMMS: every register tagged empty.
    pub fn emms(&mut self) {
        self.tag = 0xffff;
    }

    /// An unmasked x87 exception is pending: the next waiting x87 or MMX instruction raises #MF.
    pub fn exception_pending(&self) -> bool {
        self.status & ES != 0
    }

    fn physical(&self, i: usize) -> usize {
        (self.top as usize + i) & 7
    }

    /// ST(i) is empty.
    pub fn is_empty(&self, i: usize) -> bool {
        (self.tag >> (2 * self.physical(i))) & 3 == 3
    }

    /// The value of ST(i).
    pub fn st(&self, i: usize) -> F80 {
        self.regs[self.physical(i)]
    }

    /// Writes ST(i) and its tag.
    pub fn set_st(&mut self, i: usize, v: F80) {
        let p = self.physical(i);
        self.regs[p] = v;
        self.tag = (self.tag & !(3 << (2 * p))) | (v.tag() << (2 * p));
    }

    fn free(&mut self, i: usize) {
        let p = self.physical(i);
        self.tag |= 3 << (2 * p);
    }

    fn push(&mut self, v: F80) {
        self.top = (self.top.wrapping_sub(1)) & 7;
        self.set_st(0, v);
    }

    fn pop(&mut self) {
        self.free(0);
        self.top = (self.top + 1) & 7;
    }

    fn masks(&self) -> u16 {
        self.control & EXCEPTIONS
    }

    fn rounding(&self) -> Rounding {
        Rounding::from_control(self.control)
    }

    fn precision(&self) -> Format {
        float::register_format(self.control)
    }

    /// Sets exception flags, and ES and B when any set flag is unmasked.
    fn raise(&mut self, flags: u16) {
        self.status |= flags;
        self.update_summary();
    }

    fn update_summary(&mut self) {
        if self.status & EXCEPTIONS & !self.masks() != 0 {
            self.status |= ES | B;
        }
    }

    fn set_c1(&mut self, on: bool) {
        self.status = (self.status & !C1) | if on { C1 } else { 0 };
    }

    /// Sets C3, C2 and C0 (each given as its status bit or 0) and clears C1.
    fn set_condition(&mut self, c3: u16, c2: u16, c0: u16) {
        self.status = (self.status & !(C0 | C1 | C2 | C3)) | c3 | c2 | c0;
    }

    /// Stack underflow: IE and SF with C1 clear (SDM Vol. 1, 8.5.1.1). Returns whether IE is masked.
    fn underflow(&mut self) -> bool {
        self.set_c1(false);
        self.raise(IE | SF);
        self.masks() & IE != 0
    }

    /// Stack overflow: IE and SF with C1 set. Returns whether IE is masked.
    fn overflow(&mut self) -> bool {
        self.set_c1(true);
        self.raise(IE | SF);
        self.masks() & IE != 0
    }

    /// The abridged tag byte of FXSAVE: one bit per physical register, set when not empty.
    pub fn abridged_tag(&self) -> u8 {
        let mut t = 0u8;
        for p in 0..8 {
            if (self.tag >> (2 * p)) & 3 != 3 {
                t |= 1 << p;
            }
        }
        t
    }

    /// Rebuilds the full tag word from a mask of non-empty physical registers and the registers' contents.
    fn retag(&mut self, nonempty: u8) {
        let mut tag = 0u16;
        for p in 0..8 {
            let t = if nonempty & (1 << p) != 0 {
                self.regs[p].tag()
            } else {
                3
            };
            tag |= t << (2 * p);
        }
        self.tag = tag;
    }

    fn nonempty_from_tag(tag: u16) -> u8 {
        let mut m = 0u8;
        for p in 0..8 {
            if (tag >> (2 * p)) & 3 != 3 {
                m |= 1 << p;
            }
        }
        m
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Shared pieces of the handlers.

/// A waiting x87 instruction first delivers a pending unmasked exception as #MF.
#[inline]
fn check_pending(cpu: &Cpu) -> Result<(), Stop> {
    if cpu.regs.x87.status & ES != 0 {
        return Err(Exception::X87FloatingPoint.into());
    }
    Ok(())
}

/// Records FIP (and FDP for memory forms) of a non-control instruction.
fn note(cpu: &mut Cpu, i: &Insn) {
    cpu.regs.x87.last_ip = i.ip();
    if has_memory(i) {
        cpu.regs.x87.last_dp = cpu.ea(i);
    }
}

fn has_memory(i: &Insn) -> bool {
    (0..i.op_count()).any(|n| i.op_kind(n) == OpKind::Memory)
}

/// The stack index of an ST(i) register operand.
fn sti(i: &Insn, n: u32) -> usize {
    (i.op_register(n) as usize).wrapping_sub(Register::ST0 as usize) & 7
}

/// Memory operand formats.
const M32FP: u8 = 0;
const M64FP: u8 = 1;
const M16INT: u8 = 2;
const M32INT: u8 = 3;
const M64INT: u8 = 4;

/// Reads a memory operand of format `K` as an 80-bit value, with whether it was a denormal of its format.
fn read_operand<const K: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(F80, bool), Stop> {
    let a = cpu.ea(i);
    Ok(match K {
        M32FP => float::from_ieee(cpu.mem.read_u32(a)? as u64, 23, 8),
        M64FP => float::from_ieee(cpu.mem.read_u64(a)?, 52, 11),
        M16INT => (float::from_int(cpu.mem.read_u16(a)? as i16 as i64), false),
        M32INT => (float::from_int(cpu.mem.read_u32(a)? as i32 as i64), false),
        _ => (float::from_int(cpu.mem.read_u64(a)? as i64), false),
    })
}

/// Applies the exceptions an outcome raised: invalid operation, denormal operand and zero divide, when unmasked,
/// suppress the result (returns false); otherwise all flags are set, C1 tells whether the result was rounded up,
/// and the caller stores the result (returns true).
fn settle(cpu: &mut Cpu, o: &Outcome) -> bool {
    let before = o.flags & (IE | DE | ZE);
    if before & !cpu.regs.x87.masks() != 0 {
        cpu.regs.x87.set_c1(false);
        cpu.regs.x87.raise(before);
        return false;
    }
    cpu.regs.x87.set_c1(o.rounded_up);
    cpu.regs.x87.raise(o.flags);
    true
}

// ---------------------------------------------------------------------------------------------------------------
// Arithmetic: FADD, FSUB, FSUBR, FMUL, FDIV, FDIVR and their register, popping, memory and integer forms.

const ADD: u8 = 0;
const SUB: u8 = 1;
const SUBR: u8 = 2;
const MUL: u8 = 3;
const DIV: u8 = 4;
const DIVR: u8 = 5;

fn op_of(a: u8) -> (Op, bool) {
    match a {
        ADD => (Op::Add, false),
        SUB => (Op::Sub, false),
        SUBR => (Op::Sub, true),
        MUL => (Op::Mul, false),
        DIV => (Op::Div, false),
        _ => (Op::Div, true),
    }
}

/// dest := dest OP src (or src OP dest for the reversed operations); pops afterwards if asked.
fn arith_core(
    cpu: &mut Cpu,
    a: u8,
    dest: usize,
    src: Option<(F80, bool)>,
    src_reg: usize,
    pop: bool,
) {
    let src = match src {
        Some(v) => Some(v),
        None if cpu.regs.x87.is_empty(src_reg) => None,
        None => Some((cpu.regs.x87.st(src_reg), false)),
    };
    let (Some((s, s_den)), false) = (src, cpu.regs.x87.is_empty(dest)) else {
        if cpu.regs.x87.underflow() {
            cpu.regs.x87.set_st(dest, INDEFINITE);
            if pop {
                cpu.regs.x87.pop();
            }
        }
        return;
    };
    let d = cpu.regs.x87.st(dest);
    let (op, reversed) = op_of(a);
    let (x, x_den, y, y_den) = if reversed {
        (s, s_den, d, false)
    } else {
        (d, false, s, s_den)
    };
    let x87 = &cpu.regs.x87;
    let o = float::arith(
        op,
        x,
        x_den,
        y,
        y_den,
        x87.precision(),
        x87.rounding(),
        x87.masks(),
    );
    if settle(cpu, &o) {
        cpu.regs.x87.set_st(dest, o.value);
        if pop {
            cpu.regs.x87.pop();
        }
    }
}

fn arith_reg<const A: u8, const POP: bool>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    check_pending(cpu)?;
    note(cpu, i);
    let (dest, src) = (sti(i, 0), sti(i, 1));
    arith_core(cpu, A, dest, None, src, POP);
    Ok(())
}

fn arith_mem<const A: u8, const K: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    check_pending(cpu)?;
    let src = read_operand::<K>(cpu, i)?;
    note(cpu, i);
    arith_core(cpu, A, 0, Some(src), 0, false);
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// Loads.

fn push_checked(cpu: &mut Cpu, v: F80, flags: u16) {
    if !cpu.regs.x87.is_empty(7) {
        if cpu.regs.x87.overflow() {
            cpu.regs.x87.push(INDEFINITE);
        }
        return;
    }
    // An unmasked invalid operation (an SNaN source) suppresses the load; a denormal source is loaded anyway
    // (checked on the host).
    if flags & IE & !cpu.regs.x87.masks() != 0 {
        cpu.regs.x87.set_c1(false);
        cpu.regs.x87.raise(flags);
        return;
    }
    cpu.regs.x87.set_c1(false);
    cpu.regs.x87.raise(flags);
    cpu.regs.x87.push(v);
}

fn fld_mem<const K: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    check_pending(cpu)?;
    let (v, denormal) = read_operand::<K>(cpu, i)?;
    note(cpu, i);
    let mut flags = if denormal { DE } else { 0 };
    let mut v = v;
    if matches!(K, M32FP | M64FP) && v.unpack().class == float::Class::SignalingNaN {
        flags |= IE;
        v = float::quiet(v);
    }
    push_checked(cpu, v, flags);
    Ok(())
}

fn fld_m80(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    check_pending(cpu)?;
    let a = cpu.ea(i);
    let b: [u8; 10] = cpu.mem.read(a)?;
    note(cpu, i);
    let v = F80 {
        significand: u64::from_le_bytes(b[..8].try_into().unwrap()),
        sign_exponent: u16::from_le_bytes([b[8], b[9]]),
    };
    push_checked(cpu, v, 0);
    Ok(())
}

fn fld_st(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    check_pending(cpu)?;
    note(cpu, i);
    let src = sti(i, 0);
    if cpu.regs.x87.is_empty(src) {
        // Stack underflow: a masked one pushes the indefinite (unless the push overflows as well).
        if cpu.regs.x87.is_empty(7) {
            if cpu.regs.x87.underflow() {
                cpu.regs.x87.push(INDEFINITE);
            }
        } else if cpu.regs.x87.overflow() {
            cpu.regs.x87.push(INDEFINITE);
        }
        return Ok(());
    }
    let v = cpu.regs.x87.st(src);
    push_checked(cpu, v, 0);
    Ok(())
}

fn fld_const<const C: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    check_pending(cpu)?;
    note(cpu, i);
    let r = cpu.regs.x87.rounding();
    let v = match C {
        0 => F80::new(false, 0x3fff, 1 << 63),
        1 => F80::zero(false),
        2 => float::constant(float::PI.0, float::PI.1, r),
        3 => float::constant(float::LOG2_E.0, float::LOG2_E.1, r),
        4 => float::constant(float::LOG2_10.0, float::LOG2_10.1, r),
        5 => float::constant(float::LOG10_2.0, float::LOG10_2.1, r),
        _ => float::constant(float::LN_2.0, float::LN_2.1, r),
    };
    push_checked(cpu, v, 0);
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// Stores.

/// FST/FSTP m32fp and m64fp.
fn fst_float<const K: u8, const POP: bool>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    check_pending(cpu)?;
    let a = cpu.ea(i);
    let (format, exp_bits, size) = if K == M32FP {
        (float::SINGLE, 8, 4)
    } else {
        (float::DOUBLE, 11, 8)
    };
    if cpu.regs.x87.is_empty(0) {
        let indefinite = if K == M32FP {
            0xffc0_0000
        } else {
            0xfff8_0000_0000_0000
        };
        if cpu.regs.x87.masks() & IE != 0 {
            cpu.mem.write_sized(a, size, indefinite)?;
        }
        note(cpu, i);
        if cpu.regs.x87.underflow() && POP {
            cpu.regs.x87.pop();
        }
        return Ok(());
    }
    let x87 = &cpu.regs.x87;
    let (bits, flags, up) =
        float::to_ieee(x87.st(0), format, exp_bits, x87.rounding(), x87.masks());
    // Unmasked invalid operation, overflow or underflow: nothing is stored to memory and nothing is popped.
    let stored = flags & !x87.masks() & (IE | OE | UE) == 0;
    if stored {
        cpu.mem.write_sized(a, size, bits)?;
    }
    note(cpu, i);
    cpu.regs.x87.set_c1(up && stored);
    cpu.regs.x87.raise(flags);
    if POP && stored {
        cpu.regs.x87.pop();
    }
    Ok(())
}

fn fstp_m80(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    check_pending(cpu)?;
    let a = cpu.ea(i);
    let empty = cpu.regs.x87.is_empty(0);
    if empty && cpu.regs.x87.masks() & IE == 0 {
        note(cpu, i);
        cpu.regs.x87.underflow();
        return Ok(());
    }
    let v = if empty {
        INDEFINITE
    } else {
        cpu.regs.x87.st(0)
    };
    let mut b = [0u8; 10];
    b[..8].copy_from_slice(&v.significand.to_le_bytes());
    b[8..].copy_from_slice(&v.sign_exponent.to_le_bytes());
    cpu.mem.write(a, b)?;
    note(cpu, i);
    if empty {
        cpu.regs.x87.underflow();
    } else {
        cpu.regs.x87.set_c1(false);
    }
    cpu.regs.x87.pop();
    Ok(())
}

fn fst_st<const POP: bool>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    check_pending(cpu)?;
    note(cpu, i);
    let dest = sti(i, 0);
    let v = if cpu.regs.x87.is_empty(0) {
        if !cpu.regs.x87.underflow() {
            return Ok(());
        }
        INDEFINITE
    } else {
        cpu.regs.x87.set_c1(false);
        cpu.regs.x87.st(0)
    };
    cpu.regs.x87.set_st(dest, v);
    if POP {
        cpu.regs.x87.pop();
    }
    Ok(())
}

/// FIST/FISTP (rounding control) and FISTTP (`TRUNC`, truncation) to a 16-, 32- or 64-bit integer.
fn fist<const BITS: u32, const POP: bool, const TRUNC: bool>(
    cpu: &mut Cpu,
    i: &Insn,
) -> Result<(), Stop> {
    check_pending(cpu)?;
    let a = cpu.ea(i);
    let size = BITS / 8;
    let indefinite = 1u64 << (BITS - 1);
    if cpu.regs.x87.is_empty(0) {
        if cpu.regs.x87.masks() & IE != 0 {
            cpu.mem.write_sized(a, size, indefinite)?;
        }
        note(cpu, i);
        if cpu.regs.x87.underflow() && POP {
            cpu.regs.x87.pop();
        }
        return Ok(());
    }
    let rounding = if TRUNC {
        Rounding::Zero
    } else {
        cpu.regs.x87.rounding()
    };
    let (v, flags, up) = float::to_int(cpu.regs.x87.st(0), BITS, rounding);
    let masked = flags & (IE | DE) & !cpu.regs.x87.masks() == 0;
    if masked {
        cpu.mem.write_sized(a, size, v)?;
    }
    note(cpu, i);
    if !masked {
        cpu.regs.x87.set_c1(false);
        cpu.regs.x87.raise(flags & (IE | DE));
        return Ok(());
    }
    cpu.regs.x87.set_c1(up);
    cpu.regs.x87.raise(flags);
    if POP {
        cpu.regs.x87.pop();
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// Register operations.

fn fxch(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    check_pending(cpu)?;
    note(cpu, i);
    let j = sti(i, 1);
    let (e0, ej) = (cpu.regs.x87.is_empty(0), cpu.regs.x87.is_empty(j));
    if e0 || ej {
        if !cpu.regs.x87.underflow() {
            return Ok(());
        }
        if e0 {
            cpu.regs.x87.set_st(0, INDEFINITE);
        }
        if ej {
            cpu.regs.x87.set_st(j, INDEFINITE);
        }
    } else {
        cpu.regs.x87.set_c1(false);
    }
    let (a, b) = (cpu.regs.x87.st(0), cpu.regs.x87.st(j));
    cpu.regs.x87.set_st(0, b);
    cpu.regs.x87.set_st(j, a);
    Ok(())
}

/// Unary operations on ST(0).
const CHS: u8 = 0;
const ABS: u8 = 1;
const SQRT: u8 = 2;
const RNDINT: u8 = 3;

fn unary<const U: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    check_pending(cpu)?;
    note(cpu, i);
    if cpu.regs.x87.is_empty(0) {
        if cpu.regs.x87.underflow() {
            cpu.regs.x87.set_st(0, INDEFINITE);
        }
        return Ok(());
    }
    let v = cpu.regs.x87.st(0);
    let x87 = &cpu.regs.x87;
    let o = match U {
        CHS => Outcome::exact(v.with_sign(!v.sign())),
        ABS => Outcome::exact(v.with_sign(false)),
        SQRT => float::sqrt(v, x87.precision(), x87.rounding(), x87.masks()),
        _ => float::round_to_integral(v, x87.rounding()),
    };
    if settle(cpu, &o) {
        cpu.regs.x87.set_st(0, o.value);
    }
    Ok(())
}

/// FSCALE, FPREM and FPREM1: ST(0) := f(ST(0), ST(1)).
const SCALE: u8 = 0;
const PREM: u8 = 1;
const PREM1: u8 = 2;

fn binary_st01<const F: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    check_pending(cpu)?;
    note(cpu, i);
    if cpu.regs.x87.is_empty(0) || cpu.regs.x87.is_empty(1) {
        if cpu.regs.x87.underflow() {
            cpu.regs.x87.set_st(0, INDEFINITE);
        }
        return Ok(());
    }
    let (a, b) = (cpu.regs.x87.st(0), cpu.regs.x87.st(1));
    let (rounding, masks) = (cpu.regs.x87.rounding(), cpu.regs.x87.masks());
    if F == SCALE {
        let o = float::scale(a, b, rounding, masks);
        if settle(cpu, &o) {
            cpu.regs.x87.set_st(0, o.value);
        }
        return Ok(());
    }
    let (o, complete, q) = float::partial_remainder(a, b, F == PREM1, rounding, masks);
    if settle(cpu, &o) {
        cpu.regs.x87.set_st(0, o.value);
        let s = &mut cpu.regs.x87.status;
        *s &= !(C0 | C1 | C2 | C3);
        if complete {
            *s |= if q & 4 != 0 { C0 } else { 0 }
                | if q & 2 != 0 { C3 } else { 0 }
                | if q & 1 != 0 { C1 } else { 0 };
        } else {
            *s |= C2;
        }
    }
    Ok(())
}

fn fxtract(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    check_pending(cpu)?;
    note(cpu, i);
    if cpu.regs.x87.is_empty(0) {
        if cpu.regs.x87.underflow() {
            cpu.regs.x87.set_st(0, INDEFINITE);
            push_checked(cpu, INDEFINITE, 0);
        }
        return Ok(());
    }
    if !cpu.regs.x87.is_empty(7) {
        if cpu.regs.x87.overflow() {
            cpu.regs.x87.set_st(0, INDEFINITE);
            cpu.regs.x87.push(INDEFINITE);
        }
        return Ok(());
    }
    match float::extract(cpu.regs.x87.st(0)) {
        Ok((exponent, significand, flags)) => {
            let o = Outcome {
                value: significand,
                flags,
                rounded_up: false,
            };
            if settle(cpu, &o) {
                cpu.regs.x87.set_st(0, exponent);
                cpu.regs.x87.push(significand);
            }
        }
        Err(o) => {
            if settle(cpu, &o) {
                cpu.regs.x87.set_st(0, o.value);
                cpu.regs.x87.push(o.value);
            }
        }
    }
    Ok(())
}

fn fcmov<const CC: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    check_pending(cpu)?;
    note(cpu, i);
    let src = sti(i, 1);
    if cpu.regs.x87.is_empty(0) || cpu.regs.x87.is_empty(src) {
        if cpu.regs.x87.underflow() {
            cpu.regs.x87.set_st(0, INDEFINITE);
        }
        return Ok(());
    }
    cpu.regs.x87.set_c1(false);
    if cpu.regs.flags.cond(CC) {
        let v = cpu.regs.x87.st(src);
        cpu.regs.x87.set_st(0, v);
    }
    Ok(())
}

fn ffree<const POP: bool>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    check_pending(cpu)?;
    note(cpu, i);
    cpu.regs.x87.free(sti(i, 0));
    if POP {
        cpu.regs.x87.pop();
    }
    Ok(())
}

fn fstp_top<const DELTA: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    check_pending(cpu)?;
    note(cpu, i);
    cpu.regs.x87.top = (cpu.regs.x87.top + DELTA) & 7;
    cpu.regs.x87.set_c1(false);
    Ok(())
}

fn fnop(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    check_pending(cpu)?;
    note(cpu, i);
    Ok(())
}

fn fwait(cpu: &mut Cpu, _: &Insn) -> Result<(), Stop> {
    check_pending(cpu)
}

// ---------------------------------------------------------------------------------------------------------------
// Comparisons.

/// FCOM, FCOMP, FCOMPP, FUCOM*, FICOM*, FTST: sets C3, C2, C0. `POPS` is the number of pops.
fn fcom_core(
    cpu: &mut Cpu,
    other: Option<(F80, bool)>,
    other_reg: usize,
    quiet: bool,
    pops: u8,
    to_rflags: bool,
) {
    let other = match other {
        Some(v) => Some(v),
        None if cpu.regs.x87.is_empty(other_reg) => None,
        None => Some((cpu.regs.x87.st(other_reg), false)),
    };
    let ord_flags = match (other, cpu.regs.x87.is_empty(0)) {
        (Some((b, b_den)), false) => {
            Some(float::compare(cpu.regs.x87.st(0), false, b, b_den, quiet))
        }
        _ => None,
    };
    // The condition codes (or rflags) are set even when the exception is unmasked; the pops are then skipped
    // (checked on the host).
    let (ord, flags) = match ord_flags {
        Some(v) => v,
        None => {
            cpu.regs.x87.underflow();
            (Ordering::Unordered, IE)
        }
    };
    let performed = flags & !cpu.regs.x87.masks() & (IE | DE) == 0;
    cpu.regs.x87.raise(flags);
    if to_rflags {
        cpu.regs.x87.set_c1(false);
        let f = match ord {
            Ordering::Greater => 0,
            Ordering::Less => CF,
            Ordering::Equal => ZF,
            Ordering::Unordered => ZF | PF | CF,
        };
        cpu.regs.flags.set_status(f);
    } else {
        let (c3, c2, c0) = match ord {
            Ordering::Greater => (0, 0, 0),
            Ordering::Less => (0, 0, C0),
            Ordering::Equal => (C3, 0, 0),
            Ordering::Unordered => (C3, C2, C0),
        };
        cpu.regs.x87.set_condition(c3, c2, c0);
    }
    if performed {
        for _ in 0..pops {
            cpu.regs.x87.pop();
        }
    }
}

fn fcom_reg<const QUIET: bool, const POPS: u8, const RFLAGS: bool>(
    cpu: &mut Cpu,
    i: &Insn,
) -> Result<(), Stop> {
    check_pending(cpu)?;
    note(cpu, i);
    // FCOMPP/FUCOMPP have no operand and compare with ST(1); the others name ST(i) as their last operand.
    let reg = if i.op_count() == 0 {
        1
    } else {
        sti(i, i.op_count() - 1)
    };
    fcom_core(cpu, None, reg, QUIET, POPS, RFLAGS);
    Ok(())
}

fn fcom_mem<const K: u8, const POPS: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    check_pending(cpu)?;
    let v = read_operand::<K>(cpu, i)?;
    note(cpu, i);
    fcom_core(cpu, Some(v), 0, false, POPS, false);
    Ok(())
}

fn ftst(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    check_pending(cpu)?;
    note(cpu, i);
    fcom_core(cpu, Some((F80::zero(false), false)), 0, false, 0, false);
    Ok(())
}

fn fxam(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    check_pending(cpu)?;
    note(cpu, i);
    let v = cpu.regs.x87.st(0);
    let (c3, c2, c0) = if cpu.regs.x87.is_empty(0) {
        (C3, 0, C0)
    } else {
        match v.unpack().class {
            float::Class::Unsupported => (0, 0, 0),
            float::Class::QuietNaN | float::Class::SignalingNaN => (0, 0, C0),
            float::Class::Infinity => (0, C2, C0),
            float::Class::Zero => (C3, 0, 0),
            float::Class::Finite if v.biased_exponent() == 0 => (C3, C2, 0),
            float::Class::Finite => (0, C2, 0),
        }
    };
    cpu.regs.x87.set_condition(c3, c2, c0);
    cpu.regs.x87.set_c1(v.sign());
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// Control and state.

fn fnstcw(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let a = cpu.ea(i);
    cpu.mem.write_u16(a, cpu.regs.x87.control)?;
    Ok(())
}

fn fstcw(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    check_pending(cpu)?;
    fnstcw(cpu, i)
}

fn fldcw(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    check_pending(cpu)?;
    let a = cpu.ea(i);
    let v = cpu.mem.read_u16(a)?;
    cpu.regs.x87.control = (v & CONTROL_WRITABLE) | CONTROL_ONE;
    cpu.regs.x87.update_summary();
    Ok(())
}

fn fnstsw_mem(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let a = cpu.ea(i);
    cpu.mem.write_u16(a, cpu.regs.x87.status_word())?;
    Ok(())
}

fn fstsw_mem(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    check_pending(cpu)?;
    fnstsw_mem(cpu, i)
}

fn fnstsw_ax(cpu: &mut Cpu, _: &Insn) -> Result<(), Stop> {
    let sw = cpu.regs.x87.status_word();
    cpu.write_reg(Register::AX, sw as u64);
    Ok(())
}

fn fstsw_ax(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    check_pending(cpu)?;
    fnstsw_ax(cpu, i)
}

fn fnclex(cpu: &mut Cpu, _: &Insn) -> Result<(), Stop> {
    cpu.regs.x87.status &= !(EXCEPTIONS | SF | ES | B);
    Ok(())
}

fn fclex(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    check_pending(cpu)?;
    fnclex(cpu, i)
}

fn fninit(cpu: &mut Cpu, _: &Insn) -> Result<(), Stop> {
    let regs = cpu.regs.x87.regs;
    cpu.regs.x87 = X87 {
        regs,
        ..X87::default()
    };
    Ok(())
}

fn finit(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    check_pending(cpu)?;
    fninit(cpu, i)
}

/// The 28-byte protected-mode environment image of FNSTENV/FNSAVE (SDM Vol. 1, Figure 8-9). The unused upper
/// halves of the control, status and tag dwords read as 0xffff, as the host stores them.
fn environment(x87: &X87) -> [u8; 28] {
    let mut e = [0u8; 28];
    let dwords = [
        0xffff_0000 | x87.control as u32,
        0xffff_0000 | x87.status_word() as u32,
        0xffff_0000 | x87.tag as u32,
        x87.last_ip as u32,
        (x87.last_opcode as u32 & 0x7ff) << 16,
        x87.last_dp as u32,
        0xffff_0000,
    ];
    for (n, d) in dwords.iter().enumerate() {
        e[4 * n..4 * n + 4].copy_from_slice(&d.to_le_bytes());
    }
    e
}

fn load_environment(x87: &mut X87, e: &[u8]) {
    let word = |n: usize| u16::from_le_bytes([e[4 * n], e[4 * n + 1]]);
    let dword = |n: usize| u32::from_le_bytes(e[4 * n..4 * n + 4].try_into().unwrap());
    x87.control = (word(0) & CONTROL_WRITABLE) | CONTROL_ONE;
    x87.set_status_word(word(1));
    x87.retag(X87::nonempty_from_tag(word(2)));
    x87.last_ip = dword(3) as u64;
    x87.last_opcode = ((dword(4) >> 16) & 0x7ff) as u16;
    x87.last_dp = dword(5) as u64;
}

fn fnstenv<const WAIT: bool>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    if WAIT {
        check_pending(cpu)?;
    }
    let a = cpu.ea(i);
    let e = environment(&cpu.regs.x87);
    cpu.mem.write(a, e)?;
    // FNSTENV masks every exception after saving (SDM Vol. 2, FSTENV/FNSTENV).
    cpu.regs.x87.control |= EXCEPTIONS;
    Ok(())
}

fn fldenv(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    check_pending(cpu)?;
    let a = cpu.ea(i);
    let e: [u8; 28] = cpu.mem.read(a)?;
    load_environment(&mut cpu.regs.x87, &e);
    Ok(())
}

fn fnsave<const WAIT: bool>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    if WAIT {
        check_pending(cpu)?;
    }
    let a = cpu.ea(i);
    let mut image = [0u8; 108];
    image[..28].copy_from_slice(&environment(&cpu.regs.x87));
    for n in 0..8 {
        let v = cpu.regs.x87.st(n);
        image[28 + 10 * n..36 + 10 * n].copy_from_slice(&v.significand.to_le_bytes());
        image[36 + 10 * n..38 + 10 * n].copy_from_slice(&v.sign_exponent.to_le_bytes());
    }
    cpu.mem.write(a, image)?;
    fninit(cpu, i)
}

fn frstor(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    check_pending(cpu)?;
    let a = cpu.ea(i);
    let image: [u8; 108] = cpu.mem.read(a)?;
    let x87 = &mut cpu.regs.x87;
    // TOP first: the registers are stored in stack order.
    let sw = u16::from_le_bytes([image[4], image[5]]);
    x87.top = ((sw >> 11) & 7) as u8;
    for n in 0..8 {
        let p = x87.physical(n);
        x87.regs[p] = F80 {
            significand: u64::from_le_bytes(image[28 + 10 * n..36 + 10 * n].try_into().unwrap()),
            sign_exponent: u16::from_le_bytes([image[36 + 10 * n], image[37 + 10 * n]]),
        };
    }
    load_environment(x87, &image[..28]);
    Ok(())
}

/// FXSAVE and FXSAVE64 (REX.W: 64-bit FIP and FDP), SDM Vol. 1, Table 10-2. Bytes 416..511 are not written.
fn fxsave<const W64: bool>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let a = cpu.ea(i);
    if a & 15 != 0 {
        return Err(Exception::GeneralProtection.into());
    }
    let x87 = &cpu.regs.x87;
    let mut image = [0u8; 416];
    image[0..2].copy_from_slice(&x87.control.to_le_bytes());
    image[2..4].copy_from_slice(&x87.status_word().to_le_bytes());
    image[4] = x87.abridged_tag();
    image[6..8].copy_from_slice(&(x87.last_opcode & 0x7ff).to_le_bytes());
    if W64 {
        image[8..16].copy_from_slice(&x87.last_ip.to_le_bytes());
        image[16..24].copy_from_slice(&x87.last_dp.to_le_bytes());
    } else {
        image[8..12].copy_from_slice(&(x87.last_ip as u32).to_le_bytes());
        image[16..20].copy_from_slice(&(x87.last_dp as u32).to_le_bytes());
    }
    image[24..28].copy_from_slice(&cpu.regs.mxcsr.to_le_bytes());
    image[28..32].copy_from_slice(&MXCSR_MASK.to_le_bytes());
    for n in 0..8 {
        let v = x87.st(n);
        let o = 32 + 16 * n;
        image[o..o + 8].copy_from_slice(&v.significand.to_le_bytes());
        image[o + 8..o + 10].copy_from_slice(&v.sign_exponent.to_le_bytes());
    }
    for (n, x) in cpu.regs.xmm.iter().enumerate() {
        let o = 160 + 16 * n;
        image[o..o + 16].copy_from_slice(&x.to_le_bytes());
    }
    cpu.mem.write_bytes(a, &image)?;
    Ok(())
}

fn fxrstor<const W64: bool>(cpu: &mut Cpu, i: &Insn) -> Result<(), Stop> {
    let a = cpu.ea(i);
    if a & 15 != 0 {
        return Err(Exception::GeneralProtection.into());
    }
    let mut image = [0u8; 416];
    cpu.mem.read_bytes(a, &mut image)?;
    let mxcsr = u32::from_le_bytes(image[24..28].try_into().unwrap());
    if mxcsr & !MXCSR_MASK != 0 {
        return Err(Exception::GeneralProtection.into());
    }
    let x87 = &mut cpu.regs.x87;
    x87.control = (u16::from_le_bytes([image[0], image[1]]) & CONTROL_WRITABLE) | CONTROL_ONE;
    x87.set_status_word(u16::from_le_bytes([image[2], image[3]]));
    x87.last_opcode = u16::from_le_bytes([image[6], image[7]]) & 0x7ff;
    if W64 {
        x87.last_ip = u64::from_le_bytes(image[8..16].try_into().unwrap());
        x87.last_dp = u64::from_le_bytes(image[16..24].try_into().unwrap());
    } else {
        x87.last_ip = u32::from_le_bytes(image[8..12].try_into().unwrap()) as u64;
        x87.last_dp = u32::from_le_bytes(image[16..20].try_into().unwrap()) as u64;
    }
    for n in 0..8 {
        let o = 32 + 16 * n;
        let p = x87.physical(n);
        x87.regs[p] = F80 {
            significand: u64::from_le_bytes(image[o..o + 8].try_into().unwrap()),
            sign_exponent: u16::from_le_bytes([image[o + 8], image[o + 9]]),
        };
    }
    x87.retag(image[4]);
    cpu.regs.mxcsr = mxcsr;
    for n in 0..16 {
        let o = 160 + 16 * n;
        cpu.regs.xmm[n] = u128::from_le_bytes(image[o..o + 16].try_into().unwrap());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------

pub(crate) fn register(t: &mut Table) {
    use Code as C;
    let mut set = |codes: &[Code], h: Handler| {
        for &c in codes {
            t.set(c, h);
        }
    };
    // Arithmetic.
    macro_rules! arith {
        ($a:ident, $st0_sti:ident, $sti_st0:ident, $p:ident, $m32:ident, $m64:ident, $i16:ident, $i32:ident) => {
            set(&[C::$st0_sti, C::$sti_st0], arith_reg::<$a, false>);
            set(&[C::$p], arith_reg::<$a, true>);
            set(&[C::$m32], arith_mem::<$a, M32FP>);
            set(&[C::$m64], arith_mem::<$a, M64FP>);
            set(&[C::$i16], arith_mem::<$a, M16INT>);
            set(&[C::$i32], arith_mem::<$a, M32INT>);
        };
    }
    arith!(
        ADD,
        Fadd_st0_sti,
        Fadd_sti_st0,
        Faddp_sti_st0,
        Fadd_m32fp,
        Fadd_m64fp,
        Fiadd_m16int,
        Fiadd_m32int
    );
    arith!(
        SUB,
        Fsub_st0_sti,
        Fsub_sti_st0,
        Fsubp_sti_st0,
        Fsub_m32fp,
        Fsub_m64fp,
        Fisub_m16int,
        Fisub_m32int
    );
    arith!(
        SUBR,
        Fsubr_st0_sti,
        Fsubr_sti_st0,
        Fsubrp_sti_st0,
        Fsubr_m32fp,
        Fsubr_m64fp,
        Fisubr_m16int,
        Fisubr_m32int
    );
    arith!(
        MUL,
        Fmul_st0_sti,
        Fmul_sti_st0,
        Fmulp_sti_st0,
        Fmul_m32fp,
        Fmul_m64fp,
        Fimul_m16int,
        Fimul_m32int
    );
    arith!(
        DIV,
        Fdiv_st0_sti,
        Fdiv_sti_st0,
        Fdivp_sti_st0,
        Fdiv_m32fp,
        Fdiv_m64fp,
        Fidiv_m16int,
        Fidiv_m32int
    );
    arith!(
        DIVR,
        Fdivr_st0_sti,
        Fdivr_sti_st0,
        Fdivrp_sti_st0,
        Fdivr_m32fp,
        Fdivr_m64fp,
        Fidivr_m16int,
        Fidivr_m32int
    );

    // Loads and stores.
    set(&[C::Fld_m32fp], fld_mem::<M32FP>);
    set(&[C::Fld_m64fp], fld_mem::<M64FP>);
    set(&[C::Fld_m80fp], fld_m80);
    set(&[C::Fld_sti], fld_st);
    set(&[C::Fild_m16int], fld_mem::<M16INT>);
    set(&[C::Fild_m32int], fld_mem::<M32INT>);
    set(&[C::Fild_m64int], fld_mem::<M64INT>);
    set(&[C::Fld1], fld_const::<0>);
    set(&[C::Fldz], fld_const::<1>);
    set(&[C::Fldpi], fld_const::<2>);
    set(&[C::Fldl2e], fld_const::<3>);
    set(&[C::Fldl2t], fld_const::<4>);
    set(&[C::Fldlg2], fld_const::<5>);
    set(&[C::Fldln2], fld_const::<6>);
    set(&[C::Fst_m32fp], fst_float::<M32FP, false>);
    set(&[C::Fstp_m32fp], fst_float::<M32FP, true>);
    set(&[C::Fst_m64fp], fst_float::<M64FP, false>);
    set(&[C::Fstp_m64fp], fst_float::<M64FP, true>);
    set(&[C::Fstp_m80fp], fstp_m80);
    set(&[C::Fst_sti], fst_st::<false>);
    set(
        &[C::Fstp_sti, C::Fstp_sti_DFD0, C::Fstp_sti_DFD8],
        fst_st::<true>,
    );
    set(&[C::Fist_m16int], fist::<16, false, false>);
    set(&[C::Fist_m32int], fist::<32, false, false>);
    set(&[C::Fistp_m16int], fist::<16, true, false>);
    set(&[C::Fistp_m32int], fist::<32, true, false>);
    set(&[C::Fistp_m64int], fist::<64, true, false>);
    set(&[C::Fisttp_m16int], fist::<16, true, true>);
    set(&[C::Fisttp_m32int], fist::<32, true, true>);
    set(&[C::Fisttp_m64int], fist::<64, true, true>);

    // Register operations.
    set(
        &[C::Fxch_st0_sti, C::Fxch_st0_sti_DDC8, C::Fxch_st0_sti_DFC8],
        fxch,
    );
    set(&[C::Fchs], unary::<CHS>);
    set(&[C::Fabs], unary::<ABS>);
    set(&[C::Fsqrt], unary::<SQRT>);
    set(&[C::Frndint], unary::<RNDINT>);
    set(&[C::Fscale], binary_st01::<SCALE>);
    set(&[C::Fprem], binary_st01::<PREM>);
    set(&[C::Fprem1], binary_st01::<PREM1>);
    set(&[C::Fxtract], fxtract);
    set(&[C::Fcmovb_st0_sti], fcmov::<0x2>);
    set(&[C::Fcmovnb_st0_sti], fcmov::<0x3>);
    set(&[C::Fcmove_st0_sti], fcmov::<0x4>);
    set(&[C::Fcmovne_st0_sti], fcmov::<0x5>);
    set(&[C::Fcmovbe_st0_sti], fcmov::<0x6>);
    set(&[C::Fcmovnbe_st0_sti], fcmov::<0x7>);
    set(&[C::Fcmovu_st0_sti], fcmov::<0xa>);
    set(&[C::Fcmovnu_st0_sti], fcmov::<0xb>);
    set(&[C::Ffree_sti], ffree::<false>);
    set(&[C::Ffreep_sti], ffree::<true>);
    set(&[C::Fdecstp], fstp_top::<7>);
    set(&[C::Fincstp], fstp_top::<1>);
    set(&[C::Fnop], fnop);
    set(&[C::Wait], fwait);

    // Comparisons.
    set(
        &[C::Fcom_st0_sti, C::Fcom_st0_sti_DCD0],
        fcom_reg::<false, 0, false>,
    );
    set(
        &[
            C::Fcomp_st0_sti,
            C::Fcomp_st0_sti_DCD8,
            C::Fcomp_st0_sti_DED0,
        ],
        fcom_reg::<false, 1, false>,
    );
    set(&[C::Fcompp], fcom_reg::<false, 2, false>);
    set(&[C::Fucom_st0_sti], fcom_reg::<true, 0, false>);
    set(&[C::Fucomp_st0_sti], fcom_reg::<true, 1, false>);
    set(&[C::Fucompp], fcom_reg::<true, 2, false>);
    set(&[C::Fcomi_st0_sti], fcom_reg::<false, 0, true>);
    set(&[C::Fcomip_st0_sti], fcom_reg::<false, 1, true>);
    set(&[C::Fucomi_st0_sti], fcom_reg::<true, 0, true>);
    set(&[C::Fucomip_st0_sti], fcom_reg::<true, 1, true>);
    set(&[C::Fcom_m32fp], fcom_mem::<M32FP, 0>);
    set(&[C::Fcomp_m32fp], fcom_mem::<M32FP, 1>);
    set(&[C::Fcom_m64fp], fcom_mem::<M64FP, 0>);
    set(&[C::Fcomp_m64fp], fcom_mem::<M64FP, 1>);
    set(&[C::Ficom_m16int], fcom_mem::<M16INT, 0>);
    set(&[C::Ficomp_m16int], fcom_mem::<M16INT, 1>);
    set(&[C::Ficom_m32int], fcom_mem::<M32INT, 0>);
    set(&[C::Ficomp_m32int], fcom_mem::<M32INT, 1>);
    set(&[C::Ftst], ftst);
    set(&[C::Fxam], fxam);

    // Control and state.
    set(&[C::Fnstcw_m2byte], fnstcw);
    set(&[C::Fstcw_m2byte], fstcw);
    set(&[C::Fldcw_m2byte], fldcw);
    set(&[C::Fnstsw_m2byte], fnstsw_mem);
    set(&[C::Fstsw_m2byte], fstsw_mem);
    set(&[C::Fnstsw_AX], fnstsw_ax);
    set(&[C::Fstsw_AX], fstsw_ax);
    set(&[C::Fnclex], fnclex);
    set(&[C::Fclex], fclex);
    set(&[C::Fninit], fninit);
    set(&[C::Finit], finit);
    set(&[C::Fnstenv_m28byte], fnstenv::<false>);
    set(&[C::Fstenv_m28byte], fnstenv::<true>);
    set(&[C::Fldenv_m28byte], fldenv);
    set(&[C::Fnsave_m108byte], fnsave::<false>);
    set(&[C::Fsave_m108byte], fnsave::<true>);
    set(&[C::Frstor_m108byte], frstor);
    set(&[C::Fxsave_m512byte], fxsave::<false>);
    set(&[C::Fxsave64_m512byte], fxsave::<true>);
    set(&[C::Fxrstor_m512byte], fxrstor::<false>);
    set(&[C::Fxrstor64_m512byte], fxrstor::<true>);
}

#[cfg(test)]
mod tests;
