//! Deterministic, versioned assignment of a unit (a session) to a variant.
//!
//! # The hash contract (version 2)
//!
//! A unit's bucket is GrowthBook's version 2 hash, [`HASH_VERSION`]:
//!
//! ```text
//! bucket(seed, unit) = (fnv1a32(decimal(fnv1a32(seed ++ unit))) mod 10000) / 10000
//! ```
//!
//! where `fnv1a32` is 32-bit FNV-1a (offset basis `0x811c9dc5`, prime `0x01000193`) over the
//! string's UTF-16 code units (one per character for ASCII, as GrowthBook's JavaScript SDK
//! reads `charCodeAt`), `++` is concatenation and `decimal` is the unsigned decimal rendering
//! without leading zeros. A bucket is one of the 10,000 values `0.0000 ..= 0.9999`.
//!
//! This is a stable contract: the same (seed, unit) gives the same bucket in every build, on
//! every platform and in GrowthBook's SDKs, so an experiment keeps its sessions in their
//! variants across restarts and releases. Changing it would move sessions between variants
//! mid-experiment, so a different hash would be a new version beside this one, never a change
//! of it.
//!
//! A [`Split`] turns a bucket into a variant with contiguous ranges laid out as GrowthBook's
//! `getBucketRanges` does at full coverage: variant `i` owns `[w_0 + .. + w_{i-1}, w_0 + .. + w_i)`.

use serde::{Deserialize, Serialize};

/// The version of the assignment hash that [`bucket`] and [`bucket_session`] implement.
pub const HASH_VERSION: u32 = 2;

const FNV_OFFSET_BASIS: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

/// The number of distinct buckets of the version 2 hash.
const BUCKETS: u32 = 10_000;

/// The longest decimal rendering of a `u64` (`18446744073709551615`).
const MAX_U64_DIGITS: usize = 20;

/// Continues a 32-bit FNV-1a hash over the UTF-16 code units of `text`.
fn fnv1a32_continue(mut hash: u32, text: &str) -> u32 {
    for unit in text.encode_utf16() {
        hash ^= u32::from(unit);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// Continues a 32-bit FNV-1a hash over ASCII bytes.
fn fnv1a32_continue_ascii(mut hash: u32, bytes: &[u8]) -> u32 {
    for &byte in bytes {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// Writes the decimal digits of `value` at the end of `buf` and returns them.
fn decimal(value: u64, buf: &mut [u8; MAX_U64_DIGITS]) -> &[u8] {
    let mut rest = value;
    let mut start = buf.len();
    loop {
        start -= 1;
        // `rest % 10` is below 10, so the cast cannot truncate.
        buf[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    &buf[start..]
}

/// The second round of the version 2 hash: FNV-1a of the first hash's decimal digits, mapped
/// to a bucket.
fn finish(first: u32) -> f64 {
    let mut buf = [0u8; MAX_U64_DIGITS];
    let digits = decimal(u64::from(first), &mut buf);
    let second = fnv1a32_continue_ascii(FNV_OFFSET_BASIS, digits);
    f64::from(second % BUCKETS) / f64::from(BUCKETS)
}

/// The bucket in `[0, 1)` of `unit` in the experiment `seed`, by the version 2 hash (see the
/// module docs); it never allocates.
pub fn bucket(seed: &str, unit: &str) -> f64 {
    let first = fnv1a32_continue(fnv1a32_continue(FNV_OFFSET_BASIS, seed), unit);
    finish(first)
}

/// The bucket of a session (`TransferRequest::session`), hashed as its decimal string: equal
/// to `bucket(seed, &session.to_string())`, without allocating.
pub fn bucket_session(seed: &str, session: u64) -> f64 {
    let mut buf = [0u8; MAX_U64_DIGITS];
    let digits = decimal(session, &mut buf);
    let first = fnv1a32_continue_ascii(fnv1a32_continue(FNV_OFFSET_BASIS, seed), digits);
    finish(first)
}

/// Why a [`Split`] could not be built from the weights given.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SplitError {
    /// Fewer than two variants.
    #[error("a split needs at least 2 variants, got {0}")]
    TooFewVariants(usize),
    /// A weight that is negative, NaN or infinite.
    #[error("weight of variant {index} must be a finite number >= 0, got {weight}")]
    InvalidWeight {
        /// The variant's index.
        index: usize,
        /// The weight given.
        weight: f64,
    },
    /// Weights that do not add up to the whole.
    #[error("weights must add up to {expected} (within {tolerance}), got {sum}")]
    BadSum {
        /// What the weights must add up to: 1 for fractions, 100 for percentages.
        expected: f64,
        /// The tolerance allowed for rounding.
        tolerance: f64,
        /// What they add up to.
        sum: f64,
    },
}

/// The relative tolerance on the sum of the weights, for rounding in decimal input.
const SUM_TOLERANCE: f64 = 1e-6;

/// The shares of traffic of an experiment's variants, variant 0 first (by convention the
/// control), covering all traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Vec<f64>", into = "Vec<f64>")]
pub struct Split {
    /// The fractions, normalised to add up to exactly 1 up to rounding.
    weights: Vec<f64>,
    /// The exclusive upper end of each variant's bucket range.
    ends: Vec<f64>,
}

impl Split {
    /// A split from fractions that add up to 1 (within 1e-6), such as `[0.1, 0.9]`.
    pub fn from_fractions(weights: &[f64]) -> Result<Self, SplitError> {
        Self::build(weights, 1.0)
    }

    /// A split from percentages that add up to 100 (within 1e-4), such as `[10.0, 90.0]`.
    pub fn from_percentages(percentages: &[f64]) -> Result<Self, SplitError> {
        Self::build(percentages, 100.0)
    }

    /// An even split between `n` variants.
    pub fn even(n: usize) -> Result<Self, SplitError> {
        if n < 2 {
            return Err(SplitError::TooFewVariants(n));
        }
        // `n` is a small count of variants, exact as f64.
        Self::build(&vec![1.0 / n as f64; n], 1.0)
    }

    fn build(weights: &[f64], whole: f64) -> Result<Self, SplitError> {
        if weights.len() < 2 {
            return Err(SplitError::TooFewVariants(weights.len()));
        }
        if let Some((index, &weight)) = weights
            .iter()
            .enumerate()
            .find(|(_, w)| !w.is_finite() || **w < 0.0)
        {
            return Err(SplitError::InvalidWeight { index, weight });
        }
        let sum: f64 = weights.iter().sum();
        let tolerance = SUM_TOLERANCE * whole;
        if (sum - whole).abs() > tolerance {
            return Err(SplitError::BadSum {
                expected: whole,
                tolerance,
                sum,
            });
        }
        let weights: Vec<f64> = weights.iter().map(|w| w / whole).collect();
        let mut cumulative = 0.0;
        let ends = weights
            .iter()
            .map(|w| {
                cumulative += w;
                cumulative
            })
            .collect();
        Ok(Self { weights, ends })
    }

    /// The number of variants.
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    /// Always false: a split has at least two variants.
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// The variants' fractions of traffic, adding up to 1.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// The variant whose bucket range holds `bucket`: the first whose range ends above it.
    /// Every bucket in `[0, 1)` has a variant; a bucket at or past the last end (rounding in
    /// the weights) goes to the last variant with a non-zero weight. It never allocates.
    pub fn variant(&self, bucket: f64) -> usize {
        if let Some(index) = self.ends.iter().position(|&end| bucket < end) {
            return index;
        }
        self.weights
            .iter()
            .rposition(|&w| w > 0.0)
            .unwrap_or(self.weights.len() - 1)
    }

    /// The variant of `session` in the experiment `seed`: `variant(bucket_session(seed, session))`.
    pub fn assign_session(&self, seed: &str, session: u64) -> usize {
        self.variant(bucket_session(seed, session))
    }
}

/// The variant whose range holds `bucket` for weights given in order, laid out exactly as
/// [`Split::variant`] lays out a split of the same weights (fractions adding up to 1), without
/// building one: for a policy that reads its weights from a configuration. It never allocates.
pub fn variant_of(weights: impl Iterator<Item = f64> + Clone, bucket: f64) -> usize {
    let mut end = 0.0;
    let mut last_nonzero = None;
    let mut count = 0;
    for (index, w) in weights.enumerate() {
        end += w;
        if bucket < end {
            return index;
        }
        if w > 0.0 {
            last_nonzero = Some(index);
        }
        count = index + 1;
    }
    last_nonzero.unwrap_or(count.saturating_sub(1))
}

impl TryFrom<Vec<f64>> for Split {
    type Error = SplitError;

    fn try_from(weights: Vec<f64>) -> Result<Self, SplitError> {
        Self::from_fractions(&weights)
    }
}

impl From<Split> for Vec<f64> {
    fn from(split: Split) -> Self {
        split.weights
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_of_lays_the_weights_out_as_a_split() {
        for weights in [
            vec![0.5, 0.5],
            vec![0.1, 0.9],
            vec![0.2, 0.3, 0.5],
            vec![1.0 / 3.0; 3],
            vec![0.25, 0.0, 0.75],
        ] {
            let split = Split::from_fractions(&weights).unwrap();
            for b in 0..10_000 {
                let bucket = f64::from(b) / 10_000.0;
                assert_eq!(
                    variant_of(weights.iter().copied(), bucket),
                    split.variant(bucket),
                    "{weights:?} at {bucket}"
                );
            }
            // Past the last end (rounding), both give the last variant with a weight.
            assert_eq!(
                variant_of(weights.iter().copied(), 1.0),
                split.variant(1.0),
                "{weights:?}"
            );
        }
    }

    #[test]
    fn decimal_renders_the_extremes() {
        let mut buf = [0u8; MAX_U64_DIGITS];
        assert_eq!(decimal(0, &mut buf), b"0");
        assert_eq!(decimal(u64::MAX, &mut buf), b"18446744073709551615");
        assert_eq!(decimal(1_000_000, &mut buf), b"1000000");
    }

    #[test]
    fn fnv1a32_matches_the_reference_vectors() {
        // The FNV-1a 32 test vectors of the FNV reference (draft-eastlake-fnv, section 8.3).
        assert_eq!(fnv1a32_continue(FNV_OFFSET_BASIS, ""), 0x811c_9dc5);
        assert_eq!(fnv1a32_continue(FNV_OFFSET_BASIS, "a"), 0xe40c_292c);
        assert_eq!(fnv1a32_continue(FNV_OFFSET_BASIS, "foobar"), 0xbf9c_f968);
    }
}
