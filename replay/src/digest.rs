//! State digests for checkpoints: the registers (kept whole, so a divergence shows which differ), a hash of
//! them (the fine hashes between checkpoints), and an incremental digest of memory.
//!
//! `MemoryDigest` hashes each mapped page once and then only the pages whose frame changed or was written
//! (the memory's dirty-frame epochs, `Memory::dirty_frames`), so a checkpoint costs in proportion to what the
//! guest wrote, not to what it mapped. Its value is a function of the run's history: the recorder and the
//! replayer update it at the same icounts, so they compute the same values for the same run. After a restore
//! the cache is stale and must be reset (`MemoryDigest::reset`).

use crate::trace::RegisterFile;
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

#[derive(Default)]
pub struct MemoryDigest {
    /// Virtual page number -> (frame, digest of the page's bytes).
    pages: BTreeMap<u64, (u32, u64)>,
}

impl MemoryDigest {
    pub fn reset(&mut self) {
        self.pages.clear();
    }

    /// Brings the digest up to date and starts a new dirty epoch. Returns the digest of all mapped pages.
    pub fn update(&mut self, mem: &mut Memory) -> u64 {
        let dirty: BTreeSet<u32> = mem.dirty_frames().into_iter().map(|f| f.0).collect();
        // Start a new epoch: the next update sees only frames written after this one.
        mem.begin_epoch();
        let mut pages = BTreeMap::new();
        let mut h = Fnv::new();
        let mut buf = vec![0u8; PAGE_SIZE];
        for region in mem.regions() {
            let mut addr = region.start;
            while addr < region.end {
                let vpn = addr >> 12;
                let frame = mem.frame_of(addr).map(|f| f.0).unwrap_or(u32::MAX);
                let digest = match self.pages.get(&vpn) {
                    Some(&(f, d)) if f == frame && !dirty.contains(&frame) => d,
                    _ => {
                        // read_bytes goes through the TLB (peek looks up the page table per byte); pages the guest
                        // may not read (guard pages) fall back to peek. Neither changes the guest's state.
                        let ok = mem.read_bytes(addr, &mut buf).is_ok()
                            || mem.peek(addr, &mut buf).is_ok();
                        if ok {
                            page_digest(&buf)
                        } else {
                            u64::MAX
                        }
                    }
                };
                pages.insert(vpn, (frame, digest));
                h.write_u64(vpn);
                h.write_u64(region.perms.0 as u64);
                h.write_u64(digest);
                addr += PAGE_SIZE as u64;
            }
        }
        self.pages = pages;
        h.finish()
    }
}
