//! The multi-seed runner: runs (template, seed) or (template, plan), many seeds in parallel, aggregates the results
//! into a summary, renders it as text, JSON and JUnit XML, and shrinks failing fault plans.
//!
//! Invariants: one run is single-threaded; seeds run in parallel with rayon and their results are collected in seed
//! order, so every output (summary, JSON, JUnit) is byte-identical whatever the thread count. Nothing here reads the host
//! clock; the CLI's progress line is the only place that may, and it lives in the binary.
//! Every failure carries the one-line command that reproduces it.

use crate::kernel::Limits;
use crate::models::{hpo, simulate, split_brain, ModelParams, RunReport};
use crate::plan::{plan_for_seed, FaultPlan};
use crate::template::Template;
use rayon::prelude::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;

pub const REPORT_FORMAT: &str = "tandem-scenario-report";
pub const REPORT_VERSION: u32 = 1;
/// Failures listed one by one in the summary and reports; the counts stay exact beyond it.
pub const FAILURES_LISTED_MAX: usize = 1_000;
/// Runs one `--shrink` may spend.
pub const SHRINK_RUNS_MAX: usize = 2_000;

/// Runs one plan of a template.
pub fn run_plan(template: &Template, plan: &FaultPlan, record_timeline: bool) -> RunReport {
    let names = template.node_names.clone();
    let limits = Limits::default();
    match &template.params {
        ModelParams::SplitBrain(p) => simulate(
            split_brain::SplitBrain::new(p.clone()),
            names,
            plan,
            limits,
            record_timeline,
        ),
        ModelParams::Hpo(p) => simulate(
            hpo::Hpo::new(p.clone()),
            names,
            plan,
            limits,
            record_timeline,
        ),
    }
}

/// Runs (template, seed).
pub fn run_seed(template: &Template, seed: u64, record_timeline: bool) -> RunReport {
    run_plan(template, &plan_for_seed(template, seed), record_timeline)
}

/// The outcome of one seed in a multi-seed run.
#[derive(Clone, Debug)]
pub struct SeedOutcome {
    pub report: RunReport,
    /// Set by `--check-determinism` when the second run hashed differently.
    pub nondeterministic: Option<(u64, u64)>,
}

impl SeedOutcome {
    pub fn failed(&self) -> bool {
        self.report.failed() || self.nondeterministic.is_some()
    }

    pub fn failed_checkers(&self) -> Vec<&'static str> {
        let mut names = self.report.failed_checkers();
        if self.nondeterministic.is_some() {
            names.push("determinism");
        }
        names
    }
}

/// Runs every seed on a pool of `jobs` threads. `progress` is called after each seed with the count done so far
/// (from any thread; it must only display).
pub fn run_seeds(
    template: &Template,
    seeds: &[u64],
    jobs: usize,
    check_determinism: bool,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Vec<SeedOutcome>, String> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs.max(1))
        .build()
        .map_err(|e| format!("cannot start {jobs} worker threads: {e}"))?;
    let done = std::sync::atomic::AtomicUsize::new(0);
    Ok(pool.install(|| {
        seeds
            .par_iter()
            .map(|&seed| {
                let report = run_seed(template, seed, false);
                let nondeterministic = if check_determinism {
                    let again = run_seed(template, seed, false);
                    (again.trace_hash != report.trace_hash)
                        .then_some((report.trace_hash, again.trace_hash))
                } else {
                    None
                };
                let count = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                progress(count);
                SeedOutcome {
                    report,
                    nondeterministic,
                }
            })
            .collect()
    }))
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[derive(Clone, Debug, PartialEq)]
pub struct MetricSummary {
    pub samples: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Clone, Debug)]
pub struct FailureLine {
    pub seed: u64,
    pub checkers: Vec<&'static str>,
    pub first: Vec<(&'static str, String)>,
    pub reproduce: String,
}

/// Everything the summary, the JSON report and the JUnit report show.
#[derive(Clone, Debug)]
pub struct Summary {
    pub template_name: String,
    pub template_path: String,
    pub model: &'static str,
    pub variant: String,
    pub seeds_label: String,
    pub seed_count: usize,
    pub passed: usize,
    pub failed: usize,
    /// Checker -> seeds that failed it (in seed order).
    pub checkers: BTreeMap<&'static str, Vec<u64>>,
    pub metrics: BTreeMap<&'static str, MetricSummary>,
    /// Coverage property -> (seeds that reached it, total times reached).
    pub coverage: BTreeMap<&'static str, (usize, u64)>,
    pub failures: Vec<FailureLine>,
    pub events_total: u64,
}

pub fn reproduce_command(template: &Template, seed: u64) -> String {
    format!(
        "tandem scenario run {} --seed {seed}",
        template.path.display()
    )
}

pub fn summarise(template: &Template, seeds_label: &str, outcomes: &[SeedOutcome]) -> Summary {
    let mut checkers: BTreeMap<&'static str, Vec<u64>> = template
        .params
        .checker_names()
        .into_iter()
        .map(|name| (name, Vec::new()))
        .collect();
    let mut samples: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    let mut coverage: BTreeMap<&'static str, (usize, u64)> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut failed = 0;
    let mut events_total = 0;
    for outcome in outcomes {
        let report = &outcome.report;
        events_total += report.events_count;
        for name in outcome.failed_checkers() {
            checkers.entry(name).or_default().push(report.seed);
        }
        for (name, values) in &report.model.metrics {
            samples
                .entry(name)
                .or_default()
                .extend(values.iter().copied());
        }
        for &(name, count) in &report.model.coverage {
            let entry = coverage.entry(name).or_default();
            entry.0 += usize::from(count > 0);
            entry.1 += count;
        }
        if outcome.failed() {
            failed += 1;
            if failures.len() < FAILURES_LISTED_MAX {
                let mut first: Vec<(&'static str, String)> = report
                    .model
                    .checks
                    .iter()
                    .filter_map(|c| c.first.clone().map(|text| (c.name, text)))
                    .collect();
                if let Some(reason) = &report.stopped {
                    first.push(("limits", reason.clone()));
                }
                if let Some((a, b)) = outcome.nondeterministic {
                    first.push(("determinism", format!("trace hash {a:016x} then {b:016x}")));
                }
                failures.push(FailureLine {
                    seed: report.seed,
                    checkers: outcome.failed_checkers(),
                    first,
                    reproduce: reproduce_command(template, report.seed),
                });
            }
        }
    }
    let metrics = samples
        .into_iter()
        .map(|(name, mut values)| {
            values.sort_by(f64::total_cmp);
            let summary = MetricSummary {
                samples: values.len(),
                p50: percentile(&values, 50.0),
                p99: percentile(&values, 99.0),
                max: values.last().copied().unwrap_or(0.0),
            };
            (name, summary)
        })
        .collect();
    Summary {
        template_name: template.name.clone(),
        template_path: template.path.display().to_string(),
        model: template.model.name(),
        variant: template.params.variant().to_string(),
        seeds_label: seeds_label.to_string(),
        seed_count: outcomes.len(),
        passed: outcomes.len() - failed,
        failed,
        checkers,
        metrics,
        coverage,
        failures,
        events_total,
    }
}

impl Summary {
    /// The human summary: a table of checkers, metrics and coverage, then one reproduce line per failure.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "template {} (model {}, variant {}), seeds {}: {} runs, {} passed, {} failed",
            self.template_name,
            self.model,
            self.variant,
            self.seeds_label,
            self.seed_count,
            self.passed,
            self.failed
        );
        let _ = writeln!(
            out,
            "\n{:<44} {:>10}  first failing seed",
            "checker", "failures"
        );
        for (name, seeds) in &self.checkers {
            let first = seeds
                .first()
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into());
            let _ = writeln!(out, "{name:<44} {:>10}  {first}", seeds.len());
        }
        let _ = writeln!(
            out,
            "\n{:<44} {:>10} {:>12} {:>12} {:>12}",
            "metric", "samples", "p50", "p99", "max"
        );
        for (name, m) in &self.metrics {
            let _ = writeln!(
                out,
                "{name:<44} {:>10} {:>12.3} {:>12.3} {:>12.3}",
                m.samples, m.p50, m.p99, m.max
            );
        }
        let _ = writeln!(out, "\n{:<44} {:>10} {:>12}", "coverage", "seeds", "times");
        for (name, (seeds, total)) in &self.coverage {
            let _ = writeln!(out, "{name:<44} {seeds:>10} {total:>12}");
        }
        if !self.failures.is_empty() {
            let _ = writeln!(out, "\nfailures (one reproduce line each):");
            for failure in &self.failures {
                let what = failure
                    .first
                    .first()
                    .map(|(name, text)| format!("{name}: {text}"))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "  seed {} [{}] {}",
                    failure.seed,
                    failure.checkers.join(", "),
                    what
                );
                let _ = writeln!(out, "    reproduce: {}", failure.reproduce);
            }
            if self.failed > self.failures.len() {
                let _ = writeln!(
                    out,
                    "  ... and {} more failing seeds",
                    self.failed - self.failures.len()
                );
            }
        }
        out
    }

    pub fn to_json(&self) -> Value {
        let checkers: serde_json::Map<String, Value> = self
            .checkers
            .iter()
            .map(|(name, seeds)| {
                (name.to_string(), json!({ "failed_seeds": seeds.len(), "first_seeds": seeds.iter().take(10).collect::<Vec<_>>() }))
            })
            .collect();
        let metrics: serde_json::Map<String, Value> = self
            .metrics
            .iter()
            .map(|(name, m)| {
                (
                    name.to_string(),
                    json!({ "samples": m.samples, "p50": m.p50, "p99": m.p99, "max": m.max }),
                )
            })
            .collect();
        let coverage: serde_json::Map<String, Value> = self
            .coverage
            .iter()
            .map(|(name, (seeds, total))| {
                (
                    name.to_string(),
                    json!({ "seeds_reached": seeds, "times": total }),
                )
            })
            .collect();
        let failures: Vec<Value> = self
            .failures
            .iter()
            .map(|f| {
                let first: serde_json::Map<String, Value> =
                    f.first.iter().map(|(name, text)| (name.to_string(), Value::String(text.clone()))).collect();
                json!({ "seed": f.seed, "checkers": f.checkers, "first": first, "reproduce": f.reproduce })
            })
            .collect();
        json!({
            "format": REPORT_FORMAT,
            "version": REPORT_VERSION,
            "template": { "name": self.template_name, "path": self.template_path, "model": self.model, "variant": self.variant },
            "seeds": self.seeds_label,
            "runs": self.seed_count,
            "passed": self.passed,
            "failed": self.failed,
            "events": self.events_total,
            "checkers": checkers,
            "metrics": metrics,
            "coverage": coverage,
            "failures": failures,
        })
    }

    /// The JSON report as pretty-printed text with a final newline (keys sorted: serde_json's map is a BTreeMap).
    pub fn render_json(&self) -> String {
        serde_json::to_string_pretty(&self.to_json()).expect("a JSON value always renders") + "\n"
    }

    /// JUnit XML: one test suite for the template, one test case per checker (failing when any seed failed it).
    pub fn to_junit(&self) -> String {
        let mut out = String::new();
        let failing_checkers = self
            .checkers
            .values()
            .filter(|seeds| !seeds.is_empty())
            .count();
        let _ = writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
        let _ = writeln!(
            out,
            r#"<testsuites name="tandem-scenarios" tests="{}" failures="{failing_checkers}">"#,
            self.checkers.len()
        );
        let _ = writeln!(
            out,
            r#"  <testsuite name="{}" tests="{}" failures="{failing_checkers}" errors="0" skipped="0">"#,
            xml_escape(&self.template_name),
            self.checkers.len()
        );
        let _ = writeln!(out, "    <properties>");
        for (name, value) in [
            ("format", format!("{REPORT_FORMAT}/junit")),
            ("version", REPORT_VERSION.to_string()),
            ("model", self.model.to_string()),
            ("variant", self.variant.clone()),
            ("seeds", self.seeds_label.clone()),
            ("runs", self.seed_count.to_string()),
        ] {
            let _ = writeln!(
                out,
                r#"      <property name="{name}" value="{}"/>"#,
                xml_escape(&value)
            );
        }
        let _ = writeln!(out, "    </properties>");
        for (name, seeds) in &self.checkers {
            let classname = format!("scenario.{}", self.template_name);
            let _ = write!(
                out,
                r#"    <testcase classname="{}" name="{}""#,
                xml_escape(&classname),
                xml_escape(name)
            );
            if seeds.is_empty() {
                let _ = writeln!(out, "/>");
                continue;
            }
            let _ = writeln!(out, ">");
            let mut body = String::new();
            for failure in self
                .failures
                .iter()
                .filter(|f| f.checkers.contains(name))
                .take(20)
            {
                let detail = failure
                    .first
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, t)| t.as_str())
                    .unwrap_or("");
                let _ = writeln!(
                    body,
                    "seed {}: {}\nreproduce: {}",
                    failure.seed, detail, failure.reproduce
                );
            }
            let _ = writeln!(
                out,
                r#"      <failure message="{} of {} seeds failed {}" type="checker">{}</failure>"#,
                seeds.len(),
                self.seed_count,
                xml_escape(name),
                xml_escape(&body)
            );
            let _ = writeln!(out, "    </testcase>");
        }
        let _ = writeln!(out, "  </testsuite>\n</testsuites>");
        out
    }
}

fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' && c != '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// The result of shrinking.
pub struct Shrunk {
    pub plan: FaultPlan,
    pub runs: usize,
    pub checkers: Vec<&'static str>,
}

/// Minimises a failing plan while it still fails at least one of the checkers it first failed: drop events from the
/// back (proptest's state-machine shrinking order), then halve durations, until nothing changes or the run budget is
/// spent. `start` events are kept, since without them nothing runs.
pub fn shrink(template: &Template, plan: &FaultPlan) -> Option<Shrunk> {
    let first = run_plan(template, plan, false);
    let target = first.failed_checkers();
    if target.is_empty() {
        return None;
    }
    let still_fails = |candidate: &FaultPlan| -> bool {
        run_plan(template, candidate, false)
            .failed_checkers()
            .iter()
            .any(|c| target.contains(c))
    };
    let mut best = plan.clone();
    let mut runs = 1;
    let mut changed = true;
    while changed && runs < SHRINK_RUNS_MAX {
        changed = false;
        let mut index = best.events.len();
        while index > 0 && runs < SHRINK_RUNS_MAX {
            index -= 1;
            if best.events[index].action == Some(crate::plan::ActionKind::Start) {
                continue;
            }
            let mut candidate = best.clone();
            candidate.events.remove(index);
            runs += 1;
            if still_fails(&candidate) {
                best = candidate;
                changed = true;
            }
        }
        for index in 0..best.events.len() {
            if runs >= SHRINK_RUNS_MAX {
                break;
            }
            let Some(duration) = best.events[index].duration_ms else {
                continue;
            };
            if duration <= 1 {
                continue;
            }
            let mut candidate = best.clone();
            candidate.events[index].duration_ms = Some(duration / 2);
            runs += 1;
            if still_fails(&candidate) {
                best = candidate;
                changed = true;
            }
        }
    }
    let checkers = run_plan(template, &best, false).failed_checkers();
    Some(Shrunk {
        plan: best,
        runs,
        checkers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn template(name: &str) -> Template {
        crate::template::load(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("templates")
                .join(name),
        )
        .unwrap()
    }

    fn first_failure(name: &str, checker: &str) -> Option<u64> {
        let t = template(name);
        let seeds: Vec<u64> = (0..1_000).collect();
        let outcomes = run_seeds(&t, &seeds, 2, false, &|_| {}).unwrap();
        outcomes
            .iter()
            .find(|o| o.failed_checkers().contains(&checker))
            .map(|o| o.report.seed)
    }

    #[test]
    fn broken_variants_are_caught_within_1000_seeds() {
        let caught = [
            ("split-brain-ignore-isolation.toml", "decision-pure"),
            ("split-brain-no-epoch-fencing.toml", "epoch-monotonic"),
            ("hpo-no-lease-fencing.toml", "single-holder"),
            ("hpo-no-lease-fencing.toml", "exactly-one-result"),
        ];
        for (name, checker) in caught {
            let seed = first_failure(name, checker);
            assert!(
                seed.is_some(),
                "{name}: {checker} never failed in 1,000 seeds"
            );
        }
    }

    #[test]
    fn correct_models_pass_and_reach_the_dangerous_states() {
        for name in ["split-brain.toml", "hpo.toml"] {
            let t = template(name);
            let seeds: Vec<u64> = (0..300).collect();
            let outcomes = run_seeds(&t, &seeds, 2, false, &|_| {}).unwrap();
            let summary = summarise(&t, "0..300", &outcomes);
            assert_eq!(summary.failed, 0, "{}", summary.render_text());
            let reached = |property: &str| summary.coverage.get(property).map_or(0, |c| c.0);
            if name == "split-brain.toml" {
                assert!(
                    reached("dual-active visible to the EMS") > 250,
                    "{}",
                    summary.render_text()
                );
                assert!(reached("resolution with exactly one isolated") > 250);
            } else {
                assert!(
                    reached("worker died holding a lease") > 50,
                    "{}",
                    summary.render_text()
                );
                assert!(reached("stale-token write refused") > 20);
            }
        }
    }

    #[test]
    fn the_scripted_isolation_steps_down_the_isolated_instance() {
        let t = template("split-brain-isolation.toml");
        let report = run_seed(&t, 0, true);
        assert!(!report.failed(), "{:?}", report.model.checks);
        let timeline = report.timeline.join("\n");
        assert!(timeline.contains("vnfc-b     becomes Active"), "{timeline}");
        assert!(
            timeline.contains("vnfc-a steps down, vnfc-b active"),
            "{timeline}"
        );
        let coverage: BTreeMap<_, _> = report.model.coverage.iter().copied().collect();
        assert_eq!(coverage["resolution with exactly one isolated"], 1);
    }

    #[test]
    fn full_budget_policy_runs_every_iteration_and_reports_the_true_best() {
        let mut full = template("hpo.toml");
        if let ModelParams::Hpo(p) = &mut full.params {
            p.policy = hpo::Policy::Full;
            p.configs = 12;
        }
        for seed in 0..20 {
            let report = run_seed(&full, seed, false);
            assert!(!report.failed(), "seed {seed}: {:?}", report.model.checks);
            let makespan_ms = report
                .model
                .metrics
                .iter()
                .find(|m| m.0 == "makespan_ms")
                .unwrap()
                .1[0];
            // 12 operations of 27 iterations x 300 ms on 6 workers: at least two rounds of 8.1 s.
            assert!(makespan_ms >= 16_200.0, "seed {seed}: {makespan_ms} ms");
        }
    }

    #[test]
    fn output_does_not_depend_on_the_thread_count() {
        let t = template("split-brain.toml");
        let seeds: Vec<u64> = (100..180).collect();
        let one = summarise(&t, "x", &run_seeds(&t, &seeds, 1, false, &|_| {}).unwrap());
        let two = summarise(&t, "x", &run_seeds(&t, &seeds, 2, false, &|_| {}).unwrap());
        assert_eq!(one.render_text(), two.render_text());
        assert_eq!(one.render_json(), two.render_json());
        assert_eq!(one.to_junit(), two.to_junit());
    }

    #[test]
    fn runs_are_reproducible_and_seeds_differ() {
        for name in ["split-brain.toml", "hpo.toml"] {
            let t = template(name);
            let a = run_seed(&t, 42, false);
            assert_eq!(a.trace_hash, run_seed(&t, 42, false).trace_hash, "{name}");
            assert_eq!(
                a.events_count,
                run_seed(&t, 42, true).events_count,
                "recording a timeline changes nothing"
            );
            assert_ne!(a.trace_hash, run_seed(&t, 43, false).trace_hash, "{name}");
        }
    }

    #[test]
    fn shrinking_keeps_the_failure_with_fewer_events() {
        let t = template("split-brain-ignore-isolation.toml");
        let seed = first_failure("split-brain-ignore-isolation.toml", "decision-pure").unwrap();
        let plan = plan_for_seed(&t, seed);
        let shrunk = shrink(&t, &plan).unwrap();
        assert!(
            shrunk.plan.events.len() < plan.events.len(),
            "{} of {}",
            shrunk.plan.events.len(),
            plan.events.len()
        );
        assert!(shrunk.checkers.contains(&"decision-pure"));
        assert!(run_plan(&t, &shrunk.plan, false)
            .failed_checkers()
            .contains(&"decision-pure"));
        assert!(shrink(
            &template("split-brain.toml"),
            &plan_for_seed(&template("split-brain.toml"), 0)
        )
        .is_none());
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), 50.0);
        assert_eq!(percentile(&values, 99.0), 99.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn xml_escape_handles_markup_and_control_characters() {
        assert_eq!(xml_escape("a<b>&\"c'\u{1}"), "a&lt;b&gt;&amp;&quot;c&apos;");
    }
}
