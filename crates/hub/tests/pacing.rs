//! The handshake budget per address (`handshakes_per_second_per_peer`):
//! a client upgrading in a loop is answered 429 past its budget, after a
//! delay, while clients of other addresses (connected or new) are not
//! touched. 127.0.0.x are all loopback on Linux, so each is a peer of its
//! own.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::net::TcpSocket;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, http::StatusCode};
use watchtower_hub::{Hub, HubConfig};

use crate::support::*;

/// A client connecting from `ip` (a loopback address of its own).
async fn client_from(hub: &Hub, ip: &str) -> Result<Client, tungstenite::Error> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
    let tcp = socket.connect(hub.local_addr()).await.unwrap();
    let plain = tokio_tungstenite::MaybeTlsStream::Plain(tcp);
    tokio_tungstenite::client_async(hub.url(), plain)
        .await
        .map(|(ws, _)| ws)
}

fn paced(rate: u32, burst: u32) -> HubConfig {
    let mut config = HubConfig::default();
    config.handshakes_per_second_per_peer = rate;
    config.handshake_burst_per_peer = burst;
    config
}

/// What the looping client saw.
#[derive(Default)]
struct Loop {
    upgraded: AtomicU64,
    refused_429: AtomicU64,
    stop: AtomicBool,
}

#[tokio::test]
async fn a_peer_looping_upgrades_past_its_budget_gets_429_while_others_are_untouched() {
    const BURST: u32 = 5;
    const EVENTS: u64 = 300;
    let hub = hub_with(paced(1, BURST)).await;
    let mut subscriber = client_from(&hub, "127.0.0.2").await.unwrap();
    let mut publisher = client_from(&hub, "127.0.0.3").await.unwrap();
    stats_until(&hub, "pair connected", |s| s.clients == 2).await;

    // The attacker upgrades and closes in a loop, from 127.0.0.1.
    let tally = Arc::new(Loop::default());
    let attacker = tokio::spawn({
        let tally = Arc::clone(&tally);
        let url = hub.url();
        async move {
            let mut first_refusal = None;
            while !tally.stop.load(Relaxed) {
                let start = Instant::now();
                match tokio_tungstenite::connect_async(url.as_str()).await {
                    Ok((mut ws, _)) => {
                        tally.upgraded.fetch_add(1, Relaxed);
                        let _ = ws.close(None).await;
                    }
                    Err(tungstenite::Error::Http(response)) => {
                        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
                        let retry = response.headers().get("retry-after").unwrap();
                        assert_eq!(retry, "1", "a token is back within a second");
                        let body = String::from_utf8_lossy(response.body().as_deref().unwrap());
                        assert!(body.contains("too many connections"), "{body}");
                        tally.refused_429.fetch_add(1, Relaxed);
                        first_refusal.get_or_insert(start.elapsed());
                    }
                    Err(other) => panic!("the looping client got {other}"),
                }
            }
            first_refusal
        }
    });

    // The pair goes on while the attacker loops, and until it was refused
    // a few times.
    let reader = tokio::spawn(async move {
        for n in 0..EVENTS {
            let frame = next_text(&mut subscriber).await;
            let value: serde_json::Value = serde_json::from_str(&frame).unwrap();
            assert_eq!(value["payload"]["n"], n, "in order, none missing");
        }
        subscriber
    });
    for n in 0..EVENTS {
        send(&mut publisher, &event("t", n)).await;
        if n % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    until("the looping client refused three times", || {
        tally.refused_429.load(Relaxed) >= 3
    })
    .await;
    let mut subscriber = reader.await.unwrap();
    tally.stop.store(true, Relaxed);
    let first_refusal = attacker.await.unwrap().unwrap();

    // Held before its answer, so a tight loop makes about one attempt a
    // second: the tarpit sleeps a whole second from accept.
    assert!(first_refusal >= Duration::from_secs(1), "{first_refusal:?}");
    let upgraded = tally.upgraded.load(Relaxed);
    assert!(upgraded >= u64::from(BURST), "its burst first: {upgraded}");
    let stats = hub.stats();
    assert_eq!(
        stats.connections_paced,
        tally.refused_429.load(Relaxed),
        "every refusal counted, each answered 429: {stats:?}"
    );
    assert_eq!(
        stats.handshake_failures, 0,
        "refused before any handshake: {stats:?}"
    );

    // Another address still gets in, and the pair still relays.
    let mut late = client_from(&hub, "127.0.0.4").await.unwrap();
    stats_until(&hub, "late client connected", |s| s.clients == 3).await;
    send(&mut publisher, &event("t", EVENTS)).await;
    assert_eq!(type_of(&next_text(&mut subscriber).await), "t");
    assert_eq!(type_of(&next_text(&mut late).await), "t");
}

#[tokio::test]
async fn a_budget_of_zero_is_off() {
    // A burst of one would refuse the second connection if pacing were on.
    let hub = hub_with(paced(0, 1)).await;
    for _ in 0..50 {
        let mut ws = client_from(&hub, "127.0.0.5").await.unwrap();
        let _ = ws.close(None).await;
    }
    let stats = stats_until(&hub, "every upgrade counted", |s| s.connections_total == 50).await;
    assert_eq!(stats.connections_paced, 0, "{stats:?}");
}
