//! "Try it": the selected subnet of a run on the user's own input, computed off the UI thread.
//! A decoder completes a prompt greedily; a classifier labels a sentence with probabilities.

use super::jobs::{Job, Jobs};
use crate::model::llama::generate::greedy;
use crate::model::packing::TokenLayout;
use crate::model::subnet::resolve_spec;
use crate::model::tokenizer::ids_tensor;
use crate::train::kind::AnyRun;
use crate::train::run::Placement;
use anyhow::Result;
use egui::{RichText, Ui};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// State of the box: the user's input, the last answer and the request in flight.
pub struct TryIt {
    /// The prompt (decoder) or sentence (classifier) typed by the user.
    pub input: String,
    /// Greedy decoding's token limit.
    pub max_new_tokens: usize,
    /// The last answer: the completion or the label lines, or why it failed.
    pub output: Option<Result<String, String>>,
    job: Option<Job<String>>,
}

impl Default for TryIt {
    fn default() -> Self {
        Self {
            input: String::new(),
            max_new_tokens: 32,
            output: None,
            job: None,
        }
    }
}

/// A request: plain data for the worker thread.
#[derive(Debug, Clone)]
pub struct TryRequest {
    /// The trained run's folder.
    pub run_dir: PathBuf,
    /// Subnet spec; `None` means the run's default (a decoder run's student, the maxnet).
    pub subnet: Option<String>,
    /// The prompt or sentence.
    pub input: String,
    /// Greedy decoding's token limit (decoders only).
    pub max_new_tokens: usize,
}

/// The last loaded run (kept between tries: loading a decoder takes seconds) and its folder.
type Cache = Mutex<Option<(PathBuf, Arc<AnyRun>)>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(None))
}

fn load(run_dir: &Path) -> Result<Arc<AnyRun>> {
    let mut guard = cache()
        .lock()
        .map_err(|_| anyhow::anyhow!("model cache poisoned"))?;
    if let Some((dir, loaded)) = guard.as_ref() {
        if dir == run_dir {
            return Ok(loaded.clone());
        }
    }
    let loaded = Arc::new(AnyRun::open_trained(run_dir, Placement::default())?);
    *guard = Some((run_dir.to_path_buf(), loaded.clone()));
    Ok(loaded)
}

/// Runs one request: the completion of a prompt, or a label with every class probability.
pub fn run_request(req: &TryRequest) -> Result<String> {
    if req.input.trim().is_empty() {
        anyhow::bail!("type a prompt or a sentence first");
    }
    match &*load(&req.run_dir)? {
        AnyRun::Decoder(run) => {
            let t = &run.task;
            let spec = t.subnet_or_student(req.subnet.as_deref())?;
            let tok = &t.net.teacher.tokenizer;
            let ids = tok.encode(&req.input, false, usize::MAX)?;
            let eos = t.net.teacher.decoder.config.eos_token_id;
            let new = greedy(t.net.net(), &spec, &ids, req.max_new_tokens.max(1), eos)?;
            tok.inner()
                .decode(&new, true)
                .map_err(|e| anyhow::anyhow!("cannot decode the completion: {e}"))
        }
        AnyRun::Classifier(run) => {
            let t = &run.task;
            let spec = resolve_spec(req.subnet.as_deref(), &t.space.teacher)?;
            let batch = t
                .tokenizer
                .encode_batch(std::slice::from_ref(&req.input), run.config.max_seq_len)?;
            let device = t.net.encoder.device();
            let ids = ids_tensor(&batch, device)?;
            let layout = TokenLayout::of_batch(&batch, device)?;
            let logits = t.net.forward(&ids, &layout, &spec, None)?.logits;
            let probs = candle_nn::ops::softmax_last_dim(&logits)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            let mut ranked: Vec<(usize, f32)> = probs.iter().copied().enumerate().collect();
            ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
            let names = t.data.labels.display_names();
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
    /// Starts a request as a background job (a crash in the model comes back as an error).
    pub fn start(&mut self, req: TryRequest, jobs: &Jobs) {
        self.job = Some(jobs.spawn("try it", move || run_request(&req)));
    }

    /// True while a request is running.
    pub fn is_busy(&self) -> bool {
        self.job.as_ref().is_some_and(Job::is_running)
    }

    /// Takes a finished result, if any (never blocks).
    pub fn poll(&mut self) {
        if let Some(result) = self.job.as_mut().and_then(Job::try_take) {
            self.output = Some(result.map_err(|e| format!("{e:#}")));
            self.job = None;
        }
    }

    /// Draws the tab for the run in `run_dir` and the selected `subnet` (else the run's
    /// default); `decoder` picks a prompt box and a completion over a sentence and a label.
    #[allow(clippy::too_many_arguments)]
    pub fn ui(
        &mut self,
        ui: &mut Ui,
        run_dir: Option<&Path>,
        subnet: Option<&str>,
        choices: &[String],
        decoder: bool,
        jobs: &Jobs,
    ) -> Option<super::commands::UiCommand> {
        self.poll();
        let Some(run_dir) = run_dir else {
            ui.weak("Train a run (or open one with “Open run…”) to try its subnets here.");
            return None;
        };
        let mut cmd = None;
        ui.label(format!(
            "Run {} · subnet {}",
            run_dir.display(),
            match subnet {
                Some(s) => s,
                None if decoder => "the run's student",
                None => "the maxnet (select one in Pareto)",
            }
        ));
        if !choices.is_empty() {
            // Any measured subnet, without going back to the Pareto tab.
            ui.horizontal(|ui| {
                let l = ui.label("Subnet");
                egui::ComboBox::from_id_salt("try-subnet")
                    .selected_text(subnet.unwrap_or("(default)"))
                    .width(ui.available_width().min(520.0))
                    .show_ui(ui, |ui| {
                        for spec in choices {
                            if ui
                                .selectable_label(subnet == Some(spec.as_str()), spec)
                                .clicked()
                            {
                                cmd = Some(super::commands::UiCommand::Select(Some(spec.clone())));
                            }
                        }
                    })
                    .response
                    .labelled_by(l.id)
                    .on_hover_text(
                        "The measured subnet to try (the same selection as the Pareto tab's)",
                    );
            });
        }
        let prompt_label = if decoder { "Prompt" } else { "Sentence" };
        let l = ui.label(prompt_label);
        // A sentence is one line (Enter classifies it); a prompt is code (Enter is a newline).
        let field = if decoder {
            egui::TextEdit::multiline(&mut self.input)
                .code_editor()
                .desired_rows(6)
                .hint_text("def fibonacci(n):")
        } else {
            egui::TextEdit::singleline(&mut self.input).hint_text("The battery lasts all day.")
        };
        let field = ui.add(field.desired_width(f32::INFINITY)).labelled_by(l.id);
        if field.changed() {
            // The result belongs to the text it was computed for.
            self.output = None;
        }
        let entered =
            !decoder && field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        ui.horizontal(|ui| {
            if decoder {
                let l = ui.label("Max new tokens");
                ui.add(egui::DragValue::new(&mut self.max_new_tokens).range(1..=512))
                    .labelled_by(l.id)
                    .on_hover_text("Greedy decoding stops here or at the end-of-text token");
            }
            let label = if decoder { "Complete" } else { "Classify" };
            let busy = self.is_busy();
            let clicked = ui
                .add_enabled(!busy, egui::Button::new(label))
                .on_hover_text("Runs on its own thread; the window stays responsive")
                .clicked();
            if clicked || (entered && !busy) {
                let req = TryRequest {
                    run_dir: run_dir.to_path_buf(),
                    subnet: subnet.map(String::from),
                    input: self.input.clone(),
                    max_new_tokens: self.max_new_tokens,
                };
                self.start(req, jobs);
            }
            if self.is_busy() {
                ui.spinner();
                ui.weak("loading the run and running the subnet…");
            }
        });
        match &self.output {
            Some(Ok(text)) => {
                ui.separator();
                let shown = match decoder {
                    true => format!("{}{}", self.input, text),
                    false => text.clone(),
                };
                ui.label(RichText::new(drawable(ui, &shown)).monospace());
            }
            Some(Err(e)) => {
                ui.colored_label(ui.visuals().error_fg_color, e);
            }
            None => {}
        }
        cmd
    }
}

/// `text` with every character the monospace fonts cannot draw shown as `?`: a barely trained
/// decoder can emit partial UTF-8 sequences (decoded as U+FFFD), which the fonts lack.
fn drawable(ui: &Ui, text: &str) -> String {
    let font = egui::FontId::monospace(egui::TextStyle::Monospace.resolve(ui.style()).size);
    ui.ctx().fonts_mut(|fonts| {
        if fonts.has_glyphs(&font, text) {
            return text.to_string();
        }
        text.chars()
            .map(|c| {
                if c.is_control() || fonts.has_glyph(&font, c) {
                    c
                } else {
                    '?'
                }
            })
            .collect()
    })
}
