//! Transport layer of perfopt: carries out a decided transfer, by zero-copy through a pool of
//! shared-memory segments or by gRPC.
//!
//! This crate will own the pool of pre-faulted, reused segments (a fresh segment per transfer
//! pays its page faults every time), the zero-copy reference (segment id, offset, length, format,
//! expiry and an HMAC-SHA256 over them with a per-host secret), the `loan(size)` path that lets a
//! producer write straight into shared memory, the tonic gRPC service and client with large
//! payloads streamed in chunks under tonic's 4 MiB message limit, and the worker side that checks
//! token, expiry, bounds, owner and mode before it maps anything. Any zero-copy failure falls back
//! to gRPC, and the transfer still succeeds. Segments come from the `PlatformShm` backends of
//! `perf-platform`; the decision comes from `perf-core`.
//!
//! Not implemented yet. It will cover R15.2 to R15.4 (references, loopback endpoints, bounds),
//! R15.1 with `perf-platform`, and the execution side of R8.2 (fall back to gRPC when shared
//! memory is exhausted).
