//! The `/session` routes: HTTP in and out of [`Sessions`](crate::session::Sessions).

use std::sync::Arc;

use hyper::Request;

use super::body::{self, ResponseBody};
use super::error::ApiError;
use super::{App, RequestBody};

type Answer = Result<hyper::Response<ResponseBody>, ApiError>;

#[derive(serde::Serialize)]
struct Created {
    session_id: String,
}

/// `POST /session` `{cwd?}` -> `{"session_id"}`.
pub async fn create(app: &Arc<App>, req: Request<RequestBody>) -> Answer {
    let bytes = super::read_body(req, app.max_body_bytes, app.body_timeout).await?;
    super::require_token_for_uid(app, &bytes)?;
    let session_id = app.sessions.create(&bytes)?;
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
        let (request, claim) = app.sessions.prepare(id, &bytes)?;
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
        let (request, claim) = app.sessions.prepare(id, &bytes)?;
        let (command, reader) = app
            .registry
            .start_keyed(request, Some(app.max_readers), Some(used))
            .await?;
        claim.started(&command, &app.registry);
        Ok((command, reader))
    })
    .await
}
