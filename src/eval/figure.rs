//! Pareto charts as files (PNG or SVG, by the path's extension): one or more runs' palettes,
//! every subnet a faint point and each run's front a step line, for reports and the README.

use super::pareto::{p90_bar_end, pareto_front, ParetoPoint};
use crate::train::protocol::PaletteEntry;
use anyhow::{bail, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use std::path::Path;

/// The x axis of a figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FigureCost {
    /// Millions of parameters.
    Params,
    /// Exported size in MB (10^6 bytes).
    SizeMb,
    /// Median latency at batch 1 (ms).
    Latency,
}

impl FigureCost {
    /// Parses `params`, `size` or `latency`.
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "params" => Ok(Self::Params),
            "size" => Ok(Self::SizeMb),
            "latency" => Ok(Self::Latency),
            other => bail!("unknown cost '{other}': params, size or latency"),
        }
    }

    fn of(self, e: &impl ParetoPoint) -> f64 {
        match self {
            Self::Params => e.params_total() as f64 / 1e6,
            Self::SizeMb => e.size_bytes() as f64 / 1e6,
            Self::Latency => e.latency_ms().0,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Params => "parameters (M)",
            Self::SizeMb => "exported size (MB)",
            Self::Latency => "latency (ms, batch 1, median)",
        }
    }
}

/// One run's palette in a figure, under its name.
pub struct FigureSeries<'a, P: ParetoPoint = PaletteEntry> {
    pub name: &'a str,
    pub entries: &'a [P],
}

/// What the studio's chart shows beside the fronts, drawn into the file too.
#[derive(Debug, Clone, Copy, Default)]
pub struct FigureMarks<'a> {
    /// A level line with its name (a decoder's teacher).
    pub reference: Option<(&'a str, f64)>,
    /// The budget on this chart's axis, in its unit (a vertical line).
    pub budget: Option<f64>,
    /// The selected subnet of the first series (ringed).
    pub selected: Option<&'a str>,
}

/// Colours of the runs, in order (the first is the studio's front blue).
const COLOURS: [RGBColor; 6] = [
    RGBColor(66, 133, 244),
    RGBColor(234, 67, 53),
    RGBColor(52, 168, 83),
    RGBColor(171, 71, 188),
    RGBColor(255, 112, 67),
    RGBColor(0, 172, 193),
];

// Registered for the PNG under the generic name an SVG viewer resolves to its own sans font.
const FONT: &str = "sans-serif";

/// Registers the studio's own font once (the figure never depends on system fonts).
fn font() -> &'static str {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    REGISTERED.call_once(|| {
        let _ = plotters::style::register_font(
            FONT,
            FontStyle::Normal,
            epaint_default_fonts::UBUNTU_LIGHT,
        );
    });
    FONT
}

/// The axes of a chart: both value ranges, in plotters' 2-D coordinates.
type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A chart that can be drawn on any plotters backend (PNG and SVG share the drawing): the frame
/// (caption, axes, legend) is common, each figure plots its own series.
trait Figure {
    /// Caption, x and y axis descriptions.
    fn labels(&self) -> (&str, &str, &str);
    /// Both axes' value ranges.
    fn ranges(&self) -> Ranges;
    /// Where the legend goes (where the data usually leaves room).
    fn legend(&self) -> SeriesLabelPosition;
    /// Draws the series (with their legend entries) on the axes.
    fn plot<DB: DrawingBackend>(&self, chart: &mut Chart<'_, DB>) -> Result<()>
    where
        DB::ErrorType: 'static;
}

/// A drawing failure as an error.
fn drawing<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> anyhow::Error {
    anyhow::anyhow!("drawing the figure: {e}")
}

/// The white page, caption, axes, the figure's series and the legend.
fn render<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    figure: &impl Figure,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let family = font();
    let (title, x_desc, y_desc) = figure.labels();
    let (xs, ys) = figure.ranges();
    root.fill(&WHITE).map_err(drawing)?;
    let mut chart = ChartBuilder::on(root)
        .caption(title, (family, 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(xs, ys)
        .map_err(drawing)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style((family, 15))
        .axis_desc_style((family, 16))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(drawing)?;
    figure.plot(&mut chart)?;
    chart
        .configure_series_labels()
        .position(figure.legend())
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .label_font((family, 15))
        .draw()
        .map_err(drawing)?;
    Ok(())
}

/// A legend entry: a short line in the series' colour.
fn legend_line(colour: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
}

/// Draws `figure` into `path` (`.png` or `.svg`), replacing the file only once it is complete.
fn write_figure(path: &Path, figure: &impl Figure) -> Result<()> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    // Drawn into our own temporary file (the backends pick the format by its extension).
    let tmp = crate::files::atomic::temp_beside_ending(path, &format!(".partial.{ext}"))?;
    let partial = tmp.path().to_path_buf();
    let size = (960, 600);
    let written =
        |e: &dyn std::fmt::Display| anyhow::anyhow!("{}: cannot write: {e}", path.display());
    match ext.as_str() {
        "png" => {
            let root = BitMapBackend::new(&partial, size).into_drawing_area();
            render(&root, figure)?;
            root.present().map_err(|e| written(&e))?;
        }
        "svg" => {
            let root = SVGBackend::new(&partial, size).into_drawing_area();
            render(&root, figure)?;
            root.present().map_err(|e| written(&e))?;
        }
        _ => bail!("{}: a figure is a .png or .svg file", path.display()),
    }
    crate::files::atomic::persist(tmp, path)
}

/// The value range of points, padded by 5 % (an error when there is no finite point).
fn padded_range(points: impl Iterator<Item = (f64, f64)>, path: &Path) -> Result<Ranges> {
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    // Each coordinate on its own: a level line has no x, a budget line no y.
    for (x, y) in points {
        if x.is_finite() {
            (x0, x1) = (x0.min(x), x1.max(x));
        }
        if y.is_finite() {
            (y0, y1) = (y0.min(y), y1.max(y));
        }
    }
    if x0 > x1 || y0 > y1 {
        bail!("{}: nothing to draw", path.display());
    }
    let pad = |lo: f64, hi: f64| {
        let span = (hi - lo).max(hi.abs() * 0.05).max(1e-3);
        (lo - 0.05 * span)..(hi + 0.05 * span)
    };
    Ok((pad(x0, x1), pad(y0, y1)))
}

/// Writes the runs' Pareto fronts on `cost` to `path` (`.png` or `.svg`), with `marks` (the
/// reference level, the budget, the selection) as the studio draws them; a latency figure has
/// each subnet's median-to-p90 bar, cut as the studio cuts it.
pub fn pareto_figure<P: ParetoPoint>(
    path: &Path,
    series: &[FigureSeries<'_, P>],
    cost: FigureCost,
    title: &str,
    marks: FigureMarks<'_>,
) -> Result<()> {
    let points = series
        .iter()
        .flat_map(|s| s.entries.iter())
        .map(|e| (cost.of(e), e.score()))
        .chain(marks.reference.map(|(_, level)| (f64::NAN, level)))
        .chain(marks.budget.map(|b| (b, f64::NAN)));
    let ranges = padded_range(points, path)?;
    write_figure(
        path,
        &ParetoFigure {
            series,
            cost,
            title,
            ranges,
            marks,
        },
    )
}

/// One curve of a curves figure: its name and (step, value) points.
pub struct CurveSeries<'a> {
    pub name: &'a str,
    pub points: &'a [[f64; 2]],
}

/// Writes curves over training steps (e.g. the smoothed losses) to `path` (`.png` or `.svg`).
pub fn curves_figure(
    path: &Path,
    series: &[CurveSeries<'_>],
    y_label: &str,
    title: &str,
) -> Result<()> {
    let points = series
        .iter()
        .flat_map(|s| s.points.iter())
        .map(|p| (p[0], p[1]));
    let ranges = padded_range(points, path)?;
    write_figure(
        path,
        &CurvesFigure {
            series,
            y_label,
            title,
            ranges,
        },
    )
}

struct CurvesFigure<'a> {
    series: &'a [CurveSeries<'a>],
    y_label: &'a str,
    title: &'a str,
    ranges: Ranges,
}

impl Figure for CurvesFigure<'_> {
    fn labels(&self) -> (&str, &str, &str) {
        (self.title, "step", self.y_label)
    }

    fn ranges(&self) -> Ranges {
        self.ranges.clone()
    }

    fn legend(&self) -> SeriesLabelPosition {
        SeriesLabelPosition::UpperRight
    }

    fn plot<DB: DrawingBackend>(&self, chart: &mut Chart<'_, DB>) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        for (k, s) in self.series.iter().enumerate() {
            let colour = COLOURS[k % COLOURS.len()];
            let line = s.points.iter().map(|p| (p[0], p[1]));
            chart
                .draw_series(LineSeries::new(line, colour.stroke_width(2)))
                .map_err(drawing)?
                .label(s.name)
                .legend(legend_line(colour));
        }
        Ok(())
    }
}

struct ParetoFigure<'a, P: ParetoPoint> {
    series: &'a [FigureSeries<'a, P>],
    cost: FigureCost,
    title: &'a str,
    ranges: Ranges,
    marks: FigureMarks<'a>,
}

impl<P: ParetoPoint> Figure for ParetoFigure<'_, P> {
    fn labels(&self) -> (&str, &str, &str) {
        (self.title, self.cost.label(), P::SCORE_LABEL)
    }

    fn ranges(&self) -> Ranges {
        self.ranges.clone()
    }

    /// The corner a front leaves empty: lower right for accuracy, upper right for loss.
    fn legend(&self) -> SeriesLabelPosition {
        match P::LOWER_IS_BETTER {
            true => SeriesLabelPosition::UpperRight,
            false => SeriesLabelPosition::LowerRight,
        }
    }

    /// Every subnet a faint point, each run's front a step line through its marked points.
    fn plot<DB: DrawingBackend>(&self, chart: &mut Chart<'_, DB>) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        let (xs, ys) = self.ranges.clone();
        let grey = RGBColor(150, 150, 150);
        let red = RGBColor(219, 68, 55);
        if let (FigureCost::Latency, Some(s)) = (self.cost, self.series.first()) {
            for e in s.entries {
                let (y, (median, p90)) = (e.score(), e.latency_ms());
                let end = p90_bar_end(s.entries, p90).0;
                chart
                    .draw_series(LineSeries::new(
                        [(median, y), (end, y)],
                        grey.stroke_width(1),
                    ))
                    .map_err(drawing)?;
            }
        }
        if let Some((name, level)) = self.marks.reference {
            // Dark grey: red is the budget line and the second run's colour.
            let level_colour = RGBColor(80, 80, 80);
            chart
                .draw_series(DashedLineSeries::new(
                    [(xs.start, level), (xs.end, level)],
                    6,
                    4,
                    level_colour.stroke_width(1),
                ))
                .map_err(drawing)?
                .label(format!("{name}: {level:.3}"))
                .legend(legend_line(level_colour));
        }
        if let Some(budget) = self.marks.budget {
            chart
                .draw_series(DashedLineSeries::new(
                    [(budget, ys.start), (budget, ys.end)],
                    8,
                    4,
                    red.stroke_width(2),
                ))
                .map_err(drawing)?
                .label(format!("budget {budget}"))
                .legend(legend_line(red));
        }
        for (k, s) in self.series.iter().enumerate() {
            let colour = COLOURS[k % COLOURS.len()];
            let points: Vec<(f64, f64)> = s
                .entries
                .iter()
                .map(|e| (self.cost.of(e), e.score()))
                .collect();
            let merits: Vec<(f64, f64)> = s
                .entries
                .iter()
                .map(|e| (self.cost.of(e), e.merit()))
                .collect();
            let on = pareto_front(&merits);
            let mut front: Vec<(f64, f64)> = points
                .iter()
                .zip(&on)
                .filter(|(_, on)| **on)
                .map(|(p, _)| *p)
                .collect();
            front.sort_by(|a, b| a.0.total_cmp(&b.0));
            let faint = colour.mix(0.3).filled();
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 3, faint)))
                .map_err(drawing)?;
            let mut stairs = Vec::with_capacity(front.len() * 2);
            for (i, &p) in front.iter().enumerate() {
                if i > 0 {
                    stairs.push((p.0, front[i - 1].1));
                }
                stairs.push(p);
            }
            chart
                .draw_series(LineSeries::new(stairs, colour.stroke_width(2)))
                .map_err(drawing)?
                .label(format!("{} ({} on the front)", s.name, front.len()))
                .legend(legend_line(colour));
            chart
                .draw_series(front.iter().map(|&p| Circle::new(p, 5, colour.filled())))
                .map_err(drawing)?;
        }
        let chosen = self.series.first().and_then(|s| {
            let name = self.marks.selected?;
            s.entries.iter().find(|e| e.subnet() == name)
        });
        if let Some(e) = chosen {
            let ring = RGBColor(251, 188, 5);
            chart
                .draw_series([Circle::new(
                    (self.cost.of(e), e.score()),
                    9,
                    ring.stroke_width(2),
                )])
                .map_err(drawing)?
                .label(format!("selected: {}", e.subnet()))
                .legend(legend_line(ring));
        }
        Ok(())
    }
}

type Ranges = (std::ops::Range<f64>, std::ops::Range<f64>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_chart_carries_the_reference_budget_selection_and_cut_p90_bars() {
        let mut entries = vec![
            PaletteEntry::sample("layers=0;heads=3;ffn=384", 10_000_000, 1.0, 0.70),
            PaletteEntry::sample("layers=0,1;heads=6;ffn=768", 20_000_000, 2.0, 0.80),
            PaletteEntry::sample("layers=0,1,2;heads=12;ffn=1536", 30_000_000, 3.0, 0.90),
        ];
        // One disturbed measurement: its p90 bar ends at 1.6 times the slowest median.
        entries[0].latency_ms_p90 = 98.0;
        assert_eq!(p90_bar_end(&entries, 98.0), (4.800000000000001, true));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chart.svg");
        let series = [FigureSeries {
            name: "run",
            entries: &entries,
        }];
        let marks = FigureMarks {
            reference: Some(("teacher", 0.95)),
            budget: Some(2.5),
            selected: Some("layers=0,1;heads=6;ffn=768"),
        };
        pareto_figure(&path, &series, FigureCost::Latency, "t", marks).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        for text in [
            "teacher: 0.950",
            "budget 2.5",
            "selected: layers=0,1;heads=6;ffn=768",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
        // Without marks, none of them.
        pareto_figure(
            &path,
            &series,
            FigureCost::Latency,
            "t",
            FigureMarks::default(),
        )
        .unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(!svg.contains("budget") && !svg.contains("selected"));
    }
}
