//! A merged classifier subnet as an ONNX graph: BERT encoder, masked mean pooling, linear head.
//!
//! Standard operators at opset 17 only. LayerNorm is written out (ReduceMean, Sub, Pow, Sqrt,
//! Div, Mul, Add) rather than as `LayerNormalization`: candle-onnx's evaluator, our independent
//! check, lacks that operator, and ONNX Runtime fuses the pattern back into its LayerNorm
//! kernel. GELU is the exact Erf form, as BERT's `gelu`.

use super::onnx_graph::{value_info, Attr, Dim, GraphBuilder};
use crate::model::bert_names::LayerModule::*;
use crate::model::bert_names::{
    exported, EMBEDDINGS_NORM, POSITION_EMBEDDINGS, TOKEN_TYPE_EMBEDDINGS, WORD_EMBEDDINGS,
};
use crate::model::BertConfig;
use anyhow::{Context, Result};
use candle_core::Tensor;
use candle_onnx::onnx::tensor_proto::DataType;
use std::collections::HashMap;

/// Names of the graph's inputs and outputs.
pub const INPUT_IDS: &str = "input_ids";
/// The 0/1 padding mask input.
pub const ATTENTION_MASK: &str = "attention_mask";
/// Class scores `[batch, classes]`.
pub const LOGITS: &str = "logits";
/// The last layer's hidden states `[batch, sequence, hidden]`.
pub const LAST_HIDDEN_STATE: &str = "last_hidden_state";

/// Renders `model.onnx` for a merged subnet: `config` is the subnet's own config, `tensors` the
/// merged weights named as `BertForSequenceClassification` names them.
pub fn bert_classifier_onnx(
    config: &BertConfig,
    tensors: &[(String, Tensor)],
    labels: &[String],
    subnet: &str,
) -> Result<Vec<u8>> {
    let weights: HashMap<&str, &Tensor> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let get = |name: &str| -> Result<&Tensor> {
        weights
            .get(name)
            .copied()
            .with_context(|| format!("the merged subnet has no tensor '{name}'"))
    };
    let mut g = GraphBuilder::default();
    let c = OnnxConsts::new(&mut g, config);

    // Embeddings: word rows, the first `sequence` positions, token type 0 (as `predict`).
    // Initializers keep the Hugging Face names (matrices stored transposed end in `_t`), so
    // `predict` can read the same file's weights.
    let table = |module: &str| format!("{}.weight", exported(module));
    let words = hf_weight(&mut g, &table(WORD_EMBEDDINGS), &get)?;
    let positions = hf_weight(&mut g, &table(POSITION_EMBEDDINGS), &get)?;
    let token_types = hf_weight(&mut g, &table(TOKEN_TYPE_EMBEDDINGS), &get)?;
    let type0 = g.op(
        "Gather",
        &[&token_types, &c.zero_scalar],
        vec![("axis", Attr::Int(0))],
    );
    let x = g.op("Gather", &[&words, INPUT_IDS], vec![("axis", Attr::Int(0))]);
    let shape = g.op("Shape", &[INPUT_IDS], vec![]);
    let sequence = g.op("Slice", &[&shape, &c.one, &c.two], vec![]);
    let pos = g.op("Slice", &[&positions, &c.zero, &sequence, &c.zero], vec![]);
    let x = g.op("Add", &[&x, &pos], vec![]);
    let x = g.op("Add", &[&x, &type0], vec![]);
    let mut x = layer_norm(&mut g, &c, &x, &exported(EMBEDDINGS_NORM), &get)?;

    // Padding as an additive mask [B, 1, 1, S]: 0 keeps, -1e9 drops (as our attention).
    let keep = g.op("Cast", &[ATTENTION_MASK], vec![("to", Attr::Int(1))]);
    let drop = g.op("Sub", &[&keep, &c.one_f], vec![]);
    let mask_add = g.op("Mul", &[&drop, &c.mask_value], vec![]);
    // Reshape, not Unsqueeze with two axes: candle-onnx inserts several axes in reverse order.
    let mask_add = g.op("Reshape", &[&mask_add, &c.mask_shape], vec![]);

    let hs = config.head_size();
    let scale = g.scalar("attention_scale", 1.0 / (hs as f32).sqrt());
    // The split and merge shapes of each head count (per-layer subnets differ by layer).
    let mut shapes: std::collections::BTreeMap<usize, (String, String)> = Default::default();
    for l in 0..config.num_hidden_layers {
        let heads = config.layer_widths(l).0;
        let (split, merge) = shapes
            .entry(heads)
            .or_insert_with(|| {
                (
                    g.ints(
                        &format!("heads_shape_{heads}"),
                        &[0, 0, heads as i64, hs as i64],
                    ),
                    g.ints(
                        &format!("context_shape_{heads}"),
                        &[0, 0, (heads * hs) as i64],
                    ),
                )
            })
            .clone();
        let q = linear(&mut g, &x, &Query.exported(l), &get)?;
        let k = linear(&mut g, &x, &Key.exported(l), &get)?;
        let v = linear(&mut g, &x, &Value.exported(l), &get)?;
        // [B, T, H·hs] → [B, H, T, hs]; keys → [B, H, hs, T] for the score product.
        let q = split_heads(&mut g, &q, &split, vec![0, 2, 1, 3]);
        let k = split_heads(&mut g, &k, &split, vec![0, 2, 3, 1]);
        let v = split_heads(&mut g, &v, &split, vec![0, 2, 1, 3]);
        let scores = g.op("MatMul", &[&q, &k], vec![]);
        let scores = g.op("Mul", &[&scores, &scale], vec![]);
        let scores = g.op("Add", &[&scores, &mask_add], vec![]);
        let probs = g.op("Softmax", &[&scores], vec![("axis", Attr::Int(-1))]);
        let ctx = g.op("MatMul", &[&probs, &v], vec![]);
        let ctx = g.op(
            "Transpose",
            &[&ctx],
            vec![("perm", Attr::Ints(vec![0, 2, 1, 3]))],
        );
        let ctx = g.op("Reshape", &[&ctx, &merge], vec![]);
        let attn = linear(&mut g, &ctx, &AttentionOut.exported(l), &get)?;
        let h = g.op("Add", &[&attn, &x], vec![]);
        let h = layer_norm(&mut g, &c, &h, &AttentionNorm.exported(l), &get)?;
        let inner = linear(&mut g, &h, &FfnIn.exported(l), &get)?;
        let inner = activation(&mut g, &c, &inner, &config.hidden_act);
        let out = linear(&mut g, &inner, &FfnOut.exported(l), &get)?;
        let out = g.op("Add", &[&out, &h], vec![]);
        x = layer_norm(&mut g, &c, &out, &OutputNorm.exported(l), &get)?;
    }
    g.op_named("Identity", &[&x], vec![], LAST_HIDDEN_STATE);

    // Masked mean over the real tokens (a row of padding only divides by 1, as ours).
    let m = g.op("Unsqueeze", &[&keep, &c.axis_2], vec![]);
    let summed = g.op("Mul", &[&x, &m], vec![]);
    let summed = g.op(
        "ReduceSum",
        &[&summed, &c.axis_1],
        vec![("keepdims", Attr::Int(0))],
    );
    let counts = g.op(
        "ReduceSum",
        &[&m, &c.axis_1],
        vec![("keepdims", Attr::Int(0))],
    );
    let counts = g.op("Clip", &[&counts, &c.one_f], vec![]);
    let pooled = g.op("Div", &[&summed, &counts], vec![]);
    let w = g.weight(
        &transposed_name("classifier.weight"),
        &get("classifier.weight")?.t()?.contiguous()?,
    )?;
    let b = hf_weight(&mut g, "classifier.bias", &get)?;
    let logits = g.op("MatMul", &[&pooled, &w], vec![]);
    g.op_named("Add", &[&logits, &b], vec![], LOGITS);

    let d = config.hidden_size;
    let inputs = vec![
        value_info(
            INPUT_IDS,
            DataType::Int64,
            &[Dim::Named("batch"), Dim::Named("sequence")],
        ),
        value_info(
            ATTENTION_MASK,
            DataType::Int64,
            &[Dim::Named("batch"), Dim::Named("sequence")],
        ),
    ];
    let outputs = vec![
        value_info(
            LOGITS,
            DataType::Float,
            &[Dim::Named("batch"), Dim::Fixed(labels.len())],
        ),
        value_info(
            LAST_HIDDEN_STATE,
            DataType::Float,
            &[Dim::Named("batch"), Dim::Named("sequence"), Dim::Fixed(d)],
        ),
    ];
    let id2label = serde_json::to_string(labels)?;
    g.finish(
        "mlfs_bert_classifier",
        inputs,
        outputs,
        &[
            ("subnet", subnet.to_string()),
            ("labels", id2label),
            ("pooling", "mean".into()),
            ("max_sequence", config.max_position_embeddings.to_string()),
        ],
    )
}

/// Constants shared by every layer.
struct OnnxConsts {
    zero: String,
    zero_scalar: String,
    one: String,
    two: String,
    one_f: String,
    two_f: String,
    eps: String,
    mask_value: String,
    axis_1: String,
    axis_2: String,
    mask_shape: String,
    half: String,
    sqrt_two: String,
}

impl OnnxConsts {
    fn new(g: &mut GraphBuilder, config: &BertConfig) -> Self {
        Self {
            zero: g.ints("const_0", &[0]),
            zero_scalar: g.int_scalar("const_0_scalar", 0),
            one: g.ints("const_1", &[1]),
            two: g.ints("const_2", &[2]),
            one_f: g.scalar("one", 1.0),
            two_f: g.scalar("two", 2.0),
            eps: g.scalar("layer_norm_eps", config.layer_norm_eps as f32),
            mask_value: g.scalar("mask_value", 1e9),
            axis_1: g.ints("axis_1", &[1]),
            axis_2: g.ints("axis_2", &[2]),
            mask_shape: g.ints("mask_shape", &[0, 1, 1, -1]),
            half: g.scalar("half", 0.5),
            sqrt_two: g.scalar("sqrt_two", std::f32::consts::SQRT_2),
        }
    }
}

/// `[B, T, H·hs]` reshaped to `[B, T, H, hs]`, then its axes permuted by `perm`.
fn split_heads(g: &mut GraphBuilder, x: &str, shape: &str, perm: Vec<i64>) -> String {
    let x = g.op("Reshape", &[x, shape], vec![]);
    g.op("Transpose", &[&x], vec![("perm", Attr::Ints(perm))])
}

/// Suffix of initializers that hold a matrix transposed (`[in, out]`) for MatMul.
pub const TRANSPOSED_SUFFIX: &str = "_t";

/// The initializer name of `name`'s transposed matrix.
fn transposed_name(name: &str) -> String {
    format!("{name}{TRANSPOSED_SUFFIX}")
}

/// Adds the merged tensor `name` as an initializer of the same name.
fn hf_weight<'a>(
    g: &mut GraphBuilder,
    name: &str,
    get: &impl Fn(&str) -> Result<&'a Tensor>,
) -> Result<String> {
    g.weight(name, get(name)?)
}

/// `x · Wᵀ + b` with `W` stored transposed (`[in, out]`, contiguous) for MatMul.
fn linear<'a>(
    g: &mut GraphBuilder,
    x: &str,
    prefix: &str,
    get: &impl Fn(&str) -> Result<&'a Tensor>,
) -> Result<String> {
    let name = format!("{prefix}.weight");
    let w = g.weight(&transposed_name(&name), &get(&name)?.t()?.contiguous()?)?;
    let y = g.op("MatMul", &[x, &w], vec![]);
    match get(&format!("{prefix}.bias")) {
        Ok(_) => {
            let b = hf_weight(g, &format!("{prefix}.bias"), get)?;
            Ok(g.op("Add", &[&y, &b], vec![]))
        }
        Err(_) => Ok(y),
    }
}

/// LayerNorm over the last axis, written out in the pattern ONNX Runtime fuses.
fn layer_norm<'a>(
    g: &mut GraphBuilder,
    c: &OnnxConsts,
    x: &str,
    prefix: &str,
    get: &impl Fn(&str) -> Result<&'a Tensor>,
) -> Result<String> {
    let last = vec![("axes", Attr::Ints(vec![-1]))];
    let mean = g.op("ReduceMean", &[x], last);
    let centred = g.op("Sub", &[x, &mean], vec![]);
    let squared = g.op("Pow", &[&centred, &c.two_f], vec![]);
    let variance = g.op(
        "ReduceMean",
        &[&squared],
        vec![("axes", Attr::Ints(vec![-1]))],
    );
    let variance = g.op("Add", &[&variance, &c.eps], vec![]);
    let std = g.op("Sqrt", &[&variance], vec![]);
    let normed = g.op("Div", &[&centred, &std], vec![]);
    let gamma = hf_weight(g, &format!("{prefix}.weight"), get)?;
    let y = g.op("Mul", &[&normed, &gamma], vec![]);
    match get(&format!("{prefix}.bias")) {
        Ok(_) => {
            let beta = hf_weight(g, &format!("{prefix}.bias"), get)?;
            Ok(g.op("Add", &[&y, &beta], vec![]))
        }
        Err(_) => Ok(y),
    }
}

/// The config's activation as our encoder reads it: ReLU, the tanh approximation, or else
/// exact (Erf) GELU.
fn activation(g: &mut GraphBuilder, c: &OnnxConsts, x: &str, name: &str) -> String {
    match name {
        "relu" => g.op("Relu", &[x], vec![]),
        "gelu_new" | "gelu_pytorch_tanh" => {
            // 0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))
            let cube = g.op("Mul", &[x, x], vec![]);
            let cube = g.op("Mul", &[&cube, x], vec![]);
            let k = g.scalar(&format!("gelu_k_{x}"), 0.044715);
            let cube = g.op("Mul", &[&cube, &k], vec![]);
            let inner = g.op("Add", &[x, &cube], vec![]);
            let r = g.scalar(&format!("gelu_r_{x}"), (2.0 / std::f32::consts::PI).sqrt());
            let inner = g.op("Mul", &[&inner, &r], vec![]);
            let t = g.op("Tanh", &[&inner], vec![]);
            let shifted = g.op("Add", &[&t, &c.one_f], vec![]);
            let y = g.op("Mul", &[x, &shifted], vec![]);
            g.op("Mul", &[&y, &c.half], vec![])
        }
        _ => {
            // 0.5 · x · (1 + erf(x / √2)), in the order ORT's Gelu fusion recognises.
            let scaled = g.op("Div", &[x, &c.sqrt_two], vec![]);
            let erf = g.op("Erf", &[&scaled], vec![]);
            let shifted = g.op("Add", &[&erf, &c.one_f], vec![]);
            let y = g.op("Mul", &[x, &shifted], vec![]);
            g.op("Mul", &[&y, &c.half], vec![])
        }
    }
}
