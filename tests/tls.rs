//! `wss://` with real TLS against the hub: a CA, server and client
//! certificates generated in the test, nothing on disk.

use std::time::Duration;

use tokio::net::TcpListener;
use watchtower_hub::{Hub, HubTls};
use watchtower_test_support::tls::{CertifiedPem, TestCa};
use watchtower_test_support::wait_until;
use watchtower_websocket::prelude::*;
use watchtower_websocket::{TlsErrorKind, TransportBuilder};

use crate::support::{Collector, LIMIT, event, fast};

/// Long enough that no half-open trial happens while a test runs, so the
/// attempts counted are all there are.
const NO_TRIAL: Duration = Duration::from_secs(3600);

async fn tls_hub(cert: &CertifiedPem) -> Hub {
    let tls = HubTls::from_pem(&cert.cert_pem, &cert.key_pem).unwrap();
    Hub::builder().tls(tls).bind("127.0.0.1:0").await.unwrap()
}

async fn mtls_hub(ca: &TestCa) -> Hub {
    let cert = ca.server_cert();
    let tls = HubTls::from_pem(&cert.cert_pem, &cert.key_pem)
        .unwrap()
        .require_client_certificates(ca.cert_pem())
        .unwrap();
    Hub::builder().tls(tls).bind("127.0.0.1:0").await.unwrap()
}

/// A client of `hub` that trusts `ca`, reconnecting up to `attempts` times.
fn trusting(hub: &Hub, ca: &TestCa, attempts: u32) -> TransportBuilder {
    fast(&hub.url(), attempts)
        .add_root_certificate_pem(ca.cert_pem())
        .server_filters(true)
}

/// The kind of a TLS error; fails the test on anything else.
fn tls_kind(result: Result<WebSocketTransport, WatchtowerError>) -> (TlsErrorKind, String) {
    match result {
        Err(error @ WatchtowerError::Tls { kind, .. }) => (kind, error.to_string()),
        Err(other) => panic!("expected a TLS error, got {other:?}"),
        Ok(_) => panic!("expected a TLS error, but it connected"),
    }
}

/// Publishes from `publisher` until `subscriber`'s collector has the event:
/// the two really talk through the hub.
async fn relays(publisher: &WebSocketTransport, subscriber: &WebSocketTransport) {
    let got = Collector::default();
    subscriber
        .subscribe(vec!["secure".into()], got.handler())
        .await
        .unwrap();
    publisher.publish(event("secure", 7)).await.unwrap();
    wait_until("the event arrives over wss://", LIMIT, || got.len() == 1).await;
    assert_eq!(got.ns(), vec![7]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_with_the_test_ca_added_works() {
    let ca = TestCa::new("watchtower test CA");
    let hub = tls_hub(&ca.server_cert()).await;
    assert!(hub.url().starts_with("wss://127.0.0.1:"), "{}", hub.url());

    let subscriber = trusting(&hub, &ca, 0).connect().await.unwrap();
    let publisher = trusting(&hub, &ca, 0).connect().await.unwrap();
    relays(&publisher, &subscriber).await;

    let stats = hub.stats();
    assert_eq!((stats.clients, stats.tls_failures), (2, 0));
    subscriber.shutdown().await.unwrap();
    publisher.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_ca_the_issuer_is_unknown_and_nothing_connects() {
    let ca = TestCa::new("watchtower test CA");
    let hub = tls_hub(&ca.server_cert()).await;

    // An immediate attempt and two retries, each refused by our side.
    let (kind, message) = tls_kind(fast(&hub.url(), 2).connect().await);
    assert_eq!(kind, TlsErrorKind::UnknownIssuer, "{message}");
    assert!(message.contains("add_root_certificate_pem"), "{message}");

    // Trusting some other CA does not help either.
    let other = TestCa::new("some other CA");
    let result = fast(&hub.url(), 0)
        .add_root_certificate_pem(other.cert_pem())
        .connect()
        .await;
    assert_eq!(tls_kind(result).0, TlsErrorKind::UnknownIssuer);

    // The hub saw every handshake fail, and no client ever joined.
    wait_until("the hub counted four failed handshakes", LIMIT, || {
        hub.stats().tls_failures == 4
    })
    .await;
    let stats = hub.stats();
    assert_eq!((stats.connections_total, stats.clients), (0, 0));
    assert_eq!(stats.handshake_failures, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_mismatch_is_a_typed_error_that_counts_toward_the_breaker() {
    let ca = TestCa::new("watchtower test CA");
    let hub = tls_hub(&ca.server_cert_for(&["wrong.example"])).await;

    let (kind, message) = tls_kind(trusting(&hub, &ca, 0).connect().await);
    assert_eq!(kind, TlsErrorKind::NameMismatch, "{message}");
    assert!(message.contains("127.0.0.1"), "{message}");

    // In the background: every attempt fails, then the breaker opens and
    // publishing fails fast, as for any connect failure.
    let transport = trusting(&hub, &ca, 2)
        .breaker_timeout(NO_TRIAL)
        .connect_lazily(true)
        .connect()
        .await
        .unwrap();
    wait_until("the breaker opened", LIMIT, || {
        transport.state() == ConnectionState::CircuitOpen
    })
    .await;
    let breaker = transport.circuit_breaker_stats().await;
    assert_eq!((breaker.total_failures, breaker.times_opened), (3, 1));
    assert_eq!(transport.connection_stats().failed_connects, 3);
    let refused = transport.publish(event("x", 1)).await.unwrap_err();
    assert!(
        refused.to_string().contains("Circuit breaker is open"),
        "{refused}"
    );
    wait_until("the hub counted every attempt", LIMIT, || {
        hub.stats().tls_failures == 4
    })
    .await;
    assert_eq!(hub.stats().connections_total, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_is_a_typed_error() {
    let ca = TestCa::new("watchtower test CA");
    let hub = tls_hub(&ca.expired_server_cert()).await;
    let (kind, message) = tls_kind(trusting(&hub, &ca, 0).connect().await);
    assert_eq!(kind, TlsErrorKind::Expired, "{message}");
    assert!(message.contains("renew"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_is_a_handshake_timeout() {
    // Accepts TCP and then says nothing, holding the sockets open.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let result = fast(&format!("wss://{addr}/events"), 0)
        .connect_timeout(Duration::from_secs(1))
        .connect()
        .await;
    let (kind, message) = tls_kind(result);
    assert_eq!(kind, TlsErrorKind::HandshakeTimeout, "{message}");
    silent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_admits_a_client_with_a_certificate_and_refuses_one_without() {
    let ca = TestCa::new("watchtower test CA");
    let hub = mtls_hub(&ca).await;
    let with_cert = |name: &str| {
        let cert = ca.client_cert(name);
        trusting(&hub, &ca, 0).client_certificate_pem(cert.cert_pem, cert.key_pem)
    };

    let subscriber = with_cert("subscriber").connect().await.unwrap();
    let publisher = with_cert("publisher").connect().await.unwrap();
    relays(&publisher, &subscriber).await;

    // No certificate: the hub's refusal arrives after our side of the TLS
    // 1.3 handshake, during the upgrade, and is still typed.
    let (kind, message) = tls_kind(trusting(&hub, &ca, 0).connect().await);
    assert_eq!(kind, TlsErrorKind::ClientCertificate, "{message}");
    assert!(
        message.contains("requires a client certificate"),
        "{message}"
    );

    // A certificate from a CA the hub does not trust.
    let stranger = TestCa::new("stranger CA").client_cert("stranger");
    let result = trusting(&hub, &ca, 0)
        .client_certificate_pem(stranger.cert_pem, stranger.key_pem)
        .connect()
        .await;
    let (kind, message) = tls_kind(result);
    assert_eq!(kind, TlsErrorKind::ClientCertificate, "{message}");
    assert!(
        message.contains("refused our client certificate"),
        "{message}"
    );

    wait_until("the hub counted both refusals", LIMIT, || {
        hub.stats().tls_failures == 2
    })
    .await;
    let stats = hub.stats();
    assert_eq!((stats.connections_total, stats.clients), (2, 2));
    subscriber.shutdown().await.unwrap();
    publisher.shutdown().await.unwrap();
}

/// N3: TLS is decided per URL. A plain `ws://` hub first and a `wss://`
/// one as its fallback: the transport reaches the plain one without TLS
/// and, once it is gone, the TLS one with it. (At f945df2 one `wss://` in
/// the list put TLS on every URL: the plain server could not be reached,
/// and `connect` failed with a TLS error.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_decided_per_url_in_a_mixed_list() {
    let plain = watchtower_test_support::RawServer::start().await;
    let ca = TestCa::new("watchtower test CA");
    let secure = tls_hub(&ca.server_cert()).await;
    let transport = fast(&plain.url(), 20)
        .fallback_urls([secure.url()])
        .add_root_certificate_pem(ca.cert_pem())
        .connect()
        .await
        .unwrap();
    assert_eq!(transport.url(), plain.url());
    assert_eq!(transport.connection_stats().url_index, 0);
    assert_eq!(plain.accepted(), 1);

    plain.stop().await;
    wait_until("moved to the TLS hub", LIMIT, || {
        transport.state().is_connected() && transport.connection_stats().url_index == 1
    })
    .await;
    assert_eq!(transport.url(), secure.url());
    let stats = secure.stats();
    assert_eq!((stats.clients, stats.tls_failures), (1, 0));
    transport.shutdown().await.unwrap();
}

/// N3, the other way round: a `wss://` URL first that is down, then a
/// plain one: the fallback is reached without TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_fallback_after_a_wss_url_is_reached_without_tls() {
    let plain = watchtower_test_support::RawServer::start().await;
    let dead = format!("wss://{}/events", watchtower_test_support::unused_addr());
    let transport = fast(&dead, 3)
        .fallback_urls([plain.url()])
        .connect()
        .await
        .unwrap();
    assert_eq!(transport.url(), plain.url());
    assert_eq!(plain.accepted(), 1);
    transport.shutdown().await.unwrap();
}
