//! The in-process clients, through the public API (`watchtower-websocket`):
//! at-least-once publishers that number their events, subscribers with
//! and without filters, and a client that does both.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::sync::watch;
use watchtower_websocket::{
    AtLeastOnce, BackpressureConfig, BackpressureStrategy, ConnectionState, Event, EventMetadata,
    Jitter, MailboxOverflow, MaxAttempts, Position, ReconnectPolicy, ResumeOutcome,
    WebSocketConfig, WebSocketTransport,
};

use crate::history::{Answer, Record, Recorder, parse_payload};

/// How long one `flush` may take before the run is said to make no
/// progress. Generous: a hub down, a cut and a backoff fit in it.
pub const FLUSH_DEADLINE: Duration = Duration::from_secs(60);

/// Events each publisher sends per burst.
pub const BURST: u64 = 500;

/// What every in-process client connects with: reconnect forever (100 ms
/// doubling to 5 s, jittered), at least once. `mailbox`: what a full
/// subscription mailbox does — `Block` for the pure subscribers (the mode
/// for a consumer that must see every event), the default (dead-letter,
/// said and counted) for the client that also publishes.
pub async fn connect(
    urls: &[String],
    mailbox: MailboxOverflow,
) -> Result<WebSocketTransport, String> {
    let (first, rest) = urls.split_first().ok_or("no URL")?;
    let config = WebSocketConfig {
        url: first.clone(),
        backpressure: BackpressureConfig {
            max_queue_size: 1024,
            strategy: BackpressureStrategy::Block,
            ..BackpressureConfig::default()
        },
        ..WebSocketConfig::default()
    };
    let policy =
        ReconnectPolicy::exponential(Duration::from_millis(100), 2.0, MaxAttempts::Unlimited)
            .with_max_delay(Duration::from_secs(5))
            .with_jitter(Jitter::Equal);
    let connect = WebSocketTransport::builder(config)
        .fallback_urls(rest.to_vec())
        .reconnect_policy(policy)
        .delivery(AtLeastOnce::default())
        .mailbox_overflow(mailbox)
        .connect();
    match tokio::time::timeout(Duration::from_secs(30), connect).await {
        Ok(Ok(transport)) => Ok(transport),
        Ok(Err(e)) => Err(format!("could not connect to {first}: {e}")),
        Err(_) => Err(format!("could not connect to {first} within 30 s")),
    }
}

/// Subscribes `transport` as a new subscriber instance of `name`:
/// records its start, each delivery, and `Ready` once the subscription
/// is in place.
pub async fn subscribe(
    transport: &WebSocketTransport,
    name: &str,
    own: Option<&str>,
    filter: Vec<String>,
    recorder: &Recorder,
) -> Result<u32, String> {
    let instance = recorder.next_instance();
    recorder.push(Record::InstanceStart {
        t: recorder.now(),
        instance,
        subscriber: Arc::from(name),
        own_publisher: own.map(Arc::from),
        filter: filter.clone(),
        since: None,
        pid: None,
    });
    let sink = recorder.clone();
    transport
        .subscribe(filter, move |event: Event| {
            let (publisher, seq) = parse_payload(&event.payload)
                .map(|(p, s)| (Arc::<str>::from(p), s))
                .unwrap_or_else(|| (Arc::from(format!("?{}", event.event_type)), 0));
            // The hostile flood is not tracked.
            if &*publisher != "hostile" {
                sink.push(Record::Delivery {
                    t: sink.now(),
                    instance,
                    publisher,
                    seq,
                });
            }
            Box::pin(async { Ok(()) })
        })
        .await
        .map_err(|e| format!("{name}: subscribe failed: {e}"))?;
    recorder.push(Record::Ready {
        t: recorder.now(),
        instance,
    });
    Ok(instance)
}

/// Watches a transport until `stop`: records every resume answer (from
/// its counters, so none is missed, woken by every state change so the
/// time is right) with the gap the hub counted when both positions are
/// known, and (with `drain`: for a transport that does not publish)
/// drains its dead-letter queue into the history.
pub async fn watch_transport(
    transport: Arc<WebSocketTransport>,
    client: Arc<str>,
    instance: Option<u32>,
    drain: bool,
    recorder: Recorder,
    mut stop: watch::Receiver<bool>,
) {
    let mut states = transport.state_changes();
    let mut recovered = 0;
    let mut not_recovered = 0;
    let mut replayed = 0;
    // The position while connected, before any new answer.
    let mut before: Option<Position> = None;
    loop {
        let stats = transport.connection_stats();
        if let Some(instance) = instance {
            if stats.resumes_recovered > recovered {
                let n = stats.events_replayed - replayed;
                for _ in recovered..stats.resumes_recovered {
                    recorder.push(Record::Resume {
                        t: recorder.now(),
                        instance,
                        answer: Answer::Recovered { replayed: n },
                    });
                }
            }
            if stats.resumes_not_recovered > not_recovered {
                let reason = match transport.last_resume() {
                    Some(ResumeOutcome::NotRecovered { reason }) => reason.to_string(),
                    _ => "unknown".to_string(),
                };
                let now = transport.position();
                let gap = match (before, now) {
                    (Some(b), Some(n)) if b.epoch() == n.epoch() => {
                        Some(n.seq().saturating_sub(b.seq()))
                    }
                    _ => None,
                };
                for _ in not_recovered..stats.resumes_not_recovered {
                    recorder.push(Record::Resume {
                        t: recorder.now(),
                        instance,
                        answer: Answer::NotRecovered {
                            reason: reason.clone(),
                            gap,
                        },
                    });
                }
            }
        }
        recovered = stats.resumes_recovered;
        not_recovered = stats.resumes_not_recovered;
        replayed = stats.events_replayed;
        if transport.state() == ConnectionState::Connected {
            before = transport.position();
        }
        if drain {
            drain_dead_letters(&transport, &client, &recorder);
        }
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            _ = stop.changed() => {}
            _ = states.changed() => {}
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

/// Moves the transport's dead letters into the history; returns the
/// numbers of `client`'s own events among them.
pub fn drain_dead_letters(
    transport: &WebSocketTransport,
    client: &Arc<str>,
    recorder: &Recorder,
) -> Vec<u64> {
    let mut own = Vec::new();
    for letter in transport.dead_letters().drain() {
        let event = letter
            .item
            .event()
            .ok()
            .and_then(|e| parse_payload(&e.payload).map(|(p, s)| (Arc::<str>::from(p), s)));
        if let Some((p, s)) = &event
            && p == client
        {
            own.push(*s);
        }
        recorder.push(Record::DeadLetter {
            t: recorder.now(),
            client: Arc::clone(client),
            event,
            reason: letter.reason.to_string(),
        });
    }
    own
}

/// A publisher's settings.
#[derive(Debug, Clone)]
pub struct PublisherPlan {
    /// Its name, in every event's payload.
    pub name: Arc<str>,
    /// The event types it picks from (by its own seeded generator).
    pub types: Vec<&'static str>,
    /// Events per second outside bursts.
    pub rate: f64,
    /// Its generator's seed.
    pub seed: u64,
}

/// Publishes numbered events on `transport` until `stop`: a steady
/// stream (many events in flight, as a real at-least-once publisher has),
/// with a [`BURST`] as fast as they go whenever the counter moves. A
/// flusher beside it calls `flush` every 200 ms and records the events
/// published before each successful one as acknowledged, less those
/// dead-lettered; it is the only reader of this transport's dead-letter
/// queue.
pub async fn publish(
    transport: Arc<WebSocketTransport>,
    plan: PublisherPlan,
    recorder: Recorder,
    bursts: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) {
    let pending: Arc<std::sync::Mutex<Vec<u64>>> = Arc::default();
    let (done_tx, done_rx) = watch::channel(false);
    let flusher = tokio::spawn(flusher(
        Arc::clone(&transport),
        Arc::clone(&plan.name),
        Arc::clone(&pending),
        recorder.clone(),
        done_rx,
    ));
    let mut rng = fastrand::Rng::with_seed(plan.seed);
    let mut seq = 0u64;
    let mut burst_seen = bursts.load(Relaxed);
    let mut burst_left = 0u64;
    let types: Vec<Arc<str>> = plan.types.iter().map(|t| Arc::from(*t)).collect();
    while !*stop.borrow() {
        let now = bursts.load(Relaxed);
        if now != burst_seen {
            burst_seen = now;
            burst_left += BURST;
        }
        let n = if burst_left > 0 {
            let n = burst_left.min(100);
            burst_left -= n;
            n
        } else {
            rng.u64(1..=10)
        };
        for _ in 0..n {
            seq += 1;
            let event_type = Arc::clone(&types[rng.usize(..types.len())]);
            let event = Event::new(
                &*event_type,
                serde_json::json!({"p": &*plan.name, "s": seq}),
                EventMetadata::default(),
            );
            recorder.push(Record::Publish {
                t: recorder.now(),
                publisher: Arc::clone(&plan.name),
                seq,
                event_type,
            });
            match transport.publish(event).await {
                Ok(()) => pending
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(seq),
                Err(e) => recorder.push(Record::Refused {
                    t: recorder.now(),
                    publisher: Arc::clone(&plan.name),
                    seq,
                    why: e.to_string(),
                }),
            }
        }
        let pause = if burst_left > 0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(n as f64 / plan.rate.max(1.0))
        };
        tokio::select! {
            _ = stop.changed() => {}
            () = tokio::time::sleep(pause) => {}
        }
    }
    let _ = done_tx.send(true);
    let _ = flusher.await;
}

/// See [`publish`]: acknowledges what each successful `flush` covers;
/// after `done`, flushes until nothing is pending (or a flush times out).
async fn flusher(
    transport: Arc<WebSocketTransport>,
    name: Arc<str>,
    pending: Arc<std::sync::Mutex<Vec<u64>>>,
    recorder: Recorder,
    mut done: watch::Receiver<bool>,
) {
    let mut dead: std::collections::HashSet<u64> = std::collections::HashSet::new();
    loop {
        let finishing = *done.borrow();
        let batch = std::mem::take(
            &mut *pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let flushed = if batch.is_empty() {
            None
        } else {
            Some(tokio::time::timeout(FLUSH_DEADLINE, transport.flush()).await)
        };
        dead.extend(drain_dead_letters(&transport, &name, &recorder));
        let keep: Vec<u64> = batch.into_iter().filter(|s| !dead.contains(s)).collect();
        match flushed {
            Some(Ok(Ok(()))) => recorder.push(Record::Ack {
                t: recorder.now(),
                publisher: Arc::clone(&name),
                seqs: keep,
            }),
            // Dead letters are recorded; the rest wait for the next flush
            // that succeeds.
            Some(Ok(Err(_))) => requeue(&pending, keep),
            Some(Err(_)) => {
                recorder.push(Record::Stalled {
                    t: recorder.now(),
                    what: format!(
                        "{name}: flush of {} events did not return within {FLUSH_DEADLINE:?}",
                        keep.len()
                    ),
                });
                if finishing {
                    return;
                }
                requeue(&pending, keep);
            }
            None if finishing => return,
            None => {}
        }
        tokio::select! {
            _ = done.changed() => {}
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

fn requeue(pending: &std::sync::Mutex<Vec<u64>>, mut seqs: Vec<u64>) {
    let mut pending = pending
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    seqs.append(&mut pending);
    *pending = seqs;
}
