//! A volume's initial content as it was read from the host: every entry in the order the kernel reads and
//! installs them (breadth first, names sorted), so that a volume installed from a `VolumeContent` is the volume
//! read from the host, inode numbers included. A recording keeps it in its trace (replay/src/trace.rs's
//! `VolumeRecord` is its twin on the wire) and a replay installs it from there, with no host directory.
//!
//! Invariants (`check`): paths are relative, made of plain names (not empty, ".", "..", no NUL), each entry's
//! parent is the root or a directory listed before it, no path twice, at most `VOLUME_ENTRIES_MAX` entries and
//! no file beyond `FILE_BYTES_MAX`. Content from a trace is checked before a machine installs it, so a forged
//! one is an error, never a panic.
//!
//! It must not: do IO (linux/volume.rs reads the host through `Host`).

use super::image::FILE_BYTES_MAX;
use super::VOLUME_ENTRIES_MAX;
use std::collections::BTreeSet;
use std::sync::Arc;

/// What one entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContentNode {
    File(Arc<Vec<u8>>),
    Dir,
    Symlink(Vec<u8>),
}

/// One entry: its path relative to the volume's root ("a/b"), its permission bits and what it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentEntry {
    pub path: Vec<u8>,
    pub mode: u32,
    pub node: ContentNode,
}

/// A volume's initial content, in reading order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VolumeContent {
    /// The root directory's permission bits.
    pub root_mode: u32,
    pub entries: Vec<ContentEntry>,
}

/// Longest relative path an entry may have (Linux's PATH_MAX).
pub const CONTENT_PATH_BYTES_MAX: usize = 4096;

/// Whether `path` is relative and made of plain names.
fn plain_path(path: &[u8]) -> bool {
    !path.is_empty()
        && path.len() <= CONTENT_PATH_BYTES_MAX
        && path
            .split(|&b| b == b'/')
            .all(|name| !name.is_empty() && name != b"." && name != b".." && !name.contains(&0))
}

impl VolumeContent {
    /// Checks the invariants of the module doc; the error names the first entry that breaks one.
    pub fn check(&self) -> Result<(), String> {
        if self.entries.len() > VOLUME_ENTRIES_MAX {
            return Err(format!(
                "{} entries, more than the limit of {VOLUME_ENTRIES_MAX}",
                self.entries.len()
            ));
        }
        let mut seen: BTreeSet<&[u8]> = BTreeSet::new();
        let mut dirs: BTreeSet<&[u8]> = BTreeSet::from([&b""[..]]);
        for (i, e) in self.entries.iter().enumerate() {
            let name = String::from_utf8_lossy(&e.path);
            if !plain_path(&e.path) {
                return Err(format!(
                    "entry {i} ({name:?}): not a relative path of plain names"
                ));
            }
            if !dirs.contains(super::image::parent_of(&e.path)) {
                return Err(format!(
                    "entry {i} ({name:?}): its directory is not listed before it"
                ));
            }
            if !seen.insert(&e.path) {
                return Err(format!("entry {i} ({name:?}): listed twice"));
            }
            match &e.node {
                ContentNode::Dir => {
                    dirs.insert(&e.path);
                }
                ContentNode::File(bytes) if bytes.len() as u64 > FILE_BYTES_MAX => {
                    return Err(format!(
                        "entry {i} ({name:?}): {} bytes, more than the limit of {FILE_BYTES_MAX}",
                        bytes.len()
                    ));
                }
                ContentNode::Symlink(target) if target.is_empty() || target.contains(&0) => {
                    return Err(format!("entry {i} ({name:?}): an empty or NUL link target"));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Bytes of file data it holds.
    pub fn file_bytes(&self) -> u64 {
        self.entries
            .iter()
            .map(|e| match &e.node {
                ContentNode::File(b) => b.len() as u64,
                _ => 0,
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, node: ContentNode) -> ContentEntry {
        ContentEntry {
            path: path.as_bytes().to_vec(),
            mode: 0o644,
            node,
        }
    }

    #[test]
    fn check_accepts_reading_order_and_names_what_breaks_it() {
        let file = || ContentNode::File(Arc::new(b"x".to_vec()));
        let good = VolumeContent {
            root_mode: 0o755,
            entries: vec![
                entry("a", ContentNode::Dir),
                entry("z", file()),
                entry("a/b", file()),
                entry("a/l", ContentNode::Symlink(b"b".to_vec())),
            ],
        };
        assert_eq!(good.check(), Ok(()));
        let cases: [(&[ContentEntry], &str); 6] = [
            (&[entry("a/b", file())], "its directory is not listed"),
            (&[entry("../x", file())], "plain names"),
            (&[entry("/x", file())], "plain names"),
            (&[entry("x", file()), entry("x", file())], "twice"),
            (&[entry("x", file()), entry("x/y", file())], "not listed"),
            (
                &[entry("l", ContentNode::Symlink(Vec::new()))],
                "link target",
            ),
        ];
        for (entries, expected) in cases {
            let c = VolumeContent {
                root_mode: 0o755,
                entries: entries.to_vec(),
            };
            let e = c.check().expect_err(expected);
            assert!(e.contains(expected), "{e}");
        }
    }
}
