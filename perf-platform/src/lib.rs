//! Platform layer of perfopt: the `PlatformShm` backends, the `ResourceProbe` and platform
//! detection.
//!
//! This crate will own every raw shared-memory and mmap call of the project: a memfd backend on
//! Linux, a portable backend on the `shared_memory` crate, and an in-process backend for tests,
//! all behind the `PlatformShm` trait of `perf-core` and held to one conformance suite. Segments
//! are created readable and writable by the owner only (0600), under random names, sized with
//! `posix_fallocate` so that a full `/dev/shm` is an error rather than a SIGBUS, kept inaccessible
//! until fully initialised, and swept at start-up when their owner process is dead. The resource
//! probe samples CPU, memory and free shared memory into the `SystemState` that the decision
//! engine weighs, and the platform is detected and enabled without configuration.
//!
//! Not implemented yet. It will cover R13 (platforms), R15.1 and, with `perf-transport`, R15.4
//! (segment security and bounds), and the sampling side of R8 (resources), whose decisions live
//! in `perf-core`.
