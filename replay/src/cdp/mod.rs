//! Continuous data protection of guest I/O: the journal of every completed operation on the guest's volumes
//! (journal.rs: framing, checksums, retention, compaction, marks), point-in-time recovery from it (restore.rs),
//! and the listing `tandem cdp list` prints.
//!
//! The journal is an `IoObserver` of the machine (emulator/src/storage/): the guest kernel hands it each
//! operation as it completes, with icount, guest time and task; nothing here reaches into the guest. Recovery
//! applies the same `VolumeImage::apply` the disk model uses, so "the volume after operation N" has one meaning.
//! The oracle (tests/cdp.rs): the volume restored at P equals the volume of the same deterministic run stopped
//! at P and exported.

pub mod journal;
pub mod restore;

pub use journal::{
    add_mark, read_journal, with_mark, Journal, JournalWriter, MarkAt, Record, Retention,
};
pub use restore::{materialize, restore, At, Restored};

use tandem_emulator::storage::IoOp;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// One line describing an operation, as `tandem cdp list` shows it.
pub fn describe_op(op: &IoOp) -> String {
    match op {
        IoOp::Write {
            file,
            offset,
            data,
            durable,
        } => format!(
            "write file {file} offset {offset} {} bytes{}",
            data.len(),
            if *durable { " (durable)" } else { "" }
        ),
        IoOp::Truncate { file, size_bytes } => format!("truncate file {file} to {size_bytes}"),
        IoOp::Create { path, file, mode } => {
            format!("create {} file {file} mode {mode:o}", text(path))
        }
        IoOp::Link { path, file } => format!("link {} file {file}", text(path)),
        IoOp::Mkdir { path, mode } => format!("mkdir {} mode {mode:o}", text(path)),
        IoOp::Symlink { path, target } => format!("symlink {} -> {}", text(path), text(target)),
        IoOp::Remove { path } => format!("remove {}", text(path)),
        IoOp::Rename { from, to } => format!("rename {} -> {}", text(from), text(to)),
        IoOp::Chmod { path, mode } => format!("chmod {} {mode:o}", text(path)),
        IoOp::SyncFile { file, data_only } => format!(
            "{} file {file}",
            if *data_only { "fdatasync" } else { "fsync" }
        ),
        IoOp::SyncDir { path } => format!("fsync dir /{}", text(path)),
        IoOp::SyncRange {
            file,
            offset,
            len_bytes,
        } => format!("sync_file_range file {file} offset {offset} len {len_bytes}"),
        IoOp::SyncAll => "sync".into(),
        IoOp::Mark { name } => format!("mark {}", text(name)),
    }
}

/// One line per record.
pub fn describe(record: &Record) -> String {
    match record {
        Record::Base {
            volume,
            guest_root,
            at,
            marks,
            image,
        } => {
            let bytes: usize = image.files.iter().map(|f| f.2.len()).sum();
            let mut line = format!(
                "base volume {volume} at {} (icount {}): {} names, {} files, {bytes} bytes",
                text(guest_root),
                at.icount,
                image.names.len(),
                image.files.len()
            );
            if !marks.is_empty() {
                let names: Vec<String> = marks.iter().map(|m| text(m)).collect();
                line.push_str(&format!("; folded marks: {}", names.join(", ")));
            }
            line
        }
        Record::Op {
            seq,
            at,
            tid,
            volume,
            op,
        } => format!(
            "seq {seq} icount {} time {} tid {tid} volume {volume}: {}",
            at.icount,
            at.time_ns,
            describe_op(op)
        ),
    }
}
