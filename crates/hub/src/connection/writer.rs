//! The writer: this client's queue onto the socket, a due ack ahead of
//! everything queued, one flush per wake-up, the hub's pings, and a
//! sampled client's skipped count.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::SinkExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::tungstenite::{self, Bytes, Message, Utf8Bytes};
use watchtower_core::ControlFrame;

use crate::relay::outbox::{Entry, Outbox};
use crate::relay::sample::Due;
use crate::shared::Shared;
use crate::stats::{Counters, add, bump};

use super::liveness::Clock;
use super::{End, Sink};

/// Writes this client's queue: takes everything queued, feeds each frame
/// (a due ack first), flushes once per wake-up; pings every
/// `ping_interval`, busy or not, with a payload only a reading client can
/// echo (see `liveness`).
pub(super) async fn write_loop<S>(
    shared: &Shared,
    outbox: &Outbox,
    clock: &Clock,
    pending: &mut VecDeque<Entry>,
    sink: &mut Sink<S>,
) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let interval = shared.config.ping_interval;
    let mut next_ping = Instant::now() + interval;
    let mut marks = Marks::paced();
    // One timer for the connection's life, moved rather than made anew:
    // a new timer earlier than the runtime's next wake-up wakes the timer
    // driver's thread (a syscall and a context switch), and a resuming
    // client's trailing-position deadline is that, once per event sent
    // one at a time. Moving a registered timer later costs nothing.
    let timer = sleep_until(next_ping);
    tokio::pin!(timer);
    loop {
        if pending.is_empty() {
            outbox.take(pending);
        }
        let skips = outbox.skips_due();
        let mark_at = outbox.mark_due().map(|_| marks.due_at());
        if pending.is_empty()
            && outbox.pending_ack().is_none()
            && mark_at.is_none_or(|at| Instant::now() < at)
            && !matches!(skips, Due::Now(_))
        {
            // A sampled client's skipped count and a resuming client's
            // trailing position wait for their time: the one timer wakes
            // for whichever comes first (no second timer in every
            // connection's state).
            let wake = match skips {
                Due::At(at) => at.min(next_ping),
                Due::Nothing | Due::Now(_) => next_ping,
            };
            let wake = mark_at.map_or(wake, |at| at.min(wake));
            if timer.deadline() != wake || timer.is_elapsed() {
                timer.as_mut().reset(wake);
            }
            tokio::select! {
                biased;
                () = outbox.ready() => continue,
                () = &mut timer => {}
            }
        }
        if Instant::now() >= next_ping {
            if let Err(e) = sink
                .feed(Message::Ping(Bytes::copy_from_slice(&clock.next_ping())))
                .await
            {
                return End::WriteFailed(e);
            }
            next_ping = Instant::now() + interval;
        }
        let fed = match feed(&shared.counters, outbox, pending, &mut marks, sink).await {
            Ok(fed) => fed,
            Err(e) => return End::WriteFailed(e),
        };
        if let Err(e) = sink.flush().await {
            return End::WriteFailed(e);
        }
        add(&shared.counters.frames_out, fed);
        outbox.sent(fed);
    }
}

/// Feeds every pending frame to the sink, without flushing; returns how
/// many. A due ack is looked for before each frame and once at the end, so
/// it never waits behind a backlog (only behind what the socket has
/// already taken) and goes out when nothing else is queued. Cancel-safe: a
/// frame leaves `pending`, and an ack stops being due, only once the sink
/// has taken it.
pub(super) async fn feed<S>(
    counters: &Counters,
    outbox: &Outbox,
    pending: &mut VecDeque<Entry>,
    marks: &mut Marks,
    sink: &mut Sink<S>,
) -> Result<u64, tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut fed = 0;
    while let Some(entry) = pending.front_mut() {
        while let Some(i) = entry.frames.first_index() {
            // One relaxed load per frame; an ack is due at most once per
            // burst the client sent, and only in ack mode.
            if let Some(upto) = outbox.pending_ack() {
                send_ack(counters, outbox, upto, sink).await?;
            }
            if let Some(frame) = entry.burst.frames.get(i) {
                sink.feed(Message::Text(frame.clone())).await?;
                fed += 1;
                marks.frames += 1;
            }
            entry.frames.remove(i);
        }
        // A resuming client's position keeps up inside a long batch (a
        // replay, a backlog), so a reset mid-batch does not send it back
        // to where the batch began.
        if marks.frames >= MARK_EVERY
            && let Some(seq) = pending.front().and_then(|e| outbox.mark_after(e))
        {
            send_mark(outbox, seq, marks, sink).await?;
        }
        if let Some(done) = pending.pop_front() {
            outbox.release(&done);
        }
    }
    if let Some(upto) = outbox.pending_ack() {
        send_ack(counters, outbox, upto, sink).await?;
    }
    // Everything taken is fed: a resuming client's position has moved;
    // it is told now if enough went by, else on the writer's timer.
    if let Some(seq) = outbox.mark_due()
        && (marks.frames >= MARK_EVERY || Instant::now() >= marks.due_at())
    {
        send_mark(outbox, seq, marks, sink).await?;
    }
    // A sampled client: how many events it was not sent, now and then.
    if let Due::Now(events) = outbox.skips_due() {
        let frame = ControlFrame::Skipped { events }.to_json();
        sink.feed(Message::Text(Utf8Bytes::from(frame))).await?;
        outbox.skips_reported(events);
    }
    Ok(fed)
}

/// Frames fed between position frames, at most (plus one burst): one
/// small frame per 256 events.
const MARK_EVERY: usize = 256;

/// Time between position frames when fewer frames went by: a position
/// frame after every batch was a second frame per event for a client
/// sent one event at a time (measured: ~5–9 µs of its p50 latency).
/// A position that lags is still exact: the client adds the key of the
/// last event it read, and the hub replays after that event.
const MARK_INTERVAL: Duration = Duration::from_millis(10);

/// When this writer last sent a position frame, and frames since.
pub(super) struct Marks {
    last: Instant,
    frames: usize,
    interval: Duration,
}

impl Marks {
    /// Position frames every [`MARK_EVERY`] frames or [`MARK_INTERVAL`].
    fn paced() -> Marks {
        Marks {
            last: Instant::now(),
            frames: 0,
            interval: MARK_INTERVAL,
        }
    }

    /// A position frame after every batch: for the last one on a
    /// connection that is closing.
    pub(super) fn every_batch() -> Marks {
        Marks {
            last: Instant::now(),
            frames: 0,
            interval: Duration::ZERO,
        }
    }

    fn due_at(&self) -> Instant {
        self.last + self.interval
    }
}

/// Feeds `{"type":"position","seq":seq}`, without flushing.
async fn send_mark<S>(
    outbox: &Outbox,
    seq: u64,
    marks: &mut Marks,
    sink: &mut Sink<S>,
) -> Result<(), tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let frame = ControlFrame::Position { seq }.to_json();
    sink.feed(Message::Text(Utf8Bytes::from(frame))).await?;
    outbox.mark_sent(seq);
    marks.last = Instant::now();
    marks.frames = 0;
    Ok(())
}

/// Feeds `{"type":"ack","upto":upto}`, without flushing.
pub(super) async fn send_ack<S>(
    counters: &Counters,
    outbox: &Outbox,
    upto: u64,
    sink: &mut Sink<S>,
) -> Result<(), tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let frame = ControlFrame::Ack { upto }.to_json();
    sink.feed(Message::Text(Utf8Bytes::from(frame))).await?;
    outbox.ack_sent(upto);
    bump(&counters.acks_sent);
    Ok(())
}
