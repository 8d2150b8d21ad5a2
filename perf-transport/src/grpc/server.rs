//! Serving a [`TransferService`] on a Unix domain socket or TCP, with the standard gRPC health
//! service beside it.

use std::future::Future;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::Server;

use super::accept::{ConnectionLimits, Incoming};
use super::endpoint::Endpoint;
use super::error::{ServeError, error_chain};
use super::proto::transfer_server::TransferServer;
use super::service::{HeldReplies, ReferenceHandler, ServiceConfig, TransferService};
use super::{CONNECTION_WINDOW, MAX_CHUNK_SIZE, MESSAGE_SLACK, STREAM_WINDOW};
use crate::reader::MAINTENANCE_INTERVAL;

/// How long the check for a live listener on an existing socket file may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Descriptors kept free of connections, for the listener, mappings being opened and the rest.
const RESERVED_DESCRIPTORS: u64 = 64;

/// A bound listening socket, ready to serve.
///
/// A Unix socket file is created with mode 0600 and removed again when the listener is dropped
/// (after serving), if it is still the file this listener created.
#[derive(Debug)]
pub struct Listener {
    local: Endpoint,
    socket: Socket,
}

#[derive(Debug)]
enum Socket {
    #[cfg(unix)]
    Unix {
        listener: tokio::net::UnixListener,
        /// Removes the socket file when the listener is dropped.
        file: SocketFile,
    },
    Tcp(TcpListener),
}

impl Listener {
    /// Binds `endpoint`. A socket file left at a Unix path by a process that no longer listens
    /// is replaced; a live one, or any other kind of file, is an error. A TCP port 0 binds a
    /// free port, which [`Listener::local_endpoint`] then names.
    pub async fn bind(endpoint: &Endpoint) -> Result<Listener, ServeError> {
        match endpoint {
            Endpoint::Unix(path) => bind_unix(path).await,
            Endpoint::Tcp { host, port } => {
                let listener = TcpListener::bind((host.as_str(), *port))
                    .await
                    .map_err(|source| io_error("bind", endpoint.to_string(), source))?;
                let local = listener.local_addr().map_err(|source| {
                    io_error("read the address of", endpoint.to_string(), source)
                })?;
                Ok(Listener {
                    local: Endpoint::Tcp {
                        host: local.ip().to_string(),
                        port: local.port(),
                    },
                    socket: Socket::Tcp(listener),
                })
            }
        }
    }

    /// The endpoint this listener is bound to, with the real port for a TCP port 0.
    pub fn local_endpoint(&self) -> &Endpoint {
        &self.local
    }

    /// Serves `service`, and the gRPC health service reporting it `SERVING`, until `shutdown`
    /// completes; then it reports `NOT_SERVING`, stops accepting connections and lets the calls
    /// in progress finish.
    ///
    /// Connections are bounded as [`ServiceConfig`] says (`max_connections`, lowered to fit
    /// the process's limit of open files, and `handshake_timeout`); a failed accept backs off
    /// instead of spinning. While serving, the reference handler's
    /// [`ReferenceHandler::maintain`] runs every second.
    pub async fn serve<F>(self, service: TransferService, shutdown: F) -> Result<(), ServeError>
    where
        F: Future<Output = ()> + Send,
    {
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_serving::<TransferServer<TransferService>>()
            .await;
        let limits = connection_limits(service.config());
        let maintenance = service.handler().map(|h| tokio::spawn(maintain(h)));
        let sweeping = service.held_replies().map(|held| tokio::spawn(sweep(held)));
        let config = service.config();
        let (max_call_duration, keepalive_interval, keepalive_timeout) = (
            config.max_call_duration,
            config.keepalive_interval,
            config.keepalive_timeout,
        );
        let transfer = TransferServer::new(service)
            .max_decoding_message_size(MAX_CHUNK_SIZE + MESSAGE_SLACK)
            // An ack may carry an inline reply, and a reply chunk is as large as a payload chunk.
            .max_encoding_message_size(MAX_CHUNK_SIZE + MESSAGE_SLACK);
        let router = Server::builder()
            .timeout(max_call_duration)
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .http2_keepalive_interval(Some(keepalive_interval))
            .http2_keepalive_timeout(Some(keepalive_timeout))
            .add_service(health)
            .add_service(transfer);
        let shutdown = async move {
            shutdown.await;
            reporter
                .set_not_serving::<TransferServer<TransferService>>()
                .await;
        };
        let endpoint = self.local.to_string();
        let served = match self.socket {
            #[cfg(unix)]
            Socket::Unix { listener, file } => {
                let served = router
                    .serve_with_incoming_shutdown(Incoming::new(listener, limits), shutdown)
                    .await;
                drop(file);
                served
            }
            Socket::Tcp(listener) => {
                router
                    .serve_with_incoming_shutdown(Incoming::new(listener, limits), shutdown)
                    .await
            }
        };
        for task in [maintenance, sweeping].into_iter().flatten() {
            task.abort();
        }
        served.map_err(|err| ServeError::Serve {
            endpoint,
            message: error_chain(&err),
        })
    }
}

/// The bounds on connections `config` asks for, within this process's limit of open files.
fn connection_limits(config: &ServiceConfig) -> ConnectionLimits {
    let fit = perf_platform::open_file_limit().map_or(usize::MAX, |soft| {
        usize::try_from(soft.saturating_sub(RESERVED_DESCRIPTORS).max(1)).unwrap_or(usize::MAX)
    });
    ConnectionLimits {
        max_connections: config.max_connections.min(fit),
        handshake_timeout: config.handshake_timeout,
    }
}

/// Runs the handler's upkeep every [`MAINTENANCE_INTERVAL`], one run at a time.
async fn maintain(handler: Arc<dyn ReferenceHandler>) {
    let mut tick = tokio::time::interval(MAINTENANCE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let handler = Arc::clone(&handler);
        // A panic in the upkeep is the handler's; serving goes on.
        let _ = tokio::task::spawn_blocking(move || handler.maintain()).await;
    }
}

/// Drops the replies their hosts did not come for in time, every [`MAINTENANCE_INTERVAL`].
async fn sweep(held: HeldReplies) {
    let mut tick = tokio::time::interval(MAINTENANCE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        held.sweep();
    }
}

/// Binds `endpoint` and serves `service` on it until `shutdown` completes (see
/// [`Listener::serve`]).
pub async fn serve<F>(
    endpoint: &Endpoint,
    service: TransferService,
    shutdown: F,
) -> Result<(), ServeError>
where
    F: Future<Output = ()> + Send,
{
    Listener::bind(endpoint)
        .await?
        .serve(service, shutdown)
        .await
}

#[cfg(unix)]
async fn bind_unix(path: &Path) -> Result<Listener, ServeError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

    let target = || path.display().to_string();
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => remove_if_stale(path).await?,
        Ok(meta) => {
            let found = if meta.is_dir() {
                "a directory"
            } else if meta.file_type().is_symlink() {
                "a symbolic link"
            } else {
                "a file that is not a socket"
            };
            return Err(ServeError::NotASocket {
                path: path.to_owned(),
                found,
            });
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(io_error("inspect", target(), source)),
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(|source| {
        if source.kind() == io::ErrorKind::AddrInUse {
            ServeError::InUse {
                path: path.to_owned(),
            }
        } else {
            io_error("bind", target(), source)
        }
    })?;
    // The socket exists with the umask's mode until this line; with the usual umask (022) no
    // other user can connect to it meanwhile, as connecting needs write permission.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|source| io_error("restrict the mode of", target(), source))?;
    let inode = std::fs::symlink_metadata(path)
        .map_err(|source| io_error("inspect", target(), source))?
        .ino();
    Ok(Listener {
        local: Endpoint::Unix(path.to_owned()),
        socket: Socket::Unix {
            listener,
            file: SocketFile {
                path: path.to_owned(),
                inode,
            },
        },
    })
}

#[cfg(not(unix))]
async fn bind_unix(path: &Path) -> Result<Listener, ServeError> {
    Err(io_error(
        "bind",
        path.display().to_string(),
        io::Error::new(
            io::ErrorKind::Unsupported,
            "no unix sockets on this platform",
        ),
    ))
}

/// Removes a socket file nobody listens on; a live listener makes it an error.
#[cfg(unix)]
async fn remove_if_stale(path: &Path) -> Result<(), ServeError> {
    let probe = tokio::time::timeout(PROBE_TIMEOUT, tokio::net::UnixStream::connect(path)).await;
    match probe {
        // A listener that answers, or one too busy to answer in time, is alive.
        Ok(Ok(_)) | Err(_) => Err(ServeError::InUse {
            path: path.to_owned(),
        }),
        Ok(Err(err)) if err.kind() == io::ErrorKind::ConnectionRefused => {
            std::fs::remove_file(path).map_err(|source| {
                io_error(
                    "remove the stale socket",
                    path.display().to_string(),
                    source,
                )
            })
        }
        Ok(Err(source)) => Err(io_error("probe", path.display().to_string(), source)),
    }
}

/// The socket file a listener created; dropping it removes the file if it is still that one.
#[cfg(unix)]
#[derive(Debug)]
struct SocketFile {
    path: std::path::PathBuf,
    inode: u64,
}

#[cfg(unix)]
impl Drop for SocketFile {
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt;

        let ours = std::fs::symlink_metadata(&self.path).is_ok_and(|meta| meta.ino() == self.inode);
        if ours {
            // Nothing useful can be done about a failure while dropping; the next bind replaces
            // a stale file anyway.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn io_error(action: &'static str, target: String, source: io::Error) -> ServeError {
    ServeError::Io {
        action,
        target,
        source,
    }
}
