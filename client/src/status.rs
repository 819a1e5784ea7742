//! What the host says about commands: status, the command list, logs;
//! and the session list.

use serde::{Deserialize, Serialize};

/// `GET /command/status/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The command's id.
    pub id: String,
    /// The command as it was given.
    #[serde(default)]
    pub content: String,
    /// Whether it still runs.
    pub running: bool,
    /// Its exit code once finished; `-1` when a signal ended it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The host's error text, e.g. `exit status 2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why it ended (`exit`, `signal`, `timeout`, ...), from hosts that say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The signal that ended it, from hosts that say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// When it started (RFC 3339).
    #[serde(default)]
    pub started_at: String,
    /// When it finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

/// One entry of `GET /command`: a status, and what a list needs besides.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandInfo {
    /// The command's status fields.
    #[serde(flatten)]
    pub status: Status,
    /// Whether it was started in the background.
    #[serde(default)]
    pub background: bool,
    /// The newest eid in its log (what an attach would catch up to).
    #[serde(default)]
    pub newest_eid: u64,
}

#[derive(Deserialize)]
pub(crate) struct CommandList {
    pub(crate) commands: Vec<CommandInfo>,
}

/// One entry of `GET /session`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The session's id.
    pub session_id: String,
    /// When it was created (RFC 3339).
    #[serde(default)]
    pub created_at: String,
    /// The directory its first run starts in, if one was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// The user its runs run as, if not the host's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// The group its runs run as, if not the host's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// The command id of the run going on in it, if one is.
    #[serde(default)]
    pub running: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct SessionList {
    pub(crate) sessions: Vec<SessionInfo>,
}

/// A piece of a background command's raw output, `GET /command/{id}/logs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logs {
    /// The bytes from the asked cursor (or from `head`, if older bytes
    /// were dropped) to the current end.
    pub bytes: Vec<u8>,
    /// Offset of the first byte of `bytes`.
    pub from: u64,
    /// Offset just past the end: the cursor of the next call.
    pub tail: u64,
    /// Offset of the oldest byte the host still keeps, when it says.
    pub head: Option<u64>,
    /// The answer broke off before its end (the connection was cut):
    /// `bytes` is what arrived, and a call from `tail` gets the rest.
    pub cut: bool,
}
