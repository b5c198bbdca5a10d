//! Hubs that share one stream on NATS JetStream (feature `nats`): real
//! `nats-server -js` processes (see `watchtower_test_support::NatsServer`)
//! and real hubs on 127.0.0.1, driven by raw WebSocket clients.
//!
//! Run by `cargo xtask test` when a server is found or fetched; without
//! one, each test says `SKIPPED` on the terminal and returns.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support.rs"]
#[allow(dead_code)]
mod support;

mod bounded;
mod faults;
mod group;

mod ordering;
mod outage;
mod resume;
mod wipe;
