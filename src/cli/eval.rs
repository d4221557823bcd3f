//! `mlfs-studio eval`: the palette table of a trained run (all or listed subnets).

use crate::cli::signals::StopRequest;
use crate::eval::decoder::measure_with_events;
use crate::eval::palette::{evaluate_palette, fronts, storage_summary};
use crate::model::subnet::resolve_spec;
use crate::model::SubnetSpec;
use crate::train::kind::is_decoder_run;
use crate::train::protocol::{PaletteEntry, TrainEvent};
use crate::train::run::Placement;
use crate::train::{ClassifierRun, DecoderRun};
use anyhow::Result;
use std::path::Path;

/// Subnets named on the command line, or the whole search space.
pub fn chosen_subnets(run: &ClassifierRun, subnets: Option<&str>) -> Result<Vec<SubnetSpec>> {
    let space = &run.task.space;
    match subnets {
        Some(list) => split_specs(list)
            .iter()
            .map(|s| resolve_spec(Some(s), &space.teacher))
            .collect(),
        // The whole space resumes: rows already measured are kept, not measured again.
        None => crate::eval::palette::missing_specs(
            &run.run_dir,
            crate::eval::palette::palette_specs(space, &run.config)?,
        ),
    }
}

/// Measures the palette, writes `palette.csv` into the run folder and prints the table.
pub fn eval(run_dir: &Path, subnets: Option<&str>, placement: Placement) -> Result<()> {
    let stop = StopRequest::install()?;
    if is_decoder_run(run_dir) {
        print_decoder_measurements(run_dir, subnets, placement, &stop)?;
    } else {
        let mut run = ClassifierRun::open_trained_on(run_dir, placement)?;
        run.lock_for_writing()?;
        crate::cli::print_warnings(&run.reader_notes());
        print_palette(&run, subnets, &stop)?;
    }
    crate::cli::signals::exit_if_stopped(&stop, &crate::files::shown(run_dir));
    Ok(())
}

/// Measures a decoder run's palette into `lm-palette.csv` (rows already there are kept unless
/// `subnets` names them) and prints it with both fronts marked.
fn print_decoder_measurements(
    run_dir: &Path,
    subnets: Option<&str>,
    placement: Placement,
    stop: &StopRequest,
) -> Result<()> {
    let mut run = DecoderRun::open_trained_on(run_dir, placement)?;
    run.lock_for_writing()?;
    crate::cli::print_warnings(&run.reader_notes());
    let only = subnets
        .map(|list| {
            split_specs(list)
                .iter()
                .map(|s| resolve_spec(Some(s), &run.task.space.teacher))
                .collect::<Result<Vec<_>>>()
        })
        .transpose()?;
    let entries = measure_with_events(
        &run.task,
        &run.config,
        &run.run_dir,
        only.as_deref(),
        &|e| {
            if let TrainEvent::DecoderMeasured(m) = e {
                crate::note!(
                    "{:<8} {} — validation loss {:.4}",
                    m.role,
                    m.subnet,
                    m.val_loss
                );
            }
        },
        &|| stop.requested().is_none(),
    )?;
    let entries =
        crate::eval::decoder::read_csv(&run.run_dir.join("lm-palette.csv")).unwrap_or(entries);
    let (size_front, latency_front) = crate::eval::decoder::decoder_fronts(&entries);
    crate::say!(
        "{:<8} {:>6} {:>10} {:>5} {:>8} {:>8} {:>9} {:>7} {:>10} {:>7} {:>6}  subnet",
        "role",
        "layers",
        "heads (kv)",
        "ffn",
        "params",
        "val",
        "untrained",
        "top-1",
        "prefill ms",
        "tok/s",
        "fronts"
    );
    for (i, m) in entries.iter().enumerate() {
        let fronts = match (size_front[i], latency_front[i]) {
            (true, true) => "S L",
            (true, false) => "S",
            (false, true) => "L",
            (false, false) => "",
        };
        crate::say!(
            "{:<8} {:>6} {:>10} {:>5} {:>7.1}M {:>8.4} {:>9.4} {:>7.4} {:>10.1} {:>7.1} {:>6}  {}",
            m.role,
            m.layers,
            format!("{} ({})", m.heads, m.kv_heads),
            m.ffn,
            m.params_total as f64 / 1e6,
            m.val_loss,
            m.val_loss_untrained,
            m.top1_accuracy,
            m.prefill_ms,
            m.decode_tokens_per_s,
            fronts,
            m.subnet
        );
    }
    crate::say!(
        "fronts: S = (parameters, validation loss), L = (prefill latency, validation loss)"
    );
    Ok(())
}

/// Measures and prints the palette of a trained supernet, writing `palette.csv`.
pub fn print_palette(run: &ClassifierRun, subnets: Option<&str>, stop: &StopRequest) -> Result<()> {
    let specs = chosen_subnets(run, subnets)?;
    if specs.is_empty() && subnets.is_none() {
        crate::note!(
            "every subnet of the space is already in {}; `--subnets` measures listed ones again",
            crate::files::shown(&run.run_dir.join("palette.csv"))
        );
    }
    crate::note!("{}", crate::eval::machine::describe());
    crate::say!(
        "{:<34} {:>9} {:>10} {:>9} {:>9} {:>7} {:>7}",
        "subnet",
        "params",
        "size MB",
        "lat ms",
        "p90 ms",
        "dev",
        "test"
    );
    let mut print_row = |e: &PaletteEntry| {
        crate::say!(
            "{:<34} {:>9} {:>10.2} {:>9.3} {:>9.3} {:>7.4} {:>7.4}",
            e.subnet,
            e.params_total,
            e.size_bytes as f64 / 1e6,
            e.latency_ms_median,
            e.latency_ms_p90,
            e.dev_accuracy,
            e.test_accuracy
        );
        // A stop signal ends the measurement after this subnet; the rows so far are written.
        stop.requested().is_none()
    };
    let palette = &run.config.palette;
    let (entries, path) =
        evaluate_palette(&run.task, palette, &run.run_dir, &specs, &mut print_row)?;
    let (size_front, latency_front) = fronts(&entries);
    let on_size: Vec<&str> = entries
        .iter()
        .zip(&size_front)
        .filter(|(_, f)| **f)
        .map(|(e, _)| e.subnet.as_str())
        .collect();
    let on_lat: Vec<&str> = entries
        .iter()
        .zip(&latency_front)
        .filter(|(_, f)| **f)
        .map(|(e, _)| e.subnet.as_str())
        .collect();
    crate::say!("size front (dev accuracy): {}", on_size.join("  |  "));
    crate::say!("latency front (dev accuracy): {}", on_lat.join("  |  "));
    crate::say!("{}", storage_summary(&run.task.net, &entries)?);
    crate::say!("wrote {}", path.display());
    Ok(())
}

/// Splits `SPEC,SPEC,…` where each spec itself holds commas (`layers=0,2;…`): a new spec
/// starts at every comma followed by a `key=`.
pub fn split_specs(list: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for piece in list.split(',') {
        let starts_spec = piece
            .trim_start()
            .starts_with(|c: char| c.is_ascii_alphabetic());
        match out.last_mut() {
            Some(last) if !starts_spec => {
                last.push(',');
                last.push_str(piece);
            }
            _ => out.push(piece.trim().to_string()),
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn specs_with_commas_split_correctly() {
        let got = super::split_specs("layers=0,2;heads=6;ffn=768,layers=2;heads=3;ffn=384");
        assert_eq!(
            got,
            vec!["layers=0,2;heads=6;ffn=768", "layers=2;heads=3;ffn=384"]
        );
    }
}
