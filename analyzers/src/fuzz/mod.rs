//! Coverage-guided fault-injection fuzzing of real binaries (`tandem fuzz`, issue 17).
//!
//! A test case is a genome (genome.rs): the program's input (stdin, or a file named by `@@` in its arguments)
//! and a plan of syscall faults. Each execution restores
//! the target from a snapshot and runs it with edge coverage on (exec.rs, over the emulator's
//! `cpu::coverage`); children come from havoc, splicing, comparison constants and fault-plan edits (mutate.rs);
//! the campaign keeps what adds coverage and what crashes, deduplicated by stack and minimised, in rounds that
//! make it deterministic at any `--jobs` (campaign.rs). This file writes the campaign out in AFL++'s layout
//! (queue/, crashes/, hangs/; `stats.json` beside them) and records each finding's run as a trace that `tandem
//! replay` and `tandem debug` open.
//!
//! The layering: this crate runs guests through `LinuxMachine`'s narrow interface (snapshot, restore, coverage,
//! syscall faults) and records through tandem-replay's recorder; it reads no clock (the CLI adds wall time to
//! what it prints).

pub mod campaign;
pub mod exec;
pub mod genome;
pub mod mutate;

pub use campaign::{Campaign, Entry, Finding, Options, Progress};
pub use exec::{CheckedRun, Checker, Execution, Executor, Target, Verdict, FILE_INPUT_PATH};
pub use genome::Genome;

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use tandem_emulator::hypervisor::plan::FaultPlan;
use tandem_emulator::hypervisor::{Hypervisor, Policy};
use tandem_emulator::linux::syscall_faults::SyscallFaults;
use tandem_emulator::linux::MemoryHost;
use tandem_replay::hosts::RecordingHost;
use tandem_replay::record::record;
use tandem_replay::trace::{Header, TraceWriter};

/// Version of `stats.json`'s layout.
pub const STATS_VERSION: u32 = 1;

/// AFL++'s name for a queue entry: `id:000012,src:000003,op:havoc,execs:4096` (or `orig:NAME` for a seed).
pub fn entry_name(e: &Entry) -> String {
    format!("id:{:06},{},execs:{}", e.id, e.origin, e.execs)
}

/// AFL++'s name for a finding: `id:000000,sig:11,src:000003,op:havoc,execs:4096`.
pub fn finding_name(f: &Finding) -> String {
    let label = match f.verdict {
        Verdict::Hang => String::new(),
        ref v => format!("{},", v.label()),
    };
    format!("id:{:06},{label}{},execs:{}", f.id, f.origin, f.execs)
}

/// The directory of a finding: crashes/ or hangs/.
pub fn finding_dir(f: &Finding) -> &'static str {
    if f.verdict == Verdict::Hang {
        "hangs"
    } else {
        "crashes"
    }
}

/// Writes `genome` as `path` (stdin bytes) and, when it has faults, `path.faults`.
pub fn write_genome(path: &Path, genome: &Genome) -> std::io::Result<()> {
    std::fs::write(path, &genome.stdin)?;
    if !genome.faults.is_empty() {
        std::fs::write(with_suffix(path, ".faults"), genome.faults_text())?;
    }
    Ok(())
}

/// `path` with `suffix` appended to its file name.
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Creates queue/, crashes/ and hangs/ under `out`.
pub fn create_layout(out: &Path) -> std::io::Result<()> {
    for d in ["queue", "crashes", "hangs"] {
        std::fs::create_dir_all(out.join(d))?;
    }
    Ok(())
}

/// Writes the queue entries from `from` on.
pub fn write_queue(out: &Path, queue: &[Entry], from: usize) -> std::io::Result<()> {
    for e in queue.iter().skip(from) {
        write_genome(&out.join("queue").join(entry_name(e)), &e.genome)?;
    }
    Ok(())
}

/// Writes a finding: its genome, its trace (`NAME.trace`) and a description (`NAME.txt`: verdict, stack, the
/// one-line reproduction). Returns the reproduction line.
pub fn write_finding(out: &Path, target: &Target, f: &Finding) -> std::io::Result<String> {
    let path = out.join(finding_dir(f)).join(finding_name(f));
    write_genome(&path, &f.genome)?;
    let trace = with_suffix(&path, ".trace");
    record_trace(target, &f.genome, &trace)?;
    let repro = format!("tandem replay '{}'", trace.display());
    let mut text = String::new();
    let _ = writeln!(text, "verdict: {}", f.verdict.label());
    if let Some(d) = &f.diagnostic {
        let _ = writeln!(text, "diagnostic: {d}");
    }
    let stack: Vec<String> = f.stack.iter().map(|a| format!("{a:#x}")).collect();
    let _ = writeln!(text, "stack: {}", stack.join(" "));
    let _ = writeln!(text, "stdin bytes: {}", f.genome.stdin.len());
    for line in f.genome.faults_text().lines() {
        let _ = writeln!(text, "fault: {line}");
    }
    let _ = writeln!(text, "reproduce: {repro}");
    std::fs::write(with_suffix(&path, ".txt"), text)?;
    Ok(repro)
}

/// Records the run of `genome` from the program's start (the executor's snapshot point) as a trace at `path`.
pub fn record_trace(target: &Target, genome: &Genome, path: &Path) -> std::io::Result<()> {
    let config = &target.config;
    let header = Header {
        instructions_max: Some(target.instructions_max),
        syscall_faults: genome.faults.iter().map(Into::into).collect(),
        ..Header::of_run(config, config.exe_path.clone(), &target.program)
    };
    let host = target.host_for(MemoryHost::new(config.seed), genome);
    let host = RecordingHost::new(host, None, None);
    let mut hv = Hypervisor::new(
        config.clone(),
        target.program.clone().into(),
        host,
        FaultPlan::default(),
        Policy::default(),
        config.seed,
    )
    .map_err(|e| std::io::Error::other(e.to_string()))?;
    hv.guest.set_jit(target.jit);
    hv.guest
        .set_syscall_faults(Some(SyscallFaults::new(&genome.faults)));
    let file = std::fs::File::create(path)?;
    let mut writer = TraceWriter::new(std::io::BufWriter::new(file))?;
    record(&mut hv, &header, &mut writer)?;
    writer.into_inner().flush()
}

/// The campaign's machine-readable summary (deterministic: no wall time).
pub fn stats_json(c: &Campaign, seed: u64, jobs: usize) -> String {
    let p = &c.progress;
    let findings: Vec<String> = c
        .findings
        .iter()
        .map(|f| {
            let stack: Vec<String> = f.stack.iter().map(|a| format!("\"{a:#x}\"")).collect();
            format!(
                "{{\"name\":\"{}/{}\",\"verdict\":\"{}\",\"execs\":{},\"stdin_bytes\":{},\"faults\":{},\"stack\":[{}]}}",
                finding_dir(f),
                finding_name(f),
                f.verdict.label(),
                f.execs,
                f.genome.stdin.len(),
                f.genome.faults.len(),
                stack.join(",")
            )
        })
        .collect();
    format!(
        "{{\"version\":{STATS_VERSION},\"seed\":{seed},\"jobs\":{jobs},\"execs\":{},\"rounds\":{},\"queue\":{},\
         \"edges\":{},\"crashes\":{},\"hangs\":{},\"dictionary\":{},\"last_new_execs\":{},\
         \"snapshot_icount\":{},\"findings\":[{}]}}\n",
        p.execs,
        p.rounds,
        p.queue_len,
        p.edges,
        p.crashes,
        p.hangs,
        p.dictionary_len,
        p.last_new_execs,
        c.snapshot_icount(),
        findings.join(",")
    )
}
