//! The MLFS method: its settings, search space, sandwich sampler, gradient scaling, the loss
//! formula (distillation, fused LM-head loss), rewiring, and the two supernets (classifier and
//! decoder) with their shared adapter bookkeeping and feature projections.

pub mod adapters;
pub mod classifier;
pub mod config;
pub mod decoder;
pub mod distill;
pub mod head_loss;
#[cfg(feature = "cuda")]
pub mod head_loss_device;
#[cfg(feature = "cuda")]
pub mod head_loss_kernel;
pub mod head_loss_terms;
pub mod projection;
pub mod rewire;
pub mod rewire_decoder;
pub mod sampler;
pub mod scaling;
pub mod space;
