//! What the studio and the command line share above the engine: exporting a trained run's
//! subnet and classifying texts with an export. Neither `ui` nor `cli` imports the other; both
//! import this.

pub mod export;
pub mod predict;
pub mod search;
