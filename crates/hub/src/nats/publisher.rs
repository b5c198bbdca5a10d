//! The publisher task: every event a node's clients send goes to the
//! stream, one message per event, with publish acks pipelined. What it
//! promises:
//!
//! - **Stored before acknowledged.** An ack-mode sender is acknowledged up
//!   to a point only once JetStream acknowledged storing every event it
//!   sent before that point (a duplicate JetStream dropped was stored
//!   before). The hub's de-duplication window passes a resend on while its
//!   original is still unconfirmed ([`DedupWindow::confirm_when_stored`]),
//!   so no ack ever rests on a publish in flight.
//! - **One order per sender, across NATS crashes.** Events are handed to
//!   one NATS connection (a *link*) in the order received. A link never
//!   reconnects by itself: the client library would write what was still in
//!   its queue to the new connection, after events lost with the old one.
//!   When a publish on a link fails or times out, the link is dropped and
//!   every event not yet confirmed is handed again, in the same order, to a
//!   new link; JetStream's `Nats-Msg-Id` de-duplication absorbs the ones
//!   that had been stored. Each connection thus carries, in order, every
//!   unconfirmed event of a sender from its oldest on, so the first copy of
//!   each to be stored comes after the first copies of those before it.
//! - **`not stored` means not stored.** A publish that timed out is not
//!   counted as a failure: it is handed again until JetStream answers. Only
//!   an event JetStream refused (or the hub could not queue) is counted as
//!   not stored; its ack-mode sender is closed and resends.

use std::collections::{HashMap, VecDeque};
use std::future::IntoFuture;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{Bytes, Utf8Bytes};
use watchtower_core::EventHeader;

use super::subject::{MessageIdKey, subject};
use super::{EVENT_COST, OUTGOING_COST, Outgoing, Tally};
use crate::dedup::DedupWindow;
use crate::fanout::ClientId;
use crate::outbox::Outbox;
use crate::stats::{add, bump};

/// The header naming the node and client an event came from
/// (`<node>-<client>`), so it is not echoed back to its sender: on the
/// origin's node by connection, on every node by client identity.
pub(super) const ORIGIN_HEADER: &str = "Watchtower-Origin";

/// Publishes waiting for JetStream's ack, at most; the client library
/// allows 5,000, and its permits are only given back as acks are read
/// here, so this stays well below.
const IN_FLIGHT: usize = 2048;

/// The wait before opening a link again after one failed, doubled per
/// failure in a row up to [`RELINK_MAX`].
const RELINK_MIN: Duration = Duration::from_millis(100);
const RELINK_MAX: Duration = Duration::from_secs(1);

/// Opens a new NATS connection for a link (see the module docs): one that
/// never reconnects by itself.
pub(super) type Opener = Arc<
    dyn Fn() -> BoxFuture<'static, Result<async_nats::Client, async_nats::Error>> + Send + Sync,
>;

pub(super) struct Publisher {
    pub(super) open: Opener,
    pub(super) prefix: String,
    /// The stream's name, and the epoch of the one events were last
    /// stored in (see [`Publisher::new_stream`]).
    pub(super) stream: String,
    pub(super) epoch: u64,
    pub(super) node: u64,
    /// The stream's message-id key: a stream made anew may carry another
    /// (see `consumer`), and every hub must use the one it carries.
    pub(super) key: watch::Receiver<MessageIdKey>,
    pub(super) queue: mpsc::UnboundedReceiver<Outgoing>,
    pub(super) tally: Arc<Tally>,
    pub(super) dedup: Arc<DedupWindow>,
}

/// One event, kept until JetStream stored it (or refused it).
struct Item {
    lane: ClientId,
    /// Its place in its lane, from 1.
    index: u64,
    subject: Option<String>,
    id: String,
    origin: Arc<str>,
    frame: Utf8Bytes,
    /// The sender: its backplane budget holds the frame until settled.
    from: Option<Arc<Outbox>>,
    /// Sent in ack mode: the sender's acks wait for it.
    ack_mode: bool,
}

/// One sender's events: how many were queued and how many settled (in
/// order), and the acks due once enough are.
#[derive(Default)]
struct Lane {
    queued: u64,
    settled: u64,
    /// `(events queued before it, upto)`: the ack due once that many are
    /// settled.
    marks: VecDeque<(u64, u64)>,
    outbox: Option<Arc<Outbox>>,
}

/// A NATS connection events are handed to, in order.
struct Link {
    js: jetstream::Context,
    _client: async_nats::Client,
}

type Acked = BoxFuture<'static, Result<(), PublishError>>;

struct State {
    /// Not yet handed to the current link, oldest first.
    waiting: VecDeque<Item>,
    /// Handed to the current link and not yet settled, in hand-off order,
    /// beside their acks.
    handed: VecDeque<(Item, Instant)>,
    acks: FuturesOrdered<Acked>,
    lanes: HashMap<ClientId, Lane>,
    link: Option<Link>,
    /// Links that failed in a row, for the wait before the next.
    failures: u32,
    relink_at: Instant,
    /// Since when there is no working link (after one failed).
    unlinked_since: Option<Instant>,
}

pub(super) async fn run(mut p: Publisher) {
    p.dedup.confirm_when_stored();
    let mut s = State {
        waiting: VecDeque::new(),
        handed: VecDeque::new(),
        acks: FuturesOrdered::new(),
        lanes: HashMap::new(),
        link: None,
        failures: 0,
        relink_at: Instant::now(),
        unlinked_since: None,
    };
    loop {
        while let Some(Some(result)) = s.acks.next().now_or_never() {
            p.settle(&mut s, result);
        }
        loop {
            match p.queue.try_recv() {
                Ok(outgoing) => p.accept(&mut s, outgoing),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return,
            }
        }
        p.report(&s);
        if s.link.is_none() && !s.waiting.is_empty() && Instant::now() >= s.relink_at {
            p.relink(&mut s).await;
            continue;
        }
        if s.link.is_some() && !s.waiting.is_empty() && s.handed.len() < IN_FLIGHT {
            p.hand(&mut s).await;
            continue;
        }
        let relink = s.link.is_none() && !s.waiting.is_empty();
        tokio::select! {
            Some(result) = s.acks.next(), if !s.acks.is_empty() => p.settle(&mut s, result),
            next = p.queue.recv() => match next {
                Some(outgoing) => p.accept(&mut s, outgoing),
                None => return,
            },
            () = tokio::time::sleep_until(s.relink_at), if relink => {}
        }
    }
}

impl Publisher {
    /// Queues a burst's events in its sender's lane, and the ack due after
    /// them.
    fn accept(&self, s: &mut State, outgoing: Outgoing) {
        // The hand-off's own cost; its events' stay counted until settled.
        self.tally.queued_bytes.fetch_sub(OUTGOING_COST, Relaxed);
        if let Some(from) = &outgoing.from {
            from.release_backplane(OUTGOING_COST);
        }
        let lane_id = outgoing.burst.as_ref().map_or_else(
            || outgoing.from.as_ref().map_or(0, |f| f.id()),
            |b| b.sender,
        );
        let lane = s.lanes.entry(lane_id).or_default();
        if lane.outbox.is_none() {
            lane.outbox.clone_from(&outgoing.from);
        }
        let ack_mode = outgoing.ack.is_some();
        if let Some(burst) = &outgoing.burst {
            let key = self.key.borrow();
            let origin: Arc<str> = Arc::from(format!("{:016x}-{}", self.node, burst.sender));
            for (frame, event_type) in burst.frames.iter().zip(&burst.types) {
                lane.queued += 1;
                let header = EventHeader::parse(frame.as_bytes()).ok();
                let id = header.as_ref().map_or("", |h| &h.id);
                s.waiting.push_back(Item {
                    lane: lane_id,
                    index: lane.queued,
                    subject: subject(&self.prefix, event_type),
                    id: key.message_id(id, frame.as_bytes()),
                    origin: Arc::clone(&origin),
                    frame: frame.clone(),
                    from: outgoing.from.clone(),
                    ack_mode,
                });
            }
        }
        if let Some(upto) = outgoing.ack {
            lane.marks.push_back((lane.queued, upto));
        }
        Self::acks_due(s, lane_id);
    }

    /// Opens a new link; on failure, waits longer before the next try.
    async fn relink(&mut self, s: &mut State) {
        match (self.open)().await {
            Ok(client) => {
                let js = jetstream::new(client.clone());
                // Which stream a new link stores in: one made anew since
                // (NATS back on a wiped store) holds nothing of what the
                // last one stored. None yet: nothing can be stored.
                let epoch = match js.get_stream(&self.stream).await {
                    Ok(stream) => super::stream_epoch(stream.cached_info()),
                    Err(error) => {
                        tracing::debug!(%error, "backplane: no stream to publish to yet");
                        self.wait_to_relink(s);
                        return;
                    }
                };
                if epoch != self.epoch {
                    self.new_stream(s);
                    self.epoch = epoch;
                }
                if s.failures > 0 {
                    tracing::info!(
                        events = s.waiting.len(),
                        "backplane: publishing again on a new NATS connection"
                    );
                }
                s.link = Some(Link {
                    js,
                    _client: client,
                });
                s.failures = 0;
                s.unlinked_since = None;
            }
            Err(error) => {
                tracing::debug!(%error, "backplane: could not open a publishing connection");
                self.wait_to_relink(s);
            }
        }
    }

    /// The stream was made anew: what the old one stored is gone. An ack
    /// still due to an at-least-once sender would rest on it in part, so
    /// each such sender is closed instead (it resends everything not yet
    /// acknowledged, in order) and what it still had waiting here is
    /// dropped, not stored, so its resend enters the new stream first and
    /// in its order; the de-duplication window, which vouches for events
    /// the old stream stored, forgets them all. At-most-once events waiting
    /// go on to the new stream.
    fn new_stream(&self, s: &mut State) {
        self.dedup.forget_all();
        let mut closed = 0;
        for lane in s.lanes.values_mut() {
            if lane.marks.is_empty() {
                continue;
            }
            if let Some(outbox) = &lane.outbox {
                outbox.lose_backplane();
            }
            lane.marks.clear();
            closed += 1;
        }
        let (mut dropped, mut kept) = (0, VecDeque::new());
        for item in std::mem::take(&mut s.waiting) {
            if item.ack_mode {
                dropped += 1;
                add(&self.tally.failures, 1);
                self.settled(s, item);
            } else {
                kept.push_back(item);
            }
        }
        s.waiting = kept;
        tracing::warn!(
            closed,
            dropped,
            "backplane: publishing to a stream made anew; at-least-once senders awaiting acks are closed and resend what only the old stream held"
        );
    }

    fn wait_to_relink(&self, s: &mut State) {
        s.failures = s.failures.saturating_add(1);
        let wait = RELINK_MIN
            .saturating_mul(1 << s.failures.min(8).saturating_sub(1))
            .min(RELINK_MAX);
        s.relink_at = Instant::now() + wait;
        s.unlinked_since.get_or_insert_with(Instant::now);
    }

    /// Hands the oldest waiting event to the link.
    async fn hand(&self, s: &mut State) {
        let (Some(link), Some(item)) = (&s.link, s.waiting.pop_front()) else {
            return;
        };
        let Some(subject) = item.subject.clone() else {
            // Never for a type the reader accepted: refused here rather than
            // sent, as the server would drop the whole connection.
            self.give_up(s, item, "its subject would be too long");
            return;
        };
        let message = PublishMessage::build()
            .payload(Bytes::from(item.frame.clone()))
            .message_id(item.id.as_str())
            .header(ORIGIN_HEADER, &*item.origin);
        match link.js.send_publish(subject, message).await {
            Ok(ack) => {
                s.acks
                    .push_back(Box::pin(ack.into_future().map(|r| r.map(|_| ()))));
                s.handed.push_back((item, Instant::now()));
            }
            Err(error) => {
                s.waiting.push_front(item);
                self.drop_link(s, &error);
            }
        }
    }

    /// The oldest handed event's publish ended.
    fn settle(&self, s: &mut State, result: Result<(), PublishError>) {
        let Some((item, _)) = s.handed.pop_front() else {
            return;
        };
        match result {
            Ok(()) => self.stored(s, item),
            Err(error) if refused(&error) => self.give_up(s, item, &error.to_string()),
            Err(error) => {
                s.handed.push_front((item, Instant::now()));
                self.drop_link(s, &error);
            }
        }
    }

    /// The link failed: every event handed to it and not yet settled goes
    /// back, in order, before the waiting ones, for the next link. Their
    /// acks are no longer awaited: whichever of them it did store, the
    /// same message ids make JetStream drop again.
    fn drop_link(&self, s: &mut State, error: &PublishError) {
        tracing::warn!(
            %error,
            unconfirmed = s.handed.len(),
            "backplane: a publish failed; publishing again, in order, on a new NATS connection"
        );
        s.link = None;
        s.acks = FuturesOrdered::new();
        while let Some((item, _)) = s.handed.pop_back() {
            s.waiting.push_front(item);
        }
        self.wait_to_relink(s);
    }

    fn stored(&self, s: &mut State, item: Item) {
        bump(&self.tally.stored);
        if item.ack_mode {
            self.dedup.confirm(item.frame.as_bytes());
        }
        self.settled(s, item);
    }

    /// JetStream refused the event (or it could not be sent at all): not
    /// stored, counted, its ack-mode sender closed to resend it.
    fn give_up(&self, s: &mut State, item: Item, why: &str) {
        tracing::warn!(reason = why, "backplane: an event was not stored");
        add(&self.tally.failures, 1);
        if item.ack_mode {
            if let Some(from) = &item.from {
                from.lose_backplane();
            }
            self.dedup.forget(item.frame.as_bytes());
        }
        self.settled(s, item);
    }

    fn settled(&self, s: &mut State, item: Item) {
        self.tally.unsettled.fetch_sub(1, Relaxed);
        let cost = item.frame.len() + EVENT_COST;
        self.tally.queued_bytes.fetch_sub(cost, Relaxed);
        if let Some(from) = &item.from {
            from.release_backplane(cost);
        }
        if let Some(lane) = s.lanes.get_mut(&item.lane) {
            debug_assert_eq!(lane.settled + 1, item.index, "a lane settles in order");
            lane.settled = lane.settled.max(item.index);
        }
        Self::acks_due(s, item.lane);
    }

    /// Sends a lane's acks whose events are all settled; forgets the lane
    /// once nothing of it is pending.
    fn acks_due(s: &mut State, lane_id: ClientId) {
        let Some(lane) = s.lanes.get_mut(&lane_id) else {
            return;
        };
        while let Some(&(before, upto)) = lane.marks.front() {
            if lane.settled < before {
                break;
            }
            lane.marks.pop_front();
            if let Some(outbox) = &lane.outbox {
                // Ignored once an event of this sender was not stored.
                outbox.ack(upto);
            }
        }
        if lane.settled == lane.queued && lane.marks.is_empty() {
            s.lanes.remove(&lane_id);
        }
    }

    /// What `/healthz` needs: since when the oldest unconfirmed publish
    /// waits, or whether events wait with no link.
    fn report(&self, s: &State) {
        let oldest = s.handed.front().map(|(_, at)| *at).or_else(|| {
            (s.link.is_none() && !s.waiting.is_empty())
                .then_some(s.unlinked_since)
                .flatten()
        });
        self.tally.set_waiting_since(oldest);
        self.tally.unconfirmed.store(s.handed.len() as u64, Relaxed);
    }
}

/// Whether JetStream answered the publish with a refusal (the event is
/// not stored, and would not be if sent again), rather than the publish
/// failing on its way (timed out, connection lost, no stream to answer):
/// those are sent again.
fn refused(error: &PublishError) -> bool {
    match error.kind() {
        PublishErrorKind::MaxPayloadExceeded
        | PublishErrorKind::WrongLastMessageId
        | PublishErrorKind::WrongLastSequence => true,
        PublishErrorKind::Other => std::error::Error::source(error)
            .is_some_and(|source| source.downcast_ref::<jetstream::Error>().is_some()),
        _ => false,
    }
}
