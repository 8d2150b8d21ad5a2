//! Hot reload: a thread that watches the configuration file and swaps in each valid version.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use perf_core::Controller;

use crate::optimizer::{OptimizerError, read_config};

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
        // Only a change of content counts; an unchanged file is not reloaded.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        if last.as_deref() == Some(text.as_str()) {
            continue;
        }
        let event = match read_config(&path) {
            Ok((text, config)) => {
                last = Some(text);
                match controller.reload(config) {
                    Ok(version) => ReloadEvent::Applied { version },
                    Err(errors) => ReloadEvent::Rejected {
                        error: OptimizerError::Config {
                            path: path.clone(),
                            errors,
                        },
                    },
                }
            }
            Err(error) => {
                last = Some(text);
                ReloadEvent::Rejected { error }
            }
        };
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
