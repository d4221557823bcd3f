//! The search space A: depth, heads, FFN and hidden choices, with the maxnet and minnet of each stage.

use super::config::{LayerRule, SpaceConfig, WidthMode};
use crate::model::subnet::{even_layers, first_and_last_layers};
use crate::model::{SubnetSpec, TeacherShape, Widths};
use anyhow::{bail, Result};
use rand::Rng;

/// The choices of each elastic dimension, sorted ascending and checked against the teacher.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchSpace {
    pub teacher: TeacherShape,
    pub depths: Vec<usize>,
    pub heads: Vec<usize>,
    pub ffn: Vec<usize>,
    pub hidden: Vec<usize>,
    /// Which layers a depth keeps.
    pub layer_rule: LayerRule,
    /// Whether random subnets draw one width for all layers or one per layer.
    pub widths: WidthMode,
}

/// The leading quarter steps of `full` (rounded to `unit`), e.g. 3, 6, 9, 12 heads of 12.
fn quarters(full: usize, unit: usize) -> Vec<usize> {
    let mut out: Vec<usize> = (1..=4)
        .map(|q| ((full * q / 4) / unit).max(1) * unit)
        .filter(|&v| v <= full)
        .collect();
    out.push(full);
    out.sort_unstable();
    out.dedup();
    out
}

impl SearchSpace {
    /// The space a run uses: the config's lists, or the teacher's sensible default where empty.
    pub fn new(teacher: TeacherShape, config: &SpaceConfig) -> Result<Self> {
        let pick = |given: &[usize], default: Vec<usize>| -> Vec<usize> {
            let mut v = if given.is_empty() {
                default
            } else {
                given.to_vec()
            };
            v.sort_unstable();
            v.dedup();
            v
        };
        let default_depths = if teacher.layers <= 4 {
            (1..=teacher.layers).collect()
        } else {
            quarters(teacher.layers, 1)
        };
        let space = Self {
            teacher,
            depths: pick(&config.depths, default_depths),
            heads: pick(&config.heads, quarters(teacher.heads, teacher.heads_per_kv)),
            ffn: pick(&config.ffn, quarters(teacher.ffn, 1)),
            hidden: pick(&config.hidden, vec![teacher.hidden]),
            layer_rule: config.layers,
            widths: config.widths,
        };
        space.check()?;
        Ok(space)
    }

    fn check(&self) -> Result<()> {
        let t = &self.teacher;
        for &d in &self.depths {
            if d == 0 || d > t.layers {
                bail!(
                    "space.depths: depth {d} is not from 1 to the teacher's {} layers",
                    t.layers
                );
            }
        }
        for &h in &self.heads {
            if h == 0 || h > t.heads || h % t.heads_per_kv != 0 {
                bail!(
                    "space.heads: {h} must be in 1..={} and a multiple of {}",
                    t.heads,
                    t.heads_per_kv
                );
            }
        }
        for &f in &self.ffn {
            if f == 0 || f > t.ffn {
                bail!(
                    "space.ffn: FFN width {f} is not from 1 to the teacher's {}",
                    t.ffn
                );
            }
        }
        for &h in &self.hidden {
            if h == 0 || h > t.hidden || h % t.head_size != 0 {
                bail!(
                    "space.hidden: {h} must be in 1..={} and a multiple of the head size {}",
                    t.hidden,
                    t.head_size
                );
            }
        }
        Ok(())
    }

    /// The subnet of the given choices (kept layers evenly spaced for the depth, by the rule).
    pub fn spec(&self, depth: usize, heads: usize, ffn: usize, hidden: usize) -> SubnetSpec {
        let layers = match self.layer_rule {
            LayerRule::LastKept => even_layers(self.teacher.layers, depth),
            LayerRule::FirstAndLast => first_and_last_layers(self.teacher.layers, depth),
        };
        SubnetSpec {
            layers,
            heads: heads.into(),
            ffn: ffn.into(),
            hidden: Some(hidden),
        }
        .canonical(self.teacher.hidden)
    }

    fn first(v: &[usize]) -> usize {
        v.first().copied().unwrap_or(0)
    }

    /// The full teacher shape (the maxnet is always the teacher, whatever the lists hold).
    pub fn maxnet(&self) -> SubnetSpec {
        SubnetSpec::maxnet(&self.teacher)
    }

    /// The smallest subnet a stage samples: min width (stage 1), min width and depth (stage 2).
    pub fn minnet(&self, stage: usize) -> SubnetSpec {
        let depth = if stage >= 2 {
            Self::first(&self.depths)
        } else {
            self.teacher.layers
        };
        self.spec(
            depth,
            Self::first(&self.heads),
            Self::first(&self.ffn),
            Self::first(&self.hidden),
        )
    }

    /// A uniformly random subnet of the stage's space (width only in stage 1).
    pub fn sample(&self, stage: usize, rng: &mut impl Rng) -> SubnetSpec {
        let choose = |v: &[usize], rng: &mut dyn rand::RngCore| v[rng.random_range(0..v.len())];
        let depth = if stage >= 2 {
            choose(&self.depths, rng)
        } else {
            self.teacher.layers
        };
        if self.widths == WidthMode::PerLayer {
            let mut spec = self.spec(depth, self.teacher.heads, self.teacher.ffn, 0);
            let kept = spec.layers.len();
            let heads: Vec<usize> = (0..kept).map(|_| choose(&self.heads, rng)).collect();
            let ffn: Vec<usize> = (0..kept).map(|_| choose(&self.ffn, rng)).collect();
            let hidden = choose(&self.hidden, rng);
            spec.heads = Widths::from_list(heads);
            spec.ffn = Widths::from_list(ffn);
            spec.hidden = Some(hidden);
            return spec.canonical(self.teacher.hidden);
        }
        // The uniform draws in today's order: the same seed gives the same subnets.
        let heads = choose(&self.heads, rng);
        let ffn = choose(&self.ffn, rng);
        let hidden = choose(&self.hidden, rng);
        self.spec(depth, heads, ffn, hidden)
    }

    /// Every subnet of the space, smallest first (depth, then heads, FFN, hidden).
    pub fn all(&self) -> Vec<SubnetSpec> {
        let mut out = Vec::new();
        for &d in &self.depths {
            for &h in &self.heads {
                for &f in &self.ffn {
                    for &w in &self.hidden {
                        out.push(self.spec(d, h, f, w));
                    }
                }
            }
        }
        out
    }

    /// Two medium subnets for progress reports: around one third and two thirds of the space.
    pub fn mediums(&self) -> Vec<SubnetSpec> {
        let mid = |v: &[usize], frac: f64| v[((v.len() - 1) as f64 * frac).round() as usize];
        [1.0 / 3.0, 2.0 / 3.0]
            .iter()
            .map(|&f| {
                self.spec(
                    mid(&self.depths, f),
                    mid(&self.heads, f),
                    mid(&self.ffn, f),
                    mid(&self.hidden, f),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_space_of_the_shipped_teacher() {
        let s = SearchSpace::new(TeacherShape::MINILM_L3, &SpaceConfig::default()).unwrap();
        assert_eq!(s.depths, vec![1, 2, 3]);
        assert_eq!(s.heads, vec![3, 6, 9, 12]);
        assert_eq!(s.ffn, vec![384, 768, 1152, 1536]);
        assert_eq!(s.hidden, vec![384]);
        assert_eq!(s.all().len(), 48);
        assert_eq!(s.minnet(2).to_string(), "layers=2;heads=3;ffn=384");
        assert_eq!(s.minnet(1).to_string(), "layers=0,1,2;heads=3;ffn=384");
        assert_eq!(s.maxnet().to_string(), "layers=0,1,2;heads=12;ffn=1536");
    }

    #[test]
    fn per_layer_sampling_draws_each_layer_on_its_own() {
        let config = SpaceConfig {
            widths: WidthMode::PerLayer,
            ..SpaceConfig::default()
        };
        let s = SearchSpace::new(TeacherShape::MINILM_L3, &config).unwrap();
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(3);
        let drawn: Vec<SubnetSpec> = (0..200).map(|_| s.sample(2, &mut rng)).collect();
        let per_layer = drawn.iter().filter(|d| !d.is_uniform()).count();
        // With 4 choices a layer, 3 kept layers agree on both widths 1 time in 256.
        assert!(per_layer > 100, "{per_layer} of 200 per-layer");
        for d in &drawn {
            d.validate(&s.teacher).unwrap();
            for i in 0..d.layers.len() {
                let (h, f) = d.layer_widths(i);
                assert!(s.heads.contains(&h) && s.ffn.contains(&f), "{d}");
            }
        }
        // The sandwich ends stay uniform.
        assert!(s.minnet(2).is_uniform() && s.maxnet().is_uniform());
    }

    #[test]
    fn stage_one_samples_keep_full_depth() {
        let s = SearchSpace::new(TeacherShape::MINILM_L3, &SpaceConfig::default()).unwrap();
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
        for _ in 0..50 {
            assert_eq!(s.sample(1, &mut rng).layers.len(), 3);
        }
        let depths: std::collections::BTreeSet<usize> = (0..200)
            .map(|_| s.sample(2, &mut rng).layers.len())
            .collect();
        assert_eq!(depths.into_iter().collect::<Vec<_>>(), vec![1, 2, 3]);
    }

    #[test]
    fn first_and_last_rule_keeps_both_ends_evenly() {
        use crate::model::subnet::first_and_last_layers;
        assert_eq!(
            first_and_last_layers(30, 10),
            vec![0, 3, 6, 10, 13, 16, 19, 23, 26, 29]
        );
        assert_eq!(first_and_last_layers(30, 2), vec![0, 29]);
        assert_eq!(first_and_last_layers(30, 1), vec![29]);
        assert_eq!(first_and_last_layers(30, 30), (0..30).collect::<Vec<_>>());
        for d in 1..=30 {
            let kept = first_and_last_layers(30, d);
            assert_eq!(kept.len(), d, "depth {d}: {kept:?}");
            assert!(kept.windows(2).all(|w| w[0] < w[1]));
        }
    }

    #[test]
    fn invalid_choices_name_the_field() {
        let cfg = SpaceConfig {
            heads: vec![5, 13],
            ..Default::default()
        };
        let err = SearchSpace::new(TeacherShape::MINILM_L3, &cfg)
            .unwrap_err()
            .to_string();
        assert!(err.contains("space.heads"), "{err}");
        let cfg = SpaceConfig {
            hidden: vec![100],
            ..Default::default()
        };
        assert!(SearchSpace::new(TeacherShape::MINILM_L3, &cfg)
            .unwrap_err()
            .to_string()
            .contains("space.hidden"));
    }
}
