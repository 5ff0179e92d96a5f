//! One connection (decisions D3, D9): handshake, keep-alive, limits, and an orderly close.
//!
//! - The peer must send Handshake first, within the handshake timeout; a version below 2 or
//!   another network id is answered with Error. The node answers Handshake then
//!   HandshakeAck and expects the peer's HandshakeAck; nothing else is taken before it.
//! - After the handshake the peer is registered, receives the current NewEpoch, and each
//!   message is handled by the node state, one at a time (a block's checks run on the
//!   blocking pool, without the node's lock). 30 s of silence → Ping; 60 s → close.
//! - Limits: frames above `max_frame_length` and framing errors close the connection (the
//!   stream is out of step; never resynchronise); a well-formed frame with a bad payload is
//!   answered with Error and skipped, up to [`MAX_BAD_MESSAGES`]; a token bucket bounds
//!   the message rate; the outbound queue is bounded and a peer that lets it fill is dropped.
//! - Closing with a reason: send Error, stop sending, read until the peer closes (1 s at
//!   most), then close, so TCP does not reset the connection before the Error is read.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use spacetime::wire::{
    network_id_of, printable, user_agent, Handshake, Message, WireError, MAX_PEER_TEXT,
    PROTOCOL_VERSION,
};
use spacetime_io::{Connection, MessageReader, ReadError};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::epoch::PeerId;
use super::state::{Close, Frame, PeerLink, Shared};
use super::{now_unix_ms, PRODUCT};

/// Well-formed frames with an undecodable payload tolerated per connection.
pub const MAX_BAD_MESSAGES: u32 = 8;
/// How long the node reads after sending Error before it closes (decisions D9).
pub const LINGER: Duration = Duration::from_secs(1);
/// A token bucket: `burst` messages at once, refilled at `rate` per second.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    tokens: f64,
    burst: f64,
    rate: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: u32, burst: u32, now: Instant) -> Self {
        Self {
            tokens: f64::from(burst),
            burst: f64::from(burst),
            rate: f64::from(rate),
            last: now,
        }
    }

    /// Takes one token; `false` when the bucket is empty.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// How a session ended.
#[derive(Debug)]
enum End {
    /// The node closes, with a reason.
    Close(Close),
    /// The peer closed cleanly.
    PeerClosed,
    /// The node dropped the peer (shutdown, or a full outbound queue).
    Dropped,
    /// The socket failed.
    Io(String),
}

fn close(reason: String) -> End {
    End::Close(Close {
        reason,
        send_error: true,
    })
}

/// One taken connection slot (in the total and in the per-address count), given back
/// when the connection ends.
pub(crate) struct ConnectionSlot {
    shared: Arc<Shared>,
    ip: IpAddr,
}

/// Why a connection got no slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NoSlot {
    /// `max_peers` connections are open.
    Full(String),
    /// This address holds its share already.
    PerAddress(String),
}

impl NoSlot {
    /// The reason, for the log and the Error frame.
    pub fn reason(self) -> String {
        match self {
            NoSlot::Full(r) | NoSlot::PerAddress(r) => r,
        }
    }
}

impl ConnectionSlot {
    /// Takes a slot for a connection from `ip`, or says why there is none: the node is
    /// full, or this address holds its share already.
    pub fn take(shared: &Arc<Shared>, ip: IpAddr) -> Result<Self, NoSlot> {
        let mut per_ip = shared
            .per_ip
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mine = per_ip.get(&ip).copied().unwrap_or(0);
        if mine >= shared.cfg.max_peers_per_ip {
            return Err(NoSlot::PerAddress(format!(
                "too many connections from {ip} ({mine} open, max {} per address)",
                shared.cfg.max_peers_per_ip
            )));
        }
        let open = shared.connections.load(Ordering::SeqCst);
        let max = shared.cfg.max_peers;
        if open >= max {
            return Err(NoSlot::Full(format!(
                "too many peers ({open} connected, max {max})"
            )));
        }
        *per_ip.entry(ip).or_insert(0) += 1;
        shared.connections.fetch_add(1, Ordering::SeqCst);
        Ok(Self {
            shared: Arc::clone(shared),
            ip,
        })
    }

    /// [`ConnectionSlot::take`], waiting up to `patience` for a slot to be given back (after
    /// the node dropped an idle peer to make room).
    pub async fn wait(
        shared: &Arc<Shared>,
        ip: IpAddr,
        patience: Duration,
    ) -> Result<Self, NoSlot> {
        let deadline = Instant::now() + patience;
        loop {
            let freed = shared.slot_freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            match Self::take(shared, ip) {
                Err(NoSlot::Full(_)) if Instant::now() < deadline => {}
                other => return other,
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Self::take(shared, ip);
            }
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut per_ip = self
            .shared
            .per_ip
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
        self.shared.connections.fetch_sub(1, Ordering::SeqCst);
        drop(per_ip);
        self.shared.slot_freed.notify_waiters();
    }
}

/// Serves one accepted connection until it ends. `slot` is released when it returns.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    addr: SocketAddr,
    id: PeerId,
    shutdown: CancellationToken,
    slot: ConnectionSlot,
) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::warn!(peer = %addr, error = %e, "cannot set TCP_NODELAY");
    }
    let cfg = &shared.cfg;
    let (mut reader, wr) = Connection::new(stream, cfg.max_frame_length).into_split();
    let (tx, rx) = mpsc::channel::<Frame>(cfg.outbound_queue);
    let cancel = shutdown.child_token();
    shared.lock().track_handshake(id, addr, cancel.clone());
    let writer = tokio::spawn(write_loop(wr, rx, cancel.clone()));
    let end = session(&shared, &mut reader, &tx, id, addr, &cancel).await;
    shared.lock().unregister(id);
    match end {
        End::Close(c) => {
            if c.send_error {
                tracing::warn!(peer = %addr, reason = %c.reason, "closing connection");
            } else {
                tracing::info!(peer = %addr, reason = %c.reason, "closing connection");
            }
            if c.send_error {
                let frame = Message::Error(c.reason).encode_checked(cfg.max_frame_length);
                if let Ok(frame) = frame {
                    let _ = tx.try_send(Arc::new(frame));
                }
            }
            drop(tx);
            tokio::select! {
                () = reader.drain(LINGER) => {}
                () = shutdown.cancelled() => {}
            }
        }
        End::PeerClosed => {
            tracing::info!(peer = %addr, "peer closed the connection");
            drop(tx);
        }
        End::Dropped => {
            tracing::info!(peer = %addr, "connection dropped");
            cancel.cancel();
            drop(tx);
        }
        End::Io(e) => {
            tracing::info!(peer = %addr, error = %e, "connection failed");
            cancel.cancel();
            drop(tx);
        }
    }
    // The writer ends once its queue is drained (every sender is gone) or on cancel.
    let mut writer = writer;
    if tokio::time::timeout(LINGER, &mut writer).await.is_err() {
        writer.abort();
    }
    drop(slot);
}

async fn write_loop(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Frame>,
    cancel: CancellationToken,
) {
    loop {
        let frame = tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            f = rx.recv() => f,
        };
        let Some(frame) = frame else {
            let _ = wr.shutdown().await;
            return;
        };
        let written = tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            r = wr.write_all(&frame) => r,
        };
        if written.is_err() {
            cancel.cancel();
            return;
        }
    }
}

/// Queues a reply, waiting for room (back-pressure on this peer only).
async fn send(
    tx: &mpsc::Sender<Frame>,
    message: &Message,
    max_frame_length: u32,
    cancel: &CancellationToken,
) -> Result<(), End> {
    let frame = message
        .encode_checked(max_frame_length)
        .map_err(|e| close(format!("reply does not fit a frame: {e}")))?;
    tokio::select! {
        biased;
        () = cancel.cancelled() => Err(End::Dropped),
        r = tx.send(Arc::new(frame)) => r.map_err(|_| End::Dropped),
    }
}

fn read_failure(e: ReadError) -> End {
    match e {
        ReadError::Wire(WireError::Frame(e)) => close(format!("malformed frame: {e}")),
        ReadError::Wire(WireError::Message { error, .. }) => {
            close(format!("malformed message: {error}"))
        }
        ReadError::Truncated => End::Io("peer closed in the middle of a frame".into()),
        ReadError::Io(e) => End::Io(e.to_string()),
    }
}

async fn session(
    shared: &Arc<Shared>,
    reader: &mut MessageReader<OwnedReadHalf>,
    tx: &mpsc::Sender<Frame>,
    id: PeerId,
    addr: SocketAddr,
    cancel: &CancellationToken,
) -> End {
    let cfg = &shared.cfg;
    let handshake = tokio::select! {
        biased;
        () = cancel.cancelled() => return End::Dropped,
        r = tokio::time::timeout(cfg.handshake_timeout, handshake(shared, reader, tx, cancel)) => r,
    };
    let peer_agent = match handshake {
        Err(_) => {
            return close(format!(
                "handshake not completed within {:?}",
                cfg.handshake_timeout
            ))
        }
        Ok(Err(end)) => return end,
        Ok(Ok(agent)) => agent,
    };
    shared.lock().register(
        id,
        PeerLink {
            tx: tx.clone(),
            cancel: cancel.clone(),
            addr,
            useful_at: Instant::now(),
        },
    );
    tracing::info!(peer = %addr, user_agent = %peer_agent, "peer connected");

    let mut bucket = TokenBucket::new(cfg.max_messages_per_sec, cfg.message_burst, Instant::now());
    let mut last_rx = Instant::now();
    let mut ping_sent = false;
    let mut bad = 0u32;
    loop {
        let check_at = last_rx
            + if ping_sent {
                cfg.idle_timeout
            } else {
                cfg.ping_after
            };
        let read = tokio::select! {
            biased;
            () = cancel.cancelled() => return End::Dropped,
            () = tokio::time::sleep_until(check_at) => {
                if ping_sent {
                    return close(format!("no message for {:?}", cfg.idle_timeout));
                }
                ping_sent = true;
                let ping = Message::Ping {
                    nonce: rand::random(),
                    timestamp: i64::try_from(now_unix_ms()).unwrap_or(i64::MAX),
                };
                if let Err(end) = send(tx, &ping, cfg.max_frame_length, cancel).await {
                    return end;
                }
                continue;
            }
            r = reader.next() => r,
        };
        let now = Instant::now();
        let message = match read {
            Ok(Some(m)) => m,
            Ok(None) => return End::PeerClosed,
            Err(ReadError::Wire(WireError::Message { error: e, .. })) => {
                last_rx = now;
                bad += 1;
                if bad > MAX_BAD_MESSAGES {
                    return close(format!(
                        "more than {MAX_BAD_MESSAGES} malformed messages; last: {e}"
                    ));
                }
                tracing::warn!(peer = %addr, error = %e, "malformed message skipped");
                let reply = Message::Error(format!("malformed message: {e}"));
                if let Err(end) = send(tx, &reply, cfg.max_frame_length, cancel).await {
                    return end;
                }
                continue;
            }
            Err(e) => return read_failure(e),
        };
        last_rx = now;
        ping_sent = false;
        if !bucket.take(now) {
            return close(format!(
                "message rate limit exceeded ({} messages/s, burst {})",
                cfg.max_messages_per_sec, cfg.message_burst
            ));
        }
        let outcome = shared.handle(id, addr, message).await;
        for reply in &outcome.replies {
            if let Err(end) = send(tx, reply, cfg.max_frame_length, cancel).await {
                return end;
            }
        }
        if let Some(c) = outcome.close {
            return End::Close(c);
        }
    }
}

/// Runs the accepting side of the handshake; returns the peer's user agent.
async fn handshake(
    shared: &Arc<Shared>,
    reader: &mut MessageReader<OwnedReadHalf>,
    tx: &mpsc::Sender<Frame>,
    cancel: &CancellationToken,
) -> Result<String, End> {
    let cfg = &shared.cfg;
    let hello = match reader.next().await {
        Ok(Some(Message::Handshake(h))) => h,
        Ok(Some(other)) => {
            return Err(close(format!(
                "expected Handshake first, got {:?}",
                other.message_type()
            )))
        }
        Ok(None) => return Err(End::PeerClosed),
        Err(e) => return Err(read_failure(e)),
    };
    // The peer's text is logged and echoed: bounded and inert from here on.
    let agent = printable(&hello.user_agent, MAX_PEER_TEXT);
    if hello.protocol_version < PROTOCOL_VERSION {
        return Err(close(format!(
            "protocol version {} is not supported; this node speaks version {PROTOCOL_VERSION}",
            hello.protocol_version
        )));
    }
    match network_id_of(&hello.user_agent) {
        Some(id) if id == cfg.network_id => {}
        theirs => {
            return Err(close(format!(
            "network id mismatch: this node is on {:?}, the peer's user agent \"{agent}\" names {}",
            cfg.network_id,
            theirs.map_or_else(
                || "no network".to_owned(),
                |t| format!("\"{}\"", printable(t, MAX_PEER_TEXT))
            )
        )))
        }
    }
    let ours = Message::Handshake(Handshake {
        protocol_version: PROTOCOL_VERSION,
        timestamp: i64::try_from(now_unix_ms() / 1000).unwrap_or(i64::MAX),
        node_id: shared.node_id.clone(),
        user_agent: user_agent(PRODUCT, env!("CARGO_PKG_VERSION"), &cfg.network_id),
    });
    send(tx, &ours, cfg.max_frame_length, cancel).await?;
    send(tx, &Message::HandshakeAck, cfg.max_frame_length, cancel).await?;
    match reader.next().await {
        Ok(Some(Message::HandshakeAck)) => Ok(agent),
        Ok(Some(other)) => Err(close(format!(
            "expected HandshakeAck, got {:?}",
            other.message_type()
        ))),
        Ok(None) => Err(End::PeerClosed),
        Err(e) => Err(read_failure(e)),
    }
}

/// Admits a connection that found the node full after an idle peer was dropped for it:
/// waits (bounded) for that peer's slot, then serves it, or refuses it when another
/// connection took the slot first.
pub(crate) async fn admit_after_eviction(
    shared: Arc<Shared>,
    stream: TcpStream,
    addr: SocketAddr,
    id: PeerId,
    shutdown: CancellationToken,
) {
    // An evicted peer's connection ends within its linger.
    match ConnectionSlot::wait(&shared, addr.ip(), LINGER * 2).await {
        Ok(slot) => serve(shared, stream, addr, id, shutdown, slot).await,
        Err(no) => refuse(stream, addr, no.reason()).await,
    }
}

/// Refuses a connection beyond `max_peers`: Error, then the linger of D9.
pub(crate) async fn refuse(stream: TcpStream, addr: SocketAddr, reason: String) {
    let _ = stream.set_nodelay(true);
    tracing::warn!(peer = %addr, reason = %reason, "connection refused");
    // The reason is short: any frame limit of the protocol fits it.
    let mut conn = Connection::new(stream, spacetime::wire::MAX_FRAME_LENGTH);
    conn.close_with_error(reason, LINGER).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 3, t0);
        assert!(b.take(t0) && b.take(t0) && b.take(t0));
        assert!(!b.take(t0));
        // 100 ms at 10/s refills one token.
        let t1 = t0 + Duration::from_millis(100);
        assert!(b.take(t1));
        assert!(!b.take(t1));
        // Never more than the burst.
        let t2 = t1 + Duration::from_secs(60);
        assert!(b.take(t2) && b.take(t2) && b.take(t2));
        assert!(!b.take(t2));
    }
}
