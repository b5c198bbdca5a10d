//! Authenticated handshakes against the hub: bearer tokens, the credential
//! provider and its refresh, refusals that do not turn into reconnect
//! storms, and secrets kept out of logs, errors and `Debug` output.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use watchtower_hub::Hub;
use watchtower_test_support::{FaultProxy, LogCapture, RawServer, wait_until};
use watchtower_websocket::prelude::*;
use watchtower_websocket::{Credentials, MaxAttempts, ReconnectPolicy, TransportBuilder};

use crate::support::{Collector, LIMIT, event, fast};

/// Long enough that no half-open trial happens while a test runs, so the
/// attempts counted are all there are.
const NO_TRIAL: Duration = Duration::from_secs(3600);

async fn token_hub_on(addr: SocketAddr, token: &str) -> Hub {
    Hub::builder().bearer_token(token).bind(addr).await.unwrap()
}

async fn token_hub(token: &str) -> Hub {
    token_hub_on("127.0.0.1:0".parse().unwrap(), token).await
}

/// A token service for the credential provider: hands out its tokens in
/// order, repeating the last, and remembers every one handed out.
#[derive(Clone)]
struct Tokens {
    state: Arc<Mutex<(VecDeque<String>, Vec<String>)>>,
}

impl Tokens {
    fn new(sequence: &[&str]) -> Tokens {
        let upcoming = sequence.iter().map(|t| t.to_string()).collect();
        Tokens {
            state: Arc::new(Mutex::new((upcoming, Vec::new()))),
        }
    }

    /// From now on, hands out `token` only.
    fn rotate(&self, token: &str) {
        self.state.lock().unwrap().0 = VecDeque::from([token.to_string()]);
    }

    fn next(&self) -> String {
        let mut state = self.state.lock().unwrap();
        let (upcoming, handed_out) = &mut *state;
        let token = if upcoming.len() > 1 {
            upcoming.pop_front().unwrap()
        } else {
            upcoming.front().unwrap().clone()
        };
        handed_out.push(token.clone());
        token
    }

    fn handed_out(&self) -> Vec<String> {
        self.state.lock().unwrap().1.clone()
    }

    /// `builder` with this as its credential provider.
    fn provide(&self, builder: TransportBuilder) -> TransportBuilder {
        let tokens = self.clone();
        builder.credential_provider(move || {
            let token = tokens.next();
            async move { Ok::<_, std::io::Error>(Credentials::bearer(token)) }
        })
    }
}

fn is_auth_401(result: &Result<WebSocketTransport, WatchtowerError>) -> bool {
    matches!(result, Err(WatchtowerError::Auth { status: 401 }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_token_connects_in_a_header_or_the_query() {
    let hub = token_hub("s3cret-token").await;
    let subscriber = fast(&hub.url(), 0)
        .bearer_token("s3cret-token")
        .server_filters(true)
        .connect()
        .await
        .unwrap();
    let publisher = fast(&format!("{}?token=s3cret-token", hub.url()), 0)
        .connect()
        .await
        .unwrap();
    let got = Collector::default();
    subscriber
        .subscribe(vec!["t".into()], got.handler())
        .await
        .unwrap();
    publisher.publish(event("t", 1)).await.unwrap();
    wait_until("relayed between authenticated clients", LIMIT, || {
        got.len() == 1
    })
    .await;
    let stats = hub.stats();
    assert_eq!((stats.clients, stats.auth_rejected), (2, 0));
    subscriber.shutdown().await.unwrap();
    publisher.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_is_a_typed_auth_error_after_one_attempt() {
    let hub = token_hub("s3cret-token").await;
    // The proxy counts TCP connections: every attempt is one.
    let proxy = FaultProxy::start(hub.local_addr()).await;

    // Five retries allowed, but a rejected static token cannot get better.
    let result = fast(&proxy.url("/events"), 5)
        .bearer_token("wrong-token")
        .connect()
        .await;
    assert!(is_auth_401(&result), "{result:?}");
    assert_eq!(proxy.accepted(), 1);

    // No token at all: the same.
    let result = fast(&proxy.url("/events"), 5).connect().await;
    assert!(is_auth_401(&result), "{result:?}");
    assert_eq!(proxy.accepted(), 2);

    wait_until("the hub counted both refusals", LIMIT, || {
        hub.stats().auth_rejected == 2
    })
    .await;
    assert_eq!(hub.stats().connections_total, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_is_asked_once_more_then_connecting_stops() {
    let hub = token_hub("s3cret-token").await;
    let proxy = FaultProxy::start(hub.local_addr()).await;
    let tokens = Tokens::new(&["revoked-token"]);

    let result = tokens
        .provide(fast(&proxy.url("/events"), 5))
        .connect()
        .await;
    assert!(is_auth_401(&result), "{result:?}");
    // The first refusal made it ask for a fresh token at once; the second
    // stopped it, with four retries left.
    assert_eq!(tokens.handed_out().len(), 2);
    assert_eq!(proxy.accepted(), 2);
    wait_until("the hub counted both refusals", LIMIT, || {
        hub.stats().auth_rejected == 2
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_token_is_refreshed_at_once() {
    let hub = token_hub("fresh-token").await;
    let tokens = Tokens::new(&["stale-token", "fresh-token"]);
    let transport = tokens.provide(fast(&hub.url(), 0)).connect().await.unwrap();
    // Even with no retries allowed, the refusal of the stale token earned
    // exactly one immediate attempt with a fresh one.
    assert_eq!(tokens.handed_out(), ["stale-token", "fresh-token"]);
    wait_until("connected, the stale token refused", LIMIT, || {
        transport.state().is_connected() && hub.stats().auth_rejected == 1
    })
    .await;
    assert_eq!(hub.stats().clients, 1);
    transport.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_provider_is_a_credentials_error_before_any_connection() {
    let hub = token_hub("s3cret-token").await;
    let proxy = FaultProxy::start(hub.local_addr()).await;
    let result = fast(&proxy.url("/events"), 0)
        .credential_provider(|| async {
            Err::<Credentials, _>(std::io::Error::other("the token service is down"))
        })
        .connect()
        .await;
    match result {
        Err(error @ WatchtowerError::Credentials(_)) => {
            let text = error.to_string();
            assert!(text.contains("credential provider"), "{text}");
            assert!(text.contains("the token service is down"), "{text}");
        }
        other => panic!("expected a Credentials error, got {other:?}"),
    }
    assert_eq!(proxy.accepted(), 0);
}

/// A reconnect loop on unlimited retries still stops at a refused token:
/// two attempts, then the breaker opens, instead of hammering the hub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_refused_on_reconnect_opens_the_breaker_without_a_storm() {
    let first = token_hub("old-token").await;
    let addr = first.local_addr();
    let tokens = Tokens::new(&["old-token"]);
    let transport = tokens
        .provide(fast(&first.url(), 0))
        .reconnect_policy(ReconnectPolicy::fixed(
            Duration::from_millis(20),
            MaxAttempts::Unlimited,
        ))
        .breaker_timeout(NO_TRIAL)
        .connect()
        .await
        .unwrap();

    // The hub comes back requiring a token the provider does not have.
    first.shutdown().await;
    let second = token_hub_on(addr, "new-token").await;
    wait_until("the breaker opened", LIMIT, || {
        transport.state() == ConnectionState::CircuitOpen
    })
    .await;
    wait_until("the hub counted the refusals", LIMIT, || {
        second.stats().auth_rejected >= 2
    })
    .await;
    // No trial is due for an hour, so these are all the attempts there are.
    let stats = second.stats();
    assert_eq!((stats.auth_rejected, stats.handshake_failures), (2, 2));
    assert_eq!(transport.circuit_breaker_stats().await.times_opened, 1);
    assert_eq!(tokens.handed_out().last().unwrap(), "old-token");
    let refused = transport.publish(event("t", 1)).await.unwrap_err();
    assert!(
        refused.to_string().contains("Circuit breaker is open"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotating_provider_resumes_after_the_hub_restarts_with_a_new_token() {
    let first = token_hub("token-1").await;
    let addr = first.local_addr();
    let tokens = Tokens::new(&["token-1"]);
    let client = |tokens: &Tokens| {
        tokens
            .provide(fast(&first.url(), 0))
            .reconnect_policy(ReconnectPolicy::fixed(
                Duration::from_millis(20),
                MaxAttempts::Unlimited,
            ))
            .server_filters(true)
    };
    let subscriber = client(&tokens).connect().await.unwrap();
    let publisher = client(&tokens).connect().await.unwrap();
    let got = Collector::default();
    subscriber
        .subscribe(vec!["t".into()], got.handler())
        .await
        .unwrap();
    publisher.publish(event("t", 1)).await.unwrap();
    wait_until("the first event", LIMIT, || got.len() == 1).await;

    // The token rotates and the hub restarts with the new one.
    tokens.rotate("token-2");
    first.shutdown().await;
    let second = token_hub_on(addr, "token-2").await;
    wait_until("both back, filter applied", LIMIT, || {
        let s = second.stats();
        // Each client's filter (the publisher's is empty).
        s.clients == 2 && s.control_frames >= 2
    })
    .await;
    publisher.publish(event("t", 2)).await.unwrap();
    wait_until("the second event", LIMIT, || got.len() == 2).await;

    assert_eq!(got.ns(), vec![1, 2]);
    assert_eq!(second.stats().auth_rejected, 0);
    let handed_out = tokens.handed_out();
    assert_eq!(&handed_out[..2], ["token-1", "token-1"]);
    assert_eq!(handed_out.last().unwrap(), "token-2");
    subscriber.shutdown().await.unwrap();
    publisher.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_and_fresh_credentials_go_out_with_every_upgrade() {
    let server = RawServer::start().await;
    let addr = server.addr();
    let tokens = Tokens::new(&["first-token", "second-token"]);
    let transport = tokens
        .provide(fast(&server.url(), 100).header("X-Tenant", "acme"))
        .connect()
        .await
        .unwrap();
    wait_until("the server saw the upgrade", LIMIT, || {
        server.request_headers().len() == 1
    })
    .await;
    let first = server.request_headers().remove(0);

    server.stop().await;
    let server = RawServer::start_on(addr).await;
    wait_until("reconnected", LIMIT, || server.request_headers().len() == 1).await;
    let second = server.request_headers().remove(0);

    let value = |headers: &[(String, String)], name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(value(&first, "x-tenant").as_deref(), Some("acme"));
    assert_eq!(
        value(&first, "authorization").as_deref(),
        Some("Bearer first-token")
    );
    assert_eq!(value(&second, "x-tenant").as_deref(), Some("acme"));
    assert_eq!(
        value(&second, "authorization").as_deref(),
        Some("Bearer second-token")
    );
    transport.shutdown().await.unwrap();
}

/// Every secret below is sent somewhere; none may show up in what is
/// logged (at every level, span fields included), in errors or in `Debug`.
#[tokio::test(flavor = "current_thread")]
async fn secrets_never_reach_logs_errors_or_debug_output() {
    const SECRETS: [&str; 5] = [
        "GOOD-TOKEN-1",
        "QUERY-SECRET-2",
        "HEADER-SECRET-3",
        "BEARER-SECRET-4",
        "PROVIDER-SECRET-5",
    ];
    // Captures what this thread logs; on a current-thread runtime that is
    // every task of the test: the hub's and the transports'.
    let logs = LogCapture::new();
    let guard = logs.set_default();

    let hub = token_hub("GOOD-TOKEN-1").await;
    let addr = hub.local_addr();
    let refused = fast(
        &format!("ws://user:pw@{addr}/events?token=QUERY-SECRET-2&tenant=acme"),
        3,
    );
    // Userinfo in the URL is refused outright, without echoing it.
    let userinfo = refused.connect().await.unwrap_err();
    assert!(
        matches!(userinfo, WatchtowerError::Config(_)),
        "{userinfo:?}"
    );

    // A wrong token in the query…
    let refused = fast(
        &format!("ws://{addr}/events?token=QUERY-SECRET-2&tenant=acme"),
        3,
    )
    .header("X-Api-Key", "HEADER-SECRET-3");
    let query_debug = format!("{refused:?}");
    let query_error = refused.connect().await.unwrap_err();
    assert!(
        matches!(query_error, WatchtowerError::Auth { status: 401 }),
        "{query_error:?}"
    );
    // …and in headers (the hub takes one candidate per request: the
    // provider's replaces the static bearer).
    let refused = fast(&format!("ws://{addr}/events?tenant=acme"), 3)
        .header("X-Api-Key", "HEADER-SECRET-3")
        .bearer_token("BEARER-SECRET-4")
        .credential_provider(|| async {
            Ok::<_, std::io::Error>(Credentials::bearer("PROVIDER-SECRET-5"))
        });
    let builder_debug = format!("{query_debug}\n{refused:?}");
    let error = refused.connect().await.unwrap_err();
    assert!(
        matches!(error, WatchtowerError::Auth { status: 401 }),
        "{error:?}"
    );

    let admitted = fast(&format!("ws://{addr}/events?token=GOOD-TOKEN-1"), 0)
        .connect()
        .await
        .unwrap();
    admitted.publish(event("t", 1)).await.unwrap();
    admitted.flush().await.unwrap();
    let transport_debug = format!("{admitted:?}");
    let url = admitted.url();
    admitted.shutdown().await.unwrap();
    let hub_debug = format!("{hub:?}");
    hub.shutdown().await;
    drop(guard);

    let captured = logs.contents();
    // The URL and the refusals were logged, redacted.
    assert!(
        captured.contains("token=<redacted>&tenant=<redacted>"),
        "{captured}"
    );
    assert!(
        captured.contains("client refused") && captured.contains("status=401"),
        "{captured}"
    );
    assert!(url.contains("token=<redacted>"), "{url}");
    for (what, text) in [
        ("logs", captured),
        ("builder Debug", builder_debug),
        ("error", error.to_string()),
        ("error Debug", format!("{error:?}")),
        ("query error", query_error.to_string()),
        ("query error Debug", format!("{query_error:?}")),
        ("config error", userinfo.to_string()),
        ("transport Debug", transport_debug),
        ("transport url", url),
        ("hub Debug", hub_debug),
    ] {
        for secret in SECRETS.iter().chain(&["user:pw"]) {
            assert!(
                !text.contains(secret),
                "{secret} leaked into the {what}:\n{text}"
            );
        }
    }
}
