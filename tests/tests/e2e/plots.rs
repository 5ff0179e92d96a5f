//! Plots through the API: create with streamed progress, list, show, check, delete, events,
//! directory pickup, duplicates and job cancellation.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use e2e::{list_files, wait_until, wait_until_async, Minerd, MinerdOptions};
use spacetime::plot::{create_plot, CacheLevels, CreatePlot};
use spacetime_proto::client::{get_status, MinerClient};
use spacetime_proto::pb;
use spacetime_proto::pb::create_plot_response::Kind;
use spacetime_proto::pb::watch_events_response::Event as E;

const LEAVES: u64 = 4096;

/// Creates a plot through the streaming call; returns the plot and the messages seen.
async fn create(
    c: &mut MinerClient,
    leaves: u64,
    name: &str,
) -> (pb::Plot, Vec<pb::CreatePlotResponse>) {
    let mut stream = c
        .create_plot(pb::CreatePlotRequest {
            leaf_count: leaves,
            file_name: name.into(),
            cache_levels: Some(4),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut msgs = Vec::new();
    while let Some(m) = stream.message().await.unwrap() {
        msgs.push(m);
    }
    let Some(Kind::Finished(plot)) = msgs.last().and_then(|m| m.kind.clone()) else {
        panic!("stream did not end with a plot: {msgs:?}");
    };
    (plot, msgs)
}

/// The plot `id` as `GetPlot` returns it.
async fn get(c: &mut MinerClient, id: &str) -> pb::Plot {
    c.get_plot(pb::GetPlotRequest {
        plot_id: id.to_owned(),
    })
    .await
    .unwrap()
    .into_inner()
    .plot
    .unwrap()
}

async fn list_plots(c: &mut MinerClient) -> Vec<pb::Plot> {
    c.list_plots(pb::ListPlotsRequest {})
        .await
        .unwrap()
        .into_inner()
        .plots
}

/// A daemon started with one `--set key=value` override.
fn start_setting(setting: &str) -> Minerd {
    Minerd::start_with(MinerdOptions {
        args: vec!["--set".into(), setting.into()],
        ..Default::default()
    })
    .unwrap()
}

/// Starts a plot job large enough to run for a while (`--no-wait`); returns its job id.
pub(crate) fn start_large_job(d: &Minerd) -> String {
    let job = d
        .minerctl_json(&[
            "create-plot",
            "--leaves",
            "16777216",
            "--cache-levels",
            "0",
            "--no-wait",
            "--json",
        ])
        .unwrap();
    // --json prints JSON lines; with --no-wait only the first: {"type":"started","job":…}.
    assert_eq!(job["type"], "started", "{job}");
    job["job"]["jobId"].as_str().unwrap().to_owned()
}

/// Whether `minerctl jobs --json` answers and lists a job for which `pred` holds.
pub(crate) fn any_job(d: &Minerd, pred: impl Fn(&serde_json::Value) -> bool) -> bool {
    d.minerctl_json(&["jobs", "--json"])
        .is_ok_and(|j| j.as_array().is_some_and(|a| a.iter().any(&pred)))
}

/// Writes a plot with the library, as a plotter outside the daemon would (one thread).
fn write_plot(path: PathBuf, miner_pk: [u8; 32], seed: u8, leaf_count: u64, cache: CacheLevels) {
    create_plot(
        &CreatePlot {
            path,
            miner_pk,
            seed: [seed; 32],
            leaf_count,
            cache,
            threads: Some(1),
        },
        &mut |_| {},
        &AtomicBool::new(false),
    )
    .unwrap();
}

fn state(p: &pb::Plot) -> pb::PlotState {
    pb::PlotState::try_from(p.state).unwrap()
}

#[tokio::test]
async fn create_list_show_check_and_delete() {
    let d = Minerd::start().unwrap();
    let mut c = d.client().await.unwrap();

    let (plot, msgs) = create(&mut c, LEAVES, "a.plot").await;
    let Some(Kind::Started(job)) = &msgs[0].kind else {
        panic!("first message is not `started`: {:?}", msgs[0]);
    };
    assert_eq!(job.job_id, plot.plot_id, "the job id becomes the plot id");
    let progress: Vec<&pb::PlotJobProgress> = msgs
        .iter()
        .filter_map(|m| match &m.kind {
            Some(Kind::Progress(p)) => Some(p),
            _ => None,
        })
        .collect();
    assert!(!progress.is_empty());
    assert_eq!(progress.last().unwrap().leaves_done, LEAVES);
    assert!(progress
        .windows(2)
        .all(|w| w[0].leaves_done <= w[1].leaves_done));
    assert_eq!(state(&plot), pb::PlotState::Valid);
    assert_eq!(plot.leaf_count, LEAVES);
    assert_eq!(plot.size_bytes, 121 + 32 * LEAVES);
    assert_eq!(plot.seed.len(), 32);
    assert!(plot.cache_in_use && plot.cache_file_path.ends_with("a.plot.cache"));

    // List and show, through the client and minerctl.
    let list = list_plots(&mut c).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].plot_id, plot.plot_id);
    let shown = d
        .minerctl_json(&["show-plot", &plot.plot_id[..8], "--json"])
        .unwrap();
    assert_eq!(shown["plotId"], plot.plot_id.as_str());
    assert_eq!(shown["state"], "valid");
    let table = d.minerctl_ok(&["list-plots"]).unwrap();
    assert!(
        table.contains(&plot.plot_id) && table.contains("valid"),
        "{table}"
    );

    // The metadata file has it, in the reference format.
    let meta = std::fs::read_to_string(d.home.data_dir().join("plots_metadata.json")).unwrap();
    let entries = spacetime::metadata::parse_metadata(&meta).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].plot_id.to_string(), plot.plot_id);

    // Check: sampled (client) and full (minerctl).
    let mut stream = c
        .check_plot(pb::CheckPlotRequest {
            plot_id: plot.plot_id.clone(),
            mode: Some(pb::check_plot_request::Mode::Sampled(pb::SampledCheck {
                samples: 64,
                seed: Some(1),
            })),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut report = None;
    while let Some(m) = stream.message().await.unwrap() {
        if let Some(pb::check_plot_response::Kind::Report(r)) = m.kind {
            report = Some(r);
        }
    }
    let report = report.unwrap();
    assert!(report.ok, "{report:?}");
    // 64 Merkle paths of an uncached 4096-leaf plot would read more than the whole plot:
    // the daemon runs the (stronger, no slower) full check instead.
    assert!(report.full, "{report:?}");
    assert_eq!(report.checked, LEAVES);
    let full = d
        .minerctl_json(&["check-plot", &plot.plot_id, "--full", "--json"])
        .unwrap();
    assert_eq!(full["ok"], true);
    assert_eq!(full["checked"], LEAVES);

    // Delete without the file: unregistered, file kept, and not re-registered by the scan.
    let r = c
        .delete_plot(pb::DeletePlotRequest {
            plot_id: plot.plot_id.clone(),
            delete_files: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.deleted_files.is_empty());
    assert!(d.home.plot_dir().join("a.plot").exists());
    assert!(list_plots(&mut c).await.is_empty());
    let err = c
        .get_plot(pb::GetPlotRequest {
            plot_id: plot.plot_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    // Delete with the file, via minerctl.
    let (b, _) = create(&mut c, LEAVES, "b.plot").await;
    let out = d
        .minerctl_json(&[
            "delete-plot",
            &b.plot_id,
            "--delete-file",
            "--force",
            "--json",
        ])
        .unwrap();
    assert_eq!(out["deletedFiles"].as_array().unwrap().len(), 2, "{out}");
    assert!(!d.home.plot_dir().join("b.plot").exists());
    assert!(!d.home.plot_dir().join("b.plot.cache").exists());

    // Mistakes get the documented codes.
    let err = c
        .create_plot(pb::CreatePlotRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let err = c
        .create_plot(pb::CreatePlotRequest {
            leaf_count: 8,
            file_name: "a.plot".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::AlreadyExists);
    let out = d.minerctl(&["show-plot", "ffffffff-ffff-4fff-bfff-ffffffffffff"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}

#[tokio::test]
async fn events_follow_plots_being_added_and_removed() {
    let d = Minerd::start().unwrap();
    let (mut c, mut events) = d.client_and_events().await.unwrap();
    let (plot, _) = create(&mut c, LEAVES, "e.plot").await;
    c.delete_plot(pb::DeletePlotRequest {
        plot_id: plot.plot_id.clone(),
        delete_files: true,
    })
    .await
    .unwrap();

    let mut added = false;
    let mut finished = false;
    let mut removed = false;
    let mut last_seq = 0;
    while !(added && finished && removed) {
        let ev = tokio::time::timeout(Duration::from_secs(10), events.message())
            .await
            .expect("events arrive")
            .unwrap()
            .unwrap();
        assert!(ev.sequence > last_seq, "sequence increases");
        last_seq = ev.sequence;
        match ev.event {
            Some(E::PlotAdded(a)) => added |= a.plot.unwrap().plot_id == plot.plot_id,
            Some(E::PlotJobFinished(f)) => {
                finished |=
                    f.job_id == plot.plot_id && f.outcome == pb::PlotJobOutcome::Succeeded as i32
            }
            Some(E::PlotRemoved(r)) => removed |= r.plot_id == plot.plot_id && r.files_deleted,
            _ => {}
        }
    }
}

#[tokio::test]
async fn files_dropped_into_the_plot_directory_are_picked_up_and_duplicates_flagged() {
    let d = start_setting("plotScanIntervalSeconds=1");
    let mut c = d.client().await.unwrap();
    let (plot, _) = create(&mut c, LEAVES, "orig.plot").await;

    // A copy has the same seed: registered, but flagged and not farmed twice.
    std::fs::copy(
        d.home.plot_dir().join("orig.plot"),
        d.home.plot_dir().join("copy.plot"),
    )
    .unwrap();
    let found = wait_until_async(Duration::from_secs(10), || {
        let mut c = c.clone();
        async move { list_plots(&mut c).await.len() == 2 }
    })
    .await;
    assert!(found, "copy was not picked up");
    let plots = list_plots(&mut c).await;
    let copy = plots
        .iter()
        .find(|p| p.file_path.ends_with("copy.plot"))
        .unwrap();
    assert_eq!(state(copy), pb::PlotState::Duplicate);
    assert_eq!(copy.duplicate_of, plot.plot_id);
    let status = d.minerctl_json(&["status", "--json"]).unwrap();
    assert_eq!(status["plots"]["valid"], 1);
    assert_eq!(status["plots"]["duplicate"], 1);

    // A plot that disappears is reported missing, not fatal.
    std::fs::remove_file(d.home.plot_dir().join("orig.plot")).unwrap();
    let missing = wait_until_async(Duration::from_secs(10), || {
        let mut c = c.clone();
        let id = plot.plot_id.clone();
        async move {
            c.get_plot(pb::GetPlotRequest { plot_id: id })
                .await
                .is_ok_and(|r| {
                    r.into_inner()
                        .plot
                        .is_some_and(|p| state(&p) == pb::PlotState::Missing)
                })
        }
    })
    .await;
    assert!(missing);
    // ...and the duplicate takes over.
    let copy = get(&mut c, &copy.plot_id).await;
    assert_eq!(state(&copy), pb::PlotState::Valid);
    assert!(d.minerctl_ok(&["status"]).is_ok());
}

#[tokio::test]
async fn a_cancelled_job_leaves_nothing_and_jobs_outlive_their_client() {
    let d = Minerd::start().unwrap();
    // Started with --no-wait: the client is gone, the job keeps running.
    let id = start_large_job(&d);
    let running = wait_until(Duration::from_secs(20), || {
        any_job(&d, |x| {
            x["jobId"] == id.as_str()
                && x["state"] == "running"
                && x["progress"]["leavesDone"].as_u64().unwrap_or(0) > 0
        })
    });
    assert!(running, "job did not make progress");
    // The plot list shows it as being created.
    let plots = d.minerctl_json(&["list-plots", "--json"]).unwrap();
    assert_eq!(plots[0]["state"], "creating");
    assert!(d
        .minerctl_ok(&["cancel-job", &id[..8]])
        .unwrap()
        .contains("cancelled"));
    assert_eq!(
        d.minerctl_json(&["jobs", "--json"]).unwrap(),
        serde_json::json!([])
    );
    assert!(
        list_files(&d.home.plot_dir()).is_empty(),
        "{:?}",
        list_files(&d.home.plot_dir())
    );
    assert_eq!(
        d.minerctl_json(&["list-plots", "--json"]).unwrap(),
        serde_json::json!([])
    );
}

#[test]
fn minerctl_create_plot_prints_progress_lines_and_the_plot() {
    let d = Minerd::start().unwrap();
    let out = d
        .minerctl_ok(&["create-plot", "--size", "128KiB", "--name", "m.plot"])
        .unwrap();
    assert!(
        out.starts_with("plot job "),
        "the job id comes first: {out}"
    );
    assert!(out.contains("(4096 leaves, 131.1 kB)"), "{out}");
    assert!(out.contains("plot created"), "{out}");
    assert!(out.contains("leaves:       4096"), "{out}");
}

#[tokio::test]
async fn a_check_that_finds_bad_leaves_marks_the_plot_corrupted() {
    use std::os::unix::fs::FileExt;
    let d = Minerd::start().unwrap();
    let mut c = d.client().await.unwrap();
    let (plot, _) = create(&mut c, LEAVES, "bad.plot").await;
    // Flip one byte of leaf 1000 (the header stays valid, so the file still loads).
    let path = d.home.plot_dir().join("bad.plot");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let off = 121 + 32 * 1000;
    let mut byte = [0u8; 1];
    f.read_exact_at(&mut byte, off).unwrap();
    f.write_all_at(&[byte[0] ^ 0xff], off).unwrap();
    f.sync_all().unwrap();
    drop(f);

    let out = d.minerctl(&["check-plot", &plot.plot_id, "--full", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["state"], "corrupted");
    assert!(
        report["findings"][0]
            .as_str()
            .unwrap()
            .contains("first at index 1000"),
        "{report}"
    );
    let shown = d
        .minerctl_json(&["show-plot", &plot.plot_id, "--json"])
        .unwrap();
    assert_eq!(shown["state"], "corrupted");
    let status = d.minerctl_json(&["status", "--json"]).unwrap();
    assert_eq!(status["plots"]["valid"], 0);
    assert_eq!(status["plots"]["corrupted"], 1);
    // Recorded in the metadata, so it stays corrupted across a restart.
    let meta = std::fs::read_to_string(d.home.data_dir().join("plots_metadata.json")).unwrap();
    assert!(meta.contains("\"Corrupted\""), "{meta}");
}

#[tokio::test]
async fn a_plot_made_for_another_key_is_flagged_reported_and_not_farmed() {
    let d = start_setting("plotScanIntervalSeconds=1");
    let (mut c, mut events) = d.client_and_events().await.unwrap();
    // Another miner's plot, copied into the plot directory.
    let path = d.home.plot_dir().join("theirs.plot");
    write_plot(path.clone(), [0x5a; 32], 1, 256, CacheLevels::Disabled);
    let added = loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), events.message())
            .await
            .expect("the plot is picked up")
            .unwrap()
            .unwrap();
        if let Some(E::PlotAdded(a)) = ev.event {
            break a.plot.unwrap();
        }
    };
    assert_eq!(state(&added), pb::PlotState::WrongKey);
    assert!(
        added.problem.contains("another miner key"),
        "{}",
        added.problem
    );
    let listed = get(&mut c, &added.plot_id).await;
    assert_eq!(state(&listed), pb::PlotState::WrongKey);
    let status = d.minerctl_json(&["status", "--json"]).unwrap();
    assert_eq!(status["plots"]["valid"], 0, "{status}");
    assert_eq!(status["plots"]["corrupted"], 1, "{status}");
    let list = d.minerctl_ok(&["list-plots"]).unwrap();
    assert!(list.contains("wrong-key"), "{list}");
    // The metadata keeps the reference's statuses; the log names the file.
    let meta = std::fs::read_to_string(d.home.data_dir().join("plots_metadata.json")).unwrap();
    let entries = spacetime::metadata::parse_metadata(&meta).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        entries[0].status,
        spacetime::metadata::PlotStatus::Corrupted
    );
    let logged = wait_until(Duration::from_secs(5), || {
        d.log().lines().any(|l| {
            l.contains("WARN") && l.contains("another miner key") && l.contains("theirs.plot")
        })
    });
    assert!(logged, "no warning naming the plot:\n{}", d.log());
}

#[tokio::test]
async fn a_stale_cache_is_a_cache_problem_not_a_corrupted_plot() {
    // Without the background builder, which would replace the removed cache at once.
    let d = start_setting("buildMissingCaches=false");
    let mut c = d.client().await.unwrap();
    let (plot, _) = create(&mut c, LEAVES, "a.plot").await;
    create(&mut c, LEAVES, "b.plot").await;
    // Another plot's cache (same shape, other tree) in place of this one's.
    let dir = d.home.plot_dir();
    std::fs::copy(dir.join("b.plot.cache"), dir.join("a.plot.cache")).unwrap();

    let report = d
        .minerctl_json(&["check-plot", &plot.plot_id, "--full", "--json"])
        .unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["state"], "valid", "{report}");
    let findings = report["findings"].to_string();
    assert!(
        findings.contains("a.plot.cache") && findings.contains("removed"),
        "{report}"
    );
    assert!(
        !dir.join("a.plot.cache").exists(),
        "the stale cache is dropped"
    );
    let shown = get(&mut c, &plot.plot_id).await;
    assert_eq!(state(&shown), pb::PlotState::Valid);
    assert!(!shown.cache_in_use && shown.cache_file_path.is_empty());
    let status = d.minerctl_json(&["status", "--json"]).unwrap();
    assert_eq!(status["plots"]["valid"], 2, "{status}");
    assert_eq!(status["plots"]["corrupted"], 0, "{status}");
    let meta = std::fs::read_to_string(d.home.data_dir().join("plots_metadata.json")).unwrap();
    assert!(!meta.contains("\"Corrupted\""), "{meta}");
}

#[tokio::test]
async fn a_plot_copied_in_without_its_cache_gets_one_in_the_background() {
    let d = start_setting("plotScanIntervalSeconds=1");
    let mut c = d.client().await.unwrap();
    let status = get_status(&mut c).await.unwrap();
    let pk: [u8; 32] = status.miner_public_key.as_slice().try_into().unwrap();
    // Written elsewhere without a cache (as the reference does by default), and once with
    // the default cache to compare with.
    let elsewhere = d.home.path().join("elsewhere");
    let make = |name: &str, cache| write_plot(elsewhere.join(name), pk, 9, 20_000, cache);
    make("ref.plot", CacheLevels::Disabled);
    make("expected.plot", CacheLevels::Default);
    // Copied in under another name and renamed, so the scan never sees half a file.
    let dir = d.home.plot_dir();
    std::fs::copy(elsewhere.join("ref.plot"), dir.join("ref.partial")).unwrap();
    std::fs::rename(dir.join("ref.partial"), dir.join("ref.plot")).unwrap();

    let cached = wait_until_async(Duration::from_secs(20), || {
        let d = &d;
        async move {
            let plots = d.minerctl_json(&["list-plots", "--json"]).unwrap();
            plots.as_array().unwrap().iter().any(|p| {
                p["filePath"].as_str().unwrap().ends_with("ref.plot")
                    && p["state"] == "valid"
                    && p["cacheInUse"] == true
                    && p["cacheFilePath"]
                        .as_str()
                        .unwrap()
                        .ends_with("ref.plot.cache")
            })
        }
    })
    .await;
    assert!(
        cached,
        "{}\n{}",
        d.minerctl_json(&["list-plots", "--json"]).unwrap(),
        d.log()
    );
    assert_eq!(
        std::fs::read(dir.join("ref.plot.cache")).unwrap(),
        std::fs::read(elsewhere.join("expected.plot.cache")).unwrap(),
        "the built cache is the one plot creation writes"
    );
    assert_eq!(list_files(&dir), ["ref.plot", "ref.plot.cache"]);
    let logged = wait_until(Duration::from_secs(5), || {
        d.log()
            .lines()
            .any(|l| l.contains("Merkle cache built") && l.contains("ref.plot"))
    });
    assert!(logged, "{}", d.log());
}
