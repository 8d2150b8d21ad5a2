//! The HTTP endpoints of a running perfopt (axum, loopback by default): `/livez`, `/readyz`
//! (`?verbose`), `/metrics`, the versioned JSON API under `/api/v1/`, and the live dashboard at
//! `/` (its assets under `/assets/`, fed by the server-sent events of `/api/v1/events` and the
//! history of `/api/v1/history`).
//!
//! The endpoints read the running system through [`Daemon`], which the host runtime implements;
//! this module owns the routes, the bounds on what comes from outside, status codes and bodies.
//! Every query parameter is parsed and bounded here ([`MAX_DECISIONS`], [`MAX_PREDICT_SIZE`]),
//! a request body is at most [`MAX_BODY_BYTES`], and a bad one gets a 4xx whose JSON body names
//! what was wrong.

mod dashboard;
mod events;
mod health;
mod live;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRef, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use perf_core::seams::MAX_STATS_SINCE_SECS;
use perf_core::{Method, Name, StatsRequest};
use serde_json::{Value, json};

pub use dashboard::CONTENT_SECURITY_POLICY;
pub use events::{EVENT_INTERVAL, MAX_EVENT_STREAMS};
pub use health::{Check, CheckState, Readiness, readyz_text};
pub use live::{METHODS, TelemetryReading, bucket_quantile};

/// The address `perfopt serve` listens on unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";
/// The largest request body taken (a configuration file), in bytes.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// The most recent decisions one request returns.
pub const MAX_DECISIONS: usize = 1000;
/// The largest payload size a prediction is asked for, in bytes (1 TiB).
pub const MAX_PREDICT_SIZE: u64 = 1 << 40;
/// The longest pool name a parameter may hold, in bytes.
pub const MAX_POOL_NAME: usize = 64;
/// The shortest and longest range of history the dashboard asks for, in seconds.
pub const HISTORY_RANGE_SECS: std::ops::RangeInclusive<u64> = 60..=3600;

/// Why a configuration was not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigRefusal {
    /// It does not validate: every error, with its key path and value.
    Invalid(Vec<String>),
    /// It validated and could not be applied (nothing of it was).
    Failed(String),
}

/// What the endpoints read and change in the running system. Methods must not block for long:
/// they run on the server's runtime.
pub trait Daemon: Send + Sync + 'static {
    /// Every readiness check, now.
    fn checks(&self) -> Vec<Check>;
    /// The Prometheus text exposition of every metric.
    fn metrics_text(&self) -> String;
    /// What `/api/v1/status` shows beside the checks: version, uptime, pools, workers,
    /// transfers, model status (an object).
    fn status(&self) -> Value;
    /// The `limit` most recent decisions with their full rationale, newest first.
    fn decisions(&self, limit: usize) -> Value;
    /// Every pool's threshold and its recent changes.
    fn thresholds(&self) -> Value;
    /// The configuration in force: its version and its TOML text.
    fn config(&self) -> Value;
    /// Validates `toml` and, unless `dry_run`, applies it whole (as a file reload does): the
    /// answer says what changed and which sample decisions flip.
    fn apply_config(&self, toml: &str, dry_run: bool) -> Result<Value, ConfigRefusal>;
    /// The estimates of both methods for a payload of `size` bytes to `pool` (the default pool
    /// when `None`), or `None` when the pool is not known.
    fn predict(&self, pool: Option<&str>, size: u64) -> Option<Value>;
    /// The statistics `perfopt stats` shows (a `perf_store::StatsReport`) for `request`, whose
    /// bounds were checked.
    fn stats(&self, request: &StatsRequest) -> Result<Value, StatsRefusal>;
    /// What the dashboard shows now of `pool` (every pool when `None`), or `None` when the
    /// pool is not known: an object the events of `/api/v1/events` carry, to which the
    /// endpoint adds `state`, `ready`, `degraded` and `checks`. Called about once a second by
    /// each open event stream.
    fn snapshot(&self, pool: Option<&str>) -> Option<Value>;
    /// The dashboard's history of `pool` (every pool when `None`) over the last `range_secs`
    /// seconds (within [`HISTORY_RANGE_SECS`]): `Ok(None)` when the pool is not known, `Err`
    /// when no history can be read.
    fn history(&self, pool: Option<&str>, range_secs: u64) -> Result<Option<Value>, String>;
    /// The configuration's experiments, each with its report from the stored transfers: an
    /// object `{ "experiments": [...] }`; `Err` when the reports cannot be read.
    fn experiments(&self) -> Result<Value, String>;
    /// One experiment's report, `Ok(None)` when the configuration has no experiment `name`.
    fn experiment(&self, name: &str) -> Result<Option<Value>, String>;
}

/// Why statistics were not given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatsRefusal {
    /// The pool asked for is not configured.
    UnknownPool(String),
    /// The request cannot be answered as asked; the message says why.
    Invalid(String),
    /// The statistics cannot be read now (no store, a failing store).
    Unavailable(String),
}

/// How the endpoints are served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Whether an address other than loopback is allowed; the endpoints have no
    /// authentication, so this is off unless an operator turns it on.
    pub allow_remote: bool,
}

impl Default for HttpConfig {
    /// `127.0.0.1:9464`, loopback only.
    fn default() -> HttpConfig {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            allow_remote: false,
        }
    }
}

/// Why the endpoints could not be served.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// A non-loopback address was asked for without allowing it.
    #[error(
        "listen address {0} is not loopback; the endpoints have no authentication, so remote \
         access must be allowed explicitly (`perfopt serve --allow-remote`, \
         `HttpConfig::allow_remote`)"
    )]
    NotLoopback(SocketAddr),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The server failed.
    #[error("the HTTP server failed: {0}")]
    Serve(std::io::Error),
}

/// The bound listener of the endpoints.
#[derive(Debug)]
pub struct HttpListener {
    listener: tokio::net::TcpListener,
}

impl HttpListener {
    /// Binds `config.listen`, refusing a non-loopback address unless `config.allow_remote`.
    pub async fn bind(config: &HttpConfig) -> Result<HttpListener, HttpError> {
        if !config.listen.ip().is_loopback() && !config.allow_remote {
            return Err(HttpError::NotLoopback(config.listen));
        }
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| HttpError::Bind {
                addr: config.listen,
                source,
            })?;
        Ok(HttpListener { listener })
    }

    /// The address bound (with the port the system chose for port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves the endpoints of `daemon` until `shutdown` completes, then finishes the requests
    /// in progress.
    /// in progress; open event streams end at once.
    pub async fn serve(
        self,
        daemon: Arc<dyn Daemon>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), HttpError> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        axum::serve(self.listener, routes(daemon, Some(stopped)))
            .with_graceful_shutdown(async move {
                shutdown.await;
                let _ = stop.send(true);
            })
            .await
            .map_err(HttpError::Serve)
    }
}

/// What the handlers share: the daemon, the permits of the event streams and the stop signal
/// that ends them.
#[derive(Clone)]
struct App {
    daemon: Arc<dyn Daemon>,
    streams: Arc<tokio::sync::Semaphore>,
    /// Turns true when the server stops; `None` when it is never told.
    stopped: Option<tokio::sync::watch::Receiver<bool>>,
}

impl FromRef<App> for Arc<dyn Daemon> {
    fn from_ref(app: &App) -> Arc<dyn Daemon> {
        app.daemon.clone()
    }
}

/// The routes over `daemon`; event streams end only when their client leaves (a server that
/// stops should use [`HttpListener::serve`], which ends them).
pub fn router(daemon: Arc<dyn Daemon>) -> Router {
    routes(daemon, None)
}

/// The routes over `daemon`, whose event streams end when `stopped` turns true.
fn routes(daemon: Arc<dyn Daemon>, stopped: Option<tokio::sync::watch::Receiver<bool>>) -> Router {
    let app = App {
        daemon,
        streams: Arc::new(tokio::sync::Semaphore::new(MAX_EVENT_STREAMS)),
        stopped,
    };
    Router::new()
        .route("/", get(dashboard::index))
        .route("/assets/{*file}", get(dashboard::asset))
        .route("/api/v1/events", get(events::events))
        .route("/api/v1/history", get(events::history))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/status", get(status))
        .route("/api/v1/decisions", get(decisions))
        .route("/api/v1/thresholds", get(thresholds))
        .route("/api/v1/config", get(config).post(post_config))
        .route("/api/v1/predict", get(predict))
        .route("/api/v1/stats", get(stats))
        .route("/api/v1/experiments", get(experiments))
        .route("/api/v1/experiments/{name}", get(experiment))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(app)
}

type Params = Query<HashMap<String, String>>;
type Shared = State<Arc<dyn Daemon>>;

/// A JSON error body with `status`.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

fn bad_request(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, message)
}

/// Whether a flag parameter is on: present with no value, `1` or `true`.
fn flag(params: &HashMap<String, String>, name: &str) -> Result<bool, String> {
    match params.get(name).map(String::as_str) {
        None | Some("0") | Some("false") => Ok(false),
        Some("") | Some("1") | Some("true") => Ok(true),
        Some(other) => Err(format!("{name}={other:?}, expected 1, true, 0 or false")),
    }
}

/// The number parameter `name`, within `1..=max`, or `default` when absent.
fn number(
    params: &HashMap<String, String>,
    name: &str,
    default: Option<u64>,
    max: u64,
) -> Result<u64, String> {
    let Some(text) = params.get(name) else {
        return default.ok_or_else(|| format!("{name} is missing, expected 1 to {max}"));
    };
    match text.parse::<u64>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!("{name}={text:?}, expected 1 to {max}")),
    }
}

/// The `pool` parameter: absent, or 1 to [`MAX_POOL_NAME`] bytes.
fn pool_param(params: &HashMap<String, String>) -> Result<Option<&str>, String> {
    match params.get("pool").map(String::as_str) {
        None => Ok(None),
        Some(p) if p.is_empty() || p.len() > MAX_POOL_NAME => {
            Err(format!("pool must be 1 to {MAX_POOL_NAME} characters"))
        }
        Some(p) => Ok(Some(p)),
    }
}

fn no_pool(pool: Option<&str>) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("no pool {:?}", pool.unwrap_or("default")),
    )
}

async fn livez() -> &'static str {
    "livez check passed\n"
}

async fn readyz(State(daemon): Shared, Query(params): Params) -> Response {
    let verbose = match flag(&params, "verbose") {
        Ok(v) => v,
        Err(e) => return bad_request(e),
    };
    let checks = daemon.checks();
    let code = if Readiness::of(&checks).serves() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, readyz_text(&checks, verbose)).into_response()
}

async fn metrics(State(daemon): Shared) -> Response {
    (
        [(header::CONTENT_TYPE, crate::PROMETHEUS_CONTENT_TYPE)],
        daemon.metrics_text(),
    )
        .into_response()
}

/// The readiness of `daemon` (`state`, `ready`, `degraded`, `checks`) with the members of
/// `extra` (an object) that do not clash.
fn with_checks(daemon: &dyn Daemon, extra: Value) -> Value {
    let checks = daemon.checks();
    let readiness = Readiness::of(&checks);
    let mut body = json!({
        "state": readiness.as_str(),
        "ready": readiness.serves(),
        "degraded": readiness == Readiness::Degraded,
        "checks": checks,
    });
    if let (Some(out), Value::Object(extra)) = (body.as_object_mut(), extra) {
        for (k, v) in extra {
            out.entry(k).or_insert(v);
        }
    }
    body
}

async fn status(State(daemon): Shared) -> Response {
    axum::Json(with_checks(&*daemon, daemon.status())).into_response()
}

async fn decisions(State(daemon): Shared, Query(params): Params) -> Response {
    match number(&params, "limit", Some(100), MAX_DECISIONS as u64) {
        Ok(limit) => axum::Json(daemon.decisions(limit as usize)).into_response(),
        Err(e) => bad_request(e),
    }
}

async fn thresholds(State(daemon): Shared) -> Response {
    axum::Json(daemon.thresholds()).into_response()
}

async fn config(State(daemon): Shared) -> Response {
    axum::Json(daemon.config()).into_response()
}

async fn post_config(State(daemon): Shared, Query(params): Params, body: Bytes) -> Response {
    let dry_run = match flag(&params, "dry_run") {
        Ok(v) => v,
        Err(e) => return bad_request(e),
    };
    let Ok(toml) = std::str::from_utf8(&body) else {
        return bad_request("the configuration is not UTF-8 text, expected TOML");
    };
    match daemon.apply_config(toml, dry_run) {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(ConfigRefusal::Invalid(errors)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({
                "error": "the configuration is invalid; nothing was applied",
                "errors": errors,
            })),
        )
            .into_response(),
        Err(ConfigRefusal::Failed(why)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the configuration was not applied: {why}"),
        ),
    }
}

async fn predict(State(daemon): Shared, Query(params): Params) -> Response {
    let size = match number(&params, "size", None, MAX_PREDICT_SIZE) {
        Ok(s) => s,
        Err(e) => return bad_request(e),
    };
    let pool = match pool_param(&params) {
        Ok(p) => p,
        Err(e) => return bad_request(e),
    };
    match daemon.predict(pool, size) {
        Some(answer) => axum::Json(answer).into_response(),
        None => no_pool(pool),
    }
}

/// The statistics request of `/api/v1/stats`: `since_secs` (default 3600), `granularity_secs`
/// (default 60), `pool`, `method` and `profile`, each checked.
fn stats_request(params: &HashMap<String, String>) -> Result<StatsRequest, String> {
    let since_secs = number(params, "since_secs", Some(3600), MAX_STATS_SINCE_SECS)?;
    let granularity_secs = number(params, "granularity_secs", Some(60), 3600)? as u32;
    let pool = params
        .get("pool")
        .map(|p| Name::new(p).map_err(|e| format!("pool={p:?}: {e}")))
        .transpose()?;
    let method = params
        .get("method")
        .map(|m| {
            m.parse::<Method>()
                .map_err(|_| format!("method={m:?}, expected zero_copy or grpc"))
        })
        .transpose()?;
    let request = StatsRequest {
        pool,
        method,
        since_secs,
        granularity_secs,
        profile: flag(params, "profile")?,
    };
    request.check()?;
    Ok(request)
}

async fn stats(State(daemon): Shared, Query(params): Params) -> Response {
    let request = match stats_request(&params) {
        Ok(r) => r,
        Err(e) => return bad_request(e),
    };
    // Reading the store may take a while: off the server's threads.
    let answer = tokio::task::spawn_blocking(move || daemon.stats(&request)).await;
    match answer {
        Ok(Ok(answer)) => axum::Json(answer).into_response(),
        Ok(Err(StatsRefusal::UnknownPool(pool))) => {
            error(StatusCode::NOT_FOUND, format!("no pool {pool:?}"))
        }
        Ok(Err(StatsRefusal::Invalid(why))) => bad_request(why),
        Ok(Err(StatsRefusal::Unavailable(why))) => error(StatusCode::SERVICE_UNAVAILABLE, why),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the statistics failed: {e}"),
        ),
    }
}

/// `GET /api/v1/experiments`: every experiment with its report.
async fn experiments(State(daemon): Shared) -> Response {
    // Reading the store may take a while: off the server's threads.
    match tokio::task::spawn_blocking(move || daemon.experiments()).await {
        Ok(Ok(answer)) => axum::Json(answer).into_response(),
        Ok(Err(why)) => error(StatusCode::SERVICE_UNAVAILABLE, why),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the experiments' reports failed: {e}"),
        ),
    }
}

/// `GET /api/v1/experiments/{name}`: one experiment's report.
async fn experiment(
    State(daemon): Shared,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Response {
    if name.len() > MAX_POOL_NAME {
        return bad_request(format!(
            "an experiment name of {} bytes, expected at most {MAX_POOL_NAME}",
            name.len()
        ));
    }
    let asked = name.clone();
    match tokio::task::spawn_blocking(move || daemon.experiment(&asked)).await {
        Ok(Ok(Some(answer))) => axum::Json(answer).into_response(),
        Ok(Ok(None)) => error(
            StatusCode::NOT_FOUND,
            format!("no experiment {name:?}; see /api/v1/experiments"),
        ),
        Ok(Err(why)) => error(StatusCode::SERVICE_UNAVAILABLE, why),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the experiment's report failed: {e}"),
        ),
    }
}

async fn not_found(uri: axum::http::Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!(
            "no endpoint {}; see /livez, /readyz, /metrics and /api/v1/",
            uri.path()
        ),
    )
}
