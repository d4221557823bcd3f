//! Command-line interface: the headless client of the engine.

pub mod bench;
pub mod bench_decoder;
pub mod eval;
pub mod export;
pub mod forward;
pub mod train;

use anyhow::Result;
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
    /// Export one subnet of a trained run, adapters merged, as a standalone model.
    ///
    /// Classifier runs write a BERT folder. Decoder runs write a Hugging Face Llama folder
    /// (`--format hf`) or a llama.cpp GGUF file (`--format gguf-f16` / `gguf-f32`).
    Export {
        #[arg(long)]
        run: PathBuf,
        /// Subnet to export (required for classifier runs; decoder runs default to their student).
        #[arg(long, help = SPEC_HELP)]
        subnet: Option<String>,
        /// Target folder (new, its parent must exist, or empty), or the new .gguf file.
        #[arg(long)]
        out: PathBuf,
        /// Decoder runs: hf, gguf-f16 or gguf-f32.
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
    /// Validation loss, perplexity and next-token top-1 accuracy of a decoder subnet on code.
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
    /// Median training-step times on the shipped teacher (batch 32, length 64), or of a decoder
    /// preset (`--preset presets/code-slice20-full.ron`) with its peak memory.
    Bench {
        /// Timed steps per stage.
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// A decoder preset to time instead of the encoder.
        #[arg(long)]
        preset: Option<PathBuf>,
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

/// Parses arguments and runs the chosen command.
pub fn main_entry() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        None => crate::ui::run_studio(cli.run),
        Some(Command::Forward {
            model,
            subnet,
            texts_file,
        }) => {
            let json = forward::forward_json(&model, subnet.as_deref(), &texts_file)?;
            println!("{json}");
            Ok(())
        }
        Some(Command::Train {
            preset,
            out,
            resume,
        }) => train::train(preset.as_deref(), out.as_deref(), resume.as_deref()),
        Some(Command::Eval { run, subnets }) => eval::eval(&run, subnets.as_deref()),
        Some(Command::Export {
            run,
            subnet,
            out,
            format,
        }) => export::export(&run, subnet.as_deref(), &out, &format),
        Some(Command::Predict { model, texts_file }) => export::predict(&model, &texts_file),
        Some(Command::Bench { steps, preset }) => match preset {
            Some(p) => bench_decoder::bench_decoder(&p, steps),
            None => bench::bench(steps),
        },
        Some(Command::DecoderEval {
            model,
            subnet,
            data,
            block,
            blocks,
        }) => {
            let teacher = crate::model::llama::DecoderTeacher::load(&model)?;
            let spec =
                crate::model::subnet::resolve_spec(subnet.as_deref(), &teacher.decoder.shape())?;
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
            println!(
                "{}",
                serde_json::json!({ "subnet": spec.to_string(), "blocks": chosen.len(), "block": block, "metrics": m })
            );
            Ok(())
        }
    }
}
