//! The `perfopt` command line.

fn main() {}
