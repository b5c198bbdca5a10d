//! The publisher task: every burst a node's clients send goes to the
//! stream, one message per event, with publish acks pipelined; an ack-mode
//! sender is acknowledged in order, once JetStream stored everything it
//! sent up to the ack.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use async_nats::jetstream;
use async_nats::jetstream::message::PublishMessage;
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{Bytes, Utf8Bytes};
use watchtower_core::EventHeader;

use super::subject::{message_id, subject};
use super::{Outgoing, Tally};
use crate::dedup::DedupWindow;
use crate::outbox::Outbox;
use crate::stats::bump;

/// The header naming the node and client an event came from, so the
/// origin's node does not echo it back to the sender.
pub(super) const ORIGIN_HEADER: &str = "Watchtower-Origin";

/// Publishes waiting for JetStream's ack, at most; the client library
/// allows 5,000, and its permits are only given back as acks are read
/// here, so this stays well below.
const IN_FLIGHT: usize = 2048;

type Pending = Pin<Box<dyn Future<Output = Done> + Send>>;

/// One publish (or ack) resolved, in the order they were sent.
struct Done {
    stored: bool,
    /// The ack-mode sender of the event, or the sender to acknowledge.
    from: Option<Arc<Outbox>>,
    /// An ack-mode sender's event: forgotten by the hub's de-duplication
    /// window if not stored, so that its resend is relayed.
    frame: Option<Utf8Bytes>,
    /// The ack to send `from` once everything before is stored.
    ack: Option<u64>,
}

pub(super) async fn run(
    js: jetstream::Context,
    prefix: String,
    node: u64,
    mut queue: mpsc::Receiver<Outgoing>,
    tally: Arc<Tally>,
    dedup: Arc<DedupWindow>,
) {
    let mut in_flight: FuturesOrdered<Pending> = FuturesOrdered::new();
    loop {
        tokio::select! {
            next = queue.recv(), if in_flight.len() < IN_FLIGHT => {
                let Some(outgoing) = next else { break };
                publish(&js, &prefix, node, outgoing, &tally, &mut in_flight).await;
            }
            Some(done) = in_flight.next(), if !in_flight.is_empty() => settle(done, &tally, &dedup),
        }
    }
}

async fn publish(
    js: &jetstream::Context,
    prefix: &str,
    node: u64,
    outgoing: Outgoing,
    tally: &Tally,
    in_flight: &mut FuturesOrdered<Pending>,
) {
    // Only an ack-mode sender is closed when its event is not stored.
    let from = outgoing.ack.and(outgoing.from.clone());
    if let Some(burst) = &outgoing.burst {
        let origin = format!("{node:016x}-{}", burst.sender);
        for (frame, event_type) in burst.frames.iter().zip(&burst.types) {
            let header = EventHeader::parse(frame.as_bytes()).ok();
            let id = header.as_ref().map_or("", |h| &h.id);
            let message = PublishMessage::build()
                .payload(Bytes::from(frame.clone()))
                .message_id(message_id(id, frame.as_bytes()))
                .header(ORIGIN_HEADER, origin.as_str());
            let sent = js.send_publish(subject(prefix, event_type), message).await;
            // Handed to the client library (or refused by it): out of the
            // budgets from here on, one frame at a time. The frames after
            // it still wait here — for as long as the library's queue is
            // full — and count, or a client could have a whole burst (up
            // to 256 frames) waiting beyond its budget.
            tally.queued_bytes.fetch_sub(frame.len(), Relaxed);
            if let Some(sender) = &outgoing.from {
                sender.release_backplane(frame.len());
            }
            let from = from.clone();
            let frame = from.as_ref().map(|_| frame.clone());
            let pending: Pending = match sent {
                Ok(ack) => Box::pin(async move {
                    let stored = match ack.into_future().await {
                        Ok(_) => true,
                        Err(error) => {
                            tracing::debug!(%error, "backplane: event not stored");
                            false
                        }
                    };
                    Done {
                        stored,
                        from,
                        frame,
                        ack: None,
                    }
                }),
                Err(error) => {
                    tracing::debug!(%error, "backplane: publish failed");
                    Box::pin(std::future::ready(Done {
                        stored: false,
                        from,
                        frame,
                        ack: None,
                    }))
                }
            };
            in_flight.push_back(pending);
        }
    }
    if let (Some(upto), Some(from)) = (outgoing.ack, outgoing.from) {
        in_flight.push_back(Box::pin(std::future::ready(Done {
            stored: true,
            from: Some(from),
            frame: None,
            ack: Some(upto),
        })));
    }
}

fn settle(done: Done, tally: &Tally, dedup: &DedupWindow) {
    if let Some(upto) = done.ack {
        if let Some(from) = &done.from {
            // Ignored once a publish of this sender failed.
            from.ack(upto);
        }
        return;
    }
    if done.stored {
        bump(&tally.stored);
    } else {
        bump(&tally.failures);
        if let Some(from) = &done.from {
            from.lose_backplane();
        }
        if let Some(frame) = &done.frame {
            dedup.forget(frame.as_bytes());
        }
    }
}
