//! `mlfs-studio search` on a trained run: killed with SIGKILL mid-search and started again, it
//! continues to the same candidates and answer as a search run straight through; refusals name
//! the problem. The run is the per-layer fixture (`tests/old_runs.rs` says how it was made).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_mlfs-studio")
}

fn fixture_copy(parent: &Path, name: &str) -> PathBuf {
    let dir = parent.join(name);
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/per-layer-run");
    common::copy_dir(&fixture, &dir);
    dir
}

fn search_args<'a>(run: &'a Path, table: &'a Path) -> Vec<&'a std::ffi::OsStr> {
    vec![
        "search".as_ref(),
        "--run".as_ref(),
        run.as_os_str(),
        "--budget".as_ref(),
        "params_m=15".as_ref(),
        "--evaluations".as_ref(),
        "50".as_ref(),
        "--top-k".as_ref(),
        "2".as_ref(),
        "--seed".as_ref(),
        "7".as_ref(),
        "--latency-table".as_ref(),
        table.as_os_str(),
    ]
}

/// Runs the binary with `args` to success; its stdout and stderr.
fn run_ok(args: &[&std::ffi::OsStr]) -> (String, String) {
    let out = Command::new(bin()).args(args).output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert!(out.status.success(), "{stderr}");
    (stdout, stderr)
}

/// Runs the binary with `args`, which must fail; its stderr.
fn run_err(args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(bin()).args(args).output().unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn search_json(run: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(run.join("search.json")).unwrap()).unwrap()
}

#[test]
fn a_killed_search_started_again_ends_where_a_straight_one_does() {
    let dir = tempfile::tempdir().unwrap();
    let straight = fixture_copy(dir.path(), "straight");
    let table = dir.path().join("latency-table.csv");
    run_ok(&[
        "latency-table".as_ref(),
        "--run".as_ref(),
        straight.as_os_str(),
    ]);
    std::fs::copy(straight.join("latency-table.csv"), &table).unwrap();
    let (last, _) = run_ok(&search_args(&straight, &table));
    assert!(last.contains("within params_m=15: best searched"), "{last}");

    // The same search killed once its state holds a generation, then started again.
    let killed = fixture_copy(dir.path(), "killed");
    let mut child = Command::new(bin())
        .args(search_args(&killed, &table))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let state = killed.join("search-state.json");
    let started = Instant::now();
    while !state.is_file() {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no state written"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    let kept = std::fs::read_to_string(&state).unwrap();
    assert!(
        !killed.join("search.json").exists(),
        "killed before the end"
    );
    let (_, notes) = run_ok(&search_args(&killed, &table));
    assert!(
        notes.contains("resuming the search from generation"),
        "{notes}\n{kept:.200}"
    );
    // Every candidate, its generation, prediction and estimate, as the straight search had it.
    let read = |run: &Path| std::fs::read_to_string(run.join("search.csv")).unwrap();
    assert_eq!(read(&killed), read(&straight));
    let (a, b) = (search_json(&straight), search_json(&killed));
    assert_eq!(a["best_searched"]["subnet"], b["best_searched"]["subnet"]);
    assert_eq!(a["evaluations"], 50);
    // Searched rows joined the palette with their role.
    let palette = std::fs::read_to_string(killed.join("palette.csv")).unwrap();
    assert!(
        palette.lines().any(|l| l.starts_with("searched,")),
        "{palette}"
    );
}

#[test]
fn refuses_a_budget_no_subnet_fits_and_a_table_of_another_teacher() {
    let dir = tempfile::tempdir().unwrap();
    let run = fixture_copy(dir.path(), "run");
    let search = |budget: &str, extra: &[&std::ffi::OsStr]| {
        let mut args: Vec<&std::ffi::OsStr> =
            vec!["search".as_ref(), "--run".as_ref(), run.as_os_str()];
        args.extend_from_slice(&["--budget".as_ref(), budget.as_ref()]);
        args.extend_from_slice(extra);
        run_err(&args)
    };
    let err = search("params_m=0.5", &[]);
    assert!(
        err.contains("budget params_m=0.5 is below the smallest subnet of the space: layers=2;heads=3;ffn=384 takes 12.365 M parameters"),
        "{err}"
    );
    // A table timed for a 6-layer teacher.
    let table = run.join("latency-table.csv");
    let text = std::fs::read_to_string(&table)
        .unwrap()
        .replace("layers=3;", "layers=6;");
    let other = dir.path().join("other.csv");
    std::fs::write(&other, text).unwrap();
    let err = search(
        "params_m=15",
        &["--latency-table".as_ref(), other.as_os_str()],
    );
    assert!(
        err.contains("other.csv: the latency table was timed for teacher layers=6"),
        "{err}"
    );
    assert!(search("speed=3", &[]).contains("unknown cost 'speed'"));
}
