//! The consumer task: one ordered consumer reads the stream from where
//! this node stands and delivers it, in the stream's order, to this node's
//! clients, its own clients' events included (not back to their sender).
//! Stream sequences are the history's seqs.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use watchtower_core::{EventHeader, WarnLimiter};

use super::Tally;
use super::publisher::ORIGIN_HEADER;
use super::subject::MessageIdKey;
use crate::fanout::{Burst, ClientId, LocalFanout, MAX_BURST};
use crate::stats::{Counters, add, high_water};

/// How often the stream's first retained sequence is read, so the
/// history forgets what the stream evicted.
const RETENTION_CHECK: Duration = Duration::from_millis(500);

/// After a failure to open the stream or the consumer, the wait before
/// the next try.
const RETRY: Duration = Duration::from_millis(250);

/// The stream holds events past what this node read, and none arrived for
/// this long: the consumer is opened again from where the node stands.
/// After a NATS server restart the client library can take its idle
/// heartbeats (two missed ones, 30 s each) or its pull expiry (35 s) to see
/// that its consumer is gone, e.g. when its connection came back before its
/// pull task looked; meanwhile nothing would be delivered here.
const STALLED_AFTER: Duration = Duration::from_secs(2);

pub(super) struct Consumer {
    pub(super) js: jetstream::Context,
    pub(super) stream: String,
    /// The stream sequence to read next.
    pub(super) next: u64,
    pub(super) node: u64,
    pub(super) local: Arc<LocalFanout>,
    pub(super) tally: Arc<Tally>,
    pub(super) counters: Arc<Counters>,
    /// The last stream sequence delivered.
    pub(super) caught_up: watch::Sender<u64>,
    /// How to make the stream anew if it vanished (with the description,
    /// and so the message-id key, of the one in use).
    pub(super) config: jetstream::stream::Config,
    /// When the stream this hub reads was made: its identity, and its
    /// epoch's (see [`Consumer::adopt`]).
    pub(super) created_nanos: i128,
    /// The message-id key the publisher uses: the stream's.
    pub(super) key: watch::Sender<MessageIdKey>,
    /// The stream's last seq when it last said, for what its loss takes
    /// with it.
    pub(super) last_seen: u64,
    pub(super) warn: WarnLimiter,
    /// Why the consumer must be opened again before anything more is
    /// taken from it (see [`Consumer::take`]).
    pub(super) reopen: Option<&'static str>,
    /// The consumer sequence of the last message taken from the consumer
    /// now open: one that is not past it comes from a consumer the client
    /// library made anew by itself.
    pub(super) consumer_seq: u64,
    /// History is on: bursts are keyed before they are appended (see
    /// [`burst`]).
    pub(super) keyed: bool,
}

/// One message read from the stream.
struct Read {
    seq: u64,
    /// When the stream stored it, on this hub's clock.
    at: Instant,
    sender: ClientId,
    /// Its frame and event type; `None` for a message that is not an
    /// event, whose seq the history skips.
    event: Option<(Utf8Bytes, Arc<str>)>,
}

pub(super) async fn run(mut c: Consumer) {
    loop {
        if let Err(error) = c.read().await {
            tracing::warn!(%error, next = c.next, "backplane: reading the stream failed; retrying");
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// A burst of events read from the stream, with its frames' keys when
/// `keyed` (history on): made here, outside any lock, as a connection's
/// reader makes its own, so the history never hashes frames under the
/// lock every relay takes.
fn burst(sender: ClientId, frames: Vec<Utf8Bytes>, types: Vec<Arc<str>>, keyed: bool) -> Burst {
    let burst = Burst::new(sender, frames, types);
    if keyed { burst.keyed() } else { burst }
}

/// The sender an event's origin header (`<node>-<client>`, see
/// `publisher`) names on this node (`node`): a client identity
/// (`Watchtower-Client-Id`, top bit set) is the same on every node, so its
/// events are never sent back to it wherever it is connected; a
/// connection's id means something only on the node that numbered it.
fn sender(origin: &str, node: u64) -> Option<ClientId> {
    let (from, client) = origin.split_once('-')?;
    let client: ClientId = client.parse().ok()?;
    let here = u64::from_str_radix(from, 16).ok() == Some(node);
    (here || client & IDENTITY_BIT != 0).then_some(client)
}

/// Set in every sender that is a client identity rather than a
/// connection's id (see `connection::upgrade`).
const IDENTITY_BIT: ClientId = 1 << 63;

impl Consumer {
    /// The shared stream, made anew if it vanished (NATS lost its store, or
    /// someone deleted it), checked to be the one this hub started on:
    /// another one (another creation time) is another epoch, whose seqs
    /// are not this history's.
    async fn open_stream(&mut self) -> Result<jetstream::stream::Stream, async_nats::Error> {
        let stream = match self.js.get_stream(&self.stream).await {
            Ok(stream) => stream,
            Err(error)
                if matches!(
                    error.kind(),
                    jetstream::context::GetStreamErrorKind::JetStream(e)
                        if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
                ) =>
            {
                tracing::warn!(%error, stream = %self.stream, "backplane: the stream is gone; making it anew");
                self.js.get_or_create_stream(self.config.clone()).await?
            }
            Err(error) => return Err(error.into()),
        };
        let info = stream.cached_info().clone();
        self.check_identity(&info)?;
        Ok(stream)
    }

    /// Goes on with the stream made anew if `info` is not the one this hub
    /// read (see [`Consumer::adopt`]); the consumer is then opened again
    /// on it.
    fn check_identity(&mut self, info: &jetstream::stream::Info) -> Result<(), async_nats::Error> {
        if info.created.unix_timestamp_nanos() != self.created_nanos {
            self.adopt(info);
            return Err("the stream was made anew; reading it from its start".into());
        }
        self.last_seen = self.last_seen.max(info.state.last_sequence);
        Ok(())
    }

    /// The stream was deleted and made anew (NATS lost its store, or
    /// someone deleted it): a new epoch, whose seqs are not the history's.
    /// The history starts again empty in it, numbered from the new
    /// stream's first seq, which the consumer reads next; resuming clients
    /// hold positions of the old epoch and are closed, so they resume and
    /// are told `epoch` (plain ones go on). What the old stream held that
    /// this hub had not read is lost with it: counted as missed. `/healthz`
    /// says 503 until the new stream is read up to where it stands now.
    fn adopt(&mut self, info: &jetstream::stream::Info) {
        let created = info.created.unix_timestamp_nanos();
        let old = super::epoch(&self.stream, self.created_nanos);
        let epoch = super::epoch(&self.stream, created);
        let lost = self.last_seen.saturating_sub(self.next - 1);
        let start = info.state.first_sequence.max(1);
        let last = info.state.last_sequence;
        self.tally
            .adopting
            .store(if last >= start { last } else { 0 }, Relaxed);
        add(&self.tally.new_streams, 1);
        add(&self.tally.missed, lost);
        self.local.renumber(epoch, start - 1);
        self.caught_up.send_replace(start - 1);
        self.next = start;
        self.last_seen = last;
        self.created_nanos = created;
        if info.config.description != self.config.description {
            // Made by a hub that did not read the old one: its key.
            let key = info
                .config
                .description
                .as_deref()
                .and_then(MessageIdKey::from_description)
                .unwrap_or_else(|| MessageIdKey::unkeyed(&self.stream));
            self.key.send_replace(key);
            self.config.description.clone_from(&info.config.description);
        }
        tracing::error!(
            stream = %self.stream,
            old_epoch = format_args!("{old:016x}"),
            new_epoch = format_args!("{epoch:016x}"),
            lost,
            first = start,
            last,
            "backplane: the stream was deleted and made anew (NATS lost its store, or someone deleted it): a new epoch. Events the old stream held that this hub had not read are lost with it; resuming clients are closed and told `epoch`; the history starts again empty, read from the new stream's start"
        );
    }

    /// The new stream is read up to `seq`: if it is read as far as it stood
    /// when this hub found it, the hub is healthy again.
    fn reached(&self, seq: u64) {
        self.caught_up.send_replace(seq);
        let until = self.tally.adopting.load(Relaxed);
        if until > 0 && seq >= until {
            self.tally.adopting.store(0, Relaxed);
            tracing::info!(
                seq,
                "backplane: the stream made anew is read up to where it stood; going on"
            );
        }
    }

    /// Reads until the consumer fails; it is then opened again from
    /// `self.next`.
    async fn read(&mut self) -> Result<(), async_nats::Error> {
        let stream = self.open_stream().await?;
        // From a given sequence: when that was evicted, JetStream starts
        // silently at the first one it has; the history sees the gap.
        let consumer = stream
            .create_consumer(OrderedConfig {
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: self.next,
                },
                ..Default::default()
            })
            .await?;
        let mut messages = consumer.messages().await?;
        self.consumer_seq = 0;
        let mut retention = tokio::time::interval(RETENTION_CHECK);
        retention.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Since when the stream has held events past what was read, with
        // nothing read since.
        let mut waiting_since: Option<Instant> = None;
        let mut batch = Vec::new();
        loop {
            let first = tokio::select! {
                message = messages.next() => message,
                _ = retention.tick() => {
                    let info = match stream.get_info().await {
                        Ok(info) => info,
                        Err(error) if error.kind() == jetstream::context::RequestErrorKind::Other => {
                            // Gone (JetStream answered): reopened, made anew.
                            return Err(error.into());
                        }
                        Err(_) => continue,
                    };
                    self.check_identity(&info)?;
                    self.tally.answered();
                    self.local.retain_from(info.state.first_sequence);
                    if info.state.last_sequence < self.next {
                        // Nothing more to read (messages that were not
                        // events included).
                        self.reached(self.next - 1);
                        waiting_since = None;
                        continue;
                    }
                    let since = *waiting_since.get_or_insert_with(Instant::now);
                    if since.elapsed() < STALLED_AFTER {
                        continue;
                    }
                    // Stalled, unless a message is here after all (this
                    // task was only late).
                    match messages.next().now_or_never() {
                        Some(message) => message,
                        None => {
                            return Err(format!(
                                "nothing read for {STALLED_AFTER:?} while the stream holds seq {} on",
                                self.next
                            )
                            .into());
                        }
                    }
                }
            };
            waiting_since = None;
            let Some(first) = first else {
                return Ok(());
            };
            self.take(first?, &mut batch);
            // Whatever else is already here, without waiting.
            while batch.len() < MAX_BURST {
                match messages.next().now_or_never() {
                    Some(Some(message)) => self.take(message?, &mut batch),
                    _ => break,
                }
            }
            self.deliver(&mut batch);
            if let Some(why) = self.reopen.take() {
                return Err(format!("{why}; reopening at seq {}", self.next).into());
            }
        }
    }

    fn take(&mut self, message: jetstream::Message, batch: &mut Vec<Read>) {
        let Ok(info) = message.info() else {
            return;
        };
        if self.reopen.is_some() {
            return;
        }
        if info.consumer_sequence <= self.consumer_seq {
            // The client library made its consumer anew by itself (after
            // NATS restarted, say), perhaps on a stream made anew that has
            // the same name: nothing of it is taken before the stream's
            // identity is checked, as opening the consumer again does.
            self.reopen = Some("the client library made the consumer anew");
            return;
        }
        self.consumer_seq = info.consumer_sequence;
        let seq = info.stream_sequence;
        if seq < self.next {
            // Behind what was read: only a consumer made anew from further
            // back sends this (from the stream's start, as the client
            // library does when the old one had delivered nothing yet):
            // opened again from where this node stands rather than reading
            // the whole stream to skip it.
            self.reopen = Some("the consumer went back to the stream's start");
            return;
        }
        if seq > self.next {
            // Evicted (or lost) before this node read them: a gap no client
            // of this node will get. Resuming clients are closed and told
            // (the history sees the gap); the rest only learn it here.
            let missed = seq - self.next;
            add(&self.tally.missed, missed);
            if let Some(suppressed) = self.warn.allow() {
                tracing::warn!(
                    missed,
                    from = self.next,
                    suppressed,
                    "backplane: the stream evicted events before this hub read them; its clients miss them"
                );
            }
        }
        self.next = seq + 1;
        let sender = message
            .headers
            .as_ref()
            .and_then(|h| h.get(ORIGIN_HEADER))
            .and_then(|origin| sender(origin.as_str(), self.node))
            // Client ids start at 1: 0 is nobody here.
            .unwrap_or(0);
        let decoded = Utf8Bytes::try_from(message.payload.clone())
            .ok()
            .and_then(|frame| {
                let event_type = Arc::from(&*EventHeader::parse(frame.as_bytes()).ok()?.event_type);
                Some((frame, event_type))
            });
        if decoded.is_none() {
            // Not from a hub (or from a newer one): counted and skipped, and
            // logged at most once a second, whoever keeps sending them. Its
            // seq is skipped in order, not taken for a gap: resuming
            // clients go on.
            add(&self.tally.foreign, 1);
            if let Some(suppressed) = self.warn.allow() {
                tracing::warn!(
                    seq,
                    suppressed,
                    "backplane: a message on the stream is not an event; skipped"
                );
            }
        }
        let at = stored_at(info.published.unix_timestamp_nanos(), self.tally.base);
        batch.push(Read {
            seq,
            at,
            sender,
            event: decoded,
        });
    }

    /// Delivers runs of consecutive events from one sender as one burst.
    fn deliver(&mut self, batch: &mut Vec<Read>) {
        let mut reads = batch.drain(..).peekable();
        while let Some(read) = reads.next() {
            let (first, sender, at) = (read.seq, read.sender, read.at);
            let Some((frame, event_type)) = read.event else {
                self.local.skip_at(first);
                self.reached(first);
                continue;
            };
            let mut last = first;
            let mut frames = vec![frame];
            let mut types = vec![event_type];
            while let Some(more) =
                reads.next_if(|r| r.event.is_some() && r.sender == sender && r.seq == last + 1)
            {
                last = more.seq;
                if let Some((frame, event_type)) = more.event {
                    frames.push(frame);
                    types.push(event_type);
                }
            }
            let events = frames.len() as u64;
            let burst = Arc::new(burst(sender, frames, types, self.keyed));
            if let Some(delivery) = self.local.publish_at(&burst, first, at) {
                add(&self.tally.delivered, events);
                add(&self.counters.frames_queued, delivery.queued);
                add(&self.counters.dropped_frames, delivery.dropped);
                high_water(
                    &self.counters.client_bytes_high_water,
                    delivery.max_held as u64,
                );
            }
            self.reached(last);
        }
    }
}

/// When the stream stored a message (its timestamp, `published_nanos`
/// after the Unix epoch), on this hub's clock: the history ages events
/// from there, so every hub of a group, one started later too, forgets an
/// event at the same age (at f945df2 each counted from when it read it).
/// A timestamp in this clock's future (clocks apart) counts as now; one
/// further back than this platform's `Instant` reaches counts from
/// `earliest`, the hub's start.
fn stored_at(published_nanos: i128, earliest: Option<Instant>) -> Instant {
    let now = Instant::now();
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    let age = u64::try_from(wall - published_nanos).unwrap_or(0);
    now.checked_sub(Duration::from_nanos(age))
        .or(earliest)
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames() -> (Vec<Utf8Bytes>, Vec<Arc<str>>) {
        let frames = ["a", "b", "c"]
            .map(|n| Utf8Bytes::from(format!(r#"{{"id":"{n}","event_type":"t","payload":{{}}}}"#)));
        (frames.to_vec(), vec![Arc::from("t"); 3])
    }

    #[test]
    fn bursts_from_the_stream_are_keyed_before_the_history_lock() {
        let (frames, types) = frames();
        let want: Vec<u64> = frames
            .iter()
            .map(|f| watchtower_core::frame_key(f.as_bytes()))
            .collect();
        let keyed = burst(7, frames.clone(), types.clone(), true);
        assert_eq!(keyed.keys, want, "one key per frame, made here");
        // With history off, nothing uses keys: none are made.
        assert!(burst(7, frames, types, false).keys.is_empty());
    }

    #[test]
    fn a_messages_age_counts_from_the_streams_timestamp() {
        let wall = |back: Duration| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .saturating_sub(back)
                .as_nanos() as i128
        };
        let before = Instant::now();
        let at = stored_at(wall(Duration::from_secs(10)), None);
        let after = Instant::now();
        assert!(at + Duration::from_secs(10) <= after, "ten seconds old");
        // A timestamp ahead of this clock is now, not the future.
        assert!(stored_at(wall(Duration::ZERO) + 60_000_000_000, None) >= before);
        // Very old (1970): never younger than the earliest given.
        assert!(stored_at(0, Some(before)) <= before);
    }

    #[test]
    fn a_client_identity_is_the_sender_on_every_node() {
        let identity: ClientId = IDENTITY_BIT | 42;
        let origin = format!("{:016x}-{identity}", 5u64);
        assert_eq!(sender(&origin, 5), Some(identity));
        assert_eq!(sender(&origin, 6), Some(identity));
        // A connection's id is this node's only.
        assert_eq!(sender(&format!("{:016x}-9", 5u64), 5), Some(9));
        assert_eq!(sender(&format!("{:016x}-9", 5u64), 6), None);
        assert_eq!(sender("nonsense", 5), None);
    }
}
