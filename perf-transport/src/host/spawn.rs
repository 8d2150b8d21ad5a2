//! Worker processes a host starts: a private run directory with the secret and the sockets, the
//! command line a worker is started with, and its clean end.
//!
//! The spawn contract: the host runs the worker's program with its own arguments followed by
//! `--listen unix:<run dir>/worker-<n>.sock --peer-pid <host pid>` and, when zero-copy is on,
//! `--secret-file <run dir>/secret`. The worker prints one line `listening <endpoint>` on
//! standard output once it accepts connections, and exits when the host's pid is gone.
//! `perfopt worker` follows it, and so does any worker built on perf-transport's service.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, mpsc};
use std::time::Duration;

use perf_platform::{RunDir, SweepReport, sweep_stale_run_dirs};

use super::HostError;
use crate::grpc::Endpoint;
use crate::reference::Secret;

/// How a worker process is started: a program and its leading arguments; the host adds the
/// spawn contract's arguments after them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerCommand {
    program: PathBuf,
    args: Vec<OsString>,
    start_timeout: Duration,
}

impl WorkerCommand {
    /// Runs `program` with no leading arguments.
    pub fn new(program: impl Into<PathBuf>) -> WorkerCommand {
        WorkerCommand {
            program: program.into(),
            args: Vec::new(),
            start_timeout: Duration::from_secs(20),
        }
    }

    /// `perfopt worker`, given the path of the `perfopt` binary.
    pub fn perfopt(binary: impl Into<PathBuf>) -> WorkerCommand {
        WorkerCommand::new(binary).arg("worker")
    }

    /// Adds a leading argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> WorkerCommand {
        self.args.push(arg.into());
        self
    }

    /// How long the worker may take to print its `listening` line (20 s by default).
    pub fn start_timeout(mut self, timeout: Duration) -> WorkerCommand {
        self.start_timeout = timeout;
        self
    }

    /// The program.
    pub fn program(&self) -> &Path {
        &self.program
    }
}

/// A private run directory (0700) holding the secret and the workers' sockets; removed when
/// dropped, and by the start-up sweep of the next host when this process dies first.
#[derive(Debug)]
pub(crate) struct Workspace {
    dir: RunDir,
    secret_file: Option<PathBuf>,
    swept: SweepReport,
}

impl Workspace {
    /// Removes the run directories of dead hosts from the temporary directory, then makes a
    /// fresh one, with `secret` in it when given.
    pub(crate) fn new(secret: Option<&Secret>) -> Result<Workspace, HostError> {
        let io = |what: &str, e: &dyn std::fmt::Display| HostError::Io(format!("{what}: {e}"));
        let swept = sweep_stale_run_dirs(&std::env::temp_dir())
            .map_err(|e| io("sweeping stale run directories", &e))?;
        let dir = RunDir::new().map_err(|e| io("making the run directory", &e))?;
        let secret_file = match secret {
            Some(secret) => {
                let path = dir.path().join("secret");
                secret
                    .write_file(&path)
                    .map_err(|e| io("writing the secret file", &e))?;
                Some(path)
            }
            None => None,
        };
        Ok(Workspace {
            dir,
            secret_file,
            swept,
        })
    }

    /// What the start-up sweep of dead hosts' run directories found.
    pub(crate) fn swept(&self) -> SweepReport {
        self.swept
    }

    /// Starts worker number `index` by `command` on a Unix socket in this directory and waits
    /// until it listens.
    pub(crate) fn spawn(
        &self,
        command: &WorkerCommand,
        index: usize,
    ) -> Result<WorkerProcess, HostError> {
        let socket = self.dir.path().join(format!("worker-{index}.sock"));
        let listen = format!("unix:{}", socket.display());
        // A long $TMPDIR makes a socket path that no socket can have; say so before starting.
        Endpoint::parse(&listen).map_err(|e| {
            HostError::Io(format!(
                "no socket fits in the run directory {} (set TMPDIR to a shorter path): {e}",
                self.dir.path().display()
            ))
        })?;
        // A socket left by the worker this one replaces would refuse the new bind.
        let _ = std::fs::remove_file(&socket);
        let mut cmd = Command::new(&command.program);
        cmd.args(&command.args)
            .arg("--listen")
            .arg(&listen)
            .arg("--peer-pid")
            .arg(std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(path) = &self.secret_file {
            cmd.arg("--secret-file").arg(path);
        }
        let start_error = |message: String| HostError::Start {
            worker: index,
            message,
        };
        let mut child = cmd
            .spawn()
            .map_err(|e| start_error(format!("cannot run {}: {e}", command.program.display())))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| start_error("the worker has no standard output".into()))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            // At most one short line is read: the contract's `listening` line.
            let _ = BufReader::new(stdout.take(4096)).read_line(&mut line);
            let _ = tx.send(line);
        });
        let started = rx.recv_timeout(command.start_timeout).ok();
        let endpoint = started
            .as_deref()
            .and_then(|l| l.trim().strip_prefix("listening "))
            .and_then(|e| Endpoint::parse(e).ok());
        match endpoint {
            Some(endpoint) => Ok(WorkerProcess {
                child: Mutex::new(child),
                endpoint,
            }),
            None => {
                let _ = child.kill();
                let status = child.wait().ok();
                Err(start_error(format!(
                    "{} did not print `listening <endpoint>` within {:?} (exit: {status:?})",
                    command.program.display(),
                    command.start_timeout
                )))
            }
        }
    }
}

/// A worker child process; killed and reaped when dropped.
#[derive(Debug)]
pub(crate) struct WorkerProcess {
    child: Mutex<Child>,
    endpoint: Endpoint,
}

impl WorkerProcess {
    /// Where it listens.
    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Whether it has exited (and been reaped).
    pub(crate) fn exited(&self) -> bool {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        !matches!(child.try_wait(), Ok(None))
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.lock().unwrap_or_else(|e| e.into_inner()).id()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}
