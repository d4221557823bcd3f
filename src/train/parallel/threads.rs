//! A collective over threads of one process: the test double of a multi-GPU run (the same
//! flattening and sums as NCCL, no GPU), and what the CPU tests of data parallelism use.

use super::HostCollective;
use anyhow::{bail, Result};
use std::sync::{Arc, Barrier, Mutex};

/// One rank of a [`thread_group`].
pub struct ThreadRank {
    rank: usize,
    shared: Arc<Shared>,
}

struct Shared {
    world: usize,
    slots: Mutex<Vec<Vec<f32>>>,
    barrier: Barrier,
}

/// `world` ranks that sum through shared memory; hand one to each thread.
pub fn thread_group(world: usize) -> Vec<ThreadRank> {
    let shared = Arc::new(Shared {
        world,
        slots: Mutex::new(vec![Vec::new(); world]),
        barrier: Barrier::new(world),
    });
    (0..world)
        .map(|rank| ThreadRank {
            rank,
            shared: Arc::clone(&shared),
        })
        .collect()
}

impl HostCollective for ThreadRank {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        self.shared.world
    }
    fn sum_in_place(&mut self, values: &mut Vec<f32>) -> Result<()> {
        let s = &self.shared;
        {
            let Ok(mut slots) = s.slots.lock() else {
                bail!("another rank's thread panicked");
            };
            slots[self.rank] = values.clone();
        }
        s.barrier.wait();
        let sum = {
            let Ok(slots) = s.slots.lock() else {
                bail!("another rank's thread panicked");
            };
            if slots.iter().any(|v| v.len() != values.len()) {
                bail!("the ranks summed buffers of different lengths");
            }
            // Rank order on every rank: the same bits everywhere.
            let mut sum = slots[0].clone();
            for other in &slots[1..] {
                for (a, b) in sum.iter_mut().zip(other) {
                    *a += b;
                }
            }
            sum
        };
        // Nobody deposits the next buffer before everyone has read this one.
        s.barrier.wait();
        *values = sum;
        Ok(())
    }
    fn transport(&self) -> &'static str {
        "threads"
    }
}
