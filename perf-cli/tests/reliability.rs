//! Reliability with real processes: a worker killed mid-transfer, and a host killed while holding named segments.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use perf_core::{FixedPolicy, FixedProbe, Method, TransferRequest};
use perfopt::platform::{NamedShm, NamedShmConfig};
use perfopt::transport::grpc::{ClientConfig, Endpoint, WorkerClient};
use perfopt::transport::{Executor, ExecutorConfig, Secret, SegmentPool, SegmentPoolConfig};

mod support;

use support::WorkerChild;

const MIB: usize = 1 << 20;

/// Named segments in /dev/shm owned by process `pid` (the name records the owner).
fn segments_of(pid: u32) -> usize {
    let Ok(entries) = std::fs::read_dir("/dev/shm") else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let parts: Vec<&str> = name.split('-').collect();
            parts.len() == 5 && parts[0] == "perfopt" && parts[2] == pid.to_string()
        })
        .count()
}

fn named_pool() -> SegmentPool {
    let shm = NamedShm::new(NamedShmConfig::default()).unwrap();
    SegmentPool::new(Arc::new(shm), SegmentPoolConfig::default()).unwrap()
}

async fn executor(endpoint: &Endpoint, pool: SegmentPool, secret: Secret) -> Executor {
    let config = ClientConfig {
        call_timeout: Duration::from_secs(5),
        ..ClientConfig::default()
    };
    let client = WorkerClient::connect(endpoint, config).await.unwrap();
    Executor::connect(
        Arc::new(FixedPolicy(Method::ZeroCopy)),
        client,
        Some((pool, secret)),
        Arc::new(FixedProbe::default()),
        ExecutorConfig::default(),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_transfer_fails_within_the_deadline_and_leaks_no_segment() {
    let dir = tempfile::tempdir().unwrap();
    let secret_path = dir.path().join("secret");
    let secret = Secret::generate().unwrap();
    secret.write_file(&secret_path).unwrap();
    let me = std::process::id();
    let before = segments_of(me);

    let pool = named_pool();
    let worker = WorkerChild::start(dir.path(), "a.sock", &secret_path);
    let ex = executor(&worker.endpoint, pool.clone(), secret.clone()).await;
    let data: Vec<u8> = (0..8 * MIB).map(|i| (i % 251) as u8).collect();
    let warm = ex.transfer(&TransferRequest::new(0), &data).await.unwrap();
    assert_eq!(warm.metrics.method, Method::ZeroCopy);

    // Freeze the worker so the next transfer is surely in flight, then kill it.
    worker.signal("STOP");
    let started = Instant::now();
    let request = TransferRequest::new(0);
    let transfer = ex.transfer(&request, &data);
    let kill = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        worker.signal("KILL");
    };
    let (result, ()) = tokio::join!(transfer, kill);
    let waited = started.elapsed();
    match result {
        Err(e) => assert!(e.to_string().contains("failed over gRPC"), "{e}"),
        Ok(out) => panic!("a transfer to a dead worker succeeded: {:?}", out.metrics),
    }
    // Zero-copy's call and the gRPC fallback each have a 5 s deadline.
    assert!(waited < Duration::from_secs(12), "took {waited:?}");
    drop(ex);
    drop(worker);

    // A restarted worker takes the next transfer, from the same pool.
    let again = WorkerChild::start(dir.path(), "b.sock", &secret_path);
    let ex = executor(&again.endpoint, pool.clone(), secret).await;
    let out = ex.transfer(&TransferRequest::new(0), &data).await.unwrap();
    assert_eq!(out.metrics.method, Method::ZeroCopy);
    assert_eq!(
        out.ack.checksum,
        perfopt::transport::checksum::digest(&data, out.verified)
    );
    drop(ex);

    // Every segment the pool made is gone with it: nothing is left in /dev/shm.
    assert!(segments_of(me) > before, "the pool kept its free segment");
    drop(pool);
    assert_eq!(segments_of(me), before, "a segment leaked");
}

fn perfopt_run(args: &[&str], data_dir: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_perfopt"))
        .arg("run")
        .args(args)
        .env("PERFOPT_DATA_DIR", data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("perfopt run starts")
}

#[test]
fn a_host_killed_while_holding_named_segments_is_swept_at_the_next_start() {
    let data = tempfile::tempdir().unwrap();
    let mut host = perfopt_run(
        &[
            "--backend",
            "named",
            "--workload",
            "large",
            "--duration",
            "60s",
            "--workers",
            "1",
        ],
        data.path(),
    );
    let pid = host.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    while segments_of(pid) == 0 {
        assert!(
            Instant::now() < deadline,
            "the host never made a named segment"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    host.kill().unwrap();
    host.wait().unwrap();
    let left = segments_of(pid);
    assert!(left > 0, "a killed host leaves its named segments behind");

    let next = perfopt_run(
        &["--duration", "200ms", "--workers", "1", "--json", "-"],
        data.path(),
    );
    let out = next.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let json_start = text.find("\n{").map_or(0, |i| i + 1);
    let report: serde_json::Value = serde_json::from_str(&text[json_start..]).unwrap();
    assert!(
        report["swept_segments"].as_u64().unwrap() >= left as u64,
        "{report}"
    );
    assert_eq!(segments_of(pid), 0, "the next start swept every segment");
    assert!(report["transfers"].as_u64().unwrap() > 0);
}

/// The children of process `pid`, from /proc.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    // The parent pid is the second field after the command name's ')'.
                    let rest = stat.rsplit_once(')')?.1;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

#[test]
fn a_worker_killed_during_a_run_is_replaced_and_no_transfer_is_lost() {
    let data = tempfile::tempdir().unwrap();
    let host = perfopt_run(
        &["--duration", "6s", "--workers", "1", "--json", "-"],
        data.path(),
    );
    let pid = host.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    let worker = loop {
        if let Some(w) = children_of(pid).first() {
            break *w;
        }
        assert!(Instant::now() < deadline, "the run never started a worker");
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(1500));
    let killed = Command::new("kill")
        .arg("-KILL")
        .arg(worker.to_string())
        .status()
        .unwrap();
    assert!(killed.success());

    let report = support::run_report(host);
    assert_eq!(report["failed"], 0, "{report}");
    assert!(
        report["workers_restarted"].as_u64().unwrap() >= 1,
        "{report}"
    );
    let transfers = report["transfers"].as_u64().unwrap();
    assert!(transfers > 0);
    // A transfer the dead worker carried is recorded as a failed attempt and retried; every
    // attempt reaches the store.
    let attempts: u64 = report["failed_attempts"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|kinds| kinds.as_object().unwrap().values())
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(report["retried"].as_u64(), Some(attempts), "{report}");
    assert_eq!(
        report["store"]["recorded"].as_u64(),
        Some(transfers + attempts),
        "{report}"
    );
}
