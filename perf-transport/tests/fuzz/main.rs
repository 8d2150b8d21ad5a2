//! The worker's handlers under arbitrary input: references with arbitrary fields and tokens (and
//! arbitrary protobuf bytes) through the reference check and a reader on real memfd segments, and
//! arbitrary chunk and progress streams sent to a real service on a Unix socket.
//!
//! Each input is also run through a model of the documented rules (`docs/protocol.md`), which
//! says whether it must be read and what must be refused with which status. No input may panic
//! or hang the worker, nothing may be opened for a reference without a valid token, and every
//! well-formed stream is acknowledged with the checksum of the bytes sent. Plain `cargo test` runs
//! a bounded number of cases from a fixed seed, after fixed cases at the edges of every rule;
//! `PERFOPT_SLOW_TESTS=1` runs sixteen times as many from a random seed.

#![cfg(target_os = "linux")]

#[path = "../grpc_support/mod.rs"]
mod grpc_support;

mod fixture;
mod inline;
mod model;
mod progress;
mod reader;
mod references;
mod service;

use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

/// A test runner for `cases` cases (sixteen times as many, from a random seed, in slow runs).
fn runner(cases: u32) -> TestRunner {
    let slow = grpc_support::slow_tests();
    let config = Config {
        cases: if slow { cases * 16 } else { cases },
        failure_persistence: None,
        ..Config::default()
    };
    if slow {
        TestRunner::new(config)
    } else {
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
    }
}

/// A failed case, saying why.
fn fail(why: String) -> TestCaseError {
    TestCaseError::fail(why)
}
