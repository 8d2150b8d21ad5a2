//! The contract of every [`ResourceProbe`]: each figure of a sample is in its range (fractions
//! between 0 and 1, free space no more than exists), and samples never go back in time.

use crate::request::SystemState;
use crate::seams::ResourceProbe;

/// Checks one sample's figures.
pub fn assert_in_range(s: &SystemState) {
    for (what, v) in [
        ("cpu_utilization", s.cpu_utilization),
        ("memory_used", s.memory_used),
    ] {
        assert!(v.is_finite() && (0.0..=1.0).contains(&v), "{what} {v}");
    }
    if s.memory_used < 1.0 {
        assert!(
            s.memory_available > 0,
            "memory is {} used but none is available",
            s.memory_used
        );
    }
}

/// Every figure of several samples in a row is in range.
pub fn figures_are_in_range(probe: &dyn ResourceProbe) {
    for _ in 0..5 {
        assert_in_range(&probe.sample());
    }
}

/// A later sample is never older than an earlier one.
pub fn samples_never_go_back_in_time(probe: &dyn ResourceProbe) {
    let mut last = probe.sample().sampled_at;
    for _ in 0..20 {
        let at = probe.sample().sampled_at;
        assert!(at >= last, "sample at {at:?} after one at {last:?}");
        last = at;
    }
}

/// Stamps out the [`ResourceProbe`] suite as tests in a module `$name`: `$make` is evaluated
/// once per test and gives the probe.
#[macro_export]
macro_rules! resource_probe_conformance {
    ($name:ident, $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            use $crate::conformance::resource_probe as suite;

            #[test]
            fn figures_are_in_range() {
                suite::figures_are_in_range(&$make);
            }
            #[test]
            fn samples_never_go_back_in_time() {
                suite::samples_never_go_back_in_time(&$make);
            }
        }
    };
}
