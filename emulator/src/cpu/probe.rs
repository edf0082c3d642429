//! Probes of the block cache for debuggers: how far the machine can run before it reaches an address of
//! interest, and a cheap way to learn that a page was written.
//!
//! Why: a replay debugger must stop exactly before the instruction at a breakpoint's address retires, and after
//! the instruction that writes a watched range. The run loop has no hooks (they would cost every run), so the
//! debugger asks instead how many instructions of the current block it may run (`instructions_until`) and
//! runs exactly that many with `Machine::run`, block after block, at the speed of the run loop.
//!
//! Invariant: nothing here changes the guest's architectural state; `instructions_until` only decodes (as
//! `run` would at the same rip), and `report_writes_to` only makes the next write to a page take the slow
//! path that reports it.

use super::Machine;
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

    /// Makes the next guest write to the page holding `addr` report itself, as a write to cached code does:
    /// `cache_stats.pages_invalidated` grows when it happens (at the latest when the next `run` starts). One
    /// write disarms it; call again to re-arm. A debugger compares the counter around a run to learn, without
    /// comparing bytes after every instruction, that a watched page may have changed.
    pub fn report_writes_to(&mut self, addr: u64) {
        self.cpu.mem.mark_code_page(addr);
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

    #[test]
    fn a_write_to_a_watched_page_is_counted() {
        let mut m = machine_with(&assemble(|a| {
            a.mov(qword_ptr(DATA + 8), rax).unwrap();
            a.mov(qword_ptr(DATA + 4096), rax).unwrap();
            a.mov(qword_ptr(DATA + 16), rax).unwrap();
            a.hlt().unwrap();
        }));
        let before = m.cache_stats.pages_invalidated;
        m.report_writes_to(DATA);
        m.run(1);
        m.run(0);
        assert_eq!(m.cache_stats.pages_invalidated, before + 1);
        // Another page: not reported. The watched page again: disarmed by the first write.
        m.run(2);
        m.run(0);
        assert_eq!(m.cache_stats.pages_invalidated, before + 1);
    }
}
