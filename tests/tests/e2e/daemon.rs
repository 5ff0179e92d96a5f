//! Daemon lifecycle and transport: status, health, reflection, TCP token, lock, SIGTERM.

use std::time::Duration;

use e2e::{list_files, wait_until, Minerd, MinerdOptions};
use spacetime_proto::client::get_status;
use spacetime_proto::pb;
use tokio_stream::StreamExt;

use crate::plots::{any_job, start_large_job};

#[tokio::test]
async fn status_reports_identity_and_state() {
    let d = Minerd::start_with(MinerdOptions {
        args: vec!["--no-auto-start".into()],
        ..Default::default()
    })
    .unwrap();
    let s = d.minerctl_json(&["status", "--json"]).unwrap();
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(s["networkId"], "spacetime-devnet-local");
    assert_eq!(s["minerPublicKey"].as_str().unwrap().len(), 64);
    assert_eq!(s["miningEnabled"], false);
    assert_eq!(s["miningState"], "stopped");
    assert_eq!(s["node"]["address"], "127.0.0.1:8333");
    assert_eq!(s["plots"]["total"], 0);
    // start / stop toggle the switch.
    assert!(d
        .minerctl_ok(&["start"])
        .unwrap()
        .contains("mining enabled"));
    let mut c = d.client().await.unwrap();
    let st = get_status(&mut c).await.unwrap();
    assert!(st.mining_enabled);
    assert!(d
        .minerctl_ok(&["stop"])
        .unwrap()
        .contains("mining disabled"));
    // The key is the one on disk.
    let text = d.minerctl_ok(&["status"]).unwrap();
    assert!(text.contains(s["minerPublicKey"].as_str().unwrap()));
}

#[tokio::test]
async fn health_is_serving_and_reflection_lists_the_services() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};

    /// One reflection request on a new stream; the first answer.
    async fn ask(
        channel: tonic::transport::Channel,
        request: MessageRequest,
    ) -> ServerReflectionResponse {
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(request),
        };
        let mut resp = ServerReflectionClient::new(channel)
            .server_reflection_info(tokio_stream::iter([req]))
            .await
            .unwrap()
            .into_inner();
        resp.next().await.unwrap().unwrap()
    }

    let d = Minerd::start().unwrap();
    let channel = d.channel().await.unwrap();
    let mut health = HealthClient::new(channel.clone());
    for service in ["", spacetime_proto::SERVICE_NAME] {
        let r = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status, ServingStatus::Serving as i32, "{service:?}");
    }

    let first = ask(channel, MessageRequest::ListServices(String::new())).await;
    let Some(MessageResponse::ListServicesResponse(list)) = first.message_response else {
        panic!("unexpected reflection answer {first:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"spacetime.miner.v1.MinerService".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );

    // The miner service's file descriptor is served too (generic clients need it).
    let r = ask(
        d.channel().await.unwrap(),
        MessageRequest::FileContainingSymbol("spacetime.miner.v1.MinerService".into()),
    )
    .await;
    assert!(
        matches!(r.message_response, Some(MessageResponse::FileDescriptorResponse(ref f)) if !f.file_descriptor_proto.is_empty()),
        "{r:?}"
    );
}

#[tokio::test]
async fn tcp_listener_requires_the_bearer_token() {
    use spacetime_proto::client::{connect, Target};
    let d = Minerd::start_with(MinerdOptions {
        tcp: true,
        ..Default::default()
    })
    .unwrap();
    let addr = d.tcp.clone().unwrap();
    let token_file = d.home.data_dir().join("minerd.token");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&token_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_owned();

    let mut good = connect(&Target::Tcp {
        address: addr.clone(),
        token: Some(token),
        tls: None,
    })
    .await
    .unwrap();
    good.get_status(pb::GetStatusRequest {}).await.unwrap();

    for bad in [None, Some("wrong".to_owned())] {
        let mut c = connect(&Target::Tcp {
            address: addr.clone(),
            token: bad,
            tls: None,
        })
        .await
        .unwrap();
        let err = c.get_status(pb::GetStatusRequest {}).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
    }

    let out = std::process::Command::new(e2e::binary("minerctl"))
        .args(["--tcp", &addr, "--token-file"])
        .arg(&token_file)
        .args(["status", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn minerctl_exits_69_when_the_daemon_is_not_running() {
    let home = e2e::Home::new().unwrap();
    let out = std::process::Command::new(e2e::binary("minerctl"))
        .arg("--socket")
        .arg(home.socket())
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(69), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Is minerd running?"), "{err}");
}

#[test]
fn second_daemon_on_the_same_data_dir_refuses() {
    let d = Minerd::start().unwrap();
    let out = d.home.minerd_output(&[], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{err}");
    assert!(err.contains("another minerd is already running"), "{err}");
    assert!(err.contains(&format!("pid {}", d.pid())), "{err}");
    // The first one is unharmed.
    assert!(d.minerctl_ok(&["status"]).is_ok());
    assert!(d.home.socket().exists());
}

#[test]
fn sigterm_leaves_no_socket_lock_or_partial_plot() {
    let mut d = Minerd::start().unwrap();
    // A job large enough to still be running when the signal arrives.
    let job_id = start_large_job(&d);
    assert!(wait_until(Duration::from_secs(20), || {
        any_job(&d, |x| {
            x["jobId"] == job_id.as_str() && x["progress"]["leavesDone"].as_u64().unwrap_or(0) > 0
        })
    }));
    let status = d.terminate(Duration::from_secs(15)).unwrap();
    assert!(status.success(), "{status:?}\n{}", d.log());
    let files = list_files(&d.home.data_dir());
    assert!(
        !files.iter().any(|f| f.ends_with("minerd.sock")),
        "{files:?}"
    );
    assert!(
        !files.iter().any(|f| f.ends_with("minerd.lock")),
        "{files:?}"
    );
    let plots: Vec<&String> = files.iter().filter(|f| f.starts_with("plots/")).collect();
    assert!(plots.is_empty(), "partial plot files left: {plots:?}");
    assert!(
        files.contains(&"plots_metadata.json".to_owned()),
        "{files:?}"
    );
    // The stderr reader may still be on its way to the last line.
    d.process()
        .wait_for_line("minerd stopped", Duration::from_secs(5))
        .unwrap();
}

#[test]
fn shutdown_command_stops_the_daemon_cleanly() {
    let mut d = Minerd::start().unwrap();
    assert!(d
        .minerctl_ok(&["shutdown"])
        .unwrap()
        .contains("minerd has shut down"));
    let status = d.wait(Duration::from_secs(15)).unwrap();
    assert!(status.success());
    assert!(!d.home.socket().exists());
}

#[test]
fn stale_socket_from_a_crashed_daemon_is_replaced() {
    let home = e2e::Home::new().unwrap();
    std::fs::create_dir_all(home.data_dir()).unwrap();
    drop(std::os::unix::net::UnixListener::bind(home.socket()).unwrap());
    let d = Minerd::start_in(home, MinerdOptions::default()).unwrap();
    assert!(d.log().contains("removing stale control socket"));
    assert!(d.minerctl_ok(&["status"]).is_ok());
}

#[test]
fn minerctl_events_follows_the_feed() {
    let d = Minerd::start().unwrap();
    let mut follower = std::process::Command::new(e2e::binary("minerctl"))
        .arg("--socket")
        .arg(d.home.socket())
        .args(["events", "--json", "-n", "1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Toggle mining until the follower (subscribed at some point) has seen one event.
    let mut enabled = true;
    let seen = wait_until(Duration::from_secs(15), || {
        enabled = !enabled;
        d.minerctl_ok(&[if enabled { "start" } else { "stop" }])
            .unwrap();
        follower.try_wait().unwrap().is_some()
    });
    if !seen {
        let _ = follower.kill();
    }
    let out = follower.wait_with_output().unwrap();
    assert!(seen && out.status.success(), "{out:?}");
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["type"], "miningToggled");
    assert!(line["sequence"].as_u64().unwrap() >= 1);
}

#[test]
fn devnet_mode_reports_the_devnet_network_and_farms_its_plot_at_once() {
    // A configured network id that the embedded devnet does not use, and a directory scan
    // interval no test waits for: the devnet plot must be farmed through the rescan request.
    let d = Minerd::start_with(MinerdOptions {
        args: vec![
            "run".into(),
            "--devnet".into(),
            "--set".into(),
            "devnet.listenPort=0".into(),
            "--set".into(),
            "plotScanIntervalSeconds=3600".into(),
        ],
        config_yaml: Some("networkId: spacetime-testnet-v1\n".into()),
        ..Default::default()
    })
    .unwrap();
    let farmed = wait_until(Duration::from_secs(30), || {
        d.minerctl_json(&["status", "--json"])
            .is_ok_and(|s| s["plots"]["valid"] == 1)
    });
    assert!(farmed, "the devnet plot was not farmed:\n{}", d.log());
    let s = d.minerctl_json(&["status", "--json"]).unwrap();
    assert_eq!(s["networkId"], "spacetime-devnet-local", "{s}");
    let log = d.log();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("spacetime-testnet-v1")),
        "no warning about the replaced network id:\n{log}"
    );
}
