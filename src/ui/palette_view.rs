//! The palette as the Pareto tab sees it in one frame: each subnet's costs, what fits the
//! budget, the size and latency fronts and the best subnet within budget. Computed once per
//! frame, so the charts and the table show the same fronts.

use crate::eval::pareto::{best_within, front_within, CostBudget};
use crate::train::protocol::{DecoderEntry, PaletteEntry};

/// A measured subnet as the Pareto charts see it: its costs and one quality score.
pub trait ParetoPoint {
    /// True when a lower score is better (validation loss); false for accuracy.
    const LOWER_IS_BETTER: bool;
    /// The score axis' label.
    const SCORE_LABEL: &'static str;
    /// The subnet's spec.
    fn subnet(&self) -> &str;
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
        metrics_text(self)
    }
}

impl ParetoPoint for DecoderEntry {
    const LOWER_IS_BETTER: bool = true;
    const SCORE_LABEL: &'static str = "validation loss (nats)";
    fn subnet(&self) -> &str {
        &self.subnet
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
            self.subnet, self.layers, self.heads, self.kv_heads, self.ffn,
            self.params_total as f64 / 1e6, self.params_non_embedding as f64 / 1e6,
            self.size_bytes as f64 / 1e6, self.val_loss, self.val_loss_untrained,
            self.perplexity, self.top1_accuracy, self.prefill_ms, self.prefill_ms_p90,
            self.decode_tokens_per_s
        )
    }
}

/// Which cost a chart puts on its x axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cost {
    /// Exported size (MB) or parameters (millions).
    Size,
    /// Median latency at batch 1 (ms).
    Latency,
}

/// Exported size of a subnet in MB (10^6 bytes).
pub fn size_mb(e: &impl ParetoPoint) -> f64 {
    e.size_bytes() as f64 / 1e6
}

/// A subnet's cost on an axis: size in MB or millions of parameters, or latency in ms.
pub fn cost_of(e: &impl ParetoPoint, cost: Cost, in_mb: bool) -> f64 {
    match cost {
        Cost::Size if in_mb => size_mb(e),
        Cost::Size => e.params_total() as f64 / 1e6,
        Cost::Latency => e.latency_ms().0,
    }
}

/// A subnet's full measurements, for hover texts.
pub fn metrics_text(e: &PaletteEntry) -> String {
    format!(
        "{}\nlayers {} · heads {} · FFN {} · hidden {}\nparameters {:.2} M ({:.2} M non-embedding)\nsize {:.2} MB\nlatency {:.3} ms median, {:.3} ms p90\ndev accuracy {:.4} · test accuracy {:.4}",
        e.subnet, e.layers, e.heads, e.ffn, e.hidden, e.params_total as f64 / 1e6, e.params_non_embedding as f64 / 1e6,
        size_mb(e), e.latency_ms_median, e.latency_ms_p90, e.dev_accuracy, e.test_accuracy
    )
}

/// One frame's view of the palette: costs, budget fit, fronts and the best fitting subnet.
pub struct PaletteView<'a, P: ParetoPoint = PaletteEntry> {
    /// The measured subnets, in measurement order (every vector below is indexed like it).
    pub entries: &'a [P],
    /// Size axis in MB (else millions of parameters).
    pub in_mb: bool,
    /// The latency axis on a log scale (the chart plots log10 of the latency).
    pub log_latency: bool,
    /// Whether each subnet fits the budget (all do when none is set).
    pub fits: Vec<bool>,
    /// Front on (size axis, score) among the fitting subnets.
    pub size_front: Vec<bool>,
    /// Front on (latency, score) among the fitting subnets.
    pub latency_front: Vec<bool>,
    /// The best-scoring subnet within budget, only when a budget is set.
    pub best: Option<usize>,
}

impl<'a, P: ParetoPoint> PaletteView<'a, P> {
    /// Computes fit, fronts and best once for `entries` under `budget`.
    pub fn new(entries: &'a [P], in_mb: bool, budget: &CostBudget) -> Self {
        let fits: Vec<bool> = entries
            .iter()
            .map(|e| budget.fits(e.latency_ms().0, cost_of(e, Cost::Size, in_mb)))
            .collect();
        let front = |cost: Cost| {
            let points: Vec<(f64, f64)> = entries
                .iter()
                .map(|e| (cost_of(e, cost, in_mb), e.merit()))
                .collect();
            front_within(&points, &fits)
        };
        let size_front = front(Cost::Size);
        let latency_front = front(Cost::Latency);
        let accuracy: Vec<f64> = entries.iter().map(|e| e.merit()).collect();
        let costs: Vec<(f64, f64)> = entries
            .iter()
            .map(|e| (e.params_total() as f64, e.latency_ms().0))
            .collect();
        let best = if budget.is_set() {
            best_within(&accuracy, &costs, &fits)
        } else {
            None
        };
        Self {
            entries,
            in_mb,
            log_latency: false,
            fits,
            size_front,
            latency_front,
            best,
        }
    }

    /// Front membership on one axis.
    pub fn front(&self, cost: Cost) -> &[bool] {
        match cost {
            Cost::Size => &self.size_front,
            Cost::Latency => &self.latency_front,
        }
    }

    /// Where subnet `i` sits on a chart: (cost, score).
    pub fn xy(&self, i: usize, cost: Cost) -> [f64; 2] {
        let e = &self.entries[i];
        [self.axis_x(cost, cost_of(e, cost, self.in_mb)), e.score()]
    }

    /// Where a cost value sits on its chart's x axis (log10 on a log latency axis).
    pub fn axis_x(&self, cost: Cost, value: f64) -> f64 {
        match cost {
            Cost::Latency if self.log_latency => value.log10(),
            _ => value,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(subnet: &str, params_m: usize, latency_ms: f64, dev: f64) -> PaletteEntry {
        PaletteEntry {
            subnet: subnet.into(),
            layers: 1,
            heads: 1,
            ffn: 1,
            hidden: 1,
            params_total: params_m * 1_000_000,
            params_non_embedding: 0,
            // f32 weights: 4 bytes a parameter.
            size_bytes: params_m * 4_000_000,
            latency_ms_median: latency_ms,
            latency_ms_p90: latency_ms,
            dev_accuracy: dev,
            test_accuracy: dev,
        }
    }

    #[test]
    fn fronts_and_best_follow_the_budget() {
        let entries = [
            entry("small", 10, 0.5, 0.70),
            entry("medium", 20, 2.0, 0.95),
            entry("large", 30, 0.8, 0.85),
        ];
        // No budget. Size: medium (20 M, 0.95) dominates large (30 M, 0.85). Latency: small
        // (0.5 ms, 0.70), large (0.8 ms, 0.85) and medium (2 ms, 0.95) each trade speed for accuracy.
        let open = PaletteView::new(&entries, false, &CostBudget::default());
        assert_eq!(open.size_front, vec![true, true, false]);
        assert_eq!(open.latency_front, vec![true, true, true]);
        assert_eq!(open.best, None, "no budget, no best-within-budget mark");
        // At most 1 ms: medium is out, so large joins the size front and is the best.
        let budget = CostBudget {
            latency_ms: Some(1.0),
            size: None,
        };
        let tight = PaletteView::new(&entries, true, &budget);
        assert_eq!(tight.fits, vec![true, false, true]);
        assert_eq!(tight.size_front, vec![true, false, true]);
        assert_eq!(tight.latency_front, vec![true, false, true]);
        assert_eq!(tight.best, Some(2));
        // The size axis is in MB here: 30 M parameters at 4 bytes each.
        assert_eq!(tight.xy(2, Cost::Size), [120.0, 0.85]);
        assert_eq!(tight.xy(2, Cost::Latency), [0.8, 0.85]);
    }
}
