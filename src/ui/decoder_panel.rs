//! Decoder runs' results: the palette's Pareto charts (parameters and prefill latency against
//! validation loss, the teacher as a level line), each measured subnet's size, validation
//! metrics and latency, the selection for "Try it" and export, and the export itself (HF folder
//! or GGUF).

use super::commands::UiCommand;
use super::export_state::{self, ExportState};
use super::palette_view::{PaletteView, ParetoPoint};
use super::pareto_tab::ParetoTab;
use super::run_actions;
use super::run_view::{RunStatus, RunView};
use crate::export::decoder::GgufType;
use crate::export::decoder_subnet::ExportFormat;
use egui::{RichText, Ui};

/// The panel's own settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecoderPanel {
    /// Format of the next decoder export.
    pub format: ExportFormat,
}

impl Default for DecoderPanel {
    /// A Hugging Face folder, the format every tool reads.
    fn default() -> Self {
        Self {
            format: ExportFormat::HfFolder,
        }
    }
}

impl DecoderPanel {
    /// Draws the Pareto tab of a decoder run with `pareto`'s budgets and axes; returns a command.
    pub fn ui(
        &mut self,
        ui: &mut Ui,
        run: &RunView,
        selection: Option<&str>,
        export: &ExportState,
        pareto: &mut ParetoTab,
    ) -> Option<UiCommand> {
        let mut cmd = None;
        ui.horizontal(|ui| {
            let hover = "Measure the subnets not measured yet (a stopped measurement resumes): validation loss before and after training, perplexity, top-1, prefill time and tokens/s";
            cmd = run_actions::measure_button(ui, run, "Measure palette", hover);
            if run.status == RunStatus::MeasuringPalette {
                ui.spinner();
            }
        });
        // The palette's subnets; the teacher is the reference line, not a choice.
        let subnets: Vec<_> = run
            .decoder_entries
            .iter()
            .filter(|e| e.role != "teacher")
            .cloned()
            .collect();
        let teacher = run.decoder_entries.iter().find(|e| e.role == "teacher");
        if run.decoder_entries.is_empty() {
            ui.weak(
                "Measurements appear here when the run ends (teacher first, then each subnet).",
            );
        } else {
            pareto.budget_row(ui, &subnets);
            let view = pareto.view(&subnets);
            if !subnets.is_empty() {
                let reference = teacher.map(|t| ("teacher", t.val_loss));
                if let Some(c) = pareto.charts(ui, &view, selection, &[], reference, true) {
                    cmd = Some(c);
                }
                cmd = super::pareto_tab::save_row(ui).or(cmd);
            }
            if let Some(c) = table(ui, run, &view, selection) {
                cmd = Some(c);
            }
        }
        ui.separator();
        ui.horizontal(|ui| {
            let l = ui.label("Export as");
            egui::ComboBox::from_id_salt("decoder-format")
                .selected_text(format_name(self.format))
                .show_ui(ui, |ui| {
                    for f in [
                        ExportFormat::HfFolder,
                        ExportFormat::Gguf(GgufType::F16),
                        ExportFormat::Gguf(GgufType::F32),
                    ] {
                        ui.selectable_value(&mut self.format, f, format_name(f));
                    }
                })
                .response
                .labelled_by(l.id);
            let can_export = run.run_dir.is_some() && !export.is_running();
            let button = (
                "Export…",
                "Hugging Face folder (LlamaForCausalLM) or a GGUF file llama.cpp reads",
            );
            let unselected = "the run's student (select a row to change)";
            if let Some(c) =
                run_actions::export_button(ui, can_export, button, selection, unselected)
            {
                cmd = Some(c);
            }
        });
        export_state::show(ui, export);
        cmd
    }
}

fn format_name(f: ExportFormat) -> &'static str {
    match f {
        ExportFormat::HfFolder => "Hugging Face folder",
        ExportFormat::Gguf(GgufType::F16) => "GGUF f16",
        ExportFormat::Gguf(GgufType::F32) => "GGUF f32",
    }
}

/// The measured subnets, one row each, fronts marked as on the charts (`view` holds the
/// palette without the teacher); clicking a row's spec selects (or clears) its subnet.
fn table(
    ui: &mut Ui,
    run: &RunView,
    view: &PaletteView<'_, crate::train::protocol::DecoderEntry>,
    selection: Option<&str>,
) -> Option<UiCommand> {
    let mut cmd = None;
    let teacher = view.teacher;
    egui::ScrollArea::both()
        .id_salt("decoder-subnets-scroll")
        .max_height(ui.available_height() - 60.0)
        .show(ui, |ui| {
            egui::Grid::new("decoder-subnets")
                .striped(true)
                .num_columns(15)
                .show(ui, |ui| {
                    for h in [
                        "Shape",
                        "Role",
                        "Layers",
                        "Heads (KV)",
                        "FFN",
                        "Params",
                        "Size",
                        "Val loss",
                        "Untrained",
                        "Perplexity",
                        "Top-1",
                        "Prefill",
                        "Decode",
                        "Fronts",
                        "Subnet",
                    ] {
                        ui.label(RichText::new(h).strong());
                    }
                    ui.end_row();
                    for e in &run.decoder_entries {
                        let selected = selection == Some(e.subnet.as_str());
                        // A short name first (deep subnets' specs are long); the spec ends the row.
                        // Per-layer subnets show their widths layer by layer (`heads 12/6/3`).
                        let spec = e.subnet.parse::<crate::model::SubnetSpec>().ok();
                        let (heads, ffn) = match &spec {
                            Some(s) => (s.heads.short(), s.ffn.short()),
                            None => (e.heads.to_string(), e.ffn.to_string()),
                        };
                        let shape = format!("{} L · {heads} h · FFN {ffn}", e.layers);
                        if ui
                            .selectable_label(selected, shape)
                            .on_hover_ui(|ui| {
                                ui.label(e.metrics_text());
                                if let (Some(spec), Some(teacher)) = (&spec, &teacher) {
                                    super::layer_chart::show(ui, spec, teacher);
                                }
                            })
                            .clicked()
                        {
                            cmd = Some(UiCommand::Select((!selected).then(|| e.subnet.clone())));
                        }
                        ui.label(&e.role);
                        ui.label(e.layers.to_string());
                        ui.label(format!("{} ({})", e.heads, e.kv_heads));
                        ui.label(e.ffn.to_string());
                        ui.label(format!("{:.1} M", e.params_total as f64 / 1e6));
                        ui.label(format!("{:.0} MB", e.size_bytes as f64 / 1e6));
                        ui.label(format!("{:.3}", e.val_loss));
                        ui.label(if e.val_loss_untrained.is_nan() {
                            String::new()
                        } else {
                            format!("{:.3}", e.val_loss_untrained)
                        })
                        .on_hover_text(
                            "Validation loss of the same shape cut from the teacher, untrained",
                        );
                        ui.label(format!("{:.1}", e.perplexity));
                        ui.label(format!("{:.3}", e.top1_accuracy));
                        ui.label(format!("{:.0} ms", e.prefill_ms));
                        ui.label(format!("{:.1} tok/s", e.decode_tokens_per_s));
                        let i = view
                            .entries
                            .iter()
                            .position(|x| x.subnet == e.subnet && x.role == e.role);
                        let on = |front: &[bool]| i.is_some_and(|i| front[i]);
                        ui.label(match (on(&view.size_front), on(&view.latency_front)) {
                            (true, true) => "size, latency",
                            (true, false) => "size",
                            (false, true) => "latency",
                            (false, false) => "",
                        });
                        ui.weak(&e.subnet);
                        ui.end_row();
                    }
                });
        });
    cmd
}
