//! Decoder palettes on SmolLM2-135M (fetched by scripts/fetch-smollm2.sh): a sampled search
//! space trains through the three stages, `eval` measures every subnet into `lm-palette.csv`
//! with both Pareto fronts, measuring stops and resumes without losing rows, and every row
//! exports and reloads with the validation loss `eval` measured.

mod common;

use mlfs_studio::eval::decoder::{measure_palette, read_csv};
use mlfs_studio::export::decoder_subnet::ExportFormat;
use mlfs_studio::model::llama::DecoderTeacher;
use mlfs_studio::model::SubnetSpec;
use mlfs_studio::runs::export::export_decoder;
use mlfs_studio::train::config::RunConfig;
use mlfs_studio::train::decoder::metrics::evaluate_blocks;
use mlfs_studio::train::protocol::{DecoderEntry, TrainEvent};
use mlfs_studio::train::run::Flow;
use mlfs_studio::train::DecoderRun;
use std::path::Path;

/// The shipped `code-supernet-quick` preset (depth 10/20/30, 6 or 9 heads, FFN 768 or 1536:
/// 12 subnets, first and last layer kept, rewired before stage 1) with fewer steps, shorter
/// blocks, two validation blocks and short latency probes, so that it runs in minutes.
fn palette_config() -> RunConfig {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut c = RunConfig::load(&root.join("presets/code-supernet-quick.ron")).unwrap();
    c.teacher = common::smollm2_gguf().clone();
    c.data.train = common::assets().join("python-code/train.jsonl");
    c.data.dev = common::assets().join("python-code/valid.jsonl");
    for stage in &mut c.stages {
        stage.budget = mlfs_studio::train::config::Budget::Steps(2);
    }
    c.batch_size = 2;
    c.max_seq_len = 32;
    c.rewire_batches = 2;
    c.palette.evaluate_at_end = false;
    let lm = c.lm.as_mut().unwrap();
    lm.eval_blocks = 2;
    lm.latency_prompt = 16;
    lm.latency_new_tokens = 2;
    c
}

const MINNET: &str = "layers=0,3,6,10,13,16,19,23,26,29;heads=6;ffn=768";

fn train(dir: &Path) -> DecoderRun {
    let mut t = DecoderRun::create(palette_config(), dir).unwrap();
    let mut ctl = |_: usize, _: &mut dyn FnMut(TrainEvent)| Flow::Continue;
    assert!(!t.run(&mut ctl, &mut |_| {}).unwrap());
    t
}

/// Whether row `i` is dominated among the non-teacher rows on (cost, validation loss), written
/// out here independently of the studio's front code.
fn dominated(rows: &[DecoderEntry], i: usize, cost: impl Fn(&DecoderEntry) -> f64) -> bool {
    let p = &rows[i];
    rows.iter().any(|q| {
        q.role != "teacher"
            && cost(q) <= cost(p)
            && q.val_loss <= p.val_loss
            && (cost(q) < cost(p) || q.val_loss < p.val_loss)
    })
}

/// The CSV's front columns, read as text.
fn front_columns(path: &Path) -> Vec<(String, bool, bool)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(
        &header[header.len() - 2..],
        ["on_front_size", "on_front_latency"]
    );
    lines
        .map(|l| {
            let (_, rest) = l.split_once(",\"").unwrap();
            let (subnet, rest) = rest.split_once("\",").unwrap();
            let f: Vec<&str> = rest.split(',').collect();
            let n = f.len();
            (subnet.to_string(), f[n - 2] == "true", f[n - 1] == "true")
        })
        .collect()
}

#[test]
fn a_decoder_space_measures_into_a_palette_with_fronts_that_resumes_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let run = train(&run_dir);
    let csv = run_dir.join("lm-palette.csv");

    // Stopped after the teacher and two subnets: the file holds those three rows.
    let mut seen = 0;
    measure_palette(&run.task, &run.config, &run_dir, None, &mut |_, _| {
        seen += 1;
        seen < 3
    })
    .unwrap();
    let partial = read_csv(&csv).unwrap();
    assert_eq!(partial.len(), 3);
    // Resumed: the three rows are kept (handed on, not measured again), the rest measured.
    let mut measured_now = Vec::new();
    measure_palette(&run.task, &run.config, &run_dir, None, &mut |e, kept| {
        if !kept {
            measured_now.push(e.subnet.clone());
        }
        true
    })
    .unwrap();
    let rows = read_csv(&csv).unwrap();
    assert_eq!(rows.len(), 13, "the teacher and 12 subnets");
    assert_eq!(measured_now.len(), 10);
    assert_eq!(&rows[..3], &partial[..], "resuming changed earlier rows");
    assert_eq!(rows[0].role, "teacher");
    let roles: Vec<&str> = rows.iter().map(|r| r.role.as_str()).collect();
    assert!(
        roles.contains(&"maxnet") && roles.contains(&"minnet"),
        "{roles:?}"
    );
    let minnet = rows.iter().find(|r| r.role == "minnet").unwrap();
    assert_eq!(minnet.subnet, MINNET);

    // Fronts as written equal a brute-force dominance check; both fronts are non-empty.
    let fronts = front_columns(&csv);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(fronts[i].0, r.subnet);
        let teacher = r.role == "teacher";
        let size = !teacher && !dominated(&rows, i, |e| e.params_total as f64);
        let latency = !teacher && !dominated(&rows, i, |e| e.prefill_ms);
        assert_eq!((fronts[i].1, fronts[i].2), (size, latency), "{}", r.subnet);
        assert!(r.prefill_ms_p90 >= r.prefill_ms && r.decode_tokens_per_s > 0.0);
        assert!(r.val_loss_untrained.is_finite());
    }
    assert!(fronts.iter().any(|f| f.1) && fronts.iter().any(|f| f.2));

    // A stopped re-measurement of one subnet keeps every other row.
    let spec: SubnetSpec = minnet.subnet.parse().unwrap();
    measure_palette(
        &run.task,
        &run.config,
        &run_dir,
        Some(&[spec]),
        &mut |_, _| false,
    )
    .unwrap();
    assert_eq!(read_csv(&csv).unwrap().len(), 13);

    // Every subnet exports and reloads with the validation loss `eval` measured.
    for r in rows.iter().filter(|r| r.role != "teacher") {
        let out = dir
            .path()
            .join(format!("export-{}", r.subnet.replace([';', '=', ','], "_")));
        export_decoder(&run, Some(&r.subnet), ExportFormat::HfFolder, &out).unwrap();
        let back = DecoderTeacher::load(&out).unwrap();
        assert_eq!(back.decoder.config.num_hidden_layers, r.layers);
        let dense = SubnetSpec::maxnet(&back.decoder.shape());
        let m = evaluate_blocks(&back.decoder, &dense, false, &run.task.valid_blocks, 2).unwrap();
        assert!(
            (m.loss - r.val_loss).abs() <= 1e-3,
            "{}: reloaded {} vs measured {}",
            r.subnet,
            m.loss,
            r.val_loss
        );
        std::fs::remove_dir_all(&out).unwrap();
    }
}

/// `eval` on the command line prints the palette with its fronts and writes the file.
#[test]
fn eval_prints_the_decoder_palette() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    drop(train(&run_dir));
    let stdout = common::stdout_of(common::cli().args(["eval", "--run"]).arg(&run_dir));
    let stdout = String::from_utf8_lossy(&stdout);
    assert!(stdout.contains(MINNET) && stdout.contains("fronts: S ="));
    assert_eq!(read_csv(&run_dir.join("lm-palette.csv")).unwrap().len(), 13);
}

/// `figure` draws decoder palettes as the studio's chart export does: every run's subnets and
/// front under its folder's name, the first run's teacher as a level line, validation loss on
/// the y axis. The palettes are the committed H200 runs in docs/h200 (written by `eval` at the
/// end of `code-supernet` with and without rewiring). A decoder run beside a folder without an
/// lm-palette.csv is refused, naming that folder.
#[test]
fn the_figure_command_draws_decoder_palettes_with_the_teacher_line() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/h200");
    let out = tempfile::tempdir().unwrap();
    let svg = out.path().join("fronts.svg");
    let bin = env!("CARGO_BIN_EXE_mlfs-studio");
    let status = std::process::Command::new(bin)
        .args([
            "figure",
            "--cost",
            "latency",
            "--title",
            "code-supernet on an H200",
        ])
        .arg("--run")
        .arg(docs.join("code-supernet"))
        .arg("--run")
        .arg(docs.join("code-supernet-plain"))
        .arg("--out")
        .arg(&svg)
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    let text = std::fs::read_to_string(&svg).unwrap();
    for label in [
        "code-supernet-plain",
        "code-supernet on an H200",
        "teacher",
        "validation loss",
        "latency",
    ] {
        assert!(text.contains(label), "the figure lacks '{label}'");
    }
    // The teacher's line is dark grey: red is the second run's colour (and the budget's).
    assert!(
        text.contains("#505050"),
        "the teacher line is not dark grey"
    );
    // 60 subnets per run, each a point (the teacher is a line, not a point).
    let rows = read_csv(&docs.join("code-supernet/lm-palette.csv")).unwrap();
    assert_eq!(rows.iter().filter(|r| r.role != "teacher").count(), 60);
    assert!(text.matches("<circle").count() >= 120, "points missing");

    let refused = std::process::Command::new(bin)
        .args(["figure", "--run"])
        .arg(docs.join("code-supernet"))
        .arg("--run")
        .arg(out.path())
        .arg("--out")
        .arg(out.path().join("mixed.png"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(err.contains("no lm-palette.csv"), "{err}");
    assert!(err.contains(&out.path().display().to_string()), "{err}");
}
