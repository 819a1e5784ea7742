//! Accepting connections, and letting them finish when the host stops.

use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::http::{App, handle};
use crate::http::parse_errors::ParseErrorBodies;

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
    // hyper-util's GracefulShutdown cannot watch a connection that may be
    // upgraded (a WebSocket passed to `--upstream`), so the same is done
    // here: `stopping` asks each connection to finish, and each holds an
    // `open` sender, all of them gone once every connection has ended.
    let (stopping, _) = watch::channel(false);
    let (open, all_closed) = mpsc::channel::<()>(1);
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
            _ = &mut stop => return Draining { stopping, open, all_closed },
        };
        let _ = stream.set_nodelay(true);
        let app = Arc::clone(&app);
        let service = service_fn(move |req| handle(&app, req));
        let conn = http1::Builder::new()
            .keep_alive(true)
            .timer(TokioTimer::new())
            .header_read_timeout(head_timeout)
            .max_header_size(MAX_HEAD_BYTES)
            .serve_connection(TokioIo::new(ParseErrorBodies::new(stream)), service)
            .with_upgrades();
        let mut stop_rx = stopping.subscribe();
        let open = open.clone();
        tokio::spawn(async move {
            tokio::pin!(conn);
            let ended = tokio::select! {
                ended = conn.as_mut() => ended,
                _ = stopped(&mut stop_rx) => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!("connection ended: {e}");
            }
            drop(open);
        });
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        let now = *stop.borrow_and_update();
        if now || stop.changed().await.is_err() {
            return;
        }
    }
}

/// The connections still open after the listener closed.
pub struct Draining {
    stopping: watch::Sender<bool>,
    open: mpsc::Sender<()>,
    all_closed: mpsc::Receiver<()>,
}

impl Draining {
    /// Asks idle keep-alive connections to close and waits, at most
    /// `limit`, for responses in flight to finish.
    pub async fn wait(self, limit: Duration) {
        let Draining {
            stopping,
            open,
            mut all_closed,
        } = self;
        stopping.send_replace(true);
        drop(open);
        if tokio::time::timeout(limit, all_closed.recv())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after {limit:?}; closing them");
        }
    }
}
