//! Hypervisor services around a guest process: memory-fault injection, containment and recovery of uncorrectable
//! errors, ELF core dumps, and fault campaigns.
//!
//! What it owns: `Hypervisor`, which wraps a `LinuxMachine` and drives it with `run(budget)` so that each fault of
//! the plan fires at its exact icount (the guest is stopped when exactly that many instructions have retired);
//! the report lines of every fault; the copy of the binary that clean pages are re-read from.
//!
//! Key decisions:
//! - Faults act on guest-physical frames (`memory::FrameId`), as real memory errors do; an address in a plan is
//!   resolved to its frame when the fault fires. Containment follows mm/memory-failure.c (see containment.rs).
//! - Drawn faults come from one named stream, `cpu::named_stream(fault_seed, "faults.mem")`: the icounts of
//!   `count=` specs are drawn when the run starts, `rate=` gaps and every target (frame, byte, bit) when a fault
//!   fires. The run is deterministic, so the draws are too.
//! - A stuck bit is enforced by guest memory itself (`Memory::set_stuck_bit`): the frame is never cached for
//!   writing, and every write to it, by the guest or the kernel side, forces the bit again, so the guest never
//!   reads back anything else. That covers compiled code (its stores go through the write TLB), the bulk REP
//!   MOVS/STOS path (it writes through a host pointer, then `Memory::host_write_done`), syscalls filling a buffer
//!   (`write_bytes`), the loader and debuggers (`poke`), copy-on-write copies and frames reused after a free.
//!   Memory snapshots and forks carry the defect. `tests::stuck_bits_hold_against_string_stores_reads_and_compiled_stores`
//!   holds a guest's writes to it, with the block compiler on and off.
//! - The guest's SIGBUS for a touched poisoned page comes from the CPU (#MC) through the Linux layer's
//!   signal delivery (BUS_MCEERR_AR, si_addr, si_addr_lsb 12); the layer counts the touches per frame in
//!   `Stats::machine_checks`, which is how a report's outcome becomes "killed" or "recovered" by the end.
//!
//! It must not: do IO (the CLI writes cores and prints reports), read the clock, or read a poisoned frame.
//!
//! Layout: plan.rs (fault plans), containment.rs (policy, actions, outcomes, report lines), core.rs (ELF cores),
//! campaign.rs (many seeded runs in parallel, outcome tables).

pub mod campaign;
pub mod containment;
pub mod core;
pub mod plan;

use crate::cpu::named_stream;
use crate::linux::elf::{self, ElfFile, LoadError};
use crate::linux::{EarlyKill, Host, LinuxConfig, LinuxMachine, Progress, Termination};
use crate::memory::{FrameClass, FrameId, Memory, PAGE_MASK, PAGE_SIZE};
use containment::{Action, ErrorReport, Outcome};
use plan::{FaultEvent, FaultKind, FaultPlan, Injection, PageState, RandomFaults, Target};
use rand::Rng;
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A fault as it fired: the injection (None when nothing could be injected: no frame at the address, no frame of
/// the class), its report line as it stood then, and where the guest was (rip and an FNV-1a of rip and the
/// general registers). A recording logs one per report line; a replay re-applies the injections and compares.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRecord {
    pub injection: Option<Injection>,
    pub report: ErrorReport,
    pub rip: u64,
    pub register_fnv: u64,
}

/// A replayed fault that did not do what the recording says it did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultMismatch {
    pub icount: u64,
    pub message: String,
}

/// The hypervisor's state besides the guest's, for rewinding a replay (see `snapshot_faults`).
#[derive(Clone)]
pub struct FaultSnapshot {
    scheduled_next: usize,
    random_next: Vec<u64>,
    rng: ChaCha20Rng,
    injections: Vec<Injection>,
    reports: Vec<ErrorReport>,
    early: Vec<Option<EarlyKill>>,
    log: Vec<FaultRecord>,
    mismatch: Option<FaultMismatch>,
}

/// How the hypervisor reacts to memory errors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Send BUS_MCEERR_AO at once for a lost page (vm.memory_failure_early_kill = 1) instead of waiting for the
    /// guest to touch it.
    pub early_kill: bool,
    /// Unused: stuck bits are now enforced by memory on every write. Kept because version-2 trace headers
    /// record it; drop it with the next trace format version.
    pub stuck_period_insns: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            early_kill: false,
            stuck_period_insns: 10_000,
        }
    }
}

struct RandomState {
    spec: RandomFaults,
    /// The icount of this spec's next rate-drawn fault (u64::MAX: none).
    next_icount: u64,
}

/// A guest under the hypervisor.
pub struct Hypervisor<H: Host> {
    pub guest: LinuxMachine<H>,
    program: Arc<[u8]>,
    elf: ElfFile,
    /// The binary's pages as the loader placed them, made on the first clean-page recovery.
    clean_image: Option<Memory>,
    policy: Policy,
    plan: FaultPlan,
    /// Explicit events and drawn `count=` faults, by icount (stable: plan order within an icount).
    scheduled: Vec<(u64, Scheduled)>,
    scheduled_next: usize,
    random: Vec<RandomState>,
    rng: ChaCha20Rng,
    injections: Vec<Injection>,
    reports: Vec<ErrorReport>,
    /// For each report of a lost page: the early-kill result, if one was sent.
    early: Vec<Option<EarlyKill>>,
    /// One record per report line, in order (what a recording writes).
    log: Vec<FaultRecord>,
    /// The injection being made, for the log entry of its report.
    firing: Option<Injection>,
    /// Replay: the recorded faults that `Scheduled::Replay` re-applies.
    replaying: Vec<FaultRecord>,
    mismatch: Option<FaultMismatch>,
}

#[derive(Clone, Copy, Debug)]
enum Scheduled {
    Event(FaultEvent),
    /// Recorded fault `index` of `replaying`.
    Replay(usize),
    /// A drawn fault of random spec `index`.
    Drawn {
        index: usize,
        kind: FaultKind,
    },
}

impl<H: Host> Hypervisor<H> {
    /// Loads `program` under the plan. `fault_seed` keys the "faults.mem" stream (usually the run's root seed;
    /// campaigns vary it while the guest's own seed stays fixed, so one fault-free run serves every seed).
    pub fn new(
        config: LinuxConfig,
        program: Arc<[u8]>,
        host: H,
        plan: FaultPlan,
        policy: Policy,
        fault_seed: u64,
    ) -> Result<Self, LoadError> {
        let guest = LinuxMachine::new(config, &program, host)?;
        Hypervisor::with_guest(guest, program, plan, policy, fault_seed)
    }

    /// A guest that is already running (restored from a warm snapshot, replay/src/pools; a fault campaign's
    /// checkpoint) under the plan. The plan's schedule is drawn exactly as `new` draws it, so faults at or after
    /// the guest's icount fire as they would have in a run from the start. Faults the plan puts before the guest's icount fire at once: the caller starts from a
    /// point before the first fault (`first_fault_icount`).
    pub fn with_guest(
        guest: LinuxMachine<H>,
        program: Arc<[u8]>,
        plan: FaultPlan,
        policy: Policy,
        fault_seed: u64,
    ) -> Result<Self, LoadError> {
        let elf = ElfFile::parse(&program)?;
        let drawn = DrawnSchedule::draw(&plan, fault_seed);
        Ok(Hypervisor {
            guest,
            program,
            elf,
            clean_image: None,
            policy,
            plan,
            scheduled: drawn.scheduled,
            scheduled_next: 0,
            random: drawn.random,
            rng: drawn.rng,
            injections: Vec::new(),
            reports: Vec::new(),
            early: Vec::new(),
            log: Vec::new(),
            firing: None,
            replaying: Vec::new(),
            mismatch: None,
        })
    }

    /// Loads `program` to replay recorded faults: each record's injection is re-applied at its icount (nothing is
    /// drawn), and what it does is compared with the record; the first difference is `fault_mismatch`.
    pub fn replaying(
        config: LinuxConfig,
        program: Arc<[u8]>,
        host: H,
        records: Vec<FaultRecord>,
        policy: Policy,
    ) -> Result<Self, LoadError> {
        let mut hv = Hypervisor::new(config, program, host, FaultPlan::default(), policy, 0)?;
        hv.scheduled = records
            .iter()
            .enumerate()
            .map(|(i, r)| (r.report.icount, Scheduled::Replay(i)))
            .collect();
        hv.scheduled.sort_by_key(|(at, _)| *at);
        hv.replaying = records;
        Ok(hv)
    }

    /// One record per report line so far, with the report as it stood when the fault fired.
    pub fn fault_log(&self) -> &[FaultRecord] {
        &self.log
    }

    /// The first replayed fault that differed from its record.
    pub fn fault_mismatch(&self) -> Option<&FaultMismatch> {
        self.mismatch.as_ref()
    }

    /// The icount of the next fault that will fire (u64::MAX: none known).
    pub fn next_fault_icount(&self) -> u64 {
        self.next_fault_at()
    }

    /// The hypervisor's state (not the guest's), to rewind together with a guest snapshot.
    pub fn snapshot_faults(&self) -> FaultSnapshot {
        FaultSnapshot {
            scheduled_next: self.scheduled_next,
            random_next: self.random.iter().map(|r| r.next_icount).collect(),
            rng: self.rng.clone(),
            injections: self.injections.clone(),
            reports: self.reports.clone(),
            early: self.early.clone(),
            log: self.log.clone(),
            mismatch: self.mismatch.clone(),
        }
    }

    pub fn restore_faults(&mut self, s: &FaultSnapshot) {
        self.scheduled_next = s.scheduled_next;
        for (r, &next) in self.random.iter_mut().zip(&s.random_next) {
            r.next_icount = next;
        }
        self.rng = s.rng.clone();
        self.injections = s.injections.clone();
        self.reports = s.reports.clone();
        self.early = s.early.clone();
        self.log = s.log.clone();
        self.mismatch = s.mismatch.clone();
        self.firing = None;
    }

    pub fn plan(&self) -> &FaultPlan {
        &self.plan
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The faults injected so far, resolved to frames (what a recording logs).
    pub fn injections(&self) -> &[Injection] {
        &self.injections
    }

    /// The report lines so far. Outcomes of lost pages are final once the guest has finished.
    pub fn reports(&self) -> Vec<ErrorReport> {
        let mut out = self.reports.clone();
        for (i, r) in out.iter_mut().enumerate() {
            r.outcome = self.final_outcome(i);
        }
        out
    }

    pub fn elf(&self) -> &ElfFile {
        &self.elf
    }

    /// Runs until `budget` more instructions have retired or the guest ends, firing each fault at its icount.
    pub fn run(&mut self, budget: u64) -> Progress {
        let end = self.guest.icount().saturating_add(budget);
        loop {
            self.fire_due();
            if self.guest.termination().is_some() {
                return Progress::Finished;
            }
            let now = self.guest.icount();
            if now >= end {
                return Progress::BudgetExhausted;
            }
            let stop = end.min(self.next_fault_at());
            let progress = self.guest.run(stop.max(now + 1) - now);
            if progress == Progress::Finished {
                return Progress::Finished;
            }
            // The host asked for a pause (see `Host::pause_requested`); faults due now fire on the next call.
            if self.guest.icount() < stop && self.guest.host.pause_requested() {
                return Progress::BudgetExhausted;
            }
        }
    }

    /// Runs until the guest ends or `instructions_max` instructions have retired in total.
    pub fn run_to_completion(&mut self, instructions_max: u64) -> Progress {
        let left = instructions_max.saturating_sub(self.guest.icount());
        self.run(left)
    }

    fn next_fault_at(&self) -> u64 {
        let scheduled = self
            .scheduled
            .get(self.scheduled_next)
            .map_or(u64::MAX, |(at, _)| *at);
        self.random
            .iter()
            .map(|r| r.next_icount)
            .fold(scheduled, u64::min)
    }

    fn fire_due(&mut self) {
        let now = self.guest.icount();
        while self.guest.termination().is_none() {
            if let Some(&(at, s)) = self.scheduled.get(self.scheduled_next) {
                if at <= now {
                    self.scheduled_next += 1;
                    match s {
                        Scheduled::Event(e) => self.fire_event(e),
                        Scheduled::Drawn { index, kind } => self.fire_drawn(index, kind),
                        Scheduled::Replay(index) => self.fire_replay(index),
                    }
                    continue;
                }
            }
            let Some(index) = self.random.iter().position(|r| r.next_icount <= now) else {
                break;
            };
            let kind = self.random[index].spec.kind;
            let rate = self.random[index].spec.rate.unwrap_or(0.0);
            let gap = draw_gap(&mut self.rng, rate);
            self.random[index].next_icount = now.saturating_add(gap.max(1));
            self.fire_drawn(index, kind);
        }
    }

    /// Re-applies recorded fault `index` and compares what it did with the record.
    fn fire_replay(&mut self, index: usize) {
        let record = self.replaying[index].clone();
        let logged = self.log.len();
        match record.injection {
            Some(i) if (i.frame as usize) < self.guest.machine.cpu.mem.frame_count() => {
                self.inject(i.kind, FrameId(i.frame), i.byte, i.bit, i.value)
            }
            Some(i) => {
                self.mismatch_at(format!(
                    "the recorded fault names frame {}, but the guest has {} frames",
                    i.frame,
                    self.guest.machine.cpu.mem.frame_count()
                ));
                return;
            }
            None => self.push_report(record.report.clone()),
        }
        match self.log.get(logged) {
            Some(replayed) if *replayed == record => {}
            Some(replayed) => {
                let mut what = Vec::new();
                if replayed.report != record.report {
                    what.push(format!(
                        "recorded `{}`, replayed `{}`",
                        record.report.line(),
                        replayed.report.line()
                    ));
                }
                if replayed.injection != record.injection {
                    what.push(format!(
                        "recorded injection {:?}, replayed {:?}",
                        record.injection, replayed.injection
                    ));
                }
                if (replayed.rip, replayed.register_fnv) != (record.rip, record.register_fnv) {
                    what.push(format!(
                        "the guest was at rip {:#x} (registers {:#018x}) when it fired, recorded rip {:#x} (registers {:#018x})",
                        replayed.rip, replayed.register_fnv, record.rip, record.register_fnv
                    ));
                }
                let message = format!("the memory fault differs: {}", what.join("; "));
                self.mismatch_at(message);
            }
            None => self.mismatch_at("the recorded memory fault left no report".into()),
        }
    }

    fn mismatch_at(&mut self, message: String) {
        if self.mismatch.is_none() {
            self.mismatch = Some(FaultMismatch {
                icount: self.guest.icount(),
                message,
            });
        }
    }

    /// Where the guest is, for the log: rip, and FNV-1a of rip and the general registers.
    fn position(&self) -> (u64, u64) {
        let cpu = &self.guest.machine.cpu;
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for w in cpu.regs.gpr.iter().chain(std::iter::once(&cpu.regs.rip)) {
            for b in w.to_le_bytes() {
                h ^= b as u64;
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        (cpu.regs.rip, h)
    }

    fn log_report(&mut self, r: &ErrorReport) {
        let (rip, register_fnv) = self.position();
        self.log.push(FaultRecord {
            injection: self.firing.take(),
            report: r.clone(),
            rip,
            register_fnv,
        });
    }

    fn fire_event(&mut self, e: FaultEvent) {
        let mem = &self.guest.machine.cpu.mem;
        let resolved = match e.target {
            Target::Addr(a) => mem.frame_of(a).map(|f| (f, (a & PAGE_MASK) as u16)),
            Target::Frame { frame, byte } => {
                ((frame as usize) < mem.frame_count()).then_some((FrameId(frame), byte))
            }
        };
        match resolved {
            Some((frame, byte)) => self.inject(e.kind, frame, byte, e.bit, e.value),
            None => self.push_report(ErrorReport {
                icount: self.guest.icount(),
                kind: e.kind,
                frame: None,
                vaddrs: Vec::new(),
                class: None,
                action: Action::NotMapped,
                outcome: Outcome::Ignored,
            }),
        }
    }

    fn fire_drawn(&mut self, index: usize, kind: FaultKind) {
        let class = self.random[index].spec.class;
        // The candidates are the unpoisoned frames (of the class), in frame order; the memory's index finds the
        // drawn one without listing them, so each fault costs O(log frames) however many came before.
        let mem = &mut self.guest.machine.cpu.mem;
        let wanted = class.map(FrameClass::from);
        let count = mem.unpoisoned_frame_count(wanted);
        let drawn = if count == 0 {
            None
        } else {
            let n = self.rng.random_range(0..count);
            self.guest.machine.cpu.mem.nth_unpoisoned_frame(wanted, n)
        };
        let Some(frame) = drawn else {
            self.push_report(ErrorReport {
                icount: self.guest.icount(),
                kind,
                frame: None,
                vaddrs: Vec::new(),
                class,
                action: Action::NoCandidate,
                outcome: Outcome::Ignored,
            });
            return;
        };
        let byte = self.rng.random_range(0..PAGE_SIZE as u16);
        let bit = self.rng.random_range(0..8u8);
        let value = self.rng.random_bool(0.5);
        self.inject(kind, frame, byte, bit, value);
    }

    /// Injects one fault now, on a resolved frame.
    pub fn inject(&mut self, kind: FaultKind, frame: FrameId, byte: u16, bit: u8, value: bool) {
        let injection = Injection {
            icount: self.guest.icount(),
            kind,
            frame: frame.0,
            byte,
            bit,
            value,
        };
        self.injections.push(injection);
        self.firing = Some(injection);
        match kind {
            FaultKind::Ue => self.uncorrectable(frame),
            FaultKind::Flip | FaultKind::Stuck => {
                let mem = &mut self.guest.machine.cpu.mem;
                let report = ErrorReport {
                    icount: injection.icount,
                    kind,
                    frame: Some(frame.0),
                    vaddrs: mem.reverse_map(frame),
                    class: mem.frame_class(frame).map(PageState::from),
                    action: if kind == FaultKind::Flip {
                        Action::FlippedBit
                    } else {
                        Action::StuckBit
                    },
                    outcome: Outcome::Undetected,
                };
                if mem.frame_is_poisoned(frame) {
                    // A poisoned frame is never read: there is no bit left to flip.
                    self.push_report(ErrorReport {
                        action: Action::AlreadyPoisoned,
                        outcome: Outcome::Ignored,
                        ..report
                    });
                    return;
                }
                if kind == FaultKind::Flip {
                    mem.flip_bit(frame, byte as usize, bit);
                } else {
                    mem.set_stuck_bit(frame, byte as usize, bit, injection.value);
                }
                self.push_report(report);
            }
        }
    }

    fn push_report(&mut self, r: ErrorReport) {
        self.log_report(&r);
        self.reports.push(r);
        self.early.push(None);
    }

    /// An uncorrectable error on `frame`: poison, reverse-map, classify, act (containment.rs has the table).
    fn uncorrectable(&mut self, frame: FrameId) {
        let icount = self.guest.icount();
        let mem = &self.guest.machine.cpu.mem;
        let vaddrs = mem.reverse_map(frame);
        let class = mem.frame_class(frame).map(PageState::from);
        let mut report = ErrorReport {
            icount,
            kind: FaultKind::Ue,
            frame: Some(frame.0),
            vaddrs: vaddrs.clone(),
            class,
            action: Action::AlreadyPoisoned,
            outcome: Outcome::Ignored,
        };
        if mem.frame_is_poisoned(frame) {
            self.push_report(report);
            return;
        }
        // Poison first: from here on nothing reads the frame, the hypervisor included. Every address space
        // that shares the frame copy-on-write (a fork's parent and child before either wrote the page) has the
        // same physical frame: it is poisoned there too, and there too a touch raises a machine check.
        self.guest
            .with_spaces_sharing_frame(frame, |other| other.poison(frame));
        self.guest.machine.cpu.mem.poison(frame);
        // One physical frame holds one content, wherever it is mapped: one source re-reads it everywhere.
        let source = match class {
            Some(PageState::FileClean) => vaddrs.iter().find_map(|&a| self.clean_page(a)),
            _ => None,
        };
        let reread = match &source {
            Some((_, CleanSource::Binary)) => Action::Reread,
            _ => Action::RereadFile,
        };
        let (action, outcome) = match class {
            None | Some(PageState::Free) => (Action::Retired, Outcome::Recovered),
            _ if vaddrs.is_empty() => (Action::Retired, Outcome::Recovered),
            Some(PageState::AnonZero) => {
                let zero = [0u8; PAGE_SIZE];
                self.replace_in_sharing_spaces(frame, &zero, FrameClass::AnonZero);
                for &a in &vaddrs {
                    self.replace(a, &zero, FrameClass::AnonZero);
                }
                (Action::Zeroed, Outcome::Recovered)
            }
            Some(PageState::FileClean) if source.is_some() => {
                let bytes = source.map_or_else(|| Box::new([0; PAGE_SIZE]), |s| s.0);
                self.replace_in_sharing_spaces(frame, &bytes, FrameClass::FileClean);
                for &a in &vaddrs {
                    self.replace(a, &bytes, FrameClass::FileClean);
                }
                (reread, Outcome::Recovered)
            }
            Some(PageState::FileClean | PageState::AnonDirty) => {
                let lost_action = if class == Some(PageState::FileClean) {
                    Action::LostNoSource
                } else if self.policy.early_kill {
                    Action::SigbusNow
                } else {
                    Action::SigbusOnTouch
                };
                report.action = lost_action;
                report.outcome = Outcome::Delayed;
                self.log_report(&report);
                self.reports.push(report);
                let early = if lost_action == Action::SigbusNow {
                    // Every process that shares the lost frame is told at once, as the one running is.
                    self.guest.send_memory_error_to_sharers(frame);
                    Some(self.guest.send_memory_error(vaddrs[0]))
                } else {
                    None
                };
                self.early.push(early);
                return;
            }
        };
        report.action = action;
        report.outcome = outcome;
        self.push_report(report);
    }

    /// Maps a fresh frame with `bytes` at the page `addr`. Running out of frames is a guest-visible loss:
    /// the page stays poisoned (and the report says recovered only when the replacement happened).
    fn replace(&mut self, addr: u64, bytes: &[u8; PAGE_SIZE], class: FrameClass) {
        let _ = self.guest.machine.cpu.mem.replace_frame(addr, bytes, class);
    }

    /// Recovers the pages of the other address spaces that mapped the poisoned `frame` (their own reverse map)
    /// with fresh frames holding `bytes`: a clean page is recovered in every process that shared it.
    fn replace_in_sharing_spaces(
        &mut self,
        frame: FrameId,
        bytes: &[u8; PAGE_SIZE],
        class: FrameClass,
    ) {
        // After poisoning, `shares_frame` still holds: the poisoned frame's bytes stay shared.
        self.guest.with_spaces_sharing_frame(frame, |other| {
            for addr in other.reverse_map(frame) {
                let _ = other.replace_frame(addr, bytes, class);
            }
        });
    }

    /// The bytes a clean file-backed page at `addr` held: from the program's image (the first program, loaded
    /// again), else from the file the page was mapped from (a library, the dynamic loader, a mapped data file,
    /// an execve'd program), as Linux re-reads a clean page-cache page.
    fn clean_page(&mut self, addr: u64) -> Option<(Box<[u8; PAGE_SIZE]>, CleanSource)> {
        if let Some(page) = self.binary_page(addr) {
            return Some((page, CleanSource::Binary));
        }
        self.guest
            .clean_file_page(addr)
            .map(|page| (page, CleanSource::File))
    }

    /// The bytes the loader placed at page `addr` from the binary, if the page is part of the binary's image.
    fn binary_page(&mut self, addr: u64) -> Option<Box<[u8; PAGE_SIZE]>> {
        if self.clean_image.is_none() {
            let mut image = Memory::new();
            elf::load_segments(&self.elf, &self.program, &mut image).ok()?;
            self.clean_image = Some(image);
        }
        let image = self.clean_image.as_ref()?;
        let frame = image.frame_of(addr)?;
        image.frame_bytes(frame).map(|b| Box::new(*b))
    }

    /// The outcome of report `i` given what the guest has done since.
    fn final_outcome(&self, i: usize) -> Outcome {
        let r = &self.reports[i];
        if r.outcome != Outcome::Delayed {
            return r.outcome;
        }
        let Some(frame) = r.frame else {
            return r.outcome;
        };
        let killed = matches!(self.guest.termination(), Some(Termination::Signaled { .. }));
        match self.early[i] {
            Some(EarlyKill::Killed) => return Outcome::Killed,
            Some(EarlyKill::HandlerRuns) => {
                return if killed {
                    Outcome::Killed
                } else {
                    Outcome::Recovered
                }
            }
            _ => {}
        }
        let touched = self
            .guest
            .stats()
            .machine_checks
            .get(&frame)
            .is_some_and(|&n| n > 0);
        match (touched, killed, self.early[i]) {
            (true, true, _) => Outcome::Killed,
            (true, false, _) => Outcome::Recovered,
            (false, _, Some(EarlyKill::Ignored | EarlyKill::Blocked)) => Outcome::Ignored,
            (false, _, _) => Outcome::Delayed,
        }
    }
}

/// Where a clean page is re-read from.
enum CleanSource {
    /// The program's image as loaded.
    Binary,
    /// The file a mapping was made from.
    File,
}

/// A gap until the next rate-drawn fault: uniform on [1, 2/rate], mean about 1/rate.
fn draw_gap(rng: &mut ChaCha20Rng, rate: f64) -> u64 {
    if rate <= 0.0 {
        return u64::MAX;
    }
    let span = (2.0 / rate).min(u64::MAX as f64 / 2.0) as u64;
    rng.random_range(1..=span.max(1))
}

/// The icount of the first fault a plan fires under `fault_seed` (u64::MAX: none), drawn as `Hypervisor::new`
/// draws it. A run is identical to the fault-free run until then, which is what lets a campaign start it from
/// the fault-free run's latest checkpoint before it (campaign.rs).
pub fn first_fault_icount(plan: &FaultPlan, fault_seed: u64) -> u64 {
    let drawn = DrawnSchedule::draw(plan, fault_seed);
    let scheduled = drawn.scheduled.first().map_or(u64::MAX, |(at, _)| *at);
    drawn
        .random
        .iter()
        .map(|r| r.next_icount)
        .fold(scheduled, u64::min)
}

/// A plan's faults as drawn when a run starts: explicit events and `count=` draws by icount, the first gap of
/// each `rate=` spec, and the stream's position after those draws.
struct DrawnSchedule {
    scheduled: Vec<(u64, Scheduled)>,
    random: Vec<RandomState>,
    rng: ChaCha20Rng,
}

impl DrawnSchedule {
    fn draw(plan: &FaultPlan, fault_seed: u64) -> DrawnSchedule {
        let mut rng = named_stream(fault_seed, "faults.mem");
        let mut scheduled: Vec<(u64, Scheduled)> = plan
            .events
            .iter()
            .map(|e| (e.icount, Scheduled::Event(*e)))
            .collect();
        let mut random = Vec::new();
        for (index, spec) in plan.random.iter().enumerate() {
            let mut next_icount = u64::MAX;
            if let (Some(count), Some(within)) = (spec.count, spec.within) {
                for _ in 0..count {
                    let at = rng.random_range(0..within.max(1));
                    scheduled.push((
                        at,
                        Scheduled::Drawn {
                            index,
                            kind: spec.kind,
                        },
                    ));
                }
            }
            if let Some(rate) = spec.rate {
                next_icount = draw_gap(&mut rng, rate);
            }
            random.push(RandomState {
                spec: spec.clone(),
                next_icount,
            });
        }
        scheduled.sort_by_key(|(at, _)| *at);
        DrawnSchedule {
            scheduled,
            random,
            rng,
        }
    }
}

#[cfg(test)]
mod tests;
