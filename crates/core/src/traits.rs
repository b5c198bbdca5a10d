//! The publishing and subscribing contracts that transports implement.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::{BoxError, Result};
use crate::event::Event;

/// A boxed, `Send` future: what trait methods return, so that the traits
/// stay usable as `dyn Transport` / `dyn Subscriber`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The future an event handler returns.
pub type HandlerFuture = BoxFuture<'static, std::result::Result<(), BoxError>>;

/// A shareable event handler.
///
/// Any closure of the form `|event| Box::pin(async move { …; Ok(()) })`
/// converts into one; inside it `?` works on any error that is
/// `std::error::Error + Send + Sync + 'static`.
pub type EventHandler = Arc<dyn Fn(Event) -> HandlerFuture + Send + Sync + 'static>;

/// Identifies one subscription; pass it to [`Subscriber::unsubscribe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionHandle {
    owner: u64,
    id: u64,
}

impl SubscriptionHandle {
    /// Makes a handle. Transports call this; `owner` identifies the transport
    /// instance so a handle from another one is recognised as unknown.
    pub fn new(owner: u64, id: u64) -> Self {
        SubscriptionHandle { owner, id }
    }

    /// The transport instance that issued the handle.
    pub fn owner(&self) -> u64 {
        self.owner
    }

    /// The subscription's number within its transport.
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl fmt::Display for SubscriptionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "subscription {}/{}", self.owner, self.id)
    }
}

/// Something events can be published through.
pub trait Transport: Send + Sync {
    /// Publishes one event. Returns once the event is accepted for sending
    /// (enqueued), not when it is delivered; see [`Transport::flush`].
    fn publish(&self, event: Event) -> BoxFuture<'_, Result<()>>;

    /// Waits until every event accepted so far has been written out.
    fn flush(&self) -> BoxFuture<'_, Result<()>>;

    /// `Ok` while the transport is connected and healthy.
    fn health_check(&self) -> BoxFuture<'_, Result<()>>;
}

/// Something that can deliver events to handlers, by event type.
///
/// It publishes through its [`Transport`] supertrait: `publish` is declared
/// once, so a generic `T: Subscriber` (or `T: Transport + Subscriber`)
/// calls it without ambiguity.
pub trait Subscriber: Transport {
    /// Registers a shared handler for `event_types` (empty: every type).
    fn subscribe_handler(
        &mut self,
        event_types: Vec<String>,
        handler: EventHandler,
    ) -> BoxFuture<'_, Result<SubscriptionHandle>>;

    /// Registers `handler` for `event_types` (empty: every type).
    ///
    /// Each subscription receives every matching event once, in order.
    fn subscribe<H>(
        &mut self,
        event_types: Vec<String>,
        handler: H,
    ) -> BoxFuture<'_, Result<SubscriptionHandle>>
    where
        H: Fn(Event) -> HandlerFuture + Send + Sync + 'static,
        Self: Sized,
    {
        self.subscribe_handler(event_types, Arc::new(handler))
    }

    /// Stops delivery to `handle`. An unknown handle is a
    /// [`Subscription`](crate::WatchtowerError::Subscription) error.
    fn unsubscribe<'a>(&'a mut self, handle: &'a SubscriptionHandle) -> BoxFuture<'a, Result<()>>;
}
