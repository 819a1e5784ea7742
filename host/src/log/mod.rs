//! One command's event log: the policy instance behind a lock, the newest
//! eid for readers to wait on, and what happens when the policy fails.
//!
//! Eids are assigned in exactly one place: the policy's `append`/`finish`,
//! called only by the command's pump. The host checks every answer against
//! the rules of `wit/`; a policy that traps, runs out of time or memory, or
//! answers nonsense is dropped, and from then on the host continues the
//! eids itself in a small buffer that only already-connected readers use.

pub mod batch;
mod fallback;
mod restored;
mod rules;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::{Mutex, watch};

use crate::budget::Share;
pub use crate::error::AttachError;
use crate::policy::wit::{self, Admission, ReadResult};
use crate::policy::{PolicyError, PolicyInstance};
use crate::record::HighWater;
use crate::telemetry::{Call, Metrics};
use fallback::Fallback;
use restored::Restored;

/// Where the log stands, as readers see it without taking the lock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Eid of the newest logged event (0 before the first).
    pub newest: u64,
    /// The terminal event is logged.
    pub finished: bool,
}

/// The reason of a gap over output the policy could not store.
const IO_REASON: &str = "io";

pub struct Log {
    /// The command id, for the log line a failure gets.
    command: String,
    state: Mutex<State>,
    progress: watch::Sender<Progress>,
    next_reader: AtomicU64,
    /// Bytes the policy said the log takes on disk, as of its last answer,
    /// counted against the host's budget.
    disk: Share,
    metrics: Arc<Metrics>,
    /// Bytes of output text logged, for the line the host logs when the
    /// command ends.
    text_bytes: AtomicU64,
    /// Gaps sent to this log's readers, for the same line.
    gaps_sent: AtomicU64,
    /// The command's high-water mark in a kept state directory, and the
    /// eid it stands at (see `record::HighWater`).
    high_water: std::sync::Mutex<Option<HighWater>>,
    reserved: AtomicU64,
}

/// What a log saw, for the line the host logs when its command ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Events logged, the terminal one included.
    pub events: u64,
    /// Bytes of output text logged.
    pub bytes: u64,
    /// Gaps sent to readers.
    pub gaps: u64,
}

struct State {
    backend: Backend,
    newest: u64,
    terminal: Option<u64>,
    /// The terminal event, kept by the host too for connected readers
    /// should the policy fail.
    ending: Option<wit::Ending>,
    /// A reopened log whose end the host serves itself (see `restored`).
    restored: Option<Restored>,
    readers: Vec<u64>,
    /// When the last reader went, for retention (see [`Log::unread_since`]).
    last_detached: Option<tokio::time::Instant>,
    /// A gap with reason `io` was reported in the host's log.
    io_gap_logged: bool,
    /// Text the policy left in files could not be read, and the host's
    /// log said so.
    text_gap_logged: bool,
    metrics: Arc<Metrics>,
}

enum Backend {
    Policy(PolicyInstance),
    /// The policy failed; `recent` continues the log for connected readers.
    Failed {
        error: PolicyError,
        recent: Fallback,
    },
}

impl Log {
    pub fn new(
        command: String,
        policy: PolicyInstance,
        disk: Share,
        metrics: Arc<Metrics>,
    ) -> Arc<Log> {
        Arc::new(Log {
            command,
            state: Mutex::new(State {
                backend: Backend::Policy(policy),
                newest: 0,
                terminal: None,
                ending: None,
                restored: None,
                readers: Vec::new(),
                last_detached: None,
                io_gap_logged: false,
                text_gap_logged: false,
                metrics: Arc::clone(&metrics),
            }),
            progress: watch::Sender::new(Progress::default()),
            next_reader: AtomicU64::new(1),
            disk,
            metrics,
            text_bytes: AtomicU64::new(0),
            gaps_sent: AtomicU64::new(0),
            high_water: std::sync::Mutex::new(None),
            reserved: AtomicU64::new(u64::MAX),
        })
    }

    /// The log a previous host left, which `policy` reopened and found to
    /// end at `newest` (with `ending` as its eid, when it has one). Checked
    /// to the rules of `wit/` first: a policy that says it holds a
    /// terminal event but no eid for it is not believed. `logged` is the
    /// terminal event the host wrote down, and its eid, if it did: where
    /// the policy lost it, the host serves it (see `restored`).
    pub fn reopened(
        command: String,
        policy: PolicyInstance,
        disk: Share,
        metrics: Arc<Metrics>,
        reopened: wit::Reopened,
        logged: Option<(u64, wit::Ending)>,
        lost: Option<&str>,
    ) -> Result<Arc<Log>, PolicyError> {
        if reopened.ending.is_some() && reopened.last_eid == 0 {
            return Err(PolicyError::Nonsense(
                "it has a terminal event, yet no eid for it".into(),
                "reopen",
            ));
        }
        let restored = Restored::check(&reopened, logged.as_ref(), lost)
            .map_err(|why| PolicyError::Nonsense(why, "reopen"))?;
        disk.set(reopened.disk_bytes);
        let (newest, ending) = match (&restored, logged) {
            (Some(_), Some((terminal, ending))) => (terminal, Some(ending)),
            _ => (reopened.last_eid, reopened.ending),
        };
        let terminal = ending.as_ref().map(|_| newest);
        let log = Arc::new(Log {
            command,
            state: Mutex::new(State {
                backend: Backend::Policy(policy),
                newest,
                terminal,
                ending,
                restored,
                readers: Vec::new(),
                last_detached: None,
                io_gap_logged: false,
                text_gap_logged: false,
                metrics: Arc::clone(&metrics),
            }),
            progress: watch::Sender::new(Progress {
                newest,
                finished: terminal.is_some(),
            }),
            next_reader: AtomicU64::new(1),
            disk,
            metrics,
            text_bytes: AtomicU64::new(0),
            gaps_sent: AtomicU64::new(0),
            high_water: std::sync::Mutex::new(None),
            reserved: AtomicU64::new(u64::MAX),
        });
        Ok(log)
    }

    /// The reason of the gap the host serves before the terminal event of
    /// a restored log (see `restored`); `None` for any other log.
    pub async fn restored_reason(&self) -> Option<&'static str> {
        self.state
            .lock()
            .await
            .restored
            .as_ref()
            .map(Restored::reason)
    }

    /// The terminal event, once logged.
    pub async fn ending(&self) -> Option<wit::Ending> {
        self.state.lock().await.ending.clone()
    }

    /// Bytes the log takes on disk, as the policy last reported (0 once it
    /// failed: its files go with the command).
    pub fn disk_bytes(&self) -> u64 {
        self.disk.get()
    }

    /// The log's files were removed (the command expired).
    pub fn forget_disk(&self) {
        self.disk.set(0);
    }

    /// Hands the policy the command's disk budget (before the first append,
    /// and again when the host's own budget runs short).
    pub async fn set_disk_budget(&self, bytes: u64) {
        let mut state = self.state.lock().await;
        if let Backend::Policy(policy) = &mut state.backend {
            match policy.set_disk_budget(bytes).await {
                Ok(used) => self.disk.set(used),
                Err(e) => state.fail(&self.command, e),
            }
        }
    }

    /// Receives every change of [`Progress`]; a wait on it cannot miss one.
    pub fn subscribe(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    pub fn progress(&self) -> Progress {
        *self.progress.borrow()
    }

    /// Logs a batch of lines in order. The pump is the only caller.
    pub async fn append(&self, batch: wit::Batch) {
        if batch.is_empty() {
            return;
        }
        self.count(&batch);
        let mut state = self.state.lock().await;
        let expected = state.newest + batch.len() as u64;
        if let Backend::Policy(policy) = &mut state.backend {
            let started = Instant::now();
            let appended = policy.append(&batch).await;
            self.metrics.policy_call(Call::Append, started.elapsed());
            match appended {
                Ok(stored) if stored.last_eid == expected => {
                    state.newest = expected;
                    drop(state);
                    if expected > self.reserved.load(Ordering::Acquire) {
                        self.raise_high_water(expected);
                    }
                    self.disk.set(stored.disk_bytes);
                    self.progress.send_modify(|p| p.newest = expected);
                    return;
                }
                Ok(wit::Stored { last_eid: last, .. }) => state.fail(
                    &self.command,
                    PolicyError::Nonsense(
                        format!(
                            "appending {} lines should end at eid {expected}, it said {last}",
                            batch.len()
                        ),
                        "append",
                    ),
                ),
                Err(e) => state.fail(&self.command, e),
            }
        }
        let mut at = 0;
        for head in batch.heads() {
            let end = at + head.len as usize;
            let text = batch.text.get(at..end).unwrap_or_default().to_vec();
            at = end;
            state.newest += 1;
            let eid = state.newest;
            if let Backend::Failed { recent, .. } = &mut state.backend {
                recent.keep(eid, head, text);
            }
        }
        drop(state);
        self.progress.send_modify(|p| p.newest = expected);
    }

    /// Keeps `mark` ahead of the eids readers may see, from now on.
    pub fn keep_high_water(&self, mark: HighWater) {
        *self.high_water.lock().unwrap_or_else(|p| p.into_inner()) = Some(mark);
        self.raise_high_water(self.progress().newest);
    }

    /// Raises the mark past `newest` before readers see it; a mark that
    /// cannot be written is said once and left (a restart then ends a
    /// damaged log after what survived, as it would without one).
    fn raise_high_water(&self, newest: u64) {
        let mut mark = self.high_water.lock().unwrap_or_else(|p| p.into_inner());
        let Some(high_water) = mark.as_ref() else {
            return;
        };
        let reserved = newest + HighWater::AHEAD;
        match high_water.raise(reserved) {
            Ok(()) => self.reserved.store(reserved, Ordering::Release),
            Err(e) => {
                tracing::warn!(command = %self.command, "cannot write down the command's high-water mark: {e}");
                *mark = None;
                self.reserved.store(u64::MAX, Ordering::Release);
            }
        }
    }

    /// Logs the terminal event. The pump calls it once, last.
    pub async fn finish(&self, ending: wit::Ending) {
        let mut state = self.state.lock().await;
        let expected = state.newest + 1;
        self.metrics.command_ended(end_reason(&ending));
        if let Backend::Policy(policy) = &mut state.backend {
            let started = Instant::now();
            let finished = policy.finish(ending.clone()).await;
            self.metrics.policy_call(Call::Finish, started.elapsed());
            match finished {
                Ok(stored) if stored.last_eid == expected => {
                    self.disk.set(stored.disk_bytes);
                }
                Ok(wit::Stored { last_eid: eid, .. }) => state.fail(
                    &self.command,
                    PolicyError::Nonsense(
                        format!("the terminal event should be eid {expected}, it said {eid}"),
                        "finish",
                    ),
                ),
                Err(e) => state.fail(&self.command, e),
            }
        }
        state.newest = expected;
        state.terminal = Some(expected);
        state.ending = Some(ending);
        drop(state);
        self.progress.send_replace(Progress {
            newest: expected,
            finished: true,
        });
    }

    /// Events after `after`, checked against the log's rules.
    pub async fn read(&self, after: u64, max_events: u32, max_bytes: u32) -> ReadResult {
        let mut state = self.state.lock().await;
        if let (Some(restored), Some(terminal), Some(ending)) =
            (&state.restored, state.terminal, &state.ending)
            && after >= restored.policy_newest
        {
            let result = restored.read(after, terminal, ending);
            if let ReadResult::Gap(gap) = &result {
                self.gap_sent(gap);
            }
            return result;
        }
        let restored = state.restored.is_some();
        if let Backend::Policy(policy) = &mut state.backend {
            let started = Instant::now();
            let mut result = policy.read(after, max_events, max_bytes).await;
            self.metrics.policy_call(Call::Read, started.elapsed());
            if restored && let Ok(ReadResult::Events(events)) = &mut result {
                // Its own terminal event is not the one logged.
                events.ending = None;
            }
            let has_directory = policy.has_directory();
            let checked = result.and_then(|r| {
                rules::check_read(after, r, max_bytes, state.policy_standing(), has_directory)
            });
            if let Ok(ReadResult::Gap(gap)) = &checked
                && gap.reason == IO_REASON
                && !state.io_gap_logged
            {
                // The policy's own stderr goes nowhere: this is where an
                // operator learns that the disk failed.
                state.io_gap_logged = true;
                tracing::warn!(
                    command = %self.command,
                    from_eid = gap.from_eid,
                    to_eid = gap.to_eid,
                    "the policy could not store this command's output (disk full or failing): readers get a gap with reason io"
                );
            }
            match checked.and_then(|r| state.read_text(&self.command, r)) {
                Ok(result) => {
                    if let ReadResult::Gap(gap) = &result {
                        self.gap_sent(gap);
                    }
                    return result;
                }
                Err(e) => state.fail(&self.command, e),
            }
        }
        let Backend::Failed { recent, .. } = &state.backend else {
            return ReadResult::Pending;
        };
        let result = recent.read(after, max_events, state.standing());
        if let ReadResult::Gap(gap) = &result {
            self.gap_sent(gap);
        }
        result
    }

    /// Counts the output of a batch about to be logged.
    fn count(&self, batch: &wit::Batch) {
        let mut lens = batch.lens.iter();
        let mut total = 0;
        for run in &batch.runs {
            let bytes: u64 = lens
                .by_ref()
                .take(run.lines as usize)
                .map(|&l| u64::from(l))
                .sum();
            total += bytes;
            let stderr = matches!(run.channel, wit::Channel::Stderr);
            self.metrics.logged(stderr, u64::from(run.lines), bytes);
        }
        self.text_bytes.fetch_add(total, Ordering::Relaxed);
    }

    fn gap_sent(&self, gap: &wit::Gap) {
        let events = gap.to_eid.saturating_sub(gap.from_eid) + 1;
        self.metrics.gap(&gap.reason, events);
        self.gaps_sent.fetch_add(1, Ordering::Relaxed);
    }

    /// What the log saw so far.
    pub fn tally(&self) -> Tally {
        Tally {
            events: self.progress().newest,
            bytes: self.text_bytes.load(Ordering::Relaxed),
            gaps: self.gaps_sent.load(Ordering::Relaxed),
        }
    }

    /// Since when no reader has followed the log: `None` while one does,
    /// else the last one's detach, or `since` if that was later (or none
    /// ever came). Retention counts from here: a log expired under a
    /// reader would lose its files mid-read.
    pub async fn unread_since(&self, since: tokio::time::Instant) -> Option<tokio::time::Instant> {
        let state = self.state.lock().await;
        if !state.readers.is_empty() {
            return None;
        }
        Some(state.last_detached.map_or(since, |d| d.max(since)))
    }

    /// Asks the policy whether a new reader may follow the log; returns the
    /// reader's id, to hand back to [`Log::detach`].
    pub async fn attach(&self, max_readers: usize) -> Result<u64, AttachError> {
        let reader = self.next_reader.fetch_add(1, Ordering::Relaxed);
        let mut state = self.state.lock().await;
        if state.readers.len() >= max_readers {
            return Err(AttachError::TooMany(max_readers));
        }
        let live = state.readers.clone();
        let admission = match &mut state.backend {
            Backend::Policy(policy) => {
                let started = Instant::now();
                let admission = policy.attach(reader, &live).await;
                self.metrics.policy_call(Call::Attach, started.elapsed());
                admission
            }
            Backend::Failed { error, .. } => return Err(AttachError::Failed(error.clone())),
        };
        match admission {
            Ok(Admission::Accept) => {
                state.readers.push(reader);
                self.metrics.reader_attached();
                Ok(reader)
            }
            Ok(Admission::Conflict(why)) => Err(AttachError::Conflict(why)),
            Err(e) => {
                state.fail(&self.command, e.clone());
                Err(AttachError::Failed(e))
            }
        }
    }

    pub async fn detach(&self, reader: u64) {
        let mut state = self.state.lock().await;
        let before = state.readers.len();
        state.readers.retain(|r| *r != reader);
        if state.readers.len() < before {
            self.metrics.reader_detached();
        }
        if state.readers.is_empty() {
            state.last_detached = Some(tokio::time::Instant::now());
        }
        if let Backend::Policy(policy) = &mut state.backend {
            let started = Instant::now();
            let detached = policy.detach(reader).await;
            self.metrics.policy_call(Call::Detach, started.elapsed());
            if let Err(e) = detached {
                state.fail(&self.command, e);
            }
        }
    }

    /// How long the finished log should stay resumable; `None` once the
    /// policy has failed.
    pub async fn retention_ms(&self) -> Option<u64> {
        let mut state = self.state.lock().await;
        if let Backend::Policy(policy) = &mut state.backend {
            match policy.retention_ms().await {
                Ok(ms) => return Some(ms),
                Err(e) => state.fail(&self.command, e),
            }
        }
        None
    }

    /// The policy's failure, if it failed.
    pub async fn failure(&self) -> Option<PolicyError> {
        match &self.state.lock().await.backend {
            Backend::Failed { error, .. } => Some(error.clone()),
            Backend::Policy(_) => None,
        }
    }

    /// The terminal event's eid, once logged.
    pub async fn terminal(&self) -> Option<u64> {
        self.state.lock().await.terminal
    }
}

/// The `reason` of a terminal event, as the wire, the metrics and the
/// host's log say it.
pub fn end_reason(ending: &wit::Ending) -> &'static str {
    crate::ending::reason_word(ending.reason)
}

/// Where a log stands: its newest eid, and its terminal event once
/// logged (the host keeps it whatever becomes of the policy).
struct Standing<'a> {
    newest: u64,
    terminal: Option<u64>,
    ending: Option<&'a wit::Ending>,
    /// The policy must keep the newest event: false where the host serves
    /// what follows it (see `restored`).
    keeps_newest: bool,
}

impl State {
    fn standing(&self) -> Standing<'_> {
        Standing {
            newest: self.newest,
            terminal: self.terminal,
            ending: self.ending.as_ref(),
            keeps_newest: true,
        }
    }

    /// Where the policy's own log stands: the whole log, unless the host
    /// serves its end (see `restored`).
    fn policy_standing(&self) -> Standing<'_> {
        match &self.restored {
            Some(restored) => Standing {
                newest: restored.policy_newest,
                terminal: None,
                ending: None,
                keeps_newest: false,
            },
            None => self.standing(),
        }
    }

    /// Drops the policy (and with it the whole log it held).
    fn fail(&mut self, command: &str, error: PolicyError) {
        if let Backend::Failed { .. } = self.backend {
            return;
        }
        tracing::error!(
            command,
            "{error}; the command keeps running, its log is dropped"
        );
        self.metrics.policy_failed();
        self.backend = Backend::Failed {
            error,
            recent: Fallback::default(),
        };
    }

    /// Reads the text a checked answer left in the policy's files. The
    /// lines before the first span that cannot be read (its file gone, cut
    /// short, not a regular file) are answered; when that span holds the
    /// first line, the answer's lines are a gap with reason `io` for this
    /// reader, as they would be had the policy failed to read them itself.
    /// Only if that gap would cover the newest event, which a policy must
    /// keep, is it the policy's failure.
    fn read_text(&mut self, command: &str, result: ReadResult) -> Result<ReadResult, PolicyError> {
        let mut events = match result {
            ReadResult::Events(events) if !events.text_in_files.is_empty() => events,
            other => return Ok(other),
        };
        let Backend::Policy(policy) = &self.backend else {
            return Err(PolicyError::Nonsense(
                "text in files from a failed policy".into(),
                "read",
            ));
        };
        let Err(unreadable) = policy.read_text(&mut events) else {
            return Ok(ReadResult::Events(events));
        };
        let (mut read, mut whole) = (0u64, 0usize);
        for &len in &events.batch.lens {
            if read + u64::from(len) > unreadable.text_before {
                break;
            }
            read += u64::from(len);
            whole += 1;
        }
        if whole > 0 {
            // The next read from here meets the unreadable span first.
            events.batch.truncate(whole, read as usize);
            events.ending = None;
            return Ok(ReadResult::Events(events));
        }
        let lines = events.batch.len() as u64;
        let to_eid = events.first_eid + lines.max(1) - 1;
        let error = unreadable.error;
        let standing = self.policy_standing();
        if lines == 0 || (to_eid >= standing.newest && standing.keeps_newest) {
            return Err(PolicyError::Nonsense(
                format!("the text it left in files for the newest event cannot be read: {error}"),
                "read",
            ));
        }
        if !self.text_gap_logged {
            self.text_gap_logged = true;
            tracing::warn!(
                command = %command,
                from_eid = events.first_eid,
                to_eid,
                "cannot read the text the policy left in its directory (readers get a gap with reason io): {error}"
            );
        }
        let dropped: u64 = events.batch.lens.iter().map(|&l| u64::from(l)).sum();
        Ok(ReadResult::Gap(wit::Gap {
            from_eid: events.first_eid,
            to_eid,
            dropped_bytes: Some(dropped),
            reason: IO_REASON.to_string(),
        }))
    }
}
