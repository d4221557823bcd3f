//! Evaluation: accuracy per subnet, latency, Pareto fronts, the palette.

pub mod decoder;
pub mod latency;
pub mod palette;
pub mod pareto;
