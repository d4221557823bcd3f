//! MLFS for decoder language models: fused head loss, training loop, measurements.

pub mod loss;
pub mod metrics;
pub mod step;
pub mod trainer;

pub use trainer::LmTrainer;
