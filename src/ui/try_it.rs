//! "Try it": the selected subnet of a run on the user's own input, computed off the UI thread.
//! A decoder completes a prompt greedily; a classifier labels a sentence with probabilities.

use super::app::{StudioApp, UiCommand};
use crate::lm::LmTrainer;
use crate::model::llama::generate::greedy;
use crate::train::any::is_lm_run;
use crate::train::trainer::Trainer;
use anyhow::{Context, Result};
use crossbeam_channel::Receiver;
use egui::{RichText, Ui};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// State of the box.
pub struct TryIt {
    pub input: String,
    pub max_new_tokens: usize,
    pub output: Option<Result<String, String>>,
    pub busy: bool,
    rx: Option<Receiver<Result<String, String>>>,
}

impl Default for TryIt {
    fn default() -> Self {
        Self {
            input: String::new(),
            max_new_tokens: 32,
            output: None,
            busy: false,
            rx: None,
        }
    }
}

/// A request: plain data for the worker thread.
#[derive(Debug, Clone)]
pub struct TryRequest {
    pub run_dir: PathBuf,
    /// Subnet spec; `None` means the run's default (a decoder run's student, the maxnet).
    pub subnet: Option<String>,
    pub input: String,
    pub max_new_tokens: usize,
}

/// A trained run kept loaded between tries (loading a decoder takes seconds).
enum Loaded {
    Classifier(Box<Trainer>),
    Decoder(Box<LmTrainer>),
}

/// The last loaded run and its folder.
type Cache = Mutex<Option<(PathBuf, Arc<Loaded>)>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(None))
}

fn load(run_dir: &Path) -> Result<Arc<Loaded>> {
    let mut guard = cache()
        .lock()
        .map_err(|_| anyhow::anyhow!("model cache poisoned"))?;
    if let Some((dir, loaded)) = guard.as_ref() {
        if dir == run_dir {
            return Ok(loaded.clone());
        }
    }
    let loaded = Arc::new(if is_lm_run(run_dir) {
        Loaded::Decoder(Box::new(LmTrainer::open_trained(run_dir)?))
    } else {
        Loaded::Classifier(Box::new(Trainer::open_trained(run_dir)?))
    });
    *guard = Some((run_dir.to_path_buf(), loaded.clone()));
    Ok(loaded)
}

/// Runs one request: the completion of a prompt, or a label with every class probability.
pub fn run_request(req: &TryRequest) -> Result<String> {
    if req.input.trim().is_empty() {
        anyhow::bail!("type a prompt or a sentence first");
    }
    match &*load(&req.run_dir)? {
        Loaded::Decoder(t) => {
            let shape = t.teacher.decoder.shape();
            let spec = match &req.subnet {
                Some(s) => crate::cli::forward::resolve_spec(Some(s), &shape)?,
                None => t
                    .report_subnets()
                    .first()
                    .map(|(_, s)| s.clone())
                    .context("no subnet")?,
            };
            let tok = &t.teacher.tokenizer;
            let ids = tok.encode(&req.input, false, usize::MAX)?;
            let eos = t.teacher.decoder.config.eos_token_id;
            let new = greedy(t.net(), &spec, &ids, req.max_new_tokens.max(1), eos)?;
            tok.inner()
                .decode(&new, true)
                .map_err(|e| anyhow::anyhow!("cannot decode the completion: {e}"))
        }
        Loaded::Classifier(t) => {
            let spec = crate::cli::forward::resolve_spec(req.subnet.as_deref(), &t.space.teacher)?;
            let batch = t
                .tokenizer
                .encode_batch(std::slice::from_ref(&req.input), t.config.max_seq_len)?;
            let (ids, mask) = crate::cli::forward::batch_tensors(&batch)?;
            let logits = t.net.forward(&ids, &mask, &spec, None)?.logits;
            let probs = candle_nn::ops::softmax_last_dim(&logits)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            let mut ranked: Vec<(usize, f32)> = probs.iter().copied().enumerate().collect();
            ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
            let names = &t.data.labels.names;
            let lines: Vec<String> = ranked
                .iter()
                .map(|&(i, p)| format!("{}: {:.3}", names.get(i).map_or("?", |s| s.as_str()), p))
                .collect();
            Ok(format!(
                "label: {}\n{}",
                names.get(ranked[0].0).map_or("?", |s| s.as_str()),
                lines.join("\n")
            ))
        }
    }
}

impl TryIt {
    /// Starts a request on its own thread.
    pub fn start(&mut self, req: TryRequest, wake: Option<Arc<dyn Fn() + Send + Sync>>) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let result = std::panic::catch_unwind(|| run_request(&req))
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the model crashed on this input")));
            let _ = tx.send(result.map_err(|e| format!("{e:#}")));
            if let Some(w) = wake {
                w();
            }
        });
        self.busy = true;
        self.rx = Some(rx);
    }

    /// Takes a finished result, if any (never blocks).
    pub fn poll(&mut self) {
        if let Some(rx) = &self.rx {
            if let Ok(r) = rx.try_recv() {
                self.output = Some(r);
                self.busy = false;
                self.rx = None;
            }
        }
    }
}

/// The subnet the box runs: the Pareto/decoder-table selection, else the run's default.
fn chosen_subnet(app: &StudioApp) -> Option<String> {
    app.selection.clone()
}

/// Draws the tab.
pub fn show(ui: &mut Ui, app: &mut StudioApp) -> Option<UiCommand> {
    app.try_it.poll();
    let decoder = app.config.is_lm() || !app.run.val_loss.is_empty();
    let Some(run_dir) = app.run.run_dir.clone() else {
        ui.weak("Train a run (or open one with “Open run…”) to try its subnets here.");
        return None;
    };
    let subnet = chosen_subnet(app);
    ui.label(format!(
        "Run {} · subnet {}",
        run_dir.display(),
        subnet.clone().unwrap_or_else(|| {
            if decoder {
                "the run's student".into()
            } else {
                "the maxnet (select one in Pareto)".into()
            }
        })
    ));
    let prompt_label = if decoder { "Prompt" } else { "Sentence" };
    let l = ui.label(prompt_label);
    ui.add(
        egui::TextEdit::multiline(&mut app.try_it.input)
            .code_editor()
            .desired_rows(if decoder { 6 } else { 2 })
            .desired_width(f32::INFINITY)
            .hint_text(if decoder {
                "def fibonacci(n):"
            } else {
                "The battery lasts all day."
            }),
    )
    .labelled_by(l.id);
    ui.horizontal(|ui| {
        if decoder {
            let l = ui.label("Max new tokens");
            ui.add(egui::DragValue::new(&mut app.try_it.max_new_tokens).range(1..=512))
                .labelled_by(l.id)
                .on_hover_text("Greedy decoding stops here or at the end-of-text token");
        }
        let label = if decoder { "Complete" } else { "Classify" };
        if ui
            .add_enabled(!app.try_it.busy, egui::Button::new(label))
            .on_hover_text("Runs on its own thread; the window stays responsive")
            .clicked()
        {
            let req = TryRequest {
                run_dir: run_dir.clone(),
                subnet: subnet.clone(),
                input: app.try_it.input.clone(),
                max_new_tokens: app.try_it.max_new_tokens,
            };
            app.try_it.start(req, app.wake.clone());
        }
        if app.try_it.busy {
            ui.spinner();
            ui.weak("loading the run and running the subnet…");
        }
    });
    match &app.try_it.output {
        Some(Ok(text)) => {
            ui.separator();
            if decoder {
                ui.label(RichText::new(format!("{}{}", app.try_it.input, text)).monospace());
            } else {
                ui.label(RichText::new(text).monospace());
            }
        }
        Some(Err(e)) => {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
        None => {}
    }
    None
}
