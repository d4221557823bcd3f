//! What a search needs of a trained run, whichever its kind: its space, a fast quality
//! estimate, closed-form costs, a timer for the latency table, and the palette measurement that
//! verifies the winners.

use crate::eval::latency::Latency;
use crate::mlfs::space::SearchSpace;
use crate::model::SubnetSpec;
use anyhow::Result;
use std::path::Path;

/// A fast quality estimate of one subnet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// Higher is better (accuracy, or minus the loss): what the search maximises.
    pub merit: f64,
    /// The value as shown: dev accuracy on the subset, or validation loss on the few blocks.
    pub value: f64,
}

/// A subnet measured as a palette row (the whole dev split or validation set).
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    pub role: String,
    pub subnet: String,
    pub latency_median_ms: f64,
    pub latency_p90_ms: f64,
    pub params: usize,
    pub size_bytes: usize,
    /// Higher is better, as [`Estimate::merit`].
    pub merit: f64,
    /// Dev accuracy or validation loss.
    pub value: f64,
}

/// A trained run a search runs on.
pub trait Subject {
    /// The run folder (state, caches, tables and results go there).
    fn run_dir(&self) -> &Path;
    /// The trained space.
    fn space(&self) -> &SearchSpace;
    /// What the estimate and the measurement report: `dev accuracy` or `validation loss`.
    fn quality_name(&self) -> &'static str;
    /// The estimate on a fixed subset of the dev split (never the test split).
    fn estimate(&self, spec: &SubnetSpec) -> Result<Estimate>;
    /// Parameters and exported bytes, in closed form.
    fn params_and_size(&self, spec: &SubnetSpec) -> (usize, usize);
    /// Times a subnet as the palette does (batch 1, as exported), for the latency table.
    fn time(&self, spec: &SubnetSpec) -> Result<Latency>;
    /// The sequence length the latency is timed at.
    fn seq_len(&self) -> usize;
    /// The device the run computes on, in words.
    fn device_name(&self) -> String;
    /// Measures `subjects` (role, subnet) as palette rows, merged into the run's palette file,
    /// with `latencies` (one per subject, timed with [`Self::time`] in interleaved rounds) as
    /// their latency columns; `keep_going` is asked after each.
    fn measure(
        &self,
        subjects: &[(String, SubnetSpec)],
        latencies: &[Latency],
        keep_going: &dyn Fn() -> bool,
    ) -> Result<Vec<Measured>>;
}

/// Measures `subjects` into the palette file at `path` (`eval::rows::measure_into`, nothing
/// kept from before), each row's latency columns replaced by its entry of `latencies`, and
/// returns them as a search's measurements; `keep_going` is asked after each row.
pub fn measure_rows<R: crate::eval::rows::PaletteRow>(
    path: &Path,
    subjects: &[(String, SubnetSpec)],
    latencies: &[Latency],
    measure: &mut dyn FnMut(&str, &SubnetSpec) -> Result<R>,
    keep_going: &dyn Fn() -> bool,
) -> Result<Vec<Measured>> {
    anyhow::ensure!(
        latencies.len() == subjects.len(),
        "{} latencies for {} subnets",
        latencies.len(),
        subjects.len()
    );
    let mut timed = |role: &str, spec: &SubnetSpec| {
        let mut row = measure(role, spec)?;
        if let Some(i) = subjects.iter().position(|(_, s)| s == spec) {
            row.set_latency(latencies[i]);
        }
        Ok(row)
    };
    let mut out = Vec::new();
    let mut on_row = |row: &R, _kept: bool| {
        out.push(measured_of(row));
        keep_going()
    };
    crate::eval::rows::measure_into(path, subjects, false, &mut timed, &mut on_row)?;
    Ok(out)
}

/// A palette row as a search's measurement.
fn measured_of<R: crate::eval::rows::PaletteRow>(row: &R) -> Measured {
    let (median, p90) = row.latency_ms();
    Measured {
        role: row.role().to_string(),
        subnet: row.subnet().to_string(),
        latency_median_ms: median,
        latency_p90_ms: p90,
        params: row.params_total(),
        size_bytes: row.size_bytes(),
        merit: row.merit(),
        value: row.score(),
    }
}
