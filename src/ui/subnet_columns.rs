//! The subnets table's columns for each kind of run: one list per row type (header, hover
//! text, cell, order), read by the one table both kinds share (`pareto_table`).

use super::palette_view::ParetoPoint;
use crate::model::SubnetSpec;
use crate::train::protocol::{DecoderEntry, PaletteEntry};
use std::cmp::Ordering;

/// One column of the subnets table.
pub struct TableColumn<R> {
    /// The header (also what the sort order remembers).
    pub header: &'static str,
    /// What the header's hover says the column holds.
    pub hover: &'static str,
    /// The row's cell.
    pub cell: fn(&R) -> String,
    /// Ascending order of two rows by this column.
    pub order: fn(&R, &R) -> Ordering,
}

/// A palette row the subnets table shows.
pub trait TableRow: ParetoPoint + Sized + 'static {
    /// The kind's own columns, after [`common`] and before the fronts and the spec.
    const COLUMNS: &'static [TableColumn<Self>];
    /// Kept layers, and the widest layer's heads and FFN width (a row whose spec does not
    /// parse still shows a shape from them).
    fn widest(&self) -> (usize, usize, usize);
}

/// Ascending order of two keys (NaN, where a value was not measured, ties with anything).
pub fn cmp_keys<K: PartialOrd>(a: K, b: K) -> Ordering {
    a.partial_cmp(&b).unwrap_or(Ordering::Equal)
}

// A column from its header, hover, cell and sort key (closures over one row).
macro_rules! column {
    ($ty:ty, $header:literal, $hover:literal, |$e:ident| $cell:expr, |$k:ident| $key:expr) => {
        TableColumn::<$ty> {
            header: $header,
            hover: $hover,
            cell: |$e: &$ty| $cell,
            order: |a: &$ty, b: &$ty| {
                let key = |$k: &$ty| $key;
                cmp_keys(key(a), key(b))
            },
        }
    };
}

/// The columns every kind shares, after the shape: role, kept layers, heads and FFN width
/// (layer by layer for a per-layer subnet, sorted by the widest layer's).
pub fn common<R: TableRow>() -> [TableColumn<R>; 4] {
    [
        TableColumn {
            header: "Role",
            hover: "teacher (the frozen model, for reference), maxnet, minnet, a subnet of the space, or listed in palette.subnets",
            cell: |e| e.role().to_string(),
            order: |a, b| a.role().cmp(b.role()),
        },
        TableColumn {
            header: "Layers",
            hover: "How many teacher layers the subnet keeps (the spec's layers=… lists their 0-based indices)",
            cell: |e| e.widest().0.to_string(),
            order: |a, b| a.widest().0.cmp(&b.widest().0),
        },
        TableColumn {
            header: "Heads",
            hover: "Attention heads per kept layer (12/6/3: layer by layer); sorted by the widest layer's",
            cell: |e| widths_cell(e, |s| s.heads.short(), e.widest().1),
            order: |a, b| a.widest().1.cmp(&b.widest().1),
        },
        TableColumn {
            header: "FFN",
            hover: "FFN neurons per kept layer (1536/768/384: layer by layer); sorted by the widest layer's",
            cell: |e| widths_cell(e, |s| s.ffn.short(), e.widest().2),
            order: |a, b| a.widest().2.cmp(&b.widest().2),
        },
    ]
}

/// A row's widths as its spec has them, or the widest layer's where the spec does not parse.
fn widths_cell<R: TableRow>(e: &R, pick: fn(&SubnetSpec) -> String, widest: usize) -> String {
    e.subnet()
        .parse::<SubnetSpec>()
        .map_or(widest.to_string(), |s| pick(&s))
}

fn mega(n: usize) -> f64 {
    n as f64 / 1e6
}

impl TableRow for PaletteEntry {
    const COLUMNS: &'static [TableColumn<Self>] = &[
        column!(
            PaletteEntry,
            "Params (M)",
            "Parameters in total, embeddings included",
            |e| format!("{:.2}", mega(e.params_total)),
            |k| k.params_total
        ),
        column!(
            PaletteEntry,
            "Size (MB)",
            "Bytes of the exported model.safetensors (f32)",
            |e| format!("{:.2}", mega(e.size_bytes)),
            |k| k.size_bytes
        ),
        column!(
            PaletteEntry,
            "Latency (ms)",
            "Median time of one sentence at batch 1, adapters merged",
            |e| format!("{:.3}", e.latency_ms_median),
            |k| k.latency_ms_median
        ),
        column!(
            PaletteEntry,
            "p90 (ms)",
            "90th percentile of the same timings",
            |e| format!("{:.3}", e.latency_ms_p90),
            |k| k.latency_ms_p90
        ),
        column!(
            PaletteEntry,
            "Dev acc",
            "Accuracy on the dev split",
            |e| format!("{:.4}", e.dev_accuracy),
            |k| k.dev_accuracy
        ),
        column!(
            PaletteEntry,
            "Test acc",
            "Accuracy on the test split",
            |e| format!("{:.4}", e.test_accuracy),
            |k| k.test_accuracy
        ),
    ];
    fn widest(&self) -> (usize, usize, usize) {
        (self.layers, self.heads, self.ffn)
    }
}

impl TableRow for DecoderEntry {
    const COLUMNS: &'static [TableColumn<Self>] = &[
        column!(
            DecoderEntry,
            "KV heads",
            "Key/value heads of the widest layer (whole groups are kept)",
            |e| e.kv_heads.to_string(),
            |k| k.kv_heads
        ),
        column!(
            DecoderEntry,
            "Params (M)",
            "Parameters in total, embeddings included",
            |e| format!("{:.1}", mega(e.params_total)),
            |k| k.params_total
        ),
        column!(
            DecoderEntry,
            "Size (MB)",
            "Bytes of an f16 export",
            |e| format!("{:.0}", mega(e.size_bytes)),
            |k| k.size_bytes
        ),
        column!(
            DecoderEntry,
            "Val loss",
            "Validation loss (nats a token), adapters on",
            |e| format!("{:.3}", e.val_loss),
            |k| k.val_loss
        ),
        column!(
            DecoderEntry,
            "Untrained",
            "Validation loss of the same shape cut from the teacher, untrained",
            |e| nan_blank(e.val_loss_untrained, 3),
            |k| k.val_loss_untrained
        ),
        column!(
            DecoderEntry,
            "Perplexity",
            "exp(validation loss)",
            |e| format!("{:.1}", e.perplexity),
            |k| k.perplexity
        ),
        column!(
            DecoderEntry,
            "Top-1",
            "Share of validation tokens whose most likely next token is right",
            |e| format!("{:.3}", e.top1_accuracy),
            |k| k.top1_accuracy
        ),
        column!(
            DecoderEntry,
            "Prefill (ms)",
            "Median prefill time of the latency prompt at batch 1",
            |e| format!("{:.0}", e.prefill_ms),
            |k| k.prefill_ms
        ),
        column!(
            DecoderEntry,
            "Decode (tok/s)",
            "Tokens a second generated after the prefill, KV cache on",
            |e| format!("{:.1}", e.decode_tokens_per_s),
            |k| k.decode_tokens_per_s
        ),
    ];
    fn widest(&self) -> (usize, usize, usize) {
        (self.layers, self.heads, self.ffn)
    }
}

/// A number, or nothing where it was not measured (files written before the column).
fn nan_blank(v: f64, digits: usize) -> String {
    if v.is_nan() {
        String::new()
    } else {
        format!("{v:.digits$}")
    }
}
