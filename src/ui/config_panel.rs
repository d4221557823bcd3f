//! Left panel: teacher, data, stages, adapters, scaling, distillation, sampler, space, palette.

use super::commands::UiCommand;
use super::device_picker;
use super::dialogs::DialogPurpose;
use super::validation::TeacherSummary;
use crate::train::config::{Budget, ProjectionKind, RunConfig};
use egui::{DragValue, RichText, Ui};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What the panel edits and shows, borrowed from the window's state for one frame.
pub struct ConfigForm<'a> {
    /// The configuration being edited.
    pub config: &'a mut RunConfig,
    /// Editable text of the search-space lists (depths, heads, ffn, hidden).
    pub space_text: &'a mut [String; 4],
    /// Editable decoder students, one subnet spec per line.
    pub students_text: &'a mut String,
    /// Invalid fields and why, from the last validation.
    pub errors: &'a BTreeMap<String, String>,
    /// The teacher's summary, or why it could not be read.
    pub teacher: &'a Result<TeacherSummary, String>,
    /// The presets offered in the menu.
    pub presets: &'a [PathBuf],
    /// The preset the configuration came from, if any.
    pub preset_path: Option<&'a Path>,
    /// The settings were edited since that preset was loaded or saved.
    pub preset_modified: bool,
    /// Scroll to (and open) the stages' settings this frame, then clear it.
    pub reveal_stages: &'a mut bool,
    /// The GPUs ticked for a data-parallel run (two or more: one process each).
    pub parallel_gpus: &'a mut Vec<usize>,
    /// The GPUs offered (this machine's, or a test's).
    pub gpus: &'a [crate::model::device::GpuInfo],
}

/// What one frame of the panel did.
#[derive(Debug, Default)]
pub struct ConfigEdit {
    /// A command a button asked for.
    pub command: Option<UiCommand>,
    /// A field changed: the window validates the configuration again.
    pub changed: bool,
}

/// A labelled number field with its tooltip and, when invalid, the reason under it.
fn number<T: egui::emath::Numeric>(
    ui: &mut Ui,
    errors: &std::collections::BTreeMap<String, String>,
    field: &str,
    label: &str,
    value: &mut T,
    speed: f64,
    tooltip: &str,
) -> bool {
    let error = errors.get(field);
    let mut changed = false;
    ui.horizontal(|ui| {
        let text = if error.is_some() {
            RichText::new(label).color(ui.visuals().error_fg_color)
        } else {
            RichText::new(label)
        };
        let l = ui.label(text).on_hover_text(tooltip);
        changed = ui
            .add(if T::INTEGRAL {
                DragValue::new(value).speed(speed)
            } else {
                // Small weights such as β = 1e-5 must not read as 0.
                DragValue::new(value).speed(speed).max_decimals(6)
            })
            .labelled_by(l.id)
            .on_hover_text(tooltip)
            .changed();
    });
    if let Some(e) = error {
        ui.label(RichText::new(e).small().color(ui.visuals().error_fg_color));
    }
    changed
}

/// A labelled path with a "…" button opening a file dialog.
fn path_row(
    ui: &mut Ui,
    errors: &BTreeMap<String, String>,
    field: &str,
    label: &str,
    path: &std::path::Path,
    purpose: DialogPurpose,
    tooltip: &str,
) -> Option<UiCommand> {
    let mut cmd = None;
    let error = errors.get(field);
    ui.horizontal(|ui| {
        let text = if error.is_some() {
            RichText::new(label).color(ui.visuals().error_fg_color)
        } else {
            RichText::new(label)
        };
        ui.label(text).on_hover_text(tooltip);
        if ui
            .small_button("…")
            .on_hover_text(format!("Choose {label}"))
            .clicked()
        {
            cmd = Some(UiCommand::Open(purpose));
        }
        ui.label(
            RichText::new(path.display().to_string())
                .monospace()
                .small(),
        )
        .on_hover_text(tooltip);
    });
    if let Some(e) = error {
        ui.label(RichText::new(e).small().color(ui.visuals().error_fg_color));
    }
    cmd
}

/// Draws the configuration panel; says which command a button asked for and whether a field changed.
pub fn show(ui: &mut Ui, form: &mut ConfigForm<'_>) -> ConfigEdit {
    let mut cmd = None;
    let mut changed = false;
    ui.horizontal(|ui| {
        let preset_label = ui.label("Preset");
        let current = form
            .preset_path
            .and_then(|p| p.file_stem())
            .map_or("(unsaved)".to_string(), |s| s.to_string_lossy().into());
        let current = if form.preset_modified {
            format!("{current} (modified)")
        } else {
            current
        };
        egui::ComboBox::from_id_salt("preset-menu")
            .selected_text(current)
            .show_ui(ui, |ui| {
                for p in form.presets {
                    let name = p
                        .file_stem()
                        .map(|s| s.to_string_lossy().to_string())
                        .unwrap_or_default();
                    if ui
                        .selectable_label(form.preset_path == Some(p.as_path()), name)
                        .clicked()
                    {
                        cmd = Some(UiCommand::LoadPreset(p.clone()));
                    }
                }
            })
            .response
            .labelled_by(preset_label.id)
            .on_hover_text(if form.preset_modified {
                "Edited since the preset was loaded: Save preset as… keeps the edits; another preset asks first"
            } else {
                "Presets shipped in presets/"
            });
    });
    ui.horizontal(|ui| {
        if ui
            .button("Open preset…")
            .on_hover_text("Load a run configuration (RON)")
            .clicked()
        {
            cmd = Some(UiCommand::Open(DialogPurpose::OpenPreset));
        }
        if ui
            .button("Save preset as…")
            .on_hover_text("Write this configuration as RON")
            .clicked()
        {
            cmd = Some(UiCommand::Open(DialogPurpose::SavePreset));
        }
    });
    ui.separator();
    egui::ScrollArea::vertical().auto_shrink([false, false]).show(ui, |ui| {
        let errors = form.errors.clone();
        egui::CollapsingHeader::new("Teacher and data").default_open(true).show(ui, |ui| {
            if let Some(c) = path_row(ui, &errors, "teacher", "Teacher", &form.config.teacher.clone(), DialogPurpose::TeacherFolder, "Hugging Face BERT or Llama folder (config.json, model.safetensors, tokenizer.json), or a Llama GGUF file. Its weights stay frozen.") {
                cmd = Some(c);
            }
            if ui
                .small_button("GGUF file…")
                .on_hover_text("Choose a Llama-family GGUF teacher (e.g. SmolLM2 from scripts/fetch-smollm2.sh)")
                .clicked()
            {
                cmd = Some(UiCommand::Open(DialogPurpose::TeacherFile));
            }
            if let Ok(t) = form.teacher {
                ui.label(RichText::new(t.describe()).small());
            }
            let d = form.config.data.clone();
            let rows = [
                ("data.train", "Train", &d.train, DialogPurpose::TrainFile),
                ("data.dev", "Dev", &d.dev, DialogPurpose::DevFile),
                ("data.test", "Test", &d.test, DialogPurpose::TestFile),
            ];
            // Decoder runs have no test split: training and validation text only.
            let shown = if form.config.is_decoder() { &rows[..2] } else { &rows[..] };
            let tip = if form.config.is_decoder() {
                "JSONL with a text field, or a folder of text files (cut into blocks of the sequence length)"
            } else {
                "JSONL with text and label fields, or CSV/TSV with a header"
            };
            for &(field, label, path, purpose) in shown {
                if let Some(c) = path_row(ui, &errors, field, label, path, purpose, tip) {
                    cmd = Some(c);
                }
            }
        });
        if form.config.lm.is_some() {
            egui::CollapsingHeader::new("Decoder").default_open(true).show(ui, |ui| {
                changed |= decoder_section(ui, form, &errors);
            });
        }
        let reveal = std::mem::take(form.reveal_stages);
        let stages = egui::CollapsingHeader::new("Stages").default_open(true).open(reveal.then_some(true)).show(ui, |ui| {
            let tips = [
                "Stage 0: plain LoRA on the full teacher with (A_0, B_0); task loss only. Produces the maxnet.",
                "Stage 1: trains (A_1, B_1) while sampling subnets of different width (heads, FFN, hidden) at full depth.",
                "Stage 2: trains (A_2, B_2) while sampling width and depth.",
            ];
            for (i, tip) in tips.iter().enumerate() {
                let stage = &mut form.config.stages[i];
                ui.horizontal(|ui| {
                    changed |= ui.checkbox(&mut stage.enabled, format!("Stage {i}")).on_hover_text(*tip).changed();
                    let (mut n, mut epochs) = match stage.budget {
                        Budget::Epochs(n) => (n, true),
                        Budget::Steps(n) => (n, false),
                    };
                    let l = ui.label("budget");
                    changed |= ui.add(DragValue::new(&mut n).range(0..=1_000_000)).labelled_by(l.id).on_hover_text("How long this stage trains").changed();
                    egui::ComboBox::from_id_salt(format!("budget-kind-{i}")).width(70.0).selected_text(if epochs { "epochs" } else { "steps" }).show_ui(ui, |ui| {
                        changed |= ui.selectable_value(&mut epochs, true, "epochs").changed();
                        changed |= ui.selectable_value(&mut epochs, false, "steps").changed();
                    }).response.labelled_by(l.id).on_hover_text("Budget in epochs or optimizer steps");
                    stage.budget = if epochs { Budget::Epochs(n) } else { Budget::Steps(n) };
                });
                let lr = &mut form.config.stages[i].learning_rate;
                changed |= number(ui, &errors, &format!("stages[{i}].learning_rate"), &format!("Stage {i} learning rate"), lr, 1e-5, "Peak learning rate of this stage (linear warm-up, then linear decay)");
                if let Some(e) = errors.get(&format!("stages[{i}].budget")) {
                    ui.label(RichText::new(e).small().color(ui.visuals().error_fg_color));
                }
            }
            if let Some(e) = errors.get("stages") {
                ui.label(RichText::new(e).small().color(ui.visuals().error_fg_color));
            }
        });
        if reveal {
            stages.header_response.scroll_to_me(Some(egui::Align::TOP));
        }
        egui::CollapsingHeader::new("Adapters").default_open(true).show(ui, |ui| {
            changed |= number(ui, &errors, "rank", "Rank r", &mut form.config.rank, 0.2, "Rank of every stage's adapter pair (A_s in R^{r×d_in}, B_s in R^{d_out×r}); the paper finds r = 8 best for small and medium subnets");
            changed |= number(ui, &errors, "lora_alpha", "LoRA alpha", &mut form.config.lora_alpha, 0.5, "Adapter scale is lora_alpha / r");
        });
        egui::CollapsingHeader::new("Gradient scaling").default_open(true).show(ui, |ui| {
            let mut on = form.config.gamma > 0.0;
            if ui.checkbox(&mut on, "Scale gradients").on_hover_text("Weight each subnet's loss by (n_1/n_j)^γ so small subnets converge faster").changed() {
                form.config.gamma = if on { 0.5 } else { 0.0 };
                changed = true;
            }
            changed |= number(ui, &errors, "gamma", "γ", &mut form.config.gamma, 0.01, "γ: exponent of the gradient-scaling weight (n_1/n_j)^γ; 0 turns scaling off");
        });
        egui::CollapsingHeader::new("Distillation").default_open(true).show(ui, |ui| {
            let d = &mut form.config.distill;
            changed |= number(ui, &errors, "distill.alpha", "α", &mut d.alpha, 0.01, "α: weight of distillation from the maxnet against the task loss: (1−α)·task + α·(KD + Σβ·feature)");
            changed |= number(ui, &errors, "distill.beta", "β", &mut d.beta, 0.01, "β: weight of each layer's feature MSE through the projection P^m");
            changed |= number(ui, &errors, "distill.temperature", "T", &mut d.temperature, 0.05, "Softmax temperature of the logit KL (scaled by T^2)");
            changed |= number(ui, &errors, "distill.projection_dim", "Projection k", &mut d.projection_dim, 1.0, "Width k of the maxnet's feature projections P^m in R^{d×k}");
            ui.horizontal(|ui| {
                let tip = "How P is kept from collapsing: unit-norm columns (learnt), identity (plain MSE), or fixed random orthonormal";
                let l = ui.label("P").on_hover_text(tip);
                egui::ComboBox::from_id_salt("projection-kind").selected_text(format!("{:?}", d.projection)).show_ui(ui, |ui| {
                    for k in [ProjectionKind::UnitNorm, ProjectionKind::Identity, ProjectionKind::Fixed] {
                        changed |= ui.selectable_value(&mut d.projection, k, format!("{k:?}")).changed();
                    }
                }).response.labelled_by(l.id).on_hover_text(tip);
            });
        });
        egui::CollapsingHeader::new("Sampler and search space").default_open(true).show(ui, |ui| {
            changed |= number(ui, &errors, "random_subnets", "Random subnets", &mut form.config.random_subnets, 0.1, "Subnets drawn at random each step after the maxnet and the minnet (sandwich rule)");
            let labels = [
                ("space.depths", "Depth choices", "Numbers of kept layers (evenly spaced by the rule below); empty = teacher default"),
                ("space.heads", "Heads choices", "Attention heads kept per layer (the first h); empty = teacher default"),
                ("space.ffn", "FFN choices", "FFN neurons kept per layer (the first f); empty = teacher default"),
                ("space.hidden", "Hidden choices", "Hidden widths (multiples of the head size); empty = the teacher's"),
            ];
            let defaults = match form.teacher {
                Ok(t) => crate::mlfs::space::SearchSpace::new(t.shape(), &Default::default()).ok(),
                Err(_) => None,
            };
            let join = |v: &[usize]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ");
            let hints: [String; 4] = match &defaults {
                Some(s) => [join(&s.depths), join(&s.heads), join(&s.ffn), join(&s.hidden)],
                None => Default::default(),
            };
            for (i, (field, label, tip)) in labels.iter().enumerate() {
                let error = errors.get(*field);
                ui.horizontal(|ui| {
                    let text = if error.is_some() { RichText::new(*label).color(ui.visuals().error_fg_color) } else { RichText::new(*label) };
                    let l = ui.label(text).on_hover_text(*tip);
                    if ui.add(egui::TextEdit::singleline(&mut form.space_text[i]).desired_width(140.0).hint_text(format!("default: {}", hints[i]))).labelled_by(l.id).on_hover_text(*tip).changed() {
                        changed = true;
                    }
                });
                if let Some(e) = error {
                    ui.label(RichText::new(e).small().color(ui.visuals().error_fg_color));
                }
            }
            ui.horizontal(|ui| {
                use crate::mlfs::config::LayerRule;
                let name = |r: LayerRule| match r {
                    LayerRule::LastKept => "evenly spaced, last kept",
                    LayerRule::FirstAndLast => "first and last kept",
                };
                let tip = "Which teacher layers a depth keeps. Evenly spaced with the last always kept (DynaBERT's rule, the encoders' default), or evenly spaced from the first layer to the last with both kept (language models lose most when either goes)";
                let l = ui.label("Kept layers").on_hover_text(tip);
                let rule = &mut form.config.space.layers;
                let before = *rule;
                egui::ComboBox::from_id_salt("layer-rule")
                    .selected_text(name(*rule))
                    .show_ui(ui, |ui| {
                        for r in [LayerRule::LastKept, LayerRule::FirstAndLast] {
                            ui.selectable_value(rule, r, name(r));
                        }
                    })
                    .response
                    .labelled_by(l.id)
                    .on_hover_text(tip);
                changed |= *rule != before;
            });
            ui.horizontal(|ui| {
                use crate::mlfs::config::WidthMode;
                let name = |m: WidthMode| match m {
                    WidthMode::Uniform => "Uniform",
                    WidthMode::PerLayer => "Per layer",
                };
                let tip = "Uniform: a random subnet keeps one head count and one FFN width in all its layers (the paper's space). Per layer: each kept layer draws its own heads and FFN width from the choices; the maxnet and minnet stay uniform";
                let l = ui.label("Widths").on_hover_text(tip);
                let mode = &mut form.config.space.widths;
                let before = *mode;
                egui::ComboBox::from_id_salt("width-mode")
                    .selected_text(name(*mode))
                    .show_ui(ui, |ui| {
                        for m in [WidthMode::Uniform, WidthMode::PerLayer] {
                            ui.selectable_value(mode, m, name(m));
                        }
                    })
                    .response
                    .labelled_by(l.id)
                    .on_hover_text(tip);
                changed |= *mode != before;
            });
        });
        egui::CollapsingHeader::new("Batches").default_open(true).show(ui, |ui| {
            changed |= number(ui, &errors, "batch_size", "Batch size", &mut form.config.batch_size, 1.0, "Examples per optimizer step (padded per batch)");
            changed |= number(ui, &errors, "max_seq_len", "Sequence length", &mut form.config.max_seq_len, 1.0, "Texts are truncated to this many tokens");
            changed |= number(ui, &errors, "seed", "Seed", &mut form.config.seed, 1.0, "Seeds adapters, data order and the sampler: same seed, same run");
            ui.horizontal(|ui| {
                changed |= ui.checkbox(&mut form.config.rewire, "Rewire before stage 1").on_hover_text("Order heads (decoders: whole KV groups) and FFN neurons by |gradient × activation| so front slicing keeps the important ones").changed();
            });
        });
        egui::CollapsingHeader::new("Watchdog").default_open(false).show(ui, |ui| {
            let w = &mut form.config.watchdog;
            changed |= ui.checkbox(&mut w.enabled, "Stop on divergence").on_hover_text("Stop at a NaN or infinite loss or gradient norm, before anything is saved; the run resumes from its last good checkpoint").changed();
            changed |= number(ui, &errors, "watchdog.spike_factor", "Spike factor", &mut w.spike_factor, 0.5, "The loss exploded when it exceeds this multiple of its running level (warning from half of it; 0 turns it off)");
            changed |= ui.checkbox(&mut w.stop_on_spike, "Stop when the loss explodes").on_hover_text("Otherwise an exploded loss is only a warning in the log").changed();
        });
        egui::CollapsingHeader::new("Compute").default_open(true).show(ui, |ui| {
            changed |= device_picker::show(
                ui,
                form.config,
                form.gpus,
                form.parallel_gpus,
                errors.get("precision"),
            );
        });
        egui::CollapsingHeader::new("Palette").default_open(false).show(ui, |ui| {
            changed |= ui.checkbox(&mut form.config.palette.evaluate_at_end, "Measure at the end").on_hover_text("Measure accuracy, size and latency of every subnet when training ends").changed();
            changed |= number(ui, &errors, "palette.latency_seq_len", "Latency length", &mut form.config.palette.latency_seq_len, 1.0, "Tokens of the batch-1 latency probe");
            changed |= number(ui, &errors, "palette.latency_runs", "Latency runs", &mut form.config.palette.latency_runs, 1.0, "Timed runs per subnet after warm-up (median and p90 reported)");
        });
    });
    ConfigEdit {
        command: cmd,
        changed,
    }
}

/// Decoder settings: what trains, where it starts, the students and the validation size.
fn decoder_section(
    ui: &mut Ui,
    form: &mut ConfigForm<'_>,
    errors: &BTreeMap<String, String>,
) -> bool {
    use crate::model::llama::student::StudentInit;
    let mut changed = false;
    let Some(lm) = form.config.lm.as_mut() else {
        return false;
    };
    changed |= ui
        .checkbox(&mut lm.train_base_weights, "Train base weights")
        .on_hover_text("Full fine-tuning of the students' weights instead of MLFS adapters on the frozen slice (converges faster at small budgets)")
        .changed();
    ui.horizontal(|ui| {
        let l = ui.label("Start from").on_hover_text(
            "The teacher's slice, or random weights of the same shape (needs base-weight training)",
        );
        egui::ComboBox::from_id_salt("student-init")
            .selected_text(match lm.init {
                StudentInit::Sliced => "teacher slice",
                StudentInit::Random => "random init",
            })
            .show_ui(ui, |ui| {
                changed |= ui
                    .selectable_value(&mut lm.init, StudentInit::Sliced, "teacher slice")
                    .changed();
                changed |= ui
                    .selectable_value(&mut lm.init, StudentInit::Random, "random init")
                    .changed();
            })
            .response
            .labelled_by(l.id);
    });
    if let Some(e) = errors.get("lm.init") {
        ui.label(RichText::new(e).small().color(ui.visuals().error_fg_color));
    }
    let l = ui.label("Students (one spec per line; empty = sample the space)");
    changed |= ui
        .add(
            egui::TextEdit::multiline(&mut *form.students_text)
                .desired_rows(2)
                .desired_width(f32::INFINITY)
                .code_editor(),
        )
        .labelled_by(l.id)
        .on_hover_text("e.g. layers=0,2,3,…;heads=9;ffn=1536 — trained every step and reported")
        .changed();
    if let Some(e) = errors.get("lm.students") {
        ui.label(RichText::new(e).small().color(ui.visuals().error_fg_color));
    }
    if let Some(lm) = form.config.lm.as_mut() {
        changed |= number(
            ui,
            errors,
            "lm.eval_blocks",
            "Validation blocks",
            &mut lm.eval_blocks,
            1.0,
            "Blocks of the validation split scored at each evaluation",
        );
    }
    changed
}
