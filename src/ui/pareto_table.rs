//! The subnets table under the Pareto charts: every measured subnet, sortable by any column,
//! with the fronts it is on (the same fronts the charts draw); clicking a row selects it.

use super::commands::UiCommand;
use super::palette_view::{PaletteView, ParetoPoint};
use crate::train::protocol::PaletteEntry;
use egui::{RichText, Ui};
use std::cmp::Ordering;

/// Table columns (also the sort keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// The subnet spec.
    Subnet,
    /// Kept layers.
    Layers,
    /// Attention heads per layer.
    Heads,
    /// FFN neurons per layer.
    Ffn,
    /// Parameters in total.
    Params,
    /// Exported size.
    Size,
    /// Median latency at batch 1.
    Latency,
    /// Accuracy on the dev split.
    DevAccuracy,
    /// Accuracy on the test split.
    TestAccuracy,
}

/// The table's sort order: a column and its direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    /// The sort key.
    pub column: Column,
    /// Largest first.
    pub descending: bool,
}

impl Default for Sort {
    /// Best dev accuracy first (users look for the best, not the last, value).
    fn default() -> Self {
        Self {
            column: Column::DevAccuracy,
            descending: true,
        }
    }
}

impl Sort {
    /// A click on a column's header: the same column flips direction, another sorts descending.
    pub fn click(&mut self, column: Column) {
        if self.column == column {
            self.descending = !self.descending;
        } else {
            *self = Self {
                column,
                descending: true,
            };
        }
    }

    /// Compares two entries by this order.
    pub fn compare(&self, a: &PaletteEntry, b: &PaletteEntry) -> Ordering {
        let ord = match self.column {
            Column::Subnet => a.subnet.cmp(&b.subnet),
            Column::Layers => a.layers.cmp(&b.layers),
            Column::Heads => a.heads.cmp(&b.heads),
            Column::Ffn => a.ffn.cmp(&b.ffn),
            Column::Params => a.params_total.cmp(&b.params_total),
            Column::Size => a.size_bytes.cmp(&b.size_bytes),
            Column::Latency => a.latency_ms_median.total_cmp(&b.latency_ms_median),
            Column::DevAccuracy => a.dev_accuracy.total_cmp(&b.dev_accuracy),
            Column::TestAccuracy => a.test_accuracy.total_cmp(&b.test_accuracy),
        };
        if self.descending {
            ord.reverse()
        } else {
            ord
        }
    }
}

const HEADERS: [(Column, &str); 9] = [
    (Column::Subnet, "Subnet"),
    (Column::Layers, "Layers"),
    (Column::Heads, "Heads"),
    (Column::Ffn, "FFN"),
    (Column::Params, "Params (M)"),
    (Column::Size, "Size (MB)"),
    (Column::Latency, "Latency (ms)"),
    (Column::DevAccuracy, "Dev acc"),
    (Column::TestAccuracy, "Test acc"),
];

/// Draws the table in `sort` order (a header click changes it); returns a selection command.
pub fn show(
    ui: &mut Ui,
    view: &PaletteView<'_>,
    sort: &mut Sort,
    selection: Option<&str>,
) -> Option<UiCommand> {
    let mut cmd = None;
    let entries = view.entries;
    let mut rows: Vec<usize> = (0..entries.len()).collect();
    rows.sort_by(|&a, &b| sort.compare(&entries[a], &entries[b]));
    egui::ScrollArea::both()
        .id_salt("subnets-table")
        .auto_shrink([false, false])
        .show(ui, |ui| {
            egui::Grid::new("subnets-grid")
                .striped(true)
                .num_columns(10)
                .show(ui, |ui| {
                    for (col, name) in HEADERS {
                        let arrow = match (sort.column == col, sort.descending) {
                            (true, true) => " (desc)",
                            (true, false) => " (asc)",
                            (false, _) => "",
                        };
                        let what = match col {
                            // The spec lists teacher layer indices (0-based); this counts them.
                            Column::Layers => "Sort by Layers: how many teacher layers the subnet keeps (the spec's layers=… lists their 0-based indices)".to_string(),
                            _ => format!("Sort by {name}"),
                        };
                        if ui
                            .button(format!("{name}{arrow}"))
                            .on_hover_text(what)
                            .clicked()
                        {
                            sort.click(col);
                        }
                    }
                    ui.label("Fronts");
                    ui.end_row();
                    for &i in &rows {
                        let e = &entries[i];
                        let selected = selection == Some(e.subnet.as_str());
                        let spec = e.subnet.parse::<crate::model::SubnetSpec>().ok();
                        let name = ui
                            .selectable_label(selected, RichText::new(&e.subnet).monospace())
                            .on_hover_ui(|ui| {
                                ui.label(format!(
                                    "{}\n{}(right-click to copy the spec)",
                                    e.metrics_text(),
                                    spec.as_ref()
                                        .map(|s| s.layer_lines())
                                        .filter(|l| !l.is_empty())
                                        .map_or(String::new(), |l| format!("{l}\n"))
                                ));
                                if let (Some(spec), Some(teacher)) = (&spec, &view.teacher) {
                                    super::layer_chart::show(ui, spec, teacher);
                                }
                            });
                        name.context_menu(|ui| {
                            if ui.button("Copy spec").clicked() {
                                ui.ctx().copy_text(e.subnet.clone());
                                ui.close();
                            }
                        });
                        if name.clicked() {
                            cmd = Some(UiCommand::Select(if selected {
                                None
                            } else {
                                Some(e.subnet.clone())
                            }));
                        }
                        ui.label(e.layers.to_string());
                        // A per-layer subnet's widths layer by layer (`12/6/3`), from its spec.
                        let widths = |w: fn(&crate::model::SubnetSpec) -> String, all: usize| {
                            spec.as_ref().map_or(all.to_string(), w)
                        };
                        ui.label(widths(|s| s.heads.short(), e.heads));
                        ui.label(widths(|s| s.ffn.short(), e.ffn));
                        ui.label(format!("{:.2}", e.params_total as f64 / 1e6));
                        ui.label(format!("{:.2}", e.size_bytes as f64 / 1e6));
                        ui.label(format!("{:.3}", e.latency_ms_median));
                        ui.label(format!("{:.4}", e.dev_accuracy));
                        ui.label(format!("{:.4}", e.test_accuracy));
                        let marks = format!(
                            "{}{}",
                            if view.size_front[i] { "size " } else { "" },
                            if view.latency_front[i] { "latency" } else { "" }
                        );
                        ui.label(marks);
                        ui.end_row();
                    }
                });
        });
    cmd
}
