//! SIGINT, SIGTERM and SIGHUP ask a headless command to stop at its next safe point (training:
//! the next step boundary, with a checkpoint and a `stopped` event; a palette measurement: after
//! the subnet being measured, with the table written). A second signal ends the process at once.

use anyhow::{Context, Result};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// The signals that ask for a stop.
const STOPPING: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

/// Which stop signal arrived (0: none yet).
#[derive(Clone)]
pub struct StopRequest {
    signal: Arc<AtomicUsize>,
}

impl StopRequest {
    /// Installs the handlers for this process.
    pub fn install() -> Result<Self> {
        let seen = Arc::new(AtomicBool::new(false));
        let signal = Arc::new(AtomicUsize::new(0));
        for sig in STOPPING {
            // Registered first, so it checks the flag before the second handler sets it: the
            // first signal only sets it, a second one exits with the usual 128 + signal.
            signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&seen))
                .context("cannot install signal handlers")?;
            signal_hook::flag::register(sig, Arc::clone(&seen))
                .context("cannot install signal handlers")?;
            signal_hook::flag::register_usize(sig, Arc::clone(&signal), sig as usize)
                .context("cannot install signal handlers")?;
        }
        Ok(Self { signal })
    }

    /// The signal that asked to stop, if one did.
    pub fn requested(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s as i32),
        }
    }

    /// The exit status for a command that stopped on `signal`: 128 + its number, as a shell
    /// reports a process it ended.
    pub fn exit_status(signal: i32) -> i32 {
        128 + signal
    }
}

/// Ends the process with 128 + the signal when a stop signal cut a palette measurement short,
/// saying that the rows so far are kept and how to measure the rest.
pub fn exit_if_stopped(stop: &StopRequest, run_dir: &str) {
    if let Some(sig) = stop.requested() {
        crate::note!(
            "palette measurement stopped by {}: the rows measured so far are in the run's palette; `mlfs-studio eval --run {run_dir}` measures the rest",
            name(sig)
        );
        std::process::exit(StopRequest::exit_status(sig));
    }
}

/// A signal's usual name.
pub fn name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}
