//! `--upstream URL`: every route the host does not serve itself (execd's
//! files, code contexts, PTY, ...) is forwarded to an execd there, after
//! the host's own token check, so execd-host can sit on execd's port in
//! front of it.
//!
//! Request and response bodies stream through frame by frame (nothing is
//! buffered, and `--max-body-bytes` does not apply: uploads may be large);
//! a WebSocket (any `Connection: upgrade`) is passed through once the
//! upstream answers 101. Hop-by-hop headers are dropped both ways; `Host`
//! becomes the upstream's. The client's `X-EXECD-ACCESS-TOKEN` goes on
//! unchanged: execd checks its own token under the same header. One
//! connection to the upstream per forwarded request: no pool to go stale.
//! `http://` only: execd serves plain HTTP inside the sandbox.

use std::time::Duration;

use crate::http::RequestBody;
use http_body_util::BodyExt;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;

use crate::http::body::{self, BodyError, ResponseBody};
use crate::http::error::ApiError;
use crate::tasks::Tasks;

/// Longest wait for the upstream to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where forwarded requests go.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// `host:port`, for connecting and for `Host`.
    authority: String,
    /// A path prefix from the URL, without its trailing `/` (may be empty).
    base: String,
}

/// Headers that belong to one connection, never forwarded (RFC 9110 7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

impl Upstream {
    /// Parses `http://host[:port][/base]`.
    pub fn parse(url: &str) -> Result<Upstream, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("--upstream {url:?} is not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(format!(
                    "--upstream {url:?}: https is not supported; execd serves plain HTTP, use http://"
                ));
            }
            _ => return Err(format!("--upstream {url:?} must start with http://")),
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("--upstream {url:?} has no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!("--upstream {url:?}: user info is not supported"));
        }
        if uri.query().is_some() {
            return Err(format!("--upstream {url:?} must not have a query"));
        }
        let port = authority.port_u16().unwrap_or(80);
        Ok(Upstream {
            authority: format!("{}:{port}", authority.host()),
            base: uri.path().trim_end_matches('/').to_string(),
        })
    }

    /// Forwards `req` and answers with the upstream's response, streamed.
    /// The connection to the upstream, and a tunnel after an upgrade, run
    /// as the host's `tasks` and end when the host does: an upgraded
    /// connection has left hyper's server, so its drain would not end it.
    pub async fn forward(
        &self,
        mut req: Request<RequestBody>,
        tasks: &Tasks,
    ) -> Result<Response<ResponseBody>, ApiError> {
        refuse_unforwardable(req.method(), req.uri())?;
        let upgrade = wants_upgrade(req.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (parts, incoming) = req.into_parts();
        let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let uri: Uri = format!("{}{target}", self.base)
            .parse()
            .map_err(|e| ApiError::bad_body(format!("cannot forward {target:?}: {e}")))?;
        let mut out = Request::builder()
            .method(parts.method)
            .uri(uri)
            .body(incoming)
            .map_err(|e| unavailable(format!("cannot build the forwarded request: {e}")))?;
        *out.headers_mut() = end_to_end(&parts.headers);
        if let Ok(host) = HeaderValue::from_str(&self.authority) {
            out.headers_mut().insert(header::HOST, host);
        }
        if let (true, Some(protocol)) = (upgrade, parts.headers.get(header::UPGRADE)) {
            out.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            out.headers_mut().insert(header::UPGRADE, protocol.clone());
        }

        let stream = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect(&self.authority),
        )
        .await
        .map_err(|_| {
            unavailable(format!(
                "{} did not accept a connection within {CONNECT_TIMEOUT:?}",
                self.authority
            ))
        })?
        .map_err(|e| unavailable(format!("cannot connect to {}: {e}", self.authority)))?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unavailable(format!("{}: {e}", self.authority)))?;
        let host_ended = tasks.ended();
        tasks.spawn(async move {
            tokio::select! {
                ended = conn.with_upgrades() => if let Err(e) = ended {
                    tracing::debug!("upstream connection ended: {e}");
                },
                () = host_ended => {}
            }
        });
        let mut response = sender
            .send_request(out)
            .await
            .map_err(|e| unavailable(format!("{} did not answer: {e}", self.authority)))?;

        if response.status() == StatusCode::SWITCHING_PROTOCOLS
            && let Some(client_upgrade) = client_upgrade
        {
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            let host_ended = tasks.ended();
            tasks.spawn(async move {
                tokio::select! {
                    () = tunnel(client_upgrade, upstream_upgrade) => {}
                    () = host_ended => {}
                }
            });
            let (parts, _) = response.into_parts();
            let mut answer = Response::new(body::empty());
            *answer.status_mut() = parts.status;
            *answer.headers_mut() = parts.headers;
            return Ok(answer);
        }

        let (parts, incoming) = response.into_parts();
        let mut answer = Response::new(incoming.map_err(|e| -> BodyError { Box::new(e) }).boxed());
        *answer.status_mut() = parts.status;
        *answer.headers_mut() = end_to_end(&parts.headers);
        // A proxy says it was one (RFC 9110, Via); it also keeps an
        // upstream's bodiless 400 from looking like hyper's own answer to
        // a request it could not parse (see `parse_errors`).
        answer.headers_mut().append(
            header::VIA,
            header::HeaderValue::from_static("1.1 execd-host"),
        );
        Ok(answer)
    }
}

/// Copies both ways between the client and the upstream once both sides
/// have switched protocols, until either closes.
async fn tunnel(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    match tokio::try_join!(client, upstream) {
        Ok((client, upstream)) => {
            let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
            if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                tracing::debug!("forwarded upgrade ended: {e}");
            }
        }
        Err(e) => tracing::debug!("forwarded upgrade failed: {e}"),
    }
}

fn unavailable(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_GATEWAY, "UPSTREAM_UNAVAILABLE", message)
}

/// Whether the request asks to switch protocols (`Connection: upgrade`
/// and an `Upgrade` header).
fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The headers less the hop-by-hop ones, and less those `Connection`
/// names.
fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if HOP_BY_HOP.contains(&name.as_str()) || named.contains(name) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// What is never forwarded: `CONNECT` (a tunnel to anywhere, which hyper
/// would send on as `CONNECT /`), and a path that means another one once
/// the upstream normalises it: a dot segment (`/files/../command` reaches
/// a route the host's own checks never saw) or an encoded slash or
/// backslash (`%2F`, `%5C`), which servers decode into segments. Plain,
/// encoded or mixed (`%2e.`), the query aside (`?path=%2Fdir` is fine).
pub fn refuse_unforwardable(method: &hyper::Method, uri: &Uri) -> Result<(), ApiError> {
    if method == hyper::Method::CONNECT {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "CONNECT is not forwarded to the upstream",
        ));
    }
    let path = uri.path();
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") || path.contains('\\') {
        return Err(invalid_path(path, "an encoded slash or a backslash"));
    }
    let dot_segment = lower
        .split('/')
        .any(|segment| matches!(segment.replace("%2e", ".").as_str(), "." | ".."));
    if dot_segment {
        return Err(invalid_path(path, "a dot segment"));
    }
    Ok(())
}

fn invalid_path(path: &str, what: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "INVALID_PATH",
        format!("{path:?} has {what}; it is not forwarded to the upstream"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Upstream::parse("http://127.0.0.1:44771/").unwrap();
        assert_eq!(
            (u.authority.as_str(), u.base.as_str()),
            ("127.0.0.1:44771", "")
        );
        let u = Upstream::parse("http://execd/base/").unwrap();
        assert_eq!(
            (u.authority.as_str(), u.base.as_str()),
            ("execd:80", "/base")
        );
        for bad in [
            "https://x",
            "ftp://x",
            "x:1",
            "http://u@x",
            "http://x/?q=1",
            "not a url",
        ] {
            assert!(Upstream::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hop_by_hop_headers_stay() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-execd-access-token", HeaderValue::from_static("t"));
        h.insert("content-length", HeaderValue::from_static("3"));
        let out = end_to_end(&h);
        let names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, vec!["x-execd-access-token", "content-length"]);
    }
}
