//! `perfopt worker` run as a process: what it refuses before it listens.

mod support;

use std::process::Command;

use support::{perfopt, stderr, stdout};

/// A pid that is not alive: the child of a process that has already been waited for.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().expect("`true` runs");
    let pid = child.id();
    child.wait().expect("`true` exits");
    pid
}

#[test]
fn a_dead_peer_at_start_is_bad_input_and_nothing_is_bound() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("w.sock");
    let pid = dead_pid();
    let listen = format!("unix:{}", socket.display());
    let o = perfopt(&[
        "worker",
        "--listen",
        &listen,
        "--peer-pid",
        &pid.to_string(),
    ]);
    assert_eq!(o.status.code(), Some(2), "stderr: {}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("--peer-pid {pid}")),
        "the message does not name the pid: {}",
        stderr(&o)
    );
    assert!(
        !stdout(&o).contains("listening"),
        "it listened: {}",
        stdout(&o)
    );
    assert!(
        !socket.exists(),
        "a socket was bound at {}",
        socket.display()
    );
}

/// A host spawning `perfopt worker` and calling it gets the payload's checksum back, inline for
/// a small payload sent inline and for a large one sent by reference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_answers_a_call_with_the_payloads_checksum() {
    use std::sync::Arc;

    use perf_core::{FixedPolicy, Method, TransferPolicy, TransferRequest};
    use perfopt::transport::WorkerCommand;
    use perfopt::transport::grpc::checksum;
    use perfopt::transport::{Host, ReplyMethod, Secret, SegmentPool, SegmentPoolConfig};

    for method in [Method::Grpc, Method::ZeroCopy] {
        let policy: Arc<dyn TransferPolicy> = Arc::new(FixedPolicy(method));
        let pool = SegmentPool::new(
            Arc::new(perfopt::platform::MemfdShm::default()),
            SegmentPoolConfig::default(),
        )
        .unwrap();
        let host = Host::builder(policy)
            .zero_copy(pool)
            .secret(Secret::generate().unwrap())
            .spawn(WorkerCommand::perfopt(env!("CARGO_BIN_EXE_perfopt")), 1)
            .start()
            .await
            .unwrap();
        let data: Vec<u8> = (0..(3 << 20)).map(|i: u32| (i % 251) as u8).collect();
        let reply = host
            .call(&TransferRequest::new(data.len() as u64), &data)
            .await
            .unwrap();
        assert_eq!(reply.outcome().metrics.method, method);
        assert_eq!(reply.metrics().method, ReplyMethod::Inline);
        assert_eq!(reply.format(), "xxh3-64");
        assert_eq!(reply.bytes(), checksum(&data).to_le_bytes());
        host.shutdown().await;
    }
}
