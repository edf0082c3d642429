//! Which file each file-backed mapping of an address space came from, for /proc/self/maps (and so for what reads
//! it: glibc's pthread_getattr_np, sanitizers, debuggers that find the loaded libraries there).
//!
//! The memory layer knows pages and permissions only; this is the kernel's record beside it, kept in step by
//! mmap (a file mapping names its range; any other mapping over it forgets what it covers), munmap, mremap and
//! the ELF loader (the program's and the interpreter's segments). A range keeps the file offset of its first
//! byte, so the part of a mapping left after a split shows the offset Linux shows (vm_pgoff advanced).
//!
//! Invariants: ranges are page-aligned, non-empty and disjoint. Fork copies the record, execve replaces it.
//! Snapshots hold it as part of the process.

use std::collections::BTreeMap;

/// The file a mapping came from, as /proc/self/maps names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapFile {
    /// The guest path at the time of the mapping.
    pub path: Vec<u8>,
    /// st_dev and st_ino of the file.
    pub dev: u64,
    pub ino: u64,
}

/// One named range: [start, end) shows `file` from byte `offset` on.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Named {
    end: u64,
    offset: u64,
    file: MapFile,
}

/// The named ranges of one address space, by start address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapNames {
    ranges: BTreeMap<u64, Named>,
}

/// A piece of a region as /proc/self/maps shows it: [start, end), and the file and offset if file-backed.
pub type Piece<'a> = (u64, u64, Option<(u64, &'a MapFile)>);

impl MapNames {
    /// [start, end) now shows `file` from `offset`, whatever it showed before.
    pub fn name(&mut self, start: u64, end: u64, offset: u64, file: MapFile) {
        assert!(start < end, "an empty named range");
        self.forget(start, end);
        self.ranges.insert(start, Named { end, offset, file });
    }

    /// [start, end) is no longer file-backed (unmapped, or mapped anew): ranges overlapping it are cut.
    pub fn forget(&mut self, start: u64, end: u64) {
        let overlapping: Vec<u64> = self
            .ranges
            .range(..end)
            .filter(|(_, n)| n.end > start)
            .map(|(&s, _)| s)
            .collect();
        for s in overlapping {
            let n = self.ranges.remove(&s).expect("listed above");
            if s < start {
                self.ranges.insert(
                    s,
                    Named {
                        end: start,
                        ..n.clone()
                    },
                );
            }
            if n.end > end {
                let offset = n.offset + (end - s);
                self.ranges.insert(end, Named { offset, ..n });
            }
        }
    }

    /// mremap moved [old, old + len) to `new` (the pages grown after it are anonymous).
    pub fn moved(&mut self, old: u64, len: u64, new: u64) {
        let moving: Vec<(u64, Named)> = self
            .ranges
            .range(..old + len)
            .filter(|(_, n)| n.end > old)
            .map(|(&s, n)| {
                let start = s.max(old);
                let named = Named {
                    end: n.end.min(old + len),
                    offset: n.offset + (start - s),
                    file: n.file.clone(),
                };
                (start, named)
            })
            .collect();
        self.forget(old, old + len);
        for (s, n) in moving {
            let (start, end) = (s - old + new, n.end - old + new);
            self.name(start, end, n.offset, n.file);
        }
    }

    /// [start, end) cut where named ranges begin and end, each piece with its file and offset.
    pub fn pieces(&self, start: u64, end: u64) -> Vec<Piece<'_>> {
        let mut out = Vec::new();
        let mut at = start;
        for (&s, n) in self.ranges.range(..end).filter(|(_, n)| n.end > start) {
            let from = s.max(start);
            if at < from {
                out.push((at, from, None));
            }
            let to = n.end.min(end);
            // Adjacent ranges stay apart even when one file continues at contiguous offsets: they come from
            // different mappings, which Linux does not merge once one holds written pages (a loader's RELRO
            // part beside the read-only data, as Linux shows them).
            out.push((from, to, Some((n.offset + (from - s), &n.file))));
            at = to;
        }
        if at < end {
            out.push((at, end, None));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(p: &str) -> MapFile {
        MapFile {
            path: p.as_bytes().to_vec(),
            dev: 0x801,
            ino: 7,
        }
    }

    #[test]
    fn a_mapping_over_the_middle_splits_with_advanced_offsets() {
        let mut m = MapNames::default();
        m.name(0x1000, 0x5000, 0x2000, file("/lib/a.so"));
        m.forget(0x2000, 0x3000);
        let p = m.pieces(0x0, 0x6000);
        let shape: Vec<_> = p
            .iter()
            .map(|&(s, e, f)| (s, e, f.map(|(o, _)| o)))
            .collect();
        assert_eq!(
            shape,
            vec![
                (0x0, 0x1000, None),
                (0x1000, 0x2000, Some(0x2000)),
                (0x2000, 0x3000, None),
                (0x3000, 0x5000, Some(0x4000)),
                (0x5000, 0x6000, None),
            ]
        );
        m.name(0x2000, 0x3000, 0, file("/lib/b.so"));
        assert_eq!(m.pieces(0x2000, 0x3000)[0].2.unwrap().1.path, b"/lib/b.so");
    }

    #[test]
    fn mremap_carries_the_name_and_offset() {
        let mut m = MapNames::default();
        m.name(0x10000, 0x14000, 0, file("/f"));
        m.moved(0x12000, 0x2000, 0x80000);
        assert_eq!(m.pieces(0x12000, 0x14000), vec![(0x12000, 0x14000, None)]);
        let p = m.pieces(0x80000, 0x83000);
        assert_eq!(p.len(), 2);
        assert_eq!(
            (p[0].0, p[0].1, p[0].2.unwrap().0),
            (0x80000, 0x82000, 0x2000)
        );
        assert_eq!(p[1], (0x82000, 0x83000, None));
    }
}
