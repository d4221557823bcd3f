//! `train --gpus 0,1,2,3` (and `--cpu-ranks N`): one child process per rank, the same binary
//! and arguments, each told its rank through the environment torchrun would set
//! (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`) and meeting the others through a file in the run folder.
//! The children live in their own process group: a stop signal reaches this launcher, which
//! hands each child one (a second one ends them at once, as it does a single process); when a
//! rank fails, the others are ended too.

use crate::train::parallel::world::{self, World};
use anyhow::{bail, Context, Result};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// Where each rank computes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ranks {
    /// One rank per listed GPU ordinal.
    Gpus(Vec<usize>),
    /// This many ranks on the CPU.
    Cpu(usize),
}

impl Ranks {
    fn devices(&self) -> Vec<String> {
        match self {
            Self::Gpus(ids) => ids.iter().map(|g| format!("cuda:{g}")).collect(),
            Self::Cpu(n) => (0..*n).map(|_| "cpu".to_string()).collect(),
        }
    }
}

/// Starts the ranks of `train ARGS` for the run in `run_dir`, waits for them and returns when
/// all have ended; an error names the first rank that failed.
pub fn launch(ranks: &Ranks, train_args: &[String], run_dir: &Path) -> Result<()> {
    let devices = ranks.devices();
    let world = devices.len();
    if world == 0 {
        bail!("no ranks to start: give --gpus 0,1 or --cpu-ranks 2");
    }
    if let Ranks::Gpus(ids) = ranks {
        let mut seen = ids.clone();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() != ids.len() {
            bail!("--gpus lists a GPU twice ({ids:?}): one rank per GPU");
        }
    }
    std::fs::create_dir_all(run_dir)
        .with_context(|| format!("{}: cannot create run folder", run_dir.display()))?;
    let rendezvous = World::rendezvous_file(run_dir);
    // Left by a launcher that was killed: it must not send the ranks to a dead address.
    let _ = std::fs::remove_file(&rendezvous);
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("cannot install signal handlers")?;
    let mut children: Vec<Child> = Vec::with_capacity(world);
    for (rank, device) in devices.iter().enumerate() {
        let mut cmd = Command::new(&exe);
        cmd.arg("train")
            .args(train_args)
            .arg("--device")
            .arg(device)
            .env(world::RANK, rank.to_string())
            .env(world::WORLD_SIZE, world.to_string())
            .env(world::LOCAL_RANK, rank.to_string())
            .env(world::RENDEZVOUS, format!("file:{}", rendezvous.display()))
            .env(world::ADVERTISE, "127.0.0.1")
            .process_group(0);
        if rank != 0 {
            cmd.stdout(Stdio::null());
        }
        match cmd.spawn() {
            Ok(child) => children.push(child),
            Err(e) => {
                end_all(&mut children);
                return Err(e).with_context(|| format!("cannot start rank {rank}"));
            }
        }
    }
    let mut statuses: Vec<Option<ExitStatus>> = vec![None; world];
    let mut failed: Option<(usize, ExitStatus)> = None;
    while statuses.iter().any(Option::is_none) {
        for sig in signals.pending() {
            for child in &children {
                // SAFETY: kill(2) on a child we started and have not reaped.
                unsafe { libc::kill(child.id() as i32, sig) };
            }
        }
        for (rank, child) in children.iter_mut().enumerate() {
            if statuses[rank].is_some() {
                continue;
            }
            if let Some(status) = child.try_wait()? {
                statuses[rank] = Some(status);
                let stopped_by_signal = status.code().is_some_and(|c| c > 128);
                if !status.success() && !stopped_by_signal && failed.is_none() {
                    failed = Some((rank, status));
                }
            }
        }
        if failed.is_some() {
            // The others would wait for the failed rank forever in the next sum.
            end_all(&mut children);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_file(&rendezvous);
    if let Some((rank, status)) = failed {
        bail!("rank {rank} of {world} failed ({status}); the other ranks were ended");
    }
    // Rank 0's status is the run's (128 + a signal when stopped by one).
    match statuses[0].and_then(|s| s.code()) {
        Some(0) => Ok(()),
        Some(code) => std::process::exit(code),
        None => bail!("rank 0 was killed by a signal"),
    }
}

fn end_all(children: &mut [Child]) {
    for child in children.iter_mut() {
        if matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill();
        }
    }
}
