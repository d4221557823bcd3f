//! The studio window driven through its AccessKit labels (egui_kittest), with real training runs.

use egui_kittest::kittest::{NodeT, Queryable};
use egui_kittest::Harness;
use mlfs_studio::train::config::RunConfig;
use mlfs_studio::ui::app::StudioApp;
use mlfs_studio::ui::dialogs::ScriptedDialogs;
use mlfs_studio::ui::export_state::ExportState;
use mlfs_studio::ui::palette_view::Cost;
use mlfs_studio::ui::pareto_chart::point_position;
use mlfs_studio::ui::run_view::RunStatus;
use std::time::{Duration, Instant};

mod common;

/// The palette of a finished `tiny_config` run: its 8 grid subnets and one listed beside them.
const PALETTE_ROWS: usize = 9;

fn tiny_config(steps: [usize; 3]) -> RunConfig {
    let mut c = common::small_config(steps, 8, 32);
    c.name = "ui-test".into();
    c.eval_every = 2;
    c.rewire_batches = 1;
    // A small grid (2 depths × 2 head counts × 2 FFN widths), measured with the listed
    // subnets not in it: 9 palette rows.
    c.space.depths = vec![1, 3];
    c.space.heads = vec![3, 12];
    c.space.ffn = vec![384, 1536];
    c.palette.subnets = vec![
        "layers=0,1,2;heads=12;ffn=1536".into(),
        "layers=1,2;heads=6;ffn=768".into(),
        "layers=2;heads=3;ffn=384".into(),
    ];
    c
}

fn harness(app: StudioApp) -> Harness<'static, StudioApp> {
    Harness::builder()
        .with_size([1400.0, 900.0])
        .build_ui_state(|ui, app: &mut StudioApp| app.show(ui), app)
}

/// Steps frames (the trainer runs on its own thread) until `done` holds or the time is up.
fn step_until(
    h: &mut Harness<'static, StudioApp>,
    limit: Duration,
    done: impl Fn(&StudioApp) -> bool,
) {
    let started = Instant::now();
    while !done(h.state()) {
        assert!(
            started.elapsed() < limit,
            "timed out; status {:?}",
            h.state().run.status
        );
        h.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    h.step();
}

/// A studio on `tiny_config([4, 2, 2])` in `runs` that trained a run to the end, its palette of
/// three subnets measured.
fn trained_tiny_run(
    runs: &std::path::Path,
    dialogs: ScriptedDialogs,
) -> Harness<'static, StudioApp> {
    let app = StudioApp::new(
        tiny_config([4, 2, 2]),
        Box::new(dialogs),
        runs.to_path_buf(),
    );
    let mut h = harness(app);
    h.step();
    assert!(!start_disabled(&h));
    h.get_by_label("Start").click();
    step_until(&mut h, Duration::from_secs(600), |a| {
        a.run.status == RunStatus::Finished
            && a.run.palette.len() == PALETTE_ROWS
            && a.handle.is_none()
    });
    h
}

/// Steps `n` frames: a click's command, then a modal's sizing pass and fade.
fn step_frames(h: &mut Harness<'static, StudioApp>, n: usize) {
    for _ in 0..n {
        h.step();
    }
}

/// In "Try it": types a prompt, asks for a completion and waits for a non-empty one.
fn complete_a_prompt(h: &mut Harness<'static, StudioApp>) {
    h.get_by_label("Prompt").click();
    h.step();
    h.get_by_label("Prompt").type_text("def add(a, b):");
    h.step();
    assert_eq!(h.state().try_it.input, "def add(a, b):");
    h.get_by_label("Complete").click();
    step_until(h, Duration::from_secs(300), |a| a.try_it.output.is_some());
    match &h.state().try_it.output {
        Some(Ok(text)) => assert!(!text.is_empty()),
        other => panic!("no completion: {other:?}"),
    }
}

/// Clicks an export button and waits until the export has succeeded.
/// Picks `format` in the "Export as" box, then exports through `button` and waits.
fn export_as(h: &mut Harness<'static, StudioApp>, format: &str, button: &str) {
    h.get_by_role_and_label(egui::accesskit::Role::ComboBox, "Export as")
        .click();
    step_frames(h, 3);
    h.get_by_label(format).click();
    step_frames(h, 3);
    export_and_wait(h, button);
}

fn export_and_wait(h: &mut Harness<'static, StudioApp>, button: &str) {
    h.get_by_label(button).click();
    step_until(h, Duration::from_secs(300), |a| {
        matches!(a.export, ExportState::Done { .. } | ExportState::Failed(_))
    });
    assert!(
        matches!(h.state().export, ExportState::Done { .. }),
        "{:?}",
        h.state().export
    );
}

fn start_disabled(h: &Harness<'static, StudioApp>) -> bool {
    h.get_by_label("Start").accesskit_node().is_disabled()
}

#[test]
fn tiny_run_fills_curves_palette_and_table_then_exports() {
    let runs = tempfile::tempdir().unwrap();
    let export_dir = runs.path().join("exported");
    let mut dialogs = ScriptedDialogs::default();
    dialogs.answers.push_back(Some(export_dir.clone()));
    let mut h = trained_tiny_run(runs.path(), dialogs);
    let app = h.state();
    assert!(
        (app.run.progress() - 1.0).abs() < 1e-6,
        "progress {}",
        app.run.progress()
    );
    assert_eq!(app.run.losses["maxnet"].len(), 8);
    assert_eq!(app.run.losses["minnet"].len(), 4);
    assert!(!app.run.dev_accuracy["maxnet"].is_empty());
    assert_eq!(app.run.stage_marks.len(), 3);

    h.get_by_label("Pareto").click();
    h.step();
    h.step();
    // Every measured subnet is a row of the table (its shape, then its spec); clicking the
    // shape selects it everywhere.
    assert!(h.query_by_label("layers=1,2;heads=6;ffn=768").is_some());
    let row = h.get_by_label("2 L · 6 h · FFN 768");
    row.click();
    h.step();
    assert_eq!(
        h.state().selection.as_deref(),
        Some("layers=1,2;heads=6;ffn=768")
    );
    h.get_by_label("Export selected…").click();
    step_until(&mut h, Duration::from_secs(120), |a| {
        matches!(a.export, ExportState::Done { .. } | ExportState::Failed(_))
    });
    match &h.state().export {
        ExportState::Done { folder, files } => {
            assert_eq!(folder, &export_dir);
            assert_eq!(files.len(), 4);
            assert!(export_dir.join("model.safetensors").is_file());
            // The exported folder loads as a plain model and predicts.
            let model =
                mlfs_studio::export::classifier::DenseClassifier::load(&export_dir).unwrap();
            let preds = mlfs_studio::runs::predict::predict_texts(
                &model,
                &["A wonderful, moving film.".to_string()],
            )
            .unwrap();
            assert_eq!(preds.len(), 1);
            // The data's 0/1 labels carry the names the configuration gives them.
            assert!(["negative", "positive"].contains(&preds[0].label.as_str()));
        }
        other => panic!("export did not succeed: {other:?}"),
    }
    assert!(h.query_by_label_contains("Exported to").is_some());

    // "Try it" classifies a sentence with the selected subnet, off the UI thread.
    h.get_by_label("Try it").click();
    h.step();
    h.get_by_label("Sentence").click();
    h.step();
    h.get_by_label("Sentence")
        .type_text("A wonderful, moving film.");
    h.step();
    h.get_by_label("Classify").click();
    step_until(&mut h, Duration::from_secs(120), |a| {
        a.try_it.output.is_some()
    });
    match &h.state().try_it.output {
        Some(Ok(text)) => {
            assert!(text.starts_with("label: "), "{text}");
            // One probability line per class, summing to 1.
            let total: f64 = text
                .lines()
                .skip(1)
                .filter_map(|l| l.rsplit(": ").next()?.parse::<f64>().ok())
                .sum();
            assert!((total - 1.0).abs() < 1e-2, "{text}");
        }
        other => panic!("no classification: {other:?}"),
    }
}

#[test]
fn pause_holds_the_step_counter_resume_continues_and_stop_ends() {
    let runs = tempfile::tempdir().unwrap();
    let app = StudioApp::new(
        tiny_config([500, 2, 2]),
        Box::new(ScriptedDialogs::default()),
        runs.path().to_path_buf(),
    );
    let mut h = harness(app);
    h.step();
    h.get_by_label("Start").click();
    step_until(&mut h, Duration::from_secs(120), |a| a.run.global_step >= 2);
    h.get_by_label("Pause").click();
    step_until(&mut h, Duration::from_secs(60), |a| {
        a.run.status == RunStatus::Paused
    });
    let held = h.state().run.global_step;
    for _ in 0..40 {
        h.step();
        std::thread::sleep(Duration::from_millis(25));
    }
    assert_eq!(h.state().run.global_step, held, "steps ran while paused");
    h.get_by_label("Resume").click();
    step_until(&mut h, Duration::from_secs(60), |a| {
        a.run.global_step > held
    });
    h.get_by_label("Stop").click();
    step_until(&mut h, Duration::from_secs(60), |a| {
        a.run.status == RunStatus::Stopped && a.handle.is_none()
    });
    assert!(h.state().run.global_step < 500);
    assert!(!start_disabled(&h), "Start stays usable after a stop");
}

#[test]
fn invalid_value_disables_start_and_fixing_it_reenables_it() {
    let runs = tempfile::tempdir().unwrap();
    let app = StudioApp::new(
        tiny_config([2, 2, 2]),
        Box::new(ScriptedDialogs::default()),
        runs.path().to_path_buf(),
    );
    let mut h = harness(app);
    h.step();
    assert!(!start_disabled(&h));
    let field = h.get_by_label("Heads choices");
    field.focus();
    h.step();
    h.get_by_label("Heads choices").type_text("3, x");
    h.step();
    h.step();
    assert!(
        start_disabled(&h),
        "Start enabled with an invalid heads list"
    );
    assert!(h
        .query_by_label_contains("'x' is not a whole number")
        .is_some());
    h.key_combination_modifiers(egui::Modifiers::COMMAND, &[egui::Key::A]);
    h.step();
    h.get_by_label("Heads choices").type_text("3, 6, 12");
    h.step();
    h.step();
    assert!(
        !start_disabled(&h),
        "Start still disabled: {:?}",
        h.state().errors
    );
    assert_eq!(h.state().config.space.heads, vec![3, 6, 12]);
}

#[test]
fn presets_save_and_load_round_trip_every_field() {
    let runs = tempfile::tempdir().unwrap();
    let preset = runs.path().join("mine.ron");
    let mut dialogs = ScriptedDialogs::default();
    dialogs.answers.push_back(Some(preset.clone()));
    dialogs.answers.push_back(Some(preset.clone()));
    let mut config = tiny_config([3, 4, 5]);
    // Move every field away from its default so a dropped field would show.
    config.seed = 7;
    config.rank = 4;
    config.lora_alpha = 12.0;
    config.gamma = 0.25;
    config.distill.alpha = 0.8;
    config.distill.beta = 0.2;
    config.distill.temperature = 2.0;
    config.distill.projection_dim = 64;
    config.distill.projection = mlfs_studio::train::config::ProjectionKind::Fixed;
    config.random_subnets = 3;
    config.space.heads = vec![6, 12];
    config.rewire = false;
    config.weight_decay = 0.05;
    config.grad_clip = 0.5;
    config.palette.latency_runs = 25;
    config.stages[1].budget = mlfs_studio::train::config::Budget::Epochs(1);
    let mut saved = config.clone();
    // The preset takes its file's name.
    saved.name = "mine".into();
    let app = StudioApp::new(config, Box::new(dialogs), runs.path().to_path_buf());
    let mut h = harness(app);
    h.step();
    h.get_by_label("Save preset as…").click();
    h.step();
    h.step();
    assert!(preset.is_file(), "no preset written");
    // Change the window's configuration, then open the saved preset again: the edits are
    // dropped once the user says so.
    h.state_mut().config = tiny_config([1, 1, 1]);
    h.get_by_label("Open preset…").click();
    for _ in 0..3 {
        h.step();
    }
    h.get_by_label("Drop edits and load mine").click();
    h.step();
    h.step();
    assert_eq!(h.state().config, saved);
    assert_eq!(h.state().preset_path.as_deref(), Some(preset.as_path()));
}

/// A decoder run in the studio: a 2-layer slice of SmolLM2 (scripts/fetch-smollm2.sh) trains,
/// is compared with an earlier run, completes a prompt in "Try it" and exports as GGUF.
#[test]
fn decoder_run_overlays_tries_and_exports() {
    use mlfs_studio::export::decoder::GgufType;
    use mlfs_studio::export::decoder_subnet::ExportFormat;
    use mlfs_studio::model::llama::student::StudentInit;
    use mlfs_studio::train::config::DecoderConfig;

    let runs = tempfile::tempdir().unwrap();
    // An earlier run in the runs folder, as `metrics.jsonl` lines, to overlay.
    let earlier = runs.path().join("earlier-run");
    std::fs::create_dir(&earlier).unwrap();
    std::fs::write(
        earlier.join("metrics.jsonl"),
        "{\"event\":\"lm_eval\",\"stage\":0,\"global_step\":0,\"results\":[{\"role\":\"student\",\"subnet\":\"s\",\"loss\":9.5,\"perplexity\":13000.0,\"top1_accuracy\":0.1}]}\n",
    )
    .unwrap();
    let gguf_out = runs.path().join("student.gguf");
    let mut dialogs = ScriptedDialogs::default();
    dialogs.answers.push_back(Some(gguf_out.clone()));

    let a = common::assets();
    let mut c = common::small_config([3, 0, 0], 2, 32);
    c.name = "ui-decoder".into();
    c.teacher = common::smollm2_gguf().clone();
    c.data.train = a.join("python-code/train.jsonl");
    c.data.dev = a.join("python-code/valid.jsonl");
    c.distill.beta = 1e-5;
    c.lm = Some(DecoderConfig {
        train_base_weights: true,
        init: StudentInit::Sliced,
        students: vec!["layers=0,29;heads=6;ffn=1024".into()],
        eval_blocks: 2,
        latency_prompt: 8,
        latency_new_tokens: 2,
        recompute_activations: true,
    });
    let app = StudioApp::new(c, Box::new(dialogs), runs.path().to_path_buf());
    let mut h = harness(app);
    h.step();
    assert!(h.state().errors.is_empty(), "{:?}", h.state().errors);
    h.get_by_label("earlier-run").click();
    h.step();
    assert_eq!(h.state().overlays.shown(None).count(), 1);
    h.get_by_label("Start").click();
    step_until(&mut h, Duration::from_secs(900), |a| {
        a.run.status == RunStatus::Finished
            && a.run.decoder_entries.len() == 2
            && a.handle.is_none()
    });
    let app = h.state();
    assert_eq!(
        app.run.val_loss["student"].len(),
        2,
        "before and after training"
    );
    assert!(app.run.teacher_val_loss.is_some());
    let roles: Vec<&str> = app
        .run
        .decoder_entries
        .iter()
        .map(|e| e.role.as_str())
        .collect();
    assert_eq!(roles, ["teacher", "student"]);

    h.get_by_label("Try it").click();
    h.step();
    complete_a_prompt(&mut h);

    h.get_by_label("Pareto").click();
    h.state_mut().decoder.format = ExportFormat::Gguf(GgufType::F16);
    h.step();
    export_and_wait(&mut h, "Export…");
    let back = mlfs_studio::model::llama::DecoderTeacher::load(&gguf_out).unwrap();
    assert_eq!(back.decoder.config.num_hidden_layers, 2);
}

/// A decoder palette in the studio: a sampled space of SmolLM2 trains and is measured; a small
/// subnet picked in the Pareto tab (its table row, linked to the charts' selection) exports as
/// GGUF through the dialog and completes a prompt in "Try it".
#[test]
fn decoder_palette_subnet_exports_as_gguf_and_completes_a_prompt() {
    let runs = tempfile::tempdir().unwrap();
    let gguf_out = runs.path().join("small.gguf");
    let mut dialogs = ScriptedDialogs::default();
    for path in [
        gguf_out.clone(),
        runs.path().join("fronts.svg"),
        runs.path().join("lm.csv"),
    ] {
        dialogs.answers.push_back(Some(path));
    }
    let mut c = common::decoder_space_config([1, 1, 1], vec![768], 1);
    c.name = "ui-decoder-palette".into();
    c.random_subnets = 0;
    let app = StudioApp::new(c, Box::new(dialogs), runs.path().to_path_buf());
    let mut h = harness(app);
    h.step();
    assert!(h.state().errors.is_empty(), "{:?}", h.state().errors);
    h.get_by_label("Start").click();
    // The measurement says how far it is, with an ETA, and can be stopped.
    step_until(&mut h, Duration::from_secs(900), |a| {
        a.run.status == RunStatus::MeasuringPalette && a.run.palette_done() >= 2
    });
    let status = common::text_with(&h, "Measuring palette:").unwrap_or_default();
    assert!(
        status.contains(" of 6 subnets") && status.contains("ETA"),
        "{status}"
    );
    assert!(!h.get_by_label("Stop").accesskit_node().is_disabled());
    // The teacher, 4 subnets (depth 2 or 30, 6 or 9 heads) and the maxnet (full FFN).
    step_until(&mut h, Duration::from_secs(900), |a| {
        a.run.status == RunStatus::Finished && a.handle.is_none()
    });
    assert_eq!(h.state().run.decoder_entries.len(), 6);
    h.get_by_label("Pareto").click();
    step_frames(&mut h, 2);
    let small = "layers=0,29;heads=6;ffn=768";
    assert_ne!(h.state().selection.as_deref(), Some(small));
    // Select it on the size chart: press and release the pointer on its dot.
    let dot = point_position(&h.ctx, Cost::Size, small).expect("the subnet's dot is drawn");
    h.hover_at(dot);
    h.step();
    h.drag_at(dot);
    h.step();
    h.drop_at(dot);
    step_frames(&mut h, 2);
    assert_eq!(h.state().selection.as_deref(), Some(small));
    // The table follows: its row for that subnet is the selected one.
    let row = h.get_by_label("2 L · 6 h · FFN 768");
    let toggled = row.accesskit_node().toggled();
    assert_eq!(toggled, Some(egui::accesskit::Toggled::True));
    export_as(&mut h, "GGUF f16", "Export…");
    let back = mlfs_studio::model::llama::DecoderTeacher::load(&gguf_out).unwrap();
    assert_eq!(back.decoder.config.num_hidden_layers, 2);
    assert_eq!(back.decoder.config.num_attention_heads, 6);
    // The chart and the table to take away.
    h.get_by_label("Save chart as SVG…").click();
    step_frames(&mut h, 2);
    let svg = std::fs::read_to_string(runs.path().join("fronts.svg")).unwrap();
    assert!(svg.contains("validation loss (nats)") && svg.trim_end().ends_with("</svg>"));
    h.get_by_label("Save table as CSV…").click();
    step_frames(&mut h, 2);
    let table = mlfs_studio::eval::decoder::read_csv(&runs.path().join("lm.csv")).unwrap();
    assert_eq!(table.len(), 6);

    h.get_by_label("Try it").click();
    h.step();
    assert!(h
        .query_by_label_contains(&format!("subnet {small}"))
        .is_some());
    complete_a_prompt(&mut h);
}

#[test]
fn device_combo_offers_the_cpu_and_says_why_there_is_no_gpu() {
    if mlfs_studio::model::device::cuda_compiled() {
        return; // A GPU build lists what it finds; this checks the CPU build's wording.
    }
    let runs = tempfile::tempdir().unwrap();
    let mut config = tiny_config([2, 2, 2]);
    config.device = mlfs_studio::train::config::DeviceChoice::Auto;
    let app = StudioApp::new(
        config,
        Box::new(ScriptedDialogs::default()),
        runs.path().to_path_buf(),
    );
    let mut h = harness(app);
    h.step();
    let combo = h.get_by_label("Device");
    let node = combo.accesskit_node();
    let shown = format!("{:?} {:?}", node.value(), node.label());
    assert!(shown.contains("CPU") && !shown.contains("GPU"), "{shown}");
    assert!(h
        .query_by_label_contains("built without GPU support: build it with scripts/build-cuda.sh")
        .is_some());
    // Bf16 needs a GPU: choosing it is an inline error that disables Start.
    h.state_mut().config.precision = mlfs_studio::model::device::Precision::Bf16;
    h.state_mut().revalidate();
    h.step();
    assert!(start_disabled(&h), "Start enabled with Bf16 on the CPU");
    assert!(h.query_by_label_contains("Bf16 needs a GPU").is_some());
}

#[test]
fn a_diverging_run_shows_a_banner_and_resumes_with_the_fixed_settings() {
    // A sound first stage (checkpointed at its end), then lr 0.99 without warm-up or clipping.
    let mut c = common::small_config([4, 30, 0], 16, 32);
    c.name = "ui-diverge".into();
    c.stages[1].learning_rate = 0.99;
    c.stages[1].warmup_ratio = 0.0;
    c.grad_clip = 0.0;
    c.rewire = false;
    c.palette.evaluate_at_end = false;
    let runs = tempfile::tempdir().unwrap();
    let app = StudioApp::new(
        c,
        Box::new(ScriptedDialogs::default()),
        runs.path().to_path_buf(),
    );
    let mut h = harness(app);
    h.step();
    h.get_by_label("Start").click();
    step_until(&mut h, Duration::from_secs(300), |a| {
        a.run.divergence.is_some() && !a.run.status.is_active()
    });
    let divergence = h.state().run.divergence.clone().unwrap();
    assert!(
        divergence.reason.contains("stage 1"),
        "{}",
        divergence.reason
    );
    let last_good = divergence.last_good_step.expect("stage 0 was checkpointed");
    assert!(h.query_by_label_contains("Training diverged").is_some());
    // Open settings shows the run's own settings; the user lowers the learning rate.
    h.state_mut().config.stages[1].learning_rate = 0.5;
    h.get_by_label("Open settings").click();
    h.step();
    assert_eq!(h.state().config.stages[1].learning_rate, 0.99);
    assert!(h.state().reveal_stages);
    h.step();
    assert!(!h.state().reveal_stages, "the panel scrolled to the stages");
    h.state_mut().config.stages[1].learning_rate = 1e-3;
    h.state_mut().revalidate();
    h.step();
    h.get_by_label(&format!("Resume from step {last_good}"))
        .click();
    step_until(&mut h, Duration::from_secs(300), |a| {
        a.run.status == RunStatus::Finished && a.handle.is_none()
    });
    assert_eq!(h.state().run.start_step, last_good);
    assert_eq!(h.state().run.global_step, 34);
    assert!(h.state().run.divergence.is_none());
    let run_dir = h.state().run.run_dir.clone().unwrap();
    let stored = RunConfig::load(&run_dir.join("config.ron")).unwrap();
    assert_eq!(stored.stages[1].learning_rate, 1e-3);
}

#[test]
fn a_finished_run_keeps_its_palette_time_names_and_budget_pick() {
    let runs = tempfile::tempdir().unwrap();
    let mut h = trained_tiny_run(runs.path(), ScriptedDialogs::default());
    // A readable folder name: the preset's name and the local date and time.
    let run_dir = h.state().run.run_dir.clone().unwrap();
    let name = run_dir.file_name().unwrap().to_string_lossy().to_string();
    let stamp = name
        .strip_prefix("ui-test-")
        .expect("named after the preset");
    assert_eq!(stamp.len(), "2026-11-30_14-05-09".len(), "{name}");
    assert!(
        stamp
            .chars()
            .all(|c| c.is_ascii_digit() || c == '-' || c == '_'),
        "{name}"
    );
    // The clock stops when training ends.
    let elapsed = h.state().run.elapsed();
    std::thread::sleep(Duration::from_millis(1100));
    h.step();
    assert_eq!(h.state().run.elapsed(), elapsed, "elapsed kept counting");
    assert!(h.state().run.eta().is_none());

    // Measuring again asks first; Cancel keeps everything.
    h.get_by_label("Pareto").click();
    h.step();
    h.get_by_label("Re-evaluate palette").click();
    // The click, the command, then the modal\'s sizing pass and its first visible frame.
    step_frames(&mut h, 4);
    assert!(h
        .query_by_label_contains("Measure the palette again?")
        .is_some());
    h.get_by_label("Cancel").click();
    h.step();
    h.step();
    assert!(!h.state().confirm_reevaluation);
    assert_eq!(h.state().run.status, RunStatus::Finished);
    // Confirmed, then stopped at once with Escape: the earlier rows of the palette stay.
    let csv = run_dir.join("palette.csv");
    let rows_before = mlfs_studio::eval::palette::read_csv(&csv).unwrap();
    h.get_by_label("Re-evaluate palette").click();
    step_frames(&mut h, 4);
    h.get_by_label("Measure again").click();
    h.step();
    assert_eq!(h.state().run.status, RunStatus::MeasuringPalette);
    h.key_press(egui::Key::Escape);
    step_until(&mut h, Duration::from_secs(120), |a| a.handle.is_none());
    let rows_after = mlfs_studio::eval::palette::read_csv(&csv).unwrap();
    assert_eq!(
        rows_after.len(),
        rows_before.len(),
        "rows lost from palette.csv"
    );
    assert_eq!(
        h.state().run.palette.len(),
        rows_before.len(),
        "the view lost rows"
    );
    assert!(
        h.state()
            .run
            .logs
            .iter()
            .any(|l| l.message.contains("measurement stopped after")),
        "no word that the measurement stopped early"
    );

    // A budget starts at the palette's median, in the size axis's unit; the pick among equally
    // accurate subnets is the cheapest; an impossible budget says that nothing fits.
    h.get_by_label("Size budget (M params)").click();
    h.step();
    let budget = h.state().pareto.budget.size.expect("a size budget");
    let mut params: Vec<f64> = rows_after
        .iter()
        .map(|e| e.params_total as f64 / 1e6)
        .collect();
    params.sort_by(f64::total_cmp);
    assert_eq!(budget, params[params.len() / 2]);
    assert!(h.query_by_label_contains("Best within budget").is_some());
    h.state_mut().pareto.budget.size = Some(0.001);
    h.step();
    assert!(h
        .query_by_label_contains("Nothing fits the budget")
        .is_some());

    // Try it names the classes as the data's label_names do; Enter classifies.
    h.get_by_label("Try it").click();
    h.step();
    h.get_by_label("Sentence").focus();
    h.step();
    h.get_by_label("Sentence")
        .type_text("A wonderful, moving film.");
    h.step();
    h.key_press(egui::Key::Enter);
    step_until(&mut h, Duration::from_secs(120), |a| {
        a.try_it.output.is_some()
    });
    let output = format!("{:?}", h.state().try_it.output);
    assert!(
        output.contains("positive") && output.contains("negative"),
        "{output}"
    );
}

#[test]
fn a_resumed_run_keeps_its_history_and_shows_its_own_settings_read_only() {
    let runs = tempfile::tempdir().unwrap();
    let mut config = tiny_config([6, 3, 3]);
    config.checkpoint_every = 2;
    config.palette.evaluate_at_end = false;
    let app = StudioApp::new(
        config.clone(),
        Box::new(ScriptedDialogs::default()),
        runs.path().to_path_buf(),
    );
    let mut h = harness(app);
    h.step();
    h.get_by_label("Start").click();
    step_until(&mut h, Duration::from_secs(300), |a| a.run.global_step >= 3);
    // The panel is read-only while the run trains.
    assert!(h
        .get_by_label("Stage 0 learning rate")
        .accesskit_node()
        .is_disabled());
    // Closing the window while it trains: not yet; the run stops (checkpoint kept) and the
    // window says so, then may close.
    assert!(!h.state_mut().may_close());
    assert_eq!(h.state().run.status, RunStatus::Stopping);
    let notice = h.state().notice.clone().unwrap_or_default();
    assert!(notice.contains("closing the window"), "{notice}");
    step_until(&mut h, Duration::from_secs(120), |a| {
        a.run.status == RunStatus::Stopped && a.handle.is_none()
    });
    assert!(h.state().closing && h.state_mut().may_close());
    h.state_mut().closing = false;
    let run_dir = h.state().run.run_dir.clone().unwrap();
    // Another preset in the panel; resuming shows the run's own settings again.
    h.state_mut().set_config(tiny_config([9, 9, 9]));
    h.state_mut()
        .handle(mlfs_studio::ui::commands::UiCommand::ResumeRun(
            run_dir.clone(),
        ));
    step_until(&mut h, Duration::from_secs(300), |a| {
        a.run.status == RunStatus::Finished && a.handle.is_none()
    });
    assert_eq!(h.state().config.stages, config.stages);
    let maxnet = &h.state().run.losses["maxnet"];
    assert_eq!(
        maxnet.first().map(|p| p[0]),
        Some(1.0),
        "history before the resume lost"
    );
    let steps: Vec<f64> = maxnet.iter().map(|p| p[0]).collect();
    let mut unique = steps.clone();
    unique.dedup();
    assert_eq!(steps, unique, "steps after the checkpoint drawn twice");
    assert_eq!(h.state().run.global_step, 12);
}

#[test]
fn a_run_reopened_from_the_runs_tab_comes_back_whole_and_its_data_can_be_saved() {
    let runs = tempfile::tempdir().unwrap();
    // First session: train a tiny run, then close the window's state.
    let h = trained_tiny_run(runs.path(), ScriptedDialogs::default());
    let run_dir = h.state().run.run_dir.clone().unwrap();
    let losses = h.state().run.losses.clone();
    drop(h);

    // Second session: the Runs tab lists it; opening it brings curves, palette and export back.
    let out = tempfile::tempdir().unwrap();
    let mut dialogs = ScriptedDialogs::default();
    for name in [
        "exported",
        "exported-onnx",
        "palette.csv",
        "curves.csv",
        "loss.png",
        "pareto.png",
        "pareto",
    ] {
        dialogs.answers.push_back(Some(out.path().join(name)));
    }
    let app = StudioApp::new(
        tiny_config([1, 1, 1]),
        Box::new(dialogs),
        runs.path().to_path_buf(),
    );
    let mut h = harness(app);
    h.step();
    h.get_by_label("Runs").click();
    h.step();
    let row = &h.state().runs.rows[0];
    assert_eq!(row.status, "finished");
    assert_eq!(row.preset, "ui-test");
    assert!(row.best.is_some() && row.front_size >= 1, "{row:?}");
    let name = run_dir.file_name().unwrap().to_string_lossy().to_string();
    h.get_by_label(&name).click();
    h.step();
    h.step();
    assert_eq!(h.state().run.run_dir.as_deref(), Some(run_dir.as_path()));
    // The same curves (values read back from metrics.jsonl, equal to JSON's printing precision).
    let reopened = &h.state().run.losses;
    assert_eq!(
        reopened.keys().collect::<Vec<_>>(),
        losses.keys().collect::<Vec<_>>()
    );
    for (role, series) in &losses {
        assert_eq!(reopened[role].len(), series.len(), "{role}");
        for (a, b) in reopened[role].iter().zip(series) {
            assert!(
                a[0] == b[0] && (a[1] - b[1]).abs() < 1e-12,
                "{role}: {a:?} vs {b:?}"
            );
        }
    }
    assert_eq!(h.state().run.palette.len(), PALETTE_ROWS);
    assert_eq!(
        h.state().config.name,
        "ui-test",
        "the run's own settings are shown"
    );

    h.get_by_label("Pareto").click();
    h.step();
    // The shape is the row's selectable cell (the spec ends the row).
    h.get_by_label("2 L · 6 h · FFN 768").click();
    h.step();
    h.get_by_label("Export selected…").click();
    step_until(&mut h, Duration::from_secs(120), |a| {
        matches!(a.export, ExportState::Done { .. } | ExportState::Failed(_))
    });
    assert!(out.path().join("exported/model.safetensors").is_file());
    // The same subnet as ONNX, chosen in the format combo beside the button.
    h.get_by_role_and_label(egui::accesskit::Role::ComboBox, "Export as")
        .click();
    step_frames(&mut h, 3);
    h.get_by_label("ONNX (opset 17)").click();
    step_frames(&mut h, 3);
    h.get_by_label("Export selected…").click();
    step_until(&mut h, Duration::from_secs(120), |a| match &a.export {
        ExportState::Done { folder, .. } => folder.ends_with("exported-onnx"),
        ExportState::Failed(_) => true,
        _ => false,
    });
    let onnx = out.path().join("exported-onnx/model.onnx");
    assert!(onnx.is_file(), "{:?}", h.state().export);
    let model = candle_onnx::read_file(&onnx).unwrap();
    assert_eq!(model.graph.unwrap().output[0].name, "logits");
    h.get_by_label("Save table as CSV…").click();
    h.step();
    h.step();
    let table = mlfs_studio::eval::palette::read_csv(&out.path().join("palette.csv")).unwrap();
    assert_eq!(table.len(), PALETTE_ROWS);
    h.get_by_label("Training").click();
    h.step();
    h.get_by_label("Save curves as CSV…").click();
    h.step();
    h.step();
    let curves = std::fs::read_to_string(out.path().join("curves.csv")).unwrap();
    let mut lines = curves.lines();
    assert_eq!(lines.next(), Some("chart,series,step,value"));
    let maxnet_rows = lines.filter(|l| l.starts_with("loss,maxnet,")).count();
    assert_eq!(maxnet_rows, losses["maxnet"].len());
    h.get_by_label("Save loss chart as PNG…").click();
    h.step();
    h.step();
    let loss_png = std::fs::read(out.path().join("loss.png")).unwrap();
    assert_eq!(
        &loss_png[..8],
        b"\x89PNG\r\n\x1a\n",
        "the loss chart is not a PNG"
    );

    // The size chart as PNG and SVG (a name without extension gets one).
    h.get_by_label("Pareto").click();
    h.step();
    h.get_by_label("Save chart as PNG…").click();
    h.step();
    h.step();
    h.get_by_label("Save chart as SVG…").click();
    h.step();
    h.step();
    let png = std::fs::read(out.path().join("pareto.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&png[12..16], b"IHDR");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (960, 600));
    assert_eq!(&png[png.len() - 8..png.len() - 4], b"IEND", "truncated PNG");
    let svg = std::fs::read_to_string(out.path().join("pareto.svg")).unwrap();
    assert!(svg.trim_start().starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains(&name), "the run is not named in the SVG");
    assert!(svg.contains("parameters (M)") && svg.contains("dev accuracy"));

    // Rename: the dialog opens with the old name; a new one renames the folder and the view.
    h.get_by_label("Runs").click();
    h.step();
    // The opened run's own settings, read-only, under the table.
    assert!(h
        .query_by_label_contains(&format!("Settings of {name} (read-only)"))
        .is_some());
    h.get_by_label("Actions").click();
    step_frames(&mut h, 3);
    h.get_by_label("Rename…").click();
    step_frames(&mut h, 4);
    assert!(h.query_by_label_contains("Rename this run").is_some());
    if let Some((_, typed)) = h.state_mut().runs.renaming.as_mut() {
        *typed = "gamma-sweep".into();
    }
    h.step();
    h.get_by_label("Rename").click();
    // The click, the command, then the dialog's fade-out (its backdrop takes clicks meanwhile).
    step_frames(&mut h, 6);
    let renamed = runs.path().join("gamma-sweep");
    assert!(renamed.join("palette.csv").is_file() && !run_dir.exists());
    assert_eq!(h.state().run.run_dir.as_deref(), Some(renamed.as_path()));
    assert_eq!(h.state().runs.rows[0].name, "gamma-sweep");

    // Delete asks first, then moves the folder to the runs folder's trash.
    h.get_by_label("Actions").click();
    step_frames(&mut h, 3);
    h.get_by_label("Delete…").click();
    step_frames(&mut h, 4);
    h.get_by_label("Move to trash").click();
    h.step();
    h.step();
    assert!(!renamed.exists());
    assert!(runs.path().join(".trash").join("gamma-sweep").is_dir());
    assert!(h.state().runs.rows.is_empty());
}

/// Per-layer widths from the studio (issue 25): choose Per layer in the search space, train a
/// short run whose palette lists a per-layer subnet, see its widths layer by layer in the
/// table, and export it as ONNX (a Hugging Face folder cannot hold it).
#[test]
fn a_per_layer_run_is_chosen_trained_shown_and_exported_as_onnx() {
    use mlfs_studio::mlfs::config::WidthMode;
    let runs = tempfile::tempdir().unwrap();
    let export_dir = runs.path().join("per-layer-onnx");
    let mut dialogs = ScriptedDialogs::default();
    dialogs.answers.push_back(Some(export_dir.clone()));
    let per_layer = "layers=0,1,2;heads=12,6,3;ffn=1536,768,384";
    let mut config = tiny_config([4, 2, 2]);
    config.palette.subnets = vec![per_layer.into(), "layers=2;heads=3;ffn=384".into()];
    let app = StudioApp::new(config, Box::new(dialogs), runs.path().to_path_buf());
    let mut h = harness(app);
    h.step();
    // The search-space section sits below the fold of the settings panel.
    h.get_by_role_and_label(egui::accesskit::Role::ComboBox, "Widths")
        .scroll_to_me();
    step_frames(&mut h, 3);
    h.get_by_role_and_label(egui::accesskit::Role::ComboBox, "Widths")
        .click();
    step_frames(&mut h, 3);
    h.get_by_label("Per layer").click();
    step_frames(&mut h, 3);
    assert_eq!(h.state().config.space.widths, WidthMode::PerLayer);
    h.get_by_label("Start").click();
    step_until(&mut h, Duration::from_secs(600), |a| {
        a.run.status == RunStatus::Finished
            && a.run.palette.len() == PALETTE_ROWS
            && a.handle.is_none()
    });
    let run_dir = h.state().run.run_dir.clone().expect("a run folder");
    let saved = mlfs_studio::train::config::RunConfig::load(&run_dir.join("config.ron")).unwrap();
    assert_eq!(saved.space.widths, WidthMode::PerLayer);

    h.get_by_label("Pareto").click();
    step_frames(&mut h, 2);
    assert!(
        h.query_by_label("12/6/3").is_some(),
        "heads not shown per layer"
    );
    assert!(
        h.query_by_label("1536/768/384").is_some(),
        "FFN not shown per layer"
    );
    // Hovering the subnet shows its layer chart against the teacher's widths.
    let shape = "3 L · 12/6/3 h · FFN 1536/768/384";
    h.get_by_label(shape).hover();
    step_frames(&mut h, 4);
    let chart = format!(
        "{}: 3 of 3 layers kept; heads 12/6/3 of 12; FFN 1536/768/384 of 1536",
        mlfs_studio::ui::layer_chart::LABEL
    );
    assert!(
        h.query_by_label_contains(&chart).is_some(),
        "no layer chart for the hovered subnet"
    );
    h.get_by_label(shape).click();
    h.step();
    assert_eq!(h.state().selection.as_deref(), Some(per_layer));
    export_as(&mut h, "ONNX (opset 17)", "Export selected…");
    let model = mlfs_studio::export::classifier::DenseClassifier::load(&export_dir).unwrap();
    assert_eq!(model.config.layer_heads, Some(vec![12, 6, 3]));
    assert_eq!(
        model.config.layer_intermediate_sizes,
        Some(vec![1536, 768, 384])
    );
}

#[test]
fn a_search_under_a_size_budget_shows_its_progress_and_its_subnet_exports() {
    // The per-layer fixture run (tests/old_runs.rs says how it was made), opened in the studio.
    let runs = tempfile::tempdir().unwrap();
    let run_dir = runs.path().join("per-layer-run");
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/per-layer-run");
    common::copy_dir(&fixture, &run_dir);
    let export_dir = runs.path().join("searched-onnx");
    let mut dialogs = ScriptedDialogs::default();
    dialogs.answers.push_back(Some(export_dir.clone()));
    let app = StudioApp::new(
        tiny_config([4, 2, 2]),
        Box::new(dialogs),
        runs.path().to_path_buf(),
    );
    let mut h = harness(app);
    h.state_mut().open_run(&run_dir);
    h.step();
    h.get_by_label("Pareto").click();
    step_frames(&mut h, 2);
    h.get_by_label("Search under a budget").click();
    step_frames(&mut h, 2);
    assert!(
        h.get_by_label("Start search")
            .accesskit_node()
            .is_disabled(),
        "no budget set, nothing to search under"
    );
    // The budget control's size limit is the search's budget (15 M parameters: room for
    // 3-layer per-layer subnets, not for the widest).
    h.get_by_label("Size budget (M params)").click();
    step_frames(&mut h, 2);
    assert!(h.state().pareto.budget.size.is_some());
    let limit = 15.0;
    h.state_mut().pareto.budget.size = Some(limit);
    h.state_mut().search.evaluations = 24;
    h.state_mut().search.top_k = 2;
    h.get_by_label("Start search").click();
    step_until(&mut h, Duration::from_secs(300), |a| {
        !a.search.candidates.is_empty()
    });
    assert!(h.query_by_label_contains("candidates evaluated").is_some());
    step_until(&mut h, Duration::from_secs(600), |a| !a.search.is_running());
    assert_eq!(h.state().search.error, None);
    let result = h.state().search.result.clone().expect("a result");
    assert_eq!(result.evaluations, 24);
    assert!(h.query_by_label_contains("Predicted (ms)").is_some());
    // The searched subnets joined the palette; the best one is within the budget, measured.
    step_frames(&mut h, 2);
    let best = result
        .best_searched
        .expect("a searched subnet within budget");
    assert!(best.params as f64 / 1e6 <= limit);
    let row = h
        .state()
        .run
        .palette
        .iter()
        .find(|e| e.subnet == best.subnet)
        .cloned()
        .expect("the searched subnet is a palette row");
    assert_eq!(row.role, "searched");
    // Selected in the table like any other subnet (its shape is the selectable cell), then
    // exported as ONNX, per-layer widths and all.
    let spec: mlfs_studio::model::SubnetSpec = best.subnet.parse().unwrap();
    let shape = spec.shape();
    // The table's cell is the toggle (the verified list shows the same shape as text); it is
    // scrolled into view first, then clicked.
    for click in [false, true] {
        let cell = h
            .get_all_by_label(&shape)
            .find(|n| n.accesskit_node().toggled().is_some())
            .expect("the table's selectable shape");
        if click {
            cell.click();
        } else {
            cell.scroll_to_me();
        }
        step_frames(&mut h, 3);
    }
    assert_eq!(h.state().selection.as_deref(), Some(best.subnet.as_str()));
    export_as(&mut h, "ONNX (opset 17)", "Export selected…");
    let model = mlfs_studio::export::classifier::DenseClassifier::load(&export_dir).unwrap();
    assert_eq!(model.config.num_hidden_layers, spec.layers.len());
}
