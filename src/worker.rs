//! The trainer thread: commands in, events out, plain data only; panics become `Failed` events.
//! It trains a run, then measures its palette (classifier) or its subnets (decoder).

use crate::eval::decoder::measure_with_events;
use crate::eval::palette::{evaluate_palette, storage_summary};
use crate::model::subnet::resolve_spec;
use crate::runs::launch::{Launched, Outcome, Ranks};
use crate::train::config::RunConfig;
use crate::train::kind::{is_decoder_run, AnyRun};
use crate::train::protocol::{PaletteEntry, TrainCmd, TrainEvent};
use crate::train::run::{Flow, Placement};
use crate::train::{ClassifierRun, DecoderRun};
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
    /// Train on several ranks (GPUs), one child process each (`runs::launch`): a new run with
    /// this configuration, or (`None`) the run in the folder resumed. The events come from the
    /// run's `metrics.jsonl`, which rank 0 writes.
    Launch {
        ranks: Ranks,
        config: Option<Box<RunConfig>>,
        run_dir: PathBuf,
    },
    /// Measure the palette of a trained run: all subnets (`None`) or the listed specs.
    Palette {
        run_dir: PathBuf,
        subnets: Option<Vec<String>>,
    },
}

/// The client's side of a running trainer thread.
pub struct WorkerHandle {
    pub commands: Sender<TrainCmd>,
    pub events: Receiver<TrainEvent>,
    stop: Arc<AtomicBool>,
    join: Option<JoinHandle<()>>,
}

impl WorkerHandle {
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

impl Drop for WorkerHandle {
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
pub fn spawn(request: StartRequest, wake: Option<Arc<dyn Fn() + Send + Sync>>) -> WorkerHandle {
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
                    let what = crate::util::panic_message(&*panic);
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
    WorkerHandle {
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
        StartRequest::Palette { run_dir, .. } if is_decoder_run(&run_dir) => {
            let mut run = DecoderRun::open_trained(&run_dir)?;
            run.lock_for_writing()?;
            for note in run.reader_notes() {
                send(TrainEvent::log("warn", note));
            }
            return measure_decoder(&run, commands, stop, send);
        }
        StartRequest::Palette { run_dir, subnets } => {
            let mut run = ClassifierRun::open_trained(&run_dir)?;
            run.lock_for_writing()?;
            for note in run.reader_notes() {
                send(TrainEvent::log("warn", note));
            }
            return run_palette(&run, subnets, commands, stop, send);
        }
        StartRequest::Launch {
            ranks,
            config,
            run_dir,
        } => return run_launched(&ranks, config.as_deref(), &run_dir, commands, stop, send),
        StartRequest::New { config, run_dir } => {
            let mut t = AnyRun::create(*config, &run_dir)?;
            train(&mut t, commands, stop, send, &mut palette_requests)?.then_some(t)
        }
        StartRequest::Resume { run_dir } => {
            let mut t = AnyRun::resume(&run_dir, Placement::default(), Default::default())?;
            train(&mut t, commands, stop, send, &mut palette_requests)?.then_some(t)
        }
    };
    let trainer = match trainer {
        Some(AnyRun::Decoder(t)) => {
            if t.config.palette.evaluate_at_end || !palette_requests.is_empty() {
                measure_decoder(&t, commands, stop, send)?;
            }
            return Ok(());
        }
        Some(AnyRun::Classifier(t)) => Some(t),
        None => None,
    };
    // A completed run measures its palette when configured to, and whatever was asked meanwhile.
    if let Some(trainer) = trainer {
        // The whole palette: the grid and the listed subnets, the missing rows only.
        if trainer.config.palette.evaluate_at_end && palette_requests.is_empty() {
            palette_requests.push(None);
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

/// Trains on several ranks in child processes and relays rank 0's events from the run's
/// `metrics.jsonl`; Stop hands the ranks a stop signal (they stop at one step, with a
/// checkpoint). Pause is not offered: the ranks would wait for each other's sums.
fn run_launched(
    ranks: &Ranks,
    config: Option<&RunConfig>,
    run_dir: &std::path::Path,
    commands: &Receiver<TrainCmd>,
    stop: &AtomicBool,
    send: &dyn Fn(TrainEvent),
) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::{Read, Seek, SeekFrom};
    // A new run's configuration as the preset file the ranks read (removed when they end).
    let preset = match config {
        Some(c) => {
            let file = tempfile::Builder::new()
                .prefix("mlfs-studio-preset-")
                .suffix(".ron")
                .tempfile()
                .context("cannot write the run's configuration for its ranks")?;
            c.save(file.path())?;
            Some(file)
        }
        None => None,
    };
    let dir = run_dir.display().to_string();
    let args: Vec<String> = match &preset {
        Some(p) => vec![
            "--preset".into(),
            p.path().display().to_string(),
            "--out".into(),
            dir,
        ],
        None => vec!["--resume".into(), dir],
    };
    // Rank 0's standard error, kept for the message when a rank fails.
    let errors = tempfile::tempfile().context("cannot open a file for the ranks' errors")?;
    let log_path = run_dir.join("metrics.jsonl");
    // A resumed run's history is already shown: relay only what is written from now on.
    let mut offset = std::fs::metadata(&log_path).map_or(0, |m| m.len());
    let started = std::time::SystemTime::now();
    let mut launched = Launched::start(ranks, &args, run_dir, || {
        Ok((std::process::Stdio::null(), errors.try_clone()?.into()))
    })?;
    send(TrainEvent::log(
        "info",
        format!(
            "training on {} ranks ({}), one process each",
            launched.world_size(),
            ranks.args().join(" ")
        ),
    ));
    let relay = |offset: &mut u64| {
        let Ok(mut file) = std::fs::File::open(&log_path) else {
            return;
        };
        let mut text = String::new();
        if file.seek(SeekFrom::Start(*offset)).is_err() || file.read_to_string(&mut text).is_err() {
            return;
        }
        // Complete lines only: rank 0 may be writing the next one.
        let Some(end) = text.rfind('\n') else {
            return;
        };
        for line in text[..end].lines() {
            if let Ok(event) = serde_json::from_str::<TrainEvent>(line) {
                send(event);
            }
        }
        *offset += end as u64 + 1;
    };
    let mut asked_to_stop = false;
    let outcome = loop {
        for cmd in commands.try_iter() {
            match cmd {
                TrainCmd::Stop => stop.store(true, Ordering::SeqCst),
                TrainCmd::Pause => send(TrainEvent::log(
                    "warn",
                    "a run on several GPUs cannot pause (its ranks wait for each other); Stop keeps a checkpoint to resume from",
                )),
                _ => {}
            }
        }
        if stop.load(Ordering::SeqCst) && !asked_to_stop {
            asked_to_stop = true;
            launched.signal(libc::SIGINT);
        }
        relay(&mut offset);
        if let Some(outcome) = launched.poll()? {
            relay(&mut offset);
            break outcome;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    drop(preset);
    match outcome {
        Outcome::Ended(0) => {
            relay_palette(run_dir, started, send);
            Ok(())
        }
        // Stopped by our signal: the Finished event (stopped) came from the log.
        Outcome::Ended(code) if asked_to_stop && code > 128 => Ok(()),
        Outcome::Ended(code) => {
            anyhow::bail!("rank 0 ended with status {code}: {}", tail_of(&errors))
        }
        Outcome::Failed { rank, status } => anyhow::bail!(
            "rank {rank} failed ({status}); the other ranks were ended. Rank 0 said: {}",
            tail_of(&errors)
        ),
    }
}

/// The last lines a rank wrote to its standard error (the error that ended it).
fn tail_of(file: &std::fs::File) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut text = String::new();
    let mut f = file;
    if f.seek(SeekFrom::Start(0)).is_ok() {
        let _ = f.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().rev().take(6).collect();
    let tail: Vec<&str> = lines.into_iter().rev().collect();
    match tail.join(" / ") {
        t if t.is_empty() => "nothing".into(),
        t => t,
    }
}

/// After the ranks finished: the palette rank 0 measured, as the studio's own run would send it.
fn relay_palette(
    run_dir: &std::path::Path,
    since: std::time::SystemTime,
    send: &dyn Fn(TrainEvent),
) {
    let fresh = |p: &std::path::Path| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= since)
    };
    let lm = run_dir.join("lm-palette.csv");
    if fresh(&lm) {
        for entry in crate::eval::decoder::read_csv(&lm).unwrap_or_default() {
            send(TrainEvent::DecoderMeasured(entry));
        }
        send(TrainEvent::PaletteFinished {
            csv_path: lm.display().to_string(),
        });
    }
    let csv = run_dir.join("palette.csv");
    if fresh(&csv) {
        send(TrainEvent::PaletteFinished {
            csv_path: csv.display().to_string(),
        });
    }
}

/// Measures a decoder run's subnets; Stop ends it early.
fn measure_decoder(
    run: &DecoderRun,
    commands: &Receiver<TrainCmd>,
    stop: &AtomicBool,
    send: &dyn Fn(TrainEvent),
) -> anyhow::Result<()> {
    let keep_going =
        || !(stop.load(Ordering::SeqCst) || commands.try_iter().any(|c| c == TrainCmd::Stop));
    measure_with_events(
        &run.task,
        &run.config,
        &run.run_dir,
        None,
        send,
        &keep_going,
    )?;
    send(TrainEvent::PaletteFinished {
        csv_path: run.run_dir.join("lm-palette.csv").display().to_string(),
    });
    Ok(())
}

/// Trains to the end; true when the run completed (not stopped).
fn train(
    trainer: &mut AnyRun,
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
    run: &ClassifierRun,
    subnets: Option<Vec<String>>,
    commands: &Receiver<TrainCmd>,
    stop: &AtomicBool,
    send: &dyn Fn(TrainEvent),
) -> anyhow::Result<()> {
    let specs = match subnets {
        Some(list) => list
            .iter()
            .map(|s| resolve_spec(Some(s), &run.task.space.teacher))
            .collect::<anyhow::Result<Vec<_>>>()?,
        // The whole space resumes a stopped measurement: rows already measured are kept.
        None => crate::eval::palette::missing_specs(
            &run.run_dir,
            crate::eval::palette::palette_specs(&run.task.space, &run.config)?,
        )?,
    };
    let keep_going =
        || !(stop.load(Ordering::SeqCst) || commands.try_iter().any(|c| c == TrainCmd::Stop));
    let (palette, dir) = (&run.config.palette, &run.run_dir);
    let path = dir.join("palette.csv");
    crate::eval::rows::with_events(
        specs.len(),
        send,
        &keep_going,
        TrainEvent::PaletteResult,
        |on_row| {
            let mut on_entry = |e: &PaletteEntry| on_row(e, false);
            evaluate_palette(&run.task, palette, dir, &specs, &mut on_entry).map(|(_, p)| p)
        },
    )?;
    let entries = crate::eval::palette::read_csv(&path)?;
    send(TrainEvent::log(
        "info",
        storage_summary(&run.task.net, &entries)?,
    ));
    send(TrainEvent::PaletteFinished {
        csv_path: path.display().to_string(),
    });
    Ok(())
}
