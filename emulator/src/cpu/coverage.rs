//! Edge coverage for fuzzing: AFL's scheme (a 64 KiB map of 8-bit counters indexed by `prev_loc >> 1 ^ cur_loc`,
//! hit counts read in buckets), collected by the run loop, and a CMPLOG-style dictionary of the comparison
//! operands the decoder sees.
//!
//! What an edge is, and why it is the same with and without compiled code: an edge is recorded when a control
//! transfer (a branch taken or not, a call, a return, an indirect jump) retires as the last instruction of a block
//! that ran whole, with `cur_loc` a hash of the rip it transferred to. A block never holds a control transfer
//! except as its last instruction, and however the budget, a side exit of compiled code or self-modifying code
//! split the blocks, every transfer that retires is the last instruction of a block that ran to its end, so the
//! map is a function of the guest's path alone (held to it by `tests::jit_and_interpreter_maps_are_identical`
//! and tests/jit_lockstep.rs). SYSCALL, INT3 and faulting instructions stop the run loop and record nothing.
//!
//! Compiled blocks chain into each other without the run loop, so a block compiled while coverage is on
//! records its own edge: its exit calls `jit::record_edge` once the block retired whole (and a helper whose
//! instruction ends the block and writes code, which leaves the block early, records it there). Off, nothing is
//! recorded, compiled code has no such calls, and the run loop pays one well-predicted branch per block.
//!
//! The dictionary: immediates of CMP, SUB and TEST (and the displacement-free constants they compare against)
//! are collected once per translated block, never per executed instruction, so it costs nothing while the
//! program runs (AFL++'s CMPLOG records operands at run time; a constant compared with input is what it finds
//! most often, and here it is found at decode time).

use iced_x86::{FlowControl, Instruction, Mnemonic, OpKind};
use std::collections::BTreeSet;

/// Bytes in the coverage map (AFL's MAP_SIZE).
pub const MAP_BYTES: usize = 1 << 16;
/// Most constants the dictionary keeps (the first ones seen win; a limit on every collection).
pub const DICTIONARY_ENTRIES_MAX: usize = 4096;

/// Return addresses the shadow call stack holds; deeper calls drop the outermost.
pub const CALL_STACK_DEPTH_MAX: usize = 1024;

/// How a block ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Transfer {
    /// Not in a control transfer (the page or the block's length ended it, or a REP string instruction).
    None,
    /// A branch or jump, taken or not.
    Branch,
    /// A CALL: its return address goes on the shadow call stack.
    Call,
    /// A RET: the shadow call stack pops.
    Return,
}

impl Transfer {
    pub(crate) fn of(instr: &Instruction) -> Transfer {
        match instr.flow_control() {
            FlowControl::Next => Transfer::None,
            FlowControl::Call | FlowControl::IndirectCall => Transfer::Call,
            FlowControl::Return => Transfer::Return,
            _ => Transfer::Branch,
        }
    }

    #[inline(always)]
    pub(crate) fn is_some(self) -> bool {
        self != Transfer::None
    }

    /// The transfer whose `as u8` is `code` (compiled code passes it as a number).
    pub(crate) fn from_code(code: u64) -> Transfer {
        match code {
            1 => Transfer::Branch,
            2 => Transfer::Call,
            3 => Transfer::Return,
            _ => Transfer::None,
        }
    }
}

/// The edge map of one run, the run's shadow call stack, and the comparison constants seen so far.
#[derive(Clone)]
pub struct Coverage {
    map: Box<[u8; MAP_BYTES]>,
    prev_loc: u16,
    /// Return addresses of the CALLs that retired and have not returned, innermost last: the crash stack the
    /// fuzzer deduplicates findings by, from the emulator's view (no frame pointers or unwind tables needed).
    call_stack: Vec<u64>,
    /// Constants compared against (value, operand size in bytes), in value order.
    dictionary: BTreeSet<(u64, u8)>,
}

impl Default for Coverage {
    fn default() -> Self {
        Coverage {
            map: Box::new([0; MAP_BYTES]),
            prev_loc: 0,
            call_stack: Vec::new(),
            dictionary: BTreeSet::new(),
        }
    }
}

/// The coverage state a run restored from a snapshot starts with (`Coverage::run_start`): a snapshot taken after
/// start-up (at the first read of stdin) is inside calls, and the crash stacks of its runs include them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunStart {
    prev_loc: u16,
    call_stack: Vec<u64>,
}

/// The multiplier of `location`'s hash (Fibonacci hashing: the golden ratio in 64 bits).
pub(crate) const LOCATION_MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;
/// `location` keeps the top 16 bits of the product.
pub(crate) const LOCATION_SHIFT: u32 = 48;

/// AFL's location of a block: a hash of its address, spread over the map. Compiled code computes the same
/// (jit.rs: a constant for a direct branch, the multiplication inline for an indirect one).
#[inline(always)]
pub(crate) fn location(rip: u64) -> u16 {
    let h = rip.wrapping_mul(LOCATION_MULTIPLIER);
    (h >> LOCATION_SHIFT) as u16
}

/// Where compiled code finds the map's address and the previous location inside a `Coverage`: a branch's edge
/// is recorded inline (jit.rs `record_branch_inline`), which reads and writes exactly what `record` does for a
/// `Transfer::Branch`.
pub(crate) const MAP_POINTER_OFFSET: usize = std::mem::offset_of!(Coverage, map);
pub(crate) const PREV_LOC_OFFSET: usize = std::mem::offset_of!(Coverage, prev_loc);
// The inline update loads the map's address as one pointer and indexes it by a 16-bit location.
const _: () = assert!(std::mem::size_of::<Box<[u8; MAP_BYTES]>>() == 8 && MAP_BYTES == 1 << 16);

impl Coverage {
    pub fn new() -> Coverage {
        Coverage::default()
    }

    /// A control transfer of kind `transfer` to `rip` retired; `next_ip` follows the transferring instruction
    /// (a CALL's return address).
    #[inline(always)]
    pub(crate) fn record(&mut self, transfer: Transfer, rip: u64, next_ip: u64) {
        let cur = location(rip);
        let index = (cur ^ self.prev_loc) as usize;
        self.map[index] = self.map[index].wrapping_add(1);
        self.prev_loc = cur >> 1;
        match transfer {
            Transfer::Call => {
                if self.call_stack.len() >= CALL_STACK_DEPTH_MAX {
                    self.call_stack.remove(0);
                }
                self.call_stack.push(next_ip);
            }
            Transfer::Return => {
                // A return to where a call left pops it; any other (longjmp, a thread switch, a hand-made
                // return) unwinds to the matching frame if there is one, else changes nothing.
                if let Some(at) = self.call_stack.iter().rposition(|&r| r == rip) {
                    self.call_stack.truncate(at);
                }
            }
            Transfer::Branch | Transfer::None => {}
        }
    }

    /// Clears the map, the previous location and the call stack for the next run (the dictionary stays).
    pub fn reset_map(&mut self) {
        self.reset_map_to(&RunStart::default());
    }

    /// Where a run restored from a snapshot taken now starts: the previous location and the calls in progress.
    pub fn run_start(&self) -> RunStart {
        RunStart {
            prev_loc: self.prev_loc,
            call_stack: self.call_stack.clone(),
        }
    }

    /// Clears the map for the next run, which starts at `start` (the dictionary stays).
    pub fn reset_map_to(&mut self, start: &RunStart) {
        self.map.fill(0);
        self.prev_loc = start.prev_loc;
        self.call_stack.clone_from(&start.call_stack);
    }

    /// Return addresses of the calls in progress, innermost first.
    pub fn call_stack(&self) -> impl Iterator<Item = u64> + '_ {
        self.call_stack.iter().rev().copied()
    }

    /// The raw counters.
    pub fn map(&self) -> &[u8; MAP_BYTES] {
        &self.map
    }

    /// The counters that are not zero, as (index, count) in index order. Reads the map a 64-bit word at a time
    /// and skips zero words: a run of a small program hits a few hundred of the 65,536 counters, and a fuzzer
    /// reads them after every execution.
    pub fn hits(&self) -> impl Iterator<Item = (u16, u8)> + '_ {
        let words = self.map.chunks_exact(8);
        debug_assert!(words.remainder().is_empty());
        words
            .enumerate()
            .filter(|(_, word)| {
                let mut w = [0u8; 8];
                w.copy_from_slice(word);
                u64::from_ne_bytes(w) != 0
            })
            .flat_map(|(w, word)| {
                word.iter()
                    .enumerate()
                    .filter(|(_, &c)| c != 0)
                    .map(move |(k, &c)| ((w * 8 + k) as u16, c))
            })
    }

    /// The constants compared against so far, in value order.
    pub fn dictionary(&self) -> &BTreeSet<(u64, u8)> {
        &self.dictionary
    }

    /// Notes the immediate of a CMP, SUB or TEST with an immediate operand.
    pub(crate) fn note_comparison(&mut self, instr: &Instruction) {
        if self.dictionary.len() >= DICTIONARY_ENTRIES_MAX
            || !matches!(
                instr.mnemonic(),
                Mnemonic::Cmp | Mnemonic::Sub | Mnemonic::Test
            )
        {
            return;
        }
        for k in 0..instr.op_count() {
            let value = match instr.op_kind(k) {
                OpKind::Immediate8 | OpKind::Immediate8to16 => instr.immediate8() as u64,
                OpKind::Immediate16 => instr.immediate16() as u64,
                OpKind::Immediate32 => instr.immediate32() as u64,
                OpKind::Immediate8to32 | OpKind::Immediate32to64 | OpKind::Immediate8to64 => {
                    instr.immediate(k)
                }
                _ => continue,
            };
            let size = instr.memory_size().size().max(match instr.op0_kind() {
                OpKind::Register => instr.op0_register().size(),
                _ => 0,
            }) as u8;
            // Zero, one and all-ones are tried by havoc's interesting values already.
            if size > 0 && value > 1 && value != u64::MAX {
                let value = if size < 8 {
                    value & ((1u64 << (size * 8)) - 1)
                } else {
                    value
                };
                self.dictionary.insert((value, size));
            }
        }
    }
}

/// AFL's hit-count bucket of a counter: 0, 1, 2, 3, 4-7, 8-15, 16-31, 32-127, 128+ as one bit each.
pub fn bucket(count: u8) -> u8 {
    match count {
        0 => 0,
        1 => 1,
        2 => 2,
        3 => 4,
        4..=7 => 8,
        8..=15 => 16,
        16..=31 => 32,
        32..=127 => 64,
        _ => 128,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_afl() {
        let got: Vec<u8> = [0u8, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 127, 128, 255]
            .iter()
            .map(|&c| bucket(c))
            .collect();
        assert_eq!(got, [0, 1, 2, 4, 8, 8, 16, 16, 32, 32, 64, 64, 128, 128]);
    }

    #[test]
    fn hits_are_the_counters_not_zero_in_index_order() {
        let mut c = Coverage::new();
        for rip in [
            0x401000u64,
            0x402000,
            0x401000,
            0x7fff_0000,
            0x401000,
            0x402000,
        ] {
            c.record(Transfer::Branch, rip, 0);
        }
        c.map[MAP_BYTES - 1] = 3;
        c.map[0] = 255;
        let expected: Vec<(u16, u8)> = (0..MAP_BYTES)
            .filter(|&i| c.map[i] != 0)
            .map(|i| (i as u16, c.map[i]))
            .collect();
        assert!(expected.len() >= 6, "{expected:?}");
        assert_eq!(c.hits().collect::<Vec<_>>(), expected);
    }

    #[test]
    fn an_edge_depends_on_where_it_came_from() {
        let mut a = Coverage::new();
        a.record(Transfer::Branch, 0x401000, 0);
        a.record(Transfer::Branch, 0x402000, 0);
        let mut b = Coverage::new();
        b.record(Transfer::Branch, 0x403000, 0);
        b.record(Transfer::Branch, 0x402000, 0);
        assert_ne!(a.map()[..], b.map()[..]);
        assert_eq!(a.map().iter().map(|&c| c as u32).sum::<u32>(), 2);
    }

    #[test]
    fn the_call_stack_follows_calls_and_returns() {
        let mut c = Coverage::new();
        c.record(Transfer::Call, 0x1000, 0x405);
        c.record(Transfer::Call, 0x2000, 0x1010);
        c.record(Transfer::Call, 0x3000, 0x2010);
        c.record(Transfer::Return, 0x2010, 0);
        assert_eq!(c.call_stack().collect::<Vec<_>>(), [0x1010, 0x405]);
        // A longjmp-like return past a frame unwinds to it.
        c.record(Transfer::Call, 0x3000, 0x2020);
        c.record(Transfer::Return, 0x405, 0);
        assert_eq!(c.call_stack().count(), 0);
        // A return nobody called is ignored.
        c.record(Transfer::Return, 0x9999, 0);
        assert_eq!(c.call_stack().count(), 0);
    }
}
