//! `tandem pool`: makes many instances of one program, warm (from a snapshot at --warm-at, warmed with operations
//! chosen from a usage profile) or cold (each from the ELF), runs each to its end, and prints what they did,
//! grouped (stdout). With --record-profile it writes the usage profile of those runs; with --timings it prints
//! the time from creating an instance to its first instruction of real work (the warm point) and the speed of
//! its first instructions, median and p99 (stderr; host time, a report about tandem, not an input of any run).
//!
//! The work is in `tandem_replay::pools`; this file parses, times and renders.

use crate::mount_fs::MountRoots;
use crate::run_cmd::{self, RunArgs, WarmStart};
use anyhow::{bail, Context};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tandem_emulator::hypervisor::campaign::JOBS_MAX;
use tandem_emulator::linux::abi::Errno;
use tandem_emulator::linux::{
    Host, HostMetadata, LinuxConfig, LinuxMachine, MemoryHost, Progress, SeededEntropy,
};
use tandem_replay::pools::{
    locate, run_to, touched_pages, EntropyHost, Pool, Seeding, UsageProfile, WarmPoint, WarmTarget,
    WarmupPlan,
};
use tandem_scenarios::input::{read_input, read_input_text, InputKind};

/// Most instances one `tandem pool` makes.
pub const INSTANCES_MAX: u64 = 1_000_000;

#[derive(clap::Args, Debug)]
#[command(
    about = "Make many instances of a program, warm from a snapshot or cold, and run each",
    long_about = "Make --instances instances of a program and run each to its end. Warm (the default): the \
        program runs once to --warm-at, is snapshotted there, and every instance starts from the snapshot \
        (copy-on-write), warmed with the operations --profile chooses (hot blocks compiled ahead, pages the \
        workload writes pre-faulted, files it reads cached), and each is re-seeded (clone N draws from streams \
        of its own; --no-reseed keeps the snapshot's). Cold (--cold): every instance loads the ELF and runs the \
        startup itself.\n\n\
        Prints one line per distinct outcome (exit status, instruction count, state hash, a digest of stdout) with \
        the instances that had it (stdout as its FNV-1a digest).",
    after_help = "Exit status:\n  \
        0    every instance ran (whatever its own exit status)\n  \
        125  tandem's own failure: bad input, a warm point not reached, a malformed profile\n\n\
        Examples:\n  \
        tandem pool --instances 100 --warm-at main --record-profile hello.prof -- corpus/bin/hello-musl\n  \
        tandem pool --instances 1000 --warm-at main --profile hello.prof --timings -- corpus/bin/hello-musl\n  \
        tandem pool --instances 1000 --cold --timings --warm-at first-read-of-stdin --stdin in.txt -- /bin/busybox wc"
)]
pub struct PoolArgs {
    /// Instances to make, 1 to 1,000,000. Example: --instances 1000
    #[arg(long, value_name = "N", default_value_t = 1)]
    instances: u64,

    /// Make every instance from the ELF (the warm point is then only where "real work" starts, for --timings).
    #[arg(long)]
    cold: bool,

    /// Choose each warm instance's warmup from this usage profile (written by --record-profile).
    /// Example: --profile hello.prof
    #[arg(long, value_name = "FILE")]
    profile: Option<PathBuf>,

    /// Write the usage profile of these runs (blocks run hot, pages written and files read after the warm
    /// point) to FILE. Example: --record-profile hello.prof
    #[arg(long, value_name = "FILE")]
    record_profile: Option<PathBuf>,

    /// Every instance's stdin (default: empty). Example: --stdin input.txt
    #[arg(long, value_name = "FILE")]
    stdin: Option<PathBuf>,

    /// Worker threads, 1 to 256, each with a pool of its own (the output does not depend on it; --timings
    /// measures instances that share the cores). Example: --jobs 2
    #[arg(long, value_name = "N", default_value_t = 1)]
    jobs: usize,

    /// Print timings to stderr: create-to-warm-point and the first --measure-insns instructions' speed, median
    /// and p99 over the instances.
    #[arg(long)]
    timings: bool,

    /// With --timings: how many instructions after the warm point the speed is measured over.
    /// Example: --measure-insns 10000000
    #[arg(long, value_name = "N", default_value_t = 10_000_000)]
    measure_insns: u64,

    #[command(flatten)]
    run: RunArgs,
}

/// An instance's host: the mounted files (shared by every instance), stdin from memory, output captured.
struct PoolHost {
    mounts: Rc<RefCell<MountRoots>>,
    io: MemoryHost,
}

impl Host for PoolHost {
    fn read_stdin(&mut self, buf: &mut [u8]) -> Result<usize, Errno> {
        self.io.read_stdin(buf)
    }
    fn write_stdout(&mut self, bytes: &[u8]) -> Result<(), Errno> {
        self.io.write_stdout(bytes)
    }
    fn write_stderr(&mut self, bytes: &[u8]) -> Result<(), Errno> {
        self.io.write_stderr(bytes)
    }
    fn metadata(&mut self, path: &Path) -> Result<HostMetadata, Errno> {
        self.mounts.borrow_mut().metadata(path)
    }
    fn read_file(&mut self, path: &Path) -> Result<Arc<Vec<u8>>, Errno> {
        self.mounts.borrow_mut().read_file(path)
    }
    fn read_dir(&mut self, path: &Path) -> Result<Vec<Vec<u8>>, Errno> {
        self.mounts.borrow_mut().read_dir(path)
    }
    fn read_link(&mut self, path: &Path) -> Result<Vec<u8>, Errno> {
        self.mounts.borrow_mut().read_link(path)
    }
    fn fill_random(&mut self, out: &mut [u8]) {
        self.io.fill_random(out)
    }
}

impl EntropyHost for PoolHost {
    fn entropy(&self) -> SeededEntropy {
        EntropyHost::entropy(&self.io)
    }
    fn set_entropy(&mut self, entropy: SeededEntropy) {
        self.io.set_entropy(entropy)
    }
}

/// What one instance did: its outcome (grouped in the output) and, for --timings, its host times.
struct Ran {
    outcome: String,
    ready_ns: u64,
    /// Of `ready_ns`, the time the warmup operations took (warm instances).
    warmup_ns: u64,
    measure_ns: Option<u64>,
}

/// What one instance used after the warm point, for --record-profile: its blocks with their counts, the pages
/// it wrote, the files it read.
type Usage = (Vec<(u64, u32)>, Vec<u64>, Vec<PathBuf>);

/// One instance's result, kept by its index until all are in.
type Done = anyhow::Result<DoneRun>;

struct DoneRun {
    ran: Ran,
    usage: Option<Usage>,
}

/// One thread's pool: its setup (mounts, stdin), its warm image and warmup, and the reference instance that
/// --record-profile compares pages with.
struct Worker {
    setup: Setup,
    pool: Pool,
    reference: LinuxMachine<PoolHost>,
}

impl Worker {
    fn prepare(
        setup: Setup,
        args: &PoolArgs,
        point_text: &str,
        plan: &WarmupPlan,
    ) -> anyhow::Result<Worker> {
        let warm = WarmStart {
            point: point_text,
            seeding: Seeding::Shared,
            instructions_max: setup.instructions_max,
            jit: !args.run.no_jit,
        };
        let (image, _) =
            run_cmd::warm_image(setup.config.clone(), &setup.program, setup.host(), &warm)
                .with_context(|| format!("--warm-at {point_text}"))?;
        let pool = Pool::new(image, plan.clone());
        let reference = pool.image.instance(setup.host(), Seeding::Shared);
        Ok(Worker {
            setup,
            pool,
            reference,
        })
    }

    /// Runs instances, taking the next index each time, until all are taken.
    fn serve(&self, args: &PoolArgs, next: &AtomicU64, done: &Mutex<Vec<Option<Done>>>) {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= args.instances {
                return;
            }
            let seeding = if args.run.no_reseed {
                Seeding::Shared
            } else {
                Seeding::Own { clone: i }
            };
            let result = if args.cold {
                run_cold(&self.setup, args).map(|ran| DoneRun { ran, usage: None })
            } else {
                Ok(run_warm(
                    &self.setup,
                    &self.pool,
                    seeding,
                    args,
                    &self.reference,
                ))
            };
            done.lock().expect("no pool thread panicked")[i as usize] = Some(result);
        }
    }
}

/// Most outcome lines printed; the rest are counted.
const OUTCOME_LINES_MAX: usize = 20;

struct Setup {
    config: LinuxConfig,
    program: Vec<u8>,
    mounts: Rc<RefCell<MountRoots>>,
    stdin: Vec<u8>,
    point: WarmPoint,
    /// The warm point resolved once (a `first-read-of-stdin` probe is not repeated per cold instance).
    target: WarmTarget,
    instructions_max: u64,
}

impl Setup {
    fn host(&self) -> PoolHost {
        let mut io = MemoryHost::new(self.config.seed);
        io.stdin = self.stdin.clone();
        PoolHost {
            mounts: self.mounts.clone(),
            io,
        }
    }
}

pub fn run(args: PoolArgs) -> anyhow::Result<()> {
    if args.instances == 0 || args.instances > INSTANCES_MAX {
        bail!(
            "--instances {}: give between 1 and {INSTANCES_MAX}",
            args.instances
        );
    }
    if args.jobs == 0 || args.jobs > JOBS_MAX {
        bail!(
            "--jobs {}: give between 1 and {JOBS_MAX} worker threads",
            args.jobs
        );
    }
    let Some(point_text) = args.run.warm_at.clone() else {
        bail!("tandem pool needs --warm-at POINT (where instances start, or with --cold where real work starts)");
    };
    if args.run.faults.is_some()
        || args.run.faults_file.is_some()
        || !args.run.syscall_faults.is_empty()
    {
        bail!("tandem pool does not inject faults; use tandem faults");
    }
    let first = setup(&args, &point_text)?;
    let profile = match &args.profile {
        Some(path) => {
            let text = read_input_text(path, InputKind::Profile)?;
            let p = UsageProfile::parse(&text)
                .with_context(|| format!("--profile {}", path.display()))?;
            p.check_program(&first.program)
                .with_context(|| format!("--profile {}", path.display()))?;
            Some(p)
        }
        None => None,
    };
    let plan = profile.as_ref().map(WarmupPlan::choose).unwrap_or_default();
    let here = Worker::prepare(first, &args, &point_text, &plan)?;
    let next = AtomicU64::new(0);
    let done: Mutex<Vec<Option<Done>>> = Mutex::new((0..args.instances).map(|_| None).collect());
    std::thread::scope(|scope| -> anyhow::Result<()> {
        // Each thread makes its own pool (guests and their hosts stay on the thread that made them); the
        // calling thread serves too. An instance's run depends only on its index, not on the thread.
        let others: Vec<_> = (1..args.jobs)
            .map(|_| {
                scope.spawn(|| {
                    let setup = setup(&args, &point_text)?;
                    Worker::prepare(setup, &args, &point_text, &plan)?.serve(&args, &next, &done);
                    anyhow::Ok(())
                })
            })
            .collect();
        here.serve(&args, &next, &done);
        for t in others {
            t.join().expect("a pool thread panicked")?;
        }
        Ok(())
    })?;
    let mut recorded = UsageProfile::new(&here.setup.program, &point_text);
    let mut groups: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut ready = Vec::new();
    let mut warmups = Vec::new();
    let mut measured = Vec::new();
    let done = done.into_inner().expect("no pool thread panicked");
    for (i, d) in (0u64..).zip(done) {
        let DoneRun { ran, usage } = d.expect("every instance ran")?;
        if let Some((blocks, pages, files)) = usage {
            recorded.add_run(&blocks, pages, files);
        }
        groups.entry(ran.outcome).or_default().push(i);
        ready.push(ran.ready_ns);
        warmups.push(ran.warmup_ns);
        measured.extend(ran.measure_ns);
    }
    let pool = &here.pool;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "pool: {} instances of {}, {} from {} (icount {}); warmup: {} blocks, {} pages, {} files",
        args.instances,
        args.run.command[0].to_string_lossy(),
        if args.cold { "cold" } else { "warm" },
        point_text,
        pool.image.icount(),
        pool.warmup.blocks.len(),
        pool.warmup.pages.len(),
        pool.warmup.files.len()
    )?;
    for (outcome, who) in groups.iter().take(OUTCOME_LINES_MAX) {
        writeln!(out, "{outcome}: {} instances ({})", who.len(), ranges(who))?;
    }
    if groups.len() > OUTCOME_LINES_MAX {
        writeln!(
            out,
            "... and {} other outcomes (re-seeded clones differ; --no-reseed keeps the snapshot's entropy)",
            groups.len() - OUTCOME_LINES_MAX
        )?;
    }
    out.flush()?;
    if let Some(path) = &args.record_profile {
        std::fs::write(path, recorded.render())
            .with_context(|| format!("--record-profile: cannot write {}", path.display()))?;
    }
    if args.timings {
        print_timings(&args, &mut ready, &mut warmups, &mut measured)?;
    }
    Ok(())
}

fn setup(args: &PoolArgs, point_text: &str) -> anyhow::Result<Setup> {
    let program_path = run_cmd::program_path(&args.run.command[0]);
    let program = read_input(&program_path, InputKind::Program)?;
    let mounts = run_cmd::guest_mounts(&args.run, &program)?;
    let config = LinuxConfig {
        seed: args.run.seed,
        argv: args
            .run
            .command
            .iter()
            .map(|a| a.as_bytes().to_vec())
            .collect(),
        envp: args.run.env.iter().map(|e| e.as_bytes().to_vec()).collect(),
        exe_path: run_cmd::exe_guest_path(&program_path, &mounts),
        cwd: run_cmd::guest_cwd(&mounts),
        strict: args.run.strict,
        frames_max: args.run.memory_max,
        sched: args.run.sched,
        cpus: args.run.cpus,
        mounts: mounts.clone(),
        ..LinuxConfig::default()
    };
    let stdin = match &args.stdin {
        Some(path) => std::fs::read(path)
            .with_context(|| format!("--stdin: cannot read {}", path.display()))?,
        None => Vec::new(),
    };
    let mut setup = Setup {
        config,
        program,
        mounts: Rc::new(RefCell::new(MountRoots::open(
            &mounts,
            args.run.normalize_metadata,
        )?)),
        stdin,
        point: WarmPoint::parse(point_text)?,
        target: WarmTarget::Icount(0),
        instructions_max: args.run.max_insns.unwrap_or(u64::MAX / 4),
    };
    let mut host = setup.host();
    setup.target = locate(
        &setup.point,
        &setup.config,
        &setup.program,
        &mut host,
        setup.instructions_max,
    )?;
    Ok(setup)
}

/// A host clock reading, for --timings only (a report about tandem, never an input of a guest).
#[allow(clippy::disallowed_methods)]
fn now() -> std::time::Instant {
    std::time::Instant::now()
}

fn run_cold(setup: &Setup, args: &PoolArgs) -> anyhow::Result<Ran> {
    let started = now();
    let mut guest = LinuxMachine::new(setup.config.clone(), &setup.program, setup.host())?;
    guest.set_jit(!args.run.no_jit);
    run_to(
        &mut guest,
        setup.target,
        &setup.point,
        setup.instructions_max,
    )?;
    let ready_ns = started.elapsed().as_nanos() as u64;
    let measure_ns = finish(&mut guest, setup, args);
    Ok(Ran {
        outcome: outcome(&guest, &guest.host.io.stdout),
        ready_ns,
        warmup_ns: 0,
        measure_ns,
    })
}

fn run_warm(
    setup: &Setup,
    pool: &Pool,
    seeding: Seeding,
    args: &PoolArgs,
    reference: &LinuxMachine<PoolHost>,
) -> DoneRun {
    let started = now();
    let warming = pool.create(setup.host(), seeding);
    let restored = now();
    let instance = warming.finish(&pool.warmup);
    let ready_ns = started.elapsed().as_nanos() as u64;
    let warmup_ns = restored.elapsed().as_nanos() as u64;
    let mut guest = instance.guest;
    guest.set_jit(!args.run.no_jit);
    let measure_ns = finish(&mut guest, setup, args);
    let usage = args.record_profile.is_some().then(|| {
        (
            guest.hot_blocks(),
            touched_pages(reference.memory(), guest.memory()),
            guest.host.files_read().iter().cloned().collect(),
        )
    });
    let ran = Ran {
        outcome: outcome(&guest, &guest.host.inner.io.stdout),
        ready_ns,
        warmup_ns,
        measure_ns,
    };
    DoneRun { ran, usage }
}

/// Runs the guest to its end; with --timings, times its first --measure-insns instructions.
fn finish<H: Host>(guest: &mut LinuxMachine<H>, setup: &Setup, args: &PoolArgs) -> Option<u64> {
    let mut measure_ns = None;
    if args.timings {
        let started = now();
        let start = guest.icount();
        let end = start
            .saturating_add(args.measure_insns)
            .min(setup.instructions_max);
        while guest.icount() < end && guest.run_to_completion(end) != Progress::Finished {}
        if guest.icount() - start >= args.measure_insns {
            measure_ns = Some(started.elapsed().as_nanos() as u64);
        }
    }
    while guest.run_to_completion(setup.instructions_max) != Progress::Finished
        && guest.icount() < setup.instructions_max
    {}
    measure_ns
}

fn outcome<H: Host>(guest: &LinuxMachine<H>, stdout: &[u8]) -> String {
    let end = match guest.termination() {
        Some(t) => format!("exit {}", t.exit_status()),
        None => "stopped at --max-insns".into(),
    };
    let mut digest = tandem_emulator::memory::Fnv::new();
    digest.write_bytes(stdout);
    format!(
        "{end}, icount {}, state_hash {:#018x}, stdout {} bytes fnv {:016x}",
        guest.icount(),
        guest.state_hash(),
        stdout.len(),
        digest.finish()
    )
}

/// "0-3,7" for instances 0, 1, 2, 3 and 7 (sorted input).
fn ranges(ids: &[u64]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let mut j = i;
        while j + 1 < ids.len() && ids[j + 1] == ids[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            ids[i].to_string()
        } else {
            format!("{}-{}", ids[i], ids[j])
        });
        i = j + 1;
    }
    parts.join(",")
}

/// The value at quantile `q` (nearest rank) of sorted `v`.
fn quantile(v: &[u64], q: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn print_timings(
    args: &PoolArgs,
    ready: &mut [u64],
    warmups: &mut [u64],
    measured: &mut [u64],
) -> anyhow::Result<()> {
    ready.sort_unstable();
    warmups.sort_unstable();
    measured.sort_unstable();
    let mut err = crate::output::Lossy(std::io::stderr().lock());
    writeln!(
        err,
        "tandem: timings (host time): create to warm point: median {:.3} ms, p99 {:.3} ms over {} instances",
        quantile(ready, 0.5) as f64 / 1e6,
        quantile(ready, 0.99) as f64 / 1e6,
        ready.len()
    )?;
    if !args.cold {
        writeln!(
            err,
            "tandem: timings (host time): of which warmup operations: median {:.3} ms, p99 {:.3} ms",
            quantile(warmups, 0.5) as f64 / 1e6,
            quantile(warmups, 0.99) as f64 / 1e6
        )?;
    }
    if !measured.is_empty() {
        let mips = |ns: u64| args.measure_insns as f64 / (ns.max(1) as f64 / 1e9) / 1e6;
        writeln!(
            err,
            "tandem: timings (host time): first {} instructions after it: median {:.1} MIPS, p99 (slowest 1%) {:.1} MIPS over {} instances",
            args.measure_insns,
            mips(quantile(measured, 0.5)),
            mips(quantile(measured, 0.99)),
            measured.len()
        )?;
    } else {
        writeln!(
            err,
            "tandem: timings: no instance ran {} instructions after the warm point",
            args.measure_insns
        )?;
    }
    Ok(())
}
