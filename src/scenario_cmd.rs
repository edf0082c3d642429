//! `tandem scenario ...`: argument parsing and rendering for the scenario engine (crate tandem-scenarios).
//!
//! Subcommands: `run` (many seeds in parallel, summary, JSON, JUnit, shrinking), `show` (one run's event timeline),
//! `plan` (print the fault plan of a seed), `bench` (seeds per second). The work lives in the library; this file only
//! parses, prints and writes files. Output on stdout is byte-identical whatever `--jobs` is; the progress line goes to
//! stderr and only when stderr is a terminal.
//!
//! Exit statuses (older than the other commands' and kept): 0 every run passed, 1 a checker failed, 2 bad input
//! (template, plan, arguments, a usage error), 141 when the reader of stdout went away (`| head -1`).

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use tandem_scenarios::input::{read_input_text, InputKind};
use tandem_scenarios::runner::{self, SeedOutcome};
use tandem_scenarios::{plan_for_seed, FaultPlan, Template};

/// A checker failed in some run.
pub const EXIT_CHECKER_FAILED: i32 = 1;
/// Bad input: a template, a plan, an argument, a usage error.
pub const EXIT_BAD_INPUT: i32 = 2;

#[derive(Args)]
#[command(
    about = "Seeded simulation scenarios from TOML workflow templates: run them over many seeds, show a run's \
        timeline, print a seed's fault plan, benchmark",
    after_help = "Exit status (every scenario command):\n  \
        0    every run passed (show, plan, bench: done)\n  \
        1    a checker failed in some run\n  \
        2    bad input: template, plan, arguments, usage error\n  \
        141  the reader of stdout went away (`| head -1`)"
)]
pub struct ScenarioArgs {
    #[command(subcommand)]
    command: ScenarioCommand,
}

#[derive(Subcommand)]
enum ScenarioCommand {
    /// Run a template over many seeds (or one seed, or one fault plan) and print a summary.
    ///
    /// Examples:
    ///   tandem scenario run scenarios/templates/split-brain.toml --seeds 0..10000 --jobs 2
    ///   tandem scenario run scenarios/templates/hpo.toml --seeds 0..1000 --json report.json --junit report.xml
    ///   tandem scenario run scenarios/templates/split-brain.toml --seeds 0..10000 --shard 0/4
    ///   tandem scenario run scenarios/templates/split-brain-ignore-isolation.toml --seed 3 --shrink
    ///   tandem scenario run scenarios/templates/split-brain.toml --plan corpus/regressions/split-brain-seed-3.toml
    ///
    /// Exit status: 0 when every run passed, 1 when a checker failed, 2 on bad input (template, plan, arguments,
    /// usage error), 141 when the reader of stdout went away (`| head -1`).
    #[command(verbatim_doc_comment)]
    Run(RunArgs),
    /// Print the fault plan and the event timeline of one run.
    ///
    /// Example: tandem scenario show scenarios/templates/split-brain.toml --seed 7
    #[command(verbatim_doc_comment)]
    Show(ShowArgs),
    /// Print the fault plan that a seed draws, as a plan file that `run --plan` and `show --plan` accept.
    ///
    /// Example: tandem scenario plan scenarios/templates/split-brain.toml --seed 7 > plan.toml
    #[command(verbatim_doc_comment)]
    Plan(PlanArgs),
    /// Measure seeds per second per core for templates (60 simulated seconds per seed in the shipped templates).
    ///
    /// Example: tandem scenario bench --seeds 2000 --jobs 1,2
    #[command(verbatim_doc_comment)]
    Bench(BenchArgs),
}

#[derive(Args)]
struct RunArgs {
    /// The workflow template (a TOML file, e.g. scenarios/templates/split-brain.toml).
    template: PathBuf,
    /// Seeds to run, as START..END (END excluded), e.g. `--seeds 0..10000`.
    #[arg(long, default_value = "0..100", conflicts_with_all = ["seed", "plan"])]
    seeds: String,
    /// Run exactly this seed (the reproduce line of a failure uses it), e.g. `--seed 42`.
    #[arg(long, conflicts_with = "plan")]
    seed: Option<u64>,
    /// Run this fault plan file instead of drawing one from a seed, e.g. `--plan corpus/regressions/x.toml`.
    #[arg(long)]
    plan: Option<PathBuf>,
    /// Worker threads (default: all cores). The output does not depend on it, e.g. `--jobs 2`.
    #[arg(long)]
    jobs: Option<usize>,
    /// Also write the versioned JSON report here, e.g. `--json report.json`.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also write a JUnit XML report (one test case per checker) here, e.g. `--junit junit.xml`.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Run only shard K of N (0-based, like a Kubernetes indexed job): the seeds whose position in the range is K mod N,
    /// e.g. `--shard 0/4`.
    #[arg(long)]
    shard: Option<String>,
    /// Minimise the failing fault plan (of --seed, --plan, or the first failing seed) and write it under
    /// --regressions-dir with the command that replays it.
    #[arg(long)]
    shrink: bool,
    /// Where --shrink writes minimal plans, e.g. `--regressions-dir corpus/regressions`.
    #[arg(long, default_value = "corpus/regressions")]
    regressions_dir: PathBuf,
    /// Run each seed twice and fail any whose trace hashes differ (madsim's MADSIM_TEST_CHECK_DETERMINISM).
    #[arg(long)]
    check_determinism: bool,
}

#[derive(Args)]
struct ShowArgs {
    /// The workflow template.
    template: PathBuf,
    /// The seed to show, e.g. `--seed 7`.
    #[arg(long, required_unless_present = "plan")]
    seed: Option<u64>,
    /// Show this fault plan file instead of a seed's.
    #[arg(long, conflicts_with = "seed")]
    plan: Option<PathBuf>,
}

#[derive(Args)]
struct PlanArgs {
    /// The workflow template.
    template: PathBuf,
    /// The seed whose plan to print, e.g. `--seed 7`.
    #[arg(long)]
    seed: u64,
}

#[derive(Args)]
struct BenchArgs {
    /// Templates to measure (default: the shipped split-brain and hpo templates).
    templates: Vec<PathBuf>,
    /// Seeds per measurement, e.g. `--seeds 2000`.
    #[arg(long, default_value_t = 2000)]
    seeds: u64,
    /// Thread counts to measure, comma-separated, e.g. `--jobs 1,2`.
    #[arg(long, default_value = "1,2", value_delimiter = ',')]
    jobs: Vec<usize>,
}

pub fn run(args: ScenarioArgs) -> Result<()> {
    let result = match args.command {
        ScenarioCommand::Run(args) => run_cmd(args),
        ScenarioCommand::Show(args) => show_cmd(args).map(|()| true),
        ScenarioCommand::Plan(args) => plan_cmd(args).map(|()| true),
        ScenarioCommand::Bench(args) => bench_cmd(args).map(|()| true),
    };
    let result = result.and_then(|passed| {
        crate::output::flush_stdout()?;
        Ok(passed)
    });
    match result {
        Ok(true) => Ok(()),
        Ok(false) => std::process::exit(EXIT_CHECKER_FAILED),
        Err(error) => {
            std::process::exit(crate::output::error_exit("error: ", &error, EXIT_BAD_INPUT))
        }
    }
}

/// Writes to stdout; a closed pipe comes back as an error that ends tandem quietly (see `output`).
fn print_out(text: &str) -> Result<()> {
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

fn load_template(path: &Path) -> Result<Template> {
    // The library error already names the file, the line and the key.
    tandem_scenarios::load(path).map_err(|e| anyhow::anyhow!("{e}"))
}

fn load_plan(template: &Template, path: &Path) -> Result<FaultPlan> {
    let text = read_input_text(path, InputKind::Plan)?;
    FaultPlan::parse(&path.display().to_string(), &text, &template.node_names)
        .map_err(|e| anyhow::anyhow!("{e}"))
}

fn parse_seeds(text: &str) -> Result<(u64, u64)> {
    let (start, end) = text
        .split_once("..")
        .with_context(|| format!("--seeds `{text}` is not START..END, e.g. 0..10000"))?;
    let start: u64 = start
        .trim()
        .parse()
        .with_context(|| format!("--seeds `{text}`: bad start"))?;
    let end: u64 = end
        .trim()
        .parse()
        .with_context(|| format!("--seeds `{text}`: bad end"))?;
    if end <= start {
        bail!("--seeds `{text}` is empty: END must be greater than START");
    }
    if end - start > 100_000_000 {
        bail!("--seeds `{text}` has more than 100,000,000 seeds; split it with --shard");
    }
    Ok((start, end))
}

fn parse_shard(text: &str) -> Result<(u64, u64)> {
    let (k, n) = text
        .split_once('/')
        .with_context(|| format!("--shard `{text}` is not K/N, e.g. 0/4"))?;
    let k: u64 = k
        .trim()
        .parse()
        .with_context(|| format!("--shard `{text}`: bad K"))?;
    let n: u64 = n
        .trim()
        .parse()
        .with_context(|| format!("--shard `{text}`: bad N"))?;
    if n == 0 || k >= n {
        bail!("--shard `{text}`: K must be in 0..N (0-based) and N at least 1");
    }
    Ok((k, n))
}

fn run_cmd(args: RunArgs) -> Result<bool> {
    let template = load_template(&args.template)?;
    let jobs = args.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    check_jobs(jobs)?;
    if let Some(plan_path) = &args.plan {
        let plan = load_plan(&template, plan_path)?;
        let report = runner::run_plan(&template, &plan, false);
        let outcome = SeedOutcome {
            report,
            nondeterministic: None,
        };
        let label = format!("plan {}", plan_path.display());
        let mut summary = runner::summarise(&template, &label, std::slice::from_ref(&outcome));
        for failure in &mut summary.failures {
            failure.reproduce = format!(
                "tandem scenario run {} --plan {}",
                template.path.display(),
                plan_path.display()
            );
        }
        print_out(&summary.render_text())?;
        write_reports(&args, &summary)?;
        if args.shrink && outcome.failed() {
            shrink_and_write(&template, &plan, &args.regressions_dir)?;
        }
        return Ok(summary.failed == 0);
    }
    let (seeds, label): (Vec<u64>, String) = match args.seed {
        Some(seed) => (vec![seed], seed.to_string()),
        None => {
            let (start, end) = parse_seeds(&args.seeds)?;
            let mut label = format!("{start}..{end}");
            let seeds: Vec<u64> = match &args.shard {
                Some(shard) => {
                    let (k, n) = parse_shard(shard)?;
                    label += &format!(" shard {k}/{n}");
                    (start..end).filter(|s| (s - start) % n == k).collect()
                }
                None => (start..end).collect(),
            };
            (seeds, label)
        }
    };
    let total = seeds.len();
    let show_progress = std::io::stderr().is_terminal() && total > 1;
    let step = (total / 200).max(1);
    let progress = move |done: usize| {
        if show_progress && (done % step == 0 || done == total) {
            let _ = write!(
                std::io::stderr(),
                "\r  {done}/{total} seeds ({}%)",
                done * 100 / total
            );
        }
    };
    let outcomes = runner::run_seeds(&template, &seeds, jobs, args.check_determinism, &progress)
        .map_err(|e| anyhow::anyhow!(e))?;
    if show_progress {
        crate::output::note!();
    }
    let summary = runner::summarise(&template, &label, &outcomes);
    print_out(&summary.render_text())?;
    write_reports(&args, &summary)?;
    if args.shrink {
        if let Some(failing) = outcomes.iter().find(|o| o.failed()) {
            let plan = plan_for_seed(&template, failing.report.seed);
            shrink_and_write(&template, &plan, &args.regressions_dir)?;
        }
    }
    Ok(summary.failed == 0)
}

fn write_reports(args: &RunArgs, summary: &runner::Summary) -> Result<()> {
    if let Some(path) = &args.json {
        std::fs::write(path, summary.render_json())
            .with_context(|| format!("cannot write the JSON report to {}", path.display()))?;
    }
    if let Some(path) = &args.junit {
        std::fs::write(path, summary.to_junit())
            .with_context(|| format!("cannot write the JUnit report to {}", path.display()))?;
    }
    Ok(())
}

fn shrink_and_write(template: &Template, plan: &FaultPlan, dir: &Path) -> Result<()> {
    let Some(shrunk) = runner::shrink(template, plan) else {
        print_out("\nshrink: the plan does not fail; nothing to shrink\n")?;
        return Ok(());
    };
    // Templates refuse names that are not plain file names; checked again here, as this is where a name with a `/`
    // or `..` would write outside --regressions-dir.
    let file_name = format!("{}-seed-{}.toml", template.name, plan.seed);
    if Path::new(&file_name).file_name() != Some(std::ffi::OsStr::new(&file_name))
        || file_name.starts_with('.')
    {
        bail!(
            "{}: the template name {:?} is not a plain file name; --shrink will not write outside {}",
            template.path.display(),
            template.name,
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(file_name);
    let replay = format!(
        "tandem scenario run {} --plan {}",
        template.path.display(),
        path.display()
    );
    let text = format!(
        "# Minimal fault plan found by --shrink ({} runs) from seed {} of {}: {} of {} events kept.\n# Fails: {}\n# Reproduce: {replay}\n{}",
        shrunk.runs,
        plan.seed,
        template.path.display(),
        shrunk.plan.events.len(),
        plan.events.len(),
        shrunk.checkers.join(", "),
        shrunk.plan.to_toml()
    );
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    print_out(&format!(
        "\nshrink: {} of {} events kept after {} runs; fails {}\n  wrote {}\n  reproduce: {replay}\n",
        shrunk.plan.events.len(),
        plan.events.len(),
        shrunk.runs,
        shrunk.checkers.join(", "),
        path.display()
    ))
}

fn show_cmd(args: ShowArgs) -> Result<()> {
    let template = load_template(&args.template)?;
    let plan = match (&args.plan, args.seed) {
        (Some(path), _) => load_plan(&template, path)?,
        (None, Some(seed)) => plan_for_seed(&template, seed),
        (None, None) => bail!("give --seed N or --plan FILE"),
    };
    let report = runner::run_plan(&template, &plan, true);
    let mut out = String::new();
    out += &format!(
        "template {} seed {}: {} plan events; network: {}\n",
        template.name,
        plan.seed,
        plan.events.len(),
        plan.network
    );
    out += "\ntimeline:\n";
    for line in &report.timeline {
        out += line;
        out.push('\n');
    }
    out += &format!(
        "\n{} events, trace hash {:016x}\n",
        report.events_count, report.trace_hash
    );
    for check in &report.model.checks {
        match &check.first {
            Some(first) => {
                out += &format!(
                    "  FAIL {} ({} violations): {first}\n",
                    check.name, check.violations
                )
            }
            None => out += &format!("  ok   {}\n", check.name),
        }
    }
    if let Some(reason) = &report.stopped {
        out += &format!("  FAIL limits: {reason}\n");
    }
    print_out(&out)
}

fn plan_cmd(args: PlanArgs) -> Result<()> {
    let template = load_template(&args.template)?;
    print_out(&plan_for_seed(&template, args.seed).to_toml())
}

/// Most worker threads a scenario command starts.
pub const JOBS_MAX: usize = 1024;
/// Most seeds one `bench` measurement runs (its seed list is held in memory).
pub const BENCH_SEEDS_MAX: u64 = 10_000_000;

fn check_jobs(jobs: usize) -> Result<()> {
    if jobs == 0 || jobs > JOBS_MAX {
        bail!("--jobs {jobs}: must be between 1 and {JOBS_MAX}");
    }
    Ok(())
}

fn bench_cmd(args: BenchArgs) -> Result<()> {
    for &jobs in &args.jobs {
        check_jobs(jobs)?;
    }
    if args.seeds == 0 || args.seeds > BENCH_SEEDS_MAX {
        bail!(
            "--seeds {}: must be between 1 and {BENCH_SEEDS_MAX}",
            args.seeds
        );
    }
    let templates = if args.templates.is_empty() {
        vec![
            PathBuf::from("scenarios/templates/split-brain.toml"),
            PathBuf::from("scenarios/templates/hpo.toml"),
        ]
    } else {
        args.templates.clone()
    };
    print_out(&format!(
        "{:<32} {:>5} {:>7} {:>9} {:>10} {:>15} {:>13}\n",
        "template", "jobs", "seeds", "seconds", "seeds/s", "seeds/s/core", "events/s"
    ))?;
    for path in &templates {
        let template = load_template(path)?;
        for &jobs in &args.jobs {
            let seeds: Vec<u64> = (0..args.seeds).collect();
            // Benchmarks measure wall-clock speed; this is the one place the scenario CLI reads the host clock, and it
            // reaches no simulation path.
            #[allow(clippy::disallowed_methods)]
            let started = std::time::Instant::now();
            let outcomes = runner::run_seeds(&template, &seeds, jobs, false, &|_| {})
                .map_err(|e| anyhow::anyhow!(e))?;
            let seconds = started.elapsed().as_secs_f64();
            let events: u64 = outcomes.iter().map(|o| o.report.events_count).sum();
            let rate = args.seeds as f64 / seconds;
            print_out(&format!(
                "{:<32} {:>5} {:>7} {:>9.3} {:>10.0} {:>15.0} {:>13.0}\n",
                template.name,
                jobs,
                args.seeds,
                seconds,
                rate,
                rate / jobs as f64,
                events as f64 / seconds
            ))?;
        }
    }
    Ok(())
}
