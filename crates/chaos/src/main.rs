//! `watchtower-chaos`: one seeded fault campaign against real `watchtower`
//! processes, checked. Usually run through `cargo xtask chaos`, which
//! builds the binary under test first.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use watchtower_chaos::fault::{self, FaultKind};
use watchtower_chaos::{Backplane, Options, Profile};

/// Run a seeded fault campaign against real `watchtower` processes and
/// check every delivery against the guarantees.
///
/// Exit status: 0 every guarantee held, 1 a guarantee broke (the report
/// says which, with the seed and the command that replays the run), 2 the
/// campaign could not be set up.
#[derive(Debug, Parser)]
#[command(name = "watchtower-chaos", after_long_help = faults_help())]
struct Args {
    /// The schedule's seed [default: random, printed].
    #[arg(long)]
    seed: Option<u64>,

    /// How long the workload runs with faults, in seconds (the drain and
    /// the stop come after it) [default: 60; 120 with `--profile nats-soak`].
    #[arg(long, value_parser = clap::value_parser!(u64).range(10..=86_400))]
    duration: Option<u64>,

    /// One hub (`none`) or three hubs sharing a NATS JetStream stream
    /// (`nats`; needs a `nats-server`: NATS_SERVER or PATH).
    #[arg(long, default_value = "none")]
    backplane: Backplane,

    /// The faults to inject, comma-separated (see below); `default` is
    /// the set whose guarantees hold today, `all` every fault.
    #[arg(long, value_name = "LIST", default_value = "default")]
    faults: String,

    /// The schedule: `mixed` (the faults of --faults at random) or
    /// `nats-soak` (issue #27's soak: three hubs on NATS, nats-server
    /// killed with -9 and restarted every 10-20 s, its store wiped once;
    /// it sets the backplane and the faults itself).
    #[arg(long, default_value = "mixed", conflicts_with_all = ["backplane", "faults"])]
    profile: Profile,

    /// The `watchtower` binary under test (built with `--features nats`
    /// for `--backplane nats`).
    #[arg(long, value_name = "PATH")]
    watchtower: PathBuf,

    /// The `nats-server` binary [default: NATS_SERVER, then PATH].
    #[arg(long, value_name = "PATH")]
    nats_server: Option<PathBuf>,

    /// Where each run's history and logs go (a directory per seed).
    #[arg(long, value_name = "DIR", default_value = "target/chaos")]
    out: PathBuf,

    /// Leave `--watchtower` out of the replay command (the xtask built it).
    #[arg(long, hide = true)]
    built_by_xtask: bool,
}

fn faults_help() -> String {
    let mut text = String::from("Faults (--faults):\n");
    for kind in FaultKind::ALL {
        let default = if fault::DEFAULT_FAULTS.contains(&kind) {
            " [default]"
        } else {
            ""
        };
        text.push_str(&format!(
            "  {:<14}{}{default}\n",
            kind.name(),
            kind.summary()
        ));
    }
    if !fault::EXCLUDED.is_empty() {
        text.push_str("\nLeft out of the default set until their issue is fixed:\n");
        for (kind, why) in fault::EXCLUDED {
            text.push_str(&format!("  {:<14}{why}\n", kind.name()));
        }
    }
    text
}

fn main() -> ExitCode {
    let args = Args::parse();
    let (backplane, faults, duration) = match args.profile {
        Profile::Mixed => match fault::parse_list(&args.faults) {
            Ok(faults) => (args.backplane, faults, args.duration.unwrap_or(60)),
            Err(e) => {
                eprintln!("chaos: --faults: {e}");
                return ExitCode::from(2);
            }
        },
        Profile::NatsSoak => (
            Backplane::Nats,
            vec![FaultKind::NatsKill, FaultKind::NatsWipe],
            args.duration.unwrap_or(120),
        ),
    };
    // nats-kill on one hub is simply never scheduled (the schedule skips
    // what does not apply), so a replay command works on either backplane.
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..1_000_000_000));
    let options = Options {
        seed,
        duration: Duration::from_secs(duration),
        backplane,
        faults,
        profile: args.profile,
        watchtower: args.watchtower,
        nats_server: args.nats_server,
        out: args.out,
        replay_names_binary: !args.built_by_xtask,
    };
    eprintln!("chaos: seed {seed} (replay: {})", options.replay());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("chaos: could not start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = runtime.block_on(watchtower_chaos::run(&options));
    runtime.shutdown_timeout(Duration::from_secs(5));
    match outcome {
        Ok(outcome) => {
            print!("{}", outcome.report);
            if outcome.verdict.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("chaos: could not run the campaign (seed {seed}): {e}");
            ExitCode::from(2)
        }
    }
}
