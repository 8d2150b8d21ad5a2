//! A/B testing of perfopt: experiments between a control and an experimental policy, with
//! statistics and reports.
//!
//! This crate will own the experiment split, a `TransferPolicy` of `perf-core` that sends a
//! configurable share of traffic to each variant and always puts the same session in the same
//! variant; per-variant metrics; significance tests (Welch's t-test and friends, with golden
//! tests against R or scipy) from 10,000 samples per variant (configurable) with confidence
//! intervals; the recommendation of a winning variant, whose promotion and rollback are one
//! command each; and reports that compare the variants with their intervals.
//!
//! Not implemented yet. It will cover R9.1 to R9.6 (A/B testing).
