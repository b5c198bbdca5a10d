//! The in-memory relay: what happens to a burst between the reader that
//! collected it and the writers that send it, with no I/O and no
//! connection in sight.
//!
//! - [`collect`]: frames read in one go, packed into one buffer.
//! - [`control`]: control frames (subscribe, unsubscribe, hello) parsed.
//! - [`filter`]: a client's filter and its limits.
//! - [`dedup`]: the window that drops an ack-mode client's resends.
//! - [`history`]: the log of relayed bursts at positions `(epoch, seq)`.
//! - [`keyhash`]: the hasher of the history's key index.
//! - [`outbox`]: one client's cursor and queue: what it is still to be
//!   sent, filtered, without its own events, lagging inside the history
//!   when its queue is full.
//! - [`sample`]: a sampled client's per-second window.
//! - [`fanout`]: the seam a burst crosses to reach every other client;
//!   [`fanout::Fanout`] is what a backplane implements.
//!
//! The floor: nothing here imports anything of the crate above it (the
//! connection, the HTTP side, the gates, the hub), only the configuration,
//! the errors and the stats' plain data; `xtask`'s hygiene tests check it.

pub(crate) mod collect;
pub(crate) mod control;
pub(crate) mod dedup;
pub(crate) mod fanout;
pub(crate) mod filter;
pub(crate) mod history;
pub(crate) mod keyhash;
pub(crate) mod outbox;
pub(crate) mod sample;
