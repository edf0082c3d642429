//! The CPUID model: a fixed, documented table. It reports baseline x86-64 plus exactly what this emulator
//! implements, so that libraries which select routines by CPUID (glibc's ifuncs) pick ones we can run.
//!
//! Two models exist (`CpuidModel`): `Baseline`, what runs today, and `Format6`, what tandem reported up to trace
//! format 6. They differ in one bit: `Baseline` reports MMX (leaf 1 EDX bit 23), which the x86-64 baseline ISA
//! level includes and which glibc's dynamic loader requires before it loads a libc.so.6 marked
//! `x86-64-baseline` ("CPU ISA level is lower than required"). `Format6` stays so that traces recorded before
//! it replay with the CPUID (and AT_HWCAP) they were recorded with.
//!
//! | leaf | what it says |
//! |---|---|
//! | 0 | max leaf 0xd, vendor "GenuineIntel" (glibc takes its best-tested path for this vendor) |
//! | 1 | family 6 model 0x3a stepping 9; EDX: FPU, TSC, CX8, CMOV, CLFSH, FXSR, SSE, SSE2, and MMX in `Baseline`; ECX: SSE3, SSSE3, CX16, POPCNT, RDRAND. No AVX, XSAVE, OSXSAVE, SSE4.x |
//! | 2 | descriptor 0xff: "use leaf 4" |
//! | 4 | deterministic caches: L1d 32 KiB 8-way, L1i 32 KiB 8-way, L2 256 KiB 4-way, L3 8 MiB 16-way, 64-byte lines |
//! | 7 | EBX: RDSEED only (no BMI1/2, no AVX2, no ERMS) |
//! | 0xd | zeros (no XSAVE) |
//! | 0x80000000 | max extended leaf 0x80000008 |
//! | 0x80000001 | ECX: LAHF-SAHF, LZCNT (ABM); EDX: SYSCALL, NX, RDTSCP, LM |
//! | 0x80000002-4 | brand "tandem virtual x86-64 CPU" |
//! | 0x80000006 | L2 256 KiB, 64-byte lines |
//! | 0x80000008 | 48 physical and 48 linear address bits |
//!
//! Any other leaf answers zeros, as hardware does above its maximum leaf for the basic range.
//! TZCNT runs with its own semantics (BMI1 is not advertised, so programs that check use BSF instead).

/// Leaf 1 EDX of `CpuidModel::Format6`: FPU, TSC, CX8, CMOV, CLFSH, FXSR, SSE, SSE2.
pub const LEAF1_EDX: u32 =
    (1 << 0) | (1 << 4) | (1 << 8) | (1 << 15) | (1 << 19) | (1 << 24) | (1 << 25) | (1 << 26);
/// Leaf 1 EDX bit 23: MMX, part of the x86-64 baseline (glibc's sysdeps/x86/get-isa-level.h).
pub const LEAF1_EDX_MMX: u32 = 1 << 23;
pub const LEAF1_ECX: u32 = (1 << 0) | (1 << 9) | (1 << 13) | (1 << 23) | (1 << 30);
pub const LEAF7_EBX: u32 = 1 << 18;
pub const EXT1_ECX: u32 = (1 << 0) | (1 << 5);
pub const EXT1_EDX: u32 = (1 << 11) | (1 << 20) | (1 << 27) | (1 << 29);

fn brand_word(n: usize) -> u32 {
    const BRAND: &[u8; 48] =
        b"tandem virtual x86-64 CPU\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";
    u32::from_le_bytes(BRAND[n * 4..n * 4 + 4].try_into().unwrap())
}

/// Cache descriptor for leaf 4, sub-leaf `n`: (type, level, ways, sets).
fn cache_leaf4(n: u32) -> [u32; 4] {
    let (ty, level, ways, size_bytes): (u32, u32, u32, u32) = match n {
        0 => (1, 1, 8, 32 << 10),
        1 => (2, 1, 8, 32 << 10),
        2 => (3, 2, 4, 256 << 10),
        3 => (3, 3, 16, 8 << 20),
        _ => return [0; 4],
    };
    let line = 64u32;
    let sets = size_bytes / (ways * line);
    let eax = ty | (level << 5) | (1 << 8);
    let ebx = (line - 1) | ((ways - 1) << 22);
    [eax, ebx, sets - 1, 0]
}

/// Which CPUID table a guest sees.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CpuidModel {
    /// The table of trace formats up to 6: no MMX bit. Old traces replay with it.
    Format6,
    /// The x86-64 baseline (MMX reported), which glibc's dynamic loader requires. The default.
    #[default]
    Baseline,
}

impl CpuidModel {
    /// Leaf 1 EDX of this model, also the guest's AT_HWCAP (Linux passes leaf 1 EDX there on x86).
    pub fn leaf1_edx(self) -> u32 {
        match self {
            CpuidModel::Format6 => LEAF1_EDX,
            CpuidModel::Baseline => LEAF1_EDX | LEAF1_EDX_MMX,
        }
    }
}

/// The model's answer to CPUID with the given eax (leaf) and ecx (sub-leaf): [eax, ebx, ecx, edx].
pub fn cpuid_of(model: CpuidModel, leaf: u32, subleaf: u32) -> [u32; 4] {
    match leaf {
        1 => [
            0x0003_06a9,
            (8 << 8) | (1 << 16),
            LEAF1_ECX,
            model.leaf1_edx(),
        ],
        _ => cpuid(leaf, subleaf),
    }
}

/// The answer of `CpuidModel::Format6` (every leaf but 1 is the same in both models).
pub fn cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    match leaf {
        0 => [
            0xd,
            u32::from_le_bytes(*b"Genu"),
            u32::from_le_bytes(*b"ntel"),
            u32::from_le_bytes(*b"ineI"),
        ],
        // Family 6, model 0x3a, stepping 9; CLFLUSH line size 8 quadwords; one logical processor.
        1 => [0x0003_06a9, (8 << 8) | (1 << 16), LEAF1_ECX, LEAF1_EDX],
        2 => [0x0000_00ff, 0, 0, 0],
        4 => cache_leaf4(subleaf),
        7 if subleaf == 0 => [0, LEAF7_EBX, 0, 0],
        0x8000_0000 => [0x8000_0008, 0, 0, 0],
        0x8000_0001 => [0, 0, EXT1_ECX, EXT1_EDX],
        0x8000_0002..=0x8000_0004 => {
            let base = ((leaf - 0x8000_0002) * 4) as usize;
            [
                brand_word(base),
                brand_word(base + 1),
                brand_word(base + 2),
                brand_word(base + 3),
            ]
        }
        0x8000_0006 => [0, 0, (256 << 16) | (4 << 12) | 64, 0],
        0x8000_0008 => [0x3030, 0, 0, 0],
        _ => [0; 4],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_and_brand_read_back() {
        let [_, b, c, d] = cpuid(0, 0);
        let mut v = Vec::new();
        for w in [b, d, c] {
            v.extend_from_slice(&w.to_le_bytes());
        }
        assert_eq!(&v, b"GenuineIntel");
        let mut brand = Vec::new();
        for leaf in 0x8000_0002..=0x8000_0004u32 {
            for w in cpuid(leaf, 0) {
                brand.extend_from_slice(&w.to_le_bytes());
            }
        }
        assert!(brand.starts_with(b"tandem virtual x86-64 CPU\0"));
    }

    #[test]
    fn no_avx_no_xsave_is_advertised() {
        let [_, _, ecx, _] = cpuid(1, 0);
        assert_eq!(
            ecx & ((1 << 28) | (1 << 27) | (1 << 26) | (1 << 19) | (1 << 20)),
            0
        );
        let [_, ebx, _, _] = cpuid(7, 0);
        assert_eq!(
            ebx & ((1 << 5) | (1 << 3) | (1 << 8) | (1 << 9)),
            0,
            "no AVX2, BMI1, BMI2, ERMS"
        );
    }

    #[test]
    fn the_models_differ_only_in_the_mmx_bit() {
        for leaf in (0..0x20).chain(0x8000_0000..0x8000_0010) {
            for subleaf in 0..5 {
                let old = cpuid_of(CpuidModel::Format6, leaf, subleaf);
                let new = cpuid_of(CpuidModel::Baseline, leaf, subleaf);
                assert_eq!(old, cpuid(leaf, subleaf));
                if leaf == 1 {
                    assert_eq!(new[3], old[3] | LEAF1_EDX_MMX);
                    assert_eq!(old[3] & LEAF1_EDX_MMX, 0, "format 6 never reported MMX");
                    assert_eq!(new[..3], old[..3]);
                } else {
                    assert_eq!(new, old, "leaf {leaf:#x}.{subleaf}");
                }
            }
        }
        // The x86-64 baseline of glibc: CMOV, CX8, FPU, FXSR, MMX, SSE, SSE2.
        let baseline = (1 << 15) | (1 << 8) | 1 | (1 << 24) | (1 << 23) | (1 << 25) | (1 << 26);
        assert_eq!(cpuid_of(CpuidModel::Baseline, 1, 0)[3] & baseline, baseline);
    }

    #[test]
    fn leaf4_describes_a_32k_l1d() {
        let [eax, ebx, ecx, _] = cpuid(4, 0);
        assert_eq!(eax & 0x1f, 1);
        let ways = (ebx >> 22) + 1;
        let line = (ebx & 0xfff) + 1;
        assert_eq!(ways * line * (ecx + 1), 32 << 10);
    }
}
