//! The hostile fault's ack-mode client: a raw WebSocket connection that
//! says `hello` (acks on), then, round after round, floods the hub's
//! de-duplication window with junk frames, sends a few numbered events,
//! resends its own recent frames byte for byte, and sends events that
//! reuse the ids of other clients' events it has received.
//!
//! What it attacks: the window must keep every other client's keys (its
//! junk pushes out only its own oldest, `dedup_client_share`), so a resend
//! by an honest publisher after a reset is still dropped — else a
//! subscriber gets it twice (invariant 4); its own resends must be relayed
//! once (its numbered events are recorded, so a double relay is invariant
//! 4 too, and their order invariant 2); and an event that merely reuses
//! another client's id is a different event (relayed, never suppressing
//! the original: invariant 1 for the honest publisher's events).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use watchtower_websocket::{Event, EventMetadata};

use crate::history::{Record, Recorder, parse_payload};

/// Junk frames per round: distinct, untracked, ack-mode.
const JUNK: u64 = 100;
/// Numbered (recorded) events per round, publisher `hostile-r.TAG`.
const OWN: u64 = 10;
/// Resends per round, of its last [`KEEP`] numbered frames.
const RESENDS: usize = 50;
/// Numbered frames kept for resending: all within the last few rounds,
/// so far inside its share of the window (10,000 keys) that a resend is
/// always one the hub must still recognise.
const KEEP: usize = 50;
/// Events per round reusing another client's id, publisher `hostile-c.TAG`.
const COPIES: usize = 10;
/// Pause between rounds.
const ROUND: Duration = Duration::from_millis(50);

/// Runs the client against `url` until `end`, as identity `client_id`.
/// `tag` names this run's numbered publishers (`hostile-r.TAG`,
/// `hostile-c.TAG`): each hostile fault numbers its events from 1, so
/// each must be a publisher of its own.
pub async fn run(
    url: &str,
    client_id: &str,
    tag: usize,
    end: Instant,
    recorder: &Recorder,
    seed: u64,
) {
    let Ok(mut request) = url.into_client_request() else {
        return;
    };
    if let Ok(id) = HeaderValue::from_str(client_id) {
        request.headers_mut().insert("Watchtower-Client-Id", id);
    }
    let Ok(Ok((socket, _))) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(request),
    )
    .await
    else {
        return;
    };
    let (mut sink, mut stream) = socket.split();
    // Other clients' event ids, as they arrive; acks and everything else
    // are read and dropped so the hub never sees a slow reader.
    let ids: Arc<Mutex<VecDeque<String>>> = Arc::default();
    let reader = {
        let ids = Arc::clone(&ids);
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let Ok(event) = serde_json::from_str::<Event>(text.as_str()) else {
                    continue;
                };
                let honest =
                    parse_payload(&event.payload).is_some_and(|(p, _)| !p.starts_with("hostile"));
                if honest {
                    let mut ids = ids.lock().unwrap_or_else(PoisonError::into_inner);
                    ids.push_back(event.id);
                    if ids.len() > 1_000 {
                        ids.pop_front();
                    }
                }
            }
        })
    };
    let hello = r#"{"type":"hello","acks":true}"#;
    if sink.send(Message::text(hello)).await.is_err() {
        reader.abort();
        return;
    }
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut own_seq = 0u64;
    let mut copy_seq = 0u64;
    let mut junk_seq = 0u64;
    let mut kept: VecDeque<String> = VecDeque::new();
    let own: Arc<str> = Arc::from(format!("hostile-r.{tag}"));
    let copier: Arc<str> = Arc::from(format!("hostile-c.{tag}"));
    let chaos_a: Arc<str> = Arc::from("chaos.a");
    'rounds: while Instant::now() < end {
        let mut frames: Vec<String> = Vec::new();
        for _ in 0..JUNK {
            junk_seq += 1;
            frames.push(frame("chaos.flood", "hostile", junk_seq, None));
        }
        recorder.push(Record::Untracked {
            t: recorder.now(),
            events: JUNK,
        });
        for _ in 0..OWN {
            own_seq += 1;
            recorder.push(Record::Publish {
                t: recorder.now(),
                publisher: Arc::clone(&own),
                seq: own_seq,
                event_type: Arc::clone(&chaos_a),
            });
            let text = frame("chaos.a", &own, own_seq, None);
            kept.push_back(text.clone());
            frames.push(text);
        }
        while kept.len() > KEEP {
            kept.pop_front();
        }
        for _ in 0..RESENDS {
            if let Some(text) = kept.get(rng.usize(..kept.len())) {
                frames.push(text.clone());
            }
        }
        let stolen: Vec<String> = {
            let ids = ids.lock().unwrap_or_else(PoisonError::into_inner);
            (0..COPIES.min(ids.len()))
                .filter_map(|_| ids.get(rng.usize(..ids.len())).cloned())
                .collect()
        };
        for id in stolen {
            copy_seq += 1;
            recorder.push(Record::Publish {
                t: recorder.now(),
                publisher: Arc::clone(&copier),
                seq: copy_seq,
                event_type: Arc::clone(&chaos_a),
            });
            frames.push(frame("chaos.a", &copier, copy_seq, Some(id)));
        }
        for text in frames {
            if sink.feed(Message::text(text)).await.is_err() {
                break 'rounds;
            }
        }
        if sink.flush().await.is_err() {
            break;
        }
        tokio::time::sleep(ROUND).await;
    }
    let _ = sink.close().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
}

/// One event frame, `{"p": publisher, "s": seq}`, with `id` if given.
fn frame(event_type: &str, publisher: &str, seq: u64, id: Option<String>) -> String {
    let mut event = Event::new(
        event_type,
        serde_json::json!({"p": publisher, "s": seq}),
        EventMetadata::default(),
    );
    if let Some(id) = id {
        event.id = id;
    }
    serde_json::to_string(&event).unwrap_or_default()
}
