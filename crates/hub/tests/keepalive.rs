//! Keepalive: silent clients are dropped, live ones stay.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use watchtower_hub::HubConfig;

use crate::support::*;

#[tokio::test]
async fn a_client_that_goes_silent_after_the_handshake_is_dropped() {
    let mut config = HubConfig::default();
    // Pings often; a generous pong timeout keeps a busy test machine from
    // making the live client look dead too.
    config.ping_interval = Duration::from_millis(100);
    config.pong_timeout = Duration::from_secs(1);
    let hub = hub_with(config).await;

    // A live client: reading answers the hub's pings.
    let mut live = clients(&hub, 1).await.pop().unwrap();
    let pings = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&pings);
    let reader = tokio::spawn(async move {
        while let Some(Ok(message)) = live.next().await {
            if let Message::Ping(_) = message {
                seen.fetch_add(1, SeqCst);
            }
        }
    });

    // A raw TCP client: completes the upgrade, then never sends a byte.
    let mut raw = raw_upgrade(&hub).await;
    stats_until(&hub, "raw client connected", |s| s.clients == 2).await;

    let stats = stats_until(&hub, "silent client dropped", |s| s.disconnected_dead == 1).await;
    assert_eq!(stats.clients, 1);
    // The hub closed the socket: reading reaches the end (after the pings
    // it sent).
    let eof = timeout(LIMIT, async {
        let mut buf = [0u8; 1024];
        while let Ok(1..) = raw.read(&mut buf).await {}
    })
    .await;
    assert!(eof.is_ok(), "the hub kept the silent connection open");

    // The live client, connected before the silent one, answered ping after
    // ping all along.
    until("the live client saw many pings", || {
        pings.load(SeqCst) >= 10
    })
    .await;
    let stats = hub.stats();
    assert_eq!((stats.clients, stats.disconnected_dead), (1, 1));
    reader.abort();
}
