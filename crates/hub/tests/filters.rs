//! Per-client filters through the control protocol.

use crate::support::*;

/// Sends a control frame and waits until the hub has applied it.
async fn control(hub: &watchtower_hub::Hub, client: &mut Client, frame: &str) {
    let before = hub.stats().control_frames;
    send(client, frame).await;
    stats_until(hub, "control frame applied", |s| {
        s.control_frames == before + 1
    })
    .await;
}

/// Publishes one event per type in `published`; `subscriber` must receive
/// exactly `expected`, in order. The last published type must be expected:
/// once it arrives, every earlier frame was either delivered before it
/// (and checked here) or filtered out.
async fn check(
    publisher: &mut Client,
    subscriber: &mut Client,
    published: &[&str],
    expected: &[&str],
) {
    assert_eq!(
        published.last(),
        expected.last(),
        "test bug: see the doc comment"
    );
    for (n, event_type) in published.iter().enumerate() {
        send(publisher, &event(event_type, n as u64)).await;
    }
    for event_type in expected {
        assert_eq!(type_of(&next_text(subscriber).await), *event_type);
    }
}

#[tokio::test]
async fn subscribe_replace_and_unsubscribe_set_what_a_client_receives() {
    let hub = hub().await;
    let mut c = clients(&hub, 2).await;
    let (mut sub, mut publisher) = (c.pop().unwrap(), c.pop().unwrap());

    // A client that never sent a control frame receives everything.
    check(&mut publisher, &mut sub, &["a", "b"], &["a", "b"]).await;

    control(
        &hub,
        &mut sub,
        r#"{"type":"subscribe","event_types":["a"],"replace":true}"#,
    )
    .await;
    check(&mut publisher, &mut sub, &["b", "a"], &["a"]).await;

    control(
        &hub,
        &mut sub,
        r#"{"type":"subscribe","event_types":["b"]}"#,
    )
    .await;
    check(&mut publisher, &mut sub, &["c", "b", "a"], &["b", "a"]).await;

    control(
        &hub,
        &mut sub,
        r#"{"type":"unsubscribe","event_types":["a"]}"#,
    )
    .await;
    check(&mut publisher, &mut sub, &["a", "b"], &["b"]).await;

    control(
        &hub,
        &mut sub,
        r#"{"type":"subscribe","event_types":["c"],"replace":true}"#,
    )
    .await;
    check(&mut publisher, &mut sub, &["b", "c"], &["c"]).await;

    // `unsubscribe []`: nothing at all...
    control(&hub, &mut sub, r#"{"type":"unsubscribe","event_types":[]}"#).await;
    // ...until something is added back.
    control(
        &hub,
        &mut sub,
        r#"{"type":"subscribe","event_types":["d"]}"#,
    )
    .await;
    check(&mut publisher, &mut sub, &["c", "a", "d"], &["d"]).await;

    // `subscribe []`: everything again.
    control(&hub, &mut sub, r#"{"type":"subscribe","event_types":[]}"#).await;
    check(&mut publisher, &mut sub, &["x", "y"], &["x", "y"]).await;

    let stats = hub.stats();
    assert_eq!(stats.control_frames, 7);
    assert_eq!(stats.malformed.total(), 0);
}

#[tokio::test]
async fn a_client_that_reconnects_and_resends_its_filter_is_filtered_again() {
    let hub = hub().await;
    let mut c = clients(&hub, 2).await;
    let (mut sub, mut publisher) = (c.pop().unwrap(), c.pop().unwrap());
    let subscribe = r#"{"type":"subscribe","event_types":["wanted"],"replace":true}"#;

    control(&hub, &mut sub, subscribe).await;
    check(&mut publisher, &mut sub, &["other", "wanted"], &["wanted"]).await;

    sub.close(None).await.unwrap();
    drop(sub);
    stats_until(&hub, "the subscriber left", |s| s.clients == 1).await;

    // A new connection starts with no filter: everything.
    let mut sub = clients(&hub, 1).await.pop().unwrap();
    check(
        &mut publisher,
        &mut sub,
        &["other", "wanted"],
        &["other", "wanted"],
    )
    .await;
    // Re-sending the filter, as the transport does on every reconnect.
    control(&hub, &mut sub, subscribe).await;
    check(&mut publisher, &mut sub, &["other", "wanted"], &["wanted"]).await;
}

mod positions {
    //! A resuming client's position frames cover what it is not sent —
    //! what its filter skips and what it sent itself — at once, not after
    //! a thousand such events; and its resume is never refused for the
    //! events its filter skips.

    use tokio_tungstenite::connect_async;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::HeaderValue;
    use watchtower_core::{ControlFrame, POSITION_HEADER, Position, RESUME_HEADER};

    use crate::support::{Client, clients, event, hub, next_text, send, stats_until};

    async fn resuming(url: &str, resume: &str) -> (Client, Position) {
        let mut request = url.into_client_request().unwrap();
        request
            .headers_mut()
            .insert(RESUME_HEADER, HeaderValue::from_str(resume).unwrap());
        let (client, response) = connect_async(request).await.unwrap();
        let position = response.headers()[POSITION_HEADER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        (client, position)
    }

    /// The next position frame's seq; any event frame fails the test.
    async fn next_position(client: &mut Client) -> u64 {
        loop {
            let text = next_text(client).await;
            match ControlFrame::from_json(text.as_bytes()) {
                Some(ControlFrame::Position { seq }) => return seq,
                Some(ControlFrame::Resumed { .. }) => {}
                other => panic!("expected a position frame, got {other:?}: {text}"),
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn position_frames_cover_filtered_out_and_own_events_at_once() {
        let hub = hub().await;
        let mut publisher = clients(&hub, 1).await.remove(0);
        let (mut me, _) = resuming(&hub.url(), "new").await;
        stats_until(&hub, "both connected", |s| s.clients == 2).await;
        send(
            &mut me,
            r#"{"type":"subscribe","event_types":["a"],"replace":true}"#,
        )
        .await;
        // Its own event (seq 1), read after its filter: never sent back,
        // yet covered.
        send(&mut me, &event("a", 1)).await;
        assert_eq!(next_position(&mut me).await, 1);
        // Another's event its filter skips (seq 2): covered too.
        send(&mut publisher, &event("b", 2)).await;
        assert_eq!(next_position(&mut me).await, 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_filtered_subscriber_that_missed_one_matching_event_recovers() {
        let hub = hub().await;
        let mut publisher = clients(&hub, 1).await.remove(0);
        let (me, start) = resuming(&hub.url(), "new").await;
        drop(me);
        stats_until(&hub, "gone", |s| s.clients == 1).await;
        // 1,500 events it does not want, one it does.
        for n in 0..1_500 {
            send(&mut publisher, &event("b", n)).await;
        }
        send(&mut publisher, &event("a", 1_500)).await;
        stats_until(&hub, "relayed", |s| s.events_in == 1_501).await;
        let (mut back, _) = resuming(&hub.url(), &start.to_string()).await;
        send(
            &mut back,
            r#"{"type":"subscribe","event_types":["a"],"replace":true}"#,
        )
        .await;
        let text = next_text(&mut back).await;
        assert!(
            matches!(
                ControlFrame::from_json(text.as_bytes()),
                Some(ControlFrame::Resumed {
                    recovered: true,
                    ..
                })
            ),
            "{text}"
        );
        // Types it filtered out may come first (read before its filter
        // arrived); the one it wants comes.
        loop {
            let text = next_text(&mut back).await;
            if ControlFrame::from_json(text.as_bytes()).is_none()
                && crate::support::type_of(&text) == "a"
            {
                break;
            }
        }
    }
}

/// The hub states its filter limits in every upgrade answer, so a client
/// can refuse a subscription the hub would close it for, before sending.
#[tokio::test]
async fn the_upgrade_answer_states_the_hubs_filter_limits() {
    use tokio_tungstenite::connect_async;
    use watchtower_core::{FILTER_LIMITS_HEADER, FilterLimits};

    let mut config = watchtower_hub::HubConfig::default();
    config.max_filter_types = 3;
    config.max_event_type_len = 20;
    config.max_filter_bytes = 40;
    let hub = hub_with(config).await;
    let (_client, response) = connect_async(hub.url()).await.unwrap();
    let stated = response.headers()[FILTER_LIMITS_HEADER].to_str().unwrap();
    assert_eq!(
        FilterLimits::parse_header(stated),
        Some(FilterLimits::new(3, 20, 40))
    );
}
