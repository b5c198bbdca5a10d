//! Integration tests of the hub, driven by raw tokio-tungstenite clients
//! (and a raw TCP one) on 127.0.0.1. One test binary, so it links once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

mod acks;
mod browser;
mod dashboard;
mod filters;
mod history;
mod hostile;
mod http;
mod identity;
mod keepalive;
mod malformed;
mod oversize;
mod pacing;
mod relay;
mod rss;
mod security;
mod shutdown;
mod slow;
