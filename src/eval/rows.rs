//! One palette for both kinds of run. Classifier rows (`palette.csv`) and decoder rows
//! (`lm-palette.csv`) measure different things, but what is done with them is written once,
//! here: the fronts (the same ones the charts draw), the CSV file read by header name, merging
//! by subnet and role, and the measuring loop that rewrites the file after every row so that a
//! stopped measurement loses nothing and resumes with the missing rows only.

use super::csv_table::{write_table, Row, Table};
use super::pareto::{pareto_front, ParetoPoint};
use crate::model::SubnetSpec;
use anyhow::{Context, Result};
use std::path::Path;

/// The roles a palette row can have: the reference teacher, the sandwich's corners, a subnet
/// of the space, one listed in `palette.subnets`, one found by a search.
pub const ROLES: [&str; 6] = [
    "teacher", "maxnet", "minnet", "subnet", "listed", "searched",
];

/// A measured palette row of either kind.
pub trait PaletteRow: ParetoPoint + Clone {
    /// The file's columns, in order, the two front columns excluded.
    const COLUMNS: &'static [&'static str];
    /// One of [`ROLES`].
    fn role(&self) -> &str;
    /// The row's cells, in [`Self::COLUMNS`] order.
    fn cells(&self) -> Vec<String>;
    /// Reads a row written by [`write`] (or re-saved by a spreadsheet), by column name.
    fn from_row(row: &Row) -> Result<Self>;
    /// Rows of equal key are one measurement: a later one replaces an earlier one.
    fn key_of(role: &str, subnet: &str) -> String;
    /// [`Self::key_of`] this row.
    fn key(&self) -> String {
        Self::key_of(self.role(), self.subnet())
    }
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

/// Writes the rows with their front columns (atomically: a reader sees the old file or this one).
pub fn write<R: PaletteRow>(path: &Path, rows: &[R]) -> Result<()> {
    let (size_front, latency_front) = fronts(rows);
    let header: Vec<&str> = R::COLUMNS
        .iter()
        .copied()
        .chain(["on_front_size", "on_front_latency"])
        .collect();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut cells = r.cells();
            cells.push(size_front[i].to_string());
            cells.push(latency_front[i].to_string());
            cells
        })
        .collect();
    write_table(path, &header, &cells)
        .with_context(|| format!("{}: cannot write the palette", path.display()))
}

/// Reads a palette file by column name (columns added later read as their defaults).
pub fn read<R: PaletteRow>(path: &Path) -> Result<Vec<R>> {
    let table = Table::read(path)?;
    table.rows().map(|r| R::from_row(&r)).collect()
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
