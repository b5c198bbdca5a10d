//! The whole product on one machine: an embedded hub, a subscriber and a
//! publisher; then the hub stops and restarts mid-stream, and every event
//! published during the outage still arrives.
//!
//! Run it with `cargo run --example quickstart`. It exits 0 (after ~10 s)
//! only if every event arrived exactly once and in order.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use watchtower_hub::Hub;
use watchtower_websocket::prelude::*;
use watchtower_websocket::{MaxAttempts, ReconnectPolicy};

const BEFORE: u64 = 10;
const DURING: u64 = 10;
const AFTER: u64 = 10;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 1. An embedded hub on a free loopback port.
    let hub = Hub::bind("127.0.0.1:0").await?;
    let addr = hub.local_addr();
    let url = format!("ws://{addr}/events");
    println!("hub        listening on {url}");

    // 2. A subscriber. It retries every 50 ms, so after a restart it is back
    //    long before the publisher's first retry (after 4 s): the hub relays,
    //    it does not store, so the subscriber must be there first.
    let subscriber = Arc::new(
        WebSocketTransport::builder(WebSocketConfig::new(&url))
            .reconnect_policy(ReconnectPolicy::fixed(
                Duration::from_millis(50),
                MaxAttempts::Unlimited,
            ))
            .server_filters(true)
            .connect()
            .await?,
    );
    let received = Arc::new(Mutex::new(Vec::new()));
    {
        let received = Arc::clone(&received);
        subscriber
            .subscribe(vec!["order.created".to_string()], move |event| {
                let received = Arc::clone(&received);
                Box::pin(async move {
                    let n = event.payload["n"].as_u64().unwrap_or(u64::MAX);
                    println!("subscriber received {} n={n}", event.event_type);
                    received.lock().map_err(|e| e.to_string())?.push(n);
                    Ok(())
                })
            })
            .await?;
    }
    watch_state("subscriber", &subscriber);

    // 3. A publisher.
    let publisher = WebSocketTransport::builder(WebSocketConfig::new(&url))
        .reconnect_policy(ReconnectPolicy::fixed(
            Duration::from_secs(4),
            MaxAttempts::Unlimited,
        ))
        .connect()
        .await?;
    watch_state("publisher", &publisher);
    // Wait until the hub has applied the subscriber's filter.
    wait_for("the subscriber to be ready", || {
        hub.stats().control_frames >= 1
    })
    .await?;

    let publish = |n: u64| {
        Event::new(
            "order.created",
            serde_json::json!({ "n": n, "item": "book" }),
            EventMetadata::default(),
        )
    };
    for n in 0..BEFORE {
        publisher.publish(publish(n)).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_for("the first events", || {
        received_len(&received) == BEFORE as usize
    })
    .await?;

    // 4. The hub goes away mid-stream.
    println!("hub        stopping (both clients lose their connection)");
    let stats = hub.shutdown().await;
    println!(
        "hub       stopped after relaying {} frames",
        stats.frames_out
    );
    wait_for("the publisher to notice", || {
        !publisher.state().is_connected()
    })
    .await?;
    for n in BEFORE..BEFORE + DURING {
        publisher.publish(publish(n)).await?;
        println!("publisher queued n={n} during the outage");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "publisher {} events waiting in its queue",
        publisher.backpressure_stats().await.current_queue_size
    );

    // 5. The hub comes back on the same address; both clients reconnect by
    //    themselves and the queued events are sent, in order.
    let hub = Hub::bind(addr).await?;
    println!("hub        restarted on {url}");
    wait_for("the subscriber to reconnect", || {
        subscriber.state().is_connected()
    })
    .await?;
    wait_for("the publisher to reconnect", || {
        publisher.state().is_connected()
    })
    .await?;
    for n in BEFORE + DURING..BEFORE + DURING + AFTER {
        publisher.publish(publish(n)).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    publisher.flush().await?;
    let total = (BEFORE + DURING + AFTER) as usize;
    wait_for("every event", || received_len(&received) == total).await?;

    // 6. What happened, in numbers.
    let got = received.lock().map_err(|e| e.to_string())?.clone();
    let in_order_once = got == (0..BEFORE + DURING + AFTER).collect::<Vec<_>>();
    let p = publisher.stats();
    let s = subscriber.stats();
    println!();
    println!(
        "published {total}, received {}, in order and once each: {in_order_once}",
        got.len()
    );
    println!(
        "outage     {DURING} events published while the hub was down, all delivered after the reconnect"
    );
    println!(
        "publisher connects={} reconnects={} frames_out={} queue={}/{} dropped={} breaker={:?} dlq={}",
        p.connection.connects,
        p.connection.reconnects,
        p.connection.frames_out,
        p.backpressure.current_queue_size,
        p.backpressure.max_queue_size,
        p.backpressure.dropped_events,
        p.circuit_breaker.state,
        p.dlq.len,
    );
    println!(
        "subscriber connects={} reconnects={} events_received={} malformed={} dlq={}",
        s.connection.connects,
        s.connection.reconnects,
        s.connection.events_received,
        s.connection.malformed.total(),
        s.dlq.len,
    );
    publisher.shutdown().await?;
    subscriber.shutdown().await?;
    hub.shutdown().await;
    if !in_order_once {
        return Err(format!("events were lost, duplicated or reordered: {got:?}").into());
    }
    Ok(())
}

fn received_len(received: &Mutex<Vec<u64>>) -> usize {
    received.lock().map(|r| r.len()).unwrap_or(0)
}

/// Prints every connection state change of `transport`.
fn watch_state(name: &'static str, transport: &WebSocketTransport) {
    let mut changes = transport.state_changes();
    tokio::spawn(async move {
        while changes.changed().await.is_ok() {
            let state = *changes.borrow_and_update();
            println!("{name:<11}connection: {state:?}");
        }
    });
}

/// Waits (up to 20 s) for `condition`.
async fn wait_for(what: &str, condition: impl Fn() -> bool) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !condition() {
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("gave up waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}
