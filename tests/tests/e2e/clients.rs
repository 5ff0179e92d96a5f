//! Third-party clients, as a dashboard would use them: Python grpcio with default options
//! over the Unix socket and TCP, through reflection only.

use std::process::Command;

use e2e::{Minerd, MinerdOptions};

/// `tests/python/<name>`.
fn python_script(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(name)
}

/// Whether `python3` with grpcio, grpcio-reflection and grpcio-health-checking is here.
/// `.ci/run` installs them, so under CI (`CI` set) their absence fails the test; elsewhere
/// the test says what to install and returns.
pub fn have_grpcio() -> bool {
    let ok = Command::new("python3")
        .args([
            "-c",
            "import grpc, grpc_reflection.v1alpha.reflection_pb2, grpc_health.v1.health_pb2",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "python3 with grpcio is missing under CI: .ci/run must install it"
        );
        eprintln!(
            "SKIPPED: needs python3 with `pip install grpcio grpcio-reflection grpcio-health-checking protobuf` (CI installs them)"
        );
    }
    ok
}

/// Runs `tests/python/reflection_client.py TARGET [TOKEN] [--ca CA]`.
pub fn run_reflection_client(
    target: &str,
    token: Option<&str>,
    ca: Option<&std::path::Path>,
) -> std::process::Output {
    let mut cmd = Command::new("python3");
    cmd.arg(python_script("reflection_client.py")).arg(target);
    if let Some(t) = token {
        cmd.arg(t);
    }
    if let Some(ca) = ca {
        cmd.arg("--ca").arg(ca);
    }
    cmd.output().expect("run python3")
}

/// Checks the JSON the reflection client printed: services, health and status.
pub fn check_dashboard_view(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "python grpcio client failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let services: Vec<&str> = v["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    for want in [
        "spacetime.miner.v1.MinerService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(services.contains(&want), "{services:?}");
    }
    assert_eq!(v["health"], "SERVING");
    let status = &v["status"]["status"];
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"), "{v}");
    assert_eq!(status["networkId"], "spacetime-devnet-local", "{v}");
}

#[test]
fn python_grpcio_with_default_options_works_on_the_unix_socket() {
    if !have_grpcio() {
        return;
    }
    let d = Minerd::start_with(MinerdOptions {
        args: vec!["--no-auto-start".into()],
        ..Default::default()
    })
    .unwrap();
    // grpcio sends the percent-encoded socket path as :authority here (grpc/grpc#38142).
    let target = format!("unix:{}", d.home.socket().display());
    check_dashboard_view(&run_reflection_client(&target, None, None));
}

#[test]
fn python_grpcio_works_over_tcp_with_the_token_and_not_without() {
    if !have_grpcio() {
        return;
    }
    let d = Minerd::start_with(MinerdOptions {
        args: vec!["--no-auto-start".into()],
        tcp: true,
        ..Default::default()
    })
    .unwrap();
    let token = std::fs::read_to_string(d.home.data_dir().join("minerd.token")).unwrap();
    let addr = d.tcp.clone().unwrap();
    check_dashboard_view(&run_reflection_client(&addr, Some(token.trim()), None));
    let out = run_reflection_client(&addr, Some("wrong"), None);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("UNAUTHENTICATED"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
