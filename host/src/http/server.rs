//! Accepting connections ([`Serve`]), and letting them finish when the
//! host stops ([`Connections`]).

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use super::parse_errors::ParseErrorBodies;
use super::{App, handle};

/// Largest request head (request line and headers) accepted; larger ones
/// get 431. Hyper's own bound is its read buffer, which a fast client can
/// fill past before the head is parsed.
const MAX_HEAD_BYTES: usize = 256 * 1024;

/// Serving the API on a listener: a future to await (or spawn, through
/// [`IntoFuture`]), made by [`Host::serve`](crate::Host::serve). It
/// resolves once the listener is closed: when the signal given to
/// [`Serve::with_graceful_shutdown`] fires, or when
/// [`Host::shutdown`](crate::Host::shutdown) begins. Connections still
/// open then go on until `Host::shutdown` drains them.
#[must_use = "a Serve does nothing until awaited"]
pub struct Serve {
    listener: TcpListener,
    app: Arc<App>,
    head_timeout: Duration,
    closing: watch::Receiver<bool>,
    connections: Connections,
    signal: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl std::fmt::Debug for Serve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serve")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

impl Serve {
    pub(crate) fn new(
        listener: TcpListener,
        app: Arc<App>,
        head_timeout: Duration,
        closing: watch::Receiver<bool>,
        connections: Connections,
    ) -> Serve {
        Serve {
            listener,
            app,
            head_timeout,
            closing,
            connections,
            signal: Box::pin(std::future::pending()),
        }
    }

    /// Stops accepting once `signal` resolves (as well as at
    /// [`Host::shutdown`](crate::Host::shutdown)). Follow it with
    /// `Host::shutdown`, which stops the commands and drains the
    /// connections.
    pub fn with_graceful_shutdown<F>(mut self, signal: F) -> Serve
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.signal = Box::pin(signal);
        self
    }

    async fn run(self) {
        let Serve {
            listener,
            app,
            head_timeout,
            mut closing,
            connections,
            mut signal,
        } = self;
        let (stopping, closing_now, open) = connections.register();
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
                _ = &mut signal => return,
                _ = stopped(&mut closing) => return,
            };
            let Some(admitted) = connections.admit() else {
                // Over --max-connections: closed before a byte is read.
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let tasks = app.tasks.clone();
            let app = Arc::clone(&app);
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                handle(&app, req.map(super::RequestBody::new))
            });
            let conn = http1::Builder::new()
                .keep_alive(true)
                .timer(TokioTimer::new())
                .header_read_timeout(head_timeout)
                .max_header_size(MAX_HEAD_BYTES)
                .serve_connection(TokioIo::new(ParseErrorBodies::new(stream)), service)
                .with_upgrades();
            let mut stop_rx = stopping.subscribe();
            let mut close_rx = closing_now.subscribe();
            let open = open.clone();
            tasks.spawn(async move {
                tokio::pin!(conn);
                let ended = tokio::select! {
                    ended = conn.as_mut() => ended,
                    _ = stopped(&mut stop_rx) => {
                        conn.as_mut().graceful_shutdown();
                        // A reader that never reads keeps a response
                        // unfinished for good: past the drain limit the
                        // connection is dropped, which closes the socket.
                        tokio::select! {
                            ended = conn.as_mut() => ended,
                            _ = stopped(&mut close_rx) => Ok(()),
                        }
                    }
                };
                if let Err(e) = ended {
                    tracing::debug!("connection ended: {e}");
                }
                drop(admitted);
                drop(open);
            });
        }
    }
}

impl IntoFuture for Serve {
    type Output = ();
    type IntoFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
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

/// The connections of every [`Serve`] of one host, so that shutdown can
/// ask them to finish and wait until they have.
///
/// hyper-util's GracefulShutdown cannot watch a connection that may be
/// upgraded (a WebSocket passed to `--upstream`), so the same is done
/// here: `stopping` asks each connection to finish, `closing_now` (past
/// the drain limit) closes those that have not, and each holds an `open`
/// sender, all of them gone once every connection has ended.
///
/// It also counts them, so that at most `limit` are open at once: every
/// idle keep-alive connection costs memory, and a client may open many.
#[derive(Clone)]
pub struct Connections {
    draining: Arc<Mutex<Option<Draining>>>,
    limit: usize,
    open: Arc<AtomicUsize>,
    /// When a refusal was last logged: at most one line a minute.
    refusal_logged: Arc<Mutex<Option<Instant>>>,
}

/// How often refused connections are logged, at most.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(60);

/// One of the counted open connections, until dropped.
pub struct Admitted(Arc<AtomicUsize>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

struct Draining {
    stopping: watch::Sender<bool>,
    closing_now: watch::Sender<bool>,
    open: mpsc::Sender<()>,
    all_closed: mpsc::Receiver<()>,
}

impl Connections {
    /// At most `limit` connections open at once.
    pub fn new(limit: usize) -> Connections {
        let (open, all_closed) = mpsc::channel(1);
        Connections {
            draining: Arc::new(Mutex::new(Some(Draining {
                stopping: watch::channel(false).0,
                closing_now: watch::channel(false).0,
                open,
                all_closed,
            }))),
            limit,
            open: Arc::new(AtomicUsize::new(0)),
            refusal_logged: Arc::new(Mutex::new(None)),
        }
    }

    /// A place for one more connection, unless `limit` are open (then the
    /// refusal is logged, once a minute at most).
    fn admit(&self) -> Option<Admitted> {
        let limit = self.limit;
        let taken = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            });
        if taken.is_ok() {
            return Some(Admitted(Arc::clone(&self.open)));
        }
        let mut logged = self
            .refusal_logged
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if logged.is_none_or(|at| at.elapsed() >= REFUSAL_LOG_EVERY) {
            *logged = Some(Instant::now());
            tracing::warn!(
                "{limit} connections are open (--max-connections): closing new ones \
                 (logged once a minute)"
            );
        }
        None
    }

    /// What a new accept loop hands its connections: the stop flag, the
    /// flag that closes them without waiting, and a sender each
    /// connection holds while open.
    fn register(&self) -> (watch::Sender<bool>, watch::Sender<bool>, mpsc::Sender<()>) {
        let guard = self.draining.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(d) => (d.stopping.clone(), d.closing_now.clone(), d.open.clone()),
            // Drained already: whatever is accepted now closes at once.
            None => (
                watch::channel(true).0,
                watch::channel(true).0,
                mpsc::channel(1).0,
            ),
        }
    }

    /// Asks idle keep-alive connections to close and waits, at most
    /// `limit`, for responses in flight to finish; then closes the rest
    /// (a reader that stopped reading) and waits for them to be gone.
    pub async fn drain(&self, limit: Duration) {
        let draining = self
            .draining
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(Draining {
            stopping,
            closing_now,
            open,
            mut all_closed,
        }) = draining
        else {
            return;
        };
        stopping.send_replace(true);
        drop(open);
        if tokio::time::timeout(limit, all_closed.recv())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after {limit:?}; closing them");
            closing_now.send_replace(true);
            // Dropping a connection is immediate; the bound is only
            // against a task that is not scheduled.
            let _ = tokio::time::timeout(Duration::from_secs(1), all_closed.recv()).await;
        }
    }
}
