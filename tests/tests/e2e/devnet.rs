//! `minerd devnet-node` as a process: peers that send garbage, an oversized length, a
//! wrong network id or an old protocol version are refused while a good peer keeps
//! receiving epochs; SIGTERM stops the node cleanly; after SIGKILL a restart on the same
//! data dir resumes the same chain.

use std::time::Duration;

use e2e::devnet::{error_reason, handshake, WirePeer, DEVNET};
use e2e::mining::{DevnetNode, NodeOptions};
use spacetime::wire::Message;

const WAIT: Duration = Duration::from_secs(5);

fn is_epoch(m: &Message) -> bool {
    matches!(m, Message::NewEpoch(_))
}

#[tokio::test]
async fn hostile_and_foreign_peers_are_refused_while_a_good_peer_continues() {
    let node = DevnetNode::start(NodeOptions {
        epoch_ms: 300,
        ..NodeOptions::default()
    })
    .unwrap();
    let (mut good, first) = WirePeer::handshaken(node.addr(), DEVNET).await.unwrap();
    assert!(first.epoch >= 1, "{first:?}");
    assert_eq!(first.tip_height, 0);

    // Garbage after the handshake: an unknown message type.
    let (mut garbage, _) = WirePeer::handshaken(node.addr(), DEVNET).await.unwrap();
    garbage
        .send_raw(&[1, 0, 0, 0, 0x99, 1, 2, 3])
        .await
        .unwrap();
    let seen = garbage.until_closed(WAIT).await.unwrap();
    assert!(
        error_reason(&seen).is_some_and(|r| r.contains("unknown message type")),
        "{seen:?}"
    );

    // An oversized length prefix.
    let (mut big, _) = WirePeer::handshaken(node.addr(), DEVNET).await.unwrap();
    big.send_raw(&[0xFF, 0xFF, 0xFF, 0x7F]).await.unwrap();
    let seen = big.until_closed(WAIT).await.unwrap();
    assert!(
        error_reason(&seen).is_some_and(|r| r.contains("frame length")),
        "{seen:?}"
    );

    // Another network, and an old protocol version.
    let mut foreign = WirePeer::connect(node.addr()).await.unwrap();
    foreign
        .send(&handshake(2, "spacetime-testnet-v1"))
        .await
        .unwrap();
    let seen = foreign.until_closed(WAIT).await.unwrap();
    assert!(
        error_reason(&seen).is_some_and(|r| r.contains("network id mismatch")),
        "{seen:?}"
    );
    assert!(!seen.iter().any(is_epoch), "{seen:?}");
    let mut old = WirePeer::connect(node.addr()).await.unwrap();
    old.send(&handshake(1, DEVNET)).await.unwrap();
    let seen = old.until_closed(WAIT).await.unwrap();
    assert!(
        error_reason(&seen).is_some_and(|r| r.contains("protocol version")),
        "{seen:?}"
    );

    // Bytes that are not the protocol at all, before any handshake.
    let mut http = WirePeer::connect(node.addr()).await.unwrap();
    http.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    http.until_closed(WAIT).await.unwrap();

    // The good peer is still served: new epochs keep coming and Ping is answered.
    let Message::NewEpoch(next) = good.recv_until(WAIT, is_epoch).await.unwrap() else {
        unreachable!()
    };
    assert!(next.epoch > first.epoch);
    good.send(&Message::Ping {
        nonce: 42,
        timestamp: 0,
    })
    .await
    .unwrap();
    good.recv_until(WAIT, |m| matches!(m, Message::Pong { nonce: 42, .. }))
        .await
        .unwrap();

    // Each refusal is explained in the node's log.
    for reason in [
        "unknown message type",
        "frame length",
        "network id mismatch",
        "protocol version 1",
    ] {
        assert!(
            node.log().contains(reason),
            "{reason} not logged:\n{}",
            node.log()
        );
    }
}

#[tokio::test]
async fn sigterm_stops_the_node_cleanly_and_keeps_its_chain() {
    let mut node = DevnetNode::start(NodeOptions {
        epoch_ms: 200,
        ..NodeOptions::default()
    })
    .unwrap();
    let (mut peer, _) = WirePeer::handshaken(node.addr(), DEVNET).await.unwrap();
    peer.send(&Message::GetHeaders {
        locator: [0; 32],
        stop: None,
        max_headers: 5,
    })
    .await
    .unwrap();
    let Message::Headers(headers) = peer
        .recv_until(WAIT, |m| matches!(m, Message::Headers(_)))
        .await
        .unwrap()
    else {
        unreachable!()
    };
    assert_eq!(headers.len(), 1, "a new chain holds only its genesis block");
    let status = node.terminate(Duration::from_secs(10)).unwrap();
    assert!(status.success(), "{status}; log:\n{}", node.log());
    assert!(node.data_dir().join("chain.dat").exists());
    assert!(node.log().contains("devnet node stopped"), "{}", node.log());
}

async fn genesis_hash(peer: &mut WirePeer) -> spacetime::hash::Hash32 {
    peer.send(&Message::GetHeaders {
        locator: [0; 32],
        stop: None,
        max_headers: 1,
    })
    .await
    .unwrap();
    match peer
        .recv_until(WAIT, |m| matches!(m, Message::Headers(_)))
        .await
        .unwrap()
    {
        Message::Headers(h) if h.len() == 1 => h[0].hash(),
        other => panic!("expected one header, got {other:?}"),
    }
}

#[tokio::test]
async fn after_sigkill_a_restart_resumes_the_same_chain() {
    let mut node = DevnetNode::start(NodeOptions {
        epoch_ms: 200,
        ..NodeOptions::default()
    })
    .unwrap();
    let (mut peer, _) = WirePeer::handshaken(node.addr(), DEVNET).await.unwrap();
    let genesis = genesis_hash(&mut peer).await;
    let Message::NewEpoch(last) = peer.recv_until(WAIT, is_epoch).await.unwrap() else {
        unreachable!()
    };
    node.kill();
    peer.until_closed(WAIT).await.unwrap();

    node.restart().unwrap();
    let (mut peer, first) = WirePeer::handshaken(node.addr(), DEVNET).await.unwrap();
    assert_eq!(genesis_hash(&mut peer).await, genesis);
    assert_eq!(first.tip_hash, genesis);
    assert!(
        first.epoch > last.epoch,
        "{} <= {}",
        first.epoch,
        last.epoch
    );
    assert!(node.log().contains("chain replayed"), "{}", node.log());
}
