//! Brings a process into a multi-rank run: rank 0 opens (creates or resumes) the run and
//! welcomes the others; every other rank joins, opens the same run at the same step without
//! writing, and all of them build the collective they sum through.

use super::world::{Welcome, World};
use super::{Collective, OnHost};
use crate::train::kind::AnyRun;
use crate::train::run::Placement;
use anyhow::{Context, Result};
use std::path::Path;

/// Opens the run as this process's rank of `world`: `open` (rank 0 only) creates or resumes
/// it; the other ranks open `run_dir` at rank 0's step. Returns the run with its group set and
/// a line saying how the ranks sum.
pub fn open_rank(
    world: &World,
    run_dir: &Path,
    placement: Placement,
    open: impl FnOnce() -> Result<AnyRun>,
) -> Result<(AnyRun, String)> {
    let (mut run, tcp, nccl_id) = if world.rank == 0 {
        let run = open()?;
        let nccl_id = nccl_id_for(run.device())?;
        let welcome = Welcome {
            start_step: run.global_step(),
            nccl_id: nccl_id.clone(),
        };
        let tcp = world
            .host(&welcome)
            .context("rank 0 waiting for the other ranks")?;
        (run, tcp, nccl_id)
    } else {
        let (tcp, welcome) = world
            .join()
            .with_context(|| format!("rank {} joining rank 0", world.rank))?;
        let run = AnyRun::join(run_dir, placement, welcome.start_step)
            .with_context(|| format!("rank {} opening the run", world.rank))?;
        (run, tcp, welcome.nccl_id)
    };
    let group: Box<dyn Collective> = match nccl_id {
        Some(id) => nccl_rank(run.device(), world, &id)?,
        None => Box::new(OnHost(tcp)),
    };
    let line = format!(
        "rank {} of {} on {}, summing through {}",
        world.rank,
        world.world_size,
        crate::model::device::device_name(run.device()),
        group.transport()
    );
    run.set_group(group);
    Ok((run, line))
}

/// NCCL's id when this rank sums on a GPU through NCCL (GPU ranks of a binary built without
/// the `nccl` feature sum through rank 0 over TCP, by way of the host).
fn nccl_id_for(device: &candle_core::Device) -> Result<Option<Vec<u8>>> {
    #[cfg(feature = "nccl")]
    if device.is_cuda() {
        return Ok(Some(super::nccl::new_id()?));
    }
    let _ = device;
    Ok(None)
}

#[cfg(feature = "nccl")]
fn nccl_rank(
    device: &candle_core::Device,
    world: &World,
    id: &[u8],
) -> Result<Box<dyn Collective>> {
    Ok(Box::new(super::nccl::NcclRank::new(
        device,
        world.rank,
        world.world_size,
        id,
    )?))
}

#[cfg(not(feature = "nccl"))]
fn nccl_rank(_: &candle_core::Device, world: &World, _: &[u8]) -> Result<Box<dyn Collective>> {
    anyhow::bail!(
        "rank 0 sums through NCCL but rank {}'s binary was built without it (scripts/build-cuda.sh --nccl)",
        world.rank
    )
}
