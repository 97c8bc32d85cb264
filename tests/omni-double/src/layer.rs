//! A tower layer in front of the gRPC routes that verifies every call's signature against the
//! HTTP/2 request path (the real method), and hands the verified [`Caller`] to the service in
//! the request extensions. Refusals are gRPC `Unauthenticated` responses.

use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::SystemTime;

use futures_util::future::{BoxFuture, FutureExt as _};
use tower::{Layer, Service};

use crate::auth::KeyRing;

/// Verifies signatures with the keys in the ring (which may change at run time).
#[derive(Debug, Clone)]
pub struct AuthLayer {
    keys: Arc<RwLock<KeyRing>>,
}

impl AuthLayer {
    /// A layer checking against `keys`.
    pub fn new(keys: Arc<RwLock<KeyRing>>) -> Self {
        AuthLayer { keys }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            keys: self.keys.clone(),
        }
    }
}

/// The service [`AuthLayer`] wraps around the routes.
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    keys: Arc<RwLock<KeyRing>>,
}

impl<S, B, R> Service<http::Request<B>> for AuthService<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let method = req.uri().path().to_string();
        let verdict = self.keys.read().unwrap_or_else(|e| e.into_inner()).verify(
            req.headers(),
            &method,
            SystemTime::now(),
        );
        match verdict {
            Ok(caller) => {
                req.extensions_mut().insert(caller);
                // Drive the clone that was not polled ready: swap so `self.inner` stays ready.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                inner.call(req).boxed()
            }
            Err(e) => {
                tracing::info!(%method, error = %e, "refused unauthenticated call");
                let resp = tonic::Status::unauthenticated(e.to_string()).into_http::<R>();
                async move { Ok(resp) }.boxed()
            }
        }
    }
}
