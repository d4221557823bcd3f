//! The maxnet's feature projections P^m (one `[d, k]` matrix per teacher layer), shared by the
//! classifier and decoder supernets.

use super::config::ProjectionKind;
use crate::model::param::Param;
use anyhow::{Context, Result};
use candle_core::{Device, Tensor, Var};
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal};

/// P^m per teacher layer (empty for the identity option) and how it is kept from collapsing.
pub struct Projections {
    pub vars: Vec<Var>,
    pub kind: ProjectionKind,
}

/// `d × k` matrix with orthonormal columns (Gram–Schmidt on a Gaussian draw), on the CPU.
pub fn orthonormal(d: usize, k: usize, rng: &mut StdRng) -> Result<Tensor> {
    let normal = Normal::new(0.0f64, 1.0).context("normal distribution")?;
    let k_eff = k.min(d);
    let mut cols: Vec<Vec<f64>> = Vec::with_capacity(k);
    for c in 0..k {
        let mut v: Vec<f64> = (0..d).map(|_| normal.sample(rng)).collect();
        if c < k_eff {
            for u in &cols {
                let dot: f64 = v.iter().zip(u).map(|(a, b)| a * b).sum();
                v.iter_mut().zip(u).for_each(|(a, b)| *a -= dot * b);
            }
        }
        let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt().max(1e-12);
        v.iter_mut().for_each(|a| *a /= norm);
        cols.push(v);
    }
    let mut data = vec![0f32; d * k];
    for (c, col) in cols.iter().enumerate() {
        for (r, &x) in col.iter().enumerate() {
            data[r * k + c] = x as f32;
        }
    }
    Ok(Tensor::from_vec(data, (d, k), &Device::Cpu)?)
}

/// Rescales every column of a projection to unit length (keeps P from collapsing).
pub fn unit_columns(p: &Var) -> Result<()> {
    let t = p.as_tensor();
    let norms = t.sqr()?.sum_keepdim(0)?.sqrt()?.clamp(1e-12, f64::MAX)?;
    p.set(&t.broadcast_div(&norms)?)?;
    Ok(())
}

impl Projections {
    /// Random orthonormal `[d, k]` projections for `layers` teacher layers (none for identity),
    /// on `device`.
    pub fn new(
        layers: usize,
        (d, k): (usize, usize),
        kind: ProjectionKind,
        rng: &mut StdRng,
        device: &Device,
    ) -> Result<Self> {
        let vars = match kind {
            ProjectionKind::Identity => Vec::new(),
            _ => (0..layers)
                .map(|_| {
                    Ok(Var::from_tensor(
                        &orthonormal(d, k, rng)?.to_device(device)?,
                    )?)
                })
                .collect::<Result<Vec<_>>>()?,
        };
        Ok(Self { vars, kind })
    }

    /// The projections the optimizer updates in `stage` (learnt ones, from stage 1 on).
    pub fn trainable(&self, stage: usize) -> Vec<Param> {
        if stage == 0 || self.kind != ProjectionKind::UnitNorm {
            return Vec::new();
        }
        self.state()
            .into_iter()
            .map(|(name, var)| Param {
                name,
                var,
                decay: false,
            })
            .collect()
    }

    /// Every projection with its checkpoint name `projection.{layer}`.
    pub fn state(&self) -> Vec<(String, Var)> {
        self.vars
            .iter()
            .enumerate()
            .map(|(l, p)| (format!("projection.{l}"), p.clone()))
            .collect()
    }

    /// Renormalises every learnt projection's columns to unit length after a step.
    pub fn renormalise(&self) -> Result<()> {
        if self.kind != ProjectionKind::UnitNorm {
            return Ok(());
        }
        self.vars.iter().try_for_each(unit_columns)
    }

    /// The projection of teacher layer `g`; the identity `[d, d]` on `device` when there is none.
    pub fn of_layer(&self, g: usize, d: usize, device: &Device) -> Result<Tensor> {
        Ok(match self.vars.get(g) {
            Some(p) => p.as_tensor().clone(),
            None => Tensor::eye(d, candle_core::DType::F32, device)?,
        })
    }
}
