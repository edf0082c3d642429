//! The split-brain model: EMS resolution of an active/standby pair of VNFC instances.
//!
//! Nodes: `ems` (element management system, with its state database), `vnfm` (VNF manager, which probes the instances
//! and answers whether one is network-isolated), `vnfc-a` and `vnfc-b` (the pair; `vnfc-a` starts active).
//!
//! Protocol:
//! - Each instance sends heartbeats to its peer and status notifications (role, role epoch, local timestamp of its last
//!   change to active) to the EMS. The EMS writes them to its state database, which refuses writes under an epoch older
//!   than the newest it has seen (fencing), and acknowledges with the database epoch and whether the peer is heard as
//!   active.
//! - A standby promotes itself (epoch + 1) when it has heard no active heartbeat for `detect_timeout_ms` and the EMS
//!   either confirms the active is silent or cannot be reached. That second case is how an isolated instance ends up
//!   active beside its peer.
//! - When an instance notifies as active while its peer is heard as active, the EMS reads both changes-to-active
//!   timestamps, asks the VNFM whether each is isolated (the question can time out), and sends a change to standby to the
//!   isolated one; when neither or both are isolated, or the VNFM timed out, the preferred standby steps down (with no
//!   preferred standby: the later change to active). The winner is confirmed under a fresh epoch.
//!
//! Checkers (`CHECKERS`, one per invariant, following DESIGN.md and Pacemaker/DRBD practice):
//! - `single-active`: two actives that the EMS can both reach never last longer than `detection_window_ms`.
//! - `converges-after-heal`: at each `check` step, if an instance is healthy, exactly one is active under the current
//!   database epoch.
//! - `epoch-monotonic`: no instance's epoch and no database epoch ever decreases; no write under a stale epoch is accepted.
//! - `no-flapping`: at most `flap_changes_max` role changes per instance within `flap_window_ms`.
//! - `decision-pure`: every resolution equals `decide` of its recorded inputs, and equal inputs always gave equal results.
//!
//! Broken variants (`variant` parameter): `ignore-isolation` (the resolver never looks at the VNFM's answers) and
//! `no-epoch-fencing` (the database accepts writes under stale epochs).

use super::{param_str, param_u64, Checks, Model, ModelReport};
use crate::kernel::{Kernel, NodeId, NodeStatus, NS_PER_MS};
use crate::plan::Fault;
use std::collections::{BTreeMap, VecDeque};

pub const EMS: NodeId = 0;
pub const VNFM: NodeId = 1;
pub const VNFC_A: NodeId = 2;
pub const VNFC_B: NodeId = 3;

pub fn node_names() -> Vec<String> {
    ["ems", "vnfm", "vnfc-a", "vnfc-b"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

pub const CHECKERS: [&str; 5] = [
    "single-active",
    "converges-after-heal",
    "epoch-monotonic",
    "no-flapping",
    "decision-pure",
];
const SINGLE_ACTIVE: usize = 0;
const CONVERGES: usize = 1;
const EPOCH: usize = 2;
const FLAPPING: usize = 3;
const DECISION: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    Correct,
    /// Broken: the resolver ignores the VNFM's isolation answers.
    IgnoreIsolation,
    /// Broken: the state database accepts writes under stale epochs.
    NoEpochFencing,
}

impl Variant {
    pub fn name(self) -> &'static str {
        match self {
            Variant::Correct => "correct",
            Variant::IgnoreIsolation => "ignore-isolation",
            Variant::NoEpochFencing => "no-epoch-fencing",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    pub variant: Variant,
    pub heartbeat_interval_ms: u64,
    pub detect_timeout_ms: u64,
    pub status_interval_ms: u64,
    /// The EMS counts an instance as heard-active for this long after its last active notification.
    pub peer_recent_ms: u64,
    /// A standby counts the EMS as unreachable after this long without an acknowledgement.
    pub ems_silence_ms: u64,
    pub vnfm_timeout_ms: u64,
    pub probe_interval_ms: u64,
    /// Consecutive unanswered probes after which the VNFM counts an instance as isolated.
    pub probe_failures_isolated: u64,
    /// How long the VNFM remembers an isolation.
    pub isolation_memory_ms: u64,
    /// Index into the pair (0 = vnfc-a, 1 = vnfc-b), or None.
    pub preferred_standby: Option<usize>,
    pub detection_window_ms: u64,
    pub flap_window_ms: u64,
    pub flap_changes_max: u64,
    /// After the last fault ends, exactly one instance must be active within this deadline.
    pub converge_deadline_ms: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            variant: Variant::Correct,
            heartbeat_interval_ms: 100,
            detect_timeout_ms: 400,
            status_interval_ms: 200,
            peer_recent_ms: 600,
            ems_silence_ms: 800,
            vnfm_timeout_ms: 300,
            probe_interval_ms: 200,
            probe_failures_isolated: 3,
            isolation_memory_ms: 3_000,
            preferred_standby: Some(1),
            detection_window_ms: 5_000,
            flap_window_ms: 10_000,
            flap_changes_max: 6,
            converge_deadline_ms: 3_000,
        }
    }
}

impl Params {
    pub fn set(&mut self, key: &str, value: &toml::Value) -> Result<(), String> {
        match key {
            "variant" => {
                self.variant = match param_str(value)? {
                    "correct" => Variant::Correct,
                    "ignore-isolation" => Variant::IgnoreIsolation,
                    "no-epoch-fencing" => Variant::NoEpochFencing,
                    other => {
                        return Err(format!("unknown variant `{other}` (known: correct, ignore-isolation, no-epoch-fencing)"))
                    }
                }
            }
            "preferred_standby" => {
                self.preferred_standby = match param_str(value)? {
                    "vnfc-a" => Some(0),
                    "vnfc-b" => Some(1),
                    "none" => None,
                    other => return Err(format!("unknown instance `{other}` (known: vnfc-a, vnfc-b, none)")),
                }
            }
            "heartbeat_interval_ms" => self.heartbeat_interval_ms = positive(value)?,
            "detect_timeout_ms" => self.detect_timeout_ms = positive(value)?,
            "status_interval_ms" => self.status_interval_ms = positive(value)?,
            "peer_recent_ms" => self.peer_recent_ms = positive(value)?,
            "ems_silence_ms" => self.ems_silence_ms = positive(value)?,
            "vnfm_timeout_ms" => self.vnfm_timeout_ms = positive(value)?,
            "probe_interval_ms" => self.probe_interval_ms = positive(value)?,
            "probe_failures_isolated" => self.probe_failures_isolated = positive(value)?,
            "isolation_memory_ms" => self.isolation_memory_ms = positive(value)?,
            "detection_window_ms" => self.detection_window_ms = positive(value)?,
            "flap_window_ms" => self.flap_window_ms = positive(value)?,
            "flap_changes_max" => self.flap_changes_max = positive(value)?,
            "converge_deadline_ms" => self.converge_deadline_ms = positive(value)?,
            other => {
                return Err(format!(
                    "unknown parameter `{other}` of model split-brain (known: variant, preferred_standby, heartbeat_interval_ms, \
                     detect_timeout_ms, status_interval_ms, peer_recent_ms, ems_silence_ms, vnfm_timeout_ms, probe_interval_ms, \
                     probe_failures_isolated, isolation_memory_ms, detection_window_ms, flap_window_ms, flap_changes_max, \
                     converge_deadline_ms)"
                ))
            }
        }
        Ok(())
    }
}

/// The largest value of a split-brain parameter (an hour, for the times in ms): times are added and converted to
/// nanoseconds, which must not overflow.
pub const PARAM_MAX: u64 = 3_600_000;

fn positive(value: &toml::Value) -> Result<u64, String> {
    match param_u64(value)? {
        v if v == 0 || v > PARAM_MAX => Err(format!("must be between 1 and {PARAM_MAX}")),
        v => Ok(v),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Standby,
    Active,
}

#[derive(Clone, Copy, Debug)]
pub enum Msg {
    Heartbeat {
        role: Role,
        epoch: u64,
    },
    Status {
        role: Role,
        epoch: u64,
        active_since_ns: i64,
    },
    StatusAck {
        db_epoch: u64,
        peer_active: bool,
    },
    StandDown {
        epoch: u64,
    },
    Confirm {
        epoch: u64,
    },
    IsolationQuery {
        query: u64,
        instance: usize,
    },
    IsolationAnswer {
        query: u64,
        instance: usize,
        isolated: bool,
    },
    Probe {
        seq: u64,
    },
    ProbeReply {
        seq: u64,
    },
}

#[derive(Clone, Copy, Debug)]
pub enum Timer {
    Heartbeat,
    Status,
    Probe,
    QueryTimeout {
        query: u64,
    },
    /// The convergence deadline after the fault with this generation ended.
    ConvergeCheck {
        generation: u64,
    },
}

/// The inputs of one resolution: what `decide` may depend on, and nothing else.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DecisionInputs {
    /// The VNFM's answer per instance; None when it timed out.
    pub isolated: [Option<bool>; 2],
    /// Local timestamps of each instance's last change to active.
    pub active_since_ns: [i64; 2],
    pub preferred_standby: Option<usize>,
}

/// The inputs in the model's own terms, for checker messages: what the VNFM answered about each instance, when
/// each became active, and the preferred standby.
impl std::fmt::Display for DecisionInputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let answer = |a: Option<bool>| match a {
            Some(true) => "isolated",
            Some(false) => "not isolated",
            None => "no answer from the VNFM",
        };
        write!(
            f,
            "vnfc-a {} (active since {:.3} ms), vnfc-b {} (active since {:.3} ms), preferred standby {}",
            answer(self.isolated[0]),
            self.active_since_ns[0] as f64 / 1e6,
            answer(self.isolated[1]),
            self.active_since_ns[1] as f64 / 1e6,
            self.preferred_standby.map_or("none".to_string(), |i| format!("vnfc-{}", ab(i)))
        )
    }
}

/// The specified resolution: returns the instance (0 or 1) that must change to standby.
pub fn decide(inputs: &DecisionInputs) -> usize {
    match inputs.isolated {
        [Some(true), Some(false)] => 0,
        [Some(false), Some(true)] => 1,
        _ => fallback(inputs),
    }
}

/// Neither, both, or unknown: the preferred standby steps down; without one, the later change to active (DRBD's
/// "discard the younger primary"), ties to vnfc-b.
fn fallback(inputs: &DecisionInputs) -> usize {
    match inputs.preferred_standby {
        Some(preferred) => preferred,
        None => usize::from(inputs.active_since_ns[1] >= inputs.active_since_ns[0]),
    }
}

struct Vnfc {
    role: Role,
    /// Durable across crashes, like a role epoch kept on disk.
    epoch: u64,
    active_since_ns: i64,
    last_active_heartbeat_ns: u64,
    last_ack_ns: Option<u64>,
    last_ack_peer_active: bool,
    /// When the heartbeat timer last ran (to notice pauses).
    last_tick_ns: u64,
    /// Times of recent role changes, for the flapping checker.
    changes_ns: VecDeque<u64>,
    /// Times of the last few changes to standby ordered by the EMS (the promotion back-off).
    stepdowns_ns: VecDeque<u64>,
}

#[derive(Clone, Copy)]
struct Claim {
    role: Role,
    heard_ns: u64,
    active_since_ns: i64,
}

struct Resolution {
    query: u64,
    answers: [Option<bool>; 2],
    active_since_ns: [i64; 2],
}

struct Vnfm {
    sent_seq: [u64; 2],
    replied_seq: [u64; 2],
    consecutive_failures: [u64; 2],
    isolated_at_ns: [Option<u64>; 2],
}

pub struct SplitBrain {
    p: Params,
    vnfc: [Vnfc; 2],
    // EMS: durable database...
    db_epoch: u64,
    db_owner: usize,
    // ...and volatile memory.
    claims: [Option<Claim>; 2],
    resolving: Option<Resolution>,
    next_query: u64,
    vnfm: Vnfm,
    checks: Checks,
    decisions: BTreeMap<DecisionInputs, usize>,
    /// Bumped at every fault start and end, so a convergence check knows whether a fault intervened.
    fault_generation: u64,
    // Interval tracking for `single-active` and the metrics.
    dual_since_ns: Option<u64>,
    visible_since_ns: Option<u64>,
    dual_active_ms: Vec<f64>,
    resolution_ms: Vec<f64>,
    coverage_dual_active: u64,
    coverage_visible_dual: u64,
    coverage_isolated_decision: u64,
    coverage_vnfm_timeout: u64,
    coverage_stale_refused: u64,
    coverage_checks_converged: u64,
    coverage_quiet_after_fault: u64,
}

impl SplitBrain {
    pub fn new(p: Params) -> SplitBrain {
        let vnfc = |role| Vnfc {
            role,
            epoch: 1,
            active_since_ns: 0,
            last_active_heartbeat_ns: 0,
            last_ack_ns: None,
            last_ack_peer_active: true,
            last_tick_ns: 0,
            changes_ns: VecDeque::new(),
            stepdowns_ns: VecDeque::new(),
        };
        SplitBrain {
            p,
            vnfc: [vnfc(Role::Active), vnfc(Role::Standby)],
            db_epoch: 1,
            db_owner: 0,
            claims: [None, None],
            resolving: None,
            next_query: 0,
            vnfm: Vnfm {
                sent_seq: [0; 2],
                replied_seq: [0; 2],
                consecutive_failures: [0; 2],
                isolated_at_ns: [None; 2],
            },
            checks: Checks::new(&CHECKERS),
            decisions: BTreeMap::new(),
            fault_generation: 0,
            dual_since_ns: None,
            visible_since_ns: None,
            dual_active_ms: Vec::new(),
            resolution_ms: Vec::new(),
            coverage_dual_active: 0,
            coverage_visible_dual: 0,
            coverage_isolated_decision: 0,
            coverage_vnfm_timeout: 0,
            coverage_stale_refused: 0,
            coverage_checks_converged: 0,
            coverage_quiet_after_fault: 0,
        }
    }

    fn node_of(instance: usize) -> NodeId {
        VNFC_A + instance
    }

    fn ms(&self, value: u64) -> u64 {
        value * NS_PER_MS
    }

    fn set_epoch(&mut self, k: &mut K, instance: usize, epoch: u64) {
        let old = self.vnfc[instance].epoch;
        if epoch < old {
            self.checks.fail(EPOCH, k.now_ns(), || {
                format!(
                    "vnfc-{} epoch went from {old} down to {epoch}",
                    ab(instance)
                )
            });
        }
        self.vnfc[instance].epoch = epoch;
    }

    fn set_role(&mut self, k: &mut K, instance: usize, role: Role, why: &str) {
        if self.vnfc[instance].role == role {
            return;
        }
        let now = k.now_ns();
        self.vnfc[instance].role = role;
        if role == Role::Active {
            self.vnfc[instance].active_since_ns = k.local_time_ns(Self::node_of(instance));
        }
        k.hash_value(((instance as u64) << 8) | role as u64);
        let epoch = self.vnfc[instance].epoch;
        k.log(Self::node_of(instance), || {
            format!("becomes {role:?} (epoch {epoch}): {why}")
        });
        let window = self.ms(self.p.flap_window_ms);
        let changes = &mut self.vnfc[instance].changes_ns;
        changes.push_back(now);
        while changes.front().is_some_and(|&t| t + window <= now) {
            changes.pop_front();
        }
        // The deque never holds more than one change past the limit, so it stays bounded.
        if changes.len() as u64 > self.p.flap_changes_max {
            let count = changes.len();
            changes.pop_front();
            let (window_ms, max) = (self.p.flap_window_ms, self.p.flap_changes_max);
            self.checks.fail(FLAPPING, now, || {
                format!(
                    "vnfc-{} changed role {count} times within {window_ms} ms (at most {max})",
                    ab(instance)
                )
            });
        }
        self.track_dual(k);
    }

    fn is_active(&self, k: &K, instance: usize) -> bool {
        self.vnfc[instance].role == Role::Active
            && k.status(Self::node_of(instance)) != NodeStatus::Crashed
    }

    fn visible(k: &K, instance: usize) -> bool {
        let node = Self::node_of(instance);
        k.link_usable(node, EMS) && k.link_usable(EMS, node)
    }

    /// Opens and closes the dual-active intervals; called after every role change and every fault.
    fn track_dual(&mut self, k: &mut K) {
        let now = k.now_ns();
        let dual = self.is_active(k, 0) && self.is_active(k, 1);
        let visible = dual && Self::visible(k, 0) && Self::visible(k, 1);
        match (self.dual_since_ns, dual) {
            (None, true) => {
                self.dual_since_ns = Some(now);
                self.coverage_dual_active += 1;
                k.log(EMS, || "dual-active begins".into());
            }
            (Some(since), false) => {
                self.dual_since_ns = None;
                self.dual_active_ms.push((now - since) as f64 / 1e6);
                k.log(EMS, || "dual-active ends".into());
            }
            _ => {}
        }
        match (self.visible_since_ns, visible) {
            (None, true) => {
                self.visible_since_ns = Some(now);
                self.coverage_visible_dual += 1;
            }
            (Some(since), false) => {
                self.visible_since_ns = None;
                if !dual {
                    self.resolution_ms.push((now - since) as f64 / 1e6);
                }
                self.check_visible_interval(since, now);
            }
            _ => {}
        }
    }

    fn check_visible_interval(&mut self, since: u64, until: u64) {
        let window = self.ms(self.p.detection_window_ms);
        if until - since > window {
            let window_ms = self.p.detection_window_ms;
            self.checks.fail(SINGLE_ACTIVE, until, || {
                format!(
                    "both instances were active and reachable from the EMS for {:.3} ms from {:.3} ms (detection window {window_ms} ms)",
                    (until - since) as f64 / 1e6,
                    since as f64 / 1e6
                )
            });
        }
    }

    /// Exactly one instance active under the database epoch, whenever one is healthy.
    fn check_converged(&mut self, k: &mut K, origin: &str) {
        let healthy: Vec<usize> = (0..2).filter(|&i| k.is_up(Self::node_of(i))).collect();
        if healthy.is_empty() {
            return;
        }
        let active: Vec<usize> = (0..2).filter(|&i| self.is_active(k, i)).collect();
        let effective: Vec<usize> = active
            .iter()
            .copied()
            .filter(|&i| self.vnfc[i].epoch == self.db_epoch && self.db_owner == i)
            .collect();
        if active.len() == 1 && effective.len() == 1 {
            self.coverage_checks_converged += 1;
        } else {
            let (db_epoch, db_owner) = (self.db_epoch, self.db_owner);
            let epochs = [self.vnfc[0].epoch, self.vnfc[1].epoch];
            let roles = [self.vnfc[0].role, self.vnfc[1].role];
            self.checks.fail(CONVERGES, k.now_ns(), || {
                format!(
                    "{origin}: expected exactly one active under the database epoch; vnfc-a {:?} at epoch {}, vnfc-b {:?} at epoch {}, database epoch {db_epoch} owned by vnfc-{}",
                    roles[0], epochs[0], roles[1], epochs[1],
                    ab(db_owner)
                )
            });
        }
    }

    // --- VNFC behaviour ---

    fn vnfc_heartbeat(&mut self, k: &mut K, instance: usize) {
        let node = Self::node_of(instance);
        let peer = Self::node_of(1 - instance);
        let now = k.now_ns();
        let interval = self.ms(self.p.heartbeat_interval_ms);
        // A tick far later than scheduled means this process was paused (a GC or VM pause): what it knows about its
        // peer is stale, so it starts detection afresh instead of promoting on old silence.
        let me = &mut self.vnfc[instance];
        if now > me.last_tick_ns + 2 * interval {
            me.last_active_heartbeat_ns = now;
            me.last_ack_ns = Some(now);
            me.last_ack_peer_active = true;
            k.log(node, || {
                "resumed after a pause: restarts failure detection".into()
            });
        }
        me.last_tick_ns = now;
        let me = &self.vnfc[instance];
        k.send(
            node,
            peer,
            Msg::Heartbeat {
                role: me.role,
                epoch: me.epoch,
            },
        );
        let now = k.now_ns();
        // Back-off: each change to standby that the EMS ordered within the flap window doubles the silence needed
        // before the next self-promotion (up to 8x), so repeated faults cannot make the pair flap.
        let window = self.ms(self.p.flap_window_ms);
        let recent_stepdowns = me
            .stepdowns_ns
            .iter()
            .filter(|&&t| t + window > now)
            .count();
        let detect_ns = self.ms(self.p.detect_timeout_ms) << recent_stepdowns.min(3);
        if me.role == Role::Standby && now >= me.last_active_heartbeat_ns + detect_ns {
            let ems_reachable = me
                .last_ack_ns
                .is_some_and(|t| now < t + self.ms(self.p.ems_silence_ms));
            let peer_gone = !ems_reachable || !me.last_ack_peer_active;
            if peer_gone {
                // The highest epoch this instance knows of (acks and heartbeats raise it), plus one.
                let epoch = self.vnfc[instance].epoch + 1;
                self.set_epoch(k, instance, epoch);
                let why = if ems_reachable {
                    "peer silent and the EMS hears no active"
                } else {
                    "peer silent and the EMS unreachable"
                };
                self.set_role(k, instance, Role::Active, why);
                self.vnfc_status(k, instance);
            }
        }
        k.set_timer(
            node,
            self.ms(self.p.heartbeat_interval_ms),
            Timer::Heartbeat,
        );
    }

    fn vnfc_status(&mut self, k: &mut K, instance: usize) {
        let me = &self.vnfc[instance];
        let msg = Msg::Status {
            role: me.role,
            epoch: me.epoch,
            active_since_ns: me.active_since_ns,
        };
        k.send(Self::node_of(instance), EMS, msg);
    }

    fn vnfc_message(&mut self, k: &mut K, instance: usize, from: NodeId, msg: Msg) {
        let now = k.now_ns();
        match msg {
            Msg::Heartbeat {
                role: Role::Active,
                epoch,
            } => {
                self.vnfc[instance].last_active_heartbeat_ns = now;
                if self.vnfc[instance].role == Role::Standby && epoch > self.vnfc[instance].epoch {
                    self.set_epoch(k, instance, epoch);
                }
            }
            Msg::StatusAck {
                db_epoch,
                peer_active,
            } => {
                let me = &mut self.vnfc[instance];
                me.last_ack_ns = Some(now);
                me.last_ack_peer_active = peer_active;
                if me.role == Role::Standby && db_epoch > me.epoch {
                    self.set_epoch(k, instance, db_epoch);
                }
            }
            Msg::StandDown { epoch } if epoch >= self.vnfc[instance].epoch => {
                self.set_epoch(k, instance, epoch);
                // The EMS just said the peer is active: do not promote again before hearing otherwise.
                self.vnfc[instance].last_active_heartbeat_ns = now;
                self.vnfc[instance].last_ack_ns = Some(now);
                self.vnfc[instance].last_ack_peer_active = true;
                if self.vnfc[instance].role == Role::Active {
                    let stepdowns = &mut self.vnfc[instance].stepdowns_ns;
                    if stepdowns.len() >= 4 {
                        stepdowns.pop_front();
                    }
                    stepdowns.push_back(now);
                }
                self.set_role(
                    k,
                    instance,
                    Role::Standby,
                    "EMS ordered a change to standby",
                );
            }
            Msg::Confirm { epoch } if epoch >= self.vnfc[instance].epoch => {
                self.set_epoch(k, instance, epoch);
                self.set_role(k, instance, Role::Active, "EMS confirmed the active role");
            }
            Msg::Probe { seq } => k.send(Self::node_of(instance), from, Msg::ProbeReply { seq }),
            _ => {}
        }
    }

    // --- EMS behaviour ---

    fn ems_status(
        &mut self,
        k: &mut K,
        instance: usize,
        role: Role,
        epoch: u64,
        active_since_ns: i64,
    ) {
        let now = k.now_ns();
        let peer = 1 - instance;
        let fenced = self.p.variant != Variant::NoEpochFencing;
        let accepted = epoch >= self.db_epoch || !fenced;
        if accepted {
            if epoch < self.db_epoch {
                let db_epoch = self.db_epoch;
                self.checks.fail(EPOCH, now, || {
                    format!("the state database accepted a write from vnfc-{} under stale epoch {epoch} < {db_epoch}", ab(instance))
                });
            }
            if role == Role::Active {
                self.db_epoch = epoch;
                self.db_owner = instance;
            }
        } else {
            self.coverage_stale_refused += 1;
        }
        self.claims[instance] = Some(Claim {
            role,
            heard_ns: now,
            active_since_ns,
        });
        let recent = self.ms(self.p.peer_recent_ms);
        let peer_active =
            self.claims[peer].is_some_and(|c| c.role == Role::Active && now < c.heard_ns + recent);
        if role == Role::Active {
            if peer_active {
                if self.resolving.is_none() {
                    self.start_resolution(k);
                }
            } else if !accepted || self.db_owner != instance {
                // The only active the EMS hears, but under an old epoch: grant it a fresh one, once; while the
                // grant is in flight (or was lost) the EMS repeats it instead of inflating the epoch.
                if self.db_owner != instance {
                    self.db_epoch += 1;
                    self.db_owner = instance;
                    let epoch = self.db_epoch;
                    k.log(EMS, || {
                        format!("grants epoch {epoch} to vnfc-{}", ab(instance))
                    });
                }
                k.send(
                    EMS,
                    Self::node_of(instance),
                    Msg::Confirm {
                        epoch: self.db_epoch,
                    },
                );
            }
        }
        k.send(
            EMS,
            Self::node_of(instance),
            Msg::StatusAck {
                db_epoch: self.db_epoch,
                peer_active,
            },
        );
    }

    fn start_resolution(&mut self, k: &mut K) {
        self.next_query += 1;
        let query = self.next_query;
        let since = |c: Option<Claim>| c.map(|c| c.active_since_ns).unwrap_or(0);
        self.resolving = Some(Resolution {
            query,
            answers: [None, None],
            active_since_ns: [since(self.claims[0]), since(self.claims[1])],
        });
        k.log(EMS, || {
            format!("both instances active: asks the VNFM (query {query})")
        });
        for instance in 0..2 {
            k.send(EMS, VNFM, Msg::IsolationQuery { query, instance });
        }
        k.set_timer(
            EMS,
            self.ms(self.p.vnfm_timeout_ms),
            Timer::QueryTimeout { query },
        );
    }

    fn resolve(&mut self, k: &mut K) {
        let Some(resolution) = self.resolving.take() else {
            return;
        };
        let inputs = DecisionInputs {
            isolated: resolution.answers,
            active_since_ns: resolution.active_since_ns,
            preferred_standby: self.p.preferred_standby,
        };
        let loser = match self.p.variant {
            Variant::IgnoreIsolation => fallback(&inputs),
            Variant::Correct | Variant::NoEpochFencing => decide(&inputs),
        };
        let now = k.now_ns();
        if inputs.isolated.iter().any(Option::is_none) {
            self.coverage_vnfm_timeout += 1;
        }
        if inputs.isolated == [Some(true), Some(false)]
            || inputs.isolated == [Some(false), Some(true)]
        {
            self.coverage_isolated_decision += 1;
        }
        let expected = decide(&inputs);
        if loser != expected {
            self.checks.fail(DECISION, now, || {
                format!(
                    "resolution stepped down vnfc-{} but the rule says vnfc-{} for: {inputs}",
                    ab(loser),
                    ab(expected)
                )
            });
        }
        if let Some(&previous) = self.decisions.get(&inputs) {
            if previous != loser {
                self.checks.fail(DECISION, now, || {
                    format!("the same inputs gave two different decisions: {inputs}")
                });
            }
        } else if self.decisions.len() < 10_000 {
            self.decisions.insert(inputs, loser);
        }
        let winner = 1 - loser;
        self.db_epoch += 1;
        self.db_owner = winner;
        let epoch = self.db_epoch;
        if let Some(claim) = &mut self.claims[loser] {
            claim.role = Role::Standby;
        }
        k.hash_value(0x5000 | loser as u64);
        k.log(EMS, || {
            format!(
                "decides ({inputs}): vnfc-{} steps down, vnfc-{} active under epoch {epoch}",
                ab(loser),
                ab(winner)
            )
        });
        k.send(EMS, Self::node_of(loser), Msg::StandDown { epoch });
        k.send(EMS, Self::node_of(winner), Msg::Confirm { epoch });
    }

    // --- VNFM behaviour ---

    fn vnfm_probe(&mut self, k: &mut K) {
        let now = k.now_ns();
        for instance in 0..2 {
            let v = &mut self.vnfm;
            if v.sent_seq[instance] > v.replied_seq[instance] {
                v.consecutive_failures[instance] += 1;
                if v.consecutive_failures[instance] >= self.p.probe_failures_isolated {
                    v.isolated_at_ns[instance] = Some(now);
                }
            }
            v.sent_seq[instance] += 1;
            let seq = v.sent_seq[instance];
            k.send(VNFM, Self::node_of(instance), Msg::Probe { seq });
        }
        k.set_timer(VNFM, self.ms(self.p.probe_interval_ms), Timer::Probe);
    }

    fn vnfm_message(&mut self, k: &mut K, from: NodeId, msg: Msg) {
        match msg {
            Msg::ProbeReply { seq } if from >= VNFC_A => {
                let instance = from - VNFC_A;
                if seq == self.vnfm.sent_seq[instance] {
                    self.vnfm.consecutive_failures[instance] = 0;
                }
                self.vnfm.replied_seq[instance] = self.vnfm.replied_seq[instance].max(seq);
            }
            Msg::IsolationQuery { query, instance } => {
                let memory = self.ms(self.p.isolation_memory_ms);
                let now = k.now_ns();
                let isolated =
                    self.vnfm.isolated_at_ns[instance].is_some_and(|t| now <= t + memory);
                k.send(
                    VNFM,
                    from,
                    Msg::IsolationAnswer {
                        query,
                        instance,
                        isolated,
                    },
                );
            }
            _ => {}
        }
    }
}

type K = Kernel<Msg, Timer>;

fn ab(instance: usize) -> char {
    if instance == 0 {
        'a'
    } else {
        'b'
    }
}

impl Model for SplitBrain {
    type Msg = Msg;
    type Timer = Timer;

    fn start(&mut self, k: &mut K) {
        for instance in 0..2 {
            self.vnfc[instance].last_active_heartbeat_ns = k.now_ns();
            self.vnfc[instance].last_ack_ns = Some(k.now_ns());
            self.vnfc[instance].last_tick_ns = k.now_ns();
            let node = Self::node_of(instance);
            // Stagger the instances so that their timers do not always tie.
            k.set_timer(node, instance as u64 * NS_PER_MS, Timer::Heartbeat);
            k.set_timer(node, (instance as u64 * 7 + 3) * NS_PER_MS, Timer::Status);
        }
        k.set_timer(VNFM, 5 * NS_PER_MS, Timer::Probe);
    }

    fn on_message(&mut self, k: &mut K, to: NodeId, from: NodeId, msg: Msg) {
        match to {
            EMS => match msg {
                Msg::Status {
                    role,
                    epoch,
                    active_since_ns,
                } if from >= VNFC_A => {
                    self.ems_status(k, from - VNFC_A, role, epoch, active_since_ns)
                }
                Msg::IsolationAnswer {
                    query,
                    instance,
                    isolated,
                } => {
                    if let Some(resolution) = &mut self.resolving {
                        if resolution.query == query {
                            resolution.answers[instance] = Some(isolated);
                            if resolution.answers.iter().all(Option::is_some) {
                                self.resolve(k);
                            }
                        }
                    }
                }
                _ => {}
            },
            VNFM => self.vnfm_message(k, from, msg),
            _ => self.vnfc_message(k, to - VNFC_A, from, msg),
        }
    }

    fn on_timer(&mut self, k: &mut K, node: NodeId, timer: Timer) {
        match timer {
            Timer::Heartbeat => self.vnfc_heartbeat(k, node - VNFC_A),
            Timer::Status => {
                self.vnfc_status(k, node - VNFC_A);
                k.set_timer(node, self.ms(self.p.status_interval_ms), Timer::Status);
            }
            Timer::Probe => self.vnfm_probe(k),
            Timer::ConvergeCheck { generation } => {
                if generation == self.fault_generation {
                    self.coverage_quiet_after_fault += 1;
                    self.check_converged(k, "after the faults ended");
                }
            }
            Timer::QueryTimeout { query } => {
                if self.resolving.as_ref().is_some_and(|r| r.query == query) {
                    k.log(EMS, || format!("VNFM query {query} timed out"));
                    self.resolve(k);
                }
            }
        }
    }

    fn on_crash(&mut self, k: &mut K, node: NodeId) {
        match node {
            EMS => {
                self.claims = [None, None];
                self.resolving = None;
            }
            VNFM => {
                self.vnfm.consecutive_failures = [0; 2];
                self.vnfm.isolated_at_ns = [None; 2];
                self.vnfm.replied_seq = self.vnfm.sent_seq;
            }
            _ => {
                let instance = node - VNFC_A;
                // Volatile role is lost; the epoch is durable. A crash is not a protocol role change.
                self.vnfc[instance].role = Role::Standby;
                self.track_dual(k);
            }
        }
    }

    fn on_restart(&mut self, k: &mut K, node: NodeId) {
        let now = k.now_ns();
        match node {
            EMS => {}
            VNFM => k.set_timer(VNFM, self.ms(self.p.probe_interval_ms), Timer::Probe),
            _ => {
                let instance = node - VNFC_A;
                let me = &mut self.vnfc[instance];
                me.role = Role::Standby;
                me.last_active_heartbeat_ns = now;
                me.last_ack_ns = None;
                me.last_ack_peer_active = true;
                me.last_tick_ns = now;
                k.set_timer(node, 0, Timer::Heartbeat);
                k.set_timer(node, 0, Timer::Status);
            }
        }
    }

    fn on_fault(&mut self, k: &mut K, _fault: &Fault, _starting: bool) {
        self.track_dual(k);
        // "After a partition heals, exactly one is active within a deadline": when a fault ends and leaves every node
        // up and the network whole, check again after the deadline unless another fault came first.
        self.fault_generation += 1;
        if k.network_healed() && (0..k.node_count()).all(|node| k.is_up(node)) {
            let generation = self.fault_generation;
            k.set_timer(
                EMS,
                self.ms(self.p.converge_deadline_ms),
                Timer::ConvergeCheck { generation },
            );
        }
    }

    fn on_check(&mut self, k: &mut K) {
        self.check_converged(k, "check step");
    }

    fn finish(&mut self, k: &mut K) -> ModelReport {
        let now = k.now_ns();
        if let Some(since) = self.dual_since_ns {
            self.dual_active_ms.push((now - since) as f64 / 1e6);
        }
        if let Some(since) = self.visible_since_ns.take() {
            self.check_visible_interval(since, now);
        }
        let checks = std::mem::replace(&mut self.checks, Checks::new(&CHECKERS));
        ModelReport {
            checks: checks.into_results(),
            metrics: vec![
                ("dual_active_ms", std::mem::take(&mut self.dual_active_ms)),
                (
                    "time_to_resolution_ms",
                    std::mem::take(&mut self.resolution_ms),
                ),
            ],
            coverage: vec![
                ("dual-active reached", self.coverage_dual_active),
                ("dual-active visible to the EMS", self.coverage_visible_dual),
                (
                    "resolution with exactly one isolated",
                    self.coverage_isolated_decision,
                ),
                (
                    "resolution after a VNFM timeout",
                    self.coverage_vnfm_timeout,
                ),
                ("stale-epoch write refused", self.coverage_stale_refused),
                (
                    "check passed with one active",
                    self.coverage_checks_converged,
                ),
                (
                    "quiet deadline after a fault checked",
                    self.coverage_quiet_after_fault,
                ),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(isolated: [Option<bool>; 2], preferred: Option<usize>) -> DecisionInputs {
        DecisionInputs {
            isolated,
            active_since_ns: [100, 200],
            preferred_standby: preferred,
        }
    }

    #[test]
    fn decide_steps_down_the_isolated_instance() {
        assert_eq!(decide(&inputs([Some(true), Some(false)], Some(1))), 0);
        assert_eq!(decide(&inputs([Some(false), Some(true)], Some(0))), 1);
    }

    #[test]
    fn decide_falls_back_to_the_preferred_standby_then_the_younger_active() {
        assert_eq!(decide(&inputs([Some(false), Some(false)], Some(0))), 0);
        assert_eq!(decide(&inputs([Some(true), Some(true)], Some(1))), 1);
        assert_eq!(
            decide(&inputs([None, Some(true)], Some(0))),
            0,
            "a timeout means the preferred standby steps down"
        );
        assert_eq!(
            decide(&inputs([Some(false), Some(false)], None)),
            1,
            "vnfc-b became active later"
        );
        let mut reversed = inputs([None, None], None);
        reversed.active_since_ns = [300, 200];
        assert_eq!(decide(&reversed), 0);
    }
}
