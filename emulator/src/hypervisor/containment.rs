//! Containment and recovery of memory errors, following Linux's mm/memory-failure.c.
//!
//! An uncorrectable error poisons the frame at once (so nothing reads it silently: the CPU raises #MC on any
//! access), then the frame is mapped back to every guest virtual address that maps it (`Memory::reverse_map`),
//! classified, and handled as the kernel handles the same page state:
//!
//! | state                     | action                                    | outcome                                  |
//! |---------------------------|-------------------------------------------|------------------------------------------|
//! | free                      | retired (off the free list)               | recovered                                |
//! | clean, from the binary    | a fresh frame re-read from the binary     | recovered, invisible to the guest        |
//! | clean, from another file  | a fresh frame re-read from the file       | recovered, invisible to the guest        |
//! | anonymous, never written  | a fresh zero frame                        | recovered                                |
//! | anonymous, dirty          | lost: SIGBUS BUS_MCEERR_AR on next touch  | delayed, then killed or recovered        |
//! |                           | (early kill: BUS_MCEERR_AO at once)       | by the guest's handler                   |
//!
//! A frame that processes still share copy-on-write after a fork (neither has written the page since) is one
//! physical frame: it is poisoned in every one of them, recovered in every one (zero or binary pages), and an
//! early kill signals every one, as the kernel's rmap walk (collect_procs, kill_procs) reaches every process
//! that maps the page.
//!
//! Another file is the dynamic loader, a shared library or any file mapped private: the kernel keeps the bytes
//! each mapping was made from (`linux::mapnames`), so a clean page is re-read exactly (zeros past the end of
//! the file and past an ELF segment's file bytes, as they were mapped). A page of a MAP_SHARED mapping, or of a
//! mapping whose bytes are not known, has no source: it is handled as lost, like a dirty page;
//! `Action::LostNoSource` says so in the report.
//!
//! Invariants: the outcome is a function of the page state and the policy; the set of poisoned frames only grows;
//! every error gets exactly one report line.

use super::plan::{FaultKind, PageState};
use serde::{Deserialize, Serialize};

/// What the hypervisor did about a fault. Traces hold their own twin of it (`tandem_replay::trace_faults`), so
/// variants here may be added anywhere; the twin's conversion then asks for its trace variant (appended last).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// A free frame taken off the free list for good.
    Retired,
    /// Clean pages replaced by fresh frames re-read from the binary.
    Reread,
    /// Never-written anonymous pages replaced by fresh zero frames.
    Zeroed,
    /// Dirty pages left poisoned: the guest gets SIGBUS BUS_MCEERR_AR when it touches them (late kill).
    SigbusOnTouch,
    /// Dirty pages left poisoned and SIGBUS BUS_MCEERR_AO sent at once (early kill).
    SigbusNow,
    /// Clean file-backed pages whose file is not the binary: no source to re-read, handled as dirty (late kill).
    LostNoSource,
    /// The frame was already poisoned: nothing more to do.
    AlreadyPoisoned,
    /// The fault's address was not mapped when it fired.
    NotMapped,
    /// No frame of the requested class existed when the fault fired.
    NoCandidate,
    /// A bit was flipped (nobody detects this: no ECC model).
    FlippedBit,
    /// A bit was forced to a value and will be re-asserted.
    StuckBit,
    /// Clean pages of another mapped file (the dynamic loader, a shared library, a data file mapped private)
    /// replaced by fresh frames re-read from that file, as Linux drops a clean page-cache page and reads it again.
    RereadFile,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Retired => "retired",
            Action::Reread => "reread-from-binary",
            Action::RereadFile => "reread-from-file",
            Action::Zeroed => "zero-filled",
            Action::SigbusOnTouch => "sigbus-ar-on-touch",
            Action::SigbusNow => "sigbus-ao-now",
            Action::LostNoSource => "lost-no-source",
            Action::AlreadyPoisoned => "already-poisoned",
            Action::NotMapped => "not-mapped",
            Action::NoCandidate => "no-candidate",
            Action::FlippedBit => "flipped-bit",
            Action::StuckBit => "stuck-bit",
        }
    }
}

/// How a fault ended, as far as the run shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Contained with no loss (by the hypervisor, or by the guest's own SIGBUS handler).
    Recovered,
    /// The guest died of it.
    Killed,
    /// Data was lost but the guest has not touched it (yet): the error is latent.
    Delayed,
    /// Nothing to do, or the guest ignores the signal.
    Ignored,
    /// A bit flip or stuck bit: not detected by anyone (its effect shows only in the run's output).
    Undetected,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Recovered,
        Outcome::Killed,
        Outcome::Delayed,
        Outcome::Ignored,
        Outcome::Undetected,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Recovered => "recovered",
            Outcome::Killed => "killed",
            Outcome::Delayed => "delayed",
            Outcome::Ignored => "ignored",
            Outcome::Undetected => "undetected",
        }
    }
}

/// The version of the report line format (`ErrorReport::line`).
pub const REPORT_VERSION: u32 = 1;

/// One report line per fault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReport {
    pub icount: u64,
    pub kind: FaultKind,
    pub frame: Option<u32>,
    /// Every guest virtual page address that mapped the frame when the fault fired.
    pub vaddrs: Vec<u64>,
    pub class: Option<PageState>,
    pub action: Action,
    pub outcome: Outcome,
}

impl ErrorReport {
    /// `memory-error v1 icount=.. kind=.. frame=.. vaddrs=.. class=.. action=.. outcome=..`
    pub fn line(&self) -> String {
        let vaddrs = if self.vaddrs.is_empty() {
            "-".to_string()
        } else {
            self.vaddrs
                .iter()
                .map(|a| format!("{a:#x}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        format!(
            "memory-error v{REPORT_VERSION} icount={} kind={} frame={} vaddrs={vaddrs} class={} action={} outcome={}",
            self.icount,
            self.kind.name(),
            self.frame.map_or("-".to_string(), |f| f.to_string()),
            self.class.map_or("-", PageState::name),
            self.action.name(),
            self.outcome.name(),
        )
    }
}

/// The outcomes the policy allows for an uncorrectable error on a frame in `class` (what campaign tests check).
pub fn allowed_outcomes(class: Option<PageState>, action: Action) -> &'static [Outcome] {
    match (class, action) {
        (_, Action::AlreadyPoisoned | Action::NotMapped | Action::NoCandidate) => {
            &[Outcome::Ignored]
        }
        (Some(PageState::Free), _) => &[Outcome::Recovered],
        (Some(PageState::FileClean), Action::Reread | Action::RereadFile) => &[Outcome::Recovered],
        (Some(PageState::AnonZero), _) => &[Outcome::Recovered],
        (Some(PageState::AnonDirty | PageState::FileClean), _) => &[
            Outcome::Killed,
            Outcome::Delayed,
            Outcome::Recovered,
            Outcome::Ignored,
        ],
        (None, _) => &[Outcome::Ignored],
    }
}
