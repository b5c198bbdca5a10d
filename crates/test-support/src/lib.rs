//! Test support for Watchtower, not part of the product: a controllable TCP
//! [`FaultProxy`], a raw tokio-tungstenite [`RawServer`] that records what it
//! receives and sends whatever a test asks, [`wait_until`], certificates
//! generated on the fly ([`tls`]), an in-memory log ([`LogCapture`]), a
//! [`TempDir`] and a real JetStream server ([`NatsServer`]).
//!
//! Everything here uses real sockets on 127.0.0.1; nothing is mocked.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use watchtower_test_support::{FaultProxy, RawServer};
//!
//! let server = RawServer::start().await;
//! let proxy = FaultProxy::start(server.addr()).await;
//! assert!(proxy.url("/events").starts_with("ws://127.0.0.1:"));
//! # });
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// tungstenite's handshake callback signature, not ours.
#![allow(clippy::result_large_err)]

mod files;
mod logs;
mod nats;
mod proxy;
mod server;
pub mod tls;
mod wait;

pub use files::TempDir;
pub use logs::{CaptureWriter, LogCapture};
pub use nats::{INSTALL_HINT, NatsServer, REQUIRE_ENV};
pub use proxy::{FaultProxy, Mode};
pub use server::{RawServer, Received, SequenceOf};
pub use wait::{unused_addr, wait_until, wait_until_async};
