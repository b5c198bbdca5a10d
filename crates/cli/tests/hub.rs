//! `watchtower hub`: serves until interrupted, then prints its stats.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use watchtower_test_support::TempDir;
use watchtower_test_support::tls::TestCa;

use crate::process::{interrupt, start_hub};
use crate::support::*;

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_serves_until_interrupted_then_prints_its_stats() {
    let (hub, url, stderr) = start_hub(&["--listen", "127.0.0.1:0", "--client-queue", "64"]).await;

    let out = output(watchtower(&[
        "publish",
        "--url",
        &url,
        "--type",
        "t",
        "--payload",
        "1",
    ]))
    .await;
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));

    let rest = interrupt(hub, stderr).await;
    assert!(rest.contains("hub stats:"), "{rest}");
    assert_eq!(figure(&rest, "connections_total"), Some(1), "{rest}");
    assert_eq!(figure(&rest, "events_in_total"), Some(1), "{rest}");
    // The event and the publisher's hello: the counters the summary once
    // left out are there.
    assert_eq!(figure(&rest, "frames_in_total"), Some(2), "{rest}");
    assert!(
        figure(&rest, "bytes_in_total").is_some_and(|b| b > 0),
        "{rest}"
    );
    assert_eq!(
        figure(&rest, "handshake_failures_total{reason=other}"),
        Some(0),
        "{rest}"
    );
    let http = url.replace("ws://", "http://").replace("/events", "/");
    assert!(rest.contains(&format!("dashboard: {http}")), "{rest}");
    assert!(rest.contains(&format!("metrics: {http}metrics")), "{rest}");
}

/// The value on the stats line named `name`.
fn figure(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next()? == name).then(|| words.next()?.parse().ok())?
    })
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_serves_wss_to_clients_with_a_certificate_and_the_token() {
    let ca = TestCa::new("cli test CA");
    let server = ca.server_cert();
    let client = ca.client_cert("cli-client");
    let dir = TempDir::new();
    let path = |name: &str, contents: &str| dir.write(name, contents).display().to_string();
    let ca_pem = path("ca.pem", &ca.cert_pem());
    let server_cert = path("server.pem", &server.cert_pem);
    let server_key = path("server.key", &server.key_pem);
    let client_cert = path("client.pem", &client.cert_pem);
    let client_key = path("client.key", &client.key_pem);
    let token = path("token", "s3cret-token-of-16-bytes-or-more\n");

    let (hub, url, stderr) = start_hub(&[
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        &server_cert,
        "--tls-key",
        &server_key,
        "--client-ca",
        &ca_pem,
        "--token-file",
        &token,
    ])
    .await;
    assert!(url.starts_with("wss://127.0.0.1:"), "{url}");

    let publish = |extra: &[&str]| {
        let mut args = vec![
            "publish",
            "--url",
            &url,
            "--type",
            "t",
            "--ca-cert",
            &ca_pem,
            "--client-cert",
            &client_cert,
            "--client-key",
            &client_key,
        ];
        args.extend_from_slice(extra);
        watchtower(&args)
    };
    let out = output(publish(&["--token-file", &token])).await;
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));

    // A wrong token: refused at once, no retries, and the line says so.
    let out = output(publish(&["--token", "wrong-token"])).await;
    assert_eq!(code(&out), 1);
    let line = one_line_of_stderr(&out);
    assert!(
        line.contains("HTTP 401") && line.contains("--token"),
        "{line}"
    );
    assert!(!line.contains("wrong-token"), "{line}");

    let rest = interrupt(hub, stderr).await;
    assert_eq!(figure(&rest, "connections_total"), Some(1), "{rest}");
    assert_eq!(figure(&rest, "events_in_total"), Some(1), "{rest}");
    assert_eq!(
        figure(&rest, "handshake_failures_total{reason=token}"),
        Some(1),
        "{rest}"
    );
    assert!(!rest.contains("s3cret"), "{rest}");
}

/// The status line of a WebSocket upgrade to `url` (`ws://ADDR/...`)
/// carrying `Origin: origin`, sent over a plain TCP socket.
async fn upgrade_status(url: &str, origin: &str) -> String {
    use std::io::{Read, Write};
    let addr = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let origin = origin.to_string();
    tokio::task::spawn_blocking(move || {
        let mut tcp = std::net::TcpStream::connect(&addr).unwrap();
        tcp.set_read_timeout(Some(LIMIT)).unwrap();
        let request = format!(
            "GET /events HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: {origin}\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).unwrap();
        let mut answer = [0u8; 64];
        let n = tcp.read(&mut answer).unwrap();
        let text = String::from_utf8_lossy(&answer[..n]).into_owned();
        text.lines().next().unwrap_or_default().to_string()
    })
    .await
    .unwrap()
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_refuses_foreign_origins_unless_allowed_and_short_tokens() {
    // A token under --min-token-len (16 by default) is a usage error.
    let out = output(watchtower(&[
        "hub",
        "--listen",
        "127.0.0.1:0",
        "--token",
        "short",
    ]))
    .await;
    assert_eq!(code(&out), 2);
    let line = one_line_of_stderr(&out);
    assert!(
        line.contains("min_token_len") && !line.contains("short\""),
        "{line}"
    );

    let (hub, url, stderr) = start_hub(&[
        "--listen",
        "127.0.0.1:0",
        "--allow-origin",
        "https://app.example",
    ])
    .await;
    assert!(
        upgrade_status(&url, "https://evil.example")
            .await
            .contains(" 403 ")
    );
    assert!(
        upgrade_status(&url, "https://app.example")
            .await
            .contains(" 101 ")
    );
    let rest = interrupt(hub, stderr).await;
    assert_eq!(
        figure(&rest, "handshake_failures_total{reason=origin}"),
        Some(1),
        "{rest}"
    );
    // It says what open-file limit it got, and the connection cap.
    let limits = rest.lines().next().unwrap();
    assert!(
        limits.starts_with("open-file limit") && limits.contains("max connections"),
        "{rest}"
    );
}

/// A hub admitting any origin with this handshake budget per address.
async fn paced_hub(
    per_second: &str,
    burst: &str,
) -> (
    crate::process::Reap,
    String,
    BufReader<std::process::ChildStderr>,
) {
    start_hub(&[
        "--listen",
        "127.0.0.1:0",
        "--allow-origin",
        "*",
        "--handshakes-per-second-per-peer",
        per_second,
        "--handshake-burst-per-peer",
        burst,
    ])
    .await
}

/// The handshake budget per address is the operator's: with a burst of 2
/// and 1 a second, a third upgrade at once is held and answered 429
/// (counted in `connections_paced_total`); 0 turns pacing off.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handshake_budget_per_address_is_set_by_flags() {
    let (hub, url, stderr) = paced_hub("1", "2").await;
    // The burst lets two in; upgrades in a row then outrun the refill (a
    // second per token) and get 429 — on a loaded machine perhaps only
    // after a refilled token let one more in.
    let mut statuses = Vec::new();
    while !statuses.iter().any(|s: &String| s.contains(" 429 ")) {
        assert!(statuses.len() < 50, "never paced: {statuses:?}");
        statuses.push(upgrade_status(&url, "https://app.example").await);
    }
    assert!(
        statuses[..2].iter().all(|s| s.contains(" 101 ")),
        "{statuses:?}"
    );
    let rest = interrupt(hub, stderr).await;
    assert!(
        figure(&rest, "connections_paced_total").is_some_and(|n| n >= 1),
        "{rest}"
    );

    let (hub, url, stderr) = paced_hub("0", "1").await;
    for _ in 0..5 {
        let status = upgrade_status(&url, "https://app.example").await;
        assert!(status.contains(" 101 "), "{status}");
    }
    let rest = interrupt(hub, stderr).await;
    assert_eq!(figure(&rest, "connections_paced_total"), Some(0), "{rest}");
}

/// Publishes one event to `url` with `extra` arguments, until it exits
/// with `want` (a reload takes effect within about a second).
async fn publish_until(url: &str, extra: &[&str], want: i32) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let mut args = vec!["publish", "--url", url, "--type", "t"];
        args.extend_from_slice(extra);
        let out = output(watchtower(&args)).await;
        if code(&out) == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "publish {extra:?} never exited {want}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_token_file_is_reloaded_without_a_restart() {
    let dir = TempDir::new();
    let old = "old-token-of-16-bytes-or-more";
    let new = "new-token-of-16-bytes-or-more";
    let file = dir.write("token", format!("{old}\n"));
    let file = file.display().to_string();
    let (hub, url, stderr) = start_hub(&["--listen", "127.0.0.1:0", "--token-file", &file]).await;
    publish_until(&url, &["--token", old], 0).await;

    // Rotate: the file now holds only the new token.
    std::fs::write(&file, format!("{new}\n")).unwrap();
    publish_until(&url, &["--token", new], 0).await;
    publish_until(&url, &["--token", old], 1).await;
    // A file that no longer holds a token keeps the last good ones.
    std::fs::write(&file, "\n\n").unwrap();
    let rest = interrupt(hub, stderr).await;
    assert!(rest.contains("reloaded the bearer tokens"), "{rest}");
    assert!(!rest.contains(new) && !rest.contains(old), "{rest}");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_without_dropping_clients() {
    let (old_ca, new_ca) = (TestCa::new("old CA"), TestCa::new("new CA"));
    let dir = TempDir::new();
    let path = |name: &str, contents: &str| dir.write(name, contents).display().to_string();
    let old_cert = old_ca.server_cert();
    let cert = path("server.pem", &old_cert.cert_pem);
    let key = path("server.key", &old_cert.key_pem);
    let old_ca_pem = path("old-ca.pem", &old_ca.cert_pem());
    let new_ca_pem = path("new-ca.pem", &new_ca.cert_pem());
    let (hub, url, stderr) = start_hub(&[
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ])
    .await;
    publish_until(&url, &["--ca-cert", &old_ca_pem], 0).await;

    // A client connected before the reload...
    let mut subscriber = Command::new(env!("CARGO_BIN_EXE_watchtower"))
        .args(["subscribe", "--url", &url, "--ca-cert", &old_ca_pem])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = BufReader::new(subscriber.stdout.take().unwrap()).lines();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // Publish until it has received one event: then it is connected.
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        publish_until(&url, &["--ca-cert", &old_ca_pem], 0).await;
        if rx
            .recv_timeout(std::time::Duration::from_millis(200))
            .is_ok()
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the subscriber never connected"
        );
    }
    while rx.try_recv().is_ok() {}

    // The certificate is renewed by another CA, then SIGHUP.
    let new_cert = new_ca.server_cert();
    std::fs::write(&cert, &new_cert.cert_pem).unwrap();
    std::fs::write(&key, &new_cert.key_pem).unwrap();
    let status = Command::new("kill")
        .args(["-HUP", &hub.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    publish_until(&url, &["--ca-cert", &new_ca_pem], 0).await;
    publish_until(&url, &["--ca-cert", &old_ca_pem], 1).await;

    // ...still receives what is published after it.
    let line = tokio::task::spawn_blocking(move || rx.recv_timeout(LIMIT))
        .await
        .unwrap();
    assert!(
        line.is_ok_and(|l| l.contains("\"t\"")),
        "nothing after the reload"
    );
    let _ = subscriber.kill();
    let _ = subscriber.wait();
    let rest = interrupt(hub, stderr).await;
    assert!(rest.contains("reloaded the TLS certificate"), "{rest}");
}

/// Without the `nats` feature, `--nats` is a usage error that says how to
/// get it, not an unknown flag or a hub on its own.
#[cfg(not(feature = "nats"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_needs_the_feature() {
    let out = output(watchtower(&[
        "hub",
        "--listen",
        "127.0.0.1:0",
        "--nats",
        "nats://127.0.0.1:4222",
    ]))
    .await;
    assert_eq!(code(&out), 2, "{}", String::from_utf8_lossy(&out.stderr));
    assert!(one_line_of_stderr(&out).contains("--features nats"));
}
