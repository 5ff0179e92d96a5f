//! Harness for the mining end-to-end tests: a `minerd devnet-node` process that can be killed
//! and restarted on the same port and data directory (the node-restart scenario; options for
//! epoch, difficulty and network id), a miner home with a key and a tiny plot, chain download
//! over the wire ([`crate::devnet::WirePeer`]) and independent chain validation.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use spacetime::block::Block;
use spacetime::consensus::epoch_challenge;
use spacetime::keys::MinerKey;
use spacetime::plot::{create_plot, CacheLevels, CreatePlot};
use spacetime::validate::{validate_block, ChainContext};
use spacetime::wire::Message;

use crate::devnet::{WirePeer, DEVNET};
use crate::{binary, Home, START_TIMEOUT};

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

/// A running `minerd devnet-node` in its own process group, killed on drop.
#[derive(Debug)]
pub struct DevnetNode {
    dir: tempfile::TempDir,
    opts: NodeOptions,
    child: Option<Child>,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl DevnetNode {
    /// Starts a node on a free loopback port with a fresh data directory.
    pub fn start(opts: NodeOptions) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("e2e-node-").tempdir()?;
        let mut node = Self {
            dir,
            opts,
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log: Arc::new(Mutex::new(Vec::new())),
        };
        node.spawn()?;
        Ok(node)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(binary("minerd"));
        cmd.arg("devnet-node")
            .args(["--listen", &self.addr.to_string()])
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--epoch-ms", &self.opts.epoch_ms.to_string()])
            .args(["--difficulty", &self.opts.difficulty.to_string()])
            .args(["--network-id", &self.opts.network_id])
            .env_clear()
            .env("HOME", self.dir.path())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn().context("spawning minerd devnet-node")?;
        let stderr = child.stderr.take().context("devnet node stderr")?;
        let (tx, rx) = mpsc::channel::<String>();
        let log = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("E2E_SHOW_LOGS").is_some() {
                    eprintln!("[node] {line}");
                }
                log.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(line.clone());
                let _ = tx.send(line);
            }
        });
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).map_err(|_| {
                anyhow::anyhow!(
                    "devnet node did not start within {START_TIMEOUT:?}; log:\n{}",
                    self.log()
                )
            })?;
            if let Some(rest) = line.split("devnet node listening on ").nth(1) {
                let word = rest.split_whitespace().next().unwrap_or_default();
                self.addr = word
                    .parse()
                    .with_context(|| format!("bad address in {line:?}"))?;
                return Ok(());
            }
        }
    }

    /// The node's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("devnet")
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    /// Kills the node (SIGKILL, whole group) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the node again on the same port and data directory (the chain resumes).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.spawn() {
                Ok(()) => return Ok(()),
                // The port may linger for a moment after the kill.
                Err(_) if Instant::now() < deadline => {
                    self.kill();
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for DevnetNode {
    fn drop(&mut self) {
        self.kill();
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
