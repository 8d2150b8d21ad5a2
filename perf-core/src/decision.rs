//! The outcome of one decision: method, reason, estimates, and its readable rationale.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::name::Name;
use crate::request::Timestamp;
use crate::size::{HumanMicros, HumanSize};
use crate::vocab::{Goal, Method, Verification};

/// The step of the decision order that made a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Caller override, remote worker or no shared memory.
    Forced,
    /// A user rule or decision function.
    Rule,
    /// The pool's floor or ceiling.
    QuickPath,
    /// Per-method cost estimates weighed by the goal.
    CostAnalysis,
    /// A deliberate try of the other method inside the ambiguous band.
    Exploration,
}

/// Why a decision came out as it did: the step and the rule inside it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Reason {
    /// The caller asked for this method.
    Override,
    /// The worker is on another host.
    RemoteWorker,
    /// Shared memory is unavailable or exhausted.
    ZeroCopyUnavailable,
    /// A configured rule matched.
    Rule {
        /// The rule's name.
        name: Name,
        /// Its priority (higher wins).
        priority: i32,
    },
    /// A fixed policy that always picks one method (a baseline).
    Fixed,
    /// A user-defined decision function chose.
    Function {
        /// The function's name.
        name: Name,
        /// Its priority (higher wins).
        priority: i32,
    },
    /// The size is under the pool's floor.
    BelowFloor {
        /// The floor in bytes.
        floor: u64,
    },
    /// The size is over the pool's ceiling.
    AboveCeiling {
        /// The ceiling in bytes.
        ceiling: u64,
    },
    /// The size is under the pool's effective threshold and no confident
    /// prediction says otherwise.
    BelowThreshold,
    /// The chosen method's goal-weighted cost is lower by `gain` (a fraction).
    CostAnalysis {
        /// Relative goal-weighted gain of the chosen method over the other.
        gain: f64,
    },
    /// Zero-copy gains less than the marginal threshold, so the simpler gRPC wins.
    MarginalGain {
        /// Relative goal-weighted gain of zero-copy over gRPC.
        gain: f64,
        /// The pool's marginal-gain threshold.
        marginal: f64,
    },
    /// A classifier trained on paired measurements of both methods expects
    /// this method to be faster.
    Learned {
        /// The classifier's probability that the chosen method is faster.
        confidence: f64,
        /// The version of the model that answered.
        model_version: u64,
    },
    /// Exploration picked the method the policy would not have.
    Exploration {
        /// The method the policy would have picked.
        greedy: Method,
        /// The exploration rate in force.
        epsilon: f64,
    },
}

/// A [`Reason`] without its details, for counting and storage; it reads and
/// writes as `step.rule` (e.g. `quick_path.below_floor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReasonCode {
    /// See [`Reason::Override`].
    Override,
    /// See [`Reason::RemoteWorker`].
    RemoteWorker,
    /// See [`Reason::ZeroCopyUnavailable`].
    ZeroCopyUnavailable,
    /// See [`Reason::Rule`].
    Rule,
    /// See [`Reason::Fixed`].
    Fixed,
    /// See [`Reason::Function`].
    Function,
    /// See [`Reason::BelowFloor`].
    BelowFloor,
    /// See [`Reason::AboveCeiling`].
    AboveCeiling,
    /// See [`Reason::BelowThreshold`].
    BelowThreshold,
    /// See [`Reason::CostAnalysis`].
    CostAnalysis,
    /// See [`Reason::MarginalGain`].
    MarginalGain,
    /// See [`Reason::Learned`].
    Learned,
    /// See [`Reason::Exploration`].
    Exploration,
}

impl ReasonCode {
    /// Every code, in decision order.
    pub const ALL: [ReasonCode; 13] = [
        ReasonCode::Override,
        ReasonCode::RemoteWorker,
        ReasonCode::ZeroCopyUnavailable,
        ReasonCode::Rule,
        ReasonCode::Fixed,
        ReasonCode::Function,
        ReasonCode::BelowFloor,
        ReasonCode::AboveCeiling,
        ReasonCode::BelowThreshold,
        ReasonCode::CostAnalysis,
        ReasonCode::MarginalGain,
        ReasonCode::Learned,
        ReasonCode::Exploration,
    ];

    /// `step.rule`, e.g. `quick_path.below_floor`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ReasonCode::Override => "forced.override",
            ReasonCode::RemoteWorker => "forced.remote_worker",
            ReasonCode::ZeroCopyUnavailable => "forced.zero_copy_unavailable",
            ReasonCode::Rule => "rule.user_rule",
            ReasonCode::Fixed => "rule.fixed_policy",
            ReasonCode::Function => "rule.decision_function",
            ReasonCode::BelowFloor => "quick_path.below_floor",
            ReasonCode::AboveCeiling => "quick_path.above_ceiling",
            ReasonCode::BelowThreshold => "cost_analysis.below_threshold",
            ReasonCode::CostAnalysis => "cost_analysis.lower_cost",
            ReasonCode::MarginalGain => "cost_analysis.marginal_gain",
            ReasonCode::Learned => "cost_analysis.learned_classifier",
            ReasonCode::Exploration => "exploration.epsilon_greedy",
        }
    }

    /// The step this code belongs to.
    pub const fn step(self) -> Step {
        match self {
            ReasonCode::Override | ReasonCode::RemoteWorker | ReasonCode::ZeroCopyUnavailable => {
                Step::Forced
            }
            ReasonCode::Rule | ReasonCode::Fixed | ReasonCode::Function => Step::Rule,
            ReasonCode::BelowFloor | ReasonCode::AboveCeiling => Step::QuickPath,
            ReasonCode::BelowThreshold
            | ReasonCode::CostAnalysis
            | ReasonCode::MarginalGain
            | ReasonCode::Learned => Step::CostAnalysis,
            ReasonCode::Exploration => Step::Exploration,
        }
    }

    /// A dense index for per-reason counters.
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl Serialize for ReasonCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ReasonCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        ReasonCode::ALL
            .into_iter()
            .find(|c| c.as_str() == text)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown reason code {text:?}")))
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Reason {
    /// The code of this reason.
    pub const fn code(&self) -> ReasonCode {
        match self {
            Reason::Override => ReasonCode::Override,
            Reason::RemoteWorker => ReasonCode::RemoteWorker,
            Reason::ZeroCopyUnavailable => ReasonCode::ZeroCopyUnavailable,
            Reason::Rule { .. } => ReasonCode::Rule,
            Reason::Fixed => ReasonCode::Fixed,
            Reason::Function { .. } => ReasonCode::Function,
            Reason::BelowFloor { .. } => ReasonCode::BelowFloor,
            Reason::AboveCeiling { .. } => ReasonCode::AboveCeiling,
            Reason::BelowThreshold => ReasonCode::BelowThreshold,
            Reason::CostAnalysis { .. } => ReasonCode::CostAnalysis,
            Reason::MarginalGain { .. } => ReasonCode::MarginalGain,
            Reason::Learned { .. } => ReasonCode::Learned,
            Reason::Exploration { .. } => ReasonCode::Exploration,
        }
    }

    /// The step that made the decision.
    pub const fn step(&self) -> Step {
        self.code().step()
    }

    /// Whether this decision was an exploration.
    pub const fn is_exploration(&self) -> bool {
        matches!(self, Reason::Exploration { .. })
    }

    /// The user rule or decision function that decided, if one did.
    pub const fn rule_name(&self) -> Option<Name> {
        match self {
            Reason::Rule { name, .. } | Reason::Function { name, .. } => Some(*name),
            _ => None,
        }
    }
}

/// Where a cost estimate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EstimateSource {
    /// The static coefficients of the configuration or calibration profile.
    Calibrated,
    /// A confident [`Predictor`](crate::Predictor) learned from history.
    Predicted,
}

/// The estimated cost of carrying one payload by one method.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct MethodEstimate {
    /// End-to-end latency, in microseconds.
    pub latency_us: f64,
    /// Fixed setup: call, reference, notification, segment creation; microseconds.
    pub setup_us: f64,
    /// Moving the bytes: copy into a segment, or serialize and send; microseconds.
    pub transfer_us: f64,
    /// First-touch page faults of a fresh segment, in microseconds.
    pub page_fault_us: f64,
    /// Cleanup: returning or unlinking a segment, freeing buffers; microseconds.
    pub cleanup_us: f64,
    /// Peak extra memory held, in bytes.
    pub memory_bytes: u64,
    /// CPU time on both sides, in microseconds.
    pub cpu_us: f64,
    /// A prediction interval for the latency (low, high), when a predictor gave one.
    pub interval_us: Option<(f64, f64)>,
}

/// Per-method estimates of one request.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimates {
    /// The zero-copy estimate.
    pub zero_copy: MethodEstimate,
    /// The gRPC estimate.
    pub grpc: MethodEstimate,
    /// Where the estimates came from.
    pub source: EstimateSource,
    /// Goal-weighted relative gain of zero-copy over gRPC, in -1.0..=1.0
    /// (positive: zero-copy is cheaper).
    pub zero_copy_gain: f64,
}

impl Estimates {
    /// The estimate of `method`.
    pub const fn of(&self, method: Method) -> &MethodEstimate {
        match method {
            Method::ZeroCopy => &self.zero_copy,
            Method::Grpc => &self.grpc,
        }
    }
}

/// How the pool's effective threshold was made: base x history x resources.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ThresholdBreakdown {
    /// The configured threshold, in bytes.
    pub base: u64,
    /// The adjustment learned from history.
    pub history: f64,
    /// The factor from current load and memory pressure.
    pub resources: f64,
    /// `base x history x resources`, clamped to the pool's floor and ceiling.
    pub effective: u64,
}

/// One decision: which method, why, and what it expected.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The chosen method.
    pub method: Method,
    /// The step and rule that chose it.
    pub reason: Reason,
    /// The pool whose policy decided.
    pub pool: Name,
    /// Whether the pool is configured; an unknown pool is decided by the
    /// `default` pool's policy.
    pub pool_configured: bool,
    /// The pool's goal.
    pub goal: Goal,
    /// The payload size in bytes.
    pub size: u64,
    /// The pool's threshold at the time.
    pub threshold: ThresholdBreakdown,
    /// When the transfer is a call: replies of at least this many bytes come back by shared
    /// memory (see [`crate::policy::reply_threshold`]).
    #[serde(default = "never")]
    pub reply_threshold: u64,
    /// How much of the payload a zero-copy worker hashes for the host to check: the pool's
    /// `verify` setting. Decisions recorded before the setting existed verified fully.
    #[serde(default)]
    pub verify: Verification,
    /// Per-method estimates, when the cost analysis ran.
    pub estimates: Option<Estimates>,
    /// How sure the policy is, 0.0 to 1.0.
    pub confidence: f64,
    /// Probability that this policy picks `method` in this context (the
    /// propensity used to evaluate policies offline).
    pub propensity: f64,
    /// The configuration version that decided.
    pub policy_version: u64,
    /// When it was decided.
    pub decided_at: Timestamp,
    /// The experiment variant whose settings decided, when the pool runs an experiment and
    /// the decision was assigned to it. Left out of the JSON when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<ExperimentArm>,
}

/// The variant of an experiment a transfer was assigned to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ExperimentArm {
    /// The experiment's name.
    pub experiment: Name,
    /// The variant's name.
    pub variant: Name,
}

/// A reply threshold no reply reaches: decisions recorded before replies existed.
fn never() -> u64 {
    u64::MAX
}

impl Decision {
    /// The predicted latency of the chosen method, when estimates exist.
    pub fn predicted_latency_us(&self) -> Option<f64> {
        self.estimates.map(|e| e.of(self.method).latency_us)
    }

    /// The readable rationale; it is formatted only when displayed.
    pub fn rationale(&self) -> Rationale<'_> {
        Rationale(self)
    }
}

/// A decision's rationale as text, built on demand by its `Display`.
#[derive(Debug, Clone, Copy)]
pub struct Rationale<'a>(&'a Decision);

impl fmt::Display for Rationale<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        write!(f, "{}: ", d.method.label())?;
        let size = HumanSize(d.size);
        match d.reason {
            Reason::Override => write!(f, "the caller asked for {}", d.method.label())?,
            Reason::RemoteWorker => write!(
                f,
                "the worker runs on another host, where shared memory cannot reach"
            )?,
            Reason::ZeroCopyUnavailable => {
                write!(f, "shared memory is unavailable or exhausted for {size}")?
            }
            Reason::Rule { name, priority } => {
                write!(f, "rule \"{name}\" (priority {priority}) matched {size}")?
            }
            Reason::Fixed => write!(f, "a fixed policy always picks {}", d.method.label())?,
            Reason::Function { name, priority } => write!(
                f,
                "decision function \"{name}\" (priority {priority}) chose it for {size}"
            )?,
            Reason::BelowFloor { floor } => write!(
                f,
                "{size} is below the floor of {}, always gRPC there",
                HumanSize(floor)
            )?,
            Reason::AboveCeiling { ceiling } => write!(
                f,
                "{size} is above the ceiling of {}, always zero-copy there",
                HumanSize(ceiling)
            )?,
            Reason::BelowThreshold => {
                let t = d.threshold;
                write!(
                    f,
                    "{size} is below the threshold of {} (base {} x history {:.2} x resources {:.2})",
                    HumanSize(t.effective),
                    HumanSize(t.base),
                    t.history,
                    t.resources
                )?;
                if let Some(e) = &d.estimates {
                    write!(
                        f,
                        "; static estimates (zero-copy {} vs gRPC {}) move it only once measurements confirm them",
                        HumanMicros(e.zero_copy.latency_us),
                        HumanMicros(e.grpc.latency_us)
                    )?;
                }
            }
            Reason::CostAnalysis { .. } => match &d.estimates {
                Some(e) => compare(f, e, d.method)?,
                None => write!(f, "lower estimated cost")?,
            },
            Reason::MarginalGain { gain, marginal } => {
                write!(
                    f,
                    "zero-copy would gain only {:.1} % (under the {:.1} % marginal gain), so the simpler path wins",
                    gain * 100.0,
                    marginal * 100.0
                )?;
                if let Some(e) = &d.estimates {
                    write!(
                        f,
                        "; estimated latency zero-copy {} vs gRPC {}",
                        HumanMicros(e.zero_copy.latency_us),
                        HumanMicros(e.grpc.latency_us)
                    )?;
                }
            }
            Reason::Learned {
                confidence,
                model_version,
            } => {
                write!(
                    f,
                    "the classifier trained on paired measurements (model v{model_version}) expects it to be faster for {size} (confidence {:.0} %)",
                    confidence * 100.0
                )?;
                if let Some(e) = &d.estimates {
                    write!(
                        f,
                        "; estimated latency zero-copy {} vs gRPC {}",
                        HumanMicros(e.zero_copy.latency_us),
                        HumanMicros(e.grpc.latency_us)
                    )?;
                }
            }
            Reason::Exploration { greedy, epsilon } => write!(
                f,
                "exploring the alternative to {} (rate {:.1} %, propensity {:.3})",
                greedy.label(),
                epsilon * 100.0,
                d.propensity
            )?,
        }
        write!(f, "; pool {}, goal {}", d.pool, d.goal)?;
        if let Some(arm) = d.experiment {
            write!(
                f,
                "; experiment \"{}\", variant \"{}\"",
                arm.experiment, arm.variant
            )?;
        }
        Ok(())
    }
}

/// Writes how `chosen` compares with the other method in latency and memory.
fn compare(f: &mut fmt::Formatter<'_>, e: &Estimates, chosen: Method) -> fmt::Result {
    let a = e.of(chosen);
    let b = e.of(chosen.other());
    write_relation(f, a.latency_us, b.latency_us, ("lower", "higher"), true)?;
    write!(
        f,
        " estimated latency ({} vs {}) and ",
        HumanMicros(a.latency_us),
        HumanMicros(b.latency_us)
    )?;
    let (am, bm) = (a.memory_bytes as f64, b.memory_bytes as f64);
    write_relation(f, am, bm, ("less", "more"), false)?;
    write!(f, " memory")
}

/// Writes how `a` relates to `b`: `22x lower`, `35 % lower`, `53 % higher`.
///
/// A smaller `a` reads as a share of `b` (`50 % less`), or as a multiple when
/// `multiples` is set and it is at least half (`22x lower`); a larger `a`
/// reads as a multiple from 2x on and below that as a share of the smaller
/// value, so twice as much is `2.0x more`, never `50 % more`.
fn write_relation(
    f: &mut fmt::Formatter<'_>,
    a: f64,
    b: f64,
    (less, more): (&str, &str),
    multiples: bool,
) -> fmt::Result {
    let (lo, hi, word) = if a <= b { (a, b, less) } else { (b, a, more) };
    let ratio = if lo > 0.0 { hi / lo } else { f64::INFINITY };
    if !ratio.is_finite() {
        write!(f, "100 % {word}")
    } else if a <= b && !multiples {
        write!(f, "{:.0} % {word}", percent_less(lo, hi))
    } else if ratio >= 10.0 {
        write!(f, "{ratio:.0}x {word}")
    } else if ratio >= 2.0 {
        write!(f, "{ratio:.1}x {word}")
    } else if a <= b {
        write!(f, "{:.0} % {word}", percent_less(lo, hi))
    } else {
        write!(f, "{:.0} % {word}", (ratio - 1.0) * 100.0)
    }
}

/// How much smaller `small` is than `large`, in percent of `large`.
fn percent_less(small: f64, large: f64) -> f64 {
    if large <= 0.0 {
        0.0
    } else {
        (1.0 - small / large) * 100.0
    }
}
