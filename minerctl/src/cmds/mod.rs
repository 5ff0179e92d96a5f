//! One module per noun of the command line.

pub mod daemon;
pub mod events;
pub mod mining;
pub mod plots;
pub mod status;
