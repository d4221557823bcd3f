//! Closed-form weight counts of subnets: what the gradient scaling, the palette and the studio
//! count, written once per architecture.

use crate::model::{SubnetSpec, TeacherShape};

/// Weights of a decoder subnet's kept layers (Q, K, V, O, gate, up, down and two norms),
/// embeddings excluded: the size a fully trained student's gradient scaling uses.
pub fn decoder_params(spec: &SubnetSpec, teacher: &TeacherShape) -> usize {
    let d = spec.hidden_or(teacher.hidden);
    (0..spec.layers.len())
        .map(|i| {
            let (heads, f) = spec.layer_widths(i);
            let q = heads * teacher.head_size;
            let kv = q / teacher.heads_per_kv;
            2 * d * q + 2 * d * kv + 3 * d * f + 2 * d
        })
        .sum()
}

/// All weights of a decoder subnet: its layers, the embeddings (twice when the output matrix is
/// not tied to them) and the final norm.
pub fn decoder_params_total(
    spec: &SubnetSpec,
    teacher: &TeacherShape,
    vocab: usize,
    tied: bool,
) -> usize {
    let d = spec.hidden_or(teacher.hidden);
    let embeddings = if tied { vocab * d } else { 2 * vocab * d };
    decoder_params(spec, teacher) + embeddings + d
}
