//! State digests for checkpoints: the registers (kept whole, so a divergence shows which differ), a hash of
//! them (the fine hashes between checkpoints), and an incremental digest of memory.
//!
//! `MemoryDigest` hashes each mapped page once and then only the pages whose frame changed or was written
//! (through a dirty cursor of its own per space, `Memory::dirty_since`), so a checkpoint costs in proportion to what the
//! guest wrote, not to what it mapped. Its value is a function of the run's history: the recorder and the
//! replayer update it at the same icounts, so they compute the same values for the same run. After a restore
//! the cache is stale and must be reset (`MemoryDigest::reset`).
//!
//! Each update also lists what changed since the previous one (`PageChanges`: the pages it had to hash again or
//! whose permissions changed, and the pages unmapped); the recorder stores that list after each checkpoint
//! (format 3), so that a replay can rebuild the recording's digest of every page (`apply_page_changes`) and
//! name the pages that differ (`page_differences`) instead of only knowing that memory does.

use crate::trace::{PageChanges, PageDigest, RegisterFile};
use std::collections::{BTreeMap, BTreeSet};
use tandem_emulator::cpu::Registers;
use tandem_emulator::memory::{
    page_digest, page_digest_lanes, DirtyCursor, Fnv, FrameId, Memory, WordDigest,
};

/// The registers as a trace stores them, the x87 state as a digest in the trace's scheme.
pub fn register_file(r: &Registers, scheme: DigestScheme) -> RegisterFile {
    let words = r
        .x87
        .regs
        .iter()
        .flat_map(|v| [v.significand, v.sign_exponent as u64])
        .chain([
            r.x87.top as u64,
            r.x87.control as u64,
            r.x87.status as u64,
            r.x87.tag as u64,
        ]);
    let x87_digest = hash_words(scheme, words);
    RegisterFile {
        gpr: r.gpr,
        rip: r.rip,
        rflags: r.rflags,
        fs_base: r.fs_base,
        gs_base: r.gs_base,
        xmm: r.xmm,
        mxcsr: r.mxcsr,
        x87_digest,
    }
}

/// Words hashed in a scheme: FNV-1a a byte at a time (`Ordered`) or `WordDigest` (`Summed`).
fn hash_words(scheme: DigestScheme, words: impl IntoIterator<Item = u64>) -> u64 {
    match scheme {
        DigestScheme::Ordered => {
            let mut h = Fnv::new();
            words.into_iter().for_each(|w| h.write_u64(w));
            h.finish()
        }
        DigestScheme::Summed => {
            let mut h = WordDigest::new();
            words.into_iter().for_each(|w| h.write_u64(w));
            h.finish()
        }
    }
}

/// The hash of a register file, in a trace's scheme.
pub fn register_hash(r: &RegisterFile, scheme: DigestScheme) -> u64 {
    let scalars = [
        r.rip,
        r.rflags,
        r.fs_base,
        r.gs_base,
        r.mxcsr as u64,
        r.x87_digest,
    ];
    let xmm = r.xmm.iter().flat_map(|&x| [x as u64, (x >> 64) as u64]);
    hash_words(scheme, r.gpr.into_iter().chain(scalars).chain(xmm))
}

/// A fine hash: the hash of the CPU's registers, recorded every `fine_interval` instructions.
pub fn fine_hash(r: &Registers, scheme: DigestScheme) -> u64 {
    register_hash(&register_file(r, scheme), scheme)
}

/// Every register by name with its value, in a fixed order, for divergence reports.
pub fn named_registers(r: &RegisterFile) -> Vec<(String, u128)> {
    let mut out: Vec<(String, u128)> = tandem_emulator::cpu::GPR_NAMES
        .iter()
        .zip(r.gpr)
        .map(|(n, v)| (n.to_string(), v as u128))
        .collect();
    out.push(("rip".into(), r.rip as u128));
    out.push(("rflags".into(), r.rflags as u128));
    out.push(("fs_base".into(), r.fs_base as u128));
    out.push(("gs_base".into(), r.gs_base as u128));
    for (i, x) in r.xmm.iter().enumerate() {
        out.push((format!("xmm{i}"), *x));
    }
    out.push(("mxcsr".into(), r.mxcsr as u128));
    out.push(("x87 (digest)".into(), r.x87_digest as u128));
    out
}

/// The values of `named_registers`, in the same order, without the names (for comparisons on every step).
pub fn register_values(r: &RegisterFile) -> Vec<u128> {
    let mut out: Vec<u128> = r.gpr.iter().map(|&v| v as u128).collect();
    out.extend([r.rip, r.rflags, r.fs_base, r.gs_base].map(|v| v as u128));
    out.extend(r.xmm);
    out.push(r.mxcsr as u128);
    out.push(r.x87_digest as u128);
    out
}

/// The registers that differ between two register files: (name, first, second).
pub fn register_differences(a: &RegisterFile, b: &RegisterFile) -> Vec<(String, u128, u128)> {
    named_registers(a)
        .into_iter()
        .zip(named_registers(b))
        .filter(|(x, y)| x.1 != y.1)
        .map(|(x, y)| (x.0, x.1, y.1))
        .collect()
}

/// Each page's state as the checkpoint digests see it: guest address -> (permission bits, `page_digest`).
pub type PageMap = BTreeMap<u64, (u8, u64)>;

/// Brings `map` from one checkpoint to the next with that checkpoint's recorded changes.
pub fn apply_page_changes(map: &mut PageMap, changes: &PageChanges) {
    for a in &changes.unmapped {
        map.remove(a);
    }
    for p in &changes.changed {
        map.insert(p.address, (p.perms, p.digest));
    }
}

/// The memory digest of a checkpoint from its page map: what `MemoryDigest::update` returns for the same pages.
pub fn digest_of_pages(map: &PageMap, scheme: DigestScheme) -> u64 {
    combine_pages(scheme, map.iter().map(|(&a, &(p, d))| (a, p, d)))
}

/// The memory digest of (address, permission bits, bytes' digest) for every page, in address order.
fn combine_pages(scheme: DigestScheme, pages: impl Iterator<Item = (u64, u8, u64)>) -> u64 {
    match scheme {
        DigestScheme::Ordered => {
            let mut h = Fnv::new();
            for (address, perms, digest) in pages {
                h.write_u64(address >> 12);
                h.write_u64(perms as u64);
                h.write_u64(digest);
            }
            h.finish()
        }
        DigestScheme::Summed => mix64(sum_of_terms(pages)),
    }
}

/// The wrapping sum of the pages' `page_term`s, which `Summed` digests (and `MemoryDigest` keeps up to date).
fn sum_of_terms(pages: impl Iterator<Item = (u64, u8, u64)>) -> u64 {
    pages.fold(0u64, |s, (a, p, d)| s.wrapping_add(page_term(a, p, d)))
}

/// A page that differs between the recording and the replay at a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageDifference {
    pub address: u64,
    /// (permission bits, digest) in the recording; None when the page was not mapped there.
    pub recorded: Option<(u8, u64)>,
    /// The same in the replay.
    pub replayed: Option<(u8, u64)>,
    /// Whether the recording changed the page (wrote, mapped, re-protected or unmapped it) since the previous
    /// checkpoint.
    pub written_recorded: bool,
    /// Whether the replay did.
    pub written_replayed: bool,
}

/// The pages that differ at a checkpoint: those whose permissions or digest differ (or that are mapped on one
/// side only), and those that only one of the two changed since the previous checkpoint even if they ended up
/// alike. `recorded` and `replayed` are the page maps at the checkpoint; the changes are those of its interval.
/// In address order.
pub fn page_differences(
    recorded: &PageMap,
    replayed: &PageMap,
    recorded_changes: &PageChanges,
    replayed_changes: &PageChanges,
) -> Vec<PageDifference> {
    let written = |c: &PageChanges| -> BTreeSet<u64> {
        c.changed
            .iter()
            .map(|p| p.address)
            .chain(c.unmapped.iter().copied())
            .collect()
    };
    let (written_recorded, written_replayed) =
        (written(recorded_changes), written(replayed_changes));
    let mut addresses: BTreeSet<u64> = written_recorded
        .symmetric_difference(&written_replayed)
        .copied()
        .collect();
    for (a, v) in recorded {
        if replayed.get(a) != Some(v) {
            addresses.insert(*a);
        }
    }
    for a in replayed.keys() {
        if !recorded.contains_key(a) {
            addresses.insert(*a);
        }
    }
    addresses
        .into_iter()
        .map(|address| PageDifference {
            address,
            recorded: recorded.get(&address).copied(),
            replayed: replayed.get(&address).copied(),
            written_recorded: written_recorded.contains(&address),
            written_replayed: written_replayed.contains(&address),
        })
        .collect()
}

/// How a trace's state digests are computed, by format version.
///
/// - `Ordered` (formats 2 and 3): register hashes are FNV-1a a byte at a time; the memory digest is FNV-1a over
///   every page's (page number, permissions, bytes' digest) in address order, so an update walks every page.
/// - `Summed` (format 4): register hashes and the x87 digest go a word at a time (`WordDigest`), page digests on
///   four lanes (`page_digest_lanes`); the memory digest is the wrapping sum of a mix of each page's (page
///   number, permissions, bytes' digest), which does not depend on order, so an update adds and subtracts only
///   the pages that changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DigestScheme {
    Ordered,
    Summed,
}

impl DigestScheme {
    /// The scheme of a trace of format `version`.
    pub fn of_format(version: u32) -> DigestScheme {
        if version >= 4 {
            DigestScheme::Summed
        } else {
            DigestScheme::Ordered
        }
    }
}

/// splitmix64's finaliser: every input bit reaches every output bit.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One page's term of the summed memory digest.
fn page_term(address: u64, perms: u8, digest: u64) -> u64 {
    mix64(mix64((address >> 12) << 8 | perms as u64) ^ digest)
}

/// The incremental memory digest: the recorder and the replayer each keep one and update it at every checkpoint.
///
/// Per address space: each process's memory is digested on its own, its pages keyed by their address tagged
/// with the space's key in bits 48 and up (`space_tag`; space 0, the first program's, untagged, so a
/// single-process run digests exactly as before processes existed and older traces verify). An update
/// brings the running space up to date (the others are brought up to date when they next run: their own dirty
/// epochs keep what they wrote meanwhile) and drops the spaces that no longer exist, listing their pages as
/// unmapped. The digest is the mix of the sum over every space's pages, so it is `digest_of_pages` of the
/// tagged page map.
pub struct MemoryDigest {
    scheme: DigestScheme,
    /// By address-space key.
    spaces: BTreeMap<u32, SpaceDigest>,
}

/// The tag of a space's page addresses: its key in bits 48 and up (guest addresses are below 2^47). Keys
/// wrap at 2^16, after as many processes and execs.
pub fn space_tag(space: u32) -> u64 {
    ((space & 0xffff) as u64) << 48
}

/// One address space's part of the digest.
struct SpaceDigest {
    /// `space_tag` of the space.
    tag: u64,
    /// Every mapped page as of the last update, in address order: (virtual page number, frame, permission bits,
    /// digest of the page's bytes).
    pages: Vec<(u64, u32, u8, u64)>,
    /// (frame, index in `pages`) in frame order: the pages a dirty frame backs. Valid while the memory's page
    /// table is unchanged (`Memory::map_generation`).
    by_frame: Vec<(u32, u32)>,
    /// The wrapping sum of `page_term` over `pages`.
    sum: u64,
    /// This digest's dirty cursor on the memory and its map generation, taken at the last update. When the
    /// cursor still knows and the generation is unchanged at the next one, only the pages of the frames written
    /// since can have changed.
    seen: Option<(DirtyCursor, u64)>,
}

impl MemoryDigest {
    pub fn new(scheme: DigestScheme) -> MemoryDigest {
        MemoryDigest {
            scheme,
            spaces: BTreeMap::new(),
        }
    }

    /// Forgets every page: the next update lists every page as changed.
    pub fn reset(&mut self) {
        self.spaces.clear();
    }

    /// `update_space` for a guest with one address space, key 0.
    pub fn update(&mut self, mem: &mut Memory, icount: u64) -> (u64, PageChanges) {
        self.update_space(mem, 0, &[0], icount)
    }

    /// Brings the digest of the running address space `space` (whose memory is `mem`) up to date and starts a
    /// new dirty epoch in it; forgets the spaces not in `live`. Returns the digest of all pages of every space
    /// and what changed since the previous update (every page, the first time), for checkpoint `icount`.
    ///
    /// Cost: when the page table did not change since the previous update (the usual case), a digest of each
    /// page whose frame was written and nothing else; otherwise one walk of the page table beside the previous
    /// update's pages. The `Ordered` scheme (old traces) also walks every page to combine them.
    ///
    /// Listed as changed: the pages hashed again because their frame was written, replaced or newly mapped,
    /// and the pages whose permissions changed; as unmapped, those no longer mapped, and every page of a space
    /// that is gone. If the dirty epoch was broken since the previous update (the memory was restored), every
    /// page is hashed again and those whose digest or permissions differ are listed.
    pub fn update_space(
        &mut self,
        mem: &mut Memory,
        space: u32,
        live: &[u32],
        icount: u64,
    ) -> (u64, PageChanges) {
        debug_assert!(live.contains(&space), "the running space is live");
        let mut changes = PageChanges {
            icount,
            changed: Vec::new(),
            unmapped: Vec::new(),
        };
        let gone: Vec<u32> = self
            .spaces
            .keys()
            .copied()
            .filter(|k| !live.contains(k))
            .collect();
        for key in gone {
            if let Some(d) = self.spaces.remove(&key) {
                changes
                    .unmapped
                    .extend(d.page_entries().map(|(address, ..)| address));
            }
        }
        let scheme = self.scheme;
        self.spaces
            .entry(space)
            .or_insert_with(|| SpaceDigest::new(space_tag(space)))
            .update(mem, scheme, &mut changes);
        changes.changed.sort_unstable_by_key(|p| p.address);
        changes.unmapped.sort_unstable();
        let digest = match self.scheme {
            DigestScheme::Summed => mix64(
                self.spaces
                    .values()
                    .fold(0u64, |sum, d| sum.wrapping_add(d.sum)),
            ),
            DigestScheme::Ordered => combine_pages(self.scheme, self.page_entries()),
        };
        (digest, changes)
    }

    /// Every page as of the last update (addresses tagged with their space).
    pub fn page_map(&self) -> PageMap {
        self.page_entries().map(|(a, p, d)| (a, (p, d))).collect()
    }

    /// (tagged address, permission bits, bytes' digest) of every page as of the last update, in address order
    /// (spaces in key order, so tags ascend).
    fn page_entries(&self) -> impl Iterator<Item = (u64, u8, u64)> + '_ {
        self.spaces.values().flat_map(SpaceDigest::page_entries)
    }
}

impl SpaceDigest {
    fn new(tag: u64) -> SpaceDigest {
        SpaceDigest {
            tag,
            pages: Vec::new(),
            by_frame: Vec::new(),
            sum: 0,
            seen: None,
        }
    }

    /// See `MemoryDigest::update_space`: this space's part.
    fn update(&mut self, mem: &mut Memory, scheme: DigestScheme, changes: &mut PageChanges) {
        // In frame order (`Memory::dirty_since`), so a binary search answers membership. None: unknown (a restore
        // or the first update), every page is hashed again.
        let dirty: Option<Vec<u32>> = self
            .seen
            .and_then(|(cursor, _)| mem.dirty_since(&cursor))
            .map(|d| d.into_iter().map(|f| f.0).collect());
        let same_map = dirty.is_some() && self.seen.is_some_and(|(_, g)| g == mem.map_generation());
        // This digest's new cursor: the next update sees only frames written after this one. Other consumers'
        // cursors are not affected.
        let cursor = mem.dirty_cursor();
        if let (true, Some(dirty)) = (same_map, &dirty) {
            debug_assert!(dirty.windows(2).all(|w| w[0] < w[1]));
            let dirty = dirty.iter().copied();
            for frame in dirty {
                let first = self.by_frame.partition_point(|&(f, _)| f < frame);
                for &(f, index) in &self.by_frame[first..] {
                    if f != frame {
                        break;
                    }
                    let page = &mut self.pages[index as usize];
                    let (addr, perms) = ((page.0 << 12) | self.tag, page.2);
                    let digest = digest_frame(mem, frame, scheme);
                    self.sum = self
                        .sum
                        .wrapping_sub(page_term(addr, perms, page.3))
                        .wrapping_add(page_term(addr, perms, digest));
                    page.3 = digest;
                    changes.changed.push(PageDigest {
                        address: addr,
                        perms,
                        digest,
                    });
                }
            }
        } else {
            self.walk(mem, scheme, dirty.as_deref(), changes);
        }
        self.seen = Some((cursor, mem.map_generation()));
    }

    /// The update after a change of the page table: walks it beside the previous update's pages. `dirty` is
    /// the frames written since then, or None if that is unknown (every page is hashed again).
    fn walk(
        &mut self,
        mem: &Memory,
        scheme: DigestScheme,
        dirty: Option<&[u32]>,
        changes: &mut PageChanges,
    ) {
        let tag = self.tag;
        let mut pages = Vec::with_capacity(self.pages.len());
        // The previous update's pages not yet passed.
        let mut old = self.pages.iter().peekable();
        for (vpn, frame, perms) in mem.page_entries() {
            let (perms, frame, addr) = (perms.0, frame.0, (vpn << 12) | tag);
            while let Some(&&(v, ..)) = old.peek() {
                if v >= vpn {
                    break;
                }
                changes.unmapped.push((v << 12) | tag);
                old.next();
            }
            let before = old.next_if(|&&(v, ..)| v == vpn).copied();
            let clean = |f: u32| dirty.is_some_and(|d| f == frame && d.binary_search(&f).is_err());
            let digest = match before {
                Some((_, f, p, d)) if clean(f) => {
                    if p != perms {
                        changes.changed.push(PageDigest {
                            address: addr,
                            perms,
                            digest: d,
                        });
                    }
                    d
                }
                _ => {
                    let d = digest_frame(mem, frame, scheme);
                    // Unknown history: list the page only if it is not what it was.
                    let same = dirty.is_none()
                        && before.is_some_and(|(_, _, p, old)| p == perms && old == d);
                    if !same {
                        changes.changed.push(PageDigest {
                            address: addr,
                            perms,
                            digest: d,
                        });
                    }
                    d
                }
            };
            pages.push((vpn, frame, perms, digest));
        }
        changes.unmapped.extend(old.map(|&(v, ..)| (v << 12) | tag));
        self.pages = pages;
        self.sum = sum_of_terms(self.page_entries());
        self.by_frame = self
            .pages
            .iter()
            .enumerate()
            .map(|(i, &(_, frame, ..))| (frame, i as u32))
            .collect();
        self.by_frame.sort_unstable();
    }

    /// (tagged address, permission bits, bytes' digest) of every page as of the last update, in address order.
    fn page_entries(&self) -> impl Iterator<Item = (u64, u8, u64)> + '_ {
        let tag = self.tag;
        self.pages
            .iter()
            .map(move |&(vpn, _, perms, digest)| ((vpn << 12) | tag, perms, digest))
    }
}

/// The digest of a frame's bytes, or `u64::MAX` for a poisoned frame (which nobody may read).
fn digest_frame(mem: &Memory, frame: u32, scheme: DigestScheme) -> u64 {
    mem.frame_bytes(FrameId(frame))
        .map_or(u64::MAX, |bytes| match scheme {
            DigestScheme::Ordered => page_digest(&bytes[..]),
            DigestScheme::Summed => page_digest_lanes(bytes),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_follow_the_names() {
        let mut r = RegisterFile {
            gpr: [0; 16],
            rip: 1,
            rflags: 2,
            fs_base: 3,
            gs_base: 4,
            xmm: [0; 16],
            mxcsr: 5,
            x87_digest: 6,
        };
        r.gpr[2] = 7;
        r.xmm[3] = 8;
        let named = named_registers(&r);
        let values = register_values(&r);
        assert_eq!(named.len(), values.len());
        for ((_, a), b) in named.iter().zip(&values) {
            assert_eq!(a, b);
        }
    }

    fn changes(icount: u64, written: &[u64]) -> PageChanges {
        PageChanges {
            icount,
            changed: written
                .iter()
                .map(|&address| PageDigest {
                    address,
                    perms: 3,
                    digest: 0,
                })
                .collect(),
            unmapped: vec![],
        }
    }

    #[test]
    fn page_differences_are_content_mapping_and_one_sided_writes() {
        let (a, b, c, d, e) = (0x1000, 0x2000, 0x3000, 0x4000, 0x5000);
        let recorded: PageMap = [(a, (3, 1)), (b, (3, 2)), (c, (5, 3)), (e, (3, 5))].into();
        let replayed: PageMap = [(a, (3, 1)), (b, (3, 9)), (d, (3, 4)), (e, (3, 5))].into();
        // a: the same bytes, but only the recording wrote it; e: written by both, alike: not a difference.
        let found = page_differences(
            &recorded,
            &replayed,
            &changes(8, &[a, e]),
            &changes(8, &[b, e]),
        );
        let summary: Vec<_> = found
            .iter()
            .map(|p| {
                (
                    p.address,
                    p.recorded,
                    p.replayed,
                    p.written_recorded,
                    p.written_replayed,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (a, Some((3, 1)), Some((3, 1)), true, false),
                (b, Some((3, 2)), Some((3, 9)), false, true),
                (c, Some((5, 3)), None, false, false),
                (d, None, Some((3, 4)), false, false),
            ]
        );
        assert!(
            page_differences(&recorded, &recorded, &changes(8, &[a]), &changes(8, &[a])).is_empty()
        );
        // Permissions alone make a difference.
        let reprotected: PageMap = [(a, (1, 1)), (b, (3, 2)), (c, (5, 3)), (e, (3, 5))].into();
        let found = page_differences(&recorded, &reprotected, &changes(8, &[]), &changes(8, &[]));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].replayed, Some((1, 1)));
    }

    /// The changes listed at each update, applied from the first, give the digest's page map, whose digest is
    /// the update's: a replay can rebuild the recording's pages from the trace.
    #[test]
    fn listed_changes_rebuild_the_page_map_and_its_digest() {
        for scheme in [DigestScheme::Ordered, DigestScheme::Summed] {
            listed_changes_rebuild(scheme);
        }
    }

    fn listed_changes_rebuild(scheme: DigestScheme) {
        use tandem_emulator::memory::Perms;
        let mut mem = Memory::new();
        mem.map_anonymous(0x10000, 0x4000, Perms::RW).unwrap();
        let mut digest = MemoryDigest::new(scheme);
        let mut rebuilt = PageMap::new();
        let mut step = |mem: &mut Memory, icount: u64| {
            let (d, c) = digest.update(mem, icount);
            assert_eq!(c.icount, icount);
            apply_page_changes(&mut rebuilt, &c);
            assert_eq!(rebuilt, digest.page_map());
            assert_eq!(digest_of_pages(&rebuilt, scheme), d);
            c
        };
        let first = step(&mut mem, 1);
        assert_eq!(first.changed.len(), 4, "every page the first time");
        let quiet = step(&mut mem, 2);
        assert!(quiet.changed.is_empty() && quiet.unmapped.is_empty());
        mem.write_bytes(0x11008, b"replay").unwrap();
        let written = step(&mut mem, 3);
        let addresses: Vec<u64> = written.changed.iter().map(|p| p.address).collect();
        assert_eq!(addresses, vec![0x11000]);
        mem.protect(0x12000, 0x1000, Perms::READ).unwrap();
        mem.unmap(0x13000, 0x1000).unwrap();
        let moved = step(&mut mem, 4);
        assert_eq!(
            moved.changed,
            vec![PageDigest {
                address: 0x12000,
                perms: Perms::READ.0,
                digest: first.changed[2].digest
            }]
        );
        assert_eq!(moved.unmapped, vec![0x13000]);
        // A page unmapped before the others and one mapped after them.
        mem.unmap(0x10000, 0x1000).unwrap();
        mem.map_anonymous(0x20000, 0x1000, Perms::RW).unwrap();
        let remapped = step(&mut mem, 5);
        let addresses: Vec<u64> = remapped.changed.iter().map(|p| p.address).collect();
        assert_eq!(addresses, vec![0x20000]);
        assert_eq!(remapped.unmapped, vec![0x10000]);
    }

    /// Two address spaces with the same pages (a fork before either writes) are digested apart: their pages
    /// are keyed by space, so the digest of both is not that of one, and a write in the child is seen at the
    /// child's update even though the parent's memory (with the same epoch numbers) was updated in between.
    /// Space 0 alone digests as `update` always has; a space that ends has its pages listed as unmapped.
    #[test]
    fn address_spaces_are_digested_apart_and_space_zero_is_untagged() {
        use tandem_emulator::memory::Perms;
        for scheme in [DigestScheme::Ordered, DigestScheme::Summed] {
            let mut parent = Memory::new();
            parent.map_anonymous(0x10000, 0x2000, Perms::RW).unwrap();
            parent.write_bytes(0x10008, b"parent").unwrap();
            let mut child = parent.fork();
            let alone = MemoryDigest::new(scheme).update(&mut parent.fork(), 1).0;
            let mut digest = MemoryDigest::new(scheme);
            let (d0, c0) = digest.update_space(&mut parent, 0, &[0, 3], 1);
            assert_eq!(d0, alone, "space 0 is untagged");
            assert!(c0.changed.iter().all(|p| p.address < 1 << 48));
            let (both, c1) = digest.update_space(&mut child, 3, &[0, 3], 2);
            assert_ne!(both, d0);
            assert_eq!(
                c1.changed.iter().map(|p| p.address).collect::<Vec<_>>(),
                vec![space_tag(3) | 0x10000, space_tag(3) | 0x11000]
            );
            assert_eq!(digest_of_pages(&digest.page_map(), scheme), both);
            // The child writes; the parent is updated first (nothing changed there), then the child.
            child.write_bytes(0x11000, b"child").unwrap();
            let (same, quiet) = digest.update_space(&mut parent, 0, &[0, 3], 3);
            assert_eq!(same, both);
            assert!(quiet.changed.is_empty() && quiet.unmapped.is_empty());
            let (written, c) = digest.update_space(&mut child, 3, &[0, 3], 4);
            assert_ne!(written, both);
            assert_eq!(c.changed.len(), 1);
            assert_eq!(c.changed[0].address, space_tag(3) | 0x11000);
            // The child is gone.
            let (end, gone) = digest.update_space(&mut parent, 0, &[0], 5);
            assert_eq!(end, alone);
            assert_eq!(
                gone.unmapped,
                vec![space_tag(3) | 0x10000, space_tag(3) | 0x11000]
            );
        }
    }

    proptest::proptest! {
        /// Any one bit flipped, and any two different words swapped, change a page's format-4 digest.
        #[test]
        fn lane_digest_sees_every_bit_and_word_order(
            seed in proptest::prelude::any::<u64>(),
            bit in 0..4096usize * 8,
            a in 0..512usize,
            b in 0..512usize,
        ) {
            let mut page = [0u8; 4096];
            let mut x = seed | 1;
            for byte in page.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *byte = x as u8;
            }
            let before = page_digest_lanes(&page);
            let mut flipped = page;
            flipped[bit / 8] ^= 1 << (bit % 8);
            proptest::prop_assert_ne!(page_digest_lanes(&flipped), before);
            let mut swapped = page;
            let (wa, wb) = (page[a * 8..a * 8 + 8].to_vec(), page[b * 8..b * 8 + 8].to_vec());
            swapped[a * 8..a * 8 + 8].copy_from_slice(&wb);
            swapped[b * 8..b * 8 + 8].copy_from_slice(&wa);
            if wa != wb {
                proptest::prop_assert_ne!(page_digest_lanes(&swapped), before);
            }
        }
    }

    /// One step of `incremental_updates_match_a_fresh_digest`.
    #[derive(Clone, Debug)]
    enum Step {
        Write {
            page: u64,
            offset: u64,
            value: u64,
        },
        Map {
            page: u64,
            pages: u64,
        },
        Unmap {
            page: u64,
        },
        Protect {
            page: u64,
            read_only: bool,
        },
        Remap {
            from: u64,
            to: u64,
        },
        Snapshot,
        Restore,
        /// Another consumer of dirty tracking takes a cursor: the digest's own must be unaffected.
        ForeignCursor,
        Update,
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (0..24u64, 0..4089u64, any::<u64>())
                .prop_map(|(page, offset, value)| Step::Write { page, offset, value }),
            1 => (0..24u64, 1..4u64).prop_map(|(page, pages)| Step::Map { page, pages }),
            1 => (0..24u64).prop_map(|page| Step::Unmap { page }),
            1 => (0..24u64, any::<bool>()).prop_map(|(page, read_only)| Step::Protect { page, read_only }),
            1 => (0..24u64, 0..24u64).prop_map(|(from, to)| Step::Remap { from, to }),
            1 => Just(Step::Snapshot),
            1 => Just(Step::Restore),
            1 => Just(Step::ForeignCursor),
            3 => Just(Step::Update),
        ]
    }

    proptest::proptest! {
        /// Whatever the guest does between updates (writes, mappings, snapshots, restores), the incremental
        /// digest equals a digest computed from scratch of the same memory, in both schemes, and its listed
        /// changes rebuild its page map; a page written since the previous update is listed.
        #[test]
        fn incremental_updates_match_a_fresh_digest(steps in proptest::collection::vec(step(), 1..80)) {
            for scheme in [DigestScheme::Ordered, DigestScheme::Summed] {
                incremental_matches_fresh(scheme, &steps)?;
            }
        }
    }

    fn incremental_matches_fresh(
        scheme: DigestScheme,
        steps: &[Step],
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        use tandem_emulator::memory::Perms;
        const BASE: u64 = 0x40_0000;
        let at = |page: u64| BASE + page * 0x1000;
        let mut mem = Memory::new();
        mem.map_anonymous(BASE, 8 * 0x1000, Perms::RW).unwrap();
        let mut digest = MemoryDigest::new(scheme);
        let mut rebuilt = PageMap::new();
        let mut snapshot = None;
        let mut written = BTreeSet::new();
        let mut restored = false;
        for (icount, s) in steps.iter().cloned().chain([Step::Update]).enumerate() {
            match s {
                Step::Write {
                    page,
                    offset,
                    value,
                } => {
                    if mem.write_u64(at(page) + offset, value).is_ok() {
                        written.insert(at(page));
                    }
                }
                Step::Map { page, pages } => mem
                    .map_anonymous(at(page), pages * 0x1000, Perms::RW)
                    .unwrap(),
                Step::Unmap { page } => mem.unmap(at(page), 0x1000).unwrap(),
                Step::Protect { page, read_only } => {
                    let perms = if read_only { Perms::READ } else { Perms::RW };
                    let _ = mem.protect(at(page), 0x1000, perms).unwrap();
                }
                Step::Remap { from, to } => {
                    if from != to && mem.is_mapped(at(from)) {
                        mem.remap(at(from), at(to), 0x1000).unwrap();
                    }
                }
                Step::Snapshot => snapshot = Some(mem.snapshot()),
                Step::ForeignCursor => {
                    // Another consumer of dirty tracking moves on: the digest must still see every write.
                    let _ = mem.dirty_cursor();
                }
                Step::Restore => {
                    if let Some(snap) = &snapshot {
                        mem.restore(snap);
                        restored = true;
                    }
                }
                Step::Update => {
                    let (d, changes) = digest.update(&mut mem, icount as u64);
                    // From scratch, on a copy (a fork: a memory of its own, whose cursors are its own).
                    let mut copy = mem.fork();
                    let mut fresh = MemoryDigest::new(scheme);
                    let (expected, _) = fresh.update(&mut copy, icount as u64);
                    proptest::prop_assert_eq!(d, expected);
                    proptest::prop_assert_eq!(digest.page_map(), fresh.page_map());
                    apply_page_changes(&mut rebuilt, &changes);
                    proptest::prop_assert_eq!(&rebuilt, &digest.page_map());
                    if !restored {
                        for a in &written {
                            let listed = changes.changed.iter().any(|p| p.address == *a);
                            proptest::prop_assert!(
                                listed || !mem.is_mapped(*a),
                                "page {a:#x} written but not listed"
                            );
                        }
                    }
                    written.clear();
                    restored = false;
                }
            }
        }
        Ok(())
    }
}
