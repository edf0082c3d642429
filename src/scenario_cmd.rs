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
use tandem_scenarios::report::{self, JunitCases, Summary};
use tandem_scenarios::runner::{self, SeedOutcome};
use tandem_scenarios::{picture, timeline};
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
    /// Merge the JSON reports of shards (`run --shard K/N --json ...`) into one report, exactly the one the unsharded
    /// run writes: prints its summary, writes --json and --junit, exits 1 when a merged seed failed.
    ///
    /// Example:
    ///   tandem scenario merge shard-0.json shard-1.json shard-2.json shard-3.json --json all.json --junit all.xml
    #[command(verbatim_doc_comment)]
    Merge(MergeArgs),
    /// List the scenario models (nodes, checkers, variants) and the templates in a directory.
    ///
    /// Example: tandem scenario list scenarios/templates
    #[command(verbatim_doc_comment)]
    List(ListArgs),
}

#[derive(Args)]
struct ListArgs {
    /// The directory whose `.toml` templates to list.
    #[arg(default_value = "scenarios/templates")]
    dir: PathBuf,
}

#[derive(Args)]
struct RunArgs {
    /// The workflow template (a TOML file, e.g. scenarios/templates/split-brain.toml).
    template: PathBuf,
    /// Seeds to run: START..END (END excluded), e.g. `--seeds 0..10000`; `@FILE` for the seeds listed in FILE (one per
    /// line, as --seeds-out writes them); or `random` with --time-budget, to draw seeds from the host's entropy until
    /// the budget is spent (the way VOPR is left running), e.g. `--seeds random --time-budget 10m --seeds-out s.txt`.
    #[arg(long, default_value = "0..100", conflicts_with_all = ["seed", "plan"])]
    seeds: String,
    /// With `--seeds random`: how long to explore, as Ns, Nm or Nh, e.g. `--time-budget 10m`.
    #[arg(long)]
    time_budget: Option<String>,
    /// Write the seeds that ran, one per line, here (required with `--seeds random`); `--seeds @FILE` runs them
    /// again, e.g. `--seeds-out seeds.txt`.
    #[arg(long)]
    seeds_out: Option<PathBuf>,
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
    /// Also write a JUnit XML report here, e.g. `--junit junit.xml`.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// JUnit test cases: one per `checker` (failing when any seed failed it) or one per `seed` (what CI dashboards
    /// count and retry; the failure message holds the reproduce line), e.g. `--junit-cases seed`.
    #[arg(long, value_enum, default_value = "checker")]
    junit_cases: JunitCasesArg,
    /// Run only shard K of N (0-based, like a Kubernetes indexed job): the seeds whose position in the range is K mod N,
    /// e.g. `--shard 0/4`.
    #[arg(long)]
    shard: Option<String>,
    /// Minimise the failing fault plan (of --seed, --plan, or the first failing seed) and write it under
    /// --regressions-dir with the command that replays it.
    #[arg(long)]
    shrink: bool,
    /// Where --shrink writes minimal plans (default: tandem-regressions in the system's temporary directory, so an
    /// installed tandem never writes into a source tree unasked), e.g. `--regressions-dir corpus/regressions`.
    #[arg(long)]
    regressions_dir: Option<PathBuf>,
    /// Run each seed twice and fail any whose trace hashes differ (madsim's MADSIM_TEST_CHECK_DETERMINISM).
    #[arg(long)]
    check_determinism: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum JunitCasesArg {
    Checker,
    Seed,
}

impl JunitCasesArg {
    fn cases(self) -> JunitCases {
        match self {
            JunitCasesArg::Checker => JunitCases::Checkers,
            JunitCasesArg::Seed => JunitCases::Seeds,
        }
    }
}

#[derive(Args)]
struct MergeArgs {
    /// The JSON reports to merge (written by `run --json` with this version of tandem), e.g. `shard-*.json`.
    #[arg(required = true)]
    reports: Vec<PathBuf>,
    /// Write the merged JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the merged JUnit XML report here.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// JUnit test cases: one per `checker` or one per `seed`.
    #[arg(long, value_enum, default_value = "checker")]
    junit_cases: JunitCasesArg,
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
    /// Also draw the run as a self-contained SVG picture here (one lane per node, messages as arrows, faults
    /// shaded, the violation marked; open it in a browser), e.g. `--svg run.svg`.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Show only what concerns these nodes (comma-separated), e.g. `--node master,worker-1`.
    #[arg(long, value_delimiter = ',')]
    node: Vec<String>,
    /// Show only from this virtual time on, in milliseconds, e.g. `--from-ms 19000`.
    #[arg(long)]
    from_ms: Option<f64>,
    /// Show only up to this virtual time, in milliseconds, e.g. `--to-ms 20000`.
    #[arg(long)]
    to_ms: Option<f64>,
    /// Which messages to show: `all`, `none`, or kinds (comma-separated), e.g. `--messages Lease,Complete`.
    #[arg(long, default_value = "all")]
    messages: String,
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
        ScenarioCommand::Merge(args) => merge_cmd(args),
        ScenarioCommand::List(args) => list_cmd(args).map(|()| true),
    };
    let result = result.and_then(|passed| {
        crate::output::flush_stdout()?;
        Ok(passed)
    });
    match result {
        Ok(true) => Ok(()),
        Ok(false) => std::process::exit(EXIT_CHECKER_FAILED),
        Err(error) => std::process::exit(crate::output::error_exit(
            "tandem: error: ",
            &error,
            EXIT_BAD_INPUT,
        )),
    }
}

/// Writes to stdout; a closed pipe comes back as an error that ends tandem quietly (see `output`).
fn print_out(text: &str) -> Result<()> {
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

/// The models with their nodes, checkers and variants, then each template of `dir` (sorted by file name) with its model,
/// variant and description. A template that does not load is an error naming it.
fn list_cmd(args: ListArgs) -> Result<()> {
    use tandem_scenarios::models::{ModelKind, ModelParams};
    let mut text = String::from("models:\n");
    for kind in ModelKind::ALL {
        let params = ModelParams::defaults(kind);
        text.push_str(&format!(
            "  {:<12} nodes {}\n  {:<12} checkers {}\n  {:<12} variants {}\n",
            kind.name(),
            params.node_names().join(", "),
            "",
            params.checker_names().join(", "),
            "",
            kind.variants().join(", ")
        ));
    }
    let entries = std::fs::read_dir(&args.dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the template directory {}: {e}",
            args.dir.display()
        )
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    paths.sort();
    text.push_str(&format!("templates in {}:\n", args.dir.display()));
    for path in paths {
        let template = load_template(&path)?;
        text.push_str(&format!(
            "  {:<36} {:<12} {:<22} {}\n",
            template.name,
            template.model.name(),
            template.params.variant(),
            template.description
        ));
    }
    print_out(&text)
}

fn load_template(path: &Path) -> Result<Template> {
    // The library error already names the file, the line and the key.
    tandem_scenarios::load(path).map_err(|e| anyhow::anyhow!("{e}"))
}

fn load_plan(template: &Template, path: &Path) -> Result<FaultPlan> {
    let text = read_input_text(path, InputKind::Plan)?;
    let plan = FaultPlan::parse(&path.display().to_string(), &text, &template.node_names)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // Running a broken variant's regression plan against the fixed template is how a fix is checked, so another
    // template's plan is allowed (its node names were checked above), with a warning in case it was a slip.
    if plan.template != template.name {
        crate::output::note!(
            "tandem: warning: the plan {} was made from template `{}`, and runs here on template `{}` ({})",
            path.display(),
            plan.template,
            template.name,
            template.path.display()
        );
    }
    Ok(plan)
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
        for record in &mut summary.records {
            record.reproduce = format!(
                "tandem scenario run {} --plan {}",
                template.path.display(),
                plan_path.display()
            );
        }
        print_out(&summary.render_text())?;
        write_reports(&args.json, &args.junit, args.junit_cases, &summary)?;
        if args.shrink && outcome.failed() {
            shrink_and_write(&template, &plan, &regressions_dir(&args))?;
        }
        return Ok(summary.failed == 0);
    }
    let (seeds, outcomes, label) = match (args.seed, args.seeds.as_str()) {
        (None, "random") => explore(&args, &template, jobs)?,
        _ => {
            let (seeds, label) = chosen_seeds(&args)?;
            let outcomes = run_with_progress(&template, &seeds, jobs, args.check_determinism)?;
            (seeds, outcomes, label)
        }
    };
    if let Some(path) = &args.seeds_out {
        let text: String = seeds.iter().map(|s| format!("{s}\n")).collect();
        std::fs::write(path, text)
            .with_context(|| format!("cannot write the seeds to {}", path.display()))?;
    }
    let summary = runner::summarise(&template, &label, &outcomes);
    print_out(&summary.render_text())?;
    write_reports(&args.json, &args.junit, args.junit_cases, &summary)?;
    if args.shrink {
        if let Some(failing) = outcomes.iter().find(|o| o.failed()) {
            let plan = plan_for_seed(&template, failing.report.seed);
            shrink_and_write(&template, &plan, &regressions_dir(&args))?;
        }
    }
    Ok(summary.failed == 0)
}

/// The seeds of `--seed`, `--seeds START..END` or `--seeds @FILE`, cut to `--shard`, and their label.
fn chosen_seeds(args: &RunArgs) -> Result<(Vec<u64>, String)> {
    if let Some(seed) = args.seed {
        return Ok((vec![seed], seed.to_string()));
    }
    if args.time_budget.is_some() {
        bail!("--time-budget goes with --seeds random");
    }
    let (all, mut label) = match args.seeds.strip_prefix('@') {
        Some(file) => {
            let seeds = read_seeds_file(Path::new(file))?;
            let label = report::seeds_label(&seeds);
            (seeds, label)
        }
        None => {
            let (start, end) = parse_seeds(&args.seeds)?;
            (
                (start..end).collect::<Vec<u64>>(),
                format!("{start}..{end}"),
            )
        }
    };
    let Some(shard) = &args.shard else {
        return Ok((all, label));
    };
    let (k, n) = parse_shard(shard)?;
    label += &format!(" shard {k}/{n}");
    let seeds = all
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i as u64 % n == k)
        .map(|(_, s)| s)
        .collect();
    Ok((seeds, label))
}

/// Most seeds a seeds file may list.
const SEEDS_FILE_MAX: usize = 100_000_000;

fn read_seeds_file(path: &Path) -> Result<Vec<u64>> {
    let text = read_input_text(path, InputKind::Seeds)?;
    let mut seeds = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let seed = line.parse::<u64>().with_context(|| {
            format!(
                "{}:{}: `{line}` is not a seed (one unsigned integer per line)",
                path.display(),
                n + 1
            )
        })?;
        seeds.push(seed);
        if seeds.len() > SEEDS_FILE_MAX {
            bail!("{}: more than {SEEDS_FILE_MAX} seeds", path.display());
        }
    }
    if seeds.is_empty() {
        bail!("{}: lists no seeds", path.display());
    }
    Ok(seeds)
}

/// `--time-budget 10m`: seconds.
fn parse_budget(text: &str) -> Result<u64> {
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => bail!("--time-budget `{text}`: give a number with s, m or h, e.g. 90s, 10m, 2h"),
    };
    let n: u64 = number
        .parse()
        .with_context(|| format!("--time-budget `{text}`: bad number"))?;
    if n == 0 || n > 1_000_000 {
        bail!("--time-budget `{text}`: must be between 1 and 1,000,000 {unit}");
    }
    Ok(n * scale)
}

/// `--seeds random --time-budget T`: batches of seeds drawn from the host's entropy until T has passed. The seeds are
/// written to --seeds-out, so `--seeds @FILE` runs exactly this exploration again (results identical: each run is a
/// function of its seed).
fn explore(
    args: &RunArgs,
    template: &tandem_scenarios::Template,
    jobs: usize,
) -> Result<(Vec<u64>, Vec<SeedOutcome>, String)> {
    let budget = parse_budget(
        args.time_budget
            .as_deref()
            .context("--seeds random needs --time-budget, e.g. --time-budget 10m")?,
    )?;
    if args.seeds_out.is_none() {
        bail!("--seeds random needs --seeds-out FILE, to record the seeds it draws (so that `--seeds @FILE` reruns them)");
    }
    if args.shard.is_some() {
        bail!("--shard does not go with --seeds random: run one exploration per machine instead");
    }
    let batch = jobs * 64;
    let mut seeds: Vec<u64> = Vec::new();
    let mut outcomes = Vec::new();
    // Exploration is paced by the wall clock and drawn from the host's entropy: the CLI's choice of which seeds to
    // run, outside every simulation path; each run stays a pure function of its seed.
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    while started.elapsed().as_secs() < budget && seeds.len() < SEEDS_FILE_MAX {
        let drawn = host_random_seeds(batch)?;
        outcomes.extend(
            runner::run_seeds(template, &drawn, jobs, args.check_determinism, &|_| {})
                .map_err(|e| anyhow::anyhow!(e))?,
        );
        seeds.extend(drawn);
        let failed = outcomes.iter().filter(|o| o.failed()).count();
        crate::output::note!(
            "tandem: explored {} seeds in {}s, {failed} failed",
            seeds.len(),
            started.elapsed().as_secs()
        );
    }
    let label = format!("random ({} seeds)", seeds.len());
    Ok((seeds, outcomes, label))
}

/// Seeds from the host's entropy (/dev/urandom): only `--seeds random` draws them, and it records them.
fn host_random_seeds(count: usize) -> Result<Vec<u64>> {
    use std::io::Read;
    let mut bytes = vec![0u8; count * 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom for --seeds random")?;
    Ok(bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect())
}

/// Runs the seeds with a progress report on stderr: a live line on a terminal, and otherwise (a CI log) one line at
/// each tenth of the run.
fn run_with_progress(
    template: &tandem_scenarios::Template,
    seeds: &[u64],
    jobs: usize,
    check_determinism: bool,
) -> Result<Vec<SeedOutcome>> {
    let total = seeds.len();
    let terminal = std::io::stderr().is_terminal();
    let step = if terminal {
        (total / 200).max(1)
    } else {
        (total / 10).max(1)
    };
    let progress = move |done: usize| {
        if total < 2 || (done % step != 0 && done != total) {
            return;
        }
        let pct = done * 100 / total;
        if terminal {
            let _ = write!(std::io::stderr(), "\r  {done}/{total} seeds ({pct}%)");
        } else if total >= 1000 {
            crate::output::note!("tandem: {done}/{total} seeds ({pct}%)");
        }
    };
    let outcomes = runner::run_seeds(template, seeds, jobs, check_determinism, &progress)
        .map_err(|e| anyhow::anyhow!(e))?;
    if terminal && total > 1 {
        crate::output::note!();
    }
    Ok(outcomes)
}

fn write_reports(
    json: &Option<PathBuf>,
    junit: &Option<PathBuf>,
    cases: JunitCasesArg,
    summary: &Summary,
) -> Result<()> {
    if let Some(path) = json {
        std::fs::write(path, summary.render_json())
            .with_context(|| format!("cannot write the JSON report to {}", path.display()))?;
    }
    if let Some(path) = junit {
        std::fs::write(path, summary.to_junit(cases.cases()))
            .with_context(|| format!("cannot write the JUnit report to {}", path.display()))?;
    }
    Ok(())
}

fn merge_cmd(args: MergeArgs) -> Result<bool> {
    let mut reports = Vec::new();
    for path in &args.reports {
        let text = read_input_text(path, InputKind::Report)?;
        reports.push((path.display().to_string(), text));
    }
    let summary = report::merge(&reports).map_err(|e| anyhow::anyhow!(e))?;
    print_out(&summary.render_text())?;
    write_reports(&args.json, &args.junit, args.junit_cases, &summary)?;
    Ok(summary.failed == 0)
}

fn regressions_dir(args: &RunArgs) -> PathBuf {
    args.regressions_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("tandem-regressions"))
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
    let (filter, lanes) = show_filter(&args, &template)?;
    let mut report = runner::run_plan(&template, &plan, true);
    let violations: Vec<(String, u64, String)> = report
        .model
        .checks
        .iter()
        .filter_map(|c| Some((c.name.to_string(), c.first_at_ns?, c.first.clone()?)))
        .chain(
            report
                .stopped
                .iter()
                .map(|r| ("limits".to_string(), report.end_ns, r.clone())),
        )
        .collect();
    let entries = timeline::with_violations(std::mem::take(&mut report.timeline), &violations);
    let shown: Vec<timeline::Entry> = entries.into_iter().filter(|e| filter.keeps(e)).collect();
    let mut out = format!(
        "template {} seed {}: {} plan events; network: {}\n\ntimeline:\n",
        template.name,
        plan.seed,
        plan.events.len(),
        plan.network
    );
    out += &timeline::render_text(&shown, &template.node_names);
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
    if let Some(path) = &args.svg {
        let title = format!(
            "{} seed {} ({})",
            template.name,
            plan.seed,
            template.path.display()
        );
        let svg = picture::render_svg(&title, &shown, &template.node_names, &lanes, report.end_ns);
        std::fs::write(path, svg)
            .with_context(|| format!("cannot write the picture to {}", path.display()))?;
        out += &format!("picture: {}\n", path.display());
    }
    print_out(&out)
}

/// The filter of `show` and the lanes to draw, from --node, --from-ms, --to-ms and --messages.
fn show_filter(
    args: &ShowArgs,
    template: &tandem_scenarios::Template,
) -> Result<(timeline::Filter, Vec<usize>)> {
    let names = &template.node_names;
    let mut lanes = Vec::new();
    for name in &args.node {
        let node = names.iter().position(|n| n == name).with_context(|| {
            format!(
                "--node {name}: the template's nodes are {}",
                names.join(", ")
            )
        })?;
        lanes.push(node);
    }
    let nodes = (!lanes.is_empty()).then(|| lanes.clone());
    if lanes.is_empty() {
        lanes = (0..names.len()).collect();
    }
    let ns = |ms: Option<f64>, flag: &str| -> Result<Option<u64>> {
        match ms {
            Some(ms) if !(0.0..=86_400_000.0).contains(&ms) => {
                bail!("{flag} {ms}: must be between 0 and 86400000 (a day)")
            }
            Some(ms) => Ok(Some((ms * 1e6) as u64)),
            None => Ok(None),
        }
    };
    let message_kinds = match args.messages.as_str() {
        "all" => None,
        "none" => Some(Vec::new()),
        kinds => Some(kinds.split(',').map(|k| k.trim().to_string()).collect()),
    };
    let filter = timeline::Filter {
        nodes,
        from_ns: ns(args.from_ms, "--from-ms")?,
        to_ns: ns(args.to_ms, "--to-ms")?,
        message_kinds,
    };
    Ok((filter, lanes))
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
