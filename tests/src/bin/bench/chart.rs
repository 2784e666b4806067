//! The latency-versus-load chart (SVG, drawn with plotters, no system fonts
//! needed): p50 and p99 of the gateway and of the direct baseline at each
//! offered rate of scenario A's search (and B's, when run).

use std::path::Path;

use plotters::prelude::*;

use crate::report::{Phase, Results};

/// One line of the chart: `(offered per second, milliseconds)` points.
struct Line {
    label: String,
    color: RGBColor,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

/// One point a rate (the last run at it: a step run again replaces the
/// first), in order of rate.
fn points(phases: &[&Phase], f: impl Fn(&Phase) -> f64) -> Vec<(f64, f64)> {
    let mut by_rate: Vec<(f64, f64)> = Vec::new();
    for p in phases {
        let Some(rate) = p.offered_per_s else {
            continue;
        };
        let y = f(p).max(0.01);
        match by_rate.iter_mut().find(|(r, _)| *r == rate) {
            Some(point) => point.1 = y,
            None => by_rate.push((rate, y)),
        }
    }
    by_rate.sort_by(|a, b| a.0.total_cmp(&b.0));
    by_rate
}

fn lines(r: &Results) -> Vec<Line> {
    let mut out = Vec::new();
    let palette = [
        (RGBColor(200, 40, 40), RGBColor(30, 90, 200)),
        (RGBColor(230, 130, 20), RGBColor(20, 150, 90)),
    ];
    for (s, (gw, direct)) in [&r.a, &r.b].into_iter().flatten().zip(palette) {
        // One point a rate: the search steps and the half-load run (the
        // hold, at a rate already stepped, is marked on its own).
        let gateway: Vec<&Phase> = s.steps.iter().chain(s.half.iter()).collect();
        let baseline: Vec<&Phase> = s.direct_steps.iter().chain(s.half_direct.iter()).collect();
        let name = format!("{} ({})", s.name, s.backend);
        let mut add = |label: String, color, dashed, points| {
            out.push(Line {
                label,
                color,
                dashed,
                points,
            })
        };
        add(
            format!("gateway p99, {name}"),
            gw,
            false,
            points(&gateway, |p| p.latency.p99_ms),
        );
        add(
            format!("gateway p50 (dashed), {name}"),
            gw,
            true,
            points(&gateway, |p| p.latency.p50_ms),
        );
        if let Some(h) = &s.hold {
            add(
                format!("gateway p99 over the {:.0} s hold, {name}", h.secs),
                RGBColor(120, 0, 120),
                false,
                points(&[h], |p| p.latency.p99_ms),
            );
        }
        if !baseline.is_empty() {
            add(
                "direct p99".into(),
                direct,
                false,
                points(&baseline, |p| p.latency.p99_ms),
            );
            add(
                "direct p50 (dashed)".into(),
                direct,
                true,
                points(&baseline, |p| p.latency.p50_ms),
            );
        }
    }
    out.retain(|l| !l.points.is_empty());
    out
}

/// Draws the chart into `path` (SVG).
pub fn draw(r: &Results, path: &Path) -> anyhow::Result<()> {
    let lines = lines(r);
    anyhow::ensure!(!lines.is_empty(), "no open-loop runs to chart");
    let all = lines.iter().flat_map(|l| l.points.iter());
    let (mut x_max, mut y_min, mut y_max) = (1.0_f64, f64::MAX, 0.01_f64);
    for (x, y) in all {
        x_max = x_max.max(*x);
        y_min = y_min.min(*y);
        y_max = y_max.max(*y);
    }
    let y_lo = (y_min / 2.0).max(0.01);
    let y_hi = (y_max * 2.0).max(100.0);
    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Inquiry latency versus offered load (4 agencies an inquiry, zero-latency mocks)",
            ("sans-serif", 20),
        )
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max * 1.05, (y_lo..y_hi).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("offered load, inquiries per second (open loop)")
        .y_desc("latency, ms (log scale)")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| {
            if *v >= 1.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.2}")
            }
        })
        .draw()?;
    // The 50 ms line the search keeps p99 under.
    chart
        .draw_series(LineSeries::new(
            [(0.0, 50.0), (x_max * 1.05, 50.0)],
            BLACK.mix(0.4).stroke_width(1),
        ))?
        .label("50 ms")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.mix(0.4)));
    for line in &lines {
        let style = line.color.stroke_width(if line.dashed { 1 } else { 2 });
        let color = line.color;
        if line.dashed {
            chart.draw_series(DashedLineSeries::new(
                line.points.iter().copied(),
                6,
                4,
                style,
            ))?
        } else {
            chart.draw_series(LineSeries::new(line.points.iter().copied(), style))?
        }
        .label(line.label.as_str())
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(
            line.points
                .iter()
                .map(|(x, y)| Circle::new((*x, *y), 3, line.color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    root.present()?;
    Ok(())
}
