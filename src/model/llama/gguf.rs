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

/// A per-layer key of a `deci` file: an array of one value per layer, or one value for all.
fn meta_per_layer(ct: &Content, path: &Path, key: &str, layers: usize) -> Result<Vec<usize>> {
    let Value::Array(list) = meta(ct, path, key)? else {
        return Ok(vec![meta_usize(ct, path, key)?; layers]);
    };
    if list.len() != layers {
        bail!(
            "{}: GGUF metadata '{key}' has {} values for {layers} blocks",
            path.display(),
            list.len()
        );
    }
    list.iter()
        .map(|v| match v {
            Value::I32(x) if *x >= 0 => Ok(*x as usize),
            Value::U32(x) => Ok(*x as usize),
            other => bail!(
                "{}: GGUF metadata '{key}' holds {other:?}, not a count",
                path.display()
            ),
        })
        .collect()
}

/// `Some(list)` when the layers differ, `None` when one value holds for all.
fn per_layer_list(list: &[usize]) -> Option<Vec<usize>> {
    list.windows(2).any(|w| w[0] != w[1]).then(|| list.to_vec())
}

fn config_of(ct: &Content, path: &Path) -> Result<LlamaConfig> {
    let arch = meta(ct, path, "general.architecture")?
        .to_string()
        .map_err(|e| anyhow!("{e}"))?
        .clone();
    // `deci` (llama.cpp's architecture for per-layer widths) is `llama` with per-layer arrays.
    if arch != "llama" && arch != "deci" {
        bail!(
            "{}: architecture '{arch}' is not supported (llama, deci)",
            path.display()
        );
    }
    let key = |k: &str| format!("{arch}.{k}");
    let tokens = meta_strings(ct, path, "tokenizer.ggml.tokens")?;
    let layers = meta_usize(ct, path, &key("block_count"))?;
    // Each block has its own tensors: a block count beyond them is a crafted or broken header
    // (checked before the per-layer arrays are sized by it).
    if layers > ct.tensor_infos.len() {
        bail!(
            "{}: {arch}.block_count {layers} but the file has only {} tensors",
            path.display(),
            ct.tensor_infos.len()
        );
    }
    let heads = meta_per_layer(ct, path, &key("attention.head_count"), layers)?;
    let kv_heads = match ct.metadata.contains_key(&key("attention.head_count_kv")) {
        true => meta_per_layer(ct, path, &key("attention.head_count_kv"), layers)?,
        false => heads.clone(),
    };
    let ffn = meta_per_layer(ct, path, &key("feed_forward_length"), layers)?;
    let (max_heads, max_kv) = (max_of(&heads), max_of(&kv_heads));
    // One group size for the whole model: each layer's query heads over its key/value heads.
    for (i, (&h, &kv)) in heads.iter().zip(&kv_heads).enumerate() {
        if kv == 0 || h != kv * (max_heads / max_kv.max(1)) {
            bail!(
                "{}: block {i} has {h} query heads for {kv} key/value heads; only one group size for all blocks ({max_heads}/{max_kv}) is supported",
                path.display()
            );
        }
    }
    let config = LlamaConfig {
        vocab_size: tokens.len(),
        hidden_size: meta_usize(ct, path, &key("embedding_length"))?,
        intermediate_size: max_of(&ffn),
        num_hidden_layers: layers,
        num_attention_heads: max_heads,
        num_key_value_heads: max_kv,
        rms_norm_eps: meta_f64(ct, &key("attention.layer_norm_rms_epsilon")).unwrap_or(1e-5),
        rope_theta: meta_f64(ct, &key("rope.freq_base")).unwrap_or(10_000.0),
        max_position_embeddings: meta_usize(ct, path, &key("context_length")).unwrap_or(2048),
        tie_word_embeddings: !ct.tensor_infos.contains_key("output.weight"),
        // Explicit when heads × head size differs from the width (e.g. exported subnets).
        head_dim: meta_usize(ct, path, &key("attention.key_length")).ok(),
        bos_token_id: meta_usize(ct, path, "tokenizer.ggml.bos_token_id")
            .ok()
            .map(|v| v as u32),
        eos_token_id: meta_usize(ct, path, "tokenizer.ggml.eos_token_id")
            .ok()
            .map(|v| v as u32),
        layer_heads: per_layer_list(&heads),
        layer_intermediate_sizes: per_layer_list(&ffn),
    };
    config
        .check()
        .with_context(|| format!("{}: inconsistent GGUF metadata", path.display()))?;
    Ok(config)
}

fn max_of(list: &[usize]) -> usize {
    list.iter().copied().max().unwrap_or(0)
}

/// Reads config, tensors (HF names, f32) and tokenizer from a GGUF file.
pub fn load_gguf(path: &Path) -> Result<GgufModel> {
    let (mut file, ct) = read_header(path)?;
    let config = config_of(&ct, path)?;
    let tokens = meta_strings(&ct, path, "tokenizer.ggml.tokens")?;
    let head_size = config.head_size().max(1);
    let mut tensors = HashMap::new();
    for name in ct.tensor_infos.keys() {
        let q = ct
            .tensor(&mut file, name, &Device::Cpu)
            .map_err(|e| anyhow!("{}: tensor '{name}': {e}", path.display()))?;
        let mut t = q
            .dequantize(&Device::Cpu)
            .map_err(|e| anyhow!("{}: tensor '{name}': {e}", path.display()))?;
        // Each block's own head count (per-layer files differ): its rows over the head size.
        if name.ends_with("attn_q.weight") || name.ends_with("attn_k.weight") {
            let heads = t.dims().first().copied().unwrap_or(0) / head_size;
            t = unpermute_rotary(&t, heads.max(1))?;
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
