//! A picture of one run's timeline as a self-contained SVG file (no scripts, no external files), the way Jepsen
//! users look at a history: one lane per node, time going down, messages as arrows from sender to receiver (a lost
//! or blocked one ends in a cross half-way), fault spans shaded over the lanes they touch, notes as dots with their
//! text, and each checker's first violation as a red band across every lane. Every element carries a `<title>`
//! (the browser's tooltip) with the full text, and a class (`lane`, `message`, `lost`, `fault`, `note`,
//! `violation`) so a test or a stylesheet can find it.
//!
//! Time is drawn by rows, not to scale: every distinct instant of the shown entries (a send, an arrival, a fault's
//! start and end, a note) gets the next row, so that bursts of events a microsecond apart stay readable beside
//! seconds of quiet. The left margin prints each row's virtual time.

use crate::kernel::NodeId;
use crate::report::xml_escape as escape;
use crate::timeline::{Entry, Fate, What};
use std::collections::BTreeMap;
use std::fmt::Write as _;

const LANE_WIDTH: u64 = 170;
const MARGIN_LEFT: u64 = 110;
const MARGIN_TOP: u64 = 70;
const ROW_HEIGHT: u64 = 16;
/// Most rows one picture draws; a longer timeline is cut with a note (filter it with --node or a time window).
pub const ROWS_MAX: usize = 50_000;

fn short(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        return text.to_string();
    }
    text.chars().take(chars - 1).collect::<String>() + "…"
}

/// Whether an entry shows on these lanes: a message needs both ends on them, a note its node; the rest always.
fn drawn(entry: &Entry, lanes: &[NodeId]) -> bool {
    match &entry.what {
        What::Message { from, to, .. } => lanes.contains(from) && lanes.contains(to),
        What::Note { node, .. } => lanes.contains(node),
        What::Fault { .. } | What::Violation { .. } => true,
    }
}

/// Rows of the picture: every instant the entries mention, in order, each mapped to its row.
struct Rows {
    row_of: BTreeMap<u64, u64>,
}

impl Rows {
    fn new(entries: &[Entry], lanes: &[NodeId], end_ns: u64) -> Rows {
        let mut instants: Vec<u64> = Vec::new();
        for e in entries.iter().filter(|e| drawn(e, lanes)) {
            instants.push(e.at_ns);
            match &e.what {
                What::Message {
                    fate: Fate::Arrives(t),
                    ..
                } => instants.push(*t),
                What::Fault {
                    until_ns: Some(t),
                    ending: false,
                    ..
                } => instants.push((*t).min(end_ns)),
                _ => {}
            }
        }
        instants.sort_unstable();
        instants.dedup();
        instants.truncate(ROWS_MAX);
        let row_of = instants.into_iter().zip(0..).collect();
        Rows { row_of }
    }

    /// The y of an instant (an instant past the last row is drawn on the last one).
    fn y(&self, at_ns: u64) -> u64 {
        let row = self
            .row_of
            .range(..=at_ns)
            .next_back()
            .map_or(0, |(_, r)| *r);
        MARGIN_TOP + row * ROW_HEIGHT
    }

    fn count(&self) -> u64 {
        self.row_of.len() as u64
    }
}

/// Draws the entries (already filtered) on lanes for `lanes` (node ids, in order) named by `names`.
pub fn render_svg(
    title: &str,
    entries: &[Entry],
    names: &[String],
    lanes: &[NodeId],
    end_ns: u64,
) -> String {
    let rows = Rows::new(entries, lanes, end_ns);
    let width = MARGIN_LEFT + LANE_WIDTH * lanes.len() as u64 + 40;
    let height = MARGIN_TOP + (rows.count() + 2) * ROW_HEIGHT;
    let x_of = |node: NodeId| {
        lanes
            .iter()
            .position(|&n| n == node)
            .map(|i| MARGIN_LEFT + LANE_WIDTH * i as u64 + LANE_WIDTH / 2)
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        r##"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="monospace" font-size="11">
<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#456"/></marker></defs>
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="20" font-size="14" font-weight="bold">{}</text>"##,
        escape(title)
    );
    draw_lanes(&mut out, names, lanes, height);
    draw_times(&mut out, &rows);
    for (i, entry) in entries.iter().enumerate() {
        let entry = with_restart_as_end(entries, i, entry);
        draw_entry(&mut out, &entry, &rows, &x_of, lanes, names, width, end_ns);
    }
    if rows.count() as usize >= ROWS_MAX {
        let _ = writeln!(
            out,
            r#"<text x="10" y="{}" fill="red">cut at {ROWS_MAX} rows: narrow it with --node, --from-ms and --to-ms</text>"#,
            height - 4
        );
    }
    out.push_str("</svg>\n");
    out
}

/// A crash without a duration lasts until the node's next restart (or the end of the run).
fn with_restart_as_end(entries: &[Entry], index: usize, entry: &Entry) -> Entry {
    let What::Fault {
        action: "crash",
        nodes,
        until_ns: None,
        ending: false,
        ..
    } = &entry.what
    else {
        return entry.clone();
    };
    let restart = entries[index + 1..].iter().find(|e| {
        matches!(&e.what, What::Fault { action: "restart", nodes: n, ending: false, .. } if n == nodes)
    });
    let mut entry = entry.clone();
    if let (Some(r), What::Fault { until_ns, .. }) = (restart, &mut entry.what) {
        *until_ns = Some(r.at_ns);
    }
    entry
}

fn draw_lanes(out: &mut String, names: &[String], lanes: &[NodeId], height: u64) {
    for (i, &node) in lanes.iter().enumerate() {
        let x = MARGIN_LEFT + LANE_WIDTH * i as u64 + LANE_WIDTH / 2;
        let name = escape(names.get(node).map_or("?", String::as_str));
        let _ = writeln!(
            out,
            r##"<g class="lane" data-node="{name}"><text x="{x}" y="{}" text-anchor="middle" font-weight="bold">{name}</text><line x1="{x}" y1="{}" x2="{x}" y2="{height}" stroke="#999" stroke-dasharray="2,3"/></g>"##,
            MARGIN_TOP - 20,
            MARGIN_TOP - 10
        );
    }
}

fn draw_times(out: &mut String, rows: &Rows) {
    for &at in rows.row_of.keys() {
        let _ = writeln!(
            out,
            r##"<text x="{}" y="{}" text-anchor="end" fill="#777">{:.3} ms</text>"##,
            MARGIN_LEFT - 10,
            rows.y(at) + 4,
            at as f64 / 1e6
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn draw_entry(
    out: &mut String,
    entry: &Entry,
    rows: &Rows,
    x_of: &dyn Fn(NodeId) -> Option<u64>,
    lanes: &[NodeId],
    names: &[String],
    width: u64,
    end_ns: u64,
) {
    let y = rows.y(entry.at_ns);
    match &entry.what {
        What::Note { node, text } => {
            let Some(x) = x_of(*node) else { return };
            let _ = writeln!(
                out,
                r##"<g class="note"><title>{}</title><circle cx="{x}" cy="{y}" r="3" fill="#333"/><text x="{}" y="{}">{}</text></g>"##,
                escape(text),
                x + 6,
                y + 4,
                escape(&short(text, 26))
            );
        }
        What::Message {
            from,
            to,
            kind,
            fate,
        } => {
            let (Some(x1), Some(x2)) = (x_of(*from), x_of(*to)) else {
                return;
            };
            let name = |n: NodeId| escape(names.get(n).map_or("?", String::as_str));
            let tip = format!("{kind} {} -> {}", name(*from), name(*to));
            match fate {
                Fate::Arrives(t) => {
                    let y2 = rows.y((*t).min(end_ns));
                    let _ = writeln!(
                        out,
                        r##"<g class="message" data-kind="{}"><title>{} (arrives {:.3} ms)</title><line x1="{x1}" y1="{y}" x2="{x2}" y2="{y2}" stroke="#456" stroke-width="1" marker-end="url(#arrow)"/></g>"##,
                        escape(kind),
                        escape(&tip),
                        *t as f64 / 1e6
                    );
                }
                Fate::Lost | Fate::Blocked => {
                    let why = if *fate == Fate::Lost {
                        "lost"
                    } else {
                        "blocked by a partition"
                    };
                    let (xm, ym) = ((x1 + x2) / 2, y + ROW_HEIGHT / 2);
                    let _ = writeln!(
                        out,
                        r##"<g class="message lost" data-kind="{}"><title>{} ({why})</title><line x1="{x1}" y1="{y}" x2="{xm}" y2="{ym}" stroke="#c33" stroke-dasharray="4,2"/><text x="{xm}" y="{}" fill="#c33" text-anchor="middle">×</text></g>"##,
                        escape(kind),
                        escape(&tip),
                        ym + 4
                    );
                }
            }
        }
        What::Fault {
            text,
            action,
            nodes,
            until_ns,
            ending,
        } => draw_fault(
            out,
            entry.at_ns,
            text,
            action,
            nodes,
            *until_ns,
            *ending,
            rows,
            x_of,
            lanes,
            end_ns,
        ),
        What::Violation { checker, text } => {
            let _ = writeln!(
                out,
                r##"<g class="violation" data-checker="{}"><title>{}</title><rect x="0" y="{}" width="{width}" height="{ROW_HEIGHT}" fill="#e22" fill-opacity="0.25"/><text x="{}" y="{}" fill="#b00" font-weight="bold">VIOLATION {}: {}</text></g>"##,
                escape(checker),
                escape(text),
                y - ROW_HEIGHT / 2,
                MARGIN_LEFT,
                y + 4,
                escape(checker),
                escape(&short(text, 120))
            );
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn draw_fault(
    out: &mut String,
    at_ns: u64,
    text: &str,
    action: &str,
    nodes: &[NodeId],
    until_ns: Option<u64>,
    ending: bool,
    rows: &Rows,
    x_of: &dyn Fn(NodeId) -> Option<u64>,
    lanes: &[NodeId],
    end_ns: u64,
) {
    let y = rows.y(at_ns);
    if ending {
        return; // the shaded span's end shows it
    }
    let width = MARGIN_LEFT + LANE_WIDTH * lanes.len() as u64 + 40;
    let label = |x: u64, anchor: &str| {
        format!(
            r##"<text class="fault-label" x="{x}" y="{}" fill="#a60" text-anchor="{anchor}">{}</text>"##,
            y + 10,
            escape(&short(text, 24))
        )
    };
    // A span: until the fault's duration ends, or for a crash without one, to the end of the run.
    let until = match (until_ns, action) {
        (Some(t), _) => t.min(end_ns),
        (None, "crash" | "pause") => end_ns,
        _ => {
            // No span (start, heal, restart, check...): its label at the right edge, out of the lanes' way.
            let _ = writeln!(out, "{}", label(width - 4, "end"));
            return;
        }
    };
    let mut labelled = false;
    let shown: Vec<NodeId> = if nodes.is_empty() {
        lanes.to_vec()
    } else {
        nodes.to_vec()
    };
    for node in shown {
        let Some(x) = x_of(node) else { continue };
        let y2 = rows.y(until).max(y + ROW_HEIGHT / 2);
        let _ = writeln!(
            out,
            r##"<g class="fault" data-action="{}"><title>{}</title><rect x="{}" y="{y}" width="{}" height="{}" fill="#f90" fill-opacity="0.18"/></g>"##,
            escape(action),
            escape(text),
            x - LANE_WIDTH / 2 + 6,
            LANE_WIDTH - 12,
            y2 - y
        );
        if !labelled {
            let _ = writeln!(out, "{}", label(x - LANE_WIDTH / 2 + 8, "start"));
            labelled = true;
        }
    }
}
