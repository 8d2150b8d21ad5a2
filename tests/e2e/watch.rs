//! Hot reload of a watched configuration file: valid versions swap in, broken ones never do.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use perfopt::core::ReasonCode;
use perfopt::{Method, Name, Optimizer, ReloadEvent, TransferRequest};

const MIB: u64 = 1 << 20;

fn next_event(rx: &mpsc::Receiver<String>) -> String {
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the watcher reported nothing within 20 s")
}

#[test]
fn a_changed_file_is_applied_and_a_broken_one_is_rejected_without_effect() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("perfopt.toml");
    std::fs::write(&path, "version = 1\n[pools.ml]\nthreshold = \"32MiB\"\n").unwrap();
    let (tx, rx) = mpsc::channel();
    let tx = Arc::new(std::sync::Mutex::new(tx));
    let optimizer = Optimizer::builder()
        .probe(Arc::new(perfopt::core::FixedProbe::default()))
        .config_file(&path)
        .watch(Duration::from_millis(20))
        .on_reload(move |e| {
            let line = match e {
                ReloadEvent::Applied { version } => format!("applied {version}"),
                ReloadEvent::Rejected { error } => format!("rejected {error}"),
            };
            let _ = tx.lock().unwrap().send(line);
        })
        .build()
        .unwrap();
    let ml = Name::new("ml").unwrap();
    let req = TransferRequest::new(16 * MIB).with_pool(ml);
    let before = optimizer.controller().preview(&req, &optimizer.context());
    assert_eq!(before.method, Method::Grpc);
    assert_eq!(before.reason.code(), ReasonCode::BelowThreshold);

    std::fs::write(&path, "version = 1\n[pools.ml]\nthreshold = \"8MiB\"\n").unwrap();
    assert_eq!(next_event(&rx), "applied 2");
    let after = optimizer.controller().preview(&req, &optimizer.context());
    assert_eq!(after.method, Method::ZeroCopy);
    assert_eq!(after.policy_version, 2);

    std::fs::write(
        &path,
        "version = 1\n[pools.ml]\nthreshold = \"8MiB\"\nfloor = \"64MiB\"\ngoal = 3\n",
    )
    .unwrap();
    let event = next_event(&rx);
    assert!(event.starts_with("rejected"), "{event}");
    assert!(event.contains("pools.ml.goal"), "{event}");
    assert_eq!(optimizer.controller().version(), 2);
    let still = optimizer.controller().preview(&req, &optimizer.context());
    assert_eq!((still.method, still.policy_version), (Method::ZeroCopy, 2));
}
