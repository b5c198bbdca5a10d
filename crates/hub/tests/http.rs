//! The HTTP side on the hub's own port: routes, the Prometheus text, the
//! token, and bounded request heads, against a real hub with raw TCP (and
//! TLS) clients.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{client_async, connect_async};
use watchtower_hub::{Hub, HubConfig, HubStats, HubTls};
use watchtower_test_support::tls::TestCa;

use crate::support::*;

/// An HTTP answer, read to the end (every answer closes the connection).
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `request` as is and reads the answer to the end.
async fn exchange<S>(mut socket: S, request: &[u8]) -> Reply
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    socket.write_all(request).await.unwrap();
    let mut raw = Vec::new();
    timeout(LIMIT, socket.read_to_end(&mut raw))
        .await
        .expect("the hub closes after answering")
        .unwrap();
    parse_reply(&raw)
}

fn parse_reply(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete answer");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap();
    assert!(status.starts_with("HTTP/1.1 "), "{status}");
    let status = status[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_string(), v.trim().to_string())
        })
        .collect();
    let reply = Reply {
        status,
        headers,
        body: body.to_string(),
    };
    assert_eq!(reply.header("connection"), Some("close"), "{reply:?}");
    let length: usize = reply.header("content-length").unwrap().parse().unwrap();
    assert_eq!(length, reply.body.len(), "{reply:?}");
    reply
}

/// `method path` with `extra` header lines, over plain TCP.
async fn request(addr: SocketAddr, method: &str, path: &str, extra: &str) -> Reply {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let text = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}\r\n");
    exchange(tcp, text.as_bytes()).await
}

async fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, "").await
}

/// One sample of the exposition: its series (name and labels) and value.
type Samples = BTreeMap<String, f64>;

/// Parses the text exposition format line by line, asserting what every
/// line must be: `# HELP name text`, `# TYPE name counter|gauge` (before
/// any sample of the family, once), or `name{label="value"} number` with a
/// name matching `^watchtower_hub_[a-z0-9_]+$`; counters end in `_total`.
fn parse_metrics(text: &str) -> Samples {
    let valid_name = |name: &str| {
        name.strip_prefix("watchtower_hub_").is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
    };
    let mut help = Vec::new();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Samples::new();
    assert!(text.ends_with('\n'), "the text ends with a newline");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, doc) = rest.split_once(' ').expect("help text");
            assert!(valid_name(name) && !doc.is_empty(), "{line}");
            assert!(!help.contains(&name.to_string()), "two HELP for {name}");
            help.push(name.to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("a type");
            assert!(valid_name(name), "{line}");
            assert!(kind == "counter" || kind == "gauge", "{line}");
            assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
            assert!(types.insert(name.to_string(), kind.to_string()).is_none());
        } else {
            assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
            let (series, value) = line.rsplit_once(' ').expect("a value");
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
            assert!(value >= 0.0, "{line}");
            let name = match series.split_once('{') {
                Some((name, labels)) => {
                    let labels = labels.strip_suffix('}').expect("closed labels");
                    for pair in labels.split(',') {
                        let (label, v) = pair.split_once('=').expect("label=value");
                        assert!(label.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
                        assert!(v.starts_with('"') && v.ends_with('"'), "{line}");
                    }
                    name
                }
                None => series,
            };
            assert!(valid_name(name), "{line}");
            assert!(help.iter().any(|h| h == name), "no HELP before {line}");
            assert!(types.contains_key(name), "no TYPE before {line}");
            assert!(
                samples.insert(series.to_string(), value).is_none(),
                "{line}"
            );
        }
    }
    samples
}

/// What each series must show for `stats`: written out here, apart from
/// the hub's own table, so the two are checked against each other.
fn expected(s: &HubStats) -> Vec<(&'static str, u64)> {
    let m = &s.malformed;
    let other = s.handshake_failures
        - s.tls_failures
        - s.auth_rejected
        - s.auth_throttled
        - s.origin_rejected;
    vec![
        ("watchtower_hub_clients", s.clients),
        ("watchtower_hub_connections_total", s.connections_total),
        (
            "watchtower_hub_connections_refused_total",
            s.connections_refused,
        ),
        (
            "watchtower_hub_connections_paced_total",
            s.connections_paced,
        ),
        (
            "watchtower_hub_handshake_failures_total{reason=\"tls\"}",
            s.tls_failures,
        ),
        (
            "watchtower_hub_handshake_failures_total{reason=\"token\"}",
            s.auth_rejected,
        ),
        (
            "watchtower_hub_handshake_failures_total{reason=\"throttled\"}",
            s.auth_throttled,
        ),
        (
            "watchtower_hub_handshake_failures_total{reason=\"origin\"}",
            s.origin_rejected,
        ),
        (
            "watchtower_hub_handshake_failures_total{reason=\"other\"}",
            other,
        ),
        ("watchtower_hub_http_requests_total", s.http_requests),
        ("watchtower_hub_frames_in_total", s.frames_in),
        ("watchtower_hub_bytes_in_total", s.bytes_in),
        ("watchtower_hub_events_in_total", s.events_in),
        (
            "watchtower_hub_control_frames_total{result=\"applied\"}",
            s.control_frames,
        ),
        (
            "watchtower_hub_control_frames_total{result=\"rejected\"}",
            s.control_rejected,
        ),
        ("watchtower_hub_control_paced_total", s.control_paced),
        (
            "watchtower_hub_malformed_frames_total{reason=\"invalid_utf8\"}",
            m.invalid_utf8,
        ),
        (
            "watchtower_hub_malformed_frames_total{reason=\"invalid_json\"}",
            m.invalid_json,
        ),
        (
            "watchtower_hub_malformed_frames_total{reason=\"not_an_object\"}",
            m.not_an_object,
        ),
        (
            "watchtower_hub_malformed_frames_total{reason=\"missing_field\"}",
            m.missing_field,
        ),
        (
            "watchtower_hub_malformed_frames_total{reason=\"empty_field\"}",
            m.empty_field,
        ),
        (
            "watchtower_hub_malformed_frames_total{reason=\"wrong_type\"}",
            m.wrong_type,
        ),
        (
            "watchtower_hub_malformed_frames_total{reason=\"too_long\"}",
            m.too_long,
        ),
        ("watchtower_hub_frames_queued_total", s.frames_queued),
        ("watchtower_hub_frames_out_total", s.frames_out),
        ("watchtower_hub_frames_dropped_total", s.dropped_frames),
        (
            "watchtower_hub_client_bytes_high_water_bytes",
            s.client_bytes_high_water,
        ),
        (
            "watchtower_hub_disconnects_total{reason=\"slow\"}",
            s.disconnected_slow,
        ),
        (
            "watchtower_hub_disconnects_total{reason=\"dead\"}",
            s.disconnected_dead,
        ),
        (
            "watchtower_hub_disconnects_total{reason=\"unfinished\"}",
            s.disconnected_unfinished,
        ),
        (
            "watchtower_hub_disconnects_total{reason=\"oversize\"}",
            s.oversize_closed,
        ),
        (
            "watchtower_hub_disconnects_total{reason=\"protocol\"}",
            s.protocol_errors,
        ),
        ("watchtower_hub_acks_sent_total", s.acks_sent),
        (
            "watchtower_hub_duplicates_dropped_total",
            s.duplicates_dropped,
        ),
        (
            "watchtower_hub_resumes_total{result=\"recovered\"}",
            s.resumes_recovered,
        ),
        (
            "watchtower_hub_resumes_total{result=\"not_recovered\"}",
            s.resumes_not_recovered,
        ),
        ("watchtower_hub_events_replayed_total", s.events_replayed),
        ("watchtower_hub_closed_to_resume_total", s.closed_to_resume),
        ("watchtower_hub_history_events", s.history_events),
        (
            "watchtower_hub_backplane_events_total{result=\"stored\"}",
            s.backplane_stored,
        ),
        (
            "watchtower_hub_backplane_events_total{result=\"not_stored\"}",
            s.backplane_failures,
        ),
        (
            "watchtower_hub_backplane_events_total{result=\"delivered\"}",
            s.backplane_delivered,
        ),
        (
            "watchtower_hub_backplane_events_total{result=\"missed\"}",
            s.backplane_missed,
        ),
        (
            "watchtower_hub_backplane_events_total{result=\"foreign\"}",
            s.backplane_foreign,
        ),
        (
            "watchtower_hub_backplane_new_streams_total",
            s.backplane_new_streams,
        ),
        ("watchtower_hub_backplane_down", s.backplane_down),
        ("watchtower_hub_dedup_window_ids", s.dedup_window_ids),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_with_its_status_and_content_type() {
    let hub = hub().await;
    let addr = hub.local_addr();
    assert_eq!(hub.http_url(), format!("http://{addr}/"));

    let health = get(addr, "/healthz").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.body, "ok\n");
    assert_eq!(
        health.header("content-type"),
        Some("text/plain; charset=utf-8")
    );

    let metrics = get(addr, "/metrics").await;
    assert_eq!(metrics.status, 200);
    assert_eq!(
        metrics.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let version = format!(
        "watchtower_hub_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(parse_metrics(&metrics.body).get(&version), Some(&1.0));

    let stats = get(addr, "/api/stats").await;
    assert_eq!(stats.status, 200);
    assert_eq!(stats.header("content-type"), Some("application/json"));
    let json: serde_json::Value = serde_json::from_str(&stats.body).unwrap();
    assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
    assert!(json["uptime_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(json["stats"]["clients"], 0);
    assert_eq!(json["stats"]["handshake_failures_total"]["token"], 0);

    let clients = get(addr, "/api/clients").await;
    assert_eq!(clients.status, 200);
    assert_eq!(clients.header("content-type"), Some("application/json"));
    let json: serde_json::Value = serde_json::from_str(&clients.body).unwrap();
    assert_eq!(json["total"], 0);

    for path in ["/", "/dashboard"] {
        let page = get(addr, path).await;
        assert_eq!(page.status, 200);
        assert_eq!(
            page.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(page.header("cache-control"), Some("no-store"));
        let csp = page.header("content-security-policy").unwrap();
        assert!(csp.starts_with("default-src 'none';"), "{csp}");
        assert!(csp.contains("script-src 'sha256-"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
        assert!(page.body.contains("<title>Watchtower hub</title>"));
    }

    let missing = get(addr, "/nope").await;
    assert_eq!(missing.status, 404);
    let post = request(addr, "POST", "/metrics", "Content-Length: 0\r\n").await;
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));

    // None of this made a client or a failed handshake.
    let s = hub.stats();
    assert_eq!(s.connections_total, 0);
    assert_eq!(s.handshake_failures, 0);
    assert_eq!(s.http_requests, 8);
}

/// `HEAD path` with `extra` header lines: the answer's head and what came
/// after it (nothing, for HEAD).
async fn head(addr: SocketAddr, path: &str, extra: &str) -> (Reply, usize) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let text = format!("HEAD {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}\r\n");
    tcp.write_all(text.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    timeout(LIMIT, tcp.read_to_end(&mut raw))
        .await
        .expect("the hub closes after answering")
        .unwrap();
    let text = String::from_utf8_lossy(&raw);
    let (top, body) = text.split_once("\r\n\r\n").expect("a complete head");
    let mut lines = top.split("\r\n");
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_string(), v.trim().to_string())
        })
        .collect();
    let reply = Reply {
        status,
        headers,
        body: String::new(),
    };
    (reply, body.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_is_answered_like_get_without_a_body() {
    let hub = hub().await;
    let addr = hub.local_addr();
    for path in [
        "/",
        "/dashboard",
        "/healthz",
        "/metrics",
        "/api/stats",
        "/api/clients",
    ] {
        let got = get(addr, path).await;
        let (head, after) = head(addr, path, "").await;
        assert_eq!(head.status, got.status, "{path}");
        assert_eq!(after, 0, "{path}: HEAD got a body");
        for name in [
            "content-type",
            "cache-control",
            "content-security-policy",
            "connection",
        ] {
            assert_eq!(head.header(name), got.header(name), "{path}: {name}");
        }
        let length: usize = head.header("content-length").unwrap().parse().unwrap();
        // The figures change between two requests; the page and health do not.
        if matches!(path, "/" | "/dashboard" | "/healthz") {
            assert_eq!(length, got.body.len(), "{path}");
        } else {
            assert!(length > 0, "{path}");
        }
    }
    let (missing, after) = head(addr, "/nope", "").await;
    assert_eq!((missing.status, after), (404, 0));
    let post = request(addr, "PUT", "/metrics", "Content-Length: 0\r\n").await;
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));

    // A refusal to HEAD has no body either.
    let hub = Hub::builder()
        .bearer_token("s3cret-token")
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let (refused, after) = head(hub.local_addr(), "/metrics", "").await;
    assert_eq!((refused.status, after), (401, 0));
    assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
    let (admitted, after) = head(
        hub.local_addr(),
        "/metrics",
        "Authorization: Bearer s3cret-token\r\n",
    )
    .await;
    assert_eq!((admitted.status, after), (200, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrades_on_any_path_still_work_beside_http() {
    let hub = hub().await;
    let addr = hub.local_addr();
    let (mut a, _) = connect_async(format!("ws://{addr}/metrics")).await.unwrap();
    let (mut b, _) = connect_async(format!("ws://{addr}/")).await.unwrap();
    stats_until(&hub, "two clients", |s| s.clients == 2).await;
    assert_eq!(get(addr, "/healthz").await.status, 200);
    let frame = event("t", 1);
    send(&mut a, &frame).await;
    assert_eq!(next_text(&mut b).await, frame);
    let s = hub.stats();
    assert_eq!((s.connections_total, s.handshake_failures), (2, 0));
    b.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_equal_the_stats_when_quiet() {
    let hub = hub().await;
    let addr = hub.local_addr();
    let mut c = clients(&hub, 3).await;
    send(
        &mut c[1],
        r#"{"type":"subscribe","event_types":["a"],"replace":true}"#,
    )
    .await;
    send(&mut c[2], r#"{"type":"hello","acks":true}"#).await;
    stats_until(&hub, "control frames", |s| s.control_frames == 2).await;
    for n in 0..5 {
        send(&mut c[0], &event(if n % 2 == 0 { "a" } else { "b" }, n)).await;
    }
    send(&mut c[0], "not json").await;
    send(&mut c[0], "[1]").await;
    let a_frame = event("a", 99);
    send(&mut c[2], &a_frame).await;
    // A refused upgrade, so a handshake failure shows too.
    let mut bad = TcpStream::connect(addr).await.unwrap();
    bad.write_all(b"\x16\x03\x01junk\r\n\r\n").await.unwrap();
    let mut sink = Vec::new();
    let _ = timeout(LIMIT, bad.read_to_end(&mut sink)).await.unwrap();
    // Quiet: every event in, and every frame out.
    let quiet = stats_until(&hub, "traffic settled", |s| {
        s.events_in == 6
            && s.frames_out == s.frames_queued
            && s.malformed.total() == 2
            && s.acks_sent == 1
    })
    .await;
    assert_eq!(quiet.frames_queued, 5 + 3 + 2);
    assert_eq!(quiet.handshake_failures, 1);

    let reply = get(addr, "/metrics").await;
    let samples = parse_metrics(&reply.body);
    let after = hub.stats();
    for (series, want) in expected(&after) {
        assert_eq!(samples.get(series), Some(&(want as f64)), "{series}");
    }
    // Series the test does not check one by one: the scrape's own
    // connection (open while it was rendered) and the uptime.
    let checked = expected(&after).len();
    let rest: Vec<&String> = samples
        .keys()
        .filter(|k| !expected(&after).iter().any(|(s, _)| s == k))
        .collect();
    assert_eq!(
        rest,
        [
            "watchtower_hub_build_info{version=\"0.1.0\"}",
            "watchtower_hub_connections_open",
            "watchtower_hub_uptime_seconds",
        ],
        "{checked} checked"
    );
    // Three clients and the scrape (the refused one may still linger).
    assert!(samples["watchtower_hub_connections_open"] >= 4.0);
    // The failed handshake above counts once, not also as a connection.
    assert_eq!(after.connections_total, 3);
}

/// Scrapes until `stop`; every counter series of each scrape must be at
/// least what the previous one showed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_counter_decreases_across_scrapes_under_traffic() {
    let hub = hub().await;
    let addr = hub.local_addr();
    let mut c = clients(&hub, 2).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut publisher = c.remove(0);
    let publishing = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                publisher.send(Message::text(event("t", n))).await.unwrap();
                n += 1;
                if n % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            n
        })
    };
    let mut reader = c.remove(0);
    let reading = tokio::spawn(async move { while let Some(Ok(_)) = reader.next().await {} });

    let mut previous: Option<Samples> = None;
    for _ in 0..20 {
        let samples = parse_metrics(&get(addr, "/metrics").await.body);
        if let Some(previous) = &previous {
            for (series, value) in &samples {
                if series.contains("_total") {
                    assert!(value >= &previous[series], "{series} went down");
                }
            }
        }
        previous = Some(samples);
    }
    stop.store(true, Ordering::Relaxed);
    let sent = publishing.await.unwrap();
    let last = previous.unwrap();
    assert!(last["watchtower_hub_events_in_total"] <= sent as f64);
    assert_eq!(last["watchtower_hub_http_requests_total"], 20.0);
    reading.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_series_count_is_fixed_whatever_the_event_types() {
    let hub = hub().await;
    let addr = hub.local_addr();
    let before = parse_metrics(&get(addr, "/metrics").await.body);
    // A reader that drains concurrently, so the events are also fanned
    // out (and nothing is dropped for a full queue).
    let mut c = clients(&hub, 2).await;
    let mut reader = c.pop().unwrap();
    let reading = tokio::spawn(async move { while let Some(Ok(_)) = reader.next().await {} });
    const TYPES: u64 = 10_000;
    for n in 0..TYPES {
        c[0].feed(Message::text(event(&format!("type-{n}"), n)))
            .await
            .unwrap();
    }
    c[0].flush().await.unwrap();
    stats_until(&hub, "every event in and out", |s| {
        s.events_in == TYPES && s.frames_out + s.dropped_frames == TYPES
    })
    .await;
    reading.abort();
    let text = get(addr, "/metrics").await.body;
    let after = parse_metrics(&text);
    assert_eq!(after.len(), before.len());
    assert!(after.keys().eq(before.keys()));
    assert!(!text.contains("type-"), "an event type leaked into a label");
    assert_eq!(after["watchtower_hub_events_in_total"], TYPES as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_every_route_but_healthz_and_the_page_wants_it() {
    let hub = Hub::builder()
        .bearer_token("s3cret-token")
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = hub.local_addr();
    for path in ["/metrics", "/api/stats", "/api/clients"] {
        let refused = get(addr, path).await;
        assert_eq!(refused.status, 401, "{path}");
        assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
        assert!(!refused.body.contains("s3cret"));
        let wrong = request(addr, "GET", path, "Authorization: Bearer nope-nope\r\n").await;
        assert_eq!(wrong.status, 401, "{path}");
        let header = request(addr, "GET", path, "Authorization: Bearer s3cret-token\r\n").await;
        assert_eq!(header.status, 200, "{path}");
        let query = get(addr, &format!("{path}?token=s3cret-token")).await;
        assert_eq!(query.status, 200, "{path}");
    }
    assert_eq!(get(addr, "/healthz").await.status, 200);
    // The page is static (what it shows comes from the routes above): a
    // browser loads it with the token in the fragment, /#token=, which is
    // never sent. A token sent in its query is checked like any other.
    let page = get(addr, "/").await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("s3cret"));
    assert_eq!(get(addr, "/?token=nope-nope").await.status, 401);
    assert_eq!(get(addr, "/dashboard?token=s3cret-token").await.status, 200);
    let s = hub.stats();
    assert_eq!(s.auth_rejected, 7);
    assert_eq!(s.handshake_failures, 7);
    assert_eq!(s.http_requests, 16);
    assert_eq!(s.connections_total, 0);

    // With `?token=` turned off, the page still loads, and a token in its
    // query is refused like anywhere else.
    let mut config = HubConfig::default();
    config.allow_query_token = false;
    let hub = Hub::builder()
        .bearer_token("s3cret-token")
        .config(config)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = hub.local_addr();
    assert_eq!(get(addr, "/").await.status, 200);
    let query = get(addr, "/?token=s3cret-token").await;
    assert_eq!(query.status, 401);
    assert!(query.body.contains("/#token="), "{query:?}");
    let header = request(
        addr,
        "GET",
        "/api/stats",
        "Authorization: Bearer s3cret-token\r\n",
    )
    .await;
    assert_eq!(header.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_page_gets_403_and_the_hubs_own_page_is_admitted() {
    let hub = hub().await;
    let addr = hub.local_addr();
    let foreign = request(
        addr,
        "GET",
        "/api/stats",
        "Origin: https://evil.example\r\n",
    )
    .await;
    assert_eq!(foreign.status, 403);
    let own = request(
        addr,
        "GET",
        "/api/stats",
        &format!("Origin: http://{addr}\r\n"),
    )
    .await;
    assert_eq!(own.status, 200);
    assert_eq!(hub.stats().origin_rejected, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_request_head_is_refused_with_431() {
    let hub = hub().await;
    let addr = hub.local_addr();
    let big = format!("X-Filler: {}\r\n", "a".repeat(70 * 1024));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let text = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n{big}\r\n");
    // The hub answers after 64 KiB, without reading the rest: a reset may
    // follow the answer, so read what arrives.
    let (mut read, mut write) = tcp.into_split();
    let writing = tokio::spawn(async move {
        let _ = write.write_all(text.as_bytes()).await;
        write
    });
    let mut raw = Vec::new();
    let _ = timeout(LIMIT, read.read_to_end(&mut raw)).await.unwrap();
    let _ = writing.await;
    let reply = String::from_utf8_lossy(&raw);
    assert!(
        reply.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{reply}"
    );
    let s = hub.stats();
    assert_eq!((s.handshake_failures, s.http_requests), (1, 0));
    // A head just under the limit is still served.
    let fits = format!("X-Filler: {}\r\n", "a".repeat(60 * 1024));
    assert_eq!(request(addr, "GET", "/healthz", &fits).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_head_is_cut_at_the_handshake_timeout() {
    let mut config = HubConfig::default();
    config.handshake_timeout = Duration::from_millis(300);
    let hub = hub_with(config).await;
    let addr = hub.local_addr();
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    // One more byte now and then, never the end of the head: the hub
    // closes the connection (EOF here) once its handshake timeout is up,
    // however long the client keeps trickling.
    let mut buf = [0u8; 64];
    let closed = timeout(LIMIT, async {
        loop {
            if tcp.write_all(b"a").await.is_err() {
                return Vec::new();
            }
            match timeout(Duration::from_millis(50), tcp.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Vec::new(),
                Ok(Ok(n)) => return buf[..n].to_vec(),
                Err(_) => {}
            }
        }
    })
    .await
    .expect("the hub cuts a slow head");
    assert!(closed.is_empty(), "no answer to a late head: {closed:?}");
    let s = stats_until(&hub, "the failure counted", |s| s.handshake_failures == 1).await;
    assert_eq!((s.http_requests, s.connections_total), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_list_shows_each_client() {
    let hub = hub().await;
    let addr = hub.local_addr();
    let mut c = clients(&hub, 2).await;
    send(&mut c[1], r#"{"type":"hello","acks":true}"#).await;
    send(
        &mut c[1],
        r#"{"type":"subscribe","event_types":["b","a"],"replace":true}"#,
    )
    .await;
    stats_until(&hub, "control frames", |s| s.control_frames == 2).await;
    send(&mut c[0], &event("a", 1)).await;
    next_text(&mut c[1]).await;
    stats_until(&hub, "written", |s| s.frames_out == 1).await;
    let json: serde_json::Value =
        serde_json::from_str(&get(addr, "/api/clients").await.body).unwrap();
    assert_eq!(json["total"], 2);
    let rows = json["clients"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let (first, second) = (&rows[0], &rows[1]);
    assert_eq!(first["filter"]["mode"], "all");
    assert_eq!(first["acks"], false);
    assert_eq!(second["acks"], true);
    assert_eq!(second["filter"]["mode"], "only");
    assert_eq!(second["filter"]["types"], serde_json::json!(["a", "b"]));
    assert_eq!(second["frames_out"], 1);
    assert_eq!(second["dropped"], 0);
    assert_eq!(second["queued_frames"], 0);
    let peer: SocketAddr = second["peer"].as_str().unwrap().parse().unwrap();
    assert_eq!(peer.ip(), addr.ip());
    assert!(second["since_unix_ms"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_says_503_while_shutting_down() {
    // A client holds the shutdown open (it never answers the close), so
    // the hub is draining while the check runs; the listener is closed by
    // then, so the check goes over a connection made before.
    let hub = hub().await;
    let addr = hub.local_addr();
    let tcp = TcpStream::connect(addr).await.unwrap();
    stats_until(&hub, "the connection is open", |s| s.connections_open == 1).await;
    let handle = hub.handle();
    handle.shutdown();
    assert!(handle.is_shutting_down());
    let text = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let reply = exchange(tcp, text.as_bytes()).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.body, "shutting down\n");
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_the_routes_and_mtls_refuses_without_a_certificate() {
    let ca = TestCa::new("test CA");
    let cert = ca.server_cert();
    let hub = Hub::builder()
        .tls(HubTls::from_pem(&cert.cert_pem, &cert.key_pem).unwrap())
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = hub.local_addr();
    assert_eq!(hub.http_url(), format!("https://{addr}/"));
    let connector = client_tls(&ca);
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector
        .connect(name.clone(), TcpStream::connect(addr).await.unwrap())
        .await
        .unwrap();
    let reply = exchange(tls, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert_eq!(reply.status, 200);
    parse_metrics(&reply.body);
    // And a WebSocket client over TLS on the same port.
    let tls = connector
        .connect(name, TcpStream::connect(addr).await.unwrap())
        .await
        .unwrap();
    let (ws, _) = client_async(format!("wss://localhost:{}/", addr.port()), tls)
        .await
        .unwrap();
    stats_until(&hub, "the TLS client", |s| s.clients == 1).await;
    drop(ws);

    // mTLS: no client certificate, no HTTP answer either.
    let client_ca = TestCa::new("client CA");
    let cert = ca.server_cert();
    let mtls = Hub::builder()
        .tls(
            HubTls::from_pem(&cert.cert_pem, &cert.key_pem)
                .unwrap()
                .require_client_certificates(client_ca.cert_pem())
                .unwrap(),
        )
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tcp = TcpStream::connect(mtls.local_addr()).await.unwrap();
    if let Ok(mut tls) = connector.connect(name, tcp).await {
        // TLS 1.3: the client finishes first and learns of the refusal
        // on its first read.
        let _ = tls
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        let mut raw = Vec::new();
        let read = timeout(LIMIT, tls.read_to_end(&mut raw)).await.unwrap();
        assert!(
            read.is_err() || raw.is_empty(),
            "{:?}",
            String::from_utf8_lossy(&raw)
        );
    }
    stats_until(&mtls, "the TLS failure", |s| s.tls_failures == 1).await;
    assert_eq!(mtls.stats().http_requests, 0);
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

/// A client that sends its upgrade request and resets the connection at
/// once: the hub's 101 may fail to go out after the request was accepted.
/// Each such connection counts once, as a client or as a failed
/// handshake, never as both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_counts_as_a_client_or_a_failure_never_both() {
    let hub = hub().await;
    let addr = hub.local_addr();
    const ATTEMPTS: u64 = 300;
    let upgrade = format!(
        "GET /events HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    for _ in 0..ATTEMPTS {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(upgrade.as_bytes()).await.unwrap();
        // Closing with SO_LINGER 0 sends a reset instead of a FIN.
        tcp.set_zero_linger().unwrap();
        drop(tcp);
    }
    // Every connection is over once each is counted (the listen backlog
    // may still hold some after the first ones are done) and none is open.
    let counted = |s: &HubStats| s.connections_total + s.handshake_failures + s.connections_refused;
    let s = stats_until(&hub, "every connection over", |s| {
        counted(s) >= ATTEMPTS && s.connections_open == 0
    })
    .await;
    assert_eq!(counted(&s), ATTEMPTS, "{s:?}");
}

/// Same origin means the `Host` is one of the hub's own names: a page on a
/// name rebound to the hub's address (Origin and Host agree, the name is
/// someone else's) gets 403, on the HTTP side and on the upgrade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebound_name_is_not_the_hubs_own_origin() {
    let hub = hub().await;
    let addr = hub.local_addr();
    let port = addr.port();
    let ask = |host: String, path: &str, extra: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\n{extra}\r\n")
    };
    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
    let rebound = format!("rebound.example:{port}");
    for (path, extra) in [("/api/clients", ""), ("/events", upgrade)] {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let reply = exchange(tcp, ask(rebound.clone(), path, extra).as_bytes()).await;
        assert_eq!(reply.status, 403, "{path}");
    }
    assert_eq!(hub.stats().clients, 0);
    // `localhost` and the address are the hub's own names.
    for host in [format!("localhost:{port}"), addr.to_string()] {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let reply = exchange(tcp, ask(host.clone(), "/api/stats", "").as_bytes()).await;
        assert_eq!(reply.status, 200, "{host}");
    }
}

/// `/api/clients` is paced hub-wide (10 answers a second, in bursts of as
/// many): past it, 429 with `Retry-After`, and a refused request does not
/// push the next answer further away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_api_is_paced() {
    let hub = hub().await;
    let addr = hub.local_addr();
    let started = tokio::time::Instant::now();
    let (mut answered, mut paced) = (0u64, 0u64);
    for _ in 0..60 {
        let reply = get(addr, "/api/clients").await;
        match reply.status {
            200 => answered += 1,
            429 => {
                paced += 1;
                let secs: u64 = reply.header("retry-after").unwrap().parse().unwrap();
                assert!(secs >= 1, "{reply:?}");
            }
            other => panic!("unexpected {other}: {reply:?}"),
        }
    }
    // The burst, plus what the time taken refilled.
    let refilled = (started.elapsed().as_secs_f64() * 10.0).ceil() as u64;
    assert!(
        answered <= 10 + refilled,
        "{answered} answered, {paced} paced in {:?}",
        started.elapsed()
    );
    assert_eq!(answered + paced, 60);
}
