//! Repository rules that plain `cargo test` enforces.

use std::collections::BTreeSet;
use std::fs;

use crate::{cargo, root};

/// The generic resilience crates: reusable on their own, so they must not
/// pull in WebSockets, TLS or the event model.
const RESILIENCE: [&str; 4] = [
    "watchtower-backpressure",
    "watchtower-circuit-breaker",
    "watchtower-dlq",
    "watchtower-reconnect",
];

/// The normal (non-dev) dependency names of `package`, transitively.
fn dependencies(package: &str) -> BTreeSet<String> {
    let output = cargo()
        .args([
            "tree",
            "--locked",
            "--offline",
            "-p",
            package,
            "-e",
            "normal,build",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .output()
        .expect("run cargo tree");
    assert!(
        output.status.success(),
        "cargo tree -p {package} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .skip(1) // the package itself
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn resilience_crates_know_nothing_of_websockets_tls_or_events() {
    for package in RESILIENCE {
        let deps = dependencies(package);
        for forbidden in [
            "tokio-tungstenite",
            "tungstenite",
            "rustls",
            "watchtower-core",
            "watchtower-websocket-transport",
        ] {
            assert!(
                !deps.contains(forbidden),
                "{package} depends on {forbidden}; the resilience crates must stay generic"
            );
        }
        for other in RESILIENCE {
            assert!(
                !deps.contains(other),
                "{package} depends on {other}; resilience crates are independent"
            );
        }
    }
}

#[test]
fn core_and_hub_do_not_depend_on_the_transport() {
    for package in ["watchtower-core", "watchtower-hub"] {
        let deps = dependencies(package);
        assert!(
            !deps.contains("watchtower-websocket-transport")
                && !deps.contains("watchtower-websocket"),
            "{package} must not depend on the transport"
        );
    }
    let core = dependencies("watchtower-core");
    assert!(
        !core.contains("tokio-tungstenite"),
        "core must not know the wire library"
    );
}

#[test]
fn every_library_crate_opens_with_docs_and_uses_the_workspace_lints() {
    let crates = root().join("crates");
    let mut checked = 0;
    for entry in fs::read_dir(&crates).expect("read crates/") {
        let dir = entry.expect("entry").path();
        let manifest = fs::read_to_string(dir.join("Cargo.toml")).expect("Cargo.toml");
        assert!(
            manifest.contains("[lints]\nworkspace = true"),
            "{} does not use the workspace lints",
            dir.display()
        );
        let lib = dir.join("src/lib.rs");
        if let Ok(text) = fs::read_to_string(&lib) {
            assert!(
                text.starts_with("//!"),
                "{} must open with a crate doc saying its one job",
                lib.display()
            );
            assert!(
                text.contains("```"),
                "{} must carry an example in its crate doc",
                lib.display()
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 8,
        "expected at least 8 library crates, found {checked}"
    );
}

#[test]
fn ci_runs_the_readme_test_command() {
    let ci = fs::read_to_string(root().join(".ci/run")).expect(".ci/run");
    let readme = fs::read_to_string(root().join("README.md")).expect("README.md");
    assert!(
        ci.contains("cargo xtask test"),
        ".ci/run must call `cargo xtask test`"
    );
    assert!(
        readme.contains("cargo xtask test"),
        "README must give `cargo xtask test`"
    );
    assert!(readme.contains("cargo run --example quickstart"));
}
