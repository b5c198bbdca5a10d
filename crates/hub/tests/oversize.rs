//! Oversize messages close only their sender, with 1009.

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use watchtower_hub::HubConfig;

use crate::support::*;

#[tokio::test]
async fn an_oversize_message_closes_its_sender_with_1009_only() {
    let mut config = HubConfig::default();
    config.max_message_size = 1024;
    let hub = hub_with(config).await;
    let mut c = clients(&hub, 3).await;
    let (mut listener, mut publisher, mut big) =
        (c.pop().unwrap(), c.pop().unwrap(), c.pop().unwrap());

    // Far larger than the read buffer: most of it is still unread when the
    // hub closes, which must not turn the close into a reset.
    let oversize = "x".repeat(256 * 1024);
    // The hub may close before taking it all; only the close code matters.
    let _ = big.send(Message::text(oversize)).await;
    assert_eq!(close_code(&mut big).await, CloseCode::Size);

    let stats = stats_until(&hub, "oversize sender closed", |s| s.clients == 2).await;
    assert_eq!(stats.oversize_closed, 1);
    assert_eq!(stats.events_in, 0);

    let frame = event("still.working", 1);
    send(&mut publisher, &frame).await;
    assert_eq!(next_text(&mut listener).await, frame);
}

#[tokio::test]
async fn events_read_before_an_oversize_message_are_acked_before_the_1009() {
    let mut config = HubConfig::default();
    config.max_message_size = 1024;
    let hub = hub_with(config).await;
    let mut client = clients(&hub, 1).await.pop().unwrap();
    send(&mut client, r#"{"type":"hello","acks":true}"#).await;
    stats_until(&hub, "hello applied", |s| s.control_frames == 1).await;

    // Three events and an oversize message in one write: one read burst,
    // which ends the connection before the writer runs again.
    for n in 1..=3 {
        client.feed(Message::text(event("t", n))).await.unwrap();
    }
    client.feed(Message::text("x".repeat(2048))).await.unwrap();
    client.flush().await.unwrap();

    let mut acked = 0;
    let code = loop {
        use futures_util::StreamExt;
        match tokio::time::timeout(LIMIT, client.next()).await.unwrap() {
            Some(Ok(Message::Text(text))) => {
                let frame: serde_json::Value = serde_json::from_str(&text).unwrap();
                assert_eq!(frame["type"], "ack", "{text}");
                acked = frame["upto"].as_u64().unwrap();
            }
            Some(Ok(Message::Close(Some(close)))) => break close.code,
            Some(Ok(_)) => {}
            other => panic!("expected an ack and a close, got {other:?}"),
        }
    };
    assert_eq!(code, CloseCode::Size);
    assert_eq!(
        acked, 3,
        "the three relayed events were acked before the close"
    );
}
