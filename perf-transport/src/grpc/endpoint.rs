//! Where a worker listens: `unix:PATH` for a worker on the same host, `tcp:HOST:PORT` for one
//! that may be remote.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Longest Unix socket path, in bytes: `sun_path` holds 108 bytes on Linux (104 elsewhere),
/// one of which is the terminating NUL.
#[cfg(target_os = "linux")]
pub const MAX_UNIX_PATH_LEN: usize = 107;
/// Longest Unix socket path, in bytes: `sun_path` holds 108 bytes on Linux (104 elsewhere),
/// one of which is the terminating NUL.
#[cfg(not(target_os = "linux"))]
pub const MAX_UNIX_PATH_LEN: usize = 103;

/// Longest endpoint text accepted, in bytes.
const MAX_ENDPOINT_LEN: usize = 1024;
/// Longest host name, in bytes (the DNS limit).
const MAX_HOST_LEN: usize = 253;

/// Where a worker listens, parsed from `unix:PATH` or `tcp:HOST:PORT`.
///
/// In `tcp:` form the host may be omitted (`tcp:PORT` or `tcp::PORT`), which means the IPv4
/// loopback address; an IPv6 address goes in brackets (`tcp:[::1]:7000`). Port 0 asks the
/// operating system for a free port when binding.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// A Unix domain socket at this path, at most [`MAX_UNIX_PATH_LEN`] bytes long.
    Unix(PathBuf),
    /// A TCP address: a host name or IP address (without brackets), and a port.
    Tcp {
        /// Host name or IP address.
        host: String,
        /// Port number.
        port: u16,
    },
}

/// Why a text is not an [`Endpoint`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// The text is longer than any endpoint.
    #[error("endpoint is {len} bytes long, expected at most {max}")]
    TooLong {
        /// Length of the text.
        len: usize,
        /// Longest accepted.
        max: usize,
    },
    /// The text does not start with `unix:` or `tcp:`.
    #[error("endpoint `{got}` has no known scheme, expected `unix:PATH` or `tcp:HOST:PORT`")]
    UnknownScheme {
        /// The text given.
        got: String,
    },
    /// `unix:` with nothing after it.
    #[error("endpoint `unix:` has an empty path, expected `unix:PATH`")]
    EmptyPath,
    /// The socket path does not fit a socket address.
    #[error("unix socket path is {len} bytes long, expected at most {max}")]
    PathTooLong {
        /// Length of the path.
        len: usize,
        /// Longest accepted.
        max: usize,
    },
    /// The socket path holds a NUL byte.
    #[error("unix socket path contains a NUL byte, expected none")]
    NulInPath,
    /// `tcp:` with no port.
    #[error("endpoint `{got}` has no port, expected `tcp:HOST:PORT` or `tcp:PORT`")]
    MissingPort {
        /// The text given.
        got: String,
    },
    /// The port is not a number from 0 to 65535.
    #[error("port `{got}` is not a number from 0 to 65535")]
    InvalidPort {
        /// The port text given.
        got: String,
    },
    /// The host is neither an IP address nor a host name.
    #[error("host `{got}` is not valid, expected an IP address (IPv6 in brackets) or a host name")]
    InvalidHost {
        /// The host text given.
        got: String,
    },
}

impl Endpoint {
    /// Parses `unix:PATH` or `tcp:HOST:PORT` (see the type's documentation).
    pub fn parse(text: &str) -> Result<Endpoint, EndpointError> {
        if text.len() > MAX_ENDPOINT_LEN {
            return Err(EndpointError::TooLong {
                len: text.len(),
                max: MAX_ENDPOINT_LEN,
            });
        }
        if let Some(path) = text.strip_prefix("unix:") {
            return parse_unix(path);
        }
        if let Some(address) = text.strip_prefix("tcp:") {
            return parse_tcp(text, address);
        }
        Err(EndpointError::UnknownScheme {
            got: text.to_owned(),
        })
    }

    /// The socket path of a `unix:` endpoint.
    pub fn unix_path(&self) -> Option<&Path> {
        match self {
            Endpoint::Unix(path) => Some(path),
            Endpoint::Tcp { .. } => None,
        }
    }

    /// The URI a gRPC channel uses for this endpoint; a Unix socket gets a placeholder
    /// authority, as its connector ignores the URI.
    pub(crate) fn uri(&self) -> String {
        match self {
            Endpoint::Unix(_) => "http://localhost".to_owned(),
            Endpoint::Tcp { host, port } => format!("http://{}:{port}", bracketed(host)),
        }
    }
}

fn parse_unix(path: &str) -> Result<Endpoint, EndpointError> {
    if path.is_empty() {
        return Err(EndpointError::EmptyPath);
    }
    if path.contains('\0') {
        return Err(EndpointError::NulInPath);
    }
    if path.len() > MAX_UNIX_PATH_LEN {
        return Err(EndpointError::PathTooLong {
            len: path.len(),
            max: MAX_UNIX_PATH_LEN,
        });
    }
    Ok(Endpoint::Unix(PathBuf::from(path)))
}

fn parse_tcp(text: &str, address: &str) -> Result<Endpoint, EndpointError> {
    let missing_port = || EndpointError::MissingPort {
        got: text.to_owned(),
    };
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        // A bracketed IPv6 address, then `:PORT`.
        let (host, port) = rest.split_once("]:").ok_or_else(missing_port)?;
        if !matches!(host.parse::<IpAddr>(), Ok(IpAddr::V6(_))) {
            return Err(EndpointError::InvalidHost {
                got: format!("[{host}]"),
            });
        }
        (host.to_owned(), port)
    } else {
        let (host, port) = address.rsplit_once(':').unwrap_or(("", address));
        if host.is_empty() {
            (Ipv4Addr::LOCALHOST.to_string(), port)
        } else {
            check_host(host)?;
            (host.to_owned(), port)
        }
    };
    if port.is_empty() {
        return Err(missing_port());
    }
    let port = port
        .parse::<u16>()
        .map_err(|_| EndpointError::InvalidPort {
            got: port.to_owned(),
        })?;
    Ok(Endpoint::Tcp { host, port })
}

/// An unbracketed host is an IPv4 address or a host name of letters, digits, `-` and `.`.
fn check_host(host: &str) -> Result<(), EndpointError> {
    let is_ipv4 = matches!(host.parse::<IpAddr>(), Ok(IpAddr::V4(_)));
    let is_name = host.len() <= MAX_HOST_LEN
        && !host.starts_with(['-', '.'])
        && host
            .chars()
            .all(|it| it.is_ascii_alphanumeric() || it == '-' || it == '.');
    if is_ipv4 || is_name {
        Ok(())
    } else {
        let mut got = host.to_owned();
        got.truncate(MAX_HOST_LEN);
        Err(EndpointError::InvalidHost { got })
    }
}

fn bracketed(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(text: &str) -> Result<Endpoint, EndpointError> {
        Endpoint::parse(text)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
            Endpoint::Tcp { host, port } => write!(f, "tcp:{}:{port}", bracketed(host)),
        }
    }
}
