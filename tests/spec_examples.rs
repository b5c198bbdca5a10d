//! Every Rust block of the spec (`shared/spec/watchtower-websocket.md`),
//! compiled against the facade as written, each inside an async fn with the
//! obvious variables defined. A block that stops compiling means the API
//! drifted from the spec.
//!
//! Exempt, as they are not valid Rust: the URL list under "URL Formatting",
//! and under "Messages Not Received" the fragments with an undefined
//! `callback` and a literal `...`. The "Error Handling" block moves `event`
//! twice; its DLQ call takes `event.clone()`.
//!
//! The behaviour these blocks describe is tested in the other modules.

#![allow(unused, clippy::all)]

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use watchtower_core::{BoxError, Event, EventMetadata, WatchtowerError};
use watchtower_websocket::{
    CircuitState, WebSocketConfig, WebSocketSubscriber, WebSocketTransport,
};

type R = Result<(), Box<dyn Error>>;

async fn retry_processing(_event: &Event) -> Result<(), BoxError> {
    Ok(())
}

// ## Configuration
async fn configuration() -> R {
    use watchtower_core::{BackpressureConfig, BackpressureStrategy};
    use watchtower_websocket::WebSocketConfig;

    let config = WebSocketConfig {
        // WebSocket server URL
        url: "ws://localhost:8080/events".to_string(),

        // Auto-reconnect settings
        max_reconnect_attempts: 5,
        reconnect_delay_seconds: 5,

        // Backpressure configuration
        backpressure: BackpressureConfig {
            max_queue_size: 1000,
            strategy: BackpressureStrategy::DropOldest,
            warning_threshold: 0.8,
        },
    };
    Ok(())
}

// ## Usage / Publishing Events (a whole program)
mod publishing_events {
    use watchtower_core::{Event, EventMetadata, Subscriber};
    use watchtower_websocket::{WebSocketConfig, WebSocketSubscriber};

    #[tokio::main]
    async fn main() -> Result<(), Box<dyn std::error::Error>> {
        let config = WebSocketConfig::default();
        let subscriber = WebSocketSubscriber::new(config).await?;

        let event = Event::new(
            "notification.sent",
            serde_json::json!({
                "user_id": 456,
                "message": "Your order has shipped!",
                "channel": "email"
            }),
            EventMetadata::default(),
        );

        subscriber.publish(event).await?;
        Ok(())
    }
}

// ## Usage / Subscribing to Events (a whole program)
mod subscribing_to_events {
    use watchtower_core::Subscriber;
    use watchtower_websocket::{WebSocketConfig, WebSocketSubscriber};

    #[tokio::main]
    async fn main() -> Result<(), Box<dyn std::error::Error>> {
        let config = WebSocketConfig::default();
        let mut subscriber = WebSocketSubscriber::new(config).await?;

        // Subscribe to event types
        let handle = subscriber
            .subscribe(
                vec![
                    "notification.sent".to_string(),
                    "notification.failed".to_string(),
                ],
                |event| {
                    Box::pin(async move {
                        println!("Received notification: {:?}", event);
                        Ok(())
                    })
                },
            )
            .await?;

        // Keep running...
        tokio::signal::ctrl_c().await?;

        subscriber.unsubscribe(&handle).await?;
        Ok(())
    }
}

// ## Bidirectional Communication
async fn bidirectional(config: WebSocketConfig, event1: Event, event2: Event) -> R {
    use watchtower_websocket::WebSocketTransport;

    let transport = WebSocketTransport::new(config).await?;

    // Publish and subscribe simultaneously
    tokio::join!(
        transport.publish(event1),
        transport.publish(event2),
        // Subscription runs in background
    );
    Ok(())
}

// ## Auto-Reconnect
async fn auto_reconnect() -> R {
    let config = WebSocketConfig {
        url: "ws://localhost:8080/events".to_string(),
        max_reconnect_attempts: 5,  // Try 5 times
        reconnect_delay_seconds: 5, // Wait 5s between attempts
        ..Default::default()
    };

    let transport = WebSocketTransport::new(config).await?;
    Ok(())
}

// ## Message Formats / Text Messages
async fn text_messages(subscriber: WebSocketSubscriber) -> R {
    // Automatically serialized to JSON text
    let event = Event::new(
        "user.login",
        serde_json::json!({"user_id": 123}),
        EventMetadata::default(),
    );

    subscriber.publish(event).await?;
    Ok(())
}

// ## Message Formats / Binary Messages (comments only)
async fn binary_messages() -> R {
    // Transport can receive binary WebSocket messages
    // Automatically deserializes JSON from binary data
    // Useful when server sends binary-encoded JSON
    Ok(())
}

// ## Circuit Breaker
async fn circuit_breaker(config: WebSocketConfig, event: Event) -> R {
    use watchtower_websocket::WebSocketTransport;

    let transport = WebSocketTransport::new(config).await?;

    // Circuit breaker tracks connection attempts
    match transport.publish(event).await {
        Ok(_) => println!("Published successfully"),
        Err(e) if e.to_string().contains("Circuit breaker is open") => {
            println!("WebSocket unavailable, circuit breaker open");
        }
        Err(e) => println!("Error: {}", e),
    }

    // Monitor circuit breaker
    let stats = transport.circuit_breaker_stats().await;
    println!("State: {:?}", stats.state);
    println!("Failures: {}", stats.failure_count);
    Ok(())
}

// ## Dead Letter Queue
async fn dead_letter_queue(config: WebSocketConfig, event: Event, error: WatchtowerError) -> R {
    use watchtower_websocket::WebSocketTransport;

    let transport = WebSocketTransport::new(config).await?;

    // Publish to DLQ (stored in-memory)
    transport.publish_to_dlq(event, &error).await?;

    // Consume from DLQ
    transport
        .consume_dlq(|event| {
            Box::pin(async move {
                println!("Retrying failed event: {:?}", event);
                retry_processing(&event).await?;
                Ok(())
            })
        })
        .await?;
    Ok(())
}

// ## Monitoring / Backpressure Statistics
async fn backpressure_statistics(subscriber: WebSocketSubscriber) -> R {
    let stats = subscriber.backpressure_stats().await;
    println!(
        "Queue size: {}/{}",
        stats.current_queue_size, stats.max_queue_size
    );
    println!("Dropped: {}", stats.dropped_events);
    println!("Fill ratio: {:.2}%", stats.fill_ratio() * 100.0);
    Ok(())
}

// ## Monitoring / Circuit Breaker Statistics
async fn circuit_breaker_statistics(transport: WebSocketTransport) -> R {
    let stats = transport.circuit_breaker_stats().await;
    println!("Circuit state: {:?}", stats.state);
    println!("Total requests: {}", stats.total_requests);
    println!("Rejected: {}", stats.rejected_requests);
    println!(
        "Success rate: {:.2}%",
        (stats.total_requests - stats.rejected_requests) as f64 / stats.total_requests as f64
            * 100.0
    );
    Ok(())
}

// ## Monitoring / Connection Health
async fn connection_health(transport: WebSocketTransport) -> R {
    // Health check verifies connection
    match transport.health_check().await {
        Ok(_) => println!("WebSocket connected"),
        Err(e) => eprintln!("WebSocket disconnected: {}", e),
    }
    Ok(())
}

// ## Best Practices / Reconnection Strategy
async fn reconnection_strategy() -> R {
    // Quick recovery (low latency required)
    let config = WebSocketConfig {
        max_reconnect_attempts: 10,
        reconnect_delay_seconds: 2,
        ..Default::default()
    };

    // Conservative (avoid overwhelming server)
    let config = WebSocketConfig {
        max_reconnect_attempts: 3,
        reconnect_delay_seconds: 10,
        ..Default::default()
    };
    Ok(())
}

// ## Best Practices / Backpressure Configuration
async fn backpressure_configuration() -> R {
    use watchtower_core::{BackpressureConfig, BackpressureStrategy};

    // High-volume, can tolerate loss
    let config = WebSocketConfig {
        backpressure: BackpressureConfig {
            max_queue_size: 10000,
            strategy: BackpressureStrategy::DropOldest,
            warning_threshold: 0.9,
        },
        ..Default::default()
    };

    // Low-volume, cannot lose messages
    let config = WebSocketConfig {
        backpressure: BackpressureConfig {
            max_queue_size: 100,
            strategy: BackpressureStrategy::Block,
            warning_threshold: 0.7,
        },
        ..Default::default()
    };
    Ok(())
}

// ## Best Practices / Error Handling (`event.clone()` in the DLQ call)
async fn error_handling(
    subscriber: WebSocketSubscriber,
    transport: WebSocketTransport,
    fallback_transport: WebSocketTransport,
    event: Event,
) -> R {
    match subscriber.publish(event.clone()).await {
        Ok(_) => println!("Event sent"),
        Err(e) => {
            // Log error
            eprintln!("WebSocket publish failed: {}", e);

            // Fallback: Store in DLQ for retry
            transport.publish_to_dlq(event.clone(), &e).await?;

            // Or: Switch to alternative transport
            fallback_transport.publish(event).await?;
        }
    }
    Ok(())
}

// ## Performance Tuning / Connection Management
async fn connection_management(config: WebSocketConfig, event1: Event, event2: Event) -> R {
    // Reuse single transport instance
    let transport = Arc::new(WebSocketTransport::new(config).await?);

    // Share across tasks
    let t1 = transport.clone();
    let t2 = transport.clone();

    tokio::spawn(async move { t1.publish(event1).await });

    tokio::spawn(async move { t2.publish(event2).await });
    Ok(())
}

// ## Performance Tuning / Message Batching
async fn message_batching(subscriber: WebSocketSubscriber, events: Vec<Event>) -> R {
    // Publish multiple events concurrently
    let futures: Vec<_> = events
        .iter()
        .map(|event| subscriber.publish(event.clone()))
        .collect();

    futures::future::try_join_all(futures).await?;
    Ok(())
}

// ## Troubleshooting / Connection Issues
async fn connection_issues() -> R {
    // Test basic connectivity
    use tokio_tungstenite::connect_async;

    match connect_async("ws://localhost:8080").await {
        Ok(_) => println!("WebSocket server reachable"),
        Err(e) => eprintln!("Connection failed: {}", e),
    }
    Ok(())
}

// ## Troubleshooting / Messages Not Received, item 3
async fn verify_connection_is_open(transport: WebSocketTransport) -> R {
    transport.health_check().await?;
    Ok(())
}

// ## Troubleshooting / Circuit Breaker Open
async fn circuit_breaker_open(transport: WebSocketTransport, event: Event) -> R {
    // Check circuit breaker state
    let stats = transport.circuit_breaker_stats().await;

    if stats.state == CircuitState::Open {
        println!("Circuit is open, waiting for recovery...");
        println!("Failure count: {}", stats.failure_count);

        // Wait for timeout period to elapse
        // Circuit will transition to HalfOpen and allow test requests
        tokio::time::sleep(Duration::from_secs(60)).await;

        // Retry
        transport.publish(event).await?;
    }
    Ok(())
}

// ## Security / TLS/SSL
async fn tls() -> R {
    let config = WebSocketConfig {
        url: "wss://secure.example.com/events".to_string(), // Note: wss://
        ..Default::default()
    };

    // TLS certificate validation is automatic
    // For self-signed certificates, use custom connector (advanced)
    Ok(())
}

// ## Security / Authentication
async fn authentication() -> R {
    // Option 1: Token in URL query parameter
    let config = WebSocketConfig {
        url: "wss://api.example.com/events?token=abc123".to_string(),
        ..Default::default()
    };

    // Option 2: Custom headers (requires custom connector)
    // Advanced use case - modify transport implementation
    Ok(())
}

/// The blocks must also be `Send` where the spec spawns them or a user
/// would: a compile-time check that publish futures can cross tasks.
#[test]
fn spec_futures_are_send() {
    fn send<T: Send>(_: T) {}
    fn check(t: WebSocketTransport, s: WebSocketSubscriber, e: Event) {
        send(async move {
            let _ = t.publish(e.clone()).await;
            let _ = s.publish(e).await;
        });
    }
    let _ = check;
}
