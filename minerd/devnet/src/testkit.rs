//! The test kit (feature `testkit`): the one raw wire peer every test drives a node or the
//! miner with, built on [`spacetime_io::Connection`].
//!
//! [`WirePeer`] plays either side: [`WirePeer::handshaken`] connects to a devnet node as a
//! miner would (the devnet node's own tests and the end-to-end suites), and
//! [`WirePeer::from_stream`] takes an accepted socket so a test can play the node against
//! the miner's link. A peer that sends bad frames is a bug of the side under test, so the
//! kit panics on them instead of returning them.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::bail;
use spacetime::wire::{user_agent, Handshake, Message, NewEpoch, MAX_FRAME_LENGTH};
use spacetime_io::{Connection, ReadError};
use tokio::net::TcpStream;

use crate::now_unix_ms;

/// The Development network id.
pub const DEVNET: &str = spacetime::consensus::DEVNET_NETWORK_ID;

/// How a receive ended without a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvEnd {
    /// The other side closed the connection.
    Closed,
    /// Nothing arrived in time.
    Timeout,
}

/// A raw peer speaking the wire protocol.
#[derive(Debug)]
pub struct WirePeer {
    conn: Connection,
}

impl WirePeer {
    /// Connects (TCP_NODELAY, as decisions D9 asks).
    pub async fn connect(addr: SocketAddr) -> io::Result<Self> {
        Ok(Self {
            conn: Connection::connect(addr, MAX_FRAME_LENGTH).await?,
        })
    }

    /// Wraps an accepted (or otherwise connected) socket.
    pub fn from_stream(stream: TcpStream) -> io::Result<Self> {
        stream.set_nodelay(true)?;
        Ok(Self {
            conn: Connection::new(stream, MAX_FRAME_LENGTH),
        })
    }

    /// Connects and completes the version-2 handshake on `network`; returns the first
    /// NewEpoch.
    pub async fn handshaken(addr: SocketAddr, network: &str) -> anyhow::Result<(Self, NewEpoch)> {
        let mut p = Self::connect(addr).await?;
        p.send(&handshake(2, network)).await?;
        match p.recv(Duration::from_secs(5)).await {
            Ok(Message::Handshake(_)) => {}
            other => bail!("expected Handshake, got {other:?}"),
        }
        match p.recv(Duration::from_secs(5)).await {
            Ok(Message::HandshakeAck) => {}
            other => bail!("expected HandshakeAck, got {other:?}"),
        }
        p.send(&Message::HandshakeAck).await?;
        match p.recv(Duration::from_secs(5)).await {
            Ok(Message::NewEpoch(e)) => Ok((p, e)),
            other => bail!("expected NewEpoch, got {other:?}"),
        }
    }

    /// Sends one message (encoded without the frame limit check: tests send what they like).
    pub async fn send(&mut self, m: &Message) -> io::Result<()> {
        self.send_raw(&m.encode()).await
    }

    /// Sends raw bytes (garbage, hostile lengths).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.conn.send_raw(bytes).await
    }

    /// The next message within `limit`.
    pub async fn recv(&mut self, limit: Duration) -> Result<Message, RecvEnd> {
        match tokio::time::timeout(limit, self.conn.next()).await {
            Err(_) => Err(RecvEnd::Timeout),
            Ok(Ok(Some(m))) => Ok(m),
            Ok(Ok(None) | Err(ReadError::Truncated | ReadError::Io(_))) => Err(RecvEnd::Closed),
            // A side that sends bad frames is failing; report it loudly.
            Ok(Err(ReadError::Wire(e))) => panic!("the other side sent a bad frame: {e}"),
        }
    }

    /// Skips messages until one matches `pred`, within `limit` overall.
    pub async fn recv_until(
        &mut self,
        limit: Duration,
        pred: impl Fn(&Message) -> bool,
    ) -> Result<Message, RecvEnd> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let m = self.recv(left).await?;
            if pred(&m) {
                return Ok(m);
            }
        }
    }

    /// Reads until the other side closes (within `limit`); returns what arrived on the
    /// way, or `Err` with it when the connection stayed open.
    pub async fn until_closed(&mut self, limit: Duration) -> Result<Vec<Message>, Vec<Message>> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv(left).await {
                Ok(m) => seen.push(m),
                Err(RecvEnd::Closed) => return Ok(seen),
                Err(RecvEnd::Timeout) => return Err(seen),
            }
        }
    }
}

/// A Handshake of `version` on `network`, from a peer called `test-peer`.
pub fn handshake(version: i32, network: &str) -> Message {
    Message::Handshake(Handshake {
        protocol_version: version,
        timestamp: i64::try_from(now_unix_ms() / 1000).unwrap_or(i64::MAX),
        node_id: "test-peer".into(),
        user_agent: user_agent("test", "0", network),
    })
}

/// The reason of the first Error among `messages`.
pub fn error_reason(messages: &[Message]) -> Option<&str> {
    messages.iter().find_map(|m| match m {
        Message::Error(r) => Some(r.as_str()),
        _ => None,
    })
}
