//! Seeded random draws for the workloads.
//!
//! Every tenant draws from its own streams (one for request lengths, one for arrival
//! times), derived from the run seed and the tenant's index. A tenant's n-th request is
//! therefore the same whichever policy is being simulated, and open-loop arrival times
//! are identical across policies.
//!
//! The distributions are written here rather than taken from `rand_distr` on purpose:
//! they are a few lines each, and keeping them in this crate pins the exact sequence of
//! draws (and so every published number) to this code, not to a dependency's version.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What a stream is used for (mixed into its seed).
#[derive(Debug, Clone, Copy)]
pub enum Purpose {
    Lengths = 1,
    Arrivals = 2,
    Setup = 3,
}

/// SplitMix64 finaliser: spreads nearby seeds over the whole state space.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The stream of `purpose` for tenant `index` in the run seeded with `seed`.
pub fn stream(seed: u64, index: u64, purpose: Purpose) -> StdRng {
    StdRng::seed_from_u64(mix(mix(seed) ^ mix(index.wrapping_mul(16) + purpose as u64)))
}

/// Uniform in (0, 1]: safe to take the logarithm of.
pub fn uniform_open(rng: &mut StdRng) -> f64 {
    1.0 - rng.random::<f64>()
}

/// Exponential with the given mean.
pub fn exponential(rng: &mut StdRng, mean: f64) -> f64 {
    -mean * uniform_open(rng).ln()
}

/// Standard normal by Box–Muller (one of the pair; the other is discarded so that every
/// call consumes exactly two uniforms).
pub fn standard_normal(rng: &mut StdRng) -> f64 {
    let u1 = uniform_open(rng);
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Lognormal given its median (`e^mu`) and the sigma of the underlying normal.
pub fn lognormal(rng: &mut StdRng, median: f64, sigma: f64) -> f64 {
    median * (sigma * standard_normal(rng)).exp()
}

/// Zipf weights over ranks 1..=n with exponent `s`, normalised to sum to 1.
pub fn zipf_weights(n: usize, s: f64) -> Vec<f64> {
    let raw: Vec<f64> = (1..=n).map(|k| 1.0 / (k as f64).powf(s)).collect();
    let total: f64 = raw.iter().sum();
    raw.into_iter().map(|w| w / total).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lognormal_median_and_exponential_mean_are_right() {
        let mut rng = stream(7, 0, Purpose::Setup);
        let mut xs: Vec<f64> = (0..20_000).map(|_| lognormal(&mut rng, 100.0, 1.0)).collect();
        xs.sort_by(f64::total_cmp);
        let median = xs[xs.len() / 2];
        assert!((median - 100.0).abs() < 5.0, "median {median}");
        let mean = (0..20_000).map(|_| exponential(&mut rng, 2.0)).sum::<f64>() / 20_000.0;
        assert!((mean - 2.0).abs() < 0.06, "mean {mean}");
    }

    #[test]
    fn zipf_weights_are_normalised_and_decreasing() {
        let w = zipf_weights(1000, 1.0);
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(w.windows(2).all(|p| p[0] > p[1]));
        assert!((w[0] / w[9] - 10.0).abs() < 1e-9);
    }

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4).map(|_| stream(1, 2, Purpose::Lengths).random()).collect();
        assert!(a.windows(2).all(|p| p[0] == p[1]));
        let b: u64 = stream(1, 2, Purpose::Arrivals).random();
        let c: u64 = stream(1, 3, Purpose::Lengths).random();
        assert!(a[0] != b && a[0] != c);
    }
}
