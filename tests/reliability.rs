//! What a hostile user tries: misspelt presets, diverging settings, resumes with nothing to
//! resume. Each case must end in a clear error naming what is wrong, never in silent defaults,
//! a run restarted from zero, or checkpoints overwritten with a diverged state.

mod common;

use mlfs_studio::train::config::RunConfig;
use mlfs_studio::train::protocol::TrainEvent;
use mlfs_studio::train::run::Flow;
use mlfs_studio::train::ClassifierRun;

fn load_error(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.ron");
    std::fs::write(&path, text).unwrap();
    match RunConfig::load(&path) {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn preset_typos_are_errors_with_the_line_and_a_suggestion() {
    let err = load_error("(\n    rank: 8,\n    gama: 0.0,\n)");
    assert!(err.contains("typo.ron") && err.contains("gama"), "{err}");
    assert!(err.contains("did you mean `gamma`"), "{err}");
    assert!(err.contains("3:"), "no line number: {err}");
    let err = load_error("(stages: [(lerning_rate: 0.01), (), ()])");
    assert!(err.contains("did you mean `learning_rate`"), "{err}");
    let err = load_error("(foo: 1)");
    assert!(
        err.contains("foo") && !err.contains("did you mean"),
        "{err}"
    );
}

fn collect(run: &mut ClassifierRun) -> (anyhow::Result<bool>, Vec<TrainEvent>) {
    let mut events = Vec::new();
    let mut ctl = |_: usize, _: &mut dyn FnMut(TrainEvent)| Flow::Continue;
    let result = run.run(&mut ctl, &mut |e| events.push(e));
    (result, events)
}

#[test]
fn a_diverging_run_stops_and_resumes_from_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    // A sound first stage (checkpointed at its end), then a second one at lr 0.99.
    let mut c = common::small_config([4, 30, 0], 16, 32);
    c.stages[1].learning_rate = 0.99;
    c.stages[1].warmup_ratio = 0.0;
    c.grad_clip = 0.0;
    c.rewire = false;
    let mut run = ClassifierRun::create(c, dir.path()).unwrap();
    let (result, events) = collect(&mut run);
    let err = format!("{:#}", result.expect_err("a diverging run finished"));
    assert!(err.contains("at step") && err.contains("stage 1"), "{err}");
    assert!(err.contains("the last good checkpoint is step"), "{err}");
    let stopped_at = events
        .iter()
        .filter(|e| matches!(e, TrainEvent::Step { .. }))
        .count();
    assert!(stopped_at < 34, "ran all {stopped_at} steps");
    // Nothing non-finite was saved, and the run resumes from the last checkpoint once fixed.
    let steps = mlfs_studio::train::checkpoint::complete_steps(dir.path());
    let last_good = *steps.last().expect("no checkpoint kept");
    assert!(last_good < stopped_at, "{steps:?} vs {stopped_at}");
    drop(run);
    let config_path = dir.path().join("config.ron");
    let mut fixed = RunConfig::load(&config_path).unwrap();
    fixed.stages[1].learning_rate = 1e-3;
    fixed.save(&config_path).unwrap();
    let mut resumed = ClassifierRun::resume(dir.path()).unwrap();
    assert_eq!(resumed.global_step, last_good);
    let (result, _) = collect(&mut resumed);
    assert!(!result.unwrap());
    assert_eq!(resumed.global_step, 34);
}

#[test]
fn resuming_a_run_without_a_checkpoint_is_an_error_unless_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let c = common::small_config([2, 0, 0], 16, 32);
    drop(ClassifierRun::create(c, dir.path()).unwrap());
    let err = match ClassifierRun::resume(dir.path()) {
        Ok(_) => panic!("resumed from nothing"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("no complete checkpoint") && err.contains("--restart"),
        "{err}"
    );
    let placement = mlfs_studio::train::run::Placement::default();
    let options = mlfs_studio::train::run::ResumeOptions {
        restart: true,
        ..Default::default()
    };
    let run = ClassifierRun::resume_with(dir.path(), placement, options).unwrap();
    assert_eq!(run.global_step, 0);
}

#[test]
fn a_corrupt_latest_checkpoint_falls_back_to_the_one_before() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = common::small_config([4, 0, 0], 16, 32);
    c.checkpoint_every = 2;
    common::train_until(c, dir.path(), 3);
    let root = dir.path().join("checkpoints");
    assert!(root.join("step-00000003").is_dir() && root.join("step-00000002").is_dir());
    std::fs::write(root.join("step-00000003/state.safetensors"), b"garbage").unwrap();
    let mut resumed = ClassifierRun::resume(dir.path()).unwrap();
    assert_eq!(resumed.global_step, 2);
    let (result, events) = collect(&mut resumed);
    assert!(!result.unwrap());
    let warned = events.iter().any(|e| match e {
        TrainEvent::Log { level, message } => {
            level == "warn" && message.contains("step-00000003") && message.contains("unreadable")
        }
        _ => false,
    });
    assert!(warned, "no warning about the corrupt checkpoint");
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let texts = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(texts.path(), "a fine film\n".repeat(200)).unwrap();
    let bin = env!("CARGO_BIN_EXE_mlfs-studio");
    let model = common::assets().join("minilm-l3");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{bin}' forward --device cpu --model '{}' --texts-file '{}' | head -c 20 >/dev/null",
            model.display(),
            texts.path().display()
        ))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{stderr}"
    );
}

#[test]
fn absurd_values_and_bad_palette_subnets_fail_before_any_work() {
    let mut c = common::small_config([2, 0, 0], 16, 32);
    c.lora_alpha = 1e30;
    c.distill.projection_dim = 1_000_000_000;
    c.palette.subnets = vec!["layers=0;heads=three".into()];
    let fields: Vec<String> = c.validate().into_iter().map(|e| e.field).collect();
    for f in ["lora_alpha", "distill.projection_dim", "palette.subnets"] {
        assert!(fields.iter().any(|x| x == f), "{f} not flagged: {fields:?}");
    }
    // Well formed, but layer 7 is not in the 3-layer teacher: refused when the run is created.
    let mut c = common::small_config([2, 0, 0], 16, 32);
    c.palette.subnets = vec!["layers=7;heads=3;ffn=384".into()];
    let dir = tempfile::tempdir().unwrap();
    let err = match ClassifierRun::create(c, dir.path()) {
        Ok(_) => panic!("accepted a subnet the teacher does not have"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("palette.subnets") && err.contains("layers=7"),
        "{err}"
    );
}

/// A copy of the shipped teacher with `edit` applied to its config.json.
fn teacher_with_config(edit: impl FnOnce(&mut serde_json::Value)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = common::assets().join("minilm-l3");
    for entry in std::fs::read_dir(&src).unwrap().flatten() {
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let path = dir.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(&path, serde_json::to_string(&config).unwrap()).unwrap();
    dir
}

#[test]
fn nan_outputs_and_layer_mismatches_are_errors_not_results() {
    let texts = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(texts.path(), "a fine film\nthe worst service ever\n").unwrap();
    let negative_eps = teacher_with_config(|c| c["layer_norm_eps"] = (-1.0).into());
    let out = common::cli()
        .args(["forward", "--device", "cpu", "--model"])
        .arg(negative_eps.path())
        .arg("--texts-file")
        .arg(texts.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "NaN printed as a result");
    assert!(stderr.contains("NaN or infinite"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("null"));

    let fewer_layers = teacher_with_config(|c| c["num_hidden_layers"] = 2.into());
    let err = match mlfs_studio::model::EncoderTeacher::load(fewer_layers.path()) {
        Ok(_) => panic!("a config with fewer layers than its weights loaded"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("more layers") && err.contains("num_hidden_layers = 2"),
        "{err}"
    );
}

#[test]
fn a_stray_label_is_an_error_naming_its_line_not_an_extra_class() {
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("train.jsonl");
    let lines = [
        r#"{"text": "good", "label": 1}"#,
        r#"{"text": "bad", "label": 0}"#,
        r#"{"text": "meh", "label": 0.5}"#,
    ];
    std::fs::write(&train, lines.join("\n")).unwrap();
    let err = match mlfs_studio::train::data::read_examples(&train, "text", "label") {
        Ok(ex) => panic!("accepted {ex:?}"),
        Err(e) => format!("{e:#}"),
    };
    // The line, never the content (a data file may be a link to somebody's secret).
    assert!(
        err.contains("train.jsonl:3") && err.contains("line 1") && !err.contains("0.5"),
        "{err}"
    );
    let csv = dir.path().join("train.csv");
    std::fs::write(&csv, "text,label\ngood,1\nbad,pos\n").unwrap();
    let err = format!(
        "{:#}",
        mlfs_studio::train::data::read_examples(&csv, "text", "label").unwrap_err()
    );
    assert!(err.contains("train.csv:3") && !err.contains("pos"), "{err}");
}

#[test]
fn resuming_on_changed_data_is_an_error_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("train.jsonl");
    std::fs::copy(common::assets().join("sentiment/train.jsonl"), &train).unwrap();
    let mut c = common::small_config([4, 0, 0], 16, 32);
    c.data.train = train.clone();
    let run_dir = dir.path().join("run");
    common::train_until(c, &run_dir, 2);
    // The same data resumes; an edited file does not, unless allowed.
    drop(ClassifierRun::resume(&run_dir).unwrap());
    let mut text = std::fs::read_to_string(&train).unwrap();
    text.push_str("{\"text\": \"one more\", \"label\": 1}\n");
    std::fs::write(&train, text).unwrap();
    let err = match ClassifierRun::resume(&run_dir) {
        Ok(_) => panic!("resumed on changed data"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("train.jsonl") && err.contains("--allow-changed-data"),
        "{err}"
    );
    let options = mlfs_studio::train::run::ResumeOptions {
        allow_changed_data: true,
        ..Default::default()
    };
    let placement = mlfs_studio::train::run::Placement::default();
    let resumed = ClassifierRun::resume_with(&run_dir, placement, options).unwrap();
    assert_eq!(resumed.global_step, 2);
}

#[test]
fn headless_train_says_where_what_and_how_long_before_the_first_step() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = common::small_config([2, 1, 1], 8, 32);
    c.palette.evaluate_at_end = false;
    let preset = dir.path().join("tiny.ron");
    c.save(&preset).unwrap();
    let run = dir.path().join("run");
    let stdout = common::stdout_of(
        common::cli()
            .args(["train", "--preset"])
            .arg(&preset)
            .arg("--out")
            .arg(&run),
    );
    let stdout = String::from_utf8_lossy(&stdout);
    let first = stdout.lines().next().unwrap_or_default();
    assert!(first.contains(&run.display().to_string()), "{stdout}");
    for part in [
        "cpu F32",
        "training examples",
        "from step 0",
        "stage 0: 2 steps, stage 1: 1 step, stage 2: 1 step",
    ] {
        assert!(first.contains(part), "{part:?} missing from {first:?}");
    }
}
