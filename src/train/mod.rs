//! Training: one run skeleton ([`run::Run`]) over a [`task::Task`] — the classifier task and the
//! decoder task — with its configuration, data, optimizer, checkpoints, event log and protocol.
//! Nothing here knows a thread or a window.

pub mod adam_step;
pub mod checkpoint;
pub mod classifier;
pub mod config;
pub mod data;
pub mod data_record;
pub mod decoder;
pub mod events;
pub mod kind;
pub mod laps;
pub mod optim;
pub mod optim_cpu;
#[cfg(feature = "cuda")]
pub mod optim_cuda;
pub mod parallel;
pub mod placement;
pub mod protocol;
pub mod run;
pub mod schedule;
pub mod task;
pub mod watchdog;

pub use classifier::ClassifierRun;
pub use decoder::DecoderRun;
