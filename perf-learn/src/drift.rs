//! Drift detection.
