//! The palette as the Pareto tab sees it in one frame: each subnet's costs, what fits the
//! budget, the size and latency fronts and the best subnet within budget. Computed once per
//! frame, so the charts and the table show the same fronts.

pub use crate::eval::pareto::ParetoPoint;
use crate::eval::pareto::{best_within, front_within, CostBudget};
use crate::train::protocol::PaletteEntry;

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
    /// The fronts of the whole palette, whatever the budget (what the table's Fronts column
    /// marks; the charts draw them faintly when a budget narrows the fronts above).
    pub size_front_all: Vec<bool>,
    pub latency_front_all: Vec<bool>,
    /// The budget the view was made under (the charts draw its limits).
    pub budget: CostBudget,
    /// The best-scoring subnet within budget, only when a budget is set.
    pub best: Option<usize>,
    /// The run's teacher, the reference of the per-layer chart a hovered subnet shows.
    pub teacher: Option<crate::model::TeacherShape>,
    /// A search's candidates as (predicted latency in ms, estimated score), and the front of
    /// those within its budget: drawn faintly on the latency chart.
    pub search: Vec<[f64; 2]>,
    pub search_front: Vec<[f64; 2]>,
}

impl<'a, P: ParetoPoint> PaletteView<'a, P> {
    /// Computes fit, fronts and best once for `entries` under `budget`.
    pub fn new(entries: &'a [P], in_mb: bool, budget: &CostBudget) -> Self {
        let fits: Vec<bool> = entries
            .iter()
            .map(|e| budget.fits(e.latency_ms().0, cost_of(e, Cost::Size, in_mb)))
            .collect();
        let every = vec![true; entries.len()];
        let front = |cost: Cost, fits: &[bool]| {
            let points: Vec<(f64, f64)> = entries
                .iter()
                .map(|e| (cost_of(e, cost, in_mb), e.merit()))
                .collect();
            front_within(&points, fits)
        };
        let size_front = front(Cost::Size, &fits);
        let latency_front = front(Cost::Latency, &fits);
        let size_front_all = front(Cost::Size, &every);
        let latency_front_all = front(Cost::Latency, &every);
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
            size_front_all,
            latency_front_all,
            budget: *budget,
            best,
            teacher: None,
            search: Vec::new(),
            search_front: Vec::new(),
        }
    }

    /// Shows a search's `candidates` on the latency chart (their estimate as the score).
    pub fn with_search(mut self, candidates: &[crate::search::driver::Candidate]) -> Self {
        let point = |c: &crate::search::driver::Candidate| [c.predicted_latency_ms, c.estimate];
        self.search = candidates.iter().map(point).collect();
        let within: Vec<&crate::search::driver::Candidate> =
            candidates.iter().filter(|c| c.within_budget).collect();
        let merits: Vec<(f64, f64)> = within
            .iter()
            .map(|c| (c.predicted_latency_ms, c.merit))
            .collect();
        let on = crate::eval::pareto::pareto_front(&merits);
        self.search_front = within
            .iter()
            .zip(on)
            .filter(|(_, on)| *on)
            .map(|(c, _)| point(c))
            .collect();
        self
    }

    /// Front membership on one axis, among the subnets within budget.
    pub fn front(&self, cost: Cost) -> &[bool] {
        match cost {
            Cost::Size => &self.size_front,
            Cost::Latency => &self.latency_front,
        }
    }

    /// Front membership on one axis, over the whole palette.
    pub fn front_all(&self, cost: Cost) -> &[bool] {
        match cost {
            Cost::Size => &self.size_front_all,
            Cost::Latency => &self.latency_front_all,
        }
    }

    /// The budget's limit on one axis, in that axis's unit.
    pub fn limit(&self, cost: Cost) -> Option<f64> {
        match cost {
            Cost::Size => self.budget.size,
            Cost::Latency => self.budget.latency_ms,
        }
    }

    /// Where a p90 whisker ends on the latency axis ([`crate::eval::pareto::p90_bar_end`]).
    pub fn whisker_end(&self, p90_ms: f64) -> (f64, bool) {
        crate::eval::pareto::p90_bar_end(self.entries, p90_ms)
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
        PaletteEntry::sample(subnet, params_m * 1_000_000, latency_ms, dev)
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
        // The table marks the palette's own fronts, whatever the budget: medium stays on them.
        assert_eq!(tight.size_front_all, vec![true, true, false]);
        assert_eq!(tight.latency_front_all, vec![true, true, true]);
        assert_eq!(tight.limit(Cost::Latency), Some(1.0));
        // The size axis is in MB here: 30 M parameters at 4 bytes each.
        assert_eq!(tight.xy(2, Cost::Size), [120.0, 0.85]);
        assert_eq!(tight.xy(2, Cost::Latency), [0.8, 0.85]);
    }

    #[test]
    fn one_slow_p90_does_not_stretch_the_latency_axis() {
        let entries = [
            entry("a", 10, 1.0, 0.70),
            entry("b", 20, 2.0, 0.80),
            entry("c", 30, 5.0, 0.90),
        ];
        let view = PaletteView::new(&entries, false, &CostBudget::default());
        assert_eq!(view.whisker_end(6.0), (6.0, false));
        // A 98 ms p90 beside medians of at most 5 ms ends at 8 ms, marked as cut.
        assert_eq!(view.whisker_end(98.0), (8.0, true));
    }
}
