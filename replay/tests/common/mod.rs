//! Helpers of the replay crate's integration tests: record a corpus program in memory, as `tandem record` does
//! but with `MemoryHost` (stdin and files from the test), into a trace held in a `Vec`.
#![allow(dead_code)]

use std::path::Path;
use tandem_emulator::hypervisor::plan::FaultPlan;
use tandem_emulator::hypervisor::{Hypervisor, Policy};
use tandem_emulator::linux::{LinuxConfig, MemoryHost};
use tandem_replay::hosts::RecordingHost;
use tandem_replay::record::record;
use tandem_replay::sink::ChunkSink;
use tandem_replay::trace::{Chunk, FaultOptions, Header, Summary, TraceWriter};

/// The bytes of `corpus/bin/NAME`.
pub fn corpus(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../corpus/bin")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What to record.
pub struct Recording<'a> {
    pub program: Vec<u8>,
    pub argv: Vec<Vec<u8>>,
    pub stdin: Vec<u8>,
    pub hash_interval: u64,
    pub fine_interval: u64,
    pub plan: FaultPlan,
    pub frames_max: usize,
    /// Each chunk put, as it goes to the writer (for tests that look at the chunking).
    pub observe: Option<&'a mut dyn FnMut(&Chunk)>,
}

impl Recording<'_> {
    pub fn of(name: &str) -> Recording<'static> {
        Recording {
            program: corpus(name),
            argv: vec![name.as_bytes().to_vec()],
            stdin: Vec::new(),
            hash_interval: 4096,
            fine_interval: 512,
            plan: FaultPlan::default(),
            frames_max: LinuxConfig::default().frames_max,
            observe: None,
        }
    }
}

/// A sink that shows each chunk to an observer before writing it.
struct Observed<'a, 'b> {
    writer: TraceWriter<Vec<u8>>,
    observe: &'a mut Option<&'b mut dyn FnMut(&Chunk)>,
}

impl ChunkSink for Observed<'_, '_> {
    fn put(&mut self, chunk: Chunk) -> std::io::Result<()> {
        if let Some(f) = self.observe.as_mut() {
            f(&chunk);
        }
        self.writer.write_chunk(&chunk)
    }
}

/// Records the run in memory; returns the trace's bytes and the summary.
pub fn record_in_memory(mut r: Recording) -> (Vec<u8>, Summary) {
    let config = LinuxConfig {
        argv: r.argv.clone(),
        exe_path: b"/program".to_vec(),
        frames_max: r.frames_max,
        ..LinuxConfig::default()
    };
    let has_faults = !r.plan.events.is_empty() || !r.plan.random.is_empty();
    let header = Header {
        instructions_max: Some(50_000_000),
        hash_interval: r.hash_interval,
        fine_interval: r.fine_interval,
        faults: has_faults.then(|| FaultOptions {
            plan: (&r.plan).into(),
            fault_seed: 0,
            early_kill: false,
            stuck_period_insns: Policy::default().stuck_period_insns,
        }),
        ..Header::of_run(&config, b"corpus/bin/program".to_vec(), &r.program)
    };
    let mut host = MemoryHost::new(0);
    host.stdin = std::mem::take(&mut r.stdin);
    let host = RecordingHost::new(host, None, None);
    let mut hv = Hypervisor::new(
        config,
        r.program.clone().into(),
        host,
        r.plan.clone(),
        Policy::default(),
        0,
    )
    .expect("the corpus program loads");
    let mut sink = Observed {
        writer: TraceWriter::new(Vec::new()).unwrap(),
        observe: &mut r.observe,
    };
    let summary = record(&mut hv, &header, &mut sink).expect("recording into memory");
    (sink.writer.into_inner(), summary)
}
