//! One handle over both kinds of run: classification (encoder) and language modelling (decoder).

use super::config::RunConfig;
use super::protocol::{LmEntry, TrainEvent};
use super::trainer::{Control, Trainer};
use crate::lm::LmTrainer;
use anyhow::Result;
use std::path::Path;

/// A classifier run or a decoder run, chosen by the configuration's `lm` section.
pub enum AnyTrainer {
    Classifier(Box<Trainer>),
    Lm(Box<LmTrainer>),
}

impl AnyTrainer {
    /// Prepares a new run of the configuration's kind.
    pub fn create(config: RunConfig, run_dir: &Path) -> Result<Self> {
        Ok(if config.is_lm() {
            Self::Lm(Box::new(LmTrainer::create(config, run_dir)?))
        } else {
            Self::Classifier(Box::new(Trainer::create(config, run_dir)?))
        })
    }

    /// Reopens the run in `run_dir` from its latest checkpoint.
    pub fn resume(run_dir: &Path) -> Result<Self> {
        Ok(if is_lm_run(run_dir) {
            Self::Lm(Box::new(LmTrainer::resume(run_dir)?))
        } else {
            Self::Classifier(Box::new(Trainer::resume(run_dir)?))
        })
    }

    /// The run's configuration.
    pub fn config(&self) -> &RunConfig {
        match self {
            Self::Classifier(t) => &t.config,
            Self::Lm(t) => &t.config,
        }
    }

    /// Total optimizer steps.
    pub fn total_steps(&self) -> usize {
        match self {
            Self::Classifier(t) => t.total_steps(),
            Self::Lm(t) => t.total_steps(),
        }
    }

    /// Steps done.
    pub fn global_step(&self) -> usize {
        match self {
            Self::Classifier(t) => t.global_step,
            Self::Lm(t) => t.global_step,
        }
    }

    /// Trains to the end or until `control` says stop; true when stopped early.
    pub fn run(
        &mut self,
        control: &mut Control<'_>,
        sink: &mut dyn FnMut(TrainEvent),
    ) -> Result<bool> {
        match self {
            Self::Classifier(t) => t.run(control, sink),
            Self::Lm(t) => t.run(control, sink),
        }
    }
}

/// True when the run folder's configuration is a decoder run.
pub fn is_lm_run(run_dir: &Path) -> bool {
    RunConfig::load(&run_dir.join("config.ron")).is_ok_and(|c| c.is_lm())
}

/// Measures a decoder run's subnets, sending `LmMeasured` events; `keep_going` is asked after
/// each entry.
pub fn measure_lm(
    trainer: &LmTrainer,
    send: &dyn Fn(TrainEvent),
    keep_going: &dyn Fn() -> bool,
) -> Result<Vec<LmEntry>> {
    let mut entries = Vec::new();
    let mut on_entry = |e: &LmEntry| {
        send(TrainEvent::LmMeasured(e.clone()));
        entries.push(e.clone());
        keep_going()
    };
    let path = trainer.measure(&mut on_entry)?;
    send(TrainEvent::log(
        "info",
        format!("decoder measurements written to {}", path.display()),
    ));
    Ok(entries)
}
