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

/// The hub's floors: each folder of `crates/hub/src` may name, with
/// `crate::`, only these of the crate's top-level modules (or items its
/// root re-exports). The relay (log, cursors, dedup, filter, sample, the
/// fan-out seam) imports nothing above it, only the configuration, the
/// errors and the stats' plain data; the upgrade's gates (auth, origin,
/// throttle) only the errors.
const HUB_FLOORS: [(&str, &[&str]); 2] = [
    (
        "relay",
        &["relay", "config", "error", "stats", "HubConfig", "HubStats"],
    ),
    ("gates", &["gates", "error"]),
];

/// The first segment of every path a Rust source names after `crate::`
/// outside comments; a group `crate::{a::b, c::{d, e}}` names `a` and `c`.
fn crate_paths(source: &str) -> Vec<String> {
    let code: Vec<&str> = source
        .lines()
        .map(|line| line.find("//").map_or(line, |at| &line[..at]))
        .collect();
    let code = code.join("\n");
    let ident = |text: &str| -> String {
        text.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut names = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let whole = rest[..at]
            .chars()
            .last()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        rest = &rest[at + "crate::".len()..];
        if !whole {
            continue;
        }
        let Some(group) = rest.strip_prefix('{') else {
            names.push(ident(rest));
            continue;
        };
        // The group's members at depth 0, each by its first segment.
        let mut depth = 0;
        let mut member = String::new();
        for c in group.chars() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    names.push(ident(&member));
                    member.clear();
                    continue;
                }
                _ => {}
            }
            member.push(c);
        }
        names.push(ident(&member));
    }
    names.retain(|name| !name.is_empty());
    names
}

/// The `.rs` files under `dir`, recursively.
fn rust_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

#[test]
fn crate_paths_finds_every_module_named_outside_comments() {
    let source = "use crate::relay::{fanout, outbox};\n\
                  use crate::{config::HubConfig, gates::{auth, origin}, error};\n\
                  // crate::hub is only a comment\n\
                  /// [`Shared`](crate::hub::Shared)\n\
                  let x = crate::stats::bump(&y); let z = my_crate::no;";
    assert_eq!(
        crate_paths(source),
        ["relay", "config", "gates", "error", "stats"]
    );
}

#[test]
fn the_hubs_relay_and_gates_import_nothing_above_them() {
    let src = root().join("crates/hub/src");
    for (floor, allowed) in HUB_FLOORS {
        let files = rust_files(&src.join(floor));
        assert!(
            files.len() >= 3,
            "crates/hub/src/{floor}/ has too few files"
        );
        for file in files {
            let text = fs::read_to_string(&file).expect("read a source file");
            for name in crate_paths(&text) {
                assert!(
                    allowed.contains(&name.as_str()),
                    "{} names crate::{name}: {floor}/ may only name {allowed:?}",
                    file.display()
                );
            }
        }
    }
}

#[test]
fn only_the_backplane_file_reaches_into_a_backplane() {
    let src = root().join("crates/hub/src");
    let mut checked = 0;
    for file in rust_files(&src) {
        let relative = file.strip_prefix(&src).expect("under src");
        if relative.starts_with("nats")
            || relative == std::path::Path::new("backplane.rs")
            || relative == std::path::Path::new("lib.rs")
        {
            continue;
        }
        let text = fs::read_to_string(&file).expect("read a source file");
        assert!(
            !crate_paths(&text).iter().any(|name| name == "nats"),
            "{} names crate::nats: a backplane is started and named only in backplane.rs",
            file.display()
        );
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} files checked");
}
