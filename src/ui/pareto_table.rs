//! The subnets table under the Pareto charts, one for both kinds of run: every measured
//! subnet with its short shape, its kind's columns (`subnet_columns`), the fronts it is on (the
//! same fronts the charts draw) and its spec; sortable by any column, a decoder's teacher pinned
//! on top as the reference; clicking a row selects it, over-budget rows are dimmed.

use super::commands::UiCommand;
use super::palette_view::PaletteView;
use super::subnet_columns::{cmp_keys, common, TableColumn, TableRow};
use crate::model::SubnetSpec;
use egui::{RichText, Ui};
use std::cmp::Ordering;

/// The shape column's header (sorts by size: layers, then parameters).
const SHAPE: &str = "Shape";
/// The spec column's header.
const SPEC: &str = "Subnet";

/// The table's sort order: a column (by header) and its direction; no column is best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sort {
    /// The header of the sort column; `None` sorts by quality, best first.
    pub column: Option<&'static str>,
    /// Largest first.
    pub descending: bool,
}

impl Sort {
    /// A click on a column's header: the same column flips direction, another sorts descending.
    pub fn click(&mut self, header: &'static str) {
        if self.column == Some(header) {
            self.descending = !self.descending;
        } else {
            *self = Self {
                column: Some(header),
                descending: true,
            };
        }
    }

    /// Compares two rows by this order (a header another kind of run has sorts best first).
    pub fn compare<R: TableRow>(&self, a: &R, b: &R) -> Ordering {
        let order: Option<fn(&R, &R) -> Ordering> = match self.column {
            Some(SHAPE) => Some(|a, b| {
                cmp_keys(a.widest().0, b.widest().0)
                    .then(cmp_keys(a.params_total(), b.params_total()))
            }),
            Some(SPEC) => Some(|a, b| a.subnet().cmp(b.subnet())),
            Some(header) => columns::<R>()
                .into_iter()
                .find(|c| c.header == header)
                .map(|c| c.order),
            None => None,
        };
        match order {
            Some(order) if self.descending => order(a, b).reverse(),
            Some(order) => order(a, b),
            None => cmp_keys(b.merit(), a.merit()),
        }
    }
}

/// The columns between the shape and the fronts: the shared ones, then the kind's own.
fn columns<R: TableRow>() -> Vec<TableColumn<R>> {
    let mut all: Vec<TableColumn<R>> = common::<R>().into_iter().collect();
    all.extend(R::COLUMNS.iter().map(|c| TableColumn {
        header: c.header,
        hover: c.hover,
        cell: c.cell,
        order: c.order,
    }));
    all
}

/// A header button that sorts by its column; shows the direction when it is the sort column.
fn header(ui: &mut Ui, sort: &mut Sort, name: &'static str, hover: &str) {
    let arrow = match (sort.column == Some(name), sort.descending) {
        (true, true) => " (desc)",
        (true, false) => " (asc)",
        (false, _) => "",
    };
    if ui
        .button(format!("{name}{arrow}"))
        .on_hover_text(format!("Sort by {name}: {hover}"))
        .clicked()
    {
        sort.click(name);
    }
}

/// Draws the table of `view`'s rows in `sort` order (a header click changes it), with
/// `reference` (a decoder's teacher) pinned first and not selectable; returns a selection.
pub fn show<R: TableRow>(
    ui: &mut Ui,
    view: &PaletteView<'_, R>,
    sort: &mut Sort,
    selection: Option<&str>,
    reference: Option<&R>,
) -> Option<UiCommand> {
    let mut cmd = None;
    let entries = view.entries;
    let columns = columns::<R>();
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by(|&a, &b| sort.compare(&entries[a], &entries[b]));
    egui::ScrollArea::both()
        .id_salt("subnets-table")
        .auto_shrink([false, false])
        .show(ui, |ui| {
            egui::Grid::new("subnets-grid")
                .striped(true)
                .num_columns(columns.len() + 3)
                .show(ui, |ui| {
                    let shape_hover = "layers · heads · FFN width (layer by layer where they differ); sorted by size";
                    header(ui, sort, SHAPE, shape_hover);
                    for c in &columns {
                        header(ui, sort, c.header, c.hover);
                    }
                    ui.label("Fronts").on_hover_text(
                        "The palette's fronts (size, latency) the subnet is on, whatever the budget (the charts draw the front within budget solid)",
                    );
                    header(ui, sort, SPEC, "the spec, as `eval --subnets` and exports take it");
                    ui.end_row();
                    if let Some(r) = reference {
                        reference_row(ui, r, &columns);
                    }
                    for &i in &order {
                        let e = &entries[i];
                        let selected = selection == Some(e.subnet());
                        let dim = !view.fits[i];
                        if shape_cell(ui, e, selected, dim, view).clicked() {
                            cmd = Some(UiCommand::Select((!selected).then(|| e.subnet().into())));
                        }
                        for c in &columns {
                            cell(ui, (c.cell)(e), dim);
                        }
                        let marks = match (view.size_front_all[i], view.latency_front_all[i]) {
                            (true, true) => "size, latency",
                            (true, false) => "size",
                            (false, true) => "latency",
                            (false, false) => "",
                        };
                        cell(ui, marks.to_string(), dim);
                        ui.weak(RichText::new(e.subnet()).monospace());
                        ui.end_row();
                    }
                });
        });
    cmd
}

/// A cell's text, dimmed for a row over the budget.
fn cell(ui: &mut Ui, text: String, dim: bool) {
    if dim {
        ui.weak(text);
    } else {
        ui.label(text);
    }
}

/// The selectable shape of a row; its hover shows the metrics and the per-layer chart, its
/// context menu copies the spec.
fn shape_cell<R: TableRow>(
    ui: &mut Ui,
    e: &R,
    selected: bool,
    dim: bool,
    view: &PaletteView<'_, R>,
) -> egui::Response {
    let spec = e.subnet().parse::<SubnetSpec>().ok();
    let shape = match &spec {
        Some(s) => s.shape(),
        None => {
            let (layers, heads, ffn) = e.widest();
            format!("{layers} L · {heads} h · FFN {ffn}")
        }
    };
    let text = if dim {
        RichText::new(shape).weak()
    } else {
        RichText::new(shape)
    };
    let response = ui.selectable_label(selected, text).on_hover_ui(|ui| {
        let layers = spec.as_ref().map(|s| s.layer_lines()).unwrap_or_default();
        let layers = if layers.is_empty() {
            layers
        } else {
            format!("{layers}\n")
        };
        ui.label(format!(
            "{}\n{layers}(right-click to copy the spec)",
            e.metrics_text()
        ));
        if let (Some(spec), Some(teacher)) = (&spec, &view.teacher) {
            super::layer_chart::show(ui, spec, teacher);
        }
    });
    response.context_menu(|ui| {
        if ui.button("Copy spec").clicked() {
            ui.ctx().copy_text(e.subnet().to_string());
            ui.close();
        }
    });
    response
}

/// The reference row (a decoder's teacher): its values, no fronts, not a choice.
fn reference_row<R: TableRow>(ui: &mut Ui, r: &R, columns: &[TableColumn<R>]) {
    let spec = r.subnet().parse::<SubnetSpec>().ok();
    let shape = spec.as_ref().map_or(String::from("teacher"), |s| s.shape());
    ui.label(RichText::new(shape).italics())
        .on_hover_text(format!(
            "The frozen teacher, the reference every subnet is measured against\n{}",
            r.metrics_text()
        ));
    for c in columns {
        ui.label(RichText::new((c.cell)(r)).italics());
    }
    ui.label("");
    ui.weak(RichText::new(r.subnet()).monospace());
    ui.end_row();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::protocol::{DecoderEntry, PaletteEntry};

    fn classifier(subnet: &str, params: usize, dev: f64) -> PaletteEntry {
        PaletteEntry::sample(subnet, params, 1.0, dev)
    }

    #[test]
    fn sorts_best_first_then_by_any_header_of_either_kind() {
        let (a, b) = (classifier("a", 10, 0.9), classifier("b", 20, 0.8));
        let mut sort = Sort::default();
        assert_eq!(
            sort.compare(&a, &b),
            Ordering::Less,
            "higher accuracy first"
        );
        sort.click("Params (M)");
        assert_eq!(sort.compare(&a, &b), Ordering::Greater, "largest first");
        sort.click("Params (M)");
        assert_eq!(sort.compare(&a, &b), Ordering::Less, "then smallest first");
        // Decoders: lower validation loss is better, so it comes first unsorted.
        let decoder = |loss: f64, heads: usize| DecoderEntry {
            role: "subnet".into(),
            subnet: format!("layers=0;heads={heads};ffn=8"),
            layers: 1,
            heads,
            kv_heads: 1,
            ffn: 8,
            params_total: 1,
            params_non_embedding: 1,
            size_bytes: 2,
            val_loss: loss,
            perplexity: loss.exp(),
            top1_accuracy: 0.5,
            prefill_ms: 1.0,
            decode_tokens_per_s: 1.0,
            prefill_ms_p90: f64::NAN,
            val_loss_untrained: f64::NAN,
        };
        let (good, bad) = (decoder(2.0, 3), decoder(3.0, 6));
        assert_eq!(Sort::default().compare(&good, &bad), Ordering::Less);
        // A header only the classifier table has falls back to best first.
        sort.click("Dev acc");
        assert_eq!(sort.compare(&good, &bad), Ordering::Less);
        let mut by_heads = Sort::default();
        by_heads.click("Heads");
        assert_eq!(by_heads.compare(&good, &bad), Ordering::Greater);
        by_heads.click("Val loss");
        assert_eq!(by_heads.compare(&good, &bad), Ordering::Greater);
    }
}
