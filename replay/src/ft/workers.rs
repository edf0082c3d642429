//! The backups' threads: one per backup, kept for the whole run (`World::run`), instead of one spawned per
//! backup per epoch.
//!
//! A replica is owned by the world between epochs and lent to its thread for an epoch: the world sends it
//! with the epoch's end over the thread's channel and gets it back with its outcome over the other, so the
//! world's comparison, arbitration and resync code sees every replica at home and needs no locks. Which thread
//! ran which replica, and when, changes nothing: a backup answers from the log at its own position (host.rs).
//!
//! Invariant: between epochs every replica is at home (`Replicas`' indexing asserts it); a thread holds at
//! most one replica, and only between a `Worker::start` and the `Worker::finish` that returns it.

use super::{Outcome, Replica};
use std::ops::{Index, IndexMut};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread::Scope;
use tandem_emulator::linux::Host;

/// The replicas of a world, each at home or lent to its thread for an epoch.
pub(super) struct Replicas<L: Host> {
    slots: Vec<Option<Box<Replica<L>>>>,
}

impl<L: Host> Replicas<L> {
    pub(super) fn new(replicas: Vec<Replica<L>>) -> Replicas<L> {
        Replicas {
            slots: replicas.into_iter().map(|r| Some(Box::new(r))).collect(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Replica<L>> {
        self.slots
            .iter_mut()
            .map(|s| &mut **s.as_mut().expect("every replica is home between epochs"))
    }

    fn take(&mut self, i: usize) -> Box<Replica<L>> {
        self.slots[i].take().expect("a replica lent twice")
    }

    fn put(&mut self, i: usize, replica: Box<Replica<L>>) {
        assert!(self.slots[i].is_none(), "a replica returned twice");
        self.slots[i] = Some(replica);
    }
}

impl<L: Host> Index<usize> for Replicas<L> {
    type Output = Replica<L>;
    fn index(&self, i: usize) -> &Replica<L> {
        self.slots[i]
            .as_deref()
            .expect("every replica is home between epochs")
    }
}

impl<L: Host> IndexMut<usize> for Replicas<L> {
    fn index_mut(&mut self, i: usize) -> &mut Replica<L> {
        self.slots[i]
            .as_deref_mut()
            .expect("every replica is home between epochs")
    }
}

type Job<L> = (Box<Replica<L>>, u64, usize);

/// One backup's thread and its two channels.
pub(super) struct Worker<L: Host> {
    jobs: Sender<Job<L>>,
    done: Receiver<(Box<Replica<L>>, Outcome)>,
}

impl<L: Host + Send> Worker<L> {
    /// A thread that runs each replica it is sent to the epoch's end and sends it back with its outcome. It
    /// ends when the world drops its `Worker` (its job channel closes).
    pub(super) fn spawn<'scope>(scope: &'scope Scope<'scope, '_>) -> Worker<L>
    where
        L: 'scope,
    {
        let (jobs, job_queue) = channel::<Job<L>>();
        let (done_sender, done) = channel();
        scope.spawn(move || {
            for (mut replica, end, log_start) in job_queue {
                let outcome = replica.run_epoch(end, log_start);
                if done_sender.send((replica, outcome)).is_err() {
                    return;
                }
            }
        });
        Worker { jobs, done }
    }

    /// Lends replica `i` to this thread for the epoch that ends at `end`.
    pub(super) fn start(&self, replicas: &mut Replicas<L>, i: usize, end: u64, log_start: usize) {
        let replica = replicas.take(i);
        self.jobs
            .send((replica, end, log_start))
            .expect("a backup's thread ended early (it panicked)");
    }

    /// Waits for replica `i`'s epoch and puts it back home.
    pub(super) fn finish(&self, replicas: &mut Replicas<L>, i: usize) -> Outcome {
        let (replica, outcome) = self.done.recv().expect("a backup's thread panicked");
        replicas.put(i, replica);
        outcome
    }
}
