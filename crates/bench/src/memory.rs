//! Idle memory per connection (measurement 4), client and server side,
//! each measured in a process of its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message;
use watchtower_websocket::prelude::*;

use crate::child::{ChildProcess, own_rss_kib, status_kib};
use crate::section::{SectionReport, Target};
use crate::stats::ratio;
use crate::workload::event;
use crate::{BenchError, BenchOptions};

/// KiB of resident memory per idle connection (after one message each, so
/// buffers that fill lazily are counted): what each further connection
/// costs, measured after a first one. What a process pays once — the code
/// of the connect and receive paths faulted in, the allocator's arenas, the
/// runtime's slabs, about 2 MiB here — is not a cost per connection, and
/// divided by the connections it would add ~2 KiB to each figure at 1,000.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Memory {
    /// Connections measured.
    pub connections: usize,
    /// One connected `WebSocketTransport`, client side.
    pub transport_client_kib: f64,
    /// One raw tokio-tungstenite client with default settings.
    pub raw_client_kib: f64,
    /// The hub, per connected client.
    pub hub_kib: f64,
    /// The raw broadcast server, per connected client.
    pub raw_server_kib: f64,
    /// transport / raw, client side.
    pub ratio_client: f64,
}

pub(crate) async fn section(options: &BenchOptions) -> Result<SectionReport, BenchError> {
    let sittings = if options.quick { 1 } else { 3 };
    let (mut client, mut hub) = (Vec::new(), Vec::new());
    let mut last = Memory::default();
    for _ in 0..sittings {
        last = run(options).await?;
        eprintln!(
            "  client {:.1} KiB, hub {:.1} KiB per connection",
            last.transport_client_kib, last.hub_kib
        );
        client.push(last.transport_client_kib);
        hub.push(last.hub_kib);
    }
    let m = &last;
    let table = format!(
        "Idle memory per connection, {} connections (KiB of RSS; the last of {sittings} sittings)\n   \
         client: WebSocketTransport {:>7.1}   raw tokio-tungstenite (defaults) {:>7.1}   ratio {:.2}\n   \
         server: hub                {:>7.1}   raw broadcast server             {:>7.1}\n",
        m.connections,
        m.transport_client_kib,
        m.raw_client_kib,
        m.ratio_client,
        m.hub_kib,
        m.raw_server_kib
    );
    Ok(SectionReport::new("memory", &last, table)?
        .target(Target::at_most(
            "idle memory per connection, client",
            "KiB",
            12.0,
            client,
        ))
        .target(Target::at_most(
            "idle memory per connection, hub",
            "KiB",
            12.0,
            hub,
        )))
}

pub(crate) async fn run(options: &BenchOptions) -> Result<Memory, BenchError> {
    let k = options.memory_connections;
    let (transport_client_kib, hub_kib) = measure("hub", "ours", k).await?;
    let (raw_client_kib, raw_server_kib) = measure("raw-broadcast", "raw", k).await?;
    Ok(Memory {
        connections: k,
        ratio_client: ratio(transport_client_kib, raw_client_kib),
        transport_client_kib,
        raw_client_kib,
        hub_kib,
        raw_server_kib,
    })
}

fn per_connection(before: u64, after: u64, k: usize) -> f64 {
    after.saturating_sub(before) as f64 / k.max(1) as f64
}

/// Lets allocations settle before reading RSS.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// A server process and a clients process; each reports its own growth
/// from when one warm-up connection is up (see [`Memory`]).
pub(crate) async fn measure(
    server_role: &str,
    clients: &str,
    k: usize,
) -> Result<(f64, f64), BenchError> {
    let mut server = ChildProcess::spawn(&[server_role])?;
    let addr = server.value("ADDR").await?;
    let mut client = ChildProcess::spawn(&["clients", clients, &addr, &k.to_string()])?;
    client.value("WARMED").await?;
    let server_before = status_kib(server.pid(), "VmRSS:").unwrap_or(0);
    client.send("GO").await?;
    let client_kib: f64 = client
        .value("CLIENT_KIB")
        .await?
        .parse()
        .map_err(|_| BenchError::Incomplete("bad CLIENT_KIB".into()))?;
    settle().await;
    let server_kib = per_connection(
        server_before,
        status_kib(server.pid(), "VmRSS:").unwrap_or(0),
        k,
    );
    client.finish().await?;
    server.finish().await?;
    Ok((client_kib, server_kib))
}

/// In a `bench-child clients ours|raw ADDR K` process: connects one
/// client (and a publisher) and sends it a message, prints `WARMED`, waits
/// for the parent's go, then connects K clients, sends each one message,
/// prints `CLIENT_KIB` (the growth since the go, per client), and waits.
pub(crate) async fn clients(
    kind: &str,
    addr: &str,
    k: usize,
) -> Result<Vec<Box<dyn std::any::Any + Send>>, BenchError> {
    let connect = |n| async move {
        match kind {
            "ours" => ours(addr, n).await,
            _ => raw(addr, n).await,
        }
    };
    let mut keep = connect(1).await?;
    settle().await;
    println!("WARMED 1");
    crate::child::wait_for_parent().await?;
    let before = own_rss_kib();
    keep.extend(connect(k).await?);
    settle().await;
    println!("CLIENT_KIB {:.2}", per_connection(before, own_rss_kib(), k));
    Ok(keep)
}

async fn ours(addr: &str, k: usize) -> Result<Vec<Box<dyn std::any::Any + Send>>, BenchError> {
    let url = format!("ws://{addr}/events");
    let mut transports = Vec::with_capacity(k);
    for _ in 0..k {
        transports.push(WebSocketTransport::new(WebSocketConfig::new(&url)).await?);
    }
    // One event to every connection, so read buffers are touched.
    let publisher = WebSocketTransport::new(WebSocketConfig::new(&url)).await?;
    publisher.publish(event(0)).await?;
    publisher.flush().await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while transports
        .iter()
        .any(|t| t.connection_stats().frames_in == 0)
    {
        if tokio::time::Instant::now() > deadline {
            return Err(BenchError::Incomplete(
                "not every transport received the event".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut keep: Vec<Box<dyn std::any::Any + Send>> = vec![Box::new(publisher)];
    keep.extend(
        transports
            .into_iter()
            .map(|t| Box::new(t) as Box<dyn std::any::Any + Send>),
    );
    Ok(keep)
}

async fn raw(addr: &str, k: usize) -> Result<Vec<Box<dyn std::any::Any + Send>>, BenchError> {
    let received = Arc::new(AtomicU64::new(0));
    let mut keep: Vec<Box<dyn std::any::Any + Send>> = Vec::with_capacity(k + 1);
    for _ in 0..k {
        // Default settings, as a user would connect.
        let (mut ws, _) =
            tokio_tungstenite::connect_async(format!("ws://{addr}/subscribe")).await?;
        let received = Arc::clone(&received);
        keep.push(Box::new(crate::raw::Tasks::one(tokio::spawn(async move {
            while let Some(Ok(message)) = ws.next().await {
                if message.is_text() {
                    received.fetch_add(1, Relaxed);
                }
            }
        }))));
    }
    let (mut publisher, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/publish")).await?;
    publisher
        .send(Message::Text(serde_json::to_string(&event(0))?.into()))
        .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while received.load(Relaxed) < k as u64 {
        if tokio::time::Instant::now() > deadline {
            return Err(BenchError::Incomplete(
                "not every raw client received the message".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    keep.push(Box::new(publisher));
    Ok(keep)
}
