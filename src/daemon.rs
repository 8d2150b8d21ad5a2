//! A running perfopt seen from outside: [`DaemonView`] answers the HTTP endpoints of
//! [`perf_monitor::http`] from an optimizer and its host runtime (readiness checks with the
//! degraded state, gauges, decisions, thresholds, configuration, predictions, statistics, the
//! dashboard's live snapshots and history), and [`serve`] runs them until shutdown.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use perf_core::{Name, StatsRequest, TransferRequest, ZeroCopyAvailability};
use perf_monitor::http::{
    Check, ConfigRefusal, Daemon, HttpConfig, HttpError, HttpListener, StatsRefusal,
    TelemetryReading,
};
use perf_monitor::{ModelStatus, ShmUsage};
use perf_transport::Host;
use serde_json::{Value, json};

use crate::{Optimizer, TallyCounts};

/// When the degraded checks call the service degraded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DegradedMarks {
    /// The window the fallback and failure rates are taken over.
    pub window: Duration,
    /// Transfers a window needs before a rate is judged.
    pub min_transfers: u64,
    /// Above this share of transfers falling back to gRPC, the service is degraded.
    pub fallback_rate: f64,
    /// Above this share of transfers failing, the service is degraded.
    pub failure_rate: f64,
    /// Above this share of the shared-memory budget held, the service is degraded.
    pub shm_held: f64,
}

impl Default for DegradedMarks {
    /// Over the last minute and at least 20 transfers: 20 % fallbacks, 1 % failures, and 95 %
    /// of the shared-memory budget held.
    fn default() -> DegradedMarks {
        DegradedMarks {
            window: Duration::from_secs(60),
            min_transfers: 20,
            fallback_rate: 0.20,
            failure_rate: 0.01,
            shm_held: 0.95,
        }
    }
}

/// The endpoints' view of an optimizer and its host runtime.
pub struct DaemonView {
    optimizer: Arc<Optimizer>,
    host: Host,
    marks: DegradedMarks,
    started: Instant,
    /// Tallies taken at most once a second over the last window, oldest first.
    tallies: Mutex<VecDeque<(Instant, TallyCounts)>>,
    /// Telemetry readings taken at most once a second over the last few seconds, oldest
    /// first: the live snapshots' windows start at one of them.
    readings: Mutex<VecDeque<(Instant, TelemetryReading)>>,
}

/// How far back the live snapshots' readings are kept.
const READINGS_KEPT: Duration = Duration::from_secs(5);
/// The learning events a snapshot shows, newest first.
const SNAPSHOT_EVENTS: usize = 10;

/// Seconds since the Unix epoch, now.
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl std::fmt::Debug for DaemonView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonView")
            .field("marks", &self.marks)
            .finish_non_exhaustive()
    }
}

/// A rate over a window, when the window holds enough transfers to judge it.
fn rate(part: u64, of: u64, min: u64) -> Option<f64> {
    (of >= min.max(1)).then(|| part as f64 / of as f64)
}

impl DaemonView {
    /// A view of `optimizer` and `host` with the default [`DegradedMarks`].
    pub fn new(optimizer: Arc<Optimizer>, host: Host) -> DaemonView {
        DaemonView::with_marks(optimizer, host, DegradedMarks::default())
    }

    /// A view judging degradation by `marks`.
    pub fn with_marks(optimizer: Arc<Optimizer>, host: Host, marks: DegradedMarks) -> DaemonView {
        DaemonView {
            host,
            marks,
            started: Instant::now(),
            tallies: Mutex::new(VecDeque::new()),
            readings: Mutex::new(VecDeque::from([(
                Instant::now(),
                optimizer.telemetry().reading(),
            )])),
            optimizer,
        }
    }

    /// The optimizer.
    pub fn optimizer(&self) -> &Arc<Optimizer> {
        &self.optimizer
    }

    /// The host runtime.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The outcome counts over the last window: now minus the oldest tally kept.
    fn window(&self) -> TallyCounts {
        let now = Instant::now();
        let counts = self.optimizer.tally();
        let mut kept = self.tallies.lock().unwrap_or_else(|e| e.into_inner());
        if kept
            .back()
            .is_none_or(|(at, _)| now.duration_since(*at) >= Duration::from_secs(1))
        {
            kept.push_back((now, counts));
        }
        while kept.len() > 1
            && kept
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at) > self.marks.window)
        {
            kept.pop_front();
        }
        let base = kept.front().map_or_else(TallyCounts::default, |(_, c)| *c);
        TallyCounts {
            transfers: counts.transfers - base.transfers,
            failed: counts.failed - base.failed,
            fell_back: counts.fell_back - base.fell_back,
        }
    }

    /// Sets the gauges the telemetry cannot see for itself: load, thresholds, shared memory,
    /// model, degraded. The endpoints call it before each scrape; a daemon also calls it on a
    /// timer so that OTLP exports fresh values.
    pub fn refresh(&self) {
        let o = &self.optimizer;
        let t = o.telemetry();
        let host = self.host.stats();
        t.set_load(host.in_flight as u64, host.queued as u64);
        let system = o.context().system;
        for &pool in o.controller().config().pools.keys() {
            if let Ok(th) = o.controller().threshold(pool, &system) {
                t.set_pool_threshold(pool, th.effective);
            }
        }
        let pool = o.segment_pool().stats();
        t.set_shm(ShmUsage {
            segments: pool.segments(),
            held_bytes: pool.held_bytes,
            budget_bytes: pool.budget_bytes,
        });
        #[cfg(feature = "learn")]
        if let Some(engine) = o.learning() {
            let s = engine.status();
            t.set_model(ModelStatus {
                learning_enabled: s.enabled,
                active: s.active,
                version: s.version,
                validation_accuracy: s.validation.map(|v| v.accuracy),
            });
        }
        #[cfg(not(feature = "learn"))]
        t.set_model(ModelStatus {
            learning_enabled: false,
            active: false,
            version: 0,
            validation_accuracy: None,
        });
        let checks = self.checks();
        t.set_degraded(
            !checks
                .iter()
                .all(|c| c.state == perf_monitor::http::CheckState::Pass),
        );
    }

    /// The configured pool named `name`, if there is one.
    fn known_pool(&self, name: &str) -> Option<Name> {
        let pool = Name::new(name).ok()?;
        self.optimizer
            .controller()
            .config()
            .pools
            .contains_key(&pool)
            .then_some(pool)
    }

    /// The telemetry now, and what happened in `pool` since the newest reading kept that is at
    /// least a second old (the oldest when none is): see [`TelemetryReading::window`].
    fn live_window(&self, pool: Option<&str>) -> (TelemetryReading, Value) {
        let now = Instant::now();
        let reading = self.optimizer.telemetry().reading();
        let mut kept = self.readings.lock().unwrap_or_else(|e| e.into_inner());
        while kept.len() > 1
            && kept
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at) > READINGS_KEPT)
        {
            kept.pop_front();
        }
        let window = {
            let (at, base) = kept
                .iter()
                .rev()
                .find(|(at, _)| now.duration_since(*at) >= Duration::from_secs(1))
                .or(kept.front())
                .expect("one reading is always kept");
            reading.window(base, now.duration_since(*at).as_secs_f64(), pool)
        };
        if kept
            .back()
            .is_none_or(|(at, _)| now.duration_since(*at) >= Duration::from_secs(1))
        {
            kept.push_back((now, reading.clone()));
        }
        (reading, window)
    }

    /// The learned model's state and its latest events, newest first (`null` and none without
    /// learning).
    fn model_json(&self) -> (Value, Vec<Value>) {
        #[cfg(feature = "learn")]
        if let Some(engine) = self.optimizer.learning() {
            let (s, events) = {
                let engine = engine.engine();
                let events: Vec<Value> = engine
                    .events()
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .take(SNAPSHOT_EVENTS)
                    .map(|e| {
                        let kind = serde_json::to_value(&e.kind).unwrap_or(Value::Null);
                        let name = kind["kind"].as_str().unwrap_or("event").replace('_', " ");
                        let fields: Vec<String> = kind
                            .as_object()
                            .into_iter()
                            .flatten()
                            .filter(|(k, v)| *k != "kind" && !v.is_object())
                            .map(|(k, v)| format!("{k} {v}"))
                            .collect();
                        let text = if fields.is_empty() {
                            name
                        } else {
                            format!("{name}: {}", fields.join(", "))
                        };
                        json!({
                            "at": e.at.as_nanos() as f64 / 1e9,
                            "alert": e.kind.is_alert(),
                            "text": text,
                            "event": kind,
                        })
                    })
                    .collect();
                (engine.status(), events)
            };
            let model = json!({
                "enabled": s.enabled,
                "active": s.active,
                "version": s.version,
                "accuracy": s.validation.map(|v| v.accuracy),
                "live_accuracy": s.live_accuracy,
                "paired": s.paired,
                "min_samples": s.min_samples,
                "trainings": s.trainings,
                "drifts": s.drifts,
            });
            return (model, events);
        }
        let _ = SNAPSHOT_EVENTS;
        (Value::Null, Vec::new())
    }

    fn workers_check(&self) -> Check {
        let s = self.host.stats();
        let all = s.workers.len();
        let detail = format!("{} of {all} workers connected", s.live_workers);
        if s.live_workers == 0 {
            let last = s
                .workers
                .iter()
                .find_map(|w| w.last_error.clone())
                .unwrap_or_else(|| "none started yet".into());
            Check::fail(
                "workers",
                format!("{detail}; last error: {last}"),
                "check the worker command and its log; transfers wait for a worker",
            )
        } else if s.live_workers < all {
            Check::degraded(
                "workers",
                detail,
                "workers that died are being restarted; if this lasts, check their log",
            )
        } else {
            Check::pass("workers", detail)
        }
    }

    #[cfg(feature = "store")]
    fn store_check(&self) -> Check {
        use crate::StoreStatus;
        let o = &self.optimizer;
        match o.store_status() {
            StoreStatus::Memory => Check::pass("store", "in memory: no data directory was given"),
            StoreStatus::Fallback { dir, reason } => Check::degraded(
                "store",
                format!(
                    "the store in {} could not be opened ({reason}); metrics are kept in memory only",
                    dir.display()
                ),
                "free the data directory or fix its permissions, then restart",
            ),
            StoreStatus::Persistent { dir } => {
                let s = o.store().stats();
                match &s.last_error {
                    Some(e) if s.failed_commits > 0 => Check::degraded(
                        "store",
                        format!(
                            "{} commits to {} failed, the last: {e}",
                            s.failed_commits,
                            dir.display()
                        ),
                        "check the disk of the data directory; records wait in memory meanwhile",
                    ),
                    _ => Check::pass("store", format!("open in {}", dir.display())),
                }
            }
        }
    }

    fn shm_check(&self) -> Check {
        let o = &self.optimizer;
        if o.context().zero_copy == ZeroCopyAvailability::Unavailable {
            return Check::degraded(
                "shared_memory",
                "no shared memory: every transfer goes by gRPC",
                "give the process a writable /dev/shm or memfd support",
            );
        }
        let pool = o.segment_pool().stats();
        let held = pool.held_bytes as f64 / pool.budget_bytes.max(1) as f64;
        let detail = format!(
            "{} backend, {} of {} budget bytes held",
            o.shm_status().backend,
            pool.held_bytes,
            pool.budget_bytes
        );
        if held > self.marks.shm_held {
            Check::degraded(
                "shared_memory",
                detail,
                "raise the shared-memory budget (`shm_budget`) or lower the in-flight limit",
            )
        } else {
            Check::pass("shared_memory", detail)
        }
    }

    #[cfg(feature = "learn")]
    fn model_check(&self) -> Option<Check> {
        let s = self.optimizer.learning()?.status();
        Some(if s.enabled && s.version > 0 && !s.active {
            Check::degraded(
                "model",
                format!(
                    "model {} dropped below its accuracy floor: deciding by the rules",
                    s.version
                ),
                "collect paired evidence (`perfopt model collect`) and retrain",
            )
        } else if s.active {
            Check::pass("model", format!("model {} decides", s.version))
        } else {
            Check::pass(
                "model",
                format!(
                    "no model yet ({} of {} paired samples): deciding by the rules",
                    s.paired, s.min_samples
                ),
            )
        })
    }

    fn rate_checks(&self) -> [Check; 2] {
        let w = self.window();
        let m = &self.marks;
        let secs = m.window.as_secs();
        let judge = |name: &str, part: u64, mark: f64, what: &str, remedy: &str| match rate(
            part,
            w.transfers,
            m.min_transfers,
        ) {
            Some(r) if r > mark => Check::degraded(
                name,
                format!(
                    "{:.1} % of the last {secs} s's {} transfers {what} (mark {:.1} %)",
                    r * 100.0,
                    w.transfers,
                    mark * 100.0
                ),
                remedy,
            ),
            Some(r) => Check::pass(
                name,
                format!(
                    "{:.1} % of the last {secs} s's {} transfers {what}",
                    r * 100.0,
                    w.transfers
                ),
            ),
            None => Check::pass(
                name,
                format!(
                    "{} transfers in the last {secs} s, too few to judge",
                    w.transfers
                ),
            ),
        };
        [
            judge(
                "fallback_rate",
                w.fell_back,
                m.fallback_rate,
                "fell back to gRPC",
                "see /api/v1/decisions for the fallback reasons; shared memory may be short",
            ),
            judge(
                "failure_rate",
                w.failed,
                m.failure_rate,
                "failed",
                "see `perfopt stats` for failures by kind and the workers' log",
            ),
        ]
    }
}

impl Daemon for DaemonView {
    fn checks(&self) -> Vec<Check> {
        let mut checks = vec![self.workers_check()];
        #[cfg(feature = "store")]
        checks.push(self.store_check());
        checks.push(self.shm_check());
        #[cfg(feature = "learn")]
        checks.extend(self.model_check());
        checks.extend(self.rate_checks());
        checks
    }

    fn metrics_text(&self) -> String {
        self.refresh();
        self.optimizer.telemetry().prometheus_text()
    }

    fn status(&self) -> Value {
        let o = &self.optimizer;
        let host = self.host.stats();
        let tally = o.tally();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": self.started.elapsed().as_secs_f64(),
            "config_version": o.controller().version(),
            "pools": o.controller().config().pools.keys().map(|p| p.as_str()).collect::<Vec<_>>(),
            "host": host,
            "transfers": { "total": tally.transfers, "failed": tally.failed, "fell_back": tally.fell_back },
            "shared_memory": o.segment_pool().stats(),
            "warnings": o.warnings(),
        })
    }

    fn decisions(&self, limit: usize) -> Value {
        let decisions: Vec<Value> = self
            .optimizer
            .decision_log()
            .recent(limit)
            .iter()
            .map(|d| {
                let mut v = serde_json::to_value(d).unwrap_or(Value::Null);
                if let Some(o) = v.as_object_mut() {
                    o.insert("rationale".into(), json!(d.rationale().to_string()));
                }
                v
            })
            .collect();
        json!(decisions)
    }

    fn thresholds(&self) -> Value {
        let o = &self.optimizer;
        let system = o.context().system;
        let pools: serde_json::Map<String, Value> = o
            .controller()
            .config()
            .pools
            .keys()
            .filter_map(|&pool| {
                let th = o.controller().threshold(pool, &system).ok()?;
                Some((pool.as_str().to_owned(), json!(th)))
            })
            .collect();
        json!({ "pools": pools, "history": o.controller().threshold_history() })
    }

    fn config(&self) -> Value {
        let c = self.optimizer.controller();
        json!({ "version": c.version(), "config": *c.config() })
    }

    fn apply_config(&self, toml: &str, dry_run: bool) -> Result<Value, ConfigRefusal> {
        let invalid = |e: perf_core::ConfigErrors| {
            ConfigRefusal::Invalid(e.0.iter().map(ToString::to_string).collect())
        };
        let new = perf_core::Config::from_toml_str(toml).map_err(invalid)?;
        let controller = self.optimizer.controller();
        // The data directory's calibration stays in force, so the diff does not show its costs.
        let new = controller.effective(new);
        let diff = controller
            .config()
            .diff(&new)
            .map_err(|e| ConfigRefusal::Invalid(vec![e.to_string()]))?;
        if dry_run {
            return Ok(json!({ "applied": false, "diff": diff }));
        }
        let version = controller.reload(new).map_err(invalid)?;
        Ok(json!({ "applied": true, "version": version, "diff": diff }))
    }

    fn predict(&self, pool: Option<&str>, size: u64) -> Option<Value> {
        let o = &self.optimizer;
        let pool = match pool {
            Some(p) => Name::new(p).ok()?,
            None => Name::DEFAULT_POOL,
        };
        if !o.controller().config().pools.contains_key(&pool) {
            return None;
        }
        let request = TransferRequest::new(size).with_pool(pool);
        let ctx = o.context();
        let decision = o.controller().preview(&request, &ctx);
        Some(json!({
            "pool": pool.as_str(),
            "size": size,
            "estimates": o.controller().estimate(&request, &ctx),
            "decision": decision,
            "rationale": decision.rationale().to_string(),
        }))
    }

    fn experiments(&self) -> Result<Value, String> {
        let config = self.optimizer.controller().config();
        let mut out = Vec::with_capacity(config.experiments.len());
        for e in &config.experiments {
            match self.experiment(e.name.as_str())? {
                Some(report) => out.push(report),
                None => continue,
            }
        }
        Ok(json!({ "experiments": out }))
    }

    fn experiment(&self, name: &str) -> Result<Option<Value>, String> {
        #[cfg(all(feature = "abtest", feature = "store"))]
        {
            let now_ms = self.optimizer.context().now.as_nanos() / 1_000_000;
            let report = self
                .optimizer
                .experiment_report(name, now_ms)
                .map_err(|e| e.to_string())?;
            report
                .map(|r| serde_json::to_value(r).map_err(|e| e.to_string()))
                .transpose()
        }
        #[cfg(not(all(feature = "abtest", feature = "store")))]
        {
            let _ = name;
            Err("experiment reports need the `abtest` and `store` features".into())
        }
    }

    fn stats(&self, request: &StatsRequest) -> Result<Value, StatsRefusal> {
        let o = &self.optimizer;
        if let Some(pool) = request.pool
            && !o.controller().config().pools.contains_key(&pool)
        {
            return Err(StatsRefusal::UnknownPool(pool.as_str().to_owned()));
        }
        #[cfg(feature = "store")]
        {
            let report = perf_store::StatsReport::read(o.store_query(), request, o.context().now)
                .map_err(|e| match e {
                perf_core::QueryError::Invalid(why) => StatsRefusal::Invalid(why),
                other => StatsRefusal::Unavailable(other.to_string()),
            })?;
            serde_json::to_value(report).map_err(|e| StatsRefusal::Unavailable(e.to_string()))
        }
        #[cfg(not(feature = "store"))]
        {
            Err(StatsRefusal::Unavailable(
                "statistics need the `store` feature".into(),
            ))
        }
    }

    /// ```json
    /// { "t": 1764660000.5, "pool": null, "pools": ["default"],
    ///   "window": { see TelemetryReading::window },
    ///   "totals": { "transfers": 1200, "bytes": 9.1e9, "fallbacks": 0, "failures": 0,
    ///               "drift_events": 0, "methods": { "zero_copy": { "transfers": 900, "bytes": 9e9 }, ... } },
    ///   "load": { "in_flight": 3, "queued": 0, "live_workers": 1, "workers": 1 },
    ///   "shared_memory": { "held_bytes": 0, "budget_bytes": 268435456, "segments": 0 },
    ///   "thresholds": { "default": 65536 },
    ///   "model": { "enabled": true, "active": false, "version": 0, "accuracy": null, ... },
    ///   "learning_events": [ { "at": 1764660000.1, "alert": false, "text": "published: version 1", "event": {...} } ] }
    /// ```
    ///
    /// Load and shared memory are of every pool; the rest of `pool` when one is given.
    fn snapshot(&self, pool: Option<&str>) -> Option<Value> {
        let selected = match pool {
            Some(p) => Some(self.known_pool(p)?),
            None => None,
        };
        let o = &self.optimizer;
        let (reading, window) = self.live_window(pool);
        let host = self.host.stats();
        let shm = o.segment_pool().stats();
        let system = o.context().system;
        let config = o.controller().config();
        let thresholds: serde_json::Map<String, Value> = config
            .pools
            .keys()
            .filter(|p| selected.is_none_or(|s| s == **p))
            .filter_map(|&p| {
                let th = o.controller().threshold(p, &system).ok()?;
                Some((p.as_str().to_owned(), json!(th.effective)))
            })
            .collect();
        let (model, events) = self.model_json();
        Some(json!({
            "t": unix_now(),
            "pool": pool,
            "pools": config.pools.keys().map(|p| p.as_str()).collect::<Vec<_>>(),
            "window": window,
            "totals": reading.totals(pool),
            "load": {
                "in_flight": host.in_flight,
                "queued": host.queued,
                "live_workers": host.live_workers,
                "workers": host.workers.len(),
            },
            "shared_memory": {
                "held_bytes": shm.held_bytes,
                "budget_bytes": shm.budget_bytes,
                "segments": shm.segments(),
            },
            "thresholds": thresholds,
            "model": model,
            "learning_events": events,
        }))
    }

    /// From the store's buckets of `step_secs` (1 s over a minute, up to 30 s over an hour),
    /// empty ones left out, each at its end (the last, still filling, at now, its rates over
    /// the seconds it has covered):
    ///
    /// ```json
    /// { "range_secs": 300, "step_secs": 5, "pool": null, "t": [1764660005, ...],
    ///   "zero_copy": { "p50_ms": [...], "p95_ms": [...], "p99_ms": [...], "transfers": [...],
    ///                  "transfers_per_s": [...] },
    ///   "grpc": { ... }, "transfers_per_s": [...], "failed_per_s": [...] }
    /// ```
    fn history(&self, pool: Option<&str>, range_secs: u64) -> Result<Option<Value>, String> {
        let selected = match pool {
            Some(p) => match self.known_pool(p) {
                Some(n) => Some(n),
                None => return Ok(None),
            },
            None => None,
        };
        #[cfg(feature = "store")]
        {
            use std::collections::BTreeMap;

            use perf_core::{Method, SeriesQuery, Timestamp};
            use perf_store::bucket::Bucket;
            use perf_store::query::percentiles;

            const NANOS: u64 = 1_000_000_000;
            let step = history_step(range_secs);
            let now = unix_now();
            let end = now as u64 + 1;
            let start = end.saturating_sub(range_secs);
            let start = start - start % step;
            let buckets = |method| {
                self.optimizer
                    .store_query()
                    .merged_buckets(&SeriesQuery {
                        pool: selected,
                        method: Some(method),
                        from: Timestamp(start * NANOS),
                        to: Timestamp(end * NANOS),
                        granularity_secs: step as u32,
                    })
                    .map_err(|e| e.to_string())
            };
            let methods: [BTreeMap<u64, Bucket>; 2] =
                [buckets(Method::ZeroCopy)?, buckets(Method::Grpc)?];
            let mut starts: Vec<u64> = methods.iter().flat_map(|m| m.keys().copied()).collect();
            starts.sort_unstable();
            starts.dedup();
            // Each bucket's end, and the seconds it covers: the one still filling ends now.
            let ends: Vec<f64> = starts
                .iter()
                .map(|&s| ((s + step) as f64).min(now))
                .collect();
            let widths: Vec<f64> = starts
                .iter()
                .zip(&ends)
                .map(|(&s, &e)| (e - s as f64).max(0.1))
                .collect();
            let column = |m: &BTreeMap<u64, Bucket>, f: &dyn Fn(&Bucket) -> Value| -> Vec<Value> {
                starts
                    .iter()
                    .map(|s| m.get(s).map_or(Value::Null, f))
                    .collect()
            };
            let latency = |b: &Bucket, q: fn(&perf_core::Percentiles) -> f64| {
                if b.delivered() == 0 {
                    Value::Null
                } else {
                    json!(q(&percentiles(&b.latency_us, 1e-3)))
                }
            };
            let method = |m: &BTreeMap<u64, Bucket>| {
                json!({
                    "p50_ms": column(m, &|b| latency(b, |p| p.p50)),
                    "p95_ms": column(m, &|b| latency(b, |p| p.p95)),
                    "p99_ms": column(m, &|b| latency(b, |p| p.p99)),
                    "transfers": column(m, &|b| json!(b.count())),
                    "transfers_per_s": starts
                        .iter()
                        .zip(&widths)
                        .map(|(s, w)| m.get(s).map_or(0.0, |b| b.count() as f64 / w))
                        .collect::<Vec<_>>(),
                })
            };
            let total = |f: fn(&Bucket) -> u64| -> Vec<f64> {
                starts
                    .iter()
                    .zip(&widths)
                    .map(|(s, w)| {
                        let n: u64 = methods.iter().filter_map(|m| m.get(s)).map(f).sum();
                        n as f64 / w
                    })
                    .collect()
            };
            Ok(Some(json!({
                "range_secs": range_secs,
                "step_secs": step,
                "pool": pool,
                "t": ends,
                "zero_copy": method(&methods[0]),
                "grpc": method(&methods[1]),
                "transfers_per_s": total(Bucket::count),
                "failed_per_s": total(Bucket::failed),
            })))
        }
        #[cfg(not(feature = "store"))]
        {
            let _ = (selected, range_secs);
            Err("history needs the `store` feature".into())
        }
    }
}

/// The width of the history's buckets for a range of `range_secs`: about 60 to 180 points.
#[cfg(feature = "store")]
fn history_step(range_secs: u64) -> u64 {
    match range_secs {
        0..=60 => 1,
        61..=300 => 5,
        301..=900 => 15,
        _ => 30,
    }
}

/// Serves the endpoints of `view` on `config.listen` until `shutdown` completes, refreshing
/// the gauges every second; returns the address it listened on once stopped.
pub async fn serve(
    view: Arc<DaemonView>,
    config: &HttpConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError> {
    let listener = HttpListener::bind(config).await?;
    serve_on(listener, view, shutdown).await
}

/// As [`serve`], on a listener already bound (e.g. to learn its port first).
pub async fn serve_on(
    listener: HttpListener,
    view: Arc<DaemonView>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError> {
    let ticking = view.clone();
    let ticker = tokio::spawn(async move {
        loop {
            ticking.refresh();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let served = listener.serve(view, shutdown).await;
    ticker.abort();
    served
}
