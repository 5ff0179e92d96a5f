//! The current `.proto` files must stay wire-compatible with the released
//! `spacetime.miner.v1`, whose descriptors are checked in as the baseline.
//!
//! When this fails, the message lists each breaking change: undo it (add a new field or
//! method instead; `reserved` the number of a field you really retire). After a release that
//! added to the API, regenerate the baseline with
//! `cargo run -p spacetime-proto --example update_api_baseline`.

use spacetime_proto::compat::{breaking_changes, current_api, BASELINE_PATH};

#[test]
fn api_is_wire_compatible_with_the_released_baseline() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(BASELINE_PATH);
    let bytes = std::fs::read(&path).expect("the API baseline is checked in");
    let baseline = prost::Message::decode(bytes.as_slice()).expect("the baseline decodes");
    let current = current_api().expect("the current descriptors decode");
    let breaks = breaking_changes(&baseline, &current);
    assert!(
        breaks.is_empty(),
        "the API is no longer compatible with the released spacetime.miner.v1:\n  {}",
        breaks.join("\n  ")
    );
    // The baseline really is the miner API (not an empty file that passes everything).
    let services: Vec<_> = baseline
        .file
        .iter()
        .flat_map(|f| f.service.iter().map(|s| s.name().to_owned()))
        .collect();
    assert_eq!(services, ["MinerService"]);
}
