//! Harness for the mining end-to-end tests: a `minerd devnet-node` process that can be killed
//! and restarted on the same port and data directory (the node-restart scenario; options for
//! epoch, difficulty and network id), a miner home with a key and a tiny plot, chain download
//! over the wire ([`crate::devnet::WirePeer`]) and independent chain validation.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use spacetime::block::Block;
use spacetime::consensus::epoch_challenge;
use spacetime::keys::MinerKey;
use spacetime::plot::{create_plot, CacheLevels, CreatePlot};
use spacetime::validate::{validate_block, ChainContext};
use spacetime::wire::Message;

use crate::devnet::{spawn_node, WirePeer, DEVNET};
use crate::{ChildProcess, Home, START_TIMEOUT};

/// How a devnet node process is started.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Epoch length in milliseconds.
    pub epoch_ms: u64,
    /// Genesis difficulty.
    pub difficulty: u64,
    /// Network id.
    pub network_id: String,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self {
            epoch_ms: 1000,
            difficulty: 1,
            network_id: DEVNET.into(),
        }
    }
}

/// A running `minerd devnet-node` that keeps its port and data directory across
/// [`DevnetNode::kill`] and [`DevnetNode::restart`]; killed (whole group) on drop.
#[derive(Debug)]
pub struct DevnetNode {
    // Declared before `dir`: fields drop in order, so the node dies before its data dir goes.
    /// The current incarnation; `None` only while a restart is spawning.
    process: Option<ChildProcess>,
    dir: tempfile::TempDir,
    opts: NodeOptions,
    addr: SocketAddr,
    /// The stderr of earlier incarnations, so [`DevnetNode::log`] covers the node's life.
    earlier: Vec<String>,
}

impl DevnetNode {
    /// Starts a node on a free loopback port with a fresh data directory.
    pub fn start(opts: NodeOptions) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("e2e-node-").tempdir()?;
        let mut node = Self {
            process: None,
            dir,
            opts,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            earlier: Vec::new(),
        };
        node.spawn()?;
        Ok(node)
    }

    /// Starts the process on `self.addr` (port 0 the first time, then the bound port).
    fn spawn(&mut self) -> anyhow::Result<()> {
        let extra = [
            "--epoch-ms".to_owned(),
            self.opts.epoch_ms.to_string(),
            "--difficulty".to_owned(),
            self.opts.difficulty.to_string(),
            "--network-id".to_owned(),
            self.opts.network_id.clone(),
        ];
        let (process, addr) = spawn_node(self.dir.path(), &self.data_dir(), self.addr, extra)?;
        self.process = Some(process);
        self.addr = addr;
        Ok(())
    }

    /// The node's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("devnet")
    }

    /// Everything it logged so far, over all incarnations.
    pub fn log(&self) -> String {
        let current = self.process.iter().flat_map(ChildProcess::lines);
        let all: Vec<String> = self.earlier.iter().cloned().chain(current).collect();
        all.join("\n")
    }

    /// Sends SIGTERM and waits (bounded) for the node to exit.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        self.process
            .as_mut()
            .context("the node is not running")?
            .terminate(timeout)
    }

    /// Kills the node (SIGKILL, whole group) and reaps it.
    pub fn kill(&mut self) {
        if let Some(process) = &mut self.process {
            process.kill();
        }
    }

    /// Starts the node again on the same port and data directory (the chain resumes).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        if let Some(old) = self.process.take() {
            self.earlier.extend(old.lines());
        }
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.spawn() {
                Ok(()) => return Ok(()),
                // The port may linger for a moment after the kill.
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// A fresh home with a miner key and a plot of `leaves` leaves for it; returns the key.
pub fn miner_home(leaves: u64) -> anyhow::Result<(Home, MinerKey)> {
    let home = Home::new()?;
    std::fs::create_dir_all(home.plot_dir())?;
    let key = MinerKey::create(&home.data_dir().join("miner_key.dat"))?;
    add_plot(&home.plot_dir(), &key, leaves, 1)?;
    Ok((home, key))
}

/// Writes a plot of `leaves` leaves for `key` into `dir` as `e2e-<seed>.plot`.
pub fn add_plot(dir: &Path, key: &MinerKey, leaves: u64, seed: u8) -> anyhow::Result<PathBuf> {
    let mut s = [seed; 32];
    s[..8].copy_from_slice(&key.public_key()[..8]);
    let created = create_plot(
        &CreatePlot {
            path: dir.join(format!("e2e-{seed}.plot")),
            miner_pk: key.public_key(),
            seed: s,
            leaf_count: leaves,
            cache: CacheLevels::Default,
            threads: Some(1),
        },
        &mut |_| {},
        &AtomicBool::new(false),
    )?;
    Ok(created.path)
}

/// The command-line flags that point a miner at `node` and keep its timings short.
pub fn miner_args(node: SocketAddr) -> Vec<String> {
    [
        "--node-address",
        &node.ip().to_string(),
        "--node-port",
        &node.port().to_string(),
        "--set",
        "connectionRetryIntervalSeconds=1",
        "--set",
        "scanStrategy=full",
        "--set",
        "plotScanIntervalSeconds=1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Fetches one block by hash (GetBlock) on a handshaken peer, skipping unrelated messages.
pub async fn fetch_block(peer: &mut WirePeer, hash: [u8; 32]) -> anyhow::Result<Block> {
    peer.send(&Message::GetBlock { hash }).await?;
    let reply = peer
        .recv_until(Duration::from_secs(10), |m| match m {
            Message::Block(b) => b.hash() == hash,
            Message::Error(_) => true,
            _ => false,
        })
        .await
        .map_err(|end| anyhow::anyhow!("no answer to GetBlock: {end:?}"))?;
    match reply {
        Message::Block(b) => Ok(b),
        other => bail!("GetBlock refused: {other:?}"),
    }
}

/// The whole chain, genesis first, by walking back from `tip` with GetBlock.
pub async fn fetch_chain(peer: &mut WirePeer, tip: [u8; 32]) -> anyhow::Result<Vec<Block>> {
    let mut blocks = vec![fetch_block(peer, tip).await?];
    while let Some(last) = blocks.last() {
        if last.header.height == 0 {
            break;
        }
        let parent = last.header.parent_hash;
        blocks.push(fetch_block(peer, parent).await?);
    }
    blocks.reverse();
    Ok(blocks)
}

/// Checks every block after genesis with the node's own rules against its parent, as an
/// outside observer can: parent, height, epoch after the parent's, challenge
/// `H(parent ‖ epoch)`, signature, transactions, tx root and the strict proof (D2).
pub fn validate_chain(blocks: &[Block]) -> anyhow::Result<()> {
    for pair in blocks.windows(2) {
        let (parent, block) = (&pair[0], &pair[1]);
        let h = &block.header;
        if h.epoch <= parent.header.epoch {
            bail!(
                "block {} has epoch {} after {}",
                h.height,
                h.epoch,
                parent.header.epoch
            );
        }
        let ctx = ChainContext {
            tip_hash: Some(parent.hash()),
            tip_height: parent.header.height,
            expected_difficulty: h.difficulty,
            expected_epoch: h.epoch,
            expected_challenge: epoch_challenge(&parent.hash(), h.epoch),
            now_unix: h.timestamp,
            epoch_start_unix: h.timestamp,
        };
        validate_block(block, &ctx).with_context(|| format!("block at height {}", h.height))?;
    }
    Ok(())
}
