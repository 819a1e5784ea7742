//! A command's log as typed values, for programs that embed the host: the
//! same [`Cursor`] that feeds every SSE stream, with its events decoded
//! instead of framed.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use super::reader::{Cursor, Step, Wake};
use crate::ending::Ending;
use crate::policy::wit;

/// The pipe a line was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One line of output, as logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// Its eid: 1, 2, 3, ... across both pipes.
    pub eid: u64,
    /// The pipe it came from.
    pub channel: Channel,
    /// When the host read it, Unix milliseconds.
    pub timestamp_ms: u64,
    /// Its text, without its `\n` (invalid UTF-8 as U+FFFD; an empty
    /// line is `"\n"`).
    pub text: String,
    /// No `\n` followed it (cut at the longest line, flushed while the
    /// pipe was idle, or the pipe's last bytes): the next line of the same
    /// pipe continues it. The pipe's bytes are each line's text plus `\n`
    /// unless partial (an empty line's `"\n"` being one `\n`).
    pub partial: bool,
}

/// Eids the log no longer holds: the reader continues after `to_eid`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gap {
    /// First missing eid.
    pub from_eid: u64,
    /// Last missing eid.
    pub to_eid: u64,
    /// Bytes of text they held, when the policy still knows.
    pub dropped_bytes: Option<u64>,
    /// Why: `evicted`, `budget`, `io`, `policy-failed`, `damaged`, ...
    pub reason: String,
}

/// How a command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Exit status 0.
    Completed,
    /// Anything else.
    Failed {
        /// The exit status, or -1 when a signal killed it.
        exit_code: i32,
        /// Human text, e.g. `exit status 2`.
        message: String,
    },
    /// The host that ran it stopped before it ended; a later host on the
    /// same state directory ended its log.
    HostRestarted,
    /// The host's own orderly shutdown ended it.
    HostShutdown,
}

/// The terminal event: the last of every command's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct End {
    /// Its eid, one past the last line's.
    pub eid: u64,
    /// How the command ended, typed: what to match on.
    pub ending: Ending,
    /// How the command ended, in execd's terms (what its clients see).
    pub outcome: Outcome,
    /// Why: `exit`, `signal`, `timeout`, `interrupted`, `host-shutdown`,
    /// `host-restarted` or `spawn-failed`, as the wire's `reason`.
    pub reason: &'static str,
    /// The signal that ended it, if one did.
    pub signal: Option<u8>,
    /// Milliseconds from start to end.
    pub execution_ms: u64,
    /// When it ended, Unix milliseconds.
    pub timestamp_ms: u64,
}

/// One item of [`Events`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Consecutive lines, as one read of the log returned them.
    Lines(Vec<Line>),
    /// Events the log dropped.
    Gap(Gap),
    /// The terminal event; nothing follows it.
    End(End),
}

/// A command's events after a cursor, to the terminal event: a
/// [`Stream`] of [`Event`]s, following the command live once it has
/// caught up. It ends after [`Event::End`], or early when the host shuts
/// down or the command's log is gone. Dropping it detaches its reader.
pub struct Events {
    inner: Pin<Box<dyn Stream<Item = Event> + Send>>,
}

impl Events {
    pub(crate) fn new(cursor: Cursor) -> Events {
        let state = (cursor, VecDeque::new());
        let inner = futures_util::stream::unfold(state, |(mut cursor, mut queued)| async move {
            loop {
                if let Some(event) = queued.pop_front() {
                    return Some((event, (cursor, queued)));
                }
                match cursor.read().await {
                    Step::Events(events) => queued.extend(decode(&events)),
                    Step::Gap(gap) => queued.push_back(Event::Gap(Gap {
                        from_eid: gap.from_eid,
                        to_eid: gap.to_eid,
                        dropped_bytes: gap.dropped_bytes,
                        reason: gap.reason,
                    })),
                    Step::CaughtUp => match cursor.wait().await {
                        Wake::Changed | Wake::Keepalive => {}
                        Wake::Ended => {
                            cursor.close().await;
                            return None;
                        }
                    },
                    Step::End => {
                        cursor.close().await;
                        return None;
                    }
                }
            }
        });
        Events {
            inner: Box::pin(inner),
        }
    }
}

impl Stream for Events {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

/// The lines of a read, then its terminal event if it holds one.
fn decode(events: &wit::Events) -> Vec<Event> {
    let batch = &events.batch;
    let mut lines = Vec::with_capacity(batch.lens.len());
    let mut eid = events.first_eid;
    let mut at = 0usize;
    let mut lens = batch.lens.as_slice();
    for run in &batch.runs {
        let (these, rest) = lens.split_at((run.lines as usize).min(lens.len()));
        lens = rest;
        for (i, &len) in these.iter().enumerate() {
            let end = at.saturating_add(len as usize);
            let text = batch.text.get(at..end).unwrap_or_default();
            at = end;
            lines.push(Line {
                eid,
                channel: match run.channel {
                    wit::Channel::Stdout => Channel::Stdout,
                    wit::Channel::Stderr => Channel::Stderr,
                },
                timestamp_ms: run.timestamp_ms,
                text: String::from_utf8_lossy(text).into_owned(),
                partial: run.partial && i + 1 == these.len(),
            });
            eid += 1;
        }
    }
    let mut out = Vec::with_capacity(2);
    if !lines.is_empty() {
        out.push(Event::Lines(lines));
    }
    if let Some(ending) = &events.ending {
        out.push(Event::End(End {
            eid,
            ending: Ending::of(ending),
            outcome: match &ending.outcome {
                wit::Outcome::Completed => Outcome::Completed,
                wit::Outcome::Failed(f) => Outcome::Failed {
                    exit_code: f.exit_code,
                    message: f.message.clone(),
                },
                wit::Outcome::HostRestarted => Outcome::HostRestarted,
                wit::Outcome::HostShutdown => Outcome::HostShutdown,
            },
            reason: crate::ending::reason_word(ending.reason),
            signal: ending.signal,
            execution_ms: ending.execution_ms,
            timestamp_ms: ending.timestamp_ms,
        }));
    }
    out
}
