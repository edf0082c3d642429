//! Placeholder: this instruction group registers nothing yet.

use super::dispatch::Table;

pub(crate) fn register(_t: &mut Table) {}
