//! Data-parallel training on the CPU: ranks are threads summing through the test double of
//! NCCL (`train::parallel::threads`) or processes (`train --cpu-ranks`) summing over TCP. The
//! reference is always this crate's single-process run of the same configuration: the claim
//! under test is that sharding a step's batch changes nothing but rounding.

mod common;

use mlfs_studio::model::weights::WeightStore;
use mlfs_studio::train::config::RunConfig;
use mlfs_studio::train::parallel::threads::thread_group;
use mlfs_studio::train::parallel::OnHost;
use mlfs_studio::train::protocol::TrainEvent;
use mlfs_studio::train::run::{Flow, Placement};
use mlfs_studio::train::ClassifierRun;
use std::collections::HashMap;
use std::path::Path;

/// 33 training examples in batches of 8: every epoch ends with a batch of one example, which
/// one of two ranks trains while the other has none.
fn config(dir: &Path, steps: [usize; 3]) -> RunConfig {
    let a = common::assets();
    let lines: Vec<String> = std::fs::read_to_string(a.join("sentiment/train.jsonl"))
        .unwrap()
        .lines()
        .take(33)
        .map(String::from)
        .collect();
    let train = dir.join("train-33.jsonl");
    std::fs::write(&train, lines.join("\n") + "\n").unwrap();
    let mut c = common::small_config(steps, 8, 32);
    c.data.train = train;
    c.palette.evaluate_at_end = false;
    c
}

fn until(stop_at: Option<usize>) -> impl FnMut(usize, &mut dyn FnMut(TrainEvent)) -> Flow {
    move |at, _| {
        if Some(at) == stop_at {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }
}

/// Trains `dir`'s run (created or resumed by `open`) to the end on one process.
fn train_alone(run: &mut ClassifierRun, stop_at: Option<usize>) -> Vec<TrainEvent> {
    let mut events = Vec::new();
    run.run(&mut until(stop_at), &mut |e| events.push(e))
        .unwrap();
    events
}

/// Trains the run `rank0` opened as `world` thread ranks; rank 0 alone is told to stop at
/// `stop_at`. Returns rank 0's events and whether each rank stopped early.
fn train_on_threads(
    rank0: ClassifierRun,
    dir: &Path,
    world: usize,
    stop_at: Option<usize>,
) -> (Vec<TrainEvent>, Vec<bool>) {
    let start = rank0.global_step;
    let mut runs = vec![rank0];
    for _ in 1..world {
        runs.push(ClassifierRun::join(dir, Placement::default(), start).unwrap());
    }
    let handles: Vec<_> = runs
        .into_iter()
        .zip(thread_group(world))
        .enumerate()
        .map(|(rank, (mut run, group))| {
            run.set_group(Box::new(OnHost(group)));
            std::thread::spawn(move || {
                let mut events = Vec::new();
                let stop = if rank == 0 { stop_at } else { None };
                let stopped = run.run(&mut until(stop), &mut |e| events.push(e)).unwrap();
                (events, stopped)
            })
        })
        .collect();
    let mut results: Vec<(Vec<TrainEvent>, bool)> =
        handles.into_iter().map(|h| h.join().unwrap()).collect();
    let stopped = results.iter().map(|r| r.1).collect();
    (std::mem::take(&mut results[0].0), stopped)
}

fn weights(dir: &Path) -> HashMap<String, Vec<f32>> {
    let store = WeightStore::load(&dir.join("supernet.safetensors"), &[]).unwrap();
    store
        .into_tensors()
        .into_iter()
        .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

fn largest_difference(a: &HashMap<String, Vec<f32>>, b: &HashMap<String, Vec<f32>>) -> f32 {
    assert_eq!(a.len(), b.len(), "different tensors");
    let mut worst = 0f32;
    for (name, x) in a {
        let y = &b[name];
        assert_eq!(x.len(), y.len(), "{name}");
        for (p, q) in x.iter().zip(y) {
            worst = worst.max((p - q).abs());
        }
    }
    worst
}

fn assert_losses_match(alone: &[TrainEvent], ranks: &[TrainEvent]) {
    let (a, b) = (common::step_losses(alone), common::step_losses(ranks));
    assert_eq!(a.len(), b.len(), "different step counts");
    for ((sa, la), (sb, lb)) in a.iter().zip(&b) {
        assert_eq!(sa, sb);
        assert_eq!(la.len(), lb.len(), "step {sa}: different students");
        for ((na, x), (nb, y)) in la.iter().zip(lb) {
            assert_eq!(na, nb, "step {sa}: different students");
            assert!(
                (x - y).abs() <= 1e-5 * x.abs().max(1.0),
                "step {sa} {na}: loss {x} alone, {y} over ranks"
            );
        }
    }
}

/// Runs `work` on each rank's run in its own thread (the ranks sum together) and hands the
/// runs back with what `work` returned.
fn on_threads<R: Send + 'static>(
    runs: Vec<ClassifierRun>,
    work: impl Fn(&mut ClassifierRun) -> R + Send + Sync + Clone + 'static,
) -> Vec<(ClassifierRun, R)> {
    let world = runs.len();
    let handles: Vec<_> = runs
        .into_iter()
        .zip(thread_group(world))
        .map(|(mut run, group)| {
            let work = work.clone();
            run.set_group(Box::new(OnHost(group)));
            std::thread::spawn(move || {
                let out = work(&mut run);
                (run, out)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

fn flat(grads: &[Option<candle_core::Tensor>]) -> Vec<Vec<f32>> {
    grads
        .iter()
        .map(|g| match g {
            Some(g) => g.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            None => Vec::new(),
        })
        .collect()
}

fn state(run: &ClassifierRun) -> HashMap<String, Vec<f32>> {
    use mlfs_studio::mlfs::adapters::AdaptedSupernet;
    run.task
        .net
        .named_state()
        .into_iter()
        .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

#[test]
fn two_ranks_on_half_batches_take_the_step_of_one_rank_on_the_whole_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let c = config(tmp.path(), [5, 5, 5]);
    // A run in stage 1 (four students a step, Adam's moments two steps old), copied: one copy
    // goes on alone, the other on two ranks.
    let (alone_dir, ranks_dir) = (tmp.path().join("alone"), tmp.path().join("ranks"));
    common::train_until(c, &alone_dir, 7);
    common::copy_dir(&alone_dir, &ranks_dir);
    let mut alone = ClassifierRun::resume(&alone_dir).unwrap();
    let ranks = vec![
        ClassifierRun::resume(&ranks_dir).unwrap(),
        ClassifierRun::join(&ranks_dir, Placement::default(), 7).unwrap(),
    ];
    // Steps 2, 3 and 4 of stage 1: batches of 8 (4 a rank) and the epoch's last, one example
    // (rank 1 has none).
    let steps = [2usize, 3, 4];
    let mut summed = on_threads(ranks, move |run| {
        let mut out = Vec::new();
        for &i in &steps {
            let g = run.step_gradients(1, i).unwrap();
            out.push((flat(&g.grads), g.losses, g.grads));
        }
        out
    });
    for (k, &i) in steps.iter().enumerate() {
        let whole = alone.step_gradients(1, i).unwrap();
        let (gw, lw) = (flat(&whole.grads), &whole.losses);
        let norm = gw
            .iter()
            .flatten()
            .map(|x| (*x as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        for (rank, (_, results)) in summed.iter().enumerate() {
            let (gs, ls, _) = &results[k];
            assert_eq!(gw.len(), gs.len());
            let mut worst = 0f64;
            for (a, b) in gw.iter().zip(gs) {
                assert_eq!(a.len(), b.len(), "step {i}: a gradient only one side has");
                for (x, y) in a.iter().zip(b) {
                    worst = worst.max((x - y).abs() as f64);
                }
            }
            eprintln!(
                "step {i}, rank {rank}: largest gradient difference {worst:.3e}, norm {norm:.3e}"
            );
            assert!(
                worst <= 1e-6 * norm,
                "step {i}, rank {rank}: gradients differ by {worst} (norm {norm})"
            );
            for (x, y) in lw.iter().zip(ls) {
                assert!((x - y).abs() <= 1e-6 * x.abs(), "step {i}: loss {x} vs {y}");
            }
        }
    }
    // The optimizer step of a batch split 4 + 4 (the single example's is exact: rank 1 adds
    // zeros), from the same state with each side's gradients: the same parameters.
    let whole = alone.step_gradients(1, 3).unwrap();
    alone.apply_gradients(1, 3, &whole.grads).unwrap();
    let (rank0, results) = &mut summed[0];
    let grads = std::mem::take(&mut results[1].2);
    rank0.apply_gradients(1, 3, &grads).unwrap();
    let worst = largest_difference(&state(&alone), &state(rank0));
    eprintln!("after one optimizer step: largest parameter difference {worst:.3e}");
    assert!(worst <= 1e-6, "one optimizer step apart by {worst}");
}

#[test]
fn two_ranks_train_a_whole_run_as_one_rank_and_rank_0_alone_writes() {
    let tmp = tempfile::tempdir().unwrap();
    // Each stage one epoch: its fifth batch is a single example.
    let c = config(tmp.path(), [5, 5, 5]);
    let (alone_dir, ranks_dir) = (tmp.path().join("alone"), tmp.path().join("ranks"));
    let mut alone = ClassifierRun::create(c.clone(), &alone_dir).unwrap();
    let alone_events = train_alone(&mut alone, None);
    let rank0 = ClassifierRun::create(c, &ranks_dir).unwrap();
    let (rank_events, stopped) = train_on_threads(rank0, &ranks_dir, 2, None);
    assert_eq!(stopped, vec![false, false]);
    assert_losses_match(&alone_events, &rank_events);
    assert_eq!(
        common::dev_results(&alone_events),
        common::dev_results(&rank_events)
    );
    // Rank 0 alone wrote the log: every step once, the world size said.
    let log = std::fs::read_to_string(ranks_dir.join("metrics.jsonl")).unwrap();
    let steps = log.lines().filter(|l| l.contains("\"step\"")).count();
    assert_eq!(steps, 15, "{log}");
    assert!(log.contains("\"world_size\":2"), "{log}");
    assert!(log.contains("\"devices_mb\":["), "{log}");
}

#[test]
fn one_rank_through_the_collective_writes_the_single_process_metrics_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let c = config(tmp.path(), [3, 2, 2]);
    let (alone_dir, group_dir) = (tmp.path().join("alone"), tmp.path().join("group"));
    let mut alone = ClassifierRun::create(c.clone(), &alone_dir).unwrap();
    train_alone(&mut alone, None);
    let one = ClassifierRun::create(c, &group_dir).unwrap();
    train_on_threads(one, &group_dir, 1, None);
    // Exactly equal: the flattening, the sum over one rank and the split change no bit.
    assert_eq!(
        common::metrics_without_timings(&alone_dir),
        common::metrics_without_timings(&group_dir)
    );
    assert_eq!(
        largest_difference(&weights(&alone_dir), &weights(&group_dir)),
        0.0
    );
    // A single process's log has no data-parallel fields.
    let log = std::fs::read_to_string(alone_dir.join("metrics.jsonl")).unwrap();
    assert!(
        !log.contains("world_size") && !log.contains("devices_mb"),
        "{log}"
    );
}

#[test]
fn a_stop_reaches_every_rank_at_one_step_and_checkpoints_move_between_world_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    let c = config(tmp.path(), [5, 4, 0]);
    let reference = tmp.path().join("reference");
    let mut run = ClassifierRun::create(c.clone(), &reference).unwrap();
    let reference_events = train_alone(&mut run, None);

    // Started on 2 ranks, stopped at step 6 by rank 0's user, finished on 1.
    let two_then_one = tmp.path().join("two-then-one");
    let rank0 = ClassifierRun::create(c.clone(), &two_then_one).unwrap();
    let (first, stopped) = train_on_threads(rank0, &two_then_one, 2, Some(6));
    assert_eq!(stopped, vec![true, true], "rank 1 did not stop with rank 0");
    let mut resumed = ClassifierRun::resume(&two_then_one).unwrap();
    assert_eq!(resumed.global_step, 6);
    let rest = train_alone(&mut resumed, None);
    let joined: Vec<TrainEvent> = first.into_iter().chain(rest).collect();
    assert_losses_match(&reference_events, &joined);
    assert_eq!(
        common::dev_results(&reference_events),
        common::dev_results(&joined)
    );

    // Started alone, stopped at step 3, finished on 2 ranks.
    let one_then_two = tmp.path().join("one-then-two");
    let mut run = ClassifierRun::create(c, &one_then_two).unwrap();
    let first = train_alone(&mut run, Some(3));
    drop(run);
    let rank0 = ClassifierRun::resume(&one_then_two).unwrap();
    let (rest, _) = train_on_threads(rank0, &one_then_two, 2, None);
    let joined: Vec<TrainEvent> = first.into_iter().chain(rest).collect();
    assert_losses_match(&reference_events, &joined);
    assert_eq!(
        common::dev_results(&reference_events),
        common::dev_results(&joined)
    );
}

#[test]
fn cpu_ranks_are_processes_that_train_as_one() {
    let tmp = tempfile::tempdir().unwrap();
    let c = config(tmp.path(), [5, 2, 0]);
    let preset = tmp.path().join("p.ron");
    c.save(&preset).unwrap();
    let (alone, ranks) = (tmp.path().join("alone"), tmp.path().join("ranks"));
    let p = preset.to_str().unwrap();
    common::stdout_of(
        common::cli()
            .args(["train", "--preset", p, "--out"])
            .arg(&alone),
    );
    let out = common::stdout_of(
        common::cli()
            .args(["train", "--cpu-ranks", "2", "--preset", p, "--out"])
            .arg(&ranks),
    );
    let said = String::from_utf8_lossy(&out);
    assert!(
        said.contains("rank 0 of 2 on cpu, summing through TCP"),
        "{said}"
    );
    let read = |dir: &Path| -> Vec<TrainEvent> {
        std::fs::read_to_string(dir.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let (a, b) = (read(&alone), read(&ranks));
    assert_losses_match(&a, &b);
    assert_eq!(
        common::step_losses(&b).len(),
        7,
        "each step once in rank 0's log"
    );
    assert_eq!(common::dev_results(&a), common::dev_results(&b));
    assert!(
        !ranks.join(".rendezvous").exists(),
        "the rendezvous file was left behind"
    );
    // A rank that cannot start (an unknown GPU in a CPU build) fails the launch with its rank.
    let failed = common::cli()
        .args(["train", "--gpus", "0,0", "--preset", p, "--out"])
        .arg(tmp.path().join("twice"))
        .output()
        .unwrap();
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("lists a GPU twice"));
}

/// Every event a worker sends until its thread ends.
fn events_of(
    handle: &mlfs_studio::worker::WorkerHandle,
    stop_after_steps: Option<usize>,
) -> Vec<TrainEvent> {
    let mut events = Vec::new();
    let mut steps = 0;
    while let Ok(e) = handle
        .events
        .recv_timeout(std::time::Duration::from_secs(300))
    {
        if matches!(e, TrainEvent::Step { .. }) {
            steps += 1;
            if Some(steps) == stop_after_steps {
                handle.stop();
            }
        }
        let done = matches!(e, TrainEvent::Failed { .. });
        events.push(e);
        if done || handle.is_finished() && handle.events.is_empty() {
            break;
        }
    }
    events
}

#[test]
fn the_studios_worker_trains_on_ranks_relays_their_events_stops_and_resumes_them() {
    use mlfs_studio::runs::launch::{Ranks, EXE_OVERRIDE};
    use mlfs_studio::worker::{spawn, StartRequest};
    std::env::set_var(EXE_OVERRIDE, env!("CARGO_BIN_EXE_mlfs-studio"));
    let tmp = tempfile::tempdir().unwrap();
    let c = config(tmp.path(), [5, 5, 0]);
    let dir = tmp.path().join("run");
    let handle = spawn(
        StartRequest::Launch {
            ranks: Ranks::Cpu(2),
            config: Some(Box::new(c)),
            run_dir: dir.clone(),
        },
        None,
    );
    // Stop after the third step the studio sees: the ranks stop together with a checkpoint.
    let first = events_of(&handle, Some(3));
    drop(handle);
    let started = first.iter().find_map(|e| match e {
        TrainEvent::RunStarted { world_size, .. } => Some(*world_size),
        _ => None,
    });
    assert_eq!(started, Some(2), "{first:?}");
    let memory = first.iter().find_map(|e| match e {
        TrainEvent::Step { devices_mb, .. } => Some(devices_mb.len()),
        _ => None,
    });
    assert_eq!(memory, Some(2), "each rank's memory in the step events");
    let stopped_at = first.iter().find_map(|e| match e {
        TrainEvent::Finished {
            stopped: true,
            global_step,
        } => Some(*global_step),
        _ => None,
    });
    let stopped_at = stopped_at.unwrap_or_else(|| panic!("not stopped: {first:?}"));
    assert!((3..10).contains(&stopped_at), "stopped at {stopped_at}");
    // Resumed on the same two ranks, from the checkpoint, to the end.
    let handle = spawn(
        StartRequest::Launch {
            ranks: Ranks::Cpu(2),
            config: None,
            run_dir: dir.clone(),
        },
        None,
    );
    let rest = events_of(&handle, None);
    let steps: Vec<usize> = common::step_losses(&rest).iter().map(|s| s.0).collect();
    assert_eq!(
        steps,
        ((stopped_at + 1)..=10).collect::<Vec<_>>(),
        "{rest:?}"
    );
    assert!(rest
        .iter()
        .any(|e| matches!(e, TrainEvent::Finished { stopped: false, .. })));
}
