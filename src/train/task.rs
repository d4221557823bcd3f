//! What differs between a classifier run and a decoder run: the [`Task`] a
//! `Run` trains. Everything else — stages, sampling, gradient scaling, the
//! optimizer, checkpoints — is the run's.

use super::config::RunConfig;
use super::optim::AdamW;
use super::parallel::{BatchCounts, BatchShare};
use super::protocol::TrainEvent;
use crate::mlfs::adapters::AdaptedSupernet;
use crate::mlfs::rewire::LayerOrder;
use crate::mlfs::space::SearchSpace;
use crate::model::SubnetSpec;
use anyhow::Result;
use candle_core::Tensor;
use std::path::Path;

/// One gradient slot per optimizer parameter, summed over a step's students.
pub type Grads = Vec<Option<Tensor>>;

/// Where an evaluation happens: stage, global step, and whether the teacher is scored too.
#[derive(Debug, Clone, Copy)]
pub struct EvalPoint {
    pub stage: usize,
    pub global_step: usize,
    pub with_teacher: bool,
}

/// One subnet trained in a step: its spec, its reported name and its gradient-scale weight.
#[derive(Debug, Clone, PartialEq)]
pub struct Student {
    pub spec: SubnetSpec,
    /// The name a listed student is reported under (`None` for sampled ones).
    pub role: Option<String>,
    /// `(n_max / n_j)^γ`: this student's loss enters the step's sum with this weight.
    pub weight: f64,
}

/// What a task's step works on: the run's settings, the batch's example indices, the students
/// with their weights, and the optimizer whose parameters collect the gradients.
pub struct StepInput<'a> {
    pub config: &'a RunConfig,
    pub batch: &'a [usize],
    pub students: &'a [Student],
    pub opt: &'a AdamW,
    /// This rank's part of the step's whole batch: a task scales each loss mean by it, so the
    /// ranks' losses and gradients sum to the whole batch's (1 when training alone).
    pub share: BatchShare,
}

/// The `net`, `net_mut` and `space` accessors of a task whose fields have those names.
macro_rules! net_and_space_accessors {
    ($net:ty) => {
        fn net(&self) -> &$net {
            &self.net
        }
        fn net_mut(&mut self) -> &mut $net {
            &mut self.net
        }
        fn space(&self) -> &crate::mlfs::space::SearchSpace {
            &self.space
        }
    };
}
pub(crate) use net_and_space_accessors;

/// The kind-specific half of a run: model, data, losses, evaluation (`Sync`: a step's
/// gradients are computed on one of rayon's workers, `blas::on_product_pool`).
pub trait Task: Sized + Sync {
    /// The supernet whose adapters (or weights) this task trains.
    type Net: AdaptedSupernet;
    /// Drop repeated subnets from a sampled step (decoders, where each student costs seconds);
    /// the classifier keeps the sampler's draw as is, repeats included.
    const DISTINCT_STUDENTS: bool;
    /// Evaluate (with the teacher) before the first step of a new run.
    const EVALUATES_AT_START: bool;

    /// Loads the teacher and the data and attaches fresh adapters, as `config` says.
    fn build(config: &RunConfig) -> Result<Self>;
    /// What loading the teacher and the data noticed but tolerated, logged when the run starts.
    fn warnings(&self) -> &[String];
    /// Writes what a new run keeps beside its configuration (nothing by default).
    fn save_extras(&self, _run_dir: &Path) -> Result<()> {
        Ok(())
    }
    /// The supernet.
    fn net(&self) -> &Self::Net;
    /// The supernet, mutably.
    fn net_mut(&mut self) -> &mut Self::Net;
    /// The device the supernet lives on.
    fn device(&self) -> &candle_core::Device;
    /// The search space the sandwich sampler draws from.
    fn space(&self) -> &SearchSpace;
    /// Training examples (or token blocks) in one epoch.
    fn train_len(&self) -> usize;
    /// Students trained every step instead of sandwich sampling (none by default).
    fn fixed_students(&self) -> &[SubnetSpec] {
        &[]
    }
    /// The examples and real tokens of a batch, the units the task's loss means divide by.
    fn batch_counts(&self, batch: &[usize]) -> BatchCounts;
    /// The size gradient scaling compares: the trainable parameters a subnet touches.
    fn subnet_size(&self, spec: &SubnetSpec, config: &RunConfig) -> usize;
    /// Adds every student's gradients of `weight × loss` on the step's batch into `grads`;
    /// returns each student's unweighted loss.
    fn student_gradients(&self, step: &StepInput<'_>, grads: &mut Grads) -> Result<Vec<f64>>;
    /// Evaluates the reported subnets at `global_step` (and the teacher first when asked).
    fn evaluate(&self, config: &RunConfig, at: EvalPoint) -> Result<TrainEvent>;
    /// Work before a stage's optimizer is built (the classifier's rewiring); a line to log.
    fn before_stage(&mut self, _config: &RunConfig, _stage: usize) -> Result<Option<String>> {
        Ok(None)
    }
    /// Rewiring orders applied so far (stored in checkpoints and the supernet's metadata).
    fn orders(&self) -> Option<Vec<LayerOrder>> {
        None
    }
    /// Re-applies stored rewiring orders before stored weights are loaded.
    fn restore_orders(&mut self, _orders: &[LayerOrder]) -> Result<()> {
        Ok(())
    }
    /// Accuracy of always answering the majority class (classifiers), for the start event.
    fn majority_accuracy(&self) -> f64 {
        0.0
    }
    /// Kind-specific fields of `supernet.json` (label names; how a decoder's students train).
    fn metadata(&self) -> serde_json::Map<String, serde_json::Value>;

    /// The subnets reported at each evaluation: the listed students, or maxnet, minnet and two
    /// medium ones.
    fn report_subnets(&self) -> Vec<(String, SubnetSpec)> {
        let fixed = self.fixed_students();
        if fixed.len() == 1 {
            return vec![("student".into(), fixed[0].clone())];
        }
        if !fixed.is_empty() {
            let named = fixed.iter().enumerate();
            return named
                .map(|(i, s)| (format!("student-{}", i + 1), s.clone()))
                .collect();
        }
        let space = self.space();
        let mut out = vec![
            ("maxnet".to_string(), space.maxnet()),
            ("minnet".to_string(), space.minnet(2)),
        ];
        for (i, m) in space.mediums().into_iter().enumerate() {
            out.push((format!("medium-{}", i + 1), m));
        }
        out
    }
}
