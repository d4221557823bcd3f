//! The training watchdog: a non-finite loss or gradient norm stops a run before anything is
//! saved, naming the last good checkpoint; a loss far above its running level is a warning,
//! or a stop when the preset says so.

use super::checkpoint;
use super::config::WatchdogConfig;
use super::protocol::SubnetLoss;
use std::path::Path;

/// What the watchdog makes of a step.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Fine,
    /// Log this and go on.
    Warn(String),
    /// Stop the run with this reason.
    Stop(String),
}

/// The watchdog's settings and the loss's running level.
pub struct Watchdog {
    config: WatchdogConfig,
    level: Option<f64>,
}

impl Watchdog {
    /// A watchdog with no history yet.
    pub fn new(config: WatchdogConfig) -> Self {
        Self {
            config,
            level: None,
        }
    }

    /// Judges the step `(global step, stage)` just taken; the run folder names the last good
    /// checkpoint in the reasons.
    pub fn check(
        &mut self,
        losses: &[SubnetLoss],
        grad_norm: f64,
        (step, stage): (usize, usize),
        run_dir: &Path,
    ) -> Verdict {
        if !self.config.enabled {
            return Verdict::Fine;
        }
        let last_good = || match checkpoint::complete_steps(run_dir).last() {
            Some(m) => format!("the last good checkpoint is step {m}"),
            None => "there is no checkpoint yet".to_string(),
        };
        if let Some(l) = losses.iter().find(|l| !l.loss.is_finite()) {
            let what = if l.loss.is_nan() { "NaN" } else { "infinite" };
            return Verdict::Stop(format!(
                "loss became {what} at step {step} in stage {stage} (subnet {}); {}",
                l.subnet,
                last_good()
            ));
        }
        if !grad_norm.is_finite() {
            return Verdict::Stop(format!(
                "gradient norm became {grad_norm} at step {step} in stage {stage}; {}",
                last_good()
            ));
        }
        let loss = losses.first().map_or(0.0, |l| l.loss);
        let factor = self.config.spike_factor;
        let mut verdict = Verdict::Fine;
        if let (Some(level), true) = (self.level, factor > 0.0) {
            let ratio = loss / level.max(1e-6);
            let why = || {
                format!(
                    "loss {loss:.4} at step {step} in stage {stage} is {ratio:.1}× its running \
                     level {level:.4}; {}",
                    last_good()
                )
            };
            if ratio > factor && self.config.stop_on_spike {
                return Verdict::Stop(why());
            }
            if ratio > factor / 2.0 {
                verdict = Verdict::Warn(why());
            }
        }
        // A slow running level (about 20 steps) that a single spike hardly moves.
        self.level = Some(match self.level {
            Some(level) => 0.95 * level + 0.05 * loss,
            None => loss,
        });
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(loss: f64) -> Vec<SubnetLoss> {
        vec![SubnetLoss {
            subnet: "s".into(),
            loss,
            weight: 1.0,
            role: None,
        }]
    }

    #[test]
    fn nan_stops_a_spike_warns_then_stops_and_a_calm_run_is_fine() {
        let dir = std::path::Path::new("/nonexistent-run");
        let mut w = Watchdog::new(WatchdogConfig::default());
        assert_eq!(w.check(&step(0.7), 1.0, (1, 0), dir), Verdict::Fine);
        assert_eq!(w.check(&step(0.69), 1.0, (2, 0), dir), Verdict::Fine);
        assert!(matches!(
            w.check(&step(4.0), 1.0, (3, 0), dir),
            Verdict::Warn(_)
        ));
        let Verdict::Stop(why) = w.check(&step(9.0), 1.0, (4, 1), dir) else {
            panic!("a 10x spike did not stop the run");
        };
        assert!(why.contains("step 4 in stage 1") && why.contains("no checkpoint yet"));
        let Verdict::Stop(why) = w.check(&step(f64::NAN), 1.0, (5, 1), dir) else {
            panic!("NaN did not stop the run");
        };
        assert!(why.starts_with("loss became NaN at step 5"), "{why}");
        assert!(matches!(
            w.check(&step(0.7), f64::INFINITY, (6, 1), dir),
            Verdict::Stop(_)
        ));
    }
}
