//! The learning engine: gathers paired evidence, trains the classifier in the
//! background, validates it before it decides anything, publishes it with one
//! atomic swap, watches it for drift and for lost accuracy, and moves each
//! pool's threshold toward the measured crossover.

use std::collections::VecDeque;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use perf_core::{
    DecisionContext, MethodClassifier, ModelStore, Name, Proposal, ThresholdControl, Timestamp,
    TransferMetrics, TransferRequest, Verdict,
};

use crate::dataset::{PairedDataset, PairedSample, Pairer, Source};
use crate::drift::{FeatureDrift, PageHinkley};
use crate::features::{Conditions, LoadTracker, request_features};
use crate::model::{Classifier, Evaluation, LearnError};

mod config;
mod crossover;
mod event;

pub use config::{BASELINE_TOLERANCE, LearnConfig, MODEL_NAME};
pub use crossover::{Crossover, crossover};
pub use event::{Event, EventKind, Status, Trigger};

/// The most events kept.
const MAX_EVENTS: usize = 256;

/// What the engine shares with the decision path.
#[derive(Debug)]
struct Shared {
    model: ArcSwapOption<Classifier>,
    load: LoadTracker,
}

/// The classifier as the controller sees it: one atomic load, a feature
/// vector on the stack and a walk down a flat tree; no lock, no allocation.
#[derive(Debug, Clone)]
pub struct LearnedClassifier(Arc<Shared>);

impl MethodClassifier for LearnedClassifier {
    fn name(&self) -> &str {
        "paired-evidence decision tree"
    }
    fn classify(&self, request: &TransferRequest, ctx: &DecisionContext) -> Option<Verdict> {
        let guard = self.0.model.load();
        let model = guard.as_ref()?;
        // No evidence about sizes far from those it learned: the rules decide.
        if !model.covers(request.size) {
            return None;
        }
        let conditions = Conditions::new(&ctx.system, ctx.now, &self.0.load);
        let (method, confidence) = model.predict(&request_features(request, &conditions));
        Some(Verdict {
            method,
            confidence,
            model_version: model.version,
        })
    }
}

impl LearnedClassifier {
    /// A classifier that always answers with `model` (e.g. one loaded from a
    /// store for a dry run); its slowdown averages stay at zero.
    pub fn fixed(model: Classifier) -> LearnedClassifier {
        LearnedClassifier(Arc::new(Shared {
            model: ArcSwapOption::from_pointee(model),
            load: LoadTracker::default(),
        }))
    }

    /// The published model, if one decides.
    pub fn model(&self) -> Option<Arc<Classifier>> {
        self.0.model.load_full()
    }
}

/// The learning engine. It runs on its own thread, fed with every transfer;
/// the controller reads its published model through [`LearnedClassifier`].
pub struct LearningEngine {
    config: LearnConfig,
    shared: Arc<Shared>,
    pairer: Pairer,
    window: VecDeque<PairedSample>,
    since_train: usize,
    drift_pending: Option<u64>,
    retrain_pending: Option<Trigger>,
    live: VecDeque<bool>,
    page_hinkley: Option<PageHinkley>,
    feature_drift: Vec<(usize, FeatureDrift)>,
    drift_sampled_at: u64,
    since_drift_check: usize,
    store: Option<Arc<dyn ModelStore>>,
    thresholds: Option<Arc<dyn ThresholdControl>>,
    events: VecDeque<Event>,
    observed: u64,
    replayed: u64,
    failed: u64,
    paired: u64,
    trainings: u64,
    drifts: u64,
    next_version: u64,
}

impl std::fmt::Debug for LearningEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LearningEngine")
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

/// Features watched for drift: CPU utilisation, one value per
/// `drift_sample_every` of pair time: consecutive pairs see the same probe
/// sample, and repeated values are not independent evidence. (Memory in use creeps up
/// with the page cache of any long run without changing which method wins;
/// the slowdown averages move with every transfer; both are watched through
/// the regret instead.)
const DRIFT_FEATURES: [usize; 1] = [4];

/// The least Kolmogorov-Smirnov distance that counts as drift, besides
/// significance: a shift this large changes the workload, a smaller one with
/// many samples does not.
const MIN_DRIFT_DISTANCE: f64 = 0.6;

impl LearningEngine {
    /// The least `min_samples` an engine accepts: fewer cannot be split into
    /// a training and a validation set worth the name.
    pub const MIN_SAMPLES: usize = 20;

    /// An engine with no model yet.
    pub fn new(mut config: LearnConfig) -> LearningEngine {
        config.min_samples = config.min_samples.max(Self::MIN_SAMPLES);
        config.retrain_after_drift = config.retrain_after_drift.max(Self::MIN_SAMPLES);
        config.max_samples = config.max_samples.max(config.min_samples);
        LearningEngine {
            config,
            shared: Arc::new(Shared {
                model: ArcSwapOption::empty(),
                load: LoadTracker::default(),
            }),
            pairer: Pairer::new(config.pair_max_age, config.pair_max_cpu_gap),
            window: VecDeque::new(),
            since_train: 0,
            drift_pending: None,
            retrain_pending: None,
            live: VecDeque::new(),
            page_hinkley: page_hinkley(),
            feature_drift: Vec::new(),
            since_drift_check: 0,
            drift_sampled_at: 0,
            store: None,
            thresholds: None,
            events: VecDeque::new(),
            observed: 0,
            replayed: 0,
            failed: 0,
            paired: 0,
            trainings: 0,
            drifts: 0,
            next_version: 1,
        }
    }

    /// Persists published models in `store`, and starts from the newest one
    /// there if it loads and checks; otherwise the rules decide and an alert
    /// event says why.
    pub fn with_store(mut self, store: Arc<dyn ModelStore>, now: Timestamp) -> LearningEngine {
        match store.load_model(MODEL_NAME) {
            Ok(None) => {}
            // Learning switched off: a stored model never decides.
            Ok(Some(_)) if !self.config.enabled => {}
            Ok(Some(stored)) => match Classifier::decode(&stored.bytes) {
                Ok(mut model) => {
                    model.version = stored.version;
                    self.next_version = stored.version + 1;
                    let version = model.version;
                    self.install(model);
                    self.event(now, EventKind::Loaded { version });
                }
                Err(e) => {
                    self.next_version = stored.version + 1;
                    let error = format!("{MODEL_NAME} v{}: {e}", stored.version);
                    self.event(now, EventKind::LoadFailed { error });
                }
            },
            Err(e) => {
                let error = e.to_string();
                self.event(now, EventKind::LoadFailed { error });
            }
        }
        self.store = Some(store);
        self
    }

    /// Moves the pool thresholds of `controller` (the policy's [`ThresholdControl`], e.g. a
    /// `perf_core::Controller`) toward the measured crossover.
    pub fn with_controller(mut self, controller: Arc<dyn ThresholdControl>) -> LearningEngine {
        self.thresholds = Some(controller);
        self
    }

    /// The classifier to hand to the controller.
    pub fn classifier(&self) -> LearnedClassifier {
        LearnedClassifier(self.shared.clone())
    }

    /// The configuration.
    pub fn config(&self) -> &LearnConfig {
        &self.config
    }

    /// Events so far, oldest first (the last 256).
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.events.iter()
    }

    /// The paired samples kept for training.
    pub fn samples(&self) -> impl Iterator<Item = &PairedSample> {
        self.window.iter()
    }

    /// Where things stand.
    pub fn status(&self) -> Status {
        let model = self.shared.model.load_full();
        let live = (!self.live.is_empty())
            .then(|| self.live.iter().filter(|&&x| x).count() as f64 / self.live.len() as f64);
        Status {
            enabled: self.config.enabled,
            active: model.is_some(),
            version: model.as_ref().map_or(0, |m| m.version),
            trained_on: model.as_ref().map_or(0, |m| m.trained_on),
            validation: model.as_ref().map(|m| m.validation),
            live_accuracy: live,
            observed: self.observed,
            replayed: self.replayed,
            failed: self.failed,
            paired: self.paired,
            window: self.window.len(),
            trainings: self.trainings,
            drifts: self.drifts,
            min_samples: self.config.min_samples,
        }
    }

    fn event(&mut self, at: Timestamp, kind: EventKind) {
        if self.events.len() == MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(Event {
            at,
            observed: self.observed,
            paired: self.paired,
            kind,
        });
    }

    fn install(&mut self, model: Classifier) {
        // An alpha of 0 (or a window out of range) switches the feature tests off.
        self.feature_drift = DRIFT_FEATURES
            .iter()
            .filter_map(|&j| {
                let reference: Vec<f64> = model.reference.iter().map(|r| r[j]).collect();
                FeatureDrift::new(
                    &reference,
                    self.config.drift_window,
                    self.config.drift_alpha,
                )
                .ok()
                .map(|test| (j, test))
            })
            .collect();
        self.since_drift_check = 0;
        self.page_hinkley = page_hinkley();
        self.live.clear();
        self.shared.model.store(Some(Arc::new(model)));
    }

    /// Folds in one transfer: load averages, live pairing, drift and accuracy
    /// watch, and training when due.
    pub fn observe(&mut self, m: &TransferMetrics) {
        self.observed += 1;
        self.fold(m);
    }

    /// Folds in transfers recorded before this engine started (oldest first),
    /// e.g. from the metrics store, so that evidence gathered by earlier runs
    /// counts; they are counted as `replayed`, not `observed`.
    pub fn replay(&mut self, history: &[TransferMetrics]) {
        self.replayed += history.len() as u64;
        for m in history {
            self.fold(m);
        }
    }

    fn fold(&mut self, m: &TransferMetrics) {
        // A failed transfer's latency is the time until it failed: no evidence of either
        // method's speed, for pairing, load averages, training or drift.
        if !m.is_evidence() {
            self.failed += 1;
            return;
        }
        let conditions = Conditions::new(&m.system, m.started_at, &self.shared.load);
        if m.fallback.is_none() {
            self.shared.load.observe(m.method, m.size, m.latency_us);
        }
        if let Some(sample) = self.pairer.offer(m, conditions) {
            self.add(sample);
        }
    }

    /// Adds paired samples measured elsewhere (e.g. `perfopt model collect`).
    pub fn add_paired(&mut self, samples: &[PairedSample]) {
        for s in samples {
            self.add(*s);
        }
    }

    fn add(&mut self, s: PairedSample) {
        if s.problem().is_some() {
            return;
        }
        self.paired += 1;
        self.since_train += 1;
        if self.window.len() == self.config.max_samples.max(1) {
            self.window.pop_front();
        }
        self.window.push_back(s);
        if s.source == Source::Live {
            self.watch(&s);
        }
        self.maybe_train(s.at);
    }

    /// Checks the published model against a live pair.
    fn watch(&mut self, s: &PairedSample) {
        let Some(model) = self.shared.model.load_full() else {
            return;
        };
        let chosen = model.pick(s);
        let right = chosen == s.faster();
        if self.live.len() == self.config.live_window.max(1) {
            self.live.pop_front();
        }
        self.live.push_back(right);
        // Regret of this pick, capped: the error series Page-Hinkley watches.
        let regret = ((s.latency(chosen) / s.latency(s.faster())) - 1.0).min(1.0);
        let ph = self.page_hinkley.as_mut().is_some_and(|p| p.update(regret));
        let mut fired = ph.then(|| {
            let statistic = self
                .page_hinkley
                .as_ref()
                .map_or(0.0, PageHinkley::statistic);
            ("page_hinkley(regret)".to_string(), statistic)
        });
        // One feature value per sampling interval; the test runs once per
        // quarter window, so that repeated testing does not raise false alarms.
        let features = s.features();
        let every = self
            .config
            .drift_sample_every
            .as_nanos()
            .min(u128::from(u64::MAX)) as u64;
        if s.at.as_nanos() >= self.drift_sampled_at.saturating_add(every) {
            self.drift_sampled_at = s.at.as_nanos();
            self.since_drift_check += 1;
            let due = self.since_drift_check >= (self.config.drift_window / 4).max(1);
            if due {
                self.since_drift_check = 0;
            }
            for (j, test) in &mut self.feature_drift {
                test.push(features[*j]);
                if due
                    && fired.is_none()
                    && test.len() >= self.config.drift_window
                    && let Some(result) = test.check()
                    && result.drifted
                    && result.test.statistic >= MIN_DRIFT_DISTANCE
                {
                    let name = crate::features::FEATURE_NAMES[*j];
                    fired = Some((format!("ks({name})"), result.test.statistic));
                }
            }
        }
        if let Some((test, statistic)) = fired
            && self.drift_pending.is_none()
        {
            self.drifts += 1;
            self.drift_pending = Some(self.paired);
            self.event(s.at, EventKind::Drift { test, statistic });
        }
        let floor_window = self.config.live_window.max(1);
        if self.live.len() >= floor_window.min(50) {
            let accuracy = self.live.iter().filter(|&&x| x).count() as f64 / self.live.len() as f64;
            let floor = (model.validation.accuracy - self.config.live_accuracy_drop)
                .min(self.config.min_accuracy);
            if self.live.len() >= floor_window / 2 && accuracy < floor {
                self.shared.model.store(None);
                self.live.clear();
                // What the features did not capture changed: the evidence from
                // before says nothing reliable about now.
                self.window.clear();
                self.since_train = 0;
                self.retrain_pending = Some(Trigger::LostAccuracy);
                self.event(
                    s.at,
                    EventKind::Dropped {
                        live_accuracy: accuracy,
                    },
                );
            }
        }
    }

    fn maybe_train(&mut self, now: Timestamp) {
        if !self.config.enabled {
            return;
        }
        let has_model = self.shared.model.load().is_some();
        let after_change = self.config.retrain_after_drift;
        let trigger = if let Some(at) = self.drift_pending {
            (self.paired - at >= after_change as u64).then_some(Trigger::Drift)
        } else if let Some(t) = self.retrain_pending {
            (self.since_train >= after_change).then_some(t)
        } else if has_model {
            (self.since_train >= self.config.retrain_every).then_some(Trigger::Refresh)
        } else if self.trainings == 0 {
            (self.window.len() >= self.config.min_samples).then_some(Trigger::FirstModel)
        } else {
            // The last model was rejected: try again with fresh evidence.
            (self.since_train >= after_change).then_some(Trigger::FirstModel)
        };
        if let Some(trigger) = trigger
            && self.window.len() >= self.config.min_samples.min(self.config.retrain_after_drift)
        {
            let _ = self.train(trigger, now);
        }
    }

    /// Trains on the kept samples, validates on the held-out share, and
    /// publishes the model if it passes; returns the validation.
    pub fn train(&mut self, trigger: Trigger, now: Timestamp) -> Result<Evaluation, LearnError> {
        self.trainings += 1;
        self.since_train = 0;
        self.drift_pending = None;
        self.retrain_pending = None;
        let data = PairedDataset {
            samples: self.window.iter().copied().collect(),
        };
        let (train, test) = data.split(self.config.train_fraction, self.config.seed);
        if test.is_empty() {
            let e = LearnError::TooFew {
                got: data.samples.len(),
                need: 10,
            };
            let error = e.to_string();
            self.event(now, EventKind::TrainingFailed { error });
            return Err(e);
        }
        let mut model = match Classifier::train(&train, &self.config.tree, now) {
            Ok(m) => m,
            Err(e) => {
                let error = e.to_string();
                self.event(now, EventKind::TrainingFailed { error });
                return Err(e);
            }
        };
        let validation = model.evaluate(&test);
        model.validation = validation;
        let best_constant = validation
            .always_grpc_us
            .min(validation.always_zero_copy_us);
        let passes = validation.accuracy >= self.config.min_accuracy
            && validation.regret <= self.config.max_regret
            && validation.model_us <= best_constant * (1.0 + BASELINE_TOLERANCE);
        if !passes {
            self.event(
                now,
                EventKind::Rejected {
                    trigger,
                    validation,
                },
            );
            return Ok(validation);
        }
        model.version = self.next_version;
        self.next_version += 1;
        if let Some(store) = &self.store {
            match store.save_model(MODEL_NAME, &model.encode(), now) {
                Ok(v) if v > 0 => {
                    model.version = v;
                    self.next_version = v + 1;
                }
                Ok(_) => {}
                Err(e) => {
                    let error = e.to_string();
                    self.event(now, EventKind::SaveFailed { error });
                }
            }
        }
        let version = model.version;
        self.install(model);
        self.event(
            now,
            EventKind::Published {
                version,
                trigger,
                validation,
            },
        );
        if self.config.adjust_thresholds {
            self.move_thresholds(now);
        }
        Ok(validation)
    }

    /// Moves each configured pool's threshold toward the crossover measured
    /// in its kept samples.
    fn move_thresholds(&mut self, now: Timestamp) {
        let Some(control) = self.thresholds.clone() else {
            return;
        };
        let mut pools: Vec<Name> = self.window.iter().map(|s| s.pool).collect();
        pools.sort();
        pools.dedup();
        for pool in pools {
            // A pool the policy does not configure has no threshold of its own to move.
            let Ok(before) = control.threshold(pool, &perf_core::SystemState::IDLE) else {
                continue;
            };
            let samples: Vec<PairedSample> = self
                .window
                .iter()
                .filter(|s| s.pool == pool)
                .copied()
                .collect();
            let Some(c) = crossover(&samples, before.effective) else {
                continue;
            };
            if c.crossover == before.effective || c.expected_gain <= 0.0 {
                continue;
            }
            let reason = format!(
                "paired evidence ({} samples) puts the crossover at {}",
                samples.len(),
                perf_core::HumanSize(c.crossover)
            );
            let proposal = Proposal {
                target: c.crossover,
                reason: &reason,
                expected_gain: c.expected_gain,
                at: now,
            };
            if let Ok(change) = control.propose(pool, &proposal)
                && change.to_factor != change.from_factor
            {
                let kind = EventKind::ThresholdMoved {
                    pool,
                    crossover: c.crossover,
                    from: change.from_bytes,
                    to: change.to_bytes,
                    expected_gain: c.expected_gain,
                };
                self.event(now, kind);
            }
        }
    }
}

fn page_hinkley() -> Option<PageHinkley> {
    // Regret per pair is 0 when the pick is right and up to 1 when wrong
    // (about 0.05 on average on a noisy machine); a sustained rise of the mean
    // by 0.15 alarms within about 150 pairs, jitter does not.
    PageHinkley::new(0.05, 15.0, 100).ok()
}
