//! Workflow templates: scenarios as code.
//!
//! A template is a TOML file that names a model, sets its parameters, configures the network, declares its capabilities
//! (which fault kinds it may inject, on which nodes) and lists its steps. A `use` step inlines another template's steps
//! (same model), the way Argo WorkflowTemplates compose by reference. Loading is strict, like a service account per
//! template: any unknown key, any step whose action the template did not declare, any node outside the declared list is
//! refused with the file, the line and the key. Steps of a used template are checked against the *using* template's
//! capabilities, so composition never grants a power.
//!
//! This module does IO only to read template files; it never panics on bad input.

use crate::input::{read_input_text, InputKind};
use crate::kernel::{LinkLatency, LinkOverride, NetworkOptions, NodeId};
use crate::models::{ModelKind, ModelParams};
use crate::plan::{
    check_event, check_latency, check_probability, check_reorder, ActionKind, FaultEvent,
    DURATION_MS_MAX,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// How deep `use` may nest (a cycle is reported before this).
pub const USE_DEPTH_MAX: usize = 8;
/// Steps in one template after `use` expansion.
pub const STEPS_MAX: usize = 10_000;
/// `use` steps in one template after expansion (each reads a file).
pub const USES_MAX: usize = 1_000;
/// Faults one swarm step may draw.
pub const SWARM_FAULTS_MAX: u32 = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("{0}")]
    Read(#[from] crate::input::InputError),
    #[error("{path}:{line}: {message}")]
    Invalid {
        path: String,
        line: usize,
        key: String,
        message: String,
    },
}

impl TemplateError {
    pub fn key(&self) -> Option<&str> {
        match self {
            TemplateError::Invalid { key, .. } => Some(key),
            TemplateError::Read(_) => None,
        }
    }
}

/// 1-based line of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Capabilities: for each fault kind, the nodes it may touch.
pub type Capabilities = BTreeMap<ActionKind, Vec<NodeId>>;

/// One step after loading and `use` expansion.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// An action at the current time (its `at_ms` is filled in when the plan is laid out).
    Event(FaultEvent),
    Wait {
        duration_ms: u64,
    },
    /// Random faults drawn from the seed within the declared capabilities for `duration_ms`.
    Swarm {
        duration_ms: u64,
        faults_max: u32,
    },
}

/// The `[network]` table: options, plus whether each seed draws loss/duplicate/reorder up to the given values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NetworkSection {
    pub options: NetworkOptions,
    pub swarm: bool,
}

/// A loaded, validated template.
#[derive(Clone, Debug)]
pub struct Template {
    pub path: PathBuf,
    pub name: String,
    pub description: String,
    pub model: ModelKind,
    pub params: ModelParams,
    pub node_names: Vec<String>,
    pub duration_ms: u64,
    pub network: NetworkSection,
    pub capabilities: Capabilities,
    pub steps: Vec<Step>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTemplate {
    name: Spanned<String>,
    model: Spanned<String>,
    #[serde(default)]
    description: String,
    duration_s: Option<Spanned<u64>>,
    #[serde(default)]
    parameters: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    network: Option<RawNetwork>,
    #[serde(default)]
    capabilities: BTreeMap<Spanned<String>, Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    steps: Vec<RawStep>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    latency_us_min: Option<Spanned<u64>>,
    latency_us_max: Option<Spanned<u64>>,
    exponential: Option<bool>,
    loss: Option<Spanned<f64>>,
    duplicate: Option<Spanned<f64>>,
    reorder: Option<Spanned<f64>>,
    reorder_us_max: Option<Spanned<u64>>,
    swarm: Option<bool>,
    #[serde(default)]
    links: Vec<Spanned<LinkOverride>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    action: Spanned<String>,
    node: Option<Spanned<String>>,
    a: Option<Spanned<Vec<String>>>,
    b: Option<Spanned<Vec<String>>>,
    one_way: Option<Spanned<bool>>,
    from: Option<Spanned<String>>,
    to: Option<Spanned<String>>,
    duration_ms: Option<Spanned<u64>>,
    skew_ms: Option<Spanned<i64>>,
    factor: Option<Spanned<u32>>,
    /// For `use`: the other template's file, relative to this one.
    template: Option<Spanned<String>>,
    /// For `swarm`: the most faults to draw.
    faults_max: Option<Spanned<u32>>,
}

impl RawStep {
    /// Line of a key of this step, falling back to the `action` line.
    fn line_of_key(&self, text: &str, key: &str) -> usize {
        let span = match key {
            "node" => self.node.as_ref().map(|s| s.span()),
            "a" => self.a.as_ref().map(|s| s.span()),
            "b" => self.b.as_ref().map(|s| s.span()),
            "one_way" => self.one_way.as_ref().map(|s| s.span()),
            "from" => self.from.as_ref().map(|s| s.span()),
            "to" => self.to.as_ref().map(|s| s.span()),
            "duration_ms" => self.duration_ms.as_ref().map(|s| s.span()),
            "skew_ms" => self.skew_ms.as_ref().map(|s| s.span()),
            "factor" => self.factor.as_ref().map(|s| s.span()),
            "template" => self.template.as_ref().map(|s| s.span()),
            "faults_max" => self.faults_max.as_ref().map(|s| s.span()),
            _ => None,
        };
        line_of(text, span.unwrap_or_else(|| self.action.span()).start)
    }

    fn to_event(&self, kind: ActionKind) -> FaultEvent {
        FaultEvent {
            at_ms: 0,
            action: Some(kind),
            node: self.node.as_ref().map(|s| s.get_ref().clone()),
            a: self.a.as_ref().map(|s| s.get_ref().clone()),
            b: self.b.as_ref().map(|s| s.get_ref().clone()),
            one_way: self.one_way.as_ref().map(|s| *s.get_ref()),
            from: self.from.as_ref().map(|s| s.get_ref().clone()),
            to: self.to.as_ref().map(|s| s.get_ref().clone()),
            duration_ms: self.duration_ms.as_ref().map(|s| *s.get_ref()),
            skew_ms: self.skew_ms.as_ref().map(|s| *s.get_ref()),
            factor: self.factor.as_ref().map(|s| *s.get_ref()),
        }
    }

    /// Keys set on this step other than `action`.
    fn keys(&self) -> Vec<&'static str> {
        [
            ("node", self.node.is_some()),
            ("a", self.a.is_some()),
            ("b", self.b.is_some()),
            ("one_way", self.one_way.is_some()),
            ("from", self.from.is_some()),
            ("to", self.to.is_some()),
            ("duration_ms", self.duration_ms.is_some()),
            ("skew_ms", self.skew_ms.is_some()),
            ("factor", self.factor.is_some()),
            ("template", self.template.is_some()),
            ("faults_max", self.faults_max.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect()
    }
}

struct Loader {
    /// Files being loaded, outermost first, to report `use` cycles.
    stack: Vec<PathBuf>,
    /// `use` steps expanded so far (each reads and parses a file), against `USES_MAX`.
    uses_count: usize,
}

fn invalid(path: &Path, line: usize, key: &str, message: impl Into<String>) -> TemplateError {
    TemplateError::Invalid {
        path: path.display().to_string(),
        line,
        key: key.into(),
        message: message.into(),
    }
}

fn parse_raw(path: &Path) -> Result<(String, RawTemplate), TemplateError> {
    let text = read_input_text(path, InputKind::Template)?;
    let raw: RawTemplate = toml::from_str(&text).map_err(|e| {
        let line = e.span().map(|s| line_of(&text, s.start)).unwrap_or(1);
        let message = e.message().to_string();
        // serde names the key inside backticks: "unknown field `x`, expected ...".
        let key = message.split('`').nth(1).unwrap_or("").to_string();
        invalid(path, line, &key, message)
    })?;
    Ok((text, raw))
}

/// Loads and validates a template file.
pub fn load(path: &Path) -> Result<Template, TemplateError> {
    Loader {
        stack: Vec::new(),
        uses_count: 0,
    }
    .load_root(path)
}

impl Loader {
    fn load_root(&mut self, path: &Path) -> Result<Template, TemplateError> {
        let (text, raw) = parse_raw(path)?;
        check_name(raw.name.get_ref()).map_err(|message| {
            invalid(path, line_of(&text, raw.name.span().start), "name", message)
        })?;
        let model = ModelKind::from_name(raw.model.get_ref()).ok_or_else(|| {
            invalid(
                path,
                line_of(&text, raw.model.span().start),
                "model",
                format!(
                    "unknown model `{}` (known: {})",
                    raw.model.get_ref(),
                    ModelKind::names().join(", ")
                ),
            )
        })?;
        let mut params = ModelParams::defaults(model);
        for (key, value) in &raw.parameters {
            params
                .set(key.get_ref(), value.get_ref())
                .map_err(|message| {
                    invalid(
                        path,
                        line_of(&text, key.span().start),
                        key.get_ref(),
                        format!("parameters.{}: {message}", key.get_ref()),
                    )
                })?;
        }
        let node_names = params.node_names();
        let duration_ms = match &raw.duration_s {
            Some(d) if *d.get_ref() == 0 || *d.get_ref() > 86_400 => {
                return Err(invalid(
                    path,
                    line_of(&text, d.span().start),
                    "duration_s",
                    "duration_s must be between 1 and 86400",
                ))
            }
            Some(d) => d.get_ref() * 1_000,
            None => 60_000,
        };
        let network = network_section(path, &text, raw.network.as_ref(), &node_names)?;
        let mut capabilities = Capabilities::new();
        for (kind_name, nodes) in &raw.capabilities {
            let line = line_of(&text, kind_name.span().start);
            let kind = ActionKind::from_name(kind_name.get_ref())
                .filter(|k| k.is_fault())
                .ok_or_else(|| {
                    let faults: Vec<&str> = ActionKind::ALL
                        .iter()
                        .filter(|k| k.is_fault())
                        .map(|k| k.name())
                        .collect();
                    invalid(
                        path,
                        line,
                        kind_name.get_ref(),
                        format!(
                            "`{}` is not a fault kind (capabilities are: {})",
                            kind_name.get_ref(),
                            faults.join(", ")
                        ),
                    )
                })?;
            if nodes.get_ref().is_empty() {
                return Err(invalid(
                    path,
                    line,
                    kind_name.get_ref(),
                    format!(
                        "capabilities.{}: the node list is empty; list the nodes it may touch, or remove the line",
                        kind_name.get_ref()
                    ),
                ));
            }
            let mut ids = Vec::new();
            for node in nodes.get_ref() {
                let id = node_names
                    .iter()
                    .position(|n| n == node.get_ref())
                    .ok_or_else(|| {
                        invalid(
                            path,
                            line_of(&text, node.span().start),
                            kind_name.get_ref(),
                            format!(
                                "node `{}` is not one of the model's nodes ({})",
                                node.get_ref(),
                                node_names.join(", ")
                            ),
                        )
                    })?;
                if ids.contains(&id) {
                    // A node listed twice would weigh double in the swarm's draws, and a clog between two copies
                    // of one node has no second node to draw.
                    return Err(invalid(
                        path,
                        line_of(&text, node.span().start),
                        kind_name.get_ref(),
                        format!(
                            "capabilities.{}: node `{}` is listed twice",
                            kind_name.get_ref(),
                            node.get_ref()
                        ),
                    ));
                }
                ids.push(id);
            }
            capabilities.insert(kind, ids);
        }
        let mut steps = Vec::new();
        self.stack.push(path.to_path_buf());
        self.expand_steps(
            path,
            &text,
            &raw.steps,
            model,
            &node_names,
            &capabilities,
            &mut steps,
        )?;
        self.stack.pop();
        // Each step's duration is at most DURATION_MS_MAX (checked as it was read), so the sum of STEPS_MAX of them
        // fits; checked all the same, so that no input can wrap it.
        let mut timeline_ms = 0u64;
        for step in &steps {
            match step {
                Step::Wait { duration_ms } | Step::Swarm { duration_ms, .. } => {
                    timeline_ms = timeline_ms.saturating_add(*duration_ms)
                }
                Step::Event(_) => {}
            }
        }
        if timeline_ms > duration_ms {
            return Err(invalid(
                path,
                raw.duration_s.as_ref().map(|d| line_of(&text, d.span().start)).unwrap_or(1),
                "duration_s",
                format!("the steps take {timeline_ms} ms but duration_s is only {duration_ms} ms; raise duration_s"),
            ));
        }
        Ok(Template {
            path: path.to_path_buf(),
            name: raw.name.get_ref().clone(),
            description: raw.description,
            model,
            params,
            node_names,
            duration_ms,
            network,
            capabilities,
            steps,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn expand_steps(
        &mut self,
        path: &Path,
        text: &str,
        raw_steps: &[RawStep],
        model: ModelKind,
        node_names: &[String],
        capabilities: &Capabilities,
        out: &mut Vec<Step>,
    ) -> Result<(), TemplateError> {
        for step in raw_steps {
            let action = step.action.get_ref().as_str();
            let action_line = line_of(text, step.action.span().start);
            let only = |allowed: &[&str]| -> Result<(), TemplateError> {
                for key in step.keys() {
                    if !allowed.contains(&key) {
                        return Err(invalid(
                            path,
                            step.line_of_key(text, key),
                            key,
                            format!("key `{key}` is not used by action `{action}`"),
                        ));
                    }
                }
                Ok(())
            };
            match action {
                "wait" => {
                    only(&["duration_ms"])?;
                    let duration_ms =
                        step.duration_ms
                            .as_ref()
                            .map(|d| *d.get_ref())
                            .ok_or_else(|| {
                                invalid(
                                    path,
                                    action_line,
                                    "duration_ms",
                                    "action `wait` needs key `duration_ms`",
                                )
                            })?;
                    check_step_duration(path, text, step, duration_ms)?;
                    out.push(Step::Wait { duration_ms });
                }
                "swarm" => {
                    only(&["duration_ms", "faults_max"])?;
                    let duration_ms =
                        step.duration_ms
                            .as_ref()
                            .map(|d| *d.get_ref())
                            .ok_or_else(|| {
                                invalid(
                                    path,
                                    action_line,
                                    "duration_ms",
                                    "action `swarm` needs key `duration_ms`",
                                )
                            })?;
                    check_step_duration(path, text, step, duration_ms)?;
                    let faults_max = step
                        .faults_max
                        .as_ref()
                        .map(|f| *f.get_ref())
                        .unwrap_or(100);
                    if faults_max > SWARM_FAULTS_MAX {
                        return Err(invalid(
                            path,
                            step.line_of_key(text, "faults_max"),
                            "faults_max",
                            format!("faults_max is at most {SWARM_FAULTS_MAX}"),
                        ));
                    }
                    if !capabilities
                        .keys()
                        .any(|k| k.is_fault() && *k != ActionKind::Restart)
                    {
                        return Err(invalid(
                            path,
                            action_line,
                            "action",
                            "action `swarm` draws faults from the declared capabilities, but this template declares none; add a [capabilities] table",
                        ));
                    }
                    out.push(Step::Swarm {
                        duration_ms,
                        faults_max,
                    });
                }
                "use" => {
                    only(&["template"])?;
                    let Some(other) = &step.template else {
                        return Err(invalid(path, action_line, "template", "action `use` needs key `template` (a file path relative to this template)"));
                    };
                    let other_line = line_of(text, other.span().start);
                    let other_path = path
                        .parent()
                        .unwrap_or(Path::new("."))
                        .join(other.get_ref());
                    if self.stack.iter().any(|p| same_file(p, &other_path)) {
                        return Err(invalid(
                            path,
                            other_line,
                            "template",
                            format!("`use` of {} makes a cycle", other_path.display()),
                        ));
                    }
                    if self.stack.len() >= USE_DEPTH_MAX {
                        return Err(invalid(
                            path,
                            other_line,
                            "template",
                            format!("`use` nests deeper than {USE_DEPTH_MAX}"),
                        ));
                    }
                    // Steps are bounded by STEPS_MAX, but a `use` of a template without steps adds none: without
                    // this bound, 100 uses of 100 uses of ... (8 deep) read 10^16 files.
                    self.uses_count += 1;
                    if self.uses_count > USES_MAX {
                        return Err(invalid(
                            path,
                            other_line,
                            "template",
                            format!("more than {USES_MAX} `use` steps after expansion"),
                        ));
                    }
                    let (other_text, other_raw) = parse_raw(&other_path).map_err(|e| match e {
                        TemplateError::Read(source) => {
                            invalid(path, other_line, "template", format!("`use`: {source}"))
                        }
                        other => other,
                    })?;
                    if ModelKind::from_name(other_raw.model.get_ref()) != Some(model) {
                        return Err(invalid(
                            path,
                            other_line,
                            "template",
                            format!(
                                "used template {} is for model `{}`, not `{}`",
                                other_path.display(),
                                other_raw.model.get_ref(),
                                model.name()
                            ),
                        ));
                    }
                    self.stack.push(other_path.clone());
                    // The used template's steps are checked against *this* template's capabilities: least privilege.
                    self.expand_steps(
                        &other_path,
                        &other_text,
                        &other_raw.steps,
                        model,
                        node_names,
                        capabilities,
                        out,
                    )?;
                    self.stack.pop();
                }
                name => {
                    let kind = ActionKind::from_name(name).ok_or_else(|| {
                        let mut known: Vec<&str> =
                            ActionKind::ALL.iter().map(|k| k.name()).collect();
                        known.extend(["wait", "swarm", "use"]);
                        invalid(
                            path,
                            action_line,
                            "action",
                            format!("unknown action `{name}` (known: {})", known.join(", ")),
                        )
                    })?;
                    if step.template.is_some() || step.faults_max.is_some() {
                        let key = if step.template.is_some() {
                            "template"
                        } else {
                            "faults_max"
                        };
                        return Err(invalid(
                            path,
                            step.line_of_key(text, key),
                            key,
                            format!("key `{key}` is not used by action `{name}`"),
                        ));
                    }
                    let event = step.to_event(kind);
                    check_event(&event, node_names).map_err(|(key, message)| {
                        invalid(path, step.line_of_key(text, &key), &key, message)
                    })?;
                    if kind.is_fault() {
                        let Some(allowed) = capabilities.get(&kind) else {
                            return Err(invalid(
                                path,
                                action_line,
                                "action",
                                format!("action `{name}` is not declared in [capabilities]; add `{name} = [<nodes>]` to the template that runs it"),
                            ));
                        };
                        for node in event.nodes() {
                            if !allowed.iter().any(|&id| node_names[id] == node) {
                                return Err(invalid(
                                    path,
                                    action_line,
                                    "action",
                                    format!("action `{name}` on node `{node}` is not declared: [capabilities] {name} allows only [{}]",
                                        allowed.iter().map(|&id| node_names[id].as_str()).collect::<Vec<_>>().join(", ")),
                                ));
                            }
                        }
                    }
                    out.push(Step::Event(event));
                }
            }
            if out.len() > STEPS_MAX {
                return Err(invalid(
                    path,
                    action_line,
                    "action",
                    format!("more than {STEPS_MAX} steps after `use` expansion"),
                ));
            }
        }
        Ok(())
    }
}

/// The longest template name: it becomes part of a file name (`--shrink` writes `NAME-seed-N.toml`).
pub const NAME_BYTES_MAX: usize = 100;

/// A template's `name` is used in reports and as a file name under `--regressions-dir`, so it must be a plain file
/// name: letters, digits, `-`, `_` and `.`, not starting with `.` (no `..`, no `/`, no hidden files).
fn check_name(name: &str) -> Result<(), String> {
    let plain = !name.is_empty()
        && name.len() <= NAME_BYTES_MAX
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if plain {
        Ok(())
    } else {
        Err(format!(
            "name {name:?} must be a plain file name of at most {NAME_BYTES_MAX} letters, digits, `-`, `_` and `.`, \
             not starting with `.` (it names regression files), such as \"my-scenario\""
        ))
    }
}

/// A `wait` or `swarm` step lasts at most DURATION_MS_MAX: then no sum of steps can wrap.
fn check_step_duration(
    path: &Path,
    text: &str,
    step: &RawStep,
    duration_ms: u64,
) -> Result<(), TemplateError> {
    if duration_ms > DURATION_MS_MAX {
        return Err(invalid(
            path,
            step.line_of_key(text, "duration_ms"),
            "duration_ms",
            format!("duration_ms is at most {DURATION_MS_MAX} (a day), not {duration_ms}"),
        ));
    }
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn network_section(
    path: &Path,
    text: &str,
    raw: Option<&RawNetwork>,
    node_names: &[String],
) -> Result<NetworkSection, TemplateError> {
    let mut section = NetworkSection::default();
    let Some(raw) = raw else { return Ok(section) };
    // Each check names the line of its key, or of the `[network]` header for a key left at its default.
    let line = |span: Option<std::ops::Range<usize>>| {
        span.map_or_else(|| network_line(text), |s| line_of(text, s.start))
    };
    let options = &mut section.options;
    for (key, value) in [
        ("loss", &raw.loss),
        ("duplicate", &raw.duplicate),
        ("reorder", &raw.reorder),
    ] {
        if let Some(value) = value {
            let v = *value.get_ref();
            check_probability(key, v)
                .map_err(|message| invalid(path, line(Some(value.span())), key, message))?;
            match key {
                "loss" => options.loss = v,
                "duplicate" => options.duplicate = v,
                _ => options.reorder = v,
            }
        }
    }
    if let Some(value) = &raw.reorder_us_max {
        options.reorder_us_max = *value.get_ref();
        check_reorder(options.reorder_us_max).map_err(|message| {
            invalid(path, line(Some(value.span())), "reorder_us_max", message)
        })?;
    }
    let value = |field: &Option<Spanned<u64>>, default: u64| {
        field.as_ref().map_or(default, |v| *v.get_ref())
    };
    options.latency = LinkLatency {
        latency_us_min: value(&raw.latency_us_min, options.latency.latency_us_min),
        latency_us_max: value(&raw.latency_us_max, options.latency.latency_us_max),
        exponential: raw.exponential.unwrap_or(false),
    };
    check_latency(&options.latency, "network").map_err(|(key, message)| {
        let span = match key.as_str() {
            "latency_us_max" => raw.latency_us_max.as_ref(),
            _ => raw.latency_us_min.as_ref(),
        };
        invalid(path, line(span.map(|v| v.span())), &key, message)
    })?;
    for link in &raw.links {
        let l = link.get_ref();
        let link_line = line(Some(link.span()));
        for name in [&l.from, &l.to] {
            if !node_names.contains(name) {
                return Err(invalid(
                    path,
                    link_line,
                    "links",
                    format!(
                        "node `{name}` is not one of the model's nodes ({})",
                        node_names.join(", ")
                    ),
                ));
            }
        }
        check_latency(&l.latency, &format!("link {}->{}", l.from, l.to))
            .map_err(|(_, message)| invalid(path, link_line, "links", message))?;
        options.links.push(l.clone());
    }
    section.swarm = raw.swarm.unwrap_or(false);
    Ok(section)
}

/// The line of the `[network]` header, for errors that no single key carries.
fn network_line(text: &str) -> usize {
    text.find("[network]")
        .map_or(1, |offset| line_of(text, offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes files into a fresh directory for one test and returns it.
    fn dir_with(test: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tandem-template-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        dir
    }

    fn load_err(test: &str, text: &str) -> (usize, String, String) {
        let dir = dir_with(test, &[("t.toml", text)]);
        match load(&dir.join("t.toml")) {
            Err(TemplateError::Invalid {
                line,
                key,
                message,
                path,
            }) => {
                assert!(path.ends_with("t.toml"), "the error names the file: {path}");
                (line, key, message)
            }
            Err(other) => panic!("expected an invalid-template error, got {other}"),
            Ok(_) => panic!("expected {test} to be refused"),
        }
    }

    const HEAD: &str = "name = \"t\"\nmodel = \"split-brain\"\n";

    #[test]
    fn every_shipped_template_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let template = load(&path).unwrap_or_else(|e| panic!("{e}"));
                assert!(!template.steps.is_empty(), "{} has steps", path.display());
                count += 1;
            }
        }
        assert!(
            count >= 6,
            "a template per model plus the broken variants, found {count}"
        );
    }

    #[test]
    fn unknown_top_level_key_names_line_and_key() {
        let (line, key, message) = load_err("top", &format!("{HEAD}modle = \"x\"\n"));
        assert_eq!((line, key.as_str()), (3, "modle"), "{message}");
    }

    #[test]
    fn unknown_step_key_names_line_and_key() {
        let text = format!(
            "{HEAD}[[steps]]\naction = \"start\"\n\n[[steps]]\naction = \"wait\"\nduraton_ms = 5\n"
        );
        let (line, key, _) = load_err("step", &text);
        assert_eq!((line, key.as_str()), (8, "duraton_ms"));
    }

    #[test]
    fn undeclared_action_is_refused() {
        let text = format!("{HEAD}[[steps]]\naction = \"start\"\n[[steps]]\naction = \"crash\"\nnode = \"vnfc-a\"\n");
        let (line, key, message) = load_err("undeclared", &text);
        assert_eq!((line, key.as_str()), (6, "action"));
        assert!(
            message.contains("not declared in [capabilities]"),
            "{message}"
        );
    }

    #[test]
    fn action_on_an_undeclared_node_is_refused() {
        let text = format!(
            "{HEAD}[capabilities]\ncrash = [\"vnfc-b\"]\n[[steps]]\naction = \"crash\"\nnode = \"vnfc-a\"\n"
        );
        let (line, _, message) = load_err("node", &text);
        assert_eq!(line, 6);
        assert!(message.contains("allows only [vnfc-b]"), "{message}");
    }

    #[test]
    fn unknown_node_and_unused_key_name_their_lines() {
        let text = format!("{HEAD}[capabilities]\ncrash = [\"vnfc-a\"]\n[[steps]]\naction = \"crash\"\nnode = \"vnfc-z\"\n");
        let (line, key, _) = load_err("unknown-node", &text);
        assert_eq!((line, key.as_str()), (7, "node"));
        let text = format!("{HEAD}[capabilities]\ncrash = [\"vnfc-a\"]\n[[steps]]\naction = \"crash\"\nnode = \"vnfc-a\"\nskew_ms = 3\n");
        let (line, key, message) = load_err("unused-key", &text);
        assert_eq!((line, key.as_str()), (8, "skew_ms"), "{message}");
    }

    #[test]
    fn unknown_parameter_and_variant_name_their_lines() {
        let (line, key, _) = load_err("param", &format!("{HEAD}[parameters]\nheartbeat_ms = 5\n"));
        assert_eq!((line, key.as_str()), (4, "heartbeat_ms"));
        let (line, _, message) = load_err(
            "variant",
            &format!("{HEAD}[parameters]\n\nvariant = \"nope\"\n"),
        );
        assert_eq!(line, 5);
        assert!(
            message.contains("ignore-isolation"),
            "lists the known variants: {message}"
        );
    }

    #[test]
    fn use_is_checked_against_the_using_templates_capabilities() {
        let inner = format!("{HEAD}[capabilities]\ncrash = [\"vnfc-a\"]\n[[steps]]\naction = \"crash\"\nnode = \"vnfc-a\"\n");
        let outer = format!("{HEAD}[[steps]]\naction = \"use\"\ntemplate = \"inner.toml\"\n");
        let dir = dir_with("use", &[("inner.toml", &inner), ("outer.toml", &outer)]);
        let error = load(&dir.join("outer.toml")).unwrap_err().to_string();
        assert!(
            error.contains("inner.toml:6:") && error.contains("not declared"),
            "{error}"
        );
        let allowed = format!("{HEAD}[capabilities]\ncrash = [\"vnfc-a\"]\n[[steps]]\naction = \"use\"\ntemplate = \"inner.toml\"\n");
        std::fs::write(dir.join("outer.toml"), allowed).unwrap();
        let template = load(&dir.join("outer.toml")).unwrap();
        assert_eq!(template.steps.len(), 1);
    }

    #[test]
    fn use_cycles_are_reported() {
        let a = format!("{HEAD}[[steps]]\naction = \"use\"\ntemplate = \"b.toml\"\n");
        let b = format!("{HEAD}[[steps]]\naction = \"use\"\ntemplate = \"a.toml\"\n");
        let dir = dir_with("cycle", &[("a.toml", &a), ("b.toml", &b)]);
        let error = load(&dir.join("a.toml")).unwrap_err().to_string();
        assert!(
            error.contains("b.toml:5:") && error.contains("cycle"),
            "{error}"
        );
    }

    #[test]
    fn steps_longer_than_the_run_are_refused() {
        let text =
            format!("{HEAD}duration_s = 1\n[[steps]]\naction = \"wait\"\nduration_ms = 5000\n");
        let (line, key, _) = load_err("long", &text);
        assert_eq!((line, key.as_str()), (3, "duration_s"));
    }

    #[test]
    fn an_empty_capability_list_is_refused_before_a_swarm_draws_from_it() {
        // It used to load, and a swarm step then panicked drawing a node from the empty list.
        let text = format!(
            "{HEAD}[capabilities]\npartition = []\n[[steps]]\naction = \"swarm\"\nduration_ms = 30000\n"
        );
        let (line, key, message) = load_err("empty-capability", &text);
        assert_eq!((line, key.as_str()), (4, "partition"), "{message}");
        assert!(message.contains("the node list is empty"), "{message}");
        let text = format!("{HEAD}[capabilities]\nclog = [\"ems\", \"vnfm\", \"ems\"]\n");
        let (line, key, message) = load_err("twice", &text);
        assert_eq!((line, key.as_str()), (4, "clog"));
        assert!(message.contains("node `ems` is listed twice"), "{message}");
    }

    #[test]
    fn a_name_must_be_a_plain_file_name() {
        for name in [
            "../x",
            "/tmp/x",
            "a/b",
            "..",
            ".hidden",
            "",
            "a b",
            &"n".repeat(101),
        ] {
            let (line, key, message) = load_err(
                "name",
                &format!("name = {name:?}\nmodel = \"split-brain\"\n"),
            );
            assert_eq!((line, key.as_str()), (1, "name"), "{name}: {message}");
            assert!(message.contains("plain file name"), "{message}");
        }
        let dir = dir_with(
            "good-name",
            &[("t.toml", "name = \"my_scenario-2.v1\"\nmodel = \"hpo\"\n")],
        );
        assert_eq!(load(&dir.join("t.toml")).unwrap().name, "my_scenario-2.v1");
    }

    #[test]
    fn step_times_cannot_wrap() {
        // 2^64-1 ms then 10 ms used to wrap to 9 ms and pass the duration check.
        let text = format!(
            "{HEAD}[[steps]]\naction = \"wait\"\nduration_ms = 18446744073709551615\n[[steps]]\naction = \"wait\"\nduration_ms = 10\n"
        );
        let (line, key, message) = load_err("wrap", &text);
        assert_eq!((line, key.as_str()), (5, "duration_ms"), "{message}");
        assert!(message.contains("at most 86400000"), "{message}");
        let text = format!("{HEAD}[capabilities]\ncrash = [\"ems\"]\n[[steps]]\naction = \"swarm\"\nduration_ms = 86400001\n");
        let (line, key, _) = load_err("swarm-wrap", &text);
        assert_eq!((line, key.as_str()), (7, "duration_ms"));
        let text = format!("{HEAD}[capabilities]\nisolate = [\"ems\"]\n[[steps]]\naction = \"isolate\"\nnode = \"ems\"\nduration_ms = 18446744073709551615\n");
        let (line, key, _) = load_err("fault-wrap", &text);
        assert_eq!((line, key.as_str()), (8, "duration_ms"));
        // Steps each within the limit still add up past the run's duration: the sum is exact, not wrapped.
        let text = format!(
            "{HEAD}duration_s = 86400\n[[steps]]\naction = \"wait\"\nduration_ms = 86400000\n[[steps]]\naction = \"wait\"\nduration_ms = 86400000\n"
        );
        let (_, key, message) = load_err("sum", &text);
        assert_eq!(key, "duration_s");
        assert!(message.contains("the steps take 172800000 ms"), "{message}");
    }

    #[test]
    fn network_latencies_are_ordered_and_bounded() {
        let (line, key, message) = load_err(
            "latency",
            &format!("{HEAD}[network]\nlatency_us_min = 5000\nlatency_us_max = 100\n"),
        );
        assert_eq!((line, key.as_str()), (4, "latency_us_min"));
        assert!(
            message.contains("latency_us_min (5000) is larger than latency_us_max (100)"),
            "{message}"
        );
        // Only the max is given: the default min (200 us) is larger.
        let (line, key, _) = load_err(
            "latency-max",
            &format!("{HEAD}[network]\nlatency_us_max = 100\n"),
        );
        assert_eq!((line, key.as_str()), (3, "latency_us_min"));
        let (line, key, message) = load_err(
            "link",
            &format!("{HEAD}[network]\nlinks = [{{ from = \"ems\", to = \"vnfm\", latency_us_min = 9, latency_us_max = 1 }}]\n"),
        );
        assert_eq!((line, key.as_str()), (4, "links"));
        assert!(
            message.contains("link ems->vnfm: latency_us_min (9)"),
            "{message}"
        );
        let (line, key, _) = load_err(
            "huge",
            &format!("{HEAD}[network]\nlatency_us_max = 86400000001\n"),
        );
        assert_eq!((line, key.as_str()), (4, "latency_us_max"));
        let (line, key, _) = load_err(
            "reorder",
            &format!("{HEAD}[network]\n\nreorder_us_max = 86400000001\n"),
        );
        assert_eq!((line, key.as_str()), (5, "reorder_us_max"));
        let (line, key, _) = load_err("nan", &format!("{HEAD}[network]\nloss = nan\n"));
        assert_eq!((line, key.as_str()), (4, "loss"));
    }

    #[test]
    fn a_used_template_is_read_with_the_same_bound() {
        let outer = format!("{HEAD}[[steps]]\naction = \"use\"\ntemplate = \"/dev/zero\"\n");
        let (line, key, message) = load_err("use-zero", &outer);
        assert_eq!((line, key.as_str()), (5, "template"));
        assert!(
            message.contains("the template /dev/zero is larger than 4194304 bytes"),
            "{message}"
        );
    }

    #[test]
    fn use_expansions_are_bounded_even_without_steps() {
        // Four levels of 40 uses of an empty template: 2.56 million file reads, and no step to count.
        let mut files = vec![("e.toml".to_string(), HEAD.to_string())];
        for (name, inner) in [("a", "b"), ("b", "c"), ("c", "d"), ("d", "e")] {
            let uses =
                format!("[[steps]]\naction = \"use\"\ntemplate = \"{inner}.toml\"\n").repeat(40);
            files.push((format!("{name}.toml"), format!("{HEAD}{uses}")));
        }
        let files: Vec<(&str, &str)> = files
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect();
        let dir = dir_with("uses", &files);
        let error = load(&dir.join("a.toml")).unwrap_err();
        assert_eq!(error.key(), Some("template"));
        assert!(
            error
                .to_string()
                .contains("more than 1000 `use` steps after expansion"),
            "{error}"
        );
    }

    #[test]
    fn malformed_toml_is_an_error_not_a_panic() {
        let (line, _, _) = load_err("syntax", &format!("{HEAD}[[steps]\n"));
        assert_eq!(line, 3);
    }
}
