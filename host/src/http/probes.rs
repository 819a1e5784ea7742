//! The operator's listener (`--metrics-listen`): metrics and probes,
//! without the token, apart from the API.
//!
//! It is served before the host exists, so that an orchestrator sees the
//! process alive (`/healthz`) but not ready (`/readyz` 503) while a kept
//! state directory is recovered, and ready only once commands are
//! accepted.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::Host;
use crate::telemetry::exposition;

/// Time a probe client has to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// The metrics and probes of one host, served on a listener of their own
/// with [`Probes::serve`]. Cheap to clone.
///
/// - `GET /metrics`: Prometheus text (OpenMetrics when `Accept` asks).
/// - `GET /healthz`: 200 `ok` while the process serves.
/// - `GET /readyz`: 200 once [`Probes::ready`] was given the host and it
///   accepts commands; 503 before (recovery) and once shutdown began.
#[derive(Clone, Debug, Default)]
pub struct Probes {
    host: Arc<OnceLock<Host>>,
}

impl Probes {
    /// Probes that answer "not ready" until [`Probes::ready`].
    pub fn new() -> Probes {
        Probes::default()
    }

    /// The host is built (its state directory recovered): serve its
    /// metrics, and be ready while it accepts commands.
    pub fn ready(&self, host: &Host) {
        let _ = self.host.set(host.clone());
    }

    /// Serves the probes on `listener` until the future is dropped.
    pub async fn serve(self, listener: TcpListener) {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("metrics listener: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let probes = self.clone();
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let answer = probes.answer(&req);
                async move { Ok::<_, std::convert::Infallible>(answer) }
            });
            tokio::spawn(async move {
                let served = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEAD_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                if let Err(e) = served {
                    tracing::debug!("metrics listener: connection ended: {e}");
                }
            });
        }
    }

    fn answer<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
        }
        let host = self.host.get();
        match req.uri().path() {
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" => match host {
                None => text(StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
                Some(host) if !host.is_accepting() => {
                    text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
                }
                Some(_) => text(StatusCode::OK, "ready\n"),
            },
            "/metrics" => {
                let Some(host) = host else {
                    return text(StatusCode::SERVICE_UNAVAILABLE, "starting\n");
                };
                let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
                let openmetrics = host.openmetrics();
                let (body, kind) = if exposition::wants_openmetrics(accept) {
                    (openmetrics, exposition::OPENMETRICS)
                } else {
                    (
                        exposition::to_prometheus_text(&openmetrics),
                        exposition::PROMETHEUS_TEXT,
                    )
                };
                let mut response = Response::new(Full::new(Bytes::from(body)));
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static(kind));
                response
            }
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: /metrics, /healthz, /readyz\n",
            ),
        }
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
