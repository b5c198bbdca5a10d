//! A circuit breaker in a tower stack, with no WebSocket or network in sight:
//! a local HTTP-like service that fails on demand sits behind
//! `CircuitBreakerLayer` and one of tower's own layers.
//!
//! Run it with:
//!
//! ```text
//! cargo run -p watchtower-circuit-breaker --features tower --example tower_service
//! ```

use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use watchtower_circuit_breaker::{
    CallError, CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, CircuitState,
};

/// What the backend is asked for.
#[derive(Debug)]
struct Request {
    path: &'static str,
}

/// What the backend answers.
#[derive(Debug)]
struct Response {
    status: u16,
    body: String,
}

/// The backend's error while it is down.
#[derive(Debug, thiserror::Error)]
#[error("connection refused")]
struct Unavailable;

/// One request through the stack, printed.
async fn get<S>(client: &mut S, path: &'static str) -> Result<(), CallError<Unavailable>>
where
    S: Service<Request, Response = Response, Error = CallError<Unavailable>>,
{
    let answer = client.ready().await?.call(Request { path }).await;
    match &answer {
        Ok(response) => println!("GET {path} -> {} {}", response.status, response.body),
        Err(CallError::Rejected(rejected)) => println!("GET {path} -> rejected: {rejected}"),
        Err(CallError::Inner(error)) => println!("GET {path} -> failed: {error}"),
    }
    answer.map(drop)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    // The backend: answers while up, refuses while down, and counts calls.
    let down = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let backend = service_fn({
        let (down, calls) = (Arc::clone(&down), Arc::clone(&calls));
        move |request: Request| {
            calls.fetch_add(1, Ordering::Relaxed);
            let down = down.load(Ordering::Relaxed);
            async move {
                if down {
                    Err(Unavailable)
                } else {
                    Ok(Response {
                        status: 200,
                        body: format!("hello from {}", request.path),
                    })
                }
            }
        }
    });

    // Three failures in a row open the circuit for 200 ms; one successful
    // trial closes it again. The breaker is shared, so we can watch it.
    let breaker = Arc::new(CircuitBreaker::new(CircuitBreakerConfig {
        failure_threshold: 3,
        timeout: Duration::from_millis(200),
        success_threshold: 1,
    })?);
    let mut client = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(Arc::clone(&breaker)))
        .concurrency_limit(16)
        .service(backend);

    get(&mut client, "/users").await?;

    println!("-- the backend goes down");
    down.store(true, Ordering::Relaxed);
    for _ in 0..3 {
        let failed = get(&mut client, "/users").await;
        assert!(matches!(failed, Err(CallError::Inner(Unavailable))));
    }
    println!("circuit: {:?}", breaker.state());

    // While open, calls fail fast and the backend is not called at all.
    let before = calls.load(Ordering::Relaxed);
    for _ in 0..5 {
        let rejected = get(&mut client, "/users").await;
        assert!(rejected.is_err_and(|error| error.is_rejected()));
    }
    assert_eq!(calls.load(Ordering::Relaxed), before);

    println!("-- the backend comes back; waiting out the open timeout");
    down.store(false, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(200)).await;
    get(&mut client, "/users").await?;
    assert_eq!(breaker.state(), CircuitState::Closed);

    let stats = breaker.stats();
    println!(
        "circuit: {:?}; requests {}, rejected {}, failures {}, opened {} time(s)",
        stats.state,
        stats.total_requests,
        stats.rejected_requests,
        stats.total_failures,
        stats.times_opened
    );
    Ok(())
}
