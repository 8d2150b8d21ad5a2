//! Copies into a segment that another process reads next: [`stream_copy`].
//!
//! A plain `memcpy` of a part stores through the caches: every destination line is read from
//! memory before it is written (read for ownership) and stays in this core's caches, where the
//! reading process, on another core, does not want it. Non-temporal stores write whole lines
//! straight to memory, which saves that read; glibc's `memcpy` switches to them by itself only
//! above its threshold (about three quarters of the shared cache), so a payload copied in parts
//! never gets them. [`stream_copy`] uses them at every length.
//!
//! What it buys is measured end to end by `perfopt bench` (README, "Transfers"): the copied,
//! checksummed path at 64 MiB went from 0.67 to 0.79-0.92 of memcpy's throughput with it.
//! Below a few tens of MiB a part is still in the shared cache when the reader hashes it, and
//! a plain copy is faster; the caller chooses by the payload's size.
//!
//! The loop follows glibc's `large_memcpy_4x`: each round loads 128 bytes from each of four
//! pages before storing them, so four streams of loads are in flight at once.

/// Bytes a round of [`stream_copy`]'s loop covers: four pages.
const BLOCK: usize = 4 * PAGE;
const PAGE: usize = 4096;

/// Copies `src` into `dst` with non-temporal stores where the CPU has them (x86-64 with AVX2),
/// else as `copy_from_slice` does; the bytes are in `dst` when it returns.
///
/// # Panics
///
/// When the lengths differ, as `copy_from_slice` does.
pub fn stream_copy(dst: &mut [u8], src: &[u8]) {
    assert_eq!(
        dst.len(),
        src.len(),
        "stream_copy: destination of {} bytes for a source of {}",
        dst.len(),
        src.len()
    );
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        x86::stream_copy_avx2(dst, src);
        return;
    }
    dst.copy_from_slice(src);
}

/// Whether [`stream_copy`] streams on this CPU, rather than copying as `copy_from_slice` does.
pub fn stream_copy_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{BLOCK, PAGE};

    /// [`super::stream_copy`] for a CPU with AVX2: the unaligned head and the tail after the
    /// last whole block go through `copy_from_slice`, the blocks between them are streamed.
    pub(super) fn stream_copy_avx2(dst: &mut [u8], src: &[u8]) {
        let len = dst.len();
        // Streaming stores of 32 bytes need a destination aligned to 32.
        let head = dst.as_ptr().align_offset(32).min(len);
        let blocks = (len - head) / BLOCK;
        let tail = head + blocks * BLOCK;
        dst[..head].copy_from_slice(&src[..head]);
        // SAFETY: AVX2 is present (checked by the caller); `dst[head..tail]` and
        // `src[head..tail]` are in bounds, do not overlap (one is borrowed mutably) and hold
        // `blocks` whole blocks; `dst` at `head` is aligned to 32.
        unsafe { stream_blocks(dst.as_mut_ptr().add(head), src.as_ptr().add(head), blocks) };
        dst[tail..].copy_from_slice(&src[tail..]);
    }

    /// Copies `blocks` blocks of [`BLOCK`] bytes from `src` to `dst` with streaming stores, then
    /// fences them.
    ///
    /// # Safety
    ///
    /// The CPU has AVX2; `src` and `dst` are valid for `blocks * BLOCK` bytes (reads and writes
    /// respectively), do not overlap, and `dst` is aligned to 32.
    #[target_feature(enable = "avx2")]
    unsafe fn stream_blocks(dst: *mut u8, src: *const u8, blocks: usize) {
        use std::arch::x86_64::{
            __m256i, _MM_HINT_T0, _mm_prefetch, _mm_sfence, _mm256_loadu_si256, _mm256_stream_si256,
        };
        // Sixteen named registers, not an array: an array is kept on the stack and every load
        // and store goes through it, which halves the speed.
        macro_rules! load {
            ($p:expr, $at:expr) => {
                // SAFETY: `$p + $at + 32` is within the block (the caller's contract).
                unsafe { _mm256_loadu_si256($p.add($at).cast::<__m256i>()) }
            };
        }
        macro_rules! store {
            ($p:expr, $at:expr, $v:expr) => {
                // SAFETY: as for the loads; `$p + $at` is aligned to 32 since `dst` is and
                // every offset is a multiple of 32.
                unsafe { _mm256_stream_si256($p.add($at).cast::<__m256i>(), $v) }
            };
        }
        for block in 0..blocks {
            let mut at = 0;
            while at < PAGE {
                // SAFETY: every pointer below stays within block `block` of `blocks` (the
                // caller's contract): page `w` of the block at offset `at < PAGE`.
                let (s0, s1, s2, s3, d0, d1, d2, d3) = unsafe {
                    let s = src.add(block * BLOCK + at);
                    let d = dst.add(block * BLOCK + at);
                    (
                        s,
                        s.add(PAGE),
                        s.add(2 * PAGE),
                        s.add(3 * PAGE),
                        d,
                        d.add(PAGE),
                        d.add(2 * PAGE),
                        d.add(3 * PAGE),
                    )
                };
                for s in [s0, s1, s2, s3] {
                    // A prefetch is a hint that cannot fault; the next round's lines.
                    _mm_prefetch::<_MM_HINT_T0>(s.wrapping_add(128).cast::<i8>());
                }
                let (a0, a1, a2, a3) = (load!(s0, 0), load!(s0, 32), load!(s0, 64), load!(s0, 96));
                let (b0, b1, b2, b3) = (load!(s1, 0), load!(s1, 32), load!(s1, 64), load!(s1, 96));
                let (c0, c1, c2, c3) = (load!(s2, 0), load!(s2, 32), load!(s2, 64), load!(s2, 96));
                let (e0, e1, e2, e3) = (load!(s3, 0), load!(s3, 32), load!(s3, 64), load!(s3, 96));
                store!(d0, 0, a0);
                store!(d0, 32, a1);
                store!(d0, 64, a2);
                store!(d0, 96, a3);
                store!(d1, 0, b0);
                store!(d1, 32, b1);
                store!(d1, 64, b2);
                store!(d1, 96, b3);
                store!(d2, 0, c0);
                store!(d2, 32, c1);
                store!(d2, 64, c2);
                store!(d2, 96, c3);
                store!(d3, 0, e0);
                store!(d3, 32, e1);
                store!(d3, 64, e2);
                store!(d3, 96, e3);
                at += 128;
            }
        }
        // Streaming stores are weakly ordered: the fence makes them visible before anything
        // this thread does next, such as announcing the bytes to the reader.
        _mm_sfence();
    }
}

#[cfg(test)]
mod tests {
    use super::{BLOCK, stream_copy};

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn copies_every_byte_at_every_alignment_and_length() {
        let lens = [
            0,
            1,
            31,
            32,
            33,
            BLOCK - 1,
            BLOCK,
            BLOCK + 1,
            3 * BLOCK + 77,
            (1 << 20) + 13,
        ];
        for len in lens {
            for dst_shift in [0, 1, 7, 31, 32, 63] {
                for src_shift in [0, 3, 32] {
                    let src = pattern(len + src_shift, 5);
                    let mut buf = vec![0xEEu8; len + dst_shift + 64];
                    stream_copy(
                        &mut buf[dst_shift..dst_shift + len],
                        &src[src_shift..src_shift + len],
                    );
                    assert_eq!(
                        &buf[dst_shift..dst_shift + len],
                        &src[src_shift..],
                        "len {len}, dst +{dst_shift}, src +{src_shift}"
                    );
                    assert!(
                        buf[..dst_shift].iter().all(|&b| b == 0xEE),
                        "wrote before the destination: len {len}, dst +{dst_shift}"
                    );
                    assert!(
                        buf[dst_shift + len..].iter().all(|&b| b == 0xEE),
                        "wrote past the destination: len {len}, dst +{dst_shift}"
                    );
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "destination of 3 bytes for a source of 4")]
    fn refuses_different_lengths() {
        stream_copy(&mut [0; 3], &[1; 4]);
    }
}
