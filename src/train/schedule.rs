//! Where a run is: steps per epoch, each stage's budget in steps, and the (stage, step) of a
//! global step.

use super::config::{Budget, RunConfig, StageConfig};

/// Steps in one pass over `n` examples at batch size `b`.
pub fn steps_per_epoch(n: usize, b: usize) -> usize {
    n.div_ceil(b.max(1)).max(1)
}

/// (stage, step within stage) of global step `global_step`; stage 3 when past the end.
pub fn position_of(global_step: usize, stage_steps: &[usize]) -> (usize, usize) {
    let mut left = global_step;
    for (s, &n) in stage_steps.iter().enumerate() {
        if left < n {
            return (s, left);
        }
        left -= n;
    }
    (3, 0)
}

/// Steps of stages 0, 1, 2 (0 when disabled) for `n_train` examples (or blocks).
pub fn stage_steps(config: &RunConfig, n_train: usize) -> Vec<usize> {
    let spe = steps_per_epoch(n_train, config.batch_size);
    let budget = |s: &StageConfig| match (s.enabled, s.budget) {
        (false, _) => 0,
        // Saturating: validation bounds budgets, and an edited config.ron must not wrap to 0.
        (true, Budget::Epochs(e)) => e.saturating_mul(spe),
        (true, Budget::Steps(n)) => n,
    };
    config.stages.iter().map(budget).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_skip_disabled_stages_and_budgets_count_epochs() {
        let steps = [3, 0, 2];
        let walk: Vec<(usize, usize)> = (0..6).map(|g| position_of(g, &steps)).collect();
        assert_eq!(walk, [(0, 0), (0, 1), (0, 2), (2, 0), (2, 1), (3, 0)]);
        assert_eq!(steps_per_epoch(10, 4), 3);
        assert_eq!(steps_per_epoch(0, 4), 1);
        assert_eq!(steps_per_epoch(10, 0), 10);
        let mut config = RunConfig {
            batch_size: 4,
            ..RunConfig::default()
        };
        config.stages[0].budget = Budget::Epochs(2);
        config.stages[1].budget = Budget::Steps(5);
        config.stages[2].enabled = false;
        assert_eq!(stage_steps(&config, 10), [6, 5, 0]);
    }
}
