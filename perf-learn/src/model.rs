//! The classifier: a decision tree fitted by `linfa-trees` on paired evidence,
//! compiled into a flat array that predicts without allocating, with leaf
//! probabilities, a checked file format and held-out evaluation.

use linfa::prelude::*;
use linfa_trees::{DecisionTree, SplitQuality, TreeNode};
use ndarray::{Array1, Array2};
use perf_core::{EnvelopeError, Method, Timestamp, open_model, seal_model};
use serde::{Deserialize, Serialize};

use crate::dataset::PairedSample;
use crate::features::{FEATURES, FeatureVec, Normalizer};

/// The first word of a model file.
pub const MODEL_FORMAT: &str = "perfopt.classifier";
/// The model file layout this version writes and reads.
pub const MODEL_FORMAT_VERSION: u32 = 1;
/// The most nodes a model may have.
pub const MAX_NODES: usize = 1 << 16;
/// The most reference rows a model keeps for drift tests.
pub const MAX_REFERENCE: usize = 1024;

/// Why training, loading or evaluating failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LearnError {
    /// Too few samples to train or evaluate on.
    #[error("{got} paired samples, at least {need} needed")]
    TooFew {
        /// Samples given.
        got: usize,
        /// Samples needed.
        need: usize,
    },
    /// The tree learner failed.
    #[error("training failed: {0}")]
    Training(String),
    /// A model file that cannot be used.
    #[error("model file rejected: {0}")]
    Corrupt(String),
    /// A model file of another layout version.
    #[error("model file has layout version {found}, this build reads version {expected}")]
    Incompatible {
        /// Version in the file.
        found: u32,
        /// Version this build reads.
        expected: u32,
    },
}

/// How the tree is grown.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TreeConfig {
    /// Deepest level of the tree.
    pub max_depth: usize,
    /// Least total sample weight in a leaf.
    pub min_weight_leaf: f32,
}

impl Default for TreeConfig {
    fn default() -> Self {
        TreeConfig {
            max_depth: 6,
            min_weight_leaf: 20.0,
        }
    }
}

/// A node of the compiled tree: a split, or a leaf when `feature` is [`LEAF`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// The feature tested, or [`LEAF`].
    pub feature: u8,
    /// Go left when the (normalised) feature is below this.
    pub threshold: f64,
    /// Index of the left child (always after this node).
    pub left: u32,
    /// Index of the right child (always after this node).
    pub right: u32,
    /// In a leaf: the probability that zero-copy is faster.
    pub p_zero_copy: f64,
    /// In a leaf: how many training samples reached it.
    pub samples: u32,
}

/// The `feature` of a leaf.
pub const LEAF: u8 = u8::MAX;

/// How a model did on held-out paired samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Samples evaluated.
    pub samples: usize,
    /// Share picked right (the faster method), 0 to 1.
    pub accuracy: f64,
    /// Extra latency over an oracle that always picks the faster method, as a
    /// fraction of the oracle's total latency.
    pub regret: f64,
    /// `confusion[actual][predicted]`, index 0 gRPC, 1 zero-copy.
    pub confusion: [[u64; 2]; 2],
    /// Total latency of the model's picks, microseconds.
    pub model_us: f64,
    /// Total latency of the oracle's picks, microseconds.
    pub oracle_us: f64,
    /// Total latency of always gRPC, microseconds.
    pub always_grpc_us: f64,
    /// Total latency of always zero-copy, microseconds.
    pub always_zero_copy_us: f64,
    /// Pairs whose methods differ by more than [`DECISIVE`] (the rest are
    /// ties within measurement noise, where either pick costs little).
    pub decisive_samples: usize,
    /// Share of the decisive pairs picked right.
    pub decisive_accuracy: f64,
}

/// A pair is decisive when one method is slower by more than this fraction.
pub const DECISIVE: f64 = 0.10;

impl Evaluation {
    /// Scores `pick` on `samples`.
    pub fn of(samples: &[PairedSample], mut pick: impl FnMut(&PairedSample) -> Method) -> Self {
        let mut e = Evaluation {
            samples: samples.len(),
            ..Evaluation::default()
        };
        let (mut right, mut decisive_right) = (0usize, 0usize);
        for s in samples {
            let actual = s.faster();
            let chosen = pick(s);
            right += usize::from(actual == chosen);
            if (s.grpc_us / s.zero_copy_us).ln().abs() > (1.0 + DECISIVE).ln() {
                e.decisive_samples += 1;
                decisive_right += usize::from(actual == chosen);
            }
            e.confusion[index(actual)][index(chosen)] += 1;
            e.model_us += s.latency(chosen);
            e.oracle_us += s.latency(actual);
            e.always_grpc_us += s.grpc_us;
            e.always_zero_copy_us += s.zero_copy_us;
        }
        if !samples.is_empty() {
            e.accuracy = right as f64 / samples.len() as f64;
            e.regret = (e.model_us - e.oracle_us) / e.oracle_us;
        }
        if e.decisive_samples > 0 {
            e.decisive_accuracy = decisive_right as f64 / e.decisive_samples as f64;
        }
        e
    }
}

fn index(m: Method) -> usize {
    match m {
        Method::Grpc => 0,
        Method::ZeroCopy => 1,
    }
}

/// A trained classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classifier {
    /// Its version once published (0 before).
    pub version: u64,
    /// When it was trained.
    pub trained_at: Timestamp,
    /// How many samples it was trained on.
    pub trained_on: usize,
    /// How it did on the held-out samples at training.
    pub validation: Evaluation,
    /// Feature scaling fitted on the training samples.
    pub normalizer: Normalizer,
    /// Up to [`MAX_REFERENCE`] training feature rows, for drift tests.
    pub reference: Vec<FeatureVec>,
    /// The smallest and largest payload sizes it was trained on, bytes: it
    /// answers only within an octave of them.
    #[serde(default)]
    pub sizes: (u64, u64),
    nodes: Vec<Node>,
}

/// How much a pair counts in training: a near tie (mostly noise) once, a
/// pair whose methods differ by e^2 (x7.4) or more three times, so that the
/// tree spends its splits where a wrong pick costs most.
fn weight(s: &PairedSample) -> f32 {
    let gap = (s.grpc_us / s.zero_copy_us).ln().abs();
    (1.0 + gap.min(2.0)) as f32
}

impl Classifier {
    /// Fits a tree on `train` (at least 10 samples).
    pub fn train(
        train: &[PairedSample],
        config: &TreeConfig,
        now: Timestamp,
    ) -> Result<Classifier, LearnError> {
        const MIN: usize = 10;
        if train.len() < MIN {
            return Err(LearnError::TooFew {
                got: train.len(),
                need: MIN,
            });
        }
        let rows: Vec<FeatureVec> = train.iter().map(PairedSample::features).collect();
        let normalizer = Normalizer::fit(&rows);
        let scaled: Vec<FeatureVec> = rows.iter().map(|r| normalizer.apply(r)).collect();
        let mut records = Array2::<f64>::zeros((train.len(), FEATURES));
        for (i, r) in scaled.iter().enumerate() {
            for (j, x) in r.iter().enumerate() {
                records[(i, j)] = *x;
            }
        }
        let labels: Array1<usize> = train.iter().map(|s| index(s.faster())).collect();
        let weights: Array1<f32> = train.iter().map(weight).collect();
        let dataset = Dataset::new(records, labels).with_weights(weights);
        let tree = DecisionTree::params()
            .split_quality(SplitQuality::Gini)
            .max_depth(Some(config.max_depth.clamp(1, 32)))
            .min_weight_leaf(config.min_weight_leaf.max(0.0))
            .fit(&dataset)
            .map_err(|e| LearnError::Training(e.to_string()))?;
        let mut nodes = Vec::new();
        compile(tree.root_node(), &mut nodes, 0);
        // Leaf probabilities from the training samples that reach each leaf
        // (Laplace-smoothed), so confidence means "how often it was right there".
        let mut counts = vec![(0u32, 0u32); nodes.len()];
        for (x, s) in scaled.iter().zip(train) {
            let leaf = walk(&nodes, x);
            counts[leaf].0 += 1;
            counts[leaf].1 += u32::from(s.faster() == Method::ZeroCopy);
        }
        for (node, (n, zc)) in nodes.iter_mut().zip(counts) {
            if node.feature == LEAF {
                node.samples = n;
                node.p_zero_copy = (f64::from(zc) + 1.0) / (f64::from(n) + 2.0);
            }
        }
        let step = rows.len().div_ceil(MAX_REFERENCE).max(1);
        let reference = rows.iter().step_by(step).copied().collect();
        let sizes = train.iter().fold((u64::MAX, 0), |(lo, hi), s| {
            (lo.min(s.size), hi.max(s.size))
        });
        Ok(Classifier {
            version: 0,
            trained_at: now,
            trained_on: train.len(),
            validation: Evaluation::default(),
            normalizer,
            reference,
            sizes,
            nodes,
        })
    }

    /// Whether `size` lies within an octave of the sizes it was trained on.
    pub fn covers(&self, size: u64) -> bool {
        let (lo, hi) = self.sizes;
        size >= lo / 2 && size <= hi.saturating_mul(2)
    }

    /// The faster method for features `x`, and the probability that it is.
    /// Walks the flat tree: no allocation.
    pub fn predict(&self, x: &FeatureVec) -> (Method, f64) {
        let scaled = self.normalizer.apply(x);
        let leaf = &self.nodes[walk(&self.nodes, &scaled)];
        if leaf.p_zero_copy > 0.5 {
            (Method::ZeroCopy, leaf.p_zero_copy)
        } else {
            (Method::Grpc, 1.0 - leaf.p_zero_copy)
        }
    }

    /// The pick for a paired sample's features.
    pub fn pick(&self, s: &PairedSample) -> Method {
        self.predict(&s.features()).0
    }

    /// Scores this model on held-out samples.
    pub fn evaluate(&self, test: &[PairedSample]) -> Evaluation {
        Evaluation::of(test, |s| self.pick(s))
    }

    /// Nodes in the tree.
    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }

    /// Depth of the deepest leaf.
    pub fn depth(&self) -> usize {
        fn depth(nodes: &[Node], i: usize) -> usize {
            let n = &nodes[i];
            if n.feature == LEAF {
                0
            } else {
                1 + depth(nodes, n.left as usize).max(depth(nodes, n.right as usize))
            }
        }
        depth(&self.nodes, 0)
    }

    /// Encodes the model: a header line with format, layout version, length
    /// and checksum, then the JSON body.
    pub fn encode(&self) -> Vec<u8> {
        let body = serde_json::to_vec(self).unwrap_or_default();
        seal_model(MODEL_FORMAT, MODEL_FORMAT_VERSION, &body)
    }

    /// Decodes and checks a model written by [`Classifier::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Classifier, LearnError> {
        let body = open_model(bytes, MODEL_FORMAT, MODEL_FORMAT_VERSION).map_err(|e| match e {
            EnvelopeError::Incompatible { found, expected } => {
                LearnError::Incompatible { found, expected }
            }
            EnvelopeError::Corrupt(why) => LearnError::Corrupt(why),
        })?;
        let model: Classifier =
            serde_json::from_slice(body).map_err(|e| LearnError::Corrupt(e.to_string()))?;
        model.check()?;
        Ok(model)
    }

    /// Checks the structure, so that `predict` cannot loop or index out of range.
    fn check(&self) -> Result<(), LearnError> {
        let bad = |why: String| Err(LearnError::Corrupt(why));
        let n = self.nodes.len();
        if n == 0 || n > MAX_NODES {
            return bad(format!("{n} nodes, expected 1 to {MAX_NODES}"));
        }
        for (i, node) in self.nodes.iter().enumerate() {
            if node.feature == LEAF {
                if !(0.0..=1.0).contains(&node.p_zero_copy) {
                    return bad(format!("leaf {i} has probability {}", node.p_zero_copy));
                }
                continue;
            }
            if usize::from(node.feature) >= FEATURES {
                return bad(format!("node {i} tests feature {}", node.feature));
            }
            let (l, r) = (node.left as usize, node.right as usize);
            if l <= i || r <= i || l >= n || r >= n {
                return bad(format!("node {i} has children {l} and {r}"));
            }
            if !node.threshold.is_finite() {
                return bad(format!("node {i} has threshold {}", node.threshold));
            }
        }
        let norm = &self.normalizer;
        if norm.mean.iter().any(|m| !m.is_finite())
            || norm.std.iter().any(|s| !(s.is_finite() && *s > 0.0))
        {
            return bad("normalisation is not finite and positive".to_string());
        }
        if self.reference.len() > MAX_REFERENCE {
            return bad(format!("{} reference rows", self.reference.len()));
        }
        Ok(())
    }
}

/// Appends `node` and its subtree to `out` in pre-order; returns its index.
fn compile(node: &TreeNode<f64, usize>, out: &mut Vec<Node>, majority: usize) -> u32 {
    let at = out.len();
    let leaf = |label: usize| Node {
        feature: LEAF,
        threshold: 0.0,
        left: 0,
        right: 0,
        p_zero_copy: if label == 1 { 1.0 } else { 0.0 },
        samples: 0,
    };
    if node.is_leaf() {
        out.push(leaf(node.prediction().unwrap_or(majority)));
        return at as u32;
    }
    let (feature, threshold, _) = node.split();
    out.push(Node {
        feature: feature as u8,
        threshold,
        left: 0,
        right: 0,
        p_zero_copy: 0.0,
        samples: 0,
    });
    let children = node.children();
    let child = |c: &Option<Box<TreeNode<f64, usize>>>, out: &mut Vec<Node>| match c {
        Some(c) => compile(c, out, majority),
        None => {
            out.push(leaf(majority));
            (out.len() - 1) as u32
        }
    };
    let left = child(children[0], out);
    let right = child(children[1], out);
    out[at].left = left;
    out[at].right = right;
    at as u32
}

/// The index of the leaf that `x` (normalised) reaches.
fn walk(nodes: &[Node], x: &FeatureVec) -> usize {
    let mut i = 0;
    loop {
        let n = &nodes[i];
        if n.feature == LEAF {
            return i;
        }
        i = if x[usize::from(n.feature)] < n.threshold {
            n.left as usize
        } else {
            n.right as usize
        };
    }
}
