//! `mlfs-studio bench`: median training-step times on the shipped teacher, beside the
//! PyTorch reference figures quoted in the training-engine issue.

use crate::mlfs::adapters::AdaptedSupernet;
use crate::train::config::RunConfig;
use crate::train::run::Placement;
use crate::train::ClassifierRun;
use anyhow::Result;
use std::time::Instant;

/// PyTorch (eager, fp32, 2 threads) step times on this machine, seconds: stage 0, stages 1-2.
const PYTORCH_STAGE0_S: f64 = 0.354;
const PYTORCH_STAGE12_S: f64 = 0.854;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

/// Times `steps` optimizer steps of each stage at batch 32, length 64 and prints the medians.
pub fn bench(steps: usize, placement: Placement) -> Result<()> {
    let dir = tempfile_dir()?;
    let config = placement.apply(RunConfig {
        eval_every: 0,
        checkpoint_every: 0,
        ..RunConfig::default()
    });
    let mut trainer = ClassifierRun::create(config, &dir)?;
    let mut sink = |_e: crate::train::protocol::TrainEvent| {};
    let mut report = Vec::new();
    for stage in 0..3 {
        trainer.start_stage(stage, &mut sink)?;
        let mut times = Vec::with_capacity(steps);
        for step in 0..steps + 1 {
            let started = Instant::now();
            trainer.train_step(stage, step)?;
            trainer.global_step += 1;
            if step > 0 {
                times.push(started.elapsed().as_secs_f64());
            }
        }
        report.push(median(times));
    }
    let stage12 = (report[1] + report[2]) / 2.0;
    println!("training step, batch 32, length <= 64, median of {steps} steps:");
    println!(
        "  stage 0 (maxnet only):     {:.3} s   PyTorch {:.3} s   ratio {:.2}",
        report[0],
        PYTORCH_STAGE0_S,
        report[0] / PYTORCH_STAGE0_S
    );
    println!("  stage 1 (4 subnets):       {:.3} s", report[1]);
    println!("  stage 2 (4 subnets):       {:.3} s", report[2]);
    println!(
        "  stages 1-2 mean:           {:.3} s   PyTorch {:.3} s   ratio {:.2}",
        stage12,
        PYTORCH_STAGE12_S,
        stage12 / PYTORCH_STAGE12_S
    );
    latency_report(&mut trainer)?;
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

/// Reference latencies (ms, batch 1, length 32, 2 threads) of the same merged subnets on this
/// machine, quoted in the palette issue: (subnet, ONNX Runtime, PyTorch eager).
const LATENCY_REFERENCES: [(&str, f64, f64); 4] = [
    ("layers=0,1,2;heads=12;ffn=1536", 2.16, 3.69),
    ("layers=0,1,2;heads=6;ffn=768", 1.25, 2.45),
    ("layers=1,2;heads=9;ffn=1152", 1.07, 2.14),
    ("layers=2;heads=3;ffn=384", 0.28, 0.68),
];

/// Latency of maxnet, two medium subnets and the minnet: merged (exported) and on the fly.
fn latency_report(trainer: &mut ClassifierRun) -> Result<()> {
    use crate::eval::latency::{measure, probe_input};
    use crate::eval::palette::{dense_latency, dense_subnet};
    trainer.task.net.set_stage(None)?;
    let device = trainer.task.net.encoder.device().clone();
    let (ids, mask) = probe_input(32, &device)?;
    println!("inference latency, batch 1, length 32, median of 50 runs (ms):");
    println!(
        "  {:<34} {:>8} {:>10} {:>8} {:>8}",
        "subnet", "merged", "on-the-fly", "ORT", "PyTorch"
    );
    for (text, ort, torch) in LATENCY_REFERENCES {
        let spec: crate::model::SubnetSpec = text.parse()?;
        let (model, ..) = dense_subnet(&trainer.task, &spec)?;
        let merged = dense_latency(&model, 32, 50)?;
        let on_the_fly = measure(3, 50, || {
            trainer.task.net.forward(&ids, &mask, &spec, None)?;
            crate::model::device::synchronize(&device)
        })?;
        println!(
            "  {:<34} {:>8.3} {:>10.3} {:>8.2} {:>8.2}",
            text, merged.median_ms, on_the_fly.median_ms, ort, torch
        );
    }
    Ok(())
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("mlfs-bench-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).ok();
    }
    Ok(dir)
}
