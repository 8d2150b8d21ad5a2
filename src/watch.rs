//! Hot reload: a thread that watches the configuration file and swaps in each valid version.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use perf_core::Controller;

use crate::optimizer::{OptimizerError, parse_config, read_bounded};

/// What happened when the watched file changed.
#[derive(Debug)]
pub enum ReloadEvent {
    /// The new configuration is in force.
    Applied {
        /// Its version.
        version: u64,
    },
    /// The file is invalid or unreadable; the previous configuration stays.
    Rejected {
        /// Why, with every error found.
        error: OptimizerError,
    },
}

/// Called after every reload attempt of a watched file.
pub type ReloadCallback = Box<dyn Fn(&ReloadEvent) + Send + Sync>;

struct Shared {
    stop: Mutex<bool>,
    wake: Condvar,
    running: AtomicBool,
}

/// Watches one configuration file; stops when dropped.
pub struct ConfigWatcher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl ConfigWatcher {
    /// Starts watching `path`; `last` is the text already applied, if any.
    pub fn spawn(
        path: PathBuf,
        controller: Arc<Controller>,
        interval: Duration,
        last: Option<String>,
        on_reload: Option<ReloadCallback>,
    ) -> ConfigWatcher {
        let shared = Arc::new(Shared {
            stop: Mutex::new(false),
            wake: Condvar::new(),
            running: AtomicBool::new(true),
        });
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("perfopt-config-watch".into())
            .spawn(move || watch(path, controller, interval, last, on_reload, thread_shared))
            .ok();
        ConfigWatcher { shared, thread }
    }

    /// Whether the watching thread is alive.
    pub fn is_running(&self) -> bool {
        self.shared.running.load(Ordering::Acquire)
    }
}

fn watch(
    path: PathBuf,
    controller: Arc<Controller>,
    interval: Duration,
    mut last: Option<String>,
    on_reload: Option<ReloadCallback>,
    shared: Arc<Shared>,
) {
    let mut unreadable: Option<String> = None;
    loop {
        {
            let stop = shared.stop.lock().unwrap_or_else(|e| e.into_inner());
            let (stop, _) = shared
                .wake
                .wait_timeout_while(stop, interval, |s| !*s)
                .unwrap_or_else(|e| e.into_inner());
            if *stop {
                break;
            }
        }
        // Only a change of content counts; an unchanged file is not reloaded. The file is read
        // through the same bounded reader as at start-up, so a FIFO or a device put in its
        // place is refused at once instead of blocking this thread.
        let text = match read_bounded(&path) {
            Ok(text) => text,
            Err(error) => {
                // A file that cannot be read is reported once, not at every look.
                let what = error.to_string();
                if unreadable.as_deref() != Some(what.as_str()) {
                    unreadable = Some(what);
                    if let Some(f) = &on_reload {
                        f(&ReloadEvent::Rejected { error });
                    }
                }
                continue;
            }
        };
        unreadable = None;
        if last.as_deref() == Some(text.as_str()) {
            continue;
        }
        let event = match parse_config(&path, &text) {
            Ok(config) => match controller.reload(config) {
                Ok(version) => ReloadEvent::Applied { version },
                Err(errors) => ReloadEvent::Rejected {
                    error: OptimizerError::Config {
                        path: path.clone(),
                        errors,
                    },
                },
            },
            Err(error) => ReloadEvent::Rejected { error },
        };
        last = Some(text);
        if let Some(f) = &on_reload {
            f(&event);
        }
    }
    shared.running.store(false, Ordering::Release);
}

impl Drop for ConfigWatcher {
    fn drop(&mut self) {
        *self.shared.stop.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::mem::ManuallyDrop;
    use std::sync::mpsc;

    use perf_core::Config;

    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_fifo_in_place_of_the_file_is_rejected_without_blocking_the_watcher() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("perfopt.toml");
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .expect("the mkfifo command (coreutils) runs");
        assert!(made.success(), "mkfifo {} failed", path.display());
        let controller = Arc::new(Controller::builder(Config::default()).build().unwrap());
        let (tx, rx) = mpsc::channel();
        let report: ReloadCallback = Box::new(move |e: &ReloadEvent| {
            let _ = tx.send(match e {
                ReloadEvent::Applied { version } => format!("applied {version}"),
                ReloadEvent::Rejected { error } => error.to_string(),
            });
        });
        // Left undropped if the thread is stuck, so that a failure is a failure, not a hang.
        let watcher = ManuallyDrop::new(ConfigWatcher::spawn(
            path.clone(),
            controller,
            Duration::from_millis(10),
            None,
            Some(report),
        ));
        let event = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the watcher reports the FIFO within 10 s");
        assert_eq!(
            event,
            format!(
                "configuration {} is a FIFO, expected a regular file",
                path.display()
            )
        );
        assert!(
            rx.recv_timeout(Duration::from_millis(100)).is_err(),
            "an unchanged unreadable file is reported once"
        );
        drop(ManuallyDrop::into_inner(watcher));
    }
}
