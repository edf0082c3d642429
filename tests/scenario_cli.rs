//! End-to-end tests of `tandem scenario ...`: they run the built binary on the shipped templates and check what a CI
//! user sees: the summary, exit statuses, reproduce lines, JSON and JUnit reports, shrinking, sharding, `show`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tandem(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the tandem binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("stderr is UTF-8")
}

fn scratch(test: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("tandem-scenario-cli-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const SPLIT_BRAIN: &str = "scenarios/templates/split-brain.toml";
const HPO: &str = "scenarios/templates/hpo.toml";
const IGNORE_ISOLATION: &str = "scenarios/templates/split-brain-ignore-isolation.toml";

/// A tiny well-formedness check: every start tag is closed in order, and the text has no raw `<` or `&` outside tags
/// and entities.
fn assert_well_formed_xml(xml: &str) {
    let mut stack: Vec<String> = Vec::new();
    let mut rest = xml.trim_start();
    assert!(rest.starts_with("<?xml "), "XML declaration first");
    rest = &rest[rest.find("?>").unwrap() + 2..];
    while let Some(open) = rest.find('<') {
        let text = &rest[..open];
        for (i, _) in text.match_indices('&') {
            let entity = &text[i..text[i..]
                .find(';')
                .map(|e| i + e + 1)
                .expect("entity ends with ;")];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].contains(&entity),
                "bad entity {entity}"
            );
        }
        let close = open + rest[open..].find('>').expect("tag closes");
        let tag = &rest[open + 1..close];
        assert!(!tag.contains('<'), "no `<` inside a tag: {tag}");
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name), "closing tag matches");
        } else if !tag.ends_with('/') {
            stack.push(tag.split_whitespace().next().unwrap().to_string());
        }
        rest = &rest[close + 1..];
    }
    assert!(stack.is_empty(), "unclosed tags: {stack:?}");
}

#[test]
fn run_output_is_byte_identical_at_any_job_count() {
    let dir = scratch("jobs");
    let mut outputs = Vec::new();
    for jobs in ["1", "2", "3"] {
        let json = dir.join(format!("r{jobs}.json"));
        let junit = dir.join(format!("r{jobs}.xml"));
        let out = tandem(&[
            "scenario",
            "run",
            SPLIT_BRAIN,
            "--seeds",
            "0..120",
            "--jobs",
            jobs,
            "--json",
            json.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
        outputs.push((
            stdout(&out),
            std::fs::read(&json).unwrap(),
            std::fs::read(&junit).unwrap(),
        ));
    }
    assert_eq!(outputs[0], outputs[1]);
    assert_eq!(outputs[0], outputs[2]);
    assert!(
        outputs[0].0.contains("120 runs, 120 passed, 0 failed"),
        "{}",
        outputs[0].0
    );
}

#[test]
fn json_and_junit_reports_are_versioned_and_valid() {
    let dir = scratch("reports");
    let json_path = dir.join("report.json");
    let junit_path = dir.join("junit.xml");
    let out = tandem(&[
        "scenario",
        "run",
        IGNORE_ISOLATION,
        "--seeds",
        "0..40",
        "--json",
        json_path.to_str().unwrap(),
        "--junit",
        junit_path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "a failing checker exits 1");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(json["format"], "tandem-scenario-report");
    assert_eq!(json["version"], 2);
    assert_eq!(json["runs"], 40);
    let failed = json["failed"].as_u64().unwrap();
    assert!(failed > 0);
    assert_eq!(json["passed"].as_u64().unwrap() + failed, 40);
    assert_eq!(
        json["checkers"]["decision-pure"]["failed_seeds"].as_u64(),
        Some(failed)
    );
    let first = &json["failures"][0];
    let seed = first["seed"].as_u64().unwrap();
    assert_eq!(
        first["reproduce"],
        format!("tandem scenario run {IGNORE_ISOLATION} --seed {seed}")
    );
    assert!(json["metrics"]["dual_active_ms"]["p99"].as_f64().unwrap() > 0.0);
    let junit = std::fs::read_to_string(&junit_path).unwrap();
    assert_well_formed_xml(&junit);
    assert!(junit.contains(
        r#"<testcase classname="scenario.split-brain-ignore-isolation" name="decision-pure">"#
    ));
    assert!(junit.contains(
        r#"<testcase classname="scenario.split-brain-ignore-isolation" name="single-active"/>"#
    ));
    assert!(junit.contains(r#"<property name="version" value="2"/>"#));
}

#[test]
fn each_failure_prints_a_reproduce_line_that_reproduces_it() {
    let out = tandem(&["scenario", "run", IGNORE_ISOLATION, "--seeds", "0..30"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("reproduce: "))
        .collect();
    let failed: usize = text
        .split(" failed")
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        lines.len(),
        failed,
        "one reproduce line per failing seed:\n{text}"
    );
    let command = lines[0].trim_start().trim_start_matches("reproduce: ");
    let args: Vec<&str> = command.split_whitespace().skip(1).collect();
    let again = tandem(&args);
    assert_eq!(
        again.status.code(),
        Some(1),
        "the reproduce line fails again"
    );
    assert!(
        stdout(&again).contains("1 runs, 0 passed, 1 failed"),
        "{}",
        stdout(&again)
    );
    assert!(stdout(&again).contains("decision-pure"));
}

#[test]
fn bad_templates_exit_2_naming_file_line_and_key() {
    let dir = scratch("bad");
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "name = \"bad\"\nmodel = \"split-brain\"\n\n[[steps]]\naction = \"start\"\n\n[[steps]]\naction = \"partition\"\na = [\"vnfc-a\"]\n",
    )
    .unwrap();
    let out = tandem(&["scenario", "run", path.to_str().unwrap(), "--seed", "1"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains(&format!("{}:8:", path.display())), "{err}");
    assert!(
        err.contains("`partition` is not declared in [capabilities]"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    std::fs::write(
        &path,
        "name = \"bad\"\nmodel = \"split-brain\"\nstpes = []\n",
    )
    .unwrap();
    let err = stderr(&tandem(&[
        "scenario",
        "show",
        path.to_str().unwrap(),
        "--seed",
        "1",
    ]));
    assert!(
        err.contains(":3:") && err.contains("unknown field `stpes`"),
        "{err}"
    );

    let missing = tandem(&["scenario", "run", "no/such/template.toml"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("no/such/template.toml"));
}

#[test]
fn show_prints_the_event_timeline() {
    let out = tandem(&[
        "scenario",
        "show",
        "scenarios/templates/split-brain-isolation.toml",
        "--seed",
        "3",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("fault plan: isolate vnfc-a for 3000 ms"),
        "{text}"
    );
    assert!(text.contains("vnfc-b     becomes Active"), "{text}");
    assert!(text.contains("vnfc-a steps down"), "{text}");
    assert!(text.contains("ok   single-active"), "{text}");
    let times: Vec<f64> = text
        .lines()
        .filter(|l| l.contains(" ms  "))
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert!(
        times.len() >= 6 && times.windows(2).all(|w| w[0] <= w[1]),
        "the timeline is in time order"
    );
}

#[test]
fn shrink_writes_a_minimal_plan_that_replays_the_failure() {
    let dir = scratch("shrink");
    let seed = "0";
    let out = tandem(&[
        "scenario",
        "run",
        IGNORE_ISOLATION,
        "--seed",
        seed,
        "--shrink",
        "--regressions-dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let plan_path = dir.join("split-brain-ignore-isolation-seed-0.toml");
    let plan = std::fs::read_to_string(&plan_path).unwrap();
    let replay = format!(
        "tandem scenario run {IGNORE_ISOLATION} --plan {}",
        plan_path.display()
    );
    assert!(plan.contains(&format!("# Reproduce: {replay}")), "{plan}");
    assert!(stdout(&out).contains(&format!("reproduce: {replay}")));
    let full = stdout(&tandem(&[
        "scenario",
        "plan",
        IGNORE_ISOLATION,
        "--seed",
        seed,
    ]));
    assert!(
        plan.matches("[[events]]").count() < full.matches("[[events]]").count(),
        "shrinking dropped events"
    );
    let again = tandem(&[
        "scenario",
        "run",
        IGNORE_ISOLATION,
        "--plan",
        plan_path.to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stdout(&again).contains(&format!("reproduce: {replay}")),
        "{}",
        stdout(&again)
    );
    assert!(!stderr(&again).contains("warning"), "{}", stderr(&again));
    assert!(
        plan.contains("loss = 0.0\n"),
        "the network noise is shrunk too:\n{plan}"
    );
    // The broken variant's regression plan runs on the fixed template (how a fix is checked), with a warning.
    let fixed = tandem(&[
        "scenario",
        "run",
        SPLIT_BRAIN,
        "--plan",
        plan_path.to_str().unwrap(),
    ]);
    assert_eq!(fixed.status.code(), Some(0), "{}", stderr(&fixed));
    assert!(
        stderr(&fixed).contains("tandem: warning: the plan")
            && stderr(&fixed).contains("made from template `split-brain-ignore-isolation`"),
        "{}",
        stderr(&fixed)
    );
}

#[test]
fn shards_partition_the_seed_range() {
    let counts: Vec<usize> = ["0/3", "1/3", "2/3"]
        .iter()
        .map(|shard| {
            let out = tandem(&[
                "scenario",
                "run",
                IGNORE_ISOLATION,
                "--seeds",
                "0..50",
                "--shard",
                shard,
            ]);
            let text = stdout(&out);
            let runs = text
                .split(" runs,")
                .next()
                .unwrap()
                .rsplit(' ')
                .next()
                .unwrap();
            runs.parse().unwrap()
        })
        .collect();
    assert_eq!(counts, vec![17, 17, 16]);
    let bad = tandem(&["scenario", "run", SPLIT_BRAIN, "--shard", "3/3"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("0-based"));
}

#[test]
fn check_determinism_runs_each_seed_twice() {
    let out = tandem(&[
        "scenario",
        "run",
        HPO,
        "--seeds",
        "0..40",
        "--check-determinism",
    ]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).contains("40 runs, 40 passed, 0 failed"));
    assert!(
        !stdout(&out).contains("determinism"),
        "no determinism failures reported"
    );
}

#[test]
fn help_explains_every_run_flag_with_an_example() {
    let text = stdout(&tandem(&["scenario", "run", "--help"]));
    for flag in [
        "--seeds",
        "--seed",
        "--plan",
        "--jobs",
        "--json",
        "--junit",
        "--shard",
        "--shrink",
        "--check-determinism",
    ] {
        assert!(text.contains(flag), "--help mentions {flag}");
    }
    assert!(
        text.contains("tandem scenario run scenarios/templates/split-brain.toml --seeds 0..10000"),
        "{text}"
    );
    assert!(Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(SPLIT_BRAIN)
        .exists());
}

#[test]
fn a_template_named_outside_the_regressions_dir_is_refused_before_shrinking() {
    let dir = scratch("escape");
    let sub = dir.join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    let text = std::fs::read_to_string(IGNORE_ISOLATION).unwrap();
    let name_line = text.lines().find(|l| l.starts_with("name = ")).unwrap();
    for (file, name) in [("up.toml", "../escaped"), ("abs.toml", "/tmp/escaped")] {
        let path = sub.join(file);
        std::fs::write(&path, text.replace(name_line, &format!("name = {name:?}"))).unwrap();
        let regressions = sub.join("regressions");
        let out = tandem(&[
            "scenario",
            "run",
            path.to_str().unwrap(),
            "--seed",
            "3",
            "--shrink",
            "--regressions-dir",
            regressions.to_str().unwrap(),
        ]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&format!("{file}:")) && err.contains("must be a plain file name"),
            "{err}"
        );
        assert!(!dir.join("escaped-seed-3.toml").exists());
        assert!(!sub.join("escaped-seed-3.toml").exists());
        assert!(!Path::new("/tmp/escaped-seed-3.toml").exists());
    }
}

#[test]
fn plan_files_with_events_after_the_end_are_refused() {
    let dir = scratch("late-plan");
    let plan = tandem(&["scenario", "plan", SPLIT_BRAIN, "--seed", "7"]);
    assert!(plan.status.success());
    let text = stdout(&plan);
    let last_at = text
        .lines()
        .rfind(|l| l.starts_with("at_ms = "))
        .unwrap()
        .to_string();
    let path = dir.join("late.toml");
    std::fs::write(&path, text.replace(&last_at, "at_ms = 60001")).unwrap();
    let out = tandem(&[
        "scenario",
        "run",
        SPLIT_BRAIN,
        "--plan",
        path.to_str().unwrap(),
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("late.toml: event ") && err.contains("after the end of the run"),
        "{err}"
    );
}

#[test]
fn endless_and_oversized_inputs_are_refused_naming_the_file() {
    for args in [
        vec!["scenario", "run", "/dev/zero"],
        vec!["scenario", "run", SPLIT_BRAIN, "--plan", "/dev/zero"],
    ] {
        let out = tandem(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("/dev/zero is larger than "), "{err}");
    }
}

#[test]
fn thread_and_seed_counts_are_bounded() {
    for (args, expected) in [
        (
            vec!["scenario", "run", SPLIT_BRAIN, "--jobs", "0"],
            "--jobs 0: must be between 1 and 1024",
        ),
        (
            vec!["scenario", "run", SPLIT_BRAIN, "--jobs", "5000"],
            "--jobs 5000: must be between 1 and 1024",
        ),
        (
            vec!["scenario", "bench", SPLIT_BRAIN, "--jobs", "5000"],
            "--jobs 5000: must be between 1 and 1024",
        ),
        (
            vec!["scenario", "bench", SPLIT_BRAIN, "--seeds", "1000000000000"],
            "--seeds 1000000000000: must be between 1 and 10000000",
        ),
        (
            vec!["scenario", "bench", SPLIT_BRAIN, "--seeds", "0"],
            "--seeds 0: must be between 1",
        ),
    ] {
        let out = tandem(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

const NO_FENCING: &str = "scenarios/templates/hpo-no-lease-fencing.toml";

fn json_of(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn per_seed_junit_has_one_case_per_seed_matching_the_json() {
    let dir = scratch("per-seed");
    let (json, junit) = (dir.join("r.json"), dir.join("r.xml"));
    let out = tandem(&[
        "scenario",
        "run",
        NO_FENCING,
        "--seeds",
        "10..90",
        "--json",
        json.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
        "--junit-cases",
        "seed",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report = json_of(&json);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_well_formed_xml(&xml);
    let failed = report["failed"].as_u64().unwrap();
    assert!(failed > 0 && failed < 80, "{failed}");
    assert!(xml.contains(&format!(
        r#"<testsuite name="hpo-no-lease-fencing" tests="80" failures="{failed}""#
    )));
    assert_eq!(xml.matches("<testcase ").count(), 80);
    assert_eq!(xml.matches("<failure ").count() as u64, failed);
    let results = report["seed_results"].as_array().unwrap();
    assert_eq!(results.len(), 80);
    for r in results {
        let seed = r["seed"].as_u64().unwrap();
        let case = format!(r#"name="seed {seed}""#);
        let at = xml
            .find(&case)
            .unwrap_or_else(|| panic!("no case for seed {seed}"));
        let case_text = &xml[at..at + xml[at..].find("testcase>").map_or(case.len() + 2, |e| e)];
        if r["passed"].as_bool().unwrap() {
            assert!(
                xml[at..].starts_with(&format!("{case}/>")),
                "seed {seed} passed"
            );
        } else {
            let reproduce = format!("reproduce: tandem scenario run {NO_FENCING} --seed {seed}");
            assert!(case_text.contains(&reproduce), "{case_text}");
            for checker in r["failed"].as_array().unwrap() {
                assert!(case_text.contains(checker.as_str().unwrap()), "{case_text}");
            }
        }
    }
}

#[test]
fn merging_four_shards_equals_the_unsharded_run() {
    let dir = scratch("merge");
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let mut shards = Vec::new();
    for k in 0..4 {
        let shard = format!("{k}/4");
        let out = tandem(&[
            "scenario",
            "run",
            NO_FENCING,
            "--seeds",
            "0..150",
            "--shard",
            &shard,
            "--json",
            &path(&format!("s{k}.json")),
        ]);
        assert!(matches!(out.status.code(), Some(0 | 1)), "{}", stderr(&out));
        shards.push(path(&format!("s{k}.json")));
    }
    let whole = tandem(&[
        "scenario",
        "run",
        NO_FENCING,
        "--seeds",
        "0..150",
        "--json",
        &path("all.json"),
        "--junit",
        &path("all.xml"),
    ]);
    let mut args = vec!["scenario", "merge"];
    args.extend(shards.iter().rev().map(String::as_str));
    let (json, xml) = (path("m.json"), path("m.xml"));
    args.extend(["--json", &json, "--junit", &xml]);
    let merged = tandem(&args);
    assert_eq!(
        merged.status.code(),
        whole.status.code(),
        "{}",
        stderr(&merged)
    );
    assert_eq!(stdout(&merged), stdout(&whole));
    assert_eq!(
        std::fs::read(&json).unwrap(),
        std::fs::read(path("all.json")).unwrap()
    );
    assert_eq!(
        std::fs::read(&xml).unwrap(),
        std::fs::read(path("all.xml")).unwrap()
    );
    assert!(
        stdout(&whole).contains("seeds 0..150: 150 runs"),
        "{}",
        stdout(&whole)
    );

    // Overlapping shards, another template's report and a file that is not a report are refused, naming the file.
    let other = path("other.json");
    tandem(&["scenario", "run", HPO, "--seeds", "0..5", "--json", &other]);
    for (inputs, expected) in [
        (
            vec![shards[0].clone(), shards[0].clone()],
            "more than one report".to_string(),
        ),
        (
            vec![shards[0].clone(), other.clone()],
            format!("{other}: template"),
        ),
        (
            vec![shards[0].clone(), path("all.xml")],
            format!("{}: not JSON", path("all.xml")),
        ),
    ] {
        let mut args = vec!["scenario", "merge"];
        args.extend(inputs.iter().map(String::as_str));
        let out = tandem(&args);
        assert_eq!(out.status.code(), Some(2), "{inputs:?}");
        assert!(
            stderr(&out).starts_with("tandem: error: "),
            "{}",
            stderr(&out)
        );
        assert!(stderr(&out).contains(&expected), "{}", stderr(&out));
    }
}

#[test]
fn a_random_exploration_records_its_seeds_and_they_run_again_identically() {
    let dir = scratch("random");
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let out = tandem(&[
        "scenario",
        "run",
        NO_FENCING,
        "--seeds",
        "random",
        "--time-budget",
        "1s",
        "--seeds-out",
        &path("seeds.txt"),
        "--json",
        &path("random.json"),
        "--jobs",
        "2",
    ]);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("tandem: explored "),
        "{}",
        stderr(&out)
    );
    let seeds: Vec<u64> = std::fs::read_to_string(path("seeds.txt"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert!(seeds.len() >= 128, "{} seeds", seeds.len());
    assert!(stdout(&out).contains(&format!("seeds random ({} seeds)", seeds.len())));
    let again = tandem(&[
        "scenario",
        "run",
        NO_FENCING,
        "--seeds",
        &format!("@{}", path("seeds.txt")),
        "--json",
        &path("again.json"),
    ]);
    assert_eq!(again.status.code(), out.status.code());
    let (a, b) = (
        json_of(Path::new(&path("random.json"))),
        json_of(Path::new(&path("again.json"))),
    );
    assert_eq!(a["seed_results"], b["seed_results"]);
    let listed: Vec<u64> = a["seed_results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seed"].as_u64().unwrap())
        .collect();
    assert_eq!(listed, seeds);
    // Without a place to record them, random seeds are refused.
    let refused = tandem(&[
        "scenario",
        "run",
        NO_FENCING,
        "--seeds",
        "random",
        "--time-budget",
        "1s",
    ]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("--seeds-out"),
        "{}",
        stderr(&refused)
    );
}

#[test]
fn coverage_that_no_seed_reached_is_flagged() {
    let dir = scratch("unreached");
    let json = dir.join("r.json");
    let out = tandem(&[
        "scenario",
        "run",
        HPO,
        "--seeds",
        "0..3",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = json_of(&json);
    let unreached: Vec<&str> = report["coverage_unreached"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        unreached.contains(&"operation failed at its retry limit"),
        "{unreached:?}"
    );
    for (name, c) in report["coverage"].as_object().unwrap() {
        let reached = c["seeds_reached"].as_u64().unwrap() > 0;
        assert_eq!(c["reached"].as_bool(), Some(reached));
        assert_eq!(unreached.contains(&name.as_str()), !reached, "{name}");
        let line = stdout(&out)
            .lines()
            .find(|l| l.starts_with(name.as_str()))
            .unwrap()
            .to_string();
        assert_eq!(line.ends_with("NOT REACHED"), !reached, "{line}");
    }
    assert!(
        stdout(&out).contains(&format!("warning: {} of ", unreached.len())),
        "{}",
        stdout(&out)
    );
}

/// `show --svg` draws the failing run of the broken hpo variant: a lane per node, messages as arrows, the fault plan's
/// spans, and the violation that the text timeline also names; filters narrow both.
#[test]
fn show_draws_a_picture_with_lanes_messages_faults_and_the_violation() {
    let dir = scratch("svg");
    let svg_path = dir.join("run.svg");
    let out = tandem(&[
        "scenario",
        "show",
        NO_FENCING,
        "--seed",
        "1",
        "--svg",
        svg_path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let violation = text
        .lines()
        .find(|l| l.contains("VIOLATION single-holder: at "))
        .unwrap_or_else(|| panic!("no violation line in\n{text}"));
    assert!(text.contains("  FAIL single-holder"), "{text}");
    assert!(
        text.lines().filter(|l| l.contains(" -> ")).count() > 100,
        "messages are in the text"
    );
    assert!(
        !text.contains("Some("),
        "checker inputs in the model's terms, not debug output"
    );

    let svg = std::fs::read_to_string(&svg_path).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("the picture is well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://www.w3.org/2000/svg")
    );
    let class = |c: &str| {
        doc.descendants()
            .filter(|n| {
                n.attribute("class")
                    .is_some_and(|k| k.split(' ').any(|x| x == c))
            })
            .collect::<Vec<_>>()
    };
    let lanes: Vec<&str> = class("lane")
        .iter()
        .map(|n| n.attribute("data-node").unwrap())
        .collect();
    assert_eq!(lanes.len(), 8, "{lanes:?}");
    assert!(
        lanes.contains(&"master") && lanes.contains(&"worker-6"),
        "{lanes:?}"
    );
    let messages = class("message");
    assert!(messages.len() > 100, "{} arrows", messages.len());
    assert!(messages
        .iter()
        .any(|m| m.descendants().any(|d| d.has_tag_name("line"))));
    assert!(!class("fault").is_empty(), "the plan's faults are shaded");
    let violations = class("violation");
    assert_eq!(
        violations
            .iter()
            .filter(|v| v.attribute("data-checker") == Some("single-holder"))
            .count(),
        1
    );
    let drawn: String = violations[0]
        .descendants()
        .filter_map(|d| d.text())
        .collect();
    let first = violation.split("VIOLATION single-holder: ").nth(1).unwrap();
    assert!(
        drawn.contains(&first[..first.len().min(40)]),
        "{drawn}\nvs {first}"
    );

    // --node keeps two lanes and only what touches them; --messages none drops the arrows.
    let narrow = dir.join("narrow.svg");
    let out = tandem(&[
        "scenario",
        "show",
        NO_FENCING,
        "--seed",
        "1",
        "--node",
        "master,worker-1",
        "--messages",
        "none",
        "--svg",
        narrow.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains(" -> "), "{}", stdout(&out));
    let svg = std::fs::read_to_string(&narrow).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let count = |c: &str| {
        doc.descendants()
            .filter(|n| n.attribute("class") == Some(c))
            .count()
    };
    assert_eq!(count("lane"), 2);
    assert_eq!(count("message"), 0);
    assert_eq!(
        count("violation"),
        violations.len(),
        "violations concern every node"
    );
    let bad = tandem(&[
        "scenario", "show", NO_FENCING, "--seed", "1", "--node", "nobody",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("--node nobody: the template's nodes are master"),
        "{}",
        stderr(&bad)
    );
}
