//! Structural fuzzing of the template decoder: proptest generates whole templates, mostly well formed (the model's
//! own nodes, parameters and action keys, so that loading goes deep and many templates load), each part replaced now
//! and then by a value at or past a limit, an empty or unknown node list, an unknown key, or a `use` of a good, a bad
//! or a cyclic template. Each must load or give a clean error naming the file and the key; a template that loads
//! must draw plans for any seed that parse back as plan files, and short ones must run. Never a panic: the test
//! profile keeps overflow checks on, so a sum that would wrap fails here too.

use proptest::prelude::*;
use proptest::strategy::BoxedStrategy;
use std::path::{Path, PathBuf};
use tandem_scenarios::plan::ActionKind;
use tandem_scenarios::template::Step;
use tandem_scenarios::{load, plan_for_seed, runner, FaultPlan, TemplateError};

/// Integers at the edges: zero, each limit and one past it, the largest and smallest TOML integers.
fn edge_integer() -> BoxedStrategy<String> {
    prop::sample::select(vec![
        "0",
        "1",
        "1000",
        "1001",
        "86400",
        "86401",
        "3600000",
        "3600001",
        "86400000",
        "86400001",
        "86400000000",
        "86400000001",
        "4294967295",
        "4294967296",
        "9223372036854775807",
        "-1",
        "-86400000",
        "-9223372036854775808",
    ])
    .prop_map(str::to_string)
    .boxed()
}

/// Mostly `valid`, sometimes an edge integer.
fn mostly(valid: impl Strategy<Value = String> + 'static) -> BoxedStrategy<String> {
    prop_oneof![40 => valid, 1 => edge_integer()].boxed()
}

fn ms(range: std::ops::Range<u64>) -> BoxedStrategy<String> {
    mostly(range.prop_map(|n| n.to_string()))
}

fn probability() -> BoxedStrategy<String> {
    prop_oneof![
        40 => (0.0f64..0.3).prop_map(|f| format!("{f:?}")),
        1 => prop::sample::select(vec!["1.0", "1.5", "-0.1", "nan", "inf"]).prop_map(str::to_string),
    ]
    .boxed()
}

struct Model {
    name: &'static str,
    nodes: Vec<String>,
    /// (parameter, valid values)
    parameters: Vec<(&'static str, BoxedStrategy<String>)>,
}

fn split_brain() -> Model {
    let mut parameters: Vec<(&'static str, BoxedStrategy<String>)> = vec![
        (
            "variant",
            prop_oneof![
                20 => prop::sample::select(vec!["\"correct\"", "\"ignore-isolation\"", "\"no-epoch-fencing\""]),
                1 => Just("\"nope\""),
            ]
            .prop_map(str::to_string)
            .boxed(),
        ),
        (
            "preferred_standby",
            prop_oneof![
                20 => prop::sample::select(vec!["\"vnfc-a\"", "\"vnfc-b\"", "\"none\""]),
                1 => Just("3"),
            ]
            .prop_map(str::to_string)
            .boxed(),
        ),
    ];
    for key in [
        "heartbeat_interval_ms",
        "detect_timeout_ms",
        "status_interval_ms",
        "peer_recent_ms",
        "ems_silence_ms",
        "vnfm_timeout_ms",
        "probe_interval_ms",
        "probe_failures_isolated",
        "isolation_memory_ms",
        "detection_window_ms",
        "flap_window_ms",
        "flap_changes_max",
        "converge_deadline_ms",
    ] {
        parameters.push((key, ms(1..2_000)));
    }
    Model {
        name: "split-brain",
        nodes: ["ems", "vnfm", "vnfc-a", "vnfc-b"]
            .map(String::from)
            .to_vec(),
        parameters,
    }
}

fn hpo() -> Model {
    let mut parameters: Vec<(&'static str, BoxedStrategy<String>)> = vec![
        (
            "variant",
            prop_oneof![
                20 => prop::sample::select(vec!["\"correct\"", "\"no-lease-fencing\""]),
                1 => Just("\"nope\""),
            ]
            .prop_map(str::to_string)
            .boxed(),
        ),
        (
            "policy",
            prop_oneof![20 => prop::sample::select(vec!["\"full\"", "\"asha\""]), 1 => Just("1")]
                .prop_map(str::to_string)
                .boxed(),
        ),
        ("workers", ms(1..8)),
        ("configs", ms(1..20)),
        ("min_iterations", ms(1..5)),
        ("max_iterations", ms(1..20)),
        ("reduction_factor", ms(2..5)),
        ("retry_limit", ms(0..10)),
    ];
    for key in [
        "iteration_ms",
        "lease_ms",
        "renew_interval_ms",
        "poll_interval_ms",
        "write_timeout_ms",
    ] {
        parameters.push((key, ms(1..2_000)));
    }
    let mut nodes: Vec<String> = vec!["master".into(), "repo".into()];
    nodes.extend((1..=6).map(|i| format!("worker-{i}")));
    Model {
        name: "hpo",
        nodes,
        parameters,
    }
}

fn node(nodes: &[String]) -> BoxedStrategy<String> {
    prop_oneof![
        60 => prop::sample::select(nodes.to_vec()),
        1 => Just("nobody".to_string()),
    ]
    .prop_map(|n| format!("{n:?}"))
    .boxed()
}

fn node_list(nodes: &[String]) -> BoxedStrategy<String> {
    let count = nodes.len();
    prop_oneof![
        40 => prop::sample::subsequence(nodes.to_vec(), 1..=count)
            .prop_map(|names| names.iter().map(|n| format!("{n:?}")).collect()),
        1 => prop::collection::vec(node(nodes), 2..4),
        1 => Just(Vec::new()),
    ]
    .prop_map(|nodes| format!("[{}]", nodes.join(", ")))
    .boxed()
}

/// The value of a step key, mostly valid for the model.
fn step_value(key: &str, nodes: &[String]) -> BoxedStrategy<String> {
    match key {
        "node" | "from" | "to" => node(nodes),
        "a" | "b" => node_list(nodes),
        "one_way" => Just("true".to_string()).boxed(),
        "duration_ms" => ms(0..5_000),
        "skew_ms" => mostly((-3_000i64..3_000).prop_map(|n| n.to_string())),
        "factor" => ms(1..10),
        "faults_max" => ms(0..50),
        "template" => prop::sample::select(vec![
            "inner.toml",
            "bad.toml",
            "self.toml",
            "missing.toml",
            "/dev/zero",
        ])
        .prop_map(|t| format!("{t:?}"))
        .boxed(),
        _ => edge_integer(),
    }
}

/// One `[[steps]]` table: an action with the keys it takes (now and then one missing or one extra).
fn step(nodes: Vec<String>) -> BoxedStrategy<String> {
    let mut actions: Vec<(&'static str, Vec<&'static str>)> = ActionKind::ALL
        .iter()
        .map(|kind| {
            let (required, optional) = kind.keys();
            (
                kind.name(),
                required.iter().chain(optional).copied().collect(),
            )
        })
        .collect();
    actions.push(("wait", vec!["duration_ms"]));
    actions.push(("swarm", vec!["duration_ms", "faults_max"]));
    actions.push(("use", vec!["template"]));
    actions.push(("wait", vec!["duration_ms"]));
    actions.push(("swarm", vec!["duration_ms", "faults_max"]));
    actions.push(("swarm", vec!["duration_ms", "faults_max"]));
    let known = prop::sample::select(actions);
    prop_oneof![60 => known, 1 => Just(("explode", vec![]))]
        .prop_flat_map(move |(action, keys)| {
            let values: Vec<BoxedStrategy<(String, String)>> = keys
                .iter()
                .chain(["bogus", "skew_ms", "duration_ms"].iter())
                .map(|&key| {
                    let expected = keys.contains(&key);
                    let keep = if expected { 0.95 } else { 0.01 };
                    prop::option::weighted(keep, step_value(key, &nodes))
                        .prop_map(move |v| (key.to_string(), v.unwrap_or_default()))
                        .boxed()
                })
                .collect();
            (Just(action), values)
        })
        .prop_map(|(action, values)| {
            let mut text = format!("[[steps]]\naction = {action:?}\n");
            let mut seen = Vec::new();
            for (key, value) in values {
                if !value.is_empty() && !seen.contains(&key) {
                    text += &format!("{key} = {value}\n");
                    seen.push(key);
                }
            }
            text
        })
        .boxed()
}

fn network(nodes: &[String]) -> BoxedStrategy<String> {
    let link =
        (node(nodes), node(nodes), ms(0..5_000), ms(0..50_000)).prop_map(|(from, to, min, max)| {
            format!(
                "{{ from = {from}, to = {to}, latency_us_min = {min}, latency_us_max = {max} }}"
            )
        });
    (
        prop::option::of(ms(0..5_000)),
        prop::option::of(ms(0..50_000)),
        prop::option::of(ms(0..50_000)),
        prop::option::of(probability()),
        prop::option::of(probability()),
        prop::option::of(probability()),
        prop::option::of(any::<bool>()),
        prop::collection::vec(link, 0..3),
    )
        .prop_map(
            |(min, max, reorder_max, loss, duplicate, reorder, swarm, links)| {
                let mut text = "[network]\n".to_string();
                for (key, value) in [
                    ("latency_us_min", min),
                    ("latency_us_max", max),
                    ("reorder_us_max", reorder_max),
                    ("loss", loss),
                    ("duplicate", duplicate),
                    ("reorder", reorder),
                    ("swarm", swarm.map(|b| b.to_string())),
                ] {
                    if let Some(value) = value {
                        text += &format!("{key} = {value}\n");
                    }
                }
                if !links.is_empty() {
                    text += &format!("links = [{}]\n", links.join(", "));
                }
                text
            },
        )
        .boxed()
}

fn template() -> BoxedStrategy<String> {
    prop_oneof![3 => Just(true), 1 => Just(false)]
        .prop_flat_map(|is_split_brain| {
            let model = if is_split_brain { split_brain() } else { hpo() };
            let name = prop_oneof![
                40 => Just("t".to_string()),
                1 => prop::sample::select(vec!["../x", "/abs/x", "", ".hidden", "a/b", "ok.v2"]).prop_map(str::to_string),
            ];
            let model_name = prop_oneof![60 => Just(model.name.to_string()), 1 => Just("nope".to_string())];
            let duration = prop::option::of(prop_oneof![
                20 => (1u64..3).prop_map(|n| n.to_string()),
                20 => (3u64..120).prop_map(|n| n.to_string()),
                1 => prop::sample::select(vec!["0", "86401", "-1"]).prop_map(str::to_string),
            ]);
            let parameters = prop::collection::vec(
                prop::sample::select((0..model.parameters.len()).collect::<Vec<_>>()),
                0..4,
            )
            .prop_flat_map({
                let strategies: Vec<(&'static str, BoxedStrategy<String>)> = model.parameters;
                let strategies = std::rc::Rc::new(strategies);
                move |indices: Vec<usize>| {
                    let strategies = strategies.clone();
                    let mut unique = indices.clone();
                    unique.sort_unstable();
                    unique.dedup();
                    unique
                        .into_iter()
                        .map(|i| {
                            let (key, value) = &strategies[i];
                            let key = key.to_string();
                            value.clone().prop_map(move |v| format!("{key} = {v}\n")).boxed()
                        })
                        .collect::<Vec<_>>()
                }
            });
            // Mostly every fault kind on every node (so that steps are allowed), now and then fewer, or a
            // list that is empty or names an unknown node, or a kind that is not a fault.
            let kinds: Vec<&'static str> =
                ActionKind::ALL.iter().filter(|k| k.is_fault()).map(|k| k.name()).collect();
            let all_nodes = format!(
                "[{}]",
                model.nodes.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
            );
            let capability = prop_oneof![
                6 => Just(all_nodes),
                3 => node_list(&model.nodes),
            ];
            let every_kind: Vec<_> = kinds
                .iter()
                .map(|&kind| capability.clone().prop_map(move |nodes| (kind, nodes)))
                .collect();
            let capabilities = prop_oneof![
                20 => every_kind.prop_map(|c| c.into_iter().collect()),
                10 => prop::collection::btree_map(prop::sample::select(kinds.clone()), capability, 0..kinds.len()),
                1 => Just([("start", "[\"ems\"]".to_string())].into_iter().collect()),
            ];
            let steps = prop::collection::vec(step(model.nodes.clone()), 0..6);
            (
                name,
                model_name,
                duration,
                parameters,
                prop::option::of(network(&model.nodes)),
                capabilities,
                steps,
            )
        })
        .prop_map(|(name, model, duration, parameters, network, capabilities, steps)| {
            let mut text = format!("name = {name:?}\nmodel = {model:?}\n");
            if let Some(duration) = duration {
                text += &format!("duration_s = {duration}\n");
            }
            text += "[parameters]\n";
            text += &parameters.concat();
            text += &network.unwrap_or_default();
            text += "[capabilities]\n";
            for (kind, nodes) in capabilities {
                text += &format!("{kind} = {nodes}\n");
            }
            text += &steps.concat();
            text
        })
        .boxed()
}

fn fuzz_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tandem-template-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("inner.toml"),
        "name = \"inner\"\nmodel = \"split-brain\"\n[[steps]]\naction = \"isolate\"\nnode = \"vnfc-a\"\nduration_ms = 500\n[[steps]]\naction = \"wait\"\nduration_ms = 700\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("bad.toml"),
        "name = \"bad\"\nmodel = \"split-brain\"\n[[steps]]\naction = \"wait\"\nduration_ms = 18446744073709551615\n",
    )
    .unwrap();
    dir
}

/// What happened to generated templates, to show that the fuzzing goes deep (printed with --nocapture).
#[derive(Default, Debug)]
struct Tally {
    refused: usize,
    loaded: usize,
    with_swarm: usize,
    ran: usize,
}

fn check(dir: &Path, case: usize, text: &str, tally: &mut Tally) -> Result<(), TestCaseError> {
    let path = dir.join(format!("case-{case}.toml"));
    std::fs::write(&path, text).unwrap();
    // `use` of self.toml is a cycle through the same text.
    std::fs::write(dir.join("self.toml"), text).unwrap();
    match load(&path) {
        Err(error @ TemplateError::Invalid { .. }) => {
            tally.refused += 1;
            let message = error.to_string();
            prop_assert!(
                message.starts_with(&dir.display().to_string()) && message.contains(".toml:"),
                "the error names the file and the line: {message}"
            );
            prop_assert!(error.key().is_some());
        }
        Err(error) => prop_assert!(false, "a generated file is readable: {error}"),
        Ok(template) => {
            tally.loaded += 1;
            if template
                .steps
                .iter()
                .any(|s| matches!(s, Step::Swarm { .. }))
            {
                tally.with_swarm += 1;
            }
            for seed in 0..4 {
                let plan = plan_for_seed(&template, seed);
                let parsed = FaultPlan::parse("drawn.toml", &plan.to_toml(), &template.node_names);
                prop_assert!(
                    parsed.as_ref().ok() == Some(&plan),
                    "a drawn plan is a valid plan file: {parsed:?}\n{text}"
                );
                // Short runs only, to keep the test quick; a run ends within its limits, without a panic.
                if template.duration_ms <= 2_000 {
                    tally.ran += 1;
                    let report = runner::run_plan(&template, &plan, false);
                    prop_assert!(report.stopped.is_none(), "{:?}\n{text}", report.stopped);
                }
            }
        }
    }
    Ok(())
}

#[test]
fn generated_templates_load_or_give_a_clean_error() {
    let dir = fuzz_dir();
    let tally = std::cell::RefCell::new(Tally::default());
    let case = std::cell::Cell::new(0);
    let config = ProptestConfig {
        cases: 1_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest::test_runner::TestRunner::new(config)
        .run(&template(), |text| {
            case.set(case.get() + 1);
            check(&dir, case.get(), &text, &mut tally.borrow_mut())
        })
        .unwrap();
    let tally = tally.into_inner();
    eprintln!("{tally:?}");
    // The generator is only useful if it reaches past the first error: many templates load, swarms included.
    assert!(
        tally.loaded >= 100 && tally.with_swarm >= 20 && tally.ran >= 50,
        "{tally:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The panics this fuzzing found, kept as fixed cases: each is a clean error now.
#[test]
fn found_cases_are_clean_errors() {
    let dir = std::env::temp_dir().join(format!("tandem-template-found-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (case, text, expected) in [
        (
            1,
            "name = \"t\"\nmodel = \"split-brain\"\n[capabilities]\npartition = []\n[[steps]]\naction = \"swarm\"\nduration_ms = 30000\n",
            "case-1.toml:4: capabilities.partition: the node list is empty",
        ),
        (
            2,
            "name = \"t\"\nmodel = \"split-brain\"\n[parameters]\nheartbeat_interval_ms = 9223372036854775807\n",
            "case-2.toml:4: parameters.heartbeat_interval_ms: must be between 1 and 3600000",
        ),
        (
            3,
            "name = \"t\"\nmodel = \"split-brain\"\n[network]\nreorder_us_max = 9223372036854775807\n",
            "case-3.toml:4: network.reorder_us_max is at most 86400000000 (a day)",
        ),
        (
            4,
            "name = \"t\"\nmodel = \"split-brain\"\n[capabilities]\nslow = [\"vnfc-a\"]\n[[steps]]\naction = \"slow\"\nnode = \"vnfc-a\"\nfactor = 4294967295\nduration_ms = 10\n",
            "case-4.toml:8: a slow-down factor is between 1 and 1000, not 4294967295",
        ),
        (
            5,
            "name = \"t\"\nmodel = \"split-brain\"\n[capabilities]\nskew_clock = [\"vnfc-a\"]\n[[steps]]\naction = \"skew_clock\"\nnode = \"vnfc-a\"\nskew_ms = -9223372036854775808\n",
            "case-5.toml:8: skew_ms is between -86400000 and 86400000 (a day)",
        ),
        (
            6,
            "name = \"t\"\nmodel = \"split-brain\"\n[capabilities]\nclog = [\"vnfc-a\", \"vnfc-a\"]\n[[steps]]\naction = \"swarm\"\nduration_ms = 30000\n",
            "case-6.toml:4: capabilities.clog: node `vnfc-a` is listed twice",
        ),
    ] {
        let path = dir.join(format!("case-{case}.toml"));
        std::fs::write(&path, text).unwrap();
        let error = load(&path).unwrap_err().to_string();
        assert!(error.contains(expected), "{error}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
