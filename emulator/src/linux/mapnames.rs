//! Which file each file-backed mapping of an address space came from, for /proc/self/maps (and so for what reads
//! it: glibc's pthread_getattr_np, sanitizers, debuggers that find the loaded libraries there).
//!
//! The memory layer knows pages and permissions only; this is the kernel's record beside it, kept in step by
//! mmap (a file mapping names its range; any other mapping over it forgets what it covers), munmap, mremap and
//! the ELF loader (the program's and the interpreter's segments). A range keeps the file offset of its first
//! byte, so the part of a mapping left after a split shows the offset Linux shows (vm_pgoff advanced).
//!
//! A range also keeps the file's bytes as they were mapped (the copy-on-write `Arc` of the file's contents, so
//! keeping them costs nothing until the file changes) and where those bytes end in memory: a clean page can be
//! re-read from them exactly (memory-error containment, as Linux drops and re-reads a clean page-cache page),
//! and the debugger and gdb server read the mapped libraries' symbols from them.
//!
//! Invariants: ranges are page-aligned, non-empty and disjoint. Fork copies the record, execve replaces it.
//! Snapshots hold it as part of the process.

use std::collections::BTreeMap;
use std::sync::Arc;

/// A file's bytes as they were when mapped (shared with the file system's copy-on-write contents).
#[derive(Clone, PartialEq, Eq)]
pub struct FileBytes(pub Arc<Vec<u8>>);

impl std::fmt::Debug for FileBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileBytes({} bytes)", self.0.len())
    }
}

/// The file a mapping came from, as /proc/self/maps names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapFile {
    /// The guest path at the time of the mapping.
    pub path: Vec<u8>,
    /// st_dev and st_ino of the file.
    pub dev: u64,
    pub ino: u64,
    /// The file's bytes when it was mapped (None: not known, e.g. a device).
    pub contents: Option<FileBytes>,
}

/// One named range: [start, end) shows `file` from byte `offset` on.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Named {
    end: u64,
    offset: u64,
    /// Memory from this address on holds zeros, not file bytes (the rest of a segment's last page past its
    /// file size, as the ELF loader fills it; u64::MAX for mmap, which zero-fills past the end of the file).
    bytes_end: u64,
    file: MapFile,
}

/// The named ranges of one address space, by start address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapNames {
    ranges: BTreeMap<u64, Named>,
}

/// Bytes in a page (the memory layer's page size).
const PAGE_BYTES: usize = crate::memory::PAGE_SIZE;

/// A piece of a region as /proc/self/maps shows it: [start, end), and the file and offset if file-backed.
pub type Piece<'a> = (u64, u64, Option<(u64, &'a MapFile)>);

impl MapNames {
    /// [start, end) now shows `file` from `offset`, whatever it showed before.
    pub fn name(&mut self, start: u64, end: u64, offset: u64, file: MapFile) {
        self.name_bytes(start, end, offset, u64::MAX, file);
    }

    /// As `name`, with the memory from `bytes_end` on holding zeros instead of the file's bytes (an ELF
    /// segment's last page).
    pub fn name_bytes(&mut self, start: u64, end: u64, offset: u64, bytes_end: u64, file: MapFile) {
        assert!(start < end, "an empty named range");
        self.forget(start, end);
        self.ranges.insert(
            start,
            Named {
                end,
                offset,
                bytes_end,
                file,
            },
        );
    }

    /// The bytes the page at `addr` held when it was mapped, re-read from the file's bytes (zeros past the
    /// file's end and past `bytes_end`); None when the page is not file-backed or its bytes are not known.
    pub fn file_page(&self, addr: u64) -> Option<Box<[u8; PAGE_BYTES]>> {
        let (&start, n) = self.ranges.range(..=addr).next_back()?;
        if addr >= n.end {
            return None;
        }
        let contents = &n.file.contents.as_ref()?.0;
        let mut page = Box::new([0u8; PAGE_BYTES]);
        let valid = n.bytes_end.saturating_sub(addr).min(PAGE_BYTES as u64) as usize;
        let from = n.offset.checked_add(addr - start)?;
        if let Some(bytes) = usize::try_from(from).ok().and_then(|f| contents.get(f..)) {
            let len = bytes.len().min(valid);
            page[..len].copy_from_slice(&bytes[..len]);
        }
        Some(page)
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
                    bytes_end: n.bytes_end,
                    file: n.file.clone(),
                };
                (start, named)
            })
            .collect();
        self.forget(old, old + len);
        for (s, n) in moving {
            let (start, end) = (s - old + new, n.end - old + new);
            let bytes_end = match n.bytes_end {
                u64::MAX => u64::MAX,
                b => b.saturating_sub(old).saturating_add(new),
            };
            self.name_bytes(start, end, n.offset, bytes_end, n.file);
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
            contents: None,
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

    /// A clean page re-read from the mapped bytes: the file's bytes at the page's offset, zeros past the end of
    /// the file and past an ELF segment's file bytes, after a split and after mremap as before.
    #[test]
    fn a_page_is_reread_from_the_bytes_it_was_mapped_from() {
        let bytes: Vec<u8> = (0..3 * 4096 + 100).map(|i| (i % 251) as u8 + 1).collect();
        let mut f = file("/lib/x.so");
        f.contents = Some(FileBytes(std::sync::Arc::new(bytes.clone())));
        let mut m = MapNames::default();
        m.name(0x10000, 0x14000, 0x1000, f.clone());
        let page = m.file_page(0x11000).unwrap();
        assert_eq!(page[..], bytes[0x2000..0x3000]);
        let last = m.file_page(0x12000).unwrap();
        assert_eq!(last[..100], bytes[0x3000..]);
        assert!(last[100..].iter().all(|&b| b == 0));
        assert!(m.file_page(0x13000).unwrap().iter().all(|&b| b == 0));
        assert!(m.file_page(0x14000).is_none());
        // An ELF segment whose file bytes end inside its last page.
        m.name_bytes(0x20000, 0x22000, 0, 0x21010, f.clone());
        let seg = m.file_page(0x21000).unwrap();
        assert_eq!(seg[..0x10], bytes[0x1000..0x1010]);
        assert!(seg[0x10..].iter().all(|&b| b == 0));
        m.forget(0x20000, 0x21000);
        assert_eq!(m.file_page(0x21000).unwrap(), seg);
        m.moved(0x21000, 0x1000, 0x40000);
        assert_eq!(m.file_page(0x40000).unwrap(), seg);
        // No bytes known: no source.
        m.name(0x50000, 0x51000, 0, file("/dev/thing"));
        assert!(m.file_page(0x50000).is_none());
    }
}
