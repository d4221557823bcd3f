//! Training data: labelled text files (JSONL or CSV/TSV, label mapping, tokenised examples,
//! batching) and code corpora cut into token blocks.

use crate::model::{tokenizer::pad_batch, TextTokenizer, TokenBatch};
use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::path::Path;

/// One raw example: text and label as written in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct RawExample {
    pub text: String,
    pub label: String,
}

/// Reads a JSONL, CSV or TSV file of labelled texts.
pub fn read_examples(path: &Path, text_col: &str, label_col: &str) -> Result<Vec<RawExample>> {
    let content = crate::files::read_text(path, "data file")?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let examples = match ext {
        "csv" => read_delimited(path, &content, ',', text_col, label_col)?,
        "tsv" => read_delimited(path, &content, '\t', text_col, label_col)?,
        _ => read_jsonl(path, &content, text_col, label_col)?,
    };
    if examples.is_empty() {
        bail!("{}: the data file holds no examples", path.display());
    }
    Ok(examples)
}

fn read_jsonl(
    path: &Path,
    content: &str,
    text_col: &str,
    label_col: &str,
) -> Result<Vec<RawExample>> {
    let mut out = Vec::new();
    let mut kinds = LabelKinds::default();
    for (i, line) in content.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let where_ = || format!("{}:{}", path.display(), i + 1);
        let value: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("{}: invalid JSON", where_()))?;
        let text = match value.get(text_col) {
            Some(serde_json::Value::String(s)) => s.as_str(),
            Some(other) => bail!(
                "{}: \"{text_col}\" is {}, not a string of text",
                where_(),
                json_kind(other)
            ),
            None => bail!("{}: no \"{text_col}\" text field", where_()),
        };
        let label = match value.get(label_col) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            Some(serde_json::Value::Bool(b)) => b.to_string(),
            Some(other) => bail!(
                "{}: \"{label_col}\" is {}, not a class id or name",
                where_(),
                json_kind(other)
            ),
            None => bail!("{}: no \"{label_col}\" label field", where_()),
        };
        kinds.note(i + 1, &label);
        out.push(RawExample {
            text: text.to_string(),
            label,
        });
    }
    kinds.check(path)?;
    Ok(out)
}

/// What a JSON value is, for messages that must not quote it.
fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The lines of the first integer label and of the first other one: labels are class ids or
/// class names, and a mix (a stray `0.5` among 0/1) would become an extra class.
#[derive(Default)]
struct LabelKinds {
    integer: Option<usize>,
    other: Option<usize>,
}

impl LabelKinds {
    fn note(&mut self, line: usize, label: &str) {
        let slot = if label.parse::<i64>().is_ok() {
            &mut self.integer
        } else {
            &mut self.other
        };
        slot.get_or_insert(line);
    }

    fn check(&self, path: &Path) -> Result<()> {
        if let (Some(il), Some(ol)) = (self.integer, self.other) {
            // Line numbers only: an error never quotes a data file's content.
            bail!(
                "{}:{ol}: the label is not a whole number, but line {il}'s label is a class id: \
                 labels must be all class ids or all class names",
                crate::files::shown(path)
            );
        }
        Ok(())
    }
}

/// Reads CSV or TSV with a header line (RFC 4180 quoting: a quoted field may hold the
/// delimiter, doubled quotes and line breaks). Errors name the file, line and column, never
/// the content.
fn read_delimited(
    path: &Path,
    content: &str,
    delim: char,
    text_col: &str,
    label_col: &str,
) -> Result<Vec<RawExample>> {
    let shown = crate::files::shown(path);
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delim as u8)
        .flexible(true)
        .from_reader(content.as_bytes());
    let names: Vec<String> = reader
        .headers()
        .with_context(|| format!("{shown}: unreadable header line"))?
        .iter()
        .map(|n| n.trim().to_string())
        .collect();
    if names.iter().all(String::is_empty) {
        bail!("{shown}: the data file is empty");
    }
    let find = |col: &str| {
        names.iter().position(|n| n == col).with_context(|| {
            format!(
                "{shown}: the header's {} columns include none named '{col}'",
                names.len()
            )
        })
    };
    let (ti, li) = (find(text_col)?, find(label_col)?);
    let mut out = Vec::new();
    let mut kinds = LabelKinds::default();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            anyhow::anyhow!("{shown}:{line}: malformed row (an unclosed quote?)")
        })?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let (Some(text), Some(label)) = (record.get(ti), record.get(li)) else {
            bail!("{shown}:{line}: too few columns");
        };
        let label = label.trim().to_string();
        kinds.note(line, &label);
        out.push(RawExample {
            text: text.to_string(),
            label,
        });
    }
    kinds.check(path)?;
    Ok(out)
}

/// Label names in id order (ids are what the classifier predicts).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LabelMap {
    /// The labels as written in the data, in id order.
    pub names: Vec<String>,
    /// What to call each id (`data.label_names`); empty: the data's own labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub display: Vec<String>,
}

impl LabelMap {
    /// Labels seen in the training set; integer labels keep their numeric order.
    pub fn from_train(examples: &[RawExample]) -> Self {
        let all_int = examples.iter().all(|e| e.label.parse::<i64>().is_ok());
        let mut names: Vec<String> = examples.iter().map(|e| e.label.clone()).collect();
        if all_int {
            names.sort_by_key(|l| l.parse::<i64>().unwrap_or(0));
        } else {
            names.sort();
        }
        names.dedup();
        Self {
            names,
            display: Vec::new(),
        }
    }

    /// The names to show for the ids: the configured display names, else the data's labels.
    pub fn display_names(&self) -> &[String] {
        match self.display.is_empty() {
            true => &self.names,
            false => &self.display,
        }
    }

    /// Names integer labels `0..n` with `names` (one per class, in id order).
    pub fn with_display(mut self, names: &[String], source: &Path) -> Result<Self> {
        if names.is_empty() {
            return Ok(self);
        }
        let ids_in_order = self
            .names
            .iter()
            .enumerate()
            .all(|(i, n)| n.parse::<usize>() == Ok(i));
        if !ids_in_order || names.len() != self.names.len() {
            bail!(
                "{}: data.label_names gives {} names for {} labels (names need integer labels \
                 0..{}, one name each)",
                crate::files::shown(source),
                names.len(),
                self.names.len(),
                self.names.len()
            );
        }
        self.display = names.to_vec();
        Ok(self)
    }

    /// The id of a label.
    pub fn id(&self, label: &str) -> Option<usize> {
        self.names.iter().position(|n| n == label)
    }
}

/// A tokenised split: token ids per example (truncated, unpadded) and label ids.
#[derive(Debug, Clone)]
pub struct Split {
    pub ids: Vec<Vec<u32>>,
    pub labels: Vec<u32>,
}

impl Split {
    /// Tokenises a split and maps its labels; a label unseen in training is an error.
    pub fn build(
        path: &Path,
        examples: &[RawExample],
        labels: &LabelMap,
        tokenizer: &TextTokenizer,
        max_len: usize,
    ) -> Result<Self> {
        let texts: Vec<String> = examples.iter().map(|e| e.text.clone()).collect();
        let mut ids = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(256) {
            let batch = tokenizer.encode_batch(chunk, max_len)?;
            for (row, mask) in batch.input_ids.into_iter().zip(batch.attention_mask) {
                let n = mask.iter().filter(|&&m| m == 1).count();
                ids.push(row[..n].to_vec());
            }
        }
        let mut label_ids = Vec::with_capacity(examples.len());
        for (i, e) in examples.iter().enumerate() {
            // The position and counts, not the label: errors never quote a data file.
            let id = labels.id(&e.label).with_context(|| {
                format!(
                    "{}: example {}'s label is one the training set never uses (it has {} labels)",
                    crate::files::shown(path),
                    i + 1,
                    labels.names.len()
                )
            })?;
            label_ids.push(id as u32);
        }
        Ok(Self {
            ids,
            labels: label_ids,
        })
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the split holds no example.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The padded batch of the given example indices and their labels.
    pub fn batch(&self, indices: &[usize], pad_id: u32) -> (TokenBatch, Vec<u32>) {
        let rows: Vec<Vec<u32>> = indices.iter().map(|&i| self.ids[i].clone()).collect();
        let labels = indices.iter().map(|&i| self.labels[i]).collect();
        (pad_batch(&rows, pad_id), labels)
    }

    /// The fraction of the most frequent label (the majority-class accuracy).
    pub fn majority_rate(&self) -> f64 {
        let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
        for &l in &self.labels {
            *counts.entry(l).or_default() += 1;
        }
        counts.values().copied().max().unwrap_or(0) as f64 / self.len().max(1) as f64
    }
}

/// The example order of one epoch: a permutation seeded by (seed, stage, epoch).
pub fn epoch_order(n: usize, seed: u64, stage: usize, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mix = seed ^ ((stage as u64 + 1) << 40) ^ ((epoch as u64 + 1) << 20);
    let mut rng = rand::rngs::StdRng::seed_from_u64(mix);
    order.shuffle(&mut rng);
    order
}

/// Train, dev and test splits with the label map.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub labels: LabelMap,
    pub train: Split,
    pub dev: Split,
    pub test: Split,
}

impl Dataset {
    /// Loads and tokenises the three files of a run.
    pub fn load(
        config: &super::config::DataConfig,
        tokenizer: &TextTokenizer,
        max_len: usize,
    ) -> Result<Self> {
        let resolve = super::config::RunConfig::resolve;
        let (tp, dp, sp) = (
            resolve(&config.train),
            resolve(&config.dev),
            resolve(&config.test),
        );
        let train_raw = read_examples(&tp, &config.text_column, &config.label_column)?;
        let dev_raw = read_examples(&dp, &config.text_column, &config.label_column)?;
        let test_raw = read_examples(&sp, &config.text_column, &config.label_column)?;
        let labels = LabelMap::from_train(&train_raw).with_display(&config.label_names, &tp)?;
        if labels.names.len() < 2 {
            bail!(
                "{}: the training set has fewer than two labels",
                tp.display()
            );
        }
        Ok(Self {
            train: Split::build(&tp, &train_raw, &labels, tokenizer, max_len)?,
            dev: Split::build(&dp, &dev_raw, &labels, tokenizer, max_len)?,
            test: Split::build(&sp, &test_raw, &labels, tokenizer, max_len)?,
            labels,
        })
    }
}

/// Texts of a JSONL file (`text` field) or of every text file below a folder.
pub fn read_corpus(path: &Path) -> Result<Vec<String>> {
    let mut texts = Vec::new();
    if path.is_dir() {
        let mut files: Vec<_> = std::fs::read_dir(path)
            .with_context(|| format!("{}: cannot read folder", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for f in files {
            if f.extension().is_some_and(|e| e == "jsonl") {
                texts.extend(crate::util::read_texts(&f)?);
            } else if let Ok(text) = std::fs::read_to_string(&f) {
                if !text.trim().is_empty() {
                    texts.push(text);
                }
            }
        }
    } else {
        texts = crate::util::read_texts(path)?;
    }
    if texts.is_empty() {
        bail!("{}: no text found", path.display());
    }
    Ok(texts)
}

/// Consecutive blocks of `block` tokens: documents tokenised without special tokens, joined by
/// `separator` (the end-of-text token), cut into full blocks (the tail is dropped).
pub fn token_blocks(
    texts: &[String],
    tokenizer: &TextTokenizer,
    block: usize,
    separator: Option<u32>,
) -> Result<Vec<Vec<u32>>> {
    let mut stream = Vec::new();
    for t in texts {
        stream.extend(tokenizer.encode(t, false, usize::MAX)?);
        stream.extend(separator);
    }
    let blocks: Vec<Vec<u32>> = stream.chunks_exact(block).map(|c| c.to_vec()).collect();
    if blocks.is_empty() {
        bail!("the corpus holds fewer than {block} tokens");
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_quotes_and_string_labels() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.csv");
        std::fs::write(
            &p,
            "id,sentence,polarity\n1,\"good, really \"\"good\"\"\",pos\n2,bad,neg\n",
        )
        .unwrap();
        let ex = read_examples(&p, "sentence", "polarity").unwrap();
        assert_eq!(ex[0].text, "good, really \"good\"");
        assert_eq!(ex[1].label, "neg");
        let map = LabelMap::from_train(&ex);
        assert_eq!(map.names, vec!["neg", "pos"]);
        let err = read_examples(&p, "text", "polarity")
            .unwrap_err()
            .to_string();
        assert!(err.contains("none named 'text'"), "{err}");
    }

    #[test]
    fn spreadsheet_csv_quoted_line_breaks_and_a_bom_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.csv");
        std::fs::write(
            &p,
            "\u{feff}text,label\r\n\"first line\nsecond line\",pos\r\nplain,neg\r\n",
        )
        .unwrap();
        let ex = read_examples(&p, "text", "label").unwrap();
        assert_eq!(ex.len(), 2);
        assert_eq!(ex[0].text, "first line\nsecond line");
        assert_eq!((ex[0].label.as_str(), ex[1].label.as_str()), ("pos", "neg"));
    }

    #[test]
    fn errors_never_quote_the_file() {
        let dir = tempfile::tempdir().unwrap();
        // A data path that is a link to somebody's secret: its first line must not be echoed.
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "root:SECRET-TOKEN\n").unwrap();
        let p = dir.path().join("d.csv");
        std::os::unix::fs::symlink(&secret, &p).unwrap();
        let err = format!("{:#}", read_examples(&p, "text", "label").unwrap_err());
        assert!(!err.contains("SECRET"), "{err}");
        assert!(err.contains("d.csv"), "{err}");
        let mixed = dir.path().join("m.jsonl");
        std::fs::write(
            &mixed,
            "{\"text\":\"a\",\"label\":1}\n{\"text\":\"b\",\"label\":\"SECRET\"}\n",
        )
        .unwrap();
        let err = format!("{:#}", read_examples(&mixed, "text", "label").unwrap_err());
        assert!(
            err.contains("m.jsonl:2") && !err.contains("SECRET"),
            "{err}"
        );
        let number = dir.path().join("n.jsonl");
        std::fs::write(&number, "{\"text\":42,\"label\":1}\n").unwrap();
        let err = format!("{:#}", read_examples(&number, "text", "label").unwrap_err());
        assert!(err.contains("is a number, not a string"), "{err}");
    }

    #[test]
    fn empty_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.jsonl");
        std::fs::write(&p, "\n").unwrap();
        let err = read_examples(&p, "text", "label").unwrap_err().to_string();
        assert!(
            err.contains("holds no examples") && err.contains("d.jsonl"),
            "{err}"
        );
    }

    #[test]
    fn integer_labels_keep_numeric_order() {
        let ex: Vec<RawExample> = ["10", "2", "1"]
            .iter()
            .map(|l| RawExample {
                text: "x".into(),
                label: l.to_string(),
            })
            .collect();
        assert_eq!(LabelMap::from_train(&ex).names, vec!["1", "2", "10"]);
    }

    #[test]
    fn epoch_order_is_a_seeded_permutation() {
        let a = epoch_order(100, 7, 1, 0);
        assert_eq!(a, epoch_order(100, 7, 1, 0));
        assert_ne!(a, epoch_order(100, 7, 1, 1));
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
    }
}
