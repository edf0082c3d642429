//! The memory-fault types a trace holds: the plan in the header, each fired fault in the event stream, the final
//! report lines in the summary. They belong to the trace, not to the hypervisor: the hypervisor's own types
//! (`hypervisor::plan`, `hypervisor::containment`) may change, gain variants or reorder them, while a trace's
//! encoding changes only with `FORMAT_VERSION`.
//!
//! Traces encode enums by variant index (bincode), so in every enum here a new variant goes last, and an old one is
//! never removed or moved. The conversions below match exhaustively, with no wildcard: a variant added to a
//! hypervisor type fails to compile here until someone appends its trace twin. The `variant_indices_are_pinned`
//! test fixes each variant's index as older traces hold it.
//!
//! Field order is the wire order too; every type here encodes exactly as the hypervisor type it mirrors did up to
//! format 7, so older traces decode unchanged.

use serde::{Deserialize, Serialize};
use tandem_emulator::hypervisor::containment::{Action, ErrorReport, Outcome};
use tandem_emulator::hypervisor::plan::{
    FaultEvent, FaultKind, FaultPlan, Injection, PageState, RandomFaults, Target,
};
use tandem_emulator::hypervisor::FaultRecord;

/// `plan::FaultKind` as a trace holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKindRecord {
    Ue,
    Flip,
    Stuck,
}

/// `plan::PageState` as a trace holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PageStateRecord {
    Free,
    FileClean,
    AnonZero,
    AnonDirty,
}

/// `plan::Target` as a trace holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetRecord {
    Addr(u64),
    Frame { frame: u32, byte: u16 },
}

/// `plan::FaultEvent` as a trace holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultEventRecord {
    pub icount: u64,
    pub kind: FaultKindRecord,
    pub target: TargetRecord,
    pub bit: u8,
    pub value: bool,
}

/// `plan::RandomFaults` as a trace holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RandomFaultsRecord {
    pub kind: FaultKindRecord,
    pub rate: Option<f64>,
    pub count: Option<u64>,
    pub within: Option<u64>,
    pub class: Option<PageStateRecord>,
}

/// `plan::FaultPlan` as a trace holds it (informational: a replay re-applies the `Event::Fault` records).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultPlanRecord {
    pub events: Vec<FaultEventRecord>,
    pub random: Vec<RandomFaultsRecord>,
}

/// `plan::Injection` as a trace holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InjectionRecord {
    pub icount: u64,
    pub kind: FaultKindRecord,
    pub frame: u32,
    pub byte: u16,
    pub bit: u8,
    pub value: bool,
}

/// `containment::Action` as a trace holds it. New variants go last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionRecord {
    Retired,
    Reread,
    Zeroed,
    SigbusOnTouch,
    SigbusNow,
    LostNoSource,
    AlreadyPoisoned,
    NotMapped,
    NoCandidate,
    FlippedBit,
    StuckBit,
    RereadFile,
}

/// `containment::Outcome` as a trace holds it. New variants go last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutcomeRecord {
    Recovered,
    Killed,
    Delayed,
    Ignored,
    Undetected,
}

/// `containment::ErrorReport` (one memory-error report line) as a trace holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReportRecord {
    pub icount: u64,
    pub kind: FaultKindRecord,
    pub frame: Option<u32>,
    pub vaddrs: Vec<u64>,
    pub class: Option<PageStateRecord>,
    pub action: ActionRecord,
    pub outcome: OutcomeRecord,
}

/// `hypervisor::FaultRecord` (a fired fault in the event stream) as a trace holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryFaultRecord {
    pub injection: Option<InjectionRecord>,
    pub report: ErrorReportRecord,
    pub rip: u64,
    pub register_fnv: u64,
}

/// A pair of exhaustive conversions between a field-less hypervisor enum and its trace twin.
macro_rules! twin_enum {
    ($emu:ident, $rec:ident, [$($v:ident),+ $(,)?]) => {
        impl From<$emu> for $rec {
            fn from(v: $emu) -> $rec {
                match v { $($emu::$v => $rec::$v),+ }
            }
        }
        impl From<$rec> for $emu {
            fn from(v: $rec) -> $emu {
                match v { $($rec::$v => $emu::$v),+ }
            }
        }
    };
}

twin_enum!(FaultKind, FaultKindRecord, [Ue, Flip, Stuck]);
twin_enum!(
    PageState,
    PageStateRecord,
    [Free, FileClean, AnonZero, AnonDirty]
);
twin_enum!(
    Action,
    ActionRecord,
    [
        Retired,
        Reread,
        Zeroed,
        SigbusOnTouch,
        SigbusNow,
        LostNoSource,
        AlreadyPoisoned,
        NotMapped,
        NoCandidate,
        FlippedBit,
        StuckBit,
        RereadFile,
    ]
);
twin_enum!(
    Outcome,
    OutcomeRecord,
    [Recovered, Killed, Delayed, Ignored, Undetected]
);

impl From<Target> for TargetRecord {
    fn from(t: Target) -> TargetRecord {
        match t {
            Target::Addr(a) => TargetRecord::Addr(a),
            Target::Frame { frame, byte } => TargetRecord::Frame { frame, byte },
        }
    }
}

impl From<&FaultPlan> for FaultPlanRecord {
    fn from(p: &FaultPlan) -> FaultPlanRecord {
        let events = p.events.iter().map(|&e| event_record(e)).collect();
        let random = p.random.iter().map(random_record).collect();
        FaultPlanRecord { events, random }
    }
}

fn event_record(e: FaultEvent) -> FaultEventRecord {
    let FaultEvent {
        icount,
        kind,
        target,
        bit,
        value,
    } = e;
    FaultEventRecord {
        icount,
        kind: kind.into(),
        target: target.into(),
        bit,
        value,
    }
}

fn random_record(r: &RandomFaults) -> RandomFaultsRecord {
    let RandomFaults {
        kind,
        rate,
        count,
        within,
        class,
    } = *r;
    RandomFaultsRecord {
        kind: kind.into(),
        rate,
        count,
        within,
        class: class.map(Into::into),
    }
}

impl From<Injection> for InjectionRecord {
    fn from(i: Injection) -> InjectionRecord {
        let Injection {
            icount,
            kind,
            frame,
            byte,
            bit,
            value,
        } = i;
        InjectionRecord {
            icount,
            kind: kind.into(),
            frame,
            byte,
            bit,
            value,
        }
    }
}

impl From<InjectionRecord> for Injection {
    fn from(i: InjectionRecord) -> Injection {
        let InjectionRecord {
            icount,
            kind,
            frame,
            byte,
            bit,
            value,
        } = i;
        Injection {
            icount,
            kind: kind.into(),
            frame,
            byte,
            bit,
            value,
        }
    }
}

impl From<&ErrorReport> for ErrorReportRecord {
    fn from(r: &ErrorReport) -> ErrorReportRecord {
        let ErrorReport {
            icount,
            kind,
            frame,
            vaddrs,
            class,
            action,
            outcome,
        } = r;
        ErrorReportRecord {
            icount: *icount,
            kind: (*kind).into(),
            frame: *frame,
            vaddrs: vaddrs.clone(),
            class: class.map(Into::into),
            action: (*action).into(),
            outcome: (*outcome).into(),
        }
    }
}

impl From<&ErrorReportRecord> for ErrorReport {
    fn from(r: &ErrorReportRecord) -> ErrorReport {
        let ErrorReportRecord {
            icount,
            kind,
            frame,
            vaddrs,
            class,
            action,
            outcome,
        } = r;
        ErrorReport {
            icount: *icount,
            kind: (*kind).into(),
            frame: *frame,
            vaddrs: vaddrs.clone(),
            class: class.map(Into::into),
            action: (*action).into(),
            outcome: (*outcome).into(),
        }
    }
}

impl ErrorReportRecord {
    /// The report line, as the hypervisor prints it (`ErrorReport::line`).
    pub fn line(&self) -> String {
        ErrorReport::from(self).line()
    }
}

impl From<&FaultRecord> for MemoryFaultRecord {
    fn from(f: &FaultRecord) -> MemoryFaultRecord {
        MemoryFaultRecord {
            injection: f.injection.map(Into::into),
            report: (&f.report).into(),
            rip: f.rip,
            register_fnv: f.register_fnv,
        }
    }
}

impl From<&MemoryFaultRecord> for FaultRecord {
    fn from(f: &MemoryFaultRecord) -> FaultRecord {
        FaultRecord {
            injection: f.injection.map(Into::into),
            report: (&f.report).into(),
            rip: f.rip,
            register_fnv: f.register_fnv,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bincode variant index of `v` (the first four bytes of its encoding, little-endian u32).
    fn index<T: Serialize>(v: &T) -> u32 {
        let bytes = bincode::serialize(v).expect("encodes");
        u32::from_le_bytes(bytes[..4].try_into().expect("four bytes"))
    }

    /// Each variant keeps the index older traces hold it by; a reordered or inserted variant fails here.
    #[test]
    fn variant_indices_are_pinned() {
        use ActionRecord as A;
        let actions = [
            A::Retired,
            A::Reread,
            A::Zeroed,
            A::SigbusOnTouch,
            A::SigbusNow,
            A::LostNoSource,
            A::AlreadyPoisoned,
            A::NotMapped,
            A::NoCandidate,
            A::FlippedBit,
            A::StuckBit,
            A::RereadFile,
        ];
        for (i, a) in actions.iter().enumerate() {
            assert_eq!(index(a), i as u32, "{a:?}");
        }
        use OutcomeRecord as O;
        let outcomes = [
            O::Recovered,
            O::Killed,
            O::Delayed,
            O::Ignored,
            O::Undetected,
        ];
        for (i, o) in outcomes.iter().enumerate() {
            assert_eq!(index(o), i as u32, "{o:?}");
        }
        use FaultKindRecord as K;
        for (i, k) in [K::Ue, K::Flip, K::Stuck].iter().enumerate() {
            assert_eq!(index(k), i as u32, "{k:?}");
        }
        use PageStateRecord as P;
        let states = [P::Free, P::FileClean, P::AnonZero, P::AnonDirty];
        for (i, s) in states.iter().enumerate() {
            assert_eq!(index(s), i as u32, "{s:?}");
        }
        assert_eq!(index(&TargetRecord::Addr(0)), 0);
        assert_eq!(index(&TargetRecord::Frame { frame: 0, byte: 0 }), 1);
    }

    /// Every hypervisor action and outcome survives the trip through its trace twin, and the line is the same.
    #[test]
    fn reports_round_trip_through_the_trace_types() {
        for action in [Action::Retired, Action::RereadFile, Action::StuckBit] {
            for outcome in Outcome::ALL {
                let report = ErrorReport {
                    icount: 77,
                    kind: FaultKind::Stuck,
                    frame: Some(3),
                    vaddrs: vec![0x1000, 0x7fff_0000],
                    class: Some(PageState::AnonDirty),
                    action,
                    outcome,
                };
                let record = ErrorReportRecord::from(&report);
                assert_eq!(record.line(), report.line());
                assert_eq!(ErrorReport::from(&record), report);
            }
        }
    }

    /// A fired fault survives the trip through its trace twin, injection included.
    #[test]
    fn fault_records_round_trip_through_the_trace_types() {
        let fault = FaultRecord {
            injection: Some(Injection {
                icount: 9,
                kind: FaultKind::Ue,
                frame: 4,
                byte: 5,
                bit: 6,
                value: true,
            }),
            report: ErrorReport {
                icount: 9,
                kind: FaultKind::Ue,
                frame: Some(4),
                vaddrs: vec![0x4000],
                class: Some(PageState::FileClean),
                action: Action::RereadFile,
                outcome: Outcome::Recovered,
            },
            rip: 0x401000,
            register_fnv: 0xdead,
        };
        let record = MemoryFaultRecord::from(&fault);
        let bytes = bincode::serialize(&record).expect("encodes");
        let back: MemoryFaultRecord = bincode::deserialize(&bytes).expect("decodes");
        assert_eq!(FaultRecord::from(&back), fault);
    }
}
