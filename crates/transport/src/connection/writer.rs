//! The writer: drains the carry-over and the queue in batches, flushes once
//! per batch, pings, and at least once keeps every event in flight until
//! the server acknowledges it.

use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use futures_util::SinkExt;
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use watchtower_core::ControlFrame;
use watchtower_dlq::DeadLetterReason;

use super::acks::Outgoing;
use super::session::{Batch, Cells, End, Reason, Sink};
use crate::delivery::Acks;
use crate::shared::Shared;
use crate::stats::{add, bump};

/// At most once: event frames written between two receipt pings, at most.
const RECEIPT_EVERY: u64 = 64;

pub(super) async fn write_loop(
    shared: &Shared,
    cells: &Cells,
    batch: &mut Batch,
    sink: &mut Sink,
) -> End {
    let settings = &shared.settings;
    let lost = |e| End::Lost(Reason::Write(e));
    // At least once: ask for acknowledgements before the first event, so
    // the server's count of this connection's events matches ours.
    if settings.acks.is_some() {
        let hello = ControlFrame::Hello { acks: true }.to_json();
        if let Err(e) = sink.feed(Message::Text(hello.into())).await {
            return lost(e);
        }
    }
    // A new connection receives everything until told otherwise, a superset
    // of any filter; narrow it first thing, if there is anything to narrow.
    if settings.server_filters {
        shared.filter_dirty.store(false, Relaxed);
        if shared.subs.len() > 0
            && let Err(e) = send_filter(shared, cells, sink).await
        {
            return lost(e);
        }
    }
    if let Err(e) = sink.flush().await {
        return lost(e);
    }
    let mut popped: Vec<Utf8Bytes> = Vec::new();
    let mut unreceipted = 0u64;
    let ping_timer = sleep_until(Instant::now());
    let ack_timer = sleep_until(Instant::now());
    tokio::pin!(ping_timer, ack_timer);
    loop {
        if settings.server_filters
            && shared.filter_dirty.swap(false, Relaxed)
            && let Err(e) = send_filter(shared, cells, sink).await
        {
            return lost(e);
        }
        if let Some(acks) = settings.acks {
            expire(shared, cells, acks);
        }
        if batch.frames.is_empty() {
            take_carried(shared, batch, room(shared, cells, batch));
        }
        if batch.frames.is_empty() {
            // Idle: wait for frames, a filter change, a ping to answer, an
            // ack, the time to ping, or an ack to time out.
            let room = room(shared, cells, batch);
            let drained =
                shared.queue.is_closed() && shared.queue.is_empty() && shared.carry().is_empty();
            let ack_at = settings
                .acks
                .and_then(|a| cells.in_flight().next_timeout(a.ack_timeout));
            if drained && ack_at.is_none() {
                return End::Drained;
            }
            let ping_at = next_ping_at(shared, cells);
            if let Some(at) = ping_at {
                ping_timer.as_mut().reset(at);
            }
            if let Some(at) = ack_at {
                ack_timer.as_mut().reset(at);
            }
            tokio::select! {
                biased;
                _ = shared.filter_changed.notified(), if settings.server_filters => continue,
                _ = cells.wake_writer.notified() => {
                    if let Err(e) = sink.flush().await {
                        return lost(e);
                    }
                    continue;
                }
                n = shared.queue.pop_batch(room, &mut popped), if room > 0 && !drained => {
                    batch.frames.extend(popped.drain(..).map(Outgoing::new));
                    if n == 0 {
                        continue;
                    }
                }
                _ = &mut ping_timer, if ping_at.is_some() => {
                    let flushed = cells.flushed.load(Relaxed);
                    if let Err(e) = send_ping(shared, cells, sink, flushed, true).await {
                        return lost(e);
                    }
                    continue;
                }
                _ = &mut ack_timer, if ack_at.is_some() => continue,
            }
        }
        // Feed the batch, topping it up while there is more, then flush
        // once: a flush per event costs 5–9× the throughput.
        loop {
            while batch.fed < batch.frames.len() {
                let outgoing = &batch.frames[batch.fed];
                let len = outgoing.frame.len() as u64;
                if let Err(e) = sink.feed(Message::Text(outgoing.frame.clone())).await {
                    return lost(e);
                }
                if settings.acks.is_some() {
                    cells.in_flight().sent(outgoing.clone(), Instant::now());
                }
                batch.fed += 1;
                batch.fed_bytes += len;
            }
            let room = room(shared, cells, batch);
            if room == 0 || !top_up(shared, batch, room, &mut popped) {
                break;
            }
        }
        // At most once, a ping doubles as a receipt: its pong proves the
        // server read every frame before it, which keeps the at-most-once
        // window (frames lost with a dying connection) down to the frames
        // not yet confirmed. One every RECEIPT_EVERY frames, and one when
        // the queue runs dry, so the tail is confirmed too; a ping per
        // small batch would cost the server a pong per few events. At
        // least once, acks are the receipts.
        unreceipted += batch.fed as u64;
        if settings.keepalive.is_some()
            && settings.acks.is_none()
            && (unreceipted >= RECEIPT_EVERY || (unreceipted > 0 && shared.queue.is_empty()))
        {
            let upto = cells.flushed.load(Relaxed) + batch.fed as u64;
            if let Err(e) = send_ping(shared, cells, sink, upto, false).await {
                return lost(e);
            }
            unreceipted = 0;
        }
        if let Err(e) = sink.flush().await {
            return lost(e);
        }
        cells.flushed.fetch_add(batch.fed as u64, Relaxed);
        add(&shared.counters.frames_out, batch.fed as u64);
        add(&shared.counters.bytes_out, batch.fed_bytes);
        if settings.acks.is_some() {
            let in_flight = cells.in_flight().len() as u64;
            shared.counters.in_flight.store(in_flight, Relaxed);
        }
        batch.frames.clear();
        batch.fed = 0;
        batch.fed_bytes = 0;
        shared.progress.notify_waiters();
    }
}

/// How many more frames the batch may take: the batch size, and at least
/// once the room left in the in-flight window.
fn room(shared: &Shared, cells: &Cells, batch: &Batch) -> usize {
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
                .saturating_sub(cells.in_flight().len() + unfed);
            batch_room.min(window_room)
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

/// At least once: events whose ack is overdue are sent again, ahead of
/// everything else, or dead-lettered once they have been sent `attempts`
/// times without an ack (a server that does not acknowledge at all).
fn expire(shared: &Shared, cells: &Cells, acks: Acks) {
    let Some(sent_before) = Instant::now().checked_sub(acks.ack_timeout) else {
        return;
    };
    let expired = {
        let mut in_flight = cells.in_flight();
        let expired = in_flight.take_expired(sent_before);
        if !expired.is_empty() {
            shared
                .counters
                .in_flight
                .store(in_flight.len() as u64, Relaxed);
        }
        expired
    };
    if expired.is_empty() {
        return;
    }
    let mut dead = Vec::new();
    let mut again = Vec::new();
    for mut outgoing in expired {
        outgoing.timeouts += 1;
        if outgoing.timeouts >= acks.attempts {
            dead.push(outgoing.frame);
        } else {
            again.push(outgoing);
        }
    }
    if !dead.is_empty() {
        tracing::warn!(
            events = dead.len(),
            attempts = acks.attempts,
            ack_timeout = ?acks.ack_timeout,
            "no acknowledgement; events dead-lettered (does the server speak the ack protocol?)"
        );
        shared.dead_letter_frames(
            dead,
            DeadLetterReason::AckTimeout,
            &format!(
                "ack timeout: sent {} times, {:?} each, with no acknowledgement from the server",
                acks.attempts, acks.ack_timeout
            ),
        );
    }
    add(&shared.counters.resent, again.len() as u64);
    let mut carry = shared.carry();
    for outgoing in again.into_iter().rev() {
        carry.push_front(outgoing);
    }
}

/// When the next keepalive ping is due: after `interval` of silence, and
/// never while one is unanswered (the keepalive watch handles that).
fn next_ping_at(shared: &Shared, cells: &Cells) -> Option<Instant> {
    let keepalive = shared.settings.keepalive?;
    if cells.ping_outstanding() {
        return None;
    }
    let last = cells.at(&cells.last_rx).max(cells.at(&cells.last_ping));
    Some(last + keepalive.interval)
}

async fn send_ping(
    shared: &Shared,
    cells: &Cells,
    sink: &mut Sink,
    frames: u64,
    flush: bool,
) -> Result<(), tungstenite::Error> {
    let payload = cells.record_ping(frames, shared.filter_epoch_sent.load(Relaxed));
    bump(&shared.counters.pings_sent);
    let ping = Message::Ping(Bytes::copy_from_slice(&payload));
    if flush {
        sink.send(ping).await
    } else {
        sink.feed(ping).await
    }
}

/// Tells a hub which event types the subscriptions want, then pings: the
/// pong confirms the hub applied the filter (it reads frames in order), and
/// `subscribe` waits for that.
async fn send_filter(
    shared: &Shared,
    cells: &Cells,
    sink: &mut Sink,
) -> Result<(), tungstenite::Error> {
    // Read the epoch before the subscriptions: a change after this read
    // bumps the epoch again and sends another filter.
    let epoch = shared.filter_epoch.load(Relaxed);
    let frame = shared.subs.server_filter();
    tracing::debug!(?frame, epoch, "sending subscription filter");
    sink.feed(Message::Text(frame.to_json().into())).await?;
    shared.filter_epoch_sent.fetch_max(epoch, Relaxed);
    let flushed = cells.flushed.load(Relaxed);
    send_ping(shared, cells, sink, flushed, true).await
}
