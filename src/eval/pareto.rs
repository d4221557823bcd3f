//! Pareto fronts of (cost, accuracy): lower cost and higher accuracy are better.

/// For each point, whether it is on the front (no other point is at least as good in both
/// coordinates and strictly better in one). Points with a NaN coordinate are never on it;
/// exact duplicates of a front point are on it too.
pub fn pareto_front(points: &[(f64, f64)]) -> Vec<bool> {
    let valid = |p: &(f64, f64)| !p.0.is_nan() && !p.1.is_nan();
    points
        .iter()
        .map(|p| {
            valid(p)
                && !points
                    .iter()
                    .any(|q| valid(q) && q.0 <= p.0 && q.1 >= p.1 && (q.0 < p.0 || q.1 > p.1))
        })
        .collect()
}

/// Indices of front points sorted by cost (for drawing the step line).
pub fn front_indices_by_cost(points: &[(f64, f64)]) -> Vec<usize> {
    let on = pareto_front(points);
    let mut idx: Vec<usize> = (0..points.len()).filter(|&i| on[i]).collect();
    idx.sort_by(|&a, &b| points[a].0.total_cmp(&points[b].0));
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_on_hand_made_points() {
        let pts = [
            (1.0, 0.70),      // cheapest: front
            (2.0, 0.80),      // front
            (2.0, 0.75),      // same cost, worse: dominated
            (3.0, 0.80),      // same accuracy, costlier: dominated
            (4.0, 0.90),      // front
            (4.0, 0.90),      // exact duplicate of a front point: front as well
            (5.0, 0.85),      // dominated by (4, 0.9)
            (f64::NAN, 0.99), // NaN cost: excluded
            (0.5, f64::NAN),  // NaN accuracy: excluded
        ];
        let on = pareto_front(&pts);
        assert_eq!(
            on,
            vec![true, true, false, false, true, true, false, false, false]
        );
        assert_eq!(front_indices_by_cost(&pts), vec![0, 1, 4, 5]);
    }

    #[test]
    fn empty_and_single() {
        assert!(pareto_front(&[]).is_empty());
        assert_eq!(pareto_front(&[(1.0, 0.5)]), vec![true]);
    }
}
