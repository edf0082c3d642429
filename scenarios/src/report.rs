//! Reports of a multi-seed run: one `SeedRecord` per seed, aggregated into a `Summary` that renders as text, JSON
//! and JUnit XML, and merged back from the JSON reports of shards.
//!
//! Why records: a summary is a pure function of its header and its records in seed order, so shards that each
//! write their records can be merged into exactly the report the unsharded run writes (`merge`), and JUnit can
//! show one test case per seed (what CI dashboards count and retry) as well as one per checker. A record holds
//! everything the aggregates need (failed checkers with their first violation, metric samples, coverage counts),
//! nothing the aggregates do not. Every map is a BTreeMap or a Vec in seed order: no output depends on hash order
//! or on the thread count.

use crate::runner::SeedOutcome;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;

pub const REPORT_FORMAT: &str = "tandem-scenario-report";
/// 2: per-seed results (`seed_results`), unreached coverage flagged (`coverage_unreached`).
pub const REPORT_VERSION: u32 = 2;
/// Failures listed one by one in the text summary and the per-checker JUnit cases; the counts stay exact beyond it.
pub const FAILURES_LISTED_MAX: usize = 1_000;
/// Most seeds a merge accepts (the reports are held in memory).
pub const MERGE_SEEDS_MAX: usize = 100_000_000;

/// What a report is about: the same for every shard of one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportHeader {
    pub template_name: String,
    pub template_path: String,
    pub model: String,
    pub variant: String,
    /// Every checker of the model, in name order (failing or not).
    pub checkers: Vec<String>,
}

/// One seed's result, as much as the summary needs.
#[derive(Clone, Debug, PartialEq)]
pub struct SeedRecord {
    pub seed: u64,
    pub events: u64,
    pub trace_hash: u64,
    /// The checkers it failed (`limits`, `determinism` included), in the model's order.
    pub failed: Vec<String>,
    /// The first violation of each failed checker, in the same order.
    pub first: Vec<(String, String)>,
    pub metrics: Vec<(String, Vec<f64>)>,
    pub coverage: Vec<(String, u64)>,
    /// The command that reproduces this run.
    pub reproduce: String,
}

impl SeedRecord {
    pub fn of(outcome: &SeedOutcome, reproduce: String) -> SeedRecord {
        let report = &outcome.report;
        let mut first: Vec<(String, String)> = report
            .model
            .checks
            .iter()
            .filter_map(|c| c.first.clone().map(|text| (c.name.to_string(), text)))
            .collect();
        if let Some(reason) = &report.stopped {
            first.push(("limits".into(), reason.clone()));
        }
        if let Some((a, b)) = outcome.nondeterministic {
            first.push((
                "determinism".into(),
                format!("trace hash {a:016x} then {b:016x}"),
            ));
        }
        SeedRecord {
            seed: report.seed,
            events: report.events_count,
            trace_hash: report.trace_hash,
            failed: outcome
                .failed_checkers()
                .iter()
                .map(|s| s.to_string())
                .collect(),
            first,
            metrics: report
                .model
                .metrics
                .iter()
                .map(|(name, values)| (name.to_string(), values.clone()))
                .collect(),
            coverage: report
                .model
                .coverage
                .iter()
                .map(|&(name, count)| (name.to_string(), count))
                .collect(),
            reproduce,
        }
    }

    pub fn failed(&self) -> bool {
        !self.failed.is_empty()
    }

    /// The first violation of `checker` in this run, or "".
    fn first_of(&self, checker: &str) -> &str {
        self.first
            .iter()
            .find(|(name, _)| name == checker)
            .map_or("", |(_, text)| text.as_str())
    }

    fn to_json(&self) -> Value {
        let pairs = |items: &[(String, String)]| -> serde_json::Map<String, Value> {
            items
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect()
        };
        let metrics: serde_json::Map<String, Value> = self
            .metrics
            .iter()
            .map(|(name, values)| (name.clone(), json!(values)))
            .collect();
        let coverage: serde_json::Map<String, Value> = self
            .coverage
            .iter()
            .map(|(name, count)| (name.clone(), json!(count)))
            .collect();
        json!({
            "seed": self.seed,
            "passed": !self.failed(),
            "events": self.events,
            "trace_hash": format!("{:016x}", self.trace_hash),
            "failed": self.failed,
            "first": pairs(&self.first),
            "metrics": metrics,
            "coverage": coverage,
            "reproduce": self.reproduce,
        })
    }

    fn from_json(value: &Value) -> Result<SeedRecord, String> {
        let field = |name: &str| value.get(name).ok_or(format!("no `{name}`"));
        let u64_of = |name: &str| {
            field(name)?
                .as_u64()
                .ok_or(format!("`{name}` is not an unsigned integer"))
        };
        let object_of = |name: &str| {
            field(name)?
                .as_object()
                .ok_or(format!("`{name}` is not an object"))
        };
        let hash = field("trace_hash")?
            .as_str()
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .ok_or("`trace_hash` is not 16 hex digits")?;
        let failed = field("failed")?
            .as_array()
            .ok_or("`failed` is not an array")?
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or("a failed checker is not a string")
            })
            .collect::<Result<Vec<_>, _>>()?;
        let first = object_of("first")?
            .iter()
            .map(|(k, v)| match v.as_str() {
                Some(text) => Ok((k.clone(), text.to_string())),
                None => Err(format!("`first.{k}` is not a string")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let metrics = object_of("metrics")?
            .iter()
            .map(|(k, v)| {
                let values = v
                    .as_array()
                    .ok_or(format!("`metrics.{k}` is not an array"))?;
                let values = values
                    .iter()
                    .map(|x| {
                        x.as_f64()
                            .ok_or(format!("`metrics.{k}` holds a non-number"))
                    })
                    .collect::<Result<Vec<f64>, _>>()?;
                Ok((k.clone(), values))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let coverage = object_of("coverage")?
            .iter()
            .map(|(k, v)| match v.as_u64() {
                Some(count) => Ok((k.clone(), count)),
                None => Err(format!("`coverage.{k}` is not a count")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let reproduce = field("reproduce")?
            .as_str()
            .ok_or("`reproduce` is not a string")?
            .to_string();
        let record = SeedRecord {
            seed: u64_of("seed")?,
            events: u64_of("events")?,
            trace_hash: hash,
            failed,
            first,
            metrics,
            coverage,
            reproduce,
        };
        if field("passed")?.as_bool() != Some(!record.failed()) {
            return Err("`passed` disagrees with `failed`".into());
        }
        Ok(record)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct MetricSummary {
    pub samples: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// How JUnit cases are cut: one per checker (failing when any seed failed it) or one per seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JunitCases {
    Checkers,
    Seeds,
}

/// Everything the summary, the JSON report and the JUnit report show: a header, the seeds' label, and one record
/// per seed; the aggregates are computed from the records.
#[derive(Clone, Debug)]
pub struct Summary {
    pub header: ReportHeader,
    pub seeds_label: String,
    pub records: Vec<SeedRecord>,
    pub passed: usize,
    pub failed: usize,
    /// Checker -> seeds that failed it (in record order).
    pub checkers: BTreeMap<String, Vec<u64>>,
    pub metrics: BTreeMap<String, MetricSummary>,
    /// Coverage property -> (seeds that reached it, total times reached).
    pub coverage: BTreeMap<String, (usize, u64)>,
    pub events_total: u64,
}

/// Nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Summary {
    pub fn new(header: ReportHeader, seeds_label: &str, records: Vec<SeedRecord>) -> Summary {
        let mut checkers: BTreeMap<String, Vec<u64>> = header
            .checkers
            .iter()
            .map(|name| (name.clone(), Vec::new()))
            .collect();
        let mut samples: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut coverage: BTreeMap<String, (usize, u64)> = BTreeMap::new();
        for record in &records {
            for name in &record.failed {
                checkers.entry(name.clone()).or_default().push(record.seed);
            }
            for (name, values) in &record.metrics {
                samples.entry(name.clone()).or_default().extend(values);
            }
            for (name, count) in &record.coverage {
                let entry = coverage.entry(name.clone()).or_default();
                entry.0 += usize::from(*count > 0);
                entry.1 += count;
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
        let failed = records.iter().filter(|r| r.failed()).count();
        Summary {
            header,
            seeds_label: seeds_label.to_string(),
            passed: records.len() - failed,
            failed,
            checkers,
            metrics,
            coverage,
            events_total: records.iter().map(|r| r.events).sum(),
            records,
        }
    }

    pub fn seed_count(&self) -> usize {
        self.records.len()
    }

    /// The failing records, at most `FAILURES_LISTED_MAX` of them.
    pub fn failures(&self) -> impl Iterator<Item = &SeedRecord> {
        self.records
            .iter()
            .filter(|r| r.failed())
            .take(FAILURES_LISTED_MAX)
    }

    /// Coverage properties no seed reached: a run that never reaches them proves nothing about them.
    pub fn unreached(&self) -> Vec<&str> {
        self.coverage
            .iter()
            .filter(|(_, (seeds, _))| *seeds == 0)
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// The human summary: a table of checkers, metrics and coverage (unreached properties marked and warned
    /// about), then one reproduce line per failure.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let h = &self.header;
        let _ = writeln!(
            out,
            "template {} (model {}, variant {}), seeds {}: {} runs, {} passed, {} failed",
            h.template_name,
            h.model,
            h.variant,
            self.seeds_label,
            self.seed_count(),
            self.passed,
            self.failed
        );
        let _ = writeln!(
            out,
            "\n{:<44} {:>10}  first failing seed",
            "checker", "failures"
        );
        for (name, seeds) in &self.checkers {
            let first = seeds.first().map_or("-".into(), |s| s.to_string());
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
            let mark = if *seeds == 0 { "  NOT REACHED" } else { "" };
            let _ = writeln!(out, "{name:<44} {seeds:>10} {total:>12}{mark}");
        }
        let unreached = self.unreached();
        if !unreached.is_empty() {
            let _ = writeln!(
                out,
                "\nwarning: {} of {} coverage properties were reached by no seed; these runs prove nothing about them \
                 (run more seeds, or a template whose faults reach them)",
                unreached.len(),
                self.coverage.len()
            );
        }
        self.render_failures(&mut out);
        out
    }

    fn render_failures(&self, out: &mut String) {
        if self.failed == 0 {
            return;
        }
        let _ = writeln!(out, "\nfailures (one reproduce line each):");
        let mut listed = 0;
        for record in self.failures() {
            listed += 1;
            let what = record
                .first
                .first()
                .map(|(name, text)| format!("{name}: {text}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  seed {} [{}] {}",
                record.seed,
                record.failed.join(", "),
                what
            );
            let _ = writeln!(out, "    reproduce: {}", record.reproduce);
        }
        if self.failed > listed {
            let _ = writeln!(out, "  ... and {} more failing seeds", self.failed - listed);
        }
    }

    pub fn to_json(&self) -> Value {
        let h = &self.header;
        let checkers: serde_json::Map<String, Value> = self
            .checkers
            .iter()
            .map(|(name, seeds)| {
                let first: Vec<u64> = seeds.iter().take(10).copied().collect();
                (
                    name.clone(),
                    json!({ "failed_seeds": seeds.len(), "first_seeds": first }),
                )
            })
            .collect();
        let metrics: serde_json::Map<String, Value> = self
            .metrics
            .iter()
            .map(|(name, m)| {
                let value =
                    json!({ "samples": m.samples, "p50": m.p50, "p99": m.p99, "max": m.max });
                (name.clone(), value)
            })
            .collect();
        let coverage: serde_json::Map<String, Value> = self
            .coverage
            .iter()
            .map(|(name, (seeds, total))| {
                let value =
                    json!({ "seeds_reached": seeds, "times": total, "reached": *seeds > 0 });
                (name.clone(), value)
            })
            .collect();
        let failures: Vec<Value> = self
            .failures()
            .map(|r| {
                let first: serde_json::Map<String, Value> = r
                    .first
                    .iter()
                    .map(|(name, text)| (name.clone(), Value::String(text.clone())))
                    .collect();
                json!({ "seed": r.seed, "checkers": r.failed, "first": first, "reproduce": r.reproduce })
            })
            .collect();
        let records: Vec<Value> = self.records.iter().map(SeedRecord::to_json).collect();
        json!({
            "format": REPORT_FORMAT,
            "version": REPORT_VERSION,
            "template": {
                "name": h.template_name, "path": h.template_path, "model": h.model, "variant": h.variant,
                "checkers": h.checkers,
            },
            "seeds": self.seeds_label,
            "runs": self.seed_count(),
            "passed": self.passed,
            "failed": self.failed,
            "events": self.events_total,
            "checkers": checkers,
            "metrics": metrics,
            "coverage": coverage,
            "coverage_unreached": self.unreached(),
            "failures": failures,
            "seed_results": records,
        })
    }

    /// The JSON report as pretty-printed text with a final newline (keys sorted: serde_json's map is a BTreeMap).
    pub fn render_json(&self) -> String {
        serde_json::to_string_pretty(&self.to_json()).expect("a JSON value always renders") + "\n"
    }

    /// JUnit XML: one test suite for the template; one test case per checker or per seed.
    pub fn to_junit(&self, cases: JunitCases) -> String {
        let (tests, failures) = match cases {
            JunitCases::Checkers => (
                self.checkers.len(),
                self.checkers.values().filter(|s| !s.is_empty()).count(),
            ),
            JunitCases::Seeds => (self.seed_count(), self.failed),
        };
        let mut out = String::new();
        let _ = writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
        let _ = writeln!(
            out,
            r#"<testsuites name="tandem-scenarios" tests="{tests}" failures="{failures}">"#
        );
        let _ = writeln!(
            out,
            r#"  <testsuite name="{}" tests="{tests}" failures="{failures}" errors="0" skipped="0">"#,
            xml_escape(&self.header.template_name),
        );
        self.junit_properties(&mut out, cases);
        match cases {
            JunitCases::Checkers => self.junit_checker_cases(&mut out),
            JunitCases::Seeds => self.junit_seed_cases(&mut out),
        }
        let _ = writeln!(out, "  </testsuite>\n</testsuites>");
        out
    }

    fn junit_properties(&self, out: &mut String, cases: JunitCases) {
        let cases = match cases {
            JunitCases::Checkers => "checkers",
            JunitCases::Seeds => "seeds",
        };
        let _ = writeln!(out, "    <properties>");
        for (name, value) in [
            ("format", format!("{REPORT_FORMAT}/junit")),
            ("version", REPORT_VERSION.to_string()),
            ("model", self.header.model.clone()),
            ("variant", self.header.variant.clone()),
            ("seeds", self.seeds_label.clone()),
            ("runs", self.seed_count().to_string()),
            ("cases", cases.to_string()),
        ] {
            let _ = writeln!(
                out,
                r#"      <property name="{name}" value="{}"/>"#,
                xml_escape(&value)
            );
        }
        let _ = writeln!(out, "    </properties>");
    }

    fn junit_checker_cases(&self, out: &mut String) {
        let classname = xml_escape(&format!("scenario.{}", self.header.template_name));
        for (name, seeds) in &self.checkers {
            let _ = write!(
                out,
                r#"    <testcase classname="{classname}" name="{}""#,
                xml_escape(name)
            );
            if seeds.is_empty() {
                let _ = writeln!(out, "/>");
                continue;
            }
            let mut body = String::new();
            for record in self.failures().filter(|r| r.failed.contains(name)).take(20) {
                let _ = writeln!(
                    body,
                    "seed {}: {}\nreproduce: {}",
                    record.seed,
                    record.first_of(name),
                    record.reproduce
                );
            }
            let _ = writeln!(
                out,
                ">\n      <failure message=\"{} of {} seeds failed {}\" type=\"checker\">{}</failure>\n    </testcase>",
                seeds.len(),
                self.seed_count(),
                xml_escape(name),
                xml_escape(&body)
            );
        }
    }

    fn junit_seed_cases(&self, out: &mut String) {
        let classname = xml_escape(&format!("scenario.{}", self.header.template_name));
        for record in &self.records {
            let _ = write!(
                out,
                r#"    <testcase classname="{classname}" name="seed {}""#,
                record.seed
            );
            if !record.failed() {
                let _ = writeln!(out, "/>");
                continue;
            }
            let mut body = String::new();
            for name in &record.failed {
                let _ = writeln!(body, "{name}: {}", record.first_of(name));
            }
            let _ = writeln!(body, "reproduce: {}", record.reproduce);
            let message = format!(
                "failed {}; reproduce: {}",
                record.failed.join(", "),
                record.reproduce
            );
            let _ = writeln!(
                out,
                ">\n      <failure message=\"{}\" type=\"checker\">{}</failure>\n    </testcase>",
                xml_escape(&message),
                xml_escape(&body)
            );
        }
    }
}

/// The label of a set of seeds: `START..END` when they are exactly that range in order, else `N seeds`.
pub fn seeds_label(seeds: &[u64]) -> String {
    let contiguous = seeds.windows(2).all(|w| w[0].checked_add(1) == Some(w[1]));
    match (seeds.first(), seeds.last()) {
        (Some(first), Some(last)) if contiguous => format!("{first}..{}", last + 1),
        _ => format!("{} seeds", seeds.len()),
    }
}

fn header_of(name: &str, report: &Value) -> Result<ReportHeader, String> {
    if report.get("format").and_then(Value::as_str) != Some(REPORT_FORMAT) {
        return Err(format!(
            "{name}: not a tandem scenario report (no \"format\": \"{REPORT_FORMAT}\")"
        ));
    }
    let version = report.get("version").and_then(Value::as_u64);
    if version != Some(u64::from(REPORT_VERSION)) {
        return Err(format!(
            "{name}: report version {version:?}, this tandem merges version {REPORT_VERSION} (run the shards with this tandem)"
        ));
    }
    let template = report
        .get("template")
        .ok_or(format!("{name}: no `template`"))?;
    let text = |key: &str| {
        template
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or(format!(
                "{name}: `template.{key}` is missing or not a string"
            ))
    };
    let checkers = template
        .get("checkers")
        .and_then(Value::as_array)
        .ok_or(format!("{name}: `template.checkers` is missing"))?
        .iter()
        .map(|c| c.as_str().map(str::to_string))
        .collect::<Option<Vec<_>>>()
        .ok_or(format!("{name}: a checker name is not a string"))?;
    Ok(ReportHeader {
        template_name: text("name")?,
        template_path: text("path")?,
        model: text("model")?,
        variant: text("variant")?,
        checkers,
    })
}

/// Merges the JSON reports of shards (name, text) into one summary: the same template, no seed twice; records are
/// put in seed order, so four shards of `0..N` merge into exactly the report of the unsharded run.
pub fn merge(reports: &[(String, String)]) -> Result<Summary, String> {
    let mut header: Option<(String, ReportHeader)> = None;
    let mut records: Vec<SeedRecord> = Vec::new();
    for (name, text) in reports {
        let value: Value =
            serde_json::from_str(text).map_err(|e| format!("{name}: not JSON: {e}"))?;
        let this = header_of(name, &value)?;
        match &header {
            Some((first, h)) if *h != this => {
                return Err(format!(
                    "{name}: template {} (variant {}) differs from {first}'s {} (variant {}); only shards of one run merge",
                    this.template_path, this.variant, h.template_path, h.variant
                ))
            }
            Some(_) => {}
            None => header = Some((name.clone(), this)),
        }
        let results = value
            .get("seed_results")
            .and_then(Value::as_array)
            .ok_or(format!("{name}: no `seed_results`"))?;
        for (i, r) in results.iter().enumerate() {
            let record =
                SeedRecord::from_json(r).map_err(|e| format!("{name}: seed_results[{i}]: {e}"))?;
            records.push(record);
            if records.len() > MERGE_SEEDS_MAX {
                return Err(format!("more than {MERGE_SEEDS_MAX} seeds to merge"));
            }
        }
    }
    let (_, header) = header.ok_or("no reports to merge")?;
    records.sort_by_key(|r| r.seed);
    if let Some(w) = records.windows(2).find(|w| w[0].seed == w[1].seed) {
        return Err(format!(
            "seed {} is in more than one report; shards must not overlap",
            w[0].seed
        ));
    }
    let seeds: Vec<u64> = records.iter().map(|r| r.seed).collect();
    Ok(Summary::new(header, &seeds_label(&seeds), records))
}

/// Text made safe for XML attributes and content (control characters other than tab and newlines dropped).
pub fn xml_escape(text: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn seed_labels_name_ranges_and_counts() {
        assert_eq!(seeds_label(&[3, 4, 5]), "3..6");
        assert_eq!(seeds_label(&[3, 5]), "2 seeds");
        assert_eq!(seeds_label(&[5, 4]), "2 seeds");
        assert_eq!(seeds_label(&[]), "0 seeds");
    }
}
