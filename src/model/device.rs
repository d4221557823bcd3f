//! Where a run computes and in which number format: chosen once per run (preset, command line
//! or studio) and passed down; nothing below picks a device on its own.

use anyhow::{bail, Result};
use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

/// The device a run asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum DeviceChoice {
    /// The first NVIDIA GPU when this binary has CUDA and one is present, else the CPU.
    #[default]
    Auto,
    Cpu,
    /// The NVIDIA GPU of this ordinal.
    Cuda(usize),
}

/// The number format of frozen weights and matrix-product inputs (adapters, master weights and
/// optimizer moments stay f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Precision {
    #[default]
    F32,
    Bf16,
}

impl Precision {
    /// The dtype frozen weights are kept in.
    pub fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::Bf16 => DType::BF16,
        }
    }
}

/// One GPU this binary can use: ordinal, name and memory.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuInfo {
    pub ordinal: usize,
    pub name: String,
    pub memory_bytes: usize,
}

/// True when this binary was built with the `cuda` feature.
pub fn cuda_compiled() -> bool {
    cfg!(feature = "cuda")
}

/// The GPUs found (none in a CPU-only build, or when the driver is missing).
pub fn gpus() -> Vec<GpuInfo> {
    #[cfg(feature = "cuda")]
    {
        use candle_core::cuda_backend::cudarc::driver::CudaContext;
        let count = CudaContext::device_count().unwrap_or(0).max(0) as usize;
        (0..count)
            .filter_map(|ordinal| {
                let ctx = CudaContext::new(ordinal).ok()?;
                Some(GpuInfo {
                    ordinal,
                    name: ctx.name().unwrap_or_else(|_| format!("GPU {ordinal}")),
                    memory_bytes: ctx.total_mem().unwrap_or(0),
                })
            })
            .collect()
    }
    #[cfg(not(feature = "cuda"))]
    Vec::new()
}

/// Why this binary cannot use a GPU, for errors and the studio's device list.
pub fn no_gpu_reason() -> &'static str {
    if cuda_compiled() {
        "no NVIDIA GPU was found (is the driver's libcuda.so.1 on LD_LIBRARY_PATH?)"
    } else {
        "this binary was built without GPU support: build it with scripts/build-cuda.sh"
    }
}

impl DeviceChoice {
    /// The device itself; a GPU that is not there is an error that says how to get one.
    pub fn resolve(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Auto if !cuda_compiled() => Ok(Device::Cpu),
            Self::Auto => Ok(Device::new_cuda(0).unwrap_or(Device::Cpu)),
            Self::Cuda(n) => {
                if !cuda_compiled() {
                    bail!("device Cuda({n}): {}", no_gpu_reason());
                }
                Device::new_cuda(n)
                    .map_err(|e| anyhow::anyhow!("device Cuda({n}): {e} ({})", no_gpu_reason()))
            }
        }
    }

    /// `auto`, `cpu`, `cuda` (GPU 0) or `cuda:N`, as typed on the command line.
    pub fn parse(text: &str) -> Result<Self> {
        Ok(match text.trim() {
            "auto" => Self::Auto,
            "cpu" => Self::Cpu,
            "cuda" | "gpu" => Self::Cuda(0),
            t => match t.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => Self::Cuda(n),
                _ => bail!("unknown device '{t}' (auto, cpu, cuda or cuda:N)"),
            },
        })
    }
}

/// Checks that `precision` can run on `device` (bf16 needs a GPU).
pub fn check_precision(device: &Device, precision: Precision) -> Result<()> {
    if precision == Precision::Bf16 && device.is_cpu() {
        bail!(
            "precision Bf16 needs a GPU: on the CPU bf16 matrix products are emulated and slower \
             than f32; use precision F32"
        );
    }
    Ok(())
}

/// A short name of a device for logs and metrics: `cpu` or `cuda:N`.
pub fn device_name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// Bytes of GPU memory in use on `device` (the driver's view: every process, allocator pools
/// included); `None` on the CPU.
pub fn gpu_memory_used(device: &Device) -> Option<usize> {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(d) = device {
        let (free, total) = d.cuda_stream().context().mem_get_info().ok()?;
        return Some(total - free);
    }
    let _ = device;
    None
}

/// The high-water mark, in bytes, of GPU memory held by live allocations of this process's
/// stream-ordered pool (where candle's allocations come from) since the last reset: the
/// counterpart of PyTorch's `torch.cuda.max_memory_allocated` (no pool caching, no CUDA
/// context, no other process). `reset` starts a new watermark. `None` on the CPU or when the
/// driver does not say.
pub fn gpu_pool_peak(device: &Device, reset: bool) -> Option<usize> {
    pool_attribute(device, PoolFigure::Peak, reset)
}

/// Bytes held by live allocations of the pool now (`torch.cuda.memory_allocated`'s counterpart).
pub fn gpu_pool_in_use(device: &Device) -> Option<usize> {
    pool_attribute(device, PoolFigure::InUse, false)
}

#[derive(Clone, Copy)]
enum PoolFigure {
    Peak,
    InUse,
}

fn pool_attribute(device: &Device, figure: PoolFigure, reset: bool) -> Option<usize> {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(d) = device {
        use candle_core::cuda_backend::cudarc::driver::sys;
        let ctx = d.cuda_stream().context().clone();
        ctx.bind_to_thread().ok()?;
        let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
        let attr = match figure {
            PoolFigure::Peak => sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH,
            PoolFigure::InUse => sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_CURRENT,
        };
        let mut value: u64 = 0;
        // SAFETY: plain driver queries on the context's device with out-pointers we own.
        unsafe {
            if sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device())
                != sys::CUresult::CUDA_SUCCESS
            {
                return None;
            }
            if reset {
                // The driver only resets the watermark to zero; it rises with the next allocation.
                let _ = sys::cuMemPoolSetAttribute(pool, attr, (&mut value as *mut u64).cast());
                return Some(0);
            }
            if sys::cuMemPoolGetAttribute(pool, attr, (&mut value as *mut u64).cast())
                != sys::CUresult::CUDA_SUCCESS
            {
                return None;
            }
        }
        return usize::try_from(value).ok();
    }
    let _ = (device, figure, reset);
    None
}

/// Memory in use for a run on `device`, in MB: the GPU's (as [`gpu_memory_used`]), or this
/// process's resident memory on the CPU.
pub fn memory_in_use_mb(device: &Device) -> f64 {
    match gpu_memory_used(device) {
        Some(bytes) => bytes as f64 / 1e6,
        None => crate::util::rss_mb() as f64,
    }
}

/// Waits until the device has finished its queued work (a no-op on the CPU): timings stop the
/// clock after this.
pub fn synchronize(device: &Device) -> Result<()> {
    Ok(device.synchronize()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_parse_and_the_cpu_build_refuses_a_gpu() {
        assert_eq!(
            DeviceChoice::parse("cuda:1").unwrap(),
            DeviceChoice::Cuda(1)
        );
        assert_eq!(DeviceChoice::parse("cpu").unwrap(), DeviceChoice::Cpu);
        assert!(DeviceChoice::parse("tpu").is_err());
        assert!(check_precision(&Device::Cpu, Precision::Bf16).is_err());
        assert!(check_precision(&Device::Cpu, Precision::F32).is_ok());
        if !cuda_compiled() {
            let err = DeviceChoice::Cuda(0).resolve().unwrap_err().to_string();
            assert!(err.contains("scripts/build-cuda.sh"), "{err}");
            assert!(DeviceChoice::Auto.resolve().unwrap().is_cpu());
            assert!(gpus().is_empty());
        }
    }
}
