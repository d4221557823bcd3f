//! A latency model of one machine: each per-layer choice (heads × FFN width, at each hidden
//! width) timed as it runs once exported, and the rest of the model (embeddings, norms, head)
//! once; a subnet's predicted latency is the sum of its parts. Written as `latency-table.csv`
//! with the processor, device, sequence length and date on every row, so that a table timed on
//! the target device drives a search made elsewhere.
//!
//! A layer is timed as a whole (attention and FFN together, at the widths it will have) rather
//! than as two separately timed halves: a one-layer model is what our engine can run on its
//! own, and it keeps the interaction of the two halves (cache, threads) in the figure. Each
//! choice is timed as a model of each depth of the space with every layer at that choice, and
//! a layer's share is the model's time less the rest of the model, over its depth (a layer in
//! a deeper model costs more: its weights crowd the caches); the rest of the model is the
//! intercept of the widest layer's timings at three depths.

use crate::eval::latency::Latency;
use crate::mlfs::space::SearchSpace;
use crate::model::{SubnetSpec, TeacherShape};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The file's name in a run folder.
pub const FILE: &str = "latency-table.csv";

/// One timed part of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyRow {
    /// `base` (everything but the layers) or `layer` (one layer of these widths).
    pub part: String,
    pub hidden: usize,
    /// Heads and FFN neurons of the layer (0 for the base).
    pub heads: usize,
    pub ffn: usize,
    /// The depth of the model the layer was timed in (0 for the base): a layer costs more in
    /// a deeper model (its weights and activations crowd the caches), so each depth of the
    /// space has its own rows.
    pub depth: usize,
    /// Milliseconds this part adds (median, and the same for the 90th percentile).
    pub median_ms: f64,
    pub p90_ms: f64,
    /// Where and how it was timed.
    pub processor: String,
    pub device: String,
    pub seq_len: usize,
    pub date: String,
    /// The teacher shape the table is for (`TeacherShape::key`).
    pub teacher: String,
}

/// A machine's latency table for one teacher shape.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyTable {
    pub rows: Vec<LatencyRow>,
}

/// What a table says about its origin, for the rows it writes.
pub struct Origin<'a> {
    pub processor: &'a str,
    pub device: &'a str,
    pub seq_len: usize,
}

/// The teacher shape as one comparable string (a table for another shape is refused).
pub fn teacher_key(t: &TeacherShape) -> String {
    format!(
        "layers={};heads={};heads_per_kv={};head_size={};ffn={};hidden={}",
        t.layers, t.heads, t.heads_per_kv, t.head_size, t.ffn, t.hidden
    )
}

/// A subnet of the first `depth` layers, every layer at these widths.
fn probe(depth: usize, heads: usize, ffn: usize, hidden: usize, t: &TeacherShape) -> SubnetSpec {
    SubnetSpec {
        layers: (0..depth).collect(),
        heads: heads.into(),
        ffn: ffn.into(),
        hidden: Some(hidden),
    }
    .canonical(t.hidden)
}

/// Rounds of timing each subnet takes: its figure is the median of its rounds' medians (and
/// p90s). The rounds go over every subnet in turn, so that a slow spell of this machine (another
/// process, a busy neighbour on a shared host) falls on one round of many subnets rather than on
/// every round of one; measured here, the same subnet's median moved 0.49–0.84 ms between
/// back-to-back single rounds on a 2-core VM.
pub const ROUNDS: usize = 5;

/// Times every subnet of `specs` in [`ROUNDS`] interleaved rounds with `time`.
pub fn time_interleaved(
    time: &mut dyn FnMut(&SubnetSpec) -> Result<Latency>,
    specs: &[SubnetSpec],
) -> Result<Vec<Latency>> {
    let mut rounds: Vec<Vec<Latency>> = vec![Vec::with_capacity(ROUNDS); specs.len()];
    for _ in 0..ROUNDS {
        for (spec, timed) in specs.iter().zip(&mut rounds) {
            timed.push(time(spec)?);
        }
    }
    let middle = |timed: &[Latency], pick: fn(&Latency) -> f64| {
        let mut v: Vec<f64> = timed.iter().map(pick).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Ok(rounds
        .iter()
        .map(|timed| Latency {
            median_ms: middle(timed, |l| l.median_ms),
            p90_ms: middle(timed, |l| l.p90_ms),
        })
        .collect())
}

/// The intercept at depth 0 of the least-squares line through (depth, time), not below 0.
fn intercept(depths: &[usize], times: impl Iterator<Item = f64>) -> f64 {
    let ys: Vec<f64> = times.collect();
    let n = ys.len() as f64;
    let xs: Vec<f64> = depths.iter().map(|&d| d as f64).collect();
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    (my - slope * mx).max(0.0)
}

impl LatencyTable {
    /// Times every (hidden, heads, FFN) choice of `space` with `time` (batch 1, the palette's
    /// sequence length, as exported); `progress` hears each part as it is timed.
    pub fn measure(
        space: &SearchSpace,
        origin: &Origin<'_>,
        time: &mut dyn FnMut(&SubnetSpec) -> Result<Latency>,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Self> {
        let t = &space.teacher;
        let date = chrono::Local::now().format("%Y-%m-%d %H:%M").to_string();
        let row =
            |part: &str, (hidden, heads, ffn, depth), median_ms: f64, p90_ms: f64| LatencyRow {
                part: part.into(),
                hidden,
                heads,
                ffn,
                depth,
                median_ms: crate::util::round_to(median_ms, 4),
                p90_ms: crate::util::round_to(p90_ms, 4),
                processor: origin.processor.into(),
                device: origin.device.into(),
                seq_len: origin.seq_len,
                date: date.clone(),
                teacher: teacher_key(t),
            };
        let mut rows = Vec::new();
        let widest = |v: &[usize], all: usize| v.iter().copied().max().unwrap_or(all);
        let (h_max, f_max) = (widest(&space.heads, t.heads), widest(&space.ffn, t.ffn));
        let deepest = widest(&space.depths, t.layers).clamp(1, t.layers.max(1));
        for &hidden in &space.hidden {
            // The rest of the model: the intercept of a line through the widest layer's
            // timings at three depths up to the deepest (least squares: one noisy timing moves
            // it less).
            let mut depths = vec![1, deepest.div_ceil(2), deepest];
            depths.dedup();
            let mut layers = Vec::new();
            for &depth in &space.depths {
                for &heads in &space.heads {
                    for &ffn in &space.ffn {
                        layers.push((depth, heads, ffn));
                    }
                }
            }
            // Every layer of a model of each depth at each choice: a layer's share of a model
            // as deep as the subnets it predicts.
            let probes: Vec<SubnetSpec> = depths
                .iter()
                .map(|&d| probe(d, h_max, f_max, hidden, t))
                .chain(layers.iter().map(|&(d, h, f)| probe(d, h, f, hidden, t)))
                .collect();
            progress(&format!(
                "hidden {hidden}: {} models in {ROUNDS} interleaved rounds",
                probes.len()
            ));
            let timed = time_interleaved(time, &probes)?;
            let (base_timed, layer_timed) = timed.split_at(depths.len());
            let (base_median, base_p90) = if depths.len() >= 2 {
                (
                    intercept(&depths, base_timed.iter().map(|l| l.median_ms)),
                    intercept(&depths, base_timed.iter().map(|l| l.p90_ms)),
                )
            } else {
                (0.0, 0.0)
            };
            progress(&format!(
                "hidden {hidden}: the rest of the model {base_median:.3} ms"
            ));
            rows.push(row("base", (hidden, 0, 0, 0), base_median, base_p90));
            for (&(depth, heads, ffn), l) in layers.iter().zip(layer_timed) {
                let share = |total: f64, base: f64| ((total - base) / depth as f64).max(0.0);
                let (median, p90) = (share(l.median_ms, base_median), share(l.p90_ms, base_p90));
                progress(&format!(
                    "hidden {hidden}, depth {depth}, {heads} heads, FFN {ffn}: {median:.3} ms a layer"
                ));
                rows.push(row("layer", (hidden, heads, ffn, depth), median, p90));
            }
        }
        Ok(Self { rows })
    }

    /// The predicted median latency (ms) of `spec`: the base of its hidden width plus each kept
    /// layer's row, timed at the table's depth nearest the subnet's; an error names a choice the
    /// table has no row for.
    pub fn predict(&self, spec: &SubnetSpec, t: &TeacherShape) -> Result<f64> {
        let hidden = spec.hidden_or(t.hidden);
        let kept = spec.layers.len();
        let depth = self
            .rows
            .iter()
            .filter(|r| r.part == "layer" && r.hidden == hidden)
            .map(|r| r.depth)
            .min_by_key(|&d| (d.abs_diff(kept), d))
            .unwrap_or(0);
        let find = |part: &str, heads: usize, ffn: usize| {
            let at = if part == "base" { 0 } else { depth };
            self.rows
                .iter()
                .find(|r| {
                    r.part == part
                        && r.hidden == hidden
                        && r.heads == heads
                        && r.ffn == ffn
                        && r.depth == at
                })
                .map(|r| r.median_ms)
        };
        let mut total = find("base", 0, 0)
            .with_context(|| format!("the latency table has no base row for hidden {hidden}"))?;
        for i in 0..spec.layers.len() {
            let (heads, ffn) = spec.layer_widths(i);
            total += find("layer", heads, ffn).with_context(|| {
                format!(
                    "the latency table has no row for a layer of {heads} heads and FFN {ffn} at hidden {hidden}"
                )
            })?;
        }
        Ok(total)
    }

    /// Refuses a table timed for another teacher shape, naming both.
    pub fn check_teacher(&self, t: &TeacherShape, path: &Path) -> Result<()> {
        let want = teacher_key(t);
        if self.rows.is_empty() {
            bail!("{}: the latency table has no rows", path.display());
        }
        if let Some(other) = self.rows.iter().find(|r| r.teacher != want) {
            bail!(
                "{}: the latency table was timed for teacher {} but this run's teacher is {want}",
                path.display(),
                other.teacher
            );
        }
        Ok(())
    }

    /// Whether the table was timed on this processor and device.
    pub fn is_of(&self, processor: &str, device: &str) -> bool {
        self.rows
            .first()
            .is_some_and(|r| r.processor == processor && r.device == device)
    }

    /// The table with every time multiplied by `factor`: the same machine running faster or
    /// slower as a whole than when it was timed.
    pub fn scaled(&self, factor: f64) -> Self {
        let mut rows = self.rows.clone();
        for r in &mut rows {
            r.median_ms *= factor;
            r.p90_ms *= factor;
        }
        Self { rows }
    }

    /// Where and when the table was timed, for messages.
    pub fn origin_line(&self) -> String {
        self.rows.first().map_or(String::new(), |r| {
            format!(
                "{} ({}), sequence length {}, timed {}",
                r.processor, r.device, r.seq_len, r.date
            )
        })
    }

    /// Writes the table (atomically).
    pub fn write(&self, path: &Path) -> Result<()> {
        crate::eval::csv_table::write_rows(path, &self.rows)
    }

    /// Reads a table written by [`Self::write`] (here or on another machine).
    pub fn read(path: &Path) -> Result<Self> {
        let rows: Vec<LatencyRow> = crate::eval::csv_table::read_rows(path)?;
        for r in &rows {
            if r.part != "base" && r.part != "layer" {
                bail!(
                    "{}: part '{}' is neither 'base' nor 'layer'",
                    path.display(),
                    r.part
                );
            }
            if !(r.median_ms.is_finite() && r.median_ms >= 0.0) {
                bail!(
                    "{}: a {} row holds a latency that is not a non-negative number",
                    path.display(),
                    r.part
                );
            }
        }
        Ok(Self { rows })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(part: &str, heads: usize, ffn: usize, depth: usize, ms: f64) -> LatencyRow {
        LatencyRow {
            part: part.into(),
            hidden: 384,
            heads,
            ffn,
            depth,
            median_ms: ms,
            p90_ms: ms,
            processor: "test".into(),
            device: "cpu".into(),
            seq_len: 32,
            date: "2026-12-02".into(),
            teacher: teacher_key(&TeacherShape::MINILM_L3),
        }
    }

    #[test]
    fn a_prediction_is_the_base_plus_its_layers_rows_at_the_nearest_depth() {
        let table = LatencyTable {
            rows: vec![
                row("base", 0, 0, 0, 0.05),
                row("layer", 12, 1536, 1, 0.50),
                row("layer", 3, 384, 1, 0.10),
                row("layer", 12, 1536, 3, 0.80),
                row("layer", 6, 768, 3, 0.40),
                row("layer", 3, 384, 3, 0.20),
            ],
        };
        let t = TeacherShape::MINILM_L3;
        let predict = |s: &str| table.predict(&s.parse().unwrap(), &t).unwrap();
        // Three layers: the depth-3 rows, one per layer.
        let per_layer = predict("layers=0,1,2;heads=12,6,3;ffn=1536,768,384");
        assert!((per_layer - (0.05 + 0.80 + 0.40 + 0.20)).abs() < 1e-12);
        // One layer: the depth-1 row. Two layers sit as near depth 1 as depth 3: the
        // shallower rows are taken.
        assert!((predict("layers=2;heads=3;ffn=384") - 0.15).abs() < 1e-12);
        assert!((predict("layers=1,2;heads=3;ffn=384") - 0.25).abs() < 1e-12);
        // A choice the table lacks is named.
        let err = table
            .predict(&"layers=0;heads=9;ffn=384".parse().unwrap(), &t)
            .unwrap_err();
        assert!(format!("{err}").contains("9 heads and FFN 384"), "{err}");
        // Written and read back, it predicts the same.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        table.write(&path).unwrap();
        let back = LatencyTable::read(&path).unwrap();
        assert_eq!(back, table);
        back.check_teacher(&t, &path).unwrap();
        let other = TeacherShape { layers: 6, ..t };
        let err = back.check_teacher(&other, &path).unwrap_err();
        assert!(
            format!("{err}").contains("this run's teacher is layers=6"),
            "{err}"
        );
    }
}
