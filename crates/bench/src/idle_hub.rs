//! A hub holding many idle connections: its resident memory per connection
//! and how long it takes to accept them all. The hub and the clients each
//! run in a process of their own, both with the open-file limit raised.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Serialize;

use crate::child::{ChildProcess, status_kib};
use crate::section::{SectionReport, Target};
use crate::{BenchError, BenchOptions};

/// Handshakes the clients keep in flight at once: below the hub's
/// default `max_pending_handshakes` (256), so none is refused.
const IN_FLIGHT: usize = 128;

/// The hub with many idle connections.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct IdleHub {
    /// Connections opened (raw tokio-tungstenite clients).
    pub connections: usize,
    /// Seconds from the first connect to the last completed handshake.
    pub accept_seconds: f64,
    /// Connections accepted per second.
    pub accepts_per_second: f64,
    /// The hub's resident memory before the connections, KiB.
    pub rss_before_kib: u64,
    /// The hub's resident memory with every connection open, KiB.
    pub rss_after_kib: u64,
    /// KiB of the hub's resident memory per connection.
    pub kib_per_connection: f64,
}

pub(crate) async fn section(options: &BenchOptions) -> Result<SectionReport, BenchError> {
    let k = options.idle_connections;
    let mut hub = ChildProcess::spawn(&["hub", &(k + 16).to_string()])?;
    let addr = hub.value("ADDR").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = status_kib(hub.pid(), "VmRSS:").unwrap_or(0);
    let mut clients = ChildProcess::spawn(&["idle-clients", &addr, &k.to_string()])?;
    let seconds: f64 = clients
        .value("ACCEPT_SECS")
        .await?
        .parse()
        .map_err(|_| BenchError::Incomplete("bad ACCEPT_SECS".into()))?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = status_kib(hub.pid(), "VmRSS:").unwrap_or(0);
    clients.finish().await?;
    hub.finish().await?;
    let idle = IdleHub {
        connections: k,
        accept_seconds: seconds,
        accepts_per_second: if seconds > 0.0 {
            k as f64 / seconds
        } else {
            0.0
        },
        rss_before_kib: before,
        rss_after_kib: after,
        kib_per_connection: after.saturating_sub(before) as f64 / k.max(1) as f64,
    };
    let table = format!(
        "Hub with {} idle connections (raw clients, {IN_FLIGHT} handshakes in flight)\n   \
         accepted all in {:.2} s ({:.0}/s); RSS {} → {} KiB, {:.1} KiB per connection\n",
        idle.connections,
        idle.accept_seconds,
        idle.accepts_per_second,
        idle.rss_before_kib,
        idle.rss_after_kib,
        idle.kib_per_connection
    );
    Ok(
        SectionReport::new("idle-hub", &idle, table)?.target(Target::at_most(
            &format!("hub memory per idle connection, {k} connections"),
            "KiB",
            12.0,
            vec![idle.kib_per_connection],
        )),
    )
}

/// In a `bench-child idle-clients ADDR K` process: opens K raw connections,
/// prints `ACCEPT_SECS`, and returns them to be held.
pub(crate) async fn clients(addr: &str, k: usize) -> Result<Vec<impl Send>, BenchError> {
    let url = format!("ws://{addr}/events");
    let start = Instant::now();
    let connected: Vec<_> = futures_util::stream::iter(0..k)
        .map(|_| tokio_tungstenite::connect_async(url.as_str()))
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let seconds = start.elapsed().as_secs_f64();
    let mut held = Vec::with_capacity(k);
    for result in connected {
        held.push(result?.0);
    }
    println!("ACCEPT_SECS {seconds:.4}");
    Ok(held)
}
