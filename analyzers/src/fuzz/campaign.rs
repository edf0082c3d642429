//! The campaign: a corpus grown by coverage, workers that mutate and run, findings deduplicated and minimised.
//!
//! Determinism at any `jobs`: the campaign runs in rounds. At the start of a round every worker sees the same
//! corpus, dictionary and map of edges seen (AFL's virgin map); worker `w` runs `ROUND_EXECS` children drawn
//! from its own stream ("fuzz.round.R.worker.W" of the seed) on its own executor, in parallel. At the end of the
//! round the results are merged in worker order, child order: an entry joins the queue if it still adds an edge
//! or a hit-count bucket, a finding is kept if its key (verdict and stack) is new, and is then minimised on the
//! merging thread. So the same seed and the same `jobs` give the same queue and findings in the same order; a
//! different `jobs` is another (equally valid) campaign.

use super::exec::{Execution, Executor, Target, Verdict};
use super::genome::Genome;
use super::mutate::{self, Context, Operator};
use std::collections::{BTreeMap, BTreeSet};
use tandem_emulator::cpu::coverage::{bucket, MAP_BYTES};
use tandem_emulator::cpu::named_stream;

/// Children each worker runs per round.
pub const ROUND_EXECS: u64 = 256;
/// Most entries the queue holds; past it only findings are kept.
pub const QUEUE_ENTRIES_MAX: usize = 1 << 16;
/// Most executions one finding's minimisation spends.
pub const MINIMISE_EXECS_MAX: u64 = 2000;
/// Most workers.
pub const JOBS_MAX: usize = 256;

/// How a campaign runs.
#[derive(Clone)]
pub struct Options {
    pub seed: u64,
    pub jobs: usize,
    /// Stop after this many executions (rounded up to whole rounds).
    pub execs_max: u64,
}

/// A corpus entry.
#[derive(Clone, Debug)]
pub struct Entry {
    pub id: usize,
    pub genome: Genome,
    /// Where it came from: "orig:NAME" or "src:000012,op:havoc".
    pub origin: String,
    /// The execution that found it (counted as a finding's `execs`).
    pub execs: u64,
    /// Its run's calls per syscall, where fault mutations aim.
    pub syscall_calls: Vec<(u64, u64)>,
}

/// A kept finding (crash, abort or hang), minimised.
#[derive(Clone, Debug)]
pub struct Finding {
    pub id: usize,
    pub genome: Genome,
    pub verdict: Verdict,
    pub stack: Vec<u64>,
    pub diagnostic: Option<String>,
    pub origin: String,
    /// The execution that found it: the executions before its round (minimisations included) plus its number
    /// in the round (its minimisation's are not counted).
    pub execs: u64,
    /// Executions of the minimisation.
    pub minimise_execs: u64,
}

/// Counters of the campaign so far.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    pub execs: u64,
    pub rounds: u64,
    pub queue_len: usize,
    /// Map bytes with any bucket seen.
    pub edges: usize,
    pub crashes: usize,
    pub hangs: usize,
    /// Executions when the last queue entry was added.
    pub last_new_execs: u64,
    pub dictionary_len: usize,
}

/// What a child run found, before merging.
struct Candidate {
    /// Its number among the round's executions (worker by worker, from 1).
    number: u64,
    genome: Genome,
    origin: String,
    /// Index and bucket of every edge hit.
    buckets: Vec<(u16, u8)>,
    execution: Execution,
}

/// One worker: an executor and its counters.
struct Worker {
    executor: Executor,
}

/// A campaign over one target.
pub struct Campaign {
    target: Target,
    options: Options,
    workers: Vec<Worker>,
    pub queue: Vec<Entry>,
    pub findings: Vec<Finding>,
    finding_keys: BTreeSet<(Verdict, Vec<u64>)>,
    /// Buckets seen per map byte (AFL's virgin map, inverted).
    seen: Box<[u8; MAP_BYTES]>,
    dictionary: BTreeSet<(u64, u8)>,
    pub progress: Progress,
    /// Why the campaign stopped early (a checker that failed).
    pub failure: Option<String>,
}

/// The target failed to load.
#[derive(Debug, thiserror::Error)]
#[error("the program does not load: {0}")]
pub struct LoadFailed(pub String);

impl Campaign {
    /// Loads the target once per worker and runs the seeds (an empty input when there are none).
    pub fn new(
        target: Target,
        options: Options,
        seeds: Vec<(String, Genome)>,
    ) -> Result<Campaign, LoadFailed> {
        assert!(options.jobs >= 1 && options.jobs <= JOBS_MAX);
        let mut workers = Vec::new();
        for w in 0..options.jobs {
            let executor = Executor::new(&target, w).map_err(|e| LoadFailed(e.to_string()))?;
            workers.push(Worker { executor });
        }
        let mut c = Campaign {
            target,
            options,
            workers,
            queue: Vec::new(),
            findings: Vec::new(),
            finding_keys: BTreeSet::new(),
            seen: Box::new([0; MAP_BYTES]),
            dictionary: BTreeSet::new(),
            progress: Progress::default(),
            failure: None,
        };
        let seeds = if seeds.is_empty() {
            vec![("empty".to_string(), Genome::default())]
        } else {
            seeds
        };
        for (name, mut genome) in seeds {
            genome.normalise();
            let candidate = run_one(
                &mut c.workers[0].executor,
                genome,
                format!("orig:{name}"),
                1,
            );
            c.progress.execs += 1;
            // Seeds join the queue whatever they cover, as afl-fuzz keeps its inputs.
            c.merge(candidate, c.progress.execs - 1, true);
        }
        c.dictionary.extend(
            c.workers[0]
                .executor
                .coverage()
                .dictionary()
                .iter()
                .copied(),
        );
        c.update_progress();
        Ok(c)
    }

    /// The target this campaign runs.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The instruction count each execution starts at (0: the program's first instruction).
    pub fn snapshot_icount(&self) -> u64 {
        self.workers[0].executor.snapshot_icount()
    }

    /// Runs one round on every worker and merges it; returns the findings added this round (indices into
    /// `findings`).
    pub fn round(&mut self) -> std::ops::Range<usize> {
        let first_finding = self.findings.len();
        let round = self.progress.rounds;
        let seed = self.options.seed;
        let queue = &self.queue;
        let dictionary: Vec<(u64, u8)> = self.dictionary.iter().copied().collect();
        let seen = &self.seen;
        let results: Vec<Vec<Candidate>> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .workers
                .iter_mut()
                .enumerate()
                .map(|(w, worker)| {
                    let dictionary = &dictionary;
                    s.spawn(move || {
                        let name = format!("fuzz.round.{round}.worker.{w}");
                        let first = w as u64 * ROUND_EXECS + 1;
                        let rng = named_stream(seed, &name);
                        worker.run_round(queue, dictionary, seen, rng, first)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a fuzz worker panicked"))
                .collect()
        });
        let base = self.progress.execs;
        self.progress.execs += ROUND_EXECS * self.workers.len() as u64;
        self.progress.rounds += 1;
        for candidate in results.into_iter().flatten() {
            self.merge(candidate, base, false);
        }
        for worker in &self.workers {
            let d = worker.executor.coverage().dictionary();
            self.dictionary.extend(d.iter().copied());
        }
        self.update_progress();
        first_finding..self.findings.len()
    }

    /// Rounds until `execs_max` executions, calling `observe` after each; it returns false to stop early.
    pub fn run(&mut self, observe: &mut dyn FnMut(&Campaign, std::ops::Range<usize>) -> bool) {
        while self.progress.execs < self.options.execs_max && self.failure.is_none() {
            let new = self.round();
            if !observe(self, new) {
                break;
            }
        }
    }

    /// Adds a candidate's coverage to the map seen; queues it if it added something (or `always`); keeps and
    /// minimises it if it is a new finding. `base` is the executions before its round.
    fn merge(&mut self, candidate: Candidate, base: u64, always: bool) {
        if let Some(why) = &candidate.execution.checker_failed {
            self.failure.get_or_insert_with(|| why.clone());
            return;
        }
        let execs = base + candidate.number;
        let mut new = false;
        for &(i, b) in &candidate.buckets {
            let s = &mut self.seen[i as usize];
            if *s & b != b {
                *s |= b;
                new = true;
            }
        }
        let e = &candidate.execution;
        if e.verdict.is_finding() {
            let key = e.finding_key();
            if !self.finding_keys.contains(&key) {
                self.finding_keys.insert(key);
                self.keep_finding(&candidate, execs);
            }
            return;
        }
        if (new || always) && self.queue.len() < QUEUE_ENTRIES_MAX {
            self.queue.push(Entry {
                id: self.queue.len(),
                genome: candidate.genome,
                origin: candidate.origin,
                execs,
                syscall_calls: candidate.execution.syscall_calls,
            });
            self.progress.last_new_execs = execs;
        }
    }

    /// Keeps a new finding made at execution `execs`, minimised.
    fn keep_finding(&mut self, candidate: &Candidate, execs: u64) {
        let e = &candidate.execution;
        let executor = &mut self.workers[0].executor;
        let (genome, minimise_execs) = if e.verdict == Verdict::Hang {
            // A hang costs the whole budget per run: kept as found.
            (candidate.genome.clone(), 0)
        } else {
            minimise(executor, &candidate.genome, &e.finding_key())
        };
        self.progress.execs += minimise_execs;
        self.findings.push(Finding {
            id: self.findings.len(),
            genome,
            verdict: e.verdict.clone(),
            stack: e.stack.clone(),
            diagnostic: e.diagnostic.clone(),
            origin: candidate.origin.clone(),
            execs,
            minimise_execs,
        });
    }

    fn update_progress(&mut self) {
        let p = &mut self.progress;
        p.queue_len = self.queue.len();
        p.edges = self.seen.iter().filter(|&&b| b != 0).count();
        p.crashes = self
            .findings
            .iter()
            .filter(|f| f.verdict != Verdict::Hang)
            .count();
        p.hangs = self.findings.len() - p.crashes;
        p.dictionary_len = self.dictionary.len();
    }
}

impl Worker {
    fn run_round(
        &mut self,
        queue: &[Entry],
        dictionary: &[(u64, u8)],
        seen: &[u8; MAP_BYTES],
        mut rng: rand_chacha::ChaCha20Rng,
        first: u64,
    ) -> Vec<Candidate> {
        use rand::Rng;
        let mut local_seen = Box::new(*seen);
        let mut out = Vec::new();
        let mut keys = BTreeSet::new();
        for k in 0..ROUND_EXECS {
            // Newer entries more often: they are where the frontier is.
            let n = queue.len();
            let i = if rng.random_bool(0.5) {
                rng.random_range(n - n.div_ceil(4)..n)
            } else {
                rng.random_range(0..n)
            };
            let parent = &queue[i];
            let other = &queue[rng.random_range(0..n)];
            let ctx = Context {
                dictionary,
                other: Some(&other.genome),
                syscall_calls: &parent.syscall_calls,
            };
            let (genome, op) = mutate::mutate(&parent.genome, &ctx, &mut rng);
            let origin = format!("src:{:06},op:{}", parent.id, op_name(op));
            let candidate = run_one(&mut self.executor, genome, origin, first + k);
            if candidate.execution.checker_failed.is_some() {
                out.push(candidate);
                break;
            }
            let mut new = false;
            for &(i, b) in &candidate.buckets {
                let s = &mut local_seen[i as usize];
                if *s & b != b {
                    *s |= b;
                    new = true;
                }
            }
            let finding = candidate.execution.verdict.is_finding()
                && keys.insert(candidate.execution.finding_key());
            if new || finding {
                out.push(candidate);
            }
        }
        out
    }
}

fn op_name(op: Operator) -> &'static str {
    op.name()
}

/// Runs `genome` and collects its coverage as (index, bucket) pairs.
fn run_one(executor: &mut Executor, genome: Genome, origin: String, number: u64) -> Candidate {
    let execution = executor.run(&genome);
    let buckets = executor
        .coverage()
        .hits()
        .map(|(i, c)| (i, bucket(c)))
        .collect();
    Candidate {
        number,
        genome,
        origin,
        buckets,
        execution,
    }
}

/// The smallest genome found that still gives `key`: faults dropped one by one, then stdin blocks removed with
/// halving block sizes (afl-tmin's scheme), within `MINIMISE_EXECS_MAX` executions.
pub fn minimise(
    executor: &mut Executor,
    genome: &Genome,
    key: &(Verdict, Vec<u64>),
) -> (Genome, u64) {
    let mut best = genome.clone();
    let mut execs = 0u64;
    let mut same = |g: &Genome, execs: &mut u64| {
        *execs += 1;
        executor.run(g).finding_key() == *key
    };
    let mut i = best.faults.len();
    while i > 0 && execs < MINIMISE_EXECS_MAX {
        i -= 1;
        let mut g = best.clone();
        g.faults.remove(i);
        if same(&g, &mut execs) {
            best = g;
        }
    }
    let mut block = best.stdin.len().next_power_of_two() / 2;
    while block >= 1 && execs < MINIMISE_EXECS_MAX {
        let mut at = 0;
        while at < best.stdin.len() && execs < MINIMISE_EXECS_MAX {
            let mut g = best.clone();
            let end = (at + block).min(g.stdin.len());
            g.stdin.drain(at..end);
            if same(&g, &mut execs) {
                best = g;
            } else {
                at += block;
            }
        }
        block /= 2;
    }
    (best, execs)
}

/// Findings by verdict label, for summaries.
pub fn findings_by_label(findings: &[Finding]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for f in findings {
        *m.entry(f.verdict.label()).or_insert(0) += 1;
    }
    m
}
