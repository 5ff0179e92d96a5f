//! Farms on several disks: `plotDirectories`, plot placement, every directory scanned each
//! epoch and proofs from either; the farm-size warning of a farm larger than the machine
//! can score in an epoch.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use e2e::mining::{miner_args, DevnetNode, NodeOptions};
use e2e::{Home, Minerd, MinerdOptions};
use serde_json::Value;
use spacetime::keys::MinerKey;
use spacetime::plot::{create_plot, CacheLevels, CreatePlot};
use spacetime_proto::pb;
use spacetime_proto::pb::watch_events_response::Event as E;

use super::mining::{status, wait_status};

/// Generous bound for a few epochs on a loaded 2-core machine.
const SLOW: Duration = Duration::from_secs(90);

fn start(home: Home, node: &DevnetNode, yaml: String, extra: &[&str]) -> Minerd {
    let mut args = miner_args(node.addr());
    args.extend(extra.iter().map(|s| s.to_string()));
    Minerd::start_in(
        home,
        MinerdOptions {
            args,
            config_yaml: Some(yaml),
            ..Default::default()
        },
    )
    .unwrap()
}

/// `minerctl create-plot ARGS --json`: the plot of its last line (`{"type":"finished"}`).
fn create_plot_cli(miner: &Minerd, args: &[&str]) -> Value {
    let mut all = vec!["create-plot"];
    all.extend_from_slice(args);
    all.push("--json");
    let out = miner.minerctl_ok(&all).unwrap();
    let last: Value = serde_json::from_str(out.lines().last().unwrap_or_default()).unwrap();
    assert_eq!(last["type"], "finished", "{out}");
    last["plot"].clone()
}

fn dir_entry<'a>(s: &'a Value, dir: &Path) -> &'a Value {
    s["plotDirectories"]
        .as_array()
        .and_then(|a| a.iter().find(|d| d["path"] == dir.display().to_string()))
        .unwrap_or_else(|| panic!("{} not in the status: {s:#}", dir.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plots_in_two_directories_are_both_farmed_and_either_gives_proofs() {
    let node = DevnetNode::start(NodeOptions::default()).unwrap();
    let home = Home::new().unwrap();
    let (a, b) = (home.path().join("disk-a"), home.path().join("disk-b"));
    let yaml = format!(
        "plotDirectories: [\"{}\", \"{}\"]\n",
        a.display(),
        b.display()
    );
    let miner = start(home, &node, yaml, &[]);
    // `minerd config` shows the list and where it came from.
    let config = miner.home.minerd_output(&["config"], &[]);
    let config = String::from_utf8_lossy(&config.stdout);
    assert!(
        config.contains(&format!(
            "plotDirectories: [\"{}\", \"{}\"]",
            a.display(),
            b.display()
        )),
        "{config}"
    );
    // Both directories exist, on one device here (they share its reader).
    let s = status(&miner);
    let (da, db) = (dir_entry(&s, &a), dir_entry(&s, &b));
    assert!(da["configured"].as_bool().unwrap() && db["configured"].as_bool().unwrap());
    assert!(
        da["device"].as_u64().is_some() && da["device"] == db["device"],
        "{s:#}"
    );

    // One plot by default placement (equal free space: the first listed), one by --output.
    let placed = create_plot_cli(&miner, &["--leaves", "4096"]);
    let placed_path = placed["filePath"].as_str().unwrap().to_owned();
    assert!(Path::new(&placed_path).starts_with(&a), "{placed_path}");
    let out = b.join("second.plot");
    let second = create_plot_cli(
        &miner,
        &["--leaves", "4096", "--output", out.to_str().unwrap()],
    );
    assert_eq!(second["filePath"], out.display().to_string());
    let ids: HashSet<String> = [&placed, &second]
        .iter()
        .map(|p| p["plotId"].as_str().unwrap().to_owned())
        .collect();
    let verbose = miner.minerctl_ok(&["list-plots", "-v"]).unwrap();
    for d in [&a, &b] {
        let line = format!("directory: {}", d.display());
        assert!(
            verbose
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>().join(" ") == line),
            "{verbose}"
        );
    }

    // Every epoch scans both directories: their leaves in the last scan.
    let (_client, mut events) = miner.client_and_events().await.unwrap();
    let s = wait_status(&miner, "a scan of both directories", SLOW, |s| {
        s["lastScan"]["leavesFarmed"] == 8192
            && dir_entry(s, &a)["leavesScanned"] == 4096
            && dir_entry(s, &b)["leavesScanned"] == 4096
    });
    for d in [&a, &b] {
        let e = dir_entry(&s, d);
        assert_eq!(
            (e["plots"].as_u64(), e["valid"].as_u64()),
            (Some(1), Some(1))
        );
        assert_eq!(e["leaves"], 4096);
        assert!(e["freeBytes"].as_u64().is_some_and(|f| f > 0), "{s:#}");
    }
    let text = miner.minerctl_ok(&["status"]).unwrap();
    assert!(text.contains("plot directories:"), "{text}");
    assert!(
        text.contains(&format!("{}: 1 valid of 1 plots, 4096 leaves", b.display())),
        "{text}"
    );

    // Proofs come from the plot with the best leaf of the epoch, on either disk: within a
    // few dozen epochs each plot has had the best one (each does half the time).
    let mut from = HashSet::new();
    let waited = tokio::time::timeout(SLOW, async {
        while from.len() < 2 {
            let Some(ev) = events.message().await.unwrap() else {
                break;
            };
            if let Some(E::ProofFound(p)) = ev.event {
                from.insert(p.plot_id);
            }
        }
    })
    .await;
    assert!(
        waited.is_ok() && from == ids,
        "proofs came from {from:?}, plots {ids:?}\nlog:\n{}",
        miner.log()
    );
}

/// The next FarmSizeChanged event of the feed.
async fn next_farm_size_change(
    events: &mut tonic::Streaming<pb::WatchEventsResponse>,
) -> pb::FarmSizeChanged {
    tokio::time::timeout(SLOW, async {
        loop {
            let ev = events
                .message()
                .await
                .unwrap()
                .expect("the feed stays open");
            if let Some(E::FarmSizeChanged(c)) = ev.event {
                return c;
            }
        }
    })
    .await
    .expect("a FarmSizeChanged event")
}

/// A plot of `leaves` leaves for `key` in `dir`, hashed on every core (with its cache).
fn big_plot(dir: &Path, key: &MinerKey, leaves: u64) {
    std::fs::create_dir_all(dir).unwrap();
    create_plot(
        &CreatePlot {
            path: dir.join("big.plot"),
            miner_pk: key.public_key(),
            seed: [0x42; 32],
            leaf_count: leaves,
            cache: CacheLevels::Default,
            threads: None,
        },
        &mut |_| {},
        &AtomicBool::new(false),
    )
    .unwrap();
}

/// A farm larger than the machine scores in an epoch: 2^23 leaves (256 MiB) against epochs
/// of 100 ms, which leave well under 0.1 s for the scan, so even 80 M leaves/s (several
/// times what a 2-core machine hashes) cannot score it. Warned in the log, the status,
/// `minerctl status` and the event feed; cleared once the farm fits again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_farm_larger_than_an_epoch_can_score_is_reported_and_the_warning_clears() {
    const BIG: u64 = 1 << 23;
    let node = DevnetNode::start(NodeOptions {
        epoch_ms: 100,
        ..Default::default()
    })
    .unwrap();
    let home = Home::new().unwrap();
    let key = MinerKey::create(&home.data_dir().join("miner_key.dat")).unwrap();
    let dir = home.path().join("disk");
    big_plot(&dir, &key, BIG);
    let yaml = format!("plotDirectories: [\"{}\"]\n", dir.display());
    let miner = start(home, &node, yaml, &["--no-auto-start"]);
    let (_client, mut events) = miner.client_and_events().await.unwrap();
    miner.minerctl_ok(&["start"]).unwrap();

    let raised = next_farm_size_change(&mut events).await;
    let raised = raised.warning.expect("raised, with its figures");
    assert_eq!(raised.leaves_farmed, BIG);
    assert!(raised.leaves_scanned < BIG);

    let s = wait_status(&miner, "the farm-size warning", SLOW, |s| {
        !s["farmSizeWarning"].is_null()
    });
    let w = &s["farmSizeWarning"];
    assert_eq!(w["leavesFarmed"], BIG, "{s:#}");
    assert_eq!(w["leavesWanted"], BIG, "{s:#}");
    let scanned = w["leavesScanned"].as_u64().unwrap();
    let capacity = w["capacityLeaves"].as_u64().unwrap();
    assert!(scanned < BIG && capacity < BIG, "{w:#}");
    assert!(w["epochsShort"].as_u64().unwrap() >= 2, "{w:#}");
    assert!(w["scanWindowMs"].as_u64().unwrap() < 100, "{w:#}");
    let text = miner.minerctl_ok(&["status"]).unwrap();
    assert!(
        text.contains("WARNING:") && text.contains("farm larger than this machine"),
        "{text}"
    );
    assert!(
        miner
            .log()
            .contains("the farm is larger than this machine can score in an epoch"),
        "{}",
        miner.log()
    );
    // A farm that fits: the big plot goes, a small one comes; the warning clears.
    create_plot_cli(&miner, &["--leaves", "4096"]);
    let plots = miner.minerctl_json(&["list-plots", "--json"]).unwrap();
    let big = plots
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["leafCount"] == BIG)
        .unwrap()["plotId"]
        .as_str()
        .unwrap()
        .to_owned();
    miner
        .minerctl_ok(&["delete-plot", &big, "--force"])
        .unwrap();
    let cleared = next_farm_size_change(&mut events).await;
    assert!(cleared.warning.is_none(), "{cleared:?}");
    assert!(status(&miner)["farmSizeWarning"].is_null());
}
