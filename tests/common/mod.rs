//! Helpers shared by the integration tests: the shipped assets and small run configurations.

#![allow(dead_code)]

use mlfs_studio::train::config::{Budget, RunConfig, StageConfig};
use std::path::PathBuf;

// The studio binary's allocator (src/main.rs): with glibc's malloc the tests' training steps
// spent their time handing large buffers back to the kernel and faulting them in again.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The crate's `assets/` folder.
pub fn assets() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets")
}

/// A run on the shipped teacher and data with `steps` optimizer steps per stage (0 disables one).
pub fn small_config(steps: [usize; 3], batch_size: usize, max_seq_len: usize) -> RunConfig {
    let a = assets();
    let mut c = RunConfig {
        teacher: a.join("minilm-l3"),
        batch_size,
        max_seq_len,
        eval_every: 0,
        checkpoint_every: 0,
        rewire_batches: 2,
        ..RunConfig::default()
    };
    c.data.train = a.join("sentiment/train.jsonl");
    c.data.dev = a.join("sentiment/dev.jsonl");
    c.data.test = a.join("sentiment/test.jsonl");
    c.stages = steps
        .iter()
        .map(|&n| StageConfig {
            enabled: n > 0,
            budget: Budget::Steps(n.max(1)),
            learning_rate: 3e-3,
            warmup_ratio: 0.1,
        })
        .collect();
    c
}

/// A command running the crate's binary.
pub fn cli() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_mlfs-studio"))
}

/// Runs `cmd`, asserts it succeeded (showing its stderr otherwise) and returns its stdout.
pub fn stdout_of(cmd: &mut std::process::Command) -> Vec<u8> {
    let output = cmd.output().expect("run mlfs-studio");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// The path a repo fetch script prints (it downloads once and caches under the user's cache).
fn fetched(script: &str) -> PathBuf {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(script);
    let out = std::process::Command::new(&script)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// The SmolLM2 teacher GGUF, fetched once by the repo's script (cached under the user's cache).
pub fn smollm2_gguf() -> &'static PathBuf {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| fetched("fetch-smollm2.sh"))
}

/// The all-MiniLM-L6-v2 folder as published, fetched once by the repo's script.
pub fn minilm_l6_dir() -> &'static PathBuf {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| fetched("fetch-minilm-l6.sh"))
}

/// (global step, [(subnet, loss)]) of every step event, in order.
pub fn step_losses(
    events: &[mlfs_studio::train::protocol::TrainEvent],
) -> Vec<(usize, Vec<(String, f64)>)> {
    use mlfs_studio::train::protocol::TrainEvent;
    events
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Step {
                global_step,
                losses,
                ..
            } => Some((
                *global_step,
                losses.iter().map(|l| (l.subnet.clone(), l.loss)).collect(),
            )),
            _ => None,
        })
        .collect()
}

/// Creates a classifier run from `config` in `dir` and trains it until global step `step`,
/// where it stops (with its checkpoint), as a user pressing Stop would.
pub fn train_until(config: RunConfig, dir: &std::path::Path, step: usize) {
    use mlfs_studio::train::protocol::TrainEvent;
    use mlfs_studio::train::run::Flow;
    let mut run = mlfs_studio::train::ClassifierRun::create(config, dir).unwrap();
    let mut ctl = |at: usize, _: &mut dyn FnMut(TrainEvent)| {
        if at == step {
            Flow::Stop
        } else {
            Flow::Continue
        }
    };
    assert!(
        run.run(&mut ctl, &mut |_| {}).unwrap(),
        "the run ended before step {step}"
    );
}

/// A decoder run on SmolLM2-135M (scripts/fetch-smollm2.sh) sampling a small space with the
/// first-and-last layer rule: depth 2 (layers 0 and 29) or 30, 6 or 9 query heads, the given FFN
/// widths; MLFS adapters, `steps` per stage, batches of 2 × 32 tokens, short latency probes.
pub fn decoder_space_config(steps: [usize; 3], ffn: Vec<usize>, eval_blocks: usize) -> RunConfig {
    use mlfs_studio::mlfs::config::{LayerRule, SpaceConfig};
    use mlfs_studio::model::llama::student::StudentInit;
    use mlfs_studio::train::config::DecoderConfig;
    let a = assets();
    let mut c = small_config(steps, 2, 32);
    c.teacher = smollm2_gguf().clone();
    c.data.train = a.join("python-code/train.jsonl");
    c.data.dev = a.join("python-code/valid.jsonl");
    c.distill.beta = 1e-5;
    c.space = SpaceConfig {
        depths: vec![2, 30],
        heads: vec![6, 9],
        ffn,
        hidden: vec![],
        layers: LayerRule::FirstAndLast,
        ..SpaceConfig::default()
    };
    c.lm = Some(DecoderConfig {
        train_base_weights: false,
        init: StudentInit::Sliced,
        students: vec![],
        eval_blocks,
        latency_prompt: 16,
        latency_new_tokens: 2,
        recompute_activations: true,
    });
    c
}

/// Copies a folder tree (a fixture run) to `to`.
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The first text in a studio window (a label's text or a widget's name) containing `needle`.
pub fn text_with(
    h: &egui_kittest::Harness<'static, mlfs_studio::ui::app::StudioApp>,
    needle: &str,
) -> Option<String> {
    use egui_kittest::kittest::{NodeT, Queryable};
    h.query_all_by_label_contains("")
        .flat_map(|n| {
            let node = n.accesskit_node();
            [node.label(), node.value()]
        })
        .flatten()
        .find(|t| t.contains(needle))
}

/// (global step, [(role, dev accuracy)]) of every dev evaluation, in order.
pub fn dev_results(
    events: &[mlfs_studio::train::protocol::TrainEvent],
) -> Vec<(usize, Vec<(String, f64)>)> {
    events
        .iter()
        .filter_map(|e| match e {
            mlfs_studio::train::protocol::TrainEvent::DevEval {
                global_step,
                results,
                ..
            } => Some((
                *global_step,
                results
                    .iter()
                    .map(|r| (r.role.clone(), r.accuracy))
                    .collect(),
            )),
            _ => None,
        })
        .collect()
}

/// The events of a run's `metrics.jsonl` as JSON with what differs between two runs of the same
/// numbers taken out: timings, memory readings and folder names.
pub fn metrics_without_timings(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            if let Some(o) = v.as_object_mut() {
                for k in ["seconds", "devices_mb", "run_dir", "path", "message"] {
                    o.remove(k);
                }
            }
            v
        })
        .collect()
}
