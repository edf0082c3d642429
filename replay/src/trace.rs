//! The trace format: what a recording writes and a replay reads.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! preamble   "TANDEMTR" (8 bytes), format version (u32)
//! chunk*     length (u32) | CRC-32 of the payload (u32, IEEE, crc32fast) | payload (bincode 1.3, varint)
//! payload    sequence number (u64) | link (32 bytes) | the chunk               (format 5)
//!            the chunk                                                        (formats 2 to 4)
//! ```
//!
//! The first chunk is `Chunk::Header` (everything that defines the run, the program embedded); then
//! `Chunk::Records` (blobs, events keyed by icount, checkpoints with state hashes), each complete up to its
//! `icount_end`; last `Chunk::End` with the run's outcome. Chunks are written and flushed one by one, so a
//! recording that is killed leaves a trace whose complete chunks all replay.
//!
//! Format 5 chains the chunks: each payload starts with the chunk's sequence number (0 for the header) and the
//! BLAKE3 of the previous chunk's whole payload (of the preamble, for the header). The CRC tells a torn or
//! corrupt chunk (damage: the chunks before it replay); the chain tells an edited trace, which is refused whole:
//! a chunk deleted (a checkpoint chunk, say), repeated or moved is named by its sequence number, and a chunk
//! edited with its CRC recomputed (the header's program path or argv, say) breaks the link of the chunk after
//! it. It is tamper evidence, not a signature: whoever rewrites every later chunk as well can forge it, and the
//! last chunk has no successor to vouch for it (an edited summary is a divergence of the replay anyway).
//!
//! Versions read: 7 (written), 6, 5, 4, 3 and 2. Versions 6 and 7 encode alike; a version-7 trace was recorded
//! on the CPU model that reports MMX (`replay::cpuid_model_of`), which a replay must present again. Version 3 only appended a variant to `Record` (`Record::Pages`, the
//! digest of every page that changed since the previous checkpoint, right after each checkpoint). bincode numbers
//! enum variants in declaration order, so a version-2 chunk decodes with these types unchanged; a version-2 trace
//! simply has no `Record::Pages` (and may not have one). Version 4 encodes exactly as version 3; what changed is
//! how the fine register hashes and the checkpoints' memory digests are computed (`digest::DigestScheme`: a word
//! at a time, and a sum over pages that an update keeps up to date from the written pages alone) and how
//! embedded files are named (BLAKE3 instead of SHA-256, `blob_id_in`). A replay computes its digests and
//! checks names in the trace's scheme. Version 5 encodes chunks as version 4 with the chain before each.
//! A change to how a stored digest is computed bumps `FORMAT_VERSION` too.
//!
//! Invariants: the reader never panics, reads one chunk at a time (`Trace::read` takes any `Read`; the file is
//! never held whole) and never allocates more for a chunk than the bytes really there, nor more than
//! `CHUNK_BYTES_MAX`, whatever its length field says; every error names the chunk (counted from 0, the header)
//! and its byte offset. A header that asks for what no recording can have (intervals that do not divide, a
//! memory limit beyond `Memory::FRAMES_MAX_LIMIT`) is refused before a replay loads anything.
//! A change to any type below that changes its encoding must bump `FORMAT_VERSION`.

pub use crate::trace_faults::{ErrorReportRecord, FaultPlanRecord, MemoryFaultRecord};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::sync::Arc;

pub const MAGIC: [u8; 8] = *b"TANDEMTR";
/// Version of the encoding of everything in this file (2: memory-fault plans in the header, `Event::Fault`,
/// final fault reports in the summary; 3: `Record::Pages` after every checkpoint; 4: the same encoding, but
/// digests computed another way, see `digest::DigestScheme`, and embedded files named by BLAKE3; 5: chunks
/// numbered and chained, see the module doc; 6: task options; 7: the same encoding, recorded on the
/// `CpuidModel::Baseline` CPU, which reports MMX, so that dynamically linked glibc programs load).
pub const FORMAT_VERSION: u32 = 7;
/// The first version recorded with `CpuidModel::Baseline` (older ones replay with `CpuidModel::Format6`).
pub const FORMAT_VERSION_BASELINE_CPUID: u32 = 7;
/// The first version whose header carries the task options (`Header::tasks`) and whose syscall entries name
/// their task (`Event::TaskSyscallEntry`).
pub const FORMAT_VERSION_TASKS: u32 = 6;
/// The first version whose chunks carry a sequence number and a link to the previous chunk.
pub const FORMAT_VERSION_CHAINED: u32 = 5;
/// The oldest version this tandem still reads.
pub const FORMAT_VERSION_MIN: u32 = 2;
/// Bytes before the first chunk.
pub const PREAMBLE_BYTES: usize = 12;
/// Bytes of a chunk's frame (length and checksum).
pub const FRAME_BYTES: usize = 8;
/// The guest page size the page digests are taken at.
pub const PAGE_BYTES: u64 = tandem_emulator::memory::PAGE_SIZE as u64;
/// Longest chunk payload accepted, in bytes (a bigger embedded file cannot be recorded).
pub const CHUNK_BYTES_MAX: usize = 256 << 20;

/// A content address: the BLAKE3 hash of an embedded file (SHA-256 in formats 2 and 3).
pub type BlobId = [u8; 32];

/// The content address of an embedded file in the format written.
pub fn blob_id(bytes: &[u8]) -> BlobId {
    blob_id_in(FORMAT_VERSION, bytes)
}

/// The content address of an embedded file in a trace of format `version`. BLAKE3 since format 4: it hashes
/// about six times faster than SHA-256 with the SHA extensions, which shows when a run reads a file of many
/// megabytes (recorded and verified whole).
pub fn blob_id_in(version: u32, bytes: &[u8]) -> BlobId {
    if version >= 4 {
        blake3::hash(bytes).into()
    } else {
        Sha256::digest(bytes).into()
    }
}

/// The hash `blob_id_in` uses for a format, for messages.
fn blob_hash_name(version: u32) -> &'static str {
    if version >= 4 {
        "BLAKE3"
    } else {
        "SHA-256"
    }
}

/// Hex of the first bytes of a blob id, for messages.
pub fn blob_name(id: &BlobId) -> String {
    id[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The memory-fault options of a recorded run (`tandem record --faults/--faults-file/--fault-seed/--early-kill`).
/// A replay does not draw from them: it re-applies the `Event::Fault` records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultOptions {
    pub plan: FaultPlanRecord,
    pub fault_seed: u64,
    pub early_kill: bool,
    /// `Policy::stuck_period_insns`: how often stuck bits are re-asserted (replay re-asserts them the same way).
    pub stuck_period_insns: u64,
}

/// Everything that defines the run besides what the event stream carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// The tandem that recorded (`CARGO_PKG_VERSION` of tandem-replay); a different one replays with a warning.
    pub emulator_version: String,
    /// The program's path as given on the recording machine (for messages only).
    pub program_path: Vec<u8>,
    pub program_id: BlobId,
    #[serde(with = "bytes")]
    pub program: Vec<u8>,
    pub argv: Vec<Vec<u8>>,
    pub envp: Vec<Vec<u8>>,
    /// (guest path, host path on the recording machine). Files under them are embedded as they are read.
    pub mounts: Vec<(Vec<u8>, Vec<u8>)>,
    pub seed: u64,
    pub strict: bool,
    pub epoch_ns: u64,
    pub ns_per_insn: u64,
    pub stdout_is_terminal: bool,
    pub exe_path: Vec<u8>,
    pub cwd: Vec<u8>,
    pub frames_max: u64,
    pub instructions_max: Option<u64>,
    /// Instructions between checkpoints (state hashes).
    pub hash_interval: u64,
    /// Instructions between the register hashes that narrow a divergence inside a checkpoint interval.
    pub fine_interval: u64,
    /// The guest's clock answers came from the host clock and are in the event stream.
    pub live_clock: bool,
    /// The guest's entropy came from the host and is in the event stream.
    pub live_entropy: bool,
    /// The run was recorded under the hypervisor with these memory faults.
    pub faults: Option<FaultOptions>,
    /// How the guest's tasks were scheduled and how many CPUs it was told it had (format 6; on the wire in
    /// `Chunk::HeaderTasks`, beside the header, so that the header of older formats decodes unchanged).
    #[serde(skip)]
    pub tasks: TaskOptions,
    /// Syscall results overridden at given calls (`tandem fuzz` findings; on the wire in
    /// `Chunk::HeaderSyscallFaults`, written only when there are some, so other traces encode as before).
    #[serde(skip)]
    pub syscall_faults: Vec<SyscallFaultRecord>,
    /// The run's writable volumes with their initial content (`tandem record --volume`; on the wire as
    /// `Chunk::HeaderVolumes` and one `Chunk::Volume` each right after it, written only when there are some).
    #[serde(skip)]
    pub volumes: Vec<Arc<VolumeRecord>>,
}

/// Instructions between checkpoints, and between fine register hashes, unless a recording says otherwise.
pub const HASH_INTERVAL_DEFAULT: u64 = 1 << 20;
pub const FINE_INTERVAL_DEFAULT: u64 = 65536;

impl Header {
    /// The header of a recording of `program` (its bytes; `program_path` for messages) run with `config`: the
    /// run's inputs as the configuration has them, the default intervals, no instruction limit, no live host
    /// answers and no faults. Callers change what differs.
    pub fn of_run(
        config: &tandem_emulator::linux::LinuxConfig,
        program_path: Vec<u8>,
        program: &[u8],
    ) -> Header {
        Header {
            emulator_version: crate::EMULATOR_VERSION.to_string(),
            program_path,
            program_id: blob_id(program),
            program: program.to_vec(),
            argv: config.argv.clone(),
            envp: config.envp.clone(),
            mounts: config
                .mounts
                .iter()
                .map(|m| {
                    let guest = tandem_emulator::linux::vfs::join(&m.guest);
                    (guest, m.host.as_os_str().as_encoded_bytes().to_vec())
                })
                .collect(),
            seed: config.seed,
            strict: config.strict,
            epoch_ns: config.epoch_ns,
            ns_per_insn: config.ns_per_insn,
            stdout_is_terminal: config.stdout_is_terminal,
            exe_path: config.exe_path.clone(),
            cwd: config.cwd.clone(),
            frames_max: config.frames_max as u64,
            instructions_max: None,
            hash_interval: HASH_INTERVAL_DEFAULT,
            fine_interval: FINE_INTERVAL_DEFAULT,
            live_clock: false,
            live_entropy: false,
            faults: None,
            tasks: TaskOptions::of(config),
            syscall_faults: Vec::new(),
            volumes: config
                .volumes
                .iter()
                .filter_map(|v| Some(Arc::new(VolumeRecord::of(v, v.content.as_deref()?))))
                .collect(),
        }
    }
}

/// Most volumes a trace may declare (a forged count is refused before anything is read for it).
pub const VOLUMES_MAX: u32 = 64;

/// A writable volume of a recorded run: where the guest saw it, the host directory it was read from (for
/// messages: a replay never reads it) and its initial content in the order the machine installs it. The trace's
/// twin of the emulator's `VolumeSpec` with its `VolumeContent`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    /// The absolute guest path ("/data").
    pub guest: Vec<u8>,
    pub host: Vec<u8>,
    pub root_mode: u32,
    pub entries: Vec<VolumeEntryRecord>,
}

/// One entry of a volume's initial content: its path relative to the volume's root, permission bits, what it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeEntryRecord {
    pub path: Vec<u8>,
    pub mode: u32,
    pub node: VolumeNodeRecord,
}

/// Appending variants keeps older traces decodable; never reorder them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeNodeRecord {
    File {
        #[serde(with = "shared_bytes")]
        bytes: Arc<Vec<u8>>,
    },
    Dir,
    Symlink {
        target: Vec<u8>,
    },
}

impl VolumeRecord {
    /// The record of a volume and the content it was read with.
    pub fn of(
        spec: &tandem_emulator::storage::VolumeSpec,
        content: &tandem_emulator::storage::VolumeContent,
    ) -> VolumeRecord {
        use tandem_emulator::storage::ContentNode;
        VolumeRecord {
            guest: tandem_emulator::linux::vfs::join(&spec.guest),
            host: spec.host.as_os_str().as_encoded_bytes().to_vec(),
            root_mode: content.root_mode,
            entries: content
                .entries
                .iter()
                .map(|e| VolumeEntryRecord {
                    path: e.path.clone(),
                    mode: e.mode,
                    node: match &e.node {
                        ContentNode::File(bytes) => VolumeNodeRecord::File {
                            bytes: bytes.clone(),
                        },
                        ContentNode::Dir => VolumeNodeRecord::Dir,
                        ContentNode::Symlink(target) => VolumeNodeRecord::Symlink {
                            target: target.clone(),
                        },
                    },
                })
                .collect(),
        }
    }

    /// The emulator's volume: the guest path split, the content attached (so the machine reads no host).
    pub fn spec(&self) -> tandem_emulator::storage::VolumeSpec {
        use std::os::unix::ffi::OsStrExt;
        use tandem_emulator::storage::{ContentEntry, ContentNode, VolumeContent, VolumeSpec};
        let content = VolumeContent {
            root_mode: self.root_mode,
            entries: self
                .entries
                .iter()
                .map(|e| ContentEntry {
                    path: e.path.clone(),
                    mode: e.mode,
                    node: match &e.node {
                        VolumeNodeRecord::File { bytes } => ContentNode::File(bytes.clone()),
                        VolumeNodeRecord::Dir => ContentNode::Dir,
                        VolumeNodeRecord::Symlink { target } => {
                            ContentNode::Symlink(target.clone())
                        }
                    },
                })
                .collect(),
        };
        VolumeSpec {
            host: std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&self.host)),
            guest: tandem_emulator::linux::vfs::split(&self.guest)
                .into_iter()
                .collect(),
            content: Some(Arc::new(content)),
        }
    }

    /// What a recording could have written: an absolute guest path of plain names other than /, and content
    /// that passes `VolumeContent::check`.
    fn check(&self) -> Result<(), String> {
        let guest = &self.guest;
        let plain = guest.len() > 1
            && guest.len() <= 4096
            && guest[1..]
                .split(|&b| b == b'/')
                .all(|n| !n.is_empty() && n != b"." && n != b".." && !n.contains(&0));
        if !guest.starts_with(b"/") || !plain {
            return Err(format!(
                "guest path {:?} is not an absolute path of plain names other than /",
                String::from_utf8_lossy(guest)
            ));
        }
        self.spec().content.as_deref().map_or(Ok(()), |c| c.check())
    }
}

/// One syscall fault of a recorded run: the `call`th call (from 1) of syscall `nr` failed with `errno` (when
/// non-zero) or moved at most `short_bytes` bytes. The trace's own copy of the emulator's `SyscallFault`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyscallFaultRecord {
    pub nr: u64,
    pub call: u64,
    pub errno: u16,
    pub short_bytes: u32,
}

impl From<&tandem_emulator::linux::syscall_faults::SyscallFault> for SyscallFaultRecord {
    fn from(f: &tandem_emulator::linux::syscall_faults::SyscallFault) -> Self {
        use tandem_emulator::linux::syscall_faults::SyscallFaultAction;
        let (errno, short_bytes) = match f.action {
            SyscallFaultAction::Errno(e) => (e, 0),
            SyscallFaultAction::Short(n) => (0, n),
        };
        SyscallFaultRecord {
            nr: f.nr,
            call: f.call,
            errno,
            short_bytes,
        }
    }
}

impl SyscallFaultRecord {
    /// The emulator's fault (a record with neither an errno nor a byte count is a one-byte transfer).
    pub fn fault(&self) -> tandem_emulator::linux::syscall_faults::SyscallFault {
        use tandem_emulator::linux::syscall_faults::{SyscallFault, SyscallFaultAction};
        let action = if self.errno != 0 {
            SyscallFaultAction::Errno(self.errno)
        } else {
            SyscallFaultAction::Short(self.short_bytes.max(1))
        };
        SyscallFault {
            nr: self.nr,
            call: self.call,
            action,
        }
    }
}

/// The guest kernel's options of a recorded run (`tandem record --sched/--cpus`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskOptions {
    /// The scheduling policy, as `SchedPolicy::spelling` writes it.
    pub sched: String,
    pub cpus: u32,
}

impl TaskOptions {
    /// The task options a guest configuration runs with.
    pub fn of(config: &tandem_emulator::linux::LinuxConfig) -> TaskOptions {
        TaskOptions {
            sched: config.sched.spelling(),
            cpus: config.cpus,
        }
    }
}

impl Default for TaskOptions {
    /// What a trace of format 5 or older was recorded with: one task at a time on "one CPU" (sched_getaffinity
    /// answered a single CPU), and the fair policy (the only one, and irrelevant to a single task).
    fn default() -> Self {
        TaskOptions {
            sched: tandem_emulator::linux::SchedPolicy::default().spelling(),
            cpus: 1,
        }
    }
}

/// Metadata of a host path as the recording host answered it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// 0 file, 1 directory, 2 symbolic link, 3 other.
    pub kind: u8,
    pub size_bytes: u64,
    pub mode: u32,
}

/// The whole stat(2) of a host path as the recording host answered it (`HostCall::Stat`): owners, link count,
/// times and identity are inputs of the run, like the file's bytes. Times are (seconds, nanoseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatMeta {
    /// 0 file, 1 directory, 2 symbolic link, 3 other.
    pub kind: u8,
    pub size_bytes: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u64,
    pub atime: (i64, u32),
    pub mtime: (i64, u32),
    pub ctime: (i64, u32),
    pub blocks: u64,
    pub blksize: u64,
    pub ino: u64,
    pub dev: u64,
}

/// One answer of the host interface, in the order the guest asked. Appending variants keeps older traces
/// decodable; never reorder them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostCall {
    ReadStdin {
        requested: u64,
        result: Result<Vec<u8>, i32>,
    },
    /// A write to stdout (fd 1) or stderr (fd 2): its length and FNV-1a, so that replay checks its output.
    Write {
        fd: u8,
        len: u64,
        fnv: u64,
        result: Result<(), i32>,
    },
    Metadata {
        path: Vec<u8>,
        result: Result<Meta, i32>,
    },
    ReadFile {
        path: Vec<u8>,
        result: Result<BlobId, i32>,
    },
    ReadDir {
        path: Vec<u8>,
        result: Result<Vec<Vec<u8>>, i32>,
    },
    ReadLink {
        path: Vec<u8>,
        result: Result<Vec<u8>, i32>,
    },
    /// Only with `live_clock`.
    Clock { virtual_ns: u64, answer_ns: u64 },
    /// Only with `live_entropy`.
    Random { bytes: Vec<u8> },
    /// Metadata of a host path with the whole of stat(2) (written instead of `Metadata` since owners, times and
    /// counts became inputs; `Metadata` is still read, from older traces).
    Stat {
        path: Vec<u8>,
        result: Result<StatMeta, i32>,
    },
}

/// An event of the run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// A SYSCALL retired at `icount` (counting itself) with rax = `number` (formats 2 to 5).
    SyscallEntry { icount: u64, number: u64 },
    /// The host answered (between the entry and the exit of the syscall it belongs to).
    Host(HostCall),
    /// The syscall returned `result` in rax.
    SyscallExit { result: u64 },
    /// A memory fault fired when `report.icount` instructions had retired (after any syscall at that icount):
    /// the resolved injection, its report line as it stood then, and the guest's position.
    Fault(Box<MemoryFaultRecord>),
    /// Format 6: task `tid` made a syscall (the SYSCALL retired at `icount`, counting every task's
    /// instructions) with rax = `number`. Each attempt of a syscall that blocks is one entry.
    TaskSyscallEntry { icount: u64, tid: i32, number: u64 },
}

impl Event {
    /// A syscall entry of either format: (icount, task when the trace names it, number).
    pub fn syscall_entry(&self) -> Option<(u64, Option<i32>, u64)> {
        match self {
            Event::SyscallEntry { icount, number } => Some((*icount, None, *number)),
            Event::TaskSyscallEntry {
                icount,
                tid,
                number,
            } => Some((*icount, Some(*tid), *number)),
            _ => None,
        }
    }

    /// Whether the replaying host answers this event (faults are re-applied by the hypervisor instead).
    pub fn is_host_stream(&self) -> bool {
        !matches!(self, Event::Fault(_))
    }
}

/// The registers stored at a checkpoint, to show which differ when the replay diverges.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterFile {
    pub gpr: [u64; 16],
    pub rip: u64,
    pub rflags: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub xmm: [u128; 16],
    pub mxcsr: u32,
    /// FNV-1a of the x87 state (registers, control, status and tag words).
    pub x87_digest: u64,
}

/// A state hash at an exact icount.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub icount: u64,
    pub registers: RegisterFile,
    /// Digest of the mapped pages (address, permissions, bytes); see `digest::MemoryDigest`.
    pub memory_digest: u64,
    /// Register hashes at every `fine_interval` instructions after the previous checkpoint, up to this one.
    pub fine_hashes: Vec<u64>,
}

/// The digest of one guest page as a checkpoint saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageDigest {
    /// The page's guest address (a multiple of the page size).
    pub address: u64,
    /// `Perms` bits (read 1, write 2, execute 4).
    pub perms: u8,
    /// `page_digest` of its bytes (`u64::MAX` for a page that neither the guest nor a peek can read).
    pub digest: u64,
}

/// What changed in memory since the previous checkpoint (format 3): every page written, mapped or re-protected
/// (at the first checkpoint, every mapped page), and every page unmapped. Applied in order from the first
/// checkpoint, these give each page's digest at every checkpoint, and `digest::digest_of_pages` of that map is
/// the checkpoint's `memory_digest`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageChanges {
    /// The checkpoint these belong to (the record follows it).
    pub icount: u64,
    /// In address order.
    pub changed: Vec<PageDigest>,
    /// Guest addresses, in order.
    pub unmapped: Vec<u64>,
}

/// Appending variants keeps older traces decodable (see the module doc); never reorder them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// An embedded file, before the first event that names it.
    Blob {
        id: BlobId,
        /// Shared with the guest's file system, which holds the same bytes (no copy of a large file).
        #[serde(with = "shared_bytes")]
        bytes: Arc<Vec<u8>>,
    },
    Event(Event),
    Checkpoint(Box<Checkpoint>),
    /// Format 3: the page digests of the checkpoint just before it.
    Pages(Box<PageChanges>),
}

/// How the recorded run ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub icount: u64,
    /// `LinuxMachine::state_hash` at the end.
    pub state_hash: u64,
    /// The exit status a shell saw (124 when stopped by the instruction limit).
    pub exit_status: i32,
    /// The guest had not finished when the instruction limit stopped it.
    pub stopped_by_limit: bool,
    pub diagnostic: Option<String>,
    pub stdout_len: u64,
    pub stdout_fnv: u64,
    pub stderr_len: u64,
    pub stderr_fnv: u64,
    /// The memory-fault report lines with their final outcomes (`Hypervisor::reports`).
    pub faults: Vec<ErrorReportRecord>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Chunk {
    /// The header (formats 2 to 5 on the wire; from format 6 written as `HeaderTasks` and read back as this).
    Header(Box<Header>),
    /// Records that are complete up to `icount_end`: a replay may run to it.
    Records {
        icount_end: u64,
        records: Vec<Record>,
    },
    End(Summary),
    /// Format 6: the header with its task options (`Header::tasks`). Only on the wire: the reader gives
    /// `Chunk::Header` with `tasks` filled in, and the writer turns `Chunk::Header` into this.
    HeaderTasks(Box<Header>, TaskOptions),
    /// A format 6/7 header of a run with syscall faults (`Header::syscall_faults`, `tandem fuzz`): only on the
    /// wire, like `HeaderTasks`; a trace without syscall faults never holds it.
    HeaderSyscallFaults(Box<Header>, TaskOptions, Vec<SyscallFaultRecord>),
    /// A format 6/7 header of a run with volumes (`Header::volumes`): the header, its task options, its syscall
    /// faults and how many `Volume` chunks follow it. Only on the wire; the reader gives `Chunk::Header` with the
    /// volumes filled in. A trace without volumes never holds it.
    HeaderVolumes(Box<Header>, TaskOptions, Vec<SyscallFaultRecord>, u32),
    /// One volume's initial content, right after `HeaderVolumes`, in the order of the run's volumes.
    Volume(Box<VolumeRecord>),
}

impl Chunk {
    /// The chunk as a trace of `version` encodes it.
    fn on_the_wire(&self, version: u32) -> std::borrow::Cow<'_, Chunk> {
        match self {
            Chunk::Header(h) if version >= FORMAT_VERSION_TASKS && !h.volumes.is_empty() => {
                std::borrow::Cow::Owned(Chunk::HeaderVolumes(
                    h.clone(),
                    h.tasks.clone(),
                    h.syscall_faults.clone(),
                    h.volumes.len() as u32,
                ))
            }
            Chunk::Header(h) if version >= FORMAT_VERSION_TASKS && !h.syscall_faults.is_empty() => {
                std::borrow::Cow::Owned(Chunk::HeaderSyscallFaults(
                    h.clone(),
                    h.tasks.clone(),
                    h.syscall_faults.clone(),
                ))
            }
            Chunk::Header(h) if version >= FORMAT_VERSION_TASKS => {
                std::borrow::Cow::Owned(Chunk::HeaderTasks(h.clone(), h.tasks.clone()))
            }
            other => std::borrow::Cow::Borrowed(other),
        }
    }

    /// The chunk as the reader gives it.
    fn into_read(self) -> Chunk {
        match self {
            Chunk::HeaderTasks(mut h, tasks) => {
                h.tasks = tasks;
                Chunk::Header(h)
            }
            Chunk::HeaderSyscallFaults(mut h, tasks, faults) => {
                h.tasks = tasks;
                h.syscall_faults = faults;
                Chunk::Header(h)
            }
            other => other,
        }
    }
}

/// What is wrong with a trace. Every variant names the place.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    #[error("byte offset 0: not a tandem trace (it does not start with \"TANDEMTR\")")]
    BadMagic,
    #[error("byte offset 8: trace format version {found}, but this tandem reads versions {oldest} to {supported}: replay it with the tandem that recorded it")]
    Version {
        found: u32,
        oldest: u32,
        supported: u32,
    },
    #[error("chunk {chunk} at byte offset {offset}: the trace ends early (truncated at chunk {chunk}: {expected} bytes expected, {available} present), as a recording that was killed or ran out of disk leaves it")]
    Truncated {
        chunk: usize,
        offset: usize,
        expected: usize,
        available: usize,
    },
    #[error("chunk {chunk} at byte offset {offset}: declared length {len} exceeds the limit of {max} bytes")]
    TooLong {
        chunk: usize,
        offset: usize,
        len: usize,
        max: usize,
    },
    #[error("chunk {chunk} at byte offset {offset}: checksum mismatch (CRC-32 {stored:#010x} stored, {computed:#010x} computed): the trace is corrupt")]
    Checksum {
        chunk: usize,
        offset: usize,
        stored: u32,
        computed: u32,
    },
    #[error("chunk {chunk} at byte offset {offset}: cannot decode: {message}")]
    Decode {
        chunk: usize,
        offset: usize,
        message: String,
    },
    #[error("chunk {chunk} at byte offset {offset}: {message}")]
    Invalid {
        chunk: usize,
        offset: usize,
        message: String,
    },
    #[error("chunk {chunk} at byte offset {offset}: {message}: the trace was edited after it was recorded; tandem replays traces only as they were recorded")]
    Edited {
        chunk: usize,
        offset: usize,
        message: String,
    },
    #[error("chunk {chunk} at byte offset {offset}: cannot read the trace: {message}")]
    Io {
        chunk: usize,
        offset: usize,
        message: String,
    },
}

/// Byte vectors encoded as bytes (`serialize_bytes`) rather than as a sequence of `u8`: in bincode the same
/// encoding (a length, then the bytes), so every format reads either way, but written and read in bulk instead of
/// a byte at a time, which matters for embedded files of many megabytes.
mod bytes {
    use serde::de::{Deserializer, SeqAccess, Visitor};
    use serde::Serializer;

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(BytesVisitor)
    }

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("bytes")
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            // Bounded by what the sequence really holds, not by its declared length.
            let mut out = Vec::new();
            while let Some(b) = seq.next_element()? {
                out.push(b);
            }
            Ok(out)
        }
    }
}

/// `bytes` for shared byte vectors.
mod shared_bytes {
    use serde::{Deserializer, Serializer};
    use std::sync::Arc;

    pub fn serialize<S: Serializer>(bytes: &Arc<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        super::bytes::serialize(bytes, s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<Vec<u8>>, D::Error> {
        super::bytes::deserialize(d).map(Arc::new)
    }
}

fn options() -> impl bincode::Options {
    use bincode::Options;
    bincode::DefaultOptions::new()
        .with_limit(CHUNK_BYTES_MAX as u64)
        .reject_trailing_bytes()
}

/// Chunks longer than this are encoded straight into the output instead of into a buffer.
const STREAMED_CHUNK_BYTES: usize = 1 << 20;

/// The BLAKE3 of one chunk's payload: what the next chunk's link holds (format 5).
pub type ChunkLink = [u8; 32];

/// The link of the header chunk: the BLAKE3 of the preamble, so that the version is bound too.
fn preamble_link(version: u32) -> ChunkLink {
    let mut h = blake3::Hasher::new();
    h.update(&MAGIC);
    h.update(&version.to_le_bytes());
    h.finalize().into()
}

/// A `Write` that only computes the CRC-32 and the BLAKE3 of what goes through it.
struct SumWriter {
    crc: crc32fast::Hasher,
    blake3: blake3::Hasher,
}

impl Write for SumWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.crc.update(bytes);
        self.blake3.update(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A chunk as format 5 encodes it: its sequence number and the previous chunk's link first.
#[derive(Serialize)]
struct ChainedRef<'a>(u64, ChunkLink, &'a Chunk);

#[derive(Deserialize)]
struct Chained(u64, ChunkLink, Chunk);

/// Writes a trace chunk by chunk, flushing each.
pub struct TraceWriter<W: Write> {
    out: W,
    version: u32,
    offset: usize,
    chunk_count: usize,
    /// The BLAKE3 of the last chunk's payload (of the preamble before the first chunk).
    link: ChunkLink,
}

impl<W: Write> TraceWriter<W> {
    pub fn new(out: W) -> std::io::Result<Self> {
        Self::with_version(out, FORMAT_VERSION)
    }

    /// A writer of an older format's encoding (`FORMAT_VERSION_MIN` on), for tests of the readers of old
    /// traces. Only the framing follows `version`: the caller makes the records match it (blob names, digests).
    pub fn with_version(mut out: W, version: u32) -> std::io::Result<Self> {
        if !(FORMAT_VERSION_MIN..=FORMAT_VERSION).contains(&version) {
            return Err(std::io::Error::other(format!(
                "trace format {version} is not one this tandem writes"
            )));
        }
        out.write_all(&MAGIC)?;
        out.write_all(&version.to_le_bytes())?;
        out.flush()?;
        Ok(TraceWriter {
            out,
            version,
            offset: PREAMBLE_BYTES,
            chunk_count: 0,
            link: preamble_link(version),
        })
    }

    /// Writes a chunk; a header with volumes is followed by one `Chunk::Volume` for each.
    pub fn write_chunk(&mut self, chunk: &Chunk) -> std::io::Result<()> {
        let volumes = match chunk {
            Chunk::Header(h) => &h.volumes[..],
            _ => &[],
        };
        if !volumes.is_empty() && self.version < FORMAT_VERSION_TASKS {
            return Err(std::io::Error::other(format!(
                "a trace of format {} cannot hold volumes (format {FORMAT_VERSION_TASKS} or later can)",
                self.version
            )));
        }
        self.write_one(&chunk.on_the_wire(self.version))?;
        for v in volumes {
            self.write_one(&Chunk::Volume(Box::new((**v).clone())))?;
        }
        Ok(())
    }

    fn write_one(&mut self, chunk: &Chunk) -> std::io::Result<()> {
        if self.version >= FORMAT_VERSION_CHAINED {
            self.write_payload(&ChainedRef(self.chunk_count as u64, self.link, chunk))
        } else {
            self.write_payload(chunk)
        }
    }

    fn write_payload<T: Serialize>(&mut self, value: &T) -> std::io::Result<()> {
        use bincode::Options;
        let encode = |e: bincode::Error| std::io::Error::other(format!("cannot encode chunk: {e}"));
        let len = options().serialized_size(value).map_err(encode)? as usize;
        if len > CHUNK_BYTES_MAX {
            return Err(std::io::Error::other(format!(
                "chunk {} is {len} bytes, more than the limit of {CHUNK_BYTES_MAX}",
                self.chunk_count,
            )));
        }
        self.out.write_all(&(len as u32).to_le_bytes())?;
        if len <= STREAMED_CHUNK_BYTES {
            let mut payload = Vec::with_capacity(len);
            options()
                .serialize_into(&mut payload, value)
                .map_err(encode)?;
            self.out
                .write_all(&crc32fast::hash(&payload).to_le_bytes())?;
            self.out.write_all(&payload)?;
            self.link = blake3::hash(&payload).into();
        } else {
            // A chunk holding a large embedded file: encoded twice, once into the checksums and once into the
            // output, rather than copied whole into a buffer first.
            let mut sums = SumWriter {
                crc: crc32fast::Hasher::new(),
                blake3: blake3::Hasher::new(),
            };
            options().serialize_into(&mut sums, value).map_err(encode)?;
            self.out.write_all(&sums.crc.finalize().to_le_bytes())?;
            options()
                .serialize_into(&mut self.out, value)
                .map_err(encode)?;
            self.link = sums.blake3.finalize().into();
        }
        self.out.flush()?;
        self.offset += FRAME_BYTES + len;
        self.chunk_count += 1;
        Ok(())
    }

    /// Bytes written so far.
    pub fn offset(&self) -> usize {
        self.offset
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

/// A trace read into memory.
#[derive(Clone, Debug)]
pub struct Trace {
    /// The format version in the preamble (`FORMAT_VERSION_MIN..=FORMAT_VERSION`).
    pub format_version: u32,
    pub header: Header,
    /// Every record of the complete chunks, in order.
    pub records: Vec<Record>,
    /// The icount up to which the records are complete.
    pub icount_end: u64,
    pub summary: Option<Summary>,
    /// What stopped the reading before the `End` chunk: a truncated or corrupt chunk. The records before it
    /// are valid.
    pub damage: Option<TraceError>,
    pub chunk_count: usize,
}

/// Reads framed chunks from a `Read` one at a time, checking each frame's CRC and, from format 5 on, its
/// sequence number and its link to the chunk before it.
struct ChunkReader<R: std::io::Read> {
    input: R,
    version: u32,
    /// Byte offset of the next frame.
    offset: usize,
    /// Index of the next chunk (0: the header).
    chunk: usize,
    /// The BLAKE3 of the previous chunk's payload (of the preamble before the header).
    link: ChunkLink,
}

/// Bytes of a chunk read at once before the rest of its declared length is allocated: a length field that
/// promises more than the file holds costs at most this much.
const CHUNK_READ_FIRST_BYTES: usize = 1 << 20;

impl<R: std::io::Read> ChunkReader<R> {
    fn io_error(&self, e: std::io::Error) -> TraceError {
        TraceError::Io {
            chunk: self.chunk,
            offset: self.offset,
            message: e.to_string(),
        }
    }

    /// Fills `buf` from the input, short only at its end; returns how many bytes were read.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, TraceError> {
        let mut done = 0;
        while done < buf.len() {
            match self.input.read(&mut buf[done..]) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io_error(e)),
            }
        }
        Ok(done)
    }

    /// Appends up to `len` more bytes of the input to `out`; short only at the end of the input.
    fn take_into(&mut self, out: &mut Vec<u8>, len: usize) -> Result<(), TraceError> {
        use std::io::Read;
        let result = (&mut self.input).take(len as u64).read_to_end(out);
        result.map(|_| ()).map_err(|e| self.io_error(e))
    }

    /// The next chunk, or None at the end of the input on a frame boundary.
    fn next(&mut self) -> Result<Option<Chunk>, TraceError> {
        use bincode::Options;
        let (chunk, offset) = (self.chunk, self.offset);
        let mut frame = [0u8; FRAME_BYTES];
        let got = self.fill(&mut frame)?;
        if got == 0 {
            return Ok(None);
        }
        if got < FRAME_BYTES {
            return Err(TraceError::Truncated {
                chunk,
                offset,
                expected: FRAME_BYTES,
                available: got,
            });
        }
        let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        let stored = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
        if len > CHUNK_BYTES_MAX {
            return Err(TraceError::TooLong {
                chunk,
                offset,
                len,
                max: CHUNK_BYTES_MAX,
            });
        }
        // The declared length is allocated only once the first megabyte of it has really been read.
        let mut payload = Vec::with_capacity(len.min(CHUNK_READ_FIRST_BYTES));
        self.take_into(&mut payload, len.min(CHUNK_READ_FIRST_BYTES))?;
        if payload.len() < len && payload.len() == CHUNK_READ_FIRST_BYTES {
            payload.reserve_exact(len - payload.len());
            self.take_into(&mut payload, len - CHUNK_READ_FIRST_BYTES)?;
        }
        if payload.len() < len {
            return Err(TraceError::Truncated {
                chunk,
                offset,
                expected: FRAME_BYTES + len,
                available: FRAME_BYTES + payload.len(),
            });
        }
        let computed = crc32fast::hash(&payload);
        if computed != stored {
            return Err(TraceError::Checksum {
                chunk,
                offset,
                stored,
                computed,
            });
        }
        let decode_error = |e: bincode::Error| TraceError::Decode {
            chunk,
            offset,
            message: e.to_string(),
        };
        let decoded = if self.version >= FORMAT_VERSION_CHAINED {
            let Chained(sequence, link, decoded) =
                options().deserialize(&payload).map_err(decode_error)?;
            let edited = |message: String| TraceError::Edited {
                chunk,
                offset,
                message,
            };
            if sequence != chunk as u64 {
                return Err(edited(if sequence == chunk as u64 + 1 {
                    format!("its sequence number is {sequence}: chunk {chunk} is missing")
                } else if sequence > chunk as u64 {
                    format!(
                        "its sequence number is {sequence}: chunks {chunk} to {} are missing",
                        sequence - 1
                    )
                } else {
                    format!("its sequence number is {sequence}: chunk {sequence} is repeated or out of place")
                }));
            }
            if link != self.link {
                return Err(edited(if chunk == 0 {
                    "its link to the preamble differs (the format version was changed)".into()
                } else {
                    format!(
                        "it was not written after chunk {} as this trace holds it (its BLAKE3 link differs): \
                         chunk {} or this one was changed",
                        chunk - 1,
                        chunk - 1
                    )
                }));
            }
            self.link = blake3::hash(&payload).into();
            decoded
        } else {
            options().deserialize(&payload).map_err(decode_error)?
        };
        self.offset += FRAME_BYTES + len;
        self.chunk += 1;
        Ok(Some(Chunk::into_read(decoded)))
    }
}

/// Checks what a header claims that a replay relies on: only what a recording could have written passes.
fn check_header(h: &Header) -> Result<(), String> {
    tandem_emulator::linux::SchedPolicy::parse(&h.tasks.sched)
        .map_err(|e| format!("its scheduling policy: {e}"))?;
    if !(1..=tandem_emulator::linux::CPUS_MAX).contains(&h.tasks.cpus) {
        return Err(format!(
            "it claims {} CPUs (1 to {} are possible)",
            h.tasks.cpus,
            tandem_emulator::linux::CPUS_MAX
        ));
    }
    if h.hash_interval == 0 || h.fine_interval == 0 {
        return Err("hash_interval and fine_interval must be at least 1".into());
    }
    if h.hash_interval % h.fine_interval != 0 {
        return Err(format!(
            "fine_interval {} does not divide hash_interval {}",
            h.fine_interval, h.hash_interval
        ));
    }
    let limit = tandem_emulator::memory::Memory::FRAMES_MAX_LIMIT as u64;
    if h.frames_max == 0 || h.frames_max > limit {
        return Err(format!(
            "frames_max {} is not a guest memory limit (1 to {limit} pages)",
            h.frames_max
        ));
    }
    Ok(())
}

impl Trace {
    /// Parses a whole trace held in memory (see `read`).
    pub fn parse(bytes: &[u8]) -> Result<Trace, TraceError> {
        Trace::read(bytes)
    }

    /// Reads a trace chunk by chunk. A bad preamble or header, or a trace that was edited (format 5), is an
    /// error; damage after the header (a torn or corrupt chunk, the end of the input before the `End` chunk)
    /// is kept in `damage` and the trace holds what came before it.
    pub fn read<R: std::io::Read>(input: R) -> Result<Trace, TraceError> {
        let mut reader = ChunkReader {
            input,
            version: 0,
            offset: 0,
            chunk: 0,
            link: [0; 32],
        };
        let mut preamble = [0u8; PREAMBLE_BYTES];
        let got = reader.fill(&mut preamble)?;
        if got < 8 || preamble[..8] != MAGIC {
            return Err(TraceError::BadMagic);
        }
        if got < PREAMBLE_BYTES {
            return Err(TraceError::Truncated {
                chunk: 0,
                offset: 8,
                expected: 4,
                available: got - 8,
            });
        }
        let found = u32::from_le_bytes([preamble[8], preamble[9], preamble[10], preamble[11]]);
        if !(FORMAT_VERSION_MIN..=FORMAT_VERSION).contains(&found) {
            return Err(TraceError::Version {
                found,
                oldest: FORMAT_VERSION_MIN,
                supported: FORMAT_VERSION,
            });
        }
        reader.version = found;
        reader.offset = PREAMBLE_BYTES;
        reader.link = preamble_link(found);
        let header_error = |message: String| TraceError::Invalid {
            chunk: 0,
            offset: PREAMBLE_BYTES,
            message,
        };
        let (mut header, volume_count) = match reader.next()? {
            Some(Chunk::Header(h)) => (*h, 0),
            Some(Chunk::HeaderVolumes(mut h, tasks, faults, count)) => {
                h.tasks = tasks;
                h.syscall_faults = faults;
                (*h, count)
            }
            Some(_) => return Err(header_error("the first chunk is not the header".into())),
            None => {
                return Err(TraceError::Truncated {
                    chunk: 0,
                    offset: PREAMBLE_BYTES,
                    expected: FRAME_BYTES,
                    available: 0,
                })
            }
        };
        if blob_id_in(found, &header.program) != header.program_id {
            return Err(header_error(format!(
                "the embedded program does not match its {}",
                blob_hash_name(found)
            )));
        }
        check_header(&header).map_err(header_error)?;
        if volume_count > VOLUMES_MAX {
            return Err(header_error(format!(
                "it declares {volume_count} volumes (at most {VOLUMES_MAX} are possible)"
            )));
        }
        header.volumes = read_volumes(&mut reader, volume_count)?;
        let mut trace = Trace {
            format_version: found,
            header,
            records: Vec::new(),
            icount_end: 0,
            summary: None,
            damage: None,
            chunk_count: 1,
        };
        let good_chunks = loop {
            let (chunk, here) = (reader.chunk, reader.offset);
            match reader.next() {
                Ok(Some(Chunk::Records {
                    icount_end,
                    records,
                })) => {
                    if let Err(message) = check_records(&trace, icount_end, &records) {
                        trace.damage = Some(TraceError::Invalid {
                            chunk,
                            offset: here,
                            message,
                        });
                        break chunk;
                    }
                    trace.records.extend(records);
                    trace.icount_end = icount_end;
                }
                Ok(Some(Chunk::End(summary))) => {
                    if summary.icount < trace.icount_end {
                        trace.damage = Some(TraceError::Invalid {
                            chunk,
                            offset: here,
                            message: format!(
                                "the run ends at icount {} before its records ({})",
                                summary.icount, trace.icount_end
                            ),
                        });
                        break chunk;
                    }
                    let mut extra = [0u8; 1];
                    if reader.fill(&mut extra)? != 0 {
                        trace.damage = Some(TraceError::Invalid {
                            chunk: chunk + 1,
                            offset: reader.offset,
                            message: "bytes after the end chunk".into(),
                        });
                    }
                    trace.icount_end = summary.icount;
                    trace.summary = Some(summary);
                    trace.chunk_count = chunk + 1;
                    return Ok(trace);
                }
                Ok(Some(
                    Chunk::Header(_)
                    | Chunk::HeaderTasks(..)
                    | Chunk::HeaderSyscallFaults(..)
                    | Chunk::HeaderVolumes(..),
                )) => {
                    trace.damage = Some(TraceError::Invalid {
                        chunk,
                        offset: here,
                        message: "a second header".into(),
                    });
                    break chunk;
                }
                Ok(Some(Chunk::Volume(_))) => {
                    trace.damage = Some(TraceError::Invalid {
                        chunk,
                        offset: here,
                        message: "a volume's content after the records (it belongs right after the header)"
                            .into(),
                    });
                    break chunk;
                }
                Ok(None) => {
                    trace.damage = Some(TraceError::Truncated {
                        chunk,
                        offset: here,
                        expected: FRAME_BYTES,
                        available: 0,
                    });
                    break chunk;
                }
                // An edited trace is refused whole: no part of it is what was recorded for sure.
                Err(e @ TraceError::Edited { .. }) => return Err(e),
                Err(e) => {
                    trace.damage = Some(e);
                    break chunk;
                }
            }
        };
        trace.chunk_count = good_chunks;
        Ok(trace)
    }
}

/// Reads the `count` volume chunks that follow a header. They define the run like the header does, so any
/// damage to them is an error (naming the chunk, its offset and the volume), not a trace to replay in part.
fn read_volumes<R: std::io::Read>(
    reader: &mut ChunkReader<R>,
    count: u32,
) -> Result<Vec<Arc<VolumeRecord>>, TraceError> {
    let mut volumes: Vec<Arc<VolumeRecord>> = Vec::new();
    for index in 0..count {
        let (chunk, offset) = (reader.chunk, reader.offset);
        let invalid = |message: String| TraceError::Invalid {
            chunk,
            offset,
            message: format!("volume {index} of {count}: {message}"),
        };
        let volume = match reader.next() {
            Ok(Some(Chunk::Volume(v))) => v,
            Ok(Some(_)) => return Err(invalid("another chunk stands where its content belongs".into())),
            Ok(None) => {
                return Err(invalid(
                    "the trace ends before its content (truncated); a trace whose volumes are damaged cannot                      be replayed"
                        .into(),
                ))
            }
            Err(e @ TraceError::Edited { .. }) => return Err(e),
            Err(e) => {
                return Err(invalid(format!(
                    "its content is damaged ({e}); a trace whose volumes are damaged cannot be replayed"
                )))
            }
        };
        volume.check().map_err(&invalid)?;
        let nested = |a: &[u8], b: &[u8]| {
            let under = |x: &[u8], y: &[u8]| x.starts_with(y) && x.get(y.len()) == Some(&b'/');
            a == b || under(a, b) || under(b, a)
        };
        if volumes.iter().any(|w| nested(&w.guest, &volume.guest)) {
            return Err(invalid("its guest path overlaps another volume's".into()));
        }
        volumes.push(Arc::new(*volume));
    }
    Ok(volumes)
}

/// Checks the invariants of a records chunk against what came before: icounts only grow, blobs match their
/// names, checkpoints fall on the hash interval, and (format 3) each checkpoint is followed by its page
/// digests, in address order.
fn check_records(trace: &Trace, icount_end: u64, records: &[Record]) -> Result<(), String> {
    if icount_end < trace.icount_end {
        return Err(format!(
            "icount_end {icount_end} is before the previous chunk's {}",
            trace.icount_end
        ));
    }
    let pages_expected = trace.format_version >= 3;
    let mut last = trace.icount_end;
    // The checkpoint whose page digests must come next.
    let mut pending_pages: Option<u64> = None;
    for r in records {
        let expected_pages = pending_pages.take();
        if let Some(icount) = expected_pages {
            match r {
                Record::Pages(p) if p.icount == icount => {}
                _ => {
                    return Err(format!(
                        "the checkpoint at icount {icount} is not followed by its page digests"
                    ))
                }
            }
        }
        match r {
            Record::Blob { id, bytes } => {
                if blob_id_in(trace.format_version, bytes) != *id {
                    return Err(format!(
                        "embedded file {} does not match its {}",
                        blob_name(id),
                        blob_hash_name(trace.format_version)
                    ));
                }
            }
            Record::Event(Event::SyscallEntry { icount, .. }) => {
                if *icount < last || *icount > icount_end {
                    return Err(format!("event at icount {icount} out of order"));
                }
                last = *icount;
            }
            Record::Event(Event::Fault(f)) => {
                let icount = f.report.icount;
                if icount < last || icount > icount_end {
                    return Err(format!("memory fault at icount {icount} out of order"));
                }
                if f.injection.is_some_and(|i| i.icount != icount) {
                    return Err(format!(
                        "memory fault at icount {icount}: its injection names another icount"
                    ));
                }
                last = icount;
            }
            Record::Event(_) => {}
            Record::Checkpoint(c) => {
                if c.icount < last || c.icount > icount_end {
                    return Err(format!("checkpoint at icount {} out of order", c.icount));
                }
                if c.icount % trace.header.hash_interval != 0 {
                    return Err(format!(
                        "checkpoint at icount {} is not on the hash interval {}",
                        c.icount, trace.header.hash_interval
                    ));
                }
                last = c.icount;
                if pages_expected {
                    pending_pages = Some(c.icount);
                }
            }
            Record::Pages(p) => {
                if !pages_expected {
                    return Err(format!(
                        "page digests at icount {} in a format-{} trace, which has none",
                        p.icount, trace.format_version
                    ));
                }
                if expected_pages != Some(p.icount) {
                    return Err(format!(
                        "page digests at icount {} do not follow their checkpoint",
                        p.icount
                    ));
                }
                if !pages_in_order(p.changed.iter().map(|d| d.address))
                    || !pages_in_order(p.unmapped.iter().copied())
                {
                    return Err(format!(
                        "page digests at icount {}: addresses not page-aligned or not in order",
                        p.icount
                    ));
                }
            }
        }
    }
    if let Some(icount) = pending_pages {
        return Err(format!(
            "the checkpoint at icount {icount} is not followed by its page digests"
        ));
    }
    Ok(())
}

/// Whether the addresses are page-aligned and strictly increasing.
fn pages_in_order(addresses: impl Iterator<Item = u64>) -> bool {
    let mut previous: Option<u64> = None;
    for a in addresses {
        if a % PAGE_BYTES != 0 || previous.is_some_and(|b| b >= a) {
            return false;
        }
        previous = Some(a);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn sample_header() -> Header {
        let program = b"\x7fELF not really".to_vec();
        Header {
            emulator_version: "test".into(),
            program_path: b"/bin/x".to_vec(),
            program_id: blob_id(&program),
            program,
            argv: vec![b"x".to_vec()],
            envp: vec![],
            mounts: vec![],
            seed: 1,
            strict: false,
            epoch_ns: 0,
            ns_per_insn: 1,
            stdout_is_terminal: false,
            exe_path: b"/x".to_vec(),
            cwd: b"/".to_vec(),
            frames_max: 1000,
            instructions_max: None,
            hash_interval: 16,
            fine_interval: 4,
            live_clock: false,
            live_entropy: false,
            faults: None,
            tasks: TaskOptions {
                sched: "chaos:300".into(),
                cpus: 8,
            },
            syscall_faults: Vec::new(),
            volumes: Vec::new(),
        }
    }

    fn sample_volume(guest: &str) -> Arc<VolumeRecord> {
        let file = |path: &str, bytes: &[u8]| VolumeEntryRecord {
            path: path.as_bytes().to_vec(),
            mode: 0o644,
            node: VolumeNodeRecord::File {
                bytes: Arc::new(bytes.to_vec()),
            },
        };
        Arc::new(VolumeRecord {
            guest: guest.as_bytes().to_vec(),
            host: b"/host/data".to_vec(),
            root_mode: 0o755,
            entries: vec![
                VolumeEntryRecord {
                    path: b"d".to_vec(),
                    mode: 0o700,
                    node: VolumeNodeRecord::Dir,
                },
                file("a.txt", b"hello"),
                file("d/b.bin", &[7u8; 3000]),
                VolumeEntryRecord {
                    path: b"d/l".to_vec(),
                    mode: 0o777,
                    node: VolumeNodeRecord::Symlink {
                        target: b"b.bin".to_vec(),
                    },
                },
            ],
        })
    }

    fn trace_with_volumes(volumes: Vec<Arc<VolumeRecord>>) -> Vec<u8> {
        let mut w = TraceWriter::new(Vec::new()).unwrap();
        let header = Header {
            volumes,
            ..sample_header()
        };
        w.write_chunk(&Chunk::Header(Box::new(header))).unwrap();
        w.into_inner()
    }

    /// A run's volumes travel in chunks of their own after the header and read back whole; a truncated, corrupt
    /// or missing volume chunk is an error (not damage to replay around) naming the chunk, its offset and the
    /// volume; overlapping or forged volumes are refused; a format without volume chunks cannot be written.
    #[test]
    fn volumes_round_trip_and_a_damaged_volume_chunk_is_an_error() {
        let volumes = vec![sample_volume("/data"), sample_volume("/other")];
        let bytes = trace_with_volumes(volumes.clone());
        let t = Trace::parse(&bytes).unwrap();
        assert_eq!(t.header.volumes, volumes);
        assert_eq!(t.chunk_count, 3);
        let spec = t.header.volumes[0].spec();
        assert_eq!(spec.guest, vec![b"data".to_vec()]);
        assert_eq!(spec.content.as_ref().unwrap().entries.len(), 4);
        // Chunk 1 starts after the header's frame.
        let header_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
        let at = PREAMBLE_BYTES + FRAME_BYTES + header_len;
        let mut flipped = bytes.clone();
        flipped[at + 40] ^= 1;
        for (damaged, expected) in [
            (bytes[..at + 30].to_vec(), "truncated"),
            (bytes[..at].to_vec(), "truncated"),
            (flipped, "checksum mismatch"),
        ] {
            let e = Trace::parse(&damaged).unwrap_err().to_string();
            assert!(
                e.contains(&format!("chunk 1 at byte offset {at}"))
                    && e.contains("volume 0 of 2")
                    && e.contains(expected),
                "{e}"
            );
        }
        let nested = trace_with_volumes(vec![sample_volume("/data"), sample_volume("/data/x")]);
        let e = Trace::parse(&nested).unwrap_err().to_string();
        assert!(e.contains("volume 1 of 2") && e.contains("overlaps"), "{e}");
        let mut forged = (*sample_volume("/data")).clone();
        forged.entries[1].path = b"../escape".to_vec();
        let e = Trace::parse(&trace_with_volumes(vec![Arc::new(forged)]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("plain names"), "{e}");
        let mut w = TraceWriter::with_version(Vec::new(), 5).unwrap();
        let header = Header {
            volumes,
            ..sample_header()
        };
        assert!(w.write_chunk(&Chunk::Header(Box::new(header))).is_err());
    }

    /// Format 6 carries the task options beside the header; an older format reads as one CPU, fair.
    #[test]
    fn task_options_round_trip_in_format_6_and_default_before() {
        for version in [FORMAT_VERSION, 5] {
            let mut w = TraceWriter::with_version(Vec::new(), version).unwrap();
            w.write_chunk(&Chunk::Header(Box::new(sample_header())))
                .unwrap();
            let bytes = w.into_inner();
            let t = Trace::read(&bytes[..]).unwrap();
            let expected = if version >= FORMAT_VERSION_TASKS {
                sample_header().tasks
            } else {
                TaskOptions::default()
            };
            assert_eq!(t.header.tasks, expected, "format {version}");
            assert_eq!(expected.cpus == 1, version < FORMAT_VERSION_TASKS);
        }
    }

    fn sample_trace() -> Vec<u8> {
        let mut w = TraceWriter::new(Vec::new()).unwrap();
        w.write_chunk(&Chunk::Header(Box::new(sample_header())))
            .unwrap();
        for i in 0..3u64 {
            w.write_chunk(&Chunk::Records {
                icount_end: (i + 1) * 16,
                records: vec![
                    Record::Event(Event::SyscallEntry {
                        icount: i * 16 + 3,
                        number: 0,
                    }),
                    Record::Event(Event::Host(HostCall::ReadStdin {
                        requested: 10,
                        result: Ok(b"abc".to_vec()),
                    })),
                    Record::Event(Event::SyscallExit { result: 3 }),
                    Record::Checkpoint(Box::new(Checkpoint {
                        icount: (i + 1) * 16,
                        registers: RegisterFile {
                            gpr: [i; 16],
                            rip: 0x401000,
                            rflags: 2,
                            fs_base: 0,
                            gs_base: 0,
                            xmm: [u128::MAX; 16],
                            mxcsr: 0x1f80,
                            x87_digest: 7,
                        },
                        memory_digest: 99,
                        fine_hashes: vec![1, 2, 3, 4],
                    })),
                    Record::Pages(Box::new(PageChanges {
                        icount: (i + 1) * 16,
                        changed: vec![
                            PageDigest {
                                address: 0x400000,
                                perms: 5,
                                digest: i,
                            },
                            PageDigest {
                                address: 0x7fff_f000,
                                perms: 3,
                                digest: u64::MAX,
                            },
                        ],
                        unmapped: vec![0x500000 + i * 0x1000],
                    })),
                ],
            })
            .unwrap();
        }
        w.write_chunk(&Chunk::End(Summary {
            icount: 50,
            state_hash: 5,
            exit_status: 0,
            stopped_by_limit: false,
            diagnostic: None,
            stdout_len: 0,
            stdout_fnv: 0,
            stderr_len: 0,
            stderr_fnv: 0,
            faults: vec![],
        }))
        .unwrap();
        w.into_inner()
    }

    #[test]
    fn round_trip() {
        let bytes = sample_trace();
        let t = Trace::parse(&bytes).unwrap();
        assert_eq!(t.header, sample_header());
        assert_eq!(t.records.len(), 15);
        assert_eq!(t.format_version, FORMAT_VERSION);
        assert_eq!(t.icount_end, 50);
        assert!(t.damage.is_none(), "{:?}", t.damage);
        assert_eq!(t.chunk_count, 5);
    }

    /// Rewrites the sample's records chunks with `edit` applied, in the encoding of `version`.
    fn sample_with(version: u32, edit: impl Fn(&mut Vec<Record>)) -> Vec<u8> {
        let t = Trace::parse(&sample_trace()).unwrap();
        let mut w = TraceWriter::with_version(Vec::new(), version).unwrap();
        // Embedded files named as that version names them.
        let mut header = t.header.clone();
        header.program_id = blob_id_in(version, &header.program);
        w.write_chunk(&Chunk::Header(Box::new(header))).unwrap();
        let mut records = t.records.clone();
        for r in &mut records {
            if let Record::Blob { id, bytes } = r {
                *id = blob_id_in(version, bytes);
            }
        }
        edit(&mut records);
        w.write_chunk(&Chunk::Records {
            icount_end: t.icount_end,
            records,
        })
        .unwrap();
        w.write_chunk(&Chunk::End(t.summary.clone().unwrap()))
            .unwrap();
        w.into_inner()
    }

    #[test]
    fn version_2_is_read_without_page_digests_and_refused_with_them() {
        let drop_pages = |r: &mut Vec<Record>| r.retain(|r| !matches!(r, Record::Pages(_)));
        let t = Trace::parse(&sample_with(2, drop_pages)).unwrap();
        assert!(t.damage.is_none(), "{:?}", t.damage);
        assert_eq!((t.format_version, t.records.len()), (2, 12));
        // Page digests have no place in version 2; their absence has none in version 3.
        let t = Trace::parse(&sample_with(2, |_| {})).unwrap();
        let e = t.damage.expect("page digests in a version-2 trace");
        assert!(e.to_string().contains("in a format-2 trace"), "{e}");
        let t = Trace::parse(&sample_with(3, drop_pages)).unwrap();
        let e = t.damage.expect("a version-3 checkpoint without its pages");
        assert!(
            e.to_string()
                .contains("the checkpoint at icount 16 is not followed by its page digests"),
            "{e}"
        );
        // Out-of-order or unaligned addresses are refused.
        let t = Trace::parse(&sample_with(3, |r| {
            if let Some(Record::Pages(p)) = r.iter_mut().find(|r| matches!(r, Record::Pages(_))) {
                p.changed.swap(0, 1);
            }
        }))
        .unwrap();
        let e = t.damage.expect("pages out of order");
        assert!(e.to_string().contains("not in order"), "{e}");
    }

    /// The frames of a trace: (offset, payload) of each chunk, the preamble left out.
    fn frames(bytes: &[u8]) -> Vec<(usize, Vec<u8>)> {
        let mut out = Vec::new();
        let mut off = PREAMBLE_BYTES;
        while off < bytes.len() {
            let len = u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap()) as usize;
            out.push((
                off,
                bytes[off + FRAME_BYTES..off + FRAME_BYTES + len].to_vec(),
            ));
            off += FRAME_BYTES + len;
        }
        out
    }

    /// A trace put back together from payloads, each framed with a correct CRC (an editor that fixes CRCs).
    fn reframe(preamble: &[u8], payloads: &[Vec<u8>]) -> Vec<u8> {
        let mut out = preamble[..PREAMBLE_BYTES].to_vec();
        for p in payloads {
            out.extend_from_slice(&(p.len() as u32).to_le_bytes());
            out.extend_from_slice(&crc32fast::hash(p).to_le_bytes());
            out.extend_from_slice(p);
        }
        out
    }

    /// Deleting a chunk that holds only a checkpoint, with every CRC still right, is named as an edit.
    #[test]
    fn a_deleted_checkpoint_chunk_is_refused_and_named() {
        let bytes = sample_trace();
        let mut payloads: Vec<Vec<u8>> = frames(&bytes).into_iter().map(|f| f.1).collect();
        // Chunk 2 holds records up to the second checkpoint.
        payloads.remove(2);
        let e = Trace::parse(&reframe(&bytes, &payloads)).unwrap_err();
        assert!(matches!(e, TraceError::Edited { chunk: 2, .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains("its sequence number is 3: chunk 2 is missing"),
            "{text}"
        );
        assert!(text.contains("the trace was edited"), "{text}");
        // Swapping two chunks is named too.
        let mut payloads: Vec<Vec<u8>> = frames(&bytes).into_iter().map(|f| f.1).collect();
        payloads.swap(1, 2);
        let e = Trace::parse(&reframe(&bytes, &payloads)).unwrap_err();
        assert!(matches!(e, TraceError::Edited { chunk: 1, .. }), "{e:?}");
        assert!(e.to_string().contains("its sequence number is 2"), "{e}");
    }

    /// An edit of the header's program path, argv or seed with the CRC recomputed breaks the link of the chunk
    /// after it; so does an edit of any records chunk but the last.
    #[test]
    fn an_edited_header_with_a_fixed_crc_is_refused() {
        use bincode::Options;
        let bytes = sample_trace();
        let frames = frames(&bytes);
        for edit in 0..3 {
            let Chained(sequence, link, chunk) = options().deserialize(&frames[0].1).unwrap();
            let Chunk::HeaderTasks(mut header, tasks) = chunk else {
                panic!("the first chunk is the header")
            };
            match edit {
                0 => header.program_path = b"/bin/innocent".to_vec(),
                1 => header.argv.push(b"--extra".to_vec()),
                _ => header.seed += 1,
            }
            let edited_chunk = Chunk::HeaderTasks(header, tasks);
            let edited = options()
                .serialize(&ChainedRef(sequence, link, &edited_chunk))
                .unwrap();
            let mut payloads: Vec<Vec<u8>> = frames.iter().map(|f| f.1.clone()).collect();
            payloads[0] = edited;
            let e = Trace::parse(&reframe(&bytes, &payloads)).unwrap_err();
            assert!(matches!(e, TraceError::Edited { chunk: 1, .. }), "{e:?}");
            assert!(e.to_string().contains("not written after chunk 0"), "{e}");
        }
        // A records chunk edited in place (an event's result) is caught by the chunk after it.
        let Chained(sequence, link, chunk) = options().deserialize(&frames[1].1).unwrap();
        let Chunk::Records {
            icount_end,
            mut records,
        } = chunk
        else {
            panic!("chunk 1 holds records")
        };
        records[2] = Record::Event(Event::SyscallExit { result: 4 });
        let edited_chunk = Chunk::Records {
            icount_end,
            records,
        };
        let mut payloads: Vec<Vec<u8>> = frames.iter().map(|f| f.1.clone()).collect();
        payloads[1] = options()
            .serialize(&ChainedRef(sequence, link, &edited_chunk))
            .unwrap();
        let e = Trace::parse(&reframe(&bytes, &payloads)).unwrap_err();
        assert!(matches!(e, TraceError::Edited { chunk: 2, .. }), "{e:?}");
    }

    /// Format 4 traces (no chain) are still read, and a format-4 reader's view of a format-5 trace (the version
    /// changed in the preamble, which no CRC covers) is a clear error.
    #[test]
    fn version_4_is_still_read_and_the_version_is_bound() {
        let t = Trace::parse(&sample_with(4, |_| {})).unwrap();
        assert!(t.damage.is_none(), "{:?}", t.damage);
        assert_eq!((t.format_version, t.records.len()), (4, 15));
        let mut bytes = sample_trace();
        bytes[8..12].copy_from_slice(&4u32.to_le_bytes());
        let e = Trace::parse(&bytes).unwrap_err();
        assert!(
            e.to_string().starts_with("chunk 0 at byte offset 12"),
            "{e}"
        );
    }

    /// A header no recording writes is refused before a replay loads anything.
    #[test]
    fn impossible_headers_are_refused() {
        for (edit, want) in [
            (
                (|h: &mut Header| h.fine_interval = 5) as fn(&mut Header),
                "fine_interval 5 does not divide hash_interval 16",
            ),
            (|h: &mut Header| h.hash_interval = 0, "at least 1"),
            (|h: &mut Header| h.frames_max = 0, "frames_max 0"),
            (
                |h: &mut Header| h.frames_max = u64::MAX,
                "is not a guest memory limit",
            ),
        ] {
            let mut header = sample_header();
            edit(&mut header);
            let mut w = TraceWriter::new(Vec::new()).unwrap();
            w.write_chunk(&Chunk::Header(Box::new(header))).unwrap();
            let e = Trace::parse(&w.into_inner()).unwrap_err();
            assert!(
                e.to_string().starts_with("chunk 0 at byte offset 12: "),
                "{e}"
            );
            assert!(e.to_string().contains(want), "{e}");
        }
    }

    /// The reader takes any `Read` and a length field that promises more than the input holds is a truncation
    /// named at its chunk, read in pieces (the input here hands out a few bytes per call).
    #[test]
    fn a_reader_in_small_pieces_reads_the_same_trace() {
        struct Trickle<'a>(&'a [u8]);
        impl std::io::Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = buf.len().min(self.0.len()).min(7);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let bytes = sample_trace();
        let whole = Trace::parse(&bytes).unwrap();
        let trickled = Trace::read(Trickle(&bytes)).unwrap();
        assert_eq!(trickled.records, whole.records);
        assert_eq!(trickled.summary, whole.summary);
        let mut long = bytes.clone();
        let second = frames(&bytes)[1].0;
        long[second..second + 4].copy_from_slice(&(200u32 << 20).to_le_bytes());
        let t = Trace::read(Trickle(&long)).unwrap();
        match t.damage {
            Some(TraceError::Truncated {
                chunk: 1,
                offset,
                expected,
                ..
            }) => {
                assert_eq!((offset, expected), (second, FRAME_BYTES + (200 << 20)));
            }
            other => panic!("{other:?}"),
        }
        assert!(t
            .damage
            .unwrap()
            .to_string()
            .contains("the trace ends early (truncated at chunk 1"));
    }

    #[test]
    fn wrong_version_is_named() {
        let mut bytes = sample_trace();
        bytes[8] = 9;
        let e = Trace::parse(&bytes).unwrap_err();
        assert_eq!(
            e,
            TraceError::Version {
                found: 9,
                oldest: FORMAT_VERSION_MIN,
                supported: FORMAT_VERSION
            }
        );
        assert!(e.to_string().contains("version 9"), "{e}");
    }

    #[test]
    fn truncation_keeps_the_complete_chunks() {
        let bytes = sample_trace();
        let full = Trace::parse(&bytes).unwrap();
        // Cut inside the third records chunk: the first two stay.
        let second_end = {
            let mut off = PREAMBLE_BYTES;
            for _ in 0..3 {
                let len = u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap()) as usize;
                off += FRAME_BYTES + len;
            }
            off
        };
        let t = Trace::parse(&bytes[..second_end + 5]).unwrap();
        assert_eq!(t.records, full.records[..10].to_vec());
        assert_eq!(t.icount_end, 32);
        match t.damage {
            Some(TraceError::Truncated { chunk, offset, .. }) => {
                assert_eq!((chunk, offset), (3, second_end));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn flipped_byte_is_a_checksum_error_naming_the_chunk() {
        let mut bytes = sample_trace();
        let last = bytes.len() - 3;
        bytes[last] ^= 0x40;
        let t = Trace::parse(&bytes).unwrap();
        let e = t.damage.unwrap();
        assert!(matches!(e, TraceError::Checksum { chunk: 4, .. }), "{e}");
        assert!(e.to_string().starts_with("chunk 4 at byte offset "), "{e}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        /// Any truncation and any mutation of bytes gives an error or a consistent prefix, never a panic.
        #[test]
        fn mutated_traces_never_panic(cut in 0usize..2000, flips in proptest::collection::vec((0usize..2000, any::<u8>()), 0..6)) {
            let mut bytes = sample_trace();
            for (at, x) in flips {
                let n = bytes.len();
                bytes[at % n] ^= x;
            }
            let cut = cut.min(bytes.len());
            let full = Trace::parse(&sample_trace()).unwrap();
            match Trace::parse(&bytes[..cut]) {
                // Every error names the place: the chunk and its byte offset, or the preamble's byte offset.
                Err(e) => {
                    let text = e.to_string();
                    prop_assert!(
                        text.starts_with("byte offset ") || text.starts_with("chunk "),
                        "an error without its place: {}", text
                    );
                    prop_assert!(text.contains("byte offset "), "{}", text);
                }
                Ok(t) => {
                    if let Some(e) = &t.damage {
                        prop_assert!(e.to_string().starts_with("chunk "), "{}", e);
                    }
                    // Whatever was read is a prefix of the original records, or a mutation that kept the checksum
                    // (the 8-byte preamble fields are not checksummed, so only the version can change there).
                    prop_assert!(t.records.len() <= full.records.len() || t.damage.is_some());
                    prop_assert!(t.summary.is_some() || t.damage.is_some());
                }
            }
        }

        /// A bad length field never makes the reader allocate or read past the end.
        #[test]
        fn huge_declared_lengths_are_refused(len in any::<u32>()) {
            let mut bytes = sample_trace();
            bytes[PREAMBLE_BYTES..PREAMBLE_BYTES + 4].copy_from_slice(&len.to_le_bytes());
            let r = Trace::parse(&bytes);
            let real = u32::from_le_bytes(sample_trace()[PREAMBLE_BYTES..PREAMBLE_BYTES + 4].try_into().unwrap());
            if len != real {
                prop_assert!(r.is_err());
            }
        }
    }
}
