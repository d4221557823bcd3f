//! The method's settings: distillation weights and projections, the subnet search space.

use serde::{Deserialize, Serialize};

/// How the distillation feature projections P^m are kept from collapsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProjectionKind {
    /// Learnt P, columns renormalised to unit length after every step (default).
    UnitNorm,
    /// No projection: plain hidden-state MSE (DynaBERT).
    Identity,
    /// Random orthonormal P, never trained.
    Fixed,
}

/// Distillation from the maxnet to every other subnet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DistillConfig {
    /// Weight of distillation against the task loss.
    pub alpha: f64,
    /// Weight of each layer's feature MSE.
    pub beta: f64,
    /// Softmax temperature T of the logit KL.
    pub temperature: f64,
    /// Projection width k of P^m ∈ R^{d×k}.
    pub projection_dim: usize,
    pub projection: ProjectionKind,
}

impl Default for DistillConfig {
    fn default() -> Self {
        Self {
            alpha: 0.9,
            beta: 0.1,
            temperature: 1.0,
            projection_dim: 128,
            projection: ProjectionKind::UnitNorm,
        }
    }
}

/// Which teacher layers a depth keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum LayerRule {
    /// Evenly spaced, the last layer always kept (DynaBERT's map; the encoder default).
    #[default]
    LastKept,
    /// Evenly spaced from the first layer to the last, both kept (depth 1 keeps the last):
    /// language models lose the most when their first or last layer goes.
    FirstAndLast,
}

/// The subnet search space; empty lists mean "the teacher's default".
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpaceConfig {
    pub depths: Vec<usize>,
    pub heads: Vec<usize>,
    pub ffn: Vec<usize>,
    pub hidden: Vec<usize>,
    /// Which layers each depth keeps.
    pub layers: LayerRule,
    /// Whether a random subnet's kept layers share one width (`Uniform`, the default) or each
    /// draws its own heads and FFN width from the choices (`PerLayer`).
    pub widths: WidthMode,
}

/// How the sampler draws a random subnet's widths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum WidthMode {
    /// One head count and one FFN width for all kept layers (the paper's space).
    #[default]
    Uniform,
    /// Each kept layer's heads and FFN width drawn on their own.
    PerLayer,
}
