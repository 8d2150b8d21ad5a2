//! A real `perfopt worker` against another process of the same user that abuses it: more idle
//! connections than the worker may hold open files, and segments left mapped after their host
//! released them.

#![cfg(target_os = "linux")]

mod support;

use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use perf_core::{PlatformShm, ShmSegment};
use perfopt::platform::{MemfdShm, raise_open_file_limit};
use perfopt::transport::grpc::{ClientConfig, Endpoint, WorkerClient, checksum};
use perfopt::transport::reader::now_unix_ms;
use perfopt::transport::{Reference, Secret};
use support::WorkerChild;

const MIB: usize = 1 << 20;

/// CPU time (user + system) process `pid` has used, in clock ticks (1/100 s on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name and state.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Shared memory resident in process `pid`, in bytes (`RssShmem` of /proc/PID/status).
fn resident_shared(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("RssShmem:"))
        .expect("the kernel reports RssShmem");
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

/// A worker serving this process, with a fresh secret, limited to `open_files` when given.
fn worker(dir: &tempfile::TempDir, open_files: Option<u32>) -> (WorkerChild, Secret) {
    let secret = Secret::generate().unwrap();
    let path = dir.path().join("secret");
    secret.write_file(&path).unwrap();
    let worker = WorkerChild::start_with(dir.path(), "w.sock", &path, open_files);
    (worker, secret)
}

fn filled(shm: &MemfdShm, len: usize, seed: u8) -> Box<dyn ShmSegment> {
    let mut segment = shm.create(len).unwrap();
    for (i, b) in segment.as_mut_slice().iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31).wrapping_add(seed);
    }
    segment
}

fn reference(secret: &Secret, segment: &dyn ShmSegment, id: u64) -> Reference {
    let mut reference = Reference {
        transfer_id: id,
        segment: segment.id().clone(),
        segment_inode: segment.inode(),
        segment_len: segment.len() as u64,
        offset: 0,
        length: segment.len() as u64,
        format: "raw".to_owned(),
        expires_unix_ms: now_unix_ms() + 60_000,
        token: [0; 32],
    };
    reference.sign(secret);
    reference
}

/// Connects as a host does, and carries one inline and one zero-copy transfer, each within the
/// client's deadlines.
async fn transfer_as_a_host(endpoint: &Endpoint, secret: &Secret) {
    let client = WorkerClient::connect(endpoint, ClientConfig::default())
        .await
        .expect("the host connects");
    let peer = client.negotiate().await.expect("negotiation completes");
    assert!(peer.zero_copy);
    let data = vec![5u8; MIB];
    let ack = client
        .send_inline_slice(1, &data, "raw")
        .await
        .expect("an inline transfer completes");
    assert_eq!(ack.checksum, checksum(&data));
    let shm = MemfdShm::default();
    let segment = filled(&shm, MIB, 3);
    let ack = client
        .send_reference(&reference(secret, segment.as_ref(), 2))
        .await
        .expect("a zero-copy transfer completes");
    assert_eq!(ack.checksum, checksum(segment.as_slice()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eleven_hundred_idle_connections_neither_lock_the_host_out_nor_spin_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    // The default soft limit of many systems: fewer open files than the connections below.
    let (worker, secret) = worker(&dir, Some(1_024));
    let Endpoint::Unix(socket) = worker.endpoint.clone() else {
        panic!("the worker listens on a unix socket");
    };
    // A host connected before the attack keeps working, and so does one that comes after.
    let early = WorkerClient::connect(&worker.endpoint, ClientConfig::default())
        .await
        .unwrap();
    early.negotiate().await.unwrap();

    let limit = raise_open_file_limit().unwrap_or(0);
    assert!(
        limit > 1_200,
        "this test needs 1,200 open files and may have only {limit}"
    );
    // Connections that never send the HTTP/2 preface, more than the worker's default soft
    // limit of 1,024 open files.
    let idle: Vec<UnixStream> = tokio::task::spawn_blocking(move || {
        (0..1_100)
            .map(|_| UnixStream::connect(&socket).expect("an idle connection"))
            .collect()
    })
    .await
    .unwrap();

    let pid = worker.child.id();
    let started = (Instant::now(), cpu_ticks(pid));
    transfer_as_a_host(&worker.endpoint, &secret).await;
    let data = vec![9u8; 64 << 10];
    let ack = early.send_inline_slice(3, &data, "raw").await.unwrap();
    assert_eq!(ack.checksum, checksum(&data));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (elapsed, ticks) = (started.0.elapsed(), cpu_ticks(pid) - started.1);
    // A worker spinning on a failed accept burns a whole core: 100 ticks a second.
    let allowed = elapsed.as_secs_f64() * 100.0 * 0.3;
    assert!(
        (ticks as f64) < allowed,
        "the worker used {ticks} ticks of CPU in {elapsed:?} with idle connections open"
    );
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_memory_a_host_released_does_not_stay_resident_in_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let (worker, secret) = worker(&dir, None);
    let pid = worker.child.id();
    let client = WorkerClient::connect(&worker.endpoint, ClientConfig::default())
        .await
        .unwrap();
    client.negotiate().await.unwrap();
    let shm = Arc::new(MemfdShm::default());
    let baseline = resident_shared(pid);
    // Twenty segments alive at once, as a host's pool holds them, then all released.
    let mut segments = Vec::new();
    for round in 0..20u8 {
        let segment = filled(&shm, 64 * MIB, round);
        let ack = client
            .send_reference(&reference(&secret, segment.as_ref(), u64::from(round)))
            .await
            .unwrap();
        assert_eq!(ack.checksum, checksum(segment.as_slice()));
        segments.push(segment);
    }
    let peak = resident_shared(pid);
    assert!(
        peak >= baseline + 10 * 64 * MIB as u64,
        "the worker never had the segments resident ({} MiB)",
        (peak - baseline) >> 20
    );
    drop(segments);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut resident = resident_shared(pid);
    while resident > baseline + 64 * MIB as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        resident = resident_shared(pid);
    }
    assert!(
        resident <= baseline + 64 * MIB as u64,
        "{} MiB of released segments stay resident in the worker",
        (resident - baseline) >> 20
    );
}
