//! End-to-end tests: the real `minerd` and `minerctl` binaries in temporary home directories.
//! One test binary; one module per area.

mod brief;
mod clients;
mod config;
mod daemon;
mod devnet;
mod farm;
mod faults;
mod grpc_web;
mod listeners;
mod load;
mod metrics;
mod mining;
mod plots;
mod systemd;
mod terminal;
mod tls;
