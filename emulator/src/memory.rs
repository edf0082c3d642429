//! Guest memory: 4 KiB guest-virtual pages mapped onto guest-physical frames.
//!
//! What it owns: the page table (virtual page number to frame and permissions), the frame table (each frame's
//! bytes, class and poison bit), the write generation of each frame (dirty tracking), a generation count of
//! page-table changes, and a software TLB.
//!
//! Key decisions:
//! - A frame's bytes live in an `Arc<[u8; 4096]>`. A snapshot clones the Arcs, so after it every frame is shared
//!   and the first write to a page copies it (copy-on-write): what a snapshot costs afterwards is proportional to
//!   the pages written since. Pages that were never written all share one zero frame.
//! - The software TLB is direct-mapped, one array for reads and one for writes. A write entry is installed only for
//!   a frame this memory owns alone, that holds no cached code and is not poisoned, so a hit on it never needs a
//!   check. The first write to a page in a write generation goes through the slow path, which is where the page
//!   is copied, classified as anonymous dirty and stamped with the generation.
//! - Dirty tracking has a cursor per consumer (`DirtyCursor`): digests (replay/src/digest.rs), the timeline's
//!   checkpoints, the divergence search and FT each take their own with `dirty_cursor` and ask
//!   `dirty_since(&cursor)`, so one consumer never disturbs another (there is no shared epoch to restart).
//!   Taking a cursor starts a new write generation (and empties the write TLB, so the next write to every page
//!   stamps its frame); the frames written since a cursor are those stamped after it. A `restore` or `fork`
//!   makes every earlier cursor unknowing (`dirty_since` answers None: treat every frame as written). A snapshot
//!   ends nothing. Frame ids never move under a page except through page-table changes, which all bump
//!   `map_generation`: with the same generation as at its last update, a digest need look only at the frames
//!   written since its cursor.
//! - Faults are guest exceptions (`Exception::PageFault`), never Rust errors or panics: an access that crosses into an
//!   unmapped or protected page faults before any byte is written.
//! - Debugger watches (`set_watches`): a page holding a watched byte range is never cached in the TLB of the
//!   watched kind (read or write), so every guest access to it takes the slow path, which counts the accesses
//!   that overlap the range (`watch_hits`). Only that page is slowed down; the others keep their TLB entries, so
//!   a watched stack variable costs the accesses to its own page, not a single-stepped run.
//!
//! Invariant: a TLB entry never outlives the page-table entry and frame it was made from; every change of either
//! flushes the entry (see `flush_page`).
//! It must not: do IO, read the clock, or iterate a hash map into an output (the page table is a BTreeMap).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};

pub const PAGE_SIZE: usize = 4096;
pub const PAGE_SHIFT: u32 = 12;
pub const PAGE_MASK: u64 = PAGE_SIZE as u64 - 1;

const TLB_ENTRIES: usize = 256;

/// Page permissions, as in the `prot` argument of mmap(2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Perms(pub u8);

impl Perms {
    pub const NONE: Perms = Perms(0);
    pub const READ: Perms = Perms(1);
    pub const WRITE: Perms = Perms(2);
    pub const EXEC: Perms = Perms(4);
    pub const RW: Perms = Perms(3);
    pub const RX: Perms = Perms(5);
    pub const RWX: Perms = Perms(7);

    pub fn contains(self, other: Perms) -> bool {
        self.0 & other.0 == other.0
    }
    pub fn union(self, other: Perms) -> Perms {
        Perms(self.0 | other.0)
    }
}

impl std::fmt::Display for Perms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let flag = |p: Perms, c: char| if self.contains(p) { c } else { '-' };
        write!(
            f,
            "{}{}{}",
            flag(Perms::READ, 'r'),
            flag(Perms::WRITE, 'w'),
            flag(Perms::EXEC, 'x')
        )
    }
}

/// The kind of access that faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Access {
    Read,
    Write,
    Execute,
}

/// What a frame holds, following the page states of Linux's mm/memory-failure.c.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FrameClass {
    /// Not mapped by any page.
    Free,
    /// Bytes loaded from a file (program text, read-only data) and never written since: can be re-read.
    FileClean,
    /// Anonymous memory never written: its content is zeros and can be recreated.
    AnonZero,
    /// Written by the guest: the only copy of its content.
    AnonDirty,
}

/// A guest-physical frame number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FrameId(pub u32);

/// A guest exception raised by a memory access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryFault {
    /// #PF: `present` is false when no page is mapped at `addr`, true when the page's permissions refuse `access`.
    PageFault {
        addr: u64,
        access: Access,
        present: bool,
    },
    /// The access touched a poisoned frame (an uncorrectable memory error).
    MachineCheck { addr: u64, frame: FrameId },
}

/// Errors of the mapping calls (mmap-like operations requested by the OS layer, not by guest instructions).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MapError {
    #[error("address {addr:#x} is not page-aligned")]
    Unaligned { addr: u64 },
    #[error("range {addr:#x}+{len:#x} overflows the address space")]
    Overflow { addr: u64, len: u64 },
    #[error("guest memory limit reached: {frames_max} frames")]
    OutOfFrames { frames_max: usize },
}

pub type PageBytes = [u8; PAGE_SIZE];

/// A byte range a debugger watches, and which guest accesses to it count (`Memory::set_watches`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchRange {
    pub addr: u64,
    /// At least 1; `addr + len` does not overflow.
    pub len: u64,
    pub reads: bool,
    pub writes: bool,
}

impl WatchRange {
    fn overlaps(&self, addr: u64, len: u64) -> bool {
        addr < self.addr.saturating_add(self.len) && self.addr < addr.saturating_add(len)
    }

    fn pages(&self) -> impl Iterator<Item = u64> {
        let first = self.addr >> PAGE_SHIFT;
        let last = self.addr.saturating_add(self.len - 1) >> PAGE_SHIFT;
        first..=last
    }
}

/// Guest accesses that touched a watched range since `Memory::set_watches`, counted per access (an access that
/// covers several bytes of the range counts once).
///
/// Exact for every access but one kind: a REP MOVS or REP STOS that runs many iterations at once
/// (cpu/string.rs, `bulk`) counts one read or write per page it resolves on a watched page, whether or not it
/// touches the range. A caller that must be exact re-runs such a stretch one instruction at a time: with a
/// budget of one instruction, `bulk` never runs, and every iteration is counted exactly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WatchHits {
    pub reads: u64,
    pub writes: u64,
}

/// One consumer's place in a memory's dirty tracking (`Memory::dirty_cursor`): the frames written since it was
/// taken are `Memory::dirty_since(&cursor)`. Plain data: a consumer keeps as many as it likes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirtyCursor {
    /// The history it belongs to: a memory starts a new one at `restore` and `fork`.
    lineage: u64,
    /// The write generation that was current when it was taken; frames stamped later were written since.
    generation: u64,
}

/// Hands out lineages: a process-wide counter, compared only for equality (it never reaches an output).
static LINEAGES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn new_lineage() -> u64 {
    LINEAGES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Dirty tracking for any number of consumers: each frame carries the write generation of its last write (its
/// stamp), and a log of stampings in generation order lets a cursor find what was written since it in time
/// proportional to that, not to the frames mapped.
///
/// Invariants: `generation` is greater than every stamp and every cursor of this lineage handed out; `written`
/// is in ascending generation order, holds an entry `(stamps[f], f)` for every stamped frame `f`, and is at most
/// `WRITTEN_SLACK` entries longer than twice the frame count (older entries are dropped by `compact`).
#[derive(Clone)]
struct DirtyLog {
    lineage: u64,
    generation: u64,
    /// By frame id: the generation of its last write, 0 for none since the lineage began (or freed since).
    stamps: Vec<u64>,
    /// (generation, frame) per stamping; an entry is current while the frame's stamp still equals it.
    written: Vec<(u64, u32)>,
}

/// Entries `DirtyLog::written` may hold beyond twice the frame count before it is compacted.
const WRITTEN_SLACK: usize = 64;

impl Default for DirtyLog {
    fn default() -> Self {
        DirtyLog {
            lineage: new_lineage(),
            generation: 1,
            stamps: Vec::new(),
            written: Vec::new(),
        }
    }
}

impl DirtyLog {
    /// Frame `id` was written (or handed out with new contents) in the current generation.
    fn stamp(&mut self, id: u32) {
        let i = id as usize;
        if i >= self.stamps.len() {
            self.stamps.resize(i + 1, 0);
        }
        if self.stamps[i] == self.generation {
            return;
        }
        self.stamps[i] = self.generation;
        self.written.push((self.generation, id));
        if self.written.len() > 2 * self.stamps.len() + WRITTEN_SLACK {
            self.compact();
        }
    }

    /// Frame `id` was freed: it holds nothing any consumer needs to look at.
    fn unstamp(&mut self, id: u32) {
        if let Some(s) = self.stamps.get_mut(id as usize) {
            *s = 0;
        }
    }

    /// Drops the entries that are no longer current (a later stamping or a free replaced them).
    fn compact(&mut self) {
        let stamps = &self.stamps;
        self.written.retain(|&(g, f)| stamps[f as usize] == g);
        // Sorting by (generation, frame) keeps the generation order and brings together the two current entries
        // of a frame freed and handed out again within one generation.
        self.written.sort_unstable();
        self.written.dedup();
        assert!(
            self.written.len() <= self.stamps.len(),
            "one current entry per frame at most"
        );
    }

    fn cursor(&mut self) -> DirtyCursor {
        let cursor = DirtyCursor {
            lineage: self.lineage,
            generation: self.generation,
        };
        self.generation += 1;
        cursor
    }

    fn since(&self, cursor: &DirtyCursor) -> Option<Vec<FrameId>> {
        if cursor.lineage != self.lineage {
            return None;
        }
        debug_assert!(cursor.generation < self.generation);
        let first = self
            .written
            .partition_point(|&(g, _)| g <= cursor.generation);
        let mut frames: Vec<u32> = self.written[first..]
            .iter()
            .filter(|&&(g, f)| self.stamps[f as usize] == g)
            .map(|&(_, f)| f)
            .collect();
        frames.sort_unstable();
        // A frame freed and handed out again within one generation has two current entries.
        frames.dedup();
        Some(frames.into_iter().map(FrameId).collect())
    }

    /// A new lineage over `frame_count` frames of unknown history (after a restore): earlier cursors answer None.
    fn forget(&mut self, frame_count: usize) {
        self.lineage = new_lineage();
        self.generation += 1;
        self.stamps = vec![0; frame_count];
        self.written.clear();
    }

    /// The tracking of a fork: a lineage of its own, so that no cursor of this memory is taken for one of it.
    fn forked(&self) -> DirtyLog {
        let mut copy = DirtyLog {
            lineage: 0,
            generation: self.generation,
            stamps: Vec::new(),
            written: Vec::new(),
        };
        copy.forget(self.stamps.len());
        copy
    }
}

#[derive(Clone)]
struct Frame {
    bytes: Arc<PageBytes>,
    class: FrameClass,
    poisoned: bool,
}

impl Frame {
    /// The same frame: the same bytes (one shared allocation, which neither side can change while both hold
    /// it: a write to a shared frame copies it) and the same state. Reads no page bytes.
    fn same_as(&self, other: &Frame) -> bool {
        Arc::ptr_eq(&self.bytes, &other.bytes)
            && self.class == other.class
            && self.poisoned == other.poisoned
    }
}

/// Makes `frames` equal to `snap`'s, touching only the frames that differ: a restore after a short run leaves
/// most of them shared with the snapshot, and cloning (and dropping) every `Arc` costs a cache miss on each
/// page's counter, the biggest part of a fuzzer's restore.
fn restore_frames(frames: &mut Vec<Frame>, snap: &[Frame]) {
    frames.truncate(snap.len());
    for (frame, saved) in frames.iter_mut().zip(snap) {
        if !frame.same_as(saved) {
            *frame = saved.clone();
        }
    }
    let kept = frames.len();
    frames.extend_from_slice(&snap[kept..]);
    debug_assert!(frames.len() == snap.len() && frames.iter().zip(snap).all(|(a, b)| a.same_as(b)));
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PageEntry {
    frame: u32,
    perms: Perms,
}

/// `repr(C)`: compiled code (cpu/jit.rs) reads entries as `tag` at offset 0 and `host` at offset 8.
#[derive(Clone, Copy)]
#[repr(C)]
struct TlbEntry {
    /// Virtual page number, or `u64::MAX` when empty (no canonical address has that page number).
    tag: u64,
    host: *mut u8,
}

const TLB_EMPTY: TlbEntry = TlbEntry {
    tag: u64::MAX,
    host: std::ptr::null_mut(),
};

fn zero_frame() -> Arc<PageBytes> {
    static ZERO: OnceLock<Arc<PageBytes>> = OnceLock::new();
    ZERO.get_or_init(|| Arc::new([0u8; PAGE_SIZE])).clone()
}

/// A mapped range, for /proc/self/maps-like listings, core dumps and reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    pub perms: Perms,
}

/// A copy-on-write image of the whole memory; restoring it is exact.
#[derive(Clone)]
pub struct MemorySnapshot {
    pages: BTreeMap<u64, PageEntry>,
    frames: Vec<Frame>,
    free_frames: Vec<u32>,
    stuck_bits: BTreeMap<u32, Vec<StuckBit>>,
}

/// A bit of a frame stuck at a value (a hardware defect injected as a fault): every write to the frame is
/// followed by forcing the bit, so the guest never reads back anything else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StuckBit {
    pub byte: u16,
    pub bit: u8,
    pub value: bool,
}

pub struct Memory {
    pages: BTreeMap<u64, PageEntry>,
    frames: Vec<Frame>,
    free_frames: Vec<u32>,
    frames_max: usize,
    /// Virtual pages holding code that the block cache decoded; a write to one is reported in `code_writes`.
    code_pages: BTreeSet<u64>,
    /// Pages with cached code that were written since the CPU last looked; the CPU drops their blocks.
    pub(crate) code_writes: Vec<u64>,
    /// Which frames were written in which write generation (see `DirtyLog`).
    dirty: DirtyLog,
    /// Bumped by every change of the page table (a page mapped, unmapped, moved, re-protected or given another
    /// frame) and by `restore`.
    map_generation: u64,
    /// Stuck bits by frame. A frame listed here is never cached in the write TLB, so every write to it goes
    /// through the slow path, which re-forces its bits: exact, at no cost to other frames.
    stuck_bits: BTreeMap<u32, Vec<StuckBit>>,
    read_tlb: Box<[TlbEntry; TLB_ENTRIES]>,
    write_tlb: Box<[TlbEntry; TLB_ENTRIES]>,
    /// The debugger's watched ranges and their hit counts, in the order `set_watches` gave them. Not part of a
    /// snapshot: a restore keeps them.
    watches: Vec<WatchRange>,
    watch_hits: Vec<WatchHits>,
    /// Pages holding a range watched for reads (for writes): never cached in the read (write) TLB.
    read_watched_pages: BTreeSet<u64>,
    write_watched_pages: BTreeSet<u64>,
    /// Unpoisoned frames counted by class, for drawing a frame of a class (`nth_unpoisoned_frame`). Built by the
    /// first query and kept up to date from then on; dropped (rebuilt when asked again) by `restore`, `fork`
    /// and by frame ids outgrowing it. Runs that never draw a frame never build it.
    frame_index: Option<Box<FrameIndex>>,
}

/// The index slot of a frame's state: its class, or none for a poisoned frame (never drawn).
fn frame_slot(f: &Frame) -> Option<usize> {
    (!f.poisoned).then_some(match f.class {
        FrameClass::Free => 0,
        FrameClass::FileClean => 1,
        FrameClass::AnonZero => 2,
        FrameClass::AnonDirty => 3,
    })
}

/// Fenwick trees over frame ids: tree `c` counts the unpoisoned frames of class slot `c` (see `frame_slot`),
/// tree 4 every unpoisoned frame. Counting the frames of a class and finding the n-th of them in frame order cost
/// O(log frames), where a scan costs O(frames): a plan of N drawn faults on a memory that grows with them (each
/// recovered clean page takes a fresh frame) would otherwise cost O(N^2).
#[derive(Clone)]
struct FrameIndex {
    /// A power of two; the trees cover frame ids `0..capacity`, 1-based inside (`trees[c][0]` is unused).
    capacity: usize,
    trees: [Vec<u32>; 5],
}

impl FrameIndex {
    fn build(frames: &[Frame]) -> FrameIndex {
        let capacity = (frames.len() * 2).max(64).next_power_of_two();
        let mut index = FrameIndex {
            capacity,
            trees: std::array::from_fn(|_| vec![0u32; capacity + 1]),
        };
        for (id, f) in frames.iter().enumerate() {
            index.moved(id, None, frame_slot(f));
        }
        index
    }

    fn add(&mut self, tree: usize, id: usize, up: bool) {
        let mut i = id + 1;
        while i <= self.capacity {
            let n = &mut self.trees[tree][i];
            *n = if up { *n + 1 } else { *n - 1 };
            i += i & i.wrapping_neg();
        }
    }

    /// Frame `id` left slot `before` for slot `after`.
    fn moved(&mut self, id: usize, before: Option<usize>, after: Option<usize>) {
        if before == after || id >= self.capacity {
            return;
        }
        if let Some(c) = before {
            self.add(c, id, false);
            self.add(4, id, false);
        }
        if let Some(c) = after {
            self.add(c, id, true);
            self.add(4, id, true);
        }
    }

    fn count(&self, tree: usize) -> usize {
        // The root of a power-of-two Fenwick tree holds the total.
        self.trees[tree][self.capacity] as usize
    }

    /// The frame id of the `n`-th (from 0) frame counted by `tree`.
    fn nth(&self, tree: usize, mut n: usize) -> Option<usize> {
        if n >= self.count(tree) {
            return None;
        }
        let t = &self.trees[tree];
        let mut position = 0;
        let mut step = self.capacity;
        while step > 0 {
            let next = position + step;
            if next <= self.capacity && (t[next] as usize) <= n {
                position = next;
                n -= t[next] as usize;
            }
            step >>= 1;
        }
        // `position` frames come before it: its 1-based index is position + 1, its id `position`.
        Some(position)
    }
}

// SAFETY: the raw pointers in the TLBs point into frames owned (through Arcs) by this same `Memory`; they are only
// dereferenced through `&self`/`&mut self` methods, so moving the whole `Memory` to another thread is sound.
unsafe impl Send for Memory {}

impl Default for Memory {
    fn default() -> Self {
        Self::new()
    }
}

impl Memory {
    /// Default guest memory limit: 1 Mi frames, 4 GiB. Every mapped page counts (whatever its permissions, as
    /// every mapped page holds a frame), so a guest can never make the host hold more than this many pages of
    /// its memory; mapping beyond it is ENOMEM inside the guest.
    pub const FRAMES_MAX_DEFAULT: usize = 1 << 20;
    /// The largest limit accepted (1 TiB): frame ids must fit a u32 with room to spare, and a trace's header
    /// may not ask a replay for more.
    pub const FRAMES_MAX_LIMIT: usize = 1 << 28;

    pub fn new() -> Memory {
        Memory {
            pages: BTreeMap::new(),
            frames: Vec::new(),
            free_frames: Vec::new(),
            frames_max: Self::FRAMES_MAX_DEFAULT,
            code_pages: BTreeSet::new(),
            code_writes: Vec::new(),
            dirty: DirtyLog::default(),
            map_generation: 0,
            stuck_bits: BTreeMap::new(),
            read_tlb: Box::new([TLB_EMPTY; TLB_ENTRIES]),
            write_tlb: Box::new([TLB_EMPTY; TLB_ENTRIES]),
            watches: Vec::new(),
            watch_hits: Vec::new(),
            read_watched_pages: BTreeSet::new(),
            write_watched_pages: BTreeSet::new(),
            frame_index: None,
        }
    }

    /// A copy that shares every frame copy-on-write with this memory (fork(2) semantics). Takes `&mut self`
    /// because this memory's write TLB must forget the frames that are now shared.
    pub fn fork(&mut self) -> Memory {
        self.write_tlb.fill(TLB_EMPTY);
        Memory {
            pages: self.pages.clone(),
            frames: self.frames.clone(),
            free_frames: self.free_frames.clone(),
            frames_max: self.frames_max,
            code_pages: BTreeSet::new(),
            code_writes: Vec::new(),
            dirty: self.dirty.forked(),
            map_generation: self.map_generation,
            stuck_bits: self.stuck_bits.clone(),
            read_tlb: Box::new([TLB_EMPTY; TLB_ENTRIES]),
            write_tlb: Box::new([TLB_EMPTY; TLB_ENTRIES]),
            watches: Vec::new(),
            watch_hits: Vec::new(),
            read_watched_pages: BTreeSet::new(),
            write_watched_pages: BTreeSet::new(),
            frame_index: None,
        }
    }

    pub fn set_frames_max(&mut self, frames_max: usize) {
        self.frames_max = frames_max;
    }

    /// The guest memory limit, in frames: every mapped page holds one (see `FRAMES_MAX_DEFAULT`).
    pub fn frames_max(&self) -> usize {
        self.frames_max
    }

    /// Frames held by mapped pages or retired by poison (never handed out again).
    pub fn frames_in_use(&self) -> usize {
        self.frames.len() - self.free_frames.len()
    }

    /// How many more pages can be mapped before the limit.
    pub fn frames_available(&self) -> usize {
        self.frames_max.saturating_sub(self.frames_in_use())
    }

    /// Frames whose bytes are not the shared zero frame: what the guest's pages cost the host, at 4 KiB each
    /// (shared copy-on-write with snapshots, which are not counted again).
    pub fn resident_frame_count(&self) -> usize {
        let zero = zero_frame();
        self.frames
            .iter()
            .filter(|f| f.class != FrameClass::Free && !Arc::ptr_eq(&f.bytes, &zero))
            .count()
    }

    /// Fails with `OutOfFrames` unless mapping `[first, last)` (virtual page numbers) fits the limit. Pages
    /// already mapped there are replaced, so they give their frame back first; a mapping call checks this before
    /// it changes anything, so a refused mapping leaves the old one whole (mmap(2) with MAP_FIXED, brk).
    fn check_frames_for(&self, first: u64, last: u64) -> Result<(), MapError> {
        let replaced = self.pages.range(first..last).count() as u64;
        let needed = (last - first).saturating_sub(replaced);
        if needed > self.frames_available() as u64 {
            return Err(MapError::OutOfFrames {
                frames_max: self.frames_max,
            });
        }
        Ok(())
    }

    // ---------------------------------------------------------------------------------------------------------
    // Mapping (called by the OS layer).

    fn check_range(addr: u64, len: u64) -> Result<(u64, u64), MapError> {
        if addr & PAGE_MASK != 0 {
            return Err(MapError::Unaligned { addr });
        }
        let end = addr
            .checked_add(len)
            .and_then(|e| e.checked_add(PAGE_MASK))
            .ok_or(MapError::Overflow { addr, len })?;
        Ok((addr >> PAGE_SHIFT, end >> PAGE_SHIFT))
    }

    fn alloc_frame(&mut self, bytes: Arc<PageBytes>, class: FrameClass) -> Result<u32, MapError> {
        let frame = Frame {
            bytes,
            class,
            poisoned: false,
        };
        // A frame handed out has new contents: dirty, even if its id was freed and reused within the epoch (a
        // digest that saw the id before must not take it for unchanged).
        if let Some(id) = self.free_frames.pop() {
            let before = frame_slot(&self.frames[id as usize]);
            let after = frame_slot(&frame);
            self.frames[id as usize] = frame;
            if let Some(index) = &mut self.frame_index {
                index.moved(id as usize, before, after);
            }
            self.dirty.stamp(id);
            // A stuck bit is a defect of the physical frame: it outlives the mapping.
            self.force_stuck_bits(id);
            return Ok(id);
        }
        if self.frames.len() >= self.frames_max {
            return Err(MapError::OutOfFrames {
                frames_max: self.frames_max,
            });
        }
        let after = frame_slot(&frame);
        self.frames.push(frame);
        let id = (self.frames.len() - 1) as u32;
        self.dirty.stamp(id);
        match &mut self.frame_index {
            Some(index) if (id as usize) < index.capacity => index.moved(id as usize, None, after),
            Some(_) => self.frame_index = None,
            None => {}
        }
        Ok(id)
    }

    fn release_frame(&mut self, id: u32) {
        let f = &mut self.frames[id as usize];
        let before = frame_slot(f);
        f.bytes = zero_frame();
        f.class = FrameClass::Free;
        if let Some(index) = &mut self.frame_index {
            index.moved(id as usize, before, frame_slot(f));
        }
        // A poisoned frame is retired for good: it never goes back on the free list.
        if !f.poisoned {
            self.free_frames.push(id);
        }
        self.dirty.unstamp(id);
    }

    /// Maps `[addr, addr+len)` as fresh zero-filled anonymous memory, replacing whatever was mapped there.
    pub fn map_anonymous(&mut self, addr: u64, len: u64, perms: Perms) -> Result<(), MapError> {
        let (first, last) = Self::check_range(addr, len)?;
        self.check_frames_for(first, last)?;
        self.map_generation += 1;
        for vpn in first..last {
            self.unmap_page(vpn);
            let frame = self.alloc_frame(zero_frame(), FrameClass::AnonZero)?;
            self.pages.insert(vpn, PageEntry { frame, perms });
        }
        Ok(())
    }

    /// Maps `[addr, addr+len)` with the given bytes (zero-padded), as clean file-backed frames. A page with no
    /// byte other than zero shares the zero frame (bss costs no host page until it is written).
    pub fn map_file_bytes(
        &mut self,
        addr: u64,
        len: u64,
        bytes: &[u8],
        perms: Perms,
    ) -> Result<(), MapError> {
        let (first, last) = Self::check_range(addr, len)?;
        self.check_frames_for(first, last)?;
        self.map_generation += 1;
        for (i, vpn) in (first..last).enumerate() {
            self.unmap_page(vpn);
            let start = i.saturating_mul(PAGE_SIZE);
            let contents = bytes.get(start..bytes.len().min(start.saturating_add(PAGE_SIZE)));
            let page = match contents {
                Some(c) if c.iter().any(|&b| b != 0) => {
                    let mut page = [0u8; PAGE_SIZE];
                    page[..c.len()].copy_from_slice(c);
                    Arc::new(page)
                }
                _ => zero_frame(),
            };
            let frame = self.alloc_frame(page, FrameClass::FileClean)?;
            self.pages.insert(vpn, PageEntry { frame, perms });
        }
        Ok(())
    }

    fn unmap_page(&mut self, vpn: u64) {
        if let Some(entry) = self.pages.remove(&vpn) {
            self.map_generation += 1;
            self.release_frame(entry.frame);
            self.flush_page(vpn);
            self.note_code_change(vpn);
        }
    }

    /// Unmaps `[addr, addr+len)`; pages that are not mapped are skipped, as munmap(2) does.
    pub fn unmap(&mut self, addr: u64, len: u64) -> Result<(), MapError> {
        let (first, last) = Self::check_range(addr, len)?;
        let vpns: Vec<u64> = self.pages.range(first..last).map(|(v, _)| *v).collect();
        for vpn in vpns {
            self.unmap_page(vpn);
        }
        Ok(())
    }

    /// Changes the permissions of the mapped pages in `[addr, addr+len)`. Returns false if any page in the range
    /// is unmapped (mprotect(2) then fails with ENOMEM), in which case nothing is changed.
    pub fn protect(&mut self, addr: u64, len: u64, perms: Perms) -> Result<bool, MapError> {
        let (first, last) = Self::check_range(addr, len)?;
        if (first..last).any(|vpn| !self.pages.contains_key(&vpn)) {
            return Ok(false);
        }
        self.map_generation += 1;
        for vpn in first..last {
            if let Some(e) = self.pages.get_mut(&vpn) {
                e.perms = perms;
            }
            self.flush_page(vpn);
            if !perms.contains(Perms::EXEC) {
                self.note_code_change(vpn);
            }
        }
        Ok(true)
    }

    /// Moves the mappings of `[from, from+len)` to `[to, to+len)` without copying bytes (for mremap(2)).
    pub fn remap(&mut self, from: u64, to: u64, len: u64) -> Result<(), MapError> {
        let (first, last) = Self::check_range(from, len)?;
        let (to_first, to_last) = Self::check_range(to, len)?;
        debug_assert_eq!(last - first, to_last - to_first);
        self.map_generation += 1;
        let moved: Vec<(u64, PageEntry)> = (first..last)
            .filter_map(|vpn| self.pages.remove(&vpn).map(|e| (vpn, e)))
            .collect();
        for vpn in first..last {
            self.flush_page(vpn);
            self.note_code_change(vpn);
        }
        for vpn in to_first..to_last {
            self.unmap_page(vpn);
        }
        for (vpn, entry) in moved {
            self.pages.insert(vpn - first + to_first, entry);
        }
        Ok(())
    }

    pub fn is_mapped(&self, addr: u64) -> bool {
        self.pages.contains_key(&(addr >> PAGE_SHIFT))
    }

    pub fn perms(&self, addr: u64) -> Option<Perms> {
        self.pages.get(&(addr >> PAGE_SHIFT)).map(|e| e.perms)
    }

    /// True if every page that `[addr, addr+len)` touches is mapped (a zero-length range at an unaligned address
    /// touches none).
    pub fn range_is_mapped(&self, addr: u64, len: u64) -> bool {
        let first = addr >> PAGE_SHIFT;
        let last = (addr.saturating_add(len).saturating_add(PAGE_MASK)) >> PAGE_SHIFT;
        self.pages.range(first..last).count() as u64 == last.saturating_sub(first)
    }

    /// True if no page in `[addr, addr+len)` is mapped.
    pub fn range_is_free(&self, addr: u64, len: u64) -> bool {
        let first = addr >> PAGE_SHIFT;
        let last = (addr.saturating_add(len).saturating_add(PAGE_MASK)) >> PAGE_SHIFT;
        self.pages.range(first..last).next().is_none()
    }

    /// The mapped regions, merged where adjacent pages have equal permissions, in address order.
    pub fn regions(&self) -> Vec<Region> {
        let mut out: Vec<Region> = Vec::new();
        for (&vpn, e) in &self.pages {
            let start = vpn << PAGE_SHIFT;
            match out.last_mut() {
                Some(r) if r.end == start && r.perms == e.perms => r.end = start + PAGE_SIZE as u64,
                _ => out.push(Region {
                    start,
                    end: start + PAGE_SIZE as u64,
                    perms: e.perms,
                }),
            }
        }
        out
    }

    pub fn mapped_page_count(&self) -> usize {
        self.pages.len()
    }

    // ---------------------------------------------------------------------------------------------------------
    // Frames: classes, poison, reverse map, epochs.

    /// The frame mapped at `addr`, if any.
    /// Every mapped page in address order: (virtual page number, frame, permissions). One walk of the page table,
    /// for digests that visit every page (no lookup per page).
    pub fn page_entries(&self) -> Vec<(u64, FrameId, Perms)> {
        self.pages
            .iter()
            .map(|(&vpn, e)| (vpn, FrameId(e.frame), e.perms))
            .collect()
    }

    pub fn frame_of(&self, addr: u64) -> Option<FrameId> {
        self.pages
            .get(&(addr >> PAGE_SHIFT))
            .map(|e| FrameId(e.frame))
    }

    pub fn frame_class(&self, frame: FrameId) -> Option<FrameClass> {
        self.frames.get(frame.0 as usize).map(|f| f.class)
    }

    pub fn frame_is_poisoned(&self, frame: FrameId) -> bool {
        self.frames
            .get(frame.0 as usize)
            .is_some_and(|f| f.poisoned)
    }

    pub fn frame_count(&self) -> usize {
        self.frames.len()
    }

    /// Whether `other` (a fork's parent or child) holds `frame` as the same physical frame as this memory:
    /// the same frame number backed by the same bytes, because neither has written the page since the fork
    /// (copy-on-write not broken). An error on such a frame reaches both.
    pub fn shares_frame(&self, frame: FrameId, other: &Memory) -> bool {
        match (
            self.frames.get(frame.0 as usize),
            other.frames.get(frame.0 as usize),
        ) {
            (Some(a), Some(b)) => Arc::ptr_eq(&a.bytes, &b.bytes),
            _ => false,
        }
    }

    /// Every virtual page address mapping `frame`, in address order (the reverse map of memory-failure handling).
    pub fn reverse_map(&self, frame: FrameId) -> Vec<u64> {
        self.pages
            .iter()
            .filter(|(_, e)| e.frame == frame.0)
            .map(|(vpn, _)| vpn << PAGE_SHIFT)
            .collect()
    }

    /// Marks a frame poisoned (an uncorrectable error): every later access to it raises a machine check, code
    /// decoded from it is dropped (the block cache must not run bytes nobody can read), and a free frame is taken
    /// off the free list so it is never handed out again (mm/memory-failure.c takes it off the buddy lists).
    pub fn poison(&mut self, frame: FrameId) {
        if let Some(f) = self.frames.get_mut(frame.0 as usize) {
            let before = frame_slot(f);
            f.poisoned = true;
            if let Some(index) = &mut self.frame_index {
                index.moved(frame.0 as usize, before, None);
            }
        }
        self.free_frames.retain(|&id| id != frame.0);
        for addr in self.reverse_map(frame) {
            self.flush_page(addr >> PAGE_SHIFT);
            self.note_code_change(addr >> PAGE_SHIFT);
        }
    }

    /// How many frames are not poisoned and, with `class`, of that class: the frames a drawn fault chooses from.
    pub fn unpoisoned_frame_count(&mut self, class: Option<FrameClass>) -> usize {
        let tree = Self::index_tree(class);
        self.frame_index_built().count(tree)
    }

    /// The `n`-th (from 0, in frame order) of the frames `unpoisoned_frame_count` counts: what a scan of every
    /// frame would find, in O(log frames).
    pub fn nth_unpoisoned_frame(&mut self, class: Option<FrameClass>, n: usize) -> Option<FrameId> {
        let tree = Self::index_tree(class);
        self.frame_index_built()
            .nth(tree, n)
            .map(|id| FrameId(id as u32))
    }

    fn index_tree(class: Option<FrameClass>) -> usize {
        match class {
            Some(FrameClass::Free) => 0,
            Some(FrameClass::FileClean) => 1,
            Some(FrameClass::AnonZero) => 2,
            Some(FrameClass::AnonDirty) => 3,
            None => 4,
        }
    }

    fn frame_index_built(&mut self) -> &FrameIndex {
        let frames = &self.frames;
        self.frame_index
            .get_or_insert_with(|| Box::new(FrameIndex::build(frames)))
    }

    /// The frames that are poisoned, in frame order (this set only grows during a run).
    pub fn poisoned_frames(&self) -> Vec<FrameId> {
        (0..self.frames.len())
            .filter(|&i| self.frames[i].poisoned)
            .map(|i| FrameId(i as u32))
            .collect()
    }

    /// A frame's bytes, for the hypervisor layer (core dumps, stuck-at bits). None for an unknown or poisoned
    /// frame: a poisoned frame is never read, not even by the hypervisor.
    pub fn frame_bytes(&self, frame: FrameId) -> Option<&PageBytes> {
        self.frames
            .get(frame.0 as usize)
            .filter(|f| !f.poisoned)
            .map(|f| &*f.bytes)
    }

    /// Replaces the frame behind the page at `addr` with a fresh one holding `bytes` (recovery of a clean page).
    /// The old frame stays poisoned and retired.
    pub fn replace_frame(
        &mut self,
        addr: u64,
        bytes: &PageBytes,
        class: FrameClass,
    ) -> Result<(), MapError> {
        let vpn = addr >> PAGE_SHIFT;
        let Some(entry) = self.pages.get(&vpn).copied() else {
            return Ok(());
        };
        let frame = self.alloc_frame(Arc::new(*bytes), class)?;
        self.map_generation += 1;
        self.pages.insert(
            vpn,
            PageEntry {
                frame,
                perms: entry.perms,
            },
        );
        self.flush_page(vpn);
        self.note_code_change(vpn);
        Ok(())
    }

    /// Flips one bit of a frame, as a memory fault would (no permission check, no dirty marking: the guest did not
    /// write it).
    pub fn flip_bit(&mut self, frame: FrameId, byte: usize, bit: u8) {
        if let Some(f) = self.frames.get_mut(frame.0 as usize) {
            let bytes = Arc::make_mut(&mut f.bytes);
            bytes[byte % PAGE_SIZE] ^= 1 << (bit & 7);
        }
        self.force_stuck_bits(frame.0);
        for addr in self.reverse_map(frame) {
            self.flush_page(addr >> PAGE_SHIFT);
            self.note_code_change(addr >> PAGE_SHIFT);
        }
    }

    /// Sticks bit `bit` of byte `byte` of `frame` at `value` from now on: the bit is forced now and after every
    /// later write to the frame, by the guest or by the kernel side.
    pub fn set_stuck_bit(&mut self, frame: FrameId, byte: usize, bit: u8, value: bool) {
        let stuck = StuckBit {
            byte: (byte % PAGE_SIZE) as u16,
            bit: bit & 7,
            value,
        };
        let list = self.stuck_bits.entry(frame.0).or_default();
        list.retain(|s| (s.byte, s.bit) != (stuck.byte, stuck.bit));
        list.push(stuck);
        self.force_stuck_bits(frame.0);
        // Cached write entries for the frame would bypass the forcing.
        for addr in self.reverse_map(frame) {
            self.flush_page(addr >> PAGE_SHIFT);
            self.note_code_change(addr >> PAGE_SHIFT);
        }
    }

    /// The stuck bits of a frame.
    pub fn stuck_bits(&self, frame: FrameId) -> &[StuckBit] {
        self.stuck_bits.get(&frame.0).map_or(&[], |v| v.as_slice())
    }

    fn force_stuck_bits(&mut self, id: u32) {
        let Some(list) = self.stuck_bits.get(&id) else {
            return;
        };
        let Some(f) = self.frames.get_mut(id as usize) else {
            return;
        };
        let needs = list
            .iter()
            .any(|s| (f.bytes[s.byte as usize] >> s.bit & 1 == 1) != s.value);
        if !needs {
            return;
        }
        let bytes = Arc::make_mut(&mut f.bytes);
        for s in list {
            if s.value {
                bytes[s.byte as usize] |= 1 << s.bit;
            } else {
                bytes[s.byte as usize] &= !(1 << s.bit);
            }
        }
    }

    /// A new cursor for one consumer of dirty tracking: `dirty_since` it lists the frames written from now on.
    /// Starts a new write generation; other consumers' cursors are not affected.
    pub fn dirty_cursor(&mut self) -> DirtyCursor {
        let cursor = self.dirty.cursor();
        // The first write to each page from now on must go through the slow path, which stamps its frame.
        self.write_tlb.fill(TLB_EMPTY);
        cursor
    }

    /// The frames written since `cursor` was taken, in frame order; None when this memory cannot tell (a
    /// `restore` or `fork` came between, or the cursor is another memory's): every frame may have changed.
    pub fn dirty_since(&self, cursor: &DirtyCursor) -> Option<Vec<FrameId>> {
        self.dirty.since(cursor)
    }

    /// How many times the page table changed (see the field): equal values mean the same page-to-frame mapping
    /// and permissions.
    pub fn map_generation(&self) -> u64 {
        self.map_generation
    }

    /// Takes a copy-on-write snapshot. Dirty cursors go on: a digest updated before the snapshot still sees
    /// every frame written since.
    pub fn snapshot(&mut self) -> MemorySnapshot {
        let snap = MemorySnapshot {
            pages: self.pages.clone(),
            frames: self.frames.clone(),
            free_frames: self.free_frames.clone(),
            stuck_bits: self.stuck_bits.clone(),
        };
        // Every frame is now shared with the snapshot: the next write to each must copy it.
        self.write_tlb.fill(TLB_EMPTY);
        snap
    }

    /// Restores a snapshot exactly. The pages with cached code are all reported as written.
    pub fn restore(&mut self, snap: &MemorySnapshot) {
        self.frame_index = None;
        // A run that mapped and unmapped nothing (or unmapped what it mapped) left the page table as it was:
        // comparing allocates nothing, cloning allocates every node.
        if self.pages != snap.pages {
            self.pages.clone_from(&snap.pages);
        }
        restore_frames(&mut self.frames, &snap.frames);
        self.free_frames.clone_from(&snap.free_frames);
        self.stuck_bits.clone_from(&snap.stuck_bits);
        self.dirty.forget(self.frames.len());
        self.map_generation += 1;
        self.flush_tlb();
        let code: Vec<u64> = std::mem::take(&mut self.code_pages).into_iter().collect();
        self.code_writes.extend(code);
    }

    /// A digest of the mapped pages (address, permissions, bytes), for state hashes. FNV-1a over 64-bit words:
    /// stable across platforms and releases, which std's hashers do not promise.
    pub fn digest(&self) -> u64 {
        self.digest_with(|bytes| page_digest(bytes))
    }

    /// `digest`'s walk over every mapped page with another page digest: for digests that are compared
    /// within one run and never stored (fault-tolerant replicas' full comparisons use `page_digest_lanes`).
    pub fn digest_with(&self, page: impl Fn(&PageBytes) -> u64) -> u64 {
        let mut h = Fnv::new();
        for (&vpn, e) in &self.pages {
            h.write_u64(vpn);
            h.write_u64(e.perms.0 as u64);
            let f = &self.frames[e.frame as usize];
            h.write_u64(f.poisoned as u64);
            h.write_u64(page(&f.bytes));
        }
        h.finish()
    }

    // ---------------------------------------------------------------------------------------------------------
    // Debugger watches.

    /// Replaces the watched ranges (none: `&[]`) and zeroes their hit counts. Their pages leave the TLB of each
    /// watched kind until the ranges are replaced again.
    pub fn set_watches(&mut self, watches: &[WatchRange]) {
        assert!(
            watches
                .iter()
                .all(|w| w.len >= 1 && w.addr.checked_add(w.len).is_some()),
            "a watched range is empty or overflows the address space"
        );
        self.watches = watches.to_vec();
        self.watch_hits = vec![WatchHits::default(); watches.len()];
        self.read_watched_pages = watches
            .iter()
            .filter(|w| w.reads)
            .flat_map(WatchRange::pages)
            .collect();
        self.write_watched_pages = watches
            .iter()
            .filter(|w| w.writes)
            .flat_map(WatchRange::pages)
            .collect();
        self.flush_tlb();
    }

    /// The hit counts of the ranges given to `set_watches`, in the same order.
    pub fn watch_hits(&self) -> &[WatchHits] {
        &self.watch_hits
    }

    /// Counts a guest access of `len` bytes at `addr` against the watched ranges it overlaps.
    #[inline(never)]
    fn note_access(&mut self, addr: u64, len: u64, write: bool) {
        for (w, hits) in self.watches.iter().zip(self.watch_hits.iter_mut()) {
            if (if write { w.writes } else { w.reads }) && w.overlaps(addr, len) {
                if write {
                    hits.writes += 1;
                } else {
                    hits.reads += 1;
                }
            }
        }
    }

    /// Counts an access somewhere in the page of `addr` whose extent is unknown (see `WatchHits`): every range
    /// of the page watched for that kind of access counts it.
    #[inline(never)]
    fn note_page_access(&mut self, addr: u64, write: bool) {
        let pages = if write {
            &self.write_watched_pages
        } else {
            &self.read_watched_pages
        };
        if pages.contains(&(addr >> PAGE_SHIFT)) {
            self.note_access(addr & !PAGE_MASK, PAGE_SIZE as u64, write);
        }
    }

    // ---------------------------------------------------------------------------------------------------------
    // Cached code.

    /// Records that the block cache decoded code on this page (given by address).
    pub(crate) fn mark_code_page(&mut self, addr: u64) {
        let vpn = addr >> PAGE_SHIFT;
        if self.code_pages.insert(vpn) {
            let slot = &mut self.write_tlb[(vpn as usize) % TLB_ENTRIES];
            if slot.tag == vpn {
                *slot = TLB_EMPTY;
            }
        }
    }

    fn note_code_change(&mut self, vpn: u64) {
        if self.code_pages.remove(&vpn) {
            self.code_writes.push(vpn);
        }
    }

    // ---------------------------------------------------------------------------------------------------------
    // TLB.

    fn flush_page(&mut self, vpn: u64) {
        let i = (vpn as usize) % TLB_ENTRIES;
        if self.read_tlb[i].tag == vpn {
            self.read_tlb[i] = TLB_EMPTY;
        }
        if self.write_tlb[i].tag == vpn {
            self.write_tlb[i] = TLB_EMPTY;
        }
    }

    /// The read and write TLBs (256 entries of 16 bytes, indexed by the page number modulo 256), for compiled
    /// code, which looks pages up exactly as `read` and `write` do and leaves on a miss.
    pub(crate) fn tlb_pointers(&self) -> (*const u8, *const u8) {
        const _: () = assert!(TLB_ENTRIES == 256 && std::mem::size_of::<TlbEntry>() == 16);
        (
            self.read_tlb.as_ptr() as *const u8,
            self.write_tlb.as_ptr() as *const u8,
        )
    }

    pub fn flush_tlb(&mut self) {
        self.read_tlb.fill(TLB_EMPTY);
        self.write_tlb.fill(TLB_EMPTY);
    }

    /// Resolves a page for reading, filling the read TLB.
    fn page_for_read(&mut self, addr: u64, access: Access) -> Result<*const u8, MemoryFault> {
        let vpn = addr >> PAGE_SHIFT;
        let Some(e) = self.pages.get(&vpn).copied() else {
            return Err(MemoryFault::PageFault {
                addr,
                access,
                present: false,
            });
        };
        let need = if access == Access::Execute {
            Perms::EXEC
        } else {
            Perms::READ
        };
        if !e.perms.contains(need) {
            return Err(MemoryFault::PageFault {
                addr,
                access,
                present: true,
            });
        }
        let f = &self.frames[e.frame as usize];
        if f.poisoned {
            return Err(MemoryFault::MachineCheck {
                addr,
                frame: FrameId(e.frame),
            });
        }
        let host = f.bytes.as_ptr();
        if access == Access::Read
            && (self.read_watched_pages.is_empty() || !self.read_watched_pages.contains(&vpn))
        {
            self.read_tlb[(vpn as usize) % TLB_ENTRIES] = TlbEntry {
                tag: vpn,
                host: host as *mut u8,
            };
        }
        Ok(host)
    }

    /// Checks that the page at `addr` is writable, without changing anything.
    fn check_write(&self, addr: u64) -> Result<(), MemoryFault> {
        let vpn = addr >> PAGE_SHIFT;
        let Some(e) = self.pages.get(&vpn) else {
            return Err(MemoryFault::PageFault {
                addr,
                access: Access::Write,
                present: false,
            });
        };
        if !e.perms.contains(Perms::WRITE) {
            return Err(MemoryFault::PageFault {
                addr,
                access: Access::Write,
                present: true,
            });
        }
        if self.frames[e.frame as usize].poisoned {
            return Err(MemoryFault::MachineCheck {
                addr,
                frame: FrameId(e.frame),
            });
        }
        Ok(())
    }

    /// Resolves a page for writing: copies a shared frame, marks it dirty, reports written code, fills the write TLB.
    fn page_for_write(&mut self, addr: u64) -> Result<*mut u8, MemoryFault> {
        self.check_write(addr)?;
        let vpn = addr >> PAGE_SHIFT;
        let e = self.pages[&vpn];
        let f = &mut self.frames[e.frame as usize];
        if f.class != FrameClass::AnonDirty {
            let before = frame_slot(f);
            f.class = FrameClass::AnonDirty;
            if let Some(index) = &mut self.frame_index {
                index.moved(e.frame as usize, before, frame_slot(f));
            }
        }
        let host = Arc::make_mut(&mut f.bytes).as_mut_ptr();
        self.dirty.stamp(e.frame);
        // The copy may have moved the bytes: the read entry must not keep pointing at the shared original.
        let i = (vpn as usize) % TLB_ENTRIES;
        let watched = !self.watches.is_empty();
        if watched && self.read_watched_pages.contains(&vpn) {
            if self.read_tlb[i].tag == vpn {
                self.read_tlb[i] = TLB_EMPTY;
            }
        } else {
            self.read_tlb[i] = TlbEntry { tag: vpn, host };
        }
        if self.code_pages.contains(&vpn) {
            self.note_code_change(vpn);
            // Not cached for writing: the next write must tell the block cache again only if code was decoded
            // from the page in between, which `mark_code_page` handles by emptying the entry.
        }
        let write_watched = watched && self.write_watched_pages.contains(&vpn);
        if !self.stuck_bits.contains_key(&e.frame) && !write_watched {
            self.write_tlb[i] = TlbEntry { tag: vpn, host };
        }
        Ok(host)
    }

    // ---------------------------------------------------------------------------------------------------------
    // Guest accesses.

    /// The host address of the start of the page holding `addr`, resolved for a guest read exactly as `read`
    /// would (same faults, fills the read TLB). For bulk string instructions; the pointer is valid until the
    /// next call that changes this memory.
    #[inline]
    pub(crate) fn host_page_for_read(&mut self, addr: u64) -> Result<*const u8, MemoryFault> {
        let vpn = addr >> PAGE_SHIFT;
        let e = self.read_tlb[(vpn as usize) % TLB_ENTRIES];
        if e.tag == vpn {
            return Ok(e.host);
        }
        let host = self.page_for_read(addr, Access::Read)?;
        if !self.watches.is_empty() {
            self.note_page_access(addr, false);
        }
        Ok(host)
    }

    /// The host address of the start of the page holding `addr`, resolved for a guest write exactly as `write`
    /// would (same faults; copies a shared frame, marks it dirty, reports written code). Valid until the next
    /// call that changes this memory. Unlike a write-TLB entry, the pointer is handed out for a frame with stuck
    /// bits too: the caller must call `host_write_done(addr)` once it has written through it.
    #[inline]
    pub(crate) fn host_page_for_write(&mut self, addr: u64) -> Result<*mut u8, MemoryFault> {
        let vpn = addr >> PAGE_SHIFT;
        let e = self.write_tlb[(vpn as usize) % TLB_ENTRIES];
        if e.tag == vpn {
            return Ok(e.host);
        }
        let host = self.page_for_write(addr)?;
        if !self.watches.is_empty() {
            self.note_page_access(addr, true);
        }
        Ok(host)
    }

    /// Ends a write through a `host_page_for_write` pointer to the page holding `addr`: forces the stuck bits of
    /// its frame again, as every other write path does, so the guest never reads back a stuck bit written over.
    /// Costs one test when no stuck bit is armed anywhere.
    #[inline]
    pub(crate) fn host_write_done(&mut self, addr: u64) {
        if self.stuck_bits.is_empty() {
            return;
        }
        if let Some(frame) = self.frame_of(addr) {
            self.force_stuck_bits(frame.0);
        }
    }

    /// Reads `N` bytes at `addr` (any alignment, may cross a page).
    #[inline(always)]
    pub fn read<const N: usize>(&mut self, addr: u64) -> Result<[u8; N], MemoryFault> {
        let vpn = addr >> PAGE_SHIFT;
        let off = (addr & PAGE_MASK) as usize;
        let e = self.read_tlb[(vpn as usize) % TLB_ENTRIES];
        if e.tag == vpn && off + N <= PAGE_SIZE {
            // SAFETY: a read-TLB entry points at the 4096 bytes of a live frame of this memory (invariant above),
            // and `off + N <= 4096`.
            return Ok(unsafe { std::ptr::read_unaligned(e.host.add(off) as *const [u8; N]) });
        }
        self.read_slow::<N>(addr)
    }

    #[inline(never)]
    fn read_slow<const N: usize>(&mut self, addr: u64) -> Result<[u8; N], MemoryFault> {
        let mut out = [0u8; N];
        self.read_bytes_as(addr, &mut out, Access::Read)?;
        Ok(out)
    }

    /// Writes `N` bytes at `addr` (any alignment, may cross a page). Nothing is written if any page faults.
    #[inline(always)]
    pub fn write<const N: usize>(&mut self, addr: u64, bytes: [u8; N]) -> Result<(), MemoryFault> {
        let vpn = addr >> PAGE_SHIFT;
        let off = (addr & PAGE_MASK) as usize;
        let e = self.write_tlb[(vpn as usize) % TLB_ENTRIES];
        if e.tag == vpn && off + N <= PAGE_SIZE {
            // SAFETY: a write-TLB entry points at the bytes of a frame this memory owns alone (invariant above).
            unsafe { std::ptr::write_unaligned(e.host.add(off) as *mut [u8; N], bytes) };
            return Ok(());
        }
        self.write_bytes(addr, &bytes)
    }

    #[inline(always)]
    pub fn read_u8(&mut self, addr: u64) -> Result<u8, MemoryFault> {
        Ok(self.read::<1>(addr)?[0])
    }
    #[inline(always)]
    pub fn read_u16(&mut self, addr: u64) -> Result<u16, MemoryFault> {
        Ok(u16::from_le_bytes(self.read(addr)?))
    }
    #[inline(always)]
    pub fn read_u32(&mut self, addr: u64) -> Result<u32, MemoryFault> {
        Ok(u32::from_le_bytes(self.read(addr)?))
    }
    #[inline(always)]
    pub fn read_u64(&mut self, addr: u64) -> Result<u64, MemoryFault> {
        Ok(u64::from_le_bytes(self.read(addr)?))
    }
    #[inline(always)]
    pub fn read_u128(&mut self, addr: u64) -> Result<u128, MemoryFault> {
        Ok(u128::from_le_bytes(self.read(addr)?))
    }
    #[inline(always)]
    pub fn write_u8(&mut self, addr: u64, v: u8) -> Result<(), MemoryFault> {
        self.write(addr, [v])
    }
    #[inline(always)]
    pub fn write_u16(&mut self, addr: u64, v: u16) -> Result<(), MemoryFault> {
        self.write(addr, v.to_le_bytes())
    }
    #[inline(always)]
    pub fn write_u32(&mut self, addr: u64, v: u32) -> Result<(), MemoryFault> {
        self.write(addr, v.to_le_bytes())
    }
    #[inline(always)]
    pub fn write_u64(&mut self, addr: u64, v: u64) -> Result<(), MemoryFault> {
        self.write(addr, v.to_le_bytes())
    }
    #[inline(always)]
    pub fn write_u128(&mut self, addr: u64, v: u128) -> Result<(), MemoryFault> {
        self.write(addr, v.to_le_bytes())
    }

    /// Reads an unsigned value of `size` bytes (1, 2, 4 or 8), zero-extended.
    #[inline(always)]
    pub fn read_sized(&mut self, addr: u64, size: u32) -> Result<u64, MemoryFault> {
        match size {
            1 => self.read_u8(addr).map(u64::from),
            2 => self.read_u16(addr).map(u64::from),
            4 => self.read_u32(addr).map(u64::from),
            _ => self.read_u64(addr),
        }
    }

    /// Writes the low `size` bytes (1, 2, 4 or 8) of `v`.
    #[inline(always)]
    pub fn write_sized(&mut self, addr: u64, size: u32, v: u64) -> Result<(), MemoryFault> {
        match size {
            1 => self.write_u8(addr, v as u8),
            2 => self.write_u16(addr, v as u16),
            4 => self.write_u32(addr, v as u32),
            _ => self.write_u64(addr, v),
        }
    }

    fn read_bytes_as(
        &mut self,
        addr: u64,
        out: &mut [u8],
        access: Access,
    ) -> Result<(), MemoryFault> {
        let mut done = 0usize;
        while done < out.len() {
            let a = addr.wrapping_add(done as u64);
            let off = (a & PAGE_MASK) as usize;
            let n = (PAGE_SIZE - off).min(out.len() - done);
            let host = self.page_for_read(a, access)?;
            // SAFETY: `host` points at a live 4096-byte frame and `off + n <= 4096`.
            unsafe { std::ptr::copy_nonoverlapping(host.add(off), out[done..].as_mut_ptr(), n) };
            done += n;
        }
        if access == Access::Read && !self.watches.is_empty() {
            self.note_access(addr, out.len() as u64, false);
        }
        Ok(())
    }

    /// Reads bytes as a guest load (read permission required).
    pub fn read_bytes(&mut self, addr: u64, out: &mut [u8]) -> Result<(), MemoryFault> {
        self.read_bytes_as(addr, out, Access::Read)
    }

    /// Fetches instruction bytes (execute permission required).
    pub fn fetch_bytes(&mut self, addr: u64, out: &mut [u8]) -> Result<(), MemoryFault> {
        self.read_bytes_as(addr, out, Access::Execute)
    }

    /// Writes bytes as a guest store. Every page of the range is checked before the first byte is written.
    pub fn write_bytes(&mut self, addr: u64, bytes: &[u8]) -> Result<(), MemoryFault> {
        if bytes.is_empty() {
            return Ok(());
        }
        let last = addr.wrapping_add(bytes.len() as u64 - 1);
        let mut page = addr & !PAGE_MASK;
        loop {
            self.check_write(page.max(addr))?;
            if page == last & !PAGE_MASK {
                break;
            }
            page = page.wrapping_add(PAGE_SIZE as u64);
        }
        let mut done = 0usize;
        while done < bytes.len() {
            let a = addr.wrapping_add(done as u64);
            let off = (a & PAGE_MASK) as usize;
            let n = (PAGE_SIZE - off).min(bytes.len() - done);
            let host = self.page_for_write(a)?;
            // SAFETY: `host` points at a 4096-byte frame owned by this memory alone and `off + n <= 4096`.
            unsafe { std::ptr::copy_nonoverlapping(bytes[done..].as_ptr(), host.add(off), n) };
            if !self.stuck_bits.is_empty() {
                if let Some(frame) = self.frame_of(a) {
                    self.force_stuck_bits(frame.0);
                }
            }
            done += n;
        }
        if !self.watches.is_empty() {
            self.note_access(addr, bytes.len() as u64, true);
        }
        Ok(())
    }

    /// Reads bytes ignoring permissions (for debuggers, core dumps and the OS layer). Unmapped or poisoned bytes
    /// are an error.
    pub fn peek(&self, addr: u64, out: &mut [u8]) -> Result<(), MemoryFault> {
        for (i, b) in out.iter_mut().enumerate() {
            let a = addr.wrapping_add(i as u64);
            let Some(e) = self.pages.get(&(a >> PAGE_SHIFT)) else {
                return Err(MemoryFault::PageFault {
                    addr: a,
                    access: Access::Read,
                    present: false,
                });
            };
            let f = &self.frames[e.frame as usize];
            if f.poisoned {
                return Err(MemoryFault::MachineCheck {
                    addr: a,
                    frame: FrameId(e.frame),
                });
            }
            *b = f.bytes[(a & PAGE_MASK) as usize];
        }
        Ok(())
    }

    pub fn peek_u64(&self, addr: u64) -> Result<u64, MemoryFault> {
        let mut b = [0u8; 8];
        self.peek(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    pub fn peek_u128(&self, addr: u64) -> Result<u128, MemoryFault> {
        let mut b = [0u8; 16];
        self.peek(addr, &mut b)?;
        Ok(u128::from_le_bytes(b))
    }

    /// Writes bytes ignoring permissions, as the kernel side does (the loader, debuggers). Syscalls that fill a
    /// guest buffer, such as read(2), use `write_bytes` so that permissions apply.
    pub fn poke(&mut self, addr: u64, bytes: &[u8]) -> Result<(), MemoryFault> {
        for (i, &b) in bytes.iter().enumerate() {
            let a = addr.wrapping_add(i as u64);
            let vpn = a >> PAGE_SHIFT;
            let Some(e) = self.pages.get(&vpn).copied() else {
                return Err(MemoryFault::PageFault {
                    addr: a,
                    access: Access::Write,
                    present: false,
                });
            };
            let f = &mut self.frames[e.frame as usize];
            Arc::make_mut(&mut f.bytes)[(a & PAGE_MASK) as usize] = b;
            let before = frame_slot(f);
            f.class = FrameClass::AnonDirty;
            if let Some(index) = &mut self.frame_index {
                index.moved(e.frame as usize, before, frame_slot(f));
            }
            self.force_stuck_bits(e.frame);
            self.dirty.stamp(e.frame);
            self.flush_page(vpn);
            self.note_code_change(vpn);
        }
        Ok(())
    }
}

/// A digest of one page's bytes, a word at a time: FNV-1a's offset basis and prime applied to 64-bit little-endian
/// words with a rotation after each multiply so that high bits feed back. About eight times cheaper than FNV-1a
/// byte by byte, which matters because checkpoints digest every page written since the last one. Fixed and
/// platform-independent, so traces compare across machines.
pub fn page_digest(bytes: &[u8]) -> u64 {
    let mut h = WordDigest::new();
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        h.write_u64(u64::from_le_bytes(
            w.try_into().expect("chunks_exact gives 8 bytes"),
        ));
    }
    let mut h = h.finish();
    for &b in words.remainder() {
        h = (h ^ b as u64).wrapping_mul(FNV_PRIME);
    }
    h ^ bytes.len() as u64
}

const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// A page's digest in format 4: `WordDigest`'s step on four interleaved lanes of words (word i to lane i mod
/// 4), then the four lanes through one `WordDigest`. The lanes are independent chains of multiplies, so the
/// processor overlaps them: about four times faster than `page_digest`, which is one chain.
pub fn page_digest_lanes(bytes: &PageBytes) -> u64 {
    let mut lanes = [
        WordDigest(0xcbf2_9ce4_8422_2325),
        WordDigest(0x8422_2325_cbf2_9ce4),
        WordDigest(0x9ce4_8422_2325_cbf2),
        WordDigest(0x2325_cbf2_9ce4_8422),
    ];
    // A block of four words at a time, one to each lane, so that the four chains interleave.
    for block in bytes.chunks_exact(32) {
        for (lane, word) in lanes.iter_mut().zip(block.chunks_exact(8)) {
            lane.write_u64(u64::from_le_bytes(
                word.try_into().expect("chunks_exact gives 8 bytes"),
            ));
        }
    }
    let mut h = WordDigest::new();
    for lane in lanes {
        h.write_u64(lane.finish());
    }
    h.finish()
}

/// `page_digest`'s construction over 64-bit words: FNV-1a's offset basis and prime, one multiply and a rotation
/// per word (eight times cheaper than `Fnv::write_u64`, which goes a byte at a time). Fixed and
/// platform-independent; for digests stored in traces.
#[derive(Clone, Copy)]
pub struct WordDigest(u64);

impl Default for WordDigest {
    fn default() -> Self {
        Self::new()
    }
}

impl WordDigest {
    pub const fn new() -> WordDigest {
        WordDigest(0xcbf2_9ce4_8422_2325)
    }
    #[inline]
    pub fn write_u64(&mut self, w: u64) {
        self.0 = (self.0 ^ w).wrapping_mul(FNV_PRIME).rotate_left(29);
    }
    pub fn finish(&self) -> u64 {
        self.0
    }
}

/// 64-bit FNV-1a, byte at a time: a fixed, documented digest for state hashes.
#[derive(Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self::new()
    }
}

impl Fnv {
    pub const fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    pub fn write_u64(&mut self, v: u64) {
        for b in v.to_le_bytes() {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    pub fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every access that overlaps a watched range is counted, once, by kind; accesses to other bytes of the same
    /// page, other kinds and other pages are not; the page stays out of the TLB so a repeated access counts
    /// again; a restore keeps the watches; clearing them stops the counting.
    #[test]
    fn watched_ranges_count_exactly_the_accesses_that_touch_them() {
        let mut m = Memory::new();
        m.map_anonymous(0x1000, 0x3000, Perms::READ.union(Perms::WRITE))
            .unwrap();
        let read = WatchRange {
            addr: 0x1ffc,
            len: 8,
            reads: true,
            writes: false,
        };
        let write = WatchRange {
            addr: 0x3010,
            len: 4,
            reads: false,
            writes: true,
        };
        m.set_watches(&[read, write]);
        let hits = |m: &Memory| m.watch_hits().to_vec();
        let none = WatchHits::default();
        // Other bytes of the watched pages, and the other kind of access to the watched bytes.
        m.read_u64(0x1000).unwrap();
        m.write_u32(0x1ffc, 7).unwrap();
        m.read_u32(0x3014).unwrap();
        m.read_u32(0x3010).unwrap();
        m.write_u32(0x3014, 1).unwrap();
        assert_eq!(hits(&m), vec![none, none]);
        // A read that crosses into the second page counts once; so does one inside.
        m.read_u64(0x1ffa).unwrap();
        assert_eq!(hits(&m)[0].reads, 1);
        m.read_u8(0x2002).unwrap();
        assert_eq!(hits(&m)[0].reads, 2);
        m.read_u8(0x2004).unwrap();
        assert_eq!(hits(&m)[0].reads, 2, "0x2004 is past the range");
        // The same read again: still counted (the page never entered the read TLB).
        m.read_u8(0x2002).unwrap();
        assert_eq!(hits(&m)[0].reads, 3);
        // Writes, including one that changes nothing and a page-crossing bytes write.
        m.write_u32(0x3012, 0).unwrap();
        m.write_u32(0x3012, 0).unwrap();
        m.write_bytes(0x300e, &[1, 2, 3]).unwrap();
        assert_eq!(hits(&m)[1].writes, 3);
        // A faulting access counts nothing.
        m.set_watches(&[WatchRange {
            addr: 0x3ffc,
            len: 8,
            reads: true,
            writes: true,
        }]);
        assert!(m.read_u64(0x3ffc).is_err());
        assert!(m.write_u64(0x3ffc, 1).is_err());
        assert_eq!(hits(&m), vec![none]);
        m.write_u32(0x3ffc, 5).unwrap();
        let snap = m.snapshot();
        m.restore(&snap);
        assert_eq!(m.read_u32(0x3ffc), Ok(5));
        assert_eq!(
            hits(&m),
            vec![WatchHits {
                reads: 1,
                writes: 1
            }]
        );
        m.set_watches(&[]);
        m.read_u32(0x3ffc).unwrap();
        assert!(m.watch_hits().is_empty());
    }

    /// The bulk string paths do not know the extent of their access: each resolution of a watched page counts
    /// as a possible hit, and an unwatched page never does.
    #[test]
    fn bulk_page_resolution_counts_a_possible_hit_on_watched_pages_only() {
        let mut m = Memory::new();
        m.map_anonymous(0x1000, 0x2000, Perms::READ.union(Perms::WRITE))
            .unwrap();
        m.set_watches(&[WatchRange {
            addr: 0x1800,
            len: 1,
            reads: true,
            writes: true,
        }]);
        m.host_page_for_read(0x2000).unwrap();
        m.host_page_for_write(0x2000).unwrap();
        assert_eq!(m.watch_hits()[0], WatchHits::default());
        m.host_page_for_read(0x1000).unwrap();
        m.host_page_for_write(0x1000).unwrap();
        assert_eq!(
            m.watch_hits()[0],
            WatchHits {
                reads: 1,
                writes: 1
            }
        );
    }

    #[test]
    fn range_is_mapped_needs_every_page_the_range_touches() {
        let mut m = Memory::new();
        m.map_anonymous(0x1000, 0x3000, Perms::RW).unwrap();
        m.unmap(0x2000, 0x1000).unwrap();
        assert!(m.range_is_mapped(0x1000, 0x1000));
        assert!(m.range_is_mapped(0x1ffc, 4), "within one page");
        assert!(!m.range_is_mapped(0x1ffc, 5), "into the hole");
        assert!(!m.range_is_mapped(0x1000, 0x3000), "over the hole");
        assert!(m.range_is_mapped(0x3000, 0x1000));
        assert!(!m.range_is_mapped(0x3800, 0x1000), "past the end");
        assert!(
            m.range_is_mapped(0x9000, 0),
            "an aligned empty range touches no page"
        );
        assert!(
            !m.range_is_mapped(0x9001, 0),
            "an unaligned one touches its page"
        );
    }

    #[test]
    fn unmapped_read_is_a_page_fault_not_present() {
        let mut m = Memory::new();
        assert_eq!(
            m.read_u32(0x1000),
            Err(MemoryFault::PageFault {
                addr: 0x1000,
                access: Access::Read,
                present: false
            })
        );
    }

    #[test]
    fn write_to_read_only_page_faults_and_changes_nothing() {
        let mut m = Memory::new();
        m.map_file_bytes(0x1000, 0x1000, &[1, 2, 3], Perms::READ)
            .unwrap();
        assert_eq!(
            m.write_u8(0x1001, 9),
            Err(MemoryFault::PageFault {
                addr: 0x1001,
                access: Access::Write,
                present: true
            })
        );
        assert_eq!(m.read_u8(0x1001), Ok(2));
    }

    #[test]
    fn page_crossing_write_checks_both_pages_first() {
        let mut m = Memory::new();
        m.map_anonymous(0x1000, 0x1000, Perms::RW).unwrap();
        m.map_anonymous(0x2000, 0x1000, Perms::READ).unwrap();
        let r = m.write_u64(0x1ffc, u64::MAX);
        assert_eq!(
            r,
            Err(MemoryFault::PageFault {
                addr: 0x2000,
                access: Access::Write,
                present: true
            })
        );
        assert_eq!(
            m.read_u32(0x1ffc),
            Ok(0),
            "the writable half must not have been written"
        );
    }

    #[test]
    fn page_crossing_read_and_write_round_trip() {
        let mut m = Memory::new();
        m.map_anonymous(0x1000, 0x2000, Perms::RW).unwrap();
        m.write_u128(0x1ff9, 0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10)
            .unwrap();
        assert_eq!(
            m.read_u128(0x1ff9),
            Ok(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10)
        );
        assert_eq!(m.read_u8(0x1ff9), Ok(0x10));
        assert_eq!(m.read_u8(0x2008), Ok(0x01));
    }

    #[test]
    fn snapshot_is_copy_on_write_and_restores_exactly() {
        let mut m = Memory::new();
        m.map_anonymous(0x10000, 0x4000, Perms::RW).unwrap();
        m.write_u64(0x10000, 1).unwrap();
        m.write_u64(0x11000, 2).unwrap();
        let cursor = m.dirty_cursor();
        let snap = m.snapshot();
        assert_eq!(m.dirty_since(&cursor), Some(vec![]));
        let generation = m.map_generation();
        m.write_u64(0x10000, 111).unwrap();
        assert_eq!(
            m.dirty_since(&cursor).map(|d| d.len()),
            Some(1),
            "only the page written since the cursor is dirty"
        );
        // A second snapshot ends nothing.
        let _again = m.snapshot();
        assert_eq!(m.dirty_since(&cursor).map(|d| d.len()), Some(1));
        assert_eq!(
            m.map_generation(),
            generation,
            "writes are not mapping changes"
        );
        // The TLB entry made before the snapshot must not let the write reach the snapshot's frame.
        m.restore(&snap);
        assert_eq!(m.read_u64(0x10000), Ok(1));
        assert_eq!(m.read_u64(0x11000), Ok(2));
        assert_eq!(
            m.dirty_since(&cursor),
            None,
            "after a restore a cursor cannot tell what changed"
        );
    }

    #[test]
    fn each_dirty_cursor_sees_exactly_the_pages_written_since_it() {
        let mut m = Memory::new();
        m.map_anonymous(0x10000, 0x8000, Perms::RW).unwrap();
        let frame = |m: &Memory, page: u64| m.frame_of(0x10000 + page * 0x1000).unwrap();
        let frames = |m: &Memory, pages: &[u64]| {
            let mut f: Vec<FrameId> = pages.iter().map(|&p| frame(m, p)).collect();
            f.sort();
            Some(f)
        };
        let first = m.dirty_cursor();
        m.write_u64(0x10000, 1).unwrap();
        m.write_u64(0x11000, 2).unwrap();
        // The second consumer starts here; taking its cursor must not change what the first one sees.
        let second = m.dirty_cursor();
        m.write_u64(0x11008, 3).unwrap();
        m.write_u64(0x13000, 4).unwrap();
        assert_eq!(m.dirty_since(&first), frames(&m, &[0, 1, 3]));
        assert_eq!(m.dirty_since(&second), frames(&m, &[1, 3]));
        // The first consumer moves on; the second still sees everything since its own cursor.
        let first = m.dirty_cursor();
        m.write_u64(0x17000, 5).unwrap();
        assert_eq!(m.dirty_since(&first), frames(&m, &[7]));
        assert_eq!(m.dirty_since(&second), frames(&m, &[1, 3, 7]));
        // A cursor of another memory (here a fork) is not taken for one of this memory.
        let mut child = m.fork();
        assert_eq!(child.dirty_since(&second), None);
        let own = child.dirty_cursor();
        child.write_u64(0x12000, 6).unwrap();
        assert_eq!(child.dirty_since(&own), frames(&child, &[2]));
        assert_eq!(
            m.dirty_since(&first),
            frames(&m, &[7]),
            "the child's writes are its own"
        );
        // An unmapped page's frame is no longer listed; many generations keep the log bounded.
        m.unmap(0x17000, 0x1000).unwrap();
        assert_eq!(m.dirty_since(&first), Some(vec![]));
        for i in 0..10_000u64 {
            let _ = m.dirty_cursor();
            m.write_u64(0x10000 + (i % 6) * 0x1000, i).unwrap();
        }
        assert_eq!(m.dirty_since(&second), frames(&m, &[0, 1, 2, 3, 4, 5]));
        assert!(m.dirty.written.len() <= 2 * m.dirty.stamps.len() + WRITTEN_SLACK);
    }

    #[test]
    fn frame_classes_follow_writes() {
        let mut m = Memory::new();
        m.map_anonymous(0x1000, 0x1000, Perms::RW).unwrap();
        m.map_file_bytes(0x2000, 0x1000, b"text", Perms::RW)
            .unwrap();
        let anon = m.frame_of(0x1000).unwrap();
        let file = m.frame_of(0x2000).unwrap();
        assert_eq!(m.frame_class(anon), Some(FrameClass::AnonZero));
        assert_eq!(m.frame_class(file), Some(FrameClass::FileClean));
        m.write_u8(0x2000, b'T').unwrap();
        assert_eq!(m.frame_class(file), Some(FrameClass::AnonDirty));
        m.unmap(0x1000, 0x1000).unwrap();
        assert_eq!(m.frame_class(anon), Some(FrameClass::Free));
    }

    #[test]
    fn poisoned_frame_is_never_read_silently() {
        let mut m = Memory::new();
        m.map_anonymous(0x1000, 0x1000, Perms::RW).unwrap();
        m.write_u8(0x1010, 7).unwrap();
        assert_eq!(m.read_u8(0x1010), Ok(7)); // fills the TLB
        let f = m.frame_of(0x1000).unwrap();
        m.poison(f);
        assert_eq!(
            m.read_u8(0x1010),
            Err(MemoryFault::MachineCheck {
                addr: 0x1010,
                frame: f
            })
        );
        assert!(matches!(
            m.write_u8(0x1010, 1),
            Err(MemoryFault::MachineCheck { .. })
        ));
        assert_eq!(m.reverse_map(f), vec![0x1000]);
    }

    #[test]
    fn a_stuck_bit_survives_every_kind_of_write() {
        let mut m = Memory::new();
        m.map_anonymous(0x1000, 0x1000, Perms::RW).unwrap();
        m.write_u64(0x1000, 0).unwrap(); // caches the page in the write TLB
        let f = m.frame_of(0x1000).unwrap();
        m.set_stuck_bit(f, 3, 5, true);
        assert_eq!(m.read_u8(0x1003), Ok(0x20), "forced at once");
        m.write_u64(0x1000, 0).unwrap(); // must not reach the frame through a stale TLB entry
        assert_eq!(m.read_u8(0x1003), Ok(0x20));
        m.write_bytes(0x1000, &[0u8; 16]).unwrap();
        assert_eq!(m.read_u8(0x1003), Ok(0x20));
        m.poke(0x1003, &[0]).unwrap();
        assert_eq!(m.read_u8(0x1003), Ok(0x20));
        m.set_stuck_bit(f, 3, 5, false);
        m.write_u8(0x1003, 0xff).unwrap();
        assert_eq!(
            m.read_u8(0x1003),
            Ok(0xdf),
            "stuck at zero now; the other bits are written"
        );
        let snap = m.snapshot();
        m.restore(&snap);
        m.write_u8(0x1003, 0xff).unwrap();
        assert_eq!(
            m.read_u8(0x1003),
            Ok(0xdf),
            "a restore keeps the frame's defects"
        );
    }

    #[test]
    fn protect_refuses_a_range_with_a_hole() {
        let mut m = Memory::new();
        m.map_anonymous(0x1000, 0x1000, Perms::RW).unwrap();
        assert_eq!(m.protect(0x1000, 0x2000, Perms::READ), Ok(false));
        assert_eq!(m.perms(0x1000), Some(Perms::RW));
    }

    #[test]
    fn regions_merge_adjacent_pages() {
        let mut m = Memory::new();
        m.map_anonymous(0x1000, 0x3000, Perms::RW).unwrap();
        m.protect(0x3000, 0x1000, Perms::READ).unwrap();
        let r = m.regions();
        assert_eq!(
            r,
            vec![
                Region {
                    start: 0x1000,
                    end: 0x3000,
                    perms: Perms::RW
                },
                Region {
                    start: 0x3000,
                    end: 0x4000,
                    perms: Perms::READ
                }
            ]
        );
    }

    /// A mapping that does not fit the limit changes nothing: the old pages stay, with their bytes.
    #[test]
    fn a_refused_mapping_leaves_the_old_one_whole() {
        let mut m = Memory::new();
        m.set_frames_max(8);
        m.map_anonymous(0x10000, 4 * 4096, Perms::RW).unwrap();
        m.write_u64(0x10000, 0x1234).unwrap();
        assert_eq!(m.frames_available(), 4);
        // Replacing the four pages and adding five more needs five new frames: one too many.
        assert_eq!(
            m.map_anonymous(0x10000, 9 * 4096, Perms::RW),
            Err(MapError::OutOfFrames { frames_max: 8 })
        );
        assert_eq!(m.read_u64(0x10000), Ok(0x1234));
        assert!(!m.is_mapped(0x14000));
        assert_eq!(m.frames_in_use(), 4);
        // Replacing in place needs no new frame.
        m.map_file_bytes(0x10000, 8 * 4096, b"abc", Perms::RX)
            .unwrap();
        assert_eq!(m.frames_in_use(), 8);
        assert_eq!(
            m.resident_frame_count(),
            1,
            "zero file pages share the zero frame"
        );
    }

    proptest::proptest! {
        /// The frame index finds what a scan of every frame finds, whatever happened to the frames (mapped,
        /// written, unmapped, poisoned, restored), so a drawn fault picks the same frame either way.
        #[test]
        fn the_frame_index_agrees_with_a_scan(
            ops in proptest::collection::vec((0u8..7, 0u64..48, 1u64..6), 1..80),
            queries in proptest::collection::vec(0usize..64, 1..8),
        ) {
            let mut m = Memory::new();
            m.set_frames_max(200);
            let mut snapshot = None;
            let classes = [
                None,
                Some(FrameClass::Free),
                Some(FrameClass::FileClean),
                Some(FrameClass::AnonZero),
                Some(FrameClass::AnonDirty),
            ];
            for (step, (op, page, pages)) in ops.into_iter().enumerate() {
                let addr = 0x10000 + page * 4096;
                match op {
                    0 => { let _ = m.map_anonymous(addr, pages * 4096, Perms::RW); }
                    1 => { let _ = m.map_file_bytes(addr, pages * 4096, &[1, 2, 3], Perms::RX); }
                    2 => { let _ = m.write_u8(addr, 9); }
                    3 => { m.unmap(addr, pages * 4096).unwrap(); }
                    4 => if let Some(f) = m.frame_of(addr) { m.poison(f) },
                    5 => snapshot = Some(m.snapshot()),
                    _ => if let Some(s) = &snapshot { m.restore(s) },
                }
                // Query after some steps only, so that the index is also kept up to date, not just rebuilt.
                if step % 3 != 0 {
                    continue;
                }
                for class in classes {
                    let scan: Vec<u32> = (0..m.frame_count() as u32)
                        .filter(|&f| {
                            !m.frame_is_poisoned(FrameId(f))
                                && class.is_none_or(|c| m.frame_class(FrameId(f)) == Some(c))
                        })
                        .collect();
                    proptest::prop_assert_eq!(m.unpoisoned_frame_count(class), scan.len());
                    for &n in &queries {
                        proptest::prop_assert_eq!(
                            m.nth_unpoisoned_frame(class, n),
                            scan.get(n).map(|&f| FrameId(f))
                        );
                    }
                }
            }
        }
    }
}
