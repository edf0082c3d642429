//! Where two runs part (`tandem diff`): two logs of system calls (`calls::RunLog`, from two recordings of
//! different binaries, inputs or seeds, or from a baseline and a new run) aligned call by call.
//!
//! The first parting point is exact: the first index at which the calls differ (by `Call::same_as`), or where
//! one run's calls end. After it the remaining calls are aligned by Myers' O((N+M)D) algorithm (E. Myers, "An
//! O(ND) difference algorithm and its variations", 1986) over the calls' keys, after the common suffix is set
//! aside, so that later differences are reported as hunks (calls only in A, only in B, or replaced) rather than
//! as everything after the first. Memory is bounded: the search keeps one frontier per edit, and stops after
//! `EDITS_MAX` edits; the report then says the alignment is incomplete and shows one hunk for the rest.
//!
//! Behaviour is the calls, the exit status and the output bytes. The instruction count and the final state hash
//! differ between any two builds of a program, so they are reported as end notes and count as a difference only
//! when asked (`exact`).

use crate::calls::{Call, RunLog};
use serde::Serialize;

/// Edits the alignment searches before it gives up on the rest.
pub const EDITS_MAX: usize = 1000;
/// Hunks of later differences listed.
pub const HUNKS_SHOWN: usize = 20;

/// A run of calls that differ: `a` in the first run is replaced by `b` in the second (one may be empty).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Hunk {
    pub a_start: usize,
    pub a_end: usize,
    pub b_start: usize,
    pub b_end: usize,
}

/// The first point where two runs part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Parting {
    /// The index of the first differing call in each run (equal: the calls before it agree).
    pub index: usize,
    /// The call in each run there (None when that run made no more calls).
    pub a: Option<Call>,
    pub b: Option<Call>,
    /// What differs, in words: "the result", "the system call", "A made no more calls".
    pub what: String,
}

/// A difference of how the runs ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EndDifference {
    pub what: String,
    pub a: String,
    pub b: String,
    /// Counts as a difference of behaviour (exit status, output), rather than a note (icount, state hash).
    pub behaviour: bool,
}

/// The comparison of two runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Comparison {
    pub calls_a: usize,
    pub calls_b: usize,
    pub first: Option<Parting>,
    /// The differences after the first, aligned (the first hunk starts at the parting point).
    pub hunks: Vec<Hunk>,
    /// False when the alignment stopped at `EDITS_MAX` edits (the last hunk then covers the rest).
    pub aligned: bool,
    pub end: Vec<EndDifference>,
    /// One of the logs stopped at `calls::CALLS_MAX`.
    pub truncated: bool,
}

impl Comparison {
    /// Whether the runs behave alike (with `exact`, also the same icount and final state).
    pub fn same(&self, exact: bool) -> bool {
        self.first.is_none() && self.end.iter().all(|e| !(e.behaviour || exact))
    }
}

/// Compares two runs.
pub fn compare(a: &RunLog, b: &RunLog) -> Comparison {
    let (first, hunks, aligned) = compare_calls(&a.calls, &b.calls);
    Comparison {
        calls_a: a.calls.len(),
        calls_b: b.calls.len(),
        first,
        hunks,
        aligned,
        end: end_differences(a, b),
        truncated: a.truncated || b.truncated,
    }
}

/// The first parting point of two call sequences and the hunks from it on.
pub fn compare_calls(a: &[Call], b: &[Call]) -> (Option<Parting>, Vec<Hunk>, bool) {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x.same_as(y)).count();
    if prefix == a.len() && prefix == b.len() {
        return (None, Vec::new(), true);
    }
    let (x, y) = (a.get(prefix), b.get(prefix));
    let what = match (x, y) {
        (Some(x), Some(y)) => x.difference(y),
        (None, _) => "A made no more system calls".into(),
        (_, None) => "B made no more system calls".into(),
    };
    let parting = Parting {
        index: prefix,
        a: x.cloned(),
        b: y.cloned(),
        what,
    };
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x.same_as(y))
        .count();
    let keys_a: Vec<u64> = a[prefix..a.len() - suffix].iter().map(Call::key).collect();
    let keys_b: Vec<u64> = b[prefix..b.len() - suffix].iter().map(Call::key).collect();
    let (mut hunks, aligned) = match align(&keys_a, &keys_b, EDITS_MAX) {
        Some(h) => (h, true),
        None => (
            vec![Hunk {
                a_start: 0,
                a_end: keys_a.len(),
                b_start: 0,
                b_end: keys_b.len(),
            }],
            false,
        ),
    };
    for h in &mut hunks {
        h.a_start += prefix;
        h.a_end += prefix;
        h.b_start += prefix;
        h.b_end += prefix;
    }
    (Some(parting), hunks, aligned)
}

/// Myers' greedy forward search for the shortest edit script from `a` to `b`, as hunks; None past `edits_max`.
/// The frontier of each edit count d (the furthest x on each diagonal k in -d..=d) is kept for the way back.
pub fn align(a: &[u64], b: &[u64], edits_max: usize) -> Option<Vec<Hunk>> {
    let (n, m) = (a.len() as isize, b.len() as isize);
    let max = edits_max.min(a.len() + b.len()) as isize;
    let offset = max + 1;
    let mut v = vec![0isize; 2 * offset as usize + 1];
    let mut frontiers: Vec<Vec<isize>> = Vec::new();
    for d in 0..=max {
        frontiers.push(v[(offset - d) as usize..=(offset + d) as usize].to_vec());
        for k in (-d..=d).step_by(2) {
            let at = (offset + k) as usize;
            let mut x = if k == -d || (k != d && v[at - 1] < v[at + 1]) {
                v[at + 1]
            } else {
                v[at - 1] + 1
            };
            let mut y = x - k;
            while x < n && y < m && a[x as usize] == b[y as usize] {
                x += 1;
                y += 1;
            }
            v[at] = x;
            if x >= n && y >= m {
                return Some(backtrack(&frontiers, d, k, n, m));
            }
        }
    }
    None
}

/// Walks the frontiers back from (n, m) on diagonal `k` after `d` edits, collecting the edited stretches.
fn backtrack(frontiers: &[Vec<isize>], d: isize, k: isize, n: isize, m: isize) -> Vec<Hunk> {
    // Edits from the end back to the start: (x, y) before the edit, and whether it consumed a (deletion).
    let (mut x, mut y, mut k) = (n, m, k);
    let mut edits: Vec<(usize, usize, bool)> = Vec::new();
    for d in (1..=d).rev() {
        let previous = &frontiers[d as usize];
        // The frontier before round d covers the diagonals -d..=d.
        let at = |k: isize| previous[(k + d) as usize];
        let down = k == -d || (k != d && at(k - 1) < at(k + 1));
        let k_prev = if down { k + 1 } else { k - 1 };
        let x_prev = at(k_prev);
        let y_prev = x_prev - k_prev;
        // The edit starts where round d-1's snake on k_prev ended: an insertion of b[y_prev] (down) or a
        // deletion of a[x_prev].
        edits.push((x_prev as usize, y_prev as usize, !down));
        x = x_prev;
        y = y_prev;
        k = k_prev;
    }
    debug_assert!(x >= 0 && y >= 0);
    edits.reverse();
    let mut hunks: Vec<Hunk> = Vec::new();
    for (x, y, deletion) in edits {
        let (a_end, b_end) = if deletion { (x + 1, y) } else { (x, y + 1) };
        match hunks.last_mut() {
            Some(h) if h.a_end == x && h.b_end == y => {
                h.a_end = a_end;
                h.b_end = b_end;
            }
            _ => hunks.push(Hunk {
                a_start: x,
                a_end,
                b_start: y,
                b_end,
            }),
        }
    }
    hunks
}

fn end_differences(a: &RunLog, b: &RunLog) -> Vec<EndDifference> {
    let mut out = Vec::new();
    let mut add = |what: &str, x: String, y: String, behaviour: bool| {
        if x != y {
            out.push(EndDifference {
                what: what.into(),
                a: x,
                b: y,
                behaviour,
            });
        }
    };
    add(
        "exit status",
        a.exit_status.to_string(),
        b.exit_status.to_string(),
        true,
    );
    add(
        "stdout",
        output_summary(&a.stdout),
        output_summary(&b.stdout),
        true,
    );
    add(
        "stderr",
        output_summary(&a.stderr),
        output_summary(&b.stderr),
        true,
    );
    add("icount", a.icount.to_string(), b.icount.to_string(), false);
    add(
        "final state hash",
        format!("{:#018x}", a.state_hash),
        format!("{:#018x}", b.state_hash),
        false,
    );
    out
}

/// An output as its length, digest and first bytes.
pub fn output_summary(bytes: &[u8]) -> String {
    format!(
        "{} bytes, sha256 {}, {}",
        bytes.len(),
        &sha256_hex(bytes)[..16],
        crate::calls::quoted(&bytes[..bytes.len().min(crate::calls::EXCERPT_BYTES)])
    )
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One call for a report: its icount (and task), its line, and the bytes it moved.
pub fn describe_call(call: &Call) -> String {
    let task = call.tid.map(|t| format!(" task {t}")).unwrap_or_default();
    let mut text = format!("icount {}{task}: {}", call.icount, call.text());
    if let Some(d) = &call.data {
        let verb = match d.direction {
            crate::calls::Direction::In => "wrote",
            crate::calls::Direction::Out => "read",
        };
        let more = if (d.excerpt.len() as u64) < d.len {
            "..."
        } else {
            ""
        };
        text.push_str(&format!(
            " [{verb} {} bytes: {}{more} | hex {}]",
            d.len,
            crate::calls::quoted(&d.excerpt),
            d.excerpt
                .iter()
                .take(16)
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    text
}

/// The comparison as text: the parting point with both calls, then the later hunks and the end.
pub fn render(c: &Comparison, a: &RunLog, b: &RunLog, names: (&str, &str)) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let (na, nb) = names;
    match &c.first {
        None => {
            let _ = writeln!(
                out,
                "the system calls agree: {} calls in both runs",
                c.calls_a
            );
        }
        Some(p) => {
            let _ = writeln!(
                out,
                "the runs part at system call #{} ({}; the {} calls before it agree):",
                p.index, p.what, p.index
            );
            for (name, call) in [(na, &p.a), (nb, &p.b)] {
                let line = call
                    .as_ref()
                    .map_or("no more system calls".into(), describe_call);
                let _ = writeln!(out, "  A/B {name}: {line}");
            }
            if let (Some(x), Some(y)) = (&p.a, &p.b) {
                let _ = writeln!(
                    out,
                    "  to look: tandem debug {na} then goto {}; tandem debug {nb} then goto {}",
                    x.icount, y.icount
                );
            }
            render_hunks(&mut out, c, a, b);
        }
    }
    for e in &c.end {
        let kind = if e.behaviour { "" } else { " (note)" };
        let _ = writeln!(out, "{}{kind}: A {} | B {}", e.what, e.a, e.b);
    }
    if c.truncated {
        let _ = writeln!(
            out,
            "note: a run made more than {} system calls; only the first were compared",
            crate::calls::CALLS_MAX
        );
    }
    out.replace("A/B ", "")
}

fn render_hunks(out: &mut String, c: &Comparison, a: &RunLog, b: &RunLog) {
    use std::fmt::Write;
    let only = |calls: &[Call], start: usize, end: usize| -> String {
        let shown: Vec<String> = calls[start..end]
            .iter()
            .take(3)
            .map(|c| format!("{} (icount {})", c.text(), c.icount))
            .collect();
        let more = if end - start > 3 { ", ..." } else { "" };
        format!("{}{more}", shown.join(", "))
    };
    let _ = writeln!(
        out,
        "later differences: {} hunk(s){}",
        c.hunks.len(),
        if c.aligned {
            String::new()
        } else {
            format!(" (alignment stopped after {EDITS_MAX} edits; the rest is one hunk)")
        }
    );
    for h in c.hunks.iter().take(HUNKS_SHOWN) {
        let _ = writeln!(
            out,
            "  A calls {}..{} / B calls {}..{}:",
            h.a_start, h.a_end, h.b_start, h.b_end
        );
        if h.a_end > h.a_start {
            let _ = writeln!(out, "    only in A: {}", only(&a.calls, h.a_start, h.a_end));
        }
        if h.b_end > h.b_start {
            let _ = writeln!(out, "    only in B: {}", only(&b.calls, h.b_start, h.b_end));
        }
    }
    if c.hunks.len() > HUNKS_SHOWN {
        let _ = writeln!(out, "  ... {} more hunks", c.hunks.len() - HUNKS_SHOWN);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Applies hunks to `a` taking the replacement from `b`: must give `b` back, and the calls outside the
    /// hunks must match.
    fn check(a: &[u64], b: &[u64], hunks: &[Hunk]) {
        let mut rebuilt = Vec::new();
        let (mut ia, mut ib) = (0, 0);
        for h in hunks {
            assert!(h.a_start >= ia && h.b_start >= ib, "hunks in order");
            assert_eq!(
                h.a_start - ia,
                h.b_start - ib,
                "equal stretches between hunks"
            );
            assert_eq!(&a[ia..h.a_start], &b[ib..h.b_start]);
            rebuilt.extend_from_slice(&a[ia..h.a_start]);
            rebuilt.extend_from_slice(&b[h.b_start..h.b_end]);
            ia = h.a_end;
            ib = h.b_end;
        }
        assert_eq!(&a[ia..], &b[ib..]);
        rebuilt.extend_from_slice(&a[ia..]);
        assert_eq!(rebuilt, b);
    }

    #[test]
    fn an_inserted_call_is_one_hunk() {
        let a = [1, 2, 3, 4, 5];
        let b = [1, 2, 9, 3, 4, 5];
        let hunks = align(&a, &b, 10).unwrap();
        assert_eq!(
            hunks,
            vec![Hunk {
                a_start: 2,
                a_end: 2,
                b_start: 2,
                b_end: 3
            }]
        );
        check(&a, &b, &hunks);
    }

    #[test]
    fn the_edit_limit_is_a_clean_stop() {
        let a: Vec<u64> = (0..100).collect();
        let b: Vec<u64> = (1000..1100).collect();
        assert_eq!(align(&a, &b, 10), None);
        check(&a, &b, &align(&a, &b, 200).unwrap());
    }

    proptest! {
        #[test]
        fn alignments_rebuild_the_second_sequence_minimally(
            a in proptest::collection::vec(0u64..4, 0..40),
            b in proptest::collection::vec(0u64..4, 0..40),
        ) {
            let hunks = align(&a, &b, 100).unwrap();
            check(&a, &b, &hunks);
            // Minimal: the edits equal len(a) + len(b) - 2 * LCS, computed by dynamic programming.
            let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
            for i in (0..a.len()).rev() {
                for j in (0..b.len()).rev() {
                    lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
                }
            }
            let edits: usize = hunks.iter().map(|h| h.a_end - h.a_start + h.b_end - h.b_start).sum();
            prop_assert_eq!(edits, a.len() + b.len() - 2 * lcs[0][0]);
        }
    }
}
