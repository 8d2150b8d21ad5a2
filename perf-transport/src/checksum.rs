//! The checksum a worker computes over what it read, so a host can prove the bytes arrived: XXH3-64.
//!
//! The implementation picks the widest vector unit the CPU has at run time
//! (AVX2 where present), which matters when the worker's read is on the
//! critical path of a large transfer.

use std::hash::Hasher;

use twox_hash::XxHash3_64;

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
}
