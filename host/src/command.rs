//! A command the host started: what was asked, its status, its log, and
//! how to signal it.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::ending::reason_word;
use crate::error::LogsError;
use crate::exec::group::ProcessGroup;
use crate::exec::output::{OutputFile, ReadPlan};
use crate::log::Log;
use crate::policy::wit::{Ending, Outcome, Reason};
use crate::record::RecordFile;
use crate::scratch::ScratchDir;
use crate::stream::sse::{HOST_RESTARTED, HOST_SHUTDOWN};
use crate::time::rfc3339;

/// Where a command stands: what `GET /command/status/{id}` reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// Its process has not ended yet.
    pub running: bool,
    /// Its exit status once ended: -1 when a signal killed it.
    pub exit_code: Option<i32>,
    /// How it failed, when it did (e.g. `exit status 2`).
    pub error: Option<String>,
    /// Why it ended, once it did: `exit`, `signal`, `timeout`,
    /// `interrupted`, `host-shutdown`, `host-restarted` or `spawn-failed`.
    pub reason: Option<&'static str>,
    /// The signal that ended it, if one did (whoever sent it).
    pub signal: Option<u8>,
    /// How it ended, once it did: `reason` and `signal` as one value.
    pub ending: Option<crate::ending::Ending>,
    /// When it ended.
    pub finished_at: Option<SystemTime>,
}

pub struct Command {
    pub id: String,
    pub content: String,
    pub background: bool,
    pub started_at: SystemTime,
    pub started: Instant,
    pub log: Arc<Log>,
    /// Raw combined output, kept for background commands' `/logs`.
    pub output: Option<OutputFile>,
    /// The policy's directory for this command's log, if it wanted one.
    pub scratch: Option<ScratchDir>,
    /// What a later host needs to know of it, in a kept state directory.
    pub record: Option<RecordFile>,
    /// Its process group, which may outlive it (`sleep 60 &`); `None` for
    /// a command a previous host ran.
    group: Option<Arc<ProcessGroup>>,
    status: Mutex<Status>,
    /// What the host did to end it (a timeout, a DELETE, its shutdown),
    /// the first such thing only: what its terminal event's `reason` says.
    cause: Mutex<Option<Reason>>,
}

/// The files of a command, as [`Command::new`] and [`Command::recovered`]
/// take them.
pub struct Files {
    pub output: Option<OutputFile>,
    pub scratch: Option<ScratchDir>,
    pub record: Option<RecordFile>,
}

#[derive(Serialize)]
pub struct StatusBody<'a> {
    id: &'a str,
    content: &'a str,
    running: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signal: Option<u8>,
    started_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    finished_at: Option<String>,
}

/// The status body's `exit_code` and `error` for an outcome: one mapping,
/// for a command that ends now and one a previous host ran.
pub(crate) fn status_of(outcome: &Outcome) -> (i32, Option<String>) {
    match outcome {
        Outcome::Completed => (0, None),
        Outcome::Failed(f) => (f.exit_code, Some(f.message.clone())),
        Outcome::HostRestarted => (-1, Some(HOST_RESTARTED.to_string())),
        Outcome::HostShutdown => (-1, Some(HOST_SHUTDOWN.to_string())),
    }
}

/// Grace between SIGTERM and SIGKILL on interrupt, and the daemon's at
/// shutdown.
pub const KILL_GRACE: Duration = Duration::from_secs(3);

impl Command {
    pub fn new(
        id: String,
        content: String,
        background: bool,
        started_at: SystemTime,
        log: Arc<Log>,
        files: Files,
        group: Arc<ProcessGroup>,
    ) -> Command {
        Command {
            id,
            content,
            background,
            started_at,
            started: Instant::now(),
            log,
            output: files.output,
            scratch: files.scratch,
            record: files.record,
            group: Some(group),
            status: Mutex::new(Status {
                running: true,
                ..Status::default()
            }),
            cause: Mutex::new(None),
        }
    }

    /// A command a previous host on this state directory ran, which has
    /// ended (`ending` is its log's terminal event).
    pub fn recovered(
        id: String,
        content: String,
        background: bool,
        started_at: SystemTime,
        log: Arc<Log>,
        files: Files,
        ending: &Ending,
    ) -> Command {
        let (exit_code, error) = status_of(&ending.outcome);
        let finished_at = SystemTime::UNIX_EPOCH + Duration::from_millis(ending.timestamp_ms);
        // Only orders commands and times a running one: a guess will do.
        let started = SystemTime::now()
            .duration_since(started_at)
            .ok()
            .and_then(|ago| Instant::now().checked_sub(ago))
            .unwrap_or_else(Instant::now);
        Command {
            id,
            content,
            background,
            started_at,
            started,
            log,
            output: files.output,
            scratch: files.scratch,
            record: files.record,
            group: None,
            status: Mutex::new(Status {
                running: false,
                exit_code: Some(exit_code),
                error,
                reason: Some(reason_word(ending.reason)),
                signal: ending.signal,
                ending: Some(crate::ending::Ending::of(ending)),
                finished_at: Some(finished_at),
            }),
            cause: Mutex::new(None),
        }
    }

    pub fn status(&self) -> MutexGuard<'_, Status> {
        // A poisoned lock only means a panic elsewhere; the status is plain data.
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn status_body(&self) -> StatusBody<'_> {
        let status = self.status().clone();
        StatusBody {
            id: &self.id,
            content: &self.content,
            running: status.running,
            exit_code: status.exit_code,
            error: status.error,
            reason: status.reason,
            signal: status.signal,
            started_at: rfc3339(self.started_at),
            finished_at: status.finished_at.map(rfc3339),
        }
    }

    /// What to read of its raw output from byte `from` (see
    /// [`OutputFile::plan`]); only a background command keeps it.
    pub fn output_plan(&self, from: u64) -> Result<ReadPlan, LogsError> {
        let output = self.output.as_ref().ok_or(LogsError::NotKept)?;
        output.plan(from).map_err(LogsError::Io)
    }

    /// Notes what the host does to end the command, before it does it;
    /// only the first cause counts (a shutdown after a timeout's SIGKILL
    /// did not end it).
    pub fn note_cause(&self, cause: Reason) {
        let mut noted = self.cause.lock().unwrap_or_else(|p| p.into_inner());
        noted.get_or_insert(cause);
    }

    /// What the host did to end the command, if anything.
    pub fn cause(&self) -> Option<Reason> {
        *self.cause.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `signal` to the command's process group: the command, and
    /// whatever it left running after it ended. False when nothing of the
    /// group is left.
    pub fn signal(&self, signal: i32) -> bool {
        self.group.as_ref().is_some_and(|g| g.signal(signal))
    }

    /// The command's process group; `None` if a previous host ran it.
    pub fn group(&self) -> Option<&Arc<ProcessGroup>> {
        self.group.as_ref()
    }

    /// Leaves this command's files in place for a later host (at shutdown,
    /// with a kept `--state-dir`).
    pub fn keep_files(&self) {
        if let Some(output) = &self.output {
            output.keep();
        }
        if let Some(scratch) = &self.scratch {
            scratch.keep();
        }
        if let Some(record) = &self.record {
            record.keep();
        }
    }

    /// Deletes the files kept for this command (at host exit; otherwise
    /// they go when the command is dropped).
    pub fn remove_files(&self) {
        if let Some(output) = &self.output {
            output.remove();
        }
        if let Some(scratch) = &self.scratch {
            scratch.remove();
            self.log.forget_disk();
        }
        // The record goes when the command is dropped.
    }
}
