//! `mlfs-studio bench`: median training-step times and batch-1 latencies on the shipped
//! teacher. Only our own figures: a reference measured on another machine means nothing here,
//! so PyTorch's are measured beside ours (`../shared/reference`, see the README).

use crate::mlfs::adapters::AdaptedSupernet;
use crate::train::config::RunConfig;
use crate::train::run::Placement;
use crate::train::ClassifierRun;
use anyhow::{Context, Result};
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

/// Times `steps` optimizer steps of each stage at batch 32, length 64 and prints the medians.
pub fn bench(steps: usize, placement: Placement) -> Result<()> {
    check_steps(steps)?;
    crate::say!("{}", crate::eval::machine::describe());
    // A fresh folder of an unpredictable name, removed when the bench ends.
    let scratch = tempfile::tempdir().context("cannot create a temporary folder")?;
    let dir = scratch.path().join("run");
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
    crate::say!("training step, batch 32, length <= 64, median of {steps} steps:");
    crate::say!("  stage 0 (maxnet only):     {:.3} s", report[0]);
    crate::say!("  stage 1 (4 subnets):       {:.3} s", report[1]);
    crate::say!("  stage 2 (4 subnets):       {:.3} s", report[2]);
    crate::say!("  stages 1-2 mean:           {:.3} s", stage12);
    latency_report(&mut trainer)?;
    Ok(())
}

/// The four subnets the PyTorch reference measures too: maxnet, two medium ones, the minnet.
const LATENCY_SUBNETS: [&str; 4] = [
    "layers=0,1,2;heads=12;ffn=1536",
    "layers=0,1,2;heads=6;ffn=768",
    "layers=1,2;heads=9;ffn=1152",
    "layers=2;heads=3;ffn=384",
];

/// Latency of maxnet, two medium subnets and the minnet: merged (exported) and on the fly.
fn latency_report(trainer: &mut ClassifierRun) -> Result<()> {
    use crate::eval::latency::{measure, probe_input};
    use crate::eval::palette::{dense_latency, dense_subnet};
    trainer.task.net.set_stage(None)?;
    let device = trainer.task.net.encoder.device().clone();
    let vocab = trainer.task.net.encoder.config.vocab_size;
    let (ids, layout) = probe_input(32, vocab, &device)?;
    crate::say!("inference latency, batch 1, length 32, median of 50 runs (ms):");
    crate::say!("  {:<34} {:>8} {:>10}", "subnet", "merged", "on-the-fly");
    for text in LATENCY_SUBNETS {
        let spec: crate::model::SubnetSpec = text.parse()?;
        let (model, ..) = dense_subnet(&trainer.task, &spec)?;
        let merged = dense_latency(&model, 32, 50)?;
        let on_the_fly = measure(crate::eval::latency::WARMUP_RUNS, 50, || {
            trainer.task.net.forward(&ids, &layout, &spec, None)?;
            crate::model::device::synchronize(&device)
        })?;
        crate::say!(
            "  {:<34} {:>8.3} {:>10.3}",
            text,
            merged.median_ms,
            on_the_fly.median_ms
        );
    }
    Ok(())
}

/// Most timed steps of one bench (far beyond any useful median).
const MAX_BENCH_STEPS: usize = 10_000;

/// Refuses a step count of 0 or beyond [`MAX_BENCH_STEPS`].
pub fn check_steps(steps: usize) -> Result<()> {
    if steps == 0 || steps > MAX_BENCH_STEPS {
        anyhow::bail!("--steps {steps} is outside 1..={MAX_BENCH_STEPS}");
    }
    Ok(())
}
