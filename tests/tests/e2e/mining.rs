//! Mining end to end: real `minerd` daemons against real `minerd devnet-node` processes on
//! loopback, with short epochs and tiny plots.

use std::time::{Duration, Instant};

use e2e::devnet::{WirePeer, DEVNET};
use e2e::mining::{
    fetch_block, fetch_chain, miner_args, miner_home, validate_chain, DevnetNode, NodeOptions,
};
use e2e::{Minerd, MinerdOptions};
use serde_json::Value;
use spacetime::block::Transaction;
use spacetime::keys::MinerKey;
use spacetime::plot::PlotFile;
use spacetime::scan::{scan_plots, ScanStrategy};
use spacetime::wire::Message;

/// Generous bound for anything that takes a few epochs on a loaded 2-core machine.
const SLOW: Duration = Duration::from_secs(60);

pub(crate) fn status(d: &Minerd) -> Value {
    d.minerctl_json(&["status", "--json"])
        .unwrap_or_else(|e| panic!("status: {e:#}\nlog:\n{}", d.log()))
}

/// Polls the status every 100 ms until `cond` holds; panics with the status and log after
/// `timeout`.
pub(crate) fn wait_status(
    d: &Minerd,
    what: &str,
    timeout: Duration,
    cond: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let s = status(d);
        if cond(&s) {
            return s;
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out waiting for {what}; status: {s:#}\nlog:\n{}",
                d.log()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn counter(s: &Value, name: &str) -> u64 {
    s["counters"][name].as_u64().unwrap_or(0)
}

pub(crate) fn start_miner(home: e2e::Home, node: &DevnetNode) -> Minerd {
    Minerd::start_in(
        home,
        MinerdOptions {
            args: miner_args(node.addr()),
            ..Default::default()
        },
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miner_wins_blocks_that_pass_independent_validation() {
    let node = DevnetNode::start(NodeOptions::default()).unwrap();
    let (home, key) = miner_home(1 << 12).unwrap();
    let miner = start_miner(home, &node);
    let s = wait_status(&miner, "two accepted blocks", SLOW, |s| {
        counter(s, "blocksAccepted") >= 2
    });
    assert_eq!(s["node"]["state"], "connected");
    assert!(s["node"]["peerUserAgent"]
        .as_str()
        .unwrap()
        .contains(DEVNET));
    assert!(counter(&s, "proofsSubmitted") >= counter(&s, "blocksWon"));
    assert!(counter(&s, "challengesReceived") >= 2);
    assert!(s["lastProofLatencyMs"].as_u64().is_some(), "{s:#}");

    let (mut client, epoch) = WirePeer::handshaken(node.addr(), DEVNET).await.unwrap();
    let chain = fetch_chain(&mut client, epoch.tip_hash).await.unwrap();
    assert!(chain.len() >= 3, "genesis and at least two blocks");
    validate_chain(&chain).unwrap();
    for block in &chain[1..] {
        assert_eq!(block.header.miner_id, key.miner_id());
    }
    assert!(
        miner.log().contains("block won: height"),
        "each won block is logged"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The best score of the plots in `dir` for `challenge` (full scan).
fn best_score(dir: &std::path::Path, challenge: &[u8; 32]) -> [u8; 32] {
    let plots: Vec<PlotFile> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "plot"))
        .map(|p| PlotFile::open(&p).unwrap())
        .collect();
    let refs: Vec<&PlotFile> = plots.iter().collect();
    let out = scan_plots(
        &refs,
        challenge,
        &ScanStrategy::Full,
        None,
        &std::sync::atomic::AtomicBool::new(false),
    );
    out.best.unwrap().score
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_miners_compete_and_each_block_goes_to_the_lower_score() {
    let node = DevnetNode::start(NodeOptions {
        epoch_ms: 1500,
        ..NodeOptions::default()
    })
    .unwrap();
    let (home_a, key_a) = miner_home(1 << 11).unwrap();
    let (home_b, key_b) = miner_home(1 << 11).unwrap();
    let (dir_a, dir_b) = (home_a.plot_dir(), home_b.plot_dir());
    let a = start_miner(home_a, &node);
    let b = start_miner(home_b, &node);
    for m in [&a, &b] {
        wait_status(m, "a submitted proof", SLOW, |s| {
            counter(s, "proofsSubmitted") >= 1
        });
    }
    // From now on both miners answer every epoch.
    let (mut client, start) = WirePeer::handshaken(node.addr(), DEVNET).await.unwrap();
    let from_epoch = start.epoch + 1;
    let deadline = Instant::now() + SLOW;
    let chain = loop {
        let (_, now) = WirePeer::handshaken(node.addr(), DEVNET).await.unwrap();
        let chain = fetch_chain(&mut client, now.tip_hash).await.unwrap();
        if chain
            .iter()
            .filter(|b| b.header.epoch >= from_epoch)
            .count()
            >= 4
        {
            break chain;
        }
        assert!(
            Instant::now() < deadline,
            "the chain did not grow:\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    validate_chain(&chain).unwrap();
    // Judge the epochs in which the node accepted a proof from both miners (a miner
    // descheduled past a deadline on a loaded machine legitimately loses that epoch).
    let log = node.log();
    let proved = |epoch: u64, key: &MinerKey| {
        let (e, m) = (
            format!("epoch={epoch} "),
            format!("miner={}", hex(&key.miner_id())),
        );
        log.lines()
            .any(|l| l.contains("proof accepted") && l.contains(&e) && l.contains(&m))
    };
    let mut judged = 0;
    for pair in chain.windows(2) {
        let (parent, block) = (&pair[0], &pair[1]);
        let epoch = block.header.epoch;
        if epoch < from_epoch || !proved(epoch, &key_a) || !proved(epoch, &key_b) {
            continue;
        }
        let challenge = spacetime::consensus::epoch_challenge(&parent.hash(), epoch);
        let (sa, sb) = (
            best_score(&dir_a, &challenge),
            best_score(&dir_b, &challenge),
        );
        let (best, winner) = if sa < sb { (sa, &key_a) } else { (sb, &key_b) };
        assert_eq!(
            block.header.proof_score, best,
            "block {} must carry the lower of the two best scores",
            block.header.height
        );
        assert_eq!(block.header.miner_id, winner.miner_id());
        judged += 1;
    }
    assert!(
        judged >= 3,
        "only {judged} contested epochs; node log:\n{log}"
    );
    let won = counter(&status(&a), "blocksAccepted") + counter(&status(&b), "blocksAccepted");
    assert!(won >= 4, "accepted blocks are credited to their miners");
    drop((a, b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_miner_follows_a_node_restart_without_restarting() {
    let mut node = DevnetNode::start(NodeOptions::default()).unwrap();
    let (home, _key) = miner_home(1 << 11).unwrap();
    let miner = start_miner(home, &node);
    let pid = miner.pid();
    let s = wait_status(&miner, "a first block", SLOW, |s| {
        counter(s, "blocksAccepted") >= 1
    });
    let before = counter(&s, "blocksAccepted");
    node.kill();
    let s = wait_status(&miner, "the link to go down", SLOW, |s| {
        s["node"]["state"] != "connected"
    });
    assert!(
        !s["node"]["lastError"].as_str().unwrap_or("").is_empty(),
        "{s:#}"
    );
    node.restart().unwrap();
    wait_status(&miner, "mining to resume", SLOW, |s| {
        s["node"]["state"] == "connected" && counter(s, "blocksAccepted") > before
    });
    assert_eq!(miner.pid(), pid, "the daemon itself never restarted");
    // The resumed chain is still one valid chain.
    let (mut client, epoch) = WirePeer::handshaken(node.addr(), DEVNET).await.unwrap();
    validate_chain(&fetch_chain(&mut client, epoch.tip_hash).await.unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_another_network_is_refused() {
    let node = DevnetNode::start(NodeOptions {
        network_id: "spacetime-other-net".into(),
        ..NodeOptions::default()
    })
    .unwrap();
    let (home, _key) = miner_home(1 << 10).unwrap();
    let miner = start_miner(home, &node);
    let s = wait_status(&miner, "the refusal in the status", SLOW, |s| {
        s["node"]["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("spacetime-other-net"))
    });
    assert_ne!(s["node"]["state"], "connected");
    assert_eq!(counter(&s, "challengesReceived"), 0);
    assert_eq!(counter(&s, "proofsSubmitted"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_sent_to_the_node_is_mined_into_a_block() {
    let node = DevnetNode::start(NodeOptions::default()).unwrap();
    let (home, key) = miner_home(1 << 11).unwrap();
    let miner = start_miner(home, &node);
    wait_status(&miner, "a first block", SLOW, |s| {
        counter(s, "blocksAccepted") >= 1
    });
    let sender = MinerKey::generate();
    let mut tx = Transaction {
        version: 1,
        sender: sender.miner_id(),
        recipient: MinerKey::generate().miner_id(),
        amount: 42,
        nonce: 0,
        fee: 3,
        signature: [0; 64],
    };
    tx.sign(&sender);
    let (mut client, _) = WirePeer::handshaken(node.addr(), DEVNET).await.unwrap();
    client.send(&Message::Transaction(tx)).await.unwrap();
    let deadline = Instant::now() + SLOW;
    let block = loop {
        assert!(
            Instant::now() < deadline,
            "not mined; node log:\n{}",
            node.log()
        );
        let accepted = client
            .recv_until(SLOW, |m| matches!(m, Message::BlockAccepted { .. }))
            .await
            .unwrap();
        if let Message::BlockAccepted { hash, .. } = accepted {
            let block = fetch_block(&mut client, hash).await.unwrap();
            if block.transactions.contains(&tx) {
                break block;
            }
        }
    };
    assert_eq!(block.header.miner_id, key.miner_id());
    let (_, epoch) = WirePeer::handshaken(node.addr(), DEVNET).await.unwrap();
    validate_chain(&fetch_chain(&mut client, epoch.tip_hash).await.unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minerd_devnet_mines_on_its_own() {
    let miner =
        Minerd::start_with(MinerdOptions::fast_devnet(&["plotScanIntervalSeconds=1"])).unwrap();
    let s = wait_status(&miner, "a block on the embedded devnet", SLOW, |s| {
        counter(s, "blocksAccepted") >= 1
    });
    assert_eq!(s["node"]["state"], "connected");
    assert_eq!(s["networkId"], DEVNET);
    assert!(
        s["plots"]["valid"].as_u64().unwrap_or(0) >= 1,
        "a plot was made: {s:#}"
    );
    assert!(miner.log().contains("block won: height"));
    // The plot it made is in the plot directory and belongs to the miner's key.
    let plot = miner.home.plot_dir().join("devnet.plot");
    assert!(PlotFile::open(&plot).is_ok());
}
