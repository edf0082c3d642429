//! The CDP journal file: a base image of each volume, then every completed operation, each framed and
//! checksummed, appended as the operation completes.
//!
//! Layout (integers little-endian):
//!
//! ```text
//! preamble  "TANDEMCDP\0" (10 bytes), version (u32)
//! entry*    length (u32) | CRC-32 of the payload (u32, IEEE) | payload: bincode 1.3 (varint) of a `Record`
//! ```
//!
//! A journal starts with one `Record::Base` per volume (its content when the journal started, or after the last
//! compaction), then `Record::Op`s in completion order, numbered by `seq` (never reused: compaction keeps the
//! numbers of the entries it keeps). Each entry is written with one write(2) before the guest's syscall
//! returns, so every operation that completed for the guest is in the file (RPO zero for completed I/O, as far
//! as the host's page cache keeps what tandem wrote).
//!
//! Invariants: the reader never panics and never allocates more for an entry than the bytes really there nor
//! more than `ENTRY_BYTES_MAX`; a damaged entry (torn, corrupt, undecodable) ends the valid part: everything
//! before it is returned with a `Damage` naming the entry (counted from 0) and its byte offset.
//! A change to the encoding of `Record` (or of `IoOp`, `Entry` in the emulator) bumps `JOURNAL_VERSION`.

use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tandem_emulator::storage::{CompletedIo, Entry, FileImage, IoObserver, IoOp, VolumeImage};

pub const MAGIC: [u8; 10] = *b"TANDEMCDP\0";
pub const JOURNAL_VERSION: u32 = 1;
/// Largest entry accepted (a base image of a large volume is one entry).
pub const ENTRY_BYTES_MAX: u32 = 1 << 30;

/// A volume's content at a point: names and files, as `VolumeImage` holds them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseImage {
    pub root_mode: u32,
    pub names: Vec<(Vec<u8>, Entry)>,
    /// (file id, mode, bytes).
    pub files: Vec<(u64, u32, Vec<u8>)>,
}

impl BaseImage {
    pub fn of(image: &VolumeImage) -> BaseImage {
        BaseImage {
            root_mode: image.root_mode,
            names: image
                .names
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            files: image
                .files
                .iter()
                .map(|(id, f)| (*id, f.mode, f.bytes.to_vec()))
                .collect(),
        }
    }

    pub fn image(&self) -> VolumeImage {
        VolumeImage {
            root_mode: self.root_mode,
            names: self.names.iter().cloned().collect(),
            files: self
                .files
                .iter()
                .map(|(id, mode, bytes)| {
                    (
                        *id,
                        FileImage {
                            bytes: Arc::new(bytes.clone()),
                            mode: *mode,
                        },
                    )
                })
                .collect(),
        }
    }
}

/// Where in the run a record stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Point {
    pub icount: u64,
    /// Guest wall-clock nanoseconds since 1970.
    pub time_ns: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// A volume's content at `at`: every operation before it is folded in (compaction) or had none.
    Base {
        volume: u32,
        guest_root: Vec<u8>,
        at: Point,
        /// The marks folded into this base by compaction: they can still be named, and restore to the base.
        marks: Vec<Vec<u8>>,
        image: BaseImage,
    },
    /// One completed operation.
    Op {
        seq: u64,
        at: Point,
        tid: i32,
        volume: u32,
        op: IoOp,
    },
}

/// Where a journal stops being valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    /// The first bad entry, counted from 0.
    pub entry: usize,
    pub offset: u64,
    pub reason: String,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "entry {} at byte offset {}: {}",
            self.entry, self.offset, self.reason
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{path}: cannot be read: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a tandem CDP journal (it does not start with \"TANDEMCDP\")")]
    NotJournal { path: String },
    #[error("{path}: journal version {found}; this tandem reads version {JOURNAL_VERSION}")]
    Version { path: String, found: u32 },
}

fn options() -> impl bincode::Options {
    use bincode::Options;
    bincode::DefaultOptions::new()
        .with_limit(ENTRY_BYTES_MAX as u64)
        .reject_trailing_bytes()
}

/// One framed entry.
pub fn frame(record: &Record) -> Vec<u8> {
    use bincode::Options;
    // Encoding plain data into a Vec cannot fail short of the limit, which `ENTRY_BYTES_MAX` sets far above
    // what one entry of a bounded run holds.
    let payload = options().serialize(record).unwrap_or_default();
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

fn preamble() -> Vec<u8> {
    let mut p = MAGIC.to_vec();
    p.extend_from_slice(&JOURNAL_VERSION.to_le_bytes());
    p
}

/// A journal as read: its valid records and, if it is damaged, where.
#[derive(Debug)]
pub struct Journal {
    pub records: Vec<Record>,
    pub damage: Option<Damage>,
    pub bytes: u64,
}

/// Reads as much of `input` as it can fill `buf` with; returns the bytes read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Reads a journal file.
pub fn read_journal(path: &Path) -> Result<Journal, JournalError> {
    let io = |source| JournalError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    read_from(std::io::BufReader::new(file), &path.display().to_string())
}

/// Reads a journal from any reader (`name` for messages).
pub fn read_from(mut input: impl Read, name: &str) -> Result<Journal, JournalError> {
    use bincode::Options;
    let io = |source| JournalError::Io {
        path: name.to_string(),
        source,
    };
    let mut pre = [0u8; 14];
    let n = read_full(&mut input, &mut pre).map_err(io)?;
    if n < 10 || pre[..10] != MAGIC {
        return Err(JournalError::NotJournal {
            path: name.to_string(),
        });
    }
    let version = if n == 14 {
        u32::from_le_bytes([pre[10], pre[11], pre[12], pre[13]])
    } else {
        0
    };
    if version != JOURNAL_VERSION {
        return Err(JournalError::Version {
            path: name.to_string(),
            found: version,
        });
    }
    let mut offset = 14u64;
    let mut records = Vec::new();
    let damage = loop {
        let entry = records.len();
        let damaged = |reason: String| {
            Some(Damage {
                entry,
                offset,
                reason,
            })
        };
        let mut head = [0u8; 8];
        let got = read_full(&mut input, &mut head).map_err(io)?;
        if got == 0 {
            break None;
        }
        if got < 8 {
            break damaged(format!("torn: the frame header has {got} of 8 bytes"));
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len > ENTRY_BYTES_MAX {
            break damaged(format!(
                "length {len} is beyond the limit of {ENTRY_BYTES_MAX} bytes"
            ));
        }
        // Read in pieces, so a corrupt length costs no more memory than the bytes really there.
        let mut payload = Vec::new();
        let got = (&mut input)
            .take(len as u64)
            .read_to_end(&mut payload)
            .map_err(io)?;
        if got < len as usize {
            break damaged(format!("torn: {got} of {len} payload bytes"));
        }
        if crc32fast::hash(&payload) != crc {
            break damaged("checksum mismatch: the entry is corrupt".into());
        }
        match options().deserialize::<Record>(&payload) {
            Ok(r) => records.push(r),
            Err(e) => break damaged(format!("cannot decode: {e}")),
        }
        offset += 8 + len as u64;
    };
    if damage.is_none() && !matches!(records.first(), Some(Record::Base { .. }) | None) {
        return Ok(Journal {
            damage: Some(Damage {
                entry: 0,
                offset: 14,
                reason: "the journal does not start with a base image".into(),
            }),
            records: Vec::new(),
            bytes: offset,
        });
    }
    Ok(Journal {
        records,
        damage,
        bytes: offset,
    })
}

/// Where `tandem cdp mark` puts a mark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkAt {
    /// After every operation whose syscall was at or before this instruction count.
    Icount(u64),
    /// After every operation completed at or before this guest time (nanoseconds since 1970).
    TimeNs(u64),
}

#[derive(Debug, thiserror::Error)]
pub enum MarkError {
    #[error(transparent)]
    Read(#[from] JournalError),
    #[error("{path}: damaged at {damage}; a mark is added only to a valid journal (restore what it holds first)")]
    Damaged { path: String, damage: Damage },
    #[error("mark name {0:?}: give 1 to {MARK_NAME_BYTES_MAX} bytes, no NUL and no newline")]
    BadName(String),
    #[error("{path}: cannot be rewritten: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

use tandem_emulator::storage::MARK_NAME_BYTES_MAX;

/// The records of `journal` with a mark named `name` added at `at`: in completion order, after the operations
/// at or before the point (a point before the bases' is folded into them, as compaction folds marks). The mark
/// takes the sequence number of its place; the operations after it move up by one, so numbers stay unique and
/// in order. Returns the records and where the mark went (its point; None: folded into the bases).
pub fn with_mark(records: &[Record], name: &[u8], at: MarkAt) -> (Vec<Record>, Option<Point>) {
    let reached = |p: &Point| match at {
        MarkAt::Icount(n) => p.icount <= n,
        MarkAt::TimeNs(t) => p.time_ns <= t,
    };
    let bases_after = records.iter().any(|r| match r {
        Record::Base { at: base, .. } => base.icount > 0 && !reached(base),
        _ => false,
    });
    let mut out: Vec<Record> = records.to_vec();
    if bases_after {
        for r in &mut out {
            if let Record::Base { marks, .. } = r {
                marks.push(name.to_vec());
            }
        }
        return (out, None);
    }
    // The place: after the last operation the point reached (operations are in completion order).
    let bases_end = out
        .iter()
        .rposition(|r| matches!(r, Record::Base { .. }))
        .map_or(0, |i| i + 1);
    let mut place = bases_end;
    let mut last = out[..bases_end]
        .iter()
        .fold(Point::default(), |l, r| match r {
            Record::Base { at: p, .. } => Point {
                icount: l.icount.max(p.icount),
                time_ns: l.time_ns.max(p.time_ns),
            },
            _ => l,
        });
    for (i, r) in out.iter().enumerate().skip(bases_end) {
        match r {
            Record::Op { at: p, .. } if reached(p) => {
                place = i + 1;
                last = *p;
            }
            _ => break,
        }
    }
    // It takes the number of the operation it comes before (or the next one after the last).
    let seq_of = |r: &Record| match r {
        Record::Op { seq, .. } => Some(*seq),
        _ => None,
    };
    let seq = match out[place..].iter().find_map(seq_of) {
        Some(s) => s,
        None => out.iter().rev().find_map(seq_of).map_or(0, |s| s + 1),
    };
    let point = match at {
        MarkAt::Icount(n) => Point {
            icount: n,
            time_ns: last.time_ns,
        },
        MarkAt::TimeNs(t) => Point {
            icount: last.icount,
            time_ns: t,
        },
    };
    for r in &mut out[place..] {
        if let Record::Op { seq: s, .. } = r {
            *s += 1;
        }
    }
    let mark = Record::Op {
        seq,
        at: point,
        tid: 0,
        volume: 0,
        op: IoOp::Mark {
            name: name.to_vec(),
        },
    };
    out.insert(place, mark);
    (out, Some(point))
}

/// `tandem cdp mark`: adds a mark to the journal at `path`, rewriting it beside itself and renaming it over the
/// original, so the journal is whole and checksummed whatever happens. Refuses a damaged journal.
pub fn add_mark(path: &Path, name: &[u8], at: MarkAt) -> Result<Option<Point>, MarkError> {
    if name.is_empty()
        || name.len() > MARK_NAME_BYTES_MAX
        || name.contains(&0)
        || name.contains(&b'\n')
    {
        return Err(MarkError::BadName(
            String::from_utf8_lossy(name).into_owned(),
        ));
    }
    let display = path.display().to_string();
    let journal = read_journal(path)?;
    if let Some(damage) = journal.damage {
        return Err(MarkError::Damaged {
            path: display,
            damage,
        });
    }
    let (records, point) = with_mark(&journal.records, name, at);
    let mut bytes = preamble();
    for r in &records {
        bytes.extend_from_slice(&frame(r));
    }
    let mut partial = path.as_os_str().to_os_string();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let write = |source| MarkError::Write {
        path: display.clone(),
        source,
    };
    std::fs::write(&partial, &bytes).map_err(write)?;
    std::fs::File::open(&partial)
        .and_then(|f| f.sync_all())
        .map_err(write)?;
    std::fs::rename(&partial, path).map_err(write)?;
    Ok(point)
}

/// How a journal is kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Keep operations of at most this many instructions before the latest one; older ones are folded into the
    /// base images. None: keep everything.
    pub window_insns: Option<u64>,
    /// Keep the operations' entries below this many bytes by folding the oldest half of them into the base
    /// images when they grow past it (the file stays below the base images plus this). None: no bound.
    pub size_bytes_max: Option<u64>,
}

/// A volume's base as the writer keeps it: what the next compaction writes as its `Record::Base`.
struct VolumeBase {
    guest_root: Vec<u8>,
    /// The point of the last operation folded in.
    at: Point,
    /// The marks folded in.
    marks: Vec<Vec<u8>>,
    image: VolumeImage,
}

/// The journal being written: an `IoObserver` installed on the machine.
pub struct JournalWriter {
    path: PathBuf,
    file: Option<std::fs::File>,
    retention: Retention,
    seq_next: u64,
    /// The base of each volume, in volume order.
    bases: Vec<VolumeBase>,
    /// Operations after the bases with their framed sizes, kept only when the retention needs them.
    kept: std::collections::VecDeque<(Record, u64)>,
    bytes: u64,
    compactions: u64,
    error: Option<String>,
}

impl JournalWriter {
    /// Creates (or truncates) the journal file.
    pub fn create(path: &Path, retention: Retention) -> std::io::Result<JournalWriter> {
        let mut file = std::fs::File::create(path)?;
        file.write_all(&preamble())?;
        Ok(JournalWriter {
            path: path.to_path_buf(),
            file: Some(file),
            retention,
            seq_next: 0,
            bases: Vec::new(),
            kept: Default::default(),
            bytes: 14,
            compactions: 0,
            error: None,
        })
    }

    fn keeps_history(&self) -> bool {
        self.retention.window_insns.is_some() || self.retention.size_bytes_max.is_some()
    }

    fn append(&mut self, record: &Record) -> u64 {
        let framed = frame(record);
        if let Some(f) = &mut self.file {
            if let Err(e) = f.write_all(&framed) {
                self.error
                    .get_or_insert_with(|| format!("{}: cannot write: {e}", self.path.display()));
                self.file = None;
            }
        }
        self.bytes += framed.len() as u64;
        framed.len() as u64
    }

    /// Folds the oldest kept operations into the bases while `fold` says so, then rewrites the file as the
    /// bases plus what is kept (a new file renamed over the old one, so a crash leaves one or the other).
    fn compact(&mut self, mut fold: impl FnMut(&Record, u64) -> bool) {
        let mut folded = 0usize;
        while let Some((record, size)) = self.kept.front() {
            if !fold(record, *size) {
                break;
            }
            if let Some((Record::Op { at, volume, op, .. }, _)) = self.kept.pop_front() {
                if let Some(base) = self.bases.get_mut(volume as usize) {
                    base.image.apply(&op);
                    base.at = at;
                    if let IoOp::Mark { name } = op {
                        base.marks.push(name);
                    }
                }
                folded += 1;
            }
        }
        if folded == 0 {
            return;
        }
        // Files no name reaches any more (unlinked, renamed over) would otherwise pile up in the bases. The
        // operations are in the guest's order, so such a file is one the guest deleted (a write to it through a
        // descriptor still open shows in no tree either).
        for base in &mut self.bases {
            base.image.collect_orphans();
        }
        self.compactions += 1;
        let tmp = self.path.with_extension("compacting");
        let result = (|| -> std::io::Result<std::fs::File> {
            let mut f = std::fs::File::create(&tmp)?;
            let mut out = preamble();
            for (i, base) in self.bases.iter().enumerate() {
                out.extend(frame(&Record::Base {
                    volume: i as u32,
                    guest_root: base.guest_root.clone(),
                    at: base.at,
                    marks: base.marks.clone(),
                    image: BaseImage::of(&base.image),
                }));
            }
            for (record, _) in &self.kept {
                out.extend(frame(record));
            }
            f.write_all(&out)?;
            std::fs::rename(&tmp, &self.path)?;
            self.bytes = out.len() as u64;
            Ok(f)
        })();
        match result {
            Ok(f) => self.file = Some(f),
            Err(e) => {
                self.error
                    .get_or_insert_with(|| format!("{}: cannot compact: {e}", self.path.display()));
                self.file = None;
            }
        }
    }

    fn apply_retention(&mut self, latest_icount: u64) {
        if let Some(window) = self.retention.window_insns {
            let oldest = latest_icount.saturating_sub(window);
            self.compact(|r, _| matches!(r, Record::Op { at, .. } if at.icount < oldest));
        }
        if let Some(max) = self.retention.size_bytes_max {
            let kept_bytes: u64 = self.kept.iter().map(|(_, s)| *s).sum();
            if kept_bytes > max {
                // Fold the oldest half of the operations' bytes, so compaction happens once per max/2 bytes
                // journaled, not at every operation; the file stays below the bases plus `max`.
                let mut to_fold = kept_bytes / 2 + 1;
                self.compact(|_, size| {
                    let go = to_fold > 0;
                    to_fold = to_fold.saturating_sub(size);
                    go
                });
            }
        }
    }

    /// Ends the journal: the file is complete. Returns the first write error, if any.
    pub fn close(&mut self) -> Result<JournalStats, String> {
        if let Some(f) = self.file.take() {
            if let Err(e) = f.sync_all() {
                self.error
                    .get_or_insert_with(|| format!("{}: cannot sync: {e}", self.path.display()));
            }
        }
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(JournalStats {
                operations: self.seq_next,
                bytes: self.bytes,
                compactions: self.compactions,
            }),
        }
    }
}

/// What a finished journal holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalStats {
    /// Operations journaled (before any compaction folded them).
    pub operations: u64,
    pub bytes: u64,
    pub compactions: u64,
}

impl IoObserver for JournalWriter {
    fn volume_base(&mut self, volume: u32, guest_root: &[u8], image: &VolumeImage) {
        debug_assert_eq!(
            volume as usize,
            self.bases.len(),
            "bases come in volume order"
        );
        self.append(&Record::Base {
            volume,
            guest_root: guest_root.to_vec(),
            at: Point::default(),
            marks: Vec::new(),
            image: BaseImage::of(image),
        });
        self.bases.push(VolumeBase {
            guest_root: guest_root.to_vec(),
            at: Point::default(),
            marks: Vec::new(),
            image: image.clone(),
        });
    }

    fn completed(&mut self, io: &CompletedIo) {
        let record = Record::Op {
            seq: self.seq_next,
            at: Point {
                icount: io.icount,
                time_ns: io.time_ns,
            },
            tid: io.tid,
            volume: io.volume,
            op: io.op.clone(),
        };
        self.seq_next += 1;
        let size = self.append(&record);
        if self.keeps_history() {
            self.kept.push_back((record, size));
            self.apply_retention(io.icount);
        }
    }

    fn finish(&mut self) -> Result<String, String> {
        let stats = self.close()?;
        Ok(format!(
            "cdp journal {}: {} operations, {} bytes, {} compactions",
            self.path.display(),
            stats.operations,
            stats.bytes,
            stats.compactions
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_journal() -> Vec<u8> {
        let mut base = VolumeImage::new(0o755);
        base.apply(&IoOp::Create {
            path: b"a".to_vec(),
            file: 1,
            mode: 0o644,
        });
        let mut out = preamble();
        out.extend(frame(&Record::Base {
            volume: 0,
            guest_root: b"/vol".to_vec(),
            at: Point::default(),
            marks: Vec::new(),
            image: BaseImage::of(&base),
        }));
        for seq in 0..20u64 {
            let op = match seq % 4 {
                0 => IoOp::Write {
                    file: 1,
                    offset: seq * 3,
                    data: vec![seq as u8; 5],
                    durable: false,
                },
                1 => IoOp::Truncate {
                    file: 1,
                    size_bytes: seq,
                },
                2 => IoOp::Mark {
                    name: format!("m{seq}").into_bytes(),
                },
                _ => IoOp::SyncFile {
                    file: 1,
                    data_only: true,
                },
            };
            out.extend(frame(&Record::Op {
                seq,
                at: Point {
                    icount: 100 * seq,
                    time_ns: 7 * seq,
                },
                tid: 1000,
                volume: 0,
                op,
            }));
        }
        out
    }

    #[test]
    fn a_journal_reads_back_entry_for_entry() {
        let j = read_from(&sample_journal()[..], "sample").unwrap();
        assert!(j.damage.is_none());
        assert_eq!(j.records.len(), 21);
        assert!(matches!(j.records[20], Record::Op { seq: 19, .. }));
    }

    #[test]
    fn a_torn_tail_keeps_every_entry_before_it_and_names_the_torn_one() {
        let bytes = sample_journal();
        let j = read_from(&bytes[..bytes.len() - 1], "sample").unwrap();
        let d = j.damage.expect("damaged");
        assert_eq!((d.entry, j.records.len()), (20, 20));
        assert!(d.reason.contains("torn"), "{}", d.reason);
        assert!(d.offset < bytes.len() as u64);
    }

    proptest! {
        /// Any byte changed or any cut: never a panic; the records returned are a prefix of the real ones.
        #[test]
        fn mutated_journals_never_panic_and_keep_a_valid_prefix(
            at in 0usize..2000, xor in 1u8..=255, cut in proptest::option::of(0usize..2000)
        ) {
            let good = read_from(&sample_journal()[..], "sample").unwrap().records;
            let mut bytes = sample_journal();
            let at = at % bytes.len();
            bytes[at] ^= xor;
            if let Some(cut) = cut {
                bytes.truncate(cut % (bytes.len() + 1));
            }
            if let Ok(j) = read_from(&bytes[..], "mutated") {
                prop_assert!(j.records.len() <= good.len());
                // A flip inside a payload is caught by the CRC, so what is returned is what was written
                // (a flip in a length field may cut the journal short, never change an entry).
                for (r, g) in j.records.iter().zip(&good) {
                    prop_assert_eq!(r, g);
                }
            }
        }
    }
}
