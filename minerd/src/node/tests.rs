//! The link against a hand-rolled node on a loopback socket (port 0).

use std::time::Duration;

use spacetime::wire::{user_agent, Handshake, Message, NewEpoch, MAX_FRAME_LENGTH};
use spacetime_devnet::testkit::{RecvEnd, WirePeer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::events::{Event, EventBus};
use crate::stats::{LinkState, MiningStats};

const NET: &str = "spacetime-test-net";
const LIMIT: Duration = Duration::from_secs(10);

fn fast_timings() -> LinkTimings {
    LinkTimings {
        connect_timeout: Duration::from_secs(2),
        handshake_timeout: Duration::from_secs(2),
        ping_after: Duration::from_secs(30),
        close_after: Duration::from_secs(60),
        error_linger: Duration::from_millis(200),
        backoff: Backoff {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(100),
        },
    }
}

fn config(port: u16) -> LinkConfig {
    LinkConfig {
        host: "127.0.0.1".into(),
        port,
        network_id: NET.into(),
        node_id: "miner-test".into(),
        user_agent: user_agent(PRODUCT, "0.0.0", NET),
        max_retries: 3,
        max_frame: MAX_FRAME_LENGTH,
        timings: fast_timings(),
    }
}

/// The node side of one connection: the devnet test kit's raw peer on an accepted socket.
struct Peer(WirePeer);

impl Peer {
    async fn accept(listener: &TcpListener) -> Peer {
        let (stream, _) = tokio::time::timeout(LIMIT, listener.accept())
            .await
            .expect("the link connects")
            .unwrap();
        Peer(WirePeer::from_stream(stream).unwrap())
    }

    /// The next message, or `None` when the miner closed the connection.
    async fn read(&mut self) -> Option<Message> {
        match self.0.recv(LIMIT).await {
            Ok(m) => Some(m),
            Err(RecvEnd::Closed) => None,
            Err(RecvEnd::Timeout) => panic!("the miner answers in time"),
        }
    }

    async fn send(&mut self, m: &Message) {
        self.0.send(m).await.unwrap();
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        self.0.send_raw(bytes).await.unwrap();
    }

    /// Answers the miner's handshake as a node of `network` speaking `version`.
    async fn handshake_as(&mut self, network: &str, version: i32) -> Handshake {
        let Some(Message::Handshake(theirs)) = self.read().await else {
            panic!("the miner starts with a Handshake");
        };
        self.send(&Message::Handshake(Handshake {
            protocol_version: version,
            timestamp: 1,
            node_id: "node-1".into(),
            user_agent: user_agent("spacetime-node", "1.0", network),
        }))
        .await;
        self.send(&Message::HandshakeAck).await;
        theirs
    }

    async fn handshake(&mut self) {
        let theirs = self.handshake_as(NET, 2).await;
        assert_eq!(theirs.protocol_version, 2);
        assert_eq!(
            spacetime::wire::network_id_of(&theirs.user_agent),
            Some(NET)
        );
        assert_eq!(self.read().await, Some(Message::HandshakeAck));
    }
}

struct Harness {
    link: NodeLink,
    stats: MiningStats,
    events: tokio::sync::broadcast::Receiver<std::sync::Arc<crate::events::Envelope>>,
    shutdown: CancellationToken,
}

impl Harness {
    fn start(config: LinkConfig) -> Harness {
        let stats = MiningStats::new(String::new());
        let bus = EventBus::new();
        let events = bus.subscribe();
        let shutdown = CancellationToken::new();
        let link = spawn(config, stats.clone(), bus, shutdown.clone());
        Harness {
            link,
            stats,
            events,
            shutdown,
        }
    }

    async fn next_event(&mut self) -> LinkEvent {
        tokio::time::timeout(LIMIT, self.link.events.recv())
            .await
            .expect("a link event in time")
            .expect("the link is running")
    }

    async fn wait_state(&self, state: LinkState) {
        tokio::time::timeout(LIMIT, async {
            while self.stats.snapshot().link.state != state {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "link never reached {state:?}: {:?}",
                self.stats.snapshot().link
            )
        });
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(LIMIT, self.link.task)
            .await
            .expect("the link stops promptly")
            .unwrap();
    }
}

fn epoch() -> NewEpoch {
    NewEpoch {
        epoch: 3,
        tip_hash: [7; 32],
        tip_height: 2,
        difficulty: 5,
        challenge: spacetime::consensus::epoch_challenge(&[7; 32], 3),
        deadline_unix_ms: 1,
    }
}

#[tokio::test]
async fn handshake_ping_forwarding_and_sending() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut h = Harness::start(config(listener.local_addr().unwrap().port()));
    let mut peer = Peer::accept(&listener).await;
    peer.handshake().await;
    let LinkEvent::Connected {
        generation,
        user_agent,
    } = h.next_event().await
    else {
        panic!("expected Connected");
    };
    assert!(user_agent.contains(NET));
    h.wait_state(LinkState::Connected).await;
    assert_eq!(
        h.stats.snapshot().link.peer_user_agent.as_deref(),
        Some(user_agent.as_str())
    );

    // Ping is answered here with the same nonce and never reaches the miner.
    peer.send(&Message::Ping {
        nonce: 0xDEAD_BEEF,
        timestamp: 5,
    })
    .await;
    assert!(matches!(
        peer.read().await,
        Some(Message::Pong {
            nonce: 0xDEAD_BEEF,
            ..
        })
    ));
    peer.send(&Message::NewEpoch(epoch())).await;
    assert_eq!(
        h.next_event().await,
        LinkEvent::Message {
            generation,
            message: Box::new(Message::NewEpoch(epoch()))
        }
    );

    // Outbound messages go out on their own connection only.
    let stale = Outbound {
        generation: generation + 100,
        message: Message::GetBlock { hash: [1; 32] },
    };
    h.link.outbound.send(stale).await.unwrap();
    let fresh = Outbound {
        generation,
        message: Message::GetBlock { hash: [2; 32] },
    };
    h.link.outbound.send(fresh).await.unwrap();
    assert_eq!(peer.read().await, Some(Message::GetBlock { hash: [2; 32] }));
    let ev = h.events.recv().await.unwrap();
    assert!(matches!(ev.event, Event::NodeConnected { .. }));
    h.stop().await;
}

#[tokio::test]
async fn another_network_is_refused_with_an_error_and_retried() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let h = Harness::start(config(listener.local_addr().unwrap().port()));
    let mut peer = Peer::accept(&listener).await;
    peer.handshake_as("spacetime-mainnet-v1", 2).await;
    let Some(Message::Error(reason)) = peer.read().await else {
        panic!("expected an Error frame");
    };
    let expected = format!("node is on network spacetime-mainnet-v1, we are on {NET}");
    assert_eq!(reason, expected);
    // Then the miner stops sending and closes.
    assert_eq!(peer.read().await, None);
    // The status names the mismatch.
    tokio::time::timeout(LIMIT, async {
        while h.stats.snapshot().link.last_error.as_deref() != Some(expected.as_str()) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the status shows the error");
    assert!(h.stats.snapshot().link.state != LinkState::Connected);
    // And it tries again.
    let mut again = Peer::accept(&listener).await;
    again.handshake_as(NET, 1).await;
    let Some(Message::Error(reason)) = again.read().await else {
        panic!("expected an Error frame");
    };
    assert!(reason.contains("protocol version 1"), "{reason}");
    h.stop().await;
}

#[tokio::test]
async fn garbage_closes_the_connection_and_the_link_reconnects() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut h = Harness::start(config(listener.local_addr().unwrap().port()));
    let mut peer = Peer::accept(&listener).await;
    peer.handshake().await;
    let LinkEvent::Connected { generation, .. } = h.next_event().await else {
        panic!("expected Connected");
    };
    // An oversized length: the frame is refused from its length bytes alone.
    peer.send_raw(&[0xFF, 0xFF, 0xFF, 0x7F, 0x42, 1, 2, 3])
        .await;
    let Some(Message::Error(reason)) = peer.read().await else {
        panic!("expected an Error frame");
    };
    assert!(reason.contains("frame length"), "{reason}");
    assert_eq!(peer.read().await, None, "the miner closes after the Error");
    let LinkEvent::Disconnected {
        generation: g,
        reason,
    } = h.next_event().await
    else {
        panic!("expected Disconnected");
    };
    assert_eq!(g, generation);
    assert!(reason.contains("malformed"), "{reason}");

    // It comes back by itself on a new connection.
    let mut peer = Peer::accept(&listener).await;
    peer.handshake().await;
    let LinkEvent::Connected { generation: g2, .. } = h.next_event().await else {
        panic!("expected Connected again");
    };
    assert!(g2 > generation);
    h.wait_state(LinkState::Connected).await;

    // A well-framed message with a bad payload also ends the connection (D3).
    let mut bad = 2u32.to_le_bytes().to_vec();
    bad.extend_from_slice(&[0x41, 0x00]); // BlockAccepted needs 40 bytes
    peer.send_raw(&bad).await;
    assert!(matches!(peer.read().await, Some(Message::Error(_))));
    assert_eq!(peer.read().await, None);
    let mut peer = Peer::accept(&listener).await;
    peer.handshake().await;
    h.wait_state(LinkState::Connected).await;
    h.stop().await;
}

#[tokio::test]
async fn silence_gets_a_ping_then_the_connection_closes() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut cfg = config(listener.local_addr().unwrap().port());
    cfg.timings.ping_after = Duration::from_millis(150);
    cfg.timings.close_after = Duration::from_millis(400);
    let h = Harness::start(cfg);
    let mut peer = Peer::accept(&listener).await;
    peer.handshake().await;
    assert!(matches!(peer.read().await, Some(Message::Ping { .. })));
    // Stay silent: the miner gives up.
    let Some(Message::Error(reason)) = peer.read().await else {
        panic!("expected an Error frame");
    };
    assert!(reason.contains("silent"), "{reason}");
    assert_eq!(peer.read().await, None);
    h.stop().await;
}

#[tokio::test]
async fn a_dead_node_becomes_unreachable_and_is_found_again() {
    // A port with nothing listening on it.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cfg = config(port);
    cfg.max_retries = 2;
    let h = Harness::start(cfg);
    h.wait_state(LinkState::Unreachable).await;
    let link = h.stats.snapshot().link;
    assert!(link.failed_attempts >= 2);
    assert!(link.last_error.unwrap().contains("cannot connect"));
    // The node comes back on the same port: the link finds it at the capped interval.
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let mut peer = Peer::accept(&listener).await;
    peer.handshake().await;
    h.wait_state(LinkState::Connected).await;
    assert_eq!(h.stats.snapshot().link.failed_attempts, 0);
    h.stop().await;
}

#[tokio::test]
async fn a_host_name_is_resolved() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut cfg = config(listener.local_addr().unwrap().port());
    cfg.host = "localhost".into();
    let h = Harness::start(cfg);
    // localhost may resolve to ::1 first; the link tries every address.
    let mut peer = Peer::accept(&listener).await;
    peer.handshake().await;
    h.wait_state(LinkState::Connected).await;
    h.stop().await;
}

#[tokio::test]
async fn an_error_reply_keeps_the_link_until_the_node_closes() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut h = Harness::start(config(listener.local_addr().unwrap().port()));
    let mut peer = Peer::accept(&listener).await;
    peer.handshake().await;
    assert!(matches!(h.next_event().await, LinkEvent::Connected { .. }));
    // A refused request: the connection stays up, and the mining loop sees the Error.
    peer.send(&Message::Error("GetBlock: unknown block 00".into()))
        .await;
    peer.send(&Message::Ping {
        nonce: 1,
        timestamp: 0,
    })
    .await;
    assert!(matches!(
        peer.read().await,
        Some(Message::Pong { nonce: 1, .. })
    ));
    let LinkEvent::Message { message, .. } = h.next_event().await else {
        panic!("expected the Error to be forwarded");
    };
    assert_eq!(
        *message,
        Message::Error("GetBlock: unknown block 00".into())
    );
    // An Error followed by a close: that Error is the reason.
    peer.send(&Message::Error("too many peers".into())).await;
    drop(peer);
    assert!(matches!(h.next_event().await, LinkEvent::Message { .. }));
    let LinkEvent::Disconnected { reason, .. } = h.next_event().await else {
        panic!("expected Disconnected");
    };
    assert_eq!(reason, "node closed the connection: too many peers");
    h.stop().await;
}

#[tokio::test]
async fn an_old_error_is_not_the_reason_of_a_later_close() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut h = Harness::start(config(listener.local_addr().unwrap().port()));
    let mut peer = Peer::accept(&listener).await;
    peer.handshake().await;
    assert!(matches!(h.next_event().await, LinkEvent::Connected { .. }));
    peer.send(&Message::Error("block 00 rejected: bad".into()))
        .await;
    // The connection goes on past the Error...
    peer.send(&Message::Heartbeat).await;
    peer.send(&Message::Ping {
        nonce: 2,
        timestamp: 0,
    })
    .await;
    assert!(matches!(
        peer.read().await,
        Some(Message::Pong { nonce: 2, .. })
    ));
    assert!(matches!(h.next_event().await, LinkEvent::Message { .. }));
    // ...so a later close is not explained by it.
    drop(peer);
    let LinkEvent::Disconnected { reason, .. } = h.next_event().await else {
        panic!("expected Disconnected");
    };
    assert_eq!(reason, "node closed the connection");
    h.stop().await;
}

#[tokio::test]
async fn a_frame_above_the_links_limit_is_refused_before_its_payload_arrives() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut cfg = config(listener.local_addr().unwrap().port());
    cfg.max_frame = 4096;
    let h = Harness::start(cfg);
    let mut peer = Peer::accept(&listener).await;
    peer.handshake().await;
    // A Block frame announcing 5000 bytes: only its header is sent.
    let mut header = 5000u32.to_le_bytes().to_vec();
    header.push(0x23);
    peer.send_raw(&header).await;
    let Some(Message::Error(reason)) = peer.read().await else {
        panic!("expected an Error frame");
    };
    assert!(reason.contains("frame length 5000"), "{reason}");
    assert_eq!(peer.read().await, None);
    h.stop().await;
}

/// Audit row 11: a node that completes the handshake and then sends garbage was
/// reconnected to every ~0.7 s forever, with no backoff; and a frame cut off by the close
/// was reported as a clean close.
#[tokio::test]
async fn garbage_after_the_handshake_backs_off_and_a_torn_frame_is_named() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut cfg = config(listener.local_addr().unwrap().port());
    cfg.timings.error_linger = Duration::from_millis(20);
    cfg.timings.backoff = Backoff {
        base: Duration::from_millis(40),
        cap: Duration::from_secs(5),
    };
    let h = Harness::start(cfg);
    // Session 1: a truncated frame (a Ping header promising 17 bytes, then the close).
    let mut peer = Peer::accept(&listener).await;
    peer.handshake().await;
    peer.send_raw(&[17, 0, 0, 0, 0x04, 1, 2]).await;
    drop(peer);
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let err = h.stats.snapshot().link.last_error.unwrap_or_default();
        if err.contains("truncated frame") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "last error {err:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Then sessions that each end with garbage right after the handshake: the pauses
    // between them must grow (40 ms base, doubling, half of it jittered).
    let mut accepted_at = Vec::new();
    for _ in 0..5 {
        let mut peer = Peer::accept(&listener).await;
        accepted_at.push(tokio::time::Instant::now());
        peer.handshake().await;
        peer.send_raw(&[0xFF, 0xFF, 0xFF, 0x7F, 0x01]).await;
        // The miner answers Error and closes; read until it does.
        while peer.read().await.is_some() {}
    }
    let gaps: Vec<_> = accepted_at.windows(2).map(|w| w[1] - w[0]).collect();
    // Retry n waits at least half of 40 ms · 2^(n−1): the 4th gap follows the 5th faulty
    // session in a row (the torn frame counts), so it is at least 320 ms.
    assert!(gaps[3] >= Duration::from_millis(320), "{gaps:?}");
    assert!(gaps[3] > gaps[0], "{gaps:?}");
    h.stop().await;
}
