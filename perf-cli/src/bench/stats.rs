//! Pure arithmetic of `perfopt bench`: percentiles.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_samples() {
        let hundred: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentile(&hundred, 0.99), Some(99.0));
        assert_eq!(percentile(&hundred, 0.5), Some(50.0));
        assert_eq!(percentile(&hundred, 1.0), Some(100.0));
        // With few samples the p99 is the largest.
        assert_eq!(percentile(&[5.0, 1.0, 9.0], 0.99), Some(9.0));
        assert_eq!(percentile(&[], 0.99), None);
    }
}
