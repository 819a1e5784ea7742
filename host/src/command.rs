//! A command the host started: what was asked, its status, its log, and
//! how to signal it.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::group::ProcessGroup;
use crate::log::Log;
use crate::output::OutputFile;
use crate::scratch::ScratchDir;

/// What `GET /command/status/{id}` reports.
#[derive(Clone, Debug, Default)]
pub struct Status {
    pub running: bool,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
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
    /// Its process group, which may outlive it (`sleep 60 &`).
    group: Arc<ProcessGroup>,
    status: Mutex<Status>,
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
    started_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    finished_at: Option<String>,
}

/// Grace between SIGTERM and SIGKILL on interrupt.
pub const KILL_GRACE: Duration = Duration::from_secs(3);

impl Command {
    pub fn new(
        id: String,
        content: String,
        background: bool,
        log: Arc<Log>,
        output: Option<OutputFile>,
        scratch: Option<ScratchDir>,
        group: Arc<ProcessGroup>,
    ) -> Command {
        Command {
            id,
            content,
            background,
            started_at: SystemTime::now(),
            started: Instant::now(),
            log,
            output,
            scratch,
            group,
            status: Mutex::new(Status {
                running: true,
                ..Status::default()
            }),
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
            started_at: rfc3339(self.started_at),
            finished_at: status.finished_at.map(rfc3339),
        }
    }

    /// Sends `signal` to the command's process group: the command, and
    /// whatever it left running after it ended. False when nothing of the
    /// group is left.
    pub fn signal(&self, signal: i32) -> bool {
        self.group.signal(signal)
    }

    /// The command's process group.
    pub fn group(&self) -> &Arc<ProcessGroup> {
        &self.group
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
    }

    /// SIGTERM to the group now, SIGKILL after [`KILL_GRACE`] to whatever
    /// of it is still there.
    pub fn interrupt(self: &Arc<Self>) {
        if !self.signal(libc::SIGTERM) {
            return;
        }
        let command = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(KILL_GRACE).await;
            if command.signal(libc::SIGKILL) {
                tracing::info!(id = %command.id, "SIGKILL after interrupt grace");
            }
        });
    }
}

pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub fn now_ms() -> u64 {
    unix_ms(SystemTime::now())
}
