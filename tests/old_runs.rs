//! Run folders written before the run skeleton (`Run<T: Task>`) replaced the two trainers still
//! open, resume and export. `tests/fixtures/pre-skeleton-run/` was written by commit 0fe88bc's
//! `mlfs-studio train --preset tests/fixtures/pre-skeleton-run.ron` (three stages of two steps,
//! rewired before stage 1, a checkpoint every two steps); its `metrics.jsonl` is that run's own
//! log, and the checkpoint of step 6 was deleted so that the folder resumes from step 4.

mod common;

use mlfs_studio::export::bert::ClassifierFormat;
use mlfs_studio::runs::export::export_classifier;
use mlfs_studio::train::classifier::accuracy::split_accuracy;
use mlfs_studio::train::protocol::TrainEvent;
use mlfs_studio::train::run::Flow;
use mlfs_studio::train::task::Task;
use mlfs_studio::train::ClassifierRun;
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pre-skeleton-run")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The events the old code logged.
fn old_events() -> Vec<TrainEvent> {
    let text = std::fs::read_to_string(fixture().join("metrics.jsonl")).unwrap();
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

#[test]
fn old_checkpoint_resumes_with_the_old_losses_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    copy_dir(&fixture(), &run_dir);
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
    let old = old_events();
    let old_tail: Vec<_> = common::step_losses(&old)
        .into_iter()
        .filter(|(s, _)| *s > 4)
        .collect();
    assert_eq!(old_tail.len(), 2);
    // The same subnets and, to float rounding, the same losses (kernels that change only the
    // last bits, such as the CPU GELU's erf, may come and go), the same dev accuracies.
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
