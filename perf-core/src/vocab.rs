//! The small closed vocabularies: method, direction, goal, data type, format, compression,
//! locality, verification.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A value that is not one of an enumeration's names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {got:?}, expected one of {expected}")]
pub struct UnknownName {
    /// What kind of value was being read (`goal`, `method`, ...).
    pub what: &'static str,
    /// The text that came.
    pub got: String,
    /// The accepted names, comma separated.
    pub expected: &'static str,
}

macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $text)] $variant ),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The accepted names, comma separated, for error messages.
            pub const NAMES: &'static str = concat!($($text, ", "),+);

            /// The name used in configuration files, JSON and the CLI.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            fn expected() -> &'static str {
                let s = Self::NAMES;
                &s[..s.len() - 2]
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownName { what: $what, got: s.to_string(), expected: Self::expected() }),
                }
            }
        }
    };
}

pub(crate) use named_enum;

named_enum! {
    /// How a payload travels to its worker.
    Method, "method" {
        /// Written once into a shared-memory segment; the worker maps it.
        ZeroCopy = "zero_copy",
        /// Serialized into a gRPC message and sent over a socket.
        Grpc = "grpc",
    }
}

impl Method {
    /// The other method.
    pub const fn other(self) -> Method {
        match self {
            Method::ZeroCopy => Method::Grpc,
            Method::Grpc => Method::ZeroCopy,
        }
    }

    /// The name used in readable text (`zero-copy`, `gRPC`).
    pub const fn label(self) -> &'static str {
        match self {
            Method::ZeroCopy => "zero-copy",
            Method::Grpc => "gRPC",
        }
    }

    /// A small index (zero-copy 0, gRPC 1) for per-method arrays.
    pub const fn index(self) -> usize {
        match self {
            Method::ZeroCopy => 0,
            Method::Grpc => 1,
        }
    }
}

named_enum! {
    /// Which way bytes travel: a request's payload from host to worker, or a call's reply back.
    Direction, "direction" {
        /// A payload from the host to a worker.
        Request = "request",
        /// A reply from a worker's code back to the host.
        Reply = "reply",
    }
}

impl Default for Direction {
    /// A request: every record before replies existed was one.
    fn default() -> Direction {
        Direction::Request
    }
}

named_enum! {
    /// What a pool optimises for; it decides how costs are weighed.
    Goal, "goal" {
        /// Lowest latency per transfer.
        MinimizeLatency = "minimize_latency",
        /// Most bytes per second under sustained load (latency and CPU time).
        MaximizeThroughput = "maximize_throughput",
        /// Least memory held by transfers.
        MinimizeMemory = "minimize_memory",
        /// Latency, memory and CPU weighed together.
        Balanced = "balanced",
    }
}

named_enum! {
    /// What the payload holds.
    DataType, "data type" {
        /// Opaque bytes.
        Bytes = "bytes",
        /// A dense numeric tensor or array.
        Tensor = "tensor",
        /// A table or data frame.
        Table = "table",
        /// Text.
        Text = "text",
        /// An image or other media.
        Image = "image",
        /// Structured records (JSON-like documents).
        Records = "records",
    }
}

named_enum! {
    /// How the payload is encoded.
    Format, "format" {
        /// No encoding: the bytes are the data.
        Raw = "raw",
        /// Apache Arrow IPC.
        Arrow = "arrow",
        /// NumPy `.npy` arrays.
        Numpy = "numpy",
        /// Protocol buffers.
        Protobuf = "protobuf",
        /// JSON text.
        Json = "json",
        /// MessagePack.
        Msgpack = "msgpack",
        /// Python pickle.
        Pickle = "pickle",
        /// Apache Parquet.
        Parquet = "parquet",
    }
}

named_enum! {
    /// How the payload is compressed.
    Compression, "compression" {
        /// Not compressed.
        None = "none",
        /// LZ4.
        Lz4 = "lz4",
        /// Zstandard.
        Zstd = "zstd",
        /// Gzip / deflate.
        Gzip = "gzip",
        /// Snappy.
        Snappy = "snappy",
    }
}

named_enum! {
    /// Where the worker runs relative to the host.
    Locality, "locality" {
        /// Same host: shared memory is possible.
        SameHost = "same_host",
        /// Another host: only gRPC is possible.
        Remote = "remote",
    }
}

named_enum! {
    /// How much of a zero-copy payload the worker hashes so that the host can tell the bytes
    /// arrived: all of them, a fixed sample, or none (see `docs/protocol.md`, "Verification").
    Verification, "verification" {
        /// XXH3-64 of every byte: catches any corruption, and reads the whole payload once more.
        Checksum = "checksum",
        /// XXH3-64 of a fixed selection (the first and last 4 KiB and 4 KiB at every MiB): a
        /// wrong segment, offset or stale write, for a fraction of a percent of the bytes.
        Sampled = "sampled",
        /// Nothing: the worker reads no byte of the payload it is not asked to handle.
        None = "none",
    }
}

impl Default for Verification {
    /// The full checksum: what a peer that predates the setting does.
    fn default() -> Verification {
        Verification::Checksum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_expected() {
        for g in Goal::ALL {
            assert_eq!(g.as_str().parse::<Goal>().unwrap(), *g);
        }
        let err = "fastest".parse::<Goal>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown goal \"fastest\", expected one of minimize_latency, maximize_throughput, minimize_memory, balanced"
        );
        assert_eq!(Method::ZeroCopy.other(), Method::Grpc);
        assert_eq!("sampled".parse::<Verification>(), Ok(Verification::Sampled));
        assert_eq!(Verification::default(), Verification::Checksum);
        assert_eq!(
            "crc".parse::<Verification>().unwrap_err().to_string(),
            "unknown verification \"crc\", expected one of checksum, sampled, none"
        );
        assert_eq!(
            serde_json::to_string(&Method::ZeroCopy).unwrap(),
            "\"zero_copy\""
        );
    }
}
