//! Evaluation: accuracy per subnet, latency, Pareto fronts, the palette.

pub mod accuracy;
pub mod latency;
pub mod lm;
pub mod palette;
pub mod pareto;
