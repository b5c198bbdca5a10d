//! A TCP proxy between a client and a server that a test can break on
//! purpose.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How the proxy treats bytes, in both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything at once.
    Pass,
    /// Hold each chunk this long before forwarding it (order is kept).
    Latency(Duration),
    /// Accept bytes and forward nothing: a half-open connection. Both
    /// sides' sockets stay open.
    Blackhole,
    /// Forward at most this many bytes per second.
    Bandwidth(u64),
    /// Forward one byte per write.
    OneByteWrites,
}

/// Commands that act on the connections open now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kill {
    None,
    /// RST both sides.
    Reset(u64),
    /// Close (FIN) the client side only.
    CloseClient(u64),
    /// Close (FIN) the server side only.
    CloseServer(u64),
}

struct State {
    mode: watch::Sender<Mode>,
    kill: watch::Sender<Kill>,
    generation: AtomicU64,
    open: AtomicUsize,
    accepted: AtomicU64,
    forwarded_up: AtomicU64,
}

/// A TCP proxy on 127.0.0.1 in front of `upstream`.
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<State>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .finish()
    }
}

impl FaultProxy {
    /// Starts forwarding new connections to `upstream`.
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            mode: watch::Sender::new(Mode::Pass),
            kill: watch::Sender::new(Kill::None),
            generation: AtomicU64::new(0),
            open: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
            forwarded_up: AtomicU64::new(0),
        });
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = {
            let state = Arc::clone(&state);
            let tasks = Arc::clone(&tasks);
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        // Nothing upstream: refuse by closing at once.
                        drop(client);
                        continue;
                    };
                    state.accepted.fetch_add(1, SeqCst);
                    let task = tokio::spawn(relay(client, server, Arc::clone(&state)));
                    tasks.lock().unwrap().push(task);
                }
            })
        };
        tasks.lock().unwrap().push(accept);
        FaultProxy { addr, state, tasks }
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://PROXY{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// Changes how bytes are forwarded, for open and future connections.
    pub fn set_mode(&self, mode: Mode) {
        self.state.mode.send_replace(mode);
    }

    /// Resets (RST) both sides of every open connection.
    pub fn reset_all(&self) {
        let g = self.state.generation.fetch_add(1, SeqCst) + 1;
        self.state.kill.send_replace(Kill::Reset(g));
    }

    /// Closes the client side of every open connection (the server side is
    /// left open).
    pub fn close_client_side(&self) {
        let g = self.state.generation.fetch_add(1, SeqCst) + 1;
        self.state.kill.send_replace(Kill::CloseClient(g));
    }

    /// Closes the server side of every open connection.
    pub fn close_server_side(&self) {
        let g = self.state.generation.fetch_add(1, SeqCst) + 1;
        self.state.kill.send_replace(Kill::CloseServer(g));
    }

    /// Connections open through the proxy now.
    pub fn open_connections(&self) -> usize {
        self.state.open.load(SeqCst)
    }

    /// Connections accepted since start.
    pub fn accepted(&self) -> u64 {
        self.state.accepted.load(SeqCst)
    }

    /// Bytes forwarded client → server.
    pub fn bytes_up(&self) -> u64 {
        self.state.forwarded_up.load(SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

async fn relay(client: TcpStream, server: TcpStream, state: Arc<State>) {
    state.open.fetch_add(1, SeqCst);
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // Each pump owns one read half and one write half and obeys kill
    // commands itself, so a reset can set linger zero before the drop.
    tokio::join!(
        pump(client_read, server_write, Arc::clone(&state), true),
        pump(server_read, client_write, Arc::clone(&state), false),
    );
    state.open.fetch_sub(1, SeqCst);
}

/// Copies one direction, applying the mode and obeying kill commands. Owns
/// both halves so that a kill can choose between RST and FIN.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, state: Arc<State>, upstream: bool) {
    let born = state.generation.load(SeqCst);
    let mut mode = state.mode.subscribe();
    let mut kill = state.kill.subscribe();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => { let _ = to.shutdown().await; return; }
                Ok(n) => n,
            },
            _ = kill.changed() => {
                let k = *kill.borrow_and_update();
                match k {
                    Kill::Reset(g) if g > born => {
                        // Linger zero makes the close an RST.
                        let _ = to.as_ref().set_zero_linger();
                        let _ = from.as_ref().set_zero_linger();
                        return;
                    }
                    Kill::CloseClient(g) if g > born => {
                        // Close the client side: its writer half is `to` when
                        // pumping downstream, its reader half `from` upstream.
                        if !upstream { let _ = to.shutdown().await; }
                        std::future::pending::<()>().await;
                        return;
                    }
                    Kill::CloseServer(g) if g > born => {
                        if upstream { let _ = to.shutdown().await; }
                        std::future::pending::<()>().await;
                        return;
                    }
                    _ => continue,
                }
            }
        };
        let current = *mode.borrow_and_update();
        let written = match current {
            Mode::Pass => to.write_all(&buf[..n]).await,
            Mode::Latency(d) => {
                tokio::time::sleep(d).await;
                to.write_all(&buf[..n]).await
            }
            Mode::Blackhole => Ok(()),
            Mode::Bandwidth(per_second) => {
                let per_second = per_second.max(1);
                let mut result = Ok(());
                for chunk in buf[..n].chunks(((per_second / 100).max(1)) as usize) {
                    tokio::time::sleep(Duration::from_secs_f64(
                        chunk.len() as f64 / per_second as f64,
                    ))
                    .await;
                    result = to.write_all(chunk).await;
                    if result.is_err() {
                        break;
                    }
                }
                result
            }
            Mode::OneByteWrites => {
                let mut result = Ok(());
                for byte in &buf[..n] {
                    result = to.write_all(std::slice::from_ref(byte)).await;
                    if result.is_err() {
                        break;
                    }
                }
                result
            }
        };
        if written.is_err() {
            return;
        }
        if upstream && current != Mode::Blackhole {
            state.forwarded_up.fetch_add(n as u64, SeqCst);
        }
    }
}
