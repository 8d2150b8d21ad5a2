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
