//! Accepting control-API connections so that no peer can take the daemon's descriptors or a
//! core (issue 10, row 5): what [`incoming`] hands to tonic instead of a bare listener.
//!
//! * **A cap per listener.** Each listener holds at most `maxTcpConnections` /
//!   `maxSocketConnections` connections (a permit travels with each [`Conn`]); one accepted
//!   beyond that is closed at once, so the kernel's backlog never fills with peers waiting
//!   for nothing. The Unix socket has its own budget: local control answers whatever the
//!   TCP side does.
//! * **A first-byte deadline.** A connection must send its first bytes (plaintext) or
//!   complete the TLS handshake within [`HANDSHAKE_TIMEOUT`], else it is closed; until then
//!   it holds a permit, so silent peers are bounded by the cap too.
//! * **Accept errors never spin.** Running out of descriptors or kernel memory (EMFILE,
//!   ENFILE, ENOBUFS, ENOMEM) pauses that listener with a growing backoff (up to 1 s) and a
//!   warning at most every [`WARN_EVERY`]; errors that concern one aborted connection are
//!   skipped. (tonic's own loop retries every accept error at once: a core spins on EMFILE.)
//! * **The descriptor limit** is raised from the soft to the hard limit at start
//!   ([`raise_nofile_limit`]), and the caps are lowered to fit in it ([`fit_caps`]).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

/// How long a new connection may take to send its first bytes or finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest pause after an accept error (the backoff doubles from 10 ms up to this).
pub const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);
/// Descriptors kept out of the connection budget: plots, the node link, files, the runtime.
pub const FD_RESERVE: u64 = 256;
/// The shortest interval between two warnings of one listener about the same condition.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// What one listener accepts.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Names the listener in logs ("tcp", "unix").
    pub name: &'static str,
    /// Connections held at once (handshaking or serving).
    pub max_connections: usize,
    /// First bytes or TLS handshake within this.
    pub handshake_timeout: Duration,
}

/// An accepted connection, holding its listener's permit until hyper drops it.
#[derive(Debug)]
pub struct Conn<IO> {
    io: IO,
    peer: Option<SocketAddr>,
    _permit: OwnedSemaphorePermit,
}

/// What tonic learns about a connection ([`tonic::Request::extensions`]).
#[derive(Debug, Clone, Copy)]
pub struct PeerInfo {
    /// The peer's address (TCP only).
    pub peer: Option<SocketAddr>,
}

impl<IO> tonic::transport::server::Connected for Conn<IO> {
    type ConnectInfo = PeerInfo;
    fn connect_info(&self) -> PeerInfo {
        PeerInfo { peer: self.peer }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Conn<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Conn<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// A listening socket of the control API.
pub trait Listener: Send + 'static {
    /// An accepted stream.
    type Io: Send + 'static;
    /// Accepts one connection.
    fn accept_one(&self)
        -> impl Future<Output = io::Result<(Self::Io, Option<SocketAddr>)>> + Send;
}

impl Listener for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;
    async fn accept_one(&self) -> io::Result<(Self::Io, Option<SocketAddr>)> {
        let (s, peer) = self.accept().await?;
        Ok((s, Some(peer)))
    }
}

impl Listener for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;
    async fn accept_one(&self) -> io::Result<(Self::Io, Option<SocketAddr>)> {
        let (s, _) = self.accept().await?;
        Ok((s, None))
    }
}

/// What an accept error means for the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AcceptError {
    /// One connection failed before we got it: accept the next one at once.
    Skip,
    /// The process or the system is out of a resource: pause before trying again.
    Exhausted,
    /// Anything else: pause too (a loop that retries at once would spin).
    Other,
}

fn classify(e: &io::Error) -> AcceptError {
    match e.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => AcceptError::Exhausted,
        // accept(2) reports these for the connection being accepted (Linux passes pending
        // network errors on), not for the listener.
        Some(
            libc::ECONNABORTED
            | libc::ECONNRESET
            | libc::EINTR
            | libc::EAGAIN
            | libc::EPROTO
            | libc::EPERM
            | libc::ENETDOWN
            | libc::ENOPROTOOPT
            | libc::EHOSTDOWN
            | libc::ENONET
            | libc::EHOSTUNREACH
            | libc::EOPNOTSUPP
            | libc::ENETUNREACH
            | libc::ETIMEDOUT,
        ) => AcceptError::Skip,
        _ => AcceptError::Other,
    }
}

/// Warns at most once per [`WARN_EVERY`], counting what it did not say.
#[derive(Debug, Default)]
struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    /// `Some(suppressed since the last warning)` when a warning is due now.
    fn due(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < WARN_EVERY => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// The connections of `listener`, each past `handshake` (which waits for the first bytes
/// or runs the TLS handshake) within the deadline of `limits`, at most
/// `limits.max_connections` at once. Ends when `stop` is cancelled or the stream is
/// dropped.
pub fn incoming<L, H, Fut, IO>(
    listener: L,
    limits: Limits,
    handshake: H,
    stop: CancellationToken,
) -> ReceiverStream<io::Result<Conn<IO>>>
where
    L: Listener,
    H: Fn(L::Io) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = io::Result<IO>> + Send + 'static,
    IO: Send + 'static,
{
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(accept_loop(listener, limits, handshake, tx, stop));
    ReceiverStream::new(rx)
}

async fn accept_loop<L, H, Fut, IO>(
    listener: L,
    limits: Limits,
    handshake: H,
    tx: mpsc::Sender<io::Result<Conn<IO>>>,
    stop: CancellationToken,
) where
    L: Listener,
    H: Fn(L::Io) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = io::Result<IO>> + Send + 'static,
    IO: Send + 'static,
{
    let name = limits.name;
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut backoff = Duration::ZERO;
    let (mut full, mut exhausted) = (Throttle::default(), Throttle::default());
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            () = tx.closed() => return,
            r = listener.accept_one() => r,
        };
        let (io, peer) = match accepted {
            Ok(x) => {
                backoff = Duration::ZERO;
                x
            }
            Err(e) => {
                let kind = classify(&e);
                if kind == AcceptError::Skip {
                    tracing::debug!(listener = name, error = %e, "accept failed for one connection");
                    continue;
                }
                backoff = (backoff * 2).clamp(Duration::from_millis(10), MAX_ACCEPT_BACKOFF);
                if let Some(more) = exhausted.due() {
                    tracing::warn!(
                        listener = name,
                        error = %e,
                        pause_ms = backoff.as_millis() as u64,
                        repeated = more,
                        "cannot accept a control connection{}; pausing this listener",
                        if kind == AcceptError::Exhausted {
                            " (out of descriptors or memory: raise the open-file limit, or lower maxTcpConnections)"
                        } else {
                            ""
                        }
                    );
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            drop(io);
            if let Some(more) = full.due() {
                tracing::warn!(
                    listener = name,
                    cap = limits.max_connections,
                    refused_since_last_warning = more,
                    "control listener at its connection cap: closing new connections"
                );
            }
            continue;
        };
        let (handshake, tx, deadline) = (handshake.clone(), tx.clone(), limits.handshake_timeout);
        tokio::spawn(async move {
            match tokio::time::timeout(deadline, handshake(io)).await {
                Ok(Ok(io)) => {
                    let conn = Conn {
                        io,
                        peer,
                        _permit: permit,
                    };
                    let _ = tx.send(Ok(conn)).await;
                }
                Ok(Err(e)) => {
                    tracing::debug!(listener = name, peer = ?peer, error = %e, "connection failed its handshake");
                }
                Err(_) => {
                    tracing::debug!(listener = name, peer = ?peer, "closed a connection that sent nothing in time");
                }
            }
        });
    }
}

/// Whether a byte can be read from `fd` now, without consuming it (`Ok(0)`: end of file).
fn peek_one(fd: &impl std::os::fd::AsFd) -> io::Result<usize> {
    let mut b = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    socket2::SockRef::from(fd).peek(&mut b)
}

/// An accepted stream socket whose first byte can be waited for.
pub trait Socket: std::os::fd::AsFd + Send + Sync + 'static {
    /// Waits for read readiness (which may be a false positive).
    fn read_ready(&self) -> impl Future<Output = io::Result<()>> + Send;
    /// Runs a non-blocking read-side `f`, clearing readiness when it would block.
    fn try_read_io<R>(&self, f: impl FnOnce() -> io::Result<R>) -> io::Result<R>;
}

impl Socket for tokio::net::TcpStream {
    fn read_ready(&self) -> impl Future<Output = io::Result<()>> + Send {
        self.readable()
    }
    fn try_read_io<R>(&self, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        self.try_io(tokio::io::Interest::READABLE, f)
    }
}

impl Socket for tokio::net::UnixStream {
    fn read_ready(&self) -> impl Future<Output = io::Result<()>> + Send {
        self.readable()
    }
    fn try_read_io<R>(&self, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        self.try_io(tokio::io::Interest::READABLE, f)
    }
}

/// Waits until a connection has sent its first byte (or closed). Readiness alone is not
/// proof (tokio may report a socket readable that is not): the byte is peeked at.
pub async fn first_bytes<S: Socket>(s: S) -> io::Result<S> {
    loop {
        s.read_ready().await?;
        match s.try_read_io(|| peek_one(&s)) {
            Ok(_) => return Ok(s),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

/// TCP options of an accepted connection: no Nagle delay (small gRPC frames), and kernel
/// keepalive probes so that a vanished peer frees its slot even when HTTP/2 pings cannot
/// (an HTTP/1.1 gRPC-Web connection).
pub fn tune_tcp(s: &tokio::net::TcpStream) {
    let _ = s.set_nodelay(true);
    let ka = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(10));
    let _ = socket2::SockRef::from(s).set_tcp_keepalive(&ka);
}

/// Raises the soft open-file limit to the hard limit; returns the soft limit in force.
pub fn raise_nofile_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let lim = getrlimit(Resource::Nofile);
    let (cur, max) = (lim.current, lim.maximum);
    if cur != max {
        let mut raised = lim;
        raised.current = max;
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => {
                tracing::debug!(from = ?cur, to = ?max, "raised the open-file limit");
                return max.unwrap_or(u64::MAX);
            }
            Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
        }
    }
    cur.unwrap_or(u64::MAX)
}

/// The connection caps `(tcp, unix)` lowered to fit `fd_limit` with [`FD_RESERVE`] kept
/// for everything else; `None` for a listener that is not configured. The Unix socket's
/// budget comes first (at most half the room): local control must always answer.
pub fn fit_caps(fd_limit: u64, tcp: Option<u32>, unix: u32) -> (Option<usize>, usize) {
    let room = fd_limit.saturating_sub(FD_RESERVE).max(8);
    let unix = u64::from(unix).min(room / 2).max(1);
    let tcp = tcp.map(|t| u64::from(t).min(room - unix).max(1) as usize);
    (tcp, unix as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_fit_the_descriptor_limit() {
        assert_eq!(fit_caps(1 << 20, Some(256), 64), (Some(256), 64));
        assert_eq!(fit_caps(1024, Some(1000), 64), (Some(704), 64));
        // The defaults under a 1024 limit: the socket gets half the room.
        assert_eq!(fit_caps(1024, Some(256), 1024), (Some(256), 384));
        assert_eq!(fit_caps(300, Some(256), 64), (Some(22), 22));
        assert_eq!(fit_caps(10, Some(256), 64), (Some(4), 4));
        assert_eq!(fit_caps(u64::MAX, None, 64), (None, 64));
    }

    #[test]
    fn accept_errors_are_classified() {
        let e = |n| io::Error::from_raw_os_error(n);
        assert_eq!(classify(&e(libc::EMFILE)), AcceptError::Exhausted);
        assert_eq!(classify(&e(libc::ENFILE)), AcceptError::Exhausted);
        assert_eq!(classify(&e(libc::ECONNABORTED)), AcceptError::Skip);
        assert_eq!(classify(&e(libc::EBADF)), AcceptError::Other);
        assert_eq!(classify(&io::Error::other("x")), AcceptError::Other);
    }

    #[test]
    fn warnings_are_throttled() {
        let mut t = Throttle::default();
        assert_eq!(t.due(), Some(0));
        assert_eq!(t.due(), None);
        assert_eq!(t.due(), None);
        t.last = Some(Instant::now() - WARN_EVERY);
        assert_eq!(t.due(), Some(2));
    }

    /// A listener whose every accept fails with EMFILE, counting the calls.
    struct Failing(Arc<std::sync::atomic::AtomicU32>);
    impl Listener for Failing {
        type Io = tokio::net::TcpStream;
        async fn accept_one(&self) -> io::Result<(Self::Io, Option<SocketAddr>)> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Err(io::Error::from_raw_os_error(libc::EMFILE))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn exhausted_descriptors_pause_the_loop() {
        let stop = CancellationToken::new();
        let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let limits = Limits {
            name: "test",
            max_connections: 4,
            handshake_timeout: HANDSHAKE_TIMEOUT,
        };
        let _rx = incoming(
            Failing(Arc::clone(&calls)),
            limits,
            first_bytes::<tokio::net::TcpStream>,
            stop.clone(),
        );
        // 10 s of (paused, auto-advanced) time: 10 + 20 + ... ms, then 1 s pauses.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let calls = calls.load(std::sync::atomic::Ordering::Relaxed);
        stop.cancel();
        assert!((5..=20).contains(&calls), "{calls} accept calls in 10 s");
    }

    #[tokio::test]
    async fn the_cap_closes_extra_connections_and_silence_times_out() {
        use tokio::io::AsyncReadExt as _;
        use tokio_stream::StreamExt as _;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let stop = CancellationToken::new();
        let limits = Limits {
            name: "test",
            max_connections: 2,
            handshake_timeout: Duration::from_millis(300),
        };
        let mut conns = incoming(
            l,
            limits,
            first_bytes::<tokio::net::TcpStream>,
            stop.clone(),
        );
        let mut silent = Vec::new();
        for _ in 0..2 {
            silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        // The third is over the cap: closed at once.
        let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
            .await
            .expect("closed")
            .unwrap_or(0);
        assert_eq!(n, 0);
        // The silent ones are closed after the deadline, which frees their permits.
        for s in &mut silent {
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                .await
                .expect("closed")
                .unwrap_or(0);
            assert_eq!(n, 0);
        }
        // A client that speaks is handed on.
        let mut talker = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut talker, b"PRI")
            .await
            .unwrap();
        let conn = tokio::time::timeout(Duration::from_secs(5), conns.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(conn.peer.is_some());
        stop.cancel();
    }
}
