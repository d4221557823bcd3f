//! Students for full fine-tuning: the teacher's slice (or a random one) as trainable variables.

use super::decoder::{LlamaDecoder, LlamaLayer};
use crate::model::encoder::Norm;
use crate::model::linear::ElasticLinear;
use crate::model::param::Param;
use anyhow::{Context, Result};
use candle_core::{DType, Tensor, Var};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

/// Where a fully trained student's weights start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StudentInit {
    /// A copy of the teacher's weights (the slice).
    Sliced,
    /// Llama's initialisation: N(0, 0.02) matrices, unit norms.
    Random,
}

/// Builds a copy of `teacher` whose `layers`, embeddings and final norm are trainable variables
/// (the others stay shared and frozen; no subnet of this run uses them). Returns the student
/// and its parameters, named like the Hugging Face tensors.
pub fn trainable_student(
    teacher: &LlamaDecoder,
    layers: &[usize],
    init: StudentInit,
    seed: u64,
) -> Result<(LlamaDecoder, Vec<Param>)> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5EED_57D0);
    let normal = Normal::new(0.0f32, 0.02).context("normal distribution")?;
    let mut params = Vec::new();
    let mut make = |name: String, t: &Tensor, matrix: bool| -> Result<Tensor> {
        let value = match (init, matrix) {
            // `Var::from_tensor` copies, so the teacher itself is never trained.
            (StudentInit::Sliced, _) => t.to_dtype(DType::F32)?,
            (StudentInit::Random, true) => {
                let n = t.elem_count();
                let v: Vec<f32> = (0..n).map(|_| normal.sample(&mut rng)).collect();
                Tensor::from_vec(v, t.shape(), t.device())?
            }
            (StudentInit::Random, false) => t.ones_like()?,
        };
        let var = Var::from_tensor(&value)?;
        let out = var.as_tensor().clone();
        params.push(Param {
            name,
            var,
            decay: matrix,
        });
        Ok(out)
    };
    let embed = make("model.embed_tokens.weight".into(), &teacher.embed, true)?;
    let lm_head = match &teacher.lm_head {
        Some(h) => Some(make("lm_head.weight".into(), h, true)?),
        None => None,
    };
    let final_norm = Norm {
        weight: make(
            "model.norm.weight".into(),
            &teacher.final_norm.weight,
            false,
        )?,
        bias: None,
        eps: teacher.final_norm.eps,
        kind: teacher.final_norm.kind,
    };
    let mut out_layers = Vec::with_capacity(teacher.layers.len());
    for (i, layer) in teacher.layers.iter().enumerate() {
        if !layers.contains(&i) {
            out_layers.push(shared_layer(layer));
            continue;
        }
        use super::names::BlockTensor as T;
        let p = format!("model.layers.{i}");
        let mut lin = |name: &str, l: &ElasticLinear| -> Result<ElasticLinear> {
            let weight = make(format!("{p}.{name}.weight"), &l.weight_pre, true)?;
            let mut out = ElasticLinear::new(weight, None);
            out.compute = l.compute;
            Ok(out)
        };
        let q = lin(T::Q.module(), &layer.q)?;
        let k = lin(T::K.module(), &layer.k)?;
        let v = lin(T::V.module(), &layer.v)?;
        let o = lin(T::O.module(), &layer.o)?;
        let gate = lin(T::Gate.module(), &layer.gate)?;
        let up = lin(T::Up.module(), &layer.up)?;
        let down = lin(T::Down.module(), &layer.down)?;
        let mut norm = |name: &str, n: &Norm| -> Result<Norm> {
            Ok(Norm {
                weight: make(format!("{p}.{name}.weight"), &n.weight, false)?,
                bias: None,
                eps: n.eps,
                kind: n.kind,
            })
        };
        out_layers.push(LlamaLayer {
            q,
            k,
            v,
            o,
            gate,
            up,
            down,
            input_norm: norm(T::InputNorm.module(), &layer.input_norm)?,
            post_norm: norm(T::PostNorm.module(), &layer.post_norm)?,
        });
    }
    let student = LlamaDecoder {
        config: teacher.config.clone(),
        embed,
        layers: out_layers,
        final_norm,
        lm_head,
    };
    Ok((student, params))
}

/// A layer sharing the teacher's frozen tensors (no copy).
fn shared_layer(layer: &LlamaLayer) -> LlamaLayer {
    let lin = |l: &ElasticLinear| {
        let mut out = ElasticLinear::new(l.weight_pre.clone(), l.bias.clone());
        out.compute = l.compute;
        out
    };
    let norm = |n: &Norm| Norm {
        weight: n.weight.clone(),
        bias: n.bias.clone(),
        eps: n.eps,
        kind: n.kind,
    };
    LlamaLayer {
        q: lin(&layer.q),
        k: lin(&layer.k),
        v: lin(&layer.v),
        o: lin(&layer.o),
        gate: lin(&layer.gate),
        up: lin(&layer.up),
        down: lin(&layer.down),
        input_norm: norm(&layer.input_norm),
        post_norm: norm(&layer.post_norm),
    }
}
