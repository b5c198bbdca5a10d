//! Integration tests of the `watchtower` binary, run as a process against a
//! hub started in the test. One test binary, so it links once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod process;
mod support;

mod checkpoint;
mod errors;
mod hub;
mod pubsub;
mod security;
