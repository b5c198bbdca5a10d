//! A worker pipeline, no WebSocket in sight: producers feed jobs into a
//! bounded `BackpressureQueue`, a pool of workers processes them in
//! batches, and everything that does not make it (evicted by the full
//! queue, or failed by a worker) goes to a `DeadLetterQueue`, whose consumer
//! retries it. At the end, every job is accounted for.
//!
//! Run it with:
//!
//! ```text
//! cargo run -p watchtower-backpressure --example pipeline
//! ```

use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use watchtower_backpressure::{
    BackpressureConfig, BackpressureQueue, BackpressureStrategy, PushError, Pushed,
};
use watchtower_dlq::{DeadLetterQueue, DeadLetterReason, DlqConfig};

const PRODUCERS: u32 = 3;
const JOBS_PER_PRODUCER: u32 = 200;
const WORKERS: usize = 2;

/// A unit of work.
#[derive(Debug, Clone)]
struct Job {
    id: u32,
}

/// The downstream a worker hands jobs to: every 10th job fails the first
/// time, and every 50th always fails.
fn process(job: &Job, retry: bool) -> Result<(), String> {
    if job.id.is_multiple_of(50) {
        Err(format!("job {} is malformed", job.id))
    } else if job.id.is_multiple_of(10) && !retry {
        Err(format!("job {}: downstream timed out", job.id))
    } else {
        Ok(())
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn Error>> {
    // A small queue that keeps the newest jobs when the workers fall behind:
    // each evicted job is handed back to its producer, which dead-letters it.
    let queue = Arc::new(BackpressureQueue::new(BackpressureConfig {
        max_queue_size: 64,
        strategy: BackpressureStrategy::DropOldest,
        warning_threshold: 0.9,
    })?);
    let dead = DeadLetterQueue::new(DlqConfig {
        capacity: 1_000,
        max_attempts: 2,
        retry_delay: Duration::from_millis(5),
    })?;
    let processed = Arc::new(AtomicU64::new(0));

    // The DLQ consumer retries failed and evicted jobs with the same
    // downstream; jobs that fail every retry are parked for inspection.
    let retried = Arc::new(AtomicU64::new(0));
    let dlq_consumer = dead.consume({
        let retried = Arc::clone(&retried);
        move |job: Job| {
            let result = process(&job, true);
            if result.is_ok() {
                retried.fetch_add(1, Ordering::Relaxed);
            }
            async move { result }
        }
    });

    // Workers: take up to 16 jobs at a time until the queue is closed and
    // empty; a failed job goes to the DLQ with its error.
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (queue, dead, processed) =
                (Arc::clone(&queue), dead.clone(), Arc::clone(&processed));
            tokio::spawn(async move {
                let mut batch = Vec::with_capacity(16);
                while queue.pop_batch(16, &mut batch).await > 0 {
                    for job in batch.drain(..) {
                        match process(&job, false) {
                            Ok(()) => {
                                processed.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(error) => {
                                dead.push(job, DeadLetterReason::HandlerFailed, error);
                            }
                        }
                    }
                    // The downstream takes a moment per batch.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        })
        .collect();

    // Producers: push in bursts, a little faster than the workers keep up
    // with; nothing is dropped silently.
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|producer| {
            let (queue, dead) = (Arc::clone(&queue), dead.clone());
            tokio::spawn(async move {
                for n in 1..=JOBS_PER_PRODUCER {
                    let job = Job {
                        id: producer * JOBS_PER_PRODUCER + n,
                    };
                    match queue.push(job).await {
                        Ok(Pushed::Enqueued) => {}
                        Ok(Pushed::Evicted(oldest)) => {
                            dead.push(oldest, DeadLetterReason::Overflow, "work queue full");
                        }
                        Err(PushError::Full(job) | PushError::Closed(job)) => {
                            dead.push(job, DeadLetterReason::Shutdown, "work queue refused it");
                        }
                        Err(error) => return Err(error.to_string()),
                    }
                    // Jobs arrive in bursts of 25, every 2 ms.
                    if n.is_multiple_of(25) {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
                Ok(())
            })
        })
        .collect();

    // Graceful shutdown: producers finish, the queue closes, workers empty
    // it, the DLQ consumer settles, then stops.
    for producer in producers {
        producer.await??;
    }
    queue.close();
    for worker in workers {
        worker.await?;
    }
    dead.settled().await;
    dlq_consumer.stop();
    dlq_consumer.stopped().await;

    let queue_stats = queue.stats();
    let dlq_stats = dead.stats();
    let processed = processed.load(Ordering::Relaxed);
    let retried = retried.load(Ordering::Relaxed);
    println!(
        "queue: enqueued {}, evicted {}, peak {} of {}",
        queue_stats.total_enqueued,
        queue_stats.evicted_events,
        queue_stats.peak_queue_size,
        queue_stats.max_queue_size
    );
    println!(
        "dead letters: {} (overflow {}, handler failed {}), recovered {}, parked {}",
        dlq_stats.total_pushed,
        dlq_stats.by_reason.get(DeadLetterReason::Overflow),
        dlq_stats.by_reason.get(DeadLetterReason::HandlerFailed),
        dlq_stats.consumed,
        dlq_stats.parked
    );
    for letter in dead.parked().iter().take(3) {
        println!(
            "  parked job {} ({}, {} attempts): {}",
            letter.item.id, letter.reason, letter.attempts, letter.error
        );
    }

    // Every job was processed by a worker, recovered by the DLQ consumer, or
    // parked: none was lost.
    let produced = u64::from(PRODUCERS * JOBS_PER_PRODUCER);
    println!(
        "produced {produced}: processed {processed} + recovered {retried} + parked {}",
        dlq_stats.parked
    );
    assert_eq!(retried, dlq_stats.consumed);
    assert_eq!(processed + retried + dlq_stats.parked as u64, produced);
    assert_eq!(dlq_stats.dropped, 0);
    Ok(())
}
