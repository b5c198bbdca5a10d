use std::sync::Arc;

/// Hooks called on every state transition and every rejection, to wire
/// metrics or logs without forking the breaker.
///
/// Every method has a no-op default, so implement only what you need; `()`
/// is the no-op observer. Hooks run on the caller's thread after the state
/// has changed and with no lock held, so they may call back into the breaker.
/// Keep them cheap: `on_reject` runs on the rejection path. Hooks from
/// concurrent callers may run in a different order than the transitions.
pub trait CircuitObserver: Send + Sync + 'static {
    /// The circuit went to Open (from Closed or HalfOpen).
    fn on_open(&self) {}
    /// The circuit went from Open to HalfOpen: a trial is now allowed.
    fn on_half_open(&self) {}
    /// The circuit went to Closed (from HalfOpen, or from any state by
    /// [`reset`](crate::CircuitBreaker::reset)).
    fn on_close(&self) {}
    /// A request was rejected.
    fn on_reject(&self) {}
}

/// The no-op observer.
impl CircuitObserver for () {}

/// Shares one observer between several breakers.
impl<O: CircuitObserver + ?Sized> CircuitObserver for Arc<O> {
    fn on_open(&self) {
        (**self).on_open();
    }
    fn on_half_open(&self) {
        (**self).on_half_open();
    }
    fn on_close(&self) {
        (**self).on_close();
    }
    fn on_reject(&self) {
        (**self).on_reject();
    }
}

/// Lets an observer be chosen at run time (`Box<dyn CircuitObserver>`).
impl<O: CircuitObserver + ?Sized> CircuitObserver for Box<O> {
    fn on_open(&self) {
        (**self).on_open();
    }
    fn on_half_open(&self) {
        (**self).on_half_open();
    }
    fn on_close(&self) {
        (**self).on_close();
    }
    fn on_reject(&self) {
        (**self).on_reject();
    }
}
