//! The command-line replay debugger: moves through a trace's timeline forwards and backwards and shows the
//! guest's state. Every command returns its output as text, so scripts and tests drive it the same way.
//!
//! Stops: a breakpoint stops with rip on its address, before that instruction runs. A watchpoint stops on the
//! instruction that changed the watched bytes (`watch`), read any of them (`rwatch`) or did either (`awatch`):
//! going forwards, after that instruction, as a CPU's debug registers report it; going backwards, before it,
//! with its effect undone, as rr answers reverse watchpoints (the replay is positioned on the accessing
//! instruction, and the stop names the watchpoint).
//!
//! How a continue finds them without per-instruction hooks: before each block the block cache says how many
//! of its instructions run before a breakpoint address (`Machine::instructions_until`), and exactly those run
//! at block speed; the memory counts the guest's accesses to the watched ranges (`Machine::set_watches`,
//! which slows down only the accesses to the watched pages), so a block that touched no watched byte is known
//! not to stop. A block that did (or that left early: a signal, a write to code) is run again from the timeline
//! one checked instruction at a time, and is stepped that way from then on: a loop over a watched variable
//! costs one re-run, not one per iteration. The stops are those of single-stepping with a check after every
//! instruction, which `tests/debugger_continue.rs` compares against.
//!
//! Reverse-continue works as rr's does: from the latest checkpoint before the current icount, run forward to it
//! remembering the last stop; if there was none, retry from the checkpoint before that. Both directions poll
//! their caller now and then, so gdb's Ctrl-C can stop them at an exact icount.
//!
//! The end of a history whose guest was killed by a signal (a CPU fault, abort(3), an uncorrectable memory
//! error) is a stop of its own: the guest stopped with the fatal signal (`Stop::Signal`), in the state the
//! signal found it (on the faulting instruction, for a fault), as Linux shows it to a debugger before the
//! signal's default action; continuing from there is the guest's death (`Stop::Killed`), and going backwards
//! works from there as from anywhere.

use crate::replay::Replayer;
use crate::symbols::{Resolved, Symbols};
use crate::timeline::Timeline;
use crate::trace::Event;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use tandem_emulator::cpu::GPR_NAMES;
use tandem_emulator::linux::abi::signal_name;
use tandem_emulator::linux::ids::Tid;
use tandem_emulator::linux::linkmap::LinkMapEntry;
use tandem_emulator::linux::sysnames::syscall_name;
use tandem_emulator::linux::{Progress, SigInfo, Termination, GUEST_PID, GUEST_UID};
use tandem_emulator::memory::{WatchHits, WatchRange};

/// Most bytes `x` shows and most instructions `disas` lists, and most steps one `stepi` takes.
pub const EXAMINE_BYTES_MAX: u64 = 4096;
pub const DISAS_INSNS_MAX: u64 = 256;
/// Instructions between two polls for an interrupt during a continue (about a tenth of a millisecond).
pub const POLL_INTERVAL_INSNS: u64 = 1 << 16;
/// Most bytes one watchpoint covers (1 MiB: an array gdb watches whole fits; its bytes are compared after each
/// write to it, so the bound keeps that comparison cheap).
pub const WATCH_BYTES_MAX: u64 = 1 << 20;
/// Most block start addresses remembered as touching a watched range (stepped one instruction at a time).
pub const WATCH_HOT_BLOCKS_MAX: usize = 1 << 16;

/// What a watchpoint stops on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WatchKind {
    /// An instruction that changes the watched bytes (gdb's `watch`).
    Write,
    /// An instruction that reads any watched byte (gdb's `rwatch`).
    Read,
    /// An instruction that reads or writes any watched byte, even with the value it had (gdb's `awatch`).
    Access,
}

impl WatchKind {
    /// The command that sets one, as the debugger and gdb name it.
    pub fn command(self) -> &'static str {
        match self {
            WatchKind::Write => "watch",
            WatchKind::Read => "rwatch",
            WatchKind::Access => "awatch",
        }
    }
}

/// A watched byte range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watchpoint {
    pub addr: u64,
    /// 1 to `WATCH_BYTES_MAX`; `addr + len` does not overflow.
    pub len: u64,
    pub kind: WatchKind,
}

/// A watchpoint's stop: the instruction that accessed the range, and the watched bytes around it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchHit {
    pub id: u32,
    pub kind: WatchKind,
    /// The instruction wrote the range (otherwise it only read it).
    pub wrote: bool,
    /// The watched bytes before and after the instruction.
    pub old: Vec<u8>,
    pub new: Vec<u8>,
    /// Instructions retired before the accessing one: a stop going forwards is at `icount + 1` (after it), a
    /// stop going backwards at `icount` (before it, its effect undone).
    pub icount: u64,
}

/// Why a move stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    Breakpoint(u32),
    Watchpoint(WatchHit),
    /// The end of the recorded history.
    End,
    /// The start of the history.
    Start,
    /// The caller's poll asked to stop (gdb's Ctrl-C); the position is an exact icount.
    Interrupted,
    /// The history ends with the guest killed by this signal (Linux's number): the guest is stopped with it,
    /// before its default action, as Linux shows a fatal signal to a debugger.
    Signal(i32),
    /// Continuing from `Signal`: the signal's default action killed the guest. The position does not change.
    Killed(i32),
}

/// Whether `poll` asks to stop, asked once `icount` reaches `next_poll` (then `POLL_INTERVAL_INSNS` later).
fn interrupted(icount: u64, next_poll: &mut u64, poll: &mut dyn FnMut() -> bool) -> bool {
    if icount < *next_poll {
        return false;
    }
    *next_poll = icount.saturating_add(POLL_INTERVAL_INSNS);
    poll()
}

/// Whether `s` can name a symbol (a C or C++ identifier, possibly versioned or mangled), so that a breakpoint
/// on it may wait for a library to define it.
fn is_symbol_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '$'))
}

fn parse_u64(s: &str) -> Option<u64> {
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else {
        s.parse().ok()
    }
}

/// The watchpoints as the memory counts them: the ids in the order of the memory's ranges, the bytes each
/// covered when last looked at, and the counts before the block being run.
#[derive(Default)]
struct Armed {
    ids: Vec<u32>,
    points: Vec<Watchpoint>,
    /// The watched bytes as of the current position (kept for `watch` and `awatch`, which report old bytes).
    bytes: Vec<Vec<u8>>,
    /// The memory's counts before the current block or instruction (a buffer reused, so a block allocates
    /// nothing).
    hits_before: Vec<WatchHits>,
    /// Start addresses of blocks that touched a watched range: they run one checked instruction at a time.
    hot_blocks: BTreeSet<u64>,
}

pub struct Debugger {
    pub timeline: Timeline,
    /// The program's symbols and those of the shared objects mapped so far (symbols.rs), read on demand (a
    /// stop's description names a library function once the library is mapped).
    symbols: RefCell<Symbols>,
    /// The map generation of the guest's memory when `symbols` last looked at the mappings.
    symbols_generation: Cell<u64>,
    breakpoints: BTreeMap<u32, u64>,
    /// Breakpoints on symbols no mapped object defines yet (a library the loader maps later): id -> name.
    pending: BTreeMap<u32, String>,
    watchpoints: BTreeMap<u32, Watchpoint>,
    next_id: u32,
    armed: Armed,
    /// The thread `thread TID` selected for `regs` and `x` (None: the running thread). A move (step, continue,
    /// goto) clears it, as gdb switches to the thread that stopped.
    selected: Option<Tid>,
}

impl Debugger {
    pub fn new(replayer: Replayer) -> Debugger {
        let symbols = Symbols::of_program(&replayer.header.program);
        Debugger {
            timeline: Timeline::new(replayer),
            symbols: RefCell::new(symbols),
            symbols_generation: Cell::new(u64::MAX),
            breakpoints: BTreeMap::new(),
            pending: BTreeMap::new(),
            watchpoints: BTreeMap::new(),
            next_id: 1,
            armed: Armed::default(),
            selected: None,
        }
    }

    pub fn symbol(&self, name: &str) -> Option<u64> {
        match self.resolve_symbol(name) {
            Resolved::At(a) => Some(a),
            Resolved::NotYetChosen | Resolved::Unknown => None,
        }
    }

    fn resolve_symbol(&self, name: &str) -> Resolved {
        self.load_symbols();
        let memory = self.timeline.replayer.hv.guest.memory();
        self.symbols.borrow().resolve(name, memory)
    }

    /// Reads the symbols of the objects mapped since the last look (the loader, the libraries); true when the
    /// mappings changed since (a library mapped, or relocated and protected).
    fn load_symbols(&self) -> bool {
        let guest = &self.timeline.replayer.hv.guest;
        let generation = guest.memory().map_generation();
        if generation == self.symbols_generation.replace(generation) {
            return false;
        }
        self.symbols.borrow_mut().add_mapped(&guest.mapped_files());
        true
    }

    /// Sets the pending breakpoints whose symbols resolve by now; true when one was set.
    fn resolve_pending(&mut self) -> bool {
        if self.pending.is_empty() || !self.load_symbols() {
            return false;
        }
        let resolved: Vec<(u32, u64)> = self
            .pending
            .iter()
            .filter_map(|(&id, name)| match self.resolve_symbol(name) {
                Resolved::At(a) => Some((id, a)),
                _ => None,
            })
            .collect();
        for &(id, addr) in &resolved {
            self.pending.remove(&id);
            self.breakpoints.insert(id, addr);
        }
        !resolved.is_empty()
    }

    /// `name+offset` for an address inside a known function.
    pub fn symbolize(&self, addr: u64) -> String {
        self.load_symbols();
        match self.symbols.borrow().function_at(addr) {
            Some((a, n, _)) if a == addr => format!(" <{n}>"),
            Some((a, n, _)) => format!(" <{n}+{}>", addr - a),
            None => String::new(),
        }
    }

    fn address(&self, s: &str) -> Result<u64, String> {
        parse_u64(s)
            .or_else(|| self.symbol(s))
            .ok_or_else(|| format!("no symbol or address {s:?}"))
    }

    pub fn breakpoint_addresses(&self) -> Vec<u64> {
        self.breakpoints.values().copied().collect()
    }

    pub fn add_breakpoint(&mut self, addr: u64) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        self.breakpoints.insert(id, addr);
        id
    }

    pub fn remove_breakpoint_at(&mut self, addr: u64) {
        self.breakpoints.retain(|_, a| *a != addr);
    }

    /// Watches `len` bytes at `addr`; the new watchpoint's id. A length of 0 or above `WATCH_BYTES_MAX`, or a
    /// range past the end of the address space, is refused with the reason.
    pub fn add_watchpoint(&mut self, addr: u64, len: u64, kind: WatchKind) -> Result<u32, String> {
        if len == 0 {
            return Err("a watchpoint covers at least 1 byte".into());
        }
        if len > WATCH_BYTES_MAX {
            return Err(format!(
                "a watchpoint covers at most {WATCH_BYTES_MAX} bytes, not {len}; watch a part of the range"
            ));
        }
        if addr.checked_add(len).is_none() {
            return Err(format!(
                "{len} bytes at {addr:#x} run past the end of the address space"
            ));
        }
        let id = self.next_id;
        self.next_id += 1;
        self.watchpoints.insert(id, Watchpoint { addr, len, kind });
        Ok(id)
    }

    /// Removes one watchpoint on exactly this range and kind; whether there was one.
    pub fn remove_watchpoint(&mut self, addr: u64, len: u64, kind: WatchKind) -> bool {
        let wanted = Watchpoint { addr, len, kind };
        match self.watchpoints.iter().find(|(_, w)| **w == wanted) {
            Some((&id, _)) => {
                self.watchpoints.remove(&id);
                true
            }
            None => false,
        }
    }

    /// The watchpoint with this id.
    pub fn watchpoint(&self, id: u32) -> Option<Watchpoint> {
        self.watchpoints.get(&id).copied()
    }

    /// Deletes every breakpoint and watchpoint (a new gdb session sets its own).
    pub fn clear_breakpoints_and_watchpoints(&mut self) {
        self.breakpoints.clear();
        self.pending.clear();
        self.watchpoints.clear();
    }

    fn rip(&self) -> u64 {
        self.timeline.replayer.hv.guest.rip()
    }

    /// The auxiliary vector of the program being debugged (see `LinuxMachine::auxv_bytes`).
    /// The dynamic loader's list of loaded objects (`LinuxMachine::link_map`), the program first.
    pub fn link_map(&self) -> Option<Vec<LinkMapEntry>> {
        self.timeline.replayer.hv.guest.link_map()
    }

    pub fn auxv_bytes(&self) -> Vec<u8> {
        self.timeline.replayer.hv.guest.auxv_bytes()
    }

    fn bytes_at(&self, addr: u64, len: u64) -> Vec<u8> {
        let mem = self.timeline.replayer.hv.guest.memory();
        let mut b = vec![0u8; len as usize];
        if mem.peek(addr, &mut b).is_err() {
            // Partly unmapped: the mapped bytes, zeros for the rest.
            for (i, byte) in b.iter_mut().enumerate() {
                let mut one = [0u8];
                *byte = match mem.peek(addr + i as u64, &mut one) {
                    Ok(()) => one[0],
                    Err(_) => 0,
                };
            }
        }
        b
    }

    /// Gives the memory the current watchpoints (in id order) and reads their bytes at the current position.
    fn arm_watches(&mut self) {
        let ids: Vec<u32> = self.watchpoints.keys().copied().collect();
        let points: Vec<Watchpoint> = self.watchpoints.values().copied().collect();
        let machine = &mut self.timeline.replayer.hv.guest;
        if ids != self.armed.ids || machine.watch_hits().len() != ids.len() {
            let ranges: Vec<WatchRange> = points
                .iter()
                .map(|w| WatchRange {
                    addr: w.addr,
                    len: w.len,
                    reads: w.kind != WatchKind::Write,
                    writes: w.kind != WatchKind::Read,
                })
                .collect();
            machine.set_watches(&ranges);
            self.armed.hot_blocks.clear();
            self.armed.ids = ids;
            self.armed.points = points;
        }
        self.refresh_watched_bytes();
    }

    /// Reads the watched bytes at the current position (after a move that the counts did not follow: a seek).
    fn refresh_watched_bytes(&mut self) {
        let bytes = self
            .armed
            .points
            .iter()
            .map(|w| match w.kind {
                WatchKind::Read => Vec::new(),
                WatchKind::Write | WatchKind::Access => self.bytes_at(w.addr, w.len),
            })
            .collect();
        self.armed.bytes = bytes;
    }

    /// Remembers the memory's counts, before a block or an instruction runs.
    fn note_hits_before(&mut self) {
        let hits = self.timeline.replayer.hv.guest.watch_hits();
        self.armed.hits_before.clear();
        self.armed.hits_before.extend_from_slice(hits);
    }

    /// The counts' growth for watchpoint `i` since `note_hits_before`: (reads, writes).
    fn hits_since(&self, i: usize) -> (u64, u64) {
        let now = self.timeline.replayer.hv.guest.watch_hits()[i];
        let before = self.armed.hits_before[i];
        (now.reads - before.reads, now.writes - before.writes)
    }

    /// After a run of several instructions: whether it may have stopped on a watchpoint, so that it must be run
    /// again one checked instruction at a time. A `watch` whose bytes were written once and are unchanged did not
    /// stop (two writes may have changed them and back); a read or an access counted by `rwatch` or `awatch`
    /// always may have (the counts of bulk string instructions are only possible accesses).
    fn block_may_stop(&mut self) -> bool {
        for i in 0..self.armed.ids.len() {
            let (reads, writes) = self.hits_since(i);
            let point = self.armed.points[i];
            match point.kind {
                WatchKind::Write if writes >= 2 => return true,
                WatchKind::Write if writes == 1 => {
                    if self.bytes_at(point.addr, point.len) != self.armed.bytes[i] {
                        return true;
                    }
                }
                WatchKind::Write => {}
                WatchKind::Read | WatchKind::Access if reads + writes > 0 => return true,
                WatchKind::Read | WatchKind::Access => {}
            }
        }
        false
    }

    /// After exactly one instruction (which started at `icount`): the watchpoint it stops on, lowest id first,
    /// with the watched bytes brought up to date.
    fn instruction_watch_stop(&mut self, icount: u64) -> Option<Stop> {
        let mut stop = None;
        for i in 0..self.armed.ids.len() {
            let (reads, writes) = self.hits_since(i);
            if reads + writes == 0 {
                continue;
            }
            let point = self.armed.points[i];
            let new = self.bytes_at(point.addr, point.len);
            let old = match point.kind {
                WatchKind::Read => new.clone(),
                WatchKind::Write | WatchKind::Access => {
                    std::mem::replace(&mut self.armed.bytes[i], new.clone())
                }
            };
            let stops = match point.kind {
                WatchKind::Write => old != new,
                WatchKind::Read => reads > 0,
                WatchKind::Access => true,
            };
            if stops && stop.is_none() {
                stop = Some(Stop::Watchpoint(WatchHit {
                    id: self.armed.ids[i],
                    kind: point.kind,
                    wrote: writes > 0,
                    old,
                    new,
                    icount,
                }));
            }
        }
        stop
    }

    /// One instruction forward; the stop it causes, if any (a watchpoint before a breakpoint at the new rip).
    fn step_checked(&mut self) -> Option<Stop> {
        let icount = self.timeline.icount();
        if icount >= self.timeline.icount_end() || self.timeline.finished() {
            return Some(Stop::End);
        }
        self.note_hits_before();
        self.timeline.forward_to(icount + 1);
        self.instruction_watch_stop(icount)
            .or_else(|| self.breakpoint_here())
            .or_else(|| self.at_end().then_some(Stop::End))
    }

    /// The breakpoint at the current rip, as a stop.
    fn breakpoint_here(&self) -> Option<Stop> {
        let rip = self.rip();
        self.breakpoints
            .iter()
            .find(|(_, &a)| a == rip)
            .map(|(&id, _)| Stop::Breakpoint(id))
    }

    /// Single-steps (checking after every instruction) until `limit`; the first stop, if any.
    fn step_checked_to(&mut self, limit: u64) -> Option<Stop> {
        while self.timeline.icount() < limit {
            if let Some(s) = self.step_checked() {
                return Some(s);
            }
        }
        None
    }

    /// Counters that move when the guest may have left a block early (a signal was delivered, code was
    /// written), read after pending code writes were applied.
    fn deviation_counters(&mut self) -> (u64, u64) {
        let guest = &mut self.timeline.replayer.hv.guest;
        // Applies the code writes a syscall left pending, so that they count now and not in the next run.
        guest.apply_code_writes();
        (
            guest.stats().signals_delivered,
            guest.cache_stats().pages_invalidated,
        )
    }

    /// Runs forward until a breakpoint, a watchpoint, the end of history, `limit` or an interrupt (`poll`
    /// answering true, asked every `POLL_INTERVAL_INSNS` instructions or so); the stop, if any.
    ///
    /// Block by block at block speed: before each block the block cache says how many of its instructions run
    /// before a breakpoint address (`Machine::instructions_until`), and after it the memory's counts say
    /// whether it touched a watched range. A block that touched one, or that the guest left early (a signal, a
    /// write to code), is run again from the timeline one checked instruction at a time, and a block that
    /// touched one is stepped that way whenever it runs again. The result, and the icount at which it leaves
    /// the machine, are those of `step_checked` repeated.
    pub fn run_forward(&mut self, limit: u64, poll: &mut dyn FnMut() -> bool) -> Option<Stop> {
        self.arm_watches();
        let watching = !self.armed.ids.is_empty();
        self.resolve_pending();
        let mut stops: BTreeSet<u64> = self.breakpoints.values().copied().collect();
        let mut next_poll = self.timeline.icount().saturating_add(POLL_INTERVAL_INSNS);
        loop {
            let icount = self.timeline.icount();
            if self.at_end() {
                return Some(Stop::End);
            }
            if icount >= limit {
                return None;
            }
            if interrupted(icount, &mut next_poll, poll) {
                return Some(Stop::Interrupted);
            }
            let block_start = self.rip();
            let counters = self.deviation_counters();
            let block = self.timeline.replayer.hv.guest.instructions_until(&stops);
            let target = icount
                .saturating_add(block)
                .min(limit)
                .min(self.timeline.icount_end());
            if watching && self.armed.hot_blocks.contains(&block_start) {
                if let Some(s) = self.step_checked_to(target) {
                    return Some(s);
                }
                continue;
            }
            if watching {
                self.note_hits_before();
            }
            self.timeline.forward_to(target);
            let ran = self.timeline.icount() - icount;
            let deviated = self.deviation_counters() != counters;
            let touched = watching && self.block_may_stop();
            if ran <= 1 && touched {
                // One instruction: the counts are exact (no bulk string run), the stop is known.
                if let Some(s) = self.instruction_watch_stop(icount) {
                    return Some(s);
                }
            } else if (deviated || touched) && ran > 1 {
                let end = self.timeline.icount();
                self.timeline.seek(icount);
                self.refresh_watched_bytes();
                if touched && self.armed.hot_blocks.len() < WATCH_HOT_BLOCKS_MAX {
                    self.armed.hot_blocks.insert(block_start);
                }
                if let Some(s) = self.step_checked_to(end) {
                    return Some(s);
                }
                continue;
            }
            if touched {
                // Nothing stopped: the bytes as they are now are the ones the next block changes or not.
                self.refresh_watched_bytes();
            }
            // A block that mapped a library may define a pending breakpoint's symbol (its code runs later).
            if !self.pending.is_empty() && self.resolve_pending() {
                stops = self.breakpoints.values().copied().collect();
            }
            if let Some(s) = self.breakpoint_here() {
                return Some(s);
            }
        }
    }

    /// Runs forward until a breakpoint, a watchpoint or the end of history.
    pub fn continue_forward(&mut self) -> Stop {
        self.continue_forward_polling(&mut || false)
    }

    /// `continue_forward` that asks `poll` now and then whether to stop ([`Stop::Interrupted`]). At the end of
    /// a history that a signal ends, the first arrival is [`Stop::Signal`] and a continue from there
    /// [`Stop::Killed`] (the signal delivered).
    pub fn continue_forward_polling(&mut self, poll: &mut dyn FnMut() -> bool) -> Stop {
        if self.timeline.finished() {
            return self.fatal_signal().map_or(Stop::End, Stop::Killed);
        }
        match self.run_forward(u64::MAX, poll) {
            None | Some(Stop::End) => self.end_of_history(),
            Some(s) => s,
        }
    }

    /// One instruction forward, as `stepi` does: None when it simply stepped, or the stop it made. Stepping at
    /// the end of a history that a fault ends raises the fault (`Stop::Signal`); stepping from there delivers
    /// it (`Stop::Killed`).
    pub fn step_forward(&mut self) -> Option<Stop> {
        if self.timeline.finished() {
            return Some(self.fatal_signal().map_or(Stop::End, Stop::Killed));
        }
        let icount = self.timeline.icount();
        if icount >= self.timeline.icount_end() {
            return Some(self.end_of_history());
        }
        self.timeline.forward_to(icount + 1);
        if self.timeline.finished() {
            return self.fatal_signal().map(Stop::Signal);
        }
        None
    }

    /// At the end of the history: lets a guest that a fault killed take its last step, and says how the
    /// history ends.
    fn end_of_history(&mut self) -> Stop {
        self.timeline.finish_recorded_end();
        self.fatal_signal().map_or(Stop::End, Stop::Signal)
    }

    /// The signal (Linux's number) that killed the guest, once it has.
    pub fn fatal_signal(&self) -> Option<i32> {
        match self.timeline.replayer.hv.guest.termination() {
            Some(Termination::Signaled { signal, .. }) => Some(*signal),
            _ => None,
        }
    }

    /// Whether the fatal signal was raised by the instruction at rip without retiring it (a CPU fault): a guest
    /// that went on without the signal would run that instruction and raise it again.
    pub fn fatal_signal_repeats(&self) -> bool {
        let guest = &self.timeline.replayer.hv.guest;
        match (guest.termination(), guest.stats().last_fault) {
            (Some(Termination::Signaled { signal, rip, .. }), Some(fault)) => {
                fault.signo == *signal && *rip == guest.rip()
            }
            _ => false,
        }
    }

    /// The siginfo of the fatal signal, once the guest is stopped with it: the fault's (si_code, si_addr) for a
    /// CPU fault or a memory error, SI_USER from the guest itself otherwise (as the core dump's NT_SIGINFO).
    pub fn fatal_siginfo(&self) -> Option<SigInfo> {
        let signal = self.fatal_signal()?;
        Some(match self.timeline.replayer.hv.guest.stats().last_fault {
            Some(info) if info.signo == signal => info,
            _ => SigInfo {
                signo: signal,
                code: 0,
                addr: (GUEST_PID as u32 as u64) | (GUEST_UID << 32),
                value: 0,
            },
        })
    }

    /// Runs backward to the latest earlier stop, or to the start of history.
    pub fn continue_backward(&mut self) -> Stop {
        self.continue_backward_polling(&mut || false)
    }

    /// Runs backward to the latest earlier stop, or to the start of history, asking `poll` now and then
    /// whether to stop. Works as rr's reverse-continue does: from the latest checkpoint before the current
    /// icount, run forward (at block speed, `run_forward`) to it remembering the last stop; if there was none,
    /// retry from the checkpoint before that. A watchpoint's stop is placed before its instruction (the
    /// instruction's effect undone); a breakpoint's where it was hit. An interrupt leaves the position at the
    /// earliest icount from which the rest of the way back has been searched without a stop.
    pub fn continue_backward_polling(&mut self, poll: &mut dyn FnMut() -> bool) -> Stop {
        let here = self.timeline.icount();
        // Stopped with the fatal signal of a fault, the guest is one step past the state at the same icount
        // where it was about to raise it: a stop there (a breakpoint on the faulting instruction) is earlier.
        let past_the_fault = self.timeline.finished() && here == self.timeline.icount_end();
        let mut upto = here;
        while upto > 0 {
            let from = self.timeline.checkpoint_before(upto).unwrap_or(0);
            self.timeline.seek(from);
            let mut last: Option<(u64, Stop)> = None;
            // A breakpoint at the checkpoint itself counts too.
            if from < here && from != 0 {
                if let Some(s) = self.breakpoint_here() {
                    last = Some((from, s));
                }
            }
            loop {
                match self.run_forward(upto, poll) {
                    None
                    | Some(Stop::End)
                    | Some(Stop::Start)
                    | Some(Stop::Signal(_))
                    | Some(Stop::Killed(_)) => break,
                    Some(Stop::Interrupted) => {
                        self.timeline.seek(upto);
                        return Stop::Interrupted;
                    }
                    Some(s) => {
                        let icount = self.timeline.icount();
                        let at = match &s {
                            Stop::Watchpoint(hit) => hit.icount,
                            _ => icount,
                        };
                        if at < here || (past_the_fault && at == here && !self.timeline.finished())
                        {
                            last = Some((at, s));
                        }
                        if icount >= upto {
                            break;
                        }
                    }
                }
                if self.timeline.finished() {
                    break;
                }
            }
            if let Some((icount, stop)) = last {
                self.timeline.seek(icount);
                return stop;
            }
            upto = from;
        }
        self.timeline.seek(0);
        Stop::Start
    }

    /// The current position: icount, rip, symbol and instruction.
    pub fn position(&self) -> String {
        let guest = &self.timeline.replayer.hv.guest;
        let rip = guest.rip();
        let (_, text) = guest.describe_instruction(rip);
        let state = match self.timeline.replayer.hv.guest.termination() {
            None => String::new(),
            Some(Termination::Exited { .. }) => " (the guest has exited)".into(),
            Some(Termination::Signaled { signal, .. }) => {
                format!(" (the guest ends here, by {})", signal_name(*signal))
            }
            Some(Termination::Deadlock { .. }) => " (every task is blocked: deadlock)".into(),
        };
        format!(
            "icount {} rip {rip:#x}{}: {text}{state}",
            self.timeline.icount(),
            self.symbolize(rip)
        )
    }

    fn describe_stop(&self, stop: &Stop) -> String {
        match stop {
            Stop::Breakpoint(id) => format!("breakpoint {id}, {}", self.position()),
            Stop::Watchpoint(hit) => {
                let label = match hit.kind {
                    WatchKind::Write => "watchpoint",
                    WatchKind::Read => "read watchpoint",
                    WatchKind::Access => "access watchpoint",
                };
                let what = if hit.wrote && hit.kind != WatchKind::Read {
                    format!("{} -> {}", hex(&hit.old), hex(&hit.new))
                } else {
                    format!("read, value {}", hex(&hit.new))
                };
                let when = if self.timeline.icount() == hit.icount {
                    "going backwards: before the instruction, its effect undone; "
                } else {
                    ""
                };
                format!("{label} {}: {what}, {when}{}", hit.id, self.position())
            }
            Stop::End => format!("end of history, {}", self.position()),
            Stop::Start => format!("start of history, {}", self.position()),
            Stop::Interrupted => format!("interrupted, {}", self.position()),
            Stop::Signal(signal) => {
                let cause = match self.timeline.replayer.hv.guest.termination() {
                    Some(Termination::Signaled { cause, .. }) => format!(" ({cause})"),
                    _ => String::new(),
                };
                format!(
                    "the guest received {} (signal {signal}){cause}; the history ends with it, {}",
                    signal_name(*signal),
                    self.position()
                )
            }
            Stop::Killed(signal) => format!(
                "the guest was killed by {} (signal {signal}); nothing follows in the history, {}",
                signal_name(*signal),
                self.position()
            ),
        }
    }

    /// `watch`, `rwatch` and `awatch`: ADDR|SYMBOL LEN.
    fn watch_command(&mut self, args: &[&str], kind: WatchKind) -> Result<String, String> {
        let cmd = kind.command();
        let (Some(a), Some(l)) = (args.first(), args.get(1)) else {
            return Err(format!("{cmd} ADDR|SYMBOL LEN"));
        };
        let addr = self.address(a)?;
        let len = parse_u64(l).ok_or_else(|| format!("{cmd} ADDR LEN: LEN is a number"))?;
        let id = self
            .add_watchpoint(addr, len, kind)
            .map_err(|e| format!("{cmd}: {e}"))?;
        let label = match kind {
            WatchKind::Write => "watchpoint",
            WatchKind::Read => "read watchpoint",
            WatchKind::Access => "access watchpoint",
        };
        Ok(format!(
            "{label} {id} on {len} bytes at {addr:#x}{}",
            self.symbolize(addr)
        ))
    }

    /// `stepi N`: N instructions forward, or up to the end of history and the stop there.
    fn stepi(&mut self, n: u64) -> String {
        let icount = self.timeline.icount();
        let target = icount.saturating_add(n);
        let end = self.timeline.icount_end();
        if !self.timeline.finished() && icount < end {
            self.timeline.seek(target.min(end));
            if self.timeline.finished() {
                if let Some(signal) = self.fatal_signal() {
                    return self.describe_stop(&Stop::Signal(signal));
                }
            }
            if target <= end {
                return self.position();
            }
        }
        match self.step_forward() {
            Some(stop) => self.describe_stop(&stop),
            None => self.position(),
        }
    }

    /// Executes one command line; returns its output (no trailing newline) or an error message.
    pub fn execute(&mut self, line: &str) -> Result<String, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some((&cmd, args)) = words.split_first() else {
            return Ok(String::new());
        };
        let count = |i: usize| -> Result<u64, String> {
            match args.get(i) {
                None => Ok(1),
                Some(s) => parse_u64(s).ok_or_else(|| format!("{cmd}: {s:?} is not a number")),
            }
        };
        if MOVES.contains(&cmd) {
            self.selected = None;
        }
        match cmd {
            "threads" => Ok(self.threads_text()),
            "thread" => {
                let Some(arg) = args.first() else {
                    return Ok(format!("current thread {}", self.thread()));
                };
                let tid = arg
                    .parse::<i32>()
                    .map_err(|_| format!("thread TID: {arg:?} is not a thread id"))?;
                self.select_thread(Tid(tid))
            }
            "stepi" | "si" => {
                let n = count(0)?;
                Ok(self.stepi(n))
            }
            "reverse-stepi" | "rsi" => {
                let n = count(0)?;
                let target = self.timeline.icount().saturating_sub(n);
                self.timeline.seek(target);
                Ok(self.position())
            }
            "continue" | "c" => {
                let s = self.continue_forward();
                Ok(self.describe_stop(&s))
            }
            "reverse-continue" | "rc" => {
                let s = self.continue_backward();
                Ok(self.describe_stop(&s))
            }
            "goto" => {
                let t = args
                    .first()
                    .and_then(|s| parse_u64(s))
                    .ok_or("goto ICOUNT: give an instruction count")?;
                self.timeline.seek(t);
                Ok(self.position())
            }
            "when" => Ok(format!("icount {}", self.timeline.icount())),
            "break" | "b" => {
                let a = args.first().ok_or("break ADDR|SYMBOL")?;
                match self.address(a) {
                    Ok(addr) => {
                        let id = self.add_breakpoint(addr);
                        Ok(format!(
                            "breakpoint {id} at {addr:#x}{}",
                            self.symbolize(addr)
                        ))
                    }
                    Err(_) if is_symbol_name(a) => {
                        let id = self.next_id;
                        self.next_id += 1;
                        self.pending.insert(id, a.to_string());
                        let why = match self.resolve_symbol(a) {
                            Resolved::NotYetChosen => {
                                "an indirect function whose implementation the loader has not chosen yet"
                            }
                            _ => "no object mapped yet defines it",
                        };
                        Ok(format!("breakpoint {id} ({a}) pending: {why}"))
                    }
                    Err(e) => Err(e),
                }
            }
            "watch" => self.watch_command(args, WatchKind::Write),
            "rwatch" => self.watch_command(args, WatchKind::Read),
            "awatch" => self.watch_command(args, WatchKind::Access),
            "delete" | "d" => match args.first() {
                None => {
                    self.clear_breakpoints_and_watchpoints();
                    Ok("deleted all breakpoints and watchpoints".into())
                }
                Some(s) => {
                    let id = parse_u64(s).ok_or("delete [N]")? as u32;
                    if self.breakpoints.remove(&id).is_some()
                        || self.pending.remove(&id).is_some()
                        || self.watchpoints.remove(&id).is_some()
                    {
                        Ok(format!("deleted {id}"))
                    } else {
                        Err(format!("no breakpoint or watchpoint {id}"))
                    }
                }
            },
            "regs" | "info" => Ok(self.registers_text()),
            "x" => {
                let a = args.first().ok_or("x ADDR LEN")?;
                let addr = self.address(a)?;
                let len = count(1)?.min(EXAMINE_BYTES_MAX);
                Ok(self.examine(addr, len))
            }
            "disas" => {
                let addr = match args.first() {
                    Some(a) => self.address(a)?,
                    None => self.rip(),
                };
                let n = count(1)
                    .map(|n| if args.len() > 1 { n } else { 8 })?
                    .min(DISAS_INSNS_MAX);
                Ok(self.disassemble(addr, n))
            }
            "syscalls" => Ok(self.syscalls_text()),
            "checkpoints" => {
                let list = self.timeline.checkpoint_list();
                let total: usize = list.iter().map(|(_, b)| b).sum();
                let mut s = String::new();
                for (icount, bytes) in &list {
                    let _ = writeln!(s, "checkpoint at icount {icount}: ~{bytes} bytes");
                }
                let _ = write!(s, "{} checkpoints, ~{total} bytes", list.len());
                Ok(s)
            }
            "help" => Ok(HELP.into()),
            _ => Err(format!("unknown command {cmd:?}; try help")),
        }
    }

    /// The thread `regs` and `x` show: the selected one, or the running one.
    pub fn thread(&self) -> Tid {
        self.selected
            .unwrap_or_else(|| self.timeline.replayer.hv.guest.current_tid())
    }

    /// Selects a thread for `regs` and `x` (until the next move).
    pub fn select_thread(&mut self, tid: Tid) -> Result<String, String> {
        let guest = &self.timeline.replayer.hv.guest;
        let Some(info) = guest.threads().into_iter().find(|t| t.tid == tid) else {
            return Err(format!("no thread {tid}; `threads` lists them"));
        };
        self.selected = Some(tid);
        Ok(format!(
            "thread {tid} (process {}) rip {:#x}{} {}",
            info.pid,
            info.rip,
            self.symbolize(info.rip),
            info.state
        ))
    }

    /// `threads`: every thread by tid (tid, process, rip, state), the selected one marked with `*`.
    pub fn threads_text(&self) -> String {
        let current = self.thread();
        let mut s = String::new();
        for t in self.timeline.replayer.hv.guest.threads() {
            let marker = if t.tid == current { '*' } else { ' ' };
            let _ = writeln!(
                s,
                "{marker} thread {} process {} rip {:#x}{} {}",
                t.tid,
                t.pid,
                t.rip,
                self.symbolize(t.rip),
                t.state
            );
        }
        s.trim_end().to_string()
    }

    pub fn registers_text(&self) -> String {
        let guest = &self.timeline.replayer.hv.guest;
        let regs = guest
            .thread_registers(self.thread())
            .unwrap_or_else(|| guest.registers());
        let mut s = String::new();
        for (i, name) in GPR_NAMES.iter().enumerate() {
            let _ = writeln!(s, "{name:<8} {:#018x}", regs.gpr[i]);
        }
        let _ = writeln!(
            s,
            "{:<8} {:#018x}{}",
            "rip",
            regs.rip,
            self.symbolize(regs.rip)
        );
        let _ = writeln!(s, "{:<8} {:#018x}", "rflags", regs.rflags);
        let _ = writeln!(s, "{:<8} {:#018x}", "fs_base", regs.fs_base);
        let _ = write!(s, "{:<8} {:#018x}", "gs_base", regs.gs_base);
        s
    }

    fn examine(&self, addr: u64, len: u64) -> String {
        let guest = &self.timeline.replayer.hv.guest;
        let mem = guest
            .thread_memory(self.thread())
            .unwrap_or_else(|| guest.memory());
        let mut s = String::new();
        let mut a = addr;
        while a < addr + len {
            let n = (addr + len - a).min(16);
            let _ = write!(s, "{a:#x}:");
            for i in 0..n {
                let mut b = [0u8];
                match mem.peek(a + i, &mut b) {
                    Ok(()) => {
                        let _ = write!(s, " {:02x}", b[0]);
                    }
                    Err(_) => {
                        let _ = write!(s, " ??");
                    }
                }
            }
            a += n;
            if a < addr + len {
                s.push('\n');
            }
        }
        s
    }

    fn disassemble(&self, addr: u64, n: u64) -> String {
        let guest = &self.timeline.replayer.hv.guest;
        let mut s = String::new();
        let mut a = addr;
        for i in 0..n {
            let (bytes, text) = guest.describe_instruction(a);
            let marker = if a == guest.rip() { "=>" } else { "  " };
            let _ = write!(s, "{marker} {a:#x}{}: {text}", self.symbolize(a));
            if i + 1 < n {
                s.push('\n');
            }
            if bytes.is_empty() {
                break;
            }
            a += bytes.len() as u64;
        }
        s
    }

    /// The recorded syscalls and memory faults, by icount (a fault at icount N fires after the syscall at N).
    fn syscalls_text(&self) -> String {
        let events = &self.timeline.replayer.events;
        let mut lines: Vec<(u64, String)> = Vec::new();
        let mut pending: Option<(u64, u64, Option<i32>)> = None;
        for e in events.iter() {
            match e {
                Event::SyscallEntry { icount, number } => pending = Some((*icount, *number, None)),
                Event::TaskSyscallEntry {
                    icount,
                    tid,
                    number,
                } => pending = Some((*icount, *number, Some(*tid))),
                Event::SyscallExit { result } => {
                    if let Some((icount, number, tid)) = pending.take() {
                        let task = tid.map_or(String::new(), |t| format!(" [task {t}]"));
                        let result = if *result == (-512i64) as u64 {
                            "(blocked, attempted again when woken)".to_string()
                        } else {
                            format!("= {}", *result as i64)
                        };
                        lines.push((
                            icount,
                            format!(
                                "icount {icount}: {} ({number}) {result}{task}",
                                syscall_name(number),
                            ),
                        ));
                    }
                }
                Event::Host(_) | Event::Fault(_) => {}
            }
        }
        if let Some((icount, number, _)) = pending {
            lines.push((
                icount,
                format!(
                    "icount {icount}: {} ({number}) (did not return)",
                    syscall_name(number)
                ),
            ));
        }
        for f in &self.timeline.replayer.faults {
            lines.push((
                f.report.icount,
                format!("icount {}: {}", f.report.icount, f.report.line()),
            ));
        }
        lines.sort_by_key(|(icount, _)| *icount);
        let mut s = String::new();
        for (_, line) in lines {
            let _ = writeln!(s, "{line}");
        }
        s.trim_end().to_string()
    }

    /// Whether the current position is the end of the recorded history.
    pub fn at_end(&self) -> bool {
        self.timeline.finished() || self.timeline.icount() >= self.timeline.icount_end()
    }

    pub fn progress_to(&mut self, icount: u64) -> Progress {
        self.timeline.seek(icount)
    }
}

/// The commands, for `help` (and `tandem debug --help`).
pub const HELP: &str = "stepi [N], reverse-stepi [N], continue, reverse-continue, goto ICOUNT, when, \
    break ADDR|SYMBOL, watch ADDR|SYMBOL LEN, rwatch ADDR|SYMBOL LEN, awatch ADDR|SYMBOL LEN, delete [N], regs, \
    x ADDR LEN, disas [ADDR [N]], threads, thread [TID], syscalls, checkpoints, quit";

/// The commands that move in time (they end a `thread TID` selection).
const MOVES: [&str; 9] = [
    "stepi",
    "si",
    "reverse-stepi",
    "rsi",
    "continue",
    "c",
    "reverse-continue",
    "rc",
    "goto",
];

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
