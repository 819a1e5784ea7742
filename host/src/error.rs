//! The one place that maps failures to the contract's error bodies:
//! `{"code": "...", "message": "..."}` with a 4xx or 5xx status.

use hyper::StatusCode;
use serde::Serialize;

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
