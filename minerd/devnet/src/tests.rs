//! Integration tests: a real node on port 0 and hand-rolled peers speaking `spacetime::wire`.

use std::time::Duration;

use spacetime::block::Block;
use spacetime::validate::{validate_block, ChainContext};
use spacetime::wire::{Message, NewEpoch};
use tokio_util::sync::CancellationToken;

use super::test_support::{error_reason, hello, signed_tx, test_config, Client, TestMiner};
use super::{start, DevnetNodeConfig, DevnetNodeHandle};

const NET: &str = "spacetime-devnet-local";

async fn node(cfg: DevnetNodeConfig) -> (DevnetNodeHandle, CancellationToken) {
    let token = CancellationToken::new();
    let handle = start(cfg, token.clone()).await.unwrap();
    (handle, token)
}

/// Waits for the next NewEpoch, so that a whole epoch is left to work in.
async fn fresh_epoch(c: &mut Client) -> NewEpoch {
    match c.recv_until(|m| matches!(m, Message::NewEpoch(_))).await {
        Message::NewEpoch(e) => e,
        _ => unreachable!(),
    }
}

async fn accepted(c: &mut Client) -> (spacetime::hash::Hash32, u64) {
    match c
        .recv_until(|m| matches!(m, Message::BlockAccepted { .. }))
        .await
    {
        Message::BlockAccepted { hash, height } => (hash, height),
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn handshake_epoch_ping_headers_and_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let (node, token) = node(test_config(dir.path(), 400)).await;
    let (mut c, e) = Client::handshaken(node.local_addr(), NET).await;
    assert!(e.epoch >= 1);
    assert_eq!((e.tip_height, e.difficulty), (0, 1));
    let genesis = node.block_at(0).unwrap();
    assert_eq!(e.tip_hash, genesis.hash());
    assert_eq!(
        e.challenge,
        spacetime::consensus::epoch_challenge(&genesis.hash(), e.epoch)
    );
    c.send(&Message::Ping {
        nonce: 77,
        timestamp: 1,
    })
    .await;
    let pong = c.recv_until(|m| matches!(m, Message::Pong { .. })).await;
    assert!(
        matches!(pong, Message::Pong { nonce: 77, timestamp } if timestamp > 1_600_000_000_000)
    );
    c.send(&Message::GetHeaders {
        locator: [0; 32],
        stop: None,
        max_headers: 10,
    })
    .await;
    let headers = c.recv_until(|m| matches!(m, Message::Headers(_))).await;
    assert_eq!(headers, Message::Headers(vec![genesis.header]));
    c.send(&Message::GetBlock {
        hash: genesis.hash(),
    })
    .await;
    let block = c.recv_until(|m| matches!(m, Message::Block(_))).await;
    assert_eq!(block, Message::Block(genesis));
    // An unknown block is an Error, and the connection stays open.
    c.send(&Message::GetBlock { hash: [9; 32] }).await;
    let err = c.recv_until(|m| matches!(m, Message::Error(_))).await;
    assert!(matches!(err, Message::Error(r) if r.contains("unknown block")));
    // Empty epochs advance the epoch number on the same tip.
    let next = fresh_epoch(&mut c).await;
    assert!(next.epoch > e.epoch);
    assert_eq!(next.tip_hash, e.tip_hash);
    assert_ne!(next.challenge, e.challenge);
    assert_eq!(node.status().peers, 1);
    token.cancel();
    node.wait().await.unwrap();
}

#[tokio::test]
async fn wrong_network_and_old_version_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (node, token) = node(test_config(dir.path(), 400)).await;
    let mut other = Client::connect(node.local_addr()).await;
    other.send(&hello(2, "spacetime-testnet-v1")).await;
    let seen = other.until_closed().await;
    assert!(
        error_reason(&seen).unwrap().contains("network id mismatch"),
        "{seen:?}"
    );
    assert!(!seen.iter().any(|m| matches!(m, Message::NewEpoch(_))));

    let mut old = Client::connect(node.local_addr()).await;
    old.send(&hello(1, NET)).await;
    let seen = old.until_closed().await;
    assert!(
        error_reason(&seen).unwrap().contains("protocol version 1"),
        "{seen:?}"
    );

    // Anything but Handshake first is refused too.
    let mut rude = Client::connect(node.local_addr()).await;
    rude.send(&Message::Ping {
        nonce: 1,
        timestamp: 1,
    })
    .await;
    let seen = rude.until_closed().await;
    assert!(
        error_reason(&seen).unwrap().contains("expected Handshake"),
        "{seen:?}"
    );
    token.cancel();
    node.wait().await.unwrap();
}

#[tokio::test]
async fn garbage_and_oversized_peers_are_dropped_while_a_good_peer_continues() {
    let dir = tempfile::tempdir().unwrap();
    let (node, token) = node(test_config(dir.path(), 300)).await;
    let (mut good, first) = Client::handshaken(node.local_addr(), NET).await;

    let (mut garbage, _) = Client::handshaken(node.local_addr(), NET).await;
    garbage.send_raw(&[1, 0, 0, 0, 0x99, 0xde, 0xad]).await;
    let seen = garbage.until_closed().await;
    assert!(
        error_reason(&seen)
            .unwrap()
            .contains("unknown message type"),
        "{seen:?}"
    );

    let (mut big, _) = Client::handshaken(node.local_addr(), NET).await;
    big.send_raw(&(16u32 * 1024 * 1024).to_le_bytes()).await;
    big.send_raw(&[0x23]).await;
    let seen = big.until_closed().await;
    assert!(
        error_reason(&seen).unwrap().contains("frame length"),
        "{seen:?}"
    );

    // A handshake-phase garbage peer is dropped as well.
    let mut noise = Client::connect(node.local_addr()).await;
    noise.send_raw(b"GET / HTTP/1.1\r\n\r\n").await;
    noise.until_closed().await;

    let next = fresh_epoch(&mut good).await;
    assert!(next.epoch > first.epoch);
    good.send(&Message::Ping {
        nonce: 5,
        timestamp: 0,
    })
    .await;
    good.recv_until(|m| matches!(m, Message::Pong { nonce: 5, .. }))
        .await;
    token.cancel();
    node.wait().await.unwrap();
}

#[tokio::test]
async fn a_bad_payload_is_answered_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (node, token) = node(test_config(dir.path(), 400)).await;
    let (mut c, _) = Client::handshaken(node.local_addr(), NET).await;
    // A Ping one byte short: well-formed frame, bad payload.
    c.send_raw(&[
        16, 0, 0, 0, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ])
    .await;
    let err = c.recv_until(|m| matches!(m, Message::Error(_))).await;
    assert!(matches!(err, Message::Error(r) if r.contains("malformed message")));
    c.send(&Message::Ping {
        nonce: 3,
        timestamp: 0,
    })
    .await;
    c.recv_until(|m| matches!(m, Message::Pong { nonce: 3, .. }))
        .await;
    token.cancel();
    node.wait().await.unwrap();
}

#[tokio::test]
async fn a_bad_proof_is_disconnected_and_a_valid_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let (node, token) = node(test_config(dir.path(), 600)).await;
    let miner = TestMiner::new(dir.path(), 1);
    let (mut honest, _) = Client::handshaken(node.local_addr(), NET).await;
    let (mut cheat, _) = Client::handshaken(node.local_addr(), NET).await;
    let e = fresh_epoch(&mut honest).await;
    honest.send(&miner.submission(&e)).await;
    // A proof for a leaf of someone else's plot (the leaf is not the cheat's).
    let Message::ProofSubmission { proof, .. } = miner.submission(&e) else {
        unreachable!()
    };
    cheat
        .send(&Message::ProofSubmission {
            block_height: e.tip_height + 1,
            miner_id: spacetime::keys::MinerKey::generate().miner_id(),
            proof,
        })
        .await;
    let seen = cheat.until_closed().await;
    let reason = error_reason(&seen).unwrap();
    assert!(
        reason.contains("proof rejected") && reason.contains("not the miner's plot leaf"),
        "{reason}"
    );
    // The honest miner stays connected.
    honest
        .send(&Message::Ping {
            nonce: 8,
            timestamp: 0,
        })
        .await;
    honest
        .recv_until(|m| matches!(m, Message::Pong { nonce: 8, .. }))
        .await;
    assert!(fresh_epoch(&mut honest).await.epoch > e.epoch);
    token.cancel();
    node.wait().await.unwrap();
}

#[tokio::test]
async fn a_valid_block_is_accepted_at_the_deadline_and_announced() {
    let dir = tempfile::tempdir().unwrap();
    let (node, token) = node(test_config(dir.path(), 600)).await;
    let miner = TestMiner::new(dir.path(), 2);
    let (mut m, _) = Client::handshaken(node.local_addr(), NET).await;
    let (mut watcher, _) = Client::handshaken(node.local_addr(), NET).await;
    let e = fresh_epoch(&mut m).await;
    m.send(&miner.submission(&e)).await;
    let block = miner.block(&e, vec![]);
    m.send(&Message::NewBlock(block.clone())).await;
    let (hash, height) = accepted(&mut m).await;
    assert_eq!((hash, height), (block.hash(), 1));
    assert_eq!(accepted(&mut watcher).await, (block.hash(), 1));
    let next = fresh_epoch(&mut m).await;
    assert_eq!((next.tip_hash, next.tip_height), (block.hash(), 1));
    assert!(next.epoch > e.epoch);
    // The accepted block passes independent validation against the epoch it named.
    let stored = node.block_at(1).unwrap();
    assert_eq!(stored, block);
    let ctx = ChainContext::for_epoch(&e, e.deadline_unix_ms / 1000 - 1, e.deadline_unix_ms / 1000);
    validate_block(&stored, &ctx).unwrap();
    assert_eq!(node.status().tip_height, 1);
    token.cancel();
    node.wait().await.unwrap();
}

#[tokio::test]
async fn of_two_blocks_in_one_epoch_the_lower_score_wins() {
    let dir = tempfile::tempdir().unwrap();
    let (node, token) = node(test_config(dir.path(), 700)).await;
    let a = TestMiner::new(dir.path(), 3);
    let b = TestMiner::new(dir.path(), 4);
    let (mut ca, _) = Client::handshaken(node.local_addr(), NET).await;
    let (mut cb, _) = Client::handshaken(node.local_addr(), NET).await;
    let e = fresh_epoch(&mut ca).await;
    assert_eq!(fresh_epoch(&mut cb).await, e);
    let (block_a, block_b): (Block, Block) = (a.block(&e, vec![]), b.block(&e, vec![]));
    let winner = if block_a.header.proof_score < block_b.header.proof_score {
        block_a.hash()
    } else {
        block_b.hash()
    };
    // Whichever arrives first, the lower score wins (the order is covered by the unit
    // test of `Epoch::offer`).
    cb.send(&Message::NewBlock(block_b)).await;
    ca.send(&Message::Block(block_a)).await;
    assert_eq!(accepted(&mut ca).await, (winner, 1));
    assert_eq!(accepted(&mut cb).await, (winner, 1));
    token.cancel();
    node.wait().await.unwrap();
}

#[tokio::test]
async fn invalid_and_misplaced_blocks_are_rejected_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (node, token) = node(test_config(dir.path(), 600)).await;
    let miner = TestMiner::new(dir.path(), 5);
    let (mut c, _) = Client::handshaken(node.local_addr(), NET).await;
    let e = fresh_epoch(&mut c).await;
    let mut forged = miner.block(&e, vec![]);
    forged.header.timestamp += 1; // breaks the signature
    c.send(&Message::NewBlock(forged)).await;
    let err = c.recv_until(|m| matches!(m, Message::Error(_))).await;
    assert!(
        matches!(&err, Message::Error(r) if r.contains("signature")),
        "{err:?}"
    );
    let future = NewEpoch {
        epoch: e.epoch + 5,
        ..e
    };
    c.send(&Message::NewBlock(miner.block(&future, vec![])))
        .await;
    let err = c.recv_until(|m| matches!(m, Message::Error(_))).await;
    assert!(
        matches!(&err, Message::Error(r) if r.contains("current epoch")),
        "{err:?}"
    );
    // Nothing was accepted; the connection is still open.
    let next = fresh_epoch(&mut c).await;
    assert_eq!(next.tip_height, 0);
    assert_eq!(node.status().blocks_accepted, 0);
    // A valid block for an epoch that has ended is ignored as late (no Error, no block).
    c.send(&Message::NewBlock(miner.block(&e, vec![]))).await;
    c.send(&Message::Ping {
        nonce: 6,
        timestamp: 0,
    })
    .await;
    let reply = c
        .recv_until(|m| matches!(m, Message::Error(_) | Message::Pong { .. }))
        .await;
    assert!(matches!(reply, Message::Pong { nonce: 6, .. }), "{reply:?}");
    fresh_epoch(&mut c).await;
    assert_eq!(node.status().blocks_accepted, 0);
    token.cancel();
    node.wait().await.unwrap();
}

#[tokio::test]
async fn a_block_with_too_many_transactions_is_refused_unchecked() {
    use spacetime::consensus::MAX_BLOCK_TRANSACTIONS;
    let dir = tempfile::tempdir().unwrap();
    let (node, token) = node(test_config(dir.path(), 800)).await;
    let miner = TestMiner::new(dir.path(), 8);
    let (mut c, _) = Client::handshaken(node.local_addr(), NET).await;
    let tx = signed_tx(5, 1);
    // Unsigned copies: the count, not a signature, must be what is refused.
    let txs = (0..=MAX_BLOCK_TRANSACTIONS as u64)
        .map(|nonce| spacetime::block::Transaction {
            nonce,
            signature: [0; 64],
            ..tx
        })
        .collect();
    let e = fresh_epoch(&mut c).await;
    c.send(&Message::NewBlock(miner.block(&e, txs))).await;
    let err = c.recv_until(|m| matches!(m, Message::Error(_))).await;
    assert!(
        matches!(&err, Message::Error(r) if r.contains(&format!("at most {MAX_BLOCK_TRANSACTIONS}"))),
        "{err:?}"
    );
    // The connection stays, and the node still answers.
    c.send(&Message::Ping {
        nonce: 9,
        timestamp: 0,
    })
    .await;
    c.recv_until(|m| matches!(m, Message::Pong { nonce: 9, .. }))
        .await;
    assert_eq!(node.status().blocks_accepted, 0);
    token.cancel();
    node.wait().await.unwrap();
}

#[tokio::test]
async fn transactions_are_relayed_listed_mined_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (node, token) = node(test_config(dir.path(), 600)).await;
    let miner = TestMiner::new(dir.path(), 6);
    let (mut wallet, _) = Client::handshaken(node.local_addr(), NET).await;
    let (mut m, _) = Client::handshaken(node.local_addr(), NET).await;
    let tx = signed_tx(10, 2);
    wallet.send(&Message::Transaction(tx)).await;
    // Relayed to the miner.
    let relayed = m.recv_until(|x| matches!(x, Message::Transaction(_))).await;
    assert_eq!(relayed, Message::Transaction(tx));
    // A forged transaction is refused with a reason; the connection stays.
    let mut forged = signed_tx(5, 1);
    forged.amount = 6;
    wallet.send(&Message::Transaction(forged)).await;
    let err = wallet.recv_until(|x| matches!(x, Message::Error(_))).await;
    assert!(
        matches!(&err, Message::Error(r) if r.contains("signature")),
        "{err:?}"
    );
    m.send(&Message::TxPoolRequest {
        max_transactions: 100,
        include_data: true,
    })
    .await;
    assert_eq!(
        m.recv_until(|x| matches!(x, Message::Transaction(_))).await,
        Message::Transaction(tx)
    );
    assert_eq!(node.status().mempool, 1);
    let e = fresh_epoch(&mut m).await;
    let block = miner.block(&e, vec![tx]);
    m.send(&Message::NewBlock(block.clone())).await;
    assert_eq!(accepted(&mut m).await, (block.hash(), 1));
    assert_eq!(node.status().mempool, 0);
    m.send(&Message::TxPoolRequest {
        max_transactions: 100,
        include_data: true,
    })
    .await;
    m.send(&Message::Ping {
        nonce: 4,
        timestamp: 0,
    })
    .await;
    // The pool is empty: the Pong comes with no Transaction before it.
    let reply = m
        .recv_until(|x| matches!(x, Message::Transaction(_) | Message::Pong { .. }))
        .await;
    assert!(matches!(reply, Message::Pong { nonce: 4, .. }), "{reply:?}");
    // Re-submitting a mined transaction is refused.
    wallet.send(&Message::Transaction(tx)).await;
    let err = wallet.recv_until(|x| matches!(x, Message::Error(_))).await;
    assert!(
        matches!(&err, Message::Error(r) if r.contains("already in the chain")),
        "{err:?}"
    );
    token.cancel();
    node.wait().await.unwrap();
}

#[tokio::test]
async fn a_restarted_node_resumes_at_the_same_tip() {
    let dir = tempfile::tempdir().unwrap();
    let miner = TestMiner::new(dir.path(), 7);
    let data = dir.path().join("node");
    let (node1, token1) = node(test_config(&data, 500)).await;
    let (mut c, _) = Client::handshaken(node1.local_addr(), NET).await;
    let e = fresh_epoch(&mut c).await;
    let block = miner.block(&e, vec![]);
    c.send(&Message::NewBlock(block.clone())).await;
    assert_eq!(accepted(&mut c).await, (block.hash(), 1));
    let last_epoch = node1.status().epoch;
    let genesis = node1.block_at(0).unwrap();
    token1.cancel();
    node1.wait().await.unwrap();
    c.until_closed().await;

    let (node2, token2) = node(test_config(&data, 500)).await;
    let s = node2.status();
    assert_eq!((s.tip_height, s.tip_hash), (1, block.hash()));
    assert!(s.epoch > last_epoch, "{} <= {last_epoch}", s.epoch);
    assert_eq!(node2.block_at(0).unwrap(), genesis);
    let (_c2, e2) = Client::handshaken(node2.local_addr(), NET).await;
    assert_eq!((e2.tip_hash, e2.tip_height), (block.hash(), 1));
    token2.cancel();
    node2.wait().await.unwrap();
}

#[tokio::test]
async fn peer_limit_rate_limit_and_handshake_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path(), 400);
    cfg.max_peers = 2;
    cfg.max_messages_per_sec = 5;
    cfg.message_burst = 5;
    cfg.handshake_timeout = Duration::from_millis(300);
    let (node, token) = node(cfg).await;
    let (_a, _) = Client::handshaken(node.local_addr(), NET).await;
    let (mut b, _) = Client::handshaken(node.local_addr(), NET).await;
    let mut extra = Client::connect(node.local_addr()).await;
    let seen = extra.until_closed().await;
    assert!(
        error_reason(&seen).unwrap().contains("too many peers"),
        "{seen:?}"
    );

    for n in 0..20 {
        b.send(&Message::Ping {
            nonce: n,
            timestamp: 0,
        })
        .await;
    }
    let seen = b.until_closed().await;
    assert!(
        error_reason(&seen).unwrap().contains("rate limit"),
        "{seen:?}"
    );

    // b's slot is free again once its connection ended: a silent peer is timed out.
    drop(b);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while node.status().connections > 1 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut silent = Client::connect(node.local_addr()).await;
    let seen = silent.until_closed().await;
    assert!(
        error_reason(&seen)
            .unwrap()
            .contains("handshake not completed"),
        "{seen:?}"
    );
    token.cancel();
    node.wait().await.unwrap();
}

#[tokio::test]
async fn a_silent_peer_is_pinged_then_closed() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path(), 5000);
    cfg.ping_after = Duration::from_millis(200);
    cfg.idle_timeout = Duration::from_millis(500);
    let (node, token) = node(cfg).await;
    let (mut c, _) = Client::handshaken(node.local_addr(), NET).await;
    let ping = c.recv().await.unwrap();
    assert!(matches!(ping, Message::Ping { .. }), "{ping:?}");
    let seen = c.until_closed().await;
    assert!(
        error_reason(&seen).unwrap().contains("no message"),
        "{seen:?}"
    );
    token.cancel();
    node.wait().await.unwrap();
}

#[tokio::test]
async fn two_nodes_cannot_share_a_data_dir_and_other_networks_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (node1, token) = node(test_config(dir.path(), 400)).await;
    let err = start(test_config(dir.path(), 400), CancellationToken::new())
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("lock"), "{err:#}");
    token.cancel();
    node1.wait().await.unwrap();
    let mut other = test_config(dir.path(), 400);
    other.network_id = "another-net".into();
    let err = start(other, CancellationToken::new()).await.unwrap_err();
    assert!(format!("{err:#}").contains("another network"), "{err:#}");
}

#[tokio::test]
async fn a_node_that_cannot_store_its_epoch_counter_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where the counter file belongs: it can be neither read nor replaced.
    std::fs::create_dir_all(dir.path().join(super::epoch::EPOCH_FILE).join("x")).unwrap();
    let err = start(test_config(dir.path(), 400), CancellationToken::new())
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("epoch counter"), "{err:#}");
    // Once the counter can be stored, the node starts on the same data dir (the failed
    // start released its lock).
    std::fs::remove_dir_all(dir.path().join(super::epoch::EPOCH_FILE)).unwrap();
    // Long epochs, so the epoch does not move on while the file is read.
    let (node, token) = node(test_config(dir.path(), 10_000)).await;
    let stored: u64 = std::fs::read_to_string(dir.path().join(super::epoch::EPOCH_FILE))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(stored, node.status().epoch);
    token.cancel();
    node.wait().await.unwrap();
}

#[tokio::test]
async fn a_peer_that_does_not_read_is_dropped_without_stalling_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path(), 5000);
    cfg.outbound_queue = 8;
    cfg.max_messages_per_sec = 100_000;
    cfg.message_burst = 100_000;
    let (node, token) = node(cfg).await;
    // A peer with a tiny receive buffer that completes the handshake, then never reads.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(node.local_addr()).await.unwrap();
    let mut slow = Client::from_stream(stream);
    slow.send(&hello(2, NET)).await;
    assert!(matches!(slow.recv().await, Ok(Message::Handshake(_))));
    assert_eq!(slow.recv().await, Ok(Message::HandshakeAck));
    slow.send(&Message::HandshakeAck).await;
    let (mut wallet, _) = Client::handshaken(node.local_addr(), NET).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while node.status().peers < 2 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Every transaction is relayed to the slow peer until its queue overflows.
    let mut sent = 0;
    while node.status().peers > 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "slow peer never dropped"
        );
        for _ in 0..200 {
            wallet.send(&Message::Transaction(signed_tx(1, 1))).await;
        }
        sent += 200;
        wallet
            .send(&Message::Ping {
                nonce: sent,
                timestamp: 0,
            })
            .await;
        wallet
            .recv_until(|m| matches!(m, Message::Pong { nonce, .. } if *nonce == sent))
            .await;
    }
    // The wallet is still served.
    wallet
        .send(&Message::Ping {
            nonce: 1,
            timestamp: 0,
        })
        .await;
    wallet
        .recv_until(|m| matches!(m, Message::Pong { nonce: 1, .. }))
        .await;
    assert_eq!(node.status().mempool as u64, sent);
    token.cancel();
    node.wait().await.unwrap();
}

/// Audit row 7: one valid 1000-transaction block replayed 20 times a second cost a full
/// core (1001 signature checks per copy). A replay, or any block that cannot beat the
/// epoch's leader, is now dropped before any check.
#[tokio::test]
async fn a_replayed_block_is_checked_once() {
    let dir = tempfile::tempdir().unwrap();
    let (node, token) = node(test_config(dir.path(), 5_000)).await;
    let miner = TestMiner::new(dir.path(), 9);
    let (mut c, _) = Client::handshaken(node.local_addr(), NET).await;
    let txs: Vec<_> = (0..1000).map(|i| signed_tx(10 + i, 1)).collect();
    let e = fresh_epoch(&mut c).await;
    let block = miner.block(&e, txs);
    for _ in 0..20 {
        c.send(&Message::NewBlock(block.clone())).await;
    }
    // The node answers in order: once the Pong is back, every copy has been handled.
    c.send(&Message::Ping {
        nonce: 77,
        timestamp: 0,
    })
    .await;
    c.recv_until(|m| matches!(m, Message::Pong { nonce: 77, .. }))
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while node.status().blocks_checked + node.status().blocks_ignored < 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            node.status()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let st = node.status();
    assert_eq!((st.blocks_checked, st.blocks_ignored), (1, 19), "{st:?}");
    token.cancel();
    node.wait().await.unwrap();
}

/// Audit row 8: 64 idle peers from one address held every slot. One address now gets at
/// most `max_peers_per_ip` of them; another address still gets in.
#[tokio::test]
async fn one_address_cannot_hold_every_slot() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path(), 2_000);
    cfg.max_peers = 10;
    cfg.max_peers_per_ip = 3;
    let (node, token) = node(cfg).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(Client::handshaken(node.local_addr(), NET).await.0);
    }
    let mut extra = Client::connect(node.local_addr()).await;
    let seen = extra.until_closed().await;
    assert!(
        error_reason(&seen)
            .unwrap()
            .contains("too many connections from 127.0.0.1"),
        "{seen:?}"
    );
    // Another loopback address is another host.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let stream = socket.connect(node.local_addr()).await.unwrap();
    let mut other = Client::from_stream(stream);
    other.send(&hello(2, NET)).await;
    other
        .recv_until(|m| matches!(m, Message::HandshakeAck))
        .await;
    other.send(&Message::HandshakeAck).await;
    other
        .recv_until(|m| matches!(m, Message::NewEpoch(_)))
        .await;
    // A slot given back is free again for the first address.
    drop(held.pop());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while node.status().connections > 3 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    held.push(Client::handshaken(node.local_addr(), NET).await.0);
    token.cancel();
    node.wait().await.unwrap();
}

/// Audit row 9: a 1 MB user agent was logged (and echoed) verbatim, 40 MB of log for 40
/// handshakes, terminal escapes included. Peer text is now bounded and inert wherever it
/// goes: the refusal echoes at most [`spacetime::wire::MAX_PEER_TEXT`] characters of it,
/// escaped.
#[tokio::test]
async fn a_huge_hostile_user_agent_is_bounded_and_escaped() {
    use spacetime::wire::Handshake;
    let dir = tempfile::tempdir().unwrap();
    let (node, token) = node(test_config(dir.path(), 2_000)).await;
    let agent = format!(
        "\x1b]0;pwned\x07\x1b[2J{} network=other",
        "A".repeat(1 << 20)
    );
    let mut c = Client::connect(node.local_addr()).await;
    c.send(&Message::Handshake(Handshake {
        protocol_version: 2,
        timestamp: 1,
        node_id: "x".into(),
        user_agent: agent,
    }))
    .await;
    let seen = c.until_closed().await;
    let reason = error_reason(&seen).unwrap();
    assert!(reason.contains("network id mismatch"), "{reason}");
    assert!(
        reason.len() < 2 * spacetime::wire::MAX_PEER_TEXT,
        "{}",
        reason.len()
    );
    assert!(!reason.chars().any(char::is_control), "{reason:?}");
    assert!(reason.contains("\\u{1b}]0;pwned"), "{reason}");
    token.cancel();
    node.wait().await.unwrap();
}

/// Audit row 10: a 1-leaf plot ground after the challenge won blocks with no storage.
/// Proofs and blocks of plots below `min_plot_leaves` are refused before any other check.
#[tokio::test]
async fn proofs_and_blocks_of_plots_below_the_minimum_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path(), 2_000);
    cfg.min_plot_leaves = 512;
    let (node, token) = node(cfg).await;
    let miner = TestMiner::new(dir.path(), 11); // 300 leaves
    let (mut c, _) = Client::handshaken(node.local_addr(), NET).await;
    let e = fresh_epoch(&mut c).await;
    c.send(&Message::NewBlock(miner.block(&e, vec![]))).await;
    let err = c.recv_until(|m| matches!(m, Message::Error(_))).await;
    assert!(
        matches!(&err, Message::Error(r) if r.contains("300 leaves, below this network's minimum of 512")),
        "{err:?}"
    );
    assert_eq!(node.status().blocks_checked, 0);
    c.send(&miner.submission(&e)).await;
    let seen = c.until_closed().await;
    assert!(
        error_reason(&seen).unwrap().contains("minimum of 512"),
        "{seen:?}"
    );
    token.cancel();
    node.wait().await.unwrap();
}

#[tokio::test]
async fn temporaries_of_interrupted_writes_are_removed_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (node1, token) = node(test_config(dir.path(), 10_000)).await;
    token.cancel();
    node1.wait().await.unwrap();
    let stale = [
        ".chain.dat.tmp-AbCd1234",
        ".epoch.tmp-12345678",
        ".genesis.key.tmp-x1y2z3w4",
        "epoch.new",
    ];
    for name in stale {
        std::fs::write(dir.path().join(name), b"left by a crash").unwrap();
    }
    std::fs::write(dir.path().join("notes.txt"), b"not ours").unwrap();
    let (node2, token) = node(test_config(dir.path(), 10_000)).await;
    for name in stale {
        assert!(!dir.path().join(name).exists(), "{name} was kept");
    }
    assert!(dir.path().join("notes.txt").exists());
    token.cancel();
    node2.wait().await.unwrap();
}

/// A handshaken client from loopback address `127.0.0.<host>`.
async fn client_from(node: &DevnetNodeHandle, host: u8) -> Client {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(std::net::SocketAddr::from(([127, 0, 0, host], 0)))
        .unwrap();
    let stream = socket.connect(node.local_addr()).await.unwrap();
    let mut c = Client::from_stream(stream);
    c.send(&hello(2, NET)).await;
    c.recv_until(|m| matches!(m, Message::HandshakeAck)).await;
    c.send(&Message::HandshakeAck).await;
    c.recv_until(|m| matches!(m, Message::NewEpoch(_))).await;
    c
}

/// Waits until the node has answered everything `c` sent before (a Ping round trip).
async fn round_trip(c: &mut Client, nonce: u64) {
    c.send(&Message::Ping {
        nonce,
        timestamp: 0,
    })
    .await;
    c.recv_until(|m| matches!(m, Message::Pong { nonce: n, .. } if *n == nonce))
        .await;
}

/// Regression (issue 10, row 8): idle peers from many addresses held every slot, under
/// every per-address cap, and a new peer was refused for good. Now a full node drops the
/// peer that sent nothing useful for the longest (past `idle_peer_after`) to make room; a
/// peer that sent a transaction is kept, and with no idle peer the newcomer is refused.
#[tokio::test]
async fn a_full_node_drops_the_longest_idle_peer_for_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path(), 10_000);
    cfg.max_peers = 3;
    cfg.idle_peer_after = Duration::from_millis(300);
    let (node, token) = node(cfg).await;
    let mut first = client_from(&node, 2).await;
    let mut second = client_from(&node, 3).await;
    let mut third = client_from(&node, 4).await;
    // Idle long enough; then `first` sends a transaction and so is useful again.
    tokio::time::sleep(Duration::from_millis(400)).await;
    first.send(&Message::Transaction(signed_tx(3, 1))).await;
    round_trip(&mut first, 1).await;
    assert_eq!(node.status().mempool, 1);
    // A newcomer takes the place of `second`, the longest idle.
    let mut fourth = client_from(&node, 5).await;
    second.until_closed().await;
    round_trip(&mut fourth, 2).await;
    // The next one takes `third`'s place; `first` stays.
    let _fifth = client_from(&node, 6).await;
    third.until_closed().await;
    round_trip(&mut first, 3).await;
    // Nobody is idle long enough now: refused.
    let mut sixth = Client::connect(node.local_addr()).await;
    let seen = sixth.until_closed().await;
    assert!(
        error_reason(&seen).unwrap().contains("too many peers"),
        "{seen:?}"
    );
    assert!(node.status().connections <= 3);
    token.cancel();
    node.wait().await.unwrap();
}

/// Regression (issue 10, row 10): one address could fill the mempool, and a full mempool
/// refused better transactions. Now an address holds at most `max_mempool_per_ip`, and a
/// full mempool evicts its lowest fee for a higher one.
#[tokio::test]
async fn the_mempool_evicts_low_fees_and_bounds_each_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path(), 10_000);
    cfg.max_mempool = 3;
    cfg.max_mempool_per_ip = 2;
    let (node, token) = node(cfg).await;
    let mut a = client_from(&node, 2).await;
    let mut b = client_from(&node, 3).await;
    for fee in [1, 2, 50] {
        a.send(&Message::Transaction(signed_tx(1, fee))).await;
    }
    let refused = a.recv_until(|m| matches!(m, Message::Error(_))).await;
    assert!(
        matches!(&refused, Message::Error(r) if r.contains("the most one address may have")),
        "{refused:?}"
    );
    b.send(&Message::Transaction(signed_tx(1, 5))).await;
    b.send(&Message::Transaction(signed_tx(1, 9))).await;
    round_trip(&mut b, 1).await;
    let s = node.status();
    assert_eq!(s.mempool, 3);
    b.send(&Message::TxPoolRequest {
        max_transactions: 10,
        include_data: true,
    })
    .await;
    let mut fees = Vec::new();
    for _ in 0..3 {
        if let Message::Transaction(tx) =
            b.recv_until(|m| matches!(m, Message::Transaction(_))).await
        {
            fees.push(tx.fee);
        }
    }
    assert_eq!(fees, [9, 5, 2], "the fee-1 transaction was evicted");
    token.cancel();
    node.wait().await.unwrap();
}

/// With one body kept in memory, blocks that left memory are still served, from the
/// chain file, by GetBlock and `block_at`.
#[tokio::test]
async fn blocks_no_longer_in_memory_are_served_from_the_chain_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path(), 400);
    cfg.max_blocks_in_memory = 1;
    let (node, token) = node(cfg).await;
    let miner = TestMiner::new(dir.path(), 5);
    let (mut m, _) = Client::handshaken(node.local_addr(), NET).await;
    let mut mined = Vec::new();
    while mined.len() < 3 {
        let e = fresh_epoch(&mut m).await;
        let block = miner.block(&e, vec![]);
        m.send(&Message::NewBlock(block.clone())).await;
        let (hash, _) = accepted(&mut m).await;
        assert_eq!(hash, block.hash());
        mined.push(block);
    }
    for (i, block) in mined.iter().enumerate() {
        m.send(&Message::GetBlock { hash: block.hash() }).await;
        let got = m.recv_until(|m| matches!(m, Message::Block(_))).await;
        assert_eq!(got, Message::Block(block.clone()), "block {}", i + 1);
        assert_eq!(node.block_at(i as u64 + 1).as_ref(), Some(block));
    }
    token.cancel();
    node.wait().await.unwrap();
}

/// Connections that open and never finish their handshake (from several addresses, each
/// under its cap) held every slot until their handshake timeout, again and again. When
/// the node is full, one stuck in its handshake for over a second makes room first.
#[tokio::test]
async fn a_connection_stuck_in_its_handshake_makes_room_for_a_new_peer() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path(), 10_000);
    cfg.max_peers = 2;
    cfg.handshake_timeout = Duration::from_secs(30);
    let (node, token) = node(cfg).await;
    let mut stuck = Vec::new();
    for host in [2, 3] {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(std::net::SocketAddr::from(([127, 0, 0, host], 0)))
            .unwrap();
        stuck.push(Client::from_stream(
            socket.connect(node.local_addr()).await.unwrap(),
        ));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while node.status().connections < 2 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(super::state::HANDSHAKE_GRACE + Duration::from_millis(100)).await;
    let (_fresh, _) = Client::handshaken(node.local_addr(), NET).await;
    // The first stuck connection went; the other one is next in line.
    stuck[0].until_closed().await;
    assert!(node.status().connections <= 2);
    token.cancel();
    node.wait().await.unwrap();
}
