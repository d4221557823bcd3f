//! Pareto tab (encoder runs): size and latency against dev accuracy, linked selection, budgets,
//! the subnets table and the export of the selected subnet. The tab owns its sort order, size
//! unit and budgets; the selection and the export are the window's (other panels share them).

use super::commands::UiCommand;
use super::dialogs::DialogPurpose;
use super::export_state::{self, ExportState};
use super::palette_view::{cost_of, Cost, PaletteView, ParetoPoint};
use super::pareto_chart;
use super::pareto_table;
use super::pareto_table::Sort;
use super::run_actions;
use super::run_view::{RunStatus, RunView};
use crate::eval::pareto::CostBudget;
use crate::export::bert::ClassifierFormat;
use egui::Ui;

/// The tab's own settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParetoTab {
    /// The subnets table's sort order.
    pub sort: Sort,
    /// Size axis in exported MB instead of millions of parameters.
    pub size_in_mb: bool,
    /// Latency and size limits: subnets over them are greyed out and off the fronts.
    pub budget: CostBudget,
    /// The latency chart's x axis on a log scale.
    pub log_latency: bool,
    /// What "Export selected…" writes: a BERT folder or an ONNX model.
    pub format: ClassifierFormat,
    /// The open run's teacher (the window sets it from its settings): what a hovered subnet's
    /// layer chart compares against.
    pub teacher: Option<crate::model::TeacherShape>,
    /// The open run's search candidates, drawn faintly on the latency chart.
    pub search: Vec<crate::search::driver::Candidate>,
}

/// A budget checkbox with its limit field.
fn budget_field(ui: &mut Ui, label: &str, value: &mut Option<f64>, default: f64, tip: &str) {
    let mut on = value.is_some();
    if ui.checkbox(&mut on, label).on_hover_text(tip).changed() {
        *value = on.then_some(default);
    }
    if let Some(v) = value {
        let l = ui.label("max");
        ui.add(egui::DragValue::new(v).speed(0.05).range(0.0..=1e6))
            .labelled_by(l.id)
            .on_hover_text(tip);
    }
}

impl ParetoTab {
    /// Draws the tab for `run`; returns a command when a button, chart point or row asks.
    pub fn ui(
        &mut self,
        ui: &mut Ui,
        run: &RunView,
        selection: Option<&str>,
        export: &ExportState,
        compared: &[pareto_chart::ComparedPalette<'_>],
    ) -> Option<UiCommand> {
        let mut cmd = None;
        ui.horizontal(|ui| {
            let hover = "Measure accuracy, size and latency of every subnet again";
            cmd = run_actions::measure_button(ui, run, "Re-evaluate palette", hover);
        });
        self.budget_row(ui, &run.palette);
        // One view a frame: the charts and the table mark the same fronts.
        let view = self.view(&run.palette);
        if run.palette.is_empty() {
            let why = if run.status == RunStatus::MeasuringPalette {
                "Measuring the palette — points appear as each subnet is measured."
            } else {
                "No subnet evaluated yet — the palette is measured when training ends, or press Re-evaluate palette."
            };
            ui.weak(why);
        } else if let Some(c) = self.charts(ui, &view, selection, compared, None, true) {
            cmd = Some(c);
        }
        let button = (
            "Export selected…",
            "Write the selected subnet, adapters merged, as a standalone model folder",
        );
        let unselected = "select a subnet in a chart or the table";
        let can_export = selection.is_some() && !export.is_running();
        let format = &mut self.format;
        let row = ui.horizontal(|ui| {
            let l = ui.label("Export as");
            egui::ComboBox::from_id_salt("classifier-format")
                .selected_text(format.label())
                .show_ui(ui, |ui| {
                    for f in [ClassifierFormat::HfFolder, ClassifierFormat::Onnx] {
                        ui.selectable_value(format, f, f.label());
                    }
                })
                .response
                .labelled_by(l.id)
                .on_hover_text(
                    "Hugging Face folder: model.safetensors with BERT names. ONNX: model.onnx \
                     for ONNX Runtime (mobile, web, servers). Both come with tokenizer.json, \
                     config.json and manifest.json.",
                );
            run_actions::export_button(ui, can_export, button, selection, unselected)
        });
        cmd = row.inner.or(cmd);
        export_state::show(ui, export);
        ui.separator();
        if !run.palette.is_empty() {
            cmd = save_row(ui).or(cmd);
        }
        if let Some(c) = pareto_table::show(ui, &view, &mut self.sort, selection, None) {
            cmd = Some(c);
        }
        cmd
    }
}

/// A size limit in the other unit: millions of parameters into MB when `to_mb`, else back, at
/// the palette's median bytes per parameter (`None` for an empty palette).
fn convert_size_limit<P: ParetoPoint>(limit: f64, entries: &[P], to_mb: bool) -> Option<f64> {
    let mut ratios: Vec<f64> = entries
        .iter()
        .filter(|e| e.params_total() > 0)
        .map(|e| e.size_bytes() as f64 / e.params_total() as f64)
        .collect();
    ratios.sort_by(f64::total_cmp);
    let bytes_per_param = *ratios.get(ratios.len() / 2)?;
    let converted = if to_mb {
        limit * bytes_per_param
    } else {
        limit / bytes_per_param
    };
    Some((converted * 1000.0).round() / 1000.0)
}

impl ParetoTab {
    /// The size unit, budget limits and log-latency toggle, for any palette's points.
    pub fn budget_row<P: ParetoPoint>(&mut self, ui: &mut Ui, entries: &[P]) {
        ui.horizontal(|ui| {
            let unit_changed = ui
                .checkbox(&mut self.size_in_mb, "Size in MB")
                .on_hover_text("Size axis: exported bytes instead of parameters")
                .changed();
            if unit_changed {
                // The size budget is in the axis's unit: carried over at the palette's bytes
                // per parameter, never dropped.
                self.budget.size = self
                    .budget
                    .size
                    .and_then(|limit| convert_size_limit(limit, entries, self.size_in_mb));
            }
            // A new limit starts at the palette's median, so about half of the subnets fit.
            let median = |cost: Cost| {
                let mut v: Vec<f64> = entries
                    .iter()
                    .map(|e| cost_of(e, cost, self.size_in_mb))
                    .collect();
                v.sort_by(f64::total_cmp);
                v.get(v.len() / 2).copied().unwrap_or(1.0)
            };
            budget_field(
                ui,
                "Latency budget (ms)",
                &mut self.budget.latency_ms,
                median(Cost::Latency),
                "Grey out subnets slower than this and mark the best one within budget",
            );
            let size_label = match self.size_in_mb {
                true => "Size budget (MB)",
                false => "Size budget (M params)",
            };
            budget_field(
                ui,
                size_label,
                &mut self.budget.size,
                median(Cost::Size),
                "Grey out subnets larger than this (in the size axis's unit) and mark the best one within budget",
            );
        });
        ui.checkbox(&mut self.log_latency, "Log latency axis")
            .on_hover_text(
            "Latency on a logarithmic axis: subnets an order of magnitude apart both stay readable",
        );
    }

    /// `entries` under this tab's axes and budget: fits, fronts and the best within budget.
    pub fn view<'a, P: ParetoPoint>(&self, entries: &'a [P]) -> PaletteView<'a, P> {
        let mut view = PaletteView::new(entries, self.size_in_mb, &self.budget);
        view.log_latency = self.log_latency;
        view.teacher = self.teacher;
        view.with_search(&self.search)
    }

    /// The size and latency charts of `view` side by side, then the best within budget;
    /// returns the subnet clicked (as a selection) or the charts' menu choice.
    pub fn charts<P: ParetoPoint>(
        &self,
        ui: &mut Ui,
        view: &PaletteView<'_, P>,
        selection: Option<&str>,
        compared: &[pareto_chart::ComparedPalette<'_, P>],
        reference: Option<(&str, f64)>,
        with_menu: bool,
    ) -> Option<UiCommand> {
        let mut cmd = None;
        let width = (ui.available_width() - 16.0) / 2.0;
        let height = (ui.available_height() * 0.5).max(220.0);
        ui.horizontal(|ui| {
            for cost in [Cost::Size, Cost::Latency] {
                let size = (width, height);
                let mut menu = None;
                let menu_slot = with_menu.then_some(&mut menu);
                let clicked = pareto_chart::show(
                    ui, view, cost, selection, size, compared, reference, menu_slot,
                );
                if let Some(s) = clicked {
                    cmd = Some(UiCommand::Select(Some(s)));
                }
                if menu.is_some() {
                    cmd = menu;
                }
            }
        });
        if let Some(best) = view.best.and_then(|i| view.entries.get(i)) {
            ui.label(format!(
                "Best within budget: {} ({} {:.4})",
                best.subnet(),
                P::SCORE_LABEL,
                best.score()
            ));
        } else if self.budget.is_set() {
            let error = ui.visuals().error_fg_color;
            ui.colored_label(
                error,
                "Nothing fits the budget: raise a limit to see a front.",
            );
        }
        cmd
    }
}

/// "Save table as CSV…" and the size chart as PNG or SVG: a palette's data to take away.
pub fn save_row(ui: &mut Ui) -> Option<UiCommand> {
    let mut cmd = None;
    ui.horizontal(|ui| {
        if ui
            .button("Save table as CSV…")
            .on_hover_text("Every measured subnet with its costs, scores and fronts")
            .clicked()
        {
            cmd = Some(UiCommand::Open(DialogPurpose::SavePaletteCsv));
        }
        let tip = "The size chart with this run's front and the compared runs' (also in each chart's right-click menu)";
        if ui.button("Save chart as PNG…").on_hover_text(tip).clicked() {
            cmd = Some(UiCommand::Open(DialogPurpose::SaveChart(Cost::Size, false)));
        }
        if ui.button("Save chart as SVG…").on_hover_text(tip).clicked() {
            cmd = Some(UiCommand::Open(DialogPurpose::SaveChart(Cost::Size, true)));
        }
    });
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::protocol::PaletteEntry;

    #[test]
    fn a_size_limit_changes_unit_with_the_axis() {
        // f32 weights: 4 bytes a parameter, so 10 M parameters are 40 MB.
        let entries = [
            PaletteEntry::sample("a", 10_000_000, 1.0, 0.8),
            PaletteEntry::sample("b", 20_000_000, 2.0, 0.9),
        ];
        let ratio = entries[0].size_bytes as f64 / entries[0].params_total as f64;
        let mb = convert_size_limit(10.0, &entries, true).unwrap();
        assert!((mb - 10.0 * ratio).abs() < 1e-3, "{mb}");
        let back = convert_size_limit(mb, &entries, false).unwrap();
        assert!((back - 10.0).abs() < 1e-3, "{back}");
        assert_eq!(convert_size_limit::<PaletteEntry>(10.0, &[], true), None);
    }
}
