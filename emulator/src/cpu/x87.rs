//! x87 FPU: state only for now (instructions to come).

use super::dispatch::Table;

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
        (self.status & !0x3800) | ((self.top as u16 & 7) << 11)
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
}

pub(crate) fn register(_t: &mut Table) {}
