//! `mlfs-studio forward`: one subnet's last hidden state for a file of texts, as JSON.

use crate::model::tokenizer::{batch_tensors, check_token_ids};
use crate::model::EncoderTeacher;
use crate::util::read_texts;
use anyhow::Result;
use candle_core::Tensor;
use serde::Serialize;
use std::path::Path;

#[derive(Serialize)]
struct ForwardOutput {
    input_ids: Vec<Vec<u32>>,
    attention_mask: Vec<Vec<u32>>,
    last_hidden_state: Vec<Vec<Vec<f32>>>,
}

#[derive(Serialize)]
struct DecoderForwardOutput {
    input_ids: Vec<Vec<u32>>,
    last_hidden_state: Vec<Vec<Vec<f32>>>,
    logits_top10: Vec<Vec<Vec<(u32, f32)>>>,
}

/// The ten largest logits of a row as `(id, logit)`, descending.
fn top10(row: &[f32]) -> Vec<(u32, f32)> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    let k = 10.min(row.len());
    idx.select_nth_unstable_by(k.saturating_sub(1), |&a, &b| row[b].total_cmp(&row[a]));
    let mut top: Vec<(u32, f32)> = idx[..k].iter().map(|&i| (i as u32, row[i])).collect();
    top.sort_by(|a, b| b.1.total_cmp(&a.1));
    top
}

/// Decoder forward: each text on its own (no special tokens added), final-norm hidden states
/// and the top-10 next-token logits at every position.
pub fn decoder_forward_json(
    model: &Path,
    subnet: Option<&str>,
    texts_file: &Path,
    device: &candle_core::Device,
) -> Result<String> {
    let teacher = crate::model::llama::DecoderTeacher::load_on(model, device)?;
    super::print_warnings(&teacher.warnings);
    let spec = crate::model::subnet::resolve_spec_in(
        subnet,
        &teacher.decoder.shape(),
        teacher.decoder.config.full_spec(),
    )?;
    let texts = read_texts(texts_file)?;
    let mut out = DecoderForwardOutput {
        input_ids: Vec::new(),
        last_hidden_state: Vec::new(),
        logits_top10: Vec::new(),
    };
    let max_len = teacher.decoder.config.max_position_embeddings;
    let all_ids = texts
        .iter()
        .map(|text| teacher.tokenizer.encode(text, false, max_len))
        .collect::<Result<Vec<_>>>()?;
    if all_ids.iter().any(Vec::is_empty) {
        anyhow::bail!("{}: a text has no tokens", texts_file.display());
    }
    let rows = teacher.decoder.config.vocab_size;
    check_token_ids(&all_ids, rows, texts_file, "text")?;
    for ids in all_ids {
        let input = Tensor::new(ids.as_slice(), teacher.decoder.device())?.unsqueeze(0)?;
        let result = teacher.decoder.forward(&input, &spec)?;
        let hidden = result.last_hidden.squeeze(0)?.to_vec2::<f32>()?;
        crate::util::ensure_finite(hidden.iter().flatten(), "the decoder's output")?;
        out.last_hidden_state.push(hidden);
        let logits = result.logits.squeeze(0)?.to_vec2::<f32>()?;
        out.logits_top10
            .push(logits.iter().map(|r| top10(r)).collect());
        out.input_ids.push(ids);
    }
    Ok(serde_json::to_string(&out)?)
}

/// A BERT folder, or an ONNX export folder read through its initializers (our ONNX writer's
/// names), so `forward` runs every export, per-layer ones included.
fn load_encoder(dir: &Path, device: &candle_core::Device) -> Result<EncoderTeacher> {
    use crate::export::classifier::{export_store, is_onnx_export};
    if !is_onnx_export(dir) {
        return EncoderTeacher::load_on(dir, device);
    }
    let config = crate::model::BertConfig::from_file(&dir.join("config.json"))?;
    let store = export_store(dir)?.to_device(device)?;
    crate::model::limits::check_params_fit(config.param_count(), &dir.join("model.onnx"))?;
    let encoder = crate::model::BertEncoder::from_store(&config, &store)?;
    let tokenizer = crate::model::TextTokenizer::from_dir(dir, config.pad_token_id as u32)?;
    Ok(EncoderTeacher {
        dir: dir.to_path_buf(),
        config,
        encoder,
        tokenizer,
        warnings: Vec::new(),
    })
}

/// Runs the forward pass and renders the JSON the CLI prints (encoder or decoder by the model).
pub fn forward_json(
    model_dir: &Path,
    subnet: Option<&str>,
    texts_file: &Path,
    device: &candle_core::Device,
) -> Result<String> {
    if crate::model::llama::is_decoder(model_dir) {
        return decoder_forward_json(model_dir, subnet, texts_file, device);
    }
    let teacher = load_encoder(model_dir, device)?;
    let spec = crate::model::subnet::resolve_spec_in(
        subnet,
        &teacher.encoder.shape(),
        teacher.config.full_spec(),
    )?;
    let texts = read_texts(texts_file)?;
    let max_len = teacher.config.max_position_embeddings;
    let batch = teacher.tokenizer.encode_batch(&texts, max_len)?;
    super::print_warnings(&teacher.warnings);
    let unknown = teacher
        .tokenizer
        .unknown_warning(&batch.input_ids, texts_file);
    super::print_warnings(unknown.as_slice());
    check_token_ids(
        &batch.input_ids,
        teacher.config.vocab_size,
        texts_file,
        "text",
    )?;
    let (ids, mask) = batch_tensors(&batch, teacher.encoder.device())?;
    let out = teacher.encoder.forward(&ids, &mask, &spec)?;
    let last_hidden_state = out.last().to_vec3::<f32>()?;
    let values = last_hidden_state.iter().flatten().flatten();
    crate::util::ensure_finite(values, "the encoder's output")?;
    Ok(serde_json::to_string(&ForwardOutput {
        input_ids: batch.input_ids,
        attention_mask: batch.attention_mask,
        last_hidden_state,
    })?)
}
