//! A client's identity (`Watchtower-Client-Id`, or `?client_id=` for
//! browsers) outlives its connections: the hub never sends a client its
//! own events, not in a replay after a resume and not from a frame its
//! previous connection sent late.

use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::{Error, http::Response};
use watchtower_core::{ControlFrame, POSITION_HEADER, Position, RESUME_HEADER};

use crate::support::{Client, clients, event, hub, next_text, send, stats_until};

const ID: &str = "6f1c2a3e-8f47-4d0b-9a55-0c1d2e3f4a5b";

/// Connects presenting the identity `id` and, if given, a resume cursor.
async fn connect_as(
    url: &str,
    id: &str,
    resume: Option<&str>,
) -> (Client, Response<Option<Vec<u8>>>) {
    let mut request = url.into_client_request().unwrap();
    let headers = request.headers_mut();
    headers.insert("Watchtower-Client-Id", HeaderValue::from_str(id).unwrap());
    if let Some(resume) = resume {
        headers.insert(RESUME_HEADER, HeaderValue::from_str(resume).unwrap());
    }
    connect_async(request).await.unwrap()
}

/// The `n` of the next event frame; control frames are skipped.
async fn next_n(client: &mut Client) -> u64 {
    loop {
        let text = next_text(client).await;
        if ControlFrame::from_json(text.as_bytes()).is_some() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        return value["payload"]["n"].as_u64().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_never_echoes_own_events() {
    let hub = hub().await;
    let mut other = clients(&hub, 1).await.remove(0);
    let (mut me, response) = connect_as(&hub.url(), ID, Some("new")).await;
    let start: Position = response.headers()[POSITION_HEADER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    stats_until(&hub, "both connected", |s| s.clients == 2).await;
    // Mine and another client's, interleaved; then my connection breaks
    // before I read any of them.
    for n in 0..6 {
        if n % 2 == 0 {
            send(&mut me, &event("t", n)).await;
        } else {
            send(&mut other, &event("t", n)).await;
        }
    }
    stats_until(&hub, "relayed", |s| s.events_in == 6).await;
    drop(me);
    stats_until(&hub, "gone", |s| s.clients == 1).await;

    let (mut back, _) = connect_as(&hub.url(), ID, Some(&start.to_string())).await;
    stats_until(&hub, "back", |s| s.clients == 2).await;
    send(&mut other, &event("t", 7)).await;
    // The other client's events only, replayed then live.
    for want in [1, 3, 5, 7] {
        assert_eq!(next_n(&mut back).await, want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_frame_of_an_old_connection_is_not_echoed_to_the_new_one() {
    let hub = hub().await;
    let mut c = clients(&hub, 2).await;
    let (mut watcher, mut other) = (c.pop().unwrap(), c.pop().unwrap());
    // The old connection is still open (its frames may still be read);
    // the new one came in the query, as a browser presents it.
    let (mut old, _) = connect_as(&hub.url(), ID, None).await;
    let (mut new, _) = connect_async(format!("{}?client_id={ID}", hub.url()))
        .await
        .unwrap();
    stats_until(&hub, "all connected", |s| s.clients == 4).await;
    send(&mut old, &event("t", 1)).await;
    assert_eq!(next_n(&mut watcher).await, 1, "relayed to the others");
    send(&mut other, &event("t", 2)).await;
    assert_eq!(next_n(&mut new).await, 2, "its own event was not sent back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_or_repeated_client_ids_are_refused_with_400() {
    let hub = hub().await;
    for bad in ["", "has space", &"x".repeat(129)] {
        let mut request = hub.url().into_client_request().unwrap();
        request
            .headers_mut()
            .insert("Watchtower-Client-Id", HeaderValue::from_str(bad).unwrap());
        match connect_async(request).await {
            Err(Error::Http(response)) => assert_eq!(response.status(), StatusCode::BAD_REQUEST),
            other => panic!("{bad:?}: expected 400, got {other:?}"),
        }
    }
    let mut request = format!("{}?client_id=a", hub.url())
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Watchtower-Client-Id", HeaderValue::from_static("b"));
    match connect_async(request).await {
        Err(Error::Http(response)) => assert_eq!(response.status(), StatusCode::BAD_REQUEST),
        other => panic!("two ids: expected 400, got {other:?}"),
    }
    assert_eq!(hub.stats().clients, 0);
}
