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
