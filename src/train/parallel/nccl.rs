//! The collective of GPU ranks: NCCL's all-reduce on the device, on the stream candle computes
//! on (no copy to the host; NCCL picks NVLink, PCIe or the network). The ranks exchange NCCL's
//! unique id through the TCP rendezvous first ([`super::world`]).

use super::Collective;
use anyhow::{bail, Context, Result};
use candle_core::cuda_backend::cudarc::nccl::safe::{Comm, Id, ReduceOp};
use candle_core::{CpuStorage, CudaStorage, CustomOp1, DType, Device, Layout, Shape, Tensor};

/// One rank's NCCL communicator.
pub struct NcclRank {
    comm: Comm,
}

// SAFETY: the communicator is used by one thread at a time (the trainer's), which is what
// NCCL asks; it only moves between threads when the run is handed to one.
unsafe impl Send for NcclRank {}

/// A fresh unique id for rank 0 to hand out (128 bytes).
pub fn new_id() -> Result<Vec<u8>> {
    let id = Id::new().map_err(|e| anyhow::anyhow!("NCCL cannot make a unique id: {e:?}"))?;
    Ok(id.internal().iter().map(|&c| c as u8).collect())
}

impl NcclRank {
    /// Joins the communicator of `id` as `rank` of `world`, on `device`'s stream (every rank
    /// calls this; it returns once all have).
    pub fn new(device: &Device, rank: usize, world: usize, id: &[u8]) -> Result<Self> {
        let Device::Cuda(dev) = device else {
            bail!("NCCL sums on GPUs; this rank computes on {device:?}");
        };
        let Ok(bytes) = <[u8; 128]>::try_from(id) else {
            bail!("an NCCL id of {} bytes (128 expected)", id.len());
        };
        let internal = bytes.map(|b| b as core::ffi::c_char);
        let comm = Comm::from_rank(dev.cuda_stream(), rank, world, Id::uninit(internal))
            .map_err(|e| anyhow::anyhow!("NCCL could not join rank {rank} of {world}: {e:?}"))?;
        Ok(Self { comm })
    }
}

struct AllReduceSum<'a>(&'a Comm);

impl CustomOp1 for AllReduceSum<'_> {
    fn name(&self) -> &'static str {
        "nccl-all-reduce-sum"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        candle_core::bail!("NCCL sums GPU tensors only")
    }

    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        let Some((start, end)) = l.contiguous_offsets() else {
            candle_core::bail!("NCCL sums contiguous tensors only");
        };
        let src = s.as_cuda_slice::<f32>()?.slice(start..end);
        let dev = &s.device;
        let mut dst = dev.alloc_zeros::<f32>(end - start)?;
        self.0
            .all_reduce(&src, &mut dst, &ReduceOp::Sum)
            .map_err(|e| candle_core::Error::Msg(format!("NCCL all-reduce: {e:?}")))?;
        Ok((
            CudaStorage::wrap_cuda_slice(dst, dev.clone()),
            l.shape().clone(),
        ))
    }
}

impl Collective for NcclRank {
    fn rank(&self) -> usize {
        self.comm.rank()
    }
    fn world_size(&self) -> usize {
        self.comm.world_size()
    }
    fn all_reduce_sum(&mut self, flat: &Tensor) -> Result<Tensor> {
        let flat = flat.to_dtype(DType::F32)?.contiguous()?;
        flat.apply_op1_no_bwd(&AllReduceSum(&self.comm))
            .context("summing over the GPUs")
    }
    fn transport(&self) -> &'static str {
        "NCCL"
    }
}
