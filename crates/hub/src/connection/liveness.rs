//! Liveness: when the client last showed it is alive, the bytes of a
//! message still arriving, and the timer that drops a client that went
//! silent or never finishes its message.
//!
//! Only two things prove a client alive: a data frame, or a pong that
//! answers the hub's latest ping (its payload is a per-connection secret,
//! so only a client that reads can answer). An unsolicited pong or a ping
//! proves nothing: a client that writes them but never reads would
//! otherwise hold its connection forever. While a message is arriving,
//! its bytes count too — a large message on a slow link is not a dead
//! client — but it must be whole within `message_timeout`.

use std::hash::{BuildHasher, RandomState};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, sleep_until};

use crate::shared::Shared;

use super::End;

/// "No time recorded" in an [`AtomicU64`] of nanoseconds.
const NEVER: u64 = u64::MAX;

/// When the client last showed it is alive, and what the hub's pings
/// asked. Atomics only because the task must be `Send`; one task reads
/// and writes them.
pub(super) struct Clock {
    epoch: Instant,
    /// Nanoseconds after `epoch` of the last data frame or answered ping.
    last_alive: AtomicU64,
    /// Payloads of the latest ping and the one before (0: none), so an
    /// answer that crosses the next ping still counts.
    ping: [AtomicU64; 2],
    sent_pings: AtomicU64,
    secret: RandomState,
    arrivals: Arc<Arrivals>,
}

impl Clock {
    pub(super) fn new() -> Clock {
        let epoch = Instant::now();
        Clock {
            epoch,
            last_alive: AtomicU64::new(0),
            ping: [AtomicU64::new(0), AtomicU64::new(0)],
            sent_pings: AtomicU64::new(0),
            secret: RandomState::new(),
            arrivals: Arc::new(Arrivals::new(epoch)),
        }
    }

    /// Wraps the client's socket so that bytes arriving are noted.
    pub(super) fn meter<S>(&self, socket: S) -> Metered<S> {
        Metered {
            inner: socket,
            arrivals: Arc::clone(&self.arrivals),
        }
    }

    /// The client proved it is alive: it sent a data frame.
    pub(super) fn alive(&self) {
        self.last_alive.store(nanos(self.epoch), Relaxed);
    }

    /// A whole message was read: the bytes read so far are no longer a
    /// message in progress.
    pub(super) fn message_read(&self) {
        self.arrivals.settle();
    }

    /// The payload of the next ping: unpredictable to anyone who has not
    /// read it.
    pub(super) fn next_ping(&self) -> [u8; 8] {
        let n = self.sent_pings.fetch_add(1, Relaxed);
        let token = self.secret.hash_one(n).max(1);
        let previous = self.ping[0].swap(token, Relaxed);
        self.ping[1].store(previous, Relaxed);
        token.to_be_bytes()
    }

    /// Notes a pong; it proves the client alive only if it answers one of
    /// the hub's two latest pings. Returns whether it did.
    pub(super) fn pong(&self, payload: &[u8]) -> bool {
        let Ok(bytes) = <[u8; 8]>::try_from(payload) else {
            return false;
        };
        let token = u64::from_be_bytes(bytes);
        let answers = token != 0 && self.ping.iter().any(|p| p.load(Relaxed) == token);
        if answers {
            self.alive();
        }
        answers
    }

    fn last_alive(&self) -> Instant {
        self.epoch + Duration::from_nanos(self.last_alive.load(Relaxed))
    }
}

/// Bytes arriving on one connection: how many, the last one's time, and
/// since when bytes have arrived that are not yet part of a whole message.
struct Arrivals {
    epoch: Instant,
    total: AtomicU64,
    settled: AtomicU64,
    last_byte: AtomicU64,
    unsettled_since: AtomicU64,
}

impl Arrivals {
    fn new(epoch: Instant) -> Arrivals {
        Arrivals {
            epoch,
            total: AtomicU64::new(0),
            settled: AtomicU64::new(0),
            last_byte: AtomicU64::new(0),
            unsettled_since: AtomicU64::new(NEVER),
        }
    }

    fn arrived(&self, n: usize) {
        let now = nanos(self.epoch);
        self.total.fetch_add(n as u64, Relaxed);
        self.last_byte.store(now, Relaxed);
        if self.unsettled_since.load(Relaxed) == NEVER {
            self.unsettled_since.store(now, Relaxed);
        }
    }

    /// Everything read so far belongs to messages already read (or to
    /// the next ones, already buffered whole: undercounting a message in
    /// progress only errs towards the plain keepalive rule).
    fn settle(&self) {
        self.settled.store(self.total.load(Relaxed), Relaxed);
        self.unsettled_since.store(NEVER, Relaxed);
    }

    /// When the message in progress began arriving, and when its latest
    /// byte arrived; `None` if no message is in progress.
    fn in_progress(&self) -> Option<(Instant, Instant)> {
        if self.total.load(Relaxed) == self.settled.load(Relaxed) {
            return None;
        }
        let since = self.unsettled_since.load(Relaxed);
        (since != NEVER).then(|| {
            let at = |n| self.epoch + Duration::from_nanos(n);
            (at(since), at(self.last_byte.load(Relaxed)))
        })
    }
}

fn nanos(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(NEVER - 1)
}

/// A socket whose reads are noted in the connection's [`Clock`].
pub(super) struct Metered<S> {
    inner: S,
    arrivals: Arc<Arrivals>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.arrivals.arrived(n);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Ends the connection when the client showed no sign of life for
/// `ping_interval + pong_timeout` (the writer pings every
/// `ping_interval`, so a live client always answers in time), or when a
/// message has been arriving for longer than `message_timeout`.
pub(super) async fn keepalive(shared: &Shared, clock: &Clock) -> End {
    let dead_after = shared.config.ping_interval + shared.config.pong_timeout;
    let message_timeout = shared.config.message_timeout;
    loop {
        let now = Instant::now();
        let mut alive_until = clock.last_alive() + dead_after;
        let mut wake = alive_until;
        if let Some((since, last_byte)) = clock.arrivals.in_progress() {
            let finish_by = since + message_timeout;
            if now >= finish_by {
                return End::Unfinished(message_timeout);
            }
            alive_until = alive_until.max(last_byte + dead_after);
            wake = alive_until.min(finish_by);
        }
        if now >= alive_until {
            return End::Dead(dead_after);
        }
        sleep_until(wake).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_answer_to_a_recent_ping_counts() {
        let clock = Clock::new();
        assert!(!clock.pong(&[]), "an empty unsolicited pong");
        assert!(!clock.pong(&0u64.to_be_bytes()));
        let first = clock.next_ping();
        let second = clock.next_ping();
        assert_ne!(first, second);
        assert!(clock.pong(&second));
        assert!(clock.pong(&first), "an answer crossing the next ping");
        let _third = clock.next_ping();
        assert!(!clock.pong(&first), "too old");
        assert!(!clock.pong(b"anything"));
    }

    #[test]
    fn bytes_after_the_last_whole_message_are_a_message_in_progress() {
        let clock = Clock::new();
        assert!(clock.arrivals.in_progress().is_none());
        clock.arrivals.arrived(10);
        let (since, last) = clock.arrivals.in_progress().unwrap();
        assert!(since <= last);
        clock.message_read();
        assert!(clock.arrivals.in_progress().is_none());
        clock.arrivals.arrived(1);
        assert!(clock.arrivals.in_progress().is_some());
    }
}
