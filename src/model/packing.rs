//! Packed token rows: the position-wise parts of an encoder pass (projections, FFN, norms,
//! adapters, distillation projections) run on a batch's real tokens only, not on its padding.
//!
//! At the shipped data's lengths about half of a padded batch's positions are padding; every
//! matrix product over them is wasted. Attention alone needs the `[B, T]` layout: it unpacks its
//! queries, keys and values (zeros at padding, which the additive mask drops) and packs its
//! context again.

use super::attention::padding_mask;
use super::tokenizer::TokenBatch;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};

/// Where a batch's real tokens sit: padded positions `[B, T]` ↔ packed rows `[N, ·]`.
pub struct TokenLayout {
    batch: usize,
    seq_len: usize,
    rows: usize,
    /// Flat padded position of every packed row `[N]`; `None` when rows are the positions.
    gather: Option<Tensor>,
    /// Packed row of every padded position `[B·T]`, `N` (a zero row) at padding.
    scatter: Option<Tensor>,
    /// Additive attention mask `[B, 1, 1, T]` (0 = real key, large negative = padding).
    attention_mask: Tensor,
    /// Mean-pooling weights `[B, rows]`: 1/length on each sequence's real rows.
    pool: Tensor,
}

impl TokenLayout {
    /// Packs the real tokens of a 0/1 mask given row by row (`B` rows of `T`).
    pub fn packed(mask: &[Vec<u32>], device: &Device) -> Result<Self> {
        Self::build(mask, true, device)
    }

    /// Keeps every position, padding included (Hugging Face's outputs at padded positions).
    pub fn padded(mask: &[Vec<u32>], device: &Device) -> Result<Self> {
        Self::build(mask, false, device)
    }

    /// The packed layout of a tokenised batch.
    pub fn of_batch(batch: &TokenBatch, device: &Device) -> Result<Self> {
        Self::packed(&batch.attention_mask, device)
    }

    /// The packed layout of a mask tensor `[B, T]` (read back to the host once).
    pub fn of_mask(mask: &Tensor) -> Result<Self> {
        let rows = mask
            .to_dtype(DType::U32)?
            .to_vec2::<u32>()
            .context("reading the attention mask")?;
        Self::packed(&rows, mask.device())
    }

    fn build(mask: &[Vec<u32>], pack: bool, device: &Device) -> Result<Self> {
        let batch = mask.len();
        let seq_len = mask.first().map_or(0, Vec::len);
        if batch == 0 || seq_len == 0 {
            bail!("an empty batch has no token layout");
        }
        if mask.iter().any(|row| row.len() != seq_len) {
            bail!("attention mask rows differ in length");
        }
        let flat: Vec<u32> = mask.concat();
        let real: Vec<u32> = (0..flat.len() as u32)
            .filter(|&p| flat[p as usize] != 0)
            .collect();
        let lengths: Vec<usize> = mask
            .iter()
            .map(|row| row.iter().filter(|&&m| m != 0).count())
            .collect();
        let mask_tensor = Tensor::from_vec(flat.clone(), (batch, seq_len), device)?;
        let attention_mask = padding_mask(&mask_tensor)?;
        let pack = pack && real.len() < flat.len();
        let rows = if pack { real.len() } else { flat.len() };
        // Pooling weights: row r of sequence b counts 1/len(b) when it is a real token.
        let mut pool = vec![0f32; batch * rows];
        let row_positions: Vec<u32> = if pack {
            real.clone()
        } else {
            (0..flat.len() as u32).collect()
        };
        for (r, &p) in row_positions.iter().enumerate() {
            let b = p as usize / seq_len;
            if flat[p as usize] != 0 {
                pool[b * rows + r] = 1.0 / lengths[b].max(1) as f32;
            }
        }
        let pool = Tensor::from_vec(pool, (batch, rows), device)?;
        let (gather, scatter) = if pack {
            let mut scatter = vec![rows as u32; flat.len()];
            for (r, &p) in real.iter().enumerate() {
                scatter[p as usize] = r as u32;
            }
            (
                Some(Tensor::from_vec(real, rows, device)?),
                Some(Tensor::from_vec(scatter, flat.len(), device)?),
            )
        } else {
            (None, None)
        };
        Ok(Self {
            batch,
            seq_len,
            rows,
            gather,
            scatter,
            attention_mask,
            pool,
        })
    }

    /// Sequences in the batch.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Padded length `T`.
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// Rows the position-wise parts run on (`N` packed, or `B·T`).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Whether padding positions were dropped.
    pub fn is_packed(&self) -> bool {
        self.gather.is_some()
    }

    /// Additive attention mask `[B, 1, 1, T]`.
    pub fn attention_mask(&self) -> &Tensor {
        &self.attention_mask
    }

    /// Padded positions `[B·T, w]` → rows `[rows, w]`.
    pub fn pack(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match &self.gather {
            Some(idx) => x.index_select(idx, 0),
            None => Ok(x.clone()),
        }
    }

    /// Rows `[rows, w]` → padded positions `[B, T, w]`, zeros at padding.
    pub fn unpack(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let w = x.dim(1)?;
        let padded = match &self.scatter {
            Some(idx) => {
                let zero = Tensor::zeros((1, w), x.dtype(), x.device())?;
                Tensor::cat(&[x, &zero], 0)?.index_select(idx, 0)?
            }
            None => x.clone(),
        };
        padded.reshape((self.batch, self.seq_len, w))
    }

    /// Mean of rows `[rows, w]` over each sequence's real tokens: `[B, w]`.
    pub fn mean_pool(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        // Inference on the CPU: OpenBLAS on this thread, not candle's product on rayon's pool.
        super::blas::matmul_or_candle(&self.pool, x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[n, 1]` holding 0, 1, …, n − 1: each padded position's own index.
    fn positions(n: usize) -> Tensor {
        Tensor::arange(0f32, n as f32, &Device::Cpu)
            .unwrap()
            .reshape((n, 1))
            .unwrap()
    }

    fn mask() -> Vec<Vec<u32>> {
        vec![vec![1, 1, 1, 0], vec![1, 1, 0, 0]]
    }

    #[test]
    fn packs_real_tokens_and_unpacks_with_zeros_at_padding() {
        let layout = TokenLayout::packed(&mask(), &Device::Cpu).unwrap();
        assert_eq!(layout.rows(), 5);
        let x = positions(8);
        let rows = layout.pack(&x).unwrap();
        assert_eq!(
            rows.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            [0.0, 1.0, 2.0, 4.0, 5.0]
        );
        let back = layout.unpack(&rows).unwrap();
        assert_eq!(
            back.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            [0.0, 1.0, 2.0, 0.0, 4.0, 5.0, 0.0, 0.0]
        );
        let pooled = layout.mean_pool(&rows).unwrap();
        assert_eq!(
            pooled.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            [1.0, 4.5]
        );
    }

    #[test]
    fn padded_layout_keeps_every_position_and_pools_real_ones() {
        let layout = TokenLayout::padded(&mask(), &Device::Cpu).unwrap();
        assert!(!layout.is_packed());
        assert_eq!(layout.rows(), 8);
        let x = positions(8);
        let pooled = layout.mean_pool(&x).unwrap();
        assert_eq!(
            pooled.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            [1.0, 4.5]
        );
    }

    #[test]
    fn empty_or_ragged_masks_are_errors() {
        assert!(TokenLayout::packed(&[], &Device::Cpu).is_err());
        let ragged = vec![vec![1, 1], vec![1]];
        assert!(TokenLayout::packed(&ragged, &Device::Cpu).is_err());
    }
}
