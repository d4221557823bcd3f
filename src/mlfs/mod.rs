//! The MLFS method: search space, sandwich sampler, gradient scaling, distillation, rewiring.

pub mod distill;
pub mod rewire;
pub mod sampler;
pub mod scaling;
pub mod space;
pub mod supernet;
