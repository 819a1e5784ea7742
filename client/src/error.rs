//! The one error type of the library: small typed values a caller can
//! match on to tell "the host is not running" from "wrong token" from
//! "that output has expired", with messages a person understands.

use std::time::Duration;

/// Everything a call to the host can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The base URL could not be parsed.
    #[error("invalid host URL {url:?}: {why}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The URL asks for TLS, which this client does not speak.
    #[error(
        "{url:?} uses https, which this client does not speak: execd-host serves plain http:// (reach a remote host through an SSH tunnel or a TLS-terminating proxy)"
    )]
    HttpsUnsupported {
        /// The URL as given.
        url: String,
    },
    /// No TCP connection could be made: the host is not running, or the
    /// URL names the wrong address.
    #[error("cannot reach the host at {url}: {source}")]
    Unreachable {
        /// The host's base URL.
        url: String,
        /// Why the connection failed.
        #[source]
        source: std::io::Error,
    },
    /// The connection broke or the response could not be read.
    #[error("connection to the host failed: {0}")]
    Transport(String),
    /// The host answered with something this client cannot understand.
    #[error("the host sent something unexpected: {0}")]
    Protocol(String),
    /// 401: the access token is missing or wrong.
    #[error("the host refused the access token: {message}")]
    Unauthorized {
        /// The host's message.
        message: String,
    },
    /// 404: no command or session by that id (it never existed, or its
    /// retention ended before this request).
    #[error("the host knows no {what} {id:?}: {message}")]
    NotFound {
        /// `"command"` or `"session"`.
        what: &'static str,
        /// The id asked for.
        id: String,
        /// The host's message.
        message: String,
    },
    /// 404 when resuming a stream after a cut: the command's retention
    /// ended while the client was away, so the rest of its output (and its
    /// exit status) can no longer be read.
    #[error(
        "command {id:?} expired on the host while reconnecting: output after eid {after_eid} can no longer be read"
    )]
    Expired {
        /// The command's id.
        id: String,
        /// The last eid delivered before the cut.
        after_eid: u64,
    },
    /// 503 `POLICY_FAILED`: the host's log policy for this command failed,
    /// so its log can no longer be read.
    #[error("the host's log policy failed for this command: {message}")]
    PolicyFailed {
        /// The host's message.
        message: String,
    },
    /// Any other error answer from the host, with the contract's code.
    #[error("the host answered {status} {code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The contract's error code, e.g. `INVALID_REQUEST_BODY`.
        code: String,
        /// The host's message.
        message: String,
    },
    /// The connection dropped before the host named the command it
    /// started, so there is no id to resume by. The command may be running.
    #[error("the connection dropped before the host named the command; it may be running: {0}")]
    LostBeforeStart(String),
    /// Reconnecting did not succeed within the configured bound.
    #[error("gave up reconnecting after {attempts} attempts over {elapsed:?}: {last}")]
    GaveUp {
        /// How many attempts were made in this streak.
        attempts: u32,
        /// How long the streak lasted.
        elapsed: Duration,
        /// The last attempt's error.
        last: Box<Error>,
    },
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether trying again later may succeed: the host unreachable or
    /// busy, another reader holding the command, the connection breaking.
    /// What the client's streams ride out by themselves.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unreachable { .. } | Error::Transport(_) => true,
            Error::Api { status, .. } => matches!(status, 409 | 429 | 502 | 503 | 504),
            _ => false,
        }
    }

    /// The contract's error code when the host sent one
    /// (`"UNAUTHORIZED"`, `"COMMAND_NOT_FOUND"`, ...).
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api { code, .. } => Some(code),
            Error::Unauthorized { .. } => Some("UNAUTHORIZED"),
            Error::PolicyFailed { .. } => Some("POLICY_FAILED"),
            Error::GaveUp { last, .. } => last.code(),
            _ => None,
        }
    }

    /// The error behind a [`Error::GaveUp`], or this one.
    pub fn root(&self) -> &Error {
        match self {
            Error::GaveUp { last, .. } => last.root(),
            other => other,
        }
    }
}
