//! Decision-table tests of `Controller::decide`, one step of the decision order per module.
//!
//! They cover the quick path, the cost analysis under each goal and load, forced
//! paths, rules and decision functions, pools, predictors, threshold moves,
//! exploration, the rationale text and hot reload. Every table row runs without
//! exploration.

mod cost;
mod experiments;
mod exploration;
mod forced;
mod learned;
mod pools;
mod predictor;
mod quick_path;
mod rationale;
mod reload;
mod rules;
mod support;
mod thresholds;
