//! The only types that cross between the trainer thread and its clients: plain data.

use serde::{Deserialize, Serialize};

/// Commands a client sends to the trainer thread.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainCmd {
    Pause,
    Resume,
    Stop,
    /// Measure the palette: all subnets of the space (`None`) or the listed spec texts.
    EvaluatePalette(Option<Vec<String>>),
}

/// One subnet's loss in a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubnetLoss {
    pub subnet: String,
    pub loss: f64,
    /// The gradient-scaling weight applied to this loss.
    pub weight: f64,
    /// How the curves name it ("student" for a decoder's listed student); absent: by position
    /// (maxnet, minnet, random subnets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// One subnet's dev accuracy at an evaluation point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubnetAccuracy {
    /// Role in the report: "maxnet", "minnet", "medium-1", "medium-2".
    pub role: String,
    pub subnet: String,
    pub accuracy: f64,
}

fn one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

fn subnet_role() -> String {
    "subnet".into()
}

/// One measured palette entry (filled in by the palette evaluation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaletteEntry {
    /// What the row is in the palette (`eval::rows::ROLES`): maxnet, minnet, subnet of the
    /// space, listed in `palette.subnets`, or searched; rows written before roles read as subnet.
    #[serde(default = "subnet_role")]
    pub role: String,
    pub subnet: String,
    pub layers: usize,
    pub heads: usize,
    pub ffn: usize,
    pub hidden: usize,
    pub params_total: usize,
    pub params_non_embedding: usize,
    pub size_bytes: usize,
    pub latency_ms_median: f64,
    pub latency_ms_p90: f64,
    pub dev_accuracy: f64,
    pub test_accuracy: f64,
}

impl PaletteEntry {
    /// A made-up row for tests: `params` parameters at 4 bytes each, one latency for median
    /// and p90, one accuracy for dev and test.
    pub fn sample(subnet: &str, params: usize, latency_ms: f64, accuracy: f64) -> Self {
        Self {
            role: "subnet".into(),
            subnet: subnet.into(),
            layers: 1,
            heads: 1,
            ffn: 1,
            hidden: 1,
            params_total: params,
            params_non_embedding: 0,
            size_bytes: params * 4,
            latency_ms_median: latency_ms,
            latency_ms_p90: latency_ms,
            dev_accuracy: accuracy,
            test_accuracy: accuracy,
        }
    }
}

/// One decoder subnet's validation metrics at an evaluation point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecoderEvalResult {
    /// "teacher", "student", "maxnet", "minnet", "medium-1", …
    pub role: String,
    pub subnet: String,
    /// Mean next-token cross-entropy (nats).
    pub loss: f64,
    pub perplexity: f64,
    pub top1_accuracy: f64,
}

/// One measured decoder subnet: size, validation metrics and latency (batch 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecoderEntry {
    pub role: String,
    pub subnet: String,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub ffn: usize,
    pub params_total: usize,
    pub params_non_embedding: usize,
    /// Size of an f16 export (bytes).
    pub size_bytes: usize,
    pub val_loss: f64,
    pub perplexity: f64,
    pub top1_accuracy: f64,
    /// Median prefill time of the latency prompt (ms).
    pub prefill_ms: f64,
    /// Median cached decoding speed.
    pub decode_tokens_per_s: f64,
    /// 90th percentile of the prefill time (ms); NaN in runs measured before it was recorded.
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub prefill_ms_p90: f64,
    /// Validation loss of the same shape cut from the teacher, untrained (NaN: not measured).
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub val_loss_untrained: f64,
}

fn nan() -> f64 {
    f64::NAN
}

/// JSON writes NaN as `null`: read it back as NaN.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Events the trainer sends; `metrics.jsonl` holds one per line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TrainEvent {
    RunStarted {
        run_dir: String,
        total_steps: usize,
        /// Steps of stages 0, 1, 2 (0 for a disabled stage).
        stage_steps: Vec<usize>,
        /// The step the run starts from (non-zero when resumed).
        start_step: usize,
        majority_accuracy: f64,
        /// Where it computes (`cpu`, `cuda:0`) and in which precision; empty in older logs.
        #[serde(default)]
        device: String,
        #[serde(default)]
        precision: String,
        /// Ranks training the run (data parallel); absent in the log when 1.
        #[serde(default = "one", skip_serializing_if = "is_one")]
        world_size: usize,
    },
    StageStarted {
        stage: usize,
        global_step: usize,
        steps: usize,
    },
    Step {
        stage: usize,
        step_in_stage: usize,
        global_step: usize,
        learning_rate: f64,
        losses: Vec<SubnetLoss>,
        grad_norm: f64,
        seconds: f64,
        /// Each rank's device memory in use before the step (MB, rank order); data-parallel
        /// runs only, absent otherwise.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        devices_mb: Vec<f64>,
    },
    DevEval {
        stage: usize,
        global_step: usize,
        results: Vec<SubnetAccuracy>,
    },
    /// Validation of decoder subnets (loss, perplexity, top-1).
    #[serde(rename = "lm_eval")]
    DecoderEval {
        stage: usize,
        global_step: usize,
        results: Vec<DecoderEvalResult>,
    },
    /// A decoder subnet measured at the end of a run.
    #[serde(rename = "lm_measured")]
    DecoderMeasured(DecoderEntry),
    Log {
        level: String,
        message: String,
    },
    CheckpointSaved {
        global_step: usize,
        path: String,
    },
    Paused {
        global_step: usize,
    },
    Resumed {
        global_step: usize,
    },
    PaletteStarted {
        count: usize,
    },
    PaletteResult(PaletteEntry),
    PaletteFinished {
        csv_path: String,
    },
    Finished {
        global_step: usize,
        /// True when a Stop ended the run early (checkpoint kept for resume).
        stopped: bool,
    },
    Failed {
        error: String,
    },
    /// The watchdog stopped a diverging run before anything non-finite was saved.
    Diverged {
        global_step: usize,
        stage: usize,
        reason: String,
        /// The newest complete checkpoint, which `--resume` continues from (None: none yet).
        last_good_step: Option<usize>,
    },
}

impl TrainEvent {
    /// A log event at the given level.
    pub fn log(level: &str, message: impl Into<String>) -> Self {
        TrainEvent::Log {
            level: level.to_string(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoder_entries_keep_unmeasured_fields_as_nan_through_json() {
        // An entry of an older run: no p90, no untrained loss.
        let old = r#"{"role":"student","subnet":"layers=0,29;heads=6;ffn=1024","layers":2,"heads":6,"kv_heads":2,"ffn":1024,"params_total":1,"params_non_embedding":1,"size_bytes":2,"val_loss":3.5,"perplexity":33.1,"top1_accuracy":0.4,"prefill_ms":80.0,"decode_tokens_per_s":20.0}"#;
        let entry: DecoderEntry = serde_json::from_str(old).unwrap();
        assert!(entry.prefill_ms_p90.is_nan() && entry.val_loss_untrained.is_nan());
        // JSON writes NaN as null; it reads back as NaN, not as an error.
        let line = serde_json::to_string(&entry).unwrap();
        assert!(line.contains("\"val_loss_untrained\":null"), "{line}");
        let back: DecoderEntry = serde_json::from_str(&line).unwrap();
        assert!(back.val_loss_untrained.is_nan() && back.val_loss == 3.5);
    }
}
