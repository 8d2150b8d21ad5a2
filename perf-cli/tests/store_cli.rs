//! The store commands against what a user's data directory may hold: a FIFO, a directory or a
//! dangling link in place of the store, an immutable store, a read-only filesystem; and their
//! durations, pools and output into a closed pipe (of any command).

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use perf_core::{
    DecisionContext, FailureKind, FixedPolicy, Method, MetricsSink, SystemState, Timestamp,
    TransferMetrics, TransferPolicy, TransferRequest,
};
use perfopt::store::{RedbBackend, SinkConfig, StoreSink};
use serde_json::{Value, json};
use support::{DEADLINE, perfopt, perfopt_within_deadline, stderr, stdout};

/// A sink over a new store in `data`, and the time now in seconds.
fn open_sink(data: &Path) -> (StoreSink, u64) {
    let backend = Arc::new(RedbBackend::open(data).unwrap());
    let sink = StoreSink::new(backend, SinkConfig::default()).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    (sink, now)
}

/// Records `n` transfers of the default pool into a new store in `data`, one a second, the last
/// one now.
fn fill_store(data: &Path, n: u64) {
    let (sink, now) = open_sink(data);
    let req = TransferRequest::new(4096);
    let decision = FixedPolicy(Method::Grpc).decide(&req, &DecisionContext::idle(Timestamp(0)));
    for i in 0..n {
        let m = TransferMetrics::new(
            &req,
            &decision,
            Method::Grpc,
            100.0 + i as f64,
            Timestamp::from_secs(now - (n - 1 - i)),
            SystemState::IDLE,
        );
        sink.record(&m);
    }
    let stats = sink.close().unwrap();
    assert_eq!(stats.committed, n, "{stats:?}");
}

/// Records into a new store in `data`, over the last minute: 100 delivered gRPC transfers of
/// 100..199 us and 10 delivered zero-copy ones of 50 us, and failed ones with latencies far
/// above any delivered one (3 gRPC timeouts, 1 gRPC refusal, 2 zero-copy unavailable), each
/// failed one queued 250 us.
fn fill_store_with_failures(data: &Path) {
    let (sink, now) = open_sink(data);
    let req = TransferRequest::new(4096);
    let at = |i: u64| Timestamp(Timestamp::from_secs(now - 30).0 + i * 1_000_000);
    let transfer = |method: Method, latency: f64, i: u64| {
        let decision = FixedPolicy(method).decide(&req, &DecisionContext::idle(Timestamp(0)));
        TransferMetrics::new(&req, &decision, method, latency, at(i), SystemState::IDLE)
    };
    for i in 0..100 {
        sink.record(&transfer(Method::Grpc, 100.0 + i as f64, i));
    }
    for i in 0..10 {
        sink.record(&transfer(Method::ZeroCopy, 50.0, 200 + i));
    }
    for (i, (method, kind)) in [
        (Method::Grpc, FailureKind::Timeout),
        (Method::Grpc, FailureKind::Timeout),
        (Method::Grpc, FailureKind::Timeout),
        (Method::Grpc, FailureKind::Refused),
        (Method::ZeroCopy, FailureKind::Unavailable),
        (Method::ZeroCopy, FailureKind::Unavailable),
    ]
    .into_iter()
    .enumerate()
    {
        let mut m = transfer(method, 30_000_000.0, 300 + i as u64);
        m.fail(kind);
        m.queued_us = 250.0;
        sink.record(&m);
    }
    let stats = sink.close().unwrap();
    assert_eq!(stats.committed, 116, "{stats:?}");
}

fn store_path(data: &Path) -> PathBuf {
    data.join("metrics.redb")
}

/// Runs `command` (a setup step of a test), failing loudly with what it said.
fn setup(command: &mut Command, why: &str) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{why}: cannot run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{why}: {command:?} failed, so this test cannot set up its scenario on this machine: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes a file immutable (`chattr +i`) until dropped, also when the test fails.
struct Immutable(PathBuf);

impl Immutable {
    fn set(path: &Path) -> Immutable {
        setup(
            Command::new("chattr").arg("+i").arg(path),
            "an immutable store needs chattr (e2fsprogs), root, and a filesystem with \
             immutable files (ext4, or tmpfs on Linux 6.0 or later)",
        );
        Immutable(path.to_path_buf())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

/// A read-only bind mount of a directory over itself, unmounted when dropped, also when the
/// test fails.
struct ReadOnlyMount(PathBuf);

impl ReadOnlyMount {
    fn set(dir: &Path) -> ReadOnlyMount {
        let why = "a read-only filesystem needs root and bind mounts (mount --bind, then \
                   mount -o remount,bind,ro)";
        setup(Command::new("mount").arg("--bind").arg(dir).arg(dir), why);
        let mount = ReadOnlyMount(dir.to_path_buf());
        setup(
            Command::new("mount")
                .args(["-o", "remount,bind,ro"])
                .arg(dir),
            why,
        );
        assert!(
            std::fs::write(dir.join("probe"), b"x").is_err(),
            "{} is still writable after a read-only remount",
            dir.display()
        );
        mount
    }
}

impl Drop for ReadOnlyMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn doctor_names_what_is_in_place_of_the_store_and_never_blocks_on_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let store = store_path(&data);
    let d = data.to_str().unwrap();
    let scenarios: [(&str, &dyn Fn()); 3] = [
        ("a FIFO", &|| {
            setup(
                Command::new("mkfifo").arg(&store),
                "a FIFO needs the mkfifo command (coreutils)",
            )
        }),
        ("a directory", &|| std::fs::create_dir(&store).unwrap()),
        ("a symbolic link to nothing", &|| {
            std::os::unix::fs::symlink(data.join("gone.redb"), &store).unwrap()
        }),
    ];
    for (what, make) in scenarios {
        make();
        let o = perfopt_within_deadline(&["doctor", "--data-dir", d]);
        assert_eq!(o.status.code(), Some(1), "{what}: {}", stdout(&o));
        let expected = format!(
            "metrics store {} is {what}, expected a regular file",
            store.display()
        );
        assert!(stderr(&o).contains(&expected), "{what}: {}", stderr(&o));
        for command in ["stats", "export"] {
            let o = perfopt_within_deadline(&[command, "--data-dir", d]);
            assert_eq!(o.status.code(), Some(1), "{command} on {what}");
            assert!(stderr(&o).contains(&expected), "{command}: {}", stderr(&o));
        }
        if store.is_dir() {
            std::fs::remove_dir(&store).unwrap();
        } else {
            std::fs::remove_file(&store).unwrap();
        }
    }
}

#[test]
fn an_immutable_store_is_reported_unwritable_by_doctor_and_still_read_by_stats_and_export() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fill_store(&data, 20);
    let d = data.to_str().unwrap();
    let _immutable = Immutable::set(&store_path(&data));
    let o = perfopt_within_deadline(&["doctor", "--data-dir", d]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains(&format!(
            "metrics store {} cannot be opened for writing",
            store_path(&data).display()
        )),
        "{}",
        stderr(&o)
    );
    assert!(
        stdout(&o).contains("metrics store opens for reading (stats, export): yes"),
        "{}",
        stdout(&o)
    );
    let stats = support::json(&["stats", "--data-dir", d, "--json"]);
    assert_eq!(stats["total_transfers"], 20, "{stats}");
    let export = perfopt(&["export", "--data-dir", d]);
    assert!(export.status.success(), "{}", stderr(&export));
    assert_eq!(stdout(&export).lines().count(), 20);
}

#[test]
fn on_a_read_only_filesystem_doctor_reports_what_run_needs_and_stats_and_export_work() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fill_store(&data, 20);
    let d = data.to_str().unwrap();
    let _mount = ReadOnlyMount::set(&data);
    let o = perfopt_within_deadline(&["doctor", "--data-dir", d]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("data directory {d} is not writable")),
        "{err}"
    );
    assert!(err.contains("cannot be opened for writing"), "{err}");
    assert!(!err.contains("cannot be opened for reading"), "{err}");
    let stats = support::json(&["stats", "--data-dir", d, "--json"]);
    assert_eq!(stats["total_transfers"], 20, "{stats}");
    let export = perfopt(&["export", "--data-dir", d, "--format", "csv"]);
    assert!(export.status.success(), "{}", stderr(&export));
    assert_eq!(stdout(&export).lines().count(), 21, "a header and 20 rows");
}

#[test]
fn since_takes_days_and_every_duration_flag_one_grammar() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fill_store(&data, 20);
    let d = data.to_str().unwrap();
    for since in ["7d", "30d", "168h", "1h 30m"] {
        let stats = support::json(&["stats", "--data-dir", d, "--since", since, "--json"]);
        assert_eq!(stats["total_transfers"], 20, "--since {since}: {stats}");
        let export = perfopt(&["export", "--data-dir", d, "--since", since]);
        assert!(export.status.success(), "{}", stderr(&export));
        assert_eq!(stdout(&export).lines().count(), 20, "--since {since}");
    }
    let bad = perfopt(&["stats", "--data-dir", d, "--since", "3651d"]);
    assert_eq!(bad.status.code(), Some(2));
    assert_eq!(
        stderr(&bad).trim(),
        "error: --since \"3651d\" is out of range, expected 1s to 3650d"
    );
    let bad = perfopt(&["stats", "--data-dir", d, "--granularity", "1500ms"]);
    assert_eq!(
        stderr(&bad).trim(),
        "error: --granularity \"1500ms\" is out of range, expected whole seconds from 1s to 1h"
    );
    let kept = support::json(&[
        "cleanup",
        "--data-dir",
        d,
        "--keep-samples",
        "7d",
        "--keep-seconds",
        "36h",
        "--json",
    ]);
    assert_eq!(kept["total"], 0);
    let bad = perfopt(&["run", "--duration", "2d"]);
    assert_eq!(
        stderr(&bad).trim(),
        "error: --duration \"2d\" is out of range, expected 1ms to 24h"
    );
    let help = stdout(&perfopt(&["stats", "--help"]));
    assert!(help.contains("7d is 168h"), "{help}");
}

#[test]
fn an_unknown_pool_is_an_error_listing_the_pools_the_store_knows() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fill_store(&data, 5);
    let d = data.to_str().unwrap();
    let o = perfopt(&["stats", "--data-dir", d, "--pool", "nosuch"]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert_eq!(
        stderr(&o).trim(),
        format!(
            "error: unknown --pool \"nosuch\": the store {} holds no transfer of it, only of: default",
            store_path(&data).display()
        )
    );
    let known = support::json(&["stats", "--data-dir", d, "--pool", "default", "--json"]);
    assert_eq!(known["total_transfers"], 5);
    // A known pool with nothing in the range is zero transfers, not an error.
    let quiet = perfopt(&[
        "stats",
        "--data-dir",
        d,
        "--pool",
        "default",
        "--since",
        "1s",
    ]);
    assert!(quiet.status.success(), "{}", stderr(&quiet));
}

/// Spawns `perfopt args` with standard output piped, reads one line, closes the pipe and
/// returns how the command ended.
fn read_one_line_and_close(args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_perfopt"))
        .args(args)
        .env_remove("PERFOPT_DATA_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the perfopt binary runs");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(!line.is_empty(), "{args:?} printed nothing");
    // The reader (and with it the pipe) is dropped here, as `head -1` exits.
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("{args:?} still ran {DEADLINE:?} after its reader left");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_closed_pipe_ends_export_and_stats_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Far more than a pipe holds (64 KiB) in every format below.
    fill_store(&data, 3000);
    let d = data.to_str().unwrap();
    for args in [
        vec!["export", "--data-dir", d],
        vec!["export", "--data-dir", d, "--format", "csv"],
        vec![
            "stats",
            "--data-dir",
            d,
            "--granularity",
            "1s",
            "--since",
            "2h",
        ],
    ] {
        let (status, err) = read_one_line_and_close(&args);
        assert_ne!(status.code(), Some(101), "{args:?} panicked: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(status.success(), "{args:?} ended with {status}: {err}");
        assert_eq!(err, "", "{args:?} ends quietly");
    }
}

#[test]
fn a_closed_pipe_ends_quietly_also_for_commands_that_print_line_by_line() {
    for args in [vec!["config", "default"], vec!["decide", "--size", "1KiB"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        // Nobody reads: the first write fails with a broken pipe.
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_perfopt"))
            .args(&args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(101), "{args:?} panicked: {err}");
        assert!(
            out.status.success(),
            "{args:?} ended with {}: {err}",
            out.status
        );
        assert_eq!(err, "", "{args:?} ends quietly");
    }
}

#[test]
fn stats_counts_failures_per_method_and_kind_and_keeps_them_out_of_the_percentiles() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fill_store_with_failures(&data);
    let d = data.to_str().unwrap();
    let stats = support::json(&["stats", "--data-dir", d, "--json"]);
    assert_eq!(stats["total_transfers"], 116, "{stats}");
    assert_eq!(stats["delivered"], 110);
    assert_eq!(stats["failed"], 6);
    assert_eq!(
        stats["failures_by_kind"],
        json!({"unavailable": 2, "timeout": 3, "refused": 1})
    );
    // The failed transfers' 30 s latencies move no percentile: the largest delivered is 199 us.
    let latency = &stats["latency_us"];
    assert_eq!(latency["count"], 110);
    assert_eq!(latency["max"], 199.0);
    assert!(latency["p99"].as_f64().unwrap() <= 199.0, "{latency}");
    assert!(latency["p999"].as_f64().unwrap() <= 199.0, "{latency}");
    assert_eq!(stats["queued_us"]["count"], 116);
    assert_eq!(stats["queued_us"]["max"], 250.0);
    let by_method: Vec<&Value> = stats["by_method"].as_array().unwrap().iter().collect();
    let row = |name: &str| {
        *by_method
            .iter()
            .find(|r| r["method"] == name)
            .unwrap_or_else(|| panic!("no {name} row in {stats}"))
    };
    let grpc = row("grpc");
    assert_eq!(
        (&grpc["transfers"], &grpc["delivered"], &grpc["failed"]),
        (&json!(104), &json!(100), &json!(4))
    );
    assert_eq!(
        grpc["failures_by_kind"],
        json!({"timeout": 3, "refused": 1})
    );
    assert_eq!(grpc["latency_us"]["max"], 199.0);
    let zero_copy = row("zero_copy");
    assert_eq!(
        (
            &zero_copy["transfers"],
            &zero_copy["delivered"],
            &zero_copy["failed"]
        ),
        (&json!(12), &json!(10), &json!(2))
    );
    assert_eq!(zero_copy["failures_by_kind"], json!({"unavailable": 2}));
    assert_eq!(zero_copy["latency_us"]["p99"], 50.0);
    let buckets = stats["buckets"].as_array().unwrap();
    let sum = |field: &str| {
        buckets
            .iter()
            .map(|b| b[field].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(
        (sum("count"), sum("delivered"), sum("failed")),
        (116, 110, 6)
    );
    assert!(
        buckets
            .iter()
            .all(|b| b["latency_us"]["p99"].as_f64().unwrap() <= 199.0)
    );

    // The same in text: a failed count per method and per bucket, and the kinds.
    let text = stdout(&perfopt(&["stats", "--data-dir", d]));
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with("116 transfers in the last 1h (")
            && first.contains(": 110 delivered, 6 failed;"),
        "{text}"
    );
    assert!(
        text.contains("failures by kind: unavailable 2, timeout 3, refused 1"),
        "{text}"
    );
    let method_row = |name: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} row in {text}"))
            .split_whitespace()
            .take(4)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(method_row("grpc"), "grpc 104 100 4");
    assert_eq!(method_row("zero_copy"), "zero_copy 12 10 2");
    assert!(text.contains("failures: timeout 3, refused 1"), "{text}");
    assert!(text.contains("failures: unavailable 2"), "{text}");
    assert!(!text.contains("30.0 s") && !text.contains("30 s"), "{text}");
}

#[test]
fn export_carries_the_failure_kind_and_the_time_queued() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fill_store_with_failures(&data);
    let d = data.to_str().unwrap();
    let jsonl = perfopt(&["export", "--data-dir", d]);
    assert!(jsonl.status.success(), "{}", stderr(&jsonl));
    let records: Vec<Value> = stdout(&jsonl)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 116);
    let failed: Vec<&Value> = records.iter().filter(|r| r["success"] == false).collect();
    assert_eq!(failed.len(), 6);
    assert_eq!(failed[0]["failure"], "timeout");
    assert_eq!(failed[0]["queued_us"], 250.0);
    assert_eq!(failed[5]["failure"], "unavailable");
    assert!(records[0]["failure"].is_null(), "{}", records[0]);

    let csv = stdout(&perfopt(&["export", "--data-dir", d, "--format", "csv"]));
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (success, failure, queued) = (column("success"), column("failure"), column("queued_us"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 116);
    assert!(rows.iter().all(|r| r.len() == header.len()));
    let kinds: Vec<&str> = rows
        .iter()
        .filter(|r| r[success] == "false")
        .map(|r| r[failure])
        .collect();
    assert_eq!(
        kinds,
        [
            "timeout",
            "timeout",
            "timeout",
            "refused",
            "unavailable",
            "unavailable"
        ]
    );
    assert!(
        rows.iter()
            .filter(|r| r[success] == "true")
            .all(|r| r[failure].is_empty())
    );
    assert_eq!(rows[110][queued], "250");
}

/// A `perfopt run` child recording into a data directory; killed when dropped, also when the
/// test fails.
struct RunningHost(std::process::Child);

impl Drop for RunningHost {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn while_perfopt_run_holds_the_store_stats_and_export_read_it_and_a_writer_is_told_who_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let store = store_path(&data);
    let holder_file = perfopt::store::db::holder_file(&store);
    let mut host = RunningHost(
        Command::new(env!("CARGO_BIN_EXE_perfopt"))
            .args([
                "run",
                "--duration",
                "120s",
                "--workers",
                "1",
                "--data-dir",
                d,
            ])
            .env_remove("PERFOPT_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("perfopt run starts"),
    );
    let pid = host.0.id();
    // The run holds the store once its holder file is there, and records from then on.
    let deadline = Instant::now() + Duration::from_secs(60);
    let stats = loop {
        assert!(
            host.0.try_wait().unwrap().is_none(),
            "perfopt run ended before the test could read its store"
        );
        assert!(
            Instant::now() < deadline,
            "perfopt run recorded nothing into {d} within 60 s"
        );
        if holder_file.is_file() {
            let stats = perfopt_within_deadline(&["stats", "--data-dir", d, "--json"]);
            assert!(
                stats.status.success(),
                "stats while held: {}",
                stderr(&stats)
            );
            let stats: Value = serde_json::from_slice(&stats.stdout).unwrap();
            if stats["total_transfers"].as_u64().unwrap() > 0 {
                break stats;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(stats["delivered"].as_u64().unwrap() > 0, "{stats}");
    let text = perfopt_within_deadline(&["stats", "--data-dir", d]);
    assert!(text.status.success(), "{}", stderr(&text));
    assert!(
        stdout(&text).contains(" transfers in the last 1h ("),
        "{}",
        stdout(&text)
    );
    let export = perfopt_within_deadline(&["export", "--data-dir", d]);
    assert!(
        export.status.success(),
        "export while held: {}",
        stderr(&export)
    );
    assert!(stdout(&export).lines().count() > 0);

    // A command that writes is refused, naming the run and how to reach it.
    let cleanup = perfopt_within_deadline(&["cleanup", "--data-dir", d]);
    assert_eq!(cleanup.status.code(), Some(1), "{}", stdout(&cleanup));
    let err = stderr(&cleanup);
    let expected = format!(
        "metrics store {} is held by process {pid} (perfopt run --duration 120s --workers 1 --data-dir {d}) since ",
        store.display()
    );
    assert!(err.contains(&expected), "{err}");
    assert!(
        err.trim_end()
            .ends_with("; stop it, or ask it (its HTTP API comes with `perfopt serve`)"),
        "{err}"
    );

    // Killed, the run leaves its holder file behind; it names a dead process and is ignored.
    host.0.kill().unwrap();
    host.0.wait().unwrap();
    assert!(holder_file.is_file(), "a killed run cannot remove its file");
    let cleanup = perfopt_within_deadline(&["cleanup", "--data-dir", d]);
    assert!(cleanup.status.success(), "{}", stderr(&cleanup));
    assert!(
        !holder_file.exists(),
        "the next writer replaced and removed it"
    );
}
