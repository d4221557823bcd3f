//! `MLFS_PROFILE=1`: where a step's time and memory go, printed to standard error per phase.
//!
//! The GPU runs ahead of the host, so each lap waits for it first (the laps then measure work,
//! not queueing); off by default because that wait costs the overlap.

use candle_core::Device;
use std::time::Instant;

/// A clock started at the beginning of a phase sequence; silent unless profiling is on.
pub struct Laps<'a> {
    device: &'a Device,
    started: Instant,
    on: bool,
}

impl<'a> Laps<'a> {
    /// On when `MLFS_PROFILE` is set.
    pub fn from_env(device: &'a Device) -> Self {
        Self {
            device,
            started: Instant::now(),
            on: std::env::var_os("MLFS_PROFILE").is_some(),
        }
    }

    /// Whether laps are printed (so callers can skip work done only for them).
    pub fn on(&self) -> bool {
        self.on
    }

    /// Prints the time since the start, resident memory and, on a GPU, the memory held by live
    /// allocations now and at their highest so far.
    pub fn lap(&self, what: &str) {
        if !self.on {
            return;
        }
        let _ = crate::model::device::synchronize(self.device);
        let mib = |b: Option<usize>| b.map_or_else(|| "-".to_string(), |b| (b >> 20).to_string());
        let gpu = match crate::model::device::gpu_pool_in_use(self.device) {
            Some(now) => format!(
                ", GPU live {} MiB (peak {} MiB)",
                now >> 20,
                mib(crate::model::device::gpu_pool_peak(self.device, false))
            ),
            None => String::new(),
        };
        // A closed standard error must not end training (eprintln! would panic).
        let _ = std::io::Write::write_fmt(
            &mut std::io::stderr(),
            format_args!(
                "{what}: {:.3} s, rss {} MB{gpu}\n",
                self.started.elapsed().as_secs_f64(),
                crate::util::rss_mb()
            ),
        );
    }
}
