//! A reader: a cursor into a command's log, streamed to one client.
//!
//! Every stream, the first `POST /command` one included, is this loop:
//! read the events after the cursor, send them, advance, and when nothing
//! is left wait for the log's newest eid to move. Live output is replay
//! that has caught up, so nothing is lost or repeated at the switch.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use crate::command::now_ms;
use crate::log::Log;
use crate::policy::wit::ReadResult;
use crate::stream::sse::{self, Framing};

/// SSE comment / ping interval while a stream waits.
pub const KEEPALIVE: Duration = Duration::from_secs(3);
/// Most events per read from the log, and so per write to the socket.
const BATCH_EVENTS: u32 = 1024;
/// About how many text bytes per read.
const BATCH_BYTES: u32 = 256 * 1024;
/// Starting size of a frame buffer.
const MIN_FRAME: usize = 16 * 1024;

/// Streams the log from `cursor` to its terminal event into `tx`, then
/// detaches. Ends early when the client goes away (the body is dropped).
pub async fn follow(
    log: Arc<Log>,
    reader: u64,
    mut cursor: u64,
    framing: Framing,
    tx: mpsc::Sender<Bytes>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut progress = log.subscribe();
    let mut buf = Vec::with_capacity(MIN_FRAME);
    'stream: loop {
        let now = *progress.borrow_and_update();
        if now.finished && cursor >= now.newest {
            break;
        }
        if cursor >= now.newest {
            if *shutdown.borrow() {
                break;
            }
            // Caught up: wait for the next append, the client leaving, or
            // the keepalive tick.
            tokio::select! {
                changed = progress.changed() => if changed.is_err() { break },
                _ = tx.closed() => break,
                _ = shutdown.changed() => break,
                _ = tokio::time::sleep(KEEPALIVE) => {
                    sse::keepalive(&mut buf, framing, now_ms());
                    if !send(&tx, &mut buf).await { break }
                }
            }
            continue;
        }
        match log.read(cursor, BATCH_EVENTS, BATCH_BYTES).await {
            ReadResult::Events(events) => {
                let ended = sse::events(&mut buf, framing, &events);
                let count = events.batch.len() as u64 + u64::from(ended);
                cursor = events.first_eid + count - 1;
                if !send(&tx, &mut buf).await || ended {
                    break 'stream;
                }
            }
            ReadResult::Gap(gap) => {
                sse::gap(&mut buf, framing, &gap, now_ms());
                cursor = gap.to_eid;
                if !send(&tx, &mut buf).await {
                    break;
                }
            }
            ReadResult::Pending => {
                // Should not happen while newest > cursor; avoid spinning.
                tokio::select! {
                    _ = progress.changed() => {},
                    _ = tx.closed() => break,
                }
            }
            ReadResult::Finished => break,
        }
    }
    log.detach(reader).await;
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
