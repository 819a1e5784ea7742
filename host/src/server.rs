//! Accepting connections, and letting them finish when the host stops.

use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::http::{App, handle};
use crate::parse_errors::ParseErrorBodies;

/// Largest request head (request line and headers) accepted; larger ones
/// get 431. Hyper's own bound is its read buffer, which a fast client can
/// fill past before the head is parsed.
const MAX_HEAD_BYTES: usize = 256 * 1024;

/// Serves connections until `stop` resolves, then returns a handle that
/// waits for the open connections to end. A request's head must arrive
/// within `head_timeout` (idle keep-alive connections close after it too).
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    head_timeout: Duration,
    stop: impl std::future::Future<Output = ()>,
) -> Draining {
    let graceful = GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of fds and the like: back off rather than spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => return Draining(graceful),
        };
        let _ = stream.set_nodelay(true);
        let app = Arc::clone(&app);
        let service = service_fn(move |req| handle(&app, req));
        let conn = http1::Builder::new()
            .keep_alive(true)
            .timer(TokioTimer::new())
            .header_read_timeout(head_timeout)
            .max_header_size(MAX_HEAD_BYTES)
            .serve_connection(TokioIo::new(ParseErrorBodies::new(stream)), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
}

/// The connections still open after the listener closed.
pub struct Draining(GracefulShutdown);

impl Draining {
    /// Asks idle keep-alive connections to close and waits, at most
    /// `limit`, for responses in flight to finish.
    pub async fn wait(self, limit: Duration) {
        if tokio::time::timeout(limit, self.0.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after {limit:?}; closing them");
        }
    }
}
