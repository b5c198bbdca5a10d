//! The raw tokio-tungstenite peers: what a user would write by hand.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::BenchError;

/// Aborts its tasks when dropped.
pub(crate) struct Tasks(Vec<JoinHandle<()>>);

impl Tasks {
    pub(crate) fn one(task: JoinHandle<()>) -> Tasks {
        Tasks(vec![task])
    }

    pub(crate) fn many(tasks: Vec<JoinHandle<()>>) -> Tasks {
        Tasks(tasks)
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Counts text frames from every client; wakes a waiter at a target.
pub(crate) struct CountingServer {
    pub(crate) addr: SocketAddr,
    count: Arc<AtomicU64>,
    target: Arc<AtomicU64>,
    reached: Arc<Notify>,
    _tasks: Tasks,
}

impl CountingServer {
    pub(crate) async fn start() -> Result<CountingServer, BenchError> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let count = Arc::new(AtomicU64::new(0));
        let target = Arc::new(AtomicU64::new(u64::MAX));
        let reached = Arc::new(Notify::new());
        let (c, t, r) = (
            Arc::clone(&count),
            Arc::clone(&target),
            Arc::clone(&reached),
        );
        let accept = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (c, t, r) = (Arc::clone(&c), Arc::clone(&t), Arc::clone(&r));
                tokio::spawn(async move {
                    let _ = tcp.set_nodelay(true);
                    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                        return;
                    };
                    while let Some(Ok(message)) = ws.next().await {
                        if message.is_text() && c.fetch_add(1, Relaxed) + 1 == t.load(Relaxed) {
                            r.notify_one();
                        }
                    }
                });
            }
        });
        Ok(CountingServer {
            addr,
            count,
            target,
            reached,
            _tasks: Tasks(vec![accept]),
        })
    }

    pub(crate) fn url(&self) -> String {
        format!("ws://{}/events", self.addr)
    }

    /// Resets the count and arms the wake-up at `target`.
    pub(crate) fn expect(&self, target: u64) {
        self.count.store(0, Relaxed);
        self.target.store(target, Relaxed);
    }

    /// Waits until the armed target is counted.
    pub(crate) async fn reached(&self) {
        loop {
            let notified = self.reached.notified();
            if self.count.load(Relaxed) >= self.target.load(Relaxed) {
                return;
            }
            notified.await;
        }
    }
}

/// Relays every text frame to every other client (the raw latency peer),
/// feeding what is waiting and flushing once, as a careful user would.
pub(crate) async fn relay_server() -> Result<(SocketAddr, Tasks), BenchError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (tx, _) = broadcast::channel::<(u64, Utf8Bytes)>(1024);
    let accept = tokio::spawn(async move {
        let mut next_id = 0u64;
        while let Ok((tcp, _)) = listener.accept().await {
            next_id += 1;
            let id = next_id;
            let tx = tx.clone();
            let mut rx = tx.subscribe();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let (mut sink, mut stream) = ws.split();
                loop {
                    tokio::select! {
                        message = stream.next() => match message {
                            Some(Ok(Message::Text(text))) => { let _ = tx.send((id, text)); }
                            Some(Ok(_)) => {}
                            _ => return,
                        },
                        relayed = rx.recv() => match relayed {
                            Ok((from, text)) => {
                                // Feed what is waiting, flush once.
                                let mut fed = false;
                                let mut next = Some((from, text));
                                while let Some((from, text)) = next {
                                    if from != id {
                                        if sink.feed(Message::Text(text)).await.is_err() { return; }
                                        fed = true;
                                    }
                                    next = rx.try_recv().ok();
                                }
                                if fed && sink.flush().await.is_err() { return; }
                            }
                            Err(broadcast::error::RecvError::Lagged(_)) => {}
                            Err(broadcast::error::RecvError::Closed) => return,
                        },
                    }
                }
            });
        }
    });
    Ok((addr, Tasks(vec![accept])))
}

/// A broadcast server done well by hand: the publisher (path `/publish`)
/// sends frames; each is serialised once and shared with every subscriber,
/// whose task feeds all that is waiting and flushes once.
// tungstenite's handshake callback returns its large `ErrorResponse`.
#[allow(clippy::result_large_err)]
pub(crate) async fn broadcast_server(capacity: usize) -> Result<(SocketAddr, Tasks), BenchError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (tx, _) = broadcast::channel::<Utf8Bytes>(capacity.max(16));
    let accept = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            let rx = tx.subscribe();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let mut publisher = false;
                let callback =
                    |request: &tokio_tungstenite::tungstenite::handshake::server::Request,
                     response| {
                        publisher = request.uri().path() == "/publish";
                        Ok(response)
                    };
                let Ok(ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
                    return;
                };
                let (mut sink, mut stream) = ws.split();
                if publisher {
                    drop(rx);
                    while let Some(Ok(message)) = stream.next().await {
                        if let Message::Text(text) = message {
                            let _ = tx.send(text);
                        }
                    }
                    return;
                }
                drop(tx);
                let mut rx = rx;
                let reader =
                    tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
                loop {
                    let first = match rx.recv().await {
                        Ok(text) => text,
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => break,
                    };
                    if sink.feed(Message::Text(first)).await.is_err() {
                        break;
                    }
                    while let Ok(text) = rx.try_recv() {
                        if sink.feed(Message::Text(text)).await.is_err() {
                            break;
                        }
                    }
                    if sink.flush().await.is_err() {
                        break;
                    }
                }
                reader.abort();
            });
        }
    });
    Ok((addr, Tasks(vec![accept])))
}
