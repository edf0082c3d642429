//! The discrete-event simulation kernel: virtual time, one totally ordered event queue, a simulated network and node faults.
//!
//! Invariants:
//! - Time is virtual (`now_ns`, nanoseconds since the start of the run) and only moves forward; nothing reads the host clock.
//! - Events are totally ordered by (time, insertion sequence): two events at the same time run in the order they were
//!   scheduled, so a run is a pure function of the model, the fault plan and the seed.
//! - Randomness comes from named streams of the root seed (`rng::stream`); the network draws only from its own stream.
//! - Every queue has a named limit (`Limits`); hitting one stops the run cleanly with a message, never a panic.
//! - One run is single-threaded; parallelism is across seeds (the runner).
//!
//! The network follows the fault vocabulary of TigerBeetle's VOPR and FoundationDB's simulator: per-link latency
//! distributions, loss, duplication and reordering drawn per run, symmetric and one-way partitions, single-node isolation,
//! and clogging (a clogged link holds its messages until the clog ends, like FoundationDB's swizzle-clogging).
//! Nodes crash (volatile state and pending timers are lost), restart, pause (events wait until the node resumes) and
//! have a clock skew that models read through `local_time_ns`.

use crate::rng::{self, SimRng};
use crate::timeline::{message_kind, Entry, Fate, What};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fmt::Debug;

/// Index of a node in the model's node list.
pub type NodeId = usize;

/// Nanoseconds per millisecond, for readable conversions.
pub const NS_PER_MS: u64 = 1_000_000;

/// Named maximums of one run. Hitting one stops the run and is reported as a failure of the `limits` checker.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Events dispatched in one run.
    pub events_max: u64,
    /// Events waiting in the queue at once.
    pub queue_len_max: usize,
    /// Events held for one paused node.
    pub paused_events_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            events_max: 20_000_000,
            queue_len_max: 1_000_000,
            paused_events_max: 100_000,
        }
    }
}

/// How one link delays a message.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkLatency {
    /// Smallest one-way delay.
    pub latency_us_min: u64,
    /// Largest one-way delay; the distribution is uniform between the two unless `exponential` is set.
    pub latency_us_max: u64,
    /// When true, the delay is `latency_us_min` plus an exponential tail with mean `(max - min) / 4`, capped at max.
    #[serde(default)]
    pub exponential: bool,
}

impl Default for LinkLatency {
    fn default() -> Self {
        LinkLatency {
            latency_us_min: 200,
            latency_us_max: 2_000,
            exponential: false,
        }
    }
}

/// One link whose latency differs from the default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkOverride {
    pub from: String,
    pub to: String,
    #[serde(flatten)]
    pub latency: LinkLatency,
}

/// The network's knobs for one run. In a swarm run each seed draws its own values, and the fault plan records them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkOptions {
    /// Probability that a message is dropped.
    pub loss: f64,
    /// Probability that a message is delivered twice.
    pub duplicate: f64,
    /// Probability that a message gets an extra delay of up to `reorder_us_max`, overtaking later ones.
    pub reorder: f64,
    pub reorder_us_max: u64,
    pub latency: LinkLatency,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<LinkOverride>,
}

impl std::fmt::Display for LinkLatency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shape = if self.exponential {
            "exponential"
        } else {
            "uniform"
        };
        write!(
            f,
            "latency {}-{} us {shape}",
            self.latency_us_min, self.latency_us_max
        )
    }
}

/// One line for reports: the rates as percentages, the default latency, and each per-link override.
impl std::fmt::Display for NetworkOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "loss {:.2}%, duplicate {:.2}%, reorder {:.2}% (up to {} us), {}",
            self.loss * 100.0,
            self.duplicate * 100.0,
            self.reorder * 100.0,
            self.reorder_us_max,
            self.latency
        )?;
        for link in &self.links {
            write!(f, "; {}->{} {}", link.from, link.to, link.latency)?;
        }
        Ok(())
    }
}

impl Default for NetworkOptions {
    fn default() -> Self {
        NetworkOptions {
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_us_max: 10_000,
            latency: LinkLatency::default(),
            links: Vec::new(),
        }
    }
}

/// What the queue holds.
#[derive(Clone, Copy, Debug)]
pub enum Event<M, T> {
    Deliver {
        from: NodeId,
        to: NodeId,
        msg: M,
    },
    Timer {
        node: NodeId,
        incarnation: u32,
        timer: T,
    },
    /// The fault plan's event with this index starts.
    PlanStart(usize),
    /// The fault plan's event with this index ends (its duration ran out).
    PlanEnd(usize),
}

struct Scheduled<M, T> {
    time_ns: u64,
    seq: u64,
    event: Event<M, T>,
}

impl<M, T> PartialEq for Scheduled<M, T> {
    fn eq(&self, other: &Self) -> bool {
        (self.time_ns, self.seq) == (other.time_ns, other.seq)
    }
}
impl<M, T> Eq for Scheduled<M, T> {}
impl<M, T> PartialOrd for Scheduled<M, T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<M, T> Ord for Scheduled<M, T> {
    /// Reversed, so that the max-heap pops the earliest (time, sequence) first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.time_ns, other.seq).cmp(&(self.time_ns, self.seq))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeStatus {
    Up,
    Paused,
    Crashed,
}

struct NodeState<M, T> {
    status: NodeStatus,
    /// Bumped at each crash, so that timers set before the crash are dropped.
    incarnation: u32,
    skew_ns: i64,
    /// How many pauses are in force.
    pause_depth: u32,
    /// Events that arrived while the node was paused, in arrival order.
    held: Vec<Event<M, T>>,
}

/// Counters of what the network did, reported as coverage.
#[derive(Clone, Copy, Debug, Default)]
pub struct NetworkStats {
    pub sent_count: u64,
    pub lost_count: u64,
    pub blocked_count: u64,
    pub duplicated_count: u64,
    pub reordered_count: u64,
    pub clogged_count: u64,
    pub dropped_at_crashed_count: u64,
}

/// The simulation kernel of one run. Models receive `&mut Kernel` in every handler and act through it.
pub struct Kernel<M, T> {
    now_ns: u64,
    seq: u64,
    queue: BinaryHeap<Scheduled<M, T>>,
    nodes: Vec<NodeState<M, T>>,
    node_names: Vec<String>,
    /// Per (from, to): how many partitions currently block the link. A count, so overlapping partitions heal independently.
    blocks: Vec<u16>,
    /// Per (from, to): messages sent before this time are held until it (clogging).
    clog_until_ns: Vec<u64>,
    latency: Vec<LinkLatency>,
    network: NetworkOptions,
    rng_network: SimRng,
    /// The model's own stream; the network never draws from it.
    pub rng: SimRng,
    limits: Limits,
    events_count: u64,
    trace_hash: u64,
    timeline: Option<Vec<Entry>>,
    stop: Option<String>,
    pub stats: NetworkStats,
}

/// Mixes one value into the running trace hash (a 64-bit FNV-style fold: cheap, stable across platforms).
#[inline]
fn mix(hash: u64, value: u64) -> u64 {
    (hash ^ value).wrapping_mul(0x0100_0000_01b3).rotate_left(5)
}

impl<M: Copy + Debug, T: Copy + Debug> Kernel<M, T> {
    pub fn new(
        seed: u64,
        node_names: Vec<String>,
        network: NetworkOptions,
        limits: Limits,
        record_timeline: bool,
    ) -> Self {
        let count = node_names.len();
        let mut latency = vec![network.latency; count * count];
        for link in &network.links {
            // Names were validated when the template or plan was loaded; an unknown name here is skipped, not a panic.
            let from = node_names.iter().position(|n| *n == link.from);
            let to = node_names.iter().position(|n| *n == link.to);
            if let (Some(from), Some(to)) = (from, to) {
                latency[from * count + to] = link.latency;
            }
        }
        Kernel {
            now_ns: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes: (0..count)
                .map(|_| NodeState {
                    status: NodeStatus::Up,
                    incarnation: 0,
                    skew_ns: 0,
                    pause_depth: 0,
                    held: Vec::new(),
                })
                .collect(),
            node_names,
            blocks: vec![0; count * count],
            clog_until_ns: vec![0; count * count],
            latency,
            network,
            rng_network: rng::stream(seed, "network"),
            rng: rng::stream(seed, "model"),
            limits,
            events_count: 0,
            trace_hash: 0xcbf2_9ce4_8422_2325 ^ seed,
            timeline: if record_timeline {
                Some(Vec::new())
            } else {
                None
            },
            stop: None,
            stats: NetworkStats::default(),
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    /// The node's own clock: virtual time plus its skew. Timestamps that a node writes come from here.
    pub fn local_time_ns(&self, node: NodeId) -> i64 {
        self.now_ns as i64 + self.nodes[node].skew_ns
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn node_name(&self, node: NodeId) -> &str {
        &self.node_names[node]
    }

    pub fn status(&self, node: NodeId) -> NodeStatus {
        self.nodes[node].status
    }

    pub fn is_up(&self, node: NodeId) -> bool {
        self.nodes[node].status == NodeStatus::Up
    }

    /// Whether a message sent now from `from` to `to` would arrive promptly: both nodes up, the link neither
    /// partitioned nor clogged. Loss is not considered: it is a per-message draw.
    pub fn link_usable(&self, from: NodeId, to: NodeId) -> bool {
        self.is_up(from) && self.is_up(to) && self.link_open(from, to)
    }

    /// Whether the link itself is neither partitioned nor clogged now, whatever the state of its two nodes.
    pub fn link_open(&self, from: NodeId, to: NodeId) -> bool {
        let index = from * self.nodes.len() + to;
        self.blocks[index] == 0 && self.clog_until_ns[index] <= self.now_ns
    }

    /// True when no partition, isolation or clog is in force anywhere.
    pub fn network_healed(&self) -> bool {
        self.blocks.iter().all(|&b| b == 0) && self.clog_until_ns.iter().all(|&t| t <= self.now_ns)
    }

    pub fn events_count(&self) -> u64 {
        self.events_count
    }

    pub fn trace_hash(&self) -> u64 {
        self.trace_hash
    }

    pub fn tracing(&self) -> bool {
        self.timeline.is_some()
    }

    /// Adds a note about a node to the timeline when one is recorded (`tandem scenario show`). The closure runs
    /// only then, so the hot path formats nothing.
    #[inline]
    pub fn log(&mut self, node: NodeId, line: impl FnOnce() -> String) {
        if let Some(timeline) = &mut self.timeline {
            let what = What::Note { node, text: line() };
            timeline.push(Entry {
                at_ns: self.now_ns,
                what,
            });
        }
    }

    /// Adds an entry made by `what` when a timeline is recorded.
    #[inline]
    pub(crate) fn record(&mut self, what: impl FnOnce() -> What) {
        if let Some(timeline) = &mut self.timeline {
            timeline.push(Entry {
                at_ns: self.now_ns,
                what: what(),
            });
        }
    }

    pub fn take_timeline(&mut self) -> Vec<Entry> {
        self.timeline.take().unwrap_or_default()
    }

    /// Stops the run at the next event with this reason (a limit, or a model's own give-up).
    pub fn stop(&mut self, reason: String) {
        if self.stop.is_none() {
            self.stop = Some(reason);
        }
    }

    pub fn stop_reason(&self) -> Option<&str> {
        self.stop.as_deref()
    }

    pub(crate) fn schedule(&mut self, time_ns: u64, event: Event<M, T>) {
        if self.queue.len() >= self.limits.queue_len_max {
            self.stop(format!(
                "queue_len_max ({}) reached at {} ns",
                self.limits.queue_len_max, self.now_ns
            ));
            return;
        }
        debug_assert!(
            time_ns >= self.now_ns,
            "events are never scheduled in the past"
        );
        let seq = self.seq;
        self.seq += 1;
        self.queue.push(Scheduled {
            time_ns,
            seq,
            event,
        });
    }

    /// Sets a timer on `node` that fires after `delay_ns` of virtual time, unless the node crashes first.
    pub fn set_timer(&mut self, node: NodeId, delay_ns: u64, timer: T) {
        let incarnation = self.nodes[node].incarnation;
        self.schedule(
            self.now_ns + delay_ns,
            Event::Timer {
                node,
                incarnation,
                timer,
            },
        );
    }

    fn draw_latency_ns(&mut self, index: usize) -> u64 {
        let link = self.latency[index];
        let min = link.latency_us_min;
        let max = link.latency_us_max.max(min);
        let us = if max == min {
            min
        } else if link.exponential {
            let mean = ((max - min) / 4).max(1) as f64;
            let u: f64 = self.rng_network.random();
            let tail = -mean * (1.0 - u).ln();
            min + (tail as u64).min(max - min)
        } else {
            self.rng_network.random_range(min..=max)
        };
        us * 1_000
    }

    /// Sends `msg` over the simulated network. A crashed or paused sender sends nothing.
    pub fn send(&mut self, from: NodeId, to: NodeId, msg: M) {
        if !self.is_up(from) {
            return;
        }
        self.stats.sent_count += 1;
        let index = from * self.nodes.len() + to;
        if self.blocks[index] > 0 {
            self.stats.blocked_count += 1;
            self.record_message(from, to, &msg, Fate::Blocked);
            return;
        }
        if self.network.loss > 0.0 && self.rng_network.random::<f64>() < self.network.loss {
            self.stats.lost_count += 1;
            self.record_message(from, to, &msg, Fate::Lost);
            return;
        }
        let copies = if self.network.duplicate > 0.0
            && self.rng_network.random::<f64>() < self.network.duplicate
        {
            self.stats.duplicated_count += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut arrival_ns = self.now_ns + self.draw_latency_ns(index);
            if self.network.reorder > 0.0 && self.rng_network.random::<f64>() < self.network.reorder
            {
                self.stats.reordered_count += 1;
                arrival_ns += self
                    .rng_network
                    .random_range(0..=self.network.reorder_us_max)
                    * 1_000;
            }
            if self.clog_until_ns[index] > arrival_ns {
                self.stats.clogged_count += 1;
                arrival_ns = self.clog_until_ns[index];
            }
            self.record_message(from, to, &msg, Fate::Arrives(arrival_ns));
            self.schedule(arrival_ns, Event::Deliver { from, to, msg });
        }
    }

    fn record_message(&mut self, from: NodeId, to: NodeId, msg: &M, fate: Fate) {
        self.record(|| What::Message {
            from,
            to,
            kind: message_kind(&format!("{msg:?}")),
            fate,
        });
    }

    // --- Faults, applied by the run loop from the fault plan. ---

    pub(crate) fn block_link(&mut self, from: NodeId, to: NodeId, blocked: bool) {
        let index = from * self.nodes.len() + to;
        if blocked {
            self.blocks[index] = self.blocks[index].saturating_add(1);
        } else {
            self.blocks[index] = self.blocks[index].saturating_sub(1);
        }
    }

    pub(crate) fn clog_link(&mut self, from: NodeId, to: NodeId, until_ns: u64) {
        let index = from * self.nodes.len() + to;
        self.clog_until_ns[index] = self.clog_until_ns[index].max(until_ns);
    }

    /// Heals every partition, isolation and clog at once.
    pub(crate) fn heal_all(&mut self) {
        self.blocks.iter_mut().for_each(|b| *b = 0);
        let now = self.now_ns;
        self.clog_until_ns
            .iter_mut()
            .for_each(|t| *t = (*t).min(now));
    }

    pub(crate) fn set_skew(&mut self, node: NodeId, skew_ns: i64) {
        self.nodes[node].skew_ns = skew_ns;
    }

    /// Returns false when the node was not up (crashing a crashed node does nothing).
    pub(crate) fn crash(&mut self, node: NodeId) -> bool {
        let state = &mut self.nodes[node];
        if state.status == NodeStatus::Crashed {
            return false;
        }
        state.status = NodeStatus::Crashed;
        state.incarnation += 1;
        state.pause_depth = 0;
        state.held.clear();
        true
    }

    /// Returns false when the node was not crashed.
    pub(crate) fn restart(&mut self, node: NodeId) -> bool {
        let state = &mut self.nodes[node];
        if state.status != NodeStatus::Crashed {
            return false;
        }
        state.status = NodeStatus::Up;
        state.incarnation += 1;
        true
    }

    /// Pauses a node. Pauses nest: overlapping pauses end when the last one ends.
    pub(crate) fn pause(&mut self, node: NodeId) -> bool {
        let state = &mut self.nodes[node];
        match state.status {
            NodeStatus::Crashed => false,
            NodeStatus::Up | NodeStatus::Paused => {
                state.pause_depth += 1;
                state.status = NodeStatus::Paused;
                true
            }
        }
    }

    /// Ends one pause; when none is left, what arrived meanwhile is delivered now, in arrival order.
    pub(crate) fn resume(&mut self, node: NodeId) -> bool {
        let state = &mut self.nodes[node];
        if state.status != NodeStatus::Paused {
            return false;
        }
        state.pause_depth = state.pause_depth.saturating_sub(1);
        if state.pause_depth > 0 {
            return false;
        }
        state.status = NodeStatus::Up;
        let held = std::mem::take(&mut state.held);
        for event in held {
            self.schedule(self.now_ns, event);
        }
        true
    }

    /// Pops the next event that a model must handle, applying crash and pause rules on the way.
    /// Returns None when the queue is empty, the end time is reached, or the run was stopped.
    pub(crate) fn next_event(&mut self, end_ns: u64) -> Option<Event<M, T>> {
        loop {
            if self.stop.is_some() {
                return None;
            }
            let head_time = self.queue.peek()?.time_ns;
            if head_time > end_ns {
                return None;
            }
            let Scheduled { time_ns, event, .. } = self.queue.pop()?;
            debug_assert!(time_ns >= self.now_ns);
            self.now_ns = time_ns;
            if self.events_count >= self.limits.events_max {
                self.stop(format!(
                    "events_max ({}) reached at {} ns",
                    self.limits.events_max, self.now_ns
                ));
                return None;
            }
            self.events_count += 1;
            let target = match event {
                Event::Deliver { to, .. } => Some(to),
                Event::Timer {
                    node, incarnation, ..
                } => {
                    if self.nodes[node].incarnation != incarnation {
                        continue;
                    }
                    Some(node)
                }
                Event::PlanStart(_) | Event::PlanEnd(_) => None,
            };
            if let Some(node) = target {
                match self.nodes[node].status {
                    NodeStatus::Up => {}
                    NodeStatus::Crashed => {
                        if matches!(event, Event::Deliver { .. }) {
                            self.stats.dropped_at_crashed_count += 1;
                        }
                        continue;
                    }
                    NodeStatus::Paused => {
                        if self.nodes[node].held.len() >= self.limits.paused_events_max {
                            let limit = self.limits.paused_events_max;
                            self.stop(format!(
                                "paused_events_max ({limit}) reached on node {node}"
                            ));
                            return None;
                        }
                        self.nodes[node].held.push(event);
                        continue;
                    }
                }
            }
            self.trace_hash = mix(mix(self.trace_hash, time_ns), event_tag(&event));
            return Some(event);
        }
    }
}

/// A cheap summary of an event for the trace hash: kind and nodes. Message contents enter the hash through the models'
/// own state changes, which the hash sees as later events.
fn event_tag<M, T>(event: &Event<M, T>) -> u64 {
    match *event {
        Event::Deliver { from, to, .. } => 1 | (from as u64) << 8 | (to as u64) << 24,
        Event::Timer { node, .. } => 2 | (node as u64) << 8,
        Event::PlanStart(i) => 3 | (i as u64) << 8,
        Event::PlanEnd(i) => 4 | (i as u64) << 8,
    }
}

impl<M, T> Kernel<M, T> {
    /// Folds a model-chosen value (a role, a decision) into the trace hash, so that runs that differ only in message
    /// contents still hash differently.
    pub fn hash_value(&mut self, value: u64) {
        self.trace_hash = mix(self.trace_hash, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type K = Kernel<u32, u32>;

    fn kernel(network: NetworkOptions) -> K {
        Kernel::new(
            1,
            vec!["a".into(), "b".into(), "c".into()],
            network,
            Limits::default(),
            false,
        )
    }

    fn drain(k: &mut K) -> Vec<(u64, u32)> {
        let mut out = Vec::new();
        while let Some(event) = k.next_event(u64::MAX) {
            match event {
                Event::Deliver { msg, .. } => out.push((k.now_ns(), msg)),
                Event::Timer { timer, .. } => out.push((k.now_ns(), timer)),
                _ => {}
            }
        }
        out
    }

    #[test]
    fn same_time_events_run_in_insertion_order() {
        let mut k = kernel(NetworkOptions::default());
        for t in [5u32, 1, 4, 2, 3] {
            k.set_timer(0, 1_000, t);
        }
        k.set_timer(0, 500, 99);
        let order: Vec<u32> = drain(&mut k).into_iter().map(|(_, t)| t).collect();
        assert_eq!(order, vec![99, 5, 1, 4, 2, 3]);
    }

    #[test]
    fn partitions_block_one_way_and_count_overlaps() {
        let mut k = kernel(NetworkOptions::default());
        k.block_link(0, 1, true);
        k.block_link(0, 1, true);
        k.block_link(0, 1, false);
        k.send(0, 1, 1);
        k.send(1, 0, 2);
        assert_eq!(
            drain(&mut k)
                .into_iter()
                .map(|(_, m)| m)
                .collect::<Vec<_>>(),
            vec![2]
        );
        assert!(!k.link_usable(0, 1) && k.link_usable(1, 0));
        k.block_link(0, 1, false);
        assert!(k.link_usable(0, 1));
    }

    #[test]
    fn clogged_link_holds_messages_until_the_clog_ends() {
        let mut k = kernel(NetworkOptions::default());
        k.clog_link(0, 2, 50 * NS_PER_MS);
        k.send(0, 2, 7);
        k.send(0, 1, 8);
        let got = drain(&mut k);
        assert_eq!(got[1], (50 * NS_PER_MS, 7));
        assert!(got[0].0 <= 2 * NS_PER_MS && got[0].1 == 8);
    }

    #[test]
    fn crash_drops_timers_and_pause_holds_them() {
        let mut k = kernel(NetworkOptions::default());
        k.set_timer(0, 10, 1);
        k.set_timer(1, 10, 2);
        assert!(k.crash(0));
        assert!(k.pause(1));
        assert!(drain(&mut k).is_empty());
        assert!(k.restart(0));
        assert!(k.resume(1));
        assert_eq!(drain(&mut k), vec![(10, 2)]);
    }

    #[test]
    fn per_link_latency_overrides_the_default() {
        let slow = LinkLatency {
            latency_us_min: 5_000,
            latency_us_max: 5_000,
            exponential: false,
        };
        let network = NetworkOptions {
            links: vec![LinkOverride {
                from: "a".into(),
                to: "c".into(),
                latency: slow,
            }],
            ..NetworkOptions::default()
        };
        let mut k = kernel(network);
        k.send(0, 2, 1);
        k.send(2, 0, 2);
        let got = drain(&mut k);
        assert!(
            got[0].0 <= 2 * NS_PER_MS && got[0].1 == 2,
            "the reverse link keeps the default"
        );
        assert_eq!(got[1], (5 * NS_PER_MS, 1));
    }

    #[test]
    fn exponential_latency_stays_within_bounds_with_a_short_median() {
        let latency = LinkLatency {
            latency_us_min: 1_000,
            latency_us_max: 41_000,
            exponential: true,
        };
        let mut k = kernel(NetworkOptions {
            latency,
            ..NetworkOptions::default()
        });
        for i in 0..2_000 {
            k.send(0, 1, i);
        }
        let mut delays: Vec<u64> = drain(&mut k).into_iter().map(|(t, _)| t).collect();
        delays.sort_unstable();
        assert!(delays[0] >= NS_PER_MS && delays[delays.len() - 1] <= 41 * NS_PER_MS);
        // Mean tail 10 ms: the median is about 1 + 10 ln 2 = 7.9 ms, far below a uniform draw's 21 ms.
        let median_ms = delays[delays.len() / 2] / NS_PER_MS;
        assert!((6..=10).contains(&median_ms), "median {median_ms} ms");
    }

    #[test]
    fn loss_and_duplication_follow_their_rates() {
        let network = NetworkOptions {
            loss: 0.25,
            duplicate: 0.1,
            ..NetworkOptions::default()
        };
        let mut k = kernel(network);
        for i in 0..10_000 {
            k.send(0, 1, i);
        }
        let delivered = drain(&mut k).len();
        // Expected 10,000 * 0.75 * 1.1 = 8,250; a loss or duplication that is not applied lands far outside.
        assert!((7_900..8_600).contains(&delivered), "delivered {delivered}");
        assert_eq!(
            k.stats.lost_count + k.stats.sent_count - k.stats.lost_count,
            10_000
        );
    }
}
