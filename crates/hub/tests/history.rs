//! The resume protocol on the wire, as a raw client sees it: the cursor in
//! the upgrade (header or `?resume=`), the answer in the response headers
//! and as the first frame, replayed frames byte for byte, position frames,
//! and refusals of malformed cursors.

use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::{Error, http::Response};
use watchtower_core::{
    ControlFrame, NotRecoveredReason, POSITION_HEADER, Position, RECOVERED_HEADER, RESUME_HEADER,
    parse_recovered_header,
};
use watchtower_hub::HubConfig;

use crate::support::{Client, clients, event, hub, hub_with, next_text, send, stats_until};

/// Connects presenting `resume` in the header; returns the client and the
/// upgrade response.
async fn resume_with(url: &str, resume: &str) -> (Client, Response<Option<Vec<u8>>>) {
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert(RESUME_HEADER, HeaderValue::from_str(resume).unwrap());
    connect_async(request).await.unwrap()
}

fn position_of(response: &Response<Option<Vec<u8>>>) -> Position {
    response.headers()[POSITION_HEADER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn recovered_of(response: &Response<Option<Vec<u8>>>) -> Option<Result<u64, NotRecoveredReason>> {
    let value = response.headers().get(RECOVERED_HEADER)?;
    parse_recovered_header(value.to_str().unwrap())
}

/// The next event frame; position frames on the way move `seq`.
async fn next_event(client: &mut Client, seq: &mut u64) -> String {
    loop {
        let text = next_text(client).await;
        match ControlFrame::from_json(text.as_bytes()) {
            Some(ControlFrame::Position { seq: s }) => *seq = s,
            Some(other) => panic!("unexpected control frame {other:?}"),
            None => return text,
        }
    }
}

async fn next_control(client: &mut Client) -> ControlFrame {
    let text = next_text(client).await;
    ControlFrame::from_json(text.as_bytes()).unwrap_or_else(|| panic!("not control: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_replays_byte_for_byte_then_marks_the_position() {
    let hub = hub().await;
    let mut publisher = clients(&hub, 1).await.remove(0);
    // A plain client gets the position header and nothing else new.
    let (mut plain, response) = connect_async(hub.url()).await.unwrap();
    let start = position_of(&response);
    assert_eq!(start.seq(), 0);
    assert_eq!(recovered_of(&response), None);

    let (mut fresh, response) = resume_with(&hub.url(), "new").await;
    assert_eq!(position_of(&response), start);
    assert_eq!(
        next_control(&mut fresh).await,
        ControlFrame::Resumed {
            position: start.to_string(),
            recovered: false,
            replayed: 0,
            reason: None,
        }
    );
    stats_until(&hub, "three clients", |s| s.clients == 3).await;

    let frames: Vec<String> = (0..3).map(|n| event("t", n)).collect();
    for f in &frames {
        send(&mut publisher, f).await;
    }
    let mut seq = 0;
    for f in &frames {
        assert_eq!(&next_text(&mut plain).await, f, "byte for byte");
        assert_eq!(&next_event(&mut fresh, &mut seq).await, f, "byte for byte");
    }
    // Position frames only to the client that asked; it has read up to 3.
    while seq < 3 {
        match next_control(&mut fresh).await {
            ControlFrame::Position { seq: s } => seq = s,
            other => panic!("expected a position frame, got {other:?}"),
        }
    }
    assert_eq!(seq, 3);

    // A client at position 1 gets events 2 and 3, byte for byte, then 3.
    let at1 = Position::new(start.epoch(), 1);
    let (mut back, response) = resume_with(&hub.url(), &at1.to_string()).await;
    assert_eq!(position_of(&response).seq(), 3);
    assert_eq!(recovered_of(&response), Some(Ok(2)));
    assert!(matches!(
        next_control(&mut back).await,
        ControlFrame::Resumed {
            recovered: true,
            replayed: 2,
            ..
        }
    ));
    assert_eq!(next_text(&mut back).await, frames[1]);
    assert_eq!(next_text(&mut back).await, frames[2]);
    assert_eq!(
        next_control(&mut back).await,
        ControlFrame::Position { seq: 3 }
    );
    let stats = hub.stats();
    assert_eq!((stats.resumes_recovered, stats.events_replayed), (1, 2));
    assert_eq!(stats.history_events, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cursor_may_come_in_the_query_for_browsers() {
    let hub = hub().await;
    let (_, response) = connect_async(hub.url()).await.unwrap();
    let start = position_of(&response);
    // `encodeURIComponent` escapes the colon.
    let query = start.to_string().replace(':', "%3A");
    let (mut client, response) = connect_async(format!("{}?resume={query}", hub.url()))
        .await
        .unwrap();
    assert_eq!(recovered_of(&response), Some(Ok(0)));
    assert!(matches!(
        next_control(&mut client).await,
        ControlFrame::Resumed {
            recovered: true,
            ..
        }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_or_repeated_cursors_are_refused_with_400() {
    let hub = hub().await;
    for bad in ["garbage", "12:x", "1:2:3:4"] {
        let mut request = hub.url().into_client_request().unwrap();
        request
            .headers_mut()
            .insert(RESUME_HEADER, HeaderValue::from_str(bad).unwrap());
        match connect_async(request).await {
            Err(Error::Http(response)) => assert_eq!(response.status(), StatusCode::BAD_REQUEST),
            other => panic!("{bad}: expected 400, got {other:?}"),
        }
    }
    let mut request = format!("{}?resume=new", hub.url())
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert(RESUME_HEADER, HeaderValue::from_static("new"));
    match connect_async(request).await {
        Err(Error::Http(response)) => assert_eq!(response.status(), StatusCode::BAD_REQUEST),
        other => panic!("two cursors: expected 400, got {other:?}"),
    }
    assert_eq!(hub.stats().clients, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_history_off_the_hub_answers_nothing() {
    let mut config = HubConfig::default();
    config.history_size = 0;
    let hub = hub_with(config).await;
    let (_, response) = resume_with(&hub.url(), "new").await;
    assert!(response.headers().get(POSITION_HEADER).is_none());
    assert!(response.headers().get(RECOVERED_HEADER).is_none());
}

/// A long replay carries position frames inside it, not only at its end,
/// so a connection lost halfway does not send the client back to where
/// the replay began.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_replay_marks_the_position_as_it_goes() {
    let hub = hub().await;
    let mut publisher = clients(&hub, 1).await.remove(0);
    let (_, response) = connect_async(hub.url()).await.unwrap();
    let start = position_of(&response);
    for n in 0..1_000 {
        send(&mut publisher, &event("t", n)).await;
    }
    stats_until(&hub, "relayed", |s| s.events_in == 1_000).await;
    let (mut back, response) = resume_with(&hub.url(), &start.to_string()).await;
    assert_eq!(recovered_of(&response), Some(Ok(1_000)));
    assert!(matches!(
        next_control(&mut back).await,
        ControlFrame::Resumed {
            replayed: 1_000,
            ..
        }
    ));
    let mut seq = 0;
    let mut marks_inside = 0;
    for n in 0..1_000u64 {
        let before = seq;
        let frame = next_event(&mut back, &mut seq).await;
        let value: serde_json::Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(value["payload"]["n"], n);
        if seq != before && seq < 1_000 {
            marks_inside += 1;
        }
    }
    assert!(
        marks_inside >= 2,
        "{marks_inside} position frames inside the replay"
    );
}

/// The `n` in an event frame's payload.
fn n_of(frame: &str) -> u64 {
    let value: serde_json::Value = serde_json::from_str(frame).unwrap();
    value["payload"]["n"].as_u64().unwrap()
}

/// A subscriber that comes back after missing 3,000 events (three times
/// what one replay used to be allowed, `max_replay`) gets every one of
/// them, in order, from a hub with default settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_recovers_however_many_events_the_history_holds() {
    let hub = hub().await;
    let mut publisher = clients(&hub, 1).await.remove(0);
    let (_, response) = connect_async(hub.url()).await.unwrap();
    let start = position_of(&response);
    for n in 0..3_000 {
        send(&mut publisher, &event("t", n)).await;
    }
    stats_until(&hub, "relayed", |s| s.events_in == 3_000).await;
    let (mut back, response) = resume_with(&hub.url(), &start.to_string()).await;
    assert_eq!(recovered_of(&response), Some(Ok(3_000)));
    assert!(matches!(
        next_control(&mut back).await,
        ControlFrame::Resumed {
            recovered: true,
            replayed: 3_000,
            ..
        }
    ));
    let mut seq = 0;
    for n in 0..3_000 {
        assert_eq!(n_of(&next_event(&mut back, &mut seq).await), n);
    }
    // Live events follow the catch-up, with nothing missing or repeated.
    send(&mut publisher, &event("t", 3_000)).await;
    assert_eq!(n_of(&next_event(&mut back, &mut seq).await), 3_000);
}

/// A resuming subscriber that reads nothing while more than its queue
/// budget flows (14 MiB, default `client_queue_bytes` 8 MiB) is neither
/// dropped from nor closed: it lags inside the history, then gets every
/// event, in order, from a hub with default settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resuming_subscriber_that_stops_reading_lags_inside_the_history() {
    let hub = hub().await;
    let mut publisher = clients(&hub, 1).await.remove(0);
    // A 4 KiB receive buffer: the hub's writes back up at once.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(hub.local_addr()).await.unwrap();
    let mut request = hub.url().into_client_request().unwrap();
    request
        .headers_mut()
        .insert(RESUME_HEADER, HeaderValue::from_static("new"));
    let (mut slow, _) =
        tokio_tungstenite::client_async(request, tokio_tungstenite::MaybeTlsStream::Plain(tcp))
            .await
            .unwrap();
    stats_until(&hub, "both connected", |s| s.clients == 2).await;
    let pad = "x".repeat(2048);
    let big = |n: u64| {
        watchtower_core::Event::new(
            "t",
            serde_json::json!({ "n": n, "pad": pad }),
            watchtower_core::EventMetadata::default(),
        )
        .to_json()
        .unwrap()
    };
    const EVENTS: u64 = 7_000;
    for n in 0..EVENTS {
        send(&mut publisher, &big(n)).await;
    }
    stats_until(&hub, "relayed", |s| s.events_in == EVENTS).await;
    assert!(matches!(
        next_control(&mut slow).await,
        ControlFrame::Resumed { .. }
    ));
    let mut seq = 0;
    for n in 0..EVENTS {
        assert_eq!(n_of(&next_event(&mut slow, &mut seq).await), n);
    }
    let stats = hub.stats();
    assert_eq!((stats.closed_to_resume, stats.dropped_frames), (0, 0));
}
