//! The stage loop both kinds of run share: stages in order, control between steps, step
//! events, evaluations and checkpoints on schedule, the final save.

use super::config::{Budget, RunConfig};
use super::protocol::{SubnetLoss, TrainEvent};
use super::trainer::{position_of, steps_per_epoch, Control, Flow};
use anyhow::Result;
use std::time::Instant;

/// What a run provides to [`run_stages`].
pub trait StagedRun {
    fn config(&self) -> &RunConfig;
    fn stage_steps(&self) -> &[usize];
    fn global_step(&self) -> usize;
    fn set_global_step(&mut self, step: usize);
    /// Writes the event to the run's log and hands it on.
    fn emit(&mut self, event: TrainEvent, sink: &mut dyn FnMut(TrainEvent));
    fn start_stage(&mut self, stage: usize, sink: &mut dyn FnMut(TrainEvent)) -> Result<()>;
    /// One optimizer step: each subnet's loss, the gradient norm and the learning rate.
    fn train_step(
        &mut self,
        stage: usize,
        step_in_stage: usize,
    ) -> Result<(Vec<SubnetLoss>, f64, f64)>;
    fn evaluate(&mut self, stage: usize, sink: &mut dyn FnMut(TrainEvent)) -> Result<()>;
    /// Saves a checkpoint; returns its folder.
    fn save_checkpoint(&mut self) -> Result<std::path::PathBuf>;
    /// Stores the trained weights when the last stage is done; returns what to log.
    fn finish(&mut self) -> Result<String>;
}

/// Steps of stages 0, 1, 2 (0 when disabled) for `n_train` examples (or blocks).
pub fn stage_steps(config: &RunConfig, n_train: usize) -> Vec<usize> {
    let spe = steps_per_epoch(n_train, config.batch_size);
    config
        .stages
        .iter()
        .map(|s| match (s.enabled, s.budget) {
            (false, _) => 0,
            (true, Budget::Epochs(e)) => e * spe,
            (true, Budget::Steps(n)) => n,
        })
        .collect()
}

/// Saves a checkpoint and reports where.
pub fn checkpoint(run: &mut dyn StagedRun, sink: &mut dyn FnMut(TrainEvent)) -> Result<()> {
    let path = run.save_checkpoint()?;
    let global_step = run.global_step();
    run.emit(
        TrainEvent::CheckpointSaved {
            global_step,
            path: path.display().to_string(),
        },
        sink,
    );
    Ok(())
}

/// Runs from the current position to the end or until `control` says stop (checkpoint kept);
/// returns true when stopped early.
pub fn run_stages(
    run: &mut dyn StagedRun,
    control: &mut Control<'_>,
    sink: &mut dyn FnMut(TrainEvent),
) -> Result<bool> {
    loop {
        let (stage, step_in_stage) = position_of(run.global_step(), run.stage_steps());
        if stage >= 3 {
            break;
        }
        if step_in_stage == 0 {
            run.start_stage(stage, sink)?;
        }
        if control(run.global_step(), &mut |e| sink(e)) == Flow::Stop {
            checkpoint(run, sink)?;
            let global_step = run.global_step();
            run.emit(
                TrainEvent::Finished {
                    global_step,
                    stopped: true,
                },
                sink,
            );
            return Ok(true);
        }
        let started = Instant::now();
        let (losses, grad_norm, learning_rate) = run.train_step(stage, step_in_stage)?;
        let global_step = run.global_step() + 1;
        run.set_global_step(global_step);
        run.emit(
            TrainEvent::Step {
                stage,
                step_in_stage,
                global_step,
                learning_rate,
                losses,
                grad_norm,
                seconds: started.elapsed().as_secs_f64(),
            },
            sink,
        );
        let stage_end = step_in_stage + 1 == run.stage_steps()[stage];
        let every = |n: usize| n > 0 && global_step.is_multiple_of(n);
        let (eval_every, checkpoint_every) =
            (run.config().eval_every, run.config().checkpoint_every);
        if stage_end || every(eval_every) {
            run.evaluate(stage, sink)?;
        }
        if stage_end || every(checkpoint_every) {
            checkpoint(run, sink)?;
        }
    }
    let message = run.finish()?;
    run.emit(TrainEvent::log("info", message), sink);
    let global_step = run.global_step();
    run.emit(
        TrainEvent::Finished {
            global_step,
            stopped: false,
        },
        sink,
    );
    Ok(false)
}
