//! A durable FIFO per destination: append-only segment files plus a cursor file.
//!
//! ```text
//! <dir>/lock                  held (flock) while a proxy uses the directory
//! <dir>/00000000000000000001.seg   records: len u32 | crc32c u32 | appended_ms i64 | samples u32 | payload
//! <dir>/cursor                the first record not yet sent, written in place (`cursor`)
//! ```
//!
//! Writers hand records to one committer thread, which writes everything waiting,
//! `fdatasync`s once and only then reports success (group commit): an acknowledged
//! record is on disk. The reader sees records up to the last sync, and moves the cursor
//! (overwritten in place and synced, so it moves on a full disk too) after a batch is
//! delivered or dropped; the segments wholly before it are then deleted. A failed write
//! is cut off the segment again (truncation needs no space), so the queue takes writes
//! again as soon as space returns.
//! On open, a torn record at the end of the last segment (a crash mid-write) is cut off;
//! everything before it, and everything after the cursor, is delivered again.

mod cursor;
mod segment;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;

use parking_lot::Mutex;
use tokio::sync::{Notify, oneshot};

use crate::clock::now_ms;
pub use segment::Record;
use segment::{Position, SEGMENT_BYTES, Segments};

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Appending would take the queue past its byte limit.
    #[error("the queue for {name} holds {queued} bytes, the limit (ingest.max_queue_bytes) is {limit}")]
    Full {
        /// Destination name.
        name: String,
        /// Bytes waiting.
        queued: u64,
        /// The limit.
        limit: u64,
    },
    /// The disk failed us.
    #[error("queue {dir}: {source}")]
    Io {
        /// The queue directory.
        dir: String,
        /// The error.
        source: std::io::Error,
    },
    /// Another process holds the directory.
    #[error("queue {dir} is in use by another process")]
    Locked {
        /// The queue directory.
        dir: String,
    },
    /// The committer thread is gone (the proxy is shutting down).
    #[error("the queue is closed")]
    Closed,
}

struct Append {
    records: Vec<(u32, Vec<u8>)>,
    /// Released once the records count in the segment sizes.
    reserved: Reservation,
    done: oneshot::Sender<Result<(), QueueError>>,
}

/// State shared by writers, the committer and the reader.
#[derive(Debug)]
struct Shared {
    name: String,
    dir: PathBuf,
    limit: u64,
    state: Mutex<State>,
    /// Taken only by the reader's commits.
    cursor_file: Mutex<cursor::Cursor>,
    /// Woken after every sync that made records readable.
    readable: Notify,
}

#[derive(Debug)]
struct State {
    /// End of the synced data.
    durable: Position,
    /// The first record not yet delivered.
    cursor: Position,
    /// Size of every segment file, by id.
    segments: Segments,
    /// Bytes promised to appends still in flight.
    reserved: u64,
}

impl State {
    fn queued(&self) -> u64 {
        self.segments.bytes_from(self.cursor)
    }
}

/// One destination's queue: cheap to clone, shared by request handlers.
#[derive(Debug, Clone)]
pub struct Queue {
    shared: Arc<Shared>,
    committer: Arc<Committer>,
}

/// The committer thread's handle. Dropping the last one closes the channel and waits
/// for the thread, which releases the directory lock, so a reopen right after works.
#[derive(Debug)]
struct Committer {
    appends: Option<mpsc::Sender<Append>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Committer {
    fn drop(&mut self) {
        drop(self.appends.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A reservation of queue space, released when dropped unless used by [`Queue::append`].
#[derive(Debug)]
pub struct Reservation {
    shared: Arc<Shared>,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.shared.state.lock().reserved -= self.bytes;
    }
}

impl Queue {
    /// Opens (or creates) the queue in `dir`, repairs a torn tail, locks the directory
    /// and starts the committer thread. Returns the reader too: exactly one per queue.
    pub fn open(dir: &Path, name: &str, limit: u64) -> Result<(Self, Reader), QueueError> {
        Self::open_with_segments(dir, name, limit, SEGMENT_BYTES)
    }

    /// [`Queue::open`] with another segment size.
    pub fn open_with_segments(
        dir: &Path,
        name: &str,
        limit: u64,
        segment_bytes: u64,
    ) -> Result<(Self, Reader), QueueError> {
        let io = |source| QueueError::Io {
            dir: dir.display().to_string(),
            source,
        };
        fs::create_dir_all(dir).map_err(io)?;
        let lock = File::create(dir.join("lock")).map_err(io)?;
        if lock.try_lock().is_err() {
            return Err(QueueError::Locked {
                dir: dir.display().to_string(),
            });
        }
        let (segments, writer) = Segments::recover(dir, segment_bytes).map_err(io)?;
        let (cursor_file, found) = cursor::Cursor::open(dir, segments.first_position()).map_err(io)?;
        let cursor = found
            .filter(|c| segments.contains(*c))
            .unwrap_or_else(|| segments.first_position());
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            dir: dir.to_owned(),
            limit,
            cursor_file: Mutex::new(cursor_file),
            state: Mutex::new(State {
                durable: segments.end(),
                cursor,
                segments,
                reserved: 0,
            }),
            readable: Notify::new(),
        });
        let (appends, receive) = mpsc::channel();
        let committing = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("queue-{name}"))
            .spawn(move || commit_loop(&committing, writer, &receive, lock))
            .map_err(io)?;
        let committer = Arc::new(Committer {
            appends: Some(appends),
            thread: Some(thread),
        });
        let reader = Reader {
            shared: shared.clone(),
            inner: Arc::new(Mutex::new(ReadState {
                position: cursor,
                file: None,
            })),
        };
        Ok((Self { shared, committer }, reader))
    }

    /// Destination name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Bytes waiting to be delivered.
    pub fn queued_bytes(&self) -> u64 {
        self.shared.state.lock().queued()
    }

    /// The end of what is on disk: every record appended before this call and already
    /// acknowledged lies before it.
    pub fn durable_end(&self) -> Position {
        self.shared.state.lock().durable
    }

    /// Whether everything before `at` was delivered (or given up on as undeliverable).
    pub fn delivered_through(&self, at: Position) -> bool {
        self.shared.state.lock().cursor >= at
    }

    /// Reserves room for `bytes` of records, or says the queue is full.
    pub fn reserve(&self, bytes: u64) -> Result<Reservation, QueueError> {
        let mut state = self.shared.state.lock();
        let queued = state.queued() + state.reserved;
        if queued + bytes > self.shared.limit {
            return Err(QueueError::Full {
                name: self.shared.name.clone(),
                queued,
                limit: self.shared.limit,
            });
        }
        state.reserved += bytes;
        Ok(Reservation {
            shared: self.shared.clone(),
            bytes,
        })
    }

    /// Hands `(samples, payload)` records to the committer; the returned future
    /// completes once they are on disk.
    pub fn submit(
        &self,
        reserved: Reservation,
        records: Vec<(u32, Vec<u8>)>,
    ) -> Result<impl Future<Output = Result<(), QueueError>> + use<>, QueueError> {
        let (done, wait) = oneshot::channel();
        self.committer
            .appends
            .as_ref()
            .ok_or(QueueError::Closed)?
            .send(Append {
                records,
                reserved,
                done,
            })
            .map_err(|_| QueueError::Closed)?;
        Ok(async move { wait.await.map_err(|_| QueueError::Closed)? })
    }
}

/// Bytes a record with this payload takes on disk.
pub fn record_bytes(payload: usize) -> u64 {
    (segment::HEADER_BYTES + payload) as u64
}

/// The committer: writes what is waiting, syncs once, then answers every writer.
fn commit_loop(shared: &Shared, mut writer: segment::Writer, receive: &mpsc::Receiver<Append>, _lock: File) {
    while let Ok(first) = receive.recv() {
        let mut batch = vec![first];
        let mut bytes: usize = batch[0].records.iter().map(|r| r.1.len()).sum();
        while bytes < (64 << 20)
            && let Ok(next) = receive.try_recv()
        {
            bytes += next.records.iter().map(|r| r.1.len()).sum::<usize>();
            batch.push(next);
        }
        let appended_ms = now_ms();
        let result = (|| {
            for append in &batch {
                for (samples, payload) in &append.records {
                    let finished = (writer.id(), writer.len());
                    if let Some(new) = writer.rotate_if_full(&shared.dir)? {
                        let mut state = shared.state.lock();
                        state.segments.set_size(finished.0, finished.1);
                        state.segments.set_size(new, 0);
                    }
                    writer.write(appended_ms, *samples, payload)?;
                }
            }
            writer.sync()
        })();
        match result {
            Ok(()) => {
                {
                    let mut state = shared.state.lock();
                    state.segments.set_size(writer.id(), writer.len());
                    state.durable = writer.position();
                }
                shared.readable.notify_one();
                for append in batch {
                    drop(append.reserved);
                    let _ = append.done.send(Ok(()));
                }
            }
            Err(source) => {
                tracing::error!(queue = %shared.name, error = %source, "queue write failed; the writes are refused");
                // What was written may be half a record: cut it off, or if even that
                // fails, start a fresh segment so the next append does not follow it.
                if let Err(error) = writer.rewind() {
                    tracing::error!(queue = %shared.name, %error, "cannot cut a failed write off its segment");
                    match writer.abandon(&shared.dir) {
                        Ok(new) => shared.state.lock().segments.set_size(new, 0),
                        Err(error) => {
                            tracing::error!(queue = %shared.name, %error, "cannot start a new queue segment")
                        }
                    }
                }
                for append in batch {
                    let _ = append.done.send(Err(QueueError::Io {
                        dir: shared.dir.display().to_string(),
                        source: std::io::Error::new(source.kind(), source.to_string()),
                    }));
                }
            }
        }
    }
}

/// The single consumer of a queue.
#[derive(Debug)]
pub struct Reader {
    shared: Arc<Shared>,
    // Behind a mutex only so blocking reads can run on tokio's blocking pool; the
    // reader is used by one task.
    inner: Arc<Mutex<ReadState>>,
}

#[derive(Debug)]
struct ReadState {
    /// Where the next read starts (past what was handed out, maybe not yet committed).
    position: Position,
    file: Option<(u64, File)>,
}

/// Records read in one go, and the position just past them.
#[derive(Debug)]
pub struct Batch {
    /// The records, oldest first.
    pub records: Vec<Record>,
    /// Commit this to mark them delivered.
    pub end: Position,
}

impl Reader {
    /// Waits for synced records, then reads up to `max_bytes` of payload (at least one
    /// record). Blocking file reads run on tokio's blocking pool.
    pub async fn next_batch(&self, max_bytes: usize) -> Result<Batch, QueueError> {
        loop {
            let notified = self.shared.readable.notified();
            let durable = self.shared.state.lock().durable;
            if durable != self.inner.lock().position {
                break;
            }
            notified.await;
        }
        let (shared, inner) = (self.shared.clone(), self.inner.clone());
        tokio::task::spawn_blocking(move || read(&shared, &mut inner.lock(), max_bytes))
            .await
            .unwrap_or(Err(QueueError::Closed))
    }

    /// Marks everything before `end` delivered: persists the cursor, then deletes the
    /// segments wholly before it.
    pub async fn commit(&self, end: Position) -> Result<(), QueueError> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || commit(&shared, end))
            .await
            .unwrap_or(Err(QueueError::Closed))
    }
}

fn io_error(shared: &Shared) -> impl Fn(std::io::Error) -> QueueError + '_ {
    |source| QueueError::Io {
        dir: shared.dir.display().to_string(),
        source,
    }
}

fn read(shared: &Shared, reader: &mut ReadState, max_bytes: usize) -> Result<Batch, QueueError> {
    let io = io_error(shared);
    let (durable, segments) = {
        let state = shared.state.lock();
        (state.durable, state.segments.clone())
    };
    let mut records = Vec::new();
    let mut bytes = 0;
    while reader.position != durable && (records.is_empty() || bytes < max_bytes) {
        let at = reader.position;
        let segment_end = segments.size(at.segment);
        if at.offset >= segment_end {
            match segments.next_after(at.segment) {
                Some(next) => {
                    reader.position = Position {
                        segment: next,
                        offset: 0,
                    };
                    continue;
                }
                None => break,
            }
        }
        let file = match &mut reader.file {
            Some((id, file)) if *id == at.segment => file,
            slot => {
                let file = File::open(segment::path(&shared.dir, at.segment)).map_err(&io)?;
                &mut slot.insert((at.segment, file)).1
            }
        };
        match segment::read_record(file, at.offset).map_err(&io)? {
            Some(record) => {
                reader.position.offset += record_bytes(record.payload.len());
                bytes += record.payload.len();
                records.push(record);
            }
            None => {
                // A corrupt record inside a synced segment: the disk lost data. Skip the
                // rest of the segment rather than stall the destination.
                tracing::error!(
                    queue = %shared.name,
                    segment = at.segment,
                    offset = at.offset,
                    "corrupt queue record; skipping the rest of the segment"
                );
                reader.position.offset = segment_end;
            }
        }
    }
    Ok(Batch {
        records,
        end: reader.position,
    })
}

fn commit(shared: &Shared, end: Position) -> Result<(), QueueError> {
    let io = io_error(shared);
    shared.cursor_file.lock().write(end).map_err(&io)?;
    let dropped = {
        let mut state = shared.state.lock();
        state.cursor = end;
        state.segments.drop_before(end.segment)
    };
    for id in dropped {
        fs::remove_file(segment::path(&shared.dir, id)).map_err(&io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
