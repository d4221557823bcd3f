//! The studio window (eframe/egui).

use anyhow::{anyhow, Result};

struct SummaryApp {
    summary: String,
}

impl eframe::App for SummaryApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        egui::CentralPanel::default().show(ui, |ui| {
            ui.heading("MLFS Studio");
            ui.label(&self.summary);
        });
    }
}

/// Opens the studio window on the shipped default teacher.
pub fn run_studio() -> Result<()> {
    let dir = crate::cli::assets_dir().join("minilm-l3");
    let summary = match crate::model::EncoderTeacher::load(&dir) {
        Ok(t) => t.summary(),
        Err(e) => format!("Could not load the default teacher: {e:#}"),
    };
    let options = eframe::NativeOptions::default();
    eframe::run_native(
        "MLFS Studio",
        options,
        Box::new(|_cc| Ok(Box::new(SummaryApp { summary }))),
    )
    .map_err(|e| anyhow!("cannot open the studio window: {e}"))
}
