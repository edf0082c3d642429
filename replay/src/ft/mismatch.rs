//! A look at every replica at the first mismatch of a world's run, before any was corrected: registers, how each
//! differs from the right execution, and the pages that differ from it with their first differing byte. What
//! `tandem ft --debug-mismatch` prints; the world keeps only the first one (later ones are in the event list).
//!
//! It must not change a replica: it reads registers and memory only.

use super::pages_differing;
use tandem_emulator::cpu::Registers;
use tandem_emulator::linux::{Host, LinuxMachine};
use tandem_emulator::memory::PAGE_SIZE;

/// Most differing pages listed per replica (the count goes on past it).
pub const PAGES_SHOWN_MAX: usize = 16;

/// One replica (or the re-execution) at the end of the mismatched epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaView {
    /// "replica N" or "the re-execution".
    pub name: String,
    pub icount: u64,
    pub registers: Registers,
    /// How it differs from the right execution, or None when it is the right one (or agrees with it).
    pub difference: Option<String>,
    /// Pages that differ from the right execution's memory: how many, and the first `PAGES_SHOWN_MAX` of them.
    pub pages_differing_count: usize,
    pub pages: Vec<PageDifference>,
}

/// A page that differs, and its first differing byte (None when it is mapped on one side only, or unreadable).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageDifference {
    pub address: u64,
    /// (address of the byte, this replica's byte, the right execution's byte).
    pub first_byte: Option<(u64, u8, u8)>,
}

/// The first mismatch of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MismatchView {
    /// The epoch (from 1) and where it started.
    pub epoch: u64,
    pub icount_start: u64,
    /// Where the right state was found: "replica N" or "the re-execution".
    pub right: String,
    /// The right execution first, then every live replica in index order.
    pub replicas: Vec<ReplicaView>,
}

/// `guest` as seen against the right execution `right`.
pub(super) fn view<A: Host, B: Host>(
    name: String,
    guest: &LinuxMachine<A>,
    right: &LinuxMachine<B>,
    difference: Option<String>,
) -> ReplicaView {
    let (mine, theirs) = (guest.memory(), right.memory());
    let differing = pages_differing(mine, theirs);
    let pages = differing
        .iter()
        .take(PAGES_SHOWN_MAX)
        .map(|&address| {
            let mut a = vec![0u8; PAGE_SIZE];
            let mut b = vec![0u8; PAGE_SIZE];
            let readable =
                mine.peek(address, &mut a).is_ok() && theirs.peek(address, &mut b).is_ok();
            let first_byte = readable
                .then(|| a.iter().zip(&b).position(|(x, y)| x != y))
                .flatten()
                .map(|i| (address + i as u64, a[i], b[i]));
            PageDifference {
                address,
                first_byte,
            }
        })
        .collect();
    ReplicaView {
        name,
        icount: guest.icount(),
        registers: guest.registers(),
        difference,
        pages_differing_count: differing.len(),
        pages,
    }
}

const GPR_NAMES: [&str; 16] = [
    "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13",
    "r14", "r15",
];

impl MismatchView {
    /// The view as lines of text: per replica its state and, for registers, only those that differ from the
    /// right execution's (all of them for the right execution itself).
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!(
            "first mismatch: epoch {} (from icount {}); the right state: {}",
            self.epoch, self.icount_start, self.right
        )];
        let Some(right) = self.replicas.first() else {
            return out;
        };
        for r in &self.replicas {
            let verdict = r.difference.as_deref().unwrap_or("right");
            out.push(format!("{} at icount {}: {verdict}", r.name, r.icount));
            let regs = register_pairs(&r.registers);
            let right_regs = register_pairs(&right.registers);
            let shown: Vec<String> = regs
                .iter()
                .zip(&right_regs)
                .filter(|(mine, theirs)| std::ptr::eq(r, right) || mine.1 != theirs.1)
                .map(|((name, v), (_, w))| {
                    if std::ptr::eq(r, right) {
                        format!("{name}={v:#x}")
                    } else {
                        format!("{name}={v:#x} (right {w:#x})")
                    }
                })
                .collect();
            if shown.is_empty() {
                out.push("  registers: same as the right state".into());
            } else {
                out.push(format!("  registers: {}", shown.join(" ")));
            }
            if std::ptr::eq(r, right) {
                continue;
            }
            out.push(format!(
                "  pages differing from the right state: {}",
                r.pages_differing_count
            ));
            for p in &r.pages {
                match p.first_byte {
                    Some((at, mine, theirs)) => out.push(format!(
                        "  page {:#x}: first differing byte at {at:#x}: {mine:#04x} (right {theirs:#04x})",
                        p.address
                    )),
                    None => out.push(format!(
                        "  page {:#x}: mapped differently or unreadable",
                        p.address
                    )),
                }
            }
        }
        out
    }
}

fn register_pairs(r: &Registers) -> Vec<(&'static str, u64)> {
    let mut v: Vec<(&'static str, u64)> = GPR_NAMES.iter().copied().zip(r.gpr).collect();
    v.extend([
        ("rip", r.rip),
        ("rflags", r.rflags),
        ("fs_base", r.fs_base),
        ("gs_base", r.gs_base),
    ]);
    v
}
