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
use std::sync::mpsc::{channel, Receiver, RecvError, Sender, TryRecvError};
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

/// A replica, its epoch's end, the log position it starts from, and whether to hash its full state at the end.
type Job<L> = (Box<Replica<L>>, u64, usize, bool);

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
            while let Ok((mut replica, end, log_start, full)) = receive(&job_queue) {
                let outcome = replica.run_epoch(end, log_start, full);
                if done_sender.send((replica, outcome)).is_err() {
                    return;
                }
            }
        });
        Worker { jobs, done }
    }

    /// Lends replica `i` to this thread for the epoch that ends at `end` (hashing its full state there when
    /// `full`).
    pub(super) fn start(
        &self,
        replicas: &mut Replicas<L>,
        i: usize,
        end: u64,
        log_start: usize,
        full: bool,
    ) {
        let replica = replicas.take(i);
        self.jobs
            .send((replica, end, log_start, full))
            .expect("a backup's thread ended early (it panicked)");
    }

    /// Waits for replica `i`'s epoch and puts it back home.
    pub(super) fn finish(&self, replicas: &mut Replicas<L>, i: usize) -> Outcome {
        let (replica, outcome) = receive(&self.done).expect("a backup's thread panicked");
        replicas.put(i, replica);
        outcome
    }
}

/// Polls made for a message before a thread blocks for it: the other side of an epoch's hand-over is usually
/// a few microseconds away (the primary and its backups end the same epoch at about the same time), while
/// blocking costs a sleep and a wake-up, tens of microseconds on a virtual machine (measured: a pair at
/// 100,000-instruction epochs spent a third of its time in the kernel's wake-up path).
pub(super) const SPIN_POLLS: u32 = 4096;

/// `receiver.recv()`, polling a while first (`SPIN_POLLS`, yielding the core between polls, so that a
/// machine with fewer cores than threads loses little); which side waited changes nothing but time.
pub(super) fn receive<T>(receiver: &Receiver<T>) -> Result<T, RecvError> {
    for poll in 0..SPIN_POLLS {
        match receiver.try_recv() {
            Ok(message) => return Ok(message),
            Err(TryRecvError::Disconnected) => return Err(RecvError),
            Err(TryRecvError::Empty) => pause(poll),
        }
    }
    receiver.recv()
}

/// Between two polls: a spin hint, and every 64th time the core to any other thread that wants it.
pub(super) fn pause(poll: u32) {
    if poll % 64 == 63 {
        std::thread::yield_now();
    } else {
        std::hint::spin_loop();
    }
}
