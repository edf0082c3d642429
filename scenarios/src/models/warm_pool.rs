//! The warm-pool model: a pool of compute instances warmed from usage metrics before they serve.
//!
//! Nodes: `balancer` (the load balancer, which is also the pool controller and where the seeded load arrives),
//! `metrics` (the usage-metrics store, whose data becomes visible only after `metrics_lag_ms`), `host-1`..`host-N`
//! (each runs at most one instance at a time).
//!
//! Protocol:
//! - Load: requests arrive at the balancer (Poisson, `rate_per_s`), with bursts (`burst_factor` times the rate for
//!   `burst_ms`, starting at exponential gaps of mean `burst_every_ms`). Each request uses one of `kinds` operations,
//!   Zipf-popular; the popularity ranking rotates at seeded times, so stale metrics choose the wrong warmup.
//! - The pool keeps `target_size` instances and scales out (up to one per host) while the queue is long, back in after
//!   `scale_in_idle_ms` idle. To create an instance the balancer sends `Create` (a fresh generation, the host's boot
//!   number, and the warmup plan: the `warm_ops_max` operations the metrics store last reported as most used) and
//!   resends it until the instance reports; the instance boots (`boot_ms`), performs each planned operation
//!   (`warm_op_ms`), then reports warm in its heartbeat. Only then does the balancer mark it available and dispatch to
//!   it, one request at a time. A warmup longer than `warmup_timeout_ms` is abandoned and retried elsewhere.
//! - Hosts heartbeat every `heartbeat_ms`; one silent for `host_timeout_ms` is down, its instance lost and its request
//!   requeued. Serving an operation the instance did not warm takes `serve_cold_ms` (a warmup miss), else `serve_ms`;
//!   a `slow` fault multiplies every duration on its host. Instances report usage to the metrics store.
//!
//! Checkers (`CHECKERS`):
//! - `served-only-when-warm`: no instance starts serving a request before its warmup finished.
//! - `pool-recovers-target-size`: `recover_deadline_ms` after the last fault ended (and at each `check`), at least
//!   `target_size` warm instances are available.
//!
//! Broken variant (`variant = "available-before-warm"`): the balancer marks an instance available when it sends
//! `Create`, so requests reach instances still warming.

use super::{param_str, param_u64, Checks, Model, ModelReport};
use crate::kernel::{Kernel, NodeId, NS_PER_MS};
use crate::plan::Fault;
use rand::Rng;
use std::collections::VecDeque;

pub const BALANCER: NodeId = 0;
pub const METRICS: NodeId = 1;
pub const FIRST_HOST: NodeId = 2;

pub const CHECKERS: [&str; 2] = ["served-only-when-warm", "pool-recovers-target-size"];
const WARM: usize = 0;
const RECOVERS: usize = 1;

/// Operations are a bit set in a u64.
pub const KINDS_MAX: u64 = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    Correct,
    /// Broken: an instance is marked available as soon as it is created, before its warmup.
    AvailableBeforeWarm,
}

impl Variant {
    pub fn name(self) -> &'static str {
        match self {
            Variant::Correct => "correct",
            Variant::AvailableBeforeWarm => "available-before-warm",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    pub variant: Variant,
    pub hosts: u64,
    pub target_size: u64,
    pub rate_per_s: u64,
    pub burst_every_ms: u64,
    pub burst_ms: u64,
    pub burst_factor: u64,
    pub kinds: u64,
    pub warm_ops_max: u64,
    pub boot_ms: u64,
    pub warm_op_ms: u64,
    pub serve_ms: u64,
    pub serve_cold_ms: u64,
    pub serve_timeout_ms: u64,
    pub heartbeat_ms: u64,
    pub host_timeout_ms: u64,
    pub warmup_timeout_ms: u64,
    pub create_retry_ms: u64,
    pub scale_out_queue: u64,
    pub scale_in_idle_ms: u64,
    pub metrics_report_ms: u64,
    pub metrics_lag_ms: u64,
    pub metrics_window_ms: u64,
    pub metrics_refresh_ms: u64,
    pub popularity_shift_ms: u64,
    pub queue_max: u64,
    pub recover_deadline_ms: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            variant: Variant::Correct,
            hosts: 8,
            target_size: 4,
            rate_per_s: 40,
            burst_every_ms: 8_000,
            burst_ms: 2_000,
            burst_factor: 6,
            kinds: 12,
            warm_ops_max: 4,
            boot_ms: 300,
            warm_op_ms: 150,
            serve_ms: 15,
            serve_cold_ms: 60,
            serve_timeout_ms: 1_000,
            heartbeat_ms: 100,
            host_timeout_ms: 500,
            warmup_timeout_ms: 3_000,
            create_retry_ms: 300,
            scale_out_queue: 8,
            scale_in_idle_ms: 3_000,
            metrics_report_ms: 500,
            metrics_lag_ms: 2_000,
            metrics_window_ms: 10_000,
            metrics_refresh_ms: 1_000,
            popularity_shift_ms: 15_000,
            queue_max: 5_000,
            recover_deadline_ms: 5_000,
        }
    }
}

/// The largest time parameter (an hour): times are converted to nanoseconds, which must not overflow.
pub const PARAM_MAX: u64 = 3_600_000;

impl Params {
    pub fn set(&mut self, key: &str, value: &toml::Value) -> Result<(), String> {
        let ranged = |value: &toml::Value, max: u64| match param_u64(value)? {
            v if v == 0 || v > max => Err(format!("must be between 1 and {max}")),
            v => Ok(v),
        };
        let positive = |value: &toml::Value| ranged(value, PARAM_MAX);
        match key {
            "variant" => {
                self.variant = match param_str(value)? {
                    "correct" => Variant::Correct,
                    "available-before-warm" => Variant::AvailableBeforeWarm,
                    other => {
                        return Err(format!(
                            "unknown variant `{other}` (known: correct, available-before-warm)"
                        ))
                    }
                }
            }
            "hosts" => self.hosts = ranged(value, 64)?,
            "target_size" => self.target_size = ranged(value, 64)?,
            "rate_per_s" => self.rate_per_s = ranged(value, 10_000)?,
            "burst_factor" => self.burst_factor = ranged(value, 100)?,
            "kinds" => self.kinds = ranged(value, KINDS_MAX)?,
            "warm_ops_max" => self.warm_ops_max = ranged(value, KINDS_MAX)?,
            "scale_out_queue" => self.scale_out_queue = ranged(value, 100_000)?,
            "queue_max" => self.queue_max = ranged(value, 100_000)?,
            "burst_every_ms" => self.burst_every_ms = positive(value)?,
            "burst_ms" => self.burst_ms = positive(value)?,
            "boot_ms" => self.boot_ms = positive(value)?,
            "warm_op_ms" => self.warm_op_ms = positive(value)?,
            "serve_ms" => self.serve_ms = positive(value)?,
            "serve_cold_ms" => self.serve_cold_ms = positive(value)?,
            "serve_timeout_ms" => self.serve_timeout_ms = positive(value)?,
            "heartbeat_ms" => self.heartbeat_ms = positive(value)?,
            "host_timeout_ms" => self.host_timeout_ms = positive(value)?,
            "warmup_timeout_ms" => self.warmup_timeout_ms = positive(value)?,
            "create_retry_ms" => self.create_retry_ms = positive(value)?,
            "scale_in_idle_ms" => self.scale_in_idle_ms = positive(value)?,
            "metrics_report_ms" => self.metrics_report_ms = positive(value)?,
            "metrics_lag_ms" => self.metrics_lag_ms = positive(value)?,
            "metrics_window_ms" => self.metrics_window_ms = positive(value)?,
            "metrics_refresh_ms" => self.metrics_refresh_ms = positive(value)?,
            "popularity_shift_ms" => self.popularity_shift_ms = positive(value)?,
            "recover_deadline_ms" => self.recover_deadline_ms = positive(value)?,
            other => {
                return Err(format!(
                    "unknown parameter `{other}` of model warm-pool (known: variant, hosts, target_size, rate_per_s, \
                     burst_every_ms, burst_ms, burst_factor, kinds, warm_ops_max, boot_ms, warm_op_ms, serve_ms, \
                     serve_cold_ms, serve_timeout_ms, heartbeat_ms, host_timeout_ms, warmup_timeout_ms, create_retry_ms, \
                     scale_out_queue, scale_in_idle_ms, metrics_report_ms, metrics_lag_ms, metrics_window_ms, \
                     metrics_refresh_ms, popularity_shift_ms, queue_max, recover_deadline_ms)"
                ))
            }
        }
        if self.target_size > self.hosts {
            return Err("target_size must not exceed hosts".into());
        }
        Ok(())
    }

    pub fn node_names(&self) -> Vec<String> {
        let mut names = vec!["balancer".to_string(), "metrics".to_string()];
        names.extend((1..=self.hosts).map(|i| format!("host-{i}")));
        names
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Msg {
    Create { gen: u64, boot: u64, ops: u64 },
    Terminate { gen: u64 },
    Heartbeat { gen: u64, boot: u64, warm: bool },
    Serve { gen: u64, req: u64, kind: u8 },
    Done { gen: u64, req: u64 },
    Usage { kind: u8, count: u64 },
    ProfileQuery,
    ProfileAnswer { top: u64 },
}

#[derive(Clone, Copy, Debug)]
pub enum Timer {
    Arrival,
    Burst { start: bool },
    Shift,
    Tick,
    Refresh,
    HostHeartbeat,
    WarmStep { gen: u64 },
    ServeDone { gen: u64, req: u64 },
    Report,
    RecoverCheck { generation: u64 },
}

#[derive(Clone, Copy, Debug)]
struct Request {
    id: u64,
    kind: u8,
    arrived_ns: u64,
}

/// The balancer's view of one host.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Slot {
    Free,
    Down,
    Warming {
        gen: u64,
        since_ns: u64,
        sent_ns: u64,
    },
    Available {
        gen: u64,
        idle_since_ns: u64,
        served: u64,
    },
}

#[derive(Clone, Copy)]
struct HostView {
    slot: Slot,
    boot: u64,
    last_heard_ns: u64,
    busy: Option<(Request, u64)>,
}

/// An instance, as it runs on its host.
#[derive(Clone, Copy)]
struct Instance {
    gen: u64,
    /// Operations still to warm, and those warmed.
    plan: u64,
    warmed: u64,
    warm: bool,
}

#[derive(Clone, Copy)]
struct Host {
    /// Durable: bumped at each restart.
    boot: u64,
    instance: Option<Instance>,
    usage: [u64; KINDS_MAX as usize],
    slow: u64,
}

pub struct WarmPool {
    p: Params,
    views: Vec<HostView>,
    hosts: Vec<Host>,
    queue: VecDeque<Request>,
    next_gen: u64,
    next_req: u64,
    extra: u64,
    bursting: bool,
    rotation: u64,
    profile: u64,
    /// The metrics store: (time reported, kind, count).
    reports: VecDeque<(u64, u8, u64)>,
    checks: Checks,
    fault_generation: u64,
    cold_start_ms: Vec<f64>,
    latency_ms: Vec<f64>,
    wasted: u64,
    served: u64,
    misses: u64,
    coverage_crash_warming: u64,
    coverage_abandoned: u64,
    coverage_scaled_out: u64,
    coverage_miss: u64,
    coverage_below_target: u64,
    coverage_recover_checked: u64,
}

type K = Kernel<Msg, Timer>;

fn ms(value: u64) -> u64 {
    value * NS_PER_MS
}

fn exponential_ns(k: &mut K, mean_ns: u64) -> u64 {
    let u: f64 = k.rng.random();
    ((-(mean_ns as f64) * (1.0 - u).ln()) as u64).min(mean_ns.saturating_mul(20)) + 1
}

impl WarmPool {
    pub fn new(p: Params) -> WarmPool {
        let hosts = p.hosts as usize;
        WarmPool {
            views: vec![
                HostView {
                    slot: Slot::Free,
                    boot: 0,
                    last_heard_ns: 0,
                    busy: None,
                };
                hosts
            ],
            hosts: vec![
                Host {
                    boot: 0,
                    instance: None,
                    usage: [0; KINDS_MAX as usize],
                    slow: 1,
                };
                hosts
            ],
            p,
            queue: VecDeque::new(),
            next_gen: 1,
            next_req: 1,
            extra: 0,
            bursting: false,
            rotation: 0,
            profile: 0,
            reports: VecDeque::new(),
            checks: Checks::new(&CHECKERS),
            fault_generation: 0,
            cold_start_ms: Vec::new(),
            latency_ms: Vec::new(),
            wasted: 0,
            served: 0,
            misses: 0,
            coverage_crash_warming: 0,
            coverage_abandoned: 0,
            coverage_scaled_out: 0,
            coverage_miss: 0,
            coverage_below_target: 0,
            coverage_recover_checked: 0,
        }
    }

    fn node(host: usize) -> NodeId {
        FIRST_HOST + host
    }

    // --- load ---

    /// A Zipf-popular operation: rank r has weight 1/(r+1); the ranking rotates at each popularity shift.
    fn draw_kind(&self, k: &mut K) -> u8 {
        let n = self.p.kinds;
        let total: f64 = (1..=n).map(|r| 1.0 / r as f64).sum();
        let mut u: f64 = k.rng.random::<f64>() * total;
        let mut rank = n - 1;
        for r in 0..n {
            u -= 1.0 / (r + 1) as f64;
            if u <= 0.0 {
                rank = r;
                break;
            }
        }
        ((rank + self.rotation) % n) as u8
    }

    fn arrival(&mut self, k: &mut K) {
        let now = k.now_ns();
        let kind = self.draw_kind(k);
        if (self.queue.len() as u64) < self.p.queue_max {
            self.queue.push_back(Request {
                id: self.next_req,
                kind,
                arrived_ns: now,
            });
            self.next_req += 1;
        }
        self.dispatch(k);
        let rate = self.p.rate_per_s
            * if self.bursting {
                self.p.burst_factor
            } else {
                1
            };
        let gap = exponential_ns(k, 1_000_000_000 / rate);
        k.set_timer(BALANCER, gap, Timer::Arrival);
    }

    // --- balancer ---

    fn dispatch(&mut self, k: &mut K) {
        let now = k.now_ns();
        for host in 0..self.views.len() {
            let view = &mut self.views[host];
            let Slot::Available { gen, .. } = view.slot else {
                continue;
            };
            if view.busy.is_some() {
                continue;
            }
            let Some(request) = self.queue.pop_front() else {
                return;
            };
            view.busy = Some((request, now));
            k.send(
                BALANCER,
                Self::node(host),
                Msg::Serve {
                    gen,
                    req: request.id,
                    kind: request.kind,
                },
            );
        }
    }

    fn available_count(&self) -> u64 {
        self.views
            .iter()
            .filter(|v| matches!(v.slot, Slot::Available { .. }))
            .count() as u64
    }

    fn warming_count(&self) -> u64 {
        self.views
            .iter()
            .filter(|v| matches!(v.slot, Slot::Warming { .. }))
            .count() as u64
    }

    /// Frees a slot whose instance is gone or dropped: its request goes back to the queue; an instance that was warm
    /// and never served counts as wasted.
    fn release(&mut self, host: usize, to: Slot) {
        let view = &mut self.views[host];
        if let Slot::Available { served: 0, .. } = view.slot {
            self.wasted += 1;
        }
        if let Some((request, _)) = view.busy.take() {
            self.queue.push_front(request);
        }
        view.slot = to;
    }

    fn create(&mut self, k: &mut K, host: usize) {
        let now = k.now_ns();
        let gen = self.next_gen;
        self.next_gen += 1;
        let view = &mut self.views[host];
        view.slot = match self.p.variant {
            Variant::Correct => Slot::Warming {
                gen,
                since_ns: now,
                sent_ns: now,
            },
            Variant::AvailableBeforeWarm => Slot::Available {
                gen,
                idle_since_ns: now,
                served: 0,
            },
        };
        let (boot, ops) = (view.boot, self.profile);
        k.log(BALANCER, || {
            format!(
                "creates instance {gen} on host-{} warming {ops:#x}",
                host + 1
            )
        });
        k.send(BALANCER, Self::node(host), Msg::Create { gen, boot, ops });
    }

    fn tick(&mut self, k: &mut K) {
        let now = k.now_ns();
        for host in 0..self.views.len() {
            self.tick_host(k, host, now);
        }
        self.scale(k, now);
        self.dispatch(k);
        k.set_timer(BALANCER, ms(50), Timer::Tick);
    }

    fn tick_host(&mut self, k: &mut K, host: usize, now: u64) {
        let view = self.views[host];
        if view.slot != Slot::Down && now > view.last_heard_ns + ms(self.p.host_timeout_ms) {
            if let Slot::Warming { .. } = view.slot {
                self.coverage_abandoned += 1;
            }
            self.release(host, Slot::Down);
            return;
        }
        if let Some((request, sent_ns)) = view.busy {
            if now > sent_ns + ms(self.p.serve_timeout_ms) {
                self.views[host].busy = None;
                self.queue.push_front(request);
            }
        }
        if let Slot::Warming {
            gen,
            since_ns,
            sent_ns,
        } = view.slot
        {
            if now > since_ns + ms(self.p.warmup_timeout_ms) {
                self.coverage_abandoned += 1;
                k.send(BALANCER, Self::node(host), Msg::Terminate { gen });
                self.views[host].slot = Slot::Free;
            } else if now > sent_ns + ms(self.p.create_retry_ms) {
                let (boot, ops) = (view.boot, self.profile);
                k.send(BALANCER, Self::node(host), Msg::Create { gen, boot, ops });
                self.views[host].slot = Slot::Warming {
                    gen,
                    since_ns,
                    sent_ns: now,
                };
            }
        }
    }

    /// Scale out while the queue is long, in when an instance above the target stays idle; create up to the size.
    fn scale(&mut self, k: &mut K, now: u64) {
        let spare = self.p.hosts - self.p.target_size;
        let queued = self.queue.len() as u64;
        if queued > self.p.scale_out_queue * (self.warming_count() + 1) && self.extra < spare {
            self.extra += 1;
            self.coverage_scaled_out += 1;
        }
        let size = self.available_count() + self.warming_count();
        if self.available_count() < self.p.target_size {
            self.coverage_below_target += 1;
        }
        if size > self.p.target_size && queued == 0 {
            let idle = (0..self.views.len()).find(|&h| {
                let v = &self.views[h];
                v.busy.is_none()
                    && matches!(v.slot, Slot::Available { idle_since_ns, .. }
                        if now > idle_since_ns + ms(self.p.scale_in_idle_ms))
            });
            if let Some(host) = idle {
                if let Slot::Available { gen, .. } = self.views[host].slot {
                    k.send(BALANCER, Self::node(host), Msg::Terminate { gen });
                }
                self.release(host, Slot::Free);
                self.extra = self.extra.saturating_sub(1);
            }
        }
        let mut size = self.available_count() + self.warming_count();
        let wanted = self.p.target_size + self.extra;
        for host in 0..self.views.len() {
            if size >= wanted {
                break;
            }
            if self.views[host].slot == Slot::Free {
                self.create(k, host);
                size += 1;
            }
        }
    }

    fn on_heartbeat(&mut self, k: &mut K, host: usize, gen: u64, boot: u64, warm: bool) {
        let now = k.now_ns();
        let view = &mut self.views[host];
        view.last_heard_ns = now;
        view.boot = boot;
        match view.slot {
            Slot::Down => self.release(host, Slot::Free),
            Slot::Warming {
                gen: g, since_ns, ..
            } if g == gen && warm => {
                self.cold_start_ms.push((now - since_ns) as f64 / 1e6);
                view.slot = Slot::Available {
                    gen,
                    idle_since_ns: now,
                    served: 0,
                };
                k.log(BALANCER, || {
                    format!("instance {gen} on host-{} is available", host + 1)
                });
            }
            Slot::Available { gen: g, .. } if g != gen => match self.p.variant {
                Variant::Correct => self.release(host, Slot::Free),
                // The broken balancer believes in its instance and only repeats the Create.
                Variant::AvailableBeforeWarm => {
                    let ops = self.profile;
                    k.send(
                        BALANCER,
                        Self::node(host),
                        Msg::Create { gen: g, boot, ops },
                    );
                }
            },
            Slot::Available { gen: g, .. }
                if g == gen && !warm && self.p.variant == Variant::Correct =>
            {
                // The instance was recreated from a duplicate Create: it must warm again.
                self.release(
                    host,
                    Slot::Warming {
                        gen,
                        since_ns: now,
                        sent_ns: now,
                    },
                );
            }
            _ => {}
        }
        let expected = match self.views[host].slot {
            Slot::Warming { gen, .. } | Slot::Available { gen, .. } => gen,
            Slot::Free | Slot::Down => 0,
        };
        if gen != 0 && gen != expected {
            k.send(BALANCER, Self::node(host), Msg::Terminate { gen });
        }
        self.dispatch(k);
    }

    fn on_done(&mut self, k: &mut K, host: usize, gen: u64, req: u64) {
        let now = k.now_ns();
        let view = &mut self.views[host];
        let Slot::Available { gen: g, served, .. } = view.slot else {
            return;
        };
        if g != gen || view.busy.map(|(r, _)| r.id) != Some(req) {
            return;
        }
        if let Some((request, _)) = view.busy.take() {
            self.latency_ms
                .push((now - request.arrived_ns) as f64 / 1e6);
        }
        view.slot = Slot::Available {
            gen,
            idle_since_ns: now,
            served: served + 1,
        };
        self.dispatch(k);
    }

    // --- hosts ---

    fn on_create(&mut self, k: &mut K, host: usize, gen: u64, boot: u64, ops: u64) {
        let h = &mut self.hosts[host];
        if boot != h.boot || h.instance.is_some_and(|i| i.gen >= gen) {
            return;
        }
        let known = if self.p.kinds >= KINDS_MAX {
            u64::MAX
        } else {
            (1u64 << self.p.kinds) - 1
        };
        h.instance = Some(Instance {
            gen,
            plan: ops & known,
            warmed: 0,
            warm: false,
        });
        let delay = ms(self.p.boot_ms) * h.slow;
        k.set_timer(Self::node(host), delay, Timer::WarmStep { gen });
    }

    /// One warmup step finished (the boot, then each planned operation in order).
    fn warm_step(&mut self, k: &mut K, host: usize, gen: u64) {
        let h = &mut self.hosts[host];
        let Some(instance) = h.instance.as_mut().filter(|i| i.gen == gen) else {
            return;
        };
        if instance.plan == 0 {
            instance.warm = true;
            let boot = h.boot;
            k.send(
                Self::node(host),
                BALANCER,
                Msg::Heartbeat {
                    gen,
                    boot,
                    warm: true,
                },
            );
            return;
        }
        let op = instance.plan.trailing_zeros();
        instance.plan &= !(1u64 << op);
        instance.warmed |= 1u64 << op;
        let delay = ms(self.p.warm_op_ms) * h.slow;
        k.set_timer(Self::node(host), delay, Timer::WarmStep { gen });
    }

    fn on_serve(&mut self, k: &mut K, host: usize, gen: u64, req: u64, kind: u8) {
        let now = k.now_ns();
        let h = &mut self.hosts[host];
        let Some(instance) = h.instance.as_mut().filter(|i| i.gen == gen) else {
            return;
        };
        if !instance.warm {
            let left = instance.plan.count_ones();
            self.checks.fail(WARM, now, || {
                format!(
                    "request {req} served by instance {gen} on host-{} before its warmup finished ({left} operations left)",
                    host + 1
                )
            });
        }
        let bit = 1u64 << kind;
        let cold = instance.warmed & bit == 0;
        instance.warmed |= bit;
        h.usage[kind as usize] += 1;
        self.served += 1;
        if cold {
            self.misses += 1;
            self.coverage_miss += 1;
        }
        let base = if cold {
            self.p.serve_cold_ms
        } else {
            self.p.serve_ms
        };
        k.hash_value(req << 8 | u64::from(kind));
        k.set_timer(
            Self::node(host),
            ms(base) * h.slow,
            Timer::ServeDone { gen, req },
        );
    }

    fn host_heartbeat(&mut self, k: &mut K, host: usize) {
        let h = &self.hosts[host];
        let (gen, warm) = h.instance.map_or((0, false), |i| (i.gen, i.warm));
        let boot = h.boot;
        k.send(
            Self::node(host),
            BALANCER,
            Msg::Heartbeat { gen, boot, warm },
        );
        k.set_timer(
            Self::node(host),
            ms(self.p.heartbeat_ms),
            Timer::HostHeartbeat,
        );
    }

    fn report(&mut self, k: &mut K, host: usize) {
        let usage = std::mem::replace(&mut self.hosts[host].usage, [0; KINDS_MAX as usize]);
        for (kind, &count) in usage.iter().enumerate().filter(|(_, c)| **c > 0) {
            k.send(
                Self::node(host),
                METRICS,
                Msg::Usage {
                    kind: kind as u8,
                    count,
                },
            );
        }
        k.set_timer(
            Self::node(host),
            ms(self.p.metrics_report_ms),
            Timer::Report,
        );
    }

    // --- metrics store ---

    /// The `warm_ops_max` most used operations in the visible window (reports older than the lag), ties to the lower
    /// operation.
    fn top_ops(&mut self, now: u64) -> u64 {
        let oldest = now.saturating_sub(ms(self.p.metrics_lag_ms + self.p.metrics_window_ms));
        while self.reports.front().is_some_and(|r| r.0 < oldest) {
            self.reports.pop_front();
        }
        let visible_until = now.saturating_sub(ms(self.p.metrics_lag_ms));
        let mut counts = [0u64; KINDS_MAX as usize];
        for &(at, kind, count) in &self.reports {
            if at <= visible_until {
                counts[kind as usize] += count;
            }
        }
        let mut order: Vec<usize> = (0..self.p.kinds as usize)
            .filter(|&i| counts[i] > 0)
            .collect();
        order.sort_by_key(|&i| (std::cmp::Reverse(counts[i]), i));
        order
            .into_iter()
            .take(self.p.warm_ops_max as usize)
            .fold(0, |set, i| set | 1u64 << i)
    }

    // --- checkers ---

    fn check_recovered(&mut self, k: &K, when: &str) {
        let warm = (0..self.views.len())
            .filter(|&h| match self.views[h].slot {
                Slot::Available { gen, .. } => self.hosts[h]
                    .instance
                    .is_some_and(|i| i.gen == gen && i.warm && k.is_up(Self::node(h))),
                _ => false,
            })
            .count() as u64;
        if warm < self.p.target_size {
            let target = self.p.target_size;
            self.checks.fail(RECOVERS, k.now_ns(), || {
                format!("{when}: {warm} warm instances available, below the target of {target}")
            });
        }
    }
}

impl Model for WarmPool {
    type Msg = Msg;
    type Timer = Timer;

    fn start(&mut self, k: &mut K) {
        let now = k.now_ns();
        for host in 0..self.views.len() {
            self.views[host].last_heard_ns = now;
            let node = Self::node(host);
            k.set_timer(node, ms(host as u64 * 7 % 50), Timer::HostHeartbeat);
            k.set_timer(node, ms(self.p.metrics_report_ms), Timer::Report);
        }
        k.set_timer(BALANCER, ms(1), Timer::Arrival);
        k.set_timer(BALANCER, 0, Timer::Tick);
        k.set_timer(BALANCER, 0, Timer::Refresh);
        let burst = exponential_ns(k, ms(self.p.burst_every_ms));
        k.set_timer(BALANCER, burst, Timer::Burst { start: true });
        let shift = exponential_ns(k, ms(self.p.popularity_shift_ms));
        k.set_timer(BALANCER, shift, Timer::Shift);
    }

    fn on_message(&mut self, k: &mut K, to: NodeId, from: NodeId, msg: Msg) {
        match (to, msg) {
            (BALANCER, Msg::Heartbeat { gen, boot, warm }) if from >= FIRST_HOST => {
                self.on_heartbeat(k, from - FIRST_HOST, gen, boot, warm)
            }
            (BALANCER, Msg::Done { gen, req }) if from >= FIRST_HOST => {
                self.on_done(k, from - FIRST_HOST, gen, req)
            }
            (BALANCER, Msg::ProfileAnswer { top }) => self.profile = top,
            (METRICS, Msg::Usage { kind, count }) => {
                self.reports.push_back((k.now_ns(), kind, count))
            }
            (METRICS, Msg::ProfileQuery) => {
                let top = self.top_ops(k.now_ns());
                k.send(METRICS, from, Msg::ProfileAnswer { top });
            }
            (host, Msg::Create { gen, boot, ops }) if host >= FIRST_HOST => {
                self.on_create(k, host - FIRST_HOST, gen, boot, ops)
            }
            (host, Msg::Terminate { gen }) if host >= FIRST_HOST => {
                let h = &mut self.hosts[host - FIRST_HOST];
                if h.instance.is_some_and(|i| i.gen == gen) {
                    h.instance = None;
                }
            }
            (host, Msg::Serve { gen, req, kind }) if host >= FIRST_HOST => {
                self.on_serve(k, host - FIRST_HOST, gen, req, kind)
            }
            _ => {}
        }
    }

    fn on_timer(&mut self, k: &mut K, node: NodeId, timer: Timer) {
        match timer {
            Timer::Arrival => self.arrival(k),
            Timer::Burst { start } => {
                self.bursting = start;
                let next = if start {
                    ms(self.p.burst_ms)
                } else {
                    exponential_ns(k, ms(self.p.burst_every_ms))
                };
                k.set_timer(BALANCER, next, Timer::Burst { start: !start });
            }
            Timer::Shift => {
                self.rotation =
                    (self.rotation + k.rng.random_range(1..self.p.kinds.max(2))) % self.p.kinds;
                let next = exponential_ns(k, ms(self.p.popularity_shift_ms));
                k.set_timer(BALANCER, next, Timer::Shift);
            }
            Timer::Tick => self.tick(k),
            Timer::Refresh => {
                k.send(BALANCER, METRICS, Msg::ProfileQuery);
                k.set_timer(BALANCER, ms(self.p.metrics_refresh_ms), Timer::Refresh);
            }
            Timer::HostHeartbeat => self.host_heartbeat(k, node - FIRST_HOST),
            Timer::WarmStep { gen } => self.warm_step(k, node - FIRST_HOST, gen),
            Timer::ServeDone { gen, req } => {
                let host = node - FIRST_HOST;
                if self.hosts[host].instance.is_some_and(|i| i.gen == gen) {
                    k.send(node, BALANCER, Msg::Done { gen, req });
                }
            }
            Timer::Report => self.report(k, node - FIRST_HOST),
            Timer::RecoverCheck { generation } => {
                if generation == self.fault_generation {
                    self.coverage_recover_checked += 1;
                    self.check_recovered(k, "after the faults ended");
                }
            }
        }
    }

    fn on_crash(&mut self, _k: &mut K, node: NodeId) {
        match node {
            METRICS => self.reports.clear(),
            BALANCER => {}
            host => {
                let h = &mut self.hosts[host - FIRST_HOST];
                if h.instance.is_some_and(|i| !i.warm) {
                    self.coverage_crash_warming += 1;
                }
                h.instance = None;
                h.usage = [0; KINDS_MAX as usize];
            }
        }
    }

    fn on_restart(&mut self, k: &mut K, node: NodeId) {
        match node {
            METRICS => {}
            BALANCER => k.set_timer(BALANCER, 0, Timer::Tick),
            host => {
                self.hosts[host - FIRST_HOST].boot += 1;
                k.set_timer(host, 0, Timer::HostHeartbeat);
                k.set_timer(host, ms(self.p.metrics_report_ms), Timer::Report);
            }
        }
    }

    fn on_fault(&mut self, k: &mut K, fault: &Fault, starting: bool) {
        if let Fault::Slow { node, factor } = *fault {
            if node >= FIRST_HOST {
                self.hosts[node - FIRST_HOST].slow = if starting { u64::from(factor) } else { 1 };
            }
        }
        self.fault_generation += 1;
        if k.network_healed() && (0..k.node_count()).all(|node| k.is_up(node)) {
            let generation = self.fault_generation;
            k.set_timer(
                BALANCER,
                ms(self.p.recover_deadline_ms),
                Timer::RecoverCheck { generation },
            );
        }
    }

    fn on_check(&mut self, k: &mut K) {
        self.check_recovered(k, "check step");
    }

    fn finish(&mut self, _k: &mut K) -> ModelReport {
        let checks = std::mem::replace(&mut self.checks, Checks::new(&CHECKERS));
        let miss_ratio = if self.served == 0 {
            Vec::new()
        } else {
            vec![self.misses as f64 / self.served as f64]
        };
        ModelReport {
            checks: checks.into_results(),
            metrics: vec![
                ("cold_start_ms", std::mem::take(&mut self.cold_start_ms)),
                ("request_latency_ms", std::mem::take(&mut self.latency_ms)),
                ("warm_instances_wasted", vec![self.wasted as f64]),
                ("warmup_miss_ratio", miss_ratio),
            ],
            coverage: vec![
                ("crash during warmup", self.coverage_crash_warming),
                (
                    "warmup abandoned (slow or lost host)",
                    self.coverage_abandoned,
                ),
                ("burst scaled the pool out", self.coverage_scaled_out),
                (
                    "request used an operation the warmup missed",
                    self.coverage_miss,
                ),
                ("pool below its target size", self.coverage_below_target),
                (
                    "recovery deadline after a fault checked",
                    self.coverage_recover_checked,
                ),
            ],
        }
    }
}
