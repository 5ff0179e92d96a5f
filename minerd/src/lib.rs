//! `minerd`: the Spacetime miner daemon, as a library so that tests can run it in-process.

pub mod config;
pub mod context;
pub mod daemon;
pub mod error;
pub mod events;
mod files;
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
