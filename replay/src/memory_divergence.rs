//! The memory part of a divergence report: which pages differ at a checkpoint, which instruction or syscall of
//! the replay last wrote each, and which of the page's bytes the replay changed in the checkpoint interval.
//!
//! What is known: a format-3 trace holds, after each checkpoint, the digest of every page the recording changed
//! since the previous one (`Record::Pages`); applied in order they give the recording's digest of every page at
//! the checkpoint (`digest::apply_page_changes`), which is compared with the replay's (`digest::page_differences`).
//! The trace holds digests, not the recorded bytes, so the report shows the replay's bytes only: the 16-byte
//! rows of each differing page that changed in the replay between the previous checkpoint and this one.
//!
//! How the writers are found: the interval is re-executed from the replay's snapshot of the previous checkpoint,
//! first in chunks of `WRITER_SEARCH_CHUNK_INSNS` at block speed, noting for each page the last chunk that
//! changed it (a new dirty epoch per chunk: the page's frame was written, or replaced, or its mapping or
//! permissions changed); then each such chunk again, one instruction at a time. A syscall that writes guest
//! memory (read(2) into a buffer) is the instruction `syscall`, named with its number and the icount at which
//! the `syscalls` listing shows it. A format-2 trace has no page digests: the report says so and names none.
//!
//! It must not change what the replay computes: the re-execution only starts dirty epochs, which are
//! bookkeeping, not guest state.

use crate::digest::{
    apply_page_changes, digest_of_pages, page_differences, space_tag, PageDifference, PageMap,
};
use crate::replay::{ReplaySnapshot, Replayer, Writer};
use crate::trace::{Checkpoint, PageChanges};
use std::collections::BTreeSet;
use tandem_emulator::linux::Progress;
use tandem_emulator::memory::{DirtyCursor, Perms, PAGE_SIZE};

/// Differing pages listed by address in a report (the rest are counted).
pub const PAGES_LISTED_MAX: usize = 32;
/// Differing pages whose last writer and bytes are looked for (each costs a re-execution of one chunk).
pub const PAGES_TRACED_MAX: usize = 8;
/// Changed 16-byte rows shown per page.
pub const ROWS_SHOWN_MAX: usize = 4;
/// Instructions run at block speed between two looks at the dirty pages while looking for the last writers.
pub const WRITER_SEARCH_CHUNK_INSNS: u64 = 4096;
const ROW_BYTES: usize = 16;

/// A 16-byte row of a page: its guest address and each byte as replayed, None where it did not change.
pub type ChangedRow = (u64, [Option<u8>; ROW_BYTES]);

/// The memory part of a divergence at a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryReport {
    /// The previous checkpoint's icount: the interval is `interval_start..` the checkpoint.
    pub interval_start: u64,
    /// The first `PAGES_LISTED_MAX` differing pages, in address order.
    pub pages: Vec<PageReport>,
    /// How many pages differ in all.
    pub pages_differing_count: usize,
    /// What limits the report (a format-2 trace, a checkpoint whose page digests do not add up).
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageReport {
    pub difference: PageDifference,
    /// The replay's side of the page in the interval; only for the first `PAGES_TRACED_MAX` pages.
    pub trace: Option<PageTrace>,
}

/// What the replay did to one page between the previous checkpoint and this one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageTrace {
    /// The last instruction (or syscall) of the interval that changed the page in the replay.
    pub writer: Option<Writer>,
    pub mapped_before: bool,
    pub mapped_after: bool,
    /// The first `ROWS_SHOWN_MAX` 16-byte rows whose replayed bytes changed in the interval: (guest address,
    /// each byte as replayed at the checkpoint, None where it is unchanged).
    pub rows: Vec<ChangedRow>,
    pub rows_changed_count: usize,
}

/// The rows of a page that differ between `before` and `after` (a page not mapped counts as zeros).
fn changed_rows(
    address: u64,
    before: Option<&[u8]>,
    after: Option<&[u8]>,
) -> (Vec<ChangedRow>, usize) {
    let zeros = [0u8; PAGE_SIZE];
    let before = before.unwrap_or(&zeros);
    let after = after.unwrap_or(&zeros);
    let mut rows = Vec::new();
    let mut count = 0;
    for (i, (b, a)) in before
        .chunks(ROW_BYTES)
        .zip(after.chunks(ROW_BYTES))
        .enumerate()
    {
        if b == a {
            continue;
        }
        count += 1;
        if rows.len() < ROWS_SHOWN_MAX {
            let mut row = [None; ROW_BYTES];
            for (j, slot) in row.iter_mut().enumerate() {
                if a[j] != b[j] {
                    *slot = Some(a[j]);
                }
            }
            rows.push((address + (i * ROW_BYTES) as u64, row));
        }
    }
    (rows, count)
}

fn describe_page(state: Option<(u8, u64)>, side: &str) -> String {
    match state {
        Some((perms, digest)) => format!("{side} digest {digest:#018x} ({})", Perms(perms)),
        None => format!("not mapped in the {side}"),
    }
}

impl std::fmt::Display for MemoryReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.pages_differing_count > 0 {
            writeln!(
                f,
                "{} pages differ (the recording's page digests, from the trace, against the replay's):",
                self.pages_differing_count
            )?;
        }
        for p in &self.pages {
            let d = &p.difference;
            let written = match (d.written_recorded, d.written_replayed) {
                (true, true) => "written in this interval by both",
                (true, false) => "written in this interval by the recording only",
                (false, true) => "written in this interval by the replay only",
                (false, false) => "written in this interval by neither",
            };
            let content = if d.recorded == d.replayed {
                "the same digest in both".to_string()
            } else {
                format!(
                    "{}, {}",
                    describe_page(d.recorded, "recorded"),
                    describe_page(d.replayed, "replayed")
                )
            };
            writeln!(f, "  page {:#x}: {content}; {written}", d.address)?;
            let Some(t) = &p.trace else { continue };
            match &t.writer {
                Some(w) => writeln!(
                    f,
                    "    last written in the replay by the instruction at {w}"
                )?,
                None => writeln!(
                    f,
                    "    not written by the replay since icount {}",
                    self.interval_start
                )?,
            }
            if !t.mapped_after {
                writeln!(f, "    not mapped in the replay at the checkpoint")?;
                continue;
            }
            if t.rows_changed_count == 0 {
                writeln!(
                    f,
                    "    its replayed bytes are the same as at icount {}",
                    self.interval_start
                )?;
                continue;
            }
            writeln!(
                f,
                "    replayed bytes written in this interval ({} 16-byte rows changed since icount {}{}; .. unchanged):",
                t.rows_changed_count,
                self.interval_start,
                if t.mapped_before { "" } else { ", when it was not mapped: compared with zeros" }
            )?;
            for (address, row) in &t.rows {
                let bytes: Vec<String> = row
                    .iter()
                    .map(|b| b.map_or("..".to_string(), |b| format!("{b:02x}")))
                    .collect();
                writeln!(f, "      {address:#018x}  {}", bytes.join(" "))?;
            }
            if t.rows_changed_count > t.rows.len() {
                writeln!(
                    f,
                    "      ({} more rows changed)",
                    t.rows_changed_count - t.rows.len()
                )?;
            }
        }
        if self.pages_differing_count > self.pages.len() {
            writeln!(
                f,
                "  ... and {} more pages",
                self.pages_differing_count - self.pages.len()
            )?;
        }
        for note in &self.notes {
            writeln!(f, "  note: {note}")?;
        }
        Ok(())
    }
}

/// A page's mapping as the writer search compares it: its frame and permissions.
type PageState = Option<(u32, u8)>;

impl Replayer {
    /// The memory part of a divergence at checkpoint `c`, given the replay's page map there and the changes it
    /// made since the previous checkpoint (`previous`). Leaves the machine at `c.icount`.
    pub(crate) fn memory_report(
        &mut self,
        previous: &ReplaySnapshot,
        c: &Checkpoint,
        replayed: &PageMap,
        replayed_changes: &PageChanges,
    ) -> MemoryReport {
        let interval_start = previous.0.icount();
        let mut report = MemoryReport {
            interval_start,
            pages: Vec::new(),
            pages_differing_count: 0,
            notes: Vec::new(),
        };
        let Some(index) = self.page_changes.iter().position(|p| p.icount == c.icount) else {
            report.notes.push(format!(
                "this trace (format {}) holds a digest of all memory at each checkpoint but none per page, so the \
                 pages that differ cannot be named: record it again with this tandem",
                self.format_version
            ));
            return report;
        };
        let mut recorded = PageMap::new();
        for changes in &self.page_changes[..=index] {
            apply_page_changes(&mut recorded, changes);
        }
        let sum = digest_of_pages(&recorded, self.scheme());
        if sum != c.memory_digest {
            report.notes.push(format!(
                "the recorded page digests add up to {sum:#018x}, not to the checkpoint's memory digest {:#018x}: \
                 the trace's checkpoint is inconsistent (edited or damaged)",
                c.memory_digest
            ));
        }
        let differences = page_differences(
            &recorded,
            replayed,
            &self.page_changes[index],
            replayed_changes,
        );
        report.pages_differing_count = differences.len();
        let traced: Vec<u64> = differences
            .iter()
            .take(PAGES_TRACED_MAX)
            .map(|d| d.address)
            .collect();
        let mut traces = self.page_traces(previous, c.icount, &traced).into_iter();
        report.pages = differences
            .into_iter()
            .take(PAGES_LISTED_MAX)
            .map(|difference| PageReport {
                difference,
                trace: traces.next(),
            })
            .collect();
        report
    }

    /// The guest address of a page of the digests' page maps (tagged with its address space, see
    /// `digest::space_tag`) when that space is the running one: the only memory the writer search reads.
    fn running_address(&self, tagged: u64) -> Option<u64> {
        let untagged = tagged & (space_tag(1) - 1);
        (tagged - untagged == space_tag(self.hv.guest.space_key())).then_some(untagged)
    }

    fn page_state(&self, address: u64) -> PageState {
        let address = self.running_address(address)?;
        let mem = self.hv.guest.memory();
        Some((mem.frame_of(address)?.0, mem.perms(address)?.0))
    }

    fn page_bytes(&self, address: u64) -> Option<Vec<u8>> {
        let address = self.running_address(address)?;
        let mut buf = vec![0u8; PAGE_SIZE];
        self.hv
            .guest
            .memory()
            .peek(address, &mut buf)
            .ok()
            .map(|_| buf)
    }

    /// Which of `addresses` changed since `states` and `cursor` were taken (a cursor that cannot tell: all).
    fn pages_changed(
        &self,
        addresses: &[u64],
        states: &[PageState],
        cursor: &DirtyCursor,
    ) -> Vec<bool> {
        let Some(dirty) = self.hv.guest.memory().dirty_since(cursor) else {
            return vec![true; addresses.len()];
        };
        let dirty: BTreeSet<u32> = dirty.into_iter().map(|f| f.0).collect();
        addresses
            .iter()
            .zip(states)
            .map(|(&a, before)| {
                let now = self.page_state(a);
                now != *before || now.is_some_and(|(frame, _)| dirty.contains(&frame))
            })
            .collect()
    }

    /// Re-executes from `previous` to `icount` and returns, for each page of `addresses`, the last instruction
    /// that changed it and its rows that changed (see the module doc). Leaves the machine at `icount`.
    fn page_traces(
        &mut self,
        previous: &ReplaySnapshot,
        icount: u64,
        addresses: &[u64],
    ) -> Vec<PageTrace> {
        if addresses.is_empty() {
            return Vec::new();
        }
        // Pass 1: the last chunk that changed each page, at block speed.
        self.restore(previous);
        let before: Vec<Option<Vec<u8>>> = addresses.iter().map(|&a| self.page_bytes(a)).collect();
        let mut last_chunk: Vec<Option<u64>> = vec![None; addresses.len()];
        while self.hv.guest.icount() < icount {
            let from = self.hv.guest.icount();
            let states: Vec<PageState> = addresses.iter().map(|&a| self.page_state(a)).collect();
            let cursor = self.hv.guest.memory_mut().dirty_cursor();
            let progress = self
                .hv
                .run_to_completion((from + WRITER_SEARCH_CHUNK_INSNS).min(icount));
            for (slot, changed) in last_chunk
                .iter_mut()
                .zip(self.pages_changed(addresses, &states, &cursor))
            {
                if changed {
                    *slot = Some(from);
                }
            }
            if progress == Progress::Finished {
                break;
            }
        }
        let after: Vec<Option<Vec<u8>>> = addresses.iter().map(|&a| self.page_bytes(a)).collect();
        // Pass 2: each of those chunks one instruction at a time; the last change in it is the last writer.
        let mut writers: Vec<Option<(u64, u64, u64)>> = vec![None; addresses.len()];
        let starts: BTreeSet<u64> = last_chunk.iter().flatten().copied().collect();
        self.restore(previous);
        for start in starts {
            self.hv.run_to_completion(start);
            let end = (start + WRITER_SEARCH_CHUNK_INSNS).min(icount);
            while self.hv.guest.icount() < end {
                let at = self.hv.guest.icount();
                let rip = self.hv.guest.rip();
                let rax = self.hv.guest.registers().gpr[0];
                let states: Vec<PageState> =
                    addresses.iter().map(|&a| self.page_state(a)).collect();
                let cursor = self.hv.guest.memory_mut().dirty_cursor();
                let progress = self.hv.run(1);
                let changed = self.pages_changed(addresses, &states, &cursor);
                for (i, changed) in changed.into_iter().enumerate() {
                    if changed && last_chunk[i] == Some(start) {
                        writers[i] = Some((at, rip, rax));
                    }
                }
                if progress == Progress::Finished {
                    break;
                }
            }
        }
        self.hv.run_to_completion(icount);
        addresses
            .iter()
            .enumerate()
            .map(|(i, &address)| {
                let (rows, rows_changed_count) =
                    changed_rows(address, before[i].as_deref(), after[i].as_deref());
                PageTrace {
                    writer: writers[i].map(|(at, rip, rax)| self.writer(at, rip, rax)),
                    mapped_before: before[i].is_some(),
                    mapped_after: after[i].is_some(),
                    rows,
                    rows_changed_count,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_show_only_the_changed_bytes() {
        let before = vec![0u8; PAGE_SIZE];
        let mut after = before.clone();
        after[0x21] = 0xab;
        after[0x2f] = 0x01;
        for b in &mut after[0x100..0x100 + 16 * 6] {
            *b = 0x55;
        }
        let (rows, count) = changed_rows(0x7000, Some(&before), Some(&after));
        assert_eq!(count, 7);
        assert_eq!(rows.len(), ROWS_SHOWN_MAX);
        assert_eq!(rows[0].0, 0x7020);
        let mut expected = [None; ROW_BYTES];
        expected[1] = Some(0xab);
        expected[15] = Some(0x01);
        assert_eq!(rows[0].1, expected);
        assert_eq!(rows[1], (0x7100, [Some(0x55); ROW_BYTES]));
        // A page mapped in the interval is compared with zeros.
        let (rows, count) = changed_rows(0x7000, None, Some(&after));
        assert_eq!((rows.len(), count), (ROWS_SHOWN_MAX, 7));
        assert_eq!(changed_rows(0x7000, Some(&after), Some(&after)).1, 0);
    }
}
