//! Compiles the transfer protocol into Rust at build time, with no system `protoc`: `protox`
//! parses the `.proto` file into a descriptor set and `tonic-prost-build` generates the messages,
//! the client and the server from it.

use std::error::Error;

const PROTO_DIR: &str = "proto";
const TRANSFER_PROTO: &str = "proto/perfopt/transfer/v1/transfer.proto";

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed={TRANSFER_PROTO}");
    println!("cargo:rerun-if-changed=build.rs");
    let descriptors = protox::compile([TRANSFER_PROTO], [PROTO_DIR])?;
    tonic_prost_build::configure()
        // The payload chunks decode as `Bytes` slices of the received buffer, not fresh `Vec`s,
        // and the client sends slices of the caller's `Bytes` without copying them.
        .bytes(".perfopt.transfer.v1.InlineChunk.data")
        .bytes(".perfopt.transfer.v1.ReplyChunk.data")
        .emit_rerun_if_changed(false)
        .compile_fds(descriptors)?;
    Ok(())
}
