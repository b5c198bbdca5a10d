//! The seeded schedule: which fault hits what, when and for how long, and
//! when the publishers burst. Same seed, same topology, same schedule.

use std::fmt;
use std::time::Duration;

use crate::fault::FaultKind;

/// What a fault acts on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// One client's link (all its proxies), by the client's name.
    Link(String),
    /// One hub, by index.
    Hub(usize),
    /// One `watchtower subscribe` client, by name.
    CliSubscriber(String),
    /// The nats-server.
    Nats,
    /// Nothing in particular (the hostile client comes from outside).
    Outside,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Link(name) => write!(f, "link of {name}"),
            Target::Hub(i) => write!(f, "hub{i}"),
            Target::CliSubscriber(name) => write!(f, "{name}"),
            Target::Nats => f.write_str("nats-server"),
            Target::Outside => f.write_str("the hubs"),
        }
    }
}

/// One scheduled fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// When it starts, from the start of the workload.
    pub at: Duration,
    /// What it is.
    pub kind: FaultKind,
    /// What it hits.
    pub target: Target,
    /// How long it lasts (a cut, a stall, a process down); zero for
    /// instant faults.
    pub hold: Duration,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>7.2}s {:<11} {} for {:.2}s",
            self.at.as_secs_f64(),
            self.kind.name(),
            self.target,
            self.hold.as_secs_f64()
        )
    }
}

/// The campaign's shape, as far as the schedule needs it.
#[derive(Debug, Clone, Default)]
pub struct Topology {
    /// Clients whose links may be cut, by name.
    pub links: Vec<String>,
    /// Clients that publish and subscribe (targets of `pubsub-reset`).
    pub pubsubs: Vec<String>,
    /// Number of hubs.
    pub hubs: usize,
    /// `watchtower subscribe` clients, by name.
    pub cli_subscribers: Vec<String>,
    /// Whether a nats-server backs the hubs.
    pub nats: bool,
}

/// Faults and bursts, ordered by time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schedule {
    /// The faults, by start time.
    pub faults: Vec<Fault>,
    /// When the publishers send a burst as fast as they can.
    pub bursts: Vec<Duration>,
}

/// Quiet time at the start (the workload settles) and at the end (the
/// last faults heal before the drain).
const MARGIN: Duration = Duration::from_secs(3);

impl Schedule {
    /// The schedule for `seed`: faults of the enabled `kinds` every 2–7 s
    /// (never two at once on one target; `nats-wipe` at most once),
    /// bursts every 8–16 s, and a burst just before every `cli-stop`,
    /// `pubsub-reset`, `nats-kill` and `nats-wipe` so that it lands
    /// mid-burst.
    pub fn generate(
        seed: u64,
        duration: Duration,
        kinds: &[FaultKind],
        topology: &Topology,
    ) -> Schedule {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut kinds: Vec<FaultKind> = kinds
            .iter()
            .copied()
            .filter(|k| applicable(*k, topology))
            .collect();
        let end = duration.saturating_sub(MARGIN);
        let mut bursts = steady_bursts(&mut rng, end);
        let mut faults: Vec<Fault> = Vec::new();
        let mut busy: Vec<(Target, Duration)> = Vec::new();
        let mut t = MARGIN + millis(&mut rng, 0, 2_000);
        while t < end && !kinds.is_empty() {
            let kind = kinds[rng.usize(..kinds.len())];
            let (target, hold) = pick(&mut rng, kind, topology);
            let mut at = t;
            if matches!(
                kind,
                FaultKind::CliStop
                    | FaultKind::PubsubReset
                    | FaultKind::NatsKill
                    | FaultKind::NatsWipe
            ) {
                // Mid-burst: a CLI's print queue is full then, the client
                // that publishes has its own events in flight, and so have
                // the hubs towards NATS.
                let burst = t + millis(&mut rng, 0, 400);
                bursts.push(burst);
                // A CLI's print queue takes a while to fill; a burst of
                // events in flight is over in tens of milliseconds.
                at = if kind == FaultKind::CliStop {
                    burst + millis(&mut rng, 100, 600)
                } else {
                    burst + millis(&mut rng, 10, 60)
                };
            }
            let free = busy.iter().all(|(b, until)| *b != target || *until <= at);
            // Whole-system faults do not overlap each other either.
            let whole = !matches!(target, Target::Link(_));
            let clear = !whole
                || busy
                    .iter()
                    .all(|(b, until)| matches!(b, Target::Link(_)) || *until <= at);
            if free && clear && at + hold < end {
                // A process restart takes a few seconds beyond its hold.
                let settle = if whole {
                    Duration::from_secs(3)
                } else {
                    Duration::from_millis(200)
                };
                busy.push((target.clone(), at + hold + settle));
                if kind == FaultKind::NatsWipe {
                    // An operator's act: once per campaign.
                    kinds.retain(|k| *k != FaultKind::NatsWipe);
                }
                faults.push(Fault {
                    at,
                    kind,
                    target,
                    hold,
                });
            }
            t += millis(&mut rng, 2_000, 7_000);
        }
        faults.sort_by_key(|f| f.at);
        bursts.sort();
        bursts.dedup();
        Schedule { faults, bursts }
    }
}

impl Schedule {
    /// The NATS soak of issue #27 for `seed`: nats-server killed with -9
    /// (down 0.5–4 s) and restarted every 10–20 s, one of those kills in
    /// the middle third of the run made a `nats-wipe` (its store deleted),
    /// each landing 10–60 ms into a burst; more bursts every 8–16 s. No
    /// other fault: the publishers and subscribers only see NATS fail.
    pub fn nats_soak(seed: u64, duration: Duration) -> Schedule {
        let mut rng = fastrand::Rng::with_seed(seed);
        let end = duration.saturating_sub(MARGIN);
        let mut bursts = steady_bursts(&mut rng, end);
        let mut faults = Vec::new();
        let mut t = MARGIN + millis(&mut rng, 5_000, 10_000);
        loop {
            let burst = t + millis(&mut rng, 0, 400);
            let at = burst + millis(&mut rng, 10, 60);
            let hold = millis(&mut rng, 500, 4_000);
            if at + hold >= end {
                break;
            }
            bursts.push(burst);
            faults.push(Fault {
                at,
                kind: FaultKind::NatsKill,
                target: Target::Nats,
                hold,
            });
            t = at + hold + millis(&mut rng, 10_000, 20_000);
        }
        // The wipe: the kill nearest the middle of the run.
        let middle = duration / 2;
        if let Some(wipe) = faults.iter_mut().min_by_key(|f| f.at.abs_diff(middle)) {
            wipe.kind = FaultKind::NatsWipe;
            wipe.hold = wipe.hold.min(Duration::from_secs(2));
        }
        bursts.sort();
        bursts.dedup();
        Schedule { faults, bursts }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for fault in &self.faults {
            writeln!(f, "  {fault}")?;
        }
        let bursts: Vec<String> = self
            .bursts
            .iter()
            .map(|b| format!("{:.1}s", b.as_secs_f64()))
            .collect();
        writeln!(f, "  bursts at {}", bursts.join(", "))
    }
}

fn applicable(kind: FaultKind, topology: &Topology) -> bool {
    match kind {
        FaultKind::NatsKill | FaultKind::NatsWipe => topology.nats,
        FaultKind::CliKill | FaultKind::CliStop => !topology.cli_subscribers.is_empty(),
        FaultKind::PubsubReset => !topology.pubsubs.is_empty(),
        FaultKind::HubKill | FaultKind::HubRestart => topology.hubs > 0,
        k if k.is_link() => !topology.links.is_empty(),
        _ => true,
    }
}

/// Bursts every 8–16 s, the first 2–6 s after the quiet start, until `end`.
fn steady_bursts(rng: &mut fastrand::Rng, end: Duration) -> Vec<Duration> {
    let mut bursts = Vec::new();
    let mut t = MARGIN + millis(rng, 2_000, 6_000);
    while t < end {
        bursts.push(t);
        t += millis(rng, 8_000, 16_000);
    }
    bursts
}

fn millis(rng: &mut fastrand::Rng, low: u64, high: u64) -> Duration {
    Duration::from_millis(rng.u64(low..=high))
}

fn pick(rng: &mut fastrand::Rng, kind: FaultKind, topology: &Topology) -> (Target, Duration) {
    let link = |rng: &mut fastrand::Rng| {
        Target::Link(topology.links[rng.usize(..topology.links.len())].clone())
    };
    let cli = |rng: &mut fastrand::Rng| {
        Target::CliSubscriber(
            topology.cli_subscribers[rng.usize(..topology.cli_subscribers.len())].clone(),
        )
    };
    let hub = |rng: &mut fastrand::Rng| Target::Hub(rng.usize(..topology.hubs.max(1)));
    match kind {
        FaultKind::Cut => (link(rng), millis(rng, 200, 4_000)),
        FaultKind::Reset => (link(rng), Duration::ZERO),
        FaultKind::Stall => (link(rng), millis(rng, 1_000, 8_000)),
        FaultKind::Slow => (link(rng), millis(rng, 2_000, 10_000)),
        FaultKind::PubsubReset => (
            Target::Link(topology.pubsubs[rng.usize(..topology.pubsubs.len())].clone()),
            Duration::ZERO,
        ),
        FaultKind::HubKill => (hub(rng), millis(rng, 200, 2_000)),
        FaultKind::HubRestart => (hub(rng), Duration::ZERO),
        FaultKind::CliKill => (cli(rng), millis(rng, 200, 1_000)),
        FaultKind::CliStop => (cli(rng), millis(rng, 100, 500)),
        FaultKind::NatsKill => (Target::Nats, millis(rng, 500, 4_000)),
        FaultKind::NatsWipe => (Target::Nats, millis(rng, 500, 2_000)),
        FaultKind::Hostile => (Target::Outside, millis(rng, 3_000, 10_000)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology() -> Topology {
        Topology {
            links: vec!["a".into(), "b".into()],
            pubsubs: vec!["ab".into()],
            hubs: 1,
            cli_subscribers: vec!["cli".into()],
            nats: false,
        }
    }

    #[test]
    fn same_seed_same_schedule() {
        let d = Duration::from_secs(120);
        let a = Schedule::generate(7, d, &FaultKind::ALL, &topology());
        let b = Schedule::generate(7, d, &FaultKind::ALL, &topology());
        let c = Schedule::generate(8, d, &FaultKind::ALL, &topology());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(!a.faults.is_empty());
        // No nats-server here: no nats faults.
        assert!(a.faults.iter().all(|f| f.kind != FaultKind::NatsKill));
        assert!(a.faults.iter().all(|f| f.at + f.hold < d));
    }

    #[test]
    fn nats_wipe_is_scheduled_at_most_once_and_only_on_nats() {
        let d = Duration::from_secs(600);
        let wipes = |s: &Schedule| {
            s.faults
                .iter()
                .filter(|f| f.kind == FaultKind::NatsWipe)
                .count()
        };
        let mut nats = topology();
        nats.nats = true;
        nats.hubs = 3;
        let mut seen = 0;
        for seed in 0..20 {
            let s = Schedule::generate(seed, d, &FaultKind::ALL, &nats);
            assert!(wipes(&s) <= 1, "seed {seed}: {s}");
            seen += wipes(&s);
            let none = Schedule::generate(seed, d, &FaultKind::ALL, &topology());
            assert_eq!(wipes(&none), 0);
        }
        assert!(seen > 0, "no seed of 20 scheduled a wipe in 10 minutes");
    }

    #[test]
    fn the_nats_soak_kills_every_10_to_20_s_and_wipes_once() {
        let d = Duration::from_secs(120);
        let s = Schedule::nats_soak(5, d);
        assert_eq!(s, Schedule::nats_soak(5, d));
        assert_eq!(
            s.faults
                .iter()
                .filter(|f| f.kind == FaultKind::NatsWipe)
                .count(),
            1,
            "{s}"
        );
        assert!(s.faults.len() >= 4, "{s}");
        for pair in s.faults.windows(2) {
            let gap = pair[1].at - (pair[0].at + pair[0].hold);
            assert!(gap >= Duration::from_secs(10), "{s}");
            assert!(gap <= Duration::from_millis(20_460), "{s}");
        }
        assert!(
            s.faults
                .iter()
                .all(|f| f.target == Target::Nats && f.at + f.hold < d)
        );
    }

    #[test]
    fn one_fault_at_a_time_per_target() {
        let s = Schedule::generate(3, Duration::from_secs(600), &FaultKind::ALL, &topology());
        for (i, f) in s.faults.iter().enumerate() {
            for g in &s.faults[i + 1..] {
                if g.target == f.target {
                    assert!(g.at >= f.at + f.hold, "{f} overlaps {g}");
                }
            }
        }
    }
}
