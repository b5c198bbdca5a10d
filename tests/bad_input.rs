//! Bad input, generated: a real server sends the client (and a raw client
//! sends the hub) thousands of arbitrary frames — random text and bytes,
//! truncated JSON, deep nesting, huge strings, wrong types, control frames,
//! fragmented messages — with valid events in between. Nothing panics,
//! every bad frame is counted by its reason, and every valid event arrives,
//! in order.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::{Bytes, Message};
use watchtower_core::{ControlFrame, DecodeErrorKind, Event};
use watchtower_hub::Hub;
use watchtower_test_support::{RawServer, wait_until};
use watchtower_websocket::MalformedCounts;

use crate::support::{Collector, LIMIT, event, fast};

/// One thing the peer sends.
#[derive(Debug, Clone)]
enum Sent {
    /// A valid event carrying `n`.
    Valid(u64),
    /// A valid event whose payload is a long string.
    Huge(u64, usize),
    /// A text frame with arbitrary (valid UTF-8) content.
    Text(String),
    /// A binary frame with arbitrary bytes.
    Binary(Vec<u8>),
    /// A valid event cut short.
    Truncated(usize),
    /// JSON nested this deep.
    Deep(usize),
    /// Objects with fields of the wrong type.
    WrongType(usize),
    /// A control frame of the hub protocol.
    Control,
    /// A ping or pong with this payload (not a data frame).
    PingPong(bool, Vec<u8>),
    /// A valid event carrying `n`, split into this many fragments.
    Fragmented(u64, usize),
}

fn sent() -> impl Strategy<Value = Sent> {
    prop_oneof![
        4 => any::<u64>().prop_map(|n| Sent::Valid(n % 1_000_000)),
        1 => (any::<u64>(), 10_000usize..100_000).prop_map(|(n, len)| Sent::Huge(n % 1_000_000, len)),
        2 => ".{0,200}".prop_map(Sent::Text),
        2 => proptest::collection::vec(any::<u8>(), 0..300).prop_map(Sent::Binary),
        2 => (0usize..200).prop_map(Sent::Truncated),
        1 => (1usize..400).prop_map(Sent::Deep),
        2 => (0usize..WRONG_TYPES.len()).prop_map(Sent::WrongType),
        1 => Just(Sent::Control),
        1 => (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..125)).prop_map(|(p, b)| Sent::PingPong(p, b)),
        2 => (any::<u64>(), 2usize..6).prop_map(|(n, k)| Sent::Fragmented(n % 1_000_000, k)),
    ]
}

const WRONG_TYPES: [&str; 7] = [
    r#"{"id":5,"event_type":"t"}"#,
    r#"{"id":"x","event_type":["t"]}"#,
    r#"{"id":"x","event_type":"t","metadata":7}"#,
    r#"{"id":"x","event_type":"t","metadata":{"timestamp":"not a time"}}"#,
    r#"{"id":"x","event_type":"t","metadata":{"source":{"a":1}}}"#,
    r#"{"id":"","event_type":"t"}"#,
    r#"{"event_type":"t"}"#,
];

/// The `n` of an event, or `NO_N` for a valid event without one (a deeply
/// nested payload that is still within the decoder's limit).
fn n_of(event: &Event) -> u64 {
    event.payload["n"].as_u64().unwrap_or(NO_N)
}

const NO_N: u64 = u64::MAX;

/// What the client must make of a data frame: an event, a control frame,
/// or a malformed frame of one reason. The model is the core decoder, the
/// contract the transport promises to apply.
enum Expect {
    Event(u64),
    Control,
    Malformed(DecodeErrorKind),
}

fn expect(data: &[u8]) -> Expect {
    match Event::from_json(data) {
        Ok(event) => Expect::Event(n_of(&event)),
        Err(e) if ControlFrame::from_json(data).is_some() => {
            let _ = e;
            Expect::Control
        }
        Err(e) => Expect::Malformed(e.kind()),
    }
}

/// The frames for one `Sent`, and the data they carry (None: control).
fn frames(s: &Sent) -> (Vec<Message>, Option<Vec<u8>>) {
    let text = |t: String| (vec![Message::Text(t.clone().into())], Some(t.into_bytes()));
    match s {
        Sent::Valid(n) => text(event("t", *n).to_json().unwrap()),
        Sent::Huge(n, len) => {
            let mut e = event("t", *n);
            e.payload["blob"] = serde_json::Value::String("x".repeat(*len));
            text(e.to_json().unwrap())
        }
        Sent::Text(t) => text(t.clone()),
        Sent::Binary(b) => (vec![Message::Binary(b.clone().into())], Some(b.clone())),
        Sent::Truncated(cut) => {
            let full = event("t", 0).to_json().unwrap();
            let cut = (*cut).min(full.len() - 1);
            text(full[..cut].to_string())
        }
        Sent::Deep(depth) => text(format!(
            r#"{{"id":"d","event_type":"t","payload":{}{}}}"#,
            "[".repeat(*depth),
            "]".repeat(*depth)
        )),
        Sent::WrongType(i) => text(WRONG_TYPES[*i].to_string()),
        Sent::Control => text(r#"{"type":"subscribe","event_types":[]}"#.to_string()),
        Sent::PingPong(ping, payload) => {
            let message = if *ping {
                Message::Ping(Bytes::from(payload.clone()))
            } else {
                Message::Pong(Bytes::from(payload.clone()))
            };
            (vec![message], None)
        }
        Sent::Fragmented(n, k) => {
            let data = event("t", *n).to_json().unwrap().into_bytes();
            let size = data.len().div_ceil(*k);
            let chunks: Vec<&[u8]> = data.chunks(size).collect();
            let last = chunks.len() - 1;
            let frames = chunks
                .iter()
                .enumerate()
                .map(|(i, chunk)| {
                    let opcode = OpCode::Data(if i == 0 { Data::Text } else { Data::Continue });
                    Message::Frame(Frame::message(
                        Bytes::copy_from_slice(chunk),
                        opcode,
                        i == last,
                    ))
                })
                .collect();
            (frames, Some(data))
        }
    }
}

/// The model's account of a run.
#[derive(Default)]
struct Model {
    events: Vec<u64>,
    control: u64,
    malformed: MalformedCounts,
    data_frames: u64,
}

fn model(sent: &[Sent]) -> Model {
    let mut m = Model::default();
    for s in sent {
        if let (_, Some(data)) = frames(s) {
            m.data_frames += 1;
            match expect(&data) {
                Expect::Event(n) => m.events.push(n),
                Expect::Control => m.control += 1,
                Expect::Malformed(kind) => m.malformed.record(kind),
            }
        }
    }
    m
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// At least 10,000 frames per run: 16 cases of 600–800 (the soak runs
/// more cases).
fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

const SENTINEL: u64 = 9_999_999;

#[test]
fn the_client_counts_every_bad_frame_and_delivers_every_valid_event() {
    client_run(16);
}

#[test]
#[ignore = "soak: run with `cargo xtask soak`"]
fn soak_bad_input_client() {
    client_run(400);
}

fn client_run(cases: u32) {
    let rt = runtime();
    let total = std::cell::Cell::new(0usize);
    runner(cases)
        .run(&proptest::collection::vec(sent(), 600..800), |sent| {
            total.set(total.get() + sent.len());
            rt.block_on(client_case(sent));
            Ok(())
        })
        .unwrap();
    assert!(total.get() >= 10_000, "only {} frames", total.get());
}

async fn client_case(sent: Vec<Sent>) {
    let server = RawServer::start().await;
    let transport = fast(&server.url(), 3)
        .mailbox_size(1_000)
        .keepalive(Duration::from_secs(30), Duration::from_secs(30))
        .connect()
        .await
        .unwrap();
    let got = Collector::default();
    transport.subscribe(vec![], got.handler()).await.unwrap();
    wait_until("connected", LIMIT, || server.connections() == 1).await;
    for s in &sent {
        for message in frames(s).0 {
            server.send(message);
        }
    }
    // In order: once the sentinel is handled, everything before it was read.
    server.send_event(&event("t", SENTINEL));
    let ns = || got.events().iter().map(n_of).collect::<Vec<_>>();
    wait_until("the sentinel", LIMIT, || ns().last() == Some(&SENTINEL)).await;

    let m = model(&sent);
    let stats = transport.connection_stats();
    let mut expected = m.events.clone();
    expected.push(SENTINEL);
    assert_eq!(ns(), expected, "every valid event, in order");
    assert_eq!(stats.malformed, m.malformed, "bad frames counted by reason");
    assert_eq!(stats.control_frames_in, m.control);
    assert_eq!(stats.frames_in, m.data_frames + 1);
    assert_eq!(stats.connects, 1, "no bad frame cost the connection");
}

#[test]
fn the_hub_counts_every_bad_frame_and_relays_every_valid_event() {
    hub_run(16);
}

#[test]
#[ignore = "soak: run with `cargo xtask soak`"]
fn soak_bad_input_hub() {
    hub_run(400);
}

fn hub_run(cases: u32) {
    let rt = runtime();
    let total = std::cell::Cell::new(0usize);
    runner(cases)
        .run(&proptest::collection::vec(sent(), 600..800), |sent| {
            total.set(total.get() + sent.len());
            rt.block_on(hub_case(sent));
            Ok(())
        })
        .unwrap();
    assert!(total.get() >= 10_000, "only {} frames", total.get());
}

async fn hub_case(sent: Vec<Sent>) {
    let hub = Hub::bind("127.0.0.1:0").await.unwrap();
    let (mut publisher, _) = tokio_tungstenite::connect_async(hub.url()).await.unwrap();
    let (mut subscriber, _) = tokio_tungstenite::connect_async(hub.url()).await.unwrap();
    wait_until("both connected", LIMIT, || hub.stats().clients == 2).await;
    for s in &sent {
        for message in frames(s).0 {
            publisher.feed(message).await.unwrap();
        }
    }
    publisher
        .send(Message::Text(
            event("t", SENTINEL).to_json().unwrap().into(),
        ))
        .await
        .unwrap();

    let mut relayed = Vec::new();
    while relayed.last() != Some(&SENTINEL) {
        let message = tokio::time::timeout(LIMIT, subscriber.next())
            .await
            .unwrap();
        if let Some(Ok(Message::Text(text))) = message {
            relayed.push(n_of(&Event::from_json(text.as_bytes()).unwrap()));
        }
    }
    let m = model(&sent);
    let mut expected = m.events.clone();
    expected.push(SENTINEL);
    assert_eq!(relayed, expected, "every valid event relayed, in order");
    let stats = hub.stats();
    assert_eq!(stats.malformed, m.malformed, "bad frames counted by reason");
    assert_eq!(stats.clients, 2, "the sender stays connected");
    // The raw clients do not answer a close: dropping the hub ends it at once.
    drop(hub);
}
