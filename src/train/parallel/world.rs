//! Which rank this process is and how the ranks find each other, read from the environment
//! the usual launchers set: `RANK`, `WORLD_SIZE`, `LOCAL_RANK` (torchrun, and `train --gpus`,
//! which starts one child per GPU), or Slurm's `SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID`.
//!
//! Rendezvous: `MLFS_RENDEZVOUS=file:PATH` (rank 0 writes its address into PATH, on a
//! filesystem every rank sees; `train --gpus` uses the run folder) or `tcp:HOST:PORT`; without
//! it `MASTER_ADDR` and one port above `MASTER_PORT` (torchrun's own store holds MASTER_PORT).

use super::tcp::{accept_ranks, join_rank0, TcpRank};
use anyhow::{bail, Context, Result};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Environment variables a launcher sets for each rank.
pub const RANK: &str = "RANK";
pub const WORLD_SIZE: &str = "WORLD_SIZE";
pub const LOCAL_RANK: &str = "LOCAL_RANK";
pub const RENDEZVOUS: &str = "MLFS_RENDEZVOUS";
/// The address rank 0 publishes in a rendezvous file (default: this machine's host name).
pub const ADVERTISE: &str = "MLFS_ADVERTISE_ADDR";
/// Seconds to wait for every rank (default 600: loading a teacher on many ranks takes time).
pub const TIMEOUT: &str = "MLFS_RENDEZVOUS_TIMEOUT";

/// How the ranks meet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rendezvous {
    /// Rank 0 writes `host:port` into this file; the others read it.
    File(PathBuf),
    /// Rank 0 listens on this `host:port`; the others connect to it.
    Address(String),
}

/// This process's place in a multi-rank run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct World {
    pub rank: usize,
    pub world_size: usize,
    /// Rank on this machine: the GPU ordinal a rank uses when the run's device is a GPU.
    pub local_rank: usize,
    pub rendezvous: Rendezvous,
}

/// What rank 0 tells the others when they join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    /// The step rank 0 starts from (the checkpoint every rank must load).
    pub start_step: usize,
    /// NCCL's unique id, when the ranks sum on GPUs through NCCL.
    pub nccl_id: Option<Vec<u8>>,
}

impl Welcome {
    fn encode(&self) -> Vec<u8> {
        let mut out = (self.start_step as u64).to_le_bytes().to_vec();
        if let Some(id) = &self.nccl_id {
            out.extend_from_slice(id);
        }
        out
    }
    fn decode(bytes: &[u8]) -> Result<Self> {
        let Some((step, id)) = bytes.split_first_chunk::<8>() else {
            bail!("rank 0's welcome is {} bytes, too short", bytes.len());
        };
        Ok(Self {
            start_step: u64::from_le_bytes(*step) as usize,
            nccl_id: (!id.is_empty()).then(|| id.to_vec()),
        })
    }
}

fn var(get: &dyn Fn(&str) -> Option<String>, names: &[&str]) -> Option<(String, String)> {
    names
        .iter()
        .find_map(|n| get(n).map(|v| (n.to_string(), v.trim().to_string())))
}

fn number(get: &dyn Fn(&str) -> Option<String>, names: &[&str]) -> Result<Option<usize>> {
    match var(get, names) {
        None => Ok(None),
        Some((name, v)) => v
            .parse()
            .map(Some)
            .with_context(|| format!("{name}={v:?} is not a whole number")),
    }
}

impl World {
    /// The world this process's environment describes; `None` for a single process (no world
    /// size, or 1).
    pub fn from_env() -> Result<Option<Self>> {
        Self::from_vars(&|name| std::env::var(name).ok())
    }

    /// [`Self::from_env`] over any variable lookup (tests).
    pub fn from_vars(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let Some(world_size) = number(get, &[WORLD_SIZE, "SLURM_NTASKS"])? else {
            return Ok(None);
        };
        if world_size <= 1 {
            return Ok(None);
        }
        let rank = number(get, &[RANK, "SLURM_PROCID"])?
            .context("WORLD_SIZE is set but RANK is not: which rank is this process?")?;
        if rank >= world_size {
            bail!("RANK={rank} is not below WORLD_SIZE={world_size}");
        }
        let local_rank = number(get, &[LOCAL_RANK, "SLURM_LOCALID"])?.unwrap_or(rank);
        let rendezvous = match var(get, &[RENDEZVOUS]) {
            Some((_, v)) if v.starts_with("file:") => Rendezvous::File(PathBuf::from(&v[5..])),
            Some((_, v)) if v.starts_with("tcp:") => Rendezvous::Address(v[4..].to_string()),
            Some((_, v)) => bail!("{RENDEZVOUS}={v:?}: give file:PATH or tcp:HOST:PORT"),
            None => {
                let host = var(get, &["MASTER_ADDR"]).map(|(_, v)| v);
                let port = number(get, &["MASTER_PORT"])?;
                match (host, port) {
                    (Some(h), Some(p)) => Rendezvous::Address(format!("{h}:{}", p + 1)),
                    _ => bail!(
                        "a run of {world_size} ranks needs a rendezvous: set {RENDEZVOUS}=file:PATH (a file every rank can see) or tcp:HOST:PORT, or MASTER_ADDR and MASTER_PORT"
                    ),
                }
            }
        };
        Ok(Some(Self {
            rank,
            world_size,
            local_rank,
            rendezvous,
        }))
    }

    fn timeout() -> Duration {
        let secs = std::env::var(TIMEOUT)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(600);
        Duration::from_secs(secs)
    }

    /// Rank 0: waits for every other rank and hands each `welcome`.
    pub fn host(&self, welcome: &Welcome) -> Result<TcpRank> {
        let timeout = Self::timeout();
        match &self.rendezvous {
            Rendezvous::Address(addr) => {
                let port = addr.rsplit_once(':').map_or(addr.as_str(), |(_, p)| p);
                let listener = TcpListener::bind(format!("0.0.0.0:{port}"))
                    .with_context(|| format!("rank 0 cannot listen on port {port}"))?;
                accept_ranks(&listener, self.world_size, &welcome.encode(), timeout)
            }
            Rendezvous::File(path) => {
                let listener =
                    TcpListener::bind("0.0.0.0:0").context("rank 0 cannot open a port")?;
                let port = listener.local_addr()?.port();
                let host = std::env::var(ADVERTISE).unwrap_or_else(|_| host_name());
                crate::files::write_atomic(path, format!("{host}:{port}\n").as_bytes())
                    .with_context(|| {
                        format!("{}: cannot publish rank 0's address", path.display())
                    })?;
                let joined = accept_ranks(&listener, self.world_size, &welcome.encode(), timeout);
                // Every rank has read it (or none will): a later run must not find it.
                let _ = std::fs::remove_file(path);
                joined
            }
        }
    }

    /// A rank other than 0: joins rank 0 and returns its welcome.
    pub fn join(&self) -> Result<(TcpRank, Welcome)> {
        let address = || -> Result<Option<SocketAddr>> {
            let text = match &self.rendezvous {
                Rendezvous::Address(a) => a.clone(),
                Rendezvous::File(path) => match std::fs::read_to_string(path) {
                    Ok(t) => t.trim().to_string(),
                    Err(_) => return Ok(None),
                },
            };
            if text.is_empty() {
                return Ok(None);
            }
            Ok(text.to_socket_addrs().ok().and_then(|mut a| a.next()))
        };
        let (tcp, payload) = join_rank0(&address, self.rank, self.world_size, Self::timeout())?;
        Ok((tcp, Welcome::decode(&payload)?))
    }

    /// The rendezvous file `train --gpus` uses for a run folder.
    pub fn rendezvous_file(run_dir: &Path) -> PathBuf {
        run_dir.join(".rendezvous")
    }
}

fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(0);
    match std::str::from_utf8(&buf[..end]) {
        Ok(name) if ok && !name.is_empty() => name.to_string(),
        _ => "127.0.0.1".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn world(vars: &[(&str, &str)]) -> Result<Option<World>> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        World::from_vars(&|n| map.get(n).cloned())
    }

    #[test]
    fn launchers_environments_give_the_rank_and_the_rendezvous() {
        assert_eq!(world(&[]).unwrap(), None);
        assert_eq!(world(&[("WORLD_SIZE", "1"), ("RANK", "0")]).unwrap(), None);
        // torchrun
        let w = world(&[
            ("WORLD_SIZE", "4"),
            ("RANK", "3"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "node7"),
            ("MASTER_PORT", "29500"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!((w.rank, w.world_size, w.local_rank), (3, 4, 1));
        assert_eq!(w.rendezvous, Rendezvous::Address("node7:29501".into()));
        // Slurm with a shared file
        let w = world(&[
            ("SLURM_NTASKS", "8"),
            ("SLURM_PROCID", "5"),
            ("SLURM_LOCALID", "1"),
            ("MLFS_RENDEZVOUS", "file:/shared/run/.rdv"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!((w.rank, w.world_size, w.local_rank), (5, 8, 1));
        assert_eq!(w.rendezvous, Rendezvous::File("/shared/run/.rdv".into()));
    }

    #[test]
    fn a_wrong_environment_says_what_is_wrong() {
        let e = |v: &[(&str, &str)]| format!("{:#}", world(v).unwrap_err());
        assert!(e(&[("WORLD_SIZE", "2")]).contains("RANK is not"));
        assert!(e(&[("WORLD_SIZE", "2"), ("RANK", "2")]).contains("not below"));
        assert!(e(&[("WORLD_SIZE", "two")]).contains("not a whole number"));
        assert!(e(&[("WORLD_SIZE", "2"), ("RANK", "1")]).contains("needs a rendezvous"));
        assert!(
            e(&[("WORLD_SIZE", "2"), ("RANK", "1"), ("MLFS_RENDEZVOUS", "x")])
                .contains("file:PATH")
        );
    }

    #[test]
    fn ranks_meet_through_a_file_and_rank_0_welcomes_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(".rendezvous");
        std::env::set_var(ADVERTISE, "127.0.0.1");
        let w = |rank| World {
            rank,
            world_size: 2,
            local_rank: rank,
            rendezvous: Rendezvous::File(file.clone()),
        };
        let follower = {
            let w1 = w(1);
            std::thread::spawn(move || w1.join().unwrap().1)
        };
        let welcome = Welcome {
            start_step: 42,
            nccl_id: Some(vec![7; 128]),
        };
        w(0).host(&welcome).unwrap();
        assert_eq!(follower.join().unwrap(), welcome);
        assert!(
            !file.exists(),
            "the rendezvous file outlived the rendezvous"
        );
    }
}
