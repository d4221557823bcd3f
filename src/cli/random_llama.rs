//! `mlfs-studio random-llama`: a Llama teacher of a named shape with random weights, for timing
//! runs at sizes whose real weights are not at hand (PyTorch's reference times the same shapes
//! with random weights too).

use crate::model::llama::LlamaConfig;
use crate::model::weights::save_f32;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;
use std::path::Path;

/// The Hugging Face config of a named shape: `smollm2-135m` or `smollm2-1.7b`.
pub fn shape_config(shape: &str) -> Result<LlamaConfig> {
    let (hidden, ffn, layers, heads, kv) = match shape {
        "smollm2-135m" => (576, 1536, 30, 9, 3),
        "smollm2-1.7b" => (2048, 8192, 24, 32, 32),
        other => bail!("unknown shape '{other}' (smollm2-135m, smollm2-1.7b)"),
    };
    Ok(LlamaConfig {
        vocab_size: 49152,
        hidden_size: hidden,
        intermediate_size: ffn,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        num_key_value_heads: kv,
        rms_norm_eps: 1e-5,
        rope_theta: 100000.0,
        max_position_embeddings: 2048,
        tie_word_embeddings: true,
        head_dim: Some(64),
        bos_token_id: Some(1),
        eos_token_id: Some(2),
        layer_heads: None,
        layer_intermediate_sizes: None,
    })
}

/// Writes a named shape's random teacher (see [`write_random_teacher`]).
pub fn write_random_llama(shape: &str, tokenizer: &Path, out: &Path, seed: u64) -> Result<()> {
    write_random_teacher(&shape_config(shape)?, tokenizer, out, seed)
}

/// Writes `config.json`, `model.safetensors` (N(0, 0.02) matrices, unit norms, seeded) and a
/// copy of `tokenizer` into the folder `out`.
pub fn write_random_teacher(
    c: &LlamaConfig,
    tokenizer: &Path,
    out: &Path,
    seed: u64,
) -> Result<()> {
    if !tokenizer.is_file() {
        bail!("{}: tokenizer.json not found", tokenizer.display());
    }
    // Never into a folder that holds files: they would be overwritten.
    crate::export::folder::check_target(out)?;
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    let device = Device::Cpu;
    let (d, f, hd) = (c.hidden_size, c.intermediate_size, c.head_size());
    let (q, kv) = (c.num_attention_heads * hd, c.num_key_value_heads * hd);
    let drawn = std::sync::atomic::AtomicU64::new(seed);
    let normal = Normal::new(0f32, 0.02).context("normal distribution")?;
    let random = |(rows, cols): (usize, usize)| -> Result<Tensor> {
        // One seeded stream per 64k-value chunk: reproducible and drawn on every core.
        let base = drawn.fetch_add(1, std::sync::atomic::Ordering::SeqCst) << 32;
        let mut values = vec![0f32; rows * cols];
        values
            .par_chunks_mut(1 << 16)
            .enumerate()
            .for_each(|(i, chunk)| {
                let mut rng = StdRng::seed_from_u64(base + i as u64);
                chunk.iter_mut().for_each(|v| *v = normal.sample(&mut rng));
            });
        Ok(Tensor::from_vec(values, (rows, cols), &device)?)
    };
    let ones = |n: usize| Tensor::ones(n, DType::F32, &device);
    let mut tensors = vec![
        (
            "model.embed_tokens.weight".to_string(),
            random((c.vocab_size, d))?,
        ),
        ("model.norm.weight".to_string(), ones(d)?),
    ];
    for l in 0..c.num_hidden_layers {
        use crate::model::llama::names::BlockTensor as T;
        tensors.extend([
            (T::InputNorm.hf(l), ones(d)?),
            (T::PostNorm.hf(l), ones(d)?),
            (T::Q.hf(l), random((q, d))?),
            (T::K.hf(l), random((kv, d))?),
            (T::V.hf(l), random((kv, d))?),
            (T::O.hf(l), random((d, q))?),
            (T::Gate.hf(l), random((f, d))?),
            (T::Up.hf(l), random((f, d))?),
            (T::Down.hf(l), random((d, f))?),
        ]);
    }
    save_f32(&out.join("model.safetensors"), &tensors)?;
    let mut config = serde_json::to_value(c)?;
    config["model_type"] = "llama".into();
    config["architectures"] = serde_json::json!(["LlamaForCausalLM"]);
    crate::files::write_atomic(
        &out.join("config.json"),
        &serde_json::to_vec_pretty(&config)?,
    )?;
    let tokenizer_bytes = std::fs::read(tokenizer)
        .with_context(|| format!("{}: cannot read", tokenizer.display()))?;
    crate::files::write_atomic(&out.join("tokenizer.json"), &tokenizer_bytes)?;
    Ok(())
}
