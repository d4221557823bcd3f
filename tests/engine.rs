//! MLFS training engine end to end on the shipped teacher and data, with small budgets.

use mlfs_studio::mlfs::adapters::AdaptedSupernet;
use mlfs_studio::mlfs::rewire;
use mlfs_studio::model::packing::TokenLayout;
use mlfs_studio::model::SubnetSpec;
use mlfs_studio::train::config::{Budget, RunConfig};
use mlfs_studio::train::protocol::TrainEvent;
use mlfs_studio::train::run::Flow;
use mlfs_studio::train::ClassifierRun;
use mlfs_studio::worker::{spawn, StartRequest};
use std::path::PathBuf;

mod common;

/// A small but complete run: all three stages, a few steps each.
fn small_config(steps: [usize; 3]) -> RunConfig {
    common::small_config(steps, 16, 48)
}

fn collect_run(trainer: &mut ClassifierRun) -> Vec<TrainEvent> {
    let mut events = Vec::new();
    let mut ctl = |_: usize, _: &mut dyn FnMut(TrainEvent)| Flow::Continue;
    trainer.run(&mut ctl, &mut |e| events.push(e)).unwrap();
    events
}

#[test]
fn small_run_learns_and_beats_the_majority_class() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = ClassifierRun::create(small_config([40, 20, 25]), dir.path()).unwrap();
    let majority = trainer.task.data.dev.majority_rate();
    let events = collect_run(&mut trainer);
    let maxnet_losses: Vec<f64> = events
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Step {
                stage: 0, losses, ..
            } => Some(losses[0].loss),
            _ => None,
        })
        .collect();
    assert_eq!(maxnet_losses.len(), 40);
    let first: f64 = maxnet_losses[..8].iter().sum::<f64>() / 8.0;
    let last: f64 = maxnet_losses[32..].iter().sum::<f64>() / 8.0;
    assert!(
        last < first - 0.1,
        "stage-0 loss did not fall: {first:.3} → {last:.3}"
    );
    let (_, final_eval) = common::dev_results(&events).pop().unwrap();
    for role in ["maxnet", "minnet"] {
        let acc = final_eval.iter().find(|(r, _)| r == role).unwrap().1;
        assert!(
            acc >= majority + 0.10,
            "{role} dev accuracy {acc:.3} vs majority {majority:.3}"
        );
    }
    assert!(dir.path().join("supernet.safetensors").is_file());
    assert!(dir.path().join("metrics.jsonl").is_file());
    let lines = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    assert!(lines.lines().count() >= 85);
}

#[test]
fn stop_then_resume_matches_an_uninterrupted_run() {
    let steps = [6, 5, 5];
    let full_dir = tempfile::tempdir().unwrap();
    let mut full = ClassifierRun::create(small_config(steps), full_dir.path()).unwrap();
    let reference = collect_run(&mut full);

    // Stop mid-stage 1 (after 9 steps), then resume from the checkpoint in a fresh trainer.
    let dir = tempfile::tempdir().unwrap();
    let mut first = ClassifierRun::create(small_config(steps), dir.path()).unwrap();
    let mut early = Vec::new();
    let mut ctl = |step: usize, _: &mut dyn FnMut(TrainEvent)| {
        if step >= 9 {
            Flow::Stop
        } else {
            Flow::Continue
        }
    };
    let stopped = first.run(&mut ctl, &mut |e| early.push(e)).unwrap();
    assert!(stopped);
    drop(first);
    let mut resumed = ClassifierRun::resume(dir.path()).unwrap();
    assert_eq!(resumed.global_step, 9);
    let later = collect_run(&mut resumed);

    let losses = common::step_losses;
    let mut joined = losses(&early);
    joined.extend(losses(&later));
    assert_eq!(
        joined,
        losses(&reference),
        "resumed run diverged from the uninterrupted one"
    );
    assert_eq!(
        common::dev_results(&later).last(),
        common::dev_results(&reference).last()
    );
}

/// Position-wise work on packed real tokens must not change what the padded layout computes:
/// the same logits, losses and adapter gradients (to float summation order).
#[test]
fn packed_tokens_give_the_padded_logits_and_gradients() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = ClassifierRun::create(small_config([2, 2, 0]), dir.path()).unwrap();
    collect_run(&mut trainer);
    trainer.task.net.set_stage(Some(1)).unwrap();
    let device = candle_core::Device::Cpu;
    // Lengths differ, so about half of the padded batch is padding.
    let idx: Vec<usize> = (0..12).collect();
    let (batch, labels) = trainer.task.data.dev.batch(&idx, 0);
    let lengths: Vec<usize> = batch
        .attention_mask
        .iter()
        .map(|row| row.iter().sum::<u32>() as usize)
        .collect();
    assert!(lengths.iter().min() < lengths.iter().max(), "{lengths:?}");
    let (ids, _) = mlfs_studio::model::tokenizer::batch_tensors(&batch, &device).unwrap();
    let labels = candle_core::Tensor::from_vec(labels, idx.len(), &device).unwrap();
    let packed = TokenLayout::of_batch(&batch, &device).unwrap();
    let padded = TokenLayout::padded(&batch.attention_mask, &device).unwrap();
    assert!(packed.is_packed());
    assert_eq!(packed.rows(), lengths.iter().sum::<usize>());
    let net = &trainer.task.net;
    let adapters = net.trainable(1);
    assert!(!adapters.is_empty());
    let spec: SubnetSpec = "layers=0,2;heads=9;ffn=1152".parse().unwrap();
    let run = |layout: &TokenLayout| {
        let out = net.forward(&ids, layout, &spec, None).unwrap();
        let loss = candle_nn::loss::cross_entropy(&out.logits, &labels).unwrap();
        let grads = loss.backward().unwrap();
        // Layer 1 is not in the subnet: its adapters get no gradient in either layout.
        let g: Vec<Option<Vec<f32>>> = adapters
            .iter()
            .map(|p| {
                let g = grads.get(p.var.as_tensor())?;
                Some(g.flatten_all().unwrap().to_vec1().unwrap())
            })
            .collect();
        (out.logits.to_vec2::<f32>().unwrap(), g)
    };
    let (logits_packed, grads_packed) = run(&packed);
    let (logits_padded, grads_padded) = run(&padded);
    for (a, b) in logits_packed
        .iter()
        .flatten()
        .zip(logits_padded.iter().flatten())
    {
        assert!((a - b).abs() < 1e-5, "logits {a} vs {b}");
    }
    let mut compared = 0;
    for (gp, gd) in grads_packed.iter().zip(&grads_padded) {
        assert_eq!(gp.is_some(), gd.is_some());
        let (Some(gp), Some(gd)) = (gp, gd) else {
            continue;
        };
        let scale = gd.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        for (a, b) in gp.iter().zip(gd) {
            assert!(
                (a - b).abs() <= 1e-4 * scale,
                "gradient {a} vs {b} (scale {scale})"
            );
            compared += 1;
        }
    }
    assert!(compared > 1000);
}

#[test]
fn rewiring_leaves_the_maxnet_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = ClassifierRun::create(small_config([3, 0, 0]), dir.path()).unwrap();
    collect_run(&mut trainer);
    trainer.task.net.set_stage(Some(1)).unwrap();
    let idx: Vec<usize> = (0..8).collect();
    let (batch, _) = trainer.task.data.dev.batch(&idx, 0);
    let (ids, _) =
        mlfs_studio::model::tokenizer::batch_tensors(&batch, &candle_core::Device::Cpu).unwrap();
    let layout = TokenLayout::of_batch(&batch, &candle_core::Device::Cpu).unwrap();
    let maxnet = SubnetSpec::maxnet(&trainer.task.space.teacher);
    let before = trainer
        .task
        .net
        .forward(&ids, &layout, &maxnet, None)
        .unwrap()
        .logits
        .to_vec2::<f32>()
        .unwrap();
    let (b2, _) = trainer
        .task
        .data
        .train
        .batch(&(0..16).collect::<Vec<_>>(), 0);
    let (i2, _) =
        mlfs_studio::model::tokenizer::batch_tensors(&b2, &candle_core::Device::Cpu).unwrap();
    let l2 = TokenLayout::of_batch(&b2, &candle_core::Device::Cpu).unwrap();
    let labels = candle_core::Tensor::from_vec(
        trainer.task.data.train.labels[..16].to_vec(),
        16,
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let batch2 = rewire::LabelledBatch {
        ids: i2,
        layout: l2,
        labels,
    };
    let orders = rewire::rewire(&mut trainer.task.net, &[batch2]).unwrap();
    assert!(
        orders
            .iter()
            .any(|o| o.heads != (0..12).collect::<Vec<_>>()),
        "rewiring changed nothing"
    );
    let after = trainer
        .task
        .net
        .forward(&ids, &layout, &maxnet, None)
        .unwrap()
        .logits
        .to_vec2::<f32>()
        .unwrap();
    for (a, b) in before.iter().flatten().zip(after.iter().flatten()) {
        assert!((a - b).abs() < 1e-4, "maxnet logits changed: {a} vs {b}");
    }
}

#[test]
fn worker_pauses_resumes_stops_and_reports_failures() {
    let dir = tempfile::tempdir().unwrap();
    let handle = spawn(
        StartRequest::New {
            config: Box::new(small_config([200, 0, 0])),
            run_dir: dir.path().join("run"),
        },
        None,
    );
    let step_of = |e: &TrainEvent| match e {
        TrainEvent::Step { global_step, .. } => Some(*global_step),
        _ => None,
    };
    // Wait for two steps, pause, and check that no step arrives while paused.
    let mut seen = 0;
    while seen < 2 {
        if let Some(s) = step_of(&handle.events.recv().unwrap()) {
            seen = s;
        }
    }
    handle
        .commands
        .send(mlfs_studio::train::protocol::TrainCmd::Pause)
        .unwrap();
    let paused_at = loop {
        match handle.events.recv().unwrap() {
            TrainEvent::Paused { global_step } => break global_step,
            e => {
                if let Some(s) = step_of(&e) {
                    seen = s;
                }
            }
        }
    };
    assert!(paused_at <= seen + 1);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(
        handle.events.try_iter().all(|e| step_of(&e).is_none()),
        "a step ran while paused"
    );
    handle
        .commands
        .send(mlfs_studio::train::protocol::TrainCmd::Resume)
        .unwrap();
    loop {
        if let Some(s) = step_of(&handle.events.recv().unwrap()) {
            assert!(s > paused_at);
            break;
        }
    }
    handle.stop();
    let finished = loop {
        if let TrainEvent::Finished { stopped, .. } = handle.events.recv().unwrap() {
            break stopped;
        }
    };
    assert!(finished);

    // A failing run (empty training file) becomes a Failed event, not a dead channel.
    let bad = dir.path().join("empty.jsonl");
    std::fs::write(&bad, "").unwrap();
    let mut cfg = small_config([5, 0, 0]);
    cfg.data.train = bad;
    let handle = spawn(
        StartRequest::New {
            config: Box::new(cfg),
            run_dir: dir.path().join("bad"),
        },
        None,
    );
    match handle.events.recv().unwrap() {
        TrainEvent::Failed { error } => assert!(
            error.contains("empty.jsonl") && error.contains("no examples"),
            "{error}"
        ),
        e => panic!("expected Failed, got {e:?}"),
    }
}

#[test]
fn presets_load_and_invalid_values_name_the_field() {
    let presets = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("presets");
    let full = RunConfig::load(&presets.join("sentiment-full.ron")).unwrap();
    assert_eq!(
        (full.rank, full.gamma, full.distill.alpha, full.distill.beta),
        (8, 0.5, 0.9, 0.1)
    );
    assert_eq!((full.batch_size, full.max_seq_len), (32, 64));
    assert!(full.stages.iter().all(|s| s.budget == Budget::Epochs(2)));
    assert_eq!(
        RunConfig::load(&presets.join("ablation-no-gradient-scaling.ron"))
            .unwrap()
            .gamma,
        0.0
    );
    RunConfig::load(&presets.join("sentiment-quick.ron")).unwrap();
    // The rank ablation: sentiment-full but for the rank (and alpha = 2r) and the name.
    for rank in [2, 4, 8, 16] {
        let mut ablation =
            RunConfig::load(&presets.join(format!("ablation-rank-{rank}.ron"))).unwrap();
        assert_eq!(
            (ablation.rank, ablation.lora_alpha),
            (rank, 2.0 * rank as f64)
        );
        ablation.rank = full.rank;
        ablation.lora_alpha = full.lora_alpha;
        ablation.name = full.name.clone();
        assert_eq!(
            ablation, full,
            "ablation-rank-{rank} differs in more than the rank"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.ron");
    std::fs::write(&bad, "(rank: 0, distill: (alpha: 1.5))").unwrap();
    let err = format!("{:#}", RunConfig::load(&bad).unwrap_err());
    assert!(
        err.contains("bad.ron") && err.contains("rank") && err.contains("distill.alpha"),
        "{err}"
    );
    std::fs::write(&bad, "(rank: \"eight\")").unwrap();
    let err = format!("{:#}", RunConfig::load(&bad).unwrap_err());
    assert!(
        err.contains("bad.ron") && err.contains("invalid preset"),
        "{err}"
    );
}

#[test]
fn label_seen_only_in_dev_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let dev = dir.path().join("dev.jsonl");
    std::fs::write(
        &dev,
        "{\"text\": \"fine\", \"label\": 1}\n{\"text\": \"meh\", \"label\": 7}\n",
    )
    .unwrap();
    let mut cfg = small_config([1, 0, 0]);
    cfg.data.dev = dev;
    let err = match ClassifierRun::create(cfg, &dir.path().join("run")) {
        Ok(_) => panic!("should fail"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("dev.jsonl") && err.contains("example 2") && err.contains("never uses"),
        "{err}"
    );
}
