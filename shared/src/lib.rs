//! `spacetime`: the domain core of the Spacetime miner.
//!
//! Synchronous and free of any async runtime or RPC types: plot files, the Merkle tree and
//! its cache, scanning and proofs, consensus rules, blocks and transactions, the wire codec,
//! keys, and the plot metadata file. Byte layouts follow the C# reference implementation
//! (`runcodedad/spacetime`); where this crate departs from it, `docs/decisions.md` says why.

pub mod atomic_file;
pub mod bench;
pub mod block;
pub mod clock;
mod codec;
mod compress;
pub mod consensus;
mod error_chain;
pub mod hash;
pub mod kernel;
pub mod keys;
pub mod merkle;
pub mod metadata;
pub mod plot;
pub mod regular_file;
pub mod scan;
#[cfg(test)]
mod test_vectors;
pub mod validate;
pub mod wire;

// The plot's cache file and its proofs live in `plot` (one storage engine); their paths
// stay `spacetime::cache` and `spacetime::prove`.
pub use plot::{cache, prove};

pub use codec::DecodeError;
pub use error_chain::error_chain;
