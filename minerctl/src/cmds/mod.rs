//! One module per noun of the command line.

pub mod completions;
pub mod daemon;
pub mod events;
pub mod plots;
pub mod status;
