//! The elastic Llama decoder: RMSNorm, rotary, GQA attention and SwiGLU on sliced shared weights.

use super::config::LlamaConfig;
use crate::model::attention::{attend_heads, causal_mask, split_heads};
use crate::model::encoder::Norm;
use crate::model::linear::ElasticLinear;
use crate::model::ops::{frozen_matmul_t, NormKind};
use crate::model::subnet::{SubnetSpec, TeacherShape};
use crate::model::weights::WeightStore;
use anyhow::Result;
use candle_core::{DType, Device, Tensor, D};

/// One decoder block.
pub struct LlamaLayer {
    pub q: ElasticLinear,
    pub k: ElasticLinear,
    pub v: ElasticLinear,
    pub o: ElasticLinear,
    pub gate: ElasticLinear,
    pub up: ElasticLinear,
    pub down: ElasticLinear,
    pub input_norm: Norm,
    pub post_norm: Norm,
}

impl LlamaLayer {
    /// The seven adapted linears (Q, K, V, O, gate, up, down).
    pub fn linears_mut(&mut self) -> [&mut ElasticLinear; 7] {
        [
            &mut self.q,
            &mut self.k,
            &mut self.v,
            &mut self.o,
            &mut self.gate,
            &mut self.up,
            &mut self.down,
        ]
    }
}

/// A pretrained Llama-family decoder, run as any subnet.
pub struct LlamaDecoder {
    pub config: LlamaConfig,
    pub embed: Tensor,
    pub layers: Vec<LlamaLayer>,
    pub final_norm: Norm,
    /// Separate output matrix, or `None` when tied to the embeddings.
    pub lm_head: Option<Tensor>,
}

/// Final hidden states (after the last norm) and logits of a forward pass.
pub struct DecoderOutput {
    pub hidden_states: Vec<Tensor>,
    pub last_hidden: Tensor,
    pub logits: Tensor,
}

fn rms(store: &WeightStore, name: &str, d: usize, eps: f64) -> Result<Norm> {
    Ok(Norm {
        weight: store.get(name, &[d])?,
        bias: None,
        eps,
        kind: NormKind::Rms,
    })
}

fn lin(store: &WeightStore, name: &str, out: usize, inp: usize) -> Result<ElasticLinear> {
    Ok(ElasticLinear::new(store.get(name, &[out, inp])?, None))
}

impl LlamaDecoder {
    /// Builds the decoder from Hugging Face Llama tensor names.
    pub fn from_store(config: &LlamaConfig, store: &WeightStore) -> Result<Self> {
        let d = config.hidden_size;
        let hs = config.head_size();
        let (qw, kvw, f) = (
            config.num_attention_heads * hs,
            config.num_key_value_heads * hs,
            config.intermediate_size,
        );
        let eps = config.rms_norm_eps;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("layers.{i}");
            layers.push(LlamaLayer {
                q: lin(store, &format!("{p}.self_attn.q_proj.weight"), qw, d)?,
                k: lin(store, &format!("{p}.self_attn.k_proj.weight"), kvw, d)?,
                v: lin(store, &format!("{p}.self_attn.v_proj.weight"), kvw, d)?,
                o: lin(store, &format!("{p}.self_attn.o_proj.weight"), d, qw)?,
                gate: lin(store, &format!("{p}.mlp.gate_proj.weight"), f, d)?,
                up: lin(store, &format!("{p}.mlp.up_proj.weight"), f, d)?,
                down: lin(store, &format!("{p}.mlp.down_proj.weight"), d, f)?,
                input_norm: rms(store, &format!("{p}.input_layernorm.weight"), d, eps)?,
                post_norm: rms(
                    store,
                    &format!("{p}.post_attention_layernorm.weight"),
                    d,
                    eps,
                )?,
            });
        }
        let lm_head = if config.tie_word_embeddings {
            None
        } else {
            store.get_optional("lm_head.weight", &[config.vocab_size, d])?
        };
        Ok(Self {
            config: config.clone(),
            embed: store.get("embed_tokens.weight", &[config.vocab_size, d])?,
            layers,
            final_norm: rms(store, "norm.weight", d, eps)?,
            lm_head,
        })
    }

    /// The teacher's limits for subnet validation (`heads` counts query heads).
    pub fn shape(&self) -> TeacherShape {
        let c = &self.config;
        TeacherShape {
            layers: c.num_hidden_layers,
            heads: c.num_attention_heads,
            heads_per_kv: c.group_size(),
            head_size: c.head_size(),
            ffn: c.intermediate_size,
            hidden: c.hidden_size,
        }
    }

    /// Rotary cos/sin tables `[T, hs/2]` for positions `past..past+t`.
    fn rotary(&self, t: usize, past: usize) -> Result<(Tensor, Tensor)> {
        let hs = self.config.head_size();
        let theta = self.config.rope_theta;
        let inv: Vec<f32> = (0..hs / 2)
            .map(|i| (1.0 / theta.powf(2.0 * i as f64 / hs as f64)) as f32)
            .collect();
        let mut cos = Vec::with_capacity(t * hs / 2);
        let mut sin = Vec::with_capacity(t * hs / 2);
        for pos in past..past + t {
            for &f in &inv {
                let a = pos as f32 * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        Ok((
            Tensor::from_vec(cos, (t, hs / 2), &Device::Cpu)?,
            Tensor::from_vec(sin, (t, hs / 2), &Device::Cpu)?,
        ))
    }

    /// Forward of subnet `spec` over token ids `[B, T]` (right-padded rows are fine: causal).
    pub fn forward(&self, ids: &Tensor, spec: &SubnetSpec) -> Result<DecoderOutput> {
        let (b, t) = ids.dims2()?;
        let d = self.config.hidden_size;
        let hs = self.config.head_size();
        let (hq, hkv) = (spec.heads, spec.heads / self.config.group_size());
        let (cos, sin) = self.rotary(t, 0)?;
        let mask = causal_mask(t, 0)?;
        let mut x = self
            .embed
            .embedding(&ids.flatten_all()?)?
            .reshape((b * t, d))?;
        let mut hidden_states = vec![x.reshape((b, t, d))?];
        for &l in &spec.layers {
            let layer = &self.layers[l];
            let h = layer.input_norm.forward(&x)?;
            let q = split_heads(
                &layer.q.forward(&h, hq * hs)?.reshape((b, t, hq * hs))?,
                hq,
                hs,
            )?;
            let k = split_heads(
                &layer.k.forward(&h, hkv * hs)?.reshape((b, t, hkv * hs))?,
                hkv,
                hs,
            )?;
            let v = split_heads(
                &layer.v.forward(&h, hkv * hs)?.reshape((b, t, hkv * hs))?,
                hkv,
                hs,
            )?;
            let (q, k) = (rope(&q, &cos, &sin)?, rope(&k, &cos, &sin)?);
            let ctx = attend_heads(&q, &k, &v, Some(&mask))?;
            x = (x + layer.o.forward(&ctx, d)?)?;
            let h = layer.post_norm.forward(&x)?;
            let gate = layer.gate.forward(&h, spec.ffn)?;
            let up = layer.up.forward(&h, spec.ffn)?;
            x = (x + layer
                .down
                .forward(&(candle_nn::ops::silu(&gate)? * up)?, d)?)?;
            hidden_states.push(x.reshape((b, t, d))?);
        }
        let last = self.final_norm.forward(&x)?;
        let head = self.lm_head.as_ref().unwrap_or(&self.embed);
        let logits = frozen_matmul_t(&last, head)?.reshape((b, t, self.config.vocab_size))?;
        Ok(DecoderOutput {
            hidden_states,
            last_hidden: last.reshape((b, t, d))?,
            logits,
        })
    }
}

/// Hugging Face rotary (rotate-half) on `[B, H, T, hs]`; the fused kernel when nothing trains.
fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
    if x.track_op() {
        candle_nn::rotary_emb::rope_slow(x, cos, sin)
    } else {
        candle_nn::rotary_emb::rope(&x.contiguous()?, cos, sin)
    }
}

/// `logsumexp` over the vocabulary of logits `[.., V]`.
pub fn logsumexp(logits: &Tensor) -> candle_core::Result<Tensor> {
    logits.to_dtype(DType::F32)?.log_sum_exp(D::Minus1)
}
