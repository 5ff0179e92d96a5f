//! `status`.

use clap::Args;
use spacetime_proto::client::MinerClient;
use spacetime_proto::pb;

use crate::output;
use crate::{CmdResult, Failure};

/// Options of `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// Prints the daemon status.
pub async fn status(c: &mut MinerClient, a: &StatusArgs) -> CmdResult {
    let s = c
        .get_status(pb::GetStatusRequest {})
        .await?
        .into_inner()
        .status
        .ok_or_else(|| Failure::other("the daemon sent an empty status"))?;
    output::print_json_or_text(
        a.json,
        || output::status_json(&s),
        || output::status_text(&s),
    );
    Ok(())
}
