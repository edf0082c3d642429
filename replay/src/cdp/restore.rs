//! Point-in-time recovery: a volume as it was after any completed operation, from a journal's base image and the
//! operations up to the point, and the writing of a volume image into a new host directory (restore and
//! `tandem run --export` share it).
//!
//! Points: an instruction count (every operation whose syscall was at or before it), a guest time (every
//! operation completed at or before it), a mark the guest named (every operation up to and including the first
//! mark of that name), an entry number, or the end.

use super::journal::{Journal, Point, Record};
use std::path::Path;
use tandem_emulator::storage::{TreeNode, VolumeImage};

/// A point to restore to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum At {
    Icount(u64),
    TimeNs(u64),
    Mark(Vec<u8>),
    Seq(u64),
    End,
}

impl At {
    /// `ICOUNT` (digits), `icount:N`, `time:NS` (guest nanoseconds since 1970), `mark:NAME`, `seq:N` or `end`.
    pub fn parse(text: &str) -> Result<At, String> {
        let number = |s: &str| {
            s.replace('_', "")
                .parse::<u64>()
                .map_err(|_| format!("--at {text}: {s:?} is not a number"))
        };
        Ok(match text.split_once(':') {
            None if text == "end" => At::End,
            None => At::Icount(number(text).map_err(|_| {
                format!(
                    "--at {text}: expected ICOUNT, icount:N, time:NS, mark:NAME, seq:N or end"
                )
            })?),
            Some(("icount", n)) => At::Icount(number(n)?),
            Some(("time", n)) => At::TimeNs(number(n)?),
            Some(("seq", n)) => At::Seq(number(n)?),
            Some(("mark", name)) if !name.is_empty() => At::Mark(name.as_bytes().to_vec()),
            Some((kind, _)) => {
                return Err(format!(
                    "--at {text}: unknown kind {kind:?}; use icount:N, time:NS, mark:NAME, seq:N or end"
                ))
            }
        })
    }
}

/// The result of a restore.
#[derive(Debug)]
pub struct Restored {
    pub image: VolumeImage,
    /// Operations applied on top of the base.
    pub applied: u64,
    /// The point of the last operation applied (or of the base).
    pub last: Point,
    /// The point lies beyond the journal's valid part (it is damaged): the image is its last valid state.
    pub beyond_damage: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("the journal has no volume {0} (it has {1})")]
    NoVolume(u32, usize),
    #[error("no mark named {0:?} in the journal")]
    NoMark(String),
    #[error("the point is before the journal's base (compaction folded everything up to icount {0}); name a later point")]
    BeforeBase(u64),
}

/// Volume `volume` at point `at`.
pub fn restore(journal: &Journal, volume: u32, at: &At) -> Result<Restored, RestoreError> {
    let bases: Vec<_> = journal
        .records
        .iter()
        .filter_map(|r| match r {
            Record::Base {
                volume,
                at,
                marks,
                image,
                ..
            } => Some((*volume, *at, marks, image)),
            _ => None,
        })
        .collect();
    let (_, base_at, base_marks, base) = bases
        .iter()
        .find(|b| b.0 == volume)
        .ok_or(RestoreError::NoVolume(volume, bases.len()))?;
    let mut restored = Restored {
        image: base.image(),
        applied: 0,
        last: *base_at,
        beyond_damage: false,
    };
    if let At::Mark(name) = at {
        if base_marks.contains(name) {
            return Ok(restored);
        }
    }
    let before_base = match at {
        At::Icount(n) => *n < base_at.icount,
        At::TimeNs(t) => *t < base_at.time_ns,
        _ => false,
    };
    if before_base && base_at.icount > 0 {
        return Err(RestoreError::BeforeBase(base_at.icount));
    }
    let mut reached = false;
    for r in &journal.records {
        let Record::Op {
            seq,
            at: point,
            volume: v,
            op,
            ..
        } = r
        else {
            continue;
        };
        let inside = match at {
            At::Icount(n) => point.icount <= *n,
            At::TimeNs(t) => point.time_ns <= *t,
            At::Seq(s) => seq <= s,
            At::Mark(_) | At::End => true,
        };
        if !inside {
            reached = true;
            break;
        }
        if *v == volume && op.changes_content() {
            restored.image.apply(op);
            restored.applied += 1;
            restored.last = *point;
        }
        if let (At::Mark(want), tandem_emulator::storage::IoOp::Mark { name }) = (at, op) {
            if want == name {
                reached = true;
                break;
            }
        }
    }
    if let At::Mark(name) = at {
        if !reached {
            return Err(RestoreError::NoMark(String::from_utf8_lossy(name).into()));
        }
    }
    restored.beyond_damage = journal.damage.is_some() && !reached;
    Ok(restored)
}

/// Writes a volume image into `dir`, which must not exist or be empty: directories, files with their bytes and
/// permission bits, symbolic links. Directory modes are set last (a read-only directory is filled first).
pub fn materialize(image: &VolumeImage, dir: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    let perms = |mode: u32| std::fs::Permissions::from_mode(mode & 0o7777);
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(std::io::Error::other(format!(
                    "{} is not empty; name a new directory",
                    dir.display()
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(dir)?,
        Err(e) => return Err(e),
    }
    let tree = image.tree();
    for (rel, node) in &tree {
        let path = dir.join(std::ffi::OsStr::from_bytes(rel));
        match node {
            TreeNode::Dir { .. } => std::fs::create_dir(&path)?,
            TreeNode::File { bytes, mode } => {
                std::fs::write(&path, bytes.as_slice())?;
                std::fs::set_permissions(&path, perms(*mode))?;
            }
            TreeNode::Symlink { target } => {
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), &path)?
            }
        }
    }
    for (rel, node) in tree.iter().rev() {
        if let TreeNode::Dir { mode } = node {
            std::fs::set_permissions(dir.join(std::ffi::OsStr::from_bytes(rel)), perms(*mode))?;
        }
    }
    std::fs::set_permissions(dir, perms(image.root_mode))?;
    Ok(())
}
