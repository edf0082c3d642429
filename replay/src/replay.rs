//! Replay: rebuilds the recorded machine from a trace, answers its host calls from the event stream, checks
//! every checkpoint, and on a divergence narrows it down by re-execution.
//!
//! Narrowing: a divergence is found either by the host (the guest made a different syscall, asked a different
//! question, or wrote different output: exact to the syscall's icount) or at a checkpoint (registers or memory
//! differ). For the second, the replay rebuilds the state of the previous checkpoint (from its newest snapshot,
//! which may be a few checkpoints older: snapshots are kept every `snapshot_gap` instructions) and re-executes:
//!
//! - In time, by registers: the recorded register hashes every `fine_interval` instructions are compared to
//!   find the first window whose registers differ; with `fine_interval` 1 (`tandem record --fine-interval 1`)
//!   that window is one instruction, shown with the registers it changed.
//! - Registers, at the checkpoint: each differing register with its recorded and replayed values and, from a
//!   re-execution one instruction at a time, the last instruction of the interval that changed it in the replay
//!   (a syscall named as such): where the wrong value was last produced, which is not necessarily where the run
//!   first went wrong.
//! - Memory, at the checkpoint, by page (format-3 traces; memory_divergence.rs): the pages whose recorded digest
//!   differs from the replay's, or that only one of the two wrote in the interval, by guest address; for each
//!   (the first eight), the last instruction or syscall of the interval that wrote it in the replay, and the
//!   page's 16-byte rows whose replayed bytes changed since the previous checkpoint. The trace holds page
//!   digests, not bytes, so the recorded bytes are never shown. The fine points hold register hashes only: when
//!   the registers agree at all of them, time is narrowed no further than the checkpoint interval, and the
//!   report's answer is each page's last writer. A format-2 trace has one digest of all memory per checkpoint,
//!   so a memory divergence in it is narrowed to the checkpoint interval and names no page.
//!
//! Memory faults: the machine runs under the hypervisor, which re-applies each recorded `Event::Fault` at its
//! icount (nothing is drawn from the fault seed) and compares what it did (frame, virtual addresses, class,
//! action, outcome, where the guest was) with the record; a difference is a divergence at that icount. At the
//! end the final outcomes are compared with the summary's.

use crate::digest::{
    fine_hash, register_differences, register_file, DigestScheme, MemoryDigest, PageMap,
};
use crate::hosts::{OutputSink, ReplayHost};
use crate::memory_divergence::MemoryReport;
use crate::trace::{
    BlobId, Checkpoint, ErrorReportRecord, Event, Header, PageChanges, Record, Summary, Trace,
    TraceError, FORMAT_VERSION_BASELINE_CPUID,
};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use tandem_emulator::cpu::cpuid::CpuidModel;
use tandem_emulator::hypervisor::{FaultRecord, FaultSnapshot, Hypervisor, Policy};
use tandem_emulator::linux::vfs::{split, Mount};
use tandem_emulator::linux::{LinuxConfig, LinuxSnapshot, Progress, SchedPolicy};

/// A replay's position: the machine, its host's place in the event stream, and the hypervisor's fault state.
pub type ReplaySnapshot = (LinuxSnapshot, ReplayHost, FaultSnapshot);

/// Why a trace cannot be replayed at all.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Trace(#[from] TraceError),
    #[error("the embedded program cannot be loaded: {0}")]
    Load(String),
}

/// Where and how a replay left the recorded run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    /// The icount at which the divergence was noticed (a checkpoint, a syscall, the end of the run).
    pub detected_icount: u64,
    pub message: String,
    /// The first instruction known to differ, as the icount before it retires, and the width of the window it
    /// was narrowed to (1: exactly this instruction).
    pub first_icount: u64,
    pub window: u64,
    /// rip, bytes and disassembly of the instruction at `first_icount`.
    pub instruction: Option<(u64, Vec<u8>, String)>,
    /// Registers that differ at the checkpoint: (name, recorded, replayed).
    pub register_differences: Vec<(String, u128, u128)>,
    pub memory_differs: bool,
    /// The pages that differ at the checkpoint, their last writers in the replay and their replayed bytes.
    pub memory: Option<MemoryReport>,
    /// Registers the narrowed instruction changed in the replay: (name, before, after).
    pub instruction_effects: Vec<(String, u128, u128)>,
    /// For each register in `register_differences` (but rip): the last instruction of the replay, from the
    /// previous checkpoint to the one that differs, that changed its value. None when no instruction of the
    /// interval changed it (the difference came from before, which the previous checkpoint rules out, or from
    /// a value written unchanged).
    pub register_writers: Vec<(String, Option<Writer>)>,
}

/// An instruction of the replay that wrote something, as a divergence report names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Writer {
    /// Instructions retired before it.
    pub icount: u64,
    pub rip: u64,
    /// Its disassembly; for a syscall, the syscall's name and number too.
    pub text: String,
}

impl std::fmt::Display for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "icount {} rip {:#x}: {}",
            self.icount, self.rip, self.text
        )
    }
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "divergence detected at icount {}: {}",
            self.detected_icount, self.message
        )?;
        if self.window <= 1 {
            write!(
                f,
                "first differing instruction: icount {}",
                self.first_icount
            )?;
        } else if self.instruction.is_none() && self.memory.is_some() {
            // Registers agreed at every fine point: a finer --fine-interval would not narrow this.
            write!(
                f,
                "differing interval: icount {}..{} (registers agree at every recorded fine point; memory is \
                 narrowed to each differing page's last writer below)",
                self.first_icount,
                self.first_icount + self.window,
            )?;
        } else {
            write!(
                f,
                "first differing window: icount {}..{} ({} instructions; record with --fine-interval 1 to narrow to one)",
                self.first_icount,
                self.first_icount + self.window,
                self.window
            )?;
        }
        if let Some((rip, bytes, text)) = &self.instruction {
            let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
            write!(f, ", rip {rip:#x}: {text} ({})", hex.join(" "))?;
        }
        writeln!(f)?;
        for (name, before, after) in &self.instruction_effects {
            writeln!(
                f,
                "  the instruction sets {name}: {before:#x} -> {after:#x}"
            )?;
        }
        if !self.register_differences.is_empty() {
            writeln!(
                f,
                "registers at icount {} (recorded, replayed):",
                self.detected_icount
            )?;
            for (name, rec, rep) in &self.register_differences {
                write!(f, "  {name:<8} recorded={rec:#x} replayed={rep:#x}")?;
                match self.register_writers.iter().find(|(n, _)| n == name) {
                    Some((_, Some(w))) => {
                        write!(f, "; last changed in the replay by the instruction at {w}")?
                    }
                    Some((_, None)) => write!(
                        f,
                        "; no instruction since icount {} changed it in the replay",
                        self.first_icount
                    )?,
                    None => {}
                }
                writeln!(f)?;
            }
        }
        if self.memory_differs {
            writeln!(f, "memory differs at icount {}", self.detected_icount)?;
        }
        if let Some(memory) = &self.memory {
            write!(f, "{memory}")?;
        }
        Ok(())
    }
}

/// The outcome of `Replayer::replay`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayReport {
    pub checkpoints_verified: usize,
    pub icount: u64,
    pub state_hash: u64,
    /// The guest's exit status (124 when the recording stopped at its instruction limit); None if the replay did
    /// not reach the end of the run.
    pub exit_status: Option<i32>,
    pub diagnostic: Option<String>,
    pub divergence: Option<Divergence>,
    /// The trace was damaged; the replay went as far as its last complete chunk.
    pub damage: Option<TraceError>,
}

/// A trace loaded for replay, and the machine that replays it.
pub struct Replayer {
    pub header: Header,
    pub summary: Option<Summary>,
    pub damage: Option<TraceError>,
    /// How far the trace's records go.
    pub icount_end: u64,
    pub checkpoints: Vec<Checkpoint>,
    /// The page digests after each checkpoint (format 3; empty for format 2), in order.
    pub page_changes: Vec<PageChanges>,
    /// The trace's format version.
    pub format_version: u32,
    /// The events the host answers from (every event but the faults).
    pub events: Rc<[Event]>,
    /// The recorded memory faults, in order.
    pub faults: Vec<FaultRecord>,
    pub blobs: Rc<BTreeMap<BlobId, Arc<Vec<u8>>>>,
    pub sink: Rc<RefCell<OutputSink>>,
    /// The guest (`hv.guest`) under the hypervisor that re-applies the recorded faults.
    pub hv: Hypervisor<ReplayHost>,
    /// The state hash of the end of the run, once computed (it digests all of memory: compute it once).
    final_state_hash: Option<u64>,
}

/// The machine configuration a header of a trace of format `format_version` describes. The format decides the
/// CPUID model: traces up to format 6 were recorded on a CPU without the MMX bit (`CpuidModel::Format6`).
pub fn config_of(header: &Header, format_version: u32) -> LinuxConfig {
    use std::os::unix::ffi::OsStrExt;
    LinuxConfig {
        seed: header.seed,
        argv: header.argv.clone(),
        envp: header.envp.clone(),
        mounts: header
            .mounts
            .iter()
            .map(|(guest, host)| Mount {
                guest: split(guest).into_iter().collect(),
                host: PathBuf::from(std::ffi::OsStr::from_bytes(host)),
            })
            .collect(),
        strict: header.strict,
        epoch_ns: header.epoch_ns,
        ns_per_insn: header.ns_per_insn,
        stdout_is_terminal: header.stdout_is_terminal,
        exe_path: header.exe_path.clone(),
        cwd: header.cwd.clone(),
        frames_max: header.frames_max as usize,
        sched: SchedPolicy::parse(&header.tasks.sched).unwrap_or_default(),
        cpus: header.tasks.cpus,
        cpuid: cpuid_model_of(format_version),
        // Installed from the trace's volume chunks: a replay reads no host directory.
        volumes: header.volumes.iter().map(|v| v.spec()).collect(),
        ..LinuxConfig::default()
    }
}

/// The CPUID model a trace of `format_version` was recorded with.
pub fn cpuid_model_of(format_version: u32) -> CpuidModel {
    if format_version >= FORMAT_VERSION_BASELINE_CPUID {
        CpuidModel::Baseline
    } else {
        CpuidModel::Format6
    }
}

impl Replayer {
    pub fn new(trace: Trace, sink: OutputSink) -> Result<Replayer, ReplayError> {
        let mut events = Vec::new();
        let mut faults = Vec::new();
        let mut checkpoints = Vec::new();
        let mut page_changes = Vec::new();
        let mut blobs = BTreeMap::new();
        for r in trace.records {
            match r {
                Record::Blob { id, bytes } => {
                    blobs.insert(id, bytes);
                }
                Record::Event(Event::Fault(f)) => faults.push(FaultRecord::from(&*f)),
                Record::Event(e) => events.push(e),
                Record::Checkpoint(c) => checkpoints.push(*c),
                Record::Pages(p) => page_changes.push(*p),
            }
        }
        let events: Rc<[Event]> = events.into();
        let blobs = Rc::new(blobs);
        let sink = Rc::new(RefCell::new(sink));
        let header = trace.header;
        let format_version = trace.format_version;
        let host = ReplayHost::new(
            events.clone(),
            blobs.clone(),
            header.seed,
            header.live_clock,
            header.live_entropy,
            sink.clone(),
        );
        let policy = header
            .faults
            .as_ref()
            .map_or(Policy::default(), |f| Policy {
                early_kill: f.early_kill,
                stuck_period_insns: f.stuck_period_insns,
            });
        let mut hv = Hypervisor::replaying(
            config_of(&header, format_version),
            header.program.clone().into(),
            host,
            faults.clone(),
            policy,
        )
        .map_err(|e| ReplayError::Load(e.to_string()))?;
        if !header.syscall_faults.is_empty() {
            let plan: Vec<_> = header.syscall_faults.iter().map(|f| f.fault()).collect();
            hv.guest.set_syscall_faults(Some(
                tandem_emulator::linux::syscall_faults::SyscallFaults::new(&plan),
            ));
        }
        Ok(Replayer {
            header,
            summary: trace.summary,
            damage: trace.damage,
            final_state_hash: None,
            icount_end: trace.icount_end,
            checkpoints,
            page_changes,
            format_version,
            events,
            faults,
            blobs,
            sink,
            hv,
        })
    }

    /// How the trace's state digests are computed.
    pub fn scheme(&self) -> DigestScheme {
        DigestScheme::of_format(self.format_version)
    }

    /// The replay's registers now, as the trace stores them.
    pub fn registers(&self) -> crate::trace::RegisterFile {
        register_file(&self.hv.guest.registers(), self.scheme())
    }

    /// Takes a snapshot of the machine, its host position and the fault state.
    pub fn snapshot(&mut self) -> ReplaySnapshot {
        (
            self.hv.guest.snapshot(),
            self.hv.guest.host.clone(),
            self.hv.snapshot_faults(),
        )
    }

    pub fn restore(&mut self, snap: &ReplaySnapshot) {
        self.hv.guest.restore(&snap.0);
        self.hv.guest.host = snap.1.clone();
        self.hv.restore_faults(&snap.2);
    }

    /// Replays the whole trace from the start, verifying every checkpoint and the end of the run.
    ///
    /// Snapshots are kept only every `snapshot_gap` instructions (a snapshot costs in proportion to the mapped
    /// pages, and a checkpoint may come every fraction of a millisecond); narrowing a divergence first
    /// re-executes from the newest snapshot to the last verified checkpoint.
    pub fn replay(&mut self) -> ReplayReport {
        let mut memory = MemoryDigest::new(self.scheme());
        // The newest snapshot (at the start or at a verified checkpoint) and the last verified checkpoint.
        let mut base = self.snapshot();
        let mut previous_icount = base.0.icount();
        let mut verified = 0;
        let checkpoints = self.checkpoints.clone();
        for c in &checkpoints {
            let progress = self.hv.run_to_completion(c.icount);
            if let Some(d) = self.event_divergence(&base) {
                return self.report(verified, Some(d));
            }
            if progress == Progress::Finished {
                let icount = self.hv.guest.icount();
                let d = self.narrow_at_end(
                    previous_icount,
                    format!(
                        "the guest ended at icount {icount}; the trace has a checkpoint at icount {}",
                        c.icount
                    ),
                );
                return self.report(verified, Some(d));
            }
            let registers = self.registers();
            let guest = &mut self.hv.guest;
            let (space, live) = (guest.space_key(), guest.space_keys());
            let (memory_digest, changes) =
                memory.update_space(guest.memory_mut(), space, &live, c.icount);
            if registers != c.registers || memory_digest != c.memory_digest {
                let pages =
                    (memory_digest != c.memory_digest).then(|| (memory.page_map(), changes));
                let previous = self.state_at(&base, previous_icount);
                let d = self.narrow_checkpoint(&previous, c, &registers, pages);
                return self.report(verified, Some(d));
            }
            verified += 1;
            previous_icount = c.icount;
            if c.icount - base.0.icount() >= self.snapshot_gap() {
                base = self.snapshot();
            }
        }
        // From the last checkpoint to the end of the records.
        let progress = self.run_to_recorded_end();
        if let Some(d) = self.event_divergence(&base) {
            return self.report(verified, Some(d));
        }
        let Some(summary) = self.summary.clone() else {
            return self.report(verified, None);
        };
        let icount = self.hv.guest.icount();
        let finished = progress == Progress::Finished;
        let host = &self.hv.guest.host;
        let mut problems = Vec::new();
        if icount != summary.icount || finished == summary.stopped_by_limit {
            problems.push(format!(
                "the run ends at icount {icount} ({}); the recording ended at icount {} ({})",
                if finished { "finished" } else { "not finished" },
                summary.icount,
                if summary.stopped_by_limit {
                    "stopped by the instruction limit"
                } else {
                    "finished"
                }
            ));
        }
        if self.hv.fault_log().len() != self.faults.len() {
            problems.push(format!(
                "{} memory faults were recorded, {} fired in the replay",
                self.faults.len(),
                self.hv.fault_log().len()
            ));
        }
        let reports: Vec<ErrorReportRecord> = self.hv.reports().iter().map(Into::into).collect();
        if reports != summary.faults {
            let line =
                |r: &[ErrorReportRecord]| r.iter().map(|r| r.line()).collect::<Vec<_>>().join("; ");
            problems.push(format!(
                "the memory faults end differently: recorded [{}], replayed [{}]",
                line(&summary.faults),
                line(&reports)
            ));
        }
        if host.position != self.events.len() {
            problems.push(format!(
                "{} recorded events were not asked for",
                self.events.len() - host.position
            ));
        }
        if (host.stdout.len, host.stdout.fnv()) != (summary.stdout_len, summary.stdout_fnv)
            || (host.stderr.len, host.stderr.fnv()) != (summary.stderr_len, summary.stderr_fnv)
        {
            problems.push("the output differs from the recorded output".into());
        }
        let state_hash = self.hv.guest.state_hash();
        self.final_state_hash = Some(state_hash);
        if problems.is_empty() && state_hash != summary.state_hash {
            problems.push(format!(
                "final state hash {state_hash:#018x}, recorded {:#018x}",
                summary.state_hash
            ));
        }
        if problems.is_empty() {
            let exit = if finished {
                self.hv.guest.exit_status()
            } else {
                Some(summary.exit_status)
            };
            if exit != Some(summary.exit_status) {
                problems.push(format!(
                    "exit status {exit:?}, recorded {}",
                    summary.exit_status
                ));
            }
        }
        if problems.is_empty() {
            return self.report(verified, None);
        }
        // Narrowing re-executes: the hash computed above is no longer the machine's.
        self.final_state_hash = None;
        let d = self.narrow_at_end(previous_icount, problems.join("; "));
        self.report(verified, Some(d))
    }

    /// Runs to the end of the records and, when the recording ended there with the guest finished, lets the
    /// guest end the same way.
    ///
    /// A run killed by a CPU exception (SIGSEGV, SIGILL, SIGFPE, a machine check's SIGBUS) ends on an instruction
    /// that does not retire, so the recording's last icount is reached *before* the fatal exception is raised.
    /// Running to that icount stops there; one more step with a budget of one instruction raises the exception
    /// and delivers its signal exactly as the recording did. If the replay has diverged and the instruction
    /// retires instead, the icount passes the recorded one and the end-of-run check reports it.
    pub fn run_to_recorded_end(&mut self) -> Progress {
        let progress = self.hv.run_to_completion(self.icount_end);
        let recorded_finished = self
            .summary
            .as_ref()
            .is_some_and(|s| !s.stopped_by_limit && s.icount == self.icount_end);
        if progress == Progress::Finished
            || !recorded_finished
            || self.hv.guest.icount() != self.icount_end
        {
            return progress;
        }
        self.hv.run(1)
    }

    /// Instructions between the snapshots a replay keeps: at least 2^24 (about 5 ms of re-execution with
    /// compiled blocks), and more for a large memory, so that snapshots cost at most about one instruction in
    /// 4096 of the replay per mapped page.
    fn snapshot_gap(&self) -> u64 {
        let pages = self.hv.guest.memory().mapped_page_count() as u64;
        (1u64 << 24).max(pages.saturating_mul(4096))
    }

    /// The replay's state at `icount` (a verified checkpoint), by re-execution from `base`.
    fn state_at(&mut self, base: &ReplaySnapshot, icount: u64) -> ReplaySnapshot {
        self.restore(base);
        self.hv.run_to_completion(icount);
        self.snapshot()
    }

    fn report(&mut self, verified: usize, divergence: Option<Divergence>) -> ReplayReport {
        let at_end = divergence.is_none()
            && self.summary.is_some()
            && self.hv.guest.icount() == self.icount_end;
        let exit_status = if at_end {
            self.summary.as_ref().map(|s| s.exit_status)
        } else {
            None
        };
        ReplayReport {
            checkpoints_verified: verified,
            icount: self.hv.guest.icount(),
            state_hash: match self.final_state_hash.take() {
                Some(h) => h,
                None => self.hv.guest.state_hash(),
            },
            exit_status,
            diagnostic: if at_end {
                self.hv.guest.termination().and_then(|t| t.diagnostic())
            } else {
                None
            },
            divergence,
            damage: self.damage.clone(),
        }
    }

    /// A divergence the host noticed (narrowed to its syscall by re-executing from `previous`, any earlier
    /// state of the replay, up to it), or a
    /// memory fault that did something else than recorded (reported where it fired: after `icount` instructions).
    fn event_divergence(&mut self, previous: &ReplaySnapshot) -> Option<Divergence> {
        let host = self.hv.guest.host.mismatch.clone();
        let fault = self.hv.fault_mismatch().cloned();
        // A fault at icount N fires after the N-th instruction (and its syscall) retired.
        let (icount, message, before) = match (host, fault) {
            (Some(h), Some(f)) if f.icount < h.icount => (f.icount, f.message, f.icount),
            (Some(h), _) => (h.icount, h.message, h.icount.saturating_sub(1)),
            (None, Some(f)) => (f.icount, f.message, f.icount),
            (None, None) => return None,
        };
        let mismatch = crate::hosts::EventMismatch { icount, message };
        let detected = self.hv.guest.icount();
        self.restore(previous);
        self.hv.run_to_completion(before);
        let rip = self.hv.guest.rip();
        let (bytes, text) = self.hv.guest.describe_instruction(rip);
        Some(Divergence {
            detected_icount: detected.min(mismatch.icount),
            message: mismatch.message,
            first_icount: self.hv.guest.icount(),
            window: 1,
            instruction: Some((rip, bytes, text)),
            register_differences: Vec::new(),
            memory_differs: false,
            memory: None,
            instruction_effects: Vec::new(),
            register_writers: Vec::new(),
        })
    }

    /// A divergence found at the end of the run: reported from the last verified checkpoint.
    fn narrow_at_end(&mut self, from: u64, message: String) -> Divergence {
        let detected = self.hv.guest.icount();
        Divergence {
            detected_icount: detected,
            message,
            first_icount: from,
            window: detected.saturating_sub(from).max(1),
            instruction: None,
            register_differences: Vec::new(),
            memory_differs: false,
            memory: None,
            instruction_effects: Vec::new(),
            register_writers: Vec::new(),
        }
    }

    /// A checkpoint whose state differs: re-execute from `previous`, comparing the fine register hashes.
    fn narrow_checkpoint(
        &mut self,
        previous: &ReplaySnapshot,
        c: &Checkpoint,
        replayed: &crate::trace::RegisterFile,
        replayed_pages: Option<(PageMap, PageChanges)>,
    ) -> Divergence {
        let register_differences = register_differences(&c.registers, replayed);
        let memory_differs = replayed_pages.is_some();
        let fine = self.header.fine_interval;
        let start = previous.0.icount();
        self.restore(previous);
        let mut window_start = None;
        for (j, expected) in c.fine_hashes.iter().enumerate() {
            let target = start + (j as u64 + 1) * fine;
            if self.hv.run_to_completion(target) == Progress::Finished {
                break;
            }
            if fine_hash(&self.hv.guest.registers(), self.scheme()) != *expected {
                window_start = Some(target - fine);
                break;
            }
        }
        let mut d = Divergence {
            detected_icount: c.icount,
            message: if register_differences.is_empty() {
                "the memory digest differs from the recorded one".into()
            } else {
                format!(
                    "{} registers differ from the recorded ones{}",
                    register_differences.len(),
                    if memory_differs { ", and memory" } else { "" }
                )
            },
            first_icount: start,
            window: c.icount - start,
            instruction: None,
            register_differences,
            memory_differs,
            memory: None,
            instruction_effects: Vec::new(),
            register_writers: Vec::new(),
        };
        d.register_writers = self.register_writers(previous, c.icount, &d.register_differences);
        if let Some((map, changes)) = &replayed_pages {
            d.memory = Some(self.memory_report(previous, c, map, changes));
        }
        let Some(window_start) = window_start else {
            // Registers agree at every fine point: only memory differs; the window is the checkpoint interval.
            return d;
        };
        self.restore(previous);
        self.hv.run_to_completion(window_start);
        let rip = self.hv.guest.rip();
        let (bytes, text) = self.hv.guest.describe_instruction(rip);
        d.first_icount = window_start;
        d.window = fine;
        d.instruction = Some((rip, bytes, text));
        if fine == 1 {
            let before = self.registers();
            self.hv.run(1);
            let after = self.registers();
            d.instruction_effects = crate::digest::register_differences(&before, &after)
                .into_iter()
                .filter(|(n, _, _)| n != "rip")
                .collect();
        }
        d
    }
}

impl Replayer {
    /// Re-executes from `previous` to `icount` one instruction at a time and names, for each register of
    /// `differences` (rip excepted: every instruction changes it), the last instruction that changed its value.
    /// Leaves the machine at `icount` (or where the guest ended).
    fn register_writers(
        &mut self,
        previous: &ReplaySnapshot,
        icount: u64,
        differences: &[(String, u128, u128)],
    ) -> Vec<(String, Option<Writer>)> {
        let names: Vec<String> = crate::digest::named_registers(&self.registers())
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let watched: Vec<(usize, &String)> = differences
            .iter()
            .filter(|(n, _, _)| n != "rip")
            .filter_map(|(n, _, _)| names.iter().position(|m| m == n).map(|i| (i, n)))
            .collect();
        if watched.is_empty() {
            return Vec::new();
        }
        self.restore(previous);
        let mut last: Vec<Option<(u64, u64, u128)>> = vec![None; watched.len()];
        let mut before = crate::digest::register_values(&self.registers());
        while self.hv.guest.icount() < icount {
            let at = self.hv.guest.icount();
            let rip = self.hv.guest.rip();
            let rax = self.hv.guest.registers().gpr[0];
            if self.hv.run(1) == Progress::Finished {
                break;
            }
            let after = crate::digest::register_values(&self.registers());
            for (slot, &(index, _)) in last.iter_mut().zip(&watched) {
                if before[index] != after[index] {
                    *slot = Some((at, rip, rax as u128));
                }
            }
            before = after;
        }
        watched
            .iter()
            .zip(last)
            .map(|(&(_, name), writer)| {
                let writer = writer.map(|(at, rip, rax)| self.writer(at, rip, rax as u64));
                (name.clone(), writer)
            })
            .collect()
    }

    /// The instruction at `rip` that retired as instruction `at + 1`, with rax = `rax` before it, as a report
    /// names it (a syscall by its name, number and the icount of the `syscalls` listing).
    pub(crate) fn writer(&self, at: u64, rip: u64, rax: u64) -> Writer {
        let (_, mut text) = self.hv.guest.describe_instruction(rip);
        if text == "syscall" {
            text = format!(
                "syscall {} ({rax}), listed by `syscalls` at icount {}",
                tandem_emulator::linux::sysnames::syscall_name(rax),
                at + 1
            );
        }
        Writer {
            icount: at,
            rip,
            text,
        }
    }
}

/// A short text of a replay report, for the command line.
pub fn describe(report: &ReplayReport) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "replayed {} instructions, {} checkpoints verified, state hash {:#018x}",
        report.icount, report.checkpoints_verified, report.state_hash
    );
    if let Some(status) = report.exit_status {
        let _ = write!(s, "; the guest's exit status {status}, as recorded");
    }
    s
}
