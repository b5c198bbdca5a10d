//! The writer: drains the carry-over and the queue in batches, flushes once
//! per batch, pings, and at least once keeps every event in flight until
//! the server acknowledges it.
//!
//! Every write is bounded by the write timeout on its progress, so a
//! server that stops reading is noticed even while it keeps sending, and a
//! slow link that keeps moving is not taken for one; an overdue ack ends the
//! connection, so what it holds is resent, in order, on the next one.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures_util::SinkExt;
use tokio::time::{Instant, sleep_until, timeout_at};
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use watchtower_core::ControlFrame;

use super::acks::Outgoing;
use super::room;
use super::session::{Batch, End, Reason, SessionState, Sink};
use crate::filter_limits;
use crate::shared::Shared;
use crate::stats::{add, bump};

/// At most once: event frames written between two receipt pings, at most.
const RECEIPT_EVERY: u64 = 64;

/// A batch this large is written without waiting for more (see
/// [`Writer::gather`]): as many frames as the hand-written loop the
/// benchmark compares with flushes at once.
const GATHER_FRAMES: usize = 64;

/// One connection's writer.
struct Writer<'a> {
    shared: &'a Shared,
    conn: &'a SessionState,
    sink: &'a mut Sink,
    /// Frames written since the last receipt ping (at most once).
    unreceipted: u64,
    popped: Vec<Utf8Bytes>,
}

pub(super) async fn write_loop(
    shared: &Shared,
    conn: &SessionState,
    batch: &mut Batch,
    sink: &mut Sink,
) -> End {
    let mut writer = Writer {
        shared,
        conn,
        sink,
        unreceipted: 0,
        popped: Vec::new(),
    };
    match writer.run(batch).await {
        Ok(never) => match never {},
        Err(end) => end,
    }
}

/// What the idle writer woke up for.
enum Work {
    /// Frames are in the batch: write them.
    Frames,
    /// Something else was done (a filter sent, a ping answered): look again.
    Again,
}

impl Writer<'_> {
    async fn run(&mut self, batch: &mut Batch) -> Result<std::convert::Infallible, End> {
        self.greet().await?;
        let settings = &self.shared.settings;
        let ping_timer = sleep_until(Instant::now());
        tokio::pin!(ping_timer);
        // Only at least once has acks to time, and the timer lives as long
        // as the connection: the others keep no room for it. Kept apart
        // from the ping timer: each only ever moves later, so resetting it
        // never wakes the runtime's timer driver (moving one earlier does).
        let mut ack_timer = settings.acks.map(|_| Box::pin(sleep_until(Instant::now())));
        loop {
            if settings.server_filters && self.shared.filter_dirty.swap(false, Relaxed) {
                self.send_filter().await?;
            }
            self.check_acks()?;
            if batch.frames.is_empty() {
                take_carried(self.shared, batch, self.room(batch));
            }
            if batch.frames.is_empty() {
                match self
                    .next_work(
                        batch,
                        ping_timer.as_mut(),
                        ack_timer.as_mut().map(Pin::as_mut),
                    )
                    .await?
                {
                    Work::Again => continue,
                    Work::Frames => self.gather(batch).await,
                }
            }
            self.write_batch(batch).await?;
        }
    }

    /// What a new connection says first. At least once: ask for
    /// acknowledgements before the first event, so the server's count of
    /// this connection's events matches ours. With server filters: the
    /// filter, always — a new connection receives everything until told
    /// otherwise, and a client with no subscription wants nothing.
    async fn greet(&mut self) -> Result<(), End> {
        if self.shared.settings.acks.is_some() {
            let hello = ControlFrame::Hello { acks: true }.to_json();
            self.io(|sink| sink.feed(Message::Text(hello.into())))
                .await?;
        }
        if self.shared.settings.server_filters {
            self.shared.filter_dirty.store(false, Relaxed);
            self.send_filter().await?;
        }
        self.io(|sink| sink.flush()).await
    }

    /// At least once: an ack overdue means the connection is stalled (TCP
    /// retransmits on it already); end it, and resend on the next. Acks
    /// are timed on the reader's clock: not while it waits for a full
    /// mailbox (`Block`), when the ack may be there, unread.
    fn check_acks(&self) -> Result<(), End> {
        let Some(acks) = self.shared.settings.acks else {
            return Ok(());
        };
        if self.conn.reading_paused.load(Relaxed) {
            return Ok(());
        }
        match self.conn.in_flight().next_timeout(acks.ack_timeout) {
            Some(at) if self.conn.reading_clock() >= at => {
                Err(End::Lost(Reason::AckTimeout(acks.ack_timeout)))
            }
            _ => Ok(()),
        }
    }

    /// When the oldest ack falls due, on the real clock; `None` with
    /// nothing in flight or while the reader is paused (it wakes the
    /// writer when it reads again).
    fn ack_due(&self) -> Option<Instant> {
        let acks = self.shared.settings.acks?;
        if self.conn.reading_paused.load(Relaxed) {
            return None;
        }
        let due = self.conn.in_flight().next_timeout(acks.ack_timeout)?;
        let left = due.saturating_duration_since(self.conn.reading_clock());
        Some(Instant::now() + left)
    }

    /// Idle: waits for frames, a filter change, a ping to answer, an ack,
    /// the time to ping, or an ack to fall due.
    async fn next_work(
        &mut self,
        batch: &mut Batch,
        mut ping_timer: Pin<&mut tokio::time::Sleep>,
        ack_timer: Option<Pin<&mut tokio::time::Sleep>>,
    ) -> Result<Work, End> {
        let shared = self.shared;
        let settings = &shared.settings;
        // Idle, nothing queued: give back the room a burst grew (the batch
        // is empty here). Not while the queue holds more: under load every
        // batch would shrink and grow again.
        if shared.queue.is_empty() {
            room::give_back(&mut batch.frames);
            room::give_back(&mut self.popped);
            self.conn.give_back_room();
        }
        // The tail's receipt, held back while another ping was out.
        if self.receipt_due() {
            let flushed = self.conn.flushed.load(Relaxed);
            self.ping(flushed, true).await?;
            self.unreceipted = 0;
        }
        let room = self.room(batch);
        let drained =
            shared.queue.is_closed() && shared.queue.is_empty() && shared.carry().is_empty();
        let unacked = settings.acks.is_some() && self.conn.in_flight().len() > 0;
        if drained && !unacked {
            return Err(End::Drained);
        }
        let ack_at = self.ack_due();
        let ping_at = next_ping_at(shared, self.conn);
        if let Some(at) = ping_at {
            ping_timer.as_mut().reset(at);
        }
        let ack_timer = match (ack_at, ack_timer) {
            (Some(at), Some(mut timer)) => {
                timer.as_mut().reset(at);
                Some(timer)
            }
            _ => None,
        };
        tokio::select! {
            biased;
            _ = shared.filter_changed.notified(), if settings.server_filters => Ok(Work::Again),
            _ = self.conn.wake_writer.notified() => {
                self.io(|sink| sink.flush()).await?;
                Ok(Work::Again)
            }
            n = shared.queue.pop_batch(room, &mut self.popped), if room > 0 && !drained => {
                batch.frames.extend(self.popped.drain(..).map(Outgoing::new));
                Ok(if n == 0 { Work::Again } else { Work::Frames })
            }
            _ = &mut ping_timer, if ping_at.is_some() => {
                let flushed = self.conn.flushed.load(Relaxed);
                self.ping(flushed, true).await?;
                Ok(Work::Again)
            }
            () = async {
                match ack_timer {
                    Some(timer) => timer.await,
                    None => std::future::pending().await,
                }
            }, if ack_at.is_some() => Ok(Work::Again),
        }
    }

    /// A writer woken for a few frames lets the runtime run other tasks
    /// once before writing them, and again while each turn brings more, up
    /// to [`GATHER_FRAMES`]: a publisher on another thread keeps pushing
    /// meanwhile, so one write carries what would otherwise take several.
    /// A writer that keeps up with its publisher would else write a few
    /// frames at a time — a syscall, a read and a wake-up for the server,
    /// and a wake-up of this task, per few events. A turn that brings
    /// nothing new means nobody is publishing: the frames go out at once,
    /// so a lone event waits one turn of the runtime, never a timer.
    async fn gather(&mut self, batch: &mut Batch) {
        let shared = self.shared;
        while batch.frames.len() < GATHER_FRAMES {
            let room = self.room(batch);
            if room == 0 {
                return;
            }
            tokio::task::yield_now().await;
            if !top_up(shared, batch, room, &mut self.popped) {
                return;
            }
        }
    }

    /// Feeds the batch, topping it up while there is more, then flushes
    /// once: a flush per event costs 5–9× the throughput. The batch is
    /// bounded by progress, not by its size (see [`bounded`]): a large
    /// batch over a slow link that keeps taking bytes is not stalled.
    async fn write_batch(&mut self, batch: &mut Batch) -> Result<(), End> {
        let (shared, conn) = (self.shared, self.conn);
        bounded(shared, conn, self.feed_and_flush(batch)).await?;
        self.conn.flushed.fetch_add(batch.fed as u64, Relaxed);
        add(&shared.counters.frames_out, batch.first_sends);
        add(&shared.counters.frames_flushed, batch.first_sends);
        add(&shared.counters.bytes_out, batch.first_bytes);
        if shared.settings.acks.is_some() {
            let in_flight = self.conn.in_flight().len() as u64;
            shared.counters.in_flight.store(in_flight, Relaxed);
        }
        batch.frames.clear();
        batch.fed = 0;
        batch.first_sends = 0;
        batch.first_bytes = 0;
        shared.progress.notify_waiters();
        Ok(())
    }

    async fn feed_and_flush(&mut self, batch: &mut Batch) -> Result<(), tungstenite::Error> {
        let shared = self.shared;
        let settings = &shared.settings;
        let at_least_once = settings.acks.is_some();
        loop {
            while batch.fed < batch.frames.len() {
                let outgoing = &mut batch.frames[batch.fed];
                let frame = outgoing.frame.clone();
                if outgoing.sent {
                    bump(&shared.counters.resent);
                } else {
                    outgoing.sent = true;
                    batch.first_sends += 1;
                    batch.first_bytes += frame.len() as u64;
                }
                if at_least_once {
                    let sent_at = self.conn.reading_clock();
                    self.conn
                        .in_flight()
                        .sent(batch.frames[batch.fed].clone(), sent_at);
                }
                batch.fed += 1;
                self.sink.feed(Message::Text(frame)).await?;
            }
            let room = self.room(batch);
            if room == 0 || !top_up(shared, batch, room, &mut self.popped) {
                break;
            }
        }
        self.unreceipted += batch.fed as u64;
        if self.receipt_due() {
            let upto = self.conn.flushed.load(Relaxed) + batch.fed as u64;
            let ping = self.ping_message(upto);
            self.sink.feed(ping).await?;
            self.unreceipted = 0;
        }
        self.sink.flush().await
    }

    /// At most once, a ping doubles as a receipt: its pong proves the
    /// server read every frame before it, which keeps the at-most-once
    /// window (frames lost with a dying connection) down to the frames not
    /// yet confirmed, and is what `flush` waits for. One every
    /// RECEIPT_EVERY frames, and one for the tail when the queue runs dry —
    /// unless a ping is already out: its pong wakes the writer, which then
    /// sends the tail's receipt (see [`next_work`](Self::next_work)). A
    /// writer that keeps up with its publisher finds the queue dry after
    /// every small batch, and a receipt per batch cost the server a pong
    /// write and us a pong read per few dozen events (the server's pong
    /// writes took a third of its time in a profile of one publisher). At
    /// least once, acks are the receipts.
    fn receipt_due(&self) -> bool {
        let settings = &self.shared.settings;
        settings.keepalive.is_some()
            && settings.acks.is_none()
            && (self.unreceipted >= RECEIPT_EVERY
                || (self.unreceipted > 0
                    && self.shared.queue.is_empty()
                    && !self.conn.ping_outstanding()))
    }

    /// One write to the socket, bounded by its progress (see [`bounded`]).
    async fn io<'s, F, Fut>(&'s mut self, write: F) -> Result<(), End>
    where
        F: FnOnce(&'s mut Sink) -> Fut,
        Fut: Future<Output = Result<(), tungstenite::Error>> + 's,
    {
        let (shared, conn) = (self.shared, self.conn);
        bounded(shared, conn, write(&mut *self.sink)).await
    }

    /// How many more frames the batch may take: the batch size, and at
    /// least once the room left in the in-flight window.
    fn room(&self, batch: &Batch) -> usize {
        let shared = self.shared;
        let batch_room = shared
            .settings
            .write_batch
            .saturating_sub(batch.frames.len());
        match shared.settings.acks {
            None => batch_room,
            Some(acks) => {
                let unfed = batch.frames.len() - batch.fed;
                let window_room = acks
                    .max_in_flight
                    .saturating_sub(self.conn.in_flight().len() + unfed);
                batch_room.min(window_room)
            }
        }
    }

    async fn ping(&mut self, frames: u64, flush: bool) -> Result<(), End> {
        let ping = self.ping_message(frames);
        if flush {
            self.io(|sink| sink.send(ping)).await
        } else {
            self.io(|sink| sink.feed(ping)).await
        }
    }

    /// A ping whose pong will confirm the first `frames` frames of the
    /// connection and the filter sent so far.
    fn ping_message(&self, frames: u64) -> Message {
        let shared = self.shared;
        let payload = self
            .conn
            .record_ping(frames, shared.filter_epoch_sent.load(Relaxed));
        bump(&shared.counters.pings_sent);
        Message::Ping(Bytes::copy_from_slice(&payload))
    }

    /// Tells a hub which event types the subscriptions want, then pings:
    /// the pong confirms the hub applied the filter (it reads frames in
    /// order), and `subscribe` waits for that. `subscribe` refuses to make
    /// a filter over the connected hub's limits, but the subscriptions of
    /// one hub can be over the limits of the next (failover): sent, it
    /// would be refused with 1008 on every reconnect until the breaker
    /// opens. Instead this hub is asked for every type — each subscription
    /// still filters for itself, so nothing is lost but bandwidth — and
    /// that is said once.
    async fn send_filter(&mut self) -> Result<(), End> {
        let shared = self.shared;
        // Read the epoch before the subscriptions: a change after this read
        // bumps the epoch again and sends another filter.
        let epoch = shared.filter_epoch.load(Relaxed);
        let mut frame = shared.subs.server_filter();
        let limits = shared.hub_limits.get();
        let over = filter_limits::check(&frame, &limits, shared.settings.max_message_size).err();
        if shared.hub_limits.note_over(over.is_some()) {
            tracing::warn!(url = %shared.current_url(), %limits, reason = over.as_deref().unwrap_or_default(),
                "the subscriptions' filter is over this hub's limits: asking it for every event \
                 type instead (the subscriptions filter for themselves)");
        }
        if over.is_some() {
            bump(&shared.counters.filters_widened);
            frame = ControlFrame::Subscribe {
                event_types: Vec::new(),
                replace: true,
            };
        }
        tracing::debug!(?frame, epoch, "sending subscription filter");
        let text = frame.to_json();
        self.io(|sink| sink.feed(Message::Text(text.into())))
            .await?;
        shared.filter_epoch_sent.fetch_max(epoch, Relaxed);
        let flushed = self.conn.flushed.load(Relaxed);
        self.ping(flushed, true).await
    }
}

/// Runs a write until it completes or fails, or until the socket has
/// taken no byte for `write_timeout` (counted in `write_timeouts`): the
/// server stopped reading. The deadline moves with progress, so a slow but
/// healthy uplink — a large batch that takes longer than the timeout to go
/// out, bytes moving all along — is not called stalled. Progress is looked
/// at every quarter of the timeout, so a stall is called at most a quarter
/// late.
async fn bounded<F>(shared: &Shared, conn: &SessionState, write: F) -> Result<(), End>
where
    F: Future<Output = Result<(), tungstenite::Error>>,
{
    tokio::pin!(write);
    // A write the socket takes at once (the common case) needs no timer,
    // and so no clock read or runtime lookup.
    if let Poll::Ready(done) = std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await
    {
        return outcome(shared, Some(done));
    }
    // Boxed: its timer and clock would otherwise size every connection's
    // task for its whole life, idle ones too; only a write that has to
    // wait pays for the box.
    Box::pin(watch_progress(shared, conn, write)).await
}

/// [`bounded`] for a write that has to wait: looks at its progress every
/// quarter of the write timeout.
async fn watch_progress<F>(
    shared: &Shared,
    conn: &SessionState,
    mut write: Pin<&mut F>,
) -> Result<(), End>
where
    F: Future<Output = Result<(), tungstenite::Error>>,
{
    let timeout = shared.settings.write_timeout;
    let look_every = (timeout / 4).max(Duration::from_millis(1));
    let mut seen = conn.written.load(Relaxed);
    let mut moved_at = Instant::now();
    loop {
        let look_at = (moved_at + timeout).min(Instant::now() + look_every);
        if let Ok(done) = timeout_at(look_at, write.as_mut()).await {
            return outcome(shared, Some(done));
        }
        let now = conn.written.load(Relaxed);
        if now != seen {
            (seen, moved_at) = (now, Instant::now());
        } else if Instant::now() >= moved_at + timeout {
            return outcome(shared, None);
        }
    }
}

/// How a bounded write ended: done, failed, or stalled (`None`, counted in
/// `write_timeouts`).
fn outcome(shared: &Shared, written: Option<Result<(), tungstenite::Error>>) -> Result<(), End> {
    match written {
        Some(Ok(())) => Ok(()),
        Some(Err(e)) => Err(End::Lost(Reason::Write(e))),
        None => {
            bump(&shared.counters.write_timeouts);
            Err(End::Lost(Reason::WriteTimeout(
                shared.settings.write_timeout,
            )))
        }
    }
}

/// Moves up to `room` carried-over frames into the batch; true if any.
fn take_carried(shared: &Shared, batch: &mut Batch, room: usize) -> bool {
    let mut carry = shared.carry();
    let n = room.min(carry.len());
    batch.frames.extend(carry.drain(..n));
    n > 0
}

/// Adds up to `room` frames to the batch without waiting: carried-over ones
/// first, then queued ones. True if any.
fn top_up(shared: &Shared, batch: &mut Batch, room: usize, popped: &mut Vec<Utf8Bytes>) -> bool {
    if take_carried(shared, batch, room) {
        return true;
    }
    let n = shared.queue.try_pop_batch(room, popped);
    batch.frames.extend(popped.drain(..).map(Outgoing::new));
    n > 0
}

/// When the next keepalive ping is due: after `interval` of silence, and
/// never while one is unanswered (the keepalive watch handles that).
fn next_ping_at(shared: &Shared, conn: &SessionState) -> Option<Instant> {
    let keepalive = shared.settings.keepalive?;
    if conn.ping_outstanding() {
        return None;
    }
    let last = conn.at(&conn.last_rx).max(conn.at(&conn.last_ping));
    Some(last + keepalive.interval)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures_util::StreamExt;
    use tokio::net::TcpListener;

    use super::*;
    use crate::WebSocketConfig;
    use crate::connection::room::IDLE_ROOM;
    use crate::transport::WebSocketTransport;

    /// A burst of a full batch grows the writer's batch to 256 frames;
    /// once it is written and the writer idles, the room is given back.
    #[tokio::test]
    async fn the_writer_gives_back_a_bursts_room_when_idle() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/x", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            while let Some(Ok(_)) = ws.next().await {}
        });
        let settings = WebSocketTransport::builder(WebSocketConfig::new(url))
            .into_settings()
            .unwrap();
        let shared = Arc::new(Shared::new(settings).unwrap());
        let ws = crate::connect::connect_once(
            &shared.settings,
            shared.current_url(),
            &shared.resume,
            &shared.counters,
            &shared.client_id,
            &shared.hub_limits,
        )
        .await
        .unwrap();
        let conn = SessionState::new(ws.get_ref().written());
        let (mut sink, _stream) = ws.split();
        let burst = shared.settings.write_batch as u64;
        for n in 0..burst {
            let frame = format!(r#"{{"id":"{n}","event_type":"t","payload":{{}}}}"#);
            shared.queue.try_push(Utf8Bytes::from(frame)).unwrap();
        }
        let mut batch = Batch::default();
        let written = async {
            // One thread: once the writer has counted the burst, it has
            // run on to its idle wait before this is polled again.
            while shared.counters.frames_out.load(Relaxed) < burst {
                tokio::task::yield_now().await;
            }
        };
        tokio::select! {
            biased;
            _ = write_loop(&shared, &conn, &mut batch, &mut sink) => panic!("the writer ended"),
            () = written => {}
        }
        assert_eq!(burst, 256);
        assert!(
            batch.frames.capacity() <= 2 * IDLE_ROOM,
            "the idle batch keeps room for {} frames",
            batch.frames.capacity()
        );
    }
}
