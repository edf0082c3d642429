//! Where a recording's chunks go: straight to a `TraceWriter`, or to one on a thread of its own.
//!
//! Encoding a chunk, its CRC and the write(2) into the page cache cost a recording of busybox sha256sum over a
//! 20 MB file about 5% of the run (the file is embedded whole); on a second core they overlap with the guest.
//! The bytes written are the same either way, in the same order: only when they reach the file changes.
//!
//! Invariant: nothing handed to a `BackgroundWriter` is lost short of the process being killed (which loses
//! at most the chunks of the last `BATCH_CHUNKS` checkpoints). Dropping it (also while unwinding from a panic)
//! waits for the thread to write and flush every chunk put; an error of the thread is returned by a later
//! `put` or by `finish`. What it holds is bounded: at most `QUEUE_BATCHES` batches wait, and a batch is sent
//! when it holds `BATCH_CHUNKS` chunks or `BATCH_BYTES` of payload, so a recording of a guest that reads
//! gigabytes of stdin holds a few megabytes of it at a time.

use crate::trace::{Chunk, Event, HostCall, Record, TraceWriter};
use std::io::Write;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::JoinHandle;

/// Takes a recording's chunks in order.
pub trait ChunkSink {
    fn put(&mut self, chunk: Chunk) -> std::io::Result<()>;
}

impl<W: Write> ChunkSink for TraceWriter<W> {
    fn put(&mut self, chunk: Chunk) -> std::io::Result<()> {
        self.write_chunk(&chunk)
    }
}

/// Batches waiting for the writing thread, at most: the guest stops when the writer falls this far behind, which
/// bounds the memory they hold.
const QUEUE_BATCHES: usize = 4;
/// Chunks sent to the thread together. Waking a thread costs tens of microseconds on a virtual machine, and a
/// checkpoint's chunk may come every 0.2 ms; a batch is also sent as soon as it holds `BATCH_BYTES` of payload
/// or a chunk that is not a records chunk (the header, the end).
const BATCH_CHUNKS: usize = 32;
/// Payload bytes (stdin, embedded files, entropy) past which a batch is sent at once.
const BATCH_BYTES: usize = 1 << 20;

/// About how many bytes a chunk's variable-length records hold (what makes a chunk big).
fn payload_bytes(chunk: &Chunk) -> usize {
    let Chunk::Records { records, .. } = chunk else {
        return 0;
    };
    records
        .iter()
        .map(|r| match r {
            Record::Blob { bytes, .. } => bytes.len(),
            Record::Event(Event::Host(HostCall::ReadStdin {
                result: Ok(bytes), ..
            })) => bytes.len(),
            Record::Event(Event::Host(HostCall::Random { bytes })) => bytes.len(),
            Record::Pages(p) => 24 * p.changed.len() + 8 * p.unmapped.len(),
            _ => 32,
        })
        .sum()
}

/// A `TraceWriter` on a thread of its own.
pub struct BackgroundWriter<W: Write + Send + 'static> {
    batch: Vec<Chunk>,
    /// `payload_bytes` of the chunks in `batch`.
    batch_bytes: usize,
    queue: Option<SyncSender<Vec<Chunk>>>,
    thread: Option<JoinHandle<std::io::Result<TraceWriter<W>>>>,
}

impl<W: Write + Send + 'static> BackgroundWriter<W> {
    pub fn new(mut writer: TraceWriter<W>) -> std::io::Result<Self> {
        let (queue, batches) = sync_channel::<Vec<Chunk>>(QUEUE_BATCHES);
        let thread = std::thread::Builder::new()
            .name("tandem-trace-writer".into())
            .spawn(move || {
                for batch in batches {
                    for chunk in batch {
                        // On an error the receiver is dropped here: the next send fails and `finish` returns it.
                        writer.write_chunk(&chunk)?;
                    }
                }
                Ok(writer)
            })?;
        Ok(BackgroundWriter {
            batch: Vec::with_capacity(BATCH_CHUNKS),
            batch_bytes: 0,
            queue: Some(queue),
            thread: Some(thread),
        })
    }

    /// Hands the batch to the thread.
    fn send(&mut self) -> std::io::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH_CHUNKS));
        self.batch_bytes = 0;
        let sent = match &self.queue {
            Some(queue) => queue.send(batch).is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The thread stopped: it failed.
        match self.join() {
            Err(e) => Err(e),
            Ok(_) => Err(std::io::Error::other("the trace writer stopped")),
        }
    }

    /// Waits until every chunk is written and flushed; gives the writer back (for its `offset`).
    pub fn finish(mut self) -> std::io::Result<TraceWriter<W>> {
        self.join()
    }

    fn join(&mut self) -> std::io::Result<TraceWriter<W>> {
        let last = std::mem::take(&mut self.batch);
        if let Some(queue) = self.queue.take() {
            if !last.is_empty() {
                // A failure to send is the thread's error, returned by the join.
                let _ = queue.send(last);
            }
        }
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the trace writer thread panicked"))),
            None => Err(std::io::Error::other(
                "the trace writer has already finished",
            )),
        }
    }
}

impl<W: Write + Send + 'static> ChunkSink for BackgroundWriter<W> {
    fn put(&mut self, chunk: Chunk) -> std::io::Result<()> {
        let records = matches!(chunk, Chunk::Records { .. });
        self.batch_bytes += payload_bytes(&chunk);
        self.batch.push(chunk);
        if !records || self.batch_bytes >= BATCH_BYTES || self.batch.len() >= BATCH_CHUNKS {
            self.send()?;
        }
        Ok(())
    }
}

impl<W: Write + Send + 'static> Drop for BackgroundWriter<W> {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::Trace;

    /// The same chunks give the same bytes on the writing thread as written directly.
    #[test]
    fn background_bytes_are_the_direct_bytes() {
        let chunks = || {
            (0..40u64).map(|i| Chunk::Records {
                icount_end: i * 10,
                records: vec![Record::Blob {
                    id: crate::trace::blob_id(&[i as u8; 3]),
                    bytes: std::sync::Arc::new(vec![i as u8; 3]),
                }],
            })
        };
        let mut direct = TraceWriter::new(Vec::new()).unwrap();
        for c in chunks() {
            direct.put(c).unwrap();
        }
        let mut background = BackgroundWriter::new(TraceWriter::new(Vec::new()).unwrap()).unwrap();
        for c in chunks() {
            background.put(c).unwrap();
        }
        let written = background.finish().unwrap().into_inner();
        assert_eq!(written, direct.into_inner());
        // Without a header chunk the bytes are not a trace; the frames are what is compared.
        assert!(Trace::parse(&written).is_err());
    }

    /// A failing output is an error of a later `put` or of `finish`, never a panic or a silent loss.
    #[test]
    fn a_write_error_is_returned() {
        struct Full(usize);
        impl Write for Full {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                if self.0 < b.len() {
                    return Err(std::io::Error::other("disk full"));
                }
                self.0 -= b.len();
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut w = BackgroundWriter::new(TraceWriter::new(Full(100)).unwrap()).unwrap();
        let mut failed = None;
        for i in 0..1000u64 {
            if let Err(e) = w.put(Chunk::Records {
                icount_end: i,
                records: Vec::new(),
            }) {
                failed = Some(e);
                break;
            }
        }
        let e = match failed {
            Some(e) => e,
            None => w.finish().err().expect("the output is full"),
        };
        assert!(e.to_string().contains("disk full"), "{e}");
    }
}
