//! Known-answer tests for every digest a trace stores: FNV-1a (against its published vectors), the word digest,
//! the page digests of formats 3 and 4+, the memory digests, register and fine hashes in both schemes. The
//! values were computed by the implementation of format 6 and are frozen here: a change to how a stored digest
//! is computed must fail these and come with a new trace format version, or old traces stop verifying.

use tandem_emulator::cpu::x87::{F80, X87};
use tandem_emulator::cpu::Registers;
use tandem_emulator::memory::{
    page_digest, page_digest_lanes, Fnv, Memory, PageBytes, Perms, WordDigest, PAGE_SIZE,
};
use tandem_replay::digest::{
    digest_of_pages, fine_hash, register_file, register_hash, DigestScheme, MemoryDigest, PageMap,
};

/// A fixed, irregular byte pattern (Knuth's multiplicative hash of the index), seeded by `salt`.
fn pattern(len: usize, salt: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_add(salt).wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

fn page(salt: u32) -> PageBytes {
    pattern(PAGE_SIZE, salt).try_into().unwrap()
}

#[test]
fn fnv1a_64_matches_its_published_test_vectors() {
    // From the FNV reference (Fowler, Noll, Vo: test vectors of FNV-1a 64).
    for (input, expected) in [
        (&b""[..], 0xcbf2_9ce4_8422_2325u64),
        (b"a", 0xaf63_dc4c_8601_ec8c),
        (b"foobar", 0x8594_4171_f739_67e8),
    ] {
        let mut h = Fnv::new();
        h.write_bytes(input);
        assert_eq!(h.finish(), expected, "FNV-1a of {input:?}");
    }
    let mut words = Fnv::new();
    words.write_u64(u64::from_le_bytes(*b"foobar\0\0"));
    let mut bytes = Fnv::new();
    bytes.write_bytes(b"foobar\0\0");
    assert_eq!(
        words.finish(),
        bytes.finish(),
        "write_u64 is little-endian bytes"
    );
}

#[test]
fn word_digest_known_answers() {
    let mut h = WordDigest::new();
    assert_eq!(h.finish(), 0xcbf2_9ce4_8422_2325);
    for w in [0u64, 1, u64::MAX, 0x0123_4567_89ab_cdef] {
        h.write_u64(w);
    }
    assert_eq!(h.finish(), KAT_WORD);
}

#[test]
fn page_digests_known_answers() {
    assert_eq!(page_digest(&[]), KAT_PAGE_EMPTY);
    assert_eq!(page_digest(&pattern(13, 1)), KAT_PAGE_13);
    assert_eq!(page_digest(&page(2)), KAT_PAGE_FULL);
    assert_eq!(page_digest(&[0u8; PAGE_SIZE]), KAT_PAGE_ZERO);
    assert_eq!(page_digest_lanes(&page(2)), KAT_LANES_FULL);
    assert_eq!(page_digest_lanes(&[0u8; PAGE_SIZE]), KAT_LANES_ZERO);
    // One bit anywhere changes both.
    let mut flipped = page(2);
    flipped[4095] ^= 0x80;
    assert_ne!(page_digest(&flipped), KAT_PAGE_FULL);
    assert_ne!(page_digest_lanes(&flipped), KAT_LANES_FULL);
}

/// Three pages: read-write with a pattern, read-only zeros, executable with another pattern.
fn memory() -> Memory {
    let mut mem = Memory::new();
    mem.map_anonymous(0x10000, 0x1000, Perms::RW).unwrap();
    mem.map_anonymous(0x20000, 0x1000, Perms::READ).unwrap();
    mem.map_anonymous(0x7fff_0000_0000, 0x1000, Perms::RWX)
        .unwrap();
    mem.write_bytes(0x10000, &page(3)).unwrap();
    mem.write_bytes(0x7fff_0000_0000, &pattern(100, 4)).unwrap();
    mem.protect(0x7fff_0000_0000, 0x1000, Perms::RX).unwrap();
    mem
}

#[test]
fn memory_digests_known_answers() {
    let mut mem = memory();
    assert_eq!(mem.digest(), KAT_MEMORY_STATE);
    for (scheme, expected) in [
        (DigestScheme::Ordered, KAT_MEMORY_ORDERED),
        (DigestScheme::Summed, KAT_MEMORY_SUMMED),
    ] {
        let mut digest = MemoryDigest::new(scheme);
        let (value, changes) = digest.update(&mut mem, 0);
        assert_eq!(value, expected, "{scheme:?}");
        // The page list a trace stores rebuilds the same value.
        let mut map = PageMap::new();
        tandem_replay::digest::apply_page_changes(&mut map, &changes);
        assert_eq!(map.len(), 3);
        assert_eq!(digest_of_pages(&map, scheme), expected, "{scheme:?}");
    }
}

fn registers() -> Registers {
    let mut x87 = X87::default();
    x87.regs[1] = F80 {
        significand: 0xc000_0000_0000_0000,
        sign_exponent: 0x3fff,
    };
    x87.top = 7;
    x87.tag = 0x3fff;
    let mut gpr = [0u64; 16];
    for (i, g) in gpr.iter_mut().enumerate() {
        *g = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    let mut xmm = [0u128; 16];
    for (i, x) in xmm.iter_mut().enumerate() {
        *x = (i as u128 + 7).wrapping_mul(0x0123_4567_89ab_cdef_fedc_ba98_7654_3211);
    }
    Registers {
        gpr,
        rip: 0x40_1000,
        rflags: 0x246,
        fs_base: 0x4c_8000,
        gs_base: 0,
        xmm,
        mxcsr: 0x1f80,
        x87,
    }
}

#[test]
fn register_hashes_known_answers() {
    let r = registers();
    for (scheme, x87, hash) in [
        (DigestScheme::Ordered, KAT_X87_ORDERED, KAT_REGS_ORDERED),
        (DigestScheme::Summed, KAT_X87_SUMMED, KAT_REGS_SUMMED),
    ] {
        let file = register_file(&r, scheme);
        assert_eq!(file.x87_digest, x87, "{scheme:?}");
        assert_eq!(register_hash(&file, scheme), hash, "{scheme:?}");
        assert_eq!(fine_hash(&r, scheme), hash, "{scheme:?}");
    }
}

const KAT_WORD: u64 = 0xbc073494ece6d1f3;
const KAT_PAGE_EMPTY: u64 = 0xcbf29ce484222325;
const KAT_PAGE_13: u64 = 0x5d7bfff31243c246;
const KAT_PAGE_FULL: u64 = 0x379d135234478d34;
const KAT_PAGE_ZERO: u64 = 0x2baf5e920923e97a;
const KAT_LANES_FULL: u64 = 0x17a198a4c01884ca;
const KAT_LANES_ZERO: u64 = 0x9ef72c68a8667f06;
const KAT_MEMORY_STATE: u64 = 0x54f31211ce859432;
const KAT_MEMORY_ORDERED: u64 = 0x8e1c05873926a6f2;
const KAT_MEMORY_SUMMED: u64 = 0x6e19e574d1abb6b9;
const KAT_X87_ORDERED: u64 = 0xfcc94857f2c1e8d4;
const KAT_X87_SUMMED: u64 = 0xe77089dfd50aca14;
const KAT_REGS_ORDERED: u64 = 0x496b809fcec969b1;
const KAT_REGS_SUMMED: u64 = 0x321000c33bbdd30b;
