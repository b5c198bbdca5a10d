//! The `hub-cpu` section's load, for profiling a running hub from outside
//! (`perf stat -p`, `perf record -p`): one raw publisher and `SUBS` raw
//! subscribers, the bench's event, until every subscriber has every event.
//!
//! ```text
//! cargo run --release -p watchtower-bench --example hub_cpu_load -- ws://ADDR/events 8 200000
//! ```
//!
//! Prints `publishing` once the subscribers are connected, and `done` with
//! the frames received once the run is over; whoever started the hub reads
//! its counters around the two.

use std::time::Duration;

use watchtower_bench::RawLoad;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .ok_or("usage: hub_cpu_load URL [SUBS] [EVENTS]")?;
    let subs: usize = args.next().map_or(Ok(8), |s| s.parse())?;
    let n: usize = args.next().map_or(Ok(200_000), |s| s.parse())?;
    let mut load = RawLoad::connect(&url, subs, n).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    eprintln!("publishing");
    let received = load.run().await?;
    eprintln!("done: {received} of {} frames", n * subs);
    load.close().await;
    Ok(())
}
