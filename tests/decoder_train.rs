//! Decoder MLFS on SmolLM2-135M (fetched by scripts/fetch-smollm2.sh): training lowers the
//! validation loss in both modes, the KV cache decodes like a full recompute, and exported
//! subnets (Hugging Face folder, GGUF f32/f16) reload through our loaders with the run's logits.
//! The references here are the run's own forward passes; the forward itself is checked against
//! Hugging Face transformers in `decoder.rs`.

mod common;

use candle_core::{Device, Tensor};
use mlfs_studio::export::decoder::GgufType;
use mlfs_studio::export::decoder_subnet::ExportFormat;
use mlfs_studio::model::llama::generate::greedy;
use mlfs_studio::model::llama::student::StudentInit;
use mlfs_studio::model::llama::DecoderTeacher;
use mlfs_studio::model::SubnetSpec;
use mlfs_studio::runs::export::export_decoder;
use mlfs_studio::train::config::{DecoderConfig, RunConfig};
use mlfs_studio::train::protocol::TrainEvent;
use mlfs_studio::train::run::Flow;
use mlfs_studio::train::DecoderRun;
use std::path::Path;

/// A 2-layer slice (first and last teacher layer, 2 of 3 KV groups, FFN 1024) trained on short blocks.
const SLICE: &str = "layers=0,29;heads=6;ffn=1024";

fn lm_config(full: bool, steps: usize) -> RunConfig {
    let a = common::assets();
    let mut c = common::small_config([steps, 0, 0], 2, 32);
    c.teacher = common::smollm2_gguf().clone();
    c.data.train = a.join("python-code/train.jsonl");
    c.data.dev = a.join("python-code/valid.jsonl");
    c.stages[0].learning_rate = if full { 1e-3 } else { 5e-3 };
    c.distill.beta = 1e-5;
    c.palette.evaluate_at_end = false;
    c.lm = Some(DecoderConfig {
        train_base_weights: full,
        init: StudentInit::Sliced,
        students: vec![SLICE.into()],
        eval_blocks: 4,
        latency_prompt: 16,
        latency_new_tokens: 4,
        recompute_activations: true,
    });
    c
}

/// Trains a run to the end; returns the trainer and the student's validation losses.
fn train(config: RunConfig, dir: &Path) -> (DecoderRun, Vec<f64>) {
    let mut t = DecoderRun::create(config, dir).unwrap();
    let mut losses = Vec::new();
    let mut sink = |e: TrainEvent| {
        if let TrainEvent::DecoderEval { results, .. } = e {
            losses.extend(
                results
                    .iter()
                    .filter(|r| r.role == "student")
                    .map(|r| r.loss),
            );
        }
    };
    let mut ctl = |_: usize, _: &mut dyn FnMut(TrainEvent)| Flow::Continue;
    assert!(!t.run(&mut ctl, &mut sink).unwrap());
    (t, losses)
}

fn logits(
    net: &mlfs_studio::model::llama::LlamaDecoder,
    spec: &SubnetSpec,
    ids: &[u32],
) -> Vec<f32> {
    let input = Tensor::new(ids, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    net.forward(&input, spec)
        .unwrap()
        .logits
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn full_and_adapter_training_lower_validation_loss_and_exports_reload() {
    let dir = tempfile::tempdir().unwrap();
    // Full fine-tuning of the slice, distilled from the teacher.
    let (full, losses) = train(lm_config(true, 8), &dir.path().join("full"));
    assert_eq!(
        losses.len(),
        2,
        "validation before and after training: {losses:?}"
    );
    assert!(
        losses[1] < losses[0] - 0.5,
        "full training: validation loss {losses:?}"
    );
    assert!(dir.path().join("full/supernet.safetensors").is_file());

    // The trained student exports; each format reloads with the run's logits.
    let reopened = DecoderRun::open_trained(&dir.path().join("full")).unwrap();
    let spec: SubnetSpec = SLICE.parse().unwrap();
    let ids = reopened
        .task
        .net
        .teacher
        .tokenizer
        .encode("def add(a, b):\n    return a + b\n", false, 64)
        .unwrap();
    let ours = logits(reopened.task.net.net(), &spec, &ids);
    assert!(
        max_abs_diff(&ours, &logits(full.task.net.net(), &spec, &ids)) < 1e-4,
        "reopened run differs"
    );

    let hf = dir.path().join("hf");
    export_decoder(&reopened, None, ExportFormat::HfFolder, &hf).unwrap();
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(hf.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["num_hidden_layers"], 2);
    assert_eq!(config["num_attention_heads"], 6);
    assert_eq!(config["num_key_value_heads"], 2);
    assert_eq!(config["head_dim"], 64);
    assert_eq!(config["intermediate_size"], 1024);
    let back = DecoderTeacher::load(&hf).unwrap();
    let dense = SubnetSpec::maxnet(&back.decoder.shape());
    assert_eq!(
        back.tokenizer
            .encode("def add(a, b):\n    return a + b\n", false, 64)
            .unwrap(),
        ids
    );
    let d = max_abs_diff(&ours, &logits(&back.decoder, &dense, &ids));
    assert!(d < 1e-3, "HF folder logits differ by {d}");

    for (kind, tolerance) in [(GgufType::F32, 1e-3), (GgufType::F16, 0.15)] {
        let file = dir.path().join(format!("student-{kind:?}.gguf"));
        export_decoder(&reopened, None, ExportFormat::Gguf(kind), &file).unwrap();
        gguf_header_check(&file, kind);
        let back = DecoderTeacher::load(&file).unwrap();
        assert_eq!(back.decoder.config.head_size(), 64);
        let d = max_abs_diff(&ours, &logits(&back.decoder, &dense, &ids));
        assert!(d < tolerance, "GGUF {kind:?} logits differ by {d}");
        let err = export_decoder(&reopened, None, ExportFormat::Gguf(kind), &file).unwrap_err();
        assert!(format!("{err:#}").contains("already exists"), "{err:#}");
    }

    // MLFS adapters on the frozen slice: the loss falls too and the teacher stays untouched.
    let (adapters, losses) = train(lm_config(false, 8), &dir.path().join("adapters"));
    assert!(
        losses[1] < losses[0] - 0.3,
        "adapter training: validation loss {losses:?}"
    );
    let teacher = DecoderTeacher::load(common::smollm2_gguf()).unwrap();
    let base = |d: &mlfs_studio::model::llama::LlamaDecoder| {
        d.layers[29]
            .gate
            .weight_pre
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    assert_eq!(
        base(&adapters.task.net.teacher.decoder),
        base(&teacher.decoder)
    );
    let before = logits(&teacher.decoder, &spec, &ids);
    assert!(
        max_abs_diff(&before, &logits(adapters.task.net.net(), &spec, &ids)) > 1e-2,
        "adapters had no effect"
    );
}

/// Independent reading of the GGUF header: magic, version, counts, metadata keys, tensor
/// names/types/shapes and aligned data that fits in the file.
fn gguf_header_check(path: &Path, kind: GgufType) {
    let bytes = std::fs::read(path).unwrap();
    let mut at = 0usize;
    let mut take = |n: usize| {
        let s = &bytes[at..at + n];
        at += n;
        s.to_vec()
    };
    let u32_of = |b: Vec<u8>| u32::from_le_bytes(b.try_into().unwrap());
    let u64_of = |b: Vec<u8>| u64::from_le_bytes(b.try_into().unwrap());
    assert_eq!(&take(4), b"GGUF");
    let version = u32_of(take(4));
    assert!(version == 2 || version == 3, "version {version}");
    let n_tensors = u64_of(take(8)) as usize;
    let n_kv = u64_of(take(8)) as usize;
    fn skip_value(take: &mut dyn FnMut(usize) -> Vec<u8>, ty: u32) {
        let size = |t: u32| match t {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            10..=12 => 8,
            _ => 0,
        };
        match ty {
            8 => {
                let n = u64::from_le_bytes(take(8).try_into().unwrap()) as usize;
                take(n);
            }
            9 => {
                let inner = u32::from_le_bytes(take(4).try_into().unwrap());
                let n = u64::from_le_bytes(take(8).try_into().unwrap()) as usize;
                for _ in 0..n {
                    skip_value(take, inner);
                }
            }
            t => {
                assert!(size(t) > 0, "unknown value type {t}");
                take(size(t));
            }
        }
    }
    let mut keys = Vec::new();
    let mut u32_values = std::collections::HashMap::new();
    for _ in 0..n_kv {
        let len = u64_of(take(8)) as usize;
        let key = String::from_utf8(take(len)).unwrap();
        let ty = u32_of(take(4));
        if ty == 4 {
            u32_values.insert(key.clone(), u32_of(take(4)));
        } else {
            skip_value(&mut take, ty);
        }
        keys.push(key);
    }
    for required in [
        "general.architecture",
        "llama.block_count",
        "llama.embedding_length",
        "llama.feed_forward_length",
        "llama.attention.head_count",
        "llama.attention.head_count_kv",
        "llama.attention.layer_norm_rms_epsilon",
        "llama.rope.freq_base",
        "tokenizer.ggml.model",
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.merges",
    ] {
        assert!(
            keys.iter().any(|k| k == required),
            "missing metadata {required}"
        );
    }
    assert_eq!(u32_values["llama.block_count"], 2);
    assert_eq!(u32_values["llama.attention.head_count"], 6);
    assert_eq!(u32_values["llama.attention.head_count_kv"], 2);
    assert_eq!(u32_values["llama.feed_forward_length"], 1024);
    let mut end = 0usize;
    let mut names = Vec::new();
    for _ in 0..n_tensors {
        let len = u64_of(take(8)) as usize;
        let name = String::from_utf8(take(len)).unwrap();
        let dims: Vec<usize> = (0..u32_of(take(4)))
            .map(|_| u64_of(take(8)) as usize)
            .collect();
        let ty = u32_of(take(4));
        let offset = u64_of(take(8)) as usize;
        assert_eq!(offset % 32, 0, "{name}: unaligned");
        let elems: usize = dims.iter().product();
        let width = match ty {
            0 => 4,
            1 => 2,
            other => panic!("{name}: type {other}"),
        };
        if dims.len() == 2 {
            assert_eq!(ty, if kind == GgufType::F16 { 1 } else { 0 }, "{name}");
        }
        if name == "blk.0.attn_q.weight" {
            assert_eq!(dims, vec![576, 384], "ggml order: input width first");
        }
        end = end.max(offset + elems * width);
        names.push(name);
    }
    for n in [
        "token_embd.weight",
        "output_norm.weight",
        "blk.1.ffn_down.weight",
        "blk.1.attn_k.weight",
    ] {
        assert!(names.iter().any(|x| x == n), "missing tensor {n}");
    }
    let data_start = at.div_ceil(32) * 32;
    assert_eq!(
        data_start + end,
        bytes.len(),
        "tensor data does not fill the file"
    );
}

#[test]
fn cached_greedy_decoding_matches_full_recompute() {
    let teacher = DecoderTeacher::load(common::smollm2_gguf()).unwrap();
    let spec: SubnetSpec =
        "layers=0,2,3,5,6,8,9,11,12,14,15,17,18,20,21,23,24,26,27,29;heads=9;ffn=1536"
            .parse()
            .unwrap();
    for spec in [SubnetSpec::maxnet(&teacher.decoder.shape()), spec] {
        let prompt = teacher
            .tokenizer
            .encode("def fibonacci(n):\n", false, 64)
            .unwrap();
        let cached = greedy(&teacher.decoder, &spec, &prompt, 6, None).unwrap();
        let mut seq = prompt.clone();
        for _ in 0..6 {
            let l = logits(&teacher.decoder, &spec, &seq);
            let v = teacher.decoder.config.vocab_size;
            let last = &l[l.len() - v..];
            let arg = last
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0;
            seq.push(arg as u32);
        }
        assert_eq!(cached, seq[prompt.len()..].to_vec());
    }
}

#[test]
fn decoder_run_input_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty-code");
    std::fs::create_dir(&empty).unwrap();
    let mut c = lm_config(true, 1);
    c.data.train = empty.clone();
    let err = format!(
        "{:#}",
        DecoderRun::create(c, &dir.path().join("run"))
            .err()
            .unwrap()
    );
    assert!(
        err.contains("empty-code") && err.contains("no text found"),
        "{err}"
    );

    let mut c = lm_config(false, 1);
    if let Some(lm) = c.lm.as_mut() {
        lm.init = StudentInit::Random;
    }
    let errors = c.validate();
    assert!(errors.iter().any(|e| e.field == "lm.init"), "{errors:?}");

    let mut c = lm_config(true, 1);
    c.teacher = dir.path().join("missing.gguf");
    let err = format!(
        "{:#}",
        DecoderRun::create(c, &dir.path().join("run2"))
            .err()
            .unwrap()
    );
    assert!(
        err.contains("missing.gguf") && err.contains("fetch-smollm2"),
        "{err}"
    );
}

#[test]
fn recomputed_layer_gradients_equal_plain_autograd() {
    use mlfs_studio::mlfs::config::ProjectionKind;
    use mlfs_studio::mlfs::distill::feature_loss;
    use mlfs_studio::mlfs::distill::DistillWeights;
    use mlfs_studio::mlfs::head_loss::{next_token_targets, reference_loss};
    use mlfs_studio::mlfs::projection::{orthonormal, Projections};
    use mlfs_studio::model::llama::student::trainable_student;
    use mlfs_studio::model::param::Param;
    use mlfs_studio::train::decoder::step::{student_gradients, StudentStep, TeacherSignal};
    use mlfs_studio::train::optim::AdamW;
    use rand::SeedableRng;

    let teacher = DecoderTeacher::load(common::smollm2_gguf()).unwrap();
    let spec: SubnetSpec = SLICE.parse().unwrap();
    let (student, params) =
        trainable_student(&teacher.decoder, &spec.layers, StudentInit::Sliced, 3).unwrap();
    let block = teacher
        .tokenizer
        .encode(
            "import os\nfor name in sorted(os.listdir('.')):\n    print(name)\n",
            false,
            24,
        )
        .unwrap();
    let t = block.len();
    let ids = Tensor::new(block.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let targets = next_token_targets(&[block.as_slice()]);
    let maxnet = SubnetSpec::maxnet(&teacher.decoder.shape());
    let (t_hidden, t_last) = teacher
        .decoder
        .forward_hidden(&ids, &maxnet, false, None)
        .unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let projections = Projections {
        vars: (0..30)
            .map(|_| {
                candle_core::Var::from_tensor(&orthonormal(576, 16, &mut rng).unwrap()).unwrap()
            })
            .collect(),
        kind: ProjectionKind::UnitNorm,
    };
    let (alpha, beta, temperature, weight) = (0.7, 1e-3, 2.0, 1.5);
    let weights = DistillWeights {
        alpha,
        beta,
        temperature,
    };
    let opt = AdamW::new(
        params
            .iter()
            .map(|p| Param {
                name: p.name.clone(),
                var: p.var.clone(),
                decay: p.decay,
            })
            .collect(),
        0.0,
    )
    .unwrap();
    let run = |recompute: bool| {
        let mut grads = Vec::new();
        let step = StudentStep {
            net: &student,
            spec: &spec,
            ids: &ids,
            targets: &targets,
            teacher: Some(TeacherSignal {
                hidden: &t_hidden,
                last: &t_last,
                head: teacher.decoder.head(),
            }),
            projections: &projections,
            weights,
            weight,
            train_head: true,
            recompute,
        };
        let laps = mlfs_studio::train::laps::Laps::from_env(&Device::Cpu);
        let loss = student_gradients(&step, &opt, &mut grads, &laps).unwrap();
        (loss, grads)
    };
    let variants = [run(true), run(false)];
    let loss = variants[0].0;

    // The same loss through candle's autograd on the whole graph and full logits.
    let (hidden, last) = student.forward_hidden(&ids, &spec, true, None).unwrap();
    let scored = t - 1;
    let teacher_logits = t_last
        .narrow(0, 0, scored)
        .unwrap()
        .matmul(&teacher.decoder.head().t().unwrap())
        .unwrap();
    let head_part = reference_loss(
        &last.narrow(0, 0, scored).unwrap(),
        student.head(),
        &block[1..],
        &teacher_logits,
        weights,
    )
    .unwrap();
    let ones = Tensor::ones((1, t), candle_core::DType::F32, &Device::Cpu).unwrap();
    let mut total = head_part;
    for (i, &l) in spec.layers.iter().enumerate() {
        let f = feature_loss(
            &hidden[i + 1],
            &t_hidden[l + 1],
            projections.vars[l].as_tensor(),
            Some(&ones),
        )
        .unwrap();
        total = (total + (f * (alpha * beta)).unwrap()).unwrap();
    }
    let want = total.to_scalar::<f32>().unwrap() as f64;
    assert!(
        (loss - want).abs() < 1e-3 * want.abs().max(1.0),
        "loss {loss} vs {want}"
    );
    assert!((variants[1].0 - want).abs() < 1e-3 * want.abs().max(1.0));
    let reference = (total * weight).unwrap().backward().unwrap();
    let mut compared = 0;
    // Gradients agree within 2e-3 of the reference's largest entry.
    let close = |ours: &Tensor, want: &Tensor, what: &str| {
        let scale = want
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            .max(1e-6);
        let diff = mlfs_studio::util::max_abs_diff(ours, want).unwrap();
        assert!(
            diff <= 2e-3 * scale,
            "{what}: max diff {diff} (scale {scale})"
        );
    };
    for (p, (g, g_whole)) in params.iter().zip(variants[0].1.iter().zip(&variants[1].1)) {
        if let (Some(a), Some(b)) = (g, g_whole) {
            close(
                a,
                b,
                &format!("{}: recomputed vs kept layer graphs", p.name),
            );
        }
        let want = reference.get(p.var.as_tensor());
        match (g, want) {
            (Some(ours), Some(want)) => {
                close(ours, want, &p.name);
                compared += 1;
            }
            (None, None) => {}
            (ours, want) => panic!(
                "{}: gradient present ours={} reference={}",
                p.name,
                ours.is_some(),
                want.is_some()
            ),
        }
    }
    assert!(compared >= 2 * 9 + 2, "compared {compared} tensors");
}

#[test]
fn sampled_space_trains_sandwich_students_through_all_stages() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = lm_config(false, 1);
    c.max_seq_len = 16;
    c.stages = common::small_config([1, 1, 1], 2, 16).stages;
    c.random_subnets = 1;
    c.space.depths = vec![2, 30];
    c.space.heads = vec![3, 9];
    c.space.ffn = vec![512, 1536];
    if let Some(lm) = c.lm.as_mut() {
        lm.students.clear();
        lm.eval_blocks = 2;
    }
    let mut t = DecoderRun::create(c, dir.path()).unwrap();
    let mut steps: Vec<Vec<String>> = Vec::new();
    let mut roles = Vec::new();
    let mut sink = |e: TrainEvent| match e {
        TrainEvent::Step { losses, .. } => {
            steps.push(losses.iter().map(|l| l.subnet.clone()).collect())
        }
        TrainEvent::DecoderEval { results, .. } => {
            roles.extend(results.into_iter().map(|r| r.role))
        }
        _ => {}
    };
    let mut ctl = |_: usize, _: &mut dyn FnMut(TrainEvent)| Flow::Continue;
    assert!(!t.run(&mut ctl, &mut sink).unwrap());
    assert_eq!(steps.len(), 3);
    let maxnet = t.task.space.maxnet().to_string();
    // Stage 0 trains the maxnet alone; later stages add the stage's minnet and a random subnet.
    assert_eq!(steps[0], vec![maxnet.clone()]);
    assert_eq!(steps[2][0], maxnet);
    assert_eq!(steps[2][1], t.task.space.minnet(2).to_string());
    assert!(steps[2].len() >= 2);
    for r in ["teacher", "maxnet", "minnet"] {
        assert!(roles.iter().any(|x| x == r), "{r} missing from {roles:?}");
    }
    // The projections train from stage 1 on and stay unit-norm.
    let p = t.task.net.projections.vars[29].as_tensor();
    let norms = p.sqr().unwrap().sum(0).unwrap().to_vec1::<f32>().unwrap();
    assert!(norms.iter().all(|n| (n - 1.0).abs() < 1e-4), "{norms:?}");
    assert!(dir.path().join("supernet.safetensors").is_file());
}

#[test]
fn code_presets_describe_the_four_comparison_runs() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("presets");
    // The 20-layer slice of the golden fixture: every third layer dropped, full width.
    let slice: Vec<usize> = (0..30).filter(|l| l % 3 != 1).collect();
    for (name, full, init, alpha) in [
        ("code-slice20-mlfs", false, StudentInit::Sliced, 0.9),
        ("code-slice20-alpha0", true, StudentInit::Sliced, 0.0),
        ("code-slice20-full", true, StudentInit::Sliced, 0.9),
        ("code-random20", true, StudentInit::Random, 0.9),
    ] {
        let c = RunConfig::load(&dir.join(format!("{name}.ron"))).unwrap();
        let lm =
            c.lm.as_ref()
                .unwrap_or_else(|| panic!("{name}: no lm section"));
        assert_eq!(
            (lm.train_base_weights, lm.init, c.distill.alpha),
            (full, init, alpha),
            "{name}"
        );
        assert_eq!(
            (c.batch_size, c.max_seq_len, lm.eval_blocks),
            (8, 128, 32),
            "{name}"
        );
        assert_eq!(
            c.stages[0].budget,
            mlfs_studio::train::config::Budget::Steps(100),
            "{name}"
        );
        assert!(!c.stages[1].enabled && !c.stages[2].enabled, "{name}");
        let spec: SubnetSpec = lm.students[0].parse().unwrap();
        assert_eq!(
            (
                spec.layers.clone(),
                spec.heads.uniform(),
                spec.ffn.uniform()
            ),
            (slice.clone(), Some(9), Some(1536)),
            "{name}"
        );
    }
}
