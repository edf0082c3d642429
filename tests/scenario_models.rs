//! End-to-end tests of the cdp and warm-pool scenario models through `tandem scenario`: the correct templates pass and
//! reach their dangerous states, the broken variants are caught within 1,000 seeds at a known first seed, the output is
//! byte-identical at --jobs 1 and 2, each failure's reproduce line reproduces it, and a failing plan shrinks.

mod common;

use std::process::{Command, Output};

fn tandem(args: &[&str]) -> Output {
    Command::new(common::tandem())
        .args(args)
        .current_dir(common::repo())
        .output()
        .expect("the tandem binary runs")
}

fn stdout(output: &Output) -> String {
    common::text(&output.stdout)
}

fn scratch(test: &str) -> std::path::PathBuf {
    common::scratch(&format!("scenario-models-{test}"))
}

const CDP: &str = "scenarios/templates/cdp.toml";
const CDP_BROKEN: &str = "scenarios/templates/cdp-ack-before-journal.toml";
const POOL: &str = "scenarios/templates/warm-pool.toml";
const POOL_BROKEN: &str = "scenarios/templates/warm-pool-available-before-warm.toml";

/// The summary line of a checker: its failure count and first failing seed.
fn checker_line(text: &str, checker: &str) -> (u64, Option<u64>) {
    let line = text
        .lines()
        .find(|l| l.starts_with(checker))
        .unwrap_or_else(|| panic!("no line for {checker}:\n{text}"));
    let fields: Vec<&str> = line.split_whitespace().collect();
    (fields[1].parse().unwrap(), fields[2].parse().ok())
}

/// How many seeds reached a coverage property (the column after its name).
fn coverage_seeds(text: &str, property: &str) -> u64 {
    let line = text
        .lines()
        .find(|l| l.starts_with(property))
        .unwrap_or_else(|| panic!("no coverage line {property}:\n{text}"));
    line[property.len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn correct_templates_pass_and_reach_their_dangerous_states() {
    let cases: [(&str, &[&str]); 2] = [
        (
            CDP,
            &[
                "failover with journal entries in flight",
                "link down at the site failure",
                "failover lost acknowledged writes within the RPO",
                "acknowledgement held by the RPO guard",
                "protected site restarted from its journal",
            ],
        ),
        (
            POOL,
            &[
                "crash during warmup",
                "warmup abandoned (slow or lost host)",
                "burst scaled the pool out",
                "request used an operation the warmup missed",
                "pool below its target size",
                "recovery deadline after a fault checked",
            ],
        ),
    ];
    for (template, properties) in cases {
        let out = tandem(&["scenario", "run", template, "--seeds", "0..300"]);
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(0), "{template}:\n{text}");
        assert!(text.contains("300 runs, 300 passed, 0 failed"), "{text}");
        assert!(!text.contains("NOT REACHED"), "{text}");
        for property in properties {
            assert!(
                coverage_seeds(&text, property) >= 10,
                "{template}: `{property}` reached by too few seeds:\n{text}"
            );
        }
    }
}

/// The broken variants fail at these first seeds (measured; a change in the model that moves them must say why).
#[test]
fn broken_variants_are_caught_within_1000_seeds() {
    let cases: [(&str, &[(&str, u64)]); 2] = [
        (
            CDP_BROKEN,
            &[
                ("no-acked-write-lost-beyond-rpo", FIRST_CDP_LOST),
                ("recovered-image-was-primary-state", FIRST_CDP_IMAGE),
            ],
        ),
        (POOL_BROKEN, &[("served-only-when-warm", FIRST_POOL_WARM)]),
    ];
    for (template, checkers) in cases {
        let out = tandem(&["scenario", "run", template, "--seeds", "0..1000"]);
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(1), "{template}:\n{text}");
        for &(checker, first) in checkers {
            let (failures, seed) = checker_line(&text, checker);
            assert!(failures > 0, "{template}: {checker} never failed:\n{text}");
            assert_eq!(
                seed,
                Some(first),
                "{template}: first failing seed of {checker}"
            );
        }
    }
}

const FIRST_CDP_LOST: u64 = 2;
const FIRST_CDP_IMAGE: u64 = 9;
const FIRST_POOL_WARM: u64 = 0;

#[test]
fn output_is_byte_identical_at_jobs_1_and_2() {
    let dir = scratch("jobs");
    for template in [CDP, CDP_BROKEN, POOL, POOL_BROKEN] {
        let mut outputs = Vec::new();
        for jobs in ["1", "2"] {
            let json = dir.join(format!("r{jobs}.json"));
            let junit = dir.join(format!("r{jobs}.xml"));
            let out = tandem(&[
                "scenario",
                "run",
                template,
                "--seeds",
                "0..60",
                "--jobs",
                jobs,
                "--json",
                json.to_str().unwrap(),
                "--junit",
                junit.to_str().unwrap(),
            ]);
            outputs.push((
                out.status.code(),
                stdout(&out),
                std::fs::read(&json).unwrap(),
                std::fs::read(&junit).unwrap(),
            ));
        }
        assert_eq!(outputs[0], outputs[1], "{template}");
        let json: serde_json::Value = serde_json::from_slice(&outputs[0].2).unwrap();
        assert_eq!(json["runs"], 60);
    }
}

#[test]
fn each_model_s_reproduce_line_reproduces_its_failure() {
    for (template, checker) in [
        (CDP_BROKEN, "no-acked-write-lost-beyond-rpo"),
        (POOL_BROKEN, "served-only-when-warm"),
    ] {
        let out = tandem(&["scenario", "run", template, "--seeds", "0..20"]);
        assert_eq!(out.status.code(), Some(1));
        let text = stdout(&out);
        let line = text
            .lines()
            .map(str::trim_start)
            .find(|l| l.starts_with("reproduce: "))
            .expect("a reproduce line");
        let command = line.trim_start_matches("reproduce: ");
        assert!(command.starts_with(&format!("tandem scenario run {template} --seed ")));
        let args: Vec<&str> = command.split_whitespace().skip(1).collect();
        let again = tandem(&args);
        assert_eq!(again.status.code(), Some(1), "{command}");
        let again_text = stdout(&again);
        assert!(
            again_text.contains("1 runs, 0 passed, 1 failed"),
            "{again_text}"
        );
        assert!(checker_line(&again_text, checker).0 > 0, "{again_text}");
    }
}

#[test]
fn a_failing_cdp_plan_shrinks_and_replays() {
    let dir = scratch("shrink");
    let seed = FIRST_CDP_LOST.to_string();
    let out = tandem(&[
        "scenario",
        "run",
        CDP_BROKEN,
        "--seed",
        &seed,
        "--shrink",
        "--regressions-dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let plan_path = dir.join(format!("cdp-ack-before-journal-seed-{seed}.toml"));
    let plan = std::fs::read_to_string(&plan_path).unwrap();
    let full = stdout(&tandem(&["scenario", "plan", CDP_BROKEN, "--seed", &seed]));
    assert!(
        plan.matches("[[events]]").count() < full.matches("[[events]]").count(),
        "shrinking dropped events:\n{plan}"
    );
    let again = tandem(&[
        "scenario",
        "run",
        CDP_BROKEN,
        "--plan",
        plan_path.to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(1), "{}", stdout(&again));
    // The same plan on the correct model passes: the failure is the variant's, not the plan's.
    let fixed = tandem(&[
        "scenario",
        "run",
        CDP,
        "--plan",
        plan_path.to_str().unwrap(),
    ]);
    assert_eq!(fixed.status.code(), Some(0), "{}", stdout(&fixed));
}

#[test]
fn list_names_the_new_models() {
    let out = tandem(&["scenario", "list"]);
    let text = stdout(&out);
    for name in [
        "cdp",
        "cdp-ack-before-journal",
        "warm-pool",
        "warm-pool-available-before-warm",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
}
