//! Lazy rflags: the status flags (CF, PF, AF, ZF, SF, OF) are computed when read, from the last flag-setting
//! operation, its width, operands and result.
//!
//! Why: most flag results are overwritten before anything reads them (Intel SDM Vol. 1, 3.4.3 lists which
//! instructions set which flags), so storing four words per ALU instruction is cheaper than computing six flags.
//! The other rflags bits (DF, TF, AC, ID, the reserved bit 1, IF) are kept eagerly in `other`.
//!
//! Architecturally undefined flags (SDM: "the AF flag is undefined" and similar) get fixed values here, chosen to be
//! a pure function of the operation so that runs are deterministic: AF is 0 after logical operations, shifts and
//! multiplies; OF after a shift by more than one takes the value of the count-of-one formula; SF, ZF and PF after
//! MUL/IMUL follow the truncated result. The differential suites compare only the defined flags
//! (`iced_x86::Instruction::rflags_undefined` tells which are undefined).

pub const CF: u64 = 1 << 0;
pub const PF: u64 = 1 << 2;
pub const AF: u64 = 1 << 4;
pub const ZF: u64 = 1 << 6;
pub const SF: u64 = 1 << 7;
pub const TF: u64 = 1 << 8;
pub const IF: u64 = 1 << 9;
pub const DF: u64 = 1 << 10;
pub const OF: u64 = 1 << 11;
/// Nested task: meaningless in 64-bit mode, but a user-mode POPF sets and clears it like any other flag.
pub const NT: u64 = 1 << 14;
pub const AC: u64 = 1 << 18;
pub const ID: u64 = 1 << 21;
/// The six status flags.
pub const STATUS: u64 = CF | PF | AF | ZF | SF | OF;
/// The bits a user-mode popfq may change (SDM Vol. 2, POPF: IOPL and IF are kept at CPL 3, VM/RF are cleared;
/// NT is writable at every privilege level, which is why Linux clears it on kernel entry).
pub const USER_WRITABLE: u64 = STATUS | TF | DF | NT | AC | ID;
/// Bit 1 is reserved and always reads as one.
pub const RESERVED_ONE: u64 = 1 << 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FlagOp {
    /// `aux` holds the status flags themselves.
    Raw,
    Add,
    /// `aux` holds the carry in.
    Adc,
    Sub,
    /// `aux` holds the borrow in.
    Sbb,
    /// AND, OR, XOR, TEST: CF = OF = 0.
    Logic,
    /// `aux` holds CF from before (INC and DEC leave CF alone).
    Inc,
    Dec,
    /// `src` is the operand, `res` its negation.
    Neg,
    /// `dst` is the value shifted, `src` the count (1..=63 after masking; never 0, which changes no flag).
    Shl,
    Shr,
    Sar,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flags {
    pub op: FlagOp,
    /// Operand size in bytes: 1, 2, 4 or 8.
    pub size: u8,
    pub dst: u64,
    pub src: u64,
    pub res: u64,
    pub aux: u64,
    /// Status bits that an instruction changing only some flags (ROL, ROR, RCL, RCR change CF and OF) set on
    /// top of the lazy operation, which keeps the others: `ovr_mask` says which, `ovr_val` their values.
    /// Every full flag-setting operation clears it.
    pub ovr_mask: u64,
    pub ovr_val: u64,
    /// The non-status bits of rflags.
    pub other: u64,
}

impl Default for Flags {
    fn default() -> Self {
        Flags {
            op: FlagOp::Raw,
            size: 8,
            dst: 0,
            src: 0,
            res: 0,
            aux: 0,
            ovr_mask: 0,
            ovr_val: 0,
            other: RESERVED_ONE | IF,
        }
    }
}

#[inline(always)]
pub fn mask(size: u8) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (size as u32 * 8)) - 1
    }
}

#[inline(always)]
pub fn sign_bit(size: u8) -> u64 {
    1u64 << (size as u32 * 8 - 1)
}

/// Sign-extends the low `size` bytes of `v`.
#[inline(always)]
pub fn sext(v: u64, size: u8) -> i64 {
    let shift = 64 - size as u32 * 8;
    ((v << shift) as i64) >> shift
}

#[inline(always)]
fn parity(v: u64) -> bool {
    (v as u8).count_ones() % 2 == 0
}

impl Flags {
    #[inline(always)]
    pub fn set(&mut self, op: FlagOp, size: u8, dst: u64, src: u64, res: u64) {
        // `cond`'s fast path compares the operands of a subtraction without truncating them.
        debug_assert!(
            op != FlagOp::Sub || (dst | src) & !mask(size) == 0,
            "FlagOp::Sub operands must be truncated to the operand size"
        );
        self.op = op;
        self.size = size;
        self.dst = dst;
        self.src = src;
        self.res = res & mask(size);
        self.ovr_mask = 0;
    }

    #[inline(always)]
    pub fn set_aux(&mut self, op: FlagOp, size: u8, dst: u64, src: u64, res: u64, aux: u64) {
        self.set(op, size, dst, src, res);
        self.aux = aux;
    }

    /// Sets the six status flags to exactly `status` (other bits of the argument are ignored).
    #[inline(always)]
    pub fn set_status(&mut self, status: u64) {
        self.op = FlagOp::Raw;
        self.aux = status & STATUS;
        self.ovr_mask = 0;
    }

    /// Sets CF and OF, keeping the other status flags, without computing them.
    #[inline(always)]
    pub fn set_cf_of(&mut self, cf: bool, of: bool) {
        let v = if cf { CF } else { 0 } | if of { OF } else { 0 };
        if self.op == FlagOp::Raw {
            self.aux = (self.aux & !(CF | OF)) | v;
            self.ovr_mask = 0;
        } else {
            self.ovr_mask = CF | OF;
            self.ovr_val = v;
        }
    }

    #[inline(always)]
    pub fn cf(&self) -> bool {
        if self.ovr_mask & CF != 0 {
            return self.ovr_val & CF != 0;
        }
        let m = mask(self.size);
        match self.op {
            FlagOp::Raw => self.aux & CF != 0,
            FlagOp::Add => self.res < (self.dst & m),
            FlagOp::Adc => {
                if self.aux != 0 {
                    self.res <= (self.dst & m)
                } else {
                    self.res < (self.dst & m)
                }
            }
            FlagOp::Sub => (self.dst & m) < (self.src & m),
            FlagOp::Sbb => {
                if self.aux != 0 {
                    (self.dst & m) <= (self.src & m)
                } else {
                    (self.dst & m) < (self.src & m)
                }
            }
            FlagOp::Logic => false,
            FlagOp::Inc | FlagOp::Dec => self.aux != 0,
            FlagOp::Neg => self.src & m != 0,
            FlagOp::Shl => {
                let bits = self.size as u64 * 8;
                // For counts beyond the width (8- and 16-bit operands take counts up to 31) CF is undefined;
                // this gives the last bit shifted out, which is 0 once every bit has left.
                self.src <= bits && (self.dst >> (bits - self.src)) & 1 != 0
            }
            FlagOp::Shr => self.src <= 64 && ((self.dst & m) >> (self.src - 1)) & 1 != 0,
            FlagOp::Sar => (sext(self.dst, self.size) >> (self.src - 1).min(63)) & 1 != 0,
        }
    }

    #[inline(always)]
    pub fn zf(&self) -> bool {
        match self.op {
            FlagOp::Raw => self.aux & ZF != 0,
            _ => self.res == 0,
        }
    }

    #[inline(always)]
    pub fn sf(&self) -> bool {
        match self.op {
            FlagOp::Raw => self.aux & SF != 0,
            _ => self.res & sign_bit(self.size) != 0,
        }
    }

    #[inline(always)]
    pub fn pf(&self) -> bool {
        match self.op {
            FlagOp::Raw => self.aux & PF != 0,
            _ => parity(self.res),
        }
    }

    #[inline(always)]
    pub fn af(&self) -> bool {
        match self.op {
            FlagOp::Raw => self.aux & AF != 0,
            FlagOp::Add | FlagOp::Adc | FlagOp::Sub | FlagOp::Sbb => {
                (self.dst ^ self.src ^ self.res) & 0x10 != 0
            }
            FlagOp::Neg => (self.src ^ self.res) & 0x10 != 0,
            FlagOp::Inc => self.res & 0xf == 0,
            FlagOp::Dec => self.res & 0xf == 0xf,
            FlagOp::Logic | FlagOp::Shl | FlagOp::Shr | FlagOp::Sar => false,
        }
    }

    #[inline(always)]
    pub fn of(&self) -> bool {
        if self.ovr_mask & OF != 0 {
            return self.ovr_val & OF != 0;
        }
        let sb = sign_bit(self.size);
        match self.op {
            FlagOp::Raw => self.aux & OF != 0,
            FlagOp::Add | FlagOp::Adc => (self.dst ^ self.res) & (self.src ^ self.res) & sb != 0,
            FlagOp::Sub | FlagOp::Sbb => (self.dst ^ self.src) & (self.dst ^ self.res) & sb != 0,
            FlagOp::Logic => false,
            FlagOp::Inc => self.res == sb,
            FlagOp::Dec => self.res == sb - 1,
            FlagOp::Neg => self.res == sb,
            // SDM SHL/SAL: for a 1-bit shift OF = MSB(result) XOR CF.
            FlagOp::Shl => ((self.res & sb != 0) as u8 ^ self.cf() as u8) != 0,
            // SDM SHR: for a 1-bit shift OF = MSB(original operand).
            FlagOp::Shr => self.dst & sb != 0,
            FlagOp::Sar => false,
        }
    }

    /// The six status flags as rflags bits.
    #[inline]
    pub fn status(&self) -> u64 {
        if self.op == FlagOp::Raw {
            return self.aux & STATUS;
        }
        // cf() and of() already honour the overrides.
        (self.cf() as u64)
            | (self.pf() as u64) << 2
            | (self.af() as u64) << 4
            | (self.zf() as u64) << 6
            | (self.sf() as u64) << 7
            | (self.of() as u64) << 11
    }

    /// The whole rflags register.
    pub fn rflags(&self) -> u64 {
        self.status() | self.other | RESERVED_ONE
    }

    /// Loads rflags: every bit in `writable` comes from `value`, the others stay.
    pub fn set_rflags(&mut self, value: u64, writable: u64) {
        let old = self.rflags();
        let new = (old & !writable) | (value & writable);
        self.set_status(new & STATUS);
        self.other = (new & !STATUS) | RESERVED_ONE;
    }

    /// Changes one status flag, materialising the others.
    pub fn set_flag(&mut self, flag: u64, on: bool) {
        let s = self.status();
        self.set_status(if on { s | flag } else { s & !flag });
    }

    #[inline(always)]
    pub fn df(&self) -> bool {
        self.other & DF != 0
    }

    /// Evaluates a condition code (the low nibble of a Jcc/SETcc/CMOVcc opcode, SDM Vol. 1, Appendix B).
    /// `cc` is a constant in every caller, so the match below folds to one arm.
    #[inline(always)]
    pub fn cond(&self, cc: u8) -> bool {
        let r = match cc >> 1 {
            // ZF and SF come straight from the result for every lazy operation.
            2 => self.zf(),
            4 => self.sf(),
            // The overwhelmingly common compare-then-branch. Every FlagOp::Sub producer (CMP, SUB, CMPXCHG,
            // CMPS, SCAS) stores its operands already truncated to the operand size, so they compare as they are.
            1 | 3 | 6 | 7 if self.op == FlagOp::Sub && self.ovr_mask == 0 => {
                let (a, b) = (self.dst, self.src);
                match cc >> 1 {
                    1 => a < b,
                    3 => a <= b,
                    6 => sext(a, self.size) < sext(b, self.size),
                    _ => sext(a, self.size) <= sext(b, self.size),
                }
            }
            _ => return self.cond_slow(cc),
        };
        r ^ (cc & 1 != 0)
    }

    #[inline(never)]
    fn cond_slow(&self, cc: u8) -> bool {
        let r = match cc >> 1 {
            0 => self.of(),
            1 => self.cf(),
            2 => self.zf(),
            3 => self.cf() || self.zf(),
            4 => self.sf(),
            5 => self.pf(),
            6 => self.sf() != self.of(),
            _ => self.zf() || (self.sf() != self.of()),
        };
        r ^ (cc & 1 != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_flags_match_the_sdm_examples() {
        let mut f = Flags::default();
        // cmp al=0x00, 0x01: borrow, result 0xff, sign set, parity of 0xff is even.
        f.set(FlagOp::Sub, 1, 0, 1, 0u64.wrapping_sub(1));
        assert!(f.cf() && f.sf() && !f.zf() && f.pf() && f.af() && !f.of());
        // cmp al=0x80, 0x01 overflows: -128 - 1.
        f.set(FlagOp::Sub, 1, 0x80, 1, 0x7f);
        assert!(f.of() && !f.cf() && !f.sf());
        assert!(f.cond(0xc), "jl: SF != OF");
    }

    #[test]
    fn inc_keeps_carry_and_detects_overflow() {
        let mut f = Flags::default();
        f.set_aux(FlagOp::Inc, 4, 0x7fff_ffff, 1, 0x8000_0000, 1);
        assert!(f.cf() && f.of() && f.sf() && f.af());
    }

    #[test]
    fn fast_and_slow_condition_paths_agree() {
        let vals = [
            0u64,
            1,
            0x7f,
            0x80,
            0xff,
            0x7fff_ffff,
            0x8000_0000,
            u64::MAX,
            0x8000_0000_0000_0000,
        ];
        for size in [1u8, 2, 4, 8] {
            for &a in &vals {
                for &b in &vals {
                    let mut f = Flags::default();
                    f.set(
                        FlagOp::Sub,
                        size,
                        a & mask(size),
                        b & mask(size),
                        a.wrapping_sub(b),
                    );
                    for cc in 0..16 {
                        assert_eq!(
                            f.cond(cc),
                            f.cond_slow(cc),
                            "size {size} a {a:#x} b {b:#x} cc {cc}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn cf_of_override_keeps_the_lazy_flags() {
        let mut f = Flags::default();
        f.set(FlagOp::Sub, 4, 1, 2, 1u64.wrapping_sub(2));
        let before = f.status();
        f.set_cf_of(false, true);
        assert_eq!(f.status(), (before & !(CF | OF)) | OF);
        assert!(f.cond(0) && !f.cond(2), "jo taken, jb not");
        f.set(FlagOp::Logic, 4, 0, 0, 0);
        assert!(!f.of(), "a full flag update clears the override");
    }

    #[test]
    fn rflags_round_trip_keeps_reserved_bit() {
        let mut f = Flags::default();
        f.set_rflags(CF | ZF | DF | OF, USER_WRITABLE);
        assert_eq!(f.rflags(), CF | ZF | DF | OF | IF | RESERVED_ONE);
        assert!(f.df());
    }
}
