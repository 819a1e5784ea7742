//! Response bodies: a whole buffer, or a stream fed by a task through a
//! bounded channel (the bound is the per-connection write buffering).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

/// Why a body broke off: only a forwarded one can (see `upstream`), and
/// then the client must see a broken response, never a complete-looking
/// one.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

pub type ResponseBody = BoxBody<Bytes, BodyError>;

pub fn full(bytes: impl Into<Bytes>) -> ResponseBody {
    Full::new(bytes.into()).map_err(never).boxed()
}

pub fn empty() -> ResponseBody {
    Empty::new().map_err(never).boxed()
}

fn never(never: Infallible) -> BodyError {
    match never {}
}

/// Frames written by a producer task, which sees the client leave as its
/// channel closing when hyper drops this body.
pub struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

/// Frames in flight per stream, beyond what hyper buffers itself.
const IN_FLIGHT: usize = 2;

pub fn channel() -> (mpsc::Sender<Bytes>, ResponseBody) {
    let (tx, rx) = mpsc::channel(IN_FLIGHT);
    (tx, ChannelBody { rx }.map_err(never).boxed())
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx
            .poll_recv(cx)
            .map(|frame| frame.map(|b| Ok(Frame::data(b))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// A request body, whichever server the request came through (hyper's
/// own, or an embedder's axum or tower stack). Handlers hold requests
/// across awaits, so it must be `Sync`, which an embedder's body need not
/// be: the mutex makes it so, and is never contended (the body is polled
/// through `&mut`).
pub struct RequestBody(
    std::sync::Mutex<http_body_util::combinators::UnsyncBoxBody<Bytes, BodyError>>,
);

impl RequestBody {
    /// Wraps any body of bytes.
    pub fn new<B>(body: B) -> RequestBody
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BodyError>,
    {
        RequestBody(std::sync::Mutex::new(
            body.map_err(Into::into).boxed_unsync(),
        ))
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let inner = self
            .get_mut()
            .0
            .get_mut()
            .unwrap_or_else(|p| p.into_inner());
        Pin::new(inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.try_lock().is_ok_and(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.0.try_lock().map(|b| b.size_hint()).unwrap_or_default()
    }
}
