//! `shutdown`: the daemon itself.

use spacetime_proto::client::MinerClient;
use spacetime_proto::pb;

use crate::CmdResult;

/// Asks the daemon to shut down gracefully.
pub async fn shutdown(c: &mut MinerClient) -> CmdResult {
    c.shutdown(pb::ShutdownRequest {}).await?;
    println!("minerd is shutting down");
    Ok(())
}
