//! The OTLP export the configuration asks for: [`ConfiguredExport`] pushes an optimizer's
//! telemetry to the collector named by `[monitor] otlp_endpoint`, and follows the
//! configuration in force: a reload that names another collector, interval or timeout restarts
//! the export with it, and one that names none stops it.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use perf_monitor::{OtlpConfig, OtlpExporter};

use crate::Optimizer;

/// How often the configuration in force is compared with the export running.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// What happened to the export; each is handed to the callback given to
/// [`ConfiguredExport::start`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportEvent {
    /// Pushing to `endpoint` began.
    Started {
        /// The collector.
        endpoint: String,
    },
    /// Pushing stopped, after a last push: the configuration names no collector any more, or
    /// the export was stopped.
    Stopped {
        /// The collector it pushed to.
        endpoint: String,
    },
    /// An export could not be started or its last push failed; the message says why.
    Failed {
        /// The collector.
        endpoint: String,
        /// Why.
        error: String,
    },
}

/// Called with each [`ExportEvent`], on the export's own thread.
pub type ExportCallback = Box<dyn Fn(&ExportEvent) + Send>;

/// The OTLP export of one optimizer, as its configuration's `[monitor]` table asks; stopping
/// (or dropping) it pushes a last time.
pub struct ConfiguredExport {
    stop: mpsc::Sender<()>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for ConfiguredExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfiguredExport").finish_non_exhaustive()
    }
}

impl ConfiguredExport {
    /// Starts following `optimizer`'s configuration on a thread of its own: the export it asks
    /// for is started at once, and changed within a second of a reload.
    pub fn start(optimizer: Arc<Optimizer>, on_event: ExportCallback) -> ConfiguredExport {
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("perfopt-otlp-follow".into())
            .spawn(move || follow(&optimizer, &on_event, &stopped))
            .ok();
        ConfiguredExport {
            stop,
            thread: Mutex::new(thread),
        }
    }

    /// Stops the export after a last push, and waits for it (at most the export's timeout).
    pub fn stop(&self) {
        let _ = self.stop.send(());
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

impl Drop for ConfiguredExport {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The export running, and what it was started for.
struct Running {
    config: OtlpConfig,
    exporter: OtlpExporter,
}

fn follow(optimizer: &Optimizer, on_event: &ExportCallback, stopped: &mpsc::Receiver<()>) {
    let mut running: Option<Running> = None;
    // The configuration last tried, so that one that fails to start is not retried each
    // second, only when it changes.
    let mut tried: Option<OtlpConfig> = None;
    loop {
        let wanted = OtlpConfig::from_settings(&optimizer.controller().config().monitor);
        if wanted != tried {
            if let Some(old) = running.take() {
                finish(old, on_event);
            }
            if let Some(config) = &wanted {
                match OtlpExporter::start(optimizer.telemetry().clone(), config) {
                    Ok(exporter) => {
                        on_event(&ExportEvent::Started {
                            endpoint: config.endpoint.clone(),
                        });
                        running = Some(Running {
                            config: config.clone(),
                            exporter,
                        });
                    }
                    Err(e) => on_event(&ExportEvent::Failed {
                        endpoint: config.endpoint.clone(),
                        error: e.to_string(),
                    }),
                }
            }
            tried = wanted;
        }
        match stopped.recv_timeout(FOLLOW_EVERY) {
            Err(RecvTimeoutError::Timeout) => continue,
            Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    if let Some(old) = running {
        finish(old, on_event);
    }
}

/// Pushes a last time and stops `old`, saying how that went.
fn finish(old: Running, on_event: &ExportCallback) {
    let endpoint = old.config.endpoint;
    match old.exporter.shutdown() {
        Ok(()) => on_event(&ExportEvent::Stopped { endpoint }),
        Err(e) => on_event(&ExportEvent::Failed {
            endpoint,
            error: e.to_string(),
        }),
    }
}
