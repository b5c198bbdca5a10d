//! The answer to a connection over its address's handshake budget: held
//! for [`DELAY`], then answered with a canned 429 and closed (on a `wss://`
//! hub only closed: the client is waiting for a TLS handshake, and plain
//! HTTP there would read as a broken server), so a client
//! upgrading in a tight loop makes about one attempt a second per
//! connection it loops on instead of thousands. One task holds them all,
//! in arrival order (every one waits the same time, so the queue is also
//! the order they are due in), and at most [`CAPACITY`] at once: past it
//! a refused connection is closed at once, so the tarpit cannot itself be
//! used to take the hub's tasks or descriptors.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};

/// How long a refused connection waits for its answer.
pub(crate) const DELAY: Duration = Duration::from_secs(1);

/// Most refused connections held at once, hub-wide: as many as
/// `max_pending_handshakes` takes by default, so the descriptors the
/// tarpit can hold are bounded like those of handshakes.
pub(crate) const CAPACITY: usize = 256;

/// Most bytes of a held connection's request read (and dropped) before it
/// is closed: closing a socket with unread bytes sends a reset, which
/// may reach the client before it read the answer.
const DRAIN: usize = 8 * 1024;

/// A refused connection and when it is due.
#[derive(Debug)]
struct Held {
    /// Its place among the [`CAPACITY`] held, given back once answered
    /// (first: fields drop in order, so the place is free before the
    /// client sees the close).
    _place: OwnedSemaphorePermit,
    tcp: TcpStream,
    due: Instant,
    retry_after: u64,
}

/// Hands refused connections to the tarpit's task; dropping it lets the
/// task answer those it holds and end.
#[derive(Debug)]
pub(crate) struct Tarpit {
    held: mpsc::Sender<Held>,
    /// Places for connections held, so that at most the capacity are,
    /// counting the one the task is waiting on.
    places: Arc<Semaphore>,
    delay: Duration,
}

/// How a held connection is answered once due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// `429 Too Many Requests` with `Retry-After`, in plain HTTP.
    TooManyRequests,
    /// Closed without a word (a `wss://` hub).
    Close,
}

impl Tarpit {
    /// Starts the task that answers held connections with `answer`.
    pub(crate) fn start(answer: Answer) -> (Tarpit, JoinHandle<()>) {
        Tarpit::with(CAPACITY, DELAY, answer)
    }

    fn with(capacity: usize, delay: Duration, answer: Answer) -> (Tarpit, JoinHandle<()>) {
        let (held, mut due) = mpsc::channel::<Held>(capacity);
        let task = tokio::spawn(async move {
            while let Some(held) = due.recv().await {
                sleep_until(held.due).await;
                drain(&held.tcp);
                if answer == Answer::TooManyRequests {
                    too_many_requests(&held);
                }
            }
        });
        let places = Arc::new(Semaphore::new(capacity));
        (
            Tarpit {
                held,
                places,
                delay,
            },
            task,
        )
    }

    /// Holds `tcp` to answer it with 429 and `Retry-After` (`wait`, in
    /// whole seconds, at least 1) after [`DELAY`]; `false` if the tarpit
    /// is full, and `tcp` was closed at once.
    pub(crate) fn hold(&self, tcp: TcpStream, wait: Duration) -> bool {
        let Ok(place) = Arc::clone(&self.places).try_acquire_owned() else {
            return false;
        };
        let retry_after = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
        let held = Held {
            _place: place,
            tcp,
            due: Instant::now() + self.delay,
            retry_after,
        };
        // Never full: it has room for every place.
        self.held.try_send(held).is_ok()
    }
}

/// Reads (and drops) up to [`DRAIN`] bytes the client sent, so that the
/// close is a close, not a reset.
fn drain(tcp: &TcpStream) {
    let mut scratch = [0u8; 1024];
    let mut drained = 0;
    while drained < DRAIN {
        match tcp.try_read(&mut scratch) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

/// Writes the 429 if the socket takes it at once (a new socket's send
/// buffer always does); the caller closes.
fn too_many_requests(held: &Held) {
    const BODY: &str = "too many requests: too many connections from this address; retry later\n";
    let response = format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: text/plain; charset=utf-8\r\n\
         content-length: {}\r\nretry-after: {}\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len(),
        held.retry_after
    );
    let _ = held.tcp.try_write(response.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A connection accepted by `listener`, as a client and a server side.
    async fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (client.unwrap(), accepted.unwrap().0)
    }

    async fn read_all(mut client: TcpStream) -> String {
        let mut text = String::new();
        let _ = client.read_to_string(&mut text).await;
        text
    }

    #[tokio::test]
    async fn held_connections_get_a_429_after_the_delay_and_past_the_capacity_are_closed_at_once() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let delay = Duration::from_millis(300);
        let (tarpit, _task) = Tarpit::with(2, delay, Answer::TooManyRequests);
        let start = Instant::now();
        let mut clients = Vec::new();
        for _ in 0..2 {
            let (mut client, server) = pair(&listener).await;
            client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
            assert!(tarpit.hold(server, Duration::from_millis(1500)));
            clients.push(client);
        }
        let (third, server) = pair(&listener).await;
        assert!(!tarpit.hold(server, Duration::from_secs(1)), "full");
        assert_eq!(read_all(third).await, "", "closed at once, unanswered");
        for client in clients {
            let text = read_all(client).await;
            assert!(start.elapsed() >= delay, "answered only after the delay");
            assert!(
                text.starts_with("HTTP/1.1 429 Too Many Requests\r\n"),
                "{text}"
            );
            assert!(text.contains("retry-after: 2\r\n"), "{text}");
        }
        // Answered, their places are free again.
        let (client, server) = pair(&listener).await;
        assert!(tarpit.hold(server, Duration::ZERO));
        assert!(read_all(client).await.contains("retry-after: 1\r\n"));
    }

    #[tokio::test]
    async fn a_tls_hubs_tarpit_only_closes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (tarpit, _task) = Tarpit::with(2, Duration::from_millis(10), Answer::Close);
        let (client, server) = pair(&listener).await;
        assert!(tarpit.hold(server, Duration::ZERO));
        assert_eq!(read_all(client).await, "", "closed, no plain HTTP");
    }
}
