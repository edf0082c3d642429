//! `tandem record`: runs a program like `tandem run` and writes its trace (crate tandem-replay).
//!
//! The trace holds the program, everything the run read from the host (stdin, mounted files, and with
//! --live-clock / --live-entropy the host's clock and entropy), state hashes every --hash-interval instructions,
//! and the outcome; `tandem replay FILE` reproduces the run from it alone. The host clock is read here only for
//! --live-clock, where it is an input of the guest that the trace records.
//!
//! The guest runs under the hypervisor with the fault flags of `tandem run` (--faults, --faults-file,
//! --fault-seed, --early-kill): the plan and options go into the header, each fault that fires into the event
//! stream (`Event::Fault`), and its report line to stderr as `tandem run` prints it.
//!
//! Volumes (--volume) are read from their host directories before the guest starts and kept whole in the trace
//! (one volume chunk each, after the header): they are inputs like stdin. --export writes the volumes as the
//! run left them and --cdp-journal journals their operations, as under `tandem run`.
//!
//! The trace is written to FILE.partial beside FILE and renamed over FILE only when the recording is complete:
//! a recording that is killed or fails (a full disk) never destroys an earlier FILE, and what it leaves in
//! FILE.partial replays up to its last complete chunk. -o may not name an input of the run (the program, a
//! mounted file or a file under a mounted directory, the fault file).

use crate::output::Lossy;
use crate::run_cmd::{
    exe_guest_path, finish_volumes, guest_cwd, guest_mounts, guest_volumes, host_mounts,
    install_journal, read_fault_plan, syscall_fault_plan, LiveHost, RunArgs,
};
use anyhow::{bail, Context};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use tandem_emulator::hypervisor::{Hypervisor, Policy};
use tandem_emulator::linux::vfs::Mount;
use tandem_emulator::linux::{read_volume, LinuxConfig};
use tandem_emulator::storage::VolumeSpec;
use tandem_replay::hosts::{LiveClock, LiveEntropy, RecordingHost};
use tandem_replay::record::record;
use tandem_replay::sink::BackgroundWriter;
use tandem_replay::trace::{FaultOptions, Header, TraceWriter};
use tandem_scenarios::input::{read_input, InputKind};

#[derive(clap::Args, Debug)]
#[command(
    about = "Run a program and record a trace that `tandem replay` reproduces bit for bit",
    long_about = "Run an x86-64 Linux program exactly as `tandem run` does (same options, same output, same \
        exit status) and write a trace to -o FILE: the program, its arguments and environment, every byte it read \
        from stdin and from mounted files, the memory faults that fired, state hashes every --hash-interval \
        instructions and the outcome. `tandem replay FILE` reproduces the run from the trace alone, on any machine, \
        and `tandem debug FILE` steps through it forwards and backwards.\n\n\
        Options go before the program; everything after it (or after `--`) is the program's arguments.",
    after_help = "Exit status:\n  \
        0-255  the guest's own exit status (the trace is written whatever it is)\n  \
        128+N  the guest was killed by signal N, e.g. 139 for SIGSEGV\n  \
        124    --max-insns stopped the guest before it finished (as timeout(1))\n  \
        125    tandem's own failure: bad input, unreadable program, the trace cannot be written\n\n\
        Examples:\n  \
        tandem record -o hello.trace -- corpus/bin/hello-musl\n  \
        echo hi | tandem record -o tr.trace --live-clock -- /bin/busybox tr a-z A-Z\n  \
        tandem record -o ue.trace --faults 'mem.ue:icount=300000,addr=0x7ffff7ff8000' -- corpus/bin/sigbus-musl 20\n  \
        tandem replay hello.trace"
)]
pub struct RecordArgs {
    /// The trace file to write. Example: -o run.trace
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: PathBuf,

    /// Instructions between state hashes (checkpoints that replay verifies). Example: --hash-interval 65536
    #[arg(long, default_value_t = HASH_INTERVAL_DEFAULT, value_name = "N")]
    hash_interval: u64,

    /// Instructions between the register hashes that narrow a divergence; 1 narrows to the exact instruction
    /// (slower recording). Must divide --hash-interval. Default: 65536, or --hash-interval if smaller.
    /// Example: --fine-interval 1
    #[arg(long, value_name = "N")]
    fine_interval: Option<u64>,

    /// The guest's clock follows the host's (recorded in the trace) instead of the instruction count.
    #[arg(long)]
    live_clock: bool,

    /// getrandom and /dev/urandom read the host's entropy (recorded in the trace) instead of the seed.
    #[arg(long)]
    live_entropy: bool,

    #[command(flatten)]
    run: RunArgs,
}

/// Where the trace is written until it is complete: FILE.partial beside FILE.
fn partial_path(output: &Path) -> PathBuf {
    let mut name = output.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    output.with_file_name(name)
}

/// The path as it will be on disk: canonical if it exists, else its canonical parent joined with its name.
fn resolved(path: &Path) -> Option<PathBuf> {
    if let Ok(p) = std::fs::canonicalize(path) {
        return Some(p);
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Some(std::fs::canonicalize(parent).ok()?.join(path.file_name()?))
}

/// Refuses an -o (or its .partial) that names an input of the run: writing it would destroy the input, and a
/// mounted one would be read by the guest while it is written.
fn refuse_output_over_an_input(
    output: &Path,
    partial: &Path,
    program: &Path,
    r: &RunArgs,
) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    if output.file_name().is_none() || output.is_dir() {
        bail!(
            "-o {}: a directory; name the trace file, such as -o run.trace",
            output.display()
        );
    }
    let mut inputs: Vec<(String, PathBuf)> = vec![("the program".into(), program.to_path_buf())];
    for m in &r.mounts {
        let host = m.split_once(':').map_or(m.as_str(), |(h, _)| h);
        inputs.push((format!("the mount {m}"), PathBuf::from(host)));
    }
    for v in &r.volumes {
        let host = v.split_once(':').map_or(v.as_str(), |(h, _)| h);
        inputs.push((format!("the volume {v}"), PathBuf::from(host)));
    }
    if let Some(f) = &r.faults_file {
        inputs.push(("the fault file".into(), f.clone()));
    }
    for target in [output, partial] {
        let same_file = |input: &Path| match (std::fs::metadata(target), std::fs::metadata(input)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        };
        let Some(at) = resolved(target) else { continue };
        for (what, input) in &inputs {
            let Some(input_at) = resolved(input) else {
                continue;
            };
            if same_file(input) || at == input_at || at.starts_with(&input_at) {
                bail!(
                    "-o {}: it is {what} ({}), an input of the run: recording would overwrite it; write the \
                     trace elsewhere",
                    output.display(),
                    input.display()
                );
            }
        }
    }
    Ok(())
}

/// The run's volumes with their initial content read now, from the host directories, before the guest starts:
/// the trace keeps the content (its volume chunks), so the recorded run and its replays install the same bytes
/// the same way, and the recording host logs no volume reads.
fn recorded_volumes(r: &RunArgs, mounts: &[Mount]) -> anyhow::Result<Vec<VolumeSpec>> {
    let mut volumes = guest_volumes(r, mounts)?;
    let mut host = LiveHost::new(r.seed, &host_mounts(&[], &volumes), r.normalize_metadata)?;
    for (v, arg) in volumes.iter_mut().zip(&r.volumes) {
        let content = read_volume(&mut host, v).with_context(|| format!("--volume {arg}"))?;
        v.content = Some(std::sync::Arc::new(content));
    }
    Ok(volumes)
}

/// The host clock since the recording started.
struct HostClock(std::time::Instant);

impl LiveClock for HostClock {
    fn elapsed_ns(&mut self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

/// The header of a trace of a run of `config` on the program at `program` (its `bytes`): no instruction limit,
/// the default hash intervals, the guest's own clock and entropy, no faults. `tandem ft --record` writes it as
/// is; `tandem record` sets its options over it.
pub(crate) fn header_of(config: &LinuxConfig, program: &Path, bytes: &[u8]) -> Header {
    Header::of_run(config, program.as_os_str().as_bytes().to_vec(), bytes)
}

pub(crate) use tandem_replay::trace::{FINE_INTERVAL_DEFAULT, HASH_INTERVAL_DEFAULT};

pub fn run(mut args: RecordArgs) -> anyhow::Result<()> {
    let fine_interval = args
        .fine_interval
        .unwrap_or(FINE_INTERVAL_DEFAULT.min(args.hash_interval));
    if fine_interval == 0 || args.hash_interval == 0 || args.hash_interval % fine_interval != 0 {
        bail!(
            "--fine-interval {fine_interval} must be at least 1 and divide --hash-interval {}",
            args.hash_interval
        );
    }
    let command = crate::run_cmd::script_command(&args.run.command, args.run.root.as_deref())?;
    args.run.command = command;
    let r = &args.run;
    if r.warm_at.is_some() {
        bail!("tandem record records a run from its start; --warm-at is for tandem run and tandem pool");
    }
    let program = crate::run_cmd::program_path(&r.command[0]);
    let partial = partial_path(&args.output);
    let bytes = read_input(&program, InputKind::Program)?;
    let mounts = guest_mounts(r, &bytes)?;
    for e in &r.env {
        if !e.contains('=') {
            bail!("--env {e}: expected K=V, such as --env LANG=C");
        }
    }
    let volumes = recorded_volumes(r, &mounts)?;
    let config = LinuxConfig {
        seed: r.seed,
        argv: r.command.iter().map(|a| a.as_bytes().to_vec()).collect(),
        envp: r.env.iter().map(|e| e.as_bytes().to_vec()).collect(),
        exe_path: exe_guest_path(&program, &mounts),
        cwd: guest_cwd(&mounts),
        mounts,
        volumes,
        strict: r.strict,
        frames_max: r.memory_max,
        trace_syscalls: r.strace,
        sched: r.sched,
        cpus: r.cpus,
        ..LinuxConfig::default()
    };
    let plan = read_fault_plan(r.faults.as_deref(), r.faults_file.as_deref())?;
    if plan.missing_horizon() {
        bail!(
            "--faults: a count= fault needs within=ICOUNT in tandem record, such as \
             mem.ue:count=1,within=1000000"
        );
    }
    let policy = Policy {
        early_kill: r.early_kill,
        ..Policy::default()
    };
    let syscall_faults = syscall_fault_plan(r)?;
    let fault_seed = r.fault_seed.unwrap_or(r.seed);
    let has_faults = !plan.events.is_empty() || !plan.random.is_empty();
    let header = Header {
        instructions_max: r.max_insns,
        hash_interval: args.hash_interval,
        fine_interval,
        live_clock: args.live_clock,
        live_entropy: args.live_entropy,
        faults: has_faults.then(|| FaultOptions {
            plan: (&plan).into(),
            fault_seed,
            early_kill: policy.early_kill,
            stuck_period_insns: policy.stuck_period_insns,
        }),
        syscall_faults: syscall_faults.iter().map(Into::into).collect(),
        ..header_of(&config, &program, &bytes)
    };
    // The live clock is an input of the guest, recorded in the trace: the one permitted host-clock read.
    #[allow(clippy::disallowed_methods)]
    let clock: Option<Box<dyn LiveClock>> = args
        .live_clock
        .then(|| Box::new(HostClock(std::time::Instant::now())) as Box<dyn LiveClock>);
    let entropy: Option<LiveEntropy> = if args.live_entropy {
        let mut urandom = std::fs::File::open("/dev/urandom")
            .context("--live-entropy: cannot open /dev/urandom")?;
        Some(Box::new(move |out: &mut [u8]| {
            use std::io::Read;
            if urandom.read_exact(out).is_err() {
                out.fill(0);
            }
        }))
    } else {
        None
    };
    let live = LiveHost::new(r.seed, &config.mounts, r.normalize_metadata)?;
    let host = RecordingHost::new(live, clock, entropy);
    let mut hv = Hypervisor::new(config, bytes.into(), host, plan, policy, fault_seed)
        .with_context(|| format!("cannot load {}", program.display()))?;
    hv.guest.set_jit(!r.no_jit);
    crate::run_cmd::install_syscall_faults(&mut hv.guest, &syscall_faults);
    install_journal(&mut hv.guest, r)?;
    refuse_output_over_an_input(&args.output, &partial, &program, r)?;
    let file = std::fs::File::create(&partial)
        .with_context(|| format!("cannot create the trace {}", partial.display()))?;
    let cannot_write = || {
        format!(
            "cannot write the trace {} (what was written is in {}: tandem replay reads it up to its last \
             complete chunk)",
            args.output.display(),
            partial.display()
        )
    };
    let writer = TraceWriter::new(std::io::BufWriter::new(file)).with_context(cannot_write)?;
    // Chunks are encoded and written on a second thread, beside the guest.
    let mut writer = BackgroundWriter::new(writer).with_context(cannot_write)?;
    let summary = record(&mut hv, &header, &mut writer);
    // Whatever happened, every chunk sent is written before anything is reported.
    let written = writer.finish();
    let summary = summary.with_context(cannot_write)?;
    let writer = written.with_context(cannot_write)?;
    let written_bytes = writer.offset();
    // Complete and flushed: only now does it replace FILE.
    writer
        .into_inner()
        .into_inner()
        .map_err(|e| e.into_error())
        .and_then(|file| file.sync_all())
        .with_context(cannot_write)?;
    std::fs::rename(&partial, &args.output).with_context(|| {
        format!(
            "cannot rename the finished trace {} to {}",
            partial.display(),
            args.output.display()
        )
    })?;
    let _ = std::io::stdout().flush();
    // Report lines are best-effort: a closed stderr must not turn the guest's status into tandem's.
    let mut err = Lossy(std::io::stderr().lock());
    crate::run_cmd::report_unfired_syscall_faults(&mut hv.guest, &mut err)?;
    finish_volumes(&mut hv.guest, &r.exports, &mut err)?;
    if let Some(line) = &summary.diagnostic {
        writeln!(err, "tandem: {line}")?;
    }
    if summary.stopped_by_limit {
        writeln!(
            err,
            "tandem: stopped after {} instructions (--max-insns); the guest had not finished",
            summary.icount
        )?;
    }
    for report in &summary.faults {
        writeln!(err, "tandem: {}", report.line())?;
    }
    writeln!(
        err,
        "tandem: recorded {} instructions to {} ({} bytes)",
        summary.icount,
        args.output.display(),
        written_bytes
    )?;
    if r.report_state {
        writeln!(
            err,
            "tandem: icount {} state_hash {:#018x}",
            summary.icount, summary.state_hash
        )?;
    }
    err.flush()?;
    drop(err);
    std::process::exit(summary.exit_status);
}
