//! `tandem fuzz`: coverage-guided fault-injection fuzzing of a program's stdin and syscall results
//! (tandem-analyzers' `fuzz`). This file parses the arguments, reads the seed corpus, prints progress on stderr,
//! and writes AFL++'s `fuzzer_stats` and `plot_data`, the only outputs with wall time in them (the host clock is
//! read here, for progress and --time-budget only; queue, findings and stats.json do not depend on it).

use crate::output::Lossy;
use anyhow::{bail, Context};
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tandem_analyzers::fuzz::{
    self, genome, Campaign, CheckedRun, Checker, Genome, Options, Target,
};
use tandem_emulator::linux::LinuxConfig;
use tandem_scenarios::input::{read_input, InputKind};

/// Most seed files read from -i.
const SEED_FILES_MAX: usize = 10_000;

#[derive(clap::Args, Debug)]
#[command(
    about = "Coverage-guided fuzzing of a program's stdin and syscall faults, with snapshot resets",
    long_about = "Run PROGRAM again and again from a snapshot of its first instruction, each time with a test case \
        made from the seeds in -i: bytes for its stdin and a plan of syscall faults (ENOMEM from mmap and brk, \
        short reads and writes, EINTR, EIO, ENOSPC at the Nth call of a syscall). Edge coverage (AFL's hit-count \
        map, from the interpreter and compiled code alike) decides what joins the queue; comparison constants \
        the program tests its input against feed the mutations. Crashes (a fatal signal), aborts and hangs (the \
        --max-insns budget) are deduplicated by their stack, minimised, and saved with a trace that `tandem \
        replay` and `tandem debug` open. An argument @@ makes the test case a file instead of stdin (as in \
        AFL++); --checker judges the output of runs that exit; --snapshot-at first-read-of-stdin skips the \
        program's start-up in every execution. The output directory has AFL++'s layout: queue/, crashes/, hangs/, \
        fuzzer_stats, plot_data, and stats.json (deterministic: the same --seed and --jobs give the same \
        findings in the same order).",
    after_help = "Exit status:\n  0    no crash or hang found\n  1    findings were saved (crashes/ or hangs/)\n  \
        125  tandem's own failure: bad input, an unreadable program or seed, an unwritable output directory\n\n\
        Examples:\n  tandem fuzz -i seeds -o out --execs 100000 -- corpus/bin/fuzz-magic-musl\n  \
        tandem fuzz --jobs 2 --seed 7 --time-budget 60 -i seeds -o out -- ./parser --strict\n  \
        tandem fuzz --execs 50000 -i seeds -o out -- ./xmlcheck @@\n  \
        tandem fuzz --execs 50000 --checker 'grep -q ^ok' -o out -- ./calc\n  \
        tandem replay 'out/crashes/id:000000,sig:11,src:000000,op:havoc,execs:5120.trace'"
)]
pub struct FuzzArgs {
    /// Directory of seed inputs (each file is one stdin; NAME.faults beside it a fault plan). Without it, one
    /// empty input. Example: -i seeds
    #[arg(short = 'i', long = "input", value_name = "DIR")]
    input: Option<PathBuf>,

    /// Output directory (created; existing queue/crashes/hangs entries are kept). Example: -o out
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    output: PathBuf,

    /// Root seed of the campaign (mutations) and of the guest (AT_RANDOM, getrandom). Example: --seed 7
    #[arg(long, default_value_t = 0, value_name = "N")]
    seed: u64,

    /// Workers, each on a thread with its own snapshot of the program. Results depend on --seed and --jobs only.
    /// Example: --jobs 2
    #[arg(long, default_value_t = 1, value_name = "N")]
    jobs: usize,

    /// Stop after this many executions (rounded up to whole rounds of 256 per worker). Example: --execs 100000
    #[arg(long, value_name = "N")]
    execs: Option<u64>,

    /// Stop after this many seconds of wall time (checked between rounds; the findings made are those of the
    /// same --seed and --jobs with fewer executions). Example: --time-budget 60
    #[arg(long, value_name = "SECONDS")]
    time_budget: Option<u64>,

    /// Instructions each execution may retire before it counts as a hang. Example: --max-insns 1000000
    #[arg(long, default_value_t = 10_000_000, value_name = "N")]
    max_insns: u64,

    /// Guest memory limit per execution, with K, M or G. Example: --memory-max 64M
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = crate::run_cmd::parse_memory_size)]
    memory_max: usize,

    /// Where every execution starts: `start` (the program's first instruction) or `first-read-of-stdin` (just
    /// before it, found by a probe run as `tandem run --warm-at` does: start-up runs once, not per execution;
    /// faults at the syscalls start-up made cannot fire). Example: --snapshot-at first-read-of-stdin
    #[arg(long, default_value = "start", value_name = "POINT",
          value_parser = clap::builder::PossibleValuesParser::new(["start", "first-read-of-stdin"]))]
    snapshot_at: String,

    /// A shell command that judges the output of each run that exits: it reads the program's stdout on its
    /// stdin, with the test case's path in $TANDEM_FUZZ_INPUT and the exit status in $TANDEM_FUZZ_STATUS; its
    /// status 0 means right, another (not 126 or 127: the command could not run) wrong output, saved in
    /// crashes/ as a "checker" finding. It must be deterministic. It costs a process per execution.
    /// Example: --checker 'grep -qx 42'
    #[arg(long, value_name = "CMD")]
    checker: Option<String>,

    /// Stop after the round of executions that made the first finding (as AFL_BENCH_UNTIL_CRASH).
    #[arg(long)]
    until_crash: bool,

    /// Interpret every instruction (coverage is the same; slower).
    #[arg(long)]
    no_jit: bool,

    /// Print nothing but the findings' reproduction lines.
    #[arg(long, short = 'q')]
    quiet: bool,

    /// The program (a static x86-64 ELF) and its arguments; an argument with @@ in it names the test case as a
    /// file (/fuzz/input; stdin is then empty). Example: -- corpus/bin/fuzz-magic-musl
    #[arg(required = true, trailing_var_arg = true, value_name = "PROGRAM ARGS")]
    command: Vec<OsString>,
}

pub fn run(args: FuzzArgs) -> anyhow::Result<()> {
    if args.jobs == 0 || args.jobs > fuzz::campaign::JOBS_MAX {
        bail!(
            "--jobs {}: from 1 to {}",
            args.jobs,
            fuzz::campaign::JOBS_MAX
        );
    }
    if args.execs.is_none() && args.time_budget.is_none() {
        bail!("give --execs N or --time-budget SECONDS (or both): a campaign needs an end");
    }
    if args.max_insns == 0 {
        bail!("--max-insns 0: each execution needs at least one instruction");
    }
    let program = crate::run_cmd::program_path(&args.command[0]);
    let bytes = read_input(&program, InputKind::Program)?;
    let seeds = match &args.input {
        Some(dir) => read_seeds(dir)?,
        None => Vec::new(),
    };
    let config = LinuxConfig {
        seed: args.seed,
        argv: args
            .command
            .iter()
            .map(|a| std::os::unix::ffi::OsStrExt::as_bytes(a.as_os_str()).to_vec())
            .collect(),
        exe_path: crate::run_cmd::exe_guest_path(&program, &[]),
        frames_max: args.memory_max,
        ..LinuxConfig::default()
    };
    let mut target = Target::new(bytes, config, args.max_insns, !args.no_jit);
    target.use_file_input();
    if args.snapshot_at == "first-read-of-stdin" {
        target.snapshot_at = Some(tandem_replay::pools::WarmPoint::FirstReadOfStdin);
    }
    let options = Options {
        seed: args.seed,
        jobs: args.jobs,
        execs_max: args.execs.unwrap_or(u64::MAX),
    };
    let out = &args.output;
    fuzz::create_layout(out)
        .with_context(|| format!("-o {}: cannot create the output directory", out.display()))?;
    if let Some(cmd) = &args.checker {
        let dir = out.join(".checker");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("-o {}: cannot create {}", out.display(), dir.display()))?;
        target.checker = Some(shell_checker(cmd.clone(), dir));
    }
    let mut campaign = Campaign::new(target, options, seeds)
        .with_context(|| format!("cannot fuzz {}", program.display()))?;
    // Progress and --time-budget only: nothing the campaign finds depends on this clock.
    #[allow(clippy::disallowed_methods)]
    let start = std::time::Instant::now();
    let mut plot = String::from(
        "# relative_time, cycles_done, cur_item, corpus_count, pending_total, pending_favs, map_size, \
         saved_crashes, saved_hangs, max_depth, execs_per_sec, total_execs, edges_found\n",
    );
    let mut queue_written = 0;
    let mut failure: Option<anyhow::Error> = None;
    let mut err = Lossy(std::io::stderr().lock());
    // The progress line rewrites itself on a terminal; elsewhere only findings and the summary are printed.
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut observe = |c: &Campaign, new: std::ops::Range<usize>| -> bool {
        let elapsed = start.elapsed().as_secs_f64();
        let p = &c.progress;
        let eps = p.execs as f64 / elapsed.max(1e-9);
        let result = (|| -> anyhow::Result<()> {
            fuzz::write_queue(out, &c.queue, queue_written)?;
            for f in &c.findings[new] {
                let repro = fuzz::write_finding(out, c.target(), f)?;
                let _ = writeln!(
                    err,
                    "tandem: fuzz: {} after {} execs ({} stdin bytes, {} faults): {repro}",
                    f.verdict.label(),
                    f.execs,
                    f.genome.stdin.len(),
                    f.genome.faults.len()
                );
            }
            plot.push_str(&format!(
                "{}\n",
                format_args!(
                    "{}, {}, 0, {}, 0, 0, {:.2}%, {}, {}, 0, {eps:.2}, {}, {}",
                    elapsed as u64,
                    p.rounds,
                    p.queue_len,
                    p.edges as f64 * 100.0 / tandem_emulator::cpu::coverage::MAP_BYTES as f64,
                    p.crashes,
                    p.hangs,
                    p.execs,
                    p.edges
                )
            ));
            std::fs::write(out.join("plot_data"), &plot)?;
            std::fs::write(
                out.join("fuzzer_stats"),
                fuzzer_stats(c, elapsed, eps, &args),
            )?;
            std::fs::write(
                out.join("stats.json"),
                fuzz::stats_json(c, args.seed, args.jobs),
            )?;
            Ok(())
        })();
        queue_written = c.queue.len();
        if let Err(e) = result {
            failure = Some(e.context(format!("cannot write under {}", out.display())));
            return false;
        }
        if !args.quiet && terminal {
            let _ = write!(
                err,
                "\rtandem: fuzz: {} execs, {:.0} exec/s, {} edges, queue {}, {} crashes, {} hangs, last new path at {} execs   ",
                p.execs, eps, p.edges, p.queue_len, p.crashes, p.hangs, p.last_new_execs
            );
            let _ = err.flush();
        }
        if args.until_crash && !c.findings.is_empty() {
            return false;
        }
        args.time_budget
            .is_none_or(|t| start.elapsed().as_secs() < t)
    };
    // The seeds' round: write what they made before the first mutation.
    observe(&campaign, 0..campaign.findings.len());
    campaign.run(&mut observe);
    if let Some(e) = failure {
        return Err(e);
    }
    if let Some(why) = &campaign.failure {
        bail!("{why}");
    }
    if !args.quiet && terminal {
        let _ = writeln!(err);
    }
    let p = &campaign.progress;
    let _ = writeln!(
        err,
        "tandem: fuzz: done: {} execs in {:.1} s, {} edges, {} queue entries, {} crashes, {} hangs (seed {}, \
         --jobs {}); stats in {}",
        p.execs,
        start.elapsed().as_secs_f64(),
        p.edges,
        p.queue_len,
        p.crashes,
        p.hangs,
        args.seed,
        args.jobs,
        out.join("stats.json").display()
    );
    let _ = err.flush();
    if !campaign.findings.is_empty() {
        drop(err);
        std::process::exit(1);
    }
    Ok(())
}

/// `--checker CMD`: `sh -c CMD` with the run's stdout on its stdin, the test case in `dir/input-WORKER`
/// ($TANDEM_FUZZ_INPUT) and the exit status in $TANDEM_FUZZ_STATUS; its exit status is the judgement.
fn shell_checker(cmd: String, dir: PathBuf) -> Checker {
    Arc::new(move |run: &CheckedRun| {
        use std::process::{Command, Stdio};
        let failed = |what: String| format!("--checker {cmd:?}: {what}");
        let input = dir.join(format!("input-{}", run.worker));
        std::fs::write(&input, run.input)
            .map_err(|e| failed(format!("cannot write {}: {e}", input.display())))?;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .env("TANDEM_FUZZ_INPUT", &input)
            .env("TANDEM_FUZZ_STATUS", run.status.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| failed(format!("cannot start sh: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A checker that does not read all of it closes the pipe early: not an error.
            let _ = stdin.write_all(run.stdout);
        }
        let status = child
            .wait()
            .map_err(|e| failed(format!("cannot wait for it: {e}")))?;
        match status.code() {
            Some(c @ (126 | 127)) => {
                Err(failed(format!("the shell could not run it (status {c})")))
            }
            Some(c) => Ok(c),
            None => Err(failed(format!("killed ({status})"))),
        }
    })
}

/// AFL++'s fuzzer_stats (key : value lines), with the fields tandem has.
fn fuzzer_stats(c: &Campaign, elapsed_s: f64, eps: f64, args: &FuzzArgs) -> String {
    let p = &c.progress;
    let command: Vec<String> = args
        .command
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    format!(
        "run_time          : {}\nexecs_done        : {}\nexecs_per_sec     : {eps:.2}\ncorpus_count      : {}\n\
         saved_crashes     : {}\nsaved_hangs       : {}\nedges_found       : {}\nbitmap_cvg        : {:.2}%\n\
         stability         : 100.00%\ncycles_done       : {}\nlast_find_execs   : {}\ndictionary_len    : {}\n\
         fuzzer_seed       : {}\njobs              : {}\ncommand_line      : tandem fuzz -- {}\n",
        elapsed_s as u64,
        p.execs,
        p.queue_len,
        p.crashes,
        p.hangs,
        p.edges,
        p.edges as f64 * 100.0 / tandem_emulator::cpu::coverage::MAP_BYTES as f64,
        p.rounds,
        p.last_new_execs,
        p.dictionary_len,
        args.seed,
        args.jobs,
        command.join(" ")
    )
}

/// The seed files of `dir` in name order (NAME.faults files are the fault plans of NAME; other dot-files and
/// directories are skipped), each at most `genome::STDIN_BYTES_MAX` bytes.
fn read_seeds(dir: &Path) -> anyhow::Result<Vec<(String, Genome)>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("-i {}: cannot read the seed directory", dir.display()))?;
    let mut names = Vec::new();
    for e in entries {
        let e = e.with_context(|| format!("-i {}: cannot list it", dir.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name.ends_with(".faults") || !e.path().is_file() {
            continue;
        }
        names.push(name);
        if names.len() > SEED_FILES_MAX {
            bail!(
                "-i {}: more than {SEED_FILES_MAX} seed files",
                dir.display()
            );
        }
    }
    names.sort();
    let mut seeds = Vec::new();
    for name in names {
        let path = dir.join(&name);
        let len = std::fs::metadata(&path)
            .with_context(|| format!("seed {}", path.display()))?
            .len();
        if len > genome::STDIN_BYTES_MAX as u64 {
            bail!(
                "seed {}: {len} bytes, more than the {} a test case holds",
                path.display(),
                genome::STDIN_BYTES_MAX
            );
        }
        let stdin = std::fs::read(&path).with_context(|| format!("seed {}", path.display()))?;
        let faults_path = fuzz::with_suffix(&path, ".faults");
        let faults = if faults_path.is_file() {
            let text = std::fs::read_to_string(&faults_path)
                .with_context(|| format!("fault plan {}", faults_path.display()))?;
            genome::parse_faults(&text)
                .with_context(|| format!("fault plan {}", faults_path.display()))?
        } else {
            Vec::new()
        };
        seeds.push((name, Genome { stdin, faults }));
    }
    Ok(seeds)
}
