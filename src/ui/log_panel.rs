//! Bottom panel: the trainer's log lines with a level filter.

use super::app::StudioApp;
use egui::{RichText, Ui};

/// Draws the log lines that pass the level filter, newest last.
pub fn show(ui: &mut Ui, app: &mut StudioApp) {
    ui.horizontal(|ui| {
        let l = ui.label("Level");
        egui::ComboBox::from_id_salt("log-level")
            .selected_text(app.log_level.clone())
            .show_ui(ui, |ui| {
                for level in ["all", "info", "warn", "error"] {
                    ui.selectable_value(&mut app.log_level, level.to_string(), level);
                }
            })
            .response
            .labelled_by(l.id)
            .on_hover_text("Show only log lines of this level");
        if let Some(n) = &app.notice {
            ui.label(RichText::new(n).small());
        }
    });
    egui::ScrollArea::vertical()
        .id_salt("log-lines")
        .stick_to_bottom(true)
        .auto_shrink([false, false])
        .show(ui, |ui| {
            for line in &app.run.logs {
                if app.log_level != "all" && line.level != app.log_level {
                    continue;
                }
                let text = RichText::new(format!("[{}] {}", line.level, line.message))
                    .monospace()
                    .small();
                let text = if line.level == "error" {
                    text.color(ui.visuals().error_fg_color)
                } else {
                    text
                };
                ui.label(text);
            }
        });
}
