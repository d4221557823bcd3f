//! `mlfs-studio forward`: one subnet's last hidden state for a file of texts, as JSON.

use crate::model::{EncoderTeacher, SubnetSpec};
use crate::util::read_texts;
use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use serde::Serialize;
use std::path::Path;

#[derive(Serialize)]
struct ForwardOutput {
    input_ids: Vec<Vec<u32>>,
    attention_mask: Vec<Vec<u32>>,
    last_hidden_state: Vec<Vec<Vec<f32>>>,
}

/// Parses a spec and checks it against a teacher, or returns the maxnet when none is given.
pub fn resolve_spec(text: Option<&str>, shape: &crate::model::TeacherShape) -> Result<SubnetSpec> {
    match text {
        None => Ok(SubnetSpec::maxnet(shape)),
        Some(t) => {
            let spec: SubnetSpec = t.parse()?;
            spec.validate(shape)
                .with_context(|| format!("subnet '{t}' does not fit the teacher"))?;
            Ok(spec)
        }
    }
}

/// Token ids and mask as tensors `[B, T]`.
pub fn batch_tensors(batch: &crate::model::TokenBatch) -> Result<(Tensor, Tensor)> {
    let (b, t) = (batch.len(), batch.seq_len());
    let ids: Vec<u32> = batch.input_ids.concat();
    let mask: Vec<u32> = batch.attention_mask.concat();
    Ok((
        Tensor::from_vec(ids, (b, t), &Device::Cpu)?,
        Tensor::from_vec(mask, (b, t), &Device::Cpu)?,
    ))
}

/// Runs the forward pass and renders the JSON the CLI prints.
pub fn forward_json(model_dir: &Path, subnet: Option<&str>, texts_file: &Path) -> Result<String> {
    let teacher = EncoderTeacher::load(model_dir)?;
    let spec = resolve_spec(subnet, &teacher.encoder.shape())?;
    let texts = read_texts(texts_file)?;
    let max_len = teacher.config.max_position_embeddings;
    let batch = teacher.tokenizer.encode_batch(&texts, max_len)?;
    let (ids, mask) = batch_tensors(&batch)?;
    let out = teacher.encoder.forward(&ids, &mask, &spec)?;
    let last_hidden_state = out.last().to_vec3::<f32>()?;
    Ok(serde_json::to_string(&ForwardOutput {
        input_ids: batch.input_ids,
        attention_mask: batch.attention_mask,
        last_hidden_state,
    })?)
}
