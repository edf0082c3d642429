//! Memory faults in recordings: `tandem record --faults ...` writes the plan into the trace header and every fault
//! that fires as an icount-keyed `Event::Fault`; `tandem replay` re-applies the recorded faults (not the seed's
//! draws) and checks that each does what the recording says; an edited fault is a divergence or an error.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use tandem_replay::trace::{Chunk, Event, Header, Record, Summary, Trace, TraceWriter};
use tandem_replay::trace_faults::{
    ActionRecord, FaultKindRecord, MemoryFaultRecord, OutcomeRecord, PageStateRecord,
};

const FAULTS: &[&str] = &[
    "--faults",
    "mem.ue:count=1,within=2000000,class=anon-dirty",
    "--fault-seed",
    "3",
];

/// A fresh trace path for `name` (a directory of its own under cargo's temporary directory).
fn scratch(name: &str) -> PathBuf {
    common::scratch(&format!("replay-faults-{name}")).join("run.trace")
}

fn record(trace: &Path, flags: &[&str], program: &str) -> Output {
    let flags: Vec<&str> = std::iter::once("--report-state")
        .chain(flags.iter().copied())
        .collect();
    record_trace(trace, &flags, program, &[], b"")
}

fn replay(trace: &Path) -> Output {
    Command::new(tandem())
        .arg("replay")
        .arg("--report-state")
        .arg(trace)
        .current_dir(repo())
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The lines of `stderr` that start with `prefix`.
fn lines_with(stderr: &[u8], prefix: &str) -> Vec<String> {
    text(stderr)
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

fn fault_events(t: &Trace) -> Vec<MemoryFaultRecord> {
    t.records
        .iter()
        .filter_map(|r| match r {
            Record::Event(Event::Fault(f)) => Some((**f).clone()),
            _ => None,
        })
        .collect()
}

/// Rewrites a trace with its header, records and summary edited (one records chunk).
fn rewrite(
    from: &Path,
    to: &Path,
    edit_header: impl Fn(&mut Header),
    edit_records: impl Fn(&mut Vec<Record>),
    edit_summary: impl Fn(&mut Summary),
) {
    let t = Trace::parse(&std::fs::read(from).unwrap()).unwrap();
    let mut header = t.header.clone();
    edit_header(&mut header);
    let mut records = t.records.clone();
    edit_records(&mut records);
    let mut summary = t.summary.clone().unwrap();
    edit_summary(&mut summary);
    let mut w = TraceWriter::new(Vec::new()).unwrap();
    w.write_chunk(&Chunk::Header(Box::new(header))).unwrap();
    w.write_chunk(&Chunk::Records {
        icount_end: t.icount_end,
        records,
    })
    .unwrap();
    w.write_chunk(&Chunk::End(summary)).unwrap();
    std::fs::write(to, w.into_inner()).unwrap();
}

fn edit_fault(records: &mut [Record], edit: impl Fn(&mut MemoryFaultRecord)) {
    let f = records
        .iter_mut()
        .find_map(|r| match r {
            Record::Event(Event::Fault(f)) => Some(f),
            _ => None,
        })
        .expect("the trace has a fault event");
    edit(f);
}

fn recorded_sigbus(name: &str) -> PathBuf {
    let trace = scratch(name);
    let rec = record(&trace, FAULTS, &corpus_bin("sigbus-musl"));
    assert_eq!(rec.status.code(), Some(0), "{}", text(&rec.stderr));
    trace
}

#[test]
fn a_recorded_uncorrectable_error_replays_identically() {
    let bin = corpus_bin("sigbus-musl");
    let mut flags = vec!["--report-state"];
    flags.extend_from_slice(FAULTS);
    let run = emulate(&flags, &bin, &[], b"");
    let trace = scratch("sigbus-fault.trace");
    let rec = record(&trace, FAULTS, &bin);
    let rep = replay(&trace);
    let err = text(&rep.stderr);

    // The run met the error and the guest's handler recovered from it; record and replay say so identically.
    let run_lines = lines_with(&run.stderr, "tandem: memory-error ");
    assert_eq!(run_lines.len(), 1, "{}", text(&run.stderr));
    let line = &run_lines[0];
    assert!(
        line.contains("kind=ue")
            && line.contains("class=anon-dirty")
            && line.contains("action=sigbus-ar-on-touch")
            && line.contains("outcome=recovered"),
        "{line}"
    );
    assert_eq!(lines_with(&rec.stderr, "tandem: memory-error "), run_lines);
    assert_eq!(lines_with(&rep.stderr, "tandem: memory-error "), run_lines);
    assert!(
        err.contains("sigbus: recovered 1 lost pages"),
        "the replayed guest did not meet the fault: {err}"
    );
    assert_eq!(rep.status.code(), Some(0), "{err}");
    assert_eq!(rec.status.code(), run.status.code());
    assert_eq!(rec.stdout, run.stdout);
    assert_eq!(rep.stdout, run.stdout);
    assert!(!rep.stdout.is_empty());
    let state = lines_with(&run.stderr, "tandem: icount ");
    assert_eq!(state.len(), 1);
    assert_eq!(lines_with(&rec.stderr, "tandem: icount "), state);
    assert_eq!(lines_with(&rep.stderr, "tandem: icount "), state, "{err}");
    assert!(!err.contains("diverge"), "{err}");

    // The trace holds the plan and options, and the fault as an event at the icount of the report line.
    let t = Trace::parse(&std::fs::read(&trace).unwrap()).unwrap();
    let options = t.header.faults.as_ref().expect("the header has the plan");
    assert_eq!(options.fault_seed, 3);
    assert!(!options.early_kill);
    assert_eq!(options.plan.random.len(), 1);
    assert_eq!(
        options.plan.random[0].class,
        Some(PageStateRecord::AnonDirty)
    );
    let events = fault_events(&t);
    assert_eq!(events.len(), 1, "{events:?}");
    let f = &events[0];
    assert!(
        line.contains(&format!("icount={} ", f.report.icount)),
        "{line} / {f:?}"
    );
    let injection = f.injection.expect("the fault was injected");
    assert_eq!(injection.kind, FaultKindRecord::Ue);
    assert_eq!(injection.icount, f.report.icount);
    assert_eq!(f.report.frame, Some(injection.frame));
    assert_eq!(f.report.class, Some(PageStateRecord::AnonDirty));
    assert_eq!(f.report.action, ActionRecord::SigbusOnTouch);
    // When it fired, the loss was latent; the summary has the final outcome.
    assert_eq!(f.report.outcome, OutcomeRecord::Delayed);
    let summary = t.summary.as_ref().unwrap();
    assert_eq!(summary.faults.len(), 1);
    assert_eq!(summary.faults[0].outcome, OutcomeRecord::Recovered);
    assert_eq!(&format!("tandem: {}", summary.faults[0].line()), line);

    // A recording without faults has none in its header or events.
    let plain = scratch("sigbus-plain.trace");
    let rec = record(&plain, &[], &bin);
    assert_eq!(rec.status.code(), Some(0));
    let t = Trace::parse(&std::fs::read(&plain).unwrap()).unwrap();
    assert!(t.header.faults.is_none());
    assert!(fault_events(&t).is_empty());
    assert!(t.summary.unwrap().faults.is_empty());
}

#[test]
fn replay_applies_the_recorded_faults_not_the_seed() {
    // Another fault seed and class in the header change nothing: the replay re-applies the events.
    let trace = recorded_sigbus("reseeded-src.trace");
    let reseeded = scratch("reseeded.trace");
    rewrite(
        &trace,
        &reseeded,
        |h| {
            let f = h.faults.as_mut().unwrap();
            f.fault_seed = 999;
            f.plan.random[0].class = Some(PageStateRecord::FileClean);
        },
        |_| {},
        |_| {},
    );
    let original = replay(&trace);
    let rep = replay(&reseeded);
    assert_eq!(rep.status.code(), Some(0), "{}", text(&rep.stderr));
    assert_eq!(rep.stdout, original.stdout);
    assert_eq!(
        lines_with(&rep.stderr, "tandem: memory-error "),
        lines_with(&original.stderr, "tandem: memory-error ")
    );
    assert_eq!(
        lines_with(&rep.stderr, "tandem: icount "),
        lines_with(&original.stderr, "tandem: icount ")
    );
}

#[test]
fn an_edited_fault_event_is_a_divergence_or_an_error() {
    let trace = recorded_sigbus("edit-src.trace");
    let t = Trace::parse(&std::fs::read(&trace).unwrap()).unwrap();
    let icount = fault_events(&t)[0].report.icount;

    // The fault moved one instruction later: it fires elsewhere in the guest (its recorded rip and registers
    // differ), reported at the icount where it fired.
    let later = scratch("fault-later.trace");
    rewrite(
        &trace,
        &later,
        |_| {},
        |r| {
            edit_fault(r, |f| {
                f.report.icount += 1;
                if let Some(i) = f.injection.as_mut() {
                    i.icount += 1;
                }
            })
        },
        |_| {},
    );
    let rep = replay(&later);
    let err = text(&rep.stderr);
    assert_eq!(rep.status.code(), Some(3), "{err}");
    assert!(
        err.contains(&format!(
            "divergence detected at icount {}: the memory fault differs",
            icount + 1
        )),
        "{err}"
    );
    assert!(err.contains("when it fired, recorded rip"), "{err}");

    // Only the report's icount edited: the event contradicts itself, an invalid trace (exit 4), not a replay.
    let torn = scratch("fault-torn.trace");
    rewrite(
        &trace,
        &torn,
        |_| {},
        |r| edit_fault(r, |f| f.report.icount += 1),
        |_| {},
    );
    let rep = replay(&torn);
    let err = text(&rep.stderr);
    assert_eq!(rep.status.code(), Some(4), "{err}");
    assert!(err.contains("its injection names another icount"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // Another frame: the replayed report differs from the recorded one.
    let frame = scratch("fault-frame.trace");
    rewrite(
        &trace,
        &frame,
        |_| {},
        |r| {
            edit_fault(r, |f| {
                if let Some(i) = f.injection.as_mut() {
                    i.frame = i.frame.saturating_sub(1);
                }
            })
        },
        |_| {},
    );
    let rep = replay(&frame);
    let err = text(&rep.stderr);
    assert_eq!(rep.status.code(), Some(3), "{err}");
    assert!(
        err.contains(&format!(
            "divergence detected at icount {icount}: the memory fault differs"
        )),
        "{err}"
    );

    // A frame the guest does not have: a divergence, not a panic.
    let bogus = scratch("fault-bogus.trace");
    rewrite(
        &trace,
        &bogus,
        |_| {},
        |r| {
            edit_fault(r, |f| {
                if let Some(i) = f.injection.as_mut() {
                    i.frame = u32::MAX;
                }
            })
        },
        |_| {},
    );
    let rep = replay(&bogus);
    let err = text(&rep.stderr);
    assert_eq!(rep.status.code(), Some(3), "{err}");
    assert!(err.contains("names frame 4294967295"), "{err}");

    // The fault removed: the guest never meets it, and the replay says so.
    let removed = scratch("fault-removed.trace");
    rewrite(
        &trace,
        &removed,
        |_| {},
        |r| r.retain(|r| !matches!(r, Record::Event(Event::Fault(_)))),
        |_| {},
    );
    let rep = replay(&removed);
    let err = text(&rep.stderr);
    assert_eq!(rep.status.code(), Some(3), "{err}");
    assert!(
        err.contains("the replay diverges from the recording"),
        "{err}"
    );

    // A different final outcome in the summary: the end of the replay disagrees.
    let outcome = scratch("fault-outcome.trace");
    rewrite(
        &trace,
        &outcome,
        |_| {},
        |_| {},
        |s| s.faults[0].outcome = OutcomeRecord::Killed,
    );
    let rep = replay(&outcome);
    let err = text(&rep.stderr);
    assert_eq!(rep.status.code(), Some(3), "{err}");
    assert!(err.contains("the memory faults end differently"), "{err}");
}
