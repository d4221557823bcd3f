//! The two kinds of run behind one handle, chosen by the configuration's `lm` section.

use super::classifier::ClassifierRun;
use super::config::RunConfig;
use super::decoder::DecoderRun;
use super::protocol::TrainEvent;
use super::run::{Control, Placement, ResumeOptions};
use anyhow::Result;
use std::path::Path;

/// A classifier run or a decoder run.
pub enum AnyRun {
    Classifier(Box<ClassifierRun>),
    Decoder(Box<DecoderRun>),
}

/// Calls the same method on whichever run this is.
macro_rules! on_run {
    ($self:expr, $run:ident => $body:expr) => {
        match $self {
            AnyRun::Classifier($run) => $body,
            AnyRun::Decoder($run) => $body,
        }
    };
}

impl AnyRun {
    /// Prepares a new run of the configuration's kind.
    pub fn create(config: RunConfig, run_dir: &Path) -> Result<Self> {
        Ok(if config.is_decoder() {
            Self::Decoder(Box::new(DecoderRun::create(config, run_dir)?))
        } else {
            Self::Classifier(Box::new(ClassifierRun::create(config, run_dir)?))
        })
    }

    /// Reopens the run in `run_dir` from its latest checkpoint, placed as `placement` says.
    pub fn resume(run_dir: &Path, placement: Placement, options: ResumeOptions) -> Result<Self> {
        Ok(if is_decoder_run(run_dir) {
            Self::Decoder(Box::new(DecoderRun::resume_with(
                run_dir, placement, options,
            )?))
        } else {
            Self::Classifier(Box::new(ClassifierRun::resume_with(
                run_dir, placement, options,
            )?))
        })
    }

    /// Opens, on a rank other than 0 of a data-parallel run, the run rank 0 started from
    /// `start_step` (nothing is written).
    pub fn join(run_dir: &Path, placement: Placement, start_step: usize) -> Result<Self> {
        Ok(if is_decoder_run(run_dir) {
            Self::Decoder(Box::new(DecoderRun::join(run_dir, placement, start_step)?))
        } else {
            Self::Classifier(Box::new(ClassifierRun::join(
                run_dir, placement, start_step,
            )?))
        })
    }

    /// Trains as one rank of `group` from here on (`Run::set_group`).
    pub fn set_group(&mut self, group: Box<dyn super::parallel::Collective>) {
        on_run!(self, r => r.set_group(group))
    }

    /// This process's rank (0 when training alone).
    pub fn rank(&self) -> usize {
        on_run!(self, r => r.rank())
    }

    /// The device the run computes on.
    pub fn device(&self) -> &candle_core::Device {
        use super::task::Task;
        on_run!(self, r => r.task.device())
    }

    /// Opens the trained (or stopped) run in `run_dir` for evaluation and export.
    pub fn open_trained(run_dir: &Path, placement: Placement) -> Result<Self> {
        Ok(if is_decoder_run(run_dir) {
            Self::Decoder(Box::new(DecoderRun::open_trained_on(run_dir, placement)?))
        } else {
            Self::Classifier(Box::new(ClassifierRun::open_trained_on(
                run_dir, placement,
            )?))
        })
    }

    /// The run's configuration.
    pub fn config(&self) -> &RunConfig {
        on_run!(self, r => &r.config)
    }

    /// The run's folder.
    pub fn run_dir(&self) -> &std::path::Path {
        on_run!(self, r => &r.run_dir)
    }

    /// Total optimizer steps.
    pub fn total_steps(&self) -> usize {
        on_run!(self, r => r.total_steps())
    }

    /// Steps done.
    pub fn global_step(&self) -> usize {
        on_run!(self, r => r.global_step)
    }

    /// Trains to the end or until `control` says stop; true when stopped early.
    pub fn run(
        &mut self,
        control: &mut Control<'_>,
        sink: &mut dyn FnMut(TrainEvent),
    ) -> Result<bool> {
        on_run!(self, r => r.run(control, sink))
    }
}

/// True when the run folder's configuration is a decoder run.
pub fn is_decoder_run(run_dir: &Path) -> bool {
    RunConfig::load(&run_dir.join("config.ron")).is_ok_and(|c| c.is_decoder())
}
