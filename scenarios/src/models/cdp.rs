//! The CDP model: continuous data protection of a volume across two sites, with failover.
//!
//! Nodes: `client` (the application writing to the volume), `site-a` (the protected site: volume plus journal),
//! `site-b` (the recovery site: applies the shipped journal), `witness` (the failover controller).
//!
//! Protocol:
//! - The client issues numbered writes (exponential gaps, at most `client_outstanding_max` unacknowledged) to the
//!   current primary and retries unacknowledged ones every `client_retry_ms`.
//! - The primary journals each write (the journal disk takes `journal_write_us_min..max`, one write at a time, in
//!   arrival order), then acknowledges it and ships the journal entry (its log sequence number) to site-b over the
//!   lossy link, resending unconfirmed entries every `ship_retry_ms`. Site-b applies entries strictly in LSN order and
//!   confirms how many it holds.
//! - The RPO guard: site-a holds an acknowledgement while more than `rpo_writes` journal entries are unconfirmed or the
//!   oldest unconfirmed one was journaled more than `rpo_ms` ago; held acknowledgements go out as confirmations arrive.
//! - Fencing: site-a acknowledges only under a lease (`lease_ms` from the send time of a heartbeat the witness answered).
//!   The witness promotes site-b after `failover_after_ms` without a heartbeat (longer than the lease, so the old
//!   primary has stopped acknowledging), tells the client, and answers site-a's later heartbeats with "failed over",
//!   which demotes it for good. There is no failback: after the failover site-b serves alone.
//!
//! Checkers (`CHECKERS`):
//! - `no-acked-write-lost-beyond-rpo`: every write acknowledged by a site is in its journal when it restarts; at the
//!   failover, the acknowledged writes missing from site-b's image are at most `rpo_writes`, each is in site-a's journal
//!   (never journaled: lost beyond any RPO), and they span at most `rpo_ms` (from the journaling of the first entry
//!   site-b lacks to the last lost acknowledgement); at the end, the serving site's image holds every acknowledged write
//!   but those.
//! - `recovered-image-was-primary-state`: site-b's image is always a prefix of site-a's journal (checked at the
//!   failover, at site-a's restarts and at the end): a state the primary had, not torn, reordered or invented.
//!
//! Broken variant (`variant = "ack-before-journal"`): the primary acknowledges and ships a write on receipt and journals
//! it afterwards; a crash in between loses an acknowledged write and leaves site-b holding a write site-a never had.

use super::{param_str, param_u64, Checks, Model, ModelReport};
use crate::kernel::{Kernel, NodeId, NS_PER_MS};
use crate::plan::Fault;
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

pub const CLIENT: NodeId = 0;
pub const SITE_A: NodeId = 1;
pub const SITE_B: NodeId = 2;
pub const WITNESS: NodeId = 3;

pub fn node_names() -> Vec<String> {
    ["client", "site-a", "site-b", "witness"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

pub const CHECKERS: [&str; 2] = [
    "no-acked-write-lost-beyond-rpo",
    "recovered-image-was-primary-state",
];
const LOST: usize = 0;
const IMAGE: usize = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    Correct,
    /// Broken: acknowledges (and ships) a write before its journal write finished.
    AckBeforeJournal,
}

impl Variant {
    pub fn name(self) -> &'static str {
        match self {
            Variant::Correct => "correct",
            Variant::AckBeforeJournal => "ack-before-journal",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    pub variant: Variant,
    /// Mean gap between two client writes (exponential).
    pub write_interval_ms: u64,
    pub client_outstanding_max: u64,
    pub client_retry_ms: u64,
    pub journal_write_us_min: u64,
    pub journal_write_us_max: u64,
    /// The RPO in writes: at most this many acknowledged writes may be lost at a failover.
    pub rpo_writes: u64,
    /// The RPO in time: the acknowledged writes lost at a failover span at most this long.
    pub rpo_ms: u64,
    pub ship_retry_ms: u64,
    /// Entries resent per retry.
    pub ship_window: u64,
    pub heartbeat_ms: u64,
    pub lease_ms: u64,
    pub failover_after_ms: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            variant: Variant::Correct,
            write_interval_ms: 10,
            client_outstanding_max: 32,
            client_retry_ms: 200,
            journal_write_us_min: 1_000,
            journal_write_us_max: 6_000,
            rpo_writes: 100,
            rpo_ms: 1_000,
            ship_retry_ms: 50,
            ship_window: 64,
            heartbeat_ms: 100,
            lease_ms: 500,
            failover_after_ms: 1_200,
        }
    }
}

/// The largest value of a time or count parameter: times are converted to nanoseconds, which must not overflow.
pub const PARAM_MAX: u64 = 3_600_000;

impl Params {
    pub fn set(&mut self, key: &str, value: &toml::Value) -> Result<(), String> {
        let positive = |value: &toml::Value| match param_u64(value)? {
            v if v == 0 || v > PARAM_MAX => Err(format!("must be between 1 and {PARAM_MAX}")),
            v => Ok(v),
        };
        match key {
            "variant" => {
                self.variant = match param_str(value)? {
                    "correct" => Variant::Correct,
                    "ack-before-journal" => Variant::AckBeforeJournal,
                    other => {
                        return Err(format!(
                            "unknown variant `{other}` (known: correct, ack-before-journal)"
                        ))
                    }
                }
            }
            "write_interval_ms" => self.write_interval_ms = positive(value)?,
            "client_outstanding_max" => self.client_outstanding_max = positive(value)?,
            "client_retry_ms" => self.client_retry_ms = positive(value)?,
            "journal_write_us_min" => self.journal_write_us_min = positive(value)?,
            "journal_write_us_max" => self.journal_write_us_max = positive(value)?,
            "rpo_writes" => self.rpo_writes = positive(value)?,
            "rpo_ms" => self.rpo_ms = positive(value)?,
            "ship_retry_ms" => self.ship_retry_ms = positive(value)?,
            "ship_window" => self.ship_window = positive(value)?,
            "heartbeat_ms" => self.heartbeat_ms = positive(value)?,
            "lease_ms" => self.lease_ms = positive(value)?,
            "failover_after_ms" => self.failover_after_ms = positive(value)?,
            other => {
                return Err(format!(
                    "unknown parameter `{other}` of model cdp (known: variant, write_interval_ms, \
                     client_outstanding_max, client_retry_ms, journal_write_us_min, journal_write_us_max, rpo_writes, \
                     rpo_ms, ship_retry_ms, ship_window, heartbeat_ms, lease_ms, failover_after_ms)"
                ))
            }
        }
        if self.journal_write_us_min > self.journal_write_us_max {
            return Err("journal_write_us_min must not exceed journal_write_us_max".into());
        }
        if self.failover_after_ms <= self.lease_ms {
            return Err(
                "failover_after_ms must exceed lease_ms (the old primary's lease must run out first)".into(),
            );
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Msg {
    Write { id: u64 },
    Ack { id: u64 },
    Ship { lsn: u64, id: u64 },
    ShipAck { applied: u64 },
    Heartbeat { sent_ns: u64 },
    HeartbeatAck { sent_ns: u64, failed_over: bool },
    Promote,
    PromoteAck,
    NewPrimary,
    NewPrimaryAck,
}

#[derive(Clone, Copy, Debug)]
pub enum Timer {
    ClientWrite,
    ClientRetry,
    JournalDone,
    ShipRetry,
    Heartbeat,
    WitnessTick,
}

/// One journal record: the write and when it became durable.
#[derive(Clone, Copy, Debug)]
struct Entry {
    id: u64,
    journal_ns: u64,
}

#[derive(Default)]
struct Site {
    // Durable.
    image: Vec<Entry>,
    ids: BTreeSet<u64>,
    /// site-a: learned that site-b took over; site-b: promoted.
    switched: bool,
    // Volatile.
    pending: VecDeque<u64>,
    disk_free_ns: u64,
    /// Shipping order (site-a): the journal, plus in the broken variant what was shipped before journaling.
    log: Vec<u64>,
    confirmed: u64,
    lease_until_ns: u64,
    held: BTreeSet<u64>,
    /// site-b: shipped entries that arrived ahead of a missing one, by LSN.
    reorder: BTreeMap<u64, u64>,
}

/// Entries site-b buffers out of order at most (the bound on one run's memory).
const REORDER_MAX: usize = 4_096;

impl Site {
    fn crash(&mut self) {
        self.pending.clear();
        self.disk_free_ns = 0;
        self.log.clear();
        self.confirmed = 0;
        self.lease_until_ns = 0;
        self.held.clear();
        self.reorder.clear();
    }

    fn append(&mut self, id: u64, now_ns: u64) {
        self.image.push(Entry {
            id,
            journal_ns: now_ns,
        });
        self.ids.insert(id);
    }
}

#[derive(Clone, Copy)]
struct AckRecord {
    site: NodeId,
    at_ns: u64,
}

struct Client {
    primary: NodeId,
    next_id: u64,
    /// Unacknowledged writes and when each was last sent.
    outstanding: BTreeMap<u64, u64>,
}

struct Witness {
    last_heard_ns: u64,
    promoted: bool,
    promote_acked: bool,
    client_informed: bool,
}

pub struct Cdp {
    p: Params,
    client: Client,
    sites: [Site; 2],
    witness: Witness,
    checks: Checks,
    /// Ghost state: every acknowledgement a site sent, first one per write.
    acked: BTreeMap<u64, AckRecord>,
    /// Acknowledged writes the failover lost within the RPO.
    lost_in_failover: BTreeSet<u64>,
    last_ack_a_ns: u64,
    failover_ns: Option<u64>,
    rpo_lost_writes: Vec<f64>,
    rpo_lost_window_ms: Vec<f64>,
    lag_at_failover_ms: Vec<f64>,
    recovery_time_ms: Vec<f64>,
    coverage_in_flight: u64,
    coverage_link_down: u64,
    coverage_lost_within_rpo: u64,
    coverage_held: u64,
    coverage_primary_restart: u64,
}

type K = Kernel<Msg, Timer>;

fn ms(value: u64) -> u64 {
    value * NS_PER_MS
}

fn site_index(node: NodeId) -> usize {
    node - SITE_A
}

impl Cdp {
    pub fn new(p: Params) -> Cdp {
        Cdp {
            p,
            client: Client {
                primary: SITE_A,
                next_id: 1,
                outstanding: BTreeMap::new(),
            },
            sites: [Site::default(), Site::default()],
            witness: Witness {
                last_heard_ns: 0,
                promoted: false,
                promote_acked: false,
                client_informed: false,
            },
            checks: Checks::new(&CHECKERS),
            acked: BTreeMap::new(),
            lost_in_failover: BTreeSet::new(),
            last_ack_a_ns: 0,
            failover_ns: None,
            rpo_lost_writes: Vec::new(),
            rpo_lost_window_ms: Vec::new(),
            lag_at_failover_ms: Vec::new(),
            recovery_time_ms: Vec::new(),
            coverage_in_flight: 0,
            coverage_link_down: 0,
            coverage_lost_within_rpo: 0,
            coverage_held: 0,
            coverage_primary_restart: 0,
        }
    }

    /// The site whose image is the volume now: site-b once promoted.
    fn authority(&self) -> NodeId {
        if self.sites[1].switched {
            SITE_B
        } else {
            SITE_A
        }
    }

    // --- client ---

    fn client_write(&mut self, k: &mut K) {
        if (self.client.outstanding.len() as u64) < self.p.client_outstanding_max {
            let id = self.client.next_id;
            self.client.next_id += 1;
            self.client.outstanding.insert(id, k.now_ns());
            k.send(CLIENT, self.client.primary, Msg::Write { id });
        }
        let mean_us = (self.p.write_interval_ms * 1_000) as f64;
        let u: f64 = k.rng.random();
        let gap_us = (-mean_us * (1.0 - u).ln()) as u64 + 1;
        k.set_timer(
            CLIENT,
            gap_us.min(mean_us as u64 * 20) * 1_000,
            Timer::ClientWrite,
        );
    }

    fn client_retry(&mut self, k: &mut K) {
        let now = k.now_ns();
        let retry = ms(self.p.client_retry_ms);
        let primary = self.client.primary;
        for (&id, sent) in self.client.outstanding.iter_mut() {
            if now >= *sent + retry {
                *sent = now;
                k.send(CLIENT, primary, Msg::Write { id });
            }
        }
        k.set_timer(CLIENT, retry, Timer::ClientRetry);
    }

    // --- sites ---

    fn on_write(&mut self, k: &mut K, node: NodeId, id: u64) {
        let site = &self.sites[site_index(node)];
        if site.ids.contains(&id) {
            self.try_ack(k, node, id);
            return;
        }
        if site.pending.contains(&id) || !self.serving(k, node) {
            return;
        }
        if self.p.variant == Variant::AckBeforeJournal {
            self.try_ack(k, node, id);
            self.ship_new(k, node, id);
        }
        let now = k.now_ns();
        let draw = k
            .rng
            .random_range(self.p.journal_write_us_min..=self.p.journal_write_us_max);
        let site = &mut self.sites[site_index(node)];
        site.pending.push_back(id);
        let done_ns = site.disk_free_ns.max(now) + draw * 1_000;
        site.disk_free_ns = done_ns;
        k.set_timer(node, done_ns - now, Timer::JournalDone);
    }

    fn on_journal_done(&mut self, k: &mut K, node: NodeId) {
        let now = k.now_ns();
        let site = &mut self.sites[site_index(node)];
        let Some(id) = site.pending.pop_front() else {
            return;
        };
        site.append(id, now);
        k.hash_value(id);
        if self.p.variant == Variant::Correct {
            self.ship_new(k, node, id);
            self.try_ack(k, node, id);
        }
    }

    /// site-a, before the failover: record the write in the shipping order and send it.
    fn ship_new(&mut self, k: &mut K, node: NodeId, id: u64) {
        let site = &mut self.sites[site_index(node)];
        if node != SITE_A || site.switched {
            return;
        }
        site.log.push(id);
        let lsn = site.log.len() as u64 - 1;
        k.send(SITE_A, SITE_B, Msg::Ship { lsn, id });
    }

    /// Whether `node` may acknowledge writes now: site-a under a live lease until it learns of the failover; site-b
    /// once promoted.
    fn serving(&self, k: &K, node: NodeId) -> bool {
        let site = &self.sites[site_index(node)];
        match node {
            SITE_A => !site.switched && k.now_ns() < site.lease_until_ns,
            _ => site.switched,
        }
    }

    /// Acknowledges a journaled write unless the lease or the RPO guard forbids it now.
    fn try_ack(&mut self, k: &mut K, node: NodeId, id: u64) {
        if !self.serving(k, node) {
            return;
        }
        if node == SITE_A && !self.guard_allows(k.now_ns()) {
            if self.sites[0].held.insert(id) {
                self.coverage_held += 1;
            }
            return;
        }
        self.send_ack(k, node, id);
    }

    /// The RPO guard: at most `rpo_writes` unconfirmed entries, the oldest journaled at most `rpo_ms` ago.
    fn guard_allows(&self, now_ns: u64) -> bool {
        let a = &self.sites[0];
        let unconfirmed = (a.log.len() as u64).saturating_sub(a.confirmed);
        let oldest_ns = a
            .image
            .get(a.confirmed as usize)
            .map_or(now_ns, |e| e.journal_ns);
        unconfirmed <= self.p.rpo_writes && now_ns - oldest_ns.min(now_ns) <= ms(self.p.rpo_ms)
    }

    fn send_ack(&mut self, k: &mut K, node: NodeId, id: u64) {
        let now = k.now_ns();
        self.acked.entry(id).or_insert(AckRecord {
            site: node,
            at_ns: now,
        });
        if node == SITE_A {
            self.last_ack_a_ns = now;
        } else if self.failover_ns.take().is_some() {
            self.recovery_time_ms
                .push(now.saturating_sub(self.last_ack_a_ns) as f64 / 1e6);
        }
        k.send(node, CLIENT, Msg::Ack { id });
    }

    fn on_ship(&mut self, k: &mut K, lsn: u64, id: u64) {
        let now = k.now_ns();
        let b = &mut self.sites[1];
        if b.switched {
            return;
        }
        // Entries that overtook a missing one wait in the reorder buffer; the image grows only by its next LSN.
        if lsn >= b.image.len() as u64 && b.reorder.len() < REORDER_MAX {
            b.reorder.insert(lsn, id);
        }
        while let Some(id) = b.reorder.remove(&(b.image.len() as u64)) {
            b.append(id, now);
        }
        let stale = b.image.len() as u64;
        b.reorder.retain(|&lsn, _| lsn >= stale);
        let applied = b.image.len() as u64;
        k.send(SITE_B, SITE_A, Msg::ShipAck { applied });
    }

    fn on_ship_ack(&mut self, k: &mut K, applied: u64) {
        let a = &mut self.sites[0];
        a.confirmed = a.confirmed.max(applied);
        if a.held.is_empty() || !self.serving(k, SITE_A) || !self.guard_allows(k.now_ns()) {
            return;
        }
        for id in std::mem::take(&mut self.sites[0].held) {
            self.send_ack(k, SITE_A, id);
        }
    }

    fn ship_retry(&mut self, k: &mut K) {
        let a = &self.sites[0];
        if !a.switched {
            let from = a.confirmed.min(a.log.len() as u64);
            let to = (from + self.p.ship_window).min(a.log.len() as u64);
            let resend: Vec<(u64, u64)> =
                (from..to).map(|lsn| (lsn, a.log[lsn as usize])).collect();
            for (lsn, id) in resend {
                k.send(SITE_A, SITE_B, Msg::Ship { lsn, id });
            }
        }
        k.set_timer(SITE_A, ms(self.p.ship_retry_ms), Timer::ShipRetry);
    }

    // --- witness ---

    fn witness_tick(&mut self, k: &mut K) {
        let now = k.now_ns();
        let w = &mut self.witness;
        if !w.promoted && now > w.last_heard_ns + ms(self.p.failover_after_ms) {
            w.promoted = true;
            k.log(WITNESS, || {
                "site-a silent: fails over to site-b".to_string()
            });
        }
        if w.promoted && !w.promote_acked {
            k.send(WITNESS, SITE_B, Msg::Promote);
        }
        if w.promoted && !w.client_informed {
            k.send(WITNESS, CLIENT, Msg::NewPrimary);
        }
        k.set_timer(WITNESS, ms(100), Timer::WitnessTick);
    }

    fn on_promote(&mut self, k: &mut K) {
        if !self.sites[1].switched {
            self.sites[1].switched = true;
            self.failover_ns = Some(k.now_ns());
            k.hash_value(0xfa11_0000 | self.sites[1].image.len() as u64);
            k.log(SITE_B, || "promoted: serves the volume".to_string());
            self.check_failover(k);
        }
        k.send(SITE_B, WITNESS, Msg::PromoteAck);
    }

    // --- checkers ---

    /// site-b's image must be a prefix of site-a's journal.
    fn check_prefix(&mut self, k: &K, when: &str) {
        let (a, b) = (&self.sites[0].image, &self.sites[1].image);
        let diverges = b
            .iter()
            .enumerate()
            .find(|(lsn, e)| a.get(*lsn).map(|x| x.id) != Some(e.id));
        if let Some((lsn, e)) = diverges {
            let theirs = a
                .get(lsn)
                .map_or("nothing".to_string(), |x| format!("write {}", x.id));
            self.checks.fail(IMAGE, k.now_ns(), || {
                format!(
                    "{when}: site-b's image is not a state site-a had: at LSN {lsn} it holds write {}, site-a's journal {theirs}",
                    e.id
                )
            });
        }
    }

    /// Every write `node` acknowledged is in its journal (after a restart, or at the end with its in-flight journal
    /// writes).
    fn check_acked_durable(&mut self, k: &K, node: NodeId, when: &str) {
        let site = &self.sites[site_index(node)];
        let missing: Vec<(u64, u64)> = self
            .acked
            .iter()
            .filter(|(id, r)| {
                // The serving site after the failover answers for site-a's acknowledgements too.
                (r.site == node || node == SITE_B)
                    && !site.ids.contains(id)
                    && !site.pending.contains(id)
                    && !self.lost_in_failover.contains(id)
            })
            .map(|(&id, r)| (id, r.at_ns))
            .collect();
        for (id, at_ns) in missing {
            self.checks.fail(LOST, k.now_ns(), || {
                format!(
                    "{when}: write {id}, acknowledged by {} at {:.3} ms, is missing from its journal",
                    k.node_name(node),
                    at_ns as f64 / 1e6
                )
            });
        }
    }

    fn check_failover(&mut self, k: &mut K) {
        let now = k.now_ns();
        self.check_prefix(k, "at the failover");
        let (a, b) = (&self.sites[0], &self.sites[1]);
        if a.image.len() > b.image.len() {
            self.coverage_in_flight += 1;
        }
        if k.is_up(SITE_A) && !k.link_open(SITE_A, SITE_B) {
            self.coverage_link_down += 1;
        }
        let lost: Vec<(u64, u64)> = self
            .acked
            .iter()
            .filter(|(id, r)| r.site == SITE_A && !b.ids.contains(id))
            .map(|(&id, r)| (id, r.at_ns))
            .collect();
        let first_missing_ns = a.image.get(b.image.len()).map(|e| e.journal_ns);
        let never_journaled: Vec<u64> = lost
            .iter()
            .filter(|(id, _)| !a.ids.contains(id))
            .map(|&(id, _)| id)
            .collect();
        let last_ack_ns = lost.iter().map(|&(_, at)| at).max().unwrap_or(0);
        let window_ns = first_missing_ns.map_or(0, |j| last_ack_ns.saturating_sub(j));
        let lag_ns = a
            .image
            .get(b.image.len())
            .map_or(0, |e| now.saturating_sub(e.journal_ns));
        self.lag_at_failover_ms.push(lag_ns as f64 / 1e6);
        self.rpo_lost_writes.push(lost.len() as f64);
        self.rpo_lost_window_ms.push(window_ns as f64 / 1e6);
        if !lost.is_empty() {
            self.coverage_lost_within_rpo += 1;
        }
        if let Some(&id) = never_journaled.first() {
            self.checks.fail(LOST, now, || {
                format!("at the failover: acknowledged write {id} is in neither site's image (never journaled)")
            });
        }
        if lost.len() as u64 > self.p.rpo_writes {
            let (count, rpo) = (lost.len(), self.p.rpo_writes);
            self.checks.fail(LOST, now, || {
                format!("the failover lost {count} acknowledged writes, more than the RPO of {rpo}")
            });
        }
        if window_ns > ms(self.p.rpo_ms) {
            let rpo = self.p.rpo_ms;
            self.checks.fail(LOST, now, || {
                format!(
                    "the failover lost acknowledged writes spanning {:.3} ms, more than the RPO of {rpo} ms",
                    window_ns as f64 / 1e6
                )
            });
        }
        self.lost_in_failover = lost.into_iter().map(|(id, _)| id).collect();
    }
}

impl Model for Cdp {
    type Msg = Msg;
    type Timer = Timer;

    fn start(&mut self, k: &mut K) {
        self.witness.last_heard_ns = k.now_ns();
        k.set_timer(CLIENT, ms(1), Timer::ClientWrite);
        k.set_timer(CLIENT, ms(self.p.client_retry_ms), Timer::ClientRetry);
        k.set_timer(SITE_A, 0, Timer::Heartbeat);
        k.set_timer(SITE_A, ms(self.p.ship_retry_ms), Timer::ShipRetry);
        k.set_timer(WITNESS, ms(100), Timer::WitnessTick);
    }

    fn on_message(&mut self, k: &mut K, to: NodeId, from: NodeId, msg: Msg) {
        match (to, msg) {
            (SITE_A | SITE_B, Msg::Write { id }) => self.on_write(k, to, id),
            (CLIENT, Msg::Ack { id }) => {
                self.client.outstanding.remove(&id);
            }
            (CLIENT, Msg::NewPrimary) => {
                self.client.primary = SITE_B;
                k.send(CLIENT, from, Msg::NewPrimaryAck);
            }
            (SITE_B, Msg::Ship { lsn, id }) if from == SITE_A => self.on_ship(k, lsn, id),
            (SITE_B, Msg::Promote) => self.on_promote(k),
            (SITE_A, Msg::ShipAck { applied }) => self.on_ship_ack(k, applied),
            (
                SITE_A,
                Msg::HeartbeatAck {
                    sent_ns,
                    failed_over,
                },
            ) => {
                let a = &mut self.sites[0];
                if failed_over {
                    a.switched = true;
                } else {
                    a.lease_until_ns = a.lease_until_ns.max(sent_ns + ms(self.p.lease_ms));
                }
            }
            (WITNESS, Msg::Heartbeat { sent_ns }) => {
                let failed_over = self.witness.promoted;
                if !failed_over {
                    self.witness.last_heard_ns = k.now_ns();
                }
                k.send(
                    WITNESS,
                    from,
                    Msg::HeartbeatAck {
                        sent_ns,
                        failed_over,
                    },
                );
            }
            (WITNESS, Msg::PromoteAck) => self.witness.promote_acked = true,
            (WITNESS, Msg::NewPrimaryAck) => self.witness.client_informed = true,
            _ => {}
        }
    }

    fn on_timer(&mut self, k: &mut K, node: NodeId, timer: Timer) {
        match timer {
            Timer::ClientWrite => self.client_write(k),
            Timer::ClientRetry => self.client_retry(k),
            Timer::JournalDone => self.on_journal_done(k, node),
            Timer::ShipRetry => self.ship_retry(k),
            Timer::Heartbeat => {
                let sent_ns = k.now_ns();
                if !self.sites[0].switched {
                    k.send(SITE_A, WITNESS, Msg::Heartbeat { sent_ns });
                }
                k.set_timer(SITE_A, ms(self.p.heartbeat_ms), Timer::Heartbeat);
            }
            Timer::WitnessTick => self.witness_tick(k),
        }
    }

    fn on_crash(&mut self, k: &mut K, node: NodeId) {
        match node {
            SITE_A | SITE_B => {
                if node == SITE_A && !self.sites[1].switched && !k.link_open(SITE_A, SITE_B) {
                    self.coverage_link_down += 1;
                }
                self.sites[site_index(node)].crash();
            }
            CLIENT => self.client.outstanding.clear(),
            _ => {}
        }
    }

    fn on_restart(&mut self, k: &mut K, node: NodeId) {
        match node {
            SITE_A | SITE_B => {
                let site = &mut self.sites[site_index(node)];
                site.log = site.image.iter().map(|e| e.id).collect();
                if node == self.authority() {
                    self.check_acked_durable(k, node, "after a restart");
                }
                if node == SITE_A {
                    self.coverage_primary_restart += 1;
                    if !self.sites[1].switched {
                        self.check_prefix(k, "after site-a's restart");
                    }
                    k.set_timer(SITE_A, 0, Timer::Heartbeat);
                    k.set_timer(SITE_A, ms(self.p.ship_retry_ms), Timer::ShipRetry);
                }
            }
            CLIENT => {
                k.set_timer(CLIENT, ms(1), Timer::ClientWrite);
                k.set_timer(CLIENT, ms(self.p.client_retry_ms), Timer::ClientRetry);
            }
            _ => {
                self.witness.last_heard_ns = k.now_ns();
                k.set_timer(WITNESS, ms(100), Timer::WitnessTick);
            }
        }
    }

    fn on_fault(&mut self, _k: &mut K, _fault: &Fault, _starting: bool) {}

    fn on_check(&mut self, _k: &mut K) {}

    fn finish(&mut self, k: &mut K) -> ModelReport {
        let authority = self.authority();
        self.check_acked_durable(k, authority, "at the end");
        if authority == SITE_A {
            self.check_prefix(k, "at the end");
        }
        let checks = std::mem::replace(&mut self.checks, Checks::new(&CHECKERS));
        ModelReport {
            checks: checks.into_results(),
            metrics: vec![
                ("rpo_lost_writes", std::mem::take(&mut self.rpo_lost_writes)),
                (
                    "rpo_lost_window_ms",
                    std::mem::take(&mut self.rpo_lost_window_ms),
                ),
                (
                    "lag_at_failover_ms",
                    std::mem::take(&mut self.lag_at_failover_ms),
                ),
                (
                    "recovery_time_ms",
                    std::mem::take(&mut self.recovery_time_ms),
                ),
            ],
            coverage: vec![
                (
                    "failover with journal entries in flight",
                    self.coverage_in_flight,
                ),
                ("link down at the site failure", self.coverage_link_down),
                (
                    "failover lost acknowledged writes within the RPO",
                    self.coverage_lost_within_rpo,
                ),
                ("acknowledgement held by the RPO guard", self.coverage_held),
                (
                    "protected site restarted from its journal",
                    self.coverage_primary_restart,
                ),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_checked_together() {
        let mut p = Params::default();
        assert!(p
            .set("lease_ms", &toml::Value::Integer(5_000))
            .unwrap_err()
            .contains("failover_after_ms must exceed lease_ms"));
        let mut p2 = Params::default();
        assert!(p2
            .set("variant", &toml::Value::String("nope".into()))
            .unwrap_err()
            .contains("ack-before-journal"));
        p = Params::default();
        p.set("rpo_writes", &toml::Value::Integer(7)).unwrap();
        assert_eq!(p.rpo_writes, 7);
    }
}
