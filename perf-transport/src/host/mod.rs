//! The host runtime: workers spawned or connected, supervised and balanced; transfers admitted
//! within bounds, carried, retried once when their worker dies, and every one recorded.
//!
//! - **Workers.** Spawned by a [`WorkerCommand`], connected at an [`Endpoint`] over gRPC, or
//!   reached by any [`Carrier`] a [`ConnectCarrier`] makes ([`HostBuilder::carrier`]).
//! - **Admission.** At most [`HostConfig::in_flight_per_worker`] transfers are carried by one
//!   worker at a time and at most [`HostConfig::max_in_flight`] by the host. A caller beyond
//!   that waits (asynchronously, in arrival order); it never fails for the load. The time it
//!   waited is recorded apart from the latency as `queued_us`, and the transfer's deadlines
//!   count from when it starts being carried.
//! - **Balance.** A transfer goes to the live worker with the most free room.
//! - **Supervision.** A spawned worker that exits, or whose connection breaks under a transfer,
//!   is killed, reaped and replaced (with a backoff when replacements keep failing); a
//!   connected worker is reconnected. The transfer it carried is recorded as failed
//!   (`success == false`, with its kind) and tried once more on a live worker.
//! - **Failures are data.** Every attempt, delivered or failed, reaches every sink, and the
//!   host's [`HostStats`] count them.

mod spawn;
mod worker;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use perf_core::{MetricsSink, ResourceProbe, TransferPolicy, TransferRequest};
use perf_platform::SweepReport;
use serde::Serialize;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

pub use self::spawn::WorkerCommand;
use self::spawn::{WorkerProcess, Workspace};
pub use self::worker::{SpawnedWorker, SpawnedWorkerError, process_alive};
use crate::carrier::{Carrier, CarrierFuture};
use crate::executor::{Executor, ExecutorConfig, Payload, TransferError, TransferOutcome};
use crate::grpc::{ClientConfig, Endpoint, WorkerClient};
use crate::pool::{Lease, PoolError, SegmentPool};
use crate::reference::Secret;
use crate::reply::{CallOptions, Reply, ReplyEnvelope};

/// Most transfers one worker may be given at once.
pub const MAX_IN_FLIGHT: usize = 100_000;
/// How often the supervisor looks for spawned workers that exited.
const SUPERVISE_EVERY: Duration = Duration::from_millis(200);
/// First and longest pause between failed attempts to replace a worker.
const RESTART_BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(5));

/// How the host runtime bounds and supervises its transfers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    /// Transfers one worker carries at once, 1 to [`MAX_IN_FLIGHT`]. Default 16.
    pub in_flight_per_worker: usize,
    /// Transfers the host carries at once over all its workers; `None` is the sum of the
    /// workers' room. Callers beyond it wait.
    pub max_in_flight: Option<usize>,
    /// How long a transfer waits for a live worker when none is (all being replaced) before it
    /// fails as unavailable. Default 30 s.
    pub worker_wait: Duration,
    /// Times a transfer whose worker died under it is tried again on a live worker. Default 1.
    pub retries: u32,
    /// How each transfer is carried.
    pub executor: ExecutorConfig,
    /// How the host connects to each worker and bounds its calls.
    pub client: ClientConfig,
}

impl Default for HostConfig {
    fn default() -> HostConfig {
        HostConfig {
            in_flight_per_worker: HostConfig::RECOMMENDED_IN_FLIGHT_PER_WORKER,
            max_in_flight: None,
            worker_wait: Duration::from_secs(30),
            retries: 1,
            executor: ExecutorConfig::default(),
            client: ClientConfig::default(),
        }
    }
}

impl HostConfig {
    /// The default room per worker: enough in flight to keep a worker's socket and cores busy
    /// with small payloads, few enough that large ones do not hold more shared memory than a
    /// default budget.
    pub const RECOMMENDED_IN_FLIGHT_PER_WORKER: usize = 16;

    /// Checks every setting against its bounds.
    pub fn validate(&self) -> Result<(), HostError> {
        if !(1..=MAX_IN_FLIGHT).contains(&self.in_flight_per_worker) {
            return Err(HostError::Config(format!(
                "in_flight_per_worker {}, expected 1 to {MAX_IN_FLIGHT}",
                self.in_flight_per_worker
            )));
        }
        if let Some(n) = self.max_in_flight
            && !(1..=MAX_IN_FLIGHT).contains(&n)
        {
            return Err(HostError::Config(format!(
                "max_in_flight {n}, expected 1 to {MAX_IN_FLIGHT}"
            )));
        }
        if self.worker_wait.is_zero() {
            return Err(HostError::Config(
                "worker_wait of zero, expected more than zero".into(),
            ));
        }
        if self.retries > 10 {
            return Err(HostError::Config(format!(
                "retries {}, expected 0 to 10",
                self.retries
            )));
        }
        self.client
            .validate()
            .map_err(|e| HostError::Config(e.to_string()))
    }
}

/// Why a host could not start.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A setting is out of bounds, or the builder was given nothing to work with.
    #[error("invalid host configuration: {0}")]
    Config(String),
    /// The run directory or the secret could not be made.
    #[error("{0}")]
    Io(String),
    /// A worker did not start, or could not be connected to, twice in a row.
    #[error("worker {worker} did not start: {message}")]
    Start {
        /// The worker's index.
        worker: usize,
        /// What went wrong.
        message: String,
    },
}

/// Makes a carrier to a worker, each time the host (re)connects to it.
pub type ConnectCarrier =
    Arc<dyn Fn() -> CarrierFuture<'static, Arc<dyn Carrier>> + Send + Sync + 'static>;

/// Where a worker comes from.
#[derive(Clone)]
enum Source {
    /// A process this host starts (and restarts).
    Spawn(WorkerCommand),
    /// A worker someone else runs, at this endpoint.
    Connect(Endpoint),
    /// A worker reached by the carriers this makes.
    Carrier(ConnectCarrier),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Spawn(command) => f.debug_tuple("Spawn").field(command).finish(),
            Source::Connect(endpoint) => f.debug_tuple("Connect").field(endpoint).finish(),
            Source::Carrier(_) => f.write_str("Carrier"),
        }
    }
}

/// A worker carrying transfers now.
struct Live {
    executor: Executor,
    process: Option<WorkerProcess>,
    generation: u64,
}

/// One worker's place: its source, its room, and the worker in it now.
struct Slot {
    index: usize,
    source: Source,
    room: Arc<Semaphore>,
    live: Mutex<Option<Arc<Live>>>,
    generation: AtomicU64,
    carried: AtomicU64,
    restarts: AtomicU64,
    last_error: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Slot {
    fn live(&self) -> Option<Arc<Live>> {
        lock(&self.live).clone()
    }
}

/// Counters of what the host did since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HostStats {
    /// Transfers delivered (after any retry).
    pub delivered: u64,
    /// Transfers that failed for good (every attempt failed).
    pub failed: u64,
    /// Attempts that failed because their worker died, and were tried again.
    pub retried: u64,
    /// Workers replaced or reconnected.
    pub restarts: u64,
    /// Transfers being carried now.
    pub in_flight: usize,
    /// Callers waiting for admission now.
    pub queued: usize,
    /// The most transfers carried at once so far.
    pub peak_in_flight: usize,
    /// Workers live now.
    pub live_workers: usize,
    /// Each worker's share.
    pub workers: Vec<WorkerStats>,
    /// Run directories of dead hosts removed at start.
    pub swept_run_dirs: usize,
}

/// One worker's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WorkerStats {
    /// Its place.
    pub index: usize,
    /// Where it listens now, when live.
    pub endpoint: Option<String>,
    /// Its process, when spawned and live.
    pub pid: Option<u32>,
    /// Transfers it was given.
    pub carried: u64,
    /// Times it was replaced or reconnected.
    pub restarts: u64,
    /// Why its last replacement failed, if it did.
    pub last_error: Option<String>,
}

struct Inner {
    policy: Arc<dyn TransferPolicy>,
    probe: Arc<dyn ResourceProbe>,
    zero_copy: Option<(SegmentPool, Secret)>,
    sinks: Vec<Arc<dyn MetricsSink>>,
    config: HostConfig,
    slots: Vec<Slot>,
    admission: Arc<Semaphore>,
    capacity: usize,
    workspace: Option<Workspace>,
    live_changed: Notify,
    delivered: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    queued: AtomicUsize,
    peak: AtomicUsize,
    balance: AtomicUsize,
}

/// Assembles a [`Host`].
pub struct HostBuilder {
    policy: Arc<dyn TransferPolicy>,
    probe: Arc<dyn ResourceProbe>,
    pool: Option<SegmentPool>,
    secret: Option<Secret>,
    sinks: Vec<Arc<dyn MetricsSink>>,
    sources: Vec<Source>,
    config: HostConfig,
}

impl std::fmt::Debug for HostBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostBuilder")
            .field("policy", &self.policy.name())
            .field("workers", &self.sources)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl HostBuilder {
    /// Reads resources from `probe` (an idle machine otherwise).
    pub fn probe(mut self, probe: Arc<dyn ResourceProbe>) -> HostBuilder {
        self.probe = probe;
        self
    }

    /// Carries payloads by zero-copy through `pool`'s segments where decided.
    pub fn zero_copy(mut self, pool: SegmentPool) -> HostBuilder {
        self.pool = Some(pool);
        self
    }

    /// Signs references with `secret` (a fresh one otherwise); connected workers must have it.
    pub fn secret(mut self, secret: Secret) -> HostBuilder {
        self.secret = Some(secret);
        self
    }

    /// Sends every transfer record to `sink` too.
    pub fn sink(mut self, sink: Arc<dyn MetricsSink>) -> HostBuilder {
        self.sinks.push(sink);
        self
    }

    /// Starts `count` workers by `command` (see the spawn contract in [`WorkerCommand`]).
    pub fn spawn(mut self, command: WorkerCommand, count: usize) -> HostBuilder {
        self.sources
            .extend(std::iter::repeat_n(Source::Spawn(command), count));
        self
    }

    /// Uses the worker someone else runs at `endpoint`.
    pub fn connect(mut self, endpoint: Endpoint) -> HostBuilder {
        self.sources.push(Source::Connect(endpoint));
        self
    }

    /// Uses a worker reached by the carriers `connect` makes (another transport than gRPC, or a
    /// worker in memory); the host calls it again to reconnect when the worker is gone.
    pub fn carrier(mut self, connect: ConnectCarrier) -> HostBuilder {
        self.sources.push(Source::Carrier(connect));
        self
    }

    /// Bounds and supervision.
    pub fn config(mut self, config: HostConfig) -> HostBuilder {
        self.config = config;
        self
    }

    /// Starts and connects every worker, then the supervisor. A worker that fails to start is
    /// tried once more before the host gives up.
    pub async fn start(self) -> Result<Host, HostError> {
        self.config.validate()?;
        if self.sources.is_empty() {
            return Err(HostError::Config(
                "no workers: spawn or connect at least one".into(),
            ));
        }
        let zero_copy = match self.pool {
            Some(pool) => {
                let secret = match self.secret {
                    Some(secret) => secret,
                    None => Secret::generate()
                        .map_err(|e| HostError::Io(format!("generating the secret: {e}")))?,
                };
                Some((pool, secret))
            }
            None => None,
        };
        let spawns = self.sources.iter().any(|s| matches!(s, Source::Spawn(_)));
        let workspace = if spawns {
            let secret = zero_copy.as_ref().map(|(_, s)| s);
            Some(Workspace::new(secret)?)
        } else {
            None
        };
        let per_worker = self.config.in_flight_per_worker;
        let capacity = self
            .config
            .max_in_flight
            .unwrap_or(per_worker.saturating_mul(self.sources.len()))
            .min(MAX_IN_FLIGHT);
        let slots = self
            .sources
            .into_iter()
            .enumerate()
            .map(|(index, source)| Slot {
                index,
                source,
                room: Arc::new(Semaphore::new(per_worker)),
                live: Mutex::new(None),
                generation: AtomicU64::new(0),
                carried: AtomicU64::new(0),
                restarts: AtomicU64::new(0),
                last_error: Mutex::new(None),
            })
            .collect();
        let inner = Arc::new(Inner {
            policy: self.policy,
            probe: self.probe,
            zero_copy,
            sinks: self.sinks,
            config: self.config,
            slots,
            admission: Arc::new(Semaphore::new(capacity)),
            capacity,
            workspace,
            live_changed: Notify::new(),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            balance: AtomicUsize::new(0),
        });
        let mut starting = Vec::new();
        for index in 0..inner.slots.len() {
            let inner = inner.clone();
            starting.push(tokio::spawn(async move {
                let first = match inner.bring_up(index).await {
                    Ok(live) => return Ok(live),
                    Err(e) => e,
                };
                inner
                    .bring_up(index)
                    .await
                    .map_err(|again| HostError::Start {
                        worker: index,
                        message: format!("{first}; and again: {again}"),
                    })
            }));
        }
        for (index, task) in starting.into_iter().enumerate() {
            let live = task.await.map_err(|e| HostError::Start {
                worker: index,
                message: format!("the start-up task failed: {e}"),
            })??;
            *lock(&inner.slots[index].live) = Some(Arc::new(live));
        }
        tokio::spawn(supervise(Arc::downgrade(&inner)));
        Ok(Host { inner })
    }
}

/// The host runtime: carries transfers to its workers within bounds, supervises them, and
/// records every transfer. Cheap to clone; clones share everything. The workers it spawned are
/// killed when the last clone is dropped.
#[derive(Clone)]
pub struct Host {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("policy", &self.inner.policy.name())
            .field("workers", &self.inner.slots.len())
            .field("capacity", &self.inner.capacity)
            .finish_non_exhaustive()
    }
}

impl Host {
    /// A builder for a host deciding with `policy`.
    pub fn builder(policy: Arc<dyn TransferPolicy>) -> HostBuilder {
        HostBuilder {
            policy,
            probe: Arc::new(perf_core::FixedProbe::default()),
            pool: None,
            secret: None,
            sinks: Vec::new(),
            sources: Vec::new(),
            config: HostConfig::default(),
        }
    }

    /// Decides, carries `payload` to a worker, verifies and records it; waits for room first
    /// when the host or every worker is full.
    pub async fn transfer(
        &self,
        request: &TransferRequest,
        payload: &[u8],
    ) -> Result<TransferOutcome, TransferError> {
        let policy = self.inner.policy.clone();
        self.carry(policy.as_ref(), request, Payload::Borrowed(payload), None)
            .await
            .map(|(outcome, ..)| outcome)
    }

    /// As [`Host::transfer`], deciding with `policy` instead of the host's (for comparisons).
    pub async fn transfer_with(
        &self,
        policy: &dyn TransferPolicy,
        request: &TransferRequest,
        payload: &[u8],
    ) -> Result<TransferOutcome, TransferError> {
        self.carry(policy, request, Payload::Borrowed(payload), None)
            .await
            .map(|(outcome, ..)| outcome)
    }

    /// As [`Host::transfer`], and hands the worker's code the payload, asking for its reply
    /// (see [`Executor::call`]): the same admission, deadlines, fallback, retry on a worker that
    /// is gone, and records. A handler's failure ([`TransferError::Handler`]) is neither
    /// retried nor sent another way.
    pub async fn call(
        &self,
        request: &TransferRequest,
        payload: &[u8],
    ) -> Result<Reply, TransferError> {
        self.call_with(request, payload, &CallOptions::default())
            .await
    }

    /// As [`Host::call`], telling the worker's code `options` (its metadata, dtype, shape).
    pub async fn call_with(
        &self,
        request: &TransferRequest,
        payload: &[u8],
        options: &CallOptions,
    ) -> Result<Reply, TransferError> {
        let policy = self.inner.policy.clone();
        let (outcome, envelope, live) = self
            .carry(
                policy.as_ref(),
                request,
                Payload::Borrowed(payload),
                Some(options),
            )
            .await?;
        live.executor.take_reply(outcome, envelope).await
    }

    /// Lends a segment for a payload of up to `size` bytes, for a producer that writes straight
    /// into shared memory; send it with [`Host::send_lease`].
    pub fn loan(&self, size: usize) -> Result<Lease, PoolError> {
        crate::executor::loan(self.pool(), size)
    }

    /// Sends the first `len` bytes of a loaned segment: nothing is copied on the zero-copy
    /// path; a refused reference sends the bytes by gRPC.
    pub async fn send_lease(
        &self,
        request: &TransferRequest,
        lease: Lease,
        len: usize,
    ) -> Result<TransferOutcome, TransferError> {
        let policy = self.inner.policy.clone();
        self.send_lease_with(policy.as_ref(), request, lease, len)
            .await
    }

    /// As [`Host::send_lease`], deciding with `policy` instead of the host's (for comparisons).
    pub async fn send_lease_with(
        &self,
        policy: &dyn TransferPolicy,
        request: &TransferRequest,
        lease: Lease,
        len: usize,
    ) -> Result<TransferOutcome, TransferError> {
        self.carry(policy, request, Payload::loaned(lease, len), None)
            .await
            .map(|(outcome, ..)| outcome)
    }

    /// The segment pool, when zero-copy is configured.
    pub fn pool(&self) -> Option<&SegmentPool> {
        self.inner.zero_copy.as_ref().map(|(p, _)| p)
    }

    /// The secret references are signed with, when zero-copy is configured.
    pub fn secret(&self) -> Option<&Secret> {
        self.inner.zero_copy.as_ref().map(|(_, s)| s)
    }

    /// Transfers the host carries at once, at most.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// What the host did so far.
    pub fn stats(&self) -> HostStats {
        let inner = &self.inner;
        let workers: Vec<WorkerStats> = inner
            .slots
            .iter()
            .map(|slot| {
                let live = slot.live();
                WorkerStats {
                    index: slot.index,
                    endpoint: live.as_ref().map(|l| l.executor.endpoint().to_string()),
                    pid: live
                        .as_ref()
                        .and_then(|l| l.process.as_ref().map(WorkerProcess::pid)),
                    carried: slot.carried.load(Ordering::Relaxed),
                    restarts: slot.restarts.load(Ordering::Relaxed),
                    last_error: lock(&slot.last_error).clone(),
                }
            })
            .collect();
        HostStats {
            delivered: inner.delivered.load(Ordering::Relaxed),
            failed: inner.failed.load(Ordering::Relaxed),
            retried: inner.retried.load(Ordering::Relaxed),
            restarts: workers.iter().map(|w| w.restarts).sum(),
            in_flight: inner.capacity - inner.admission.available_permits(),
            queued: inner.queued.load(Ordering::Relaxed),
            peak_in_flight: inner.peak.load(Ordering::Relaxed),
            live_workers: workers.iter().filter(|w| w.endpoint.is_some()).count(),
            swept_run_dirs: inner.workspace.as_ref().map_or(0, |w| w.swept().removed),
            workers,
        }
    }

    /// What the start-up sweep of dead hosts' run directories found, when this host spawns.
    pub fn swept(&self) -> Option<SweepReport> {
        self.inner.workspace.as_ref().map(Workspace::swept)
    }

    /// Waits until no transfer is in flight, then stops every spawned worker. Transfers
    /// submitted meanwhile fail as unavailable.
    pub async fn shutdown(self) {
        let inner = &self.inner;
        let all = u32::try_from(inner.capacity).unwrap_or(u32::MAX);
        if let Ok(permits) = inner.admission.acquire_many(all).await {
            inner.admission.close();
            drop(permits);
        }
        let lives: Vec<_> = inner
            .slots
            .iter()
            .filter_map(|s| lock(&s.live).take())
            .collect();
        // Killing and reaping blocks briefly; keep it off the runtime's threads.
        let _ = tokio::task::spawn_blocking(move || drop(lives)).await;
    }

    async fn carry(
        &self,
        policy: &dyn TransferPolicy,
        request: &TransferRequest,
        payload: Payload<'_>,
        call: Option<&CallOptions>,
    ) -> Result<(TransferOutcome, Option<ReplyEnvelope>, Arc<Live>), TransferError> {
        let inner = &self.inner;
        let entered = Instant::now();
        inner.queued.fetch_add(1, Ordering::Relaxed);
        let admitted = inner.admission.clone().acquire_owned().await;
        inner.queued.fetch_sub(1, Ordering::Relaxed);
        let Ok(_admitted) = admitted else {
            inner.failed.fetch_add(1, Ordering::Relaxed);
            return Err(TransferError::NoWorker {
                waited: entered.elapsed(),
                why: "the host is shutting down".into(),
            });
        };
        let in_flight = inner.capacity - inner.admission.available_permits();
        inner.peak.fetch_max(in_flight, Ordering::Relaxed);
        let mut attempt = 0;
        loop {
            let (slot, live, _room) = match inner.pick(entered).await {
                Ok(picked) => picked,
                Err(e) => {
                    inner.failed.fetch_add(1, Ordering::Relaxed);
                    inner.record_unplaced(policy, request, &payload, entered.elapsed(), &e);
                    return Err(e);
                }
            };
            slot.carried.fetch_add(1, Ordering::Relaxed);
            let queued = entered.elapsed();
            let result = live
                .executor
                .carry(policy, request, &payload, queued, call)
                .await;
            match result {
                Ok((outcome, envelope)) => {
                    inner.delivered.fetch_add(1, Ordering::Relaxed);
                    return Ok((outcome, envelope, live));
                }
                Err(e) if e.worker_gone() => {
                    inner.replace(slot.index, live.generation, &e.to_string());
                    if attempt < inner.config.retries {
                        attempt += 1;
                        inner.retried.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    inner.failed.fetch_add(1, Ordering::Relaxed);
                    return Err(e);
                }
                Err(e) => {
                    inner.failed.fetch_add(1, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
    }
}

impl Inner {
    /// Starts (or connects) the worker of slot `index` and negotiates with it.
    async fn bring_up(self: &Arc<Self>, index: usize) -> Result<Live, String> {
        let slot = &self.slots[index];
        let (process, carrier) = match &slot.source {
            Source::Spawn(command) => {
                let me = self.clone();
                let command = command.clone();
                let process = tokio::task::spawn_blocking(move || {
                    me.workspace
                        .as_ref()
                        .expect("a host that spawns has a run directory")
                        .spawn(&command, index)
                })
                .await
                .map_err(|e| format!("the spawning task failed: {e}"))?
                .map_err(|e| e.to_string())?;
                let carrier = self.grpc(process.endpoint()).await?;
                (Some(process), carrier)
            }
            Source::Connect(endpoint) => (None, self.grpc(endpoint).await?),
            Source::Carrier(connect) => (None, connect().await.map_err(|e| e.to_string())?),
        };
        let mut executor = Executor::over(
            self.policy.clone(),
            carrier,
            self.zero_copy.clone(),
            self.probe.clone(),
            self.config.executor,
        )
        .await
        .map_err(|e| e.to_string())?;
        for sink in &self.sinks {
            executor = executor.with_sink(sink.clone());
        }
        let generation = slot.generation.fetch_add(1, Ordering::AcqRel) + 1;
        Ok(Live {
            executor,
            process,
            generation,
        })
    }

    /// A gRPC connection to the worker at `endpoint`.
    async fn grpc(&self, endpoint: &Endpoint) -> Result<Arc<dyn Carrier>, String> {
        let client = WorkerClient::connect(endpoint, self.config.client.clone())
            .await
            .map_err(|e| e.to_string())?;
        Ok(Arc::new(client))
    }

    /// The live worker with the most free room, and room on it; waits while every worker is
    /// being replaced, up to [`HostConfig::worker_wait`] from `since`.
    async fn pick(
        &self,
        since: Instant,
    ) -> Result<(&Slot, Arc<Live>, OwnedSemaphorePermit), TransferError> {
        let deadline = since + self.config.worker_wait;
        loop {
            let changed = self.live_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let n = self.slots.len();
            let turn = self.balance.fetch_add(1, Ordering::Relaxed);
            let best = (0..n)
                .map(|k| &self.slots[(turn + k) % n])
                .filter_map(|slot| slot.live().map(|live| (slot, live)))
                .max_by_key(|(slot, _)| slot.room.available_permits());
            if let Some((slot, live)) = best {
                let Ok(room) = slot.room.clone().acquire_owned().await else {
                    continue;
                };
                // The worker may have been replaced while this one waited for its room.
                match slot.live() {
                    Some(now) if now.generation == live.generation => {
                        return Ok((slot, live, room));
                    }
                    _ => continue,
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, changed).await.is_err() {
                let why = self
                    .slots
                    .iter()
                    .map(|s| {
                        let e = lock(&s.last_error).clone();
                        format!(
                            "worker {}: {}",
                            s.index,
                            e.as_deref().unwrap_or("being replaced")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(TransferError::NoWorker {
                    waited: since.elapsed(),
                    why,
                });
            }
        }
    }

    /// Takes generation `generation` of slot `index` out of service and replaces it in the
    /// background, once however many transfers saw it die.
    fn replace(self: &Arc<Self>, index: usize, generation: u64, why: &str) {
        let slot = &self.slots[index];
        let old = {
            let mut live = lock(&slot.live);
            match live.as_ref() {
                Some(l) if l.generation == generation => live.take(),
                _ => return,
            }
        };
        *lock(&slot.last_error) = Some(why.to_string());
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            // Kill and reap what is left of the old worker before its socket is reused.
            let _ = tokio::task::spawn_blocking(move || drop(old)).await;
            restart(me, index).await;
        });
    }

    /// Records a transfer no worker could take: decided as any other, failed as unavailable.
    fn record_unplaced(
        &self,
        policy: &dyn TransferPolicy,
        request: &TransferRequest,
        payload: &Payload<'_>,
        waited: Duration,
        error: &TransferError,
    ) {
        let size = payload.len() as u64;
        let request = TransferRequest { size, ..*request };
        let ctx = perf_core::DecisionContext {
            now: crate::executor::now(),
            system: self.probe.sample(),
            zero_copy: perf_core::ZeroCopyAvailability::Unavailable,
        };
        let decision = policy.decide(&request, &ctx);
        let mut metrics = perf_core::TransferMetrics::new(
            &request,
            &decision,
            decision.method,
            0.0,
            ctx.now,
            ctx.system,
        );
        metrics.queued_us = waited.as_secs_f64() * 1e6;
        metrics.fail(error.kind());
        for sink in &self.sinks {
            sink.record(&metrics);
        }
    }
}

/// Brings slot `index` back, with a growing pause between failed attempts, until it is live or
/// the host is gone.
async fn restart(host: Weak<Inner>, index: usize) {
    let mut pause = RESTART_BACKOFF.0;
    loop {
        let Some(inner) = host.upgrade() else { return };
        if inner.admission.is_closed() {
            return;
        }
        match inner.bring_up(index).await {
            Ok(live) => {
                let slot = &inner.slots[index];
                *lock(&slot.live) = Some(Arc::new(live));
                *lock(&slot.last_error) = None;
                slot.restarts.fetch_add(1, Ordering::Relaxed);
                inner.live_changed.notify_waiters();
                return;
            }
            Err(e) => *lock(&inner.slots[index].last_error) = Some(e),
        }
        drop(inner);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RESTART_BACKOFF.1);
    }
}

/// Replaces spawned workers that exited while idle, until the host is gone.
async fn supervise(host: Weak<Inner>) {
    loop {
        tokio::time::sleep(SUPERVISE_EVERY).await;
        let Some(inner) = host.upgrade() else { return };
        if inner.admission.is_closed() {
            return;
        }
        for slot in &inner.slots {
            if let Some(live) = slot.live()
                && live.process.as_ref().is_some_and(WorkerProcess::exited)
            {
                inner.replace(slot.index, live.generation, "the worker process exited");
            }
        }
    }
}

#[cfg(test)]
mod tests;
