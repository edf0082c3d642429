//! The recorded timeline of one run (`tandem scenario show`): every model note, every message sent (with when it
//! arrives, or that it never does), every fault plan event with the nodes it touches, and the first violation of
//! each failed checker. Rendered as text here and as a picture in `picture`.
//!
//! Recording is off in multi-seed runs (the kernel formats nothing then); a recorded run is the same run, event for
//! event (`runner` tests it). Entries are in the order they happened; a violation is placed after the entries of its
//! instant.

use crate::kernel::NodeId;
use std::fmt::Write as _;

/// What became of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Scheduled to arrive at this virtual time (a crashed receiver still drops it; a paused one holds it).
    Arrives(u64),
    /// Dropped by the network's loss draw.
    Lost,
    /// Dropped by a partition or an isolation.
    Blocked,
}

#[derive(Clone, Debug, PartialEq)]
pub enum What {
    /// A model's note about one of its nodes.
    Note { node: NodeId, text: String },
    /// A fault plan event starts (`until_ns`: when its duration ends it) or ends.
    Fault {
        text: String,
        action: &'static str,
        nodes: Vec<NodeId>,
        until_ns: Option<u64>,
        ending: bool,
    },
    /// A message sent (a duplicate is a second entry).
    Message {
        from: NodeId,
        to: NodeId,
        kind: String,
        fate: Fate,
    },
    /// The first violation of a checker.
    Violation { checker: String, text: String },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub at_ns: u64,
    pub what: What,
}

impl Entry {
    /// Whether the entry concerns any of `nodes` (violations and node-less faults concern every node).
    pub fn touches(&self, nodes: &[NodeId]) -> bool {
        match &self.what {
            What::Note { node, .. } => nodes.contains(node),
            What::Fault { nodes: n, .. } => n.is_empty() || n.iter().any(|x| nodes.contains(x)),
            What::Message { from, to, .. } => nodes.contains(from) || nodes.contains(to),
            What::Violation { .. } => true,
        }
    }
}

/// The message kind for pictures and filters: the variant name of its debug form (`Lease { op: 3 }` -> `Lease`).
pub fn message_kind(debug: &str) -> String {
    debug
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .next()
        .unwrap_or("")
        .to_string()
}

/// Which entries to show: nodes, a window of virtual time, which message kinds (None: all; empty: none).
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub nodes: Option<Vec<NodeId>>,
    pub from_ns: Option<u64>,
    pub to_ns: Option<u64>,
    pub message_kinds: Option<Vec<String>>,
}

impl Filter {
    pub fn keeps(&self, entry: &Entry) -> bool {
        if self.from_ns.is_some_and(|t| entry.at_ns < t)
            || self.to_ns.is_some_and(|t| entry.at_ns > t)
        {
            return false;
        }
        if let Some(nodes) = &self.nodes {
            if !entry.touches(nodes) {
                return false;
            }
        }
        match (&entry.what, &self.message_kinds) {
            (What::Message { kind, .. }, Some(kinds)) => kinds.iter().any(|k| k == kind),
            _ => true,
        }
    }
}

/// Puts each checker's first violation into the timeline after the entries of its instant.
pub fn with_violations(
    mut entries: Vec<Entry>,
    violations: &[(String, u64, String)],
) -> Vec<Entry> {
    for (checker, at_ns, text) in violations {
        let at = entries.partition_point(|e| e.at_ns <= *at_ns);
        let what = What::Violation {
            checker: checker.clone(),
            text: text.clone(),
        };
        entries.insert(
            at,
            Entry {
                at_ns: *at_ns,
                what,
            },
        );
    }
    entries
}

fn ms(ns: u64) -> String {
    format!("{:.3}", ns as f64 / 1e6)
}

/// One line per entry: time, the node (or `*`), what happened.
pub fn render_text(entries: &[Entry], names: &[String]) -> String {
    let name = |n: NodeId| names.get(n).map_or("?", String::as_str);
    let mut out = String::new();
    for entry in entries {
        let (who, text) = match &entry.what {
            What::Note { node, text } => (name(*node), text.clone()),
            What::Fault { text, ending, .. } => {
                let end = if *ending { "end of " } else { "" };
                ("*", format!("fault plan: {end}{text}"))
            }
            What::Message {
                from,
                to,
                kind,
                fate,
            } => {
                let fate = match fate {
                    Fate::Arrives(t) => format!("arrives {} ms", ms(*t)),
                    Fate::Lost => "lost".into(),
                    Fate::Blocked => "blocked by a partition".into(),
                };
                (name(*from), format!("-> {} {kind} ({fate})", name(*to)))
            }
            What::Violation { checker, text } => ("*", format!("VIOLATION {checker}: {text}")),
        };
        let _ = writeln!(out, "{:>12} ms  {who:<10} {text}", ms(entry.at_ns));
    }
    out
}
