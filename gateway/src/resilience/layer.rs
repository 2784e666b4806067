//! What the layers of an agency's stack have in common: each wraps a
//! service of agency calls (`Inner`) and does one thing around the call to
//! it (`Around`); `AroundLayer` makes a tower `Layer` of that, whose
//! service passes readiness on to the service inside.

use std::task::{Context, Poll};

use tower::{Layer, Service};

use super::call::{AgencyCall, CallError, CallFuture};
use crate::transport::HttpReply;

/// A service of agency calls that a layer can wrap: clonable (a call's
/// future may need its own copy), with a future that can be boxed.
pub trait Inner:
    Service<AgencyCall, Response = HttpReply, Error = CallError, Future: Send + 'static>
    + Clone
    + Send
    + 'static
{
}

impl<S> Inner for S
where
    S: Service<AgencyCall, Response = HttpReply, Error = CallError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
}

/// One concern of the stack: what it does around the inner call (refuse
/// it, bound it, record it, trace it).
pub trait Around: Clone + Send + 'static {
    fn call<S: Inner>(&self, inner: &mut S, call: AgencyCall) -> CallFuture;
}

/// The tower layer of an `Around`.
#[derive(Debug, Clone)]
pub struct AroundLayer<A>(pub A);

impl<S, A: Clone> Layer<S> for AroundLayer<A> {
    type Service = AroundService<S, A>;

    fn layer(&self, inner: S) -> Self::Service {
        AroundService {
            inner,
            around: self.0.clone(),
        }
    }
}

/// An `Around` over the service inside it.
#[derive(Debug, Clone)]
pub struct AroundService<S, A> {
    inner: S,
    around: A,
}

impl<S: Inner, A: Around> Service<AgencyCall> for AroundService<S, A> {
    type Response = HttpReply;
    type Error = CallError;
    type Future = CallFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), CallError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: AgencyCall) -> CallFuture {
        self.around.call(&mut self.inner, call)
    }
}
