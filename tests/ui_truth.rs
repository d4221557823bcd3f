//! The studio shows the truth (issue 27), driven through AccessKit labels: legends in the
//! series' colours with overlays and in small windows, a stopped run resumed from the studio,
//! measurement progress, runs written by another process followed live, presets that keep
//! their names and edits, renames that keep the settings diff, and the Runs table's figures.

use egui_kittest::kittest::{NodeT, Queryable};
use egui_kittest::Harness;
use mlfs_studio::train::config::RunConfig;
use mlfs_studio::ui::app::StudioApp;
use mlfs_studio::ui::dialogs::ScriptedDialogs;
use mlfs_studio::ui::run_view::RunStatus;
use std::path::Path;
use std::time::{Duration, Instant};

mod common;

fn tiny_config(steps: [usize; 3]) -> RunConfig {
    let mut c = common::small_config(steps, 8, 32);
    c.name = "truth-test".into();
    c.eval_every = 2;
    c.checkpoint_every = 2;
    c.rewire_batches = 1;
    c.space.depths = vec![1, 3];
    c.space.heads = vec![3, 12];
    c.space.ffn = vec![384, 1536];
    c
}

fn harness(app: StudioApp, size: [f32; 2]) -> Harness<'static, StudioApp> {
    Harness::builder()
        .with_size(size)
        .build_ui_state(|ui, app: &mut StudioApp| app.show(ui), app)
}

fn app_in(runs: &Path, config: RunConfig, dialogs: ScriptedDialogs) -> StudioApp {
    StudioApp::new(config, Box::new(dialogs), runs.to_path_buf())
}

/// Steps frames (work runs on other threads) until `done` holds or the time is up.
fn step_until(
    h: &mut Harness<'static, StudioApp>,
    limit: Duration,
    what: &str,
    done: impl Fn(&StudioApp) -> bool,
) {
    let started = Instant::now();
    while !done(h.state()) {
        assert!(
            started.elapsed() < limit,
            "timed out waiting for {what}; status {:?}",
            h.state().run.status
        );
        h.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    h.step();
}

/// A studio over the runs folder `runs` in a window of `size`, one frame drawn (the settings
/// are a tiny run's: these tests look at runs already there).
fn studio_over(runs: &Path, size: [f32; 2]) -> Harness<'static, StudioApp> {
    let mut h = harness(
        app_in(runs, tiny_config([1, 1, 1]), ScriptedDialogs::default()),
        size,
    );
    h.step();
    h
}

/// A finished tiny run in `runs`, trained by a studio that is then dropped.
fn finished_run(runs: &Path, config: RunConfig) -> std::path::PathBuf {
    let mut h = harness(
        app_in(runs, config, ScriptedDialogs::default()),
        [1400.0, 900.0],
    );
    h.step();
    h.get_by_label("Start").click();
    step_until(&mut h, Duration::from_secs(600), "the run", |a| {
        a.run.status == RunStatus::Finished && a.handle.is_none()
    });
    h.state().run.run_dir.clone().unwrap()
}

#[test]
fn legends_name_every_series_with_overlays_and_in_a_small_window_and_hide_on_click() {
    let runs = tempfile::tempdir().unwrap();
    let mut config = tiny_config([4, 2, 2]);
    config.palette.evaluate_at_end = false;
    let earlier = finished_run(runs.path(), config.clone());
    let earlier_name = earlier.file_name().unwrap().to_string_lossy().to_string();
    // A second run, shown, with the first one overlaid, in a 1000×700 window.
    let mut h = harness(
        app_in(runs.path(), config, ScriptedDialogs::default()),
        [1000.0, 700.0],
    );
    h.step();
    h.get_by_label("Start").click();
    step_until(&mut h, Duration::from_secs(600), "the second run", |a| {
        a.run.status == RunStatus::Finished && a.handle.is_none()
    });
    // "Compare runs" lists the runs folder (open when it has runs).
    h.get_by_label(&earlier_name).click();
    for _ in 0..3 {
        h.step();
    }
    // The open run's roles and the compared run's, each an entry of the loss legend with its
    // last value (the legend stays with overlays and in this small window).
    for role in ["maxnet", "minnet"] {
        let own = h.query_all_by_label_contains(&format!("{role} ")).count();
        assert!(own >= 2, "{role}: {own} entries (loss and dev legends)");
        let compared = format!("{earlier_name} · {role} ");
        assert!(
            h.query_all_by_label_contains(&compared).count() >= 2,
            "no legend entry for {compared}"
        );
    }
    assert!(h.query_by_label("stage boundary").is_some());
    // A click on an entry hides its series; another shows it again.
    let entry = h
        .query_all_by_label_contains("maxnet ")
        .find(|n| !n.accesskit_node().label().unwrap_or_default().contains('·'))
        .map(|n| n.accesskit_node().label().unwrap_or_default())
        .unwrap();
    h.get_by_label(&entry).click();
    h.step();
    assert!(h.state().training.hidden.contains("loss/maxnet"));
    h.get_by_label(&entry).click();
    h.step();
    assert!(!h.state().training.hidden.contains("loss/maxnet"));
}

#[test]
fn a_stopped_run_resumes_from_the_run_bar_and_from_the_runs_tab() {
    let runs = tempfile::tempdir().unwrap();
    let mut h = harness(
        app_in(
            runs.path(),
            tiny_config([400, 2, 2]),
            ScriptedDialogs::default(),
        ),
        [1400.0, 900.0],
    );
    h.step();
    assert!(
        h.query_by_label("Resume run").is_none(),
        "nothing to resume yet"
    );
    h.get_by_label("Start").click();
    step_until(&mut h, Duration::from_secs(300), "a checkpoint", |a| {
        a.run.checkpoint_step.is_some()
    });
    h.get_by_label("Stop").click();
    step_until(&mut h, Duration::from_secs(120), "the stop", |a| {
        a.run.status == RunStatus::Stopped && a.handle.is_none()
    });
    let stopped_at = h.state().run.global_step;
    assert!(common::text_with(&h, "Resume run continues from the checkpoint").is_some());
    h.get_by_label("Resume run").click();
    step_until(
        &mut h,
        Duration::from_secs(300),
        "steps after the resume",
        |a| a.run.global_step > stopped_at + 1,
    );
    h.get_by_label("Stop").click();
    step_until(&mut h, Duration::from_secs(120), "the second stop", |a| {
        a.run.status == RunStatus::Stopped && a.handle.is_none()
    });
    let stopped_again = h.state().run.global_step;
    // The Runs tab offers Resume in the run's actions.
    h.get_by_label("Runs").click();
    h.step();
    assert!(
        h.state().runs.rows[0].resumable,
        "{:?}",
        h.state().runs.rows[0]
    );
    h.get_by_label("Actions").click();
    for _ in 0..3 {
        h.step();
    }
    h.get_by_label("Resume").click();
    step_until(
        &mut h,
        Duration::from_secs(300),
        "steps after the Runs tab's resume",
        |a| a.run.global_step > stopped_again + 1,
    );
    h.get_by_label("Stop").click();
    step_until(&mut h, Duration::from_secs(120), "the last stop", |a| {
        a.run.status == RunStatus::Stopped && a.handle.is_none()
    });
}

#[test]
fn a_palette_measurement_shows_n_of_n_and_an_eta_and_stops() {
    let runs = tempfile::tempdir().unwrap();
    let mut config = tiny_config([2, 1, 1]);
    config.palette.latency_runs = 400;
    let mut h = harness(
        app_in(runs.path(), config, ScriptedDialogs::default()),
        [1400.0, 900.0],
    );
    h.step();
    h.get_by_label("Start").click();
    step_until(
        &mut h,
        Duration::from_secs(600),
        "the first palette row",
        |a| a.run.status == RunStatus::MeasuringPalette && a.run.palette_done() >= 1,
    );
    let status = common::text_with(&h, "Measuring palette:").unwrap_or_default();
    assert!(status.contains(" of 8 subnets"), "{status}");
    assert!(status.contains("ETA"), "{status}");
    assert!(!h.get_by_label("Stop").accesskit_node().is_disabled());
    h.get_by_label("Stop").click();
    step_until(
        &mut h,
        Duration::from_secs(300),
        "the measurement to stop",
        |a| a.handle.is_none(),
    );
    assert!(
        h.state().run.palette.len() < 8,
        "Stop did not stop the measurement"
    );
}

#[test]
fn a_headless_run_beside_the_studio_appears_in_the_runs_tab_and_its_curves_grow() {
    let runs = tempfile::tempdir().unwrap();
    let mut h = studio_over(runs.path(), [1400.0, 900.0]);
    h.get_by_label("Runs").click();
    h.step();
    assert!(h.state().runs.rows.is_empty());
    // A second writer: `mlfs-studio train` in another process, into the same runs folder.
    let mut config = tiny_config([200, 4, 4]);
    config.palette.evaluate_at_end = false;
    let preset = runs.path().join("headless.ron");
    config.save(&preset).unwrap();
    let out = runs.path().join("headless-run");
    let mut child = common::cli()
        .args(["train", "--preset"])
        .arg(&preset)
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    step_until(
        &mut h,
        Duration::from_secs(300),
        "the headless run's row",
        |a| {
            a.runs.rows.iter().any(|r| {
                r.name == "headless-run" && r.status.starts_with("training (other process)")
            })
        },
    );
    // Opened, its curves follow the file as the other process writes it.
    h.get_by_label("headless-run").click();
    h.step();
    h.step();
    let first = h.state().run.global_step;
    assert!(common::text_with(&h, "Training in another process").is_some());
    step_until(
        &mut h,
        Duration::from_secs(300),
        "the curves to grow",
        |a| a.run.global_step > first + 5,
    );
    let status = child.wait().unwrap();
    assert!(status.success());
    step_until(&mut h, Duration::from_secs(60), "the finished row", |a| {
        a.runs
            .rows
            .iter()
            .any(|r| r.name == "headless-run" && r.status == "finished")
            && a.run.status == RunStatus::Finished
    });
    // Every step once: the file was read from where it stopped, never twice.
    let maxnet = &h.state().run.losses["maxnet"];
    let steps: Vec<f64> = maxnet.iter().map(|p| p[0]).collect();
    let mut unique = steps.clone();
    unique.dedup();
    assert_eq!(steps, unique);
    assert_eq!(h.state().run.global_step, 208);
}

#[test]
fn presets_keep_their_names_and_edits_are_marked_and_kept_until_dropped() {
    let runs = tempfile::tempdir().unwrap();
    let presets = tempfile::tempdir().unwrap();
    let saved = presets.path().join("my-rank16.ron");
    let mut dialogs = ScriptedDialogs::default();
    dialogs.answers.push_back(Some(saved.clone()));
    let mut config = tiny_config([2, 1, 1]);
    config.palette.evaluate_at_end = false;
    let first = presets.path().join("first.ron");
    config.save(&first).unwrap();
    let other = presets.path().join("other.ron");
    let mut other_config = config.clone();
    other_config.rank = 4;
    other_config.save(&other).unwrap();
    let mut app = app_in(runs.path(), config, dialogs);
    app.load_preset(&first);
    let mut h = harness(app, [1400.0, 900.0]);
    h.step();
    let preset_shown = |h: &Harness<'static, StudioApp>| {
        h.get_by_role_and_label(egui::accesskit::Role::ComboBox, "Preset")
            .accesskit_node()
            .value()
            .unwrap_or_default()
    };
    assert_eq!(preset_shown(&h), "first");
    // An edit marks the preset as modified; loading another asks before dropping it.
    h.state_mut().config.rank = 16;
    h.step();
    assert_eq!(preset_shown(&h), "first (modified)");
    h.state_mut()
        .handle(mlfs_studio::ui::commands::UiCommand::LoadPreset(
            other.clone(),
        ));
    h.step();
    h.step();
    assert!(common::text_with(&h, "Drop your edits?").is_some());
    h.get_by_label("Keep editing").click();
    h.step();
    assert_eq!(h.state().config.rank, 16, "the edit was dropped");
    // Saved as my-rank16.ron: the name inside is the file's, and so is the new run's.
    h.get_by_label("Save preset as…").click();
    h.step();
    h.step();
    let back = RunConfig::load(&saved).unwrap();
    assert_eq!(back.name, "my-rank16");
    assert_eq!(back.rank, 16);
    assert_eq!(preset_shown(&h), "my-rank16");
    h.get_by_label("Start").click();
    step_until(&mut h, Duration::from_secs(300), "the run", |a| {
        a.run.status == RunStatus::Finished && a.handle.is_none()
    });
    let dir = h.state().run.run_dir.clone().unwrap();
    let name = dir.file_name().unwrap().to_string_lossy().to_string();
    assert!(name.starts_with("my-rank16-"), "{name}");
    // Unedited, another preset loads without asking.
    h.state_mut()
        .handle(mlfs_studio::ui::commands::UiCommand::LoadPreset(other));
    h.step();
    assert_eq!(h.state().config.rank, 4);
}

#[test]
fn a_renamed_run_keeps_the_settings_diff_and_the_runs_table_tells_the_palettes_best() {
    let runs = tempfile::tempdir().unwrap();
    let a = finished_run(runs.path(), tiny_config([2, 1, 1]));
    let mut other = tiny_config([2, 1, 1]);
    other.rank = 4;
    let b = finished_run(runs.path(), other);
    let mut h = studio_over(runs.path(), [1400.0, 900.0]);
    h.get_by_label("Runs").click();
    h.step();
    // The Best column is the palette's best subnet, never a training-time evaluation.
    for row in &h.state().runs.rows {
        let view = mlfs_studio::ui::run_view::RunView::from_run_dir(&row.dir).unwrap();
        let best = view
            .palette
            .iter()
            .map(|e| e.dev_accuracy)
            .fold(f64::MIN, f64::max);
        assert!(row.best_from_palette);
        assert_eq!(row.best, Some(best), "{}", row.name);
        assert!(row.front_size >= 1);
    }
    h.state_mut().runs.diff = vec![a.clone(), b.clone()];
    h.step();
    assert!(
        h.query_all_by_label_contains("")
            .any(|n| n.accesskit_node().value().as_deref() == Some("rank")),
        "the diff shows the setting they differ in"
    );
    h.state_mut()
        .handle(mlfs_studio::ui::commands::UiCommand::RenameRun(
            a.clone(),
            "renamed-run".into(),
        ));
    h.step();
    h.get_by_label("Rescan").click();
    h.step();
    assert!(common::text_with(&h, "cannot read").is_none());
    assert!(common::text_with(&h, "Settings: renamed-run against").is_some());
}

#[test]
fn a_small_window_keeps_the_runs_tables_essential_columns_on_screen() {
    let runs = tempfile::tempdir().unwrap();
    finished_run(runs.path(), tiny_config([2, 1, 1]));
    let mut h = studio_over(runs.path(), [1000.0, 700.0]);
    h.get_by_label("Runs").click();
    for _ in 0..3 {
        h.step();
    }
    for header in ["Status", "Best", "Front", "Overlay", "Diff", "Actions"] {
        let node = h
            .query_all_by_label_contains(header)
            .next()
            .unwrap_or_else(|| panic!("no {header}"));
        let rect = node.rect();
        assert!(
            rect.max.x <= 1000.0 && rect.max.y <= 700.0,
            "{header} off-screen at {rect:?}"
        );
    }
    // The settings panel gives way in a narrow window and comes back on request.
    assert!(h.query_by_label("Show settings").is_some());
    h.get_by_label("Show settings").click();
    h.step();
    assert_eq!(h.state().settings_open, Some(true));
}

#[test]
fn a_budget_keeps_the_palettes_fronts_marked_in_the_table() {
    let runs = tempfile::tempdir().unwrap();
    let dir = finished_run(runs.path(), tiny_config([2, 1, 1]));
    let mut h = studio_over(runs.path(), [1400.0, 900.0]);
    h.state_mut().open_run(&dir);
    h.get_by_label("Pareto").click();
    for _ in 0..3 {
        h.step();
    }
    let marks = |h: &Harness<'static, StudioApp>| -> usize {
        h.query_all_by_label_contains("")
            .filter_map(|n| n.accesskit_node().value())
            .filter(|v| ["size", "latency", "size, latency"].contains(&v.as_str()))
            .count()
    };
    let open = marks(&h);
    assert!(open >= 2, "{open} front marks without a budget");
    // A latency budget only the fastest subnet meets: the table still marks every front member.
    let fastest = h
        .state()
        .run
        .palette
        .iter()
        .map(|e| e.latency_ms_median)
        .fold(f64::INFINITY, f64::min);
    h.state_mut().pareto.budget.latency_ms = Some(fastest);
    for _ in 0..3 {
        h.step();
    }
    assert_eq!(
        marks(&h),
        open,
        "front members lost their mark under the budget"
    );
}

#[test]
fn ticking_two_gpus_starts_one_process_per_gpu_and_says_why_they_fail_without_gpus() {
    use mlfs_studio::model::device::GpuInfo;
    // The ranks are this crate's binary (the test's own executable is the harness).
    std::env::set_var(
        mlfs_studio::runs::launch::EXE_OVERRIDE,
        env!("CARGO_BIN_EXE_mlfs-studio"),
    );
    let runs = tempfile::tempdir().unwrap();
    let mut app = app_in(
        runs.path(),
        tiny_config([1, 1, 1]),
        ScriptedDialogs::default(),
    );
    let gpu = |ordinal| GpuInfo {
        ordinal,
        name: "Test GPU".into(),
        memory_bytes: 141_000_000_000,
    };
    app.gpu_list = Some(vec![gpu(0), gpu(1)]);
    let mut h = harness(app, [1400.0, 900.0]);
    h.step();
    for gpu in ["GPU 0", "GPU 1"] {
        // The Compute section sits below the fold of the settings panel.
        h.get_by_label(gpu).scroll_to_me();
        // Until the scroll's animation has settled.
        for _ in 0..20 {
            h.step();
        }
        h.get_by_label(gpu).click();
        h.step();
    }
    h.step();
    assert_eq!(h.state().parallel_gpus, vec![0, 1]);
    assert!(common::text_with(&h, "2 GPUs, one process each").is_some());
    h.get_by_label("Start").click();
    step_until(&mut h, Duration::from_secs(300), "the ranks to fail", |a| {
        matches!(a.run.status, RunStatus::Failed(_)) && a.handle.is_none()
    });
    // This build has no CUDA: rank 0's own error comes back through the studio, naming it.
    let RunStatus::Failed(why) = &h.state().run.status else {
        unreachable!()
    };
    assert!(why.contains("rank 0") || why.contains("rank 1"), "{why}");
    assert!(why.contains("without GPU support"), "{why}");
}
