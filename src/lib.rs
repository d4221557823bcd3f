//! MLFS Studio: multistage low-rank fine-tuning of super-transformers, as a library.
//!
//! Layers, each importing only from those before it: `util` → `model` → `mlfs` → `train` →
//! `eval`, `export` → `worker` → `cli`, `ui`.

pub mod cli;
pub mod eval;
pub mod export;
pub mod files;
pub mod mlfs;
pub mod model;
pub mod runs;
pub mod search;
pub mod train;
pub mod ui;
pub mod util;
pub mod worker;
