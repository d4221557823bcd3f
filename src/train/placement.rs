//! Where a run computes, when the command line or the studio says otherwise than its config.

use super::config::{DeviceChoice, Precision, RunConfig};

/// A device and precision chosen on the command line or in the studio, in place of the run's
/// own (a run trained on a GPU can be resumed or evaluated on the CPU, and back).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Placement {
    pub device: Option<DeviceChoice>,
    pub precision: Option<Precision>,
}

impl Placement {
    /// The configuration with this placement's choices written over it.
    pub fn apply(&self, mut config: RunConfig) -> RunConfig {
        if let Some(d) = self.device {
            config.device = d;
        }
        if let Some(p) = self.precision {
            config.precision = p;
        }
        config
    }
}
