//! The contract of every [`ModelStore`]: versions count from 1 per name, a load gives the
//! newest version byte for byte with when it was saved, names are kept apart, a reopened store
//! keeps everything and counts on, bad names and oversized models are refused without a trace,
//! and a damaged record is an error, never other bytes.
//!
//! Each function takes `open`, which opens a store over one and the same state each time it is
//! called (a function drops the store it has before it opens the next).

use super::{Keeps, pattern};
use crate::request::Timestamp;
use crate::seams::{MAX_MODEL_BYTES, ModelStore, ModelStoreError};

/// The version a store that keeps `keeps` gives its `n`th save of a name (Noop stores give 0).
fn nth(keeps: Keeps, n: u64) -> u64 {
    match keeps {
        Keeps::Everything => n,
        Keeps::Nothing => 0,
    }
}

/// A name never saved loads nothing.
pub fn an_unknown_name_loads_nothing<S: ModelStore>(open: impl Fn() -> S) {
    assert_eq!(open().load_model("never.saved").unwrap(), None);
}

/// Saves of a name count versions up from 1, a load gives the newest with its bytes and time,
/// and another name counts on its own.
pub fn versions_count_from_one_and_a_load_gives_the_newest<S: ModelStore>(
    open: impl Fn() -> S,
    keeps: Keeps,
) {
    let store = open();
    assert_eq!(
        store
            .save_model("classifier", b"first", Timestamp(10))
            .unwrap(),
        nth(keeps, 1)
    );
    assert_eq!(
        store
            .save_model("classifier", b"second", Timestamp(20))
            .unwrap(),
        nth(keeps, 2)
    );
    assert_eq!(
        store
            .save_model("cost-models", b"x", Timestamp(30))
            .unwrap(),
        nth(keeps, 1),
        "a second name counts from 1"
    );
    let newest = store.load_model("classifier").unwrap();
    let other = store.load_model("cost-models").unwrap();
    match keeps {
        Keeps::Everything => {
            let m = newest.expect("a saved model loads");
            assert_eq!(
                (m.version, m.saved_at, m.bytes.as_slice()),
                (2, Timestamp(20), &b"second"[..])
            );
            let o = other.expect("a saved model loads");
            assert_eq!((o.version, o.bytes.as_slice()), (1, &b"x"[..]));
        }
        Keeps::Nothing => assert_eq!((newest, other), (None, None)),
    }
}

/// Empty models, every byte value and a large model come back exactly.
pub fn bytes_come_back_exactly<S: ModelStore>(open: impl Fn() -> S, keeps: Keeps) {
    let store = open();
    let every_byte: Vec<u8> = (0..=255u8).collect();
    let large = pattern(3 << 20, 7);
    for (name, bytes) in [
        ("empty", &[][..]),
        ("bytes", &every_byte[..]),
        ("large", &large[..]),
    ] {
        store.save_model(name, bytes, Timestamp(1)).unwrap();
        let loaded = store.load_model(name).unwrap();
        match keeps {
            Keeps::Everything => assert!(
                loaded.is_some_and(|m| m.bytes == bytes),
                "{name} came back different"
            ),
            Keeps::Nothing => assert_eq!(loaded, None),
        }
    }
}

/// A store reopened over the same state has every name's newest version and counts on from it.
pub fn a_reopened_store_keeps_models_and_counts_on<S: ModelStore>(
    open: impl Fn() -> S,
    keeps: Keeps,
) {
    {
        let store = open();
        store.save_model("m", b"one", Timestamp(1)).unwrap();
        store.save_model("m", b"two", Timestamp(2)).unwrap();
    }
    {
        let store = open();
        let m = store.load_model("m").unwrap();
        match keeps {
            Keeps::Everything => {
                assert_eq!(m.map(|m| (m.version, m.bytes)), Some((2, b"two".to_vec())));
            }
            Keeps::Nothing => assert_eq!(m, None),
        }
        assert_eq!(
            store.save_model("m", b"three", Timestamp(3)).unwrap(),
            nth(keeps, 3)
        );
    }
    let m = open().load_model("m").unwrap();
    assert_eq!(
        m.map(|m| m.version),
        (keeps == Keeps::Everything).then_some(3)
    );
}

/// Bad names and models over [`MAX_MODEL_BYTES`] are refused with the error that says so, and
/// nothing of them is saved.
pub fn bad_names_and_oversized_models_are_refused<S: ModelStore>(open: impl Fn() -> S) {
    let store = open();
    let long = "n".repeat(65);
    for bad in ["", "a b", "x/y", "../up", "ü", long.as_str()] {
        assert!(
            matches!(
                store.save_model(bad, b"bytes", Timestamp(1)),
                Err(ModelStoreError::InvalidName(n)) if n == bad
            ),
            "save under {bad:?}"
        );
        assert!(
            matches!(store.load_model(bad), Err(ModelStoreError::InvalidName(_))),
            "load of {bad:?}"
        );
    }
    let oversized = vec![0u8; MAX_MODEL_BYTES + 1];
    assert!(matches!(
        store.save_model("big", &oversized, Timestamp(1)),
        Err(ModelStoreError::TooLarge { len, max, .. })
            if len == MAX_MODEL_BYTES + 1 && max == MAX_MODEL_BYTES
    ));
    assert_eq!(
        store.load_model("big").unwrap(),
        None,
        "a refused save left a model"
    );
}

/// A stored record damaged behind the store's back (`damage(name, version)`, called while no
/// store is open) is refused by the next load with an error naming the model; it never loads
/// as other bytes. For stores with a stored form that can be damaged.
pub fn a_damaged_record_is_refused<S: ModelStore>(
    open: impl Fn() -> S,
    damage: impl FnOnce(&str, u64),
) {
    let version = open()
        .save_model("damaged", &pattern(4096, 3), Timestamp(5))
        .unwrap();
    damage("damaged", version);
    match open().load_model("damaged") {
        Err(ModelStoreError::Backend(why)) => assert!(why.contains("damaged"), "{why}"),
        other => panic!("a damaged record loaded as {other:?}"),
    }
}

/// Stamps out the [`ModelStore`] suite as tests in a module `$name`: `$open` is evaluated
/// once per test and gives the opener (`impl Fn() -> impl ModelStore`) over a fresh state;
/// `$keeps` is a [`Keeps`]. Stores with a stored form add
/// [`a_damaged_record_is_refused`] by hand, with their own way to damage it.
#[macro_export]
macro_rules! model_store_conformance {
    ($name:ident, $open:expr, $keeps:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            use $crate::conformance::model_store as suite;

            #[test]
            fn an_unknown_name_loads_nothing() {
                suite::an_unknown_name_loads_nothing($open);
            }
            #[test]
            fn versions_count_from_one_and_a_load_gives_the_newest() {
                suite::versions_count_from_one_and_a_load_gives_the_newest($open, $keeps);
            }
            #[test]
            fn bytes_come_back_exactly() {
                suite::bytes_come_back_exactly($open, $keeps);
            }
            #[test]
            fn a_reopened_store_keeps_models_and_counts_on() {
                suite::a_reopened_store_keeps_models_and_counts_on($open, $keeps);
            }
            #[test]
            fn bad_names_and_oversized_models_are_refused() {
                suite::bad_names_and_oversized_models_are_refused($open);
            }
        }
    };
}
