//! The command-line replay debugger: moves through a trace's timeline forwards and backwards and shows the
//! guest's state. Every command returns its output as text, so scripts and tests drive it the same way.
//!
//! Stops: a breakpoint stops with rip on its address, before that instruction runs; a watchpoint stops after
//! the instruction that changed the watched bytes. The CPU has no hooks, so `continue` asks the block cache
//! how many instructions of the current block run before a breakpoint address and runs exactly those at block
//! speed; watched pages are armed to report a write, and a stretch that wrote one is re-run from the timeline
//! one checked instruction at a time (`run_forward` says how). The stops are those of single-stepping with a
//! check after every instruction, which `tests/debugger_continue.rs` compares against. Reverse-continue works
//! as rr's does: from the latest checkpoint before the current icount, run forward to it remembering the last
//! stop; if there was none, retry from the checkpoint before that. Both poll their caller now and then, so
//! gdb's Ctrl-C can stop them at an exact icount.

use crate::replay::Replayer;
use crate::timeline::Timeline;
use crate::trace::Event;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use tandem_emulator::cpu::GPR_NAMES;
use tandem_emulator::linux::sysnames::syscall_name;
use tandem_emulator::linux::Progress;

/// Most bytes `x` shows and most instructions `disas` lists, and most steps one `stepi` takes.
pub const EXAMINE_BYTES_MAX: u64 = 4096;
pub const DISAS_INSNS_MAX: u64 = 256;
/// Instructions between two polls for an interrupt during a continue (about a tenth of a millisecond).
pub const POLL_INTERVAL_INSNS: u64 = 1 << 16;
/// Instructions run at block speed between two looks at the watched bytes.
pub const WATCH_CHUNK_INSNS: u64 = 1 << 12;
/// Most instructions single-stepped after a chunk wrote a watched page without changing the watched bytes.
pub const WATCH_PENALTY_INSNS_MAX: u64 = 1 << 20;

pub struct Debugger {
    pub timeline: Timeline,
    /// Symbol name -> address, and address -> name, from the embedded program's ELF symbol table.
    symbols: BTreeMap<String, u64>,
    /// Function start -> (name, size in bytes; 0 when unknown).
    by_address: BTreeMap<u64, (String, u64)>,
    breakpoints: BTreeMap<u32, u64>,
    watchpoints: BTreeMap<u32, (u64, u64)>,
    next_id: u32,
    /// Instructions run at block speed between two looks at the watched bytes (`WATCH_CHUNK_INSNS`).
    pub watch_chunk_insns: u64,
}

/// Why a continue stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    Breakpoint(u32),
    Watchpoint(u32, Vec<u8>, Vec<u8>),
    /// The end of the recorded history.
    End,
    /// The start of the history.
    Start,
    /// The caller's poll asked to stop (gdb's Ctrl-C); the position is an exact icount.
    Interrupted,
}

/// Whether `poll` asks to stop, asked once `icount` reaches `next_poll` (then `POLL_INTERVAL_INSNS` later).
fn interrupted(icount: u64, next_poll: &mut u64, poll: &mut dyn FnMut() -> bool) -> bool {
    if icount < *next_poll {
        return false;
    }
    *next_poll = icount.saturating_add(POLL_INTERVAL_INSNS);
    poll()
}

fn parse_u64(s: &str) -> Option<u64> {
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else {
        s.parse().ok()
    }
}

impl Debugger {
    pub fn new(replayer: Replayer) -> Debugger {
        let mut symbols = BTreeMap::new();
        let mut by_address = BTreeMap::new();
        {
            use object::{Object, ObjectSymbol, SymbolKind};
            if let Ok(file) = object::File::parse(&*replayer.header.program) {
                for sym in file.symbols() {
                    if let Ok(name) = sym.name() {
                        if !name.is_empty()
                            && sym.address() != 0
                            && matches!(sym.kind(), SymbolKind::Text | SymbolKind::Data)
                            && !name.starts_with('.')
                        {
                            symbols.insert(name.to_string(), sym.address());
                            if sym.kind() == SymbolKind::Text {
                                by_address
                                    .entry(sym.address())
                                    .or_insert((name.to_string(), sym.size()));
                            }
                        }
                    }
                }
            }
        }
        Debugger {
            timeline: Timeline::new(replayer),
            symbols,
            by_address,
            breakpoints: BTreeMap::new(),
            watchpoints: BTreeMap::new(),
            next_id: 1,
            watch_chunk_insns: WATCH_CHUNK_INSNS,
        }
    }

    pub fn symbol(&self, name: &str) -> Option<u64> {
        self.symbols.get(name).copied()
    }

    /// `name+offset` for an address inside a known function.
    pub fn symbolize(&self, addr: u64) -> String {
        match self.by_address.range(..=addr).next_back() {
            Some((a, (n, size)))
                if addr - a < (*size).max(1) || (*size == 0 && addr - a < 0x100) =>
            {
                if *a == addr {
                    format!(" <{n}>")
                } else {
                    format!(" <{n}+{}>", addr - a)
                }
            }
            _ => String::new(),
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

    pub fn add_watchpoint(&mut self, addr: u64, len: u64) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        self.watchpoints.insert(id, (addr, len.clamp(1, 64)));
        id
    }

    pub fn remove_watchpoint_at(&mut self, addr: u64) {
        self.watchpoints.retain(|_, (a, _)| *a != addr);
    }

    fn rip(&self) -> u64 {
        self.timeline.replayer.hv.guest.rip()
    }

    fn watched(&self) -> Vec<(u32, Vec<u8>)> {
        let mem = self.timeline.replayer.hv.guest.memory();
        self.watchpoints
            .iter()
            .map(|(&id, &(addr, len))| {
                let mut b = vec![0u8; len as usize];
                for (i, byte) in b.iter_mut().enumerate() {
                    let mut one = [0u8];
                    if mem.peek(addr + i as u64, &mut one).is_ok() {
                        *byte = one[0];
                    }
                }
                (id, b)
            })
            .collect()
    }

    /// One instruction forward; the stop it causes, if any.
    fn step_checked(&mut self) -> Option<Stop> {
        let before = self.watched();
        let icount = self.timeline.icount();
        if icount >= self.timeline.icount_end() || self.timeline.finished() {
            return Some(Stop::End);
        }
        self.timeline.forward_to(icount + 1);
        let after = self.watched();
        for ((id, old), (_, new)) in before.into_iter().zip(after) {
            if old != new {
                return Some(Stop::Watchpoint(id, old, new));
            }
        }
        self.breakpoint_here()
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

    /// Counters that move when the guest may have left a block early (a signal was delivered, code or a
    /// watched page was written), read after pending code writes were applied.
    fn deviation_counters(&mut self) -> (u64, u64) {
        let guest = &mut self.timeline.replayer.hv.guest;
        // Applies the code writes a syscall left pending, so that they count now and not in the next run.
        guest.apply_code_writes();
        (
            guest.stats().signals_delivered,
            guest.cache_stats().pages_invalidated,
        )
    }

    /// Runs forward at block speed until a breakpoint, the end of history or `limit`. Exact: before each
    /// block the block cache says how many of its instructions run before a breakpoint address
    /// (`Machine::instructions_until`); a block the guest left early (a signal, a write to code or to a
    /// watched page) is run again from the timeline, one checked instruction at a time. The result, and the
    /// icount at which it leaves the machine, are those of `step_checked` repeated.
    fn run_blocks(&mut self, limit: u64, poll: &mut dyn FnMut() -> bool) -> Option<Stop> {
        let stops: BTreeSet<u64> = self.breakpoints.values().copied().collect();
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
            let counters = self.deviation_counters();
            let block = self.timeline.replayer.hv.guest.instructions_until(&stops);
            let target = icount
                .saturating_add(block)
                .min(limit)
                .min(self.timeline.icount_end());
            self.timeline.forward_to(target);
            if self.deviation_counters() != counters && target - icount > 1 {
                self.timeline.seek(icount);
                if let Some(s) = self.step_checked_to(target) {
                    return Some(s);
                }
                continue;
            }
            if let Some(s) = self.breakpoint_here() {
                return Some(s);
            }
        }
    }

    /// Arms the pages of every watched range to report a write (`Machine::report_writes_to`).
    fn arm_watched_pages(&mut self) {
        let guest = &mut self.timeline.replayer.hv.guest;
        for &(addr, len) in self.watchpoints.values() {
            let mut page = addr & !0xfff;
            while page < addr.saturating_add(len) {
                guest.report_writes_to(page);
                page = page.saturating_add(0x1000);
            }
        }
    }

    /// Runs forward until a breakpoint, a watchpoint, the end of history, `limit` or an interrupt (`poll`
    /// answering true, asked every `POLL_INTERVAL_INSNS` instructions or so); the stop, if any.
    ///
    /// Watchpoints: the run goes in chunks of `WATCH_CHUNK_INSNS` at block speed with the watched pages armed
    /// to report a write. A chunk in which no watched page was written cannot have changed the watched bytes;
    /// one in which one was is run again from the timeline one checked instruction at a time, which finds the
    /// exact instruction that changed them (as `step_checked` would), or none when a write left them as they
    /// were. After such a false alarm (another variable on the same page, say) the run keeps single-stepping
    /// for a while, doubling each time, so a hot page costs at most about what single-stepping all the way
    /// would.
    pub fn run_forward(&mut self, limit: u64, poll: &mut dyn FnMut() -> bool) -> Option<Stop> {
        if self.watchpoints.is_empty() {
            return self.run_blocks(limit, poll);
        }
        let mut stepping_until = 0u64;
        let chunk = self.watch_chunk_insns.max(1);
        let mut penalty = chunk;
        let mut next_poll = self.timeline.icount().saturating_add(POLL_INTERVAL_INSNS);
        loop {
            let start = self.timeline.icount();
            if self.at_end() {
                return Some(Stop::End);
            }
            if start >= limit {
                return None;
            }
            if interrupted(start, &mut next_poll, poll) {
                return Some(Stop::Interrupted);
            }
            let chunk_end = start.saturating_add(chunk).min(limit);
            if start < stepping_until {
                if let Some(s) = self.step_checked_to(chunk_end.min(stepping_until)) {
                    return Some(s);
                }
                continue;
            }
            let before = self.watched();
            self.arm_watched_pages();
            let (_, written_before) = self.deviation_counters();
            let stop = self.run_blocks(chunk_end, &mut || false);
            if let Some(Stop::Watchpoint(..)) = stop {
                // Found by single-stepping the block that first wrote a watched page in this chunk: before it,
                // no watched byte was written, so this is the first change.
                return stop;
            }
            let (_, written_after) = self.deviation_counters();
            let changed = self.watched() != before;
            if !changed && written_after == written_before {
                match stop {
                    None => {
                        penalty = chunk;
                        continue;
                    }
                    Some(s) => return Some(s),
                }
            }
            // A watched page was written (or code was): redo the chunk instruction by instruction.
            let end = self.timeline.icount();
            self.timeline.seek(start);
            if let Some(s) = self.step_checked_to(end) {
                return Some(s);
            }
            if let Some(s) = stop {
                // The chunk ended on a stop that stepping reached too (the end of history, say).
                return Some(s);
            }
            stepping_until = end.saturating_add(penalty);
            penalty = penalty.saturating_mul(2).min(WATCH_PENALTY_INSNS_MAX);
        }
    }

    /// Runs forward until a breakpoint, a watchpoint or the end of history.
    pub fn continue_forward(&mut self) -> Stop {
        self.continue_forward_polling(&mut || false)
    }

    /// `continue_forward` that asks `poll` now and then whether to stop ([`Stop::Interrupted`]).
    pub fn continue_forward_polling(&mut self, poll: &mut dyn FnMut() -> bool) -> Stop {
        self.run_forward(u64::MAX, poll).unwrap_or(Stop::End)
    }

    /// Runs backward to the latest earlier stop, or to the start of history.
    pub fn continue_backward(&mut self) -> Stop {
        self.continue_backward_polling(&mut || false)
    }

    /// Runs backward to the latest earlier stop, or to the start of history, asking `poll` now and then
    /// whether to stop. Works as rr's reverse-continue does: from the latest checkpoint before the current
    /// icount, run forward (at block speed, `run_forward`) to it remembering the last stop; if there was none,
    /// retry from the checkpoint before that. An interrupt leaves the position at the earliest icount from
    /// which the rest of the way back has been searched without a stop.
    pub fn continue_backward_polling(&mut self, poll: &mut dyn FnMut() -> bool) -> Stop {
        let here = self.timeline.icount();
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
                    None | Some(Stop::End) | Some(Stop::Start) => break,
                    Some(Stop::Interrupted) => {
                        self.timeline.seek(upto);
                        return Stop::Interrupted;
                    }
                    Some(s) => {
                        let icount = self.timeline.icount();
                        if icount < here {
                            last = Some((icount, s));
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
        let state = if self.timeline.finished() {
            " (the guest has exited)"
        } else {
            ""
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
            Stop::Watchpoint(id, old, new) => format!(
                "watchpoint {id}: {} -> {}, {}",
                hex(old),
                hex(new),
                self.position()
            ),
            Stop::End => format!("end of history, {}", self.position()),
            Stop::Start => format!("start of history, {}", self.position()),
            Stop::Interrupted => format!("interrupted, {}", self.position()),
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
        match cmd {
            "stepi" | "si" => {
                let n = count(0)?;
                let target = self.timeline.icount().saturating_add(n);
                self.timeline.seek(target);
                Ok(self.position())
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
                let addr = self.address(a)?;
                let id = self.add_breakpoint(addr);
                Ok(format!(
                    "breakpoint {id} at {addr:#x}{}",
                    self.symbolize(addr)
                ))
            }
            "watch" => {
                let (Some(a), Some(l)) = (args.first(), args.get(1)) else {
                    return Err("watch ADDR LEN".into());
                };
                let addr = self.address(a)?;
                let len = parse_u64(l).ok_or("watch ADDR LEN: LEN is a number")?;
                let id = self.add_watchpoint(addr, len);
                Ok(format!("watchpoint {id} on {len} bytes at {addr:#x}"))
            }
            "delete" | "d" => match args.first() {
                None => {
                    self.breakpoints.clear();
                    self.watchpoints.clear();
                    Ok("deleted all breakpoints and watchpoints".into())
                }
                Some(s) => {
                    let id = parse_u64(s).ok_or("delete [N]")? as u32;
                    if self.breakpoints.remove(&id).is_some()
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
            "help" => Ok(
                "stepi [N], reverse-stepi [N], continue, reverse-continue, goto ICOUNT, when, \
                break ADDR|SYMBOL, watch ADDR LEN, delete [N], regs, x ADDR LEN, disas [ADDR [N]], \
                syscalls, checkpoints, quit"
                    .into(),
            ),
            _ => Err(format!("unknown command {cmd:?}; try help")),
        }
    }

    pub fn registers_text(&self) -> String {
        let regs = self.timeline.replayer.hv.guest.registers();
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
        let mem = self.timeline.replayer.hv.guest.memory();
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
        let mut pending: Option<(u64, u64)> = None;
        for e in events.iter() {
            match e {
                Event::SyscallEntry { icount, number } => pending = Some((*icount, *number)),
                Event::SyscallExit { result } => {
                    if let Some((icount, number)) = pending.take() {
                        lines.push((
                            icount,
                            format!(
                                "icount {icount}: {} ({number}) = {}",
                                syscall_name(number),
                                *result as i64
                            ),
                        ));
                    }
                }
                Event::Host(_) | Event::Fault(_) => {}
            }
        }
        if let Some((icount, number)) = pending {
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

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
