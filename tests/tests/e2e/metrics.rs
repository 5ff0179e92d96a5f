//! Prometheus metrics: a mining daemon's `/metrics`, checked by the real `promtool`, and
//! every family documented in the README.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::{wait_until, Minerd, MinerdOptions};

/// `GET path` over HTTP/1.1; returns (status line, headers and body).
pub(crate) fn http_get(addr: &str, path: &str, accept: Option<&str>) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{accept}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), body.to_owned())
}

/// A sample's value: `name{labels} value` (labels given exactly, or none).
pub(crate) fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn families(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn metrics_exposition_passes_promtool_and_every_family_is_documented() {
    let d = Minerd::start_with(MinerdOptions::fast_devnet(&[
        "plotScanIntervalSeconds=1",
        "metricsAddress=127.0.0.1:0",
    ]))
    .unwrap();
    let line = d
        .process()
        .wait_for_line("metrics listening on http://", Duration::from_secs(20))
        .unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap()
        .to_owned();

    // Mine until a proof was submitted and a block accepted: the histograms then hold data.
    let mut text = String::new();
    let mined = wait_until(Duration::from_secs(120), || {
        text = http_get(&addr, "/metrics", None).1;
        sample(
            &text,
            r#"spacetime_miner_proofs_total{outcome="submitted"}"#,
        )
        .unwrap_or(0.0)
            >= 1.0
            && sample(&text, "spacetime_miner_plot_scan_seconds_count").unwrap_or(0.0) >= 1.0
            && sample(&text, "spacetime_miner_node_connects_total").unwrap_or(0.0) >= 1.0
    });
    assert!(mined, "no proof submitted in time:\n{text}\n{}", d.log());
    let (head, _) = http_get(&addr, "/metrics", None);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    assert!(
        sample(
            &text,
            "spacetime_miner_challenge_to_submission_seconds_count"
        )
        .unwrap()
            >= 1.0
    );
    assert!(sample(&text, "spacetime_miner_challenges_total").unwrap() >= 1.0);
    assert_eq!(
        sample(
            &text,
            r#"spacetime_miner_node_link_state{state="connected"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, r#"spacetime_miner_plots{state="valid"}"#),
        Some(1.0)
    );
    assert!(sample(&text, "spacetime_miner_epoch_leaves_scanned").unwrap() > 0.0);
    assert!(sample(&text, "spacetime_miner_effective_farm_size_bytes").unwrap() > 0.0);
    assert!(sample(&text, "spacetime_miner_farmed_bytes").unwrap() > 0.0);

    let fams = families(&text);
    assert!(fams.len() >= 12, "{fams:?}");
    for h in [
        "spacetime_miner_challenge_to_submission_seconds",
        "spacetime_miner_plot_scan_seconds",
    ] {
        assert!(text.contains(&format!("# TYPE {h} histogram")), "{h}");
    }

    // Every family is in the README's metrics table.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    for f in &fams {
        assert!(
            readme.contains(&format!("| `{f}`")),
            "metric {f} is not documented in the README's Metrics table"
        );
    }

    // The Grafana dashboard queries only metrics that exist.
    let dashboard = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/grafana/minerd.json"
    ))
    .unwrap();
    let dash: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let mut queried = 0;
    for panel in dash["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if let Some(name) = word.strip_prefix("spacetime_miner_") {
                    let family = format!("spacetime_miner_{}", name.trim_end_matches("_bucket"));
                    assert!(fams.contains(&family), "dashboard queries unknown {word}");
                    queried += 1;
                }
            }
        }
    }
    assert!(queried >= 12, "{queried}");

    // OpenMetrics for scrapers that ask for it.
    let (head, body) = http_get(&addr, "/metrics", Some("application/openmetrics-text"));
    assert!(head.contains("application/openmetrics-text"), "{head}");
    assert!(body.trim_end().ends_with("# EOF"), "{body}");
    let (head, _) = http_get(&addr, "/other", None);
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");

    // promtool (Debian `prometheus`, installed by .ci/run).
    let promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match promtool {
        Ok(c) => c,
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "promtool is missing under CI ({e}): .ci/run must install `prometheus`"
            );
            eprintln!("SKIPPED promtool: not installed (apt-get install prometheus)");
            return;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
