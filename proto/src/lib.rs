//! The Spacetime miner's gRPC API (`spacetime.miner.v1`).
//!
//! The `.proto` files under `spacetime/miner/v1/` are the source of truth and their comments
//! are the API documentation. This crate compiles them (with protox, so no `protoc` is
//! needed), exposes the generated code in [`pb`], and offers a typed [`client`] that connects
//! over the daemon's Unix socket or over TCP with a bearer token.
//!
//! Conversions between these wire types and the daemon's domain types live in the daemon
//! (`minerd::rpc::convert`), so proto types never leak into the `spacetime` core.

pub mod client;
pub mod compat;

/// Generated protobuf types, client and server for `spacetime.miner.v1`.
#[allow(clippy::all, missing_docs)] // generated code
pub mod pb {
    tonic::include_proto!("spacetime.miner.v1");
}

/// Encoded `FileDescriptorSet` of the API, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("spacetime_miner_v1_descriptor");

/// Fully-qualified name of the miner service, as reflection and health report it.
pub const SERVICE_NAME: &str = "spacetime.miner.v1.MinerService";
