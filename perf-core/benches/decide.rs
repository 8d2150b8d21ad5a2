//! Decision benchmarks.

fn main() {}
