//! The deterministic scheduler: which runnable task runs next, and for how many instructions.
//!
//! What it owns: the set of runnable tasks and the policy's own state (a run queue for the fair policy, seeded
//! priorities and change points for the chaos policy). It knows nothing of what a task is or why one is blocked:
//! the kernel tells it when a task becomes runnable (`make_runnable`) or stops being so (`remove`), and asks it
//! for the next slice (`pick`). Blocked tasks live in the kernel's blocked pool, not here.
//!
//! Determinism: every choice is a function of the root seed (one named stream, "linux.sched"), the sequence of
//! calls and the global instruction count. No host state reaches it, so a replay that makes the same calls gets
//! the same schedule and no schedule needs to be recorded.
//!
//! Policies:
//! - `Fair`: round robin in the order tasks became runnable; each slice lasts a quantum drawn from the seed in
//!   [quantum/2, 3*quantum/2), so that different seeds interleave tasks differently while every runnable task
//!   gets the CPU within one round.
//! - `Chaos`: probabilistic concurrency testing (PCT, Burckhardt et al., ASPLOS 2010) in the spirit of rr's chaos
//!   mode. Every task gets a random priority when it is created; the runnable task of highest priority runs. At
//!   change points, drawn from the seed with a mean gap of `change_gap_insns` instructions, the running task's
//!   priority drops below every other, so a task is preempted at a random instruction and may stay off the CPU
//!   for a long time: the interleavings that expose races (a lost update between a read and a write, a
//!   check-then-act) become likely instead of rare.
//!
//! Invariants: a task is at most once in the run queue; `pick` returns only runnable tasks, and a slice of at
//! least one instruction.

use super::ids::Tid;
use crate::cpu::named_stream;
use rand::Rng;
use rand_chacha::ChaCha20Rng;
use std::collections::{BTreeMap, VecDeque};

/// The fair policy's mean quantum, in instructions: long enough that a switch costs nothing measurable (a
/// switch swaps register state, about a microsecond), short enough that a task waiting for the CPU gets it within
/// about a millisecond of virtual time.
pub const QUANTUM_INSNS_DEFAULT: u64 = 100_000;
/// The chaos policy's mean gap between priority change points, in instructions.
pub const CHANGE_GAP_INSNS_DEFAULT: u64 = 20_000;
/// The longest slice the chaos policy gives before it reconsiders (a new task may have become runnable).
const CHAOS_SLICE_INSNS_MAX: u64 = 50_000;

/// How tasks share the CPU (`--sched`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchedPolicy {
    Fair { quantum_insns: u64 },
    Chaos { change_gap_insns: u64 },
}

impl Default for SchedPolicy {
    fn default() -> Self {
        SchedPolicy::Fair {
            quantum_insns: QUANTUM_INSNS_DEFAULT,
        }
    }
}

impl SchedPolicy {
    /// Parses `fair`, `fair:QUANTUM`, `chaos` or `chaos:GAP` (instructions).
    pub fn parse(s: &str) -> Result<SchedPolicy, String> {
        let (name, value) = match s.split_once(':') {
            Some((n, v)) => (n, Some(v)),
            None => (s, None),
        };
        let number = |default: u64| -> Result<u64, String> {
            match value {
                None => Ok(default),
                Some(v) => match v.replace('_', "").parse::<u64>() {
                    Ok(n) if n >= 1 => Ok(n),
                    _ => Err(format!(
                        "{v:?} in --sched {s}: expected a number of instructions of at least 1"
                    )),
                },
            }
        };
        match name {
            "fair" => Ok(SchedPolicy::Fair {
                quantum_insns: number(QUANTUM_INSNS_DEFAULT)?,
            }),
            "chaos" => Ok(SchedPolicy::Chaos {
                change_gap_insns: number(CHANGE_GAP_INSNS_DEFAULT)?,
            }),
            _ => Err(format!(
                "unknown scheduling policy {name:?}: expected fair, fair:QUANTUM, chaos or chaos:GAP"
            )),
        }
    }

    /// The canonical spelling, which `parse` reads back (for traces and reproduce lines).
    pub fn spelling(&self) -> String {
        match self {
            SchedPolicy::Fair { quantum_insns } => format!("fair:{quantum_insns}"),
            SchedPolicy::Chaos { change_gap_insns } => format!("chaos:{change_gap_insns}"),
        }
    }
}

/// The scheduler. Cloning it is how a snapshot keeps it.
#[derive(Clone, Debug)]
pub struct Scheduler {
    policy: SchedPolicy,
    rng: ChaCha20Rng,
    /// Runnable tasks, in the order they became runnable (the fair policy's round-robin order).
    queue: VecDeque<Tid>,
    /// The chaos policy's priority of every task it has seen; higher runs first. INVARIANT: initial priorities
    /// are drawn at or above `PRIORITY_FLOOR`; demoted tasks get priorities below it, each lower than the last.
    priorities: BTreeMap<Tid, u64>,
    /// The next demoted priority to hand out (counts down from `PRIORITY_FLOOR - 1`).
    demoted_next: u64,
    /// The chaos policy's next change point, as a global instruction count.
    change_icount: u64,
}

const PRIORITY_FLOOR: u64 = 1 << 32;

impl Scheduler {
    pub fn new(seed: u64, policy: SchedPolicy) -> Scheduler {
        let mut s = Scheduler {
            policy,
            rng: named_stream(seed, "linux.sched"),
            queue: VecDeque::new(),
            priorities: BTreeMap::new(),
            demoted_next: PRIORITY_FLOOR - 1,
            change_icount: 0,
        };
        s.change_icount = s.draw_change_gap();
        s
    }

    pub fn policy(&self) -> SchedPolicy {
        self.policy
    }

    /// A new task: it gets its priority (chaos) and becomes runnable.
    pub fn add(&mut self, tid: Tid) {
        if let SchedPolicy::Chaos { .. } = self.policy {
            let p = self.rng.random_range(PRIORITY_FLOOR..u64::MAX);
            self.priorities.insert(tid, p);
        }
        self.make_runnable(tid);
    }

    /// The task can run (it was woken, or its slice ended). A task already runnable keeps its place.
    pub fn make_runnable(&mut self, tid: Tid) {
        if !self.queue.contains(&tid) {
            self.queue.push_back(tid);
        }
    }

    /// The task can no longer run (it blocked or exited).
    pub fn remove(&mut self, tid: Tid) {
        self.queue.retain(|&t| t != tid);
    }

    /// The task is gone for good.
    pub fn forget(&mut self, tid: Tid) {
        self.remove(tid);
        self.priorities.remove(&tid);
    }

    pub fn is_runnable(&self, tid: Tid) -> bool {
        self.queue.contains(&tid)
    }

    pub fn runnable_count(&self) -> usize {
        self.queue.len()
    }

    /// The task gave up the CPU (sched_yield): under the fair policy it goes to the back of the queue.
    pub fn yielded(&mut self, tid: Tid) {
        if let SchedPolicy::Fair { .. } = self.policy {
            if self.queue.contains(&tid) {
                self.remove(tid);
                self.queue.push_back(tid);
            }
        }
    }

    /// The next task to run and the most instructions it may retire before the scheduler is asked again.
    /// `icount` is the global instruction count now. None when no task is runnable.
    pub fn pick(&mut self, icount: u64) -> Option<(Tid, u64)> {
        if self.queue.is_empty() {
            return None;
        }
        let picked = match self.policy {
            SchedPolicy::Fair { quantum_insns } => {
                let tid = self.queue.pop_front().expect("queue is not empty");
                self.queue.push_back(tid);
                let half = (quantum_insns / 2).max(1);
                let slice = self.rng.random_range(half..half + quantum_insns.max(1));
                (tid, slice)
            }
            SchedPolicy::Chaos { .. } => {
                if icount >= self.change_icount {
                    // A change point: whoever would run now is demoted below every other task.
                    let top = self.highest();
                    let demoted = self.demoted_next;
                    self.demoted_next = self.demoted_next.saturating_sub(1);
                    self.priorities.insert(top, demoted);
                    self.change_icount = icount.saturating_add(self.draw_change_gap());
                }
                let tid = self.highest();
                let until_change = self.change_icount.saturating_sub(icount).max(1);
                let slice = until_change.min(self.rng.random_range(1..=CHAOS_SLICE_INSNS_MAX));
                (tid, slice)
            }
        };
        debug_assert!(picked.1 >= 1);
        Some(picked)
    }

    /// The runnable task of highest priority (ties broken by the lower tid, for determinism).
    fn highest(&self) -> Tid {
        *self
            .queue
            .iter()
            .max_by_key(|t| {
                (
                    self.priorities.get(t).copied().unwrap_or(0),
                    std::cmp::Reverse(**t),
                )
            })
            .expect("queue is not empty")
    }

    fn draw_change_gap(&mut self) -> u64 {
        match self.policy {
            SchedPolicy::Chaos { change_gap_insns } => self
                .rng
                .random_range(1..=change_gap_insns.saturating_mul(2).max(1)),
            SchedPolicy::Fair { .. } => u64::MAX,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tids(n: i32) -> Vec<Tid> {
        (0..n).map(|i| Tid(1000 + i)).collect()
    }

    #[test]
    fn policies_parse_and_spell_back() {
        for s in ["fair", "fair:5000", "chaos", "chaos:300", "fair:1_000"] {
            let p = SchedPolicy::parse(s).unwrap();
            assert_eq!(SchedPolicy::parse(&p.spelling()).unwrap(), p);
        }
        assert!(SchedPolicy::parse("fifo").unwrap_err().contains("unknown"));
        assert!(SchedPolicy::parse("fair:0").is_err());
        assert!(SchedPolicy::parse("chaos:x").is_err());
    }

    #[test]
    fn fair_runs_every_task_once_per_round() {
        let mut s = Scheduler::new(7, SchedPolicy::default());
        for t in tids(4) {
            s.add(t);
        }
        let mut icount = 0;
        let mut order = Vec::new();
        for _ in 0..8 {
            let (t, slice) = s.pick(icount).unwrap();
            assert!((QUANTUM_INSNS_DEFAULT / 2..QUANTUM_INSNS_DEFAULT * 3 / 2).contains(&slice));
            icount += slice;
            order.push(t);
        }
        assert_eq!(order[..4], tids(4)[..]);
        assert_eq!(order[4..], tids(4)[..]);
    }

    #[test]
    fn removed_tasks_are_never_picked() {
        let mut s = Scheduler::new(1, SchedPolicy::parse("chaos:100").unwrap());
        for t in tids(3) {
            s.add(t);
        }
        s.remove(Tid(1001));
        for i in 0..200 {
            let (t, _) = s.pick(i * 37).unwrap();
            assert_ne!(t, Tid(1001));
        }
        s.remove(Tid(1000));
        s.remove(Tid(1002));
        assert_eq!(s.pick(10_000), None);
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule_and_another_seed_another() {
        let run = |seed: u64| {
            let mut s = Scheduler::new(seed, SchedPolicy::parse("chaos").unwrap());
            for t in tids(4) {
                s.add(t);
            }
            let mut icount = 0;
            (0..100)
                .map(|_| {
                    let (t, slice) = s.pick(icount).unwrap();
                    icount += slice;
                    (t, slice)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }

    #[test]
    fn chaos_demotes_the_running_task_at_a_change_point() {
        let mut s = Scheduler::new(11, SchedPolicy::parse("chaos:1000").unwrap());
        for t in tids(2) {
            s.add(t);
        }
        let mut icount = 0;
        let mut runs = Vec::new();
        for _ in 0..400 {
            let (t, slice) = s.pick(icount).unwrap();
            icount += slice;
            if runs.last() != Some(&t) {
                runs.push(t);
            }
        }
        // Without change points the higher-priority task would run alone; with them, control passes back and
        // forth several times.
        assert!(runs.len() >= 4, "{runs:?}");
    }
}
