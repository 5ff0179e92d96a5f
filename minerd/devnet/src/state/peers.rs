//! The registry of connected (handshaken) peers and the broadcast to them: each peer has a
//! bounded outbound queue, and a peer whose queue is full is dropped, never waited for.
//! Each peer also has the time it last sent something useful (a proof, a block or a
//! transaction the node took; its handshake counts as one), so that a full node can drop
//! the peer idle the longest to make room (decisions R8); connections still in their
//! handshake are tracked too, and one stuck there goes first.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use spacetime::wire::Message;
use tokio::sync::mpsc;
use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use crate::epoch::PeerId;

/// An encoded frame, shared between the queues of every peer it is broadcast to.
pub(crate) type Frame = Arc<Vec<u8>>;

/// How the node reaches a connected (handshaken) peer.
#[derive(Debug)]
pub(crate) struct PeerLink {
    /// The peer's bounded outbound queue.
    pub tx: mpsc::Sender<Frame>,
    /// Cancelled to drop the peer (a full queue means it is too slow).
    pub cancel: CancellationToken,
    /// Remote address, for logs.
    pub addr: SocketAddr,
    /// When it last sent something useful (set at registration).
    pub useful_at: Instant,
}

/// A connection still in its handshake: where from, since when, and how to drop it.
#[derive(Debug)]
struct Handshaking {
    addr: SocketAddr,
    since: Instant,
    cancel: CancellationToken,
}

/// A handshake this old is the first to go when the node is full: an honest peer finishes
/// it in milliseconds.
pub(crate) const HANDSHAKE_GRACE: Duration = Duration::from_secs(1);

/// The connected peers, by id, and the connections still in their handshake.
#[derive(Debug)]
pub(crate) struct Peers {
    links: HashMap<PeerId, PeerLink>,
    handshaking: HashMap<PeerId, Handshaking>,
    max_frame_length: u32,
}

impl Peers {
    /// No peers; broadcasts are limited to frames of `max_frame_length` bytes.
    pub fn new(max_frame_length: u32) -> Self {
        Self {
            links: HashMap::new(),
            handshaking: HashMap::new(),
            max_frame_length,
        }
    }

    /// Connected peers.
    pub fn len(&self) -> usize {
        self.links.len()
    }

    /// Notes a new connection that has not completed its handshake yet.
    pub fn track_handshake(&mut self, id: PeerId, addr: SocketAddr, cancel: CancellationToken) {
        let since = Instant::now();
        self.handshaking.insert(
            id,
            Handshaking {
                addr,
                since,
                cancel,
            },
        );
    }

    /// Adds a peer after queueing `first` for it (a peer that cannot take it is dropped).
    pub fn register(&mut self, id: PeerId, link: PeerLink, first: &Message) {
        self.handshaking.remove(&id);
        let frame = Arc::new(first.encode());
        if link.tx.try_send(frame).is_err() {
            link.cancel.cancel();
            return;
        }
        self.links.insert(id, link);
    }

    /// Notes that peer `id` just sent something useful.
    pub fn mark_useful(&mut self, id: PeerId) {
        if let Some(link) = self.links.get_mut(&id) {
            link.useful_at = Instant::now();
        }
    }

    /// Drops a connection to make room: the oldest one still in its handshake after
    /// [`HANDSHAKE_GRACE`], else the peer that sent nothing useful for the longest, if that
    /// is at least `idle_after`. Cancels its connection and forgets it; returns its address
    /// and how long it was idle.
    pub fn evict_idle(&mut self, idle_after: Duration) -> Option<(SocketAddr, Duration)> {
        let now = Instant::now();
        let stalled = self
            .handshaking
            .iter()
            .filter(|(_, h)| now.saturating_duration_since(h.since) >= HANDSHAKE_GRACE)
            .min_by_key(|(id, h)| (h.since, **id))
            .map(|(&id, _)| id);
        if let Some(h) = stalled.and_then(|id| self.handshaking.remove(&id)) {
            h.cancel.cancel();
            return Some((h.addr, now.saturating_duration_since(h.since)));
        }
        let (&id, link) = self
            .links
            .iter()
            .filter(|(_, l)| now.saturating_duration_since(l.useful_at) >= idle_after)
            .min_by_key(|(id, l)| (l.useful_at, **id))?;
        let found = (link.addr, now.saturating_duration_since(link.useful_at));
        link.cancel.cancel();
        self.links.remove(&id);
        Some(found)
    }

    /// Removes a peer (its connection ended).
    pub fn unregister(&mut self, id: PeerId) {
        self.links.remove(&id);
        self.handshaking.remove(&id);
    }

    /// Queues `message` for every peer but `except`. A peer whose queue is full is too slow:
    /// it is dropped, never waited for.
    pub fn broadcast(&mut self, message: &Message, except: Option<PeerId>) {
        let frame = match message.encode_checked(self.max_frame_length) {
            Ok(f) => Arc::new(f),
            Err(e) => {
                tracing::error!(error = %e, kind = ?message.message_type(), "message too large to broadcast");
                return;
            }
        };
        let mut gone = Vec::new();
        for (&id, link) in &self.links {
            if Some(id) == except {
                continue;
            }
            match link.tx.try_send(Arc::clone(&frame)) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(peer = %link.addr, "outbound queue full; dropping slow peer");
                    link.cancel.cancel();
                    gone.push(id);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => gone.push(id),
            }
        }
        for id in gone {
            self.links.remove(&id);
        }
    }
}
