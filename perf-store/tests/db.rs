//! Tests of the redb backend on real files: round trips, atomicity under injected write faults,
//! range scans, the threshold log, schema versions and migration, retention with archives, and
//! damaged files.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;

use perf_core::{
    ChangeKind, DataType, DecisionContext, FixedPolicy, Method, Name, SampleFilter, SystemState,
    ThresholdChange, ThresholdManager, ThresholdStore, Timestamp, TransferMetrics, TransferPolicy,
    TransferRequest,
};
use perf_store::db::{DB_FILE_NAME, SCHEMA_VERSION, store_file};
use perf_store::migrate::version_1;
use perf_store::{
    Backend, Batch, Bucket, BucketKey, Granularity, RedbBackend, RedbConfig, Retention, SeriesKey,
    StoreError, TableRows, WriteFaults, check, migrate,
};

const NS: u64 = 1_000_000_000;

fn sample(started_ns: u64, pool: &str, method: Method, size: u64, session: u64) -> TransferMetrics {
    let req = TransferRequest::new(size);
    let d = FixedPolicy(method).decide(&req, &DecisionContext::idle(Timestamp(0)));
    let mut m = TransferMetrics::new(
        &req,
        &d,
        method,
        10.0 + session as f64,
        Timestamp(started_ns),
        SystemState::IDLE,
    );
    m.pool = Name::new(pool).unwrap();
    m.session = session;
    m
}

fn bucket_of(samples: &[TransferMetrics]) -> Bucket {
    let mut b = Bucket::default();
    for m in samples {
        b.record(m);
    }
    b
}

fn key(granularity: Granularity, start_secs: u64, pool: &str) -> BucketKey {
    BucketKey {
        granularity,
        start_secs,
        series: SeriesKey {
            pool: Name::new(pool).unwrap(),
            method: Method::Grpc,
            size_class: 12,
            data_type: DataType::Bytes,
        },
    }
}

fn all(backend: &RedbBackend) -> Vec<TransferMetrics> {
    backend
        .samples(&SampleFilter::default(), usize::MAX)
        .unwrap()
}

#[test]
fn batches_round_trip_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first: Vec<_> = (0..5)
        .map(|i| sample(100 * NS + i, "a", Method::Grpc, 4096, i))
        .collect();
    // Two samples in the same nanosecond both survive.
    let second = vec![
        sample(200 * NS, "a", Method::ZeroCopy, 1 << 20, 10),
        sample(200 * NS, "b", Method::ZeroCopy, 1 << 20, 11),
    ];
    let k1 = key(Granularity::Second, 100, "a");
    let k2 = key(Granularity::Minute, 60, "a");
    {
        let b = RedbBackend::open(&data).unwrap();
        assert_eq!(b.path(), data.join(DB_FILE_NAME));
        b.commit(&Batch {
            samples: first.clone(),
            buckets: vec![(k1, bucket_of(&first))],
        })
        .unwrap();
        b.commit(&Batch {
            samples: second.clone(),
            buckets: vec![(k2, bucket_of(&second))],
        })
        .unwrap();
        b.commit(&Batch::default()).unwrap();
    }
    let b = RedbBackend::open(&data).unwrap();
    let mut expected: Vec<_> = first.iter().chain(&second).copied().collect();
    expected.reverse();
    assert_eq!(all(&b), expected, "every sample, newest first");
    assert_eq!(
        b.rows().unwrap(),
        TableRows {
            samples: 7,
            buckets: 2,
            thresholds: 0,
            models: 0
        }
    );
    let got = b.buckets(Granularity::Second, 0, u64::MAX).unwrap();
    assert_eq!(got, vec![(k1, bucket_of(&first))]);
    let got = b.buckets(Granularity::Minute, 0, u64::MAX).unwrap();
    assert_eq!(got, vec![(k2, bucket_of(&second))]);
    let report = check(&data);
    assert!(report.is_healthy(), "{:?}", report.problems);
    assert_eq!(report.rows, b.rows().unwrap());
    assert_eq!(report.schema_version, Some(SCHEMA_VERSION));
}

#[test]
fn samples_are_filtered_newest_first_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let b = RedbBackend::open(dir.path()).unwrap();
    let samples: Vec<_> = (0..40u64)
        .map(|i| {
            let pool = if i % 2 == 0 { "even" } else { "odd" };
            let method = if i % 4 < 2 {
                Method::Grpc
            } else {
                Method::ZeroCopy
            };
            let mut m = sample(i * NS, pool, method, 1 << (i % 20), i);
            // Every fifth transfer ran under an experiment, alternating its variants.
            if i % 5 == 0 {
                m.experiment = Some(perf_core::ExperimentArm {
                    experiment: Name::new("low").unwrap(),
                    variant: Name::new(if i % 10 == 0 { "a" } else { "b" }).unwrap(),
                });
            }
            m
        })
        .collect();
    b.commit(&Batch {
        samples: samples.clone(),
        buckets: Vec::new(),
    })
    .unwrap();
    let sessions = |filter: SampleFilter, limit: usize| -> Vec<u64> {
        b.samples(&filter, limit)
            .unwrap()
            .iter()
            .map(|m| m.session)
            .collect()
    };
    let even = SampleFilter {
        pool: Some(Name::new("even").unwrap()),
        ..SampleFilter::default()
    };
    assert_eq!(sessions(even, 3), [38, 36, 34]);
    let zc_since = SampleFilter {
        method: Some(Method::ZeroCopy),
        since: Timestamp(30 * NS),
        ..SampleFilter::default()
    };
    assert_eq!(sessions(zc_since, 100), [39, 38, 35, 34, 31, 30]);
    let sizes = SampleFilter {
        sizes: Some((1 << 3, 1 << 4)),
        ..SampleFilter::default()
    };
    assert_eq!(sessions(sizes, 100), [24, 23, 4, 3]);
    let experiment = SampleFilter {
        experiment: Some(Name::new("low").unwrap()),
        ..SampleFilter::default()
    };
    assert_eq!(sessions(experiment, 100), [35, 30, 25, 20, 15, 10, 5, 0]);
    let other = SampleFilter {
        experiment: Some(Name::new("other").unwrap()),
        ..SampleFilter::default()
    };
    assert!(sessions(other, 100).is_empty());
    let back = b.samples(&experiment, 1).unwrap();
    assert_eq!(
        back[0].experiment.map(|a| a.variant.to_string()).as_deref(),
        Some("b"),
        "the variant is stored with the record"
    );
    assert!(sessions(SampleFilter::default(), 0).is_empty());
}

#[test]
fn bucket_scans_are_half_open_per_granularity_and_upserts_replace() {
    let dir = tempfile::tempdir().unwrap();
    let b = RedbBackend::open(dir.path()).unwrap();
    let one = bucket_of(&[sample(0, "a", Method::Grpc, 4096, 1)]);
    let mut buckets = Vec::new();
    for s in [9, 10, 11, 19, 20, 21] {
        buckets.push((key(Granularity::Second, s, "a"), one.clone()));
        buckets.push((key(Granularity::Second, s, "b"), one.clone()));
    }
    buckets.push((key(Granularity::Minute, 10, "a"), one.clone()));
    buckets.push((key(Granularity::Hour, 0, "a"), one.clone()));
    b.commit(&Batch {
        samples: Vec::new(),
        buckets,
    })
    .unwrap();
    let starts = |g, from, to| -> Vec<(u64, String)> {
        b.buckets(g, from, to)
            .unwrap()
            .iter()
            .map(|(k, _)| (k.start_secs, k.series.pool.to_string()))
            .collect()
    };
    let pairs = |v: &[u64]| -> Vec<(u64, String)> {
        v.iter()
            .flat_map(|&s| [(s, "a".to_string()), (s, "b".to_string())])
            .collect()
    };
    assert_eq!(starts(Granularity::Second, 10, 20), pairs(&[10, 11, 19]));
    assert_eq!(starts(Granularity::Second, 0, 10), pairs(&[9]));
    assert_eq!(starts(Granularity::Second, 21, 22), pairs(&[21]));
    assert!(starts(Granularity::Second, 20, 20).is_empty());
    assert!(starts(Granularity::Second, 30, 20).is_empty());
    assert_eq!(starts(Granularity::Minute, 0, 100), [(10, "a".to_string())]);
    assert_eq!(starts(Granularity::Hour, 0, 1), [(0, "a".to_string())]);

    let two = bucket_of(&[
        sample(0, "a", Method::Grpc, 4096, 1),
        sample(0, "a", Method::Grpc, 4096, 2),
    ]);
    b.commit(&Batch {
        samples: Vec::new(),
        buckets: vec![(key(Granularity::Second, 10, "a"), two.clone())],
    })
    .unwrap();
    let got = b.buckets(Granularity::Second, 10, 11).unwrap();
    assert_eq!(got[0], (key(Granularity::Second, 10, "a"), two));
    assert_eq!(got.len(), 2);
}

/// A commit that fails at any write or sync leaves the store with all of the batch or none of
/// it, and everything committed before intact.
#[test]
fn a_commit_torn_by_a_write_fault_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = RedbConfig::default();
    let before: Vec<_> = (0..10)
        .map(|i| sample(i * NS, "a", Method::Grpc, 4096, i))
        .collect();
    let batch: Vec<_> = (0..50)
        .map(|i| sample((100 + i) * NS, "a", Method::Grpc, 4096, 1000 + i))
        .collect();
    let kb = key(Granularity::Second, 100, "a");
    RedbBackend::open(dir.path())
        .unwrap()
        .commit(&Batch {
            samples: before.clone(),
            buckets: Vec::new(),
        })
        .unwrap();
    let pristine = std::fs::read(store_file(dir.path())).unwrap();
    let mut failures = 0;
    for n in 0..200 {
        // Each round starts from the store as it was before the batch.
        std::fs::write(store_file(dir.path()), &pristine).unwrap();
        let faults = WriteFaults::new();
        let b = RedbBackend::open_with_faults(dir.path(), &config, faults.clone()).unwrap();
        faults.fail_after(n);
        let res = b.commit(&Batch {
            samples: batch.clone(),
            buckets: vec![(kb, bucket_of(&batch))],
        });
        drop(b);
        let b = RedbBackend::open(dir.path()).unwrap();
        let stored = all(&b);
        let has_batch = stored.iter().any(|m| m.session >= 1000);
        if has_batch {
            assert_eq!(stored.len(), 60, "after failing at write {n}: {res:?}");
            assert_eq!(b.buckets(Granularity::Second, 100, 101).unwrap().len(), 1);
        } else {
            assert_eq!(stored.len(), 10, "after failing at write {n}");
            assert!(
                b.buckets(Granularity::Second, 0, u64::MAX)
                    .unwrap()
                    .is_empty()
            );
        }
        let mut old: Vec<_> = stored.into_iter().filter(|m| m.session < 1000).collect();
        old.reverse();
        assert_eq!(old, before);
        match res {
            Ok(()) => {
                assert!(has_batch);
                assert!(failures > 0, "the first writes must have been faulted");
                return;
            }
            Err(e) => {
                assert!(matches!(e, StoreError::Io(_)), "{e}");
                failures += 1;
            }
        }
    }
    panic!("the commit never succeeded within 200 writes");
}

fn change(pool: &str, at: u64, to: f64) -> ThresholdChange {
    ThresholdChange {
        pool: Name::new(pool).unwrap(),
        at: Timestamp(at),
        kind: ChangeKind::Adjust,
        from_factor: 1.0,
        to_factor: to,
        from_bytes: 10 << 20,
        to_bytes: (to * (10 << 20) as f64) as u64,
        reason: format!("measured crossover {at}"),
        expected_gain: 0.05,
    }
}

#[test]
fn the_threshold_log_survives_reopen_and_restores_the_manager() {
    let dir = tempfile::tempdir().unwrap();
    let changes = vec![
        change("a", 1, 0.75),
        change("b", 2, 1.25),
        change("a", 3, 0.5),
    ];
    {
        let store = RedbBackend::open(dir.path()).unwrap().thresholds();
        assert!(store.load().unwrap().is_empty());
        for c in &changes {
            store.append(c).unwrap();
        }
    }
    let backend = RedbBackend::open(dir.path()).unwrap();
    assert_eq!(backend.thresholds().load().unwrap(), changes);
    let manager = ThresholdManager::restore(Arc::new(backend.thresholds())).unwrap();
    assert_eq!(manager.factor(Name::new("a").unwrap()), 0.5);
    assert_eq!(manager.factor(Name::new("b").unwrap()), 1.25);
    assert_eq!(manager.history(), changes);
}

/// Rewrites the schema version in meta, as a newer perfopt would have written it.
fn set_schema_version(data_dir: &Path, version: u64) {
    let db = redb::Database::create(store_file(data_dir)).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(redb::TableDefinition::<&str, u64>::new("meta"))
        .unwrap()
        .insert("schema_version", version)
        .unwrap();
    txn.commit().unwrap();
}

#[test]
fn a_newer_schema_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    drop(RedbBackend::open(dir.path()).unwrap());
    set_schema_version(dir.path(), u64::from(SCHEMA_VERSION) + 1);
    let err = RedbBackend::open(dir.path()).unwrap_err();
    assert_eq!(
        err,
        StoreError::TooNew {
            found: SCHEMA_VERSION + 1,
            supported: SCHEMA_VERSION
        }
    );
    assert_eq!(
        err.to_string(),
        "metrics store has schema version 3, this perfopt reads up to 2; upgrade perfopt"
    );
    assert_eq!(migrate(dir.path()).unwrap_err(), err);
    assert!(!check(dir.path()).is_healthy());
}

#[test]
fn a_version_1_store_needs_migration_and_migrates_with_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let samples: Vec<_> = (0..300u64)
        .map(|i| {
            let method = if i % 3 == 0 {
                Method::ZeroCopy
            } else {
                Method::Grpc
            };
            sample(1_000 * NS + i * 7_919, "ml", method, 1 + i * 4099, i)
        })
        .collect();
    let buckets: Vec<_> = (0..50u64)
        .map(|s| {
            (
                key(Granularity::Second, 1_000 + s, "ml"),
                bucket_of(&samples[s as usize * 6..s as usize * 6 + 6]),
            )
        })
        .chain([(key(Granularity::Hour, 0, "ml"), bucket_of(&samples))])
        .collect();
    version_1::write_store(&data, &samples, &buckets).unwrap();

    let err = RedbBackend::open(&data).unwrap_err();
    assert_eq!(
        err.to_string(),
        "metrics store has schema version 1, expected 2; run `perfopt migrate`"
    );
    let report = check(&data);
    assert_eq!(report.schema_version, Some(1));
    assert!(!report.is_healthy());

    let done = migrate(&data).unwrap();
    assert_eq!((done.from, done.to), (1, SCHEMA_VERSION));
    let backup = done.backup.clone().unwrap();
    assert_eq!(backup.parent(), Some(data.as_path()));
    assert!(
        backup
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("metrics.redb.v1.")
    );
    // The backup is the untouched version-1 store.
    let restored = dir.path().join("restored");
    std::fs::create_dir(&restored).unwrap();
    std::fs::copy(&backup, store_file(&restored)).unwrap();
    assert!(matches!(
        RedbBackend::open(&restored),
        Err(StoreError::NeedsMigration { found: 1, .. })
    ));

    let b = RedbBackend::open(&data).unwrap();
    let mut expected = samples.clone();
    expected.reverse();
    assert_eq!(all(&b), expected, "every sample survived, in order");
    let mut stored = b.buckets(Granularity::Second, 0, u64::MAX).unwrap();
    stored.extend(b.buckets(Granularity::Hour, 0, u64::MAX).unwrap());
    assert_eq!(stored, buckets, "every bucket survived");
    let report = check(&data);
    assert!(report.is_healthy(), "{:?}", report.problems);
    assert_eq!(report.rows.samples, 300);
    // New samples continue the sequence: nothing is overwritten.
    b.commit(&Batch {
        samples: vec![sample(1_000 * NS, "ml", Method::Grpc, 1, 999)],
        buckets: Vec::new(),
    })
    .unwrap();
    assert_eq!(all(&b).len(), 301);
    drop(b);
    let again = migrate(&data).unwrap();
    assert!(again.was_current());
    assert_eq!(again.backup, None);
}

fn read_archive(path: &Path) -> Vec<serde_json::Value> {
    let file = std::fs::File::open(path).unwrap();
    BufReader::new(flate2::read::GzDecoder::new(file))
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect()
}

#[test]
fn retention_removes_exactly_what_is_old_and_archives_it() {
    let dir = tempfile::tempdir().unwrap();
    let b = RedbBackend::open(&dir.path().join("data")).unwrap();
    let day = 24 * 3600;
    let now = 400 * day;
    // Raw samples: 7 days kept; the one exactly at the cutoff stays.
    let ages = [8 * day, 7 * day + 1, 7 * day, 3 * day, 0];
    let samples: Vec<_> = ages
        .iter()
        .enumerate()
        .map(|(i, age)| sample((now - age) * NS, "a", Method::Grpc, 4096, i as u64))
        .collect();
    let one = bucket_of(&samples[..1]);
    let mut buckets = Vec::new();
    for (g, keep) in [
        (Granularity::Second, day),
        (Granularity::Minute, 30 * day),
        (Granularity::Hour, 365 * day),
    ] {
        for start in [now - keep - 1, now - keep, now - 1] {
            buckets.push((key(g, start, "a"), one.clone()));
        }
    }
    b.commit(&Batch {
        samples: samples.clone(),
        buckets,
    })
    .unwrap();

    let retention = Retention {
        archive_dir: Some(dir.path().join("archive")),
        ..Retention::default()
    };
    let report = b.clean_up(&retention, Timestamp(now * NS)).unwrap();
    assert_eq!(
        (
            report.samples,
            report.second_buckets,
            report.minute_buckets,
            report.hour_buckets
        ),
        (2, 1, 1, 1)
    );
    let sessions: Vec<u64> = all(&b).iter().map(|m| m.session).collect();
    assert_eq!(sessions, [4, 3, 2]);
    for g in Granularity::ALL {
        let starts: Vec<u64> = b
            .buckets(g, 0, u64::MAX)
            .unwrap()
            .iter()
            .map(|(k, _)| k.start_secs)
            .collect();
        assert_eq!(starts.len(), 2, "{g:?}");
        assert!(starts.contains(&(now - 1)));
    }

    let archive = report.archive.unwrap();
    let lines = read_archive(&archive);
    assert_eq!(lines.len(), 5);
    let archived: Vec<u64> = lines
        .iter()
        .filter(|l| l["kind"] == "sample")
        .map(|l| l["sample"]["session"].as_u64().unwrap())
        .collect();
    assert_eq!(archived, [0, 1]);
    let buckets: Vec<&serde_json::Value> = lines.iter().filter(|l| l["kind"] == "bucket").collect();
    assert_eq!(buckets.len(), 3);
    assert!(buckets.iter().all(|l| l["count"] == 1));

    let nothing = b.clean_up(&retention, Timestamp(now * NS)).unwrap();
    assert_eq!(nothing.total(), 0);
    assert_eq!(nothing.archive, None);
    assert_eq!(
        std::fs::read_dir(dir.path().join("archive"))
            .unwrap()
            .count(),
        1,
        "an empty clean-up writes no archive"
    );
}

fn damaged_copy(
    original: &[u8],
    root: &Path,
    name: &str,
    edit: impl FnOnce(&mut Vec<u8>),
) -> std::path::PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut bytes = original.to_vec();
    edit(&mut bytes);
    std::fs::write(store_file(&dir), bytes).unwrap();
    dir
}

/// Whatever the damage, opening and checking return a clear error or a store that reads back
/// whole; redb itself never panics on the way.
fn assert_no_panic_on(dir: &Path, what: &str) {
    let report = check(dir);
    for p in &report.problems {
        assert!(
            !p.contains("redb failed reading"),
            "{what}: redb panicked in check: {p}"
        );
    }
    match RedbBackend::open(dir) {
        Ok(b) => {
            let samples = b.samples(&SampleFilter::default(), usize::MAX);
            let buckets = b.buckets(Granularity::Second, 0, u64::MAX);
            if let (Ok(s), Ok(k)) = (&samples, &buckets) {
                assert!(s.len() <= 200 && k.len() <= 20, "{what}: rows appeared");
            }
        }
        Err(e) => {
            let text = e.to_string();
            assert!(
                !text.contains("redb failed reading"),
                "{what}: redb panicked in open: {text}"
            );
            assert!(
                text.starts_with("metrics store"),
                "{what}: unclear error {text}"
            );
        }
    }
}

#[test]
fn truncated_and_flipped_files_give_clear_errors_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    {
        let b = RedbBackend::open(&source).unwrap();
        for batch in 0..10u64 {
            let samples: Vec<_> = (0..20)
                .map(|i| {
                    sample(
                        (batch * 20 + i) * NS,
                        "a",
                        Method::Grpc,
                        4096,
                        batch * 20 + i,
                    )
                })
                .collect();
            b.commit(&Batch {
                buckets: vec![(key(Granularity::Second, batch, "a"), bucket_of(&samples))],
                samples,
            })
            .unwrap();
        }
        b.thresholds().append(&change("a", 1, 0.75)).unwrap();
    }
    let original = std::fs::read(store_file(&source)).unwrap();
    assert!(check(&source).is_healthy());
    let len = original.len();

    let mut detected = 0;
    for cut in [1, 100, 511, 4096, len / 3, len / 2, len - 4096, len - 1] {
        let name = format!("cut-{cut}");
        let d = damaged_copy(&original, dir.path(), &name, |b| b.truncate(cut));
        assert_no_panic_on(&d, &name);
        detected += usize::from(!check(&d).is_healthy());
    }
    assert!(
        detected >= 6,
        "most truncations are reported, got {detected} of 8"
    );

    let mut offsets: Vec<usize> = (0..256).step_by(17).collect();
    offsets.extend(
        (4096..len)
            .step_by(4096)
            .flat_map(|p| [p, p + 8, p + 100, p + 2048]),
    );
    for off in offsets.into_iter().filter(|&o| o < len) {
        let name = format!("flip-{off}");
        let d = damaged_copy(&original, dir.path(), &name, |b| b[off] ^= 0xff);
        assert_no_panic_on(&d, &name);
    }
    let missing = check(&dir.path().join("nowhere"));
    assert!(missing.problems[0].starts_with("no metrics store at"));
    assert_eq!(
        std::fs::read(store_file(&source)).unwrap(),
        original,
        "check never writes"
    );
}

#[test]
fn a_second_open_for_writing_names_the_holder_even_in_the_same_process() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_file(dir.path());
    let holder_file = perf_store::db::holder_file(&store);
    let first = RedbBackend::open(dir.path()).unwrap();
    assert!(holder_file.is_file(), "the writer says who holds the store");
    let err = RedbBackend::open(dir.path()).unwrap_err();
    let StoreError::Held {
        path,
        holder: Some(holder),
    } = &err
    else {
        panic!("expected the store held by this process, got {err:?}");
    };
    assert_eq!(path, &store);
    assert_eq!(holder.pid, std::process::id());
    let message = err.to_string();
    let expected = format!(
        "metrics store {} is held by process {} (",
        store.display(),
        std::process::id()
    );
    assert!(message.starts_with(&expected), "{message}");
    assert!(
        message.ends_with("; stop it, or ask it (its HTTP API comes with `perfopt serve`)"),
        "{message}"
    );
    // Migration writes too: it is refused the same way.
    assert!(matches!(migrate(dir.path()), Err(StoreError::Held { .. })));
    // The first open still holds the file afterwards: the refused opens left it alone.
    assert!(holder_file.is_file());
    drop(first);
    assert!(!holder_file.exists(), "closing the store removes the file");
    RedbBackend::open(dir.path()).unwrap();
}

#[test]
fn a_holder_file_of_a_dead_process_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_file(dir.path());
    let _first = RedbBackend::open(dir.path()).unwrap();
    // What a killed writer leaves, now beside a store held by someone it does not name.
    std::fs::write(
        perf_store::db::holder_file(&store),
        format!(
            r#"{{"pid":{},"command":"perfopt run","since_ns":0}}"#,
            u32::MAX - 1
        ),
    )
    .unwrap();
    let err = RedbBackend::open(dir.path()).unwrap_err();
    assert_eq!(
        err,
        StoreError::Held {
            path: store.clone(),
            holder: None
        }
    );
    assert_eq!(
        err.to_string(),
        format!(
            "metrics store {} is held open for writing by another process; stop it, or ask it \
             (its HTTP API comes with `perfopt serve`)",
            store.display()
        )
    );
}

#[test]
fn a_reader_opens_beside_the_writer_and_follows_its_commits() {
    let dir = tempfile::tempdir().unwrap();
    let writer = RedbBackend::open(dir.path()).unwrap();
    let batch = |n: u64| Batch {
        samples: (0..n)
            .map(|i| sample((100 + i) * NS, "p", Method::Grpc, 4096, i))
            .collect(),
        buckets: Vec::new(),
    };
    writer.commit(&batch(3)).unwrap();
    let reader = perf_store::RedbReader::open(dir.path()).unwrap();
    assert_eq!(reader.rows().unwrap().samples, 3);
    writer.commit(&batch(2)).unwrap();
    assert_eq!(
        reader.rows().unwrap().samples,
        5,
        "a read after a commit sees it"
    );
    // The writer keeps writing, and closes, while the reader is open.
    drop(writer);
    assert_eq!(reader.rows().unwrap().samples, 5);
    let writer = RedbBackend::open(dir.path()).unwrap();
    writer.commit(&batch(1)).unwrap();
    assert_eq!(reader.rows().unwrap().samples, 6);
}
