//! Search under a budget: the best subnet for a latency, parameter or size budget, found among
//! per-layer subnets by NSGA-II on a fast quality estimate and a latency table of this machine,
//! then measured as palette rows.

pub mod budget;
pub mod classifier;
pub mod decoder;
pub mod driver;
pub mod genome;
pub mod latency_table;
pub mod nsga2;
pub mod subject;
