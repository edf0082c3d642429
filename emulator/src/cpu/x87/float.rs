//! Exact 80-bit floating-point arithmetic for the x87 FPU, on integers only (no host floating point).
//!
//! What it owns: classification of the double extended-precision encodings (SDM Vol. 1, 8.2.2, Table 8-3),
//! the exactly computed results of add, subtract, multiply, divide, square root and partial remainder, and one
//! rounding function that applies the precision control (24, 53 or 64 bits, with the 15-bit exponent range kept,
//! SDM Vol. 1, 8.1.5.2), the rounding control, denormalisation, overflow, and the x87's report of whether the
//! result was rounded up (C1). Conversions to and from single, double and integer formats round through it too.
//!
//! Key decision: every operation first computes an exact (or exactly sticky) result in a 128-bit integer and
//! rounds once, the structure of Berkeley SoftFloat's `extF80` routines (`roundPackToExtF80` with its rounding
//! precision). rustc_apfloat's `X87DoubleExtended` was the first candidate; it has no precision control (x87 code
//! compiled for 64-bit doubles runs with PC=53 on some systems), no square root, and does not say whether a result
//! was rounded up, which the x87 reports in C1; single rounding here gives all three, and the native differential
//! test in `tests.rs` checks the results bit for bit against the host's x87.
//!
//! Tininess is detected after rounding, as on Intel processors (SDM Vol. 1, 4.9.1.5): a result is tiny when,
//! rounded to the destination precision with an unbounded exponent, it is below the smallest normal.
//!
//! This module is pure: it neither reads nor writes CPU state; the handlers in `mod.rs` decide what to store.

use super::F80;

// Status word exception flags; the control word's mask bits have the same positions.
pub const IE: u16 = 1 << 0;
pub const DE: u16 = 1 << 1;
pub const ZE: u16 = 1 << 2;
pub const OE: u16 = 1 << 3;
pub const UE: u16 = 1 << 4;
pub const PE: u16 = 1 << 5;

/// The exponent bias of the double extended-precision format.
pub const BIAS: i32 = 16383;
/// The bias adjustment of a register result under an unmasked overflow or underflow (SDM Vol. 1, 8.5.4).
pub const BIAS_ADJUST: i32 = 24576;

/// The rounding control field of the control word (bits 11..10), SDM Vol. 1, 4.8.4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rounding {
    Nearest,
    Down,
    Up,
    Zero,
}

impl Rounding {
    pub fn from_control(control: u16) -> Rounding {
        match (control >> 10) & 3 {
            0 => Rounding::Nearest,
            1 => Rounding::Down,
            2 => Rounding::Up,
            _ => Rounding::Zero,
        }
    }
}

/// A binary format to round to: significand precision in bits (integer bit included) and the normal exponent range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Format {
    pub precision: u32,
    pub emin: i32,
    pub emax: i32,
}

pub const EXTENDED: Format = Format {
    precision: 64,
    emin: -16382,
    emax: 16383,
};
pub const DOUBLE: Format = Format {
    precision: 53,
    emin: -1022,
    emax: 1023,
};
pub const SINGLE: Format = Format {
    precision: 24,
    emin: -126,
    emax: 127,
};

/// The register format under the control word's precision control (bits 9..8): 00 single, 10 double,
/// 11 double extended. The reserved value 01 behaves as double extended here (checked against the host in the tests).
pub fn register_format(control: u16) -> Format {
    let precision = match (control >> 8) & 3 {
        0 => 24,
        2 => 53,
        _ => 64,
    };
    Format {
        precision,
        ..EXTENDED
    }
}

/// The x87 "real indefinite": the default QNaN of an invalid operation.
pub const INDEFINITE: F80 = F80 {
    significand: 0xc000_0000_0000_0000,
    sign_exponent: 0xffff,
};

/// What an 80-bit encoding means (SDM Vol. 1, Table 8-3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Zero,
    /// A nonzero finite value: `sig` normalised (bit 63 set), value = sig * 2^(exp - 63).
    Finite,
    Infinity,
    QuietNaN,
    SignalingNaN,
    /// Pseudo-NaN, pseudo-infinity and unnormal: invalid operands since the 387.
    Unsupported,
}

/// An operand unpacked for arithmetic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unpacked {
    pub class: Class,
    pub sign: bool,
    /// Unbiased exponent of bit 63 of `sig` (finite values only).
    pub exp: i32,
    pub sig: u64,
    /// A denormal or pseudo-denormal source: arithmetic on it raises DE.
    pub denormal: bool,
}

impl F80 {
    pub const fn new(sign: bool, biased_exponent: u16, significand: u64) -> F80 {
        F80 {
            significand,
            sign_exponent: ((sign as u16) << 15) | (biased_exponent & 0x7fff),
        }
    }
    pub fn sign(self) -> bool {
        self.sign_exponent & 0x8000 != 0
    }
    pub fn biased_exponent(self) -> u16 {
        self.sign_exponent & 0x7fff
    }
    pub fn to_bits(self) -> u128 {
        (self.sign_exponent as u128) << 64 | self.significand as u128
    }
    pub fn from_bits(bits: u128) -> F80 {
        F80 {
            significand: bits as u64,
            sign_exponent: (bits >> 64) as u16,
        }
    }
    pub fn zero(sign: bool) -> F80 {
        F80::new(sign, 0, 0)
    }
    pub fn infinity(sign: bool) -> F80 {
        F80::new(sign, 0x7fff, 1 << 63)
    }
    pub fn with_sign(self, sign: bool) -> F80 {
        F80::new(sign, self.biased_exponent(), self.significand)
    }

    pub fn unpack(self) -> Unpacked {
        let sign = self.sign();
        let e = self.biased_exponent() as i32;
        let sig = self.significand;
        let integer_bit = sig >> 63 != 0;
        let mut u = Unpacked {
            class: Class::Finite,
            sign,
            exp: 0,
            sig: 0,
            denormal: false,
        };
        if e == 0x7fff {
            u.class = if !integer_bit {
                Class::Unsupported
            } else if sig << 1 == 0 {
                Class::Infinity
            } else if sig & (1 << 62) != 0 {
                Class::QuietNaN
            } else {
                Class::SignalingNaN
            };
            u.sig = sig;
        } else if e == 0 {
            if sig == 0 {
                u.class = Class::Zero;
            } else {
                // A denormal (integer bit clear) or pseudo-denormal (set): both mean sig * 2^(1 - bias - 63).
                let shift = sig.leading_zeros();
                u.sig = sig << shift;
                u.exp = 1 - BIAS - shift as i32;
                u.denormal = true;
            }
        } else if !integer_bit {
            u.class = Class::Unsupported;
        } else {
            u.sig = sig;
            u.exp = e - BIAS;
        }
        u
    }

    pub fn is_nan(self) -> bool {
        matches!(self.unpack().class, Class::QuietNaN | Class::SignalingNaN)
    }

    /// The tag of this value in the full tag word: 00 valid, 01 zero, 10 special (SDM Vol. 1, 8.1.7).
    pub fn tag(self) -> u16 {
        let e = self.biased_exponent();
        if e == 0x7fff {
            2
        } else if e == 0 {
            if self.significand == 0 {
                1
            } else {
                2
            }
        } else if self.significand >> 63 == 0 {
            2
        } else {
            0
        }
    }
}

/// The result of one operation before the handler commits it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub value: F80,
    /// Exception flags raised (IE, DE, ZE, OE, UE, PE).
    pub flags: u16,
    /// The result was rounded up in magnitude (C1).
    pub rounded_up: bool,
}

impl Outcome {
    pub fn exact(value: F80) -> Outcome {
        Outcome {
            value,
            flags: 0,
            rounded_up: false,
        }
    }
    fn invalid() -> Outcome {
        Outcome {
            value: INDEFINITE,
            flags: IE,
            rounded_up: false,
        }
    }
}

/// A rounded finite result in a format: value = sig * 2^(exp - 63), with sig's top `precision` bits significant.
/// `sig` has bit 63 set unless the result is denormal (then exp = emin) or zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rounded {
    pub sign: bool,
    pub exp: i32,
    pub sig: u64,
    pub infinite: bool,
    pub flags: u16,
    pub rounded_up: bool,
}

/// Shifts right, ORing every bit shifted out into bit 0 ("jamming", SoftFloat's shiftRightJam).
fn shift_right_jam(v: u128, n: u32) -> u128 {
    if n == 0 {
        v
    } else if n >= 128 {
        (v != 0) as u128
    } else {
        (v >> n) | ((v << (128 - n)) != 0) as u128
    }
}

/// Rounds the nonzero value sig * 2^(exp - 127) to `format` under `rounding`.
///
/// `masks` is the control word's exception masks: an unmasked underflow or overflow does not denormalise or saturate
/// but returns the exponent wrapped by `BIAS_ADJUST` (for register destinations; memory destinations store nothing).
pub fn round(
    sign: bool,
    exp: i32,
    sig: u128,
    format: Format,
    rounding: Rounding,
    masks: u16,
) -> Rounded {
    debug_assert!(sig != 0);
    let shift = sig.leading_zeros();
    let mut sig = sig << shift;
    let mut exp = exp - shift as i32;
    let lsb_shift = 128 - format.precision;
    let mut flags = 0;

    let round_at = |sig: u128| -> (u128, bool, bool) {
        // Returns (truncated-and-maybe-incremented, inexact, rounded up); the increment may wrap to 0 (a carry out).
        let mask = (1u128 << lsb_shift) - 1;
        let rem = sig & mask;
        let half = 1u128 << (lsb_shift - 1);
        let trunc = sig & !mask;
        let inexact = rem != 0;
        let up = match rounding {
            Rounding::Nearest => rem > half || (rem == half && (trunc >> lsb_shift) & 1 == 1),
            Rounding::Zero => false,
            Rounding::Down => sign && inexact,
            Rounding::Up => !sign && inexact,
        };
        let out = if up {
            trunc.wrapping_add(1u128 << lsb_shift)
        } else {
            trunc
        };
        (out, inexact, up)
    };

    if exp < format.emin {
        // Tiny after rounding unless rounding at full precision carries up to the smallest normal.
        let (r, inexact, up) = round_at(sig);
        let tiny = !(exp == format.emin - 1 && r == 0);
        if tiny && masks & UE == 0 && exp + BIAS_ADJUST >= format.emin {
            // Unmasked underflow: the rounded result with its exponent wrapped up (SDM Vol. 1, 8.5.5).
            let (r, exp) = if r == 0 {
                (1u128 << 127, exp + 1)
            } else {
                (r, exp)
            };
            return Rounded {
                sign,
                exp: exp + BIAS_ADJUST,
                sig: (r >> 64) as u64,
                infinite: false,
                flags: UE | if inexact { PE } else { 0 },
                rounded_up: up,
            };
        }
        if tiny && masks & UE == 0 {
            // Unmasked, and out of range even after the wrap (only FSCALE gets there): a signed zero.
            return Rounded {
                sign,
                exp: format.emin,
                sig: 0,
                infinite: false,
                flags: UE | PE,
                rounded_up: false,
            };
        }
        // Masked underflow: denormalise, then round.
        sig = shift_right_jam(sig, (format.emin - exp).min(128) as u32);
        exp = format.emin;
        let (r, inexact, up) = round_at(sig);
        if inexact {
            flags |= PE;
        }
        if tiny && inexact {
            flags |= UE;
        }
        // The denormalised significand is below 2^127, so rounding up cannot carry out of the integer.
        return Rounded {
            sign,
            exp,
            sig: (r >> 64) as u64,
            infinite: false,
            flags,
            rounded_up: up,
        };
    }

    let (mut r, inexact, up) = round_at(sig);
    if r == 0 {
        r = 1u128 << 127;
        exp += 1;
    }
    if inexact {
        flags |= PE;
    }
    if exp > format.emax {
        if masks & OE == 0 {
            if exp - BIAS_ADJUST <= format.emax {
                return Rounded {
                    sign,
                    exp: exp - BIAS_ADJUST,
                    sig: (r >> 64) as u64,
                    infinite: false,
                    flags: flags | OE,
                    rounded_up: up,
                };
            }
            // Out of range even after the wrap (only FSCALE gets there): a signed infinity.
            return Rounded {
                sign,
                exp: format.emax,
                sig: 0,
                infinite: true,
                flags: OE | PE,
                rounded_up: true,
            };
        }
        let to_infinity = match rounding {
            Rounding::Nearest => true,
            Rounding::Zero => false,
            Rounding::Down => sign,
            Rounding::Up => !sign,
        };
        let max_sig = !0u64 << (64 - format.precision);
        return Rounded {
            sign,
            exp: format.emax,
            sig: max_sig,
            infinite: to_infinity,
            flags: OE | PE,
            rounded_up: to_infinity,
        };
    }
    Rounded {
        sign,
        exp,
        sig: (r >> 64) as u64,
        infinite: false,
        flags,
        rounded_up: up,
    }
}

impl Rounded {
    /// Packs into the 80-bit register format (any precision control: the low significand bits are zero).
    pub fn to_f80(self) -> F80 {
        if self.infinite {
            return F80::infinity(self.sign);
        }
        if self.sig == 0 {
            return F80::zero(self.sign);
        }
        if self.sig >> 63 == 0 {
            return F80::new(self.sign, 0, self.sig);
        }
        F80::new(self.sign, (self.exp + BIAS) as u16, self.sig)
    }

    pub fn outcome(self) -> Outcome {
        Outcome {
            value: self.to_f80(),
            flags: self.flags,
            rounded_up: self.rounded_up,
        }
    }

    /// Packs into an IEEE binary format with `frac_bits` fraction bits and bias `bias` (single or double).
    pub fn to_ieee(self, frac_bits: u32, exp_bits: u32) -> u64 {
        let bias = (1i32 << (exp_bits - 1)) - 1;
        let sign = (self.sign as u64) << (frac_bits + exp_bits);
        let exp_all_ones = ((1u64 << exp_bits) - 1) << frac_bits;
        if self.infinite {
            return sign | exp_all_ones;
        }
        let sig = self.sig >> (63 - frac_bits);
        if self.sig >> 63 == 0 {
            return sign | sig;
        }
        let biased = (self.exp + bias) as u64;
        sign | (biased << frac_bits) | (sig & ((1u64 << frac_bits) - 1))
    }
}

/// Quiets a NaN: sets the quiet bit (bit 62), keeps sign and payload.
pub fn quiet(v: F80) -> F80 {
    F80 {
        significand: v.significand | (1 << 62),
        ..v
    }
}

/// NaN propagation for two operands (SDM Vol. 1, Table 4-7): an SNaN raises IE; with one NaN it is the result
/// (quieted); with an SNaN and a QNaN, the QNaN; with two of a kind, the one with the larger significand, and on
/// equal significands the positive one.
fn propagate_nan(a: F80, ua: &Unpacked, b: F80, ub: &Unpacked) -> Outcome {
    let a_nan = matches!(ua.class, Class::QuietNaN | Class::SignalingNaN);
    let b_nan = matches!(ub.class, Class::QuietNaN | Class::SignalingNaN);
    let flags = if ua.class == Class::SignalingNaN || ub.class == Class::SignalingNaN {
        IE
    } else {
        0
    };
    let a_snan = ua.class == Class::SignalingNaN;
    let b_snan = ub.class == Class::SignalingNaN;
    let value = match (a_nan, b_nan) {
        (true, false) => a,
        (false, true) => b,
        // An SNaN and a QNaN: the QNaN.
        _ if a_snan && !b_snan => b,
        _ if b_snan && !a_snan => a,
        _ => {
            let (qa, qb) = (quiet(a), quiet(b));
            let b_wins =
                qb.significand > qa.significand || (qb.significand == qa.significand && qa.sign());
            if b_wins {
                qb
            } else {
                qa
            }
        }
    };
    Outcome {
        value: quiet(value),
        flags,
        rounded_up: false,
    }
}

/// The arithmetic operations with two operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Add,
    Sub,
    Mul,
    Div,
}

/// Computes `a op b` rounded to `format`, with every special case of the SDM's FADD/FSUB/FMUL/FDIV tables.
/// `a_denormal`/`b_denormal` override the DE detection for operands converted from memory formats (a single or
/// double denormal is a normal extended value).
#[allow(clippy::too_many_arguments)]
pub fn arith(
    op: Op,
    a: F80,
    a_denormal: bool,
    b: F80,
    b_denormal: bool,
    format: Format,
    rounding: Rounding,
    masks: u16,
) -> Outcome {
    let ua = a.unpack();
    let ub = b.unpack();
    if ua.class == Class::Unsupported || ub.class == Class::Unsupported {
        return Outcome::invalid();
    }
    if matches!(ua.class, Class::QuietNaN | Class::SignalingNaN)
        || matches!(ub.class, Class::QuietNaN | Class::SignalingNaN)
    {
        return propagate_nan(a, &ua, b, &ub);
    }
    let denormal = if ua.denormal || a_denormal || ub.denormal || b_denormal {
        DE
    } else {
        0
    };
    let b_sign = ub.sign ^ (op == Op::Sub);
    let sign = ua.sign ^ ub.sign;
    use Class::{Infinity, Zero};
    let special = |value: F80, flags: u16| Outcome {
        value,
        flags,
        rounded_up: false,
    };
    match op {
        Op::Add | Op::Sub => match (ua.class, ub.class) {
            (Infinity, Infinity) if ua.sign != b_sign => Outcome::invalid(),
            (Infinity, _) => special(F80::infinity(ua.sign), denormal),
            (_, Infinity) => special(F80::infinity(b_sign), denormal),
            (Zero, Zero) => {
                let s = if ua.sign == b_sign {
                    ua.sign
                } else {
                    rounding == Rounding::Down
                };
                special(F80::zero(s), 0)
            }
            (Zero, _) => {
                let r = round(
                    b_sign,
                    ub.exp,
                    (ub.sig as u128) << 64,
                    format,
                    rounding,
                    masks,
                );
                let mut o = r.outcome();
                o.flags |= denormal;
                o
            }
            (_, Zero) => {
                let r = round(
                    ua.sign,
                    ua.exp,
                    (ua.sig as u128) << 64,
                    format,
                    rounding,
                    masks,
                );
                let mut o = r.outcome();
                o.flags |= denormal;
                o
            }
            _ => add_finite(
                ua.sign, ua.exp, ua.sig, b_sign, ub.exp, ub.sig, format, rounding, masks, denormal,
            ),
        },
        Op::Mul => match (ua.class, ub.class) {
            (Infinity, Zero) | (Zero, Infinity) => Outcome::invalid(),
            (Infinity, _) | (_, Infinity) => special(F80::infinity(sign), denormal),
            (Zero, _) | (_, Zero) => special(F80::zero(sign), denormal),
            _ => {
                let p = ua.sig as u128 * ub.sig as u128;
                let mut o = round(sign, ua.exp + ub.exp + 1, p, format, rounding, masks).outcome();
                o.flags |= denormal;
                o
            }
        },
        Op::Div => match (ua.class, ub.class) {
            (Infinity, Infinity) | (Zero, Zero) => Outcome::invalid(),
            (Infinity, _) => special(F80::infinity(sign), denormal),
            (_, Infinity) => special(F80::zero(sign), denormal),
            (_, Zero) => special(F80::infinity(sign), ZE),
            (Zero, _) => special(F80::zero(sign), denormal),
            _ => {
                let num = (ua.sig as u128) << 64;
                let d = ub.sig as u128;
                let (q1, r1) = (num / d, num % d);
                let num2 = r1 << 64;
                let (q2, r2) = (num2 / d, num2 % d);
                let q = (q1 << 62) | (q2 >> 2) | ((q2 & 3 != 0 || r2 != 0) as u128);
                let mut o = round(sign, ua.exp - ub.exp + 1, q, format, rounding, masks).outcome();
                o.flags |= denormal;
                o
            }
        },
    }
}

#[allow(clippy::too_many_arguments)]
fn add_finite(
    a_sign: bool,
    a_exp: i32,
    a_sig: u64,
    b_sign: bool,
    b_exp: i32,
    b_sig: u64,
    format: Format,
    rounding: Rounding,
    masks: u16,
    denormal: u16,
) -> Outcome {
    // value = X * 2^(exp - 126) with X = sig << 63: one bit of headroom for the carry, 63 guard bits below.
    let (mut big_sign, mut big_exp, mut big) = (a_sign, a_exp, (a_sig as u128) << 63);
    let (mut small_sign, mut small_exp, mut small) = (b_sign, b_exp, (b_sig as u128) << 63);
    if (small_exp, small) > (big_exp, big) {
        std::mem::swap(&mut big_sign, &mut small_sign);
        std::mem::swap(&mut big_exp, &mut small_exp);
        std::mem::swap(&mut big, &mut small);
    }
    let diff = (big_exp - small_exp) as u32;
    let small = shift_right_jam(small, diff);
    let sum = if big_sign == small_sign {
        big + small
    } else {
        big - small
    };
    if sum == 0 {
        return Outcome {
            value: F80::zero(rounding == Rounding::Down),
            flags: denormal,
            rounded_up: false,
        };
    }
    let mut o = round(big_sign, big_exp + 1, sum, format, rounding, masks).outcome();
    o.flags |= denormal;
    o
}

/// Square root (FSQRT), rounded to `format`.
pub fn sqrt(a: F80, format: Format, rounding: Rounding, masks: u16) -> Outcome {
    let ua = a.unpack();
    match ua.class {
        Class::Unsupported => return Outcome::invalid(),
        Class::SignalingNaN => {
            return Outcome {
                value: quiet(a),
                flags: IE,
                rounded_up: false,
            }
        }
        Class::QuietNaN | Class::Zero => return Outcome::exact(a),
        _ if ua.sign => return Outcome::invalid(),
        Class::Infinity => return Outcome::exact(a),
        Class::Finite => {}
    }
    let denormal = if ua.denormal { DE } else { 0 };
    // value = N * 2^(e) with N = sig << 64 or sig << 63 so that e is even and N >= 2^126 (a 64-bit root).
    let (n, e) = if (ua.exp - 127) % 2 == 0 {
        ((ua.sig as u128) << 64, ua.exp - 127)
    } else {
        ((ua.sig as u128) << 63, ua.exp - 126)
    };
    let r = n.isqrt();
    let rem = n - r * r;
    // sqrt(n) lies strictly between r and r + 1 unless rem = 0, and is never exactly r + 1/2:
    // it is above r + 1/2 exactly when rem > r.
    let low: u128 = if rem > r {
        (1 << 63) | 1
    } else if rem != 0 {
        1
    } else {
        0
    };
    let sig = (r << 64) | low;
    let mut o = round(false, e / 2 + 63, sig, format, rounding, masks).outcome();
    o.flags |= denormal;
    o
}

/// Converts an IEEE single or double (as bits) to an 80-bit value exactly, returning it with whether the source was
/// a denormal (DE on use) and whether it was a signaling NaN (left signaling: the instruction decides).
pub fn from_ieee(bits: u64, frac_bits: u32, exp_bits: u32) -> (F80, bool) {
    let sign = (bits >> (frac_bits + exp_bits)) & 1 != 0;
    let e = ((bits >> frac_bits) & ((1 << exp_bits) - 1)) as i32;
    let frac = bits & ((1u64 << frac_bits) - 1);
    let bias = (1i32 << (exp_bits - 1)) - 1;
    let e_max = (1i32 << exp_bits) - 1;
    if e == e_max {
        if frac == 0 {
            return (F80::infinity(sign), false);
        }
        return (
            F80::new(sign, 0x7fff, (1 << 63) | (frac << (63 - frac_bits))),
            false,
        );
    }
    if e == 0 {
        if frac == 0 {
            return (F80::zero(sign), false);
        }
        let sig = frac << (63 - frac_bits);
        let shift = sig.leading_zeros();
        let exp = 1 - bias - shift as i32;
        return (F80::new(sign, (exp + BIAS) as u16, sig << shift), true);
    }
    (
        F80::new(
            sign,
            (e - bias + BIAS) as u16,
            (1 << 63) | (frac << (63 - frac_bits)),
        ),
        false,
    )
}

/// Converts an 80-bit value to an IEEE single or double (FST m32fp/m64fp), returning the bits and the outcome
/// flags. Unsupported encodings and SNaNs raise IE; a NaN keeps the top of its payload.
pub fn to_ieee(
    a: F80,
    format: Format,
    exp_bits: u32,
    rounding: Rounding,
    masks: u16,
) -> (u64, u16, bool) {
    let frac_bits = format.precision - 1;
    let ua = a.unpack();
    let sign_bit = (ua.sign as u64) << (frac_bits + exp_bits);
    let exp_all_ones = ((1u64 << exp_bits) - 1) << frac_bits;
    match ua.class {
        Class::Unsupported => {
            // The indefinite of the destination format.
            let v = (1u64 << (frac_bits + exp_bits)) | exp_all_ones | (1 << (frac_bits - 1));
            (v, IE, false)
        }
        Class::QuietNaN | Class::SignalingNaN => {
            let flags = if ua.class == Class::SignalingNaN {
                IE
            } else {
                0
            };
            let payload = (ua.sig >> (63 - frac_bits)) & ((1 << frac_bits) - 1);
            (
                sign_bit | exp_all_ones | payload | (1 << (frac_bits - 1)),
                flags,
                false,
            )
        }
        Class::Infinity => (sign_bit | exp_all_ones, 0, false),
        Class::Zero => (sign_bit, 0, false),
        Class::Finite => {
            let r = round(
                ua.sign,
                ua.exp,
                (ua.sig as u128) << 64,
                format,
                rounding,
                masks,
            );
            // Unmasked underflow or overflow to memory stores nothing and reports only that exception.
            if r.flags & UE != 0 && masks & UE == 0 {
                return (0, UE, false);
            }
            if r.flags & OE != 0 && masks & OE == 0 {
                return (0, OE, false);
            }
            (r.to_ieee(frac_bits, exp_bits), r.flags, r.rounded_up)
        }
    }
}

/// An exact integer as an 80-bit value (FILD).
pub fn from_int(v: i64) -> F80 {
    if v == 0 {
        return F80::zero(false);
    }
    let mag = v.unsigned_abs();
    let shift = mag.leading_zeros();
    F80::new(v < 0, (63 - shift as i32 + BIAS) as u16, mag << shift)
}

/// Rounds a finite value to an integer under `rounding`: (magnitude, inexact, rounded up). `None` when the magnitude
/// is at least 2^64 (out of every destination range).
fn round_to_integer_magnitude(u: &Unpacked, rounding: Rounding) -> Option<(u64, bool, bool)> {
    if u.exp >= 64 {
        return None;
    }
    // The fixed-point value sig * 2^(exp - 63) as a 64.64 number, with sticky for bits below 2^-64.
    let fixed: u128 = if u.exp >= 0 {
        (u.sig as u128) << (u.exp as u32 + 1)
    } else {
        shift_right_jam((u.sig as u128) << 1, (-u.exp) as u32)
    };
    // fixed = value * 2^64.
    let int = (fixed >> 64) as u64;
    let frac = fixed as u64;
    let half = 1u64 << 63;
    let inexact = frac != 0;
    let up = match rounding {
        Rounding::Nearest => frac > half || (frac == half && int & 1 == 1),
        Rounding::Zero => false,
        Rounding::Down => u.sign && inexact,
        Rounding::Up => !u.sign && inexact,
    };
    let mag = if up { int.checked_add(1)? } else { int };
    Some((mag, inexact, up))
}

/// FIST/FISTP/FISTTP: converts to a signed integer of `bits` bits. Returns the integer (two's complement in the low
/// `bits`) and the flags; out of range, NaN, infinity and unsupported give IE and the integer indefinite (the most
/// negative value).
pub fn to_int(a: F80, bits: u32, rounding: Rounding) -> (u64, u16, bool) {
    let indefinite = 1u64 << (bits - 1);
    let ua = a.unpack();
    match ua.class {
        Class::Zero => return (0, 0, false),
        Class::Finite => {}
        _ => return (indefinite, IE, false),
    }
    let Some((mag, inexact, up)) = round_to_integer_magnitude(&ua, rounding) else {
        return (indefinite, IE, false);
    };
    let limit = 1u64 << (bits - 1);
    let in_range = if ua.sign { mag <= limit } else { mag < limit };
    if !in_range {
        return (indefinite, IE, false);
    }
    let v = if ua.sign { mag.wrapping_neg() } else { mag };
    let mask = if bits == 64 { !0 } else { (1u64 << bits) - 1 };
    // A denormal source raises no DE here (FIST has no #D; checked on the host).
    let flags = if inexact { PE } else { 0 };
    (v & mask, flags, up)
}

/// FRNDINT: rounds to an integral value under `rounding` (precision control does not apply).
pub fn round_to_integral(a: F80, rounding: Rounding) -> Outcome {
    let ua = a.unpack();
    match ua.class {
        Class::Unsupported => return Outcome::invalid(),
        Class::SignalingNaN => {
            return Outcome {
                value: quiet(a),
                flags: IE,
                rounded_up: false,
            }
        }
        Class::Finite => {}
        _ => return Outcome::exact(a),
    }
    let denormal = if ua.denormal { DE } else { 0 };
    if ua.exp >= 63 {
        return Outcome {
            value: a,
            flags: denormal,
            rounded_up: false,
        };
    }
    let (mag, inexact, up) =
        round_to_integer_magnitude(&ua, rounding).expect("exponent below 63 fits in 64 bits");
    let value = if mag == 0 {
        F80::zero(ua.sign)
    } else {
        let shift = mag.leading_zeros();
        F80::new(ua.sign, (63 - shift as i32 + BIAS) as u16, mag << shift)
    };
    Outcome {
        value,
        flags: denormal | if inexact { PE } else { 0 },
        rounded_up: up,
    }
}

/// FSCALE: a * 2^trunc(b), rounded to the extended format under `rounding`.
pub fn scale(a: F80, b: F80, rounding: Rounding, masks: u16) -> Outcome {
    let ua = a.unpack();
    let ub = b.unpack();
    if ua.class == Class::Unsupported || ub.class == Class::Unsupported {
        return Outcome::invalid();
    }
    if matches!(ua.class, Class::QuietNaN | Class::SignalingNaN)
        || matches!(ub.class, Class::QuietNaN | Class::SignalingNaN)
    {
        return propagate_nan(a, &ua, b, &ub);
    }
    let denormal = if ua.denormal || ub.denormal { DE } else { 0 };
    let same = |v: F80| Outcome {
        value: v,
        flags: denormal,
        rounded_up: false,
    };
    match (ua.class, ub.class) {
        (Class::Zero, Class::Infinity) if !ub.sign => return Outcome::invalid(),
        (Class::Infinity, Class::Infinity) if ub.sign => return Outcome::invalid(),
        (Class::Zero | Class::Infinity, _) => return same(a),
        (Class::Finite, Class::Infinity) => {
            return same(if ub.sign {
                F80::zero(ua.sign)
            } else {
                F80::infinity(ua.sign)
            })
        }
        _ => {}
    }
    // trunc(b), clamped: beyond +-2^17 the result saturates anyway (the exponents span less than 2^16).
    let n: i32 = match ub.class {
        Class::Zero => 0,
        _ if ub.exp < 0 => 0,
        _ if ub.exp >= 17 => 1 << 17,
        _ => (ub.sig >> (63 - ub.exp)) as i32,
    };
    let n = if ub.sign { -n } else { n };
    let mut o = round(
        ua.sign,
        ua.exp + n,
        (ua.sig as u128) << 64,
        EXTENDED,
        rounding,
        masks,
    )
    .outcome();
    o.flags |= denormal;
    o
}

/// FPREM (`nearest` false) and FPREM1 (true): the partial remainder and the condition codes (SDM Vol. 2, FPREM).
/// Returns the outcome, whether the reduction is complete (C2 clear), and the low three quotient bits.
pub fn partial_remainder(
    a: F80,
    b: F80,
    nearest: bool,
    rounding: Rounding,
    masks: u16,
) -> (Outcome, bool, u8) {
    let ua = a.unpack();
    let ub = b.unpack();
    if ua.class == Class::Unsupported || ub.class == Class::Unsupported {
        return (Outcome::invalid(), true, 0);
    }
    if matches!(ua.class, Class::QuietNaN | Class::SignalingNaN)
        || matches!(ub.class, Class::QuietNaN | Class::SignalingNaN)
    {
        return (propagate_nan(a, &ua, b, &ub), true, 0);
    }
    if ua.class == Class::Infinity || ub.class == Class::Zero {
        return (Outcome::invalid(), true, 0);
    }
    let denormal = if ua.denormal || ub.denormal { DE } else { 0 };
    // An operand returned unchanged is still normalised (a pseudo-denormal or denormal becomes its canonical form).
    let unchanged = |flags: u16| match ua.class {
        Class::Finite => {
            let mut o = round(
                ua.sign,
                ua.exp,
                (ua.sig as u128) << 64,
                EXTENDED,
                rounding,
                masks,
            )
            .outcome();
            o.flags |= flags;
            o
        }
        _ => Outcome {
            value: a,
            flags,
            rounded_up: false,
        },
    };
    if ua.class == Class::Zero || ub.class == Class::Infinity {
        return (unchanged(denormal), true, 0);
    }
    let d = ua.exp - ub.exp;
    if d < 0 {
        // |a| < |b|: the quotient is 0 (FPREM), or for FPREM1 possibly 1 when |a| > |b| / 2.
        if nearest && d == -1 && ua.sig > ub.sig {
            // |a| in (|b|/2, |b|): remainder a - sign(a)|b|, quotient 1.
            let diff = ((ub.sig as u128) << 1) - ua.sig as u128; // in units of 2^(a.exp - 63)
            let mut o = round(!ua.sign, ua.exp, diff << 64, EXTENDED, rounding, masks).outcome();
            o.flags |= denormal;
            return (o, true, 1);
        }
        return (unchanged(denormal), true, 0);
    }
    // The implementation-dependent N of the partial case: 32 + (D mod 32), as on the host (and in Bochs).
    let (shift, complete) = if d < 64 {
        (d, true)
    } else {
        ((d & 31) | 32, false)
    };
    // a = A * 2^(a.exp - 63), b' = B * 2^(a.exp - shift - 63): remainder of (A << shift) by B.
    let num = (ua.sig as u128) << shift;
    let den = ub.sig as u128;
    let mut q = num / den;
    let mut r = num % den;
    let mut sign = ua.sign;
    if nearest && complete && (r * 2 > den || (r * 2 == den && q & 1 == 1)) {
        q += 1;
        r = den - r;
        sign = !sign;
    }
    let value_exp = ua.exp - shift; // r is in units of 2^(value_exp - 63)
    let o = if r == 0 {
        Outcome {
            value: F80::zero(ua.sign),
            flags: denormal,
            rounded_up: false,
        }
    } else {
        let mut o = round(sign, value_exp, r << 64, EXTENDED, rounding, masks).outcome();
        o.flags |= denormal;
        o
    };
    (o, complete, (q & 7) as u8)
}

/// FXTRACT: (exponent as a value, significand with exponent 0). A zero gives ZE and -infinity.
pub fn extract(a: F80) -> Result<(F80, F80, u16), Outcome> {
    let ua = a.unpack();
    match ua.class {
        Class::Unsupported => Err(Outcome::invalid()),
        Class::SignalingNaN => Err(Outcome {
            value: quiet(a),
            flags: IE,
            rounded_up: false,
        }),
        Class::QuietNaN => Err(Outcome::exact(a)),
        Class::Infinity => Ok((F80::infinity(false), a, 0)),
        Class::Zero => Ok((F80::infinity(true), a, ZE)),
        Class::Finite => {
            let flags = if ua.denormal { DE } else { 0 };
            Ok((
                from_int(ua.exp as i64),
                F80::new(ua.sign, BIAS as u16, ua.sig),
                flags,
            ))
        }
    }
}

/// The result of a comparison (FCOM, FUCOM, FCOMI, FTST).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ordering {
    Greater,
    Less,
    Equal,
    Unordered,
}

/// Compares a with b; `quiet` comparisons (FUCOM*) raise IE only for SNaNs and unsupported encodings.
pub fn compare(
    a: F80,
    a_denormal: bool,
    b: F80,
    b_denormal: bool,
    quiet_compare: bool,
) -> (Ordering, u16) {
    let ua = a.unpack();
    let ub = b.unpack();
    let unsupported = ua.class == Class::Unsupported || ub.class == Class::Unsupported;
    let snan = ua.class == Class::SignalingNaN || ub.class == Class::SignalingNaN;
    let nan = matches!(ua.class, Class::QuietNaN | Class::SignalingNaN)
        || matches!(ub.class, Class::QuietNaN | Class::SignalingNaN);
    if unsupported || nan {
        let flags = if unsupported || snan || !quiet_compare {
            IE
        } else {
            0
        };
        return (Ordering::Unordered, flags);
    }
    let flags = if ua.denormal || a_denormal || ub.denormal || b_denormal {
        DE
    } else {
        0
    };
    // A totally ordered key: sign-magnitude to two's-complement-like ordering.
    let key = |u: &Unpacked| -> (i8, i64, u64) {
        let (e, s) = match u.class {
            Class::Zero => return (0, 0, 0),
            Class::Infinity => (i32::MAX, u64::MAX),
            _ => (u.exp, u.sig),
        };
        if u.sign {
            (-1, -(e as i64), !s)
        } else {
            (1, e as i64, s)
        }
    };
    let ord = match key(&ua).cmp(&key(&ub)) {
        std::cmp::Ordering::Greater => Ordering::Greater,
        std::cmp::Ordering::Less => Ordering::Less,
        std::cmp::Ordering::Equal => Ordering::Equal,
    };
    (ord, flags)
}

/// The constants of FLD1, FLDL2T, FLDL2E, FLDPI, FLDLG2, FLDLN2, with 128 bits of significand and their exponent,
/// rounded to 64 bits under the rounding control (SDM Vol. 1, 8.3.8: the result is rounded per RC).
pub fn constant(sig128: u128, exp: i32, rounding: Rounding) -> F80 {
    round(false, exp, sig128, EXTENDED, rounding, 0x3f).to_f80()
}

pub const LOG2_10: (u128, i32) = (0xd49a784b_cd1b8afe_492bf6ff_4dafdb4c, 1);
pub const LOG2_E: (u128, i32) = (0xb8aa3b29_5c17f0bb_be87fed0_691d3e88, 0);
pub const PI: (u128, i32) = (0xc90fdaa2_2168c234_c4c6628b_80dc1cd1, 1);
pub const LOG10_2: (u128, i32) = (0x9a209a84_fbcff798_8f8959ac_0b7c9178, -2);
pub const LN_2: (u128, i32) = (0xb17217f7_d1cf79ab_c9e3b398_03f2f6af, -1);

#[cfg(test)]
mod tests {
    use super::*;

    fn f80(bits: u128) -> F80 {
        F80::from_bits(bits)
    }

    const ONE: u128 = 0x3fff_8000_0000_0000_0000;
    const TWO: u128 = 0x4000_8000_0000_0000_0000;
    const THREE: u128 = 0x4000_c000_0000_0000_0000;

    #[test]
    fn one_plus_two_is_three_exactly() {
        let o = arith(
            Op::Add,
            f80(ONE),
            false,
            f80(TWO),
            false,
            EXTENDED,
            Rounding::Nearest,
            0x3f,
        );
        assert_eq!(o, Outcome::exact(f80(THREE)));
    }

    #[test]
    fn one_third_rounds_by_precision_control() {
        let cases = [
            (64, Rounding::Nearest, 0x3ffd_aaaa_aaaa_aaaa_aaab_u128, true),
            (64, Rounding::Zero, 0x3ffd_aaaa_aaaa_aaaa_aaaa, false),
            (53, Rounding::Nearest, 0x3ffd_aaaa_aaaa_aaaa_a800, false),
            (24, Rounding::Nearest, 0x3ffd_aaaa_ab00_0000_0000, true),
        ];
        for (precision, rounding, want, up) in cases {
            let format = Format {
                precision,
                ..EXTENDED
            };
            let o = arith(
                Op::Div,
                f80(ONE),
                false,
                f80(THREE),
                false,
                format,
                rounding,
                0x3f,
            );
            assert_eq!(o.value, f80(want), "precision {precision} {rounding:?}");
            assert_eq!(o.flags, PE);
            assert_eq!(o.rounded_up, up);
        }
    }

    #[test]
    fn sqrt_of_two_is_correctly_rounded() {
        let o = sqrt(f80(TWO), EXTENDED, Rounding::Nearest, 0x3f);
        assert_eq!(o.value, f80(0x3fff_b504_f333_f9de_6484));
        assert_eq!(o.flags, PE);
        assert_eq!(
            sqrt(
                f80(0x4002_9000_0000_0000_0000),
                EXTENDED,
                Rounding::Nearest,
                0x3f
            )
            .value,
            f80(0x4000_c000_0000_0000_0000)
        );
    }

    #[test]
    fn smallest_normal_halved_is_a_denormal_with_underflow_only_when_inexact() {
        let min_normal = f80(0x0001_8000_0000_0000_0000);
        let o = arith(
            Op::Div,
            min_normal,
            false,
            f80(TWO),
            false,
            EXTENDED,
            Rounding::Nearest,
            0x3f,
        );
        assert_eq!(o.value, f80(0x0000_4000_0000_0000_0000));
        assert_eq!(
            o.flags, 0,
            "exact tiny results do not raise UE when it is masked"
        );
        let min_denormal = f80(0x0000_0000_0000_0000_0001);
        let o = arith(
            Op::Div,
            min_denormal,
            false,
            f80(TWO),
            false,
            EXTENDED,
            Rounding::Nearest,
            0x3f,
        );
        assert_eq!(o.value, F80::zero(false), "a tie rounds to even zero");
        assert_eq!(o.flags, DE | UE | PE);
    }

    #[test]
    fn conversions_to_integers_follow_rounding_and_range() {
        let two_and_half = f80(0x4000_a000_0000_0000_0000);
        assert_eq!(to_int(two_and_half, 32, Rounding::Nearest), (2, PE, false));
        assert_eq!(to_int(two_and_half, 32, Rounding::Up), (3, PE, true));
        assert_eq!(
            to_int(two_and_half.with_sign(true), 16, Rounding::Down),
            (0xfffd, PE, true)
        );
        assert_eq!(
            to_int(from_int(40000), 16, Rounding::Nearest),
            (0x8000, IE, false)
        );
        assert_eq!(
            to_int(from_int(-32768), 16, Rounding::Nearest),
            (0x8000, 0, false)
        );
        assert_eq!(
            to_int(from_int(i64::MIN), 64, Rounding::Nearest),
            (1 << 63, 0, false)
        );
    }

    #[test]
    fn double_round_trip_and_overflow() {
        let (x, den) = from_ieee(1.5f64.to_bits(), 52, 11);
        assert!(!den);
        assert_eq!(x, f80(0x3fff_c000_0000_0000_0000));
        assert_eq!(
            to_ieee(x, DOUBLE, 11, Rounding::Nearest, 0x3f),
            (1.5f64.to_bits(), 0, false)
        );
        let huge = f80(0x7ffe_8000_0000_0000_0000);
        assert_eq!(
            to_ieee(huge, DOUBLE, 11, Rounding::Nearest, 0x3f),
            (f64::INFINITY.to_bits(), OE | PE, true)
        );
        assert_eq!(
            to_ieee(huge, DOUBLE, 11, Rounding::Zero, 0x3f),
            (f64::MAX.to_bits(), OE | PE, false)
        );
        let (d, den) = from_ieee(5e-324f64.to_bits(), 52, 11);
        assert!(den);
        assert_eq!(
            to_ieee(d, DOUBLE, 11, Rounding::Nearest, 0x3f).0,
            5e-324f64.to_bits()
        );
    }

    #[test]
    fn constants_follow_rounding_control() {
        assert_eq!(
            constant(PI.0, PI.1, Rounding::Nearest),
            f80(0x4000_c90f_daa2_2168_c235)
        );
        assert_eq!(
            constant(PI.0, PI.1, Rounding::Down),
            f80(0x4000_c90f_daa2_2168_c234)
        );
        assert_eq!(
            constant(LN_2.0, LN_2.1, Rounding::Nearest),
            f80(0x3ffe_b172_17f7_d1cf_79ac)
        );
    }
}
