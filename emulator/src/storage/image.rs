//! A volume's content as data: names (relative paths) pointing at files, directories and symbolic links, and
//! the files' bytes by `FileId`. The disk model keeps its durable image in one, the CDP journal its base image,
//! and recovery applies journaled operations to one (`apply`), so there is one meaning of every operation.
//!
//! Invariants: every name's parent directory is a directory of the image (the root, "", always is); a name
//! pointing at a file points at an entry of `files`. `apply` never panics: an operation that does not fit the
//! image (a rename of a missing name: an operation a crash state lost the premise of) changes nothing and says
//! so by returning false.

use super::{FileId, IoOp};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Largest file an image holds: the guest's own limit on a file (writes and truncates beyond it fail in the
/// guest with EFBIG), so an operation asking for more comes from a damaged or forged journal and does not fit.
pub const FILE_BYTES_MAX: u64 = crate::linux::elf::IMAGE_SIZE_BYTES_MAX;

/// What a name points at. Serialisable: the CDP journal's base images hold it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Entry {
    File(FileId),
    Dir { mode: u32 },
    Symlink { target: Vec<u8> },
}

/// A file's bytes and permission bits. Bytes are shared copy-on-write between images.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileImage {
    pub bytes: Arc<Vec<u8>>,
    pub mode: u32,
}

/// What a path shows, as a tree walk or a host directory would: used to compare volumes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TreeNode {
    File { bytes: Arc<Vec<u8>>, mode: u32 },
    Dir { mode: u32 },
    Symlink { target: Vec<u8> },
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VolumeImage {
    /// Relative paths ("a/b") without the root.
    pub names: BTreeMap<Vec<u8>, Entry>,
    pub files: BTreeMap<FileId, FileImage>,
    /// The root directory's permission bits.
    pub root_mode: u32,
}

/// The parent of a relative path ("" for a name at the root).
pub fn parent_of(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => &path[..i],
        None => b"",
    }
}

/// `prefix/rest`, or `rest` at the root.
fn under(prefix: &[u8], rest: &[u8]) -> Vec<u8> {
    if prefix.is_empty() {
        return rest.to_vec();
    }
    let mut p = prefix.to_vec();
    p.push(b'/');
    p.extend_from_slice(rest);
    p
}

impl VolumeImage {
    pub fn new(root_mode: u32) -> VolumeImage {
        VolumeImage {
            root_mode,
            ..VolumeImage::default()
        }
    }

    fn is_dir(&self, path: &[u8]) -> bool {
        path.is_empty() || matches!(self.names.get(path), Some(Entry::Dir { .. }))
    }

    /// The names strictly below directory `dir`, in order.
    fn descendants(&self, dir: &[u8]) -> Vec<Vec<u8>> {
        let prefix = under(dir, b"");
        self.names
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn file_mut(&mut self, file: FileId) -> &mut FileImage {
        self.files.entry(file).or_insert_with(|| FileImage {
            bytes: Arc::new(Vec::new()),
            mode: 0o644,
        })
    }

    /// Applies one operation. Returns false, changing nothing, when it does not fit (its name's parent is not
    /// a directory here, or the name it moves or removes is missing). Syncs and marks fit and change nothing.
    pub fn apply(&mut self, op: &IoOp) -> bool {
        match op {
            IoOp::Write {
                file, offset, data, ..
            } => {
                let end = offset.saturating_add(data.len() as u64);
                if end > FILE_BYTES_MAX {
                    return false;
                }
                let f = self.file_mut(*file);
                let bytes = Arc::make_mut(&mut f.bytes);
                let (start, end) = (*offset as usize, end as usize);
                if bytes.len() < end {
                    bytes.resize(end, 0);
                }
                bytes[start..end].copy_from_slice(data);
                true
            }
            IoOp::Truncate { file, size_bytes } => {
                if *size_bytes > FILE_BYTES_MAX {
                    return false;
                }
                let f = self.file_mut(*file);
                Arc::make_mut(&mut f.bytes).resize(*size_bytes as usize, 0);
                true
            }
            IoOp::Create { path, file, mode } => {
                if !self.is_dir(parent_of(path)) {
                    return false;
                }
                self.file_mut(*file).mode = *mode;
                self.names.insert(path.clone(), Entry::File(*file));
                true
            }
            IoOp::Link { path, file } => {
                if !self.is_dir(parent_of(path)) {
                    return false;
                }
                self.file_mut(*file);
                self.names.insert(path.clone(), Entry::File(*file));
                true
            }
            IoOp::Mkdir { path, mode } => self.put(path, Entry::Dir { mode: *mode }),
            IoOp::Symlink { path, target } => self.put(
                path,
                Entry::Symlink {
                    target: target.clone(),
                },
            ),
            IoOp::Remove { path } => {
                for d in self.descendants(path) {
                    self.names.remove(&d);
                }
                self.names.remove(path).is_some()
            }
            IoOp::Rename { from, to } => self.rename(from, to),
            IoOp::Chmod { path, mode } => match self.names.get_mut(path) {
                Some(Entry::File(id)) => {
                    let id = *id;
                    self.file_mut(id).mode = *mode;
                    true
                }
                Some(Entry::Dir { mode: m }) => {
                    *m = *mode;
                    true
                }
                Some(Entry::Symlink { .. }) => true,
                None if path.is_empty() => {
                    self.root_mode = *mode;
                    true
                }
                None => false,
            },
            IoOp::SyncFile { .. }
            | IoOp::SyncDir { .. }
            | IoOp::SyncRange { .. }
            | IoOp::SyncAll
            | IoOp::Mark { .. } => true,
        }
    }

    fn put(&mut self, path: &[u8], entry: Entry) -> bool {
        if !self.is_dir(parent_of(path)) {
            return false;
        }
        self.names.insert(path.to_vec(), entry);
        true
    }

    fn rename(&mut self, from: &[u8], to: &[u8]) -> bool {
        let Some(entry) = self.names.get(from).cloned() else {
            return false;
        };
        if !self.is_dir(parent_of(to)) || to.starts_with(&under(from, b"")) {
            return false;
        }
        for d in self.descendants(to) {
            self.names.remove(&d);
        }
        let moved: Vec<(Vec<u8>, Entry)> = self
            .descendants(from)
            .into_iter()
            .filter_map(|d| self.names.remove(&d).map(|e| (d, e)))
            .collect();
        self.names.remove(from);
        self.names.insert(to.to_vec(), entry);
        for (d, e) in moved {
            let rest = &d[from.len() + 1..];
            self.names.insert(under(to, rest), e);
        }
        true
    }

    /// Drops files no name points at. Not done by `apply`: a file may be unnamed for a while and named later (a
    /// disk whose data of a new file became durable before its name did), so only a caller that knows no
    /// operation will name them again (a final export) collects them.
    pub fn collect_orphans(&mut self) {
        let named: std::collections::BTreeSet<FileId> = self
            .names
            .values()
            .filter_map(|e| match e {
                Entry::File(id) => Some(*id),
                _ => None,
            })
            .collect();
        self.files.retain(|id, _| named.contains(id));
    }

    /// The tree the names show, for comparisons and export: every path with its node.
    pub fn tree(&self) -> BTreeMap<Vec<u8>, TreeNode> {
        self.names
            .iter()
            .map(|(path, e)| {
                let node = match e {
                    Entry::File(id) => {
                        let f = self.files.get(id).cloned().unwrap_or(FileImage {
                            bytes: Arc::new(Vec::new()),
                            mode: 0o644,
                        });
                        TreeNode::File {
                            bytes: f.bytes,
                            mode: f.mode,
                        }
                    }
                    Entry::Dir { mode } => TreeNode::Dir { mode: *mode },
                    Entry::Symlink { target } => TreeNode::Symlink {
                        target: target.clone(),
                    },
                };
                (path.clone(), node)
            })
            .collect()
    }

    /// Bytes held by the files.
    pub fn file_bytes(&self) -> u64 {
        self.files.values().map(|f| f.bytes.len() as u64).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(file: FileId, offset: u64, data: &[u8]) -> IoOp {
        IoOp::Write {
            file,
            offset,
            data: data.to_vec(),
            durable: false,
        }
    }

    #[test]
    fn a_directory_rename_moves_its_subtree_and_replaces_the_target() {
        let mut im = VolumeImage::new(0o755);
        assert!(im.apply(&IoOp::Mkdir {
            path: b"d".to_vec(),
            mode: 0o755
        }));
        assert!(im.apply(&IoOp::Create {
            path: b"d/f".to_vec(),
            file: 7,
            mode: 0o600
        }));
        assert!(im.apply(&write(7, 3, b"xyz")));
        assert!(im.apply(&IoOp::Mkdir {
            path: b"e".to_vec(),
            mode: 0o700
        }));
        assert!(im.apply(&IoOp::Rename {
            from: b"d".to_vec(),
            to: b"e".to_vec()
        }));
        let tree = im.tree();
        let names: Vec<&[u8]> = tree.keys().map(|k| k.as_slice()).collect();
        assert_eq!(names, vec![&b"e"[..], b"e/f"]);
        assert_eq!(
            tree[&b"e/f"[..]],
            TreeNode::File {
                bytes: Arc::new(b"\0\0\0xyz".to_vec()),
                mode: 0o600
            }
        );
        // A directory cannot move below itself, and a missing name does not move.
        assert!(!im.apply(&IoOp::Rename {
            from: b"e".to_vec(),
            to: b"e/g".to_vec()
        }));
        assert!(!im.apply(&IoOp::Rename {
            from: b"nothing".to_vec(),
            to: b"x".to_vec()
        }));
    }

    #[test]
    fn hard_links_share_bytes_and_unnamed_files_are_collected_on_request() {
        let mut im = VolumeImage::new(0o755);
        im.apply(&IoOp::Create {
            path: b"a".to_vec(),
            file: 1,
            mode: 0o644,
        });
        im.apply(&IoOp::Link {
            path: b"b".to_vec(),
            file: 1,
        });
        im.apply(&write(1, 0, b"hello"));
        im.apply(&IoOp::Truncate {
            file: 1,
            size_bytes: 4,
        });
        assert_eq!(im.tree()[&b"b"[..]], im.tree()[&b"a"[..]]);
        im.apply(&IoOp::Remove {
            path: b"a".to_vec(),
        });
        assert_eq!(im.files.len(), 1);
        im.apply(&IoOp::Remove {
            path: b"b".to_vec(),
        });
        assert!(im.names.is_empty() && im.tree().is_empty());
        assert_eq!(im.files.len(), 1, "kept until collected");
        im.collect_orphans();
        assert!(im.files.is_empty());
        // A name in a missing directory does not fit.
        assert!(!im.apply(&IoOp::Create {
            path: b"no/such".to_vec(),
            file: 2,
            mode: 0o644
        }));
    }
}
