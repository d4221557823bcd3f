//! The settings two runs differ in, field by field (the Runs tab's side-by-side diff).

use crate::train::config::RunConfig;
use serde_json::Value;
use std::collections::BTreeMap;

/// Every leaf of a JSON value by its dotted path (`stages[1].learning_rate`).
fn leaves(value: &Value, path: String, out: &mut BTreeMap<String, String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                leaves(v, p, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                leaves(v, format!("{path}[{i}]"), out);
            }
            if items.is_empty() {
                out.insert(path, "[]".into());
            }
        }
        other => {
            out.insert(path, other.to_string());
        }
    }
}

/// `(setting, value in a, value in b)` for every setting that differs ("—" where one lacks it).
pub fn config_diff(a: &RunConfig, b: &RunConfig) -> Vec<(String, String, String)> {
    let flat = |c: &RunConfig| {
        let mut out = BTreeMap::new();
        if let Ok(v) = serde_json::to_value(c) {
            leaves(&v, String::new(), &mut out);
        }
        out
    };
    let (fa, fb) = (flat(a), flat(b));
    let keys: std::collections::BTreeSet<&String> = fa.keys().chain(fb.keys()).collect();
    keys.into_iter()
        .filter(|k| fa.get(*k) != fb.get(*k))
        .map(|k| {
            let show = |m: &BTreeMap<String, String>| m.get(k).cloned().unwrap_or("—".into());
            (k.clone(), show(&fa), show(&fb))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_exactly_the_settings_that_differ() {
        let a = RunConfig::default();
        let mut b = a.clone();
        assert!(config_diff(&a, &b).is_empty());
        b.gamma = 0.0;
        b.rank = 4;
        b.stages[1].learning_rate = 0.01;
        let diff = config_diff(&a, &b);
        let names: Vec<&str> = diff.iter().map(|d| d.0.as_str()).collect();
        assert_eq!(names, ["gamma", "rank", "stages[1].learning_rate"]);
        assert_eq!(diff[1], ("rank".into(), a.rank.to_string(), "4".into()));
    }
}
