//! The transfer protocol's messages, client and server, generated from the same `.proto` file
//! as the crate's own: the tests speak the wire directly, as a peer in another language would.

#![allow(
    dead_code,
    missing_docs,
    unreachable_pub,
    clippy::all,
    clippy::pedantic
)]

include!(concat!(env!("OUT_DIR"), "/perfopt.transfer.v1.rs"));
