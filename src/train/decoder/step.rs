//! One student's gradients, back-propagated one layer at a time.
//!
//! candle's backward keeps every node of the graph it walks alive until it returns, and the
//! loss tensor holds the whole graph: one backward over the whole student would hold all
//! layers' intermediates and all weight gradients at once. Here every layer's graph starts at a
//! leaf copy of its input, and the backward walks the layers from the top, back-propagating the
//! gradient arriving at one layer's output through that layer's graph and then dropping it, so
//! intermediates are freed as gradients appear (as PyTorch's autograd frees saved tensors).
//! With `recompute` the forward keeps only each layer's input and the backward rebuilds one
//! layer's graph at a time: one extra student forward buys a peak of one layer's intermediates.

use crate::mlfs::distill::{combine, feature_loss, DistillWeights};
use crate::mlfs::head_loss::{head_loss, HeadLoss, HeadLossOptions};
use crate::mlfs::projection::Projections;
use crate::model::llama::LlamaDecoder;
use crate::model::SubnetSpec;
use crate::train::laps::Laps;
use crate::train::optim::AdamW;
use anyhow::{Context, Result};
use candle_core::{DType, Tensor, Var};

/// The teacher's signal for one batch: hidden states per layer, final states and head.
pub struct TeacherSignal<'a> {
    /// `[B, T, d]` after the embeddings and after every teacher layer.
    pub hidden: &'a [Tensor],
    /// `[B·T, d]` after the final norm.
    pub last: &'a Tensor,
    pub head: &'a Tensor,
}

/// Everything one student's step needs.
pub struct StudentStep<'a> {
    pub net: &'a LlamaDecoder,
    pub spec: &'a SubnetSpec,
    /// Token ids `[B, T]`.
    pub ids: &'a Tensor,
    pub targets: &'a [Option<u32>],
    pub teacher: Option<TeacherSignal<'a>>,
    /// P^m per teacher layer.
    pub projections: &'a Projections,
    /// α, β and T of the run's loss formula.
    pub weights: DistillWeights,
    /// Gradient-scaling weight of this student's loss.
    pub weight: f64,
    /// The output matrix trains (full fine-tuning).
    pub train_head: bool,
    /// Recompute each layer in the backward pass (lowest memory) instead of keeping its graph.
    pub recompute: bool,
}

/// The head's loss and gradients for final states `last` `[B·T, d]`.
fn head_terms(s: &StudentStep<'_>, last: &Tensor) -> Result<HeadLoss> {
    head_loss(
        last,
        s.net.head(),
        s.targets,
        s.teacher.as_ref().map(|t| (t.last, t.head)),
        HeadLossOptions {
            weights: s.weights,
            grad_hidden: true,
            grad_head: s.train_head,
            compute: s.net.compute_dtype(),
        },
    )
}

/// Adds the student's weighted gradients into `grads`; returns its (unweighted) loss.
pub fn student_gradients(
    s: &StudentStep<'_>,
    opt: &AdamW,
    grads: &mut Vec<Option<Tensor>>,
    laps: &Laps<'_>,
) -> Result<f64> {
    let (b, t) = s.ids.dims2()?;
    let net = s.net;
    let d = net.config.hidden_size;
    let ctx = net.layer_context(b, t, s.spec, 0)?;
    // Forward: each layer's input, and (without recompute) its graph from a leaf copy of it.
    let mut inputs = vec![net.embed_tokens(s.ids)?.detach()];
    let mut graphs: Vec<(Var, Tensor)> = Vec::new();
    for (slot, &l) in s.spec.layers.iter().enumerate() {
        let x = inputs.last().context("no input")?;
        let y = if s.recompute {
            net.layer_forward(l, slot, x, &ctx, true, None)?.detach()
        } else {
            let leaf = Var::from_tensor(x)?;
            let y = net.layer_forward(l, slot, leaf.as_tensor(), &ctx, true, None)?;
            graphs.push((leaf, y.clone()));
            y.detach()
        };
        inputs.push(y);
    }
    laps.lap("student forward");
    // Head and final norm.
    let top = Var::from_tensor(inputs.last().context("no output")?)?;
    let last = net.final_norm.forward(top.as_tensor())?;
    let out = head_terms(s, &last)?;
    let grad_hidden = out.grad_hidden.as_ref().context("no hidden gradient")?;
    let g_top = (grad_hidden * s.weight)?;
    let gs = last.backward_from(&g_top)?;
    opt.accumulate(&gs, grads)?;
    if let Some(g) = &out.grad_head {
        opt.add_grad(net.head(), (g * s.weight)?, grads)?;
    }
    let mut g = gs
        .get(top.as_tensor())
        .context("no gradient at the last layer")?
        .detach();
    drop(gs);
    laps.lap("head loss and its backward");
    // Backward, one layer at a time from the top.
    let mut feature_sum = DeviceSum::default();
    for (slot, &l) in s.spec.layers.iter().enumerate().rev() {
        if let (Some(teacher), true) = (&s.teacher, s.weights.feature() > 0.0) {
            let h = Var::from_tensor(&inputs[slot + 1])?;
            let proj = s.projections.of_layer(l, d, s.ids.device())?;
            let f = feature_loss(
                &h.as_tensor().reshape((b, t, d))?,
                &teacher.hidden[l + 1],
                &proj,
                None,
            )?;
            feature_sum.add(&f)?;
            let fg = (f * (s.weights.feature() * s.weight))?.backward()?;
            opt.accumulate(&fg, grads)?;
            if let Some(extra) = fg.get(h.as_tensor()) {
                g = (g + extra.detach())?;
            }
        }
        // The kept graph of this layer (the last one pushed), or the layer run again.
        let (x, y) = match graphs.pop() {
            Some(kept) => kept,
            None => {
                let x = Var::from_tensor(&inputs[slot])?;
                let y = net.layer_forward(l, slot, x.as_tensor(), &ctx, true, None)?;
                (x, y)
            }
        };
        let gs = y.backward_from(&g)?;
        opt.accumulate(&gs, grads)?;
        g = gs
            .get(x.as_tensor())
            .with_context(|| format!("no gradient below layer {l}"))?
            .detach();
        drop(gs);
        // Dropping `gs` and `y` frees this layer's intermediates before the next one's backward.
        if laps.on() {
            laps.lap(&format!("backward of layer {l}"));
        }
    }
    if net.embed.is_variable() {
        // The lookup's gradient: the rows of `g` added at the tokens' rows.
        opt.add_grad_rows(&net.embed, &s.ids.flatten_all()?, &g, grads)?;
        laps.lap("embedding backward");
    }
    student_loss(s, &out, feature_sum.read()?)
}

/// A sum of scalar losses kept on the device and read once: reading each layer's value would
/// make the host wait for the GPU in every layer.
#[derive(Default)]
struct DeviceSum(Option<Tensor>);

impl DeviceSum {
    fn add(&mut self, value: &Tensor) -> Result<()> {
        let value = value.detach();
        self.0 = Some(match self.0.take() {
            Some(sum) => (sum + value)?,
            None => value,
        });
        Ok(())
    }

    fn read(&self) -> Result<f64> {
        match &self.0 {
            Some(sum) => Ok(sum.to_dtype(DType::F64)?.to_scalar::<f64>()?),
            None => Ok(0.0),
        }
    }
}

/// The student's loss by the run's formula: head terms and the summed feature terms.
fn student_loss(s: &StudentStep<'_>, out: &HeadLoss, feature_sum: f64) -> Result<f64> {
    let (task, kd) = out.terms(s.weights.temperature);
    combine(&task, &kd, &[feature_sum], s.weights)
}
