//! Every command that reads a file a user names refuses a device or a FIFO at once, with exit
//! code 2 and a message naming the file, instead of reading forever or waiting for a writer.

mod support;

use support::perfopt_within_deadline;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A FIFO at `path`, owner-only (so that a secret's mode check passes and only its kind
/// refuses it).
fn mkfifo(path: &Path) {
    let made = Command::new("mkfifo")
        .args(["-m", "600"])
        .arg(path)
        .status()
        .expect("the mkfifo command (coreutils) runs");
    assert!(made.success(), "mkfifo {} failed", path.display());
}

/// The files no command may read: `/dev/zero` (endless, with a size of 0) and a FIFO nobody
/// writes to.
struct Hostile {
    _dir: tempfile::TempDir,
    root: PathBuf,
    files: Vec<String>,
    good_config: String,
}

fn hostile() -> Hostile {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let fifo = root.join("fifo.toml");
    mkfifo(&fifo);
    let good = root.join("good.toml");
    std::fs::write(&good, "version = 1\n").unwrap();
    Hostile {
        _dir: dir,
        files: vec!["/dev/zero".to_string(), fifo.to_str().unwrap().to_string()],
        good_config: good.to_str().unwrap().to_string(),
        root,
    }
}

fn assert_refused(o: &Output, file: &str, what: &str) {
    let err = support::stderr(o);
    assert_eq!(o.status.code(), Some(2), "{what}: {err}");
    assert!(
        err.contains(file),
        "{what}: the message names {file}: {err}"
    );
    assert!(!err.contains("panicked"), "{what}: {err}");
}

#[test]
fn config_validate_and_diff_refuse_a_device_or_a_fifo_on_either_side() {
    let h = hostile();
    for f in &h.files {
        let o = perfopt_within_deadline(&["config", "validate", f]);
        assert_refused(&o, f, "config validate");
        assert!(
            support::stderr(&o).contains("expected a regular file"),
            "{}",
            support::stderr(&o)
        );
        let o = perfopt_within_deadline(&["config", "diff", f, &h.good_config]);
        assert_refused(&o, f, "config diff, old side");
        let o = perfopt_within_deadline(&["config", "diff", &h.good_config, f]);
        assert_refused(&o, f, "config diff, new side");
    }
}

#[test]
fn decide_refuses_a_device_or_a_fifo_as_config_or_profile() {
    let h = hostile();
    for f in &h.files {
        let o = perfopt_within_deadline(&["decide", "--size", "1KiB", "--config", f]);
        assert_refused(&o, f, "decide --config");
        let o = perfopt_within_deadline(&["decide", "--size", "1KiB", "--profile", f]);
        assert_refused(&o, f, "decide --profile");
    }
}

#[test]
fn doctor_refuses_a_device_or_a_fifo_as_config() {
    let h = hostile();
    let data = h.root.join("data");
    for f in &h.files {
        let o = perfopt_within_deadline(&[
            "doctor",
            "--data-dir",
            data.to_str().unwrap(),
            "--config",
            f,
        ]);
        assert_refused(&o, f, "doctor --config");
    }
}

#[test]
fn run_refuses_a_device_or_a_fifo_as_config_before_it_starts_anything() {
    let h = hostile();
    for (i, f) in h.files.iter().enumerate() {
        let data = h.root.join(format!("run-data-{i}"));
        let o = perfopt_within_deadline(&[
            "run",
            "--duration",
            "1s",
            "--workers",
            "1",
            "--data-dir",
            data.to_str().unwrap(),
            "--config",
            f,
        ]);
        assert_refused(&o, f, "run --config");
        assert!(
            !data.exists(),
            "run stopped before opening its store or spawning a worker"
        );
    }
}

#[test]
fn model_train_refuses_a_device_or_a_fifo_as_dataset() {
    let h = hostile();
    let data = h.root.join("data");
    for f in &h.files {
        let o = perfopt_within_deadline(&[
            "model",
            "train",
            "--data",
            f,
            "--data-dir",
            data.to_str().unwrap(),
        ]);
        assert_refused(&o, f, "model train --data");
    }
}

#[test]
fn worker_refuses_a_device_or_a_fifo_as_secret() {
    let h = hostile();
    for (i, f) in h.files.iter().enumerate() {
        let socket = h.root.join(format!("worker-{i}.sock"));
        let listen = format!("unix:{}", socket.display());
        let o = perfopt_within_deadline(&["worker", "--listen", &listen, "--secret-file", f]);
        assert_refused(&o, f, "worker --secret-file");
    }
}
