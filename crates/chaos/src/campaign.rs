//! One campaign: start the hubs (and NATS), the clients and their proxies,
//! play the schedule, drain, stop everything by its process id, check.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use watchtower_test_support::{FaultProxy, Mode, NatsServer, unused_addr};
use watchtower_websocket::{
    BackpressureConfig, BackpressureStrategy, Event, EventMetadata, MailboxOverflow, Position,
    WebSocketConfig, WebSocketTransport,
};

use crate::check::{CheckConfig, Verdict, check};
use crate::fault::{FaultKind, list_to_string};
use crate::history::{Record, Recorder};
use crate::memory::{self, Budget};
use crate::procs::{CliSubscriber, HubProcess, cli_publish};
use crate::schedule::{Fault, Schedule, Target, Topology};
use crate::workload::{self, PublisherPlan};
use crate::{report, resend};

/// What the hubs share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backplane {
    /// One hub on its own.
    None,
    /// Three hubs on one NATS JetStream stream.
    Nats,
}

impl fmt::Display for Backplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backplane::None => "none",
            Backplane::Nats => "nats",
        })
    }
}

impl std::str::FromStr for Backplane {
    type Err = String;

    fn from_str(text: &str) -> Result<Backplane, String> {
        match text {
            "none" => Ok(Backplane::None),
            "nats" => Ok(Backplane::Nats),
            other => Err(format!("unknown backplane `{other}`: none or nats")),
        }
    }
}

/// Which schedule a campaign plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// The enabled faults, mixed at random (see [`Schedule::generate`]).
    #[default]
    Mixed,
    /// Issue #27's soak: three hubs on NATS, nats-server killed with -9
    /// and restarted every 10–20 s, its store wiped once, nothing else
    /// (see [`Schedule::nats_soak`]).
    NatsSoak,
}

impl Profile {
    /// The name `--profile` takes.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Mixed => "mixed",
            Profile::NatsSoak => "nats-soak",
        }
    }
}

impl std::str::FromStr for Profile {
    type Err = String;

    fn from_str(text: &str) -> Result<Profile, String> {
        match text {
            "mixed" => Ok(Profile::Mixed),
            "nats-soak" => Ok(Profile::NatsSoak),
            other => Err(format!("unknown profile `{other}`: mixed or nats-soak")),
        }
    }
}

/// A campaign's settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// The schedule's seed.
    pub seed: u64,
    /// How long the workload runs (faults included), before the drain.
    pub duration: Duration,
    /// One hub, or three on NATS.
    pub backplane: Backplane,
    /// The faults to inject (`Profile::NatsSoak` plays its own).
    pub faults: Vec<FaultKind>,
    /// Which schedule to play.
    pub profile: Profile,
    /// The `watchtower` binary to test (built with `--features nats` for
    /// the NATS backplane).
    pub watchtower: PathBuf,
    /// The `nats-server` binary, for `Backplane::Nats`.
    pub nats_server: Option<PathBuf>,
    /// Where the history and the processes' logs go (a directory per run
    /// is made in it).
    pub out: PathBuf,
    /// Whether the replay command names `--watchtower` (it does unless
    /// the binary came from the xtask's own build).
    pub replay_names_binary: bool,
}

impl Options {
    /// The command that replays exactly this run.
    pub fn replay(&self) -> String {
        let mut line = match self.profile {
            Profile::Mixed => format!(
                "cargo xtask chaos --seed {} --duration {} --backplane {} --faults {}",
                self.seed,
                self.duration.as_secs(),
                self.backplane,
                list_to_string(&self.faults)
            ),
            Profile::NatsSoak => format!(
                "cargo xtask chaos --profile nats-soak --seed {} --duration {}",
                self.seed,
                self.duration.as_secs()
            ),
        };
        if self.replay_names_binary {
            line.push_str(&format!(" --watchtower {}", self.watchtower.display()));
        }
        line
    }
}

/// What a campaign found.
#[derive(Debug)]
pub struct Outcome {
    /// The checker's verdict.
    pub verdict: Verdict,
    /// The report, as printed.
    pub report: String,
    /// Where the history and logs are.
    pub dir: PathBuf,
}

/// The hubs' history, in events (`--history`), passed explicitly so that
/// the checker judges "not recovered" answers by what the hubs run with.
const HISTORY_SIZE: u64 = 10_000;
/// The hubs' `--history-bytes`: small enough to bind (invariant 6).
const HISTORY_BYTES: u64 = 8 << 20;
/// The hubs' de-duplication window, in keys (the hub's default; the CLI
/// has no flag for it).
const DEDUP_EVENTS: u64 = 100_000;

/// The arguments every hub of a campaign runs with, beside its address.
fn hub_args() -> Vec<String> {
    vec![
        "--history".to_string(),
        HISTORY_SIZE.to_string(),
        "--history-bytes".to_string(),
        HISTORY_BYTES.to_string(),
    ]
}

/// The hub settings the checker judges by: those of [`hub_args`], and the
/// hubs' default `history_ttl` (2 min).
fn check_config(backplane: Backplane) -> CheckConfig {
    CheckConfig {
        history_size: HISTORY_SIZE,
        history_ttl: 120_000_000,
        nats: backplane == Backplane::Nats,
        cause_window: 30_000_000,
        memory: Some(Budget {
            history_bytes: HISTORY_BYTES,
            dedup_events: DEDUP_EVENTS,
        }),
    }
}

/// One client's way to the hubs: a fault proxy in front of each hub.
struct Link {
    proxies: Vec<FaultProxy>,
    primary: usize,
}

impl Link {
    /// The proxies' URLs, its primary hub's first.
    fn urls(&self) -> Vec<String> {
        let n = self.proxies.len();
        (0..n)
            .map(|i| self.proxies[(self.primary + i) % n].url("/events"))
            .collect()
    }

    fn set_mode(&self, mode: Mode) {
        for p in &self.proxies {
            p.set_mode(mode);
        }
    }

    fn reset_all(&self) {
        for p in &self.proxies {
            p.reset_all();
        }
    }
}

/// Everything a fault may act on.
struct World {
    recorder: Recorder,
    links: HashMap<String, Link>,
    hubs: Vec<Arc<Mutex<HubProcess>>>,
    clis: HashMap<String, Arc<Mutex<CliSubscriber>>>,
    nats: Option<Arc<Mutex<NatsServer>>>,
    seed: u64,
}

/// In-process clients: publishers, subscribers, the client that does both.
const PUBLISHERS: [(&str, &[&str], f64); 2] = [
    ("pub0", &["chaos.a", "chaos.b"], 100.0),
    ("pub1", &["chaos.a", "chaos.b"], 100.0),
];
const PUBSUB: (&str, &[&str], f64) = ("pubsub0", &["chaos.x"], 30.0);
const SUBSCRIBERS: [(&str, &[&str]); 3] = [
    ("sub0", &[]),
    ("sub1", &["chaos.a"]),
    ("sub2", &["chaos.b", "chaos.x"]),
];
const CLI_SUBSCRIBER: &str = "cli-sub0";
const CLI_PUBLISHER: &str = "cli-pub0";

/// How long the drain waits for deliveries to stop arriving.
const DRAIN_DEADLINE: Duration = Duration::from_secs(60);
/// Quiet time that ends the drain.
const QUIET: Duration = Duration::from_secs(3);

/// Runs one campaign and checks it. `Err` only when it could not be set
/// up (a binary missing, a hub that never started); every breach of a
/// guarantee is in the verdict.
pub async fn run(options: &Options) -> Result<Outcome, String> {
    let dir = options
        .out
        .join(format!("{}-{}", options.seed, options.backplane));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    if !options.watchtower.is_file() {
        return Err(format!(
            "no watchtower binary at {}",
            options.watchtower.display()
        ));
    }
    let recorder = Recorder::new();
    recorder.push(Record::Phase {
        t: recorder.now(),
        name: "setup".into(),
    });

    // NATS and the hubs.
    let nats = match options.backplane {
        Backplane::None => None,
        Backplane::Nats => {
            let binary = options
                .nats_server
                .clone()
                .or_else(NatsServer::binary)
                .ok_or("--backplane nats needs a nats-server (NATS_SERVER or PATH)")?;
            let server = tokio::spawn(NatsServer::start_with(binary))
                .await
                .map_err(|e| format!("nats-server did not start: {e}"))?;
            Some(Arc::new(Mutex::new(server)))
        }
    };
    let mut extra = hub_args();
    if let Some(server) = &nats {
        extra.extend([
            "--nats".to_string(),
            server.lock().await.url(),
            "--nats-stream".to_string(),
            "chaos".to_string(),
        ]);
    }
    let hub_count = if nats.is_some() { 3 } else { 1 };
    let mut hubs = Vec::new();
    for i in 0..hub_count {
        let mut hub = HubProcess::new(
            format!("hub{i}"),
            &options.watchtower,
            unused_addr(),
            extra.clone(),
            &dir,
            recorder.clone(),
        );
        hub.start().await?;
        // Its baseline, before any client: what invariant 6 adds the
        // budgets to.
        if let Some((rss, sockets)) = hub.pid().and_then(memory::sample) {
            recorder.push(Record::HubMemory {
                t: recorder.now(),
                hub: hub.name.clone(),
                rss,
                sockets,
                baseline: true,
            });
        }
        hubs.push(Arc::new(Mutex::new(hub)));
    }
    let mut hub_addrs = Vec::new();
    let mut hub_urls = Vec::new();
    for hub in &hubs {
        let hub = hub.lock().await;
        hub_addrs.push(hub.addr());
        hub_urls.push(hub.url());
    }

    // A proxy per client per hub.
    let mut names: Vec<String> = PUBLISHERS.iter().map(|p| p.0.to_string()).collect();
    names.push(PUBSUB.0.to_string());
    names.extend(SUBSCRIBERS.iter().map(|s| s.0.to_string()));
    names.push(CLI_SUBSCRIBER.to_string());
    names.push(CLI_PUBLISHER.to_string());
    let mut links = HashMap::new();
    for (i, name) in names.iter().enumerate() {
        let mut proxies = Vec::new();
        for addr in &hub_addrs {
            proxies.push(FaultProxy::start(*addr).await);
        }
        links.insert(
            name.clone(),
            Link {
                proxies,
                primary: i % hub_count,
            },
        );
    }
    let urls = |name: &str| links.get(name).map(Link::urls).unwrap_or_default();

    let topology = Topology {
        links: names.iter().filter(|n| **n != PUBSUB.0).cloned().collect(),
        pubsubs: vec![PUBSUB.0.to_string()],
        hubs: hub_count,
        cli_subscribers: vec![CLI_SUBSCRIBER.to_string()],
        nats: nats.is_some(),
    };
    let schedule = match options.profile {
        Profile::Mixed => {
            Schedule::generate(options.seed, options.duration, &options.faults, &topology)
        }
        Profile::NatsSoak => Schedule::nats_soak(options.seed, options.duration),
    };
    let _ = std::fs::write(dir.join("schedule.txt"), schedule.to_string());
    eprintln!(
        "chaos: seed {} profile {} backplane {} duration {}s faults {}; {} faults scheduled; history and logs in {}",
        options.seed,
        options.profile.name(),
        options.backplane,
        options.duration.as_secs(),
        list_to_string(&options.faults),
        schedule.faults.len(),
        dir.display()
    );
    eprint!("{schedule}");

    let (stop_tx, stop_rx) = watch::channel(false);
    let bursts = Arc::new(AtomicU64::new(0));
    let mut transports: Vec<Arc<WebSocketTransport>> = Vec::new();
    let mut watchers: Vec<JoinHandle<()>> = Vec::new();

    // Subscribers first, so that they are owed every event.
    for (name, filter) in SUBSCRIBERS {
        let transport = Arc::new(workload::connect(&urls(name), MailboxOverflow::Block).await?);
        let filter: Vec<String> = filter.iter().map(|s| s.to_string()).collect();
        let instance = workload::subscribe(&transport, name, None, filter, &recorder).await?;
        watchers.push(tokio::spawn(workload::watch_transport(
            Arc::clone(&transport),
            Arc::from(name),
            Some(instance),
            true,
            recorder.clone(),
            stop_rx.clone(),
        )));
        transports.push(transport);
    }
    // The CLI subscriber, from the position a hub gives now.
    let first_position = probe_position(&hub_urls[0]).await?;
    let mut cli = CliSubscriber::new(
        CLI_SUBSCRIBER.to_string(),
        &options.watchtower,
        urls(CLI_SUBSCRIBER),
        Vec::new(),
        &dir,
        recorder.clone(),
    );
    cli.start(Some(first_position)).await?;
    let cli = Arc::new(Mutex::new(cli));

    // Publishers.
    let mut publishers: Vec<JoinHandle<()>> = Vec::new();
    {
        let (name, types, rate) = PUBSUB;
        let transport =
            Arc::new(workload::connect(&urls(name), MailboxOverflow::DeadLetter).await?);
        let instance = workload::subscribe(&transport, name, Some(name), vec![], &recorder).await?;
        let plan = PublisherPlan {
            name: Arc::from(name),
            types: types.to_vec(),
            rate,
            seed: options.seed ^ 0x5eed_0002,
        };
        let (watcher, publisher) = spawn_publisher(
            &transport,
            plan,
            Some(instance),
            &recorder,
            &bursts,
            &stop_rx,
        );
        watchers.push(watcher);
        publishers.push(publisher);
        transports.push(transport);
    }
    for (i, (name, types, rate)) in PUBLISHERS.into_iter().enumerate() {
        let transport =
            Arc::new(workload::connect(&urls(name), MailboxOverflow::DeadLetter).await?);
        let plan = PublisherPlan {
            name: Arc::from(name),
            types: types.to_vec(),
            rate,
            seed: options.seed ^ (0x5eed_0010 + i as u64),
        };
        let (watcher, publisher) =
            spawn_publisher(&transport, plan, None, &recorder, &bursts, &stop_rx);
        watchers.push(watcher);
        publishers.push(publisher);
        transports.push(transport);
    }
    publishers.push(tokio::spawn(cli_publisher(
        options.watchtower.clone(),
        urls(CLI_PUBLISHER),
        dir.clone(),
        recorder.clone(),
        options.seed,
        stop_rx.clone(),
    )));

    let world = Arc::new(World {
        recorder: recorder.clone(),
        links,
        hubs,
        clis: HashMap::from([(CLI_SUBSCRIBER.to_string(), Arc::clone(&cli))]),
        nats,
        seed: options.seed,
    });

    // The schedule.
    recorder.push(Record::Phase {
        t: recorder.now(),
        name: "workload".into(),
    });
    let start = Instant::now();
    let mut faults = Vec::new();
    for (id, fault) in schedule.faults.iter().cloned().enumerate() {
        let world = Arc::clone(&world);
        let hub_urls = hub_urls.clone();
        faults.push(tokio::spawn(async move {
            tokio::time::sleep_until(start + fault.at).await;
            execute(&world, id, &fault, &hub_urls).await;
        }));
    }
    let burst_task = {
        let bursts = Arc::clone(&bursts);
        let times = schedule.bursts.clone();
        tokio::spawn(async move {
            for at in times {
                tokio::time::sleep_until(start + at).await;
                bursts.fetch_add(1, Relaxed);
            }
        })
    };
    let supervisor = tokio::spawn(supervise(Arc::clone(&world), stop_rx.clone()));
    let (sampling_tx, sampling_rx) = watch::channel(false);
    let sampler = tokio::spawn(sample_memory(Arc::clone(&world), sampling_rx));
    tokio::time::sleep_until(start + options.duration).await;
    burst_task.abort();
    for fault in faults {
        if tokio::time::timeout(Duration::from_secs(60), fault)
            .await
            .is_err()
        {
            recorder.push(Record::Stalled {
                t: recorder.now(),
                what: "a fault did not finish within 60 s of the workload's end".into(),
            });
        }
    }

    // Drain: everything healed, publishers stop and flush, deliveries
    // settle.
    recorder.push(Record::Phase {
        t: recorder.now(),
        name: "drain".into(),
    });
    for link in world.links.values() {
        link.set_mode(Mode::Pass);
    }
    {
        let mut cli = cli.lock().await;
        if !cli.is_running() {
            let _ = cli.start(None).await;
        }
    }
    let _ = stop_tx.send(true);
    for task in publishers {
        let _ = task.await;
    }
    let drain_start = Instant::now();
    let mut last_len = recorder.activity();
    let mut quiet_since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let len = recorder.activity();
        if len != last_len {
            last_len = len;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= QUIET {
            break;
        }
        if drain_start.elapsed() >= DRAIN_DEADLINE {
            recorder.push(Record::Stalled {
                t: recorder.now(),
                what: format!(
                    "deliveries still arriving {DRAIN_DEADLINE:?} after the publishers stopped"
                ),
            });
            break;
        }
    }

    // Stop: every process by its id.
    recorder.push(Record::Phase {
        t: recorder.now(),
        name: "stop".into(),
    });
    let _ = supervisor.await;
    let _ = sampling_tx.send(true);
    let _ = sampler.await;
    cli.lock().await.interrupt(true).await;
    for transport in &transports {
        let _ = tokio::time::timeout(Duration::from_secs(10), transport.shutdown()).await;
    }
    for watcher in watchers {
        let _ = watcher.await;
    }
    for hub in &world.hubs {
        hub.lock().await.terminate().await;
    }
    if let Some(nats) = &world.nats {
        nats.lock().await.kill();
    }

    let records = recorder.snapshot();
    write_history(&dir.join("history.jsonl"), &records);
    let verdict = check(&records, &check_config(options.backplane));
    let report = report::render(options, &verdict, &dir);
    Ok(Outcome {
        verdict,
        report,
        dir,
    })
}

fn write_history(path: &Path, records: &[Record]) {
    let mut text = String::new();
    for record in records {
        text.push_str(&record.to_json().to_string());
        text.push('\n');
    }
    let _ = std::fs::write(path, text);
}

/// Starts one in-process publisher on `transport`: the task that watches
/// its connection (`instance`: its subscription, if it also subscribes)
/// and the one that publishes `plan`.
fn spawn_publisher(
    transport: &Arc<WebSocketTransport>,
    plan: PublisherPlan,
    instance: Option<u32>,
    recorder: &Recorder,
    bursts: &Arc<AtomicU64>,
    stop_rx: &watch::Receiver<bool>,
) -> (JoinHandle<()>, JoinHandle<()>) {
    let watcher = tokio::spawn(workload::watch_transport(
        Arc::clone(transport),
        Arc::clone(&plan.name),
        instance,
        false,
        recorder.clone(),
        stop_rx.clone(),
    ));
    let publisher = tokio::spawn(workload::publish(
        Arc::clone(transport),
        plan,
        recorder.clone(),
        Arc::clone(bursts),
        stop_rx.clone(),
    ));
    (watcher, publisher)
}

/// The position a hub stands at now, read by a short-lived client.
async fn probe_position(url: &str) -> Result<String, String> {
    let transport = workload::connect(&[url.to_string()], MailboxOverflow::DeadLetter).await?;
    let position = transport.position();
    let _ = transport.shutdown().await;
    position
        .map(|p| p.to_string())
        .ok_or_else(|| format!("the hub at {url} gave no position (history off?)"))
}

/// Restarts a hub that exited on its own (recorded as an unexpected exit).
async fn supervise(world: Arc<World>, mut stop: watch::Receiver<bool>) {
    loop {
        for hub in &world.hubs {
            if let Ok(mut hub) = hub.try_lock()
                && hub.check_exit()
                && let Err(e) = hub.start().await
            {
                world.recorder.push(Record::Stalled {
                    t: world.recorder.now(),
                    what: format!("{} could not be restarted: {e}", hub.name),
                });
            }
        }
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            _ = stop.changed() => {}
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// How often each hub's memory is sampled.
const MEMORY_EVERY: Duration = Duration::from_millis(200);

/// Samples every running hub's `VmRSS` and sockets into the history
/// until `stop` (invariant 6). A hub a fault holds (killed, restarting)
/// is skipped for that round.
async fn sample_memory(world: Arc<World>, mut stop: watch::Receiver<bool>) {
    loop {
        for hub in &world.hubs {
            let Ok(hub) = hub.try_lock() else { continue };
            if let Some((rss, sockets)) = hub.pid().and_then(memory::sample) {
                world.recorder.push(Record::HubMemory {
                    t: world.recorder.now(),
                    hub: hub.name.clone(),
                    rss,
                    sockets,
                    baseline: false,
                });
            }
        }
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            _ = stop.changed() => {}
            () = tokio::time::sleep(MEMORY_EVERY) => {}
        }
    }
}

/// `watchtower publish --at-least-once --stdin` processes, one after
/// another, 20–100 events each.
async fn cli_publisher(
    binary: PathBuf,
    urls: Vec<String>,
    dir: PathBuf,
    recorder: Recorder,
    seed: u64,
    mut stop: watch::Receiver<bool>,
) {
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x5eed_0c11);
    let mut batch = 0;
    while !*stop.borrow() {
        batch += 1;
        let n = rng.u64(20..=100);
        let events: Vec<(u64, &str)> = (1..=n)
            .map(|seq| (seq, if rng.bool() { "chaos.a" } else { "chaos.b" }))
            .collect();
        let name = format!("{CLI_PUBLISHER}.{batch}");
        cli_publish(&binary, &urls, &name, &events, &dir, &recorder).await;
        let pause = Duration::from_millis(rng.u64(500..=2_000));
        tokio::select! {
            _ = stop.changed() => {}
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// Plays one fault.
async fn execute(world: &World, id: usize, fault: &Fault, hub_urls: &[String]) {
    let recorder = &world.recorder;
    let (client, global) = match &fault.target {
        Target::Link(name) | Target::CliSubscriber(name) => (Some(name.clone()), false),
        _ => (None, true),
    };
    recorder.push(Record::FaultBegin {
        t: recorder.now(),
        id,
        text: format!(
            "{} {} for {:.2}s",
            fault.kind,
            fault.target,
            fault.hold.as_secs_f64()
        ),
        client,
        global,
    });
    match (&fault.target, fault.kind) {
        (Target::Link(name), kind) => {
            if let Some(link) = world.links.get(name) {
                match kind {
                    FaultKind::Cut => {
                        link.set_mode(Mode::Blackhole);
                        link.reset_all();
                        tokio::time::sleep(fault.hold).await;
                        link.set_mode(Mode::Pass);
                    }
                    FaultKind::Reset | FaultKind::PubsubReset => link.reset_all(),
                    FaultKind::Stall => {
                        link.set_mode(Mode::Latency(fault.hold));
                        tokio::time::sleep(fault.hold).await;
                        link.set_mode(Mode::Pass);
                    }
                    FaultKind::Slow => {
                        link.set_mode(Mode::Bandwidth(16 * 1024));
                        tokio::time::sleep(fault.hold).await;
                        link.set_mode(Mode::Pass);
                    }
                    _ => {}
                }
            }
        }
        (Target::Hub(i), kind) => {
            if let Some(hub) = world.hubs.get(*i) {
                let mut hub = hub.lock().await;
                if kind == FaultKind::HubKill {
                    hub.kill().await;
                    tokio::time::sleep(fault.hold).await;
                } else {
                    hub.terminate().await;
                }
                if let Err(e) = hub.start().await {
                    recorder.push(Record::Stalled {
                        t: recorder.now(),
                        what: format!("{} could not be restarted: {e}", hub.name),
                    });
                }
            }
        }
        (Target::CliSubscriber(name), kind) => {
            if let Some(cli) = world.clis.get(name) {
                let mut cli = cli.lock().await;
                if kind == FaultKind::CliKill {
                    cli.kill().await;
                } else {
                    cli.interrupt(false).await;
                }
                tokio::time::sleep(fault.hold).await;
                if let Err(e) = cli.start(None).await {
                    recorder.push(Record::Stalled {
                        t: recorder.now(),
                        what: format!("{name} could not be restarted: {e}"),
                    });
                }
            }
        }
        (Target::Nats, kind) => {
            if let Some(nats) = &world.nats {
                let mut nats = nats.lock().await;
                nats.kill();
                tokio::time::sleep(fault.hold).await;
                if kind == FaultKind::NatsWipe
                    && let Err(e) = wipe_store(nats.store())
                {
                    recorder.push(Record::Stalled {
                        t: recorder.now(),
                        what: format!("nats-wipe could not delete the store: {e}"),
                    });
                }
                // The helper panics if the server does not come back:
                // this fault's task ends there, and the drain's checks
                // report what it cost.
                let restarted = tokio::time::timeout(Duration::from_secs(30), nats.restart()).await;
                if restarted.is_err() {
                    recorder.push(Record::Stalled {
                        t: recorder.now(),
                        what: "nats-server did not come back within 30 s".into(),
                    });
                }
            }
        }
        (Target::Outside, _) => {
            hostile(hub_urls, fault.hold, recorder, world.seed ^ id as u64, id).await;
        }
    }
    recorder.push(Record::FaultEnd {
        t: recorder.now(),
        id,
    });
    if fault.kind == FaultKind::NatsWipe {
        await_healthy(world, id).await;
    }
}

/// Deletes everything in a (stopped) nats-server's store directory but
/// its log: the JetStream store, streams and consumers with it.
fn wipe_store(store: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(store)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "log") {
            continue;
        }
        if path.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// How long every hub gets to say `/healthz` 200 again after a wipe.
const HEALTHY_DEADLINE: Duration = Duration::from_secs(30);
/// How long after a wipe a hub's 200 starts to count: a hub may answer
/// 200 for the moment it takes to notice the stream is new.
const HEALTHY_GRACE: Duration = Duration::from_secs(5);

/// After a `nats-wipe`: every hub must answer `/healthz` 200 (serving on
/// the recreated stream) at least once between [`HEALTHY_GRACE`] and
/// [`HEALTHY_DEADLINE`] after it; a hub that does not is recorded as no
/// progress (invariant 6), with what it last answered. Once, not always:
/// a later fault (the soak kills NATS again 10–20 s on) may make it 503
/// again, for its own good reason.
async fn await_healthy(world: &World, id: usize) {
    let start = Instant::now();
    tokio::time::sleep(HEALTHY_GRACE).await;
    let deadline = start + HEALTHY_DEADLINE;
    for hub in &world.hubs {
        let (name, addr) = {
            let hub = hub.lock().await;
            (hub.name.clone(), hub.addr())
        };
        loop {
            let last = match health(addr).await {
                Ok(200) => break,
                Ok(status) => format!("HTTP {status}"),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                world.recorder.push(Record::Stalled {
                    t: world.recorder.now(),
                    what: format!(
                        "{name} /healthz never said 200 from {HEALTHY_GRACE:?} to \
                         {HEALTHY_DEADLINE:?} after the nats-wipe (fault {id}) ended (last: \
                         {last}): it did not take up the recreated stream"
                    ),
                });
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// The status of `GET /healthz` on a hub, over a plain HTTP/1.1
/// connection.
async fn health(addr: std::net::SocketAddr) -> Result<u16, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        tcp.write_all(request.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut head = [0u8; 12];
        tcp.read_exact(&mut head)
            .await
            .map_err(|e| format!("read: {e}"))?;
        std::str::from_utf8(&head[9..12])
            .ok()
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| "not an HTTP answer".to_string())
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .unwrap_or_else(|_| Err("no answer within 5 s".to_string()))
}

/// A hostile client for `hold`: a flood of at-most-once events (untracked,
/// type `chaos.flood`), beside it upgrades presenting forged resume
/// positions (the hub's own epoch, made-up seqs and keys), and an ack-mode
/// client resending its own frames and other clients' ids
/// ([`resend::run`]).
async fn hostile(hub_urls: &[String], hold: Duration, recorder: &Recorder, seed: u64, tag: usize) {
    let Some(url) = hub_urls.first().cloned() else {
        return;
    };
    let end = Instant::now() + hold;
    let flood = {
        let url = url.clone();
        let recorder = recorder.clone();
        tokio::spawn(async move {
            let config = WebSocketConfig {
                url,
                backpressure: BackpressureConfig {
                    max_queue_size: 10_000,
                    strategy: BackpressureStrategy::DropNewest,
                    ..BackpressureConfig::default()
                },
                ..WebSocketConfig::default()
            };
            let Ok(transport) = WebSocketTransport::builder(config)
                .resume(false)
                .connect()
                .await
            else {
                return;
            };
            while Instant::now() < end {
                let mut sent = 0;
                for _ in 0..100 {
                    let event = Event::new(
                        "chaos.flood",
                        serde_json::json!({"p": "hostile", "s": 0, "pad": "x".repeat(200)}),
                        EventMetadata::default(),
                    );
                    if transport.publish(event).await.is_ok() {
                        sent += 1;
                    }
                }
                recorder.push(Record::Untracked {
                    t: recorder.now(),
                    events: sent,
                });
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = transport.shutdown().await;
        })
    };
    let resend = {
        let url = url.clone();
        let recorder = recorder.clone();
        tokio::spawn(async move {
            let id = format!("chaos-hostile-{seed:x}");
            resend::run(&url, &id, tag, end, &recorder, seed).await;
        })
    };
    let forge = tokio::spawn(async move {
        let mut rng = fastrand::Rng::with_seed(seed);
        let Ok(probe) =
            workload::connect(std::slice::from_ref(&url), MailboxOverflow::DeadLetter).await
        else {
            return;
        };
        let epoch = probe.position().map(|p| p.epoch()).unwrap_or(0);
        let _ = probe.shutdown().await;
        while Instant::now() < end {
            let forged = Position::new(epoch, rng.u64(1..1_000_000)).after(Some(rng.u64(..)));
            let built = WebSocketTransport::builder(WebSocketConfig::new(url.as_str()))
                .resume_from(forged)
                .connect()
                .await;
            if let Ok(transport) = built {
                let _ = transport
                    .subscribe(vec!["chaos.none".to_string()], |_| {
                        Box::pin(async { Ok(()) })
                    })
                    .await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = transport.shutdown().await;
            }
        }
    });
    let _ = flood.await;
    let _ = forge.await;
    let _ = resend.await;
}
