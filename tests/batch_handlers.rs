//! `subscribe_batch`: the handler gets what its subscription has waiting
//! in one call, in order; a failed batch is dead-lettered event by event;
//! a slow batch handler stalls nothing else.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;
use watchtower_test_support::{RawServer, wait_until};
use watchtower_websocket::DeadLetterReason;

use crate::support::{Collector, LIMIT, event, fast, n_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_handler_gets_everything_waiting_in_one_call_in_order() {
    let server = RawServer::start().await;
    let transport = fast(&server.url(), 3).connect().await.unwrap();
    let batches: Arc<Mutex<Vec<Vec<u64>>>> = Arc::default();
    let gate = Arc::new(Semaphore::new(0));
    {
        let (batches, gate) = (Arc::clone(&batches), Arc::clone(&gate));
        transport
            .subscribe_batch(vec!["wanted".into()], move |events| {
                let (batches, gate) = (Arc::clone(&batches), Arc::clone(&gate));
                Box::pin(async move {
                    batches
                        .lock()
                        .unwrap()
                        .push(events.iter().map(n_of).collect());
                    // Each call waits for a permit, so events pile up.
                    gate.acquire().await?.forget();
                    Ok(())
                })
            })
            .await
            .unwrap();
    }
    wait_until("connected", LIMIT, || server.connections() == 1).await;
    server.send_event(&event("wanted", 0));
    wait_until("the first batch is in the handler", LIMIT, || {
        batches.lock().unwrap().len() == 1
    })
    .await;
    // While the handler holds event 0, ten more arrive (and ones its
    // filter does not want).
    for n in 1..=10 {
        server.send_event(&event("wanted", n));
        server.send_event(&event("other", n));
    }
    wait_until("all ten are in the mailbox", LIMIT, || {
        transport.connection_stats().events_dispatched == 11
    })
    .await;
    gate.add_permits(2);
    wait_until("both batches handled", LIMIT, || {
        transport.connection_stats().handler_ok == 11
    })
    .await;
    assert_eq!(
        *batches.lock().unwrap(),
        vec![vec![0], (1..=10).collect::<Vec<u64>>()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_is_dead_lettered_event_by_event_and_a_slow_one_stalls_nothing() {
    let server = RawServer::start().await;
    let transport = fast(&server.url(), 3).connect().await.unwrap();
    let others = Collector::default();
    transport.subscribe(vec![], others.handler()).await.unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    {
        let (gate, calls) = (Arc::clone(&gate), Arc::clone(&calls));
        transport
            .subscribe_batch(vec![], move |events| {
                let gate = Arc::clone(&gate);
                calls.fetch_add(1, Relaxed);
                Box::pin(async move {
                    gate.acquire().await?.forget();
                    if events.iter().any(|e| e.event_type == "panics") {
                        panic!("batch handler bug");
                    }
                    if events.iter().any(|e| e.event_type == "fails") {
                        Err(std::io::Error::other("cannot handle this batch"))?;
                    }
                    Ok(())
                })
            })
            .await
            .unwrap();
    }
    wait_until("connected", LIMIT, || server.connections() == 1).await;
    // The batch handler is blocked throughout: the other subscription
    // still gets everything.
    server.send_event(&event("fine", 0));
    wait_until("event 0 is in the batch handler", LIMIT, || {
        calls.load(Relaxed) == 1
    })
    .await;
    for n in 1..=3 {
        server.send_event(&event("fails", n));
    }
    wait_until("the other subscription is not stalled", LIMIT, || {
        others.len() == 4
    })
    .await;
    assert_eq!(transport.connection_stats().handler_ok, 4);
    // Event 0 alone, then 1..=3 together: the second batch fails whole.
    gate.add_permits(2);
    wait_until("the failed batch is dead-lettered", LIMIT, || {
        transport.dlq_stats().total_pushed == 3
    })
    .await;
    server.send_event(&event("panics", 4));
    gate.add_permits(1);
    wait_until("the panicked batch is dead-lettered", LIMIT, || {
        transport.dlq_stats().total_pushed == 4
    })
    .await;
    let stats = transport.connection_stats();
    assert_eq!(stats.handler_ok, 4 + 1 + 1);
    assert_eq!(stats.handler_errors, 3);
    assert_eq!(stats.handler_panics, 1);
    let letters = transport.dead_letters().drain();
    assert!(
        letters
            .iter()
            .all(|l| l.reason == DeadLetterReason::HandlerFailed)
    );
    let mut failed: Vec<u64> = letters
        .iter()
        .map(|l| n_of(&l.item.event().unwrap()))
        .collect();
    failed.sort_unstable();
    assert_eq!(failed, vec![1, 2, 3, 4]);
    assert!(
        letters
            .iter()
            .any(|l| l.error.contains("batch handler bug")),
        "{letters:?}"
    );
    // Still running after the panic.
    server.send_event(&event("fine", 5));
    gate.add_permits(1);
    wait_until("still running", LIMIT, || {
        transport.connection_stats().handler_ok == 4 + 1 + 1 + 2
    })
    .await;
}
