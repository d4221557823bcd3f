//! Bottom panel: the trainer's log lines with a level filter.

use super::run_view::LogLine;
use egui::{RichText, Ui};

/// The panel's own settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LogPanel {
    /// Whether the panel starts expanded.
    pub open: bool,
    /// Shown level: "all", "info", "warn" or "error".
    pub level: String,
}

impl Default for LogPanel {
    fn default() -> Self {
        Self {
            open: true,
            level: "all".into(),
        }
    }
}

impl LogPanel {
    /// Draws the log `lines` that pass the level filter, newest last, beside the last `notice`.
    pub fn ui(&mut self, ui: &mut Ui, lines: &[LogLine], notice: Option<&str>) {
        ui.horizontal(|ui| {
            let l = ui.label("Level");
            egui::ComboBox::from_id_salt("log-level")
                .selected_text(self.level.clone())
                .show_ui(ui, |ui| {
                    for level in ["all", "info", "warn", "error"] {
                        ui.selectable_value(&mut self.level, level.to_string(), level);
                    }
                })
                .response
                .labelled_by(l.id)
                .on_hover_text("Show only log lines of this level");
            if let Some(n) = notice {
                ui.label(RichText::new(n).small());
            }
        });
        egui::ScrollArea::vertical()
            .id_salt("log-lines")
            .stick_to_bottom(true)
            .auto_shrink([false, false])
            .show(ui, |ui| {
                for line in lines {
                    if self.level != "all" && line.level != self.level {
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
}
