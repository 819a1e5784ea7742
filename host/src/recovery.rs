//! Start-up on a state directory a previous host left (`--state-dir`,
//! after a restart, a crash or a kill): every log it retained is served
//! again by the same id and eids, and what it left running is ended.
//!
//! For each command record (`record`) the host finds:
//! 1. What is left of its process group is killed: the previous host, its
//!    only reader, is gone. The record's leader start time and boot id keep
//!    a reused pid from being hit.
//! 2. The policy reopens the log in the command's directory (`reopen` in
//!    `wit/`); a log with no terminal event (the command was running) gets
//!    one now: `error`, `HostRestarted`.
//! 3. A background command's raw output is reopened for `/logs`.
//! 4. The command is served until its retention, counted from when it
//!    originally ended, runs out.
//!
//! Whatever cannot be recovered (no record, a damaged record, a policy
//! that keeps nothing on disk or refuses the files) is removed, with one
//! log line saying why; nothing of it can crash the host.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::budget::Share;
use crate::command::{Command, Files};
use crate::exec::output::OutputFile;
use crate::log::Log;
use crate::policy::wit::{Ending, Outcome, Reason};
use crate::record::{self, CommandRecord, HighWater, LoggedEnding, RecordFile};
use crate::registry::{Registry, is_id, split_budget};
use crate::scratch::ScratchDir;
use crate::time::now_ms;

/// What a recovery found, for the start-up log line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Logs served again.
    pub logs: usize,
    /// Of those, logs of commands that were still running, ended now.
    pub interrupted: usize,
    /// Process groups the previous host left, killed.
    pub killed: usize,
    /// Commands whose logs could not be served again (their files went).
    pub dropped: usize,
}

/// The files of one command id in the state directory.
#[derive(Default)]
struct Found {
    record: bool,
    log_dir: bool,
    output_dir: bool,
    /// Left by a record write that never finished.
    partial: bool,
}

/// Recovers every command the state directory holds into `registry`.
pub async fn recover(registry: &Arc<Registry>, dir: &Path) -> std::io::Result<Recovered> {
    let mut found: std::collections::BTreeMap<String, Found> = Default::default();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        let (id, kind) = match name.split_once('.') {
            Some((id, kind)) if is_id(id) => (id, kind),
            _ => continue, // not a command's: the lock, sessions
        };
        let files = found.entry(id.to_string()).or_default();
        match kind {
            "json" => files.record = true,
            "log" => files.log_dir = true,
            "out" => files.output_dir = true,
            "json.partial" => files.partial = true,
            _ => {}
        }
    }
    let mut recovered = Recovered::default();
    for (id, files) in found {
        let paths = Paths::new(dir, &id);
        if files.partial {
            let _ = std::fs::remove_file(dir.join(format!("{id}{}.partial", record::SUFFIX)));
        }
        if !files.record {
            // Created before the record (the host died while starting the
            // command, or while its files were being removed).
            paths.remove();
            continue;
        }
        let record = match CommandRecord::read(&paths.record, &id) {
            Ok(record) => record,
            Err(why) => {
                tracing::warn!(command = %id, "cannot read the command's record, its files are removed: {why}");
                paths.remove();
                recovered.dropped += 1;
                continue;
            }
        };
        if record.leader.as_ref().is_some_and(|l| l.kill_leftovers()) {
            recovered.killed += 1;
            tracing::info!(command = %id, "killed what the previous host left running of this command");
        }
        match adopt(registry, &record, &paths, files).await {
            Ok(Adopted::Served { interrupted }) => {
                recovered.logs += 1;
                recovered.interrupted += usize::from(interrupted);
            }
            Ok(Adopted::Expired) => {}
            Err(why) => {
                tracing::warn!(command = %id, "cannot serve the command's log again, its files are removed: {why}");
                paths.remove();
                recovered.dropped += 1;
            }
        }
    }
    Ok(recovered)
}

enum Adopted {
    Served {
        interrupted: bool,
    },
    /// Its retention ran out while no host served it.
    Expired,
}

/// Reopens one command's log (and output) and hands it to the registry.
async fn adopt(
    registry: &Arc<Registry>,
    record: &CommandRecord,
    paths: &Paths,
    files: Found,
) -> Result<Adopted, String> {
    let policy = registry.policy();
    if !policy.needs_directory() {
        return Err(format!(
            "the policy, {}, keeps its logs in memory only",
            policy.origin()
        ));
    }
    if record.policy != policy.origin() {
        return Err(format!(
            "its log was written by {}, and this host runs {}",
            record.policy,
            policy.origin()
        ));
    }
    if !files.log_dir {
        return Err("its log directory is missing".into());
    }
    let mut instance = policy
        .instantiate(Some(&paths.log))
        .await
        .map_err(|e| e.to_string())?;
    let dir_bytes = dir_bytes(&paths.log);
    let reopened = instance
        .reopen(dir_bytes)
        .await
        .map_err(|e| e.to_string())?;
    for damage in &reopened.damage {
        tracing::warn!(command = %record.id, "the log was damaged: {damage}; readers get a gap with reason damaged");
    }
    let (logged, lost) = match LoggedEnding::read(&paths.record) {
        Ok(Some(written)) => (Some((written.eid, written.ending)), written.lost),
        Ok(None) => (None, None),
        Err(why) => {
            tracing::warn!(command = %record.id, "cannot read how the command ended ({why}), the policy's terminal event is all there is");
            (None, None)
        }
    };
    // A command that was running, whose log's last records were damaged:
    // readers of the dead host may have seen eids up to its high-water
    // mark, so its ending goes after the mark, past what was lost.
    let (logged, after_mark) = match (logged, HighWater::read(&paths.record)) {
        (None, Some(mark))
            if reopened.ending.is_none()
                && !reopened.damage.is_empty()
                && mark > reopened.last_eid =>
        {
            tracing::warn!(command = %record.id, last_eid = reopened.last_eid, high_water = mark, "the log of a command that was running lost its last records: it ends after its high-water mark");
            (
                Some((mark + 1, restarted_ending(record.started_at_ms))),
                true,
            )
        }
        (logged, _) => (logged, false),
    };
    let (log_budget, output_budget) =
        split_budget(registry.bounds().command_disk_budget, record.background);
    let log = Log::reopened(
        record.id.clone(),
        instance,
        Share::new(registry.disk()),
        std::sync::Arc::clone(registry.metrics()),
        reopened,
        logged,
        lost.as_deref(),
    )
    .map_err(|e| e.to_string())?;
    log.set_disk_budget(log_budget).await;
    let interrupted = match log.ending().await {
        None => {
            let ending = restarted_ending(record.started_at_ms);
            log.finish(ending.clone()).await;
            if let Some(eid) = log.terminal().await {
                record::write_ending(&paths.record, eid, &ending);
            }
            true
        }
        Some(ending) => {
            let said = log.restored_reason().await;
            if (after_mark || (said.is_some() && lost.as_deref() != said))
                && let Some(eid) = log.terminal().await
            {
                record::write_ending_after_loss(&paths.record, eid, &ending, said);
            }
            after_mark
        }
    };
    if let Some(failure) = log.failure().await {
        return Err(failure.to_string());
    }
    let ending = log.ending().await.ok_or("the log has no terminal event")?;
    let output = if record.background && files.output_dir {
        let share = Share::new(registry.disk());
        match OutputFile::reopen(paths.output.clone(), output_budget, share) {
            Ok(output) => Some(output),
            Err(e) => {
                tracing::warn!(command = %record.id, "cannot reopen the raw output, /logs answers empty: {e}");
                None
            }
        }
    } else {
        None
    };
    let retention = match log.retention_ms().await {
        Some(ms) => Duration::from_millis(ms),
        None => return Err("the policy failed".into()),
    };
    let ended_ago = Duration::from_millis(now_ms().saturating_sub(ending.timestamp_ms));
    let left = retention.saturating_sub(ended_ago);
    let started_at = SystemTime::UNIX_EPOCH + Duration::from_millis(record.started_at_ms);
    let command = Arc::new(Command::recovered(
        record.id.clone(),
        record.command.clone(),
        record.background,
        started_at,
        log,
        Files {
            output,
            scratch: Some(ScratchDir::existing(paths.log.clone())),
            record: Some(RecordFile::existing(paths.record.clone())),
        },
        &ending,
    ));
    if let Some(used) = &record.idempotency {
        registry.keys.restore(used, &record.id);
    }
    if left.is_zero() {
        // Gone before the first request; its files go with `command`.
        let terminal = command.log.terminal().await.unwrap_or(0);
        registry.remember_expired(&command.id, terminal);
        return Ok(Adopted::Expired);
    }
    registry.adopt(command, left);
    Ok(Adopted::Served { interrupted })
}

/// The ending a host gives a command that a host which died left running.
fn restarted_ending(started_at_ms: u64) -> Ending {
    Ending {
        outcome: Outcome::HostRestarted,
        reason: Reason::HostRestarted,
        signal: None,
        execution_ms: now_ms().saturating_sub(started_at_ms),
        timestamp_ms: now_ms(),
    }
}

/// Bytes of the files in `dir` (a policy's directory holds only files).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// Where one command's files are.
struct Paths {
    record: PathBuf,
    ending: PathBuf,
    log: PathBuf,
    output: PathBuf,
}

impl Paths {
    fn new(dir: &Path, id: &str) -> Paths {
        Paths {
            record: dir.join(format!("{id}{}", record::SUFFIX)),
            ending: dir.join(format!("{id}{}", record::ENDING_SUFFIX)),
            log: dir.join(format!("{id}.log")),
            output: dir.join(format!("{id}.out")),
        }
    }

    /// Removes whatever of them exists.
    fn remove(&self) {
        for dir in [&self.log, &self.output] {
            if let Err(e) = std::fs::remove_dir_all(dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %dir.display(), "cannot remove: {e}");
            }
        }
        for file in [&self.record, &self.ending] {
            if let Err(e) = std::fs::remove_file(file)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %file.display(), "cannot remove: {e}");
            }
        }
    }
}
