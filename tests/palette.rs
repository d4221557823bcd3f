//! Palette, merged export and predict on a small trained run of the shipped teacher.

use mlfs_studio::eval::palette::{measure_subnet, read_csv};
use mlfs_studio::export::bert::ClassifierFormat;
use mlfs_studio::export::classifier::DenseClassifier;
use mlfs_studio::export::merged::merged_tensors;
use mlfs_studio::model::packing::TokenLayout;
use mlfs_studio::model::tokenizer::batch_tensors;
use mlfs_studio::model::SubnetSpec;
use mlfs_studio::runs::export::export_classifier;
use mlfs_studio::runs::predict::predict_texts;
use mlfs_studio::train::protocol::TrainEvent;
use mlfs_studio::train::run::Flow;
use mlfs_studio::train::ClassifierRun;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

mod common;
use common::assets;

/// One small trained run shared by every test of this file (trained once, then reopened).
fn trained_run() -> &'static Path {
    static RUN: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, dir) = RUN.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        let c = common::small_config([20, 8, 8], 16, 48);
        let mut t = ClassifierRun::create(c, &dir).unwrap();
        let mut ctl = |_: usize, _: &mut dyn FnMut(TrainEvent)| Flow::Continue;
        t.run(&mut ctl, &mut |_| {}).unwrap();
        (tmp, dir)
    });
    dir
}

/// The names in a folder, sorted.
fn sorted_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into())
        .collect();
    names.sort();
    names
}

/// The first 12 test texts as one padded batch: (ids, mask).
fn first_test_texts(trainer: &ClassifierRun) -> (candle_core::Tensor, candle_core::Tensor) {
    let idx: Vec<usize> = (0..12).collect();
    let (batch, _) = trainer.task.data.test.batch(&idx, trainer.task.pad_id);
    batch_tensors(&batch, &candle_core::Device::Cpu).unwrap()
}

/// The outputs of an ONNX model run by candle-onnx's node-by-node evaluator on `ids`, `mask`.
fn onnx_outputs(
    model: &candle_onnx::onnx::ModelProto,
    ids: &candle_core::Tensor,
    mask: &candle_core::Tensor,
) -> std::collections::HashMap<String, candle_core::Tensor> {
    let mut feed = std::collections::HashMap::new();
    feed.insert(
        "input_ids".to_string(),
        ids.to_dtype(candle_core::DType::I64).unwrap(),
    );
    feed.insert(
        "attention_mask".to_string(),
        mask.to_dtype(candle_core::DType::I64).unwrap(),
    );
    candle_onnx::simple_eval(model, feed).unwrap()
}

fn specs() -> Vec<SubnetSpec> {
    [
        "layers=0,1,2;heads=12;ffn=1536",
        "layers=1,2;heads=6;ffn=768",
        "layers=2;heads=3;ffn=384",
        "layers=0,2;heads=9;ffn=1152;hidden=256",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect()
}

/// The in-memory dense subnet the palette and `bench` time must be plain data: a merged weight
/// that still tracked the adapters' Vars sent every product down the autograd path.
#[test]
fn merged_subnet_tensors_are_plain_data() {
    let trainer = ClassifierRun::open_trained(trained_run()).unwrap();
    for spec in specs() {
        let tensors = merged_tensors(&trainer.task.net, &spec).unwrap();
        assert!(tensors.len() > 10);
        for (name, t) in tensors {
            assert!(!t.track_op(), "{spec}: {name} tracks gradients");
        }
    }
}

#[test]
fn exported_subnets_reload_with_the_same_logits() {
    let trainer = ClassifierRun::open_trained(trained_run()).unwrap();
    let (ids, mask) = first_test_texts(&trainer);
    for spec in specs() {
        let out = tempfile::tempdir().unwrap();
        let target = out.path().join("model");
        let files =
            export_classifier(&trainer, &spec, None, ClassifierFormat::HfFolder, &target).unwrap();
        assert_eq!(files.len(), 4);
        let st = std::fs::read(target.join("model.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&st).unwrap();
        let hidden = spec.hidden.unwrap_or(384);
        let q = st
            .tensor("bert.encoder.layer.0.attention.self.query.weight")
            .unwrap();
        assert_eq!(q.shape(), &[spec.heads.at(0) * 32, hidden]);
        let layer_count = st
            .names()
            .iter()
            .filter(|n| n.ends_with("attention.self.query.weight"))
            .count();
        assert_eq!(layer_count, spec.layers.len(), "layers renumbered 0..n-1");
        assert_eq!(
            st.tensor("classifier.weight").unwrap().shape(),
            &[2, hidden]
        );

        let model = DenseClassifier::load(&target).unwrap();
        let ours = trainer
            .task
            .net
            .forward(&ids, &TokenLayout::of_mask(&mask).unwrap(), &spec, None)
            .unwrap()
            .logits;
        let theirs = model.logits(&ids, &mask).unwrap();
        let diff = mlfs_studio::util::max_abs_diff(&ours, &theirs).unwrap();
        assert!(diff <= 1e-4, "{spec}: exported logits differ by {diff}");
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(target.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(manifest["subnet"], spec.to_string());
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(target.join("config.json")).unwrap()).unwrap();
        assert_eq!(config["num_attention_heads"], spec.heads.at(0));
        assert_eq!(config["head_size"], 32);
        assert_eq!(config["pooling"], "mean");
    }
}

#[test]
fn predict_agrees_with_the_palette_test_accuracy() {
    let trainer = ClassifierRun::open_trained(trained_run()).unwrap();
    let spec: SubnetSpec = "layers=1,2;heads=6;ffn=768".parse().unwrap();
    let entry = measure_subnet(&trainer.task, &trainer.config.palette, &spec).unwrap();
    assert!(entry.latency_ms_median > 0.0 && entry.latency_ms_p90 >= entry.latency_ms_median);
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("m");
    export_classifier(
        &trainer,
        &spec,
        Some(&entry),
        ClassifierFormat::HfFolder,
        &target,
    )
    .unwrap();
    let model = DenseClassifier::load(&target).unwrap();
    let examples = mlfs_studio::train::data::read_examples(
        &assets().join("sentiment/test.jsonl"),
        "text",
        "label",
    )
    .unwrap();
    let texts: Vec<String> = examples.iter().map(|e| e.text.clone()).collect();
    // The palette truncates texts to the run's length (48 here); predict reads whole texts,
    // so only texts longer than that may be classified differently.
    let preds = predict_texts(&model, &texts).unwrap();
    // The export names the classes as the run does (`data.label_names`: negative, positive).
    let labels = &trainer.task.data.labels;
    let shown = |label: &str| labels.display_names()[labels.id(label).unwrap()].clone();
    assert_eq!(labels.display_names(), ["negative", "positive"]);
    let correct = preds
        .iter()
        .zip(&examples)
        .filter(|(p, e)| p.label == shown(&e.label))
        .count();
    let long = examples
        .iter()
        .filter(|e| {
            trainer
                .task
                .tokenizer
                .encode(&e.text, true, 512)
                .unwrap()
                .len()
                > 48
        })
        .count();
    let palette_correct = (entry.test_accuracy * examples.len() as f64).round() as i64;
    assert!(
        (correct as i64 - palette_correct).abs() <= long as i64,
        "predict {correct} correct vs palette {palette_correct} ({long} texts longer than the run's length)"
    );
    for p in &preds {
        let total: f64 = p.probabilities.values().map(|v| v.as_f64().unwrap()).sum();
        assert!((total - 1.0).abs() < 1e-4);
    }
}

#[test]
fn export_errors_are_clear_and_leave_nothing_behind() {
    for format in [ClassifierFormat::HfFolder, ClassifierFormat::Onnx] {
        export_errors_for(format);
    }
}

fn export_errors_for(format: ClassifierFormat) {
    let trainer = ClassifierRun::open_trained(trained_run()).unwrap();
    let spec: SubnetSpec = "layers=2;heads=3;ffn=384".parse().unwrap();
    let tmp = tempfile::tempdir().unwrap();

    let missing = tmp.path().join("no/such/parent/model");
    let err = format!(
        "{:#}",
        export_classifier(&trainer, &spec, None, format, &missing).unwrap_err()
    );
    assert!(
        err.contains("parent folder") && err.contains("does not exist"),
        "{err}"
    );

    let full = tmp.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("keep.txt"), "user data").unwrap();
    let err = format!(
        "{:#}",
        export_classifier(&trainer, &spec, None, format, &full).unwrap_err()
    );
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(
        std::fs::read_dir(&full).unwrap().count(),
        1,
        "the non-empty folder was touched"
    );

    // Read-only: a chmod'ed folder when permissions apply, else (root) a read-only file system.
    use std::os::unix::fs::PermissionsExt;
    let ro = tmp.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    let writable_anyway = std::fs::write(ro.join("probe"), "x").is_ok();
    let target = if writable_anyway {
        std::fs::remove_file(ro.join("probe")).unwrap();
        PathBuf::from("/proc/mlfs-export-test")
    } else {
        ro.join("model")
    };
    let err = format!(
        "{:#}",
        export_classifier(&trainer, &spec, None, format, &target).unwrap_err()
    );
    assert!(err.contains("cannot write"), "{err}");
    assert!(!target.exists());
    if !writable_anyway {
        assert_eq!(
            std::fs::read_dir(&ro).unwrap().count(),
            0,
            "something was left in the read-only folder"
        );
    }
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();

    // An empty existing folder is fine (the file dialog's usual case).
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    export_classifier(&trainer, &spec, None, format, &empty).unwrap();
    let names = sorted_names(&empty);
    let model_file = match format {
        ClassifierFormat::HfFolder => "model.safetensors",
        ClassifierFormat::Onnx => "model.onnx",
    };
    assert_eq!(
        names,
        vec!["config.json", "manifest.json", model_file, "tokenizer.json"]
    );
}

/// The ONNX export, run by an evaluator that is not ours (candle-onnx's `simple_eval`, which
/// interprets the graph node by node), gives `predict`'s logits for the four reference subnets.
#[test]
fn onnx_exports_give_predicts_logits_in_an_independent_evaluator() {
    let trainer = ClassifierRun::open_trained(trained_run()).unwrap();
    let (ids, mask) = first_test_texts(&trainer);
    // Padding must matter: the batch mixes lengths.
    let lengths = mask.sum(1).unwrap().to_vec1::<u32>().unwrap();
    assert!(lengths.iter().min() < lengths.iter().max(), "{lengths:?}");
    for spec in specs() {
        let out = tempfile::tempdir().unwrap();
        let target = out.path().join("onnx");
        export_classifier(&trainer, &spec, None, ClassifierFormat::Onnx, &target).unwrap();
        assert_eq!(
            sorted_names(&target),
            vec![
                "config.json",
                "manifest.json",
                "model.onnx",
                "tokenizer.json"
            ]
        );
        let model = candle_onnx::read_file(target.join("model.onnx")).unwrap();
        assert_eq!(model.opset_import[0].version, 17);
        assert_eq!(model.opset_import[0].domain, "");
        let graph = model.graph.as_ref().unwrap();
        let inputs: Vec<&str> = graph.input.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(inputs, ["input_ids", "attention_mask"]);
        assert!(
            graph.node.iter().all(|n| n.domain.is_empty()),
            "non-standard operator"
        );
        let matmuls = graph.node.iter().filter(|n| n.op_type == "MatMul").count();
        assert_eq!(
            matmuls,
            spec.layers.len() * 8 + 1,
            "{spec}: 6 linears + 2 attention products per layer, the head"
        );

        let outputs = onnx_outputs(&model, &ids, &mask);
        let theirs = &outputs["logits"];
        let ours = DenseClassifier::load(&{
            let hf = out.path().join("hf");
            export_classifier(&trainer, &spec, None, ClassifierFormat::HfFolder, &hf).unwrap();
            hf
        })
        .unwrap()
        .logits(&ids, &mask)
        .unwrap();
        assert_eq!(theirs.dims(), ours.dims());
        let diff = mlfs_studio::util::max_abs_diff(&ours, theirs).unwrap();
        assert!(
            diff <= 1e-4,
            "{spec}: ONNX logits differ from predict's by {diff}"
        );
        let hidden = &outputs["last_hidden_state"];
        assert_eq!(
            hidden.dims(),
            &[12, ids.dim(1).unwrap(), spec.hidden.unwrap_or(384)]
        );

        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(target.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(manifest["model_file"], "model.onnx");
        assert_eq!(manifest["onnx"]["opset"], 17);
    }
}

#[test]
fn eval_cli_writes_the_palette_csv() {
    let run = trained_run();
    let stdout = common::stdout_of(common::cli().args(["eval", "--run"]).arg(run).args([
        "--subnets",
        "layers=0,1,2;heads=12;ffn=1536,layers=2;heads=3;ffn=384",
    ]));
    let stdout = String::from_utf8_lossy(&stdout);
    assert!(stdout.contains("storage: MLFS keeps"), "{stdout}");
    let text = std::fs::read_to_string(run.join("palette.csv")).unwrap();
    assert!(text.starts_with("role,subnet,layers,heads,ffn,hidden,params_total,params_non_embedding,size_bytes,latency_ms_median,latency_ms_p90,dev_accuracy,test_accuracy,on_front_size,on_front_latency\n"));
    let rows = read_csv(&run.join("palette.csv")).unwrap();
    assert_eq!(rows.len(), 2);
    // Roles from the run's space: its maxnet and minnet.
    assert_eq!(
        (rows[0].role.as_str(), rows[1].role.as_str()),
        ("maxnet", "minnet")
    );
    assert!(rows[0].params_total > rows[1].params_total);
    assert!(rows[0].params_non_embedding < rows[0].params_total);
    // The minnet is cheapest, so it is on both fronts whatever its accuracy.
    let line = text.lines().nth(2).unwrap();
    assert!(line.ends_with("true,true"), "{line}");
}

#[test]
fn a_partial_measurement_merges_into_the_palette_instead_of_replacing_it() {
    // A copy of the run: the other tests of this file read its palette.
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(trained_run()).unwrap().flatten() {
        if entry.path().is_file() {
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
    }
    let eval = |subnets: &str| {
        common::stdout_of(
            common::cli()
                .args(["eval", "--run"])
                .arg(dir.path())
                .args(["--subnets", subnets]),
        )
    };
    eval("layers=0,1,2;heads=12;ffn=1536,layers=2;heads=3;ffn=384,layers=1,2;heads=6;ffn=768");
    let before = read_csv(&dir.path().join("palette.csv")).unwrap();
    assert_eq!(before.len(), 3);
    eval("layers=2;heads=3;ffn=384");
    let after = read_csv(&dir.path().join("palette.csv")).unwrap();
    let names = |rows: &[mlfs_studio::train::protocol::PaletteEntry]| -> Vec<String> {
        rows.iter().map(|r| r.subnet.clone()).collect()
    };
    assert_eq!(names(&after), names(&before), "rows lost or reordered");
    assert_eq!(after[0], before[0], "an untouched row changed");
}

#[test]
fn an_interrupted_export_leaves_nothing_that_blocks_a_retry() {
    let run = ClassifierRun::open_trained(trained_run()).unwrap();
    let spec = specs()[2].clone();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("exported");
    // What a kill -9 left: a staging folder beside the target, and one inside it (older code).
    let beside = dir.path().join(".exported.mlfs-export.partial");
    std::fs::create_dir_all(&beside).unwrap();
    std::fs::write(beside.join("model.safetensors"), b"half").unwrap();
    std::fs::create_dir_all(out.join(".mlfs-export.partial")).unwrap();
    std::fs::write(out.join(".mlfs-export.partial/config.json"), b"{").unwrap();
    let files = export_classifier(&run, &spec, None, ClassifierFormat::HfFolder, &out).unwrap();
    assert_eq!(files.len(), 4);
    let left = sorted_names(dir.path());
    assert_eq!(left, vec!["exported".to_string()]);
    let inside = sorted_names(&out);
    assert_eq!(
        inside,
        vec![
            "config.json",
            "manifest.json",
            "model.safetensors",
            "tokenizer.json"
        ]
    );
}

#[test]
fn a_decoder_export_format_on_a_classifier_run_is_an_error() {
    let run = trained_run();
    let dir = tempfile::tempdir().unwrap();
    for format in ["gguf-f16", "bogus"] {
        let output = common::cli()
            .args(["export", "--run"])
            .arg(run)
            .args([
                "--subnet",
                "layers=2;heads=3;ffn=384",
                "--format",
                format,
                "--out",
            ])
            .arg(dir.path().join(format))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "--format {format} was accepted");
        assert!(
            stderr.contains(&format!("--format {format}: a classifier run exports")),
            "{stderr}"
        );
        assert!(!dir.path().join(format).exists(), "wrote an export anyway");
    }
}

/// `export --format onnx` from the command line; `predict` and `latency` read the ONNX folder's
/// own weights and agree with the safetensors export of the same subnet.
#[test]
fn cli_onnx_export_is_read_by_predict_and_latency() {
    let run = trained_run();
    let dir = tempfile::tempdir().unwrap();
    let spec = "layers=1,2;heads=6;ffn=768";
    for (format, out) in [("onnx", "onnx"), ("hf", "hf")] {
        common::stdout_of(
            common::cli()
                .args(["export", "--run"])
                .arg(run)
                .args(["--subnet", spec, "--format", format, "--out"])
                .arg(dir.path().join(out)),
        );
    }
    assert!(!dir.path().join("onnx/model.safetensors").exists());
    let texts = dir.path().join("texts.txt");
    std::fs::write(&texts, "A masterpiece.\nDull, slow and far too long.\nok\n").unwrap();
    let predict = |model: &str| -> Vec<serde_json::Value> {
        let stdout = common::stdout_of(
            common::cli()
                .args(["predict", "--model"])
                .arg(dir.path().join(model))
                .arg("--texts-file")
                .arg(&texts),
        );
        String::from_utf8_lossy(&stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let (from_onnx, from_hf) = (predict("onnx"), predict("hf"));
    assert_eq!(from_onnx.len(), 3);
    for (a, b) in from_onnx.iter().zip(&from_hf) {
        assert_eq!(a["label"], b["label"]);
        let (a, b) = (
            a["logits"].as_array().unwrap(),
            b["logits"].as_array().unwrap(),
        );
        assert_eq!(a.len(), 2);
        for (x, y) in a.iter().zip(b) {
            assert!((x.as_f64().unwrap() - y.as_f64().unwrap()).abs() <= 1e-5);
        }
    }
    let stdout = common::stdout_of(
        common::cli()
            .args(["latency", "--model"])
            .arg(dir.path().join("onnx"))
            .args(["--seq-len", "16", "--runs", "5"]),
    );
    let line: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(line["seq_len"], 16);
    let (median, p90) = (
        line["median_ms"].as_f64().unwrap(),
        line["p90_ms"].as_f64().unwrap(),
    );
    assert!(median > 0.0 && p90 >= median, "{line}");
}

/// A per-layer subnet (issue 25): the palette measures it; its ONNX export, run by candle-onnx's
/// own node-by-node evaluator and loaded back by our loader, gives the supernet's logits for
/// that subnet within 1e-4; a Hugging Face folder is refused naming ONNX.
#[test]
fn per_layer_subnets_are_measured_and_export_to_onnx() {
    let trainer = ClassifierRun::open_trained(trained_run()).unwrap();
    let spec: SubnetSpec = "layers=0,1,2;heads=12,6,3;ffn=384,1536,768"
        .parse()
        .unwrap();
    let (ids, mask) = first_test_texts(&trainer);
    let layout = TokenLayout::of_mask(&mask).unwrap();
    let supernet = trainer
        .task
        .net
        .forward(&ids, &layout, &spec, None)
        .unwrap()
        .logits;

    let entry = measure_subnet(&trainer.task, &trainer.config.palette, &spec).unwrap();
    assert_eq!(entry.subnet, spec.to_string());
    // Parameters of the per-layer shape, not of its widest layer everywhere.
    let widest: SubnetSpec = "layers=0,1,2;heads=12;ffn=1536".parse().unwrap();
    let widest_entry = measure_subnet(&trainer.task, &trainer.config.palette, &widest).unwrap();
    // One BERT layer of h heads of 32 and f neurons at width 384: Q, K, V and O weights and
    // biases, both FFN matrices and biases, two LayerNorms.
    let per_layer = |h: usize, f: usize| {
        let (a, d) = (h * 32, 384);
        4 * a * d + 3 * a + d + 2 * f * d + f + d + 4 * d
    };
    let saved: usize = [(12, 384), (6, 1536), (3, 768)]
        .iter()
        .map(|&(h, f)| per_layer(12, 1536) - per_layer(h, f))
        .sum();
    assert_eq!(entry.params_total + saved, widest_entry.params_total);

    let out = tempfile::tempdir().unwrap();
    let hf = out.path().join("hf");
    let err = format!(
        "{:#}",
        export_classifier(&trainer, &spec, None, ClassifierFormat::HfFolder, &hf).unwrap_err()
    );
    assert!(
        err.contains("per-layer") && err.contains("--format onnx"),
        "{err}"
    );
    assert!(!hf.exists());

    let target = out.path().join("onnx");
    export_classifier(&trainer, &spec, None, ClassifierFormat::Onnx, &target).unwrap();
    let model = candle_onnx::read_file(target.join("model.onnx")).unwrap();
    let theirs = onnx_outputs(&model, &ids, &mask)["logits"].clone();
    let diff = mlfs_studio::util::max_abs_diff(&supernet, &theirs).unwrap();
    assert!(
        diff <= 1e-4,
        "ONNX logits differ from the supernet's by {diff}"
    );
    let loaded = DenseClassifier::load(&target)
        .unwrap()
        .logits(&ids, &mask)
        .unwrap();
    let diff = mlfs_studio::util::max_abs_diff(&supernet, &loaded).unwrap();
    assert!(
        diff <= 1e-4,
        "our loader's logits differ from the supernet's by {diff}"
    );

    // `forward` reads the per-layer ONNX folder too: the whole model at each layer's width,
    // the same last hidden states as the loaded classifier's encoder; a wider subnet is refused.
    let texts = out.path().join("texts.txt");
    std::fs::write(&texts, "A masterpiece.\nDull, slow and far too long.\n").unwrap();
    let stdout = common::stdout_of(
        common::cli()
            .args(["forward", "--model"])
            .arg(&target)
            .arg("--texts-file")
            .arg(&texts),
    );
    let json: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    let classifier = DenseClassifier::load(&target).unwrap();
    let tokenizer = classifier.tokenizer.as_ref().unwrap();
    let batch = tokenizer
        .encode_batch(
            &[
                "A masterpiece.".into(),
                "Dull, slow and far too long.".into(),
            ],
            512,
        )
        .unwrap();
    assert_eq!(json["input_ids"], serde_json::json!(batch.input_ids));
    let (ids, mask) = batch_tensors(&batch, &candle_core::Device::Cpu).unwrap();
    let whole = classifier.config.full_spec();
    assert_eq!(
        whole.to_string(),
        "layers=0,1,2;heads=12,6,3;ffn=384,1536,768"
    );
    let expected = classifier.encoder.forward(&ids, &mask, &whole).unwrap();
    let expected = expected.last().to_vec3::<f32>().unwrap();
    let printed: Vec<Vec<Vec<f32>>> =
        serde_json::from_value(json["last_hidden_state"].clone()).unwrap();
    let diff = printed
        .iter()
        .flatten()
        .flatten()
        .zip(expected.iter().flatten().flatten())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(diff <= 1e-5, "forward on the ONNX folder differs by {diff}");
    let output = common::cli()
        .args(["forward", "--model"])
        .arg(&target)
        .args(["--subnet", "layers=1;heads=12;ffn=384", "--texts-file"])
        .arg(&texts)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && err.contains("layer 1 has 6 heads"),
        "{err}"
    );
}

/// A stopped measurement of the whole space resumes with the missing rows only; rows measured
/// before the run's weights changed are measured again.
#[test]
fn a_stopped_palette_measurement_resumes_with_the_missing_rows_only() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    common::train_until(common::small_config([2, 0, 0], 8, 32), &run_dir, 1);
    let run = ClassifierRun::open_trained(&run_dir).unwrap();
    let all = run.task.space.all();
    let measured: Vec<SubnetSpec> = all[..2].to_vec();
    // As a measurement stopped after two subnets leaves it (rows written after each one).
    let mut seen = 0;
    mlfs_studio::eval::palette::evaluate_palette(
        &run.task,
        &run.config.palette,
        &run_dir,
        &all,
        &mut |_| {
            seen += 1;
            seen < 2
        },
    )
    .unwrap();
    assert_eq!(read_csv(&run_dir.join("palette.csv")).unwrap().len(), 2);
    let next = mlfs_studio::cli::eval::chosen_subnets(&run, None).unwrap();
    assert_eq!(next.len(), all.len() - 2);
    assert!(next.iter().all(|s| !measured.contains(s)));
    // Listed subnets are measured again whatever the palette holds.
    let listed =
        mlfs_studio::cli::eval::chosen_subnets(&run, Some(&measured[0].to_string())).unwrap();
    assert_eq!(listed, vec![measured[0].clone()]);

    // The run trains on: its newer checkpoint makes the old rows stale.
    drop(run);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let mut resumed = ClassifierRun::resume(&run_dir).unwrap();
    let mut ctl = |_: usize, _: &mut dyn FnMut(TrainEvent)| Flow::Continue;
    resumed.run(&mut ctl, &mut |_| {}).unwrap();
    drop(resumed);
    let run = ClassifierRun::open_trained(&run_dir).unwrap();
    assert_eq!(
        mlfs_studio::cli::eval::chosen_subnets(&run, None)
            .unwrap()
            .len(),
        all.len()
    );
}
