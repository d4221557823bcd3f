//! One palette for both kinds of run. Classifier rows (`palette.csv`) and decoder rows
//! (`lm-palette.csv`) measure different things, but what is done with them is written once,
//! here: the fronts (the same ones the charts draw), the CSV file read by header name, merging
//! by subnet and role, and the measuring loop that rewrites the file after every row so that a
//! stopped measurement loses nothing and resumes with the missing rows only.

use super::csv_table::{read_rows, write_rows};
use super::pareto::{pareto_front, ParetoPoint};
use crate::model::SubnetSpec;
use anyhow::{Context, Result};
use serde::{de::DeserializeOwned, Serialize};
use std::path::Path;

/// The roles a palette row can have: the reference teacher, the sandwich's corners, a subnet
/// of the space, one listed in `palette.subnets`, one found by a search.
pub const ROLES: [&str; 6] = [
    "teacher", "maxnet", "minnet", "subnet", "listed", "searched",
];

/// A measured palette row of either kind; its file columns are its serde fields (defaults
/// for the ones added later), followed by the two front columns.
pub trait PaletteRow: ParetoPoint + Clone + Serialize + DeserializeOwned {
    /// Rows of equal key are one measurement: a later one replaces an earlier one.
    fn key_of(role: &str, subnet: &str) -> String;
    /// [`Self::key_of`] this row.
    fn key(&self) -> String {
        Self::key_of(self.role(), self.subnet())
    }
    /// Replaces the latency columns with a timing made elsewhere (a search's verification
    /// times its subnets in interleaved rounds).
    fn set_latency(&mut self, latency: crate::eval::latency::Latency);
}

/// Front membership on (parameters, quality) and on (median latency, quality), quality oriented
/// so that higher is better; the teacher's row is a reference, never on a front.
pub fn fronts<R: PaletteRow>(rows: &[R]) -> (Vec<bool>, Vec<bool>) {
    let points = |cost: fn(&R) -> f64| -> Vec<(f64, f64)> {
        rows.iter()
            .map(|r| match r.role() {
                "teacher" => (f64::NAN, f64::NAN),
                _ => (cost(r), r.merit()),
            })
            .collect()
    };
    (
        pareto_front(&points(|r| r.params_total() as f64)),
        pareto_front(&points(|r| r.latency_ms().0)),
    )
}

/// The front columns after a row's own.
#[derive(Serialize)]
struct OnFronts {
    on_front_size: bool,
    on_front_latency: bool,
}

/// Writes the rows with their front columns (atomically: a reader sees the old file or this one).
pub fn write<R: PaletteRow>(path: &Path, rows: &[R]) -> Result<()> {
    let (size_front, latency_front) = fronts(rows);
    let cells = rows.iter().enumerate().map(|(i, r)| {
        let on = OnFronts {
            on_front_size: size_front[i],
            on_front_latency: latency_front[i],
        };
        (r, on)
    });
    write_rows(path, cells).with_context(|| format!("{}: cannot write the palette", path.display()))
}

/// Reads a palette file by column name (columns added later read as their defaults; the front
/// columns are recomputed, not read).
pub fn read<R: PaletteRow>(path: &Path) -> Result<Vec<R>> {
    read_rows(path)
}

/// `old` with `new` in place of the row of its key, or appended.
pub fn merge<R: PaletteRow>(mut old: Vec<R>, new: R) -> Vec<R> {
    let key = new.key();
    match old.iter_mut().find(|r| r.key() == key) {
        Some(slot) => *slot = new,
        None => old.push(new),
    }
    old
}

/// Measures `subjects` (role, subnet) into the palette file at `path`, handing each row to
/// `on_row` as soon as it is known, with `true` for a row kept from the file; `on_row`
/// returning false stops. With `keep_measured`, subjects the file already has are kept, not
/// measured again (a stopped measurement resumes). The file is rewritten after every row,
/// merged with the rows it had: it never loses a row, and a file that does not read back is an
/// error before anything is measured, never silently replaced.
pub fn measure_into<R: PaletteRow>(
    path: &Path,
    subjects: &[(String, SubnetSpec)],
    keep_measured: bool,
    measure: &mut dyn FnMut(&str, &SubnetSpec) -> Result<R>,
    on_row: &mut dyn FnMut(&R, bool) -> bool,
) -> Result<Vec<R>> {
    let mut rows: Vec<R> = if path.symlink_metadata().is_ok() {
        read(path).context("the palette was not rewritten; fix or move the file")?
    } else {
        Vec::new()
    };
    for (role, spec) in subjects {
        let key = R::key_of(role, &spec.to_string());
        if keep_measured {
            if let Some(kept) = rows.iter().find(|r| r.key() == key) {
                if !on_row(kept, true) {
                    break;
                }
                continue;
            }
        }
        let row = measure(role, spec)?;
        rows = merge(rows, row.clone());
        write(path, &rows)?;
        if !on_row(&row, false) {
            break;
        }
    }
    if path.symlink_metadata().is_err() {
        write(path, &rows)?;
    }
    Ok(rows)
}

/// A measurement as the studio and the command line follow it: `PaletteStarted` with the
/// number of subjects, the machine line, each row as `event(row)` as soon as it is known (rows
/// kept from the file too), a warning when it stopped early, and a summary line. `measure`
/// runs the measurement, calling its argument with each row (`true`: kept from before);
/// `keep_going` is asked after each row measured now. Returns the rows seen, in order.
pub fn with_events<R: PaletteRow>(
    count: usize,
    send: &dyn Fn(crate::train::protocol::TrainEvent),
    keep_going: &dyn Fn() -> bool,
    event: fn(R) -> crate::train::protocol::TrainEvent,
    measure: impl FnOnce(&mut dyn FnMut(&R, bool) -> bool) -> Result<std::path::PathBuf>,
) -> Result<Vec<R>> {
    use crate::train::protocol::TrainEvent;
    send(TrainEvent::PaletteStarted { count });
    send(TrainEvent::log("info", super::machine::describe()));
    let mut seen = Vec::new();
    let (mut measured, mut kept) = (0usize, 0usize);
    let mut on_row = |row: &R, was_kept: bool| {
        send(event(row.clone()));
        seen.push(row.clone());
        if was_kept {
            kept += 1;
            return true;
        }
        measured += 1;
        keep_going()
    };
    let path = measure(&mut on_row)?;
    if measured + kept < count {
        send(TrainEvent::log(
            "warn",
            format!(
                "measurement stopped after {} of {count} subnets: {} has their new rows and keeps its earlier rows of the others",
                measured + kept,
                path.display()
            ),
        ));
    }
    send(TrainEvent::log(
        "info",
        format!(
            "palette: {measured} subnets measured, {kept} kept from before, in {}",
            path.display()
        ),
    ));
    Ok(seen)
}
