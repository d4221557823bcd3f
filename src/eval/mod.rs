//! Evaluation of trained runs: the classifier palette (accuracy, size, latency), decoder
//! measurements (validation loss, size, prefill and decode speed), latency timing, Pareto fronts
//! and budget rules. Each takes a task (model + data), not a run.

pub mod csv_table;
pub mod decoder;
pub mod figure;
pub mod latency;
pub mod machine;
pub mod palette;
pub mod pareto;
pub mod rows;
