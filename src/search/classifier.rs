//! A classifier run as a search subject: dev loss and accuracy on a fixed subset of the dev
//! split (the run's adapters, the supernet sliced), closed-form costs, the merged dense subnet
//! timed and measured as the palette does.

use super::subject::{measure_rows, Estimate, Measured, Subject};
use crate::eval::latency::Latency;
use crate::eval::palette::{dense_latency, dense_subnet, measure_subnet, role_in};
use crate::export::merged::subnet_config;
use crate::mlfs::space::SearchSpace;
use crate::model::packing::TokenLayout;
use crate::model::tokenizer::ids_tensor;
use crate::model::SubnetSpec;
use crate::train::ClassifierRun;
use anyhow::Result;
use candle_core::D;
use std::path::Path;

/// Dev examples the estimate reads: the first ones of the split, the same for every candidate.
pub const ESTIMATE_EXAMPLES: usize = 512;
/// Examples per estimate batch.
const BATCH: usize = 64;

/// A trained classifier run, searched.
pub struct ClassifierSubject<'a> {
    pub run: &'a ClassifierRun,
}

/// Mean cross-entropy and accuracy of `spec` on the first `n` examples of the dev split.
pub fn dev_subset_metrics(run: &ClassifierRun, spec: &SubnetSpec, n: usize) -> Result<(f64, f64)> {
    let task = &run.task;
    let dev = &task.data.dev;
    let n = n.min(dev.len());
    let (mut loss, mut correct) = (0f64, 0usize);
    let indices: Vec<usize> = (0..n).collect();
    for chunk in indices.chunks(BATCH) {
        let (batch, labels) = dev.batch(chunk, task.pad_id);
        let device = task.net.encoder.device();
        let ids = ids_tensor(&batch, device)?;
        let layout = TokenLayout::of_batch(&batch, device)?;
        let logits = task.net.forward(&ids, &layout, spec, None)?.logits.detach();
        let log_p = candle_nn::ops::log_softmax(&logits, D::Minus1)?.to_vec2::<f32>()?;
        for (row, &label) in log_p.iter().zip(&labels) {
            loss -= f64::from(row[label as usize]);
            let best = row
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(i, _)| i);
            correct += usize::from(best == label as usize);
        }
    }
    let n = n.max(1) as f64;
    Ok((loss / n, correct as f64 / n))
}

impl Subject for ClassifierSubject<'_> {
    fn run_dir(&self) -> &Path {
        &self.run.run_dir
    }
    fn space(&self) -> &SearchSpace {
        &self.run.task.space
    }
    fn quality_name(&self) -> &'static str {
        "dev accuracy"
    }
    /// Accuracy on the subset; its loss breaks ties (a few hundred examples give coarse steps).
    fn estimate(&self, spec: &SubnetSpec) -> Result<Estimate> {
        let (loss, accuracy) = dev_subset_metrics(self.run, spec, ESTIMATE_EXAMPLES)?;
        Ok(Estimate {
            merit: accuracy - 1e-3 * loss,
            value: accuracy,
        })
    }
    /// The merged export's weights (the head included), 4 bytes each.
    fn params_and_size(&self, spec: &SubnetSpec) -> (usize, usize) {
        let net = &self.run.task.net;
        let config = subnet_config(&net.encoder.config, spec);
        let head = net.classes() * (config.hidden_size + 1);
        let params = config.param_count() + head;
        (params, params * 4)
    }
    fn time(&self, spec: &SubnetSpec) -> Result<Latency> {
        let (model, ..) = dense_subnet(&self.run.task, spec)?;
        let p = &self.run.config.palette;
        dense_latency(&model, p.latency_seq_len, p.latency_runs.max(50))
    }
    fn seq_len(&self) -> usize {
        self.run.config.palette.latency_seq_len
    }
    fn device_name(&self) -> String {
        crate::model::device::device_name(self.run.task.net.encoder.device())
    }
    fn measure(
        &self,
        subjects: &[(String, SubnetSpec)],
        latencies: &[Latency],
        keep_going: &dyn Fn() -> bool,
    ) -> Result<Vec<Measured>> {
        let task = &self.run.task;
        let palette = &self.run.config.palette;
        let path = self.run.run_dir.join("palette.csv");
        let subjects: Vec<(String, SubnetSpec)> = subjects
            .iter()
            .map(|(role, s)| {
                let role = if role.is_empty() {
                    role_in(task, s)
                } else {
                    role
                };
                (role.to_string(), s.clone())
            })
            .collect();
        let mut measure = |role: &str, spec: &SubnetSpec| {
            let mut row = measure_subnet(task, palette, spec)?;
            row.role = role.to_string();
            Ok(row)
        };
        measure_rows(&path, &subjects, latencies, &mut measure, keep_going)
    }
}
