//! The hyperparameter-optimisation scheduling model: a master, a shared work queue with leases, a repository of
//! records and worker pods.
//!
//! Nodes: `master` (owns the queue), `repo` (one record per operation), `worker-1` .. `worker-N`.
//!
//! Protocol:
//! - An operation is a configuration and a range of iterations. The master leases an operation to an idle worker under
//!   a fencing token (monotonic across the run) and an expiry; the worker renews the lease while it works. An expired
//!   lease puts the operation back in the queue; each lease counts as an attempt, and past `retry_limit` retries the
//!   operation is marked failed (Optuna marks a silent RUNNING trial failed and may re-queue it).
//! - A worker opens the operation's record at the repository under its token (the repository then refuses writes under
//!   older tokens), continues from the iterations already recorded, runs each iteration in virtual time and writes its
//!   evaluation result. Results are keyed by iteration, so a retried write is idempotent. When the range is done the
//!   worker reports to the master.
//! - Policies: `full` (each configuration runs the whole budget) or `asha` (asynchronous successive halving, as in
//!   Ray Tune: rungs of `min_iterations * reduction_factor^r` iterations; a configuration is promoted to the next rung
//!   when it is in the top 1/reduction_factor of the results completed at its rung).
//! - The objective is a deterministic function of configuration and iteration, improving with iterations and ranking
//!   configurations the same at every iteration, so the true best is known in advance.
//!
//! Checkers: `exactly-one-result` (a completed record holds exactly one result per iteration), `no-lost-ack` (every
//! acknowledged result is in the final record), `single-holder` (no write is accepted for an operation from a lease
//! older than one that already opened it: never two live holders), `terminates` (every operation ends complete or failed
//! within its retry limit before the run ends), `best-reported` (the reported best equals the true best).
//!
//! Broken variant: `no-lease-fencing` (neither the master nor the repository compares tokens: a worker that lost its
//! lease keeps writing).

use super::{param_str, param_u64, Checks, Model, ModelReport};
use crate::kernel::{Kernel, NodeId, NS_PER_MS};
use crate::plan::Fault;
use std::collections::VecDeque;

pub const MASTER: NodeId = 0;
pub const REPO: NodeId = 1;
const FIRST_WORKER: NodeId = 2;

pub const CHECKERS: [&str; 5] = [
    "exactly-one-result",
    "no-lost-ack",
    "single-holder",
    "terminates",
    "best-reported",
];
const EXACTLY_ONE: usize = 0;
const NO_LOST_ACK: usize = 1;
const SINGLE_HOLDER: usize = 2;
const TERMINATES: usize = 3;
const BEST: usize = 4;

/// Operations one run may create (ASHA creates them as it promotes).
pub const OPERATIONS_MAX: usize = 100_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    Correct,
    NoLeaseFencing,
}

impl Variant {
    pub fn name(self) -> &'static str {
        match self {
            Variant::Correct => "correct",
            Variant::NoLeaseFencing => "no-lease-fencing",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    Full,
    Asha,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    pub variant: Variant,
    pub policy: Policy,
    pub workers: u64,
    pub configs: u64,
    pub min_iterations: u64,
    pub max_iterations: u64,
    pub reduction_factor: u64,
    pub iteration_ms: u64,
    pub lease_ms: u64,
    pub renew_interval_ms: u64,
    pub retry_limit: u64,
    pub poll_interval_ms: u64,
    pub write_timeout_ms: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            variant: Variant::Correct,
            policy: Policy::Asha,
            workers: 6,
            configs: 81,
            min_iterations: 1,
            max_iterations: 27,
            reduction_factor: 3,
            iteration_ms: 300,
            lease_ms: 1_000,
            renew_interval_ms: 250,
            retry_limit: 8,
            poll_interval_ms: 300,
            write_timeout_ms: 200,
        }
    }
}

impl Params {
    pub fn set(&mut self, key: &str, value: &toml::Value) -> Result<(), String> {
        let positive = |value: &toml::Value, max: u64| -> Result<u64, String> {
            match param_u64(value)? {
                v if v == 0 || v > max => Err(format!("must be between 1 and {max}")),
                v => Ok(v),
            }
        };
        match key {
            "variant" => {
                self.variant = match param_str(value)? {
                    "correct" => Variant::Correct,
                    "no-lease-fencing" => Variant::NoLeaseFencing,
                    other => return Err(format!("unknown variant `{other}` (known: correct, no-lease-fencing)")),
                }
            }
            "policy" => {
                self.policy = match param_str(value)? {
                    "full" => Policy::Full,
                    "asha" => Policy::Asha,
                    other => return Err(format!("unknown policy `{other}` (known: full, asha)")),
                }
            }
            "workers" => self.workers = positive(value, 64)?,
            "configs" => self.configs = positive(value, 10_000)?,
            "min_iterations" => self.min_iterations = positive(value, 10_000)?,
            "max_iterations" => self.max_iterations = positive(value, 10_000)?,
            "reduction_factor" => {
                self.reduction_factor = positive(value, 100)?;
                if self.reduction_factor < 2 {
                    return Err("must be at least 2".into());
                }
            }
            "iteration_ms" => self.iteration_ms = positive(value, 3_600_000)?,
            "lease_ms" => self.lease_ms = positive(value, 3_600_000)?,
            "renew_interval_ms" => self.renew_interval_ms = positive(value, 3_600_000)?,
            "retry_limit" => self.retry_limit = param_u64(value)?.min(1_000),
            "poll_interval_ms" => self.poll_interval_ms = positive(value, 3_600_000)?,
            "write_timeout_ms" => self.write_timeout_ms = positive(value, 3_600_000)?,
            other => {
                return Err(format!(
                    "unknown parameter `{other}` of model hpo (known: variant, policy, workers, configs, min_iterations, \
                     max_iterations, reduction_factor, iteration_ms, lease_ms, renew_interval_ms, retry_limit, \
                     poll_interval_ms, write_timeout_ms)"
                ))
            }
        }
        if self.min_iterations > self.max_iterations {
            return Err("min_iterations must not exceed max_iterations".into());
        }
        Ok(())
    }

    pub fn node_names(&self) -> Vec<String> {
        let mut names = vec!["master".to_string(), "repo".to_string()];
        names.extend((1..=self.workers).map(|i| format!("worker-{i}")));
        names
    }

    /// Iteration budgets of the rungs: min, min*rf, ... capped at max (the last rung is always max).
    pub fn rung_budgets(&self) -> Vec<u64> {
        match self.policy {
            Policy::Full => vec![self.max_iterations],
            Policy::Asha => {
                let mut budgets = Vec::new();
                let mut budget = self.min_iterations;
                while budget < self.max_iterations && budgets.len() < 32 {
                    budgets.push(budget);
                    budget = budget.saturating_mul(self.reduction_factor);
                }
                budgets.push(self.max_iterations);
                budgets
            }
        }
    }
}

/// The deterministic objective (lower is better): each configuration has one hyperparameter `x` in [0, 1); the loss
/// falls with iterations and ranks configurations the same at every iteration.
pub fn objective(config: u64, iteration: u64) -> f64 {
    let x = hyperparameter(config);
    (x - 0.3) * (x - 0.3) + 1.0 / (iteration as f64 + 1.0)
}

fn hyperparameter(config: u64) -> f64 {
    // A fixed permutation of [0, 1009) so that neighbouring configurations are far apart.
    ((config * 389 + 11) % 1009) as f64 / 1009.0
}

/// The configuration with the lowest loss.
pub fn true_best(configs: u64) -> u64 {
    (0..configs)
        .min_by(|&a, &b| objective(a, 0).total_cmp(&objective(b, 0)).then(a.cmp(&b)))
        .unwrap_or(0)
}

#[derive(Clone, Copy, Debug)]
pub enum Msg {
    Request,
    Grant {
        op: u32,
        token: u64,
        config: u64,
        start: u64,
        end: u64,
    },
    NoWork {
        finished: bool,
    },
    Renew {
        op: u32,
        token: u64,
    },
    RenewAck {
        op: u32,
        token: u64,
        ok: bool,
    },
    Done {
        op: u32,
        token: u64,
        value: f64,
    },
    DoneAck {
        op: u32,
    },
    Open {
        op: u32,
        token: u64,
    },
    OpenReply {
        op: u32,
        token: u64,
        recorded: u64,
        outcome: WriteOutcome,
    },
    Write {
        op: u32,
        token: u64,
        iteration: u64,
        value: f64,
    },
    WriteReply {
        op: u32,
        token: u64,
        iteration: u64,
        outcome: WriteOutcome,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    Accepted,
    Stale,
    DiskError,
}

#[derive(Clone, Copy, Debug)]
pub enum Timer {
    Poll,
    LeaseCheck,
    Iteration { op: u32, token: u64, iteration: u64 },
    Resend { op: u32, token: u64, attempt: u64 },
    Renew { op: u32, token: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum OpStatus {
    Pending,
    Leased {
        worker: NodeId,
        token: u64,
        expires_ns: u64,
    },
    Complete {
        value: f64,
    },
    Failed,
}

struct Op {
    config: u64,
    rung: usize,
    start: u64,
    end: u64,
    status: OpStatus,
    attempts: u64,
}

/// One result in a repository record.
#[derive(Clone, Copy)]
struct Entry {
    iteration: u64,
    value: f64,
    token: u64,
    worker: NodeId,
}

#[derive(Default)]
struct Record {
    entries: Vec<Entry>,
    /// The newest token that opened or wrote this record.
    token_max: u64,
}

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    /// Waiting for the repository to open the record.
    Opening,
    Computing,
    /// The result of `iteration` is computed and being written.
    Writing {
        value: f64,
    },
    /// All iterations written; reporting to the master.
    Reporting {
        value: f64,
    },
}

#[derive(Clone, Copy)]
struct Job {
    op: u32,
    token: u64,
    config: u64,
    /// First iteration of the operation's range.
    start: u64,
    next: u64,
    end: u64,
    phase: Phase,
}

#[derive(Default)]
struct Worker {
    job: Option<Job>,
    slow_factor: u64,
    busy_since_ns: Option<u64>,
    stop_polling: bool,
}

pub struct Hpo {
    p: Params,
    budgets: Vec<u64>,
    ops: Vec<Op>,
    queue: VecDeque<u32>,
    next_token: u64,
    /// Per rung: (value, config, promoted) of completed operations, for ASHA.
    rung_results: Vec<Vec<(f64, u64, bool)>>,
    finished_ns: Option<u64>,
    records: Vec<Record>,
    repo_disk_faults: u32,
    workers: Vec<Worker>,
    /// Every (op, iteration, value) whose write a worker saw acknowledged.
    acked: Vec<(u32, u64, f64)>,
    checks: Checks,
    busy_ns: u64,
    iterations_computed: u64,
    iterations_wasted: u64,
    coverage_died_holding: u64,
    coverage_died_unwritten: u64,
    coverage_lease_expired: u64,
    coverage_stale_refused: u64,
    coverage_disk_error: u64,
    coverage_failed_ops: u64,
}

type K = Kernel<Msg, Timer>;

impl Hpo {
    pub fn new(p: Params) -> Hpo {
        let budgets = p.rung_budgets();
        let workers = (0..p.workers)
            .map(|_| Worker {
                slow_factor: 1,
                ..Worker::default()
            })
            .collect();
        let mut hpo = Hpo {
            budgets,
            ops: Vec::new(),
            queue: VecDeque::new(),
            next_token: 1,
            rung_results: Vec::new(),
            finished_ns: None,
            records: Vec::new(),
            repo_disk_faults: 0,
            workers,
            acked: Vec::new(),
            checks: Checks::new(&CHECKERS),
            busy_ns: 0,
            iterations_computed: 0,
            iterations_wasted: 0,
            coverage_died_holding: 0,
            coverage_died_unwritten: 0,
            coverage_lease_expired: 0,
            coverage_stale_refused: 0,
            coverage_disk_error: 0,
            coverage_failed_ops: 0,
            p,
        };
        hpo.rung_results = vec![Vec::new(); hpo.budgets.len()];
        let first_rung = 0;
        for config in 0..hpo.p.configs {
            hpo.add_op(config, first_rung);
        }
        hpo
    }

    fn add_op(&mut self, config: u64, rung: usize) {
        if self.ops.len() >= OPERATIONS_MAX {
            return;
        }
        let start = if rung == 0 { 0 } else { self.budgets[rung - 1] };
        let end = self.budgets[rung];
        self.queue.push_back(self.ops.len() as u32);
        self.ops.push(Op {
            config,
            rung,
            start,
            end,
            status: OpStatus::Pending,
            attempts: 0,
        });
        self.records.push(Record::default());
    }

    fn ms(&self, value: u64) -> u64 {
        value * NS_PER_MS
    }

    fn fenced(&self) -> bool {
        self.p.variant == Variant::Correct
    }

    fn worker_index(node: NodeId) -> usize {
        node - FIRST_WORKER
    }

    // --- master ---

    fn master_request(&mut self, k: &mut K, worker: NodeId) {
        let now = k.now_ns();
        // A worker that asks again while holding a live lease (a duplicate request, or a restart) gets the same grant.
        if let Some((index, op)) = self.ops.iter().enumerate().find(|(_, op)| {
            matches!(op.status, OpStatus::Leased { worker: w, expires_ns, .. } if w == worker && expires_ns > now)
        }) {
            if let OpStatus::Leased { token, .. } = op.status {
                let grant = Msg::Grant { op: index as u32, token, config: op.config, start: op.start, end: op.end };
                k.send(MASTER, worker, grant);
                return;
            }
        }
        while let Some(index) = self.queue.pop_front() {
            let retry_limit = self.p.retry_limit;
            let op = &mut self.ops[index as usize];
            if op.status != OpStatus::Pending {
                continue;
            }
            if op.attempts > retry_limit {
                op.status = OpStatus::Failed;
                self.coverage_failed_ops += 1;
                k.log(MASTER, || {
                    format!("op {index} failed after {retry_limit} retries")
                });
                self.maybe_finished(k);
                continue;
            }
            op.attempts += 1;
            let token = self.next_token;
            self.next_token += 1;
            op.status = OpStatus::Leased {
                worker,
                token,
                expires_ns: now + self.p.lease_ms * NS_PER_MS,
            };
            let grant = Msg::Grant {
                op: index,
                token,
                config: op.config,
                start: op.start,
                end: op.end,
            };
            k.log(MASTER, || {
                format!(
                    "leases op {index} to {} under token {token}",
                    k_name(worker)
                )
            });
            k.send(MASTER, worker, grant);
            return;
        }
        k.send(
            MASTER,
            worker,
            Msg::NoWork {
                finished: self.finished_ns.is_some(),
            },
        );
    }

    fn master_lease_check(&mut self, k: &mut K) {
        let now = k.now_ns();
        for index in 0..self.ops.len() {
            if let OpStatus::Leased {
                expires_ns, token, ..
            } = self.ops[index].status
            {
                if expires_ns <= now {
                    self.ops[index].status = OpStatus::Pending;
                    self.queue.push_back(index as u32);
                    self.coverage_lease_expired += 1;
                    k.log(MASTER, || {
                        format!("lease of op {index} (token {token}) expired")
                    });
                }
            }
        }
        if self.finished_ns.is_none() {
            k.set_timer(MASTER, self.ms(100), Timer::LeaseCheck);
        }
    }

    fn master_renew(&mut self, k: &mut K, worker: NodeId, op: u32, token: u64) {
        let now = k.now_ns();
        let lease_ns = self.ms(self.p.lease_ms);
        let fenced = self.fenced();
        let entry = &mut self.ops[op as usize];
        let ok = match &mut entry.status {
            OpStatus::Leased {
                token: current,
                expires_ns,
                ..
            } if *current == token || !fenced => {
                *expires_ns = now + lease_ns;
                true
            }
            // Without fencing the master cannot tell an old lease from the current one and keeps renewing.
            OpStatus::Pending if !fenced => true,
            _ => false,
        };
        k.send(MASTER, worker, Msg::RenewAck { op, token, ok });
    }

    fn master_done(&mut self, k: &mut K, worker: NodeId, op: u32, token: u64, value: f64) {
        let fenced = self.fenced();
        let entry = &mut self.ops[op as usize];
        let current = match entry.status {
            OpStatus::Leased { token: t, .. } => t == token || !fenced,
            OpStatus::Pending => !fenced,
            _ => false,
        };
        k.send(MASTER, worker, Msg::DoneAck { op });
        if !current {
            return;
        }
        entry.status = OpStatus::Complete { value };
        let (rung, config) = (entry.rung, entry.config);
        k.log(MASTER, || {
            format!("op {op} (config {config}, rung {rung}) complete: {value:.6}")
        });
        if rung + 1 < self.budgets.len() {
            self.rung_results[rung].push((value, config, false));
            self.promote(rung);
        }
        self.maybe_finished(k);
    }

    /// ASHA: promote every not-yet-promoted configuration in the top floor(n / reduction_factor) of its rung.
    fn promote(&mut self, rung: usize) {
        let results = &mut self.rung_results[rung];
        let top = results.len() / self.p.reduction_factor as usize;
        results.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut promoted = Vec::new();
        for entry in results.iter_mut().take(top) {
            if !entry.2 {
                entry.2 = true;
                promoted.push(entry.1);
            }
        }
        for config in promoted {
            self.add_op(config, rung + 1);
        }
    }

    fn maybe_finished(&mut self, k: &mut K) {
        if self.finished_ns.is_none()
            && self
                .ops
                .iter()
                .all(|op| matches!(op.status, OpStatus::Complete { .. } | OpStatus::Failed))
        {
            let now = k.now_ns();
            self.finished_ns = Some(now);
            k.log(MASTER, || "all operations ended".into());
        }
    }

    /// The master's answer: the configuration with the lowest final value at the top rung.
    fn reported_best(&self) -> Option<u64> {
        let top = self.budgets.len() - 1;
        self.ops
            .iter()
            .filter(|op| op.rung == top)
            .filter_map(|op| match op.status {
                OpStatus::Complete { value } => Some((value, op.config)),
                _ => None,
            })
            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
            .map(|(_, config)| config)
    }

    // --- repository ---

    fn repo_open(&mut self, k: &mut K, worker: NodeId, op: u32, token: u64) {
        let fenced = self.fenced();
        let disk_failing = self.repo_disk_faults > 0;
        let start = self.ops[op as usize].start;
        let record = &mut self.records[op as usize];
        if disk_failing {
            self.coverage_disk_error += 1;
            k.send(
                REPO,
                worker,
                Msg::OpenReply {
                    op,
                    token,
                    recorded: 0,
                    outcome: WriteOutcome::DiskError,
                },
            );
            return;
        }
        let ok = !fenced || token >= record.token_max;
        let outcome = if ok {
            WriteOutcome::Accepted
        } else {
            WriteOutcome::Stale
        };
        if ok {
            record.token_max = record.token_max.max(token);
        }
        // Results are recorded in order from `start`; count the contiguous prefix.
        let mut recorded = 0;
        while record
            .entries
            .iter()
            .any(|e| e.iteration == start + recorded)
        {
            recorded += 1;
        }
        k.send(
            REPO,
            worker,
            Msg::OpenReply {
                op,
                token,
                recorded,
                outcome,
            },
        );
    }

    fn repo_write(
        &mut self,
        k: &mut K,
        worker: NodeId,
        op: u32,
        token: u64,
        iteration: u64,
        value: f64,
    ) {
        let now = k.now_ns();
        let fenced = self.fenced();
        if self.repo_disk_faults > 0 {
            self.coverage_disk_error += 1;
            k.send(
                REPO,
                worker,
                Msg::WriteReply {
                    op,
                    token,
                    iteration,
                    outcome: WriteOutcome::DiskError,
                },
            );
            return;
        }
        let record = &mut self.records[op as usize];
        if fenced && token < record.token_max {
            self.coverage_stale_refused += 1;
            k.send(
                REPO,
                worker,
                Msg::WriteReply {
                    op,
                    token,
                    iteration,
                    outcome: WriteOutcome::Stale,
                },
            );
            return;
        }
        if token < record.token_max {
            let newest = record.token_max;
            self.checks.fail(SINGLE_HOLDER, now, || {
                format!("op {op}: write of iteration {iteration} under token {token} accepted after token {newest} opened the record (two live holders)")
            });
        }
        record.token_max = record.token_max.max(token);
        // Idempotent per iteration and lease (fenced) or per iteration and worker (unfenced: no tokens to compare).
        let duplicate = record.entries.iter().any(|e| {
            e.iteration == iteration
                && if fenced {
                    e.token == token
                } else {
                    e.worker == worker
                }
        });
        if !duplicate {
            record.entries.push(Entry {
                iteration,
                value,
                token,
                worker,
            });
        }
        k.send(
            REPO,
            worker,
            Msg::WriteReply {
                op,
                token,
                iteration,
                outcome: WriteOutcome::Accepted,
            },
        );
    }

    // --- workers ---

    fn worker_poll(&mut self, k: &mut K, node: NodeId) {
        let w = &self.workers[Self::worker_index(node)];
        if w.job.is_none() && !w.stop_polling {
            k.send(node, MASTER, Msg::Request);
            k.set_timer(node, self.ms(self.p.poll_interval_ms), Timer::Poll);
        }
    }

    /// A grant arrived; `grant` is the job it describes, still to be opened at the repository.
    fn worker_grant(&mut self, k: &mut K, node: NodeId, grant: Job) {
        let Job { op, token, .. } = grant;
        let index = Self::worker_index(node);
        if let Some(job) = &self.workers[index].job {
            if job.op != op || job.token != token {
                // Already busy (a duplicated request got two grants): let the lease expire; the master re-queues it.
                k.log(node, || format!("busy; ignores grant of op {op}"));
            }
            return;
        }
        self.workers[index].job = Some(grant);
        self.workers[index].busy_since_ns = Some(k.now_ns());
        k.send(node, REPO, Msg::Open { op, token });
        k.set_timer(
            node,
            self.ms(self.p.write_timeout_ms),
            Timer::Resend {
                op,
                token,
                attempt: 0,
            },
        );
        k.set_timer(
            node,
            self.ms(self.p.renew_interval_ms),
            Timer::Renew { op, token },
        );
    }

    fn job_mut(&mut self, node: NodeId, op: u32, token: u64) -> Option<&mut Job> {
        self.workers[Self::worker_index(node)]
            .job
            .as_mut()
            .filter(|j| j.op == op && j.token == token)
    }

    fn start_iteration(&mut self, k: &mut K, node: NodeId) {
        let index = Self::worker_index(node);
        let slow = self.workers[index].slow_factor;
        let Some(job) = &mut self.workers[index].job else {
            return;
        };
        job.phase = Phase::Computing;
        let timer = Timer::Iteration {
            op: job.op,
            token: job.token,
            iteration: job.next,
        };
        k.set_timer(node, self.p.iteration_ms * slow * NS_PER_MS, timer);
    }

    fn send_current(&mut self, k: &mut K, node: NodeId) {
        let Some(job) = self.workers[Self::worker_index(node)].job else {
            return;
        };
        match job.phase {
            Phase::Opening => k.send(
                node,
                REPO,
                Msg::Open {
                    op: job.op,
                    token: job.token,
                },
            ),
            Phase::Writing { value } => k.send(
                node,
                REPO,
                Msg::Write {
                    op: job.op,
                    token: job.token,
                    iteration: job.next,
                    value,
                },
            ),
            Phase::Reporting { value } => k.send(
                node,
                MASTER,
                Msg::Done {
                    op: job.op,
                    token: job.token,
                    value,
                },
            ),
            Phase::Computing => return,
        }
        k.set_timer(
            node,
            self.ms(self.p.write_timeout_ms),
            Timer::Resend {
                op: job.op,
                token: job.token,
                attempt: 0,
            },
        );
    }

    fn abandon(&mut self, k: &mut K, node: NodeId, why: &str) {
        let index = Self::worker_index(node);
        if let Some(job) = self.workers[index].job.take() {
            if matches!(job.phase, Phase::Writing { .. }) {
                self.iterations_wasted += 1;
            }
            k.log(node, || {
                format!("abandons op {} (token {}): {why}", job.op, job.token)
            });
        }
        self.end_busy(k, index);
        self.worker_poll(k, node);
    }

    fn end_busy(&mut self, k: &K, index: usize) {
        if let Some(since) = self.workers[index].busy_since_ns.take() {
            self.busy_ns += k.now_ns() - since;
        }
    }

    fn worker_message(&mut self, k: &mut K, node: NodeId, msg: Msg) {
        match msg {
            Msg::Grant {
                op,
                token,
                config,
                start,
                end,
            } => {
                let job = Job {
                    op,
                    token,
                    config,
                    start,
                    next: start,
                    end,
                    phase: Phase::Opening,
                };
                self.worker_grant(k, node, job)
            }
            Msg::NoWork { finished } if finished => {
                self.workers[Self::worker_index(node)].stop_polling = true;
            }
            Msg::RenewAck { op, token, ok } if !ok && self.job_mut(node, op, token).is_some() => {
                self.abandon(k, node, "the master refused to renew the lease");
            }
            Msg::OpenReply {
                op,
                token,
                recorded,
                outcome,
            } => {
                let index = Self::worker_index(node);
                let Some(job) = self.workers[index]
                    .job
                    .as_mut()
                    .filter(|j| j.op == op && j.token == token)
                else {
                    return;
                };
                if job.phase != Phase::Opening {
                    return;
                }
                match outcome {
                    WriteOutcome::Accepted => {}
                    // Retried by the resend timer.
                    WriteOutcome::DiskError => return,
                    WriteOutcome::Stale => {
                        self.abandon(
                            k,
                            node,
                            "the repository refused the open under a stale token",
                        );
                        return;
                    }
                }
                let start = job.start;
                job.next = start + recorded;
                if job.next >= job.end {
                    let value = objective(job.config, job.end - 1);
                    job.phase = Phase::Reporting { value };
                    self.send_current(k, node);
                } else {
                    self.start_iteration(k, node);
                }
            }
            Msg::WriteReply {
                op,
                token,
                iteration,
                outcome,
            } => {
                let index = Self::worker_index(node);
                let Some(job) = self.workers[index]
                    .job
                    .as_mut()
                    .filter(|j| j.op == op && j.token == token)
                else {
                    return;
                };
                let Phase::Writing { value } = job.phase else {
                    return;
                };
                if iteration != job.next {
                    return;
                }
                match outcome {
                    WriteOutcome::Accepted => {
                        self.acked.push((op, iteration, value));
                        job.next += 1;
                        if job.next >= job.end {
                            job.phase = Phase::Reporting { value };
                            self.send_current(k, node);
                        } else {
                            self.start_iteration(k, node);
                        }
                    }
                    WriteOutcome::Stale => self.abandon(
                        k,
                        node,
                        "the repository refused a write under a stale token",
                    ),
                    // Retried by the resend timer.
                    WriteOutcome::DiskError => {}
                }
            }
            Msg::DoneAck { op } => {
                let index = Self::worker_index(node);
                if self.workers[index]
                    .job
                    .is_some_and(|j| j.op == op && matches!(j.phase, Phase::Reporting { .. }))
                {
                    self.workers[index].job = None;
                    self.end_busy(k, index);
                    self.worker_poll(k, node);
                }
            }
            _ => {}
        }
    }

    fn worker_timer(&mut self, k: &mut K, node: NodeId, timer: Timer) {
        match timer {
            Timer::Poll => self.worker_poll(k, node),
            Timer::Iteration {
                op,
                token,
                iteration,
            } => {
                let Some(job) = self.job_mut(node, op, token) else {
                    return;
                };
                if job.phase != Phase::Computing || job.next != iteration {
                    return;
                }
                let value = objective(job.config, iteration);
                job.phase = Phase::Writing { value };
                self.iterations_computed += 1;
                self.send_current(k, node);
            }
            Timer::Resend { op, token, attempt } => {
                if self
                    .job_mut(node, op, token)
                    .is_some_and(|j| j.phase != Phase::Computing)
                {
                    let _ = attempt;
                    self.send_current(k, node);
                }
            }
            Timer::Renew { op, token } => {
                if self.job_mut(node, op, token).is_some() {
                    k.send(node, MASTER, Msg::Renew { op, token });
                    k.set_timer(
                        node,
                        self.ms(self.p.renew_interval_ms),
                        Timer::Renew { op, token },
                    );
                }
            }
            Timer::LeaseCheck => {}
        }
    }
}

fn k_name(node: NodeId) -> String {
    format!("worker-{}", node - FIRST_WORKER + 1)
}

impl Model for Hpo {
    type Msg = Msg;
    type Timer = Timer;

    fn start(&mut self, k: &mut K) {
        k.set_timer(MASTER, self.ms(100), Timer::LeaseCheck);
        for index in 0..self.workers.len() {
            // Staggered first requests: the order in which workers arrive is part of the run.
            k.set_timer(
                FIRST_WORKER + index,
                (index as u64 + 1) * NS_PER_MS,
                Timer::Poll,
            );
        }
    }

    fn on_message(&mut self, k: &mut K, to: NodeId, from: NodeId, msg: Msg) {
        match (to, msg) {
            (MASTER, Msg::Request) => self.master_request(k, from),
            (MASTER, Msg::Renew { op, token }) => self.master_renew(k, from, op, token),
            (MASTER, Msg::Done { op, token, value }) => self.master_done(k, from, op, token, value),
            (REPO, Msg::Open { op, token }) => self.repo_open(k, from, op, token),
            (
                REPO,
                Msg::Write {
                    op,
                    token,
                    iteration,
                    value,
                },
            ) => self.repo_write(k, from, op, token, iteration, value),
            (MASTER, _) | (REPO, _) => {}
            (worker, msg) => self.worker_message(k, worker, msg),
        }
    }

    fn on_timer(&mut self, k: &mut K, node: NodeId, timer: Timer) {
        match (node, timer) {
            (MASTER, Timer::LeaseCheck) => self.master_lease_check(k),
            (MASTER, _) | (REPO, _) => {}
            (worker, timer) => self.worker_timer(k, worker, timer),
        }
    }

    fn on_crash(&mut self, k: &mut K, node: NodeId) {
        if node < FIRST_WORKER {
            // The master and the repository are durable in this model; a template may still crash them to watch
            // the workers wait.
            return;
        }
        let index = Self::worker_index(node);
        if let Some(job) = self.workers[index].job.take() {
            self.coverage_died_holding += 1;
            match job.phase {
                Phase::Writing { .. } => {
                    self.coverage_died_unwritten += 1;
                    self.iterations_wasted += 1;
                }
                Phase::Computing => self.iterations_wasted += 1,
                _ => {}
            }
        }
        self.end_busy(k, index);
        self.workers[index].stop_polling = false;
    }

    fn on_restart(&mut self, k: &mut K, node: NodeId) {
        match node {
            MASTER => {
                if self.finished_ns.is_none() {
                    k.set_timer(MASTER, self.ms(100), Timer::LeaseCheck);
                }
            }
            REPO => {}
            worker => k.set_timer(worker, 0, Timer::Poll),
        }
    }

    fn on_fault(&mut self, _k: &mut K, fault: &Fault, starting: bool) {
        match *fault {
            Fault::DiskFault(REPO) => {
                if starting {
                    self.repo_disk_faults += 1;
                } else {
                    self.repo_disk_faults = self.repo_disk_faults.saturating_sub(1);
                }
            }
            Fault::Slow { node, factor } if node >= FIRST_WORKER => {
                self.workers[Self::worker_index(node)].slow_factor =
                    if starting { u64::from(factor) } else { 1 };
            }
            _ => {}
        }
    }

    fn on_check(&mut self, k: &mut K) {
        if self.finished_ns.is_none() {
            let open = self
                .ops
                .iter()
                .filter(|op| !matches!(op.status, OpStatus::Complete { .. } | OpStatus::Failed))
                .count();
            self.checks.fail(TERMINATES, k.now_ns(), || {
                format!("{open} operations still open at the check step")
            });
        }
    }

    fn finish(&mut self, k: &mut K) -> ModelReport {
        let now = k.now_ns();
        for index in 0..self.workers.len() {
            self.end_busy(k, index);
        }
        // exactly-one-result
        for (index, op) in self.ops.iter().enumerate() {
            if !matches!(op.status, OpStatus::Complete { .. }) {
                continue;
            }
            let record = &self.records[index];
            for iteration in op.start..op.end {
                let count = record
                    .entries
                    .iter()
                    .filter(|e| e.iteration == iteration)
                    .count();
                if count != 1 {
                    self.checks.fail(EXACTLY_ONE, now, || {
                        format!("completed op {index} (config {}) holds {count} results for iteration {iteration}", op.config)
                    });
                }
            }
        }
        // no-lost-ack
        for &(op, iteration, value) in &self.acked {
            let present = self.records[op as usize]
                .entries
                .iter()
                .any(|e| e.iteration == iteration && e.value == value);
            if !present {
                self.checks.fail(NO_LOST_ACK, now, || {
                    format!("acknowledged result of op {op} iteration {iteration} is missing")
                });
            }
        }
        // terminates
        let retry_limit = self.p.retry_limit;
        for (index, op) in self.ops.iter().enumerate() {
            match op.status {
                OpStatus::Complete { .. } | OpStatus::Failed => {
                    if op.attempts > retry_limit + 1 {
                        self.checks.fail(TERMINATES, now, || {
                            format!("op {index} took {} attempts, more than 1 + retry_limit {retry_limit}", op.attempts)
                        });
                    }
                }
                _ => self.checks.fail(TERMINATES, now, || {
                    format!(
                        "op {index} (config {}) neither complete nor failed at the end",
                        op.config
                    )
                }),
            }
        }
        // best-reported: only meaningful once the job finished and the best configuration did not exhaust its retries.
        let best = true_best(self.p.configs);
        let best_failed = self
            .ops
            .iter()
            .any(|op| op.config == best && op.status == OpStatus::Failed);
        if self.finished_ns.is_some() && !best_failed {
            let reported = self.reported_best();
            if reported != Some(best) {
                self.checks.fail(BEST, now, || {
                    let reported =
                        reported.map_or("none".to_string(), |c| format!("configuration {c}"));
                    format!("reported best {reported}, true best configuration {best}")
                });
            }
        }
        let useful: u64 = self
            .ops
            .iter()
            .filter(|op| matches!(op.status, OpStatus::Complete { .. }))
            .map(|op| op.end - op.start)
            .sum();
        let mut metrics: Vec<(&'static str, Vec<f64>)> = Vec::new();
        if let Some(finished) = self.finished_ns {
            let makespan_ms = finished as f64 / 1e6;
            let ideal_ms = (useful * self.p.iteration_ms) as f64 / self.p.workers as f64;
            metrics.push(("makespan_ms", vec![makespan_ms]));
            metrics.push((
                "makespan_over_ideal",
                vec![if ideal_ms > 0.0 {
                    makespan_ms / ideal_ms
                } else {
                    1.0
                }],
            ));
            let capacity = finished as f64 * self.p.workers as f64;
            metrics.push((
                "worker_utilisation",
                vec![if capacity > 0.0 {
                    self.busy_ns as f64 / capacity
                } else {
                    0.0
                }],
            ));
        } else {
            metrics.push(("makespan_ms", vec![]));
            metrics.push(("makespan_over_ideal", vec![]));
            metrics.push(("worker_utilisation", vec![]));
        }
        metrics.push((
            "wasted_iterations",
            vec![
                self.iterations_wasted as f64
                    + self
                        .iterations_computed
                        .saturating_sub(useful + self.iterations_wasted)
                        as f64,
            ],
        ));
        let checks = std::mem::replace(&mut self.checks, Checks::new(&CHECKERS));
        ModelReport {
            checks: checks.into_results(),
            metrics,
            coverage: vec![
                ("worker died holding a lease", self.coverage_died_holding),
                (
                    "worker died between computing and writing",
                    self.coverage_died_unwritten,
                ),
                (
                    "lease expired and the operation was re-queued",
                    self.coverage_lease_expired,
                ),
                ("stale-token write refused", self.coverage_stale_refused),
                ("repository write failed", self.coverage_disk_error),
                (
                    "operation failed at its retry limit",
                    self.coverage_failed_ops,
                ),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objective_ranks_configurations_the_same_at_every_iteration() {
        let best = true_best(81);
        for iteration in [0, 1, 5, 26] {
            for config in 0..81 {
                if config != best {
                    assert!(objective(best, iteration) < objective(config, iteration));
                }
            }
            assert!(
                objective(best, iteration + 1) < objective(best, iteration),
                "loss falls with iterations"
            );
        }
    }

    #[test]
    fn asha_rungs_grow_by_the_reduction_factor() {
        let p = Params::default();
        assert_eq!(p.rung_budgets(), vec![1, 3, 9, 27]);
        let full = Params {
            policy: Policy::Full,
            ..Params::default()
        };
        assert_eq!(full.rung_budgets(), vec![27]);
    }
}
