//! The two actions both result panels offer on a run: measure its subnets again, and export one.

use super::commands::UiCommand;
use super::run_view::{RunStatus, RunView};
use egui::Ui;

/// A button asking to measure the run's subnets again: enabled when a run is shown and idle.
pub fn measure_button(ui: &mut Ui, run: &RunView, label: &str, hover: &str) -> Option<UiCommand> {
    let idle = run.run_dir.is_some()
        && !run.status.is_active()
        && run.status != RunStatus::MeasuringPalette;
    let button = ui.add_enabled(idle, egui::Button::new(label));
    button
        .on_hover_text(hover)
        .clicked()
        .then_some(UiCommand::EvaluatePalette)
}

/// The export button and, beside it, what will be exported (`unselected` when nothing is).
pub fn export_button(
    ui: &mut Ui,
    enabled: bool,
    (label, hover): (&str, &str),
    selection: Option<&str>,
    unselected: &str,
) -> Option<UiCommand> {
    let clicked = ui
        .add_enabled(enabled, egui::Button::new(label))
        .on_hover_text(hover)
        .clicked();
    match selection {
        Some(s) => ui.label(format!("selected: {s}")),
        None => ui.weak(unselected),
    };
    clicked.then_some(UiCommand::Export)
}
