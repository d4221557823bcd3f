//! `mlfs-studio bench --preset code-….ron`: decoder training-step time and peak memory (our own
//! figures only: PyTorch's are measured beside them, `scripts/bench-gpu.sh` on a GPU).

use crate::model::device::{device_name, gpu_memory_used};
use crate::train::config::RunConfig;
use crate::train::run::Placement;
use crate::train::task::Task;
use crate::train::DecoderRun;
use anyhow::{Context, Result};
use std::path::Path;
use std::time::Instant;

/// Peak resident memory of this process so far (MB), from /proc.
fn peak_rss_mb() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<usize>()
                .ok()
        })
        .map_or(0, |kb| kb / 1024)
}

/// The most GPU memory in use while it runs, polled on a thread of its own (the driver has no
/// peak counter; PyTorch's figure is its allocator's peak, which this approximates from above).
struct PeakSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl PeakSampler {
    fn start(device: &candle_core::Device) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let thread = device.is_cuda().then(|| {
            let (device, stop) = (device.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut peak = 0;
                while !stop.load(Ordering::Relaxed) {
                    peak = peak.max(gpu_memory_used(&device).unwrap_or(0));
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                peak
            })
        });
        Self { stop, thread }
    }

    /// Bytes at the highest sample (0 on the CPU).
    fn stop(self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.and_then(|t| t.join().ok()).unwrap_or(0)
    }
}

/// Times `steps` decoder steps of the preset's first stage (after one warm-up step).
pub fn bench_decoder(preset: &Path, steps: usize, placement: Placement) -> Result<()> {
    crate::cli::bench::check_steps(steps)?;
    crate::say!("{}", crate::eval::machine::describe());
    let config = placement.apply(RunConfig::load(preset)?);
    // A fresh folder of an unpredictable name, removed when the bench ends.
    let scratch = tempfile::tempdir().context("cannot create a temporary folder")?;
    let dir = scratch.path().join("run");
    let loaded_at = Instant::now();
    let mut trainer = DecoderRun::create(config, &dir)?;
    let load_s = loaded_at.elapsed().as_secs_f64();
    let rss_loaded = peak_rss_mb();
    let device = trainer.task.device().clone();
    let gpu_loaded = gpu_memory_used(&device);
    let mut sink = |_e: crate::train::protocol::TrainEvent| {};
    trainer.start_stage(0, &mut sink)?;
    let mut times = Vec::with_capacity(steps);
    let peak = PeakSampler::start(&device);
    crate::model::device::gpu_pool_peak(&device, true);
    for step in 0..=steps {
        let started = Instant::now();
        trainer.train_step(0, step)?;
        trainer.global_step += 1;
        if step > 0 {
            times.push(started.elapsed().as_secs_f64());
        }
    }
    let gpu_peak = peak.stop();
    let pool_peak = crate::model::device::gpu_pool_peak(&device, false);
    times.sort_by(|a, b| a.total_cmp(b));
    let median = times.get(times.len() / 2).copied().unwrap_or(f64::NAN);
    let c = &trainer.config;
    let mode = if trainer.task.settings.train_base_weights {
        "all weights"
    } else {
        "MLFS adapters"
    };
    crate::say!(
        "decoder step, {} ({mode}, alpha {}), batch {} x {} tokens, {} {:?}, median of {steps}:",
        c.name,
        c.distill.alpha,
        c.batch_size,
        c.max_seq_len,
        device_name(&device),
        c.precision
    );
    if let (Some(now), Some(loaded)) = (gpu_memory_used(&device), gpu_loaded) {
        let min = times.first().copied().unwrap_or(f64::NAN);
        crate::say!("  {median:.4} s/step (fastest {min:.4} s), load {load_s:.1} s");
        crate::say!(
            "  GPU memory in use: peak {} MB during the steps (sampled every 2 ms), {} MB after \
             them, {} MB after loading",
            gpu_peak.max(now) >> 20,
            now >> 20,
            loaded >> 20
        );
        if let Some(bytes) = pool_peak {
            crate::say!(
                "  peak of live allocations during the steps: {} MiB (the allocator's peak, as \
                 torch.cuda.max_memory_allocated reports PyTorch's)",
                bytes >> 20
            );
        }
        return Ok(());
    }
    crate::say!("  {median:.2} s/step");
    crate::say!(
        "  peak memory {} MB (after loading {} MB, load {load_s:.1} s)",
        peak_rss_mb(),
        rss_loaded
    );
    Ok(())
}
