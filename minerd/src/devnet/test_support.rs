//! Test helpers: a miner with a real tiny plot, and a hand-rolled wire client.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use spacetime::block::{Block, BlockProof, Transaction};
use spacetime::consensus::{score, BlockTemplate};
use spacetime::hash::Hash32;
use spacetime::keys::MinerKey;
use spacetime::plot::{create_plot, CacheLevels, CreatePlot, PlotFile};
use spacetime::prove::build_proof;
use spacetime::wire::{
    user_agent, Handshake, Message, MessageDecoder, NewEpoch, WireError, MAX_FRAME_LENGTH,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::config::DevnetNodeConfig;
use super::now_unix_ms;

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
    cfg
}

/// How a receive ended without a message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RecvEnd {
    Closed,
    Timeout,
}

/// A hand-rolled peer speaking `spacetime::wire`.
pub(crate) struct Client {
    stream: TcpStream,
    decoder: MessageDecoder,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Self {
        Self::from_stream(TcpStream::connect(addr).await.unwrap())
    }

    pub fn from_stream(stream: TcpStream) -> Self {
        stream.set_nodelay(true).unwrap();
        Self {
            stream,
            decoder: MessageDecoder::new(MAX_FRAME_LENGTH),
        }
    }

    /// Connects, completes the version-2 handshake on `network`, and returns the first
    /// NewEpoch.
    pub async fn handshaken(addr: SocketAddr, network: &str) -> (Self, NewEpoch) {
        let mut c = Self::connect(addr).await;
        c.send(&hello(2, network)).await;
        assert!(matches!(c.recv().await, Ok(Message::Handshake(_))));
        assert_eq!(c.recv().await, Ok(Message::HandshakeAck));
        c.send(&Message::HandshakeAck).await;
        match c.recv().await {
            Ok(Message::NewEpoch(e)) => (c, e),
            other => panic!("expected NewEpoch, got {other:?}"),
        }
    }

    pub async fn send(&mut self, m: &Message) {
        self.send_raw(&m.encode()).await;
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        // The node may already have closed; callers check what comes back.
        let _ = self.stream.write_all(bytes).await;
    }

    /// The next message within 5 s.
    pub async fn recv(&mut self) -> Result<Message, RecvEnd> {
        self.recv_within(Duration::from_secs(5)).await
    }

    pub async fn recv_within(&mut self, limit: Duration) -> Result<Message, RecvEnd> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match self.decoder.next_message() {
                Ok(Some(m)) => {
                    return Ok(m);
                }
                Ok(None) => {}
                Err(WireError::Frame(e)) => panic!("node sent a bad frame: {e}"),
                Err(WireError::Message { error, .. }) => panic!("node sent a bad message: {error}"),
            }
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return Err(RecvEnd::Timeout),
                Ok(Ok(0)) | Ok(Err(_)) => return Err(RecvEnd::Closed),
                Ok(Ok(n)) => self.decoder.extend(&chunk[..n]),
            }
        }
    }

    /// Skips messages until one matches `pred` (within 5 s overall).
    pub async fn recv_until(&mut self, pred: impl Fn(&Message) -> bool) -> Message {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv_within(left).await {
                Ok(m) if pred(&m) => return m,
                Ok(_) => {}
                Err(e) => panic!("wanted message not received: {e:?}"),
            }
        }
    }

    /// Reads until the node closes (within 5 s); returns the messages seen on the way.
    pub async fn until_closed(&mut self) -> Vec<Message> {
        let mut seen = Vec::new();
        loop {
            match self.recv().await {
                Ok(m) => seen.push(m),
                Err(RecvEnd::Closed) => return seen,
                Err(RecvEnd::Timeout) => panic!("node did not close; saw {seen:?}"),
            }
        }
    }
}

/// A Handshake of `version` naming `network`.
pub(crate) fn hello(version: i32, network: &str) -> Message {
    Message::Handshake(Handshake {
        protocol_version: version,
        timestamp: (now_unix_ms() / 1000) as i64,
        node_id: "test-peer".into(),
        user_agent: user_agent("test", "0", network),
    })
}

/// The Error reason among `messages`, if any.
pub(crate) fn error_reason(messages: &[Message]) -> Option<&str> {
    messages.iter().find_map(|m| match m {
        Message::Error(r) => Some(r.as_str()),
        _ => None,
    })
}
