//! The dispatch table: one handler per `iced_x86::Code`, filled by each instruction-group file's `register`.
//!
//! Invariant: a code that no group registered runs `invalid_opcode` (a guest #UD), and `implemented_codes` lists
//! exactly the codes with another handler; the differential suites walk that list, so a form cannot be added
//! without a differential case.

use super::{Cpu, Exception, Handler, Stop};
use crate::cpu::Insn;
use iced_x86::{Code, EncodingKind, Mnemonic, OpCodeOperandKind};
use std::sync::OnceLock;

/// Picks a handler specialised for the operand kinds of one decoded instruction (register, memory or
/// immediate), so that the handler does not branch on them each time it runs.
pub(crate) type Chooser = fn(&Insn) -> Handler;

pub(crate) struct Table {
    handlers: Vec<Handler>,
    choosers: Vec<Option<Chooser>>,
    implemented: Vec<bool>,
}

impl Table {
    /// Registers `handler` for `code`. Registering a code twice is a bug of ours and panics at table build time
    /// (which every test run does first).
    pub(crate) fn set(&mut self, code: Code, handler: Handler) {
        let i = code as usize;
        assert!(!self.implemented[i], "{code:?} registered twice");
        self.handlers[i] = handler;
        self.implemented[i] = true;
    }

    /// Registers a chooser for `code`: the block translator calls it once per decoded instruction.
    pub(crate) fn set_chooser(&mut self, code: Code, chooser: Chooser) {
        let i = code as usize;
        assert!(!self.implemented[i], "{code:?} registered twice");
        self.choosers[i] = Some(chooser);
        self.implemented[i] = true;
    }
}

pub(crate) fn invalid_opcode(_: &mut Cpu, _: &Insn) -> Result<(), Stop> {
    Err(Stop::exception(Exception::InvalidOpcode))
}

fn build() -> Table {
    let count = Code::values().len();
    let mut t = Table {
        handlers: vec![invalid_opcode as Handler; count],
        choosers: vec![None; count],
        implemented: vec![false; count],
    };
    super::alu::register(&mut t);
    super::transfer::register(&mut t);
    super::control::register(&mut t);
    super::stack::register(&mut t);
    super::system::register(&mut t);
    super::hint::register(&mut t);
    super::shift::register(&mut t);
    super::muldiv::register(&mut t);
    super::bit::register(&mut t);
    super::string::register(&mut t);
    super::sse::register(&mut t);
    super::x87::register(&mut t);
    t
}

fn get() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(build)
}

/// The handler that runs `instr`.
#[inline]
pub(crate) fn handler_for(instr: &Insn) -> Handler {
    let t = get();
    let i = instr.code() as usize;
    match t.choosers[i] {
        Some(choose) => choose(instr),
        None => t.handlers[i],
    }
}

pub(crate) fn is_implemented(code: Code) -> bool {
    get().implemented[code as usize]
}

/// Every code with a handler, in `Code` order.
pub fn implemented_codes() -> Vec<Code> {
    let t = get();
    Code::values()
        .filter(|&c| t.implemented[c as usize])
        .collect()
}

/// The width in bytes of an operand kind that names a general-purpose register or memory of that width.
pub(crate) fn gpr_operand_size(kind: OpCodeOperandKind) -> Option<u8> {
    use OpCodeOperandKind as K;
    Some(match kind {
        K::r8_or_mem | K::r8_reg | K::r8_opcode | K::al | K::cl => 1,
        K::r16_or_mem | K::r16_reg | K::r16_opcode | K::r16_rm | K::r16_reg_mem | K::ax | K::dx => {
            2
        }
        K::r32_or_mem | K::r32_reg | K::r32_opcode | K::r32_rm | K::r32_reg_mem | K::eax => 4,
        K::r64_or_mem | K::r64_reg | K::r64_opcode | K::r64_rm | K::r64_reg_mem | K::rax => 8,
        _ => return None,
    })
}

/// The legacy-encoded forms of `mnemonic` that are valid in 64-bit mode, each with the width of its first operand.
pub(crate) fn forms(mnemonic: Mnemonic) -> Vec<(Code, u8)> {
    Code::values()
        .filter(|c| c.mnemonic() == mnemonic)
        .filter(|c| {
            let op = c.op_code();
            op.encoding() == EncodingKind::Legacy && op.mode64()
        })
        .filter_map(|c| {
            let op = c.op_code();
            let size = match op.op_count() {
                0 => Some(0),
                // MOV moffs, AL/AX/EAX/RAX: the width comes from the register.
                _ if op.op_kind(0) == OpCodeOperandKind::mem_offs => {
                    gpr_operand_size(op.op_kind(1))
                }
                _ => gpr_operand_size(op.op_kind(0)),
            };
            size.map(|s| (c, s))
        })
        .collect()
}

/// The legacy-encoded codes valid in 64-bit mode that have a condition code (Jcc, SETcc, CMOVcc) and that `keep`
/// accepts, each with its condition number: the low nibble of the opcode, 0 = O through 15 = G (SDM Vol. 1,
/// Appendix B), as `Flags::cond` takes it.
pub(crate) fn condition_forms(keep: impl Fn(Code) -> bool) -> Vec<(Code, u8)> {
    Code::values()
        .filter(|c| {
            let op = c.op_code();
            c.condition_code() != iced_x86::ConditionCode::None
                && op.encoding() == EncodingKind::Legacy
                && op.mode64()
                && keep(*c)
        })
        .map(|c| (c, c.condition_code() as u8 - 1))
        .collect()
}

/// Picks the monomorphised function for a condition number: `by_cc!(cc, f)` is `f::<cc>` and
/// `by_cc!(cc, f, 4)` is `f::<4, cc>`. Assign the result to a typed binding (`Handler` or `Chooser`).
macro_rules! by_cc {
    ($cc:expr, $f:ident) => {
        by_cc!(@one $cc, $f, 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15)
    };
    ($cc:expr, $f:ident, $pre:tt) => {
        by_cc!(@two $cc, $f, $pre, 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15)
    };
    (@one $cc:expr, $f:ident, $($n:literal)*) => {
        match $cc {
            $($n => $f::<$n>,)*
            // condition_forms yields 0..=15 only; this runs once, when the table is built.
            other => unreachable!("condition number {other}"),
        }
    };
    (@two $cc:expr, $f:ident, $pre:tt, $($n:literal)*) => {
        match $cc {
            $($n => $f::<$pre, $n>,)*
            other => unreachable!("condition number {other}"),
        }
    };
}
pub(crate) use by_cc;

/// Picks the monomorphised handler for an operand width.
macro_rules! by_size {
    ($size:expr, $f:ident $(::<$($g:tt),*>)?) => {
        match $size {
            1 => $f::<1 $($(, $g)*)?> as crate::cpu::Handler,
            2 => $f::<2 $($(, $g)*)?> as crate::cpu::Handler,
            4 => $f::<4 $($(, $g)*)?> as crate::cpu::Handler,
            _ => $f::<8 $($(, $g)*)?> as crate::cpu::Handler,
        }
    };
}
pub(crate) use by_size;
