//! Bad input from the server is counted by reason and never costs a valid
//! event or a healthy connection (except oversize, which RFC 6455 closes).

use tokio_tungstenite::tungstenite::Message;
use watchtower_test_support::{RawServer, wait_until};
use watchtower_websocket::prelude::*;

use crate::support::{Collector, LIMIT, event, fast};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_malformed_frame_is_counted_and_the_next_event_arrives() {
    let server = RawServer::start().await;
    let transport = fast(&server.url(), 3).connect().await.unwrap();
    let got = Collector::default();
    transport.subscribe(vec![], got.handler()).await.unwrap();
    wait_until("connected", LIMIT, || server.connections() == 1).await;

    server.send_text("not json at all");
    server.send_text(r#"{"id":"e1","event_type":"t","payload":"#); // truncated
    server.send_text("[1,2,3]");
    server.send_text(r#"{"event_type":"t"}"#);
    server.send_text(r#"{"id":"","event_type":"t"}"#);
    server.send_text(r#"{"id":5,"event_type":"t"}"#);
    server.send_text(r#"{"id":"e","event_type":"t","metadata":{"timestamp":"soon"}}"#);
    server.send(Message::Binary(vec![0xff, 0xfe, 0x00].into()));
    server.send_text(format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)));
    server.send_text(r#"{"type":"subscribe","event_types":[]}"#); // a control frame, not an error
    server.send_event(&event("t", 42));

    wait_until("the valid event", LIMIT, || got.len() == 1).await;
    assert_eq!(got.ns(), vec![42]);
    let stats = transport.connection_stats();
    let m = stats.malformed;
    assert_eq!(m.invalid_json, 3, "{m:?}"); // garbage, truncated, too deep
    assert_eq!(m.not_an_object, 1, "{m:?}");
    assert_eq!(m.missing_field, 1, "{m:?}");
    assert_eq!(m.empty_field, 1, "{m:?}");
    assert_eq!(m.wrong_type, 2, "{m:?}");
    assert_eq!(m.invalid_utf8, 1, "{m:?}");
    assert_eq!(m.total(), 9);
    assert_eq!(stats.control_frames_in, 1);
    assert_eq!(stats.connects, 1, "the connection stayed up");
    assert!(transport.state().is_connected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_message_closes_with_1009_and_reconnects() {
    let server = RawServer::start().await;
    let transport = fast(&server.url(), 1_000)
        .max_message_size(1024)
        .connect()
        .await
        .unwrap();
    let got = Collector::default();
    transport.subscribe(vec![], got.handler()).await.unwrap();
    wait_until("connected", LIMIT, || server.connections() == 1).await;

    server.send_text(format!(
        r#"{{"id":"big","event_type":"t","payload":"{}"}}"#,
        "x".repeat(4096)
    ));
    wait_until("closed with 1009", LIMIT, || {
        server.close_codes().contains(&Some(1009))
    })
    .await;
    wait_until("reconnected", LIMIT, || {
        server.accepted() == 2 && server.connections() == 1
    })
    .await;
    assert_eq!(transport.connection_stats().oversize, 1);

    server.send_event(&event("t", 1));
    wait_until("events flow again", LIMIT, || got.len() == 1).await;

    // Our own oversize events are refused before they are queued.
    let big = Event::new(
        "t",
        serde_json::json!("y".repeat(2048)),
        EventMetadata::default(),
    );
    let e = transport.publish(big).await.unwrap_err();
    assert!(
        matches!(e, WatchtowerError::MessageTooLarge { max: 1024, .. }),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_in_a_text_frame_fails_the_connection_as_rfc_6455_says() {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let server = RawServer::start().await;
    let transport = fast(&server.url(), 1_000).connect().await.unwrap();
    let got = Collector::default();
    transport.subscribe(vec![], got.handler()).await.unwrap();
    wait_until("connected", LIMIT, || server.connections() == 1).await;
    // A text frame must be UTF-8; this one is not. RFC 6455 says the
    // receiver fails the connection (1007): counted, then reconnected.
    server.send(Message::Frame(Frame::message(
        vec![b'{', 0xff, 0xfe, b'}'],
        OpCode::Data(Data::Text),
        true,
    )));
    wait_until("reconnected", LIMIT, || {
        transport.connection_stats().reconnects == 1 && server.connections() == 1
    })
    .await;
    assert_eq!(transport.connection_stats().malformed.invalid_utf8, 1);
    server.send_event(&event("t", 1));
    wait_until("events flow again", LIMIT, || got.len() == 1).await;
}
