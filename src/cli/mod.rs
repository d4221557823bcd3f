//! Command-line interface: the headless client of the engine, one file per subcommand.

pub mod bench;
pub mod bench_decoder;
pub mod eval;
pub mod export;
pub mod forward;
pub mod out;
pub mod random_llama;
pub mod search;
pub mod signals;
pub mod train;

use crate::model::device::{DeviceChoice, Precision};
use crate::train::run::Placement;
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

const SPEC_HELP: &str = "Subnet spec: `layers=0,2;heads=6;ffn=768[;hidden=256]` keeps teacher \
layers 0 and 2, the first 6 attention heads and the first 768 FFN neurons of each kept layer, \
and optionally the first 256 hidden units (a multiple of the head size). Default: the full teacher.";

/// MLFS Studio: turn one pretrained transformer into a palette of smaller models.
#[derive(Parser, Debug)]
#[command(name = "mlfs-studio", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Open the studio showing this run folder (its curves and palette).
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// Where to compute: auto (the first NVIDIA GPU if this binary has CUDA and one is present,
    /// else the CPU), cpu, cuda or cuda:N. Overrides the preset's or the run's `device`.
    #[arg(long, global = true)]
    pub device: Option<String>,
    /// Frozen weights and matrix-product inputs in f32 or bf16 (bf16 needs a GPU).
    #[arg(long, global = true)]
    pub precision: Option<String>,
}

impl Cli {
    /// The device and precision asked for on the command line (none: the run's own).
    pub fn placement(&self) -> Result<Placement> {
        let device = self
            .device
            .as_deref()
            .map(DeviceChoice::parse)
            .transpose()?;
        let precision = match self.precision.as_deref() {
            None => None,
            Some("f32") => Some(Precision::F32),
            Some("bf16") => Some(Precision::Bf16),
            Some(other) => anyhow::bail!("unknown precision '{other}' (f32 or bf16)"),
        };
        Ok(Placement { device, precision })
    }
}

/// The device of a command that has no run configuration: the one asked for, else `auto`.
pub fn device_of(placement: Placement) -> Result<candle_core::Device> {
    let device = placement.device.unwrap_or_default().resolve()?;
    let precision = placement.precision.unwrap_or_default();
    crate::model::device::check_precision(&device, precision)?;
    Ok(device)
}

/// The subcommands; none opens the studio window.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a subnet of a model on texts and print its outputs as JSON.
    ///
    /// Encoders print input_ids, attention_mask and last_hidden_state (batch padded to its
    /// longest text); decoders print input_ids (no special tokens), last_hidden_state (after the
    /// final norm) and logits_top10 ([[id, logit], …] per position, descending).
    Forward {
        /// A Hugging Face BERT or Llama folder (config.json, model.safetensors, tokenizer.json), or a Llama GGUF file.
        #[arg(long)]
        model: PathBuf,
        #[arg(long, help = SPEC_HELP)]
        subnet: Option<String>,
        /// One text per line, or JSONL with one {"text": …} per line when the name ends in .jsonl (texts may span lines).
        #[arg(long)]
        texts_file: PathBuf,
    },
    /// Train a supernet with MLFS from a preset, or resume a stopped run.
    Train {
        /// Run configuration (RON), e.g. presets/sentiment-quick.ron.
        #[arg(long, conflicts_with = "resume")]
        preset: Option<PathBuf>,
        /// Folder for the run (config, metrics.jsonl, checkpoints, trained supernet).
        #[arg(long, conflicts_with = "resume")]
        out: Option<PathBuf>,
        /// Continue the run in this folder from its latest complete checkpoint.
        #[arg(long)]
        resume: Option<PathBuf>,
        /// With --resume: train the run again from its first step when it has no checkpoint.
        #[arg(long, requires = "resume")]
        restart: bool,
        /// With --resume: continue although the data files changed since the run started.
        #[arg(long, requires = "resume")]
        allow_changed_data: bool,
        /// Train on these GPUs, data parallel, one process per GPU (e.g. --gpus 0,1,2,3);
        /// checkpoints do not depend on the count: resume on any number.
        #[arg(long, value_delimiter = ',', num_args = 1..)]
        gpus: Option<Vec<usize>>,
        /// Train as this many processes on the CPU, data parallel (the multi-GPU path without
        /// GPUs: for testing a launcher or a cluster's setup).
        #[arg(long, conflicts_with = "gpus")]
        cpu_ranks: Option<usize>,
    },
    /// Measure the palette of a trained run (accuracy, size, latency, Pareto fronts) into palette.csv.
    Eval {
        /// Run folder written by `train`.
        #[arg(long)]
        run: PathBuf,
        /// Comma-separated subnet specs (default: the whole search space).
        #[arg(long)]
        subnets: Option<String>,
    },
    /// Find the best subnet of a trained run under a latency, parameter or size budget.
    ///
    /// NSGA-II over per-layer subnets on a quality estimate (a fixed subset of the dev split)
    /// and the latency table of this machine, every uniform subnet in the first population;
    /// the top candidates and the best uniform ones are then measured as palette rows. Writes
    /// search.csv, search.json and search-state.json (a stopped search resumes).
    Search {
        #[arg(long)]
        run: PathBuf,
        /// latency_ms=2.0, params_m=10 or size_mb=40.
        #[arg(long)]
        budget: String,
        /// Candidates estimated, the first population included.
        #[arg(long, default_value_t = 300)]
        evaluations: usize,
        /// Searched candidates measured at the end.
        #[arg(long, default_value_t = 8)]
        top_k: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// A latency-table.csv timed elsewhere (e.g. on the target device).
        #[arg(long)]
        latency_table: Option<PathBuf>,
        /// Stop the search after this many minutes (the measurement of its winners apart).
        #[arg(long)]
        minutes: Option<f64>,
    },
    /// Time each per-layer choice of a trained run on this machine into RUN/latency-table.csv.
    LatencyTable {
        #[arg(long)]
        run: PathBuf,
    },
    /// Export one subnet of a trained run, adapters merged, as a standalone model.
    ///
    /// Classifier runs write a BERT folder (`--format hf`) or an ONNX model (`--format onnx`:
    /// model.onnx, opset 17). Decoder runs write a Hugging Face Llama folder (`--format hf`) or
    /// a llama.cpp GGUF file (`--format gguf-f16` / `gguf-f32`).
    Export {
        #[arg(long)]
        run: PathBuf,
        /// Subnet to export (required for classifier runs; decoder runs default to their student).
        #[arg(long, help = SPEC_HELP)]
        subnet: Option<String>,
        /// Target folder (new, its parent must exist, or empty), or the new .gguf file.
        #[arg(long)]
        out: PathBuf,
        /// Classifier runs: hf or onnx. Decoder runs: hf, gguf-f16 or gguf-f32.
        #[arg(long, default_value = "hf")]
        format: String,
    },
    /// Classify texts with an exported subnet: one JSON line per text with label and probabilities.
    Predict {
        /// Folder written by `export`.
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        texts_file: PathBuf,
    },
    /// Batch-1 latency of an exported classifier folder: one JSON line (median and p90, ms).
    ///
    /// The input is the palette's probe: `--seq-len` token ids, all attended; warm-up runs first.
    Latency {
        /// Folder written by `export --format hf`.
        #[arg(long)]
        model: PathBuf,
        /// Tokens in the probe input.
        #[arg(long, default_value_t = 32)]
        seq_len: usize,
        /// Timed runs after 10 warm-up runs.
        #[arg(long, default_value_t = 50)]
        runs: usize,
    },
    /// Validation loss, perplexity and next-token top-1 accuracy of a decoder subnet on code.
    #[command(name = "lm-eval", alias = "decoder-eval")]
    DecoderEval {
        /// A Llama GGUF file or Hugging Face Llama folder.
        #[arg(long)]
        model: PathBuf,
        #[arg(long, help = SPEC_HELP)]
        subnet: Option<String>,
        /// JSONL with a "text" field, or a folder of text files.
        #[arg(long, default_value = "assets/python-code/valid.jsonl")]
        data: PathBuf,
        /// Tokens per block.
        #[arg(long, default_value_t = 128)]
        block: usize,
        /// Blocks scored (the first ones of the corpus).
        #[arg(long, default_value_t = 32)]
        blocks: usize,
    },
    /// Draw the Pareto fronts of one or more runs' palettes into a PNG or SVG file
    Figure {
        /// A run folder with a palette.csv, or a decoder run's with an lm-palette.csv (repeat to
        /// compare runs; each is named by its folder)
        #[arg(long = "run", required = true)]
        runs: Vec<PathBuf>,
        /// The x axis: params, size or latency
        #[arg(long, default_value = "params")]
        cost: String,
        /// The figure: .png or .svg
        #[arg(long)]
        out: PathBuf,
        /// The figure's title
        #[arg(long, default_value = "Pareto fronts")]
        title: String,
    },
    /// Write a Llama teacher of a named shape with random weights (for timing runs).
    RandomLlama {
        /// smollm2-135m or smollm2-1.7b.
        #[arg(long)]
        shape: String,
        /// The tokenizer.json to ship with it.
        #[arg(long)]
        tokenizer: PathBuf,
        /// New folder for config.json, model.safetensors and tokenizer.json.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Median training-step times on the shipped teacher (batch 32, length 64), or of a decoder
    /// preset (`--preset presets/code-slice20-full.ron`) with its peak memory.
    Bench {
        /// Timed steps per stage.
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// A decoder preset to time instead of the encoder.
        #[arg(long)]
        preset: Option<PathBuf>,
        /// A trained run: print its latency table's predictions beside measured latencies of
        /// a few of its subnets instead.
        #[arg(long, conflicts_with = "preset")]
        run: Option<PathBuf>,
    },
}

/// Folder of the shipped assets: `./assets` if present, else the one beside the crate.
pub fn assets_dir() -> PathBuf {
    let local = PathBuf::from("assets");
    if local.join("minilm-l3").is_dir() {
        return local;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets")
}

/// What `main` does after the arguments are read: the studio window, or nothing more (a
/// command ran). The window opens from `main`, so the command line never imports the studio.
pub enum Next {
    Studio(Option<PathBuf>),
    Done,
}

/// Parses arguments and runs the chosen command (or says to open the studio).
pub fn main_entry() -> Result<Next> {
    let cli = Cli::parse();
    let placement = cli.placement()?;
    let (cli_device, cli_precision) = (cli.device.clone(), cli.precision.clone());
    let done: Result<()> = match cli.command {
        None => return Ok(Next::Studio(cli.run)),
        Some(Command::Forward {
            model,
            subnet,
            texts_file,
        }) => {
            let device = device_of(placement)?;
            let json = forward::forward_json(&model, subnet.as_deref(), &texts_file, &device)?;
            crate::say!("{json}");
            Ok(())
        }
        Some(Command::Train {
            preset,
            out,
            resume,
            restart,
            allow_changed_data,
            gpus,
            cpu_ranks,
        }) if gpus.is_some() || cpu_ranks.is_some() => {
            if cli_device.is_some() {
                anyhow::bail!(
                    "--gpus and --cpu-ranks say where each rank computes: leave out --device"
                );
            }
            let ranks = match (gpus, cpu_ranks) {
                (Some(g), _) => crate::runs::launch::Ranks::Gpus(g),
                (None, n) => crate::runs::launch::Ranks::Cpu(n.unwrap_or(1)),
            };
            let mut args = Vec::new();
            let path = |p: &std::path::Path| p.display().to_string();
            if let Some(p) = &preset {
                args.extend(["--preset".to_string(), path(p)]);
            }
            if let Some(o) = &out {
                args.extend(["--out".to_string(), path(o)]);
            }
            if let Some(r) = &resume {
                args.extend(["--resume".to_string(), path(r)]);
            }
            if restart {
                args.push("--restart".into());
            }
            if allow_changed_data {
                args.push("--allow-changed-data".into());
            }
            if let Some(p) = &cli_precision {
                args.extend(["--precision".to_string(), p.clone()]);
            }
            let run_dir = resume
                .or(out)
                .context("give --preset FILE --out RUN_DIR for a new run, or --resume RUN_DIR")?;
            crate::runs::launch::launch(&ranks, &args, &run_dir)
        }
        Some(Command::Train {
            preset,
            out,
            resume,
            restart,
            allow_changed_data,
            ..
        }) => train::train(
            preset.as_deref(),
            out.as_deref(),
            resume.as_deref(),
            crate::train::run::ResumeOptions {
                restart,
                allow_changed_data,
            },
            placement,
        ),
        Some(Command::Eval { run, subnets }) => eval::eval(&run, subnets.as_deref(), placement),
        Some(Command::Search {
            run,
            budget,
            evaluations,
            top_k,
            seed,
            latency_table,
            minutes,
        }) => {
            let mut options =
                crate::search::driver::SearchOptions::new(search::parse_budget(&budget)?);
            options.evaluations = evaluations;
            options.top_k = top_k;
            options.seed = seed;
            options.latency_table = latency_table;
            options.time_limit = minutes
                .filter(|m| m.is_finite() && *m > 0.0)
                .map(|m| std::time::Duration::from_secs_f64(m * 60.0));
            search::search(&run, options, placement)
        }
        Some(Command::LatencyTable { run }) => search::latency_table(&run, placement),
        Some(Command::Export {
            run,
            subnet,
            out,
            format,
        }) => export::export(&run, subnet.as_deref(), &out, &format, placement),
        Some(Command::Predict { model, texts_file }) => {
            export::predict(&model, &texts_file, &device_of(placement)?)
        }
        Some(Command::Latency {
            model,
            seq_len,
            runs,
        }) => export::latency(&model, seq_len, runs, &device_of(placement)?),
        Some(Command::Figure {
            runs,
            cost,
            out,
            title,
        }) => figure(&runs, &cost, &out, &title),
        Some(Command::RandomLlama {
            shape,
            tokenizer,
            out,
            seed,
        }) => random_llama::write_random_llama(&shape, &tokenizer, &out, seed),
        Some(Command::Bench { steps, preset, run }) => match (preset, run) {
            (_, Some(r)) => search::bench_table(&r, placement),
            (Some(p), None) => bench_decoder::bench_decoder(&p, steps, placement),
            (None, None) => bench::bench(steps, placement),
        },
        Some(Command::DecoderEval {
            model,
            subnet,
            data,
            block,
            blocks,
        }) => {
            let device = device_of(placement)?;
            let teacher = crate::model::llama::DecoderTeacher::load_on(&model, &device)?;
            let spec = crate::model::subnet::resolve_spec_in(
                subnet.as_deref(),
                &teacher.decoder.shape(),
                teacher.decoder.config.full_spec(),
            )?;
            let texts =
                crate::train::data::read_corpus(&crate::train::config::RunConfig::resolve(&data))?;
            let eos = teacher.decoder.config.eos_token_id;
            let all =
                crate::train::data::token_blocks(&texts, &teacher.tokenizer, block.max(2), eos)?;
            let chosen = &all[..blocks.clamp(1, all.len())];
            let m = crate::train::decoder::metrics::evaluate_blocks(
                &teacher.decoder,
                &spec,
                true,
                chosen,
                8,
            )?;
            crate::say!(
                "{}",
                serde_json::json!({ "subnet": spec.to_string(), "blocks": chosen.len(), "block": block, "metrics": m })
            );
            Ok(())
        }
    };
    done.map(|_| Next::Done)
}

/// Prints what loading tolerated to stderr, one `warning:` line each (stdout stays data).
pub(crate) fn print_warnings(warnings: &[String]) {
    for warning in warnings {
        crate::note!("warning: {warning}");
    }
}

/// `figure`: the runs' palettes, each named by its folder, drawn into one file: classifier runs
/// (palette.csv, dev accuracy) or decoder runs (lm-palette.csv, validation loss, the first
/// run's teacher as the reference line), as the studio's chart export draws them.
fn figure(runs: &[PathBuf], cost: &str, out: &std::path::Path, title: &str) -> Result<()> {
    use crate::eval::figure::{pareto_figure, FigureCost, FigureMarks, FigureSeries};
    let cost = FigureCost::parse(cost)?;
    let name_of = |dir: &PathBuf| {
        dir.file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| dir.display().to_string())
    };
    let decoder = |dir: &PathBuf| dir.join("lm-palette.csv").is_file();
    if runs.iter().any(decoder) {
        if let Some(other) = runs.iter().find(|d| !decoder(d)) {
            anyhow::bail!(
                "{}: no lm-palette.csv: a figure compares decoder runs with decoder runs",
                other.display()
            );
        }
        let palettes = runs
            .iter()
            .map(|dir| {
                let rows = crate::eval::decoder::read_csv(&dir.join("lm-palette.csv"))?;
                Ok((name_of(dir), rows))
            })
            .collect::<Result<Vec<_>>>()?;
        let teacher = palettes[0].1.iter().find(|e| e.role == "teacher");
        let reference = teacher.map(|t| ("teacher", t.val_loss));
        // The teacher is a reference line, not a point on any front.
        let subnets: Vec<(String, Vec<_>)> = palettes
            .iter()
            .map(|(name, rows)| {
                let rows = rows.iter().filter(|e| e.role != "teacher").cloned();
                (name.clone(), rows.collect())
            })
            .collect();
        let series: Vec<FigureSeries<'_, _>> = subnets
            .iter()
            .map(|(name, entries)| FigureSeries { name, entries })
            .collect();
        let marks = FigureMarks {
            reference,
            ..Default::default()
        };
        pareto_figure(out, &series, cost, title, marks)?;
    } else {
        let palettes = runs
            .iter()
            .map(|dir| {
                let rows = crate::eval::palette::read_csv(&dir.join("palette.csv"))?;
                Ok((name_of(dir), rows))
            })
            .collect::<Result<Vec<_>>>()?;
        let series: Vec<FigureSeries<'_>> = palettes
            .iter()
            .map(|(name, entries)| FigureSeries { name, entries })
            .collect();
        pareto_figure(out, &series, cost, title, Default::default())?;
    }
    crate::say!("wrote {}", out.display());
    Ok(())
}
