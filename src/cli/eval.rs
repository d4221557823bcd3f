//! `mlfs-studio eval`: accuracy of subnets of a trained run on dev and test.

use crate::cli::forward::resolve_spec;
use crate::eval::accuracy::split_accuracy;
use crate::train::trainer::Trainer;
use anyhow::Result;
use std::path::Path;

/// Scores the listed subnets (default: maxnet, minnet and two medium ones) and prints a table.
pub fn eval(run_dir: &Path, subnets: Option<&str>) -> Result<()> {
    let trainer = Trainer::open_trained(run_dir)?;
    let shape = trainer.space.teacher;
    let specs: Vec<(String, crate::model::SubnetSpec)> = match subnets {
        Some(list) => split_specs(list)
            .iter()
            .map(|s| Ok((String::new(), resolve_spec(Some(s), &shape)?)))
            .collect::<Result<_>>()?,
        None => trainer.report_subnets(),
    };
    println!("{:<10} {:<40} {:>8} {:>8}", "role", "subnet", "dev", "test");
    for (role, spec) in specs {
        let dev = split_accuracy(&trainer.net, &trainer.data.dev, &spec, trainer.pad_id)?;
        let test = split_accuracy(&trainer.net, &trainer.data.test, &spec, trainer.pad_id)?;
        println!("{role:<10} {:<40} {dev:>8.4} {test:>8.4}", spec.to_string());
    }
    Ok(())
}

/// Splits `SPEC,SPEC,…` where each spec itself holds commas (`layers=0,2;…`): a new spec
/// starts at every comma followed by a `key=`.
pub fn split_specs(list: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for piece in list.split(',') {
        let starts_spec = piece.trim_start().starts_with(|c: char| c.is_ascii_alphabetic());
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
        assert_eq!(got, vec!["layers=0,2;heads=6;ffn=768", "layers=2;heads=3;ffn=384"]);
    }
}
