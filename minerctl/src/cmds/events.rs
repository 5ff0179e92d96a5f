//! `events`: follow the event feed.

use clap::Args;
use spacetime_proto::client::MinerClient;
use spacetime_proto::pb;

use crate::output;
use crate::CmdResult;

/// Options of `events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Print one JSON object per line instead of text
    #[arg(long)]
    pub json: bool,
    /// Stop after this many events
    #[arg(long, short = 'n', value_name = "N")]
    pub count: Option<u64>,
}

/// Prints events as they arrive, until the daemon stops, `--count` is reached or Ctrl-C.
pub async fn follow(c: &mut MinerClient, a: &EventsArgs) -> CmdResult {
    let mut stream = c
        .watch_events(pb::WatchEventsRequest {})
        .await?
        .into_inner();
    let mut seen = 0u64;
    while let Some(ev) = stream.message().await? {
        if a.json {
            output::print_json_line(&output::event_json(&ev));
        } else {
            crate::outln!("{}", output::event_text(&ev));
        }
        seen += 1;
        if a.count.is_some_and(|n| seen >= n) {
            break;
        }
    }
    Ok(())
}
