//! Fault plans: the explicit, serialisable list of timed events that one run executes.
//!
//! A run is (template, seed) or (template, fault plan). For a seed, the plan is the template's steps laid out in time,
//! with every `swarm` step expanded into concrete faults drawn from the seed's "swarm" stream: each seed first draws its own
//! fault knobs (which fault kinds are on, how often, how long, the network's loss/duplication/reordering), as TigerBeetle's
//! VOPR does, then the faults themselves. The plan records the drawn network options too, so replaying a plan file needs
//! nothing else. `--shrink` edits plans (drops events, shortens durations); the result is again a plan file.
//!
//! Invariants: events are sorted by `at_ms` (stable, so same-time events keep template order); every node name in a plan
//! is one of the model's nodes (checked by `compile`); the format is versioned (`format`, `version`).

use crate::kernel::{LinkLatency, NetworkOptions, NodeId, NS_PER_MS};
use crate::rng;
use crate::template::{Capabilities, NetworkSection, Step, Template};
use rand::Rng;
use serde::{Deserialize, Serialize};

pub const PLAN_FORMAT: &str = "tandem-fault-plan";
pub const PLAN_VERSION: u32 = 1;

/// The longest run: a template's `duration_s` is at most a day, and so is a plan's `duration_ms`. Every time a step or
/// an event carries (`duration_ms`, `skew_ms`, `at_ms`) is bounded by it too, so sums of up to `STEPS_MAX` of them and
/// their conversion to nanoseconds never overflow.
pub const DURATION_MS_MAX: u64 = 86_400_000;
/// The largest slow-down factor of a `slow` fault.
pub const SLOW_FACTOR_MAX: u32 = 1_000;

/// Every action a step or plan event can name. `wait`, `swarm` and `use` exist only in templates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Start,
    Partition,
    Isolate,
    Heal,
    Clog,
    Crash,
    Restart,
    Pause,
    SkewClock,
    DiskFault,
    Slow,
    Check,
}

impl ActionKind {
    pub const ALL: [ActionKind; 12] = [
        ActionKind::Start,
        ActionKind::Partition,
        ActionKind::Isolate,
        ActionKind::Heal,
        ActionKind::Clog,
        ActionKind::Crash,
        ActionKind::Restart,
        ActionKind::Pause,
        ActionKind::SkewClock,
        ActionKind::DiskFault,
        ActionKind::Slow,
        ActionKind::Check,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ActionKind::Start => "start",
            ActionKind::Partition => "partition",
            ActionKind::Isolate => "isolate",
            ActionKind::Heal => "heal",
            ActionKind::Clog => "clog",
            ActionKind::Crash => "crash",
            ActionKind::Restart => "restart",
            ActionKind::Pause => "pause",
            ActionKind::SkewClock => "skew_clock",
            ActionKind::DiskFault => "disk_fault",
            ActionKind::Slow => "slow",
            ActionKind::Check => "check",
        }
    }

    pub fn from_name(name: &str) -> Option<ActionKind> {
        ActionKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// Faults need a declared capability; start, heal and check do not (they take no power over a node).
    pub fn is_fault(self) -> bool {
        !matches!(
            self,
            ActionKind::Start | ActionKind::Heal | ActionKind::Check
        )
    }

    /// The keys this action accepts besides `action` (and `at_ms` in plans); the first group is required.
    pub fn keys(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            ActionKind::Start | ActionKind::Heal | ActionKind::Check => (&[], &[]),
            ActionKind::Partition => (&["a"], &["b", "one_way", "duration_ms"]),
            ActionKind::Isolate => (&["node"], &["duration_ms"]),
            ActionKind::Clog => (&["from", "to", "duration_ms"], &[]),
            ActionKind::Crash | ActionKind::Restart => (&["node"], &[]),
            ActionKind::Pause => (&["node", "duration_ms"], &[]),
            ActionKind::SkewClock => (&["node", "skew_ms"], &[]),
            ActionKind::DiskFault => (&["node", "duration_ms"], &[]),
            ActionKind::Slow => (&["node", "factor", "duration_ms"], &[]),
        }
    }
}

/// One timed event of a plan. Flat on purpose: it reads naturally as a TOML `[[events]]` table.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultEvent {
    pub at_ms: u64,
    pub action: Option<ActionKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub a: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_way: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skew_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<u32>,
}

impl FaultEvent {
    pub fn kind(&self) -> ActionKind {
        self.action.unwrap_or(ActionKind::Check)
    }

    /// The node names this event touches, for capability checks.
    pub fn nodes(&self) -> Vec<&str> {
        let mut nodes: Vec<&str> = Vec::new();
        nodes.extend(self.node.as_deref());
        nodes.extend(self.a.iter().flatten().map(String::as_str));
        nodes.extend(self.b.iter().flatten().map(String::as_str));
        nodes.extend(self.from.as_deref());
        nodes.extend(self.to.as_deref());
        nodes
    }

    /// One line for timelines and shrink reports.
    pub fn describe(&self) -> String {
        let mut text = self.kind().name().to_string();
        if let Some(node) = &self.node {
            text += &format!(" {node}");
        }
        if let Some(a) = &self.a {
            text += &format!(" [{}]", a.join(","));
            match &self.b {
                Some(b) => {
                    text += &format!(
                        " {} [{}]",
                        if self.one_way == Some(true) {
                            "->"
                        } else {
                            "|"
                        },
                        b.join(",")
                    )
                }
                None => {
                    text += if self.one_way == Some(true) {
                        " -> rest"
                    } else {
                        " | rest"
                    }
                }
            }
        }
        if let (Some(from), Some(to)) = (&self.from, &self.to) {
            text += &format!(" {from}->{to}");
        }
        if let Some(skew) = self.skew_ms {
            text += &format!(" skew {skew} ms");
        }
        if let Some(factor) = self.factor {
            text += &format!(" x{factor}");
        }
        if let Some(duration) = self.duration_ms {
            text += &format!(" for {duration} ms");
        }
        text
    }
}

/// A whole plan file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultPlan {
    pub format: String,
    pub version: u32,
    /// The template's name (informational: the template is given on the command line).
    pub template: String,
    /// Seeds the model's and the network's streams; the faults themselves are the events below.
    pub seed: u64,
    pub duration_ms: u64,
    pub network: NetworkOptions,
    #[serde(default)]
    pub events: Vec<FaultEvent>,
}

/// A plan event with node names resolved, ready for the run loop.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    Start,
    Partition {
        a: Vec<NodeId>,
        b: Vec<NodeId>,
        one_way: bool,
    },
    Isolate(NodeId),
    Heal,
    Clog {
        from: NodeId,
        to: NodeId,
    },
    Crash(NodeId),
    Restart(NodeId),
    Pause(NodeId),
    SkewClock {
        node: NodeId,
        skew_ns: i64,
    },
    DiskFault(NodeId),
    Slow {
        node: NodeId,
        factor: u32,
    },
    Check,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CompiledEvent {
    pub at_ns: u64,
    pub duration_ns: Option<u64>,
    pub fault: Fault,
}

/// Checks one event's keys and node names. Errors are (key, message) so that the caller can name the line.
pub fn check_event(event: &FaultEvent, node_names: &[String]) -> Result<(), (String, String)> {
    let kind = event.kind();
    let (required, optional) = kind.keys();
    let present: Vec<&str> = [
        ("node", event.node.is_some()),
        ("a", event.a.is_some()),
        ("b", event.b.is_some()),
        ("one_way", event.one_way.is_some()),
        ("from", event.from.is_some()),
        ("to", event.to.is_some()),
        ("duration_ms", event.duration_ms.is_some()),
        ("skew_ms", event.skew_ms.is_some()),
        ("factor", event.factor.is_some()),
    ]
    .into_iter()
    .filter_map(|(key, set)| set.then_some(key))
    .collect();
    for key in &present {
        if !required.contains(key) && !optional.contains(key) {
            return Err((
                key.to_string(),
                format!(
                    "key `{key}` is not used by action `{}` (it takes: {})",
                    kind.name(),
                    key_list(kind)
                ),
            ));
        }
    }
    for key in required {
        if !present.contains(key) {
            return Err((
                "action".into(),
                format!(
                    "action `{}` needs key `{key}` (it takes: {})",
                    kind.name(),
                    key_list(kind)
                ),
            ));
        }
    }
    for (key, names) in [
        ("node", event.node.iter().collect::<Vec<_>>()),
        ("from", event.from.iter().collect()),
        ("to", event.to.iter().collect()),
    ]
    .into_iter()
    .chain([
        ("a", event.a.iter().flatten().collect::<Vec<_>>()),
        ("b", event.b.iter().flatten().collect()),
    ]) {
        for name in names {
            if !node_names.contains(name) {
                return Err((
                    key.into(),
                    format!(
                        "node `{name}` is not one of the model's nodes ({})",
                        node_names.join(", ")
                    ),
                ));
            }
        }
    }
    if let Some(a) = &event.a {
        if a.is_empty() {
            return Err((
                "a".into(),
                "a partition needs at least one node in `a`".into(),
            ));
        }
        if let Some(b) = &event.b {
            if let Some(both) = a.iter().find(|n| b.contains(n)) {
                return Err((
                    "b".into(),
                    format!("node `{both}` is on both sides of the partition"),
                ));
            }
        }
    }
    if let (Some(from), Some(to)) = (&event.from, &event.to) {
        if from == to {
            return Err(("to".into(), "a clog needs two different nodes".into()));
        }
    }
    if let Some(factor) = event.factor {
        if factor == 0 || factor > SLOW_FACTOR_MAX {
            return Err((
                "factor".into(),
                format!("a slow-down factor is between 1 and {SLOW_FACTOR_MAX}, not {factor}"),
            ));
        }
    }
    if let Some(duration_ms) = event.duration_ms {
        if duration_ms > DURATION_MS_MAX {
            return Err((
                "duration_ms".into(),
                format!("duration_ms is at most {DURATION_MS_MAX} (a day), not {duration_ms}"),
            ));
        }
    }
    if let Some(skew_ms) = event.skew_ms {
        if skew_ms.unsigned_abs() > DURATION_MS_MAX {
            return Err((
                "skew_ms".into(),
                format!("skew_ms is between -{DURATION_MS_MAX} and {DURATION_MS_MAX} (a day), not {skew_ms}"),
            ));
        }
    }
    Ok(())
}

fn key_list(kind: ActionKind) -> String {
    let (required, optional) = kind.keys();
    let mut keys: Vec<String> = required.iter().map(|k| k.to_string()).collect();
    keys.extend(optional.iter().map(|k| format!("{k} (optional)")));
    if keys.is_empty() {
        "no other keys".into()
    } else {
        keys.join(", ")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

fn node_index(node_names: &[String], name: &str) -> NodeId {
    // `check_event` ran first, so the name is known.
    node_names
        .iter()
        .position(|n| n == name)
        .expect("node names are checked before compiling")
}

impl FaultPlan {
    /// Parses a plan file, checking its format, version and every event against the model's nodes.
    pub fn parse(path: &str, text: &str, node_names: &[String]) -> Result<FaultPlan, PlanError> {
        // `FILE:LINE: message`, as template errors and compilers put it.
        let plan: FaultPlan = toml::from_str(text).map_err(|e| PlanError::Invalid {
            path: match e.span() {
                Some(span) => format!("{path}:{}", crate::template::line_of(text, span.start)),
                None => path.into(),
            },
            message: e.message().to_string(),
        })?;
        if plan.format != PLAN_FORMAT || plan.version != PLAN_VERSION {
            return Err(PlanError::Invalid {
                path: path.into(),
                message: format!(
                    "format `{}` version {} is not `{PLAN_FORMAT}` version {PLAN_VERSION}; regenerate the plan with this tandem",
                    plan.format, plan.version
                ),
            });
        }
        let invalid = |message: String| PlanError::Invalid {
            path: path.into(),
            message,
        };
        if plan.duration_ms == 0 || plan.duration_ms > DURATION_MS_MAX {
            return Err(invalid(format!(
                "duration_ms is between 1 and {DURATION_MS_MAX} (a day), not {}",
                plan.duration_ms
            )));
        }
        check_network(&plan.network, node_names)
            .map_err(|(key, message)| invalid(format!("network, key `{key}`: {message}")))?;
        let mut previous_ms = 0;
        for (index, event) in plan.events.iter().enumerate() {
            if event.at_ms > plan.duration_ms {
                return Err(invalid(format!(
                    "event {index} (at_ms = {}), key `at_ms`: the event is after the end of the run (duration_ms = {})",
                    event.at_ms, plan.duration_ms
                )));
            }
            if event.at_ms < previous_ms {
                return Err(invalid(format!(
                    "event {index} (at_ms = {}), key `at_ms`: events are in time order, and the event before it is at {previous_ms}",
                    event.at_ms
                )));
            }
            previous_ms = event.at_ms;
            if event.action.is_none() {
                return Err(PlanError::Invalid {
                    path: path.into(),
                    message: format!("event {index}: missing key `action`"),
                });
            }
            check_event(event, node_names).map_err(|(key, message)| PlanError::Invalid {
                path: path.into(),
                message: format!(
                    "event {index} (at_ms = {}), key `{key}`: {message}",
                    event.at_ms
                ),
            })?;
        }
        Ok(plan)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a fault plan always serialises")
    }

    /// Resolves names; events must have been checked (templates and `parse` do that).
    pub fn compile(&self, node_names: &[String]) -> Vec<CompiledEvent> {
        let all: Vec<NodeId> = (0..node_names.len()).collect();
        self.events
            .iter()
            .map(|event| {
                let node = event.node.as_deref().map(|n| node_index(node_names, n));
                let fault = match event.kind() {
                    ActionKind::Start => Fault::Start,
                    ActionKind::Heal => Fault::Heal,
                    ActionKind::Check => Fault::Check,
                    ActionKind::Partition => {
                        let a: Vec<NodeId> = event
                            .a
                            .iter()
                            .flatten()
                            .map(|n| node_index(node_names, n))
                            .collect();
                        let b: Vec<NodeId> = match &event.b {
                            Some(b) => b.iter().map(|n| node_index(node_names, n)).collect(),
                            None => all.iter().copied().filter(|n| !a.contains(n)).collect(),
                        };
                        Fault::Partition {
                            a,
                            b,
                            one_way: event.one_way.unwrap_or(false),
                        }
                    }
                    ActionKind::Isolate => Fault::Isolate(node.unwrap_or(0)),
                    ActionKind::Clog => Fault::Clog {
                        from: node_index(node_names, event.from.as_deref().unwrap_or_default()),
                        to: node_index(node_names, event.to.as_deref().unwrap_or_default()),
                    },
                    ActionKind::Crash => Fault::Crash(node.unwrap_or(0)),
                    ActionKind::Restart => Fault::Restart(node.unwrap_or(0)),
                    ActionKind::Pause => Fault::Pause(node.unwrap_or(0)),
                    ActionKind::SkewClock => Fault::SkewClock {
                        node: node.unwrap_or(0),
                        skew_ns: event.skew_ms.unwrap_or(0).saturating_mul(NS_PER_MS as i64),
                    },
                    ActionKind::DiskFault => Fault::DiskFault(node.unwrap_or(0)),
                    ActionKind::Slow => Fault::Slow {
                        node: node.unwrap_or(0),
                        factor: event.factor.unwrap_or(1),
                    },
                };
                CompiledEvent {
                    at_ns: event.at_ms.saturating_mul(NS_PER_MS),
                    duration_ns: event.duration_ms.map(|d| d.saturating_mul(NS_PER_MS)),
                    fault,
                }
            })
            .collect()
    }
}

/// The largest latency, extra reordering delay included, of a message: a day, in microseconds.
pub const LATENCY_US_MAX: u64 = DURATION_MS_MAX * 1_000;

/// Checks network options (a template's `[network]` table or a plan's `network`): probabilities between 0 and 1,
/// latencies at most `LATENCY_US_MAX` with min <= max, link overrides between two known nodes. Errors are (key,
/// message) so that the caller can name the line.
pub fn check_network(
    options: &NetworkOptions,
    node_names: &[String],
) -> Result<(), (String, String)> {
    for (key, value) in [
        ("loss", options.loss),
        ("duplicate", options.duplicate),
        ("reorder", options.reorder),
    ] {
        check_probability(key, value).map_err(|message| (key.to_string(), message))?;
    }
    check_reorder(options.reorder_us_max).map_err(|message| ("reorder_us_max".into(), message))?;
    check_latency(&options.latency, "network")?;
    for link in &options.links {
        for name in [&link.from, &link.to] {
            if !node_names.contains(name) {
                return Err((
                    "links".into(),
                    format!(
                        "node `{name}` is not one of the model's nodes ({})",
                        node_names.join(", ")
                    ),
                ));
            }
        }
        check_latency(&link.latency, &format!("link {}->{}", link.from, link.to))
            .map_err(|(_, message)| ("links".to_string(), message))?;
    }
    Ok(())
}

/// `loss`, `duplicate` and `reorder` are probabilities (NaN is refused too).
pub fn check_probability(key: &str, value: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "network.{key} is a probability between 0 and 1, not {value}"
        ))
    }
}

pub fn check_reorder(reorder_us_max: u64) -> Result<(), String> {
    if reorder_us_max > LATENCY_US_MAX {
        return Err(format!(
            "network.reorder_us_max is at most {LATENCY_US_MAX} (a day), not {reorder_us_max}"
        ));
    }
    Ok(())
}

/// A latency's bounds: each at most `LATENCY_US_MAX`, and min <= max. `what` names the table ("network", a link).
pub fn check_latency(latency: &LinkLatency, what: &str) -> Result<(), (String, String)> {
    for (key, value) in [
        ("latency_us_min", latency.latency_us_min),
        ("latency_us_max", latency.latency_us_max),
    ] {
        if value > LATENCY_US_MAX {
            return Err((
                key.into(),
                format!("{what}: {key} is at most {LATENCY_US_MAX} (a day), not {value}"),
            ));
        }
    }
    if latency.latency_us_min > latency.latency_us_max {
        return Err((
            "latency_us_min".into(),
            format!(
                "{what}: latency_us_min ({}) is larger than latency_us_max ({})",
                latency.latency_us_min, latency.latency_us_max
            ),
        ));
    }
    Ok(())
}

/// Draws the run's network options: fixed values, or in swarm mode a value between 0 and each configured maximum.
fn draw_network(section: &NetworkSection, rng: &mut rng::SimRng) -> NetworkOptions {
    let mut options = section.options.clone();
    if section.swarm {
        options.loss = rng.random_range(0.0..=section.options.loss);
        options.duplicate = rng.random_range(0.0..=section.options.duplicate);
        options.reorder = rng.random_range(0.0..=section.options.reorder);
    }
    options
}

/// The per-seed fault knobs of a swarm step.
struct SwarmKnobs {
    kinds: Vec<ActionKind>,
    interval_ms_mean: u64,
}

fn draw_knobs(capabilities: &Capabilities, rng: &mut rng::SimRng) -> SwarmKnobs {
    let declared: Vec<ActionKind> = capabilities
        .keys()
        .copied()
        .filter(|kind| kind.is_fault() && *kind != ActionKind::Restart)
        .collect();
    let mut kinds: Vec<ActionKind> = declared
        .iter()
        .copied()
        .filter(|_| rng.random_bool(0.6))
        .collect();
    if kinds.is_empty() && !declared.is_empty() {
        kinds.push(declared[rng.random_range(0..declared.len())]);
    }
    SwarmKnobs {
        kinds,
        interval_ms_mean: rng.random_range(800..=8_000),
    }
}

fn pick<'a>(rng: &mut rng::SimRng, names: &'a [String]) -> &'a String {
    &names[rng.random_range(0..names.len())]
}

/// Expands one swarm step into concrete faults in [start_ms, start_ms + duration_ms). Every fault with a duration ends
/// inside the window and every crash is followed by a restart (when declared), so the phase after the swarm is fault-free.
fn expand_swarm(
    capabilities: &Capabilities,
    node_names: &[String],
    start_ms: u64,
    duration_ms: u64,
    faults_max: u32,
    rng: &mut rng::SimRng,
    out: &mut Vec<FaultEvent>,
) {
    let knobs = draw_knobs(capabilities, rng);
    if knobs.kinds.is_empty() {
        return;
    }
    let end_ms = start_ms + duration_ms;
    let mut at_ms = start_ms;
    for _ in 0..faults_max {
        // Exponential gaps (a Poisson process) with the seed's mean.
        let u: f64 = rng.random();
        at_ms += (-(knobs.interval_ms_mean as f64) * (1.0 - u).ln()) as u64 + 1;
        if at_ms + 100 >= end_ms {
            break;
        }
        let room_ms = end_ms - at_ms - 50;
        let kind = knobs.kinds[rng.random_range(0..knobs.kinds.len())];
        let names: Vec<String> = capabilities[&kind]
            .iter()
            .map(|&n| node_names[n].clone())
            .collect();
        let mut duration =
            |low: u64, high: u64| rng.random_range(low.min(room_ms)..=high.min(room_ms));
        let mut event = FaultEvent {
            at_ms,
            action: Some(kind),
            ..FaultEvent::default()
        };
        match kind {
            ActionKind::Partition => {
                let duration_ms = duration(200, 6_000);
                let mut a: Vec<String> = names
                    .iter()
                    .filter(|_| rng.random_bool(0.5))
                    .cloned()
                    .collect();
                if a.is_empty() || a.len() == node_names.len() {
                    a = vec![pick(rng, &names).clone()];
                }
                event.a = Some(a);
                event.one_way = rng.random_bool(0.3).then_some(true);
                event.duration_ms = Some(duration_ms);
            }
            ActionKind::Isolate => {
                event.duration_ms = Some(duration(200, 6_000));
                event.node = Some(pick(rng, &names).clone());
            }
            ActionKind::Clog => {
                if names.len() < 2 {
                    continue;
                }
                event.duration_ms = Some(duration(100, 3_000));
                let from = pick(rng, &names).clone();
                let to = loop {
                    let to = pick(rng, &names);
                    if *to != from {
                        break to.clone();
                    }
                };
                event.from = Some(from);
                event.to = Some(to);
            }
            ActionKind::Crash => {
                let down_ms = duration(200, 5_000);
                let node = pick(rng, &names).clone();
                event.node = Some(node.clone());
                let restart_allowed = capabilities
                    .get(&ActionKind::Restart)
                    .is_some_and(|nodes| nodes.iter().any(|&n| node_names[n] == node));
                out.push(event);
                if restart_allowed {
                    out.push(FaultEvent {
                        at_ms: at_ms + down_ms,
                        action: Some(ActionKind::Restart),
                        node: Some(node),
                        ..FaultEvent::default()
                    });
                }
                continue;
            }
            ActionKind::Pause => {
                event.duration_ms = Some(duration(100, 4_000));
                event.node = Some(pick(rng, &names).clone());
            }
            ActionKind::SkewClock => {
                event.node = Some(pick(rng, &names).clone());
                event.skew_ms = Some(rng.random_range(-2_000..=2_000));
            }
            ActionKind::DiskFault => {
                event.duration_ms = Some(duration(100, 3_000));
                event.node = Some(pick(rng, &names).clone());
            }
            ActionKind::Slow => {
                event.duration_ms = Some(duration(1_000, 10_000));
                event.node = Some(pick(rng, &names).clone());
                event.factor = Some(rng.random_range(2..=10));
            }
            ActionKind::Start | ActionKind::Heal | ActionKind::Check | ActionKind::Restart => {
                continue
            }
        }
        out.push(event);
    }
}

/// The plan of (template, seed): the template's steps laid out in time, swarm steps drawn from the seed.
pub fn plan_for_seed(template: &Template, seed: u64) -> FaultPlan {
    let mut rng = rng::stream(seed, "swarm");
    let network = draw_network(&template.network, &mut rng);
    let mut events = Vec::new();
    let mut at_ms = 0u64;
    for step in &template.steps {
        match step {
            Step::Event(event) => events.push(FaultEvent {
                at_ms,
                ..event.clone()
            }),
            Step::Wait { duration_ms } => at_ms += duration_ms,
            Step::Swarm {
                duration_ms,
                faults_max,
            } => {
                expand_swarm(
                    &template.capabilities,
                    &template.node_names,
                    at_ms,
                    *duration_ms,
                    *faults_max,
                    &mut rng,
                    &mut events,
                );
                at_ms += duration_ms;
            }
        }
    }
    events.sort_by_key(|event| event.at_ms);
    FaultPlan {
        format: PLAN_FORMAT.into(),
        version: PLAN_VERSION,
        template: template.name.clone(),
        seed,
        duration_ms: template.duration_ms,
        network,
        events,
    }
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

    #[test]
    fn a_seed_always_draws_the_same_plan_and_seeds_differ() {
        let t = template("split-brain.toml");
        assert_eq!(plan_for_seed(&t, 5), plan_for_seed(&t, 5));
        assert_ne!(plan_for_seed(&t, 5).events, plan_for_seed(&t, 6).events);
        assert_ne!(
            plan_for_seed(&t, 5).network,
            plan_for_seed(&t, 6).network,
            "swarm: each seed draws its network"
        );
    }

    #[test]
    fn plans_round_trip_through_toml() {
        let t = template("split-brain.toml");
        for seed in 0..20 {
            let plan = plan_for_seed(&t, seed);
            let parsed = FaultPlan::parse("plan.toml", &plan.to_toml(), &t.node_names).unwrap();
            assert_eq!(parsed, plan);
        }
    }

    #[test]
    fn swarm_faults_stay_in_their_window_and_crashes_restart() {
        let t = template("split-brain.toml");
        // split-brain.toml: the used isolation template waits 10 s in all, then 30 s of swarm.
        let (start_ms, end_ms) = (10_000, 40_000);
        for seed in 0..200 {
            let plan = plan_for_seed(&t, seed);
            assert!(
                plan.events.windows(2).all(|w| w[0].at_ms <= w[1].at_ms),
                "sorted"
            );
            let swarm: Vec<&FaultEvent> = plan
                .events
                .iter()
                .filter(|e| e.at_ms > start_ms && e.at_ms < end_ms)
                .collect();
            assert!(!swarm.is_empty(), "seed {seed} drew no faults");
            for event in swarm {
                assert!(
                    event.at_ms + event.duration_ms.unwrap_or(0) < end_ms,
                    "seed {seed}: {event:?} outlives the swarm"
                );
            }
            let crashes = plan
                .events
                .iter()
                .filter(|e| e.action == Some(ActionKind::Crash))
                .count();
            let restarts = plan
                .events
                .iter()
                .filter(|e| e.action == Some(ActionKind::Restart))
                .count();
            assert_eq!(
                crashes, restarts,
                "seed {seed}: every crash has its restart"
            );
        }
    }

    fn parse_error(plan: &FaultPlan) -> String {
        let t = template("split-brain.toml");
        FaultPlan::parse("p.toml", &plan.to_toml(), &t.node_names)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn plan_events_after_the_end_or_out_of_order_are_refused() {
        let t = template("split-brain.toml");
        let mut plan = plan_for_seed(&t, 1);
        let last = plan.events.len() - 1;
        plan.events[last].at_ms = plan.duration_ms + 1;
        let error = parse_error(&plan);
        assert!(
            error.starts_with(&format!("p.toml: event {last} (at_ms = 60001), key `at_ms`: the event is after the end of the run (duration_ms = 60000)")),
            "{error}"
        );
        plan.events[last].at_ms = plan.duration_ms;
        assert!(
            FaultPlan::parse("p.toml", &plan.to_toml(), &t.node_names).is_ok(),
            "at the end is in"
        );
        let mut plan = plan_for_seed(&t, 1);
        plan.events[1].at_ms = plan.events[0].at_ms + 5_000;
        plan.events[2].at_ms = plan.events[0].at_ms;
        let error = parse_error(&plan);
        assert!(
            error.contains("event 2 (at_ms = ") && error.contains("events are in time order"),
            "{error}"
        );
    }

    #[test]
    fn plan_durations_and_values_are_bounded() {
        let t = template("split-brain.toml");
        let mut plan = plan_for_seed(&t, 1);
        plan.duration_ms = u64::MAX;
        assert!(parse_error(&plan).contains("p.toml: duration_ms is between 1 and 86400000"));
        plan.duration_ms = 0;
        assert!(parse_error(&plan).contains("duration_ms is between 1 and 86400000"));
        let mut plan = plan_for_seed(&t, 1);
        let isolate = plan
            .events
            .iter()
            .position(|e| e.action == Some(ActionKind::Isolate))
            .unwrap();
        plan.events[isolate].duration_ms = Some(u64::MAX);
        let error = parse_error(&plan);
        assert!(
            error.contains(&format!("event {isolate}"))
                && error.contains("key `duration_ms`: duration_ms is at most 86400000"),
            "{error}"
        );
        let mut plan = plan_for_seed(&t, 1);
        plan.events[0] = FaultEvent {
            at_ms: 0,
            action: Some(ActionKind::SkewClock),
            node: Some("vnfc-a".into()),
            skew_ms: Some(i64::MIN),
            ..FaultEvent::default()
        };
        assert!(parse_error(&plan).contains("key `skew_ms`"));
    }

    #[test]
    fn plan_networks_are_checked_like_templates() {
        let t = template("split-brain.toml");
        let mut plan = plan_for_seed(&t, 1);
        plan.network.latency.latency_us_min = 10_000;
        plan.network.latency.latency_us_max = 10;
        let error = parse_error(&plan);
        assert!(
            error.contains("p.toml: network, key `latency_us_min`: network: latency_us_min (10000) is larger than latency_us_max (10)"),
            "{error}"
        );
        let mut plan = plan_for_seed(&t, 1);
        plan.network.reorder_us_max = u64::MAX;
        assert!(parse_error(&plan).contains("key `reorder_us_max`"));
        let mut plan = plan_for_seed(&t, 1);
        plan.network.loss = 2.0;
        assert!(parse_error(&plan).contains("key `loss`"));
        let mut plan = plan_for_seed(&t, 1);
        plan.network.links.push(crate::kernel::LinkOverride {
            from: "ems".into(),
            to: "nobody".into(),
            latency: LinkLatency::default(),
        });
        assert!(parse_error(&plan).contains("node `nobody` is not one of the model's nodes"));
    }

    #[test]
    fn bad_plan_files_name_the_event_and_key() {
        let t = template("split-brain.toml");
        let mut plan = plan_for_seed(&t, 1);
        plan.events[0].node = Some("vnfc-q".into());
        plan.events[0].action = Some(ActionKind::Crash);
        let error = FaultPlan::parse("p.toml", &plan.to_toml(), &t.node_names)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("p.toml") && error.contains("event 0") && error.contains("vnfc-q"),
            "{error}"
        );
        let text = plan.to_toml().replace("version = 1", "version = 99");
        let error = FaultPlan::parse("p.toml", &text, &t.node_names)
            .unwrap_err()
            .to_string();
        assert!(error.contains("version 99"), "{error}");
        let error = FaultPlan::parse("p.toml", "format = 3", &t.node_names)
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("p.toml:1: "), "{error}");
    }
}
