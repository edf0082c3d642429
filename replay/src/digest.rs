//! State digests for checkpoints: the registers (kept whole, so a divergence shows which differ), a hash of
//! them (the fine hashes between checkpoints), and an incremental digest of memory.
//!
//! `MemoryDigest` hashes each mapped page once and then only the pages whose frame changed or was written
//! (the memory's dirty-frame epochs, `Memory::dirty_frames`), so a checkpoint costs in proportion to what the
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
use tandem_emulator::cpu::Cpu;
use tandem_emulator::memory::{page_digest, Fnv, Memory, PAGE_SIZE};

pub fn register_file(cpu: &Cpu) -> RegisterFile {
    let r = cpu.registers();
    let mut h = Fnv::new();
    for v in r.x87.regs {
        h.write_u64(v.significand);
        h.write_u64(v.sign_exponent as u64);
    }
    for v in [
        r.x87.top as u64,
        r.x87.control as u64,
        r.x87.status as u64,
        r.x87.tag as u64,
    ] {
        h.write_u64(v);
    }
    RegisterFile {
        gpr: r.gpr,
        rip: r.rip,
        rflags: r.rflags,
        fs_base: r.fs_base,
        gs_base: r.gs_base,
        xmm: r.xmm,
        mxcsr: r.mxcsr,
        x87_digest: h.finish(),
    }
}

/// The hash of a register file (the fine hashes).
pub fn register_hash(r: &RegisterFile) -> u64 {
    let mut h = Fnv::new();
    for g in r.gpr {
        h.write_u64(g);
    }
    for v in [
        r.rip,
        r.rflags,
        r.fs_base,
        r.gs_base,
        r.mxcsr as u64,
        r.x87_digest,
    ] {
        h.write_u64(v);
    }
    for x in r.xmm {
        h.write_u64(x as u64);
        h.write_u64((x >> 64) as u64);
    }
    h.finish()
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
pub fn digest_of_pages(map: &PageMap) -> u64 {
    let mut h = Fnv::new();
    for (&address, &(perms, digest)) in map {
        write_page(&mut h, address, perms, digest);
    }
    h.finish()
}

/// One page's part of the memory digest (page number, permissions, bytes' digest), the same for the recorder's
/// incremental digest and for `digest_of_pages`.
fn write_page(h: &mut Fnv, address: u64, perms: u8, digest: u64) {
    h.write_u64(address >> 12);
    h.write_u64(perms as u64);
    h.write_u64(digest);
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

/// The incremental memory digest: the recorder and the replayer each keep one and update it at every checkpoint.
#[derive(Default)]
pub struct MemoryDigest {
    /// Every mapped page as of the last update, in address order: (virtual page number, frame, permission bits,
    /// digest of the page's bytes). A sorted vector, walked beside the page table at each update: no lookups.
    pages: Vec<(u64, u32, u8, u64)>,
    /// The combined digest's state after each page of `pages`: an update re-hashes only from the first page that
    /// changed, which is usually near the end (the stack is the highest mapping).
    after: Vec<u64>,
}

impl MemoryDigest {
    pub fn reset(&mut self) {
        self.pages.clear();
        self.after.clear();
    }

    /// Brings the digest up to date and starts a new dirty epoch. Returns the digest of all mapped pages and
    /// what changed since the previous update (every page, the first time), for checkpoint `icount`.
    ///
    /// Cost: one walk of the page table beside the previous update's pages, and a digest of each page whose
    /// frame changed or was written; this runs at every checkpoint of a recording, so it allocates only the
    /// new page list and the changes.
    pub fn update(&mut self, mem: &mut Memory, icount: u64) -> (u64, PageChanges) {
        // In frame order (`Memory::dirty_frames`), so a binary search answers membership.
        let dirty: Vec<u32> = mem.dirty_frames().into_iter().map(|f| f.0).collect();
        debug_assert!(dirty.windows(2).all(|w| w[0] < w[1]));
        // Start a new epoch: the next update sees only frames written after this one.
        mem.begin_epoch();
        let mut pages = Vec::with_capacity(self.pages.len());
        let mut after = Vec::with_capacity(self.pages.len());
        // Every page so far is the previous update's page at the same position, with the same permissions and
        // digest: the combined state can be taken from `self.after` instead of hashed again.
        let mut prefix = true;
        let mut changed = Vec::new();
        let mut unmapped = Vec::new();
        let mut h = Fnv::new();
        let mut buf = vec![0u8; PAGE_SIZE];
        // The previous update's pages not yet passed.
        let mut old = self.pages.iter().peekable();
        for (vpn, frame, perms) in mem.page_entries() {
            let perms = perms.0;
            let frame = frame.0;
            let addr = vpn << 12;
            while let Some(&&(v, ..)) = old.peek() {
                if v >= vpn {
                    break;
                }
                unmapped.push(v << 12);
                old.next();
                prefix = false;
            }
            let before = old.next_if(|&&(v, ..)| v == vpn);
            let digest = match before {
                Some(&(_, f, p, d)) if f == frame && dirty.binary_search(&frame).is_err() => {
                    if p != perms {
                        changed.push(PageDigest {
                            address: addr,
                            perms,
                            digest: d,
                        });
                    }
                    d
                }
                _ => {
                    // read_bytes goes through the TLB (peek looks up the page table per byte); pages the guest
                    // may not read (guard pages) fall back to peek. Neither changes the guest's state.
                    let ok =
                        mem.read_bytes(addr, &mut buf).is_ok() || mem.peek(addr, &mut buf).is_ok();
                    let d = if ok { page_digest(&buf) } else { u64::MAX };
                    changed.push(PageDigest {
                        address: addr,
                        perms,
                        digest: d,
                    });
                    d
                }
            };
            prefix = prefix && matches!(before, Some(&(_, _, p, d)) if p == perms && d == digest);
            if prefix {
                h = Fnv::resume(self.after[pages.len()]);
            } else {
                write_page(&mut h, addr, perms, digest);
            }
            pages.push((vpn, frame, perms, digest));
            after.push(h.finish());
        }
        unmapped.extend(old.map(|&(v, ..)| v << 12));
        self.pages = pages;
        self.after = after;
        (
            h.finish(),
            PageChanges {
                icount,
                changed,
                unmapped,
            },
        )
    }

    /// Every page as of the last update.
    pub fn page_map(&self) -> PageMap {
        self.pages
            .iter()
            .map(|&(vpn, _, perms, digest)| (vpn << 12, (perms, digest)))
            .collect()
    }
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
        use tandem_emulator::memory::Perms;
        let mut mem = Memory::new();
        mem.map_anonymous(0x10000, 0x4000, Perms::RW).unwrap();
        let mut digest = MemoryDigest::default();
        let mut rebuilt = PageMap::new();
        let mut step = |mem: &mut Memory, icount: u64| {
            let (d, c) = digest.update(mem, icount);
            assert_eq!(c.icount, icount);
            apply_page_changes(&mut rebuilt, &c);
            assert_eq!(rebuilt, digest.page_map());
            assert_eq!(digest_of_pages(&rebuilt), d);
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
}
