//! A hostile user's files, signals and shared folders (issue 24): links planted at every name we
//! write, runs killed or signalled mid-step, torn and re-saved files, crafted model headers,
//! edited run state, two writers on one run, and inputs that used to give unclear errors.
//!
//! The GGUF files here are written byte by byte by `gguf_bytes` from the format's description
//! (llama.cpp's `docs/gguf.md`), not by our writer, so they can hold what no writer produces.

mod common;

use mlfs_studio::train::protocol::TrainEvent;
use mlfs_studio::train::run::Flow;
use mlfs_studio::train::ClassifierRun;
use std::path::{Path, PathBuf};

fn err_text<T>(result: anyhow::Result<T>) -> String {
    match result {
        Ok(_) => panic!("accepted"),
        Err(e) => format!("{e:#}"),
    }
}

fn run_to_end(run: &mut ClassifierRun) -> Vec<TrainEvent> {
    let mut events = Vec::new();
    let mut ctl = |_: usize, _: &mut dyn FnMut(TrainEvent)| Flow::Continue;
    run.run(&mut ctl, &mut |e| events.push(e)).unwrap();
    events
}

fn warnings(events: &[TrainEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Log { level, message } if level == "warn" => Some(message.clone()),
            _ => None,
        })
        .collect()
}

fn symlink(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target, link).unwrap();
}

// ---- 1. Writes never follow planted links (security) ----

#[test]
fn planted_links_in_a_run_folder_are_never_written_through() {
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    common::train_until(common::small_config([3, 0, 0], 8, 32), &run_dir, 2);
    // Every temporary name earlier builds used, and the event log itself.
    for name in [
        "config.ron.tmp",
        "supernet.safetensors.tmp",
        "supernet.json.tmp",
        "palette.csv.tmp",
        "checkpoints/step-00000003.partial",
    ] {
        symlink(&victim, &run_dir.join(name));
    }
    std::fs::remove_file(run_dir.join("metrics.jsonl")).unwrap();
    symlink(&victim, &run_dir.join("metrics.jsonl"));

    let mut run = ClassifierRun::resume(&run_dir).unwrap();
    let events = run_to_end(&mut run);
    let spec: mlfs_studio::model::SubnetSpec = "layers=2;heads=3;ffn=384".parse().unwrap();
    mlfs_studio::eval::palette::evaluate_palette(
        &run.task,
        &run.config.palette,
        &run_dir,
        &[spec],
        &mut |_| true,
    )
    .unwrap();

    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    let said = warnings(&events).join("\n");
    assert!(
        said.contains("metrics.jsonl") && said.contains("symbolic link"),
        "{said}"
    );
    for written in ["supernet.safetensors", "supernet.json", "palette.csv"] {
        let meta = run_dir.join(written).symlink_metadata().unwrap();
        assert!(meta.is_file(), "{written} is not a plain file");
    }
}

#[test]
fn a_linked_checkpoint_folder_is_refused_and_what_it_points_to_is_kept() {
    let outside = tempfile::tempdir().unwrap();
    // Looks like old checkpoints: pruning used to delete such folders wherever the link led.
    for step in 1..=3 {
        let d = outside.path().join(format!("step-0000000{step}"));
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("COMPLETE"), "ok\n").unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    std::fs::create_dir(&run_dir).unwrap();
    symlink(outside.path(), &run_dir.join("checkpoints"));
    let mut run = ClassifierRun::create(common::small_config([2, 0, 0], 8, 32), &run_dir).unwrap();
    let mut ctl = |at: usize, _: &mut dyn FnMut(TrainEvent)| {
        if at == 1 {
            Flow::Stop
        } else {
            Flow::Continue
        }
    };
    let err = err_text(run.run(&mut ctl, &mut |_| {}));
    assert!(
        err.contains("checkpoints") && err.contains("symbolic link"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 3);
}

#[test]
fn exports_refuse_links_and_a_killed_export_into_an_empty_folder_retries_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    common::train_until(common::small_config([2, 0, 0], 8, 32), &run_dir, 1);
    let run = ClassifierRun::open_trained(&run_dir).unwrap();
    let spec: mlfs_studio::model::SubnetSpec = "layers=2;heads=3;ffn=384".parse().unwrap();
    let export = |out: &Path| {
        mlfs_studio::runs::export::export_classifier(&run, &spec, None, Default::default(), out)
    };

    // A link at the target, dangling or not: refused, and nothing is deleted through it.
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    for (name, target) in [
        ("linked", victim.clone()),
        ("dangling", dir.path().join("nowhere")),
    ] {
        let out = dir.path().join(name);
        symlink(&target, &out);
        let err = err_text(export(&out));
        assert!(err.contains("symbolic link"), "{err}");
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert!(!dir.path().join("nowhere").exists());

    // An export killed while moving into an existing empty folder left its staging folder
    // beside it and the folder empty: the retry succeeds and cleans up.
    let out = dir.path().join("minnet");
    std::fs::create_dir(&out).unwrap();
    let stale = dir.path().join(".minnet.Ab12Cd.mlfs-export.partial");
    std::fs::create_dir(&stale).unwrap();
    std::fs::write(stale.join("model.safetensors"), "half").unwrap();
    let files = export(&out).unwrap();
    assert_eq!(files.len(), 4);
    assert!(!stale.exists());
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".partial")), "{names:?}");
    // The same folder again is not empty now: refused, the export kept.
    let err = err_text(export(&out));
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 4);
}

#[test]
fn random_llama_refuses_a_folder_that_holds_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), "mine").unwrap();
    let out = common::cli()
        .args(["random-llama", "--shape", "smollm2-135m", "--tokenizer"])
        .arg(common::assets().join("minilm-l3/tokenizer.json"))
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not empty"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("config.json")).unwrap(),
        "mine"
    );
}

#[test]
fn escape_sequences_in_paths_do_not_reach_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::cli()
        .args(["train", "--preset"])
        .arg(dir.path().join("no\u{1b}]0;owned\u{7}.ron"))
        .arg("--out")
        .arg(dir.path().join("run"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains('\u{1b}') && !stderr.contains('\u{7}'),
        "{stderr:?}"
    );
    assert!(stderr.contains("\\u{1b}]0;owned"), "{stderr}");
}

// ---- 2. Signals and closed outputs never lose work ----

fn preset_file(dir: &Path, config: &mlfs_studio::train::config::RunConfig) -> PathBuf {
    let path = dir.join("preset.ron");
    config.save(&path).unwrap();
    path
}

fn step_events(run_dir: &Path) -> usize {
    std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("{\"event\":\"step\""))
        .count()
}

#[test]
fn sigterm_stops_at_a_step_boundary_and_the_resumed_run_ends_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::small_config([30, 0, 0], 8, 32);
    config.palette.evaluate_at_end = false;
    let preset = preset_file(dir.path(), &config);

    let whole = dir.path().join("whole");
    common::stdout_of(
        common::cli()
            .args(["train", "--preset"])
            .arg(&preset)
            .arg("--out")
            .arg(&whole),
    );

    let signalled = dir.path().join("signalled");
    let child = common::cli()
        .args(["train", "--preset"])
        .arg(&preset)
        .arg("--out")
        .arg(&signalled)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while step_events(&signalled) < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "training never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: a plain kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(128 + libc::SIGTERM), "{stderr}");
    assert!(
        stderr.contains("SIGTERM") && stderr.contains("--resume"),
        "{stderr}"
    );
    let log = std::fs::read_to_string(signalled.join("metrics.jsonl")).unwrap();
    let last = log.lines().last().unwrap();
    assert!(last.contains("\"stopped\":true"), "{last}");
    let stopped_at = step_events(&signalled);
    assert!(stopped_at < 30, "ran to the end");
    assert_eq!(
        mlfs_studio::train::checkpoint::complete_steps(&signalled).last(),
        Some(&stopped_at)
    );

    common::stdout_of(common::cli().args(["train", "--resume"]).arg(&signalled));
    let a = std::fs::read(whole.join("supernet.safetensors")).unwrap();
    let b = std::fs::read(signalled.join("supernet.safetensors")).unwrap();
    assert!(
        a == b,
        "the resumed run's supernet differs from the uninterrupted one"
    );
}

/// A stopped classifier run with one palette subnet, for the output tests.
fn stopped_run(dir: &Path) -> PathBuf {
    let run_dir = dir.join("run");
    let mut c = common::small_config([2, 0, 0], 8, 32);
    c.palette.subnets = vec!["layers=2;heads=3;ffn=384".into()];
    common::train_until(c, &run_dir, 1);
    run_dir
}

#[test]
fn a_closed_or_full_stdout_never_stops_the_palette_being_written() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = stopped_run(dir.path());
    let bin = env!("CARGO_BIN_EXE_mlfs-studio");
    let piped = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{bin}' eval --run '{}' --subnets 'layers=2;heads=3;ffn=384' | head -1 >/dev/null",
            run_dir.display()
        ))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&piped.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let rows = mlfs_studio::eval::palette::read_csv(&run_dir.join("palette.csv")).unwrap();
    assert_eq!(
        rows.len(),
        1,
        "palette.csv not written behind a closed pipe"
    );
    // Eval of a stopped run says so.
    assert!(stderr.contains("unfinished"), "{stderr}");

    if !Path::new("/dev/full").exists() {
        eprintln!("no /dev/full on this machine: the full-output half is not run");
        return;
    }
    std::fs::remove_file(run_dir.join("palette.csv")).unwrap();
    let full = common::cli()
        .args(["eval", "--run"])
        .arg(&run_dir)
        .args(["--subnets", "layers=2;heads=3;ffn=384"])
        .stdout(std::fs::File::create("/dev/full").unwrap())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&full.stderr);
    assert_eq!(full.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot write standard output"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(run_dir.join("palette.csv").is_file());
}

#[test]
fn headless_train_off_a_terminal_prints_its_lines() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = common::small_config([2, 0, 0], 8, 32);
    c.palette.evaluate_at_end = false;
    c.eval_every = 1;
    c.checkpoint_every = 1;
    let preset = preset_file(dir.path(), &c);
    let out = common::cli()
        .args(["train", "--preset"])
        .arg(&preset)
        .arg("--out")
        .arg(dir.path().join("run"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in ["stage 0 started", "dev accuracy", "checkpoint ", "done"] {
        assert!(stderr.contains(line), "{line:?} missing from {stderr}");
    }
}

// ---- 3. Torn and foreign files ----

#[test]
fn a_torn_event_line_is_repaired_on_resume_and_the_studio_still_opens_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    common::train_until(common::small_config([3, 0, 0], 8, 32), &run_dir, 2);
    let log = run_dir.join("metrics.jsonl");
    let mut text = std::fs::read_to_string(&log).unwrap();
    text.push_str("{\"event\":\"step\",\"stage\":0,\"los");
    std::fs::write(&log, &text).unwrap();

    let view = mlfs_studio::ui::run_view::RunView::from_run_dir(&run_dir).unwrap();
    assert_eq!(view.global_step, 2);

    let mut run = ClassifierRun::resume(&run_dir).unwrap();
    let events = run_to_end(&mut run);
    assert!(
        warnings(&events)
            .iter()
            .any(|w| w.contains("torn last line")),
        "{:?}",
        warnings(&events)
    );
    let repaired = std::fs::read_to_string(&log).unwrap();
    for line in repaired.lines() {
        serde_json::from_str::<TrainEvent>(line).unwrap_or_else(|e| panic!("{line}: {e}"));
    }
}

#[test]
fn a_palette_resaved_by_python_keeps_its_rows_and_an_unreadable_one_is_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = stopped_run(dir.path());
    let run = ClassifierRun::open_trained(&run_dir).unwrap();
    let measure = |specs: &[&str]| {
        let specs: Vec<mlfs_studio::model::SubnetSpec> =
            specs.iter().map(|s| s.parse().unwrap()).collect();
        mlfs_studio::eval::palette::evaluate_palette(
            &run.task,
            &run.config.palette,
            &run_dir,
            &specs,
            &mut |_| true,
        )
    };
    measure(&["layers=2;heads=3;ffn=384", "layers=0,1,2;heads=3;ffn=384"]).unwrap();
    let path = run_dir.join("palette.csv");
    // As a spreadsheet re-saves it: a byte-order mark, every field quoted, CRLF line ends
    // (the writer itself quotes only where needed, as Python's csv module does).
    let mut reader = csv::Reader::from_path(&path).unwrap();
    let mut writer = csv::WriterBuilder::new()
        .quote_style(csv::QuoteStyle::Always)
        .terminator(csv::Terminator::CRLF)
        .from_writer(b"\xef\xbb\xbf".to_vec());
    writer.write_record(reader.headers().unwrap()).unwrap();
    for record in reader.records() {
        writer.write_record(&record.unwrap()).unwrap();
    }
    std::fs::write(&path, writer.into_inner().unwrap()).unwrap();
    measure(&["layers=1,2;heads=6;ffn=768"]).unwrap();
    let rows = mlfs_studio::eval::palette::read_csv(&path).unwrap();
    assert_eq!(rows.len(), 3, "rows lost: {rows:?}");

    std::fs::write(&path, "subnet,layers\nx,not-a-number\n").unwrap();
    let err = err_text(measure(&["layers=2;heads=3;ffn=384"]));
    assert!(
        err.contains("palette.csv:2") && err.contains("not rewritten"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "subnet,layers\nx,not-a-number\n"
    );
}

// ---- 4. Sizes from a file are checked before anything is reserved ----

/// GGUF v3 bytes: metadata (key, value type, encoded value), then tensors (name, dims, F32,
/// offset), then `data` after the header, aligned to 32.
fn gguf_bytes(
    meta: &[(&str, u32, Vec<u8>)],
    tensors: &[(&str, Vec<u64>, u64)],
    data: &[u8],
) -> Vec<u8> {
    let string = |s: &str| {
        let mut b = (s.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(s.as_bytes());
        b
    };
    let mut out = Vec::new();
    out.extend_from_slice(&0x4655_4747u32.to_le_bytes());
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(meta.len() as u64).to_le_bytes());
    for (key, kind, value) in meta {
        out.extend(string(key));
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(value);
    }
    for (name, dims, offset) in tensors {
        out.extend(string(name));
        out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
    }
    while out.len() % 32 != 0 {
        out.push(0);
    }
    out.extend_from_slice(data);
    out
}

const GGUF_U32: u32 = 4;
const GGUF_STRING: u32 = 8;
const GGUF_ARRAY: u32 = 9;

fn llama_meta(block_count: u64) -> Vec<(&'static str, u32, Vec<u8>)> {
    let text = |s: &str| {
        let mut b = (s.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(s.as_bytes());
        b
    };
    let mut tokens = GGUF_STRING.to_le_bytes().to_vec();
    tokens.extend_from_slice(&2u64.to_le_bytes());
    tokens.extend(text("a"));
    tokens.extend(text("b"));
    let u32v = |v: u32| v.to_le_bytes().to_vec();
    vec![
        ("general.architecture", GGUF_STRING, text("llama")),
        ("tokenizer.ggml.tokens", GGUF_ARRAY, tokens),
        ("llama.attention.head_count", GGUF_U32, u32v(2)),
        ("llama.embedding_length", GGUF_U32, u32v(8)),
        ("llama.feed_forward_length", GGUF_U32, u32v(16)),
        ("llama.block_count", 10, block_count.to_le_bytes().to_vec()),
    ]
}

fn gguf_error(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crafted.gguf");
    std::fs::write(&path, bytes).unwrap();
    let read = mlfs_studio::model::llama::gguf::read_config(&path).map(|_| ());
    let load = mlfs_studio::model::llama::gguf::load_gguf(&path).map(|_| ());
    // The first line: candle appends a backtrace when RUST_BACKTRACE is set.
    let first = |e: String| e.lines().next().unwrap_or_default().to_string();
    let (a, b) = (first(err_text(read)), first(err_text(load)));
    assert!(a.contains("crafted.gguf"), "{a}");
    assert_eq!(a, b, "reading the config and loading disagree");
    a
}

#[test]
fn crafted_gguf_headers_are_refused_before_reading_tensors() {
    let mib = vec![0u8; 1 << 20];
    let one = [("token_embd.weight", vec![8u64, 2], 0u64)];
    let mut meta = llama_meta(1);
    meta.push(("general.alignment", GGUF_U32, 0u32.to_le_bytes().to_vec()));
    let e = gguf_error(&gguf_bytes(&meta, &one, &mib));
    assert!(e.contains("alignment 0 is not a power of two"), "{e}");
    let mut meta = llama_meta(1);
    meta.push(("general.alignment", GGUF_U32, 7u32.to_le_bytes().to_vec()));
    let e = gguf_error(&gguf_bytes(&meta, &one, &mib));
    assert!(e.contains("alignment 7 is not a power of two"), "{e}");

    // 8,000 entries viewing one 1 MiB region: dequantised, 8 GB from a 1 MB file.
    let names: Vec<String> = (0..8000)
        .map(|i| format!("blk.{i}.ffn_up.weight"))
        .collect();
    let many: Vec<(&str, Vec<u64>, u64)> = names
        .iter()
        .map(|n| (n.as_str(), vec![1u64 << 18], 0u64))
        .collect();
    let e = gguf_error(&gguf_bytes(&llama_meta(1), &many, &mib));
    assert!(e.contains("overlap"), "{e}");

    let past_end = [("token_embd.weight", vec![1u64 << 20], 0u64)];
    let e = gguf_error(&gguf_bytes(&llama_meta(1), &past_end, &mib));
    assert!(e.contains("past the end of the file"), "{e}");
    let overflowing = [("token_embd.weight", vec![1u64 << 40, 1u64 << 40], 0u64)];
    let e = gguf_error(&gguf_bytes(&llama_meta(1), &overflowing, &mib));
    assert!(e.contains("overflows"), "{e}");

    // Refused before any per-layer list is sized by it.
    let e = gguf_error(&gguf_bytes(&llama_meta(1 << 40), &one, &mib));
    assert!(
        e.contains("block_count 1099511627776 but the file has only 1 tensors"),
        "{e}"
    );
}

/// Copies the shipped teacher's files into the folder `into`.
fn copy_teacher_into(into: &Path) {
    for entry in std::fs::read_dir(common::assets().join("minilm-l3"))
        .unwrap()
        .flatten()
    {
        std::fs::copy(entry.path(), into.join(entry.file_name())).unwrap();
    }
}

#[test]
fn a_crafted_config_json_is_refused_within_a_small_address_space() {
    let dir = tempfile::tempdir().unwrap();
    copy_teacher_into(dir.path());
    let path = dir.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let texts = dir.path().join("texts.txt");
    std::fs::write(&texts, "a fine film\n").unwrap();
    let bin = env!("CARGO_BIN_EXE_mlfs-studio");
    for (field, value) in [
        ("num_hidden_layers", serde_json::json!(1_000_000_000_000u64)),
        ("intermediate_size", serde_json::json!(1u64 << 40)),
        ("vocab_size", serde_json::json!(1u64 << 36)),
    ] {
        let mut edited = config.clone();
        edited[field] = value;
        std::fs::write(&path, serde_json::to_string(&edited).unwrap()).unwrap();
        // 8 GB of address space: a reservation of terabytes would abort, not error.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ulimit -v 8000000; '{bin}' forward --device cpu --model '{}' --texts-file '{}'",
                dir.path().display(),
                texts.display()
            ))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{field}: {stderr}");
        assert!(
            stderr.contains("config.json") && stderr.contains(field),
            "{stderr}"
        );
    }
    // Within bounds but more parameters than the weights file has bytes.
    config["num_hidden_layers"] = 900.into();
    std::fs::write(&path, serde_json::to_string(&config).unwrap()).unwrap();
    let err = err_text(mlfs_studio::model::EncoderTeacher::load(dir.path()));
    assert!(
        err.contains("model.safetensors") && err.contains("parameters"),
        "{err}"
    );
}

#[test]
fn absurd_budgets_and_run_counts_are_refused() {
    use mlfs_studio::train::config::Budget;
    let mut c = common::small_config([2, 0, 0], 8, 32);
    c.stages[0].budget = Budget::Epochs(1 << 63);
    c.palette.latency_runs = 1_000_000_000;
    let fields: Vec<String> = c.validate().into_iter().map(|e| e.field).collect();
    for f in ["stages[0].budget", "palette.latency_runs"] {
        assert!(fields.iter().any(|x| x == f), "{f} not flagged: {fields:?}");
    }
    let out = common::cli()
        .args(["latency", "--device", "cpu", "--model"])
        .arg(common::assets().join("minilm-l3"))
        .args(["--runs", "1000000000"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--runs"), "{stderr}");
}

// ---- 5. Edited or concurrent run state ----

fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

#[test]
fn an_edited_config_or_checkpoint_is_refused_on_resume() {
    use mlfs_studio::train::config::{Budget, RunConfig};
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let mut c = common::small_config([3, 3, 0], 8, 32);
    c.rewire = true;
    common::train_until(c, &run_dir, 5);
    let config_path = run_dir.join("config.ron");
    let original = std::fs::read_to_string(&config_path).unwrap();

    // Stage 0 is done with 3 steps: shrinking it would make stage 1 train stage 0's adapters.
    let mut edited = RunConfig::load(&config_path).unwrap();
    edited.stages[0].budget = Budget::Steps(1);
    edited.save(&config_path).unwrap();
    let err = err_text(ClassifierRun::resume(&run_dir));
    assert!(err.contains("stage 0 had 3 steps"), "{err}");
    std::fs::write(&config_path, &original).unwrap();

    let state = run_dir.join("checkpoints/step-00000005/state.json");
    let saved = std::fs::read_to_string(&state).unwrap();
    for (what, edit, expected) in [
        (
            "step",
            serde_json::json!({"global_step": 999}),
            "at step 999",
        ),
        (
            "stage",
            serde_json::json!({"optimizer_stage": 7}),
            "stage 7",
        ),
    ] {
        edit_json(&state, |v| {
            for (k, x) in edit.as_object().unwrap() {
                v[k] = x.clone();
            }
        });
        let err = err_text(ClassifierRun::resume(&run_dir));
        assert!(err.contains(expected), "{what}: {err}");
        std::fs::write(&state, &saved).unwrap();
    }
    edit_json(&state, |v| {
        let orders = v["orders"].as_array_mut().expect("the run rewired");
        orders.truncate(1);
    });
    let err = err_text(ClassifierRun::resume(&run_dir));
    assert!(err.contains("1 layers, the teacher has 3"), "{err}");
    std::fs::write(&state, &saved).unwrap();
    assert_eq!(ClassifierRun::resume(&run_dir).unwrap().global_step, 5);
}

#[test]
fn a_second_writer_is_refused_naming_the_process_and_readers_say_a_run_is_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = stopped_run(dir.path());
    let training = ClassifierRun::resume(&run_dir).unwrap();
    let pid = std::process::id().to_string();

    let err = err_text(ClassifierRun::resume(&run_dir));
    assert!(
        err.contains("in use by process") && err.contains(&pid),
        "{err}"
    );
    let eval = common::cli()
        .args(["eval", "--run"])
        .arg(&run_dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&eval.stderr);
    assert!(!eval.status.success() && stderr.contains(&pid), "{stderr}");
    let out = dir.path().join("export");
    let export = common::cli()
        .args(["export", "--run"])
        .arg(&run_dir)
        .args(["--subnet", "layers=2;heads=3;ffn=384", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&export.stderr);
    assert!(export.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("process {pid} is training this run")),
        "{stderr}"
    );
    drop(training);
    drop(ClassifierRun::resume(&run_dir).unwrap());
}

// ---- 6. Inputs that used to give unclear errors ----

#[test]
fn a_fifo_as_data_is_refused_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("train.jsonl");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a plain mkfifo call on a path we own.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let mut c = common::small_config([2, 0, 0], 8, 32);
    c.data.train = fifo;
    let err = err_text(ClassifierRun::create(c, &dir.path().join("run")));
    assert!(
        err.contains("train.jsonl") && err.contains("not a regular file"),
        "{err}"
    );
}

#[test]
fn a_sequence_longer_than_the_teachers_positions_is_named() {
    use mlfs_studio::model::weights::{save_f32, WeightStore};
    let dir = tempfile::tempdir().unwrap();
    let teacher = dir.path().join("teacher");
    std::fs::create_dir(&teacher).unwrap();
    copy_teacher_into(&teacher);
    // A teacher of 16 positions: its config and its position table agree.
    let weights = teacher.join("model.safetensors");
    let mut tensors: Vec<(String, candle_core::Tensor)> = WeightStore::load(&weights, &[])
        .unwrap()
        .into_tensors()
        .into_iter()
        .collect();
    for (name, t) in &mut tensors {
        if name.ends_with("position_embeddings.weight") {
            *t = t.narrow(0, 0, 16).unwrap();
        }
    }
    save_f32(&weights, &tensors).unwrap();
    edit_json(&teacher.join("config.json"), |v| {
        v["max_position_embeddings"] = 16.into()
    });
    let mut c = common::small_config([2, 0, 0], 8, 32);
    c.teacher = teacher;
    c.palette.latency_seq_len = 8;
    let err = err_text(ClassifierRun::create(c, &dir.path().join("run")));
    assert!(
        err.contains("max_seq_len 32") && err.contains("16 positions"),
        "{err}"
    );
}

#[test]
fn a_tilde_path_without_home_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = common::small_config([2, 0, 0], 8, 32);
    c.teacher = PathBuf::from("~/models/minilm");
    let preset = preset_file(dir.path(), &c);
    let out = common::cli()
        .env_remove("HOME")
        .env_remove("XDG_CACHE_HOME")
        .args(["train", "--preset"])
        .arg(&preset)
        .arg("--out")
        .arg(dir.path().join("run"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("teacher") && stderr.contains("HOME is not set"),
        "{stderr}"
    );
}
