//! The command-line replay debugger: moves through a trace's timeline forwards and backwards and shows the
//! guest's state. Every command returns its output as text, so scripts and tests drive it the same way.
//!
//! Breakpoints and watchpoints are checked between instructions (the CPU has no hooks): `continue` and
//! `reverse-continue` single-step, which is exact but runs at single-step speed. A watchpoint stops after an
//! instruction that changed the watched bytes. Reverse-continue works as rr's does: from the latest checkpoint
//! before the current icount, run forward to it remembering the last stop; if there was none, retry from the
//! checkpoint before that.

use crate::replay::Replayer;
use crate::timeline::Timeline;
use crate::trace::Event;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use tandem_emulator::cpu::GPR_NAMES;
use tandem_emulator::linux::sysnames::syscall_name;
use tandem_emulator::linux::Progress;

/// Most bytes `x` shows and most instructions `disas` lists, and most steps one `stepi` takes.
pub const EXAMINE_BYTES_MAX: u64 = 4096;
pub const DISAS_INSNS_MAX: u64 = 256;

pub struct Debugger {
    pub timeline: Timeline,
    /// Symbol name -> address, and address -> name, from the embedded program's ELF symbol table.
    symbols: BTreeMap<String, u64>,
    /// Function start -> (name, size in bytes; 0 when unknown).
    by_address: BTreeMap<u64, (String, u64)>,
    breakpoints: BTreeMap<u32, u64>,
    watchpoints: BTreeMap<u32, (u64, u64)>,
    next_id: u32,
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
        self.timeline.replayer.hv.guest.machine.cpu.rip
    }

    fn watched(&self) -> Vec<(u32, Vec<u8>)> {
        let mem = &self.timeline.replayer.hv.guest.machine.cpu.mem;
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
        let rip = self.rip();
        if let Some((&id, _)) = self.breakpoints.iter().find(|(_, &a)| a == rip) {
            return Some(Stop::Breakpoint(id));
        }
        if self.timeline.icount() >= self.timeline.icount_end() || self.timeline.finished() {
            return Some(Stop::End);
        }
        None
    }

    /// Runs forward until a breakpoint, a watchpoint or the end of history.
    pub fn continue_forward(&mut self) -> Stop {
        loop {
            if let Some(s) = self.step_checked() {
                return s;
            }
        }
    }

    /// Runs backward to the latest earlier stop, or to the start of history.
    pub fn continue_backward(&mut self) -> Stop {
        let here = self.timeline.icount();
        let mut upto = here;
        while upto > 0 {
            let from = self.timeline.checkpoint_before(upto).unwrap_or(0);
            self.timeline.seek(from);
            let mut last: Option<(u64, Stop)> = None;
            // A breakpoint at the checkpoint itself counts too.
            if from < here && self.breakpoints.values().any(|&a| a == self.rip()) && from != 0 {
                let id = *self
                    .breakpoints
                    .iter()
                    .find(|(_, &a)| a == self.rip())
                    .unwrap()
                    .0;
                last = Some((from, Stop::Breakpoint(id)));
            }
            while self.timeline.icount() < upto {
                match self.step_checked() {
                    Some(Stop::End) | None => {}
                    Some(s) => {
                        if self.timeline.icount() < here {
                            last = Some((self.timeline.icount(), s));
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
        let m = &self.timeline.replayer.hv.guest.machine;
        let rip = m.cpu.rip;
        let (_, text) = m.describe_instruction(rip);
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
        let cpu = &self.timeline.replayer.hv.guest.machine.cpu;
        let mut s = String::new();
        for (i, name) in GPR_NAMES.iter().enumerate() {
            let _ = writeln!(s, "{name:<8} {:#018x}", cpu.gpr[i]);
        }
        let _ = writeln!(
            s,
            "{:<8} {:#018x}{}",
            "rip",
            cpu.rip,
            self.symbolize(cpu.rip)
        );
        let _ = writeln!(s, "{:<8} {:#018x}", "rflags", cpu.rflags());
        let _ = writeln!(s, "{:<8} {:#018x}", "fs_base", cpu.fs_base);
        let _ = write!(s, "{:<8} {:#018x}", "gs_base", cpu.gs_base);
        s
    }

    fn examine(&self, addr: u64, len: u64) -> String {
        let mem = &self.timeline.replayer.hv.guest.machine.cpu.mem;
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
        let m = &self.timeline.replayer.hv.guest.machine;
        let mut s = String::new();
        let mut a = addr;
        for i in 0..n {
            let (bytes, text) = m.describe_instruction(a);
            let marker = if a == m.cpu.rip { "=>" } else { "  " };
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
