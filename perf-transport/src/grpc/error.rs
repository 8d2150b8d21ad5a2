//! Errors of the gRPC transport: what a host's call, a worker's server and a configuration can
//! fail with.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// A gRPC status code, as a worker or the channel reported it.
pub use tonic::Code;

/// A configuration value out of its bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} is {got}, expected {expected}")]
pub struct ConfigError {
    /// The configuration field.
    pub field: &'static str,
    /// The value given.
    pub got: String,
    /// What would have been accepted.
    pub expected: String,
}

impl ConfigError {
    pub(crate) fn new(
        field: &'static str,
        got: impl ToString,
        expected: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            field,
            got: got.to_string(),
            expected: expected.into(),
        }
    }
}

/// Why a host's call to a worker failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The client configuration is out of bounds.
    #[error("invalid client configuration: {0}")]
    Config(#[from] ConfigError),
    /// No connection could be made to the worker within the connect timeout.
    #[error("could not connect to {endpoint}: {message}")]
    Connect {
        /// The worker's endpoint.
        endpoint: String,
        /// What went wrong.
        message: String,
    },
    /// The call did not complete before its deadline.
    #[error("{call} did not complete within its deadline of {deadline:?}")]
    Timeout {
        /// The call: `negotiate`, `send_inline`, `send_reference` or `health`.
        call: &'static str,
        /// The deadline it had.
        deadline: Duration,
    },
    /// The worker is unreachable or the connection broke during the call.
    #[error("{call} failed, the worker is unavailable: {message}")]
    Unavailable {
        /// The call.
        call: &'static str,
        /// What the channel reported.
        message: String,
    },
    /// The worker refused the call with a gRPC status.
    #[error("{call} was rejected by the worker with {code:?}: {message}")]
    Rejected {
        /// The call.
        call: &'static str,
        /// The status code.
        code: Code,
        /// The worker's message.
        message: String,
    },
    /// The call's arguments are out of bounds; nothing was sent.
    #[error("invalid {call} request: {message}")]
    InvalidRequest {
        /// The call.
        call: &'static str,
        /// What was expected and what came.
        message: String,
    },
    /// The worker answered something this side cannot accept.
    #[error("{call} got an answer that breaks the protocol: {message}")]
    Protocol {
        /// The call.
        call: &'static str,
        /// What was expected and what came.
        message: String,
    },
}

impl ClientError {
    /// Classifies a status a call ended with.
    pub(crate) fn from_status(
        call: &'static str,
        deadline: Duration,
        status: &tonic::Status,
    ) -> ClientError {
        let timed_out = status.code() == Code::DeadlineExceeded
            || (status.code() == Code::Cancelled
                && status.message() == tonic::TimeoutExpired(()).to_string());
        if timed_out {
            return ClientError::Timeout { call, deadline };
        }
        // A status with a source was made on this side from a channel error (the connection
        // broke or could not be made); one the worker sent has none.
        let local = std::error::Error::source(status);
        if status.code() == Code::Unavailable || local.is_some() {
            let message = match local.map(error_chain) {
                Some(chain) if chain.starts_with(status.message()) => chain,
                Some(chain) => format!("{}: {chain}", status.message()),
                None => status.message().to_owned(),
            };
            return ClientError::Unavailable { call, message };
        }
        ClientError::Rejected {
            call,
            code: status.code(),
            message: status.message().to_owned(),
        }
    }

    /// The gRPC status code the worker rejected the call with, if it did.
    pub fn rejection_code(&self) -> Option<Code> {
        match self {
            ClientError::Rejected { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether the call ran out of time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, ClientError::Timeout { .. })
    }
}

/// Why a worker's server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Another process already listens on the socket path.
    #[error("another process listens on {}, expected a free socket path", path.display())]
    InUse {
        /// The socket path.
        path: PathBuf,
    },
    /// Something other than a socket is at the socket path; it is left alone.
    #[error("{} is {found}, expected a socket file or nothing", path.display())]
    NotASocket {
        /// The socket path.
        path: PathBuf,
        /// What is there instead.
        found: &'static str,
    },
    /// A file system or socket operation failed.
    #[error("could not {action} {target}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        target: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The gRPC server failed while serving.
    #[error("the gRPC server on {endpoint} failed: {message}")]
    Serve {
        /// The endpoint served.
        endpoint: String,
        /// What went wrong.
        message: String,
    },
}

/// An error and its sources, joined by `: `.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(it) = source {
        text.push_str(": ");
        text.push_str(&it.to_string());
        source = it.source();
    }
    text
}
