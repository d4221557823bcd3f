//! A subnet's shape drawn small: for every teacher layer, its kept heads and FFN width as bars
//! against the teacher's own widths (the outlines); a dropped layer is an empty outline. Shown
//! when a subnet is hovered in the table or a chart, so a per-layer shape reads at a glance.

use crate::model::{SubnetSpec, TeacherShape};
use egui::{Color32, Rect, Stroke, StrokeKind, Ui, Vec2};

/// The accessible name of the chart (tests find it by this prefix).
pub const LABEL: &str = "Layer widths";

/// Draws the chart of `spec` against `teacher`.
pub fn show(ui: &mut Ui, spec: &SubnetSpec, teacher: &TeacherShape) {
    let layers = teacher.layers.max(1);
    let slot = (180.0 / layers as f32).clamp(4.0, 14.0);
    let (bar_height, gap) = (26.0, 6.0);
    // Wide enough for the caption under a shallow teacher's few bars.
    let width = (slot * layers as f32 + 40.0).max(150.0);
    let size = Vec2::new(width, 2.0 * bar_height + gap + 14.0);
    let (rect, response) = ui.allocate_exact_size(size, egui::Sense::hover());
    let summary = format!(
        "{LABEL}: {} of {} layers kept; heads {} of {}; FFN {} of {}",
        spec.layers.len(),
        teacher.layers,
        spec.heads.short(),
        teacher.heads,
        spec.ffn.short(),
        teacher.ffn
    );
    response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Label, true, &summary));
    let painter = ui.painter_at(rect);
    let visuals = ui.visuals();
    let text = visuals.text_color();
    let outline = Stroke::new(1.0, visuals.weak_text_color());
    let colours = [
        Color32::from_rgb(66, 133, 244),
        Color32::from_rgb(52, 168, 83),
    ];
    let font = egui::FontId::proportional(10.0);
    for (row, (name, full)) in [("heads", teacher.heads), ("FFN", teacher.ffn)]
        .into_iter()
        .enumerate()
    {
        let top = rect.top() + row as f32 * (bar_height + gap);
        painter.text(
            egui::pos2(rect.left(), top + bar_height / 2.0),
            egui::Align2::LEFT_CENTER,
            name,
            font.clone(),
            text,
        );
        for layer in 0..teacher.layers {
            let left = rect.left() + 40.0 + layer as f32 * slot;
            let cell = Rect::from_min_size(
                egui::pos2(left + 1.0, top),
                Vec2::new(slot - 2.0, bar_height),
            );
            painter.rect_stroke(cell, 0.0, outline, StrokeKind::Inside);
            let Some(i) = spec.layers.iter().position(|&l| l == layer) else {
                continue;
            };
            let (heads, ffn) = spec.layer_widths(i);
            let kept = if row == 0 { heads } else { ffn };
            let share = (kept as f32 / full.max(1) as f32).clamp(0.0, 1.0);
            let bar = Rect::from_min_max(
                egui::pos2(cell.left(), cell.bottom() - share * bar_height),
                cell.max,
            );
            painter.rect_filled(bar, 0.0, colours[row]);
        }
    }
    painter.text(
        egui::pos2(rect.left() + 40.0, rect.bottom()),
        egui::Align2::LEFT_BOTTOM,
        format!("teacher layers 0–{}", teacher.layers.saturating_sub(1)),
        font,
        text,
    );
}
