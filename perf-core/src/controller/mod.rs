//! The decision engine: forced -> rules -> quick path -> cost analysis -> exploration.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::config::{Adaptation, Config, ConfigErrors, CostCoefficients, Experiment};
use crate::cost::{Weights, calibrated_estimates, weigh};
use crate::decision::{
    Decision, EstimateSource, Estimates, ExperimentArm, Reason, ThresholdBreakdown,
};
use crate::name::Name;
use crate::policy::{forced, reply_threshold};
use crate::request::{DecisionContext, Timestamp, TransferRequest};
use crate::rng::SplitMix;
use crate::seams::{
    DecisionFunction, MethodClassifier, MetricsQuery, NoopClassifier, NoopPredictor, NoopQuery,
    NoopThresholdStore, Predictor, ThresholdControl, ThresholdStore, TransferPolicy,
};
use crate::threshold::{Proposal, ThresholdChange, ThresholdError, ThresholdManager, breakdown};
use crate::vocab::Method;

/// Why a controller could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ControllerError {
    /// The configuration (with the registered functions) is invalid.
    #[error("invalid configuration:\n{0}")]
    Config(#[from] ConfigErrors),
    /// Threshold state could not be restored.
    #[error(transparent)]
    Threshold(#[from] ThresholdError),
}

mod snapshot;

pub use snapshot::DecisionCounts;
use snapshot::{Counters, PoolState, RegisteredFunction, RuleStep, Snapshot, compile};

/// Builds a [`Controller`].
pub struct ControllerBuilder {
    config: Config,
    predictor: Arc<dyn Predictor>,
    classifier: Arc<dyn MethodClassifier>,
    metrics: Arc<dyn MetricsQuery>,
    store: Arc<dyn ThresholdStore>,
    functions: Vec<RegisteredFunction>,
    seed: u64,
    calibration: Option<CostCoefficients>,
}

impl ControllerBuilder {
    /// Runs `config` instead of the one given to [`Controller::builder`].
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Uses `predictor` for learned estimates once it is confident.
    pub fn predictor(mut self, predictor: Arc<dyn Predictor>) -> Self {
        self.predictor = predictor;
        self
    }

    /// Lets `classifier` pick the method in the cost-analysis step once it is
    /// confident (`adaptation.classifier_min_confidence`), for pools that learn.
    pub fn classifier(mut self, classifier: Arc<dyn MethodClassifier>) -> Self {
        self.classifier = classifier;
        self
    }

    /// Gives decision functions read access to recorded metrics.
    pub fn metrics(mut self, metrics: Arc<dyn MetricsQuery>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Persists threshold changes in `store` and restores them from it.
    pub fn threshold_store(mut self, store: Arc<dyn ThresholdStore>) -> Self {
        self.store = store;
        self
    }

    /// Adds a decision function that runs among the rules at `priority`, for
    /// the listed pools (all pools when `pools` is empty).
    pub fn function(
        mut self,
        name: Name,
        priority: i32,
        pools: &[Name],
        function: Arc<dyn DecisionFunction>,
    ) -> Self {
        self.functions.push(RegisteredFunction {
            name,
            priority,
            pools: pools.to_vec(),
            function,
        });
        self
    }

    /// Seeds the exploration draws; the same seed gives the same decisions.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Decides with `costs` (this machine's calibration, e.g. the profile of a data directory)
    /// whenever a configuration states no costs of its own: one that names no `profile` and
    /// whose `[costs]` are the built-in defaults. This holds for the first configuration and
    /// for every reload.
    pub fn calibration(mut self, costs: CostCoefficients) -> Self {
        self.calibration = Some(costs);
        self
    }

    /// Validates the rule order and restores thresholds.
    pub fn build(self) -> Result<Controller, ControllerError> {
        let thresholds = ThresholdManager::restore(self.store)?;
        let counters = Mutex::new(BTreeMap::new());
        let config = calibrated(self.config, self.calibration.as_ref());
        let snapshot = compile(1, config, &self.functions, &thresholds, &counters)?;
        Ok(Controller {
            snapshot: ArcSwap::from_pointee(snapshot),
            thresholds,
            counters,
            functions: self.functions,
            predictor: self.predictor,
            classifier: self.classifier,
            metrics: self.metrics,
            rng: SplitMix::new(self.seed),
            reload: Mutex::new(()),
            calibration: self.calibration,
        })
    }
}

/// `config` with `calibration`'s costs when it states none of its own.
fn calibrated(config: Config, calibration: Option<&CostCoefficients>) -> Config {
    match calibration {
        Some(costs) => crate::calibrate::apply_calibration(config, costs),
        None => config,
    }
}

/// The decision engine.
///
/// `decide` reads one `ArcSwap` snapshot and a few atomics: no allocation, no
/// lock, no syscall. Reloads validate first and then swap the whole snapshot,
/// so a decision sees the old policy or the new one, never a mix.
pub struct Controller {
    snapshot: ArcSwap<Snapshot>,
    thresholds: ThresholdManager,
    counters: Mutex<BTreeMap<Name, Arc<Counters>>>,
    functions: Vec<RegisteredFunction>,
    predictor: Arc<dyn Predictor>,
    classifier: Arc<dyn MethodClassifier>,
    metrics: Arc<dyn MetricsQuery>,
    rng: SplitMix,
    reload: Mutex<()>,
    calibration: Option<CostCoefficients>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("version", &self.version())
            .field("predictor", &self.predictor.name())
            .field("classifier", &self.classifier.name())
            .finish_non_exhaustive()
    }
}

impl Controller {
    /// A builder for a controller running `config`.
    pub fn builder(config: Config) -> ControllerBuilder {
        ControllerBuilder {
            config,
            predictor: Arc::new(NoopPredictor),
            classifier: Arc::new(NoopClassifier),
            metrics: Arc::new(NoopQuery),
            store: Arc::new(NoopThresholdStore),
            functions: Vec::new(),
            seed: 0x5EED,
            calibration: None,
        }
    }

    /// A controller with `config` and every seam at its Noop.
    pub fn new(config: Config) -> Result<Controller, ControllerError> {
        Controller::builder(config).build()
    }

    /// Decides how `request` travels, and counts the decision.
    pub fn decide(&self, request: &TransferRequest, ctx: &DecisionContext) -> Decision {
        let snap = self.snapshot.load();
        let (pool, configured) = snap.pool(request.pool);
        let d = self.run(&snap, pool, configured, request, ctx, true);
        pool.counters.count(d.method, d.reason.code());
        d
    }

    /// Decides as [`Controller::decide`] does, except in a pool that runs an experiment now
    /// (between its start and stop): there the variant `assign` picks (an index into the
    /// experiment's variants, the last one past the end) decides with its settings, and the
    /// decision names the experiment and the variant. The pool's rules, threshold history and
    /// counters are shared by its variants.
    pub fn decide_assigned(
        &self,
        request: &TransferRequest,
        ctx: &DecisionContext,
        assign: &dyn Fn(&Experiment, &TransferRequest) -> usize,
    ) -> Decision {
        let snap = self.snapshot.load();
        let (pool, configured) = snap.pool(request.pool);
        let now_ms = ctx.now.0 / 1_000_000;
        let running = snap.experiments.iter().find(|e| {
            configured && e.pool == pool.name && snap.config.experiments[e.index].active_at(now_ms)
        });
        let d = match running {
            Some(state) => {
                let experiment = &snap.config.experiments[state.index];
                let v = assign(experiment, request).min(state.variants.len() - 1);
                let mut d = self.run(&snap, &state.variants[v], configured, request, ctx, true);
                d.experiment = Some(ExperimentArm {
                    experiment: experiment.name,
                    variant: experiment.variants[v].name,
                });
                d
            }
            None => self.run(&snap, pool, configured, request, ctx, true),
        };
        pool.counters.count(d.method, d.reason.code());
        d
    }

    /// Decides as `decide` would without exploring and without counting: what
    /// the policy would pick (for dry runs and diagnostics).
    pub fn preview(&self, request: &TransferRequest, ctx: &DecisionContext) -> Decision {
        let snap = self.snapshot.load();
        let (pool, configured) = snap.pool(request.pool);
        self.run(&snap, pool, configured, request, ctx, false)
    }

    /// The per-method estimates the cost analysis would use for `request`.
    pub fn estimate(&self, request: &TransferRequest, ctx: &DecisionContext) -> Estimates {
        let snap = self.snapshot.load();
        let (pool, _) = snap.pool(request.pool);
        let (estimates, _) = self.estimates(
            &snap.config.costs,
            &snap.config.adaptation,
            pool,
            request,
            ctx,
        );
        estimates
    }

    fn estimates(
        &self,
        costs: &CostCoefficients,
        adaptation: &Adaptation,
        pool: &PoolState,
        request: &TransferRequest,
        ctx: &DecisionContext,
    ) -> (Estimates, f64) {
        let weights = Weights::for_goal(pool.settings.goal, &ctx.system, adaptation);
        if pool.settings.learning
            && let Some(p) = self.predictor.predict(request, &ctx.system)
            && p.confidence >= adaptation.predictor_min_confidence
        {
            let e = weigh(p.zero_copy, p.grpc, EstimateSource::Predicted, &weights);
            return (e, p.confidence);
        }
        let (zc, grpc) = calibrated_estimates(costs, request, ctx.zero_copy, &ctx.system);
        (weigh(zc, grpc, EstimateSource::Calibrated, &weights), 1.0)
    }

    fn run(
        &self,
        snap: &Snapshot,
        pool: &PoolState,
        configured: bool,
        request: &TransferRequest,
        ctx: &DecisionContext,
        explore: bool,
    ) -> Decision {
        let s = &pool.settings;
        let adaptation = &snap.config.adaptation;
        let threshold = breakdown(s, pool.history.load(), &ctx.system, adaptation);
        let reply_threshold = reply_threshold(
            request,
            ctx,
            self.predictor.reply_crossover(pool.name),
            threshold.effective,
            (s.floor, s.ceiling),
        );
        let decision = |method, reason, estimates, confidence, propensity| Decision {
            method,
            reason,
            pool: pool.name,
            pool_configured: configured,
            goal: s.goal,
            size: request.size,
            threshold,
            reply_threshold,
            verify: s.verify,
            estimates,
            confidence,
            propensity,
            policy_version: snap.version,
            decided_at: ctx.now,
            experiment: None,
        };

        if let Some((method, reason)) = forced(request, ctx) {
            return decision(method, reason, None, 1.0, 1.0);
        }
        for step in &pool.steps {
            match step {
                RuleStep::Rule {
                    name,
                    priority,
                    condition,
                    method,
                } if condition.matches(request) => {
                    let reason = Reason::Rule {
                        name: *name,
                        priority: *priority,
                    };
                    return decision(*method, reason, None, 1.0, 1.0);
                }
                RuleStep::Function {
                    name,
                    priority,
                    function,
                } => {
                    if let Some(method) = function.decide(request, ctx, self.metrics.as_ref()) {
                        let reason = Reason::Function {
                            name: *name,
                            priority: *priority,
                        };
                        return decision(method, reason, None, 1.0, 1.0);
                    }
                }
                RuleStep::Rule { .. } => {}
            }
        }
        if request.size < s.floor {
            let reason = Reason::BelowFloor { floor: s.floor };
            return decision(Method::Grpc, reason, None, 1.0, 1.0);
        }
        if request.size > s.ceiling {
            let reason = Reason::AboveCeiling { ceiling: s.ceiling };
            return decision(Method::ZeroCopy, reason, None, 1.0, 1.0);
        }

        let (e, source_confidence) =
            self.estimates(&snap.config.costs, adaptation, pool, request, ctx);
        let gain = e.zero_copy_gain;
        let verdict = if s.learning {
            self.classifier
                .classify(request, ctx)
                .filter(|v| v.confidence >= adaptation.classifier_min_confidence)
        } else {
            None
        };
        let (greedy, reason, confidence) = if let Some(v) = verdict {
            let reason = Reason::Learned {
                confidence: v.confidence,
                model_version: v.model_version,
            };
            (v.method, reason, v.confidence.min(1.0))
        } else if e.source == EstimateSource::Calibrated && request.size < threshold.effective {
            let distance = (threshold.effective as f64 / request.size.max(1) as f64).log2();
            let confidence = 0.5 + 0.5 * (distance / s.exploration_band.log2().max(1.0)).min(1.0);
            (Method::Grpc, Reason::BelowThreshold, confidence)
        } else {
            let confidence = (0.5 + gain.abs()).min(1.0) * source_confidence;
            if gain >= s.marginal_gain {
                (Method::ZeroCopy, Reason::CostAnalysis { gain }, confidence)
            } else if gain > 0.0 {
                let reason = Reason::MarginalGain {
                    gain,
                    marginal: s.marginal_gain,
                };
                (Method::Grpc, reason, confidence)
            } else {
                (
                    Method::Grpc,
                    Reason::CostAnalysis { gain: -gain },
                    confidence,
                )
            }
        };

        // A learned pick explores less the surer it is (down to
        // `exploration_min_share` of the rate); the static rules explore at the
        // full rate, since nothing measured backs them yet.
        let learned = verdict.is_some() || e.source == EstimateSource::Predicted;
        let eps = if learned {
            let share = (2.0 * (1.0 - confidence)).clamp(adaptation.exploration_min_share, 1.0);
            s.exploration_rate * share
        } else {
            s.exploration_rate
        };
        let band_lo = (threshold.effective as f64 / s.exploration_band).max(s.floor as f64);
        let band_hi = (threshold.effective as f64 * s.exploration_band).min(s.ceiling as f64);
        let size = request.size as f64;
        let in_band = s.learning && eps > 0.0 && size >= band_lo && size <= band_hi;
        if !in_band {
            return decision(greedy, reason, Some(e), confidence, 1.0);
        }
        if explore && self.rng.next_f64() < eps {
            let reason = Reason::Exploration {
                greedy,
                epsilon: eps,
            };
            return decision(greedy.other(), reason, Some(e), 1.0 - confidence, eps);
        }
        decision(greedy, reason, Some(e), confidence, 1.0 - eps)
    }

    /// Validates `config` and swaps it in whole; returns the new version.
    pub fn reload(&self, config: Config) -> Result<u64, ConfigErrors> {
        let _one_at_a_time = self.reload.lock().unwrap_or_else(|e| e.into_inner());
        let version = self.snapshot.load().version + 1;
        let snap = compile(
            version,
            calibrated(config, self.calibration.as_ref()),
            &self.functions,
            &self.thresholds,
            &self.counters,
        )?;
        self.snapshot.store(Arc::new(snap));
        Ok(version)
    }

    /// Parses, validates and swaps in a TOML configuration.
    pub fn reload_toml(&self, text: &str) -> Result<u64, ConfigErrors> {
        self.reload(Config::from_toml_str(text)?)
    }

    /// The calibration a configuration without costs of its own decides with, when one was
    /// given ([`ControllerBuilder::calibration`]).
    pub fn calibration(&self) -> Option<&CostCoefficients> {
        self.calibration.as_ref()
    }

    /// `config` as a reload would put it in force: with the calibration's costs when it states
    /// none of its own (see [`ControllerBuilder::calibration`]); what a dry run compares.
    pub fn effective(&self, config: Config) -> Config {
        calibrated(config, self.calibration.as_ref())
    }

    /// The configuration version in force (1 for the first).
    pub fn version(&self) -> u64 {
        self.snapshot.load().version
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.snapshot.load().config.clone()
    }

    /// Whether `pool` is configured (others are decided by `default`).
    pub fn has_pool(&self, pool: Name) -> bool {
        self.snapshot.load().pool(pool).1
    }

    /// Decision counts of `pool` since start, across reloads.
    pub fn counts(&self, pool: Name) -> Option<DecisionCounts> {
        let snap = self.snapshot.load();
        let (p, configured) = snap.pool(pool);
        configured.then(|| p.counters.read())
    }

    /// The effective threshold of `pool` under `system`.
    pub fn threshold(
        &self,
        pool: Name,
        system: &crate::request::SystemState,
    ) -> Result<ThresholdBreakdown, ThresholdError> {
        let snap = self.snapshot.load();
        let (p, configured) = snap.pool(pool);
        if !configured {
            return Err(ThresholdError::UnknownPool(pool.to_string()));
        }
        Ok(breakdown(
            &p.settings,
            p.history.load(),
            system,
            &snap.config.adaptation,
        ))
    }

    /// Moves `pool`'s threshold toward `target` bytes (bounded per step and
    /// overall), logging the reason and expected gain.
    pub fn adjust_threshold(
        &self,
        pool: Name,
        target: u64,
        reason: &str,
        expected_gain: f64,
        now: Timestamp,
    ) -> Result<ThresholdChange, ThresholdError> {
        let proposal = Proposal {
            target,
            reason,
            expected_gain,
            at: now,
        };
        self.propose(pool, &proposal)
    }

    /// Restores the thresholds of `pool`, or of every pool, to their configured base.
    pub fn reset_thresholds(
        &self,
        pool: Option<Name>,
        reason: &str,
        now: Timestamp,
    ) -> Result<Vec<ThresholdChange>, ThresholdError> {
        let snap = self.snapshot.load();
        let mut changes = Vec::new();
        for p in &snap.pools {
            if pool.is_none_or(|n| n == p.name) {
                changes.push(self.thresholds.reset(p.name, &p.settings, reason, now)?);
            }
        }
        if let Some(n) = pool
            && changes.is_empty()
        {
            return Err(ThresholdError::UnknownPool(n.to_string()));
        }
        Ok(changes)
    }

    /// Every logged threshold change, oldest first.
    pub fn threshold_history(&self) -> Vec<ThresholdChange> {
        self.thresholds.history()
    }
}

impl TransferPolicy for Controller {
    fn name(&self) -> &str {
        "threshold-cost"
    }
    fn decide(&self, request: &TransferRequest, ctx: &DecisionContext) -> Decision {
        Controller::decide(self, request, ctx)
    }
}

impl ThresholdControl for Controller {
    fn threshold(
        &self,
        pool: Name,
        system: &crate::request::SystemState,
    ) -> Result<ThresholdBreakdown, ThresholdError> {
        Controller::threshold(self, pool, system)
    }
    fn propose(
        &self,
        pool: Name,
        proposal: &Proposal<'_>,
    ) -> Result<ThresholdChange, ThresholdError> {
        let snap = self.snapshot.load();
        let (p, configured) = snap.pool(pool);
        if !configured {
            return Err(ThresholdError::UnknownPool(pool.to_string()));
        }
        self.thresholds
            .adjust_toward(pool, &p.settings, &snap.config.adaptation, proposal)
    }
}
