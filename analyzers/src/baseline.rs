//! Integrity baselines of a service (`tandem baseline record` and `check`).
//!
//! A spec (TOML) lists a service's operations: each a program, its arguments, its stdin, the mounts it is allowed
//! and optionally the system calls it is allowed (its least-access profile). `record` runs every operation and
//! stores what it did as its baseline: exit status, stdout and stderr (length, SHA-256 and the first
//! `OUTPUT_BYTES_KEPT` bytes), the system calls with their arguments, results and bytes (`calls`), the files it
//! read and wrote, the instruction count and final state hash. `check` runs the operations again, against the
//! current build or another binary, and reports each operation whose behaviour changed, with the first differing
//! system call (`diff::compare_calls`).
//!
//! Fail closed: a baseline that is missing, unreadable, of another format or whose digest does not match, an
//! operation that cannot run, an operation added to or removed from the spec, or one whose inputs changed since
//! the baseline was recorded is a failure of the check, never a pass.
//!
//! The digest: SHA-256 of the baseline's body (its canonical JSON), or HMAC-SHA256 (RFC 2104) under a key
//! (`--key-file`). Without a key it detects accidental or naive tampering only: whoever can edit the file can
//! recompute a plain SHA-256. With a key kept away from the baseline, a forger must also hold the key.
//!
//! The least-access profile is checked after the run: a call outside it is a finding of the check, reported with
//! its icount (the run itself is not stopped; enforcement during the run belongs to `tandem run --profile`).
//!
//! This module runs guests only on the hosts it is given and does no file IO: the CLI reads the spec, the
//! programs, the mounts and the baseline file.

use crate::calls::{escaped, Call, RunLog};
use crate::diff::{compare_calls, sha256_hex, Parting};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use tandem_emulator::linux::{Host, LinuxConfig};

/// The version of the baseline file.
pub const BASELINE_FORMAT: &str = "tandem-baseline/1";
/// Bytes of each output kept in the baseline (all of it is digested).
pub const OUTPUT_BYTES_KEPT: usize = 4096;
/// Most operations in one spec.
pub const OPERATIONS_MAX: usize = 1000;
/// Instructions an operation may run unless its spec says otherwise (`max_insns`).
pub const INSTRUCTIONS_MAX_DEFAULT: u64 = 2_000_000_000;

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("{0}")]
    Spec(String),
    #[error("the baseline {0}")]
    Baseline(String),
    #[error("operation {name}: {message}")]
    Operation { name: String, message: String },
}

/// A service's operations, as the spec file writes them.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The program every operation runs unless it names its own (a path relative to the spec).
    pub program: Option<String>,
    #[serde(rename = "operation", default)]
    pub operations: Vec<OperationSpec>,
}

/// One operation of a spec.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OperationSpec {
    pub name: String,
    pub program: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    /// Inline stdin.
    pub stdin: Option<String>,
    /// stdin from a file (relative to the spec).
    pub stdin_file: Option<String>,
    /// `HOST:GUEST` (HOST relative to the spec), read-only, as `tandem run --mount`.
    #[serde(default)]
    pub mounts: Vec<String>,
    /// `K=V`.
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub seed: u64,
    /// The system calls the operation is allowed (by name): its least-access profile.
    pub syscalls: Option<Vec<String>>,
    pub max_insns: Option<u64>,
}

impl OperationSpec {
    /// The program as the spec names it (the operation's own or the spec's).
    pub fn program<'a>(&'a self, spec: &'a Spec) -> Option<&'a str> {
        self.program.as_deref().or(spec.program.as_deref())
    }

    /// The allowed system calls, by number.
    pub fn allowed(&self) -> Option<crate::SyscallSet> {
        let names = self.syscalls.as_ref()?;
        Some(
            names
                .iter()
                .filter_map(|n| crate::syscall_number(n))
                .collect(),
        )
    }
}

/// Parses and checks a spec: unique plain names, a program for each operation, one kind of stdin, known syscall
/// names, at most `OPERATIONS_MAX` operations. Errors name the operation or the TOML place.
pub fn parse_spec(text: &str) -> Result<Spec, BaselineError> {
    let spec: Spec = toml::from_str(text).map_err(|e| BaselineError::Spec(e.to_string()))?;
    if spec.operations.is_empty() {
        return Err(BaselineError::Spec(
            "no operations: add an [[operation]] table with name, program and args".into(),
        ));
    }
    if spec.operations.len() > OPERATIONS_MAX {
        return Err(BaselineError::Spec(format!(
            "{} operations, more than the {OPERATIONS_MAX} a spec may hold",
            spec.operations.len()
        )));
    }
    let mut names = BTreeSet::new();
    for op in &spec.operations {
        let bad = |message: String| BaselineError::Operation {
            name: op.name.clone(),
            message,
        };
        let plain = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
        if op.name.is_empty() || !op.name.chars().all(plain) {
            return Err(bad("a name is letters, digits, '.', '_' and '-'".into()));
        }
        if !names.insert(op.name.as_str()) {
            return Err(bad("the name is used twice".into()));
        }
        if op.program(&spec).is_none() {
            return Err(bad(
                "no program: give `program` in the operation or at the top".into(),
            ));
        }
        if op.stdin.is_some() && op.stdin_file.is_some() {
            return Err(bad("give stdin or stdin_file, not both".into()));
        }
        for name in op.syscalls.iter().flatten() {
            if crate::syscall_number(name).is_none() {
                return Err(bad(format!(
                    "syscalls: {name:?} is not an x86-64 system call"
                )));
            }
        }
        if let Some(e) = op.env.iter().find(|e| !e.contains('=')) {
            return Err(bad(format!("env: {e:?} is not K=V")));
        }
    }
    Ok(spec)
}

/// The SHA-256 of what defines an operation besides its program: arguments, stdin, mounts, environment, seed,
/// instruction limit. A baseline is checked only against the same inputs.
pub fn inputs_digest(op: &OperationSpec, stdin: &[u8]) -> String {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    for a in &op.args {
        field(a.as_bytes());
    }
    field(b"stdin");
    field(stdin);
    for m in &op.mounts {
        field(m.as_bytes());
    }
    field(b"env");
    for e in &op.env {
        field(e.as_bytes());
    }
    field(&op.seed.to_le_bytes());
    field(
        &op.max_insns
            .unwrap_or(INSTRUCTIONS_MAX_DEFAULT)
            .to_le_bytes(),
    );
    hex(&h.finalize())
}

/// An output as a baseline keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Output {
    pub len: u64,
    pub sha256: String,
    /// The first `OUTPUT_BYTES_KEPT` bytes.
    #[serde(with = "escaped")]
    pub head: Vec<u8>,
}

impl Output {
    pub fn of(bytes: &[u8]) -> Output {
        Output {
            len: bytes.len() as u64,
            sha256: sha256_hex(bytes),
            head: bytes[..bytes.len().min(OUTPUT_BYTES_KEPT)].to_vec(),
        }
    }
}

/// What one operation did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Observation {
    pub name: String,
    /// The program run, as given (for messages), and the SHA-256 of its bytes.
    pub program: String,
    pub program_sha256: String,
    pub inputs_sha256: String,
    pub exit_status: i32,
    pub stdout: Output,
    pub stderr: Output,
    pub calls: Vec<Call>,
    pub calls_truncated: bool,
    pub files_read: Vec<String>,
    pub files_written: Vec<String>,
    pub icount: u64,
    pub state_hash: String,
}

/// Builds an operation's observation from the calls of its run.
pub fn observe(
    name: &str,
    program: &str,
    program_bytes: &[u8],
    inputs_sha256: String,
    log: RunLog,
) -> Observation {
    let (mut read, mut written) = (BTreeSet::new(), BTreeSet::new());
    for call in log.calls.iter().filter(|c| !c.result.starts_with('-')) {
        for (path, writes) in &call.paths {
            if *writes {
                written.insert(path.clone());
            } else if matches!(call.name.as_str(), "open" | "openat") {
                read.insert(path.clone());
            }
        }
    }
    Observation {
        name: name.into(),
        program: program.into(),
        program_sha256: sha256_hex(program_bytes),
        inputs_sha256,
        exit_status: log.exit_status,
        stdout: Output::of(&log.stdout),
        stderr: Output::of(&log.stderr),
        calls: log.calls,
        calls_truncated: log.truncated,
        files_read: read.into_iter().collect(),
        files_written: written.into_iter().collect(),
        icount: log.icount,
        state_hash: format!("{:#018x}", log.state_hash),
    }
}

/// Records a run of `program` on `host` into a trace held in memory and logs its calls.
pub fn run_operation<H: Host>(
    config: LinuxConfig,
    program_path: &str,
    program: &[u8],
    host: H,
    instructions_max: u64,
) -> Result<RunLog, String> {
    use tandem_emulator::hypervisor::{plan::FaultPlan, Hypervisor, Policy};
    use tandem_replay::hosts::RecordingHost;
    use tandem_replay::trace::{Header, Trace, TraceWriter};
    let header = Header {
        instructions_max: Some(instructions_max),
        ..Header::of_run(&config, program_path.as_bytes().to_vec(), program)
    };
    let seed = config.seed;
    let host = RecordingHost::new(host, None, None);
    let mut hv = Hypervisor::new(
        config,
        program.into(),
        host,
        FaultPlan::default(),
        Policy::default(),
        seed,
    )
    .map_err(|e| format!("cannot load {program_path}: {e}"))?;
    let mut writer = TraceWriter::new(Vec::new()).map_err(|e| e.to_string())?;
    tandem_replay::record::record(&mut hv, &header, &mut writer)
        .map_err(|e| format!("cannot record the run: {e}"))?;
    let trace = Trace::parse(&writer.into_inner()).map_err(|e| e.to_string())?;
    crate::calls::log_of(trace).map_err(|e| e.to_string())
}

/// A whole baseline: every operation's observation, in the spec's order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Body {
    pub operations: Vec<Observation>,
}

/// How the body is sealed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seal {
    /// "sha256" or "hmac-sha256".
    pub algorithm: String,
    pub value: String,
}

/// The baseline file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineFile {
    pub format: String,
    pub digest: Seal,
    pub body: Body,
}

fn seal(body: &Body, key: Option<&[u8]>) -> Result<Seal, BaselineError> {
    let bytes = serde_json::to_vec(body).map_err(|e| BaselineError::Baseline(e.to_string()))?;
    Ok(match key {
        Some(k) => Seal {
            algorithm: "hmac-sha256".into(),
            value: hex(&hmac_sha256(k, &bytes)),
        },
        None => Seal {
            algorithm: "sha256".into(),
            value: sha256_hex(&bytes),
        },
    })
}

/// The baseline file's text for `body`, sealed with `key` (HMAC-SHA256) or without (SHA-256).
pub fn write_baseline(body: Body, key: Option<&[u8]>) -> Result<String, BaselineError> {
    let file = BaselineFile {
        format: BASELINE_FORMAT.into(),
        digest: seal(&body, key)?,
        body,
    };
    serde_json::to_string_pretty(&file).map_err(|e| BaselineError::Baseline(e.to_string()))
}

/// Reads a baseline and checks its seal; every failure is an error (fail closed).
pub fn read_baseline(text: &str, key: Option<&[u8]>) -> Result<Body, BaselineError> {
    let file: BaselineFile = serde_json::from_str(text)
        .map_err(|e| BaselineError::Baseline(format!("cannot be read: {e}")))?;
    if file.format != BASELINE_FORMAT {
        return Err(BaselineError::Baseline(format!(
            "is of format {:?}; this tandem reads {BASELINE_FORMAT:?}",
            file.format
        )));
    }
    let expected = seal(&file.body, key)?;
    if file.digest.algorithm != expected.algorithm {
        return Err(BaselineError::Baseline(match key {
            Some(_) => {
                "is not sealed with a key (sha256), but --key-file was given: it was not recorded \
                        with a key, or its seal was replaced"
                    .into()
            }
            None => "is sealed with a key (hmac-sha256): give its --key-file".into(),
        }));
    }
    if !same_bytes(file.digest.value.as_bytes(), expected.value.as_bytes()) {
        return Err(BaselineError::Baseline(format!(
            "does not match its {} digest: it was changed after it was recorded{}",
            expected.algorithm,
            if key.is_some() {
                " (or the key differs)"
            } else {
                ""
            }
        )));
    }
    Ok(file.body)
}

/// Equality that does not stop at the first differing byte.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// HMAC-SHA256 (RFC 2104 with SHA-256's 64-byte block).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| k.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The verdict on one operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Same,
    Changed,
    /// The operation could not be checked (fail closed).
    Failed,
}

/// One operation's check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OperationCheck {
    pub name: String,
    pub verdict: Verdict,
    /// What changed or why it failed, one line each.
    pub findings: Vec<String>,
    /// The first differing system call.
    pub first: Option<Parting>,
    /// Differences that are not behaviour (icount, state hash) unless `exact`.
    pub notes: Vec<String>,
}

impl OperationCheck {
    pub fn failed(name: &str, why: String) -> OperationCheck {
        OperationCheck {
            name: name.into(),
            verdict: Verdict::Failed,
            findings: vec![why],
            first: None,
            notes: Vec::new(),
        }
    }
}

/// Compares an operation's new run with its baseline.
pub fn check_operation(
    base: &Observation,
    now: &Observation,
    allowed: Option<&crate::SyscallSet>,
    exact: bool,
) -> OperationCheck {
    let mut findings = Vec::new();
    let mut notes = Vec::new();
    if base.inputs_sha256 != now.inputs_sha256 {
        return OperationCheck::failed(
            &now.name,
            "its inputs (arguments, stdin, mounts, environment, seed) changed since the baseline was recorded: \
             record a new baseline"
                .into(),
        );
    }
    let (first, hunks, _) = compare_calls(&base.calls, &now.calls);
    if let Some(p) = &first {
        findings.push(format!(
            "the system calls part at #{} ({}); {} differing stretch(es) in all",
            p.index,
            p.what,
            hunks.len()
        ));
    }
    if base.exit_status != now.exit_status {
        findings.push(format!(
            "exit status {} (baseline {})",
            now.exit_status, base.exit_status
        ));
    }
    for (what, b, n) in [
        ("stdout", &base.stdout, &now.stdout),
        ("stderr", &base.stderr, &now.stderr),
    ] {
        if b.sha256 != n.sha256 || b.len != n.len {
            findings.push(format!(
                "{what}: {} bytes {} (baseline {} bytes {})",
                n.len,
                crate::calls::quoted(&n.head[..n.head.len().min(64)]),
                b.len,
                crate::calls::quoted(&b.head[..b.head.len().min(64)])
            ));
        }
    }
    set_changes(
        &mut findings,
        "files read",
        &base.files_read,
        &now.files_read,
    );
    set_changes(
        &mut findings,
        "files written",
        &base.files_written,
        &now.files_written,
    );
    if let Some(allowed) = allowed {
        least_access(&mut findings, &now.calls, allowed);
    }
    for (what, b, n) in [
        ("icount", base.icount.to_string(), now.icount.to_string()),
        (
            "final state hash",
            base.state_hash.clone(),
            now.state_hash.clone(),
        ),
    ] {
        if b != n {
            notes.push(format!("{what} {n} (baseline {b})"));
        }
    }
    if base.program_sha256 != now.program_sha256 {
        notes.push(format!(
            "program {} differs from the baseline's {}",
            now.program, base.program
        ));
    }
    let changed = !findings.is_empty() || (exact && !notes.is_empty());
    OperationCheck {
        name: now.name.clone(),
        verdict: if changed {
            Verdict::Changed
        } else {
            Verdict::Same
        },
        findings,
        first,
        notes,
    }
}

fn set_changes(findings: &mut Vec<String>, what: &str, base: &[String], now: &[String]) {
    let b: BTreeSet<&String> = base.iter().collect();
    let n: BTreeSet<&String> = now.iter().collect();
    let added: Vec<&str> = n.difference(&b).map(|s| s.as_str()).collect();
    let removed: Vec<&str> = b.difference(&n).map(|s| s.as_str()).collect();
    if !added.is_empty() || !removed.is_empty() {
        findings.push(format!("{what}: added {added:?}, no longer {removed:?}"));
    }
}

/// A finding per system call outside the allowed set (its first use, with its icount).
fn least_access(findings: &mut Vec<String>, calls: &[Call], allowed: &crate::SyscallSet) {
    let mut first_use: BTreeMap<u64, &Call> = BTreeMap::new();
    for c in calls.iter().filter(|c| !allowed.contains(&c.nr)) {
        first_use.entry(c.nr).or_insert(c);
    }
    for c in first_use.values() {
        findings.push(format!(
            "least access: {} is not in the operation's syscalls (first at icount {}: {})",
            c.name,
            c.icount,
            c.text()
        ));
    }
}

/// Checks that the spec and the baseline hold the same operations: an operation added to or removed from the spec
/// is a failure (fail closed).
pub fn operation_set_failures(spec: &Spec, baseline: &Body) -> Vec<OperationCheck> {
    let in_spec: BTreeSet<&str> = spec.operations.iter().map(|o| o.name.as_str()).collect();
    let in_base: BTreeSet<&str> = baseline
        .operations
        .iter()
        .map(|o| o.name.as_str())
        .collect();
    let mut out = Vec::new();
    for name in in_spec.difference(&in_base) {
        out.push(OperationCheck::failed(
            name,
            "the spec has this operation, the baseline does not: record a new baseline".into(),
        ));
    }
    for name in in_base.difference(&in_spec) {
        out.push(OperationCheck::failed(
            name,
            "the baseline has this operation, the spec does not (it was removed)".into(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231, test cases 2 and 6 (a key longer than the block).
    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex(&hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    fn body() -> Body {
        Body {
            operations: vec![Observation {
                name: "op".into(),
                program: "p".into(),
                program_sha256: "00".into(),
                inputs_sha256: "11".into(),
                exit_status: 0,
                stdout: Output::of(b"hello\n"),
                stderr: Output::of(b""),
                calls: Vec::new(),
                calls_truncated: false,
                files_read: vec!["/data/a".into()],
                files_written: Vec::new(),
                icount: 10,
                state_hash: "0x1".into(),
            }],
        }
    }

    #[test]
    fn a_sealed_baseline_reads_back_and_any_edit_is_refused() {
        for key in [None, Some(&b"k3y"[..])] {
            let text = write_baseline(body(), key).unwrap();
            assert_eq!(read_baseline(&text, key).unwrap(), body());
            let edited = text.replace("/data/a", "/data/b");
            assert!(read_baseline(&edited, key)
                .unwrap_err()
                .to_string()
                .contains("does not match"));
        }
        let keyed = write_baseline(body(), Some(b"k3y")).unwrap();
        assert!(read_baseline(&keyed, None).is_err());
        assert!(read_baseline(&keyed, Some(b"other")).is_err());
        let plain = write_baseline(body(), None).unwrap();
        assert!(read_baseline(&plain, Some(b"k3y")).is_err());
    }

    #[test]
    fn specs_are_checked_and_errors_name_the_operation() {
        let ok =
            "program = \"p\"\n[[operation]]\nname = \"a\"\nargs = [\"x\"]\nsyscalls = [\"read\"]\n";
        assert_eq!(parse_spec(ok).unwrap().operations.len(), 1);
        let twice = "program = \"p\"\n[[operation]]\nname = \"a\"\n[[operation]]\nname = \"a\"\n";
        assert!(parse_spec(twice)
            .unwrap_err()
            .to_string()
            .contains("operation a"));
        let bad_call = "program = \"p\"\n[[operation]]\nname = \"a\"\nsyscalls = [\"nosuch\"]\n";
        assert!(parse_spec(bad_call)
            .unwrap_err()
            .to_string()
            .contains("nosuch"));
        let unknown = "program = \"p\"\n[[operation]]\nname = \"a\"\nstdn = \"x\"\n";
        assert!(parse_spec(unknown)
            .unwrap_err()
            .to_string()
            .contains("stdn"));
        assert!(parse_spec("").is_err());
    }
}
