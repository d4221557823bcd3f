//! Decoder runs' results: the palette's Pareto charts (parameters and prefill latency against
//! validation loss, the teacher as a level line), each measured subnet's size, validation
//! metrics and latency, the selection for "Try it" and export, and the export itself (HF folder
//! or GGUF).

use super::commands::UiCommand;
use super::export_state::{self, ExportState};
use super::pareto_tab::ParetoTab;
use super::run_actions;
use super::run_view::{RunStatus, RunView};
use crate::export::decoder::GgufType;
use crate::export::decoder_subnet::ExportFormat;
use egui::Ui;

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
        // One view a frame: the charts and the table mark the same fronts.
        let view = if run.decoder_entries.is_empty() {
            ui.weak(
                "Measurements appear here when the run ends (teacher first, then each subnet).",
            );
            None
        } else {
            pareto.budget_row(ui, &subnets);
            Some(pareto.view(&subnets))
        };
        if let Some(view) = &view {
            if !subnets.is_empty() {
                let reference = teacher.map(|t| ("teacher", t.val_loss));
                if let Some(c) = pareto.charts(ui, view, selection, &[], reference, true) {
                    cmd = Some(c);
                }
                cmd = super::pareto_tab::save_row(ui).or(cmd);
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
        // The table last: it takes the room left (the export row stays in view).
        if let Some(view) = &view {
            ui.separator();
            let sort = &mut pareto.sort;
            if let Some(c) = super::pareto_table::show(ui, view, sort, selection, teacher) {
                cmd = Some(c);
            }
        }
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
