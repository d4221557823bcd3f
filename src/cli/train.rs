//! `mlfs-studio train`: the headless run with a progress bar.

use crate::cli::signals::{self, StopRequest};
use crate::eval::decoder::measure_with_events;
use crate::train::config::RunConfig;
use crate::train::kind::AnyRun;
use crate::train::parallel::join;
use crate::train::parallel::world::World;
use crate::train::protocol::TrainEvent;
use crate::train::run::{Flow, Placement, ResumeOptions, Run};
use crate::train::task::Task;
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::Path;

/// Trains a new run from a preset, or resumes one, printing progress to the terminal.
pub fn train(
    preset: Option<&Path>,
    out: Option<&Path>,
    resume: Option<&Path>,
    options: ResumeOptions,
    placement: Placement,
) -> Result<()> {
    let open = |placement: Placement| -> Result<AnyRun> {
        match (preset, out, resume) {
            (_, _, Some(dir)) => AnyRun::resume(dir, placement, options),
            (Some(p), Some(dir), None) => AnyRun::create(placement.apply(RunConfig::load(p)?), dir),
            _ => {
                anyhow::bail!("give --preset FILE --out RUN_DIR for a new run, or --resume RUN_DIR")
            }
        }
    };
    let mut trainer = match World::from_env()? {
        None => open(placement)?,
        Some(world) => {
            let run_dir = resume
                .or(out)
                .context("give --preset FILE --out RUN_DIR for a new run, or --resume RUN_DIR")?;
            let placement = rank_placement(&world, placement, preset, run_dir);
            let (trainer, line) = join::open_rank(&world, run_dir, placement, || open(placement))?;
            if world.rank != 0 {
                return train_quietly(trainer, &world);
            }
            crate::say!("{line}");
            trainer
        }
    };
    crate::say!(
        "{}",
        match &trainer {
            AnyRun::Classifier(r) => plan(r),
            AnyRun::Decoder(r) => plan(r),
        }
    );
    let stop = StopRequest::install()?;
    let total = trainer.total_steps();
    let bar = ProgressBar::new(total as u64);
    // Off a terminal (a log file, `nohup`, CI) the bar draws nothing and drops its lines:
    // they go to standard error as plain lines then, with a step line every 5 % of the run.
    let plain = bar.is_hidden();
    let shown_every = (total / 20).max(1);
    let line = |text: String| {
        if plain {
            crate::note!("{text}");
        } else {
            bar.println(crate::files::shown::terminal_safe(&text));
        }
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} [{elapsed_precise} < {eta_precise}] {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_position(trainer.global_step() as u64);
    let mut stage_name = String::new();
    let mut sink = |e: TrainEvent| match &e {
        TrainEvent::StageStarted { stage, .. } => {
            stage_name = format!("stage {stage}");
            if plain {
                line(format!("stage {stage} started"));
            }
        }
        TrainEvent::Step {
            global_step,
            losses,
            ..
        } => {
            bar.set_position(*global_step as u64);
            let shown: Vec<String> = losses
                .iter()
                .take(2)
                .map(|l| format!("{:.4}", l.loss))
                .collect();
            let message = format!("{stage_name} loss {}", shown.join(" / "));
            if plain && global_step % shown_every == 0 {
                line(format!("step {global_step}/{total} {message}"));
            }
            bar.set_message(message);
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
            line(format!(
                "step {global_step} dev accuracy: {}",
                accs.join(", ")
            ));
        }
        TrainEvent::DecoderEval {
            global_step,
            results,
            ..
        } => {
            let shown: Vec<String> = results
                .iter()
                .map(|r| {
                    format!(
                        "{} loss {:.3} ppl {:.1} top-1 {:.3}",
                        r.role, r.loss, r.perplexity, r.top1_accuracy
                    )
                })
                .collect();
            line(format!(
                "step {global_step} validation: {}",
                shown.join(", ")
            ));
        }
        TrainEvent::Diverged { reason, .. } => line(format!("error: {reason}")),
        TrainEvent::Log { level, message } if level != "info" => {
            line(format!("{level}: {message}"))
        }
        TrainEvent::Log { message, .. } => line(message.clone()),
        TrainEvent::CheckpointSaved { path, .. } => line(format!("checkpoint {path}")),
        TrainEvent::Finished {
            global_step,
            stopped,
        } => {
            let message = if *stopped {
                format!("stopped at step {global_step}")
            } else {
                "done".to_string()
            };
            if plain {
                line(message.clone());
            }
            bar.finish_with_message(message);
        }
        _ => {}
    };
    let mut ctl = |step: usize, emit: &mut dyn FnMut(TrainEvent)| match stop.requested() {
        None => Flow::Continue,
        Some(sig) => {
            emit(TrainEvent::log(
                "warn",
                format!(
                    "{} received: stopping at step {step} with a checkpoint (send it again to end at once)",
                    signals::name(sig)
                ),
            ));
            Flow::Stop
        }
    };
    let stopped = trainer.run(&mut ctl, &mut sink)?;
    let run_dir = crate::files::shown(trainer.run_dir());
    if let Some(sig) = stop.requested() {
        if stopped {
            crate::note!(
                "stopped by {}; continue with `mlfs-studio train --resume {run_dir}`",
                signals::name(sig)
            );
        } else {
            // The signal came during the last step: training is complete, the palette waits.
            crate::note!(
                "training finished; {} came before the palette was measured: measure it with `mlfs-studio eval --run {run_dir}`",
                signals::name(sig)
            );
        }
        std::process::exit(StopRequest::exit_status(sig));
    }
    if stopped || !trainer.config().palette.evaluate_at_end {
        return Ok(());
    }
    match &trainer {
        AnyRun::Classifier(t) => {
            // The grid and the listed subnets (`eval::palette_specs`).
            crate::cli::eval::print_palette(t, None, &stop)?;
        }
        AnyRun::Decoder(t) => {
            let print = |e: TrainEvent| {
                if let TrainEvent::DecoderMeasured(entry) = e {
                    if let Ok(line) = serde_json::to_string(&entry) {
                        crate::say!("{line}");
                    }
                }
            };
            let keep_going = || stop.requested().is_none();
            measure_with_events(&t.task, &t.config, &t.run_dir, None, &print, &keep_going)?;
        }
    }
    signals::exit_if_stopped(&stop, &run_dir);
    Ok(())
}

/// A rank's device: its own GPU (`LOCAL_RANK`) when the run trains on GPUs and the command
/// line named none.
fn rank_placement(
    world: &World,
    placement: Placement,
    preset: Option<&Path>,
    run_dir: &Path,
) -> Placement {
    use crate::model::device::DeviceChoice;
    if placement.device.is_some() {
        return placement;
    }
    let config_path = match preset {
        Some(p) if !run_dir.join("config.ron").exists() => p.to_path_buf(),
        _ => run_dir.join("config.ron"),
    };
    let Ok(config) = RunConfig::load(&config_path) else {
        // Rank 0 reports a configuration that does not load; the others only follow it.
        return placement;
    };
    let on_gpu = match config.device {
        DeviceChoice::Cpu => false,
        DeviceChoice::Cuda(_) => true,
        DeviceChoice::Auto => !crate::model::device::gpus().is_empty(),
    };
    Placement {
        device: Some(if on_gpu {
            DeviceChoice::Cuda(world.local_rank)
        } else {
            DeviceChoice::Cpu
        }),
        ..placement
    }
}

/// A rank other than 0: trains in step with rank 0 and prints nothing (rank 0 reports); a
/// signal reaches rank 0 through the step's agreement, so this rank stops with it.
fn train_quietly(mut trainer: AnyRun, world: &World) -> Result<()> {
    let stop = StopRequest::install()?;
    let mut ctl = |_: usize, _: &mut dyn FnMut(TrainEvent)| match stop.requested() {
        None => Flow::Continue,
        Some(_) => Flow::Stop,
    };
    trainer
        .run(&mut ctl, &mut |_| {})
        .with_context(|| format!("rank {}", world.rank))?;
    Ok(())
}

/// What a run is about to do, in one line: folder, device, data and the stage plan.
fn plan<T: Task>(run: &Run<T>) -> String {
    let stages: Vec<String> = run
        .stage_steps
        .iter()
        .enumerate()
        .map(|(s, n)| format!("stage {s}: {n} step{}", if *n == 1 { "" } else { "s" }))
        .collect();
    format!(
        "{}: {} {:?}, {} training examples, from step {} — {}",
        run.run_dir.display(),
        crate::model::device::device_name(run.task.device()),
        run.config.precision,
        run.task.train_len(),
        run.global_step,
        stages.join(", ")
    )
}
