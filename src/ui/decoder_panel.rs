//! Decoder runs' results: each measured subnet's size, validation metrics and latency, the
//! selection for "Try it" and export, and the export itself (HF folder or GGUF).

use super::app::{StudioApp, UiCommand};
use super::pareto_tab::export_status;
use super::run_view::RunStatus;
use crate::export::decoder::GgufType;
use crate::export::lm::ExportFormat;
use egui::{RichText, Ui};

/// Draws the panel (in place of the Pareto charts for decoder runs).
pub fn show(ui: &mut Ui, app: &mut StudioApp) -> Option<UiCommand> {
    let mut cmd = None;
    ui.horizontal(|ui| {
        let idle = app.run.run_dir.is_some()
            && !app.run.status.is_active()
            && app.run.status != RunStatus::MeasuringPalette;
        if ui
            .add_enabled(idle, egui::Button::new("Re-measure"))
            .on_hover_text("Validation loss, perplexity, top-1, prefill time and tokens/s of the teacher and the run's subnets")
            .clicked()
        {
            cmd = Some(UiCommand::EvaluatePalette);
        }
        if app.run.status == RunStatus::MeasuringPalette {
            ui.spinner();
        }
    });
    if app.run.lm_entries.is_empty() {
        ui.weak("Measurements appear here when the run ends (teacher first, then each subnet).");
    } else {
        table(ui, app, &mut cmd);
    }
    ui.separator();
    ui.horizontal(|ui| {
        let l = ui.label("Export as");
        egui::ComboBox::from_id_salt("decoder-format")
            .selected_text(format_name(app.decoder_format))
            .show_ui(ui, |ui| {
                for f in [
                    ExportFormat::HfFolder,
                    ExportFormat::Gguf(GgufType::F16),
                    ExportFormat::Gguf(GgufType::F32),
                ] {
                    ui.selectable_value(&mut app.decoder_format, f, format_name(f));
                }
            })
            .response
            .labelled_by(l.id);
        let can_export = app.run.run_dir.is_some()
            && !matches!(app.export, super::app::ExportState::Running { .. });
        if ui
            .add_enabled(can_export, egui::Button::new("Export…"))
            .on_hover_text("Hugging Face folder (LlamaForCausalLM) or a GGUF file llama.cpp reads")
            .clicked()
        {
            cmd = Some(UiCommand::Export);
        }
        match &app.selection {
            Some(s) => ui.label(format!("selected: {s}")),
            None => ui.weak("the run's student (select a row to change)"),
        };
    });
    export_status(ui, &app.export);
    cmd
}

fn format_name(f: ExportFormat) -> &'static str {
    match f {
        ExportFormat::HfFolder => "Hugging Face folder",
        ExportFormat::Gguf(GgufType::F16) => "GGUF f16",
        ExportFormat::Gguf(GgufType::F32) => "GGUF f32",
    }
}

fn table(ui: &mut Ui, app: &StudioApp, cmd: &mut Option<UiCommand>) {
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
            for e in &app.run.lm_entries {
                let selected = app.selection.as_deref() == Some(e.subnet.as_str());
                if ui
                    .selectable_label(selected, &e.role)
                    .on_hover_text(&e.subnet)
                    .clicked()
                {
                    *cmd = Some(UiCommand::Select((!selected).then(|| e.subnet.clone())));
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
}
