use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::FailurePolicy;
use crate::{CallError, CircuitObserver, OwnedPermit, Rejected};

pin_project! {
    /// The response future of [`CircuitBreakerService`](super::CircuitBreakerService).
    ///
    /// Resolves to the inner service's response, or to
    /// [`CallError::Rejected`] at once when the breaker refused the call, or
    /// to [`CallError::Inner`] with the inner service's error. When the inner
    /// call completes its outcome is classified by the
    /// [`FailurePolicy`] and recorded on the breaker. Dropping the future
    /// before that records nothing and frees the half-open trial if this
    /// call held it.
    pub struct ResponseFuture<F, P, O: CircuitObserver> {
        #[pin]
        state: State<F>,
        permit: Option<OwnedPermit<O>>,
        policy: Arc<P>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Called { #[pin] future: F },
        Rejected { rejected: Rejected },
    }
}

impl<F, P, O: CircuitObserver> ResponseFuture<F, P, O> {
    pub(super) fn called(future: F, permit: OwnedPermit<O>, policy: Arc<P>) -> Self {
        Self {
            state: State::Called { future },
            permit: Some(permit),
            policy,
        }
    }

    pub(super) fn rejected(rejected: Rejected, policy: Arc<P>) -> Self {
        Self {
            state: State::Rejected { rejected },
            permit: None,
            policy,
        }
    }
}

impl<F, P, O, T, E> Future for ResponseFuture<F, P, O>
where
    F: Future<Output = Result<T, E>>,
    P: FailurePolicy<T, E>,
    O: CircuitObserver,
{
    type Output = Result<T, CallError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.state.project() {
            StateProj::Rejected { rejected } => Poll::Ready(Err(CallError::Rejected(*rejected))),
            StateProj::Called { future } => {
                let outcome = ready!(future.poll(cx));
                if let Some(permit) = this.permit.take() {
                    if this.policy.is_failure(&outcome) {
                        permit.failure();
                    } else {
                        permit.success();
                    }
                }
                Poll::Ready(outcome.map_err(CallError::Inner))
            }
        }
    }
}

impl<F, P, O: CircuitObserver> fmt::Debug for ResponseFuture<F, P, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Called { .. } => "called",
            State::Rejected { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("permit", &self.permit)
            .finish_non_exhaustive()
    }
}
