//! A lock-free, seedable random source for exploration (SplitMix64 over an atomic counter).

use std::sync::atomic::{AtomicU64, Ordering};

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64 on an atomic counter: one `fetch_add` per draw, no lock, and the
/// same sequence of draws for the same seed.
#[derive(Debug)]
pub struct SplitMix(AtomicU64);

impl SplitMix {
    /// A generator whose sequence is fixed by `seed`.
    pub fn new(seed: u64) -> SplitMix {
        SplitMix(AtomicU64::new(seed))
    }

    /// The next 64 random bits.
    pub fn next_u64(&self) -> u64 {
        let mut z = self
            .0
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform draw in `[0, 1)`.
    pub fn next_f64(&self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `len` bytes drawn from a generator seeded with `seed`: a payload that no compressor, cache
/// or deduplication favours, the same bytes for the same seed.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let rng = SplitMix::new(seed);
    let mut bytes: Vec<u8> = (0..len.div_ceil(8))
        .flat_map(|_| rng.next_u64().to_le_bytes())
        .collect();
    bytes.truncate(len);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_bytes_are_the_seeds_draws_cut_to_length() {
        let first = SplitMix::new(9).next_u64().to_le_bytes();
        assert_eq!(random_bytes(5, 9), first[..5]);
        assert_eq!(random_bytes(1000, 9).len(), 1000);
        assert_eq!(random_bytes(1000, 9), random_bytes(1000, 9));
        assert_ne!(random_bytes(64, 9), random_bytes(64, 10));
        assert!(random_bytes(0, 9).is_empty());
    }

    /// Reference values of SplitMix64 seeded with 1234567 (Vigna's splitmix64.c).
    #[test]
    fn matches_the_reference_sequence() {
        let r = SplitMix::new(1234567);
        let got: Vec<u64> = (0..5).map(|_| r.next_u64()).collect();
        assert_eq!(
            got,
            [
                6457827717110365317,
                3203168211198807973,
                9817491932198370423,
                4593380528125082431,
                16408922859458223821
            ]
        );
    }

    #[test]
    fn draws_are_uniform_enough() {
        let r = SplitMix::new(42);
        let n = 100_000;
        let below: usize = (0..n).filter(|_| r.next_f64() < 0.25).count();
        let share = below as f64 / n as f64;
        assert!((share - 0.25).abs() < 0.01, "{share}");
    }
}
