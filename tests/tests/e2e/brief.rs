//! The user's brief (the reference miner's README), command by command, against a real
//! `minerd`: what a user types and what they see, in text and with `--json`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use e2e::{binary, wait_until, Home, Minerd, MinerdOptions};
use serde_json::Value;

const STOP: Duration = Duration::from_secs(20);

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: Output, what: &str) -> String {
    assert!(o.status.success(), "{what}: {o:?}\nstderr: {}", err(&o));
    text(&o)
}

/// The last line of `--json` lines output, parsed.
fn last_json_line(s: &str) -> Value {
    let line = s.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {s}"))
}

fn plots_json(d: &Minerd) -> Vec<Value> {
    match d.minerctl_json(&["list-plots", "--json"]).unwrap() {
        Value::Array(v) => v,
        other => panic!("not an array: {other}"),
    }
}

/// `minerctl create-plot` as typed: 1 GB by default, the job id first. (Writing the whole
/// gigabyte would only slow CI down: the job is cancelled once its first line is seen.)
#[test]
fn create_plot_without_arguments_is_a_1_gb_plot_and_prints_its_job_first() {
    let d = Minerd::start().unwrap();
    let mut child = Command::new(binary("minerctl"))
        .arg("--socket")
        .arg(d.home.socket())
        .arg("create-plot")
        .env_clear()
        .env("HOME", d.home.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    // Kept open until minerctl exits: closing it would end minerctl quietly (exit 0).
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    reader.read_line(&mut first).unwrap();
    assert!(first.starts_with("plot job "), "{first}");
    assert!(
        first.contains("(31250000 leaves, 1.00 GB"),
        "1 GB = 10^9 bytes = 31 250 000 leaves: {first}"
    );
    let job = first["plot job ".len()..]
        .split(':')
        .next()
        .unwrap()
        .to_owned();
    // A plot being created is a job: delete-plot points to cancel-job.
    let out = d.minerctl(&["delete-plot", &job, "--force"]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert!(
        err(&out).contains(&format!("minerctl cancel-job {job}")),
        "{}",
        err(&out)
    );
    ok(d.minerctl(&["cancel-job", &job]), "cancel-job");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(err(&out).contains("cancelled"), "{}", err(&out));
    assert!(plots_json(&d).is_empty());
}

/// `create-plot --size 10 --cache` scaled down to 0.002 GB, and `--size 5 --output
/// my_plot.plot` scaled down, with a relative path outside the plot directory: registered,
/// farmed and still there after a restart.
#[test]
fn create_plot_sizes_cache_and_output_as_in_the_brief() {
    let d = Minerd::start().unwrap();
    let out = ok(
        d.minerctl(&["create-plot", "--size", "0.002", "--cache"]),
        "--size 0.002 --cache",
    );
    assert!(out.starts_with("plot job "), "{out}");
    assert!(out.contains("(62500 leaves, 2.0 MB"), "{out}");
    assert!(out.contains("plot created: "), "{out}");
    assert!(out.contains("cache in use: yes"), "{out}");
    let plot = &plots_json(&d)[0];
    assert_eq!(plot["leafCount"], 62_500);
    assert!(Path::new(plot["cacheFilePath"].as_str().unwrap()).exists());

    // -s and -o, a relative output path, JSON lines.
    let cwd = tempfile::tempdir().unwrap();
    let out = d.minerctl_in(
        cwd.path(),
        &["create-plot", "-s", "0.001", "-o", "my_plot.plot", "--json"],
    );
    let out = ok(out, "-o my_plot.plot");
    let first: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(first["type"], "started");
    assert!(first["job"]["jobId"].as_str().is_some());
    let done = last_json_line(&out);
    assert_eq!(done["type"], "finished");
    let want = std::fs::canonicalize(cwd.path())
        .unwrap()
        .join("my_plot.plot");
    assert_eq!(
        std::fs::canonicalize(done["plot"]["filePath"].as_str().unwrap()).unwrap(),
        want
    );
    assert_eq!(done["plot"]["state"], "valid");
    // Units work too, and --cache-levels 0 is remembered.
    let out = ok(
        d.minerctl(&[
            "create-plot",
            "--size",
            "64KiB",
            "--cache-levels",
            "0",
            "--json",
        ]),
        "--cache-levels 0",
    );
    let nocache = last_json_line(&out)["plot"].clone();
    assert_eq!(nocache["leafCount"], 2048);
    assert_eq!(nocache["cacheDisabled"], true);
    assert_eq!(nocache["cacheFilePath"], "");

    let home = d.stop_keep_home(STOP).unwrap();
    let d = Minerd::start_in(home, MinerdOptions::default()).unwrap();
    let plots = plots_json(&d);
    assert_eq!(plots.len(), 3, "{plots:#?}");
    let mine = plots
        .iter()
        .find(|p| p["filePath"].as_str().unwrap().ends_with("my_plot.plot"))
        .expect("the --output plot is registered after a restart");
    assert_eq!(mine["state"], "valid");
    let nocache = plots.iter().find(|p| p["leafCount"] == 2048).unwrap();
    assert_eq!(nocache["cacheDisabled"], true, "{nocache:#}");
    assert!(!Path::new(&format!("{}.cache", nocache["filePath"].as_str().unwrap())).exists());
}

/// `list-plots --verbose`, `delete-plot ID` refused on a pipe, done with `--force`, and the
/// unregistered file stays unregistered after a restart; `check-plot` takes a path.
#[test]
fn list_verbose_delete_with_confirmation_and_check_by_path() {
    let d = Minerd::start().unwrap();
    ok(
        d.minerctl(&["create-plot", "--size", "128KiB", "--name", "a.plot"]),
        "create",
    );
    let id = plots_json(&d)[0]["plotId"].as_str().unwrap().to_owned();
    ok(d.minerctl(&["check-plot", &id]), "check");

    let table = ok(d.minerctl(&["list-plots"]), "list-plots");
    assert!(table.starts_with("ID "), "{table}");
    assert!(table.contains(&id), "{table}");
    let verbose = ok(d.minerctl(&["list-plots", "--verbose"]), "--verbose");
    for field in [
        "merkle root:",
        "leaves:",
        "tree height:",
        "cache levels:",
        "created:",
        "last check:   passed",
    ] {
        assert!(verbose.contains(field), "{field} missing:\n{verbose}");
    }
    assert_eq!(text(&d.minerctl(&["list-plots", "-v"])), verbose);

    // check-plot with a path, registered or not.
    let path = d.home.plot_dir().join("a.plot");
    let out = ok(
        d.minerctl(&["check-plot", path.to_str().unwrap(), "--json"]),
        "check by path",
    );
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (r["ok"].clone(), r["plotId"].clone()),
        (Value::Bool(true), Value::String(id.clone()))
    );
    let outside = tempfile::tempdir().unwrap();
    let copy = outside.path().join("copy.plot");
    std::fs::copy(&path, &copy).unwrap();
    let out = ok(
        d.minerctl(&["check-plot", copy.to_str().unwrap()]),
        "unregistered file",
    );
    assert!(
        out.contains("OK") && out.contains("not registered"),
        "{out}"
    );
    assert_eq!(plots_json(&d).len(), 1);

    // delete-plot on a pipe: shown, refused, nothing removed.
    let out = d.minerctl(&["delete-plot", &id]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert!(err(&out).contains("This removes plot"), "{}", err(&out));
    assert!(err(&out).contains("--force"), "{}", err(&out));
    assert_eq!(plots_json(&d).len(), 1);
    // --force (JSON), then the file stays unregistered, across a restart.
    let r = d
        .minerctl_json(&["delete-plot", &id, "--force", "--json"])
        .unwrap();
    assert_eq!(r["plot"]["plotId"], id.as_str());
    assert!(path.exists());
    assert!(plots_json(&d).is_empty());
    let home = d.stop_keep_home(STOP).unwrap();
    let d = Minerd::start_in(home, MinerdOptions::default()).unwrap();
    // Give the directory scan a chance to (wrongly) pick it up again.
    std::thread::sleep(Duration::from_millis(200));
    assert!(plots_json(&d).is_empty(), "re-registered after restart");
    // -f with --delete-file removes the file too.
    ok(
        d.minerctl(&["create-plot", "--size", "64KiB", "--name", "b.plot"]),
        "create b",
    );
    let id = plots_json(&d)[0]["plotId"].as_str().unwrap().to_owned();
    let out = ok(
        d.minerctl(&["delete-plot", &id, "--delete-file", "-f"]),
        "delete-file",
    );
    assert!(out.contains("deleted "), "{out}");
    assert!(!d.home.plot_dir().join("b.plot").exists());
}

/// Kills the daemon recorded in a data directory's lock file when the test ends early.
struct KillOnDrop(PathBuf);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    }
}

/// `start --daemon` with no daemon running, `status`, `stop`, `stop --shutdown`.
#[test]
fn start_daemon_status_stop_and_shutdown() {
    let home = Home::new().unwrap();
    std::fs::create_dir_all(home.data_dir()).unwrap();
    // No node: mining waits for it, which is all this test needs.
    std::fs::write(home.data_dir().join("miner.yaml"), "nodePort: 1\n").unwrap();
    let _guard = KillOnDrop(home.data_dir().join("minerd.lock"));
    let ctl = |args: &[&str]| {
        Command::new(binary("minerctl"))
            .args(args)
            .env_clear()
            .env("HOME", home.path())
            .env("PATH", "/usr/bin:/bin")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = ctl(&["start"]);
    assert_eq!(out.status.code(), Some(69));
    assert!(
        err(&out).contains("minerctl start --daemon"),
        "{}",
        err(&out)
    );

    let out = ok(ctl(&["start", "--daemon"]), "start --daemon");
    assert!(
        out.contains("minerd started in the background (pid "),
        "{out}"
    );
    assert!(out.contains("minerd.log"), "{out}");
    assert!(home.data_dir().join("minerd.log").exists());
    assert!(home.data_dir().join("minerd.lock").exists());
    let out = ok(ctl(&["start", "-d"]), "start -d again");
    assert!(out.contains("already running"), "{out}");

    let status = ok(ctl(&["status"]), "status");
    for line in ["mining:", "this run:", "lifetime:", "expected to win:"] {
        assert!(status.contains(line), "{line}:\n{status}");
    }
    let out = ok(ctl(&["stop"]), "stop");
    assert!(out.contains("mining disabled"), "{out}");
    let s: Value = serde_json::from_str(&ok(ctl(&["status", "--json"]), "json")).unwrap();
    assert_eq!(s["miningEnabled"], false);
    assert_eq!(s["miningState"], "stopped");
    assert!(s["lifetimeCounters"]["challengesReceived"].is_u64());
    let out = ok(ctl(&["stop", "--shutdown"]), "stop --shutdown");
    assert!(out.contains("minerd has shut down"), "{out}");
    assert!(wait_until(STOP, || !home
        .data_dir()
        .join("minerd.lock")
        .exists()));
    assert_eq!(ctl(&["status"]).status.code(), Some(69));
}

/// The lifetime counters survive a restart; status shows the expected time to win and the
/// event feed the scan's progress.
#[test]
fn lifetime_counters_survive_a_restart() {
    let opts = MinerdOptions::fast_devnet(&["plotScanIntervalSeconds=1"]);
    let d = Minerd::start_with(opts.clone()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let s = loop {
        let s = d.minerctl_json(&["status", "--json"]).unwrap();
        if s["counters"]["blocksAccepted"].as_u64().unwrap_or(0) >= 1
            && s["expectedTimeToWinMs"].is_u64()
            && s["lastScan"].is_object()
        {
            break s;
        }
        assert!(Instant::now() < deadline, "no block: {s:#}\n{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        s["lifetimeCounters"]["blocksAccepted"].as_u64()
            >= s["counters"]["blocksAccepted"].as_u64()
    );
    // The effective farm size: leaves scored in the last epoch against leaves farmed.
    let last = &s["lastScan"];
    let farmed = last["leavesFarmed"].as_u64().unwrap();
    assert!(farmed > 0, "{s:#}");
    assert!(last["leavesScanned"].as_u64().unwrap() <= farmed, "{s:#}");
    assert_eq!(last["finished"], true);
    let events = ok(d.minerctl(&["events", "--json", "-n", "40"]), "events");
    assert!(
        events
            .lines()
            .any(|l| l.contains("\"type\":\"epochScan\"") && l.contains("\"finished\":true")),
        "no scan report in the feed:\n{events}"
    );
    let text = ok(d.minerctl(&["status"]), "status");
    assert!(text.contains("effective farm:"), "{text}");
    assert!(text.contains("expected to win:     in "), "{text}");
    let home = d.stop_keep_home(STOP).unwrap();
    let before: Value = serde_json::from_str(
        &std::fs::read_to_string(home.data_dir().join("counters.json")).unwrap(),
    )
    .unwrap();
    let accepted = before["blocksAccepted"].as_u64().unwrap();
    assert!(accepted >= 1, "{before:#}");
    let d = Minerd::start_in(home, opts).unwrap();
    let s = d.minerctl_json(&["status", "--json"]).unwrap();
    assert!(
        s["lifetimeCounters"]["blocksAccepted"].as_u64().unwrap() >= accepted,
        "{s:#}"
    );
    // One snapshot: lifetime = earlier runs (persisted at shutdown) + this run.
    assert_eq!(
        s["lifetimeCounters"]["blocksAccepted"].as_u64().unwrap(),
        accepted + s["counters"]["blocksAccepted"].as_u64().unwrap(),
        "{s:#}"
    );
    let text = ok(d.minerctl(&["status"]), "status");
    assert!(text.contains("lifetime:"), "{text}");
}

/// `minerd --devnet` whose port is taken takes a free port and says so, then mines there.
#[test]
fn devnet_with_its_port_taken_takes_a_free_port_and_says_so() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let d = Minerd::start_with(MinerdOptions {
        args: vec![
            "--devnet".into(),
            "--set".into(),
            format!("devnet.listenPort={port}"),
            "--set".into(),
            "devnet.epochDurationSeconds=1".into(),
        ],
        ..Default::default()
    })
    .unwrap();
    let line = d
        .process()
        .wait_for_line(
            "the embedded devnet node listens on port",
            Duration::from_secs(30),
        )
        .unwrap();
    assert!(
        line.contains(&format!("devnet.listenPort {port} is taken")),
        "{line}"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = d.minerctl_json(&["status", "--json"]).unwrap();
        if s["node"]["state"] == "connected" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never connected: {s:#}\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(taken);
}
