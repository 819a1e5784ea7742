//! What the host writes down about each command in a kept state directory
//! (`--state-dir`), beside its log, so that a host started later on the
//! same directory can serve the log again and end what this one left
//! running: `<id>.json`.
//!
//! How the command ended is not here: that is the log's terminal event,
//! which the policy stores. A record is written once, when the command has
//! been spawned, by a rename, so a reader sees the whole of it or nothing.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use crate::exec::group::Leader;

/// The version of the record's shape; a record of another is not read.
const VERSION: u32 = 1;
/// The largest record read back: a command's text is bounded by the
/// request body limit, far below this.
pub const MAX_RECORD_BYTES: u64 = 16 << 20;
/// How a record's file name ends.
pub const SUFFIX: &str = ".json";

/// One command, as a later host needs to know it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRecord {
    pub version: u32,
    pub id: String,
    /// The command line, as the status body shows it.
    pub command: String,
    pub background: bool,
    /// When it started, Unix milliseconds.
    pub started_at_ms: u64,
    /// Its process group; `None` when `/proc` could not say who led it (a
    /// later host then leaves the group alone).
    pub leader: Option<Leader>,
    /// The policy that keeps its log (`PolicyEngine::origin`): a later host
    /// with another one does not hand it files it did not write.
    pub policy: String,
    /// The `Idempotency-Key` it was started with, and what that asked for.
    #[serde(default)]
    pub idempotency: Option<crate::keys::KeyUse>,
}

impl CommandRecord {
    pub fn new(
        id: &str,
        command: &str,
        background: bool,
        started_at_ms: u64,
        leader: Option<Leader>,
        policy: &str,
    ) -> CommandRecord {
        CommandRecord {
            version: VERSION,
            id: id.to_string(),
            command: command.to_string(),
            background,
            started_at_ms,
            leader,
            policy: policy.to_string(),
            idempotency: None,
        }
    }

    /// Reads a record back, refusing what this host did not write: an
    /// oversized file, bad JSON, another version, or an id that is not the
    /// file's.
    pub fn read(path: &Path, id: &str) -> Result<CommandRecord, String> {
        use std::io::Read;
        let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let mut bytes = Vec::new();
        file.take(MAX_RECORD_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| e.to_string())?;
        if bytes.len() as u64 > MAX_RECORD_BYTES {
            return Err(format!("larger than {MAX_RECORD_BYTES} bytes"));
        }
        let record: CommandRecord =
            serde_json::from_slice(&bytes).map_err(|e| format!("not a command record: {e}"))?;
        if record.version != VERSION {
            return Err(format!(
                "record version {}, this host reads {VERSION}",
                record.version
            ));
        }
        if record.id != id {
            return Err(format!("the record names another command, {}", record.id));
        }
        Ok(record)
    }
}

/// A command's record on disk: removed with the command, unless the host
/// is stopping and keeps its state directory for the next one.
pub struct RecordFile {
    path: PathBuf,
    keep: AtomicBool,
}

impl RecordFile {
    /// Writes `record` to `dir/<id>.json` (0600), whole or not at all.
    pub fn write(dir: &Path, record: &CommandRecord) -> std::io::Result<RecordFile> {
        let path = dir.join(format!("{}{SUFFIX}", record.id));
        let partial = dir.join(format!("{}{SUFFIX}.partial", record.id));
        let bytes = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        let mut file = std::fs::File::options()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&partial)?;
        file.write_all(&bytes)?;
        drop(file);
        std::fs::rename(&partial, &path)?;
        Ok(RecordFile::existing(path))
    }

    /// The record a previous host wrote, now this host's to remove.
    pub fn existing(path: PathBuf) -> RecordFile {
        RecordFile {
            path,
            keep: AtomicBool::new(false),
        }
    }

    /// Leave the file when this value is dropped (the host is stopping).
    pub fn keep(&self) {
        self.keep.store(true, Ordering::Relaxed);
    }
}

impl Drop for RecordFile {
    fn drop(&mut self) {
        if self.keep.load(Ordering::Relaxed) {
            return;
        }
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), "cannot remove a command record: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_and_goes_with_its_command() {
        let dir = std::env::temp_dir().join(format!("execd-record-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let id = "0123456789abcdef0123456789abcdef";
        let record = CommandRecord::new(
            id,
            "echo hi",
            true,
            42,
            Leader::of(std::process::id() as i32),
            "`disk` (embedded)",
        );
        let file = RecordFile::write(&dir, &record).unwrap();
        let path = dir.join(format!("{id}.json"));
        assert_eq!(CommandRecord::read(&path, id).unwrap(), record);
        assert!(CommandRecord::read(&path, "ffffffffffffffffffffffffffffffff").is_err());
        drop(file);
        assert!(!path.exists());

        let kept = RecordFile::write(&dir, &record).unwrap();
        kept.keep();
        drop(kept);
        assert!(path.exists());
        std::fs::write(&path, b"{\"version\":9}").unwrap();
        assert!(CommandRecord::read(&path, id).is_err());
        std::fs::write(&path, b"\xff\x00garbage").unwrap();
        assert!(CommandRecord::read(&path, id).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
