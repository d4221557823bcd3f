//! The elastic Llama decoder: RMSNorm, rotary, GQA attention and SwiGLU on sliced shared weights.

use super::config::LlamaConfig;
use crate::model::attention::{attend_heads, causal_mask, split_heads};
use crate::model::encoder::{LayerGates, Norm};
use crate::model::linear::ElasticLinear;
use crate::model::ops::{cast, frozen_matmul_t, with_grad, NormKind};
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
    /// The seven linears: Q, K, V, O, gate, up, down.
    pub fn linears(&self) -> [&ElasticLinear; 7] {
        [
            &self.q, &self.k, &self.v, &self.o, &self.gate, &self.up, &self.down,
        ]
    }

    /// Mutable access to the seven linears, in the order of [`Self::linears`].
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
        let eps = config.rms_norm_eps;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            // A per-layer export's layers each have their own widths.
            let (heads, f) = config.layer_widths(i);
            let (qw, kvw) = (heads * hs, heads / config.group_size() * hs);
            use super::names::BlockTensor as T;
            let linear = |t: T, out: usize, inp: usize| lin(store, &t.stored(i), out, inp);
            let norm = |t: T| rms(store, &t.stored(i), d, eps);
            layers.push(LlamaLayer {
                q: linear(T::Q, qw, d)?,
                k: linear(T::K, kvw, d)?,
                v: linear(T::V, kvw, d)?,
                o: linear(T::O, d, qw)?,
                gate: linear(T::Gate, f, d)?,
                up: linear(T::Up, f, d)?,
                down: linear(T::Down, d, f)?,
                input_norm: norm(T::InputNorm)?,
                post_norm: norm(T::PostNorm)?,
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
        self.config.shape()
    }

    /// Keeps the layers' frozen matrices in `precision` and runs their products in it.
    pub fn set_precision(&mut self, precision: crate::model::device::Precision) -> Result<()> {
        for layer in &mut self.layers {
            for lin in layer.linears_mut() {
                lin.set_precision(precision)?;
            }
        }
        Ok(())
    }

    /// The dtype the layers' products run in (the run's precision).
    pub fn compute_dtype(&self) -> DType {
        self.layers.first().map_or(DType::F32, |l| l.q.compute)
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        self.embed.device()
    }

    /// Rotary cos/sin tables `[T, hs/2]` for positions `past..past+t`, in the compute dtype
    /// (the rotation runs on the projections' output, as Hugging Face's casts its tables).
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
        let dtype = self.compute_dtype();
        Ok((
            Tensor::from_vec(cos, (t, hs / 2), self.embed.device())?.to_dtype(dtype)?,
            Tensor::from_vec(sin, (t, hs / 2), self.embed.device())?.to_dtype(dtype)?,
        ))
    }

    /// Forward of subnet `spec` over token ids `[B, T]` (right-padded rows are fine: causal).
    pub fn forward(&self, ids: &Tensor, spec: &SubnetSpec) -> Result<DecoderOutput> {
        let (b, t) = ids.dims2()?;
        let (hidden_states, last) = self.forward_hidden(ids, spec, true, None)?;
        let logits = self
            .logits(&last)?
            .reshape((b, t, self.config.vocab_size))?;
        Ok(DecoderOutput {
            hidden_states,
            last_hidden: last.reshape((b, t, self.config.hidden_size))?,
            logits,
        })
    }

    /// The output matrix `[V, d]` (the embeddings when tied).
    pub fn head(&self) -> &Tensor {
        self.lm_head.as_ref().unwrap_or(&self.embed)
    }

    /// Logits `[N, V]` of final hidden states `[N, d]`.
    pub fn logits(&self, last: &Tensor) -> Result<Tensor> {
        Ok(frozen_matmul_t(last, self.head())?)
    }

    /// Hidden states after the embeddings and after every kept layer (`[B, T, d]` each), and
    /// the final-normed states `[B·T, d]`. `adapters: false` runs the teacher's own weights;
    /// a cache makes this an incremental step after the cached positions.
    pub fn forward_hidden(
        &self,
        ids: &Tensor,
        spec: &SubnetSpec,
        adapters: bool,
        cache: Option<&mut KvCache>,
    ) -> Result<(Vec<Tensor>, Tensor)> {
        let (b, t) = ids.dims2()?;
        let past = cache.as_ref().map_or(0, |c| c.len);
        let ctx = self.layer_context(b, t, spec, past)?;
        self.run_layers(ids, spec, &ctx, adapters, cache)
    }

    /// [`Self::forward_hidden`] of the adapted net with multiplicative gates on every teacher
    /// layer's KV groups (`heads`: one gate per group) and FFN neurons, for importance scores.
    pub fn forward_gated(
        &self,
        ids: &Tensor,
        spec: &SubnetSpec,
        gates: Vec<LayerGates>,
    ) -> Result<(Vec<Tensor>, Tensor)> {
        let (b, t) = ids.dims2()?;
        let mut ctx = self.layer_context(b, t, spec, 0)?;
        ctx.gates = gates;
        self.run_layers(ids, spec, &ctx, true, None)
    }

    fn run_layers(
        &self,
        ids: &Tensor,
        spec: &SubnetSpec,
        ctx: &LayerContext,
        adapters: bool,
        mut cache: Option<&mut KvCache>,
    ) -> Result<(Vec<Tensor>, Tensor)> {
        let (b, t) = (ctx.b, ctx.t);
        let d = self.config.hidden_size;
        let mut x = self.embed_tokens(ids)?;
        let mut hidden_states = vec![x.reshape((b, t, d))?];
        for (slot, &l) in spec.layers.iter().enumerate() {
            x = self.layer_forward(l, slot, &x, ctx, adapters, cache.as_deref_mut())?;
            hidden_states.push(x.reshape((b, t, d))?);
        }
        if let Some(c) = cache {
            c.len += t;
        }
        let last = self.final_norm.forward(&x)?;
        Ok((hidden_states, last))
    }

    /// Token embeddings `[B·T, d]` of ids `[B, T]`.
    pub fn embed_tokens(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        Ok(self
            .embed
            .embedding(&ids.flatten_all()?)?
            .reshape((b * t, self.config.hidden_size))?)
    }

    /// What every layer of one forward pass shares: shapes, rotary tables and the causal mask.
    pub fn layer_context(
        &self,
        b: usize,
        t: usize,
        spec: &SubnetSpec,
        past: usize,
    ) -> Result<LayerContext> {
        let (cos, sin) = self.rotary(t, past)?;
        Ok(LayerContext {
            b,
            t,
            q_heads: spec.heads.per_layer(spec.layers.len()),
            ffn: spec.ffn.per_layer(spec.layers.len()),
            group: self.config.group_size(),
            cos,
            sin,
            // A single new position may attend to everything cached: no mask needed.
            mask: (t > 1)
                .then(|| causal_mask(t, past, self.embed.device()))
                .transpose()?
                .map(|m| m.to_dtype(self.compute_dtype()))
                .transpose()?,
            causal_past: (t > 1).then_some(past),
            gates: Vec::new(),
        })
    }

    /// One decoder block (teacher layer `l`, the subnet's `slot`-th) on `x` `[B·T, d]`.
    ///
    /// The residual stream and the norms stay f32; under bf16 everything between a norm and
    /// the next residual addition is bf16 (each norm's output cast once for all the products
    /// that read it), as PyTorch's autocast keeps a Llama block: half the bytes for the FFN's
    /// and attention's intermediates, which a training step keeps for its backward.
    pub fn layer_forward(
        &self,
        l: usize,
        slot: usize,
        x: &Tensor,
        ctx: &LayerContext,
        adapters: bool,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let (b, t) = (ctx.b, ctx.t);
        let d = self.config.hidden_size;
        let hs = self.config.head_size();
        let compute = self.compute_dtype();
        let layer = &self.layers[l];
        let h = cast(&layer.input_norm.forward(x)?, compute)?;
        let proj = |lin: &ElasticLinear, n: usize| -> Result<Tensor> {
            let y = lin.forward_with(&h, n * hs, adapters)?;
            Ok(split_heads(&y.reshape((b, t, n * hs))?, n, hs)?)
        };
        let (q_heads, kv_heads, ffn) = ctx.widths(slot);
        let q = proj(&layer.q, q_heads)?;
        let k = proj(&layer.k, kv_heads)?;
        let v = proj(&layer.v, kv_heads)?;
        let (q, mut k) = (rope(&q, &ctx.cos, &ctx.sin)?, rope(&k, &ctx.cos, &ctx.sin)?);
        let mut v = v;
        if let Some(c) = cache {
            (k, v) = c.append(slot, k, v)?;
        }
        let mut attn = attend_heads(&q, &k, &v, ctx.mask.as_ref(), ctx.causal_past)?;
        let gates = ctx.gates.get(l);
        if let Some(g) = gates {
            // One gate per KV group, shared by the group's query heads.
            let (groups, per) = (kv_heads, q_heads / kv_heads);
            let per_head = g.heads.narrow(0, 0, groups)?.reshape((groups, 1))?;
            let per_head = per_head
                .broadcast_as((groups, per))?
                .reshape((1, groups * per, 1))?;
            attn = attn
                .reshape((b * t, q_heads, hs))?
                .broadcast_mul(&cast(&per_head.contiguous()?, compute)?)?
                .reshape((b * t, q_heads * hs))?;
        }
        let attn_out = layer.o.forward_with(&attn, d, adapters)?;
        let x = (x + cast(&attn_out, x.dtype())?)?;
        let h = cast(&layer.post_norm.forward(&x)?, compute)?;
        let gate = layer.gate.forward_with(&h, ffn, adapters)?;
        let up = layer.up.forward_with(&h, ffn, adapters)?;
        let mut act = crate::model::activation::swiglu(&gate, &up)?;
        if let Some(g) = gates {
            act = act.broadcast_mul(&cast(&g.ffn.narrow(0, 0, ffn)?, compute)?)?;
        }
        let ffn_out = cast(&layer.down.forward_with(&act, d, adapters)?, x.dtype())?;
        Ok((x + ffn_out)?)
    }
}

/// Shapes, rotary tables and mask shared by the layers of one forward pass.
pub struct LayerContext {
    pub b: usize,
    pub t: usize,
    /// Query heads and FFN neurons of each kept layer (by slot).
    q_heads: Vec<usize>,
    ffn: Vec<usize>,
    /// Query heads per key/value head.
    group: usize,
    cos: Tensor,
    sin: Tensor,
    mask: Option<Tensor>,
    /// `mask` is the causal one of queries starting at this position (a GPU applies it inside
    /// its fused softmax).
    causal_past: Option<usize>,
    /// Importance gates per teacher layer (empty: none).
    gates: Vec<LayerGates>,
}

impl LayerContext {
    /// (query heads, key/value heads, FFN neurons) of the subnet's `slot`-th layer.
    pub fn widths(&self, slot: usize) -> (usize, usize, usize) {
        let q = self.q_heads.get(slot).copied().unwrap_or(0);
        let f = self.ffn.get(slot).copied().unwrap_or(0);
        (q, q / self.group.max(1), f)
    }
}

/// Keys and values of the positions seen so far, per kept layer (`[B, Hkv, S, hs]`).
#[derive(Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    /// Positions cached.
    pub len: usize,
}

impl KvCache {
    /// Appends this step's keys and values to a layer's cache; returns the whole sequence's.
    fn append(&mut self, slot: usize, k: Tensor, v: Tensor) -> Result<(Tensor, Tensor)> {
        if self.layers.len() <= slot {
            self.layers.resize(slot + 1, None);
        }
        let (k, v) = match self.layers[slot].take() {
            Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
            None => (k, v),
        };
        self.layers[slot] = Some((k.clone(), v.clone()));
        Ok((k, v))
    }
}

/// Hugging Face rotary (rotate-half) on `[B, H, T, hs]` by candle's fused kernel. A rotation's
/// gradient is the inverse rotation of the incoming one (the same kernel with −sin): candle's
/// own differentiable version (`rope_slow`) took a dozen element-wise passes each way.
fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
    let y = candle_nn::rotary_emb::rope(&x.detach().contiguous()?, cos, sin)?;
    if !x.track_op() {
        return Ok(y);
    }
    let (cos, neg_sin) = (cos.clone(), sin.neg()?);
    with_grad(x, &y, move |g| {
        candle_nn::rotary_emb::rope(&g.contiguous()?, &cos, &neg_sin)
    })
}

/// `logsumexp` over the vocabulary of logits `[.., V]`.
pub fn logsumexp(logits: &Tensor) -> candle_core::Result<Tensor> {
    logits.to_dtype(DType::F32)?.log_sum_exp(D::Minus1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    /// The fused rotary and its inverse-rotation gradient equal candle's differentiable
    /// `rope_slow`, values and gradients.
    #[test]
    fn fused_rope_matches_the_slow_one_with_gradients() {
        let dev = Device::Cpu;
        let x = crate::util::uniform_tensor((2 * 3 * 5, 8), 7)
            .reshape((2, 3, 5, 8))
            .unwrap();
        let w = crate::util::uniform_tensor((2 * 3 * 5, 8), 8)
            .reshape((2, 3, 5, 8))
            .unwrap();
        let angles: Vec<f32> = (0..5 * 4).map(|i| 0.37 * i as f32).collect();
        let a = Tensor::from_vec(angles, (5, 4), &dev).unwrap();
        let (cos, sin) = (a.cos().unwrap(), a.sin().unwrap());
        let run = |fused: bool| {
            let v = Var::from_tensor(&x).unwrap();
            let y = if fused {
                rope(v.as_tensor(), &cos, &sin).unwrap()
            } else {
                candle_nn::rotary_emb::rope_slow(v.as_tensor(), &cos, &sin).unwrap()
            };
            let g = (&y * &w).unwrap().sum_all().unwrap().backward().unwrap();
            (y, g.get(v.as_tensor()).unwrap().clone())
        };
        let ((y1, g1), (y2, g2)) = (run(true), run(false));
        assert!(crate::util::max_abs_diff(&y1, &y2).unwrap() < 1e-6);
        assert!(crate::util::max_abs_diff(&g1, &g2).unwrap() < 1e-6);
    }
}
