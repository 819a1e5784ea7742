//! What the host writes down about each command in a kept state directory
//! (`--state-dir`), beside its log, so that a host started later on the
//! same directory can serve the log again and end what this one left
//! running: `<id>.json`.
//!
//! A record is written once, when the command has been spawned, by a
//! rename, so a reader sees the whole of it or nothing. How the command
//! ended, and the eid of that terminal event, go beside it in
//! `<id>.end` when it ends ([`RecordFile::set_ending`]): the policy stores
//! the terminal event too, but a policy's files can be damaged, cut by a
//! full disk or shrunk by a smaller budget, and an ending, once logged,
//! never changes. The slot is allocated with the record, so that writing
//! the ending into it needs no new space on a disk that has since filled.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use crate::exec::group::Leader;
use crate::policy::wit::{Ending, Failure, Outcome};

/// The version of the record's shape; a record of another is not read.
const VERSION: u32 = 1;
/// The largest record read back: a command's text is bounded by the
/// request body limit, far below this.
pub const MAX_RECORD_BYTES: u64 = 16 << 20;
/// How a record's file name ends.
pub const SUFFIX: &str = ".json";
/// How the file name of a command's ending slot ends.
pub const ENDING_SUFFIX: &str = ".end";
/// The size of the ending slot: room for any ending the host logs (the
/// message of a failure is a short text of the host's own, cut to fit).
const ENDING_SLOT_BYTES: usize = 512;
/// After it, the high-water mark: 8 bytes, little-endian (see
/// [`HighWater`]).
const HIGH_WATER_BYTES: usize = 8;
/// The whole `<id>.end` file.
const SLOT_FILE_BYTES: usize = ENDING_SLOT_BYTES + HIGH_WATER_BYTES;

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
        // Never through a link, nor blocking on a FIFO put there.
        let file = std::fs::File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| e.to_string())?;
        if !file.metadata().map_err(|e| e.to_string())?.is_file() {
            return Err("not a regular file".into());
        }
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
    /// `<id>.end`, the ending slot.
    ending: PathBuf,
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
        let file = RecordFile::existing(path);
        // Zeros, written: the blocks are the slot's from now on.
        std::fs::File::options()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&file.ending)?
            .write_all(&[0; SLOT_FILE_BYTES])?;
        std::fs::rename(&partial, &file.path)?;
        Ok(file)
    }

    /// The record a previous host wrote, now this host's to remove.
    pub fn existing(path: PathBuf) -> RecordFile {
        let ending = ending_path(&path);
        RecordFile {
            path,
            ending,
            keep: AtomicBool::new(false),
        }
    }

    /// Writes down the command's terminal event and its eid, in place in
    /// the slot allocated with the record (created if a host that had none
    /// wrote the record). A failure is logged: the policy's terminal event
    /// is then all a restarted host has.
    pub fn set_ending(&self, eid: u64, ending: &Ending) {
        write_ending(&self.path, eid, ending);
    }

    /// The command's high-water mark, for its log to raise.
    pub fn high_water(&self) -> std::io::Result<HighWater> {
        HighWater::open(&self.path)
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
        for path in [&self.path, &self.ending] {
            if let Err(e) = std::fs::remove_file(path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), "cannot remove a command record: {e}");
            }
        }
    }
}

/// Writes the terminal event of the command whose record is at `record`
/// into its ending slot (see [`RecordFile::set_ending`]).
pub fn write_ending(record: &Path, eid: u64, ending: &Ending) {
    write_ending_after_loss(record, eid, ending, None);
}

/// [`write_ending`], with the reason of the `gap` a restored log serves
/// before it (see `log::restored`), so that every later host says the same.
pub fn write_ending_after_loss(record: &Path, eid: u64, ending: &Ending, lost: Option<&str>) {
    let path = ending_path(record);
    let mut logged = LoggedEnding::new(eid, ending);
    logged.lost = lost.map(str::to_string);
    let mut bytes = logged.to_slot();
    bytes.resize(ENDING_SLOT_BYTES, 0);
    let written = open_slot(
        std::fs::File::options()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600),
        &path,
    )
    .and_then(|mut file| file.write_all(&bytes));
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), "cannot write down how the command ended: {e}");
    }
}

/// Where a running command's eids may have reached: the host raises it in
/// `<id>.end` before it lets readers see eids past it, a block of
/// [`HighWater::AHEAD`] at a time. A restarted host that finds the log's
/// last records damaged ends it after this mark rather than after what
/// survived, so that its terminal event never takes an eid a reader of
/// the dead host may have seen.
pub struct HighWater {
    file: std::fs::File,
}

impl HighWater {
    /// Eids reserved by one raise: one small write per this many events.
    pub const AHEAD: u64 = 4096;

    /// The mark of the record at `record`, for writing.
    pub fn open(record: &Path) -> std::io::Result<HighWater> {
        let file = open_slot(std::fs::File::options().write(true), &ending_path(record))?;
        Ok(HighWater { file })
    }

    /// Writes down that eids up to `eid` may be served.
    pub fn raise(&self, eid: u64) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.file
            .write_all_at(&eid.to_le_bytes(), ENDING_SLOT_BYTES as u64)
    }

    /// The mark the record at `record` holds, if any (a slot of an older
    /// host, or none, has none).
    pub fn read(record: &Path) -> Option<u64> {
        use std::os::unix::fs::FileExt;
        let file = open_slot(std::fs::File::options().read(true), &ending_path(record)).ok()?;
        let mut bytes = [0u8; HIGH_WATER_BYTES];
        file.read_exact_at(&mut bytes, ENDING_SLOT_BYTES as u64)
            .ok()?;
        Some(u64::from_le_bytes(bytes)).filter(|&eid| eid > 0)
    }
}

/// Opens an ending slot as `options` say, never through a link nor
/// blocking on a FIFO put there, and only if it is a regular file.
fn open_slot(options: &mut std::fs::OpenOptions, path: &Path) -> std::io::Result<std::fs::File> {
    let file = options
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(file)
}

/// `<id>.end` beside `<id>.json`.
fn ending_path(record: &Path) -> PathBuf {
    record.with_extension(ENDING_SUFFIX.trim_start_matches('.'))
}

/// What an ending slot holds, read back.
pub struct Written {
    pub eid: u64,
    pub ending: Ending,
    /// The reason of the gap before it, once a host restored the log.
    pub lost: Option<String>,
}

/// A terminal event as the ending slot holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedEnding {
    /// Its eid.
    pub eid: u64,
    /// `completed`, `failed`, `host-shutdown` or `host-restarted`.
    pub outcome: String,
    /// A failure's exit code and message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The wire's reason word.
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<u8>,
    pub execution_ms: u64,
    pub timestamp_ms: u64,
    /// Where the policy lost events before it: the reason of that gap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost: Option<String>,
}

/// The longest failure message the slot keeps.
const MAX_MESSAGE: usize = 256;

impl LoggedEnding {
    pub fn new(eid: u64, ending: &Ending) -> LoggedEnding {
        let (outcome, exit_code, message) = match &ending.outcome {
            Outcome::Completed => ("completed", None, None),
            Outcome::Failed(f) => {
                let mut message = f.message.clone();
                if message.len() > MAX_MESSAGE {
                    let mut end = MAX_MESSAGE;
                    while !message.is_char_boundary(end) {
                        end -= 1;
                    }
                    message.truncate(end);
                }
                ("failed", Some(f.exit_code), Some(message))
            }
            Outcome::HostShutdown => ("host-shutdown", None, None),
            Outcome::HostRestarted => ("host-restarted", None, None),
        };
        LoggedEnding {
            eid,
            outcome: outcome.to_string(),
            exit_code,
            message,
            reason: crate::ending::reason_word(ending.reason).to_string(),
            signal: ending.signal,
            execution_ms: ending.execution_ms,
            timestamp_ms: ending.timestamp_ms,
            lost: None,
        }
    }

    /// The eid and the terminal event, if what was read back is one.
    pub fn ending(&self) -> Result<(u64, Ending), String> {
        let outcome = match (self.outcome.as_str(), self.exit_code, &self.message) {
            ("completed", None, None) => Outcome::Completed,
            ("failed", Some(exit_code), Some(message)) => Outcome::Failed(Failure {
                exit_code,
                message: message.clone(),
            }),
            ("host-shutdown", None, None) => Outcome::HostShutdown,
            ("host-restarted", None, None) => Outcome::HostRestarted,
            (other, ..) => return Err(format!("no outcome {other:?} of that shape")),
        };
        let reason = crate::ending::reason_from_word(&self.reason)
            .ok_or_else(|| format!("no reason {:?}", self.reason))?;
        if self.eid == 0 {
            return Err("eid 0 names no event".into());
        }
        Ok((
            self.eid,
            Ending {
                outcome,
                reason,
                signal: self.signal,
                execution_ms: self.execution_ms,
                timestamp_ms: self.timestamp_ms,
            },
        ))
    }

    fn to_slot(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads the ending slot of the record at `record`: `Ok(None)` when the
    /// command had not ended (the slot is zeros, or there is none), `Err`
    /// when the slot holds something this host never wrote. Never blocks
    /// on a FIFO or follows a link put there, and reads at most the slot.
    pub fn read(record: &Path) -> Result<Option<Written>, String> {
        use std::io::Read;
        let file = match open_slot(std::fs::File::options().read(true), &ending_path(record)) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let mut bytes = Vec::new();
        file.take(SLOT_FILE_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| e.to_string())?;
        if bytes.len() > SLOT_FILE_BYTES {
            return Err(format!("larger than {SLOT_FILE_BYTES} bytes"));
        }
        bytes.truncate(ENDING_SLOT_BYTES);
        let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        if end == 0 {
            return Ok(None);
        }
        let logged: LoggedEnding =
            serde_json::from_slice(&bytes[..end]).map_err(|e| format!("not an ending: {e}"))?;
        let (eid, ending) = logged.ending()?;
        Ok(Some(Written {
            eid,
            ending,
            lost: logged.lost,
        }))
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
        // A FIFO in its place is refused at once, not waited on.
        std::fs::remove_file(&path).unwrap();
        let fifo = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        assert!(CommandRecord::read(&path, id).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_ending_reads_back_as_written_and_a_hostile_slot_is_refused() {
        use crate::policy::wit::Reason;
        let dir = std::env::temp_dir().join(format!("execd-ending-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let id = "0123456789abcdef0123456789abcdef";
        let record = CommandRecord::new(id, "true", false, 1, None, "`disk` (embedded)");
        let file = RecordFile::write(&dir, &record).unwrap();
        let path = dir.join(format!("{id}.json"));
        // Allocated with the record, and empty: the command runs.
        assert_eq!(
            std::fs::metadata(dir.join(format!("{id}.end")))
                .unwrap()
                .len(),
            520
        );
        assert_eq!(HighWater::read(&path), None);
        let mark = file.high_water().unwrap();
        mark.raise(4096).unwrap();
        assert_eq!(HighWater::read(&path), Some(4096));
        assert!(matches!(LoggedEnding::read(&path), Ok(None)));
        let endings = [
            (Outcome::Completed, Reason::Exit, None),
            (
                Outcome::Failed(Failure {
                    exit_code: -1,
                    message: "signal: killed".repeat(40),
                }),
                Reason::Timeout,
                Some(9),
            ),
            (Outcome::HostShutdown, Reason::HostShutdown, Some(15)),
            (Outcome::HostRestarted, Reason::HostRestarted, None),
        ];
        for (n, (outcome, reason, signal)) in endings.into_iter().enumerate() {
            let ending = Ending {
                outcome,
                reason,
                signal,
                execution_ms: 7,
                timestamp_ms: 8,
            };
            file.set_ending(100 + n as u64, &ending);
            let Written {
                eid, ending: read, ..
            } = LoggedEnding::read(&path).unwrap().unwrap();
            assert_eq!(eid, 100 + n as u64);
            let want = match ending.outcome {
                // Cut to fit the slot.
                Outcome::Failed(ref f) => Outcome::Failed(Failure {
                    exit_code: f.exit_code,
                    message: f.message[..MAX_MESSAGE].to_string(),
                }),
                ref other => other.clone(),
            };
            assert_eq!(format!("{:?}", read.outcome), format!("{want:?}"));
            assert_eq!(
                (read.signal, read.execution_ms, read.timestamp_ms),
                (signal, 7, 8)
            );
        }
        let slot = dir.join(format!("{id}.end"));
        std::fs::write(&slot, b"{\"eid\":0}").unwrap();
        assert!(LoggedEnding::read(&path).is_err());
        std::fs::write(&slot, vec![b' '; 4096]).unwrap();
        assert!(LoggedEnding::read(&path).is_err(), "larger than the slot");
        std::fs::remove_file(&slot).unwrap();
        assert!(
            matches!(LoggedEnding::read(&path), Ok(None)),
            "a record with no slot"
        );
        // A FIFO put there is refused at once, not waited on.
        let fifo = std::ffi::CString::new(slot.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        assert!(LoggedEnding::read(&path).is_err());
        drop(file);
        assert!(!slot.exists() && !path.exists(), "both go with the command");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
