//! The report: a table for people, JSON and charts for the record.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::BenchOptions;
use crate::section::{SectionReport, Target};
use crate::workload::event_size;

/// Everything one run measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// Logical cores the machine offers.
    pub cores: usize,
    /// The CPU model (`/proc/cpuinfo`), or "unknown".
    pub machine: String,
    /// The commit measured (`git rev-parse HEAD`), or "unknown".
    pub commit: String,
    /// The global allocator both sides ran on (see
    /// [`BenchOptions::allocator`]).
    pub allocator: String,
    /// Seconds since the Unix epoch when the run started.
    pub started_unix: u64,
    /// Whether this was the reduced `--quick` run.
    pub quick: bool,
    /// Bytes of the benchmark event as JSON.
    pub event_bytes: usize,
    /// Wall time of the whole run.
    pub seconds: f64,
    /// The sections that ran, in order (only those).
    pub sections: Vec<SectionReport>,
    /// The charts written, one per curve.
    pub charts: Vec<PathBuf>,
}

fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

fn machine() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

impl Report {
    pub(crate) fn new(options: &BenchOptions) -> Report {
        Report {
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            machine: machine(),
            commit: commit(),
            allocator: options.allocator.clone(),
            started_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            quick: options.quick,
            event_bytes: event_size(),
            ..Report::default()
        }
    }

    /// Every target of the sections that ran.
    pub fn targets(&self) -> impl Iterator<Item = &Target> {
        self.sections.iter().flat_map(|s| s.targets.iter())
    }

    /// Writes one SVG chart per curve and the JSON report to `dir`
    /// (default: `target/bench/` beside the running binary) as
    /// `report-<unix time>.json` and `latest.json`.
    pub(crate) fn write(&mut self, dir: Option<&Path>) -> Result<PathBuf, crate::BenchError> {
        let dir = match dir {
            Some(dir) => dir.to_path_buf(),
            None => default_dir(),
        };
        std::fs::create_dir_all(&dir)?;
        self.charts.clear();
        for curve in self.sections.iter().flat_map(|s| s.curves.iter()) {
            let path = dir.join(format!("{}.svg", curve.name));
            crate::chart::draw(curve, &path)?;
            self.charts.push(path);
        }
        let json = serde_json::to_string_pretty(self)?;
        let path = dir.join(format!("report-{}.json", self.started_unix));
        std::fs::write(&path, &json)?;
        std::fs::write(dir.join("latest.json"), &json)?;
        Ok(path)
    }

    /// The human-readable table: each section that ran, then every target
    /// with its figure and whether it is met, then the charts.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Watchtower WebSocket benchmark — {} cores ({}), commit {}, allocator {}, event {} bytes{}",
            self.cores,
            self.machine,
            short(&self.commit),
            self.allocator,
            self.event_bytes,
            if self.quick {
                " (QUICK: figures too small to quote)"
            } else {
                ""
            }
        );
        for section in &self.sections {
            let _ = writeln!(out);
            out.push_str(&section.table);
        }
        let targets: Vec<&Target> = self.targets().collect();
        if !targets.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "Targets (median of the sittings, min–max; met when the median meets the goal)"
            );
            for target in &targets {
                let _ = writeln!(out, "   {}", target.line());
            }
            let met = targets.iter().filter(|t| t.met).count();
            let _ = writeln!(out, "   {met} of {} met", targets.len());
        }
        if !self.charts.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(out, "Charts");
            for chart in &self.charts {
                let _ = writeln!(out, "   {}", chart.display());
            }
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "({:.0} s)", self.seconds);
        out
    }
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

fn default_dir() -> PathBuf {
    // target/<profile>/watchtower → target/bench
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("bench")))
        .unwrap_or_else(|| PathBuf::from("target/bench"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::section::{Curve, Series};

    fn section(name: &str, heading: &str) -> SectionReport {
        SectionReport::new(name, &serde_json::json!({}), format!("{heading}\n"))
            .unwrap()
            .target(Target::at_least(
                &format!("{name} ratio"),
                "×",
                1.0,
                vec![1.5],
            ))
    }

    #[test]
    fn the_table_shows_only_the_sections_that_ran_and_every_target_with_its_verdict() {
        let report = Report {
            sections: vec![section("fanout", "Fan-out heading")],
            ..Report::default()
        };
        let table = report.table();
        assert!(table.contains("Fan-out heading"), "{table}");
        for other in ["Publish throughput", "Latency", "Idle memory", "Flood"] {
            assert!(!table.contains(other), "{other} did not run:\n{table}");
        }
        assert!(table.contains("fanout ratio"), "{table}");
        assert!(table.contains("MET (1/1)"), "{table}");
        assert!(table.contains("1 of 1 met"), "{table}");
    }

    #[test]
    fn writing_the_report_draws_one_svg_per_curve_and_records_them_in_the_json() {
        let dir =
            std::env::temp_dir().join(format!("watchtower-bench-test-{}", std::process::id()));
        let curve = Curve {
            name: "demo-curve".into(),
            title: "Demo".into(),
            x_label: "subscribers".into(),
            y_label: "deliveries/s".into(),
            log_x: true,
            series: vec![Series {
                label: "ours".into(),
                points: vec![(1.0, 10.0), (10.0, 200.0), (1000.0, 1500.0)],
            }],
        };
        let mut report = Report {
            sections: vec![section("fanout", "Fan-out").curve(curve)],
            ..Report::default()
        };
        report.write(Some(&dir)).unwrap();
        let svg = std::fs::read_to_string(dir.join("demo-curve.svg")).unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("Demo") && svg.contains("ours"), "{svg}");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("latest.json")).unwrap())
                .unwrap();
        assert_eq!(json["sections"][0]["curves"][0]["name"], "demo-curve");
        assert_eq!(json["sections"][0]["targets"][0]["met"], true);
        assert_eq!(json["charts"].as_array().map(Vec::len), Some(1));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
