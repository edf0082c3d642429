//! Golden traces with memory faults in them (tests/data/faults-sigbus-v6.trace, format 6, and
//! faults-sigbus-v7.trace, format 7: the same run on the CPU model that reports MMX): today's tandem must replay
//! each verified with the same faults, output and state hash, and recording the same run again must give the
//! bytes of the golden of the current format. Any change to how a stored digest, hash or chunk link is computed, or to how an event is
//! encoded, fails here instead of passing every test that records and replays with the same build.

mod common;
use common::*;
use std::path::PathBuf;
use std::process::Command;
use tandem_replay::trace::{Event, Record, Trace, FORMAT_VERSION};

/// A golden trace: its file, its format and the end of its replay report.
struct Golden {
    path: &'static str,
    format: u32,
    end: &'static str,
}

/// Every golden trace, oldest first. A format 6 trace replays with the CPUID of format 6 (no MMX, and AT_HWCAP
/// without it), hence its own state hash.
const GOLDENS: [Golden; 2] = [
    Golden {
        path: "tests/data/faults-sigbus-v6.trace",
        format: 6,
        end:
            "replayed 540421 instructions, 8 checkpoints verified, state hash 0xd8eaae58e3bd0444; \
              the guest's exit status 0, as recorded",
    },
    Golden {
        path: "tests/data/faults-sigbus-v7.trace",
        format: 7,
        end:
            "replayed 540421 instructions, 8 checkpoints verified, state hash 0x2cce1cbb66d1f243; \
              the guest's exit status 0, as recorded",
    },
];
/// The command that recorded it (see tests/data/README.md), from the repository root with an empty environment.
const FAULTS: &str =
    "mem.ue:icount=300000,addr=0x7ffff7ff8000,mem.flip:rate=1e-5,class=anon-dirty,\
                      mem.stuck:icount=100000,frame=3,byte=5,bit=2,value=1";
const FLAGS: [&str; 5] = [
    "--report-state",
    "--hash-interval",
    "65536",
    "--fine-interval",
    "4096",
];
/// What the run printed and reported when it was recorded.
const STDOUT: &str = "sum b1067e0e59a244e0 after 20 passes over 8 pages\n";
const FAULT_LINES: [&str; 6] = [
    "memory-error v1 icount=100000 kind=stuck frame=3 vaddrs=0x403000 class=file-clean action=stuck-bit outcome=undetected",
    "memory-error v1 icount=188641 kind=flip frame=2075 vaddrs=0x7ffff7ff9000 class=anon-dirty action=flipped-bit outcome=undetected",
    "memory-error v1 icount=300000 kind=ue frame=2074 vaddrs=0x7ffff7ff8000 class=anon-dirty action=sigbus-ar-on-touch outcome=recovered",
    "memory-error v1 icount=353952 kind=flip frame=24 vaddrs=0x418000 class=anon-dirty action=flipped-bit outcome=undetected",
    "memory-error v1 icount=508852 kind=flip frame=2081 vaddrs=0x7ffff7ff8000 class=anon-dirty action=flipped-bit outcome=undetected",
    "memory-error v1 icount=515696 kind=flip frame=2077 vaddrs=0x7ffff7ffb000 class=anon-dirty action=flipped-bit outcome=undetected",
];
fn golden(g: &Golden) -> PathBuf {
    repo().join(g.path)
}

/// The golden of the format this tandem writes.
fn current() -> &'static Golden {
    GOLDENS
        .iter()
        .find(|g| g.format == FORMAT_VERSION)
        .expect("a golden trace of the current format: record one (tests/data/README.md)")
}

/// The memory-error lines of a run's stderr, without tandem's prefix.
fn fault_lines(stderr: &[u8]) -> Vec<String> {
    text(stderr)
        .lines()
        .filter_map(|l| l.strip_prefix("tandem: "))
        .filter(|l| l.starts_with("memory-error"))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_golden_fault_traces_replay_verified_with_their_faults() {
    for g in &GOLDENS {
        let bytes = std::fs::read(golden(g)).unwrap();
        assert_eq!(
            bytes[8..12],
            g.format.to_le_bytes(),
            "{} must stay in format {}: record a new file for a new format",
            g.path,
            g.format
        );
        let rep = Command::new(tandem())
            .current_dir(repo())
            .env_clear()
            .args(["replay", g.path])
            .output()
            .unwrap();
        let err = text(&rep.stderr);
        assert_eq!(rep.status.code(), Some(0), "{}: {err}", g.path);
        assert_eq!(text(&rep.stdout), STDOUT, "{}: {err}", g.path);
        assert_eq!(fault_lines(&rep.stderr), FAULT_LINES, "{}: {err}", g.path);
        assert!(err.contains(g.end), "{}: {err}", g.path);
    }
}

/// Each trace holds the six faults as events at the icounts the report names, in the order they fired.
#[test]
fn the_golden_traces_hold_every_fault_as_an_event() {
    for g in &GOLDENS {
        let trace = Trace::read(std::fs::File::open(golden(g)).unwrap()).unwrap();
        let icounts: Vec<u64> = trace
            .records
            .iter()
            .filter_map(|r| match r {
                Record::Event(Event::Fault(f)) => Some(f.report.icount),
                _ => None,
            })
            .collect();
        assert_eq!(
            icounts,
            [100000, 188641, 300000, 353952, 508852, 515696],
            "faults of {}",
            g.path
        );
    }
}

/// Recording the same run today gives the bytes of the current format's golden: the encoding, every digest
/// (pages, registers, the memory digest, the state hash) and every chunk link are unchanged. When the format
/// changes on purpose, FORMAT_VERSION moves on and a golden of the new format joins `GOLDENS`; the old files
/// stay, and must still replay.
#[test]
fn recording_the_golden_run_again_gives_the_same_bytes() {
    let g = current();
    let dir = std::env::temp_dir().join(format!("tandem-golden-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let again = dir.join("again.trace");
    let mut flags = FLAGS.to_vec();
    flags.extend(["--faults", FAULTS]);
    let rec = record_trace(&again, &flags, &corpus_bin("sigbus-musl"), &["20"], b"");
    assert_eq!(rec.status.code(), Some(0), "{}", text(&rec.stderr));
    assert_eq!(text(&rec.stdout), STDOUT);
    assert_eq!(fault_lines(&rec.stderr), FAULT_LINES);
    let (a, b) = (
        std::fs::read(&again).unwrap(),
        std::fs::read(golden(g)).unwrap(),
    );
    let first_difference = a.iter().zip(&b).position(|(x, y)| x != y);
    assert!(
        a == b,
        "a new recording differs from {} (lengths {} and {}, first differing byte {first_difference:?}): \
         a stored digest or encoding changed without a new format version",
        g.path,
        a.len(),
        b.len()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
