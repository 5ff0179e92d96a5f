//! The node link (miner side of decisions D3): one TCP connection to a Spacetime node, the
//! version-2 handshake with the network id check, keep-alive, and reconnection.
//!
//! [`spawn`] starts one task that owns the connection. It hands every message the mining
//! loop cares about to a channel of [`LinkEvent`]s and writes the [`Outbound`] messages the
//! loop sends back. Ping is answered here (Pong, same nonce), silence is probed with a Ping
//! after [`LinkTimings::ping_after`] and ends the connection after
//! [`LinkTimings::close_after`]. A malformed frame or payload from the node is answered with
//! Error and the connection is closed: the stream is never resynchronised (see [`session`]).
//!
//! On any failure the link records the state and the error in [`MiningStats`], emits
//! `NodeDisconnected`, and reconnects with [`Backoff`]. After `maxConnectionRetries`
//! consecutive failed attempts the node is reported [`LinkState::Unreachable`] and retried
//! at the capped interval. Each connection has a generation number: outbound messages are
//! tagged with the generation they were meant for, so nothing prepared for a lost
//! connection is ever sent on the next one.

pub mod backoff;
pub mod session;

use std::time::Duration;

use spacetime::wire::Message;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use backoff::Backoff;
use session::Session;

use crate::events::{Event, EventBus};
use crate::stats::{LinkState, MiningStats};

/// Product name in our user agent.
pub const PRODUCT: &str = "spacetime-miner";

/// Timings of the link; [`LinkTimings::default`] is the protocol's, tests shrink them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkTimings {
    /// Limit for the TCP connect (per resolved address).
    pub connect_timeout: Duration,
    /// Limit for the whole handshake (D3: 5 s).
    pub handshake_timeout: Duration,
    /// Silence after which we send a Ping (D3: 30 s).
    pub ping_after: Duration,
    /// Silence after which we close (D3: 60 s).
    pub close_after: Duration,
    /// How long we keep reading after sending Error, so the node sees it (D9: 1 s).
    pub error_linger: Duration,
    /// Reconnect schedule.
    pub backoff: Backoff,
}

impl Default for LinkTimings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(5),
            ping_after: Duration::from_secs(30),
            close_after: Duration::from_secs(60),
            error_linger: Duration::from_secs(1),
            backoff: Backoff {
                base: Duration::from_secs(5),
                cap: backoff::DEFAULT_CAP,
            },
        }
    }
}

/// Everything the link needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkConfig {
    /// Host name or IP address of the node.
    pub host: String,
    /// Its TCP port.
    pub port: u16,
    /// The network id both sides must announce.
    pub network_id: String,
    /// Our node id in the handshake.
    pub node_id: String,
    /// Our user agent (`spacetime-miner/<version> network=<id>`).
    pub user_agent: String,
    /// Consecutive failed attempts before the node is reported unreachable.
    pub max_retries: u32,
    /// Largest frame accepted from the node (bounds the read buffer).
    pub max_frame: u32,
    /// Timings.
    pub timings: LinkTimings,
}

impl LinkConfig {
    /// `host:port`, with brackets around an IPv6 literal.
    pub fn endpoint(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Why a connection attempt or a connection failed. The text is what the status shows.
#[derive(Debug, Error)]
pub enum LinkError {
    /// The host name did not resolve.
    #[error("cannot resolve {endpoint}")]
    Resolve {
        /// `host:port`.
        endpoint: String,
        /// The resolver's error.
        #[source]
        source: std::io::Error,
    },
    /// The host name resolved to no address.
    #[error("{endpoint} resolves to no address")]
    NoAddress {
        /// `host:port`.
        endpoint: String,
    },
    /// TCP connect failed for every address.
    #[error("cannot connect to {endpoint}: {reason}")]
    Connect {
        /// `host:port`.
        endpoint: String,
        /// The last error.
        reason: String,
    },
    /// The handshake did not finish in time.
    #[error("handshake timed out after {0:?}")]
    HandshakeTimeout(Duration),
    /// The node announces another network.
    #[error("node is on network {node}, we are on {ours}")]
    NetworkMismatch {
        /// What the node's user agent says (or `<none>`).
        node: String,
        /// Our network id.
        ours: String,
    },
    /// The node speaks an older protocol.
    #[error("node speaks protocol version {version}, we need at least {min}")]
    VersionTooOld {
        /// The node's version.
        version: i32,
        /// Ours.
        min: i32,
    },
    /// The node sent Error.
    #[error("node closed the connection: {reason}")]
    Refused {
        /// Its reason.
        reason: String,
    },
    /// The node sent something the protocol does not allow at that point.
    #[error("protocol violation by the node: {0}")]
    Protocol(String),
    /// The node's bytes are not a valid frame or message.
    #[error("malformed data from the node: {0}")]
    Wire(#[from] spacetime::wire::WireError),
    /// The node closed the connection.
    #[error("node closed the connection")]
    Closed,
    /// The node closed the connection in the middle of a frame.
    #[error("node closed the connection in the middle of a frame (truncated frame)")]
    Truncated,
    /// The node went silent.
    #[error("node silent for {0:?}")]
    Silent(Duration),
    /// The node stopped reading what we send.
    #[error("node did not read our messages for {0:?}")]
    WriteStalled(Duration),
    /// A socket error.
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
}

/// What the link tells the mining loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// A connection completed its handshake.
    Connected {
        /// Tag outbound messages with this to send them on this connection.
        generation: u64,
        /// The node's user agent.
        user_agent: String,
    },
    /// A message from the node (everything except the handshake, Ping and Pong).
    Message {
        /// The connection it came from.
        generation: u64,
        /// The message (boxed: a block is large, the other events small).
        message: Box<Message>,
    },
    /// The connection ended.
    Disconnected {
        /// The connection that ended.
        generation: u64,
        /// Why.
        reason: String,
    },
}

/// A message for the node, valid only on connection `generation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    /// From [`LinkEvent::Connected`].
    pub generation: u64,
    /// The message.
    pub message: Message,
}

/// The mining loop's ends of a running link.
#[derive(Debug)]
pub struct NodeLink {
    /// Events from the link.
    pub events: mpsc::Receiver<LinkEvent>,
    /// Messages to send.
    pub outbound: mpsc::Sender<Outbound>,
    /// The link task; it ends when the shutdown token is cancelled.
    pub task: JoinHandle<()>,
}

/// Capacity of the channels between the link and the mining loop.
const CHANNEL: usize = 1024;

/// Starts the link task.
pub fn spawn(
    config: LinkConfig,
    stats: MiningStats,
    events: EventBus,
    shutdown: CancellationToken,
) -> NodeLink {
    let (ev_tx, ev_rx) = mpsc::channel(CHANNEL);
    let (out_tx, out_rx) = mpsc::channel(CHANNEL);
    let task = tokio::spawn(run(config, stats, events, ev_tx, out_rx, shutdown));
    NodeLink {
        events: ev_rx,
        outbound: out_tx,
        task,
    }
}

/// Connect, serve, reconnect, until `shutdown`.
async fn run(
    config: LinkConfig,
    stats: MiningStats,
    events: EventBus,
    to_miner: mpsc::Sender<LinkEvent>,
    mut outbound: mpsc::Receiver<Outbound>,
    shutdown: CancellationToken,
) {
    let endpoint = config.endpoint();
    let timings = config.timings;
    let unreachable_after = config.max_retries.max(1);
    let mut failures: u32 = 0;
    // Consecutive sessions that broke the protocol within `stable_after` of their
    // handshake.
    let mut short_sessions: u32 = 0;
    // A session counts as stable once it outlived the longest backoff delay.
    let stable_after = timings.backoff.cap.max(timings.backoff.base);
    let mut generation: u64 = 0;
    stats.update(|s| s.link.address = endpoint.clone());
    loop {
        if failures < unreachable_after {
            stats.set_link_state(LinkState::Connecting, None);
        }
        let attempt = tokio::select! {
            () = shutdown.cancelled() => break,
            r = Session::connect(&config) => r,
        };
        let retry = match attempt {
            Ok(mut session) => {
                generation += 1;
                failures = 0;
                let up_since = tokio::time::Instant::now();
                let ua = session.peer_user_agent().to_owned();
                stats.set_link_state(LinkState::Connected, None);
                stats.update(|s| s.link.peer_user_agent = Some(ua.clone()));
                tracing::info!(node = %endpoint, user_agent = %ua, "connected to the node");
                events.emit(Event::NodeConnected {
                    address: endpoint.clone(),
                    user_agent: ua.clone(),
                });
                if to_miner
                    .send(LinkEvent::Connected {
                        generation,
                        user_agent: ua,
                    })
                    .await
                    .is_err()
                {
                    break; // the mining loop is gone
                }
                let ended = session
                    .serve(generation, &to_miner, &mut outbound, &shutdown)
                    .await;
                // Bytes that break the protocol are the node's fault, unlike a close or a
                // restart.
                let faulty = matches!(
                    ended,
                    Err(LinkError::Wire(_) | LinkError::Protocol(_) | LinkError::Truncated)
                );
                let reason = match ended {
                    Ok(()) => None,
                    Err(e) => Some(e.to_string()),
                };
                let reason_text = reason.clone().unwrap_or_else(|| "shutting down".into());
                events.emit(Event::NodeDisconnected {
                    address: endpoint.clone(),
                    reason: reason_text.clone(),
                });
                let _ = to_miner
                    .send(LinkEvent::Disconnected {
                        generation,
                        reason: reason_text,
                    })
                    .await;
                match reason {
                    None => {
                        stats.set_link_state(LinkState::Disconnected, None);
                        break;
                    }
                    Some(reason) => {
                        // A session that stayed up, or ended by a close (a restart),
                        // retries after the base delay. One that broke the protocol soon
                        // after its handshake (a node that answers the handshake and then
                        // sends garbage) is a failure too: such sessions back off like
                        // failed connects, or the link would reconnect in a tight loop.
                        if !faulty || up_since.elapsed() >= stable_after {
                            short_sessions = 0;
                        }
                        short_sessions = short_sessions.saturating_add(1);
                        tracing::warn!(node = %endpoint, error = %reason, retry = short_sessions, "lost the node");
                        stats.set_link_state(LinkState::Disconnected, Some(reason));
                        short_sessions
                    }
                }
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let reason = e.to_string();
                stats.update(|s| s.link.failed_attempts = failures);
                if failures >= unreachable_after {
                    if failures == unreachable_after {
                        tracing::warn!(
                            node = %endpoint, failures, error = %reason,
                            "node unreachable; retrying every {:?}", timings.backoff.cap.max(timings.backoff.base)
                        );
                    }
                    stats.set_link_state(LinkState::Unreachable, Some(reason));
                } else {
                    tracing::warn!(node = %endpoint, attempt = failures, error = %reason, "cannot reach the node");
                    stats.set_link_state(LinkState::Disconnected, Some(reason));
                }
                failures
            }
        };
        let jitter: f64 = rand::random();
        let delay = if failures >= unreachable_after {
            timings.backoff.capped(jitter)
        } else {
            timings.backoff.delay(retry, jitter)
        };
        tracing::debug!(node = %endpoint, ?delay, "reconnecting after a pause");
        let wake = tokio::time::Instant::now() + delay;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    stats.set_link_state(LinkState::Disconnected, None);
                    return;
                }
                () = tokio::time::sleep_until(wake) => break,
                // Nothing can be sent while disconnected: drop what the loop still sends.
                m = outbound.recv() => if m.is_none() { return },
            }
        }
    }
    stats.set_link_state(LinkState::Disconnected, None);
}

#[cfg(test)]
mod tests;
