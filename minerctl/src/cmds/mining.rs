//! `start` and `stop`: the mining switch.

use spacetime_proto::client::MinerClient;
use spacetime_proto::pb;

use crate::CmdResult;

/// Enables mining.
pub async fn start(c: &mut MinerClient) -> CmdResult {
    let r = c
        .start_mining(pb::StartMiningRequest {})
        .await?
        .into_inner();
    println!(
        "{}",
        if r.changed {
            "mining enabled"
        } else {
            "mining was already enabled"
        }
    );
    Ok(())
}

/// Disables mining.
pub async fn stop(c: &mut MinerClient) -> CmdResult {
    let r = c.stop_mining(pb::StopMiningRequest {}).await?.into_inner();
    println!(
        "{}",
        if r.changed {
            "mining disabled"
        } else {
            "mining was already disabled"
        }
    );
    Ok(())
}
