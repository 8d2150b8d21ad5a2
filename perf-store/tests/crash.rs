//! Crash safety in the style of redb's tests: a child process commits batches continuously and
//! is SIGKILLed at random points; after every kill the store reopens, every batch the child
//! reported committed is there whole, and the buckets agree with the raw samples.
//!
//! The child is this test binary itself, re-run with `PERFOPT_CRASH_RECORDER` set to the data
//! directory. 20 rounds always run; `PERFOPT_SLOW_TESTS=1` runs 200. `PERFOPT_CRASH_SEED` replays
//! a seed printed by a failure.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use perf_core::{
    DecisionContext, FixedPolicy, Method, SampleFilter, SystemState, Timestamp, TransferMetrics,
    TransferPolicy, TransferRequest,
};
use perf_store::{Backend, Batch, Bucket, BucketKey, Granularity, RedbBackend, SeriesKey};

const RECORDER_ENV: &str = "PERFOPT_CRASH_RECORDER";
const BASE_NS: u64 = 1_700_000_000 * 1_000_000_000;
/// Three batches share each second, so buckets are read, merged and replaced across batches.
const BATCH_SPACING_NS: u64 = 333_000_000;

/// How many samples batch `id` holds.
fn batch_len(id: u64) -> usize {
    1 + (id % 7) as usize
}

fn batch_samples(id: u64) -> Vec<TransferMetrics> {
    (0..batch_len(id))
        .map(|i| {
            let size = 1u64 << (10 + (id + i as u64) % 3);
            let req = TransferRequest::new(size);
            let d = FixedPolicy(Method::Grpc).decide(&req, &DecisionContext::idle(Timestamp(0)));
            let mut m = TransferMetrics::new(
                &req,
                &d,
                Method::Grpc,
                5.0 + i as f64,
                Timestamp(BASE_NS + id * BATCH_SPACING_NS + i as u64),
                SystemState::IDLE,
            );
            m.session = id;
            m
        })
        .collect()
}

fn bucket_key(g: Granularity, m: &TransferMetrics) -> BucketKey {
    BucketKey {
        granularity: g,
        start_secs: g.bucket_start(m.started_at.as_nanos() / 1_000_000_000),
        series: SeriesKey::of(m),
    }
}

/// The child: commits batch after batch, each with its samples and the buckets they touch
/// merged with what is stored, and prints each id once its commit has returned.
fn record_forever(dir: &Path) {
    let store = RedbBackend::open(dir).expect("the recorder opens the store");
    let newest = store
        .samples(&SampleFilter::default(), 1)
        .expect("read newest");
    let mut id = newest.first().map_or(0, |m| m.session + 1);
    let mut out = std::io::stdout().lock();
    loop {
        let samples = batch_samples(id);
        let mut touched: BTreeMap<BucketKey, Bucket> = BTreeMap::new();
        for m in &samples {
            for g in [Granularity::Second, Granularity::Minute] {
                let key = bucket_key(g, m);
                let bucket = touched.entry(key).or_insert_with(|| {
                    store
                        .buckets(g, key.start_secs, key.start_secs + 1)
                        .expect("read buckets")
                        .into_iter()
                        .find(|(k, _)| *k == key)
                        .map(|(_, b)| b)
                        .unwrap_or_default()
                });
                bucket.record(m);
            }
        }
        store
            .commit(&Batch {
                samples,
                buckets: touched.into_iter().collect(),
            })
            .expect("commit");
        writeln!(out, "committed {id}").expect("print");
        out.flush().expect("flush");
        id += 1;
    }
}

/// Runs as the recorder when the parent asks for it; a no-op test otherwise.
#[test]
fn recorder_child() {
    if let Some(dir) = std::env::var_os(RECORDER_ENV) {
        record_forever(Path::new(&dir));
    }
}

/// A small deterministic generator (SplitMix64), so a failing round can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Starts the recorder, kills it after `delay`, and returns the ids it reported committed.
fn run_and_kill(dir: &Path, delay: Duration) -> Vec<u64> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "recorder_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(RECORDER_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the recorder");
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| l.strip_prefix("committed ")?.parse::<u64>().ok())
            .collect::<Vec<u64>>()
    });
    std::thread::sleep(delay);
    // `Child::kill` sends SIGKILL on Unix: no destructor, no flush, no clean shutdown.
    child.kill().expect("kill the recorder");
    child.wait().expect("reap the recorder");
    reader.join().expect("read the recorder's output")
}

/// Reopens the store and checks it against everything reported committed so far.
fn verify(dir: &Path, reported: &BTreeSet<u64>, seed: u64, round: u32) {
    let ctx = format!("seed {seed}, round {round}");
    let store = RedbBackend::open(dir).unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
    let samples = store.samples(&SampleFilter::default(), usize::MAX).unwrap();
    let mut per_batch: BTreeMap<u64, usize> = BTreeMap::new();
    let mut per_bucket: BTreeMap<BucketKey, u64> = BTreeMap::new();
    for m in &samples {
        *per_batch.entry(m.session).or_default() += 1;
        for g in [Granularity::Second, Granularity::Minute] {
            *per_bucket.entry(bucket_key(g, m)).or_default() += 1;
        }
    }
    for id in reported {
        assert!(
            per_batch.contains_key(id),
            "{ctx}: committed batch {id} is missing"
        );
    }
    for (id, n) in &per_batch {
        assert_eq!(*n, batch_len(*id), "{ctx}: batch {id} is partial");
    }
    if let Some(max) = per_batch.keys().max() {
        assert_eq!(
            per_batch.len() as u64,
            max + 1,
            "{ctx}: a batch in the middle is missing"
        );
    }
    let mut stored: BTreeMap<BucketKey, u64> = BTreeMap::new();
    for g in [Granularity::Second, Granularity::Minute] {
        for (k, b) in store.buckets(g, 0, u64::MAX).unwrap() {
            stored.insert(k, b.count());
        }
    }
    assert_eq!(
        stored, per_bucket,
        "{ctx}: buckets disagree with the raw samples"
    );
    let report = perf_store::check(dir);
    assert!(report.is_healthy(), "{ctx}: {:?}", report.problems);
}

#[test]
fn killed_recorders_never_lose_or_tear_a_committed_batch() {
    let slow = std::env::var("PERFOPT_SLOW_TESTS").is_ok_and(|v| v == "1");
    let rounds = if slow { 200 } else { 20 };
    let seed = std::env::var("PERFOPT_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_c0de);
    let mut rng = Rng(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut reported = BTreeSet::new();
    let mut killed_mid_run = 0;
    for round in 0..rounds {
        // Mostly kills while committing; now and then during start-up and recovery.
        let delay = Duration::from_millis(if rng.below(5) == 0 {
            rng.below(30)
        } else {
            30 + rng.below(200)
        });
        let ids = run_and_kill(&dir, delay);
        killed_mid_run += u32::from(!ids.is_empty());
        reported.extend(ids);
        verify(&dir, &reported, seed, round);
    }
    assert!(
        killed_mid_run >= rounds / 2,
        "only {killed_mid_run} of {rounds} rounds committed anything before the kill"
    );
    assert!(!reported.is_empty());
}
