//! Subnet specification Φ: which layers, how many heads, FFN neurons and hidden units are kept.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

pub use super::widths::Widths;

/// The size limits of a teacher that a subnet is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TeacherShape {
    pub layers: usize,
    pub heads: usize,
    /// Query heads sharing one key/value head (1 for BERT, >1 for GQA decoders).
    pub heads_per_kv: usize,
    pub head_size: usize,
    pub ffn: usize,
    pub hidden: usize,
}

/// One subnet of the teacher: kept layers, the first `heads` heads and first `ffn` neurons of
/// each kept layer (one value for all, or one per kept layer), the first `hidden` units.
///
/// Text form: `layers=0,2;heads=6;ffn=768` with an optional `;hidden=256`; per layer
/// `layers=0,1,2;heads=12,6,3;ffn=1536,768,384`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SubnetSpec {
    pub layers: Vec<usize>,
    pub heads: Widths,
    pub ffn: Widths,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden: Option<usize>,
}

impl SubnetSpec {
    /// The full teacher shape.
    pub fn maxnet(t: &TeacherShape) -> Self {
        Self {
            layers: (0..t.layers).collect(),
            heads: Widths::All(t.heads),
            ffn: Widths::All(t.ffn),
            hidden: None,
        }
    }

    /// Every layer of a model, each at its own (heads, FFN) width: a loaded export as a subnet.
    pub fn whole_model(layers: usize, widths: impl Fn(usize) -> (usize, usize)) -> Self {
        let pick = |side: fn((usize, usize)) -> usize| {
            Widths::from_list((0..layers).map(|i| side(widths(i))).collect())
        };
        Self {
            layers: (0..layers).collect(),
            heads: pick(|w| w.0),
            ffn: pick(|w| w.1),
            hidden: None,
        }
    }

    /// Checks that each kept layer fits that layer of `whole` (a per-layer model's own widths,
    /// from [`Self::whole_model`]); the message names the layer.
    pub fn check_within(&self, whole: &SubnetSpec) -> Result<()> {
        for (i, &layer) in self.layers.iter().enumerate() {
            let (heads, ffn) = self.layer_widths(i);
            let (max_heads, max_ffn) = whole.layer_widths(layer);
            if heads > max_heads || ffn > max_ffn {
                bail!("layer {layer} has {max_heads} heads and FFN {max_ffn} in this model; the subnet asks for {heads} heads and FFN {ffn}");
            }
        }
        Ok(())
    }

    /// True when every kept layer has the same heads and FFN width.
    pub fn is_uniform(&self) -> bool {
        self.heads.uniform().is_some() && self.ffn.uniform().is_some()
    }

    /// A short name for tables: `3 L · 12/6/3 h · FFN 1536/768/384` (deep subnets' specs are
    /// long; the shape says what differs between rows).
    pub fn shape(&self) -> String {
        format!(
            "{} L · {} h · FFN {}",
            self.layers.len(),
            self.heads.short(),
            self.ffn.short()
        )
    }

    /// One line per kept layer of a per-layer subnet ("layer 1: 6 heads, FFN 768"); empty for
    /// a uniform one (its spec says it all).
    pub fn layer_lines(&self) -> String {
        if self.is_uniform() {
            return String::new();
        }
        self.layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let (h, f) = self.layer_widths(i);
                format!("layer {l}: {h} heads, FFN {f}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// (heads, FFN neurons) of the `i`-th kept layer.
    pub fn layer_widths(&self, i: usize) -> (usize, usize) {
        (self.heads.at(i), self.ffn.at(i))
    }

    /// Hidden width, defaulting to the teacher's.
    pub fn hidden_or(&self, teacher_hidden: usize) -> usize {
        self.hidden.unwrap_or(teacher_hidden)
    }

    /// Checks the spec against a teacher; messages say which part is wrong.
    pub fn validate(&self, t: &TeacherShape) -> Result<()> {
        if self.layers.is_empty() {
            bail!("subnet keeps no layer");
        }
        for pair in self.layers.windows(2) {
            if pair[0] >= pair[1] {
                bail!(
                    "subnet layers must be strictly increasing, got {:?}",
                    self.layers
                );
            }
        }
        if let Some(&bad) = self.layers.iter().find(|&&l| l >= t.layers) {
            bail!(
                "subnet layer {bad} is out of range: the teacher has layers 0..{}",
                t.layers - 1
            );
        }
        self.heads.check_count("heads", self.layers.len())?;
        self.ffn.check_count("ffn", self.layers.len())?;
        let many = |w: &Widths| w.uniform().is_none();
        for (i, &layer) in self.layers.iter().enumerate() {
            let (heads, ffn) = self.layer_widths(i);
            // Per-layer messages name the layer; uniform ones read as before.
            let at = if many(&self.heads) || many(&self.ffn) {
                format!(" (layer {layer})")
            } else {
                String::new()
            };
            if heads == 0 {
                bail!("subnet heads must be at least 1{at}");
            }
            if heads > t.heads {
                bail!("subnet heads {heads} exceed the teacher's {}{at}", t.heads);
            }
            if !heads.is_multiple_of(t.heads_per_kv) {
                bail!(
                    "subnet heads {heads} must be a multiple of {} (query heads per key/value head){at}",
                    t.heads_per_kv
                );
            }
            if ffn == 0 {
                bail!("subnet ffn must be at least 1{at}");
            }
            if ffn > t.ffn {
                bail!("subnet ffn {ffn} exceeds the teacher's {}{at}", t.ffn);
            }
        }
        if let Some(h) = self.hidden {
            if h == 0 {
                bail!("subnet hidden must be at least 1");
            }
            if h > t.hidden {
                bail!("subnet hidden {h} exceeds the teacher's {}", t.hidden);
            }
            if h % t.head_size != 0 {
                bail!(
                    "subnet hidden {h} must be a multiple of the head size {}",
                    t.head_size
                );
            }
        }
        Ok(())
    }

    /// Normalises `hidden` so that the teacher's full width is written as `None`.
    pub fn canonical(mut self, teacher_hidden: usize) -> Self {
        if self.hidden == Some(teacher_hidden) {
            self.hidden = None;
        }
        self
    }
}

impl fmt::Display for SubnetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let layers: Vec<String> = self.layers.iter().map(|l| l.to_string()).collect();
        write!(
            f,
            "layers={};heads={};ffn={}",
            layers.join(","),
            self.heads,
            self.ffn
        )?;
        if let Some(h) = self.hidden {
            write!(f, ";hidden={h}")?;
        }
        Ok(())
    }
}

impl FromStr for SubnetSpec {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        let mut layers = None;
        let mut heads: Option<Widths> = None;
        let mut ffn: Option<Widths> = None;
        let mut hidden = None;
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .with_context(|| format!("subnet spec '{text}': '{part}' is not key=value"))?;
            let number = |v: &str| -> Result<usize> {
                v.trim().parse::<usize>().with_context(|| {
                    format!("subnet spec '{text}': '{v}' is not a non-negative integer")
                })
            };
            match key.trim() {
                "layers" => {
                    let list = value
                        .split(',')
                        .map(number)
                        .collect::<Result<Vec<usize>>>()?;
                    layers = Some(list);
                }
                "heads" | "ffn" => {
                    let list = value
                        .split(',')
                        .map(number)
                        .collect::<Result<Vec<usize>>>()?;
                    let widths = Some(Widths::from_list(list));
                    if key.trim() == "heads" {
                        heads = widths;
                    } else {
                        ffn = widths;
                    }
                }
                "hidden" => hidden = Some(number(value)?),
                other => bail!(
                    "subnet spec '{text}': unknown key '{other}' (layers, heads, ffn, hidden)"
                ),
            }
        }
        let missing = |name: &str| anyhow::anyhow!("subnet spec '{text}': missing '{name}='");
        Ok(Self {
            layers: layers.ok_or_else(|| missing("layers"))?,
            heads: heads.ok_or_else(|| missing("heads"))?,
            ffn: ffn.ok_or_else(|| missing("ffn"))?,
            hidden,
        })
    }
}

impl TeacherShape {
    /// The shipped teacher's shape (paraphrase-MiniLM-L3-v2), for tests and examples.
    pub const MINILM_L3: TeacherShape = TeacherShape {
        layers: 3,
        heads: 12,
        heads_per_kv: 1,
        head_size: 32,
        ffn: 1536,
        hidden: 384,
    };
}

/// Evenly spaced layer indices for a depth, always including the last (DynaBERT's map).
pub fn even_layers(teacher_layers: usize, depth: usize) -> Vec<usize> {
    let depth = depth.clamp(1, teacher_layers.max(1));
    if depth == teacher_layers {
        return (0..teacher_layers).collect();
    }
    // Spread `depth` picks so the last teacher layer is always kept.
    let mut out: Vec<usize> = (1..=depth)
        .map(|i| (i * teacher_layers).div_ceil(depth) - 1)
        .collect();
    out.dedup();
    out
}

/// Evenly spaced layer indices for a depth from the first layer to the last, both kept (depth 1
/// keeps the last): `round(i·(L−1)/(d−1))` for i in 0..d.
pub fn first_and_last_layers(teacher_layers: usize, depth: usize) -> Vec<usize> {
    let depth = depth.clamp(1, teacher_layers.max(1));
    if depth == 1 {
        return vec![teacher_layers.saturating_sub(1)];
    }
    let span = teacher_layers - 1;
    let mut out: Vec<usize> = (0..depth)
        .map(|i| (i * span + (depth - 1) / 2) / (depth - 1))
        .collect();
    out.dedup();
    out
}

/// Parses a spec and checks it against a teacher, or returns the maxnet when none is given.
pub fn resolve_spec(text: Option<&str>, shape: &TeacherShape) -> Result<SubnetSpec> {
    match text {
        None => Ok(SubnetSpec::maxnet(shape)),
        Some(t) => {
            let spec: SubnetSpec = t.parse()?;
            spec.validate(shape)
                .with_context(|| format!("subnet '{t}' does not fit the teacher"))?;
            // One text per subnet: `hidden=` at the teacher's width is the default written out.
            Ok(spec.canonical(shape.hidden))
        }
    }
}

/// The subnet to run: the one asked for, checked against each layer of the model (a per-layer
/// export's layers differ), or else the whole model at each layer's own width.
pub fn resolve_spec_in(
    subnet: Option<&str>,
    shape: &TeacherShape,
    whole: SubnetSpec,
) -> Result<SubnetSpec> {
    let Some(text) = subnet else {
        return Ok(whole);
    };
    let spec = resolve_spec(Some(text), shape)?;
    spec.check_within(&whole)
        .map_err(|e| anyhow::anyhow!("subnet '{text}' does not fit this model: {e}"))?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips() {
        let spec: SubnetSpec = "layers=0,2;heads=6;ffn=768".parse().unwrap();
        assert_eq!(spec.layers, vec![0, 2]);
        assert_eq!(spec.to_string(), "layers=0,2;heads=6;ffn=768");
        let wide: SubnetSpec = "layers=1;heads=3;ffn=384;hidden=256".parse().unwrap();
        assert_eq!(wide.to_string().parse::<SubnetSpec>().unwrap(), wide);
    }

    #[test]
    fn per_layer_specs_parse_print_and_name_the_position() {
        let t = TeacherShape::MINILM_L3;
        let text = "layers=0,1,2;heads=12,6,3;ffn=1536,768,384";
        let spec: SubnetSpec = text.parse().unwrap();
        assert_eq!(spec.to_string(), text);
        assert_eq!(spec.layer_widths(1), (6, 768));
        assert_eq!(
            spec.layer_lines(),
            "layer 0: 12 heads, FFN 1536\nlayer 1: 6 heads, FFN 768\nlayer 2: 3 heads, FFN 384"
        );
        assert!(!spec.is_uniform());
        spec.validate(&t).unwrap();
        // Equal per-layer values are the uniform subnet, printed as today.
        let same: SubnetSpec = "layers=0,2;heads=6,6;ffn=768,768".parse().unwrap();
        assert_eq!(same.to_string(), "layers=0,2;heads=6;ffn=768");
        let short: SubnetSpec = "layers=0,1,2;heads=6;ffn=768,384".parse().unwrap();
        let e = short.validate(&t).unwrap_err().to_string();
        assert!(e.contains("ffn has 2 values for 3 kept layers"), "{e}");
        let wide: SubnetSpec = "layers=0,1;heads=12,13;ffn=384".parse().unwrap();
        let e = wide.validate(&t).unwrap_err().to_string();
        assert!(e.contains("exceed") && e.contains("(layer 1)"), "{e}");
    }

    #[test]
    fn even_layers_keep_the_last() {
        assert_eq!(even_layers(3, 1), vec![2]);
        assert_eq!(even_layers(3, 2), vec![1, 2]);
        assert_eq!(even_layers(3, 3), vec![0, 1, 2]);
        assert_eq!(even_layers(30, 20).len(), 20);
        assert_eq!(*even_layers(30, 20).last().unwrap(), 29);
        assert_eq!(even_layers(12, 6), vec![1, 3, 5, 7, 9, 11]);
    }

    #[test]
    fn bad_specs_are_clear_errors() {
        let t = TeacherShape::MINILM_L3;
        let cases = [
            ("layers=0,3;heads=6;ffn=768", "out of range"),
            ("layers=0;heads=13;ffn=768", "exceed"),
            ("layers=0;heads=0;ffn=768", "at least 1"),
            ("layers=0;heads=6;ffn=0", "at least 1"),
            ("layers=0;heads=6;ffn=2000", "exceeds"),
            ("layers=2,1;heads=6;ffn=768", "increasing"),
            ("layers=0;heads=6;ffn=768;hidden=100", "multiple"),
            ("layers=0;heads=6;ffn=768;hidden=0", "at least 1"),
        ];
        for (text, needle) in cases {
            let spec: SubnetSpec = text.parse().unwrap();
            let err = spec.validate(&t).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
        for (text, needle) in [
            ("layers=;heads=6;ffn=768", "not a non-negative integer"),
            ("heads=6;ffn=768", "missing 'layers='"),
            ("layers=0;heads=six;ffn=768", "not a non-negative integer"),
            ("layers=0;heads=6;ffn=768;depth=2", "unknown key"),
            ("layers=0;heads", "not key=value"),
        ] {
            let err = text.parse::<SubnetSpec>().unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
