//! Why a static profile holds a system call: one shortest chain from a root (the entry point, an init or fini
//! function, an IFUNC resolver) to a place that supplies the number (a syscall instruction, or a call of a
//! wrapper that passes it), each step saying how the analysis found the next function reachable. A user who
//! asks why a profile allows `lseek` gets the path to audit, or to rule out by hand.

use crate::image::Image;
use crate::static_profile::{DataReach, FunctionFacts};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// How the analysis found a function reachable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// A root: it runs without a call from the program.
    Root,
    /// Called (or tail-jumped to) at `at`, an instruction of `from`.
    Called { from: u64, at: u64 },
    /// Its address is taken (an immediate or RIP-relative LEA) by the function `by`.
    AddressTaken { by: u64 },
    /// A pointer to it is held by the data object at `object` (or one that object points to), which the function
    /// `by` refers to.
    PointerInData { object: u64, by: u64 },
}

/// A reachable function and how it was reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub function: u64,
    pub link: Link,
}

/// Why one number is in the profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reason {
    /// From a root to the function holding `site`.
    pub steps: Vec<Step>,
    /// The syscall instruction with the number, or the call that passes it to a wrapper.
    pub site: u64,
}

/// A shortest reason for each number of `evidence` (number -> sites supplying it), over the call graph and the
/// address-taken edges of `facts`, explored from `roots` breadth first in address order (deterministic).
pub(crate) fn reasons(
    image: &Image,
    facts: &BTreeMap<u64, FunctionFacts>,
    roots: &BTreeSet<u64>,
    evidence: &BTreeMap<u64, Vec<u64>>,
) -> BTreeMap<u64, Reason> {
    let reached = shortest_links(image, facts, roots);
    let owners = site_owners(facts);
    let mut out = BTreeMap::new();
    for (&nr, sites) in evidence {
        let best = sites
            .iter()
            .filter_map(|site| Some((chain(&reached, *owners.get(site)?)?, *site)))
            .min_by_key(|(steps, site)| (steps.len(), *site));
        if let Some((steps, site)) = best {
            out.insert(nr, Reason { steps, site });
        }
    }
    out
}

/// For each function reachable from `roots`, the link through which a breadth-first search first reached it.
fn shortest_links(
    image: &Image,
    facts: &BTreeMap<u64, FunctionFacts>,
    roots: &BTreeSet<u64>,
) -> BTreeMap<u64, Link> {
    let mut links = BTreeMap::new();
    let mut queue = VecDeque::new();
    for &r in roots.iter().filter(|r| facts.contains_key(r)) {
        links.insert(r, Link::Root);
        queue.push_back(r);
    }
    let mut objects = DataReach::default();
    while let Some(f) = queue.pop_front() {
        let ff = &facts[&f];
        let mut next: Vec<(u64, Link)> = Vec::new();
        for c in &ff.calls {
            next.push((c.callee, Link::Called { from: f, at: c.at }));
        }
        next.extend(ff.taken.iter().map(|&t| (t, Link::AddressTaken { by: f })));
        for &object in &ff.data_refs {
            let code = objects.reach(image, object);
            next.extend(
                code.into_iter()
                    .map(|t| (t, Link::PointerInData { object, by: f })),
            );
        }
        for (g, link) in next {
            if facts.contains_key(&g) && !links.contains_key(&g) {
                links.insert(g, link);
                queue.push_back(g);
            }
        }
    }
    links
}

/// The function each syscall instruction and call site belongs to.
fn site_owners(facts: &BTreeMap<u64, FunctionFacts>) -> BTreeMap<u64, u64> {
    let mut owners = BTreeMap::new();
    for (&f, ff) in facts {
        for &(_, at) in &ff.constants {
            owners.entry(at).or_insert(f);
        }
        for c in &ff.calls {
            owners.entry(c.at).or_insert(f);
        }
    }
    owners
}

/// The steps from a root to `function`, following `links` back.
fn chain(links: &BTreeMap<u64, Link>, function: u64) -> Option<Vec<Step>> {
    let mut steps = Vec::new();
    let mut f = function;
    loop {
        let link = *links.get(&f)?;
        steps.push(Step { function: f, link });
        f = match link {
            Link::Root => break,
            Link::Called { from, .. } => from,
            Link::AddressTaken { by } | Link::PointerInData { by, .. } => by,
        };
        assert!(
            steps.len() <= links.len(),
            "the links of a breadth-first search form a tree"
        );
    }
    steps.reverse();
    Some(steps)
}

/// One line per step of `reason`, for a person.
pub(crate) fn describe(image: &Image, reason: &Reason) -> Vec<String> {
    let mut lines: Vec<String> = reason
        .steps
        .iter()
        .map(|s| {
            let how = match s.link {
                Link::Root if s.function == image.entry => "the entry point".to_string(),
                Link::Root => "a root (init/fini function or IFUNC resolver)".to_string(),
                Link::Called { at, .. } => format!("called at {}", image.describe(at)),
                Link::AddressTaken { by } => {
                    format!("its address is taken in {}", image.describe(by))
                }
                Link::PointerInData { object, by } => format!(
                    "a pointer to it is in data at {object:#x}, which {} refers to",
                    image.describe(by)
                ),
            };
            format!("{}: {how}", image.describe(s.function))
        })
        .collect();
    lines.push(format!(
        "number supplied at {}",
        image.describe(reason.site)
    ));
    lines
}
