//! `minerd`: the Spacetime miner daemon, as a library so that tests can run it in-process.

pub mod config;
pub mod daemon;
pub mod error;
pub mod events;
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

pub use daemon::{run, Daemon, MiningContext};
