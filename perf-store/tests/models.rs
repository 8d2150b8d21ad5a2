//! Tests of the trained-model store on real redb files: versions across reopen, pruning to the
//! newest few, rejected saves, damaged records, stores from before models, and concurrent saves.

use std::path::Path;
use std::sync::Arc;

use perf_core::{MAX_MODEL_BYTES, ModelStore, ModelStoreError, Timestamp};
use perf_store::db::store_file;
use perf_store::{MODEL_VERSIONS_KEPT, ModelInfo, RedbBackend, check};
use redb::ReadableTable;

/// The models table as the store lays it out, for writing behind the store's back.
const MODELS: redb::TableDefinition<(&str, u64), &[u8]> = redb::TableDefinition::new("models");

/// The kept versions of `name`, oldest first.
fn versions(backend: &RedbBackend, name: &str) -> Vec<u64> {
    backend
        .models()
        .list_models()
        .unwrap()
        .into_iter()
        .filter(|m| m.name == name)
        .map(|m| m.version)
        .collect()
}

/// Rewrites the stored record of `name` v`version` with `damage` applied, as a bad disk or a
/// buggy tool might, through redb so that the file itself stays valid.
fn damage_record(data_dir: &Path, name: &str, version: u64, damage: impl FnOnce(&mut Vec<u8>)) {
    let db = redb::Database::create(store_file(data_dir)).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut table = txn.open_table(MODELS).unwrap();
        let mut value = table
            .get((name, version))
            .unwrap()
            .unwrap()
            .value()
            .to_vec();
        damage(&mut value);
        table.insert((name, version), value.as_slice()).unwrap();
    }
    txn.commit().unwrap();
}

#[test]
fn models_round_trip_and_versions_count_on_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = RedbBackend::open(dir.path()).unwrap();
        let store: Box<dyn ModelStore> = Box::new(b.models());
        assert_eq!(store.load_model("classifier").unwrap(), None);
        assert_eq!(
            store
                .save_model("classifier", b"first", Timestamp(10))
                .unwrap(),
            1
        );
        assert_eq!(
            store
                .save_model("classifier", b"second", Timestamp(20))
                .unwrap(),
            2
        );
        assert_eq!(store.save_model("other.v1", b"", Timestamp(30)).unwrap(), 1);
    }
    let b = RedbBackend::open(dir.path()).unwrap();
    let store = b.models();
    let m = store.load_model("classifier").unwrap().unwrap();
    assert_eq!(
        (m.version, m.saved_at, m.bytes.as_slice()),
        (2, Timestamp(20), &b"second"[..])
    );
    assert_eq!(
        store
            .save_model("classifier", b"third", Timestamp(40))
            .unwrap(),
        3
    );
    let empty = store.load_model("other.v1").unwrap().unwrap();
    assert_eq!((empty.version, empty.bytes.len()), (1, 0));
    assert_eq!(store.load_model("missing").unwrap(), None);
    let info = |name: &str, version, at, len| ModelInfo {
        name: name.to_string(),
        version,
        saved_at: Timestamp(at),
        len,
    };
    assert_eq!(
        store.list_models().unwrap(),
        vec![
            info("classifier", 1, 10, 5),
            info("classifier", 2, 20, 6),
            info("classifier", 3, 40, 5),
            info("other.v1", 1, 30, 0),
        ]
    );
    assert_eq!(b.rows().unwrap().models, 4);
    let report = check(dir.path());
    assert!(report.is_healthy(), "{:?}", report.problems);
    assert_eq!(report.rows, b.rows().unwrap());
}

#[test]
fn only_the_newest_versions_of_each_name_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let b = RedbBackend::open(dir.path()).unwrap();
    let store = b.models();
    store.save_model("a", b"a1", Timestamp(1)).unwrap();
    store.save_model("a", b"a2", Timestamp(2)).unwrap();
    let n = MODEL_VERSIONS_KEPT + 3;
    for v in 1..=n {
        let bytes = format!("b{v}");
        assert_eq!(
            store
                .save_model("b", bytes.as_bytes(), Timestamp(v))
                .unwrap(),
            v
        );
        let kept = v.min(MODEL_VERSIONS_KEPT);
        assert_eq!(versions(&b, "b"), ((v - kept + 1)..=v).collect::<Vec<_>>());
    }
    assert_eq!(versions(&b, "a"), vec![1, 2], "other names are untouched");
    let newest = store.load_model("b").unwrap().unwrap();
    assert_eq!(newest.bytes, format!("b{n}").into_bytes());
    assert_eq!(b.rows().unwrap().models, MODEL_VERSIONS_KEPT + 2);
    drop((store, b));
    let b = RedbBackend::open(dir.path()).unwrap();
    assert_eq!(
        b.models().save_model("b", b"", Timestamp(99)).unwrap(),
        n + 1
    );
    assert_eq!(
        versions(&b, "b"),
        ((n + 2 - MODEL_VERSIONS_KEPT)..=n + 1).collect::<Vec<_>>()
    );
}

#[test]
fn invalid_names_and_oversized_models_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let b = RedbBackend::open(dir.path()).unwrap();
    let store = b.models();
    store.save_model("kept", b"x", Timestamp(1)).unwrap();
    let before = std::fs::read(store_file(dir.path())).unwrap();
    for bad in ["", "a b", "x/y", "ü", &"n".repeat(65)] {
        assert_eq!(
            store.save_model(bad, b"bytes", Timestamp(2)),
            Err(ModelStoreError::InvalidName(bad.to_string()))
        );
        assert_eq!(
            store.load_model(bad),
            Err(ModelStoreError::InvalidName(bad.to_string()))
        );
    }
    let huge = vec![0u8; MAX_MODEL_BYTES + 1];
    assert_eq!(
        store.save_model("kept", &huge, Timestamp(3)),
        Err(ModelStoreError::TooLarge {
            name: "kept".to_string(),
            len: MAX_MODEL_BYTES + 1,
            max: MAX_MODEL_BYTES,
        })
    );
    assert_eq!(versions(&b, "kept"), vec![1]);
    assert_eq!(b.rows().unwrap().models, 1);
    assert_eq!(
        std::fs::read(store_file(dir.path())).unwrap(),
        before,
        "the file is untouched"
    );
    let at_limit = vec![7u8; MAX_MODEL_BYTES];
    assert_eq!(store.save_model("kept", &at_limit, Timestamp(4)), Ok(2));
    assert_eq!(store.load_model("kept").unwrap().unwrap().bytes, at_limit);
}

/// Saves two versions of `m`, damages v2 as `damage` says, and returns the error loading it.
fn load_damaged(damage: impl FnOnce(&mut Vec<u8>)) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = RedbBackend::open(dir.path()).unwrap();
        b.models()
            .save_model("m", b"good one", Timestamp(1))
            .unwrap();
        b.models()
            .save_model("m", b"model bytes", Timestamp(2))
            .unwrap();
    }
    damage_record(dir.path(), "m", 2, damage);
    let b = RedbBackend::open(dir.path()).unwrap();
    let err = match b.models().load_model("m") {
        Err(ModelStoreError::Backend(msg)) => msg,
        other => panic!("expected a backend error, got {other:?}"),
    };
    (dir, err)
}

#[test]
fn a_damaged_record_gives_a_clear_error_not_bytes() {
    let (dir, err) = load_damaged(|v| {
        let last = v.len() - 1;
        v[last] ^= 0x01;
    });
    assert!(err.starts_with("model m v2 is corrupt: checksum"), "{err}");
    let (_, err) = load_damaged(|v| v.truncate(v.len() - 3));
    assert_eq!(
        err,
        "model m v2 is corrupt: header says 11 bytes, 8 are stored"
    );
    let (_, err) = load_damaged(|v| v[0] = 9);
    assert_eq!(err, "model m v2 is corrupt: format 9, expected 1");
    let (_, err) = load_damaged(|v| v.truncate(4));
    assert_eq!(
        err,
        "model m v2 is corrupt: 4 bytes, expected at least the 21-byte header"
    );
    let (_, err) = load_damaged(|v| v[3] ^= 0x80);
    assert!(
        err.starts_with("model m v2 is corrupt: checksum"),
        "saved_at is covered too: {err}"
    );

    let report = check(dir.path());
    assert_eq!(report.rows.models, 2);
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(
        report.problems[0].starts_with("model m v2 is corrupt: checksum"),
        "{:?}",
        report.problems
    );
    let b = RedbBackend::open(dir.path()).unwrap();
    let store = b.models();
    let err = store.list_models().unwrap_err().to_string();
    assert!(err.contains("model m v2 is corrupt"), "{err}");
    assert_eq!(
        store.save_model("m", b"retrained", Timestamp(3)),
        Ok(3),
        "a new version can still be saved"
    );
    assert_eq!(store.load_model("m").unwrap().unwrap().bytes, b"retrained");
}

#[test]
fn a_damaged_record_is_refused_as_the_model_store_contract_says() {
    let dir = tempfile::tempdir().unwrap();
    perf_core::conformance::model_store::a_damaged_record_is_refused(
        || RedbBackend::open(dir.path()).unwrap().models(),
        |name, version| {
            damage_record(dir.path(), name, version, |v| {
                let last = v.len() - 1;
                v[last] ^= 0x01;
            });
        },
    );
}

#[test]
fn a_store_from_before_models_reads_as_empty_and_takes_saves() {
    let dir = tempfile::tempdir().unwrap();
    drop(RedbBackend::open(dir.path()).unwrap());
    {
        let db = redb::Database::create(store_file(dir.path())).unwrap();
        let txn = db.begin_write().unwrap();
        assert!(
            txn.delete_table(MODELS).unwrap(),
            "a new store has the table"
        );
        txn.commit().unwrap();
    }
    let report = check(dir.path());
    assert!(report.is_healthy(), "{:?}", report.problems);
    assert_eq!(report.rows.models, 0);
    let b = RedbBackend::open(dir.path()).unwrap();
    let store = b.models();
    assert_eq!(b.rows().unwrap().models, 0);
    assert_eq!(store.load_model("m").unwrap(), None);
    assert_eq!(store.list_models().unwrap(), Vec::new());
    assert_eq!(store.save_model("m", b"x", Timestamp(1)), Ok(1));
    assert_eq!(b.rows().unwrap().models, 1);
}

#[test]
fn concurrent_saves_get_distinct_consecutive_versions() {
    const PER_THREAD: u64 = 20;
    let dir = tempfile::tempdir().unwrap();
    let b = RedbBackend::open(dir.path()).unwrap();
    let store = Arc::new(b.models());
    let threads: Vec<_> = (0..2u8)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                (0..PER_THREAD)
                    .map(|i| store.save_model("shared", &[t], Timestamp(i)).unwrap())
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in threads {
        let mine = t.join().unwrap();
        assert!(mine.windows(2).all(|w| w[0] < w[1]), "{mine:?}");
        all.extend(mine);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=2 * PER_THREAD).collect::<Vec<_>>());
    assert_eq!(
        store.load_model("shared").unwrap().unwrap().version,
        2 * PER_THREAD
    );
    assert_eq!(versions(&b, "shared").len() as u64, MODEL_VERSIONS_KEPT);
}
