//! `wss://` and bearer-token auth, driven by raw clients.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{client_async, connect_async};
use watchtower_hub::{Hub, HubConfig, HubError, HubTls};
use watchtower_test_support::tls::TestCa;

use crate::support::*;

async fn token_hub() -> Hub {
    Hub::builder()
        .bearer_token("s3cret-token")
        .bind("127.0.0.1:0")
        .await
        .unwrap()
}

/// The HTTP status of a refused upgrade.
fn refused_status(result: Result<impl Sized, WsError>) -> u16 {
    match result {
        Err(WsError::Http(response)) => {
            let challenge = response.headers().get("www-authenticate");
            assert_eq!(challenge.unwrap(), "Bearer");
            response.status().as_u16()
        }
        Err(other) => panic!("expected an HTTP refusal, got {other:?}"),
        Ok(_) => panic!("expected an HTTP refusal, but the upgrade succeeded"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_token_the_upgrade_is_refused_with_401_and_never_joins() {
    let hub = token_hub().await;
    let mut member = {
        let mut request = hub.url().into_client_request().unwrap();
        request
            .headers_mut()
            .insert("authorization", "Bearer s3cret-token".parse().unwrap());
        connect_async(request).await.unwrap().0
    };

    assert_eq!(refused_status(connect_async(hub.url()).await), 401);
    let mut request = hub.url().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", "Bearer wrong".parse().unwrap());
    assert_eq!(refused_status(connect_async(request).await), 401);
    let wrong_query = format!("{}?token=wrong", hub.url());
    assert_eq!(refused_status(connect_async(wrong_query).await), 401);

    let stats = stats_until(&hub, "three refusals", |s| s.auth_rejected == 3).await;
    assert_eq!(stats.handshake_failures, 3);
    assert_eq!((stats.clients, stats.connections_total), (1, 1));

    // The token in the query string works as well as the header.
    let mut other = connect_async(format!("{}?token=s3cret-token", hub.url()))
        .await
        .unwrap()
        .0;
    stats_until(&hub, "two members", |s| s.clients == 2).await;
    send(&mut other, &event("t", 1)).await;
    assert_eq!(type_of(&next_text(&mut member).await), "t");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_validated_at_bind_without_being_quoted() {
    for bad in ["", "has space", "new\nline"] {
        let error = Hub::builder()
            .bearer_token(bad)
            .bind("127.0.0.1:0")
            .await
            .unwrap_err();
        assert!(matches!(error, HubError::Config(_)), "{error:?}");
        if !bad.is_empty() {
            assert!(!error.to_string().contains(bad), "{error}");
        }
    }
    let builder = Hub::builder().bearer_token("s3cret-token");
    assert!(!format!("{builder:?}").contains("s3cret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_does_not_fit_the_certificate_is_a_tls_error() {
    let ca = TestCa::new("test CA");
    let cert = ca.server_cert();
    let other = ca.server_cert();
    let error = HubTls::from_pem(&cert.cert_pem, &other.key_pem).unwrap_err();
    assert!(matches!(error, HubError::Tls { .. }), "{error:?}");
    let error = HubTls::from_pem(&cert.cert_pem, &cert.key_pem)
        .unwrap()
        .require_client_certificates("no certificate here")
        .unwrap_err();
    assert!(error.to_string().contains("client CA"), "{error}");
    // `Debug` says what is configured, never the key.
    let tls = HubTls::from_pem(&cert.cert_pem, &cert.key_pem).unwrap();
    let shown = format!("{tls:?}");
    assert!(
        !shown.contains("PRIVATE") && shown.contains("certificates: 1"),
        "{shown}"
    );
}

fn client_tls(ca: &TestCa) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    let pem = ca.cert_pem();
    for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

fn tls_for(ca: &TestCa) -> HubTls {
    let cert = ca.server_cert();
    HubTls::from_pem(&cert.cert_pem, &cert.key_pem).unwrap()
}

/// A `wss://` hub with `config` and a certificate from `ca`.
async fn tls_hub(ca: &TestCa, config: HubConfig) -> Hub {
    Hub::builder()
        .config(config)
        .tls(tls_for(ca))
        .bind("127.0.0.1:0")
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_relays_between_tls_clients() {
    let ca = TestCa::new("test CA");
    let hub = Hub::builder()
        .tls(tls_for(&ca))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let url = hub.url();
    assert!(url.starts_with("wss://"), "{url}");

    let connector = client_tls(&ca);
    let mut clients = Vec::new();
    for _ in 0..2 {
        let tcp = TcpStream::connect(hub.local_addr()).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let tls = connector.connect(name, tcp).await.unwrap();
        clients.push(client_async(url.as_str(), tls).await.unwrap().0);
    }
    stats_until(&hub, "two TLS clients", |s| s.clients == 2).await;
    let frame = event("t", 1);
    clients[0]
        .send(Message::text(frame.as_str()))
        .await
        .unwrap();
    let received = timeout(LIMIT, async {
        loop {
            if let Some(Ok(Message::Text(t))) = clients[1].next().await {
                return t.to_string();
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(received, frame);
    assert_eq!(hub.stats().tls_failures, 0);
}

/// Over its address's handshake budget, a `wss://` client is only
/// closed (after the tarpit's delay): plain HTTP in answer to its TLS
/// handshake would read as a broken server, not as "later".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wss_client_over_the_handshake_budget_is_closed_not_sent_plain_http() {
    let ca = TestCa::new("test CA");
    let mut config = HubConfig::default();
    config.handshakes_per_second_per_peer = 1;
    config.handshake_burst_per_peer = 1;
    let hub = tls_hub(&ca, config).await;
    let connector = client_tls(&ca);
    let name = || rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tcp = TcpStream::connect(hub.local_addr()).await.unwrap();
    let tls = connector.connect(name(), tcp).await.unwrap();
    let _first = client_async(hub.url(), tls).await.unwrap();
    let tcp = TcpStream::connect(hub.local_addr()).await.unwrap();
    let error = connector.connect(name(), tcp).await.unwrap_err();
    assert_eq!(
        error.kind(),
        std::io::ErrorKind::UnexpectedEof,
        "closed, not answered in plain text: {error}"
    );
    let stats = hub.stats();
    assert_eq!(
        (stats.connections_paced, stats.tls_failures),
        (1, 0),
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_timed_out_tls_handshakes_are_counted() {
    let ca = TestCa::new("test CA");
    let mut config = HubConfig::default();
    config.handshake_timeout = Duration::from_millis(300);
    let hub = tls_hub(&ca, config).await;

    // Plain WebSocket on the TLS port: not a TLS handshake.
    assert!(
        connect_async(hub.url().replace("wss://", "ws://"))
            .await
            .is_err()
    );
    // TCP that never starts the handshake: timed out.
    let mut silent = TcpStream::connect(hub.local_addr()).await.unwrap();
    let stats = stats_until(&hub, "two failed TLS handshakes", |s| s.tls_failures == 2).await;
    assert_eq!(stats.handshake_failures, 2);
    assert_eq!(stats.connections_total, 0);
    let _ = silent.shutdown().await;
}

fn bearer_request(
    hub: &Hub,
    token: &str,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let mut request = hub.url().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_reload_without_dropping_connected_clients() {
    let hub = Hub::builder()
        .bearer_token("old-token-1")
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let mut old_member = connect_async(bearer_request(&hub, "old-token-1"))
        .await
        .unwrap()
        .0;
    stats_until(&hub, "one member", |s| s.clients == 1).await;

    let handle = hub.handle();
    handle.reload_tokens(["new-token-2"]).unwrap();
    assert_eq!(
        refused_status(connect_async(bearer_request(&hub, "old-token-1")).await),
        401,
        "the old token no longer admits"
    );
    let mut new_member = connect_async(bearer_request(&hub, "new-token-2"))
        .await
        .unwrap()
        .0;
    stats_until(&hub, "two members", |s| s.clients == 2).await;
    // The client admitted with the old token is still served.
    send(&mut new_member, &event("t", 1)).await;
    assert_eq!(type_of(&next_text(&mut old_member).await), "t");

    // Bad reloads are refused and change nothing.
    let error = handle.reload_tokens(Vec::<String>::new()).unwrap_err();
    assert!(error.to_string().contains("none"), "{error}");
    let error = handle.reload_tokens(["short"]).unwrap_err();
    assert!(!error.to_string().contains("short\""), "{error}");
    connect_async(bearer_request(&hub, "new-token-2"))
        .await
        .unwrap();
    let open = Hub::bind("127.0.0.1:0").await.unwrap();
    assert!(open.handle().reload_tokens(["some-token"]).is_err());
    assert!(
        open.handle()
            .reload_tls(tls_for(&TestCa::new("x")))
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_reload_without_dropping_connected_clients() {
    let (old_ca, new_ca) = (TestCa::new("old CA"), TestCa::new("new CA"));
    let hub = Hub::builder()
        .tls(tls_for(&old_ca))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let url = hub.url();
    let connect = |ca: &TestCa| {
        let connector = client_tls(ca);
        let (addr, url) = (hub.local_addr(), url.clone());
        async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
            let tls = connector.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(client_async(url.as_str(), tls).await.unwrap().0)
        }
    };
    let mut old_member = connect(&old_ca).await.unwrap();
    stats_until(&hub, "one member", |s| s.clients == 1).await;

    hub.handle().reload_tls(tls_for(&new_ca)).unwrap();
    assert!(
        connect(&old_ca).await.is_err(),
        "new connections get the new certificate"
    );
    let mut new_member = connect(&new_ca).await.unwrap();
    stats_until(&hub, "two members", |s| s.clients == 2).await;
    let frame = event("t", 1);
    new_member
        .send(Message::text(frame.as_str()))
        .await
        .unwrap();
    let received = timeout(LIMIT, async {
        loop {
            if let Some(Ok(Message::Text(t))) = old_member.next().await {
                return t.to_string();
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(received, frame, "the old connection is still served");
}
