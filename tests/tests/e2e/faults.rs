//! Faults, end to end with real processes on loopback (issue 10, item 3): a node killed and
//! restarted 50 times, nodes that misbehave in every way the protocol can be broken, plots
//! damaged under a mining daemon, a daemon killed while plotting, and a disk that fills
//! during plotting. Every wait is bounded; backoffs are the shortest the config allows.

use std::path::Path;
use std::time::{Duration, Instant};

use e2e::devnet::{handshake, WirePeer};
use e2e::mining::{add_plot, miner_args, miner_home, DevnetNode, NodeOptions};
use e2e::{wait_until, Home, Minerd, MinerdOptions};
use serde_json::Value;
use spacetime::plot::{check_plot, CheckMode, PlotFile};
use spacetime::wire::Message;
use tokio::net::TcpListener;

/// Bound for anything that takes a few epochs or backoffs on a loaded 2-core machine.
const SLOW: Duration = Duration::from_secs(60);

fn status(d: &Minerd) -> Value {
    d.minerctl_json(&["status", "--json"])
        .unwrap_or_else(|e| panic!("status: {e:#}\nlog:\n{}", d.log()))
}

/// Polls the status until `cond` holds; panics with the status and the log after `timeout`.
fn wait_status(d: &Minerd, what: &str, timeout: Duration, cond: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let s = status(d);
        if cond(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; status: {s:#}\nlog:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn counter(s: &Value, name: &str) -> u64 {
    s["counters"][name].as_u64().unwrap_or(0)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, Iterator::count)
}

/// The daemon's `spacetime_miner_runtime_tasks` from its metrics endpoint.
fn runtime_tasks(metrics: &str) -> f64 {
    let text = crate::metrics::http_get(metrics, "/metrics", None).1;
    crate::metrics::sample(&text, "spacetime_miner_runtime_tasks")
        .unwrap_or_else(|| panic!("no task gauge in\n{text}"))
}

fn metrics_address(d: &Minerd) -> String {
    let line = d
        .process()
        .wait_for_line("metrics listening on http://", Duration::from_secs(20))
        .unwrap();
    line.split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap()
        .to_owned()
}

/// The node (a real `minerd devnet-node` process) is SIGKILLed and restarted on the same
/// port and chain 50 times in a row. Each time the miner reconnects by itself and mines
/// again (the new incarnation accepts a proof from it), and afterwards the daemon holds no
/// more descriptors, threads or runtime tasks than after the first connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_miner_survives_50_node_restarts_without_leaking() {
    const RESTARTS: usize = 50;
    let mut node = DevnetNode::start(NodeOptions {
        epoch_ms: 300,
        ..NodeOptions::default()
    })
    .unwrap();
    let (home, _key) = miner_home(1 << 11).unwrap();
    let mut args = miner_args(node.addr());
    args.extend(["--set".into(), "metricsAddress=127.0.0.1:0".into()]);
    let miner = Minerd::start_in(
        home,
        MinerdOptions {
            args,
            ..Default::default()
        },
    )
    .unwrap();
    let metrics = metrics_address(&miner);
    let pid = miner.pid();
    let proofs = |node: &DevnetNode| node.log().matches("proof accepted").count();
    let mined = |node: &DevnetNode, before: usize| wait_until(SLOW, || proofs(node) > before);
    assert!(mined(&node, 0), "no first proof:\n{}", miner.log());
    // Once more, so that everything lazily started (scan threads, caches) exists.
    node.restart().unwrap();
    assert!(mined(&node, proofs(&node)), "{}", miner.log());
    let (fds, tasks, thr) = (open_fds(pid), runtime_tasks(&metrics), threads(pid));

    let started = Instant::now();
    for round in 1..=RESTARTS {
        let before = proofs(&node);
        node.restart().unwrap();
        assert!(
            mined(&node, before),
            "round {round}: the miner did not mine again\nminer log:\n{}",
            miner.log()
        );
    }
    let elapsed = started.elapsed();
    assert_eq!(miner.pid(), pid, "the daemon never restarted");
    // The last session's handshake and scan may still be settling: wait (bounded) for the
    // counts to come back. One connection's worth of slack; a leak of one per reconnect
    // would be 50. The blocking pool grows and shrinks on its own, hence the thread slack.
    let mut now = (0, 0.0, 0);
    let settled = wait_until(Duration::from_secs(15), || {
        now = (open_fds(pid), runtime_tasks(&metrics), threads(pid));
        now.0 <= fds + 2 && now.1 <= tasks + 2.0 && now.2 <= thr + 8
    });
    eprintln!(
        "{RESTARTS} restarts in {elapsed:?}: descriptors {fds} -> {}, runtime tasks {tasks} -> {}, threads {thr} -> {}",
        now.0, now.1, now.2
    );
    assert!(
        settled,
        "leak: descriptors {fds} -> {}, tasks {tasks} -> {}, threads {thr} -> {}",
        now.0, now.1, now.2
    );
    let s = status(&miner);
    assert_eq!(s["node"]["state"], "connected", "{s:#}");
}

/// What a fake node does with one connection from the miner.
#[derive(Debug, Clone, Copy)]
enum Misbehaviour {
    /// After the handshake, a well-framed message whose payload does not decode.
    Garbage,
    /// After the handshake, a length prefix beyond every limit.
    Oversized,
    /// After the handshake, the start of a frame, then the close.
    Truncated,
    /// After the handshake, a frame of a type the protocol does not have.
    UnknownType,
    /// A handshake that names another network.
    WrongNetwork,
    /// Accepts and says nothing.
    Silence,
    /// A correct node for a moment, then a clean close.
    Good,
}

impl Misbehaviour {
    /// What the miner's status must say afterwards.
    fn reported_as(self) -> &'static str {
        match self {
            Misbehaviour::Garbage => "malformed data from the node",
            Misbehaviour::Oversized => "frame length",
            Misbehaviour::Truncated => "truncated frame",
            Misbehaviour::UnknownType => "unknown message type",
            Misbehaviour::WrongNetwork => "node is on network",
            Misbehaviour::Silence => "handshake timed out",
            Misbehaviour::Good => "node closed the connection",
        }
    }
}

/// The node side of the handshake, as `network`; returns the miner's answer (HandshakeAck,
/// or Error when it refuses).
async fn node_handshake(peer: &mut WirePeer, network: &str) -> Message {
    let limit = Duration::from_secs(10);
    let hello = peer.recv(limit).await.unwrap();
    assert!(matches!(hello, Message::Handshake(_)), "{hello:?}");
    peer.send(&handshake(2, network)).await.unwrap();
    peer.send(&Message::HandshakeAck).await.unwrap();
    peer.recv(limit).await.unwrap()
}

/// [`node_handshake`] that the miner must accept.
async fn answer_handshake(peer: &mut WirePeer, network: &str) {
    let ack = node_handshake(peer, network).await;
    assert!(matches!(ack, Message::HandshakeAck), "{ack:?}");
}

async fn misbehave(stream: tokio::net::TcpStream, how: Misbehaviour) {
    let mut peer = WirePeer::from_stream(stream).unwrap();
    let after = match how {
        Misbehaviour::Silence => {
            // Hold the connection until the miner gives up on the handshake.
            let _ = peer.until_closed(Duration::from_secs(20)).await;
            return;
        }
        Misbehaviour::WrongNetwork => {
            let answer = node_handshake(&mut peer, "spacetime-some-other-net").await;
            assert!(matches!(answer, Message::Error(_)), "{answer:?}");
            None
        }
        Misbehaviour::Good => {
            answer_handshake(&mut peer, e2e::devnet::DEVNET).await;
            // Close cleanly: a restart, not a fault.
            return;
        }
        Misbehaviour::Garbage => Some(vec![2, 0, 0, 0, 0x41, 0]),
        Misbehaviour::Oversized => Some(vec![0xFF, 0xFF, 0xFF, 0x7F, 0x42]),
        Misbehaviour::Truncated => Some(vec![100, 0, 0, 0, 0x04, 1, 2, 3]),
        Misbehaviour::UnknownType => Some(vec![1, 0, 0, 0, 0x99]),
    };
    if let Some(bytes) = after {
        answer_handshake(&mut peer, e2e::devnet::DEVNET).await;
        peer.send_raw(&bytes).await.unwrap();
        if matches!(how, Misbehaviour::Truncated) {
            return;
        }
    }
    // The miner answers Error and closes; read until it does.
    let _ = peer.until_closed(Duration::from_secs(10)).await;
}

/// A node that breaks the protocol in each way in turn (a raw TCP peer on loopback): the
/// miner logs each fault, reports it in its status, backs off (the pauses after faults in
/// a row grow) and keeps serving its API throughout; after the faults a correct node gets
/// a normal session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_misbehaving_node_is_logged_reported_and_backed_off_from() {
    use Misbehaviour::*;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (home, _key) = miner_home(1 << 10).unwrap();
    let miner = Minerd::start_in(
        home,
        MinerdOptions {
            args: miner_args(addr),
            ..Default::default()
        },
    )
    .unwrap();
    let plan = [
        Truncated,
        Garbage,
        Oversized,
        Good,
        UnknownType,
        WrongNetwork,
        Silence,
    ];
    let mut accepted_at = Vec::new();
    for how in plan {
        let (stream, _) = tokio::time::timeout(SLOW, listener.accept())
            .await
            .unwrap_or_else(|_| panic!("no connection for {how:?}\n{}", miner.log()))
            .unwrap();
        accepted_at.push(Instant::now());
        misbehave(stream, how).await;
        let expected = how.reported_as();
        let s = tokio::task::block_in_place(|| {
            wait_status(&miner, expected, SLOW, |s| {
                s["node"]["lastError"]
                    .as_str()
                    .is_some_and(|e| e.contains(expected))
            })
        });
        assert_ne!(s["node"]["state"], "connected", "{how:?}: {s:#}");
        assert!(miner.log().contains(expected), "{how:?} not logged");
    }
    // The first three faults came in a row: retry n waits at least half of 2^(n-1) s, so
    // the pause after the third (≥ 2 s, plus the 1 s the miner lingers after its Error) is
    // longer than after the first (a torn frame: no Error, at most 1 s).
    let gaps: Vec<Duration> = accepted_at.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps[2] > gaps[0], "no backoff: {gaps:?}");
    // The miner never stopped serving, and a correct node is mined on at once.
    let (stream, _) = tokio::time::timeout(SLOW, listener.accept())
        .await
        .unwrap()
        .unwrap();
    let mut node = WirePeer::from_stream(stream).unwrap();
    answer_handshake(&mut node, e2e::devnet::DEVNET).await;
    tokio::task::block_in_place(|| {
        wait_status(&miner, "the good session", SLOW, |s| {
            s["node"]["state"] == "connected"
        })
    });
    assert!(miner.minerctl_ok(&["list-plots"]).is_ok());
}

/// The state word of the plot whose file is `path`.
fn plot_state(d: &Minerd, path: &Path) -> String {
    let plots = d.minerctl_json(&["list-plots", "--json"]).unwrap();
    plots
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["filePath"].as_str() == path.to_str())
        .map_or_else(
            || "unregistered".into(),
            |p| p["state"].as_str().unwrap().to_owned(),
        )
}

/// Three of four farmed plots are damaged under a mining daemon: one truncated, one
/// overwritten with other bytes, one deleted. Each is marked (corrupted or missing),
/// excluded from the farm and reported; the daemon keeps mining with the fourth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plots_damaged_while_mining_are_marked_excluded_and_mining_goes_on() {
    let node = DevnetNode::start(NodeOptions::default()).unwrap();
    let (home, key) = miner_home(1 << 11).unwrap();
    let dir = home.plot_dir();
    let plots: Vec<_> = (2..=4)
        .map(|seed| add_plot(&dir, &key, 1 << 11, seed).unwrap())
        .collect();
    let miner = Minerd::start_in(
        home,
        MinerdOptions {
            args: miner_args(node.addr()),
            ..Default::default()
        },
    )
    .unwrap();
    tokio::task::block_in_place(|| {
        wait_status(&miner, "4 valid plots and a proof", SLOW, |s| {
            s["plots"]["valid"] == 4 && counter(s, "proofsSubmitted") >= 1
        })
    });
    let pid = miner.pid();
    // Truncated to half, overwritten with zeros (same size), deleted.
    let (truncated, overwritten, deleted) = (&plots[0], &plots[1], &plots[2]);
    let len = std::fs::metadata(truncated).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(truncated)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    std::fs::write(overwritten, vec![0u8; len as usize]).unwrap();
    std::fs::remove_file(deleted).unwrap();
    let before = counter(&status(&miner), "proofsSubmitted");
    let s = tokio::task::block_in_place(|| {
        wait_status(&miner, "the damage to be noticed", SLOW, |s| {
            s["plots"]["valid"] == 1
                && s["plots"]["corrupted"] == 2
                && s["plots"]["missing"] == 1
                && counter(s, "proofsSubmitted") > before + 1
        })
    });
    assert_eq!(miner.pid(), pid, "the daemon survived: {s:#}");
    assert_eq!(plot_state(&miner, truncated), "corrupted");
    assert_eq!(plot_state(&miner, overwritten), "corrupted");
    assert_eq!(plot_state(&miner, deleted), "missing");
    let listed = miner.minerctl_json(&["list-plots", "--json"]).unwrap();
    for p in listed.as_array().unwrap() {
        if p["state"] != "valid" {
            assert!(
                !p["problem"].as_str().unwrap_or("").is_empty(),
                "a damaged plot says what is wrong: {p:#}"
            );
        }
    }
    // Mining goes on with the intact plot only.
    assert_eq!(s["node"]["state"], "connected");
}

/// Whether `dir` holds a temporary of an interrupted write.
fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(".tmp-"))
                .collect()
        })
        .unwrap_or_default()
}

/// `minerd` is SIGKILLed while plotting, 20 times at different moments. After each kill
/// the metadata parses; at each start the temporaries are gone; a plot is registered valid
/// only if its file is complete and passes a full check.
#[test]
fn minerd_killed_while_plotting_never_registers_a_partial_plot() {
    const KILLS: u64 = 20;
    let mut home = Home::new().unwrap();
    for round in 0..KILLS {
        let d = Minerd::start_in(home, MinerdOptions::default()).unwrap();
        let data = d.home.data_dir();
        let plot_dir = d.home.plot_dir();
        assert!(
            temporaries(&plot_dir).is_empty() && temporaries(&data).is_empty(),
            "round {round}: temporaries survived a start: {:?} {:?}",
            temporaries(&plot_dir),
            temporaries(&data)
        );
        // What is registered valid is whole.
        let listed = d.minerctl_json(&["list-plots", "--json"]).unwrap();
        for p in listed.as_array().unwrap() {
            if p["state"] == "valid" {
                let path = p["filePath"].as_str().unwrap();
                let plot = PlotFile::open(Path::new(path)).unwrap();
                let report = check_plot(
                    &plot,
                    None,
                    &CheckMode::Full { miner_pk: None },
                    &mut |_| {},
                    &std::sync::atomic::AtomicBool::new(false),
                )
                .unwrap();
                assert!(report.plot_ok(), "round {round}: {path} registered but bad");
            }
        }
        // A small job that may finish and a large one that will not, then the kill at a
        // moment that moves on every round (from at once to well into the large job).
        let name = format!("k{round}.plot");
        let small = d.minerctl(&[
            "create-plot",
            "--leaves",
            "16384",
            "--name",
            &name,
            "--no-wait",
        ]);
        assert!(small.status.success(), "{small:?}");
        crate::plots::start_large_job(&d);
        std::thread::sleep(Duration::from_millis(37 * round));
        home = d.kill_keep_home();
        let meta = home.data_dir().join("plots_metadata.json");
        if meta.exists() {
            spacetime::metadata::load(&meta)
                .unwrap_or_else(|e| panic!("round {round}: metadata does not parse: {e}"));
        }
        if round == 0 {
            // Temporaries of the daemon's own files, as a crash mid-write leaves them.
            for name in [
                ".plots_metadata.json.tmp-AbCd1234",
                ".counters.json.tmp-x1y2z3w4",
            ] {
                std::fs::write(home.data_dir().join(name), b"{").unwrap();
            }
        }
    }
}

/// The disk fills during plotting (the daemon may write no file beyond 8 MiB: writes past
/// it fail as on a full disk). The job fails with a clean error, nothing half-written is
/// left, nothing is registered, and the daemon goes on: a plot that fits is made after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_fills_during_plotting_fails_the_job_cleanly() {
    let d = Minerd::start_with(MinerdOptions {
        file_size_limit: Some(8 << 20),
        ..Default::default()
    })
    .unwrap();
    // 2^20 leaves: a 32 MiB plot.
    let out = d.minerctl(&[
        "create-plot",
        "--leaves",
        "1048576",
        "--cache-levels",
        "0",
        "--name",
        "big.plot",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the job cannot succeed: {out:?}");
    assert!(
        stderr.contains("File too large") || stderr.contains("No space left"),
        "a clean error names the cause: {stderr}\nlog:\n{}",
        d.log()
    );
    let plot_dir = d.home.plot_dir();
    let left: Vec<_> = std::fs::read_dir(&plot_dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "nothing half-written is left: {left:?}");
    let listed = d.minerctl_json(&["list-plots", "--json"]).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(0), "{listed}");
    // The daemon is fine, and a plot that fits is made.
    let small = d.minerctl(&["create-plot", "--leaves", "16384", "--name", "ok.plot"]);
    assert!(small.status.success(), "{small:?}\n{}", d.log());
    assert!(plot_dir.join("ok.plot").exists());
}
