//! NSGA-II (Deb, Pratap, Agarwal, Meyarivan 2002) over integer genomes, with Deb's constrained
//! domination (a feasible point beats an infeasible one; two infeasible ones compare by how far
//! they are over). Written here rather than taken from a crate (`moors`): the search must stop
//! and resume at any generation and continue to the same result, so the whole state is the
//! population and the generation number, and each generation's random stream is seeded from
//! (seed, generation) — `moors` runs its loop to the end with its own random state, and brings
//! `ndarray`, `faer` and `rayon` into a build that takes minutes per crate on two cores.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::HashSet;

/// A candidate: one choice index per gene.
pub type Genome = Vec<usize>;

/// An evaluated candidate: objectives to minimise and how far it is over the constraint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    pub genome: Genome,
    pub objectives: Vec<f64>,
    /// 0 when feasible; else how far over the budget.
    pub violation: f64,
}

/// Whether `a` dominates `b` under constrained domination.
pub fn dominates(a: &Scored, b: &Scored) -> bool {
    match (a.violation > 0.0, b.violation > 0.0) {
        (false, true) => true,
        (true, false) => false,
        (true, true) => a.violation < b.violation,
        (false, false) => {
            let pairs = || a.objectives.iter().zip(&b.objectives);
            pairs().all(|(x, y)| x <= y) && pairs().any(|(x, y)| x < y)
        }
    }
}

/// The fronts of `pop` (indices), best first: fast non-dominated sorting.
pub fn fronts(pop: &[Scored]) -> Vec<Vec<usize>> {
    let n = pop.len();
    let mut dominated_by: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut count = vec![0usize; n];
    for i in 0..n {
        for j in 0..n {
            if i != j && dominates(&pop[i], &pop[j]) {
                dominated_by[i].push(j);
            } else if i != j && dominates(&pop[j], &pop[i]) {
                count[i] += 1;
            }
        }
    }
    let mut out = Vec::new();
    let mut current: Vec<usize> = (0..n).filter(|&i| count[i] == 0).collect();
    while !current.is_empty() {
        let mut next = Vec::new();
        for &i in &current {
            for &j in &dominated_by[i] {
                count[j] -= 1;
                if count[j] == 0 {
                    next.push(j);
                }
            }
        }
        next.sort_unstable();
        out.push(std::mem::replace(&mut current, next));
    }
    out
}

/// Crowding distance of each member of `front` (aligned with it): infinite at the ends.
pub fn crowding(pop: &[Scored], front: &[usize]) -> Vec<f64> {
    let mut distance = vec![0.0; front.len()];
    let objectives = pop
        .get(front.first().copied().unwrap_or(0))
        .map_or(0, |s| s.objectives.len());
    for m in 0..objectives {
        let mut order: Vec<usize> = (0..front.len()).collect();
        order.sort_by(|&a, &b| pop[front[a]].objectives[m].total_cmp(&pop[front[b]].objectives[m]));
        let (Some(&lo), Some(&hi)) = (order.first(), order.last()) else {
            continue;
        };
        let span = pop[front[hi]].objectives[m] - pop[front[lo]].objectives[m];
        distance[lo] = f64::INFINITY;
        distance[hi] = f64::INFINITY;
        if span <= 0.0 {
            continue;
        }
        for w in order.windows(3) {
            let gap = pop[front[w[2]]].objectives[m] - pop[front[w[0]]].objectives[m];
            distance[w[1]] += gap / span;
        }
    }
    distance
}

/// (rank, crowding distance) of every member of `pop`.
fn rank_and_crowding(pop: &[Scored]) -> Vec<(usize, f64)> {
    let mut out = vec![(usize::MAX, 0.0); pop.len()];
    for (rank, front) in fronts(pop).iter().enumerate() {
        for (k, d) in front.iter().zip(crowding(pop, front)) {
            out[*k] = (rank, d);
        }
    }
    out
}

/// Better first: lower rank, then larger crowding distance.
fn better(a: (usize, f64), b: (usize, f64)) -> Ordering {
    a.0.cmp(&b.0).then(b.1.total_cmp(&a.1))
}

/// The best `n` of `pool` by rank and crowding distance (NSGA-II's survival).
pub fn survivors(pool: &[Scored], n: usize) -> Vec<Scored> {
    let keys = rank_and_crowding(pool);
    let mut order: Vec<usize> = (0..pool.len()).collect();
    order.sort_by(|&a, &b| better(keys[a], keys[b]).then(pool[a].genome.cmp(&pool[b].genome)));
    order.into_iter().take(n).map(|i| pool[i].clone()).collect()
}

/// The random stream of one generation: the same (seed, generation) gives the same stream,
/// whether the search ran straight through or was resumed.
pub fn generation_rng(seed: u64, generation: usize) -> StdRng {
    StdRng::seed_from_u64(seed ^ (generation as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// `n` new genomes bred from `pop`: binary tournaments by rank and crowding, uniform
/// crossover, then each gene redrawn with probability 1/len. `canonical` maps a genome to the
/// one that stands for the same candidate; genomes in `seen` (already evaluated) or repeated
/// are bred again, a bounded number of times, so a small space ends with fewer children.
pub fn offspring(
    pop: &[Scored],
    choices: &[usize],
    n: usize,
    rng: &mut StdRng,
    seen: &HashSet<Genome>,
    canonical: &dyn Fn(Genome) -> Genome,
) -> Vec<Genome> {
    let mut out: Vec<Genome> = Vec::new();
    if pop.is_empty() || choices.is_empty() {
        return out;
    }
    let keys = rank_and_crowding(pop);
    let tournament = |rng: &mut StdRng| {
        let (a, b) = (
            rng.random_range(0..pop.len()),
            rng.random_range(0..pop.len()),
        );
        if better(keys[b], keys[a]) == Ordering::Less {
            b
        } else {
            a
        }
    };
    let mutation = 1.0 / choices.len() as f64;
    let mut tries = 0;
    while out.len() < n && tries < 20 * n.max(1) {
        tries += 1;
        let (a, b) = (tournament(rng), tournament(rng));
        let mut child: Genome = pop[a]
            .genome
            .iter()
            .zip(&pop[b].genome)
            .map(|(&x, &y)| if rng.random_bool(0.5) { x } else { y })
            .collect();
        for (gene, &k) in child.iter_mut().zip(choices) {
            if k > 1 && rng.random_bool(mutation) {
                *gene = rng.random_range(0..k);
            }
        }
        let child = canonical(child);
        if !seen.contains(&child) && !out.contains(&child) {
            out.push(child);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(objectives: [f64; 2], violation: f64) -> Scored {
        Scored {
            genome: vec![objectives[0] as usize, objectives[1] as usize],
            objectives: objectives.to_vec(),
            violation,
        }
    }

    /// The front by brute force: the points no other point dominates.
    fn brute_front(pop: &[Scored]) -> Vec<usize> {
        (0..pop.len())
            .filter(|&i| !pop.iter().any(|q| dominates(q, &pop[i])))
            .collect()
    }

    #[test]
    fn first_front_is_the_brute_force_front_and_infeasible_points_rank_last() {
        let mut rng = StdRng::seed_from_u64(7);
        let pop: Vec<Scored> = (0..60)
            .map(|_| {
                let (a, b) = (
                    rng.random_range(0..20) as f64,
                    rng.random_range(0..20) as f64,
                );
                // Over budget when the cost is above 15.
                scored([a, b], (a - 15.0).max(0.0))
            })
            .collect();
        let f = fronts(&pop);
        assert_eq!(f[0], brute_front(&pop));
        assert_eq!(f.iter().map(Vec::len).sum::<usize>(), pop.len());
        // Every feasible point is ranked before every infeasible one.
        let rank_of = |i: usize| f.iter().position(|front| front.contains(&i)).unwrap();
        let worst_feasible = (0..60)
            .filter(|&i| pop[i].violation == 0.0)
            .map(rank_of)
            .max();
        let best_infeasible = (0..60)
            .filter(|&i| pop[i].violation > 0.0)
            .map(rank_of)
            .min();
        assert!(worst_feasible < best_infeasible);
        // Survival keeps the whole first front when it fits.
        let kept = survivors(&pop, f[0].len());
        for i in &f[0] {
            assert!(kept.contains(&pop[*i]));
        }
    }

    #[test]
    fn crowding_favours_the_ends_and_the_sparse_middle() {
        let pop = vec![
            scored([0.0, 4.0], 0.0),
            scored([1.0, 3.0], 0.0),
            scored([1.1, 2.9], 0.0),
            scored([4.0, 0.0], 0.0),
        ];
        let d = crowding(&pop, &[0, 1, 2, 3]);
        assert!(d[0].is_infinite() && d[3].is_infinite());
        assert!(
            d[2] > d[1],
            "{d:?}: the point beside the big gap is less crowded"
        );
    }

    #[test]
    fn offspring_are_new_valid_and_reproducible() {
        let choices = [3, 4, 4];
        let pop: Vec<Scored> = (0..6)
            .map(|i| Scored {
                genome: vec![i % 3, i % 4, (i + 1) % 4],
                objectives: vec![i as f64, -(i as f64)],
                violation: 0.0,
            })
            .collect();
        let seen: HashSet<Genome> = pop.iter().map(|s| s.genome.clone()).collect();
        let breed = || offspring(&pop, &choices, 10, &mut generation_rng(5, 3), &seen, &|g| g);
        let kids = breed();
        assert_eq!(kids.len(), 10);
        for k in &kids {
            assert!(!seen.contains(k));
            assert!(k.iter().zip(&choices).all(|(g, c)| g < c));
        }
        assert_eq!(kids, breed(), "same seed and generation, same children");
    }
}
