//! Test helpers: a miner with a real tiny plot, and the kit's wire peer with defaults.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use spacetime::block::{
    Block, BlockHeader, BlockPlotMetadata, BlockProof, Transaction, BLOCK_VERSION,
};
use spacetime::consensus::{score, BlockTemplate};
use spacetime::hash::Hash32;
use spacetime::keys::MinerKey;
use spacetime::plot::{create_plot, CacheLevels, CreatePlot, PlotFile};
use spacetime::prove::build_proof;
use spacetime::wire::{Message, NewEpoch};
use tokio::net::TcpStream;

use crate::testkit::WirePeer;
pub(crate) use crate::testkit::{error_reason, handshake as hello, RecvEnd};

use super::config::DevnetNodeConfig;
use super::now_unix_ms;

/// A header of `height` and `epoch` with fixed other fields, unsigned (for the node's
/// bookkeeping tests, which never check it).
pub(crate) fn header(height: u64, epoch: u64) -> BlockHeader {
    BlockHeader {
        version: BLOCK_VERSION,
        parent_hash: [1; 32],
        height,
        timestamp: 1000,
        difficulty: 1,
        epoch,
        challenge: [2; 32],
        plot_root: [3; 32],
        proof_score: [0; 32],
        tx_root: [0; 32],
        miner_id: [0xED; 33],
        signature: [0; 64],
    }
}

/// A proof of one zero leaf that proves nothing (for tests that never verify it).
pub(crate) fn unchecked_proof() -> BlockProof {
    BlockProof {
        leaf: [0; 32],
        leaf_index: 0,
        siblings: vec![],
        sibling_is_right: vec![],
        metadata: BlockPlotMetadata {
            leaf_count: 1,
            plot_id: [0; 32],
            plot_header_hash: [0; 32],
            version: 1,
        },
    }
}

/// A miner key and a real plot of a few hundred leaves.
pub(crate) struct TestMiner {
    pub key: MinerKey,
    pub plot: PlotFile,
}

impl TestMiner {
    /// Creates the plot under `dir` (one file per seed).
    pub fn new(dir: &Path, seed: u8) -> Self {
        let key = MinerKey::generate();
        let path = dir.join(format!("m{seed}.plot"));
        create_plot(
            &CreatePlot {
                path: path.clone(),
                miner_pk: key.public_key(),
                seed: [seed; 32],
                leaf_count: 300,
                cache: CacheLevels::Disabled,
                threads: Some(1),
            },
            &mut |_| {},
            &AtomicBool::new(false),
        )
        .unwrap();
        let plot = PlotFile::open(&path).unwrap();
        Self { key, plot }
    }

    /// The best proof of the plot for `challenge`, and its score.
    pub fn prove(&self, challenge: &Hash32) -> (BlockProof, Hash32) {
        let (index, best) = (0..self.plot.leaf_count())
            .map(|i| (i, score(challenge, &self.plot.leaf(i).unwrap().unwrap())))
            .min_by(|a, b| a.1.cmp(&b.1))
            .unwrap();
        let path = build_proof(&self.plot, None, index).unwrap();
        (BlockProof::for_plot(path, self.plot.header()), best)
    }

    /// A signed block for `epoch` carrying `txs`.
    pub fn block(&self, epoch: &NewEpoch, txs: Vec<Transaction>) -> Block {
        let (proof, _) = self.prove(&epoch.challenge);
        BlockTemplate::for_epoch(epoch, now_unix_ms() / 1000).build(
            self.plot.header().merkle_root,
            proof,
            txs,
            &self.key,
        )
    }

    /// The ProofSubmission for `epoch`.
    pub fn submission(&self, epoch: &NewEpoch) -> Message {
        let (proof, _) = self.prove(&epoch.challenge);
        Message::ProofSubmission {
            block_height: epoch.tip_height + 1,
            miner_id: self.key.miner_id(),
            proof,
        }
    }
}

/// A signed transfer from a fresh key.
pub(crate) fn signed_tx(amount: u64, fee: u64) -> Transaction {
    let sender = MinerKey::generate();
    let mut tx = Transaction {
        version: 1,
        sender: sender.miner_id(),
        recipient: MinerKey::generate().miner_id(),
        amount,
        nonce: 0,
        fee,
        signature: [0; 64],
    };
    tx.signature = sender.sign(&tx.hash());
    tx
}

/// A node config for tests: loopback port 0, short epochs, difficulty 1.
pub(crate) fn test_config(dir: &Path, epoch_ms: u64) -> DevnetNodeConfig {
    let mut cfg = DevnetNodeConfig::new(dir);
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.epoch_duration = Duration::from_millis(epoch_ms);
    cfg.initial_difficulty = 1;
    // The test plots are a few hundred leaves.
    cfg.min_plot_leaves = 1;
    cfg
}

/// The kit's [`WirePeer`] with the defaults these tests use: 5 s limits, and a panic
/// where a test expects something else.
pub(crate) struct Client(WirePeer);

impl Client {
    pub async fn connect(addr: SocketAddr) -> Self {
        Self(WirePeer::connect(addr).await.unwrap())
    }

    pub fn from_stream(stream: TcpStream) -> Self {
        Self(WirePeer::from_stream(stream).unwrap())
    }

    /// Connects, completes the version-2 handshake on `network`, and returns the first
    /// NewEpoch.
    pub async fn handshaken(addr: SocketAddr, network: &str) -> (Self, NewEpoch) {
        let (peer, epoch) = WirePeer::handshaken(addr, network).await.unwrap();
        (Self(peer), epoch)
    }

    pub async fn send(&mut self, m: &Message) {
        // The node may already have closed; callers check what comes back.
        let _ = self.0.send(m).await;
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.0.send_raw(bytes).await;
    }

    /// The next message within 5 s.
    pub async fn recv(&mut self) -> Result<Message, RecvEnd> {
        self.0.recv(LIMIT).await
    }

    /// Skips messages until one matches `pred` (within 5 s overall).
    pub async fn recv_until(&mut self, pred: impl Fn(&Message) -> bool) -> Message {
        match self.0.recv_until(LIMIT, pred).await {
            Ok(m) => m,
            Err(e) => panic!("wanted message not received: {e:?}"),
        }
    }

    /// Reads until the node closes (within 5 s); returns the messages seen on the way.
    pub async fn until_closed(&mut self) -> Vec<Message> {
        match self.0.until_closed(LIMIT).await {
            Ok(seen) => seen,
            Err(seen) => panic!("node did not close; saw {seen:?}"),
        }
    }
}

/// How long each receive waits.
const LIMIT: Duration = Duration::from_secs(5);
