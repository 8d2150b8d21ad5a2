//! Accepting connections within bounds, so that idle or hostile peers cannot lock a host out.
//!
//! - At most a configured number of connections are open. When all are, a new connection takes
//!   the place of the oldest one that has not yet sent the HTTP/2 preface (a real host sends it
//!   at once), and is closed itself if every open connection has.
//! - A connection that sends no preface within the handshake timeout is closed.
//! - A failed accept (out of descriptors: `EMFILE`, `ENFILE`; out of memory) closes the oldest
//!   connection still waiting for its preface and backs off, from 5 ms doubling to 500 ms,
//!   instead of retrying at once: the listening socket stays readable while the backlog is full,
//!   and retrying at once would spin.
//!
//! Established connections are watched by HTTP/2 keep-alive pings (see the server), which close
//! those whose peer stopped answering.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;
use tokio_stream::Stream;
use tonic::transport::server::Connected;

/// Length of the HTTP/2 client connection preface (RFC 9113, 3.4).
const PREFACE_LEN: usize = 24;
/// First pause after a failed accept.
const FIRST_BACKOFF: Duration = Duration::from_millis(5);
/// Longest pause after failed accepts in a row.
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// A listening socket that hands out connections.
pub(crate) trait Accept: Unpin + Send + 'static {
    /// A connection.
    type Io: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static;
    /// Polls for the next connection.
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Io>>;
}

#[cfg(unix)]
impl Accept for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Io>> {
        tokio::net::UnixListener::poll_accept(self, cx).map_ok(|(stream, _)| stream)
    }
}

impl Accept for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Io>> {
        let (stream, _) = ready!(tokio::net::TcpListener::poll_accept(self, cx))?;
        // Small control messages must not wait for Nagle's algorithm; a failure only costs
        // latency.
        let _ = stream.set_nodelay(true);
        Poll::Ready(Ok(stream))
    }
}

/// The bounds on connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnectionLimits {
    /// Most connections open at once.
    pub(crate) max_connections: usize,
    /// How long a connection may take to send the HTTP/2 preface.
    pub(crate) handshake_timeout: Duration,
}

/// What the acceptor has done, for tests and reports.
#[derive(Debug, Default)]
pub(crate) struct AcceptCounters {
    /// Connections handed to the server.
    pub(crate) accepted: AtomicUsize,
    /// Connections closed at once because every open one had completed its handshake.
    pub(crate) refused: AtomicUsize,
    /// Connections closed to make room before they sent their preface.
    pub(crate) evicted: AtomicUsize,
    /// Accepts that failed (out of descriptors, memory, ...).
    pub(crate) failed_accepts: AtomicUsize,
}

/// The connections that are open, and those still waiting for their preface, oldest first.
#[derive(Debug)]
struct Tracker {
    limits: ConnectionLimits,
    open: AtomicUsize,
    waiting: Mutex<VecDeque<Weak<ConnState>>>,
    counters: AcceptCounters,
}

/// What the acceptor and one connection share.
#[derive(Debug, Default)]
struct ConnState {
    handshaken: AtomicBool,
    evicted: AtomicBool,
    /// Whether this connection still counts against the limit.
    counted: AtomicBool,
    /// The task reading the connection, woken when it is evicted.
    reader: Mutex<Option<Waker>>,
}

impl Tracker {
    fn waiting(&self) -> MutexGuard<'_, VecDeque<Weak<ConnState>>> {
        // Every change is one push or pop; the queue stays valid after a panic.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Closes the oldest connection that has not sent its preface; false if there is none.
    fn evict_oldest_waiting(&self) -> bool {
        let mut waiting = self.waiting();
        while let Some(weak) = waiting.pop_front() {
            let Some(state) = weak.upgrade() else {
                continue;
            };
            if state.handshaken.load(Ordering::Acquire) {
                continue;
            }
            drop(waiting);
            state.evicted.store(true, Ordering::SeqCst);
            if state.counted.swap(false, Ordering::AcqRel) {
                self.open.fetch_sub(1, Ordering::AcqRel);
            }
            let reader = state
                .reader
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(waker) = reader {
                waker.wake();
            }
            self.counters.evicted.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Counts a new connection in, making room if the limit is reached; `None` if no room
    /// could be made.
    fn admit(&self) -> Option<Arc<ConnState>> {
        if self.open.load(Ordering::Acquire) >= self.limits.max_connections
            && !self.evict_oldest_waiting()
        {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.open.fetch_add(1, Ordering::AcqRel);
        let state = Arc::new(ConnState {
            counted: AtomicBool::new(true),
            ..ConnState::default()
        });
        let mut waiting = self.waiting();
        // Entries of connections that completed their handshake or closed are pruned here, so
        // the queue stays as long as the connections that wait at most.
        waiting.retain(|weak| {
            weak.upgrade()
                .is_some_and(|s| !s.handshaken.load(Ordering::Acquire))
        });
        waiting.push_back(Arc::downgrade(&state));
        self.counters.accepted.fetch_add(1, Ordering::Relaxed);
        Some(state)
    }
}

/// The stream of bounded connections a server takes from a listener; it never yields an error
/// (failures are handled here, with back-off).
pub(crate) struct Incoming<A> {
    listener: A,
    tracker: Arc<Tracker>,
    backoff: Option<Pin<Box<Sleep>>>,
    failures: u32,
}

impl<A: Accept> Incoming<A> {
    /// Connections from `listener`, within `limits`.
    pub(crate) fn new(listener: A, limits: ConnectionLimits) -> Incoming<A> {
        Incoming {
            listener,
            tracker: Arc::new(Tracker {
                limits,
                open: AtomicUsize::new(0),
                waiting: Mutex::new(VecDeque::new()),
                counters: AcceptCounters::default(),
            }),
            backoff: None,
            failures: 0,
        }
    }

    /// What has happened so far.
    #[cfg(test)]
    pub(crate) fn counters(&self) -> &AcceptCounters {
        &self.tracker.counters
    }

    /// Connections counted open now.
    #[cfg(test)]
    pub(crate) fn open(&self) -> usize {
        self.tracker.open.load(Ordering::Acquire)
    }
}

/// Whether a failed accept concerned only the one connection (it was reset before it was
/// accepted), so the next accept may follow at once.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

impl<A: Accept> Stream for Incoming<A> {
    type Item = Result<Connection<A::Io>, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(pause) = this.backoff.as_mut() {
                ready!(pause.as_mut().poll(cx));
                this.backoff = None;
            }
            match this.listener.poll_accept(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(io)) => {
                    this.failures = 0;
                    if let Some(state) = this.tracker.admit() {
                        let deadline = tokio::time::sleep(this.tracker.limits.handshake_timeout);
                        return Poll::Ready(Some(Ok(Connection {
                            io,
                            state,
                            tracker: Arc::clone(&this.tracker),
                            deadline: Some(Box::pin(deadline)),
                            preface_read: 0,
                        })));
                    }
                }
                Poll::Ready(Err(e)) if is_per_connection(&e) => {}
                Poll::Ready(Err(_)) => {
                    this.tracker
                        .counters
                        .failed_accepts
                        .fetch_add(1, Ordering::Relaxed);
                    this.tracker.evict_oldest_waiting();
                    let pause = FIRST_BACKOFF
                        .saturating_mul(1 << this.failures.min(10))
                        .min(MAX_BACKOFF);
                    this.failures = this.failures.saturating_add(1);
                    this.backoff = Some(Box::pin(tokio::time::sleep(pause)));
                }
            }
        }
    }
}

/// One accepted connection: closed if it sends no preface in time or is evicted before it
/// does; it stops counting against the limit when dropped.
pub(crate) struct Connection<Io> {
    io: Io,
    state: Arc<ConnState>,
    tracker: Arc<Tracker>,
    /// Until the preface has arrived.
    deadline: Option<Pin<Box<Sleep>>>,
    preface_read: usize,
}

impl<Io> Connection<Io> {
    /// Before the preface: whether the connection must close now, and why.
    fn closing(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        // The waker goes in before the flag is read, so an eviction between the two still
        // wakes this task.
        {
            let mut reader = self
                .state
                .reader
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if !reader.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *reader = Some(cx.waker().clone());
            }
        }
        if self.state.evicted.load(Ordering::SeqCst) {
            return Some(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed before its HTTP/2 preface to make room: every connection was open",
            ));
        }
        None
    }
}

impl<Io: AsyncRead + Unpin> AsyncRead for Connection<Io> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.deadline.is_none() {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        if let Some(e) = this.closing(cx) {
            return Poll::Ready(Err(e));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.preface_read += buf.filled().len() - before;
                if this.preface_read >= PREFACE_LEN {
                    this.deadline = None;
                    this.state.handshaken.store(true, Ordering::Release);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let expired = this
                    .deadline
                    .as_mut()
                    .is_some_and(|d| d.as_mut().poll(cx).is_ready());
                if expired {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "no HTTP/2 preface within {:?} (handshake_timeout)",
                            this.tracker.limits.handshake_timeout
                        ),
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for Connection<Io> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl<Io: Connected> Connected for Connection<Io> {
    type ConnectInfo = Io::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

impl<Io> Drop for Connection<Io> {
    fn drop(&mut self) {
        if self.state.counted.swap(false, Ordering::AcqRel) {
            self.tracker.open.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};
    use tokio_stream::StreamExt;

    use super::*;

    /// A listener handing out queued results; pending once the queue is empty.
    struct Scripted {
        queue: VecDeque<io::Result<DuplexStream>>,
        polls: usize,
    }

    impl Accept for Scripted {
        type Io = DuplexStream;

        fn poll_accept(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<DuplexStream>> {
            self.polls += 1;
            match self.queue.pop_front() {
                Some(next) => Poll::Ready(next),
                None => Poll::Pending,
            }
        }
    }

    /// A listener that fails every accept as a process out of descriptors does.
    struct OutOfFiles {
        polls: Arc<AtomicUsize>,
    }

    impl Accept for OutOfFiles {
        type Io = DuplexStream;

        fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<DuplexStream>> {
            self.polls.fetch_add(1, Ordering::Relaxed);
            // The socket stays readable: a caller that retried at once would never wait.
            cx.waker().wake_by_ref();
            Poll::Ready(Err(io::Error::from_raw_os_error(24)))
        }
    }

    const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    fn limits(max_connections: usize) -> ConnectionLimits {
        ConnectionLimits {
            max_connections,
            handshake_timeout: Duration::from_secs(10),
        }
    }

    fn pairs(n: usize) -> (Scripted, Vec<DuplexStream>) {
        let (mut queue, mut peers) = (VecDeque::new(), Vec::new());
        for _ in 0..n {
            let (ours, theirs) = duplex(1024);
            queue.push_back(Ok(ours));
            peers.push(theirs);
        }
        (Scripted { queue, polls: 0 }, peers)
    }

    #[tokio::test(start_paused = true)]
    async fn out_of_descriptors_backs_off_instead_of_spinning() {
        let polls = Arc::new(AtomicUsize::new(0));
        let mut incoming = Incoming::new(
            OutOfFiles {
                polls: Arc::clone(&polls),
            },
            limits(8),
        );
        let waited = tokio::time::timeout(Duration::from_secs(10), incoming.next()).await;
        assert!(waited.is_err(), "a connection came from a failing listener");
        let n = polls.load(Ordering::Relaxed);
        // 5 + 10 + ... + 500 ms pauses: about 27 tries in 10 s; a busy loop makes millions.
        assert!((10..=40).contains(&n), "{n} accepts in 10 s");
        assert_eq!(
            incoming.counters().failed_accepts.load(Ordering::Relaxed),
            n
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_a_preface_is_closed_after_the_handshake_timeout() {
        let (listener, mut peers) = pairs(2);
        let mut incoming = Incoming::new(listener, limits(8));
        let mut silent = incoming.next().await.unwrap().unwrap();
        let mut talking = incoming.next().await.unwrap().unwrap();
        peers[1].write_all(PREFACE).await.unwrap();
        let mut buf = [0u8; 24];
        talking.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, PREFACE);

        let read = tokio::time::timeout(Duration::from_secs(30), silent.read(&mut buf)).await;
        let err = read.expect("the silent connection was closed").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        assert!(err.to_string().contains("handshake_timeout"), "{err}");

        // A connection past its preface has no deadline any more.
        let later = tokio::time::timeout(Duration::from_secs(60), talking.read(&mut buf)).await;
        assert!(later.is_err(), "an established connection was closed");
        drop(silent);
        assert_eq!(incoming.open(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_limit_the_oldest_silent_connection_makes_room() {
        let (listener, mut peers) = pairs(4);
        let mut incoming = Incoming::new(listener, limits(2));
        let mut oldest = incoming.next().await.unwrap().unwrap();
        let mut host = incoming.next().await.unwrap().unwrap();
        peers[1].write_all(PREFACE).await.unwrap();
        let mut buf = [0u8; 24];
        host.read_exact(&mut buf).await.unwrap();

        // The third evicts the oldest silent one, not the host that has spoken.
        let mut third = incoming.next().await.unwrap().unwrap();
        let err = oldest.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted, "{err}");
        assert_eq!(incoming.counters().evicted.load(Ordering::Relaxed), 1);
        assert_eq!(incoming.open(), 2);

        // With every open connection past its preface, a new one is refused.
        peers[2].write_all(PREFACE).await.unwrap();
        third.read_exact(&mut buf).await.unwrap();
        let next = tokio::time::timeout(Duration::from_secs(1), incoming.next()).await;
        assert!(
            next.is_err(),
            "a fourth connection was admitted past the limit"
        );
        assert_eq!(incoming.counters().refused.load(Ordering::Relaxed), 1);
        drop(host);
        assert_eq!(incoming.open(), 1);
    }
}
