//! Failing and panicking handlers dead-letter their event and harm nothing
//! else.

use watchtower_test_support::{RawServer, wait_until};
use watchtower_websocket::DeadLetterReason;

use crate::support::{Collector, LIMIT, event, fast, n_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erroring_and_panicking_handlers_dead_letter_and_keep_running() {
    let server = RawServer::start().await;
    let transport = fast(&server.url(), 3).connect().await.unwrap();
    let healthy = Collector::default();
    transport
        .subscribe(vec![], healthy.handler())
        .await
        .unwrap();
    transport
        .subscribe(vec!["fails".into()], |event| {
            Box::pin(async move {
                if n_of(&event).is_multiple_of(2) {
                    Err(std::io::Error::other(format!("cannot handle {}", event.id)))?;
                }
                Ok(())
            })
        })
        .await
        .unwrap();
    transport
        .subscribe(vec!["panics".into()], |event| {
            Box::pin(async move {
                if n_of(&event) == 1 {
                    panic!("handler bug");
                }
                Ok(())
            })
        })
        .await
        .unwrap();
    wait_until("connected", LIMIT, || server.connections() == 1).await;

    for n in 0..4 {
        server.send_event(&event("fails", n));
    }
    for n in 0..3 {
        server.send_event(&event("panics", n));
    }
    wait_until("healthy subscription saw everything", LIMIT, || {
        healthy.len() == 7
    })
    .await;
    wait_until("handlers done", LIMIT, || {
        let s = transport.connection_stats();
        s.handler_ok + s.handler_errors + s.handler_panics == 14
    })
    .await;

    let stats = transport.connection_stats();
    assert_eq!(stats.handler_errors, 2);
    assert_eq!(stats.handler_panics, 1);
    let letters = transport.dead_letters().drain();
    assert_eq!(letters.len(), 3);
    assert!(
        letters
            .iter()
            .all(|l| l.reason == DeadLetterReason::HandlerFailed)
    );
    let failed: Vec<(String, u64)> = letters
        .iter()
        .map(|l| {
            (
                l.item.event().unwrap().event_type,
                n_of(&l.item.event().unwrap()),
            )
        })
        .collect();
    assert!(failed.contains(&("fails".to_string(), 0)));
    assert!(failed.contains(&("fails".to_string(), 2)));
    assert!(failed.contains(&("panics".to_string(), 1)));
    let panicked = letters
        .iter()
        .find(|l| l.item.event_type().as_deref() == Some("panics"))
        .unwrap();
    assert!(panicked.error.contains("handler bug"), "{}", panicked.error);
    let errored = letters
        .iter()
        .find(|l| l.item.event_type().as_deref() == Some("fails"))
        .unwrap();
    assert!(errored.error.contains("cannot handle"), "{}", errored.error);

    // The panicking subscription still runs.
    server.send_event(&event("panics", 9));
    wait_until("still running", LIMIT, || {
        transport.connection_stats().handler_ok >= 12
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_handler_does_not_stall_other_subscriptions_and_its_overflow_is_dead_lettered() {
    let server = RawServer::start().await;
    let transport = fast(&server.url(), 3)
        .mailbox_size(8)
        .connect()
        .await
        .unwrap();
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let fast_sub = Collector::default();
    transport
        .subscribe(vec![], fast_sub.handler())
        .await
        .unwrap();
    {
        let gate = std::sync::Arc::clone(&gate);
        transport
            .subscribe(vec![], move |_event| {
                let gate = std::sync::Arc::clone(&gate);
                Box::pin(async move {
                    // Blocks until the test opens the gate.
                    let _permit = gate.acquire().await?;
                    Ok(())
                })
            })
            .await
            .unwrap();
    }
    wait_until("connected", LIMIT, || server.connections() == 1).await;
    // In steps the fast handler keeps up with (its mailbox holds 8 too),
    // while the slow one stays blocked throughout.
    for step in 0..40u64 {
        for n in step * 5..step * 5 + 5 {
            server.send_event(&event("e", n));
        }
        wait_until("the fast subscription keeps up", LIMIT, || {
            fast_sub.len() as u64 == step * 5 + 5
        })
        .await;
    }
    assert_eq!(fast_sub.ns(), (0..200).collect::<Vec<_>>());
    let stats = transport.connection_stats();
    // The blocked subscription holds 8 events (the one in its handler
    // included); the rest overflowed.
    assert_eq!(stats.mailbox_overflow, 200 - 8);
    assert_eq!(transport.dlq_stats().by_reason.overflow, 200 - 8);
    // Publishing is not held up by the blocked handler either.
    for n in 0..1_000 {
        transport.publish(event("out", n)).await.unwrap();
    }
    transport.flush().await.unwrap();
    wait_until("every published event reached the server", LIMIT, || {
        server.received_count() == 1_000
    })
    .await;
    gate.add_permits(1_000);
    wait_until("slow one drains its mailbox", LIMIT, || {
        transport.connection_stats().handler_ok == 200 + 8
    })
    .await;
}
