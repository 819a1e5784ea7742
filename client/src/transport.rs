//! One HTTP/1.1 exchange over a fresh TCP connection.
//!
//! A new connection per request keeps reconnection simple and honest: a
//! resumed stream never inherits a broken connection from a pool, and a
//! stream's connection lives exactly as long as its body.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::task::AbortHandle;

use crate::endpoint::Endpoint;
use crate::error::{Error, Result};

/// The header the host reads the access token from.
pub(crate) const TOKEN_HEADER: &str = "x-execd-access-token";
/// Most bytes of an error body read (they are small JSON objects).
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// How to reach the host: where, with which token, how patiently.
#[derive(Clone, Debug)]
pub(crate) struct Transport {
    pub(crate) endpoint: Endpoint,
    pub(crate) token: Option<String>,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
}

/// A response whose head has arrived; its body is read as it comes. The
/// connection task is aborted when this is dropped, so a stream given up
/// mid-way never leaves a socket behind.
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: hyper::HeaderMap,
    pub(crate) body: Incoming,
    _connection: AbortOnDrop,
}

struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The contract's error body.
#[derive(Deserialize)]
struct ErrorBody {
    code: String,
    message: String,
}

impl Transport {
    /// Sends one request and waits for the response head (within the
    /// request timeout). `Err(Unreachable)` means no connection was made,
    /// so the host never saw the request.
    pub(crate) async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &[(&'static str, String)],
        json: Option<Vec<u8>>,
    ) -> Result<Reply> {
        let target = format!("{}{}", self.endpoint.prefix, path_and_query);
        let tcp = tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect((self.endpoint.host.as_str(), self.endpoint.port)),
        )
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no connection within {:?}", self.connect_timeout),
            ))
        })
        .map_err(|source| Error::Unreachable {
            url: self.endpoint.url.clone(),
            source,
        })?;
        // Output lines are small and latency matters more than packets.
        let _ = tcp.set_nodelay(true);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| Error::Transport(e.to_string()))?;
        let connection = AbortOnDrop(tokio::spawn(connection).abort_handle());

        let mut request = Request::builder().method(method).uri(&target);
        let host = HeaderValue::from_str(&self.endpoint.authority)
            .map_err(|_| Error::Protocol("the host name is not a valid header".into()))?;
        request = request.header(HOST, host);
        if let Some(token) = &self.token {
            request = request.header(TOKEN_HEADER, token.as_str());
        }
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        let body = match json {
            Some(json) => {
                request = request.header(CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(json))
            }
            None => Full::new(Bytes::new()),
        };
        let request = request
            .body(body)
            .map_err(|e| Error::Protocol(format!("cannot build the request for {target}: {e}")))?;
        let response = tokio::time::timeout(self.request_timeout, sender.send_request(request))
            .await
            .map_err(|_| {
                Error::Transport(format!(
                    "no response within {:?} to {target}",
                    self.request_timeout
                ))
            })?
            .map_err(|e| Error::Transport(e.to_string()))?;
        let (head, body) = response.into_parts();
        Ok(Reply {
            status: head.status,
            headers: head.headers,
            body,
            _connection: connection,
        })
    }

    /// Sends a request and reads the whole successful body; an error
    /// answer becomes its typed [`Error`] (`what`/`id` name the subject
    /// of a 404).
    pub(crate) async fn call(
        &self,
        method: Method,
        path_and_query: &str,
        json: Option<Vec<u8>>,
        subject: Subject<'_>,
    ) -> Result<(hyper::HeaderMap, Bytes)> {
        let reply = self.send(method, path_and_query, &[], json).await?;
        if !reply.status.is_success() {
            return Err(self.error(reply, subject).await);
        }
        let headers = reply.headers;
        let body = tokio::time::timeout(self.request_timeout, reply.body.collect())
            .await
            .map_err(|_| Error::Transport("the response body stalled".into()))?
            .map_err(|e| Error::Transport(e.to_string()))?
            .to_bytes();
        Ok((headers, body))
    }

    /// [`Transport::call`] for an answer that may be used in part: a
    /// body that breaks off after some bytes gives those bytes and `true`
    /// (an error only when none arrived).
    pub(crate) async fn call_cut(
        &self,
        method: Method,
        path_and_query: &str,
        subject: Subject<'_>,
    ) -> Result<(hyper::HeaderMap, Vec<u8>, bool)> {
        let mut reply = self.send(method, path_and_query, &[], None).await?;
        if !reply.status.is_success() {
            return Err(self.error(reply, subject).await);
        }
        let mut bytes = Vec::new();
        let broke = loop {
            match tokio::time::timeout(self.request_timeout, reply.body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        bytes.extend_from_slice(&data);
                    }
                }
                Ok(None) => break None,
                Ok(Some(Err(e))) => break Some(e.to_string()),
                Err(_) => break Some("the response body stalled".to_string()),
            }
        };
        match broke {
            Some(why) if bytes.is_empty() => Err(Error::Transport(why)),
            broke => Ok((reply.headers, bytes, broke.is_some())),
        }
    }

    /// Reads an error answer's body and types it.
    pub(crate) async fn error(&self, reply: Reply, subject: Subject<'_>) -> Error {
        let status = reply.status;
        let limited = http_body_util::Limited::new(reply.body, ERROR_BODY_LIMIT);
        let bytes = match tokio::time::timeout(self.request_timeout, limited.collect()).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            _ => Bytes::new(),
        };
        let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => (body.code, body.message),
            Err(_) => (
                String::new(),
                String::from_utf8_lossy(&bytes).trim().to_string(),
            ),
        };
        classify(status, code, message, subject)
    }
}

/// What a request was about, to name it in a 404.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Subject<'a> {
    /// A command by id.
    Command(&'a str),
    /// A session by id.
    Session(&'a str),
    /// Nothing with an id.
    None,
}

/// Maps a status and the contract's `{code, message}` to a typed error.
pub(crate) fn classify(
    status: StatusCode,
    code: String,
    message: String,
    subject: Subject<'_>,
) -> Error {
    let message = if message.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("no message")
            .to_string()
    } else {
        message
    };
    match (status, code.as_str(), subject) {
        (StatusCode::UNAUTHORIZED, _, _) => Error::Unauthorized { message },
        (StatusCode::SERVICE_UNAVAILABLE, "POLICY_FAILED", _) => Error::PolicyFailed { message },
        (StatusCode::NOT_FOUND, _, Subject::Command(id)) if code != "NOT_FOUND" => {
            Error::NotFound {
                what: "command",
                id: id.to_string(),
                message,
            }
        }
        (StatusCode::NOT_FOUND, _, Subject::Session(id)) if code != "NOT_FOUND" => {
            Error::NotFound {
                what: "session",
                id: id.to_string(),
                message,
            }
        }
        _ => Error::Api {
            status: status.as_u16(),
            code,
            message,
        },
    }
}

/// Percent-encodes a path segment or query value (ids are plain, but a
/// person may type anything).
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
