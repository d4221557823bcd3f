//! Everything that keeps Start disabled, field by field, with the reason.

use crate::mlfs::space::SearchSpace;
use crate::model::llama::LlamaConfig;
use crate::model::{BertConfig, TeacherShape};
use crate::train::config::RunConfig;
use std::collections::BTreeMap;
use std::path::Path;

/// The teacher's shape and size from its metadata (cheap: no weights loaded).
#[derive(Debug, Clone, PartialEq)]
pub struct TeacherSummary {
    pub shape: TeacherShape,
    pub params: usize,
    /// A Llama-family decoder (GGUF or Hugging Face Llama folder) rather than a BERT encoder.
    pub decoder: bool,
}

impl TeacherSummary {
    /// Reads a BERT folder's `config.json`, a Llama folder's, or a GGUF file's metadata.
    pub fn read(path: &Path) -> Result<Self, String> {
        let path = RunConfig::resolve(path);
        if crate::model::llama::is_decoder(&path) {
            let config = if path.is_file() {
                crate::model::llama::gguf::read_config(&path)
            } else {
                LlamaConfig::from_file(&path.join("config.json"))
            }
            .map_err(|e| format!("{e:#}"))?;
            // The one parameter count of each architecture (model/params.rs, model/config.rs).
            return Ok(Self {
                params: config.param_count(),
                shape: config.shape(),
                decoder: true,
            });
        }
        let config =
            BertConfig::from_file(&path.join("config.json")).map_err(|e| format!("{e:#}"))?;
        Ok(Self {
            params: config.param_count(),
            shape: config.shape(),
            decoder: false,
        })
    }

    /// Limits for the search space.
    pub fn shape(&self) -> TeacherShape {
        self.shape
    }

    /// One line for the configuration panel.
    pub fn describe(&self) -> String {
        let t = &self.shape;
        let heads = if t.heads_per_kv > 1 {
            format!(
                "{} query heads ({} KV) of {}",
                t.heads,
                t.heads / t.heads_per_kv,
                t.head_size
            )
        } else {
            format!("{} heads of {}", t.heads, t.head_size)
        };
        format!(
            "{} · {} layers · hidden {} · {heads} · FFN {} · {:.1} M parameters",
            if self.decoder { "decoder" } else { "encoder" },
            t.layers,
            t.hidden,
            t.ffn,
            self.params as f64 / 1e6
        )
    }
}

/// Parses a comma-separated list of whole numbers ("" is the empty list: teacher default).
pub fn parse_list(text: &str) -> Result<Vec<usize>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<usize>()
                .map_err(|_| format!("'{t}' is not a whole number"))
        })
        .collect()
}

/// Field name → reason, for every problem of the configuration in the window.
pub fn field_errors(
    config: &RunConfig,
    teacher: &Result<TeacherSummary, String>,
    list_errors: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut errors: BTreeMap<String, String> = config
        .validate()
        .into_iter()
        .map(|e| (e.field, e.message))
        .collect();
    for (k, v) in list_errors {
        errors.insert(k.clone(), v.clone());
    }
    match teacher {
        Err(e) => {
            errors.insert("teacher".into(), e.clone());
        }
        Ok(t) => {
            if let Err(e) = SearchSpace::new(t.shape(), &config.space) {
                let msg = format!("{e:#}");
                let field = msg.split(':').next().unwrap_or("space").to_string();
                errors.entry(field).or_insert(msg);
            }
        }
    }
    if let (Ok(t), Some(lm)) = (teacher, &config.lm) {
        for spec in &lm.students {
            let checked = spec
                .parse::<crate::model::SubnetSpec>()
                .and_then(|s| s.validate(&t.shape()));
            if let Err(e) = checked {
                errors.insert("lm.students".into(), format!("'{spec}': {e:#}"));
            }
        }
    }
    if let Ok(t) = teacher {
        if t.decoder != config.is_decoder() {
            let what = if t.decoder {
                "a decoder teacher needs a decoder preset (an `lm` section): open one of the code-* presets"
            } else {
                "a decoder preset needs a decoder teacher (GGUF file or Llama folder)"
            };
            errors.insert("teacher".into(), what.into());
        }
    }
    // Decoder runs read a JSONL file or a folder of text files, and have no test split.
    let files: &[(&str, &std::path::PathBuf)] = if config.is_decoder() {
        &[
            ("data.train", &config.data.train),
            ("data.dev", &config.data.dev),
        ]
    } else {
        &[
            ("data.train", &config.data.train),
            ("data.dev", &config.data.dev),
            ("data.test", &config.data.test),
        ]
    };
    for &(field, path) in files {
        let p = RunConfig::resolve(path);
        if !(p.is_file() || (config.is_decoder() && p.is_dir())) {
            errors.insert(field.into(), format!("{}: file not found", path.display()));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    #[test]
    fn lists_parse_with_clear_errors() {
        assert_eq!(super::parse_list("3, 6,9 ,12").unwrap(), vec![3, 6, 9, 12]);
        assert_eq!(super::parse_list("").unwrap(), Vec::<usize>::new());
        assert!(super::parse_list("3, six").unwrap_err().contains("'six'"));
    }
}
