//! Unit tests of the process layer on tiny hand-assembled programs (the corpus programs are tested end to end in
//! tests/run_corpus.rs).

use super::*;

#[test]
fn placeholder_compiles() {}
