//! Crash-consistency search (`tandem crashtest`, issue 14 part 5): which states a crash could leave a program's
//! volume in, and whether the program's recovery accepts each of them.
//!
//! Several volumes crash together: a state is one state of each volume's own list (`PointStates`).
//!
//! The workload runs once (guest.rs) with an observer that keeps every completed operation on its volumes and how
//! much the program had printed when it completed (its acknowledgements: "committed 7"). Replaying those
//! operations through the disk model (`tandem_emulator::storage::Disk`) gives, at any point of the run, the
//! durable image and the pending operations; states.rs turns them into the crash states the persistence model
//! allows. Each state is handed to a `Checker` with what the program had acknowledged by then; a state the
//! checker rejects is a vulnerability, reported once per (kind of persistence point, checker summary).
//!
//! Points (`points`): just before and just after each persistence point (fsync, fdatasync, fsync of a
//! directory, sync_file_range, sync or syncfs returning, a write through an O_SYNC/O_DSYNC/O_DIRECT descriptor),
//! the end of the run, and seeded points between persistence points. A crash "before" a sync is one during the
//! syscall: everything the program printed before calling it is acknowledged.
//!
//! Key decisions: the search is a function of the recording, the seed and the bounds; checks run on `jobs`
//! threads but are collected in point and state order, so the report is identical at any `jobs`. A state is
//! checked once per distinct (volume content, acknowledged output): its 128-bit digest keys a cache.
//!
//! It must not: do IO (the checker and the workload run guests through the `Host` interface of guest.rs).

pub mod guest;
pub mod states;

use std::collections::BTreeMap;
use tandem_emulator::storage::{Disk, IoOp, TreeNode, VolumeImage};

/// Most points a search visits: a limit on its work (a run syncing more often is cut, with a note).
pub const POINTS_MAX: usize = 100_000;
/// Most crash states per point.
pub const STATES_PER_POINT_MAX: usize = 1 << 16;

/// One completed operation on a volume, and how many bytes of stdout the program had written by then.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Which volume (the order of the workload's volumes).
    pub volume: u32,
    pub icount: u64,
    pub tid: i32,
    pub op: IoOp,
    pub stdout_bytes: usize,
}

/// What the one run of the workload leaves for the search.
#[derive(Clone, Debug, Default)]
pub struct Recording {
    /// Each volume's content at the start, in the order of the workload's volumes.
    pub bases: Vec<VolumeImage>,
    /// Operations that changed content or synced, in completion order (marks left out).
    pub steps: Vec<Step>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The workload's exit status (None: it did not finish within its instruction budget).
    pub exit_status: Option<i32>,
    pub icount: u64,
}

/// Where a crash is placed relative to a persistence point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PointKind {
    /// During the persistence syscall: everything before it completed, the sync not yet.
    Before(&'static str),
    /// Right after the persistence syscall returned, before the next operation.
    After(&'static str),
    /// After the program's last operation (it may have exited).
    End,
    /// A seeded point between persistence points.
    Between,
}

impl PointKind {
    fn rank(&self) -> u8 {
        match self {
            PointKind::Before(_) => 0,
            PointKind::After(_) => 1,
            PointKind::End => 2,
            PointKind::Between => 3,
        }
    }

    /// "before fsync", "after fdatasync", "end", "between".
    pub fn label(&self) -> String {
        match self {
            PointKind::Before(s) => format!("before {s}"),
            PointKind::After(s) => format!("after {s}"),
            PointKind::End => "end".into(),
            PointKind::Between => "between".into(),
        }
    }
}

/// A place in the run where the search crashes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Point {
    /// The crash comes after this many operations completed.
    pub ops_done: usize,
    pub kind: PointKind,
    /// The stdout bytes the program had written by then: what it acknowledged.
    pub acked_bytes: usize,
    /// The icount of the next operation's syscall (or of the run's end).
    pub icount: u64,
}

/// The persistence syscall an operation is, if it is one.
pub fn persistence_syscall(op: &IoOp) -> Option<&'static str> {
    Some(match op {
        IoOp::SyncFile {
            data_only: false, ..
        } => "fsync",
        IoOp::SyncFile {
            data_only: true, ..
        } => "fdatasync",
        IoOp::SyncDir { .. } => "fsync(dir)",
        IoOp::SyncRange { .. } => "sync_file_range",
        IoOp::SyncAll => "sync",
        IoOp::Write { durable: true, .. } => "O_SYNC write",
        _ => return None,
    })
}

/// The points of a recording, in run order: before and after each persistence point, the end, and
/// `between_per_interval` seeded points (stream "crashtest.points") strictly inside each stretch between two
/// of those. At most `POINTS_MAX`.
pub fn points(recording: &Recording, seed: u64, between_per_interval: usize) -> Vec<Point> {
    use rand::Rng;
    let n = recording.steps.len();
    let at = |ops_done: usize, kind: PointKind| Point {
        ops_done,
        kind,
        acked_bytes: recording
            .steps
            .get(ops_done)
            .map_or(recording.stdout.len(), |s| s.stdout_bytes),
        icount: recording
            .steps
            .get(ops_done)
            .map_or(recording.icount, |s| s.icount),
    };
    let mut list = Vec::new();
    for (k, step) in recording.steps.iter().enumerate() {
        if let Some(syscall) = persistence_syscall(&step.op) {
            list.push(at(k, PointKind::Before(syscall)));
            list.push(at(k + 1, PointKind::After(syscall)));
        }
    }
    list.push(at(n, PointKind::End));
    list.sort_by_key(|p| (p.ops_done, p.kind.rank()));
    list.dedup_by_key(|p| p.ops_done);
    let mut rng = tandem_emulator::cpu::named_stream(seed, "crashtest.points");
    let mut between = Vec::new();
    let mut previous = 0;
    for p in &list {
        if p.ops_done > previous + 1 {
            let mut inside: Vec<usize> = (0..between_per_interval)
                .map(|_| rng.random_range(previous + 1..p.ops_done))
                .collect();
            inside.sort_unstable();
            inside.dedup();
            between.extend(inside.into_iter().map(|k| at(k, PointKind::Between)));
        }
        previous = p.ops_done;
    }
    list.extend(between);
    list.sort_by_key(|p| (p.ops_done, p.kind.rank()));
    list.dedup_by_key(|p| p.ops_done);
    list.truncate(POINTS_MAX);
    list
}

/// What a checker says of one crash state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The recovery accepted the state.
    pub consistent: bool,
    /// What identifies the problem (the checker's exit status and stdout): vulnerabilities are deduplicated by it.
    pub summary: String,
    /// More for the reader (the checker's stderr), not part of the identity.
    pub detail: String,
}

/// Recovers a crash state and judges it: given the volumes a crash left (in the workload's order) and what the
/// program had acknowledged.
pub trait Checker: Sync {
    fn check(&self, images: &[VolumeImage], acked: &[u8]) -> Verdict;
}

/// The crash states of one point over every volume. A crash strikes all volumes at once, each losing what its
/// own persistence rules allow, so a state is one state of each volume's list: every combination when there are
/// at most `states_per_point` (with one volume, its list), else that many combinations drawn from the point's
/// stream after the lists.
pub struct PointStates {
    lists: Vec<Vec<states::CrashState>>,
    combos: Vec<Vec<usize>>,
}

impl PointStates {
    pub fn of(disks: &[Disk], states_per_point: usize, seed: u64, point: usize) -> PointStates {
        use rand::Rng;
        let mut rng = states::point_stream(seed, point);
        let lists: Vec<Vec<states::CrashState>> = disks
            .iter()
            .map(|d| states::enumerate(d.pending(), states_per_point, &mut rng))
            .collect();
        let total = lists
            .iter()
            .try_fold(1usize, |a, l| a.checked_mul(l.len()))
            .unwrap_or(usize::MAX);
        let combos = if total <= states_per_point {
            (0..total)
                .map(|mut i| {
                    let mut picks = vec![0; lists.len()];
                    for (v, l) in lists.iter().enumerate().rev() {
                        picks[v] = i % l.len();
                        i /= l.len();
                    }
                    picks
                })
                .collect()
        } else {
            (0..states_per_point)
                .map(|_| lists.iter().map(|l| rng.random_range(0..l.len())).collect())
                .collect()
        };
        PointStates { lists, combos }
    }

    pub fn len(&self) -> usize {
        self.combos.len()
    }

    pub fn is_empty(&self) -> bool {
        self.combos.is_empty()
    }

    /// The volumes crash state `s` leaves.
    pub fn images(&self, disks: &[Disk], s: usize) -> Vec<VolumeImage> {
        self.combos[s]
            .iter()
            .enumerate()
            .map(|(v, &k)| self.lists[v][k].image(&disks[v]))
            .collect()
    }

    /// What crash state `s` loses; with several volumes, volume by volume, leaving out those with nothing
    /// pending.
    pub fn describe(&self, disks: &[Disk], s: usize) -> String {
        let parts: Vec<(usize, String)> = self.combos[s]
            .iter()
            .enumerate()
            .map(|(v, &k)| {
                let pending = disks[v].pending();
                (
                    v,
                    self.lists[v][k].describe(pending, tandem_replay::cdp::describe_op),
                )
            })
            .collect();
        if parts.len() == 1 {
            return parts.into_iter().map(|(_, d)| d).next().unwrap_or_default();
        }
        let busy: Vec<String> = parts
            .iter()
            .filter(|(v, _)| !disks[*v].pending().is_empty())
            .map(|(v, d)| format!("volume {v}: {d}"))
            .collect();
        if busy.is_empty() {
            return "volume 0: ".to_string() + &parts[0].1;
        }
        busy.join("; ")
    }
}

/// The bounds and the seed of a search.
#[derive(Clone, Debug)]
pub struct SearchSpec {
    pub seed: u64,
    pub states_per_point: usize,
    pub between_per_interval: usize,
    pub jobs: usize,
    /// Check only this (point, state): a reproduction.
    pub only: Option<(usize, usize)>,
}

/// One distinct vulnerability: the first state (in point and state order) that showed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vulnerability {
    pub point: usize,
    pub state: usize,
    pub point_label: String,
    pub icount: u64,
    pub summary: String,
    pub detail: String,
    /// What the crash lost (CrashState::describe).
    pub lost: String,
    /// How many checked states showed it (a state counted once per point it appears at).
    pub occurrences: usize,
}

/// The result of a search.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub points: usize,
    /// Crash states enumerated over all points.
    pub states_tried: usize,
    /// Distinct (volume, acknowledged output) pairs checked.
    pub checks_run: usize,
    pub inconsistent_states: usize,
    pub vulnerabilities: Vec<Vulnerability>,
    /// For `--only`: the state's description and verdict.
    pub only: Option<(String, Verdict)>,
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("--only {point}:{state}: the run has {points} points (0 to {last})", last = points.saturating_sub(1))]
    NoPoint {
        point: usize,
        state: usize,
        points: usize,
    },
    #[error("--only {point}:{state}: point {point} has {states} states (0 to {last})", last = states.saturating_sub(1))]
    NoState {
        point: usize,
        state: usize,
        states: usize,
    },
    #[error("--jobs {0}: give between 1 and 256 worker threads")]
    BadJobs(usize),
    #[error("--states-per-point {0}: give between 1 and {STATES_PER_POINT_MAX}")]
    BadStates(usize),
}

/// A 128-bit FNV-1a digest of the volumes' trees and an acknowledged output: the key of the check cache.
fn digest(images: &[VolumeImage], acked: &[u8]) -> u128 {
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013B;
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    let mut eat = |bytes: &[u8]| {
        for &b in (bytes.len() as u64).to_le_bytes().iter().chain(bytes) {
            h ^= b as u128;
            h = h.wrapping_mul(PRIME);
        }
    };
    for image in images {
        eat(&image.root_mode.to_le_bytes());
        for (path, node) in image.tree() {
            eat(&path);
            match node {
                TreeNode::File { bytes, mode } => {
                    eat(b"f");
                    eat(&mode.to_le_bytes());
                    eat(&bytes);
                }
                TreeNode::Dir { mode } => {
                    eat(b"d");
                    eat(&mode.to_le_bytes());
                }
                TreeNode::Symlink { target } => {
                    eat(b"l");
                    eat(&target);
                }
            }
        }
        eat(b"/");
    }
    eat(acked);
    h
}

/// One state to check: where it came from and which cached check answers it.
struct Checked {
    point: usize,
    state: usize,
    check: usize,
}

/// Runs `checker` on `items` over `jobs` threads; the verdicts come back in the items' order.
fn run_checks(
    checker: &dyn Checker,
    items: &[(Vec<VolumeImage>, Vec<u8>)],
    jobs: usize,
) -> Vec<Verdict> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let mut done: Vec<(usize, Verdict)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs.min(items.len()).max(1))
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((images, acked)) = items.get(i) else {
                            break;
                        };
                        mine.push((i, checker.check(images, acked)));
                    }
                    mine
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| match w.join() {
                Ok(mine) => mine,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    });
    done.sort_by_key(|(i, _)| *i);
    assert_eq!(done.len(), items.len(), "every check ran once");
    done.into_iter().map(|(_, v)| v).collect()
}

/// The disks of a recording's volumes at the start.
fn disks_of(recording: &Recording) -> Vec<Disk> {
    recording.bases.iter().cloned().map(Disk::new).collect()
}

/// The disks of a recording after its first `ops_done` operations, advanced from `disks` at `done`.
fn advance(disks: &mut [Disk], done: &mut usize, recording: &Recording, ops_done: usize) {
    assert!(*done <= ops_done, "points are visited in run order");
    for step in &recording.steps[*done..ops_done] {
        if let Some(disk) = disks.get_mut(step.volume as usize) {
            disk.completed(&step.op);
        }
    }
    *done = ops_done;
}

/// Searches the crash states of `recording`'s volume with `checker`.
pub fn search(
    recording: &Recording,
    spec: &SearchSpec,
    checker: &dyn Checker,
) -> Result<Report, SearchError> {
    if spec.jobs == 0 || spec.jobs > 256 {
        return Err(SearchError::BadJobs(spec.jobs));
    }
    if spec.states_per_point == 0 || spec.states_per_point > STATES_PER_POINT_MAX {
        return Err(SearchError::BadStates(spec.states_per_point));
    }
    let points = points(recording, spec.seed, spec.between_per_interval);
    if let Some((point, state)) = spec.only {
        return search_one(recording, spec, checker, &points, point, state);
    }
    let mut report = Report {
        points: points.len(),
        ..Report::default()
    };
    let mut disks = disks_of(recording);
    let mut done = 0;
    let mut cache: BTreeMap<u128, usize> = BTreeMap::new();
    let mut verdicts: Vec<Verdict> = Vec::new();
    let mut checked: Vec<Checked> = Vec::new();
    for (p, point) in points.iter().enumerate() {
        advance(&mut disks, &mut done, recording, point.ops_done);
        let acked = &recording.stdout[..point.acked_bytes];
        let list = PointStates::of(&disks, spec.states_per_point, spec.seed, p);
        let mut batch = Vec::new();
        for s in 0..list.len() {
            let images = list.images(&disks, s);
            let key = digest(&images, acked);
            let next = verdicts.len() + batch.len();
            let check = *cache.entry(key).or_insert_with(|| {
                batch.push((images, acked.to_vec()));
                next
            });
            checked.push(Checked {
                point: p,
                state: s,
                check,
            });
        }
        report.states_tried += list.len();
        verdicts.extend(run_checks(checker, &batch, spec.jobs));
    }
    report.checks_run = verdicts.len();
    collect_vulnerabilities(recording, spec, &points, &checked, &verdicts, &mut report);
    Ok(report)
}

/// Groups the inconsistent states by (point kind, summary), first occurrence first, and describes what each
/// first state lost (a second walk of the disk to those points).
fn collect_vulnerabilities(
    recording: &Recording,
    spec: &SearchSpec,
    points: &[Point],
    checked: &[Checked],
    verdicts: &[Verdict],
    report: &mut Report,
) {
    let mut by_key: BTreeMap<(String, String), usize> = BTreeMap::new();
    for c in checked {
        let v = &verdicts[c.check];
        if v.consistent {
            continue;
        }
        report.inconsistent_states += 1;
        let label = points[c.point].kind.label();
        let key = (label.clone(), v.summary.clone());
        if let Some(&i) = by_key.get(&key) {
            report.vulnerabilities[i].occurrences += 1;
            continue;
        }
        by_key.insert(key, report.vulnerabilities.len());
        report.vulnerabilities.push(Vulnerability {
            point: c.point,
            state: c.state,
            point_label: label,
            icount: points[c.point].icount,
            summary: v.summary.clone(),
            detail: v.detail.clone(),
            lost: String::new(),
            occurrences: 1,
        });
    }
    let mut disks = disks_of(recording);
    let mut done = 0;
    let mut order: Vec<usize> = (0..report.vulnerabilities.len()).collect();
    order.sort_by_key(|&i| report.vulnerabilities[i].point);
    for i in order {
        let p = report.vulnerabilities[i].point;
        advance(&mut disks, &mut done, recording, points[p].ops_done);
        let list = PointStates::of(&disks, spec.states_per_point, spec.seed, p);
        report.vulnerabilities[i].lost = list.describe(&disks, report.vulnerabilities[i].state);
    }
}

/// `--only POINT:STATE`: the one state checked, described.
fn search_one(
    recording: &Recording,
    spec: &SearchSpec,
    checker: &dyn Checker,
    points: &[Point],
    point: usize,
    state: usize,
) -> Result<Report, SearchError> {
    let Some(at) = points.get(point) else {
        return Err(SearchError::NoPoint {
            point,
            state,
            points: points.len(),
        });
    };
    let mut disks = disks_of(recording);
    let mut done = 0;
    advance(&mut disks, &mut done, recording, at.ops_done);
    let list = PointStates::of(&disks, spec.states_per_point, spec.seed, point);
    if state >= list.len() {
        return Err(SearchError::NoState {
            point,
            state,
            states: list.len(),
        });
    }
    let acked = &recording.stdout[..at.acked_bytes];
    let verdict = checker.check(&list.images(&disks, state), acked);
    let lost = list.describe(&disks, state);
    let mut report = Report {
        points: points.len(),
        states_tried: 1,
        checks_run: 1,
        ..Report::default()
    };
    if !verdict.consistent {
        report.inconsistent_states = 1;
        report.vulnerabilities.push(Vulnerability {
            point,
            state,
            point_label: at.kind.label(),
            icount: at.icount,
            summary: verdict.summary.clone(),
            detail: verdict.detail.clone(),
            lost: lost.clone(),
            occurrences: 1,
        });
    }
    report.only = Some((lost, verdict));
    Ok(report)
}
