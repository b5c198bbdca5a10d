//! The report a campaign prints: the verdict, the figures, and on failure
//! the seed, each broken invariant with its first offending events and
//! their history, and the command that replays the run.

use std::fmt::Write as _;
use std::path::Path;

use crate::campaign::Options;
use crate::check::Verdict;
use crate::history::secs;

/// Lines of detail shown per violation.
const DETAIL_LINES: usize = 30;

/// What each invariant promises, by number.
pub fn invariant_name(invariant: u8) -> &'static str {
    match invariant {
        1 => "acknowledged => delivered to every matching subscriber whose position preceded it",
        2 => "each publisher's order holds at every subscriber",
        3 => "nothing comes back to the client that sent it",
        4 => "no duplicate within one subscriber process",
        5 => "nothing refused or dead-lettered, no process exits badly, without a cause",
        6 => {
            "progress and memory: every phase meets its deadline, each hub stays within its budgets"
        }
        _ => "?",
    }
}

/// The report for `verdict`.
pub fn render(options: &Options, verdict: &Verdict, dir: &Path) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "chaos: seed {} profile {} backplane {} duration {}s faults {}",
        options.seed,
        options.profile.name(),
        options.backplane,
        options.duration.as_secs(),
        crate::fault::list_to_string(&options.faults)
    );
    let _ = writeln!(out, "chaos: {}", verdict.figures);
    if verdict.passed() {
        let _ = writeln!(
            out,
            "chaos: PASSED seed {}: every guarantee held (history in {})",
            options.seed,
            dir.display()
        );
        return out;
    }
    let mut invariants: Vec<u8> = verdict.violations.iter().map(|v| v.invariant).collect();
    invariants.dedup();
    let _ = writeln!(
        out,
        "chaos: FAILED seed {}: {} violation(s) of invariant(s) {}",
        options.seed,
        verdict.violations.len(),
        invariants
            .iter()
            .map(u8::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    for v in &verdict.violations {
        let _ = writeln!(
            out,
            "\n[invariant {}: {}] at {}\n  {}",
            v.invariant,
            invariant_name(v.invariant),
            secs(v.t),
            v.title
        );
        for line in v.detail.iter().take(DETAIL_LINES) {
            let _ = writeln!(out, "    {line}");
        }
        if v.detail.len() > DETAIL_LINES {
            let _ = writeln!(out, "    … {} more lines", v.detail.len() - DETAIL_LINES);
        }
    }
    let _ = writeln!(
        out,
        "\nchaos: history (one JSON record a line) and every process's log: {}",
        dir.display()
    );
    let _ = writeln!(out, "chaos: replay: {}", options.replay());
    out
}
