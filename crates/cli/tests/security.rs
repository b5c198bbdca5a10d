//! `publish` and `subscribe` over `wss://`, with headers and tokens.

use serde_json::Value;
use watchtower_hub::{Hub, HubTls};
use watchtower_test_support::tls::TestCa;
use watchtower_test_support::{RawServer, TempDir};

use crate::support::*;

async fn tls_hub(ca: &TestCa) -> Hub {
    let cert = ca.server_cert();
    let tls = HubTls::from_pem(&cert.cert_pem, &cert.key_pem).unwrap();
    Hub::builder().tls(tls).bind("127.0.0.1:0").await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_and_subscribe_over_wss_with_ca_cert() {
    let ca = TestCa::new("cli test CA");
    let hub = tls_hub(&ca).await;
    let url = hub.url();
    let dir = TempDir::new();
    let ca_pem = dir.write("ca.pem", ca.cert_pem()).display().to_string();

    let subscriber = tokio::spawn(output(watchtower(&[
        "subscribe",
        "--url",
        &url,
        "--ca-cert",
        &ca_pem,
        "--type",
        "secure.event",
        "--count",
        "1",
    ])));
    until("the subscriber connected and sent its filter", || {
        let s = hub.stats();
        s.clients == 1 && s.control_frames >= 1
    })
    .await;
    let out = output(watchtower(&[
        "publish",
        "--url",
        &url,
        "--ca-cert",
        &ca_pem,
        "--type",
        "secure.event",
        "--payload",
        r#"{"over":"wss"}"#,
    ]))
    .await;
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));

    let out = subscriber.await.unwrap();
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let event: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(event["payload"]["over"], "wss");
    assert_eq!(hub.stats().tls_failures, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_ca_cert_the_error_says_unknown_ca_and_names_the_flag() {
    let ca = TestCa::new("cli test CA");
    let hub = tls_hub(&ca).await;
    let out = output(watchtower(&["publish", "--url", &hub.url(), "--type", "t"])).await;
    assert_eq!(code(&out), 1);
    let line = one_line_of_stderr(&out);
    assert!(line.contains("unknown CA"), "{line}");
    assert!(line.ends_with("pass the CA with --ca-cert"), "{line}");
    assert_eq!(hub.stats().connections_total, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_and_the_token_file_reach_the_server() {
    let server = RawServer::start().await;
    let dir = TempDir::new();
    let token = dir
        .write("token", "t0ken-from-file\n")
        .display()
        .to_string();
    let out = output(watchtower(&[
        "publish",
        "--url",
        &server.url(),
        "--no-server-filters",
        "--header",
        "X-Tenant: acme",
        "--token-file",
        &token,
        "--type",
        "t",
    ]))
    .await;
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    until("the upgrade was recorded", || {
        server.request_headers().len() == 1
    })
    .await;
    let headers = server.request_headers().remove(0);
    let value = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(value("x-tenant"), Some("acme"));
    assert_eq!(value("authorization"), Some("Bearer t0ken-from-file"));
}

#[tokio::test]
async fn bad_security_flags_are_usage_errors_that_quote_no_secret() {
    // Checked before connecting: nothing listens at the default URL.
    let out = output(watchtower(&[
        "publish",
        "--type",
        "t",
        "--header",
        "no-colon-s3cret",
    ]))
    .await;
    assert_eq!(code(&out), 2);
    let line = one_line_of_stderr(&out);
    assert!(line.contains("--header number 1"), "{line}");
    assert!(!line.contains("s3cret"), "{line}");

    let out = output(watchtower(&[
        "publish",
        "--type",
        "t",
        "--token-file",
        "/nonexistent/token",
    ]))
    .await;
    assert_eq!(code(&out), 2);
    assert!(one_line_of_stderr(&out).contains("/nonexistent/token"));

    let dir = TempDir::new();
    let garbage = dir
        .write("ca.pem", "not a certificate")
        .display()
        .to_string();
    let out = output(watchtower(&[
        "publish",
        "--url",
        "wss://127.0.0.1:9/events",
        "--type",
        "t",
        "--ca-cert",
        &garbage,
    ]))
    .await;
    assert_eq!(code(&out), 2);
    let line = one_line_of_stderr(&out);
    assert!(line.contains("root CA"), "{line}");

    // The hub checks its files at start too.
    let out = output(watchtower(&[
        "hub",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        &garbage,
        "--tls-key",
        &garbage,
    ]))
    .await;
    assert_eq!(code(&out), 2);
    let line = one_line_of_stderr(&out);
    assert!(line.starts_with("error: TLS setup failed"), "{line}");
}
