//! `/metrics`: the Prometheus text exposition format (0.0.4), rendered
//! from [`HubStats::figures`] by one loop.

use std::fmt::Write;
use std::time::Duration;

use crate::figures::Figure;
use crate::stats::HubStats;

/// The content type Prometheus expects for this format.
pub(super) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The prefix of every metric name.
const PREFIX: &str = "watchtower_hub_";

/// Every figure of `stats`, plus `build_info` and `uptime_seconds`, with
/// `# HELP` and `# TYPE` once per family.
pub(super) fn render(stats: &HubStats, uptime: Duration) -> String {
    let mut out = String::with_capacity(8 * 1024);
    family(
        &mut out,
        "build_info",
        "The hub's version; the value is always 1.",
        "gauge",
    );
    let _ = writeln!(
        out,
        "{PREFIX}build_info{{version=\"{}\"}} 1",
        escape(env!("CARGO_PKG_VERSION"))
    );
    family(
        &mut out,
        "uptime_seconds",
        "Seconds since the hub started.",
        "gauge",
    );
    let _ = writeln!(out, "{PREFIX}uptime_seconds {:.3}", uptime.as_secs_f64());
    let mut last = "";
    for Figure {
        name,
        help,
        kind,
        label,
        value,
        ..
    } in stats.figures()
    {
        if name != last {
            family(&mut out, name, help, kind.as_str());
            last = name;
        }
        let _ = match label {
            // Label names and values come from the figures' fixed table.
            Some((label, v)) => {
                writeln!(out, "{PREFIX}{name}{{{label}=\"{}\"}} {value}", escape(v))
            }
            None => writeln!(out, "{PREFIX}{name} {value}"),
        };
    }
    out
}

fn family(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {PREFIX}{name} {help}");
    let _ = writeln!(out, "# TYPE {PREFIX}{name} {kind}");
}

/// A label value as the format wants it: `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_help_and_type_and_every_line_parses() {
        let stats = HubStats {
            clients: 2,
            tls_failures: 1,
            handshake_failures: 3,
            ..HubStats::default()
        };
        let text = render(&stats, Duration::from_millis(1500));
        assert!(text.contains("watchtower_hub_clients 2\n"), "{text}");
        assert!(text.contains("watchtower_hub_handshake_failures_total{reason=\"tls\"} 1\n"));
        assert!(text.contains("watchtower_hub_handshake_failures_total{reason=\"other\"} 2\n"));
        assert!(text.contains("watchtower_hub_uptime_seconds 1.500\n"));
        let mut typed = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                typed.push(rest.split(' ').next().unwrap().to_string());
            } else if !line.starts_with("# HELP ") {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(typed.iter().any(|t| t == name), "{line}");
            }
        }
    }
}
