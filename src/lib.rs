//! perfopt: decides, per transfer, between shared memory and gRPC.

pub use perf_core as core;
