//! Data-parallel training over several processes (one per GPU, or CPU ranks): every rank trains
//! the same students on its shard of each step's batch, the trainable gradients and the losses
//! are summed over the ranks through a [`Collective`], and every rank takes the same optimizer
//! step. World size 1 never touches any of this.
//!
//! Each rank's losses are its share of the whole batch's means (a shard's mean times its share
//! of the batch's examples or tokens: [`BatchShare`]), so the sum over the ranks is the loss of
//! the whole batch, a short last batch included, and so is the summed gradient.

pub mod join;
pub mod sync;
pub mod tcp;
pub mod threads;
pub mod world;

#[cfg(feature = "nccl")]
pub mod nccl;

use anyhow::Result;
use candle_core::Tensor;
use std::ops::Range;

/// Sums flat f32 buffers over the ranks of a run. Every rank gets the same bits back (the sum is
/// taken in one fixed order), so the ranks' parameters never drift apart.
pub trait Collective: Send {
    /// This process's rank, 0 ..= world size − 1; rank 0 alone writes the run's files.
    fn rank(&self) -> usize;
    /// The number of ranks.
    fn world_size(&self) -> usize;
    /// The element-wise sum over every rank of `flat` (a 1-D f32 tensor on this rank's device).
    fn all_reduce_sum(&mut self, flat: &Tensor) -> Result<Tensor>;
    /// What carries the sums, for logs ("NCCL", "TCP through rank 0", "threads").
    fn transport(&self) -> &'static str;
}

/// A collective that sums host vectors; any such is a [`Collective`] through [`OnHost`].
pub trait HostCollective: Send {
    fn rank(&self) -> usize;
    fn world_size(&self) -> usize;
    /// Replaces `values` by their sum over every rank (same length on every rank).
    fn sum_in_place(&mut self, values: &mut Vec<f32>) -> Result<()>;
    fn transport(&self) -> &'static str;
}

/// A host collective used on tensors: read back, summed, put back on the tensor's device.
pub struct OnHost<H>(pub H);

impl<H: HostCollective> Collective for OnHost<H> {
    fn rank(&self) -> usize {
        self.0.rank()
    }
    fn world_size(&self) -> usize {
        self.0.world_size()
    }
    fn all_reduce_sum(&mut self, flat: &Tensor) -> Result<Tensor> {
        let mut values = flat
            .flatten_all()?
            .to_dtype(candle_core::DType::F32)?
            .to_vec1::<f32>()?;
        self.0.sum_in_place(&mut values)?;
        let n = values.len();
        Ok(Tensor::from_vec(values, n, flat.device())?)
    }
    fn transport(&self) -> &'static str {
        self.0.transport()
    }
}

/// What part of the step's whole batch a rank's shard is, by each loss's unit: its examples
/// and its real tokens over the whole batch's. Both are 1 on a single rank.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchShare {
    pub examples: f64,
    pub tokens: f64,
}

impl BatchShare {
    /// The whole batch.
    pub const WHOLE: Self = Self {
        examples: 1.0,
        tokens: 1.0,
    };

    /// The share of `part` in `whole` (an empty whole: nothing).
    pub fn of(part: BatchCounts, whole: BatchCounts) -> Self {
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        Self {
            examples: ratio(part.examples, whole.examples),
            tokens: ratio(part.tokens, whole.tokens),
        }
    }
}

/// Examples and real (unpadded) tokens in a batch, which a task's loss means divide by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchCounts {
    pub examples: usize,
    pub tokens: usize,
}

/// The positions of a batch of `len` examples that `rank` of `world` trains on: contiguous,
/// the first `len % world` ranks one example more (a rank may get none when `len < world`).
pub fn shard_range(len: usize, rank: usize, world: usize) -> Range<usize> {
    let world = world.max(1);
    let (base, extra) = (len / world, len % world);
    let start = rank * base + rank.min(extra);
    let size = base + usize::from(rank < extra);
    start.min(len)..(start + size).min(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_the_batch_once_in_order() {
        for len in [0, 1, 5, 32, 33] {
            for world in [1, 2, 3, 4, 8] {
                let ranges: Vec<_> = (0..world).map(|r| shard_range(len, r, world)).collect();
                let covered: Vec<usize> = ranges.iter().flat_map(|r| r.clone()).collect();
                assert_eq!(
                    covered,
                    (0..len).collect::<Vec<_>>(),
                    "len {len} world {world}"
                );
                let sizes: Vec<usize> = ranges.iter().map(|r| r.len()).collect();
                let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(hi - lo <= 1, "uneven shards {sizes:?}");
            }
        }
    }

    #[test]
    fn a_share_is_its_part_of_each_unit() {
        let whole = BatchCounts {
            examples: 5,
            tokens: 40,
        };
        let part = BatchCounts {
            examples: 2,
            tokens: 10,
        };
        assert_eq!(
            BatchShare::of(part, whole),
            BatchShare {
                examples: 0.4,
                tokens: 0.25
            }
        );
        assert_eq!(BatchShare::of(whole, whole), BatchShare::WHOLE);
    }
}
