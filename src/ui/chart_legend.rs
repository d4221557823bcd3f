//! A chart's legend as a row above the plot (as W&B draws it): each series' own colour and
//! dash, its name and last value; clicking an entry hides or shows its series. Outside the
//! plotted area, it never covers the live right edge of a curve, and it wraps onto more lines
//! in a narrow window instead of disappearing. egui_plot's own legend draws inside the plot and
//! takes the colour of the first item of a name (the faint raw curve under a smoothed one),
//! which is why the training charts draw their own.

use egui::{Color32, Sense, Shape, Stroke, Ui, Vec2};
use std::collections::BTreeSet;

/// How a series' line is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dash {
    Solid,
    /// Long dashes (a compared run's maxnet, a compared decoder run).
    Loose,
    /// Short dashes (a compared run's other roles).
    Dense,
    /// Dots (a compared run's minnet).
    Dotted,
    /// A vertical mark (stage boundaries).
    Vertical,
}

impl Dash {
    /// The egui_plot line style drawn with this dash.
    pub fn line_style(self) -> egui_plot::LineStyle {
        match self {
            Self::Solid | Self::Vertical => egui_plot::LineStyle::Solid,
            Self::Loose => egui_plot::LineStyle::dashed_loose(),
            Self::Dense => egui_plot::LineStyle::dashed_dense(),
            Self::Dotted => egui_plot::LineStyle::dotted_dense(),
        }
    }
}

/// One entry of a legend.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The series' name: what hiding keys on.
    pub name: String,
    /// Shown after the name (the last value), if any.
    pub value: Option<String>,
    pub colour: Color32,
    pub dash: Dash,
}

impl Entry {
    pub fn new(name: impl Into<String>, colour: Color32, dash: Dash) -> Self {
        Self {
            name: name.into(),
            value: None,
            colour,
            dash,
        }
    }

    pub fn value(mut self, value: String) -> Self {
        self.value = Some(value);
        self
    }

    /// The entry's text: name, then value.
    pub fn text(&self) -> String {
        match &self.value {
            Some(v) => format!("{} {v}", self.name),
            None => self.name.clone(),
        }
    }
}

/// The legend's key for `name` on chart `chart` (hidden series are remembered per chart).
pub fn key(chart: &str, name: &str) -> String {
    format!("{chart}/{name}")
}

/// Draws the legend of `chart` with `entries` as a wrapped row; a click hides or shows a series
/// (its key goes into or out of `hidden`). Returns the height it took.
pub fn show(ui: &mut Ui, chart: &str, entries: &[Entry], hidden: &mut BTreeSet<String>) -> f32 {
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().item_spacing.x = 12.0;
        for entry in entries {
            let key = key(chart, &entry.name);
            let is_hidden = hidden.contains(&key);
            if entry_widget(ui, entry, is_hidden).clicked() {
                if is_hidden {
                    hidden.remove(&key);
                } else {
                    hidden.insert(key);
                }
            }
        }
    })
    .response
    .rect
    .height()
}

/// One entry as a single widget (swatch and text), so that the row wraps between entries.
fn entry_widget(ui: &mut Ui, entry: &Entry, is_hidden: bool) -> egui::Response {
    const SWATCH: f32 = 22.0;
    const GAP: f32 = 5.0;
    let text = entry.text();
    let mut rich = egui::RichText::new(&text);
    if is_hidden {
        rich = rich.weak().strikethrough();
    }
    let galley = egui::WidgetText::from(rich).into_galley(
        ui,
        Some(egui::TextWrapMode::Extend),
        f32::INFINITY,
        egui::TextStyle::Body,
    );
    let size = Vec2::new(SWATCH + GAP + galley.size().x, galley.size().y.max(14.0));
    let (rect, response) = ui.allocate_exact_size(size, Sense::click());
    response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, ui.is_enabled(), &text));
    let colour = if is_hidden {
        entry.colour.gamma_multiply(0.3)
    } else {
        entry.colour
    };
    let swatch_rect = egui::Rect::from_min_size(
        egui::pos2(rect.left(), rect.center().y - 6.0),
        Vec2::new(SWATCH, 12.0),
    );
    swatch(ui, swatch_rect, colour, entry.dash);
    let text_colour = if response.hovered() {
        ui.visuals().strong_text_color()
    } else {
        ui.visuals().text_color()
    };
    let text_pos = egui::pos2(
        rect.left() + SWATCH + GAP,
        rect.center().y - galley.size().y / 2.0,
    );
    ui.painter().galley(text_pos, galley, text_colour);
    response.on_hover_text(if is_hidden {
        "Hidden: click to show this series"
    } else {
        "Click to hide this series"
    })
}

/// The series' line sample in its colour and dash.
fn swatch(ui: &Ui, rect: egui::Rect, colour: Color32, dash: Dash) {
    let painter = ui.painter();
    let stroke = Stroke::new(2.0, colour);
    let (left, right) = (rect.left_center(), rect.right_center());
    match dash {
        Dash::Solid => {
            painter.line_segment([left, right], stroke);
        }
        Dash::Loose => {
            painter.extend(Shape::dashed_line(&[left, right], stroke, 6.0, 3.0));
        }
        Dash::Dense => {
            painter.extend(Shape::dashed_line(&[left, right], stroke, 3.0, 2.0));
        }
        Dash::Dotted => {
            painter.extend(Shape::dotted_line(&[left, right], colour, 4.0, 1.2));
        }
        Dash::Vertical => {
            let x = rect.center().x;
            painter.line_segment(
                [egui::pos2(x, rect.top()), egui::pos2(x, rect.bottom())],
                Stroke::new(1.0, colour),
            );
        }
    }
}
