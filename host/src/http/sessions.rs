//! The `/session` routes: HTTP in and out of [`Sessions`](crate::session::Sessions),
//! their JSON bodies parsed into the domain's [`NewSession`] and
//! [`SessionRun`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use hyper::Request;
use serde::Deserialize;

use super::body::{self, ResponseBody};
use super::error::ApiError;
use super::request;
use super::{App, RequestBody};
use crate::session::{NewSession, SessionRun};

type Answer = Result<hyper::Response<ResponseBody>, ApiError>;

#[derive(Deserialize)]
struct CreateBody {
    cwd: Option<String>,
    uid: Option<u32>,
    gid: Option<u32>,
}

#[derive(Deserialize)]
struct RunBody {
    command: Option<String>,
    cwd: Option<String>,
    timeout: Option<i64>,
    uid: Option<u32>,
    gid: Option<u32>,
}

/// A JSON object (or nothing at all, for an optional body).
fn object<T: for<'de> Deserialize<'de>>(bytes: &[u8], optional: bool) -> Result<T, ApiError> {
    let bytes = if optional && bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        bytes
    };
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_body(format!("the body must be a JSON object: {e}")))?;
    T::deserialize(serde_json::Value::Object(object))
        .map_err(|e| ApiError::bad_body(format!("invalid request: {e}")))
}

/// A `cwd` field: `~` and `$NAME` expanded from the environment a command
/// would get now; empty is none.
fn cwd(raw: Option<&str>) -> Result<Option<PathBuf>, ApiError> {
    match raw {
        None | Some("") => Ok(None),
        Some(raw) => Ok(Some(request::resolve_cwd(
            raw,
            &request::command_env(HashMap::new()),
        )?)),
    }
}

/// A `POST /session` body.
fn new_session(bytes: &[u8]) -> Result<NewSession, ApiError> {
    let body: CreateBody = object(bytes, true)?;
    if body.gid.is_some() && body.uid.is_none() {
        return Err(ApiError::bad_body("`gid` needs `uid`"));
    }
    Ok(NewSession {
        cwd: cwd(body.cwd.as_deref())?,
        uid: body.uid,
        gid: body.gid,
    })
}

/// A `POST /session/{id}/run` body.
fn session_run(bytes: &[u8]) -> Result<SessionRun, ApiError> {
    let body: RunBody = object(bytes, false)?;
    let Some(command) = body.command else {
        return Err(ApiError::bad_body("`command` is required"));
    };
    Ok(SessionRun {
        command,
        timeout: request::timeout(body.timeout)?,
        cwd: cwd(body.cwd.as_deref())?,
        uid: body.uid,
        gid: body.gid,
    })
}

#[derive(serde::Serialize)]
struct Created {
    session_id: String,
}

/// `POST /session` `{cwd?}` -> `{"session_id"}`.
pub async fn create(app: &Arc<App>, req: Request<RequestBody>) -> Answer {
    let bytes = super::read_body(req, app.max_body_bytes, app.body_timeout).await?;
    super::require_token_for_uid(app, &bytes)?;
    let session_id = app.sessions.create(new_session(&bytes)?)?;
    super::json_response(&Created { session_id })
}

/// `DELETE /session/{id}`.
pub fn delete(app: &App, id: &str) -> Answer {
    app.sessions.delete(id, &app.registry)?;
    Ok(hyper::Response::new(body::empty()))
}

/// `POST /session/{id}/run` `{command, cwd?, timeout?}`: the same stream as
/// a foreground `POST /command`.
pub async fn run(app: &Arc<App>, id: &str, req: Request<RequestBody>) -> Answer {
    let framing = super::framing(app, &req)?;
    // Unknown sessions are told before the body is waited for.
    app.sessions.check(id)?;
    let keyed = super::idempotent::head(&req)?;
    let bytes = super::read_body(req, app.max_body_bytes, app.body_timeout).await?;
    super::require_token_for_uid(app, &bytes)?;
    let Some((key, after)) = keyed else {
        let (request, claim) = app.sessions.prepare(id, session_run(&bytes)?)?;
        let (command, reader) = app.registry.start(request, Some(app.max_readers)).await?;
        claim.started(&command, &app.registry);
        return Ok(super::command_stream(app, framing, &command, reader, 0));
    };
    // A retry is answered before the session is asked: the first use's
    // command may still be running in it, which would make it busy.
    let used = crate::keys::KeyUse {
        key,
        request: super::idempotent::request(&format!("session/{id}"), &bytes),
    };
    super::idempotent::start_once(app, after, framing, used, async |used| {
        let (request, claim) = app.sessions.prepare(id, session_run(&bytes)?)?;
        let (command, reader) = app
            .registry
            .start_keyed(request, Some(app.max_readers), Some(used))
            .await?;
        claim.started(&command, &app.registry);
        Ok((command, reader))
    })
    .await
}
