//! Issue 27, the stream's identity: nats-server comes back on a wiped
//! store under running hubs. The stream made anew is a new epoch; every
//! hub goes on with it without a restart, and its resuming clients are
//! told `epoch` once, never carried across.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::pull::OrderedConfig;
use futures_util::StreamExt;
use tokio::time::timeout;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;
use watchtower_core::{ControlFrame, NotRecoveredReason, Position, frame_key};
use watchtower_hub::Hub;
use watchtower_test_support::NatsServer;

use crate::faults::{health, metric, signal, stream_events_counting};
use crate::group::{once_in_order, stream_name, two_roomy_hubs};
use crate::support::LIMIT;

/// What a resuming subscriber saw: every resume answer after its first,
/// and every event, each with the epoch it was delivered in and its
/// place in the log (so events after an answer can be told apart).
#[derive(Default)]
struct Seen {
    /// `(events received before it, the answer's position, recovered or
    /// why not)`.
    answers: Vec<(usize, Position, Result<u64, NotRecoveredReason>)>,
    /// The epoch of its first answer.
    first_epoch: u64,
    events: Vec<(u64, u64)>,
}

/// A subscriber speaking the resume protocol on a raw socket, as the
/// transport does: it keeps its position from the position frames and the
/// key of the last event after it, and resumes on the same hub whenever
/// its connection ends.
fn subscribe(
    url: String,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut resume = "new".to_string();
        let (mut epoch, mut seq, mut last) = (0u64, 0u64, None::<u64>);
        let mut first = true;
        while !stop.load(Relaxed) {
            let Ok((mut ws, _)) = connect_async(format!("{url}?resume={resume}")).await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            loop {
                let next = match timeout(Duration::from_millis(200), ws.next()).await {
                    Err(_) if stop.load(Relaxed) => return,
                    Err(_) => continue,
                    Ok(next) => next,
                };
                let Some(Ok(Message::Text(text))) = next else {
                    match next {
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                        _ => break,
                    }
                };
                match ControlFrame::from_json(text.as_bytes()) {
                    Some(ControlFrame::Resumed {
                        position,
                        recovered,
                        replayed,
                        reason,
                        ..
                    }) => {
                        let position: Position = position.parse().unwrap();
                        let outcome = if recovered {
                            Ok(replayed)
                        } else {
                            Err(reason.unwrap_or(NotRecoveredReason::Epoch))
                        };
                        if !recovered {
                            // Not recovered: the client starts over at
                            // the hub's position.
                            (epoch, seq, last) = (position.epoch(), position.seq(), None);
                        }
                        let mut seen = seen.lock().unwrap();
                        if std::mem::take(&mut first) {
                            seen.first_epoch = position.epoch();
                        } else {
                            let at = seen.events.len();
                            seen.answers.push((at, position, outcome));
                        }
                    }
                    Some(ControlFrame::Position { seq: at }) => (seq, last) = (at, None),
                    Some(_) => {}
                    None => {
                        let e: serde_json::Value = serde_json::from_str(&text).unwrap();
                        last = Some(frame_key(text.as_bytes()));
                        seen.lock().unwrap().events.push((
                            e["payload"]["p"].as_u64().unwrap(),
                            e["payload"]["n"].as_u64().unwrap(),
                        ));
                    }
                }
            }
            resume = Position::new(epoch, seq).after(last).to_string();
        }
    })
}

/// The events the stream holds now, in its order: `(seq, (p, n))`.
async fn stream_contents(nats: &NatsServer, stream: &str) -> Vec<(u64, (u64, u64))> {
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let mut s = js.get_stream(stream).await.unwrap();
    let last = s.info().await.unwrap().state.last_sequence;
    let consumer = s.create_consumer(OrderedConfig::default()).await.unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut out = Vec::new();
    while out.last().is_none_or(|(seq, _)| *seq < last) {
        let message = timeout(LIMIT, messages.next())
            .await
            .expect("the stream read within the limit")
            .unwrap()
            .unwrap();
        let seq = message.info().unwrap().stream_sequence;
        let e: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        out.push((
            seq,
            (
                e["payload"]["p"].as_u64().unwrap(),
                e["payload"]["n"].as_u64().unwrap(),
            ),
        ));
    }
    out
}

/// Polls `hub`'s `/healthz` until it says 200.
async fn healthy_again(hub: &Hub) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    while health(hub.local_addr()).await != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still unhealthy: {:?}",
            hub.stats()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// nats-server is killed and comes back on a wiped store while two hubs
/// run, each with a resuming subscriber and an at-least-once publisher
/// that goes on throughout. Both hubs go on with the stream made anew
/// without a restart (healthy again, the new stream counted in
/// `/metrics`); each subscriber is told `epoch` once and from then on gets
/// exactly what the new stream holds after the position it was answered,
/// in the stream's order; every event acknowledged after the wipe is in
/// the new stream once, in its publisher's order. Before: both hubs said
/// 503 ("restart this hub") for good and delivered nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_store_is_adopted_live_as_a_new_epoch() {
    let Some(mut nats) = NatsServer::start_or_skip("a_wiped_store_is_adopted_live").await else {
        return;
    };
    let stream = stream_name();
    let (a, b) = two_roomy_hubs(&nats, &stream).await;
    let stop = Arc::new(AtomicBool::new(false));
    let seen = [Arc::default(), Arc::default()];
    let subscribers: Vec<_> = [a.url(), b.url()]
        .into_iter()
        .zip(&seen)
        .map(|(url, seen)| subscribe(url, Arc::clone(seen), Arc::clone(&stop)))
        .collect();
    crate::support::stats_until(&a, "A's subscriber", |s| s.clients == 1).await;
    crate::support::stats_until(&b, "B's subscriber", |s| s.clients == 1).await;
    const N: u64 = 1_500;
    let acked = [Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0))];
    let acks: [Arc<AtomicU64>; 2] = [Arc::default(), Arc::default()];
    let publishers: Vec<_> = [(a.url(), 1), (b.url(), 2)]
        .into_iter()
        .zip(acked.iter().zip(&acks))
        .map(|((url, p), (acked, acks))| {
            let counting =
                stream_events_counting(url, p, N, 100, Arc::clone(acked), Arc::clone(acks));
            tokio::spawn(counting)
        })
        .collect();
    let deadline = tokio::time::Instant::now() + LIMIT;
    while acked.iter().any(|a| a.load(Relaxed) < 300) {
        assert!(tokio::time::Instant::now() < deadline, "publishers stalled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // NATS stops answering. Once each hub says so (no answer for 3 s: it
    // has taken every answer the server sent, and sends no ack until NATS
    // answers again) and its publisher has read every ack it sent, an ack
    // read from here on is for an event the new stream stored. Events
    // sent and not stored stay in flight.
    signal(&nats, "-STOP");
    for (hub, acks) in [(&a, &acks[0]), (&b, &acks[1])] {
        let deadline = tokio::time::Instant::now() + LIMIT;
        while hub.stats().backplane_down == 0 || acks.load(Relaxed) < hub.stats().acks_sent {
            assert!(
                tokio::time::Instant::now() < deadline,
                "acks read {acks:?}; {:?}",
                hub.stats()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let after_wipe = acked.each_ref().map(|a| a.load(Relaxed));
    nats.kill();
    std::fs::remove_dir_all(nats.store().join("js")).unwrap();
    nats.restart().await;
    for publisher in publishers {
        publisher.await.unwrap();
    }
    for hub in [&a, &b] {
        healthy_again(hub).await;
        let stats = hub.stats();
        assert_eq!(
            stats.backplane_new_streams, 1,
            "missed {}, delivered {}",
            stats.backplane_missed, stats.backplane_delivered
        );
        let counted = metric(hub.local_addr(), "backplane_new_streams_total").await;
        assert_eq!(counted, 1);
    }
    let held = stream_contents(&nats, &stream).await;
    let events: Vec<(u64, u64)> = held.iter().map(|(_, e)| *e).collect();
    once_in_order(&events);
    for (p, from) in [(1, after_wipe[0]), (2, after_wipe[1])] {
        for n in from..N {
            assert!(
                events.contains(&(p, n)),
                "p{p}-{n}, acknowledged after the wipe ({after_wipe:?}), is not in the new stream"
            );
        }
    }
    for (hub, seen) in [(&a, &seen[0]), (&b, &seen[1])] {
        let (at, position, start) = {
            let seen = seen.lock().unwrap();
            assert_eq!(seen.answers.len(), 1, "one resume: {:?}", seen.answers);
            let (at, position, outcome) = seen.answers[0];
            assert_eq!(outcome, Err(NotRecoveredReason::Epoch));
            assert_ne!(position.epoch(), seen.first_epoch, "a new epoch");
            once_in_order(&seen.events[..at]);
            (at, position, position.seq() + 1)
        };
        // From the position it was answered (or, once a position of an
        // older epoch is replayed the new one, from the new stream's
        // first event): everything the new stream holds, in order.
        let want: Vec<(u64, u64)> = held
            .iter()
            .filter(|(seq, _)| *seq >= start)
            .map(|(_, e)| *e)
            .collect();
        let deadline = tokio::time::Instant::now() + LIMIT;
        loop {
            let got = seen.lock().unwrap().events[at..].to_vec();
            if got.len() >= want.len() || tokio::time::Instant::now() >= deadline {
                let all: Vec<(u64, u64)> = held.iter().map(|(_, e)| *e).collect();
                assert!(
                    got == want || got == all,
                    "at {position}: got {} events, the new stream holds {} after it ({} in all); {:?}",
                    got.len(),
                    want.len(),
                    all.len(),
                    hub.stats()
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    stop.store(true, Relaxed);
    for subscriber in subscribers {
        subscriber.await.unwrap();
    }
}
