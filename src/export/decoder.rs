//! Export of a decoder subnet as a Hugging Face Llama folder or a llama.cpp GGUF file.

use super::folder::{safetensors_bytes, write_export, ExportFiles};
use crate::model::llama::names::{gguf_name, BlockTensor as T};
use crate::model::llama::{LlamaConfig, LlamaDecoder};
use crate::model::SubnetSpec;
use anyhow::{anyhow, bail, Context, Result};
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Tensor;
use std::path::{Path, PathBuf};

/// Element type of the large matrices in a GGUF export (norms are always f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgufType {
    F16,
    F32,
}

/// The subnet's dense tensors under Hugging Face names, kept layers renumbered from 0,
/// adapters merged (the effective weights of the run).
pub fn decoder_tensors(net: &LlamaDecoder, spec: &SubnetSpec) -> Result<Vec<(String, Tensor)>> {
    let c = &net.config;
    let hs = c.head_size();
    let mut out = vec![("model.embed_tokens.weight".to_string(), net.embed.detach())];
    for (new, &l) in spec.layers.iter().enumerate() {
        let (heads, ffn) = spec.layer_widths(new);
        let (q_rows, kv_rows) = (heads * hs, heads / c.group_size() * hs);
        let layer = &net.layers[l];
        let rows = |t: &Tensor, n: usize| -> Result<Tensor> {
            Ok(t.narrow(0, 0, n)?.contiguous()?.detach())
        };
        let cols = |t: &Tensor, n: usize| -> Result<Tensor> {
            Ok(t.narrow(1, 0, n)?.contiguous()?.detach())
        };
        out.extend([
            (T::Q.hf(new), rows(&layer.q.weight_eff, q_rows)?),
            (T::K.hf(new), rows(&layer.k.weight_eff, kv_rows)?),
            (T::V.hf(new), rows(&layer.v.weight_eff, kv_rows)?),
            (T::O.hf(new), cols(&layer.o.weight_eff, q_rows)?),
            (T::Gate.hf(new), rows(&layer.gate.weight_eff, ffn)?),
            (T::Up.hf(new), rows(&layer.up.weight_eff, ffn)?),
            (T::Down.hf(new), cols(&layer.down.weight_eff, ffn)?),
            (T::InputNorm.hf(new), layer.input_norm.weight.detach()),
            (T::PostNorm.hf(new), layer.post_norm.weight.detach()),
        ]);
    }
    out.push(("model.norm.weight".into(), net.final_norm.weight.detach()));
    if let Some(head) = &net.lm_head {
        out.push(("lm_head.weight".into(), head.detach()));
    }
    Ok(out)
}

/// The one (heads, FFN) of a uniform subnet; a per-layer one is refused, since stock Llama
/// configs hold one value for all layers (llama.cpp's `deci` GGUF holds one per layer).
fn uniform_widths(spec: &SubnetSpec) -> Result<(usize, usize)> {
    match (spec.heads.uniform(), spec.ffn.uniform()) {
        (Some(h), Some(f)) => Ok((h, f)),
        _ => bail!(
            "subnet '{spec}' has per-layer widths, which a Hugging Face Llama config.json cannot hold (one head count and one FFN width for all layers): export it with --format gguf-f16 (llama.cpp's deci architecture)"
        ),
    }
}

/// `config.json` of the subnet for transformers' `LlamaForCausalLM`, every shape explicit.
pub fn decoder_config(net: &LlamaDecoder, spec: &SubnetSpec) -> Result<serde_json::Value> {
    let c = &net.config;
    let (heads, ffn) = uniform_widths(spec)?;
    Ok(serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size,
        "intermediate_size": ffn,
        "num_hidden_layers": spec.layers.len(),
        "num_attention_heads": heads,
        "num_key_value_heads": heads / c.group_size(),
        "head_dim": c.head_size(),
        "hidden_act": "silu",
        "rms_norm_eps": c.rms_norm_eps,
        "rope_theta": c.rope_theta,
        "max_position_embeddings": c.max_position_embeddings,
        "tie_word_embeddings": net.lm_head.is_none(),
        "attention_bias": false,
        "mlp_bias": false,
        "bos_token_id": c.bos_token_id,
        "eos_token_id": c.eos_token_id,
        "torch_dtype": "float32",
    }))
}

/// Writes the subnet as a Hugging Face Llama folder (config, safetensors, tokenizer, manifest).
pub fn export_hf(
    net: &LlamaDecoder,
    tokenizer: &crate::model::TextTokenizer,
    spec: &SubnetSpec,
    manifest: serde_json::Value,
    out: &Path,
) -> Result<Vec<PathBuf>> {
    spec.validate(&net.shape())
        .with_context(|| format!("subnet '{spec}' does not fit the teacher"))?;
    let files = ExportFiles {
        model_file: "model.safetensors",
        model: safetensors_bytes(&decoder_tensors(net, spec)?)?,
        config_json: serde_json::to_vec_pretty(&decoder_config(net, spec)?)?,
        tokenizer_json: tokenizer
            .inner()
            .to_string(true)
            .map_err(|e| anyhow!("cannot serialise the tokenizer: {e}"))?
            .into_bytes(),
        manifest_json: serde_json::to_vec_pretty(&manifest)?,
    };
    write_export(out, &files)
}

/// llama.cpp's row order for rotary Q/K (the inverse of the loader's unpermute): within each
/// head, the two rotated halves are interleaved.
pub fn permute_rotary(w: &Tensor, heads: usize) -> Result<Tensor> {
    let (out, inp) = w.dims2()?;
    let half = out / heads / 2;
    Ok(w.reshape((heads, 2, half, inp))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((out, inp))?)
}

/// Tokenizer metadata (`tokenizer.*` keys) copied from the teacher's GGUF file, or rebuilt
/// from a Hugging Face `tokenizer.json` (byte-level BPE) for a folder teacher.
pub fn tokenizer_metadata(teacher: &Path) -> Result<Vec<(String, Value)>> {
    if teacher.is_file() {
        let mut f = std::fs::File::open(teacher)
            .with_context(|| format!("{}: cannot open", teacher.display()))?;
        let ct = gguf_file::Content::read(&mut f)
            .map_err(|e| anyhow!("{}: not a readable GGUF file: {e}", teacher.display()))?;
        let mut keys: Vec<(String, Value)> = ct
            .metadata
            .into_iter()
            .filter(|(k, _)| k.starts_with("tokenizer."))
            .collect();
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        return Ok(keys);
    }
    let path = teacher.join("tokenizer.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", path.display()))?;
    let vocab = json["model"]["vocab"]
        .as_object()
        .with_context(|| format!("{}: no BPE vocabulary", path.display()))?;
    let mut tokens = vec![String::new(); vocab.len()];
    for (tok, id) in vocab {
        let id = id.as_u64().unwrap_or(u64::MAX) as usize;
        if id >= tokens.len() {
            bail!("{}: token id {id} out of range", path.display());
        }
        tokens[id] = tok.clone();
    }
    let merges: Vec<Value> = json["model"]["merges"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|x| match x {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Array(p) => Some(
                        p.iter()
                            .filter_map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(" "),
                    ),
                    _ => None,
                })
                .map(Value::String)
                .collect()
        })
        .unwrap_or_default();
    let special: Vec<u64> = json["added_tokens"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t["id"].as_u64()).collect())
        .unwrap_or_default();
    let types = (0..tokens.len())
        .map(|i| Value::I32(if special.contains(&(i as u64)) { 3 } else { 1 }))
        .collect();
    Ok(vec![
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(tokens.into_iter().map(Value::String).collect()),
        ),
        ("tokenizer.ggml.token_type".into(), Value::Array(types)),
        ("tokenizer.ggml.merges".into(), Value::Array(merges)),
    ])
}

/// The architecture and shape keys of a subnet's GGUF. A uniform subnet is llama.cpp's `llama`
/// (scalar widths, as every GGUF reader expects); a per-layer one is its `deci` architecture,
/// whose head counts and FFN width are arrays of one entry per block (`llm_load_hparams` reads
/// them with `get_key_or_arr`; `DeciModel` in `convert_hf_to_gguf.py` writes them as int32),
/// head size global.
pub fn shape_metadata(c: &LlamaConfig, spec: &SubnetSpec) -> Vec<(String, Value)> {
    let arch = if spec.is_uniform() { "llama" } else { "deci" };
    let key = |k: &str| format!("{arch}.{k}");
    let layers = spec.layers.len();
    let group = c.group_size();
    let per_layer = |values: Vec<usize>| match spec.is_uniform() {
        true => Value::U32(values[0] as u32),
        false => Value::Array(values.into_iter().map(|v| Value::I32(v as i32)).collect()),
    };
    let heads = spec.heads.per_layer(layers);
    let kv_heads = heads.iter().map(|h| h / group).collect();
    let hs = c.head_size() as u32;
    vec![
        ("general.architecture".into(), Value::String(arch.into())),
        (
            key("context_length"),
            Value::U32(c.max_position_embeddings as u32),
        ),
        (key("embedding_length"), Value::U32(c.hidden_size as u32)),
        (key("block_count"), Value::U32(layers as u32)),
        (
            key("feed_forward_length"),
            per_layer(spec.ffn.per_layer(layers)),
        ),
        (key("attention.head_count"), per_layer(heads)),
        (key("attention.head_count_kv"), per_layer(kv_heads)),
        (key("attention.key_length"), Value::U32(hs)),
        (key("attention.value_length"), Value::U32(hs)),
        (key("rope.dimension_count"), Value::U32(hs)),
        (
            key("attention.layer_norm_rms_epsilon"),
            Value::F32(c.rms_norm_eps as f32),
        ),
        (key("rope.freq_base"), Value::F32(c.rope_theta as f32)),
        (key("vocab_size"), Value::U32(c.vocab_size as u32)),
    ]
}

/// Writes the subnet as a llama.cpp GGUF file (`out` must not exist; its folder must).
pub fn export_gguf(
    net: &LlamaDecoder,
    spec: &SubnetSpec,
    tokenizer_meta: &[(String, Value)],
    name: &str,
    dtype: GgufType,
    out: &Path,
) -> Result<PathBuf> {
    spec.validate(&net.shape())
        .with_context(|| format!("subnet '{spec}' does not fit the teacher"))?;
    if out.symlink_metadata().is_ok() {
        bail!(
            "{}: already exists; choose a new file name",
            crate::files::shown(out)
        );
    }
    super::folder::existing_parent(out)?;
    let c = &net.config;
    let hs = c.head_size();
    let mut quantized = Vec::new();
    for (hf, t) in decoder_tensors(net, spec)? {
        // llama.cpp's rotary row order, per block at its own head count (rows over head size).
        let t = if hf.ends_with(T::Q.part()) || hf.ends_with(T::K.part()) {
            let heads = t.dims()[0] / hs;
            permute_rotary(&t, heads)?
        } else {
            t
        };
        // A fresh buffer: `quantize` reads the whole storage, and a sliced view shares its
        // parent's (a row prefix is "contiguous" without being copied).
        let values = t
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let t = Tensor::from_vec(values, t.shape(), &candle_core::Device::Cpu)?;
        let kind = if t.rank() == 1 || dtype == GgufType::F32 {
            GgmlDType::F32
        } else {
            GgmlDType::F16
        };
        let q = QTensor::quantize(&t, kind).with_context(|| format!("tensor {hf}"))?;
        quantized.push((gguf_name(&hf), q));
    }
    let mut meta: Vec<(String, Value)> = vec![
        ("general.name".into(), Value::String(name.into())),
        (
            "general.file_type".into(),
            Value::U32(if dtype == GgufType::F16 { 1 } else { 0 }),
        ),
    ];
    meta.extend(shape_metadata(c, spec));
    meta.extend(tokenizer_meta.iter().cloned());
    if let Some(id) = c.bos_token_id {
        if !meta.iter().any(|(k, _)| k == "tokenizer.ggml.bos_token_id") {
            meta.push(("tokenizer.ggml.bos_token_id".into(), Value::U32(id)));
        }
    }
    if let Some(id) = c.eos_token_id {
        if !meta.iter().any(|(k, _)| k == "tokenizer.ggml.eos_token_id") {
            meta.push(("tokenizer.ggml.eos_token_id".into(), Value::U32(id)));
        }
    }
    let meta_refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> =
        quantized.iter().map(|(k, q)| (k.as_str(), q)).collect();
    // An unpredictable temporary name beside the file, removed on any failure; the final
    // rename refuses to replace anything that appeared at `out` meanwhile.
    let tmp = crate::files::temp_beside(out)?;
    let mut file = std::io::BufWriter::new(tmp);
    gguf_file::write(&mut file, &meta_refs, &tensor_refs)
        .map_err(|e| anyhow!("{}: cannot write GGUF: {e}", crate::files::shown(out)))?;
    let tmp = file
        .into_inner()
        .map_err(|e| anyhow!("{}: cannot write: {}", crate::files::shown(out), e.error()))?;
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("{}: cannot write", crate::files::shown(out)))?;
    tmp.persist_noclobber(out)
        .map_err(|e| e.error)
        .with_context(|| format!("{}: cannot move into place", crate::files::shown(out)))?;
    Ok(out.to_path_buf())
}
