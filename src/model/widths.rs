//! A subnet's width in one dimension (attention heads or FFN neurons): one value for every
//! kept layer, or one value per kept layer.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Heads or FFN neurons of a subnet's kept layers.
///
/// Written `6` (every layer) or `12,6,3` (one per kept layer, in layer order). Lists whose
/// values are all equal are stored as one value, so a subnet has one name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged, try_from = "WidthsText")]
pub enum Widths {
    All(usize),
    PerLayer(Vec<usize>),
}

/// What a file may hold for a width: a number or a list (read, then folded as the text form
/// is, so `[6, 6]` is the same subnet as `6`).
#[derive(Deserialize)]
#[serde(untagged)]
enum WidthsText {
    One(usize),
    List(Vec<usize>),
}

impl TryFrom<WidthsText> for Widths {
    type Error = String;

    fn try_from(text: WidthsText) -> std::result::Result<Self, String> {
        match text {
            WidthsText::One(v) => Ok(Widths::All(v)),
            WidthsText::List(list) if list.is_empty() => Err("an empty list of widths".into()),
            WidthsText::List(list) => Ok(Widths::from_list(list)),
        }
    }
}

impl Widths {
    /// One value per layer, folded to [`Widths::All`] when they are all equal.
    pub fn from_list(values: Vec<usize>) -> Self {
        match values.as_slice() {
            [first, rest @ ..] if rest.iter().all(|v| v == first) => Widths::All(*first),
            _ => Widths::PerLayer(values),
        }
    }

    /// The width of the `i`-th kept layer (position in the spec's layer list, not the teacher
    /// layer index).
    pub fn at(&self, i: usize) -> usize {
        match self {
            Widths::All(v) => *v,
            Widths::PerLayer(list) => list.get(i).copied().unwrap_or(0),
        }
    }

    /// The one value of a uniform width (`None` for per-layer widths).
    pub fn uniform(&self) -> Option<usize> {
        match self {
            Widths::All(v) => Some(*v),
            Widths::PerLayer(_) => None,
        }
    }

    /// The widest layer's value.
    pub fn max(&self) -> usize {
        match self {
            Widths::All(v) => *v,
            Widths::PerLayer(list) => list.iter().copied().max().unwrap_or(0),
        }
    }

    /// Each kept layer's value, for `layers` kept layers.
    pub fn per_layer(&self, layers: usize) -> Vec<usize> {
        (0..layers).map(|i| self.at(i)).collect()
    }

    /// Checks the number of values against the kept layers ("ffn has 2 values for 3 kept
    /// layers").
    pub fn check_count(&self, name: &str, layers: usize) -> Result<()> {
        if let Widths::PerLayer(list) = self {
            if list.len() != layers {
                bail!(
                    "{name} has {} values for {layers} kept layers (give one value, or one per kept layer)",
                    list.len()
                );
            }
        }
        Ok(())
    }

    /// A short form for tables: `6`, or `12/6/3` per layer.
    pub fn short(&self) -> String {
        self.values()
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join("/")
    }

    /// Every value (one for a uniform width).
    pub fn values(&self) -> Vec<usize> {
        match self {
            Widths::All(v) => vec![*v],
            Widths::PerLayer(list) => list.clone(),
        }
    }
}

impl fmt::Display for Widths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Widths::All(v) => write!(f, "{v}"),
            Widths::PerLayer(list) => {
                let text: Vec<String> = list.iter().map(|v| v.to_string()).collect();
                write!(f, "{}", text.join(","))
            }
        }
    }
}

impl From<usize> for Widths {
    fn from(v: usize) -> Self {
        Widths::All(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_lists_fold_to_one_value_and_counts_are_checked() {
        assert_eq!(Widths::from_list(vec![6, 6, 6]), Widths::All(6));
        let w = Widths::from_list(vec![12, 6, 3]);
        assert_eq!((w.at(0), w.at(2), w.max(), w.uniform()), (12, 3, 12, None));
        assert_eq!(w.to_string(), "12,6,3");
        let e = w.check_count("ffn", 2).unwrap_err().to_string();
        assert!(e.contains("ffn has 3 values for 2 kept layers"), "{e}");
        Widths::All(4).check_count("ffn", 9).unwrap();
        assert_eq!(serde_json::to_string(&w).unwrap(), "[12,6,3]");
        assert_eq!(serde_json::from_str::<Widths>("6").unwrap(), Widths::All(6));
        assert_eq!(
            serde_json::from_str::<Widths>("[6,6]").unwrap(),
            Widths::All(6)
        );
        assert!(serde_json::from_str::<Widths>("[]").is_err());
    }
}
