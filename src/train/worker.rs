//! The trainer thread: commands in, events out, plain data only; panics become `Failed` events.

use super::any::{is_lm_run, measure_lm, AnyTrainer};
use super::config::RunConfig;
use super::protocol::{TrainCmd, TrainEvent};
use super::trainer::{Flow, Trainer};
use crate::lm::LmTrainer;
use crossbeam_channel::{unbounded, Receiver, Sender, TryRecvError};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// What the worker should do.
#[derive(Debug, Clone)]
pub enum StartRequest {
    /// A new run with this configuration in this folder.
    New {
        config: Box<RunConfig>,
        run_dir: PathBuf,
    },
    /// Continue the run in this folder from its latest checkpoint.
    Resume { run_dir: PathBuf },
    /// Measure the palette of a trained run: all subnets (`None`) or the listed specs.
    Palette {
        run_dir: PathBuf,
        subnets: Option<Vec<String>>,
    },
}

/// The client's side of a running trainer thread.
pub struct TrainerHandle {
    pub commands: Sender<TrainCmd>,
    pub events: Receiver<TrainEvent>,
    stop: Arc<AtomicBool>,
    join: Option<JoinHandle<()>>,
}

impl TrainerHandle {
    /// Asks the run to stop at the next step boundary (checkpoint kept).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.commands.send(TrainCmd::Stop);
    }

    /// True once the thread has ended.
    pub fn is_finished(&self) -> bool {
        self.join.as_ref().is_none_or(|j| j.is_finished())
    }

    /// Waits for the thread to end.
    pub fn join(mut self) {
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

impl Drop for TrainerHandle {
    fn drop(&mut self) {
        // A dropped handle (window closed) stops the run cleanly and waits for its checkpoint.
        if let Some(j) = self.join.take() {
            self.stop.store(true, Ordering::SeqCst);
            let _ = self.commands.send(TrainCmd::Stop);
            let _ = j.join();
        }
    }
}

/// Handles pause/resume/stop between steps; pause blocks this (worker) thread only.
fn control(
    commands: &Receiver<TrainCmd>,
    stop: &AtomicBool,
    step: usize,
    emit: &mut dyn FnMut(TrainEvent),
    palette_requests: &mut Vec<Option<Vec<String>>>,
) -> Flow {
    let mut paused = false;
    loop {
        if stop.load(Ordering::SeqCst) {
            return Flow::Stop;
        }
        let cmd = if paused {
            match commands.recv() {
                Ok(c) => c,
                Err(_) => return Flow::Stop,
            }
        } else {
            match commands.try_recv() {
                Ok(c) => c,
                Err(TryRecvError::Empty) => return Flow::Continue,
                Err(TryRecvError::Disconnected) => return Flow::Stop,
            }
        };
        match cmd {
            TrainCmd::Pause if !paused => {
                paused = true;
                emit(TrainEvent::Paused { global_step: step });
            }
            TrainCmd::Resume if paused => {
                emit(TrainEvent::Resumed { global_step: step });
                return Flow::Continue;
            }
            TrainCmd::Stop => return Flow::Stop,
            TrainCmd::EvaluatePalette(list) => palette_requests.push(list),
            _ => {}
        }
    }
}

/// Starts the trainer thread; `wake` is called after every event (e.g. to repaint the UI).
pub fn spawn(request: StartRequest, wake: Option<Arc<dyn Fn() + Send + Sync>>) -> TrainerHandle {
    let (cmd_tx, cmd_rx) = unbounded::<TrainCmd>();
    let (ev_tx, ev_rx) = unbounded::<TrainEvent>();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_worker = stop.clone();
    let ev_fail = ev_tx.clone();
    let join = std::thread::Builder::new()
        .name("mlfs-trainer".into())
        .spawn(move || {
            let send = |e: TrainEvent| {
                let _ = ev_tx.send(e);
                if let Some(w) = &wake {
                    w();
                }
            };
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run_request(request, &cmd_rx, &stop_worker, &send)
            }));
            match result {
                Ok(Ok(())) => {}
                Ok(Err(e)) => send(TrainEvent::Failed {
                    error: format!("{e:#}"),
                }),
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "unknown panic".into());
                    send(TrainEvent::Failed {
                        error: format!("the trainer crashed: {what}"),
                    });
                }
            }
        })
        .map_err(|e| {
            let _ = ev_fail.send(TrainEvent::Failed {
                error: format!("cannot start the trainer thread: {e}"),
            });
        })
        .ok();
    TrainerHandle {
        commands: cmd_tx,
        events: ev_rx,
        stop,
        join,
    }
}

fn run_request(
    request: StartRequest,
    commands: &Receiver<TrainCmd>,
    stop: &AtomicBool,
    send: &dyn Fn(TrainEvent),
) -> anyhow::Result<()> {
    let mut palette_requests = Vec::new();
    let trainer = match request {
        StartRequest::Palette { run_dir, .. } if is_lm_run(&run_dir) => {
            let trainer = LmTrainer::open_trained(&run_dir)?;
            return measure_decoder(&trainer, commands, stop, send);
        }
        StartRequest::Palette { run_dir, subnets } => {
            let trainer = Trainer::open_trained(&run_dir)?;
            return run_palette(&trainer, subnets, commands, stop, send);
        }
        StartRequest::New { config, run_dir } => {
            let mut t = AnyTrainer::create(*config, &run_dir)?;
            train(&mut t, commands, stop, send, &mut palette_requests)?.then_some(t)
        }
        StartRequest::Resume { run_dir } => {
            let mut t = AnyTrainer::resume(&run_dir)?;
            train(&mut t, commands, stop, send, &mut palette_requests)?.then_some(t)
        }
    };
    let trainer = match trainer {
        Some(AnyTrainer::Lm(t)) => {
            if t.config.palette.evaluate_at_end || !palette_requests.is_empty() {
                measure_decoder(&t, commands, stop, send)?;
            }
            return Ok(());
        }
        Some(AnyTrainer::Classifier(t)) => Some(t),
        None => None,
    };
    // A completed run measures its palette when configured to, and whatever was asked meanwhile.
    if let Some(trainer) = trainer {
        if trainer.config.palette.evaluate_at_end && palette_requests.is_empty() {
            let listed = &trainer.config.palette.subnets;
            palette_requests.push((!listed.is_empty()).then(|| listed.clone()));
        }
        for subnets in palette_requests {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            run_palette(&trainer, subnets, commands, stop, send)?;
        }
    }
    Ok(())
}

/// Trains to the end; true when the run completed (not stopped).
/// Measures a decoder run's subnets; Stop ends it early.
fn measure_decoder(
    trainer: &LmTrainer,
    commands: &Receiver<TrainCmd>,
    stop: &AtomicBool,
    send: &dyn Fn(TrainEvent),
) -> anyhow::Result<()> {
    let keep_going =
        || !(stop.load(Ordering::SeqCst) || commands.try_iter().any(|c| c == TrainCmd::Stop));
    measure_lm(trainer, send, &keep_going)?;
    send(TrainEvent::PaletteFinished {
        csv_path: trainer.run_dir.join("lm-palette.csv").display().to_string(),
    });
    Ok(())
}

fn train(
    trainer: &mut AnyTrainer,
    commands: &Receiver<TrainCmd>,
    stop: &AtomicBool,
    send: &dyn Fn(TrainEvent),
    palette_requests: &mut Vec<Option<Vec<String>>>,
) -> anyhow::Result<bool> {
    let mut sink = |e: TrainEvent| send(e);
    let mut ctl = |step: usize, emit: &mut dyn FnMut(TrainEvent)| {
        control(commands, stop, step, emit, palette_requests)
    };
    Ok(!trainer.run(&mut ctl, &mut sink)?)
}

/// Measures the palette, sending each subnet's result as soon as it is known; Stop ends it early.
fn run_palette(
    trainer: &Trainer,
    subnets: Option<Vec<String>>,
    commands: &Receiver<TrainCmd>,
    stop: &AtomicBool,
    send: &dyn Fn(TrainEvent),
) -> anyhow::Result<()> {
    let specs = match subnets {
        Some(list) => list
            .iter()
            .map(|s| crate::cli::forward::resolve_spec(Some(s), &trainer.space.teacher))
            .collect::<anyhow::Result<Vec<_>>>()?,
        None => trainer.space.all(),
    };
    send(TrainEvent::PaletteStarted { count: specs.len() });
    let mut on_entry = |e: &crate::train::protocol::PaletteEntry| {
        send(TrainEvent::PaletteResult(e.clone()));
        let stopped =
            stop.load(Ordering::SeqCst) || commands.try_iter().any(|c| c == TrainCmd::Stop);
        !stopped
    };
    let (entries, path) = crate::eval::palette::evaluate_palette(trainer, &specs, &mut on_entry)?;
    send(TrainEvent::log(
        "info",
        crate::eval::palette::storage_summary(trainer, &entries)?,
    ));
    send(TrainEvent::PaletteFinished {
        csv_path: path.display().to_string(),
    });
    Ok(())
}
