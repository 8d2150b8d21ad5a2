//! Worker processes started by this one: a private directory, a secret, sockets, and clean shutdown.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use perfopt::platform::{RunDir, sweep_stale_run_dirs};
use perfopt::transport::Secret;
use perfopt::transport::grpc::Endpoint;

use crate::exit::Exit;

/// How long a worker may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A private run directory (0700) holding the secret and the workers' sockets; removed when
/// dropped, and by the start-up sweep of the next command that makes one when this process dies
/// first.
pub(crate) struct Workspace {
    dir: RunDir,
    secret: Secret,
}

impl Workspace {
    /// Removes the run directories of dead hosts from the temporary directory, then makes a
    /// fresh one with a fresh secret in it.
    pub(crate) fn new() -> Result<Workspace, Exit> {
        sweep_stale_run_dirs(&std::env::temp_dir()).map_err(Exit::failed)?;
        let dir = RunDir::new().map_err(Exit::failed)?;
        let secret = Secret::generate().map_err(Exit::failed)?;
        secret
            .write_file(&dir.path().join("secret"))
            .map_err(Exit::failed)?;
        Ok(Workspace { dir, secret })
    }

    /// The secret the workers check references with.
    pub(crate) fn secret(&self) -> &Secret {
        &self.secret
    }

    fn secret_file(&self) -> PathBuf {
        self.dir.path().join("secret")
    }

    /// Starts worker number `index` on a Unix socket in this directory.
    pub(crate) fn spawn(&self, index: usize) -> Result<WorkerProcess, Exit> {
        let socket = self.dir.path().join(format!("worker-{index}.sock"));
        // A long $TMPDIR makes a socket path that no socket can have; say so before starting.
        Endpoint::parse(&format!("unix:{}", socket.display())).map_err(|e| {
            Exit::failed(format_args!(
                "no socket fits in the run directory {} (set TMPDIR to a shorter path): {e}",
                self.dir.path().display()
            ))
        })?;
        WorkerProcess::spawn(&socket, Some(&self.secret_file()))
    }
}

/// A `perfopt worker` child process; killed and reaped when dropped.
pub(crate) struct WorkerProcess {
    child: Child,
    endpoint: Endpoint,
}

impl WorkerProcess {
    /// Starts `perfopt worker` listening on `socket` and waits until it listens.
    pub(crate) fn spawn(socket: &Path, secret_file: Option<&Path>) -> Result<WorkerProcess, Exit> {
        let exe = std::env::current_exe().map_err(Exit::failed)?;
        let mut command = Command::new(exe);
        command
            .arg("worker")
            .arg("--listen")
            .arg(format!("unix:{}", socket.display()))
            .arg("--peer-pid")
            .arg(std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(path) = secret_file {
            command.arg("--secret-file").arg(path);
        }
        let mut child = command.spawn().map_err(Exit::failed)?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Exit::failed("worker has no stdout"))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let started = rx.recv_timeout(START_TIMEOUT).ok();
        let endpoint = started
            .as_deref()
            .and_then(|l| l.trim().strip_prefix("listening "))
            .and_then(|e| Endpoint::parse(e).ok());
        match endpoint {
            Some(endpoint) => Ok(WorkerProcess { child, endpoint }),
            None => {
                let _ = child.kill();
                let status = child.wait().ok();
                Err(Exit::failed(format_args!(
                    "worker did not start listening within {} s (exit: {status:?})",
                    START_TIMEOUT.as_secs()
                )))
            }
        }
    }

    /// Where it listens.
    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
