//! Drift detection against scipy's numbers and on deterministic synthetic series.

use perf_learn::drift::{
    DriftError, FeatureDrift, KsTest, MAX_REFERENCE, PageHinkley, kolmogorov_sf, ks_two_sample,
};

/// SplitMix64, so that every series is the same on every run.
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal, by Box–Muller.
    fn normal(&mut self) -> f64 {
        let u = 1.0 - self.uniform();
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// Asserts `got` is within `rel` of `want`, relative, or within 1e-15 absolute.
fn assert_close(got: f64, want: f64, rel: f64, what: &str) {
    let tolerance = rel * want.abs() + 1e-15;
    assert!(
        (got - want).abs() <= tolerance,
        "{what}: got {got:e}, want {want:e} (tolerance {tolerance:e})"
    );
}

/// Checks a test against scipy's statistic and p-value.
fn assert_ks(test: KsTest, statistic: f64, p_value: f64, what: &str) {
    assert_close(test.statistic, statistic, 1e-12, what);
    assert_close(test.p_value, p_value, 1e-10, what);
}

mod ks {
    use super::*;

    #[test]
    fn matches_scipy_with_ties() {
        // scipy 1.17.1: scipy.stats.ks_2samp([1, 2, 2, 3, 3, 3, 4, 5], [2, 3, 3, 4, 4, 5, 6],
        // method='asymp') -> statistic 0.32142857142857145, pvalue 0.7019601207830071
        let a = [1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 4.0, 5.0];
        let b = [2.0, 3.0, 3.0, 4.0, 4.0, 5.0, 6.0];
        let test = ks_two_sample(&a, &b).unwrap();
        assert_ks(test, 0.32142857142857145, 0.7019601207830071, "ties");
        assert_eq!((test.n, test.m), (8, 7));
    }

    #[test]
    fn matches_scipy_with_unequal_sizes() {
        // scipy.stats.ks_2samp(a, b, method='asymp') with the two lists below
        // -> statistic 0.55, pvalue 0.008435341748046866
        let a = [
            0.61, -1.2, 0.33, 1.87, -0.45, 0.02, 0.98, -0.77, 1.25, -0.13, 0.54, -1.66,
        ];
        let b = [
            1.12, 0.35, 2.41, 0.88, 1.73, -0.21, 1.49, 0.67, 2.05, 1.31, 0.94, 1.58, 0.12, 2.77,
            1.02, 0.49, 1.86, 1.21, 0.76, 2.33,
        ];
        let test = ks_two_sample(&a, &b).unwrap();
        assert_ks(test, 0.55, 0.008435341748046866, "unequal sizes");
        assert_eq!((test.n, test.m), (12, 20));
    }

    #[test]
    fn identical_samples_give_p_one() {
        // scipy.stats.ks_2samp([0.1, 0.5, 0.9, 1.3, 2.0], [0.1, 0.5, 0.9, 1.3, 2.0],
        // method='asymp') -> statistic 0.0, pvalue 1.0
        let a = [0.1, 0.5, 0.9, 1.3, 2.0];
        assert_ks(ks_two_sample(&a, &a).unwrap(), 0.0, 1.0, "identical");
        // scipy.stats.ks_2samp([1, 2, 3], [1, 1, 2, 2, 3, 3], method='asymp')
        // -> statistic 0.0, pvalue 1.0
        let test = ks_two_sample(&[1.0, 2.0, 3.0], &[1.0, 1.0, 2.0, 2.0, 3.0, 3.0]).unwrap();
        assert_ks(test, 0.0, 1.0, "same distribution, repeated values");
    }

    #[test]
    fn clearly_different_samples_give_tiny_p() {
        // scipy.stats.ks_2samp([i / 10 for i in range(40)], [3.0 + i / 10 for i in range(60)],
        // method='asymp') -> statistic 0.8333333333333334, pvalue 4.906115377843993e-19
        let a: Vec<f64> = (0..40).map(|i| f64::from(i) / 10.0).collect();
        let b: Vec<f64> = (0..60).map(|i| 3.0 + f64::from(i) / 10.0).collect();
        let test = ks_two_sample(&a, &b).unwrap();
        assert_ks(test, 0.8333333333333334, 4.906115377843993e-19, "shifted");
    }

    #[test]
    fn rounds_the_effective_size_half_to_even() {
        // en = 2.5 rounds to 2, as numpy does.
        // scipy.stats.ks_2samp([1.0, 2.0, 3.0, 4.0, 5.0], [3.5, 4.5, 5.5, 6.5, 7.5],
        // method='asymp') -> statistic 0.6000000000000001, pvalue 0.31999999999999984
        let test = ks_two_sample(&[1.0, 2.0, 3.0, 4.0, 5.0], &[3.5, 4.5, 5.5, 6.5, 7.5]).unwrap();
        assert_ks(test, 0.6000000000000001, 0.31999999999999984, "en = 2.5");
    }

    #[test]
    fn matches_scipy_on_larger_samples() {
        // a = [(i * 0.6180339887498949) % 1.0 for i in range(300)]
        // b = [((i * 0.41421356237309503) % 1.0) ** 1.2 for i in range(400)]
        // scipy.stats.ks_2samp(a, b, method='asymp')
        // -> statistic 0.0741666666666666, pvalue 0.2892615268941766
        let a: Vec<f64> = (0..300)
            .map(|i| (f64::from(i) * 0.6180339887498949) % 1.0)
            .collect();
        let b: Vec<f64> = (0..400)
            .map(|i| ((f64::from(i) * 0.41421356237309503) % 1.0).powf(1.2))
            .collect();
        let test = ks_two_sample(&a, &b).unwrap();
        assert_ks(test, 0.0741666666666666, 0.2892615268941766, "en = 171");
    }

    #[test]
    fn is_symmetric_and_ignores_order() {
        let a = [3.0, 1.0, 2.0, 2.0, 9.0];
        let b = [2.5, 0.5, 2.0, 7.0];
        let ab = ks_two_sample(&a, &b).unwrap();
        let ba = ks_two_sample(&b, &a).unwrap();
        assert_eq!(ab.statistic, ba.statistic);
        assert_eq!(ab.p_value, ba.p_value);
        let mut sorted = a;
        sorted.sort_by(f64::total_cmp);
        assert_eq!(ks_two_sample(&sorted, &b).unwrap(), ab);
    }

    #[test]
    fn rejects_empty_or_nan_samples() {
        assert_eq!(ks_two_sample(&[], &[1.0]), None);
        assert_eq!(ks_two_sample(&[1.0], &[]), None);
        assert_eq!(ks_two_sample(&[1.0, f64::NAN], &[1.0]), None);
        assert_eq!(ks_two_sample(&[1.0], &[f64::NAN]), None);
    }

    #[test]
    fn single_values_give_the_exact_p_value() {
        // scipy returns NaN here (en = 0.5 rounds to 0); one value against one gives D = 1
        // with probability 1.
        let test = ks_two_sample(&[1.0], &[2.0]).unwrap();
        assert_eq!((test.statistic, test.p_value), (1.0, 1.0));
    }

    #[test]
    fn infinities_are_ordinary_values() {
        let test = ks_two_sample(&[f64::NEG_INFINITY, 0.0], &[1.0, f64::INFINITY]).unwrap();
        assert_eq!(test.statistic, 1.0);
    }

    #[test]
    fn kolmogorov_sf_matches_scipy_in_every_branch() {
        // Each value is scipy.stats.kstwo.sf(d, n) from scipy 1.17.1.
        let cases = [
            // n·d <= 1: Ruben–Gambino.
            (5, 0.15, 0.9988),
            (7, 0.14, 0.9954012173138924),
            // n·d >= n - 1: Ruben–Gambino.
            (10, 0.95, 1.9531250000000172e-13),
            // d >= 0.5: twice the one-sided Smirnov tail.
            (20, 0.6, 2.0483011649719853e-07),
            // n <= 140: Durbin's matrix, Pomeranz's recursion, then Smirnov.
            (30, 0.1, 0.8960782680050898),
            (30, 0.3, 0.006852243362913235),
            (30, 0.45, 4.60170836663682e-06),
            // n > 140: Durbin, Pelz–Good, Smirnov, then zero.
            (1000, 0.01, 0.9999496745370611),
            (1000, 0.02, 0.8108971656895577),
            (1000, 0.06, 0.001428597887952891),
            (1000, 0.7, 0.0),
            // n > 100 000: Pelz–Good; n > 1 000 000: scipy's approximation of Smirnov.
            (200_000, 0.002, 0.39995085369038097),
            (2_000_000, 0.002, 2.247704493692889e-07),
        ];
        for (n, d, want) in cases {
            assert_close(
                kolmogorov_sf(n, d),
                want,
                1e-10,
                &format!("kstwo.sf({d}, {n})"),
            );
        }
        assert_eq!(kolmogorov_sf(10, 0.0), 1.0);
        assert_eq!(kolmogorov_sf(10, 1.0), 0.0);
        assert!(kolmogorov_sf(0, 0.5).is_nan());
        assert!(kolmogorov_sf(10, f64::NAN).is_nan());
    }
}

mod page_hinkley {
    use super::*;

    #[test]
    fn stays_quiet_on_a_stationary_series() {
        for seed in 0..5 {
            let mut rng = SplitMix(seed);
            let mut up = PageHinkley::new(0.5, 25.0, 30).unwrap();
            let mut both = PageHinkley::two_sided(0.5, 25.0, 30).unwrap();
            for i in 0..10_000 {
                let x = 2.0 + rng.normal();
                assert!(!up.update(x), "seed {seed}: false alarm at {i}");
                assert!(!both.update(x), "seed {seed}: two-sided false alarm at {i}");
            }
            assert_eq!(up.samples(), 10_000);
            // Measured: the largest statistic over these runs is about 11.
            assert!(both.statistic() < 25.0);
        }
    }

    #[test]
    fn detects_a_three_sigma_rise_quickly() {
        // Measured delays over seeds 0 to 19 are 9 to 14 samples.
        for seed in 0..20 {
            let mut rng = SplitMix(seed);
            let mut detector = PageHinkley::new(0.5, 25.0, 30).unwrap();
            for i in 0..1000 {
                assert!(
                    !detector.update(rng.normal()),
                    "seed {seed}: false alarm at {i}"
                );
            }
            let delay = (1..=1000)
                .find(|_| detector.update(3.0 + rng.normal()))
                .expect("the rise is detected");
            assert!(delay <= 20, "seed {seed}: detected after {delay} samples");
            assert_eq!(detector.samples(), 0, "an alarm resets the detector");
        }
    }

    #[test]
    fn only_a_two_sided_detector_sees_a_fall() {
        let mut rng = SplitMix(7);
        let mut up = PageHinkley::new(0.5, 25.0, 30).unwrap();
        let mut both = PageHinkley::two_sided(0.5, 25.0, 30).unwrap();
        for _ in 0..1000 {
            let x = rng.normal();
            up.update(x);
            both.update(x);
        }
        let mut up_alarms = 0;
        let mut delay = None;
        for i in 1..=1000 {
            let x = -3.0 + rng.normal();
            up_alarms += usize::from(up.update(x));
            if both.update(x) && delay.is_none() {
                delay = Some(i);
            }
        }
        assert_eq!(up_alarms, 0);
        assert!(delay.is_some_and(|d| d <= 20), "delay {delay:?}");
    }

    #[test]
    fn waits_for_min_samples() {
        let mut detector = PageHinkley::new(0.1, 5.0, 50).unwrap();
        for _ in 0..5 {
            assert!(!detector.update(0.0));
        }
        // The statistic passes lambda at once, but no alarm comes before the 50th value.
        for _ in 5..49 {
            assert!(!detector.update(100.0));
        }
        assert!(detector.statistic() > 5.0);
        assert_eq!(detector.samples(), 49);
        assert!(detector.update(100.0));
        assert_eq!(detector.samples(), 0);
    }

    #[test]
    fn reset_forgets_everything() {
        let mut rng = SplitMix(3);
        let mut detector = PageHinkley::two_sided(0.5, 25.0, 30).unwrap();
        for _ in 0..500 {
            detector.update(rng.normal());
        }
        for _ in 0..5 {
            detector.update(2.0);
        }
        assert!(detector.statistic() > 0.0);
        detector.reset();
        assert_eq!(detector.samples(), 0);
        assert_eq!(detector.statistic(), 0.0);
        // After a reset the old mean is gone: a new level is the baseline, not a change.
        for i in 0..5000 {
            assert!(!detector.update(10.0 + rng.normal()), "false alarm at {i}");
        }
    }

    #[test]
    fn ignores_values_that_are_not_finite() {
        let mut detector = PageHinkley::new(0.5, 25.0, 0).unwrap();
        detector.update(1.0);
        assert!(!detector.update(f64::NAN));
        assert!(!detector.update(f64::INFINITY));
        assert_eq!(detector.samples(), 1);
        assert!(detector.statistic().is_finite());
    }

    #[test]
    fn rejects_bad_parameters() {
        assert_eq!(
            PageHinkley::new(-0.1, 1.0, 0).unwrap_err(),
            DriftError::Delta(-0.1)
        );
        assert!(matches!(
            PageHinkley::new(f64::NAN, 1.0, 0),
            Err(DriftError::Delta(_))
        ));
        assert_eq!(
            PageHinkley::two_sided(0.1, 0.0, 0).unwrap_err(),
            DriftError::Lambda(0.0)
        );
        assert_eq!(
            PageHinkley::new(0.1, f64::INFINITY, 0).unwrap_err(),
            DriftError::Lambda(f64::INFINITY)
        );
    }
}

mod feature_drift {
    use super::*;

    fn normal_reference(rng: &mut SplitMix) -> Vec<f64> {
        (0..5000).map(|_| rng.normal()).collect()
    }

    #[test]
    fn keeps_a_bounded_sorted_reference() {
        let mut rng = SplitMix(1);
        let reference = normal_reference(&mut rng);
        let monitor = FeatureDrift::new(&reference, 256, 0.01).unwrap();
        let kept = monitor.reference();
        assert_eq!(kept.len(), MAX_REFERENCE);
        assert!(kept.is_sorted());
        // Even thinning keeps the shape: the kept values look like all of them.
        assert!(ks_two_sample(kept, &reference).unwrap().p_value > 0.99);

        let small = FeatureDrift::new(&[3.0, 1.0, 2.0], 8, 0.01).unwrap();
        assert_eq!(small.reference(), &[1.0, 2.0, 3.0]);
    }

    #[test]
    fn the_window_slides_and_stays_bounded() {
        let mut monitor = FeatureDrift::new(&[0.0, 1.0], 16, 0.01).unwrap();
        assert!(monitor.is_empty());
        for i in 0..15 {
            monitor.push(f64::from(i));
            assert!(
                monitor.check().is_none(),
                "no verdict before the window is full"
            );
        }
        monitor.push(f64::NAN);
        assert_eq!(monitor.len(), 15);
        for i in 0..1000 {
            monitor.push(f64::from(i));
        }
        assert_eq!(monitor.len(), 16);
        let check = monitor.check().unwrap();
        assert_eq!((check.test.n, check.test.m), (2, 16));
    }

    #[test]
    fn same_distribution_does_not_drift() {
        let mut rng = SplitMix(99);
        let reference = normal_reference(&mut rng);
        let mut monitor = FeatureDrift::new(&reference, 256, 0.01).unwrap();
        let mut drifted = 0;
        // Measured: no window of these 40 is flagged, the smallest p-value is about 0.013.
        for _ in 0..40 {
            for _ in 0..256 {
                monitor.push(rng.normal());
            }
            let check = monitor.check().unwrap();
            assert_eq!((check.test.n, check.test.m), (MAX_REFERENCE, 256));
            drifted += usize::from(check.drifted);
        }
        assert!(drifted <= 2, "{drifted} of 40 windows flagged");
    }

    #[test]
    fn a_shifted_distribution_drifts() {
        let mut rng = SplitMix(5);
        let reference = normal_reference(&mut rng);
        let mut monitor = FeatureDrift::new(&reference, 256, 0.01).unwrap();
        for shift in [0.5, 1.0] {
            for _ in 0..256 {
                monitor.push(shift + rng.normal());
            }
            let check = monitor.check().unwrap();
            assert!(check.drifted, "shift {shift}: p {}", check.test.p_value);
            assert!(
                check.test.p_value < 1e-3,
                "shift {shift}: p {}",
                check.test.p_value
            );
        }
    }

    #[test]
    fn rejects_bad_parameters() {
        assert_eq!(
            FeatureDrift::new(&[], 16, 0.01).unwrap_err(),
            DriftError::EmptyReference
        );
        assert_eq!(
            FeatureDrift::new(&[1.0, f64::NAN], 16, 0.01).unwrap_err(),
            DriftError::NanInReference(1)
        );
        assert_eq!(
            FeatureDrift::new(&[1.0], 0, 0.01).unwrap_err(),
            DriftError::Window(0)
        );
        assert_eq!(
            FeatureDrift::new(&[1.0], 1 << 20, 0.01).unwrap_err(),
            DriftError::Window(1 << 20)
        );
        for alpha in [0.0, 1.0, f64::NAN] {
            assert!(matches!(
                FeatureDrift::new(&[1.0], 16, alpha),
                Err(DriftError::Alpha(_))
            ));
        }
    }
}
