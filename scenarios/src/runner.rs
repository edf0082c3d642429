//! The multi-seed runner: runs (template, seed) or (template, plan), many seeds in parallel, aggregates the results
//! into a summary (rendered by `report`), and shrinks failing fault plans.
//!
//! Invariants: one run is single-threaded; seeds run in parallel with rayon and their results are collected in seed
//! order, so every output (summary, JSON, JUnit) is byte-identical whatever the thread count. Nothing here reads the host
//! clock; the CLI's progress line is the only place that may, and it lives in the binary.
//! Every failure carries the one-line command that reproduces it.

use crate::kernel::Limits;
use crate::models::{cdp, hpo, simulate, split_brain, warm_pool, ModelParams, RunReport};
use crate::plan::{plan_for_seed, FaultPlan};
pub use crate::report::{JunitCases, ReportHeader, SeedRecord, Summary};
use crate::template::Template;
use rayon::prelude::*;

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
        ModelParams::Cdp(p) => simulate(
            cdp::Cdp::new(p.clone()),
            names,
            plan,
            limits,
            record_timeline,
        ),
        ModelParams::WarmPool(p) => simulate(
            warm_pool::WarmPool::new(p.clone()),
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

pub fn reproduce_command(template: &Template, seed: u64) -> String {
    format!(
        "tandem scenario run {} --seed {seed}",
        template.path.display()
    )
}

/// What every report of this template says about it.
pub fn header_of(template: &Template) -> ReportHeader {
    let mut checkers: Vec<String> = template
        .params
        .checker_names()
        .into_iter()
        .map(str::to_string)
        .collect();
    checkers.sort();
    ReportHeader {
        template_name: template.name.clone(),
        template_path: template.path.display().to_string(),
        model: template.model.name().to_string(),
        variant: template.params.variant().to_string(),
        checkers,
    }
}

/// The summary of seeds run from a template (each failure reproduced by `--seed`).
pub fn summarise(template: &Template, seeds_label: &str, outcomes: &[SeedOutcome]) -> Summary {
    let records = outcomes
        .iter()
        .map(|o| SeedRecord::of(o, reproduce_command(template, o.report.seed)))
        .collect();
    Summary::new(header_of(template), seeds_label, records)
}

/// The result of shrinking.
pub struct Shrunk {
    pub plan: FaultPlan,
    pub runs: usize,
    pub checkers: Vec<&'static str>,
}

/// Ways to take noise out of a plan's network, each tried on its own: no loss, no duplicates, no reordering.
const NETWORK_NOISE: [fn(&mut crate::kernel::NetworkOptions); 3] =
    [|n| n.loss = 0.0, |n| n.duplicate = 0.0, |n| n.reorder = 0.0];

/// Minimises a failing plan while it still fails at least one of the checkers it first failed: silence the network's
/// noise (loss, duplication, reordering), drop events from the back (proptest's state-machine shrinking order), then
/// halve durations, until nothing changes or the run budget is spent. `start` events are kept, since without them
/// nothing runs.
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
        for quiet in NETWORK_NOISE {
            let mut candidate = best.clone();
            quiet(&mut candidate.network);
            if candidate.network == best.network || runs >= SHRINK_RUNS_MAX {
                continue;
            }
            runs += 1;
            if still_fails(&candidate) {
                best = candidate;
                changed = true;
            }
        }
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
            (
                "cdp-ack-before-journal.toml",
                "no-acked-write-lost-beyond-rpo",
            ),
            (
                "warm-pool-available-before-warm.toml",
                "served-only-when-warm",
            ),
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
        let timeline = crate::timeline::render_text(&report.timeline, &t.node_names);
        assert!(timeline.contains("vnfc-b     becomes Active"), "{timeline}");
        assert!(
            timeline.contains("vnfc-a steps down, vnfc-b active"),
            "{timeline}"
        );
        let coverage: std::collections::BTreeMap<_, _> =
            report.model.coverage.iter().copied().collect();
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
        assert_eq!(
            one.to_junit(JunitCases::Checkers),
            two.to_junit(JunitCases::Checkers)
        );
        assert_eq!(
            one.to_junit(JunitCases::Seeds),
            two.to_junit(JunitCases::Seeds)
        );
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
        assert_eq!(
            (shrunk.plan.network.loss, shrunk.plan.network.duplicate),
            (0.0, 0.0),
            "the network noise stays only if the failure needs it"
        );
        assert!(run_plan(&t, &shrunk.plan, false)
            .failed_checkers()
            .contains(&"decision-pure"));
        assert!(shrink(
            &template("split-brain.toml"),
            &plan_for_seed(&template("split-brain.toml"), 0)
        )
        .is_none());
    }
}
