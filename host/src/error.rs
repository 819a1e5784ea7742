//! The errors of the library's API. The HTTP layer maps each to the
//! contract's `{code, message}` body in one place (`http::error`).

use std::path::PathBuf;

pub use crate::policy::{LoadError, PolicyError};

/// Why [`HostBuilder::build`](crate::HostBuilder::build) failed. Each says
/// what to change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A setting is out of its range, or two settings conflict.
    #[error("{0}")]
    Setting(String),
    /// The access token is unusable, or its file unreadable.
    #[error("{0}")]
    Token(String),
    /// The policy could not be loaded, compiled or configured.
    #[error(transparent)]
    Policy(#[from] LoadError),
    /// The state directory could not be made, locked or trusted.
    #[error("{0}")]
    StateDir(String),
    /// What a previous host left in the state directory could not be read.
    #[error("cannot read --state-dir {}: {source}", path.display())]
    Recovery {
        /// The state directory.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

/// Why a command did not start ([`Host::run`](crate::Host::run), and
/// `POST /command`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The request is not one the host can run (HTTP 400).
    #[error("{0}")]
    Invalid(String),
    /// The host is shutting down (503).
    #[error("the host is shutting down")]
    ShuttingDown,
    /// As many commands run as the host allows (503).
    #[error("{0} commands are running, the most this host allows (--max-commands)")]
    TooManyCommands(usize),
    /// The policy could not make this command's log (503).
    #[error("{0}")]
    Policy(PolicyError),
    /// The first reader was refused (409 or 503): nothing ran.
    #[error(transparent)]
    Reader(#[from] AttachError),
    /// The host could not create one of the command's files (500).
    #[error("cannot create the {what}: {source}")]
    Storage {
        /// Which file.
        what: &'static str,
        /// What failed.
        source: std::io::Error,
    },
    /// The process could not be started: the request's fault, e.g. a bad
    /// path or a uid the host may not take (400).
    #[error("cannot start the command: {0}")]
    Spawn(std::io::Error),
    /// The host is out of processes, files or memory for now (503).
    #[error("the host cannot start a process now: {0}")]
    Exhausted(std::io::Error),
    /// The process started without a process id (500).
    #[error("the command was started but has no process id")]
    NoProcessId,
}

/// Why a reader may not follow a command's log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttachError {
    /// The policy refused (e.g. `exclusive` with a reader attached): 409.
    #[error("{0}")]
    Conflict(String),
    /// The policy failed earlier; the log is gone: 503.
    #[error("this command's log is gone: {0}")]
    Failed(PolicyError),
    /// As many readers as the host allows follow this command already: 503.
    #[error("{0} readers follow this command already, the most this host allows (--max-readers)")]
    TooMany(usize),
}

/// Why [`Execution::logs`](crate::Execution::logs) has no bytes to give
/// (and `GET /command/{id}/logs` answers 400 or 500).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogsError {
    /// Only a background command keeps its raw output
    /// ([`Run::background`](crate::Run::background)); read its events
    /// instead.
    #[error("logs are kept for background commands only; resume the stream instead")]
    NotKept,
    /// The kept output could not be read.
    #[error("cannot read the output: {0}")]
    Io(std::io::Error),
}

/// Why a session could not be made, used or deleted
/// ([`Host::session`](crate::Host::session), and the `/session` routes).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// No session has this id: never created, or deleted (404).
    #[error("no session `{0}` (never created, or deleted)")]
    NotFound(String),
    /// The session is running a command already: one at a time (409).
    #[error("session `{0}` is running a command; one run at a time")]
    Busy(String),
    /// Sessions need bash, and this host has none (501).
    #[error("sessions need bash, and this host has none")]
    NoBash,
    /// The host is shutting down (503).
    #[error("the host is shutting down")]
    ShuttingDown,
    /// As many sessions exist as the host allows (503).
    #[error("{0} sessions exist, the most this host allows; delete one")]
    TooMany(usize),
    /// The session or the run asked for is not one the host can make
    /// (400).
    #[error("{0}")]
    Invalid(String),
    /// The session's directory could not be made (500).
    #[error("cannot create the session's directory: {0}")]
    Directory(std::io::Error),
    /// The session's directory could not be given to its user (500).
    #[error("cannot give the session's directory to uid {uid}: {source}")]
    Chown {
        /// The session's user.
        uid: u32,
        /// What failed.
        source: std::io::Error,
    },
    /// The run's command did not start.
    #[error(transparent)]
    Run(#[from] RunError),
}
