//! The contract of every [`ThresholdStore`]: what is appended loads back whole and in append
//! order, pools are kept apart, a reopened store keeps everything, and a
//! [`ThresholdManager`] restored from it carries on where the last one stopped.
//!
//! Each function takes `open`, which opens a store over one and the same state each time it is
//! called (a function drops the store it has before it opens the next).

use std::sync::Arc;

use super::{Keeps, pool};
use crate::config::{Adaptation, PoolSettings};
use crate::name::Name;
use crate::request::Timestamp;
use crate::seams::ThresholdStore;
use crate::threshold::{ChangeKind, Proposal, ThresholdChange, ThresholdManager};

/// A change of `pool` at `secs` from factor `from` to `to`, with its bytes on a 10 MiB base.
pub fn change(pool: Name, secs: u64, kind: ChangeKind, from: f64, to: f64) -> ThresholdChange {
    let base = 10u64 << 20;
    ThresholdChange {
        pool,
        at: Timestamp::from_secs(secs),
        kind,
        from_factor: from,
        to_factor: to,
        from_bytes: (base as f64 * from) as u64,
        to_bytes: (base as f64 * to) as u64,
        reason: format!("crossover measured at {secs} s, gain 5 % (ü)"),
        expected_gain: 0.0625,
    }
}

fn expect(keeps: Keeps, all: &[ThresholdChange]) -> Vec<ThresholdChange> {
    match keeps {
        Keeps::Everything => all.to_vec(),
        Keeps::Nothing => Vec::new(),
    }
}

/// A new store loads nothing.
pub fn a_new_store_loads_nothing<S: ThresholdStore>(open: impl Fn() -> S) {
    assert_eq!(open().load().unwrap(), Vec::new());
}

/// Appended changes load back whole, field by field, in the order they were appended (not
/// sorted by time), resets included.
pub fn appended_changes_load_back_whole_and_in_order<S: ThresholdStore>(
    open: impl Fn() -> S,
    keeps: Keeps,
) {
    let store = open();
    let ml = pool("ml");
    let changes = [
        change(ml, 30, ChangeKind::Adjust, 1.0, 0.75),
        change(ml, 10, ChangeKind::Adjust, 0.75, 0.5625),
        change(ml, 20, ChangeKind::Reset, 0.5625, 1.0),
    ];
    for c in &changes {
        store.append(c).unwrap();
    }
    assert_eq!(store.load().unwrap(), expect(keeps, &changes));
    assert_eq!(
        store.load().unwrap(),
        expect(keeps, &changes),
        "a load consumed what it read"
    );
}

/// Changes of different pools, appended interleaved, keep each pool's order and values, and a
/// manager restored from the store gives each pool its own last factor.
pub fn pools_are_kept_apart<S: ThresholdStore + 'static>(open: impl Fn() -> S, keeps: Keeps) {
    let store = open();
    let (a, b) = (pool("a"), pool("b"));
    let changes = [
        change(a, 1, ChangeKind::Adjust, 1.0, 0.75),
        change(b, 2, ChangeKind::Adjust, 1.0, 1.25),
        change(a, 3, ChangeKind::Adjust, 0.75, 0.5625),
        change(b, 4, ChangeKind::Adjust, 1.25, 1.5625),
    ];
    for c in &changes {
        store.append(c).unwrap();
    }
    let loaded = store.load().unwrap();
    for p in [a, b] {
        let of = |all: &[ThresholdChange]| -> Vec<ThresholdChange> {
            all.iter().filter(|c| c.pool == p).cloned().collect()
        };
        assert_eq!(of(&loaded), of(&expect(keeps, &changes)), "pool {p}");
    }
    let manager = ThresholdManager::restore(Arc::new(store)).unwrap();
    let (fa, fb) = match keeps {
        Keeps::Everything => (0.5625, 1.5625),
        Keeps::Nothing => (1.0, 1.0),
    };
    assert_eq!((manager.factor(a), manager.factor(b)), (fa, fb));
    assert_eq!(manager.factor(pool("c")), 1.0, "a pool never changed");
}

/// A store reopened over the same state loads everything appended before, and what is
/// appended after the reopen follows it.
pub fn a_reopened_store_keeps_everything<S: ThresholdStore>(open: impl Fn() -> S, keeps: Keeps) {
    let p = pool("restart");
    let changes = [
        change(p, 1, ChangeKind::Adjust, 1.0, 0.75),
        change(p, 2, ChangeKind::Adjust, 0.75, 0.5625),
        change(p, 3, ChangeKind::Reset, 0.5625, 1.0),
    ];
    {
        let store = open();
        store.append(&changes[0]).unwrap();
        store.append(&changes[1]).unwrap();
    }
    {
        let store = open();
        assert_eq!(store.load().unwrap(), expect(keeps, &changes[..2]));
        store.append(&changes[2]).unwrap();
    }
    assert_eq!(open().load().unwrap(), expect(keeps, &changes));
}

/// A manager over the store persists each move before it takes effect, so a manager restored
/// after a restart has the same factors and history.
pub fn a_restored_manager_carries_on<S: ThresholdStore + 'static>(
    open: impl Fn() -> S,
    keeps: Keeps,
) {
    let p = pool("carry");
    let settings = PoolSettings::default();
    let adaptation = Adaptation::default();
    let (factor, history) = {
        let manager = ThresholdManager::restore(Arc::new(open())).unwrap();
        for secs in 1..=3 {
            let proposal = Proposal {
                target: 1 << 20,
                reason: "paired evidence",
                expected_gain: 0.125,
                at: Timestamp::from_secs(secs),
            };
            manager
                .adjust_toward(p, &settings, &adaptation, &proposal)
                .unwrap();
        }
        (manager.factor(p), manager.history())
    };
    assert!(
        factor < 1.0,
        "three moves toward 1 MiB left factor {factor}"
    );
    assert_eq!(history.len(), 3);
    let again = ThresholdManager::restore(Arc::new(open())).unwrap();
    match keeps {
        Keeps::Everything => {
            assert_eq!(again.factor(p), factor);
            assert_eq!(again.history(), history);
        }
        Keeps::Nothing => {
            assert_eq!(again.factor(p), 1.0);
            assert!(again.history().is_empty());
        }
    }
}

/// Stamps out the [`ThresholdStore`] suite as tests in a module `$name`: `$open` is evaluated
/// once per test and gives the opener (`impl Fn() -> impl ThresholdStore`) over a fresh state;
/// `$keeps` is a [`Keeps`].
#[macro_export]
macro_rules! threshold_store_conformance {
    ($name:ident, $open:expr, $keeps:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            use $crate::conformance::threshold_store as suite;

            #[test]
            fn a_new_store_loads_nothing() {
                suite::a_new_store_loads_nothing($open);
            }
            #[test]
            fn appended_changes_load_back_whole_and_in_order() {
                suite::appended_changes_load_back_whole_and_in_order($open, $keeps);
            }
            #[test]
            fn pools_are_kept_apart() {
                suite::pools_are_kept_apart($open, $keeps);
            }
            #[test]
            fn a_reopened_store_keeps_everything() {
                suite::a_reopened_store_keeps_everything($open, $keeps);
            }
            #[test]
            fn a_restored_manager_carries_on() {
                suite::a_restored_manager_carries_on($open, $keeps);
            }
        }
    };
}
