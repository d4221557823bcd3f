//! Reading a llama.cpp GGUF file: config from metadata, tensors dequantized to f32 with
//! Hugging Face names and layout, and the byte-level BPE tokenizer from the metadata.

use super::config::LlamaConfig;
use super::names::hf_name;
use crate::model::weights::WeightStore;
use anyhow::{anyhow, bail, Context, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::Path;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, Tokenizer};

/// A GGUF file read into memory.
pub struct GgufModel {
    pub config: LlamaConfig,
    pub store: WeightStore,
    pub tokenizer: Tokenizer,
}

fn meta<'a>(ct: &'a Content, path: &Path, key: &str) -> Result<&'a Value> {
    ct.metadata
        .get(key)
        .ok_or_else(|| anyhow!("{}: GGUF metadata '{key}' is missing", path.display()))
}

fn meta_usize(ct: &Content, path: &Path, key: &str) -> Result<usize> {
    let v = meta(ct, path, key)?;
    let n = match v {
        Value::U8(x) => *x as u64,
        Value::U16(x) => *x as u64,
        Value::U32(x) => *x as u64,
        Value::U64(x) => *x,
        Value::I32(x) => *x as u64,
        Value::I64(x) => *x as u64,
        other => bail!(
            "{}: GGUF metadata '{key}' is not an integer: {other:?}",
            path.display()
        ),
    };
    Ok(n as usize)
}

fn meta_f64(ct: &Content, key: &str) -> Option<f64> {
    match ct.metadata.get(key)? {
        Value::F32(x) => Some(*x as f64),
        Value::F64(x) => Some(*x),
        _ => None,
    }
}

fn meta_strings(ct: &Content, path: &Path, key: &str) -> Result<Vec<String>> {
    let list = meta(ct, path, key)?
        .to_vec()
        .map_err(|e| anyhow!("{}: '{key}': {e}", path.display()))?;
    list.iter()
        .map(|v| {
            v.to_string()
                .cloned()
                .map_err(|e| anyhow!("{}: '{key}': {e}", path.display()))
        })
        .collect()
}

/// Undoes llama.cpp's per-head row interleaving of Q/K (its rotary layout) back to Hugging Face's.
pub fn unpermute_rotary(w: &Tensor, heads: usize) -> Result<Tensor> {
    let (out, inp) = w.dims2()?;
    let half = out / heads / 2;
    Ok(w.reshape((heads, half, 2, inp))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((out, inp))?)
}

/// Opens a GGUF file and reads its header, with every tensor's extent checked against the file.
fn read_header(path: &Path) -> Result<(std::fs::File, Content)> {
    crate::files::require_regular(path, "a GGUF file")?;
    let mut file = std::fs::File::open(path)
        .with_context(|| format!("{}: cannot open GGUF file", path.display()))?;
    let ct = Content::read(&mut file)
        .map_err(|e| anyhow!("{}: not a readable GGUF file: {e}", path.display()))?;
    let file_len = file
        .metadata()
        .with_context(|| format!("{}: cannot read GGUF file", path.display()))?
        .len();
    check_tensor_extents(&ct, file_len)
        .with_context(|| format!("{}: not a valid GGUF file", path.display()))?;
    Ok((file, ct))
}

/// Every tensor's bytes lie inside the file and no two tensors share bytes: then what is read
/// and dequantised is bounded by the file's size (a crafted file whose thousands of entries all
/// point at one region would otherwise read it thousands of times).
fn check_tensor_extents(ct: &Content, file_len: u64) -> Result<()> {
    let mut extents = Vec::with_capacity(ct.tensor_infos.len());
    for (name, info) in &ct.tensor_infos {
        let elems = crate::model::limits::element_count(info.shape.dims())
            .with_context(|| format!("tensor '{name}': its shape overflows"))?;
        let block = info.ggml_dtype.block_size();
        if !elems.is_multiple_of(block) {
            bail!("tensor '{name}': {elems} elements are not whole blocks of {block}");
        }
        let bytes = (elems / block)
            .checked_mul(info.ggml_dtype.type_size())
            .with_context(|| format!("tensor '{name}': its size overflows"))?
            as u64;
        let start = ct
            .tensor_data_offset
            .checked_add(info.offset)
            .with_context(|| format!("tensor '{name}': its offset overflows"))?;
        let end = start
            .checked_add(bytes)
            .filter(|&end| end <= file_len)
            .with_context(|| {
                format!("tensor '{name}': {bytes} bytes at offset {start} run past the end of the file ({file_len} bytes)")
            })?;
        extents.push((start, end, name.as_str()));
    }
    extents.sort();
    for pair in extents.windows(2) {
        let ((_, end, a), (start, _, b)) = (pair[0], pair[1]);
        if start < end {
            bail!("tensors '{a}' and '{b}' overlap in the file");
        }
    }
    Ok(())
}

/// The model shape of a GGUF file from its metadata alone (no tensors read).
pub fn read_config(path: &Path) -> Result<LlamaConfig> {
    let (_, ct) = read_header(path)?;
    config_of(&ct, path)
}

fn config_of(ct: &Content, path: &Path) -> Result<LlamaConfig> {
    let arch = meta(ct, path, "general.architecture")?
        .to_string()
        .map_err(|e| anyhow!("{e}"))?
        .clone();
    if arch != "llama" {
        bail!(
            "{}: architecture '{arch}' is not supported (llama)",
            path.display()
        );
    }
    let tokens = meta_strings(ct, path, "tokenizer.ggml.tokens")?;
    let heads = meta_usize(ct, path, "llama.attention.head_count")?;
    let config = LlamaConfig {
        vocab_size: tokens.len(),
        hidden_size: meta_usize(ct, path, "llama.embedding_length")?,
        intermediate_size: meta_usize(ct, path, "llama.feed_forward_length")?,
        num_hidden_layers: meta_usize(ct, path, "llama.block_count")?,
        num_attention_heads: heads,
        num_key_value_heads: meta_usize(ct, path, "llama.attention.head_count_kv").unwrap_or(heads),
        rms_norm_eps: meta_f64(ct, "llama.attention.layer_norm_rms_epsilon").unwrap_or(1e-5),
        rope_theta: meta_f64(ct, "llama.rope.freq_base").unwrap_or(10_000.0),
        max_position_embeddings: meta_usize(ct, path, "llama.context_length").unwrap_or(2048),
        tie_word_embeddings: !ct.tensor_infos.contains_key("output.weight"),
        // Explicit when heads × head size differs from the width (e.g. exported subnets).
        head_dim: meta_usize(ct, path, "llama.attention.key_length").ok(),
        bos_token_id: meta_usize(ct, path, "tokenizer.ggml.bos_token_id")
            .ok()
            .map(|v| v as u32),
        eos_token_id: meta_usize(ct, path, "tokenizer.ggml.eos_token_id")
            .ok()
            .map(|v| v as u32),
    };
    config
        .check()
        .with_context(|| format!("{}: inconsistent GGUF metadata", path.display()))?;
    // Each block has its own tensors: a block count beyond them is a crafted or broken header.
    if config.num_hidden_layers > ct.tensor_infos.len() {
        bail!(
            "{}: llama.block_count {} but the file has only {} tensors",
            path.display(),
            config.num_hidden_layers,
            ct.tensor_infos.len()
        );
    }
    Ok(config)
}

/// Reads config, tensors (HF names, f32) and tokenizer from a GGUF file.
pub fn load_gguf(path: &Path) -> Result<GgufModel> {
    let (mut file, ct) = read_header(path)?;
    let config = config_of(&ct, path)?;
    let tokens = meta_strings(&ct, path, "tokenizer.ggml.tokens")?;
    let kv_heads = config.num_key_value_heads;
    let mut tensors = HashMap::new();
    for name in ct.tensor_infos.keys() {
        let q = ct
            .tensor(&mut file, name, &Device::Cpu)
            .map_err(|e| anyhow!("{}: tensor '{name}': {e}", path.display()))?;
        let mut t = q
            .dequantize(&Device::Cpu)
            .map_err(|e| anyhow!("{}: tensor '{name}': {e}", path.display()))?;
        if name.ends_with("attn_q.weight") {
            t = unpermute_rotary(&t, config.num_attention_heads)?;
        } else if name.ends_with("attn_k.weight") {
            t = unpermute_rotary(&t, kv_heads)?;
        }
        tensors.insert(hf_name(name), t);
    }
    let store = WeightStore::from_tensors(path, tensors, &["model."]);
    let tokenizer = bpe_tokenizer(&ct, path, tokens)?;
    Ok(GgufModel {
        config,
        store,
        tokenizer,
    })
}

/// Byte-level BPE from `tokenizer.ggml.{tokens,merges}`; digits split one by one (SmolLM's pre-tokenizer).
fn bpe_tokenizer(ct: &Content, path: &Path, tokens: Vec<String>) -> Result<Tokenizer> {
    let merges_raw = meta_strings(ct, path, "tokenizer.ggml.merges")?;
    let merges: Vec<(String, String)> = merges_raw
        .iter()
        .filter_map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        })
        .collect();
    let vocab: tokenizers::models::bpe::Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| anyhow!("{}: invalid BPE vocabulary: {e}", path.display()))?;
    let mut tok = Tokenizer::new(bpe);
    tok.with_pre_tokenizer(Some(Sequence::new(vec![
        Digits::new(true).into(),
        ByteLevel::new(false, true, true).into(),
    ])));
    tok.with_decoder(Some(tokenizers::decoders::byte_level::ByteLevel::default()));
    // Control tokens (type 3) are special: never split, never produced from ordinary text.
    if let Ok(types) = meta(ct, path, "tokenizer.ggml.token_type")
        .and_then(|v| v.to_vec().map_err(|e| anyhow!("{e}")))
    {
        let special: Vec<AddedToken> = types
            .iter()
            .zip(&tokens)
            .filter(|(t, _)| matches!(t, Value::I32(3) | Value::U32(3)))
            .map(|(_, s)| AddedToken::from(s.clone(), true))
            .collect();
        tok.add_special_tokens(special)
            .map_err(|e| anyhow!("{}: special tokens: {e}", path.display()))?;
    }
    Ok(tok)
}
