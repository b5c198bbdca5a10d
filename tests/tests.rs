//! Integration tests of the `watchtower-websocket` facade: real servers on
//! 127.0.0.1 (a raw tokio-tungstenite server, the hub, a TCP fault proxy),
//! never a mocked socket. One test binary, so it links once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

mod at_least_once;
mod auth;
mod backpressure;
mod bad_input;
mod block;
mod chaos;
mod checkpoint;
mod dispatch;
mod edges;
mod engine;
mod failover;
mod filter_limits;
mod handlers;
mod hub;
mod hub_defaults;
mod identity;
mod keepalive;
mod malformed;
mod misuse;
mod reconnect;
mod resume;
mod shutdown;
mod spec_examples;
mod tls;
