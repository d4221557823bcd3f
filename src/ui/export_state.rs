//! The off-thread export as the panels show it: running, its files, or its error.

use egui::{Color32, RichText, Ui};
use std::path::PathBuf;

/// State of the off-thread export.
#[derive(Debug, Clone, PartialEq)]
pub enum ExportState {
    /// Nothing exported since the run was opened or started.
    Idle,
    /// Writing `subnet` into `folder`.
    Running { subnet: String, folder: PathBuf },
    /// Written: the folder (or file) and every file in it.
    Done { folder: PathBuf, files: Vec<String> },
    /// The export failed, with the reason.
    Failed(String),
}

impl ExportState {
    /// True while an export is being written.
    pub fn is_running(&self) -> bool {
        matches!(self, ExportState::Running { .. })
    }
}

/// The export's progress, its files or its error.
pub fn show(ui: &mut Ui, export: &ExportState) {
    match export {
        ExportState::Idle => {}
        ExportState::Running { subnet, folder } => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(format!("Exporting {subnet} to {}…", folder.display()));
            });
        }
        ExportState::Done { folder, files } => {
            ui.label(
                RichText::new(format!(
                    "Exported to {}: {}",
                    folder.display(),
                    files
                        .iter()
                        .filter_map(|f| std::path::Path::new(f).file_name())
                        .map(|f| f.to_string_lossy().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .color(Color32::from_rgb(52, 168, 83)),
            );
        }
        ExportState::Failed(e) => {
            ui.label(
                RichText::new(format!("Export failed: {e}")).color(ui.visuals().error_fg_color),
            );
        }
    }
}
