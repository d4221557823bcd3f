//! Exporting a subnet of a trained run: what the command line and the studio both call.

use crate::export::bert::ClassifierFormat;
use crate::export::decoder_subnet::ExportFormat;
use crate::export::manifest::{manifest, Provenance};
use crate::export::{bert, decoder_subnet};
use crate::model::SubnetSpec;
use crate::train::config::RunConfig;
use crate::train::protocol::PaletteEntry;
use crate::train::task::Task;
use crate::train::{ClassifierRun, DecoderRun};
use anyhow::Result;
use std::path::{Path, PathBuf};

/// What an export's manifest says of its run: name, teacher, MLFS settings, whether the
/// teacher was rewired.
fn provenance(c: &RunConfig, rewired: bool) -> Provenance<'_> {
    Provenance {
        run: &c.name,
        teacher: &c.teacher,
        training: serde_json::json!({
            "rank": c.rank, "lora_alpha": c.lora_alpha, "gamma": c.gamma,
            "distill": c.distill, "random_subnets": c.random_subnets,
            "stages": c.stages, "rewired": rewired, "seed": c.seed,
        }),
    }
}

/// Exports `spec` of a trained classifier run as a BERT folder or ONNX model, with its palette
/// metrics.
pub fn export_classifier(
    run: &ClassifierRun,
    spec: &SubnetSpec,
    metrics: Option<&PaletteEntry>,
    format: ClassifierFormat,
    out: &Path,
) -> Result<Vec<PathBuf>> {
    let t = &run.task;
    let mut extra = serde_json::Map::new();
    extra.insert("metrics".into(), serde_json::to_value(metrics)?);
    let manifest = manifest(&provenance(&run.config, t.orders().is_some()), spec, extra);
    let labels = t.data.labels.display_names();
    bert::export_subnet(&t.net, &t.tokenizer, labels, spec, manifest, format, out)
}

/// Exports `subnet` (default: the run's first reported student) of a trained decoder run.
pub fn export_decoder(
    run: &DecoderRun,
    subnet: Option<&str>,
    format: ExportFormat,
    out: &Path,
) -> Result<Vec<PathBuf>> {
    let t = &run.task;
    let spec = t.subnet_or_student(subnet)?;
    // The run's own measurements, never through a link or from a pipe planted there.
    let csv_path = run.run_dir.join("lm-palette.csv");
    let measured = csv_path
        .symlink_metadata()
        .is_ok_and(|m| m.is_file())
        .then(|| crate::files::read_text(&csv_path, "palette").ok())
        .flatten();
    let mut extra = serde_json::Map::new();
    extra.insert("lm".into(), serde_json::to_value(&run.config.lm)?);
    extra.insert("measurements_csv".into(), measured.into());
    let manifest = manifest(&provenance(&run.config, false), &spec, extra);
    decoder_subnet::export_subnet(&t.net, &spec, manifest, format, out)
}
