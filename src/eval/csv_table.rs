//! Our CSV tables (`palette.csv`, `lm-palette.csv`): written with a real CSV writer, and read
//! back as any CSV writer may have re-saved them: quotes only where needed (Python's `csv`, spreadsheets), a byte-order mark,
//! CRLF line ends, columns found by their header name.

use anyhow::{bail, Context, Result};
use std::path::Path;

/// Writes `header` and `rows` to `path` as CSV, atomically (fields quoted where they need it:
/// a subnet spec holds commas, and any `"` is doubled), as every CSV reader expects.
pub fn write_table(path: &Path, header: &[&str], rows: &[Vec<String>]) -> Result<()> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(header).context("cannot write CSV")?;
    for row in rows {
        writer.write_record(row).context("cannot write CSV")?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| anyhow::anyhow!("cannot write CSV: {}", e.error()))?;
    crate::files::write_atomic(path, &bytes)
}

/// The rows of a CSV table with a header line.
pub struct Table {
    header: Vec<String>,
    rows: Vec<(usize, csv::StringRecord)>,
    path: String,
}

/// One row, read field by field; errors name the file, the line and the column, never the
/// field's content.
pub struct Row<'a> {
    table: &'a Table,
    line: usize,
    record: &'a csv::StringRecord,
}

impl Table {
    /// Reads `path` (a regular file of UTF-8 text).
    pub fn read(path: &Path) -> Result<Self> {
        let text = crate::files::read_text(path, "table")?;
        let shown = crate::files::shown(path);
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        let header = reader
            .headers()
            .with_context(|| format!("{shown}: unreadable header line"))?
            .iter()
            .map(str::to_string)
            .collect();
        let mut rows = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|e| {
                let line = e.position().map_or(0, |p| p.line());
                anyhow::anyhow!("{shown}:{line}: malformed CSV row")
            })?;
            if record.iter().all(str::is_empty) {
                continue;
            }
            let line = record.position().map_or(0, |p| p.line() as usize);
            rows.push((line, record));
        }
        Ok(Self {
            header,
            rows,
            path: shown,
        })
    }

    /// The rows, in file order.
    pub fn rows(&self) -> impl Iterator<Item = Row<'_>> {
        self.rows.iter().map(|(line, record)| Row {
            table: self,
            line: *line,
            record,
        })
    }
}

impl Row<'_> {
    fn column(&self, name: &str) -> Option<usize> {
        self.table.header.iter().position(|h| h == name)
    }

    /// The text of column `name`; an error when the file has no such column or the row is short.
    pub fn text(&self, name: &str) -> Result<&str> {
        let (path, line) = (&self.table.path, self.line);
        let Some(i) = self.column(name) else {
            bail!("{path}: no column named '{name}' in the header");
        };
        self.record
            .get(i)
            .with_context(|| format!("{path}:{line}: the row ends before column '{name}'"))
    }

    /// Column `name` as a whole number.
    pub fn count(&self, name: &str) -> Result<usize> {
        let (path, line) = (&self.table.path, self.line);
        self.text(name)?
            .parse()
            .with_context(|| format!("{path}:{line}: column '{name}' is not a whole number"))
    }

    /// Column `name` as a number (`NaN` allowed).
    pub fn number(&self, name: &str) -> Result<f64> {
        let (path, line) = (&self.table.path, self.line);
        self.text(name)?
            .parse()
            .with_context(|| format!("{path}:{line}: column '{name}' is not a number"))
    }

    /// The text of column `name`, `default` when the file predates that column.
    pub fn text_or<'r>(&'r self, name: &str, default: &'r str) -> Result<&'r str> {
        match self.column(name) {
            None => Ok(default),
            Some(_) => self.text(name),
        }
    }

    /// Column `name` as a number, NaN when the file predates that column.
    pub fn number_or_nan(&self, name: &str) -> Result<f64> {
        match self.column(name) {
            None => Ok(f64::NAN),
            Some(_) => self.number(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_where_needed_a_bom_and_crlf_all_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("palette.csv");
        std::fs::write(
            &p,
            "\u{feff}subnet,layers\r\n\"layers=0,1;heads=3;ffn=384\",2\r\nlayers=2;heads=3;ffn=384,1\r\n",
        )
        .unwrap();
        let table = Table::read(&p).unwrap();
        let got: Vec<(String, usize)> = table
            .rows()
            .map(|r| {
                (
                    r.text("subnet").unwrap().to_string(),
                    r.count("layers").unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("layers=0,1;heads=3;ffn=384".to_string(), 2),
                ("layers=2;heads=3;ffn=384".to_string(), 1)
            ]
        );
    }

    #[test]
    fn errors_name_line_and_column_but_not_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("palette.csv");
        std::fs::write(&p, "subnet,layers\nx,secret-value\n").unwrap();
        let table = Table::read(&p).unwrap();
        let row = table.rows().next().unwrap();
        let e = format!("{:#}", row.count("layers").unwrap_err());
        assert!(e.contains("palette.csv:2: column 'layers'"), "{e}");
        assert!(!e.contains("secret"), "{e}");
        let e = format!("{:#}", row.count("params").unwrap_err());
        assert!(e.contains("no column named 'params'"), "{e}");
    }
}
