//! A reader: a cursor into a command's log, streamed to one client.
//!
//! Every stream, the first `POST /command` one included, and every typed
//! [`Events`](super::events::Events) stream, is this loop: read the events
//! after the cursor, send them, advance, and when nothing is left wait for
//! the log's newest eid to move. Live output is replay that has caught up,
//! so nothing is lost or repeated at the switch.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use crate::log::{Log, Progress};
use crate::policy::wit::{self, ReadResult};
use crate::stream::sse::{self, Framing};
use crate::time::now_ms;

/// SSE comment / ping interval while a stream waits.
pub const KEEPALIVE: Duration = Duration::from_secs(3);
/// Most events per read from the log, and so per write to the socket.
/// Short lines reach it first (76-byte lines, counted with the 32 bytes
/// an event the policies add, fill `BATCH_BYTES` at about 2,400): each
/// read costs a policy call and a wake-up of the connection's
/// task whatever it carries, so more per read is less per event (`seq 1
/// 2000000` on `disk`: 5.2 million events/s with 1024, 6.8 million with
/// 4096, in two runs on an idle machine).
const BATCH_EVENTS: u32 = 4096;
/// About how many text bytes per read.
const BATCH_BYTES: u32 = 256 * 1024;
/// Starting size of a frame buffer.
const MIN_FRAME: usize = 16 * 1024;

/// An attached reader and where it stands in the log.
pub struct Cursor {
    log: Arc<Log>,
    /// `None` once detached.
    reader: Option<u64>,
    after: u64,
    progress: watch::Receiver<Progress>,
    shutdown: watch::Receiver<bool>,
}

/// What one [`Cursor::read`] found.
pub enum Step {
    /// Events after the cursor (the cursor is past them now).
    Events(wit::Events),
    /// Dropped events after the cursor (the cursor is past them now).
    Gap(wit::Gap),
    /// Nothing new yet: [`Cursor::wait`] for it.
    CaughtUp,
    /// The terminal event has been read, or the host is shutting down.
    End,
}

/// Why [`Cursor::wait`] returned.
pub enum Wake {
    /// The log moved (or may have): read again.
    Changed,
    /// Nothing moved for [`KEEPALIVE`].
    Keepalive,
    /// The host is shutting down, or the log is gone: stop.
    Ended,
}

impl Cursor {
    /// A cursor for `reader` (attached already) after eid `after`.
    pub fn new(log: Arc<Log>, reader: u64, after: u64, shutdown: watch::Receiver<bool>) -> Cursor {
        let progress = log.subscribe();
        Cursor {
            log,
            reader: Some(reader),
            after,
            progress,
            shutdown,
        }
    }

    /// Reads what follows the cursor and advances past it. Not to be
    /// cancelled midway (a policy call is in flight): race only [`wait`].
    ///
    /// [`wait`]: Cursor::wait
    pub async fn read(&mut self) -> Step {
        let now = *self.progress.borrow_and_update();
        if now.finished && self.after >= now.newest {
            return Step::End;
        }
        if self.after >= now.newest {
            if *self.shutdown.borrow() {
                return Step::End;
            }
            return Step::CaughtUp;
        }
        match self.log.read(self.after, BATCH_EVENTS, BATCH_BYTES).await {
            ReadResult::Events(events) => {
                let count = events.batch.len() as u64 + u64::from(events.ending.is_some());
                self.after = events.first_eid + count - 1;
                Step::Events(events)
            }
            ReadResult::Gap(gap) => {
                self.after = gap.to_eid;
                Step::Gap(gap)
            }
            // Should not happen while newest > cursor; wait rather than spin.
            ReadResult::Pending => Step::CaughtUp,
            ReadResult::Finished => Step::End,
        }
    }

    /// Waits for the log to move, at most [`KEEPALIVE`]. Cancel-safe.
    pub async fn wait(&mut self) -> Wake {
        tokio::select! {
            changed = self.progress.changed() => match changed {
                Ok(()) => Wake::Changed,
                Err(_) => Wake::Ended,
            },
            _ = self.shutdown.changed() => Wake::Ended,
            _ = tokio::time::sleep(KEEPALIVE) => Wake::Keepalive,
        }
    }

    /// Detaches the reader from the log.
    pub async fn close(&mut self) {
        if let Some(reader) = self.reader.take() {
            self.log.detach(reader).await;
        }
    }
}

impl Drop for Cursor {
    /// A cursor dropped without [`Cursor::close`] (its stream was dropped
    /// mid-way) still frees its place among the command's readers.
    fn drop(&mut self) {
        if let Some(reader) = self.reader.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let log = Arc::clone(&self.log);
            runtime.spawn(async move { log.detach(reader).await });
        }
    }
}

/// Streams the log from the cursor to its terminal event into `tx`, then
/// detaches. Ends early when the client goes away (the body is dropped).
pub async fn follow(mut cursor: Cursor, framing: Framing, tx: mpsc::Sender<Bytes>) {
    let mut buf = Vec::with_capacity(MIN_FRAME);
    loop {
        match cursor.read().await {
            Step::Events(events) => {
                let ended = sse::events(&mut buf, framing, &events);
                if !send(&tx, &mut buf).await || ended {
                    break;
                }
            }
            Step::Gap(gap) => {
                sse::gap(&mut buf, framing, &gap, now_ms());
                if !send(&tx, &mut buf).await {
                    break;
                }
            }
            Step::CaughtUp => {
                // Wait for the next append, the client leaving, or the
                // keepalive tick.
                let wake = tokio::select! {
                    wake = cursor.wait() => wake,
                    _ = tx.closed() => break,
                };
                match wake {
                    Wake::Changed => {}
                    Wake::Ended => break,
                    Wake::Keepalive => {
                        sse::keepalive(&mut buf, framing, now_ms());
                        if !send(&tx, &mut buf).await {
                            break;
                        }
                    }
                }
            }
            Step::End => break,
        }
    }
    cursor.close().await;
}

/// Sends the buffered bytes as one frame; false once the client is gone.
/// The next buffer starts at this frame's size, so a busy stream does not
/// grow (copy, and fault in) a fresh buffer for every batch.
async fn send(tx: &mpsc::Sender<Bytes>, buf: &mut Vec<u8>) -> bool {
    if buf.is_empty() {
        return true;
    }
    let next = Vec::with_capacity(MIN_FRAME);
    let frame = Bytes::from(std::mem::replace(buf, next));
    tx.send(frame).await.is_ok()
}
