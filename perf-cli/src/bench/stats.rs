//! Pure arithmetic of `perfopt bench`: percentiles and least squares.

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
