//! Checks of candle's backward pass as patched in `vendor/candle-core` (first gradient
//! contributions stored as they are): values against hand-derived gradients.

use candle_core::{Device, Tensor, Var};

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// A tensor used several times (fan-out), through a transpose, a broadcast and a product:
/// the gradients sum every path, and a gradient that arrives as a strided view is stored
/// contiguous.
#[test]
fn fan_out_transpose_and_broadcast_gradients_are_the_analytic_ones() {
    let d = Device::Cpu;
    let x = Var::from_vec(vec![0.5f32, -1.0, 2.0, 0.25, 1.5, -0.75], (2, 3), &d).unwrap();
    let w = Var::from_vec(vec![1.0f32, -2.0, 0.5], 3, &d).unwrap();
    // L = a + b + c, each with a closed-form gradient:
    //   a = Σ x²            → 2x
    //   b = Σ x ⊙ w (bcast) → w per row;          w: Σ over rows of x
    //   c = Σ (xᵀ · 3)      → 3 (through a transposed view)
    let a = x.as_tensor().sqr().unwrap().sum_all().unwrap();
    let b = x
        .as_tensor()
        .broadcast_mul(w.as_tensor())
        .unwrap()
        .sum_all()
        .unwrap();
    let c = (x.as_tensor().t().unwrap() * 3.0)
        .unwrap()
        .sum_all()
        .unwrap();
    let loss = ((a + b).unwrap() + c).unwrap();
    let grads = loss.backward().unwrap();
    let gx = grads.get(x.as_tensor()).unwrap();
    let gw = grads.get(w.as_tensor()).unwrap();
    let xs = values(x.as_tensor());
    let ws = [1.0f32, -2.0, 0.5];
    let want_x: Vec<f32> = xs
        .iter()
        .enumerate()
        .map(|(i, &v)| 2.0 * v + ws[i % 3] + 3.0)
        .collect();
    let want_w: Vec<f32> = (0..3).map(|j| xs[j] + xs[3 + j]).collect();
    for (got, want) in values(gx).iter().zip(&want_x) {
        assert!((got - want).abs() < 1e-6, "dL/dx {got} vs {want}");
    }
    for (got, want) in values(gw).iter().zip(&want_w) {
        assert!((got - want).abs() < 1e-6, "dL/dw {got} vs {want}");
    }
    assert!(gx.is_contiguous() && gw.is_contiguous());
    assert_eq!(gx.dims(), [2, 3]);

    // Only a transpose between x and the loss: its one gradient arrives as a strided view.
    let y = Var::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], (2, 3), &d).unwrap();
    let m = Tensor::from_vec(vec![1f32, 2.0, 3.0, 4.0, 5.0, 6.0], (3, 2), &d).unwrap();
    let loss = (y.as_tensor().t().unwrap() * &m)
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    let gy = grads.get(y.as_tensor()).unwrap();
    assert!(
        gy.is_contiguous(),
        "a stored first gradient must be contiguous"
    );
    // dL/dy[i][j] = m[j][i].
    assert_eq!(values(gy), vec![1.0, 3.0, 5.0, 2.0, 4.0, 6.0]);
}
