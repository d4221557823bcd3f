//! `mlfs-studio bench`: median training-step times on the shipped teacher, beside the
//! PyTorch reference figures quoted in the training-engine issue.

use crate::train::config::RunConfig;
use crate::train::trainer::Trainer;
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
pub fn bench(steps: usize) -> Result<()> {
    let dir = tempfile_dir()?;
    let config = RunConfig { eval_every: 0, checkpoint_every: 0, ..RunConfig::default() };
    let mut trainer = Trainer::create(config, &dir)?;
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
    println!("  stage 0 (maxnet only):     {:.3} s   PyTorch {:.3} s   ratio {:.2}", report[0], PYTORCH_STAGE0_S, report[0] / PYTORCH_STAGE0_S);
    println!("  stage 1 (4 subnets):       {:.3} s", report[1]);
    println!("  stage 2 (4 subnets):       {:.3} s", report[2]);
    println!("  stages 1-2 mean:           {:.3} s   PyTorch {:.3} s   ratio {:.2}", stage12, PYTORCH_STAGE12_S, stage12 / PYTORCH_STAGE12_S);
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("mlfs-bench-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).ok();
    }
    Ok(dir)
}
