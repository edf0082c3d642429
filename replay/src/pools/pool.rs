//! Pools of instances: each created from a warm image (warm.rs), warmed with operations chosen from a usage
//! profile (profile.rs), and only then available.
//!
//! The warmup operations, chosen by `WarmupPlan::choose`:
//! - compile ahead the blocks the profile's runs ran hot (at least the compile threshold in every run, on
//!   average), so the instance's first iterations run compiled code instead of being interpreted 32 times;
//! - pre-fault the pages the runs wrote: each mapped, readable one is read once, which fills the software TLB's
//!   entry for it (the emulator's page walk) before the first guest access. Copy-on-write is not broken ahead:
//!   that would turn a page's frame class from zero or clean to dirty, which fault campaigns draw on;
//! - read the host files the runs read into the instance host's cache (`UsageHost`), so the first open of each
//!   does not wait for the host's disk.
//!
//! Running the program to its warm point is the image's part: every instance starts there.
//!
//! Invariants: a `Warming` instance gives no access to its guest; only `Warming::finish` makes an `Instance`,
//! and it runs every chosen operation first (`Instance::warmup` says what was done). Warmup changes nothing a
//! guest can observe (compiled blocks are held to the interpreter; a TLB fill and a read of a file the guest
//! would read are not visible), so a warm instance's run equals a cold one's (tests/warm_pools.rs).

use super::warm::{EntropyHost, Seeding, WarmImage};
use super::UsageProfile;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tandem_emulator::linux::abi::Errno;
use tandem_emulator::linux::{Host, LinuxMachine, SeededEntropy};
use tandem_emulator::memory::{Memory, PAGE_SIZE};

/// Runs of a block per profiled run above which compiling it ahead pays (the compiler's own threshold).
pub const HOT_RUNS_MIN: u64 = 32;
/// Most blocks, pages and files one warmup handles.
pub const WARMUP_BLOCKS_MAX: usize = 1 << 16;
pub const WARMUP_PAGES_MAX: usize = 1 << 18;
pub const WARMUP_FILES_MAX: usize = 1 << 12;

/// The warmup operations chosen for a pool's instances.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WarmupPlan {
    pub blocks: Vec<u64>,
    pub pages: Vec<u64>,
    pub files: Vec<PathBuf>,
}

impl WarmupPlan {
    /// The blocks that ran hot in the profile's runs (on average at least `HOT_RUNS_MIN` times a run), every
    /// page and file, each within its limit, in address or path order.
    pub fn choose(profile: &UsageProfile) -> WarmupPlan {
        let runs = profile.runs.max(1);
        WarmupPlan {
            blocks: profile
                .blocks
                .iter()
                .filter(|(_, &n)| n / runs >= HOT_RUNS_MIN)
                .map(|(&rip, _)| rip)
                .take(WARMUP_BLOCKS_MAX)
                .collect(),
            pages: profile
                .pages
                .iter()
                .copied()
                .take(WARMUP_PAGES_MAX)
                .collect(),
            files: profile
                .files
                .iter()
                .take(WARMUP_FILES_MAX)
                .cloned()
                .collect(),
        }
    }
}

/// What one instance's warmup did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WarmupDone {
    pub blocks_compiled: usize,
    pub pages_prefaulted: usize,
    pub files_cached: usize,
}

/// A host that notes every host file a guest reads and answers reads of files it was given ahead from a cache.
pub struct UsageHost<H: Host> {
    pub inner: H,
    files_read: BTreeSet<PathBuf>,
    cache: BTreeMap<PathBuf, Arc<Vec<u8>>>,
}

impl<H: Host> UsageHost<H> {
    pub fn new(inner: H) -> UsageHost<H> {
        UsageHost {
            inner,
            files_read: BTreeSet::new(),
            cache: BTreeMap::new(),
        }
    }

    /// The host files read so far, in path order.
    pub fn files_read(&self) -> &BTreeSet<PathBuf> {
        &self.files_read
    }

    /// Reads `path` now into the cache; false if the host cannot.
    fn preload(&mut self, path: &Path) -> bool {
        match self.inner.read_file(path) {
            Ok(bytes) => {
                self.cache.insert(path.to_path_buf(), bytes);
                true
            }
            Err(_) => false,
        }
    }
}

impl<H: Host> Host for UsageHost<H> {
    tandem_emulator::forward_host!(inner: read_stdin, write_stdout, write_stderr, metadata, read_dir, read_link, fill_random);
    fn read_file(&mut self, path: &Path) -> Result<Arc<Vec<u8>>, Errno> {
        self.files_read.insert(path.to_path_buf());
        match self.cache.remove(path) {
            Some(bytes) => Ok(bytes),
            None => self.inner.read_file(path),
        }
    }
    fn clock_ns(&mut self, virtual_ns: u64) -> u64 {
        self.inner.clock_ns(virtual_ns)
    }
    fn syscall_entry(&mut self, icount: u64, tid: i32, number: u64) {
        self.inner.syscall_entry(icount, tid, number)
    }
    fn syscall_exit(&mut self, result: u64) {
        self.inner.syscall_exit(result)
    }
    fn pause_requested(&self) -> bool {
        self.inner.pause_requested()
    }
    fn trace(&mut self, line: &str) {
        self.inner.trace(line)
    }
}

impl<H: EntropyHost> EntropyHost for UsageHost<H> {
    fn entropy(&self) -> SeededEntropy {
        self.inner.entropy()
    }
    fn set_entropy(&mut self, entropy: SeededEntropy) {
        self.inner.set_entropy(entropy)
    }
}

/// An instance whose warmup has not finished: its guest cannot be reached.
pub struct Warming<H: Host> {
    guest: LinuxMachine<UsageHost<H>>,
}

/// An instance that finished its warmup: available.
pub struct Instance<H: Host> {
    pub guest: LinuxMachine<UsageHost<H>>,
    pub warmup: WarmupDone,
}

/// Where instances come from: a warm image and the warmup chosen for them.
pub struct Pool {
    pub image: WarmImage,
    pub warmup: WarmupPlan,
}

impl Pool {
    pub fn new(image: WarmImage, warmup: WarmupPlan) -> Pool {
        Pool { image, warmup }
    }

    /// Creates an instance at the warm point; it is not available until `Warming::finish`.
    pub fn create<H: EntropyHost>(&self, host: H, seeding: Seeding) -> Warming<H> {
        Warming {
            guest: self.image.instance(UsageHost::new(host), seeding),
        }
    }
}

impl<H: Host> Warming<H> {
    /// Runs the warmup operations of `plan`; the instance is available after.
    pub fn finish(mut self, plan: &WarmupPlan) -> Instance<H> {
        let blocks_compiled = self.guest.precompile_blocks(&plan.blocks);
        let pages_prefaulted = prefault(self.guest.memory_mut(), &plan.pages);
        let host = &mut self.guest.host;
        let files_cached = plan.files.iter().filter(|f| host.preload(f)).count();
        Instance {
            guest: self.guest,
            warmup: WarmupDone {
                blocks_compiled,
                pages_prefaulted,
                files_cached,
            },
        }
    }
}

/// Reads one byte of each mapped, readable page of `pages` (filling the software TLB); returns how many.
fn prefault(memory: &mut Memory, pages: &[u64]) -> usize {
    pages
        .iter()
        .filter(|&&p| {
            memory
                .perms(p)
                .is_some_and(|perms| perms.contains(tandem_emulator::memory::Perms::READ))
                && memory.read_u8(p).is_ok()
        })
        .count()
}

/// Pages of `after` that are not backed by the same bytes as in `before` (written since, or newly mapped): what
/// a run touched after its warm point. In address order.
pub fn touched_pages(before: &Memory, after: &Memory) -> Vec<u64> {
    let old: BTreeMap<u64, _> = before
        .page_entries()
        .into_iter()
        .map(|(vpn, frame, _)| (vpn, before.frame_bytes(frame).map(|b| b as *const _)))
        .collect();
    after
        .page_entries()
        .into_iter()
        .filter(|(vpn, frame, _)| {
            let now = after.frame_bytes(*frame).map(|b| b as *const _);
            old.get(vpn) != Some(&now)
        })
        .map(|(vpn, _, _)| vpn * PAGE_SIZE as u64)
        .collect()
}
