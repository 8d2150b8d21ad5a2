//! Learning engine of perfopt: a classifier that learns which method is faster from paired
//! measurements, drift detection, and adaptive exploration.

pub mod dataset;
pub mod drift;
pub mod features;

pub use dataset::{
    CSV_HEADER, DatasetError, Dropped, MAX_ROWS, PairedDataset, PairedSample, Pairer, Source,
    quarter_octave,
};
pub use features::{
    Conditions, FEATURE_NAMES, FEATURES, FeatureVec, LoadTracker, Normalizer, features,
    hour_of_day, request_features,
};
