//! The sandwich sampler: maxnet, minnet, then k random subnets, reproducible from (seed, step).

use super::space::SearchSpace;
use crate::model::SubnetSpec;
use rand::SeedableRng;

/// The subnets trained in one step of a stage, maxnet first.
pub fn sample_step(
    space: &SearchSpace,
    stage: usize,
    random_subnets: usize,
    seed: u64,
    global_step: usize,
) -> Vec<SubnetSpec> {
    let maxnet = space.maxnet();
    if stage == 0 {
        return vec![maxnet];
    }
    // Derived per step, so a resumed run draws exactly what an uninterrupted one would.
    let mut rng = rand::rngs::StdRng::seed_from_u64(
        seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (global_step as u64).wrapping_add(0x5851_F42D),
    );
    let mut out = vec![maxnet, space.minnet(stage)];
    for _ in 0..random_subnets {
        out.push(space.sample(stage, &mut rng));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TeacherShape;

    #[test]
    fn sandwich_order_and_reproducibility() {
        let t = TeacherShape::MINILM_L3;
        let space = SearchSpace::new(t, &Default::default()).unwrap();
        assert_eq!(sample_step(&space, 0, 2, 1, 0), vec![space.maxnet()]);
        let a = sample_step(&space, 2, 2, 1, 17);
        assert_eq!(a.len(), 4);
        assert_eq!(a[0], space.maxnet());
        assert_eq!(a[1], space.minnet(2));
        assert_eq!(a, sample_step(&space, 2, 2, 1, 17));
        let differs = (0..20).any(|s| sample_step(&space, 2, 2, 1, s)[2..] != a[2..]);
        assert!(differs, "random subnets never change with the step");
    }
}
