//! The elastic BERT encoder: any subnet of the teacher runs on slices of the shared weights.

use super::attention::attend;
use super::bert_names::LayerModule::*;
use super::bert_names::{
    EMBEDDINGS_NORM, POOLER, POSITION_EMBEDDINGS, TOKEN_TYPE_EMBEDDINGS, WORD_EMBEDDINGS,
};
use super::config::BertConfig;
use super::linear::ElasticLinear;
use super::ops::{frozen_norm, NormKind};
use super::packing::TokenLayout;
use super::subnet::{SubnetSpec, TeacherShape};
use super::weights::WeightStore;
use anyhow::Result;
use candle_core::{Tensor, D};

/// A frozen LayerNorm, sliced with the hidden width.
pub struct Norm {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub eps: f64,
    pub kind: NormKind,
}

impl Norm {
    /// Normalises the last dimension with the leading `width` parameters.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let width = x.dim(D::Minus1)?;
        let gamma = self.weight.narrow(0, 0, width)?;
        let beta = match &self.bias {
            Some(b) => Some(b.narrow(0, 0, width)?),
            None => None,
        };
        if gamma.track_op() && self.kind == NormKind::Rms {
            return super::rms_norm::trainable_rms_norm(x, &gamma, self.eps);
        }
        frozen_norm(x, &gamma, beta.as_ref(), self.eps, self.kind)
    }
}

/// Word, position and token-type embeddings, frozen.
pub struct BertEmbeddings {
    pub word: Tensor,
    pub position: Tensor,
    pub token_type: Tensor,
    pub norm: Norm,
}

/// One transformer block of BERT.
pub struct BertLayer {
    pub query: ElasticLinear,
    pub key: ElasticLinear,
    pub value: ElasticLinear,
    pub attn_out: ElasticLinear,
    pub attn_norm: Norm,
    pub ffn_in: ElasticLinear,
    pub ffn_out: ElasticLinear,
    pub out_norm: Norm,
}

impl BertLayer {
    /// The six adapted linears, in a fixed order (Q, K, V, O, FFN in, FFN out).
    pub fn linears(&self) -> [&ElasticLinear; 6] {
        [
            &self.query,
            &self.key,
            &self.value,
            &self.attn_out,
            &self.ffn_in,
            &self.ffn_out,
        ]
    }

    /// Mutable access to the six adapted linears.
    pub fn linears_mut(&mut self) -> [&mut ElasticLinear; 6] {
        [
            &mut self.query,
            &mut self.key,
            &mut self.value,
            &mut self.attn_out,
            &mut self.ffn_in,
            &mut self.ffn_out,
        ]
    }
}

/// Multiplicative gates (all ones) on one layer's heads `[heads]` and FFN neurons `[ffn]`;
/// their gradients are the |gradient × activation| importance scores used for rewiring.
pub struct LayerGates {
    pub heads: Tensor,
    pub ffn: Tensor,
}

/// The pretrained BERT teacher, run as any subnet.
pub struct BertEncoder {
    pub config: BertConfig,
    pub embeddings: BertEmbeddings,
    pub layers: Vec<BertLayer>,
    /// Optional pooler `dense` (unused by MLFS, kept so a teacher loads as it is).
    pub pooler: Option<ElasticLinear>,
}

/// Hidden states of a forward pass: the embedding output, then each kept layer's output —
/// `[B, T, d]` from [`BertEncoder::forward`], rows `[N, d]` of a [`TokenLayout`] from
/// [`BertEncoder::forward_rows`].
pub struct EncoderOutput {
    pub hidden_states: Vec<Tensor>,
}

impl EncoderOutput {
    /// The last layer's output.
    pub fn last(&self) -> &Tensor {
        // At least the embedding output is always present.
        &self.hidden_states[self.hidden_states.len() - 1]
    }
}

fn norm(store: &WeightStore, prefix: &str, width: usize, eps: f64) -> Result<Norm> {
    let weight = store.get_any(
        &[&format!("{prefix}.weight"), &format!("{prefix}.gamma")],
        &[width],
    )?;
    let bias = store.get_any(
        &[&format!("{prefix}.bias"), &format!("{prefix}.beta")],
        &[width],
    )?;
    Ok(Norm {
        weight,
        bias: Some(bias),
        eps,
        kind: NormKind::Layer,
    })
}

fn linear(store: &WeightStore, prefix: &str, d_out: usize, d_in: usize) -> Result<ElasticLinear> {
    let weight = store.get(&format!("{prefix}.weight"), &[d_out, d_in])?;
    let bias = store.get(&format!("{prefix}.bias"), &[d_out])?;
    Ok(ElasticLinear::new(weight, Some(bias)))
}

impl BertEncoder {
    /// Builds the encoder from a weight store holding Hugging Face BERT tensor names.
    pub fn from_store(config: &BertConfig, store: &WeightStore) -> Result<Self> {
        let d = config.hidden_size;
        let eps = config.layer_norm_eps;
        let embeddings = BertEmbeddings {
            word: store.get(
                &format!("{WORD_EMBEDDINGS}.weight"),
                &[config.vocab_size, d],
            )?,
            position: store.get(
                &format!("{POSITION_EMBEDDINGS}.weight"),
                &[config.max_position_embeddings, d],
            )?,
            token_type: store.get(
                &format!("{TOKEN_TYPE_EMBEDDINGS}.weight"),
                &[config.type_vocab_size, d],
            )?,
            norm: norm(store, EMBEDDINGS_NORM, d, eps)?,
        };
        let extra = format!("{}.weight", Query.at(config.num_hidden_layers));
        if store.contains(&extra) {
            anyhow::bail!(
                "{}: holds more layers than config.json's num_hidden_layers = {}",
                store.path().display(),
                config.num_hidden_layers
            );
        }
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            // Per-layer widths for exported per-layer subnets; the config's own otherwise.
            let (heads, f) = config.layer_widths(i);
            let att = heads * config.head_size();
            layers.push(BertLayer {
                query: linear(store, &Query.at(i), att, d)?,
                key: linear(store, &Key.at(i), att, d)?,
                value: linear(store, &Value.at(i), att, d)?,
                attn_out: linear(store, &AttentionOut.at(i), d, att)?,
                attn_norm: norm(store, &AttentionNorm.at(i), d, eps)?,
                ffn_in: linear(store, &FfnIn.at(i), f, d)?,
                ffn_out: linear(store, &FfnOut.at(i), d, f)?,
                out_norm: norm(store, &OutputNorm.at(i), d, eps)?,
            });
        }
        let pooler = if store.contains(&format!("{POOLER}.weight")) {
            Some(linear(store, POOLER, d, d)?)
        } else {
            None
        };
        Ok(Self {
            config: config.clone(),
            embeddings,
            layers,
            pooler,
        })
    }

    /// Parameter count of the whole encoder (embeddings included, pooler excluded).
    pub fn param_count(&self) -> usize {
        self.config.param_count()
    }

    /// Keeps the layers' frozen matrices in `precision` and runs their products in it.
    pub fn set_precision(
        &mut self,
        precision: crate::model::device::Precision,
    ) -> candle_core::Result<()> {
        for layer in &mut self.layers {
            for lin in layer.linears_mut() {
                lin.set_precision(precision)?;
            }
        }
        Ok(())
    }

    /// The device the weights live on.
    pub fn device(&self) -> &candle_core::Device {
        self.embeddings.word.device()
    }

    /// The teacher's limits for subnet validation.
    pub fn shape(&self) -> TeacherShape {
        self.config.shape()
    }

    /// Embedding output `[B, T, d_sub]` (frozen, never tracked).
    pub fn embed(&self, input_ids: &Tensor, hidden: usize) -> candle_core::Result<Tensor> {
        let (b, t) = input_ids.dims2()?;
        let e = &self.embeddings;
        let flat = input_ids.flatten_all()?;
        // Look up full rows, then slice: index_select needs a contiguous table.
        let words = e.word.embedding(&flat)?.narrow(1, 0, hidden)?;
        let positions = e.position.narrow(0, 0, t)?.narrow(1, 0, hidden)?;
        let token_type = e.token_type.narrow(0, 0, 1)?.narrow(1, 0, hidden)?;
        let x = words
            .reshape((b, t, hidden))?
            .broadcast_add(&positions)?
            .broadcast_add(&token_type)?;
        e.norm.forward(&x)
    }

    /// Forward of subnet `spec` at every position, padding included (as Hugging Face computes
    /// it): `input_ids` `[B, T]` (u32), `attention_mask` `[B, T]` (0/1); states `[B, T, d]`.
    ///
    /// The spec must have been validated against [`Self::shape`].
    pub fn forward(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        spec: &SubnetSpec,
    ) -> anyhow::Result<EncoderOutput> {
        let mask = attention_mask
            .to_dtype(candle_core::DType::U32)?
            .to_vec2()?;
        let layout = TokenLayout::padded(&mask, input_ids.device())?;
        let out = self.forward_rows(input_ids, &layout, spec, None)?;
        let (b, t) = (layout.batch(), layout.seq_len());
        let hidden_states = out
            .hidden_states
            .iter()
            .map(|h| h.reshape((b, t, h.dim(1)?)))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(EncoderOutput { hidden_states })
    }

    /// Forward of subnet `spec` on the rows of `layout` (packed real tokens, or every
    /// position), with optional per-layer gates on heads and FFN neurons (for importance
    /// scores). States are rows `[layout.rows(), d]`.
    pub fn forward_rows(
        &self,
        input_ids: &Tensor,
        layout: &TokenLayout,
        spec: &SubnetSpec,
        gates: Option<&[LayerGates]>,
    ) -> candle_core::Result<EncoderOutput> {
        let hidden = spec.hidden_or(self.config.hidden_size);
        let embedded = self.embed(input_ids, hidden)?;
        let (b, t, _) = embedded.dims3()?;
        let mut x = layout.pack(&embedded.reshape((b * t, hidden))?)?;
        let mut hidden_states = Vec::with_capacity(spec.layers.len() + 1);
        hidden_states.push(x.clone());
        for (i, &l) in spec.layers.iter().enumerate() {
            let gate = gates.and_then(|g| g.get(i));
            let (heads, ffn) = spec.layer_widths(i);
            x = self.layer_forward(&self.layers[l], &x, layout, heads, ffn, gate)?;
            hidden_states.push(x.clone());
        }
        Ok(EncoderOutput { hidden_states })
    }

    /// One block on rows `x` `[N, d]`; attention sees them unpacked to `[B, T, ·]`.
    fn layer_forward(
        &self,
        layer: &BertLayer,
        x: &Tensor,
        layout: &TokenLayout,
        heads: usize,
        ffn: usize,
        gate: Option<&LayerGates>,
    ) -> candle_core::Result<Tensor> {
        let rows = x.dim(0)?;
        let hs = self.config.head_size();
        let width = heads * hs;
        let q = layout.unpack(&layer.query.forward(x, width)?)?;
        let k = layout.unpack(&layer.key.forward(x, width)?)?;
        let v = layout.unpack(&layer.value.forward(x, width)?)?;
        let mask = layout.attention_mask();
        let mut ctx = layout.pack(&attend(&q, &k, &v, heads, heads, hs, Some(mask))?)?;
        if let Some(g) = gate {
            ctx = ctx
                .reshape((rows, heads, hs))?
                .broadcast_mul(&g.heads.reshape((1, heads, 1))?)?
                .reshape((rows, width))?;
        }
        let attn = layer.attn_out.forward(&ctx, x.dim(1)?)?;
        let h = layer.attn_norm.forward(&(attn + x)?)?;
        let mut inner = activation(&layer.ffn_in.forward(&h, ffn)?, &self.config.hidden_act)?;
        if let Some(g) = gate {
            inner = inner.broadcast_mul(&g.ffn)?;
        }
        let out = layer.ffn_out.forward(&inner, x.dim(1)?)?;
        layer.out_norm.forward(&(out + h)?)
    }
}

fn activation(x: &Tensor, name: &str) -> candle_core::Result<Tensor> {
    match name {
        "relu" => x.relu(),
        "gelu_new" | "gelu_pytorch_tanh" => x.gelu(),
        _ => super::activation::gelu_erf(x),
    }
}
