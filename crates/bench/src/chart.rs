//! One SVG chart per curve, drawn with plotters' SVG backend.

use std::path::Path;

use plotters::prelude::*;

use crate::BenchError;
use crate::section::Curve;

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Draws `curve` to `path`. A log x axis is drawn as log10(x) on a linear
/// axis labelled with x itself, so both kinds share one code path.
pub(crate) fn draw(curve: &Curve, path: &Path) -> Result<(), BenchError> {
    let fail = |e: String| BenchError::Incomplete(format!("chart {}: {e}", curve.name));
    let x = |v: f64| {
        if curve.log_x {
            v.max(f64::MIN_POSITIVE).log10()
        } else {
            v
        }
    };
    let points = || curve.series.iter().flat_map(|s| s.points.iter());
    let (mut x_min, mut x_max, mut y_max) = (f64::INFINITY, f64::NEG_INFINITY, 0.0f64);
    for &(px, py) in points() {
        x_min = x_min.min(x(px));
        x_max = x_max.max(x(px));
        y_max = y_max.max(py);
    }
    if !x_min.is_finite() || !x_max.is_finite() {
        (x_min, x_max) = (0.0, 1.0);
    }
    if x_max <= x_min {
        x_max = x_min + 1.0;
    }
    let pad = (x_max - x_min) * 0.05;
    let y_max = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };

    let root = SVGBackend::new(path, (760, 460)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(&curve.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(80)
        .build_cartesian_2d(x_min - pad..x_max + pad, 0.0..y_max)
        .map_err(|e| fail(e.to_string()))?;
    let log_x = curve.log_x;
    let x_label = move |v: &f64| {
        let shown = if log_x { 10f64.powf(*v) } else { *v };
        number(shown)
    };
    chart
        .configure_mesh()
        .x_desc(&curve.x_label)
        .y_desc(&curve.y_label)
        .x_label_formatter(&x_label)
        .y_label_formatter(&|v| number(*v))
        .draw()
        .map_err(|e| fail(e.to_string()))?;
    for (i, series) in curve.series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let line: Vec<(f64, f64)> = series.points.iter().map(|&(px, py)| (x(px), py)).collect();
        chart
            .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))
            .map_err(|e| fail(e.to_string()))?
            .label(&series.label)
            .legend(move |(lx, ly)| PathElement::new(vec![(lx, ly), (lx + 18, ly)], color));
        chart
            .draw_series(line.into_iter().map(|p| Circle::new(p, 3, color.filled())))
            .map_err(|e| fail(e.to_string()))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| fail(e.to_string()))?;
    root.present().map_err(|e| fail(e.to_string()))?;
    Ok(())
}

/// 1234567 → "1.23M": axis labels stay short.
fn number(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        let digits = format!("{:.2}", v / 1e6);
        format!("{}M", digits.trim_end_matches('0').trim_end_matches('.'))
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3).replace(".0k", "k")
    } else if a >= 10.0 || a == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}
