//! The venv of the Python worker package, made by the project's own script
//! (`python/setup_venv.py`); shared by the facade's end-to-end tests and the CLI's tests.
//!
//! It needs `python3` with its `venv` and `pip` modules and the package registry (the first run
//! installs grpcio, numpy and xxhash into the venv); without them a test fails and says what is
//! missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository's root: the first ancestor of the crate's directory holding the Python
/// worker's venv script.
pub(crate) fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|dir| dir.join("python/setup_venv.py").exists())
        .expect("the crate lies inside the perfopt repository")
}

/// The venv's python, made or brought up to date once per test run by the project's script.
pub(crate) fn venv_python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-venv");
        let script = repo().join("python/setup_venv.py");
        let out = Command::new("python3")
            .arg(&script)
            .arg("--venv")
            .arg(&venv)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "the Python worker's tests need python3 on PATH (Debian: apt-get install \
                     python3 python3-venv python3-pip); running it failed: {e}"
                )
            });
        assert!(
            out.status.success(),
            "{} could not set up the venv at {} ({}):\n{}{}",
            script.display(),
            venv.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let python = venv.join("bin/python");
        assert!(
            python.exists(),
            "{} made no {}",
            script.display(),
            python.display()
        );
        python
    })
}
