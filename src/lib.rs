//! MLFS Studio: multistage low-rank fine-tuning of super-transformers, as a library.

pub mod cli;
pub mod eval;
pub mod export;
pub mod lm;
pub mod mlfs;
pub mod model;
pub mod train;
pub mod ui;
pub mod util;
