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
}
