//! A subnet of a search space as a genome: its depth's index, its hidden width's index, then
//! each kept layer's heads index and FFN index (slots past the depth are unused and held at 0,
//! so that one subnet has one genome).

use super::nsga2::Genome;
use crate::mlfs::space::SearchSpace;
use crate::model::widths::Widths;
use crate::model::SubnetSpec;

/// The genome layout of one space.
pub struct Coding<'a> {
    pub space: &'a SearchSpace,
    slots: usize,
}

impl<'a> Coding<'a> {
    pub fn new(space: &'a SearchSpace) -> Self {
        let slots = space.depths.iter().copied().max().unwrap_or(1);
        Self { space, slots }
    }

    /// The number of choices of each gene.
    pub fn choices(&self) -> Vec<usize> {
        let s = self.space;
        let mut out = vec![s.depths.len(), s.hidden.len()];
        out.extend(std::iter::repeat_n(s.heads.len(), self.slots));
        out.extend(std::iter::repeat_n(s.ffn.len(), self.slots));
        out
    }

    fn depth(&self, g: &Genome) -> usize {
        self.space.depths[g[0].min(self.space.depths.len() - 1)]
    }

    /// The genome with its unused slots at 0.
    pub fn canonical(&self, mut g: Genome) -> Genome {
        let depth = self.depth(&g);
        for i in depth..self.slots {
            g[2 + i] = 0;
            g[2 + self.slots + i] = 0;
        }
        g
    }

    /// The subnet a genome stands for (kept layers by the space's rule for its depth).
    pub fn decode(&self, g: &Genome) -> SubnetSpec {
        let s = self.space;
        let hidden = s.hidden[g[1].min(s.hidden.len() - 1)];
        let mut spec = s.spec(self.depth(g), s.teacher.heads, s.teacher.ffn, hidden);
        let kept = spec.layers.len();
        let pick = |list: &[usize], offset: usize| -> Vec<usize> {
            (0..kept)
                .map(|i| list[g[offset + i].min(list.len() - 1)])
                .collect()
        };
        spec.heads = Widths::from_list(pick(&s.heads, 2));
        spec.ffn = Widths::from_list(pick(&s.ffn, 2 + self.slots));
        spec.canonical(s.teacher.hidden)
    }

    /// The genome of a uniform subnet of the grid (depth, heads, FFN and hidden as choices).
    pub fn uniform(&self, depth: usize, heads: usize, ffn: usize, hidden: usize) -> Genome {
        let mut g = vec![depth, hidden];
        g.extend(std::iter::repeat_n(heads, self.slots));
        g.extend(std::iter::repeat_n(ffn, self.slots));
        self.canonical(g)
    }

    /// Every uniform subnet of the grid as a genome, in `SearchSpace::all`'s order.
    pub fn grid(&self) -> Vec<Genome> {
        let s = self.space;
        let mut out = Vec::new();
        for d in 0..s.depths.len() {
            for h in 0..s.heads.len() {
                for f in 0..s.ffn.len() {
                    for w in 0..s.hidden.len() {
                        out.push(self.uniform(d, h, f, w));
                    }
                }
            }
        }
        out
    }
}
