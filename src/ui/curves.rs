//! Curve helpers: debiased EMA on the full series, then binning for display.

/// Debiased exponential moving average (TensorBoard-style): early points are not pulled to 0.
pub fn debiased_ema(points: &[[f64; 2]], smoothing: f64) -> Vec<[f64; 2]> {
    let beta = smoothing.clamp(0.0, 0.999);
    let mut avg = 0.0;
    let mut weight = 0.0;
    points
        .iter()
        .map(|&[x, y]| {
            avg = beta * avg + (1.0 - beta) * y;
            weight = beta * weight + (1.0 - beta);
            [x, if weight > 0.0 { avg / weight } else { y }]
        })
        .collect()
}

/// At most `bins` points: the mean of each run of consecutive points (full history kept elsewhere).
pub fn downsample(points: &[[f64; 2]], bins: usize) -> Vec<[f64; 2]> {
    if points.len() <= bins || bins == 0 {
        return points.to_vec();
    }
    let per_bin = points.len().div_ceil(bins);
    points
        .chunks(per_bin)
        .map(|c| {
            let n = c.len() as f64;
            [
                c.iter().map(|p| p[0]).sum::<f64>() / n,
                c.iter().map(|p| p[1]).sum::<f64>() / n,
            ]
        })
        .collect()
}

/// The point of a series (sorted by x) nearest to `x`.
pub fn nearest(points: &[[f64; 2]], x: f64) -> Option<[f64; 2]> {
    let i = points.partition_point(|p| p[0] < x);
    let candidates = [i.checked_sub(1), Some(i)];
    candidates
        .into_iter()
        .flatten()
        .filter_map(|k| points.get(k).copied())
        .min_by(|a, b| (a[0] - x).abs().total_cmp(&(b[0] - x).abs()))
}

/// One curve as the loss chart holds it: its name, raw points and smoothed points.
pub type NamedCurve<'a> = (String, &'a [[f64; 2]], Vec<[f64; 2]>);

/// The hover text of a curve chart at step `x`: the hovered step, then each series' raw and
/// smoothed value at that step. A series without a point there shows its nearest one with
/// that point's step, and a series whose nearest point lies further than its own spacing
/// between points (it has not reached this step, or started after it) says so instead of
/// lending a far-away value.
pub fn hover_text(x: f64, series: &[NamedCurve<'_>]) -> String {
    let step = x.round().max(0.0);
    let mut text = format!("step {step}");
    for (name, raw, smooth) in series {
        let (Some(r), Some(s)) = (nearest(raw, step), nearest(smooth, step)) else {
            continue;
        };
        let spacing = typical_spacing(raw);
        if (r[0] - step).abs() > spacing {
            text.push_str(&format!("\n{name}: no point near this step"));
        } else if r[0] != step {
            text.push_str(&format!(
                "\n{name}: {:.4} raw, {:.4} smoothed (step {})",
                r[1], s[1], r[0]
            ));
        } else {
            text.push_str(&format!("\n{name}: {:.4} raw, {:.4} smoothed", r[1], s[1]));
        }
    }
    text
}

/// The median gap between consecutive points' steps (at least 1).
fn typical_spacing(points: &[[f64; 2]]) -> f64 {
    let mut gaps: Vec<f64> = points.windows(2).map(|w| w[1][0] - w[0][0]).collect();
    if gaps.is_empty() {
        return 1.0;
    }
    gaps.sort_by(f64::total_cmp);
    gaps[gaps.len() / 2].max(1.0)
}

/// An axis label as short as the value needs: 0.5, 1, 2.5, 10, 250, 0.025 (no run of zeros
/// to be cut at the plot's edge).
pub fn tick_label(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    // Three significant digits, trailing zeros dropped.
    let digits = (2 - v.abs().log10().floor() as i32).clamp(0, 9) as usize;
    let text = format!("{v:.digits$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// The colour of the `i`-th compared run (never the current run's blues and greens).
pub fn overlay_colour(i: usize) -> egui::Color32 {
    use egui::Color32;
    const COLOURS: [Color32; 6] = [
        Color32::from_rgb(171, 71, 188),
        Color32::from_rgb(0, 172, 193),
        Color32::from_rgb(255, 112, 67),
        Color32::from_rgb(124, 179, 66),
        Color32::from_rgb(141, 110, 99),
        Color32::from_rgb(236, 64, 122),
    ];
    COLOURS[i % COLOURS.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ema_is_debiased_and_smooths() {
        let pts: Vec<[f64; 2]> = (0..4).map(|i| [i as f64, 10.0]).collect();
        // A constant series stays constant from its first point (no pull towards zero).
        for p in debiased_ema(&pts, 0.9) {
            assert!((p[1] - 10.0).abs() < 1e-9);
        }
        let steps = [[0.0, 0.0], [1.0, 1.0]];
        let s = debiased_ema(&steps, 0.5);
        // Weights 0.5·0 + 0.5·1 over a total weight of 0.75 → 2/3.
        assert!((s[1][1] - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(debiased_ema(&steps, 0.0), steps.to_vec());
    }

    #[test]
    fn downsample_keeps_means_and_bounds() {
        let pts: Vec<[f64; 2]> = (0..10_000).map(|i| [i as f64, (i % 2) as f64]).collect();
        let d = downsample(&pts, 250);
        assert!(d.len() <= 250);
        assert!(d.iter().all(|p| (p[1] - 0.5).abs() < 0.01));
        assert_eq!(downsample(&pts[..5], 250).len(), 5);
    }

    #[test]
    fn hover_reads_the_nearest_point_of_each_series() {
        let raw = [[1.0, 0.9], [2.0, 0.7], [10.0, 0.5]];
        assert_eq!(nearest(&raw, 1.4), Some([1.0, 0.9]));
        assert_eq!(nearest(&raw, 7.0), Some([10.0, 0.5]));
        assert_eq!(nearest(&raw, 50.0), Some([10.0, 0.5]));
        assert_eq!(nearest(&[], 1.0), None);
        let smooth = debiased_ema(&raw, 0.5);
        let text = hover_text(2.2, &[("maxnet".into(), &raw, smooth.clone())]);
        let expected = format!("step 2\nmaxnet: 0.7000 raw, {:.4} smoothed", smooth[1][1]);
        assert_eq!(text, expected);
    }

    #[test]
    fn hover_names_the_hovered_step_and_lends_no_far_away_value() {
        // The open run logged steps 1..=70; a compared run only reached step 61.
        let open: Vec<[f64; 2]> = (1..=70).map(|i| [i as f64, 1.0 / i as f64]).collect();
        let other: Vec<[f64; 2]> = (1..=61).map(|i| [i as f64, 0.5]).collect();
        let sparse = [[10.0, 0.8], [20.0, 0.7], [30.0, 0.6]];
        let series: Vec<NamedCurve<'_>> = vec![
            ("maxnet".into(), &open, open.clone()),
            ("run-b · minnet".into(), &other, other.clone()),
            ("run-c · maxnet".into(), &sparse, sparse.to_vec()),
        ];
        let text = hover_text(66.4, &series);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "step 66", "the hovered step, not a series' last");
        assert_eq!(lines[1], "maxnet: 0.0152 raw, 0.0152 smoothed");
        assert_eq!(lines[2], "run-b · minnet: no point near this step");
        assert_eq!(lines[3], "run-c · maxnet: no point near this step");
        // Between two evaluations 10 steps apart, the nearest one, with its own step.
        let text = hover_text(22.0, &series);
        assert!(
            text.ends_with("run-c · maxnet: 0.7000 raw, 0.7000 smoothed (step 20)"),
            "{text}"
        );
    }

    #[test]
    fn tick_labels_are_as_short_as_the_value() {
        let labels: Vec<String> = [1.0, 10.0, 100.0, 0.5, 2.5, 0.025, 1234.0, 0.1234]
            .iter()
            .map(|&v| tick_label(v))
            .collect();
        assert_eq!(
            labels,
            ["1", "10", "100", "0.5", "2.5", "0.025", "1234", "0.123"]
        );
    }
}
