//! The ranks of a data-parallel run as child processes: `train --gpus 0,1,2,3` (and
//! `--cpu-ranks N`) on the command line, the studio's Start with several GPUs. Each child is
//! this program's `train` with the same arguments, told its rank through the environment
//! torchrun would set (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`) and meeting the others through a file
//! in the run folder. The children live in their own process group: a stop signal reaches the
//! launcher, which hands each child one (a second one ends them at once, as it does a single
//! process); when a rank fails, the others are ended too.

use crate::train::parallel::world::{self, World};
use anyhow::{bail, Context, Result};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// The program the ranks run: this one, or `MLFS_STUDIO_EXE` (tests, whose own executable is
/// the test harness).
pub const EXE_OVERRIDE: &str = "MLFS_STUDIO_EXE";

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

    /// The `train` options that ask for these ranks.
    pub fn args(&self) -> Vec<String> {
        match self {
            Self::Gpus(ids) => {
                let list: Vec<String> = ids.iter().map(|g| g.to_string()).collect();
                vec!["--gpus".into(), list.join(",")]
            }
            Self::Cpu(n) => vec!["--cpu-ranks".into(), n.to_string()],
        }
    }
}

/// How the ranks ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every rank ended; rank 0's exit code (128 + a signal when stopped by one).
    Ended(i32),
    /// This rank failed first (the others were ended).
    Failed { rank: usize, status: ExitStatus },
}

/// The running ranks.
pub struct Launched {
    children: Vec<Child>,
    statuses: Vec<Option<ExitStatus>>,
    failed: Option<(usize, ExitStatus)>,
    rendezvous: PathBuf,
}

/// The program the ranks run.
pub fn rank_program() -> Result<PathBuf> {
    match std::env::var_os(EXE_OVERRIDE) {
        Some(p) => Ok(PathBuf::from(p)),
        None => std::env::current_exe().context("cannot find this program's path"),
    }
}

impl Launched {
    /// Starts one `train TRAIN_ARGS --device D` child per rank for the run in `run_dir`; rank 0
    /// writes its standard output and error where `rank0_output` says (the others print nothing
    /// but their errors).
    pub fn start(
        ranks: &Ranks,
        train_args: &[String],
        run_dir: &Path,
        rank0_output: impl Fn() -> Result<(Stdio, Stdio)>,
    ) -> Result<Self> {
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
        let exe = rank_program()?;
        let mut launched = Self {
            children: Vec::with_capacity(world),
            statuses: vec![None; world],
            failed: None,
            rendezvous: rendezvous.clone(),
        };
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
            if rank == 0 {
                let (out, err) = rank0_output()?;
                cmd.stdout(out).stderr(err);
            } else {
                cmd.stdout(Stdio::null());
            }
            match cmd.spawn() {
                Ok(child) => launched.children.push(child),
                Err(e) => {
                    launched.end_all();
                    return Err(e)
                        .with_context(|| format!("cannot start rank {rank} ({})", exe.display()));
                }
            }
        }
        Ok(launched)
    }

    /// Hands every rank still running the signal `sig`.
    pub fn signal(&self, sig: i32) {
        for (child, status) in self.children.iter().zip(&self.statuses) {
            if status.is_none() {
                // SAFETY: kill(2) on a child we started and have not reaped.
                unsafe { libc::kill(child.id() as i32, sig) };
            }
        }
    }

    /// How the ranks ended, once all have (`None` while any runs).
    pub fn poll(&mut self) -> Result<Option<Outcome>> {
        for (rank, child) in self.children.iter_mut().enumerate() {
            if self.statuses[rank].is_some() {
                continue;
            }
            if let Some(status) = child.try_wait()? {
                self.statuses[rank] = Some(status);
                let stopped_by_signal = status.code().is_some_and(|c| c > 128);
                if !status.success() && !stopped_by_signal && self.failed.is_none() {
                    self.failed = Some((rank, status));
                }
            }
        }
        if self.failed.is_some() {
            // The others would wait for the failed rank forever in the next sum.
            self.end_all();
        }
        if self.statuses.iter().any(Option::is_none) {
            return Ok(None);
        }
        let _ = std::fs::remove_file(&self.rendezvous);
        Ok(Some(match self.failed {
            Some((rank, status)) => Outcome::Failed { rank, status },
            None => Outcome::Ended(self.statuses[0].and_then(|s| s.code()).unwrap_or(128 + 9)),
        }))
    }

    /// The number of ranks.
    pub fn world_size(&self) -> usize {
        self.children.len()
    }

    fn end_all(&mut self) {
        for child in &mut self.children {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
        }
    }
}

impl Drop for Launched {
    /// A launcher that goes away takes its ranks with it (they would wait for each other).
    fn drop(&mut self) {
        if self.statuses.iter().any(Option::is_none) {
            self.end_all();
            for child in &mut self.children {
                let _ = child.wait();
            }
        }
    }
}

/// The command line's launcher: starts the ranks, hands them the signals this process gets,
/// and returns when all have ended; an error names the first rank that failed.
pub fn launch(ranks: &Ranks, train_args: &[String], run_dir: &Path) -> Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("cannot install signal handlers")?;
    let mut launched = Launched::start(ranks, train_args, run_dir, || {
        Ok((Stdio::inherit(), Stdio::inherit()))
    })?;
    let world = launched.world_size();
    loop {
        for sig in signals.pending() {
            launched.signal(sig);
        }
        match launched.poll()? {
            None => std::thread::sleep(Duration::from_millis(50)),
            Some(Outcome::Failed { rank, status }) => {
                bail!("rank {rank} of {world} failed ({status}); the other ranks were ended")
            }
            Some(Outcome::Ended(0)) => return Ok(()),
            Some(Outcome::Ended(code)) => std::process::exit(code),
        }
    }
}
