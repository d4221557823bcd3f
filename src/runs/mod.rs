//! What the studio and the command line share above the engine: exporting a trained run's
//! subnet, classifying texts with an export, starting the ranks of a multi-GPU run. Neither `ui` nor `cli` imports the other; both
//! import this.

pub mod export;
pub mod launch;
pub mod predict;
pub mod search;
