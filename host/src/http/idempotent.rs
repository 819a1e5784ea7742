//! `Idempotency-Key` on the routes that start a command: the first use
//! starts it, a retry with the same key and request answers as the first
//! one would have, from `init` on, and runs nothing.

use std::sync::Arc;

use hyper::{Request, StatusCode};

use super::body::ResponseBody;
use super::error::ApiError;
use super::{App, RequestBody, command_stream};
use crate::command::Command;
use crate::keys::{self, Claimed, KeyUse};
use crate::registry::Lookup;
use crate::stream::sse::Framing;

const HEADER: &str = "idempotency-key";

type Answer = Result<hyper::Response<ResponseBody>, ApiError>;
type Started = Result<(Arc<Command>, Option<u64>), ApiError>;

/// The request's key, if it has one; a malformed one is a 400.
pub fn key(req: &Request<RequestBody>) -> Result<Option<String>, ApiError> {
    let mut values = req.headers().get_all(HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(invalid("Idempotency-Key is given more than once"));
    }
    if !keys::valid(value.as_bytes()) {
        return Err(invalid(
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        ));
    }
    // Visible ASCII is text.
    Ok(value.to_str().ok().map(str::to_string))
}

fn invalid(message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "INVALID_IDEMPOTENCY_KEY", message)
}

/// What a use of a key asks for: the route and the body as parsed JSON.
/// A body that is not JSON is refused by the route's own parser first.
pub fn request(route: &str, body: &[u8]) -> serde_json::Value {
    let body = serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
    serde_json::json!({ "route": route, "body": body })
}

/// The key of a request to start a command and the `Last-Event-ID` a
/// retry resumes after, read before the body is taken.
pub fn head(req: &Request<RequestBody>) -> Result<Option<(String, u64)>, ApiError> {
    let Some(key) = key(req)? else {
        return Ok(None);
    };
    let after = super::query::cursor_header(req, "Last-Event-ID")?.unwrap_or(0);
    Ok(Some((key, after)))
}

/// Starts the command with `start` unless `key` started one already, in
/// which case that one's stream is the answer. `start` runs with the key's
/// slot held: a concurrent use of the key waits for it.
pub async fn start_once(
    app: &Arc<App>,
    after: u64,
    framing: Framing,
    used: KeyUse,
    start: impl AsyncFnOnce(&KeyUse) -> Started,
) -> Answer {
    let slot = app.registry.keys.slot(&used.key);
    let mut claimed = slot.lock().await;
    if let Some(first) = &*claimed {
        let first = first.clone();
        drop(claimed);
        return replay(app, after, framing, &first, &used).await;
    }
    match start(&used).await {
        Ok((command, reader)) => {
            let first = Claimed {
                id: command.id.clone(),
                request: used.request.clone(),
            };
            app.registry.keys.claim(&used.key, &mut claimed, first);
            drop(claimed);
            Ok(command_stream(app, framing, &command, reader, 0))
        }
        Err(e) => {
            drop(claimed);
            app.registry.keys.release(&used.key, &slot);
            Err(e)
        }
    }
}

/// A retry: the first use's command, as its POST would have answered,
/// after the events `Last-Event-ID` names.
async fn replay(
    app: &Arc<App>,
    after: u64,
    framing: Framing,
    first: &Claimed,
    used: &KeyUse,
) -> Answer {
    if first.request != used.request {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "IDEMPOTENCY_KEY_REUSED",
            format!(
                "Idempotency-Key {:?} started command {} with another request",
                used.key, first.id
            ),
        ));
    }
    let command = match app.registry.lookup(&first.id) {
        Lookup::Live(command) => command,
        Lookup::Expired(_) | Lookup::Unknown => {
            return Err(ApiError::new(
                StatusCode::GONE,
                "COMMAND_EXPIRED",
                format!(
                    "Idempotency-Key {:?} started command {}, which has expired; it is not run again",
                    used.key, first.id
                ),
            ));
        }
    };
    if command.background {
        return Ok(command_stream(app, framing, &command, None, 0));
    }
    let newest = command.log.progress().newest;
    if after > newest {
        return Err(ApiError::bad_cursor(format!(
            "cursor {after} is past the newest event of this command, eid {newest}"
        )));
    }
    let reader = command.log.attach(app.max_readers).await?;
    Ok(command_stream(app, framing, &command, Some(reader), after))
}
