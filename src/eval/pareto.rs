//! Pareto fronts of (cost, accuracy): lower cost and higher accuracy are better; the points
//! charts and figures draw (classifier rows score accuracy, decoder rows validation loss).

use crate::train::protocol::{DecoderEntry, PaletteEntry};

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

/// Upper limits on a subnet's cost; `None` leaves that cost unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CostBudget {
    /// Largest median latency (ms, batch 1) that fits.
    pub latency_ms: Option<f64>,
    /// Largest size that fits, in the unit the size axis shows (MB of 10^6 bytes, or
    /// millions of parameters).
    pub size: Option<f64>,
}

impl CostBudget {
    /// True when at least one limit is set.
    pub fn is_set(&self) -> bool {
        self.latency_ms.is_some() || self.size.is_some()
    }

    /// True when a subnet of this latency (ms) and size (the limit's unit) is within every
    /// set limit (a limit is inclusive; a NaN cost never fits a set limit).
    pub fn fits(&self, latency_ms: f64, size: f64) -> bool {
        self.latency_ms.is_none_or(|b| latency_ms <= b) && self.size.is_none_or(|b| size <= b)
    }
}

/// The front among the points that fit (`fits[i]`): a point outside the budget is never on it
/// and cannot push a fitting point off it (Optuna's convention for infeasible trials).
pub fn front_within(points: &[(f64, f64)], fits: &[bool]) -> Vec<bool> {
    let feasible: Vec<(f64, f64)> = points
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            if fits.get(i).copied().unwrap_or(false) {
                p
            } else {
                (f64::NAN, f64::NAN)
            }
        })
        .collect();
    pareto_front(&feasible)
}

/// The most accurate point among those that fit; among equally accurate ones the cheapest by
/// `costs` (size, then latency), so the pick is never dominated. NaN accuracies are never chosen.
pub fn best_within(accuracy: &[f64], costs: &[(f64, f64)], fits: &[bool]) -> Option<usize> {
    let cost = |i: usize| {
        costs
            .get(i)
            .copied()
            .unwrap_or((f64::INFINITY, f64::INFINITY))
    };
    (0..accuracy.len())
        .filter(|&i| !accuracy[i].is_nan() && fits.get(i).copied().unwrap_or(false))
        .max_by(|&a, &b| {
            let (ca, cb) = (cost(a), cost(b));
            accuracy[a]
                .total_cmp(&accuracy[b])
                .then(cb.0.total_cmp(&ca.0))
                .then(cb.1.total_cmp(&ca.1))
        })
}

/// Where a subnet's median-to-p90 latency bar ends on a chart of `entries`: at most 1.6 times
/// the slowest median, so that one disturbed measurement does not stretch the axis and crowd
/// every subnet into its left edge (the hover still gives the p90); true when it was cut there.
pub fn p90_bar_end<P: ParetoPoint>(entries: &[P], p90_ms: f64) -> (f64, bool) {
    let slowest = entries
        .iter()
        .map(|e| e.latency_ms().0)
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let cap = 1.6 * slowest;
    if slowest > 0.0 && p90_ms > cap {
        (cap, true)
    } else {
        (p90_ms, false)
    }
}

/// A measured subnet as the Pareto charts see it: its costs and one quality score.
pub trait ParetoPoint {
    /// True when a lower score is better (validation loss); false for accuracy.
    const LOWER_IS_BETTER: bool;
    /// The score axis' label.
    const SCORE_LABEL: &'static str;
    /// The subnet's spec.
    fn subnet(&self) -> &str;
    /// What the row is in its palette (`eval::rows::ROLES`).
    fn role(&self) -> &str;
    /// The score on the y axis.
    fn score(&self) -> f64;
    /// Parameters, all of them.
    fn params_total(&self) -> usize;
    /// Bytes of the exported model.
    fn size_bytes(&self) -> usize;
    /// Median and p90 latency (ms, batch 1).
    fn latency_ms(&self) -> (f64, f64);
    /// Every measurement, for hover texts.
    fn metrics_text(&self) -> String;
    /// The score oriented so that higher is better (what fronts compare).
    fn merit(&self) -> f64 {
        if Self::LOWER_IS_BETTER {
            -self.score()
        } else {
            self.score()
        }
    }
}

impl ParetoPoint for PaletteEntry {
    const LOWER_IS_BETTER: bool = false;
    const SCORE_LABEL: &'static str = "dev accuracy";
    fn subnet(&self) -> &str {
        &self.subnet
    }
    fn role(&self) -> &str {
        &self.role
    }
    fn score(&self) -> f64 {
        self.dev_accuracy
    }
    fn params_total(&self) -> usize {
        self.params_total
    }
    fn size_bytes(&self) -> usize {
        self.size_bytes
    }
    fn latency_ms(&self) -> (f64, f64) {
        (self.latency_ms_median, self.latency_ms_p90)
    }
    fn metrics_text(&self) -> String {
        format!(
            "{}\nlayers {} · heads {} · FFN {} · hidden {}\nparameters {:.2} M ({:.2} M non-embedding)\nsize {:.2} MB\nlatency {:.3} ms median, {:.3} ms p90\ndev accuracy {:.4} · test accuracy {:.4}",
            self.subnet, self.layers, widths_of(&self.subnet, |s| s.heads.short(), self.heads), widths_of(&self.subnet, |s| s.ffn.short(), self.ffn), self.hidden, self.params_total as f64 / 1e6, self.params_non_embedding as f64 / 1e6,
            self.size_bytes as f64 / 1e6, self.latency_ms_median, self.latency_ms_p90, self.dev_accuracy, self.test_accuracy
        )
    }
}

impl ParetoPoint for DecoderEntry {
    const LOWER_IS_BETTER: bool = true;
    const SCORE_LABEL: &'static str = "validation loss (nats)";
    fn subnet(&self) -> &str {
        &self.subnet
    }
    fn role(&self) -> &str {
        &self.role
    }
    fn score(&self) -> f64 {
        self.val_loss
    }
    fn params_total(&self) -> usize {
        self.params_total
    }
    fn size_bytes(&self) -> usize {
        self.size_bytes
    }
    /// Prefill of the latency prompt: what a first answer waits for.
    fn latency_ms(&self) -> (f64, f64) {
        let p90 = if self.prefill_ms_p90.is_nan() {
            self.prefill_ms
        } else {
            self.prefill_ms_p90
        };
        (self.prefill_ms, p90)
    }
    fn metrics_text(&self) -> String {
        format!(
            "{}\n{} layers · {} query heads ({} KV) · FFN {}\nparameters {:.1} M ({:.1} M non-embedding) · f16 {:.1} MB\nvalidation loss {:.4} (cut from the teacher untrained: {:.4})\nperplexity {:.2} · top-1 {:.4}\nprefill {:.1} ms median, {:.1} ms p90 · decode {:.1} tokens/s",
            self.subnet, self.layers, widths_of(&self.subnet, |s| s.heads.short(), self.heads), self.kv_heads, widths_of(&self.subnet, |s| s.ffn.short(), self.ffn),
            self.params_total as f64 / 1e6, self.params_non_embedding as f64 / 1e6,
            self.size_bytes as f64 / 1e6, self.val_loss, self.val_loss_untrained,
            self.perplexity, self.top1_accuracy, self.prefill_ms, self.prefill_ms_p90,
            self.decode_tokens_per_s
        )
    }
}

/// A row's heads or FFN width as its spec has them: one value, or `12/6/3` per layer (the
/// row's own column holds the widest layer's).
fn widths_of(subnet: &str, pick: fn(&crate::model::SubnetSpec) -> String, widest: usize) -> String {
    subnet
        .parse::<crate::model::SubnetSpec>()
        .map_or(widest.to_string(), |s| pick(&s))
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

    #[test]
    fn budget_excludes_points_from_the_front_and_picks_the_best_that_fits() {
        // (latency ms, size MB, dev accuracy) of four subnets, checked by hand:
        //   a (0.5, 10, 0.70)  b (1.2, 50, 0.90)  c (0.8, 30, 0.85)  d (2.0, 20, 0.95)
        let latency = [0.5, 1.2, 0.8, 2.0];
        let size = [10.0, 50.0, 30.0, 20.0];
        let accuracy = [0.70, 0.90, 0.85, 0.95];
        let size_points: Vec<(f64, f64)> = size.iter().copied().zip(accuracy).collect();
        let costs: Vec<(f64, f64)> = size.iter().copied().zip(latency).collect();

        // No budget: everything fits; d (20 MB, 0.95) dominates b and c on size.
        let open = CostBudget::default();
        assert!(!open.is_set());
        let all: Vec<bool> = (0..4).map(|i| open.fits(latency[i], size[i])).collect();
        assert_eq!(all, vec![true; 4]);
        assert_eq!(
            front_within(&size_points, &all),
            vec![true, false, false, true]
        );
        assert_eq!(front_within(&size_points, &all), pareto_front(&size_points));
        assert_eq!(best_within(&accuracy, &costs, &all), Some(3));

        // At most 0.8 ms (inclusive) and 40 MB: b is too slow and too big, d too slow.
        let tight = CostBudget {
            latency_ms: Some(0.8),
            size: Some(40.0),
        };
        assert!(tight.is_set());
        let fits: Vec<bool> = (0..4).map(|i| tight.fits(latency[i], size[i])).collect();
        assert_eq!(fits, vec![true, false, true, false]);
        // With d out of the way, c (30 MB, 0.85) is on the front beside a.
        assert_eq!(
            front_within(&size_points, &fits),
            vec![true, false, true, false]
        );
        assert_eq!(best_within(&accuracy, &costs, &fits), Some(2));

        // Only a size limit: the latency of a subnet no longer matters.
        let size_only = CostBudget {
            latency_ms: None,
            size: Some(25.0),
        };
        assert!(size_only.fits(2.0, 20.0));
        assert!(!size_only.fits(0.1, 25.5));
        assert!(!tight.fits(f64::NAN, 10.0));

        // Nothing fits: no front, no best.
        let none = [false; 4];
        assert_eq!(front_within(&size_points, &none), vec![false; 4]);
        assert_eq!(best_within(&accuracy, &costs, &none), None);
    }

    #[test]
    fn the_best_within_budget_is_the_cheapest_of_the_most_accurate() {
        // Two subnets at the same accuracy: the smaller (and faster) one is the pick, whatever
        // the order; a cheaper but less accurate one is not.
        let accuracy = [0.80, 0.86, 0.86];
        let costs = [(5.0, 0.3), (20.0, 0.9), (10.0, 0.5)];
        let fits = [true; 3];
        assert_eq!(best_within(&accuracy, &costs, &fits), Some(2));
        let swapped = [(10.0, 0.5), (5.0, 0.3), (20.0, 0.9)];
        assert_eq!(best_within(&[0.86, 0.80, 0.86], &swapped, &fits), Some(0));
        // Same size: the faster one.
        let same_size = [(10.0, 0.9), (10.0, 0.4)];
        assert_eq!(best_within(&[0.9, 0.9], &same_size, &[true, true]), Some(1));
    }
}
