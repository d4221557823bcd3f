//! `mlfs-studio train`: the headless run with a progress bar.

use crate::train::config::RunConfig;
use crate::train::protocol::TrainEvent;
use crate::train::trainer::{Flow, Trainer};
use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::Path;

/// Trains a new run from a preset, or resumes one, printing progress to the terminal.
pub fn train(preset: Option<&Path>, out: Option<&Path>, resume: Option<&Path>) -> Result<()> {
    let mut trainer = match (preset, out, resume) {
        (_, _, Some(dir)) => Trainer::resume(dir)?,
        (Some(p), Some(dir), None) => Trainer::create(RunConfig::load(p)?, dir)?,
        _ => anyhow::bail!("give --preset FILE --out RUN_DIR for a new run, or --resume RUN_DIR"),
    };
    let bar = ProgressBar::new(trainer.total_steps() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} [{elapsed_precise} < {eta_precise}] {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_position(trainer.global_step as u64);
    let mut stage_name = String::new();
    let mut sink = |e: TrainEvent| match &e {
        TrainEvent::StageStarted { stage, .. } => stage_name = format!("stage {stage}"),
        TrainEvent::Step {
            global_step,
            losses,
            ..
        } => {
            bar.set_position(*global_step as u64);
            let max = losses.first().map_or(0.0, |l| l.loss);
            let min = losses.get(1).map_or(max, |l| l.loss);
            bar.set_message(format!(
                "{stage_name} maxnet loss {max:.4} minnet loss {min:.4}"
            ));
        }
        TrainEvent::DevEval {
            global_step,
            results,
            ..
        } => {
            let accs: Vec<String> = results
                .iter()
                .map(|r| format!("{} {:.3}", r.role, r.accuracy))
                .collect();
            bar.println(format!(
                "step {global_step} dev accuracy: {}",
                accs.join(", ")
            ));
        }
        TrainEvent::Log { message, .. } => bar.println(message),
        TrainEvent::CheckpointSaved { path, .. } => bar.println(format!("checkpoint {path}")),
        TrainEvent::Finished {
            global_step,
            stopped,
        } => bar.finish_with_message(if *stopped {
            format!("stopped at step {global_step}")
        } else {
            "done".to_string()
        }),
        _ => {}
    };
    let mut ctl = |_: usize, _: &mut dyn FnMut(TrainEvent)| Flow::Continue;
    let stopped = trainer.run(&mut ctl, &mut sink)?;
    if !stopped && trainer.config.palette.evaluate_at_end {
        let listed = trainer.config.palette.subnets.join(",");
        let subnets = (!listed.is_empty()).then_some(listed.as_str());
        crate::cli::eval::print_palette(&trainer, subnets)?;
    }
    Ok(())
}
