//! The statistics of the perf gate: quantiles with linear interpolation (R's type 7, numpy's
//! default), a seeded SplitMix64 generator, and the bootstrap percentile interval of a change in
//! a ratio of medians (or of a quantile) between a baseline run and this one.

/// SplitMix64 (Vigna's `splitmix64.c`): a small seeded generator, enough for resampling.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose state starts at `seed`.
    pub(crate) fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform index in `0..n` (`n > 0`), by the multiply-shift method (bias below 2^-32 for
    /// the sample counts used here).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// The `q` quantile (`0 <= q <= 1`) of sorted, non-empty `sorted`, by linear interpolation
/// between order statistics: R's `quantile(x, q, type = 7)`, numpy's `percentile(x, 100 q)`.
pub(crate) fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    if n == 1 {
        return sorted[0];
    }
    let h = (n - 1) as f64 * q.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// `samples` sorted ascending (NaN last), for [`quantile_sorted`].
pub(crate) fn sorted(samples: &[f64]) -> Vec<f64> {
    let mut out = samples.to_vec();
    out.sort_by(f64::total_cmp);
    out
}

/// The `q` quantile of non-empty `samples`, in any order (see [`quantile_sorted`]).
pub(crate) fn quantile(samples: &[f64], q: f64) -> f64 {
    quantile_sorted(&sorted(samples), q)
}

/// The median of non-empty `samples`: the 0.5 quantile.
pub(crate) fn median(samples: &[f64]) -> f64 {
    quantile(samples, 0.5)
}

/// One series prepared for resampling: its samples sorted, and a count per sorted position
/// that each resample refills.
#[derive(Debug, Clone)]
pub(crate) struct Resampler {
    sorted: Vec<f64>,
    counts: Vec<u32>,
}

impl Resampler {
    /// Prepares non-empty `samples`.
    pub(crate) fn new(samples: &[f64]) -> Resampler {
        Resampler {
            sorted: sorted(samples),
            counts: vec![0; samples.len()],
        }
    }

    /// The `q` quantile of the samples themselves.
    pub(crate) fn observed(&self, q: f64) -> f64 {
        quantile_sorted(&self.sorted, q)
    }

    /// The `q` quantile of one bootstrap resample (n draws with replacement). A resample is
    /// kept as a count per sorted position, so its order statistics come from one pass over
    /// the counts, with no sort.
    pub(crate) fn resampled(&mut self, q: f64, rng: &mut SplitMix64) -> f64 {
        let n = self.sorted.len();
        if n == 1 {
            return self.sorted[0];
        }
        self.counts.fill(0);
        for _ in 0..n {
            self.counts[rng.below(n)] += 1;
        }
        let h = (n - 1) as f64 * q.clamp(0.0, 1.0);
        let lo_rank = h.floor() as usize;
        let hi_rank = (lo_rank + 1).min(n - 1);
        let (mut lo, mut hi) = (None, None);
        let mut seen = 0usize;
        for (value, &count) in self.sorted.iter().zip(&self.counts) {
            seen += count as usize;
            if lo.is_none() && seen > lo_rank {
                lo = Some(*value);
            }
            if seen > hi_rank {
                hi = Some(*value);
                break;
            }
        }
        let lo = lo.unwrap_or(self.sorted[n - 1]);
        let hi = hi.unwrap_or(lo);
        lo + (h - lo_rank as f64) * (hi - lo)
    }
}

/// How "best of" picks among several denominators: the lowest median for latency, the highest
/// for throughput.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Best {
    /// The lowest value is the best (latency, `us`).
    Lowest,
    /// The highest value is the best (throughput, `mib_s`).
    Highest,
}

impl Best {
    /// The best of `values` (non-empty).
    pub(crate) fn pick(self, values: impl IntoIterator<Item = f64>) -> f64 {
        let mut it = values.into_iter();
        let first = it.next().unwrap_or(f64::NAN);
        it.fold(first, |best, v| match self {
            Best::Lowest => best.min(v),
            Best::Highest => best.max(v),
        })
    }
}

/// A figure measured from the samples of one run: either a ratio of medians (the numerator
/// series over the best of the denominator series), or one series' quantile.
#[derive(Debug, Clone)]
pub(crate) enum Statistic<'a> {
    /// `median(num) / best(median(den_i))`.
    RatioOfMedians {
        /// The numerator's samples.
        num: &'a [f64],
        /// Each candidate denominator's samples (at least one).
        den: Vec<&'a [f64]>,
        /// How the denominator is chosen among the candidates.
        best: Best,
    },
    /// One series' `q` quantile.
    Quantile {
        /// The samples.
        samples: &'a [f64],
        /// The quantile, in `0..=1`.
        q: f64,
    },
}

/// A [`Statistic`] ready to be resampled.
struct Prepared {
    num: Resampler,
    den: Vec<Resampler>,
    best: Best,
    q: f64,
    ratio: bool,
}

impl Prepared {
    fn new(stat: &Statistic<'_>) -> Prepared {
        match stat {
            Statistic::RatioOfMedians { num, den, best } => Prepared {
                num: Resampler::new(num),
                den: den.iter().map(|it| Resampler::new(it)).collect(),
                best: *best,
                q: 0.5,
                ratio: true,
            },
            Statistic::Quantile { samples, q } => Prepared {
                num: Resampler::new(samples),
                den: Vec::new(),
                best: Best::Lowest,
                q: *q,
                ratio: false,
            },
        }
    }

    fn observed(&self) -> f64 {
        let num = self.num.observed(self.q);
        if !self.ratio {
            return num;
        }
        num / self.best.pick(self.den.iter().map(|it| it.observed(0.5)))
    }

    fn resampled(&mut self, rng: &mut SplitMix64) -> f64 {
        let num = self.num.resampled(self.q, rng);
        if !self.ratio {
            return num;
        }
        let best = self.best;
        best.pick(self.den.iter_mut().map(|it| it.resampled(0.5, rng)))
            .recip()
            * num
    }
}

/// How the bootstrap runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct BootstrapConfig {
    /// Resamples drawn.
    pub(crate) resamples: usize,
    /// Coverage of the interval, e.g. 0.95.
    pub(crate) confidence: f64,
    /// Seed of the generator: the same data and seed give the same interval.
    pub(crate) seed: u64,
}

/// A change between two runs with its bootstrap percentile interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Change {
    /// `statistic(now) / statistic(baseline)` on the samples as measured.
    pub(crate) point: f64,
    /// Lower end of the interval.
    pub(crate) lo: f64,
    /// Upper end of the interval.
    pub(crate) hi: f64,
}

/// The bootstrap percentile interval of `statistic(now) / statistic(baseline)`: each resample
/// draws every series of both runs anew, with replacement, and the interval is the
/// `(1 - confidence) / 2` and `(1 + confidence) / 2` quantiles (type 7) of the resampled changes.
pub(crate) fn change_interval(
    now: &Statistic<'_>,
    baseline: &Statistic<'_>,
    config: BootstrapConfig,
) -> Change {
    let mut now = Prepared::new(now);
    let mut base = Prepared::new(baseline);
    let point = now.observed() / base.observed();
    let mut rng = SplitMix64::new(config.seed);
    let mut changes: Vec<f64> = (0..config.resamples.max(1))
        .map(|_| now.resampled(&mut rng) / base.resampled(&mut rng))
        .collect();
    changes.sort_by(f64::total_cmp);
    let (lo, hi) = percentile_interval(&changes, config.confidence);
    Change { point, lo, hi }
}

/// The percentile interval of sorted bootstrap replicates at `confidence`.
pub(crate) fn percentile_interval(sorted_replicates: &[f64], confidence: f64) -> (f64, f64) {
    let alpha = (1.0 - confidence.clamp(0.0, 1.0)) / 2.0;
    (
        quantile_sorted(sorted_replicates, alpha),
        quantile_sorted(sorted_replicates, 1.0 - alpha),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn splitmix64_reproduces_the_reference_vector() {
        // The first values of the `reference` test of rand_xoshiro's splitmix64.rs, produced
        // there with Vigna's splitmix64.c from the state 1477776061723855037.
        let mut rng = SplitMix64::new(1_477_776_061_723_855_037);
        let expected: [u64; 6] = [
            1_985_237_415_132_408_290,
            2_979_275_885_539_914_483,
            13_511_426_838_097_143_398,
            8_488_337_342_461_049_707,
            15_141_737_807_933_549_159,
            17_093_170_987_380_407_015,
        ];
        for want in expected {
            assert_eq!(rng.next_u64(), want);
        }
    }

    #[test]
    fn quantiles_match_r_type_7_and_numpy() {
        // R: quantile(c(3, 1, 4, 1, 5, 9, 2, 6), c(0, 0.25, 0.5, 0.95, 1))
        //    0%: 1, 25%: 1.75, 50%: 3.5, 95%: 7.95, 100%: 9
        let x = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0];
        for (q, want) in [
            (0.0, 1.0),
            (0.25, 1.75),
            (0.5, 3.5),
            (0.95, 7.95),
            (1.0, 9.0),
        ] {
            assert!(close(quantile(&x, q), want), "q {q}: {}", quantile(&x, q));
        }
        // R: quantile(1:10, 0.99) is 9.91; numpy.percentile(range(1, 11), 99) the same.
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        assert!(close(quantile(&ten, 0.99), 9.91));
        // numpy.percentile([1, 3, 5, 7], 25) is 2.5; R: quantile(c(1, 3, 5, 7), 0.25) too.
        assert!(close(quantile(&[7.0, 1.0, 5.0, 3.0], 0.25), 2.5));
        // R: median(c(10, 20, 30, 40)) is 25; an odd count gives the middle value.
        assert!(close(median(&[40.0, 10.0, 30.0, 20.0]), 25.0));
        assert!(close(median(&[2.0, 9.0, 4.0]), 4.0));
        assert!(close(median(&[5.0]), 5.0));
    }

    #[test]
    fn the_percentile_interval_is_type_7_on_the_replicates() {
        // R: quantile(1:101, c(0.025, 0.975)) is 3.5 and 98.5.
        let replicates: Vec<f64> = (1..=101).map(f64::from).collect();
        let (lo, hi) = percentile_interval(&replicates, 0.95);
        assert!(close(lo, 3.5) && close(hi, 98.5), "{lo} {hi}");
        // R: quantile(1:20, c(0.05, 0.95)) is 1.95 and 19.05.
        let twenty: Vec<f64> = (1..=20).map(f64::from).collect();
        let (lo, hi) = percentile_interval(&twenty, 0.90);
        assert!(close(lo, 1.95) && close(hi, 19.05), "{lo} {hi}");
    }

    #[test]
    fn a_resample_of_counts_gives_the_quantile_of_the_drawn_values() {
        // The counting shortcut must equal drawing the values, sorting them and interpolating.
        let samples: Vec<f64> = (0..37).map(|i| f64::from((i * 17) % 37) * 1.5).collect();
        let mut resampler = Resampler::new(&samples);
        let sorted_samples = sorted(&samples);
        for q in [0.0, 0.1, 0.5, 0.99, 1.0] {
            let mut a = SplitMix64::new(7);
            let mut b = SplitMix64::new(7);
            let fast = resampler.resampled(q, &mut a);
            let drawn: Vec<f64> = (0..samples.len())
                .map(|_| sorted_samples[b.below(samples.len())])
                .collect();
            assert!(close(fast, quantile(&drawn, q)), "q {q}");
        }
    }

    /// A uniform number in `[0, 1)` with 53 random bits.
    fn unit(rng: &mut SplitMix64) -> f64 {
        (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A lognormal sample with median `median` (sigma 0.5), by Box-Muller.
    fn lognormal(rng: &mut SplitMix64, n: usize, median: f64) -> Vec<f64> {
        (0..n)
            .map(|_| {
                let u1 = 1.0 - unit(rng);
                let u2 = unit(rng);
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                median * (0.5 * z).exp()
            })
            .collect()
    }

    #[test]
    fn the_interval_of_a_change_in_a_ratio_covers_the_true_change() {
        // Baseline: num median 100 over den median 50 (ratio 2). Now: num median 130 over den
        // median 50, so the true change is 1.3. A 90% interval must cover it in about 90% of
        // independent trials.
        let mut data_rng = SplitMix64::new(2026);
        let trials = 120;
        let mut covered = 0;
        for trial in 0..trials {
            let base_num = lognormal(&mut data_rng, 201, 100.0);
            let base_den = lognormal(&mut data_rng, 201, 50.0);
            let now_num = lognormal(&mut data_rng, 201, 130.0);
            let now_den = lognormal(&mut data_rng, 201, 50.0);
            let stat = |num, den| Statistic::RatioOfMedians {
                num,
                den: vec![den],
                best: Best::Lowest,
            };
            let change = change_interval(
                &stat(&now_num, &now_den),
                &stat(&base_num, &base_den),
                BootstrapConfig {
                    resamples: 400,
                    confidence: 0.90,
                    seed: trial,
                },
            );
            assert!(change.lo <= change.point && change.point <= change.hi);
            if change.lo <= 1.3 && 1.3 <= change.hi {
                covered += 1;
            }
        }
        let coverage = f64::from(covered) / f64::from(trials as u32);
        assert!(
            (0.82..=0.97).contains(&coverage),
            "coverage {coverage} of a 90% interval"
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_interval_and_best_picks_by_direction() {
        let mut rng = SplitMix64::new(1);
        let a = lognormal(&mut rng, 50, 10.0);
        let b = lognormal(&mut rng, 50, 20.0);
        let stat = Statistic::Quantile {
            samples: &a,
            q: 0.99,
        };
        let base = Statistic::Quantile {
            samples: &b,
            q: 0.99,
        };
        let config = BootstrapConfig {
            resamples: 200,
            confidence: 0.95,
            seed: 9,
        };
        assert_eq!(
            change_interval(&stat, &base, config),
            change_interval(&stat, &base, config)
        );
        assert_eq!(Best::Lowest.pick([3.0, 1.0, 2.0]), 1.0);
        assert_eq!(Best::Highest.pick([3.0, 1.0, 2.0]), 3.0);
    }
}
