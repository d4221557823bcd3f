//! The UI's one way to run one-shot background work (export, "Try it", file dialogs): each job
//! runs on its own named thread, hands back plain data on a channel, wakes the window, and a
//! panic inside it comes back as an error instead of a lost answer.

use anyhow::{anyhow, Result};
use crossbeam_channel::{bounded, Receiver, TryRecvError};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

/// Asks the window for a new frame (egui's `request_repaint`), from any thread.
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// Starts jobs; holds the window's wake-up callback (none in tests, which step frames).
#[derive(Clone, Default)]
pub struct Jobs {
    wake: Option<Wake>,
}

/// One job's answer, polled once per frame; it never blocks the UI thread.
pub struct Job<T> {
    name: String,
    rx: Receiver<Result<T>>,
    taken: bool,
}

impl Jobs {
    /// A runner that calls `wake` whenever a job has delivered its result.
    pub fn new(wake: Option<Wake>) -> Self {
        Self { wake }
    }

    /// The wake-up callback, for long-lived workers that report through their own channel.
    pub fn wake(&self) -> Option<Wake> {
        self.wake.clone()
    }

    /// Runs `work` on a thread named after `name`; only plain data (`T`) comes back.
    pub fn spawn<T, F>(&self, name: &str, work: F) -> Job<T>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T> + Send + 'static,
    {
        let (tx, rx) = bounded(1);
        let on_spawn_error = tx.clone();
        let wake = self.wake.clone();
        let wake_on_error = self.wake.clone();
        let label = name.to_string();
        let spawned = std::thread::Builder::new()
            .name(format!("mlfs-{}", name.replace(' ', "-")))
            .spawn(move || {
                let result =
                    std::panic::catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|payload| {
                        Err(anyhow!(
                            "{label} crashed: {}",
                            crate::util::panic_message(&*payload)
                        ))
                    });
                let _ = tx.send(result);
                if let Some(w) = wake {
                    w();
                }
            });
        if let Err(e) = spawned {
            let _ = on_spawn_error.send(Err(anyhow!("cannot start a thread for {name}: {e}")));
            if let Some(w) = wake_on_error {
                w();
            }
        }
        Job {
            name: name.to_string(),
            rx,
            taken: false,
        }
    }
}

impl<T> Job<T> {
    /// The result once the job has finished (exactly once; `None` before and after).
    pub fn try_take(&mut self) -> Option<Result<T>> {
        if self.taken {
            return None;
        }
        match self.rx.try_recv() {
            Ok(result) => {
                self.taken = true;
                Some(result)
            }
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                self.taken = true;
                Some(Err(anyhow!("{} ended without a result", self.name)))
            }
        }
    }

    /// True while the job has not delivered its result yet.
    pub fn is_running(&self) -> bool {
        !self.taken && self.rx.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    fn wait<T>(job: &mut Job<T>) -> Result<T> {
        let started = Instant::now();
        loop {
            if let Some(r) = job.try_take() {
                return r;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "job never ended"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn result_arrives_once_and_wakes_the_window() {
        let woken = Arc::new(AtomicUsize::new(0));
        let counter = woken.clone();
        let wake: Wake = Arc::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        let jobs = Jobs::new(Some(wake));
        let mut job = jobs.spawn("sum", || Ok(vec![2 + 2]));
        assert_eq!(wait(&mut job).unwrap(), vec![4]);
        assert!(!job.is_running());
        assert!(job.try_take().is_none(), "a result is delivered once");
        // The wake-up follows the send; give the thread a moment to call it.
        let started = Instant::now();
        while woken.load(Ordering::SeqCst) == 0 && started.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(woken.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_panic_becomes_an_error_with_its_message() {
        let mut job = Jobs::default().spawn("try it", || -> Result<String> {
            panic!("index 7 out of range")
        });
        let err = wait(&mut job).unwrap_err().to_string();
        assert!(err.contains("try it crashed"), "{err}");
        assert!(err.contains("index 7 out of range"), "{err}");
    }

    #[test]
    fn an_error_is_passed_through() {
        let mut job = Jobs::default().spawn("export", || -> Result<()> {
            anyhow::bail!("folder not empty")
        });
        assert_eq!(wait(&mut job).unwrap_err().to_string(), "folder not empty");
    }
}
