//! Rewrites the checked-in API baseline (`proto/api-baseline/spacetime.miner.v1.binpb`) from
//! the current `.proto` files. Run it when a release has added to the API:
//!
//! ```text
//! cargo run -p spacetime-proto --example update_api_baseline
//! ```
//!
//! It refuses to write a baseline that the previous one would call incompatible, so it
//! cannot be used to paper over a breaking change.

use std::path::PathBuf;

use spacetime_proto::compat::{breaking_changes, current_api, BASELINE_PATH};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(BASELINE_PATH);
    let current = current_api()?;
    if let Ok(bytes) = std::fs::read(&path) {
        let old = prost::Message::decode(bytes.as_slice())?;
        let breaks = breaking_changes(&old, &current);
        if !breaks.is_empty() {
            eprintln!("refusing to update the baseline: the current API breaks it:");
            for b in &breaks {
                eprintln!("  {b}");
            }
            std::process::exit(1);
        }
    }
    let tmp = path.with_extension("binpb.tmp");
    std::fs::write(&tmp, prost::Message::encode_to_vec(&current))?;
    std::fs::rename(&tmp, &path)?;
    println!("wrote {}", path.display());
    Ok(())
}
