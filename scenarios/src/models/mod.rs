//! Scenario models, the interface they implement, and the run loop that drives one of them through a fault plan.
//!
//! A model owns the behaviour of every node (its actors) and the checkers of its invariants. It acts only through the
//! kernel (`send`, `set_timer`, `local_time_ns`), so a run is a pure function of (model parameters, fault plan, seed).
//! Each model reports, per run: one result per checker (violations and the first one's description), metric samples,
//! and coverage counters that show the dangerous states were reached.

pub mod cdp;
pub mod hpo;
pub mod split_brain;
pub mod warm_pool;

use crate::kernel::{Event, Kernel, Limits, NodeId};
use crate::plan::{CompiledEvent, Fault, FaultPlan};
use crate::timeline::What;

/// The models a template can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ModelKind {
    SplitBrain,
    Hpo,
    Cdp,
    WarmPool,
}

impl ModelKind {
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::SplitBrain => "split-brain",
            ModelKind::Hpo => "hpo",
            ModelKind::Cdp => "cdp",
            ModelKind::WarmPool => "warm-pool",
        }
    }

    pub fn from_name(name: &str) -> Option<ModelKind> {
        ModelKind::ALL.into_iter().find(|m| m.name() == name)
    }

    pub const ALL: [ModelKind; 4] = [
        ModelKind::SplitBrain,
        ModelKind::Hpo,
        ModelKind::Cdp,
        ModelKind::WarmPool,
    ];

    /// The variants the model's `variant` parameter accepts; the first is the correct one.
    pub fn variants(self) -> &'static [&'static str] {
        match self {
            ModelKind::SplitBrain => &["correct", "ignore-isolation", "no-epoch-fencing"],
            ModelKind::Hpo => &["correct", "no-lease-fencing"],
            ModelKind::Cdp => &["correct", "ack-before-journal"],
            ModelKind::WarmPool => &["correct", "available-before-warm"],
        }
    }

    pub fn names() -> Vec<&'static str> {
        ModelKind::ALL.iter().map(|m| m.name()).collect()
    }
}

/// A model's parameters, set from the template's `[parameters]` table.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelParams {
    SplitBrain(split_brain::Params),
    Hpo(hpo::Params),
    Cdp(cdp::Params),
    WarmPool(warm_pool::Params),
}

impl ModelParams {
    pub fn defaults(kind: ModelKind) -> ModelParams {
        match kind {
            ModelKind::SplitBrain => ModelParams::SplitBrain(split_brain::Params::default()),
            ModelKind::Hpo => ModelParams::Hpo(hpo::Params::default()),
            ModelKind::Cdp => ModelParams::Cdp(cdp::Params::default()),
            ModelKind::WarmPool => ModelParams::WarmPool(warm_pool::Params::default()),
        }
    }

    /// Sets one parameter; the error names what is accepted.
    pub fn set(&mut self, key: &str, value: &toml::Value) -> Result<(), String> {
        match self {
            ModelParams::SplitBrain(p) => p.set(key, value),
            ModelParams::Hpo(p) => p.set(key, value),
            ModelParams::Cdp(p) => p.set(key, value),
            ModelParams::WarmPool(p) => p.set(key, value),
        }
    }

    pub fn node_names(&self) -> Vec<String> {
        match self {
            ModelParams::SplitBrain(_) => split_brain::node_names(),
            ModelParams::Hpo(p) => p.node_names(),
            ModelParams::Cdp(_) => cdp::node_names(),
            ModelParams::WarmPool(p) => p.node_names(),
        }
    }

    pub fn checker_names(&self) -> Vec<&'static str> {
        match self {
            ModelParams::SplitBrain(_) => split_brain::CHECKERS.to_vec(),
            ModelParams::Hpo(_) => hpo::CHECKERS.to_vec(),
            ModelParams::Cdp(_) => cdp::CHECKERS.to_vec(),
            ModelParams::WarmPool(_) => warm_pool::CHECKERS.to_vec(),
        }
    }

    pub fn variant(&self) -> &str {
        match self {
            ModelParams::SplitBrain(p) => p.variant.name(),
            ModelParams::Hpo(p) => p.variant.name(),
            ModelParams::Cdp(p) => p.variant.name(),
            ModelParams::WarmPool(p) => p.variant.name(),
        }
    }
}

/// Reads an integer parameter.
pub(crate) fn param_u64(value: &toml::Value) -> Result<u64, String> {
    match value {
        toml::Value::Integer(i) if *i >= 0 => Ok(*i as u64),
        other => Err(format!("expected a non-negative integer, found {other}")),
    }
}

pub(crate) fn param_str(value: &toml::Value) -> Result<&str, String> {
    value
        .as_str()
        .ok_or_else(|| format!("expected a string, found {value}"))
}

/// The violations of one checker in one run.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckResult {
    pub name: &'static str,
    pub violations: u64,
    /// The first violation: virtual time and what was seen.
    pub first: Option<String>,
    /// The virtual time of the first violation.
    pub first_at_ns: Option<u64>,
}

/// Collects checker results in the model's fixed checker order.
#[derive(Clone, Debug)]
pub struct Checks {
    results: Vec<CheckResult>,
}

impl Checks {
    pub fn new(names: &[&'static str]) -> Checks {
        Checks {
            results: names
                .iter()
                .map(|&name| CheckResult {
                    name,
                    violations: 0,
                    first: None,
                    first_at_ns: None,
                })
                .collect(),
        }
    }

    /// Records a violation of checker `index` (an index into the model's `CHECKERS`).
    pub fn fail(&mut self, index: usize, now_ns: u64, what: impl FnOnce() -> String) {
        let result = &mut self.results[index];
        result.violations += 1;
        if result.first.is_none() {
            result.first = Some(format!("at {:.3} ms: {}", now_ns as f64 / 1e6, what()));
            result.first_at_ns = Some(now_ns);
        }
    }

    pub fn into_results(self) -> Vec<CheckResult> {
        self.results
    }
}

/// What a model reports at the end of a run.
#[derive(Clone, Debug, Default)]
pub struct ModelReport {
    pub checks: Vec<CheckResult>,
    /// Metric name and its samples in this run (milliseconds or a ratio, as the name says).
    pub metrics: Vec<(&'static str, Vec<f64>)>,
    /// Coverage property and how many times this run reached it.
    pub coverage: Vec<(&'static str, u64)>,
}

/// A scenario model: the behaviour of every node plus its checkers.
pub trait Model {
    type Msg: Copy + std::fmt::Debug;
    type Timer: Copy + std::fmt::Debug;
    /// The plan's `start` step: nodes begin their work (set their first timers).
    fn start(&mut self, k: &mut Kernel<Self::Msg, Self::Timer>);
    fn on_message(
        &mut self,
        k: &mut Kernel<Self::Msg, Self::Timer>,
        to: NodeId,
        from: NodeId,
        msg: Self::Msg,
    );
    fn on_timer(
        &mut self,
        k: &mut Kernel<Self::Msg, Self::Timer>,
        node: NodeId,
        timer: Self::Timer,
    );
    /// The node lost its volatile state; the kernel already dropped its timers.
    fn on_crash(&mut self, k: &mut Kernel<Self::Msg, Self::Timer>, node: NodeId);
    /// The node boots again from its durable state.
    fn on_restart(&mut self, k: &mut Kernel<Self::Msg, Self::Timer>, node: NodeId);
    /// Called after the kernel applied any fault (starting or ending), for model-level faults (disk, slow) and for
    /// checkers whose truth depends on the network.
    fn on_fault(&mut self, k: &mut Kernel<Self::Msg, Self::Timer>, fault: &Fault, starting: bool);
    /// The plan's `check` step: evaluate the liveness checkers now.
    fn on_check(&mut self, k: &mut Kernel<Self::Msg, Self::Timer>);
    /// End of the run: final checks, metrics and coverage.
    fn finish(&mut self, k: &mut Kernel<Self::Msg, Self::Timer>) -> ModelReport;
}

/// Everything one run produced.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub seed: u64,
    pub model: ModelReport,
    pub trace_hash: u64,
    pub events_count: u64,
    pub end_ns: u64,
    /// Set when a limit stopped the run early.
    pub stopped: Option<String>,
    pub timeline: Vec<crate::timeline::Entry>,
}

impl RunReport {
    pub fn failed(&self) -> bool {
        self.stopped.is_some() || self.model.checks.iter().any(|c| c.violations > 0)
    }

    /// Names of the checkers that failed (`limits` when a limit stopped the run).
    pub fn failed_checkers(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self
            .model
            .checks
            .iter()
            .filter(|c| c.violations > 0)
            .map(|c| c.name)
            .collect();
        if self.stopped.is_some() {
            names.push("limits");
        }
        names
    }
}

/// Runs `model` through `plan` until `plan.duration_ms` of virtual time.
pub(crate) fn simulate<Mo: Model>(
    mut model: Mo,
    node_names: Vec<String>,
    plan: &FaultPlan,
    limits: Limits,
    record_timeline: bool,
) -> RunReport {
    let events: Vec<CompiledEvent> = plan.compile(&node_names);
    let end_ns = plan.duration_ms.saturating_mul(crate::kernel::NS_PER_MS);
    let mut k: Kernel<Mo::Msg, Mo::Timer> = Kernel::new(
        plan.seed,
        node_names,
        plan.network.clone(),
        limits,
        record_timeline,
    );
    for (index, event) in events.iter().enumerate() {
        k.schedule(event.at_ns, Event::PlanStart(index));
    }
    // A partition's scheduled end must not undo a partition made after a `heal`: remember each one's heal generation.
    let mut heal_generation = 0u32;
    let mut started_generation = vec![0u32; events.len()];
    while let Some(event) = k.next_event(end_ns) {
        match event {
            Event::Deliver { from, to, msg } => model.on_message(&mut k, to, from, msg),
            Event::Timer { node, timer, .. } => model.on_timer(&mut k, node, timer),
            Event::PlanStart(index) => {
                let event = &events[index];
                started_generation[index] = heal_generation;
                k.record(|| fault_entry(&plan.events[index], event, false));
                apply(&mut model, &mut k, event, true);
                if matches!(event.fault, Fault::Heal) {
                    heal_generation += 1;
                }
                if let Some(duration_ns) = event.duration_ns {
                    let end = k.now_ns() + duration_ns;
                    k.schedule(end, Event::PlanEnd(index));
                }
            }
            Event::PlanEnd(index) => {
                let event = &events[index];
                let healed_since = started_generation[index] != heal_generation;
                if healed_since
                    && matches!(event.fault, Fault::Partition { .. } | Fault::Isolate(_))
                {
                    continue;
                }
                k.record(|| fault_entry(&plan.events[index], event, true));
                apply(&mut model, &mut k, event, false);
            }
        }
    }
    let stopped = k.stop_reason().map(str::to_string);
    let report = model.finish(&mut k);
    RunReport {
        seed: plan.seed,
        model: report,
        trace_hash: k.trace_hash(),
        events_count: k.events_count(),
        end_ns: k.now_ns(),
        stopped,
        timeline: k.take_timeline(),
    }
}

/// The timeline's form of a plan event: its description, the nodes it touches (none: every node), its span.
fn fault_entry(planned: &crate::plan::FaultEvent, event: &CompiledEvent, ending: bool) -> What {
    let nodes = match &event.fault {
        Fault::Partition { a, b, .. } => a.iter().chain(b).copied().collect(),
        Fault::Clog { from, to } => vec![*from, *to],
        Fault::Isolate(n)
        | Fault::Crash(n)
        | Fault::Restart(n)
        | Fault::Pause(n)
        | Fault::DiskFault(n) => {
            vec![*n]
        }
        Fault::SkewClock { node, .. } | Fault::Slow { node, .. } => vec![*node],
        Fault::Start | Fault::Heal | Fault::Check => Vec::new(),
    };
    What::Fault {
        text: planned.describe(),
        action: planned.kind().name(),
        nodes,
        until_ns: event.duration_ns.map(|d| event.at_ns + d),
        ending,
    }
}

fn apply<Mo: Model>(
    model: &mut Mo,
    k: &mut Kernel<Mo::Msg, Mo::Timer>,
    event: &CompiledEvent,
    starting: bool,
) {
    let fault = &event.fault;
    match fault {
        Fault::Start => {
            if starting {
                model.start(k);
            }
        }
        Fault::Partition { a, b, one_way } => {
            for &x in a {
                for &y in b {
                    k.block_link(x, y, starting);
                    if !one_way {
                        k.block_link(y, x, starting);
                    }
                }
            }
        }
        Fault::Isolate(node) => {
            for other in 0..k.node_count() {
                if other != *node {
                    k.block_link(*node, other, starting);
                    k.block_link(other, *node, starting);
                }
            }
        }
        Fault::Heal => k.heal_all(),
        Fault::Clog { from, to } => {
            if starting {
                // Without a duration a clog lasts one second.
                let duration_ns = event
                    .duration_ns
                    .unwrap_or(crate::kernel::NS_PER_MS * 1_000);
                k.clog_link(*from, *to, k.now_ns() + duration_ns);
            }
        }
        Fault::Crash(node) => {
            if starting && k.crash(*node) {
                model.on_crash(k, *node);
            }
        }
        Fault::Restart(node) => {
            if starting && k.restart(*node) {
                model.on_restart(k, *node);
            }
        }
        Fault::Pause(node) => {
            if starting {
                k.pause(*node);
            } else {
                k.resume(*node);
            }
        }
        Fault::SkewClock { node, skew_ns } => {
            if starting {
                k.set_skew(*node, *skew_ns);
            }
        }
        Fault::DiskFault(_) | Fault::Slow { .. } => {}
        Fault::Check => {
            if starting {
                model.on_check(k);
            }
        }
    }
    model.on_fault(k, fault, starting);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hitting_events_max_stops_the_run_cleanly_as_a_limits_failure() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/split-brain.toml");
        let template = crate::template::load(&path).unwrap();
        let plan = crate::plan::plan_for_seed(&template, 3);
        let limits = Limits {
            events_max: 1_000,
            ..Limits::default()
        };
        let model = split_brain::SplitBrain::new(split_brain::Params::default());
        let report = simulate(model, template.node_names.clone(), &plan, limits, false);
        let reason = report.stopped.clone().expect("the run stops at the limit");
        assert!(reason.starts_with("events_max (1000) reached"), "{reason}");
        assert_eq!(
            report.events_count, 1_000,
            "events dispatched, the refused one not counted"
        );
        assert!(report.end_ns < plan.duration_ms * crate::kernel::NS_PER_MS);
        assert_eq!(report.failed_checkers(), vec!["limits"]);
    }
}
