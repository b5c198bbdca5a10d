//! What one section of the benchmark hands back: its figures, its lines of
//! the table, the targets it checks, and the curves it draws.

use std::fmt::Write as _;

use serde::Serialize;

use crate::stats::Summary;

/// One section's results.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SectionReport {
    /// The section's name, as `--only` takes it.
    pub name: String,
    /// Its figures, as the section's own typed record.
    pub figures: serde_json::Value,
    /// The targets it checks.
    pub targets: Vec<Target>,
    /// The curves it measured (each drawn as an SVG chart).
    pub curves: Vec<Curve>,
    /// Its part of the printed table.
    #[serde(skip)]
    pub table: String,
}

impl SectionReport {
    /// A report of `figures` with the printed `table`.
    pub(crate) fn new<T: Serialize>(
        name: &str,
        figures: &T,
        table: String,
    ) -> Result<SectionReport, crate::BenchError> {
        Ok(SectionReport {
            name: name.to_string(),
            figures: serde_json::to_value(figures)?,
            targets: Vec::new(),
            curves: Vec::new(),
            table,
        })
    }

    /// Adds a target.
    pub(crate) fn target(mut self, target: Target) -> SectionReport {
        self.targets.push(target);
        self
    }

    /// Adds a curve.
    pub(crate) fn curve(mut self, curve: Curve) -> SectionReport {
        self.curves.push(curve);
        self
    }
}

/// Which side of its goal a target must be on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Goal {
    /// The figure must be at least the goal.
    AtLeast,
    /// The figure must be at most the goal.
    AtMost,
}

/// A target: a figure measured in several sittings of one run, against a
/// goal. It is met when the median sitting meets the goal; the sittings
/// that met it are counted too, so one good sitting is not mistaken for a
/// met target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Target {
    /// What is measured, e.g. "publish, 1 task / raw feed+flush".
    pub name: String,
    /// "×" for ratios, else the unit of the figure.
    pub unit: String,
    /// The side of the goal the figure must be on.
    pub goal: Goal,
    /// The goal.
    pub bound: f64,
    /// The figure in each sitting.
    pub sittings: Summary,
    /// Whether the median sitting meets the goal.
    pub met: bool,
    /// Sittings that met the goal.
    pub sittings_met: usize,
}

impl Target {
    /// A figure that must be at least `bound`.
    pub(crate) fn at_least(name: &str, unit: &str, bound: f64, sittings: Vec<f64>) -> Target {
        Target::new(name, unit, Goal::AtLeast, bound, sittings)
    }

    /// A figure that must be at most `bound`.
    pub(crate) fn at_most(name: &str, unit: &str, bound: f64, sittings: Vec<f64>) -> Target {
        Target::new(name, unit, Goal::AtMost, bound, sittings)
    }

    fn new(name: &str, unit: &str, goal: Goal, bound: f64, sittings: Vec<f64>) -> Target {
        let meets = |x: f64| match goal {
            Goal::AtLeast => x >= bound,
            Goal::AtMost => x <= bound,
        };
        let sittings_met = sittings.iter().filter(|&&x| meets(x)).count();
        let sittings = Summary::of(sittings);
        Target {
            name: name.to_string(),
            unit: unit.to_string(),
            goal,
            bound,
            met: !sittings.runs.is_empty() && meets(sittings.median),
            sittings,
            sittings_met,
        }
    }

    /// One line: the figure (median, min–max), the goal, met or not.
    pub fn line(&self) -> String {
        let s = &self.sittings;
        let mut out = String::new();
        let unit = if self.unit == "×" {
            String::new()
        } else {
            format!(" {}", self.unit)
        };
        let _ = write!(
            out,
            "{:<52} {:>6.2}{unit} ({:.2}–{:.2}, {} sittings)  target {} {}{unit}  {} ({}/{})",
            self.name,
            s.median,
            s.min,
            s.max,
            s.runs.len(),
            match self.goal {
                Goal::AtLeast => "≥",
                Goal::AtMost => "≤",
            },
            self.bound,
            if self.met { "MET" } else { "NOT MET" },
            self.sittings_met,
            s.runs.len()
        );
        out
    }
}

/// A curve: how a figure grows with a parameter, one series per contender.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Curve {
    /// File stem of its chart (`<name>.svg` beside the JSON report).
    pub name: String,
    /// The chart's title.
    pub title: String,
    /// What x is.
    pub x_label: String,
    /// What y is.
    pub y_label: String,
    /// Whether x is drawn on a log scale (subscribers, sizes).
    pub log_x: bool,
    /// One line per contender.
    pub series: Vec<Series>,
}

/// One contender's points on a curve.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Series {
    /// The contender.
    pub label: String,
    /// `(x, y)`, by increasing x.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// A series named `label`.
    pub(crate) fn new(label: &str) -> Series {
        Series {
            label: label.to_string(),
            points: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_met_by_its_median_sitting_and_counts_the_sittings_that_met_it() {
        let t = Target::at_least("x", "×", 1.0, vec![0.9, 1.1, 1.2]);
        assert!(t.met);
        assert_eq!((t.sittings.median, t.sittings_met), (1.1, 2));
        let t = Target::at_least("x", "×", 1.0, vec![0.9, 0.95, 1.5]);
        assert!(!t.met, "one good sitting does not make a met target");
        assert_eq!(t.sittings_met, 1);
        let t = Target::at_most("p99", "×", 1.2, vec![1.3, 1.1, 1.0]);
        assert!(t.met);
        assert!(!Target::at_most("none", "×", 1.2, vec![]).met);
    }

    #[test]
    fn a_target_line_says_the_spread_the_goal_and_whether_it_is_met() {
        let line = Target::at_most("memory", "KiB", 12.0, vec![13.0, 12.5, 14.0]).line();
        assert!(
            line.contains("13.00 KiB (12.50–14.00, 3 sittings)"),
            "{line}"
        );
        assert!(line.contains("target ≤ 12 KiB"), "{line}");
        assert!(line.contains("NOT MET (0/3)"), "{line}");
    }
}
