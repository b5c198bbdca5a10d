//! Config and API misuse: typed errors, never a panic.

use std::time::Duration;

use watchtower_websocket::prelude::*;
use watchtower_websocket::{
    AtLeastOnce, MaxAttempts, ReconnectPolicy, TlsErrorKind, TransportBuilder,
};

/// A URL nothing listens on: config errors must come before any I/O, so a
/// test that reached the network would fail with a connection error.
fn nowhere() -> String {
    format!("ws://{}/events", watchtower_test_support::unused_addr())
}

fn with_config(change: impl FnOnce(&mut WebSocketConfig)) -> TransportBuilder {
    let mut config = WebSocketConfig::new(nowhere());
    change(&mut config);
    quick(WebSocketTransport::builder(config))
}

fn base() -> TransportBuilder {
    quick(WebSocketTransport::builder(WebSocketConfig::new(nowhere())))
}

/// Should a case wrongly pass validation, it fails fast on the network.
fn quick(builder: TransportBuilder) -> TransportBuilder {
    builder.reconnect_policy(ReconnectPolicy::fixed(
        Duration::from_millis(1),
        MaxAttempts::Limited(0),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_settings_are_config_errors_not_panics() {
    let cases: Vec<(&str, TransportBuilder)> = vec![
        (
            "queue of zero",
            with_config(|c| c.backpressure.max_queue_size = 0),
        ),
        (
            "NaN warning threshold",
            with_config(|c| c.backpressure.warning_threshold = f64::NAN),
        ),
        (
            "warning threshold above 1",
            with_config(|c| c.backpressure.warning_threshold = 2.0),
        ),
        (
            "enormous queue",
            with_config(|c| c.backpressure.max_queue_size = usize::MAX),
        ),
        ("mailbox of zero", base().mailbox_size(0)),
        ("enormous mailbox", base().mailbox_size(usize::MAX)),
        ("write batch of zero", base().write_batch_size(0)),
        ("enormous read buffer", base().read_buffer_size(usize::MAX)),
        ("tiny read buffer", base().read_buffer_size(1)),
        ("tiny max message", base().max_message_size(1)),
        (
            "frame above message",
            base().max_message_size(1024).max_frame_size(4096),
        ),
        (
            "zero keepalive interval",
            base().keepalive(Duration::ZERO, Duration::from_secs(1)),
        ),
        (
            "zero pong timeout",
            base().keepalive(Duration::from_secs(1), Duration::ZERO),
        ),
        (
            "zero connect timeout",
            base().connect_timeout(Duration::ZERO),
        ),
        ("dead-letter queue of zero", base().dlq_capacity(0)),
        (
            "enormous dead-letter queue",
            base().dlq_capacity(usize::MAX),
        ),
        ("enormous write batch", base().write_batch_size(usize::MAX)),
        ("enormous dedup window", base().dedup_window(usize::MAX)),
        (
            "enormous in flight",
            base().delivery(AtLeastOnce {
                ack_timeout: Duration::from_secs(1),
                max_in_flight: usize::MAX,
            }),
        ),
        (
            "zero ack timeout",
            base().delivery(AtLeastOnce {
                ack_timeout: Duration::ZERO,
                max_in_flight: 8,
            }),
        ),
        (
            "zero in flight",
            base().delivery(AtLeastOnce {
                ack_timeout: Duration::from_secs(1),
                max_in_flight: 0,
            }),
        ),
        (
            "zero ack attempts",
            base().delivery(AtLeastOnce::default()).ack_attempts(0),
        ),
        (
            "NaN backoff factor",
            base().reconnect_policy(ReconnectPolicy::exponential(
                Duration::from_millis(10),
                f64::NAN,
                MaxAttempts::Limited(3),
            )),
        ),
        ("header name with a space", base().header("bad header", "v")),
        (
            "header value with a newline",
            base().header("X-Token", "secret\nvalue"),
        ),
        (
            "http scheme",
            WebSocketTransport::builder(WebSocketConfig::new("http://localhost:8080/events")),
        ),
        (
            "no scheme",
            WebSocketTransport::builder(WebSocketConfig::new("localhost:8080")),
        ),
        (
            "empty URL",
            WebSocketTransport::builder(WebSocketConfig::new("")),
        ),
    ];
    for (name, builder) in cases {
        match builder.connect().await {
            Err(WatchtowerError::Config(message)) => {
                assert!(!message.is_empty(), "{name}");
                assert!(!message.contains("secret"), "{name}: {message}");
            }
            other => panic!("{name}: expected a Config error, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_certificates_are_tls_config_errors() {
    let url = nowhere().replace("ws://", "wss://");
    let cases = [
        (
            "garbage root CA",
            WebSocketTransport::builder(WebSocketConfig::new(&url))
                .add_root_certificate_pem("not a certificate"),
        ),
        (
            "missing CA file",
            WebSocketTransport::builder(WebSocketConfig::new(&url))
                .add_root_certificate_file("/nonexistent/ca.pem"),
        ),
        (
            "garbage client identity",
            WebSocketTransport::builder(WebSocketConfig::new(&url))
                .client_certificate_pem("x", "y"),
        ),
        (
            "no roots at all",
            WebSocketTransport::builder(WebSocketConfig::new(&url)).use_webpki_roots(false),
        ),
    ];
    for (name, builder) in cases {
        match builder.connect().await {
            Err(WatchtowerError::Tls {
                kind: TlsErrorKind::Config,
                ..
            }) => {}
            other => panic!("{name}: expected a TLS config error, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misuse_after_shutdown_is_a_typed_error() {
    let transport = base().connect_lazily(true).connect().await.unwrap();
    transport.shutdown().await.unwrap();
    assert!(matches!(
        transport
            .publish(Event::new(
                "t",
                serde_json::json!(1),
                EventMetadata::default()
            ))
            .await,
        Err(WatchtowerError::Closed)
    ));
    assert!(matches!(
        transport.consume_dlq(|_e| Box::pin(async { Ok(()) })).await,
        Err(WatchtowerError::Closed)
    ));
    assert!(matches!(
        transport.flush().await,
        Ok(()) | Err(WatchtowerError::Closed)
    ));
}
