//! The one place that maps failures to the contract's error bodies:
//! `{"code": "...", "message": "..."}` with a 4xx or 5xx status.

use hyper::StatusCode;
use serde::Serialize;

use crate::error::{AttachError, LogsError, RunError, SessionError};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_body(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST_BODY", message)
    }

    pub fn bad_cursor(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_CURSOR", message)
    }

    pub fn missing_query(name: &str) -> ApiError {
        Self::new(
            StatusCode::BAD_REQUEST,
            "MISSING_QUERY",
            format!("query parameter `{name}` is required"),
        )
    }

    pub fn not_found(id: &str) -> ApiError {
        Self::new(
            StatusCode::NOT_FOUND,
            "COMMAND_NOT_FOUND",
            format!("no command `{id}` (never started, or its retention expired)"),
        )
    }

    pub fn body_json(&self) -> Vec<u8> {
        serde_json::to_vec(&ErrorBody {
            code: self.code,
            message: &self.message,
        })
        .unwrap_or_else(|_| b"{\"code\":\"UNKNOWN\",\"message\":\"\"}".to_vec())
    }
}

impl From<AttachError> for ApiError {
    fn from(e: AttachError) -> ApiError {
        let (status, code) = match &e {
            AttachError::Conflict(_) => (StatusCode::CONFLICT, "STREAM_CONFLICT"),
            AttachError::TooMany(_) => (StatusCode::SERVICE_UNAVAILABLE, "TOO_MANY_READERS"),
            AttachError::Failed(_) => (StatusCode::SERVICE_UNAVAILABLE, "POLICY_FAILED"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<RunError> for ApiError {
    fn from(e: RunError) -> ApiError {
        let e = match e {
            RunError::Reader(e) => return e.into(),
            e => e,
        };
        let (status, code) = match &e {
            RunError::Reader(_) => (StatusCode::SERVICE_UNAVAILABLE, "TOO_MANY_READERS"),
            RunError::Invalid(_) | RunError::Spawn(_) => {
                (StatusCode::BAD_REQUEST, "INVALID_REQUEST_BODY")
            }
            RunError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "SHUTTING_DOWN"),
            RunError::TooManyCommands(_) => (StatusCode::SERVICE_UNAVAILABLE, "TOO_MANY_COMMANDS"),
            RunError::Policy(_) => (StatusCode::SERVICE_UNAVAILABLE, "POLICY_FAILED"),
            RunError::Exhausted(_) => (StatusCode::SERVICE_UNAVAILABLE, "RESOURCE_EXHAUSTED"),
            RunError::Storage { .. } | RunError::NoProcessId => {
                (StatusCode::INTERNAL_SERVER_ERROR, "RUNTIME_ERROR")
            }
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<LogsError> for ApiError {
    fn from(e: LogsError) -> ApiError {
        let (status, code) = match &e {
            LogsError::NotKept => (StatusCode::BAD_REQUEST, "NOT_SUPPORTED"),
            LogsError::Io(_) => (StatusCode::INTERNAL_SERVER_ERROR, "RUNTIME_ERROR"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> ApiError {
        let e = match e {
            SessionError::Run(e) => return e.into(),
            e => e,
        };
        let (status, code) = match &e {
            SessionError::NotFound(_) => (StatusCode::NOT_FOUND, "SESSION_NOT_FOUND"),
            SessionError::Busy(_) => (StatusCode::CONFLICT, "SESSION_BUSY"),
            SessionError::NoBash => (StatusCode::NOT_IMPLEMENTED, "NOT_SUPPORTED"),
            SessionError::TooMany(_) => (StatusCode::SERVICE_UNAVAILABLE, "TOO_MANY_SESSIONS"),
            SessionError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "SHUTTING_DOWN"),
            SessionError::Invalid(_) => (StatusCode::BAD_REQUEST, "INVALID_REQUEST_BODY"),
            SessionError::Directory(_) | SessionError::Chown { .. } | SessionError::Run(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "RUNTIME_ERROR")
            }
        };
        ApiError::new(status, code, e.to_string())
    }
}
