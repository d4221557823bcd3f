//! `mlfs-studio search` and `mlfs-studio latency-table`: the best subnet of a trained run under
//! a budget, and the latency model of this machine that the search predicts with.

use crate::cli::signals::StopRequest;
use crate::search::budget::Budget;
use crate::search::driver::{self, SearchEvent, SearchOptions};
use crate::search::subject::Subject;
use crate::train::run::Placement;
use anyhow::Result;
use std::path::Path;

/// Opens the run for writing, prints what opening it tolerated, and hands its subject to `f`.
fn with_subject<T>(
    run_dir: &Path,
    placement: Placement,
    f: impl FnOnce(&dyn Subject) -> Result<T>,
) -> Result<T> {
    crate::runs::search::with_subject(run_dir, placement, |subject, notes| {
        crate::cli::print_warnings(&notes);
        f(subject)
    })
}

/// Progress on stderr: notes, one line a generation, each verified subnet.
fn print_event(event: SearchEvent) {
    match event {
        SearchEvent::Note(line) => crate::note!("{line}"),
        SearchEvent::Evaluated(_) => {}
        SearchEvent::Generation {
            generation,
            evaluations,
            best,
        } => crate::note!(
            "generation {generation}: {evaluations} candidates; best within budget {}",
            best.map_or("none yet".to_string(), |b| format!(
                "{} (estimate {:.4}, predicted {:.3} ms)",
                b.subnet, b.estimate, b.predicted_latency_ms
            ))
        ),
        SearchEvent::Verified {
            measured,
            predicted_latency_ms,
            over_budget,
        } => crate::note!(
            "measured {:<8} {}: {:.4}, {:.3} ms (predicted {predicted_latency_ms:.3}){}",
            measured.role,
            measured.subnet,
            measured.value,
            measured.latency_median_ms,
            if over_budget { " — over budget" } else { "" }
        ),
    }
}

/// Times the run's latency table into `RUN/latency-table.csv` and prints where it went.
pub fn latency_table(run_dir: &Path, placement: Placement) -> Result<()> {
    with_subject(run_dir, placement, |subject| {
        let table = driver::time_table(subject, &mut print_event)?;
        crate::say!(
            "wrote {} ({} rows; {})",
            run_dir.join(crate::search::latency_table::FILE).display(),
            table.rows.len(),
            table.origin_line()
        );
        print_check(subject, &table)
    })
}

/// The table's prediction beside the palette's measurement for a few subnets.
fn print_check(
    subject: &dyn Subject,
    table: &crate::search::latency_table::LatencyTable,
) -> Result<()> {
    crate::say!(
        "{:>12} {:>12} {:>8}  subnet",
        "predicted",
        "measured",
        "error"
    );
    for (subnet, predicted, measured) in driver::check_table(subject, table, 0)? {
        let error = 100.0 * (predicted - measured) / measured.max(1e-9);
        crate::say!("{predicted:>9.3} ms {measured:>9.3} ms {error:>+7.1}%  {subnet}");
    }
    Ok(())
}

/// `bench --run RUN`: the run's latency table (timed when missing) checked against a few
/// subnets timed now.
pub fn bench_table(run_dir: &Path, placement: Placement) -> Result<()> {
    with_subject(run_dir, placement, |subject| {
        let table = driver::latency_table_of(subject, None, &mut print_event)?;
        crate::say!("{}", crate::eval::machine::describe());
        crate::say!("latency table: {}", table.origin_line());
        print_check(subject, &table)
    })
}

/// Runs (or resumes) a search and prints the comparison of best searched and best uniform.
pub fn search(run_dir: &Path, options: SearchOptions, placement: Placement) -> Result<()> {
    let stop = StopRequest::install()?;
    let result = with_subject(run_dir, placement, |subject| {
        driver::search(subject, &options, &mut print_event, &|| {
            stop.requested().is_none()
        })
    });
    crate::cli::signals::exit_if_stopped(&stop, &crate::files::shown(run_dir));
    let result = result?;
    crate::say!("{}", result.summary());
    Ok(())
}

/// `--budget` as the command line writes it.
pub fn parse_budget(text: &str) -> Result<Budget> {
    Budget::parse(text)
}
