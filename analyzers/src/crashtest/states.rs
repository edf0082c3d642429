//! The crash states the disk model allows at one point of a run: the durable image plus a subset of the pending
//! operations (`tandem_emulator::storage::Disk`), chosen under the persistence model below, enumerated in a fixed
//! order and bounded, with seeded sampling beyond the bound.
//!
//! The model (pessimistic, as ALICE's and CrashMonkey's for ext4-like file systems):
//! - name operations (create, link, mkdir, symlink, unlink, rmdir, rename, chmod) reach the disk in completion
//!   order through the metadata journal: a crash keeps a prefix of the pending ones;
//! - data operations (write, truncate) are written back in any order: a crash keeps any subset of the pending
//!   ones, whatever the order they completed in;
//! - a write that reaches the disk may be torn at sector granularity (`SECTOR_BYTES`, aligned to the file's
//!   offsets): some of its sectors are new, the others keep what was there.
//!
//! Everything durable (synced) survives every state. The states of a point are a function of its pending
//! operations, the bound and a seeded stream: the same inputs give the same numbered list, which is what makes
//! `tandem crashtest --only POINT:STATE` a reproduction.
//!
//! It must not: do IO, or depend on anything but its arguments.

use rand::Rng;
use rand_chacha::ChaCha20Rng;
use std::collections::BTreeSet;
use tandem_emulator::storage::{Disk, IoOp, VolumeImage};

/// The unit a write is torn at: a disk sector.
pub const SECTOR_BYTES: u64 = 512;

/// Most pending data operations for which every subset is enumerated (2^N states per name prefix).
const EXHAUSTIVE_DATA_OPS_MAX: usize = 12;

/// How often the random fill may draw a state it already has before it stops: a limit on the loop.
const RANDOM_ATTEMPTS_PER_STATE: usize = 8;

/// One crash state, as a choice over the pending operations of a disk (indices into `Disk::pending`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CrashState {
    /// The pending name operations that survive: the first `names_kept`, in completion order.
    pub names_kept: usize,
    /// The pending data operations lost (indices into the pending list).
    pub data_lost: BTreeSet<usize>,
    /// A surviving write of which only some sectors reached the disk.
    pub torn: Option<Torn>,
}

/// A torn write: which of its sectors reached the disk.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Torn {
    /// Index into the pending list (a `IoOp::Write`).
    pub op: usize,
    /// The sectors kept, numbered from the write's first sector; a proper, non-empty subset.
    pub sectors_kept: Vec<u32>,
    /// How many sectors the write covers.
    pub sector_count: u32,
}

fn is_data(op: &IoOp) -> bool {
    matches!(op, IoOp::Write { .. } | IoOp::Truncate { .. })
}

/// The sectors a write covers: (first sector number, count).
fn sectors_of(offset: u64, len_bytes: usize) -> (u64, u32) {
    if len_bytes == 0 {
        return (offset / SECTOR_BYTES, 0);
    }
    let first = offset / SECTOR_BYTES;
    let last = (offset + len_bytes as u64 - 1) / SECTOR_BYTES;
    (first, u32::try_from(last - first + 1).unwrap_or(u32::MAX))
}

/// The part of a write that lands in sector `k` of the write (numbered from its first sector).
fn sector_piece(offset: u64, data: &[u8], k: u32) -> (u64, &[u8]) {
    let (first, _) = sectors_of(offset, data.len());
    let sector_start = (first + k as u64) * SECTOR_BYTES;
    let start = sector_start.max(offset);
    let end = (sector_start + SECTOR_BYTES).min(offset + data.len() as u64);
    let (a, b) = ((start - offset) as usize, (end - offset) as usize);
    (start, &data[a..b])
}

impl CrashState {
    /// The state a crash leaves when the first `count` pending operations reached the disk, in completion order
    /// (what an ordered file system could leave).
    pub fn prefix(pending: &[IoOp], count: usize) -> CrashState {
        CrashState {
            names_kept: pending[..count].iter().filter(|op| !is_data(op)).count(),
            data_lost: (count..pending.len())
                .filter(|&i| is_data(&pending[i]))
                .collect(),
            torn: None,
        }
    }

    /// The volume this state leaves: the disk's durable image with the chosen pending operations applied in
    /// completion order (a rename whose source a crash lost changes nothing, as `VolumeImage::apply` says).
    pub fn image(&self, disk: &Disk) -> VolumeImage {
        let mut names_seen = 0;
        let torn = self.torn.as_ref();
        let mut image = disk.durable().clone();
        for (i, op) in disk.pending().iter().enumerate() {
            if !is_data(op) {
                names_seen += 1;
                if names_seen <= self.names_kept {
                    image.apply(op);
                }
                continue;
            }
            if self.data_lost.contains(&i) {
                continue;
            }
            match (torn, op) {
                (
                    Some(t),
                    IoOp::Write {
                        file,
                        offset,
                        data,
                        durable,
                    },
                ) if t.op == i => {
                    for &k in &t.sectors_kept {
                        let (at, piece) = sector_piece(*offset, data, k);
                        image.apply(&IoOp::Write {
                            file: *file,
                            offset: at,
                            data: piece.to_vec(),
                            durable: *durable,
                        });
                    }
                }
                _ => {
                    image.apply(op);
                }
            }
        }
        image
    }

    /// What the state loses, for the report: "kept 3 of 5 pending operations; lost: write file 7 offset 0 4096
    /// bytes, rename a.tmp -> a; torn: write file 7 offset 4096 1024 bytes (sectors 0 of 2 kept)".
    pub fn describe(&self, pending: &[IoOp], describe_op: impl Fn(&IoOp) -> String) -> String {
        let mut lost = Vec::new();
        let mut names_seen = 0;
        for (i, op) in pending.iter().enumerate() {
            let gone = if is_data(op) {
                self.data_lost.contains(&i)
            } else {
                names_seen += 1;
                names_seen > self.names_kept
            };
            if gone {
                lost.push(describe_op(op));
            }
        }
        let mut line = format!(
            "kept {} of {} pending operations",
            pending.len() - lost.len(),
            pending.len()
        );
        if !lost.is_empty() {
            line.push_str(&format!("; lost: {}", lost.join(", ")));
        }
        if let Some(t) = &self.torn {
            if let Some(op) = pending.get(t.op) {
                let kept: Vec<String> = t.sectors_kept.iter().map(|k| k.to_string()).collect();
                line.push_str(&format!(
                    "; torn: {} (sectors {} of {} kept)",
                    describe_op(op),
                    kept.join(","),
                    t.sector_count
                ));
            }
        }
        line
    }
}

/// The crash states of a disk whose pending operations are `pending`, at most `states_max` (at least 1), in a
/// fixed order: the systematic ones first (durable only, every completion-order prefix up to the page cache,
/// every name prefix with all or no data, all but one data operation, each multi-sector write torn in halves),
/// every combination when there are few, then seeded random ones (a name prefix, a random subset of the data,
/// sometimes a torn write). Beyond the bound the systematic states are sampled from `rng` (the first two always
/// kept). Distinct choices only.
pub fn enumerate(pending: &[IoOp], states_max: usize, rng: &mut ChaCha20Rng) -> Vec<CrashState> {
    assert!(states_max >= 1, "at least one state per point");
    let data: Vec<usize> = (0..pending.len())
        .filter(|&i| is_data(&pending[i]))
        .collect();
    let names_count = pending.len() - data.len();
    let mut list = Vec::new();
    let mut seen = BTreeSet::new();
    let mut push = |s: CrashState, list: &mut Vec<CrashState>| {
        if seen.insert(s.clone()) {
            list.push(s);
        }
    };
    push(CrashState::prefix(pending, 0), &mut list);
    push(CrashState::prefix(pending, pending.len()), &mut list);
    for count in 1..pending.len() {
        push(CrashState::prefix(pending, count), &mut list);
    }
    let all_data: BTreeSet<usize> = data.iter().copied().collect();
    for names_kept in 0..=names_count {
        for data_lost in [all_data.clone(), BTreeSet::new()] {
            push(
                CrashState {
                    names_kept,
                    data_lost,
                    torn: None,
                },
                &mut list,
            );
        }
    }
    for &d in &data {
        push(
            CrashState {
                names_kept: names_count,
                data_lost: BTreeSet::from([d]),
                torn: None,
            },
            &mut list,
        );
    }
    for (i, op) in pending.iter().enumerate() {
        for torn in halves(i, op) {
            let mut s = CrashState::prefix(pending, i + 1);
            s.torn = Some(torn);
            push(s, &mut list);
        }
    }
    if list.len() > states_max {
        return sample(list, states_max, rng);
    }
    if data.len() <= EXHAUSTIVE_DATA_OPS_MAX {
        'all: for names_kept in 0..=names_count {
            for mask in 0u32..(1 << data.len()) {
                if list.len() >= states_max {
                    break 'all;
                }
                let data_lost = (0..data.len())
                    .filter(|b| mask & (1 << b) != 0)
                    .map(|b| data[b])
                    .collect();
                push(
                    CrashState {
                        names_kept,
                        data_lost,
                        torn: None,
                    },
                    &mut list,
                );
            }
        }
    }
    let mut attempts = states_max * RANDOM_ATTEMPTS_PER_STATE;
    while list.len() < states_max && attempts > 0 {
        attempts -= 1;
        let s = random_state(pending, &data, names_count, rng);
        push(s, &mut list);
    }
    list
}

/// A write of two or more sectors torn in two ways: its first half of sectors kept, and its second half kept.
fn halves(i: usize, op: &IoOp) -> Vec<Torn> {
    let IoOp::Write { offset, data, .. } = op else {
        return Vec::new();
    };
    let (_, count) = sectors_of(*offset, data.len());
    if count < 2 {
        return Vec::new();
    }
    let half = count.div_ceil(2);
    [(0..half).collect(), (half..count).collect()]
        .into_iter()
        .map(|sectors_kept| Torn {
            op: i,
            sectors_kept,
            sector_count: count,
        })
        .collect()
}

/// `states_max` of `list`, the first two (durable only, page cache) always, the others drawn from `rng`, in
/// their order in `list`.
fn sample(list: Vec<CrashState>, states_max: usize, rng: &mut ChaCha20Rng) -> Vec<CrashState> {
    let keep_first = states_max.min(2);
    let mut rest: Vec<usize> = (keep_first..list.len()).collect();
    // A partial Fisher-Yates shuffle: the first `states_max - keep_first` slots are a uniform sample.
    let want = states_max - keep_first;
    for k in 0..want.min(rest.len()) {
        let j = rng.random_range(k..rest.len());
        rest.swap(k, j);
    }
    rest.truncate(want);
    rest.sort_unstable();
    let mut chosen: Vec<usize> = (0..keep_first).collect();
    chosen.extend(rest);
    let mut list: Vec<Option<CrashState>> = list.into_iter().map(Some).collect();
    chosen
        .into_iter()
        .filter_map(|i| list.get_mut(i).and_then(Option::take))
        .collect()
}

fn random_state(
    pending: &[IoOp],
    data: &[usize],
    names_count: usize,
    rng: &mut ChaCha20Rng,
) -> CrashState {
    let names_kept = rng.random_range(0..=names_count);
    let data_lost: BTreeSet<usize> = data
        .iter()
        .copied()
        .filter(|_| rng.random_bool(0.5))
        .collect();
    let mut torn = None;
    let writes: Vec<(usize, u32)> = data
        .iter()
        .filter(|i| !data_lost.contains(i))
        .filter_map(|&i| match &pending[i] {
            IoOp::Write { offset, data, .. } => Some((i, sectors_of(*offset, data.len()).1)),
            _ => None,
        })
        .filter(|&(_, count)| count >= 2)
        .collect();
    if !writes.is_empty() && rng.random_bool(0.25) {
        let (op, count) = writes[rng.random_range(0..writes.len())];
        let mut sectors_kept: Vec<u32> = (0..count).filter(|_| rng.random_bool(0.5)).collect();
        if sectors_kept.is_empty() {
            sectors_kept.push(rng.random_range(0..count));
        }
        if sectors_kept.len() < count as usize {
            torn = Some(Torn {
                op,
                sectors_kept,
                sector_count: count,
            });
        }
    }
    CrashState {
        names_kept,
        data_lost,
        torn,
    }
}

/// The seeded stream of the states of point `point`: its own, so that the states of one point never depend on
/// how many another drew.
pub fn point_stream(seed: u64, point: usize) -> ChaCha20Rng {
    tandem_emulator::cpu::named_stream(seed, &format!("crashtest.states/{point}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_emulator::storage::TreeNode;

    fn create(path: &str, file: u64) -> IoOp {
        IoOp::Create {
            path: path.as_bytes().to_vec(),
            file,
            mode: 0o644,
        }
    }

    fn write(file: u64, offset: u64, data: &[u8]) -> IoOp {
        IoOp::Write {
            file,
            offset,
            data: data.to_vec(),
            durable: false,
        }
    }

    fn content(im: &VolumeImage, path: &str) -> Option<Vec<u8>> {
        match im.tree().get(path.as_bytes()) {
            Some(TreeNode::File { bytes, .. }) => Some(bytes.to_vec()),
            _ => None,
        }
    }

    /// A disk with "doc" durable as 1024 'a's, and pending: O_TRUNC, a 1024-byte rewrite, a new name.
    fn disk() -> Disk {
        let mut base = VolumeImage::new(0o755);
        base.apply(&create("doc", 1));
        base.apply(&write(1, 0, &[b'a'; 1024]));
        let mut disk = Disk::new(base);
        disk.completed(&IoOp::Truncate {
            file: 1,
            size_bytes: 0,
        });
        disk.completed(&write(1, 0, &[b'b'; 1024]));
        disk.completed(&create("other", 2));
        disk
    }

    #[test]
    fn the_first_states_are_the_durable_image_and_the_page_cache() {
        let disk = disk();
        let list = enumerate(disk.pending(), 64, &mut point_stream(0, 0));
        assert_eq!(list[0].image(&disk).tree(), disk.durable().tree());
        assert_eq!(list[1].image(&disk).tree(), disk.cached().tree());
        // Every data subset with every name prefix (2 * 4), the two torn halves of the rewrite, and random ones.
        assert!(list.len() >= 10, "{list:?}");
        let docs: BTreeSet<Vec<u8>> = list
            .iter()
            .filter_map(|s| content(&s.image(&disk), "doc"))
            .collect();
        // The systematic states: old, truncated, new, and the rewrite torn after the truncate.
        let systematic = BTreeSet::from([
            vec![b'a'; 1024],
            vec![],
            vec![b'b'; 1024],
            vec![b'b'; 512],
            [vec![0; 512], vec![b'b'; 512]].concat(),
        ]);
        assert!(docs.is_superset(&systematic), "{docs:?}");
        // With the truncate lost, a torn rewrite mixes old and new sectors; nothing else is possible.
        let mut possible = systematic;
        possible.insert([vec![b'b'; 512], vec![b'a'; 512]].concat());
        possible.insert([vec![b'a'; 512], vec![b'b'; 512]].concat());
        assert!(docs.is_subset(&possible), "{docs:?}");
    }

    #[test]
    fn names_survive_in_order_and_synced_data_always_survives() {
        let mut disk = Disk::new(VolumeImage::new(0o755));
        disk.completed(&create("a", 1));
        disk.completed(&create("b", 2));
        disk.completed(&write(2, 0, b"x"));
        disk.completed(&IoOp::SyncFile {
            file: 2,
            data_only: false,
        });
        for s in enumerate(disk.pending(), 64, &mut point_stream(1, 0)) {
            let im = s.image(&disk);
            assert!(
                im.names.contains_key(&b"a"[..]) || !im.names.contains_key(&b"b"[..]),
                "b without a: {s:?}"
            );
            assert_eq!(im.files[&2].bytes.as_slice(), b"x", "{s:?}");
        }
    }

    #[test]
    fn the_bound_holds_and_the_same_seed_gives_the_same_states() {
        let mut disk = Disk::new(VolumeImage::new(0o755));
        for i in 0..40u64 {
            disk.completed(&create(&format!("f{i}"), i));
            disk.completed(&write(i, i * 300, &[i as u8; 1500]));
        }
        let a = enumerate(disk.pending(), 16, &mut point_stream(7, 3));
        let b = enumerate(disk.pending(), 16, &mut point_stream(7, 3));
        let c = enumerate(disk.pending(), 16, &mut point_stream(8, 3));
        assert_eq!(a.len(), 16);
        assert_eq!(a, b);
        assert_ne!(a, c, "another seed samples other states");
        assert_eq!(a[0], CrashState::prefix(disk.pending(), 0));
        assert_eq!(enumerate(&[], 16, &mut point_stream(0, 0)).len(), 1);
    }
}
