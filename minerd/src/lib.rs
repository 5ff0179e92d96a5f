//! `minerd`: the Spacetime miner daemon, as a library so that tests can run it in-process.
//!
//! Each piece of state has one owner, and data flows one way (no module imports one that
//! imports it back; `tests/tests/layout.rs` checks):
//!
//! - [`daemon`] starts everything ([`run`]) and drains it; it hands out [`context`]:
//!   [`Daemon`] to the control API ([`rpc`]) and [`MiningContext`] to the mining loop
//!   ([`mining`], which builds and drives the node link, [`node`]).
//! - [`rpc`] holds thin handlers: requests become domain values in `rpc::convert`, work is
//!   followed through streams the owners return (`plots::follow`), and `rpc::map_error` is
//!   the one place a [`error::DaemonError`] becomes a status code.
//! - [`plots`] owns the registered plots, plot jobs and cache builds; [`stats`] the status
//!   counters; [`events`] the event feed; [`config`] the configuration; [`types`] the plot and
//!   job vocabulary they share.
//! - The devnet node is the `spacetime-devnet` crate; the wire connection and the data-dir
//!   lock are `spacetime-io`.

pub mod config;
pub mod context;
pub mod daemon;
pub mod error;
pub mod events;
pub mod farm_size;
mod files;
pub mod metrics;
pub mod mining;
pub mod node;
pub mod plots;
pub mod rpc;
pub mod shutdown;
pub mod stats;
pub mod telemetry;
pub mod timefmt;
pub mod types;

pub use context::{Daemon, MiningContext};
pub use daemon::run;
