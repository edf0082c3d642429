//! Software IEEE 754 binary32 and binary64 arithmetic with the exact behaviour of SSE: MXCSR rounding control,
//! the six exception flags, DAZ and FTZ, and the x86 NaN rules (SDM Vol. 1, 4.8.3.5, 4.9, 10.2.3 and 11.5).
//!
//! Why our own and not the host's floating point or rustc_apfloat: results and flags must be identical on every
//! host under every rounding mode, and x86 has rules a generic library does not share. It detects underflow
//! *after rounding* (as if the exponent range were unbounded), reports an exact tiny result as an underflow only
//! when the underflow exception is unmasked, flushes tiny results to zero under FTZ, treats denormal inputs as zero
//! under DAZ, reports denormal operands (DE), and propagates the first NaN operand instead of an implementation's
//! choice. Every operation here is computed exactly on integers (u128 holds a 53x53-bit product, a 117-bit
//! dividend and a 120-bit radicand), then rounded once by `round_pack`, so correct rounding follows from the
//! exact intermediate: the significand carries at least two bits beyond the precision plus a sticky bit.
//!
//! Values travel as raw bits in a `u64` (binary32 in the low 32 bits). `Fp` carries the MXCSR controls in and the
//! exception flags out; the caller decides, from the masks, whether the instruction writes its result or raises
//! #XM. Nothing here reads host state.

/// MXCSR exception flag bits (the masks are the same bits shifted left by 7).
pub(crate) const IE: u32 = 1 << 0;
pub(crate) const DE: u32 = 1 << 1;
pub(crate) const ZE: u32 = 1 << 2;
pub(crate) const OE: u32 = 1 << 3;
pub(crate) const UE: u32 = 1 << 4;
pub(crate) const PE: u32 = 1 << 5;
/// Denormals-are-zero.
pub(crate) const DAZ: u32 = 1 << 6;
/// Where the six masks start.
pub(crate) const MASK_SHIFT: u32 = 7;
pub(crate) const RC_SHIFT: u32 = 13;
/// Flush-to-zero.
pub(crate) const FTZ: u32 = 1 << 15;

/// The MXCSR rounding control (bits 14..13).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Round {
    Nearest,
    Down,
    Up,
    Zero,
}

/// A binary floating-point format: `FRAC` stored fraction bits and `EXP` exponent bits.
pub(crate) trait Format {
    const FRAC: u32;
    const EXP: u32;
    const WIDTH: u32 = Self::FRAC + Self::EXP + 1;
    const BIAS: i32 = (1 << (Self::EXP - 1)) - 1;
    const SIGN: u64 = 1 << (Self::FRAC + Self::EXP);
    const EXP_MASK: u64 = ((1 << Self::EXP) - 1) << Self::FRAC;
    const FRAC_MASK: u64 = (1 << Self::FRAC) - 1;
    const QUIET: u64 = 1 << (Self::FRAC - 1);
    /// The "QNaN floating-point indefinite": negative, quiet, zero payload.
    const DEFAULT_NAN: u64 = Self::SIGN | Self::EXP_MASK | Self::QUIET;
    /// All bits of the format.
    const ALL: u64 = if Self::WIDTH == 64 {
        u64::MAX
    } else {
        (1 << Self::WIDTH) - 1
    };
}

/// IEEE binary32.
pub(crate) enum F32 {}
/// IEEE binary64.
pub(crate) enum F64 {}

impl Format for F32 {
    const FRAC: u32 = 23;
    const EXP: u32 = 8;
}

impl Format for F64 {
    const FRAC: u32 = 52;
    const EXP: u32 = 11;
}

#[inline]
pub(crate) fn is_nan<F: Format>(x: u64) -> bool {
    x & F::EXP_MASK == F::EXP_MASK && x & F::FRAC_MASK != 0
}

#[inline]
pub(crate) fn is_snan<F: Format>(x: u64) -> bool {
    is_nan::<F>(x) && x & F::QUIET == 0
}

#[inline]
fn is_inf<F: Format>(x: u64) -> bool {
    x & !F::SIGN & F::ALL == F::EXP_MASK
}

#[inline]
fn is_zero<F: Format>(x: u64) -> bool {
    x & !F::SIGN & F::ALL == 0
}

#[inline]
fn is_denormal<F: Format>(x: u64) -> bool {
    x & F::EXP_MASK == 0 && x & F::FRAC_MASK != 0
}

#[inline]
fn quiet<F: Format>(x: u64) -> u64 {
    x | F::QUIET
}

/// A finite nonzero value as (sign, exponent, significand): value = significand * 2^exponent.
#[inline]
fn unpack<F: Format>(x: u64) -> (bool, i32, u64) {
    let sign = x & F::SIGN != 0;
    let exp = ((x & F::EXP_MASK) >> F::FRAC) as i32;
    let frac = x & F::FRAC_MASK;
    if exp == 0 {
        (sign, 1 - F::BIAS - F::FRAC as i32, frac)
    } else {
        (sign, exp - F::BIAS - F::FRAC as i32, frac | (1 << F::FRAC))
    }
}

/// Like `unpack`, with the significand shifted so that its top bit is bit `FRAC` (denormals normalised).
#[inline]
fn unpack_normalised<F: Format>(x: u64) -> (bool, i32, u64) {
    let (s, e, m) = unpack::<F>(x);
    let k = m.leading_zeros() - (63 - F::FRAC);
    (s, e - k as i32, m << k)
}

/// The controls an operation runs under and the exception flags it raised.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fp {
    pub round: Round,
    pub daz: bool,
    pub ftz: bool,
    /// The underflow exception is masked: a tiny exact result raises nothing, FTZ applies.
    pub underflow_masked: bool,
    /// The exception flags raised so far (IE..PE).
    pub flags: u32,
}

impl Fp {
    pub(crate) fn new(mxcsr: u32) -> Fp {
        Fp {
            round: match (mxcsr >> RC_SHIFT) & 3 {
                0 => Round::Nearest,
                1 => Round::Down,
                2 => Round::Up,
                _ => Round::Zero,
            },
            daz: mxcsr & DAZ != 0,
            ftz: mxcsr & FTZ != 0,
            underflow_masked: mxcsr & (UE << MASK_SHIFT) != 0,
            flags: 0,
        }
    }

    /// DAZ alone: a denormal becomes a zero of its sign when DAZ is set, and raises nothing.
    #[inline]
    fn daz<F: Format>(&self, x: u64) -> u64 {
        if self.daz && is_denormal::<F>(x) {
            x & F::SIGN
        } else {
            x
        }
    }

    /// An input operand after DAZ: a denormal becomes a zero of its sign under DAZ, else it raises DE.
    #[inline]
    fn input<F: Format>(&mut self, x: u64) -> u64 {
        if is_denormal::<F>(x) {
            if self.daz {
                return x & F::SIGN;
            }
            self.flags |= DE;
        }
        x
    }

    /// The x86 rule for two operands of which one is a NaN (SDM Vol. 1, Table 4-7, SSE column): the first
    /// source operand's NaN wins, quieted; an SNaN operand raises IE.
    #[inline]
    fn nan2<F: Format>(&mut self, a: u64, b: u64) -> Option<u64> {
        let (na, nb) = (is_nan::<F>(a), is_nan::<F>(b));
        if !na && !nb {
            return None;
        }
        if is_snan::<F>(a) || is_snan::<F>(b) {
            self.flags |= IE;
        }
        Some(if na { quiet::<F>(a) } else { quiet::<F>(b) })
    }

    /// Rounds `m * 2^e` (plus a fraction below `m`'s last bit when `sticky`) to the format, with the x86 rules for
    /// overflow, tininess after rounding, FTZ and the flags. With `sticky`, `m` must have at least `FRAC + 3`
    /// significant bits so that the guard bits sit above the sticky fraction.
    pub(crate) fn round_pack<F: Format>(
        &mut self,
        sign: bool,
        e: i32,
        m: u128,
        sticky: bool,
    ) -> u64 {
        let s = if sign { F::SIGN } else { 0 };
        if m == 0 {
            debug_assert!(!sticky);
            return s;
        }
        let precision = F::FRAC + 1;
        let (mut e, mut m) = (e, m);
        let mut n = 128 - m.leading_zeros();
        if n < precision + 2 {
            debug_assert!(!sticky, "sticky needs guard bits");
            let k = precision + 2 - n;
            m <<= k;
            e -= k as i32;
            n = precision + 2;
        }
        debug_assert!(n <= 120);
        let top = e + n as i32 - 1;
        let emin = 1 - F::BIAS;
        let emax = F::BIAS;
        // Round to the precision with an unbounded exponent: the normal result, and the tininess test.
        let (mut q, inexact) = round_at(self.round, sign, m, sticky, n - precision);
        let mut top_rounded = top;
        if q >> precision != 0 {
            q >>= 1;
            top_rounded += 1;
        }
        if top_rounded >= emin {
            if top_rounded > emax {
                self.flags |= OE | PE;
                let to_infinity = match self.round {
                    Round::Nearest => true,
                    Round::Zero => false,
                    Round::Up => !sign,
                    Round::Down => sign,
                };
                return if to_infinity {
                    s | F::EXP_MASK
                } else {
                    s | (F::EXP_MASK - (1 << F::FRAC)) | F::FRAC_MASK
                };
            }
            if inexact {
                self.flags |= PE;
            }
            return s | (((top_rounded + F::BIAS) as u64) << F::FRAC) | (q as u64 & F::FRAC_MASK);
        }
        // Tiny. SDM Vol. 1, 10.2.3.3: with underflow masked and FTZ set, the result is a zero of the true sign and
        // both UE and PE are set.
        if self.ftz && self.underflow_masked {
            self.flags |= UE | PE;
            return s;
        }
        // Round on the denormal grid, whose last place is 2^(emin - FRAC).
        let shift = (emin - F::FRAC as i32 - e) as u32;
        let (q, inexact) = round_at(self.round, sign, m, sticky, shift);
        if inexact {
            self.flags |= UE | PE;
        } else if !self.underflow_masked {
            self.flags |= UE;
        }
        // A carry into bit FRAC gives the smallest normal, whose exponent field is 1: the packing is the same.
        s | q as u64
    }

    // ---------------------------------------------------------------------------------------------------------
    // Arithmetic.

    pub(crate) fn add<F: Format>(&mut self, a: u64, b: u64, subtract: bool) -> u64 {
        if let Some(r) = self.nan2::<F>(a, b) {
            return r;
        }
        let a = self.input::<F>(a);
        let b = self.input::<F>(b) ^ if subtract { F::SIGN } else { 0 };
        let (sa, sb) = (a & F::SIGN != 0, b & F::SIGN != 0);
        if is_inf::<F>(a) {
            if is_inf::<F>(b) && sa != sb {
                self.flags |= IE;
                return F::DEFAULT_NAN;
            }
            return a;
        }
        if is_inf::<F>(b) {
            return b;
        }
        if is_zero::<F>(a) && is_zero::<F>(b) {
            return if sa == sb {
                a
            } else if self.round == Round::Down {
                F::SIGN
            } else {
                0
            };
        }
        if is_zero::<F>(a) {
            let (s, e, m) = unpack::<F>(b);
            return self.round_pack::<F>(s, e, m as u128, false);
        }
        if is_zero::<F>(b) {
            let (s, e, m) = unpack::<F>(a);
            return self.round_pack::<F>(s, e, m as u128, false);
        }
        let (sa, ea, ma) = unpack::<F>(a);
        let (sb, eb, mb) = unpack::<F>(b);
        // Align on the larger exponent with 60 spare bits below it; anything shifted further is sticky.
        let ((s_big, e_big, m_big), (s_small, e_small, m_small)) = if ea >= eb {
            ((sa, ea, ma), (sb, eb, mb))
        } else {
            ((sb, eb, mb), (sa, ea, ma))
        };
        const SPARE: u32 = 60;
        let d = (e_big - e_small) as u32;
        let big = (m_big as u128) << SPARE;
        let (small, sticky) = if d <= SPARE {
            ((m_small as u128) << (SPARE - d), false)
        } else {
            let sh = d - SPARE;
            if sh >= 64 {
                (0, true)
            } else {
                ((m_small >> sh) as u128, m_small & ((1u64 << sh) - 1) != 0)
            }
        };
        let e = e_big - SPARE as i32;
        if s_big == s_small {
            return self.round_pack::<F>(s_big, e, big + small, sticky);
        }
        if big > small {
            // big - (small + f) with 0 < f < 1 is (big - small - 1) + (1 - f).
            self.round_pack::<F>(s_big, e, big - small - sticky as u128, sticky)
        } else if small > big {
            self.round_pack::<F>(s_small, e, small - big, false)
        } else {
            // Exact cancellation: +0, or -0 when rounding down (IEEE 754, 6.3).
            if self.round == Round::Down {
                F::SIGN
            } else {
                0
            }
        }
    }

    pub(crate) fn mul<F: Format>(&mut self, a: u64, b: u64) -> u64 {
        if let Some(r) = self.nan2::<F>(a, b) {
            return r;
        }
        let a = self.input::<F>(a);
        let b = self.input::<F>(b);
        let sign = (a ^ b) & F::SIGN != 0;
        let s = if sign { F::SIGN } else { 0 };
        if is_inf::<F>(a) || is_inf::<F>(b) {
            if is_zero::<F>(a) || is_zero::<F>(b) {
                self.flags |= IE;
                return F::DEFAULT_NAN;
            }
            return s | F::EXP_MASK;
        }
        if is_zero::<F>(a) || is_zero::<F>(b) {
            return s;
        }
        let (_, ea, ma) = unpack::<F>(a);
        let (_, eb, mb) = unpack::<F>(b);
        self.round_pack::<F>(sign, ea + eb, ma as u128 * mb as u128, false)
    }

    pub(crate) fn div<F: Format>(&mut self, a: u64, b: u64) -> u64 {
        if let Some(r) = self.nan2::<F>(a, b) {
            return r;
        }
        // A division by zero is reported alone, without DE for a denormal dividend (checked on hardware).
        let (a, b) = (self.daz::<F>(a), self.daz::<F>(b));
        if is_zero::<F>(b) && !is_inf::<F>(a) {
            let s = (a ^ b) & F::SIGN;
            if is_zero::<F>(a) {
                self.flags |= IE;
                return F::DEFAULT_NAN;
            }
            self.flags |= ZE;
            return s | F::EXP_MASK;
        }
        let a = self.input::<F>(a);
        let b = self.input::<F>(b);
        let sign = (a ^ b) & F::SIGN != 0;
        let s = if sign { F::SIGN } else { 0 };
        if is_inf::<F>(a) {
            if is_inf::<F>(b) {
                self.flags |= IE;
                return F::DEFAULT_NAN;
            }
            return s | F::EXP_MASK;
        }
        if is_inf::<F>(b) {
            return s;
        }
        if is_zero::<F>(b) {
            if is_zero::<F>(a) {
                self.flags |= IE;
                return F::DEFAULT_NAN;
            }
            self.flags |= ZE;
            return s | F::EXP_MASK;
        }
        if is_zero::<F>(a) {
            return s;
        }
        let (_, ea, ma) = unpack_normalised::<F>(a);
        let (_, eb, mb) = unpack_normalised::<F>(b);
        // Both significands have FRAC + 1 bits: the quotient has 64 or 65 bits.
        let num = (ma as u128) << 64;
        let q = num / mb as u128;
        let r = num % mb as u128;
        self.round_pack::<F>(sign, ea - eb - 64, q, r != 0)
    }

    pub(crate) fn sqrt<F: Format>(&mut self, a: u64) -> u64 {
        if is_nan::<F>(a) {
            if is_snan::<F>(a) {
                self.flags |= IE;
            }
            return quiet::<F>(a);
        }
        // A negative denormal is invalid without being a denormal-operand case (checked on hardware): the sign
        // test comes before `input`, after DAZ, which turns it into -0 whose root is -0.
        let a = if self.daz && is_denormal::<F>(a) {
            a & F::SIGN
        } else {
            a
        };
        if is_zero::<F>(a) {
            return a;
        }
        if a & F::SIGN != 0 {
            self.flags |= IE;
            return F::DEFAULT_NAN;
        }
        let a = self.input::<F>(a);
        if is_inf::<F>(a) {
            return a;
        }
        let (_, mut e, m) = unpack_normalised::<F>(a);
        let mut m = m as u128;
        if e & 1 != 0 {
            m <<= 1;
            e -= 1;
        }
        // sqrt(m * 2^e) = sqrt(m * 2^66) * 2^((e - 66) / 2); the root has at least 45 bits.
        let x = m << 66;
        let r = x.isqrt();
        self.round_pack::<F>(false, (e - 66) / 2, r, x != r * r)
    }

    /// MINSS/MINPS (or MAXSS/MAXPS with `max`): `a < b ? a : b`. A NaN operand (quiet or signalling) raises IE and
    /// gives the second operand, and so do two zeros of any sign (SDM Vol. 2, MINPS).
    pub(crate) fn min_max<F: Format>(&mut self, a: u64, b: u64, max: bool) -> u64 {
        if is_nan::<F>(a) || is_nan::<F>(b) {
            self.flags |= IE;
            // The second operand is returned as the computation sees it: flushed by DAZ (checked on hardware).
            return self.daz::<F>(b);
        }
        let a = self.input::<F>(a);
        let b = self.input::<F>(b);
        let pick_a = match compare_ordered::<F>(a, b) {
            std::cmp::Ordering::Less => !max,
            std::cmp::Ordering::Greater => max,
            std::cmp::Ordering::Equal => false,
        };
        if pick_a {
            a
        } else {
            b
        }
    }

    /// Compares two values: `None` when unordered. Any NaN raises IE when `signalling`, an SNaN always does.
    pub(crate) fn compare<F: Format>(
        &mut self,
        a: u64,
        b: u64,
        signalling: bool,
    ) -> Option<std::cmp::Ordering> {
        if is_nan::<F>(a) || is_nan::<F>(b) {
            if signalling || is_snan::<F>(a) || is_snan::<F>(b) {
                self.flags |= IE;
            }
            return None;
        }
        let a = self.input::<F>(a);
        let b = self.input::<F>(b);
        Some(compare_ordered::<F>(a, b))
    }

    // ---------------------------------------------------------------------------------------------------------
    // Conversions.

    /// A signed integer to the format, rounded by the rounding control.
    pub(crate) fn int_to_float<F: Format>(&mut self, v: i64) -> u64 {
        self.round_pack::<F>(v < 0, 0, v.unsigned_abs() as u128, false)
    }

    /// A value to a signed integer of `bits` (32 or 64) bits, rounded by the rounding control or truncated.
    /// NaN, infinity and out-of-range values raise IE and give the "integer indefinite" (only the sign bit set).
    pub(crate) fn float_to_int<F: Format>(&mut self, a: u64, bits: u32, truncate: bool) -> u64 {
        let indefinite = 1u64 << (bits - 1);
        if is_nan::<F>(a) || is_inf::<F>(a) {
            self.flags |= IE;
            return indefinite;
        }
        // DAZ applies; a denormal operand is not a DE condition for these instructions (SDM Vol. 2, CVTSS2SI).
        let a = if self.daz && is_denormal::<F>(a) {
            a & F::SIGN
        } else {
            a
        };
        if is_zero::<F>(a) {
            return 0;
        }
        let (sign, e, m) = unpack::<F>(a);
        let round = if truncate { Round::Zero } else { self.round };
        let (magnitude, inexact) = if e >= 0 {
            if e >= 64 {
                self.flags |= IE;
                return indefinite;
            }
            ((m as u128) << e, false)
        } else {
            round_at(round, sign, m as u128, false, (-e) as u32)
        };
        let limit = if sign {
            indefinite as u128
        } else {
            indefinite as u128 - 1
        };
        if magnitude > limit {
            self.flags |= IE;
            return indefinite;
        }
        if inexact {
            self.flags |= PE;
        }
        let v = if sign {
            (magnitude as u64).wrapping_neg()
        } else {
            magnitude as u64
        };
        if bits == 32 {
            v & 0xffff_ffff
        } else {
            v
        }
    }

    /// Converts between formats (binary32 to binary64 is exact, binary64 to binary32 rounds). A NaN keeps its sign
    /// and the top bits of its payload and is quieted; an SNaN raises IE.
    pub(crate) fn convert<From: Format, To: Format>(&mut self, a: u64) -> u64 {
        let sign = a & From::SIGN != 0;
        let s = if sign { To::SIGN } else { 0 };
        if is_nan::<From>(a) {
            if is_snan::<From>(a) {
                self.flags |= IE;
            }
            let frac = a & From::FRAC_MASK;
            let frac = if To::FRAC >= From::FRAC {
                frac << (To::FRAC - From::FRAC)
            } else {
                frac >> (From::FRAC - To::FRAC)
            };
            return s | To::EXP_MASK | To::QUIET | frac;
        }
        let a = self.input::<From>(a);
        if is_inf::<From>(a) {
            return s | To::EXP_MASK;
        }
        if is_zero::<From>(a) {
            return s;
        }
        let (_, e, m) = unpack::<From>(a);
        self.round_pack::<To>(sign, e, m as u128, false)
    }
}

/// Orders two non-NaN values (a zero of either sign equals the other zero).
fn compare_ordered<F: Format>(a: u64, b: u64) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    if is_zero::<F>(a) && is_zero::<F>(b) {
        return Ordering::Equal;
    }
    let key = |x: u64| -> i128 {
        let magnitude = (x & !F::SIGN & F::ALL) as i128;
        if x & F::SIGN != 0 {
            -magnitude
        } else {
            magnitude
        }
    };
    key(a).cmp(&key(b))
}

/// Drops the low `shift` bits of `m` (plus a sticky fraction below them), rounding by `round`: the rounded
/// quotient and whether anything was lost. `m` has at most 120 bits.
fn round_at(round: Round, sign: bool, m: u128, sticky: bool, shift: u32) -> (u128, bool) {
    if shift == 0 {
        debug_assert!(!sticky);
        return (m, sticky);
    }
    if shift > 121 {
        // The whole value is below half of the last place.
        let inexact = m != 0 || sticky;
        let up = inexact
            && match round {
                Round::Up => !sign,
                Round::Down => sign,
                _ => false,
            };
        return (up as u128, inexact);
    }
    let q = m >> shift;
    let rem = m & ((1u128 << shift) - 1);
    let half = 1u128 << (shift - 1);
    let inexact = rem != 0 || sticky;
    let up = match round {
        Round::Nearest => rem > half || (rem == half && (sticky || q & 1 == 1)),
        Round::Zero => false,
        Round::Up => inexact && !sign,
        Round::Down => inexact && sign,
    };
    (q + up as u128, inexact)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp() -> Fp {
        Fp::new(0x1f80)
    }

    #[test]
    fn simple_arithmetic_matches_ieee() {
        let mut f = fp();
        let r = f.add::<F64>(1.5f64.to_bits(), 2.25f64.to_bits(), false);
        assert_eq!(f64::from_bits(r), 3.75);
        let r = f.div::<F64>(1.0f64.to_bits(), 3.0f64.to_bits());
        assert_eq!(f64::from_bits(r), 1.0 / 3.0);
        assert_eq!(f.flags, PE);
        let mut f = fp();
        let r = f.sqrt::<F32>(2.0f32.to_bits() as u64);
        assert_eq!(f32::from_bits(r as u32), 2.0f32.sqrt());
    }

    #[test]
    fn rounding_modes_move_an_inexact_quotient() {
        let third = |rc: u32| {
            let mut f = Fp::new(0x1f80 | rc << RC_SHIFT);
            f.div::<F32>(1.0f32.to_bits() as u64, 3.0f32.to_bits() as u64)
        };
        let nearest = third(0);
        // 1/3 = 1.0101...b * 2^-2: the bits dropped are 1010..., more than half, so nearest rounds up.
        assert_eq!(third(1), nearest - 1);
        assert_eq!(third(2), nearest);
        assert_eq!(third(3), nearest - 1);
    }

    #[test]
    fn underflow_is_detected_after_rounding() {
        // The largest value below 2^-126 that rounds to it with an unbounded exponent is not tiny; one that
        // reaches 2^-126 only on the coarser denormal grid is.
        let min_normal = 1u64 << 23;
        let mut f = fp();
        // 2^-126 - 2^-152 rounds to 2^-126 at 24 bits with an unbounded exponent: not tiny, only inexact.
        let r = f.round_pack::<F32>(false, -152, (1u128 << 26) - 1, false);
        assert_eq!(r, min_normal);
        assert_eq!(f.flags, PE);
        let mut f = fp();
        // 2^-126 - 3 * 2^-152 rounds below 2^-126 at 24 bits (tiny), but up to 2^-126 on the denormal grid.
        let r = f.round_pack::<F32>(false, -152, (1u128 << 26) - 3, false);
        assert_eq!(r, min_normal);
        assert_eq!(f.flags, UE | PE);
    }
}
