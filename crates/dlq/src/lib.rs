//! A bounded in-memory dead-letter queue: [`DeadLetterQueue`] keeps items
//! that failed, with why and when, and can retry them with a consumer.
//!
//! It is one of Watchtower's resilience crates and knows nothing of
//! WebSockets: it is generic over the item type `T`. The WebSocket transport
//! dead-letters the events it evicts, cannot send, or whose handler fails,
//! so that nothing is lost silently; any application can do the same with
//! its own items.
//!
//! # In short
//!
//! - [`push`](DeadLetterQueue::push) stores an item with a
//!   [`DeadLetterReason`] and the error text. The store is bounded by
//!   `capacity`: when it is full, the oldest entry is evicted, counted and
//!   handed back.
//! - [`drain`](DeadLetterQueue::drain) takes the pending entries, oldest
//!   first, for an application that handles them itself.
//! - [`consume`](DeadLetterQueue::consume) starts a tokio task that retries
//!   entries with a handler as they arrive, up to `max_attempts` times each,
//!   `retry_delay` apart. Entries it gives up on are *parked*, for
//!   inspection with [`parked`](DeadLetterQueue::parked) and
//!   [`drain_parked`](DeadLetterQueue::drain_parked).
//! - [`settled`](DeadLetterQueue::settled) waits until the consumers have
//!   nothing left to do, for a graceful end of a pipeline.
//! - [`stats`](DeadLetterQueue::stats) counts everything, per reason too.
//!
//! A worker pipeline, with a bounded queue from `watchtower-backpressure`
//! in front and this queue behind the workers, is in the README and in
//! `watchtower-backpressure`'s `examples/pipeline.rs`.
//!
//! The queue is in memory only: entries are lost when the process exits.
//!
//! # Example
//!
//! ```
//! use std::{error::Error, time::Duration};
//! use watchtower_dlq::{DeadLetterQueue, DeadLetterReason, DlqConfig};
//!
//! let runtime = tokio::runtime::Builder::new_current_thread()
//!     .enable_all()
//!     .build()?;
//! runtime.block_on(async {
//!     let dlq = DeadLetterQueue::new(DlqConfig {
//!         capacity: 100,
//!         max_attempts: 2,
//!         retry_delay: Duration::from_millis(10),
//!     })?;
//!     dlq.push("frame 1".to_string(), DeadLetterReason::SendFailed, "connection reset");
//!     dlq.push("frame 2".to_string(), DeadLetterReason::Overflow, "queue full");
//!
//!     // A consumer retries each entry; "frame 2" keeps failing.
//!     let (calls_tx, mut calls) = tokio::sync::mpsc::unbounded_channel();
//!     let consumer = dlq.consume(move |frame: String| {
//!         let calls_tx = calls_tx.clone();
//!         async move {
//!             calls_tx.send(frame.clone()).ok();
//!             if frame == "frame 2" { Err("peer still down") } else { Ok(()) }
//!         }
//!     });
//!     let mut seen = Vec::new();
//!     for _ in 0..3 {
//!         seen.push(calls.recv().await.ok_or("consumer exited")?);
//!     }
//!     consumer.stop();
//!     consumer.stopped().await;
//!     assert_eq!(seen, ["frame 1", "frame 2", "frame 2"]);
//!
//!     // After `max_attempts` handler calls, "frame 2" was parked.
//!     let parked = dlq.drain_parked();
//!     assert_eq!(parked.len(), 1);
//!     assert_eq!(parked[0].item, "frame 2");
//!     assert_eq!(parked[0].error, "peer still down");
//!     assert_eq!(parked[0].attempts, 3); // the original failure + 2 calls
//!     let stats = dlq.stats();
//!     assert_eq!((stats.total_pushed, stats.consumed, stats.retries), (2, 1, 3));
//!     Ok::<_, Box<dyn Error>>(())
//! })?;
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```

mod config;
mod consumer;
mod error;
mod letter;
mod queue;
mod stats;

pub use crate::{
    config::DlqConfig,
    consumer::ConsumerHandle,
    error::ConfigError,
    letter::{DeadLetter, DeadLetterReason},
    queue::DeadLetterQueue,
    stats::{DlqStats, ReasonCounts},
};

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

/// The README's examples, compiled and run as doctests so that they cannot
/// rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
