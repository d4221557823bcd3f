//! Merging a subnet's adapters into dense weights with Hugging Face BERT tensor names.

use crate::mlfs::classifier::ClassifierSupernet;
use crate::model::bert_names::LayerModule::{self, *};
use crate::model::bert_names::{
    exported, EMBEDDINGS_NORM, POSITION_EMBEDDINGS, TOKEN_TYPE_EMBEDDINGS, WORD_EMBEDDINGS,
};
use crate::model::linear::ElasticLinear;
use crate::model::lowrank::STAGES;
use crate::model::ops::gpu_contiguous;
use crate::model::{BertConfig, SubnetSpec};
use anyhow::Result;
use candle_core::Tensor;

/// `Π_Φ(W_pre) + Σ_s scale · Π^out(B_s) · Π^in(A_s)` for an `out_n × in_n` slice, contiguous.
pub fn merged_slice(lin: &ElasticLinear, out_n: usize, in_n: usize) -> Result<Tensor> {
    let mut w = lin
        .weight_pre
        .narrow(0, 0, out_n)?
        .narrow(1, 0, in_n)?
        .contiguous()?;
    if let Some(lora) = &lin.lora {
        for s in 0..STAGES {
            let b = lora.b[s].as_tensor().narrow(0, 0, out_n)?;
            let a = gpu_contiguous(&lora.a[s].as_tensor().narrow(1, 0, in_n)?)?;
            w = (w + (b.matmul(&a)? * lora.scale)?)?;
        }
    }
    // Plain data, cut from the adapters' graph: a merged weight that still tracked its Vars made
    // every product of the in-memory dense model take the autograd path (palette latency 7.5
    // ms instead of the exported folder's 5.4 ms for the same maxnet).
    Ok(w.detach())
}

fn bias_slice(lin: &ElasticLinear, out_n: usize) -> Result<Option<Tensor>> {
    Ok(match &lin.bias {
        Some(b) => Some(b.narrow(0, 0, out_n)?.contiguous()?),
        None => None,
    })
}

/// The exported subnet's own BERT config (head count, FFN and hidden of the subnet). A
/// per-layer subnet keeps its widest layer's counts in the stock fields and every layer's in
/// `layer_heads` / `layer_intermediate_sizes`, which our loaders read (stock `BertConfig` has
/// one value for all layers).
pub fn subnet_config(teacher: &BertConfig, spec: &SubnetSpec) -> BertConfig {
    let layers = spec.layers.len();
    BertConfig {
        hidden_size: spec.hidden_or(teacher.hidden_size),
        num_hidden_layers: layers,
        num_attention_heads: spec.heads.max(),
        intermediate_size: spec.ffn.max(),
        head_size: Some(teacher.head_size()),
        layer_heads: (!spec.is_uniform()).then(|| spec.heads.per_layer(layers)),
        layer_intermediate_sizes: (!spec.is_uniform()).then(|| spec.ffn.per_layer(layers)),
        ..teacher.clone()
    }
}

/// Every tensor of the merged subnet, named as BertForSequenceClassification names them.
pub fn merged_tensors(
    net: &ClassifierSupernet,
    spec: &SubnetSpec,
) -> Result<Vec<(String, Tensor)>> {
    let enc = &net.encoder;
    let d = spec.hidden_or(enc.config.hidden_size);
    let cols = |t: &Tensor, n: usize| -> Result<Tensor> { Ok(t.narrow(1, 0, n)?.contiguous()?) };
    let vec = |t: &Tensor, n: usize| -> Result<Tensor> { Ok(t.narrow(0, 0, n)?.contiguous()?) };
    let e = &enc.embeddings;
    let mut out: Vec<(String, Tensor)> = Vec::new();
    for (module, table) in [
        (WORD_EMBEDDINGS, &e.word),
        (POSITION_EMBEDDINGS, &e.position),
        (TOKEN_TYPE_EMBEDDINGS, &e.token_type),
    ] {
        out.push((format!("{}.weight", exported(module)), cols(table, d)?));
    }
    let norm_name = exported(EMBEDDINGS_NORM);
    out.push((format!("{norm_name}.weight"), vec(&e.norm.weight, d)?));
    if let Some(b) = &e.norm.bias {
        out.push((format!("{norm_name}.bias"), vec(b, d)?));
    }
    for (n, &l) in spec.layers.iter().enumerate() {
        let (heads, f) = spec.layer_widths(n);
        let att = heads * enc.config.head_size();
        let layer = &enc.layers[l];
        let linears: [(LayerModule, &ElasticLinear, usize, usize); 6] = [
            (Query, &layer.query, att, d),
            (Key, &layer.key, att, d),
            (Value, &layer.value, att, d),
            (AttentionOut, &layer.attn_out, d, att),
            (FfnIn, &layer.ffn_in, f, d),
            (FfnOut, &layer.ffn_out, d, f),
        ];
        for (module, lin, o, i) in linears {
            let name = module.exported(n);
            out.push((format!("{name}.weight"), merged_slice(lin, o, i)?));
            if let Some(b) = bias_slice(lin, o)? {
                out.push((format!("{name}.bias"), b));
            }
        }
        for (module, norm) in [
            (AttentionNorm, &layer.attn_norm),
            (OutputNorm, &layer.out_norm),
        ] {
            let name = module.exported(n);
            out.push((format!("{name}.weight"), vec(&norm.weight, d)?));
            if let Some(b) = &norm.bias {
                out.push((format!("{name}.bias"), vec(b, d)?));
            }
        }
    }
    out.push((
        "classifier.weight".into(),
        cols(net.head_weight.as_tensor(), d)?.detach(),
    ));
    out.push(("classifier.bias".into(), net.head_bias.as_tensor().detach()));
    Ok(out)
}

/// Parameters of a merged subnet: (total, without embeddings).
pub fn param_counts(tensors: &[(String, Tensor)]) -> (usize, usize) {
    let total: usize = tensors.iter().map(|(_, t)| t.elem_count()).sum();
    let embeddings: usize = tensors
        .iter()
        .filter(|(n, _)| n.starts_with(&exported("embeddings.")))
        .map(|(_, t)| t.elem_count())
        .sum();
    (total, total - embeddings)
}
