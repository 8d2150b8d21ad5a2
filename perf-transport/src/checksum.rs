//! The checksum a worker computes over what it read, so a host can prove the bytes arrived: XXH3-64.
//!
//! The implementation picks the widest vector unit the CPU has at run time
//! (AVX2 where present), which matters when the worker's read is on the
//! critical path of a large transfer.
//!
//! A zero-copy transfer is verified as its pool's [`Verification`] says: XXH3-64 of every byte
//! ([`checksum`]), of a fixed sample ([`sample_ranges`], [`sampled_checksum`]), or not at all
//! (the digest is 0). [`digest`] and [`Verifier`] compute what a worker acknowledges, at once or
//! part by part, identically on both sides.

use std::hash::Hasher;
use std::ops::Range;

use perf_core::Verification;
use twox_hash::XxHash3_64;

/// Bytes in each window of the sample.
pub const SAMPLE_WINDOW: u64 = 4 << 10;
/// Distance between the starts of two windows of the sample.
pub const SAMPLE_STRIDE: u64 = 1 << 20;

/// XXH3-64 of `bytes`.
pub fn checksum(bytes: &[u8]) -> u64 {
    XxHash3_64::oneshot(bytes)
}

/// XXH3-64 computed over parts, equal to [`checksum`] of their concatenation.
#[derive(Default, Clone)]
pub struct Checksum(XxHash3_64);

impl std::fmt::Debug for Checksum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Checksum(..)")
    }
}

impl Checksum {
    /// An empty checksum.
    pub fn new() -> Checksum {
        Checksum(XxHash3_64::new())
    }

    /// Adds the next part.
    pub fn update(&mut self, part: &[u8]) {
        self.0.write(part);
    }

    /// The checksum of everything added.
    pub fn digest(&self) -> u64 {
        self.0.finish()
    }
}

/// The byte ranges of a payload of `len` bytes that [`Verification::Sampled`] hashes, in order
/// and without overlap: a window of [`SAMPLE_WINDOW`] bytes at every multiple of
/// [`SAMPLE_STRIDE`] (offset 0 included), and the last [`SAMPLE_WINDOW`] bytes. A payload of at
/// most [`SAMPLE_WINDOW`] bytes is one range, the whole of it; an empty one has none.
pub fn sample_ranges(len: u64) -> SampleRanges {
    SampleRanges {
        len,
        next: 0,
        done: len == 0,
    }
}

/// The ranges [`sample_ranges`] yields.
#[derive(Debug, Clone)]
pub struct SampleRanges {
    len: u64,
    /// The next stride window's index.
    next: u64,
    done: bool,
}

impl SampleRanges {
    /// Skips the windows that end at or before `offset`; later ones are unchanged.
    fn skip_to(mut self, offset: u64) -> SampleRanges {
        self.next = self
            .next
            .max(offset.saturating_sub(SAMPLE_WINDOW - 1) / SAMPLE_STRIDE);
        self
    }
}

impl Iterator for SampleRanges {
    type Item = Range<u64>;

    fn next(&mut self) -> Option<Range<u64>> {
        if self.done {
            return None;
        }
        let last = self.len.saturating_sub(SAMPLE_WINDOW);
        let start = self.next.saturating_mul(SAMPLE_STRIDE);
        if start < last {
            self.next += 1;
            let end = start + SAMPLE_WINDOW;
            if end < last {
                return Some(start..end);
            }
            // It reaches into the last window: one range to the end.
            self.done = true;
            return Some(start..self.len);
        }
        self.done = true;
        Some(last..self.len)
    }
}

/// XXH3-64 of the bytes [`sample_ranges`] selects from `bytes`, concatenated in order.
pub fn sampled_checksum(bytes: &[u8]) -> u64 {
    let mut v = Verifier::new(Verification::Sampled, bytes.len() as u64);
    v.update(0, bytes);
    v.digest()
}

/// What a worker acknowledges for `bytes` under `verify`: their [`checksum`], their
/// [`sampled_checksum`], or 0 for [`Verification::None`].
pub fn digest(bytes: &[u8], verify: Verification) -> u64 {
    match verify {
        Verification::Checksum => checksum(bytes),
        Verification::Sampled => sampled_checksum(bytes),
        Verification::None => 0,
    }
}

/// The digest of a payload under one [`Verification`], computed over its parts in order:
/// equal to [`digest`] of the whole.
#[derive(Debug, Clone)]
pub struct Verifier {
    verify: Verification,
    length: u64,
    hasher: Checksum,
}

impl Verifier {
    /// A verifier of a payload of `length` bytes.
    pub fn new(verify: Verification, length: u64) -> Verifier {
        Verifier {
            verify,
            length,
            hasher: Checksum::new(),
        }
    }

    /// Whether it reads any byte of `from..to`.
    pub fn reads(&self, from: u64, to: u64) -> bool {
        match self.verify {
            Verification::Checksum => from < to,
            Verification::None => false,
            Verification::Sampled => sample_ranges(self.length)
                .skip_to(from)
                .take_while(|r| r.start < to)
                .any(|r| r.end > from),
        }
    }

    /// Adds `part`, the payload's bytes from `offset` on; parts come in order, each starting
    /// where the one before ended.
    pub fn update(&mut self, offset: u64, part: &[u8]) {
        let to = offset + part.len() as u64;
        match self.verify {
            Verification::Checksum => self.hasher.update(part),
            Verification::None => {}
            Verification::Sampled => {
                for r in sample_ranges(self.length)
                    .skip_to(offset)
                    .take_while(|r| r.start < to)
                {
                    let (from, end) = (r.start.max(offset), r.end.min(to));
                    if from < end {
                        self.hasher
                            .update(&part[(from - offset) as usize..(end - offset) as usize]);
                    }
                }
            }
        }
    }

    /// The digest of everything added (0 for [`Verification::None`]).
    pub fn digest(&self) -> u64 {
        match self.verify {
            Verification::None => 0,
            _ => self.hasher.digest(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference values of XXH3-64 with seed 0 (xxHash's own test vectors).
    #[test]
    fn matches_the_reference_values() {
        assert_eq!(checksum(b""), 0x2d06_8005_38d3_94c2);
        assert_eq!(checksum(b"a"), 0xe6c6_32b6_1e96_4e1f);
    }

    #[test]
    fn parts_give_the_checksum_of_the_whole() {
        let data: Vec<u8> = (0..5_000_000u32).map(|i| (i * 7) as u8).collect();
        let mut c = Checksum::new();
        for part in data.chunks(1 << 20) {
            c.update(part);
        }
        assert_eq!(c.digest(), checksum(&data));
        assert_ne!(checksum(&data[1..]), checksum(&data));
    }

    const MIB: u64 = 1 << 20;

    fn ranges(len: u64) -> Vec<Range<u64>> {
        sample_ranges(len).collect()
    }

    #[test]
    fn the_sample_is_the_first_and_last_window_and_one_at_every_mib() {
        assert!(ranges(0).is_empty());
        let whole = |len: u64| vec![Range { start: 0, end: len }];
        assert_eq!(ranges(100), whole(100));
        assert_eq!(ranges(SAMPLE_WINDOW), whole(SAMPLE_WINDOW));
        assert_eq!(ranges(6000), whole(6000), "the windows overlap: one range");
        assert_eq!(ranges(10_000), [0..4096, 5904..10_000]);
        assert_eq!(
            ranges(3 * MIB),
            [
                0..4096,
                MIB..MIB + 4096,
                2 * MIB..2 * MIB + 4096,
                3 * MIB - 4096..3 * MIB
            ]
        );
        // The last stride window runs into the last window: one range to the end.
        assert_eq!(ranges(MIB + 5000), [0..4096, MIB..MIB + 5000]);
        // A stride window wholly inside the last window is not hashed twice.
        assert_eq!(ranges(MIB + 100), [0..4096, MIB + 100 - 4096..MIB + 100]);
        let sampled: u64 = ranges(256 * MIB).iter().map(|r| r.end - r.start).sum();
        assert_eq!(sampled, 257 * SAMPLE_WINDOW);
        for len in [
            1,
            4095,
            4097,
            MIB - 1,
            MIB,
            MIB + 4095,
            MIB + 4096,
            7 * MIB + 3,
        ] {
            let r = ranges(len);
            assert!(r.windows(2).all(|w| w[0].end <= w[1].start), "{len}: {r:?}");
            assert_eq!(r.last().map(|r| r.end), Some(len), "{len}");
        }
    }

    /// The shared table the Python worker's tests check too.
    #[test]
    fn the_sample_is_the_shared_tables() {
        let table = include_str!("../tests/data/samples.txt");
        let mut checked = 0;
        for line in table
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [len, listed, sum] = fields[..] else {
                panic!("a line of three fields, got {line:?}");
            };
            let len: u64 = len.parse().unwrap();
            let shown: Vec<String> = ranges(len)
                .iter()
                .map(|r| format!("{}-{}", r.start, r.end))
                .collect();
            let shown = if shown.is_empty() {
                "-".to_owned()
            } else {
                shown.join(",")
            };
            assert_eq!(shown, listed, "ranges of {len} bytes");
            let data: Vec<u8> = (0..len).map(|i| (31 * i + 7) as u8).collect();
            let digest = sampled_checksum(&data);
            assert_eq!(
                format!("{digest:#018x}"),
                sum,
                "sampled digest of {len} bytes"
            );
            checked += 1;
        }
        assert!(checked >= 10, "{checked} lines");
    }

    #[test]
    fn a_corrupted_byte_is_caught_inside_the_sample_and_not_outside() {
        let data: Vec<u8> = (0..(3 * MIB + 777) as u32)
            .map(|i| (i * 31) as u8)
            .collect();
        let sum = sampled_checksum(&data);
        assert_ne!(sum, checksum(&data));
        let flipped = |at: u64| {
            let mut d = data.clone();
            d[at as usize] ^= 0x40;
            sampled_checksum(&d)
        };
        for inside in [
            0,
            4095,
            MIB,
            MIB + 4095,
            2 * MIB + 17,
            data.len() as u64 - 1,
        ] {
            assert_ne!(flipped(inside), sum, "byte {inside} is in the sample");
        }
        for outside in [4096, MIB - 1, MIB + 4096, 2 * MIB + 4096 + 5] {
            assert_eq!(
                flipped(outside),
                sum,
                "byte {outside} is outside the sample"
            );
        }
    }

    #[test]
    fn parts_in_any_split_give_the_digest_of_the_whole() {
        let data: Vec<u8> = (0..(5 * MIB + 12_345) as u32)
            .map(|i| (i * 7) as u8)
            .collect();
        for verify in [
            Verification::Checksum,
            Verification::Sampled,
            Verification::None,
        ] {
            for part in [1000, 4096, 1 << 20, 2 << 20, 3_000_001] {
                let mut v = Verifier::new(verify, data.len() as u64);
                for (i, bytes) in data.chunks(part).enumerate() {
                    v.update((i * part) as u64, bytes);
                }
                assert_eq!(
                    v.digest(),
                    digest(&data, verify),
                    "{verify} in parts of {part}"
                );
            }
        }
        assert_eq!(digest(&data, Verification::None), 0);
        assert_eq!(digest(&data, Verification::Checksum), checksum(&data));
    }

    #[test]
    fn a_verifier_says_which_parts_it_reads() {
        let len = 3 * MIB;
        let sampled = Verifier::new(Verification::Sampled, len);
        assert!(sampled.reads(0, 1));
        assert!(!sampled.reads(4096, MIB));
        assert!(sampled.reads(4096, MIB + 1));
        assert!(sampled.reads(len - 1, len));
        assert!(!Verifier::new(Verification::None, len).reads(0, len));
        assert!(Verifier::new(Verification::Checksum, len).reads(5, 6));
    }
}
