//! Elastic BERT encoder against Hugging Face, and the clear errors of bad model folders.
//!
//! `fixtures/minilm-l3-forward.json` was produced by Hugging Face transformers' `BertModel`
//! (float32 upcast of the shipped float16 weights) with `output_hidden_states=True`; the subnet
//! there keeps layers 0 and 2, the first 6 heads (Q/K/V rows and attention-output columns of
//! those heads) and the first 768 FFN neurons of each kept layer (copied from ../shared/fixtures).

mod common;

use candle_core::{Device, Tensor};
use mlfs_studio::model::{EncoderTeacher, SubnetSpec, TokenBatch};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
struct Fixture {
    texts: Vec<String>,
    input_ids: Vec<Vec<u32>>,
    attention_mask: Vec<Vec<u32>>,
    teacher: HiddenStates,
    subnet: SubnetFixture,
}

#[derive(Deserialize)]
struct HiddenStates {
    hidden_states: Vec<Vec<Vec<Vec<f32>>>>,
}

#[derive(Deserialize)]
struct SubnetFixture {
    layers: Vec<usize>,
    heads: usize,
    ffn: usize,
    hidden_states: Vec<Vec<Vec<Vec<f32>>>>,
}

fn teacher_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/minilm-l3")
}

fn fixture() -> Fixture {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/minilm-l3-forward.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn max_abs_diff(ours: &Tensor, reference: &[Vec<Vec<f32>>]) -> f32 {
    let ours = ours.to_vec3::<f32>().unwrap();
    assert_eq!(ours.len(), reference.len());
    let mut worst = 0f32;
    for (a, b) in ours.iter().zip(reference) {
        assert_eq!(a.len(), b.len(), "sequence length");
        for (ra, rb) in a.iter().zip(b) {
            assert_eq!(ra.len(), rb.len(), "hidden width");
            for (x, y) in ra.iter().zip(rb) {
                worst = worst.max((x - y).abs());
            }
        }
    }
    worst
}

fn ids_and_mask(fx: &Fixture) -> (Tensor, Tensor) {
    let b = fx.input_ids.len();
    let t = fx.input_ids[0].len();
    (
        Tensor::from_vec(fx.input_ids.concat(), (b, t), &Device::Cpu).unwrap(),
        Tensor::from_vec(fx.attention_mask.concat(), (b, t), &Device::Cpu).unwrap(),
    )
}

#[test]
fn tokenizer_matches_hugging_face_ids() {
    let fx = fixture();
    let teacher = EncoderTeacher::load(&teacher_dir()).unwrap();
    let batch: TokenBatch = teacher.tokenizer.encode_batch(&fx.texts, 512).unwrap();
    assert_eq!(batch.input_ids, fx.input_ids);
    assert_eq!(batch.attention_mask, fx.attention_mask);
}

#[test]
fn teacher_and_subnet_hidden_states_match_hugging_face() {
    let fx = fixture();
    let teacher = EncoderTeacher::load(&teacher_dir()).unwrap();
    let (ids, mask) = ids_and_mask(&fx);
    let full = SubnetSpec::maxnet(&teacher.encoder.shape());
    let out = teacher.encoder.forward(&ids, &mask, &full).unwrap();
    assert_eq!(out.hidden_states.len(), fx.teacher.hidden_states.len());
    for (layer, (ours, theirs)) in out
        .hidden_states
        .iter()
        .zip(&fx.teacher.hidden_states)
        .enumerate()
    {
        let err = max_abs_diff(ours, theirs);
        assert!(
            err <= 1e-4,
            "teacher hidden state {layer}: max abs error {err}"
        );
    }
    let spec = SubnetSpec {
        layers: fx.subnet.layers.clone(),
        heads: fx.subnet.heads.into(),
        ffn: fx.subnet.ffn.into(),
        hidden: None,
    };
    spec.validate(&teacher.encoder.shape()).unwrap();
    let out = teacher.encoder.forward(&ids, &mask, &spec).unwrap();
    assert_eq!(out.hidden_states.len(), fx.subnet.hidden_states.len());
    for (layer, (ours, theirs)) in out
        .hidden_states
        .iter()
        .zip(&fx.subnet.hidden_states)
        .enumerate()
    {
        let err = max_abs_diff(ours, theirs);
        assert!(
            err <= 1e-4,
            "subnet hidden state {layer}: max abs error {err}"
        );
    }
}

#[test]
fn forward_cli_prints_the_fixture_values() {
    let fx = fixture();
    let dir = tempfile::tempdir().unwrap();
    let texts = dir.path().join("texts.txt");
    std::fs::write(&texts, fx.texts.join("\n")).unwrap();
    let stdout = common::stdout_of(
        common::cli()
            .args(["forward", "--model"])
            .arg(teacher_dir())
            .args(["--subnet", "layers=0,2;heads=6;ffn=768", "--texts-file"])
            .arg(&texts),
    );
    let json: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    let ids: Vec<Vec<u32>> = serde_json::from_value(json["input_ids"].clone()).unwrap();
    let mask: Vec<Vec<u32>> = serde_json::from_value(json["attention_mask"].clone()).unwrap();
    let last: Vec<Vec<Vec<f32>>> =
        serde_json::from_value(json["last_hidden_state"].clone()).unwrap();
    assert_eq!(ids, fx.input_ids);
    assert_eq!(mask, fx.attention_mask);
    let reference = fx.subnet.hidden_states.last().unwrap();
    let t = Tensor::new(last, &Device::Cpu).unwrap();
    assert!(max_abs_diff(&t, reference) <= 1e-4);
}

/// Copies the shipped teacher into a temp folder so a test can damage it.
fn teacher_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "vocab.txt",
    ] {
        std::fs::copy(teacher_dir().join(name), dir.path().join(name)).unwrap();
    }
    dir
}

fn load_error(dir: &Path) -> String {
    match EncoderTeacher::load(dir) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => format!("{e:#}"),
    }
}

/// Rewrites model.safetensors with `edit` applied to the (name → (dtype, shape, bytes)) map.
fn rewrite_weights(
    dir: &Path,
    edit: impl FnOnce(&mut Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>),
) {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut entries: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut entries);
    let views: Vec<_> = entries
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    std::fs::write(&path, safetensors::tensor::serialize(views, None).unwrap()).unwrap();
}

#[test]
fn missing_files_name_the_file() {
    let dir = teacher_copy();
    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    let err = load_error(dir.path());
    assert!(
        err.contains("config.json") && err.contains("missing"),
        "{err}"
    );

    let dir = teacher_copy();
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let err = load_error(dir.path());
    assert!(
        err.contains("model.safetensors") && err.contains("missing"),
        "{err}"
    );

    let err = load_error(Path::new("/nonexistent/model"));
    assert!(
        err.contains("/nonexistent/model") && err.contains("not found"),
        "{err}"
    );
}

#[test]
fn tokenizer_falls_back_to_vocab_txt() {
    let fx = fixture();
    let dir = teacher_copy();
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    let teacher = EncoderTeacher::load(dir.path()).unwrap();
    let batch = teacher.tokenizer.encode_batch(&fx.texts, 512).unwrap();
    assert_eq!(batch.input_ids, fx.input_ids);
}

#[test]
fn missing_tensor_is_named() {
    let dir = teacher_copy();
    rewrite_weights(dir.path(), |e| {
        e.retain(|t| t.0 != "encoder.layer.1.intermediate.dense.weight")
    });
    let err = load_error(dir.path());
    assert!(err.contains("model.safetensors"), "{err}");
    assert!(
        err.contains("encoder.layer.1.intermediate.dense.weight") && err.contains("missing"),
        "{err}"
    );
}

#[test]
fn wrong_shape_says_expected_and_found() {
    let dir = teacher_copy();
    rewrite_weights(dir.path(), |e| {
        let t = e
            .iter_mut()
            .find(|t| t.0 == "encoder.layer.0.attention.self.query.bias")
            .unwrap();
        t.2 = vec![192];
        t.3.truncate(192 * 2);
    });
    let err = load_error(dir.path());
    assert!(
        err.contains("encoder.layer.0.attention.self.query.bias"),
        "{err}"
    );
    assert!(
        err.contains("[192]") && err.contains("expected [384]"),
        "{err}"
    );
}

#[test]
fn unsupported_dtype_is_named() {
    let dir = teacher_copy();
    rewrite_weights(dir.path(), |e| {
        let t = e
            .iter_mut()
            .find(|t| t.0 == "embeddings.LayerNorm.weight")
            .unwrap();
        t.1 = safetensors::Dtype::I16;
    });
    let err = load_error(dir.path());
    assert!(
        err.contains("embeddings.LayerNorm.weight") && err.contains("unsupported dtype"),
        "{err}"
    );
}

#[test]
fn truncated_and_corrupt_weights_are_reported() {
    let dir = teacher_copy();
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_error(dir.path());
    assert!(
        err.contains("model.safetensors") && err.contains("corrupt or truncated"),
        "{err}"
    );

    std::fs::write(&path, b"this is not a safetensors file").unwrap();
    let err = load_error(dir.path());
    assert!(err.contains("corrupt or truncated"), "{err}");
}

#[test]
fn prefixed_tensor_names_and_bf16_load() {
    let fx = fixture();
    let dir = teacher_copy();
    rewrite_weights(dir.path(), |e| {
        for t in e.iter_mut() {
            t.0 = format!("bert.{}", t.0);
            // f16 → bf16 keeps the test honest about the conversion path, at bf16 precision.
            let vals: Vec<u8> =
                t.3.chunks_exact(2)
                    .flat_map(|c| {
                        half::bf16::from_f32(half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                            .to_le_bytes()
                    })
                    .collect();
            t.1 = safetensors::Dtype::BF16;
            t.3 = vals;
        }
    });
    let teacher = EncoderTeacher::load(dir.path()).unwrap();
    let (ids, mask) = ids_and_mask(&fx);
    let out = teacher
        .encoder
        .forward(&ids, &mask, &SubnetSpec::maxnet(&teacher.encoder.shape()))
        .unwrap();
    // bf16 has 8 mantissa bits: close to, not equal to, the reference.
    let err = max_abs_diff(out.last(), fx.teacher.hidden_states.last().unwrap());
    assert!(err < 0.1, "bf16 teacher drifted by {err}");
}

#[test]
fn cli_rejects_bad_subnet_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let texts = dir.path().join("texts.txt");
    std::fs::write(&texts, "hello world\n").unwrap();
    let output = common::cli()
        .args(["forward", "--model"])
        .arg(teacher_dir())
        .args(["--subnet", "layers=0,5;heads=6;ffn=768", "--texts-file"])
        .arg(&texts)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("layer 5 is out of range"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The int64 `embeddings.position_ids` buffer `transformers` saves beside BERT weights.
fn position_ids_buffer() -> (String, safetensors::Dtype, Vec<usize>, Vec<u8>) {
    let positions: Vec<u8> = (0..512i64).flat_map(|i| i.to_le_bytes()).collect();
    (
        "embeddings.position_ids".into(),
        safetensors::Dtype::I64,
        vec![1, 512],
        positions,
    )
}

#[test]
fn integer_buffers_beside_the_weights_are_skipped_not_called_corrupt() {
    // `transformers` saves `embeddings.position_ids` (int64) in published folders such as
    // sentence-transformers/all-MiniLM-L6-v2: a buffer, not a weight.
    let dir = teacher_copy();
    rewrite_weights(dir.path(), |e| {
        e.push(position_ids_buffer());
    });
    let with_buffer = EncoderTeacher::load(dir.path()).unwrap();
    let plain = EncoderTeacher::load(&teacher_dir()).unwrap();
    let (ids, mask) = ids_and_mask(&fixture());
    let spec = SubnetSpec::maxnet(&plain.encoder.shape());
    let a = with_buffer.encoder.forward(&ids, &mask, &spec).unwrap();
    let b = plain.encoder.forward(&ids, &mask, &spec).unwrap();
    let d = mlfs_studio::util::max_abs_diff(a.last(), b.last()).unwrap();
    assert_eq!(d, 0.0);
}

#[test]
fn unknown_tensors_are_listed_in_a_warning_and_buffers_are_not() {
    let dir = teacher_copy();
    rewrite_weights(dir.path(), |e| {
        e.push(position_ids_buffer());
        e.push((
            "adapter.extra_scale".into(),
            safetensors::Dtype::F32,
            vec![2],
            vec![0u8; 8],
        ));
    });
    let teacher = EncoderTeacher::load(dir.path()).unwrap();
    assert_eq!(teacher.warnings.len(), 1, "{:?}", teacher.warnings);
    let warning = &teacher.warnings[0];
    assert!(warning.contains("model.safetensors"), "{warning}");
    assert!(warning.contains("adapter.extra_scale"), "{warning}");
    assert!(!warning.contains("position_ids"), "{warning}");
    // The shipped folder has nothing unused: no warning.
    let plain = EncoderTeacher::load(&teacher_dir()).unwrap();
    assert!(plain.warnings.is_empty(), "{:?}", plain.warnings);
}

#[test]
fn a_tokenizer_that_does_not_fit_the_model_warns() {
    // A WordPiece vocabulary of the special tokens and three words: 30522 embedding rows for
    // 8 tokens, and nearly every word of a sentence becomes [UNK].
    let dir = teacher_copy();
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    let vocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\nphone\n.\n";
    std::fs::write(dir.path().join("vocab.txt"), vocab).unwrap();
    let teacher = EncoderTeacher::load(dir.path()).unwrap();
    assert!(
        teacher
            .warnings
            .iter()
            .any(|w| w.contains("8 tokens for an embedding table of 30522 rows")),
        "{:?}",
        teacher.warnings
    );
    let texts = dir.path().join("texts.txt");
    std::fs::write(&texts, "The phone died after two days.\n").unwrap();
    let output = common::cli()
        .args(["forward", "--model"])
        .arg(dir.path())
        .arg("--texts-file")
        .arg(&texts)
        .output()
        .unwrap();
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("texts.txt: 57% of the tokens are the unknown token"),
        "{stderr}"
    );
}

/// `fixtures/all-minilm-l6-v2-forward.json` was produced by Hugging Face transformers 4.46.3
/// (torch 2.5.1, `BertModel`, float32) on the folder as published, by
/// `scripts/make-minilm-l6-fixture.py`.
#[derive(Deserialize)]
struct PublishedFixture {
    texts: Vec<String>,
    input_ids: Vec<Vec<u32>>,
    attention_mask: Vec<Vec<u32>>,
    last_hidden_state: Vec<Vec<Vec<f32>>>,
}

#[test]
fn published_all_minilm_l6_v2_loads_quietly_and_matches_transformers() {
    let model = common::minilm_l6_dir();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/all-minilm-l6-v2-forward.json");
    let fx: PublishedFixture =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let texts = dir.path().join("texts.txt");
    std::fs::write(&texts, fx.texts.join("\n")).unwrap();
    let output = common::cli()
        .args(["forward", "--model"])
        .arg(model)
        .arg("--texts-file")
        .arg(&texts)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    // Its integer `position_ids` buffer and the pooler are known leftovers, not news.
    assert!(!stderr.contains("warning"), "{stderr}");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let ids: Vec<Vec<u32>> = serde_json::from_value(json["input_ids"].clone()).unwrap();
    let mask: Vec<Vec<u32>> = serde_json::from_value(json["attention_mask"].clone()).unwrap();
    assert_eq!(ids, fx.input_ids);
    assert_eq!(mask, fx.attention_mask);
    let last: Vec<Vec<Vec<f32>>> =
        serde_json::from_value(json["last_hidden_state"].clone()).unwrap();
    let err = max_abs_diff(
        &Tensor::new(last, &Device::Cpu).unwrap(),
        &fx.last_hidden_state,
    );
    assert!(err <= 1e-4, "last hidden state: max abs error {err}");
}

#[test]
fn a_token_id_beyond_the_embeddings_is_an_error_naming_the_file_and_text() {
    // The shipped vocabulary plus one word: its id (30522) has no embedding row.
    let dir = teacher_copy();
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    let vocab = dir.path().join("vocab.txt");
    let mut words = std::fs::read_to_string(&vocab).unwrap();
    words.push_str("zzzquux\n");
    std::fs::write(&vocab, words).unwrap();
    let texts = dir.path().join("texts.txt");
    std::fs::write(&texts, "a fine day\nthe zzzquux broke\n").unwrap();
    let output = common::cli()
        .args(["forward", "--model"])
        .arg(dir.path())
        .arg("--texts-file")
        .arg(&texts)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("texts.txt: text 2 tokenizes to id 30522, but the model's embedding table has only 30522 rows"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "the tokenizer has 30523 tokens but the model's embedding table only 30522 rows"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
