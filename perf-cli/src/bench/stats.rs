//! Pure arithmetic of `perfopt bench`: size lists, repeats, percentiles, least squares.

use perf_core::{HumanSize, SizeError, parse_size};

/// The smallest size the bench measures.
pub(crate) const MIN_BENCH_SIZE: u64 = 1 << 10;
/// The largest size the bench measures.
pub(crate) const MAX_BENCH_SIZE: u64 = 1 << 30;
/// The most sizes one run measures.
pub(crate) const MAX_SIZES: usize = 32;
/// The most repeats `--repeats` accepts.
pub(crate) const MAX_REPEATS: u32 = 1000;
/// Untimed transfers before the timed ones, per size and method.
pub(crate) const WARMUPS: u32 = 2;

/// Reads `--sizes`: `A..B` for the powers of two from A up to B (A, 2A, 4A, ... while at
/// most B), or a comma list `4KiB,1MiB,64MiB`; sorted, without duplicates, each from 1 KiB
/// to 1 GiB, at most 32 of them.
pub(crate) fn parse_sizes(text: &str) -> Result<Vec<u64>, String> {
    parse_size_list(text, false, MAX_SIZES)
}

/// [`parse_sizes`] with the midpoints (x1.5) between the powers of two of a range when
/// `midpoints`, and at most `max` sizes.
pub(crate) fn parse_size_list(text: &str, midpoints: bool, max: usize) -> Result<Vec<u64>, String> {
    let bad = |why: String| format!("invalid --sizes {text:?}: {why}");
    let one = |part: &str| -> Result<u64, String> {
        let n = parse_size(part).map_err(|e| match e {
            SizeError::TooLarge(_) => out_of_range(part),
            e => e.to_string(),
        })?;
        if (MIN_BENCH_SIZE..=MAX_BENCH_SIZE).contains(&n) {
            Ok(n)
        } else {
            Err(out_of_range(part))
        }
    };
    let mut sizes = Vec::new();
    if let Some((lo, hi)) = text.split_once("..") {
        let (lo, hi) = (one(lo).map_err(bad)?, one(hi).map_err(bad)?);
        if lo > hi {
            return Err(bad(format!(
                "the range runs backwards, expected the smaller size first ({} > {})",
                HumanSize(lo),
                HumanSize(hi)
            )));
        }
        let mut n = lo;
        while n <= hi {
            sizes.push(n);
            if midpoints && n + n / 2 <= hi && n * 2 <= hi {
                sizes.push(n + n / 2);
            }
            n *= 2;
        }
    } else {
        for part in text.split(',') {
            sizes.push(one(part).map_err(bad)?);
        }
    }
    sizes.sort_unstable();
    sizes.dedup();
    if sizes.len() > max {
        return Err(bad(format!(
            "{} sizes, expected at most {max}",
            sizes.len()
        )));
    }
    Ok(sizes)
}

fn out_of_range(part: &str) -> String {
    format!(
        "size {:?} is out of range, expected {} to {}",
        part.trim(),
        HumanSize(MIN_BENCH_SIZE),
        HumanSize(MAX_BENCH_SIZE)
    )
}

/// Timed repeats for `size` when `--repeats` is not given: more for small sizes,
/// whose medians are noisier and cheaper to take.
pub(crate) fn default_repeats(size: u64) -> u32 {
    match size {
        0..=0x10_0000 => 30,
        0x10_0001..=0x400_0000 => 10,
        _ => 5,
    }
}

/// The median of `samples` (the mean of the middle two for an even count); None when empty.
pub(crate) fn median(samples: &[f64]) -> Option<f64> {
    let s = sorted(samples);
    let n = s.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(s[n / 2]),
        _ => Some((s[n / 2 - 1] + s[n / 2]) / 2.0),
    }
}

/// The nearest-rank `q` quantile (0 < q <= 1) of `samples`; None when empty.
pub(crate) fn percentile(samples: &[f64], q: f64) -> Option<f64> {
    let s = sorted(samples);
    if s.is_empty() {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * s.len() as f64).ceil() as usize;
    Some(s[rank.clamp(1, s.len()) - 1])
}

fn sorted(samples: &[f64]) -> Vec<f64> {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    s
}

/// The least-squares line through `points`: `(slope, intercept)`; None for fewer than two
/// distinct x values.
pub(crate) fn least_squares(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    if sxx <= 0.0 || !sxx.is_finite() {
        return None;
    }
    let slope = sxy / sxx;
    Some((slope, mean_y - slope * mean_x))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1 << 10;
    const MIB: u64 = 1 << 20;

    #[test]
    fn a_range_is_the_powers_of_two_between_its_ends() {
        assert_eq!(
            parse_sizes("1KiB..8KiB"),
            Ok(vec![KIB, 2 * KIB, 4 * KIB, 8 * KIB])
        );
        assert_eq!(parse_sizes("1KiB..256MiB").unwrap().len(), 19);
        assert_eq!(parse_sizes("1KiB..1GiB").unwrap().len(), 21);
        // The upper end is a bound, not a member, when the doubling misses it.
        assert_eq!(parse_sizes("1KiB..3KiB"), Ok(vec![KIB, 2 * KIB]));
        assert_eq!(parse_sizes("64KiB..64KiB"), Ok(vec![64 * KIB]));
    }

    #[test]
    fn a_comma_list_is_sorted_and_deduplicated() {
        assert_eq!(
            parse_sizes("1MiB, 4KiB,1MiB,1024"),
            Ok(vec![KIB, 4 * KIB, MIB])
        );
    }

    #[test]
    fn sizes_out_of_bounds_or_malformed_are_refused_with_a_reason() {
        for (text, why) in [
            ("1KiB..2TiB", "out of range, expected 1.0 KiB to 1.0 GiB"),
            ("1KiB..2GiB", "out of range"),
            ("512..4KiB", "out of range"),
            ("nonsense", "invalid size"),
            ("1KiB..", "invalid size"),
            ("8KiB..1KiB", "runs backwards"),
            ("-1KiB", "at least 0 bytes"),
        ] {
            let e = parse_sizes(text).unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
            assert!(e.starts_with("invalid --sizes"), "{e}");
            assert!(!e.contains('\n') && !e.ends_with('.'), "{e}");
        }
        let many: Vec<String> = (1..=33).map(|i| format!("{}KiB", i)).collect();
        assert!(
            parse_sizes(&many.join(","))
                .unwrap_err()
                .contains("at most 32")
        );
        assert_eq!(parse_sizes(&many[..32].join(",")).unwrap().len(), 32);
    }

    #[test]
    fn default_repeats_fall_with_size() {
        assert_eq!(default_repeats(KIB), 30);
        assert_eq!(default_repeats(MIB), 30);
        assert_eq!(default_repeats(2 * MIB), 10);
        assert_eq!(default_repeats(64 * MIB), 10);
        assert_eq!(default_repeats(128 * MIB), 5);
    }

    #[test]
    fn median_and_percentiles_of_known_samples() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        let hundred: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentile(&hundred, 0.99), Some(99.0));
        assert_eq!(percentile(&hundred, 0.5), Some(50.0));
        assert_eq!(percentile(&hundred, 1.0), Some(100.0));
        // With few samples the p99 is the largest.
        assert_eq!(percentile(&[5.0, 1.0, 9.0], 0.99), Some(9.0));
        assert_eq!(percentile(&[], 0.99), None);
    }

    #[test]
    fn least_squares_fits_back_a_synthetic_line() {
        let points: Vec<(f64, f64)> = [1.0, 2.0, 4.0, 8.0, 1024.0]
            .iter()
            .map(|&x| (x, 95.0 + 0.34 * x))
            .collect();
        let (slope, intercept) = least_squares(&points).unwrap();
        assert!((slope - 0.34).abs() < 1e-9, "{slope}");
        assert!((intercept - 95.0).abs() < 1e-9, "{intercept}");
        assert_eq!(least_squares(&points[..1]), None);
        assert_eq!(least_squares(&[(2.0, 1.0), (2.0, 3.0)]), None);
    }
}
