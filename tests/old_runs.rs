//! Run folders written by earlier code still open, resume, evaluate and export.
//! `tests/fixtures/pre-skeleton-run/` was written by commit 0fe88bc's `mlfs-studio train
//! --preset tests/fixtures/pre-skeleton-run.ron` (before the run skeleton `Run<T: Task>`
//! replaced the two trainers): three stages of two steps, rewired before stage 1, a checkpoint
//! every two steps. `tests/fixtures/per-layer-run/` was written the same way from
//! `tests/fixtures/per-layer-run.ron` by the code of issue 25 (per-layer widths, the palette
//! with roles and a listed per-layer subnet, measured at the end). In both, `metrics.jsonl` is
//! that run's own log, and the checkpoint of step 6 was deleted so that the folder resumes from
//! step 4.

mod common;

use mlfs_studio::eval::palette::read_csv;
use mlfs_studio::export::bert::ClassifierFormat;
use mlfs_studio::model::SubnetSpec;
use mlfs_studio::runs::export::export_classifier;
use mlfs_studio::train::classifier::accuracy::split_accuracy;
use mlfs_studio::train::protocol::TrainEvent;
use mlfs_studio::train::run::Flow;
use mlfs_studio::train::task::Task;
use mlfs_studio::train::ClassifierRun;
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    fixture_named("pre-skeleton-run")
}

fn fixture_named(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The events the old code logged.
fn old_events() -> Vec<TrainEvent> {
    events_of(&fixture())
}

fn events_of(dir: &Path) -> Vec<TrainEvent> {
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// (role, accuracy) of the last dev evaluation.
fn last_dev(events: &[TrainEvent]) -> Vec<(String, f64)> {
    let last = events.iter().rev().find_map(|e| match e {
        TrainEvent::DevEval { results, .. } => Some(results),
        _ => None,
    });
    last.unwrap()
        .iter()
        .map(|r| (r.role.clone(), r.accuracy))
        .collect()
}

/// Copies `fixture` to a new folder, resumes it from its step-4 checkpoint to the end, and
/// checks the steps after 4 against the fixture's own log: the same subnets and, to float
/// rounding (kernels that change only the last bits, such as the CPU GELU's erf, may come and
/// go), the same losses and the same last dev accuracies. Returns the folder's parent.
fn resume_like_its_log(fixture: &Path) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    common::copy_dir(fixture, &run_dir);
    std::fs::remove_file(run_dir.join("supernet.safetensors")).unwrap();
    std::fs::remove_file(run_dir.join("supernet.json")).unwrap();
    // The log is appended to; keep the old one aside for comparison.
    std::fs::remove_file(run_dir.join("metrics.jsonl")).unwrap();
    let mut run = ClassifierRun::resume(&run_dir).unwrap();
    assert_eq!(run.global_step, 4);
    assert!(
        run.task.orders().is_some(),
        "the rewiring orders were not restored"
    );
    let mut events = Vec::new();
    let mut ctl = |_: usize, _: &mut dyn FnMut(TrainEvent)| Flow::Continue;
    assert!(!run.run(&mut ctl, &mut |e| events.push(e)).unwrap());
    let old = events_of(fixture);
    let old_tail: Vec<_> = common::step_losses(&old)
        .into_iter()
        .filter(|(s, _)| *s > 4)
        .collect();
    assert_eq!(old_tail.len(), 2);
    let new_tail = common::step_losses(&events);
    assert_eq!(new_tail.len(), old_tail.len());
    for ((step, now), (old_step, then)) in new_tail.iter().zip(&old_tail) {
        assert_eq!(step, old_step);
        let names = |v: &[(String, f64)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(now), names(then), "step {step}");
        for ((_, a), (_, b)) in now.iter().zip(then) {
            assert!(
                (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                "step {step}: {a} vs {b}"
            );
        }
    }
    assert_eq!(last_dev(&events), last_dev(&old));
    (dir, run_dir)
}

#[test]
fn old_checkpoint_resumes_with_the_old_losses_and_exports() {
    let (dir, run_dir) = resume_like_its_log(&fixture());
    let reopened = ClassifierRun::open_trained(&run_dir).unwrap();
    let spec = reopened.task.space.minnet(2);
    let out = dir.path().join("export");
    let files =
        export_classifier(&reopened, &spec, None, ClassifierFormat::HfFolder, &out).unwrap();
    assert_eq!(files.len(), 4);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["subnet"], spec.to_string());
    assert_eq!(manifest["mlfs"]["rewired"], true);
}

#[test]
fn old_trained_supernet_opens_with_its_dev_accuracies() {
    let run = ClassifierRun::open_trained(&fixture()).unwrap();
    assert_eq!(run.global_step, run.total_steps());
    let t = &run.task;
    let got: Vec<(String, f64)> = t
        .report_subnets()
        .into_iter()
        .map(|(role, spec)| {
            let acc = split_accuracy(&t.net, &t.data.dev, &spec, t.pad_id).unwrap();
            (role, acc)
        })
        .collect();
    assert_eq!(got, last_dev(&old_events()));
}

#[test]
fn a_per_layer_run_resumes_evaluates_and_exports_its_per_layer_subnet() {
    let fixture = fixture_named("per-layer-run");
    let (dir, run_dir) = resume_like_its_log(&fixture);
    // Its palette, written with roles, reads back; the listed per-layer subnet's dev accuracy
    // is what the trained supernet gives today.
    let per_layer: SubnetSpec = "layers=0,1,2;heads=12,6,3;ffn=1536,768,384"
        .parse()
        .unwrap();
    let rows = read_csv(&fixture.join("palette.csv")).unwrap();
    assert_eq!(rows.len(), 9);
    let listed = rows.iter().find(|r| r.role == "listed").unwrap();
    assert_eq!(listed.subnet, per_layer.to_string());
    let run = ClassifierRun::open_trained(&fixture).unwrap();
    let t = &run.task;
    let now = split_accuracy(&t.net, &t.data.dev, &per_layer, t.pad_id).unwrap();
    assert_eq!(now, listed.dev_accuracy);
    // The resumed copy exports it as ONNX, each layer's widths in the manifest; a BERT folder
    // is refused, naming ONNX.
    let reopened = ClassifierRun::open_trained(&run_dir).unwrap();
    let out = dir.path().join("onnx");
    export_classifier(&reopened, &per_layer, None, ClassifierFormat::Onnx, &out).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["subnet"], per_layer.to_string());
    let widths: Vec<(u64, u64)> = manifest["layer_widths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["heads"].as_u64().unwrap(), l["ffn"].as_u64().unwrap()))
        .collect();
    assert_eq!(widths, [(12, 1536), (6, 768), (3, 384)]);
    let hf = dir.path().join("hf");
    let err = export_classifier(&reopened, &per_layer, None, ClassifierFormat::HfFolder, &hf)
        .unwrap_err();
    assert!(format!("{err:#}").contains("--format onnx"), "{err:#}");
}
