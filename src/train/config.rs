//! The run configuration: one struct, saved and loaded as RON, validated field by field.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use crate::mlfs::config::{DistillConfig, ProjectionKind, SpaceConfig};
pub use crate::model::device::{DeviceChoice, Precision};

/// Most timed runs of one latency measurement (a million would take hours per subnet).
pub const MAX_LATENCY_RUNS: usize = 10_000;
/// Most epochs of one stage, and most steps: far beyond any real run, small enough that a
/// stage's step count never overflows.
pub const MAX_STAGE_EPOCHS: usize = 100_000;
pub const MAX_STAGE_STEPS: usize = 100_000_000;

/// How long a stage trains.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Budget {
    /// Full passes over the training set.
    Epochs(usize),
    /// Optimizer steps.
    Steps(usize),
}

/// One MLFS stage: whether it runs, for how long and at which peak learning rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StageConfig {
    pub enabled: bool,
    pub budget: Budget,
    pub learning_rate: f64,
    /// Fraction of the stage's steps spent warming the learning rate up linearly.
    pub warmup_ratio: f64,
}

impl Default for StageConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            budget: Budget::Epochs(2),
            learning_rate: 1e-3,
            warmup_ratio: 0.1,
        }
    }
}

/// Data files and their columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    pub train: PathBuf,
    pub dev: PathBuf,
    pub test: PathBuf,
    /// Column (CSV/TSV header) or JSON field holding the text.
    pub text_column: String,
    /// Column or JSON field holding the label (integer or string).
    pub label_column: String,
    /// Names of integer labels 0, 1, … (Try it and the exported `id2label` show them); empty:
    /// the labels as written in the data.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub label_names: Vec<String>,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            train: PathBuf::from("assets/sentiment/train.jsonl"),
            dev: PathBuf::from("assets/sentiment/dev.jsonl"),
            test: PathBuf::from("assets/sentiment/test.jsonl"),
            text_column: "text".into(),
            label_column: "label".into(),
            label_names: vec!["negative".into(), "positive".into()],
        }
    }
}

/// Palette evaluation settings (used at the end of a run and on demand).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PaletteConfig {
    /// Evaluate the whole palette automatically when training ends.
    pub evaluate_at_end: bool,
    /// Sequence length of the latency measurement (batch 1).
    pub latency_seq_len: usize,
    /// Timed runs per subnet (after warm-up).
    pub latency_runs: usize,
    /// Subnet specs to measure; empty means the whole search space.
    pub subnets: Vec<String>,
}

impl Default for PaletteConfig {
    fn default() -> Self {
        Self {
            evaluate_at_end: true,
            latency_seq_len: 32,
            latency_runs: 20,
            subnets: Vec::new(),
        }
    }
}

/// Decoder (language-model) settings: what trains and how the students are measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecoderConfig {
    /// Train every weight of the students (full fine-tuning) instead of the staged adapters.
    pub train_base_weights: bool,
    /// Where fully trained students start: the teacher's slice or random weights.
    pub init: crate::model::llama::student::StudentInit,
    /// Subnet specs trained every step; empty means sandwich sampling from the search space.
    pub students: Vec<String>,
    /// Validation blocks (of `max_seq_len` tokens) scored at each evaluation.
    pub eval_blocks: usize,
    /// Prompt tokens of the prefill-latency measurement.
    pub latency_prompt: usize,
    /// Tokens decoded (with the KV cache) for the tokens/s measurement.
    pub latency_new_tokens: usize,
    /// Recompute each layer in the backward pass: one extra student forward, a fraction of the
    /// memory (off: keep every layer's graph until its backward — faster, about 2 GB more for
    /// SmolLM2 at 8 × 128).
    pub recompute_activations: bool,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        Self {
            train_base_weights: false,
            init: crate::model::llama::student::StudentInit::Sliced,
            students: Vec::new(),
            eval_blocks: 32,
            latency_prompt: 128,
            latency_new_tokens: 32,
            recompute_activations: true,
        }
    }
}

/// What the training watchdog does (on by default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WatchdogConfig {
    /// Stop at a non-finite loss or gradient norm (never saving that state).
    pub enabled: bool,
    /// The loss exploded when it exceeds this multiple of its running level (a warning from
    /// half of it; 0: never).
    pub spike_factor: f64,
    /// Stop at an exploded loss (otherwise only warn).
    pub stop_on_spike: bool,
}

impl Default for WatchdogConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            spike_factor: 10.0,
            stop_on_spike: true,
        }
    }
}

/// Everything one MLFS run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    pub name: String,
    /// Teacher folder (Hugging Face BERT).
    pub teacher: PathBuf,
    pub data: DataConfig,
    pub max_seq_len: usize,
    pub batch_size: usize,
    pub seed: u64,
    /// Stages 0, 1 and 2, in order.
    pub stages: Vec<StageConfig>,
    /// Adapter rank r.
    pub rank: usize,
    /// LoRA alpha; the adapter scale is alpha / r.
    pub lora_alpha: f64,
    /// Exponent γ of the gradient-scaling weight (n₁/nⱼ)^γ; 0 turns scaling off.
    pub gamma: f64,
    pub distill: DistillConfig,
    /// Random subnets per step after the maxnet and the minnet.
    pub random_subnets: usize,
    pub space: SpaceConfig,
    /// Reorder heads and FFN neurons by importance before stage 1.
    pub rewire: bool,
    /// Batches used to estimate importance for rewiring.
    pub rewire_batches: usize,
    pub weight_decay: f64,
    pub grad_clip: f64,
    /// Dev evaluation every N steps (0: only at stage ends).
    pub eval_every: usize,
    /// Checkpoint every N steps (0: only at stage ends).
    pub checkpoint_every: usize,
    pub palette: PaletteConfig,
    /// Stopping on divergence, warning on loss spikes.
    pub watchdog: WatchdogConfig,
    /// Where the run computes: `Auto` (the first GPU if there is one), `Cpu` or `Cuda(n)`.
    pub device: DeviceChoice,
    /// Frozen weights and matrix-product inputs in `F32` or `Bf16` (GPU only).
    pub precision: Precision,
    /// Decoder settings; present only when the teacher is a decoder language model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lm: Option<DecoderConfig>,
}

impl Default for RunConfig {
    fn default() -> Self {
        let stage = |lr: f64| StageConfig {
            learning_rate: lr,
            ..StageConfig::default()
        };
        Self {
            name: "sentiment".into(),
            teacher: PathBuf::from("assets/minilm-l3"),
            data: DataConfig::default(),
            max_seq_len: 64,
            batch_size: 32,
            seed: 42,
            stages: vec![stage(2e-3), stage(2e-3), stage(2e-3)],
            rank: 8,
            lora_alpha: 16.0,
            gamma: 0.5,
            distill: DistillConfig::default(),
            random_subnets: 2,
            space: SpaceConfig::default(),
            rewire: true,
            rewire_batches: 8,
            weight_decay: 0.01,
            grad_clip: 1.0,
            eval_every: 50,
            checkpoint_every: 100,
            palette: PaletteConfig::default(),
            watchdog: WatchdogConfig::default(),
            device: DeviceChoice::Auto,
            precision: Precision::F32,
            lm: None,
        }
    }
}

/// One invalid field with the reason, for inline display and CLI errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// ", did you mean `gamma`?" for a misspelt field close to a known one.
fn unknown_field_hint(error: &ron::Error) -> Option<String> {
    let ron::Error::NoSuchStructField {
        expected, found, ..
    } = error
    else {
        return None;
    };
    let (distance, best) = expected
        .iter()
        .map(|known| (edit_distance(found, known), *known))
        .min()?;
    (distance <= 2.max(found.len() / 4)).then(|| format!(" (did you mean `{best}`?)"))
}

/// Levenshtein distance between two short names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (prev + (ca != cb) as usize)
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

impl RunConfig {
    /// Reads a RON preset; errors name the file and, for invalid values, the field.
    pub fn load(path: &Path) -> Result<Self> {
        let text = crate::files::read_text(path, "preset")?;
        let config: RunConfig = ron::from_str(&text).map_err(|e| {
            let hint = unknown_field_hint(&e.code).unwrap_or_default();
            anyhow::anyhow!("{}: invalid preset: {e}{hint}", path.display())
        })?;
        let errors = config.validate();
        if !errors.is_empty() {
            let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            anyhow::bail!("{}: invalid preset: {}", path.display(), list.join("; "));
        }
        Ok(config)
    }

    /// Writes the configuration as pretty RON (atomically).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = self.to_ron()?;
        crate::files::write_atomic(path, text.as_bytes())
    }

    /// Pretty RON text of this configuration.
    pub fn to_ron(&self) -> Result<String> {
        ron::ser::to_string_pretty(self, ron::ser::PrettyConfig::default())
            .context("cannot serialise the run configuration")
    }

    /// Every invalid field with its reason (empty when the configuration can run).
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut bad = |field: &str, message: String| {
            errors.push(FieldError {
                field: field.to_string(),
                message,
            })
        };
        if self.max_seq_len < 8 || self.max_seq_len > 512 {
            bad(
                "max_seq_len",
                format!("{} is not a whole number from 8 to 512", self.max_seq_len),
            );
        }
        if self.batch_size == 0 || self.batch_size > 4096 {
            bad(
                "batch_size",
                format!("{} is not a whole number from 1 to 4096", self.batch_size),
            );
        }
        if self.stages.len() != 3 {
            bad(
                "stages",
                format!("needs exactly 3 stages, found {}", self.stages.len()),
            );
        }
        for (i, s) in self.stages.iter().enumerate() {
            if !(s.learning_rate > 0.0 && s.learning_rate < 1.0) {
                bad(
                    &format!("stages[{i}].learning_rate"),
                    format!("{} must be in (0, 1)", s.learning_rate),
                );
            }
            if !(0.0..1.0).contains(&s.warmup_ratio) {
                bad(
                    &format!("stages[{i}].warmup_ratio"),
                    format!("{} must be in [0, 1)", s.warmup_ratio),
                );
            }
            let too_long = match s.budget {
                Budget::Epochs(e) => {
                    (e > MAX_STAGE_EPOCHS).then_some((e, MAX_STAGE_EPOCHS, "epochs"))
                }
                Budget::Steps(n) => (n > MAX_STAGE_STEPS).then_some((n, MAX_STAGE_STEPS, "steps")),
            };
            if let Some((n, max, unit)) = too_long {
                bad(
                    &format!("stages[{i}].budget"),
                    format!("{n} {unit} is more than {max}"),
                );
            }
            let zero = matches!(s.budget, Budget::Epochs(0) | Budget::Steps(0));
            if s.enabled && zero {
                bad(
                    &format!("stages[{i}].budget"),
                    "an enabled stage needs at least one epoch or step".into(),
                );
            }
        }
        if self.stages.iter().all(|s| !s.enabled) && self.stages.len() == 3 {
            bad("stages", "at least one stage must be enabled".into());
        }
        if self.rank == 0 || self.rank > 256 {
            bad(
                "rank",
                format!("{} is not a whole number from 1 to 256", self.rank),
            );
        }
        // α/r scales every adapter update: beyond 1024 the first step already overflows.
        if !(self.lora_alpha.is_finite() && self.lora_alpha > 0.0 && self.lora_alpha <= 1024.0) {
            bad(
                "lora_alpha",
                format!("{} is not above 0 and at most 1024", self.lora_alpha),
            );
        }
        if !(self.gamma >= 0.0 && self.gamma <= 4.0) {
            bad("gamma", format!("{} is not from 0 to 4", self.gamma));
        }
        let d = &self.distill;
        if !(0.0..=1.0).contains(&d.alpha) {
            bad("distill.alpha", format!("{} is not from 0 to 1", d.alpha));
        }
        if !(d.beta.is_finite() && d.beta >= 0.0) {
            bad("distill.beta", format!("{} must be non-negative", d.beta));
        }
        if !(d.temperature.is_finite() && d.temperature > 0.0) {
            bad(
                "distill.temperature",
                format!("{} must be positive", d.temperature),
            );
        }
        if d.projection_dim == 0 || d.projection_dim > 8192 {
            bad(
                "distill.projection_dim",
                format!("{} is not a whole number from 1 to 8192", d.projection_dim),
            );
        }
        if self.random_subnets > 16 {
            bad(
                "random_subnets",
                format!("{} is more than 16", self.random_subnets),
            );
        }
        for (field, list) in [
            ("space.depths", &self.space.depths),
            ("space.heads", &self.space.heads),
            ("space.ffn", &self.space.ffn),
            ("space.hidden", &self.space.hidden),
        ] {
            if list.contains(&0) {
                bad(field, "choices must be positive".into());
            }
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            bad(
                "weight_decay",
                format!("{} must be non-negative", self.weight_decay),
            );
        }
        if !(self.grad_clip.is_finite() && self.grad_clip >= 0.0) {
            bad(
                "grad_clip",
                format!("{} must be non-negative (0 disables)", self.grad_clip),
            );
        }
        if self.palette.latency_runs < 20 || self.palette.latency_runs > MAX_LATENCY_RUNS {
            bad(
                "palette.latency_runs",
                format!(
                    "{} is not a whole number from 20 to {MAX_LATENCY_RUNS}",
                    self.palette.latency_runs
                ),
            );
        }
        if self.palette.latency_seq_len < 2 || self.palette.latency_seq_len > 512 {
            bad(
                "palette.latency_seq_len",
                format!(
                    "{} is not a whole number from 2 to 512",
                    self.palette.latency_seq_len
                ),
            );
        }
        let no_gpu = self.device == DeviceChoice::Cpu || !crate::model::device::cuda_compiled();
        if self.precision == Precision::Bf16 && no_gpu {
            bad(
                "precision",
                "Bf16 needs a GPU (on the CPU bf16 products are emulated, slower than F32)".into(),
            );
        }
        for spec in &self.palette.subnets {
            if let Err(e) = spec.parse::<crate::model::SubnetSpec>() {
                bad("palette.subnets", format!("'{spec}': {e:#}"));
            }
        }
        for (field, path) in [
            ("teacher", &self.teacher),
            ("data.train", &self.data.train),
            ("data.dev", &self.data.dev),
            ("data.test", &self.data.test),
        ] {
            if path.starts_with("~") && Self::resolve(path).starts_with("~") {
                bad(
                    field,
                    "starts with ~ but HOME is not set: give an absolute path, or set HOME".into(),
                );
            }
        }
        let w = &self.watchdog;
        if !(w.spike_factor.is_finite() && (w.spike_factor == 0.0 || w.spike_factor > 1.0)) {
            bad(
                "watchdog.spike_factor",
                format!("{} must be 0 (off) or above 1", w.spike_factor),
            );
        }
        if let Some(lm) = &self.lm {
            if lm.init == crate::model::llama::student::StudentInit::Random
                && !lm.train_base_weights
            {
                bad(
                    "lm.init",
                    "a randomly initialised student must train its base weights (train_base_weights: true)".into(),
                );
            }
            if lm.eval_blocks == 0 {
                bad("lm.eval_blocks", "must be at least 1".into());
            }
            if lm.latency_prompt == 0 || lm.latency_new_tokens == 0 {
                bad(
                    "lm.latency_prompt",
                    "prompt and decoded token counts must be positive".into(),
                );
            }
        }
        errors
    }

    /// The device this run computes on, checked against its precision.
    pub fn resolve_device(&self) -> Result<candle_core::Device> {
        let device = self.device.resolve()?;
        crate::model::device::check_precision(&device, self.precision)?;
        Ok(device)
    }

    /// True for a decoder (language-model) run.
    pub fn is_decoder(&self) -> bool {
        self.lm.is_some()
    }

    /// Resolves a path from a preset: as given if it exists, else beside the crate.
    pub fn resolve(path: &Path) -> PathBuf {
        if let Ok(rest) = path.strip_prefix("~") {
            // `~/.cache/…` follows XDG_CACHE_HOME when it is set, as the fetch scripts do.
            if let (Ok(cache), Ok(inner)) =
                (std::env::var("XDG_CACHE_HOME"), rest.strip_prefix(".cache"))
            {
                return PathBuf::from(cache).join(inner);
            }
            if let Ok(home) = std::env::var("HOME") {
                return PathBuf::from(home).join(rest);
            }
        }
        if path.is_absolute() || path.exists() {
            return path.to_path_buf();
        }
        let beside = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path);
        if beside.exists() {
            beside
        } else {
            path.to_path_buf()
        }
    }
}

/// The run's `palette.subnets`, resolved against the teacher: measured beside the space's own
/// subnets (errors name the entry).
pub fn listed_subnets(
    config: &RunConfig,
    teacher: &crate::model::TeacherShape,
) -> Result<Vec<crate::model::SubnetSpec>> {
    config
        .palette
        .subnets
        .iter()
        .map(|text| {
            crate::model::subnet::resolve_spec(Some(text), teacher)
                .with_context(|| format!("palette.subnets: '{text}'"))
        })
        .collect()
}
