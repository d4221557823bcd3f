//! Training: configuration, data, optimizer, checkpoints, the loop, and the trainer thread.

pub mod any;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod events;
pub mod optim;
pub mod protocol;
pub mod stage_loop;
pub mod trainer;
pub mod worker;
