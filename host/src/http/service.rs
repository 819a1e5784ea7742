//! The API as a service, for a server that is not the host's own: a
//! `tower::Service` (so an `axum::Router` can `fallback_service` or
//! `nest_service` it) and a `hyper::service::Service`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::{Request, Response};

use super::body::ResponseBody;
use super::{App, handle};

/// The whole API, as [`Host::service`](crate::Host::service) hands it out:
/// every route of the daemon, auth included, answering from any
/// `http::Request` whose body is an `http_body::Body` of [`Bytes`]. Cheap
/// to clone; it never fails (errors are the contract's JSON answers).
///
/// Request heads are read by the embedder's server, so the host's own
/// head limits (size, timeout; see [`Host::serve`](crate::Host::serve))
/// are the embedder's to set there.
#[derive(Clone)]
pub struct ApiService {
    app: Arc<App>,
}

impl std::fmt::Debug for ApiService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiService").finish_non_exhaustive()
    }
}

/// The body of the API's responses: whole JSON, or a stream of events.
pub type ApiBody = ResponseBody;

/// The future of one [`ApiService`] call.
pub type ApiFuture = Pin<Box<dyn Future<Output = Result<Response<ApiBody>, Infallible>> + Send>>;

impl ApiService {
    pub(crate) fn new(app: Arc<App>) -> ApiService {
        ApiService { app }
    }

    fn call<B>(&self, req: Request<B>) -> ApiFuture
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let req = req.map(super::RequestBody::new);
        Box::pin(handle(&self.app, req))
    }
}

impl<B> tower_service::Service<Request<B>> for ApiService
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<ApiBody>;
    type Error = Infallible;
    type Future = ApiFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> ApiFuture {
        ApiService::call(self, req)
    }
}

impl<B> hyper::service::Service<Request<B>> for ApiService
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<ApiBody>;
    type Error = Infallible;
    type Future = ApiFuture;

    fn call(&self, req: Request<B>) -> ApiFuture {
        ApiService::call(self, req)
    }
}
