//! One connection to the node: connect, handshake as the connecting side, then serve.
//!
//! The socket is a [`spacetime_io::Connection`], which reads through
//! `spacetime::wire::MessageDecoder` (never more than one frame of at most `max_frame`
//! bytes plus one read chunk: the frame length is checked before the payload is waited
//! for). Any frame or payload error is answered with Error, then the link stops sending,
//! reads (and discards) for at most `error_linger` so that the node can read the Error
//! before the socket closes (D9), and closes. It never tries to find the next frame.

use spacetime::wire::{
    network_id_of, printable, Handshake, Message, MAX_PEER_TEXT, PROTOCOL_VERSION,
};
use spacetime_io::{Connection, ReadError, SendError};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{LinkConfig, LinkError, LinkEvent, LinkTimings, Outbound};

/// A close that follows the node's Error within this time is explained by that Error; a
/// later one is not (the Error refused one request and the connection went on).
pub const ERROR_CLOSE_WINDOW: std::time::Duration = std::time::Duration::from_secs(1);

/// A connected, handshaken link to the node.
#[derive(Debug)]
pub struct Session {
    conn: Connection,
    timings: LinkTimings,
    peer_user_agent: String,
}

/// [`spacetime::clock::now_unix_ms`] as the wire's i64.
fn unix_millis() -> i64 {
    i64::try_from(spacetime::clock::now_unix_ms()).unwrap_or(i64::MAX)
}

impl Session {
    /// Resolves the host, connects (TCP_NODELAY) and runs the handshake (D3): we send our
    /// Handshake, the node answers with its Handshake and HandshakeAck, we send HandshakeAck.
    /// A node of another network or an older protocol is told why in an Error frame.
    pub async fn connect(config: &LinkConfig) -> Result<Session, LinkError> {
        let endpoint = config.endpoint();
        let addrs: Vec<_> = tokio::net::lookup_host((config.host.as_str(), config.port))
            .await
            .map_err(|source| LinkError::Resolve {
                endpoint: endpoint.clone(),
                source,
            })?
            .collect();
        if addrs.is_empty() {
            return Err(LinkError::NoAddress { endpoint });
        }
        let mut last = String::new();
        let mut stream = None;
        for addr in addrs {
            match tokio::time::timeout(config.timings.connect_timeout, TcpStream::connect(addr))
                .await
            {
                Ok(Ok(s)) => {
                    stream = Some(s);
                    break;
                }
                Ok(Err(e)) => last = format!("{addr}: {e}"),
                Err(_) => {
                    last = format!(
                        "{addr}: timed out after {:?}",
                        config.timings.connect_timeout
                    )
                }
            }
        }
        let stream = stream.ok_or(LinkError::Connect {
            endpoint,
            reason: last,
        })?;
        stream.set_nodelay(true)?;
        let mut session = Session {
            conn: Connection::new(stream, config.max_frame),
            timings: config.timings,
            peer_user_agent: String::new(),
        };
        match tokio::time::timeout(config.timings.handshake_timeout, session.handshake(config))
            .await
        {
            Ok(Ok(())) => Ok(session),
            Ok(Err(e)) => {
                session.fail(&e).await;
                Err(e)
            }
            Err(_) => Err(LinkError::HandshakeTimeout(
                config.timings.handshake_timeout,
            )),
        }
    }

    async fn handshake(&mut self, config: &LinkConfig) -> Result<(), LinkError> {
        let ours = Message::Handshake(Handshake {
            protocol_version: PROTOCOL_VERSION,
            timestamp: unix_millis() / 1000,
            node_id: config.node_id.clone(),
            user_agent: config.user_agent.clone(),
        });
        self.send(&ours).await?;
        let theirs = match self.read_message().await? {
            Message::Handshake(h) => h,
            Message::Error(reason) => return Err(LinkError::Refused { reason }),
            other => {
                return Err(LinkError::Protocol(format!(
                    "expected Handshake, got {:?}",
                    other.message_type()
                )))
            }
        };
        if theirs.protocol_version < PROTOCOL_VERSION {
            return Err(LinkError::VersionTooOld {
                version: theirs.protocol_version,
                min: PROTOCOL_VERSION,
            });
        }
        let node_network = network_id_of(&theirs.user_agent);
        if node_network != Some(config.network_id.as_str()) {
            return Err(LinkError::NetworkMismatch {
                node: node_network.unwrap_or("<none>").to_owned(),
                ours: config.network_id.clone(),
            });
        }
        match self.read_message().await? {
            Message::HandshakeAck => {}
            Message::Error(reason) => return Err(LinkError::Refused { reason }),
            other => {
                return Err(LinkError::Protocol(format!(
                    "expected HandshakeAck, got {:?}",
                    other.message_type()
                )))
            }
        }
        self.send(&Message::HandshakeAck).await?;
        self.peer_user_agent = theirs.user_agent;
        Ok(())
    }

    /// The node's user agent from its handshake.
    pub fn peer_user_agent(&self) -> &str {
        &self.peer_user_agent
    }

    /// Serves the connection until it fails (`Err`) or `shutdown` (`Ok`): forwards the
    /// node's messages (Error included), writes `outbound` messages of this `generation`,
    /// answers Ping and keeps the connection alive. A close is reported as the node's Error
    /// only when it follows that Error within [`ERROR_CLOSE_WINDOW`] with nothing between.
    pub async fn serve(
        &mut self,
        generation: u64,
        to_miner: &mpsc::Sender<LinkEvent>,
        outbound: &mut mpsc::Receiver<Outbound>,
        shutdown: &CancellationToken,
    ) -> Result<(), LinkError> {
        let pipes = Pipes {
            generation,
            to_miner,
            outbound,
            shutdown,
        };
        let result = self.serve_until_end(pipes).await;
        if let Err(e) = &result {
            self.fail(e).await;
        }
        result
    }

    async fn serve_until_end(&mut self, pipes: Pipes<'_>) -> Result<(), LinkError> {
        let Pipes {
            generation,
            to_miner,
            outbound,
            shutdown,
        } = pipes;
        let mut last_heard = Instant::now();
        let mut pinged = false;
        // The node's last Error and when it came, until another message arrives.
        let mut node_error: Option<(String, Instant)> = None;
        loop {
            let wake = if pinged {
                last_heard + self.timings.close_after
            } else {
                last_heard + self.timings.ping_after
            };
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ok(()),
                msg = self.read_message() => {
                    let msg = match msg {
                        Ok(m) => m,
                        // The node said why just before it closed: that is the reason.
                        Err(LinkError::Closed | LinkError::Io(_))
                            if node_error
                                .as_ref()
                                .is_some_and(|(_, at)| at.elapsed() <= ERROR_CLOSE_WINDOW) =>
                        {
                            return Err(LinkError::Refused {
                                reason: node_error.take().map(|(r, _)| r).unwrap_or_default(),
                            })
                        }
                        Err(e) => return Err(e),
                    };
                    last_heard = Instant::now();
                    pinged = false;
                    // Anything after an Error shows the connection went on past it.
                    node_error = None;
                    match msg {
                        Message::Ping { nonce, .. } => {
                            self.send(&Message::Pong { nonce, timestamp: unix_millis() }).await?;
                        }
                        Message::Pong { .. } | Message::Heartbeat => {}
                        // Error precedes a close (D3), but nodes also use it to refuse
                        // one request (an unknown block, our block): keep reading until it
                        // closes, and let the mining loop see it.
                        Message::Error(reason) => {
                            tracing::warn!(reason = %reason, "the node reports an error");
                            node_error = Some((reason.clone(), last_heard));
                            let event = LinkEvent::Message {
                                generation,
                                message: Box::new(Message::Error(reason)),
                            };
                            if to_miner.send(event).await.is_err() {
                                return Ok(()); // the mining loop is gone
                            }
                        }
                        Message::Handshake(_) | Message::HandshakeAck => {
                            return Err(LinkError::Protocol(
                                "handshake message after the handshake".into(),
                            ))
                        }
                        message => {
                            let event = LinkEvent::Message { generation, message: Box::new(message) };
                            if to_miner.send(event).await.is_err() {
                                return Ok(()); // the mining loop is gone
                            }
                        }
                    }
                }
                out = outbound.recv() => {
                    let Some(out) = out else { return Ok(()) };
                    if out.generation == generation {
                        self.send(&out.message).await?;
                    } else {
                        tracing::debug!(
                            kind = ?out.message.message_type(),
                            "dropping a message meant for an earlier connection"
                        );
                    }
                }
                () = tokio::time::sleep_until(wake) => {
                    if pinged {
                        return Err(LinkError::Silent(self.timings.close_after));
                    }
                    pinged = true;
                    self.send(&Message::Ping { nonce: rand::random(), timestamp: unix_millis() })
                        .await?;
                }
            }
        }
    }

    /// Writes one message; a node that does not read for `close_after` ends the connection.
    /// Our own messages always fit a frame (a block of 1000 transactions is ~160 KiB); one
    /// that does not is dropped with an error log rather than sent.
    async fn send(&mut self, message: &Message) -> Result<(), LinkError> {
        let limit = self.timings.close_after;
        match tokio::time::timeout(limit, self.conn.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(SendError::TooLarge(e))) => {
                tracing::error!(kind = ?message.message_type(), error = %e, "message too large to send; dropped");
                Ok(())
            }
            Ok(Err(SendError::Io(e))) => Err(LinkError::Io(e)),
            Err(_) => Err(LinkError::WriteStalled(limit)),
        }
    }

    /// Reads the next message. Cancel-safe: bytes read stay in the decoder.
    async fn read_message(&mut self) -> Result<Message, LinkError> {
        match self.conn.next().await {
            Ok(Some(message)) => Ok(inert(message)),
            Ok(None) => Err(LinkError::Closed),
            Err(ReadError::Truncated) => Err(LinkError::Truncated),
            Err(ReadError::Wire(e)) => Err(LinkError::Wire(e)),
            Err(ReadError::Io(e)) => Err(LinkError::Io(e)),
        }
    }

    /// After an error: tell the node why when the error is ours to report (bad data, wrong
    /// network, old version), then stop sending, read until it closes (at most
    /// `error_linger`), and let the socket drop.
    async fn fail(&mut self, error: &LinkError) {
        let reason = match error {
            LinkError::Wire(e) => e.to_string(),
            LinkError::NetworkMismatch { .. }
            | LinkError::VersionTooOld { .. }
            | LinkError::Protocol(_) => error.to_string(),
            LinkError::Silent(d) => format!("silent for {d:?}"),
            _ => return,
        };
        self.conn
            .close_with_error(reason, self.timings.error_linger)
            .await;
    }
}

/// What [`Session::serve`] works with besides the connection.
struct Pipes<'a> {
    generation: u64,
    to_miner: &'a mpsc::Sender<LinkEvent>,
    outbound: &'a mut mpsc::Receiver<Outbound>,
    shutdown: &'a CancellationToken,
}

/// The node's free text (Error reasons, handshake ids) made safe to log, keep and show
/// through the API (bounded, control characters escaped): see [`printable`].
fn inert(message: Message) -> Message {
    match message {
        Message::Error(reason) => Message::Error(printable(&reason, MAX_PEER_TEXT)),
        Message::Handshake(mut h) => {
            h.user_agent = printable(&h.user_agent, MAX_PEER_TEXT);
            h.node_id = printable(&h.node_id, MAX_PEER_TEXT);
            Message::Handshake(h)
        }
        other => other,
    }
}
