//! Everything that keeps Start disabled, field by field, with the reason.

use crate::mlfs::space::SearchSpace;
use crate::model::{BertConfig, TeacherShape};
use crate::train::config::RunConfig;
use std::collections::BTreeMap;
use std::path::Path;

/// The teacher's shape and size read from its `config.json` (cheap: no weights loaded).
#[derive(Debug, Clone, PartialEq)]
pub struct TeacherSummary {
    pub config: BertConfig,
    pub params: usize,
}

impl TeacherSummary {
    /// Reads `config.json` of a teacher folder.
    pub fn read(dir: &Path) -> Result<Self, String> {
        let path = RunConfig::resolve(dir).join("config.json");
        let config = BertConfig::from_file(&path).map_err(|e| format!("{e:#}"))?;
        let c = &config;
        let (d, a, f) = (c.hidden_size, c.attention_width(), c.intermediate_size);
        let emb = (c.vocab_size + c.max_position_embeddings + c.type_vocab_size + 2) * d;
        let layer = 4 * (a * d + a) + 4 * d + 2 * f * d + f + d;
        Ok(Self {
            params: emb + c.num_hidden_layers * layer,
            config,
        })
    }

    /// Limits for the search space.
    pub fn shape(&self) -> TeacherShape {
        let c = &self.config;
        TeacherShape {
            layers: c.num_hidden_layers,
            heads: c.num_attention_heads,
            heads_per_kv: 1,
            head_size: c.head_size(),
            ffn: c.intermediate_size,
            hidden: c.hidden_size,
        }
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
    for (field, path) in [
        ("data.train", &config.data.train),
        ("data.dev", &config.data.dev),
        ("data.test", &config.data.test),
    ] {
        if !RunConfig::resolve(path).is_file() {
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
