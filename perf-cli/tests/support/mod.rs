//! Running the `perfopt` binary from the integration tests, as a user would.

// Each test binary uses the helpers it needs.
#![allow(dead_code)]

use std::process::{Command, Output};

use serde_json::Value;

/// Runs `perfopt` with `args`, without a data directory from the environment.
pub(crate) fn perfopt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_perfopt"))
        .args(args)
        .env_remove("PERFOPT_DATA_DIR")
        .output()
        .expect("the perfopt binary runs")
}

/// Standard output as text.
pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// Standard error as text.
pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// Runs `perfopt` with `args`, which must succeed, and reads its JSON output.
pub(crate) fn json(args: &[&str]) -> Value {
    let o = perfopt(args);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}
