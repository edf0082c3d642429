//! The dynamic profile: the system calls recorded runs made, read from their traces' syscall-entry events.

use crate::SyscallSet;
use std::collections::BTreeMap;
use tandem_replay::trace::{Record, Trace};

/// The syscalls of one or more runs, each with how many times it was entered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DynamicProfile {
    pub counts: BTreeMap<u64, u64>,
    /// Whether any trace was damaged (read up to its last complete chunk): the profile may then miss calls.
    pub partial: bool,
}

impl DynamicProfile {
    /// Adds every syscall entry of `trace` (every task's, each attempt of a blocking call counted).
    pub fn add_trace(&mut self, trace: &Trace) {
        for record in &trace.records {
            if let Record::Event(event) = record {
                if let Some((_, _, number)) = event.syscall_entry() {
                    *self.counts.entry(number).or_default() += 1;
                }
            }
        }
        self.partial |= trace.damage.is_some();
    }

    pub fn syscalls(&self) -> SyscallSet {
        self.counts.keys().copied().collect()
    }
}
