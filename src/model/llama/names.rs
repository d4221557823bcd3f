//! The one table of Hugging Face ↔ llama.cpp (GGUF) tensor names, read in both directions.

/// Whole-model tensors: (Hugging Face name, GGUF name).
const MODEL_TENSORS: [(&str, &str); 3] = [
    ("model.embed_tokens.weight", "token_embd.weight"),
    ("model.norm.weight", "output_norm.weight"),
    ("lm_head.weight", "output.weight"),
];

/// Per-layer tensors, after `model.layers.{i}.` / `blk.{i}.`: (Hugging Face part, GGUF part),
/// in the order of [`BlockTensor`].
const LAYER_TENSORS: [(&str, &str); 9] = [
    ("input_layernorm.weight", "attn_norm.weight"),
    ("post_attention_layernorm.weight", "ffn_norm.weight"),
    ("self_attn.q_proj.weight", "attn_q.weight"),
    ("self_attn.k_proj.weight", "attn_k.weight"),
    ("self_attn.v_proj.weight", "attn_v.weight"),
    ("self_attn.o_proj.weight", "attn_output.weight"),
    ("mlp.gate_proj.weight", "ffn_gate.weight"),
    ("mlp.up_proj.weight", "ffn_up.weight"),
    ("mlp.down_proj.weight", "ffn_down.weight"),
];

/// One tensor of a decoder block: what the loader, the student, the random teacher and every
/// writer name through [`LAYER_TENSORS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockTensor {
    InputNorm,
    PostNorm,
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl BlockTensor {
    /// The Hugging Face name after `model.layers.{i}.` (`self_attn.q_proj.weight`).
    pub fn part(self) -> &'static str {
        LAYER_TENSORS[self as usize].0
    }

    /// The module path, without `.weight` (`self_attn.q_proj`).
    pub fn module(self) -> &'static str {
        self.part().trim_end_matches(".weight")
    }

    /// The full Hugging Face name in layer `layer`.
    pub fn hf(self, layer: usize) -> String {
        format!("{HF_LAYER}{layer}.{}", self.part())
    }

    /// The name under a store that strips `model.` (`layers.{i}.…`).
    pub fn stored(self, layer: usize) -> String {
        format!("layers.{layer}.{}", self.part())
    }
}

const HF_LAYER: &str = "model.layers.";
const GGUF_LAYER: &str = "blk.";

/// Looks `name` up in one column of the table and answers from the other; unknown parts pass
/// through unchanged under the other side's layer prefix.
fn translate(name: &str, from_hf: bool) -> String {
    let pick = |pair: &(&'static str, &'static str)| if from_hf { *pair } else { (pair.1, pair.0) };
    let (from_layer, to_layer) = if from_hf {
        (HF_LAYER, GGUF_LAYER)
    } else {
        (GGUF_LAYER, HF_LAYER)
    };
    if let Some(rest) = name.strip_prefix(from_layer) {
        let (layer, part) = rest.split_once('.').unwrap_or((rest, ""));
        let mapped = LAYER_TENSORS.iter().map(pick).find(|(f, _)| *f == part);
        let part = mapped.map_or(part, |(_, t)| t);
        return format!("{to_layer}{layer}.{part}");
    }
    let mapped = MODEL_TENSORS.iter().map(pick).find(|(f, _)| *f == name);
    mapped.map_or_else(|| name.to_string(), |(_, t)| t.to_string())
}

/// llama.cpp's name of a Hugging Face tensor name.
pub fn gguf_name(hf: &str) -> String {
    translate(hf, true)
}

/// Hugging Face name of a llama.cpp tensor name.
pub fn hf_name(gguf: &str) -> String {
    translate(gguf, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_translate_both_ways() {
        assert_eq!(
            gguf_name("model.layers.7.mlp.gate_proj.weight"),
            "blk.7.ffn_gate.weight"
        );
        assert_eq!(
            hf_name("blk.12.attn_output.weight"),
            "model.layers.12.self_attn.o_proj.weight"
        );
        assert_eq!(gguf_name("lm_head.weight"), "output.weight");
        assert_eq!(hf_name("token_embd.weight"), "model.embed_tokens.weight");
        // Unknown names pass through (under the other side's layer prefix).
        assert_eq!(hf_name("blk.3.attn_q.bias"), "model.layers.3.attn_q.bias");
        assert_eq!(gguf_name("rope.freqs"), "rope.freqs");
        for (hf, gguf) in MODEL_TENSORS {
            assert_eq!(
                (gguf_name(hf), hf_name(gguf)),
                (gguf.to_string(), hf.to_string())
            );
        }
        for (hf, gguf) in LAYER_TENSORS {
            let (h, g) = (format!("model.layers.0.{hf}"), format!("blk.0.{gguf}"));
            assert_eq!((gguf_name(&h), hf_name(&g)), (g.clone(), h.clone()));
        }
        assert_eq!(
            BlockTensor::Down.hf(3),
            "model.layers.3.mlp.down_proj.weight"
        );
        assert_eq!(BlockTensor::Q.module(), "self_attn.q_proj");
        assert_eq!(
            gguf_name(&BlockTensor::PostNorm.hf(0)),
            "blk.0.ffn_norm.weight"
        );
    }
}
