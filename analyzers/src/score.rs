//! How a static profile compares with what runs did: precision, recall and F1 over sets of syscalls.

use crate::SyscallSet;

/// The comparison of a predicted set (static) with an observed one (dynamic).
#[derive(Clone, Debug, PartialEq)]
pub struct Score {
    pub predicted: usize,
    pub observed: usize,
    /// Observed calls the prediction has.
    pub hits: usize,
    /// Observed calls the prediction lacks: a profile enforcing it would kill the run.
    pub missed: SyscallSet,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

/// Scores `predicted` against `observed`. An empty observed set has recall 1; an empty prediction precision 1.
pub fn score(predicted: &SyscallSet, observed: &SyscallSet) -> Score {
    let hits = predicted.intersection(observed).count();
    let ratio = |n: usize, d: usize| if d == 0 { 1.0 } else { n as f64 / d as f64 };
    let precision = ratio(hits, predicted.len());
    let recall = ratio(hits, observed.len());
    let f1 = if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    };
    Score {
        predicted: predicted.len(),
        observed: observed.len(),
        hits,
        missed: observed.difference(predicted).copied().collect(),
        precision,
        recall,
        f1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_recall_and_f1_of_overlapping_sets() {
        let p: SyscallSet = [0, 1, 2, 3].into();
        let o: SyscallSet = [1, 2, 60].into();
        let s = score(&p, &o);
        assert_eq!(s.hits, 2);
        assert_eq!(s.missed, [60].into());
        assert!((s.precision - 0.5).abs() < 1e-12);
        assert!((s.recall - 2.0 / 3.0).abs() < 1e-12);
        assert!((s.f1 - 4.0 / 7.0).abs() < 1e-12);
        let whole = score(&o, &o);
        assert_eq!((whole.precision, whole.recall, whole.f1), (1.0, 1.0, 1.0));
    }
}
