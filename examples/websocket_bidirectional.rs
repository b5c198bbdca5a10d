//! Publish and subscribe on one shared transport, against an embedded hub.
//!
//! Two services share the hub; each uses one `Arc<WebSocketTransport>` from
//! several tasks to publish while its subscription runs in the background.
//!
//! Run it with `cargo run --example websocket_bidirectional`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use watchtower_hub::Hub;
use watchtower_websocket::prelude::*;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hub = Hub::bind("127.0.0.1:0").await?;
    let url = hub.url();

    // Each service: one transport, shared by every task that publishes.
    let orders = Arc::new(
        WebSocketTransport::builder(WebSocketConfig::new(&url))
            .server_filters(true)
            .connect()
            .await?,
    );
    let billing = Arc::new(
        WebSocketTransport::builder(WebSocketConfig::new(&url))
            .server_filters(true)
            .connect()
            .await?,
    );

    // Billing hears about orders; orders hear about payments.
    let paid = Arc::new(AtomicUsize::new(0));
    {
        let billing_for_handler = Arc::clone(&billing);
        billing
            .subscribe(vec!["order.created".into()], move |event| {
                let billing = Arc::clone(&billing_for_handler);
                Box::pin(async move {
                    // Reply on the same transport the event arrived on.
                    let payment = Event::new(
                        "payment.captured",
                        serde_json::json!({ "order": event.payload["order"] }),
                        EventMetadata::default().with_correlation_id(event.id.clone()),
                    );
                    billing.publish(payment).await?;
                    Ok(())
                })
            })
            .await?;
    }
    {
        let paid = Arc::clone(&paid);
        orders
            .subscribe(vec!["payment.captured".into()], move |event| {
                let paid = Arc::clone(&paid);
                Box::pin(async move {
                    println!(
                        "orders: payment captured for order {}",
                        event.payload["order"]
                    );
                    paid.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })
            })
            .await?;
    }
    while hub.stats().control_frames < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Several tasks publish through the one shared transport.
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let orders = Arc::clone(&orders);
        tasks.push(tokio::spawn(async move {
            for i in 0..5 {
                let order = worker * 100 + i;
                orders
                    .publish(Event::new(
                        "order.created",
                        serde_json::json!({ "order": order }),
                        EventMetadata::default(),
                    ))
                    .await?;
            }
            Ok::<_, WatchtowerError>(())
        }));
    }
    for task in tasks {
        task.await??;
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while paid.load(Ordering::SeqCst) < 20 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("orders: {} of 20 orders paid", paid.load(Ordering::SeqCst));
    orders.shutdown().await?;
    billing.shutdown().await?;
    hub.shutdown().await;
    if paid.load(Ordering::SeqCst) != 20 {
        return Err("not every order was paid".into());
    }
    Ok(())
}
