//! `WebSocketSubscriber`: the spec's subscriber, on its own connection or a
//! shared one.

use std::sync::Arc;

use watchtower_backpressure::BackpressureStats;
use watchtower_circuit_breaker::CircuitBreakerStats;
use watchtower_core::{
    BoxFuture, Event, EventHandler, Result, Subscriber, SubscriptionHandle, Transport,
};

use crate::config::WebSocketConfig;
use crate::transport::WebSocketTransport;

/// Subscribes handlers to event types (and publishes) over a
/// [`WebSocketTransport`].
///
/// Built from a config it owns its connection; built from an
/// `Arc<WebSocketTransport>` it shares one. Dropping it removes the
/// subscriptions it made.
#[derive(Debug)]
pub struct WebSocketSubscriber {
    transport: Arc<WebSocketTransport>,
    handles: Vec<SubscriptionHandle>,
}

impl WebSocketSubscriber {
    /// Connects a new transport with `config` (see [`WebSocketTransport::new`]).
    pub async fn new(config: WebSocketConfig) -> Result<Self> {
        Ok(Self::from_transport(Arc::new(
            WebSocketTransport::new(config).await?,
        )))
    }

    /// Subscribes over an existing, possibly shared, transport.
    pub fn from_transport(transport: Arc<WebSocketTransport>) -> Self {
        WebSocketSubscriber {
            transport,
            handles: Vec::new(),
        }
    }

    /// The transport underneath.
    pub fn transport(&self) -> &Arc<WebSocketTransport> {
        &self.transport
    }

    /// Publishes one event; see [`WebSocketTransport::publish`].
    pub async fn publish(&self, event: Event) -> Result<()> {
        self.transport.publish(event).await
    }

    /// Waits until everything published so far is written; see
    /// [`WebSocketTransport::flush`].
    pub async fn flush(&self) -> Result<()> {
        self.transport.flush().await
    }

    /// The outgoing queue's statistics.
    pub async fn backpressure_stats(&self) -> BackpressureStats {
        self.transport.backpressure_stats().await
    }

    /// The circuit breaker's statistics.
    pub async fn circuit_breaker_stats(&self) -> CircuitBreakerStats {
        self.transport.circuit_breaker_stats().await
    }

    /// `Ok` only while connected; see [`WebSocketTransport::health_check`].
    pub async fn health_check(&self) -> Result<()> {
        self.transport.health_check().await
    }

    async fn add(
        &mut self,
        event_types: Vec<String>,
        handler: EventHandler,
    ) -> Result<SubscriptionHandle> {
        let handle = self
            .transport
            .subscribe_handler(event_types, handler)
            .await?;
        self.handles.push(handle);
        Ok(handle)
    }

    async fn remove(&mut self, handle: &SubscriptionHandle) -> Result<()> {
        self.transport.unsubscribe(handle).await?;
        self.handles.retain(|h| h != handle);
        Ok(())
    }
}

impl Drop for WebSocketSubscriber {
    fn drop(&mut self) {
        // Mailboxes close; each task finishes what it holds and ends.
        for handle in self.handles.drain(..) {
            self.transport.detach_subscription(&handle);
        }
    }
}

impl Transport for WebSocketSubscriber {
    fn publish(&self, event: Event) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.transport.publish(event))
    }

    fn flush(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.transport.flush())
    }

    fn health_check(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.transport.health_check())
    }
}

impl Subscriber for WebSocketSubscriber {
    fn subscribe_handler(
        &mut self,
        event_types: Vec<String>,
        handler: EventHandler,
    ) -> BoxFuture<'_, Result<SubscriptionHandle>> {
        Box::pin(self.add(event_types, handler))
    }

    fn unsubscribe<'a>(&'a mut self, handle: &'a SubscriptionHandle) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.remove(handle))
    }
}
