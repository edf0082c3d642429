//! Probes of the block cache for debuggers: how far the machine can run before it reaches an address of
//! interest, and counts of the guest's accesses to watched byte ranges.
//!
//! Why: a replay debugger must stop exactly before the instruction at a breakpoint's address retires, and after
//! the instruction that writes (reads, accesses) a watched range. The run loop has no hooks (they would cost
//! every run), so the debugger asks instead how many instructions of the current block it may run
//! (`instructions_until`) and runs exactly that many with `Machine::run`, block after block, at the speed of
//! the run loop; and it learns from the watch counts (`watch_hits`, kept by the memory's slow path for the
//! watched pages only) whether a block touched a watched range at all, so that only such a block is looked at
//! one instruction at a time.
//!
//! Invariant: nothing here changes the guest's architectural state; `instructions_until` only decodes (as
//! `run` would at the same rip), and `set_watches` only makes the accesses to the watched pages take the slow
//! path that counts them.

use super::Machine;
use crate::memory::{WatchHits, WatchRange};
use std::collections::BTreeSet;

impl Machine {
    /// How many instructions, starting with the one at rip, run before an instruction whose address is in
    /// `stops` would run, looking only inside the block that starts at rip. The first instruction is never a
    /// stop (the caller is on it already); when no later instruction of the block is one, this is the length
    /// of the block. Always at least 1. Running that many with `run` cannot execute a stop address unless the
    /// guest leaves the block early (a fault delivered as a signal, or a write to its own code: a caller that
    /// must be exact checks `signals_delivered` and `cache_stats.pages_invalidated` around the run).
    pub fn instructions_until(&mut self, stops: &BTreeSet<u64>) -> u64 {
        self.apply_code_writes();
        let rip = self.cpu.regs.rip;
        let slot = match self.cache.lookup(rip) {
            Some(slot) => slot,
            None => match self.translate(rip) {
                Ok(slot) => slot,
                // The run will raise the fault itself: one instruction is all it can do.
                Err(_) => return 1,
            },
        };
        let insns = &self.cache.slab[slot as usize].insns;
        let (Some(first), Some(last)) = (insns.first(), insns.last()) else {
            return 1;
        };
        // Instructions of a block have increasing addresses. One range query answers the common case: no stop
        // inside the block at all (or a block of one instruction).
        let (first, last) = (first.instr.ip(), last.instr.ip());
        if first >= last || stops.range(first + 1..=last).next().is_none() {
            return insns.len().max(1) as u64;
        }
        let at = insns
            .iter()
            .skip(1)
            .position(|d| stops.contains(&d.instr.ip()))
            .map_or(insns.len(), |i| i + 1);
        at.max(1) as u64
    }

    /// Watches byte ranges (none: `&[]`): from now on, every guest access to them is counted by kind in
    /// `watch_hits`, in the order given (`Memory::set_watches`, which says when a count is only possible).
    pub fn set_watches(&mut self, watches: &[WatchRange]) {
        self.cpu.mem.set_watches(watches);
    }

    /// The access counts of the watched ranges since `set_watches`.
    pub fn watch_hits(&self) -> &[WatchHits] {
        self.cpu.mem.watch_hits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::testutil::{assemble, machine_with, DATA};
    use iced_x86::code_asm::*;

    /// Five straight-line instructions and a jump back: one block of six.
    fn straight_line() -> Machine {
        machine_with(&assemble(|a| {
            let mut top = a.create_label();
            a.set_label(&mut top).unwrap();
            a.add(rax, 1).unwrap();
            a.add(rbx, 2).unwrap();
            a.add(rcx, 3).unwrap();
            a.add(rdx, 4).unwrap();
            a.add(rsi, 5).unwrap();
            a.jmp(top).unwrap();
        }))
    }

    #[test]
    fn counts_up_to_a_stop_inside_the_block() {
        let mut m = straight_line();
        let start = m.cpu.regs.rip;
        assert_eq!(m.instructions_until(&BTreeSet::new()), 6);
        // The address of the third instruction, add rcx.
        let second = start + m.describe_instruction(start).0.len() as u64;
        let third = second + m.describe_instruction(second).0.len() as u64;
        let stops: BTreeSet<u64> = [third].into();
        assert_eq!(m.instructions_until(&stops), 2);
        m.run(2);
        assert_eq!(m.cpu.regs.rip, third);
        // Sitting on the stop: the first instruction is never one, the block from here has four.
        assert_eq!(m.instructions_until(&stops), 4);
        // An address that is not an instruction boundary is never reached.
        let inside: BTreeSet<u64> = [third + 1].into();
        assert_eq!(m.instructions_until(&inside), 4);
    }

    /// A hot loop (compiled after 32 runs) reads and writes a watched word and writes its neighbour: the
    /// counts are exact, compiled code included (it leaves to the interpreter at each watched access).
    #[test]
    fn watched_accesses_are_counted_exactly_in_compiled_blocks_too() {
        let mut m = machine_with(&assemble(|a| {
            let mut top = a.create_label();
            a.mov(ecx, 100).unwrap();
            a.set_label(&mut top).unwrap();
            a.mov(rax, qword_ptr(DATA + 8)).unwrap();
            a.add(rax, 1).unwrap();
            a.mov(qword_ptr(DATA + 16), rax).unwrap();
            a.mov(qword_ptr(DATA + 8), rax).unwrap();
            a.push(rax).unwrap();
            a.pop(rax).unwrap();
            a.dec(ecx).unwrap();
            a.jnz(top).unwrap();
            a.hlt().unwrap();
        }));
        m.set_watches(&[WatchRange {
            addr: DATA + 8,
            len: 8,
            reads: true,
            writes: true,
        }]);
        m.run(10_000);
        assert_eq!(m.cpu.mem.peek_u64(DATA + 8), Ok(100));
        assert_eq!(
            m.watch_hits(),
            &[WatchHits {
                reads: 100,
                writes: 100
            }]
        );
    }

    /// REP MOVSB run many iterations at once counts a possible hit per watched page it resolves; one
    /// instruction at a time, each iteration is counted exactly: one read of the watched source byte, one
    /// write of the watched destination byte.
    #[test]
    fn bulk_string_counts_are_possible_hits_and_exact_one_at_a_time() {
        let code = assemble(|a| {
            a.mov(rsi, DATA).unwrap();
            a.mov(rdi, DATA + 0x800).unwrap();
            a.mov(ecx, 64).unwrap();
            a.cld().unwrap();
            a.rep().movsb().unwrap();
            a.hlt().unwrap();
        });
        let watches = [
            WatchRange {
                addr: DATA + 9,
                len: 1,
                reads: true,
                writes: false,
            },
            WatchRange {
                addr: DATA + 0x809,
                len: 1,
                reads: false,
                writes: true,
            },
        ];
        let mut fast = machine_with(&code);
        fast.set_watches(&watches);
        fast.run(1000);
        assert_eq!(fast.cpu.regs.gpr[crate::cpu::RCX], 0);
        assert!(fast.watch_hits()[0].reads >= 1 && fast.watch_hits()[1].writes >= 1);
        let mut slow = machine_with(&code);
        slow.set_watches(&watches);
        for _ in 0..100 {
            slow.run(1);
        }
        assert_eq!(slow.cpu.regs.gpr[crate::cpu::RCX], 0);
        assert_eq!(
            slow.watch_hits(),
            &[
                WatchHits {
                    reads: 1,
                    writes: 0
                },
                WatchHits {
                    reads: 0,
                    writes: 1
                }
            ]
        );
    }
}
