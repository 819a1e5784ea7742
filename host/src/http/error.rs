//! The one place that maps failures to the contract's error bodies:
//! `{"code": "...", "message": "..."}` with a 4xx or 5xx status.

use hyper::StatusCode;
use serde::Serialize;

use crate::log::AttachError;

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
        match e {
            AttachError::Conflict(why) => {
                ApiError::new(StatusCode::CONFLICT, "STREAM_CONFLICT", why)
            }
            AttachError::TooMany(max) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "TOO_MANY_READERS",
                format!(
                    "{max} readers follow this command already, the most this host allows (--max-readers)"
                ),
            ),
            AttachError::Failed(error) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "POLICY_FAILED",
                format!("this command's log is gone: {error}"),
            ),
        }
    }
}
