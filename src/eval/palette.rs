//! The subnet palette: accuracy, size and measured latency of every subnet, and its CSV.

use super::latency::{measure, probe_input, Latency};
use super::rows::{self, PaletteRow};
use crate::export::classifier::DenseClassifier;
use crate::export::folder::safetensors_bytes;
use crate::export::manifest::storage_report;
use crate::export::merged::{merged_tensors, param_counts, subnet_config};
use crate::mlfs::classifier::ClassifierSupernet;
use crate::model::weights::WeightStore;
use crate::model::SubnetSpec;
use crate::train::classifier::accuracy::split_accuracy;
use crate::train::classifier::ClassifierTask;
use crate::train::config::PaletteConfig;
use crate::train::protocol::PaletteEntry;
use anyhow::Result;
use std::path::Path;

/// Builds the merged dense classifier of a subnet in memory (what an export would load).
pub fn dense_subnet(
    task: &ClassifierTask,
    spec: &SubnetSpec,
) -> Result<(DenseClassifier, usize, usize, usize)> {
    let tensors = merged_tensors(&task.net, spec)?;
    let (total, non_embedding) = param_counts(&tensors);
    let size_bytes = safetensors_bytes(&tensors)?.len();
    let config = subnet_config(&task.net.encoder.config, spec);
    let store = WeightStore::from_tensors(
        Path::new("<merged subnet>"),
        tensors.into_iter().collect(),
        &["bert."],
    );
    let model =
        DenseClassifier::from_tensors(config, &store, task.data.labels.display_names().to_vec())?;
    Ok((model, total, non_embedding, size_bytes))
}

/// Latency of a dense classifier at batch 1.
pub fn dense_latency(model: &DenseClassifier, seq_len: usize, runs: usize) -> Result<Latency> {
    let (ids, layout) = probe_input(seq_len, model.config.vocab_size, model.device())?;
    // The clock stops when the device has finished, not when the work is queued.
    measure(crate::eval::latency::WARMUP_RUNS, runs, || {
        model.logits_of(&ids, &layout)?;
        crate::model::device::synchronize(model.device())
    })
}

/// Measures one subnet: accuracy on dev and test, parameters, exported size, latency.
pub fn measure_subnet(
    task: &ClassifierTask,
    p: &PaletteConfig,
    spec: &SubnetSpec,
) -> Result<PaletteEntry> {
    let (model, params_total, params_non_embedding, size_bytes) = dense_subnet(task, spec)?;
    let latency = dense_latency(&model, p.latency_seq_len, p.latency_runs)?;
    let dev_accuracy = split_accuracy(&task.net, &task.data.dev, spec, task.pad_id)?;
    let test_accuracy = split_accuracy(&task.net, &task.data.test, spec, task.pad_id)?;
    Ok(PaletteEntry {
        role: role_in(task, spec).to_string(),
        subnet: spec.to_string(),
        layers: spec.layers.len(),
        // The widest layer's; a per-layer subnet's every width is in its spec (`subnet`).
        heads: spec.heads.max(),
        ffn: spec.ffn.max(),
        hidden: spec.hidden_or(task.space.teacher.hidden),
        params_total,
        params_non_embedding,
        size_bytes,
        latency_ms_median: crate::util::round_to(latency.median_ms, 4),
        latency_ms_p90: crate::util::round_to(latency.p90_ms, 4),
        dev_accuracy,
        test_accuracy,
    })
}

/// A subnet's role in a classifier palette: the space's maxnet or minnet, another subnet of
/// its grid, or one listed in `palette.subnets` (or asked for by name) outside the grid.
pub fn role_in(task: &ClassifierTask, spec: &SubnetSpec) -> &'static str {
    let space = &task.space;
    if *spec == space.maxnet() {
        "maxnet"
    } else if *spec == space.minnet(2) {
        "minnet"
    } else if space.all().contains(spec) {
        "subnet"
    } else {
        "listed"
    }
}

impl PaletteRow for PaletteEntry {
    /// One row per subnet: a measurement again replaces it, whatever role it had then.
    fn key_of(_role: &str, subnet: &str) -> String {
        subnet.to_string()
    }
    fn set_latency(&mut self, latency: Latency) {
        self.latency_ms_median = crate::util::round_to(latency.median_ms, 4);
        self.latency_ms_p90 = crate::util::round_to(latency.p90_ms, 4);
    }
}

/// Front membership on dev accuracy: (size front, latency front) per entry.
pub fn fronts(entries: &[PaletteEntry]) -> (Vec<bool>, Vec<bool>) {
    rows::fronts(entries)
}

/// Writes `palette.csv` with the fronts computed on dev accuracy.
pub fn write_csv(path: &Path, entries: &[PaletteEntry]) -> Result<()> {
    rows::write(path, entries)
}

/// One line comparing MLFS's constant storage with the sum of exported subnets.
pub fn storage_summary(net: &ClassifierSupernet, entries: &[PaletteEntry]) -> Result<String> {
    let v = storage_report(net);
    let kept = v["palette_bytes_f32"].as_u64().unwrap_or(0) as f64;
    let exported: f64 = entries.iter().map(|e| e.size_bytes as f64).sum();
    Ok(format!(
        "storage: MLFS keeps the whole palette of {} subnets in {:.1} MB (teacher + adapters + head + projections, f32); exported separately they take {:.1} MB ({:.1}x)",
        entries.len(),
        kept / 1e6,
        exported / 1e6,
        exported / kept.max(1.0)
    ))
}

/// Measures `specs` one by one, handing each result to `on_entry` as soon as it is known
/// (return `false` from it to stop early), and rewrites `palette.csv` in `run_dir` after each
/// one: the new rows replace those of the same subnets, the other rows of an existing palette
/// stay (a partial, stopped or killed measurement never truncates it).
pub fn evaluate_palette(
    task: &ClassifierTask,
    palette: &PaletteConfig,
    run_dir: &Path,
    specs: &[SubnetSpec],
    on_entry: &mut dyn FnMut(&PaletteEntry) -> bool,
) -> Result<(Vec<PaletteEntry>, std::path::PathBuf)> {
    let path = run_dir.join("palette.csv");
    let subjects: Vec<(String, SubnetSpec)> = specs
        .iter()
        .map(|s| (role_in(task, s).to_string(), s.clone()))
        .collect();
    let mut measure = |_: &str, spec: &SubnetSpec| measure_subnet(task, palette, spec);
    let mut on_row = |e: &PaletteEntry, _kept: bool| on_entry(e);
    let merged = rows::measure_into(&path, &subjects, false, &mut measure, &mut on_row)?;
    Ok((merged, path))
}

/// What a classifier run's palette measures: every subnet of the uniform grid, then the run's
/// `palette.subnets` not among them.
pub fn palette_specs(
    space: &crate::mlfs::space::SearchSpace,
    config: &crate::train::config::RunConfig,
) -> Result<Vec<SubnetSpec>> {
    let mut specs = space.all();
    for spec in crate::train::config::listed_subnets(config, &space.teacher)? {
        if !specs.contains(&spec) {
            specs.push(spec);
        }
    }
    Ok(specs)
}

/// The subnets of `specs` that `run_dir/palette.csv` has no row for: what resumes a stopped
/// measurement of the whole space. Rows measured before the run's weights last changed (a
/// palette of a stopped run, then trained further) do not count: everything is measured again.
pub fn missing_specs(run_dir: &Path, specs: Vec<SubnetSpec>) -> Result<Vec<SubnetSpec>> {
    let path = run_dir.join("palette.csv");
    if path.symlink_metadata().is_err() {
        return Ok(specs);
    }
    let modified = |p: &Path| p.symlink_metadata().and_then(|m| m.modified()).ok();
    let weights = modified(&run_dir.join("supernet.safetensors")).or_else(|| {
        crate::train::checkpoint::complete_steps(run_dir)
            .last()
            .and_then(|s| {
                modified(
                    &crate::train::checkpoint::checkpoints_dir(run_dir)
                        .join(format!("step-{s:08}")),
                )
            })
    });
    if let (Some(rows), Some(weights)) = (modified(&path), weights) {
        if rows < weights {
            return Ok(specs);
        }
    }
    let have: Vec<String> = read_csv(&path)?.into_iter().map(|e| e.subnet).collect();
    Ok(specs
        .into_iter()
        .filter(|s| !have.contains(&s.to_string()))
        .collect())
}

/// Reads a `palette.csv` written by [`write_csv`] (for the UI and exports), also after a
/// spreadsheet or Python's `csv` module re-saved it; files written before the role column read
/// every row as a subnet.
pub fn read_csv(path: &Path) -> Result<Vec<PaletteEntry>> {
    rows::read(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(role: &str, subnet: &str) -> PaletteEntry {
        PaletteEntry {
            role: role.into(),
            subnet: subnet.into(),
            layers: 3,
            heads: 12,
            ffn: 1536,
            hidden: 384,
            params_total: 17_240_000,
            params_non_embedding: 5_300_000,
            size_bytes: 68_960_000,
            latency_ms_median: 1.25,
            latency_ms_p90: 1.5,
            dev_accuracy: 0.8863,
            test_accuracy: 0.862,
        }
    }

    /// The file round-trips by header name, columns in any order; a file from before roles
    /// (no `role` column) reads every row as a subnet; a measurement again replaces its row.
    #[test]
    fn palette_csv_round_trips_by_header_and_old_files_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("palette.csv");
        let rows = vec![
            entry("maxnet", "layers=0,1,2;heads=12;ffn=1536"),
            entry("listed", "layers=0,1,2;heads=12,6,3;ffn=1536,768,384"),
        ];
        write_csv(&path, &rows).unwrap();
        assert_eq!(read_csv(&path).unwrap(), rows);
        // Columns swapped, as a spreadsheet may save them, and the role column missing.
        std::fs::write(
            &path,
            "subnet,dev_accuracy,layers,heads,ffn,hidden,params_total,params_non_embedding,size_bytes,latency_ms_median,latency_ms_p90,test_accuracy,on_front_size,on_front_latency\n\
             layers=2;heads=3;ffn=384,0.85,1,3,384,384,12360000,470000,49440000,0.5,0.6,0.836,true,true\n",
        )
        .unwrap();
        let old = read_csv(&path).unwrap();
        assert_eq!(old.len(), 1);
        assert_eq!(
            (old[0].role.as_str(), old[0].dev_accuracy),
            ("subnet", 0.85)
        );
        let mut again = entry("minnet", "layers=2;heads=3;ffn=384");
        again.dev_accuracy = 0.86;
        let merged = rows::merge(old, again.clone());
        assert_eq!(merged, vec![again]);
    }
}
