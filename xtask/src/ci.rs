//! `cargo xtask ci`: the format check, clippy and the tests (as `cargo xtask test` runs them), in
//! order, stopping at the first failure.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The cargo invocations CI runs, in order.
const STEPS: &[&[&str]] = &[
    &["fmt", "--all", "--", "--check"],
    &[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ],
];

/// Runs every step in the workspace at `root`; the first one that fails ends the run with an error.
pub(crate) fn run(root: &Path) -> Result<()> {
    for args in STEPS {
        let shown = format!("cargo {}", args.join(" "));
        println!("==> {shown}");
        let status = Command::new(crate::cargo())
            .args(*args)
            .current_dir(root)
            .status()
            .with_context(|| format!("could not start `{shown}`"))?;
        if !status.success() {
            bail!("`{shown}` failed, expected success, got {status}");
        }
    }
    crate::test::run_tests(root)?;
    println!("ci: all steps passed");
    Ok(())
}
