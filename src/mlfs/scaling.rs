//! Gradient scaling (n₁/nⱼ)^γ from the adapter parameters active in each subnet.

use crate::model::{SubnetSpec, TeacherShape};

/// Adapter parameters of one stage that subnet `spec` touches: r·(d_in + d_out) per adapted linear.
pub fn active_adapter_params(spec: &SubnetSpec, teacher: &TeacherShape, rank: usize) -> usize {
    let d = spec.hidden_or(teacher.hidden);
    let per_layer = |i: usize| {
        let (heads, f) = spec.layer_widths(i);
        let q = heads * teacher.head_size;
        let kv = q / teacher.heads_per_kv;
        // Q, K, V: d → q / kv; O: q → d; FFN in: d → f; FFN out: f → d.
        (d + q) + 2 * (d + kv) + (q + d) + (d + f) + (f + d)
    };
    (0..spec.layers.len()).map(per_layer).sum::<usize>() * rank
}

/// Adapter parameters with an extra gate projection (SwiGLU decoders: gate and up both d → f).
pub fn active_adapter_params_swiglu(
    spec: &SubnetSpec,
    teacher: &TeacherShape,
    rank: usize,
) -> usize {
    let d = spec.hidden_or(teacher.hidden);
    // The gate projection's adapter, d → f in each kept layer.
    let gate_projections: usize = (0..spec.layers.len()).map(|i| d + spec.ffn.at(i)).sum();
    active_adapter_params(spec, teacher, rank) + rank * gate_projections
}

/// The loss weight of a subnet: `(n_max / n_j)^γ` (1 for the maxnet, ≥ 1 for smaller ones).
pub fn gradient_scale(n_max: usize, n_j: usize, gamma: f64) -> f64 {
    if n_j == 0 || gamma == 0.0 {
        return 1.0;
    }
    (n_max as f64 / n_j as f64).powf(gamma)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_of_known_subnets() {
        let t = TeacherShape::MINILM_L3;
        let max = SubnetSpec::maxnet(&t);
        // Per layer at r = 8: 4 attention linears of 384+384, FFN 2·(384+1536) → 8·6912.
        assert_eq!(
            active_adapter_params(&max, &t, 8),
            3 * 8 * (4 * 768 + 2 * 1920)
        );
        let min: SubnetSpec = "layers=2;heads=3;ffn=384".parse().unwrap();
        // Per layer: (384+96)·4 + (384+384)·2 = 1920 + 1536 = 3456, times r.
        assert_eq!(active_adapter_params(&min, &t, 8), 8 * 3456);
        let n_max = 3 * 8 * 6912;
        let n_min = 8 * 3456;
        assert!((gradient_scale(n_max, n_min, 0.5) - 6f64.sqrt()).abs() < 1e-12);
        assert_eq!(gradient_scale(n_max, n_min, 0.0), 1.0);
        assert_eq!(gradient_scale(n_max, n_max, 0.5), 1.0);
    }
}
