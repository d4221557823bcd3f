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

/// The hover text of a curve chart at step `x`: the step, then each series' raw and smoothed
/// value at its point nearest to that step.
pub fn hover_text(x: f64, series: &[NamedCurve<'_>]) -> String {
    let mut text = String::new();
    for (name, raw, smooth) in series {
        if let (Some(r), Some(s)) = (nearest(raw, x), nearest(smooth, x)) {
            if text.is_empty() {
                text = format!("step {}", r[0]);
            }
            text.push_str(&format!("\n{name}: {:.4} raw, {:.4} smoothed", r[1], s[1]));
        }
    }
    text
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
}
