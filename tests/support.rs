//! Helpers shared by the integration tests.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use watchtower_websocket::prelude::*;
use watchtower_websocket::{HandlerFuture, ReconnectPolicy, TransportBuilder};

/// The upper bound for waiting on a condition. Generous: it only decides
/// how long a broken test takes to fail.
pub(crate) const LIMIT: Duration = Duration::from_secs(20);

/// Logs to the test's output when `WATCHTOWER_TEST_LOG` is set (e.g. to
/// `debug`); silent otherwise.
pub(crate) fn init_logs() {
    if let Ok(level) = std::env::var("WATCHTOWER_TEST_LOG") {
        let level = level.parse().unwrap_or(tracing::Level::DEBUG);
        let _ = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_test_writer()
            .try_init();
    }
}

/// A builder with test-speed timings: reconnects every 20 ms (up to
/// `attempts` times), fast connect timeout.
pub(crate) fn fast(url: &str, attempts: u32) -> TransportBuilder {
    fast_with(WebSocketConfig::new(url), attempts)
}

/// [`fast`] whose publishers wait when the queue is full instead of
/// evicting the oldest event (the default): for tests that publish more
/// than the queue holds and expect every event at the server. (With the
/// default, a loaded machine's writer falls behind, and the evicted
/// events go to the dead-letter queue: seen as 4,617 of 5,000 arriving.)
pub(crate) fn fast_blocking(url: &str, attempts: u32) -> TransportBuilder {
    let mut config = WebSocketConfig::new(url);
    config.backpressure.strategy = BackpressureStrategy::Block;
    fast_with(config, attempts)
}

pub(crate) fn fast_with(config: WebSocketConfig, attempts: u32) -> TransportBuilder {
    init_logs();
    WebSocketTransport::builder(config)
        .reconnect_policy(
            ReconnectPolicy::linear(Duration::from_millis(20), attempts)
                .with_max_delay(Duration::from_millis(100)),
        )
        .connect_timeout(Duration::from_secs(5))
        .shutdown_timeout(Duration::from_secs(5))
}

/// An event of `event_type` whose payload carries `n`.
pub(crate) fn event(event_type: &str, n: u64) -> Event {
    Event::new(
        event_type,
        serde_json::json!({ "n": n }),
        EventMetadata::default(),
    )
}

/// The `n` a test event carries.
pub(crate) fn n_of(event: &Event) -> u64 {
    event.payload["n"].as_u64().expect("test event")
}

/// Collects what a subscription receives.
#[derive(Clone, Default)]
pub(crate) struct Collector {
    events: Arc<Mutex<Vec<Event>>>,
}

impl Collector {
    pub(crate) fn handler(&self) -> impl Fn(Event) -> HandlerFuture + Send + Sync + 'static {
        let events = Arc::clone(&self.events);
        move |event| {
            let events = Arc::clone(&events);
            Box::pin(async move {
                events.lock().unwrap().push(event);
                Ok(())
            })
        }
    }

    pub(crate) fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    pub(crate) fn len(&self) -> usize {
        self.events.lock().unwrap().len()
    }

    pub(crate) fn ns(&self) -> Vec<u64> {
        self.events().iter().map(n_of).collect()
    }
}
