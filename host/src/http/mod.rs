//! The HTTP API: routing, auth, and one handler per endpoint of the
//! contract. Handlers return `Result<Response, ApiError>`; errors become
//! the contract's JSON bodies in exactly one place, `respond`, which
//! [`handle`] runs on a task of its own.

pub mod body;
pub mod cors;
pub mod error;
pub mod idempotent;
pub mod metrics;
pub mod parse_errors;
pub mod probes;
pub mod query;
pub mod request;
pub mod server;
pub mod service;
pub mod sessions;
pub mod upstream;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::header::{CACHE_CONTROL, CONNECTION, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use subtle::ConstantTimeEq;

use crate::http::cors::Cors;
use crate::http::error::ApiError;
use crate::http::request::RunRequest;
use crate::http::upstream::Upstream;
use crate::keys::KeyUse;
use crate::registry::{Lookup, Registry};
use crate::session::Sessions;
use crate::stream::reader::{self, Cursor};
use crate::stream::sse::{self, Framing};
use crate::tasks::Tasks;
use crate::time::now_ms;
use body::ResponseBody;
use query::{cursor_header, cursor_param, query_param};

/// Everything a request handler needs.
pub struct App {
    pub registry: Arc<Registry>,
    pub access_token: Option<String>,
    pub framing: Framing,
    pub max_body_bytes: usize,
    /// Time a request's body may take to arrive.
    pub body_timeout: Duration,
    pub max_readers: usize,
    /// Turns true when the host shuts down: streams end.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Its sender.
    pub end: tokio::sync::watch::Sender<bool>,
    pub sessions: Sessions,
    pub metrics: metrics::Source,
    /// Where routes the host does not serve go (`--upstream`).
    pub upstream: Option<Upstream>,
    /// Which web pages' origins may use the API (`--cors-origin`).
    pub cors: Option<Cors>,
    /// Every task the host starts, counted for shutdown.
    pub tasks: Tasks,
}

impl App {
    /// Ends every stream (at shutdown, once the commands' terminal events
    /// are logged).
    pub fn end_streams(&self) {
        self.end.send_replace(true);
    }
}

pub use body::RequestBody;

const TOKEN_HEADER: &str = "x-execd-access-token";
const TAIL_CURSOR_HEADER: &str = "EXECD-COMMANDS-TAIL-CURSOR";

/// Serves one request on a task of its own, started as soon as hyper hands
/// the request over: hyper drops a connection, and the future it holds for
/// the request, when it sees the client's EOF, which can come before it
/// first polls that future. A request received in full is still served
/// (a fire-and-forget `POST /command` runs); its response goes nowhere.
pub fn handle(
    app: &Arc<App>,
    req: Request<RequestBody>,
) -> impl Future<Output = Result<Response<ResponseBody>, std::convert::Infallible>> + use<> {
    let handling = app.tasks.spawn(respond(Arc::clone(app), req));
    async move {
        Ok(handling.await.unwrap_or_else(|e| {
            tracing::error!("request handler failed: {e}");
            error_response(&ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "UNKNOWN",
                "the request handler failed",
            ))
        }))
    }
}

/// Serves one request; never fails at the HTTP level.
async fn respond(app: Arc<App>, req: Request<RequestBody>) -> Response<ResponseBody> {
    let started = std::time::Instant::now();
    let route = route_template(req.method(), req.uri().path(), app.upstream.is_some());
    let method = req.method().clone();
    let response = respond_inner(&app, req).await;
    let took = started.elapsed();
    let status = response.status().as_u16();
    app.registry.metrics().request(route, status, took);
    tracing::debug!(
        %method,
        route,
        status,
        took_us = took.as_micros() as u64,
        "request"
    );
    response
}

/// The route a request is counted under: the template, never an id, so
/// that the number of series stays fixed.
fn route_template(method: &Method, path: &str, upstream: bool) -> &'static str {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["ping"] => "/ping",
        ["command"] => "/command",
        ["command", "status", _] => "/command/status/{id}",
        ["command", _, "resume"] => "/command/{id}/resume",
        ["command", _, "logs"] => "/command/{id}/logs",
        ["session"] => "/session",
        ["session", _] => "/session/{id}",
        ["session", _, "run"] => "/session/{id}/run",
        ["metrics"] => "/metrics",
        ["metrics", "watch"] => "/metrics/watch",
        _ if method == Method::OPTIONS => "preflight",
        _ if upstream => "upstream",
        _ => "unknown",
    }
}

async fn respond_inner(app: &Arc<App>, req: Request<RequestBody>) -> Response<ResponseBody> {
    let head = req.method() == Method::HEAD;
    let cors = app
        .cors
        .as_ref()
        .and_then(|cors| Some((cors, cors.allowed(req.headers())?)));
    if let Some((cors, origin)) = &cors
        && cors::is_preflight(&req)
    {
        // Before the token check: a browser never sends it with one.
        return cors.preflight(origin.clone());
    }
    let mut response = match route(app, req).await {
        Ok(response) => response,
        Err(error) => error_response(&error),
    };
    if let Some((cors, origin)) = cors {
        cors.expose(origin, &mut response);
    }
    if head {
        // A HEAD answer announces a length it does not send, which the
        // writer that finds hyper's own parse-error answers cannot follow
        // (see `parse_errors`): nothing may come after it.
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

pub fn error_response(error: &ApiError) -> Response<ResponseBody> {
    let mut response = Response::new(body::full(error.body_json()));
    *response.status_mut() = error.status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

async fn route(
    app: &Arc<App>,
    req: Request<RequestBody>,
) -> Result<Response<ResponseBody>, ApiError> {
    authorize(app, &req)?;
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method().clone();
    match (segments.as_slice(), &method) {
        (["ping"], &Method::GET) => Ok(Response::new(body::empty())),
        (["command"], &Method::POST) => run(app, req).await,
        (["command"], &Method::GET) => list(app),
        (["command"], &Method::DELETE) => interrupt(app, &req),
        (["command", "status", id], &Method::GET) => status(app, id),
        (["command", id, "resume"], &Method::GET) => resume(app, id, &req).await,
        (["command", id, "logs"], &Method::GET) => logs(app, id, &req),
        (["session"], &Method::POST) => sessions::create(app, req).await,
        (["session"], &Method::GET) => json_response(&SessionList {
            sessions: app.sessions.list(),
        }),
        (["session", id], &Method::DELETE) => sessions::delete(app, id),
        (["session", id, "run"], &Method::POST) => sessions::run(app, id, req).await,
        (["metrics"], &Method::GET) => metrics::get(app).await,
        (["metrics", "watch"], &Method::GET) => metrics::watch(app, &req),
        (["ping"], _)
        | (["command"], _)
        | (["command", "status", _], _)
        | (["command", _, "resume" | "logs"], _)
        | (["session"], _)
        | (["session", _], _)
        | (["session", _, "run"], _)
        | (["metrics"], _)
        | (["metrics", "watch"], _) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            format!("{method} is not allowed on {path}"),
        )),
        _ => match &app.upstream {
            Some(upstream) => upstream.forward(req, &app.tasks).await,
            None => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                format!("no route {path}"),
            )),
        },
    }
}

/// Constant-time token check on every route, `/ping` included.
fn authorize(app: &App, req: &Request<RequestBody>) -> Result<(), ApiError> {
    let Some(expected) = &app.access_token else {
        return Ok(());
    };
    let given = req
        .headers()
        .get(TOKEN_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    // ct_eq on slices of different lengths is false without comparing
    // contents; the length of the token is not a secret worth hiding.
    if bool::from(given.ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            format!("missing or wrong {TOKEN_HEADER} header"),
        ))
    }
}

/// 403 `TOKEN_REQUIRED` for a body asking for a `uid` or `gid` when the
/// host has no token: then any local process, the switched command
/// included, can reach the API as the host's own user, so the switch would
/// protect nothing. Checked before anything else in the body.
pub(crate) fn require_token_for_uid(app: &App, bytes: &[u8]) -> Result<(), ApiError> {
    if app.access_token.is_some() {
        return Ok(());
    }
    let Ok(serde_json::Value::Object(body)) = serde_json::from_slice::<serde_json::Value>(bytes)
    else {
        // Not an object: the body's own check refuses it.
        return Ok(());
    };
    let switches = ["uid", "gid"]
        .iter()
        .any(|field| body.get(*field).is_some_and(|v| !v.is_null()));
    if switches {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "TOKEN_REQUIRED",
            "`uid`/`gid` need the host to run with an access token (--access-token or \
             EXECD_ACCESS_TOKEN): without one, the switched command could call this API \
             as the host's own user; set a token for uid switches to mean anything",
        ));
    }
    Ok(())
}

pub(crate) fn framing(app: &App, req: &Request<RequestBody>) -> Result<Framing, ApiError> {
    match query_param(req, "framing") {
        None => Ok(app.framing),
        Some(value) => Framing::parse(&value).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_QUERY",
                format!("`framing` must be `standard` or `legacy`, not {value:?}"),
            )
        }),
    }
}

pub(crate) fn event_stream(body: ResponseBody) -> Response<ResponseBody> {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

async fn run(
    app: &Arc<App>,
    req: Request<RequestBody>,
) -> Result<Response<ResponseBody>, ApiError> {
    let framing = framing(app, &req)?;
    let keyed = idempotent::head(&req)?;
    let bytes = read_body(req, app.max_body_bytes, app.body_timeout).await?;
    require_token_for_uid(app, &bytes)?;
    let request = RunRequest::parse(&bytes)?;
    let background = request.background;
    // A complete request runs even if its client leaves at once: this
    // handler runs on its own task (see [`handle`]). A foreground stream's
    // reader is admitted before the command starts: a refusal runs nothing.
    let first_reader = (!background).then_some(app.max_readers);
    let Some((key, after)) = keyed else {
        let (command, reader) = app.registry.start(request, first_reader).await?;
        return Ok(command_stream(app, framing, &command, reader, 0));
    };
    let used = KeyUse {
        key,
        request: idempotent::request("command", &bytes),
    };
    idempotent::start_once(app, after, framing, used, async |used| {
        Ok(app
            .registry
            .start_keyed(request, first_reader, Some(used))
            .await?)
    })
    .await
}

/// The response to a started command: `init`, then its events from a
/// reader (foreground), or the background acknowledgement.
pub(crate) fn command_stream(
    app: &App,
    framing: Framing,
    command: &crate::command::Command,
    reader: Option<u64>,
    after: u64,
) -> Response<ResponseBody> {
    let mut prelude = Vec::new();
    sse::init(&mut prelude, framing, &command.id, now_ms());
    let (tx, body) = body::channel();
    let Some(reader) = reader else {
        sse::spawned(&mut prelude, framing, now_ms());
        let _ = tx.try_send(Bytes::from(prelude));
        return event_stream(body);
    };
    let _ = tx.try_send(Bytes::from(prelude));
    let cursor = Cursor::new(
        Arc::clone(&command.log),
        reader,
        after,
        app.shutdown.clone(),
    );
    app.tasks.spawn(reader::follow(cursor, framing, tx));
    event_stream(body)
}

pub(crate) async fn read_body(
    req: Request<RequestBody>,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    let collect = Limited::new(req.into_body(), limit).collect();
    // A client that stalls mid-body would otherwise hold its connection
    // (and this task) for as long as it likes.
    let Ok(collected) = tokio::time::timeout(timeout, collect).await else {
        return Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "REQUEST_TIMEOUT",
            format!(
                "the request body did not arrive within {} ms (--request-timeout-ms)",
                timeout.as_millis()
            ),
        ));
    };
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                format!("request body is over the limit of {limit} bytes"),
            ))
        }
        Err(e) => Err(ApiError::bad_body(format!(
            "cannot read the request body: {e}"
        ))),
    }
}

async fn resume(
    app: &Arc<App>,
    id: &str,
    req: &Request<RequestBody>,
) -> Result<Response<ResponseBody>, ApiError> {
    app.registry.metrics().resumed();
    let framing = framing(app, req)?;
    // Both given: the larger wins (the contract's rule), so a browser's
    // `EventSource` on `?after_eid=N` resumes where it was on reconnect
    // instead of from N again. Either given twice with different values
    // is refused.
    let query = cursor_param(req, "after_eid")?.unwrap_or(0);
    let header = cursor_header(req, "Last-Event-ID")?.unwrap_or(0);
    let after = query.max(header);
    let command = match app.registry.lookup(id) {
        Lookup::Live(command) => command,
        Lookup::Expired(terminal) if after >= terminal && terminal > 0 => return Ok(no_content()),
        Lookup::Expired(_) | Lookup::Unknown => return Err(ApiError::not_found(id)),
    };
    let progress = command.log.progress();
    if progress.finished && after >= progress.newest {
        return Ok(no_content());
    }
    if after > progress.newest {
        // No client can have seen an eid not logged yet: its cursor is from
        // something else, and waiting on it could only end in silence.
        return Err(ApiError::bad_cursor(format!(
            "cursor {after} is past the newest event of this command, eid {}",
            progress.newest
        )));
    }
    let reader = command.log.attach(app.max_readers).await?;
    let (tx, body) = body::channel();
    let cursor = Cursor::new(
        Arc::clone(&command.log),
        reader,
        after,
        app.shutdown.clone(),
    );
    app.tasks.spawn(reader::follow(cursor, framing, tx));
    Ok(event_stream(body))
}

fn no_content() -> Response<ResponseBody> {
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

fn status(app: &App, id: &str) -> Result<Response<ResponseBody>, ApiError> {
    let command = app
        .registry
        .get(id)
        .ok_or_else(|| ApiError::not_found(id))?;
    json_response(&command.status_body())
}

/// `GET /command`: every command the host knows, oldest first.
fn list(app: &App) -> Result<Response<ResponseBody>, ApiError> {
    let commands = app.registry.all();
    let entries: Vec<ListEntry<'_>> = commands
        .iter()
        .map(|c| ListEntry {
            status: c.status_body(),
            background: c.background,
            newest_eid: c.log.progress().newest,
        })
        .collect();
    json_response(&CommandList { commands: entries })
}

#[derive(serde::Serialize)]
struct SessionList {
    sessions: Vec<crate::session::SessionInfo>,
}

#[derive(serde::Serialize)]
struct CommandList<'a> {
    commands: Vec<ListEntry<'a>>,
}

#[derive(serde::Serialize)]
struct ListEntry<'a> {
    #[serde(flatten)]
    status: crate::command::StatusBody<'a>,
    background: bool,
    newest_eid: u64,
}

pub(crate) fn json_response(
    value: &impl serde::Serialize,
) -> Result<Response<ResponseBody>, ApiError> {
    let json = serde_json::to_vec(value)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", e.to_string()))?;
    let mut response = Response::new(body::full(json));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

fn interrupt(app: &App, req: &Request<RequestBody>) -> Result<Response<ResponseBody>, ApiError> {
    let id = query_param(req, "id")
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ApiError::missing_query("id"))?;
    let command = app
        .registry
        .get(&id)
        .ok_or_else(|| ApiError::not_found(&id))?;
    app.registry.interrupt(&command);
    Ok(Response::new(body::empty()))
}

const HEAD_CURSOR_HEADER: &str = "EXECD-COMMANDS-HEAD-CURSOR";

fn logs(
    app: &App,
    id: &str,
    req: &Request<RequestBody>,
) -> Result<Response<ResponseBody>, ApiError> {
    let from = cursor_param(req, "cursor")?.unwrap_or(0);
    let command = app
        .registry
        .get(id)
        .ok_or_else(|| ApiError::not_found(id))?;
    // The chunks are opened now: what is dropped meanwhile stays readable.
    let plan = command.output_plan(from)?;
    let tail = plan.tail.max(from);
    let head = plan.head;
    let (tx, body) = body::channel();
    if !plan.pieces.is_empty() {
        app.tasks.spawn_blocking(move || plan.send(&tx));
    }
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(TAIL_CURSOR_HEADER, HeaderValue::from(tail));
    headers.insert(HEAD_CURSOR_HEADER, HeaderValue::from(head));
    Ok(response)
}
