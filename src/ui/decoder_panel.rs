//! Decoder runs' results: each measured subnet's size, validation metrics and latency, the
//! selection for "Try it" and export, and the export itself (HF folder or GGUF).

use super::commands::UiCommand;
use super::export_state::{self, ExportState};
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
    /// Draws the panel (in place of the Pareto charts for decoder runs); returns a command.
    pub fn ui(
        &mut self,
        ui: &mut Ui,
        run: &RunView,
        selection: Option<&str>,
        export: &ExportState,
    ) -> Option<UiCommand> {
        let mut cmd = None;
        ui.horizontal(|ui| {
            let hover = "Validation loss, perplexity, top-1, prefill time and tokens/s of the teacher and the run's subnets";
            cmd = run_actions::measure_button(ui, run, "Re-measure", hover);
            if run.status == RunStatus::MeasuringPalette {
                ui.spinner();
            }
        });
        if run.decoder_entries.is_empty() {
            ui.weak(
                "Measurements appear here when the run ends (teacher first, then each subnet).",
            );
        } else if let Some(c) = table(ui, run, selection) {
            cmd = Some(c);
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

/// The measured subnets, one row each; clicking a role selects (or clears) its subnet.
fn table(ui: &mut Ui, run: &RunView, selection: Option<&str>) -> Option<UiCommand> {
    let mut cmd = None;
    egui::Grid::new("decoder-subnets")
        .striped(true)
        .num_columns(10)
        .show(ui, |ui| {
            for h in [
                "Subnet",
                "Layers",
                "Heads (KV)",
                "FFN",
                "Params",
                "Size",
                "Val loss",
                "Perplexity",
                "Top-1",
                "Prefill",
                "Decode",
            ] {
                ui.label(RichText::new(h).strong());
            }
            ui.end_row();
            for e in &run.decoder_entries {
                let selected = selection == Some(e.subnet.as_str());
                if ui
                    .selectable_label(selected, &e.role)
                    .on_hover_text(&e.subnet)
                    .clicked()
                {
                    cmd = Some(UiCommand::Select((!selected).then(|| e.subnet.clone())));
                }
                ui.label(e.layers.to_string());
                ui.label(format!("{} ({})", e.heads, e.kv_heads));
                ui.label(e.ffn.to_string());
                ui.label(format!("{:.1} M", e.params_total as f64 / 1e6));
                ui.label(format!("{:.0} MB", e.size_bytes as f64 / 1e6));
                ui.label(format!("{:.3}", e.val_loss));
                ui.label(format!("{:.1}", e.perplexity));
                ui.label(format!("{:.3}", e.top1_accuracy));
                ui.label(format!("{:.0} ms", e.prefill_ms));
                ui.label(format!("{:.1} tok/s", e.decode_tokens_per_s));
                ui.end_row();
            }
        });
    cmd
}
