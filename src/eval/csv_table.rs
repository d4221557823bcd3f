//! Our CSV tables (`palette.csv`, `lm-palette.csv`): rows written from their serde fields with a
//! real CSV writer (the header is the field names), and read back by header name as any CSV
//! writer may have re-saved them: quotes only where needed (Python's `csv`, spreadsheets), a
//! byte-order mark, CRLF line ends, columns in another order, columns added later read as their
//! serde defaults.

use anyhow::{anyhow, Context, Result};
use serde::{de::DeserializeOwned, Serialize};
use std::path::Path;

/// Writes `rows` to `path` as CSV with a header of their field names, atomically (fields quoted
/// where they need it: a subnet spec holds commas, and any `"` is doubled). A row may be a
/// tuple of structs: their fields follow each other, header and cells alike.
pub fn write_rows<T: Serialize>(path: &Path, rows: impl IntoIterator<Item = T>) -> Result<()> {
    let shown = crate::files::shown(path);
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in rows {
        writer
            .serialize(row)
            .with_context(|| format!("{shown}: cannot write a CSV row"))?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| anyhow!("{shown}: cannot write CSV: {}", e.error()))?;
    crate::files::write_atomic(path, &bytes)
}

/// Reads the rows of `path` (a regular file of UTF-8 text with a header line) by column name;
/// blank rows are skipped. Errors name the file, the line and the column, never a field's content.
pub fn read_rows<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let text = crate::files::read_text(path, "table")?;
    let shown = crate::files::shown(path);
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let header = reader
        .headers()
        .with_context(|| format!("{shown}: unreadable header line"))?
        .clone();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            anyhow!("{shown}:{line}: malformed CSV row")
        })?;
        if record.iter().all(str::is_empty) {
            continue;
        }
        let line = record.position().map_or(0, |p| p.line());
        let row = record.deserialize(Some(&header)).map_err(|e| {
            let column = match e.kind() {
                csv::ErrorKind::Deserialize { err, .. } => err
                    .field()
                    .and_then(|i| header.get(i as usize))
                    .map(|name| format!("column '{name}': {}", err.kind())),
                _ => None,
            };
            anyhow!("{shown}:{line}: {}", column.unwrap_or_else(|| describe(&e)))
        })?;
        rows.push(row);
    }
    Ok(rows)
}

/// A row error without a column (a column missing from the header, a short row).
fn describe(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Deserialize { err, .. } => err.kind().to_string(),
        _ => "unreadable row".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Row {
        subnet: String,
        layers: usize,
    }

    #[test]
    fn quotes_only_where_needed_a_bom_and_crlf_all_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("palette.csv");
        std::fs::write(
            &p,
            "\u{feff}subnet,layers\r\n\"layers=0,1;heads=3;ffn=384\",2\r\n\r\nlayers=2;heads=3;ffn=384,1\r\n",
        )
        .unwrap();
        let got: Vec<Row> = read_rows(&p).unwrap();
        let row = |subnet: &str, layers| Row {
            subnet: subnet.into(),
            layers,
        };
        let want = [
            row("layers=0,1;heads=3;ffn=384", 2),
            row("layers=2;heads=3;ffn=384", 1),
        ];
        assert_eq!(got, want);
        // Written back: the spec with its commas quoted, the header from the field names.
        write_rows(&p, &want).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.starts_with("subnet,layers\n\"layers=0,1;heads=3;ffn=384\",2\n"));
        assert_eq!(read_rows::<Row>(&p).unwrap(), want);
    }

    #[test]
    fn errors_name_line_and_column_but_not_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("palette.csv");
        std::fs::write(&p, "subnet,layers\nx,secret-value\n").unwrap();
        let e = format!("{:#}", read_rows::<Row>(&p).unwrap_err());
        assert!(e.contains("palette.csv:2: column 'layers'"), "{e}");
        assert!(!e.contains("secret"), "{e}");
        std::fs::write(&p, "subnet,params\nx,3\n").unwrap();
        let e = format!("{:#}", read_rows::<Row>(&p).unwrap_err());
        assert!(e.contains("palette.csv:2: missing field `layers`"), "{e}");
    }
}
