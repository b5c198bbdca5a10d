//! A bounded async queue with backpressure: [`BackpressureQueue`] sits
//! between the producers of items and the one task that consumes them, and
//! decides what happens when the consumer falls behind.
//!
//! It is one of Watchtower's resilience crates and knows nothing of
//! WebSockets: it is generic over the item type `T`. The WebSocket transport
//! queues serialized frames in it and its writer task drains them in batches,
//! but any producer/consumer pair can use it.
//!
//! # Strategies
//!
//! When the queue holds `max_queue_size` items, the
//! [`BackpressureStrategy`] decides:
//!
//! - **DropOldest** (default): evict the oldest item to make room, and hand
//!   it back to the pusher in [`Pushed::Evicted`].
//! - **DropNewest**: refuse the new item with [`PushError::Full`].
//! - **Block**: [`push`](BackpressureQueue::push) waits for room.
//!
//! Nothing is dropped silently: every item the queue does not keep is handed
//! back to the caller (to dead-letter it, say) and counted in
//! [`BackpressureStats`].
//!
//! # Consuming
//!
//! The consumer takes items in batches with
//! [`pop_batch`](BackpressureQueue::pop_batch), puts back those it could not
//! deliver with [`push_front`](BackpressureQueue::push_front), and takes
//! everything with [`drain`](BackpressureQueue::drain) when it gives up.
//! [`close`](BackpressureQueue::close) refuses further pushes and lets the
//! consumer empty the queue. Waiting uses `tokio::sync::Notify` and works on
//! any executor; the state is behind a `std` mutex that is never held across
//! an `.await`.
//!
//! A worker pipeline that dead-letters what the queue evicts and the
//! workers fail (with `watchtower-dlq`) is in the README and in
//! `examples/pipeline.rs`.
//!
//! # Example
//!
//! ```
//! use std::{error::Error, sync::Arc};
//! use watchtower_backpressure::{BackpressureConfig, BackpressureQueue, BackpressureStrategy};
//!
//! let runtime = tokio::runtime::Builder::new_current_thread()
//!     .enable_all()
//!     .build()?;
//! runtime.block_on(async {
//!     let queue = Arc::new(BackpressureQueue::new(BackpressureConfig {
//!         max_queue_size: 2,
//!         strategy: BackpressureStrategy::Block,
//!         warning_threshold: 0.8,
//!     })?);
//!
//!     // The consumer writes frames in batches until the queue is closed and empty.
//!     let consumer = tokio::spawn({
//!         let queue = Arc::clone(&queue);
//!         async move {
//!             let (mut batch, mut written) = (Vec::new(), Vec::new());
//!             while queue.pop_batch(64, &mut batch).await > 0 {
//!                 written.append(&mut batch);
//!             }
//!             written
//!         }
//!     });
//!
//!     // With `Block`, a push waits while the queue is full: nothing is dropped.
//!     for frame in ["a", "b", "c", "d", "e"] {
//!         queue.push(frame.to_string()).await?;
//!     }
//!     queue.close();
//!     assert!(queue.push("f".to_string()).await.is_err());
//!
//!     assert_eq!(consumer.await?, ["a", "b", "c", "d", "e"]);
//!     let stats = queue.stats();
//!     assert_eq!((stats.total_enqueued, stats.dropped_events), (5, 0));
//!     Ok::<_, Box<dyn Error>>(())
//! })?;
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```

mod config;
mod error;
mod queue;
mod stats;

pub use crate::{
    config::{BackpressureConfig, BackpressureStrategy},
    error::{ConfigError, PushError},
    queue::{BackpressureQueue, Pushed},
    stats::BackpressureStats,
};

#[cfg(test)]
mod proptests;

/// The README's examples, compiled and run as doctests so that they cannot
/// rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
