//! A decoder run as a search subject: validation loss on the first few validation blocks (the
//! run's adapters), closed-form costs, the prefill of the palette's latency prompt timed and
//! the subnet measured as the decoder palette does.

use super::subject::{measure_rows, Estimate, Measured, Subject};
use crate::eval::decoder::{measure_entry, palette_subjects};
use crate::eval::latency::Latency;
use crate::mlfs::space::SearchSpace;
use crate::model::llama::generate;
use crate::model::params::decoder_params_total;
use crate::model::SubnetSpec;
use crate::train::decoder::metrics::evaluate_blocks;
use crate::train::DecoderRun;
use anyhow::Result;
use std::path::Path;

/// Validation blocks the estimate reads: the first ones, the same for every candidate.
pub const ESTIMATE_BLOCKS: usize = 4;

/// A trained decoder run, searched.
pub struct DecoderSubject<'a> {
    pub run: &'a DecoderRun,
}

impl Subject for DecoderSubject<'_> {
    fn run_dir(&self) -> &Path {
        &self.run.run_dir
    }
    fn space(&self) -> &SearchSpace {
        &self.run.task.space
    }
    fn quality_name(&self) -> &'static str {
        "validation loss"
    }
    fn estimate(&self, spec: &SubnetSpec) -> Result<Estimate> {
        let task = &self.run.task;
        let blocks = &task.valid_blocks[..ESTIMATE_BLOCKS.min(task.valid_blocks.len())];
        let m = evaluate_blocks(
            task.net.net(),
            spec,
            true,
            blocks,
            self.run.config.batch_size,
        )?;
        Ok(Estimate {
            merit: -m.loss,
            value: m.loss,
        })
    }
    /// Every weight, embeddings included, 2 bytes each (an f16 export).
    fn params_and_size(&self, spec: &SubnetSpec) -> (usize, usize) {
        let net = self.run.task.net.net();
        let tied = net.lm_head.is_none();
        let total = decoder_params_total(spec, &net.shape(), net.config.vocab_size, tied);
        (total, total * 2)
    }
    /// The prefill of the latency prompt, as the palette's latency column.
    fn time(&self, spec: &SubnetSpec) -> Result<Latency> {
        let task = &self.run.task;
        let runs = self.run.config.palette.latency_runs.clamp(5, 10);
        let lat = generate::measure(task.net.net(), spec, task.settings.latency_prompt, 0, runs)?;
        Ok(Latency {
            median_ms: lat.prefill_ms,
            p90_ms: lat.prefill_ms_p90,
        })
    }
    fn seq_len(&self) -> usize {
        self.run.task.settings.latency_prompt
    }
    fn device_name(&self) -> String {
        let net = self.run.task.net.net();
        crate::model::device::device_name(net.embed.device())
    }
    fn measure(
        &self,
        subjects: &[(String, SubnetSpec)],
        latencies: &[Latency],
        keep_going: &dyn Fn() -> bool,
    ) -> Result<Vec<Measured>> {
        let (task, config) = (&self.run.task, &self.run.config);
        let palette = palette_subjects(task, config)?;
        let subjects: Vec<(String, SubnetSpec)> = subjects
            .iter()
            .map(|(role, s)| {
                let role = match role.as_str() {
                    "" => palette
                        .iter()
                        .find(|(r, p)| r != "teacher" && p == s)
                        .map_or("subnet", |(r, _)| r.as_str()),
                    other => other,
                };
                (role.to_string(), s.clone())
            })
            .collect();
        let path = self.run.run_dir.join("lm-palette.csv");
        let mut measure =
            |role: &str, spec: &SubnetSpec| measure_entry(task, role, spec, true, config);
        measure_rows(&path, &subjects, latencies, &mut measure, keep_going)
    }
}
